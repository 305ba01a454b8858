// The landmark model's preprocessing and output decoding in C++ equal the Python code
// the model was trained with (fixtures from scripts/make_test_models.py).
#include <algorithm>
#include <cmath>

#include "spine/io.hpp"
#include "spine/xray_landmarks.hpp"
#include "test_util.hpp"

namespace spine {
namespace {

TEST(XrayContract, PreprocessingMatchesPython) {
  const LoadedImage img = read_image(test::test_models() / "xray_contract.png");
  const Tensor t = xray_model_input(img.image);
  const auto expected = test::read_raw<float>(test::test_models() / "xray_contract_input.f32");
  ASSERT_EQ(t.data.size(), expected.size());
  double max_diff = 0;
  for (std::size_t i = 0; i < expected.size(); ++i) max_diff = std::max(max_diff, double(std::abs(t.data[i] - expected[i])));
  EXPECT_LT(max_diff, 1e-4);
}

TEST(XrayContract, DecodingMatchesPython) {
  Tensor out({1, 25, 128, 64});
  out.data = test::read_raw<float>(test::test_models() / "xray_contract_output.f32");
  ASSERT_EQ(out.data.size(), static_cast<std::size_t>(out.numel()));
  XrayLandmarkOptions plain;
  plain.sequence_constraint = false;  // Python's decode takes every heatmap's maximum
  const XrayLandmarks lm = decode_xray_landmarks(out, 301, 733, 4, 16.0, plain);
  const auto points = test::read_raw<double>(test::test_models() / "xray_contract_points.f64");
  const auto peaks = test::read_raw<double>(test::test_models() / "xray_contract_peaks.f64");
  ASSERT_EQ(points.size(), 136u);
  for (int k = 0; k < 68; ++k) {
    EXPECT_NEAR(lm.points[k].x, points[2 * k], 1e-3) << k;
    EXPECT_NEAR(lm.points[k].y, points[2 * k + 1], 1e-3) << k;
  }
  for (int v = 0; v < 17; ++v) EXPECT_NEAR(lm.confidence[v], peaks[v], 1e-6);
}

std::vector<Point2> as_points(const std::vector<double>& xy) {
  std::vector<Point2> p;
  for (std::size_t i = 0; i + 1 < xy.size(); i += 2) p.push_back({xy[i], xy[i + 1]});
  return p;
}

TEST(XrayContract, CornerCropsMatchPython) {
  const LoadedImage img = read_image(test::test_models() / "xray_contract.png");
  const auto points = as_points(test::read_raw<double>(test::test_models() / "xray_corner_points.f64"));
  ASSERT_EQ(points.size(), 68u);
  const XrayCornerCrops crops = xray_corner_crops(img.image, points);
  const auto expected = test::read_raw<float>(test::test_models() / "xray_corner_crops.f32");
  ASSERT_EQ(crops.crops.data.size(), expected.size());
  double max_diff = 0;
  for (std::size_t i = 0; i < expected.size(); ++i)
    max_diff = std::max(max_diff, double(std::abs(crops.crops.data[i] - expected[i])));
  EXPECT_LT(max_diff, 1e-3);
}

TEST(XrayContract, CornerDecodingMatchesPython) {
  const LoadedImage img = read_image(test::test_models() / "xray_contract.png");
  const auto points = as_points(test::read_raw<double>(test::test_models() / "xray_corner_points.f64"));
  const XrayCornerCrops crops = xray_corner_crops(img.image, points);
  Tensor heat({17, 4, 40, 64});
  heat.data = test::read_raw<float>(test::test_models() / "xray_corner_heat.f32");
  ASSERT_EQ(heat.data.size(), static_cast<std::size_t>(heat.numel()));
  XrayLandmarks lm;
  lm.points = points;
  lm.confidence.assign(17, 0.7);
  apply_corner_heatmaps(heat, crops, img.image.nx(), img.image.ny(), 2, 0.1, lm);
  const auto refined = as_points(test::read_raw<double>(test::test_models() / "xray_corner_refined.f64"));
  ASSERT_EQ(refined.size(), 68u);
  for (int k = 0; k < 68; ++k) {
    EXPECT_NEAR(lm.points[k].x, refined[k].x, 1e-3) << k;
    EXPECT_NEAR(lm.points[k].y, refined[k].y, 1e-3) << k;
  }
  // The corner without a clear peak kept its first-stage position and is listed.
  EXPECT_EQ(lm.corners_unrefined, std::vector<std::string>{"T4 BL"});
  EXPECT_DOUBLE_EQ(lm.points[14].x, points[14].x);
  ASSERT_EQ(lm.landmark_confidence.size(), 68u);
  EXPECT_NEAR(lm.landmark_confidence[0], 0.7, 1e-9);  // min(vertebra 0.7, corner peak 0.8)
  EXPECT_LT(lm.landmark_confidence[14], 0.1);
}

TEST(XrayContract, SequenceConstraintFixesACollapsedVertebra) {
  // Heatmap 8 peaks on vertebra 7's position but has a weaker peak where it belongs.
  Tensor out({1, 25, 128, 64}, 0.f);
  const std::size_t plane = 128 * 64;
  for (int v = 0; v < 17; ++v) out.data[v * plane + (5 + 7 * v) * 64 + 30] = 0.9f;
  out.data[8 * plane + (5 + 7 * 8) * 64 + 30] = 0.5f;
  out.data[8 * plane + (5 + 7 * 7) * 64 + 30] = 0.8f;
  XrayLandmarkOptions plain;
  plain.sequence_constraint = false;
  const XrayLandmarks a = decode_xray_landmarks(out, 256, 512, 4, 16.0, plain);
  const XrayLandmarks b = decode_xray_landmarks(out, 256, 512, 4, 16.0);
  auto centre_y = [](const XrayLandmarks& l, int v) {
    return (l.points[4 * v].y + l.points[4 * v + 1].y + l.points[4 * v + 2].y + l.points[4 * v + 3].y) / 4;
  };
  EXPECT_NEAR(centre_y(a, 8), centre_y(a, 7), 1e-6);         // collapsed without the constraint
  EXPECT_NEAR(centre_y(b, 8) - centre_y(b, 7), 28.0, 1e-6);   // 7 output px = 28 image px
  EXPECT_EQ(b.sequence_adjusted, std::vector<std::string>{"T9"});
  EXPECT_TRUE(b.flags.empty());
  EXPECT_NE(std::find(a.flags.begin(), a.flags.end(), "vertebra order broken"), a.flags.end());
}

// The curve is flagged when an end vertebra's endplate corners are low-confidence or the
// sequence constraint moved an end vertebra; a moved vertebra elsewhere is only listed.
TEST(XrayContract, CurveReliabilityFlagsConcernTheEndVertebrae) {
  XrayLandmarks lm;
  lm.landmark_confidence.assign(kCobbLandmarks, 0.9);
  CobbAngles a;
  a.major.upper_end = 4;  // T5
  a.major.lower_end = 11; // T12
  lm.sequence_adjusted = {"T8"};
  flag_curve_reliability(a, 0.3, lm);
  EXPECT_TRUE(lm.flags.empty());
  lm.landmark_confidence[4 * 11 + 2] = 0.2;  // T12's lower endplate, the one measured
  lm.landmark_confidence[4 * 4 + 2] = 0.1;   // T5's lower endplate: not measured
  lm.sequence_adjusted = {"T5", "T8"};
  flag_curve_reliability(a, 0.3, lm);
  ASSERT_EQ(lm.flags.size(), 2u);
  EXPECT_NE(lm.flags[0].find("end vertebra T12 of the major curve is low-confidence"), std::string::npos) << lm.flags[0];
  EXPECT_NE(lm.flags[1].find("end vertebra T5 of the major curve was placed by the sequence constraint"),
            std::string::npos) << lm.flags[1];
}

}  // namespace
}  // namespace spine
