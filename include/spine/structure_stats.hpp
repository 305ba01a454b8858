// Per-structure statistics of a label map over its image: what TotalSegmentator's
// --statistics gives (volume and intensity), so a cohort table can be filtered and
// compared without reopening the images.
#pragma once
#include <cstdint>
#include <map>

#include "spine/image.hpp"

namespace spine {

struct StructureStatistics {
  std::size_t voxels = 0;
  double volume_ml = 0;
  // Intensity over the structure's voxels (HU on CT, the scanner's units on MR).
  double mean = 0, sd = 0, median = 0, q1 = 0, q3 = 0;  // q1, q3: 25th and 75th percentiles
};

// One entry per non-zero label present. `labels` must lie on `image`'s grid (else an
// internal error). Percentiles are linearly interpolated between order statistics.
std::map<int, StructureStatistics> structure_statistics(const FloatImage& image, const LabelImage& labels);

}  // namespace spine
