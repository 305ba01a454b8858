// Structural checks of image files before ITK reads them (see header_check.hpp for why).
#include "io/header_check.hpp"

#include <jpeglib.h>
#include <png.h>
#include <zlib.h>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <csetjmp>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <limits>
#include <map>
#include <set>
#include <sstream>
#include <type_traits>

#include "spine/error.hpp"

namespace fs = std::filesystem;

namespace spine::detail {
namespace {

[[noreturn]] void fail(const fs::path& path, const std::string& problem) {
  throw input_error(path.string() + ": " + problem);
}

std::string lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return std::tolower(c); });
  return s;
}

std::string trim(const std::string& s) {
  const auto a = s.find_first_not_of(" \t\r\n");
  if (a == std::string::npos) return "";
  return s.substr(a, s.find_last_not_of(" \t\r\n") - a + 1);
}

std::string num(double v) {
  std::ostringstream s;
  s << v;
  return s.str();
}

std::string read_prefix(const fs::path& path, std::size_t n) {
  std::ifstream f(path, std::ios::binary);
  if (!f) fail(path, "cannot open");
  std::string s(n, '\0');
  f.read(s.data(), static_cast<std::streamsize>(n));
  s.resize(static_cast<std::size_t>(f.gcount()));
  return s;
}

std::string gunzip_prefix(const fs::path& path, std::size_t n) {
  gzFile gz = gzopen(path.string().c_str(), "rb");
  if (!gz) fail(path, "cannot open");
  std::string s(n, '\0');
  const int got = gzread(gz, s.data(), static_cast<unsigned>(n));
  gzclose(gz);
  if (got < 0) fail(path, "corrupt gzip stream");
  s.resize(static_cast<std::size_t>(got));
  return s;
}

// Whole numbers and reals parsed strictly: the whole token, finite unless allowed.
bool parse_long(const std::string& t, long long& v) {
  if (t.empty()) return false;
  char* end = nullptr;
  errno = 0;
  v = std::strtoll(t.c_str(), &end, 10);
  return errno == 0 && *end == '\0';
}

bool parse_double(const std::string& t, double& v) {
  if (t.empty()) return false;
  char* end = nullptr;
  v = std::strtod(t.c_str(), &end);
  return *end == '\0';
}

std::vector<std::string> split_ws(const std::string& s) {
  std::istringstream in(s);
  std::vector<std::string> out;
  std::string t;
  while (in >> t) out.push_back(t);
  return out;
}

// Product of sizes with an overflow guard: no real image has 2^48 voxels.
std::uint64_t checked_product(const fs::path& path, const std::vector<long long>& sizes) {
  std::uint64_t n = 1;
  for (long long s : sizes) {
    if (s < 1) fail(path, "a dimension is " + std::to_string(s) + " (must be at least 1)");
    if (n > (std::uint64_t{1} << 48) / static_cast<std::uint64_t>(s))
      fail(path, "declares an absurd number of voxels");
    n *= static_cast<std::uint64_t>(s);
  }
  return n;
}

// Columns of a D x D matrix (row-major, columns = axes) are unit length after dividing
// by their norms and mutually orthogonal; zero columns are degenerate.
void check_axes(const fs::path& path, const std::vector<std::array<double, 3>>& axes, const std::string& what) {
  for (const auto& a : axes)
    for (double v : a)
      if (!std::isfinite(v)) fail(path, what + " is not finite");
  for (std::size_t i = 0; i < axes.size(); ++i) {
    const double ni = std::sqrt(axes[i][0] * axes[i][0] + axes[i][1] * axes[i][1] + axes[i][2] * axes[i][2]);
    if (!(ni > 1e-12)) fail(path, what + " has a zero axis (degenerate orientation)");
    for (std::size_t j = i + 1; j < axes.size(); ++j) {
      const double nj = std::sqrt(axes[j][0] * axes[j][0] + axes[j][1] * axes[j][1] + axes[j][2] * axes[j][2]);
      if (!(nj > 1e-12)) continue;
      const double c = (axes[i][0] * axes[j][0] + axes[i][1] * axes[j][1] + axes[i][2] * axes[j][2]) / (ni * nj);
      if (std::fabs(c) > 1e-3) fail(path, what + " is not orthogonal (axes " + std::to_string(i + 1) + " and " +
                                              std::to_string(j + 1) + " are not at right angles)");
    }
  }
}

// Streams `limit` bytes of a zlib/gzip stream starting at `offset` and counts the output
// without keeping it. Returns the output size; `ended` says whether the stream ended.
std::uint64_t inflated_size(const fs::path& path, std::uint64_t offset, std::uint64_t limit, bool gzip_or_zlib,
                            bool& ended) {
  std::ifstream f(path, std::ios::binary);
  f.seekg(static_cast<std::streamoff>(offset));
  z_stream z{};
  // 15 + 32: zlib or gzip header, detected.
  if (inflateInit2(&z, gzip_or_zlib ? 15 + 32 : 15) != Z_OK) fail(path, "cannot start decompression");
  std::vector<unsigned char> in(1 << 16), out(1 << 18);
  std::uint64_t produced = 0, consumed = 0;
  ended = false;
  int rc = Z_OK;
  while (!ended && consumed < limit) {
    const auto want = static_cast<std::streamsize>(std::min<std::uint64_t>(in.size(), limit - consumed));
    f.read(reinterpret_cast<char*>(in.data()), want);
    const auto got = f.gcount();
    if (got <= 0) break;
    consumed += static_cast<std::uint64_t>(got);
    z.next_in = in.data();
    z.avail_in = static_cast<unsigned>(got);
    while (z.avail_in > 0 && !ended) {
      z.next_out = out.data();
      z.avail_out = static_cast<unsigned>(out.size());
      rc = inflate(&z, Z_NO_FLUSH);
      produced += out.size() - z.avail_out;
      if (rc == Z_STREAM_END) ended = true;
      else if (rc != Z_OK && rc != Z_BUF_ERROR) break;
      if (rc == Z_BUF_ERROR && z.avail_in == 0) break;
    }
    if (rc != Z_OK && rc != Z_STREAM_END && rc != Z_BUF_ERROR) break;
  }
  inflateEnd(&z);
  return produced;
}

// Size of the file holding a header's voxels: the header itself, or a detached data file
// that must be a regular file (not /dev/zero, not missing).
std::uint64_t data_file_size(const fs::path& header, const fs::path& data) {
  if (data == header) return fs::file_size(header);
  std::error_code ec;
  const auto st = fs::status(data, ec);
  if (ec || !fs::exists(st)) fail(header, "data file " + data.string() + " not found");
  if (!fs::is_regular_file(st)) fail(header, "data file " + data.string() + " is not a regular file");
  return fs::file_size(data);
}

const std::string* find_field(const std::map<std::string, std::string>& field, const std::string& key) {
  const auto it = field.find(key);
  return it == field.end() ? nullptr : &it->second;
}

// Whole-number sizes, one per dimension ("DimSize" / "sizes").
std::vector<long long> parse_sizes(const fs::path& path, const std::string& text, std::size_t count,
                                   const std::string& what) {
  std::vector<long long> sizes;
  for (const auto& t : split_ws(text)) {
    long long v = 0;
    if (!parse_long(t, v)) fail(path, what + " '" + text + "' are not whole numbers");
    sizes.push_back(v);
  }
  if (sizes.size() != count) fail(path, what + " do not have one entry per dimension");
  return sizes;
}

}  // namespace

// ------------------------------------------------------------------------------ NIfTI

