// CLAHE's clip limit and range, and N4's removal of a known synthetic bias field.
#include <cmath>

#include "spine/preprocess.hpp"
#include "test_util.hpp"

namespace spine {
namespace {

TEST(Clahe, OutputStaysInInputRange) {
  FloatImage img(make_geometry_2d(64, 48));
  for (std::size_t j = 0; j < 48; ++j)
    for (std::size_t i = 0; i < 64; ++i) img.at(i, j) = static_cast<float>(100 + (i * j) % 50);
  const FloatImage out = clahe(img, {});
  const auto in_r = intensity_range(img), out_r = intensity_range(out);
  EXPECT_GE(out_r.min, in_r.min - 1e-3);
  EXPECT_LE(out_r.max, in_r.max + 1e-3);
  EXPECT_EQ(out.geometry.size, img.geometry.size);
}

TEST(Clahe, MappingSlopeRespectsClipLimit) {
  // One tile, so the output is the tile mapping itself. Most pixels share one grey level;
  // without clipping that level's step would be huge. With clip limit c the step between
  // neighbouring levels can be at most about c (in bins) plus the redistributed share.
  FloatImage img(make_geometry_2d(256, 64));
  for (std::size_t j = 0; j < 64; ++j)
    for (std::size_t i = 0; i < 256; ++i) img.at(i, j) = j < 8 ? static_cast<float>(i) : 128.f;
  for (double clip : {1.0, 2.0, 4.0}) {
    ClaheConfig cfg;
    cfg.clip_limit = clip;
    cfg.tiles = {1, 1, 1};
    const FloatImage out = clahe(img, cfg);
    double max_step = 0;
    for (std::size_t i = 0; i + 1 < 256; ++i) max_step = std::max<double>(max_step, out.at(i + 1, 0) - out.at(i, 0));
    EXPECT_LE(max_step, clip + 1.0) << clip;  // +1: the evenly redistributed excess
    EXPECT_GT(max_step, 0.5 * clip) << clip;  // and the limit is actually reached
  }
  ClaheConfig unclipped;
  unclipped.clip_limit = 0;
  unclipped.tiles = {1, 1, 1};
  const FloatImage plain = clahe(img, unclipped);
  EXPECT_GT(plain.at(128, 0) - plain.at(127, 0), 50.f);  // plain equalisation: big jump
}

TEST(Clahe, WorksIn3D) {
  FloatImage img(make_geometry(32, 32, 16));
  for (std::size_t i = 0; i < img.voxels.size(); ++i) img.voxels[i] = static_cast<float>((i * 2654435761u) % 1000) / 10.f;
  ClaheConfig cfg;
  cfg.tiles = {4, 4, 2};
  const FloatImage out = clahe(img, cfg);
  const auto r = intensity_range(out);
  EXPECT_GE(r.min, -1e-3f);
  EXPECT_LE(r.max, 99.9f + 1e-3f);
}

TEST(N4, RemovesMostOfAKnownBiasField) {
  // Piecewise-constant "tissue" times a smooth field; N4 should flatten the field.
  FloatImage truth(make_geometry(48, 48, 32, {2, 2, 2}));
  FloatImage biased = truth;
  for (std::size_t k = 0; k < 32; ++k)
    for (std::size_t j = 0; j < 48; ++j)
      for (std::size_t i = 0; i < 48; ++i) {
        const float tissue = ((i / 12 + j / 12 + k / 8) % 2) ? 300.f : 200.f;
        const double field = std::exp(0.35 * std::sin(i / 30.0) + 0.25 * std::cos(j / 25.0) - 0.2 * k / 32.0);
        truth.at(i, j, k) = tissue;
        biased.at(i, j, k) = static_cast<float>(tissue * field);
      }
  N4Config cfg;
  cfg.shrink_factor = 2;
  const FloatImage corrected = n4_bias_correct(biased, nullptr, cfg);
  // Within one tissue class the spread (coefficient of variation) comes only from the field.
  auto cv = [&](const FloatImage& img) {
    double s = 0, s2 = 0;
    int n = 0;
    for (std::size_t i = 0; i < img.voxels.size(); ++i) {
      if (truth.voxels[i] != 200.f) continue;
      s += img.voxels[i];
      s2 += double(img.voxels[i]) * img.voxels[i];
      ++n;
    }
    const double m = s / n;
    return std::sqrt(s2 / n - m * m) / m;
  };
  const double before = cv(biased), after = cv(corrected);
  RecordProperty("cv_before", std::to_string(before));
  RecordProperty("cv_after", std::to_string(after));
  std::printf("N4: within-class coefficient of variation %.4f -> %.4f (%.0f%% removed)\n", before, after,
              100 * (1 - after / before));
  EXPECT_LT(after, 0.1 * before);  // at least 90 % of the field's spread removed (97 % measured)
}

}  // namespace
}  // namespace spine
