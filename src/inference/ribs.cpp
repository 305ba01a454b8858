// Rib evidence per vertebra candidate: bone beside it, outside the vertebra segmentation,
// on either side at its own height (see ribs.hpp).
#include "inference/ribs.hpp"

#include <algorithm>
#include <cmath>

#include "spine/log.hpp"
#include "spine/preprocess.hpp"

namespace spine {

std::vector<RibEvidence> rib_evidence(const FloatImage& hu, const std::vector<RibProbe>& candidates,
                                      const std::function<bool(const std::array<double, 3>&)>& is_vertebra,
                                      const RibRules& rules) {
  // Read along the canonical axes through a view: a whole CT is not copied for this.
  const Reorientation canonical = reorientation(hu.geometry, "IPR");
  const Geometry& g = canonical.geometry;
  std::vector<RibEvidence> out;
  // Samples on a 1 mm lattice in the canonical axes around each candidate; each stands for
  // 1 mm^3 of tissue.
  constexpr double kStep = 1.0;
  for (const auto& c : candidates) {
    const auto centre = g.lps_to_index(c.centre_lps);
    const double half_h = rules.central_height * c.height_mm / 2;
    double bone_ml[2] = {0, 0};
    std::size_t inside[2] = {0, 0}, total[2] = {0, 0};
    for (int side = 0; side < 2; ++side) {
      const double sign = side == 0 ? 1.0 : -1.0;  // +z: patient right
      for (double dx = -half_h; dx <= half_h; dx += kStep)
        for (double dy = -rules.anterior_mm; dy <= rules.posterior_mm; dy += kStep)
          for (double dz = rules.lateral_from_mm; dz <= rules.lateral_to_mm; dz += kStep) {
            ++total[side];
            const double i = centre[0] + dx / g.spacing[0], j = centre[1] + dy / g.spacing[1],
                         k = centre[2] + sign * dz / g.spacing[2];
            const auto ii = std::lround(i), jj = std::lround(j), kk = std::lround(k);
            if (ii < 0 || jj < 0 || kk < 0 || ii >= static_cast<long>(g.size[0]) ||
                jj >= static_cast<long>(g.size[1]) || kk >= static_cast<long>(g.size[2]))
              continue;
            ++inside[side];
            if (hu.voxels[canonical.offset(static_cast<std::size_t>(ii), static_cast<std::size_t>(jj),
                                           static_cast<std::size_t>(kk))] < rules.bone_hu)
              continue;
            if (is_vertebra(g.index_to_lps(i, j, k))) continue;
            bone_ml[side] += kStep * kStep * kStep / 1000.0;
          }
    }
    log::debug("rib check {}: bone beside it {:.2f} ml right{}, {:.2f} ml left{}", out.size(), bone_ml[0],
               2 * inside[0] < total[0] ? " (not seen)" : "", bone_ml[1], 2 * inside[1] < total[1] ? " (not seen)" : "");
    bool seen_any = false, rib = false, clear = true;
    for (int side = 0; side < 2; ++side) {
      if (2 * inside[side] < total[side]) continue;  // mostly outside the field of view
      seen_any = true;
      if (bone_ml[side] >= rules.rib_ml) rib = true;
      if (bone_ml[side] > rules.none_ml) clear = false;
    }
    out.push_back(!seen_any ? RibEvidence::kUnknown
                            : rib ? RibEvidence::kRibs : clear ? RibEvidence::kNone : RibEvidence::kUnknown);
  }
  return out;
}

}  // namespace spine
