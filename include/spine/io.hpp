// Image input and output through ITK: NIfTI, NRRD, MHA, DICOM series directories and
// 2D PNG / JPEG / DICOM radiographs. Geometry (LPS mm) survives read -> write exactly.
#pragma once
#include <filesystem>
#include <cstdint>
#include <string>
#include <vector>

#include "spine/image.hpp"

namespace spine {

struct ImageInfo {
  std::string format;        // "nifti", "nrrd", "meta", "dicom-series", "png", "jpeg", "dicom"
  std::string modality;      // DICOM Modality tag ("CT", "MR", "CR", "DX"), empty when unknown
  std::string pixel_type;    // stored component type, e.g. "uint8", "int16", "float"
  int components = 1;        // colour images are converted to grey on reading
  int file_dimension = 3;
  // A DICOM series whose slices were sheared (CT with gantry tilt): the angle between the
  // slice-to-slice step and the slice normal, in degrees; the stack was resampled on
  // reading onto an upright grid (0: nothing to correct).
  double gantry_tilt_deg = 0;
};

struct LoadedImage {
  FloatImage image;
  ImageInfo info;
};

// True for a directory that holds at least one DICOM series (and is read as one study).
bool is_dicom_series_dir(const std::filesystem::path& dir);

// True for a file name with an image extension this library reads.
bool has_image_extension(const std::filesystem::path& file);

// File name without image extensions ("a.nii.gz" -> "a"), or the directory name.
std::string study_name_of(const std::filesystem::path& path);

// Reads a 2D or 3D scalar image (colour is converted to luminance) or a DICOM series
// directory. Throws spine::Error (input) naming the file and the problem.
// Patient-identifying DICOM tags are never read into the result.
// The file's structure is checked first by our own code (sizes the file holds, finite
// positive spacing, an orthonormal orientation, a consistent DICOM series), its size
// against the memory budget, and after reading every voxel must be finite.
LoadedImage read_image(const std::filesystem::path& path);

// The most memory one input may take, checked from its header before anything is
// allocated: what reading needs, or the command's working memory per input value (its
// measured peak per voxel, 0 where only the read counts) if that is more. Default budget
// (0 = unset): three quarters of the machine's memory.
void set_memory_budget(std::uint64_t bytes, double working_bytes_per_value = 0);
std::uint64_t memory_budget();
// Throws an input error naming `path` when `values` at `bytes_per_value` exceed the
// budget: for grids a command makes itself (resampling to a finer spacing).
void check_memory_budget(const std::filesystem::path& path, std::uint64_t values, double bytes_per_value);
// "8G", "512M", "2.5GiB", "auto" (0) -> bytes; a usage error otherwise.
std::uint64_t parse_memory_size(const std::string& text);
LabelImage read_labels(const std::filesystem::path& path);

enum class StoredPixel { kFloat32, kInt16, kUInt8 };

// Writes atomically (temporary file in the same folder, then rename); the format follows
// the extension (.nii, .nii.gz, .nrrd, .mha, .png). PNG needs kUInt8 and a 2D image.
void write_image(const FloatImage& image, const std::filesystem::path& path,
                 StoredPixel stored = StoredPixel::kFloat32);
void write_labels(const LabelImage& labels, const std::filesystem::path& path);

// An 8-bit 2D greyscale or RGB picture (PNG), for overlays and previews.
struct RgbImage {
  std::size_t width = 0, height = 0;
  std::vector<std::uint8_t> rgb;  // row-major, 3 bytes per pixel
};
void write_png(const RgbImage& picture, const std::filesystem::path& path);

// Writes text atomically (temporary file, then rename). With owner_only the file is
// readable by its owner alone (mode 0600) from before its first byte is written, for
// files that name patients (the pseudonym map).
void write_text_file(const std::filesystem::path& path, const std::string& text, bool owner_only = false);

}  // namespace spine
