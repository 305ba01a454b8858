// Spacing check: the names held against the positions, with the real-CT spacing of each
// pair of levels (ct-vertebra-keypoints) as the reference.
#include <algorithm>
#include <cmath>
#include <sstream>

#include "phantom/anatomy_stats.hpp"
#include "spine/spine_seg.hpp"

namespace spine {

namespace {

std::string whole_percent(double ratio) { return std::to_string(static_cast<int>(std::lround(100 * ratio))) + " %"; }

}  // namespace

std::vector<std::string> vertebra_spacing_flags(const std::vector<IdentifiedVertebra>& vertebrae) {
  struct Gap {
    std::string names;
    double distance_mm, ratio;
  };
  std::vector<Gap> gaps;
  using anatomy::kRealCtLevels;
  constexpr int kLevels = anatomy::kRealCtLevelCount;
  for (std::size_t i = 0; i + 1 < vertebrae.size(); ++i) {
    const auto& a = vertebrae[i];
    const auto& b = vertebrae[i + 1];
    // A vertebra cut at its side (a tight left-right crop) keeps its head-foot centroid; one
    // cut at its top or bottom does not.
    if (a.cut_head_foot || b.cut_head_foot || b.label != a.label + 1) continue;
    if (a.label < 1 || a.label > kLevels) continue;
    const double expected = kRealCtLevels[a.label - 1].spacing;
    if (expected <= 0) continue;  // no prior (L5 to the sacrum)
    const double d = std::hypot(b.centroid_lps_mm[0] - a.centroid_lps_mm[0], b.centroid_lps_mm[1] - a.centroid_lps_mm[1],
                                b.centroid_lps_mm[2] - a.centroid_lps_mm[2]);
    gaps.push_back({a.name + "/" + b.name, d, d / expected});
  }
  std::vector<std::string> flags;
  if (gaps.size() < 2) return flags;
  std::vector<double> ratios;
  for (const auto& g : gaps) ratios.push_back(g.ratio);
  std::sort(ratios.begin(), ratios.end());
  const std::size_t m = ratios.size();
  const double scale = m % 2 ? ratios[m / 2] : (ratios[m / 2 - 1] + ratios[m / 2]) / 2;
  if (scale < 0.7 || scale > 1.4) {
    flags.push_back("vertebra spacing does not fit the names: centres " + whole_percent(scale) +
                    " of the typical distance for these levels (real CT: 80-122 %); the names or the vertebra "
                    "instances are likely wrong");
    return flags;
  }
  for (const auto& g : gaps) {
    const double rel = g.ratio / scale;
    if (rel < 0.6 || rel > 1.6) {
      std::ostringstream f;
      f.setf(std::ios::fixed);
      f.precision(0);
      f << "irregular vertebra spacing at " << g.names << ": centres " << g.distance_mm << " mm apart, "
        << whole_percent(rel) << " of the spacing elsewhere in this spine"
        << (rel < 1 ? " (a vertebra split in two?)" : " (a vertebra missed between them?)");
      flags.push_back(f.str());
    }
  }
  return flags;
}

}  // namespace spine
