// Windowing, normalisation, resampling and reorientation on small in-memory images.
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

TEST(Reorient, RoundTripIsExactAndKeepsPhysicalPositions) {
  const FloatImage img = test::oblique_test_image();
  const std::string original = orientation_code(img.geometry);
  for (const std::string code : {"LPS", "RAS", "PIR", "SAL"}) {
    const FloatImage r = reorient(img, code);
    EXPECT_EQ(orientation_code(r.geometry), code);
    // The voxel now at (0,0,0) has the same physical position as in the original.
    const auto p = r.geometry.index_to_lps(0, 0, 0);
    const auto idx = img.geometry.lps_to_index(p);
    const std::size_t ii = std::lround(idx[0]), jj = std::lround(idx[1]), kk = std::lround(idx[2]);
    EXPECT_FLOAT_EQ(r.at(0, 0, 0), img.at(ii, jj, kk)) << code;
    const FloatImage back = reorient(r, original);
    EXPECT_TRUE(back.geometry.same_grid(img.geometry, 1e-9)) << code;
    EXPECT_EQ(back.voxels, img.voxels) << code;
  }
  EXPECT_THROW(reorient(img, "LLS"), Error);
  EXPECT_THROW(reorient(img, "LP"), Error);
}

}  // namespace
}  // namespace spine
