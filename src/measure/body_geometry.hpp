// Internal: the geometry of one structure of a label map in millimetres: a cropped
// binary mask sampled with trilinear interpolation (so boundaries are found between
// voxel centres, not on them), its distance transform, and the searches the measurements
// are built from (where a line leaves the mask, planes fitted to its surfaces).
#pragma once
#include <array>
#include <cstdint>
#include <map>
#include <optional>
#include <vector>

#include "spine/image.hpp"
#include "spine/measure.hpp"

namespace spine::measure {

Vec3d add(const Vec3d& a, const Vec3d& b);
Vec3d sub(const Vec3d& a, const Vec3d& b);
Vec3d scale(const Vec3d& a, double s);
double dot(const Vec3d& a, const Vec3d& b);
Vec3d cross(const Vec3d& a, const Vec3d& b);
double norm(const Vec3d& a);
Vec3d normalised(const Vec3d& a);
// `v` without its component along the unit vector `axis`, normalised.
Vec3d orthogonalised(const Vec3d& v, const Vec3d& axis);

// Where each label value lies: its voxel count and bounding box (one pass over the map).
struct LabelBox {
  std::size_t count = 0;
  std::array<std::size_t, 3> lo{0, 0, 0}, hi{0, 0, 0};
  std::array<double, 3> index_sum{0, 0, 0};  // for the centroid
};
// The label's centroid (LPS mm) from its box's index sums.
Vec3d box_centroid(const LabelBox& box, const Geometry& g);
std::map<int, LabelBox> label_boxes(const LabelImage& labels);
// True when the box reaches the edge of the grid (a structure cut by the field of view).
bool touches_border(const LabelBox& box, const Geometry& g);

// A binary mask cropped to the bounding box of its voxels (plus a margin).
class Mask {
 public:
  // The voxels of `labels` equal to any of `values`, searched within their boxes;
  // empty() when there are none.
  Mask(const LabelImage& labels, const std::vector<int>& values, const std::map<int, LabelBox>& boxes, int margin = 3);
  // The voxels of `mask` for which `keep(lps point)` holds.
  template <class Keep>
  Mask filtered(Keep keep) const {
    Mask out = *this;
    out.count_ = 0;
    for (std::size_t i = 0; i < out.bits_.size(); ++i) {
      if (!out.bits_[i]) continue;
      if (!keep(point_of(i))) out.bits_[i] = 0;
      else ++out.count_;
    }
    return out;
  }
  bool empty() const { return count_ == 0; }
  std::size_t count() const { return count_; }
  double voxel_volume() const;
  const Geometry& geometry() const { return geometry_; }
  // Trilinear value of the 0/1 mask at an LPS point (0 outside the crop).
  double sample(const Vec3d& p) const;
  bool inside(const Vec3d& p) const { return sample(p) >= 0.5; }
  Vec3d centroid() const;
  Vec3d point_of(std::size_t index) const;
  // Each voxel's distance (mm) to the nearest voxel outside the mask (0 outside).
  std::vector<float> distance_inside() const;
  // The voxel with the largest distance_inside (nearest the centroid among ties); with
  // `front`, only among the voxels in the front 40 % of the mask's extent along
  // -front (the unit vector pointing backwards).
  Vec3d deepest_point(const std::optional<Vec3d>& front = std::nullopt) const;
  const std::vector<std::uint8_t>& bits() const { return bits_; }
  // True when a voxel of the mask lies on the edge of the full grid (cut by the field of view).
  bool touches_grid_edge() const;
  // Index of each crop voxel in the full label grid.
  std::size_t full_index(std::size_t crop_index) const;

 private:
  Geometry geometry_;           // of the crop
  std::array<std::size_t, 3> lo_{0, 0, 0};
  std::array<std::size_t, 3> full_size_{0, 0, 0};
  std::vector<std::uint8_t> bits_;
  std::size_t count_ = 0;
};

// Distance from `from` along the unit `dir` to where the mask falls below 0.5, found in
// 0.2 mm steps and interpolated; nullopt if `from` is outside or the mask never ends
// within `max_mm`.
std::optional<double> exit_distance(const Mask& m, const Vec3d& from, const Vec3d& dir, double max_mm = 80);

// A plane through surface points: the points, its centre and unit normal (oriented along
// `outward`), and the RMS distance of the points from it.
struct PlaneFit {
  Vec3d centre{0, 0, 0}, normal{0, 0, 1};
  int points = 0;
  double rms = 0;
};
std::optional<PlaneFit> fit_plane(const std::vector<Vec3d>& points, const Vec3d& outward);

// The frame and extents of a body-like structure (vertebral body or disc): the upper and
// lower surfaces found along `axial` from its central plane on a 1 mm grid of columns,
// planes fitted to them, and the axial axis re-estimated as their mean normal (twice).
struct BodyFrame {
  Vec3d centre{0, 0, 0}, axial{0, 0, 1}, posterior{0, 1, 0}, lateral{1, 0, 0};
  double anterior_mm = 0, posterior_mm = 0;  // extent from the centre along -posterior and +posterior
  double half_width_mm = 0;
  std::optional<PlaneFit> upper, lower;
};
std::optional<BodyFrame> body_frame(const Mask& body, Vec3d axial_guess);

// Heights along the frame's axial axis in its mid-sagittal plane at the standard
// fractions of the depth: the trimmed mean over a patch of lines around each position.
Heights heights_in_frame(const Mask& body, const BodyFrame& f);

// Signed angles of a unit normal in the patient's sagittal (toward posterior) and coronal
// (toward left) planes, from patient superior (LPS +z).
double sagittal_tilt_deg(const Vec3d& n);
double coronal_tilt_deg(const Vec3d& n);

}  // namespace spine::measure
