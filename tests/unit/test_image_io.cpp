// Image I/O: geometry survives write -> read in every format, labels stay integers,
// bad files give input errors naming the file, the real DICOM series reads correctly.
#include <algorithm>
#include <cmath>
#include <fstream>

#include <sys/stat.h>
#include <zlib.h>

#include <itkGDCMImageIO.h>
#include <itkImage.h>
#include <itkImageFileReader.h>
#include <itkImageFileWriter.h>
#include <itkMetaDataObject.h>
#include <itkRGBPixel.h>

#include "spine/error.hpp"
#include "spine/io.hpp"
#include "spine/preprocess.hpp"
#include "cmd/dicom_series.hpp"
#include "test_util.hpp"

namespace spine {
namespace {

using test::TempDir;

void expect_same_geometry(const Geometry& a, const Geometry& b) {
  EXPECT_EQ(a.dimension, b.dimension);
  EXPECT_EQ(a.size, b.size);
  for (int i = 0; i < 3; ++i) {
    EXPECT_NEAR(a.spacing[i], b.spacing[i], 1e-5);
    EXPECT_NEAR(a.origin[i], b.origin[i], 1e-4);
  }
  for (int i = 0; i < 9; ++i) EXPECT_NEAR(a.direction[i], b.direction[i], 1e-5);
}

class RoundTrip : public ::testing::TestWithParam<std::string> {};

TEST_P(RoundTrip, KeepsGeometryAndValues) {
  TempDir dir;
  const FloatImage img = test::oblique_test_image();
  const auto path = dir / ("img" + GetParam());
  write_image(img, path);
  const LoadedImage back = read_image(path);
  expect_same_geometry(img.geometry, back.image.geometry);
  ASSERT_EQ(back.image.voxels.size(), img.voxels.size());
  for (std::size_t i = 0; i < img.voxels.size(); ++i) ASSERT_FLOAT_EQ(back.image.voxels[i], img.voxels[i]);
  // No temporary file is left next to the output.
  int files = 0;
  for (const auto& e : std::filesystem::directory_iterator(dir.path())) files += e.is_regular_file();
  EXPECT_EQ(files, 1);
}

INSTANTIATE_TEST_SUITE_P(Formats, RoundTrip, ::testing::Values(".nii.gz", ".nii", ".nrrd", ".mha"));

TEST(ImageIO, LabelsAreWrittenAsIntegers) {
  TempDir dir;
  LabelImage labels(test::oblique_test_image().geometry, 0);
  labels.at(1, 2, 3) = 22;
  labels.at(2, 2, 3) = 122;
  labels.at(3, 1, 1) = -5;
  write_labels(labels, dir / "l.nii.gz");
  const LoadedImage raw = read_image(dir / "l.nii.gz");
  EXPECT_EQ(raw.info.pixel_type, "short");
  const LabelImage back = read_labels(dir / "l.nii.gz");
  EXPECT_EQ(back.voxels, labels.voxels);
  expect_same_geometry(labels.geometry, back.geometry);
  // Compressed by zlib behind ITK's header: a gzip file, and no temporary left.
  std::ifstream in(dir / "l.nii.gz", std::ios::binary);
  unsigned char magic[2] = {0, 0};
  in.read(reinterpret_cast<char*>(magic), 2);
  EXPECT_TRUE(magic[0] == 0x1f && magic[1] == 0x8b);
  int files = 0;
  for (const auto& e : std::filesystem::directory_iterator(dir.path())) files += e.is_regular_file();
  EXPECT_EQ(files, 1);
}

// A .nii.gz label map is compressed straight from memory behind a header ITK wrote for a
// map of 2 voxels along each axis: after decompression it must be the very bytes ITK
// writes for the whole map (plain .nii), whatever the orientation, size and dimension.
TEST(ImageIO, LabelMapsAreTheBytesItkWrites) {
  TempDir dir;
  const FloatImage base = test::oblique_test_image(37, 34, 33);
  Geometry flat = make_geometry_2d(41, 29, {0.6, 0.9});
  flat.origin = {3.5, -7.25, 0};
  std::vector<std::pair<std::string, Geometry>> grids{{"2D", flat}};
  for (const std::string code : {"LPS", "IPR", "RAS"}) grids.emplace_back(code, reorient(base, code).geometry);
  for (const auto& [code, g] : grids) {
    LabelImage labels(g, 0);
    for (std::size_t i = 0; i < labels.voxels.size(); i += 7) labels.voxels[i] = static_cast<std::int16_t>(i % 300 - 20);
    write_labels(labels, dir / "ours.nii.gz");
    write_labels(labels, dir / "itk.nii");  // not .nii.gz: ITK writes the whole file
    auto slurp = [](const std::filesystem::path& p) {
      std::ifstream in(p, std::ios::binary);
      return std::string(std::istreambuf_iterator<char>(in), {});
    };
    std::string ours;
    gzFile gz = gzopen((dir / "ours.nii.gz").c_str(), "rb");
    ASSERT_NE(gz, nullptr);
    char buf[65536];
    for (int n; (n = gzread(gz, buf, sizeof buf)) > 0;) ours.append(buf, static_cast<std::size_t>(n));
    gzclose(gz);
    const std::string itk = slurp(dir / "itk.nii");
    EXPECT_EQ(itk.size(), 352 + labels.voxels.size() * 2) << code;
    EXPECT_TRUE(ours == itk) << code;
    const LabelImage back = read_labels(dir / "ours.nii.gz");
    EXPECT_EQ(back.voxels, labels.voxels) << code;
    expect_same_geometry(labels.geometry, back.geometry);
  }
  int files = 0;
  for (const auto& e : std::filesystem::directory_iterator(dir.path())) files += e.is_regular_file();
  EXPECT_EQ(files, 2);  // no header probe left behind
}

TEST(ImageIO, LabelMapIntoAMissingFolderNamesTheOutput) {
  TempDir dir;
  const LabelImage labels(test::oblique_test_image().geometry, 3);
  const auto out = dir / "missing" / "labels.nii.gz";
  try {
    write_labels(labels, out);
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    EXPECT_EQ(std::string(e.what()).rfind(out.string() + ": cannot write image", 0), 0u) << e.what();
  }
  EXPECT_FALSE(std::filesystem::exists(dir / "missing"));
}

// Integer label maps are decoded straight into 16-bit labels (no float image first); maps
// stored otherwise (floats, 2D) take the general path. Both give the same labels.
TEST(ImageIO, LabelMapsOfEveryStoredTypeReadTheSame) {
  TempDir dir;
  FloatImage values = test::oblique_test_image();
  for (std::size_t i = 0; i < values.voxels.size(); ++i) values.voxels[i] = static_cast<float>(i % 7 == 0 ? i % 250 : 0);
  for (const auto stored : {StoredPixel::kUInt8, StoredPixel::kInt16, StoredPixel::kFloat32}) {
    write_image(values, dir / "m.nii.gz", stored);
    const LabelImage back = read_labels(dir / "m.nii.gz");
    ASSERT_EQ(back.voxels.size(), values.voxels.size());
    for (std::size_t i = 0; i < values.voxels.size(); ++i)
      ASSERT_EQ(back.voxels[i], static_cast<std::int16_t>(values.voxels[i])) << static_cast<int>(stored) << " at " << i;
    expect_same_geometry(values.geometry, back.geometry);
  }
}

// A label map cut short is an error naming the file, on the direct path as on the other.
TEST(ImageIO, TruncatedLabelMapIsAnError) {
  TempDir dir;
  LabelImage labels(test::oblique_test_image().geometry, 0);
  for (std::size_t i = 0; i < labels.voxels.size(); i += 3) labels.voxels[i] = 5;
  write_labels(labels, dir / "l.nii");  // plain: cut at a known byte
  const auto size = std::filesystem::file_size(dir / "l.nii");
  std::filesystem::resize_file(dir / "l.nii", size - 100);
  try {
    read_labels(dir / "l.nii");
    ADD_FAILURE() << "a truncated label map was read";
  } catch (const Error& e) {
    EXPECT_EQ(std::string(e.what()).rfind((dir / "l.nii").string() + ":", 0), 0u) << e.what();
  }
}

TEST(ImageIO, ReadLabelsRejectsFractionalValues) {
  TempDir dir;
  write_image(test::oblique_test_image(), dir / "f.nii.gz");  // has .5 values
  EXPECT_THROW(read_labels(dir / "f.nii.gz"), Error);
}

TEST(ImageIO, PngRoundTripIs2D) {
  TempDir dir;
  FloatImage img(make_geometry_2d(9, 4));
  for (std::size_t i = 0; i < img.voxels.size(); ++i) img.voxels[i] = static_cast<float>(i * 7 % 256);
  write_image(img, dir / "a.png", StoredPixel::kUInt8);
  const LoadedImage back = read_image(dir / "a.png");
  EXPECT_EQ(back.info.format, "png");
  EXPECT_EQ(back.image.geometry.dimension, 2);
  EXPECT_EQ(back.image.nx(), 9u);
  EXPECT_EQ(back.image.ny(), 4u);
  EXPECT_EQ(back.image.voxels, img.voxels);
}

// Pictures (overlays) are written by libpng directly: every pixel must read back exactly
// in another reader (ITK's), and a file that cannot be written leaves nothing behind.
TEST(ImageIO, PicturesReadBackPixelForPixel) {
  TempDir dir;
  RgbImage pic;
  pic.width = 37, pic.height = 21;
  for (std::size_t i = 0; i < pic.width * pic.height * 3; ++i) pic.rgb.push_back(static_cast<std::uint8_t>((i * 7919) % 251));
  write_png(pic, dir / "p.png");
  using Rgb = itk::Image<itk::RGBPixel<unsigned char>, 2>;
  auto reader = itk::ImageFileReader<Rgb>::New();
  reader->SetFileName((dir / "p.png").string());
  reader->Update();
  const auto size = reader->GetOutput()->GetLargestPossibleRegion().GetSize();
  ASSERT_EQ(size[0], pic.width);
  ASSERT_EQ(size[1], pic.height);
  const auto* px = reader->GetOutput()->GetBufferPointer();
  std::size_t differ = 0;
  for (std::size_t i = 0; i < pic.width * pic.height; ++i)
    for (int c = 0; c < 3; ++c) differ += px[i][c] != pic.rgb[3 * i + c];
  EXPECT_EQ(differ, 0u);
  EXPECT_THROW(write_png(pic, dir / "no-such-folder" / "p.png"), Error);
  pic.rgb.pop_back();
  EXPECT_THROW(write_png(pic, dir / "bad.png"), Error);
  EXPECT_EQ(std::distance(std::filesystem::directory_iterator(dir.path()), {}), 1);  // p.png only
}

TEST(ImageIO, OwnerOnlyTextFilesAreNotReadableByOthers) {
  TempDir dir;
  const mode_t old_mask = ::umask(022);  // the usual default: others could read a plain file
  write_text_file(dir / "plain.txt", "a\n");
  write_text_file(dir / "private.txt", "b\n", /*owner_only=*/true);
  ::umask(old_mask);
  const auto others = std::filesystem::perms::group_all | std::filesystem::perms::others_all;
  EXPECT_NE(std::filesystem::status(dir / "plain.txt").permissions() & others, std::filesystem::perms::none);
  EXPECT_EQ(std::filesystem::status(dir / "private.txt").permissions() & others, std::filesystem::perms::none);
  std::ifstream in(dir / "private.txt");
  std::string line;
  std::getline(in, line);
  EXPECT_EQ(line, "b");
  EXPECT_EQ(std::distance(std::filesystem::directory_iterator(dir.path()), {}), 2);  // no temporary left
}

TEST(ImageIO, Int16StorageRoundsAndClamps) {
  TempDir dir;
  FloatImage img(make_geometry(3, 1, 1));
  img.voxels = {-1024.4f, 1.6f, 40000.f};
  write_image(img, dir / "i.nii.gz", StoredPixel::kInt16);
  const LoadedImage back = read_image(dir / "i.nii.gz");
  EXPECT_EQ(back.image.voxels, (std::vector<float>{-1024.f, 2.f, 32767.f}));
}

TEST(ImageIO, MissingFileNamesTheFile) {
  try {
    read_image("/nonexistent/scan.nii.gz");
    FAIL() << "no exception";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kInput);
    EXPECT_NE(std::string(e.what()).find("/nonexistent/scan.nii.gz"), std::string::npos);
  }
}

TEST(ImageIO, GarbageAndTruncatedFilesAreInputErrors) {
  TempDir dir;
  {
    std::ofstream(dir / "junk.nii.gz") << "this is not an image";
  }
  EXPECT_THROW(read_image(dir / "junk.nii.gz"), Error);
  write_image(test::oblique_test_image(20, 20, 20), dir / "full.nii");
  const std::string bytes = test::read_file(dir / "full.nii");
  {
    std::ofstream(dir / "cut.nii", std::ios::binary) << bytes.substr(0, bytes.size() / 2);
  }
  try {
    read_image(dir / "cut.nii");
    FAIL() << "truncated file was read";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kInput);
    EXPECT_NE(std::string(e.what()).find("cut.nii"), std::string::npos);
  }
  {
    std::ofstream(dir / "empty.png");
  }
  EXPECT_THROW(read_image(dir / "empty.png"), Error);
}

