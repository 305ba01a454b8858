// Each vertebra's tilt read twice, from its own corners and from the centreline through
// its neighbours' centres, and combined (see blend_tilts_with_centreline in
// include/spine/xray_landmarks.hpp).
#include <algorithm>
#include <cmath>

#include "spine/xray_landmarks.hpp"

namespace spine {

namespace {

constexpr double kPi = 3.14159265358979323846;

Point2 centre(const std::vector<Point2>& points, int v) {
  Point2 c{0, 0};
  for (int k = 0; k < 4; ++k) c.x += points[4 * v + k].x / 4, c.y += points[4 * v + k].y / 4;
  return c;
}

// a - b in degrees, in (-180, 180].
double angle_difference(double a, double b) { return -std::remainder(b - a, 360.0); }

}  // namespace

double vertebra_tilt_deg(const std::vector<Point2>& points, int v) {
  const Point2 tl = points[4 * v], tr = points[4 * v + 1], bl = points[4 * v + 2], br = points[4 * v + 3];
  return std::atan2((tr.y + br.y - tl.y - bl.y) / 2, (tr.x + br.x - tl.x - bl.x) / 2) * 180 / kPi;
}

double centreline_tilt_deg(const std::vector<Point2>& points, int v) {
  const int above = std::max(0, v - 1), below = std::min(kCobbVertebrae - 1, v + 1);
  const Point2 a = centre(points, above), b = centre(points, below);
  // Down the spine (dx, dy); across it, to the image right: (dy, -dx).
  return std::atan2(-(b.x - a.x), b.y - a.y) * 180 / kPi;
}

CentrelineTiltResult blend_tilts_with_centreline(std::vector<Point2>& points, double weight) {
  CentrelineTiltResult r;
  if (points.size() != static_cast<std::size_t>(kCobbLandmarks)) {
    r.skipped_because = "not 17 vertebrae";
    return r;
  }
  for (int v = 1; v < kCobbVertebrae; ++v)
    if (!(centre(points, v).y > centre(points, v - 1).y)) {
      r.skipped_because = "the vertebra centres do not run top to bottom";
      return r;
    }
  // All changes from the points as given: each vertebra's turn keeps its centre, so the
  // centreline does not move while the chain is worked through.
  std::vector<double> change(kCobbVertebrae);
  for (int v = 0; v < kCobbVertebrae; ++v)
    change[v] = weight * angle_difference(centreline_tilt_deg(points, v), vertebra_tilt_deg(points, v));
  for (int v = 0; v < kCobbVertebrae; ++v) {
    const double a = change[v] * kPi / 180, c = std::cos(a), s = std::sin(a);
    const Point2 m = centre(points, v);
    for (int k = 0; k < 4; ++k) {
      Point2& p = points[4 * v + k];
      const double x = p.x - m.x, y = p.y - m.y;
      p = {m.x + c * x - s * y, m.y + s * x + c * y};
    }
    if (std::abs(change[v]) > std::abs(r.largest_change_deg)) {
      r.largest_change_deg = change[v];
      r.largest_change_vertebra = v;
    }
  }
  r.applied = true;
  return r;
}

}  // namespace spine
