// Helpers shared by the tests: temporary folders, small images, running executables.
#pragma once
#include <gtest/gtest.h>

#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>
#include <string>
#include <vector>
#include <sys/wait.h>

#include "spine/image.hpp"

namespace spine::test {

namespace fs = std::filesystem;

class TempDir {
 public:
  TempDir() {
    static std::mt19937_64 rng(std::random_device{}());
    path_ = fs::temp_directory_path() / ("spine-test-" + std::to_string(rng()));
    fs::create_directories(path_);
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  const fs::path& path() const { return path_; }
  fs::path operator/(const std::string& s) const { return path_ / s; }

 private:
  fs::path path_;
};

inline fs::path shared_data() { return fs::path(SPINE_SHARED_DATA); }
inline fs::path test_models() { return fs::path(SPINE_TEST_MODELS); }

// A 3D image with an oblique direction, non-trivial origin and anisotropic spacing.
inline FloatImage oblique_test_image(std::size_t nx = 7, std::size_t ny = 6, std::size_t nz = 5) {
  Geometry g = make_geometry(nx, ny, nz, {0.7, 1.1, 2.5});
  g.origin = {-12.5, 30.25, 7.0};
  const double c = std::cos(0.3), s = std::sin(0.3);
  g.direction = {c, -s, 0, s, c, 0, 0, 0, 1};
  FloatImage img(g);
  for (std::size_t i = 0; i < img.voxels.size(); ++i) img.voxels[i] = static_cast<float>(i % 97) - 20.5f;
  return img;
}

struct CommandResult {
  int exit_code = -1;
  std::string output;  // stdout and stderr together
};

inline CommandResult run_command(const std::string& command) {
  CommandResult r;
  FILE* pipe = ::popen((command + " 2>&1").c_str(), "r");
  if (!pipe) return r;
  char buf[4096];
  std::size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, pipe)) > 0) r.output.append(buf, n);
  const int status = ::pclose(pipe);
  r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return r;
}

inline std::string read_file(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

// A raw little-endian array written by scripts/make_test_models.py (numpy tofile).
template <class T>
std::vector<T> read_raw(const fs::path& p) {
  const std::string bytes = read_file(p);
  std::vector<T> v(bytes.size() / sizeof(T));
  std::memcpy(v.data(), bytes.data(), v.size() * sizeof(T));
  return v;
}

}  // namespace spine::test