TEST(ImageIO, StudyNames) {
  EXPECT_EQ(study_name_of("/a/b/scan.nii.gz"), "scan");
  EXPECT_EQ(study_name_of("/a/b/x.ray.png"), "x.ray");
  EXPECT_EQ(study_name_of("/a/b/vol.nrrd"), "vol");
}

// A radiograph stored as MONOCHROME1 (lowest value shown white, common for CR/DX) must
// reach the models with dense = bright like every other input. ITK's GDCM reader inverts
// it (over the stored bit range); this holds it to that, so an ITK that stopped doing so
// would be caught here rather than by wrong Cobb angles.
TEST(ImageIO, DicomMonochrome1ReadsDenseAsBright) {
  TempDir dir;
  using Img = itk::Image<std::uint16_t, 2>;
  for (const std::string photometric : {"MONOCHROME1", "MONOCHROME2"}) {
    auto img = Img::New();
    Img::RegionType region;
    region.SetSize({{8, 6}});
    img->SetRegions(region);
    img->Allocate();
    for (unsigned y = 0; y < 6; ++y)
      for (unsigned x = 0; x < 8; ++x) img->SetPixel({{x, y}}, static_cast<std::uint16_t>(100 + 10 * x + y));
    auto& dict = img->GetMetaDataDictionary();
    itk::EncapsulateMetaData<std::string>(dict, "0008|0060", "CR");
    auto io = itk::GDCMImageIO::New();
    io->KeepOriginalUIDOn();
    auto writer = itk::ImageFileWriter<Img>::New();
    writer->SetImageIO(io);
    const auto file = dir / (photometric + ".dcm");
    writer->SetFileName(file.string());
    writer->SetInput(img);
    writer->Update();
    if (photometric == "MONOCHROME1") {
      // GDCM always writes MONOCHROME2; set the value in the file (same length).
      std::string bytes = test::read_file(file);
      const auto at = bytes.find("MONOCHROME2");
      ASSERT_NE(at, std::string::npos);
      bytes[at + 10] = '1';
      std::ofstream(file, std::ios::binary) << bytes;
    }

    const LoadedImage r = read_image(file);
    EXPECT_EQ(r.info.modality, "CR");
    // Stored 100 at (0, 0) and 175 at (7, 5): as MONOCHROME1 the first is shown brighter.
    if (photometric == "MONOCHROME1") {
      EXPECT_FLOAT_EQ(r.image.at(0, 0, 0), 65535.f - 100.f);
      EXPECT_FLOAT_EQ(r.image.at(7, 5, 0), 65535.f - 175.f);
    } else {
      EXPECT_FLOAT_EQ(r.image.at(0, 0, 0), 100.f);
      EXPECT_FLOAT_EQ(r.image.at(7, 5, 0), 175.f);
    }
  }
}

