// Each vertebra's tilt blended with the direction across the centreline through its
// neighbours' centres (blend_tilts_with_centreline in include/spine/xray_landmarks.hpp), the
// two stages' corners combined, and how a split reading shares out an ensemble's passes.
#include <cmath>
#include <vector>

#include <gtest/gtest.h>

#include "spine/error.hpp"
#include "spine/xray_landmarks.hpp"

namespace spine {
namespace {

constexpr double kPi = 3.14159265358979323846;

// 17 rectangles 60 x 30 px with centres at `centres`, vertebra v turned by tilt_deg[v].
std::vector<Point2> chain(const std::vector<Point2>& centres, const std::vector<double>& tilt_deg) {
  std::vector<Point2> pts;
  for (int v = 0; v < 17; ++v) {
    const double a = tilt_deg[v] * kPi / 180, cs = std::cos(a), sn = std::sin(a);
    for (const auto& [x, y] : {std::pair{-30.0, -15.0}, {30.0, -15.0}, {-30.0, 15.0}, {30.0, 15.0}})
      pts.push_back({centres[v].x + cs * x - sn * y, centres[v].y + sn * x + cs * y});
  }
  return pts;
}

// A centreline x = 300 + 40 sin(pi v / 16), 45 px between vertebrae: a C-shaped curve.
std::vector<Point2> curved_centres() {
  std::vector<Point2> c;
  for (int v = 0; v < 17; ++v) c.push_back({300 + 40 * std::sin(kPi * v / 16), 100.0 + 45 * v});
  return c;
}

Point2 centre_of(const std::vector<Point2>& p, int v) {
  return {(p[4 * v].x + p[4 * v + 1].x + p[4 * v + 2].x + p[4 * v + 3].x) / 4,
          (p[4 * v].y + p[4 * v + 1].y + p[4 * v + 2].y + p[4 * v + 3].y) / 4};
}

TEST(CentrelineTilt, ReadsTheCentrelinesDirection) {
  // A straight spine leaning right as it descends (x grows 9 px per 45 px): the direction
  // across it has its right end higher (y down), a tilt of -atan(9 / 45).
  std::vector<Point2> c;
  for (int v = 0; v < 17; ++v) c.push_back({300.0 + 9 * v, 100.0 + 45 * v});
  const auto pts = chain(c, std::vector<double>(17, 0.0));
  const double expected = -std::atan(9.0 / 45.0) * 180 / kPi;
  for (int v : {0, 8, 16}) EXPECT_NEAR(centreline_tilt_deg(pts, v), expected, 1e-9);
  EXPECT_NEAR(vertebra_tilt_deg(pts, 8), 0, 1e-9);
}

TEST(CentrelineTilt, WeightMovesTiltsTowardsTheCentrelineAndKeepsCentres) {
  const auto c = curved_centres();
  std::vector<double> tilt(17, 3.0);
  tilt[8] = -20;  // one vertebra read far off
  auto pts = chain(c, tilt);
  const auto before = pts;
  std::vector<double> across(17);
  for (int v = 0; v < 17; ++v) across[v] = centreline_tilt_deg(before, v);
  const CentrelineTiltResult r = blend_tilts_with_centreline(pts, 0.25, 0.25);
  ASSERT_TRUE(r.applied);
  for (int v = 0; v < 17; ++v) {
    EXPECT_NEAR(vertebra_tilt_deg(pts, v), tilt[v] + 0.25 * (across[v] - tilt[v]), 1e-9) << v;
    EXPECT_NEAR(centre_of(pts, v).x, centre_of(before, v).x, 1e-9);
    EXPECT_NEAR(centre_of(pts, v).y, centre_of(before, v).y, 1e-9);
    EXPECT_NEAR(centreline_tilt_deg(pts, v), across[v], 1e-9);  // the centreline did not move
  }
  EXPECT_EQ(r.largest_change_vertebra, 8);
  EXPECT_NEAR(r.largest_change_deg, 0.25 * (across[8] + 20), 1e-9);
  // Weight 1 lays every vertebra across the centreline.
  auto full = before;
  ASSERT_TRUE(blend_tilts_with_centreline(full, 1.0, 1.0).applied);
  for (int v = 0; v < 17; ++v) EXPECT_NEAR(vertebra_tilt_deg(full, v), across[v], 1e-9);
}

// T1 and L5 take end_weight (their centreline is the line to their one neighbour); the
// vertebrae between them take weight.
TEST(CentrelineTilt, EndVertebraeTakeTheirOwnWeight) {
  const auto c = curved_centres();
  std::vector<double> tilt(17, 3.0);
  tilt[0] = -10;
  tilt[16] = 15;
  auto pts = chain(c, tilt);
  const auto before = pts;
  std::vector<double> across(17);
  for (int v = 0; v < 17; ++v) across[v] = centreline_tilt_deg(before, v);
  ASSERT_TRUE(blend_tilts_with_centreline(pts, 0.24, 0.0).applied);
  EXPECT_NEAR(vertebra_tilt_deg(pts, 0), -10, 1e-9);
  EXPECT_NEAR(vertebra_tilt_deg(pts, 16), 15, 1e-9);
  for (int v = 1; v < 16; ++v) EXPECT_NEAR(vertebra_tilt_deg(pts, v), 3 + 0.24 * (across[v] - 3), 1e-9) << v;
  auto ends_only = before;
  ASSERT_TRUE(blend_tilts_with_centreline(ends_only, 0.0, 0.5).applied);
  EXPECT_NEAR(vertebra_tilt_deg(ends_only, 0), -10 + 0.5 * (across[0] + 10), 1e-9);
  EXPECT_NEAR(vertebra_tilt_deg(ends_only, 16), 15 + 0.5 * (across[16] - 15), 1e-9);
  for (int v = 1; v < 16; ++v) EXPECT_NEAR(vertebra_tilt_deg(ends_only, v), 3, 1e-9) << v;
}

TEST(CentrelineTilt, NotAppliedWhenTheCentresDoNotRunTopToBottom) {
  auto c = curved_centres();
  std::swap(c[4], c[5]);
  auto pts = chain(c, std::vector<double>(17, 5.0));
  const auto before = pts;
  const CentrelineTiltResult r = blend_tilts_with_centreline(pts, 0.24, 0.0);
  EXPECT_FALSE(r.applied);
  EXPECT_NE(r.skipped_because.find("top to bottom"), std::string::npos);
  for (std::size_t k = 0; k < pts.size(); ++k) EXPECT_EQ(pts[k].x, before[k].x);
}


// combine_stage_corners: the two stages' mean where their tilts agree within K degrees;
// where they differ by d > K, the second stage's weight falls to 0.5 K / d, so the result's
// tilt moves about K / 2 from the first stage's, and only that vertebra is held back.
TEST(StageCorners, SecondStageWeighsLessWhereItsTiltIsFarFromTheFirsts) {
  const auto c = curved_centres();
  const auto first = chain(c, std::vector<double>(17, 2.0));
  std::vector<double> tilt2(17, 4.0);  // 2 degrees apart: within K = 5
  tilt2[16] = 22.0;                    // L5: 20 degrees apart
  auto second = chain(c, tilt2);
  const auto held = combine_stage_corners(first, second, 0.5, 5.0);
  ASSERT_EQ(held, std::vector<int>{16});
  for (int v = 0; v < 16; ++v) EXPECT_NEAR(vertebra_tilt_deg(second, v), 3.0, 0.01) << v;  // the mean
  // Corners moved 0.5 * 5 / 20 = 1/8 of the way: the tilt about 2 + 20 / 8 (a blend of
  // corner positions, so close to, not exactly, the blend of the angles).
  EXPECT_NEAR(vertebra_tilt_deg(second, 16), 4.5, 0.1);
  for (int k = 0; k < 68; ++k) {
    const int v = k / 4;
    EXPECT_NEAR(centre_of(second, v).x, c[v].x, 1e-9);
  }
  // K = 0 (off): the same weight everywhere, the plain mean even at L5.
  auto plain = chain(c, tilt2);
  EXPECT_TRUE(combine_stage_corners(first, plain, 0.5, 0.0).empty());
  EXPECT_NEAR(vertebra_tilt_deg(plain, 16), 12.0, 0.2);
}

// --ensemble-reading split: whatever the number of networks, each weighs 1/n and each side
// of the film 1/2, in n + n % 2 passes (an odd network out reads both sides at half
// weight); fewer than two networks cannot be split.
TEST(EnsembleReading, SplitPassesWeighEveryNetworkAndEverySideAlike) {
  for (int n = 2; n <= 5; ++n) {
    const std::vector<EnsemblePass> passes = split_ensemble_passes(n);
    EXPECT_EQ(passes.size(), static_cast<std::size_t>(n + n % 2)) << n;
    std::vector<double> network(static_cast<std::size_t>(n), 0.0);
    double side[2] = {0, 0};
    for (const EnsemblePass& p : passes) {
      ASSERT_GE(p.member, 0);
      ASSERT_LT(p.member, n);
      network[static_cast<std::size_t>(p.member)] += p.weight;
      side[p.mirrored ? 1 : 0] += p.weight;
    }
    for (double w : network) EXPECT_NEAR(w, 1.0 / n, 1e-12) << n;
    EXPECT_NEAR(side[0], 0.5, 1e-12) << n;
    EXPECT_NEAR(side[1], 0.5, 1e-12) << n;
  }
  const std::vector<EnsemblePass> three = split_ensemble_passes(3);
  EXPECT_FALSE(three[0].mirrored);  // network 0 reads the film, network 1 its mirror
  EXPECT_TRUE(three[1].mirrored);
  EXPECT_THROW(split_ensemble_passes(1), Error);
}

}  // namespace
}  // namespace spine
