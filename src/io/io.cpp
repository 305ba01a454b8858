// Image reading and writing through ITK, including DICOM series (GDCM) and 2D pictures.
#include "spine/io.hpp"

#include <itkGDCMImageIO.h>
#include <itkGDCMSeriesFileNames.h>
#include <itkImageFileReader.h>
#include <itkImageFileWriter.h>
#include <itkImageIOFactory.h>
#include <itkImageSeriesReader.h>
#include <itkRGBPixel.h>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <future>
#include <limits>
#include <unistd.h>
#include <zlib.h>

#include "io/itk_convert.hpp"
#include "spine/error.hpp"

namespace fs = std::filesystem;

namespace spine {
namespace {

std::string lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return std::tolower(c); });
  return s;
}

// Multi-extension aware: ".nii.gz" rather than ".gz".
std::string full_extension(const fs::path& p) {
  const std::string name = lower(p.filename().string());
  for (const char* ext : {".nii.gz", ".nrrd", ".nhdr", ".mha", ".mhd", ".nii", ".png", ".jpg",
                          ".jpeg", ".dcm", ".dicom"}) {
    const std::string e(ext);
    if (name.size() > e.size() && name.compare(name.size() - e.size(), e.size(), e) == 0) return e;
  }
  return lower(p.extension().string());
}

std::string format_of_extension(const std::string& ext) {
  if (ext == ".nii" || ext == ".nii.gz") return "nifti";
  if (ext == ".nrrd" || ext == ".nhdr") return "nrrd";
  if (ext == ".mha" || ext == ".mhd") return "meta";
  if (ext == ".png") return "png";
  if (ext == ".jpg" || ext == ".jpeg") return "jpeg";
  if (ext == ".dcm" || ext == ".dicom") return "dicom";
  return "unknown";
}

// ITK exception descriptions span several lines; keep the first meaningful one.
std::string short_itk_message(const itk::ExceptionObject& e) {
  std::string d = e.GetDescription();
  const auto nl = d.find('\n');
  if (nl != std::string::npos) d = d.substr(0, nl);
  while (!d.empty() && (d.back() == ' ' || d.back() == '\r')) d.pop_back();
  return d.empty() ? "unreadable image" : d;
}

std::string pixel_type_name(itk::IOComponentEnum c) {
  return itk::ImageIOBase::GetComponentTypeAsString(c);
}

void check_finite_geometry(const Geometry& g, const fs::path& path) {
  for (int i = 0; i < 3; ++i) {
    if (!(g.spacing[i] > 0) || !std::isfinite(g.spacing[i]))
      throw input_error(path.string() + ": invalid voxel spacing");
  }
  if (g.voxel_count() == 0) throw input_error(path.string() + ": image has no voxels");
}

template <unsigned D>
FloatImage read_scalar(const fs::path& path, itk::ImageIOBase* io) {
  using ItkImage = itk::Image<float, D>;
  auto reader = itk::ImageFileReader<ItkImage>::New();
  reader->SetFileName(path.string());
  reader->SetImageIO(io);
  reader->Update();
  return detail::from_itk<float>(reader->GetOutput());
}

LoadedImage read_dicom_series(const fs::path& dir) {
  auto names = itk::GDCMSeriesFileNames::New();
  names->SetUseSeriesDetails(true);
  names->SetDirectory(dir.string());
  const auto& uids = names->GetSeriesUIDs();
  if (uids.empty()) throw input_error(dir.string() + ": no DICOM series in this directory");
  // Several series: take the one with most slices, deterministically.
  std::vector<std::string> files;
  for (const auto& uid : uids) {
    const auto f = names->GetFileNames(uid);
    if (f.size() > files.size()) files = f;
  }
  auto dicom = itk::GDCMImageIO::New();
  // Only technical tags are read out below; patient tags are never copied anywhere.
  using ItkImage = itk::Image<float, 3>;
  auto reader = itk::ImageSeriesReader<ItkImage>::New();
  reader->SetImageIO(dicom);
  reader->SetFileNames(files);
  reader->Update();
  LoadedImage out;
  out.image = detail::from_itk<float>(reader->GetOutput());
  out.info.format = "dicom-series";
  std::string modality;
  if (dicom->GetValueFromTag("0008|0060", modality)) {
    modality.erase(std::remove(modality.begin(), modality.end(), ' '), modality.end());
    out.info.modality = modality;
  }
  out.info.pixel_type = pixel_type_name(dicom->GetComponentType());
  out.info.file_dimension = 3;
  return out;
}

