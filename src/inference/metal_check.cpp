// Metal check: implants beside the vertebrae of a CT, which the CT model never saw.
#include <algorithm>
#include <array>
#include <cstdint>
#include <cmath>
#include <map>
#include <set>

#include <fmt/format.h>

#include "spine/spine_seg.hpp"

namespace spine {

std::vector<std::string> metal_flags(const FloatImage& ct, const LabelImage& labels,
                                     const std::vector<IdentifiedVertebra>& vertebrae) {
  const Geometry& g = ct.geometry;
  if (vertebrae.empty() || labels.voxels.size() != ct.voxels.size()) return {};
  // Whether a label value is a named vertebra's: one look-up per voxel of a whole CT.
  std::vector<char> named(65536, 0);
  auto is_named = [&](std::int16_t v) { return named[static_cast<std::uint16_t>(v)] != 0; };
  for (const auto& v : vertebrae) named[static_cast<std::uint16_t>(v.label)] = 1;
  const long n[3] = {static_cast<long>(g.size[0]), static_cast<long>(g.size[1]), static_cast<long>(g.size[2])};
  long reach[3];
  for (int a = 0; a < 3; ++a) reach[a] = static_cast<long>(std::ceil(kMetalReachMm / g.spacing[a]));
  // Only metal within reach of the vertebrae's bounding box can be beside one: a hip
  // prosthesis or a dense object elsewhere costs one comparison per voxel.
  long lo[3] = {n[0], n[1], n[2]}, hi[3] = {-1, -1, -1};
  std::size_t at = 0;
  for (long z = 0; z < n[2]; ++z)
    for (long y = 0; y < n[1]; ++y)
      for (long x = 0; x < n[0]; ++x, ++at)
        if (is_named(labels.voxels[at])) {
          const long p[3] = {x, y, z};
          for (int a = 0; a < 3; ++a) lo[a] = std::min(lo[a], p[a] - reach[a]), hi[a] = std::max(hi[a], p[a] + reach[a]);
        }
  if (hi[0] < 0) return {};
  std::vector<std::array<long, 3>> ball;  // voxel offsets within kMetalReachMm
  for (long dz = -reach[2]; dz <= reach[2]; ++dz)
    for (long dy = -reach[1]; dy <= reach[1]; ++dy)
      for (long dx = -reach[0]; dx <= reach[0]; ++dx)
        if (std::hypot(dx * g.spacing[0], dy * g.spacing[1], dz * g.spacing[2]) <= kMetalReachMm) ball.push_back({dx, dy, dz});
  const double voxel_ml = g.spacing[0] * g.spacing[1] * g.spacing[2] / 1000.0;
  std::map<int, double> metal_ml;  // per vertebra, the metal within reach of it
  for (long z = std::max(0L, lo[2]); z <= std::min(n[2] - 1, hi[2]); ++z)
    for (long y = std::max(0L, lo[1]); y <= std::min(n[1] - 1, hi[1]); ++y)
      for (long x = std::max(0L, lo[0]); x <= std::min(n[0] - 1, hi[0]); ++x) {
        if (ct.voxels[static_cast<std::size_t>((z * n[1] + y) * n[0] + x)] < kMetalHu) continue;
        std::set<int> near;
        for (const auto& d : ball) {
          const long xx = x + d[0], yy = y + d[1], zz = z + d[2];
          if (xx < 0 || yy < 0 || zz < 0 || xx >= n[0] || yy >= n[1] || zz >= n[2]) continue;
          const std::int16_t v = labels.voxels[static_cast<std::size_t>((zz * n[1] + yy) * n[0] + xx)];
          if (is_named(v)) near.insert(v);
        }
        for (int v : near) metal_ml[v] += voxel_ml;
      }
  std::string which;
  double most = 0;
  for (const auto& v : vertebrae) {
    const auto it = metal_ml.find(v.label);
    if (it == metal_ml.end() || it->second < 0.05) continue;
    which += (which.empty() ? "" : ", ") + v.name;
    most = std::max(most, it->second);
  }
  if (which.empty()) return {};
  return {fmt::format("metal beside {} (up to {:.2f} ml of {:g} HU or more within {:g} mm of a vertebra): screws, rods "
                      "or cement, which the CT model has never seen; outlines and names there are not reliable",
                      which, most, kMetalHu, kMetalReachMm)};
}

}  // namespace spine