DeclaredImage check_nifti_header(const fs::path& path, NiftiLayout* layout) {
  const bool gz = lower(path.filename().string()).size() > 3 &&
                  lower(path.filename().string()).compare(path.filename().string().size() - 3, 3, ".gz") == 0;
  const std::string h = gz ? gunzip_prefix(path, 548) : read_prefix(path, 548);
  if (h.size() < 4) fail(path, "file is too short for a NIfTI header");
  std::uint32_t first = 0;
  std::memcpy(&first, h.data(), 4);
  const std::uint32_t swapped = __builtin_bswap32(first);
  bool swap = false;
  if (first != 348 && first != 540) {
    if (swapped != 348 && swapped != 540)
      fail(path, "not a NIfTI file (header size field is " + std::to_string(first) + ", not 348 or 540)");
    swap = true;
  }
  const bool two = (swap ? swapped : first) == 540;
  const std::size_t header_size = two ? 540 : 348;
  if (h.size() < header_size)
    fail(path, "file is truncated inside the NIfTI header (" + std::to_string(h.size()) + " of " +
                   std::to_string(header_size) + " bytes)");
  auto get = [&](std::size_t off, auto zero) {
    decltype(zero) v;
    std::memcpy(&v, h.data() + off, sizeof v);
    if (swap) {
      unsigned char b[sizeof v];
      std::memcpy(b, &v, sizeof v);
      std::reverse(b, b + sizeof v);
      std::memcpy(&v, b, sizeof v);
    }
    return v;
  };
  std::vector<long long> dim(8);
  std::vector<double> pixdim(8), quatern(6), srow(12);
  int datatype = 0, bitpix = 0, qform = 0, sform = 0;
  double vox_offset = 0, slope = 0, inter = 0;
  std::string magic;
  if (!two) {
    for (int i = 0; i < 8; ++i) dim[i] = get(40 + 2 * i, std::int16_t{});
    datatype = get(70, std::int16_t{});
    bitpix = get(72, std::int16_t{});
    for (int i = 0; i < 8; ++i) pixdim[i] = get(76 + 4 * i, float{});
    vox_offset = get(108, float{});
    slope = get(112, float{});
    inter = get(116, float{});
    qform = get(252, std::int16_t{});
    sform = get(254, std::int16_t{});
    for (int i = 0; i < 6; ++i) quatern[i] = get(256 + 4 * i, float{});
    for (int i = 0; i < 12; ++i) srow[i] = get(280 + 4 * i, float{});
    magic = h.substr(344, 4);
    if (magic == std::string("ni1\0", 4))
      fail(path, "a NIfTI header whose voxels are in a separate .img file; give a single-file .nii");
    if (magic != std::string("n+1\0", 4)) fail(path, "not a NIfTI-1 file (no 'n+1' magic)");
  } else {
    magic = h.substr(4, 3);
    if (magic != "n+2") fail(path, "not a NIfTI-2 file (no 'n+2' magic)");
    datatype = get(12, std::int16_t{});
    bitpix = get(14, std::int16_t{});
    for (int i = 0; i < 8; ++i) dim[i] = get(16 + 8 * i, std::int64_t{});
    for (int i = 0; i < 8; ++i) pixdim[i] = get(104 + 8 * i, double{});
    vox_offset = static_cast<double>(get(168, std::int64_t{}));
    slope = get(176, double{});
    inter = get(184, double{});
    qform = get(344, std::int32_t{});
    sform = get(348, std::int32_t{});
    for (int i = 0; i < 6; ++i) quatern[i] = get(352 + 8 * i, double{});
    for (int i = 0; i < 12; ++i) srow[i] = get(400 + 8 * i, double{});
  }
  const long long ndim = dim[0];
  if (ndim < 1 || ndim > 7) fail(path, "dim[0] is " + std::to_string(ndim) + " (the number of dimensions must be 1 to 7)");
  for (long long i = 1; i <= ndim; ++i)
    if (dim[i] < 1)
      fail(path, "dimension " + std::to_string(i) + " has size " + std::to_string(dim[i]) + " (must be at least 1)");
  const std::uint64_t voxels = checked_product(path, std::vector<long long>(dim.begin() + 1, dim.begin() + 1 + ndim));
  // datatype -> (bytes per component, components)
  static const std::map<int, std::pair<int, int>> kTypes = {
      {2, {1, 1}},   {4, {2, 1}},   {8, {4, 1}},    {16, {4, 1}},   {64, {8, 1}},  {256, {1, 1}},
      {512, {2, 1}}, {768, {4, 1}}, {1024, {8, 1}}, {1280, {8, 1}}, {128, {1, 3}}, {2304, {1, 4}}};
  const auto type = kTypes.find(datatype);
  if (datatype == 32 || datatype == 1792 || datatype == 2048)
    fail(path, "complex-valued voxels (datatype " + std::to_string(datatype) + ") are not supported");
  if (type == kTypes.end()) fail(path, "unknown NIfTI datatype " + std::to_string(datatype));
  const int bytes = type->second.first, components = type->second.second;
  if (bitpix != 8 * bytes * components)
    fail(path, "bitpix " + std::to_string(bitpix) + " does not match datatype " + std::to_string(datatype));
  for (long long i = 1; i <= std::min<long long>(ndim, 3); ++i)
    if (!(std::isfinite(pixdim[i]) && pixdim[i] > 0))
      fail(path, "voxel spacing pixdim[" + std::to_string(i) + "] is " + num(pixdim[i]) + " (must be a positive number)");
  if (!std::isfinite(vox_offset)) fail(path, "vox_offset is not a number");
  // Checked before the conversion to an integer byte position, which is undefined for a
  // float past 2^64 (fuzzing found 2e36); no file is 2^50 bytes long.
  if (vox_offset > static_cast<double>(std::uint64_t{1} << 50))
    fail(path, "vox_offset " + num(vox_offset) + " lies beyond the end of any file");
  if (vox_offset < static_cast<double>(header_size))
    fail(path, "vox_offset " + num(vox_offset) + " lies inside the header (voxels must start at byte " +
                   std::to_string(header_size) + " or later)");
  if (std::isinf(slope) || std::isinf(inter)) fail(path, "intensity scaling (scl_slope / scl_inter) is infinite");
  if (qform > 0) {
    for (double q : quatern)
      if (!std::isfinite(q)) fail(path, "qform (quaternion or offset) is not finite");
    const double n = quatern[0] * quatern[0] + quatern[1] * quatern[1] + quatern[2] * quatern[2];
    if (n > 1.0 + 1e-4) fail(path, "qform quaternion is not a rotation (b^2 + c^2 + d^2 = " + num(n) + " > 1)");
  }
  if (sform > 0) {
    for (double s : srow)
      if (!std::isfinite(s)) fail(path, "sform matrix (srow_x/y/z) is not finite");
    const double a[3][3] = {{srow[0], srow[1], srow[2]}, {srow[4], srow[5], srow[6]}, {srow[8], srow[9], srow[10]}};
    const double det = a[0][0] * (a[1][1] * a[2][2] - a[1][2] * a[2][1]) - a[0][1] * (a[1][0] * a[2][2] - a[1][2] * a[2][0]) +
                       a[0][2] * (a[1][0] * a[2][1] - a[1][1] * a[2][0]);
    double norms = 1;
    for (int c = 0; c < 3; ++c) norms *= std::sqrt(a[0][c] * a[0][c] + a[1][c] * a[1][c] + a[2][c] * a[2][c]);
    if (!(norms > 0) || std::fabs(det) < 1e-6 * norms) fail(path, "sform matrix is singular (degenerate orientation)");
  }
  const std::uint64_t data_bytes = voxels * static_cast<std::uint64_t>(bytes * components);
  layout->vox_offset = static_cast<std::uint64_t>(vox_offset);
  layout->data_end = layout->vox_offset + data_bytes;
  layout->datatype = datatype;
  layout->value_bytes = static_cast<unsigned>(bytes);
  layout->components = static_cast<unsigned>(components);
  layout->float_bytes = (datatype == 16 || datatype == 64) ? static_cast<unsigned>(bytes) : 0;
  layout->slope = slope;
  layout->inter = inter;
  layout->swapped = swap;
  layout->gzipped = gz;
  if (!gz) {
    const std::uint64_t available = fs::file_size(path);
    if (available < layout->data_end)
      fail(path, "file is truncated (" + std::to_string(available) + " of " + std::to_string(layout->data_end) + " bytes)");
  }
  return {voxels * static_cast<std::uint64_t>(components), static_cast<unsigned>(bytes)};
}