TEST(ImageIO, RealDicomSeriesHasItsGeometry) {
  const auto dir = test::shared_data() / "ct-abdomen-example";
  if (!std::filesystem::exists(dir)) GTEST_SKIP() << "shared data not present";
  ASSERT_TRUE(is_dicom_series_dir(dir / "example_ct_dicom"));
  const LoadedImage dcm = read_image(dir / "example_ct_dicom");  // JPEG2000-compressed slices
  EXPECT_EQ(dcm.info.format, "dicom-series");
  EXPECT_EQ(dcm.info.modality, "CT");
  EXPECT_EQ(dcm.image.geometry.size, (std::array<std::size_t, 3>{512, 512, 20}));
  EXPECT_NEAR(dcm.image.geometry.spacing[0], 0.9765625, 1e-6);
  EXPECT_NEAR(dcm.image.geometry.spacing[1], 0.9765625, 1e-6);
  EXPECT_NEAR(dcm.image.geometry.spacing[2], 2.0, 1e-3);
  EXPECT_EQ(orientation_code(dcm.image.geometry), "LPS");  // axial slices, DICOM patient axes
  const auto r = intensity_range(dcm.image);
  EXPECT_EQ(r.min, -1024.f);  // HU: air (rescale slope/intercept applied)
  EXPECT_GE(r.max, 1000.f);   // bone
}

