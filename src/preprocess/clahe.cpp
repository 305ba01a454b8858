// Classic contrast-limited adaptive histogram equalisation (Zuiderveld 1994) in 2D and
// 3D: per-tile clipped histograms, redistribution of the excess, and bi/trilinear
// interpolation between the mappings of the nearest tile centres.
#include <algorithm>
#include <cmath>

#include "spine/error.hpp"
#include "spine/preprocess.hpp"

namespace spine {
namespace {

// Clips a histogram at `limit` counts and spreads the excess evenly (remainder spread
// with a stride, as in Zuiderveld's reference code), then turns it into a mapping.
std::vector<float> tile_mapping(std::vector<std::uint32_t>& hist, std::uint64_t count,
                                double clip_limit) {
  const int bins = static_cast<int>(hist.size());
  if (clip_limit > 0) {
    const auto limit = std::max<std::uint64_t>(
        1, static_cast<std::uint64_t>(clip_limit * static_cast<double>(count) / bins));
    std::uint64_t excess = 0;
    for (auto& h : hist) {
      if (h > limit) {
        excess += h - limit;
        h = static_cast<std::uint32_t>(limit);
      }
    }
    const std::uint64_t per_bin = excess / bins;
    std::uint64_t remainder = excess % bins;
    for (auto& h : hist) h += static_cast<std::uint32_t>(per_bin);
    if (remainder > 0) {
      const int step = std::max<int>(1, bins / static_cast<int>(remainder));
      for (int b = 0; b < bins && remainder > 0; b += step, --remainder) ++hist[b];
    }
  }
  std::vector<float> lut(bins);
  std::uint64_t cdf = 0;
  const double scale = count > 0 ? double(bins - 1) / double(count) : 0.0;
  for (int b = 0; b < bins; ++b) {
    cdf += hist[b];
    lut[b] = static_cast<float>(cdf * scale);
  }
  return lut;
}

}  // namespace

FloatImage clahe(const FloatImage& image, const ClaheConfig& config) {
  const Geometry& g = image.geometry;
  const int dims = g.dimension;
  if (config.bins < 2 || config.bins > 65536) throw usage_error("CLAHE bins must be in 2..65536");
  if (config.clip_limit < 0) throw usage_error("CLAHE clip limit must be >= 0 (0 = no clipping)");
  std::array<int, 3> tiles{1, 1, 1};
  std::array<double, 3> tile_size{1, 1, 1};
  for (int a = 0; a < dims; ++a) {
    if (config.tiles[a] < 1) throw usage_error("CLAHE needs at least one tile per axis");
    tiles[a] = std::min<int>(config.tiles[a], static_cast<int>(g.size[a]));
    tile_size[a] = double(g.size[a]) / tiles[a];
  }
  const auto range = intensity_range(image);
  FloatImage out = image;
  if (!(range.max > range.min)) return out;  // constant image: nothing to equalise
  const int bins = config.bins;
  const double to_bin = (bins - 1) / double(range.max - range.min);

  std::vector<std::uint16_t> bin_of(image.voxels.size());
  for (std::size_t i = 0; i < bin_of.size(); ++i) {
    bin_of[i] = static_cast<std::uint16_t>(std::lround((image.voxels[i] - range.min) * to_bin));
  }

  // Tile index of each coordinate per axis.
  auto tile_of = [&](int a, std::size_t c) {
    return std::min<int>(tiles[a] - 1, static_cast<int>(c / tile_size[a]));
  };
  const int tile_count = tiles[0] * tiles[1] * tiles[2];
  std::vector<std::vector<std::uint32_t>> hists(tile_count, std::vector<std::uint32_t>(bins, 0));
  std::vector<std::uint64_t> counts(tile_count, 0);
  for (std::size_t z = 0; z < g.size[2]; ++z) {
    const int tz = tile_of(2, z);
    for (std::size_t y = 0; y < g.size[1]; ++y) {
      const int ty = tile_of(1, y);
      const std::size_t row = (z * g.size[1] + y) * g.size[0];
      for (std::size_t x = 0; x < g.size[0]; ++x) {
        const int t = (tz * tiles[1] + ty) * tiles[0] + tile_of(0, x);
        ++hists[t][bin_of[row + x]];
      }
    }
  }
  for (int t = 0; t < tile_count; ++t) {
    for (auto h : hists[t]) counts[t] += h;
  }
  std::vector<std::vector<float>> luts(tile_count);
  for (int t = 0; t < tile_count; ++t) luts[t] = tile_mapping(hists[t], counts[t], config.clip_limit);

  // Interpolation weights along each axis: the two nearest tile centres.
  struct AxisWeight {
    int t0, t1;
    float w1;
  };
  std::array<std::vector<AxisWeight>, 3> axis_weights;
  for (int a = 0; a < 3; ++a) {
    axis_weights[a].resize(g.size[a]);
    for (std::size_t c = 0; c < g.size[a]; ++c) {
      const double f = (c + 0.5) / tile_size[a] - 0.5;
      int t0 = static_cast<int>(std::floor(f));
      float w1 = static_cast<float>(f - t0);
      int t1 = t0 + 1;
      if (t0 < 0) { t0 = 0; t1 = 0; w1 = 0; }
      if (t1 > tiles[a] - 1) { t1 = tiles[a] - 1; t0 = std::min(t0, t1); if (t0 == t1) w1 = 0; }
      axis_weights[a][c] = {t0, t1, w1};
    }
  }

  const float from_bin = (range.max - range.min) / float(bins - 1);
  for (std::size_t z = 0; z < g.size[2]; ++z) {
    const auto wz = axis_weights[2][z];
    for (std::size_t y = 0; y < g.size[1]; ++y) {
      const auto wy = axis_weights[1][y];
      const std::size_t row = (z * g.size[1] + y) * g.size[0];
      for (std::size_t x = 0; x < g.size[0]; ++x) {
        const auto wx = axis_weights[0][x];
        const std::uint16_t b = bin_of[row + x];
        auto lut = [&](int tz, int ty, int tx) { return luts[(tz * tiles[1] + ty) * tiles[0] + tx][b]; };
        auto plane = [&](int tz) {
          const float top = lut(tz, wy.t0, wx.t0) * (1 - wx.w1) + lut(tz, wy.t0, wx.t1) * wx.w1;
          const float bottom = lut(tz, wy.t1, wx.t0) * (1 - wx.w1) + lut(tz, wy.t1, wx.t1) * wx.w1;
          return top * (1 - wy.w1) + bottom * wy.w1;
        };
        const float mapped =
            wz.w1 == 0 ? plane(wz.t0) : plane(wz.t0) * (1 - wz.w1) + plane(wz.t1) * wz.w1;
        out.voxels[row + x] = range.min + mapped * from_bin;
      }
    }
  }
  return out;
}

}  // namespace spine
