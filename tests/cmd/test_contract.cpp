// Command-line contract: help, version, bad arguments, exit statuses, exact error text,
// and no partial output on failure. Exit statuses: 0 ok, 1 usage, 2 input, 3 some failed.
#include "cmd_util.hpp"

namespace spine {
namespace {

using test::bin;
using test::q;
using test::run_command;
using test::TempDir;
namespace fs = std::filesystem;

class Contract : public ::testing::TestWithParam<std::string> {};

INSTANTIATE_TEST_SUITE_P(Tools, Contract,
                         ::testing::Values("spine-prep", "spine-phantom", "spine-cobb", "spine-seg", "spine-detect",
                                           "spine-measure", "spine-grade"));

TEST_P(Contract, HelpShowsOptionsAndDefaults) {
  const auto r = run_command(bin(GetParam()) + " --help");
  EXPECT_EQ(r.exit_code, 0);
  EXPECT_NE(r.output.find("--output"), std::string::npos);
  EXPECT_NE(r.output.find("--threads"), std::string::npos);
  EXPECT_NE(r.output.find("=auto"), std::string::npos) << "default of --device not shown";
  EXPECT_NE(r.output.find("Exit status"), std::string::npos);
}

TEST_P(Contract, VersionShowsGitRevision) {
  const auto r = run_command(bin(GetParam()) + " --version");
  EXPECT_EQ(r.exit_code, 0);
  EXPECT_EQ(r.output.rfind(GetParam() + " 0.", 0), 0u) << r.output;
  EXPECT_NE(r.output.find("(git "), std::string::npos);
  EXPECT_NE(r.output.find("models:"), std::string::npos);
}

TEST_P(Contract, UnknownOptionIsUsageError) {
  const auto r = run_command(bin(GetParam()) + " in.nii.gz --no-such-option -o /tmp/x");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.output.find("--no-such-option"), std::string::npos) << r.output;
}

TEST_P(Contract, InvalidValueIsUsageError) {
  const auto r = run_command(bin(GetParam()) + " --threads -3 -o /tmp/x");
  EXPECT_EQ(r.exit_code, 1) << r.output;
}

TEST(PrepContract, MissingInputIsInputError) {
  TempDir dir;
  const auto r = run_command(bin("spine-prep") + " " + q(dir / "nope.nii.gz") + " -o " + q(dir / "out"));
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.output.find("spine-prep: error: " + (dir / "nope.nii.gz").string() + ": no such file or directory"),
            std::string::npos)
      << r.output;
}

TEST(PrepContract, CorruptAndTruncatedFilesAreInputErrorsWithoutOutput) {
  TempDir dir;
  const fs::path image = test::make_ct_phantom(dir);
  { std::ofstream(dir / "corrupt.nii.gz") << "not gzip at all"; }
  const std::string bytes = test::read_file(image);
  { std::ofstream(dir / "truncated.nii.gz", std::ios::binary) << bytes.substr(0, bytes.size() / 3); }
  for (const char* name : {"corrupt", "truncated"}) {
    const auto r = run_command(bin("spine-prep") + " " + q(dir / (std::string(name) + ".nii.gz")) + " -o " +
                               q(dir / "out"));
    EXPECT_EQ(r.exit_code, 2) << name << ": " << r.output;
    EXPECT_NE(r.output.find(std::string(name) + ".nii.gz"), std::string::npos) << r.output;
    EXPECT_FALSE(fs::exists(dir / "out" / name)) << name;
  }
  // No temporary work folders left behind either.
  for (const auto& e : fs::directory_iterator(dir / "out")) {
    EXPECT_EQ(e.path().filename().string().find(".partial"), std::string::npos) << e.path();
  }
}

TEST(PrepContract, ExistingOutputNeedsForce) {
  TempDir dir;
  const fs::path image = test::make_ct_phantom(dir);
  const std::string cmd = bin("spine-prep") + " " + q(image) + " -q -o " + q(dir / "out");
  ASSERT_EQ(run_command(cmd).exit_code, 0);
  const auto before = fs::last_write_time(dir / "out" / "image" / "image.nii.gz");
  const auto again = run_command(cmd);
  EXPECT_EQ(again.exit_code, 2);
  EXPECT_NE(again.output.find("output exists (use --force to overwrite or --resume to skip)"), std::string::npos)
      << again.output;
  EXPECT_EQ(fs::last_write_time(dir / "out" / "image" / "image.nii.gz"), before);
  EXPECT_EQ(run_command(cmd + " --force").exit_code, 0);
}

TEST(PrepContract, ThreeDimensionalCodeOn2DImageIsInputError) {
  TempDir dir;
  ASSERT_EQ(run_command(bin("spine-phantom") + " --kind xray --pixel 2 -q -o " + q(dir.path()) + " --name xr").exit_code, 0);
  const auto r = run_command(bin("spine-prep") + " " + q(dir / "xr" / "image.png") + " --reorient LPS -o " +
                             q(dir / "out"));
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.output.find("does not fit a 2D image"), std::string::npos) << r.output;
}

TEST(PrepContract, OptionWithoutEffectWarns) {
  TempDir dir;
  const fs::path image = test::make_ct_phantom(dir);
  const auto r = run_command(bin("spine-prep") + " " + q(image) + " --clahe-clip 3 -o " + q(dir / "out"));
  EXPECT_EQ(r.exit_code, 0);
  EXPECT_NE(r.output.find("no effect without --clahe"), std::string::npos) << r.output;
}

// LibTorch is a plug-in beside the executables (build/lib/libspine_torch.so): an
// executable copied without it stops before its first study with one line naming what is
// missing, instead of failing every study of the batch.
TEST(SegContract, MissingLibTorchPlugInStopsBeforeTheFirstStudy) {
  TempDir dir;
  const fs::path image = test::make_ct_phantom(dir);
  fs::create_directories(dir / "alone" / "bin");
  fs::copy_file(bin("spine-seg"), dir / "alone" / "bin" / "spine-seg");
  const auto r = run_command("SPINE_MODELS_DIR=" + q(fs::path(SPINE_SOURCE_DIR) / "models") + " " +
                             q(dir / "alone" / "bin" / "spine-seg") + " " + q(image) + " -o " + q(dir / "out"));
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_NE(r.output.find("LibTorch plug-in libspine_torch.so is missing"), std::string::npos) << r.output;
  // Stopped before the batch: no study folder, no failure record, no cohort table.
  EXPECT_TRUE(!fs::exists(dir / "out") || fs::is_empty(dir / "out")) << r.output;
  // --help needs no LibTorch.
  EXPECT_EQ(run_command(q(dir / "alone" / "bin" / "spine-seg") + " --help").exit_code, 0);
}

TEST(PhantomContract, BadSegmentIsUsageError) {
  TempDir dir;
  const auto r = run_command(bin("spine-phantom") + " --first L5 --last L1 -o " + q(dir.path()));
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_NE(r.output.find("first vertebra must lie above the last"), std::string::npos) << r.output;
}

}  // namespace
}  // namespace spine
