// Batch processing of studies: input discovery (file, directory, list file), one output
// folder per study written atomically, --resume / --force, provenance and a summary.
#pragma once
#include <filesystem>
#include <functional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "spine/error.hpp"
#include "spine/model.hpp"

namespace spine {

struct Study {
  std::string name;                // output folder name
  std::filesystem::path path;      // image file or DICOM series directory
};

// Each input is an image file, a DICOM series directory, a directory of studies (image
// files and series sub-directories) or a text file listing one path per line ('#' comments).
// Throws an input error for a missing path, an empty directory or duplicate study names.
std::vector<Study> discover_studies(const std::vector<std::string>& inputs);

struct BatchOptions {
  std::string tool;                     // e.g. "spine-prep"
  std::filesystem::path output_dir;
  bool force = false;                   // replace existing study outputs
  bool resume = false;                  // skip studies whose outputs are complete
  nlohmann::json config;                // the command's config, recorded in provenance
  std::vector<ModelRecord> models;      // recorded in provenance
  // When set, asked after each study for the models that study used (a command that loads
  // a model only when a study needs it); recorded instead of `models`.
  std::function<std::vector<ModelRecord>()> study_models;
  // --anonymise-names: the name map file (empty: off). Study folders, provenance, tables
  // and messages then carry pseudonyms (pseudonyms.hpp), and provenance no input path.
  std::filesystem::path name_map;
  // Runs after the last study, still holding the output folder's lock (a cohort table
  // built from every complete study folder), also after an interruption.
  std::function<void()> on_finish;
  // --shard K/N: only the studies whose shard_of(name, N) is K (0/0: all).
  int shard_index = 0, shard_count = 0;
  // --layout bids: after on_finish, OUTDIR/derivatives/spine/ is rebuilt (bids.hpp).
  bool bids_layout = false;
  // --cohort-files-only: no study is run; only on_finish (and the BIDS view) under the lock.
  bool cohort_files_only = false;
};

// The shard (1..shard_count) a study belongs to, from the SHA-256 of its name: a study
// keeps its shard however the list around it changes (studies added between array jobs),
// and shards of a large cohort come out about equal in size.
int shard_of(const std::string& study_name, int shard_count);
// "K/N" -> {K, N}; a usage error unless 1 <= K <= N.
std::pair<int, int> parse_shard(const std::string& text);

// kNotRun: left out because the run was interrupted (SIGINT / SIGTERM) before it.
enum class StudyStatus { kDone, kFailed, kSkipped, kNotRun };

struct StudyResult {
  std::string study;
  StudyStatus status = StudyStatus::kDone;
  std::string message;                  // reason for failed / skipped
  double seconds = 0;
};

struct BatchSummary {
  std::vector<StudyResult> results;
  bool interrupted = false;
  int count(StudyStatus s) const;
  // kInterrupted after SIGINT / SIGTERM; else kOk when nothing failed; a single failed
  // study gives its input error status, a batch with failures kSomeFailed.
  ExitStatus exit_status() const;
};

// Called per study with a fresh, empty work folder; it writes its outputs there and may
// return extra provenance fields. The folder becomes OUTDIR/<study>/ only when processing
// succeeds (rename), so a failure never leaves partial outputs.
using StudyProcessor =
    std::function<nlohmann::json(const Study& study, const std::filesystem::path& work_dir)>;

// Runs every study, reports progress (a bar on a terminal, a line per study otherwise),
// catches per-study errors so the batch goes on, and logs a summary.
// Output integrity: several runs (shards, array jobs) may write into one output folder at
// once. Each study is locked while a run works on it (another run skips it, saying so);
// work folders left by runs that died (SIGKILL, power loss) are removed, and a previous
// output that such a run had set aside is restored; a study folder is renamed into place
// only if none has appeared meanwhile (unless --force). on_finish runs under a lock of the
// whole folder, so cohort files are rewritten by one run at a time. With --resume a study is skipped only when its
// provenance parses and every output it lists is there with its recorded size; a damaged
// one is run again (a folder without provenance.json is reported, never replaced). SIGINT / SIGTERM let the current study finish (a second signal
// abandons it), then the summary is logged, on_finish runs and the status is kInterrupted.
BatchSummary run_batch(const std::vector<Study>& studies, const BatchOptions& options,
                       const StudyProcessor& process);

// A study whose last run failed and that has no complete outputs (OUTDIR/failures/).
struct FailedStudy {
  std::string study, input, error, tool, time;  // input: empty under --anonymise-names
};
inline constexpr const char* kFailuresDir = "failures";
std::vector<FailedStudy> failed_studies(const std::filesystem::path& out_dir);

// Name of the file that marks a study's outputs as complete (written last).
inline constexpr const char* kProvenanceFile = "provenance.json";
// The lock file of an output folder (held while its cohort files are rewritten).
inline constexpr const char* kLockFile = ".spine-lock";

// True when dir holds complete outputs: provenance.json parses and lists outputs that are
// all there with their recorded sizes.
bool study_outputs_complete(const std::filesystem::path& dir);
// The sorted names of the study folders in out_dir that hold `result_file` and complete
// outputs, whichever run wrote them: what a cohort table describes.
std::vector<std::string> complete_studies(const std::filesystem::path& out_dir, const std::string& result_file);

std::string sha256_file(const std::filesystem::path& file);
std::string sha256_bytes(const std::string& bytes);
std::string iso_time_now();

}  // namespace spine
