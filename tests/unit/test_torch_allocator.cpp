// LibTorch's tensors on huge pages: the plug-in (src/model/torch_plugin.cpp), once loaded,
// gives LibTorch the executable's huge-page allocation (src/core/huge_pages.cpp). In its
// own test executable, the only one linked with LibTorch: every other test starts without
// LibTorch's 0.6-0.8 s load unless it loads a model.
#include <gtest/gtest.h>

#include <c10/core/CPUAllocator.h>

#include <cstdint>
#include <cstdlib>
#include <string>

#include "model/torch_plugin.hpp"

namespace {

bool switched_off() {
  const char* v = std::getenv("SPINE_HUGE_PAGES");
  return v && std::string(v) == "0";
}

bool on_huge_page_boundary(const void* p) { return reinterpret_cast<std::uintptr_t>(p) % (std::uintptr_t{2} << 20) == 0; }

TEST(HugePages, TensorsUseTheHugePageAllocator) {
  if (switched_off()) GTEST_SKIP() << "SPINE_HUGE_PAGES=0";
  spine::detail::torch_runtime();  // the LibTorch plug-in registers the allocator when it is loaded
  c10::Allocator* cpu = c10::GetCPUAllocator();
  ASSERT_NE(cpu, c10::GetDefaultCPUAllocator()) << "LibTorch's default allocator is still in use";
  c10::DataPtr big = cpu->allocate(std::size_t{16} << 20);
  ASSERT_NE(big.get(), nullptr);
  EXPECT_TRUE(on_huge_page_boundary(big.get()));
  static_cast<float*>(big.get())[(std::size_t{4} << 20) - 1] = 1.0f;  // the last float is writable
  c10::DataPtr small = cpu->allocate(1000);
  ASSERT_NE(small.get(), nullptr);
  EXPECT_EQ(reinterpret_cast<std::uintptr_t>(small.get()) % 64, 0u);  // LibTorch's alignment kept
  EXPECT_EQ(cpu->allocate(0).get(), nullptr);
}

}  // namespace
