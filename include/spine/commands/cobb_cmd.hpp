// spine-cobb as a library call: landmarks, Cobb angles, grading, overlay and cohort CSV
// for each frontal radiograph of a batch.
#pragma once
#include <filesystem>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include "spine/batch.hpp"
#include "spine/cli.hpp"
#include "spine/cobb.hpp"
#include "spine/xray_landmarks.hpp"
#include "spine/xray_spine_finder.hpp"

namespace spine {

struct CobbConfig {
  CommonOptions common;
  std::string model;                // empty: the default model (see default_model_path)
  std::string corner_model;         // second stage; empty: the default (models/xray-corners.pt)
  // Which shipped files the two landmark stages use: "fp32" (the float models) or "int8"
  // (models/*-int8.pt, quantized copies: about 1.4x faster a film on the CPU, the same
  // validation SMAPE, 0.2 points worse on the training films; models/xray-landmarks.md
  // "Int8 copies of both stages"; CPU only). A model given with --model /
  // --corner-model is used as it is.
  std::string precision = "fp32";
  bool refine_corners = true;       // run the second stage
  // Run it on films where the spine finder sees hardware too. Off by default: on
  // instrumented films the crops' corners snap onto screw heads (models/xray-corners.md).
  bool refine_over_hardware = false;
  std::string anchor_model;         // level anchors; empty: the default (models/xray-level-anchors.pt)
  bool level_anchors = true;        // re-count the chain from what lies at its ends
  std::string finder_model;         // spine finder; empty: the default (models/xray-spine-finder.pt)
  bool find_spine = true;           // crop the film around the spine found before the landmark stages
  CobbGrading grading;
  XrayLandmarkOptions landmarks;
  SpineFinderOptions finder;
  bool overlay = true;

  void register_cli(CLI::App& app);
  std::vector<std::string> validate() const;
  nlohmann::json to_json() const;
};

BatchSummary run_cobb(const CobbConfig& config);

// CobbConfig::precision checked against the resolved device ("cpu", "cuda:0"): a usage
// error for int8 off the CPU (LibTorch's quantized operators have no CUDA kernels).
std::string landmark_precision(const std::string& requested, const std::string& device);

// Writes OUTDIR/cobb.csv and report.html (with its list files) from every complete
// OUTDIR/<study>/cobb.json, whichever run wrote it.
void write_cobb_csv(const std::filesystem::path& output_dir);

}  // namespace spine
