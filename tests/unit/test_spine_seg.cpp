// Modality decision, vertebra naming under the sequence constraint, Slicer markups, and
// the torso phantom's level landmarks (ribs, sacrum).
#include <cmath>

#include <gtest/gtest.h>

#include "spine/error.hpp"
#include "spine/labels.hpp"
#include "spine/phantom.hpp"
#include "spine/spine_seg.hpp"

namespace spine {
namespace {

FloatImage ct_like() {
  FloatImage img(make_geometry(30, 30, 30), -1000.f);  // air
  for (std::size_t z = 0; z < 30; ++z)
    for (std::size_t y = 5; y < 25; ++y)
      for (std::size_t x = 5; x < 25; ++x) img.at(x, y, z) = (x < 8 || x > 21) ? -100.f : 40.f;  // fat, muscle
  return img;
}

FloatImage mr_like() {
  FloatImage img(make_geometry(30, 30, 30), 0.f);
  for (std::size_t i = 0; i < img.voxels.size(); ++i) img.voxels[i] = static_cast<float>(i % 200);
  return img;
}

TEST(Modality, AutoFromIntensities) {
  EXPECT_EQ(decide_modality(ct_like(), "auto", "").modality, "ct");
  EXPECT_EQ(decide_modality(mr_like(), "auto", "").modality, "mr");
}

TEST(Modality, DicomTagDecides) {
  EXPECT_EQ(decide_modality(mr_like(), "auto", "MR").modality, "mr");
  EXPECT_EQ(decide_modality(ct_like(), "auto", "CT").reason, "DICOM Modality tag CT");
  EXPECT_THROW(decide_modality(ct_like(), "mr", "CT"), Error);
}

TEST(Modality, ContradictingChoiceIsAnInputError) {
  try {
    decide_modality(mr_like(), "ct", "");
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kInput);
    EXPECT_NE(std::string(e.what()).find("--modality ct contradicts the image"), std::string::npos) << e.what();
  }
  EXPECT_THROW(decide_modality(ct_like(), "mr", ""), Error);
  EXPECT_EQ(decide_modality(ct_like(), "ct", "").modality, "ct");
}

TEST(Modality, AmbiguousIntensitiesNeedAChoice) {
  FloatImage img(make_geometry(20, 20, 20), 10.f);
  img.at(0, 0, 0) = -300.f;  // some negative values, but no fat or air
  EXPECT_THROW(decide_modality(img, "auto", ""), Error);
}

// Probabilities over classes T11..L5 peaked at the given class index (or flat when -1).
std::vector<double> peaked(int cls, double p = 0.9) {
  std::vector<double> v(7, (1 - p) / 6);
  if (cls < 0) return std::vector<double>(7, 1.0 / 7);
  v[static_cast<std::size_t>(cls)] = p;
  return v;
}

const std::vector<int> kMrClasses{18, 19, 20, 21, 22, 23, 24};

TEST(SequenceNaming, ConsecutiveNamesFromPeakedVotes) {
  const auto n = name_vertebra_sequence({peaked(2), peaked(3), peaked(4), peaked(5), peaked(6)}, kMrClasses);
  EXPECT_EQ(n.labels, (std::vector<int>{20, 21, 22, 23, 24}));
  EXPECT_GT(n.offset_probability, 0.99);
  EXPECT_TRUE(n.flags.empty());
}

TEST(SequenceNaming, OneWrongVoteIsOverruled) {
  // The third vertebra votes L4 (index 5); the sequence keeps it L3.
  const auto n = name_vertebra_sequence({peaked(2), peaked(3), peaked(5, 0.6), peaked(5), peaked(6)}, kMrClasses);
  EXPECT_EQ(n.labels, (std::vector<int>{20, 21, 22, 23, 24}));
  EXPECT_LT(n.confidence[2], n.confidence[0]);
}

TEST(SequenceNaming, NamesBeyondTheModelClassesAtTheEnds) {
  // A vertebra above the model's first class (T11) is named T10 by its place.
  const auto n = name_vertebra_sequence({peaked(-1), peaked(0), peaked(1), peaked(2), peaked(3), peaked(4), peaked(5),
                                         peaked(6)},
                                        kMrClasses);
  ASSERT_EQ(n.labels.size(), 8u);
  EXPECT_EQ(n.labels.front(), 17);
  EXPECT_EQ(label_name(n.labels.front()), "T10");
  EXPECT_EQ(n.labels.back(), 24);
}

TEST(SequenceNaming, ExtraVertebraIsFlaggedNotRenamed) {
  // Upper half says T12, L1, L2; lower half says L2, L3, L4 -> one vertebra more than normal.
  const auto n = name_vertebra_sequence({peaked(1, 0.97), peaked(2, 0.97), peaked(3, 0.97), peaked(3, 0.97),
                                         peaked(4, 0.97), peaked(5, 0.97)},
                                        kMrClasses);
  ASSERT_EQ(n.labels.size(), 6u);
  for (std::size_t i = 1; i < n.labels.size(); ++i) EXPECT_EQ(n.labels[i], n.labels[i - 1] + 1);
  bool flagged = false;
  for (const auto& f : n.flags) flagged |= f.find("transitional") != std::string::npos;
  EXPECT_TRUE(flagged);
}

// Probabilities over the CT model's classes T1..L5, sacrum (18) peaked at a label.
std::vector<double> ct_peaked(int label, double p = 0.8) {
  std::vector<double> v(18, (1 - p) / 17);
  v[static_cast<std::size_t>(label == label::kSacrum ? 17 : label - label::kT1)] = p;
  return v;
}
const std::vector<int> kCtClasses{8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 26};

TEST(SequenceNaming, ASmallPieceBetweenTwoVertebraeTakesItsNeighboursName) {
  // T9..L4 with a 13 ml piece of L2 between L2 and L3 (on a real CT, L2's lower part cut
  // off at a disc the model saw inside the body): the piece votes L2 like the vertebra
  // above it. Consecutive names for all nine would shift every name but one; with the
  // volumes, the piece is named L2 (the caller merges it) and the rest keep their names.
  std::vector<std::vector<double>> votes;
  for (int l = label::kT1 + 8; l <= label::kL2; ++l) votes.push_back(ct_peaked(l, 0.6));  // T9..L2
  votes.push_back(ct_peaked(label::kL2, 0.9));
  votes.push_back(ct_peaked(label::kL3, 0.9));
  votes.push_back(ct_peaked(label::kL4, 0.6));
  const std::vector<double> ml{45, 40, 55, 47, 44, 67, 13, 67, 22};
  const auto n = name_vertebra_sequence(votes, kCtClasses, {}, ml);
  EXPECT_EQ(n.piece, 6);
  EXPECT_EQ(n.piece_of, 5);
  EXPECT_EQ(n.labels, (std::vector<int>{16, 17, 18, 19, 20, 21, 21, 22, 23}));
  bool flagged = false;
  for (const auto& f : n.flags) flagged |= f.find("piece of L2") != std::string::npos;
  EXPECT_TRUE(flagged);
  // Without the volumes, or with the same candidate as large as a vertebra, no candidate
  // is a piece: nine consecutive names.
  for (const auto& volumes : {std::vector<double>{}, std::vector<double>{45, 40, 55, 47, 44, 67, 60, 67, 22}}) {
    const auto plain = name_vertebra_sequence(votes, kCtClasses, {}, volumes);
    EXPECT_EQ(plain.piece, -1);
    for (std::size_t i = 1; i < plain.labels.size(); ++i) EXPECT_EQ(plain.labels[i], plain.labels[i - 1] + 1);
  }
  // The first and last candidates are never pieces: a vertebra cut by the field of view
  // is small there.
  std::vector<double> small_end = ml;
  small_end[6] = 60;
  small_end[8] = 5;
  EXPECT_EQ(name_vertebra_sequence(votes, kCtClasses, {}, small_end).piece, -1);
}

TEST(SequenceNaming, SacrumInPiecesIsOneSacrumNotMoreLevels) {
  // T12..L5, then S1 taken for a vertebra that the model votes L5 for, then S2..S5 that it
  // calls sacrum: the pieces are named S, the levels above keep their names.
  std::vector<std::vector<double>> votes;
  for (int l = label::kT12; l <= label::kL5; ++l) votes.push_back(ct_peaked(l, 0.5));
  votes.push_back(ct_peaked(label::kL5, 0.6));
  votes.push_back(ct_peaked(label::kSacrum, 0.4));
  const auto n = name_vertebra_sequence(votes, kCtClasses);
  EXPECT_EQ(n.sacrum_pieces, 2u);
  EXPECT_EQ(n.labels, (std::vector<int>{19, 20, 21, 22, 23, 24, 26, 26}));
  EXPECT_GT(n.offset_probability, 0.5);
  // A sacrum in one piece is named as before, without pieces.
  votes.pop_back();
  votes.back() = ct_peaked(label::kSacrum, 0.6);
  const auto one = name_vertebra_sequence(votes, kCtClasses);
  EXPECT_EQ(one.sacrum_pieces, 0u);
  EXPECT_EQ(one.labels.back(), label::kSacrum);
  EXPECT_EQ(one.labels.front(), label::kT12);
  // The MR model has no sacrum class: its candidates are never merged as sacrum pieces.
  const auto mr = name_vertebra_sequence({peaked(2), peaked(3), peaked(4), peaked(5), peaked(6), peaked(6)}, kMrClasses);
  EXPECT_EQ(mr.sacrum_pieces, 0u);
}

TEST(SequenceNaming, RibsAnchorTheNamesAndAConflictIsFlagged) {
  // Five candidates whose votes hesitate between two runs (T12..L4 slightly over T11..L3),
  // with the ribs seen on the second and not below: the ribs make the second T12.
  std::vector<std::vector<double>> votes;
  for (int l = label::kT12; l <= label::kL5 - 1; ++l) {
    auto v = ct_peaked(l, 0.35);
    v[static_cast<std::size_t>(l - 1 - label::kT1)] = 0.3;
    votes.push_back(v);
  }
  const auto plain = name_vertebra_sequence(votes, kCtClasses);
  EXPECT_EQ(plain.labels.front(), label::kT12);
  using R = RibEvidence;
  const std::vector<R> ribs_on_second{R::kUnknown, R::kRibs, R::kNone, R::kNone, R::kUnknown};
  const auto anchored = name_vertebra_sequence(votes, kCtClasses, ribs_on_second);
  EXPECT_EQ(anchored.lowest_rib_bearing, 1);
  EXPECT_EQ(anchored.labels.front(), label::kT11);
  EXPECT_EQ(anchored.labels[1], label::kT12);
  bool said = false;
  for (const auto& f : anchored.flags) said |= f.find("anchored on the ribs") != std::string::npos;
  EXPECT_TRUE(said);
  // Votes that are sure of L1 on the rib-bearing candidate win, and the conflict is flagged
  // (13 rib pairs or a lumbar rib), not hidden.
  std::vector<std::vector<double>> sure;
  for (int l = label::kT12; l <= label::kL5 - 1; ++l) sure.push_back(ct_peaked(l, 0.97));
  const auto conflict = name_vertebra_sequence(sure, kCtClasses, ribs_on_second);
  EXPECT_EQ(conflict.labels[1], label::kL1);
  said = false;
  for (const auto& f : conflict.flags) said |= f.find("lowest rib-bearing vertebra is named L1") != std::string::npos;
  EXPECT_TRUE(said);
  // Evidence that does not show where the ribs end changes nothing.
  const auto none = name_vertebra_sequence(votes, kCtClasses, std::vector<R>(5, R::kRibs));
  EXPECT_EQ(none.lowest_rib_bearing, -1);
  EXPECT_EQ(none.labels, plain.labels);
}

TEST(SequenceNaming, NamesWithoutSacrumOrRibsInViewAreFlaggedAsNotAnchored) {
  using R = RibEvidence;
  const auto not_anchored = [](const SequenceNaming& s) {
    bool said = false;
    for (const auto& f : s.flags) said |= f.find("names not anchored") != std::string::npos;
    return said;
  };
  // Three lumbar vertebrae, no ribs seen, no sacrum: sure votes, still not anchored.
  std::vector<std::vector<double>> lumbar;
  for (int l = label::kL2; l <= label::kL2 + 2; ++l) lumbar.push_back(ct_peaked(l, 0.97));
  const auto crop = name_vertebra_sequence(lumbar, kCtClasses, std::vector<R>(3, R::kNone));
  EXPECT_EQ(crop.labels, (std::vector<int>{label::kL2, label::kL2 + 1, label::kL2 + 2}));
  EXPECT_TRUE(not_anchored(crop));
  // With the sacrum below L5 in view it is anchored.
  std::vector<std::vector<double>> down = {ct_peaked(label::kL5 - 1, 0.97), ct_peaked(label::kL5, 0.97),
                                           ct_peaked(label::kSacrum, 0.97)};
  EXPECT_FALSE(not_anchored(name_vertebra_sequence(down, kCtClasses, std::vector<R>(3, R::kNone))));
  // Where the ribs end, it is anchored too.
  std::vector<std::vector<double>> thoracolumbar;
  for (int l = label::kT11; l <= label::kL2; ++l) thoracolumbar.push_back(ct_peaked(l, 0.97));
  EXPECT_FALSE(not_anchored(
      name_vertebra_sequence(thoracolumbar, kCtClasses, {R::kRibs, R::kRibs, R::kNone, R::kNone})));
  // Without rib evidence at all (MRI: no rib probe), the flag does not apply.
  EXPECT_FALSE(not_anchored(name_vertebra_sequence(lumbar, kCtClasses)));
}

TEST(SequenceNaming, EmptyAndTooMany) {
  EXPECT_TRUE(name_vertebra_sequence({}, kMrClasses).labels.empty());
  EXPECT_THROW(name_vertebra_sequence(std::vector<std::vector<double>>(30, peaked(0)), kMrClasses), Error);
}

// T12..L5 centres straight down the z axis, each gap `factor` times the real-CT median
// spacing of its level (T12 32.35, L1 34.55, L2 35.74, L3 36.45, L4 36.28 mm).
std::vector<IdentifiedVertebra> lumbar_column(double factor, int split_at = -1) {
  const double spacing[] = {32.35, 34.55, 35.74, 36.45, 36.28};
  std::vector<IdentifiedVertebra> v;
  double z = 0;
  for (int i = 0; i < 6; ++i) {
    IdentifiedVertebra x;
    x.label = label::kT12 + i;
    x.name = label_name(x.label);
    x.centroid_lps_mm = {0, 0, z};
    v.push_back(x);
    if (i < 5) z -= spacing[i] * factor * (i == split_at ? 0.4 : 1.0);
  }
  return v;
}

TEST(SpacingCheck, RealSpacingPasses) {
  EXPECT_TRUE(vertebra_spacing_flags(lumbar_column(1.0)).empty());
  EXPECT_TRUE(vertebra_spacing_flags(lumbar_column(0.85)).empty());  // a small adult
  EXPECT_TRUE(vertebra_spacing_flags(lumbar_column(1.2)).empty());
}

TEST(SpacingCheck, NamesThatDoNotFitThePositionsAreFlagged) {
  // Vertebra-sized pieces 55 % of the real distance apart: too many names for the span.
  const auto f = vertebra_spacing_flags(lumbar_column(0.55));
  ASSERT_EQ(f.size(), 1u);
  EXPECT_NE(f[0].find("does not fit the names"), std::string::npos) << f[0];
  EXPECT_NE(f[0].find("55 %"), std::string::npos) << f[0];
  EXPECT_FALSE(vertebra_spacing_flags(lumbar_column(1.6)).empty());
}

TEST(SpacingCheck, OneShortGapIsFlaggedAsASplit) {
  const auto f = vertebra_spacing_flags(lumbar_column(1.0, 2));
  ASSERT_EQ(f.size(), 1u);
  EXPECT_NE(f[0].find("L2/L3"), std::string::npos) << f[0];  // gap 2: T12, L1, L2 / L3
  EXPECT_NE(f[0].find("split"), std::string::npos) << f[0];
}

TEST(SpacingCheck, CutVertebraeAndShortSpinesAreLeftOut) {
  auto v = lumbar_column(1.0, 0);  // the T12/L1 gap is short
  v[0].touches_border = true;      // T12 cut at its side keeps its head-foot centroid: still flagged
  EXPECT_FALSE(vertebra_spacing_flags(v).empty());
  v[0].cut_head_foot = true;       // cut at its top, its centroid is off: the gap is not judged
  EXPECT_TRUE(vertebra_spacing_flags(v).empty());
  const auto two = std::vector<IdentifiedVertebra>(v.begin() + 1, v.begin() + 3);
  EXPECT_TRUE(vertebra_spacing_flags(two).empty());  // one gap: nothing to compare
}

TEST(SlicerMarkups, NamedPointsInLps) {
  IdentifiedVertebra v;
  v.label = 22;
  v.name = "L3";
  v.centroid_lps_mm = {1.5, -2.0, 30.0};
  const auto j = slicer_markups({v});
  const auto& m = j["markups"][0];
  EXPECT_EQ(m["type"], "Fiducial");
  EXPECT_EQ(m["coordinateSystem"], "LPS");
  ASSERT_EQ(m["controlPoints"].size(), 1u);
  EXPECT_EQ(m["controlPoints"][0]["label"], "L3");
  EXPECT_DOUBLE_EQ(m["controlPoints"][0]["position"][2].get<double>(), 30.0);
}

// The torso phantom has ribs (bone without a vertebra label) beside thoracic vertebrae,
// lungs, and a sacrum (label 26) with the L5/S1 disc.
TEST(TorsoPhantom, RibsLungsAndSacrum) {
  PhantomConfig c;
  c.first_vertebra = "T11";
  c.last_vertebra = "L5";
  c.spacing_mm = 2.0;
  c.margin_mm = 10;
  c.torso = true;
  const PhantomVolume p = make_phantom_volume(c);
  std::size_t sacrum = 0, l5s1 = 0, unlabelled_bone = 0, lung = 0;
  for (std::size_t i = 0; i < p.labels.voxels.size(); ++i) {
    const int l = p.labels.voxels[i];
    const float v = p.image.voxels[i];
    sacrum += l == label::kSacrum;
    l5s1 += l == 124;
    unlabelled_bone += l == 0 && v > 500;
    lung += l == 0 && v < -700;
  }
  EXPECT_GT(sacrum * 8, 50000u);  // > 50 ml
  EXPECT_GT(l5s1 * 8, 2000u);
  EXPECT_GT(unlabelled_bone * 8, 10000u);  // ribs and iliac wings
  EXPECT_GT(lung * 8, 100000u);
  EXPECT_EQ(p.vertebrae.back().name, "S");
}

}  // namespace
}  // namespace spine
