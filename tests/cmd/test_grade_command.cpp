// spine-grade on a synthetic MR phantom (as a volume and as its mid-sagittal slice in a
// PNG): discs found between the bodies where the phantom has discs, well-formed grades,
// the cohort CSV; and its bad-input contract. (Accuracy on real MRI comes from
// scripts/eval_grade.sh; a phantom's grades mean nothing and are not checked.)
#include <algorithm>
#include <array>
#include <fstream>
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

// The phantom's image and labels in the grading frame (PIL), cut to 25 slices left to right.
struct Phantom {
  FloatImage image;
  LabelImage labels;
};

template <class T>
Image<T> middle_slab(const Image<T>& v, std::size_t half) {
  Geometry g = v.geometry;
  const std::size_t k0 = v.nz() / 2 - half;
  g.size[2] = 2 * half + 1;
  g.origin = v.geometry.index_to_lps(0, 0, static_cast<double>(k0));
  Image<T> out(g);
  for (std::size_t k = 0; k < g.size[2]; ++k)
    for (std::size_t y = 0; y < v.ny(); ++y)
      for (std::size_t x = 0; x < v.nx(); ++x) out.at(x, y, k) = v.at(x, y, k0 + k);
  return out;
}

Phantom make_phantom(const TempDir& dir) {
  const auto r = run_command(bin("spine-phantom") + " --kind mr-t2 --first T12 --last L5 --spacing 1 --seed 31 -q -o " +
                             q(dir / "ph") + " --name t2");
  EXPECT_EQ(r.exit_code, 0) << r.output;
  Phantom p;
  p.image = middle_slab(reorient(read_image(dir / "ph" / "t2" / "image.nii.gz").image, "PIL"), 12);
  p.labels = middle_slab(reorient(read_labels(dir / "ph" / "t2" / "labels.nii.gz"), "PIL"), 12);
  return p;
}

// Whether a phantom disc lies within `r` pixels of (x, y) in slice k.
bool near_disc(const LabelImage& l, double x, double y, std::size_t k, int r) {
  for (int dy = -r; dy <= r; ++dy)
    for (int dx = -r; dx <= r; ++dx) {
      const long xi = std::lround(x) + dx, yi = std::lround(y) + dy;
      if (xi < 0 || yi < 0 || xi >= static_cast<long>(l.nx()) || yi >= static_cast<long>(l.ny())) continue;
      if (is_disc_label(l.at(static_cast<std::size_t>(xi), static_cast<std::size_t>(yi), k))) return true;
    }
  return false;
}

void check_grades(const nlohmann::json& j, const LabelImage& truth, std::size_t k) {
  ASSERT_GE(j["discs"].size(), 4u) << j.dump();
  int between = 0;
  for (const auto& d : j["discs"]) {
    double sum = 0;
    for (int g = 1; g <= 5; ++g) sum += d["pfirrmann"]["probabilities"][std::to_string(g)].get<double>();
    EXPECT_NEAR(sum, 1.0, 0.01);
    const int grade = d["pfirrmann"]["grade"];
    EXPECT_TRUE(grade >= 1 && grade <= 5);
    ASSERT_EQ(d["findings"].size(), 7u);
    for (const auto& [name, f] : d["findings"].items())
      EXPECT_EQ(f["present"].get<bool>(), f["probability"].get<double>() >= f["threshold"].get<double>()) << name;
    // A flagged disc is never reported reliable.
    if (!d["flags"].empty()) {
      EXPECT_FALSE(d["reliable"].get<bool>()) << d.dump();
    }
    // The phantom (T12..L5) labels the discs T12/L1..L4/L5 only; the model may also find a
    // disc at its ends (over T12, or under L5 where the phantom has no labelled disc).
    const int label = d["label"];
    if (d["placement"] != "between bodies" || label < 119 || label > 123) continue;
    ++between;
    // Centres on a phantom disc (any level: the MR model's names on phantoms are not its
    // strength, see the MR smoke test in test_spine_seg_command.cpp).
    EXPECT_TRUE(near_disc(truth, d["centre_px"][0], d["centre_px"][1], k, 3)) << d.dump();
  }
  EXPECT_GE(between, 4);
  // Top to bottom, consecutive levels.
  for (std::size_t i = 1; i < j["discs"].size(); ++i)
    EXPECT_LT(j["discs"][i - 1]["centre_px"][1].get<double>(), j["discs"][i]["centre_px"][1].get<double>());
}

