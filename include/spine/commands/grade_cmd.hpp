// spine-grade as a library call: per sagittal lumbar MRI, the grading slice, the discs
// found and named, their Pfirrmann grades and findings; grades.json, overlay.png and a
// cohort CSV (one row per disc).
#pragma once
#include <filesystem>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include "spine/batch.hpp"
#include "spine/cli.hpp"
#include "spine/spine_seg.hpp"

namespace spine {

struct GradeConfig {
  CommonOptions common;
  std::string mr_model;        // empty: models/mr-spine-seg.pt
  std::string grade_model;     // empty: models/mr-disc-grading.pt
  double spacing_mm = 0;       // pixel spacing of 2D inputs whose file has none (PNG, JPEG); 0 = not given
  bool discs_only = false;     // find and name the discs, no grading model
  bool write_patches = false;  // disc_patches.nii.gz: what the grading model sees
  // grading_slice.nii.gz and labels.nii.gz (with colour tables): the slice graded and its
  // segmentation, so that a user can check what each disc's place and name rest on.
  bool write_labels = false;
  bool overlay = true;
  // Series of one study given together (names that differ only in a t1 / t2 token) are
  // named alike: where their names disagree, the lower naming is kept.
  bool pair_series = true;
  SpineSegConfig seg;

  void register_cli(CLI::App& app);
  nlohmann::json to_json() const;
};

BatchSummary run_grade(const GradeConfig& config);

// Writes OUTDIR/grades.csv and report.html (with its list files) from every complete
// OUTDIR/<study>/grades.json.
void write_grades_csv(const std::filesystem::path& output_dir);

std::vector<std::string> grade_model_versions();

}  // namespace spine
