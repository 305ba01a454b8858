// Preprocessing stages: CT windowing, N4 bias correction, CLAHE (2D/3D), resampling,
// reorientation and intensity normalisation. All keep geometry in LPS mm.
#pragma once
#include <array>
#include <string>
#include <vector>

#include "spine/image.hpp"

namespace spine {

// --- CT windowing (HU) ---------------------------------------------------------------
struct Window {
  double level = 0;  // HU
  double width = 1;  // HU
};
// "bone" (level 400, width 1800), "soft-tissue" (40/400), "spine" (250/1000).
Window window_preset(const std::string& name);
// Maps [level - width/2, level + width/2] linearly to [out_min, out_max], clamping outside.
FloatImage apply_window(const FloatImage& image, Window window, float out_min = 0.f,
                        float out_max = 1.f);

// --- N4 bias field correction ---------------------------------------------------------
struct N4Config {
  int shrink_factor = 4;                         // compute on a grid this many times coarser
  std::vector<unsigned> iterations{50, 50, 30};  // per fitting level
  double convergence = 1e-3;
  unsigned control_points = 4;                   // per axis at the coarsest level
};
// Corrects a 3D (or 2D) image; mask voxels != 0 are used for fitting (all > 0 intensities
// when the mask is null). Returns the corrected image; `bias_out`, when given, gets the
// estimated multiplicative field.
FloatImage n4_bias_correct(const FloatImage& image, const LabelImage* mask, const N4Config& config,
                           FloatImage* bias_out = nullptr);

// --- CLAHE ----------------------------------------------------------------------------
struct ClaheConfig {
  // Clip limit as a multiple of the mean bin count of a tile (OpenCV's convention);
  // 1 means plain histogram clipping to uniform, larger allows more contrast.
  double clip_limit = 2.0;
  // Tiles per axis: x, y, z (z ignored for 2D images).
  std::array<int, 3> tiles{8, 8, 4};
  int bins = 256;
};
// Contrast-limited adaptive histogram equalisation with bilinear (2D) or trilinear (3D)
// interpolation between tile mappings. The output spans the input's [min, max].
FloatImage clahe(const FloatImage& image, const ClaheConfig& config);

// --- Resampling -----------------------------------------------------------------------
// The grid resample_image puts an image on: same direction and physical extent (the edge
// of the first voxel stays put), the given spacing.
Geometry grid_with_spacing(const Geometry& in, const std::array<double, 3>& spacing_mm);
// Same direction and physical extent, new spacing (mm). Linear for images.
FloatImage resample_image(const FloatImage& image, const std::array<double, 3>& spacing_mm);
// Label-preserving: each output voxel takes the label with the largest summed
// trilinear weight, so no invented in-between labels and thin structures survive.
LabelImage resample_labels(const LabelImage& labels, const std::array<double, 3>& spacing_mm);
// Resampling onto an arbitrary target grid (physical-point mapping; outside -> fill).
FloatImage resample_image_to(const FloatImage& image, const Geometry& target, float fill = 0.f);
LabelImage resample_labels_to(const LabelImage& labels, const Geometry& target);

// --- Reorientation --------------------------------------------------------------------
// Orientation codes name where each voxel axis points: "LPS" means +x toward the patient's
// Left, +y Posterior, +z Superior (ITK identity direction); "RAS" is NIfTI's RAS+.
std::string orientation_code(const Geometry& geometry);
// Permutes and flips axes so the image has the given code; the physical position of
// every voxel is kept (no interpolation). Reorienting back with the original code
// restores the voxels and geometry exactly.
FloatImage reorient(const FloatImage& image, const std::string& code);
LabelImage reorient(const LabelImage& labels, const std::string& code);
// Where reorient puts each voxel, without copying: the reoriented geometry, and for
// reoriented index (i, j, k) the source voxel at base + i*step[0] + j*step[1] + k*step[2]
// (for reading a few slices of a large volume as if it were reoriented).
struct Reorientation {
  Geometry geometry;
  std::array<std::int64_t, 3> step{};
  std::int64_t base = 0;
  std::size_t offset(std::size_t i, std::size_t j, std::size_t k) const {
    return static_cast<std::size_t>(base + static_cast<std::int64_t>(i) * step[0] +
                                    static_cast<std::int64_t>(j) * step[1] + static_cast<std::int64_t>(k) * step[2]);
  }
};
Reorientation reorientation(const Geometry& geometry, const std::string& code);
// resample_image_to(reorient(image, code), target) without the reoriented copy: `as` is
// reorientation(image.geometry, code). Same values, bit for bit; a whole CT is not copied
// when only the region around its spine is needed.
FloatImage resample_image_to(const FloatImage& image, const Reorientation& as, const Geometry& target,
                             float fill = 0.f);

// --- Intensity normalisation ----------------------------------------------------------
// Subtracts the mean and divides by the standard deviation, over mask voxels when given.
void normalise_zscore(FloatImage& image, const LabelImage* mask = nullptr);
// Clamps intensities to the given percentiles (0..100) of the image.
void clip_percentiles(FloatImage& image, double lower_percent, double upper_percent);
// The value at a percentile (0..100), by sorting a copy (nearest rank).
float percentile(const FloatImage& image, double percent);

}  // namespace spine
