// spine-cobb on phantom radiographs and on bad input: outputs, CSV, flags, exit statuses.
#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <regex>
#include <set>

#include <nlohmann/json.hpp>

#include "cmd_util.hpp"
#include "spine/io.hpp"
#include "spine/xray_landmarks.hpp"

namespace spine {
namespace {

using test::bin;
using test::q;
using test::run_command;
using test::TempDir;
namespace fs = std::filesystem;

fs::path make_radiograph(const TempDir& dir, const std::string& name, double cobb, int seed) {
  const auto r = run_command(bin("spine-phantom") + " --kind xray --pixel 0.6 -q --scoliosis " + std::to_string(cobb) +
                             " --seed " + std::to_string(seed) + " -o " + q(dir / "phantoms") + " --name " + name);
  EXPECT_EQ(r.exit_code, 0) << r.output;
  return dir / "phantoms" / name / "image.png";
}

// The distance (pixels) between each landmark in two cobb.json results.
std::vector<double> landmark_shifts(const nlohmann::json& a, const nlohmann::json& b) {
  std::vector<double> shifts;
  for (int k = 0; k < 68; ++k)
    shifts.push_back(std::hypot(a["landmarks_px"][k][0].get<double>() - b["landmarks_px"][k][0].get<double>(),
                                a["landmarks_px"][k][1].get<double>() - b["landmarks_px"][k][1].get<double>()));
  return shifts;
}

double largest_landmark_shift(const nlohmann::json& a, const nlohmann::json& b) {
  const auto shifts = landmark_shifts(a, b);
  return *std::max_element(shifts.begin(), shifts.end());
}

// spine-cobb `run` with `options` into `out`; its cobb.json.
nlohmann::json cobb_json(const std::string& run, const std::string& options, const fs::path& out) {
  const auto r = run_command(run + " " + options + " -o " + q(out));
  EXPECT_EQ(r.exit_code, 0) << r.output;
  return nlohmann::json::parse(test::read_file(out / "image" / "cobb.json"));
}

// spine-cobb on `image` with `option value` out of its range: a usage error (exit 1) that
// names the option and writes nothing to `out`.
void expect_option_refused(const fs::path& image, const std::string& option, const std::string& value,
                           const fs::path& out) {
  const auto bad = run_command(bin("spine-cobb") + " " + q(image) + " " + option + " " + value + " -o " + q(out));
  EXPECT_EQ(bad.exit_code, 1) << bad.output;
  EXPECT_NE(bad.output.find(option), std::string::npos) << bad.output;
  EXPECT_FALSE(fs::exists(out));
}

// A phantom radiograph gives cobb.json with every documented field, landmarks inside the
// image, an overlay, and one CSV row.
TEST(CobbCommand, PhantomRadiographOutputs) {
  TempDir dir;
  const fs::path image = make_radiograph(dir, "xr", 25, 3);
  const auto r = run_command(bin("spine-cobb") + " " + q(image) + " --threads 2 -o " + q(dir / "out"));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const auto j = nlohmann::json::parse(test::read_file(dir / "out" / "image" / "cobb.json"));
  for (const char* key : {"study", "angles_deg", "major", "grade", "landmarks_px", "confidence", "flags"})
    EXPECT_TRUE(j.contains(key)) << key;
  for (const char* key : {"pt", "mt", "tl"}) EXPECT_TRUE(j["angles_deg"].contains(key)) << key;
  // The shipped landmark model knows where it was trained: said in the result and the log.
  ASSERT_TRUE(j["model_limitations"].is_array());
  EXPECT_FALSE(j["model_limitations"].empty());
  EXPECT_NE(r.output.find("AASCE"), std::string::npos) << r.output;
  for (const char* key : {"angle_deg", "upper_end", "lower_end", "apex", "convex_side"})
    EXPECT_TRUE(j["major"].contains(key)) << key;
  ASSERT_EQ(j["landmarks_px"].size(), 68u);
  ASSERT_EQ(j["confidence"].size(), 68u);
  const LoadedImage img = read_image(image);
  for (const auto& p : j["landmarks_px"]) {
    EXPECT_GE(p[0].get<double>(), -0.5 * img.image.nx());
    EXPECT_LE(p[0].get<double>(), 1.5 * img.image.nx());
  }
  const std::set<std::string> grades{"spinal curve", "mild", "moderate", "severe"};
  EXPECT_TRUE(grades.count(j["grade"].get<std::string>()));
  const LoadedImage overlay = read_image(dir / "out" / "image" / "overlay.png");
  EXPECT_EQ(overlay.image.geometry.dimension, 2);
  EXPECT_EQ(overlay.info.components, 3);
  const std::string csv = test::read_file(dir / "out" / "cobb.csv");
  EXPECT_EQ(csv.rfind("study,reliable,pt_deg,mt_deg,tl_deg,major_deg,", 0), 0u);
  EXPECT_EQ(std::count(csv.begin(), csv.end(), '\n'), 2);
  // `reliable` is false exactly when a flag is raised, in the JSON and the CSV row.
  ASSERT_TRUE(j["reliable"].is_boolean());
  EXPECT_EQ(j["reliable"].get<bool>(), j["flags"].empty());
  EXPECT_NE(csv.find(std::string("\nimage,") + (j["reliable"].get<bool>() ? "true," : "false,")), std::string::npos) << csv;
  ASSERT_TRUE(j["spine_finder"].is_object());
  EXPECT_EQ(j["spine_finder"]["crop_px"].size(), 4u);
  const auto prov = nlohmann::json::parse(test::read_file(dir / "out" / "image" / "provenance.json"));
  EXPECT_EQ(prov["models"].size(), 4u);  // both landmark stages, the level anchors and the spine finder
  EXPECT_EQ(j["corner_model"]["name"], "xray-ap-corners");
  EXPECT_EQ(j["anchor_model"]["name"], "xray-ap-level-anchors");
  // The level anchors' reading of the chain's ends, and whether it was re-counted (also
  // the CSV's levels_recounted column).
  ASSERT_TRUE(j["levels"].is_object());
  const std::set<std::string> tops{"C7", "T1", "T2"}, bottoms{"L4", "L5", "S1"};
  EXPECT_TRUE(tops.count(j["levels"]["top_vertebra_is"].get<std::string>()));
  EXPECT_TRUE(bottoms.count(j["levels"]["lowest_vertebra_is"].get<std::string>()));
  EXPECT_GE(j["levels"]["top_posterior"].get<double>(), 1.0 / 3);
  EXPECT_LE(j["levels"]["top_posterior"].get<double>(), 1.0);
  EXPECT_EQ(j["levels"]["recounted"].get<bool>(), !j["levels"]["change"].get<std::string>().empty());
  EXPECT_NE(csv.find("mean_confidence,levels_recounted,flags\n"), std::string::npos) << csv;
  EXPECT_TRUE(std::regex_search(csv, std::regex(",(spinal curve|mild|moderate|severe),[0-9.]+,(true|false),"))) << csv;
  for (const auto& c : j["confidence"]) {
    EXPECT_GE(c.get<double>(), 0.0);
    EXPECT_LE(c.get<double>(), 1.0);
  }
}

// Without the second stage the landmarks are the first stage's, and they differ from the
// two-stage ones (the second stage moves corners). The spine finder takes the phantom's
// bright bone for hardware, so the second stage is asked to run over it.
TEST(CobbCommand, NoCornerRefinementSkipsTheSecondStage) {
  TempDir dir;
  const fs::path image = make_radiograph(dir, "xr", 25, 3);
  const auto a = run_command(bin("spine-cobb") + " " + q(image) + " --threads 2 --no-overlay -q --refine-over-hardware -o " +
                             q(dir / "two"));
  const auto b = run_command(bin("spine-cobb") + " " + q(image) + " --threads 2 --no-overlay -q --no-corner-refinement -o " +
                             q(dir / "one"));
  ASSERT_EQ(a.exit_code, 0) << a.output;
  ASSERT_EQ(b.exit_code, 0) << b.output;
  const auto two = nlohmann::json::parse(test::read_file(dir / "two" / "image" / "cobb.json"));
  const auto one = nlohmann::json::parse(test::read_file(dir / "one" / "image" / "cobb.json"));
  EXPECT_TRUE(one["corner_model"].is_null());
  EXPECT_TRUE(one["corners_unrefined"].empty());
  EXPECT_EQ(one["corner_refinement"], "off (--no-corner-refinement)");
  EXPECT_EQ(two["corner_refinement"], "second stage");
  EXPECT_GT(largest_landmark_shift(two, one), 0.5);
  const auto prov = nlohmann::json::parse(test::read_file(dir / "one" / "image" / "provenance.json"));
  EXPECT_EQ(prov["models"].size(), 3u);  // first stage, level anchors and spine finder
}

// --precision int8 runs the two landmark stages from the shipped int8 copies, the default
// from the float models; the copies place the landmarks close to the originals (on real
// training films the first stage's corners moved a median 0.33 working pixels,
// models/xray-landmarks.md "Int8 copies of both stages"), and the result and provenance
// say which files ran.
TEST(CobbCommand, PrecisionPicksTheInt8OrFloatModels) {
  TempDir dir;
  const fs::path image = make_radiograph(dir, "xr", 25, 3);
  const std::string run = bin("spine-cobb") + " " + q(image) + " --threads 2 --no-overlay -q --refine-over-hardware";
  const auto a = run_command(run + " --precision int8 -o " + q(dir / "int8"));
  const auto b = run_command(run + " -o " + q(dir / "fp32"));
  ASSERT_EQ(a.exit_code, 0) << a.output;
  ASSERT_EQ(b.exit_code, 0) << b.output;
  const auto i8 = nlohmann::json::parse(test::read_file(dir / "int8" / "image" / "cobb.json"));
  const auto f32 = nlohmann::json::parse(test::read_file(dir / "fp32" / "image" / "cobb.json"));
  auto ends_int8 = [](const nlohmann::json& m) {
    const auto v = m["version"].get<std::string>();
    return v.size() > 5 && v.compare(v.size() - 5, 5, "+int8") == 0;
  };
  EXPECT_TRUE(ends_int8(i8["model"])) << i8["model"];
  EXPECT_TRUE(ends_int8(i8["corner_model"])) << i8["corner_model"];
  EXPECT_FALSE(ends_int8(f32["model"])) << f32["model"];
  EXPECT_FALSE(ends_int8(f32["corner_model"])) << f32["corner_model"];
  EXPECT_EQ(i8["model"]["name"], f32["model"]["name"]);
  const auto shifts = landmark_shifts(i8, f32);
  const double total = std::accumulate(shifts.begin(), shifts.end(), 0.0);
  // 1.8 px on this phantom (2026-12-06); a copy that had lost its weights or its scales
  // would put landmarks tens of pixels off.
  EXPECT_LT(total / 68, 6.0);
  EXPECT_GT(largest_landmark_shift(i8, f32), 0.0);  // different arithmetic, not the same file
  const auto prov = nlohmann::json::parse(test::read_file(dir / "int8" / "image" / "provenance.json"));
  EXPECT_NE(prov.dump().find("+int8"), std::string::npos) << prov.dump();
  expect_option_refused(image, "--precision", "fp16", dir / "bad");
}

// --ensemble-reading: with split-corners (the default) only the corner stage's pair reads
// one side of the film each, so the first stage's landmarks are those of `all` exactly;
// with split the first stage's change too. Provenance records the reading.
TEST(CobbCommand, EnsembleReadingSplitsOnlyTheStagesItNames) {
  TempDir dir;
  const fs::path image = make_radiograph(dir, "xr", 25, 3);
  const std::string run = bin("spine-cobb") + " " + q(image) + " --threads 2 --no-overlay -q --refine-over-hardware";
  auto landmarks = [&](const std::string& options, const std::string& name) {
    return cobb_json(run, options, dir / name);
  };
  const auto first_all = landmarks("--no-corner-refinement --ensemble-reading all", "first-all");
  const auto first_default = landmarks("--no-corner-refinement", "first-default");
  const auto first_split = landmarks("--no-corner-refinement --ensemble-reading split", "first-split");
  EXPECT_EQ(largest_landmark_shift(first_all, first_default), 0.0);
  EXPECT_GT(largest_landmark_shift(first_all, first_split), 0.0);
  const auto both_all = landmarks("--ensemble-reading all", "both-all");
  const auto both_default = landmarks("", "both-default");
  EXPECT_GT(largest_landmark_shift(both_all, both_default), 0.0);  // the corner stage reads differently
  const auto prov = nlohmann::json::parse(test::read_file(dir / "both-default" / "image" / "provenance.json"));
  EXPECT_NE(prov.dump().find("\"ensemble_reading\":\"split-corners\""), std::string::npos) << prov.dump();
  expect_option_refused(image, "--ensemble-reading", "half", dir / "bad");
}

// --stage-disagreement: the vertebrae it held back are listed in cobb.json, and only their
// corners differ from those of the plain mean (--stage-disagreement 0); the option is
// recorded in provenance, a negative value refused. (combine_stage_corners itself is
// tested in test_xray_centreline_tilt.cpp.)
TEST(CobbCommand, StageDisagreementMovesOnlyTheVertebraeItHoldsBack) {
  TempDir dir;
  const fs::path image = make_radiograph(dir, "xr", 25, 3);
  // With the centreline blend off: it turns each vertebra towards the line through its
  // neighbours' centres, which a held-back vertebra moves too.
  const std::string run = bin("spine-cobb") + " " + q(image) +
                          " --threads 2 --no-overlay -q --refine-over-hardware --centreline-weight 0";
  const auto held = cobb_json(run, "--stage-disagreement 1", dir / "1");
  const auto plain = cobb_json(run, "--stage-disagreement 0", dir / "0");
  EXPECT_TRUE(plain["second_stage_held_back"].empty());
  ASSERT_TRUE(held["second_stage_held_back"].is_array()) << held.dump();
  std::set<std::string> names;
  for (const auto& v : held["second_stage_held_back"]) names.insert(v.get<std::string>());
  ASSERT_FALSE(names.empty()) << "at 1 degree some vertebra of this phantom should be held back";
  const auto shifts = landmark_shifts(held, plain);
  ASSERT_EQ(shifts.size(), 68u);
  for (int v = 0; v < 17; ++v) {
    double moved = 0;
    for (int c = 0; c < 4; ++c) moved = std::max(moved, shifts[static_cast<std::size_t>(4 * v + c)]);
    if (names.count(cobb_vertebra_name(v)))
      EXPECT_GT(moved, 0.0) << cobb_vertebra_name(v);
    else
      EXPECT_LT(moved, 1e-6) << cobb_vertebra_name(v);
  }
  const auto prov = nlohmann::json::parse(test::read_file(dir / "1" / "image" / "provenance.json"));
  EXPECT_NE(prov.dump().find("\"stage_disagreement_deg\":1.0"), std::string::npos) << prov.dump();
  expect_option_refused(image, "--stage-disagreement", "-1", dir / "bad");
}

// Where the spine finder sees hardware, the film keeps the first stage's corners (the
// second stage's crops snap corners onto screw heads), says so in cobb.json, and stays
// flagged; --refine-over-hardware runs the second stage anyway.
TEST(CobbCommand, HardwareInViewKeepsTheFirstStagesCorners) {
  TempDir dir;
  const fs::path image = make_radiograph(dir, "xr", 25, 3);
  // Rods and pedicle screws drawn over the middle vertebrae, brighter than any bone.
  LoadedImage film = read_image(image);
  // Metal at the pixels within 8 of (x, y) that `inside(dx, dy)` takes.
  const auto paint = [&](double x, double y, auto inside) {
    for (int dy = -8; dy <= 8; ++dy)
      for (int dx = -8; dx <= 8; ++dx) {
        const long px = std::lround(x) + dx, py = std::lround(y) + dy;
        if (inside(dx, dy) && px >= 0 && py >= 0 && px < static_cast<long>(film.image.nx()) &&
            py < static_cast<long>(film.image.ny()))
          film.image.at(static_cast<std::size_t>(px), static_cast<std::size_t>(py)) = 255.f;
      }
  };
  const auto rod = [](int dx, int) { return std::abs(dx) <= 3; };
  const auto screw = [](int dx, int dy) { return dx * dx + dy * dy <= 64; };
  const auto truth = nlohmann::json::parse(test::read_file(image.parent_path() / "truth.json"));
  for (int v = 5; v < 14; ++v)
    for (int side = 0; side < 2; ++side) {
      const auto& top = truth["landmarks_px"][4 * v + side];
      const auto& bottom = truth["landmarks_px"][4 * v + 2 + side];
      const double inset = side == 0 ? 12 : -12;
      for (double t = 0; t <= 1; t += 0.01) {
        const double x = (1 - t) * top[0].get<double>() + t * bottom[0].get<double>() + inset;
        const double y = (1 - t) * top[1].get<double>() + t * bottom[1].get<double>();
        paint(x, y, rod);
        if (t > 0.4 && t < 0.6) paint(x, y, screw);
      }
    }
  write_image(film.image, dir / "rods.png", StoredPixel::kUInt8);
  const std::string run = bin("spine-cobb") + " " + q(dir / "rods.png") + " --threads 2 --no-overlay -q";
  const auto a = run_command(run + " -o " + q(dir / "default"));
  const auto b = run_command(run + " --no-corner-refinement -o " + q(dir / "first"));
  const auto c = run_command(run + " --refine-over-hardware -o " + q(dir / "over"));
  for (const auto* r : {&a, &b, &c}) ASSERT_EQ(r->exit_code, 0) << r->output;
  const auto def = nlohmann::json::parse(test::read_file(dir / "default" / "rods" / "cobb.json"));
  const auto first = nlohmann::json::parse(test::read_file(dir / "first" / "rods" / "cobb.json"));
  const auto over = nlohmann::json::parse(test::read_file(dir / "over" / "rods" / "cobb.json"));
  ASSERT_GE(def["spine_finder"]["hardware_pixels"].get<int>(), 3) << def["spine_finder"].dump();
  EXPECT_EQ(def["corner_refinement"], "skipped: hardware in view, corners from the first stage");
  EXPECT_FALSE(def["reliable"].get<bool>());
  EXPECT_EQ(largest_landmark_shift(def, first), 0.0);
  EXPECT_EQ(over["corner_refinement"], "second stage");
  EXPECT_GT(largest_landmark_shift(over, first), 0.5);
  const auto prov = nlohmann::json::parse(test::read_file(dir / "over" / "rods" / "provenance.json"));
  EXPECT_TRUE(prov["config"]["refine_over_hardware"].get<bool>());
}

// Corners read at three zooms and averaged move the landmarks against one reading, and
// the zooms are recorded; a zoom outside 0.5..2 is a usage error that writes nothing.
TEST(CobbCommand, CornerZoomsAverageReadingsAndAreChecked) {
  TempDir dir;
  const fs::path image = make_radiograph(dir, "xr", 25, 3);
  const auto a = run_command(bin("spine-cobb") + " " + q(image) + " --threads 2 --no-overlay -q --refine-over-hardware -o " +
                             q(dir / "one"));
  const auto b = run_command(bin("spine-cobb") + " " + q(image) +
                             " --threads 2 --no-overlay -q --refine-over-hardware --corner-zooms 0.9,1,1.1 -o " +
                             q(dir / "three"));
  ASSERT_EQ(a.exit_code, 0) << a.output;
  ASSERT_EQ(b.exit_code, 0) << b.output;
  const auto one = nlohmann::json::parse(test::read_file(dir / "one" / "image" / "cobb.json"));
  const auto three = nlohmann::json::parse(test::read_file(dir / "three" / "image" / "cobb.json"));
  EXPECT_GT(largest_landmark_shift(three, one), 0.1);
  const auto prov = nlohmann::json::parse(test::read_file(dir / "three" / "image" / "provenance.json"));
  EXPECT_EQ(prov["config"]["corner_zooms"].size(), 3u) << prov["config"].dump();
  expect_option_refused(image, "--corner-zooms", "0.9,3", dir / "bad");
}

// The corners end between the two stages' positions by --second-stage-weight: 0 keeps the
// first stage's corners (as --no-corner-refinement does), the default 0.5 is the midpoint
// of 0 and 1, and a weight outside 0..1 is a usage error that writes nothing.
TEST(CobbCommand, SecondStageWeightPlacesCornersBetweenTheStages) {
  TempDir dir;
  const fs::path image = make_radiograph(dir, "xr", 25, 3);
  // Without the centreline blend, which turns each vertebra after the stages have placed it,
  // and with the same weight for every vertebra (--stage-disagreement 0: since 2026-12-07 a
  // vertebra whose two stages' tilts differ by more than 5 degrees weighs the second less).
  const std::string run = bin("spine-cobb") + " " + q(image) +
                          " --threads 2 --no-overlay -q --refine-over-hardware --centreline-weight 0"
                          " --stage-disagreement 0";
  const auto a = run_command(run + " --second-stage-weight 0 -o " + q(dir / "w0"));
  const auto b = run_command(run + " --second-stage-weight 1 -o " + q(dir / "w1"));
  const auto c = run_command(run + " -o " + q(dir / "default"));
  const auto d = run_command(run + " --no-corner-refinement -o " + q(dir / "first"));
  for (const auto* r : {&a, &b, &c, &d}) ASSERT_EQ(r->exit_code, 0) << r->output;
  const auto read = [&](const char* sub) {
    return nlohmann::json::parse(test::read_file(dir / sub / "image" / "cobb.json"));
  };
  const auto w0 = read("w0"), w1 = read("w1"), def = read("default"), first = read("first");
  EXPECT_LT(largest_landmark_shift(w0, first), 1e-6);
  ASSERT_GT(largest_landmark_shift(w1, w0), 0.5);  // the second stage moved something
  double off_midpoint = 0;
  for (std::size_t k = 0; k < 68; ++k)
    for (int xy = 0; xy < 2; ++xy)
      off_midpoint = std::max(off_midpoint, std::abs(def["landmarks_px"][k][xy].get<double>() -
                                                     (w0["landmarks_px"][k][xy].get<double>() +
                                                      w1["landmarks_px"][k][xy].get<double>()) / 2));
  EXPECT_LT(off_midpoint, 0.011);  // each position is written to 0.01 px
  const auto prov = nlohmann::json::parse(test::read_file(dir / "default" / "image" / "provenance.json"));
  EXPECT_DOUBLE_EQ(prov["config"]["second_stage_weight"].get<double>(), 0.5);
  expect_option_refused(image, "--second-stage-weight", "1.5", dir / "bad");
}

namespace {

std::vector<Point2> landmark_points(const nlohmann::json& j) {
  std::vector<Point2> p;
  for (const auto& xy : j["landmarks_px"]) p.push_back({xy[0].get<double>(), xy[1].get<double>()});
  return p;
}

// Runs spine-cobb on `image` with the default centreline weight and with 0; returns both
// cobb.json.
std::pair<nlohmann::json, nlohmann::json> with_and_without_centreline(const TempDir& dir, const fs::path& image) {
  const std::string run = bin("spine-cobb") + " " + q(image) + " --threads 2 --no-overlay -q";
  const auto a = run_command(run + " -o " + q(dir / "blend"));
  const auto b = run_command(run + " --centreline-weight 0 -o " + q(dir / "none"));
  EXPECT_EQ(a.exit_code, 0) << a.output;
  EXPECT_EQ(b.exit_code, 0) << b.output;
  const auto find = [&](const fs::path& out) {
    for (const auto& e : fs::directory_iterator(out))
      if (fs::exists(e.path() / "cobb.json")) return nlohmann::json::parse(test::read_file(e.path() / "cobb.json"));
    return nlohmann::json();
  };
  return {find(dir / "blend"), find(dir / "none")};
}

// The blended landmarks against those with weight 0: every centre kept (to the JSON's
// 0.01 px), every tilt but T1's and L5's moved 0.24 of the way to the centreline's
// direction, those two not at all (positions are written to 0.01 px, so tilts agree to a
// few hundredths of a degree), and the largest change as cobb.json reports it.
void expect_blended(const nlohmann::json& with, const nlohmann::json& without) {
  const auto pw = landmark_points(with), pn = landmark_points(without);
  ASSERT_EQ(pw.size(), 68u);
  ASSERT_EQ(pn.size(), 68u);
  double largest = 0;
  for (int v = 0; v < 17; ++v) {
    double dx = 0, dy = 0;
    for (int k = 0; k < 4; ++k) dx += pw[4 * v + k].x - pn[4 * v + k].x, dy += pw[4 * v + k].y - pn[4 * v + k].y;
    EXPECT_LT(std::hypot(dx, dy) / 4, 0.02) << "vertebra " << v << " moved";
    const double w = v == 0 || v == 16 ? 0.0 : 0.24;  // T1 and L5 keep their own tilt by default
    const double expected = vertebra_tilt_deg(pn, v) + w * (centreline_tilt_deg(pn, v) - vertebra_tilt_deg(pn, v));
    EXPECT_NEAR(vertebra_tilt_deg(pw, v), expected, 0.05) << "vertebra " << v;
    largest = std::max(largest, std::abs(vertebra_tilt_deg(pw, v) - vertebra_tilt_deg(pn, v)));
  }
  EXPECT_GT(largest, 0.1);  // it did turn something
  EXPECT_NEAR(std::abs(with["centreline_tilt"]["largest_change_deg"].get<double>()), largest, 0.05);
}

}  // namespace

// By default each vertebra is turned about its centre part of the way towards the
// direction across the centreline through its neighbours (centres kept, tilts moved by
// 0.24 of the difference, T1's and L5's not at all; cobb.json says how far). Checked on a
// real film when ../shared is there; a phantom film, outside the model's domain, gets a
// chain out of order today, where the blend is skipped and says so (and is checked as
// blended if it is applied). --centreline-weight 0 keeps the stages' corners; a weight
// outside 0..1 is a usage error.
TEST(CobbCommand, CentrelineWeightTurnsVertebraeAboutTheirCentres) {
  TempDir dir;
  const fs::path phantom = make_radiograph(dir, "xr", 25, 3);
  {
    const auto [with, without] = with_and_without_centreline(dir, phantom);
    EXPECT_TRUE(without["centreline_tilt"].is_null());
    ASSERT_TRUE(with["centreline_tilt"].is_object()) << with.dump().substr(0, 200);
    EXPECT_DOUBLE_EQ(with["centreline_tilt"]["weight"].get<double>(), 0.24);
    EXPECT_DOUBLE_EQ(with["centreline_tilt"]["end_weight"].get<double>(), 0.0);
    if (with["centreline_tilt"]["applied"].get<bool>()) {
      expect_blended(with, without);
    } else {
      EXPECT_NE(with["centreline_tilt"]["skipped_because"].get<std::string>().find("top to bottom"), std::string::npos);
      EXPECT_LT(largest_landmark_shift(with, without), 1e-9);
    }
    const auto prov = nlohmann::json::parse(test::read_file(dir / "none" / "image" / "provenance.json"));
    EXPECT_DOUBLE_EQ(prov["config"]["centreline_weight"].get<double>(), 0.0);
    expect_option_refused(phantom, "--centreline-weight", "2", dir / "bad");
  }
  const fs::path real = test::shared_data() / "xray-ap-aasce" / "images" / "sunhl-1th-02-Jan-2017-162 A AP.jpg";
  if (!fs::exists(real)) GTEST_SKIP() << "shared data not present: the blend was checked on a skipped chain only";
  TempDir real_dir;
  const auto [with, without] = with_and_without_centreline(real_dir, real);
  ASSERT_TRUE(with["centreline_tilt"]["applied"].get<bool>()) << with["centreline_tilt"].dump();
  expect_blended(with, without);
}

// Without the level anchors the first stage's count stands: no reading in cobb.json, an
// empty levels_recounted cell, one model fewer.
TEST(CobbCommand, NoLevelAnchorsKeepsTheFirstStagesCount) {
  TempDir dir;
  const fs::path image = make_radiograph(dir, "xr", 25, 3);
  const auto r = run_command(bin("spine-cobb") + " " + q(image) + " --threads 2 --no-overlay -q --no-level-anchors -o " +
                             q(dir / "out"));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const auto j = nlohmann::json::parse(test::read_file(dir / "out" / "image" / "cobb.json"));
  EXPECT_TRUE(j["levels"].is_null());
  EXPECT_TRUE(j["anchor_model"].is_null());
  const std::string csv = test::read_file(dir / "out" / "cobb.csv");
  // The grade, mean_confidence, then the empty levels_recounted cell before the flags.
  EXPECT_TRUE(std::regex_search(csv, std::regex(",(spinal curve|mild|moderate|severe),[0-9.]+,,"))) << csv;
  const auto prov = nlohmann::json::parse(test::read_file(dir / "out" / "image" / "provenance.json"));
  EXPECT_EQ(prov["models"].size(), 3u);  // both landmark stages and the spine finder
}

// Bad studies in a batch are each reported with their reason; the good one goes through;
// exit status 3; no output folders for the bad ones; the CSV has the good row only.
TEST(CobbCommand, BadInputsInABatch) {
  TempDir dir;
  const fs::path good = make_radiograph(dir, "xr", 15, 4);
  fs::create_directories(dir / "in");
  fs::copy_file(good, dir / "in" / "good.png");
  { std::ofstream(dir / "in" / "notimage.png") << "plain text, not a PNG"; }
  FloatImage volume(make_geometry(40, 40, 30), 100.f);
  write_image(volume, dir / "in" / "volume.nii.gz");
  FloatImage tiny(make_geometry_2d(20, 20), 10.f);
  tiny.at(3, 3) = 200;
  write_image(tiny, dir / "in" / "tiny.png", StoredPixel::kUInt8);
  write_image(FloatImage(make_geometry_2d(300, 700), 128.f), dir / "in" / "blank.png", StoredPixel::kUInt8);
  FloatImage with_nan(make_geometry_2d(300, 700), 5.f);
  with_nan.at(10, 10) = std::numeric_limits<float>::quiet_NaN();
  write_image(with_nan, dir / "in" / "nan.mha");  // NIfTI reading zeroes NaNs (niftilib)
  const auto r = run_command(bin("spine-cobb") + " " + q(dir / "in") + " --threads 2 -o " + q(dir / "out"));
  EXPECT_EQ(r.exit_code, 3) << r.output;
  EXPECT_NE(r.output.find("notimage.png: unreadable PNG: not a PNG file"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("is a 3D image"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("image is too small"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("image is blank"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("1 of 210000 voxels are NaN or infinite"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("1 done, 5 failed"), std::string::npos) << r.output;
  EXPECT_TRUE(fs::exists(dir / "out" / "good" / "cobb.json"));
  for (const char* bad : {"notimage", "volume", "tiny", "blank", "nan"}) EXPECT_FALSE(fs::exists(dir / "out" / bad)) << bad;
  const std::string csv = test::read_file(dir / "out" / "cobb.csv");
  EXPECT_EQ(std::count(csv.begin(), csv.end(), '\n'), 2);
}

// Noise is no radiograph: the result is written for a person to look at, but its
// headline says unreliable in cobb.json and in the cohort CSV's filter column.
TEST(CobbCommand, NoiseIsFlaggedUnreliable) {
  TempDir dir;
  FloatImage noise(make_geometry_2d(400, 1000));
  std::uint32_t state = 12345;
  for (auto& v : noise.voxels) {
    state = state * 1664525u + 1013904223u;
    v = static_cast<float>(state >> 24);
  }
  write_image(noise, dir / "noise.png", StoredPixel::kUInt8);
  const auto r = run_command(bin("spine-cobb") + " " + q(dir / "noise.png") + " --threads 2 -o " + q(dir / "out"));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const auto j = nlohmann::json::parse(test::read_file(dir / "out" / "noise" / "cobb.json"));
  EXPECT_FALSE(j["reliable"].get<bool>());
  ASSERT_FALSE(j["flags"].empty());
  const std::string csv = test::read_file(dir / "out" / "cobb.csv");
  EXPECT_NE(csv.find("\nnoise,false,"), std::string::npos) << csv;
  // Without the finder: no finder result, one model fewer.
  const auto b = run_command(bin("spine-cobb") + " " + q(dir / "noise.png") + " --threads 2 --no-spine-finder -o " +
                             q(dir / "plain"));
  ASSERT_EQ(b.exit_code, 0) << b.output;
  const auto k = nlohmann::json::parse(test::read_file(dir / "plain" / "noise" / "cobb.json"));
  EXPECT_TRUE(k["spine_finder"].is_null());
  const auto prov = nlohmann::json::parse(test::read_file(dir / "plain" / "noise" / "provenance.json"));
  EXPECT_EQ(prov["models"].size(), 3u);
}

// An image over 100 megapixels is refused with a clear reason rather than run.
TEST(CobbCommand, HugeImageIsRefused) {
  TempDir dir;
  write_image(FloatImage(make_geometry_2d(10001, 10001), 0.f), dir / "huge.png", StoredPixel::kUInt8);
  const auto r = run_command(bin("spine-cobb") + " " + q(dir / "huge.png") + " -o " + q(dir / "out"));
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_NE(r.output.find("image is too large"), std::string::npos) << r.output;
  EXPECT_FALSE(fs::exists(dir / "out" / "huge"));
}

TEST(CobbContract, VersionListsModels) {
  const auto r = run_command(bin("spine-cobb") + " --version");
  EXPECT_EQ(r.exit_code, 0);
  EXPECT_NE(r.output.find("xray-ap-landmarks 1."), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("xray-ap-corners 1."), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("xray-spine-finder 1."), std::string::npos) << r.output;
}

TEST(CobbContract, WrongOrMissingModelIsInputError) {
  TempDir dir;
  const fs::path image = make_radiograph(dir, "xr", 10, 5);
  auto r = run_command(bin("spine-cobb") + " " + q(image) + " --model " + q(test::test_models() / "pointwise2d.pt") +
                       " -o " + q(dir / "out"));
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_NE(r.output.find("model is for task 'test-pointwise'"), std::string::npos) << r.output;
  r = run_command(bin("spine-cobb") + " " + q(image) + " --model " + q(dir / "none.pt") + " -o " + q(dir / "out2"));
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_NE(r.output.find("model file not found"), std::string::npos) << r.output;
  EXPECT_FALSE(fs::exists(dir / "out" / "image"));
  r = run_command(bin("spine-cobb") + " " + q(image) + " --corner-model " + q(test::test_models() / "pointwise2d.pt") +
                  " -o " + q(dir / "out3"));
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_NE(r.output.find("model is for task 'test-pointwise'"), std::string::npos) << r.output;
  EXPECT_FALSE(fs::exists(dir / "out3" / "image"));
}

TEST(CobbContract, BadGradingThresholdsAreUsageError) {
  TempDir dir;
  const auto r = run_command(bin("spine-cobb") + " x.png --mild 30 --moderate 20 -o " + q(dir.path()));
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_NE(r.output.find("--mild < --moderate < --severe"), std::string::npos) << r.output;
}

}  // namespace
}  // namespace spine
