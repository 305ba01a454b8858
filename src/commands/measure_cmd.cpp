// spine-measure: each study's image and label map (given, or made by spine-seg's models)
// to measurements.json and overlay.png; the cohort's measurements.csv in long form.
#include "spine/commands/measure_cmd.hpp"

#include <algorithm>
#include <cmath>
#include <fstream>
#include <optional>
#include <sstream>

#include "spine/cohort_report.hpp"
#include "spine/csv.hpp"
#include "spine/error.hpp"
#include "spine/io.hpp"
#include "spine/labels.hpp"
#include "spine/log.hpp"
#include "spine/model.hpp"
#include "spine/preprocess.hpp"
#include "spine/render.hpp"
#include "spine/spine_seg.hpp"
#include "spine/stage_timer.hpp"

namespace fs = std::filesystem;

namespace spine {

void MeasureCommandConfig::register_cli(CLI::App& app) {
  common.register_cli(app);
  app.add_option("--labels", labels,
                 "Label map of the one study, or a folder with each study's map as <study>/labels.nii.gz (spine-seg's "
                 "output), <study>.nii.gz or <study>_labels.nii.gz (VerSe numbers; discs 100+, canal 61). Without "
                 "it the studies are segmented with spine-seg's models first");
  models.register_cli(app);
  app.add_option("--screen-level", measure.screen_level, "Vertebra for the osteoporosis screen (VerSe number; 20 = L1)")
      ->check(CLI::Range(1, 25));
  app.add_option("--osteoporosis-hu", measure.osteoporosis_hu,
                 "Trabecular attenuation at or below which osteoporosis is likely (HU; Pickhardt et al.: 110)");
  app.add_option("--normal-hu", measure.normal_hu, "Trabecular attenuation above which bone is normal (HU; 160)");
}

std::vector<std::string> MeasureCommandConfig::validate() const {
  std::vector<std::string> warnings;
  if (!(measure.osteoporosis_hu < measure.normal_hu))
    throw usage_error("--osteoporosis-hu must be below --normal-hu");
  if (!labels.empty() && (!models.mr_model.empty() || !models.ct_model.empty()))
    warnings.push_back("--mr-model / --ct-model have no effect with --labels");
  return warnings;
}

nlohmann::json MeasureCommandConfig::to_json() const {
  return {{"common", common.to_json()},
          {"labels", labels.empty() ? nlohmann::json(nullptr) : nlohmann::json(labels)},
          {"models", models.to_json()},
          {"screen_level", label_name(measure.screen_level)},
          {"osteoporosis_hu", measure.osteoporosis_hu},
          {"normal_hu", measure.normal_hu}};
}

namespace {

// The label map for a study under --labels (see MeasureCommandConfig::labels).
fs::path labels_for(const std::string& labels, const Study& study, std::size_t studies) {
  const fs::path p(labels);
  if (!fs::is_directory(p)) {
    if (studies > 1) throw usage_error("--labels " + labels + " is one file; with several studies give a folder");
    return p;
  }
  // The study's own name, not study.name: that is a pseudonym under --anonymise-names
  // (the log redacts the real one in the message below).
  const std::string name = study_name_of(study.path);
  for (const fs::path& c : {p / name / "labels.nii.gz", p / (name + ".nii.gz"), p / (name + "_labels.nii.gz")})
    if (fs::exists(c)) return c;
  throw input_error(study.path.string() + ": no label map for it in " + labels + " (looked for " + name +
                    "/labels.nii.gz, " + name + ".nii.gz, " + name + "_labels.nii.gz)");
}

// When a label map is spine-seg's output (<study>/labels.nii.gz with its
// segmentation.json beside it), the modality of the model that made it; otherwise none.
std::optional<std::string> spine_seg_output_modality(const fs::path& label_map) {
  const fs::path seg = label_map.parent_path() / "segmentation.json";
  if (label_map.filename() != "labels.nii.gz" || !fs::exists(seg)) return std::nullopt;
  // Parsed without exceptions: a file that is not spine-seg's leaves the map the user's.
  const auto j = nlohmann::json::parse(std::ifstream(seg), nullptr, false);
  if (j.is_discarded() || !j.is_object() || !j.contains("modality") || !j["modality"].is_object()) return std::nullopt;
  const auto& m = j["modality"];
  if (!m.contains("modality") || !m["modality"].is_string()) return std::nullopt;
  return m["modality"].get<std::string>();
}

constexpr double kLineHeight = 20;  // the overlay panel's text, pixels

// A curved mid-sagittal picture: rows along patient z, columns along patient y, each
// row through the lateral position of the body centres at its height (interpolated), so
// that every vertebra is cut through its own mid-sagittal plane even in scoliosis.
void write_overlay(const FloatImage& image, const LabelImage& labels, const SpineMeasurements& m, bool ct,
                   const fs::path& path) {
  std::vector<std::pair<double, double>> centres;  // (z, x)
  for (const auto& v : m.vertebrae)
    if (v.heights.valid) centres.push_back({v.centre[2], v.centre[0]});
  if (centres.empty()) return;
  std::sort(centres.begin(), centres.end());
  double zlo = 1e9, zhi = -1e9, ylo = 1e9, yhi = -1e9;
  for (const auto& v : m.vertebrae) {
    if (!v.heights.valid) continue;
    zlo = std::min(zlo, v.centre[2] - 40);
    zhi = std::max(zhi, v.centre[2] + 40);
    ylo = std::min(ylo, v.centre[1] - 60);
    yhi = std::max(yhi, v.centre[1] + 90);
  }
  const double px = 0.5;  // mm per pixel
  const std::size_t w = static_cast<std::size_t>((yhi - ylo) / px), h = static_cast<std::size_t>((zhi - zlo) / px);
  auto x_at = [&](double z) {
    if (z <= centres.front().first) return centres.front().second;
    for (std::size_t i = 1; i < centres.size(); ++i)
      if (z <= centres[i].first) {
        const double t = (z - centres[i - 1].first) / std::max(1e-6, centres[i].first - centres[i - 1].first);
        return centres[i - 1].second * (1 - t) + centres[i].second * t;
      }
    return centres.back().second;
  };
  FloatImage slice(make_geometry_2d(w, h, {px, px}), 0.f);
  LabelImage slice_labels(slice.geometry, 0);
  for (std::size_t r = 0; r < h; ++r) {
    const double z = zhi - double(r) * px;
    const double x = x_at(z);
    for (std::size_t c = 0; c < w; ++c) {
      const Vec3d p{x, ylo + double(c) * px, z};
      const auto idx = image.geometry.lps_to_index(p);
      const long i = std::lround(idx[0]), j = std::lround(idx[1]), k = std::lround(idx[2]);
      const auto& n = image.geometry.size;
      if (i < 0 || j < 0 || k < 0 || i >= long(n[0]) || j >= long(n[1]) || k >= long(n[2])) continue;
      const std::size_t o = image.offset(std::size_t(i), std::size_t(j), std::size_t(k));
      slice.voxels[r * w + c] = image.voxels[o];
      slice_labels.voxels[r * w + c] = labels.voxels[o];
    }
  }
  float lo = ct ? -250.f : 0.f, hi = ct ? 1250.f : 0.f;
  if (!ct) {
    std::vector<float> v(slice.voxels);
    std::sort(v.begin(), v.end());
    hi = v[static_cast<std::size_t>(0.995 * double(v.size() - 1))];
  }
  const double scale = 2.0;  // 0.25 mm per drawn pixel
  RgbImage pic = grey_to_rgb(slice, lo, hi, scale);
  // Label outlines, then the heights and endplates.
  for (std::size_t r = 1; r + 1 < h; ++r)
    for (std::size_t c = 1; c + 1 < w; ++c) {
      const int l = slice_labels.voxels[r * w + c];
      if (l == 0) continue;
      if (slice_labels.voxels[r * w + c - 1] == l && slice_labels.voxels[r * w + c + 1] == l &&
          slice_labels.voxels[(r - 1) * w + c] == l && slice_labels.voxels[(r + 1) * w + c] == l)
        continue;
      const auto rgb = label_info(l).rgb;
      draw_circle(pic, {(double(c) + 0.5) * scale, (double(r) + 0.5) * scale}, 0.8, {rgb[0], rgb[1], rgb[2]});
    }
  // Each vertebra's line of figures, for the panel beside the picture.
  std::vector<std::string> lines;
  int widest = 0;
  for (const auto& v : m.vertebrae) {
    if (!v.heights.valid) continue;
    std::ostringstream t;
    t.setf(std::ios::fixed);
    t.precision(1);
    t << v.name << " " << v.heights.anterior << "/" << v.heights.middle << "/" << v.heights.posterior << " mm";
    if (v.trabecular_hu_median) t << " " << std::lround(*v.trabecular_hu_median) << " HU";
    if (v.genant.grade > 0) t << " G" << v.genant.grade << " " << v.genant.type;
    if (!v.flags.empty()) t << " !";
    lines.push_back(t.str());
    widest = std::max(widest, text_width(lines.back(), kLineHeight));
  }
  // A panel on the right for the figures, as wide as the longest line (a graded fracture's
  // line is the longest), so that no text covers the bone.
  const std::size_t panel = std::max<std::size_t>(520, static_cast<std::size_t>(widest) + 24);
  {
    RgbImage wide;
    wide.width = pic.width + panel;
    wide.height = pic.height;
    wide.rgb.assign(wide.width * wide.height * 3, 24);
    for (std::size_t r = 0; r < pic.height; ++r)
      std::copy(pic.rgb.begin() + static_cast<long>(r * pic.width * 3), pic.rgb.begin() + static_cast<long>((r + 1) * pic.width * 3),
                wide.rgb.begin() + static_cast<long>(r * wide.width * 3));
    pic = std::move(wide);
  }
  auto to_px = [&](const Vec3d& p) { return Point2{(p[1] - ylo) / px * scale, (zhi - p[2]) / px * scale}; };
  std::size_t next_line = 0;
  for (const auto& v : m.vertebrae) {
    if (!v.heights.valid) continue;
    const auto& pts = v.heights.points;
    const Rgb line = v.genant.grade > 0 ? Rgb{255, 80, 80} : Rgb{80, 255, 120};
    for (int q = 0; q < 3; ++q) draw_line(pic, to_px(pts[q]), to_px(pts[q + 3]), line, 2);
    draw_line(pic, to_px(pts[0]), to_px(pts[2]), {255, 220, 0}, 2);  // upper endplate
    draw_line(pic, to_px(pts[3]), to_px(pts[5]), {255, 220, 0}, 2);  // lower endplate
    const Point2 at = to_px(v.centre);
    const double x0 = static_cast<double>(pic.width - panel) + 8;
    draw_line(pic, {static_cast<double>(pic.width - panel) - 4, at.y}, {x0 - 2, at.y}, {120, 120, 120}, 1);
    draw_text(pic, lines[next_line++], {x0, at.y - 11}, kLineHeight, v.flags.empty() ? Rgb{255, 255, 255} : Rgb{255, 150, 80});
  }
  std::string footer;
  for (const auto& a : m.angles)
    if (a.name.rfind("segmental", 0) != 0) {
      std::ostringstream t;
      t.setf(std::ios::fixed);
      t.precision(1);
      t << a.name << " " << a.degrees << " deg  ";
      footer += t.str();
    }
  if (!footer.empty()) draw_text(pic, footer, {6, static_cast<double>(pic.height) - 34}, 22, {255, 255, 255});
  write_png(pic, path);
}

// An integer image is not yet a label map: a CT given as --labels would be measured as
// hundreds of "structures". Label maps have few values, none negative.
void check_label_values(const LabelImage& labels, const fs::path& path) {
  std::vector<bool> seen(65536, false);
  int distinct = 0, negative = 0;
  for (const std::int16_t v : labels.voxels) {
    const std::size_t at = static_cast<std::size_t>(v + 32768);
    if (!seen[at]) {
      seen[at] = true;
      ++distinct;
      negative += v < 0;
    }
  }
  if (negative > 0 || distinct > 200)
    throw input_error(path.string() + ": not a label map (" + std::to_string(distinct) + " distinct values" +
                      (negative ? ", some negative" : "") + "; an image given as --labels?)");
}

void write_measurements_csv(const fs::path& out_dir) {
  std::ostringstream csv;
  csv << "study,structure,measure,value,unit\n";
  CohortReport report;
  report.tool = "spine-measure";
  report.columns = {{"modality"}, {"vertebrae measured", true}, {"fractures (Genant >= 1)"}, {"lowest trabecular HU", true},
                    {"labels from"}};
  report.figures = {{"trabecular attenuation (HU, median per vertebra)", {}}, {"vertebrae measured per study", {}}};
  for (const auto& s : complete_studies(out_dir, "measurements.json")) {
    const fs::path f = out_dir / s / "measurements.json";
    std::ostringstream rows;
    ReportRow row;
    row.study = s;
    std::vector<double> hu;
    try {
      std::ifstream in(f);
      const auto j = nlohmann::json::parse(in);
      for (const auto& r : j.at("rows"))
        rows << csv_field(s) << ',' << csv_field(r.at(0).get<std::string>()) << ',' << csv_field(r.at(1).get<std::string>())
             << ',' << csv_number(r.at(2).get<double>()) << ',' << r.at(3).get<std::string>() << '\n';
      std::string fractures;
      double lowest = NAN;
      for (const auto& v : j.at("vertebrae")) {
        const std::string name = v.at("name").get<std::string>();
        for (const auto& fl : v.at("flags")) row.flags.push_back(name + ": " + fl.get<std::string>());
        const int genant = v.at("genant").at("grade").get<int>();
        if (genant >= 1) fractures += (fractures.empty() ? "" : ", ") + name + " grade " + std::to_string(genant);
        if (v.contains("trabecular_attenuation")) {
          const double h = v.at("trabecular_attenuation").at("median").at("value").get<double>();
          hu.push_back(h);
          lowest = std::isnan(lowest) ? h : std::min(lowest, h);
        }
      }
      for (const auto& d : j.at("discs"))
        for (const auto& fl : d.at("flags")) row.flags.push_back(d.at("name").get<std::string>() + ": " + fl.get<std::string>());
      for (const auto& fl : j.at("flags")) row.flags.push_back(fl.get<std::string>());
      row.cells = {j.value("modality", ""), std::to_string(j.at("vertebrae").size()), fractures, csv_number(lowest),
                   j.value("labels_from", "")};
      report.figures[1].values.push_back(j.at("vertebrae").size());
    } catch (const std::exception&) {
      log::warn("{}: unreadable, left out of measurements.csv", f.string());
      continue;
    }
    csv << rows.str();
    row.reliable = row.flags.empty();
    row.picture = "overlay.png";
    row.files = {"measurements.json"};
    report.figures[0].values.insert(report.figures[0].values.end(), hu.begin(), hu.end());
    report.rows.push_back(std::move(row));
  }
  write_text_file(out_dir / "measurements.csv", csv.str());
  write_cohort_report(out_dir, report);
}

}  // namespace

BatchSummary run_measure(const MeasureCommandConfig& c) {
  for (const auto& w : c.validate()) log::warn("{}", w);
  const auto studies = discover_studies(c.common.inputs);
  std::optional<SpineSegmenter> segmenter;
  const std::string device = resolve_device(c.common.device);
  if (c.labels.empty())
    segmenter.emplace(model_file(c.models.mr_model, "mr-spine-seg.pt"), model_file(c.models.ct_model, "ct-spine-seg.pt"),
                      device);
  // Reading, segmentation (when asked) and the label map: 16 bytes per voxel as spine-seg.
  BatchOptions options = c.common.batch_options("spine-measure", c.to_json(), 16);
  // Segmenting: the models are checked now and loaded when a study needs one; each
  // study's provenance names the model it used.
  std::string used_modality;
  if (segmenter) {
    check_spine_models(c.models);
    start_loading_model_runtime();  // while the first study is read
    options.study_models = [&]() -> std::vector<ModelRecord> {
      if (used_modality.empty()) return {};
      const Model& model = segmenter->model(used_modality);
      return {{model.card().name, model.card().version, model.sha256()}};
    };
  }
  options.on_finish = [&] { write_measurements_csv(c.common.output_dir); };
  return run_batch(studies, options, [&](const Study& study, const fs::path& work) {
    StageTimer timer;  // stage times, for measurements.json
    const LoadedImage in = read_image(study.path);
    timer.lap("read_s");
    if (in.image.geometry.dimension != 3) throw input_error(study.path.string() + ": not a 3D image");
    LabelImage labels;
    std::string modality, label_source;
    bool outlines_from_ct_model = false;
    nlohmann::json flags = nlohmann::json::array();
    if (segmenter) {
      SpineSegResult r = segmenter->segment(in.image, c.models.modality, in.info.modality, c.models.seg);
      labels = std::move(r.labels);
      modality = used_modality = r.modality.modality;
      for (const auto& f : r.flags) flags.push_back("segmentation: " + f);
      label_source = "spine-seg";
      outlines_from_ct_model = modality == "ct";
      timer.lap("segmentation_s");
    } else {
      const fs::path lp = labels_for(c.labels, study, studies.size());
      labels = read_labels(lp);
      if (labels.geometry.dimension != 3) throw input_error(lp.string() + ": not a 3D label map");
      check_label_values(labels, lp);
      if (!labels.geometry.same_grid(in.image.geometry, 1e-3)) {
        // Same place in space, another grid: nearest-label resampling onto the image's.
        labels = resample_labels_to(labels, in.image.geometry);
        flags.push_back("label map resampled onto the image's grid");
      }
      modality = decide_modality(in.image, c.models.modality, in.info.modality).modality;
      label_source = "--labels";  // not the file's name, which may name the patient
      // spine-seg's own output (its segmentation.json beside the map) says which model made it.
      if (const auto seg_modality = spine_seg_output_modality(lp)) {
        label_source = "--labels (spine-seg's output)";
        outlines_from_ct_model = *seg_modality == "ct";
      }
      timer.lap("labels_s");  // reading (and, when the grids differ, resampling) the label map
    }
    MeasureOptions mo = c.measure;
    mo.ct = modality == "ct";
    mo.mri = modality == "mr";
    mo.threads = c.common.threads;
    mo.outlines_from_ct_model = outlines_from_ct_model;
    const SpineMeasurements m = measure_spine(labels, &in.image, mo);
    timer.lap("measure_s");
    for (const auto& f : m.flags) log::warn("{}: {}", study.name, f);
    for (const auto& v : m.vertebrae)
      for (const auto& f : v.flags) log::warn("{}: {}: {}", study.name, v.name, f);
    nlohmann::json j = measurements_json(m);
    j["study"] = study.name;
    j["modality"] = modality;
    j["labels_from"] = label_source;
    j["gantry_tilt_corrected_deg"] = round_to(in.info.gantry_tilt_deg, 0.01);
    for (const auto& f : flags) j["flags"].push_back(f);
    nlohmann::json rows = nlohmann::json::array();
    for (const auto& r : measurement_rows(m))
      rows.push_back({r.structure, r.measure, std::round(r.value * 1000) / 1000, r.unit});
    j["rows"] = rows;
    timer.lap("tables_s");
    if (c.models.overlay) write_overlay(in.image, labels, m, mo.ct, work / "overlay.png");
    timer.lap("overlay_s");
    j["timing"] = timer.json();
    write_text_file(work / "measurements.json", j.dump(2) + "\n");
    int graded = 0;
    for (const auto& v : m.vertebrae) graded += v.genant.grade > 0;
    return nlohmann::json{{"vertebrae", m.vertebrae.size()}, {"fractures_graded", graded}};
  });
}

}  // namespace spine
