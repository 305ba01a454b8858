// spine-prep: reorientation, resampling, N4, windowing, CLAHE and normalisation, in that
// fixed order, applied to every study of a batch.
#include "spine/commands/prep.hpp"

#include <cmath>
#include <fstream>
#include <sstream>

#include "spine/cohort_report.hpp"
#include "spine/csv.hpp"
#include "spine/error.hpp"
#include "spine/io.hpp"
#include "spine/log.hpp"

namespace spine {

void PrepConfig::register_cli(CLI::App& app) {
  common.register_cli(app);
  app.add_option("--reorient", reorient, "Reorient to this code, e.g. LPS, RAS, PIR (empty: keep)");
  app.add_option("--resample", resample_mm, "Target spacing in mm: one value (isotropic) or one per axis")
      ->expected(1, 3)
      ->check(CLI::PositiveNumber);
  app.add_flag("--n4", n4, "N4 bias field correction (MR)");
  app.add_option("--n4-shrink", n4_config.shrink_factor, "N4 shrink factor")->check(CLI::Range(1, 16));
  app.add_option("--n4-iterations", n4_config.iterations, "N4 iterations per fitting level")->expected(1, 8);
  app.add_option("--n4-mask", n4_mask, "N4 fitting mask (non-zero voxels), on the input's grid")
      ->check(CLI::ExistingFile);
  app.add_option("--window", window, "CT window preset (output 0..1)")
      ->check(CLI::IsMember({"bone", "soft-tissue", "spine"}));
  app.add_option("--window-custom", window_level_width, "CT window LEVEL WIDTH in HU (output 0..1)")
      ->expected(2)
      ->excludes("--window");
  app.add_flag("--clahe", clahe, "Contrast-limited adaptive histogram equalisation (2D or 3D)");
  app.add_option("--clahe-clip", clahe_config.clip_limit, "CLAHE clip limit (multiple of the mean bin count)")
      ->check(CLI::Range(0.0, 1000.0));
  app.add_option("--clahe-tiles", clahe_config.tiles, "CLAHE tiles along x y z")->expected(3);
  app.add_option("--normalise", normalise, "Intensity normalisation")->check(CLI::IsMember({"none", "zscore"}));
  app.add_option("--clip-percentiles", clip_percentiles, "Clamp to LOWER UPPER percentiles (0..100)")->expected(2);
  app.add_option("--format", format, "Output image format")->check(CLI::IsMember({"nii.gz", "nii", "nrrd", "mha"}));
  app.add_option("--pixel", pixel, "Stored pixel type (auto: integer input kept integer when values allow)")
      ->check(CLI::IsMember({"auto", "float", "int16", "uint8"}));
}

std::vector<std::string> PrepConfig::validate() const {
  std::vector<std::string> warnings;
  if (!reorient.empty() && reorient.size() != 3 && reorient.size() != 2)
    throw usage_error("--reorient needs a 2- or 3-letter code such as LPS");
  if (resample_mm.size() == 2) throw usage_error("--resample takes one value or three");
  if (clip_percentiles.size() == 2 && !(clip_percentiles[0] >= 0 && clip_percentiles[0] < clip_percentiles[1] &&
                                        clip_percentiles[1] <= 100))
    throw usage_error("--clip-percentiles needs 0 <= LOWER < UPPER <= 100");
  if (window_level_width.size() == 2 && !(window_level_width[1] > 0))
    throw usage_error("--window-custom WIDTH must be positive");
  if (!clahe && (clahe_config.clip_limit != ClaheConfig{}.clip_limit || clahe_config.tiles != ClaheConfig{}.tiles))
    warnings.push_back("--clahe-clip / --clahe-tiles have no effect without --clahe");
  if (!n4 && (n4_config.shrink_factor != N4Config{}.shrink_factor || n4_config.iterations != N4Config{}.iterations ||
              !n4_mask.empty()))
    warnings.push_back("--n4-shrink / --n4-iterations / --n4-mask have no effect without --n4");
  if (n4 && !n4_mask.empty() && (!reorient.empty() || !resample_mm.empty()))
    throw usage_error("--n4-mask is on the input's grid; it cannot be combined with --reorient or --resample");
  if (common.device != "auto" && common.device != "cpu")
    warnings.push_back("--device has no effect: spine-prep runs no model");
  return warnings;
}

nlohmann::json PrepConfig::to_json() const {
  return {{"common", common.to_json()},
          {"reorient", reorient},
          {"resample_mm", resample_mm},
          {"n4", n4},
          {"n4_shrink", n4_config.shrink_factor},
          {"n4_iterations", n4_config.iterations},
          {"n4_mask", n4_mask},
          {"window", window},
          {"window_level_width", window_level_width},
          {"clahe", clahe},
          {"clahe_clip", clahe_config.clip_limit},
          {"clahe_tiles", clahe_config.tiles},
          {"normalise", normalise},
          {"clip_percentiles", clip_percentiles},
          {"format", format},
          {"pixel", pixel}};
}

namespace {

StoredPixel choose_pixel(const PrepConfig& c, const LoadedImage& in, bool values_changed) {
  if (c.pixel == "float") return StoredPixel::kFloat32;
  if (c.pixel == "int16") return StoredPixel::kInt16;
  if (c.pixel == "uint8") return StoredPixel::kUInt8;
  const bool integer_input = in.info.pixel_type != "float" && in.info.pixel_type != "double";
  return (!values_changed && integer_input) ? StoredPixel::kInt16 : StoredPixel::kFloat32;
}

// An 8-bit preview of a 2D image, stretched between its 0.5 and 99.5 percentiles.
FloatImage preview_8bit(const FloatImage& image) {
  const float lo = percentile(image, 0.5), hi = percentile(image, 99.5);
  FloatImage out = image;
  const float scale = hi > lo ? 255.f / (hi - lo) : 0.f;
  for (float& v : out.voxels) v = std::clamp((v - lo) * scale, 0.f, 255.f);
  return out;
}

// Peak memory per voxel, measured with scripts/bench_memory.py on 512 x 512 x 300 int16:
// 7.1 bytes reading and writing alone, 10.1 with reorientation and z-scores, 12.1 with
// windowing and CLAHE, 13.6 with N4 after resampling.
double working_bytes_per_voxel(const PrepConfig& c) {
  return c.n4 || c.clahe || !c.resample_mm.empty() ? 14 : 10;
}

// prep.csv (one row per study: what was read and what was written) and report.html,
// from each complete study's provenance record, whichever run wrote it.
void write_prep_cohort(const std::filesystem::path& out_dir) {
  std::ostringstream csv;
  csv << "study,input_format,modality,size,orientation,intensity_min,intensity_max,steps\n";
  CohortReport report;
  report.tool = "spine-prep";
  report.columns = {{"input format"}, {"modality"}, {"size"}, {"orientation"}, {"steps"}};
  for (const auto& s : complete_studies(out_dir, kProvenanceFile)) {
    const auto file = out_dir / s / kProvenanceFile;
    try {
      std::ifstream in(file);
      const auto r = nlohmann::json::parse(in).at("result");
      std::string size, steps;
      for (const auto& n : r.at("size")) size += (size.empty() ? "" : "x") + std::to_string(n.get<std::size_t>());
      for (const auto& st : r.at("steps")) steps += (steps.empty() ? "" : "; ") + st.get<std::string>();
      const std::string format = r.at("input_format"), modality = r.at("modality"), orientation = r.at("orientation");
      csv << csv_field(s) << ',' << csv_field(format) << ',' << csv_field(modality) << ',' << size << ','
          << orientation << ',' << csv_number(r.at("intensity_min").get<double>()) << ','
          << csv_number(r.at("intensity_max").get<double>()) << ',' << csv_field(steps) << '\n';
      ReportRow row;
      row.study = s;
      row.cells = {format, modality, size, orientation, steps};
      row.picture = "preview.png";  // 2D inputs only; the report leaves out a picture that is not there
      for (const auto& e : std::filesystem::directory_iterator(out_dir / s))
        if (e.path().filename().string().rfind("image.", 0) == 0) row.files.push_back(e.path().filename().string());
      report.rows.push_back(std::move(row));
    } catch (const std::exception&) {
      log::warn("{}: unreadable, left out of prep.csv", file.string());
    }
  }
  write_text_file(out_dir / "prep.csv", csv.str());
  write_cohort_report(out_dir, report);
}

}  // namespace

BatchSummary run_prep(const PrepConfig& c) {
  for (const auto& w : c.validate()) log::warn("{}", w);
  const auto studies = discover_studies(c.common.inputs);
  BatchOptions options = c.common.batch_options("spine-prep", c.to_json(), working_bytes_per_voxel(c));
  options.on_finish = [&] { write_prep_cohort(c.common.output_dir); };
  return run_batch(studies, options, [&](const Study& study, const std::filesystem::path& work) {
    LoadedImage in = read_image(study.path);
    FloatImage img = std::move(in.image);
    const int dims = img.geometry.dimension;
    nlohmann::json steps = nlohmann::json::array();
    bool values_changed = false;
    if (!c.reorient.empty()) {
      if (static_cast<int>(c.reorient.size()) != dims)
        throw input_error(study.path.string() + ": --reorient " + c.reorient + " does not fit a " +
                          std::to_string(dims) + "D image");
      img = reorient(img, c.reorient);
      steps.push_back("reorient " + c.reorient);
    }
    if (!c.resample_mm.empty()) {
      std::array<double, 3> sp = img.geometry.spacing;
      for (int a = 0; a < dims; ++a) sp[a] = c.resample_mm.size() == 1 ? c.resample_mm[0] : c.resample_mm[a];
      // A finer spacing makes a larger grid than the one the budget was checked for.
      check_memory_budget(study.path, grid_with_spacing(img.geometry, sp).voxel_count(), working_bytes_per_voxel(c));
      img = resample_image(img, sp);
      values_changed = true;
      steps.push_back("resample");
    }
    const bool is_ct = in.info.modality == "CT" || (in.info.modality.empty() && intensity_range(img).min < -500);
    if (c.n4) {
      if (is_ct) log::warn("{}: N4 is meant for MR; this looks like CT", study.name);
      if (c.n4_mask.empty()) {
        img = n4_bias_correct(img, nullptr, c.n4_config);
      } else {
        const LabelImage mask = read_labels(c.n4_mask);
        if (!mask.geometry.same_grid(img.geometry, 1e-4))
          throw input_error(c.n4_mask + ": N4 mask is not on the grid of " + study.path.string());
        img = n4_bias_correct(img, &mask, c.n4_config);
      }
      values_changed = true;
      steps.push_back("n4");
    }
    if (!c.window.empty() || c.window_level_width.size() == 2) {
      if (!is_ct) log::warn("{}: windowing is defined in HU; this image does not look like CT", study.name);
      const Window w = c.window.empty() ? Window{c.window_level_width[0], c.window_level_width[1]}
                                        : window_preset(c.window);
      img = apply_window(img, w);
      values_changed = true;
      steps.push_back("window");
    }
    if (c.clahe) {
      img = clahe(img, c.clahe_config);
      values_changed = true;
      steps.push_back("clahe");
    }
    if (c.clip_percentiles.size() == 2) {
      clip_percentiles(img, c.clip_percentiles[0], c.clip_percentiles[1]);
      values_changed = true;
      steps.push_back("clip-percentiles");
    }
    if (c.normalise == "zscore") {
      normalise_zscore(img);
      values_changed = true;
      steps.push_back("zscore");
    }
    write_image(img, work / ("image." + c.format), choose_pixel(c, in, values_changed));
    if (dims == 2) write_image(preview_8bit(img), work / "preview.png", StoredPixel::kUInt8);
    const auto range = intensity_range(img);
    nlohmann::json size = nlohmann::json::array();
    for (int a = 0; a < dims; ++a) size.push_back(img.geometry.size[a]);
    return nlohmann::json{{"steps", steps},
                          {"input_format", in.info.format},
                          {"modality", in.info.modality},
                          {"gantry_tilt_corrected_deg", round_to(in.info.gantry_tilt_deg, 0.01)},
                          {"size", size},
                          {"orientation", orientation_code(img.geometry)},
                          {"intensity_min", range.min},
                          {"intensity_max", range.max}};
  });
}

}  // namespace spine
