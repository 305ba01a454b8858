// spine-measure as a user runs it: on a fractured CT phantom with its label map
// (measurements.json with units and methods, the long-form cohort table, the overlay),
// a folder of label maps for a batch, and the errors for a missing or wrong label map.
#include <nlohmann/json.hpp>

#include "cmd_util.hpp"
#include "spine/csv.hpp"

namespace spine {
namespace {

using test::bin;
using test::q;
using test::run_command;
using test::TempDir;
namespace fs = std::filesystem;

fs::path fractured_phantom(const TempDir& dir, const std::string& name) {
  const auto r = run_command(bin("spine-phantom") + " --kind ct --first T12 --last L2 --spacing 1.5 --margin 10 "
                             "--fracture L1:wedge:0.35 --marrow-hu 90 -q -o " + q(dir.path()) + " --name " + name);
  EXPECT_EQ(r.exit_code, 0) << r.output;
  return dir / name;
}

TEST(MeasureCommand, FracturedPhantomWithItsLabels) {
  TempDir dir;
  const fs::path study = fractured_phantom(dir, "ph");
  const auto r = run_command(bin("spine-measure") + " " + q(study / "image.nii.gz") + " --labels " +
                             q(study / "labels.nii.gz") + " -q -o " + q(dir / "out"));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const auto j = nlohmann::json::parse(test::read_file(dir / "out" / "image" / "measurements.json"));
  const auto truth = nlohmann::json::parse(test::read_file(study / "truth.json"));
  EXPECT_EQ(j["modality"], "ct");
  ASSERT_EQ(j["vertebrae"].size(), 3u);
  for (std::size_t i = 0; i < 3; ++i) {
    const auto& v = j["vertebrae"][i];
    const auto& t = truth["vertebrae"][i];
    ASSERT_EQ(v["name"], t["name"]);
    EXPECT_EQ(v["heights"]["middle"]["unit"], "mm");
    EXPECT_NEAR(v["heights"]["anterior"]["value"].get<double>(), t["heights_mm"]["anterior"].get<double>(), 0.8);
    EXPECT_EQ(v["genant"]["grade"], t["fracture"]["genant_grade"]) << v["name"];
    EXPECT_NEAR(v["trabecular_attenuation"]["median"]["value"].get<double>(), 90.0, 5.0);
  }
  EXPECT_EQ(j["vertebrae"][1]["genant"]["type"], "wedge");
  EXPECT_EQ(j["bone_screen"]["category"], "osteoporosis likely");
  EXPECT_TRUE(j["methods"].contains("genant"));
  // The cohort table: long form, one header, every row with a unit; it parses back.
  const std::string csv = test::read_file(dir / "out" / "measurements.csv");
  std::istringstream lines(csv);
  std::string line;
  std::getline(lines, line);
  EXPECT_EQ(line, "study,structure,measure,value,unit");
  int rows = 0, l1_grade = -1;
  while (std::getline(lines, line)) {
    const auto f = parse_csv_line(line);
    ASSERT_EQ(f.size(), 5u) << line;
    EXPECT_EQ(f[0], "image");
    EXPECT_FALSE(f[4].empty());
    if (f[1] == "L1" && f[2] == "genant_grade") l1_grade = std::stoi(f[3]);
    ++rows;
  }
  EXPECT_GT(rows, 40);
  EXPECT_EQ(l1_grade, truth["vertebrae"][1]["fracture"]["genant_grade"].get<int>());
  EXPECT_GE(l1_grade, 2);
  EXPECT_GT(fs::file_size(dir / "out" / "image" / "overlay.png"), 10000u);
}

TEST(MeasureCommand, FolderOfLabelMapsAndClearErrors) {
  TempDir dir;
  const fs::path a = fractured_phantom(dir, "a"), b = fractured_phantom(dir, "b");
  fs::create_directories(dir / "images");
  fs::create_directories(dir / "labels");
  fs::copy_file(a / "image.nii.gz", dir / "images" / "a.nii.gz");
  fs::copy_file(b / "image.nii.gz", dir / "images" / "b.nii.gz");
  fs::copy_file(a / "labels.nii.gz", dir / "labels" / "a.nii.gz");
  fs::copy_file(b / "labels.nii.gz", dir / "labels" / "b_labels.nii.gz");
  { std::ofstream(dir / "images" / "c.nii.gz") << "x"; }  // no label map: reported, the rest go on
  const auto r = run_command(bin("spine-measure") + " " + q(dir / "images") + " --labels " + q(dir / "labels") +
                             " -o " + q(dir / "out"));
  EXPECT_EQ(r.exit_code, 3) << r.output;
  EXPECT_NE(r.output.find("2 done, 1 failed"), std::string::npos) << r.output;
  EXPECT_TRUE(fs::exists(dir / "out" / "a" / "measurements.json"));
  EXPECT_TRUE(fs::exists(dir / "out" / "b" / "measurements.json"));
  EXPECT_FALSE(fs::exists(dir / "out" / "c"));
  const std::string csv = test::read_file(dir / "out" / "measurements.csv");
  EXPECT_NE(csv.find("\na,L1,genant_grade,"), std::string::npos);
  EXPECT_NE(csv.find("\nb,L1,genant_grade,"), std::string::npos);
  // With pseudonyms the label maps are still found by the studies' own names, and
  // neither name reaches the output.
  const auto anon = run_command(bin("spine-measure") + " " + q(dir / "images" / "a.nii.gz") + " " +
                                q(dir / "images" / "b.nii.gz") + " --labels " + q(dir / "labels") +
                                " --anonymise-names " + q(dir / "map.csv") + " -q -o " + q(dir / "anon"));
  EXPECT_EQ(anon.exit_code, 0) << anon.output;
  const std::string anon_csv = test::read_file(dir / "anon" / "measurements.csv");
  EXPECT_EQ(anon_csv.find("\na,"), std::string::npos);
  EXPECT_EQ(anon_csv.find("\nb,"), std::string::npos);
  EXPECT_NE(anon_csv.find("\nanon-"), std::string::npos) << anon_csv.substr(0, 200);
  // An image (integer HU) as its own label map is refused, not measured.
  const auto wrong = run_command(bin("spine-measure") + " " + q(a / "image.nii.gz") + " --labels " +
                                 q(dir / "images" / "a.nii.gz") + " -o " + q(dir / "out2"));
  EXPECT_NE(wrong.exit_code, 0);
  EXPECT_NE(wrong.output.find("not a label map"), std::string::npos) << wrong.output;
  EXPECT_FALSE(fs::exists(dir / "out2" / "image"));
}

// Without --labels spine-measure segments first, loading only the model the study needs
// (a CT here: the MR model is checked, not loaded) and naming it in provenance.
TEST(MeasureCommand, SegmentsWhenGivenNoLabelsLoadingOneModel) {
  TempDir dir;
  const fs::path ct = test::make_ct_phantom(dir);
  const auto r = run_command(bin("spine-measure") + " " + q(ct) + " --threads 2 -o " + q(dir / "out"));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("model ct-spine-seg"), std::string::npos) << r.output;
  EXPECT_EQ(r.output.find("model mr-spine-seg"), std::string::npos) << r.output;
  const auto prov = nlohmann::json::parse(test::read_file(dir / "out" / "image" / "provenance.json"));
  ASSERT_EQ(prov["models"].size(), 1u) << prov["models"].dump();
  EXPECT_EQ(prov["models"][0]["name"], "ct-spine-seg");
}

}  // namespace
}  // namespace spine
