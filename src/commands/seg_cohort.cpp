// The cohort files of spine-seg and spine-detect: seg.csv / detect.csv in long form and
// report.html, rebuilt from the per-study JSON files at the end of every run, so that
// --resume, --force on a few studies and shards writing into one folder all end with one
// complete table.
#include <fstream>
#include <optional>
#include <sstream>

#include "spine/cohort_report.hpp"
#include "spine/commands/spine_seg_cmd.hpp"
#include "spine/csv.hpp"
#include "spine/io.hpp"
#include "spine/log.hpp"

namespace fs = std::filesystem;

namespace spine {
namespace {

std::optional<nlohmann::json> read_result(const fs::path& file, const std::string& table) {
  try {
    std::ifstream in(file);
    auto j = nlohmann::json::parse(in);
    (void)j.at("vertebrae").size();
    (void)j.at("flags").size();
    return j;
  } catch (const std::exception&) {
    log::warn("{}: unreadable, left out of {}", file.string(), table);
    return std::nullopt;
  }
}

std::string joined_flags(const nlohmann::json& j) {
  std::string flags;
  for (const auto& f : j.at("flags")) flags += (flags.empty() ? "" : "; ") + f.get<std::string>();
  return flags;
}

std::string num(const nlohmann::json& j, const char* key) {
  return j.contains(key) && j.at(key).is_number() ? csv_number(j.at(key).get<double>()) : "";
}

std::string centroid(const nlohmann::json& s) {
  if (!s.contains("centroid_lps_mm")) return ",,";
  const auto& c = s.at("centroid_lps_mm");
  return csv_number(c.at(0).get<double>()) + "," + csv_number(c.at(1).get<double>()) + "," +
         csv_number(c.at(2).get<double>());
}

std::string intensity_fields(const nlohmann::json& s) {
  if (!s.contains("intensity") || !s.at("intensity").is_object()) return ",,,,,,";
  const auto& i = s.at("intensity");
  return csv_field(i.value("unit", "")) + "," + num(i, "mean") + "," + num(i, "sd") + "," + num(i, "median") + "," +
         num(i, "q1") + "," + num(i, "q3") + "," + num(i, "iqr");
}

// "T10..L3" (consecutive names from the model's sequence), or "" when none.
std::string name_range(const nlohmann::json& vertebrae) {
  if (vertebrae.empty()) return "";
  const std::string first = vertebrae.front().at("name"), last = vertebrae.back().at("name");
  return first == last ? first : first + ".." + last;
}

// The study's row in the report (overlay, counts, names, confidences, flags) and its
// values in the two figures both commands show.
void add_report_row(CohortReport& report, const std::string& study, const nlohmann::json& j, bool with_discs,
                    std::vector<std::string> files) {
  ReportRow row;
  row.study = study;
  const auto& vs = j.at("vertebrae");
  double lowest = 1;
  for (const auto& v : vs) lowest = std::min(lowest, v.value("confidence", 1.0));
  row.cells = {j.at("modality").value("modality", ""), std::to_string(vs.size()), name_range(vs)};
  if (with_discs) row.cells.push_back(std::to_string(j.value("discs", nlohmann::json::array()).size()));
  row.cells.push_back(num(j, "naming_confidence"));
  row.cells.push_back(vs.empty() ? "" : csv_number(lowest));
  for (const auto& f : j.at("flags")) row.flags.push_back(f.get<std::string>());
  row.reliable = row.flags.empty();
  row.picture = "overlay.png";
  row.files = std::move(files);
  report.figures[0].values.push_back(vs.size());
  if (j.contains("naming_confidence")) report.figures[1].values.push_back(j.at("naming_confidence").get<double>());
  report.rows.push_back(std::move(row));
}

CohortReport report_frame(const std::string& tool, bool with_discs) {
  CohortReport r;
  r.tool = tool;
  r.columns = {{"modality"}, {"vertebrae", true}, {"names"}};
  if (with_discs) r.columns.push_back({"discs", true});
  r.columns.push_back({"naming confidence", true});
  r.columns.push_back({"lowest vertebra confidence", true});
  r.figures = {{"vertebrae found per study", {}}, {"naming confidence", {}}};
  return r;
}

}  // namespace

void write_seg_cohort(const fs::path& out_dir) {
  std::ostringstream csv;
  csv << "study,modality,structure,kind,label,volume_ml,intensity_unit,intensity_mean,intensity_sd,intensity_median,"
         "intensity_q1,intensity_q3,intensity_iqr,confidence,cut_by_field_of_view,centroid_l_mm,centroid_p_mm,"
         "centroid_s_mm,naming_confidence,flags\n";
  CohortReport report = report_frame("spine-seg", true);
  report.figures.push_back({"vertebra median intensity (HU, CT studies)", {}});
  for (const auto& s : complete_studies(out_dir, "segmentation.json")) {
    const auto j = read_result(out_dir / s / "segmentation.json", "seg.csv");
    if (!j) continue;
    const std::string modality = j->at("modality").value("modality", "");
    const std::string study_tail = "," + num(*j, "naming_confidence") + "," + csv_field(joined_flags(*j)) + "\n";
    std::size_t rows = 0;
    for (const bool vertebra : {true, false}) {
      const char* kind = vertebra ? "vertebra" : "disc";
      for (const auto& st : j->value(vertebra ? "vertebrae" : "discs", nlohmann::json::array())) {
        csv << csv_field(s) << ',' << modality << ',' << csv_field(st.at("name").get<std::string>()) << ',' << kind << ','
            << st.at("label").get<int>() << ',' << num(st, "volume_ml") << ',' << intensity_fields(st) << ','
            << (vertebra ? num(st, "confidence") : "") << ','
            << (vertebra ? (st.value("cut_by_field_of_view", false) ? "true" : "false") : "") << ',' << centroid(st)
            << study_tail;
        ++rows;
        if (vertebra && modality == "ct" && st.contains("intensity") && st.at("intensity").is_object())
          report.figures[2].values.push_back(st.at("intensity").at("median").get<double>());
      }
    }
    // A study where nothing was found keeps a row: its flags say why.
    // (16 empty structure fields between the modality and the study's naming confidence).
    if (rows == 0) csv << csv_field(s) << ',' << modality << std::string(16, ',') << study_tail;
    add_report_row(report, s, *j, true, {"segmentation.json", "labels.nii.gz"});
  }
  write_text_file(out_dir / "seg.csv", csv.str());
  write_cohort_report(out_dir, report);
}

void write_detect_cohort(const fs::path& out_dir) {
  std::ostringstream csv;
  csv << "study,modality,vertebra,label,confidence,cut_by_field_of_view,bone_beside,centroid_l_mm,centroid_p_mm,"
         "centroid_s_mm,naming_confidence,flags\n";
  CohortReport report = report_frame("spine-detect", false);
  for (const auto& s : complete_studies(out_dir, "vertebrae.json")) {
    const auto j = read_result(out_dir / s / "vertebrae.json", "detect.csv");
    if (!j) continue;
    const std::string modality = j->at("modality").value("modality", "");
    const std::string study_tail = "," + num(*j, "naming_confidence") + "," + csv_field(joined_flags(*j)) + "\n";
    for (const auto& v : j->at("vertebrae"))
      csv << csv_field(s) << ',' << modality << ',' << csv_field(v.at("name").get<std::string>()) << ','
          << v.at("label").get<int>() << ',' << num(v, "confidence") << ','
          << (v.value("cut_by_field_of_view", false) ? "true" : "false") << ',' << v.value("bone_beside", "") << ','
          << centroid(v) << study_tail;
    if (j->at("vertebrae").empty()) csv << csv_field(s) << ',' << modality << std::string(8, ',') << study_tail;
    add_report_row(report, s, *j, false, {"vertebrae.json", "vertebrae.mrk.json"});
  }
  write_text_file(out_dir / "detect.csv", csv.str());
  write_cohort_report(out_dir, report);
}

}  // namespace spine
