// Study discovery and the batch runner: atomic study folders, failures that do not stop
// the batch, --resume, --force, provenance, and SHA-256.
#include "spine/batch.hpp"
#include "spine/error.hpp"
#include "spine/io.hpp"
#include "spine/log.hpp"
#include "test_util.hpp"

namespace spine {
namespace {

namespace fs = std::filesystem;

class Batch : public ::testing::Test {
 protected:
  void SetUp() override { log::setup("test", "off"); }
  test::TempDir dir;
};

TEST(Sha256, KnownVectors) {
  EXPECT_EQ(sha256_bytes(""), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  EXPECT_EQ(sha256_bytes("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  EXPECT_EQ(sha256_bytes(std::string(1000, 'a')),
            "41edece42d63e8d9bf515a9ba6932e1c20cbc9f5a5d134645adb5db1b9737ea3");
}

TEST_F(Batch, DiscoversFilesDirectoriesAndLists) {
  write_image(test::oblique_test_image(), dir / "a.nii.gz");
  write_image(test::oblique_test_image(), dir / "b.nrrd");
  { std::ofstream(dir / "notes.md") << "ignored"; }
  auto studies = discover_studies({dir.path().string()});
  ASSERT_EQ(studies.size(), 2u);
  EXPECT_EQ(studies[0].name, "a");
  EXPECT_EQ(studies[1].name, "b");
  { std::ofstream(dir / "list.txt") << "# comment\na.nii.gz\n\n" << (dir / "b.nrrd").string() << "\n"; }
  studies = discover_studies({(dir / "list.txt").string()});
  ASSERT_EQ(studies.size(), 2u);
  EXPECT_EQ(studies[0].path, dir / "a.nii.gz");
  EXPECT_THROW(discover_studies({(dir / "missing.nii").string()}), Error);
  EXPECT_THROW(discover_studies({(dir / "a.nii.gz").string(), (dir / "a.nii.gz").string()}), Error);
  // Same file name in two folders: the folder tells them apart.
  fs::create_directories(dir / "case1");
  fs::create_directories(dir / "case2");
  fs::copy_file(dir / "a.nii.gz", dir / "case1" / "image.nii.gz");
  fs::copy_file(dir / "a.nii.gz", dir / "case2" / "image.nii.gz");
  studies = discover_studies({(dir / "case1" / "image.nii.gz").string(), (dir / "case2" / "image.nii.gz").string()});
  ASSERT_EQ(studies.size(), 2u);
  EXPECT_EQ(studies[0].name, "case1_image");
  EXPECT_EQ(studies[1].name, "case2_image");
  fs::create_directories(dir / "empty");
  EXPECT_THROW(discover_studies({(dir / "empty").string()}), Error);
}

TEST_F(Batch, FailedStudyLeavesNothingAndBatchGoesOn) {
  BatchOptions opt;
  opt.tool = "test";
  opt.output_dir = dir / "out";
  const std::vector<Study> studies{{"good", {}}, {"bad", {}}, {"good2", {}}};
  const auto summary = run_batch(studies, opt, [](const Study& s, const fs::path& work) {
    write_text_file(work / "result.txt", s.name);
    if (s.name == "bad") throw input_error("bad.nii: broken");
    return nlohmann::json{{"ok", true}};
  });
  EXPECT_EQ(summary.count(StudyStatus::kDone), 2);
  EXPECT_EQ(summary.count(StudyStatus::kFailed), 1);
  EXPECT_EQ(summary.exit_status(), ExitStatus::kSomeFailed);
  EXPECT_FALSE(fs::exists(dir / "out" / "bad"));
  EXPECT_TRUE(fs::exists(dir / "out" / "good" / "result.txt"));
  // Nothing but the study folders and the run log is left in the output folder.
  for (const auto& e : fs::directory_iterator(dir / "out")) {
    const std::string n = e.path().filename().string();
    EXPECT_TRUE(n == "good" || n == "good2" || n == kLockFile || n.rfind("test-", 0) == 0) << n;
  }
  const auto prov = nlohmann::json::parse(test::read_file(dir / "out" / "good" / kProvenanceFile));
  EXPECT_EQ(prov["tool"], "test");
  EXPECT_EQ(prov["result"]["ok"], true);
  EXPECT_TRUE(prov.contains("version") && prov.contains("git_revision") && prov.contains("started"));
}

TEST_F(Batch, ExistingOutputNeedsForceOrResume) {
  BatchOptions opt;
  opt.tool = "test";
  opt.output_dir = dir / "out";
  int runs = 0;
  const auto process = [&](const Study&, const fs::path& work) {
    ++runs;
    write_text_file(work / "r.txt", std::to_string(runs));
    return nlohmann::json{};
  };
  const std::vector<Study> one{{"s", {}}};
  ASSERT_EQ(run_batch(one, opt, process).exit_status(), ExitStatus::kOk);
  // Again without --force: refused, the old output is untouched.
  const auto again = run_batch(one, opt, process);
  EXPECT_EQ(again.exit_status(), ExitStatus::kInput);
  EXPECT_NE(again.results[0].message.find("--force"), std::string::npos);
  EXPECT_EQ(test::read_file(dir / "out" / "s" / "r.txt"), "1");
  opt.resume = true;
  EXPECT_EQ(run_batch(one, opt, process).count(StudyStatus::kSkipped), 1);
  EXPECT_EQ(runs, 1);
  opt.resume = false;
  opt.force = true;
  EXPECT_EQ(run_batch(one, opt, process).exit_status(), ExitStatus::kOk);
  EXPECT_EQ(test::read_file(dir / "out" / "s" / "r.txt"), "2");
}

TEST_F(Batch, ResumeRedoesIncompleteOutputs) {
  BatchOptions opt;
  opt.tool = "test";
  opt.output_dir = dir / "out";
  opt.resume = true;
  fs::create_directories(dir / "out" / "s");  // no provenance: incomplete
  int runs = 0;
  const auto summary = run_batch({{"s", {}}}, opt, [&](const Study&, const fs::path&) {
    ++runs;
    return nlohmann::json{};
  });
  // A folder without provenance (not known to be spine's) is reported, not overwritten.
  EXPECT_EQ(summary.count(StudyStatus::kFailed), 1);
  EXPECT_EQ(runs, 0);
}

// Outputs that spine wrote but that were damaged since (a listed file shortened) are not
// taken as complete by --resume: the study runs again and its folder is whole after.
TEST_F(Batch, ResumeRedoesDamagedOutputs) {
  BatchOptions opt;
  opt.tool = "test";
  opt.output_dir = dir / "out";
  int runs = 0;
  const auto process = [&](const Study&, const fs::path& work) {
    ++runs;
    write_text_file(work / "r.txt", "result " + std::to_string(runs));
    return nlohmann::json{};
  };
  ASSERT_EQ(run_batch({{"s", {}}}, opt, process).exit_status(), ExitStatus::kOk);
  EXPECT_TRUE(study_outputs_complete(dir / "out" / "s"));
  write_text_file(dir / "out" / "s" / "r.txt", "res");
  EXPECT_FALSE(study_outputs_complete(dir / "out" / "s"));
  opt.resume = true;
  const auto summary = run_batch({{"s", {}}}, opt, process);
  EXPECT_EQ(summary.count(StudyStatus::kDone), 1);
  EXPECT_EQ(runs, 2);
  EXPECT_TRUE(study_outputs_complete(dir / "out" / "s"));
  EXPECT_EQ(test::read_file(dir / "out" / "s" / "r.txt"), "result 2");
}

}  // namespace
}  // namespace spine
