// Windowing, normalisation, resampling and reorientation on small in-memory images.
#include <algorithm>
#include <array>
#include <cmath>
#include <map>
#include <numeric>

#include "spine/error.hpp"
#include "spine/preprocess.hpp"
#include "test_util.hpp"

namespace spine {
namespace {

TEST(Window, BonePresetMapsEdgesToZeroAndOne) {
  FloatImage img(make_geometry(4, 1, 1));
  img.voxels = {-500, -499 + 0.f, 400, 1300};
  const FloatImage w = apply_window(img, window_preset("bone"));
  EXPECT_FLOAT_EQ(w.voxels[0], 0.f);  // below level - width/2 = -500
  EXPECT_NEAR(w.voxels[1], 1.0 / 1800, 1e-6);
  EXPECT_FLOAT_EQ(w.voxels[2], 0.5f);
  EXPECT_FLOAT_EQ(w.voxels[3], 1.f);
  EXPECT_THROW(window_preset("lung-ish"), Error);
}

TEST(Normalise, ZScoreGivesZeroMeanUnitSd) {
  FloatImage img = test::oblique_test_image();
  normalise_zscore(img);
  double mean = 0, sq = 0;
  for (float v : img.voxels) mean += v;
  mean /= img.voxels.size();
  for (float v : img.voxels) sq += (v - mean) * (v - mean);
  EXPECT_NEAR(mean, 0, 1e-5);
  EXPECT_NEAR(std::sqrt(sq / img.voxels.size()), 1, 1e-4);
}

TEST(Normalise, ClipPercentiles) {
  FloatImage img(make_geometry(101, 1, 1));
  std::iota(img.voxels.begin(), img.voxels.end(), 0.f);
  clip_percentiles(img, 10, 90);
  EXPECT_FLOAT_EQ(img.voxels.front(), 10.f);
  EXPECT_FLOAT_EQ(img.voxels.back(), 90.f);
  EXPECT_FLOAT_EQ(img.voxels[50], 50.f);
  EXPECT_THROW(clip_percentiles(img, 90, 10), Error);
}

TEST(Resample, LinearIsExactOnARamp) {
  // A ramp along x is reproduced exactly by linear interpolation inside the image.
  FloatImage img(make_geometry(20, 3, 3, {2, 2, 2}));
  for (std::size_t k = 0; k < 3; ++k)
    for (std::size_t j = 0; j < 3; ++j)
      for (std::size_t i = 0; i < 20; ++i) img.at(i, j, k) = 3.f * i;
  const FloatImage out = resample_image(img, {1, 2, 2});
  EXPECT_EQ(out.nx(), 40u);
  // Physical extent is kept: the outer edge stays where it was.
  EXPECT_NEAR(out.geometry.origin[0], img.geometry.origin[0] - 0.5, 1e-9);
  for (std::size_t i = 1; i + 1 < out.nx(); ++i) {
    const double x_in = out.geometry.index_to_lps(double(i), 0, 0)[0] / 2.0;  // input index
    EXPECT_NEAR(out.at(i, 1, 1), 3.0 * x_in, 1e-4) << i;
  }
}

TEST(Resample, LabelsKeepEveryLabelAndRoughVolume) {
  LabelImage labels(make_geometry(30, 30, 30, {1, 1, 1}), 0);
  std::map<int, int> before;
  for (std::size_t k = 0; k < 30; ++k)
    for (std::size_t j = 0; j < 30; ++j)
      for (std::size_t i = 0; i < 30; ++i) {
        std::int16_t v = 0;
        if (k >= 2 && k < 12 && i >= 5 && i < 25 && j >= 5 && j < 25) v = 20;
        if (k >= 12 && k < 16 && i >= 6 && i < 24 && j >= 6 && j < 24) v = 120;  // 4 mm thick disc
        if (k >= 16 && k < 28 && i >= 5 && i < 25 && j >= 5 && j < 25) v = 21;
        labels.at(i, j, k) = v;
        ++before[v];
      }
  const LabelImage out = resample_labels(labels, {0.7, 0.7, 2.0});
  std::map<int, int> after;
  for (auto v : out.voxels) ++after[v];
  ASSERT_EQ(after.size(), before.size());  // nothing invented, nothing lost
  const double voxel = 0.7 * 0.7 * 2.0;
  for (const auto& [label, count] : before) {
    if (label == 0) continue;
    EXPECT_NEAR(after[label] * voxel, count, 0.15 * count) << label;
  }
}

TEST(Resample, LabelsOntoAnObliqueGridOnlyWhereTheSourceIsLabelled) {
  // resample_labels_to visits only the target voxels near the source's labelled box: the
  // result must be what visiting all of them gives. A far-off extra label widens that box
  // to the whole grid, so the block's resampling there is the full computation's.
  LabelImage labels(make_geometry(40, 36, 30, {0.8, 0.8, 1.5}), 0);
  for (std::size_t k = 8; k < 20; ++k)
    for (std::size_t j = 10; j < 24; ++j)
      for (std::size_t i = 12; i < 27; ++i) labels.at(i, j, k) = static_cast<std::int16_t>(i < 20 ? 20 : 21);
  LabelImage wide = labels;
  wide.at(0, 0, 0) = 5;
  wide.at(39, 35, 29) = 5;
  const FloatImage oblique = test::oblique_test_image(50, 40, 20);  // another size, spacing and direction
  Geometry target = oblique.geometry;
  target.origin = labels.geometry.index_to_lps(-3, -2, -1);
  const LabelImage a = resample_labels_to(labels, target), b = resample_labels_to(wide, target);
  std::size_t labelled = 0, differ = 0;
  for (std::size_t v = 0; v < a.voxels.size(); ++v) {
    if (a.voxels[v]) ++labelled;
    if (b.voxels[v] != 5 && a.voxels[v] != b.voxels[v]) ++differ;
  }
  EXPECT_GT(labelled, 100u);
  EXPECT_EQ(differ, 0u);
}

TEST(Resample, AxisAlignedGridsMatchATrilinearReference) {
  // Grids whose axes are parallel (the input's axes permuted, flipped, rescaled) take a
  // path that works the samples out per axis; it must give what trilinear interpolation
  // at each target voxel's position gives, edges and fill included.
  FloatImage img(make_geometry(23, 19, 17, {0.8, 0.9, 1.5}));
  for (std::size_t v = 0; v < img.voxels.size(); ++v) img.voxels[v] = static_cast<float>((v * 7919) % 1013) * 0.25f;
  const auto& g = img.geometry;
  for (const std::string code : {"LPS", "IPR", "RAS", "SAL"}) {
    Geometry target = grid_with_spacing(reorient(img, code).geometry, {1.1, 0.7, 1.3});
    target.origin = target.index_to_lps(-2.0, 1.5, -1.0);  // part of the field and past its edge
    const FloatImage got = resample_image_to(img, target, -7.f);
    std::size_t filled = 0;
    for (std::size_t k = 0; k < target.size[2]; ++k)
      for (std::size_t j = 0; j < target.size[1]; ++j)
        for (std::size_t i = 0; i < target.size[0]; ++i) {
          const auto p = g.lps_to_index(target.index_to_lps(double(i), double(j), double(k)));
          double expected = -7;
          bool inside = true;
          std::array<std::size_t, 3> lo{}, hi{};
          std::array<double, 3> f{};
          for (int a = 0; a < 3; ++a) {
            const double n = static_cast<double>(g.size[a]);
            inside = inside && p[a] >= -0.5 && p[a] <= n - 0.5;
            const double c = std::clamp(p[a], 0.0, n - 1);
            lo[a] = static_cast<std::size_t>(std::floor(c));
            hi[a] = std::min<std::size_t>(lo[a] + 1, g.size[a] - 1);
            f[a] = c - std::floor(c);
          }
          if (inside) {
            expected = 0;
            for (int q = 0; q < 8; ++q) {
              const std::size_t x = q & 1 ? hi[0] : lo[0], y = q & 2 ? hi[1] : lo[1], z = q & 4 ? hi[2] : lo[2];
              expected += (q & 1 ? f[0] : 1 - f[0]) * (q & 2 ? f[1] : 1 - f[1]) * (q & 4 ? f[2] : 1 - f[2]) *
                          img.at(x, y, z);
            }
          } else {
            ++filled;
          }
          ASSERT_NEAR(got.at(i, j, k), expected, 1e-3) << code << " at " << i << "," << j << "," << k;
        }
    EXPECT_GT(filled, 0u) << code;
  }
}

TEST(Reorient, RoundTripIsExactAndKeepsPhysicalPositions) {
  const FloatImage img = test::oblique_test_image(40, 35, 33);
  const std::string original = orientation_code(img.geometry);
  for (const std::string code : {"LPS", "RAS", "PIR", "SAL"}) {
    const FloatImage r = reorient(img, code);
    EXPECT_EQ(orientation_code(r.geometry), code);
    // Every voxel keeps its physical position (the image spans more than one 32^3 tile).
    std::size_t moved = 0;
    for (std::size_t k = 0; k < r.nz(); ++k)
      for (std::size_t j = 0; j < r.ny(); ++j)
        for (std::size_t i = 0; i < r.nx(); ++i) {
          const auto idx = img.geometry.lps_to_index(r.geometry.index_to_lps(i, j, k));
          if (r.at(i, j, k) != img.at(std::lround(idx[0]), std::lround(idx[1]), std::lround(idx[2]))) ++moved;
        }
    EXPECT_EQ(moved, 0u) << code;
    const FloatImage back = reorient(r, original);
    EXPECT_TRUE(back.geometry.same_grid(img.geometry, 1e-9)) << code;
    EXPECT_EQ(back.voxels, img.voxels) << code;
  }
  EXPECT_THROW(reorient(img, "LLS"), Error);
  EXPECT_THROW(reorient(img, "LP"), Error);
}

// The overlay reads cuts through reorientation() instead of a reoriented copy: every
// voxel it addresses must be the one reorient() puts there.
TEST(Reorient, MappingAddressesTheVoxelsReorientPutsThere) {
  const FloatImage img = test::oblique_test_image(37, 34, 33);
  for (const std::string code : {"IPR", "LPS", "RAS", "SAL", "ARI"}) {
    const FloatImage r = reorient(img, code);
    const Reorientation map = reorientation(img.geometry, code);
    EXPECT_TRUE(map.geometry.same_grid(r.geometry, 1e-12)) << code;
    std::size_t wrong = 0;
    for (std::size_t k = 0; k < r.nz(); ++k)
      for (std::size_t j = 0; j < r.ny(); ++j)
        for (std::size_t i = 0; i < r.nx(); ++i)
          if (img.voxels[map.offset(i, j, k)] != r.at(i, j, k)) ++wrong;
    EXPECT_EQ(wrong, 0u) << code;
  }
}

// spine-seg resamples the region around the spine straight from the input through its
// canonical view: it must get the voxels a reoriented copy would give, bit for bit.
TEST(Resample, ThroughAReorientationEqualsResamplingTheReorientedCopy) {
  const FloatImage img = test::oblique_test_image(37, 34, 33);
  for (const std::string code : {"IPR", "LPS", "RAS", "SAL"}) {
    const FloatImage copy = reorient(img, code);
    const Reorientation view = reorientation(img.geometry, code);
    // A finer grid over part of the field and past its edge, so that both interpolation
    // and the fill outside are compared.
    Geometry target = grid_with_spacing(copy.geometry, {0.7, 1.3, 0.9});
    target.size = {target.size[0] / 2 + 8, target.size[1] - 3, target.size[2] / 3 + 2};
    target.origin = copy.geometry.index_to_lps(6.3, -2.0, 9.5);
    const FloatImage expected = resample_image_to(copy, target, -7.f);
    const FloatImage got = resample_image_to(img, view, target, -7.f);
    EXPECT_EQ(got.voxels, expected.voxels) << code;
    std::size_t filled = 0;
    for (float v : got.voxels) filled += v == -7.f;
    EXPECT_GT(filled, 0u) << code;
    EXPECT_LT(filled, got.voxels.size() / 2) << code;
  }
  EXPECT_THROW(resample_image_to(img, reorientation(test::oblique_test_image(30, 34, 33).geometry, "IPR"),
                                 img.geometry),
               Error);
}

}  // namespace
}  // namespace spine
