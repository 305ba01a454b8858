// Vertebra instances from the segmentation's vertebra class (internal to spine-seg):
// connected components, the spinal column they lie along, and the rules that turn
// components into one instance per vertebra.
#pragma once
#include <array>
#include <cstdint>
#include <functional>
#include <string>
#include <utility>
#include <vector>

namespace spine {

// 6-connected components of `mask` (values != 0) over a box nx*ny*nz; returns component
// id per voxel (0 = none) and the component count.
std::vector<int> connected_components(const std::vector<std::uint8_t>& mask, std::int64_t nx, std::int64_t ny,
                                      std::int64_t nz, int& count);

// Voxel lists of the 6-connected components of `mask` (values != 0).
std::vector<std::vector<std::size_t>> component_members(const std::vector<std::uint8_t>& mask, std::int64_t nx,
                                                        std::int64_t ny, std::int64_t nz);

// The spinal column as the median lateral (z) and antero-posterior (y) position of
// vertebra voxels per head-foot position (x), over a window of +-half_window_mm.
class ColumnModel {
 public:
  ColumnModel(const std::vector<std::array<double, 3>>& points, double spacing_mm, double half_window_mm);
  // Within lateral_mm and ap_mm of the column at its own head-foot position.
  bool near(const std::array<double, 3>& p, double lateral_mm, double ap_mm) const;
  // The lowest and highest lateral position (in points' units) of the column over the
  // rows with points nearby; {1, 0} (empty) without points.
  std::pair<double, double> lateral_extent() const { return lateral_extent_; }

 private:
  static double median(std::vector<double>& v);
  double spacing_ = 1;
  double x0_ = 0;
  std::vector<double> median_y_, median_z_;
  std::pair<double, double> lateral_extent_{1, 0};
};

struct Instance {
  std::vector<std::size_t> voxels;  // region offsets
  double cx = 0, cy = 0, cz = 0;    // centroid in region voxels
  std::int64_t x_min = 0, x_max = 0;
  bool touches_border = false;
};

Instance make_instance(std::vector<std::size_t> voxels, std::int64_t nx, std::int64_t ny, std::int64_t nz);

// Merges instances whose centroids lie within `max_centroid_mm` head to foot (x) and
// whose union spans at most `max_extent_mm`, until none is left to merge.
void merge_side_by_side(std::vector<Instance>& instances, double spacing_mm, double max_centroid_mm,
                        double max_extent_mm, std::int64_t nx, std::int64_t ny, std::int64_t nz);

struct InstanceRules {
  double spacing_mm = 1;            // isotropic voxel size of the region
  bool bodies = true;               // vertebral bodies (MR model) or whole vertebrae (CT model)
  double min_vertebra_ml = 1.0;
  double min_fraction_of_median = 0.25;
  std::size_t max_count = 26;       // a spine's vertebrae and sacrum
  int max_erosion_voxels = 6;       // split_at_thin_joins: bridges up to about twice this thick are cut
  double min_disc_ml = 0.3;         // split_at_discs: smaller disc pieces separate nothing
};

// A component longer than a vertebra cut where it is thin: eroded (6-neighbour) by the
// smallest radius, 2..max_radius voxels, that leaves at least two cores, each at least a
// quarter of the largest and none longer than `max_extent_vox` head to foot once grown
// back by the radius (else the radius leaving the most such cores); each core then takes
// back the component's voxels nearest to it (breadth-first growth inside the component).
// Empty when no radius leaves two cores. A part may still be too long: the caller splits
// it by the level votes.
std::vector<std::vector<std::size_t>> split_at_thin_joins(const std::vector<std::size_t>& voxels, std::int64_t nx,
                                                          std::int64_t ny, std::int64_t nz, int max_radius,
                                                          double max_extent_vox);

// A disc component's columns: its centroid head to foot (x), its columns' mean front to
// back (y) and, per column (y, z) it covers (keyed z * ny + y, sorted), its first and last x.
struct DiscColumns {
  double x = 0, y = 0;
  std::vector<std::pair<std::int64_t, std::pair<std::int64_t, std::int64_t>>> columns;
};
std::vector<DiscColumns> disc_columns(const std::vector<std::vector<std::size_t>>& discs, std::int64_t nx,
                                      std::int64_t ny);

// Voxels that hold vertebra on both sides of a disc, cut at the disc: the voxels within
// `seed_depth` voxels above a disc's upper surface and below its lower surface, in the
// disc's own columns, seed two vertebrae (the seeds between two such discs seed one
// vertebra); the seeds grow first through the discs' columns (the bodies), then into the
// rest (the arches), breadth first inside the voxels. Disc pieces in columns of their own
// whose centres lie within `same_disc_vox` head to foot are one disc. A disc counts when
// both of its sides hold at least `min_seed_voxels` and its columns' centre lies at most
// `max_behind_vox` behind (y is posterior) the voxels' centre of mass: further back, between
// bone above and below, is a facet joint the model took for disc. Empty when no disc
// counts. This
// separates what the other rules leave joined because it is not longer than a vertebra:
// a partly visible neighbour at the field of view's edge, or the first sacral segment
// below L5, joined through the facet joints.
std::vector<std::vector<std::size_t>> split_at_discs(const std::vector<std::size_t>& voxels,
                                                     const std::vector<DiscColumns>& discs, std::int64_t nx,
                                                     std::int64_t ny, std::int64_t nz, int seed_depth,
                                                     std::size_t min_seed_voxels, double same_disc_vox,
                                                     double max_behind_vox);

// Drops the last of `instances` (sorted head to foot; x toward the feet, y toward the
// back) while it lies in front of the line through the three before it, extended down.
// Below the lordosis's apex the column curves backward (L5, then the sacrum, which turns
// further back), so bone of the spine below the chain's end lies on that line or behind
// it. What the MR model takes for vertebra in front of it is not: on sagittal lumbar
// slices, bowel and pelvic soft tissue below and in front of the sacrum, which the
// naming then took for the sacrum and anchored L5 on. Returns how many were dropped.
std::size_t drop_candidates_in_front_of_column_end(std::vector<Instance>& instances);

// One instance per vertebra from the vertebra mask of a region [nz][ny][nx], sorted head
// to foot. `disc_mask` (the disc class over the same region; may be empty) separates
// vertebrae joined across a disc (split_at_discs). `level_of` gives a voxel's most likely
// level class (splitting too-long components). Flags what the caller must report
// (candidates beyond a spine's count).
std::vector<Instance> vertebra_instances(const std::vector<std::uint8_t>& vmask,
                                         const std::vector<std::uint8_t>& disc_mask, std::int64_t nx, std::int64_t ny,
                                         std::int64_t nz, int n_levels, const std::function<int(std::size_t)>& level_of,
                                         const InstanceRules& rules, std::vector<std::string>& flags);

}  // namespace spine
