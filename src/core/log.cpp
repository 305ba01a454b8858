// Logging setup: a coloured console sink on stderr and an optional per-run file sink,
// both escaping control characters.
#include "spine/log.hpp"

#include <spdlog/pattern_formatter.h>
#include <spdlog/sinks/base_sink.h>
#include <spdlog/sinks/basic_file_sink.h>
#include <spdlog/sinks/stdout_color_sinks.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <cstdio>
#include <iostream>
#include <mutex>

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

std::mutex g_redaction_mutex;
std::vector<std::pair<std::string, std::string>> g_redactions;
// Read on every message: without --anonymise-names a message is formatted as before,
// with no copy and no lock.
std::atomic<bool> g_redacting{false};

bool word_char(char c) { return std::isalnum(static_cast<unsigned char>(c)) != 0; }

// Formats with spdlog's pattern, then escapes what a file name or a list file could have
// smuggled in (escape sequences, bells, carriage returns) so that neither the terminal
// nor the log can be rewritten by an input. The final newline is kept.
class TerminalSafeFormatter final : public spdlog::formatter {
 public:
  explicit TerminalSafeFormatter(std::unique_ptr<spdlog::formatter> inner) : inner_(std::move(inner)) {}
  void format(const spdlog::details::log_msg& msg, spdlog::memory_buf_t& dest) override {
    spdlog::memory_buf_t raw;
    if (!g_redacting.load(std::memory_order_relaxed)) {
      inner_->format(msg, raw);
    } else {
      // Only the message is redacted, not the time stamp or level in front of it.
      const std::string payload = log::redact(std::string(msg.payload.data(), msg.payload.size()));
      spdlog::details::log_msg redacted = msg;
      redacted.payload = spdlog::string_view_t(payload.data(), payload.size());
      inner_->format(redacted, raw);
    }
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

// The status line (a progress bar and the stage of the current study) at the bottom of a
// terminal: cleared before each log line and drawn again after it, so the two never run
// into each other on one line.
std::mutex g_status_mutex;
std::string g_status, g_stage;
bool g_status_shown = false;

void draw_status_locked() {
  if (g_status.empty()) return;
  std::cerr << '\r' << g_status << (g_stage.empty() ? "" : ": " + g_stage) << "\033[K" << std::flush;
  g_status_shown = true;
}

void clear_status_locked() {
  if (g_status_shown) std::cerr << "\r\033[K" << std::flush;
  g_status_shown = false;
}

class StatusAwareConsole final : public spdlog::sinks::base_sink<spdlog::details::null_mutex> {
 public:
  explicit StatusAwareConsole(std::shared_ptr<spdlog::sinks::sink> inner) : inner_(std::move(inner)) {}

 protected:
  void sink_it_(const spdlog::details::log_msg& msg) override {
    const std::lock_guard<std::mutex> lock(g_status_mutex);
    clear_status_locked();
    inner_->log(msg);
    inner_->flush();
    draw_status_locked();
  }
  void flush_() override { inner_->flush(); }
  void set_formatter_(std::unique_ptr<spdlog::formatter> f) override { inner_->set_formatter(std::move(f)); }
  void set_pattern_(const std::string& p) override { inner_->set_pattern(p); }

 private:
  std::shared_ptr<spdlog::sinks::sink> inner_;
};

}  // namespace

namespace log {

void set_status(const std::string& line) {
  const std::lock_guard<std::mutex> lock(g_status_mutex);
  clear_status_locked();
  g_status = terminal_safe(line);
  g_stage.clear();
  draw_status_locked();
}

void set_stage(const std::string& stage) {
  const std::lock_guard<std::mutex> lock(g_status_mutex);
  if (g_status.empty()) return;  // no status line (not a terminal, or no batch)
  g_stage = terminal_safe(stage);
  draw_status_locked();
}

void setup(const std::string& tool, const std::string& level) {
  auto coloured = std::make_shared<spdlog::sinks::stderr_color_sink_mt>();
  coloured->set_formatter(safe_pattern("%^%l%$: %v"));
  auto console = std::make_shared<StatusAwareConsole>(coloured);
  console->set_level(spdlog::level::from_str(level));
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

void set_redactions(std::vector<std::pair<std::string, std::string>> replacements) {
  replacements.erase(std::remove_if(replacements.begin(), replacements.end(),
                                    [](const auto& r) { return r.first.empty(); }),
                     replacements.end());
  std::sort(replacements.begin(), replacements.end(),
            [](const auto& a, const auto& b) { return a.first.size() > b.first.size(); });
  const std::lock_guard<std::mutex> lock(g_redaction_mutex);
  g_redacting = !replacements.empty();
  g_redactions = std::move(replacements);
}

std::string redact(const std::string& text) {
  const std::lock_guard<std::mutex> lock(g_redaction_mutex);
  std::string out = text;
  for (const auto& [from, to] : g_redactions) {
    for (std::size_t pos = out.find(from); pos != std::string::npos; pos = out.find(from, pos)) {
      const std::size_t end = pos + from.size();
      const bool alone = (pos == 0 || !word_char(out[pos - 1]) || !word_char(from.front())) &&
                         (end == out.size() || !word_char(out[end]) || !word_char(from.back()));
      if (alone) {
        out.replace(pos, from.size(), to);
        pos += to.size();
      } else {
        ++pos;
      }
    }
  }
  return out;
}

}  // namespace log
}  // namespace spine
