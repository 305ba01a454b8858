// Disc location between vertebral bodies in a grading slice, the L5/S1 disc placed under
// L5 when the sacrum is not segmented (and T12/L1 above L1 without T12), the patch in the
// disc's frame, and the slab a 2D slice becomes for the 2.5D model.
#include <cmath>

#include <gtest/gtest.h>

#include "spine/disc_grading.hpp"
#include "spine/labels.hpp"
#include "spine/preprocess.hpp"

namespace spine {
namespace {

constexpr double kPi = 3.14159265358979323846;

// Bodies as 40 x 25 mm rectangles along a spine tilted by `tilt_deg` (positive: the lower
// bodies further posterior), 10 mm discs between them, at 0.5 mm pixels.
struct SyntheticSlice {
  GradingSlice slice;
  std::vector<Point2> disc_centres_mm;
};

SyntheticSlice make_slice(const std::vector<int>& labels, double tilt_deg) {
  SyntheticSlice s;
  const double px = 0.5;
  s.slice.labels = LabelImage(make_geometry_2d(400, 500, {px, px}));
  s.slice.image = FloatImage(make_geometry_2d(400, 500, {px, px}), 10.f);
  const double t = tilt_deg * kPi / 180;
  const double ux = std::sin(t), uy = std::cos(t);  // down the spine
  const double body = 25, disc = 10, depth = 40;
  const double x0 = 80, y0 = 20;  // top of the first body's centre line, mm
  for (std::size_t i = 0; i < labels.size(); ++i) {
    const double a0 = static_cast<double>(i) * (body + disc);
    for (std::size_t y = 0; y < 500; ++y)
      for (std::size_t x = 0; x < 400; ++x) {
        const double dx = static_cast<double>(x) * px - x0, dy = static_cast<double>(y) * px - y0;
        const double along = dx * ux + dy * uy, across = dx * uy - dy * ux;
        if (along >= a0 && along < a0 + body && std::abs(across) < depth / 2) {
          s.slice.labels.at(x, y) = labels[i];
          s.slice.image.at(x, y) = 100.f;
        }
        // The disc below: bright in the picture, unlabelled (the locator works from bodies).
        if (i + 1 < labels.size() && along >= a0 + body && along < a0 + body + disc && std::abs(across) < depth / 2)
          s.slice.image.at(x, y) = 200.f;
      }
    const double c = a0 + body + disc / 2;
    s.disc_centres_mm.push_back({x0 + c * ux, y0 + c * uy});
  }
  return s;
}

TEST(LocateDiscs, BetweenConsecutiveBodiesNamedAndMeasured) {
  for (double tilt : {0.0, 20.0}) {
    const auto s = make_slice({22, 23, 24, label::kSacrum}, tilt);
    const auto discs = locate_discs(s.slice);
    ASSERT_EQ(discs.size(), 3u) << tilt;
    const char* names[] = {"L3/L4", "L4/L5", "L5/S"};
    for (std::size_t i = 0; i < 3; ++i) {
      EXPECT_EQ(discs[i].name, names[i]);
      EXPECT_EQ(discs[i].placement, "between bodies");
      EXPECT_NEAR(discs[i].centre_px.x * 0.5, s.disc_centres_mm[i].x, 1.0) << tilt << " " << i;
      EXPECT_NEAR(discs[i].centre_px.y * 0.5, s.disc_centres_mm[i].y, 1.0) << tilt << " " << i;
      EXPECT_NEAR(discs[i].height_mm, 10.0, 1.0);
      EXPECT_NEAR(discs[i].width_mm, 40.0, 2.0);
      EXPECT_NEAR(std::atan2(discs[i].axis.x, discs[i].axis.y) * 180 / kPi, tilt, 0.5);
      EXPECT_FALSE(discs[i].cut);
      EXPECT_TRUE(discs[i].flags.empty()) << discs[i].flags.front();
      EXPECT_NEAR(discs[i].turn_deg, 0.0, 1.0);
    }
  }
}

TEST(LocateDiscs, ABodyOffTheChainFlagsTheDiscsBesideIt) {
  // L2..L5 straight, then a 'sacrum' in front of and below L5 (bowel or pelvis taken for
  // it on real slices): the chain turns about 68 degrees and the pair lies 67 mm apart.
  auto s = make_slice({21, 22, 23, 24}, 0);
  for (std::size_t y = 300; y < 350; ++y)
    for (std::size_t x = 10; x < 60; ++x) s.slice.labels.at(x, y) = label::kSacrum;
  const auto discs = locate_discs(s.slice);
  ASSERT_EQ(discs.size(), 4u);
  EXPECT_TRUE(discs[0].flags.empty());
  EXPECT_TRUE(discs[1].flags.empty());
  ASSERT_EQ(discs[3].name, "L5/S");
  EXPECT_NEAR(discs[3].turn_deg, 68.2, 2.0);
  ASSERT_EQ(discs[3].flags.size(), 2u);  // the turn and the spacing
  EXPECT_NE(discs[3].flags[0].find("turns"), std::string::npos);
  EXPECT_NE(discs[3].flags[1].find("% of the typical spacing"), std::string::npos);
  // L4/L5 shares the kink: either disc may rest on the wrong body.
  ASSERT_EQ(discs[2].flags.size(), 1u);
  EXPECT_NE(discs[2].flags[0].find("turns"), std::string::npos);
}

TEST(LocateDiscs, NoDiscAcrossAMissingLevel) {
  // L3 and L5 without L4 between them: no disc is named across the gap.
  const auto s = make_slice({21, 22, 24}, 0);
  const auto discs = locate_discs(s.slice);
  ASSERT_EQ(discs.size(), 1u);
  EXPECT_EQ(discs[0].name, "L2/L3");
}

TEST(LocateDiscs, L5S1PlacedUnderL5WithoutSacrum) {
  const auto s = make_slice({22, 23, 24}, 10);
  const auto discs = locate_discs(s.slice);
  ASSERT_EQ(discs.size(), 3u);
  EXPECT_EQ(discs[2].name, "L5/S");
  EXPECT_NE(discs[2].placement.find("sacrum not segmented"), std::string::npos);
  EXPECT_LT(discs[2].height_mm, 0);  // not measured
  // 5 mm under L5's lower endplate, where a 10 mm disc's centre is.
  EXPECT_NEAR(discs[2].centre_px.x * 0.5, s.disc_centres_mm[2].x, 1.0);
  EXPECT_NEAR(discs[2].centre_px.y * 0.5, s.disc_centres_mm[2].y, 1.0);
}

TEST(LocateDiscs, T12L1PlacedAboveL1WithoutT12) {
  const double tilt = 10;
  const auto s = make_slice({20, 21, 22}, tilt);
  const auto discs = locate_discs(s.slice);
  ASSERT_EQ(discs.size(), 3u);
  EXPECT_EQ(discs[0].name, "T12/L1");
  EXPECT_EQ(discs[1].name, "L1/L2");
  EXPECT_NE(discs[0].placement.find("T12 not segmented"), std::string::npos);
  EXPECT_LT(discs[0].height_mm, 0);  // not measured
  // 4 mm above L1's upper endplate (which starts 20 mm down the centre line), axis head
  // to foot like every disc's, and not cut: the slice reaches above it.
  const double t = tilt * kPi / 180;
  EXPECT_NEAR(discs[0].centre_px.x * 0.5, 80 - 4 * std::sin(t), 1.0);
  EXPECT_NEAR(discs[0].centre_px.y * 0.5, 20 - 4 * std::cos(t), 1.0);
  EXPECT_NEAR(std::atan2(discs[0].axis.x, discs[0].axis.y) * 180 / kPi, tilt, 0.5);
  EXPECT_FALSE(discs[0].cut);
  EXPECT_TRUE(discs[0].flags.empty());

  // L1 running into the slice's upper edge: the disc above it is cut.
  auto edge = make_slice({20, 21, 22}, 0);
  for (std::size_t x = 0; x < 400; ++x)
    if (edge.slice.labels.at(x, 40) == 20)
      for (std::size_t y = 0; y < 40; ++y) edge.slice.labels.at(x, y) = 20;
  const auto cut = locate_discs(edge.slice);
  ASSERT_EQ(cut.size(), 3u);
  EXPECT_TRUE(cut[0].cut);
}

TEST(DiscPatches, TheDiscRunsAcrossThePatchCentre) {
  const auto s = make_slice({22, 23, 24, label::kSacrum}, 20);
  const auto discs = locate_discs(s.slice);
  PatchSpec spec;
  spec.posterior_shift_mm = 0;
  const Tensor p = disc_patches(s.slice.image, discs, spec);
  ASSERT_EQ(p.shape, (std::vector<std::int64_t>{3, 1, spec.height_px, spec.width_px}));
  // In the disc's frame the disc is a horizontal band: the centre row is disc (brightest),
  // rows 10 mm above and below are bodies.
  for (int d = 0; d < 3; ++d) {
    const float* img = p.data.data() + static_cast<std::ptrdiff_t>(d) * spec.height_px * spec.width_px;
    auto row_mean = [&](int r) {
      double sum = 0;
      for (int c = spec.width_px / 2 - 15; c < spec.width_px / 2 + 15; ++c) sum += img[r * spec.width_px + c];
      return sum / 30;
    };
    const int mid = spec.height_px / 2;
    const int off = static_cast<int>(std::lround(10 / spec.spacing_mm));
    EXPECT_GT(row_mean(mid), 0.95) << d;
    EXPECT_LT(row_mean(mid - off), 0.7) << d;
    EXPECT_LT(row_mean(mid + off), 0.7) << d;
    for (std::int64_t i = 0; i < spec.height_px * spec.width_px; ++i) ASSERT_TRUE(img[i] >= 0 && img[i] <= 1);
  }
}

TEST(SlabFromSlice, SagittalSlabInThePilFrame) {
  FloatImage slice(make_geometry_2d(30, 40, {0.7, 0.6}), 0.f);
  for (std::size_t i = 0; i < slice.voxels.size(); ++i) slice.voxels[i] = static_cast<float>(i);
  const FloatImage slab = slab_from_slice(slice, 21);
  EXPECT_EQ(orientation_code(slab.geometry), "PIL");
  ASSERT_EQ(slab.nz(), 21u);
  EXPECT_DOUBLE_EQ(slab.geometry.spacing[0], 0.7);
  EXPECT_DOUBLE_EQ(slab.geometry.spacing[1], 0.6);
  for (std::size_t k = 0; k < slab.nz(); k += 10) EXPECT_EQ(slab.at(7, 9, k), slice.at(7, 9));
}

}  // namespace
}  // namespace spine
