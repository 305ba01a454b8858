// spine-seg and spine-detect as library calls. Both run the same pipeline
// (spine::SpineSegmenter); spine-seg writes the label map, its colour tables and an
// overlay, spine-detect the named vertebra centroids (JSON and 3D Slicer markups).
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

// Options shared by both commands.
struct SpineModelOptions {
  std::string modality = "auto";  // auto, ct, mr
  std::string mr_model;           // empty: models/mr-spine-seg.pt
  std::string ct_model;           // empty: models/ct-spine-seg.pt
  SpineSegConfig seg;
  bool overlay = true;

  void register_cli(CLI::App& app);
  nlohmann::json to_json() const;
};

struct SegCommandConfig {
  CommonOptions common;
  SpineModelOptions models;
  // nifti: labels.nii.gz with its colour tables; dicom-seg: also segmentation.dcm, a DICOM
  // Segmentation object (referencing the source series when the input was one).
  std::string output_format = "nifti";
  bool dicom_patient_identity = false;  // copy patient and study identity into the SEG
  void register_cli(CLI::App& app);
  nlohmann::json to_json() const;
};

struct DetectCommandConfig {
  CommonOptions common;
  SpineModelOptions models;
  bool write_labels = false;      // also labels.nii.gz
  void register_cli(CLI::App& app);
  nlohmann::json to_json() const;
};

// Checks, without loading them, the models a run with these options may need (file,
// pinned checksum, card): a missing or wrong model stops the run before its first study.
// Under --modality auto a missing shipped model only warns (the other modality's studies
// can run); a model the user named must fit. The models load when a study needs them.
void check_spine_models(const SpineModelOptions& options);

BatchSummary run_spine_seg(const SegCommandConfig& config);
BatchSummary run_spine_detect(const DetectCommandConfig& config);

// The cohort files, rebuilt from every complete study folder of out_dir whichever run
// wrote it: seg.csv (one row per vertebra and disc, with volume and intensity statistics)
// or detect.csv (one row per vertebra), and report.html with its list files.
void write_seg_cohort(const std::filesystem::path& out_dir);
void write_detect_cohort(const std::filesystem::path& out_dir);

// "name version (path)" of the default models, for --version.
std::vector<std::string> spine_seg_model_versions();

}  // namespace spine
