// Synthetic spine phantoms with known ground truth: 3D CT-like (HU) and MRI-like volumes
// with label maps, and 2D frontal radiographs with the 68 AASCE landmarks and exact Cobb
// angles. Anatomy (vertebra spacing, size, sagittal curvature) follows medians derived from
// real CT keypoints (scripts/derive_anatomy_stats.py). Deterministic per seed.
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "spine/cobb.hpp"
#include "spine/image.hpp"

namespace spine {

struct PhantomConfig {
  std::string modality = "ct";      // "ct", "mr-t1", "mr-t2"
  std::string first_vertebra = "T11";
  std::string last_vertebra = "L5";
  double spacing_mm = 1.0;          // isotropic voxel size
  double scoliosis_deg = 0.0;       // coronal Cobb angle of a single smooth curve
  double scoliosis_apex = 0.5;      // apex position along the segment, 0 (top) .. 1 (bottom)
  double noise = 1.0;               // noise multiplier (CT: 20 HU sd; MR: 3 % of tissue)
  bool bias_field = false;          // smooth multiplicative field (MR)
  double margin_mm = 35.0;          // tissue around the spine in each direction
  // Ribs, lungs, liver, kidneys, and the sacrum (label 26) with iliac wings when the
  // segment ends at L5: the neighbours and level landmarks real CT has.
  bool torso = false;
  // Vertebral fractures, "NAME:TYPE:LOSS" (TYPE wedge, biconcave or crush; LOSS the
  // fraction of body height lost where it is largest), e.g. "L1:wedge:0.3".
  std::vector<std::string> fractures;
  std::optional<double> marrow_hu;  // CT trabecular bone value (default 230 HU)
  std::uint64_t seed = 1;

  void validate() const;
  nlohmann::json to_json() const;
};

// What spine-measure should find, from the phantom's exact shapes (mm, degrees, HU),
// defined as spine-measure defines them (measure.hpp): heights along the body's axis in
// its mid-sagittal plane at the standard fractions of its depth, from the anterior wall
// to the front of the canal.
struct PhantomVertebraTruth {
  int label = 0;
  std::string name;
  std::array<double, 3> centroid_lps_mm{0, 0, 0};
  std::array<double, 3> axial{0, 0, 1};       // the body's axis (superior)
  double anterior_height = 0, middle_height = 0, posterior_height = 0;
  std::string fracture = "none";
  double fracture_loss = 0;
  int genant_grade = 0;                        // from the heights above, as genant_grade() grades
  double trabecular_hu = 0;                    // CT marrow value (0 for MR)
  double canal_area_mm2 = 0, canal_ap_mm = 0;  // the canal's section (an ellipse)
};

struct PhantomDiscTruth {
  int label = 0;
  std::string name;
  double anterior_height = 0, middle_height = 0, posterior_height = 0;
};

struct PhantomVolume {
  FloatImage image;    // HU for CT, arbitrary units for MR
  LabelImage labels;   // VerSe vertebrae (body + posterior elements), discs 100+, cord 60, canal 61
  std::vector<PhantomVertebraTruth> vertebrae;
  std::vector<PhantomDiscTruth> discs;
  double lordosis_deg = 0;   // L1 upper to L5 lower endplate, where both are in the phantom
  double kyphosis_deg = 0;   // T4 upper to T12 lower endplate (positive kyphotic), where both are
  double coronal_cobb_deg = 0;  // largest coronal angle between two endplates
};

PhantomVolume make_phantom_volume(const PhantomConfig& config);

struct RadiographConfig {
  double scoliosis_deg = 25.0;      // target major Cobb angle
  double scoliosis_apex = 0.45;     // along T1..L5
  double second_curve_deg = 0.0;    // optional compensatory curve (S shape) below the first
  double pixel_mm = 0.5;
  double noise = 1.0;
  std::uint64_t seed = 1;

  void validate() const;
  nlohmann::json to_json() const;
};

struct PhantomRadiograph {
  FloatImage image;                 // 2D, 0..255
  std::vector<Point2> landmarks;    // 68, AASCE order, pixels
  CobbAngles angles;                // from the exact landmarks
};

PhantomRadiograph make_phantom_radiograph(const RadiographConfig& config);

}  // namespace spine
