// Measurements of a whole spine label map: per vertebra, per disc and for the spine (see
// measure.hpp for what is measured; body_geometry.hpp for how).
#include <algorithm>
#include <atomic>
#include <future>
#include <thread>
#include <cmath>
#include <map>
#include <numeric>
#include <queue>

#include "measure/body_geometry.hpp"
#include "spine/csv.hpp"
#include "spine/error.hpp"
#include "spine/labels.hpp"
#include "spine/measure.hpp"

namespace spine {

using namespace measure;

namespace {


double median(std::vector<double> v) {
  if (v.empty()) return 0;
  const std::size_t n = v.size() / 2;
  std::nth_element(v.begin(), v.begin() + static_cast<long>(n), v.end());
  return v[n];
}

double quantile(std::vector<double> v, double q) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  const double at = q * double(v.size() - 1);
  const std::size_t i = static_cast<std::size_t>(at);
  const double f = at - double(i);
  return i + 1 < v.size() ? v[i] * (1 - f) + v[i + 1] * f : v[i];
}

// Voxels of the crop in 6-connected pieces: the fraction of the mask outside the largest.
double fragmentation(const Mask& m) {
  const auto& n = m.geometry().size;
  const auto& bits = m.bits();
  std::vector<int> comp(bits.size(), -1);
  std::size_t largest = 0;
  int next = 0;
  for (std::size_t s = 0; s < bits.size(); ++s) {
    if (!bits[s] || comp[s] >= 0) continue;
    std::size_t size = 0;
    std::queue<std::size_t> q;
    q.push(s);
    comp[s] = next;
    while (!q.empty()) {
      const std::size_t c = q.front();
      q.pop();
      ++size;
      const std::size_t i = c % n[0], j = (c / n[0]) % n[1], k = c / (n[0] * n[1]);
      const long step[3] = {1, long(n[0]), long(n[0] * n[1])};
      const std::size_t at[3] = {i, j, k};
      for (int a = 0; a < 3; ++a)
        for (int d : {-1, 1}) {
          if ((d < 0 && at[a] == 0) || (d > 0 && at[a] + 1 >= n[a])) continue;
          const std::size_t nb = static_cast<std::size_t>(long(c) + d * step[a]);
          if (bits[nb] && comp[nb] < 0) {
            comp[nb] = next;
            q.push(nb);
          }
        }
    }
    largest = std::max(largest, size);
    ++next;
  }
  return m.count() ? 1.0 - double(largest) / double(m.count()) : 0;
}

Endplate endplate_of(const PlaneFit& p) {
  Endplate e;
  e.centre = p.centre;
  e.normal = p.normal;
  e.points = p.points;
  e.rms_mm = p.rms;
  // Tilts are of the upward normal, whichever surface this is.
  const Vec3d up = p.normal[2] >= 0 ? p.normal : scale(p.normal, -1);
  e.sagittal_deg = sagittal_tilt_deg(up);
  e.coronal_deg = coronal_tilt_deg(up);
  return e;
}

// True when `lower` is the vertebra right below `upper` (T12 -> L1, or T13 / L6 where
// the spine has them).
bool adjacent(int upper, int lower) {
  if ((upper == label::kT12 && lower == label::kT13) || (upper == label::kL5 && lower == label::kL6)) return true;
  const auto next = next_vertebra_below(upper);
  return next && *next == lower;
}

Vec3d upward(const Vec3d& n) { return n[2] >= 0 ? n : scale(n, -1); }

// Sagittal angle from an upper to a lower endplate (normals taken upward): positive when
// the space between them opens anteriorly (lordosis), negative when posteriorly.
double sagittal_angle(const Vec3d& upper, const Vec3d& lower) {
  return sagittal_tilt_deg(upward(upper)) - sagittal_tilt_deg(upward(lower));
}

struct Work {
  VertebraMeasurement m;
  std::optional<Mask> body;
  std::optional<BodyFrame> frame;
  bool cut = false;
};

// The surface of `target` met from `from` along `dir` (first entry), within `max_mm`.
std::optional<double> entry_distance(const Mask& target, const Vec3d& from, const Vec3d& dir, double max_mm = 30) {
  double prev = target.sample(from);
  if (prev >= 0.5) return 0.0;
  for (double t = 0.2; t <= max_mm; t += 0.2) {
    const double v = target.sample(add(from, scale(dir, t)));
    if (v >= 0.5) return t - 0.2 + 0.2 * (0.5 - prev) / (v - prev);
    prev = v;
  }
  return std::nullopt;
}

void measure_vertebra(const LabelImage& labels, const std::map<int, LabelBox>& boxes, const FloatImage* image,
                      const MeasureOptions& o, Work& w, const Vec3d& axial_guess, const std::optional<Mask>& canal) {
  VertebraMeasurement& v = w.m;
  const Mask whole(labels, {v.label}, boxes);
  v.volume_mm3 = double(whole.count()) * whole.voxel_volume();
  const bool label_cut = touches_border(boxes.at(v.label), labels.geometry);
  const double pieces = fragmentation(whole);
  if (pieces > 0.05)
    v.flags.push_back("segmentation in pieces (" + std::to_string(int(std::round(pieces * 100))) +
                      " % outside the largest): measurements may be of a part");
  // The body lies in front of the posterior wall: where the mid-sagittal line from the
  // deepest point of the front part (the body is the thickest part there) leaves the bone.
  // Its lateral position is the label's centroid's: the deepest point of a dished
  // (biconcave) body can lie off the midline, and a line from there runs into a pedicle.
  const Vec3d post = orthogonalised({0, 1, 0}, normalised(axial_guess));
  const Vec3d lateral = normalised(cross(post, normalised(axial_guess)));
  const Vec3d c = whole.centroid();
  // In the front 40 % of the label: a crushed body can be thinner than the posterior elements.
  Vec3d deep = whole.deepest_point(post);
  deep = add(deep, scale(lateral, dot(sub(c, deep), lateral)));
  if (!whole.inside(deep)) deep = c;
  const double wall = exit_distance(whole, deep, post).value_or(0);
  Mask body = whole.filtered([&](const Vec3d& p) { return dot(sub(p, deep), post) <= wall; });
  v.posterior_elements = body.count() + body.count() / 50 < whole.count();
  v.body_volume_mm3 = double(body.count()) * body.voxel_volume();
  // A cut body spoils heights and grade; cut processes (a spine-centred crop) only the volume.
  w.cut = body.touches_grid_edge();
  if (w.cut) v.flags.push_back("body cut by the field of view: heights, grade and volume are not of the whole vertebra");
  else if (label_cut) v.notes.push_back("posterior elements cut by the field of view: volume is not of the whole vertebra");
  const auto frame = body_frame(body, axial_guess);
  if (!frame) {
    v.flags.push_back("body too small or its endplates not found: no heights");
    return;
  }
  v.centre = frame->centre;
  v.axial = frame->axial;
  v.posterior = frame->posterior;
  v.depth_mm = frame->anterior_mm + frame->posterior_mm;
  v.width_mm = 2 * frame->half_width_mm;
  v.upper = endplate_of(*frame->upper);
  v.lower = endplate_of(*frame->lower);
  v.heights = heights_in_frame(body, *frame);
  if (!v.heights.valid) v.flags.push_back("heights not measurable in the mid-sagittal plane");
  // Trabecular attenuation: the core of the body, clear of the cortex and endplates.
  if (image && o.ct) {
    const std::vector<float> dist = body.distance_inside();
    v.core_erosion_mm = std::clamp(0.25 * std::min(v.heights.middle, v.depth_mm), 2.0, 5.0);
    std::vector<double> hu;
    for (std::size_t c = 0; c < dist.size(); ++c)
      if (body.bits()[c] && dist[c] >= v.core_erosion_mm) hu.push_back(image->voxels[body.full_index(c)]);
    v.trabecular_voxels = static_cast<int>(hu.size());
    if (hu.size() >= 20) {
      v.trabecular_hu_median = median(hu);
      v.trabecular_hu_iqr = quantile(hu, 0.75) - quantile(hu, 0.25);
    } else {
      v.flags.push_back("body core too small for trabecular attenuation");
    }
  }
  // Canal: its section in the plane through the body centre perpendicular to the axis,
  // sampled on a 0.25 mm grid behind the body.
  if (canal) {
    const double step = 0.25;
    std::vector<std::pair<double, double>> in;  // (lateral, posterior) of canal samples
    for (double u = -30; u <= 30; u += step)
      for (double p = frame->posterior_mm - 2; p <= frame->posterior_mm + 45; p += step) {
        const Vec3d at = add(frame->centre, add(scale(frame->lateral, u), scale(frame->posterior, p)));
        if (canal->inside(at)) in.push_back({u, p});
      }
    if (in.size() >= 16) {
      v.canal_area_mm2 = double(in.size()) * step * step;
      double uc = 0;
      for (const auto& s : in) uc += s.first;
      uc /= double(in.size());
      double lo = 1e9, hi = -1e9;
      for (const auto& s : in)
        if (std::fabs(s.first - uc) <= step) {
          lo = std::min(lo, s.second);
          hi = std::max(hi, s.second);
        }
      if (hi >= lo) v.canal_ap_mm = hi - lo + step;
    }
  }
  w.body = std::move(body);
  w.frame = frame;
}

}  // namespace

