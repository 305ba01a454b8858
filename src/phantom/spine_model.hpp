// Internal: the geometric spine model shared by the volume and radiograph phantoms.
#pragma once
#include <array>
#include <random>
#include <string>
#include <vector>

namespace spine::phantom {

using Vec3 = std::array<double, 3>;

struct VertebraShape {
  int label = 0;          // VerSe number
  std::string name;
  Vec3 centre{};          // body centre, LPS mm
  Vec3 lateral{}, posterior{}, axial{};  // orthonormal frame: toward patient left, back, head
  double body_width = 0;   // lateral, mm
  double body_depth = 0;   // antero-posterior, mm
  double body_height = 0;  // cranio-caudal, mm
  double disc_height = 0;  // disc below this vertebra, mm
  double canal_half_width = 0, canal_half_depth = 0;
  double coronal_tilt_deg = 0;
  // A fracture of the upper endplate: "wedge" (anterior height lost, none at the
  // posterior wall), "biconcave" (middle lost, none at the rim) or "crush" (all lost
  // alike), by `fracture_loss` (0..1) of body_height where the loss is largest.
  std::string fracture;
  double fracture_loss = 0;
};

// Tilt knots along the normalised segment length s (0 top .. 1 bottom): the coronal tilt
// is interpolated between knots with half-cosine ramps, so a curve between two knots of
// tilt +a and -b has a Cobb angle of exactly a + b.
struct TiltKnot {
  double s = 0;
  double tilt_deg = 0;
};

// Builds vertebrae first..last (VerSe labels 1..24) with per-level anatomy from real CT
// medians, a sagittal profile from the same data, coronal tilts from the knots, and a
// small per-seed size variation.
std::vector<VertebraShape> build_spine(int first_label, int last_label, const std::vector<TiltKnot>& knots,
                                       std::mt19937_64& rng);

double dot(const Vec3& a, const Vec3& b);

}  // namespace spine::phantom
