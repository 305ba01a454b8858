// The instance stage of spine-seg (src/inference/instances.cpp): one instance per vertebra
// from a vertebra mask, on small boxes [nz][ny][nx] with x head to foot at 1 mm.
#include <gtest/gtest.h>

#include <algorithm>

#include "inference/instances.hpp"
#include "inference/ribs.hpp"
#include "spine/preprocess.hpp"

namespace spine {
namespace {

struct Box {
  std::int64_t nx, ny, nz;
  std::vector<std::uint8_t> mask;
  std::vector<int> level;  // per voxel, the level class a model would vote for
  std::vector<std::uint8_t> disc;  // the disc class; empty: none
  Box(std::int64_t x, std::int64_t y, std::int64_t z)
      : nx(x), ny(y), nz(z), mask(static_cast<std::size_t>(x * y * z), 0), level(mask.size(), 0) {}
  std::size_t at(std::int64_t x, std::int64_t y, std::int64_t z) const {
    return static_cast<std::size_t>((z * ny + y) * nx + x);
  }
  // A block of vertebra voxels [x0, x1) x [y0, y1) x [z0, z1) voting for `lev`.
  void fill(std::int64_t x0, std::int64_t x1, std::int64_t y0, std::int64_t y1, std::int64_t z0, std::int64_t z1,
            int lev) {
    for (auto z = z0; z < z1; ++z)
      for (auto y = y0; y < y1; ++y)
        for (auto x = x0; x < x1; ++x) mask[at(x, y, z)] = 1, level[at(x, y, z)] = lev;
  }
  std::vector<Instance> instances(bool bodies, std::vector<std::string>& flags) const {
    InstanceRules rules;
    rules.bodies = bodies;
    rules.min_vertebra_ml = 0.5;
    return vertebra_instances(mask, disc, nx, ny, nz, 4, [&](std::size_t v) { return level[v]; }, rules, flags);
  }
};

TEST(Instances, SeparateVertebraeHeadToFoot) {
  Box b(120, 30, 30);
  for (int i = 0; i < 4; ++i) b.fill(5 + 28 * i, 27 + 28 * i, 5, 25, 5, 25, i);  // 22 mm bodies, 6 mm gaps
  std::vector<std::string> flags;
  const auto in = b.instances(true, flags);
  ASSERT_EQ(in.size(), 4u);
  for (std::size_t i = 1; i < in.size(); ++i) EXPECT_LT(in[i - 1].cx, in[i].cx);  // sorted head to foot
  EXPECT_TRUE(flags.empty());
}

TEST(Instances, TooLongComponentIsSplitByTheLevelVotes) {
  // Two bodies joined through a missed disc: 50 mm is longer than a body can be (45 mm).
  Box b(70, 30, 30);
  b.fill(5, 30, 5, 25, 5, 25, 1);
  b.fill(30, 55, 5, 25, 5, 25, 2);
  std::vector<std::string> flags;
  const auto in = b.instances(true, flags);
  ASSERT_EQ(in.size(), 2u);
  EXPECT_NEAR(in[0].cx, 17.0, 0.5);
  EXPECT_NEAR(in[1].cx, 42.0, 0.5);
  // As a whole vertebra (up to 60 mm), the same component is one instance.
  EXPECT_EQ(b.instances(false, flags).size(), 1u);
}

TEST(Instances, SplitsAtTheRegionsEdgeGiveTheRegionsVoxelsInOrder) {
  // The splits work in the candidate's box, not the whole region: a candidate touching
  // the region's edges, beside a speck elsewhere, must come back as the region's voxels,
  // each piece in ascending order and together exactly the candidate's.
  Box b(70, 30, 30);
  b.fill(3, 28, 0, 20, 10, 30, 1);  // off the region's first voxel head to foot, at its other edges
  b.fill(28, 53, 0, 20, 10, 30, 2);
  b.fill(62, 66, 26, 30, 0, 3, 3);  // 48 voxels: too small for a vertebra, dropped
  std::vector<std::string> flags;
  const auto in = b.instances(true, flags);
  ASSERT_EQ(in.size(), 2u);
  EXPECT_NEAR(in[0].cx, 15.0, 0.5);
  EXPECT_NEAR(in[1].cx, 40.0, 0.5);
  std::vector<std::size_t> all;
  for (const auto& i : in) {
    EXPECT_TRUE(std::is_sorted(i.voxels.begin(), i.voxels.end()));
    for (std::size_t v : i.voxels) {
      EXPECT_EQ(b.mask[v], 1);
      EXPECT_EQ(b.level[v], i.cx < 28 ? 1 : 2);
    }
    all.insert(all.end(), i.voxels.begin(), i.voxels.end());
  }
  EXPECT_EQ(all.size(), 2u * 25 * 20 * 20);
}

TEST(Instances, VertebraeJoinedByAThinBridgeAreCutThere) {
  // Two whole vertebrae (70 mm together, more than one can be) touching at a 3 x 3 mm
  // bridge, with level votes that cannot tell them apart: erosion cuts the bridge and each
  // part takes back its own voxels, the bridge split between them.
  Box b(80, 30, 30);
  b.fill(5, 38, 5, 25, 5, 25, 1);
  b.fill(41, 74, 5, 25, 5, 25, 1);
  b.fill(38, 41, 14, 17, 14, 17, 1);
  std::vector<std::string> flags;
  const auto in = b.instances(false, flags);
  ASSERT_EQ(in.size(), 2u);
  EXPECT_NEAR(in[0].cx, 21.0, 0.5);
  EXPECT_NEAR(in[1].cx, 57.0, 0.5);
  EXPECT_EQ(in[0].voxels.size() + in[1].voxels.size(), 2u * 33 * 20 * 20 + 27);
}

TEST(Instances, VertebraeJoinedAcrossADiscAreCutAtTheDisc) {
  // A whole vertebra and the part of its neighbour inside the field of view (or the first
  // sacral segment), 55 mm together (not longer than a vertebra can be), joined behind the
  // disc through 6 x 6 mm facet joints, with level votes that cannot tell them apart.
  Box b(64, 40, 30);
  b.fill(5, 35, 5, 20, 5, 25, 1);   // body
  b.fill(5, 35, 20, 34, 10, 20, 1); // arch
  b.fill(41, 56, 5, 20, 5, 25, 1);  // the neighbour's body
  b.fill(41, 56, 20, 34, 10, 20, 1);  // and arch
  b.fill(35, 41, 26, 32, 12, 18, 1);  // facet joints
  b.disc.assign(b.mask.size(), 0);
  for (std::int64_t z = 5; z < 25; ++z)
    for (std::int64_t y = 5; y < 20; ++y)
      for (std::int64_t x = 36; x < 40; ++x) b.disc[b.at(x, y, z)] = 1;
  std::vector<std::string> flags;
  auto in = b.instances(false, flags);
  ASSERT_EQ(in.size(), 2u);
  EXPECT_EQ(in[0].x_min, 5);
  EXPECT_LE(in[0].x_max, 40);  // the facet bridge is shared between them, the bodies are not
  EXPECT_GE(in[1].x_min, 36);
  EXPECT_EQ(in[1].x_max, 55);
  EXPECT_EQ(in[0].voxels.size() + in[1].voxels.size(),
            30u * 15 * 20 + 30 * 14 * 10 + 15 * 15 * 20 + 15 * 14 * 10 + 6 * 6 * 6);
  // Without the disc it is one vertebra-sized component: one instance.
  b.disc.clear();
  EXPECT_EQ(b.instances(false, flags).size(), 1u);
}

TEST(Instances, AFacetJointTakenForDiscCutsNothing) {
  // A lumbar vertebra, front to back (y): a 35 mm body, pedicles beside the canal, the
  // lamina; above its lamina, the inferior articular process of the vertebra above, joined
  // to it beside a facet joint that the model took for disc (0.32 ml, bone above and below
  // it). The joint lies 28 mm behind the vertebra's centre of mass, so it is no disc: one
  // vertebra, every voxel kept (cut there, growth from its two sides took the top of the
  // body off with the process, as on the real abdominal CT's L3).
  Box b(50, 80, 30);
  b.fill(8, 38, 5, 40, 5, 25, 1);    // body
  b.fill(8, 38, 40, 55, 5, 10, 1);   // pedicles
  b.fill(8, 38, 40, 55, 20, 25, 1);
  b.fill(8, 38, 55, 66, 5, 25, 1);   // lamina
  b.fill(2, 8, 55, 66, 7, 15, 1);    // the articular process of the vertebra above
  b.disc.assign(b.mask.size(), 0);
  for (std::int64_t z = 7; z < 15; ++z)
    for (std::int64_t y = 57; y < 65; ++y)
      for (std::int64_t x = 8; x < 13; ++x) b.disc[b.at(x, y, z)] = 1, b.mask[b.at(x, y, z)] = 0;
  const auto all = static_cast<std::size_t>(std::count(b.mask.begin(), b.mask.end(), std::uint8_t{1}));
  std::vector<std::string> flags;
  const auto in = b.instances(false, flags);
  ASSERT_EQ(in.size(), 1u);
  EXPECT_EQ(in[0].voxels.size(), all);
}

TEST(Instances, ABlobInFrontOfTheColumnsEndIsNoSacrum) {
  // Four bodies head to foot (22 mm, 6 mm gaps) and below them a blob of "vertebra": in
  // front of the column's line (bowel or pelvis on a sagittal MRI) it is dropped; behind
  // it, where the sacrum lies, it is kept.
  for (const bool in_front : {true, false}) {
    Box b(150, 80, 30);
    for (int i = 0; i < 4; ++i) b.fill(5 + 28 * i, 27 + 28 * i, 25, 50, 5, 25, i);
    if (in_front)
      b.fill(118, 140, 2, 20, 5, 25, 3);
    else
      b.fill(118, 140, 35, 60, 5, 25, 3);
    std::vector<std::string> flags;
    const auto in = b.instances(true, flags);
    EXPECT_EQ(in.size(), in_front ? 4u : 5u) << (in_front ? "in front" : "behind");
  }
}

TEST(Instances, OnlyTheChainsLowerEndIsCheckedForBlobsInFront) {
  const auto at = [](double x, double y) {
    Instance in;
    in.cx = x, in.cy = y;
    return in;
  };
  // A lordotic chain (its middle in front, its ends behind) with two blobs in front below
  // it: both go, the chain stays whole.
  std::vector<Instance> chain{at(0, 40), at(30, 34), at(60, 32), at(90, 36), at(115, 25), at(140, 20)};
  EXPECT_EQ(drop_candidates_in_front_of_column_end(chain), 2u);
  ASSERT_EQ(chain.size(), 4u);
  EXPECT_EQ(chain.back().cx, 90);
  // The sacrum behind the line stays; three candidates give no line to judge by.
  std::vector<Instance> with_sacrum{at(0, 40), at(30, 34), at(60, 32), at(90, 36), at(118, 48)};
  EXPECT_EQ(drop_candidates_in_front_of_column_end(with_sacrum), 0u);
  std::vector<Instance> three{at(0, 40), at(30, 40), at(60, 10)};
  EXPECT_EQ(drop_candidates_in_front_of_column_end(three), 0u);
}

TEST(Instances, PiecesSideBySideAreOneVertebra) {
  // One body cut left to right into two pieces (a gap of 2 slices): one instance.
  Box b(40, 30, 40);
  b.fill(5, 27, 5, 25, 5, 18, 0);
  b.fill(5, 27, 5, 25, 20, 33, 0);
  std::vector<std::string> flags;
  const auto in = b.instances(true, flags);
  ASSERT_EQ(in.size(), 1u);
  EXPECT_NEAR(in[0].cz, 18.5, 0.5);
}

// The coarse pass runs its in-between slices only within reach of the column's lateral
// extent, so the extent must follow the medians, not the stray points beside them.
TEST(ColumnModel, LateralExtentFollowsTheMediansNotStrayPoints) {
  std::vector<std::array<double, 3>> points;
  for (int x = 0; x < 100; ++x) {
    for (int k = 0; k < 5; ++k) points.push_back({double(x), 20.0, 50.0 + 0.1 * x + k});  // the column, drifting
    if (x % 10 == 0) points.push_back({double(x), 20.0, 150.0});                        // a rib far out
  }
  const ColumnModel column(points, 1.0, 5.0);
  const auto [lo, hi] = column.lateral_extent();
  EXPECT_GE(lo, 50.0);
  EXPECT_LE(hi, 62.0);
  EXPECT_LT(lo, hi);
  const auto [elo, ehi] = ColumnModel({}, 1.0, 5.0).lateral_extent();
  EXPECT_GT(elo, ehi);  // empty
}

// Voxel indices take the sliding-histogram path, other values the gather-and-partition
// one: both must give the same column.
TEST(ColumnModel, VoxelIndicesGiveTheSameColumnAsFractionalPositions) {
  std::vector<std::array<double, 3>> whole, shifted;
  std::uint32_t state = 12345;
  auto next = [&state](std::uint32_t n) {
    state = state * 1664525u + 1013904223u;
    return static_cast<double>((state >> 8) % n);
  };
  for (int i = 0; i < 4000; ++i) {
    const double x = next(120), y = 30 + next(40), z = 60 + next(25) + (next(50) == 0 ? 200 : 0);
    whole.push_back({x, y, z});
    shifted.push_back({x, y + 0.25, z + 0.25});  // same order, not whole numbers
  }
  const ColumnModel a(whole, 1.0, 7.0), b(shifted, 1.0, 7.0);
  EXPECT_EQ(a.lateral_extent().first + 0.25, b.lateral_extent().first);
  EXPECT_EQ(a.lateral_extent().second + 0.25, b.lateral_extent().second);
  std::size_t differ = 0, near = 0;
  for (double x = 0; x < 120; x += 1)
    for (double y = 20; y < 80; y += 2)
      for (double z = 40; z < 120; z += 2) {
        // Thresholds between the grids' positions, so that a shift of the medians by
        // exactly the quarter voxel leaves every answer the same.
        const bool in_a = a.near({x, y, z}, 6.1, 9.1), in_b = b.near({x, y + 0.25, z + 0.25}, 6.1, 9.1);
        differ += in_a != in_b;
        near += in_a;
      }
  EXPECT_EQ(differ, 0u);
  EXPECT_GT(near, 1000u);
}

TEST(Instances, SmallFragmentsAndCandidatesOffTheColumnAreDropped) {
  Box b(120, 30, 100);
  for (int i = 0; i < 4; ++i) b.fill(5 + 28 * i, 27 + 28 * i, 5, 25, 40, 60, i);
  b.fill(57, 77, 5, 25, 88, 98, 2);   // a rib end of 4 ml, 43 mm to the side of the column
  b.fill(27, 33, 10, 20, 62, 79, 3);  // a 1 ml fragment between two bodies: under a quarter of one
  std::vector<std::string> flags;
  const auto in = b.instances(true, flags);
  ASSERT_EQ(in.size(), 4u);
  for (const auto& i : in) EXPECT_NEAR(i.cz, 49.5, 0.5);
}

TEST(Instances, MoreCandidatesThanASpineHasAreFlagged) {
  Box b(200, 20, 20);
  for (int i = 0; i < 12; ++i) b.fill(2 + 16 * i, 14 + 16 * i, 5, 15, 5, 15, 0);
  InstanceRules rules;
  rules.min_vertebra_ml = 0.5;
  rules.max_count = 10;
  std::vector<std::string> flags;
  const auto in = vertebra_instances(b.mask, {}, b.nx, b.ny, b.nz, 4, [](std::size_t) { return 0; }, rules, flags);
  EXPECT_EQ(in.size(), 10u);
  ASSERT_EQ(flags.size(), 1u);
  EXPECT_NE(flags[0].find("more vertebra candidates"), std::string::npos);
}

// A CT in canonical orientation (IPR, 1 mm): soft tissue, a vertebra block on the midline
// at head-foot 10..40, and for the upper half of it bone bars leaving it to both sides
// (ribs) at head-foot 15..23.
TEST(Ribs, BoneBesideAVertebraAtItsHeightIsARib) {
  Geometry g = make_geometry(80, 80, 160, {1, 1, 1});
  g.direction = {0, 0, -1, 0, 1, 0, -1, 0, 0};  // IPR: x -> inferior, y -> posterior, z -> right
  FloatImage ct(g, 40.f);
  auto fill = [&](int x0, int x1, int y0, int y1, int z0, int z1, float v) {
    for (int z = z0; z < z1; ++z)
      for (int y = y0; y < y1; ++y)
        for (int x = x0; x < x1; ++x) ct.at(x, y, z) = v;
  };
  fill(10, 40, 20, 50, 60, 100, 400.f);  // the vertebra, centred at z 80
  const auto centre = g.index_to_lps(25, 35, 80);
  const auto in_vertebra = [&](const std::array<double, 3>& p) {
    const auto i = g.lps_to_index(p);
    return i[0] >= 9.5 && i[0] < 39.5 && i[1] >= 19.5 && i[1] < 49.5 && i[2] >= 59.5 && i[2] < 99.5;
  };
  const std::vector<RibProbe> probe{{centre, 30.0}};
  EXPECT_EQ(rib_evidence(ct, probe, in_vertebra).front(), RibEvidence::kNone);
  fill(20, 28, 38, 46, 100, 150, 700.f);  // right rib
  fill(20, 28, 38, 46, 10, 60, 700.f);    // left rib
  EXPECT_EQ(rib_evidence(ct, probe, in_vertebra).front(), RibEvidence::kRibs);
  // The CT is read along the canonical axes whatever its own orientation.
  EXPECT_EQ(rib_evidence(reorient(ct, "LPS"), probe, in_vertebra).front(), RibEvidence::kRibs);
  EXPECT_EQ(rib_evidence(reorient(ct, "ASL"), probe, in_vertebra).front(), RibEvidence::kRibs);
  // Bone the segmentation calls vertebra is not a rib.
  EXPECT_EQ(rib_evidence(ct, probe, [](const std::array<double, 3>&) { return true; }).front(), RibEvidence::kNone);
  // A field of view that ends beside the vertebra shows nothing either way.
  FloatImage narrow(make_geometry(80, 80, 40, {1, 1, 1}), 40.f);
  narrow.geometry.direction = g.direction;
  const auto c2 = narrow.geometry.index_to_lps(25, 35, 20);
  EXPECT_EQ(rib_evidence(narrow, {{c2, 30.0}}, [](const std::array<double, 3>&) { return false; }).front(),
            RibEvidence::kUnknown);
}

}  // namespace
}  // namespace spine