// A CT of air holding a ball (400 HU, radius 12 mm, centre (0, 0, 30) LPS) and a bar
// running head to foot (1000 HU, beside it): 1 mm, 48 x 48 x 60.
FloatImage ball_and_bar() {
  Geometry g;
  g.size = {48, 48, 60};
  g.origin = {-24, -24, 0};
  FloatImage img(g);
  for (std::size_t k = 0; k < 60; ++k)
    for (std::size_t j = 0; j < 48; ++j)
      for (std::size_t i = 0; i < 48; ++i) {
        const auto p = g.index_to_lps(i, j, k);
        float v = -1000;
        if (p[0] * p[0] + p[1] * p[1] + (p[2] - 30) * (p[2] - 30) < 144) v = 400;
        if (std::fabs(p[0] - 16) < 3 && std::fabs(p[1] + 16) < 3) v = 1000;
        img.at(i, j, k) = v;
      }
  return img;
}

// The ball's centroid (LPS mm) and volume (ml) in an image.
std::pair<std::array<double, 3>, double> ball_of(const FloatImage& img) {
  std::array<double, 3> sum{0, 0, 0};
  double n = 0;
  for (std::size_t k = 0; k < img.nz(); ++k)
    for (std::size_t j = 0; j < img.ny(); ++j)
      for (std::size_t i = 0; i < img.nx(); ++i) {
        const auto p = img.geometry.index_to_lps(i, j, k);
        if (img.at(i, j, k) <= -300 || std::hypot(p[0] - 16, p[1] + 16) < 9) continue;
        for (int a = 0; a < 3; ++a) sum[a] += p[a];
        ++n;
      }
  const auto& s = img.geometry.spacing;
  return {{sum[0] / n, sum[1] / n, sum[2] / n}, n * s[0] * s[1] * s[2] / 1000};
}

