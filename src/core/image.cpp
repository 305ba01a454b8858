// Geometry helpers of the library's image type.
#include "spine/image.hpp"

#include <algorithm>
#include <cmath>

namespace spine {

std::array<double, 3> Geometry::index_to_lps(double i, double j, double k) const {
  const double v[3] = {i * spacing[0], j * spacing[1], k * spacing[2]};
  std::array<double, 3> p{};
  for (int r = 0; r < 3; ++r) {
    p[r] = origin[r] + direction[r * 3 + 0] * v[0] + direction[r * 3 + 1] * v[1] +
           direction[r * 3 + 2] * v[2];
  }
  return p;
}

std::array<double, 3> Geometry::lps_to_index(const std::array<double, 3>& p) const {
  // The direction matrix is orthonormal, so its inverse is its transpose.
  const double d[3] = {p[0] - origin[0], p[1] - origin[1], p[2] - origin[2]};
  std::array<double, 3> idx{};
  for (int c = 0; c < 3; ++c) {
    const double proj = direction[0 * 3 + c] * d[0] + direction[1 * 3 + c] * d[1] +
                        direction[2 * 3 + c] * d[2];
    idx[c] = proj / spacing[c];
  }
  return idx;
}

bool Geometry::same_grid(const Geometry& o, double tol) const {
  if (size != o.size || dimension != o.dimension) return false;
  for (int i = 0; i < 3; ++i) {
    if (std::abs(spacing[i] - o.spacing[i]) > tol || std::abs(origin[i] - o.origin[i]) > tol)
      return false;
  }
  for (int i = 0; i < 9; ++i) {
    if (std::abs(direction[i] - o.direction[i]) > tol) return false;
  }
  return true;
}

Geometry make_geometry(std::size_t nx, std::size_t ny, std::size_t nz,
                       std::array<double, 3> spacing) {
  Geometry g;
  g.dimension = 3;
  g.size = {nx, ny, nz};
  g.spacing = spacing;
  return g;
}

Geometry make_geometry_2d(std::size_t nx, std::size_t ny, std::array<double, 2> spacing) {
  Geometry g;
  g.dimension = 2;
  g.size = {nx, ny, 1};
  g.spacing = {spacing[0], spacing[1], 1.0};
  return g;
}

IntensityRange intensity_range(const FloatImage& image) {
  if (image.voxels.empty()) return {};
  const auto [lo, hi] = std::minmax_element(image.voxels.begin(), image.voxels.end());
  return {*lo, *hi};
}

}  // namespace spine
