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
#include <mutex>
#include <new>
#include <stdexcept>
#include <string>
#include <vector>

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

// Freezing inlines the weights and folds each batch norm into its convolution;
// optimize_for_inference then runs the convolutions in oneDNN's blocked layout without
// converting between layouts at every layer. Same outputs to ~1e-5, and about 1.8x faster
// for the CT U-Net on one 256 x 256 slice, 2 threads (measured from Python with
// torch.jit.optimize_for_inference, the same pass). A module the passes cannot handle
// stays as it was: slower, never different. Returns whether it was optimised.
bool optimise_for_inference(torch::jit::script::Module& module) {
  try {
    module = torch::jit::optimize_for_inference(module);
    return true;
  } catch (const c10::Error&) {
    return false;
  }
}

// The networks of an ensemble (scripts/ensemble_models.py: a `members` module list whose
// forward is their mean), in order; empty for any other module.
std::vector<torch::jit::script::Module> ensemble_members(const torch::jit::script::Module& module) {
  std::vector<torch::jit::script::Module> members;
  for (const auto& child : module.named_children())
    if (child.name == "members")
      for (const auto& member : child.value.children()) {
        if (!member.find_method("forward")) return {};
        members.push_back(member);
      }
  return members;
}

class Module final : public TorchModule {
 public:
  Module(torch::jit::script::Module module, std::vector<torch::jit::script::Module> members, std::string device,
         bool optimise, const std::atomic<int>& threads)
      : module_(std::move(module)), members_(std::move(members)), device_(std::move(device)), optimise_(optimise),
        threads_(threads) {
    optimised_ = optimise_ && optimise_for_inference(module_);
  }

  Tensor forward(const Tensor& input) override { return run(module_, input); }

  int member_count() const override { return static_cast<int>(members_.size()); }

  Tensor forward_member(int index, const Tensor& input) override {
    if (index < 0 || index >= member_count()) throw std::runtime_error("no ensemble member " + std::to_string(index));
    // Each member is frozen and optimised on its own the first time one is asked for:
    // callers that only run the whole ensemble do not pay for it.
    std::call_once(members_prepared_, [this] {
      if (optimise_)
        for (auto& m : members_) {
          m.eval();
          optimise_for_inference(m);
        }
    });
    return run(members_[static_cast<std::size_t>(index)], input);
  }

  bool optimised() const override { return optimised_; }

 private:
  Tensor run(torch::jit::script::Module& module, const Tensor& input) {
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
      torch::jit::IValue result = module.forward({in});
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

  torch::jit::script::Module module_;
  std::vector<torch::jit::script::Module> members_;
  std::once_flag members_prepared_;
  std::string device_;
  bool optimise_;
  bool optimised_ = false;
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
    // The members before the whole is optimised (freezing inlines them into it).
    std::vector<torch::jit::script::Module> members = ensemble_members(module);
    return std::make_unique<Module>(std::move(module), std::move(members), device, optimise, threads_);
  }

 private:
  std::atomic<int> threads_{0};
};

}  // namespace
}  // namespace spine::detail

extern "C" __attribute__((visibility("default"))) spine::detail::TorchRuntime* spine_torch_runtime_v2() {
  static spine::detail::Runtime runtime;
  return &runtime;
}
