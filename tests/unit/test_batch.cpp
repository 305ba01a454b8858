// Study discovery and the batch runner: atomic study folders, failures that do not stop
// the batch, --resume, --force, provenance, and SHA-256.
#include "spine/batch.hpp"
#include "spine/error.hpp"
#include "spine/io.hpp"
#include "spine/log.hpp"
#include "spine/csv.hpp"
#include "spine/pseudonyms.hpp"
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
  // Nothing but the study folders, the run log and the failure record (what puts the
  // bad study on the cohort's failed list) is left in the output folder.
  for (const auto& e : fs::directory_iterator(dir / "out")) {
    const std::string n = e.path().filename().string();
    EXPECT_TRUE(n == "good" || n == "good2" || n == kLockFile || n == kFailuresDir || n.rfind("test-", 0) == 0) << n;
  }
  EXPECT_EQ(std::distance(fs::directory_iterator(dir / "out" / kFailuresDir), fs::directory_iterator()), 1);
  EXPECT_TRUE(fs::exists(dir / "out" / kFailuresDir / "bad.json"));
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


std::string read_all(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

// Every file under dir, concatenated (outputs, provenance, logs).
std::string everything_under(const fs::path& dir) {
  std::string all;
  for (const auto& e : fs::recursive_directory_iterator(dir))
    if (e.is_regular_file()) all += e.path().filename().string() + "\n" + read_all(e.path());
  return all;
}

TEST(Csv, QuotesAndParsesBack) {
  for (const std::string s : {"plain", "a,b", "say \"hi\"", ""}) {
    const auto f = parse_csv_line(csv_field(s) + "," + csv_field("x"));
    ASSERT_EQ(f.size(), 2u);
    EXPECT_EQ(f[0], s);
  }
  EXPECT_THROW(parse_csv_line("\"open"), std::runtime_error);
}

TEST_F(Batch, AnonymisedNamesNeverReachOutputsOrLogs) {
  // Study names that are patient IDs; one fails with an error naming its file.
  write_image(test::oblique_test_image(), dir / "PAT0042.nii.gz");
  write_image(test::oblique_test_image(), dir / "PAT0077.nii.gz");
  { std::ofstream(dir / "PAT0099.nii.gz") << "not an image"; }
  const auto studies = discover_studies({dir.path().string()});
  ASSERT_EQ(studies.size(), 3u);
  BatchOptions opt;
  opt.tool = "test";
  opt.output_dir = dir / "out";
  opt.name_map = dir / "private" / "names.csv";
  log::setup("test", "off");
  auto process = [](const Study& s, const fs::path& work) {
    const LoadedImage in = read_image(s.path);  // the bad one throws "PATH: ..."
    write_text_file(work / "result.json", "{\"study\": \"" + s.name + "\"}");
    return nlohmann::json{{"voxels", in.image.voxels.size()}};
  };
  const auto summary = run_batch(studies, opt, process);
  EXPECT_EQ(summary.count(StudyStatus::kDone), 2);
  ASSERT_EQ(summary.count(StudyStatus::kFailed), 1);
  const std::string all = everything_under(opt.output_dir);
  for (const char* id : {"PAT0042", "PAT0077", "PAT0099"}) EXPECT_EQ(all.find(id), std::string::npos) << id;
  EXPECT_EQ(all.find(dir.path().string()), std::string::npos) << "an input path reached the outputs";
  for (const auto& r : summary.results) {
    EXPECT_EQ(r.study.rfind("anon-", 0), 0u) << r.study;
    EXPECT_EQ(r.message.find("PAT0099"), std::string::npos) << r.message;
  }
  // The failed study's message still says what was wrong, under its pseudonym.
  EXPECT_NE(summary.results[2].message.find(summary.results[2].study), std::string::npos) << summary.results[2].message;
  // The map links back; a second run reuses the same pseudonyms (so --resume works).
  const std::string map = read_all(opt.name_map);
  EXPECT_NE(map.find("PAT0042"), std::string::npos);
  // It names patients: nobody but its owner may read it.
  EXPECT_EQ(fs::status(opt.name_map).permissions() & (fs::perms::group_all | fs::perms::others_all), fs::perms::none);
  opt.resume = true;
  const auto again = run_batch(studies, opt, process);
  for (std::size_t i = 0; i < 3; ++i) EXPECT_EQ(again.results[i].study, summary.results[i].study);
  EXPECT_EQ(again.count(StudyStatus::kSkipped), 2);
  EXPECT_EQ(read_all(opt.name_map), map);
  // Distinct pseudonyms, not derived from the names.
  EXPECT_NE(summary.results[0].study, summary.results[1].study);
}

TEST_F(Batch, NameMapOutsideOutputAndWellFormed) {
  BatchOptions opt;
  opt.tool = "test";
  opt.output_dir = dir / "out";
  opt.name_map = dir / "out" / "names.csv";
  const std::vector<Study> studies{{"PAT1", {}}};
  auto process = [](const Study&, const fs::path&) { return nlohmann::json{}; };
  EXPECT_THROW(run_batch(studies, opt, process), Error);
  opt.name_map = dir / "names.csv";
  { std::ofstream(opt.name_map) << "id,name\nx,y\n"; }
  EXPECT_THROW(run_batch(studies, opt, process), Error);
  { std::ofstream(opt.name_map) << "pseudonym,study\nanon-1,PAT1\nanon-2,PAT1\n"; }
  EXPECT_THROW(run_batch(studies, opt, process), Error);
  { std::ofstream(opt.name_map) << "pseudonym,study\nanon-00000000aa,\"PAT,1\"\n"; }
  const std::vector<Study> comma{{"PAT,1", {}}};
  const auto summary = run_batch(comma, opt, process);
  ASSERT_EQ(summary.results.size(), 1u);
  EXPECT_EQ(summary.results[0].study, "anon-00000000aa");
  EXPECT_TRUE(fs::is_directory(opt.output_dir / "anon-00000000aa"));
}

TEST(Redaction, WholeWordsOnly) {
  log::set_redactions({{"/data/P12", "anon-x"}, {"P12", "anon-x"}});
  EXPECT_EQ(log::redact("/data/P12/IM1.dcm: bad; P12 again; XP123 kept"), "anon-x/IM1.dcm: bad; anon-x again; XP123 kept");
  log::set_redactions({});
  EXPECT_EQ(log::redact("P12"), "P12");
}

}  // namespace
}  // namespace spine