TEST(GradeCommand, PhantomVolumeAndSliceGradedWithCohortTable) {
  TempDir dir;
  const Phantom p = make_phantom(dir);
  fs::create_directories(dir / "in");
  write_image(p.image, dir / "in" / "volume.nii.gz");
  // The middle slice as an 8-bit PNG (no spacing in the file: --spacing 1).
  FloatImage slice(make_geometry_2d(p.image.nx(), p.image.ny()));
  float hi = 0;
  for (float v : p.image.voxels) hi = std::max(hi, v);
  for (std::size_t y = 0; y < p.image.ny(); ++y)
    for (std::size_t x = 0; x < p.image.nx(); ++x) slice.at(x, y) = std::min(255.f, 255.f * p.image.at(x, y, 12) / hi);
  write_image(slice, dir / "in" / "slice.png", StoredPixel::kUInt8);
  const auto r = run_command(bin("spine-grade") + " " + q(dir / "in") + " --spacing 1 --threads 2 --write-labels -o " +
                             q(dir / "out"));
  ASSERT_EQ(r.exit_code, 0) << r.output;

  const auto jv = nlohmann::json::parse(test::read_file(dir / "out" / "volume" / "grades.json"));
  EXPECT_NE(jv["grading_slice"]["choice"].get<std::string>().find("through the median left-right position"),
            std::string::npos);
  const int k = jv["grading_slice"]["index"];
  ASSERT_TRUE(k >= 0 && k < 25);
  check_grades(jv, p.labels, static_cast<std::size_t>(k));
  const auto js = nlohmann::json::parse(test::read_file(dir / "out" / "slice" / "grades.json"));
  EXPECT_EQ(js["grading_slice"]["choice"], "the input slice (2D)");
  check_grades(js, p.labels, 12);
  // The 2D slice reaches the slab's left and right ends everywhere; that is no cut body.
  for (const auto& f : js["flags"]) EXPECT_EQ(f.get<std::string>().find("cut by the field of view"), std::string::npos) << f;
  EXPECT_FALSE(js["model_limitations"].empty());
  for (const char* s : {"volume", "slice"}) EXPECT_TRUE(fs::exists(dir / "out" / s / "overlay.png")) << s;
  // --write-labels: the slice graded and its segmentation, on the grid grades.json's pixel
  // positions refer to, every disc's centre on a disc of the map, with colour tables.
  for (const char* s : {"volume", "slice"}) {
    const auto j = nlohmann::json::parse(test::read_file(dir / "out" / s / "grades.json"));
    const FloatImage graded = read_image(dir / "out" / s / "grading_slice.nii.gz").image;
    const LabelImage labels = read_labels(dir / "out" / s / "labels.nii.gz");
    EXPECT_EQ(graded.nx(), j["grading_slice"]["size_px"][0].get<std::size_t>()) << s;
    EXPECT_EQ(graded.ny(), j["grading_slice"]["size_px"][1].get<std::size_t>()) << s;
    EXPECT_EQ(labels.nx(), graded.nx()) << s;
    EXPECT_EQ(labels.ny(), graded.ny()) << s;
    EXPECT_EQ(labels.nz(), 1u) << s;
    const std::set<int> present(labels.voxels.begin(), labels.voxels.end());
    for (const auto& d : j["discs"]) {
      // The body each disc is named after (the one above it) is in the map; the phantom's
      // own discs (T12/L1..L4/L5, as check_grades) lie on a disc of the map.
      const int label = d["label"];
      EXPECT_TRUE(present.count(label - 100)) << s << ": " << d.dump();
      if (d["placement"] == "between bodies" && label >= 119 && label <= 123)
        EXPECT_TRUE(near_disc(labels, d["centre_px"][0], d["centre_px"][1], 0, 3)) << s << ": " << d.dump();
    }
    EXPECT_TRUE(fs::exists(dir / "out" / s / "labels.ctbl")) << s;
    EXPECT_TRUE(fs::exists(dir / "out" / s / "labels.itksnap.txt")) << s;
  }

  // One CSV row per graded disc of both studies.
  std::ifstream csv(dir / "out" / "grades.csv");
  std::string line;
  std::getline(csv, line);
  EXPECT_EQ(line.rfind("study,disc,reliable,naming_reliable,pfirrmann,p1,", 0), 0u) << line;
  std::size_t rows = 0;
  while (std::getline(csv, line)) ++rows;
  EXPECT_EQ(rows, jv["discs"].size() + js["discs"].size());
}

