// spine-seg / spine-detect: per volume, segmentation and identification by
// spine::SpineSegmenter; outputs written into the batch runner's work folder.
#include "spine/commands/spine_seg_cmd.hpp"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <fstream>
#include <functional>
#include <map>
#include <set>

#include "spine/commands/cobb_cmd.hpp"  // default_model_path
#include "spine/csv.hpp"
#include "spine/dicom_seg.hpp"
#include "spine/error.hpp"
#include "spine/io.hpp"
#include "spine/labels.hpp"
#include "spine/log.hpp"
#include "spine/preprocess.hpp"
#include "spine/render.hpp"
#include "spine/structure_stats.hpp"
#include "spine/version.hpp"

namespace fs = std::filesystem;

namespace spine {

void SpineModelOptions::register_cli(CLI::App& app) {
  app.add_option("--modality", modality, "ct, mr or auto (DICOM Modality tag, else intensities: HU means CT)")
      ->check(CLI::IsMember({"auto", "ct", "mr"}));
  app.add_option("--mr-model", mr_model, "MR model (default: models/mr-spine-seg.pt)");
  app.add_option("--ct-model", ct_model, "CT model (default: models/ct-spine-seg.pt)");
  app.add_flag("!--no-coarse", seg.coarse_to_fine,
               "Skip the coarse pass: run the model over every slice of the whole volume (slower; for comparison)");
  app.add_option("--roi-margin", seg.roi_margin_mm, "Margin around the spine found by the coarse pass (mm)")
      ->check(CLI::Range(0.0, 200.0));
  app.add_option("--min-vertebra-ml", seg.min_vertebra_ml, "Drop vertebra fragments smaller than this (ml)")
      ->check(CLI::Range(0.0, 1000.0));
  app.add_option("--fine-stride", seg.fine_slice_stride,
                 "Fine pass: run the model on every Nth sagittal slice and interpolate the slices between (1: every "
                 "slice)")
      ->check(CLI::Range(1, 4));
  app.add_flag("!--no-overlay", overlay, "Do not write overlay.png");
}

nlohmann::json SpineModelOptions::to_json() const {
  return {{"modality", modality}, {"mr_model", mr_model}, {"ct_model", ct_model}, {"segmentation", seg.to_json()},
          {"overlay", overlay}};
}

void SegCommandConfig::register_cli(CLI::App& app) {
  common.register_cli(app);
  models.register_cli(app);
  app.add_option("--output-format", output_format,
                 "nifti: labels.nii.gz and its colour tables; dicom-seg: also segmentation.dcm, a DICOM Segmentation "
                 "object with each vertebra's and disc's name, SNOMED CT code and colour, which belongs to the source "
                 "study and names each frame's source image when the input is a DICOM series")
      ->check(CLI::IsMember({"nifti", "dicom-seg"}));
  app.add_flag("--dicom-patient-identity", dicom_patient_identity,
               "With --output-format dicom-seg: copy the patient's name, ID, birth date and sex and the study's date, "
               "time, ID and accession number from the source series into the SEG, so that a PACS files it with the "
               "study. Without it no patient name, ID or date is written: the SEG refers to the study by its UIDs "
               "and says Patient Identity Removed");
}

nlohmann::json SegCommandConfig::to_json() const {
  return {{"common", common.to_json()},
          {"models", models.to_json()},
          {"output_format", output_format},
          {"dicom_patient_identity", dicom_patient_identity}};
}

void DetectCommandConfig::register_cli(CLI::App& app) {
  common.register_cli(app);
  models.register_cli(app);
  app.add_flag("--labels", write_labels, "Also write labels.nii.gz and its colour tables");
}

nlohmann::json DetectCommandConfig::to_json() const {
  return {{"common", common.to_json()}, {"models", models.to_json()}, {"labels", write_labels}};
}

std::vector<std::string> spine_seg_model_versions() {
  std::vector<std::string> out;
  for (const char* file : {"mr-spine-seg.pt", "ct-spine-seg.pt"}) {
    try {
      const auto model = shipped_model(file);
      const auto card = Model::read_card(model);
      out.push_back(card.name + " " + card.version + " (" + model.path.string() + ", SHA-256 verified)");
    } catch (const Error& e) {
      out.push_back(std::string(file) + ": unavailable (" + e.what() + ")");
    }
  }
  return out;
}

// Before the batch, each model the run may need is checked (file, checksum, card) without
// loading it, so a missing or wrong model stops the run at once; a model is loaded when
// the first study that needs it comes (an MR-only run never loads the CT model). With
// --modality auto a shipped model that is missing only warns: the studies of the other
// modality can still run; a model the user named must be right.
void check_spine_models(const SpineModelOptions& o) {
  const std::vector<std::string> needed = o.modality == "auto" ? std::vector<std::string>{"mr", "ct"}
                                                               : std::vector<std::string>{o.modality};
  for (const auto& m : needed) {
    const std::string& given = m == "ct" ? o.ct_model : o.mr_model;
    try {
      Model::check(model_file(given, m + "-spine-seg.pt"), {"spine-seg", {m}, 2});
    } catch (const Error& e) {
      if (o.modality != "auto" || !given.empty()) throw;
      log::warn("{} model unavailable: {}", m, e.what());
    }
  }
}

namespace {

std::array<double, 3> rounded(const std::array<double, 3>& p) {
  return {round_to(p[0], 0.01), round_to(p[1], 0.01), round_to(p[2], 0.01)};
}

using Statistics = std::map<int, StructureStatistics>;

std::string intensity_unit(const SpineSegResult& r) { return r.modality.modality == "ct" ? "HU" : "MR signal"; }

// Intensity over the structure's voxels, to 0.1 of the image's unit (HU on CT).
nlohmann::json intensity_json(const Statistics& stats, int label, const std::string& unit) {
  const auto it = stats.find(label);
  if (it == stats.end()) return nullptr;
  const auto& s = it->second;
  return {{"unit", unit},
          {"mean", round_to(s.mean, 0.1)},
          {"sd", round_to(s.sd, 0.1)},
          {"median", round_to(s.median, 0.1)},
          {"q1", round_to(s.q1, 0.1)},
          {"q3", round_to(s.q3, 0.1)},
          {"iqr", round_to(s.q3 - s.q1, 0.1)}};
}

// `stats` empty (spine-detect): no intensity entries.
nlohmann::json vertebrae_json(const SpineSegResult& r, const Statistics& stats) {
  nlohmann::json vs = nlohmann::json::array();
  for (const auto& v : r.vertebrae) {
    nlohmann::json j{{"name", v.name},
                     {"label", v.label},
                     {"centroid_lps_mm", rounded(v.centroid_lps_mm)},
                     {"confidence", round_to(v.confidence, 0.001)},
                     {"volume_ml", round_to(v.volume_ml, 0.01)},
                     {"cut_by_field_of_view", v.touches_border}};
    if (!stats.empty()) j["intensity"] = intensity_json(stats, v.label, intensity_unit(r));
    // CT: whether bone that is not vertebra lies 50-75 mm to its side at its height (the
    // ribs beside thoracic vertebrae, the iliac wings beside L4..S; "unknown" where the
    // field of view or the image does not tell). Where it ends from the top anchors T12.
    if (r.modality.modality == "ct")
      j["bone_beside"] = v.ribs == RibEvidence::kRibs ? "yes" : v.ribs == RibEvidence::kNone ? "no" : "unknown";
    vs.push_back(std::move(j));
  }
  return vs;
}

nlohmann::json discs_json(const SpineSegResult& r, const Statistics& stats) {
  nlohmann::json ds = nlohmann::json::array();
  for (const auto& d : r.discs)
    ds.push_back({{"name", d.name}, {"label", d.label}, {"centroid_lps_mm", rounded(d.centroid_lps_mm)},
                  {"volume_ml", round_to(d.volume_ml, 0.01)},
                  {"intensity", intensity_json(stats, d.label, intensity_unit(r))}});
  return ds;
}

nlohmann::json modality_json(const SpineSegResult& r) {
  return {{"modality", r.modality.modality}, {"reason", r.modality.reason}};
}

// A 2D cut through the volume as if it were reoriented to "IPR" (without reorienting the
// whole volume, which took longer than the rest of the picture on a large CT): rows
// superior -> inferior; columns anterior -> posterior (sagittal) or patient right -> left
// (coronal).
template <class T>
Image<T> cut(const Image<T>& image, const Reorientation& canon, bool sagittal, std::size_t index) {
  const auto& g = canon.geometry;
  const std::size_t cols = sagittal ? g.size[1] : g.size[2];
  Geometry g2 = make_geometry_2d(cols, g.size[0], {sagittal ? g.spacing[1] : g.spacing[2], g.spacing[0]});
  Image<T> out(g2);
  for (std::size_t row = 0; row < g.size[0]; ++row)
    for (std::size_t c = 0; c < cols; ++c)
      out.at(c, row) = image.voxels[sagittal ? canon.offset(row, c, index) : canon.offset(row, index, g.size[2] - 1 - c)];
  return out;
}

// Picture of the labels over the image with the names next to each vertebra.
RgbImage panel(const FloatImage& img2d, const LabelImage& lab2d, float lo, float hi, double px_mm,
               const std::vector<std::pair<std::string, Point2>>& names, const std::string& title) {
  const double iso = std::min(img2d.geometry.spacing[0], img2d.geometry.spacing[1]);
  const FloatImage img = resample_image(img2d, {iso, iso, 1});
  const LabelImage lab = resample_labels(lab2d, {iso, iso, 1});
  const double scale = std::clamp(px_mm * iso, 0.25, 8.0);  // output pixels per resampled pixel
  RgbImage canvas = grey_to_rgb(img, lo, hi, scale);
  for (std::size_t y = 0; y < canvas.height; ++y)
    for (std::size_t x = 0; x < canvas.width; ++x) {
      const auto sx = std::min<std::size_t>(lab.nx() - 1, static_cast<std::size_t>(x / scale));
      const auto sy = std::min<std::size_t>(lab.ny() - 1, static_cast<std::size_t>(y / scale));
      const int v = lab.at(sx, sy);
      if (v == 0) continue;
      const auto rgb = label_info(v).rgb;
      std::uint8_t* p = &canvas.rgb[(y * canvas.width + x) * 3];
      for (int c = 0; c < 3; ++c) p[c] = static_cast<std::uint8_t>(0.55 * p[c] + 0.45 * rgb[c]);
    }
  const double unit = std::max(1.0, canvas.height / 600.0);
  for (const auto& [name, at] : names)
    draw_text(canvas, name, {at.x * scale / iso, at.y * scale / iso - 6 * unit}, 11 * unit, {255, 255, 255});
  draw_text(canvas, title, {4 * unit, 4 * unit}, 10 * unit, {255, 220, 0});
  return canvas;
}

void write_overlay(const FloatImage& image, const SpineSegResult& r, const fs::path& path) {
  if (r.labels.geometry.size != image.geometry.size) throw internal_error("overlay: the labels are not on the image's grid");
  const Reorientation canon = reorientation(image.geometry, "IPR");
  const auto& g = canon.geometry;
  // Cut through the vertebrae's median lateral and antero-posterior position.
  std::vector<double> ys, zs;
  for (const auto& v : r.vertebrae) {
    const auto idx = g.lps_to_index(v.centroid_lps_mm);
    ys.push_back(idx[1]), zs.push_back(idx[2]);
  }
  auto median = [](std::vector<double> v, double fallback) {
    if (v.empty()) return fallback;
    std::nth_element(v.begin(), v.begin() + v.size() / 2, v.end());
    return v[v.size() / 2];
  };
  const auto clamp_index = [](double v, std::size_t n) {
    return static_cast<std::size_t>(std::clamp(std::lround(v), 0L, static_cast<long>(n) - 1));
  };
  const std::size_t z_mid = clamp_index(median(zs, g.size[2] / 2.0), g.size[2]);
  const std::size_t y_mid = clamp_index(median(ys, g.size[1] / 2.0), g.size[1]);
  float lo = 0, hi = 1;
  if (r.modality.modality == "ct") {
    lo = -250, hi = 1250;
  } else {
    lo = percentile(image, 1.0), hi = percentile(image, 99.5);
  }
  // Names at the centroids, in each cut's millimetres (before resampling to square pixels).
  std::vector<std::pair<std::string, Point2>> sag_names, cor_names;
  for (const auto& v : r.vertebrae) {
    const auto idx = g.lps_to_index(v.centroid_lps_mm);
    sag_names.push_back({v.name, {idx[1] * g.spacing[1] + 8, idx[0] * g.spacing[0]}});
    cor_names.push_back({v.name, {(g.size[2] - 1 - idx[2]) * g.spacing[2] + 25, idx[0] * g.spacing[0]}});
  }
  const double extent_mm = g.size[0] * g.spacing[0];
  const double px_mm = std::clamp(700.0 / extent_mm, 1.0, 4.0);  // about 700 px tall
  const RgbImage a = panel(cut(image, canon, true, z_mid), cut(r.labels, canon, true, z_mid), lo, hi, px_mm, sag_names,
                           "mid-sagittal (anterior left)");
  const RgbImage b = panel(cut(image, canon, false, y_mid), cut(r.labels, canon, false, y_mid), lo, hi, px_mm, cor_names,
                           "mid-coronal (patient right on the left)");
  RgbImage out;
  out.width = std::max<std::size_t>(a.width + 8 + b.width, 900);
  out.height = std::max(a.height, b.height) + 40;
  out.rgb.assign(out.width * out.height * 3, 0);
  auto blit = [&](const RgbImage& src, std::size_t x0) {
    for (std::size_t y = 0; y < src.height; ++y)
      std::copy_n(&src.rgb[y * src.width * 3], src.width * 3, &out.rgb[(y * out.width + x0) * 3]);
  };
  blit(a, 0);
  blit(b, a.width + 8);
  std::string footer = r.modality.modality == "ct" ? "CT" : "MR";
  footer += ": " + std::to_string(r.vertebrae.size()) + " vertebrae, " + std::to_string(r.discs.size()) + " discs";
  if (!r.flags.empty()) footer += "  ! " + r.flags.front() + (r.flags.size() > 1 ? " (+ more in the JSON)" : "");
  draw_text(out, footer, {4, static_cast<double>(out.height) - 30}, 13, r.flags.empty() ? Rgb{255, 255, 255} : Rgb{255, 90, 90});
  write_png(out, path);
}

void write_labels_with_tables(const SpineSegResult& r, const fs::path& work) {
  write_labels(r.labels, work / "labels.nii.gz");
  std::set<int> present;
  for (const auto& v : r.vertebrae) present.insert(v.label);
  for (const auto& d : r.discs) present.insert(d.label);
  write_color_tables(std::vector<int>(present.begin(), present.end()), work / "labels");
}

// segmentation.dcm beside labels.nii.gz; what it holds, for segmentation.json. A study in
// which nothing was segmented has no SEG (the object needs a segment): null, and its
// flags say why. Under --anonymise-names the SEG stands alone even for a DICOM series:
// the source's study, series and instance UIDs would tie the pseudonymised output back
// to the patient's study in the hospital's archive.
nlohmann::json write_seg_object(const Study& study, const LoadedImage& in, const SpineSegResult& r, const fs::path& work,
                                bool patient_identity, bool anonymised) {
  if (r.vertebrae.empty() && r.discs.empty()) return nullptr;
  DicomSegOptions o;
  const bool from_series = in.info.format == "dicom-series";
  if (from_series && !anonymised) o.source_series = study.path;
  o.copy_patient_identity = patient_identity;
  o.series_description = "spine-seg vertebrae and discs (" + r.modality.modality + ")";
  o.software_version = std::string(kVersion) + " " + kGitRevision;
  const DicomSegSummary s = write_dicom_seg(r.labels, work / "segmentation.dcm", o);
  nlohmann::json j{{"file", "segmentation.dcm"},
                   {"segments", s.segments},
                   {"frames", s.frames},
                   {"references_source_series", s.references_source},
                   {"patient_identity", patient_identity && s.references_source ? "copied from the source series" : "none"}};
  if (from_series && anonymised) {
    j["why_no_references"] = "--anonymise-names: the source series' UIDs would identify the patient's study";
  } else if (!s.source_problem.empty()) {
    j["why_no_references"] = s.source_problem;
    log::warn("{}: the DICOM SEG stands alone (new study and series UIDs): {}", study.name, s.source_problem);
  }
  return j;
}

struct Pipeline {
  SpineSegmenter segmenter;
  const SpineModelOptions& options;
  std::string last_modality;  // of the last study segmented

