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

// The peak of a Gaussian through the maximum `best` and its neighbours: along each axis the
// vertex of the parabola through the log-heat at best-1, best, best+1. For a Gaussian peak
// it is exact whichever of two near-equal pixels is the maximum, where the centroid of a
// window around the maximum is pulled toward that pixel. Falls back to refine_peak at the
// border or where the log-heat is not concave.
Point2 refine_peak_gaussian(const float* heat, int h, int w, int best);

// Bilinear sample of an h x w plane at (x, y), zero outside (torch's grid_sample with
// zero padding).
float bilinear_zero_padded(const float* plane, int h, int w, double x, double y);

// Standardises n values to mean 0 and standard deviation 1 (population; sd floored at 1e-6).
void zscore(float* data, std::size_t n);

// A [N, C, h, w] tensor mirrored left-right.
Tensor mirrored(const Tensor& t);

}  // namespace spine
