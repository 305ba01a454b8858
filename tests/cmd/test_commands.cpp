// Command tests: each executable run on generated data, outputs checked with the library.
#include <cmath>
#include <set>

#include <nlohmann/json.hpp>

#include "cmd_util.hpp"
#include "spine/io.hpp"
#include "spine/labels.hpp"
#include "spine/preprocess.hpp"

namespace spine {
namespace {

using test::bin;
using test::q;
using test::run_command;
using test::TempDir;
namespace fs = std::filesystem;

// spine-phantom writes image, labels, colour tables, truth and provenance; labels are
// integers on the image's grid and contain the requested vertebrae and discs.
TEST(PhantomCommand, WritesVolumeLabelsAndTruth) {
  TempDir dir;
  const fs::path image = test::make_ct_phantom(dir);
  const fs::path study = dir / "ct";
  for (const char* f : {"image.nii.gz", "labels.nii.gz", "labels.ctbl", "labels.itksnap.txt", "truth.json",
                        "provenance.json"})
    EXPECT_TRUE(fs::exists(study / f)) << f;
  const LoadedImage img = read_image(image);
  const LabelImage labels = read_labels(study / "labels.nii.gz");
  EXPECT_TRUE(img.image.geometry.same_grid(labels.geometry, 1e-5));
  EXPECT_EQ(img.info.pixel_type, "short");
  std::set<int> present(labels.voxels.begin(), labels.voxels.end());
  for (int l : {23, 24, 123, label::kSpinalCanal}) EXPECT_TRUE(present.count(l)) << l;
  const auto truth = nlohmann::json::parse(test::read_file(study / "truth.json"));
  EXPECT_EQ(truth["vertebrae"].size(), 2u);
  EXPECT_EQ(truth["synthetic"], true);
}

// A radiograph phantom's truth holds 68 landmarks and the Cobb angle that was asked for.
TEST(PhantomCommand, RadiographHasLandmarksAndAngles) {
  TempDir dir;
  const auto r = run_command(bin("spine-phantom") + " --kind xray --scoliosis 30 --pixel 1 -q -o " + q(dir.path()) +
                             " --name xr");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const LoadedImage img = read_image(dir / "xr" / "image.png");
  EXPECT_EQ(img.image.geometry.dimension, 2);
  const auto truth = nlohmann::json::parse(test::read_file(dir / "xr" / "truth.json"));
  EXPECT_EQ(truth["landmarks_px"].size(), 68u);
  EXPECT_NEAR(truth["angles"]["major"]["angle_deg"].get<double>(), 30.0, 0.5);
}

// spine-prep resamples and windows a CT phantom: new spacing, values in 0..1, same extent.
TEST(PrepCommand, WindowAndResampleCt) {
  TempDir dir;
  const fs::path image = test::make_ct_phantom(dir);
  const auto r = run_command(bin("spine-prep") + " " + q(image) + " --window bone --resample 3 -q -o " +
                             q(dir / "out"));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const LoadedImage in = read_image(image);
  const LoadedImage out = read_image(dir / "out" / "image" / "image.nii.gz");
  for (int a = 0; a < 3; ++a) {
    EXPECT_DOUBLE_EQ(out.image.geometry.spacing[a], 3.0);
    EXPECT_NEAR(out.image.geometry.size[a] * 3.0, in.image.geometry.size[a] * 2.0, 3.0);
  }
  const auto range = intensity_range(out.image);
  EXPECT_GE(range.min, 0.f);
  EXPECT_LE(range.max, 1.f);
  const auto prov = nlohmann::json::parse(test::read_file(dir / "out" / "image" / "provenance.json"));
  EXPECT_EQ(prov["result"]["steps"], nlohmann::json({"resample", "window"}));
  EXPECT_EQ(prov["inputs"][0]["sha256"].get<std::string>().size(), 64u);
}

// CLAHE on a phantom radiograph gives a 2D output and an 8-bit preview.
TEST(PrepCommand, ClaheOnRadiograph) {
  TempDir dir;
  ASSERT_EQ(run_command(bin("spine-phantom") + " --kind xray --pixel 1 -q -o " + q(dir.path()) + " --name xr").exit_code, 0);
  const auto r = run_command(bin("spine-prep") + " " + q(dir / "xr" / "image.png") + " --clahe -q -o " + q(dir / "out"));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const LoadedImage out = read_image(dir / "out" / "image" / "image.nii.gz");
  EXPECT_EQ(out.image.geometry.dimension, 2);
  EXPECT_TRUE(fs::exists(dir / "out" / "image" / "preview.png"));
}

// Reorienting to PIR and back through two runs gives the original voxels.
TEST(PrepCommand, ReorientRoundTrip) {
  TempDir dir;
  const fs::path image = test::make_ct_phantom(dir);
  ASSERT_EQ(run_command(bin("spine-prep") + " " + q(image) + " --reorient PIR -q -o " + q(dir / "a")).exit_code, 0);
  ASSERT_EQ(run_command(bin("spine-prep") + " " + q(dir / "a" / "image" / "image.nii.gz") +
                        " --reorient LPS -q -o " + q(dir / "b")).exit_code, 0);
  const LoadedImage in = read_image(image);
  const LoadedImage back = read_image(dir / "b" / "image" / "image.nii.gz");
  EXPECT_EQ(orientation_code(read_image(dir / "a" / "image" / "image.nii.gz").image.geometry), "PIR");
  EXPECT_TRUE(in.image.geometry.same_grid(back.image.geometry, 1e-4));
  EXPECT_EQ(in.image.voxels, back.image.voxels);
}

// N4 with a fitting mask on an MR phantom with a bias field: runs, and a mask on another
// grid is refused for that study.
TEST(PrepCommand, N4WithMask) {
  TempDir dir;
  ASSERT_EQ(run_command(bin("spine-phantom") + " --kind mr-t2 --first L4 --last L5 --spacing 2 --margin 10 --bias-field -q -o " +
                        q(dir.path()) + " --name mr").exit_code, 0);
  const fs::path image = dir / "mr" / "image.nii.gz";
  auto r = run_command(bin("spine-prep") + " " + q(image) + " --n4 --n4-mask " + q(dir / "mr" / "labels.nii.gz") +
                       " -q -o " + q(dir / "out"));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_TRUE(fs::exists(dir / "out" / "image" / "image.nii.gz"));
  ASSERT_EQ(run_command(bin("spine-phantom") + " --kind ct --first L4 --last L5 --spacing 3 -q -o " + q(dir.path()) +
                        " --name other").exit_code, 0);  // another grid
  r = run_command(bin("spine-prep") + " " + q(image) + " --n4 --n4-mask " + q(dir / "other" / "labels.nii.gz") +
                  " -o " + q(dir / "out2"));
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_NE(r.output.find("N4 mask is not on the grid"), std::string::npos) << r.output;
}

// A directory with one good and one corrupt study: the good one is processed, the bad one
// reported, exit status 3, and no output folder for the bad one.
TEST(PrepCommand, BatchGoesOnAfterABadStudy) {
  TempDir dir;
  const fs::path image = test::make_ct_phantom(dir);
  fs::create_directories(dir / "in");
  fs::copy_file(image, dir / "in" / "good.nii.gz");
  { std::ofstream(dir / "in" / "bad.nii.gz") << "garbage"; }
  const auto r = run_command(bin("spine-prep") + " " + q(dir / "in") + " -o " + q(dir / "out"));
  EXPECT_EQ(r.exit_code, 3) << r.output;
  EXPECT_NE(r.output.find("bad.nii.gz"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("1 done, 1 failed"), std::string::npos) << r.output;
  EXPECT_TRUE(fs::exists(dir / "out" / "good" / "image.nii.gz"));
  EXPECT_FALSE(fs::exists(dir / "out" / "bad"));
  // --resume skips the finished study and retries the failed one.
  const auto again = run_command(bin("spine-prep") + " " + q(dir / "in") + " --resume -o " + q(dir / "out"));
  EXPECT_EQ(again.exit_code, 3);
  EXPECT_NE(again.output.find("0 done, 1 failed, 1 skipped"), std::string::npos) << again.output;
}

// --max-memory is checked from the header before reading, and again before resampling to
// a finer grid: refused studies name the file and the budget and leave no output.
TEST(PrepCommand, MemoryBudgetIsCheckedBeforeAllocating) {
  TempDir dir;
  const fs::path image = test::make_ct_phantom(dir);  // 2 mm voxels
  const std::uint64_t n = read_image(image).image.voxels.size();
  auto prep = [&](const std::string& args, std::uint64_t budget, const std::string& out) {
    return run_command(bin("spine-prep") + " " + q(image) + " " + args + " --max-memory " + std::to_string(budget) +
                       " -q -o " + q(dir / out));
  };
  // Reading and writing alone takes about 10 bytes per voxel.
  const auto low = prep("", 5 * n, "low");
  EXPECT_NE(low.exit_code, 0);
  EXPECT_NE(low.output.find(image.string() + ": needs about"), std::string::npos) << low.output;
  EXPECT_NE(low.output.find("memory budget"), std::string::npos) << low.output;
  EXPECT_FALSE(fs::exists(dir / "low" / "image"));
  EXPECT_EQ(prep("", 20 * n, "ok").exit_code, 0);
  // 1 mm from 2 mm is eight times the voxels: refused before the resampler allocates them.
  const auto fine = prep("--resample 1", 20 * n, "fine");
  EXPECT_NE(fine.exit_code, 0);
  EXPECT_NE(fine.output.find("memory budget"), std::string::npos) << fine.output;
  EXPECT_FALSE(fs::exists(dir / "fine" / "image"));
  EXPECT_EQ(prep("--resample 3", 20 * n, "coarse").exit_code, 0);
}

// A list file of studies works like a directory.
TEST(PrepCommand, ListFileInput) {
  TempDir dir;
  const fs::path image = test::make_ct_phantom(dir);
  { std::ofstream(dir / "studies.txt") << image.string() << "\n"; }
  const auto r = run_command(bin("spine-prep") + " " + q(dir / "studies.txt") + " -q -o " + q(dir / "out"));
  EXPECT_EQ(r.exit_code, 0) << r.output;
  // Integer CT without value changes stays integer.
  EXPECT_EQ(read_image(dir / "out" / "image" / "image.nii.gz").info.pixel_type, "short");
}

// The real DICOM series converts to NIfTI with its geometry (only with shared data).
TEST(PrepCommand, DicomSeriesToNifti) {
  const fs::path series = test::shared_data() / "ct-abdomen-example" / "example_ct_dicom";
  if (!fs::exists(series)) GTEST_SKIP() << "shared data not present";
  TempDir dir;
  const auto r = run_command(bin("spine-prep") + " " + q(series) + " -o " + q(dir.path()));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const LoadedImage out = read_image(dir / "example_ct_dicom" / "image.nii.gz");
  const LoadedImage in = read_image(series);
  EXPECT_TRUE(out.image.geometry.same_grid(in.image.geometry, 1e-4));
  EXPECT_EQ(out.image.voxels, in.image.voxels);
  // Nothing from the patient module reaches the outputs or the log.
  const std::string prov = test::read_file(dir / "example_ct_dicom" / "provenance.json");
  EXPECT_EQ(prov.find("PatientName"), std::string::npos);
}

}  // namespace
}  // namespace spine
