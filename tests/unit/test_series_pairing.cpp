// A study's series named alike: the study and sequence read from a series name, two
// series' names compared for the discs they both show, and names moved down the spine.
#include <algorithm>

#include <gtest/gtest.h>

#include "spine/disc_grading.hpp"
#include "spine/labels.hpp"

namespace spine {
namespace {

TEST(SeriesOfStudy, StudyIsTheNameBeforeTheSequenceToken) {
  EXPECT_EQ(series_of_study("101_t1").study_key, "101");
  EXPECT_EQ(series_of_study("101_t1").sequence, "t1");
  EXPECT_EQ(series_of_study("101_t2_SPACE").study_key, "101");
  EXPECT_EQ(series_of_study("101_t2_SPACE").sequence, "t2_SPACE");
  EXPECT_EQ(series_of_study("sub-01_ses-1_T2w").study_key, "sub-01_ses-1");
  EXPECT_EQ(series_of_study("sub-01_ses-1_T2w").sequence, "T2w");
  EXPECT_EQ(series_of_study("sub-01_T1w_2019-03").sequence, "T1w");
  EXPECT_EQ(series_of_study("sub-01_T1w_2019-03").token, "T1w");
  EXPECT_EQ(series_of_study("patient 7 T1 sag").study_key, "patient 7");
  EXPECT_EQ(series_of_study("patient 7 T1 sag").sequence, "T1 sag");
  // No token, or nothing before it: the series stands alone.
  EXPECT_EQ(series_of_study("lumbar_sag").study_key, "");
  EXPECT_EQ(series_of_study("t2").study_key, "");
  EXPECT_EQ(series_of_study("t2_sag").study_key, "");
  EXPECT_EQ(series_of_study("T2_SAG").sequence, "T2_SAG");
  EXPECT_EQ(series_of_study("lumbar_sag").token, "");
  // A token inside a word is none ("st1", "t12").
  EXPECT_EQ(series_of_study("st1_t12").study_key, "");
}

// Discs 30 mm apart down the spine, named from `first_upper` (the vertebra above the
// first disc) down the normal sequence.
std::vector<DiscPosition> chain(int first_upper, int count, double z0 = 0, double x = 0) {
  const auto seq = normal_sequence();
  auto it = std::find(seq.begin(), seq.end(), first_upper);
  std::vector<DiscPosition> out;
  for (int i = 0; i < count; ++i, ++it) out.push_back({100 + *it, {x, 0, z0 - 30.0 * i}});
  return out;
}

TEST(CompareDiscNames, LevelsBetweenTwoSeriesOfTheSameDiscs) {
  const auto right = chain(label::kT12, 6);             // T12/L1 .. L5/S
  const auto higher = chain(label::kT11, 6, 0, 2.0);    // the same places one level higher, 2 mm off
  NameComparison c = compare_disc_names(higher, right);
  EXPECT_EQ(c.matched, 6);
  EXPECT_TRUE(c.consistent);
  EXPECT_EQ(c.levels_higher, 1);
  EXPECT_EQ(compare_disc_names(right, higher).levels_higher, -1);
  EXPECT_EQ(compare_disc_names(right, right).levels_higher, 0);
  // Discs further apart than the tolerance are not the same discs.
  EXPECT_EQ(compare_disc_names(chain(label::kT12, 6, 0, 7.0), right).matched, 0);
  // Names that differ by one level at the top and two at the bottom are not one shift.
  auto mixed = right;
  mixed[5].label = 100 + label::kL3;
  mixed[4].label = 100 + label::kL2;
  mixed[0].label = 100 + label::kT11;
  c = compare_disc_names(mixed, right);
  EXPECT_FALSE(c.consistent);
}

TEST(MoveNamesDown, NamesMoveAndTheDiscInsideTheSacrumGoes) {
  std::vector<DiscLocation> discs;
  for (int upper : {label::kT11, label::kT12, label::kL1, label::kL2, label::kL3, label::kL4, label::kL5}) {
    DiscLocation d;
    d.label = 100 + upper;
    d.name = label_name(d.label);
    discs.push_back(d);
  }
  EXPECT_EQ(move_names_down(discs, 1), 1);
  ASSERT_EQ(discs.size(), 6u);
  EXPECT_EQ(discs.front().name, "T12/L1");
  EXPECT_EQ(discs.back().name, "L5/S");
  EXPECT_EQ(discs.back().label, 100 + label::kL5);
  EXPECT_EQ(move_names_down(discs, 2), 2);
  ASSERT_EQ(discs.size(), 4u);
  EXPECT_EQ(discs.front().name, "L2/L3");
  EXPECT_EQ(move_names_down(discs, 0), 0);
  EXPECT_EQ(discs.size(), 4u);
  // A level outside the normal sequence (L6) is kept as it is, not dropped.
  DiscLocation l6;
  l6.label = 100 + label::kL6;
  l6.name = label_name(l6.label);
  discs.push_back(l6);
  EXPECT_EQ(move_names_down(discs, 1), 1);
  ASSERT_EQ(discs.size(), 4u);
  EXPECT_EQ(discs.back().label, 100 + label::kL6);
}

TEST(ReconcileNames, TheLowerNamingOfAStudyIsKept) {
  auto discs_of = [](const std::vector<DiscPosition>& chain) {
    std::vector<DiscLocation> out;
    for (const auto& c : chain) {
      DiscLocation d;
      d.label = c.label;
      d.name = label_name(c.label);
      out.push_back(d);
    }
    return out;
  };
  const auto right = chain(label::kT12, 6);         // T12/L1 .. L5/S
  const auto higher = chain(label::kT11, 6, 0, 1);  // the same discs named one level higher
  // This series names higher than its T2: its names move down to the T2's.
  auto discs = discs_of(higher);
  NameReconciliation r = reconcile_names(discs, higher, "t1", {{"t2", &right}, {"t2_SPACE", nullptr}});
  EXPECT_TRUE(r.names_disagree);
  EXPECT_EQ(r.moved_down, 1);
  EXPECT_EQ(r.lower_sequence, "t2");
  ASSERT_EQ(discs.size(), 6u);
  EXPECT_EQ(discs.front().name, "T12/L1");
  EXPECT_EQ(discs.back().name, "L5/S");
  EXPECT_EQ(r.record["names_moved_down_levels"], 1);
  EXPECT_EQ(r.record["other_series"][1]["compared"], false);
  ASSERT_EQ(r.flags.size(), 1u);
  // The T2 keeps its lower names, flagged; two series that agree change nothing.
  discs = discs_of(right);
  r = reconcile_names(discs, right, "t2", {{"t1", &higher}});
  EXPECT_TRUE(r.names_disagree);
  EXPECT_EQ(r.moved_down, 0);
  EXPECT_EQ(discs.back().name, "L5/S");
  EXPECT_EQ(r.flags.size(), 1u);
  r = reconcile_names(discs, right, "t2", {{"t1", &right}});
  EXPECT_FALSE(r.names_disagree);
  EXPECT_TRUE(r.flags.empty());
  EXPECT_EQ(discs.size(), 6u);
}

}  // namespace
}  // namespace spine
