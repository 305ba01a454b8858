// Seconds per stage of one study, recorded in its result file (`timing`) for the stage
// profiles in docs/performance.md: lap("read_s") stores the time since the previous lap
// (or since the timer was made), to 0.1 ms.
#pragma once
#include <chrono>
#include <cmath>
#include <string>

#include <nlohmann/json.hpp>

namespace spine {

class StageTimer {
 public:
  void lap(const std::string& stage) {
    const auto now = std::chrono::steady_clock::now();
    laps_[stage] = std::round(std::chrono::duration<double>(now - last_).count() * 1e4) / 1e4;
    last_ = now;
  }
  // The next lap starts now (the laps so far are kept): for stages run ahead of the rest,
  // such as a series read while its study's other series was.
  void restart() { last_ = std::chrono::steady_clock::now(); }
  const nlohmann::json& json() const { return laps_; }

 private:
  std::chrono::steady_clock::time_point last_ = std::chrono::steady_clock::now();
  nlohmann::json laps_ = nlohmann::json::object();
};

}  // namespace spine