void check_nifti_data(const fs::path& path, const NiftiLayout& layout) {
  if (!layout.gzipped && layout.float_bytes == 0) return;  // length checked with the header
  gzFile gz = gzopen(path.string().c_str(), "rb");  // reads plain files as they are
  if (!gz) fail(path, "cannot open");
  gzbuffer(gz, 1 << 18);
  std::vector<unsigned char> buf(1 << 20);
  std::uint64_t at = 0, nonfinite = 0;
  int n = 0;
  const unsigned fb = layout.float_bytes;
  unsigned char value[8];
  unsigned filled = 0;
  while ((n = gzread(gz, buf.data(), static_cast<unsigned>(buf.size()))) > 0) {
    if (fb > 0) {
      // The bytes of [vox_offset, data_end) in this chunk, a value at a time.
      const std::uint64_t lo = std::max(at, layout.vox_offset), hi = std::min(at + n, layout.data_end);
      for (std::uint64_t i = lo; i < hi; ++i) {
        value[filled++] = buf[i - at];
        if (filled == fb) {
          if (layout.swapped) std::reverse(value, value + fb);
          double v = 0;
          if (fb == 4) {
            float x;
            std::memcpy(&x, value, 4);
            v = x;
          } else {
            std::memcpy(&v, value, 8);
          }
          if (!std::isfinite(v)) ++nonfinite;
          filled = 0;
        }
      }
    }
    at += static_cast<std::uint64_t>(n);
  }
  int err = Z_OK;
  gzerror(gz, &err);
  gzclose(gz);
  if (n < 0 || (err != Z_OK && err != Z_STREAM_END)) fail(path, "corrupt gzip stream (truncated file?)");
  if (at < layout.data_end)
    fail(path, "file is truncated (" + std::to_string(at) + " of " + std::to_string(layout.data_end) + " bytes)");
  if (nonfinite > 0)
    fail(path, std::to_string(nonfinite) + " of " + std::to_string((layout.data_end - layout.vox_offset) / fb) +
                   " voxels are NaN or infinite");
}

namespace {

template <class T>
T load_value(const unsigned char* p, bool swapped) {
  unsigned char b[sizeof(T)];
  std::memcpy(b, p, sizeof(T));
  if (swapped) std::reverse(b, b + sizeof(T));
  T v;
  std::memcpy(&v, b, sizeof(T));
  return v;
}

// One chunk of stored values to floats; returns how many are not finite.
template <class T>
std::uint64_t decode_chunk(const unsigned char* in, std::size_t n, bool swapped, bool rescale, double slope,
                           double inter, float* out) {
  std::uint64_t bad = 0;
  for (std::size_t i = 0; i < n; ++i) {
    double v = static_cast<double>(load_value<T>(in + i * sizeof(T), swapped));
    if (rescale) v = v * slope + inter;
    const float f = static_cast<float>(v);
    bad += !std::isfinite(f);
    out[i] = f;
  }
  return bad;
}

using Decoder = std::uint64_t (*)(const unsigned char*, std::size_t, bool, bool, double, double, float*);

// One chunk of stored integer values to 16-bit labels; returns how many do not fit.
template <class T>
std::uint64_t decode_label_chunk(const unsigned char* in, std::size_t n, bool swapped, std::int16_t* out) {
  std::uint64_t bad = 0;
  for (std::size_t i = 0; i < n; ++i) {
    const T v = load_value<T>(in + i * sizeof(T), swapped);
    constexpr std::int64_t lo = std::numeric_limits<std::int16_t>::min(), hi = std::numeric_limits<std::int16_t>::max();
    if constexpr (std::is_signed_v<T>)
      bad += static_cast<std::int64_t>(v) < lo || static_cast<std::int64_t>(v) > hi;
    else
      bad += static_cast<std::uint64_t>(v) > static_cast<std::uint64_t>(hi);
    out[i] = static_cast<std::int16_t>(v);
  }
  return bad;
}

using LabelDecoder = std::uint64_t (*)(const unsigned char*, std::size_t, bool, std::int16_t*);

// f(T{}) for the C++ type T stored under a NIfTI datatype code; `none` for codes without one.
template <class R, class F>
R with_stored_type(int datatype, R none, F&& f) {
  switch (datatype) {
    case 2: return f(std::uint8_t{});
    case 4: return f(std::int16_t{});
    case 8: return f(std::int32_t{});
    case 16: return f(float{});
    case 64: return f(double{});
    case 256: return f(std::int8_t{});
    case 512: return f(std::uint16_t{});
    case 768: return f(std::uint32_t{});
    case 1024: return f(std::int64_t{});
    case 1280: return f(std::uint64_t{});
    default: return none;
  }
}

// Float voxels have none: they go through the float path, which checks for fractions.
LabelDecoder label_decoder_for(int datatype) {
  return with_stored_type<LabelDecoder>(datatype, nullptr, [](auto v) -> LabelDecoder {
    using T = decltype(v);
    if constexpr (std::is_integral_v<T>) return decode_label_chunk<T>;
    else return nullptr;
  });
}

Decoder decoder_for(int datatype) {
  return with_stored_type<Decoder>(datatype, nullptr, [](auto v) -> Decoder { return decode_chunk<decltype(v)>; });
}

// The voxels of a single-component NIfTI, decoded chunk by chunk by decode(chunk, values,
// offset of the first value), which returns how many values it found bad; checks the
// length and the gzip stream on the way. Returns the bad values' count.
template <class DecodeChunk>
std::uint64_t read_nifti_chunks(const fs::path& path, const NiftiLayout& layout, std::uint64_t count,
                                DecodeChunk decode) {
  if (layout.components != 1 || layout.data_end - layout.vox_offset != count * layout.value_bytes)
    throw internal_error(path.string() + ": NIfTI voxels read with a layout that does not fit");
  gzFile gz = gzopen(path.string().c_str(), "rb");  // reads plain files as they are
  if (!gz) fail(path, "cannot open");
  gzbuffer(gz, 1 << 18);
  const std::size_t chunk_values = (std::size_t{1} << 20) / layout.value_bytes;
  std::vector<unsigned char> buf(chunk_values * layout.value_bytes);
  std::uint64_t at = 0, done = 0, bad = 0;
  int n = 0;
  // The header and any extensions before vox_offset.
  while (at < layout.vox_offset &&
         (n = gzread(gz, buf.data(), static_cast<unsigned>(std::min<std::uint64_t>(buf.size(), layout.vox_offset - at)))) > 0)
    at += static_cast<std::uint64_t>(n);
  // gzread fills the whole request unless the stream ends, so each chunk holds whole values.
  while (at >= layout.vox_offset && done < count) {
    const std::size_t want = static_cast<std::size_t>(std::min<std::uint64_t>(chunk_values, count - done));
    n = gzread(gz, buf.data(), static_cast<unsigned>(want * layout.value_bytes));
    if (n <= 0) break;
    at += static_cast<std::uint64_t>(n);
    const std::size_t values = static_cast<std::size_t>(n) / layout.value_bytes;
    bad += decode(buf.data(), values, done);
    done += values;
    if (static_cast<std::size_t>(n) < want * layout.value_bytes) break;
  }
  // Read on to the end, so that a damaged gzip trailer (CRC, length) is still found.
  if (n > 0)
    while ((n = gzread(gz, buf.data(), static_cast<unsigned>(buf.size()))) > 0) at += static_cast<std::uint64_t>(n);
  int err = Z_OK;
  gzerror(gz, &err);
  gzclose(gz);
  if (n < 0 || (err != Z_OK && err != Z_STREAM_END)) fail(path, "corrupt gzip stream (truncated file?)");
  if (done < count)
    fail(path, "file is truncated (" + std::to_string(at) + " of " + std::to_string(layout.data_end) + " bytes)");
  return bad;
}

// The standard: scaling applies when scl_slope is non-zero (and is not the identity).
bool rescales(const NiftiLayout& layout) {
  return std::isfinite(layout.slope) && layout.slope != 0 && !(layout.slope == 1 && layout.inter == 0);
}

}  // namespace

