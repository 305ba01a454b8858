// Volume and intensity statistics per label: one pass to group the voxel values by label,
// then the order statistics per structure (nth_element, not a full sort).
#include "spine/structure_stats.hpp"

#include <algorithm>
#include <cmath>
#include <vector>

#include "spine/error.hpp"

namespace spine {
namespace {

// Linear interpolation between order statistics (numpy's default, R's type 7), so the
// figures agree with what a user computes from the same voxels in Python or R.
double quantile(std::vector<float>& v, double q) {
  const double pos = q * (v.size() - 1);
  const auto lo = static_cast<std::size_t>(std::floor(pos));
  std::nth_element(v.begin(), v.begin() + lo, v.end());
  const double a = v[lo];
  if (lo + 1 >= v.size()) return a;
  const double b = *std::min_element(v.begin() + lo + 1, v.end());
  return a + (pos - lo) * (b - a);
}

}  // namespace

std::map<int, StructureStatistics> structure_statistics(const FloatImage& image, const LabelImage& labels) {
  if (image.geometry.size != labels.geometry.size)
    throw internal_error("structure statistics: the label map is not on the image's grid");
  std::map<int, std::vector<float>> values;
  for (std::size_t i = 0; i < labels.voxels.size(); ++i)
    if (labels.voxels[i] != 0) values[labels.voxels[i]].push_back(image.voxels[i]);
  const auto& sp = labels.geometry.spacing;
  const double voxel_ml = sp[0] * sp[1] * (labels.geometry.dimension == 2 ? 1.0 : sp[2]) / 1000.0;
  std::map<int, StructureStatistics> out;
  for (auto& [label, v] : values) {
    StructureStatistics s;
    s.voxels = v.size();
    s.volume_ml = v.size() * voxel_ml;
    double sum = 0, sum2 = 0;
    for (float x : v) sum += x;
    s.mean = sum / v.size();
    for (float x : v) sum2 += (x - s.mean) * (x - s.mean);
    s.sd = v.size() > 1 ? std::sqrt(sum2 / (v.size() - 1)) : 0.0;
    s.q1 = quantile(v, 0.25);
    s.median = quantile(v, 0.5);
    s.q3 = quantile(v, 0.75);
    out[label] = s;
  }
  return out;
}

}  // namespace spine
