// The spine finder's input equals the Python letterbox it was trained with; its decoding
// maps keypoints back to image pixels, frames the crop with the training images' margins,
// and flags what it did not find.
#include <algorithm>
#include <cmath>

#include "spine/io.hpp"
#include "spine/xray_spine_finder.hpp"
#include "test_util.hpp"

namespace spine {
namespace {

constexpr int kOut = 64;

Tensor finder_output() { return Tensor({1, 4, kOut, kOut}, 0.f); }

void put_peak(Tensor& t, int channel, int x, int y, float value = 0.9f) {
  for (int dy = -2; dy <= 2; ++dy)
    for (int dx = -2; dx <= 2; ++dx) {
      const int xx = x + dx, yy = y + dy;
      if (xx < 0 || yy < 0 || xx >= kOut || yy >= kOut) continue;
      t.data[(static_cast<std::size_t>(channel) * kOut + yy) * kOut + xx] =
          value * static_cast<float>(std::exp(-(dx * dx + dy * dy) / (2 * 1.5 * 1.5)));
    }
}

void fill(Tensor& t, int channel, int x0, int y0, int x1, int y1, float value) {
  for (int y = y0; y <= y1; ++y)
    for (int x = x0; x <= x1; ++x) t.data[(static_cast<std::size_t>(channel) * kOut + y) * kOut + x] = value;
}

TEST(SpineFinder, InputMatchesPython) {
  const LoadedImage img = read_image(test::test_models() / "xray_contract.png");
  double placement[4];
  const Tensor t = spine_finder_input(img.image, placement);
  const auto expected = test::read_raw<float>(test::test_models() / "finder_contract_input.f32");
  ASSERT_EQ(t.data.size(), expected.size());
  double max_diff = 0;
  for (std::size_t i = 0; i < expected.size(); ++i) max_diff = std::max(max_diff, double(std::abs(t.data[i] - expected[i])));
  EXPECT_LT(max_diff, 1e-4);
  // 733 x 301 -> 256 high, round(301 * 256 / 733) = 105 wide, centred.
  EXPECT_NEAR(placement[0], 105.0 / 301, 1e-12);
  EXPECT_NEAR(placement[1], 256.0 / 733, 1e-12);
  EXPECT_EQ(placement[2], (256 - 105) / 2);
  EXPECT_EQ(placement[3], 0);
}

// A 1000 x 2000 film: letterboxed to 128 x 256 at x offset 64; T1 and L5 found in its
// upper middle; the crop is framed around them with the training images' margins.
TEST(SpineFinder, KeypointsMapToImagePixelsAndFrameTheCrop) {
  Tensor out = finder_output();
  put_peak(out, 0, 32, 10);
  put_peak(out, 1, 32, 40);
  fill(out, 2, 29, 10, 35, 40, 0.9f);
  const double placement[4] = {128.0 / 1000, 256.0 / 2000, 64, 0};
  const SpineLocation loc = decode_spine_finder(out, placement, 1000, 2000);
  ASSERT_TRUE(loc.t1_found && loc.l5_found);
  // output pixel centre (32.5 * 4, 10.5 * 4) in input pixels, minus the offset, / scale
  EXPECT_NEAR(loc.t1_top.x, (32.5 * 4 - 64) / 0.128 - 0.5, 1e-6);
  EXPECT_NEAR(loc.t1_top.y, (10.5 * 4) / 0.128 - 0.5, 1e-6);
  EXPECT_NEAR(loc.l5_bottom.y, (40.5 * 4) / 0.128 - 0.5, 1e-6);
  const double L = loc.l5_bottom.y - loc.t1_top.y;
  EXPECT_NEAR(loc.crop.y0, std::floor(loc.t1_top.y - 0.04 * L), 1e-9);
  EXPECT_NEAR(loc.crop.y1, std::ceil(loc.l5_bottom.y + 0.09 * L), 1e-9);
  EXPECT_NEAR(loc.crop.x0, std::floor(loc.t1_top.x - 0.21 * L), 1e-9);
  EXPECT_NEAR(loc.crop.x1, std::ceil(loc.t1_top.x + 0.21 * L), 1e-9);
  EXPECT_TRUE(loc.flags.empty());
  EXPECT_GT(loc.column_at(loc.t1_top), 0.5);
  EXPECT_LT(loc.column_at({10, 10}), 0.1);
}

// A film already framed like the training images keeps its whole frame.
TEST(SpineFinder, TightFilmIsNotCropped) {
  Tensor out = finder_output();
  put_peak(out, 0, 32, 1);
  put_peak(out, 1, 32, 60);
  const double placement[4] = {128.0 / 400, 256.0 / 800, 64, 0};  // the film fills 128 x 256 of 256 x 256
  const SpineLocation loc = decode_spine_finder(out, placement, 400, 800);
  EXPECT_EQ(loc.crop.x0, 0);
  EXPECT_EQ(loc.crop.y0, 0);
  EXPECT_EQ(loc.crop.x1, 400);
  EXPECT_EQ(loc.crop.y1, 800);
}

TEST(SpineFinder, MissingKeypointsAndHardwareAreFlagged) {
  const double placement[4] = {0.128, 0.128, 64, 0};
  Tensor none = finder_output();
  const SpineLocation a = decode_spine_finder(none, placement, 1000, 2000);
  EXPECT_FALSE(a.t1_found || a.l5_found);
  ASSERT_EQ(a.flags.size(), 1u);
  EXPECT_NE(a.flags[0].find("no frontal spine found"), std::string::npos);
  EXPECT_EQ(a.crop.width(), 1000);

  Tensor chest = finder_output();
  put_peak(chest, 0, 32, 10);
  fill(chest, 3, 31, 20, 32, 21, 0.9f);  // 4 hardware pixels
  const SpineLocation b = decode_spine_finder(chest, placement, 1000, 2000);
  EXPECT_EQ(b.hardware_pixels, 4);
  ASSERT_EQ(b.flags.size(), 2u);
  EXPECT_NE(b.flags[0].find("hardware"), std::string::npos);
  EXPECT_NE(b.flags[1].find("L5 not found"), std::string::npos);
  EXPECT_EQ(b.crop.height(), 2000);

  // "L5" right at the lower edge: a spine that continues out of view.
  Tensor cut = finder_output();
  put_peak(cut, 0, 32, 10);
  cut.data[(1 * kOut + 63) * kOut + 32] = 0.9f;  // a single pixel: its centre is the peak
  const SpineLocation d = decode_spine_finder(cut, placement, 1000, 2000);
  ASSERT_EQ(d.flags.size(), 1u);
  EXPECT_NE(d.flags[0].find("lower edge"), std::string::npos);

  Tensor upside_down = finder_output();
  put_peak(upside_down, 0, 32, 40);
  put_peak(upside_down, 1, 32, 10);
  const SpineLocation c = decode_spine_finder(upside_down, placement, 1000, 2000);
  ASSERT_EQ(c.flags.size(), 1u);
  EXPECT_NE(c.flags[0].find("implausible"), std::string::npos);
}

TEST(SpineFinder, VertebraeOffTheColumnAreNamed) {
  Tensor out = finder_output();
  put_peak(out, 0, 32, 10);
  put_peak(out, 1, 32, 40);
  fill(out, 2, 30, 10, 34, 40, 0.9f);
  const double placement[4] = {0.128, 0.128, 64, 0};
  const SpineLocation loc = decode_spine_finder(out, placement, 1000, 2000);
  std::vector<Point2> points;
  for (int v = 0; v < kCobbVertebrae; ++v) {
    const double y = loc.t1_top.y + (v + 0.5) * (loc.l5_bottom.y - loc.t1_top.y) / kCobbVertebrae;
    const double x = v == 5 ? loc.t1_top.x + 200 : loc.t1_top.x;  // T6 far to the side
    for (int k = 0; k < 4; ++k) points.push_back({x + (k % 2 ? 15 : -15), y + (k / 2 ? 10 : -10)});
  }
  EXPECT_EQ(vertebrae_off_column(loc, points), std::vector<std::string>{"T6"});
}

TEST(SpineFinder, CropCopiesTheBox) {
  FloatImage img(make_geometry_2d(10, 8));
  for (std::size_t i = 0; i < img.voxels.size(); ++i) img.voxels[i] = static_cast<float>(i);
  const FloatImage c = crop_image(img, {2, 3, 6, 8});
  ASSERT_EQ(c.nx(), 4u);
  ASSERT_EQ(c.ny(), 5u);
  EXPECT_EQ(c.at(0, 0), img.at(2, 3));
  EXPECT_EQ(c.at(3, 4), img.at(5, 7));
}

}  // namespace
}  // namespace spine