void read_nifti_voxels(const fs::path& path, const NiftiLayout& layout, float* out, std::uint64_t count) {
  const Decoder decode = decoder_for(layout.datatype);
  if (!decode) throw internal_error(path.string() + ": NIfTI voxels read with a layout that does not fit");
  const bool rescale = rescales(layout);
  const std::uint64_t nonfinite =
      read_nifti_chunks(path, layout, count, [&](const unsigned char* chunk, std::size_t values, std::uint64_t at) {
        return decode(chunk, values, layout.swapped, rescale, layout.slope, layout.inter, out + at);
      });
  if (nonfinite > 0)
    fail(path, std::to_string(nonfinite) + " of " + std::to_string(count) + " voxels are NaN or infinite");
}

bool nifti_labels_readable(const NiftiLayout& layout) {
  return layout.components == 1 && !rescales(layout) && label_decoder_for(layout.datatype) != nullptr;
}

std::uint64_t read_nifti_labels(const fs::path& path, const NiftiLayout& layout, std::int16_t* out,
                                std::uint64_t count) {
  const LabelDecoder decode = label_decoder_for(layout.datatype);
  if (!decode || !nifti_labels_readable(layout))
    throw internal_error(path.string() + ": NIfTI labels read with a layout that does not fit");
  return read_nifti_chunks(path, layout, count, [&](const unsigned char* chunk, std::size_t values, std::uint64_t at) {
    return decode(chunk, values, layout.swapped, out + at);
  });
}

// ------------------------------------------------------------------------------ MetaImage

DeclaredImage check_meta(const fs::path& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) fail(path, "cannot open");
  std::map<std::string, std::string> field;
  std::string line;
  std::uint64_t header_end = 0;
  bool found_data = false;
  int line_no = 0;
  while (header_end < (1 << 16) && std::getline(f, line)) {
    ++line_no;
    header_end += line.size() + 1;
    const auto eq = line.find('=');
    if (eq == std::string::npos) {
      if (trim(line).empty()) continue;
      fail(path, "not a MetaImage header (line " + std::to_string(line_no) + " has no '=')");
    }
    const std::string key = lower(trim(line.substr(0, eq)));
    field[key] = trim(line.substr(eq + 1));
    if (key == "elementdatafile") {
      found_data = true;
      break;
    }
  }
  if (!found_data) fail(path, "MetaImage header has no ElementDataFile line");
  auto get = [&](const std::string& k) { return find_field(field, k); };
  long long ndims = 0;
  if (!get("ndims") || !parse_long(*get("ndims"), ndims) || ndims < 1 || ndims > 10)
    fail(path, "MetaImage NDims is missing or not 1 to 10");
  if (!get("dimsize")) fail(path, "MetaImage header has no DimSize");
  const std::uint64_t voxels =
      checked_product(path, parse_sizes(path, *get("dimsize"), static_cast<std::size_t>(ndims), "MetaImage DimSize"));
  auto reals = [&](const char* key, std::size_t count, bool positive) {
    std::vector<double> out;
    const std::string* v = get(key);
    if (!v) return out;
    for (const auto& t : split_ws(*v)) {
      double d = 0;
      if (!parse_double(t, d) || !std::isfinite(d) || (positive && !(d > 0)))
        fail(path, std::string("MetaImage ") + key + " '" + *v + "' is not a list of " +
                       (positive ? "positive numbers" : "finite numbers"));
      out.push_back(d);
    }
    if (out.size() != count) fail(path, std::string("MetaImage ") + key + " does not have " + std::to_string(count) + " entries");
    return out;
  };
  const auto n = static_cast<std::size_t>(ndims);
  reals(get("elementspacing") ? "elementspacing" : "elementsize", n, true);
  for (const char* k : {"offset", "position", "origin", "centerofrotation"}) reals(k, n, false);
  for (const char* k : {"transformmatrix", "rotation", "orientation"}) {
    const auto m = reals(k, n * n, false);
    if (m.empty() || n > 3) continue;
    std::vector<std::array<double, 3>> axes(n, {0, 0, 0});
    for (std::size_t c = 0; c < n; ++c)
      for (std::size_t r = 0; r < n; ++r) axes[c][r] = m[c * n + r];
    check_axes(path, axes, std::string("MetaImage ") + k);
  }
  static const std::map<std::string, unsigned> kTypes = {
      {"MET_UCHAR", 1}, {"MET_CHAR", 1},  {"MET_USHORT", 2},   {"MET_SHORT", 2},     {"MET_UINT", 4},
      {"MET_INT", 4},   {"MET_ULONG", 8}, {"MET_LONG", 8},     {"MET_ULONG_LONG", 8}, {"MET_LONG_LONG", 8},
      {"MET_FLOAT", 4}, {"MET_DOUBLE", 8}};
  const std::string* et = get("elementtype");
  if (!et || !kTypes.count(*et)) fail(path, "unknown MetaImage ElementType '" + (et ? *et : std::string()) + "'");
  const unsigned bytes = kTypes.at(*et);
  long long channels = 1;
  if (get("elementnumberofchannels") &&
      (!parse_long(*get("elementnumberofchannels"), channels) || channels < 1 || channels > 64))
    fail(path, "MetaImage ElementNumberOfChannels is not 1 to 64");
  if (get("binarydata") && lower(*get("binarydata")) == "false")
    fail(path, "MetaImage with text (BinaryData = False) voxels is not supported");
  const bool compressed = get("compresseddata") && lower(*get("compresseddata")) == "true";
  const std::uint64_t expected = voxels * bytes * static_cast<std::uint64_t>(channels);

  const std::string& data_name = *get("elementdatafile");
  fs::path data_path = path;
  std::uint64_t start = header_end;
  if (lower(data_name) != "local") {
    if (lower(data_name).rfind("list", 0) == 0 || data_name.find('%') != std::string::npos ||
        split_ws(data_name).size() != 1)
      fail(path, "MetaImage data split over several files (ElementDataFile '" + data_name + "') is not supported");
    data_path = fs::path(data_name).is_absolute() ? fs::path(data_name) : path.parent_path() / data_name;
    start = 0;
  }
  const std::uint64_t size = data_file_size(path, data_path);
  long long header_skip = 0;
  if (get("headersize") && (!parse_long(*get("headersize"), header_skip) || header_skip < -1))
    fail(path, "MetaImage HeaderSize is not a whole number >= -1");
  if (header_skip > 0) start += static_cast<std::uint64_t>(header_skip);
  const std::uint64_t available = size > start ? size - start : 0;
  if (!compressed) {
    if (available < expected)
      fail(path, "voxel data is truncated (" + std::to_string(available) + " of " + std::to_string(expected) + " bytes)");
  } else {
    std::uint64_t limit = available;
    if (const std::string* cs = get("compresseddatasize")) {
      long long c = 0;
      if (!parse_long(*cs, c) || c < 1) fail(path, "MetaImage CompressedDataSize is not a positive whole number");
      if (static_cast<std::uint64_t>(c) > available)
        fail(path, "CompressedDataSize " + *cs + " is past the end of the file (" + std::to_string(available) +
                       " bytes of data there)");
      limit = static_cast<std::uint64_t>(c);
    }
    bool ended = false;
    const std::uint64_t out = inflated_size(data_path, start, limit, false, ended);
    if (!ended || out < expected)
      fail(path, "compressed voxel data is truncated or corrupt (" + std::to_string(out) + " of " +
                     std::to_string(expected) + " bytes decompressed)");
  }
  return {voxels * static_cast<std::uint64_t>(channels), bytes};
}

// ------------------------------------------------------------------------------ NRRD

