// DICOM SEG output: the standard codes of each structure, and a SEG written without a
// source series read back through DCMTK with its segments, frames and geometry.
#include <dcmtk/config/osconfig.h>
#include <dcmtk/dcmfg/fginterface.h>
#include <dcmtk/dcmfg/fgplanpo.h>
#include <dcmtk/dcmseg/segdoc.h>
#include <dcmtk/dcmseg/segment.h>
#include <dcmtk/dcmseg/segutils.h>

#include "spine/dicom_seg.hpp"
#include "spine/error.hpp"
#include "spine/labels.hpp"
#include "test_util.hpp"

namespace spine {
namespace {

using test::TempDir;
namespace fs = std::filesystem;

TEST(DicomSeg, CodesFollowTheDicomContextGroups) {
  // CID 7603 (vertebrae) and CID 7604 (discs), SNOMED CT.
  EXPECT_EQ(segmented_property_type(1).value, "14806007");   // C1
  EXPECT_EQ(segmented_property_type(19).value, "23215003");  // T12
  EXPECT_EQ(segmented_property_type(20).value, "66794005");  // L1
  EXPECT_EQ(segmented_property_type(20).meaning, "L1 vertebra");
  EXPECT_EQ(segmented_property_type(24).value, "49668003");  // L5
  EXPECT_EQ(segmented_property_type(26).meaning, "Sacrum");
  EXPECT_EQ(segmented_property_type(119).value, "76206002");  // T12/L1
  EXPECT_EQ(segmented_property_type(124).value, "715056000");
  EXPECT_EQ(segmented_property_type(124).meaning, "L5/S1 disc");
  // Transitional levels have no code of their own: the generic concept.
  EXPECT_EQ(segmented_property_type(28).meaning, "Vertebra");
  EXPECT_EQ(segmented_property_type(125).meaning, "Intervertebral disc");
  for (int v = 1; v <= 24; ++v) EXPECT_EQ(segmented_property_type(v).scheme, "SCT") << v;
  EXPECT_THROW(segmented_property_type(60), Error);
}

TEST(DicomSeg, StandaloneSegReadsBackWithItsFramesAndPositions) {
  TempDir dir;
  // An oblique 12 x 10 x 6 grid: L1 in slices 1-2, L1/L2 in slice 3, L2 in slices 3-4.
  LabelImage labels(test::oblique_test_image(12, 10, 6).geometry, 0);
  for (std::size_t z = 1; z <= 2; ++z) labels.at(4, 5, z) = 20;
  labels.at(2, 2, 3) = 120;
  for (std::size_t z = 3; z <= 4; ++z) labels.at(7, 1, z) = 21;
  const auto path = dir / "seg.dcm";
  const DicomSegSummary s = write_dicom_seg(labels, path, {});
  EXPECT_EQ(s.segments, 3u);
  EXPECT_EQ(s.frames, 5u);
  EXPECT_FALSE(s.references_source);
  EXPECT_FALSE(fs::exists(dir / "seg.dcm.tmp"));

  DcmSegmentation* raw = nullptr;
  ASSERT_TRUE(DcmSegmentation::loadFile(path.c_str(), raw).good());
  std::unique_ptr<DcmSegmentation> seg(raw);
  EXPECT_EQ(seg->getNumberOfFrames(), 5u);
  ASSERT_EQ(seg->getNumberOfSegments(), 3u);
  OFString name;
  seg->getSegment(1)->getSegmentLabel(name);
  EXPECT_EQ(std::string(name.c_str()), "L1");
  // Frame 1 is L1's first slice (z = 1): its position is that slice's corner, and its one
  // set pixel is at row 5, column 4.
  auto* pos = OFstatic_cast(FGPlanePosPatient*, seg->getFunctionalGroups().get(0, DcmFGTypes::EFG_PLANEPOSPATIENT));
  ASSERT_NE(pos, nullptr);
  const auto corner = labels.geometry.index_to_lps(0, 0, 1);
  Float64 x = 0, y = 0, z = 0;
  ASSERT_TRUE(pos->getImagePositionPatient(x, y, z).good());
  EXPECT_NEAR(x, corner[0], 1e-4);
  EXPECT_NEAR(y, corner[1], 1e-4);
  EXPECT_NEAR(z, corner[2], 1e-4);
  const DcmIODTypes::Frame* packed = seg->getFrame(0);
  ASSERT_NE(packed, nullptr);
  std::unique_ptr<DcmIODTypes::Frame> f(DcmSegUtils::unpackBinaryFrame(packed, 10, 12));
  ASSERT_NE(f, nullptr);
  int set = 0;
  for (std::size_t i = 0; i < 12 * 10; ++i) set += f->pixData[i] != 0;
  EXPECT_EQ(set, 1);
  EXPECT_NE(f->pixData[5 * 12 + 4], 0);  // row 5, column 4
}

// A binary SEG's Pixel Data is every frame's bits one after the other with no padding
// (the first pixel in the lowest bit). With 13 x 7 = 91 pixels a frame, every frame but the
// first starts inside a byte: DCMTK 3.6.7 shifted those frames; read here bit by bit from
// the file, each frame holds its slice's one pixel where it should.
TEST(DicomSeg, FramesOfAnOddSizeArePackedBitAfterBit) {
  TempDir dir;
  Geometry g;
  g.size = {13, 7, 5};
  LabelImage labels(g, 0);
  const std::size_t where[5][2] = {{0, 0}, {12, 6}, {5, 3}, {1, 6}, {11, 0}};
  for (std::size_t z = 0; z < 5; ++z) labels.at(where[z][0], where[z][1], z) = 20;
  const auto path = dir / "seg.dcm";
  ASSERT_EQ(write_dicom_seg(labels, path, {}).frames, 5u);
  DcmFileFormat file;
  ASSERT_TRUE(file.loadFile(path.c_str()).good());
  const Uint8* bytes = nullptr;
  unsigned long length = 0;
  ASSERT_TRUE(file.getDataset()->findAndGetUint8Array(DCM_PixelData, bytes, &length).good());
  EXPECT_EQ(length, 58u);  // 5 x 91 bits = 57 bytes, padded to an even length
  for (std::size_t f = 0; f < 5; ++f) {
    std::vector<std::size_t> set;
    for (std::size_t i = 0; i < 91; ++i) {
      const std::size_t bit = f * 91 + i;
      if (bytes[bit / 8] >> (bit % 8) & 1u) set.push_back(i);
    }
    ASSERT_EQ(set.size(), 1u) << "frame " << f;
    EXPECT_EQ(set[0], where[f][1] * 13 + where[f][0]) << "frame " << f;
  }
}

TEST(DicomSeg, NothingSegmentedIsRefused) {
  TempDir dir;
  const LabelImage empty(test::oblique_test_image(8, 8, 4).geometry, 0);
  EXPECT_THROW(write_dicom_seg(empty, dir / "seg.dcm", {}), Error);
  EXPECT_FALSE(fs::exists(dir / "seg.dcm"));
}

}  // namespace
}  // namespace spine
