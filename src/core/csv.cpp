#include "spine/csv.hpp"

#include <cmath>
#include <stdexcept>

#include <fmt/format.h>

namespace spine {

std::string csv_field(const std::string& s) {
  if (s.find_first_of(",\"\r\n") == std::string::npos) return s;
  std::string out = "\"";
  for (char c : s) out += c == '"' ? std::string("\"\"") : std::string(1, c);
  return out + "\"";
}

double round_to(double v, double unit) {
  if (!std::isfinite(v) || unit <= 0) return v;
  if (unit < 1) {
    const double inverse = std::round(1.0 / unit);
    return std::round(v * inverse) / inverse;
  }
  return std::round(v / unit) * unit;
}

std::string csv_number(double v) {
  if (!std::isfinite(v)) return "";
  return fmt::format("{}", v);
}

std::vector<std::string> parse_csv_line(const std::string& line) {
  std::vector<std::string> fields(1);
  bool quoted = false;
  for (std::size_t i = 0; i < line.size(); ++i) {
    const char c = line[i];
    if (quoted) {
      if (c != '"') fields.back() += c;
      else if (i + 1 < line.size() && line[i + 1] == '"') fields.back() += '"', ++i;
      else quoted = false;
    } else if (c == '"') {
      quoted = true;
    } else if (c == ',') {
      fields.emplace_back();
    } else if (c != '\r') {
      fields.back() += c;
    }
  }
  if (quoted) throw std::runtime_error("unterminated quote");
  return fields;
}

}  // namespace spine