DeclaredImage check_nrrd(const fs::path& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) fail(path, "cannot open");
  std::string line;
  if (!std::getline(f, line) || line.rfind("NRRD000", 0) != 0) fail(path, "not a NRRD file (no NRRD000x magic)");
  std::uint64_t header_end = line.size() + 1;
  std::map<std::string, std::string> field;
  bool blank = false;
  while (header_end < (1 << 16) && std::getline(f, line)) {
    header_end += line.size() + 1;
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.empty()) {
      blank = true;
      break;
    }
    if (line[0] == '#') continue;
    if (line.find(":=") != std::string::npos) continue;  // key/value pairs carry no geometry
    const auto colon = line.find(": ");
    if (colon == std::string::npos) fail(path, "not a NRRD header (a line without 'field: value')");
    field[lower(trim(line.substr(0, colon)))] = trim(line.substr(colon + 2));
  }
  auto get = [&](const std::string& k) { return find_field(field, k); };
  long long dimension = 0;
  if (!get("dimension") || !parse_long(*get("dimension"), dimension) || dimension < 1 || dimension > 16)
    fail(path, "NRRD dimension is missing or not 1 to 16");
  const auto n = static_cast<std::size_t>(dimension);
  if (!get("sizes")) fail(path, "NRRD header has no sizes");
  const std::uint64_t voxels = checked_product(path, parse_sizes(path, *get("sizes"), n, "NRRD sizes"));
  static const std::map<std::string, unsigned> kTypes = {
      {"signed char", 1}, {"int8", 1}, {"int8_t", 1}, {"uchar", 1}, {"unsigned char", 1}, {"uint8", 1}, {"uint8_t", 1},
      {"short", 2}, {"short int", 2}, {"signed short", 2}, {"signed short int", 2}, {"int16", 2}, {"int16_t", 2},
      {"ushort", 2}, {"unsigned short", 2}, {"unsigned short int", 2}, {"uint16", 2}, {"uint16_t", 2},
      {"int", 4}, {"signed int", 4}, {"int32", 4}, {"int32_t", 4}, {"uint", 4}, {"unsigned int", 4}, {"uint32", 4},
      {"uint32_t", 4}, {"longlong", 8}, {"long long", 8}, {"long long int", 8}, {"signed long long", 8},
      {"signed long long int", 8}, {"int64", 8}, {"int64_t", 8}, {"ulonglong", 8}, {"unsigned long long", 8},
      {"unsigned long long int", 8}, {"uint64", 8}, {"uint64_t", 8}, {"float", 4}, {"double", 8}};
  const std::string* type = get("type");
  if (!type || !kTypes.count(lower(*type))) fail(path, "unknown NRRD type '" + (type ? *type : std::string()) + "'");
  const unsigned bytes = kTypes.at(lower(*type));
  if (const std::string* sp = get("spacings")) {
    const auto t = split_ws(*sp);
    if (t.size() != n) fail(path, "NRRD spacings do not have 'dimension' entries");
    for (const auto& s : t) {
      double d = 0;
      if (!parse_double(s, d) || !std::isfinite(d) || !(d > 0))
        fail(path, "NRRD spacing '" + s + "' is not a positive number");
    }
  }
  if (const std::string* sd = get("space directions")) {
    std::vector<std::array<double, 3>> axes;
    std::size_t count = 0;
    std::string rest = *sd;
    std::size_t pos = 0;
    while (pos < rest.size()) {
      while (pos < rest.size() && std::isspace(static_cast<unsigned char>(rest[pos]))) ++pos;
      if (pos >= rest.size()) break;
      if (rest.compare(pos, 4, "none") == 0) {
        ++count;
        pos += 4;
        continue;
      }
      if (rest[pos] != '(') fail(path, "NRRD space directions '" + *sd + "' are malformed");
      const auto close = rest.find(')', pos);
      if (close == std::string::npos) fail(path, "NRRD space directions '" + *sd + "' are malformed");
      std::string inner = rest.substr(pos + 1, close - pos - 1);
      std::replace(inner.begin(), inner.end(), ',', ' ');
      std::array<double, 3> a{0, 0, 0};
      const auto t = split_ws(inner);
      if (t.empty() || t.size() > 3) fail(path, "NRRD space direction '(" + inner + ")' is malformed");
      for (std::size_t i = 0; i < t.size(); ++i)
        if (!parse_double(t[i], a[i])) fail(path, "NRRD space direction '(" + inner + ")' is malformed");
      axes.push_back(a);
      ++count;
      pos = close + 1;
    }
    if (count != n) fail(path, "NRRD space directions do not have 'dimension' entries");
    check_axes(path, axes, "NRRD space directions");
  }
  if (const std::string* so = get("space origin")) {
    std::string inner = *so;
    for (char& c : inner)
      if (c == '(' || c == ')' || c == ',') c = ' ';
    for (const auto& t : split_ws(inner)) {
      double d = 0;
      if (!parse_double(t, d) || !std::isfinite(d)) fail(path, "NRRD space origin '" + *so + "' is not finite");
    }
  }
  const std::string encoding = get("encoding") ? lower(*get("encoding")) : "";
  const bool raw = encoding == "raw", gzip = encoding == "gzip" || encoding == "gz";
  const bool text = encoding == "ascii" || encoding == "text" || encoding == "txt", hex = encoding == "hex";
  if (!raw && !gzip && !text && !hex) fail(path, "unsupported NRRD encoding '" + encoding + "'");
  long long byte_skip = 0, line_skip = 0;
  if (get("byte skip") && (!parse_long(*get("byte skip"), byte_skip) || byte_skip < -1))
    fail(path, "NRRD byte skip is not a whole number >= -1");
  if (get("line skip") && (!parse_long(*get("line skip"), line_skip) || line_skip < 0))
    fail(path, "NRRD line skip is not a whole number >= 0");
  fs::path data_path = path;
  std::uint64_t start = header_end;
  const std::string* df = get("data file") ? get("data file") : get("datafile");
  if (df) {
    if (lower(*df).rfind("list", 0) == 0 || split_ws(*df).size() != 1)
      fail(path, "NRRD data split over several files ('" + *df + "') is not supported");
    data_path = fs::path(*df).is_absolute() ? fs::path(*df) : path.parent_path() / *df;
    start = 0;
  } else if (!blank) {
    fail(path, "NRRD header is not followed by data (no blank line)");
  }
  const std::uint64_t size = data_file_size(path, data_path);
  if (line_skip > 0) {
    std::ifstream d(data_path, std::ios::binary);
    d.seekg(static_cast<std::streamoff>(start));
    for (long long i = 0; i < line_skip && std::getline(d, line); ++i) start += line.size() + 1;
  }
  if (byte_skip > 0) start += static_cast<std::uint64_t>(byte_skip);
  const std::uint64_t available = size > start ? size - start : 0;
  const std::uint64_t expected = voxels * bytes;
  if (raw) {
    if (available < expected)
      fail(path, "voxel data is truncated (" + std::to_string(available) + " of " + std::to_string(expected) + " bytes)");
  } else if (gzip) {
    bool ended = false;
    const std::uint64_t out = inflated_size(data_path, start, available, true, ended);
    if (!ended || out < expected)
      fail(path, "compressed voxel data is truncated or corrupt (" + std::to_string(out) + " of " +
                     std::to_string(expected) + " bytes decompressed)");
  } else {
    // Text: count the values (or hex digits) without keeping them.
    std::ifstream d(data_path, std::ios::binary);
    d.seekg(static_cast<std::streamoff>(start));
    std::uint64_t count = 0;
    bool in_token = false;
    char c = 0;
    while (d.get(c)) {
      if (hex) {
        if (std::isxdigit(static_cast<unsigned char>(c))) ++count;
        continue;
      }
      const bool sep = std::isspace(static_cast<unsigned char>(c)) || c == ',';
      if (!sep && !in_token) ++count;
      in_token = !sep;
    }
    if (count < (hex ? 2 * expected : voxels))
      fail(path, "voxel data is truncated (" + std::to_string(count) + " of " +
                     std::to_string(hex ? 2 * expected : voxels) + (hex ? " hex digits)" : " values)"));
  }
  return {voxels, bytes};
}

