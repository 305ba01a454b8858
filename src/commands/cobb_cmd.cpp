// spine-cobb: per radiograph, landmarks -> AASCE angles and major curve -> grade, with
// flags when the result cannot be trusted; cobb.json, overlay.png and a cohort CSV.
#include "spine/commands/cobb_cmd.hpp"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <fstream>
#include <iterator>
#include <optional>
#include <sstream>
#include <utility>

#include "spine/csv.hpp"
#include "spine/cohort_report.hpp"
#include "spine/error.hpp"
#include "spine/io.hpp"
#include "spine/log.hpp"
#include "spine/model.hpp"
#include "spine/render.hpp"
#include "spine/stage_timer.hpp"

namespace fs = std::filesystem;

namespace spine {

namespace {
// --ensemble-reading's values, as given and as recorded in provenance.
constexpr std::pair<const char*, XrayLandmarkOptions::EnsembleReading> kEnsembleReadings[] = {
    {"all", XrayLandmarkOptions::EnsembleReading::all},
    {"split", XrayLandmarkOptions::EnsembleReading::split},
    {"split-corners", XrayLandmarkOptions::EnsembleReading::split_corners}};
}  // namespace

void CobbConfig::register_cli(CLI::App& app) {
  common.register_cli(app);
  app.add_option("--model", model, "Landmark model, first stage (default: models/xray-landmarks.pt)");
  app.add_option("--corner-model", corner_model,
                 "Corner model, second stage: each vertebra's corners from a crop at full resolution "
                 "(default: models/xray-corners.pt)");
  app.add_option("--precision", precision,
                 "Shipped landmark models to use: fp32 (default) or int8 (quantized copies, CPU only: about 1.4x "
                 "faster a film, the same SMAPE on the validation films, 0.2 points worse on the training films; "
                 "see models/xray-landmarks.md, \"Int8 copies of both stages\")")
      ->check(CLI::IsMember({"fp32", "int8"}));
  app.add_flag("!--no-corner-refinement", refine_corners,
               "Keep the first stage's corners (skip the second stage)");
  app.add_flag("--refine-over-hardware", refine_over_hardware,
               "Run the second stage on films where the spine finder sees hardware too (by default such films "
               "keep the first stage's corners: the second stage's corners snap onto screws, see "
               "models/xray-corners.md)");
  app.add_option("--corner-zooms", landmarks.corner_zooms,
                 "Second stage: read each vertebra's corners from crops at these zooms of its width and average "
                 "them (comma-separated, e.g. 0.9,1,1.1: better on tightly framed films, see "
                 "models/xray-corners.md; default 1, one reading)")
      ->delimiter(',')
      ->check(CLI::Range(0.5, 2.0));
  app.add_option("--second-stage-weight", landmarks.second_stage_weight,
                 "Where each corner ends between the first stage's position (0) and the second stage's (1); "
                 "default 0.5, their mean (see models/xray-corners.md)")
      ->check(CLI::Range(0.0, 1.0));
  app.add_option("--stage-disagreement", landmarks.stage_disagreement_deg,
                 "Degrees: where the two stages' tilts of a vertebra differ by more, its second-stage weight falls "
                 "as this / difference, so a wild second-stage reading moves the tilt at most half this far "
                 "(default 5; 0: the same weight everywhere; see models/xray-corners.md)")
      ->check(CLI::Range(0.0, 90.0));
  app.add_option("--centreline-weight", landmarks.centreline_weight,
                 "Move each vertebra's tilt this fraction of the way to the direction across the centreline "
                 "through its neighbours' centres (0: keep the tilts the stages read; default 0.24, see "
                 "docs/cobb.md)")
      ->check(CLI::Range(0.0, 1.0));
  app.add_option("--centreline-end-weight", landmarks.centreline_end_weight,
                 "The same for T1 and L5, whose centreline is the line to their one neighbour (default 0: they "
                 "keep their own tilt; 0.24 as the others before 2026-12-07; see models/xray-landmarks.md)")
      ->check(CLI::Range(0.0, 1.0));
  app.add_option("--anchor-model", anchor_model,
                 "Level anchors: read which vertebrae lie at the chain's ends (the neck above T1, the sacrum "
                 "below L5) and re-count a chain counted one level off (default: models/xray-level-anchors.pt)");
  app.add_flag("!--no-level-anchors", level_anchors, "Keep the first stage's count of the vertebrae");
  app.add_option("--finder-model", finder_model,
                 "Spine finder: locates T1..L5, the column and hardware in a film of any framing "
                 "(default: models/xray-spine-finder.pt)");
  app.add_flag("!--no-spine-finder", find_spine,
               "Give the landmark stages the whole image as it is (no spine finder, no hardware check)");
  app.add_option("--mild", grading.mild_deg, "Major curve angle from which a curve is mild scoliosis (degrees)");
  app.add_option("--moderate", grading.moderate_deg, "... moderate (degrees)");
  app.add_option("--severe", grading.severe_deg, "... severe: above this (degrees)");
  app.add_option("--low-confidence", landmarks.low_confidence, "Flag vertebrae whose confidence is below this")
      ->check(CLI::Range(0.0, 1.0));
  app.add_flag("!--no-overlay", overlay, "Do not write overlay.png");
  app.add_flag("!--no-flip-averaging", landmarks.flip_averaging,
               "Skip averaging with the mirrored image's prediction (about twice as fast)");
  app.add_option_function<std::string>(
         "--ensemble-reading",
         [this](const std::string& v) {
           for (const auto& [name, reading] : kEnsembleReadings)
             if (v == name) landmarks.ensemble_reading = reading;
         },
         "How each landmark stage that is an ensemble of networks reads the film and its mirror: all (every "
         "network both sides), split (one network each side: half the passes), split-corners (default: split in "
         "the corner stage only, about 0.17 s a film less); see models/xray-landmarks.md, \"Each network of a "
         "pair reads one side\"")
      ->check(CLI::IsMember([] {
        std::vector<std::string> names;
        for (const auto& entry : kEnsembleReadings) names.emplace_back(entry.first);
        return names;
      }()));
  app.add_flag("!--no-sequence-constraint", landmarks.sequence_constraint,
               "Take each vertebra's strongest heatmap response, ignoring order and spacing");
}

std::vector<std::string> CobbConfig::validate() const {
  if (!(grading.mild_deg < grading.moderate_deg && grading.moderate_deg < grading.severe_deg))
    throw usage_error("grading thresholds must satisfy --mild < --moderate < --severe");
  std::vector<std::string> warnings;
  if (!refine_corners && !corner_model.empty()) warnings.push_back("--corner-model is not used with --no-corner-refinement");
  if (landmarks.corner_zooms.empty()) throw usage_error("--corner-zooms needs at least one zoom");
  if (!level_anchors && !anchor_model.empty()) warnings.push_back("--anchor-model is not used with --no-level-anchors");
  if (!find_spine && !finder_model.empty()) warnings.push_back("--finder-model is not used with --no-spine-finder");
  return warnings;
}

nlohmann::json CobbConfig::to_json() const {
  return {{"common", common.to_json()},
          {"model", model},
          {"corner_model", corner_model},
          {"precision", precision},
          {"refine_corners", refine_corners},
          {"refine_over_hardware", refine_over_hardware},
          {"anchor_model", anchor_model},
          {"level_anchors", level_anchors},
          {"finder_model", finder_model},
          {"find_spine", find_spine},
          {"grading_deg", {grading.mild_deg, grading.moderate_deg, grading.severe_deg}},
          {"low_confidence", landmarks.low_confidence},
          {"sequence_constraint", landmarks.sequence_constraint},
          {"flip_averaging", landmarks.flip_averaging},
          {"ensemble_reading", std::find_if(std::begin(kEnsembleReadings), std::end(kEnsembleReadings),
                                            [&](const auto& e) { return e.second == landmarks.ensemble_reading; })
                                   ->first},
          {"corner_zooms", landmarks.corner_zooms},
          {"second_stage_weight", landmarks.second_stage_weight},
          {"stage_disagreement_deg", landmarks.stage_disagreement_deg},
          {"centreline_weight", landmarks.centreline_weight},
          {"centreline_end_weight", landmarks.centreline_end_weight},
          {"overlay", overlay}};
}

std::string landmark_precision(const std::string& requested, const std::string& device) {
  if (requested == "int8" && device != "cpu")
    throw usage_error("--precision int8 runs on the CPU only (LibTorch's quantized operators have no kernels for " +
                      device + ")");
  return requested;
}

namespace {

nlohmann::json centreline_tilt_json(const std::optional<CentrelineTiltResult>& r, double weight, double end_weight) {
  if (!r) return nullptr;
  if (!r->applied)
    return {{"weight", weight}, {"end_weight", end_weight}, {"applied", false}, {"skipped_because", r->skipped_because}};
  return {{"weight", weight},
          {"end_weight", end_weight},
          {"applied", true},
          {"largest_change_deg", std::round(r->largest_change_deg * 100) / 100},
          {"largest_change_at", cobb_vertebra_name(r->largest_change_vertebra)}};
}

Rgb confidence_colour(double c) {
  // red (0) -> yellow (0.5) -> green (1)
  const double t = std::clamp(c, 0.0, 1.0);
  return {static_cast<std::uint8_t>(t < 0.5 ? 255 : std::lround(255 * 2 * (1 - t))),
          static_cast<std::uint8_t>(t < 0.5 ? std::lround(255 * 2 * t) : 255), 40};
}

// Extends the segment a-b by `factor` of its length on both sides.
std::pair<Point2, Point2> extended(Point2 a, Point2 b, double factor) {
  const double dx = b.x - a.x, dy = b.y - a.y;
  return {{a.x - factor * dx, a.y - factor * dy}, {b.x + factor * dx, b.y + factor * dy}};
}

std::string format_deg(double v) {
  std::ostringstream s;
  s.setf(std::ios::fixed);
  s.precision(1);
  s << v;
  return s.str();
}

void write_overlay(const FloatImage& img, const XrayLandmarks& lm, const CobbAngles& a, const std::string& grade,
                   const SpineLocation* spine, const fs::path& path) {
  // Scale so the picture is about 1400 px tall: legible and small.
  const double scale = std::min(1.0, 1400.0 / static_cast<double>(img.ny()));
  const auto range = intensity_range(img);
  RgbImage canvas = grey_to_rgb(img, range.min, range.max, scale);
  auto px = [&](Point2 p) { return Point2{p.x * scale, p.y * scale}; };
  const double unit = canvas.height / 700.0;  // ~2 px per unit at 1400 px
  for (int v = 0; v < kCobbVertebrae; ++v) {
    const Rgb col = confidence_colour(lm.confidence[v]);
    const Point2 tl = px(lm.points[4 * v]), tr = px(lm.points[4 * v + 1]), bl = px(lm.points[4 * v + 2]),
                 br = px(lm.points[4 * v + 3]);
    draw_line(canvas, tl, tr, col, 1);
    draw_line(canvas, tr, br, col, 1);
    draw_line(canvas, br, bl, col, 1);
    draw_line(canvas, bl, tl, col, 1);
    // Corner dots in their own landmark's confidence (the outline in the vertebra's).
    const Point2 corners[4] = {tl, tr, bl, br};
    const bool per_landmark = lm.landmark_confidence.size() == static_cast<std::size_t>(kCobbLandmarks);
    for (int k = 0; k < 4; ++k)
      draw_circle(canvas, corners[k], 1.5 * unit, per_landmark ? confidence_colour(lm.landmark_confidence[4 * v + k]) : col);
    draw_text(canvas, cobb_vertebra_name(v), {std::max(tr.x, br.x) + 4 * unit, (tr.y + br.y) / 2 - 5 * unit},
              9 * unit, {220, 220, 220});
  }
  // End vertebrae: upper endplate of the upper end, lower endplate of the lower end.
  const Rgb yellow{255, 220, 0};
  const int u = a.major.upper_end, l = a.major.lower_end;
  if (a.major.angle_deg > 0 && u != l) {
    const auto [u1, u2] = extended(px(lm.points[4 * u]), px(lm.points[4 * u + 1]), 1.2);
    const auto [l1, l2] = extended(px(lm.points[4 * l + 2]), px(lm.points[4 * l + 3]), 1.2);
    draw_line(canvas, u1, u2, yellow, std::max(1, static_cast<int>(unit)));
    draw_line(canvas, l1, l2, yellow, std::max(1, static_cast<int>(unit)));
    const Point2 apex = px(lm.points[4 * a.major.apex]);
    draw_text(canvas, "apex", {apex.x - 40 * unit, apex.y}, 9 * unit, yellow);
  }
  if (spine && (spine->crop.x0 > 0 || spine->crop.y0 > 0 || spine->crop.x1 < img.nx() || spine->crop.y1 < img.ny())) {
    // The crop the landmark stages saw.
    const Rgb cyan{0, 200, 255};
    const Point2 a0 = px({spine->crop.x0, spine->crop.y0}), a1 = px({spine->crop.x1, spine->crop.y0}),
                 a2 = px({spine->crop.x1, spine->crop.y1}), a3 = px({spine->crop.x0, spine->crop.y1});
    draw_line(canvas, a0, a1, cyan, 1);
    draw_line(canvas, a1, a2, cyan, 1);
    draw_line(canvas, a2, a3, cyan, 1);
    draw_line(canvas, a3, a0, cyan, 1);
  }
  double y = 6 * unit;
  const double line = 12 * unit;
  // An unreliable result says so in its headline, in red, not only in the flags below.
  const bool reliable = lm.flags.empty();
  y += draw_text(canvas,
                 std::string(reliable ? "" : "UNRELIABLE: ") + "Cobb " + format_deg(a.major.angle_deg) + " deg  " +
                     cobb_vertebra_name(u) + "-" + cobb_vertebra_name(l) + "  (" + grade + ")",
                 {6 * unit, y}, line, reliable ? yellow : Rgb{255, 60, 60});
  y += draw_text(canvas,
                 "PT " + format_deg(a.aasce_deg[0]) + " / MT " + format_deg(a.aasce_deg[1]) + " / TL " +
                     format_deg(a.aasce_deg[2]),
                 {6 * unit, y}, 0.8 * line, {255, 255, 255});
  for (const auto& f : lm.flags) y += draw_text(canvas, "! " + f, {6 * unit, y}, 0.75 * line, {255, 80, 80});
  // A re-counted chain is not a flag, but whoever checks the names should know.
  if (lm.levels && !lm.levels->change.empty())
    y += draw_text(canvas, "levels re-counted: " + lm.levels->change, {6 * unit, y}, 0.75 * line, {0, 200, 255});
  write_png(canvas, path);
}

}  // namespace

void write_cobb_csv(const fs::path& out_dir) {
  std::ostringstream csv;
  csv << "study,reliable,pt_deg,mt_deg,tl_deg,major_deg,upper_end,lower_end,apex,convex_side,grade,mean_confidence,"
         "levels_recounted,flags\n";
  CohortReport report;
  report.tool = "spine-cobb";
  report.columns = {{"major angle (deg)", true}, {"grade"}, {"major curve"}, {"PT (deg)", true}, {"MT (deg)", true},
                    {"TL (deg)", true}, {"mean confidence", true}};
  report.figures = {{"major Cobb angle (deg), reliable results", {}}, {"major Cobb angle (deg), flagged results", {}}};
  for (const auto& s : complete_studies(out_dir, "cobb.json")) {
    const fs::path f = out_dir / s / "cobb.json";
    nlohmann::json j;
    try {
      std::ifstream in(f);
      j = nlohmann::json::parse(in);
      (void)j.at("angles_deg").at("pt").get<double>();
    } catch (const std::exception&) {
      log::warn("{}: unreadable, left out of cobb.csv", f.string());
      continue;
    }
    double conf = 0;
    for (double c : j["vertebra_confidence"]) conf += c / kCobbVertebrae;
    std::string flags;
    for (const auto& fl : j["flags"]) flags += (flags.empty() ? "" : "; ") + fl.get<std::string>();
    const bool reliable = j.value("reliable", false);
    const auto deg = [&](const nlohmann::json& v) { return csv_number(round_to(v.get<double>(), 0.1)); };
    const auto& major = j["major"];
    // Empty when the level anchors did not run.
    const auto levels = j.value("levels", nlohmann::json(nullptr));
    const std::string recounted = levels.is_object() ? (levels.value("recounted", false) ? "true" : "false") : "";
    csv << csv_field(s) << ',' << (reliable ? "true" : "false") << ',' << deg(j["angles_deg"]["pt"]) << ','
        << deg(j["angles_deg"]["mt"]) << ',' << deg(j["angles_deg"]["tl"]) << ',' << deg(major["angle_deg"]) << ','
        << major["upper_end"].get<std::string>() << ',' << major["lower_end"].get<std::string>() << ','
        << major["apex"].get<std::string>() << ',' << major["convex_side"].get<std::string>() << ','
        << csv_field(j["grade"].get<std::string>()) << ',' << csv_number(round_to(conf, 0.001)) << ',' << recounted
        << ',' << csv_field(flags) << '\n';
    ReportRow row;
    row.study = s;
    row.cells = {deg(major["angle_deg"]),
                 j["grade"].get<std::string>(),
                 major["upper_end"].get<std::string>() + "-" + major["lower_end"].get<std::string>() + ", apex " +
                     major["apex"].get<std::string>() + ", convex " + major["convex_side"].get<std::string>(),
                 deg(j["angles_deg"]["pt"]), deg(j["angles_deg"]["mt"]), deg(j["angles_deg"]["tl"]),
                 csv_number(round_to(conf, 0.001))};
    for (const auto& fl : j["flags"]) row.flags.push_back(fl.get<std::string>());
    row.reliable = reliable;
    row.picture = "overlay.png";
    row.files = {"cobb.json"};
    report.figures[reliable ? 0 : 1].values.push_back(major["angle_deg"].get<double>());
    report.rows.push_back(std::move(row));
  }
  write_text_file(out_dir / "cobb.csv", csv.str());
  write_cohort_report(out_dir, report);
}

BatchSummary run_cobb(const CobbConfig& c) {
  for (const auto& w : c.validate()) log::warn("{}", w);
  const std::string device = resolve_device(c.common.device);
  const auto studies = discover_studies(c.common.inputs);
  const bool int8 = landmark_precision(c.precision, device) == "int8";
  const std::string suffix = int8 ? "-int8.pt" : ".pt";
  const Model model =
      Model::load(model_file(c.model, "xray-landmarks" + suffix), {"xray-ap-landmarks", {"xray"}, 2}, device);
  log::info("model {} {} on {}", model.card().name, model.card().version, device);
  std::optional<Model> corner_model;
  if (c.refine_corners) {
    corner_model.emplace(
        Model::load(model_file(c.corner_model, "xray-corners" + suffix), {"xray-ap-corners", {"xray"}, 2}, device));
    log::info("corner model {} {} on {}", corner_model->card().name, corner_model->card().version, device);
  }
  std::optional<Model> anchor_model;
  if (c.level_anchors) {
    anchor_model.emplace(Model::load(model_file(c.anchor_model, "xray-level-anchors.pt"),
                                     {"xray-ap-level-anchors", {"xray"}, 2}, device));
    log::info("level anchors {} {} on {}", anchor_model->card().name, anchor_model->card().version, device);
  }
  std::optional<Model> finder_model;
  if (c.find_spine) {
    finder_model.emplace(
        Model::load(model_file(c.finder_model, "xray-spine-finder.pt"), {"xray-spine-finder", {"xray"}, 2}, device));
    log::info("spine finder {} {} on {}", finder_model->card().name, finder_model->card().version, device);
  }
  const XrayLandmarkDetector detector(model, c.landmarks, corner_model ? &*corner_model : nullptr,
                                      anchor_model ? &*anchor_model : nullptr);
  std::optional<XraySpineFinder> finder;
  if (finder_model) finder.emplace(*finder_model, c.finder);
  // The models' known failure modes: logged once, and written with every result.
  std::vector<std::string> limitations;
  for (const Model* m : std::initializer_list<const Model*>{&model, corner_model ? &*corner_model : nullptr,
                                                            anchor_model ? &*anchor_model : nullptr,
                                                            finder_model ? &*finder_model : nullptr}) {
    if (!m) continue;
    for (const auto& l : m->card().limitations) {
      log::warn("{} {}: {}", m->card().name, m->card().version, l);
      limitations.push_back(l);
    }
  }

  BatchOptions options = c.common.batch_options("spine-cobb", c.to_json());
  options.models = {{model.card().name, model.card().version, model.sha256()}};
  for (const Model* m : {corner_model ? &*corner_model : nullptr, anchor_model ? &*anchor_model : nullptr,
                         finder_model ? &*finder_model : nullptr})
    if (m) options.models.push_back({m->card().name, m->card().version, m->sha256()});
  options.on_finish = [&] { write_cobb_csv(c.common.output_dir); };
  const BatchSummary summary = run_batch(studies, options, [&](const Study& study, const fs::path& work) {
    StageTimer timer;  // stage times, for cobb.json
    const LoadedImage in = read_image(study.path);
    timer.lap("read_s");
    XrayLandmarks lm;
    std::optional<SpineLocation> spine;
    CobbAngles a;
    bool inverted = false;
    std::string refinement;
    try {
      check_radiograph(in.image);
      if (finder) spine = finder->find(in.image);
      timer.lap("spine_finder_s");
      const PixelBox whole{0, 0, static_cast<double>(in.image.nx()), static_cast<double>(in.image.ny())};
      const PixelBox box = spine ? spine->crop : whole;
      const bool cropped = box.x0 > 0 || box.y0 > 0 || box.x1 < whole.x1 || box.y1 < whole.y1;
      // The landmark stages know films with bone bright: an inverted one is turned back.
      inverted = spine && inverted_polarity(in.image, *spine);
      const FloatImage seen = cropped ? crop_image(in.image, box) : in.image;
      // The second stage reads a vertebra's corners from a crop around it; on an
      // instrumented film the screw heads in those crops pull the corners (measured in
      // models/xray-corners.md), so those films keep the first stage's corners.
      const bool refine = c.refine_corners && (!(spine && spine->hardware) || c.refine_over_hardware);
      refinement = refine               ? "second stage"
                   : !c.refine_corners ? "off (--no-corner-refinement)"
                                       : "skipped: hardware in view, corners from the first stage";
      lm = detector.detect(inverted ? invert_grey(seen) : seen, refine);
      timer.lap("landmarks_s");  // both landmark stages, with the mirrored pass
      // Angles in the frame the landmark stages saw (the AASCE rule compares positions
      // with that frame's height), landmarks reported in the image's pixels.
      a = compute_cobb_angles(lm.points, box.height());
      for (auto& p : lm.points) p.x += box.x0, p.y += box.y0;
    } catch (const Error& e) {
      throw e.with_context(study.path.string());
    }
    if (spine) {
      lm.flags.insert(lm.flags.end(), spine->flags.begin(), spine->flags.end());
      const auto off = vertebrae_off_column(*spine, lm.points);
      if (off.size() >= 2) {
        std::string names;
        for (const auto& n : off) names += (names.empty() ? "" : ",") + n;
        lm.flags.push_back("landmarks off the spine the finder saw: " + names);
      }
    }
    flag_curve_reliability(a, c.landmarks.low_confidence, lm);
    timer.lap("angles_and_flags_s");
    const bool reliable = lm.flags.empty();
    const std::string grade = grade_curve(a.major.angle_deg, c.grading);
    nlohmann::json points = nlohmann::json::array(), conf = nlohmann::json::array();
    for (int k = 0; k < kCobbLandmarks; ++k) {
      points.push_back({std::round(lm.points[k].x * 100) / 100, std::round(lm.points[k].y * 100) / 100});
      conf.push_back(std::round(lm.landmark_confidence[k] * 1000) / 1000);
    }
    nlohmann::json j{
        {"study", study.name},
        {"image_size_px", {in.image.nx(), in.image.ny()}},
        {"angles_deg", {{"pt", a.aasce_deg[0]}, {"mt", a.aasce_deg[1]}, {"tl", a.aasce_deg[2]}}},
        {"angles_note", "AASCE rule: pt is the largest angle (the major curve), mt the curve above it, "
                        "tl the curve below it, as in the AASCE reference angles.csv"},
        {"s_shaped", a.s_shaped},
        {"major", major_curve_json(a.major)},
        {"grade", grade},
        // false when any flag is raised: the angle and grade above are then not to be
        // taken as measured (see flags).
        {"reliable", reliable},
        {"landmarks_px", points},
        {"confidence", conf},
        {"vertebra_confidence", lm.confidence},
        {"flags", lm.flags},
        {"sequence_adjusted", lm.sequence_adjusted},
        {"corner_refinement", refinement},
        {"corners_unrefined", lm.corners_unrefined},
        // Vertebrae whose second-stage corners weighed less: that stage's tilt differed
        // from the first stage's by more than --stage-disagreement degrees.
        {"second_stage_held_back", lm.second_stage_held_back},
        // The tilts blended with the centreline (docs/cobb.md): null with both weights 0.
        {"centreline_tilt", centreline_tilt_json(lm.centreline_tilt, c.landmarks.centreline_weight,
                                                  c.landmarks.centreline_end_weight)},
        // The level anchors' reading of the chain's ends (null when they did not run):
        // what the first stage's T1 and L5 are, with the posterior, and what was re-counted.
        {"levels", lm.levels ? nlohmann::json{{"top_vertebra_is", lm.levels->top},
                                              {"top_posterior", std::round(lm.levels->top_posterior * 1000) / 1000},
                                              {"lowest_vertebra_is", lm.levels->bottom},
                                              {"lowest_posterior", std::round(lm.levels->bottom_posterior * 1000) / 1000},
                                              {"recounted", !lm.levels->change.empty()},
                                              {"change", lm.levels->change}}
                             : nlohmann::json(nullptr)},
        {"spine_finder", spine ? nlohmann::json{{"t1_top_px", {spine->t1_top.x, spine->t1_top.y}},
                                                {"l5_bottom_px", {spine->l5_bottom.x, spine->l5_bottom.y}},
                                                {"t1_confidence", spine->t1_confidence},
                                                {"l5_confidence", spine->l5_confidence},
                                                {"crop_px", {spine->crop.x0, spine->crop.y0, spine->crop.x1, spine->crop.y1}},
                                                {"hardware_pixels", spine->hardware_pixels},
                                                {"polarity_inverted", inverted}}
                               : nlohmann::json(nullptr)},
        {"model", {{"name", model.card().name}, {"version", model.card().version}}},
        {"corner_model", corner_model ? nlohmann::json{{"name", corner_model->card().name},
                                                      {"version", corner_model->card().version}}
                                      : nlohmann::json(nullptr)},
        {"anchor_model", anchor_model ? nlohmann::json{{"name", anchor_model->card().name},
                                                      {"version", anchor_model->card().version}}
                                      : nlohmann::json(nullptr)},
        {"model_limitations", limitations}};
    if (c.overlay) write_overlay(in.image, lm, a, grade, spine ? &*spine : nullptr, work / "overlay.png");
    timer.lap("overlay_s");
    j["timing"] = timer.json();
    write_text_file(work / "cobb.json", j.dump(2) + "\n");
    for (const auto& f : lm.flags) log::warn("{}: {}", study.name, f);
    return nlohmann::json{{"major_deg", a.major.angle_deg}, {"grade", grade}, {"reliable", reliable},
                          {"flags", lm.flags.size()}};
  });
  return summary;
}

}  // namespace spine
