// A thin logging layer over spdlog: console level from -v/-q/--log-level and one log file
// per run in the output folder. Never log patient identifiers.
#pragma once
#include <filesystem>
#include <string>
#include <utility>
#include <vector>

#include <spdlog/spdlog.h>

namespace spine {
// Text as it may be shown on a terminal or written to a log: control characters (and
// bytes that are not well-formed UTF-8) become \xHH, so that a file name cannot move the
// cursor, clear the screen or forge a log line.
std::string terminal_safe(const std::string& text);
}  // namespace spine

namespace spine::log {

// level: "trace", "debug", "info", "warn", "error", "off".
void setup(const std::string& tool, const std::string& level);
// Adds a file sink (always at debug level) writing to `file`.
void add_file(const std::filesystem::path& file);

// The status line on a terminal (the batch's progress bar; empty: none), kept below the
// log lines: each log line clears it first and draws it again after.
void set_status(const std::string& line);
// The stage of the current study, shown after the status line ("coarse pass"); nothing
// while there is no status line.
void set_stage(const std::string& stage);

// Replacements made in every message from now on, on the terminal and in the log
// (--anonymise-names: a study's input path and name become its pseudonym). A match must
// not have a letter or digit on either side, so a short name is not replaced inside
// other words; longer strings are replaced first. An empty list ends it.
void set_redactions(std::vector<std::pair<std::string, std::string>> replacements);
std::string redact(const std::string& text);

using spdlog::debug;
using spdlog::error;
using spdlog::info;
using spdlog::warn;

}  // namespace spine::log
