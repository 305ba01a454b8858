// The geometric spine model: level sizes from real CT keypoint medians, a sagittal
// profile integrated from the measured per-level bend, and a prescribed coronal curve.
#include "phantom/spine_model.hpp"

#include <algorithm>
#include <cmath>

#include "phantom/anatomy_stats.hpp"
#include "spine/error.hpp"
#include "spine/labels.hpp"

namespace spine::phantom {
namespace {

constexpr double kPi = 3.14159265358979323846;

using anatomy::LevelStats;
constexpr const LevelStats* kLevels = anatomy::kRealCtLevels;

double ramp(double s, const std::vector<TiltKnot>& knots) {
  if (knots.empty()) return 0;
  if (s <= knots.front().s) return knots.front().tilt_deg;
  for (std::size_t i = 1; i < knots.size(); ++i) {
    if (s <= knots[i].s) {
      const double span = knots[i].s - knots[i - 1].s;
      const double t = span > 0 ? (s - knots[i - 1].s) / span : 1.0;
      return knots[i - 1].tilt_deg + (knots[i].tilt_deg - knots[i - 1].tilt_deg) * (1 - std::cos(kPi * t)) / 2;
    }
  }
  return knots.back().tilt_deg;
}

Vec3 normalised(Vec3 v) {
  const double n = std::sqrt(dot(v, v));
  return {v[0] / n, v[1] / n, v[2] / n};
}

Vec3 cross(const Vec3& a, const Vec3& b) {
  return {a[1] * b[2] - a[2] * b[1], a[2] * b[0] - a[0] * b[2], a[0] * b[1] - a[1] * b[0]};
}

}  // namespace

double dot(const Vec3& a, const Vec3& b) { return a[0] * b[0] + a[1] * b[1] + a[2] * b[2]; }

std::vector<VertebraShape> build_spine(int first, int last, const std::vector<TiltKnot>& knots,
                                       std::mt19937_64& rng) {
  if (first < 1 || last > 24 || first > last) throw usage_error("phantom segment must lie within C1..L5");
  std::normal_distribution<double> global(1.0, 0.04), local(1.0, 0.02);
  const double scale = std::clamp(global(rng), 0.9, 1.1);
  const int n = last - first + 1;

  std::vector<VertebraShape> out(n);
  std::vector<double> spacing(n);
  for (int k = 0; k < n; ++k) {
    const int lv = first + k;  // VerSe label == index + 1 for C1..L5
    const LevelStats& st = kLevels[lv - 1];
    VertebraShape& v = out[k];
    v.label = lv;
    v.name = label_name(lv);
    const double s = (st.spacing > 0 ? st.spacing : kLevels[lv - 2].spacing) * scale * local(rng);
    spacing[k] = s;
    const double p = st.pedicle_separation * scale;
    const bool cervical = lv <= 7, lumbar = lv >= 20;
    const double disc_fraction = cervical ? 0.22 : (lumbar ? 0.27 : 0.2);
    v.disc_height = s * disc_fraction;
    v.body_height = s - v.disc_height;
    v.body_width = cervical ? 0.6 * p : std::min(1.45 * p, 52.0 * scale);
    v.body_depth = cervical ? 16.0 * scale : (lumbar ? 0.72 * v.body_width : 0.95 * v.body_width);
    v.canal_half_width = cervical ? 0.35 * p : (lumbar ? 0.33 * p : 0.36 * p);
    v.canal_half_depth = (lumbar ? 8.0 : 7.0) * scale;
  }
  // Arc-length position of each body centre, normalised to 0..1 over the segment.
  std::vector<double> arc(n, 0.0);
  for (int k = 1; k < n; ++k) arc[k] = arc[k - 1] + spacing[k - 1];
  const double length = std::max(arc.back(), 1.0);

  // Sagittal angle of each vertebra's axis: integrate the measured bend, then remove the
  // mean so the segment as a whole stands upright.
  std::vector<double> sag(n, 0.0);
  for (int k = 1; k < n; ++k) sag[k] = sag[k - 1] - kLevels[first + k - 1].sagittal_bend_deg;
  double mean = 0;
  for (double a : sag) mean += a;
  mean /= n;
  for (double& a : sag) a -= mean;

  Vec3 pos{0, 0, 0};
  for (int k = 0; k < n; ++k) {
    VertebraShape& v = out[k];
    v.coronal_tilt_deg = ramp(n > 1 ? arc[k] / length : 0.0, knots);
    const double phi = sag[k] * kPi / 180, alpha = v.coronal_tilt_deg * kPi / 180;
    // Axial (superior) direction: tilted in the sagittal plane by phi toward posterior and
    // in the coronal plane by alpha toward the patient's right (-x), so that a positive
    // tilt raises the image-right side of the vertebra on a frontal radiograph.
    v.axial = normalised({-std::tan(alpha), std::tan(phi), 1.0});
    v.lateral = normalised(cross({0, 1, 0}, v.axial));
    v.posterior = normalised(cross(v.axial, v.lateral));
    if (k > 0) {
      // Step down along the mean axis of the two neighbours.
      const VertebraShape& prev = out[k - 1];
      const Vec3 axis = normalised({prev.axial[0] + v.axial[0], prev.axial[1] + v.axial[1], prev.axial[2] + v.axial[2]});
      for (int r = 0; r < 3; ++r) pos[r] -= axis[r] * spacing[k - 1];
    }
    v.centre = pos;
  }
  return out;
}

}  // namespace spine::phantom