SpineMeasurements measure_spine(const LabelImage& labels, const FloatImage* image, const MeasureOptions& o) {
  if (labels.geometry.dimension != 3) throw input_error("measurements need a 3D label map");
  if (image && !image->geometry.same_grid(labels.geometry, 1e-4))
    throw internal_error("measure_spine: image and label map on different grids");
  SpineMeasurements out;
  const std::map<int, LabelBox> boxes = label_boxes(labels);
  std::map<int, std::size_t> counts;
  for (const auto& [value, box] : boxes) counts[value] = box.count;
  std::vector<int> vertebrae;
  for (const auto& [value, n] : counts)
    if (is_vertebra_label(value) && value != label::kSacrum && n >= 50) vertebrae.push_back(value);
  std::sort(vertebrae.begin(), vertebrae.end(), [](int a, int b) { return craniocaudal_rank(a) < craniocaudal_rank(b); });
  if (vertebrae.empty()) {
    out.flags.push_back("no vertebra labels (VerSe numbers 1-25, 28) in the label map");
    return out;
  }
  std::map<int, Vec3d> centroid;
  for (int v : vertebrae) centroid[v] = box_centroid(boxes.at(v), labels.geometry);
  std::optional<Mask> canal;
  if (counts.count(label::kSpinalCanal) || counts.count(label::kSpinalCord)) {
    Mask c(labels, {label::kSpinalCanal, label::kSpinalCord}, boxes);
    if (!c.empty()) canal = std::move(c);
  }

  std::vector<Work> work(vertebrae.size());
  // Vertebrae are independent: measured in parallel, each into its own Work.
  auto measure_one = [&](std::size_t i) {
    Work& w = work[i];
    w.m.label = vertebrae[i];
    w.m.name = label_name(vertebrae[i]);
    // The spine's direction here, from the neighbouring centroids (or patient superior).
    const Vec3d above = i > 0 ? centroid[vertebrae[i - 1]] : centroid[vertebrae[i]];
    const Vec3d below = i + 1 < vertebrae.size() ? centroid[vertebrae[i + 1]] : centroid[vertebrae[i]];
    Vec3d guess = sub(above, below);
    if (norm(guess) < 5) guess = {0, 0, 1};
    measure_vertebra(labels, boxes, image, o, w, upward(normalised(guess)), canal);
  };
  const unsigned cores = std::max(1u, std::thread::hardware_concurrency());
  const std::size_t threads =
      std::min<std::size_t>(vertebrae.size(), o.threads > 0 ? static_cast<std::size_t>(o.threads) : cores);
  {
    std::atomic<std::size_t> next{0};
    std::vector<std::future<void>> running;
    for (std::size_t t = 0; t < threads; ++t)
      running.push_back(std::async(std::launch::async, [&] {
        for (std::size_t i = next++; i < work.size(); i = next++) measure_one(i);
      }));
    for (auto& r : running) r.get();  // rethrows a worker's exception
  }

  // Genant: the posterior height against the neighbours' (adjacent levels only).
  for (std::size_t i = 0; i < work.size(); ++i) {
    VertebraMeasurement& v = work[i].m;
    if (!v.heights.valid) continue;
    std::vector<double> neighbours;
    for (std::size_t j : {i - 1, i + 1}) {
      if (j >= work.size()) continue;  // i - 1 wraps for i == 0
      const auto& n = work[j].m;
      const bool next_to = j < i ? adjacent(n.label, v.label) : adjacent(v.label, n.label);
      if (next_to && n.heights.valid && !work[j].cut) neighbours.push_back(n.heights.posterior);
    }
    const double expected =
        neighbours.empty() ? 0 : std::accumulate(neighbours.begin(), neighbours.end(), 0.0) / double(neighbours.size());
    v.genant = genant_grade(v.heights.anterior, v.heights.middle, v.heights.posterior, expected);
    // Confidence: how far the reduction lies from the nearest grade boundary, against
    // a height uncertainty of about 3 % (0.8 mm of 25 mm), and what the flags say.
    double margin = 1;
    for (double t : {0.20, 0.25, 0.40}) margin = std::min(margin, std::fabs(v.genant.reduction - t));
    double conf = 0.5 + 0.5 * std::min(1.0, margin / 0.05);
    if (work[i].cut) conf *= 0.3;
    if (neighbours.empty()) conf *= 0.8;  // a crush fracture cannot be seen without neighbours
    for (const auto& f : v.flags)
      if (f.rfind("segmentation in pieces", 0) == 0) conf *= 0.5;
    v.genant_confidence = round_to(conf, 0.01);
    if (o.outlines_from_ct_model && v.genant.grade >= 1)
      v.flags.push_back(
          "deformity graded on the CT model's outlines, which on real CT can put a body's borders where it is not "
          "(docs/measure.md): check the image, or measure on manual labels");
  }

  // Discs: the disc label where the map has one, else the gap between the endplates.
  for (std::size_t i = 0; i + 1 < work.size(); ++i) {
    const Work& up = work[i];
    const Work& down = work[i + 1];
    if (!adjacent(up.m.label, down.m.label)) continue;
    if (!up.frame || !down.frame) continue;
    DiscMeasurement d;
    d.label = disc_label_below(up.m.label);
    d.name = label_name(d.label);
    const Vec3d axis = normalised(add(up.frame->axial, down.frame->axial));
    d.wedge_deg = sagittal_angle(up.m.lower.normal, down.m.upper.normal);
    const auto found = counts.find(d.label);
    if (found != counts.end() && found->second >= 50) {
      const Mask disc(labels, {d.label}, boxes);
      d.method = "disc label";
      d.volume_mm3 = double(disc.count()) * disc.voxel_volume();
      const auto f = body_frame(disc, axis);
      if (f) d.heights = heights_in_frame(disc, *f);
      if (!d.heights.valid) d.flags.push_back("disc heights not measurable");
      if (image && o.mri && up.body && down.body) {
        std::vector<double> disc_values, body_values;
        for (std::size_t c = 0; c < disc.bits().size(); ++c)
          if (disc.bits()[c]) disc_values.push_back(image->voxels[disc.full_index(c)]);
        for (const Work* b : {&up, &down})
          for (std::size_t c = 0; c < b->body->bits().size(); ++c)
            if (b->body->bits()[c]) body_values.push_back(image->voxels[b->body->full_index(c)]);
        const double bm = median(body_values);
        if (bm > 0) d.signal_ratio = median(disc_values) / bm;
      }
    } else {
      // Endplate gap: from the middle of the gap, up to the upper body and down to the
      // lower one, at the fractions of the upper body's depth.
      d.method = "endplate gap";
      BodyFrame f = *up.frame;
      f.axial = axis;
      f.posterior = orthogonalised(up.frame->posterior, axis);
      f.lateral = normalised(cross(f.posterior, f.axial));
      f.centre = scale(add(up.m.lower.centre, down.m.upper.centre), 0.5);
      const double depth = f.anterior_mm + f.posterior_mm;
      const double fractions[3] = {kAnteriorFraction, kMiddleFraction, kPosteriorFraction};
      double* hs[3] = {&d.heights.anterior, &d.heights.middle, &d.heights.posterior};
      d.heights.valid = true;
      for (int q = 0; q < 3; ++q) {
        const Vec3d at = add(f.centre, scale(f.posterior, -f.anterior_mm + fractions[q] * depth));
        const auto t_up = entry_distance(*up.body, at, f.axial), t_down = entry_distance(*down.body, at, scale(f.axial, -1));
        if (!t_up || !t_down) {
          d.heights.valid = false;
          break;
        }
        *hs[q] = *t_up + *t_down;
        d.heights.points[static_cast<std::size_t>(q)] = add(at, scale(f.axial, *t_up));
        d.heights.points[static_cast<std::size_t>(q + 3)] = add(at, scale(f.axial, -*t_down));
      }
      if (!d.heights.valid) d.flags.push_back("endplate gap not measurable (bodies touch or are far apart)");
    }
    const double body_mid = (up.m.heights.middle + down.m.heights.middle) / 2;
    if (d.heights.valid && body_mid > 0) d.height_index = d.heights.middle / body_mid;
    out.discs.push_back(d);
  }

  // Alignment.
  auto find = [&](int label) -> const VertebraMeasurement* {
    for (const auto& w : work)
      if (w.m.label == label && w.frame) return &w.m;
    return nullptr;
  };
  for (std::size_t i = 0; i + 1 < work.size(); ++i) {
    const auto& a = work[i].m;
    const auto& b = work[i + 1].m;
    if (!work[i].frame || !work[i + 1].frame || !adjacent(a.label, b.label)) continue;
    out.angles.push_back({"segmental " + a.name + "-" + b.name, sagittal_angle(a.upper.normal, b.upper.normal),
                          a.name + " upper", b.name + " upper",
                          "sagittal angle between the upper endplates (positive: lordotic)"});
  }
  // Lumbar lordosis: L1 upper to the sacral plateau where the sacrum is labelled and L5 is
  // measured, else L1 upper to L5 lower.
  if (const auto* l1 = find(label::kL1)) {
    const auto* l5 = find(label::kL5);
    std::optional<AngleMeasurement> lordosis;
    if (l5 && counts.count(label::kSacrum)) {
      const Mask sacrum(labels, {label::kSacrum}, boxes);
      const Work* w5 = nullptr;
      for (const auto& w : work)
        if (w.m.label == label::kL5) w5 = &w;
      std::vector<Vec3d> plateau;
      const BodyFrame& f = *w5->frame;
      for (double u = -0.5 * f.half_width_mm; u <= 0.5 * f.half_width_mm; u += 1)
        for (double p = -0.6 * f.anterior_mm; p <= 0.6 * f.posterior_mm; p += 1) {
          const Vec3d on = add(f.centre, add(scale(f.lateral, u), scale(f.posterior, p)));
          const auto t_out = exit_distance(*w5->body, on, scale(f.axial, -1));
          if (!t_out) continue;
          const Vec3d below_l5 = add(on, scale(f.axial, -*t_out - 0.3));
          const auto t_in = entry_distance(sacrum, below_l5, scale(f.axial, -1), 25);
          if (t_in) plateau.push_back(add(below_l5, scale(f.axial, -*t_in)));
        }
      if (const auto s1 = fit_plane(plateau, f.axial)) {
        lordosis = AngleMeasurement{"lumbar lordosis", sagittal_angle(l1->upper.normal, s1->normal), "L1 upper", "S1 upper",
                                    "sagittal angle between the L1 upper endplate and the sacral plateau"};
        out.angles.push_back({"sacral plateau tilt", -sagittal_tilt_deg(upward(s1->normal)), "S1 upper", "",
                              "tilt of the sacral plateau from the axial plane of the image's patient axes"});
      }
    }
    if (!lordosis && l5)
      lordosis = AngleMeasurement{"lumbar lordosis", sagittal_angle(l1->upper.normal, l5->lower.normal), "L1 upper", "L5 lower",
                                  "sagittal angle between the L1 upper and L5 lower endplates (no sacrum labelled)"};
    if (lordosis) out.angles.push_back(*lordosis);
  }
  if (const auto* t4 = find(label::kT1 + 3)) {
    if (const auto* t12 = find(label::kT12))
      out.angles.push_back({"thoracic kyphosis", -sagittal_angle(t4->upper.normal, t12->lower.normal), "T4 upper",
                            "T12 lower", "sagittal angle between the T4 upper and T12 lower endplates (positive: kyphotic)"});
  }
  // Coronal Cobb angle: the largest coronal angle between two vertebrae, each tilted as
  // the mean of its two endplate normals (one endplate alone is too noisy on real bodies,
  // whose endplates are dished, and the largest of many noisy differences is biased up).
  {
    struct Tilt {
      std::string name;
      double deg;
    };
    std::vector<Tilt> tilts;
    for (const auto& w : work)
      if (w.frame && !w.cut) tilts.push_back({w.m.name, coronal_tilt_deg(upward(w.frame->axial))});
    double best = 0;
    std::size_t bi = 0, bj = 0;
    for (std::size_t i = 0; i < tilts.size(); ++i)
      for (std::size_t j = i + 1; j < tilts.size(); ++j)
        if (std::fabs(tilts[i].deg - tilts[j].deg) > best) {
          best = std::fabs(tilts[i].deg - tilts[j].deg);
          bi = i;
          bj = j;
        }
    if (tilts.size() >= 2)
      out.angles.push_back({"coronal Cobb", best, tilts[bi].name, tilts[bj].name,
                            "largest coronal angle between two vertebrae's axes (mean endplate normals; end "
                            "vertebrae: from, to); under 10 degrees is not scoliosis"});
  }

  // Opportunistic osteoporosis screen: L1, else T12, else L2.
  if (image && o.ct) {
    for (int level : {o.screen_level, label::kT12, label::kL2}) {
      const VertebraMeasurement* v = find(level);
      if (!v || !v->trabecular_hu_median) continue;
      const double hu = *v->trabecular_hu_median;
      const std::string category = hu <= o.osteoporosis_hu ? "osteoporosis likely"
                                   : hu > o.normal_hu      ? "normal"
                                                           : "indeterminate (osteopenia range)";
      out.bone_screen = {{"level", v->name},
                         {"trabecular_hu_median", round_to(hu, 0.1)},
                         {"category", category},
                         {"osteoporosis_at_or_below_hu", o.osteoporosis_hu},
                         {"normal_above_hu", o.normal_hu},
                         {"method", "median attenuation of the eroded trabecular core (Pickhardt et al., Ann Intern Med 2013)"},
                         {"warning", "contrast-enhanced scans read higher than unenhanced ones; a screen, not a "
                                     "densitometry: confirm with DXA"}};
      if (level != o.screen_level) out.bone_screen["note"] = "screen level not measurable; the next level used";
      break;
    }
  }
  for (auto& w : work) out.vertebrae.push_back(std::move(w.m));
  return out;
}

}  // namespace spine
