// The boundary between the library and LibTorch. LibTorch lives in a plug-in
// (libspine_torch.so, src/model/torch_plugin.cpp) that the library loads at run time
// instead of linking it into every executable.
//
// Why: loading LibTorch (mapping and relocating libtorch_cpu, running its operator
// registrations) takes 0.6-0.8 s on the project's machine. Linked, it is paid before main
// by every command, including those that load no model (spine-phantom, spine-prep,
// spine-measure, --help), and it cannot overlap with anything. Loaded at run time, a
// command that needs a model starts the load on another thread (start_loading_torch) and
// reads its first input meanwhile.
//
// The plug-in and the library are built together by the same compiler, so C++ types
// cross the boundary; the entry point's name carries the interface's version, so a
// plug-in from another build is refused rather than misread. The plug-in reports a
// failure as std::runtime_error with LibTorch's first line; the library adds the context.
#pragma once
#include <memory>
#include <string>

#include "spine/tensor.hpp"

namespace spine::detail {

// A loaded TorchScript module on its device.
class TorchModule {
 public:
  virtual ~TorchModule() = default;
  // forward() without gradients: the first tensor output (a tuple's first element), as
  // float on the CPU, contiguous. The caller checks its shape and values.
  virtual Tensor forward(const Tensor& input) = 0;
  // An ensemble (a `members` module list averaged by forward): how many networks it has,
  // and one network's forward() alone; 0 and a failure for any other module.
  virtual int member_count() const = 0;
  virtual Tensor forward_member(int index, const Tensor& input) = 0;
  virtual bool optimised() const = 0;
};

class TorchRuntime {
 public:
  virtual ~TorchRuntime() = default;
  virtual int cuda_device_count() = 0;
  // The intra-op thread count; applied on each thread that runs a forward pass, since
  // OpenMP keeps the count per calling thread and the plug-in is loaded on another one.
  virtual void set_threads(int threads) = 0;
  // LibTorch's CPU tensors on 2 MiB-aligned huge pages (src/core/huge_alloc.hpp), when the
  // executable asked for huge pages (src/core/huge_pages.cpp).
  virtual void use_huge_page_allocator() = 0;
  // The module in `bytes` (a TorchScript archive already checked by the caller), in eval
  // mode on `device`; optimise: frozen and optimised for inference when the passes allow.
  virtual std::unique_ptr<TorchModule> load(const std::string& bytes, const std::string& device, bool optimise) = 0;
};

// The plug-in's one exported symbol: extern "C" TorchRuntime* spine_torch_runtime_v2().
inline constexpr const char* kTorchPluginEntry = "spine_torch_runtime_v2";
using TorchPluginEntry = TorchRuntime* (*)();

// The runtime, loading the plug-in on first use (and waiting for a load that
// start_loading_torch began). Throws a model error when the plug-in cannot be loaded.
TorchRuntime& torch_runtime();
// Set by the executables that replace the allocators (src/core/huge_pages.cpp) before
// main; the loader then hands LibTorch the huge-page allocator too.
void request_huge_page_tensors();
// The thread count set_thread_count chose (0: LibTorch's default).
void set_torch_threads(int threads);

}  // namespace spine::detail
