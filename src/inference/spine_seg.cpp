// Vertebra and disc segmentation with a 2.5D sagittal-slice model, coarse to fine: the
// model passes, then the stages in their own files (instances.cpp, naming.cpp,
// spacing_check.cpp), the labels back in the input's grid, then metal_check.cpp (CT).
#include "spine/spine_seg.hpp"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <limits>
#include <map>
#include <numeric>
#include <optional>
#include <set>
#include <sstream>

#include <fmt/format.h>

#include "inference/instances.hpp"
#include "inference/ribs.hpp"
#include "spine/error.hpp"
#include "spine/labels.hpp"
#include "spine/log.hpp"
#include "spine/preprocess.hpp"
#include "spine/sliding_window.hpp"

namespace spine {

// --- Config --------------------------------------------------------------------------

void SpineSegConfig::validate() const {
  if (!(coarse_spacing_mm >= 1 && coarse_spacing_mm <= 8)) throw usage_error("coarse spacing must be 1..8 mm");
  if (!(coarse_slice_step_mm >= 1 && coarse_slice_step_mm <= 30))
    throw usage_error("coarse slice step must be 1..30 mm");
  if (!(roi_margin_mm >= 0 && roi_margin_mm <= 200)) throw usage_error("ROI margin must be 0..200 mm");
  if (!(min_vertebra_ml >= 0) || !(min_disc_ml >= 0)) throw usage_error("minimum volumes must be >= 0");
  if (!(min_fraction_of_median >= 0 && min_fraction_of_median < 1))
    throw usage_error("minimum fraction of the median vertebra must be in [0, 1)");
  if (fine_slice_stride < 1 || fine_slice_stride > 4) throw usage_error("fine slice stride must be 1..4");
}

nlohmann::json SpineSegConfig::to_json() const {
  return {{"coarse_to_fine", coarse_to_fine}, {"coarse_spacing_mm", coarse_spacing_mm},
          {"coarse_slice_step_mm", coarse_slice_step_mm}, {"roi_margin_mm", roi_margin_mm},
          {"min_vertebra_ml", min_vertebra_ml},
          {"min_fraction_of_median", min_fraction_of_median}, {"min_disc_ml", min_disc_ml},
          {"fine_slice_stride", fine_slice_stride}};
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
  // The widest head-to-foot slice spacing the model's outputs were checked on (its card's
  // `head_foot_spacing_checked_mm`); 0 when the card does not say.
  double head_foot_spacing_checked_mm = 0;
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
  const auto checked = raw.find("head_foot_spacing_checked_mm");
  if (checked != raw.end()) {
    if (!checked->is_number() || !(checked->get<double>() > 0))
      throw model_error(card.name + ": head_foot_spacing_checked_mm in its card must be a positive number");
    s.head_foot_spacing_checked_mm = checked->get<double>();
  }
  if (raw.value("orientation", std::string(kCanonical)) != kCanonical)
    throw model_error(card.name + ": expected a model for orientation " + kCanonical);
  if (card.input_channels != 3) throw model_error(card.name + ": expected 3 input channels (2.5D)");
  return s;
}

// The model's intensity normalisation, x -> (clamp(x, lo, hi) + offset) * scale, with
// its parameters taken from the card, or for percentile-minmax from the volume given.
struct Normaliser {
  float lo = 0, hi = 1, offset = 0, scale = 1;
  void apply(FloatImage& v) const {
    for (float& x : v.voxels) x = (std::clamp(x, lo, hi) + offset) * scale;
  }
};

Normaliser make_normaliser(const FloatImage& v, const nlohmann::json& n) {
  const std::string method = n.value("method", "");
  Normaliser out;
  if (method == "percentile-minmax") {
    out.lo = percentile(v, n.value("lower", 0.5));
    out.hi = percentile(v, n.value("upper", 99.5));
    out.offset = -out.lo;
    out.scale = 1.0f / std::max(out.hi - out.lo, 1e-6f);
  } else if (method == "clip-shift-scale") {
    out.lo = n.value("min", -1000.f), out.hi = n.value("max", 2000.f);
    out.offset = n.value("offset", 1000.f), out.scale = n.value("scale", 0.001f);
  } else {
    throw model_error("unknown normalisation method '" + method + "' in the model card");
  }
  return out;
}

// Whole-slice windows: a region up to kMaxWindow on a side runs as one window, its sides
// rounded up to a multiple of kWindowStep (the network halves the resolution five times).
constexpr std::int64_t kWindowStep = 32, kMaxWindow = 512;

// The fine pass runs each sagittal slice as one window whose sides are rounded up to a
// multiple of kWindowStep, and the rounding is
// paid for in zeros: a 194-voxel side costs 224. So a side of the box becomes a multiple
// of 32 where it can: the one below where that still holds `inner` (the box with the
// smallest margin allowed), else the one above, filled with the image around the box (the
// same cost, more real context than zeros). Sides beyond one window (512) are tiled and
// stay as they are.
std::pair<std::int64_t, std::int64_t> fit_to_windows(std::pair<std::int64_t, std::int64_t> box,
                                                     std::pair<std::int64_t, std::int64_t> inner, std::int64_t n) {
  const std::int64_t size = box.second - box.first;
  if (size % kWindowStep == 0 || size > kMaxWindow) return box;
  const std::int64_t below = size / kWindowStep * kWindowStep, above = below + kWindowStep;
  if (below > 0 && below >= inner.second - inner.first) {
    const std::int64_t a = std::clamp(box.first + (size - below) / 2, inner.second - below, inner.first);
    return {a, a + below};
  }
  if (above >= n) return {0, n};  // the whole axis, in the window the box needed anyway
  const std::int64_t a = std::clamp<std::int64_t>(box.first - (above - size) / 2, 0, n - above);
  return {a, a + above};
}

// Per-voxel prediction of a set of sagittal slices: structure class and, for vertebra and
// disc voxels, the level probabilities.
struct SlicePrediction {
  std::vector<std::uint8_t> structure;      // per canonical voxel of the region (0 bg, 1 vertebra, 2 disc)
  // Level probabilities of the vertebra and disc voxels, one row of n_levels each, in a
  // table per slice sized when the slice is emitted: a spine has a million such voxels,
  // and one table grown voxel by voxel was copied at every doubling (72 MB at the end on a
  // 512 x 512 x 300 CT).
  std::vector<std::int32_t> level_row;     // per region voxel: its row in its slice's table, or -1
  std::vector<std::vector<float>> level_tables;  // per slice of the region
  std::size_t plane = 0;
  int n_levels = 0;
  std::size_t slices_run = 0;             // slices the network ran on (the rest interpolated, left out, or
                                          // given the pass of identical slices)
  std::size_t first_slice = 0, end_slice = 0;  // the slices predicted: [first, end) of the region's
  const float* levels_at(std::size_t voxel) const {
    return &level_tables[voxel / plane][static_cast<std::size_t>(level_row[voxel]) * static_cast<std::size_t>(n_levels)];
  }
};

// Runs the model over sagittal slices `zs` of `vol` (canonical orientation) within the
// in-plane box [x0,x1) x [y0,y1). Output arrays are indexed over the box and zs.
struct Region {
  std::int64_t x0 = 0, x1 = 0, y0 = 0, y1 = 0;
  std::vector<std::int64_t> zs;
  std::int64_t nx() const { return x1 - x0; }
  std::int64_t ny() const { return y1 - y0; }
};

// Where the fine pass starts and where it may stop: from slice `start` of the region
// outwards to both sides, each side ending once two model slices in a row hold less than
// 1 % of the vertebra and disc voxels of the fullest slice so far (and at the region's
// ends in any case). Without it every slice of the region is run.
struct Outward {
  std::size_t start = 0;
  double stop_fraction = 0.01;
  std::size_t stop_after = 2;
  std::size_t min_spine_voxels = 100;  // no side stops before a slice held this many
};

// Whether every slice the region's 2.5D inputs read (its slices and their neighbours
// `offset` away, clamped to the volume) holds the same values within the region: then
// every slice's input is the same three copies, and so is the network's output.
bool region_slices_identical(const FloatImage& vol, const Region& r, std::int64_t offset) {
  if (r.zs.size() < 2) return false;
  const auto [zmin, zmax] = std::minmax_element(r.zs.begin(), r.zs.end());
  const std::int64_t nz = static_cast<std::int64_t>(vol.nz());
  const std::int64_t z0 = std::clamp<std::int64_t>(*zmin - offset, 0, nz - 1),
                     z1 = std::clamp<std::int64_t>(*zmax + offset, 0, nz - 1);
  const auto row = [&](std::int64_t y, std::int64_t z) {
    return &vol.voxels[vol.offset(static_cast<std::size_t>(r.x0), static_cast<std::size_t>(y), static_cast<std::size_t>(z))];
  };
  for (std::int64_t z = z0 + 1; z <= z1; ++z)
    for (std::int64_t y = r.y0; y < r.y1; ++y)
      if (!std::equal(row(y, z), row(y, z) + r.nx(), row(y, z0))) return false;
  return true;
}

SlicePrediction predict_slices(const FloatImage& vol, const Region& r, const SliceModel& sm, double overlap,
                               bool keep_levels, bool whole_slices, std::size_t stride = 1,
                               const std::optional<Outward>& outward = std::nullopt) {
  const std::int64_t nx = r.nx(), ny = r.ny();
  const std::int64_t offset = std::max<std::int64_t>(1, std::lround(sm.slice_offset_mm / vol.geometry.spacing[2]));
  const std::int64_t nz_vol = static_cast<std::int64_t>(vol.nz());
  // A 2D input reaches the segmentation as a slab of identical slices (spine-grade's
  // slab_from_slice: 21 of them, for the model's 2.5D input and the instance stage's
  // volumes), where every model slice would repeat the same pass: the network then runs
  // once, on one slice, and its output serves every slice (on the 350 SPIDER slices the
  // same labels and grades, byte for byte, as a pass per model slice).
  const bool same_input_everywhere = region_slices_identical(vol, r, offset);
  std::vector<float> shared_logits;
  const int n_levels = static_cast<int>(sm.levels.size());
  SlicePrediction out;
  out.structure.assign(static_cast<std::size_t>(nx * ny) * r.zs.size(), 0);
  out.n_levels = n_levels;
  out.plane = static_cast<std::size_t>(nx * ny);
  if (keep_levels) out.level_row.assign(out.structure.size(), -1), out.level_tables.resize(r.zs.size());
  SlidingWindowConfig sw;
  sw.patch = {sm.patch[0], sm.patch[1], 1};
  bool one_window = false;
  if (whole_slices) {
    // The network is fully convolutional: a region up to 512 x 512 runs as one window
    // (rounded up to a multiple of 32), with none of the overlap a tiling recomputes.
    auto round_up = [](std::int64_t v) { return (v + kWindowStep - 1) / kWindowStep * kWindowStep; };
    if (nx <= kMaxWindow && ny <= kMaxWindow) {
      sw.patch = {std::max<std::int64_t>(64, round_up(nx)), std::max<std::int64_t>(64, round_up(ny)), 1};
      one_window = true;
    }
  }
  sw.overlap = overlap;
  sw.batch_size = 2;
  const PatchPredictor predict = [&](const Tensor& batch) { return sm.model->forward(batch); };
  const std::int64_t plane = nx * ny;
  // The 2.5D input of slice zi (the slice and its neighbours `offset` away) into a
  // [3, py, px] block whose region starts at (x_at, y_at); the rest stays as it is.
  const auto fill_input = [&](std::size_t zi, float* block, std::int64_t px, std::int64_t py, std::int64_t x_at,
                              std::int64_t y_at) {
    const std::int64_t z = r.zs[zi];
    for (int c = 0; c < 3; ++c) {
      const std::int64_t zz = std::clamp<std::int64_t>(z + (c - 1) * offset, 0, nz_vol - 1);
      for (std::int64_t y = 0; y < ny; ++y) {
        const float* src = &vol.voxels[vol.offset(static_cast<std::size_t>(r.x0), static_cast<std::size_t>(r.y0 + y),
                                                  static_cast<std::size_t>(zz))];
        std::copy(src, src + nx, block + (c * py + y + y_at) * px + x_at);
      }
    }
  };
  // Logits [channels, ny, nx] of each slice in `zis`. Whole slices go through the network
  // two at a time, as the plain tiling already sends its windows in pairs: on 2 cores the
  // CT model took about 30 ms a slice for a batch of two 320 x 224 slices against 47 ms one
  // by one (from Python), and spine-seg's CT fine pass went from 3.2 to 2.8 s with the same
  // labels. The region sits in its window as the sliding window centres it, zeros around.
  const auto run_network = [&](const std::vector<std::size_t>& zis) {
    std::vector<std::vector<float>> out;
    if (!one_window) {
      for (std::size_t zi : zis) {
        Tensor input({3, ny, nx});
        fill_input(zi, input.data.data(), nx, ny, 0, 0);
        out.push_back(sliding_window_inference(input, 2, sw, predict).data);
      }
      return out;
    }
    const std::int64_t px = sw.patch[0], py = sw.patch[1];
    const std::int64_t x_at = (px - nx) / 2, y_at = (py - ny) / 2;
    Tensor batch({static_cast<std::int64_t>(zis.size()), 3, py, px}, 0.f);
    for (std::size_t b = 0; b < zis.size(); ++b)
      fill_input(zis[b], batch.data.data() + b * 3 * py * px, px, py, x_at, y_at);
    const Tensor pred = predict(batch);
    if (pred.shape.size() != 4 || pred.shape[0] != batch.shape[0] || pred.shape[2] != py || pred.shape[3] != px)
      throw model_error("model output is not the size of its input slices (not fully convolutional?)");
    const std::int64_t channels = pred.shape[1];
    for (std::size_t b = 0; b < zis.size(); ++b) {
      std::vector<float> logits(static_cast<std::size_t>(channels * plane));
      for (std::int64_t c = 0; c < channels; ++c)
        for (std::int64_t y = 0; y < ny; ++y) {
          const float* src =
              pred.data.data() + ((static_cast<std::int64_t>(b) * channels + c) * py + y + y_at) * px + x_at;
          std::copy(src, src + nx, logits.begin() + (c * ny + y) * nx);
        }
      out.push_back(std::move(logits));
    }
    return out;
  };
  const auto run = [&](const std::vector<std::size_t>& zis) {
    if (!same_input_everywhere) {
      out.slices_run += zis.size();
      return run_network(zis);
    }
    if (shared_logits.empty()) {
      shared_logits = std::move(run_network({zis.front()}).front());
      out.slices_run = 1;
    }
    return std::vector<std::vector<float>>(zis.size(), shared_logits);
  };
  const auto emit = [&](std::size_t zi, const std::vector<float>& logits) {
    std::size_t spine = 0;
    for (std::int64_t p = 0; p < plane; ++p) {
      const float s0 = logits[p], s1 = logits[plane + p], s2 = logits[2 * plane + p];
      const std::uint8_t cls = (s1 > s0 && s1 >= s2) ? 1 : (s2 > s0 && s2 > s1 ? 2 : 0);
      out.structure[zi * static_cast<std::size_t>(plane) + static_cast<std::size_t>(p)] = cls;
      spine += cls != 0;
    }
    if (!keep_levels) return;
    std::vector<float>& table = out.level_tables[zi];
    table.assign(spine * static_cast<std::size_t>(n_levels), 0.f);
    std::size_t row = 0;
    for (std::int64_t p = 0; p < plane; ++p) {
      const std::size_t idx = zi * static_cast<std::size_t>(plane) + static_cast<std::size_t>(p);
      if (out.structure[idx] == 0) continue;
      out.level_row[idx] = static_cast<std::int32_t>(row);
      float* probs = &table[row * static_cast<std::size_t>(n_levels)];
      ++row;
      float mx = -1e30f;
      for (int l = 0; l < n_levels; ++l) mx = std::max(mx, logits[(3 + l) * plane + p]);
      float sum = 0;
      for (int l = 0; l < n_levels; ++l) sum += probs[l] = std::exp(logits[(3 + l) * plane + p] - mx);
      for (int l = 0; l < n_levels; ++l) probs[l] /= sum;
    }
  };
  // With a stride, the model runs on every stride-th slice (counted from the start slice)
  // and on the region's two end slices; the slices between take logits interpolated
  // linearly from the two model slices on either side.
  const std::size_t n = r.zs.size();
  if (n == 0) return out;
  const std::size_t start = outward ? std::min(outward->start, n - 1) : 0;
  std::vector<std::size_t> right, left;  // model slices from the start outwards
  for (std::size_t i = start;; i = std::min(i + stride, n - 1)) {
    right.push_back(i);
    if (i + 1 == n) break;
  }
  for (std::size_t i = start; i > 0;) {
    i = i >= stride ? i - stride : 0;
    left.push_back(i);
  }
  // Vertebra and disc voxels of an emitted slice, for the outward stop.
  const auto spine_voxels = [&](std::size_t zi) {
    const auto first = out.structure.begin() + static_cast<std::ptrdiff_t>(zi * static_cast<std::size_t>(plane));
    return static_cast<std::size_t>(plane - std::count(first, first + plane, std::uint8_t{0}));
  };
  std::size_t fullest = 0;
  out.first_slice = start, out.end_slice = start;
  constexpr std::size_t kSlicesPerPass = 2;
  std::vector<float> start_logits;  // the start slice's, where the left side begins
  // One side: model slices in `order`, each emitted with the slices between it and the
  // previous one; `prev_i`/`prev` hold the model slice the side starts from, if any.
  const auto run_side = [&](const std::vector<std::size_t>& order, std::optional<std::size_t> prev_i,
                            std::vector<float> prev) {
    std::size_t small_run = 0;
    std::vector<float> between;
    for (std::size_t b = 0; b < order.size(); b += kSlicesPerPass) {
      const auto first = order.begin() + static_cast<std::ptrdiff_t>(b);
      const std::vector<std::size_t> group(first, first + static_cast<std::ptrdiff_t>(
                                                              std::min(kSlicesPerPass, order.size() - b)));
      std::vector<std::vector<float>> logits = run(group);
      for (std::size_t g = 0; g < group.size(); ++g) {
        const std::size_t i = group[g];
        out.first_slice = std::min(out.first_slice, i);
        out.end_slice = std::max(out.end_slice, i + 1);
        std::vector<float>& cur = logits[g];
        if (prev_i) {
          const std::size_t lo = std::min(*prev_i, i), hi = std::max(*prev_i, i);
          for (std::size_t j = lo + 1; j < hi; ++j) {
            const float w = (static_cast<float>(j) - static_cast<float>(*prev_i)) /
                            (static_cast<float>(i) - static_cast<float>(*prev_i));
            between.resize(cur.size());
            for (std::size_t k = 0; k < cur.size(); ++k) between[k] = (1 - w) * prev[k] + w * cur[k];
            emit(j, between);
          }
        }
        emit(i, cur);
        if (i == start) start_logits = cur;
        prev.swap(cur);
        prev_i = i;
        if (!outward) continue;
        const std::size_t count = spine_voxels(i);
        fullest = std::max(fullest, count);
        const bool small = static_cast<double>(count) < outward->stop_fraction * static_cast<double>(fullest);
        small_run = small ? small_run + 1 : 0;
        if (fullest >= outward->min_spine_voxels && small_run >= outward->stop_after) return;
      }
    }
  };
  run_side(right, std::nullopt, {});
  if (!left.empty()) run_side(left, start, start_logits);
  return out;
}

}  // namespace