// A CT series acquired with the gantry tilted 20 degrees is a sheared stack: read as ITK
// lays it out, the slices sit one above the other and the ball lands 10 mm from where it
// is. Read here, the stack is resampled onto an upright grid (axes along the rows, and
// the table's path): the ball is where it was, its size kept, the tilt reported.
TEST(ImageIO, GantryTiltedSeriesIsPutOnAnOrthogonalGrid) {
  TempDir dir;
  const FloatImage truth = ball_and_bar();
  test::write_ct_series(truth, dir.path() / "flat");
  test::write_ct_series(truth, dir.path() / "tilted", {}, 20);
  const LoadedImage flat = read_image(dir.path() / "flat");
  const LoadedImage tilted = read_image(dir.path() / "tilted");
  EXPECT_EQ(flat.info.gantry_tilt_deg, 0);
  EXPECT_NEAR(tilted.info.gantry_tilt_deg, 20, 0.01);
  // Upright: the axes of the volume acquired flat, the table's step apart; the grid holds
  // every tilted slice whole (taller by how far a slice climbs from its first row to its last,
  // 47 x sin 20 = 16.1 mm; shallower by its rows' cos 20).
  const Geometry& g = tilted.image.geometry;
  for (int i = 0; i < 9; ++i) EXPECT_NEAR(g.direction[i], flat.image.geometry.direction[i], 1e-6) << i;
  EXPECT_NEAR(g.spacing[2], 1.0, 1e-6);
  EXPECT_EQ(g.size[2], 60u + 16u);
  EXPECT_EQ(g.size[1], 45u);  // 47 x cos 20 = 44.2 mm
  const auto [c0, v0] = ball_of(truth);
  for (const LoadedImage* in : {&flat, &tilted}) {
    const auto [c, v] = ball_of(in->image);
    for (int a = 0; a < 3; ++a) EXPECT_NEAR(c[a], c0[a], 0.3) << "axis " << a << ", tilt " << in->info.gantry_tilt_deg;
    EXPECT_NEAR(v, v0, 0.05 * v0);
    // Voxel for voxel against the truth at the same place (air beyond its field): off by
    // more than half an edge's step (1400 HU) only where interpolating twice (writing the
    // tilted slices, reading them back) moved an edge across a voxel's centre.
    const FloatImage expected = resample_image_to(truth, in->image.geometry, -1000.f);
    std::size_t off = 0;
    for (std::size_t i = 0; i < expected.voxels.size(); ++i) off += std::fabs(in->image.voxels[i] - expected.voxels[i]) > 700;
    EXPECT_LT(static_cast<double>(off) / static_cast<double>(expected.voxels.size()), 0.002) << off;
  }
}

