// spine-grade: per sagittal lumbar MRI, the grading slice -> discs found and named ->
// grades per disc, with flags where a result cannot be trusted; grades.json,
// overlay.png and a cohort CSV with one row per disc.
#include "spine/commands/grade_cmd.hpp"

#include <algorithm>
#include <cmath>
#include <fstream>
#include <map>
#include <optional>
#include <set>
#include <sstream>

#include "spine/cohort_report.hpp"
#include "spine/csv.hpp"
#include "spine/disc_grading.hpp"
#include "spine/error.hpp"
#include "spine/io.hpp"
#include "spine/labels.hpp"
#include "spine/log.hpp"
#include "spine/model.hpp"
#include "spine/render.hpp"
#include "spine/stage_timer.hpp"

namespace fs = std::filesystem;

namespace spine {

void GradeConfig::register_cli(CLI::App& app) {
  common.register_cli(app);
  app.add_option("--mr-model", mr_model, "MR vertebra and disc segmentation model (default: models/mr-spine-seg.pt)");
  app.add_option("--grade-model", grade_model, "Disc grading model (default: models/mr-disc-grading.pt)");
  app.add_option("--spacing", spacing_mm,
                 "Pixel spacing (mm) of 2D inputs whose file carries none (PNG, JPEG); required for them")
      ->check(CLI::Range(0.05, 5.0));
  app.add_flag("--discs-only", discs_only, "Find and name the discs only (no grading model, no grades)");
  app.add_flag("--write-patches", write_patches,
               "Also write disc_patches.nii.gz: each disc's patch as the grading model sees it, top to bottom");
  app.add_flag("--write-labels", write_labels,
               "Also write grading_slice.nii.gz (the slice graded) and labels.nii.gz (its segmentation: vertebral "
               "bodies by level as spine-seg numbers them, discs 100 + the level above) with their colour tables, to "
               "check what each disc's place and name rest on");
  app.add_flag("!--no-overlay", overlay, "Do not write overlay.png");
  app.add_flag("!--no-series-pairing", pair_series,
               "Name each series' discs on its own. By default the series of one study given together (names that "
               "differ only in a t1/t2/T1w/T2w token: 101_t1, 101_t2, 101_t2_SPACE) are compared where they show the "
               "same discs in the same place, and where their names disagree by whole levels the lower naming is kept "
               "(flagged)");
}

nlohmann::json GradeConfig::to_json() const {
  return {{"common", common.to_json()},         {"mr_model", mr_model},
          {"grade_model", grade_model},         {"spacing_mm", spacing_mm},
          {"discs_only", discs_only},           {"write_patches", write_patches},
          {"write_labels", write_labels},
          {"overlay", overlay},                 {"pair_series", pair_series},
          {"segmentation", seg.to_json()}};
}

std::vector<std::string> grade_model_versions() {
  std::vector<std::string> out;
  for (const char* file : {"mr-spine-seg.pt", "mr-disc-grading.pt"}) {
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

namespace {

// The lumbar discs spine-grade is asked to find, top to bottom.
const std::vector<std::string>& lumbar_discs() {
  static const std::vector<std::string> names{"T12/L1", "L1/L2", "L2/L3", "L3/L4", "L4/L5", "L5/S"};
  return names;
}

double r3(double v) { return std::round(v * 1000) / 1000; }

std::string short_grades(const DiscGrades& g) {
  std::string s = "P" + std::to_string(g.pfirrmann);
  static const std::vector<std::pair<std::string, std::string>> abbrev{
      {"herniation", "hern"}, {"bulging", "bulge"}, {"narrowing", "narrow"}, {"spondylolisthesis", "listh"},
      {"modic_change", "Modic"}, {"upper_endplate", "UEP"}, {"lower_endplate", "LEP"}};
  for (const auto& [name, a] : abbrev)
    for (const auto& f : g.findings)
      if (f.name == name && f.present) s += " " + a;
  return s;
}

void write_overlay(const GradingSlice& slice, const std::vector<DiscLocation>& discs, const std::vector<DiscGrades>& grades,
                   const std::vector<std::string>& flags, const fs::path& path) {
  const FloatImage& img = slice.image;
  // Square pixels on the picture, about 800 px tall, and a panel on the right for the grades.
  const double sx = img.geometry.spacing[0], sy = img.geometry.spacing[1];
  const double mm_per_px = std::max(static_cast<double>(img.ny()) * sy / 800.0, static_cast<double>(img.nx()) * sx / 1000.0);
  const auto w = static_cast<std::size_t>(std::ceil(static_cast<double>(img.nx()) * sx / mm_per_px));
  const auto h = static_cast<std::size_t>(std::ceil(static_cast<double>(img.ny()) * sy / mm_per_px));
  const std::size_t panel = 360;
  RgbImage canvas;
  canvas.width = w + panel;
  canvas.height = std::max<std::size_t>(h, 400);
  canvas.rgb.assign(canvas.width * canvas.height * 3, 0);
  std::vector<float> v(img.voxels.begin(), img.voxels.end());
  std::sort(v.begin(), v.end());
  const float lo = v[v.size() / 200], hi = std::max(lo + 1e-6f, v[v.size() - 1 - v.size() / 200]);
  for (std::size_t y = 0; y < h; ++y)
    for (std::size_t x = 0; x < w; ++x) {
      const auto ix = std::min(img.nx() - 1, static_cast<std::size_t>((static_cast<double>(x) + 0.5) * mm_per_px / sx));
      const auto iy = std::min(img.ny() - 1, static_cast<std::size_t>((static_cast<double>(y) + 0.5) * mm_per_px / sy));
      const auto g = static_cast<std::uint8_t>(std::clamp((img.at(ix, iy) - lo) / (hi - lo), 0.f, 1.f) * 255);
      std::uint8_t* p = &canvas.rgb[(y * canvas.width + x) * 3];
      p[0] = p[1] = p[2] = g;
    }
  auto px = [&](Point2 p) { return Point2{p.x * sx / mm_per_px, p.y * sy / mm_per_px}; };
  const Rgb ok{80, 230, 80}, warn{255, 200, 0}, bad{255, 70, 70}, white{235, 235, 235};
  const double text = 15;
  double y_text = 8;
  y_text += draw_text(canvas, "spine-grade (anterior left)", {static_cast<double>(w) + 8, y_text}, text, white) + 6;
  for (std::size_t i = 0; i < discs.size(); ++i) {
    const DiscLocation& d = discs[i];
    const DiscGrades* g = i < grades.size() ? &grades[i] : nullptr;
    const bool flagged = d.cut || !d.flags.empty() || (g && !g->flags.empty());
    const Rgb col = flagged ? warn : (g && g->pfirrmann >= 4 ? bad : ok);
    // The disc's mid-plane, across the spine, as wide as the neighbouring bodies.
    const double half = d.width_mm / 2 / mm_per_px;
    const Point2 c = px(d.centre_px);
    const Point2 across{d.axis.y, -d.axis.x};
    draw_line(canvas, {c.x - half * across.x, c.y - half * across.y}, {c.x + half * across.x, c.y + half * across.y}, col, 2);
    draw_circle(canvas, c, 3, col);
    const std::string label = d.name + (g ? "  " + short_grades(*g) : "");
    draw_text(canvas, label, {c.x - half - 8 - 11.0 * static_cast<double>(label.size()), c.y - 6}, 14, col);
    // The panel: one line per disc at its height, with its grade probabilities.
    if (g) {
      std::ostringstream s;
      s.setf(std::ios::fixed);
      s.precision(2);
      s << d.name << " P" << g->pfirrmann << " (" << g->pfirrmann_probabilities[g->pfirrmann - 1] << ")";
      const double yy = std::clamp(c.y - 8, y_text, static_cast<double>(canvas.height) - 40);
      draw_line(canvas, {c.x + half + 4, c.y}, {static_cast<double>(w) + 4, yy + 8}, col, 1);
      draw_text(canvas, s.str(), {static_cast<double>(w) + 8, yy}, 13, col);
      std::ostringstream f;
      f.setf(std::ios::fixed);
      f.precision(2);
      for (const auto& fi : g->findings)
        if (fi.name == "herniation" || fi.name == "bulging" || fi.name == "narrowing" || fi.name == "spondylolisthesis")
          f << fi.name.substr(0, 4) << ' ' << fi.probability << (fi.present ? "* " : "  ");
      draw_text(canvas, f.str(), {static_cast<double>(w) + 8, yy + 16}, 11, white);
    }
  }
  double y_flags = static_cast<double>(canvas.height) - 16.0 * static_cast<double>(std::min<std::size_t>(flags.size(), 6)) - 6;
  if (!grades.empty())
    draw_text(canvas, "* present at the card's operating point", {static_cast<double>(w) + 8, y_flags - 16}, 11, white);
  for (std::size_t i = 0; i < flags.size() && i < 6; ++i)
    y_flags += draw_text(canvas, "! " + flags[i], {8, y_flags}, 12, bad);
  write_png(canvas, path);
}

nlohmann::json disc_json(const DiscLocation& d, const DiscGrades* g) {
  nlohmann::json j{{"name", d.name},
                   {"label", d.label},
                   {"centre_px", {r3(d.centre_px.x), r3(d.centre_px.y)}},
                   {"axis", {r3(d.axis.x), r3(d.axis.y)}},
                   {"height_mm", r3(d.height_mm)},
                   {"width_mm", r3(d.width_mm)},
                   {"placement", d.placement},
                   {"turn_deg", r3(d.turn_deg)},
                   {"cut", d.cut}};
  if (!g) {  // --discs-only: the geometry flags are the disc's flags
    j["flags"] = d.flags;
    j["reliable"] = d.flags.empty() && !d.cut;
  } else {
    nlohmann::json probs = nlohmann::json::object();
    for (int k = 0; k < kPfirrmannGrades; ++k) probs[std::to_string(k + 1)] = r3(g->pfirrmann_probabilities[k]);
    j["pfirrmann"] = {{"grade", g->pfirrmann}, {"probabilities", probs}, {"expected", r3(g->pfirrmann_expected)}};
    nlohmann::json f = nlohmann::json::object();
    for (const auto& fi : g->findings)
      f[fi.name] = {{"probability", r3(fi.probability)}, {"present", fi.present}, {"threshold", r3(fi.threshold)}};
    j["findings"] = f;
    j["flags"] = g->flags;
    j["reliable"] = g->flags.empty();
  }
  return j;
}

}  // namespace

void write_grades_csv(const fs::path& out_dir) {
  std::ostringstream csv;
  csv << "study,disc,reliable,naming_reliable,pfirrmann,p1,p2,p3,p4,p5,pfirrmann_expected";
  for (const auto& f : disc_finding_names()) csv << ',' << f << "_probability," << f;
  csv << ",height_mm,flags\n";
  CohortReport report;
  report.tool = "spine-grade";
  report.columns = {{"discs graded", true}, {"levels"}, {"Pfirrmann grades"}, {"findings"}, {"highest Pfirrmann", true},
                    {"naming reliable"}};
  report.figures = {{"Pfirrmann grade, every disc graded", {}}, {"discs graded per study", {}}};
  const auto number = [](const nlohmann::json& v) { return csv_number(v.get<double>()); };
  for (const auto& s : complete_studies(out_dir, "grades.json")) {
    const fs::path file = out_dir / s / "grades.json";
    nlohmann::json j;
    try {
      std::ifstream in(file);
      j = nlohmann::json::parse(in);
      (void)j.at("discs").size();
    } catch (const std::exception&) {
      log::warn("{}: unreadable, left out of grades.csv", file.string());
      continue;
    }
    const bool naming = j.value("naming_reliable", false);
    ReportRow row;
    row.study = s;
    std::string grades, findings, first, last;
    int graded = 0, highest = 0;
    bool all_reliable = naming;
    for (const auto& d : j["discs"]) {
      const std::string name = d["name"].get<std::string>();
      for (const auto& fl : d["flags"]) row.flags.push_back(name + ": " + fl.get<std::string>());
      all_reliable = all_reliable && d["reliable"].get<bool>();
      if (!d.contains("pfirrmann")) continue;  // --discs-only
      std::string flags;
      for (const auto& fl : d["flags"]) flags += (flags.empty() ? "" : "; ") + fl.get<std::string>();
      csv << csv_field(s) << ',' << csv_field(name) << ',' << (d["reliable"].get<bool>() && naming ? "true" : "false")
          << ',' << (naming ? "true" : "false") << ',' << d["pfirrmann"]["grade"].get<int>();
      for (int k = 1; k <= kPfirrmannGrades; ++k) csv << ',' << number(d["pfirrmann"]["probabilities"][std::to_string(k)]);
      csv << ',' << number(d["pfirrmann"]["expected"]);
      for (const auto& f : disc_finding_names())
        csv << ',' << number(d["findings"][f]["probability"]) << ',' << (d["findings"][f]["present"].get<bool>() ? 1 : 0);
      csv << ',' << number(d["height_mm"]) << ',' << csv_field(flags) << '\n';
      const int g = d["pfirrmann"]["grade"].get<int>();
      ++graded;
      highest = std::max(highest, g);
      grades += (grades.empty() ? "" : " ") + name + ":" + std::to_string(g);
      for (const auto& f : disc_finding_names())
        if (d["findings"][f]["present"].get<bool>()) findings += (findings.empty() ? "" : ", ") + name + " " + f;
      if (first.empty()) first = name;
      last = name;
      report.figures[0].values.push_back(g);
    }
    for (const auto& fl : j.value("flags", nlohmann::json::array())) row.flags.push_back(fl.get<std::string>());
    row.cells = {std::to_string(graded), first.empty() ? "" : first + ".." + last, grades, findings,
                 graded ? std::to_string(highest) : "", naming ? "yes" : "no"};
    // Not reliable when any disc is not, the naming is not anchored, or none was found.
    row.reliable = all_reliable && !j["discs"].empty();
    row.picture = "overlay.png";
    row.files = {"grades.json"};
    report.figures[1].values.push_back(graded);
    report.rows.push_back(std::move(row));
  }
  write_text_file(out_dir / "grades.csv", csv.str());
  write_cohort_report(out_dir, report);
}

BatchSummary run_grade(const GradeConfig& c) {
  const std::string device = resolve_device(c.common.device);
  const auto studies = discover_studies(c.common.inputs);
  SpineSegmenter segmenter(model_file(c.mr_model, "mr-spine-seg.pt"), ModelFile{}, device);
  const Model& seg_model = segmenter.model("mr");
  log::info("segmentation model {} {} on {}", seg_model.card().name, seg_model.card().version, device);
  std::optional<Model> grade_model;
  std::optional<DiscGrader> grader;
  std::vector<std::string> limitations = seg_model.card().limitations;
  if (!c.discs_only) {
    grade_model.emplace(Model::load(model_file(c.grade_model, "mr-disc-grading.pt"), {"mr-disc-grading", {"mr"}, 2}, device));
    grader.emplace(*grade_model);
    log::info("grading model {} {} on {}", grade_model->card().name, grade_model->card().version, device);
    for (const auto& l : grade_model->card().limitations) {
      log::warn("{} {}: {}", grade_model->card().name, grade_model->card().version, l);
      limitations.push_back(l);
    }
  }
  const PatchSpec spec = grader ? grader->patch_spec() : PatchSpec{};

  BatchOptions options = c.common.batch_options("spine-grade", c.to_json());
  options.models = {{seg_model.card().name, seg_model.card().version, seg_model.sha256()}};
  if (grade_model) options.models.push_back({grade_model->card().name, grade_model->card().version, grade_model->sha256()});
  options.on_finish = [&] { write_grades_csv(c.common.output_dir); };
  // A series and its discs, found as the first steps of the processor below; throws an
  // input error (without the file's name) when it cannot be read or holds no lumbar spine.
  struct FoundDiscs {
    GradingSlice slice;
    std::vector<DiscLocation> discs;
    std::vector<DiscPosition> positions;  // as named by this series alone
    StageTimer timer;
  };
  const auto find_discs = [&](const fs::path& path) {
    FoundDiscs out;
    LoadedImage in = read_image(path);
    out.timer.lap("read_s");
    const bool planar = in.image.geometry.dimension == 2 || in.image.nz() == 1;
    if (planar && (in.info.format == "png" || in.info.format == "jpeg")) {
      if (c.spacing_mm <= 0)
        throw input_error("is a " + in.info.format + " slice without pixel spacing: give --spacing (mm)");
      in.image.geometry.spacing[0] = in.image.geometry.spacing[1] = c.spacing_mm;
    }
    if (planar && (in.image.nx() * in.image.geometry.spacing[0] < 80 || in.image.ny() * in.image.geometry.spacing[1] < 80))
      throw input_error("covers under 80 mm: too small for a lumbar spine (check --spacing)");
    out.slice = grading_slice(in.image, segmenter, c.seg, in.info.modality);
    out.timer.lap("segmentation_and_slice_s");  // spine-seg's MR pipeline, then the grading slice
    out.discs = locate_discs(out.slice);
    out.timer.lap("discs_s");
    if (out.discs.empty())
      throw input_error("no disc between two named vertebral bodies found: not a sagittal lumbar MRI, or the slice "
                        "misses the vertebral bodies");
    for (const auto& d : out.discs)
      out.positions.push_back({d.label, out.slice.position.index_to_lps(d.centre_px.x, d.centre_px.y, out.slice.position_k)});
    return out;
  };
  // The series of one study given together (by name: "101_t1", "101_t2"), by input path
  // (names may be pseudonyms in the processor), and each series' discs as it named them
  // alone, kept for the run (a few numbers per series).
  std::map<std::string, std::vector<fs::path>> study_series;  // study key -> its series' paths
  std::map<fs::path, SeriesOfStudy> key_of;
  if (c.pair_series)
    for (const auto& s : studies) {
      SeriesOfStudy sos = series_of_study(s.name);
      if (sos.token.empty()) continue;
      // A series named by its sequence alone (t1.nii.gz, a DICOM folder T2_SAG) belongs
      // to the study of its folder: one folder cannot hold two patients' "t1".
      if (sos.study_key.empty()) sos.study_key = "folder " + s.path.parent_path().lexically_normal().string();
      // Under --anonymise-names the results name a series by its token alone: the words
      // after it could be a name.
      key_of[s.path] = sos;
      if (!options.name_map.empty()) key_of[s.path].sequence = sos.token;
      study_series[sos.study_key].push_back(s.path);
    }
  std::map<fs::path, std::optional<std::vector<DiscPosition>>> named_alone;  // nullopt: the series failed
  // Series read ahead for a study's other series, kept until their own turn so that no
  // series is segmented twice in a run (a partner outside this shard, or skipped by
  // --resume, stays until the end: a 2D slice and its discs).
  std::map<fs::path, FoundDiscs> read_ahead;

  return run_batch(studies, options, [&](const Study& study, const fs::path& work) {
    FoundDiscs found_discs;
    if (auto it = read_ahead.find(study.path); it != read_ahead.end()) {
      found_discs = std::move(it->second);
      read_ahead.erase(it);
      found_discs.timer.restart();
    } else {
      try {
        found_discs = find_discs(study.path);
      } catch (const Error& e) {
        named_alone[study.path] = std::nullopt;
        throw e.with_context(study.path.string());
      }
    }
    StageTimer& timer = found_discs.timer;  // stage times, for grades.json
    GradingSlice& slice = found_discs.slice;
    std::vector<DiscLocation>& discs = found_discs.discs;
    named_alone[study.path] = found_discs.positions;
    // The study's other series: their names for the same discs. Series named only by
    // their sequence, never by file name, so that pseudonymised runs leak nothing.
    NameReconciliation together;
    if (key_of.count(study.path)) {
      const SeriesOfStudy& sos = key_of.at(study.path);
      std::vector<OtherSeries> others;
      for (const auto& path : study_series.at(sos.study_key)) {
        if (path == study.path) continue;
        if (!named_alone.count(path)) {
          try {
            FoundDiscs ahead = find_discs(path);
            named_alone[path] = ahead.positions;
            read_ahead.emplace(path, std::move(ahead));
          } catch (const Error&) {
            named_alone[path] = std::nullopt;  // reported when that series itself is run
          }
        }
        const auto& other = named_alone.at(path);
        others.push_back({key_of.at(path).sequence, other ? &*other : nullptr});
      }
      together = reconcile_names(discs, found_discs.positions, sos.sequence, others);
      if (discs.empty())
        throw input_error("no lumbar disc left after the names were moved to the study's " + together.lower_sequence +
                          " series'").with_context(study.path.string());
    }
    timer.lap("other_series_s");
    std::vector<DiscGrades> grades;
    if (grader) grades = grader->grade(slice.image, discs);
    timer.lap("grading_s");
    std::vector<std::string> flags = slice.flags;
    flags.insert(flags.end(), together.flags.begin(), together.flags.end());
    std::set<std::string> found;
    for (const auto& d : discs) found.insert(d.name);
    std::vector<std::string> not_found;
    for (const auto& n : lumbar_discs())
      if (!found.count(n)) not_found.push_back(n);
    const bool sacrum = std::any_of(slice.vertebrae.begin(), slice.vertebrae.end(),
                                    [](const IdentifiedVertebra& v) { return v.label == label::kSacrum; });
    if (!sacrum) flags.push_back("sacrum not seen: levels are the level model's, not anchored on the sacrum");
    // A disc missing between two found ones is a detection failure, not the field of view.
    for (std::size_t i = 1; i + 1 < lumbar_discs().size(); ++i)
      if (!found.count(lumbar_discs()[i])) {
        const auto above = std::find_if(lumbar_discs().begin(), lumbar_discs().begin() + static_cast<long>(i),
                                        [&](const std::string& n) { return found.count(n) > 0; });
        const auto below = std::find_if(lumbar_discs().begin() + static_cast<long>(i) + 1, lumbar_discs().end(),
                                        [&](const std::string& n) { return found.count(n) > 0; });
        if (above != lumbar_discs().begin() + static_cast<long>(i) && below != lumbar_discs().end())
          flags.push_back("disc " + lumbar_discs()[i] + " not found between discs that were");
      }
    // Names rest on the segmentation's sequence: a naming doubt makes every level uncertain.
    const bool naming_reliable = sacrum && slice.flags.empty() && !together.names_disagree;
    nlohmann::json jd = nlohmann::json::array();
    for (std::size_t i = 0; i < discs.size(); ++i) jd.push_back(disc_json(discs[i], grader ? &grades[i] : nullptr));
    const double sx = slice.image.geometry.spacing[0], sy = slice.image.geometry.spacing[1];
    nlohmann::json j{{"study", study.name},
                     {"grading_slice", {{"choice", slice.choice},
                                        {"index", slice.slice_index},
                                        {"count", slice.slice_count},
                                        {"size_px", {slice.image.nx(), slice.image.ny()}},
                                        {"spacing_mm", {sx, sy}},
                                        {"frame", "x toward posterior (anterior at the left), y toward the feet"}}},
                     {"naming_confidence", r3(slice.naming_confidence)},
                     {"naming_reliable", naming_reliable},
                     {"series_of_study", together.record},
                     {"discs", jd},
                     {"lumbar_discs_not_found", not_found},
                     {"flags", flags},
                     {"sequence_note", "each series is graded on its own (averaging a study's T1 and T2 gained "
                                       "nothing on validation), its disc names compared with the study's other "
                                       "series given in the same run (series_of_study); Pfirrmann is defined on "
                                       "T2, so prefer the T2 "
                                       "series' grade; modic_change is the probability of a Modic endplate change "
                                       "of any type (types 1 and 3 are too rare in the training data to be told "
                                       "apart)"},
                     {"model_limitations", limitations}};
    if (grade_model)
      j["grading_model"] = {{"name", grade_model->card().name}, {"version", grade_model->card().version}};
    else
      j["grading_model"] = nullptr;
    if (c.overlay) write_overlay(slice, discs, grades, flags, work / "overlay.png");
    timer.lap("overlay_s");
    j["timing"] = timer.json();
    write_text_file(work / "grades.json", j.dump(2) + "\n");
    if (c.write_patches) {
      const Tensor p = disc_patches(slice.image, discs, spec);
      Geometry g;
      g.dimension = 3;
      g.size = {static_cast<std::size_t>(spec.width_px), static_cast<std::size_t>(spec.height_px), discs.size()};
      g.spacing = {spec.spacing_mm, spec.spacing_mm, 1.0};
      FloatImage stack(g);
      std::copy(p.data.begin(), p.data.end(), stack.voxels.begin());
      write_image(stack, work / "disc_patches.nii.gz");
    }
    if (c.write_labels) {
      write_image(slice.image, work / "grading_slice.nii.gz");
      write_labels(slice.labels, work / "labels.nii.gz");
      const std::set<int> present(slice.labels.voxels.begin(), slice.labels.voxels.end());
      write_color_tables(std::vector<int>(present.begin(), present.end()), work / "labels");
    }
    for (const auto& f : flags) log::warn("{}: {}", study.name, f);
    return nlohmann::json{{"discs", discs.size()}, {"flags", flags.size()}};
  });
}

}  // namespace spine