struct SpineSegmenter::Impl {
  ModelFile mr_path, ct_path;
  std::string device;
  std::map<std::string, std::unique_ptr<Model>> models;
  std::set<std::string> limitations_shown;  // modalities whose model's limitations were logged (once per run)

  const Model& get(const std::string& modality) {
    auto it = models.find(modality);
    if (it != models.end()) return *it->second;
    const auto& path = modality == "ct" ? ct_path : mr_path;
    if (path.path.empty()) throw usage_error("no " + modality + " model given");
    auto m = std::make_unique<Model>(Model::load(path, {"spine-seg", {modality}, 2}, device));
    log::info("model {} {} on {}", m->card().name, m->card().version, device);
    return *models.emplace(modality, std::move(m)).first->second;
  }
};

SpineSegmenter::SpineSegmenter(ModelFile mr_model, ModelFile ct_model, std::string device)
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
  // The first study of a modality loads its model; that time is the run's, not this
  // study's preparation, so it is recorded on its own.
  const auto t_model = std::chrono::steady_clock::now();
  const bool loads_model = !impl_->models.count(result.modality.modality);
  const SliceModel sm = describe(impl_->get(result.modality.modality));
  const double model_load_s = loads_model ? seconds_since(t_model) : 0.0;
  if (loads_model) result.timing["model_load_s"] = model_load_s;
  result.vertebra_part = sm.vertebra_part;
  result.model_limitations = sm.model->card().limitations;
  if (impl_->limitations_shown.insert(result.modality.modality).second)
    for (const auto& l : result.model_limitations) log::warn("{} {}: {}", sm.model->card().name, sm.model->card().version, l);

  // Canonical orientation, model spacing, model normalisation.
  const std::string input_code = orientation_code(g_in);
  // The input read along the canonical axes through a view, not a copy: with the coarse
  // pass only the region around the spine is ever resampled from it.
  const Reorientation canon = reorientation(g_in, kCanonical);
  const Geometry native_grid = canon.geometry;
  // Thick axial slices blur the discs the instances are cut at and the names rest on: a
  // spacing head to foot (the canonical grid's first axis, I) beyond what the model was
  // checked on makes every outline and name doubtful.
  if (const double hf = native_grid.spacing[0];
      sm.head_foot_spacing_checked_mm > 0 && hf > sm.head_foot_spacing_checked_mm + 1e-3)
    result.flags.push_back(fmt::format(
        "slices {:.1f} mm apart head to foot, more than the {:g} mm the {} model was checked on: outlines and "
        "names are not reliable (the model card's limitations say what was measured)",
        hf, sm.head_foot_spacing_checked_mm, result.modality.modality));
  const double model_spacing = 1.0;
  const bool at_model_spacing = std::abs(native_grid.spacing[0] - model_spacing) < 1e-3 &&
                                std::abs(native_grid.spacing[1] - model_spacing) < 1e-3 &&
                                std::abs(native_grid.spacing[2] - model_spacing) < 1e-3;
  // The model's grid over the whole field; only the part around the spine is ever
  // resampled onto it when the coarse pass runs.
  const Geometry model_grid =
      at_model_spacing ? native_grid : grid_with_spacing(native_grid, {model_spacing, model_spacing, model_spacing});
  const auto nx = static_cast<std::int64_t>(model_grid.size[0]), ny = static_cast<std::int64_t>(model_grid.size[1]),
             nz = static_cast<std::int64_t>(model_grid.size[2]);
  result.timing["prepare_s"] = seconds_since(t_start) - model_load_s;

  // Coarse pass: every few millimetres laterally, at a coarser in-plane resolution.
  // `box` is the region of the model grid around the spine that the fine pass covers.
  Region box{0, nx, 0, ny, {}};
  bool found = true;
  std::optional<std::size_t> fine_start;  // where the fine pass starts, in box.zs
  // A volume that is already a crop around the spine (the usual lumbar MRI) has nothing
  // for the coarse pass to cut away: every slice is spine-sized and fits one window.
  const bool spine_sized = nz * model_spacing <= 160 && nx * model_spacing <= 400 && ny * model_spacing <= 250;
  const bool use_coarse = config.coarse_to_fine && !spine_sized;
  result.timing["coarse_skipped_spine_sized_volume"] = config.coarse_to_fine && spine_sized;
  std::optional<Normaliser> norm;
  if (use_coarse) {
    log::set_stage("coarse pass (finding the spine)");
    const auto t0 = std::chrono::steady_clock::now();
    const double cs = config.coarse_spacing_mm;
    // Straight from the input's voxels to the coarse grid (the coarse grid of the model
    // grid, as before), normalised with what the coarse volume's intensities say.
    FloatImage coarse = resample_image_to(image, canon, grid_with_spacing(model_grid, {cs, cs, cs}));
    norm = make_normaliser(coarse, sm.normalisation);
    norm->apply(coarse);
    Region cr{0, static_cast<std::int64_t>(coarse.nx()), 0, static_cast<std::int64_t>(coarse.ny()), {}};
    const std::int64_t step = std::max<std::int64_t>(1, std::lround(config.coarse_slice_step_mm / cs));
    const auto ncz = static_cast<std::int64_t>(coarse.nz());
    std::vector<std::array<double, 3>> points;
    std::size_t coarse_slices = 0;
    auto predict_coarse = [&](const std::vector<std::int64_t>& zs) {
      if (zs.empty()) return;
      Region r = cr;
      r.zs = zs;
      const SlicePrediction cp = predict_slices(coarse, r, sm, 0.25, false, true);
      const std::size_t plane = static_cast<std::size_t>(r.nx() * r.ny());
      for (std::size_t i = 0; i < cp.structure.size(); ++i) {
        if (!cp.structure[i]) continue;
        points.push_back({static_cast<double>(i % r.nx()), static_cast<double>((i / r.nx()) % r.ny()),
                          static_cast<double>(r.zs[i / plane])});
      }
      coarse_slices += zs.size();
    };
    // Only hits near the spinal column count: per head-foot row, the column is at the
    // median lateral and antero-posterior position of the row's hits (+-40 mm in each
    // row's neighbourhood), so ribs or pelvis taken for vertebrae do not widen the box.
    constexpr double kLateralMm = 60.0, kApMm = 80.0;
    // Every other slice first; the ones in between only where they can add hits near the
    // column (within kLateralMm of where the first half puts it), which on a torso-wide
    // field is under half of them. Without a column in the first half (a spine thinner
    // than two steps) every slice in between is run.
    std::vector<std::int64_t> first, between;
    for (std::int64_t z = step / 2, k = 0; z < ncz; z += step, ++k) (k % 2 == 0 ? first : between).push_back(z);
    predict_coarse(first);
    const auto [lat_lo, lat_hi] = ColumnModel(points, cs, 40.0).lateral_extent();
    if (lat_lo <= lat_hi) {
      const double reach = kLateralMm / cs + step;
      std::vector<std::int64_t> kept;
      for (std::int64_t z : between)
        if (z >= lat_lo - reach && z <= lat_hi + reach) kept.push_back(z);
      between = std::move(kept);
    }
    predict_coarse(between);
    double lo[3] = {1e30, 1e30, 1e30}, hi[3] = {-1e30, -1e30, -1e30};
    std::size_t hits = 0;
    const ColumnModel column(points, cs, 40.0);
    for (const auto& c : points) {
      if (!column.near(c, kLateralMm, kApMm)) continue;
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
      // On CT, in plane the margin may give up to 5 mm a side to fit the box to the
      // windows. Not on MR: the MR model's level outputs read the whole window, and on
      // the 350 SPIDER slices (`spine-grade --discs-only`) the fitted box (real image
      // where there were zeros) moved the names of whole chains by one or more levels in
      // 98 of the series, first sacral segments taken for L5 among them.
      const double inner_m = std::max(0.0, m - 5);
      const bool fit = result.modality.modality == "ct";
      const auto in_plane = [&](int a, std::int64_t n) {
        const auto outer = to_fine(lo[a], hi[a], m, n);
        return fit ? fit_to_windows(outer, to_fine(lo[a], hi[a], inner_m, n), n) : outer;
      };
      const auto [x0, x1] = in_plane(0, nx);
      const auto [y0, y1] = in_plane(1, ny);
      const auto [z0, z1] = to_fine(lo[2], hi[2], m / 2 + half_step, nz);
      box = {x0, x1, y0, y1, {}};
      for (std::int64_t z = z0; z < z1; ++z) box.zs.push_back(z);
      // The fine pass starts at the column's lateral centre and works outwards.
      // (A spine found has hits near the column, so the column has an extent.)
      const auto [c_lo, c_hi] = column.lateral_extent();
      if (c_lo <= c_hi && z1 > z0) {
        const double centre = ((c_lo + c_hi) / 2 + 0.5) * cs;
        fine_start = static_cast<std::size_t>(std::clamp<std::int64_t>(std::lround(centre) - z0, 0, z1 - z0 - 1));
      }
    }
    result.timing["coarse_s"] = seconds_since(t0);
    result.timing["coarse_slices"] = coarse_slices;
  } else {
    for (std::int64_t z = 0; z < nz; ++z) box.zs.push_back(z);
  }

  // The volume the fine pass reads: with the coarse pass, the box (and the neighbouring
  // slices the 2.5D input needs) resampled from the input's voxels onto the model grid,
  // the same values the whole volume would have there; else the whole volume.
  const auto t_vol = std::chrono::steady_clock::now();
  FloatImage vol;
  Region fine;  // in `vol`'s voxels
  if (use_coarse && found && !box.zs.empty()) {
    const std::int64_t context =
        std::max<std::int64_t>(1, std::lround(sm.slice_offset_mm / model_spacing));
    const std::int64_t z0 = std::max<std::int64_t>(0, box.zs.front() - context),
                       z1 = std::min<std::int64_t>(nz, box.zs.back() + 1 + context);
    Geometry sub = model_grid;
    sub.size = {static_cast<std::size_t>(box.nx()), static_cast<std::size_t>(box.ny()), static_cast<std::size_t>(z1 - z0)};
    sub.origin = model_grid.index_to_lps(static_cast<double>(box.x0), static_cast<double>(box.y0), static_cast<double>(z0));
    vol = resample_image_to(image, canon, sub);
    norm->apply(vol);
    fine = {0, box.nx(), 0, box.ny(), {}};
    for (std::int64_t z : box.zs) fine.zs.push_back(z - z0);
  } else {
    vol = at_model_spacing ? reorient(image, kCanonical) : resample_image_to(image, canon, model_grid);
    make_normaliser(vol, sm.normalisation).apply(vol);
    fine = box;
  }
  result.timing["prepare_s"] = result.timing["prepare_s"].get<double>() + seconds_since(t_vol);
  const bool whole_slice_windows = config.coarse_to_fine;

  LabelImage canon_labels(vol.geometry, 0);
  if (!found || fine.zs.empty()) {
    result.flags.push_back("no spine found in the volume");
  } else {
    log::set_stage(fmt::format("fine pass ({} slices)", fine.zs.size()));
    const auto t1 = std::chrono::steady_clock::now();
    // Without the coarse pass: the plain baseline, the card's patch tiled with half overlap.
    std::optional<Outward> outward;
    if (fine_start) outward = Outward{*fine_start};
    const SlicePrediction fp =
        predict_slices(vol, fine, sm, config.coarse_to_fine ? 0.25 : 0.5, true, whole_slice_windows,
                       config.coarse_to_fine ? static_cast<std::size_t>(config.fine_slice_stride) : 1, outward);
    result.timing["fine_s"] = seconds_since(t1);
    result.timing["fine_region_voxels"] = {fine.nx(), fine.ny(), static_cast<std::int64_t>(fine.zs.size())};
    result.timing["fine_slices_predicted"] = fp.end_slice - fp.first_slice;
    result.timing["fine_slices_run"] = fp.slices_run;
    result.timing["volume_voxels"] = {nx, ny, nz};
    log::set_stage("vertebra instances and names");
    const auto t2 = std::chrono::steady_clock::now();
    const std::int64_t rx = fine.nx(), ry = fine.ny(), rz = static_cast<std::int64_t>(fine.zs.size());
    const double voxel_ml = vol.geometry.spacing[0] * vol.geometry.spacing[1] * vol.geometry.spacing[2] / 1000.0;
    const int n_levels = static_cast<int>(sm.levels.size());

    // Vertebra instances: connected components; one longer than a vertebra can be
    // (neighbours joined through a missed disc or touching posterior elements) is cut at
    // thin joins, then by the level votes; what still holds vertebra on both sides of a
    // disc is cut at the disc.
    std::vector<std::uint8_t> vmask(fp.structure.size()), dmask(fp.structure.size());
    for (std::size_t i = 0; i < vmask.size(); ++i) vmask[i] = fp.structure[i] == 1, dmask[i] = fp.structure[i] == 2;
    InstanceRules rules;
    rules.spacing_mm = vol.geometry.spacing[0];
    rules.bodies = sm.vertebra_part == "body";
    rules.min_vertebra_ml = config.min_vertebra_ml;
    rules.min_fraction_of_median = config.min_fraction_of_median;
    rules.max_count = normal_sequence().size();
    rules.min_disc_ml = config.min_disc_ml;
    const auto level_of = [&](std::size_t v) {
      const float* p = fp.levels_at(v);
      return static_cast<int>(std::max_element(p, p + n_levels) - p);
    };
    std::vector<Instance> instances = vertebra_instances(vmask, dmask, rx, ry, rz, n_levels, level_of, rules, result.flags);

    // Names: the sequence constraint over each instance's mean level probabilities.
    std::vector<std::vector<double>> probs;
    for (const auto& in : instances) {
      std::vector<double> mean(static_cast<std::size_t>(n_levels), 0.0);
      for (std::size_t v : in.voxels) {
        const float* p = fp.levels_at(v);
        for (int l = 0; l < n_levels; ++l) mean[l] += p[l];
      }
      for (double& m : mean) m /= static_cast<double>(in.voxels.size());
      {  // the level model's view of each candidate, for the log file
        std::string top;
        std::vector<int> order(static_cast<std::size_t>(n_levels));
        std::iota(order.begin(), order.end(), 0);
        std::sort(order.begin(), order.end(), [&](int a, int b) { return mean[a] > mean[b]; });
        for (int k = 0; k < std::min(3, n_levels); ++k)
          top += fmt::format(" {}:{:.2f}", label_name(sm.levels[order[k]]), mean[order[k]]);
        log::debug("vertebra candidate {} at head-foot {:.0f} mm, {:.1f} ml, levels{}", probs.size(), in.cx + box.x0,
                   in.voxels.size() * voxel_ml, top);
      }
      probs.push_back(std::move(mean));
    }
    // On CT, where the ribs end anchors the names (T12 is the lowest rib-bearing vertebra).
    std::vector<RibEvidence> ribs;
    if (result.modality.modality == "ct" && !instances.empty()) {
      std::vector<RibProbe> probes;
      for (const auto& in : instances)
        probes.push_back({vol.geometry.index_to_lps(in.cx + fine.x0, in.cy + fine.y0, in.cz + static_cast<double>(fine.zs.front())),
                          static_cast<double>(in.x_max - in.x_min + 1) * vol.geometry.spacing[0]});
      const auto is_vertebra = [&](const std::array<double, 3>& lps) {
        const auto p = vol.geometry.lps_to_index(lps);
        const auto x = std::lround(p[0]) - fine.x0, y = std::lround(p[1]) - fine.y0,
                   z = std::lround(p[2]) - fine.zs.front();
        if (x < 0 || y < 0 || z < 0 || x >= rx || y >= ry || z >= rz) return false;
        return fp.structure[static_cast<std::size_t>((z * ry + y) * rx + x)] == 1;
      };
      ribs = rib_evidence(image, probes, is_vertebra);
      std::string seen;
      for (const auto e : ribs) seen += e == RibEvidence::kRibs ? " ribs" : e == RibEvidence::kNone ? " none" : " ?";
      log::debug("ribs per vertebra candidate, head to foot:{}", seen);
    }
    std::vector<double> volumes_ml;
    for (const auto& in : instances) volumes_ml.push_back(static_cast<double>(in.voxels.size()) * voxel_ml);
    SequenceNaming naming = name_vertebra_sequence(probs, sm.levels, ribs, volumes_ml);
    // Candidates [first, last) the naming gave one name become one instance (they carry
    // that name); its confidence is their mean, weighted by their size, and it keeps the
    // rib evidence of candidate `ribs_of`.
    const auto merge = [&](std::size_t first, std::size_t last, std::size_t ribs_of) {
      std::vector<std::size_t> voxels;
      double conf = 0;
      for (std::size_t i = first; i < last; ++i) {
        conf += naming.confidence[i] * static_cast<double>(instances[i].voxels.size());
        voxels.insert(voxels.end(), instances[i].voxels.begin(), instances[i].voxels.end());
      }
      naming.confidence[first] = conf / static_cast<double>(voxels.size());
      instances[first] = make_instance(std::move(voxels), rx, ry, rz);
      const auto from = static_cast<std::ptrdiff_t>(first + 1), to = static_cast<std::ptrdiff_t>(last);
      instances.erase(instances.begin() + from, instances.begin() + to);
      naming.labels.erase(naming.labels.begin() + from, naming.labels.begin() + to);
      naming.confidence.erase(naming.confidence.begin() + from, naming.confidence.begin() + to);
      if (!ribs.empty()) {
        ribs[first] = ribs[ribs_of];
        ribs.erase(ribs.begin() + from, ribs.begin() + to);
      }
    };
    if (naming.piece >= 0) {
      // A piece of a vertebra (cut off at a disc and left a candidate of its own) joins it.
      const auto piece = static_cast<std::size_t>(naming.piece), into = static_cast<std::size_t>(naming.piece_of);
      log::debug("vertebra candidate {} ({:.1f} ml) is a piece of candidate {}: merged", piece,
                 static_cast<double>(instances[piece].voxels.size()) * voxel_ml, into);
      merge(std::min(piece, into), std::max(piece, into) + 1, into);
    }
    if (naming.sacrum_pieces > 1) {  // the pieces of one sacrum
      log::debug("the last {} vertebra candidates are pieces of the sacrum: merged", naming.sacrum_pieces);
      const std::size_t first = instances.size() - naming.sacrum_pieces;
      merge(first, instances.size(), first);
    }
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
    const bool roi_is_fov = box.x0 == 0 && box.x1 == nx && box.y0 == 0 && box.y1 == ny;
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
      if (i < ribs.size()) v.ribs = ribs[i];
      for (std::size_t vox : in.voxels) canon_labels.voxels[region_to_canon(vox)] = static_cast<std::int16_t>(v.label);
      result.vertebrae.push_back(v);
    }

    // Discs: components of the disc class, named after the vertebra above them.
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

  // Back to the input's grid: on the input's own grid already, a lossless reorientation;
  // else straight onto it (the voting resample visits only where the labels can reach,
  // with no canonical copy of the whole grid on the way).
  const auto t3 = std::chrono::steady_clock::now();
  result.labels = canon_labels.geometry.same_grid(native_grid, 1e-4) ? reorient(canon_labels, input_code)
                                                                     : resample_labels_to(canon_labels, g_in);
  result.labels.geometry = g_in;  // identical up to rounding; keep the input's exactly
  result.timing["restore_grid_s"] = seconds_since(t3);
  if (result.modality.modality == "ct") {
    const auto t4 = std::chrono::steady_clock::now();
    for (const auto& f : metal_flags(image, result.labels, result.vertebrae)) result.flags.push_back(f);
    result.timing["metal_check_s"] = seconds_since(t4);
  }
  result.timing["total_s"] = seconds_since(t_start);
  return result;
}

}  // namespace spine
