// CT windowing and intensity normalisation.
#include <algorithm>
#include <cmath>

#include "spine/error.hpp"
#include "spine/preprocess.hpp"

namespace spine {

Window window_preset(const std::string& name) {
  if (name == "bone") return {400, 1800};
  if (name == "soft-tissue") return {40, 400};
  if (name == "spine") return {250, 1000};
  throw usage_error("unknown window preset '" + name + "' (bone, soft-tissue, spine)");
}

FloatImage apply_window(const FloatImage& image, Window window, float out_min, float out_max) {
  if (!(window.width > 0)) throw usage_error("window width must be positive");
  FloatImage out = image;
  const double lo = window.level - window.width / 2;
  const double scale = (out_max - out_min) / window.width;
  for (float& v : out.voxels) {
    const double t = std::clamp((v - lo) * scale + out_min, double(out_min), double(out_max));
    v = static_cast<float>(t);
  }
  return out;
}

void normalise_zscore(FloatImage& image, const LabelImage* mask) {
  if (mask && mask->voxels.size() != image.voxels.size())
    throw internal_error("normalise_zscore: mask grid differs from image grid");
  double sum = 0, sum2 = 0;
  std::size_t n = 0;
  for (std::size_t i = 0; i < image.voxels.size(); ++i) {
    if (mask && mask->voxels[i] == 0) continue;
    sum += image.voxels[i];
    sum2 += double(image.voxels[i]) * image.voxels[i];
    ++n;
  }
  if (n == 0) throw input_error("cannot normalise: empty mask");
  const double mean = sum / n;
  const double sd = std::sqrt(std::max(0.0, sum2 / n - mean * mean));
  const double inv = sd > 1e-12 ? 1.0 / sd : 1.0;
  for (float& v : image.voxels) v = static_cast<float>((v - mean) * inv);
}

float percentile(const FloatImage& image, double percent) {
  if (image.voxels.empty()) throw input_error("percentile of an empty image");
  std::vector<float> copy = image.voxels;
  const double p = std::clamp(percent, 0.0, 100.0) / 100.0;
  const auto k = static_cast<std::size_t>(std::lround(p * (copy.size() - 1)));
  std::nth_element(copy.begin(), copy.begin() + k, copy.end());
  return copy[k];
}

void clip_percentiles(FloatImage& image, double lower_percent, double upper_percent) {
  if (!(lower_percent >= 0 && upper_percent <= 100 && lower_percent < upper_percent))
    throw usage_error("percentiles must satisfy 0 <= lower < upper <= 100");
  const float lo = percentile(image, lower_percent);
  const float hi = percentile(image, upper_percent);
  for (float& v : image.voxels) v = std::clamp(v, lo, hi);
}

}  // namespace spine
