// The allocation behind src/core/huge_pages.cpp, shared with the LibTorch plug-in's tensor
// allocator (src/model/torch_plugin.cpp): buffers of at least kHugeThreshold bytes are
// handed out 2 MiB-aligned with madvise(MADV_HUGEPAGE), smaller ones as malloc would.
// Everything is released by free(). See huge_pages.cpp for why.
#pragma once
#include <malloc.h>
#include <sys/mman.h>

#include <cstdlib>

namespace spine::huge {

constexpr std::size_t kHugePage = std::size_t{2} << 20;
// Below this a buffer would waste more than a quarter of its last huge page on average;
// volumes, label maps and a U-Net's activations are larger.
constexpr std::size_t kHugeThreshold = std::size_t{8} << 20;

// SPINE_HUGE_PAGES=0 in the environment turns huge pages off.
inline bool enabled_by_environment() {
  const char* v = std::getenv("SPINE_HUGE_PAGES");  // getenv does not allocate
  return !(v && v[0] == '0' && v[1] == '\0');
}

// nullptr when the memory is not there. small_alignment 0: malloc's own.
inline void* allocate(std::size_t size, std::size_t small_alignment) {
  static const bool on = enabled_by_environment();
  void* p = nullptr;
  if (size >= kHugeThreshold && on) {
    if (posix_memalign(&p, kHugePage, size) != 0) return nullptr;
    // Advice only: a refusal (THP off, an old kernel) leaves ordinary pages.
    (void)madvise(p, (size + 4095) & ~std::size_t{4095}, MADV_HUGEPAGE);
    return p;
  }
  if (small_alignment == 0) return std::malloc(size == 0 ? 1 : size);
  return posix_memalign(&p, small_alignment, size == 0 ? 1 : size) == 0 ? p : nullptr;
}

inline void release(void* p) { std::free(p); }

}  // namespace spine::huge
