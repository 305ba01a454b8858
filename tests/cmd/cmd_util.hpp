// Shared helpers of the command tests: executable paths and quick phantom fixtures.
#pragma once
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <cmath>

#include "test_util.hpp"

namespace spine::test {

inline std::string bin(const std::string& tool) { return std::string(SPINE_BIN_DIR) + "/" + tool; }

inline std::string q(const fs::path& p) { return "'" + p.string() + "'"; }

inline double distance(const std::array<double, 3>& a, const std::array<double, 3>& b) {
  return std::sqrt((a[0] - b[0]) * (a[0] - b[0]) + (a[1] - b[1]) * (a[1] - b[1]) + (a[2] - b[2]) * (a[2] - b[2]));
}

// Dice of two label maps on one grid, all vertebrae (labels 1..29) or all discs (100..199)
// taken as one class.
inline double binary_dice(const LabelImage& a, const LabelImage& b, bool discs) {
  std::size_t inter = 0, sa = 0, sb = 0;
  auto in = [&](int v) { return discs ? (v >= 100 && v < 200) : (v > 0 && v < 30); };
  for (std::size_t i = 0; i < a.voxels.size(); ++i) {
    const bool x = in(a.voxels[i]), y = in(b.voxels[i]);
    inter += x && y, sa += x, sb += y;
  }
  return sa + sb ? 2.0 * static_cast<double>(inter) / static_cast<double>(sa + sb) : 0.0;
}

// A small CT phantom (L4-L5, 2 mm) written to dir/ct/image.nii.gz.
inline fs::path make_ct_phantom(const TempDir& dir) {
  const auto r = run_command(bin("spine-phantom") + " --kind ct --first L4 --last L5 --spacing 2 --margin 10 -q -o " +
                             q(dir.path()) + " --name ct");
  EXPECT_EQ(r.exit_code, 0) << r.output;
  return dir / "ct" / "image.nii.gz";
}

// `count` copies of one small CT phantom (L4-L5 at 2 mm) as dir/in/s0.nii.gz ...; about
// a second each through spine-seg. Returns dir/in.
inline fs::path make_ct_batch(const TempDir& dir, int count = 6) {
  const fs::path ct = make_ct_phantom(dir);
  fs::create_directories(dir / "in");
  for (int i = 0; i < count; ++i) fs::copy_file(ct, dir / "in" / ("s" + std::to_string(i) + ".nii.gz"));
  return dir / "in";
}

// Starts a command in the background; returns its PID (output to `log`).
inline pid_t spawn(const std::string& command, const fs::path& log) {
  const pid_t pid = ::fork();
  if (pid == 0) {
    ::execl("/bin/sh", "sh", "-c", ("exec " + command + " > " + q(log) + " 2>&1").c_str(), static_cast<char*>(nullptr));
    ::_exit(127);
  }
  return pid;
}

// The exit status of a spawned command (128 + signal when a signal ended it).
inline int wait_exit(pid_t pid, bool* signalled = nullptr) {
  int status = 0;
  ::waitpid(pid, &status, 0);
  if (signalled) *signalled = WIFSIGNALED(status);
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

}  // namespace spine::test
