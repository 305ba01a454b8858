// Synthetic spine phantoms with known ground truth: 3D CT-like (HU) and MRI-like volumes
// with label maps, and 2D frontal radiographs with the 68 AASCE landmarks and exact Cobb
// angles. Anatomy (vertebra spacing, size, sagittal curvature) follows medians derived from
// real CT keypoints (scripts/derive_anatomy_stats.py). Deterministic per seed.
#pragma once
#include <cstdint>
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
  std::uint64_t seed = 1;

  void validate() const;
  nlohmann::json to_json() const;
};

struct PhantomVertebraTruth {
  int label = 0;
  std::string name;
  std::array<double, 3> centroid_lps_mm{0, 0, 0};
};

struct PhantomVolume {
  FloatImage image;    // HU for CT, arbitrary units for MR
  LabelImage labels;   // VerSe vertebrae (body + posterior elements), discs 100+, cord 60, canal 61
  std::vector<PhantomVertebraTruth> vertebrae;
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