// ITK's NIfTI and JPEG readers accept truncated files silently (missing voxels come back
// as zeros or grey), so completeness is checked here before reading.
void check_complete(const fs::path& path, const std::string& ext, std::uint64_t image_bytes) {
  if (ext == ".nii" || ext == ".nii.gz") {
    const std::uint64_t needed = image_bytes + 348;  // header + voxel data
    std::uint64_t available = 0;
    if (ext == ".nii") {
      available = fs::file_size(path);
    } else {
      gzFile gz = gzopen(path.string().c_str(), "rb");
      if (!gz) throw input_error(path.string() + ": cannot open");
      std::vector<char> buf(1 << 20);
      int n = 0;
      while ((n = gzread(gz, buf.data(), static_cast<unsigned>(buf.size()))) > 0) available += n;
      int err = Z_OK;
      gzerror(gz, &err);
      gzclose(gz);
      if (n < 0 || (err != Z_OK && err != Z_STREAM_END))
        throw input_error(path.string() + ": corrupt gzip stream (truncated file?)");
    }
    if (available < needed)
      throw input_error(path.string() + ": file is truncated (" + std::to_string(available) + " of at least " +
                        std::to_string(needed) + " bytes)");
  } else if (ext == ".jpg" || ext == ".jpeg") {
    // A complete JPEG ends with the EOI marker FF D9 (possibly followed by padding).
    std::ifstream f(path, std::ios::binary);
    const auto size = static_cast<std::streamoff>(fs::file_size(path));
    const std::streamoff tail = std::min<std::streamoff>(size, 256);
    std::string bytes(static_cast<std::size_t>(tail), '\0');
    f.seekg(size - tail);
    f.read(bytes.data(), tail);
    if (bytes.find("\xFF\xD9") == std::string::npos)
      throw input_error(path.string() + ": JPEG file is truncated (no end-of-image marker)");
  }
}

// The image behind an ImageIO whose information is read (the voxels, their type and the
// dimensions checked).
LoadedImage read_checked(const fs::path& path, itk::ImageIOBase* io) {
  try {
    LoadedImage out;
    out.info.format = format_of_extension(full_extension(path));
    if (auto* gdcm = dynamic_cast<itk::GDCMImageIO*>(io)) {
      out.info.format = "dicom";
      std::string modality;
      if (gdcm->GetValueFromTag("0008|0060", modality)) {
        modality.erase(std::remove(modality.begin(), modality.end(), ' '), modality.end());
        out.info.modality = modality;
      }
    }
    out.info.components = static_cast<int>(io->GetNumberOfComponents());
    out.info.pixel_type = pixel_type_name(io->GetComponentType());
    unsigned dims = io->GetNumberOfDimensions();
    // Trailing axes of length 1 (a 2D NIfTI stored as 3D, a single-frame DICOM) are dropped.
    while (dims > 2 && io->GetDimensions(dims - 1) == 1) --dims;
    if (dims > 3) {
      throw input_error(path.string() + ": " + std::to_string(dims) +
                        "-dimensional image; only 2D and 3D images are supported");
    }
    out.info.file_dimension = static_cast<int>(dims);
    if (dims == 2) {
      out.image = read_scalar<2>(path, io);
    } else if (dims == 3) {
      out.image = read_scalar<3>(path, io);
    } else {
      throw input_error(path.string() + ": 1-dimensional image");
    }
    check_finite_geometry(out.image.geometry, path);
    return out;
  } catch (const itk::ExceptionObject& e) {
    throw input_error(path.string() + ": cannot read image (" + short_itk_message(e) + ")");
  }
}

}  // namespace

