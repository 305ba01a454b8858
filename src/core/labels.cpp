// The label table: names and colours of vertebrae, discs, cord and canal, and the
// colour-table files that 3D Slicer and ITK-SNAP read.
#include "spine/labels.hpp"

#include <algorithm>
#include <cmath>
#include <sstream>

#include "spine/error.hpp"
#include "spine/io.hpp"

namespace spine {
namespace {

// Vertebrae in cranio-caudal order, transitional levels where they sit anatomically.
const std::vector<int>& vertebra_order() {
  static const std::vector<int> order = [] {
    std::vector<int> v;
    for (int i = 1; i <= 19; ++i) v.push_back(i);  // C1..T12
    v.push_back(label::kT13);
    for (int i = 20; i <= 25; ++i) v.push_back(i);  // L1..L6
    v.push_back(label::kSacrum);
    return v;
  }();
  return order;
}

std::string vertebra_name(int v) {
  if (v >= 1 && v <= 7) return "C" + std::to_string(v);
  if (v >= 8 && v <= 19) return "T" + std::to_string(v - 7);
  if (v >= 20 && v <= 25) return "L" + std::to_string(v - 19);
  if (v == label::kSacrum) return "S";
  if (v == label::kT13) return "T13";
  return {};
}

// Distinct, stable colours: hue walks around the wheel by the golden angle per level.
std::array<std::uint8_t, 3> hue_colour(double index, double saturation, double value) {
  const double h = std::fmod(index * 137.508, 360.0) / 60.0;
  const double c = value * saturation;
  const double x = c * (1 - std::abs(std::fmod(h, 2.0) - 1));
  double r = 0, g = 0, b = 0;
  switch (static_cast<int>(h)) {
    case 0: r = c; g = x; break;
    case 1: r = x; g = c; break;
    case 2: g = c; b = x; break;
    case 3: g = x; b = c; break;
    case 4: r = x; b = c; break;
    default: r = c; b = x; break;
  }
  const double m = value - c;
  auto to8 = [&](double v) { return static_cast<std::uint8_t>(std::lround((v + m) * 255)); };
  return {to8(r), to8(g), to8(b)};
}

}  // namespace

bool is_vertebra_label(int v) { return (v >= 1 && v <= 26) || v == label::kT13; }
bool is_disc_label(int v) { return is_vertebra_label(v - label::kDiscOffset) && v != 126; }

int craniocaudal_rank(int vertebra) {
  const auto& order = vertebra_order();
  const auto it = std::find(order.begin(), order.end(), vertebra);
  return it == order.end() ? -1 : static_cast<int>(it - order.begin());
}

std::optional<int> next_vertebra_below(int v) {
  if (v == label::kT12 || v == label::kT13) return label::kL1;
  if (v == label::kL5 || v == label::kL6) return label::kSacrum;
  if (v >= 1 && v < label::kL5) return v + 1;
  return std::nullopt;
}

int disc_label_below(int vertebra) { return label::kDiscOffset + vertebra; }

std::string label_name(int v) {
  if (v == label::kBackground) return "background";
  if (v == label::kSpinalCord) return "spinal cord";
  if (v == label::kSpinalCanal) return "spinal canal";
  if (is_vertebra_label(v)) return vertebra_name(v);
  if (is_disc_label(v)) {
    const int above = v - label::kDiscOffset;
    const auto below = next_vertebra_below(above);
    return vertebra_name(above) + "/" + (below ? vertebra_name(*below) : std::string("?"));
  }
  return "unknown " + std::to_string(v);
}

std::optional<int> label_from_name(const std::string& name) {
  for (const auto& info : all_labels()) {
    if (info.name == name) return info.value;
  }
  if (name == "S1" || name == "sacrum") return label::kSacrum;
  return std::nullopt;
}

LabelInfo label_info(int v) {
  LabelInfo info{v, label_name(v), {0, 0, 0}};
  if (v == label::kBackground) return info;
  if (is_vertebra_label(v)) {
    info.rgb = hue_colour(craniocaudal_rank(v), 0.75, 0.95);
  } else if (is_disc_label(v)) {
    info.rgb = hue_colour(craniocaudal_rank(v - label::kDiscOffset) + 0.5, 0.35, 1.0);
  } else if (v == label::kSpinalCord) {
    info.rgb = {255, 255, 128};
  } else if (v == label::kSpinalCanal) {
    info.rgb = {64, 160, 255};
  } else {
    info.rgb = {128, 128, 128};
  }
  return info;
}

std::vector<LabelInfo> all_labels() {
  std::vector<LabelInfo> out{label_info(label::kBackground)};
  for (int v : vertebra_order()) out.push_back(label_info(v));
  for (int v : vertebra_order()) {
    if (v != label::kSacrum) out.push_back(label_info(disc_label_below(v)));
  }
  out.push_back(label_info(label::kSpinalCord));
  out.push_back(label_info(label::kSpinalCanal));
  return out;
}

void write_color_tables(const std::vector<int>& values, const std::filesystem::path& stem) {
  std::vector<int> sorted = values;
  sorted.push_back(label::kBackground);
  std::sort(sorted.begin(), sorted.end());
  sorted.erase(std::unique(sorted.begin(), sorted.end()), sorted.end());

  std::ostringstream slicer;
  slicer << "# 3D Slicer colour table written by spine\n# " << sorted.size() << " values\n";
  std::ostringstream snap;
  snap << "################################################\n"
       << "# ITK-SnAP Label Description File (written by spine)\n"
       << "# IDX   -R-  -G-  -B-  -A--  VIS MSH  LABEL\n"
       << "################################################\n";
  for (int v : sorted) {
    const LabelInfo info = label_info(v);
    std::string slicer_name = info.name;
    std::replace(slicer_name.begin(), slicer_name.end(), ' ', '_');  // Slicer splits on spaces
    const int alpha = v == label::kBackground ? 0 : 255;
    slicer << v << ' ' << slicer_name << ' ' << int(info.rgb[0]) << ' ' << int(info.rgb[1])
           << ' ' << int(info.rgb[2]) << ' ' << alpha << '\n';
    snap << "  " << v << "  " << int(info.rgb[0]) << ' ' << int(info.rgb[1]) << ' '
         << int(info.rgb[2]) << "  " << (v == label::kBackground ? "0" : "1") << "  "
         << (v == label::kBackground ? "0 0" : "1 1") << "  \"" << info.name << "\"\n";
  }
  write_text_file(stem.string() + ".ctbl", slicer.str());
  write_text_file(stem.string() + ".itksnap.txt", snap.str());
}

}  // namespace spine
