// The label convention: VerSe names, discs, transitional levels, colour tables.
#include "spine/labels.hpp"
#include "test_util.hpp"

namespace spine {
namespace {

TEST(Labels, VerseNames) {
  EXPECT_EQ(label_name(1), "C1");
  EXPECT_EQ(label_name(8), "T1");
  EXPECT_EQ(label_name(19), "T12");
  EXPECT_EQ(label_name(22), "L3");
  EXPECT_EQ(label_name(25), "L6");
  EXPECT_EQ(label_name(26), "S");
  EXPECT_EQ(label_name(28), "T13");
  EXPECT_EQ(label_name(120), "L1/L2");
  EXPECT_EQ(label_name(124), "L5/S");
  EXPECT_EQ(label_name(119), "T12/L1");
  EXPECT_EQ(label_name(60), "spinal cord");
  EXPECT_EQ(label_name(61), "spinal canal");
  EXPECT_EQ(label_name(77), "unknown 77");
}

TEST(Labels, NamesRoundTrip) {
  for (const auto& info : all_labels()) {
    const auto v = label_from_name(info.name);
    ASSERT_TRUE(v.has_value()) << info.name;
    EXPECT_EQ(*v, info.value);
  }
  EXPECT_EQ(label_from_name("S1"), 26);
  EXPECT_FALSE(label_from_name("X9").has_value());
}

TEST(Labels, SequenceAndTransitionalLevels) {
  EXPECT_EQ(next_vertebra_below(19), 20);  // T12 -> L1
  EXPECT_EQ(next_vertebra_below(28), 20);  // T13 -> L1
  EXPECT_EQ(next_vertebra_below(24), 26);  // L5 -> S
  EXPECT_FALSE(next_vertebra_below(26).has_value());
  EXPECT_LT(craniocaudal_rank(19), craniocaudal_rank(28));
  EXPECT_LT(craniocaudal_rank(28), craniocaudal_rank(20));
  EXPECT_TRUE(is_disc_label(124));
  EXPECT_FALSE(is_disc_label(126));
  EXPECT_FALSE(is_vertebra_label(27));
}

TEST(Labels, ColoursAreDistinctForNeighbours) {
  for (int v = 1; v < 24; ++v) EXPECT_NE(label_info(v).rgb, label_info(v + 1).rgb) << v;
}

TEST(Labels, ColourTablesForSlicerAndItkSnap) {
  test::TempDir dir;
  write_color_tables({22, 122, 61}, dir / "labels");
  const std::string slicer = test::read_file(dir / "labels.ctbl");
  EXPECT_NE(slicer.find("\n0 background 0 0 0 0\n"), std::string::npos);
  EXPECT_NE(slicer.find("\n22 L3 "), std::string::npos);
  EXPECT_NE(slicer.find("\n122 L3/L4 "), std::string::npos);
  EXPECT_NE(slicer.find("\n61 spinal_canal 64 160 255 255\n"), std::string::npos);
  const std::string snap = test::read_file(dir / "labels.itksnap.txt");
  EXPECT_NE(snap.find("\"L3/L4\""), std::string::npos);
  EXPECT_NE(snap.find("ITK-SnAP Label Description File"), std::string::npos);
}

}  // namespace
}  // namespace spine
