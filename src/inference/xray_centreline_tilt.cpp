// Each vertebra's tilt read twice, from its own corners and from the centreline through
// its neighbours' centres, and combined (see blend_tilts_with_centreline in
// include/spine/xray_landmarks.hpp).
#include <algorithm>
#include <cmath>

#include "spine/xray_landmarks.hpp"

namespace spine {

namespace {

constexpr double kPi = 3.14159265358979323846;

// The direction across the line from centre `above` to centre `below`, in the terms of
// vertebra_tilt_deg. Down the spine (dx, dy); across it, to the image right: (dy, -dx).
double across_deg(Point2 above, Point2 below) {
  return std::atan2(-(below.x - above.x), below.y - above.y) * 180 / kPi;
}

// The neighbours whose centres give vertebra v's centreline (T1 and L5: their one neighbour).
int above(int v) { return std::max(0, v - 1); }
int below(int v) { return std::min(kCobbVertebrae - 1, v + 1); }

// a - b in degrees, in (-180, 180].
double angle_difference(double a, double b) { return -std::remainder(b - a, 360.0); }

}  // namespace

double centreline_tilt_deg(const std::vector<Point2>& points, int v) {
  return across_deg(vertebra_centre(points, above(v)), vertebra_centre(points, below(v)));
}

CentrelineTiltResult blend_tilts_with_centreline(std::vector<Point2>& points, double weight, double end_weight) {
  CentrelineTiltResult r;
  if (points.size() != static_cast<std::size_t>(kCobbLandmarks)) {
    r.skipped_because = "not 17 vertebrae";
    return r;
  }
  // Each vertebra turns about its own centre, so the centres, and the centreline, stay as
  // they are while the chain is worked through.
  std::vector<Point2> centre(kCobbVertebrae);
  for (int v = 0; v < kCobbVertebrae; ++v) centre[v] = vertebra_centre(points, v);
  for (int v = 1; v < kCobbVertebrae; ++v)
    if (!(centre[v].y > centre[v - 1].y)) {
      r.skipped_because = "the vertebra centres do not run top to bottom";
      return r;
    }
  for (int v = 0; v < kCobbVertebrae; ++v) {
    const double w = v == 0 || v == kCobbVertebrae - 1 ? end_weight : weight;
    const double change =
        w * angle_difference(across_deg(centre[above(v)], centre[below(v)]), vertebra_tilt_deg(points, v));
    const double a = change * kPi / 180, c = std::cos(a), s = std::sin(a);
    const Point2 m = centre[v];
    for (int k = 0; k < 4; ++k) {
      Point2& p = points[4 * v + k];
      const double x = p.x - m.x, y = p.y - m.y;
      p = {m.x + c * x - s * y, m.y + s * x + c * y};
    }
    if (std::abs(change) > std::abs(r.largest_change_deg)) {
      r.largest_change_deg = change;
      r.largest_change_vertebra = v;
    }
  }
  r.applied = true;
  return r;
}

}  // namespace spine
