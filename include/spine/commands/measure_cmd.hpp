// spine-measure as a library call: clinical measurements (heights, Genant grades, bone
// attenuation, discs, alignment, canal) from each study's label map, the user's own or
// one spine-seg makes; per study measurements.json and overlay.png, and the cohort's
// measurements.csv in long form.
#pragma once
#include <string>
#include <vector>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include "spine/batch.hpp"
#include "spine/cli.hpp"
#include "spine/commands/spine_seg_cmd.hpp"
#include "spine/measure.hpp"

namespace spine {

struct MeasureCommandConfig {
  CommonOptions common;
  // A label map (one study), or a folder holding each study's map as <study>/labels.nii.gz
  // (spine-seg's output), <study>.nii.gz or <study>_labels.nii.gz; empty: segment with
  // spine-seg's models first.
  std::string labels;
  SpineModelOptions models;     // when segmenting; --modality also decides CT or MR measures, --no-overlay
  MeasureOptions measure;

  void register_cli(CLI::App& app);
  std::vector<std::string> validate() const;
  nlohmann::json to_json() const;
};

BatchSummary run_measure(const MeasureCommandConfig& config);

}  // namespace spine
