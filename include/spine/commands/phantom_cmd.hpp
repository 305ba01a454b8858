// spine-phantom as a library call: writes synthetic studies with their ground truth.
#pragma once
#include <string>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include "spine/batch.hpp"
#include "spine/cli.hpp"
#include "spine/phantom.hpp"

namespace spine {

struct PhantomCommandConfig {
  CommonOptions common;
  std::string kind = "ct";          // ct, mr-t1, mr-t2, xray
  std::string name = "phantom";     // study name; with --count N, name-000 ...
  int count = 1;
  PhantomConfig volume;             // used for ct / mr kinds
  RadiographConfig radiograph;      // used for xray
  std::string format = "nii.gz";

  void register_cli(CLI::App& app);
  std::vector<std::string> validate() const;
  nlohmann::json to_json() const;
};

BatchSummary run_phantom(const PhantomCommandConfig& config);

}  // namespace spine
