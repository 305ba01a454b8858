// The landmark model's preprocessing and output decoding in C++ equal the Python code
// the model was trained with (fixtures from scripts/make_test_models.py).
#include <cmath>
#include <cstring>

#include "spine/io.hpp"
#include "spine/xray_landmarks.hpp"
#include "test_util.hpp"

namespace spine {
namespace {

template <class T>
std::vector<T> read_raw(const std::filesystem::path& p) {
  const std::string bytes = test::read_file(p);
  std::vector<T> v(bytes.size() / sizeof(T));
  std::memcpy(v.data(), bytes.data(), v.size() * sizeof(T));
  return v;
}

TEST(XrayContract, PreprocessingMatchesPython) {
  const LoadedImage img = read_image(test::test_models() / "xray_contract.png");
  const Tensor t = xray_model_input(img.image);
  const auto expected = read_raw<float>(test::test_models() / "xray_contract_input.f32");
  ASSERT_EQ(t.data.size(), expected.size());
  double max_diff = 0;
  for (std::size_t i = 0; i < expected.size(); ++i) max_diff = std::max(max_diff, double(std::abs(t.data[i] - expected[i])));
  EXPECT_LT(max_diff, 1e-4);
}

TEST(XrayContract, DecodingMatchesPython) {
  Tensor out({1, 25, 128, 64});
  out.data = read_raw<float>(test::test_models() / "xray_contract_output.f32");
  ASSERT_EQ(out.data.size(), static_cast<std::size_t>(out.numel()));
  const XrayLandmarks lm = decode_xray_landmarks(out, 301, 733, 4, 16.0);
  const auto points = read_raw<double>(test::test_models() / "xray_contract_points.f64");
  const auto peaks = read_raw<double>(test::test_models() / "xray_contract_peaks.f64");
  ASSERT_EQ(points.size(), 136u);
  for (int k = 0; k < 68; ++k) {
    EXPECT_NEAR(lm.points[k].x, points[2 * k], 1e-3) << k;
    EXPECT_NEAR(lm.points[k].y, points[2 * k + 1], 1e-3) << k;
  }
  for (int v = 0; v < 17; ++v) EXPECT_NEAR(lm.confidence[v], peaks[v], 1e-6);
}

TEST(XrayContract, VertebraCropsMatchPython) {
  const LoadedImage img = read_image(test::test_models() / "xray_contract.png");
  const XrayWorkingImage working = xray_working_image(img.image);
  std::vector<Point2> centres;
  std::vector<double> halves;
  for (int k = 0; k < 17; ++k) {
    centres.push_back({100.0 + 10 * k, 40.0 + 55 * k});
    halves.push_back(30.0 + 20.0 * k / 16);
  }
  const Tensor crops = xray_vertebra_crops(working, centres, halves);
  const auto expected = read_raw<float>(test::test_models() / "xray_contract_crops.f32");
  ASSERT_EQ(crops.data.size(), expected.size());
  double max_diff = 0;
  for (std::size_t i = 0; i < expected.size(); ++i) max_diff = std::max(max_diff, double(std::abs(crops.data[i] - expected[i])));
  EXPECT_LT(max_diff, 1e-3);
}

}  // namespace
}  // namespace spine
