// Sliding-window inference in 2D and 3D: overlapping patches, Gaussian-weighted blending,
// optional mirror test-time augmentation, batches of windows and a region of interest.
#pragma once
#include <array>
#include <cstdint>
#include <functional>
#include <optional>

#include "spine/tensor.hpp"

namespace spine {

// Half-open voxel box [begin, end) per axis, order x, y, z.
struct VoxelBox {
  std::array<std::int64_t, 3> begin{0, 0, 0};
  std::array<std::int64_t, 3> end{0, 0, 0};
};

struct SlidingWindowConfig {
  std::array<std::int64_t, 3> patch{64, 64, 64};  // x, y, z (z ignored in 2D)
  double overlap = 0.5;              // fraction of the patch shared by neighbours, 0 .. <1
  bool gaussian_weighting = true;    // centre-weighted blending (sigma = patch / 8)
  bool mirror = false;               // average over flips of every spatial axis
  int batch_size = 2;                // windows per forward call
  std::optional<VoxelBox> roi;       // only this region is predicted (and returned)
};

// Maps a batch [B, C, (pz,) py, px] to [B, K, (pz,) py, px].
using PatchPredictor = std::function<Tensor(const Tensor&)>;

// input: [C, (Z,) Y, X] with `spatial_dims` 2 or 3. Returns [K, ...] over the ROI (the whole
// image without one). Images smaller than a patch are zero-padded. Memory is bounded by
// the ROI output plus one batch of patches.
Tensor sliding_window_inference(const Tensor& input, int spatial_dims,
                                const SlidingWindowConfig& config, const PatchPredictor& predict);

}  // namespace spine