  explicit Pipeline(const SpineModelOptions& o, const std::string& device)
      : segmenter(model_file(o.mr_model, "mr-spine-seg.pt"), model_file(o.ct_model, "ct-spine-seg.pt"), device),
        options(o) {}

  std::pair<LoadedImage, SpineSegResult> run(const Study& study) {
    const auto t0 = std::chrono::steady_clock::now();
    LoadedImage in = read_image(study.path);
    const double read_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    try {
      SpineSegResult r = segmenter.segment(in.image, options.modality, in.info.modality, options.seg);
      r.timing["read_s"] = read_s;
      last_modality = r.modality.modality;
      for (const auto& f : r.flags) log::warn("{}: {}", study.name, f);
      return {std::move(in), std::move(r)};
    } catch (const Error& e) {
      throw e.with_context(study.path.string());
    }
  }

  // The model the last study used, for its provenance.
  std::vector<ModelRecord> records() {
    if (last_modality.empty()) return {};
    const Model& model = segmenter.model(last_modality);
    return {{model.card().name, model.card().version, model.sha256()}};
  }
};

using StudyWriter = std::function<nlohmann::json(const Study&, const fs::path& work, const LoadedImage&,
                                                  const SpineSegResult&)>;

// What both commands share: models checked before the batch and loaded once, provenance, and the
// pipeline per study; `write` puts the command's outputs into the work folder.
BatchSummary run_spine_batch(const CommonOptions& common, const SpineModelOptions& models, const std::string& tool,
                             const nlohmann::json& config, const StudyWriter& write,
                             const std::function<void(const fs::path&)>& write_cohort) {
  models.seg.validate();
  const std::string device = resolve_device(common.device);
  const auto studies = discover_studies(common.inputs);
  check_spine_models(models);
  // LibTorch loads while the first study is read; its model is loaded when the study's
  // modality is known.
  start_loading_model_runtime();
  Pipeline pipeline(models, device);
  // 15.3 bytes per voxel peak on a 512 x 512 x 600 int16 CT (scripts/bench_memory.py, 2026-12-05).
  BatchOptions options = common.batch_options(tool, config, 16);
  options.study_models = [&] { return pipeline.records(); };
  options.on_finish = [&] { write_cohort(common.output_dir); };
  return run_batch(studies, options, [&](const Study& study, const fs::path& work) {
    const auto [in, r] = pipeline.run(study);
    return write(study, work, in, r);
  });
}

}  // namespace

BatchSummary run_spine_seg(const SegCommandConfig& c) {
  if (c.dicom_patient_identity && c.output_format != "dicom-seg")
    throw usage_error("--dicom-patient-identity needs --output-format dicom-seg");
  if (c.dicom_patient_identity && !c.common.name_map.empty())
    throw usage_error("--dicom-patient-identity contradicts --anonymise-names");
  return run_spine_batch(c.common, c.models, "spine-seg", c.to_json(), [&](const Study& study, const fs::path& work,
                                                                          const LoadedImage& in, const SpineSegResult& r) {
    const auto t_write = std::chrono::steady_clock::now();
    write_labels_with_tables(r, work);
    const Statistics stats = structure_statistics(in.image, r.labels);
    if (c.models.overlay) write_overlay(in.image, r, work / "overlay.png");
    nlohmann::json j{{"study", study.name},
                     {"modality", modality_json(r)},
                     {"vertebra_part", r.vertebra_part},
                     {"vertebrae", vertebrae_json(r, stats)},
                     {"discs", discs_json(r, stats)},
                     {"naming_confidence", round_to(r.naming_confidence, 0.001)},
                     {"gantry_tilt_corrected_deg", round_to(in.info.gantry_tilt_deg, 0.01)},
                     {"flags", r.flags},
                     {"model_limitations", r.model_limitations},
                     {"timing", r.timing}};
    if (c.output_format == "dicom-seg")
      j["dicom_seg"] = write_seg_object(study, in, r, work, c.dicom_patient_identity, !c.common.name_map.empty());
    // Labels, colour tables, statistics, overlay and SEG; the JSON itself is not timed.
    j["timing"]["write_s"] = std::chrono::duration<double>(std::chrono::steady_clock::now() - t_write).count();
    write_text_file(work / "segmentation.json", j.dump(2) + "\n");
    return nlohmann::json{{"modality", r.modality.modality}, {"vertebrae", r.vertebrae.size()},
                          {"discs", r.discs.size()}, {"flags", r.flags.size()}};
  }, write_seg_cohort);
}

BatchSummary run_spine_detect(const DetectCommandConfig& c) {
  return run_spine_batch(c.common, c.models, "spine-detect", c.to_json(), [&](const Study& study, const fs::path& work,
                                                                             const LoadedImage& in, const SpineSegResult& r) {
    nlohmann::json j{{"study", study.name},
                     {"modality", modality_json(r)},
                     {"vertebrae", vertebrae_json(r, {})},  // no statistics: spine-seg's table has them
                     {"naming_confidence", round_to(r.naming_confidence, 0.001)},
                     {"gantry_tilt_corrected_deg", round_to(in.info.gantry_tilt_deg, 0.01)},
                     {"flags", r.flags},
                     {"model_limitations", r.model_limitations},
                     {"method", "vertebrae segmented by the " + r.modality.modality +
                                    " model; centroids of the segmented " + r.vertebra_part +
                                    "; names from the level model's probabilities under a consecutive-sequence "
                                    "constraint"}};
    write_text_file(work / "vertebrae.json", j.dump(2) + "\n");
    write_text_file(work / "vertebrae.mrk.json", slicer_markups(r.vertebrae).dump(2) + "\n");
    if (c.write_labels) write_labels_with_tables(r, work);
    if (c.models.overlay) write_overlay(in.image, r, work / "overlay.png");
    return nlohmann::json{{"modality", r.modality.modality}, {"vertebrae", r.vertebrae.size()}, {"flags", r.flags.size()}};
  }, write_detect_cohort);
}

}  // namespace spine
