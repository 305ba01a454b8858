// Vertebra and disc segmentation with a 2.5D sagittal-slice model, coarse to fine, and
// naming of the vertebrae by a sequence constraint over the model's level probabilities.
#include "spine/spine_seg.hpp"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <limits>
#include <map>
#include <numeric>
#include <set>
#include <sstream>

#include "phantom/anatomy_stats.hpp"
#include "spine/error.hpp"
#include "spine/labels.hpp"
#include "spine/log.hpp"
#include "spine/preprocess.hpp"
#include "spine/sliding_window.hpp"

namespace spine {

// --- Modality ------------------------------------------------------------------------

namespace {

struct IntensityEvidence {
  float min = 0;
  double below_minus50 = 0;   // fraction of voxels below -50 (fat and air in HU)
  double below_minus500 = 0;  // fraction below -500 (air, lung)
};

IntensityEvidence intensity_evidence(const FloatImage& image) {
  IntensityEvidence e;
  e.min = std::numeric_limits<float>::max();
  std::size_t n50 = 0, n500 = 0;
  for (float v : image.voxels) {
    e.min = std::min(e.min, v);
    n50 += v < -50.f;
    n500 += v < -500.f;
  }
  const double n = static_cast<double>(std::max<std::size_t>(1, image.voxels.size()));
  e.below_minus50 = n50 / n;
  e.below_minus500 = n500 / n;
  return e;
}

std::string percent(double fraction) {
  std::ostringstream s;
  s.precision(2);
  s << 100 * fraction << " %";
  return s.str();
}

}  // namespace

ModalityDecision decide_modality(const FloatImage& image, const std::string& requested,
                                 const std::string& dicom_modality) {
  if (requested != "auto" && requested != "ct" && requested != "mr")
    throw usage_error("--modality must be ct, mr or auto, not '" + requested + "'");
  std::string tag;
  if (dicom_modality == "CT") tag = "ct";
  if (dicom_modality == "MR") tag = "mr";
  const IntensityEvidence e = intensity_evidence(image);
  // CT is calibrated in HU: fat (-100) and air (-1000) give many clearly negative voxels.
  // Magnitude MR images are non-negative.
  const bool looks_ct = e.min < -200 && e.below_minus50 >= 0.01;
  const bool looks_mr = e.min >= -50;
  std::ostringstream why;
  why << "minimum " << e.min << ", " << percent(e.below_minus50) << " of voxels below -50";
  if (!tag.empty()) {
    if (requested != "auto" && requested != tag)
      throw input_error("--modality " + requested + " contradicts the DICOM Modality tag (" + dicom_modality + ")");
    if ((tag == "ct" && looks_mr) || (tag == "mr" && looks_ct))
      log::warn("the DICOM Modality tag says {} but the intensities ({}) suggest otherwise; following the tag",
                dicom_modality, why.str());
    return {tag, "DICOM Modality tag " + dicom_modality};
  }
  if (requested == "ct") {
    if (looks_mr)
      throw input_error("--modality ct contradicts the image: " + why.str() +
                        "; CT in HU has fat near -100 and air near -1000, so this looks like MR");
    return {"ct", "requested (--modality ct); intensities agree: " + why.str()};
  }
  if (requested == "mr") {
    if (looks_ct)
      throw input_error("--modality mr contradicts the image: " + why.str() +
                        "; that is CT in HU (fat and air), not MR");
    return {"mr", "requested (--modality mr); intensities agree: " + why.str()};
  }
  if (looks_ct) return {"ct", "intensities in HU: " + why.str()};
  if (looks_mr) return {"mr", "non-negative intensities: " + why.str()};
  throw input_error("cannot tell CT from MR from the intensities (" + why.str() + "); pass --modality ct or mr");
}

// --- Config --------------------------------------------------------------------------

void SpineSegConfig::validate() const {
  if (!(coarse_spacing_mm >= 1 && coarse_spacing_mm <= 8)) throw usage_error("coarse spacing must be 1..8 mm");
  if (!(coarse_slice_step_mm >= 1 && coarse_slice_step_mm <= 30))
    throw usage_error("coarse slice step must be 1..30 mm");
  if (!(roi_margin_mm >= 0 && roi_margin_mm <= 200)) throw usage_error("ROI margin must be 0..200 mm");
  if (!(min_vertebra_ml >= 0) || !(min_disc_ml >= 0)) throw usage_error("minimum volumes must be >= 0");
  if (!(min_fraction_of_median >= 0 && min_fraction_of_median < 1))
    throw usage_error("minimum fraction of the median vertebra must be in [0, 1)");
}

nlohmann::json SpineSegConfig::to_json() const {
  return {{"coarse_to_fine", coarse_to_fine}, {"coarse_spacing_mm", coarse_spacing_mm},
          {"coarse_slice_step_mm", coarse_slice_step_mm}, {"roi_margin_mm", roi_margin_mm},
          {"min_vertebra_ml", min_vertebra_ml},
          {"min_fraction_of_median", min_fraction_of_median}, {"min_disc_ml", min_disc_ml}};
}

// --- Naming --------------------------------------------------------------------------

namespace {

// The normal cranio-caudal sequence C1..C7, T1..T12, L1..L5, S (transitional levels
// are never produced by the sequence: they are flagged instead).
std::vector<int> normal_sequence() {
  std::vector<int> seq;
  for (int v = label::kC1; v <= label::kL5; ++v) seq.push_back(v);
  seq.push_back(label::kSacrum);
  return seq;
}

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
                                      const std::vector<int>& level_labels) {
  SequenceNaming out;
  const std::size_t n = level_probs.size();
  if (n == 0) return out;
  const auto seq = normal_sequence();
  if (n > seq.size()) throw input_error("more vertebra candidates (" + std::to_string(n) + ") than a spine has");
  const OffsetScores all = score_offsets(level_probs, 0, n, level_labels);
  double norm = 0;
  const double top = all.score[all.best];
  for (double sc : all.score) norm += std::exp(sc - top);
  out.offset_probability = 1.0 / norm;
  for (std::size_t i = 0; i < n; ++i) {
    const int lab = seq[all.best + i];
    out.labels.push_back(lab);
    out.confidence.push_back(std::exp(level_log_prob(level_probs[i], level_labels, lab)) * out.offset_probability);
  }
  if (out.offset_probability < 0.6) {
    std::ostringstream f;
    f.precision(2);
    f << "vertebra names uncertain: the chosen sequence has probability " << out.offset_probability;
    out.flags.push_back(f.str());
  }
  // Transitional anatomy: the upper and lower halves, named on their own, disagree by one.
  if (n >= 4) {
    const std::size_t m = n / 2;
    const OffsetScores up = score_offsets(level_probs, 0, m, level_labels);
    const OffsetScores low = score_offsets(level_probs, m, n, level_labels);
    const int expected = up.best + static_cast<int>(m);
    if (low.best == expected - 1 || low.best == expected + 1) {
      const double gain = (up.score[up.best] + low.score[low.best]) - all.score[all.best];
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

namespace {

std::string whole_percent(double ratio) { return std::to_string(static_cast<int>(std::lround(100 * ratio))) + " %"; }

}  // namespace

std::vector<std::string> vertebra_spacing_flags(const std::vector<IdentifiedVertebra>& vertebrae) {
  struct Gap {
    std::string names;
    double distance_mm, ratio;
  };
  std::vector<Gap> gaps;
  using anatomy::kRealCtLevels;
  constexpr int kLevels = anatomy::kRealCtLevelCount;
  for (std::size_t i = 0; i + 1 < vertebrae.size(); ++i) {
    const auto& a = vertebrae[i];
    const auto& b = vertebrae[i + 1];
    // A vertebra cut at its side (a tight left-right crop) keeps its head-foot centroid; one
    // cut at its top or bottom does not.
    if (a.cut_head_foot || b.cut_head_foot || b.label != a.label + 1) continue;
    if (a.label < 1 || a.label > kLevels) continue;
    const double expected = kRealCtLevels[a.label - 1].spacing;
    if (expected <= 0) continue;  // no prior (L5 to the sacrum)
    const double d = std::hypot(b.centroid_lps_mm[0] - a.centroid_lps_mm[0], b.centroid_lps_mm[1] - a.centroid_lps_mm[1],
                                b.centroid_lps_mm[2] - a.centroid_lps_mm[2]);
    gaps.push_back({a.name + "/" + b.name, d, d / expected});
  }
  std::vector<std::string> flags;
  if (gaps.size() < 2) return flags;
  std::vector<double> ratios;
  for (const auto& g : gaps) ratios.push_back(g.ratio);
  std::sort(ratios.begin(), ratios.end());
  const std::size_t m = ratios.size();
  const double scale = m % 2 ? ratios[m / 2] : (ratios[m / 2 - 1] + ratios[m / 2]) / 2;
  if (scale < 0.7 || scale > 1.4) {
    flags.push_back("vertebra spacing does not fit the names: centres " + whole_percent(scale) +
                    " of the typical distance for these levels (real CT: 80-122 %); the names or the vertebra "
                    "instances are likely wrong");
    return flags;
  }
  for (const auto& g : gaps) {
    const double rel = g.ratio / scale;
    if (rel < 0.6 || rel > 1.6) {
      std::ostringstream f;
      f.setf(std::ios::fixed);
      f.precision(0);
      f << "irregular vertebra spacing at " << g.names << ": centres " << g.distance_mm << " mm apart, "
        << whole_percent(rel) << " of the spacing elsewhere in this spine"
        << (rel < 1 ? " (a vertebra split in two?)" : " (a vertebra missed between them?)");
      flags.push_back(f.str());
    }
  }
  return flags;
}

nlohmann::json slicer_markups(const std::vector<IdentifiedVertebra>& vertebrae) {
  nlohmann::json points = nlohmann::json::array();
  for (std::size_t i = 0; i < vertebrae.size(); ++i) {
    const auto& v = vertebrae[i];
    points.push_back({{"id", std::to_string(i + 1)},
                      {"label", v.name},
                      {"description", "VerSe label " + std::to_string(v.label)},
                      {"associatedNodeID", ""},
                      {"position", v.centroid_lps_mm},
                      {"orientation", {-1.0, -0.0, -0.0, -0.0, -1.0, -0.0, 0.0, 0.0, 1.0}},
                      {"selected", true},
                      {"locked", false},
                      {"visibility", true},
                      {"positionStatus", "defined"}});
  }
  return {{"@schema", "https://raw.githubusercontent.com/slicer/slicer/master/Modules/Loadable/Markups/Resources/"
                      "Schema/markups-schema-v1.0.3.json#"},
          {"markups",
           {{{"type", "Fiducial"},
             {"coordinateSystem", "LPS"},
             {"coordinateUnits", "mm"},
             {"locked", false},
             {"fixedNumberOfControlPoints", false},
             {"labelFormat", "%N-%d"},
             {"lastUsedControlPointNumber", static_cast<int>(vertebrae.size())},
             {"controlPoints", points},
             {"measurements", nlohmann::json::array()},
             {"display",
              {{"visibility", true}, {"opacity", 1.0}, {"color", {0.4, 1.0, 1.0}}, {"selectedColor", {1.0, 0.5, 0.5}},
               {"propertiesLabelVisibility", true}, {"pointLabelsVisibility", true}, {"textScale", 3.0},
               {"glyphType", "Sphere3D"}, {"glyphScale", 3.0}, {"glyphSize", 5.0}, {"useGlyphScale", true}}}}}}};
}

// --- Segmentation --------------------------------------------------------------------

namespace {

constexpr const char* kCanonical = "IPR";  // x inferior, y posterior, z patient right

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

// Model-specific numbers read from the card.
struct SliceModel {
  const Model* model = nullptr;
  std::vector<int> levels;           // level channel -> VerSe label
  double slice_offset_mm = 2.0;      // neighbouring slices, each side
  std::array<std::int64_t, 2> patch{320, 192};
  std::string vertebra_part = "body";
  nlohmann::json normalisation;
};

SliceModel describe(const Model& m) {
  SliceModel s;
  s.model = &m;
  const auto& card = m.card();
  for (const auto& c : card.classes) s.levels.push_back(c.label);
  const auto& raw = card.raw;
  if (raw.contains("slice_offsets_mm")) s.slice_offset_mm = raw["slice_offsets_mm"].back().get<double>();
  if (card.patch_size.size() >= 2) s.patch = {card.patch_size[0], card.patch_size[1]};
  s.vertebra_part = raw.value("vertebra_part", "body");
  s.normalisation = card.normalisation;
  if (raw.value("orientation", std::string(kCanonical)) != kCanonical)
    throw model_error(card.name + ": expected a model for orientation " + kCanonical);
  if (card.input_channels != 3) throw model_error(card.name + ": expected 3 input channels (2.5D)");
  return s;
}

void normalise(FloatImage& v, const nlohmann::json& n) {
  const std::string method = n.value("method", "");
  if (method == "percentile-minmax") {
    const float lo = percentile(v, n.value("lower", 0.5)), hi = percentile(v, n.value("upper", 99.5));
    const float range = std::max(hi - lo, 1e-6f);
    for (float& x : v.voxels) x = (std::clamp(x, lo, hi) - lo) / range;
  } else if (method == "clip-shift-scale") {
    const float lo = n.value("min", -1000.f), hi = n.value("max", 2000.f);
    const float off = n.value("offset", 1000.f), sc = n.value("scale", 0.001f);
    for (float& x : v.voxels) x = (std::clamp(x, lo, hi) + off) * sc;
  } else {
    throw model_error("unknown normalisation method '" + method + "' in the model card");
  }
}

// Per-voxel prediction of a set of sagittal slices: structure class and, for vertebra and
// disc voxels, the level probabilities.
struct SlicePrediction {
  std::vector<std::uint8_t> structure;      // per canonical voxel of the region (0 bg, 1 vertebra, 2 disc)
  std::map<std::size_t, std::vector<float>> level_probs;  // region voxel offset -> probabilities
};

// Runs the model over sagittal slices `zs` of `vol` (canonical orientation) within the
// in-plane box [x0,x1) x [y0,y1). Output arrays are indexed over the box and zs.
struct Region {
  std::int64_t x0 = 0, x1 = 0, y0 = 0, y1 = 0;
  std::vector<std::int64_t> zs;
  std::int64_t nx() const { return x1 - x0; }
  std::int64_t ny() const { return y1 - y0; }
};

SlicePrediction predict_slices(const FloatImage& vol, const Region& r, const SliceModel& sm, double overlap,
                               bool keep_levels, bool whole_slices) {
  const std::int64_t nx = r.nx(), ny = r.ny();
  const std::int64_t offset = std::max<std::int64_t>(1, std::lround(sm.slice_offset_mm / vol.geometry.spacing[2]));
  const std::int64_t nz_vol = static_cast<std::int64_t>(vol.nz());
  const int n_levels = static_cast<int>(sm.levels.size());
  SlicePrediction out;
  out.structure.assign(static_cast<std::size_t>(nx * ny) * r.zs.size(), 0);
  SlidingWindowConfig sw;
  sw.patch = {sm.patch[0], sm.patch[1], 1};
  if (whole_slices) {
    // The network is fully convolutional: a region up to 512 x 512 runs as one window
    // (rounded up to a multiple of 32), with none of the overlap a tiling recomputes.
    auto round_up = [](std::int64_t v) { return (v + 31) / 32 * 32; };
    if (nx <= 512 && ny <= 512) sw.patch = {std::max<std::int64_t>(64, round_up(nx)), std::max<std::int64_t>(64, round_up(ny)), 1};
  }
  sw.overlap = overlap;
  sw.batch_size = 2;
  const PatchPredictor predict = [&](const Tensor& batch) { return sm.model->forward(batch); };
  for (std::size_t zi = 0; zi < r.zs.size(); ++zi) {
    const std::int64_t z = r.zs[zi];
    Tensor input({3, ny, nx});
    for (int c = 0; c < 3; ++c) {
      const std::int64_t zz = std::clamp<std::int64_t>(z + (c - 1) * offset, 0, nz_vol - 1);
      for (std::int64_t y = 0; y < ny; ++y) {
        const float* src = &vol.voxels[vol.offset(static_cast<std::size_t>(r.x0), static_cast<std::size_t>(r.y0 + y),
                                                  static_cast<std::size_t>(zz))];
        std::copy(src, src + nx, input.data.begin() + (c * ny + y) * nx);
      }
    }
    const Tensor pred = sliding_window_inference(input, 2, sw, predict);
    const std::int64_t plane = nx * ny;
    for (std::int64_t p = 0; p < plane; ++p) {
      const float s0 = pred.data[p], s1 = pred.data[plane + p], s2 = pred.data[2 * plane + p];
      const std::uint8_t cls = (s1 > s0 && s1 >= s2) ? 1 : (s2 > s0 && s2 > s1 ? 2 : 0);
      const std::size_t idx = zi * static_cast<std::size_t>(plane) + static_cast<std::size_t>(p);
      out.structure[idx] = cls;
      if (cls == 0 || !keep_levels) continue;
      std::vector<float> probs(static_cast<std::size_t>(n_levels));
      float mx = -1e30f;
      for (int l = 0; l < n_levels; ++l) mx = std::max(mx, pred.data[(3 + l) * plane + p]);
      float sum = 0;
      for (int l = 0; l < n_levels; ++l) sum += probs[l] = std::exp(pred.data[(3 + l) * plane + p] - mx);
      for (float& q : probs) q /= sum;
      out.level_probs.emplace(idx, std::move(probs));
    }
  }
  return out;
}

// 6-connected components of `mask` (values != 0) over a box nx*ny*nz; returns component
// id per voxel (0 = none) and the component count.
std::vector<int> connected_components(const std::vector<std::uint8_t>& mask, std::int64_t nx, std::int64_t ny,
                                      std::int64_t nz, int& count) {
  std::vector<int> comp(mask.size(), 0);
  count = 0;
  std::vector<std::size_t> stack;
  for (std::size_t start = 0; start < mask.size(); ++start) {
    if (!mask[start] || comp[start]) continue;
    ++count;
    comp[start] = count;
    stack.assign(1, start);
    while (!stack.empty()) {
      const std::size_t v = stack.back();
      stack.pop_back();
      const std::int64_t x = static_cast<std::int64_t>(v % nx), y = static_cast<std::int64_t>((v / nx) % ny),
                         z = static_cast<std::int64_t>(v / (nx * ny));
      const std::int64_t nb[6][3] = {{x - 1, y, z}, {x + 1, y, z}, {x, y - 1, z}, {x, y + 1, z}, {x, y, z - 1}, {x, y, z + 1}};
      for (const auto& q : nb) {
        if (q[0] < 0 || q[1] < 0 || q[2] < 0 || q[0] >= nx || q[1] >= ny || q[2] >= nz) continue;
        const std::size_t w = static_cast<std::size_t>((q[2] * ny + q[1]) * nx + q[0]);
        if (mask[w] && !comp[w]) {
          comp[w] = count;
          stack.push_back(w);
        }
      }
    }
  }
  return comp;
}

// The spinal column as the median lateral (z) and antero-posterior (y) position of
// vertebra voxels per head-foot position (x), over a window of +-half_window_mm.
class ColumnModel {
 public:
  ColumnModel(const std::vector<std::array<double, 3>>& points, double spacing_mm, double half_window_mm)
      : spacing_(spacing_mm) {
    if (points.empty()) return;
    x0_ = 1e30;
    double x1 = -1e30;
    for (const auto& p : points) x0_ = std::min(x0_, p[0]), x1 = std::max(x1, p[0]);
    const auto rows = static_cast<std::size_t>(x1 - x0_) + 1;
    std::vector<std::vector<double>> ys(rows), zs(rows);
    for (const auto& p : points) {
      ys[static_cast<std::size_t>(p[0] - x0_)].push_back(p[1]);
      zs[static_cast<std::size_t>(p[0] - x0_)].push_back(p[2]);
    }
    const auto w = static_cast<std::ptrdiff_t>(std::ceil(half_window_mm / spacing_mm));
    median_y_.assign(rows, 0), median_z_.assign(rows, 0);
    std::vector<double> wy, wz;
    for (std::ptrdiff_t r = 0; r < static_cast<std::ptrdiff_t>(rows); ++r) {
      wy.clear(), wz.clear();
      for (std::ptrdiff_t q = std::max<std::ptrdiff_t>(0, r - w); q <= std::min<std::ptrdiff_t>(rows - 1, r + w); ++q) {
        wy.insert(wy.end(), ys[q].begin(), ys[q].end());
        wz.insert(wz.end(), zs[q].begin(), zs[q].end());
      }
      median_y_[r] = median(wy), median_z_[r] = median(wz);
    }
  }
  // Within lateral_mm and ap_mm of the column at its own head-foot position.
  bool near(const std::array<double, 3>& p, double lateral_mm, double ap_mm) const {
    if (median_y_.empty()) return false;
    const auto r = static_cast<std::size_t>(std::clamp(p[0] - x0_, 0.0, static_cast<double>(median_y_.size() - 1)));
    return std::abs(p[2] - median_z_[r]) * spacing_ <= lateral_mm && std::abs(p[1] - median_y_[r]) * spacing_ <= ap_mm;
  }

 private:
  static double median(std::vector<double>& v) {
    if (v.empty()) return 0;
    std::nth_element(v.begin(), v.begin() + v.size() / 2, v.end());
    return v[v.size() / 2];
  }
  double spacing_ = 1;
  double x0_ = 0;
  std::vector<double> median_y_, median_z_;
};

// Voxel lists of the 6-connected components of `mask` (values != 0).
std::vector<std::vector<std::size_t>> component_members(const std::vector<std::uint8_t>& mask, std::int64_t nx,
                                                        std::int64_t ny, std::int64_t nz) {
  int count = 0;
  const std::vector<int> comp = connected_components(mask, nx, ny, nz, count);
  std::vector<std::vector<std::size_t>> members(static_cast<std::size_t>(count));
  for (std::size_t i = 0; i < comp.size(); ++i)
    if (comp[i]) members[static_cast<std::size_t>(comp[i] - 1)].push_back(i);
  return members;
}

struct Instance {
  std::vector<std::size_t> voxels;  // region offsets
  double cx = 0, cy = 0, cz = 0;    // centroid in region voxels
  std::int64_t x_min = 0, x_max = 0;
  bool touches_border = false;
};

Instance make_instance(std::vector<std::size_t> voxels, std::int64_t nx, std::int64_t ny, std::int64_t nz) {
  Instance in;
  in.x_min = std::numeric_limits<std::int64_t>::max();
  in.x_max = std::numeric_limits<std::int64_t>::min();
  for (std::size_t v : voxels) {
    const std::int64_t x = static_cast<std::int64_t>(v % nx), y = static_cast<std::int64_t>((v / nx) % ny),
                       z = static_cast<std::int64_t>(v / (nx * ny));
    in.cx += x, in.cy += y, in.cz += z;
    in.x_min = std::min(in.x_min, x), in.x_max = std::max(in.x_max, x);
    if (x == 0 || y == 0 || x == nx - 1 || y == ny - 1 || z == 0 || z == nz - 1) in.touches_border = true;
  }
  const double n = static_cast<double>(std::max<std::size_t>(1, voxels.size()));
  in.cx /= n, in.cy /= n, in.cz /= n;
  in.voxels = std::move(voxels);
  return in;
}

// Merges instances whose centroids lie within `max_centroid_mm` head to foot (x) and
// whose union spans at most `max_extent_mm`, until none is left to merge.
void merge_side_by_side(std::vector<Instance>& instances, double spacing_mm, double max_centroid_mm,
                        double max_extent_mm, std::int64_t nx, std::int64_t ny, std::int64_t nz) {
  for (bool merged = true; merged;) {
    merged = false;
    for (std::size_t i = 0; i < instances.size() && !merged; ++i)
      for (std::size_t j = i + 1; j < instances.size() && !merged; ++j) {
        const Instance &a = instances[i], &b = instances[j];
        const double extent = (std::max(a.x_max, b.x_max) - std::min(a.x_min, b.x_min) + 1) * spacing_mm;
        if (std::abs(a.cx - b.cx) * spacing_mm > max_centroid_mm || extent > max_extent_mm) continue;
        std::vector<std::size_t> voxels = a.voxels;
        voxels.insert(voxels.end(), b.voxels.begin(), b.voxels.end());
        instances[i] = make_instance(std::move(voxels), nx, ny, nz);
        instances.erase(instances.begin() + static_cast<std::ptrdiff_t>(j));
        merged = true;
      }
  }
}

}  // namespace

struct SpineSegmenter::Impl {
  std::filesystem::path mr_path, ct_path;
  std::string device;
  std::map<std::string, std::unique_ptr<Model>> models;
  std::set<std::string> limitations_shown;  // modalities whose model's limitations were logged (once per run)

  const Model& get(const std::string& modality) {
    auto it = models.find(modality);
    if (it != models.end()) return *it->second;
    const auto& path = modality == "ct" ? ct_path : mr_path;
    if (path.empty()) throw usage_error("no " + modality + " model given");
    auto m = std::make_unique<Model>(Model::load(path, {"spine-seg", {modality}, 2}, device));
    log::info("model {} {} on {}", m->card().name, m->card().version, device);
    return *models.emplace(modality, std::move(m)).first->second;
  }
};

SpineSegmenter::SpineSegmenter(std::filesystem::path mr_model, std::filesystem::path ct_model, std::string device)
    : impl_(std::make_unique<Impl>()) {
  impl_->mr_path = std::move(mr_model);
  impl_->ct_path = std::move(ct_model);
  impl_->device = std::move(device);
}
SpineSegmenter::~SpineSegmenter() = default;
SpineSegmenter::SpineSegmenter(SpineSegmenter&&) noexcept = default;

const Model& SpineSegmenter::model(const std::string& modality) { return impl_->get(modality); }

SpineSegResult SpineSegmenter::segment(const FloatImage& image, const std::string& requested_modality,
                                       const std::string& dicom_modality, const SpineSegConfig& config) {
  config.validate();
  const auto t_start = std::chrono::steady_clock::now();
  const Geometry& g_in = image.geometry;
  if (g_in.dimension != 3 || g_in.size[2] < 2)
    throw input_error("is a 2D image; vertebra segmentation needs a 3D volume");
  for (int a = 0; a < 3; ++a)
    if (g_in.size[a] * g_in.spacing[a] < 20.0 || g_in.size[a] < 4)
      throw input_error("is too small for a spine (" + std::to_string(g_in.size[0]) + "x" + std::to_string(g_in.size[1]) +
                        "x" + std::to_string(g_in.size[2]) + " voxels)");
  for (float v : image.voxels)
    if (!std::isfinite(v)) throw input_error("contains NaN or infinite values");

  SpineSegResult result;
  result.modality = decide_modality(image, requested_modality, dicom_modality);
  log::info("modality {} ({})", result.modality.modality, result.modality.reason);
  const SliceModel sm = describe(impl_->get(result.modality.modality));
  result.vertebra_part = sm.vertebra_part;
  result.model_limitations = sm.model->card().limitations;
  if (impl_->limitations_shown.insert(result.modality.modality).second)
    for (const auto& l : result.model_limitations) log::warn("{} {}: {}", sm.model->card().name, sm.model->card().version, l);

  // Canonical orientation, model spacing, model normalisation.
  const std::string input_code = orientation_code(g_in);
  FloatImage canon_native = reorient(image, kCanonical);
  const Geometry native_grid = canon_native.geometry;
  const double model_spacing = 1.0;
  FloatImage vol = std::abs(native_grid.spacing[0] - model_spacing) < 1e-3 &&
                           std::abs(native_grid.spacing[1] - model_spacing) < 1e-3 &&
                           std::abs(native_grid.spacing[2] - model_spacing) < 1e-3
                       ? std::move(canon_native)
                       : resample_image(canon_native, {model_spacing, model_spacing, model_spacing});
  normalise(vol, sm.normalisation);
  const auto nx = static_cast<std::int64_t>(vol.nx()), ny = static_cast<std::int64_t>(vol.ny()),
             nz = static_cast<std::int64_t>(vol.nz());
  result.timing["prepare_s"] = seconds_since(t_start);

  // Coarse pass: every few millimetres laterally, at a coarser in-plane resolution.
  Region fine{0, nx, 0, ny, {}};
  bool found = true;
  // A volume that is already a crop around the spine (the usual lumbar MRI) has nothing
  // for the coarse pass to cut away: every slice is spine-sized and fits one window.
  const bool spine_sized = nz * vol.geometry.spacing[2] <= 160 && nx * vol.geometry.spacing[0] <= 400 &&
                           ny * vol.geometry.spacing[1] <= 250;
  result.timing["coarse_skipped_spine_sized_volume"] = config.coarse_to_fine && spine_sized;
  if (config.coarse_to_fine && !spine_sized) {
    const auto t0 = std::chrono::steady_clock::now();
    const double cs = config.coarse_spacing_mm;
    const FloatImage coarse = resample_image(vol, {cs, cs, cs});
    Region cr{0, static_cast<std::int64_t>(coarse.nx()), 0, static_cast<std::int64_t>(coarse.ny()), {}};
    const std::int64_t step = std::max<std::int64_t>(1, std::lround(config.coarse_slice_step_mm / cs));
    for (std::int64_t z = step / 2; z < static_cast<std::int64_t>(coarse.nz()); z += step) cr.zs.push_back(z);
    const SlicePrediction cp = predict_slices(coarse, cr, sm, 0.25, false, true);
    double lo[3] = {1e30, 1e30, 1e30}, hi[3] = {-1e30, -1e30, -1e30};
    std::size_t hits = 0;
    const std::size_t plane = static_cast<std::size_t>(cr.nx() * cr.ny());
    std::vector<std::array<double, 3>> points;
    for (std::size_t i = 0; i < cp.structure.size(); ++i) {
      if (!cp.structure[i]) continue;
      points.push_back({static_cast<double>(i % cr.nx()), static_cast<double>((i / cr.nx()) % cr.ny()),
                        static_cast<double>(cr.zs[i / plane])});
    }
    // Only hits near the spinal column count: per head-foot row, the column is at the
    // median lateral and antero-posterior position of the row's hits (+-40 mm in each
    // row's neighbourhood), so ribs or pelvis taken for vertebrae do not widen the box.
    const ColumnModel column(points, cs, 40.0);
    for (const auto& c : points) {
      if (!column.near(c, 60.0, 80.0)) continue;
      ++hits;
      for (int a = 0; a < 3; ++a) lo[a] = std::min(lo[a], c[a]), hi[a] = std::max(hi[a], c[a]);
    }
    // At least 2 ml of vertebra or disc in the sampled slices counts as a spine.
    found = hits * cs * cs * cs >= 2000.0 / std::max<double>(1, step);
    if (found) {
      const double m = config.roi_margin_mm;
      const double half_step = step * cs / 2;
      auto to_fine = [&](double c_lo, double c_hi, double margin, std::int64_t n) {
        const auto a = static_cast<std::int64_t>(std::floor(c_lo * cs - margin));
        const auto b = static_cast<std::int64_t>(std::ceil((c_hi + 1) * cs + margin));
        return std::pair<std::int64_t, std::int64_t>{std::clamp<std::int64_t>(a, 0, n), std::clamp<std::int64_t>(b, 0, n)};
      };
      const auto [x0, x1] = to_fine(lo[0], hi[0], m, nx);
      const auto [y0, y1] = to_fine(lo[1], hi[1], m, ny);
      const auto [z0, z1] = to_fine(lo[2], hi[2], m / 2 + half_step, nz);
      fine = {x0, x1, y0, y1, {}};
      for (std::int64_t z = z0; z < z1; ++z) fine.zs.push_back(z);
    }
    result.timing["coarse_s"] = seconds_since(t0);
    result.timing["coarse_slices"] = cr.zs.size();
  } else {
    for (std::int64_t z = 0; z < nz; ++z) fine.zs.push_back(z);
  }
  const bool whole_slice_windows = config.coarse_to_fine;

  LabelImage canon_labels(vol.geometry, 0);
  if (!found || fine.zs.empty()) {
    result.flags.push_back("no spine found in the volume");
  } else {
    const auto t1 = std::chrono::steady_clock::now();
    // Without the coarse pass: the plain baseline, the card's patch tiled with half overlap.
    const SlicePrediction fp =
        predict_slices(vol, fine, sm, config.coarse_to_fine ? 0.25 : 0.5, true, whole_slice_windows);
    result.timing["fine_s"] = seconds_since(t1);
    result.timing["fine_region_voxels"] = {fine.nx(), fine.ny(), static_cast<std::int64_t>(fine.zs.size())};
    result.timing["volume_voxels"] = {nx, ny, nz};
    const auto t2 = std::chrono::steady_clock::now();
    const std::int64_t rx = fine.nx(), ry = fine.ny(), rz = static_cast<std::int64_t>(fine.zs.size());
    const double voxel_ml = vol.geometry.spacing[0] * vol.geometry.spacing[1] * vol.geometry.spacing[2] / 1000.0;
    const int n_levels = static_cast<int>(sm.levels.size());

    // Vertebra instances: connected components; one longer than a vertebra can be
    // (neighbours joined through a missed disc or touching posterior elements) is split
    // by the level model's votes.
    std::vector<std::uint8_t> vmask(fp.structure.size());
    for (std::size_t i = 0; i < vmask.size(); ++i) vmask[i] = fp.structure[i] == 1;
    const double max_extent_mm = sm.vertebra_part == "body" ? 45.0 : 60.0;
    std::vector<Instance> instances;
    auto argmax_level = [&](std::size_t v) {
      const auto& p = fp.level_probs.at(v);
      return static_cast<int>(std::max_element(p.begin(), p.end()) - p.begin());
    };
    for (auto& vox : component_members(vmask, rx, ry, rz)) {
      if (vox.size() * voxel_ml < config.min_vertebra_ml) continue;
      Instance in = make_instance(vox, rx, ry, rz);
      if ((in.x_max - in.x_min + 1) * vol.geometry.spacing[0] <= max_extent_mm) {
        instances.push_back(std::move(in));
        continue;
      }
      for (int l = 0; l < n_levels; ++l) {
        std::vector<std::uint8_t> sub(vmask.size(), 0);
        bool any = false;
        for (std::size_t v : in.voxels)
          if (argmax_level(v) == l) sub[v] = 1, any = true;
        if (!any) continue;
        for (auto& part : component_members(sub, rx, ry, rz))
          if (part.size() * voxel_ml >= config.min_vertebra_ml) instances.push_back(make_instance(std::move(part), rx, ry, rz));
      }
    }
    // Candidates off the spinal column (ribs, pelvis taken for vertebra) are dropped.
    {
      std::vector<std::array<double, 3>> vpoints;
      for (std::size_t i = 0; i < vmask.size(); ++i)
        if (vmask[i])
          vpoints.push_back({static_cast<double>(i % rx), static_cast<double>((i / rx) % ry),
                             static_cast<double>(i / static_cast<std::size_t>(rx * ry))});
      const ColumnModel column(vpoints, vol.geometry.spacing[0], 40.0);
      const std::size_t before = instances.size();
      instances.erase(std::remove_if(instances.begin(), instances.end(),
                                     [&](const Instance& in) { return !column.near({in.cx, in.cy, in.cz}, 30.0, 40.0); }),
                      instances.end());
      if (instances.size() < before)
        log::debug("{} vertebra candidates off the spinal column dropped", before - instances.size());
    }
    // Pieces side by side at one head-foot level are one vertebra, split where the model
    // was unsure (a body cut in two or three left to right): vertebrae follow each other
    // head to foot, never side by side. Adjacent vertebrae, even tilted, have centroids a
    // body height apart; pieces of one body have them within a fraction of that.
    merge_side_by_side(instances, vol.geometry.spacing[0], sm.vertebra_part == "body" ? 10.0 : 12.0,
                       max_extent_mm, rx, ry, rz);
    // Fragments much smaller than a typical vertebra of this scan are not vertebrae.
    if (!instances.empty()) {
      std::vector<std::size_t> sizes;
      for (const auto& in : instances) sizes.push_back(in.voxels.size());
      std::nth_element(sizes.begin(), sizes.begin() + sizes.size() / 2, sizes.end());
      const double cutoff = config.min_fraction_of_median * static_cast<double>(sizes[sizes.size() / 2]);
      instances.erase(std::remove_if(instances.begin(), instances.end(),
                                     [&](const Instance& in) { return static_cast<double>(in.voxels.size()) < cutoff; }),
                      instances.end());
    }
    std::sort(instances.begin(), instances.end(), [](const Instance& a, const Instance& b) { return a.cx < b.cx; });
    if (instances.size() > normal_sequence().size()) {
      result.flags.push_back("more vertebra candidates than a spine has; the smallest were dropped");
      std::sort(instances.begin(), instances.end(),
                [](const Instance& a, const Instance& b) { return a.voxels.size() > b.voxels.size(); });
      instances.resize(normal_sequence().size());
      std::sort(instances.begin(), instances.end(), [](const Instance& a, const Instance& b) { return a.cx < b.cx; });
    }

    // Names: the sequence constraint over each instance's mean level probabilities.
    std::vector<std::vector<double>> probs;
    for (const auto& in : instances) {
      std::vector<double> mean(static_cast<std::size_t>(n_levels), 0.0);
      for (std::size_t v : in.voxels) {
        const auto& p = fp.level_probs.at(v);
        for (int l = 0; l < n_levels; ++l) mean[l] += p[l];
      }
      for (double& m : mean) m /= static_cast<double>(in.voxels.size());
      probs.push_back(std::move(mean));
    }
    const SequenceNaming naming = name_vertebra_sequence(probs, sm.levels);
    result.naming_confidence = naming.offset_probability;
    for (const auto& f : naming.flags) result.flags.push_back(f);

    auto region_to_canon = [&](std::size_t v) {
      const std::int64_t x = static_cast<std::int64_t>(v % rx) + fine.x0,
                         y = static_cast<std::int64_t>((v / rx) % ry) + fine.y0;
      const std::int64_t z = fine.zs[v / static_cast<std::size_t>(rx * ry)];
      return vol.offset(static_cast<std::size_t>(x), static_cast<std::size_t>(y), static_cast<std::size_t>(z));
    };
    auto centroid_lps = [&](const Instance& in) {
      return vol.geometry.index_to_lps(in.cx + fine.x0, in.cy + fine.y0, in.cz + static_cast<double>(fine.zs.front()));
    };
    // The region's border is the field of view's only where the region reaches it.
    const bool roi_is_fov = fine.x0 == 0 && fine.x1 == nx && fine.y0 == 0 && fine.y1 == ny;
    for (std::size_t i = 0; i < instances.size(); ++i) {
      const auto& in = instances[i];
      IdentifiedVertebra v;
      v.label = naming.labels[i];
      v.name = label_name(v.label);
      v.centroid_lps_mm = centroid_lps(in);
      v.confidence = naming.confidence[i];
      v.volume_ml = in.voxels.size() * voxel_ml;
      v.touches_border = in.touches_border && (roi_is_fov || in.x_min == 0 || in.x_max == rx - 1);
      v.cut_head_foot = in.x_min == 0 || in.x_max == rx - 1;
      for (std::size_t vox : in.voxels) canon_labels.voxels[region_to_canon(vox)] = static_cast<std::int16_t>(v.label);
      result.vertebrae.push_back(v);
    }

    // Discs: components of the disc class, named after the vertebra above them.
    std::vector<std::uint8_t> dmask(fp.structure.size());
    for (std::size_t i = 0; i < dmask.size(); ++i) dmask[i] = fp.structure[i] == 2;
    std::map<int, Instance> discs;  // label -> merged instance
    for (auto& vox : component_members(dmask, rx, ry, rz)) {
      if (instances.empty()) break;
      if (vox.size() * voxel_ml < config.min_disc_ml) continue;
      Instance d = make_instance(vox, rx, ry, rz);
      int above = -1;
      for (std::size_t i = 0; i < instances.size(); ++i)
        if (instances[i].cx < d.cx) above = static_cast<int>(i);
      int vert = 0;
      if (above >= 0) {
        vert = result.vertebrae[static_cast<std::size_t>(above)].label;
      } else {
        const auto seq = normal_sequence();
        const auto it = std::find(seq.begin(), seq.end(), result.vertebrae.front().label);
        if (it == seq.begin() || it == seq.end()) continue;
        vert = *(it - 1);
      }
      if (vert < label::kC1 || vert > label::kL5) continue;
      const int lab = disc_label_below(vert);
      auto& merged = discs[lab];
      merged.voxels.insert(merged.voxels.end(), d.voxels.begin(), d.voxels.end());
    }
    for (auto& [lab, d] : discs) {
      Instance in = make_instance(std::move(d.voxels), rx, ry, rz);
      for (std::size_t vox : in.voxels) canon_labels.voxels[region_to_canon(vox)] = static_cast<std::int16_t>(lab);
      result.discs.push_back({lab, label_name(lab), centroid_lps(in), in.voxels.size() * voxel_ml});
    }
    std::sort(result.discs.begin(), result.discs.end(),
              [](const IdentifiedDisc& a, const IdentifiedDisc& b) { return a.label < b.label; });
    if (instances.empty()) result.flags.push_back("no spine found in the volume (no vertebra segmented)");
    for (const auto& f : vertebra_spacing_flags(result.vertebrae)) result.flags.push_back(f);
    for (const auto& v : result.vertebrae)
      if (v.touches_border) result.flags.push_back(v.name + " is cut by the field of view");
    result.timing["postprocess_s"] = seconds_since(t2);
  }

  // Back to the input's grid: its own resolution in canonical orientation, then its own
  // orientation (lossless).
  const auto t3 = std::chrono::steady_clock::now();
  LabelImage canon_native_labels = canon_labels.geometry.same_grid(native_grid, 1e-4)
                                       ? std::move(canon_labels)
                                       : resample_labels_to(canon_labels, native_grid);
  result.labels = reorient(canon_native_labels, input_code);
  result.labels.geometry = g_in;  // identical up to rounding; keep the input's exactly
  result.timing["restore_grid_s"] = seconds_since(t3);
  result.timing["total_s"] = seconds_since(t_start);
  return result;
}

}  // namespace spine