// ------------------------------------------------------------------------------ PNG / JPEG
// Decoded with libpng / libjpeg directly: their error paths longjmp back here, where ITK
// would abort. Only plain data lives between setjmp and longjmp.

extern "C" void png_fail(png_structp png, png_const_charp msg) {
  std::snprintf(static_cast<char*>(png_get_error_ptr(png)), 256, "%s", msg);
  png_longjmp(png, 1);
}

extern "C" void png_ignore_warning(png_structp, png_const_charp) {}

namespace {

std::vector<unsigned char> read_all(const fs::path& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) fail(path, "cannot open");
  const auto size = fs::file_size(path);
  std::vector<unsigned char> data(size);
  f.read(reinterpret_cast<char*>(data.data()), static_cast<std::streamsize>(size));
  if (static_cast<std::uint64_t>(f.gcount()) != size) fail(path, "cannot read the whole file");
  return data;
}

struct PngSource {
  const unsigned char* data;
  std::size_t size, pos;
};

extern "C" void png_read_memory(png_structp png, png_bytep out, png_size_t n) {
  auto* s = static_cast<PngSource*>(png_get_io_ptr(png));
  if (n > s->size - s->pos) png_error(png, "file is truncated");
  std::memcpy(out, s->data + s->pos, n);
  s->pos += n;
}

// 0 when the whole picture decodes; else the problem in `err` (256 bytes).
int decode_png(const unsigned char* data, std::size_t size, std::uint64_t max_pixels, char* err,
               std::uint32_t* width, std::uint32_t* height, int* channels, int* depth) {
  if (size < 8 || png_sig_cmp(data, 0, 8) != 0) {
    std::snprintf(err, 256, "not a PNG file (no PNG signature)");
    return 1;
  }
  png_structp png = png_create_read_struct(PNG_LIBPNG_VER_STRING, err, png_fail, png_ignore_warning);
  if (!png) return std::snprintf(err, 256, "out of memory"), 1;
  png_infop info = png_create_info_struct(png);
  unsigned char* volatile row = nullptr;
  PngSource src{data, size, 0};
  if (setjmp(png_jmpbuf(png))) {
    std::free(row);
    png_destroy_read_struct(&png, &info, nullptr);
    return 1;
  }
  png_set_read_fn(png, &src, png_read_memory);
  png_set_user_limits(png, 1u << 20, 1u << 20);
  png_read_info(png, info);
  *width = png_get_image_width(png, info);
  *height = png_get_image_height(png, info);
  *channels = png_get_channels(png, info);
  *depth = png_get_bit_depth(png, info);
  if (static_cast<std::uint64_t>(*width) * *height > max_pixels) {
    std::snprintf(err, 256, "declares %u x %u pixels, more than the memory budget allows", *width, *height);
    png_destroy_read_struct(&png, &info, nullptr);
    return 1;
  }
  const int passes = png_set_interlace_handling(png);
  png_read_update_info(png, info);
  row = static_cast<unsigned char*>(std::malloc(png_get_rowbytes(png, info)));
  for (int p = 0; p < passes; ++p)
    for (std::uint32_t y = 0; y < *height; ++y) png_read_row(png, row, nullptr);
  png_read_end(png, nullptr);
  std::free(row);
  png_destroy_read_struct(&png, &info, nullptr);
  return 0;
}

struct JpegError {
  jpeg_error_mgr mgr;
  std::jmp_buf jump;
  char message[JMSG_LENGTH_MAX];
  int warnings;
};

extern "C" void jpeg_fail(j_common_ptr c) {
  auto* e = reinterpret_cast<JpegError*>(c->err);
  (*c->err->format_message)(c, e->message);
  std::longjmp(e->jump, 1);
}

extern "C" void jpeg_note(j_common_ptr c, int level) {
  auto* e = reinterpret_cast<JpegError*>(c->err);
  // level -1: a warning, which for libjpeg means corrupt or truncated data.
  if (level < 0 && e->warnings++ == 0) (*c->err->format_message)(c, e->message);
}

int decode_jpeg(const unsigned char* data, std::size_t size, std::uint64_t max_pixels, char* err,
                std::uint32_t* width, std::uint32_t* height, int* channels) {
  jpeg_decompress_struct cinfo;
  JpegError jerr;
  cinfo.err = jpeg_std_error(&jerr.mgr);
  jerr.mgr.error_exit = jpeg_fail;
  jerr.mgr.emit_message = jpeg_note;
  jerr.warnings = 0;
  jerr.message[0] = '\0';
  unsigned char* volatile row = nullptr;
  if (setjmp(jerr.jump)) {
    std::free(row);
    jpeg_destroy_decompress(&cinfo);
    std::snprintf(err, 256, "corrupt JPEG (%s)", jerr.message);
    return 1;
  }
  jpeg_create_decompress(&cinfo);
  jpeg_mem_src(&cinfo, data, static_cast<unsigned long>(size));
  jpeg_read_header(&cinfo, TRUE);
  *width = cinfo.image_width;
  *height = cinfo.image_height;
  *channels = cinfo.num_components;
  if (static_cast<std::uint64_t>(cinfo.image_width) * cinfo.image_height > max_pixels) {
    std::snprintf(err, 256, "declares %u x %u pixels, more than the memory budget allows", cinfo.image_width,
                  cinfo.image_height);
    jpeg_destroy_decompress(&cinfo);
    return 1;
  }
  jpeg_start_decompress(&cinfo);
  row = static_cast<unsigned char*>(std::malloc(static_cast<std::size_t>(cinfo.output_width) * cinfo.output_components));
  while (cinfo.output_scanline < cinfo.output_height) {
    JSAMPROW rows[1] = {row};
    jpeg_read_scanlines(&cinfo, rows, 1);
  }
  jpeg_finish_decompress(&cinfo);
  std::free(row);
  jpeg_destroy_decompress(&cinfo);
  if (jerr.warnings > 0) {
    std::snprintf(err, 256, "corrupt or truncated JPEG data (%s)", jerr.message);
    return 1;
  }
  return 0;
}

}  // namespace

DeclaredImage check_png(const fs::path& path, std::uint64_t max_pixels) {
  const auto data = read_all(path);
  char err[256] = {};
  std::uint32_t w = 0, h = 0;
  int channels = 1, depth = 8;
  if (decode_png(data.data(), data.size(), max_pixels, err, &w, &h, &channels, &depth) != 0)
    fail(path, std::string("unreadable PNG: ") + err);
  return {static_cast<std::uint64_t>(w) * h * static_cast<std::uint64_t>(channels), depth > 8 ? 2u : 1u};
}

DeclaredImage check_jpeg(const fs::path& path, std::uint64_t max_pixels) {
  const auto data = read_all(path);
  char err[256] = {};
  std::uint32_t w = 0, h = 0;
  int channels = 1;
  if (decode_jpeg(data.data(), data.size(), max_pixels, err, &w, &h, &channels) != 0)
    fail(path, std::string("unreadable JPEG: ") + err);
  return {static_cast<std::uint64_t>(w) * h * static_cast<std::uint64_t>(channels), 1};
}

// ------------------------------------------------------------------------------ DICOM

