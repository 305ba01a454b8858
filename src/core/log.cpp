// Logging setup: a coloured console sink on stderr and an optional per-run file sink.
#include "spine/log.hpp"

#include <spdlog/sinks/basic_file_sink.h>
#include <spdlog/sinks/stdout_color_sinks.h>

namespace spine::log {

void setup(const std::string& tool, const std::string& level) {
  auto console = std::make_shared<spdlog::sinks::stderr_color_sink_mt>();
  console->set_level(spdlog::level::from_str(level));
  console->set_pattern("%^%l%$: %v");
  auto logger = std::make_shared<spdlog::logger>(tool, spdlog::sinks_init_list{console});
  logger->set_level(spdlog::level::debug);
  spdlog::set_default_logger(logger);
}

void add_file(const std::filesystem::path& file) {
  auto sink = std::make_shared<spdlog::sinks::basic_file_sink_mt>(file.string(), true);
  sink->set_level(spdlog::level::debug);
  sink->set_pattern("%Y-%m-%dT%H:%M:%S.%e %l %v");
  spdlog::default_logger()->sinks().push_back(sink);
}

}  // namespace spine::log