// The centroid (LPS mm) of one label in a label volume.
std::array<double, 3> centroid_lps(const LabelImage& l, int label) {
  double x = 0, y = 0, z = 0, n = 0;
  for (std::size_t k = 0; k < l.nz(); ++k)
    for (std::size_t j = 0; j < l.ny(); ++j)
      for (std::size_t i = 0; i < l.nx(); ++i)
        if (l.at(i, j, k) == label) {
          x += static_cast<double>(i), y += static_cast<double>(j), z += static_cast<double>(k), ++n;
        }
  return l.geometry.index_to_lps(x / n, y / n, z / n);
}

// The phantom written as each of `series` (NIfTI) in DIR/in: one study's series.
Phantom phantom_as_series(const TempDir& dir, const std::vector<std::string>& series) {
  Phantom p = make_phantom(dir);
  fs::create_directories(dir / "in");
  for (const auto& s : series) write_image(p.image, dir / "in" / (s + ".nii.gz"));
  return p;
}

// Two series of one study (names differing in t1/t2) are compared where they show the
// same discs. The same phantom as both agrees; the phantom moved one disc up in the patient
// (so that its L1/L2 lies where the other's T12/L1 does) names every shared disc one level
// lower, and the series naming higher takes the lower names, flagged. Alone, or with
// --no-series-pairing, a series keeps its own names.
TEST(GradeCommand, SeriesOfOneStudyNamedAlike) {
  TempDir dir;
  const Phantom p = phantom_as_series(dir, {"p1_t1", "p1_t2", "p2_t2"});
  const auto a = centroid_lps(p.labels, 100 + label::kT12), b = centroid_lps(p.labels, 100 + label::kL1);
  FloatImage moved = p.image;
  for (int i = 0; i < 3; ++i) moved.geometry.origin[i] += a[i] - b[i];
  write_image(moved, dir / "in" / "p2_t1.nii.gz");
  const auto r = run_command(bin("spine-grade") + " " + q(dir / "in") + " --discs-only --no-overlay --threads 2 -o " +
                             q(dir / "out"));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  auto grades = [&](const char* s) { return nlohmann::json::parse(test::read_file(dir / "out" / s / "grades.json")); };
  auto names = [](const nlohmann::json& j) {
    std::vector<std::string> n;
    for (const auto& d : j["discs"]) n.push_back(d["name"]);
    return n;
  };

  const auto p1 = grades("p1_t1");
  ASSERT_FALSE(p1["series_of_study"].is_null()) << p1.dump();
  const auto& other = p1["series_of_study"]["other_series"];
  ASSERT_EQ(other.size(), 1u);
  EXPECT_EQ(other[0]["sequence"], "t2");
  EXPECT_TRUE(other[0]["compared"].get<bool>()) << other.dump();
  EXPECT_GE(other[0]["matched_discs"].get<int>(), 3);
  EXPECT_EQ(other[0]["this_series_names_levels_higher"], 0);
  EXPECT_EQ(p1["series_of_study"]["names_moved_down_levels"], 0);
  EXPECT_EQ(names(p1), names(grades("p1_t2")));

  const auto alone = names(grades("p1_t1"));
  const auto p2t1 = grades("p2_t1"), p2t2 = grades("p2_t2");
  // The moved series names the shared discs lower: the unmoved one takes its names.
  EXPECT_EQ(p2t2["series_of_study"]["other_series"][0]["this_series_names_levels_higher"], 1) << p2t2.dump();
  EXPECT_EQ(p2t2["series_of_study"]["names_moved_down_levels"], 1);
  EXPECT_FALSE(p2t2["naming_reliable"].get<bool>());
  EXPECT_FALSE(p2t1["naming_reliable"].get<bool>());
  EXPECT_EQ(p2t1["series_of_study"]["names_moved_down_levels"], 0);
  bool flagged = false;
  for (const auto& f : p2t2["flags"])
    flagged = flagged ||
              f.get<std::string>().find("names moved 1 level(s) down to the study's t1 series") != std::string::npos;
  EXPECT_TRUE(flagged) << p2t2["flags"].dump();
  // Each disc of the unmoved series now carries the name of the next disc down in its own naming.
  const auto moved_names = names(p2t2);
  ASSERT_FALSE(moved_names.empty());
  const auto first = std::find(alone.begin(), alone.end(), moved_names.front());
  ASSERT_NE(first, alone.end());
  ASSERT_GT(first - alone.begin(), 0);
  const auto above = static_cast<std::size_t>(first - alone.begin()) - 1;
  EXPECT_EQ(p2t2["discs"][0]["centre_px"], p1["discs"][above]["centre_px"]);

  // Series named by their sequence alone belong to the study of their folder.
  fs::create_directories(dir / "p4");
  fs::copy_file(dir / "in" / "p1_t1.nii.gz", dir / "p4" / "T1_SAG.nii.gz");
  fs::copy_file(dir / "in" / "p1_t2.nii.gz", dir / "p4" / "T2_SAG.nii.gz");
  const auto r3 = run_command(bin("spine-grade") + " " + q(dir / "p4") + " --discs-only --no-overlay --threads 2 -o " +
                              q(dir / "out3"));
  ASSERT_EQ(r3.exit_code, 0) << r3.output;
  const auto sag = nlohmann::json::parse(test::read_file(dir / "out3" / "T1_SAG" / "grades.json"));
  ASSERT_FALSE(sag["series_of_study"].is_null()) << sag.dump();
  EXPECT_EQ(sag["series_of_study"]["other_series"][0]["sequence"], "T2_SAG");
  EXPECT_TRUE(sag["series_of_study"]["other_series"][0]["compared"].get<bool>());

  // --no-series-pairing: each series alone, as p1_t1 named its discs.
  const auto r2 = run_command(bin("spine-grade") + " " + q(dir / "in" / "p2_t2.nii.gz") + " " + q(dir / "in" / "p2_t1.nii.gz") +
                              " --discs-only --no-overlay --no-series-pairing --threads 2 -o " + q(dir / "out2"));
  ASSERT_EQ(r2.exit_code, 0) << r2.output;
  const auto solo = nlohmann::json::parse(test::read_file(dir / "out2" / "p2_t2" / "grades.json"));
  EXPECT_TRUE(solo["series_of_study"].is_null());
  EXPECT_EQ(names(solo), alone);
}

