// Image reading and writing through ITK, including DICOM series (GDCM) and 2D pictures.
#include "spine/io.hpp"

#include <itkGDCMImageIO.h>
#include <itkGDCMSeriesFileNames.h>
#include <itkImageFileReader.h>
#include <itkImageFileWriter.h>
#include <itkImageIOFactory.h>
#include <itkImageSeriesReader.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <limits>
#include <optional>
#include <thread>
#include <png.h>
#include <unistd.h>
#include <zlib.h>

#include "io/header_check.hpp"
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
    if (!std::isfinite(g.origin[i])) throw input_error(path.string() + ": origin is not finite");
  }
  // The direction's columns must be unit vectors at right angles: anything else is a
  // header that ITK has made the best of, and measurements in mm would be wrong.
  for (int c = 0; c < 3; ++c) {
    for (int d = c; d < 3; ++d) {
      double dot = 0;
      for (int r = 0; r < 3; ++r) dot += g.direction[r * 3 + c] * g.direction[r * 3 + d];
      if (!std::isfinite(dot) || std::fabs(dot - (c == d ? 1.0 : 0.0)) > 1e-3)
        throw input_error(path.string() + ": orientation (direction matrix) is not a rotation");
    }
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

// The geometry ImageFileReader<float, 3> gives an image whose information `io` has read:
// the first three axes (any further ones have length 1).
Geometry geometry_of_io(const itk::ImageIOBase* io) {
  Geometry g;
  g.dimension = 3;
  for (unsigned i = 0; i < 3; ++i) {
    g.size[i] = io->GetDimensions(i);
    g.spacing[i] = io->GetSpacing(i);
    g.origin[i] = io->GetOrigin(i);
    const std::vector<double> axis = io->GetDirection(i);
    for (unsigned r = 0; r < 3; ++r) g.direction[r * 3 + i] = r < axis.size() ? axis[r] : (r == i ? 1.0 : 0.0);
  }
  return g;
}

template <class T>
void convert_values(const void* src, std::size_t n, float* dst) {
  const T* in = static_cast<const T*>(src);
  for (std::size_t i = 0; i < n; ++i) dst[i] = static_cast<float>(in[i]);
}

// Values of the component type an ImageIO reports (after any rescaling it applies, as
// GDCM does for DICOM) to floats, as ImageFileReader<float> converts them.
void convert_component(itk::IOComponentEnum type, const void* src, std::size_t n, float* dst, const fs::path& path) {
  using C = itk::IOComponentEnum;
  switch (type) {
    case C::UCHAR: return convert_values<unsigned char>(src, n, dst);
    case C::CHAR: return convert_values<signed char>(src, n, dst);
    case C::USHORT: return convert_values<unsigned short>(src, n, dst);
    case C::SHORT: return convert_values<short>(src, n, dst);
    case C::UINT: return convert_values<unsigned int>(src, n, dst);
    case C::INT: return convert_values<int>(src, n, dst);
    case C::ULONG: return convert_values<unsigned long>(src, n, dst);
    case C::LONG: return convert_values<long>(src, n, dst);
    case C::ULONGLONG: return convert_values<unsigned long long>(src, n, dst);
    case C::LONGLONG: return convert_values<long long>(src, n, dst);
    case C::FLOAT: return convert_values<float>(src, n, dst);
    case C::DOUBLE: return convert_values<double>(src, n, dst);
    default: throw input_error(path.string() + ": unsupported pixel type " + itk::ImageIOBase::GetComponentTypeAsString(type));
  }
}

// Reads the stored values of a single-component image with its ImageIO and converts them
// into `out` (ImageFileReader<float> would hold a float image of its own besides ours):
// in slabs of about 16 MiB where the IO can read part of a file (raw MetaImage), else whole.
void read_io_into(itk::ImageIOBase* io, float* out, const fs::path& path) {
  const unsigned dims = io->GetNumberOfDimensions();
  const std::size_t value_bytes = io->GetComponentSize();
  std::size_t slice = 1, slices = 1;
  for (unsigned i = 0; i < dims; ++i) (i < 2 ? slice : slices) *= io->GetDimensions(i);
  std::size_t step = slices;
  if (io->CanStreamRead() && dims == 3)
    step = std::clamp<std::size_t>((std::size_t{16} << 20) / std::max<std::size_t>(1, slice * value_bytes), 1, slices);
  std::vector<unsigned char> buffer(step * slice * value_bytes);
  for (std::size_t z = 0; z < slices; z += step) {
    const std::size_t n = std::min(step, slices - z);
    itk::ImageIORegion region(dims);
    for (unsigned i = 0; i < dims; ++i) {
      region.SetIndex(i, 0);
      region.SetSize(i, io->GetDimensions(i));
    }
    if (step < slices) {
      region.SetIndex(2, static_cast<itk::IndexValueType>(z));
      region.SetSize(2, n);
    }
    io->SetIORegion(region);
    io->Read(buffer.data());
    convert_component(io->GetComponentType(), buffer.data(), n * slice, out + z * slice, path);
  }
}

enum class ReadPath {
  kNiftiDirect,  // read_nifti_voxels: the float image and one chunk
  kImageIo,      // read_io_into: the float image and the stored values (or one slab of them)
  kItkReader,    // ImageFileReader: its float image, the stored values and our copy
};

std::uint64_t read_bytes(std::uint64_t values, unsigned value_bytes, ReadPath path) {
  const std::uint64_t stored = values * std::max(1u, value_bytes);
  switch (path) {
    case ReadPath::kNiftiDirect: return values * 4 + std::min<std::uint64_t>(stored, 1 << 20);  // one chunk
    case ReadPath::kImageIo: return values * 4 + stored;  // at most: a slab is less
    case ReadPath::kItkReader: break;
  }
  return values * (8 + std::max(1u, value_bytes));
}

double g_working_bytes_per_value = 0;

void check_budget(const fs::path& path, std::uint64_t values, std::uint64_t read_need) {
  const std::uint64_t budget = memory_budget();
  const std::uint64_t need =
      std::max(read_need, static_cast<std::uint64_t>(static_cast<double>(values) * g_working_bytes_per_value));
  if (need > budget) {
    auto size = [](std::uint64_t b) {
      char t[32];
      if (b >= (std::uint64_t{1} << 30)) std::snprintf(t, sizeof t, "%.1f GiB", b / 1073741824.0);
      else std::snprintf(t, sizeof t, "%.1f MiB", b / 1048576.0);
      return std::string(t);
    };
    throw input_error(path.string() + ": needs about " + size(need) + " (" + std::to_string(values) +
                      " values), more than the memory budget of " + size(budget) + " (--max-memory)");
  }
}

// The angle between a series' slice-to-slice step and its slices' normal (the stack's
// third axis, which ITK sets to the normal), in degrees; 0 when the step's in-plane part is
// under a tenth of a pixel over the whole series (rounding in the positions).
double angle_to_normal(const std::array<double, 3>& step, const Geometry& stack) {
  const auto& d = stack.direction;
  auto along = [&](int axis) { return step[0] * d[axis] + step[1] * d[3 + axis] + step[2] * d[6 + axis]; };
  const double in_plane[2] = {along(0), along(1)};
  const double n = static_cast<double>(stack.size[2] - 1);
  if (std::hypot(n * in_plane[0] / stack.spacing[0], n * in_plane[1] / stack.spacing[1]) < 0.1) return 0;
  return std::atan2(std::hypot(in_plane[0], in_plane[1]), std::fabs(along(2))) * 180 / 3.14159265358979323846;
}

// A gantry-tilted CT series is a sheared stack: parallel slices, each shifted in its plane
// by the same step (the table moves head to foot, the slice plane is turned by the tilt).
// ITK's series reader lays the slices one above the other along their normal, the full
// step apart, so anatomy comes out displaced and distorted without a word. The stack is
// resampled instead onto a grid whose third axis is the step (the table's path, head to
// foot for a tilted gantry) and whose first is the slices' rows: an upright axial volume,
// as if the gantry had not been tilted, trilinear across the two slices each point lies
// between. Where no slice reaches, the series' lowest value stands (CT's air or
// outside-the-field value).
FloatImage unshear(const FloatImage& stack, const std::array<double, 3>& step, const fs::path& dir) {
  using V = std::array<double, 3>;
  auto dot = [](const V& u, const V& v) { return u[0] * v[0] + u[1] * v[1] + u[2] * v[2]; };
  auto unit = [&](V u) {
    const double n = std::sqrt(dot(u, u));
    return V{u[0] / n, u[1] / n, u[2] / n};
  };
  const Geometry& g = stack.geometry;
  const auto& d = g.direction;
  const V row{d[0], d[3], d[6]}, column{d[1], d[4], d[7]};
  const V e3 = unit(step);
  const V e1 = unit({row[0] - dot(row, e3) * e3[0], row[1] - dot(row, e3) * e3[1], row[2] - dot(row, e3) * e3[2]});
  const V e2{e3[1] * e1[2] - e3[2] * e1[1], e3[2] * e1[0] - e3[0] * e1[2], e3[0] * e1[1] - e3[1] * e1[0]};
  const V axes[3] = {e1, e2, e3};
  const double sp[3] = {g.spacing[0], g.spacing[1], std::sqrt(dot(step, step))};
  // The stack's corners in the new axes, from slice 0's first pixel: the grid holds them all.
  const V p0 = g.origin;
  double lo[3] = {1e300, 1e300, 1e300}, hi[3] = {-1e300, -1e300, -1e300};
  for (double i : {0.0, static_cast<double>(g.size[0] - 1)})
    for (double j : {0.0, static_cast<double>(g.size[1] - 1)})
      for (double k : {0.0, static_cast<double>(g.size[2] - 1)}) {
        V p{};
        for (int a = 0; a < 3; ++a) p[a] = i * g.spacing[0] * row[a] + j * g.spacing[1] * column[a] + k * step[a];
        for (int a = 0; a < 3; ++a) lo[a] = std::min(lo[a], dot(p, axes[a])), hi[a] = std::max(hi[a], dot(p, axes[a]));
      }
  Geometry out = g;
  for (int a = 0; a < 3; ++a) {
    out.size[static_cast<std::size_t>(a)] = static_cast<std::size_t>(std::floor((hi[a] - lo[a]) / sp[a] + 1e-6)) + 1;
    out.spacing[static_cast<std::size_t>(a)] = sp[a];
    for (int r = 0; r < 3; ++r) out.direction[static_cast<std::size_t>(r * 3 + a)] = axes[a][static_cast<std::size_t>(r)];
  }
  for (int r = 0; r < 3; ++r) out.origin[r] = p0[r] + lo[0] * e1[r] + lo[1] * e2[r] + lo[2] * e3[r];
  const std::uint64_t values = out.voxel_count();
  check_budget(dir, values, values * 4 + g.voxel_count() * 4);
  // Stack index (i, j, k) of a point: solve p - p0 = i sx row + j sy column + k step.
  const double m[3][3] = {{g.spacing[0] * row[0], g.spacing[1] * column[0], step[0]},
                          {g.spacing[0] * row[1], g.spacing[1] * column[1], step[1]},
                          {g.spacing[0] * row[2], g.spacing[1] * column[2], step[2]}};
  const double det = m[0][0] * (m[1][1] * m[2][2] - m[1][2] * m[2][1]) - m[0][1] * (m[1][0] * m[2][2] - m[1][2] * m[2][0]) +
                     m[0][2] * (m[1][0] * m[2][1] - m[1][1] * m[2][0]);
  if (std::fabs(det) < 1e-9) throw input_error(dir.string() + ": slices step along their own plane (no volume)");
  double inv[3][3];
  for (int r = 0; r < 3; ++r)
    for (int c = 0; c < 3; ++c) {
      const int r1 = (c + 1) % 3, r2 = (c + 2) % 3, c1 = (r + 1) % 3, c2 = (r + 2) % 3;
      inv[r][c] = (m[r1][c1] * m[r2][c2] - m[r1][c2] * m[r2][c1]) / det;
    }
  auto to_stack = [&](const V& v) {
    return V{inv[0][0] * v[0] + inv[0][1] * v[1] + inv[0][2] * v[2], inv[1][0] * v[0] + inv[1][1] * v[1] + inv[1][2] * v[2],
             inv[2][0] * v[0] + inv[2][1] * v[1] + inv[2][2] * v[2]};
  };
  V base{};
  for (int r = 0; r < 3; ++r) base[r] = out.origin[r] - p0[r];
  const V b = to_stack(base);
  V per[3];
  for (int a = 0; a < 3; ++a) per[a] = to_stack({axes[a][0] * sp[a], axes[a][1] * sp[a], axes[a][2] * sp[a]});
  FloatImage result(out);
  const long n[3] = {static_cast<long>(g.size[0]), static_cast<long>(g.size[1]), static_cast<long>(g.size[2])};
  const float nan = std::numeric_limits<float>::quiet_NaN();
  std::size_t at = 0;
  for (std::size_t K = 0; K < out.size[2]; ++K)
    for (std::size_t J = 0; J < out.size[1]; ++J)
      for (std::size_t I = 0; I < out.size[0]; ++I, ++at) {
        double c[3];
        for (int a = 0; a < 3; ++a)
          c[a] = b[a] + static_cast<double>(I) * per[0][a] + static_cast<double>(J) * per[1][a] +
                 static_cast<double>(K) * per[2][a];
        long f[3];
        double w[3];
        bool inside = true;
        for (int a = 0; a < 3 && inside; ++a) {
          // A point on the last slice (or pixel) to within rounding belongs to it.
          if (c[a] > static_cast<double>(n[a] - 1) && c[a] < static_cast<double>(n[a] - 1) + 1e-6) c[a] = n[a] - 1;
          if (c[a] < 0 && c[a] > -1e-6) c[a] = 0;
          f[a] = static_cast<long>(std::floor(c[a]));
          w[a] = c[a] - static_cast<double>(f[a]);
          inside = f[a] >= 0 && f[a] < n[a] && (f[a] + 1 < n[a] || w[a] < 1e-9);
        }
        if (!inside) {
          result.voxels[at] = nan;
          continue;
        }
        double v = 0;
        for (int dz = 0; dz < 2; ++dz)
          for (int dy = 0; dy < 2; ++dy)
            for (int dx = 0; dx < 2; ++dx) {
              const double weight = (dx ? w[0] : 1 - w[0]) * (dy ? w[1] : 1 - w[1]) * (dz ? w[2] : 1 - w[2]);
              if (weight < 1e-12) continue;
              v += weight * stack.voxels[static_cast<std::size_t>(((f[2] + dz) * n[1] + f[1] + dy) * n[0] + f[0] + dx)];
            }
        result.voxels[at] = static_cast<float>(v);
      }
  float lowest = std::numeric_limits<float>::infinity();
  for (float v : stack.voxels) lowest = std::min(lowest, v);
  for (float& v : result.voxels)
    if (std::isnan(v)) v = lowest;
  return result;
}

LoadedImage read_dicom_series(const fs::path& dir) {
  detail::DeclaredImage declared;
  std::array<double, 3> step{0, 0, 0};
  const std::vector<std::string> files = detail::check_dicom_series(dir, &declared, &step);
  check_budget(dir, declared.voxels, read_bytes(declared.voxels, declared.bytes_per_value, ReadPath::kNiftiDirect));
  // The series reader works out the geometry (slice spacing and order from the positions);
  // the voxels are then read a slice at a time into the one float image, with each slice's
  // own rescaling, as the series reader would but without its float volume beside ours.
  // Only technical tags are read out below; patient tags are never copied anywhere.
  auto dicom = itk::GDCMImageIO::New();
  using ItkImage = itk::Image<float, 3>;
  auto reader = itk::ImageSeriesReader<ItkImage>::New();
  reader->SetImageIO(dicom);
  reader->SetFileNames(files);
  reader->UpdateOutputInformation();
  const Geometry stack = detail::geometry_of(reader->GetOutput());
  const std::size_t nx = stack.size[0], ny = stack.size[1];
  if (stack.size[2] != files.size())
    throw input_error(dir.string() + ": DICOM series of " + std::to_string(files.size()) + " files read as " +
                      std::to_string(stack.size[2]) + " slices");
  const double tilt = files.size() > 1 ? angle_to_normal(step, stack) : 0.0;
  LoadedImage out;
  out.image = FloatImage(stack);
  const std::size_t slice = nx * ny;
  for (std::size_t z = 0; z < files.size(); ++z) {
    auto io = itk::GDCMImageIO::New();
    io->SetFileName(files[z]);
    io->ReadImageInformation();
    std::size_t pixels = io->GetNumberOfComponents();
    for (unsigned i = 0; i < io->GetNumberOfDimensions(); ++i) pixels *= io->GetDimensions(i);
    if (pixels != slice || io->GetNumberOfComponents() != 1)
      throw input_error(fs::path(files[z]).string() + ": slice is not a single-component image of the series' size");
    read_io_into(io.GetPointer(), out.image.voxels.data() + z * slice, files[z]);
    if (z == 0) out.info.pixel_type = pixel_type_name(io->GetComponentType());
  }
  if (tilt > 0) {
    out.image = unshear(out.image, step, dir);
    out.info.gantry_tilt_deg = tilt;
  }
  out.info.format = "dicom-series";
  std::string modality;
  if (dicom->GetValueFromTag("0008|0060", modality)) {
    modality.erase(std::remove(modality.begin(), modality.end(), ' '), modality.end());
    out.info.modality = modality;
  }
  out.info.file_dimension = 3;
  return out;
}

// The format a file's first bytes announce, for names without a known extension.
std::string sniff_format(const fs::path& path) {
  std::ifstream f(path, std::ios::binary);
  std::string head(132, '\0');
  f.read(head.data(), 132);
  head.resize(static_cast<std::size_t>(f.gcount()));
  if (head.size() >= 132 && head.compare(128, 4, "DICM") == 0) return "dicom";
  if (head.rfind("NRRD000", 0) == 0) return "nrrd";
  if (head.rfind("\x89PNG", 0) == 0) return "png";
  if (head.rfind("\xFF\xD8", 0) == 0) return "jpeg";
  if (head.size() >= 4) {
    std::uint32_t n = 0;
    std::memcpy(&n, head.data(), 4);
    if (n == 348 || n == 540 || __builtin_bswap32(n) == 348 || __builtin_bswap32(n) == 540) return "nifti";
  }
  return "unknown";
}

// Checks the file's structure with our own code (header_check.hpp) before any ITK
// reader sees it; returns what the header declares.
detail::DeclaredImage check_structure(const fs::path& path, const std::string& format, detail::NiftiLayout* nifti) {
  const std::uint64_t max_pixels = memory_budget() / 10;
  if (format == "nifti") return detail::check_nifti_header(path, nifti);
  if (format == "meta") return detail::check_meta(path);
  if (format == "nrrd") return detail::check_nrrd(path);
  if (format == "png") return detail::check_png(path, max_pixels);
  if (format == "jpeg") return detail::check_jpeg(path, max_pixels);
  if (format == "dicom") {
    const auto f = detail::check_dicom_file(path);
    return {static_cast<std::uint64_t>(f.rows) * f.columns * f.frames * f.samples,
            static_cast<unsigned>(f.bits_allocated / 8)};
  }
  throw input_error(path.string() + ": not an image in a supported format");
}

const char* itk_io_class(const std::string& format) {
  if (format == "nifti") return "NiftiImageIO";
  if (format == "meta") return "MetaImageIO";
  if (format == "nrrd") return "NrrdImageIO";
  if (format == "png") return "PNGImageIO";
  if (format == "jpeg") return "JPEGImageIO";
  return "GDCMImageIO";
}

// 2 or 3: trailing axes of length 1 (a 2D NIfTI stored as 3D, a single-frame DICOM) are
// dropped; anything else is refused.
unsigned image_dimension(const fs::path& path, const itk::ImageIOBase* io) {
  unsigned dims = io->GetNumberOfDimensions();
  while (dims > 2 && io->GetDimensions(dims - 1) == 1) --dims;
  if (dims > 3) {
    throw input_error(path.string() + ": " + std::to_string(dims) +
                      "-dimensional image; only 2D and 3D images are supported");
  }
  if (dims < 2) throw input_error(path.string() + ": 1-dimensional image");
  return dims;
}

// Whether a NIfTI's voxels can be decoded straight from the file (detail::read_nifti_voxels
// and read_nifti_labels): one component, and the data exactly as long as ITK's header says.
bool nifti_voxels_direct(const itk::ImageIOBase* io, const detail::NiftiLayout* nifti) {
  return nifti && nifti->components == 1 &&
         nifti->data_end - nifti->vox_offset ==
             static_cast<std::uint64_t>(io->GetImageSizeInComponents()) * nifti->value_bytes;
}

// The image behind an ImageIO whose information is read (the voxels, their type and the
// dimensions checked). A NIfTI's checked layout lets its voxels be decoded directly.
LoadedImage read_checked(const fs::path& path, itk::ImageIOBase* io, const detail::NiftiLayout* nifti) {
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
    const unsigned dims = image_dimension(path, io);
    out.info.file_dimension = static_cast<int>(dims);
    const std::uint64_t values = io->GetImageSizeInComponents();
    // 2D images (pictures, single slices) and colour keep ITK's reader: they are small,
    // and it owns the luminance conversion and the 2D direction rules.
    ReadPath how = ReadPath::kItkReader;
    if (dims == 3 && io->GetNumberOfComponents() == 1)
      how = nifti_voxels_direct(io, nifti) ? ReadPath::kNiftiDirect : ReadPath::kImageIo;
    check_budget(path, values, read_bytes(values, static_cast<unsigned>(io->GetComponentSize()), how));
    if (how == ReadPath::kItkReader) {
      if (nifti) detail::check_nifti_data(path, *nifti);
      out.image = dims == 2 ? read_scalar<2>(path, io) : read_scalar<3>(path, io);
    } else {
      out.image = FloatImage(geometry_of_io(io));
      if (how == ReadPath::kNiftiDirect) detail::read_nifti_voxels(path, *nifti, out.image.voxels.data(), values);
      else read_io_into(io, out.image.voxels.data(), path);
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
  std::error_code ec;  // a path that cannot be resolved is named like a file; reading it fails later
  if (fs::is_directory(p, ec)) return p.filename().string();
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

namespace {

// status() rather than exists(): a symlink loop or an unreadable folder is an input
// problem to report, not an exception to escape.
fs::file_status input_status(const fs::path& path) {
  std::error_code ec;
  const fs::file_status st = fs::status(path, ec);
  if (ec && ec != std::errc::no_such_file_or_directory)
    throw input_error(path.string() + ": cannot open (" + ec.message() + ")");
  if (!fs::exists(st)) throw input_error(path.string() + ": no such file or directory");
  return st;
}

// NaN or infinite voxels would pass through every stage and come out as numbers.
void check_all_finite(const FloatImage& image, const fs::path& path) {
  const auto bad = static_cast<std::size_t>(
      std::count_if(image.voxels.begin(), image.voxels.end(), [](float v) { return !std::isfinite(v); }));
  if (bad > 0)
    throw input_error(path.string() + ": " + std::to_string(bad) + " of " + std::to_string(image.voxels.size()) +
                      " voxels are NaN or infinite");
}

// An image file whose structure (our checks) and header (ITK's) have been read.
struct CheckedFile {
  std::string format;
  detail::NiftiLayout nifti;
  itk::ImageIOBase::Pointer io;
};

CheckedFile check_file(const fs::path& path, const fs::file_status& st) {
  if (!fs::is_regular_file(st)) throw input_error(path.string() + ": not a regular file (a device, FIFO or socket)");
  if (fs::file_size(path) == 0) throw input_error(path.string() + ": file is empty");
  CheckedFile f;
  f.format = format_of_extension(full_extension(path));
  if (f.format == "unknown") f.format = sniff_format(path);
  const detail::DeclaredImage declared = check_structure(path, f.format, &f.nifti);
  // Every way of reading needs at least the float image: refused before ITK allocates
  // anything; the exact figure for the way taken is checked once the header is read.
  check_budget(path, declared.voxels, read_bytes(declared.voxels, declared.bytes_per_value, ReadPath::kNiftiDirect));
  f.io = itk::ImageIOFactory::CreateImageIO(path.string().c_str(), itk::CommonEnums::IOFileMode::ReadMode);
  if (!f.io || std::string(f.io->GetNameOfClass()) != itk_io_class(f.format))
    throw input_error(path.string() + ": not a readable " + f.format + " file");
  f.io->SetFileName(path.string());
  f.io->ReadImageInformation();
  return f;
}

// ITK's and the file system's exceptions from reading `path`, as input errors naming it.
template <class Read>
auto with_read_errors(const fs::path& path, Read&& read) {
  try {
    return read();
  } catch (const itk::ExceptionObject& e) {
    throw input_error(path.string() + ": cannot read image (" + short_itk_message(e) + ")");
  } catch (const fs::filesystem_error& e) {
    throw input_error(path.string() + ": cannot read (" + e.code().message() + ")");
  }
}

}  // namespace

LoadedImage read_image(const fs::path& path) {
  const fs::file_status st = input_status(path);
  return with_read_errors(path, [&] {
    LoadedImage out;
    if (fs::is_directory(st)) {
      out = read_dicom_series(path);
      check_finite_geometry(out.image.geometry, path);
    } else {
      CheckedFile f = check_file(path, st);
      out = read_checked(path, f.io.GetPointer(), f.format == "nifti" ? &f.nifti : nullptr);
    }
    check_all_finite(out.image, path);
    return out;
  });
}

namespace {
std::uint64_t g_memory_budget = 0;
}

void check_memory_budget(const fs::path& path, std::uint64_t values, double bytes_per_value) {
  check_budget(path, values, static_cast<std::uint64_t>(static_cast<double>(values) * bytes_per_value));
}

void set_memory_budget(std::uint64_t bytes, double working_bytes_per_value) {
  g_memory_budget = bytes;
  g_working_bytes_per_value = working_bytes_per_value;
}

std::uint64_t memory_budget() {
  if (g_memory_budget > 0) return g_memory_budget;
  const long pages = ::sysconf(_SC_PHYS_PAGES), page = ::sysconf(_SC_PAGE_SIZE);
  if (pages <= 0 || page <= 0) return std::uint64_t{8} << 30;
  return static_cast<std::uint64_t>(pages) * static_cast<std::uint64_t>(page) / 4 * 3;
}

std::uint64_t parse_memory_size(const std::string& text) {
  if (text == "auto") return 0;
  char* end = nullptr;
  const double v = std::strtod(text.c_str(), &end);
  const std::string unit = lower(end ? std::string(end) : "");
  double scale = 0;
  if (unit == "" || unit == "b") scale = 1;
  else if (unit == "k" || unit == "kb" || unit == "kib") scale = 1024.0;
  else if (unit == "m" || unit == "mb" || unit == "mib") scale = 1048576.0;
  else if (unit == "g" || unit == "gb" || unit == "gib") scale = 1073741824.0;
  else if (unit == "t" || unit == "tb" || unit == "tib") scale = 1099511627776.0;
  if (end == text.c_str() || scale == 0 || !std::isfinite(v) || !(v > 0))
    throw usage_error("--max-memory '" + text + "' is not a size such as 8G, 512M or auto");
  return static_cast<std::uint64_t>(v * scale);
}

LabelImage read_labels(const fs::path& path) {
  const fs::file_status st = input_status(path);
  const auto not_a_label_map = [&] {
    return input_error(path.string() + ": not a label map (non-integer or out-of-range value)");
  };
  LoadedImage loaded;
  if (fs::is_directory(st)) {
    loaded = read_image(path);
  } else {
    std::optional<LabelImage> direct = with_read_errors(path, [&]() -> std::optional<LabelImage> {
      CheckedFile f = check_file(path, st);
      const detail::NiftiLayout* nifti = f.format == "nifti" ? &f.nifti : nullptr;
      // A 3D NIfTI of integers (the usual label map) straight into 16-bit labels, without
      // the float image the general path reads first (on a 512 x 512 x 300 map: 2 bytes
      // per voxel instead of 6 at the peak).
      if (image_dimension(path, f.io) == 3 && f.io->GetNumberOfComponents() == 1 &&
          nifti_voxels_direct(f.io, nifti) && detail::nifti_labels_readable(*nifti)) {
        const std::uint64_t values = f.io->GetImageSizeInComponents();
        check_budget(path, values, values * 2 + std::min<std::uint64_t>(values * nifti->value_bytes, 1 << 20));
        LabelImage labels(geometry_of_io(f.io.GetPointer()));
        check_finite_geometry(labels.geometry, path);
        if (detail::read_nifti_labels(path, *nifti, labels.voxels.data(), values) > 0) throw not_a_label_map();
        return labels;
      }
      loaded = read_checked(path, f.io.GetPointer(), nifti);  // the file checked once, not again
      check_all_finite(loaded.image, path);
      return std::nullopt;
    });
    if (direct) return std::move(*direct);
  }
  LabelImage labels(loaded.image.geometry);
  for (std::size_t i = 0; i < labels.voxels.size(); ++i) {
    const float v = loaded.image.voxels[i];
    if (v != std::round(v) || v < std::numeric_limits<std::int16_t>::min() ||
        v > std::numeric_limits<std::int16_t>::max())
      throw not_a_label_map();
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

// ITK compresses .nii.gz at zlib's default level (its NIfTI writer ignores any level asked
// for); label maps are compressed at the fastest level by write_labels instead.
template <class ItkImagePointer>
void write_itk_atomically(const ItkImagePointer& img, const fs::path& path) {
  using ItkImage = typename ItkImagePointer::ObjectType;
  const fs::path tmp = temporary_sibling(path);
  std::error_code ec;
  try {
    auto writer = itk::ImageFileWriter<ItkImage>::New();
    writer->SetFileName(tmp.string());
    writer->SetInput(img);
    writer->SetUseCompression(true);
    writer->Update();
    fs::rename(tmp, path);
  } catch (const itk::ExceptionObject& e) {
    fs::remove(tmp, ec);
    throw input_error(path.string() + ": cannot write image (" + short_itk_message(e) + ")");
  } catch (const fs::filesystem_error& e) {
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

namespace {

// The 352 bytes a single-file NIfTI-1 of `labels` starts with (header and the empty
// extension flag), as ITK writes them: ITK writes a label map of 2 voxels along each axis
// with the same spacing, direction and origin, and the sizes are put in. No other header
// field depends on the size (ImageIO.LabelMapsAreTheBytesItkWrites compares whole files).
std::string nifti_label_header(const LabelImage& labels, const fs::path& path) {
  constexpr std::size_t kHeader = 352;
  const int dims = labels.geometry.dimension;
  Geometry g = labels.geometry;
  for (int a = 0; a < dims; ++a) g.size[a] = 2;
  const fs::path probe = temporary_sibling(path.parent_path() / ".header.nii");
  try {
    write_typed<std::int16_t>(LabelImage(g, 0), probe, [](std::int16_t v) { return v; });
  } catch (const Error&) {
    // The message names the output, not the probe the user never asked for.
    throw input_error(path.string() + ": cannot write image (cannot write in " + path.parent_path().string() + ")");
  }
  std::string h(kHeader, '\0');
  {
    std::ifstream in(probe, std::ios::binary);
    in.read(h.data(), static_cast<std::streamsize>(kHeader));
    if (in.gcount() != static_cast<std::streamsize>(kHeader)) h.clear();
  }
  std::error_code ec;
  fs::remove(probe, ec);
  std::int16_t dim[4] = {0, 0, 0, 0};
  float vox_offset = 0;
  if (!h.empty()) std::memcpy(dim, &h[40], sizeof dim), std::memcpy(&vox_offset, &h[108], sizeof vox_offset);
  bool as_expected = !h.empty() && dim[0] == dims && vox_offset == kHeader;
  for (int a = 1; a <= dims; ++a) as_expected = as_expected && dim[a] == 2;
  if (!as_expected) throw internal_error(path.string() + ": ITK's NIfTI header is not laid out as expected");
  for (int a = 0; a < dims; ++a) dim[a + 1] = static_cast<std::int16_t>(labels.geometry.size[a]);
  std::memcpy(&h[40], dim, sizeof dim);
  return h;
}

// One raw deflate stream of `pieces` in order, at zlib's fastest level: finished when
// `last`, else ended by a sync flush (byte-aligned, not final), so that another stream can
// follow it. Also returns the CRC-32 of the pieces' bytes.
struct DeflatedPart {
  std::vector<unsigned char> bytes;
  uLong crc = 0;
  bool ok = false;
};

DeflatedPart deflate_part(const std::vector<std::pair<const unsigned char*, std::size_t>>& pieces, bool last) {
  DeflatedPart out;
  out.crc = crc32(0L, Z_NULL, 0);
  z_stream zs{};
  if (deflateInit2(&zs, 1, Z_DEFLATED, -15, 8, Z_DEFAULT_STRATEGY) != Z_OK) return out;
  std::vector<unsigned char> buf(std::size_t{1} << 18);
  const auto drain = [&](int flush) {
    int rc = Z_OK;
    do {
      zs.next_out = buf.data();
      zs.avail_out = static_cast<uInt>(buf.size());
      rc = deflate(&zs, flush);
      if (rc == Z_STREAM_ERROR) return false;
      out.bytes.insert(out.bytes.end(), buf.data(), buf.data() + (buf.size() - zs.avail_out));
    } while (zs.avail_out == 0);
    return flush != Z_FINISH || rc == Z_STREAM_END;
  };
  bool ok = true;
  for (const auto& [data, size] : pieces) {
    for (std::size_t at = 0; ok && at < size;) {
      const auto n = static_cast<uInt>(std::min<std::size_t>(size - at, std::size_t{1} << 24));
      zs.next_in = const_cast<unsigned char*>(data + at);  // zlib's API is not const
      zs.avail_in = n;
      out.crc = crc32(out.crc, data + at, n);
      ok = drain(Z_NO_FLUSH) && zs.avail_in == 0;
      at += n;
    }
  }
  ok = ok && drain(last ? Z_FINISH : Z_SYNC_FLUSH);
  deflateEnd(&zs);
  out.ok = ok;
  return out;
}

}  // namespace

void write_labels(const LabelImage& labels, const fs::path& path) {
  const auto& size = labels.geometry.size;
  const bool fits = full_extension(path) == ".nii.gz" && std::max({size[0], size[1], size[2]}) <= 32767;
  if (!fits) return write_typed<std::int16_t>(labels, path, [](std::int16_t v) { return v; });
  // .nii.gz: the voxels are compressed straight from memory behind ITK's header, at zlib's
  // fastest level. ITK would compress at the default level (a 512 x 512 x 300 CT's labels,
  // mostly zeros: 1.4 s against 0.36 s, from Python on the same bytes), and writing the
  // plain file for zlib to read back cost up to 0.27 s for that CT on the project's
  // machine (when its 157 MB of page cache came fresh). The two halves are compressed at
  // once on two threads into one gzip member (the first half's stream ends in a sync
  // flush, the second's finishes it; the CRC is combined), as pigz does: spine-seg's
  // outputs for that CT took 0.30 s to write before, 0.21 s so.
  const std::string header = nifti_label_header(labels, path);
  const auto* head = reinterpret_cast<const unsigned char*>(header.data());
  const auto* voxels = reinterpret_cast<const unsigned char*>(labels.voxels.data());
  const std::size_t total = labels.voxels.size() * sizeof(std::int16_t);
  // A small map is not worth a thread: its first part is the header alone.
  const bool two_threads = total >= (std::size_t{1} << 16);
  const std::size_t half = two_threads ? total / 2 : 0;
  DeflatedPart first, second;
  const auto compress_first = [&] { first = deflate_part({{head, header.size()}, {voxels, half}}, false); };
  {
    std::thread other;
    if (two_threads) other = std::thread(compress_first);
    else compress_first();
    second = deflate_part({{voxels + half, total - half}}, true);
    if (other.joinable()) other.join();
  }
  if (!first.ok || !second.ok) throw input_error(path.string() + ": cannot write image (compression failed)");
  const uLong crc = crc32_combine(first.crc, second.crc, static_cast<z_off_t>(total - half));
  const auto length = static_cast<std::uint32_t>(header.size() + total);  // modulo 2^32, as gzip has it
  const unsigned char gzip_header[10] = {0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 4, 3};  // deflate, no name, fastest, Unix
  unsigned char trailer[8];
  for (int b = 0; b < 4; ++b) {
    trailer[b] = static_cast<unsigned char>((crc >> (8 * b)) & 0xff);
    trailer[4 + b] = static_cast<unsigned char>((length >> (8 * b)) & 0xff);
  }
  const fs::path tmp = temporary_sibling(path);
  std::FILE* f = std::fopen(tmp.string().c_str(), "wb");
  if (!f) throw input_error(path.string() + ": cannot write image (" + std::strerror(errno) + ")");
  // Neither part is empty: the first ends in a sync flush, the second in the final block.
  bool ok = std::fwrite(gzip_header, 1, sizeof gzip_header, f) == sizeof gzip_header;
  ok = ok && std::fwrite(first.bytes.data(), 1, first.bytes.size(), f) == first.bytes.size();
  ok = ok && std::fwrite(second.bytes.data(), 1, second.bytes.size(), f) == second.bytes.size();
  ok = ok && std::fwrite(trailer, 1, sizeof trailer, f) == sizeof trailer;
  ok = (std::fclose(f) == 0) && ok;
  std::error_code ec;
  if (!ok) {
    fs::remove(tmp, ec);
    throw input_error(path.string() + ": cannot write image (writing failed)");
  }
  fs::rename(tmp, path, ec);
  if (ec) {
    const std::string why = ec.message();
    fs::remove(tmp, ec);
    throw input_error(path.string() + ": cannot write image (" + why + ")");
  }
}

namespace {

// 0 when the picture is written; else the problem in `err` (256 bytes). libpng reports
// errors by longjmp, so nothing here has a destructor.
int encode_png(std::FILE* file, const std::uint8_t* rgb, std::uint32_t width, std::uint32_t height, char* err) {
  png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, err, detail::png_fail, detail::png_ignore_warning);
  if (!png) return std::snprintf(err, 256, "out of memory"), 1;
  png_infop info = png_create_info_struct(png);
  if (!info || setjmp(png_jmpbuf(png))) {
    png_destroy_write_struct(&png, &info);
    return 1;
  }
  png_init_io(png, file);
  png_set_IHDR(png, info, width, height, 8, PNG_COLOR_TYPE_RGB, PNG_INTERLACE_NONE, PNG_COMPRESSION_TYPE_DEFAULT,
               PNG_FILTER_TYPE_DEFAULT);
  // One row filter and zlib's fastest level: ITK's writer (libpng's defaults: five
  // filters tried on every row, harder compression) took 46 ms of a radiograph overlay's
  // 65 ms; this takes about 18 ms, for files about a fifth larger.
  png_set_filter(png, PNG_FILTER_TYPE_BASE, PNG_FILTER_SUB);
  png_set_compression_level(png, 1);
  png_write_info(png, info);
  for (std::uint32_t y = 0; y < height; ++y)
    png_write_row(png, const_cast<png_bytep>(rgb + static_cast<std::size_t>(y) * width * 3));
  png_write_end(png, nullptr);
  png_destroy_write_struct(&png, &info);
  return 0;
}

}  // namespace

void write_png(const RgbImage& picture, const fs::path& path) {
  if (picture.width == 0 || picture.height == 0 || picture.rgb.size() != picture.width * picture.height * 3 ||
      picture.width > (1u << 20) || picture.height > (1u << 20))
    throw internal_error(path.string() + ": picture has no pixels or a wrong size");
  const fs::path tmp = temporary_sibling(path);
  char err[256] = "";
  std::FILE* f = std::fopen(tmp.c_str(), "wb");
  if (!f) throw input_error(path.string() + ": cannot write image (" + std::strerror(errno) + ")");
  const int failed = encode_png(f, picture.rgb.data(), static_cast<std::uint32_t>(picture.width),
                                static_cast<std::uint32_t>(picture.height), err);
  const bool closed = std::fclose(f) == 0;
  std::error_code ec;
  if (failed || !closed) {
    fs::remove(tmp, ec);
    throw input_error(path.string() + ": cannot write image (" + (failed ? std::string(err) : "write failed") + ")");
  }
  fs::rename(tmp, path);
}

void write_text_file(const fs::path& path, const std::string& text, bool owner_only) {
  const fs::path tmp =
      path.parent_path() / ("." + path.filename().string() + ".tmp-" + std::to_string(::getpid()));
  {
    std::ofstream out(tmp, std::ios::binary);
    if (owner_only && out) {
      // Restricted while still empty: at no moment can another user read the content.
      std::error_code ec;
      fs::permissions(tmp, fs::perms::owner_read | fs::perms::owner_write, ec);
      if (ec) {
        const std::string why = ec.message();
        out.close();
        fs::remove(tmp, ec);
        throw input_error(path.string() + ": cannot restrict the file to its owner (" + why + ")");
      }
    }
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
