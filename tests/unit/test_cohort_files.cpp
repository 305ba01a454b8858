// Pieces of the cohort files: shards, rounding for tables, per-structure statistics, the
// report's escaping and list files, and a batch's failure records.
#include <fstream>
#include <map>
#include <set>

#include "spine/batch.hpp"
#include "spine/bids.hpp"
#include "spine/cohort_report.hpp"
#include "spine/csv.hpp"
#include "spine/error.hpp"
#include "spine/io.hpp"
#include "spine/log.hpp"
#include "spine/structure_stats.hpp"
#include "test_util.hpp"

namespace spine {
namespace {

namespace fs = std::filesystem;

TEST(Shard, EveryStudyInExactlyOneShardAndSharesAboutEqual) {
  std::map<int, int> count;
  for (int i = 0; i < 2000; ++i) {
    const std::string name = "sub-" + std::to_string(i);
    const int k = shard_of(name, 4);
    ASSERT_GE(k, 1);
    ASSERT_LE(k, 4);
    EXPECT_EQ(shard_of(name, 4), k);  // a function of the name alone
    ++count[k];
  }
  for (const auto& [k, n] : count) EXPECT_NEAR(n, 500, 75) << "shard " << k;
  EXPECT_EQ(shard_of("anything", 1), 1);
}

TEST(Shard, ParsesKOverNAndRefusesTheRest) {
  EXPECT_EQ(parse_shard("3/8"), std::make_pair(3, 8));
  EXPECT_EQ(parse_shard("1/1"), std::make_pair(1, 1));
  for (const char* bad : {"0/4", "5/4", "4", "a/b", "1/0", "1/4x", "-1/4", "/4", "1/"}) {
    try {
      parse_shard(bad);
      ADD_FAILURE() << bad << " accepted";
    } catch (const Error& e) {
      EXPECT_EQ(e.exit_status(), ExitStatus::kUsage) << bad;
      EXPECT_NE(std::string(e.what()).find(bad), std::string::npos) << e.what();
    }
  }
}

TEST(TableNumbers, RoundedNumbersPrintAsWritten) {
  EXPECT_EQ(csv_number(round_to(85.4600001, 0.01)), "85.46");
  EXPECT_EQ(csv_number(round_to(0.1 + 0.2, 0.1)), "0.3");
  EXPECT_EQ(csv_number(round_to(-12.345, 0.1)), "-12.3");
  EXPECT_EQ(csv_number(round_to(1234.6, 1)), "1235");
  EXPECT_EQ(csv_number(round_to(17, 5)), "15");
  EXPECT_EQ(csv_number(std::nan("")), "");
  EXPECT_EQ(csv_number(1.0 / 0.0), "");
  // Every hundredth from -100 to 100 prints with at most two decimals.
  for (int i = -10000; i <= 10000; ++i) {
    const std::string s = csv_number(round_to(i / 100.0 + 1e-9, 0.01));
    const auto dot = s.find('.');
    ASSERT_TRUE(dot == std::string::npos || s.size() - dot - 1 <= 2) << s;
  }
}

TEST(StructureStatistics, VolumeMeanMedianAndQuartilesPerLabel) {
  FloatImage img(make_geometry(4, 2, 1, {2, 1, 3}));   // 6 mm3 voxels
  LabelImage lab(img.geometry);
  // Label 1: values 1, 2, 3, 4 (quartiles as numpy: 1.75, 2.5, 3.25); label 2: 10, 30.
  const float values[8] = {1, 2, 3, 4, 10, 30, 0, 0};
  const std::int16_t labels[8] = {1, 1, 1, 1, 2, 2, 0, 0};
  for (int i = 0; i < 8; ++i) img.voxels[i] = values[i], lab.voxels[i] = labels[i];
  const auto s = structure_statistics(img, lab);
  ASSERT_EQ(s.size(), 2u);
  EXPECT_EQ(s.at(1).voxels, 4u);
  EXPECT_NEAR(s.at(1).volume_ml, 0.024, 1e-12);
  EXPECT_NEAR(s.at(1).mean, 2.5, 1e-9);
  EXPECT_NEAR(s.at(1).median, 2.5, 1e-9);
  EXPECT_NEAR(s.at(1).q1, 1.75, 1e-9);
  EXPECT_NEAR(s.at(1).q3, 3.25, 1e-9);
  EXPECT_NEAR(s.at(1).sd, 1.2909944, 1e-6);
  EXPECT_NEAR(s.at(2).median, 20, 1e-9);
  EXPECT_NEAR(s.at(2).q1, 15, 1e-9);
  LabelImage other(make_geometry(3, 2, 1));
  EXPECT_THROW(structure_statistics(img, other), Error);
}

class CohortFiles : public ::testing::Test {
 protected:
  void SetUp() override { log::setup("test", "off"); }
  test::TempDir dir;
};

// A study name or flag with markup is shown as text, never run as markup; its link is
// percent-encoded; the flagged list takes the input from the study's provenance.
TEST_F(CohortFiles, ReportEscapesNamesAndListsFlaggedInputs) {
  const std::string evil = "a<script>alert(1)</script> #1";
  fs::create_directories(dir / evil);
  write_text_file(dir / evil / kProvenanceFile, R"({"inputs":[{"path":"/data/in/x.nii.gz"}]})");
  write_text_file(dir / evil / "overlay.png", "a picture");  // shown only when it is there
  CohortReport r;
  r.tool = "spine-test";
  r.columns = {{"angle", true}};
  r.rows.push_back({evil, {"12.5"}, {"flag <b>x</b>"}, true, "overlay.png", {"result.json"}});
  r.rows.push_back({"fine", {"3"}, {}, true, "", {}});
  r.figures = {{"angle", {12.5, 3}}};
  write_cohort_report(dir.path(), r);
  const std::string html = test::read_file(dir / "report.html");
  EXPECT_EQ(html.find("<script>alert"), std::string::npos);
  EXPECT_NE(html.find("a&lt;script&gt;alert(1)&lt;/script&gt; #1"), std::string::npos);
  EXPECT_NE(html.find("flag &lt;b&gt;x&lt;/b&gt;"), std::string::npos);
  EXPECT_NE(html.find("href=\"a%3Cscript%3Ealert%281%29%3C/script%3E%20%231/overlay.png\""), std::string::npos);
  EXPECT_NE(html.find("<svg"), std::string::npos);
  const std::string flagged = test::read_file(dir / "flagged.txt");
  EXPECT_NE(flagged.find("\n/data/in/x.nii.gz\n"), std::string::npos) << flagged;
  EXPECT_EQ(flagged.find("fine"), std::string::npos);
  // The list file reads back as input: one study, the flagged one (missing here, so it
  // would fail in the batch with its reason, as every listed path does).
  const auto studies = discover_studies({(dir / "flagged.txt").string()});
  ASSERT_EQ(studies.size(), 1u);
  EXPECT_EQ(studies[0].path, fs::path("/data/in/x.nii.gz"));
}

// A failure leaves a record (input as an absolute path) that a later success removes;
// a study that failed only because its outputs already existed is not on the list.
TEST_F(CohortFiles, FailureRecordsFollowTheLastRun) {
  const fs::path out = dir / "out";
  BatchOptions o;
  o.tool = "spine-test";
  o.output_dir = out;
  bool fail = true;
  const auto process = [&](const Study&, const fs::path& work) {
    if (fail) throw input_error("broken on purpose");
    write_text_file(work / "r.json", "{}");
    return nlohmann::json();
  };
  write_text_file(dir / "a.nii.gz", "an input");
  const std::vector<Study> studies{{"a", dir / "a.nii.gz"}};
  run_batch(studies, o, process);
  auto failed = failed_studies(out);
  ASSERT_EQ(failed.size(), 1u);
  EXPECT_EQ(failed[0].study, "a");
  EXPECT_EQ(failed[0].input, (dir / "a.nii.gz").string());
  EXPECT_NE(failed[0].error.find("broken on purpose"), std::string::npos);
  fail = false;
  const auto again = run_batch(studies, o, process);
  ASSERT_EQ(again.count(StudyStatus::kDone), 1) << again.results.at(0).message;
  EXPECT_TRUE(failed_studies(out).empty());
  EXPECT_FALSE(fs::exists(out / kFailuresDir / "a.json"));
  run_batch(studies, o, process);  // "output exists": a failure of this run, not of the study
  EXPECT_TRUE(failed_studies(out).empty());
}

}  // namespace
}  // namespace spine

