// Command-line conventions shared by every executable: the standard options, one place
// that maps exceptions to documented exit statuses, and --version output.
#pragma once
#include <functional>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include "spine/batch.hpp"
#include "spine/error.hpp"

namespace spine {

struct CommonOptions {
  std::vector<std::string> inputs;   // files, directories or list files
  std::string output_dir;
  int verbose = 0;                   // -v count
  bool quiet = false;
  std::string log_level = "info";
  int threads = 0;                   // 0 = all cores
  std::string device = "auto";
  bool force = false;
  bool resume = false;
  std::string max_memory = "auto";   // budget for one input (see io.hpp)
  std::string name_map;              // --anonymise-names MAP (empty: real study names)
  std::string shard;                 // --shard K/N (empty: every study)
  std::string layout = "folders";    // folders, or bids: also OUTDIR/derivatives/spine/
  bool cohort_files_only = false;    // run no study; rebuild the cohort files

  void register_cli(CLI::App& app, bool with_inputs = true);
  std::string effective_log_level() const;
  // Batch options for `tool` from these options, recording `config` in provenance;
  // `working_bytes_per_voxel` is the command's measured peak per input voxel, which
  // --max-memory is checked against (see set_memory_budget).
  BatchOptions batch_options(const std::string& tool, nlohmann::json config, double working_bytes_per_voxel = 0) const;
  nlohmann::json to_json() const;
};

struct ToolInfo {
  std::string name;         // "spine-prep"
  std::string description;  // one line
  // Model files the tool would use by default, for --version (may be empty).
  std::function<std::vector<std::string>()> model_versions;
};

// Parses, runs `body` and maps errors to exit statuses with one clear line on stderr:
// CLI11 errors -> usage (1), spine::Error -> its kind, anything else -> internal (4).
// `setup` registers the tool's options; `body` returns the exit status.
int run_main(int argc, char** argv, const ToolInfo& tool,
             const std::function<void(CLI::App&)>& setup,
             const std::function<ExitStatus()>& body);

std::string version_line(const std::string& tool);

}  // namespace spine
