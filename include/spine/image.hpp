// The library's image type: voxels in x-fastest order plus ITK-style physical geometry
// (LPS millimetres). Kept free of ITK and torch so that most code compiles quickly.
#pragma once
#include <array>
#include <cstddef>
#include <cstdint>
#include <vector>

namespace spine {

// Geometry of a 2D or 3D grid. A 2D image has size[2] == 1 and dimension == 2.
// Physical point of index (i,j,k): origin + direction * diag(spacing) * (i,j,k), in LPS mm.
struct Geometry {
  int dimension = 3;
  std::array<std::size_t, 3> size{0, 0, 0};
  std::array<double, 3> spacing{1, 1, 1};      // mm
  std::array<double, 3> origin{0, 0, 0};       // mm, LPS
  std::array<double, 9> direction{1, 0, 0, 0, 1, 0, 0, 0, 1};  // row-major, columns = axes

  std::size_t voxel_count() const { return size[0] * size[1] * size[2]; }
  std::array<double, 3> index_to_lps(double i, double j, double k) const;
  std::array<double, 3> lps_to_index(const std::array<double, 3>& p) const;
  bool same_grid(const Geometry& other, double tolerance = 1e-6) const;
};

template <class T>
struct Image {
  Geometry geometry;
  std::vector<T> voxels;

  Image() = default;
  explicit Image(const Geometry& g, T fill = T{}) : geometry(g), voxels(g.voxel_count(), fill) {}

  std::size_t nx() const { return geometry.size[0]; }
  std::size_t ny() const { return geometry.size[1]; }
  std::size_t nz() const { return geometry.size[2]; }
  std::size_t offset(std::size_t x, std::size_t y, std::size_t z) const {
    return (z * geometry.size[1] + y) * geometry.size[0] + x;
  }
  T& at(std::size_t x, std::size_t y, std::size_t z = 0) { return voxels[offset(x, y, z)]; }
  const T& at(std::size_t x, std::size_t y, std::size_t z = 0) const {
    return voxels[offset(x, y, z)];
  }
};

using FloatImage = Image<float>;
// Label maps: VerSe vertebra numbers, discs 100+, see labels.hpp.
using LabelImage = Image<std::int16_t>;

Geometry make_geometry(std::size_t nx, std::size_t ny, std::size_t nz,
                       std::array<double, 3> spacing = {1, 1, 1});
Geometry make_geometry_2d(std::size_t nx, std::size_t ny, std::array<double, 2> spacing = {1, 1});

struct IntensityRange {
  float min = 0;
  float max = 0;
};
IntensityRange intensity_range(const FloatImage& image);

}  // namespace spine
