// Cobb angles from the 68 AASCE vertebra corner landmarks (17 vertebrae T1..L5, corners
// top-left, top-right, bottom-left, bottom-right), by the rule the AASCE reference angles
// use (see docs/cobb.md), plus the major curve's end vertebrae, apex and convex side.
#pragma once
#include <array>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace spine {

struct Point2 {
  double x = 0, y = 0;  // pixels, x to the image right, y down
};

// Angle between two directions in degrees, 0..180 (0 when either is zero).
double angle_between(const Point2& a, const Point2& b);

inline constexpr int kCobbVertebrae = 17;         // T1..L5
inline constexpr int kCobbLandmarks = 4 * kCobbVertebrae;

struct MajorCurve {
  double angle_deg = 0;
  int upper_end = 0;     // vertebra index 0 (T1) .. 16 (L5)
  int lower_end = 0;
  int apex = 0;
  std::string convex_side_image;  // "image-left" / "image-right" / "none"
  // The patient's side, assuming the standard display of a frontal radiograph (the
  // patient's right on the image left): "left" / "right" / "none".
  std::string convex_side;
};

struct CobbAngles {
  // The AASCE triple, in the column order of the reference angles.csv: the first is the
  // largest angle anywhere (the major curve), the second the curve above it, the third
  // the curve below it. The CSV calls them PT, MT, TL.
  std::array<double, 3> aasce_deg{0, 0, 0};
  bool s_shaped = false;
  MajorCurve major;
  std::vector<double> tilt_deg;  // per vertebra, signed, from the image x axis
};

// Throws an input error when fewer or more than 68 points are given.
CobbAngles compute_cobb_angles(const std::vector<Point2>& landmarks, double image_height);

// Of vertebra `vertebra` (0 = T1) of 68 landmarks in AASCE order: its tilt vector as the
// AASCE rule reads it, the midpoint of its right side ((TR + BR) / 2) minus that of its
// left side ((TL + BL) / 2); that vector's direction in degrees (0 = level, positive
// turning clockwise on the image, y down); and its centre, the mean of its four corners.
Point2 vertebra_tilt_vector(const std::vector<Point2>& landmarks, int vertebra);
double vertebra_tilt_deg(const std::vector<Point2>& landmarks, int vertebra);
Point2 vertebra_centre(const std::vector<Point2>& landmarks, int vertebra);

// {"angle_deg", "upper_end", "lower_end", "apex", "convex_side", "convex_side_image"}.
nlohmann::json major_curve_json(const MajorCurve& major);

// "T1".."L5" for vertebra index 0..16.
std::string cobb_vertebra_name(int index);

struct CobbGrading {
  double mild_deg = 10, moderate_deg = 20, severe_deg = 40;
};
// "spinal curve" (< mild), "mild", "moderate", "severe".
std::string grade_curve(double major_deg, const CobbGrading& grading = {});

// AASCE symmetric mean absolute percentage error of one image's triple, in percent.
double smape_percent(const std::array<double, 3>& predicted, const std::array<double, 3>& reference);

}  // namespace spine
