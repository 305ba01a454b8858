// Model throughput in the C++ runtime: for each shipped model, the best time of one
// forward pass on its card's patch size, as the commands load it (frozen and optimised
// for inference) side by side with the TorchScript module as saved, and the GFLOP/s
// achieved against this machine's convolution throughput, measured in the same run on
// 3x3 convolutions of a few widths and sizes.
//
//   bench_models THREADS REPEATS REFDIR FILE:BATCH:GFLOP ...
// GFLOP is the model's multiply-adds x 2 per forward pass at that batch (counted by
// scripts/model_flops.py with torch's profiler); scripts/bench_models.sh runs both.
#include <torch/script.h>
#include <torch/torch.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <functional>
#include <string>
#include <vector>

#include "model/torch_plugin.hpp"
#include "spine/error.hpp"
#include "spine/model.hpp"

namespace {

// The fastest of `repeats` runs after a warm-up: on a shared virtual machine the spread
// between runs is wide (other tenants), and the fastest run is what the code can do.
double best_seconds(int repeats, const std::function<void()>& f) {
  f();  // warm-up: first-call allocation and oneDNN primitive creation
  double best = 1e300;
  for (int i = 0; i < repeats; ++i) {
    const auto a = std::chrono::steady_clock::now();
    f();
    best = std::min(best, std::chrono::duration<double>(std::chrono::steady_clock::now() - a).count());
  }
  return best;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 5) {
    std::fprintf(stderr, "usage: bench_models THREADS REPEATS REFDIR FILE:BATCH:GFLOP ...\n");
    return 1;
  }
  const int threads = std::stoi(argv[1]), repeats = std::stoi(argv[2]);
  const std::string ref_dir = argv[3];
  spine::set_thread_count(threads);
  // The reference convolutions below call LibTorch directly; they run as the models do:
  // once the plug-in is loaded (the models' LibTorch, with its huge-page tensor allocator),
  // and with the same thread count on this thread.
  spine::detail::torch_runtime();
  torch::set_num_threads(threads);
  torch::NoGradGuard no_grad;

  // The reference: 3x3 convolutions of a few widths and sizes (REFDIR/conv_C_H_W.pt,
  // written by scripts/bench_models.sh), frozen and optimised like the models; the best
  // GFLOP/s among them is this machine's convolution throughput. (A large full-resolution
  // layer is slower per FLOP: its tensors do not stay in cache.)
  double peak = 0;
  std::string peak_at;
  for (const auto& e : std::filesystem::directory_iterator(ref_dir)) {
    int c = 0, h = 0, w = 0;
    if (std::sscanf(e.path().filename().c_str(), "conv_%d_%d_%d.pt", &c, &h, &w) != 3) continue;
    auto module = torch::jit::load(e.path().string());
    module.eval();
    module = torch::jit::optimize_for_inference(module);
    const auto x = torch::rand({1, c, h, w});
    const double gflop = 2.0 * c * c * 9 * h * w / 1e9;
    const double s = best_seconds(repeats, [&] { (void)module.forward({x}); });
    std::printf("reference convolution %d->%d 3x3 on %d x %d: %.1f GFLOP/s\n", c, c, h, w, gflop / s);
    if (gflop / s > peak) peak = gflop / s, peak_at = std::to_string(c) + " channels on " + std::to_string(h) + " x " + std::to_string(w);
  }
  if (peak <= 0) {
    std::fprintf(stderr, "bench_models: no reference convolutions in %s\n", ref_dir.c_str());
    return 1;
  }
  std::printf("threads %d; this machine's convolution throughput: %.1f GFLOP/s (%s)\n", threads, peak, peak_at.c_str());
  std::printf("%-20s %-18s %8s %11s %11s %7s %9s %9s\n", "model", "input", "GFLOP", "saved (s)", "optimised",
              "ratio", "GFLOP/s", "of conv");
  try {
    for (int i = 4; i < argc; ++i) {
      const std::string arg = argv[i];
      const auto c1 = arg.find(':'), c2 = arg.rfind(':');
      const std::string file = arg.substr(0, c1);
      const std::int64_t batch = std::stoll(arg.substr(c1 + 1, c2 - c1 - 1));
      const double gflop = std::stod(arg.substr(c2 + 1));
      const spine::ModelFile mf = spine::shipped_model(file);
      const spine::Model fast = spine::Model::load(mf, {}, "cpu", true);
      const spine::Model plain = spine::Model::load(mf, {}, "cpu", false);
      const auto& card = fast.card();
      spine::Tensor in({batch, card.input_channels, card.patch_size[1], card.patch_size[0]}, 0.5f);
      const int rank = card.task == "mr-disc-grading" ? 2 : 0;
      const double t_plain = best_seconds(repeats, [&] { (void)plain.forward(in, rank); });
      const double t_fast = best_seconds(repeats, [&] { (void)fast.forward(in, rank); });
      char shape[64];
      std::snprintf(shape, sizeof shape, "%lldx%dx%dx%d", static_cast<long long>(batch), card.input_channels,
                    card.patch_size[1], card.patch_size[0]);
      std::printf("%-20s %-18s %8.2f %11.3f %11.3f %6.2fx %9.1f %8.0f%%\n", card.name.c_str(), shape, gflop, t_plain,
                  t_fast, t_plain / t_fast, gflop / t_fast, 100.0 * gflop / t_fast / peak);
    }
  } catch (const spine::Error& e) {
    std::fprintf(stderr, "bench_models: %s\n", e.what());
    return 2;
  }
  return 0;
}
