// Shared command-line options, --version, and the one place exceptions become exit statuses.
#include "spine/cli.hpp"

#include <iostream>
#include <tuple>

#include "spine/io.hpp"
#include "spine/log.hpp"
#include "spine/version.hpp"

namespace spine {

void CommonOptions::register_cli(CLI::App& app, bool with_inputs) {
  if (with_inputs) {
    app.add_option("inputs", inputs,
                   "Image file, DICOM series directory, directory of studies, or a text file listing paths")
        ->required();
  }
  app.add_option("-o,--output", output_dir, "Output directory (one sub-folder per study)")->required();
  app.add_flag("-v,--verbose", verbose, "More log output (-vv for trace)");
  app.add_flag("-q,--quiet", quiet, "Only warnings and errors");
  app.add_option("--log-level", log_level, "Log level")
      ->check(CLI::IsMember({"trace", "debug", "info", "warn", "error", "off"}))
      ->capture_default_str();
  app.add_option("--threads", threads, "Threads for torch and ITK (0 = all cores)")
      ->check(CLI::Range(0, 1024))
      ->capture_default_str();
  app.add_option("--device", device, "auto, cpu, cuda or cuda:N")->capture_default_str();
  app.add_flag("--force", force, "Overwrite existing study outputs");
  app.add_flag("--resume", resume, "Skip studies whose outputs are already complete (damaged ones are run again)");
  app.add_option("--max-memory", max_memory,
                 "Most memory one input may take (reading it and the command's work on it), checked from "
                 "its header before reading (e.g. 8G, 512M; auto = three quarters of this machine's memory)")
      ->capture_default_str();
  app.add_option("--anonymise-names,--anonymize-names", name_map,
                 "Name each study by a stable random pseudonym (anon-...) in its folder, tables, provenance and "
                 "messages, keeping the pseudonym-to-name map in this CSV file (outside the output folder; made "
                 "when missing, reused and extended otherwise)");
  if (with_inputs) {
    app.add_option("--shard", shard,
                   "Run only shard K of N (K/N, e.g. 3/8): a study's shard follows from its name alone, so N jobs "
                   "(an array job, a Snakemake rule) given the same inputs and --shard 1/N .. N/N run every study "
                   "once; they may share one output folder")
        ->check([](const std::string& v) {
          try {
            parse_shard(v);
            return std::string();
          } catch (const Error& e) {
            return std::string(e.what());
          }
        });
    app.add_option("--layout", layout,
                   "folders: one folder per study; bids: also a BIDS-derivatives tree, "
                   "OUTDIR/derivatives/spine/sub-*/[ses-*/]anat/*_dseg.nii.gz with its dataset_description.json, for "
                   "studies with BIDS names (a BIDS dataset given as input)")
        ->check(CLI::IsMember({"folders", "bids"}))
        ->capture_default_str();
    app.add_flag("--cohort-files-only", cohort_files_only,
                 "Run no study: only rebuild the cohort table, report.html, the list files (and with --layout bids the "
                 "derivatives) from the study folders already in the output folder (the last step of a sharded run)");
  }
}

std::string CommonOptions::effective_log_level() const {
  if (quiet) return "warn";
  if (verbose >= 2) return "trace";
  if (verbose == 1) return "debug";
  return log_level;
}

BatchOptions CommonOptions::batch_options(const std::string& tool, nlohmann::json config,
                                          double working_bytes_per_voxel) const {
  set_memory_budget(parse_memory_size(max_memory), working_bytes_per_voxel);
  BatchOptions o;
  o.tool = tool;
  o.output_dir = output_dir;
  o.force = force;
  o.resume = resume;
  o.name_map = name_map;
  if (!shard.empty()) std::tie(o.shard_index, o.shard_count) = parse_shard(shard);
  o.bids_layout = layout == "bids";
  o.cohort_files_only = cohort_files_only;
  o.config = std::move(config);
  return o;
}

nlohmann::json CommonOptions::to_json() const {
  return {{"output", output_dir}, {"log_level", effective_log_level()}, {"threads", threads},
          {"device", device},     {"force", force},                     {"resume", resume},
          {"max_memory", max_memory}, {"anonymise_names", !name_map.empty()},
          {"shard", shard.empty() ? nlohmann::json(nullptr) : nlohmann::json(shard)}, {"layout", layout},
          {"cohort_files_only", cohort_files_only}};
}

std::string version_line(const std::string& tool) {
  return tool + " " + kVersion + " (git " + kGitRevision + ")";
}

int run_main(int argc, char** argv, const ToolInfo& tool, const std::function<void(CLI::App&)>& setup,
             const std::function<ExitStatus()>& body) {
  CLI::App app{tool.description, tool.name};
  app.option_defaults()->always_capture_default();
  app.footer(
      "Exit status: 0 all done, 1 usage error, 2 input error, 3 some studies failed, 4 internal error, "
      "5 interrupted (SIGINT/SIGTERM: finished studies kept, the rest not run).");
  bool show_version = false;
  app.add_flag("--version", show_version, "Print version, git revision and model versions, then exit");
  try {
    setup(app);
    // --version must work without the otherwise required options.
    for (int i = 1; i < argc; ++i) {
      if (std::string(argv[i]) == "--version") {
        std::cout << version_line(tool.name) << "\n";
        std::vector<std::string> models;
        if (tool.model_versions) models = tool.model_versions();
        std::cout << "models:" << (models.empty() ? " none" : "") << "\n";
        for (const auto& m : models) std::cout << "  " << m << "\n";
        return 0;
      }
    }
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    std::cerr << tool.name << ": error: " << terminal_safe(e.what()) << " (see --help)\n";
    return static_cast<int>(ExitStatus::kUsage);
  } catch (const Error& e) {
    std::cerr << tool.name << ": error: " << terminal_safe(e.what()) << "\n";
    return static_cast<int>(e.exit_status());
  }
  try {
    return static_cast<int>(body());
  } catch (const Error& e) {
    std::cerr << tool.name << ": error: " << terminal_safe(e.what()) << "\n";
    return static_cast<int>(e.exit_status());
  } catch (const std::exception& e) {
    std::cerr << tool.name << ": internal error: " << terminal_safe(e.what()) << "\n";
    return static_cast<int>(ExitStatus::kInternal);
  }
}

}  // namespace spine