namespace spine {
namespace {

void touch_image(const fs::path& p) {
  fs::create_directories(p.parent_path());
  write_image(test::oblique_test_image(), p);
}

// A fake DICOM slice: enough for discovery, which looks for "DICM" at byte 128.
void touch_dicom(const fs::path& p) {
  fs::create_directories(p.parent_path());
  std::ofstream(p, std::ios::binary) << std::string(128, '\0') << "DICM";
}

std::vector<std::string> names_of(const std::vector<Study>& studies) {
  std::vector<std::string> out;
  for (const auto& s : studies) out.push_back(s.name);
  return out;
}

TEST_F(CohortFiles, DiscoversTheAnatomicalImagesOfABidsDataset) {
  const fs::path root = dir / "bids";
  fs::create_directories(root);
  write_text_file(root / "dataset_description.json", R"({"Name": "t", "BIDSVersion": "1.8.0"})");
  touch_image(root / "sub-01" / "anat" / "sub-01_T2w.nii.gz");
  touch_image(root / "sub-01" / "anat" / "sub-01_T1w.nii.gz");
  touch_image(root / "sub-01" / "anat" / "sub-01_FLAIR.nii.gz");          // not a suffix the models read
  touch_image(root / "sub-02" / "ses-a" / "anat" / "sub-02_ses-a_ct.nii.gz");
  touch_image(root / "sub-02" / "ses-b" / "anat" / "sub-02_ses-b_T2w.nii");
  touch_image(root / "sub-02" / "ses-b" / "func" / "sub-02_ses-b_bold.nii.gz");
  touch_image(root / "derivatives" / "x" / "sub-01" / "anat" / "sub-01_T2w.nii.gz");
  touch_image(root / "sourcedata" / "sub-01_T2w.nii.gz");
  touch_dicom(root / "sub-03" / "anat" / "sub-03_T2w" / "IM1");
  write_text_file(root / "sub-01" / "anat" / "sub-01_T2w.json", "{}");
  const auto studies = discover_studies({root.string()});
  EXPECT_EQ(names_of(studies), (std::vector<std::string>{"sub-01_T1w", "sub-01_T2w", "sub-02_ses-a_ct",
                                                          "sub-02_ses-b_T2w", "sub-03_T2w"}));
  EXPECT_EQ(studies.back().path, root / "sub-03" / "anat" / "sub-03_T2w");
  // Subject folders with anat/ alone (no dataset_description.json) are enough; none
  // usable is an error.
  fs::remove_all(root);
  touch_image(root / "sub-09" / "anat" / "sub-09_bold.nii.gz");
  EXPECT_THROW(discover_studies({root.string()}), Error);
  // DICOM series folders that happen to be called sub-*: a folder of series, not BIDS.
  fs::remove_all(root);
  touch_dicom(root / "sub-01" / "IM1");
  touch_dicom(root / "sub-02" / "IM1");
  EXPECT_EQ(names_of(discover_studies({root.string()})), (std::vector<std::string>{"sub-01", "sub-02"}));
}

TEST_F(CohortFiles, NnunetChannelsAndNestedDicomSeries) {
  touch_image(dir / "in" / "case_001_0000.nii.gz");
  touch_image(dir / "in" / "case_001_0001.nii.gz");  // a second channel: left out
  touch_image(dir / "in" / "case_002_0000.nii.gz");
  touch_image(dir / "in" / "other_0001.nii.gz");     // no _0000 beside it: a study of its own
  touch_dicom(dir / "in" / "patient1" / "study1" / "series2" / "IM1");
  const auto studies = discover_studies({(dir / "in").string()});
  EXPECT_EQ(names_of(studies), (std::vector<std::string>{"case_001", "case_002", "other_0001", "patient1_study1_series2"}));
}

TEST(BidsNames, AnatFolderFromTheFileName) {
  EXPECT_EQ(bids_anat_folder("sub-01_T2w"), fs::path("sub-01/anat"));
  EXPECT_EQ(bids_anat_folder("sub-01_ses-2_acq-sag_run-1_T2w"), fs::path("sub-01/ses-2/anat"));
  EXPECT_FALSE(bids_anat_folder("case_001"));
  EXPECT_FALSE(bids_anat_folder("sub-01"));
  EXPECT_FALSE(bids_anat_folder("sub-_T2w"));
  EXPECT_FALSE(bids_anat_folder("sub-01_ses_T2w"));
  EXPECT_FALSE(bids_anat_folder("anon-3f2a"));
}

}  // namespace
}  // namespace spine
