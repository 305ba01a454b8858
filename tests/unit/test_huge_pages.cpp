// The executables' allocators (src/core/huge_pages.cpp): large buffers come 2 MiB-aligned
// (the precondition for the kernel to back them with huge pages), small ones as before,
// and the memory is usable and released. LibTorch's tensors: test_torch_allocator.cpp.
#include <gtest/gtest.h>

#include <cstdint>
#include <cstdlib>
#include <string>
#include <vector>

namespace {

bool switched_off() {
  const char* v = std::getenv("SPINE_HUGE_PAGES");
  return v && std::string(v) == "0";
}

bool on_huge_page_boundary(const void* p) { return reinterpret_cast<std::uintptr_t>(p) % (std::uintptr_t{2} << 20) == 0; }

TEST(HugePages, LargeBuffersStartOnAHugePage) {
#if defined(__SANITIZE_ADDRESS__)
  GTEST_SKIP() << "AddressSanitizer owns operator new";
#endif
  if (switched_off()) GTEST_SKIP() << "SPINE_HUGE_PAGES=0";
  for (int round = 0; round < 3; ++round) {  // fresh and reused memory alike
    std::vector<float> volume(std::size_t{3} << 20, 1.5f);  // 12 MiB
    EXPECT_TRUE(on_huge_page_boundary(volume.data()));
    volume.back() = 2.5f;
    EXPECT_EQ(volume.front() + volume.back(), 4.0f);
  }
  // Small allocations are not rounded up to huge pages.
  std::vector<int> small(100, 7);
  auto* bytes = new char[1 << 20];
  EXPECT_FALSE(on_huge_page_boundary(small.data()) && on_huge_page_boundary(bytes));
  delete[] bytes;
}

}  // namespace