bool has_image_extension(const fs::path& file) {
  return format_of_extension(full_extension(file)) != "unknown";
}

std::string study_name_of(const fs::path& path) {
  fs::path p = path;
  if (p.filename().empty()) p = p.parent_path();  // trailing slash
  if (fs::is_directory(p)) return p.filename().string();
  std::string name = p.filename().string();
  const std::string ext = full_extension(p);
  if (format_of_extension(ext) != "unknown") name.resize(name.size() - ext.size());
  return name;
}

bool is_dicom_series_dir(const fs::path& dir) {
  if (!fs::is_directory(dir)) return false;
  // Cheap check first: a DICOM file has "DICM" at byte 128.
  for (const auto& entry : fs::directory_iterator(dir)) {
    if (!entry.is_regular_file()) continue;
    std::ifstream f(entry.path(), std::ios::binary);
    char magic[4] = {};
    f.seekg(128);
    if (f.read(magic, 4) && std::string(magic, 4) == "DICM") return true;
  }
  return false;
}

LoadedImage read_image(const fs::path& path) {
  if (!fs::exists(path)) throw input_error(path.string() + ": no such file or directory");
  try {
    if (fs::is_directory(path)) {
      auto loaded = read_dicom_series(path);
      check_finite_geometry(loaded.image.geometry, path);
      return loaded;
    }
    if (fs::file_size(path) == 0) throw input_error(path.string() + ": file is empty");
    auto io = itk::ImageIOFactory::CreateImageIO(path.string().c_str(),
                                                 itk::CommonEnums::IOFileMode::ReadMode);
    if (!io) throw input_error(path.string() + ": not an image in a supported format");
    io->SetFileName(path.string());
    io->ReadImageInformation();
    const std::string ext = full_extension(path);
    const std::uint64_t image_bytes = io->GetImageSizeInBytes();
    // A .nii.gz is only known to be complete once decompressed: that check runs beside
    // ITK's own decompression instead of before it (about a second less for a large CT).
    // Its error, the clearer one, wins when both fail.
    std::future<void> complete;
    if (ext == ".nii.gz") {
      complete = std::async(std::launch::async, [path, ext, image_bytes] { check_complete(path, ext, image_bytes); });
    } else {
      check_complete(path, ext, image_bytes);
    }
    try {
      LoadedImage out = read_checked(path, io.GetPointer());
      if (complete.valid()) complete.get();
      return out;
    } catch (...) {
      if (complete.valid()) complete.get();
      throw;
    }
  } catch (const itk::ExceptionObject& e) {
    throw input_error(path.string() + ": cannot read image (" + short_itk_message(e) + ")");
  }
}

LabelImage read_labels(const fs::path& path) {
  const LoadedImage loaded = read_image(path);
  LabelImage labels(loaded.image.geometry);
  for (std::size_t i = 0; i < labels.voxels.size(); ++i) {
    const float v = loaded.image.voxels[i];
    if (v != std::round(v) || v < std::numeric_limits<std::int16_t>::min() ||
        v > std::numeric_limits<std::int16_t>::max()) {
      throw input_error(path.string() + ": not a label map (non-integer or out-of-range value)");
    }
    labels.voxels[i] = static_cast<std::int16_t>(v);
  }
  return labels;
}

