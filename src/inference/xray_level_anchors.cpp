// Level anchors on frontal radiographs: crops at the two ends of the first stage's chain,
// the anchor model's reading of each end, and the chain re-counted from them.
#include "spine/xray_level_anchors.hpp"

#include <algorithm>
#include <cmath>

#include "spine/error.hpp"
#include "heatmap.hpp"

namespace spine {

namespace {

constexpr int kCacheH = 1024, kCacheW = 512;
constexpr int kCropH = 160, kCropW = 128;
constexpr double kSpacingPx = 22.0, kScaleMin = 0.3, kScaleMax = 6.0;
constexpr int kClasses = 10;
// Where the extrapolated points lie, in units of the neighbouring gap: as the training
// crops place C7 above T1 and S1 below L5 (scripts/cobb/anchors.py).
constexpr double kAboveT1 = 0.9, kBelowL5 = 1.0;
constexpr double kSkipRatio = 1.5;
const char* const kTopNames[5] = {"C6", "C7", "T1", "T2", "T3"};
const char* const kBottomNames[5] = {"L3", "L4", "L5", "S1", "S2"};

Point2 lerp(Point2 a, Point2 b, double t) { return {a.x + t * (b.x - a.x), a.y + t * (b.y - a.y)}; }
double dist(Point2 a, Point2 b) { return std::hypot(b.x - a.x, b.y - a.y); }

// Posterior of the three readings of one end (shift -1, 0, +1) under a uniform prior.
// Reading s puts level (q - s) of the end's scale at point q: class 2 + q - s, with the
// points at q = -1, 0, +1 relative to the chain's end.
std::array<double, 3> posterior(const ChainEndEvidence& e) {
  std::array<double, 3> score{};
  for (int s = -1; s <= 1; ++s)
    for (int q = -1; q <= 1; ++q) score[s + 1] += e.log_p[q + 1][2 + q - s];
  const double top = *std::max_element(score.begin(), score.end());
  double sum = 0;
  for (double& v : score) sum += (v = std::exp(v - top));
  for (double& v : score) v /= sum;
  return score;
}

// Each gap as a ratio to what a least-squares line through the other gaps predicts at its
// place (vertebrae grow down the spine; leaving the gap itself out keeps an outlier from
// raising its own expectation). The first `outer_top` and last `outer_bottom` gaps, those
// to a point beyond T1..L5, get a ratio but do not shape the line: the first stage's point
// on the sacrum or C7 can sit anywhere on it.
std::vector<double> gap_ratios(const std::vector<Point2>& pts, std::size_t outer_top = 0, std::size_t outer_bottom = 0) {
  std::vector<double> gaps;
  for (std::size_t i = 1; i < pts.size(); ++i) gaps.push_back(dist(pts[i - 1], pts[i]));
  std::vector<double> ratio(gaps.size());
  for (std::size_t k = 0; k < gaps.size(); ++k) {
    double n = 0, sx = 0, sy = 0, sxx = 0, sxy = 0;
    for (std::size_t i = outer_top; i + outer_bottom < gaps.size(); ++i)
      if (i != k) n += 1, sx += i, sy += gaps[i], sxx += double(i) * i, sxy += i * gaps[i];
    const double den = n * sxx - sx * sx;
    const double slope = den > 0 ? (n * sxy - sx * sy) / den : 0, icpt = (sy - slope * sx) / n;
    ratio[k] = gaps[k] / std::max(1e-6, icpt + slope * k);
  }
  return ratio;
}

std::string percent(double p) { return std::to_string(static_cast<int>(std::lround(100 * p))) + " %"; }

// Keeps the chain as it was and says why in a flag.
LevelRecount& uncertain(LevelRecount& r, const std::string& why) {
  r.top_shift = r.bottom_shift = 0;
  r.flags.push_back("vertebra count uncertain: the chain's ends read " + r.top_reading + " (" + percent(r.top_posterior) +
                    ") and " + r.bottom_reading + " (" + percent(r.bottom_posterior) + "), but " + why);
  return r;
}

}  // namespace

Tensor xray_anchor_crops(const std::vector<float>& working, const std::vector<Point2>& centres,
                         const std::vector<double>& spacings) {
  if (working.size() != static_cast<std::size_t>(kCacheH) * kCacheW) throw model_error("anchor crops need the 1024 x 512 working image");
  if (centres.size() != spacings.size()) throw model_error("anchor crops need one spacing per point");
  const auto n = static_cast<std::int64_t>(centres.size());
  Tensor t({n, 1, kCropH, kCropW});
  const std::size_t plane = static_cast<std::size_t>(kCropH) * kCropW;
  for (std::int64_t i = 0; i < n; ++i) {
    const double s = std::clamp(spacings[i] / kSpacingPx, kScaleMin, kScaleMax);
    float* dst = t.data.data() + i * plane;
    for (int y = 0; y < kCropH; ++y)
      for (int x = 0; x < kCropW; ++x)
        dst[static_cast<std::size_t>(y) * kCropW + x] =
            bilinear_zero_padded(working.data(), kCacheH, kCacheW, centres[i].x + s * (x - (kCropW - 1) / 2.0),
                                 centres[i].y + s * (y - (kCropH - 1) / 2.0));
    zscore(dst, plane);
  }
  return t;
}

LevelRecount recount_chain(const std::vector<Point2>& c, const ChainEndEvidence& top, const ChainEndEvidence& bottom,
                           double min_posterior) {
  if (c.size() != static_cast<std::size_t>(kCobbVertebrae)) throw model_error("the chain must have 17 centres");
  LevelRecount r;
  r.centres = c;
  for (int v = 0; v < kCobbVertebrae; ++v) r.source.push_back(v);
  const auto pt = posterior(top), pb = posterior(bottom);
  const int top_best = static_cast<int>(std::max_element(pt.begin(), pt.end()) - pt.begin()) - 1;
  const int bottom_best = static_cast<int>(std::max_element(pb.begin(), pb.end()) - pb.begin()) - 1;
  // Shift s of the top: the true T1 lies at chain index s, so the chain's T1 is level T1 - s.
  r.top_reading = kTopNames[2 - top_best];
  r.bottom_reading = kBottomNames[2 - bottom_best];
  r.top_posterior = pt[top_best + 1];
  r.bottom_posterior = pb[bottom_best + 1];
  const int t = r.top_posterior >= min_posterior ? top_best : 0;
  const int h = r.bottom_posterior >= min_posterior ? bottom_best : 0;
  // A reading short of min_posterior leaves its end as it is and is not flagged: it stays
  // in the result (top_reading, bottom_reading and their posteriors) for whoever reads it.
  // On the AASCE validation films such doubts were as often about chains counted right as
  // about chains counted wrong (models/xray-level-anchors.md).
  if (t == 0 && h == 0) return r;
  // A chain that does not run top to bottom has no gaps to count in (its "vertebra order
  // broken" flag is raised by the decoding): the readings are reported, nothing is moved.
  for (int v = 1; v < kCobbVertebrae; ++v)
    if (c[v].y <= c[v - 1].y) return r;
  r.top_shift = t, r.bottom_shift = h;
  // The span: every point of the chain, with one point extrapolated above or below where
  // the true T1 or L5 lies beyond it. Its ends' levels are known from the readings (0 = T1):
  // the chain's T1 is level -t, its L5 level 16 - h. The search for skipped or spurious
  // points runs over the whole span, ends included, before the levels outside T1..L5 are
  // cut off: a chain whose T1 sits on C7 most often skipped T1 itself, and the gap that
  // shows it (C7 to T2) would be gone if C7 were cut off first. The gaps to such outer
  // points are candidates but do not set the trend the others are measured against.
  std::vector<Point2> pts;
  std::vector<int> src;
  if (t < 0) pts.push_back(lerp(c[0], c[1], -kAboveT1)), src.push_back(-1);
  for (int v = 0; v < kCobbVertebrae; ++v) pts.push_back(c[v]), src.push_back(v);
  if (h > 0) pts.push_back(lerp(c[16], c[15], -kBelowL5)), src.push_back(-1);
  const int first_level = -std::max(t, 0), last_level = 16 + std::max(-h, 0);
  const int levels = last_level - first_level + 1;
  const auto outer_top = static_cast<std::size_t>(-first_level), outer_bottom = static_cast<std::size_t>(last_level - 16);
  constexpr int kInserted = -2;  // marks a vertebra inserted below, until the names are final
  std::vector<std::string> what;
  if (t != 0) what.push_back("the chain's T1 was " + r.top_reading);
  if (h != 0) what.push_back("its L5 was " + r.bottom_reading);
  // The ends say vertebrae are missing from (or too many in) the chain; the chain's own
  // spacing must show where, one at a time: a skipped vertebra leaves a gap about twice the
  // trend, a spurious point two gaps that add up to about one. Midway (1.5) is the bar;
  // without it the chain is kept as it was and the count flagged.
  while (static_cast<int>(pts.size()) < levels) {
    const std::vector<double> ratio = gap_ratios(pts, outer_top, outer_bottom);
    // The widest gap, between pts[i] and pts[i + 1], held the skipped vertebra.
    const auto i = static_cast<std::size_t>(std::max_element(ratio.begin(), ratio.end()) - ratio.begin());
    if (ratio[i] < kSkipRatio) return uncertain(r, "no gap in the chain wide enough for a vertebra they miss");
    pts.insert(pts.begin() + i + 1, lerp(pts[i], pts[i + 1], 0.5));
    src.insert(src.begin() + i + 1, kInserted);
  }
  while (static_cast<int>(pts.size()) > levels) {
    const std::vector<double> ratio = gap_ratios(pts, outer_top, outer_bottom);
    // The inner point whose two gaps are narrowest together is one too many.
    std::size_t drop = 1;
    for (std::size_t i = 1; i + 1 < pts.size(); ++i)
      if (ratio[i - 1] + ratio[i] < ratio[drop - 1] + ratio[drop]) drop = i;
    if (ratio[drop - 1] + ratio[drop] > kSkipRatio)
      return uncertain(r, "no point in the chain close enough to its neighbours to be one too many");
    if (src[drop] >= 0) what.push_back("the point the first stage called " + cobb_vertebra_name(src[drop]) + " was dropped");
    pts.erase(pts.begin() + drop);
    src.erase(src.begin() + drop);
  }
  // Level of span point k is first_level + k; the names beyond T1..L5 are C7 and S1.
  const auto level_name = [](int v) { return v < 0 ? std::string("C7") : v > 16 ? std::string("S1") : cobb_vertebra_name(v); };
  for (int k = 0; k < levels; ++k)
    if (src[k] == kInserted) {
      const int v = first_level + k;
      what.push_back("a vertebra the first stage skipped was placed as " + level_name(v) + ", between " +
                     level_name(v - 1) + " and " + level_name(v + 1));
      src[k] = -1;
    }
  pts.erase(pts.begin(), pts.begin() - first_level);
  src.erase(src.begin(), src.begin() - first_level);
  pts.resize(kCobbVertebrae);
  src.resize(kCobbVertebrae);
  r.centres = pts;
  r.source = src;
  for (const auto& w : what) r.change += (r.change.empty() ? "" : "; ") + w;
  return r;
}

XrayLevelAnchors::XrayLevelAnchors(const Model& model) : model_(model) {
  const auto& card = model.card();
  if (card.patch_size.size() != 2 || card.patch_size[0] != kCropW || card.patch_size[1] != kCropH)
    throw model_error(card.name + ": level anchor model must take 128 x 160 crops");
  if (!card.normalisation.is_object() || card.normalisation.value("spacing_px", 0.0) != kSpacingPx)
    throw model_error(card.name + ": level anchor model must show one vertebra spacing as 22 crop pixels");
}

LevelRecount XrayLevelAnchors::recount(const std::vector<float>& working, const std::vector<Point2>& c,
                                       bool flip_averaging, double min_posterior) const {
  if (c.size() != static_cast<std::size_t>(kCobbVertebrae)) throw model_error("the chain must have 17 centres");
  const double top_spacing = (dist(c[0], c[1]) + dist(c[1], c[2]) + dist(c[2], c[3])) / 3;
  const double bottom_spacing = (dist(c[13], c[14]) + dist(c[14], c[15]) + dist(c[15], c[16])) / 3;
  const std::vector<Point2> points{lerp(c[0], c[1], -kAboveT1), c[0], c[1], c[15], c[16], lerp(c[16], c[15], -kBelowL5)};
  const std::vector<double> spacings{top_spacing, top_spacing, top_spacing, bottom_spacing, bottom_spacing, bottom_spacing};
  const Tensor crops = xray_anchor_crops(working, points, spacings);
  Tensor logits = model_.forward(crops, 2);
  if (logits.shape.size() != 2 || logits.shape[0] != 6 || logits.shape[1] != kClasses)
    throw model_error(model_.card().name + ": level anchor output must be [n, 10]");
  if (flip_averaging) {
    const Tensor m = model_.forward(mirrored(crops), 2);
    for (std::size_t i = 0; i < logits.data.size(); ++i) logits.data[i] = (logits.data[i] + m.data[i]) / 2;
  }
  // Log-softmax over each end's own five classes.
  ChainEndEvidence ends[2];
  for (int p = 0; p < 6; ++p) {
    const int end = p / 3, first = 5 * end;
    const float* l = logits.data.data() + p * kClasses + first;
    const double mx = *std::max_element(l, l + 5);
    double sum = 0;
    for (int k = 0; k < 5; ++k) sum += std::exp(l[k] - mx);
    for (int k = 0; k < 5; ++k) ends[end].log_p[p % 3][k] = l[k] - mx - std::log(sum);
  }
  return recount_chain(c, ends[0], ends[1], min_posterior);
}

}  // namespace spine