// Under --anonymise-names a study's series still find each other (by their real names,
// before the pseudonyms), and the results name the other series by its t1/t2 token alone:
// the words after it in a file name could be a patient's.
TEST(GradeCommand, SeriesOfOneStudyUnderPseudonymsNameNoOne) {
  TempDir dir;
  phantom_as_series(dir, {"p3_t1_Smith", "p3_t2_Smith"});
  const auto r = run_command(bin("spine-grade") + " " + q(dir / "in") + " --discs-only --threads 2 --anonymise-names " +
                             q(dir / "names.csv") + " -o " + q(dir / "out"));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_EQ(r.output.find("Smith"), std::string::npos) << r.output;
  int studies = 0;
  for (const auto& e : fs::directory_iterator(dir / "out")) {
    if (!fs::exists(e.path() / "grades.json")) continue;
    ++studies;
    const std::string text = test::read_file(e.path() / "grades.json");
    EXPECT_EQ(text.find("Smith"), std::string::npos) << e.path();
    const auto j = nlohmann::json::parse(text);
    ASSERT_FALSE(j["series_of_study"].is_null()) << text;
    const std::string mine = j["series_of_study"]["sequence"], other = j["series_of_study"]["other_series"][0]["sequence"];
    EXPECT_TRUE((mine == "t1" && other == "t2") || (mine == "t2" && other == "t1")) << mine << " " << other;
    EXPECT_TRUE(j["series_of_study"]["other_series"][0]["compared"].get<bool>());
  }
  EXPECT_EQ(studies, 2);
}

