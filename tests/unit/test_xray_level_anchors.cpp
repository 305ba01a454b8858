// The level anchors' re-count of a radiograph's vertebra chain (pure logic on given
// evidence) and their crop contract against the Python code they were trained with.
#include <cmath>

#include "spine/io.hpp"
#include "spine/xray_landmarks.hpp"
#include "spine/xray_level_anchors.hpp"
#include "test_util.hpp"

namespace spine {
namespace {

// A straight chain whose gaps grow down the spine like real ones (thoracic vertebrae are
// smaller than lumbar), starting at y0.
std::vector<Point2> chain(double y0 = 100) {
  std::vector<Point2> c;
  double y = y0;
  for (int v = 0; v < kCobbVertebrae; ++v) {
    c.push_back({250.0, y});
    y += 40 + 2.0 * v;
  }
  return c;
}

// Evidence at one end that reads "the chain's end is `shift` levels off": at point q
// (q = -1, 0, +1) the class of level q - shift is `p`, the rest share what is left.
ChainEndEvidence reading(int shift, double p) {
  ChainEndEvidence e;
  for (int q = -1; q <= 1; ++q)
    for (int k = 0; k < 5; ++k) e.log_p[q + 1][k] = std::log(k == 2 + q - shift ? p : (1 - p) / 4);
  return e;
}

TEST(LevelAnchors, ChainKeptWhenBothEndsReadRight) {
  const auto c = chain();
  const LevelRecount r = recount_chain(c, reading(0, 0.9), reading(0, 0.9));
  EXPECT_TRUE(r.change.empty());
  EXPECT_TRUE(r.flags.empty());
  EXPECT_EQ(r.top_reading, "T1");
  EXPECT_EQ(r.bottom_reading, "L5");
  EXPECT_GT(r.top_posterior, 0.99);
  for (int v = 0; v < kCobbVertebrae; ++v) EXPECT_EQ(r.source[v], v);
}

// The common failure: L5 placed on the sacrum and a vertebra skipped high in the chain.
TEST(LevelAnchors, SacrumAsL5WithASkippedVertebraInsertsItInTheWidestGap) {
  auto c = chain();
  // The truth: 18 vertebrae T1..S1 with T2 missing from the chain.
  std::vector<Point2> truth = chain(100);
  truth.push_back({250.0, truth.back().y + 40 + 2.0 * 17});
  c.assign(truth.begin(), truth.end());
  c.erase(c.begin() + 1);  // T2 skipped: the chain is T1, T3..L5, S1
  ASSERT_EQ(c.size(), 17u);
  const LevelRecount r = recount_chain(c, reading(0, 0.9), reading(-1, 0.9));
  EXPECT_EQ(r.bottom_reading, "S1");
  EXPECT_EQ(r.bottom_shift, -1);
  EXPECT_EQ(r.top_shift, 0);
  ASSERT_EQ(r.centres.size(), 17u);
  EXPECT_EQ(r.source[1], -1);  // T2 placed by the re-count, midway between T1 and T3
  EXPECT_NEAR(r.centres[1].y, (truth[0].y + truth[2].y) / 2, 1e-9);
  for (int v = 2; v < kCobbVertebrae; ++v) EXPECT_EQ(r.source[v], v - 1) << v;  // S1 dropped
  EXPECT_NE(r.change.find("L5 was S1"), std::string::npos) << r.change;
  EXPECT_NE(r.change.find("placed as T2, between T1 and T3"), std::string::npos) << r.change;
  EXPECT_TRUE(r.flags.empty());
}

// The whole chain one level too high: T1 on C7 and L5 on L4.
TEST(LevelAnchors, ChainOneLevelHighMovesDownAndExtrapolatesL5) {
  const auto c = chain();
  const LevelRecount r = recount_chain(c, reading(1, 0.95), reading(1, 0.95));
  EXPECT_EQ(r.top_reading, "C7");
  EXPECT_EQ(r.bottom_reading, "L4");
  for (int v = 0; v < 16; ++v) EXPECT_EQ(r.source[v], v + 1);
  EXPECT_EQ(r.source[16], -1);
  EXPECT_NEAR(r.centres[16].y, c[16].y + (c[16].y - c[15].y), 1e-9);  // one gap below
}

TEST(LevelAnchors, DoubtfulReadingIsReportedNotApplied) {
  const auto c = chain();
  // Bottom prefers S1, but not with the posterior the re-count needs.
  ChainEndEvidence weak = reading(-1, 0.5);
  const LevelRecount r = recount_chain(c, reading(0, 0.9), weak, 0.999);
  EXPECT_TRUE(r.change.empty());
  EXPECT_EQ(r.bottom_shift, 0);
  EXPECT_EQ(r.bottom_reading, "S1");
  EXPECT_LT(r.bottom_posterior, 0.999);
  EXPECT_TRUE(r.flags.empty());
  for (int v = 0; v < kCobbVertebrae; ++v) EXPECT_EQ(r.centres[v].y, c[v].y);
}

// A chain out of order (already flagged by the decoding) is not re-counted, whatever the
// ends read; the readings are still reported.
TEST(LevelAnchors, ChainOutOfOrderIsNotRecounted) {
  auto c = chain();
  std::swap(c[5], c[6]);
  const LevelRecount r = recount_chain(c, reading(1, 0.95), reading(1, 0.95));
  EXPECT_TRUE(r.change.empty());
  EXPECT_TRUE(r.flags.empty());
  EXPECT_EQ(r.top_reading, "C7");
  EXPECT_EQ(r.bottom_reading, "L4");
  for (int v = 0; v < kCobbVertebrae; ++v) EXPECT_EQ(r.source[v], v);
}

// Both ends off outwards (the chain's T1 is C7, its L5 is S1) with two vertebrae skipped:
// both are inserted, each in the widest gap left.
TEST(LevelAnchors, TwoSkippedVertebraeAreBothInserted) {
  std::vector<Point2> truth = chain(100);  // T1..L5
  truth.insert(truth.begin(), {250.0, 60.0});                          // C7
  truth.push_back({250.0, truth.back().y + 40 + 2.0 * 17});            // S1
  std::vector<Point2> c = truth;
  c.erase(c.begin() + 11);  // T11 skipped (truth index 11)
  c.erase(c.begin() + 4);   // T4 skipped (truth index 4)
  ASSERT_EQ(c.size(), 17u);
  const LevelRecount r = recount_chain(c, reading(1, 0.95), reading(-1, 0.95));
  ASSERT_TRUE(r.flags.empty()) << r.flags[0];
  EXPECT_EQ(r.top_reading, "C7");
  EXPECT_EQ(r.bottom_reading, "S1");
  ASSERT_EQ(r.centres.size(), 17u);
  EXPECT_EQ(r.source[3], -1);   // T4
  EXPECT_EQ(r.source[10], -1);  // T11
  for (int v = 0; v < kCobbVertebrae; ++v) {
    if (v == 3 || v == 10) continue;
    EXPECT_NEAR(r.centres[v].y, truth[v + 1].y, 1e-9) << v;
  }
  EXPECT_NE(r.change.find("placed as T4"), std::string::npos) << r.change;
  EXPECT_NE(r.change.find("placed as T11"), std::string::npos) << r.change;
}

// The commonest miscount on the AASCE films: T1 placed on C7 and T1 itself skipped, the
// rest of the chain right. The gap that shows the skip is the chain's first (C7 to T2), so
// it must be looked for before C7 is cut off.
TEST(LevelAnchors, T1OnC7WithT1SkippedInsertsT1AboveT2) {
  std::vector<Point2> truth = chain(100);  // T1..L5
  truth.insert(truth.begin(), {250.0, 62.0});  // C7, a gap a little under T1's below
  std::vector<Point2> c = truth;
  c.erase(c.begin() + 1);  // T1 skipped: the chain is C7, T2..L5
  ASSERT_EQ(c.size(), 17u);
  const LevelRecount r = recount_chain(c, reading(1, 0.95), reading(0, 0.95));
  ASSERT_TRUE(r.flags.empty()) << r.flags[0];
  EXPECT_EQ(r.top_shift, 1);
  EXPECT_EQ(r.bottom_shift, 0);
  ASSERT_EQ(r.centres.size(), 17u);
  EXPECT_EQ(r.source[0], -1);  // T1 placed midway between C7 and T2
  EXPECT_NEAR(r.centres[0].y, (truth[0].y + truth[2].y) / 2, 1e-9);
  for (int v = 1; v < kCobbVertebrae; ++v) {
    EXPECT_EQ(r.source[v], v) << v;
    EXPECT_NEAR(r.centres[v].y, truth[v + 1].y, 1e-9) << v;
  }
  EXPECT_NE(r.change.find("the chain's T1 was C7"), std::string::npos) << r.change;
  EXPECT_NE(r.change.find("placed as T1, between C7 and T2"), std::string::npos) << r.change;
}

// The same at the bottom: L5 skipped and the chain's L5 on the sacrum. The gap L4 to S1
// holds L5; the sacrum's point is a candidate end of that gap but not part of the trend.
TEST(LevelAnchors, L5OnTheSacrumWithL5SkippedInsertsL5BelowL4) {
  std::vector<Point2> truth = chain(100);                        // T1..L5
  truth.push_back({250.0, truth.back().y + 40 + 2.0 * 17});      // S1
  std::vector<Point2> c = truth;
  c.erase(c.begin() + 16);  // L5 skipped: the chain is T1..L4, S1
  ASSERT_EQ(c.size(), 17u);
  const LevelRecount r = recount_chain(c, reading(0, 0.95), reading(-1, 0.95));
  ASSERT_TRUE(r.flags.empty()) << r.flags[0];
  EXPECT_EQ(r.bottom_shift, -1);
  ASSERT_EQ(r.centres.size(), 17u);
  for (int v = 0; v < 16; ++v) EXPECT_EQ(r.source[v], v) << v;
  EXPECT_EQ(r.source[16], -1);  // L5 placed midway between L4 and S1
  EXPECT_NEAR(r.centres[16].y, (truth[15].y + truth[17].y) / 2, 1e-9);
  EXPECT_NE(r.change.find("placed as L5, between L4 and S1"), std::string::npos) << r.change;
}

// Ends that need a vertebra the chain's even spacing has no room for keep the chain.
TEST(LevelAnchors, EndsThatDisagreeWithAnEvenChainKeepItAndFlag) {
  const LevelRecount r = recount_chain(chain(), reading(1, 0.95), reading(-1, 0.95));
  EXPECT_TRUE(r.change.empty());
  ASSERT_EQ(r.flags.size(), 1u);
  EXPECT_NE(r.flags[0].find("read C7 (100 %) and S1 (100 %)"), std::string::npos) << r.flags[0];
}

TEST(LevelAnchors, OneVertebraTooManyDropsThePointBetweenTheNarrowestGaps) {
  auto c = chain();
  // A spurious point between T8 and T9 (the chain then ends on L4, one above L5).
  c.insert(c.begin() + 8, {250.0, (c[7].y + c[8].y) / 2});
  c.pop_back();
  const LevelRecount r = recount_chain(c, reading(0, 0.95), reading(1, 0.95));
  EXPECT_EQ(r.bottom_reading, "L4");
  ASSERT_EQ(r.centres.size(), 17u);
  for (int v = 0; v < 8; ++v) EXPECT_EQ(r.source[v], v) << v;
  for (int v = 8; v < 16; ++v) EXPECT_EQ(r.source[v], v + 1) << v;  // the spurious point 8 dropped
  EXPECT_EQ(r.source[16], -1);  // L5 extrapolated below the chain's last point
  EXPECT_NE(r.change.find("the point the first stage called T9 was dropped"), std::string::npos) << r.change;
}

// The ends say a vertebra is missing, but the chain's spacing is regular: nothing to
// insert with confidence, so the chain stays and the doubt is flagged.
TEST(LevelAnchors, MissingVertebraWithoutAWideGapIsFlaggedNotInserted) {
  const auto c = chain();
  const LevelRecount r = recount_chain(c, reading(0, 0.95), reading(-1, 0.95));
  EXPECT_TRUE(r.change.empty());
  EXPECT_EQ(r.bottom_shift, 0);
  ASSERT_EQ(r.flags.size(), 1u);
  EXPECT_NE(r.flags[0].find("no gap in the chain wide enough"), std::string::npos) << r.flags[0];
  for (int v = 0; v < kCobbVertebrae; ++v) EXPECT_EQ(r.source[v], v);
}

TEST(LevelAnchors, CropsMatchPython) {
  const LoadedImage img = read_image(test::test_models() / "xray_contract.png");
  const auto xy = test::read_raw<double>(test::test_models() / "xray_anchor_points.f64");  // x, y, spacing
  std::vector<Point2> points;
  std::vector<double> spacings;
  for (std::size_t i = 0; i + 2 < xy.size(); i += 3) points.push_back({xy[i], xy[i + 1]}), spacings.push_back(xy[i + 2]);
  ASSERT_EQ(points.size(), 4u);
  const Tensor crops = xray_anchor_crops(xray_working_image(img.image), points, spacings);
  const auto expected = test::read_raw<float>(test::test_models() / "xray_anchor_crops.f32");
  ASSERT_EQ(crops.data.size(), expected.size());
  double max_diff = 0;
  for (std::size_t i = 0; i < expected.size(); ++i)
    max_diff = std::max(max_diff, double(std::abs(crops.data[i] - expected[i])));
  EXPECT_LT(max_diff, 1e-3);
}

}  // namespace
}  // namespace spine
