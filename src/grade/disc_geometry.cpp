// Discs in the grading slice (between consecutive vertebral bodies) and the patch the
// grading model sees of each, in the disc's own frame.
#include <algorithm>
#include <cmath>
#include <map>
#include <optional>

#include "spine/disc_grading.hpp"
#include "spine/labels.hpp"
#include "spine/log.hpp"  // fmt::format, through spdlog

namespace spine {
namespace {

struct BodyPixels {
  int label = 0;
  std::vector<std::array<double, 2>> mm;  // pixel centres in mm (x posterior, y inferior)
  std::array<double, 2> centroid{0, 0};
  bool touches_border = false;
};

double quantile(std::vector<double> v, double q) {
  if (v.empty()) return 0;
  const auto i = static_cast<std::size_t>(std::clamp(q, 0.0, 1.0) * static_cast<double>(v.size() - 1));
  std::nth_element(v.begin(), v.begin() + static_cast<std::ptrdiff_t>(i), v.end());
  return v[i];
}

float bilinear(const FloatImage& img, double x, double y) {
  // Outside the slice: 0 (the normalised background).
  if (x < 0 || y < 0 || x > static_cast<double>(img.nx() - 1) || y > static_cast<double>(img.ny() - 1)) return 0.f;
  const auto x0 = static_cast<std::size_t>(x), y0 = static_cast<std::size_t>(y);
  const std::size_t x1 = std::min(x0 + 1, img.nx() - 1), y1 = std::min(y0 + 1, img.ny() - 1);
  const double fx = x - static_cast<double>(x0), fy = y - static_cast<double>(y0);
  return static_cast<float>((1 - fy) * ((1 - fx) * img.at(x0, y0) + fx * img.at(x1, y0)) +
                            fy * ((1 - fx) * img.at(x0, y1) + fx * img.at(x1, y1)));
}

// Flags the discs where the chain of bodies breaks: a sharp turn between neighbouring
// discs' axes (both discs of the kink are flagged: either may rest on the wrong body),
// or two bodies much nearer or farther apart than the slice's other pairs.
void check_disc_chain(std::vector<DiscLocation>& discs, const std::vector<double>& body_spacing) {
  for (std::size_t i = 0; i < discs.size(); ++i) {
    double turn = 0;
    if (i > 0) turn = std::max(turn, angle_between(discs[i].axis, discs[i - 1].axis));
    if (i + 1 < discs.size()) turn = std::max(turn, angle_between(discs[i].axis, discs[i + 1].axis));
    discs[i].turn_deg = turn;
    if (turn > kMaxDiscTurnDeg)
      discs[i].flags.push_back(fmt::format(
          "the spine's axis turns {:.1f} degrees at this disc: it or a neighbouring disc rests on a misplaced or "
          "missed body", turn));
  }
  std::vector<double> measured;
  for (double v : body_spacing)
    if (v > 0) measured.push_back(v);
  if (measured.size() < 3) return;  // too few pairs for a typical spacing
  const double typical = quantile(measured, 0.5);
  for (std::size_t i = 0; i < discs.size(); ++i) {
    if (body_spacing[i] <= 0) continue;
    const double ratio = body_spacing[i] / typical;
    if (ratio < kMinBodySpacingRatio || ratio > kMaxBodySpacingRatio)
      discs[i].flags.push_back(fmt::format(
          "its two bodies lie {:.1f} mm apart, {:.0f} % of the typical spacing in this slice: a body split, merged "
          "or missed", body_spacing[i], 100 * ratio));
  }
}

// A body seen along the unit axis (ux, uy) from the origin (ox, oy), mm: its centre line's
// perpendicular offset (median), its width across the axis (2nd..98th percentile), and the
// axial coordinates of its pixels near that centre line (within a quarter width), whose
// extreme quantiles are its mid-endplates rather than its rims.
struct AxialView {
  double centre = 0, width = 0;
  std::vector<double> mid_along;
};

AxialView view_along(const BodyPixels& body, double ox, double oy, double ux, double uy) {
  std::vector<double> along, across;
  for (const auto& p : body.mm) {
    const double dx = p[0] - ox, dy = p[1] - oy;
    along.push_back(dx * ux + dy * uy);
    across.push_back(dx * uy - dy * ux);
  }
  AxialView v;
  v.centre = quantile(across, 0.5);
  v.width = quantile(across, 0.98) - quantile(across, 0.02);
  for (std::size_t k = 0; k < along.size(); ++k)
    if (std::abs(across[k] - v.centre) < v.width / 4) v.mid_along.push_back(along[k]);
  return v;
}

// The disc beyond the end body `end` of the segmented chain, on the side away from its
// neighbour `next`: along the line from next's centroid to end's, `gap_mm` past end's
// endplate on that side (taken near the body's centre line). Only the geometry is filled
// in; nothing when the two centroids nearly coincide.
std::optional<DiscLocation> disc_beyond(const BodyPixels& end, const BodyPixels& next, double gap_mm,
                                        const LabelImage& lab) {
  const double sx = lab.geometry.spacing[0], sy = lab.geometry.spacing[1];
  double ux = end.centroid[0] - next.centroid[0], uy = end.centroid[1] - next.centroid[1];
  const double len = std::hypot(ux, uy);
  if (len < 5.0) return std::nullopt;
  ux /= len, uy /= len;
  const AxialView v = view_along(end, end.centroid[0], end.centroid[1], ux, uy);
  const double beyond = quantile(v.mid_along, 0.99) + gap_mm;
  DiscLocation d;
  d.centre_px = {(end.centroid[0] + beyond * ux + v.centre * uy) / sx,
                 (end.centroid[1] + beyond * uy - v.centre * ux) / sy};
  d.axis = {ux, uy};
  d.width_mm = v.width;
  d.height_mm = -1;  // not measured: no body on the far side
  // Cut: the end body leaves the slice, or the disc's far half would.
  const double reach_x = std::abs(gap_mm * ux) / sx, reach_y = std::abs(gap_mm * uy) / sy;
  d.cut = end.touches_border || d.centre_px.x - reach_x < 0 || d.centre_px.y - reach_y < 0 ||
          d.centre_px.x + reach_x >= static_cast<double>(lab.nx()) || d.centre_px.y + reach_y >= static_cast<double>(lab.ny());
  return d;
}

}  // namespace

std::vector<DiscLocation> locate_discs(const GradingSlice& slice) {
  const LabelImage& lab = slice.labels;
  const double sx = lab.geometry.spacing[0], sy = lab.geometry.spacing[1];
  std::map<int, BodyPixels> bodies;
  for (std::size_t y = 0; y < lab.ny(); ++y)
    for (std::size_t x = 0; x < lab.nx(); ++x) {
      const int v = lab.at(x, y);
      if (!is_vertebra_label(v)) continue;
      auto& b = bodies[v];
      b.label = v;
      b.mm.push_back({static_cast<double>(x) * sx, static_cast<double>(y) * sy});
      if (x == 0 || y == 0 || x + 1 == lab.nx() || y + 1 == lab.ny()) b.touches_border = true;
    }
  std::vector<BodyPixels> order;
  for (auto& [label, b] : bodies) {
    // A body of a few pixels in this slice is a partial-volume sliver, not a body to measure from.
    if (b.mm.size() * sx * sy < 40.0) continue;
    for (const auto& p : b.mm) b.centroid[0] += p[0], b.centroid[1] += p[1];
    b.centroid[0] /= static_cast<double>(b.mm.size());
    b.centroid[1] /= static_cast<double>(b.mm.size());
    order.push_back(std::move(b));
  }
  std::sort(order.begin(), order.end(),
            [](const BodyPixels& a, const BodyPixels& b) { return craniocaudal_rank(a.label) < craniocaudal_rank(b.label); });

  std::vector<DiscLocation> discs;
  std::vector<double> body_spacing;  // centroid distance of the two bodies, per disc; -1 for a disc placed beyond the chain's end body
  for (std::size_t i = 0; i + 1 < order.size(); ++i) {
    const BodyPixels& a = order[i];
    const BodyPixels& b = order[i + 1];
    if (next_vertebra_below(a.label) != b.label) continue;  // a level missing in this slice: no disc named across it
    double ux = b.centroid[0] - a.centroid[0], uy = b.centroid[1] - a.centroid[1];
    const double len = std::hypot(ux, uy);
    if (len < 5.0) continue;
    ux /= len, uy /= len;
    const double mx = (a.centroid[0] + b.centroid[0]) / 2, my = (a.centroid[1] + b.centroid[1]) / 2;
    // Along the axis from the midpoint: the endplates facing the disc.
    const AxialView va = view_along(a, mx, my, ux, uy), vb = view_along(b, mx, my, ux, uy);
    const double lower_endplate = quantile(va.mid_along, 0.99), upper_endplate = quantile(vb.mid_along, 0.01);
    const double t = (lower_endplate + upper_endplate) / 2;
    const double across = (va.centre + vb.centre) / 2;
    DiscLocation d;
    d.label = disc_label_below(a.label);
    d.name = label_name(d.label);
    const double cx = mx + t * ux + across * uy, cy = my + t * uy - across * ux;
    d.centre_px = {cx / sx, cy / sy};
    d.axis = {ux, uy};
    d.height_mm = std::max(0.0, upper_endplate - lower_endplate);
    d.width_mm = (va.width + vb.width) / 2;
    d.cut = a.touches_border || b.touches_border;
    discs.push_back(d);
    body_spacing.push_back(len);
  }
  // The sacrum is the structure the MR model segments least often in one slice (it
  // learned it from 3 volumes). When L5 is the lowest body and a body above it gives the
  // spine's direction, the L5/S1 disc lies under L5's lower endplate: placed half a
  // typical L5/S1 height (5 mm) below it, and said so.
  const bool has_sacrum = std::any_of(order.begin(), order.end(), [](const BodyPixels& b) { return b.label == label::kSacrum; });
  if (!has_sacrum && order.size() >= 2 && order.back().label == label::kL5 && order[order.size() - 2].label == label::kL4) {
    if (auto d = disc_beyond(order.back(), order[order.size() - 2], 5.0, lab)) {
      d->label = disc_label_below(label::kL5);
      d->name = label_name(d->label);
      d->placement = "below L5's lower endplate (sacrum not segmented)";
      discs.push_back(*d);
      body_spacing.push_back(-1);
    }
  }
  // The same at the top: on T1-weighted slices the model often leaves the bright T11 and
  // T12 bodies out (SPIDER training series), and with them the lumbar spine's top disc.
  // When L1 is the highest body and L2 lies below it, T12/L1 sits above L1's upper
  // endplate: placed half a typical T12/L1 height (4 mm) above it, and said so.
  if (order.size() >= 2 && order.front().label == label::kL1 && order[1].label == label::kL2) {
    if (auto d = disc_beyond(order.front(), order[1], 4.0, lab)) {
      d->label = disc_label_below(label::kT12);
      d->name = label_name(d->label);
      d->placement = "above L1's upper endplate (T12 not segmented)";
      d->axis = {-d->axis.x, -d->axis.y};  // head to foot, as every disc's axis
      discs.insert(discs.begin(), *d);
      body_spacing.insert(body_spacing.begin(), -1);
    }
  }
  check_disc_chain(discs, body_spacing);
  return discs;
}

Tensor disc_patches(const FloatImage& slice, const std::vector<DiscLocation>& discs, const PatchSpec& spec) {
  // Intensity scale of the whole slice (robust to a few bright pixels such as fat or flow).
  std::vector<double> v(slice.voxels.begin(), slice.voxels.end());
  const double lo = quantile(v, 0.01), hi = quantile(v, 0.99);
  const double scale = hi > lo ? 1.0 / (hi - lo) : 1.0;
  const double sx = slice.geometry.spacing[0], sy = slice.geometry.spacing[1];
  const auto n = static_cast<std::int64_t>(discs.size());
  Tensor out({n, 1, spec.height_px, spec.width_px});
  for (std::int64_t d = 0; d < n; ++d) {
    const DiscLocation& disc = discs[static_cast<std::size_t>(d)];
    // Patch axes in mm: down = the spine axis; right = perpendicular, toward posterior.
    const double dx = disc.axis.x, dy = disc.axis.y;
    double rx = dy, ry = -dx;
    if (rx < 0) rx = -rx, ry = -ry;  // posterior (+x) to the patch's right
    const double cx = disc.centre_px.x * sx + spec.posterior_shift_mm * rx;
    const double cy = disc.centre_px.y * sy + spec.posterior_shift_mm * ry;
    float* p = out.data.data() + d * spec.height_px * spec.width_px;
    for (int r = 0; r < spec.height_px; ++r) {
      const double a = (r - (spec.height_px - 1) / 2.0) * spec.spacing_mm;
      for (int c = 0; c < spec.width_px; ++c) {
        const double b = (c - (spec.width_px - 1) / 2.0) * spec.spacing_mm;
        const double xm = cx + a * dx + b * rx, ym = cy + a * dy + b * ry;
        const float val = bilinear(slice, xm / sx, ym / sy);
        p[r * spec.width_px + c] = static_cast<float>(std::clamp((val - lo) * scale, 0.0, 1.0));
      }
    }
  }
  return out;
}

}  // namespace spine
