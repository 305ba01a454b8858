// Sliding-window inference: the model only ever sees patches, predictions are blended
// with centre-weighted (Gaussian) importance, and only the region of interest is kept.
#include "spine/sliding_window.hpp"

#include <algorithm>
#include <cmath>
#include <string>

#include "spine/error.hpp"

namespace spine {
namespace {

struct Window {
  std::array<std::int64_t, 3> start;  // x, y, z in image voxels (may be < 0: padding)
};

std::vector<std::int64_t> window_starts(std::int64_t begin, std::int64_t end, std::int64_t patch,
                                        double overlap) {
  const std::int64_t extent = end - begin;
  if (extent <= patch) return {begin - (patch - extent) / 2};
  const auto step = std::max<std::int64_t>(1, static_cast<std::int64_t>(std::floor(patch * (1 - overlap))));
  const std::int64_t n = (extent - patch + step - 1) / step + 1;
  std::vector<std::int64_t> starts(n);
  // Evenly spread so the first window starts at `begin` and the last ends at `end`.
  for (std::int64_t i = 0; i < n; ++i) {
    starts[i] = begin + static_cast<std::int64_t>(std::llround(double(extent - patch) * i / double(n - 1)));
  }
  return starts;
}

std::vector<float> importance_map(const std::array<std::int64_t, 3>& p, int dims, bool gaussian) {
  std::vector<float> w(p[0] * p[1] * p[2], 1.f);
  if (!gaussian) return w;
  std::array<std::vector<double>, 3> axis;
  for (int a = 0; a < 3; ++a) {
    axis[a].assign(p[a], 1.0);
    if (a >= dims) continue;
    const double sigma = p[a] / 8.0;
    const double c = (p[a] - 1) / 2.0;
    for (std::int64_t i = 0; i < p[a]; ++i) axis[a][i] = std::exp(-0.5 * (i - c) * (i - c) / (sigma * sigma));
  }
  for (std::int64_t z = 0; z < p[2]; ++z)
    for (std::int64_t y = 0; y < p[1]; ++y)
      for (std::int64_t x = 0; x < p[0]; ++x) {
        // A floor keeps border voxels covered by a single window from dividing by ~0.
        w[(z * p[1] + y) * p[0] + x] =
            static_cast<float>(std::max(axis[0][x] * axis[1][y] * axis[2][z], 1e-3));
      }
  return w;
}

// Flips the spatial axes selected by `mask` (bit 0 = x, 1 = y, 2 = z) of a
// [channels, pz, py, px] block in place.
void flip_block(float* data, std::int64_t channels, const std::array<std::int64_t, 3>& p, int mask) {
  if (mask == 0) return;
  const std::int64_t n = p[0] * p[1] * p[2];
  std::vector<float> tmp(n);
  for (std::int64_t c = 0; c < channels; ++c) {
    float* block = data + c * n;
    for (std::int64_t z = 0; z < p[2]; ++z)
      for (std::int64_t y = 0; y < p[1]; ++y)
        for (std::int64_t x = 0; x < p[0]; ++x) {
          const std::int64_t sx = (mask & 1) ? p[0] - 1 - x : x;
          const std::int64_t sy = (mask & 2) ? p[1] - 1 - y : y;
          const std::int64_t sz = (mask & 4) ? p[2] - 1 - z : z;
          tmp[(z * p[1] + y) * p[0] + x] = block[(sz * p[1] + sy) * p[0] + sx];
        }
    std::copy(tmp.begin(), tmp.end(), block);
  }
}

}  // namespace

Tensor sliding_window_inference(const Tensor& input, int dims, const SlidingWindowConfig& cfg,
                                const PatchPredictor& predict) {
  if (dims != 2 && dims != 3) throw internal_error("sliding window: spatial_dims must be 2 or 3");
  if (static_cast<int>(input.shape.size()) != dims + 1)
    throw internal_error("sliding window: input must be [C, spatial...]");
  if (!(cfg.overlap >= 0 && cfg.overlap < 1)) throw usage_error("sliding window overlap must be in [0, 1)");
  if (cfg.batch_size < 1) throw usage_error("sliding window batch size must be >= 1");
  const std::int64_t channels = input.shape[0];
  const std::array<std::int64_t, 3> size{input.shape[dims], input.shape[dims - 1],
                                         dims == 3 ? input.shape[1] : 1};
  std::array<std::int64_t, 3> patch = cfg.patch;
  if (dims == 2) patch[2] = 1;
  for (int a = 0; a < 3; ++a) {
    if (patch[a] < 1) throw usage_error("sliding window patch sizes must be positive");
  }
  VoxelBox roi{{0, 0, 0}, size};
  if (cfg.roi) {
    roi = *cfg.roi;
    if (dims == 2) roi.begin[2] = 0, roi.end[2] = 1;
    for (int a = 0; a < 3; ++a) {
      roi.begin[a] = std::clamp<std::int64_t>(roi.begin[a], 0, size[a]);
      roi.end[a] = std::clamp<std::int64_t>(roi.end[a], roi.begin[a], size[a]);
      if (roi.end[a] == roi.begin[a]) throw input_error("sliding window: empty region of interest");
    }
  }
  const std::array<std::int64_t, 3> rs{roi.end[0] - roi.begin[0], roi.end[1] - roi.begin[1],
                                       roi.end[2] - roi.begin[2]};

  std::vector<Window> windows;
  const auto sx = window_starts(roi.begin[0], roi.end[0], patch[0], cfg.overlap);
  const auto sy = window_starts(roi.begin[1], roi.end[1], patch[1], cfg.overlap);
  const auto sz = window_starts(roi.begin[2], roi.end[2], patch[2], cfg.overlap);
  for (auto z : sz)
    for (auto y : sy)
      for (auto x : sx) windows.push_back({{x, y, z}});

  const auto importance = importance_map(patch, dims, cfg.gaussian_weighting);
  const std::int64_t patch_voxels = patch[0] * patch[1] * patch[2];
  const int flips = cfg.mirror ? (1 << dims) : 1;

  std::vector<float> weight_sum(rs[0] * rs[1] * rs[2], 0.f);
  std::vector<float> accum;  // allocated once the output channel count is known
  std::int64_t out_channels = -1;

  std::vector<std::int64_t> batch_shape{0, channels};
  if (dims == 3) batch_shape.push_back(patch[2]);
  batch_shape.push_back(patch[1]);
  batch_shape.push_back(patch[0]);

  // Each batch entry is one (window, flip) pair.
  std::vector<std::pair<std::size_t, int>> pending;
  auto flush = [&]() {
    if (pending.empty()) return;
    Tensor batch;
    batch.shape = batch_shape;
    batch.shape[0] = static_cast<std::int64_t>(pending.size());
    batch.data.assign(batch.shape[0] * channels * patch_voxels, 0.f);
    for (std::size_t b = 0; b < pending.size(); ++b) {
      const auto& w = windows[pending[b].first];
      float* dst = batch.data.data() + b * channels * patch_voxels;
      for (std::int64_t c = 0; c < channels; ++c)
        for (std::int64_t z = 0; z < patch[2]; ++z) {
          const std::int64_t iz = w.start[2] + z;
          if (iz < 0 || iz >= size[2]) continue;
          for (std::int64_t y = 0; y < patch[1]; ++y) {
            const std::int64_t iy = w.start[1] + y;
            if (iy < 0 || iy >= size[1]) continue;
            const float* src = input.data.data() + ((c * size[2] + iz) * size[1] + iy) * size[0];
            float* row = dst + (c * patch[2] * patch[1] + z * patch[1] + y) * patch[0];
            for (std::int64_t x = 0; x < patch[0]; ++x) {
              const std::int64_t ix = w.start[0] + x;
              if (ix >= 0 && ix < size[0]) row[x] = src[ix];
            }
          }
        }
      flip_block(dst, channels, patch, pending[b].second);
    }
    Tensor pred = predict(batch);
    if (pred.shape.size() != batch.shape.size() || pred.shape[0] != batch.shape[0])
      throw model_error("model output shape does not match its input batch");
    for (std::size_t d = 2; d < pred.shape.size(); ++d) {
      if (pred.shape[d] != batch.shape[d])
        throw model_error("model output is not the size of its input patch (not fully convolutional?)");
    }
    if (out_channels < 0) {
      out_channels = pred.shape[1];
      accum.assign(out_channels * rs[0] * rs[1] * rs[2], 0.f);
    } else if (pred.shape[1] != out_channels) {
      throw model_error("model output channel count changed between batches");
    }
    const float flip_share = 1.f / flips;
    for (std::size_t b = 0; b < pending.size(); ++b) {
      const auto& w = windows[pending[b].first];
      float* p = pred.data.data() + b * out_channels * patch_voxels;
      flip_block(p, out_channels, patch, pending[b].second);
      const bool count_weight = pending[b].second == 0;
      for (std::int64_t z = 0; z < patch[2]; ++z) {
        const std::int64_t oz = w.start[2] + z - roi.begin[2];
        if (oz < 0 || oz >= rs[2]) continue;
        for (std::int64_t y = 0; y < patch[1]; ++y) {
          const std::int64_t oy = w.start[1] + y - roi.begin[1];
          if (oy < 0 || oy >= rs[1]) continue;
          for (std::int64_t x = 0; x < patch[0]; ++x) {
            const std::int64_t ox = w.start[0] + x - roi.begin[0];
            if (ox < 0 || ox >= rs[0]) continue;
            const std::int64_t pi = (z * patch[1] + y) * patch[0] + x;
            const std::int64_t oi = (oz * rs[1] + oy) * rs[0] + ox;
            const float wgt = importance[pi];
            if (count_weight) weight_sum[oi] += wgt;
            for (std::int64_t k = 0; k < out_channels; ++k) {
              accum[k * weight_sum.size() + oi] += wgt * flip_share * p[k * patch_voxels + pi];
            }
          }
        }
      }
    }
    pending.clear();
  };

  for (std::size_t wi = 0; wi < windows.size(); ++wi) {
    for (int f = 0; f < flips; ++f) {
      pending.emplace_back(wi, f);
      if (static_cast<int>(pending.size()) >= cfg.batch_size) flush();
    }
  }
  flush();

  Tensor out;
  out.shape = {out_channels};
  if (dims == 3) out.shape.push_back(rs[2]);
  out.shape.push_back(rs[1]);
  out.shape.push_back(rs[0]);
  out.data = std::move(accum);
  const std::size_t n = weight_sum.size();
  for (std::int64_t k = 0; k < out_channels; ++k)
    for (std::size_t i = 0; i < n; ++i) out.data[k * n + i] /= weight_sum[i];
  return out;
}

}  // namespace spine
