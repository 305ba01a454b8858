// Checks of an image file's own structure before ITK reads it (internal header).
//
// ITK's readers trust what a header says: a truncated NIfTI or MetaImage comes back with
// zeros for the missing voxels, a NaN in an sform aborts inside its matrix code, a PNG cut
// short aborts inside libpng, a garbled DICOM length allocates gigabytes. So every file
// is first checked here, by code that reads only as much as it needs and never trusts a
// length it has not compared with the file: sizes the file actually holds, finite and
// positive spacing, finite non-degenerate orientation, known pixel types, a pixel count
// within the memory budget. Each check throws spine::Error (input) naming the file and
// the problem in one line.
#pragma once
#include <array>
#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include <png.h>

namespace spine::detail {

// What a header declares, for the memory budget.
struct DeclaredImage {
  std::uint64_t voxels = 0;        // all components of all voxels
  unsigned bytes_per_value = 0;    // stored size of one component
};

// Where a NIfTI file's voxels lie and how they are stored.
struct NiftiLayout {
  std::uint64_t vox_offset = 0, data_end = 0;
  int datatype = 0;           // NIfTI datatype code
  unsigned value_bytes = 0;   // stored size of one component
  unsigned components = 1;    // 3 for RGB24, 4 for RGBA32
  unsigned float_bytes = 0;   // 4 or 8 for float voxels, else 0
  double slope = 0, inter = 0;  // scl_slope, scl_inter as stored
  bool swapped = false;       // big-endian file
  bool gzipped = false;
};
// NIfTI-1/2 (.nii, .nii.gz): header fields, vox_offset and (for .nii) the data length.
DeclaredImage check_nifti_header(const std::filesystem::path& path, NiftiLayout* layout);
// The voxel data: for .nii.gz decompresses and checks the length; for float voxels
// counts NaN and infinite values, which ITK's NIfTI reader silently turns into 0.
void check_nifti_data(const std::filesystem::path& path, const NiftiLayout& layout);
// Decodes the `count` voxels of a single-component NIfTI straight into `out` (as stored, x
// fastest) with scl_slope / scl_inter applied as the standard says, checking on the way
// what check_nifti_data checks (the length, the gzip stream, finite values). One pass and
// one chunk of buffer: ITK's reader would hold the stored values and a float image of its
// own besides the caller's, 10 bytes per int16 voxel against 4 here.
void read_nifti_voxels(const std::filesystem::path& path, const NiftiLayout& layout, float* out, std::uint64_t count);
// Whether read_nifti_labels can read this layout: one component of an integer type, and no
// scaling (a scaled value may be fractional: the float path checks that).
bool nifti_labels_readable(const NiftiLayout& layout);
// The `count` voxels of such a NIfTI straight into 16-bit labels, checking what
// read_nifti_voxels checks; returns how many values do not fit 16 bits (the caller refuses
// the map). 2 bytes per voxel instead of the float image's 4 and the copy's 2.
std::uint64_t read_nifti_labels(const std::filesystem::path& path, const NiftiLayout& layout, std::int16_t* out,
                                std::uint64_t count);
DeclaredImage check_meta(const std::filesystem::path& path);
DeclaredImage check_nrrd(const std::filesystem::path& path);
// Decodes the whole picture (libpng / libjpeg) under their error handlers, with the
// declared size checked against `max_pixels` first.
DeclaredImage check_png(const std::filesystem::path& path, std::uint64_t max_pixels);
DeclaredImage check_jpeg(const std::filesystem::path& path, std::uint64_t max_pixels);
// libpng's handlers for reading and writing: the message into the error pointer (256
// bytes), then longjmp back to the caller's setjmp; warnings ignored.
extern "C" void png_fail(png_structp png, png_const_charp msg);
extern "C" void png_ignore_warning(png_structp, png_const_charp);

// What the DICOM header walk found (top-level elements only).
struct DicomFacts {
  std::string transfer_syntax, modality, series_uid;
  int rows = 0, columns = 0, samples = 1, bits_allocated = 0, frames = 1;
  bool has_position = false, has_orientation = false;
  std::array<double, 3> position{0, 0, 0};
  std::array<double, 6> orientation{1, 0, 0, 0, 1, 0};
  std::uint64_t pixel_offset = 0, pixel_length = 0;
  bool encapsulated = false;
};
// Walks every element of a DICOM file, checking each length against the file, and the
// pixel data against rows x columns x frames (native transfer syntaxes).
DicomFacts check_dicom_file(const std::filesystem::path& path);
// The files of the one series in `dir`, sorted along the slice normal; throws when the
// folder holds several series, slices of different sizes or orientations, or positions
// that repeat or are unevenly spaced (a missing slice), along the normal or in the plane.
// `mean_step`: the mean step from one slice's position to the next (LPS mm; zero for one
// file). A step with a part in the slice plane is a sheared stack (CT with gantry tilt):
// the slices are parallel, each shifted in its plane.
std::vector<std::string> check_dicom_series(const std::filesystem::path& dir, DeclaredImage* declared,
                                            std::array<double, 3>* mean_step = nullptr);

}  // namespace spine::detail
