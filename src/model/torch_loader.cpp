// Finds and loads the LibTorch plug-in (torch_plugin.hpp says why it is a plug-in): on
// first use, or on another thread as soon as a command knows it will need a model.
#include <dlfcn.h>

#include <filesystem>
#include <future>
#include <mutex>
#include <vector>

#include "model/torch_plugin.hpp"
#include "spine/error.hpp"
#include "spine/model.hpp"

namespace fs = std::filesystem;

namespace spine {
namespace detail {
namespace {

constexpr const char* kPluginFile = "libspine_torch.so";

struct LoaderState {
  std::mutex mutex;
  std::shared_future<TorchRuntime*> runtime;
  bool huge_page_tensors = false;
  int threads = 0;
  TorchRuntime* loaded = nullptr;  // set, under the mutex, once the settings above are applied
};

LoaderState& state() {
  static LoaderState s;
  return s;
}

// lib/ beside the executable's bin/ (the build tree's layout), else beside the executable
// itself (a copied executable with its plug-in).
std::vector<fs::path> plugin_places() {
  std::error_code ec;
  const fs::path exe = fs::read_symlink("/proc/self/exe", ec);
  if (ec) return {};
  return {exe.parent_path() / ".." / "lib" / kPluginFile, exe.parent_path() / kPluginFile};
}

// The plug-in's path; a model error naming the places looked in when it is in none.
std::string find_plugin() {
  std::string looked;
  for (const auto& place : plugin_places()) {
    std::error_code ec;
    if (fs::is_regular_file(place, ec)) return fs::weakly_canonical(place).string();
    looked += (looked.empty() ? "" : ", ") + place.lexically_normal().string();
  }
  throw model_error(std::string("the LibTorch plug-in ") + kPluginFile + " is missing (looked in " + looked +
                    "); it is built with the executables");
}

TorchRuntime* load_plugin(const std::string& path) {
  // RTLD_NOW: every symbol resolved here, on the loading thread, not later on the first
  // forward pass. RTLD_LOCAL: LibTorch's symbols stay out of the executable's namespace.
  void* handle = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (!handle) {
    const char* why = dlerror();
    throw model_error("cannot load LibTorch through " + path + ": " + (why ? why : "no reason given"));
  }
  auto entry = reinterpret_cast<TorchPluginEntry>(dlsym(handle, kTorchPluginEntry));
  if (!entry) throw model_error(path + ": not this build's LibTorch plug-in (it has no " + kTorchPluginEntry + ")");
  TorchRuntime* runtime = entry();
  LoaderState& s = state();
  std::lock_guard<std::mutex> lock(s.mutex);
  if (s.huge_page_tensors) runtime->use_huge_page_allocator();
  runtime->set_threads(s.threads);
  s.loaded = runtime;
  return runtime;
}

}  // namespace

TorchRuntime& torch_runtime() {
  LoaderState& s = state();
  std::shared_future<TorchRuntime*> runtime;
  {
    std::lock_guard<std::mutex> lock(s.mutex);
    if (!s.runtime.valid()) s.runtime = std::async(std::launch::deferred, [] { return load_plugin(find_plugin()); }).share();
    runtime = s.runtime;
  }
  return *runtime.get();  // rethrows the load's error, every time it is asked
}

void request_huge_page_tensors() {
  LoaderState& s = state();
  std::lock_guard<std::mutex> lock(s.mutex);
  s.huge_page_tensors = true;
}

void set_torch_threads(int threads) {
  LoaderState& s = state();
  std::lock_guard<std::mutex> lock(s.mutex);
  s.threads = threads;
  if (s.loaded) s.loaded->set_threads(threads);  // one still loading reads the count when done
}

}  // namespace detail

void start_loading_model_runtime() {
  detail::LoaderState& s = detail::state();
  std::lock_guard<std::mutex> lock(s.mutex);
  if (s.runtime.valid()) return;
  // Found here, so that a missing plug-in stops the command before its first study.
  s.runtime = std::async(std::launch::async, detail::load_plugin, detail::find_plugin()).share();
}

}  // namespace spine
