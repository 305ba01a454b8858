// Large buffers (volumes, label maps, their copies) on transparent huge pages.
//
// Why: every 4 KiB page a process touches for the first time is a page fault, and on
// virtual machines like the project's a fault costs several microseconds. A 512 x 512 x
// 300 CT in floats is 77,000 pages, and a run allocates such volumes several times
// (reading, resampling, normalising, labels, the input grid again). Asking the kernel for
// 2 MiB pages on these buffers makes that 512 times fewer faults. It is what glibc's own
// `glibc.malloc.hugetlb=1` tunable does, which a program cannot set for itself once it
// runs.
//
// The networks' activations matter most: LibTorch allocates and frees each layer's
// output at every forward pass (tens of MB for a U-Net on a slice pair), and with 4 KiB
// pages the CT U-Net's forward pass ran at 20 % of the machine's convolution throughput,
// at 52 % with huge pages. Side by side (scripts/bench_huge_pages.sh, docs/performance.md):
// spine-seg on a 512 x 512 x 300 CT 1.54x faster, spine-measure 2.07x (with the heap
// kept, below).
//
// How: allocations of at least huge::kHugeThreshold bytes are handed out 2 MiB-aligned,
// with madvise(MADV_HUGEPAGE) on them; smaller ones go to malloc as before
// (src/core/huge_alloc.hpp). Two entry points:
// - the replaceable global operator new (a standard C++ mechanism), for our and ITK's
//   buffers, here;
// - LibTorch's CPU allocator, for every tensor: the LibTorch plug-in registers the same
//   allocation in c10's allocator registry when it is loaded, because this executable
//   asked for it (request_huge_page_tensors below).
// Both are released by free(), so the default operator delete is right. Where the
// kernel's THP mode is "never", the advice is ignored and nothing else changes.
// SPINE_HUGE_PAGES=0 in the environment turns both off (ordinary pages, as before), for
// the side-by-side benchmark (scripts/bench_huge_pages.sh) and for whoever needs it.
//
// Linked into the executables (and the unit tests), not into the library: replacing
// the allocators is the program's decision. Under AddressSanitizer operator new is left
// alone, since the sanitizer must own it to check the heap.
#include <malloc.h>

#include <new>

#include "core/huge_alloc.hpp"
#include "model/torch_plugin.hpp"

namespace {

// Freed memory stays in the process for the next allocation: glibc by default hands a
// freed block of more than 128 KiB..32 MiB back to the kernel (munmap, or trimming the
// heap), and the next forward pass faults the same amount in again, 4 KiB at a time for
// the activations below kHugeThreshold. Keeping it (blocks up to 32 MiB from the heap,
// the most glibc allows; the heap trimmed only above 1 GiB free) made spine-cobb 0.17 s
// per film against 0.23-0.28 s. The peak stays what the run needs; what is not returned
// early is returned at exit.
const bool heap_kept = spine::huge::enabled_by_environment() && mallopt(M_MMAP_THRESHOLD, 32 << 20) == 1 &&
                       mallopt(M_TRIM_THRESHOLD, 1 << 30) == 1;
const bool tensors_requested =
    spine::huge::enabled_by_environment() && (spine::detail::request_huge_page_tensors(), true);

}  // namespace

#if !defined(__SANITIZE_ADDRESS__)
void* operator new(std::size_t size) {
  if (void* p = spine::huge::allocate(size, 0)) return p;
  throw std::bad_alloc();
}
void* operator new[](std::size_t size) { return operator new(size); }
#endif
