// Heatmap peak refinement shared by the radiograph stages (landmarks, corners, spine
// finder; internal to the library).
#pragma once
#include "spine/cobb.hpp"

namespace spine {

// The peak at flat index `best` of an h x w heatmap refined by the weighted centroid of
// the non-negative values in its 5 x 5 neighbourhood (heatmap pixels).
Point2 refine_peak(const float* heat, int h, int w, int best);

}  // namespace spine
