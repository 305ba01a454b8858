// Heatmap peak refinement and crop helpers shared by the radiograph stages (landmarks,
// corners, level anchors, spine finder; internal to the library).
#pragma once
#include <cstddef>

#include "spine/cobb.hpp"
#include "spine/tensor.hpp"

namespace spine {

// The peak at flat index `best` of an h x w heatmap refined by the weighted centroid of
// the non-negative values in its 5 x 5 neighbourhood (heatmap pixels).
Point2 refine_peak(const float* heat, int h, int w, int best);

// Bilinear sample of an h x w plane at (x, y), zero outside (torch's grid_sample with
// zero padding).
float bilinear_zero_padded(const float* plane, int h, int w, double x, double y);

// Standardises n values to mean 0 and standard deviation 1 (population; sd floored at 1e-6).
void zscore(float* data, std::size_t n);

// A [N, C, h, w] tensor mirrored left-right.
Tensor mirrored(const Tensor& t);

}  // namespace spine
