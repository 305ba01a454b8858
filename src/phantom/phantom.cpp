// Phantom volumes (CT in HU, MR T1/T2-like) with label maps, and frontal radiographs with
// exact AASCE landmarks, rendered from the geometric spine model.
#include "spine/phantom.hpp"

#include <algorithm>
#include <cmath>
#include <random>
#include <tuple>

#include "phantom/spine_model.hpp"
#include "spine/error.hpp"
#include "spine/labels.hpp"
#include "spine/measure.hpp"
#include "spine/preprocess.hpp"

namespace spine {
namespace {

using phantom::Vec3;
using phantom::VertebraShape;

// Tissue classes rendered into the image; intensities per modality below.
enum Tissue { kAir, kFat, kMuscle, kMarrow, kCortex, kDisc, kCsf, kCord, kLung, kLiver, kKidney, kTissueCount };

std::array<double, kTissueCount> tissue_values(const std::string& modality) {
  if (modality == "ct") return {-1000, -100, 50, 230, 900, 90, 15, 35, -850, 60, 30};
  if (modality == "mr-t1") return {20, 950, 350, 700, 50, 300, 120, 420, 30, 500, 400};
  if (modality == "mr-t2") return {20, 800, 250, 450, 50, 750, 1000, 450, 30, 300, 600};
  throw usage_error("unknown phantom modality '" + modality + "' (ct, mr-t1, mr-t2)");
}

struct LocalPoint {
  double u, v, w;  // lateral, posterior, axial (mm) in a vertebra's frame
};

LocalPoint to_local(const VertebraShape& s, const Vec3& p) {
  const Vec3 q{p[0] - s.centre[0], p[1] - s.centre[1], p[2] - s.centre[2]};
  return {phantom::dot(q, s.lateral), phantom::dot(q, s.posterior), phantom::dot(q, s.axial)};
}

// What a point is, relative to one vertebra: bone (cortex or marrow) of its body or
// posterior elements, its canal, or nothing.
struct Hit {
  int label = 0;
  Tissue tissue = kAir;
};

// The fraction of body height a fracture takes at (u, v) of the body's section: the
// upper endplate is lowered by this times the height. The posterior wall is the front of
// the canal (v = b + 1), where a wedge loses nothing.
double fracture_reduction(const VertebraShape& s, double u, double v) {
  if (s.fracture.empty() || s.fracture == "none") return 0;
  const double a = s.body_width / 2, b = s.body_depth / 2;
  if (s.fracture == "wedge") return s.fracture_loss * std::clamp((b + 1 - v) / (2 * b + 1), 0.0, 1.0);
  if (s.fracture == "biconcave") return s.fracture_loss * std::max(0.0, 1 - (u / a) * (u / a) - (v / b) * (v / b));
  return s.fracture_loss;  // crush
}

Hit classify_vertebra(const VertebraShape& s, const LocalPoint& p, bool cord_level) {
  const double a = s.body_width / 2, b = s.body_depth / 2, h = s.body_height / 2;
  // Body: elliptic cylinder with a 1.5 mm cortical shell, its top lowered by a fracture.
  const double r = std::sqrt((p.u / a) * (p.u / a) + (p.v / b) * (p.v / b));
  const double top = h - s.body_height * fracture_reduction(s, p.u, p.v);
  if (r <= 1 && p.w >= -h && p.w <= top) {
    const double edge = std::min({(1 - r) * std::min(a, b), top - p.w, p.w + h});
    return {s.label, edge < 1.5 ? kCortex : kMarrow};
  }
  const double cw = s.canal_half_width, cd = s.canal_half_depth;
  const double canal_v = b + cd + 1.0;  // canal centre behind the body
  const double cu = p.u / cw, cv = (p.v - canal_v) / cd;
  const double canal_r = std::sqrt(cu * cu + cv * cv);
  const double arch_h = 0.45 * s.body_height;
  if (std::abs(p.w) <= arch_h) {
    // Pedicles and lamina: a ring of bone around the canal.
    if (canal_r > 1 && p.v > b - 1) {
      const double ring_u = p.u / (cw + 6), ring_v = (p.v - canal_v) / (cd + 5);
      // In front of the canal the ring is the body's posterior wall: no taller than the
      // body where a fracture has lowered its top (only fractured bodies are affected).
      const bool wall = p.v < canal_v - cd + 0.5;
      const bool above_body = wall && p.w > h - s.body_height * fracture_reduction(s, p.u, std::min(p.v, b));
      if (ring_u * ring_u + ring_v * ring_v <= 1 && !above_body) return {s.label, kCortex};
    }
    // Spinous process: backwards from the lamina.
    const double spin_len = s.label >= 20 ? 28 : (s.label >= 8 ? 34 : 22);
    if (std::abs(p.u) <= 3.5 && p.v > canal_v + cd && p.v <= canal_v + cd + spin_len &&
        std::abs(p.w + 0.1 * (p.v - canal_v)) <= arch_h * 0.8)
      return {s.label, kCortex};
    // Transverse processes: sideways at the level of the pedicles.
    const double tp_len = s.label >= 20 ? 22 : 18;
    if (std::abs(p.u) > cw + 4 && std::abs(p.u) <= cw + 6 + tp_len && std::abs(p.v - canal_v * 0.9) <= 4.5 &&
        std::abs(p.w) <= 5)
      return {s.label, kCortex};
  }
  if (canal_r <= 1 && std::abs(p.w) <= h + s.disc_height) {
    if (cord_level && canal_r <= 0.5) return {label::kSpinalCord, kCord};
    return {label::kSpinalCanal, kCsf};
  }
  return {};
}


// --- Torso anatomy (ribs, lungs, sacrum, iliac wings, liver, kidneys) ------------------
// Rough shapes only: they put the structures that fix vertebral levels on CT (the last
// rib-bearing vertebra, the sacrum) and the neighbours a model must not call spine
// (ribs, pelvis, lungs, organs) where real CT has them.
bool is_thoracic(int label) { return label >= label::kT1 && label <= label::kT12; }

struct RibCage {
  double a = 0, b = 0, vc = 0, phi0 = 0, phi_end = 0, v_tp = 0;
};

// The rib pair of a thoracic vertebra as an arc of an ellipse (semi-axes a lateral,
// b antero-posterior) in its axial plane, starting at the transverse process tips and
// dropping as it runs forward.
RibCage rib_cage(const VertebraShape& s) {
  const double t = (s.label - label::kT1) / 11.0;
  RibCage r;
  r.a = t < 0.5 ? 55 + 170 * t : 140 - 40 * (t - 0.5);
  r.b = 0.75 * r.a;
  const double canal_v = s.body_depth / 2 + s.canal_half_depth + 1.0;
  r.v_tp = canal_v * 0.9;
  const double u_tp = s.canal_half_width + 6 + 18;
  r.phi0 = std::asin(std::min(0.95, u_tp / r.a));
  r.vc = r.v_tp - r.b * std::cos(r.phi0);
  r.phi_end = s.label >= label::kT11 ? r.phi0 + 1.1 : 2.6;
  return r;
}

// Rib bone (cortex/marrow) or lung at a point in the vertebra's frame; kAir = neither.
Tissue thoracic_tissue(const VertebraShape& s, const RibCage& r, const LocalPoint& p) {
  const double au = std::abs(p.u) / r.a, bv = (p.v - r.vc) / r.b;
  const double rr = std::hypot(au, bv);
  const double phi = std::atan2(au, bv);  // 0 = straight back, pi = straight forward
  const double radial = (rr - 1) * std::sqrt(r.a * r.b);
  if (phi >= r.phi0 && phi <= r.phi_end && std::abs(radial) <= 4) {
    const double dw = p.w + 14 * (phi - r.phi0);
    if (std::abs(dw) <= 5) return (std::abs(radial) > 2.5 || std::abs(dw) > 3.5) ? kCortex : kMarrow;
  }
  const bool mediastinum = std::abs(p.u) < s.body_width / 2 + 28 && p.v < 0;
  if (rr < 0.93 && p.v < r.v_tp - 6 && !mediastinum && std::abs(p.w) <= s.body_height / 2 + s.disc_height + 0.5 &&
      std::abs(p.u) > s.body_width / 2 + 8)
    return kLung;
  return kAir;
}

struct SacrumFrame {
  Vec3 top{}, down{}, normal{}, lateral{};
  double half_width_top = 0, half_depth_top = 0;
};

// The sacrum hangs below L5, tilted 35 degrees backwards.
SacrumFrame sacrum_frame(const VertebraShape& l5) {
  SacrumFrame f;
  const double tilt = 35 * 3.14159265358979 / 180;
  for (int i = 0; i < 3; ++i) {
    f.top[i] = l5.centre[i] - (l5.body_height / 2 + l5.disc_height) * l5.axial[i];
    f.down[i] = -std::cos(tilt) * l5.axial[i] + std::sin(tilt) * l5.posterior[i];
    f.normal[i] = std::cos(tilt) * l5.posterior[i] + std::sin(tilt) * l5.axial[i];
    f.lateral[i] = l5.lateral[i];
  }
  f.half_width_top = 0.95 * l5.body_width;
  f.half_depth_top = 0.5 * l5.body_depth;
  return f;
}

// Sacrum (label 26) or iliac wing (bone, no label) at a point; label 0 and kAir = neither.
Hit pelvis_hit(const SacrumFrame& f, const Vec3& p) {
  const Vec3 q{p[0] - f.top[0], p[1] - f.top[1], p[2] - f.top[2]};
  const double t = phantom::dot(q, f.down), u = phantom::dot(q, f.lateral), n = phantom::dot(q, f.normal);
  if (t >= 0 && t <= 105) {
    const double a = t < 35 ? f.half_width_top : f.half_width_top + (12 - f.half_width_top) * (t - 35) / 70;
    const double b = f.half_depth_top * (1 - 0.45 * t / 105);
    const double r = std::hypot(u / a, n / b);
    if (r <= 1) return {label::kSacrum, (1 - r) * std::min(a, b) < 2 ? kCortex : kMarrow};
  }
  const double au = std::abs(u) - f.half_width_top;
  if (au > 2 && au < 85 && t > -45 && t < 60) {
    const double nc = 10 - 0.6 * au;
    if (std::abs(n - nc) <= 5) return {0, std::abs(n - nc) > 3 ? kCortex : kMarrow};
  }
  return {};
}

struct Bounds {
  Vec3 lo{1e9, 1e9, 1e9}, hi{-1e9, -1e9, -1e9};
  void add(const Vec3& p) {
    for (int i = 0; i < 3; ++i) lo[i] = std::min(lo[i], p[i]), hi[i] = std::max(hi[i], p[i]);
  }
};

// Physical extent of a vertebra with its posterior elements (conservative box).
void add_vertebra_bounds(const VertebraShape& s, Bounds& b) {
  const double ext_u = s.canal_half_width + 6 + 24 + 2;
  const double ext_v_front = s.body_depth / 2 + 2;
  const double ext_v_back = s.body_depth / 2 + 2 * s.canal_half_depth + 40;
  // Below the body: room for a lordotic disc, up to twice as tall anteriorly.
  const double ext_w = s.body_height / 2 + 2 * s.disc_height + 3;
  for (double su : {-1.0, 1.0})
    for (double sv : {-ext_v_front, ext_v_back})
      for (double sw : {-1.0, 1.0}) {
        Vec3 p;
        for (int i = 0; i < 3; ++i)
          p[i] = s.centre[i] + su * ext_u * s.lateral[i] + sv * s.posterior[i] + sw * ext_w * s.axial[i];
        b.add(p);
      }
}

// Where the torso's structures reach around one vertebra (ribs, abdomen in front).
void add_torso_bounds(const VertebraShape& s, Bounds& b) {
  const double lat = is_thoracic(s.label) ? rib_cage(s).a + 8 : 130;
  const double ext_w = s.body_height / 2 + s.disc_height + (is_thoracic(s.label) ? 40 : 2);
  for (double su : {-lat, lat})
    for (double sv : {-150.0, s.body_depth / 2 + 2 * s.canal_half_depth + 40})
      for (double sw : {-ext_w, ext_w}) {
        Vec3 p;
        for (int i = 0; i < 3; ++i) p[i] = s.centre[i] + su * s.lateral[i] + sv * s.posterior[i] + sw * s.axial[i];
        b.add(p);
      }
}

void add_pelvis_bounds(const SacrumFrame& f, Bounds& b) {
  const double lat = f.half_width_top + 90;
  for (double su : {-lat, lat})
    for (double sn : {-70.0, 40.0})
      for (double st : {-50.0, 110.0}) {
        Vec3 p;
        for (int i = 0; i < 3; ++i) p[i] = f.top[i] + su * f.lateral[i] + sn * f.normal[i] + st * f.down[i];
        b.add(p);
      }
}

std::pair<std::array<std::size_t, 3>, std::array<std::size_t, 3>> voxel_range(const Bounds& b, const Geometry& g) {
  std::array<std::size_t, 3> lo{}, hi{};
  for (int i = 0; i < 3; ++i) {
    lo[i] = static_cast<std::size_t>(std::max(0.0, std::floor((b.lo[i] - g.origin[i]) / g.spacing[i])));
    hi[i] = std::min<std::size_t>(g.size[i], static_cast<std::size_t>(std::max(0.0, std::ceil((b.hi[i] - g.origin[i]) / g.spacing[i]) + 1)));
  }
  return {lo, hi};
}

constexpr double kPi = 3.14159265358979323846;

Vec3 unit(const Vec3& v) {
  const double n = std::sqrt(phantom::dot(v, v));
  return {v[0] / n, v[1] / n, v[2] / n};
}

double sagittal_tilt(const Vec3& n) { return std::atan2(n[1], n[2]) * 180 / kPi; }
double coronal_tilt(const Vec3& n) { return std::atan2(n[0], n[2]) * 180 / kPi; }

// The measurements' truth from the exact shapes (see PhantomVertebraTruth).
void add_measurement_truth(const std::vector<VertebraShape>& spine, double marrow, PhantomVolume& out) {
  const double fractions[3] = {kAnteriorFraction, kMiddleFraction, kPosteriorFraction};
  for (const auto& s : spine) {
    PhantomVertebraTruth t;
    t.label = s.label;
    t.name = s.name;
    t.centroid_lps_mm = s.centre;
    t.axial = s.axial;
    const double b = s.body_depth / 2, depth = 2 * b + 1;  // anterior wall to the front of the canal
    double* h[3] = {&t.anterior_height, &t.middle_height, &t.posterior_height};
    for (int q = 0; q < 3; ++q) *h[q] = s.body_height * (1 - fracture_reduction(s, 0, -b + fractions[q] * depth));
    if (s.fracture == "wedge") {
      // The upper endplate is a plane rising posteriorly with slope k: heights are taken
      // along the mean of the two endplate normals (the bisector), from points on the
      // line through the body centre perpendicular to it, in the (v, w) mid-sagittal plane.
      const double hh = s.body_height / 2, k = s.body_height * s.fracture_loss / depth;
      auto top = [&](double v) { return hh - k * (b + 1 - v); };
      const double nt = std::sqrt(1 + k * k);
      double av = -k / nt, aw = 1 / nt + 1;  // bisector of (0, 1) and (-k, 1) / |.|
      const double an = std::hypot(av, aw);
      av /= an;
      aw /= an;
      const double pv = aw, pw = -av;  // perpendicular, toward posterior
      const double cv = (-b + b + 1) / 2, cw = (top(cv) - hh) / 2;
      for (int q = 0; q < 3; ++q) {
        const double vq = -b + fractions[q] * depth, sq = (vq - cv) / pv;
        const double qv = cv + sq * pv, qw = cw + sq * pw;
        const double t_bottom = (-hh - qw) / aw, t_top = (top(qv) - qw) / (aw - k * av);
        *h[q] = t_top - t_bottom;
      }
    }
    t.fracture = s.fracture.empty() ? "none" : s.fracture;
    t.fracture_loss = s.fracture_loss;
    t.trabecular_hu = marrow;
    t.canal_area_mm2 = kPi * s.canal_half_width * s.canal_half_depth;
    t.canal_ap_mm = 2 * s.canal_half_depth;
    out.vertebrae.push_back(t);
  }
  for (std::size_t i = 0; i < out.vertebrae.size(); ++i) {
    auto& t = out.vertebrae[i];
    double expected = 0;
    int n = 0;
    for (std::size_t j : {i - 1, i + 1})
      if (j < out.vertebrae.size()) {
        expected += out.vertebrae[j].posterior_height;
        ++n;
      }
    t.genant_grade = genant_grade(t.anterior_height, t.middle_height, t.posterior_height, n ? expected / n : 0).grade;
  }
  // Discs: between the planes of the lower and upper endplates, along their mean axis,
  // at the fractions of the disc's depth (its section is an ellipse of the mean depth).
  for (std::size_t i = 0; i + 1 < spine.size(); ++i) {
    const VertebraShape& up = spine[i];
    const VertebraShape& down = spine[i + 1];
    if (down.fracture.size() && down.fracture != "none") continue;  // a lowered endplate leaves a gap
    PhantomDiscTruth d;
    d.label = disc_label_below(up.label);
    d.name = label_name(d.label);
    const Vec3 axis = unit({up.axial[0] + down.axial[0], up.axial[1] + down.axial[1], up.axial[2] + down.axial[2]});
    Vec3 post = up.posterior;
    const double along = phantom::dot(post, axis);
    for (int r = 0; r < 3; ++r) post[r] -= along * axis[r];
    post = unit(post);
    Vec3 c;
    for (int r = 0; r < 3; ++r)
      c[r] = 0.5 * ((up.centre[r] - up.body_height / 2 * up.axial[r]) + (down.centre[r] + down.body_height / 2 * down.axial[r]));
    const double half_depth = 0.97 * (up.body_depth + down.body_depth) / 4;
    double* h[3] = {&d.anterior_height, &d.middle_height, &d.posterior_height};
    for (int q = 0; q < 3; ++q) {
      const double v = -half_depth + fractions[q] * 2 * half_depth;
      Vec3 x;
      for (int r = 0; r < 3; ++r) x[r] = c[r] + v * post[r];
      // Line x + t axis meets the plane (p - centre) . n = offset at t = (offset - (x - centre) . n) / (axis . n).
      auto meet = [&](const VertebraShape& s, double offset) {
        const Vec3 q2{x[0] - s.centre[0], x[1] - s.centre[1], x[2] - s.centre[2]};
        return (offset - phantom::dot(q2, s.axial)) / phantom::dot(axis, s.axial);
      };
      *h[q] = meet(up, -up.body_height / 2) - meet(down, down.body_height / 2);
    }
    out.discs.push_back(d);
  }
  // Lordosis and the coronal Cobb angle from the endplates (parallel to each body's
  // section, so their normals are the body axes; a fracture tilts only an upper endplate).
  const VertebraShape *l1 = nullptr, *l5 = nullptr, *t4 = nullptr, *t12 = nullptr;
  for (const auto& s : spine) {
    if (s.label == label::kL1) l1 = &s;
    if (s.label == label::kL5) l5 = &s;
    if (s.label == label::kT1 + 3) t4 = &s;
    if (s.label == label::kT12) t12 = &s;
  }
  // A wedge fracture tilts the upper endplate: the surface rises posteriorly by
  // loss x height over the depth (anterior wall to the front of the canal).
  auto upper_normal = [&](const VertebraShape& s) {
    Vec3 up = s.axial;
    if (s.fracture == "wedge") {
      const double k = s.body_height * s.fracture_loss / (s.body_depth + 1);
      for (int r = 0; r < 3; ++r) up[r] -= k * s.posterior[r];
      up = unit(up);
    }
    return up;
  };
  if (l1 && l5) out.lordosis_deg = sagittal_tilt(upper_normal(*l1)) - sagittal_tilt(l5->axial);
  if (t4 && t12) out.kyphosis_deg = sagittal_tilt(t12->axial) - sagittal_tilt(upper_normal(*t4));
  double lo = 1e9, hi = -1e9;
  for (const auto& s : spine) {
    lo = std::min(lo, coronal_tilt(s.axial));
    hi = std::max(hi, coronal_tilt(s.axial));
  }
  out.coronal_cobb_deg = spine.empty() ? 0 : hi - lo;
}

PhantomVolume render_volume(const std::vector<VertebraShape>& spine, const std::string& modality,
                            double spacing, double margin, double noise, bool bias, bool torso, std::mt19937_64& rng,
                            std::optional<double> marrow_hu = std::nullopt) {
  Bounds bounds;
  for (const auto& s : spine) add_vertebra_bounds(s, bounds);
  const bool with_sacrum = torso && spine.back().label == label::kL5;
  const SacrumFrame sacrum = sacrum_frame(spine.back());
  if (torso) {
    for (const auto& s : spine) add_torso_bounds(s, bounds);
    if (with_sacrum) add_pelvis_bounds(sacrum, bounds);
  }
  Geometry g;
  g.dimension = 3;
  g.spacing = {spacing, spacing, spacing};
  for (int i = 0; i < 3; ++i) {
    const double lo = bounds.lo[i] - margin, hi = bounds.hi[i] + margin;
    g.origin[i] = lo;
    g.size[i] = static_cast<std::size_t>(std::ceil((hi - lo) / spacing)) + 1;
  }
  if (g.voxel_count() > 400'000'000ULL) throw usage_error("phantom too large; use a coarser spacing");
  auto values = tissue_values(modality);
  if (marrow_hu && modality == "ct") values[kMarrow] = *marrow_hu;
  PhantomVolume out;
  out.image = FloatImage(g, static_cast<float>(values[kAir]));
  out.labels = LabelImage(g, 0);

  // Body outline: an axial ellipse filling the grid, centred laterally on the spine and
  // reaching from in front of the bodies to behind the spinous processes; 10 mm of fat.
  // With a torso the outline is the box of all structures (the spine then lies at the back).
  const double cx = (bounds.lo[0] + bounds.hi[0]) / 2, cy = (bounds.lo[1] + bounds.hi[1]) / 2;
  const double rx = (bounds.hi[0] - bounds.lo[0]) / 2 + margin * 0.85 + (torso ? 12 : 0);
  const double ry = (bounds.hi[1] - bounds.lo[1]) / 2 + margin * 0.85 + (torso ? 12 : 0);
  for (std::size_t k = 0; k < g.size[2]; ++k)
    for (std::size_t j = 0; j < g.size[1]; ++j)
      for (std::size_t i = 0; i < g.size[0]; ++i) {
        const double x = g.origin[0] + i * spacing, y = g.origin[1] + j * spacing;
        const double r = std::hypot((x - cx) / rx, (y - cy) / ry);
        if (r <= 1) out.image.at(i, j, k) = static_cast<float>(values[r > 1 - 10 / std::min(rx, ry) ? kFat : kMuscle]);
      }

  // Sacrum and iliac wings first: vertebrae and discs are drawn after them.
  if (with_sacrum) {
    Bounds b;
    add_pelvis_bounds(sacrum, b);
    const auto [lo, hi] = voxel_range(b, g);
    for (std::size_t k = lo[2]; k < hi[2]; ++k)
      for (std::size_t j = lo[1]; j < hi[1]; ++j)
        for (std::size_t i = lo[0]; i < hi[0]; ++i) {
          const Hit hit = pelvis_hit(sacrum, g.index_to_lps(double(i), double(j), double(k)));
          if (hit.tissue == kAir) continue;
          out.image.at(i, j, k) = static_cast<float>(values[hit.tissue]);
          out.labels.at(i, j, k) = static_cast<std::int16_t>(hit.label);
        }
  }

  // Discs, then vertebrae with canal; each object only within its bounding box.
  const int last_cord_label = label::kL1;
  for (std::size_t n = 0; n < spine.size(); ++n) {
    const VertebraShape& s = spine[n];
    Bounds b;
    add_vertebra_bounds(s, b);
    if (torso) add_torso_bounds(s, b);
    const auto [lo, hi] = voxel_range(b, g);
    const VertebraShape* below = n + 1 < spine.size() ? &spine[n + 1] : nullptr;
    const RibCage ribs = rib_cage(s);
    const float muscle = static_cast<float>(values[kMuscle]);
    for (std::size_t k = lo[2]; k < hi[2]; ++k)
      for (std::size_t j = lo[1]; j < hi[1]; ++j)
        for (std::size_t i = lo[0]; i < hi[0]; ++i) {
          const Vec3 p = g.index_to_lps(double(i), double(j), double(k));
          const LocalPoint lp = to_local(s, p);
          auto& lab = out.labels.at(i, j, k);
          auto& val = out.image.at(i, j, k);
          if (torso && lab == 0) {
            const bool own_slab = std::abs(lp.w) <= s.body_height / 2 + s.disc_height / 2 + 0.5;
            if (is_thoracic(s.label)) {
              const Tissue t = thoracic_tissue(s, ribs, lp);
              if (t == kCortex || t == kMarrow) val = static_cast<float>(values[t]);
              else if (t == kLung && val == muscle) val = static_cast<float>(values[kLung]);
            }
            // Liver (patient right, T10..L1) and kidneys (T12..L2) in the vertebra's own slab.
            if (own_slab && val == muscle) {
              const double lu = (lp.u + 80) / 70, lv = (lp.v + 70) / 60;
              const double ku = (std::abs(lp.u) - 65) / 26, kv = (lp.v - 5) / 22;
              if (s.label >= label::kT10 && s.label <= label::kL1 && lu * lu + lv * lv <= 1)
                val = static_cast<float>(values[kLiver]);
              else if (s.label >= label::kT12 && s.label <= label::kL2 && ku * ku + kv * kv <= 1)
                val = static_cast<float>(values[kKidney]);
            }
          }
          // Disc below: between this body's lower and the next body's upper endplate
          // (for L5 over the sacrum: down to the sacral plateau).
          // A wedge-shaped (lordotic) disc is taller in front than disc_height: the lower
          // body's endplate bounds it, the slab only where there is none (over the sacrum).
          const double slab = below ? 2 * s.disc_height + 2.0 : s.disc_height + 1.0;
          if ((below || with_sacrum) && lp.w < -s.body_height / 2 && lp.w >= -s.body_height / 2 - slab) {
            bool inside_next = false;
            double a = 0, d = 0;
            if (below) {
              const LocalPoint lb = to_local(*below, p);
              a = 0.97 * (s.body_width + below->body_width) / 4;
              d = 0.97 * (s.body_depth + below->body_depth) / 4;
              inside_next = lb.w > below->body_height / 2;
            } else {
              a = 0.97 * s.body_width / 2;
              d = 0.97 * s.body_depth / 2;
              inside_next = true;
            }
            if (inside_next && (lp.u / a) * (lp.u / a) + (lp.v / d) * (lp.v / d) <= 1 && lab == 0) {
              lab = static_cast<std::int16_t>(disc_label_below(s.label));
              val = static_cast<float>(values[kDisc]);
            }
          }
          const Hit hit = classify_vertebra(s, lp, s.label <= last_cord_label);
          if (hit.label == 0) continue;
          const bool is_bone = hit.tissue == kCortex || hit.tissue == kMarrow;
          // Bone wins over canal and disc; canal never overwrites bone or disc.
          if (is_bone || lab == 0) {
            lab = static_cast<std::int16_t>(hit.label);
            val = static_cast<float>(values[hit.tissue]);
          }
        }
  }

  // Smooth bias field (MR) and noise.
  std::normal_distribution<double> gauss(0.0, 1.0);
  std::uniform_real_distribution<double> phase(0.0, 6.283);
  const double p1 = phase(rng), p2 = phase(rng), p3 = phase(rng);
  const double noise_sd = noise * (modality == "ct" ? 20.0 : 0.03 * values[kMuscle]);
  const double ex = g.size[0] * spacing, ey = g.size[1] * spacing, ez = g.size[2] * spacing;
  for (std::size_t k = 0; k < g.size[2]; ++k)
    for (std::size_t j = 0; j < g.size[1]; ++j)
      for (std::size_t i = 0; i < g.size[0]; ++i) {
        float& v = out.image.at(i, j, k);
        double x = v;
        if (bias && modality != "ct") {
          const double f = 1 + 0.25 * std::sin(3.1416 * i * spacing / ex + p1) * std::cos(3.1416 * j * spacing / ey + p2) +
                           0.2 * std::sin(3.1416 * k * spacing / ez + p3);
          x *= f;
        }
        if (noise_sd > 0) x += noise_sd * gauss(rng);
        if (modality != "ct") x = std::abs(x);  // magnitude images are non-negative
        v = static_cast<float>(x);
      }

  add_measurement_truth(spine, modality == "ct" ? values[kMarrow] : 0.0, out);
  if (with_sacrum) {
    Vec3 c;
    for (int i = 0; i < 3; ++i) c[i] = sacrum.top[i] + 30 * sacrum.down[i];
    PhantomVertebraTruth t;
    t.label = label::kSacrum;
    t.name = "S";
    t.centroid_lps_mm = c;
    out.vertebrae.push_back(t);
  }
  return out;
}

int parse_vertebra(const std::string& name) {
  const auto v = label_from_name(name);
  if (!v || *v < 1 || *v > 24) throw usage_error("'" + name + "' is not a vertebra between C1 and L5");
  return *v;
}

// "L1:wedge:0.3" -> (20, "wedge", 0.3).
std::tuple<int, std::string, double> parse_fracture(const std::string& text) {
  const auto a = text.find(':'), b = text.rfind(':');
  if (a == std::string::npos || a == b) throw usage_error("fracture '" + text + "' is not NAME:TYPE:LOSS, e.g. L1:wedge:0.3");
  const int label = parse_vertebra(text.substr(0, a));
  const std::string type = text.substr(a + 1, b - a - 1);
  if (type != "wedge" && type != "biconcave" && type != "crush")
    throw usage_error("fracture type '" + type + "' is not wedge, biconcave or crush");
  char* end = nullptr;
  const std::string loss_text = text.substr(b + 1);
  const double loss = std::strtod(loss_text.c_str(), &end);
  if (end == loss_text.c_str() || *end || !(loss > 0 && loss < 0.8))
    throw usage_error("fracture loss '" + loss_text + "' must be a fraction between 0 and 0.8");
  return {label, type, loss};
}

}  // namespace

void PhantomConfig::validate() const {
  tissue_values(modality);
  if (parse_vertebra(first_vertebra) > parse_vertebra(last_vertebra))
    throw usage_error("phantom first vertebra must lie above the last");
  if (!(spacing_mm >= 0.25 && spacing_mm <= 10)) throw usage_error("phantom spacing must be 0.25..10 mm");
  if (!(std::abs(scoliosis_deg) <= 90)) throw usage_error("phantom scoliosis must be within +-90 degrees");
  if (!(scoliosis_apex > 0 && scoliosis_apex < 1)) throw usage_error("phantom apex must lie in (0, 1)");
  if (!(noise >= 0)) throw usage_error("phantom noise must be >= 0");
  if (!(margin_mm >= 0 && margin_mm <= 300)) throw usage_error("phantom margin must be 0..300 mm");
  for (const auto& f : fractures) parse_fracture(f);
  if (marrow_hu && !(*marrow_hu >= -200 && *marrow_hu <= 1000)) throw usage_error("phantom marrow HU must be -200..1000");
}

nlohmann::json PhantomConfig::to_json() const {
  return {{"modality", modality},      {"first_vertebra", first_vertebra}, {"last_vertebra", last_vertebra},
          {"spacing_mm", spacing_mm},  {"scoliosis_deg", scoliosis_deg},   {"scoliosis_apex", scoliosis_apex},
          {"noise", noise},            {"bias_field", bias_field},         {"margin_mm", margin_mm},
          {"seed", seed}, {"torso", torso}, {"fractures", fractures},
          {"marrow_hu", marrow_hu ? nlohmann::json(*marrow_hu) : nlohmann::json(nullptr)}};
}

PhantomVolume make_phantom_volume(const PhantomConfig& c) {
  c.validate();
  std::mt19937_64 rng(c.seed);
  const double half = c.scoliosis_deg / 2;
  const std::vector<phantom::TiltKnot> knots{{0, half}, {c.scoliosis_apex, 0}, {1, -half}};
  auto spine = phantom::build_spine(parse_vertebra(c.first_vertebra), parse_vertebra(c.last_vertebra), knots, rng);
  for (const auto& text : c.fractures) {
    const auto [label, type, loss] = parse_fracture(text);
    bool found = false;
    for (auto& s : spine)
      if (s.label == label) {
        s.fracture = type;
        s.fracture_loss = loss;
        found = true;
      }
    if (!found) throw usage_error("fracture '" + text + "': the vertebra is not in the phantom");
  }
  return render_volume(spine, c.modality, c.spacing_mm, c.margin_mm, c.noise, c.bias_field, c.torso, rng, c.marrow_hu);
}

void RadiographConfig::validate() const {
  if (!(std::abs(scoliosis_deg) <= 80)) throw usage_error("radiograph scoliosis must be within +-80 degrees");
  if (!(std::abs(second_curve_deg) <= 80)) throw usage_error("second curve must be within +-80 degrees");
  if (!(scoliosis_apex >= 0.1 && scoliosis_apex <= 0.9)) throw usage_error("radiograph apex must lie in 0.1..0.9");
  if (!(pixel_mm >= 0.1 && pixel_mm <= 2)) throw usage_error("radiograph pixel size must be 0.1..2 mm");
  if (!(noise >= 0)) throw usage_error("radiograph noise must be >= 0");
}

nlohmann::json RadiographConfig::to_json() const {
  return {{"scoliosis_deg", scoliosis_deg}, {"scoliosis_apex", scoliosis_apex},
          {"second_curve_deg", second_curve_deg}, {"pixel_mm", pixel_mm}, {"noise", noise}, {"seed", seed}};
}

PhantomRadiograph make_phantom_radiograph(const RadiographConfig& c) {
  c.validate();
  std::mt19937_64 rng(c.seed);
  // One curve of the requested angle around the apex, optionally followed by a
  // compensatory curve below it; tilts are constant outside the ramps.
  const double half = c.scoliosis_deg / 2;
  const double top = std::max(0.0, c.scoliosis_apex - 0.3), bottom = std::min(1.0, c.scoliosis_apex + 0.3);
  std::vector<phantom::TiltKnot> knots{{top, half}, {c.scoliosis_apex, 0}, {bottom, -half}};
  if (c.second_curve_deg != 0 && bottom < 0.95) {
    knots.push_back({std::min(1.0, bottom + 0.35), -half + c.second_curve_deg});
  }
  const auto spine = phantom::build_spine(label::kT1, label::kL5, knots, rng);

  // Render a coarse CT of the segment and project it front to back.
  const double voxel = 1.5;
  PhantomVolume vol = render_volume(spine, "ct", voxel, 40.0, 0.0, false, false, rng);
  const Geometry& g = vol.image.geometry;
  Geometry g2 = make_geometry_2d(g.size[0], g.size[2], {voxel, voxel});
  FloatImage projection(g2, 0.f);
  for (std::size_t k = 0; k < g.size[2]; ++k)
    for (std::size_t i = 0; i < g.size[0]; ++i) {
      double sum = 0;
      for (std::size_t j = 0; j < g.size[1]; ++j) {
        // Attenuation relative to water, with bone weighted up as at diagnostic energies.
        const double hu = vol.image.at(i, j, k);
        sum += std::max(0.0, (hu + 1000.0) / 1000.0) + (hu > 150 ? 2.5 * hu / 1000.0 : 0.0);
      }
      // Row 0 is the most superior slice: radiographs are shown head up.
      projection.at(i, g.size[2] - 1 - k) = static_cast<float>(sum * voxel);
    }
  // Upsample to the requested pixel size.
  Geometry out_g = make_geometry_2d(static_cast<std::size_t>(g.size[0] * voxel / c.pixel_mm),
                                    static_cast<std::size_t>(g.size[2] * voxel / c.pixel_mm), {c.pixel_mm, c.pixel_mm});
  out_g.origin = {(c.pixel_mm - voxel) / 2, (c.pixel_mm - voxel) / 2, 0};
  FloatImage img = resample_image_to(projection, out_g, 0.f);
  // Film-like response: more attenuation is brighter; noise; 8-bit range.
  const auto range = intensity_range(img);
  std::normal_distribution<double> gauss(0.0, 1.0);
  for (float& v : img.voxels) {
    const double t = (v - range.min) / std::max(1e-6f, range.max - range.min);
    const double shaped = 20 + 215 * std::pow(t, 1.6) + 6 * c.noise * gauss(rng);
    v = static_cast<float>(std::clamp(std::round(shaped), 0.0, 255.0));
  }

  PhantomRadiograph out;
  out.image = std::move(img);
  // Landmarks: body corners in the coronal projection. Pixel (col,row) of LPS point:
  // col = (x - x0) / pixel, row = (z_top - z) / pixel, with the 1.5 mm grid's centres.
  const double x0 = g.origin[0] - voxel / 2, z_top = g.origin[2] + (g.size[2] - 1) * voxel + voxel / 2;
  auto to_px = [&](const Vec3& p) { return Point2{(p[0] - x0) / c.pixel_mm - 0.5, (z_top - p[2]) / c.pixel_mm - 0.5}; };
  for (const auto& s : spine) {
    const double a = s.body_width / 2, h = s.body_height / 2;
    for (auto [su, sw] : {std::pair{-1.0, 1.0}, {1.0, 1.0}, {-1.0, -1.0}, {1.0, -1.0}}) {
      Vec3 p;
      for (int i = 0; i < 3; ++i) p[i] = s.centre[i] + su * a * s.lateral[i] + sw * h * s.axial[i];
      out.landmarks.push_back(to_px(p));
    }
  }
  out.angles = compute_cobb_angles(out.landmarks, static_cast<double>(out.image.ny()));
  return out;
}

}  // namespace spine