namespace {

// Explicit VR little endian (1.2.840.10008.1.2.1) and the compressed syntaxes built on it
// are what is left when a transfer syntax is none of these.
const char* kImplicitLE = "1.2.840.10008.1.2";
const char* kExplicitBE = "1.2.840.10008.1.2.2";
const char* kDeflatedLE = "1.2.840.10008.1.2.1.99";

bool known_vr(const std::string& vr) {
  static const std::set<std::string> kVrs = {"AE", "AS", "AT", "CS", "DA", "DS", "DT", "FD", "FL", "IS", "LO",
                                             "LT", "OB", "OD", "OF", "OL", "OV", "OW", "PN", "SH", "SL", "SQ",
                                             "SS", "ST", "SV", "TM", "UC", "UI", "UL", "UN", "UR", "US", "UT", "UV"};
  return kVrs.count(vr) > 0;
}

bool long_vr(const char* vr) {
  static const std::set<std::string> kLong = {"OB", "OD", "OF", "OL", "OV", "OW", "SQ", "SV", "UC", "UN", "UR", "UT", "UV"};
  return kLong.count(std::string(vr, 2)) > 0;
}

// The value representations GDCM reads these elements with (gdcm::Attribute, when ITK
// opens the file). GDCM asserts, aborting the process, when an explicit-VR file gives
// one of them another VR, so such a file is refused before GDCM sees it.
const char* expected_vr(std::uint32_t key) {
  switch (key) {
    case 0x00020010: case 0x00080016: case 0x00080018: case 0x0020000D: case 0x0020000E: return "UI";
    case 0x00080060: case 0x00280004: return "CS";
    case 0x00180050: case 0x00180088: case 0x00200032: case 0x00200037: case 0x00280030:
    case 0x00281050: case 0x00281051: case 0x00281052: case 0x00281053: return "DS";
    case 0x00280008: return "IS";
    case 0x00280002: case 0x00280006: case 0x00280010: case 0x00280011:
    case 0x00280100: case 0x00280101: case 0x00280102: case 0x00280103: return "US";
    default: return nullptr;
  }
}

std::string clean_string(std::string s) {
  while (!s.empty() && (s.back() == '\0' || s.back() == ' ')) s.pop_back();
  return trim(s);
}

std::vector<double> decimal_list(const std::string& s) {
  std::vector<double> out;
  std::string t;
  std::istringstream in(s);
  while (std::getline(in, t, '\\')) {
    double d = 0;
    if (!parse_double(trim(t), d) || !std::isfinite(d)) return {};
    out.push_back(d);
  }
  return out;
}

}  // namespace

DicomFacts check_dicom_file(const fs::path& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) fail(path, "cannot open");
  const std::uint64_t size = fs::file_size(path);
  auto bytes_at = [&](std::uint64_t pos, std::size_t n) {
    std::string s(n, '\0');
    f.clear();
    f.seekg(static_cast<std::streamoff>(pos));
    f.read(s.data(), static_cast<std::streamsize>(n));
    if (static_cast<std::size_t>(f.gcount()) != n) fail(path, "DICOM file is truncated inside its header");
    return s;
  };
  if (size < 132 || bytes_at(128, 4) != "DICM") fail(path, "not a DICOM file (no DICM marker at byte 128)");
  DicomFacts facts;
  std::uint64_t pos = 132;
  bool in_meta = true, explicit_vr = true, little = true;
  int depth = 0;
  std::set<std::uint32_t> seen;  // top-level tags: one element may not appear twice
  auto u16 = [&](const std::string& s, std::size_t o, bool le) {
    const auto a = static_cast<unsigned char>(s[o]), b = static_cast<unsigned char>(s[o + 1]);
    return static_cast<std::uint32_t>(le ? a | (b << 8) : (a << 8) | b);
  };
  auto u32 = [&](const std::string& s, std::size_t o, bool le) {
    return le ? u16(s, o, true) | (u16(s, o + 2, true) << 16) : (u16(s, o, false) << 16) | u16(s, o + 2, false);
  };
  auto tag_name = [](std::uint32_t g, std::uint32_t e) {
    char b[16];
    std::snprintf(b, sizeof b, "(%04X,%04X)", g, e);
    return std::string(b);
  };
  while (pos < size) {
    if (size - pos < 8) fail(path, "DICOM file is truncated inside an element header");
    std::string head = bytes_at(pos, std::min<std::uint64_t>(12, size - pos));
    if (in_meta && u16(head, 0, true) != 0x0002) {
      // The meta group ends; the data set follows in its transfer syntax.
      in_meta = false;
      const std::string& ts = facts.transfer_syntax;
      if (ts == kDeflatedLE) fail(path, "deflated DICOM (transfer syntax " + ts + ") is not supported");
      explicit_vr = !(ts.empty() || ts == kImplicitLE);
      little = ts != kExplicitBE;
    }
    const bool le = in_meta ? true : little;
    const std::uint32_t group = u16(head, 0, le), elem = u16(head, 2, le);
    if (group == 0xFFFE) {
      const std::uint32_t len = u32(head, 4, le);
      pos += 8;
      if (elem == 0xE000) {
        if (len == 0xFFFFFFFFu) {
          ++depth;
        } else {
          if (len > size - pos) fail(path, "a DICOM item claims more bytes than the file holds (truncated or garbled)");
          pos += len;  // a defined-length item (or a pixel fragment) is skipped whole
        }
      } else if (elem == 0xE00D || elem == 0xE0DD) {
        if (--depth < 0) fail(path, "garbled DICOM header (a delimiter outside any sequence)");
      } else {
        fail(path, "garbled DICOM header (item tag " + tag_name(group, elem) + ")");
      }
      continue;
    }
    std::uint32_t len = 0;
    std::string vr;
    if (in_meta || explicit_vr) {
      if (head.size() < 8) fail(path, "DICOM file is truncated inside an element header");
      vr = head.substr(4, 2);
      if (!std::isupper(static_cast<unsigned char>(vr[0])) || !std::isupper(static_cast<unsigned char>(vr[1])))
        fail(path, "garbled DICOM header (no value representation for element " + tag_name(group, elem) + ")");
      // GDCM asserts (aborting the process) on a VR outside the standard's list.
      if (!known_vr(vr))
        fail(path, "garbled DICOM header (unknown value representation " + vr + " for element " + tag_name(group, elem) + ")");
      if (long_vr(vr.c_str())) {
        if (head.size() < 12) fail(path, "DICOM file is truncated inside an element header");
        len = u32(head, 8, le);
        pos += 12;
      } else {
        len = u16(head, 6, le);
        pos += 8;
      }
    } else {
      len = u32(head, 4, le);
      pos += 8;
    }
    const bool pixel_data = group == 0x7FE0 && elem == 0x0010;
    if (depth == 0) {
      const std::uint32_t key = (group << 16) | elem;
      // A repeated element is ambiguous (GDCM keeps the first, this walk the last).
      if (!seen.insert(key).second) fail(path, "garbled DICOM header (element " + tag_name(group, elem) + " appears twice)");
      const char* want = expected_vr(key);
      if (want && !vr.empty() && vr != want)
        fail(path, "garbled DICOM header (element " + tag_name(group, elem) + " has value representation " + vr +
                       ", not " + want + ")");
    }
    if (len == 0xFFFFFFFFu) {
      if (!vr.empty() && vr != "SQ" && vr != "UN" && vr != "OB" && vr != "OW")
        fail(path, "garbled DICOM header (undefined length for element " + tag_name(group, elem) + ")");
      if (pixel_data && depth == 0) {
        facts.encapsulated = true;
        facts.pixel_offset = pos;
        facts.pixel_length = 0xFFFFFFFFu;
      }
      ++depth;
      continue;
    }
    if (len > size - pos)
      fail(path, "DICOM element " + tag_name(group, elem) + " claims " + std::to_string(len) + " bytes but " +
                     std::to_string(size - pos) + " remain (truncated or garbled file)");
    if (depth == 0 && (group == 0x0002 || group == 0x0008 || group == 0x0020 || group == 0x0028) && len <= 1024) {
      const std::string value = bytes_at(pos, len);
      const std::uint32_t key = (group << 16) | elem;
      auto us = [&] { return len >= 2 ? static_cast<int>(u16(value, 0, le)) : -1; };
      switch (key) {
        case 0x00020010: facts.transfer_syntax = clean_string(value); break;
        case 0x00080060: facts.modality = clean_string(value); break;
        case 0x0020000E: facts.series_uid = clean_string(value); break;
        case 0x00200032: {
          const auto p = decimal_list(value);
          if (p.size() != 3) fail(path, "DICOM ImagePositionPatient is not three finite numbers");
          std::copy(p.begin(), p.end(), facts.position.begin());
          facts.has_position = true;
          break;
        }
        case 0x00200037: {
          const auto o = decimal_list(value);
          if (o.size() != 6) fail(path, "DICOM ImageOrientationPatient is not six finite numbers");
          std::copy(o.begin(), o.end(), facts.orientation.begin());
          facts.has_orientation = true;
          break;
        }
        case 0x00280002: facts.samples = us(); break;
        case 0x00280008: {
          long long fr = 0;
          if (!parse_long(clean_string(value), fr) || fr < 1) fail(path, "DICOM NumberOfFrames is not a positive number");
          facts.frames = static_cast<int>(std::min<long long>(fr, 1 << 20));
          break;
        }
        case 0x00280010: facts.rows = us(); break;
        case 0x00280011: facts.columns = us(); break;
        case 0x00280100: facts.bits_allocated = us(); break;
        default: break;
      }
    }
    if (pixel_data && depth == 0) {
      facts.pixel_offset = pos;
      facts.pixel_length = len;
    }
    pos += len;
  }
  if (depth != 0) fail(path, "DICOM file is truncated inside a sequence");
  if (facts.pixel_offset == 0) fail(path, "DICOM file holds no image (no pixel data)");
  if (facts.rows <= 0 || facts.columns <= 0) fail(path, "DICOM Rows or Columns is missing or 0");
  if (facts.samples != 1 && facts.samples != 3) fail(path, "DICOM SamplesPerPixel is not 1 or 3");
  if (facts.bits_allocated != 8 && facts.bits_allocated != 16 && facts.bits_allocated != 32)
    fail(path, "DICOM BitsAllocated is " + std::to_string(facts.bits_allocated) + " (8, 16 or 32 supported)");
  if (!facts.encapsulated) {
    const std::uint64_t expected = static_cast<std::uint64_t>(facts.rows) * facts.columns * facts.frames *
                                   facts.samples * (facts.bits_allocated / 8);
    if (facts.pixel_length < expected)
      fail(path, "DICOM pixel data holds " + std::to_string(facts.pixel_length) + " bytes; Rows x Columns x frames needs " +
                     std::to_string(expected) + " (truncated file?)");
  }
  return facts;
}

