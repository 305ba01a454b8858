// A plain float tensor (row-major, last axis fastest) used at the library boundary so
// public headers never expose torch types.
#pragma once
#include <cstdint>
#include <numeric>
#include <vector>

namespace spine {

struct Tensor {
  std::vector<std::int64_t> shape;
  std::vector<float> data;

  Tensor() = default;
  explicit Tensor(std::vector<std::int64_t> s, float fill = 0.f)
      : shape(std::move(s)), data(static_cast<std::size_t>(element_count(shape)), fill) {}
  static std::int64_t element_count(const std::vector<std::int64_t>& s) {
    return std::accumulate(s.begin(), s.end(), std::int64_t{1}, std::multiplies<>());
  }
  std::int64_t numel() const { return element_count(shape); }
};

}  // namespace spine
