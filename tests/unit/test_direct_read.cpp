// read_image decodes 3D scalar voxels itself (NIfTI in one pass, other formats through
// their ImageIO, raw MetaImage in slabs, DICOM series a slice at a time) to hold only the
// float image. These tests compare it with ITK's own ImageFileReader / ImageSeriesReader,
// which it replaces, value for value and in geometry, over the stored types, byte orders
// and scalings a file can have.
#include <cmath>
#include <cstring>
#include <fstream>

#include <itkGDCMImageIO.h>
#include <itkGDCMSeriesFileNames.h>
#include <itkImage.h>
#include <itkImageFileReader.h>
#include <itkImageFileWriter.h>
#include <itkImageIOFactory.h>
#include <itkImageSeriesReader.h>
#include <zlib.h>

#include "io/itk_convert.hpp"
#include "spine/error.hpp"
#include "spine/io.hpp"
#include "test_util.hpp"

namespace spine {
namespace {

using test::TempDir;
namespace fs = std::filesystem;

FloatImage itk_reference(const fs::path& path) {
  auto reader = itk::ImageFileReader<itk::Image<float, 3>>::New();
  reader->SetFileName(path.string());
  reader->Update();
  return detail::from_itk<float>(reader->GetOutput());
}

void expect_identical(const FloatImage& a, const FloatImage& b, const std::string& what) {
  SCOPED_TRACE(what);
  ASSERT_EQ(a.geometry.size, b.geometry.size);
  EXPECT_EQ(a.geometry.spacing, b.geometry.spacing);
  EXPECT_EQ(a.geometry.origin, b.geometry.origin);
  EXPECT_EQ(a.geometry.direction, b.geometry.direction);
  ASSERT_EQ(a.voxels.size(), b.voxels.size());
  std::size_t differ = 0;
  for (std::size_t i = 0; i < a.voxels.size(); ++i) differ += a.voxels[i] != b.voxels[i];
  EXPECT_EQ(differ, 0u) << "voxels differ";
}

template <class T>
void put(std::string& s, std::size_t at, T v, bool big) {
  unsigned char b[sizeof(T)];
  std::memcpy(b, &v, sizeof(T));
  if (big) std::reverse(b, b + sizeof(T));
  std::memcpy(s.data() + at, b, sizeof(T));
}

// A NIfTI-1 file of datatype `code` (values from `value(i)`), 5 x 4 x 3 (x `nt`), with
// an oblique qform, scl_slope / scl_inter as given, in either byte order.
template <class T>
std::string nifti(int code, bool big, float slope, float inter, int nt = 1) {
  const int nx = 5, ny = 4, nz = 3;
  std::string s(352, '\0');
  put<std::int32_t>(s, 0, 348, big);
  const std::int16_t dims[8] = {static_cast<std::int16_t>(nt > 1 || nt == -1 ? 4 : 3), nx, ny, nz,
                                static_cast<std::int16_t>(std::abs(nt)), 1, 1, 1};
  for (int i = 0; i < 8; ++i) put<std::int16_t>(s, 40 + 2 * i, dims[i], big);
  put<std::int16_t>(s, 70, static_cast<std::int16_t>(code), big);
  put<std::int16_t>(s, 72, static_cast<std::int16_t>(8 * sizeof(T)), big);
  const float pixdim[8] = {-1, 0.8f, 1.2f, 2.5f, 1, 1, 1, 1};
  for (int i = 0; i < 8; ++i) put<float>(s, 76 + 4 * i, pixdim[i], big);
  put<float>(s, 108, 352.f, big);
  put<float>(s, 112, slope, big);
  put<float>(s, 116, inter, big);
  put<std::int16_t>(s, 252, 1, big);  // qform: a rotation about z, offsets
  const float q[6] = {0.f, 0.f, 0.2588190f, 12.5f, -30.f, 7.25f};
  for (int i = 0; i < 6; ++i) put<float>(s, 256 + 4 * i, q[i], big);
  s.replace(344, 4, std::string("n+1\0", 4));
  const std::size_t n = static_cast<std::size_t>(nx * ny * nz * std::abs(nt));
  std::string data(n * sizeof(T), '\0');
  for (std::size_t i = 0; i < n; ++i) {
    // Negative values for the signed types, fractions for the floating ones.
    const double v = std::is_floating_point_v<T> ? (static_cast<double>(i) - 20.0) * 1.37
                     : std::is_signed_v<T>       ? static_cast<double>(i) * 3 - 100
                                                 : static_cast<double>(i) * 2;
    put<T>(data, i * sizeof(T), static_cast<T>(v), big);
  }
  return s + data;
}

void write_bytes(const fs::path& p, const std::string& bytes, bool gzip = false) {
  if (gzip) {
    gzFile gz = gzopen(p.string().c_str(), "wb");
    gzwrite(gz, bytes.data(), static_cast<unsigned>(bytes.size()));
    gzclose(gz);
  } else {
    std::ofstream(p, std::ios::binary) << bytes;
  }
}

TEST(DirectRead, NiftiEqualsItkForEveryTypeOrderAndScaling) {
  TempDir dir;
  int files = 0;
  const std::pair<float, float> scalings[] = {{0.f, 0.f}, {1.f, 0.f}, {2.5f, -100.f}, {-0.5f, 3.f}, {1.f, 1024.f}};
  for (const bool big : {false, true}) {
    for (const auto& [slope, inter] : scalings) {
      const std::vector<std::pair<std::string, std::string>> cases = {
          {"u8", nifti<std::uint8_t>(2, big, slope, inter)},    {"i16", nifti<std::int16_t>(4, big, slope, inter)},
          {"i32", nifti<std::int32_t>(8, big, slope, inter)},   {"f32", nifti<float>(16, big, slope, inter)},
          {"f64", nifti<double>(64, big, slope, inter)},        {"i8", nifti<std::int8_t>(256, big, slope, inter)},
          {"u16", nifti<std::uint16_t>(512, big, slope, inter)}, {"u32", nifti<std::uint32_t>(768, big, slope, inter)}};
      for (const auto& [name, bytes] : cases) {
        for (const bool gz : {false, true}) {
          const fs::path p = dir / (name + (big ? "-be-" : "-le-") + std::to_string(files++) + (gz ? ".nii.gz" : ".nii"));
          write_bytes(p, bytes, gz);
          const LoadedImage mine = read_image(p);
          EXPECT_EQ(mine.info.pixel_type, itk::ImageIOBase::GetComponentTypeAsString(
                                              [&] {
                                                auto io = itk::ImageIOFactory::CreateImageIO(
                                                    p.string().c_str(), itk::CommonEnums::IOFileMode::ReadMode);
                                                io->SetFileName(p.string());
                                                io->ReadImageInformation();
                                                return io->GetComponentType();
                                              }()))
              << p;
          expect_identical(mine.image, itk_reference(p), p.filename().string());
        }
      }
    }
  }
  EXPECT_EQ(files, 2 * 5 * 8 * 2);
}

TEST(DirectRead, NiftiWithASingleTimePointIs3D) {
  TempDir dir;
  write_bytes(dir / "t1.nii", nifti<std::int16_t>(4, false, 1.f, 0.f, -1));  // dim[0] = 4, dim[4] = 1
  const LoadedImage mine = read_image(dir / "t1.nii");
  EXPECT_EQ(mine.info.file_dimension, 3);
  expect_identical(mine.image, itk_reference(dir / "t1.nii"), "4D, one time point");
}

TEST(DirectRead, NiftiDirectReadStillRefusesBadData) {
  TempDir dir;
  std::string f = nifti<float>(16, false, 0.f, 0.f);
  put<float>(f, 352 + 4 * 7, std::nanf(""), false);
  put<float>(f, 352 + 4 * 9, INFINITY, false);
  write_bytes(dir / "nan.nii.gz", f, true);
  try {
    read_image(dir / "nan.nii.gz");
    FAIL() << "NaN voxels accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("2 of 60 voxels are NaN or infinite"), std::string::npos) << e.what();
  }
  // A gzip stream cut inside the voxels.
  const std::string whole = nifti<std::int16_t>(4, false, 1.f, 0.f);
  write_bytes(dir / "whole.nii.gz", whole, true);
  const std::string gz = test::read_file(dir / "whole.nii.gz");
  write_bytes(dir / "cut.nii.gz", gz.substr(0, gz.size() - 30));
  EXPECT_THROW(read_image(dir / "cut.nii.gz"), Error);
  // Scaling that overflows float is as non-finite as a stored infinity.
  write_bytes(dir / "huge.nii", nifti<std::int16_t>(4, false, 3e38f, 0.f));
  EXPECT_THROW(read_image(dir / "huge.nii"), Error);
}

TEST(DirectRead, RawMetaImageReadInSlabsEqualsItk) {
  // 256 x 256 x 160 int16 is 20 MiB: read as a 16 MiB slab and a partial one.
  TempDir dir;
  using Img = itk::Image<std::int16_t, 3>;
  auto img = Img::New();
  Img::RegionType region;
  region.SetSize({{256, 256, 160}});
  img->SetRegions(region);
  img->Allocate();
  std::int16_t* buf = img->GetBufferPointer();
  for (std::size_t i = 0; i < 256u * 256u * 160u; ++i) buf[i] = static_cast<std::int16_t>((i * 2654435761u) >> 20);
  const double spacing[3] = {0.7, 0.7, 1.5};
  img->SetSpacing(spacing);
  const double origin[3] = {-90, 12, 300};
  img->SetOrigin(origin);
  for (const bool compress : {false, true}) {
    const fs::path p = dir / (compress ? "z.mha" : "raw.mha");
    auto writer = itk::ImageFileWriter<Img>::New();
    writer->SetFileName(p.string());
    writer->SetInput(img);
    writer->SetUseCompression(compress);
    writer->Update();
    const LoadedImage mine = read_image(p);
    EXPECT_EQ(mine.info.pixel_type, "short");
    expect_identical(mine.image, itk_reference(p), p.filename().string());
    EXPECT_EQ(mine.image.voxels[256u * 256u * 150u + 7], static_cast<float>(buf[256u * 256u * 150u + 7]));
  }
}

TEST(DirectRead, DicomSeriesEqualsSeriesReader) {
  const auto dir = test::shared_data() / "ct-abdomen-example" / "example_ct_dicom";
  if (!fs::exists(dir)) GTEST_SKIP() << "shared data not present";
  const LoadedImage mine = read_image(dir);
  auto names = itk::GDCMSeriesFileNames::New();
  names->SetDirectory(dir.string());
  auto reader = itk::ImageSeriesReader<itk::Image<float, 3>>::New();
  reader->SetImageIO(itk::GDCMImageIO::New());
  reader->SetFileNames(names->GetInputFileNames());
  reader->Update();
  const FloatImage ref = detail::from_itk<float>(reader->GetOutput());
  // The same slices in the same order (our order is along the slice normal, GDCM's too).
  ASSERT_EQ(mine.image.geometry.size, ref.geometry.size);
  for (int i = 0; i < 3; ++i) {
    EXPECT_NEAR(mine.image.geometry.spacing[i], ref.geometry.spacing[i], 1e-9);
    EXPECT_NEAR(mine.image.geometry.origin[i], ref.geometry.origin[i], 1e-6);
  }
  EXPECT_EQ(mine.image.geometry.direction, ref.geometry.direction);
  std::size_t differ = 0;
  for (std::size_t i = 0; i < ref.voxels.size(); ++i) differ += mine.image.voxels[i] != ref.voxels[i];
  EXPECT_EQ(differ, 0u);
}

}  // namespace
}  // namespace spine
