// spine-prep as a library call: preprocessing stages applied to each study of a batch.
#pragma once
#include <optional>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include "spine/batch.hpp"
#include "spine/cli.hpp"
#include "spine/preprocess.hpp"

namespace spine {

struct PrepConfig {
  CommonOptions common;
  std::string reorient;                 // orientation code, e.g. "LPS"; empty = keep
  std::vector<double> resample_mm;      // 1 value (isotropic) or one per axis; empty = keep
  bool n4 = false;
  N4Config n4_config;
  std::string n4_mask;                  // label image on the study's grid; empty = foreground
  std::string window;                   // preset name; empty = none
  std::vector<double> window_level_width;  // custom level and width (HU)
  bool clahe = false;
  ClaheConfig clahe_config;
  std::string normalise = "none";       // none, zscore
  std::vector<double> clip_percentiles; // lower, upper (0..100)
  std::string format = "nii.gz";        // nii.gz, nii, nrrd, mha
  std::string pixel = "auto";           // auto, float, int16, uint8

  void register_cli(CLI::App& app);
  // Throws a usage error with the exact problem; returns warnings for options that have
  // no effect in the chosen mode.
  std::vector<std::string> validate() const;
  nlohmann::json to_json() const;
};

// Runs the whole command: discovers studies, processes each, returns the summary.
BatchSummary run_prep(const PrepConfig& config);

}  // namespace spine
