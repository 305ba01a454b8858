// Genant's semi-quantitative vertebral fracture grade from the body's height ratios.
//
// Genant et al. (J Bone Miner Res 1993) grade by the visually estimated loss of anterior,
// middle or posterior height: under 20 % normal, 20-25 % mild, 25-40 % moderate, over
// 40 % severe. The type follows the height that is lost: the anterior one (wedge), the
// middle one (biconcave: both endplates dished), or the posterior one too (crush), which
// within one vertebra shows only against its neighbours.
#include <algorithm>

#include "spine/measure.hpp"

namespace spine {

GenantGrade genant_grade(double anterior, double middle, double posterior, double expected_posterior) {
  GenantGrade g;
  g.type = "none";
  if (!(posterior > 0)) return g;
  const double wedge = 1 - anterior / posterior;
  const double biconcave = 1 - middle / posterior;
  const double crush = expected_posterior > 0 ? 1 - posterior / expected_posterior : 0;
  g.reduction = std::max({wedge, biconcave, crush, 0.0});
  if (g.reduction < 0.20) return g;
  g.grade = g.reduction <= 0.25 ? 1 : (g.reduction <= 0.40 ? 2 : 3);
  g.type = g.reduction == crush ? "crush" : (g.reduction == biconcave ? "biconcave" : "wedge");
  return g;
}

}  // namespace spine
