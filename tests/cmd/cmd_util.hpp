// Shared helpers of the command tests: executable paths and quick phantom fixtures.
#pragma once
#include "test_util.hpp"

namespace spine::test {

inline std::string bin(const std::string& tool) { return std::string(SPINE_BIN_DIR) + "/" + tool; }

inline std::string q(const fs::path& p) { return "'" + p.string() + "'"; }

// A small CT phantom (L4-L5, 2 mm) written to dir/ct/image.nii.gz.
inline fs::path make_ct_phantom(const TempDir& dir) {
  const auto r = run_command(bin("spine-phantom") + " --kind ct --first L4 --last L5 --spacing 2 --margin 10 -q -o " +
                             q(dir.path()) + " --name ct");
  EXPECT_EQ(r.exit_code, 0) << r.output;
  return dir / "ct" / "image.nii.gz";
}

}  // namespace spine::test