// Slices whose in-plane shift is not the same from each to the next are no grid: refused,
// naming the slices, rather than read with one slice out of place.
TEST(ImageIO, SeriesWithOneSliceShiftedInItsPlaneIsRefused) {
  TempDir dir;
  test::write_ct_series(ball_and_bar(), dir.path() / "ct");
  DcmFileFormat f;
  const std::filesystem::path moved = dir.path() / "ct" / "slice0030.dcm";
  ASSERT_TRUE(f.loadFile(moved.c_str()).good());
  ASSERT_TRUE(f.loadAllDataIntoMemory().good());  // it is written back over itself
  ASSERT_TRUE(f.getDataset()->putAndInsertString(DCM_ImagePositionPatient, "-22.5\\-24\\30").good());
  ASSERT_TRUE(f.saveFile(moved.c_str(), EXS_LittleEndianExplicit).good());
  try {
    read_image(dir.path() / "ct");
    FAIL() << "read";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("slices shifted unevenly in their plane"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("slice0030.dcm"), std::string::npos) << e.what();
  }
}

TEST(ImageIO, SingleDicomFileReadsAs2D) {
  const auto dir = test::shared_data() / "ct-abdomen-example" / "example_ct_dicom";
  if (!std::filesystem::exists(dir)) GTEST_SKIP() << "shared data not present";
  std::vector<std::filesystem::path> files;
  for (const auto& e : std::filesystem::directory_iterator(dir)) files.push_back(e.path());
  std::sort(files.begin(), files.end());
  const LoadedImage slice = read_image(files.front());
  EXPECT_EQ(slice.info.format, "dicom");
  EXPECT_EQ(slice.info.modality, "CT");
  EXPECT_EQ(slice.image.geometry.dimension, 2);
  EXPECT_EQ(slice.image.nx(), 512u);
  EXPECT_EQ(slice.image.ny(), 512u);
}

TEST(ImageIO, TruncatedJpegIsRejected) {
  const auto dir = test::shared_data() / "xray-ap-aasce" / "images";
  if (!std::filesystem::exists(dir)) GTEST_SKIP() << "shared data not present";
  TempDir tmp;
  const std::string bytes = test::read_file(*std::filesystem::directory_iterator(dir));
  { std::ofstream(tmp / "cut.jpg", std::ios::binary) << bytes.substr(0, bytes.size() / 2); }
  EXPECT_THROW(read_image(tmp / "cut.jpg"), Error);
}

}  // namespace
}  // namespace spine
