// Phantom volumes (CT in HU, MR T1/T2-like) with label maps, and frontal radiographs with
// exact AASCE landmarks, rendered from the geometric spine model.
#include "spine/phantom.hpp"

#include <algorithm>
#include <cmath>
#include <random>

#include "phantom/spine_model.hpp"
#include "spine/error.hpp"
#include "spine/labels.hpp"
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

Hit classify_vertebra(const VertebraShape& s, const LocalPoint& p, bool cord_level) {
  const double a = s.body_width / 2, b = s.body_depth / 2, h = s.body_height / 2;
  // Body: elliptic cylinder with a 1.5 mm cortical shell.
  const double r = std::sqrt((p.u / a) * (p.u / a) + (p.v / b) * (p.v / b));
  if (r <= 1 && std::abs(p.w) <= h) {
    const double edge = std::min((1 - r) * std::min(a, b), h - std::abs(p.w));
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
      if (ring_u * ring_u + ring_v * ring_v <= 1) return {s.label, kCortex};
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
  const double ext_w = s.body_height / 2 + s.disc_height + 2;
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

PhantomVolume render_volume(const std::vector<VertebraShape>& spine, const std::string& modality,
                            double spacing, double margin, double noise, bool bias, bool torso, std::mt19937_64& rng) {
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
  const auto values = tissue_values(modality);
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
          if ((below || with_sacrum) && lp.w < -s.body_height / 2 && lp.w >= -s.body_height / 2 - s.disc_height - 1.0) {
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

  for (const auto& s : spine) out.vertebrae.push_back({s.label, s.name, s.centre});
  if (with_sacrum) {
    Vec3 c;
    for (int i = 0; i < 3; ++i) c[i] = sacrum.top[i] + 30 * sacrum.down[i];
    out.vertebrae.push_back({label::kSacrum, "S", c});
  }
  return out;
}

int parse_vertebra(const std::string& name) {
  const auto v = label_from_name(name);
  if (!v || *v < 1 || *v > 24) throw usage_error("'" + name + "' is not a vertebra between C1 and L5");
  return *v;
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
}

nlohmann::json PhantomConfig::to_json() const {
  return {{"modality", modality},      {"first_vertebra", first_vertebra}, {"last_vertebra", last_vertebra},
          {"spacing_mm", spacing_mm},  {"scoliosis_deg", scoliosis_deg},   {"scoliosis_apex", scoliosis_apex},
          {"noise", noise},            {"bias_field", bias_field},         {"margin_mm", margin_mm},
          {"seed", seed}, {"torso", torso}};
}

PhantomVolume make_phantom_volume(const PhantomConfig& c) {
  c.validate();
  std::mt19937_64 rng(c.seed);
  const double half = c.scoliosis_deg / 2;
  const std::vector<phantom::TiltKnot> knots{{0, half}, {c.scoliosis_apex, 0}, {1, -half}};
  const auto spine = phantom::build_spine(parse_vertebra(c.first_vertebra), parse_vertebra(c.last_vertebra), knots, rng);
  return render_volume(spine, c.modality, c.spacing_mm, c.margin_mm, c.noise, c.bias_field, c.torso, rng);
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
