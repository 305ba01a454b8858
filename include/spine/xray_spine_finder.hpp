// Finding the spine in a frontal radiograph as it comes (any size, aspect, padding and
// field of view: skull to femoral heads, arms, rulers, text) before the landmark stages:
// models/xray-spine-finder.pt locates the top of T1, the bottom of L5, the column between
// them and spinal hardware on the film reduced to 256 x 256; spine-cobb then hands the
// landmark stages a crop framed as the images they were trained on.
#pragma once
#include <string>
#include <vector>

#include "spine/cobb.hpp"
#include "spine/image.hpp"
#include "spine/model.hpp"
#include "spine/tensor.hpp"

namespace spine {

struct SpineFinderOptions {
  double min_peak = 0.3;             // a T1 / L5 heatmap peak below this: not found
  double hardware_probability = 0.5; // an output pixel above this is hardware
  int hardware_min_pixels = 3;       // this many hardware pixels (of 64 x 64) flag the film
};

struct PixelBox {
  double x0 = 0, y0 = 0, x1 = 0, y1 = 0;  // image pixels, x1/y1 exclusive
  double width() const { return x1 - x0; }
  double height() const { return y1 - y0; }
};

struct SpineLocation {
  bool t1_found = false, l5_found = false;
  Point2 t1_top, l5_bottom;            // image pixels
  double t1_confidence = 0, l5_confidence = 0;
  // The crop for the landmark stages, framed around T1..L5 with the margins of the
  // training images (and the column's lateral extent); the whole image when the spine
  // was not found.
  PixelBox crop;
  int hardware_pixels = 0;             // of the 64 x 64 output
  bool hardware = false;               // hardware_pixels reached SpineFinderOptions::hardware_min_pixels
  std::vector<std::string> flags;
  // The column probability [64 x 64] and how output pixels map to the image.
  std::vector<float> column;
  double out_scale_x = 1, out_scale_y = 1, out_offset_x = 0, out_offset_y = 0;
  // Probability that the image point lies on the column (the output pixel's, nearest).
  double column_at(Point2 p) const;
};

// The finder's input contract (scripts/train_spine_finder.py letterbox): the image reduced
// by area averaging to round(W s) x round(H s), s = 256 / max(W, H), z-scored over those
// pixels, centred in 256 x 256 with zeros around. Returns [1, 1, 256, 256] and the
// placement (x scale, y scale, x offset, y offset) in `placement`.
Tensor spine_finder_input(const FloatImage& radiograph, double placement[4]);

// Decodes the finder's output [1, 4, 64, 64] for an image of the given size.
SpineLocation decode_spine_finder(const Tensor& output, const double placement[4], std::size_t width,
                                  std::size_t height, const SpineFinderOptions& options = {});

class XraySpineFinder {
 public:
  explicit XraySpineFinder(const Model& model, SpineFinderOptions options = {});
  SpineLocation find(const FloatImage& radiograph) const;

 private:
  const Model& model_;
  SpineFinderOptions options_;
};

// Vertebrae (names) whose centre, from 68 landmarks in image pixels, lies off the
// column the finder saw (column probability below `min_probability` within one output
// pixel); empty when the finder found no spine.
std::vector<std::string> vertebrae_off_column(const SpineLocation& location, const std::vector<Point2>& points,
                                              double min_probability = 0.2);

// True when the film is shown inverted (bone dark): the column the finder saw is darker on
// average than the rest of the crop. On the AASCE images, shown conventionally, the
// column is brighter by at least 0.23 standard deviations (measured on every second one of
// them, 227, with the reference landmarks). False when the spine was not
// found.
bool inverted_polarity(const FloatImage& image, const SpineLocation& location);

// The image with its grey values mirrored (max + min - v), as a conventional film.
FloatImage invert_grey(const FloatImage& image);

// The part of an image inside a box (rounded outward, clamped to the image).
FloatImage crop_image(const FloatImage& image, const PixelBox& box);

}  // namespace spine
