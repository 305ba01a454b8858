// Rib evidence per vertebra candidate on CT (internal to spine-seg): whether bone that is
// not vertebra lies where a rib leaves its vertebra. The lowest rib-bearing vertebra is
// T12, which fixes the levels on CT where the level model alone is unsure.
#pragma once
#include <array>
#include <cstdint>
#include <functional>
#include <vector>

#include "spine/image.hpp"
#include "spine/spine_seg.hpp"

namespace spine {

struct RibProbe {
  std::array<double, 3> centre_lps{0, 0, 0};  // the candidate's centroid
  double height_mm = 0;                       // its head-foot extent
};

struct RibRules {
  double bone_hu = 200;          // cortical and rib bone at about 1 mm
  // Beyond the lumbar transverse processes (at most about 50 mm from the midline; on the
  // real CT crops bone 35-50 mm out that the segmentation missed was their tips), where a
  // rib runs toward its angle at about its vertebra's height.
  double lateral_from_mm = 50;
  double lateral_to_mm = 75;
  double anterior_mm = 10;       // AP band around the candidate's centroid: the rib necks lie
  double posterior_mm = 40;      // beside the pedicles and transverse processes, behind the body
  double central_height = 0.6;   // the middle part of the candidate's height (ribs slope down)
  double rib_ml = 0.15;          // bone on one side that counts as a rib
  double none_ml = 0.03;         // at most this on every visible side counts as none
};

// `hu`: the CT in HU, in any orientation; it is sampled along the canonical axes (IPR:
// x inferior, y posterior, z patient right). `is_vertebra(lps)`: whether the segmentation
// put a vertebra there (bone the model took as vertebra is not a rib). A side more than
// half outside the image is not seen.
std::vector<RibEvidence> rib_evidence(const FloatImage& hu, const std::vector<RibProbe>& candidates,
                                      const std::function<bool(const std::array<double, 3>&)>& is_vertebra,
                                      const RibRules& rules = {});

}  // namespace spine
