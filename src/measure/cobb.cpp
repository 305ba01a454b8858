// Cobb angles from vertebra corner landmarks, following the rule that produced the AASCE
// reference angles (docs/cobb.md), plus the major curve's end vertebrae, apex and side.
#include "spine/cobb.hpp"

#include <algorithm>
#include <cmath>

#include "spine/error.hpp"

namespace spine {
namespace {

constexpr double kPi = 3.14159265358979323846;

// A tilt vector's direction in degrees, as vertebra_tilt_deg reports it.
double direction_deg(Point2 t) { return std::atan2(t.y, t.x) * 180.0 / kPi; }

}  // namespace

double angle_between(const Point2& a, const Point2& b) {
  const double na = std::hypot(a.x, a.y), nb = std::hypot(b.x, b.y);
  if (na == 0 || nb == 0) return 0;
  const double c = std::clamp((a.x * b.x + a.y * b.y) / (na * nb), -1.0, 1.0);
  return std::acos(c) * 180.0 / kPi;
}

Point2 vertebra_tilt_vector(const std::vector<Point2>& lm, int v) {
  const Point2 tl = lm[4 * v], tr = lm[4 * v + 1], bl = lm[4 * v + 2], br = lm[4 * v + 3];
  return {(tr.x + br.x) / 2 - (tl.x + bl.x) / 2, (tr.y + br.y) / 2 - (tl.y + bl.y) / 2};
}

double vertebra_tilt_deg(const std::vector<Point2>& lm, int v) { return direction_deg(vertebra_tilt_vector(lm, v)); }

Point2 vertebra_centre(const std::vector<Point2>& lm, int v) {
  const Point2 tl = lm[4 * v], tr = lm[4 * v + 1], bl = lm[4 * v + 2], br = lm[4 * v + 3];
  return {(tl.x + tr.x + bl.x + br.x) / 4, (tl.y + tr.y + bl.y + br.y) / 4};
}

std::string cobb_vertebra_name(int index) {
  if (index < 0 || index >= kCobbVertebrae) return "?";
  return index < 12 ? "T" + std::to_string(index + 1) : "L" + std::to_string(index - 11);
}

CobbAngles compute_cobb_angles(const std::vector<Point2>& lm, double image_height) {
  if (static_cast<int>(lm.size()) != kCobbLandmarks)
    throw input_error("Cobb angles need 68 landmarks, got " + std::to_string(lm.size()));
  constexpr int n = kCobbVertebrae;
  std::vector<Point2> tilt(n);
  std::vector<Point2> mid(2 * n);  // upper and lower endplate midpoints, top to bottom
  std::vector<Point2> centre(n);
  for (int v = 0; v < n; ++v) {
    const Point2 tl = lm[4 * v], tr = lm[4 * v + 1], bl = lm[4 * v + 2], br = lm[4 * v + 3];
    tilt[v] = vertebra_tilt_vector(lm, v);
    mid[2 * v] = {(tl.x + tr.x) / 2, (tl.y + tr.y) / 2};
    mid[2 * v + 1] = {(bl.x + br.x) / 2, (bl.y + br.y) / 2};
    centre[v] = vertebra_centre(lm, v);
  }
  std::vector<double> a(n * n);
  for (int i = 0; i < n; ++i)
    for (int j = 0; j < n; ++j) a[i * n + j] = angle_between(tilt[i], tilt[j]);
  auto angle = [&](int i, int j) { return a[i * n + j]; };

  // Largest angle, argmax taken column by column: j is the column whose maximum is
  // largest (first such column), i the row of that maximum (first such row).
  int best_i = 0, best_j = 0;
  double best = -1;
  for (int j = 0; j < n; ++j) {
    int row = 0;
    for (int i = 1; i < n; ++i) {
      if (angle(i, j) > angle(row, j)) row = i;
    }
    if (angle(row, j) > best) {
      best = angle(row, j);
      best_i = row;
      best_j = j;
    }
  }

  // Shape test: sign of each midpoint's normalised offset from the first-last chord.
  const Point2 first = mid.front(), last = mid.back();
  bool positive = false, negative = false;
  for (std::size_t k = 1; k + 1 < mid.size(); ++k) {
    const double dy = first.y - last.y, dx = first.x - last.x;
    const double off = (dy != 0 ? (mid[k].y - last.y) / dy : 0.0) - (dx != 0 ? (mid[k].x - last.x) / dx : 0.0);
    if (off > 0) positive = true;
    if (off < 0) negative = true;
  }
  CobbAngles out;
  out.s_shaped = positive && negative;
  const int i = best_i, j = best_j;
  double second = 0, third = 0;
  if (!out.s_shaped) {
    second = angle(0, j);
    third = angle(n - 1, i);
  } else {
    int k = 0;
    for (int t = 0; t <= j; ++t) {
      if (angle(j, t) > angle(j, k)) k = t;
    }
    second = angle(j, k);
    if (mid[2 * i + 1].y + mid[2 * j + 1].y < image_height) {
      for (int t = i; t < n; ++t) third = std::max(third, angle(i, t));
    } else {
      for (int t = 0; t <= k; ++t) third = std::max(third, angle(k, t));
    }
  }
  out.aasce_deg = {best, second, third};

  out.tilt_deg.resize(n);
  for (int v = 0; v < n; ++v) out.tilt_deg[v] = direction_deg(tilt[v]);

  MajorCurve& major = out.major;
  major.angle_deg = best;
  major.upper_end = std::min(i, j);
  major.lower_end = std::max(i, j);
  // Apex: the vertebra between the end vertebrae farthest from the line joining their centres.
  const Point2 u = centre[major.upper_end], l = centre[major.lower_end];
  const double len = std::hypot(l.x - u.x, l.y - u.y);
  double best_dev = 0;
  double signed_dev = 0;
  major.apex = (major.upper_end + major.lower_end) / 2;
  for (int v = major.upper_end; v <= major.lower_end && len > 0; ++v) {
    // Positive when the centre lies to the image right of the line (y grows downwards).
    const double d = ((l.y - u.y) * (centre[v].x - u.x) - (l.x - u.x) * (centre[v].y - u.y)) / len;
    if (std::abs(d) > best_dev) {
      best_dev = std::abs(d);
      signed_dev = d;
      major.apex = v;
    }
  }
  major.convex_side_image = best_dev < 1e-9 ? "none" : (signed_dev > 0 ? "image-right" : "image-left");
  major.convex_side = best_dev < 1e-9 ? "none" : (signed_dev > 0 ? "left" : "right");
  return out;
}

nlohmann::json major_curve_json(const MajorCurve& m) {
  return {{"angle_deg", m.angle_deg},
          {"upper_end", cobb_vertebra_name(m.upper_end)},
          {"lower_end", cobb_vertebra_name(m.lower_end)},
          {"apex", cobb_vertebra_name(m.apex)},
          {"convex_side", m.convex_side},
          {"convex_side_image", m.convex_side_image}};
}

std::string grade_curve(double major_deg, const CobbGrading& g) {
  if (major_deg < g.mild_deg) return "spinal curve";
  if (major_deg < g.moderate_deg) return "mild";
  if (major_deg <= g.severe_deg) return "moderate";
  return "severe";
}

double smape_percent(const std::array<double, 3>& p, const std::array<double, 3>& r) {
  double num = 0, den = 0;
  for (int k = 0; k < 3; ++k) {
    num += std::abs(p[k] - r[k]);
    den += p[k] + r[k];
  }
  return den > 0 ? 100.0 * num / den : 0.0;
}

}  // namespace spine
