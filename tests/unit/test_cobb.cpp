// Cobb angles from landmarks: known synthetic geometry, grading, SMAPE, and agreement
// with the AASCE reference angles when the real data is present.
#include <cmath>
#include <fstream>
#include <sstream>

#include "spine/cobb.hpp"
#include "spine/commands/cobb_cmd.hpp"
#include "spine/error.hpp"
#include "spine/io.hpp"
#include "spine/render.hpp"
#include "test_util.hpp"

namespace spine {
namespace {

constexpr double kPi = 3.14159265358979323846;

// 17 vertebrae with the given tilts (degrees, positive = image-right side lower),
// centres following `lateral(v)` in x, 60 px apart in y.
std::vector<Point2> synthetic_spine(const std::vector<double>& tilt, double (*lateral)(int)) {
  std::vector<Point2> pts;
  for (int v = 0; v < 17; ++v) {
    const double t = tilt[v] * kPi / 180, cx = 500 + lateral(v), cy = 200 + 60.0 * v;
    const double ux = std::cos(t), uy = std::sin(t);  // along the endplate
    const double vx = -std::sin(t), vy = std::cos(t);  // along the body axis (down)
    for (auto [su, sv] : {std::pair{-1.0, -1.0}, {1.0, -1.0}, {-1.0, 1.0}, {1.0, 1.0}})
      pts.push_back({cx + su * 20 * ux + sv * 15 * vx, cy + su * 20 * uy + sv * 15 * vy});
  }
  return pts;
}

// Overlay text stays on the canvas: a line too long for a narrow picture is moved in and
// shrunk, not cut at the right edge (the Cobb summary on narrow radiographs).
TEST(OverlayText, LongLineStaysOnTheCanvas) {
  RgbImage canvas{120, 40, std::vector<std::uint8_t>(120 * 40 * 3, 0)};
  draw_text(canvas, "Cobb 62.8 deg T10-L3 (severe)", {60, 5}, 14, {255, 255, 255});
  auto lit_in_columns = [&](std::size_t x0, std::size_t x1) {
    int n = 0;
    for (std::size_t y = 0; y < canvas.height; ++y)
      for (std::size_t x = x0; x < x1; ++x) n += canvas.rgb[(y * canvas.width + x) * 3] > 128;
    return n;
  };
  EXPECT_GT(lit_in_columns(0, 40), 0);              // moved in from x = 60
  EXPECT_EQ(lit_in_columns(118, 120), 0);           // nothing runs into the last columns
}

// text_width is the room a line takes: drawn with that much room, it keeps its place and
// its size (spine-measure sizes its overlay's panel by it), and nothing lies beyond it.
TEST(OverlayText, TextWidthIsTheRoomALineTakes) {
  const std::string text = "T12 18.7/16.1/21.9 mm 126 HU G2 biconcave !";
  const int w = text_width(text, 20);
  ASSERT_GT(w, 100);
  const std::size_t x0 = 30;
  RgbImage canvas{x0 + static_cast<std::size_t>(w) + 40, 50, {}};
  canvas.rgb.assign(canvas.width * canvas.height * 3, 0);
  draw_text(canvas, text, {static_cast<double>(x0), 10}, 20, {255, 255, 255});
  std::size_t first = canvas.width, last = 0;
  for (std::size_t y = 0; y < canvas.height; ++y)
    for (std::size_t x = 0; x < canvas.width; ++x)
      if (canvas.rgb[(y * canvas.width + x) * 3] > 128) first = std::min(first, x), last = std::max(last, x);
  EXPECT_GE(first, x0);                                // not moved in
  EXPECT_LT(last, x0 + static_cast<std::size_t>(w));   // within the width it said
  EXPECT_GT(last, x0 + static_cast<std::size_t>(w) * 3 / 4);  // and not shrunk
}

// The int8 landmark models run on the CPU only (LibTorch has no quantized operators on
// CUDA): asked for elsewhere, a usage error before anything loads, not a failure later.
TEST(CobbPrecision, Int8OnTheCpuOnly) {
  EXPECT_EQ(landmark_precision("fp32", "cpu"), "fp32");
  EXPECT_EQ(landmark_precision("int8", "cpu"), "int8");
  EXPECT_EQ(landmark_precision("fp32", "cuda:1"), "fp32");
  EXPECT_THROW(landmark_precision("int8", "cuda:0"), Error);
}

TEST(Cobb, SingleCurveOfKnownAngle) {
  std::vector<double> tilt(17);
  for (int v = 0; v < 17; ++v) tilt[v] = v <= 3 ? -12 : (v >= 13 ? 13 : -12 + 25.0 * (v - 3) / 10);
  const auto pts = synthetic_spine(tilt, [](int v) { return 80 * std::sin(kPi * v / 16.0); });
  const CobbAngles a = compute_cobb_angles(pts, 2000);
  EXPECT_NEAR(a.aasce_deg[0], 25.0, 1e-9);
  EXPECT_NEAR(a.major.angle_deg, 25.0, 1e-9);
  EXPECT_FALSE(a.s_shaped);
  EXPECT_LE(a.major.upper_end, 3);
  EXPECT_GE(a.major.lower_end, 13);
  EXPECT_GE(a.major.apex, 7);  // the most lateral vertebra between the end vertebrae
  EXPECT_LE(a.major.apex, 9);
  EXPECT_EQ(a.major.convex_side_image, "image-right");
  EXPECT_EQ(grade_curve(a.major.angle_deg), "moderate");
}

TEST(Cobb, StraightSpineHasZeroAngles) {
  const auto pts = synthetic_spine(std::vector<double>(17, 3.0), [](int) { return 0.0; });
  const CobbAngles a = compute_cobb_angles(pts, 2000);
  for (double v : a.aasce_deg) EXPECT_NEAR(v, 0, 1e-6);
  EXPECT_EQ(grade_curve(a.major.angle_deg), "spinal curve");
}

TEST(Cobb, Grading) {
  EXPECT_EQ(grade_curve(9.9), "spinal curve");
  EXPECT_EQ(grade_curve(10), "mild");
  EXPECT_EQ(grade_curve(25), "moderate");
  EXPECT_EQ(grade_curve(40.5), "severe");
  EXPECT_EQ(grade_curve(15, {5, 15, 30}), "moderate");
}

TEST(Cobb, Smape) {
  EXPECT_NEAR(smape_percent({10, 20, 30}, {10, 20, 30}), 0, 1e-12);
  EXPECT_NEAR(smape_percent({12, 20, 30}, {10, 20, 30}), 100.0 * 2 / 122, 1e-12);
}

TEST(Cobb, RejectsWrongLandmarkCount) {
  EXPECT_THROW(compute_cobb_angles(std::vector<Point2>(67), 100), Error);
}

TEST(Cobb, ReproducesAasceReferenceAngles) {
  const auto dir = test::shared_data() / "xray-ap-aasce";
  if (!std::filesystem::exists(dir / "landmarks.csv")) GTEST_SKIP() << "shared data not present";
  std::ifstream lm(dir / "landmarks.csv"), an(dir / "angles.csv");
  std::string line_l, line_a;
  std::getline(lm, line_l);
  std::getline(an, line_a);
  int n = 0, within_1deg = 0;
  double smape_sum = 0;
  while (std::getline(lm, line_l) && std::getline(an, line_a)) {
    std::stringstream sl(line_l), sa(line_a);
    std::string name, cell;
    std::getline(sl, name, ',');
    std::vector<double> v;
    while (std::getline(sl, cell, ',')) v.push_back(std::stod(cell));
    std::getline(sa, cell, ',');
    ASSERT_EQ(cell, name);
    std::array<double, 3> ref{};
    for (auto& r : ref) {
      std::getline(sa, cell, ',');
      r = std::stod(cell);
    }
    std::vector<Point2> pts;
    for (int k = 0; k < 68; ++k) pts.push_back({v[2 * k], v[2 * k + 1]});
    const double height = static_cast<double>(read_image(dir / "images" / name).image.ny());
    const CobbAngles a = compute_cobb_angles(pts, height);
    smape_sum += smape_percent(a.aasce_deg, ref);
    bool ok = true;
    for (int k = 0; k < 3; ++k) ok = ok && std::abs(a.aasce_deg[k] - ref[k]) < 1.0;
    within_1deg += ok;
    ++n;
  }
  const double smape = smape_sum / n;
  std::printf("AASCE rule on reference landmarks: %d/%d triples within 1 deg, SMAPE %.3f %%\n", within_1deg, n, smape);
  EXPECT_EQ(n, 481);
  EXPECT_GE(within_1deg, 468);
  EXPECT_LT(smape, 0.5);
}

}  // namespace
}  // namespace spine
