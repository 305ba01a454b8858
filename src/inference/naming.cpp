// Names of vertebra instances: the consecutive run of the normal sequence that the level
// model supports best, its probability, and transitional anatomy flagged (never renamed).
#include <algorithm>
#include <cmath>
#include <sstream>

#include "spine/error.hpp"
#include "spine/labels.hpp"
#include "spine/spine_seg.hpp"

namespace spine {

// The normal cranio-caudal sequence C1..C7, T1..T12, L1..L5, S (transitional levels
// are never produced by the sequence: they are flagged instead).
std::vector<int> normal_sequence() {
  std::vector<int> seq;
  for (int v = label::kC1; v <= label::kL5; ++v) seq.push_back(v);
  seq.push_back(label::kSacrum);
  return seq;
}

namespace {

// log q(instance, label): the model's probability, or for a label beyond the model's
// classes the nearest end class's probability with a penalty per level beyond it.
double level_log_prob(const std::vector<double>& probs, const std::vector<int>& classes, int label) {
  const auto seq = normal_sequence();
  auto rank = [&](int v) { return static_cast<int>(std::find(seq.begin(), seq.end(), v) - seq.begin()); };
  const auto it = std::find(classes.begin(), classes.end(), label);
  double p = 0;
  if (it != classes.end()) {
    p = probs[static_cast<std::size_t>(it - classes.begin())];
  } else {
    const int r = rank(label), first = rank(classes.front()), last = rank(classes.back());
    if (r < first) p = probs.front() * std::pow(0.3, first - r);
    else if (r > last) p = probs.back() * std::pow(0.3, r - last);
    else p = 1e-4;  // a gap in the classes
  }
  return std::log(std::max(p, 1e-4));
}

struct OffsetScores {
  std::vector<double> score;  // per start rank
  int best = 0;
};

OffsetScores score_offsets(const std::vector<std::vector<double>>& probs, std::size_t begin, std::size_t end,
                           const std::vector<int>& classes) {
  const auto seq = normal_sequence();
  const int n = static_cast<int>(end - begin);
  OffsetScores s;
  const int starts = static_cast<int>(seq.size()) - n + 1;
  for (int r0 = 0; r0 < std::max(starts, 0); ++r0) {
    double total = 0;
    for (int i = 0; i < n; ++i) total += level_log_prob(probs[begin + i], classes, seq[r0 + i]);
    s.score.push_back(total);
  }
  s.best = static_cast<int>(std::max_element(s.score.begin(), s.score.end()) - s.score.begin());
  return s;
}

}  // namespace

SequenceNaming name_vertebra_sequence(const std::vector<std::vector<double>>& level_probs,
                                      const std::vector<int>& level_labels, const std::vector<RibEvidence>& ribs,
                                      const std::vector<double>& volumes_ml) {
  SequenceNaming out;
  const std::size_t n = level_probs.size();
  if (n == 0) return out;
  const auto seq = normal_sequence();
  if (n > seq.size()) throw input_error("more vertebra candidates (" + std::to_string(n) + ") than a spine has");
  // The hypotheses: every offset of the consecutive sequence, and, where the model knows
  // the sacrum, the sequence ending in L5 followed by 2..kMaxSacrumPieces candidates that
  // are all sacrum. The sacrum is one bone of five fused segments; a segmentation that
  // breaks it (S1 apart from S2..S5) must not turn its pieces into levels, which would
  // push every name above one level up.
  constexpr std::size_t kMaxSacrumPieces = 4;
  struct Hypothesis {
    double score;
    int start;                 // rank of the first name
    std::size_t sacrum_pieces;  // trailing candidates named S (0: plain consecutive)
    int piece = -1, piece_of = -1;  // a candidate named as its neighbour (piece_of = piece -+ 1)
  };
  std::vector<Hypothesis> hyps;
  const OffsetScores all = score_offsets(level_probs, 0, n, level_labels);
  for (std::size_t r = 0; r < all.score.size(); ++r) hyps.push_back({all.score[r], static_cast<int>(r), 0});
  auto label_of = [&](const Hypothesis& h, std::size_t i) {
    if (h.piece >= 0) {  // the piece takes its neighbour's name; the others are consecutive around it
      const auto k = i == static_cast<std::size_t>(h.piece) ? static_cast<std::size_t>(h.piece_of) : i;
      return seq[static_cast<std::size_t>(h.start) + k - (k > static_cast<std::size_t>(h.piece) ? 1 : 0)];
    }
    return i < n - h.sacrum_pieces ? seq[static_cast<std::size_t>(h.start) + i] : label::kSacrum;
  };
  // A candidate between two others, under half the volume of each, may be a piece of one.
  // With it left out the rest are consecutive: n - 1 names from each start.
  if (volumes_ml.size() == n && n >= 3)
    for (std::size_t i = 1; i + 1 < n; ++i) {
      if (!(volumes_ml[i] < 0.5 * std::min(volumes_ml[i - 1], volumes_ml[i + 1]))) continue;
      for (int r0 = 0; r0 + static_cast<int>(n) - 1 <= static_cast<int>(seq.size()); ++r0)
        for (const int of : {static_cast<int>(i) - 1, static_cast<int>(i) + 1}) {
          Hypothesis h{std::log(kPiecePrior), r0, 0, static_cast<int>(i), of};
          for (std::size_t j = 0; j < n; ++j) h.score += level_log_prob(level_probs[j], level_labels, label_of(h, j));
          hyps.push_back(h);
        }
    }
  const bool knows_sacrum =
      std::find(level_labels.begin(), level_labels.end(), static_cast<int>(label::kSacrum)) != level_labels.end();
  const int rank_l5 = static_cast<int>(std::find(seq.begin(), seq.end(), label::kL5) - seq.begin());
  if (knows_sacrum)
    for (std::size_t k = 2; k <= std::min(kMaxSacrumPieces, n - 1); ++k) {
      const std::size_t m = n - k;  // candidates up to and including L5
      if (static_cast<int>(m) > rank_l5 + 1) continue;
      double total = 0;
      for (std::size_t i = 0; i < m; ++i)
        total += level_log_prob(level_probs[i], level_labels, seq[rank_l5 + 1 - m + i]);
      for (std::size_t i = m; i < n; ++i) total += level_log_prob(level_probs[i], level_labels, label::kSacrum);
      hyps.push_back({total, rank_l5 + 1 - static_cast<int>(m), k});
    }
  auto by_score = [](const Hypothesis& a, const Hypothesis& b) { return a.score < b.score; };
  const Hypothesis level_model_best = *std::max_element(hyps.begin(), hyps.end(), by_score);
  // The ribs' anchor: where they are seen to end, the first time from the top (the iliac
  // wings beside L5 and the sacrum show as bone there too): a candidate with ribs, the next
  // without (or unclear), and the one after without. Its weight is that of evidence, not of
  // a rule: a 12th rib too short to be seen, 11 or 13 rib pairs and lumbar ribs are common
  // enough that the level model, when sure, keeps its names (and the conflict is flagged).
  int anchor = -1;
  if (ribs.size() == n)
    for (std::size_t i = 0; i + 1 < n && anchor < 0; ++i) {
      if (ribs[i] != RibEvidence::kRibs || ribs[i + 1] == RibEvidence::kRibs) continue;
      const RibEvidence after = i + 2 < n ? ribs[i + 2] : ribs[i + 1];
      if (after == RibEvidence::kNone) anchor = static_cast<int>(i);
    }
  if (anchor >= 0)
    for (auto& h : hyps) {
      const int lab = label_of(h, static_cast<std::size_t>(anchor));
      h.score += std::log(lab == label::kT12 ? 0.6 : (lab == label::kT11 || lab == label::kL1) ? 0.15 : 0.05);
    }
  out.lowest_rib_bearing = anchor;
  const auto best = *std::max_element(hyps.begin(), hyps.end(), by_score);
  double norm = 0;
  for (const auto& h : hyps) norm += std::exp(h.score - best.score);
  out.offset_probability = 1.0 / norm;
  const std::size_t named = n - best.sacrum_pieces;
  for (std::size_t i = 0; i < n; ++i) {
    const int lab = label_of(best, i);
    out.labels.push_back(lab);
    out.confidence.push_back(std::exp(level_log_prob(level_probs[i], level_labels, lab)) * out.offset_probability);
  }
  out.sacrum_pieces = best.sacrum_pieces;
  out.piece = best.piece;
  out.piece_of = best.piece_of;
  if (best.piece >= 0) {
    std::ostringstream f;
    f.precision(2);
    f << "a vertebra candidate under half the size of its neighbours was taken as a piece of "
      << label_name(out.labels[static_cast<std::size_t>(best.piece)])
      << " and merged with it (probability of the names " << out.offset_probability << ")";
    out.flags.push_back(f.str());
  }
  if (anchor >= 0) {
    const auto a = static_cast<std::size_t>(anchor);
    std::ostringstream f;
    f.precision(2);
    if (out.labels[a] != label::kT12) {
      f << "the lowest rib-bearing vertebra is named " << label_name(out.labels[a])
        << ", not T12: 11 or 13 rib pairs, a lumbar rib, a missed 12th rib, or names off by one (probability of "
           "the names "
        << out.offset_probability << ")";
      out.flags.push_back(f.str());
    } else if (label_of(level_model_best, a) != label::kT12) {
      f << "names anchored on the ribs (the lowest rib-bearing vertebra taken as T12); the level model alone named "
           "it "
        << label_name(label_of(level_model_best, a)) << " (probability of the names " << out.offset_probability
        << ")";
      out.flags.push_back(f.str());
    }
  }
  // On CT, what fixes the levels is the sacrum and where the ribs end. With neither in
  // view (a crop of a few lumbar or thoracic vertebrae), the names rest on how the
  // vertebrae look alone, which on real CT was one level off on such a crop with no other
  // sign: say so in the result.
  const bool sacrum_named = std::find(out.labels.begin(), out.labels.end(), static_cast<int>(label::kSacrum)) !=
                            out.labels.end();
  if (knows_sacrum && ribs.size() == n && anchor < 0 && !sacrum_named)
    out.flags.push_back(
        "vertebra names not anchored: neither the sacrum nor the end of the ribs is in view, so the names rest on "
        "the vertebrae's appearance alone (check the levels)");
  if (out.offset_probability < 0.6) {
    std::ostringstream f;
    f.precision(2);
    f << "vertebra names uncertain: the chosen sequence has probability " << out.offset_probability;
    out.flags.push_back(f.str());
  }
  // Transitional anatomy: the upper and lower halves (of the levels, the sacrum's pieces
  // left out), named on their own, disagree by one.
  if (named >= 4 && best.piece < 0) {
    const std::size_t m = named / 2;
    const OffsetScores whole = best.sacrum_pieces ? score_offsets(level_probs, 0, named, level_labels) : all;
    const OffsetScores up = score_offsets(level_probs, 0, m, level_labels);
    const OffsetScores low = score_offsets(level_probs, m, named, level_labels);
    const int expected = up.best + static_cast<int>(m);
    if (low.best == expected - 1 || low.best == expected + 1) {
      const double gain = (up.score[up.best] + low.score[low.best]) - whole.score[whole.best];
      const double p = 1.0 / (1.0 + std::exp(-gain));
      if (p > 0.5) {
        std::ostringstream f;
        f.precision(2);
        f << (low.best < expected ? "one vertebra more" : "one vertebra fewer") << " than the normal sequence between "
          << label_name(out.labels[m - 1]) << " and " << label_name(out.labels[m])
          << " fits the level model better (probability " << p
          << "): possible transitional anatomy (L6, T13, 11 rib pairs) or a missed/split vertebra; names follow the "
             "normal sequence";
        out.flags.push_back(f.str());
      }
    }
  }
  return out;
}

}  // namespace spine
