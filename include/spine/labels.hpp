// Label conventions in one place: VerSe vertebra numbers, discs as 100 + the vertebra
// above, spinal cord and canal, with names and colours; colour tables for Slicer/ITK-SNAP.
#pragma once
#include <array>
#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

namespace spine {

// VerSe numbering: 1-7 C1-C7, 8-19 T1-T12, 20-24 L1-L5, 25 L6, 26 sacrum, 28 T13.
// Discs: 100 + the VerSe number of the vertebra above (L1/L2 = 120, L5/S1 = 124).
// Spinal cord 60 and spinal canal 61, as in the TPTBox sub-region convention.
namespace label {
inline constexpr int kBackground = 0;
inline constexpr int kC1 = 1, kC7 = 7, kT1 = 8, kT10 = 17, kT11 = 18, kT12 = 19, kL1 = 20, kL2 = 21, kL3 = 22, kL4 = 23, kL5 = 24, kL6 = 25;
inline constexpr int kSacrum = 26, kT13 = 28;
inline constexpr int kSpinalCord = 60, kSpinalCanal = 61;
inline constexpr int kDiscOffset = 100;
}  // namespace label

struct LabelInfo {
  int value = 0;
  std::string name;  // "L3", "L3/L4", "spinal canal"
  std::array<std::uint8_t, 3> rgb{0, 0, 0};
};

bool is_vertebra_label(int value);
bool is_disc_label(int value);
// Vertebra names in cranio-caudal order, with their labels: C1..C7, T1..T12, (T13), L1..L5, (L6), S.
std::string label_name(int value);          // "unknown 77" for unknown values
std::optional<int> label_from_name(const std::string& name);  // "L3" -> 22, "L3/L4" -> 122
int disc_label_below(int vertebra);         // 22 -> 122
// The next vertebra below in the normal sequence (T12 -> L1, L5 -> S); nullopt after sacrum.
std::optional<int> next_vertebra_below(int vertebra);
// Position in the cranio-caudal order (C1 = 0 ... sacrum), transitional levels in place.
int craniocaudal_rank(int vertebra);
LabelInfo label_info(int value);
// Every known label, background first.
std::vector<LabelInfo> all_labels();

// Writes `<stem>.ctbl` (3D Slicer colour table) and `<stem>.itksnap.txt` (ITK-SNAP label
// description) for the given label values (background always included).
void write_color_tables(const std::vector<int>& values, const std::filesystem::path& stem);

}  // namespace spine
