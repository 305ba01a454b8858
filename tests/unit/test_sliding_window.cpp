// Sliding-window inference equals whole-image inference for a fully convolutional
// (pointwise) model, in 2D and 3D, with and without mirroring and a region of interest.
#include <cmath>
#include <random>

#include "spine/model.hpp"
#include "spine/sliding_window.hpp"
#include "test_util.hpp"

namespace spine {
namespace {

Tensor random_input(std::vector<std::int64_t> shape, unsigned seed) {
  Tensor t(std::move(shape));
  std::mt19937 rng(seed);
  std::normal_distribution<float> n(0, 1);
  for (auto& v : t.data) v = n(rng);
  return t;
}

Tensor whole(const Model& m, const Tensor& in) {
  Tensor batch = in;
  batch.shape.insert(batch.shape.begin(), 1);
  Tensor out = m.forward(batch);
  out.shape.erase(out.shape.begin());
  return out;
}

double max_abs_diff(const std::vector<float>& a, const std::vector<float>& b) {
  double d = 0;
  for (std::size_t i = 0; i < a.size(); ++i) d = std::max(d, double(std::abs(a[i] - b[i])));
  return d;
}

TEST(SlidingWindow, Equals2DWholeImage) {
  const Model m = Model::load(test::test_models() / "pointwise2d.pt", {"test-pointwise", {}, 2});
  const Tensor in = random_input({1, 45, 70}, 1);  // not a multiple of the patch
  const Tensor ref = whole(m, in);
  for (bool mirror : {false, true}) {
    SlidingWindowConfig cfg;
    cfg.patch = {32, 16, 1};
    cfg.overlap = 0.5;
    cfg.mirror = mirror;
    cfg.batch_size = 3;
    const Tensor out = sliding_window_inference(in, 2, cfg, [&](const Tensor& b) { return m.forward(b); });
    ASSERT_EQ(out.shape, ref.shape);
    EXPECT_LT(max_abs_diff(out.data, ref.data), 1e-5) << "mirror " << mirror;
  }
}

TEST(SlidingWindow, Equals3DWholeImageAndCropsToRoi) {
  const Model m = Model::load(test::test_models() / "pointwise3d.pt", {"test-pointwise", {}, 3});
  const Tensor in = random_input({1, 19, 23, 30}, 2);  // [C, Z, Y, X]
  const Tensor ref = whole(m, in);
  SlidingWindowConfig cfg;
  cfg.patch = {16, 16, 8};
  cfg.overlap = 0.25;
  const auto predict = [&](const Tensor& b) { return m.forward(b); };
  const Tensor out = sliding_window_inference(in, 3, cfg, predict);
  ASSERT_EQ(out.shape, ref.shape);
  EXPECT_LT(max_abs_diff(out.data, ref.data), 1e-5);

  cfg.roi = VoxelBox{{5, 3, 2}, {25, 20, 15}};
  cfg.mirror = true;
  const Tensor roi = sliding_window_inference(in, 3, cfg, predict);
  ASSERT_EQ(roi.shape, (std::vector<std::int64_t>{3, 13, 17, 20}));
  double d = 0;
  for (std::int64_t k = 0; k < 3; ++k)
    for (std::int64_t z = 0; z < 13; ++z)
      for (std::int64_t y = 0; y < 17; ++y)
        for (std::int64_t x = 0; x < 20; ++x) {
          const float a = roi.data[((k * 13 + z) * 17 + y) * 20 + x];
          const float b = ref.data[((k * 19 + z + 2) * 23 + y + 3) * 30 + x + 5];
          d = std::max(d, double(std::abs(a - b)));
        }
  EXPECT_LT(d, 1e-5);
}

TEST(SlidingWindow, ImageSmallerThanPatchIsPadded) {
  const Model m = Model::load(test::test_models() / "pointwise2d.pt", {"test-pointwise", {}, 2});
  const Tensor in = random_input({1, 10, 12}, 3);
  SlidingWindowConfig cfg;
  cfg.patch = {32, 32, 1};
  const Tensor out = sliding_window_inference(in, 2, cfg, [&](const Tensor& b) { return m.forward(b); });
  EXPECT_LT(max_abs_diff(out.data, whole(m, in).data), 1e-5);
}

TEST(SlidingWindow, BatchesAreBounded) {
  // The predictor never sees more than batch_size windows nor anything but patch size.
  const Tensor in = random_input({1, 40, 40, 40}, 4);
  SlidingWindowConfig cfg;
  cfg.patch = {16, 16, 16};
  cfg.batch_size = 2;
  int calls = 0;
  const Tensor out = sliding_window_inference(in, 3, cfg, [&](const Tensor& b) {
    ++calls;
    EXPECT_LE(b.shape[0], 2);
    EXPECT_EQ(b.shape[2], 16);
    return b;  // identity model
  });
  EXPECT_GT(calls, 1);
  EXPECT_LT(max_abs_diff(out.data, in.data), 1e-5);
}

}  // namespace
}  // namespace spine