std::vector<std::string> check_dicom_series(const fs::path& dir, DeclaredImage* declared,
                                            std::array<double, 3>* mean_step) {
  std::vector<fs::path> files;
  for (const auto& e : fs::directory_iterator(dir)) {
    std::error_code ec;
    if (!e.is_regular_file(ec) || e.path().filename().string().rfind('.', 0) == 0) continue;
    if (lower(e.path().filename().string()) == "dicomdir") continue;
    std::ifstream f(e.path(), std::ios::binary);
    char magic[4] = {};
    f.seekg(128);
    if (f.read(magic, 4) && std::string(magic, 4) == "DICM") files.push_back(e.path());
  }
  if (files.empty()) fail(dir, "no DICOM files in this directory");
  std::sort(files.begin(), files.end());
  std::vector<DicomFacts> facts;
  for (const auto& f : files) facts.push_back(check_dicom_file(f));
  std::map<std::string, int> series;
  for (const auto& d : facts) ++series[d.series_uid];
  if (series.size() > 1) {
    std::string counts;
    for (const auto& [uid, n] : series) counts += (counts.empty() ? "" : ", ") + std::to_string(n);
    // UIDs are not printed: they can identify a patient's study.
    fail(dir, "holds " + std::to_string(series.size()) + " DICOM series (" + counts +
                  " files); give each series its own folder");
  }
  const DicomFacts& a = facts.front();
  for (std::size_t i = 1; i < facts.size(); ++i) {
    const DicomFacts& b = facts[i];
    if (b.rows != a.rows || b.columns != a.columns || b.samples != a.samples || b.bits_allocated != a.bits_allocated)
      fail(dir, "slices of different sizes (" + std::to_string(a.columns) + " x " + std::to_string(a.rows) + " in " +
                    files[0].filename().string() + ", " + std::to_string(b.columns) + " x " + std::to_string(b.rows) +
                    " in " + files[i].filename().string() + ")");
  }
  if (declared)
    *declared = {static_cast<std::uint64_t>(a.rows) * a.columns * a.samples * a.frames * facts.size(),
                 static_cast<unsigned>(a.bits_allocated / 8)};
  if (facts.size() == 1) return {files[0].string()};
  for (std::size_t i = 0; i < facts.size(); ++i) {
    if (facts[i].frames != 1) fail(files[i], "a multi-frame file inside a series of several files");
    if (!facts[i].has_position || !facts[i].has_orientation)
      fail(files[i], "a slice without ImagePositionPatient / ImageOrientationPatient");
    for (int k = 0; k < 6; ++k)
      if (std::fabs(facts[i].orientation[k] - a.orientation[k]) > 1e-3)
        fail(dir, "slices with different orientations (" + files[0].filename().string() + ", " +
                      files[i].filename().string() + ")");
  }
  const auto& o = a.orientation;
  const std::array<double, 3> normal{o[1] * o[5] - o[2] * o[4], o[2] * o[3] - o[0] * o[5], o[0] * o[4] - o[1] * o[3]};
  std::vector<std::pair<double, std::size_t>> along;
  for (std::size_t i = 0; i < facts.size(); ++i) {
    const auto& p = facts[i].position;
    along.emplace_back(p[0] * normal[0] + p[1] * normal[1] + p[2] * normal[2], i);
  }
  std::sort(along.begin(), along.end());
  std::vector<double> steps;
  for (std::size_t i = 1; i < along.size(); ++i) steps.push_back(along[i].first - along[i - 1].first);
  std::vector<double> sorted = steps;
  std::nth_element(sorted.begin(), sorted.begin() + sorted.size() / 2, sorted.end());
  const double median = sorted[sorted.size() / 2];
  for (std::size_t i = 0; i < steps.size(); ++i) {
    const std::string pair = files[along[i].second].filename().string() + " and " +
                             files[along[i + 1].second].filename().string();
    if (steps[i] < 1e-3) fail(dir, "two slices at the same position (" + pair + ")");
    if (std::fabs(steps[i] - median) > 0.05 * median + 0.01)
      fail(dir, "slice positions are unevenly spaced (" + num(steps[i]) + " mm between " + pair + ", " + num(median) +
                    " mm elsewhere): a missing or extra slice?");
  }
  // The in-plane part of every step must be the same too: a gantry-tilted stack shifts each
  // slice by the same amount, which reading can undo; uneven shifts are no grid at all.
  const auto& first = facts[along.front().second].position;
  const auto& last = facts[along.back().second].position;
  std::array<double, 3> mean{};
  for (int a = 0; a < 3; ++a) mean[a] = (last[a] - first[a]) / static_cast<double>(along.size() - 1);
  const std::array<double, 3> row{o[0], o[1], o[2]}, column{o[3], o[4], o[5]};
  auto dot = [](const std::array<double, 3>& u, const std::array<double, 3>& v) {
    return u[0] * v[0] + u[1] * v[1] + u[2] * v[2];
  };
  for (std::size_t i = 1; i < along.size(); ++i) {
    const auto& p = facts[along[i].second].position;
    const auto& q = facts[along[i - 1].second].position;
    const std::array<double, 3> d{p[0] - q[0], p[1] - q[1], p[2] - q[2]};
    const double off = std::hypot(dot(d, row) - dot(mean, row), dot(d, column) - dot(mean, column));
    if (off > 0.05 * median + 0.01)
      fail(dir, "slices shifted unevenly in their plane (" + num(off) + " mm off the series' mean step between " +
                    files[along[i - 1].second].filename().string() + " and " +
                    files[along[i].second].filename().string() + ")");
  }
  if (mean_step) *mean_step = mean;
  std::vector<std::string> out;
  for (const auto& [d, i] : along) out.push_back(files[i].string());
  return out;
}

}  // namespace spine::detail