TEST(GradeCommand, BadInputsInABatch) {
  TempDir dir;
  const Phantom p = make_phantom(dir);
  fs::create_directories(dir / "in");
  write_image(p.image, dir / "in" / "good.nii.gz");
  // A PNG without spacing, run without --spacing.
  write_image(FloatImage(make_geometry_2d(200, 300), 100.f), dir / "in" / "nospacing.png", StoredPixel::kUInt8);
  // CT intensities (HU) where an MRI is expected.
  FloatImage ct(p.image.geometry, -1000.f);
  for (std::size_t i = 0; i < ct.voxels.size(); ++i) ct.voxels[i] = i % 3 ? -1000.f : 300.f;
  write_image(ct, dir / "in" / "ct.nii.gz");
  // An MRI-like volume without a spine.
  FloatImage noise(p.image.geometry, 0.f);
  for (std::size_t i = 0; i < noise.voxels.size(); ++i) noise.voxels[i] = static_cast<float>((i * 7919) % 97);
  write_image(noise, dir / "in" / "nospine.nii.gz");
  // A study whose T2 series is bad: the T1 series is graded and says it could not be compared.
  write_image(p.image, dir / "in" / "pair_t1.nii.gz");
  write_image(noise, dir / "in" / "pair_t2.nii.gz");
  const auto r = run_command(bin("spine-grade") + " " + q(dir / "in") + " --threads 2 -o " + q(dir / "out"));
  EXPECT_EQ(r.exit_code, 3) << r.output;
  EXPECT_NE(r.output.find("nospacing.png: is a png slice without pixel spacing: give --spacing (mm)"), std::string::npos)
      << r.output;
  EXPECT_NE(r.output.find("ct.nii.gz: "), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("nospine.nii.gz: "), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("pair_t2.nii.gz: "), std::string::npos) << r.output;
  for (const char* s : {"nospacing", "ct", "nospine", "pair_t2"}) EXPECT_FALSE(fs::exists(dir / "out" / s)) << s;
  ASSERT_TRUE(fs::exists(dir / "out" / "good" / "grades.json"));
  const auto pair = nlohmann::json::parse(test::read_file(dir / "out" / "pair_t1" / "grades.json"));
  ASSERT_EQ(pair["series_of_study"]["other_series"].size(), 1u) << pair.dump();
  EXPECT_FALSE(pair["series_of_study"]["other_series"][0]["compared"].get<bool>());
  EXPECT_EQ(pair["series_of_study"]["other_series"][0]["why"], "its discs could not be found");
  // The table holds the good study only.
  const std::string csv = test::read_file(dir / "out" / "grades.csv");
  EXPECT_NE(csv.find("\ngood,"), std::string::npos);
  EXPECT_EQ(csv.find("nospine"), std::string::npos);

  // A grading model that is not one: a model error, before any study.
  { std::ofstream(dir / "bad.pt") << "not a model"; }
  const auto r2 = run_command(bin("spine-grade") + " " + q(dir / "in" / "good.nii.gz") + " --grade-model " +
                              q(dir / "bad.pt") + " -o " + q(dir / "out2"));
  EXPECT_NE(r2.exit_code, 0) << r2.output;
  EXPECT_NE(r2.output.find("bad.pt"), std::string::npos) << r2.output;
  EXPECT_FALSE(fs::exists(dir / "out2" / "good"));
}

}  // namespace
}  // namespace spine
