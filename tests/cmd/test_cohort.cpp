// The cohort as the unit of work: shards and several runs writing into one folder end
// with the same tables and report as one run; --resume keeps every row; failed studies
// come back through failed.txt; the tables load in pandas and R; report.html renders in
// headless Chromium with one row per study and its flag filter working.
#include <regex>
#include <set>

#include <nlohmann/json.hpp>

#include "cmd_util.hpp"
#include "spine/batch.hpp"
#include "spine/csv.hpp"
#include "spine/io.hpp"
#include "spine/preprocess.hpp"

namespace spine {
namespace {

using test::bin;
using test::make_ct_batch;
using test::q;
using test::run_command;
using test::TempDir;
namespace fs = std::filesystem;

// The studies named in a long-form table's first column.
std::set<std::string> studies_in(const fs::path& csv) {
  std::istringstream in(test::read_file(csv));
  std::string line;
  std::getline(in, line);
  std::set<std::string> out;
  while (std::getline(in, line)) out.insert(parse_csv_line(line).at(0));
  return out;
}

int count_of(const std::string& text, const std::string& what) {
  int n = 0;
  for (auto at = text.find(what); at != std::string::npos; at = text.find(what, at + 1)) ++n;
  return n;
}

bool have(const char* program) {
  return run_command(std::string("command -v ") + program + " >/dev/null 2>&1").exit_code == 0;
}

// Two shards run at once into one folder end with the table and lists of a single run;
// a study added later and run with --resume joins the table, as does one re-run with
// --force, and no row is lost.
TEST(Cohort, ShardsAndResumeEndWithTheTableOfOneRun) {
  TempDir dir;
  const fs::path in = make_ct_batch(dir, 4);
  const std::string cmd = bin("spine-seg") + " " + q(in) + " --threads 1 -q --no-overlay";
  ASSERT_EQ(run_command(cmd + " -o " + q(dir / "one")).exit_code, 0);
  std::vector<pid_t> pids;
  for (const char* shard : {"1/2", "2/2"})
    pids.push_back(test::spawn(cmd + " --shard " + shard + " -o " + q(dir / "sharded"), "/dev/null"));
  for (pid_t p : pids) EXPECT_EQ(test::wait_exit(p), 0);
  EXPECT_EQ(test::read_file(dir / "sharded" / "seg.csv"), test::read_file(dir / "one" / "seg.csv"));
  EXPECT_EQ(studies_in(dir / "one" / "seg.csv"), (std::set<std::string>{"s0", "s1", "s2", "s3"}));
  EXPECT_EQ(test::read_file(dir / "sharded" / "flagged.txt"), test::read_file(dir / "one" / "flagged.txt"));
  EXPECT_EQ(count_of(test::read_file(dir / "sharded" / "report.html"), "<tr class=\"study"), 4);
  // Each shard ran only its own studies.
  int shard_logs = 0;
  for (const auto& e : fs::directory_iterator(dir / "sharded")) {
    if (e.path().extension() != ".log") continue;
    ++shard_logs;
    const std::string log = test::read_file(e.path());
    EXPECT_NE(log.find("of the 4 studies found"), std::string::npos) << log;
  }
  EXPECT_EQ(shard_logs, 2);

  fs::copy_file(in / "s0.nii.gz", in / "s4.nii.gz");
  auto r = run_command(cmd + " --resume -o " + q(dir / "one"));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_EQ(studies_in(dir / "one" / "seg.csv"), (std::set<std::string>{"s0", "s1", "s2", "s3", "s4"}));
  r = run_command(bin("spine-seg") + " " + q(in / "s2.nii.gz") + " --threads 1 -q --no-overlay --force -o " +
                  q(dir / "one"));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_EQ(studies_in(dir / "one" / "seg.csv"), (std::set<std::string>{"s0", "s1", "s2", "s3", "s4"}));
}

// A failed study goes on failed.txt with its input's absolute path and a record in
// failures/; given back as input once the file is repaired, it runs, and leaves the list.
TEST(Cohort, FailedListTakesTheFailedStudiesBack) {
  TempDir dir;
  const fs::path in = make_ct_batch(dir, 1);
  { std::ofstream(in / "broken.nii.gz") << "not an image"; }
  const std::string opts = " --threads 1 -q --no-overlay -o " + q(dir / "out");
  auto r = run_command(bin("spine-detect") + " " + q(in) + opts);
  EXPECT_EQ(r.exit_code, 3) << r.output;
  const std::string failed = test::read_file(dir / "out" / "failed.txt");
  EXPECT_NE(failed.find("\n" + fs::absolute(in / "broken.nii.gz").lexically_normal().string() + "\n"), std::string::npos)
      << failed;
  EXPECT_TRUE(fs::exists(dir / "out" / "failures" / "broken.json"));
  EXPECT_NE(test::read_file(dir / "out" / "report.html").find("Failed (1)"), std::string::npos);
  fs::copy_file(in / "s0.nii.gz", in / "broken.nii.gz", fs::copy_options::overwrite_existing);
  fs::copy_file(dir / "out" / "failed.txt", dir / "retry.txt");
  r = run_command(bin("spine-detect") + " " + q(dir / "retry.txt") + opts);
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_FALSE(fs::exists(dir / "out" / "failures" / "broken.json"));
  EXPECT_EQ(test::read_file(dir / "out" / "failed.txt").find("\n/"), std::string::npos);
  EXPECT_EQ(studies_in(dir / "out" / "detect.csv"), (std::set<std::string>{"broken", "s0"}));
}

// The tables as a user's own script reads them: pandas and R take the numeric columns as
// numbers, and no number carries binary noise (85.46000000000001).
TEST(Cohort, TablesLoadInPandasAndR) {
  if (run_command("/usr/bin/python3 -c 'import pandas' 2>/dev/null").exit_code != 0 || !have("Rscript"))
    GTEST_SKIP() << "pandas or R missing (scripts/install-deps.sh installs them)";
  TempDir dir;
  const fs::path in = make_ct_batch(dir, 2);
  const std::string opts = " --threads 1 -q --no-overlay";
  ASSERT_EQ(run_command(bin("spine-seg") + " " + q(in) + opts + " -o " + q(dir / "seg")).exit_code, 0);
  ASSERT_EQ(run_command(bin("spine-detect") + " " + q(in) + opts + " -o " + q(dir / "detect")).exit_code, 0);
  for (const auto& [table, numeric] :
       std::vector<std::pair<fs::path, std::string>>{
           {dir / "seg" / "seg.csv", "volume_ml,intensity_mean,intensity_median,intensity_iqr,centroid_s_mm,naming_confidence"},
           {dir / "detect" / "detect.csv", "confidence,centroid_l_mm,naming_confidence"}}) {
    const std::string py = "import pandas as pd, sys\n"
                           "t = pd.read_csv(sys.argv[1])\n"
                           "assert len(t) >= 2, len(t)\n"
                           "for c in sys.argv[2].split(','):\n"
                           "    assert pd.api.types.is_numeric_dtype(t[c]), (c, t[c].dtype)\n"
                           "print('pandas', len(t), 'rows')\n";
    { std::ofstream(dir / "check.py") << py; }
    auto r = run_command("/usr/bin/python3 " + q(dir / "check.py") + " " + q(table) + " " + numeric + " 2>&1");
    EXPECT_EQ(r.exit_code, 0) << table << ": " << r.output;
    const std::string rs = "a <- commandArgs(TRUE); t <- read.csv(a[1]); stopifnot(nrow(t) >= 2);"
                           "for (c in strsplit(a[2], ',')[[1]]) if (!is.numeric(t[[c]])) stop(c);"
                           "cat('R', nrow(t), 'rows\\n')";
    { std::ofstream(dir / "check.R") << rs; }
    r = run_command("Rscript " + q(dir / "check.R") + " " + q(table) + " " + numeric + " 2>&1");
    EXPECT_EQ(r.exit_code, 0) << table << ": " << r.output;
    // Rounded to what the numbers mean: at most 3 decimals anywhere.
    const std::string text = test::read_file(table);
    EXPECT_FALSE(std::regex_search(text, std::regex("[0-9]\\.[0-9]{4,}"))) << table;
  }
}

// report.html in headless Chromium: one row per study, the flagged study marked, the
// "#flagged" view showing only it, and a screenshot that is a page, not a blank.
TEST(Cohort, ReportRendersInChromium) {
  if (!have("chromium")) GTEST_SKIP() << "chromium missing (scripts/install-deps.sh installs it)";
  TempDir dir;
  ASSERT_EQ(run_command(bin("spine-phantom") + " --kind xray --pixel 1 -q -o " + q(dir / "ph") + " --name xr").exit_code, 0);
  fs::create_directories(dir / "in");
  fs::copy_file(dir / "ph" / "xr" / "image.png", dir / "in" / "spine.png");
  // Noise: refused as a radiograph or flagged, never a silent angle.
  FloatImage noise(make_geometry_2d(400, 800));
  std::uint32_t state = 7;
  for (auto& v : noise.voxels) v = static_cast<float>((state = state * 1664525u + 1013904223u) >> 24);
  write_image(noise, dir / "in" / "noise.png", StoredPixel::kUInt8);
  auto r = run_command(bin("spine-cobb") + " " + q(dir / "in") + " --threads 2 -q -o " + q(dir / "out"));
  ASSERT_TRUE(r.exit_code == 0 || r.exit_code == 3) << r.output;
  const fs::path report = dir / "out" / "report.html";
  ASSERT_TRUE(fs::exists(report));
  const std::string browser = "chromium --headless --no-sandbox --disable-gpu --user-data-dir=" + q(dir / "profile");
  r = run_command(browser + " --dump-dom " + q("file://" + report.string()) + " 2>/dev/null");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const int rows = count_of(r.output, "<tr class=\"study");
  const int done = static_cast<int>(complete_studies(dir / "out", "cobb.json").size());
  EXPECT_EQ(rows, done) << r.output;
  EXPECT_NE(r.output.find(std::to_string(done) + " of " + std::to_string(done) + " shown"), std::string::npos);
  const int flagged = count_of(r.output, "data-flagged=\"1\"");
  EXPECT_GE(flagged, 1) << "the noise image is flagged or failed";
  // The page's script ran on the "#flagged" view: only flagged rows stay shown.
  r = run_command(browser + " --dump-dom " + q("file://" + report.string() + "#flagged") + " 2>/dev/null");
  EXPECT_NE(r.output.find(std::to_string(flagged) + " of " + std::to_string(done) + " shown"), std::string::npos)
      << r.output;
  r = run_command(browser + " --window-size=1200,900 --screenshot=" + q(dir / "shot.png") + " " +
                  q("file://" + report.string()) + " 2>&1");
  ASSERT_TRUE(fs::exists(dir / "shot.png")) << r.output;
  const LoadedImage shot = read_image(dir / "shot.png");
  EXPECT_EQ(shot.image.nx(), 1200u);
  EXPECT_EQ(shot.image.ny(), 900u);
  // Text, thumbnails and histogram bars: many grey levels, not a blank or error page.
  std::set<int> levels;
  for (float v : shot.image.voxels) levels.insert(static_cast<int>(v));
  EXPECT_GT(levels.size(), 64u);
  // The overlays it shows are files beside it.
  EXPECT_NE(test::read_file(report).find("src=\"spine/overlay.png\""), std::string::npos);
}

// A BIDS dataset in, BIDS derivatives out: every T2w / ct image found, the label maps
// under derivatives/spine with BIDS names and a derivative dataset_description.json.
TEST(Cohort, BidsDatasetInAndDerivativesOut) {
  TempDir dir;
  const fs::path ct = test::make_ct_phantom(dir);
  const fs::path bids = dir / "bids";
  fs::create_directories(bids / "sub-01" / "anat");
  fs::create_directories(bids / "sub-02" / "ses-1" / "anat");
  fs::copy_file(ct, bids / "sub-01" / "anat" / "sub-01_ct.nii.gz");
  fs::copy_file(ct, bids / "sub-02" / "ses-1" / "anat" / "sub-02_ses-1_ct.nii.gz");
  { std::ofstream(bids / "dataset_description.json") << R"({"Name": "test", "BIDSVersion": "1.8.0"})"; }
  const auto r = run_command(bin("spine-seg") + " " + q(bids) + " --layout bids --threads 1 -q --no-overlay -o " +
                             q(dir / "out"));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const fs::path d = dir / "out" / "derivatives" / "spine";
  EXPECT_TRUE(fs::exists(d / "sub-01" / "anat" / "sub-01_ct_dseg.nii.gz"));
  EXPECT_TRUE(fs::exists(d / "sub-02" / "ses-1" / "anat" / "sub-02_ses-1_ct_dseg.nii.gz"));
  EXPECT_TRUE(fs::exists(d / "sub-02" / "ses-1" / "anat" / "sub-02_ses-1_ct_segmentation.json"));
  EXPECT_EQ(test::read_file(d / "sub-01" / "anat" / "sub-01_ct_dseg.nii.gz"),
            test::read_file(dir / "out" / "sub-01_ct" / "labels.nii.gz"));
  const auto desc = nlohmann::json::parse(test::read_file(d / "dataset_description.json"));
  EXPECT_EQ(desc["DatasetType"], "derivative");
  EXPECT_EQ(desc["GeneratedBy"][0]["Name"], "spine");
  EXPECT_NE(test::read_file(d / "dseg.tsv").find("\n22\tL3\t#"), std::string::npos);
  EXPECT_EQ(studies_in(dir / "out" / "seg.csv"), (std::set<std::string>{"sub-01_ct", "sub-02_ses-1_ct"}));
}

}  // namespace
}  // namespace spine
