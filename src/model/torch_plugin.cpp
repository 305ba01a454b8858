// The LibTorch plug-in (libspine_torch.so): the only code of the project, besides the
// model benchmark, that includes torch headers. The library loads it at run time; see
// torch_plugin.hpp for why and for the contract.
#include <torch/cuda.h>
#include <torch/script.h>
#include <torch/utils.h>
#include <ATen/Context.h>
#include <c10/core/CPUAllocator.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <new>
#include <stdexcept>

#include "core/huge_alloc.hpp"
#include "model/torch_plugin.hpp"

// Torch's headers define glog-style CHECK/LOG macros that clash with other code.
#undef CHECK
#undef LOG

namespace spine::detail {
namespace {

std::runtime_error failure(const c10::Error& e) {
  std::string msg = e.what_without_backtrace();
  return std::runtime_error(msg.substr(0, msg.find('\n')));
}

// The caller's bytes as LibTorch's archive reader sees a file, without another copy.
class BytesAdapter : public caffe2::serialize::ReadAdapterInterface {
 public:
  explicit BytesAdapter(const std::string& bytes) : bytes_(bytes) {}
  size_t size() const override { return bytes_.size(); }
  size_t read(uint64_t pos, void* buf, size_t n, const char* /*what*/) const override {
    if (pos >= bytes_.size()) return 0;
    n = std::min<size_t>(n, bytes_.size() - pos);
    std::memcpy(buf, bytes_.data() + pos, n);
    return n;
  }

 private:
  const std::string& bytes_;
};

class HugePageTensorAllocator final : public c10::Allocator {
 public:
  c10::DataPtr allocate(std::size_t n) const override {
    if (n == 0) return {nullptr, nullptr, &huge::release, c10::Device(c10::DeviceType::CPU)};
    void* p = huge::allocate(n, kTensorAlignment);
    if (!p) throw std::bad_alloc();
    return {p, p, &huge::release, c10::Device(c10::DeviceType::CPU)};
  }
  c10::DeleterFnPtr raw_deleter() const override { return &huge::release; }

 private:
  static constexpr std::size_t kTensorAlignment = 64;  // LibTorch's own (c10's gAlignment)
};

class Module final : public TorchModule {
 public:
  Module(torch::jit::script::Module module, std::string device, bool optimised, const std::atomic<int>& threads)
      : module_(std::move(module)), device_(std::move(device)), optimised_(optimised), threads_(threads) {}

  Tensor forward(const Tensor& input) override {
    // OpenMP keeps the thread count per calling thread; the plug-in was loaded, and the
    // count first set, on another one.
    thread_local int applied = 0;
    const int threads = threads_.load();
    if (threads > 0 && applied != threads) {
      torch::set_num_threads(threads);
      applied = threads;
    }
    torch::NoGradGuard no_grad;
    try {
      auto in = torch::from_blob(const_cast<float*>(input.data.data()), input.shape, torch::kFloat32)
                    .to(torch::Device(device_));
      torch::jit::IValue result = module_.forward({in});
      if (result.isTuple()) result = result.toTuple()->elements().at(0);
      if (!result.isTensor()) throw std::runtime_error("model output is not a tensor");
      auto out = result.toTensor().to(torch::kCPU, torch::kFloat32).contiguous();
      Tensor t;
      t.shape.assign(out.sizes().begin(), out.sizes().end());
      t.data.assign(out.data_ptr<float>(), out.data_ptr<float>() + out.numel());
      return t;
    } catch (const c10::Error& e) {
      throw failure(e);
    }
  }
  bool optimised() const override { return optimised_; }

 private:
  torch::jit::script::Module module_;
  std::string device_;
  bool optimised_;
  const std::atomic<int>& threads_;
};

class Runtime final : public TorchRuntime {
 public:
  Runtime() {
    // A quantized model (models/*-int8.pt) packs its weights for the quantized engine in
    // use when it is loaded. scripts/quantize_cobb.py calibrates for oneDNN's, so that is
    // the engine here whatever LibTorch's default (this Debian build's is oneDNN too).
    auto& context = at::globalContext();
    const auto& engines = context.supportedQEngines();
    if (std::find(engines.begin(), engines.end(), at::kONEDNN) != engines.end()) context.setQEngine(at::kONEDNN);
  }

  int cuda_device_count() override { return torch::cuda::is_available() ? static_cast<int>(torch::cuda::device_count()) : 0; }

  void set_threads(int threads) override {
    threads_ = threads;
    if (threads > 0) torch::set_num_threads(threads);
  }

  void use_huge_page_allocator() override {
    // Priority 1 wins over LibTorch's default CPU allocator (priority 0).
    static HugePageTensorAllocator allocator;
    c10::SetCPUAllocator(&allocator, 1);
  }

  std::unique_ptr<TorchModule> load(const std::string& bytes, const std::string& device, bool optimise) override {
    torch::jit::script::Module module;
    try {
      module = torch::jit::load(std::make_shared<BytesAdapter>(bytes), torch::Device(device));
    } catch (const c10::Error& e) {
      throw failure(e);
    }
    module.eval();
    // Freezing inlines the weights and folds each batch norm into its convolution;
    // optimize_for_inference then runs the convolutions in oneDNN's blocked layout
    // without converting between layouts at every layer. Same outputs to ~1e-5, and
    // about 1.8x faster for the CT U-Net on one 256 x 256 slice, 2 threads (measured
    // from Python with torch.jit.optimize_for_inference, the same pass). A module the
    // passes cannot handle stays as it was: slower, never different.
    bool optimised = false;
    if (optimise) {
      try {
        module = torch::jit::optimize_for_inference(module);
        optimised = true;
      } catch (const c10::Error&) {
      }
    }
    return std::make_unique<Module>(std::move(module), device, optimised, threads_);
  }

 private:
  std::atomic<int> threads_{0};
};

}  // namespace
}  // namespace spine::detail

extern "C" __attribute__((visibility("default"))) spine::detail::TorchRuntime* spine_torch_runtime_v1() {
  static spine::detail::Runtime runtime;
  return &runtime;
}
