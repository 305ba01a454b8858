// Batch processing of studies: input discovery (file, directory, list file), one output
// folder per study written atomically, --resume / --force, provenance and a summary.
#pragma once
#include <filesystem>
#include <functional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "spine/error.hpp"

namespace spine {

struct Study {
  std::string name;                // output folder name
  std::filesystem::path path;      // image file or DICOM series directory
};

// Each input is an image file, a DICOM series directory, a directory of studies (image
// files and series sub-directories) or a text file listing one path per line ('#' comments).
// Throws an input error for a missing path, an empty directory or duplicate study names.
std::vector<Study> discover_studies(const std::vector<std::string>& inputs);

struct ModelRecord {
  std::string name, version, sha256;
};

struct BatchOptions {
  std::string tool;                     // e.g. "spine-prep"
  std::filesystem::path output_dir;
  bool force = false;                   // replace existing study outputs
  bool resume = false;                  // skip studies whose outputs are complete
  nlohmann::json config;                // the command's config, recorded in provenance
  std::vector<ModelRecord> models;      // recorded in provenance
};

enum class StudyStatus { kDone, kFailed, kSkipped };

struct StudyResult {
  std::string study;
  StudyStatus status = StudyStatus::kDone;
  std::string message;                  // reason for failed / skipped
  double seconds = 0;
};

struct BatchSummary {
  std::vector<StudyResult> results;
  int count(StudyStatus s) const;
  // kOk when nothing failed; a single failed study gives its input error status, a batch
  // with failures kSomeFailed.
  ExitStatus exit_status() const;
};

// Called per study with a fresh, empty work folder; it writes its outputs there and may
// return extra provenance fields. The folder becomes OUTDIR/<study>/ only when processing
// succeeds (rename), so a failure never leaves partial outputs.
using StudyProcessor =
    std::function<nlohmann::json(const Study& study, const std::filesystem::path& work_dir)>;

// Runs every study, reports progress (a bar on a terminal, a line per study otherwise),
// catches per-study errors so the batch goes on, and logs a summary.
BatchSummary run_batch(const std::vector<Study>& studies, const BatchOptions& options,
                       const StudyProcessor& process);

// Name of the file that marks a study's outputs as complete (written last).
inline constexpr const char* kProvenanceFile = "provenance.json";

std::string sha256_file(const std::filesystem::path& file);
std::string sha256_bytes(const std::string& bytes);
std::string iso_time_now();

}  // namespace spine
