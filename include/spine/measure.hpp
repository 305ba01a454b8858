// Clinical measurements from a spine label map (VerSe numbers, discs 100+, canal 61):
// vertebral body heights and Genant fracture grades, body volume, trabecular attenuation
// on CT, disc heights, sagittal and coronal alignment from the endplates, spinal canal
// size. Every value is in mm, mm^2, mm^3, degrees or HU, measured in the structure's own
// frame (perpendicular to its endplates, in its mid-sagittal plane), never along the
// image axes, so a resampled or reoriented study gives the same numbers.
#pragma once
#include <array>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "spine/image.hpp"

namespace spine {

using Vec3d = std::array<double, 3>;

// Where heights are taken along the body's antero-posterior depth (0 = anterior edge,
// 1 = posterior wall), as fractions: clear of the rounded rims that a voxelised or real
// body has at its very corners.
inline constexpr double kAnteriorFraction = 0.1, kMiddleFraction = 0.5, kPosteriorFraction = 0.9;

// Genant's semi-quantitative grade from height ratios: the largest reduction of the
// anterior or middle height against the posterior one, or of the posterior height
// against the neighbours' posterior heights.
struct GenantGrade {
  int grade = 0;            // 0 normal (< 20 %), 1 mild (20-25 %), 2 moderate (25-40 %), 3 severe (> 40 %)
  std::string type;         // "none", "wedge", "biconcave", "crush"
  double reduction = 0;     // the largest height reduction, 0..1
};
// `expected_posterior` is the mean posterior height of the neighbours (0 when none).
GenantGrade genant_grade(double anterior, double middle, double posterior, double expected_posterior);

struct Endplate {
  Vec3d centre{0, 0, 0};    // LPS mm
  Vec3d normal{0, 0, 1};    // unit, pointing away from the body (up for the upper endplate)
  double sagittal_deg = 0;  // tilt of the normal from patient-superior toward posterior, in the sagittal plane
  double coronal_deg = 0;   // tilt toward patient left, in the coronal plane
  int points = 0;           // surface points the plane was fitted to
  double rms_mm = 0;        // their distance from the plane
};

// Heights at the anterior, middle and posterior fractions, and the six points they join.
struct Heights {
  double anterior = 0, middle = 0, posterior = 0;   // mm
  std::array<Vec3d, 6> points{};                    // top then bottom, anterior -> posterior (LPS mm)
  bool valid = false;
};

struct VertebraMeasurement {
  int label = 0;
  std::string name;
  double volume_mm3 = 0;          // the whole label
  double body_volume_mm3 = 0;     // the body alone (in front of the posterior wall)
  bool posterior_elements = false;  // the label had bone behind the posterior wall
  Vec3d centre{0, 0, 0};          // body centre (LPS mm)
  Vec3d axial{0, 0, 1}, posterior{0, 1, 0};  // the body's frame
  double depth_mm = 0, width_mm = 0;          // antero-posterior and lateral extent of the body
  Endplate upper, lower;
  Heights heights;
  GenantGrade genant;
  double genant_confidence = 0;   // 0..1
  // CT: trabecular attenuation in the eroded core of the body.
  std::optional<double> trabecular_hu_median, trabecular_hu_iqr;
  int trabecular_voxels = 0;
  double core_erosion_mm = 0;
  std::optional<double> canal_ap_mm, canal_area_mm2;  // where the map has a canal (61)
  std::vector<std::string> flags;  // why a value cannot be trusted
  std::vector<std::string> notes;  // what is incomplete without spoiling the heights
};

struct DiscMeasurement {
  int label = 0;                  // 100 + the vertebra above
  std::string name;
  std::string method;             // "disc label" or "endplate gap"
  Heights heights;
  double height_index = 0;        // middle disc height / mean middle height of the adjacent bodies
  std::optional<double> signal_ratio;  // MRI: median disc intensity / median of the adjacent bodies
  double volume_mm3 = 0;
  double wedge_deg = 0;           // angle between the adjacent endplates (positive: opens anteriorly)
  std::vector<std::string> flags;
};

struct AngleMeasurement {
  std::string name;               // "lumbar lordosis", "thoracic kyphosis", "coronal Cobb", "segmental L1-L2"
  double degrees = 0;
  std::string from, to;           // endplates it is measured between, e.g. "L1 upper", "S1 upper"
  std::string method;
};

struct MeasureOptions {
  bool ct = true;                 // trabecular HU only on CT
  bool mri = false;               // disc signal ratio on MRI
  int screen_level = 20;          // L1 (fallback T12, L2)
  double osteoporosis_hu = 110;   // <= this suggests osteoporosis (Pickhardt et al. 2013)
  double normal_hu = 160;         // > this is normal
  int threads = 0;                // vertebrae measured in parallel (0: all cores)
  // The label map is the CT segmentation model's (spine-seg's), not a person's. On real CT
  // a body's borders can lie where the body is not (part of one body given to its
  // neighbour), which reads as lost height: a grade it gives is flagged, so it is never
  // reported as reliable (docs/measure.md).
  bool outlines_from_ct_model = false;
};

struct SpineMeasurements {
  std::vector<VertebraMeasurement> vertebrae;   // cranio-caudal
  std::vector<DiscMeasurement> discs;
  std::vector<AngleMeasurement> angles;
  nlohmann::json bone_screen;                   // level, HU, category, thresholds, warning
  std::vector<std::string> flags;
};

// `image` (CT in HU, or MRI) must be on the label map's grid; it may be null (no HU,
// no signal ratio).
SpineMeasurements measure_spine(const LabelImage& labels, const FloatImage* image, const MeasureOptions& options);

// Every value with its unit and method, per structure.
nlohmann::json measurements_json(const SpineMeasurements& m);

// The same values in long form (one row per structure and measure), for the cohort table.
struct MeasurementRow {
  std::string structure, measure;
  double value = 0;
  std::string unit;
};
std::vector<MeasurementRow> measurement_rows(const SpineMeasurements& m);

}  // namespace spine
