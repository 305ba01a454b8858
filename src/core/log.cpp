// Logging setup: a coloured console sink on stderr and an optional per-run file sink,
// both escaping control characters.
#include "spine/log.hpp"

#include <spdlog/pattern_formatter.h>
#include <spdlog/sinks/basic_file_sink.h>
#include <spdlog/sinks/stdout_color_sinks.h>

#include <cstdio>

namespace spine {

std::string terminal_safe(const std::string& text) {
  std::string out;
  out.reserve(text.size());
  auto escape = [&](unsigned char c) {
    char b[5];
    std::snprintf(b, sizeof b, "\\x%02x", c);
    out += b;
  };
  for (std::size_t i = 0; i < text.size();) {
    const auto c = static_cast<unsigned char>(text[i]);
    if (c < 0x80) {
      if (c < 0x20 || c == 0x7f) escape(c);
      else out += static_cast<char>(c);
      ++i;
      continue;
    }
    // A well-formed UTF-8 sequence is kept unless it encodes a C1 control (U+0080..9F,
    // which some terminals obey); any other byte >= 0x80 is escaped.
    const int len = c >= 0xF0 && c <= 0xF4 ? 4 : c >= 0xE0 ? 3 : c >= 0xC2 && c < 0xE0 ? 2 : 0;
    bool ok = len > 0 && i + len <= text.size();
    for (int k = 1; ok && k < len; ++k) ok = (static_cast<unsigned char>(text[i + k]) & 0xC0) == 0x80;
    if (ok && len == 2 && c == 0xC2 && static_cast<unsigned char>(text[i + 1]) < 0xA0) ok = false;
    if (ok) {
      out.append(text, i, static_cast<std::size_t>(len));
      i += static_cast<std::size_t>(len);
    } else {
      escape(c);
      ++i;
    }
  }
  return out;
}

namespace {

// Formats with spdlog's pattern, then escapes what a file name or a list file could have
// smuggled in (escape sequences, bells, carriage returns) so that neither the terminal
// nor the log can be rewritten by an input. The final newline is kept.
class TerminalSafeFormatter final : public spdlog::formatter {
 public:
  explicit TerminalSafeFormatter(std::unique_ptr<spdlog::formatter> inner) : inner_(std::move(inner)) {}
  void format(const spdlog::details::log_msg& msg, spdlog::memory_buf_t& dest) override {
    spdlog::memory_buf_t raw;
    inner_->format(msg, raw);
    std::string text(raw.data(), raw.size());
    const bool newline = !text.empty() && text.back() == '\n';
    if (newline) text.pop_back();
    const std::string safe = terminal_safe(text) + (newline ? "\n" : "");
    dest.append(safe.data(), safe.data() + safe.size());
  }
  std::unique_ptr<spdlog::formatter> clone() const override {
    return std::make_unique<TerminalSafeFormatter>(inner_->clone());
  }

 private:
  std::unique_ptr<spdlog::formatter> inner_;
};

std::unique_ptr<spdlog::formatter> safe_pattern(const std::string& pattern) {
  return std::make_unique<TerminalSafeFormatter>(std::make_unique<spdlog::pattern_formatter>(pattern));
}

}  // namespace

namespace log {

void setup(const std::string& tool, const std::string& level) {
  auto console = std::make_shared<spdlog::sinks::stderr_color_sink_mt>();
  console->set_level(spdlog::level::from_str(level));
  console->set_formatter(safe_pattern("%^%l%$: %v"));
  auto logger = std::make_shared<spdlog::logger>(tool, spdlog::sinks_init_list{console});
  logger->set_level(spdlog::level::debug);
  spdlog::set_default_logger(logger);
}

void add_file(const std::filesystem::path& file) {
  auto sink = std::make_shared<spdlog::sinks::basic_file_sink_mt>(file.string(), true);
  sink->set_level(spdlog::level::debug);
  sink->set_formatter(safe_pattern("%Y-%m-%dT%H:%M:%S.%e %l %v"));
  spdlog::default_logger()->sinks().push_back(sink);
}

}  // namespace log
}  // namespace spine
