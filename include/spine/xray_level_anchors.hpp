// Level anchors on frontal radiographs (models/xray-level-anchors.pt): which vertebra lies
// at each end of the first stage's chain, and the chain re-counted when the ends are
// elsewhere. The first stage names T1..L5 from the whole film at low resolution and counts
// one level off on about a quarter of the AASCE validation films, most often with L5 on the
// sacrum or T1 on C7; the levels are fixed by what lies at the ends (the sacrum below L5,
// the neck above T1), so a second look there, at full working resolution, re-counts.
#pragma once
#include <array>
#include <string>
#include <vector>

#include "spine/cobb.hpp"
#include "spine/model.hpp"
#include "spine/tensor.hpp"

namespace spine {

// Anchor crops (scripts/cobb/anchors.py): per point, a 128 x 160 (W x H) grid centred on
// it in the 1024 x 512 working image (row-major floats, `working`), pixel spacing
// s = spacing / 22 working pixels (clamped to 0.3..6), bilinear with zero padding, z-scored
// per crop. Returns [n, 1, 160, 128].
Tensor xray_anchor_crops(const std::vector<float>& working, const std::vector<Point2>& centres,
                         const std::vector<double>& spacings);

// The anchors' log-probabilities at three points of one end of the chain, over that end's
// five classes: at the top the points are the extrapolated place above T1, T1 and T2 and the
// classes C6, C7, T1, T2, T3; at the bottom L4, L5 and the extrapolated place below L5, and
// the classes L3, L4, L5, S1, S2.
struct ChainEndEvidence {
  std::array<std::array<double, 5>, 3> log_p{};
};

struct LevelRecount {
  std::vector<Point2> centres;     // 17, T1..L5 after the re-count, in the input's units
  std::vector<int> source;         // per vertebra: index in the input chain, -1 placed by the re-count
  // Where the true T1 / L5 lie relative to the chain's (+1: one vertebra lower), as decided;
  // 0 when the end is kept.
  int top_shift = 0, bottom_shift = 0;
  // What lies at the chain's T1 and L5 in the anchors' most probable reading, and its
  // posterior probability (uniform prior over the three readings of each end).
  std::string top_reading = "T1", bottom_reading = "L5";
  double top_posterior = 1, bottom_posterior = 1;
  std::string change;              // what the re-count did, empty when the chain was kept
  std::vector<std::string> flags;  // a count the anchors doubt but could not settle
};

// Re-counts a top-to-bottom chain of 17 centres from the evidence at its two ends. An end
// moves only when its most probable reading has a posterior >= min_posterior. When the
// decided ends leave vertebrae missing between them (at most two, as each end is off by at
// most one), each is inserted in turn midway in the chain's widest gap (the whole chain's,
// before a point beyond T1..L5 at either end is cut off), provided that gap
// is at least 1.5 times what a straight line through the other gaps predicts there
// (vertebrae grow down the spine; a skipped vertebra leaves about twice); one too many
// drops, in turn, the inner point whose two gaps add up to at most 1.5 times the trend.
// Where no such gap or point is found the chain is kept and the doubt flagged. A reading
// short of min_posterior keeps its end, unflagged (the reading is in the result), and so
// does a chain that does not run top to bottom.
LevelRecount recount_chain(const std::vector<Point2>& centres, const ChainEndEvidence& top,
                           const ChainEndEvidence& bottom, double min_posterior = 0.8);

class XrayLevelAnchors {
 public:
  // Checks the card's crop contract.
  explicit XrayLevelAnchors(const Model& model);
  // `working`: the 1024 x 512 working image; `centres`: the chain's 17 centres in its pixels.
  // flip_averaging: average with the mirrored crops' logits.
  LevelRecount recount(const std::vector<float>& working, const std::vector<Point2>& centres,
                       bool flip_averaging, double min_posterior = 0.8) const;

 private:
  const Model& model_;
};

}  // namespace spine