namespace {

fs::path temporary_sibling(const fs::path& path) {
  // Keep the full extension so ITK picks the same writer for the temporary file.
  const std::string ext = full_extension(path);
  std::string stem = path.filename().string();
  stem.resize(stem.size() - ext.size());
  return path.parent_path() / ("." + stem + ".tmp-" + std::to_string(::getpid()) + ext);
}

template <class ItkImagePointer>
void write_itk_atomically(const ItkImagePointer& img, const fs::path& path) {
  using ItkImage = typename ItkImagePointer::ObjectType;
  const fs::path tmp = temporary_sibling(path);
  try {
    auto writer = itk::ImageFileWriter<ItkImage>::New();
    writer->SetFileName(tmp.string());
    writer->SetInput(img);
    writer->SetUseCompression(true);
    writer->Update();
    fs::rename(tmp, path);
  } catch (const itk::ExceptionObject& e) {
    std::error_code ec;
    fs::remove(tmp, ec);
    throw input_error(path.string() + ": cannot write image (" + short_itk_message(e) + ")");
  } catch (const fs::filesystem_error& e) {
    std::error_code ec;
    fs::remove(tmp, ec);
    throw input_error(path.string() + ": cannot write image (" + e.code().message() + ")");
  }
}

template <class TPixel, class TIn, class Convert>
void write_typed(const Image<TIn>& image, const fs::path& path, Convert convert) {
  if (image.geometry.dimension == 2) {
    write_itk_atomically(detail::to_itk<TPixel, 2>(image, convert), path);
  } else {
    write_itk_atomically(detail::to_itk<TPixel, 3>(image, convert), path);
  }
}

template <class T>
T clamp_round(float v) {
  const float lo = static_cast<float>(std::numeric_limits<T>::min());
  const float hi = static_cast<float>(std::numeric_limits<T>::max());
  if (!(v == v)) return T{0};
  return static_cast<T>(std::lround(std::clamp(v, lo, hi)));
}

}  // namespace

void write_image(const FloatImage& image, const fs::path& path, StoredPixel stored) {
  const std::string format = format_of_extension(full_extension(path));
  if (format == "unknown" || format == "dicom")
    throw usage_error(path.string() + ": unsupported output format (use .nii.gz, .nrrd, .mha, .png)");
  if (format == "png" && (stored != StoredPixel::kUInt8 || image.geometry.dimension != 2))
    throw internal_error(path.string() + ": PNG output needs a 2D 8-bit image");
  switch (stored) {
    case StoredPixel::kFloat32:
      write_typed<float>(image, path, [](float v) { return v; });
      break;
    case StoredPixel::kInt16:
      write_typed<std::int16_t>(image, path, clamp_round<std::int16_t>);
      break;
    case StoredPixel::kUInt8:
      write_typed<std::uint8_t>(image, path, clamp_round<std::uint8_t>);
      break;
  }
}

void write_labels(const LabelImage& labels, const fs::path& path) {
  write_typed<std::int16_t>(labels, path, [](std::int16_t v) { return v; });
}

void write_png(const RgbImage& picture, const fs::path& path) {
  using Pixel = itk::RGBPixel<unsigned char>;
  using ItkImage = itk::Image<Pixel, 2>;
  auto img = ItkImage::New();
  ItkImage::RegionType region;
  region.SetSize(0, picture.width);
  region.SetSize(1, picture.height);
  img->SetRegions(region);
  img->Allocate();
  Pixel* buf = img->GetBufferPointer();
  for (std::size_t i = 0; i < picture.width * picture.height; ++i) {
    buf[i].Set(picture.rgb[3 * i], picture.rgb[3 * i + 1], picture.rgb[3 * i + 2]);
  }
  write_itk_atomically(img, path);
}

void write_text_file(const fs::path& path, const std::string& text) {
  const fs::path tmp =
      path.parent_path() / ("." + path.filename().string() + ".tmp-" + std::to_string(::getpid()));
  {
    std::ofstream out(tmp, std::ios::binary);
    out << text;
    out.flush();
    if (!out) {
      std::error_code ec;
      fs::remove(tmp, ec);
      throw input_error(path.string() + ": cannot write file");
    }
  }
  fs::rename(tmp, path);
}

}  // namespace spine
