// spine-seg and spine-detect on phantom volumes (the shipped models): accuracy on a CT
// phantom, results back in an anisotropic, reoriented input's grid, Slicer markups, MR
// phantoms, a 2D slice's slab of identical slices, and bad input in a batch.
#include <algorithm>
#include <cmath>
#include <limits>
#include <map>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "cmd_util.hpp"
#include "dicom_series.hpp"
#include "spine/disc_grading.hpp"
#include "spine/io.hpp"
#include "spine/labels.hpp"
#include "spine/preprocess.hpp"

namespace spine {
namespace {

using test::bin;
using test::binary_dice;
using test::distance;
using test::q;
using test::run_command;
using test::TempDir;
namespace fs = std::filesystem;

fs::path make_phantom(const TempDir& dir, const std::string& args, const std::string& name) {
  const auto r = run_command(bin("spine-phantom") + " " + args + " -q -o " + q(dir / "phantoms") + " --name " + name);
  EXPECT_EQ(r.exit_code, 0) << r.output;
  return dir / "phantoms" / name;
}

std::map<std::string, std::array<double, 3>> truth_centroids(const fs::path& phantom) {
  const auto t = nlohmann::json::parse(test::read_file(phantom / "truth.json"));
  std::map<std::string, std::array<double, 3>> out;
  for (const auto& v : t["vertebrae"]) out[v["name"]] = v["centroid_lps_mm"].get<std::array<double, 3>>();
  return out;
}

// Fraction of true vertebrae found with the right name within 20 mm (body centre truth;
// the CT model segments whole vertebrae, whose centroid lies a few mm behind the body's).
double identification(const nlohmann::json& vertebrae, const std::map<std::string, std::array<double, 3>>& truth) {
  int hits = 0;
  for (const auto& [name, c] : truth)
    for (const auto& v : vertebrae)
      if (v["name"] == name && distance(v["centroid_lps_mm"].get<std::array<double, 3>>(), c) <= 20) ++hits;
  return static_cast<double>(hits) / truth.size();
}

// A torso CT phantom (held-out seed) at 1.5 mm: vertebrae and discs found, named and
// placed; outputs complete and on the input's grid.
TEST(SpineSegCommand, CtPhantomSegmentedAndNamed) {
  TempDir dir;
  const fs::path ph = make_phantom(dir, "--kind ct --torso --first T9 --last L5 --spacing 1.5 --margin 10 --seed 77 --scoliosis 12", "ct");
  const auto r = run_command(bin("spine-seg") + " " + q(ph / "image.nii.gz") + " --threads 2 -o " + q(dir / "out"));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const fs::path out = dir / "out" / "image";
  for (const char* f : {"labels.nii.gz", "labels.ctbl", "labels.itksnap.txt", "overlay.png", "segmentation.json"})
    EXPECT_TRUE(fs::exists(out / f)) << f;
  const LabelImage pred = read_labels(out / "labels.nii.gz");
  const LabelImage ref = read_labels(ph / "labels.nii.gz");
  ASSERT_TRUE(pred.geometry.same_grid(ref.geometry, 1e-4));
  const double dv = binary_dice(pred, ref, false), dd = binary_dice(pred, ref, true);
  EXPECT_GT(dv, 0.80) << "vertebra Dice";
  EXPECT_GT(dd, 0.60) << "disc Dice";
  const auto j = nlohmann::json::parse(test::read_file(out / "segmentation.json"));
  EXPECT_EQ(j["modality"]["modality"], "ct");
  EXPECT_GE(identification(j["vertebrae"], truth_centroids(ph)), 0.8) << j["vertebrae"].dump();
  // The torso phantom's ribs (T1..T12) are seen beside the thoracic vertebrae, and nothing
  // beside L1..L3 (the iliac wings begin at L4).
  int judged = 0;
  for (const auto& v : j["vertebrae"]) {
    const std::string n = v["name"];
    if (n == "T11" || n == "T12") {
      EXPECT_EQ(v["bone_beside"], "yes") << n;
      ++judged;
    }
    if (n == "L1" || n == "L2" || n == "L3") {
      EXPECT_EQ(v["bone_beside"], "no") << n;
      ++judged;
    }
  }
  EXPECT_GE(judged, 4) << j["vertebrae"].dump();
  // The fine pass starts at the column and stops past the spine: fewer sagittal slices
  // than its box holds (the box has a lateral margin and the coarse pass's stray hits),
  // with the Dice and names above. In plane the box fits the network's 32-voxel steps, or
  // is the whole axis.
  const auto& t = j["timing"];
  EXPECT_LT(t["fine_slices_predicted"].get<int>(), t["fine_region_voxels"][2].get<int>()) << t.dump();
  for (int a = 0; a < 2; ++a) {
    const int side = t["fine_region_voxels"][a], whole = t["volume_voxels"][a];
    EXPECT_TRUE(side % 32 == 0 || side == whole) << t.dump();
  }
  // The model card's limitations come with every result, and in the log once.
  ASSERT_TRUE(j["model_limitations"].is_array());
  EXPECT_FALSE(j["model_limitations"].empty());
  EXPECT_NE(r.output.find("real CT"), std::string::npos) << r.output;
}

// spine-detect on the same kind of phantom stored anisotropic (1.2 x 1.2 x 3 mm) and in
// RAS order: centroids and names right, labels back on the input's grid, markups valid.
TEST(SpineSegCommand, DetectOnAnisotropicReorientedVolume) {
  TempDir dir;
  const fs::path ph = make_phantom(dir, "--kind ct --torso --first T10 --last L5 --spacing 1 --margin 10 --seed 78", "ct");
  const auto p = run_command(bin("spine-prep") + " " + q(ph / "image.nii.gz") +
                             " --reorient RAS --resample 1.2 1.2 3 --pixel int16 -q -o " + q(dir / "aniso"));
  ASSERT_EQ(p.exit_code, 0) << p.output;
  const fs::path input = dir / "aniso" / "image" / "image.nii.gz";
  const auto r = run_command(bin("spine-detect") + " " + q(input) + " --labels --threads 2 -o " + q(dir / "out"));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const fs::path out = dir / "out" / "image";
  const auto j = nlohmann::json::parse(test::read_file(out / "vertebrae.json"));
  for (const char* key : {"study", "vertebrae", "flags"}) EXPECT_TRUE(j.contains(key)) << key;
  ASSERT_FALSE(j["vertebrae"].empty());
  for (const char* key : {"name", "label", "centroid_lps_mm", "confidence"})
    EXPECT_TRUE(j["vertebrae"][0].contains(key)) << key;
  EXPECT_GE(identification(j["vertebrae"], truth_centroids(ph)), 0.8) << j["vertebrae"].dump();
  const auto m = nlohmann::json::parse(test::read_file(out / "vertebrae.mrk.json"));
  EXPECT_EQ(m["markups"][0]["coordinateSystem"], "LPS");
  EXPECT_EQ(m["markups"][0]["controlPoints"].size(), j["vertebrae"].size());
  const LabelImage labels = read_labels(out / "labels.nii.gz");
  const LoadedImage in = read_image(input);
  EXPECT_TRUE(labels.geometry.same_grid(in.image.geometry, 1e-4));
  EXPECT_EQ(orientation_code(labels.geometry), "RAS");
}

// CT in axial slices thicker than the CT model's card says it was checked on is flagged as
// not reliable; slices within it are not. (The shipped card: 4 mm; on real CT resliced to
// 5 mm the model merged and misnamed vertebrae, scripts/eval_seg_ct_thickness.py.)
TEST(SpineSegCommand, ThickAxialSlicesBeyondTheCardAreFlagged) {
  TempDir dir;
  const fs::path ph = make_phantom(dir, "--kind ct --torso --first T11 --last L5 --spacing 1 --margin 10 --seed 81", "ct");
  const auto flags_at = [&](const std::string& spacing) {
    const fs::path prep = dir / ("prep" + spacing);
    const auto p = run_command(bin("spine-prep") + " " + q(ph / "image.nii.gz") + " --reorient LPS --resample 1 1 " +
                               spacing + " --pixel int16 -q -o " + q(prep));
    EXPECT_EQ(p.exit_code, 0) << p.output;
    const auto r = run_command(bin("spine-detect") + " " + q(prep / "image" / "image.nii.gz") + " --threads 2 -q -o " +
                               q(dir / ("out" + spacing)));
    EXPECT_EQ(r.exit_code, 0) << r.output;
    const auto j = nlohmann::json::parse(test::read_file(dir / ("out" + spacing) / "image" / "vertebrae.json"));
    std::string all;
    for (const auto& f : j["flags"]) all += f.get<std::string>() + "\n";
    return all;
  };
  EXPECT_EQ(flags_at("3").find("apart head to foot"), std::string::npos);
  const std::string thick = flags_at("6");
  EXPECT_NE(thick.find("slices 6.0 mm apart head to foot, more than the 4 mm the ct model was checked on"),
            std::string::npos)
      << thick;
}

// The fine pass's slice stride: the default (the model on every 2nd sagittal slice, the
// slices between interpolated) gives the same vertebrae, names and nearly the same voxels
// as the model on every slice; provenance records the stride used.
TEST(SpineSegCommand, FineStrideAgreesWithEverySlice) {
  TempDir dir;
  const fs::path ph = make_phantom(dir, "--kind ct --torso --first T12 --last L5 --spacing 1 --margin 10 --seed 80", "ct");
  const std::string base = bin("spine-seg") + " " + q(ph / "image.nii.gz") + " --threads 2 -q";
  ASSERT_EQ(run_command(base + " --fine-stride 1 -o " + q(dir / "every")).exit_code, 0);
  const auto r = run_command(base + " -o " + q(dir / "strided"));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const auto names = [&](const char* sub) {
    std::vector<std::string> out;
    const auto j = nlohmann::json::parse(test::read_file(dir / sub / "image" / "segmentation.json"));
    for (const auto& v : j["vertebrae"]) out.push_back(v["name"]);
    return out;
  };
  EXPECT_EQ(names("strided"), names("every"));
  EXPECT_GE(names("every").size(), 5u);
  const LabelImage every = read_labels(dir / "every" / "image" / "labels.nii.gz");
  const LabelImage strided = read_labels(dir / "strided" / "image" / "labels.nii.gz");
  EXPECT_GT(binary_dice(strided, every, false), 0.97);
  EXPECT_GT(binary_dice(strided, read_labels(ph / "labels.nii.gz"), false), 0.80);
  const auto prov = nlohmann::json::parse(test::read_file(dir / "strided" / "image" / "provenance.json"));
  EXPECT_EQ(prov["config"]["models"]["segmentation"]["fine_slice_stride"], 2) << prov["config"].dump();
  // Out of range is a usage error, before any output.
  for (const char* bad : {"0", "5"}) {
    const auto u = run_command(base + " --fine-stride " + bad + " -o " + q(dir / "bad"));
    EXPECT_EQ(u.exit_code, 1) << u.output;
    EXPECT_NE(u.output.find("--fine-stride"), std::string::npos) << u.output;
    EXPECT_FALSE(fs::exists(dir / "bad" / "image"));
  }
}

// MR phantoms (T1 and T2) are run as MR with complete outputs. (Figures on real MRI come
// from scripts/eval_seg_mr.sh; MR phantoms are only a smoke test here.)
TEST(SpineSegCommand, MrPhantomsRunAsMr) {
  TempDir dir;
  make_phantom(dir, "--kind mr-t2 --first L1 --last L5 --spacing 1 --bias-field --seed 5", "t2");
  const auto r = run_command(bin("spine-seg") + " " + q(dir / "phantoms" / "t2" / "image.nii.gz") +
                             " --threads 2 -o " + q(dir / "out"));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const auto j = nlohmann::json::parse(test::read_file(dir / "out" / "image" / "segmentation.json"));
  EXPECT_EQ(j["modality"]["modality"], "mr");
  EXPECT_EQ(j["vertebra_part"], "body");
  EXPECT_TRUE(j["model_limitations"].is_array());
  const LabelImage labels = read_labels(dir / "out" / "image" / "labels.nii.gz");
  const LabelImage ref = read_labels(dir / "phantoms" / "t2" / "labels.nii.gz");
  EXPECT_TRUE(labels.geometry.same_grid(ref.geometry, 1e-4));
  // Only the model the study needs is loaded (--modality auto checks both, loads one),
  // and provenance names the one used.
  EXPECT_NE(r.output.find("model mr-spine-seg"), std::string::npos) << r.output;
  EXPECT_EQ(r.output.find("model ct-spine-seg"), std::string::npos) << r.output;
  const auto prov = nlohmann::json::parse(test::read_file(dir / "out" / "image" / "provenance.json"));
  ASSERT_EQ(prov["models"].size(), 1u) << prov["models"].dump();
  EXPECT_EQ(prov["models"][0]["name"], "mr-spine-seg");

  // A model the user names must fit, even one the run might not need: refused before any
  // study runs (here the MR model given as the CT model).
  const auto bad = run_command(bin("spine-seg") + " " + q(dir / "phantoms" / "t2" / "image.nii.gz") + " --ct-model " +
                               q(fs::path(SPINE_SOURCE_DIR) / "models" / "mr-spine-seg.pt") + " -o " + q(dir / "out2"));
  EXPECT_EQ(bad.exit_code, 2) << bad.output;
  EXPECT_NE(bad.output.find("model is for modality 'mr'"), std::string::npos) << bad.output;
  EXPECT_FALSE(fs::exists(dir / "out2" / "image"));
}

// A 2D slice reaches the MR model as a slab of identical slices (spine-grade's
// slab_from_slice), whose every model slice would repeat one pass: the network runs once
// for the slab, and the result is what running it on every slice gives. A slab whose
// slices differ by a hair (one part in 10^5 of the intensity range, different per slice,
// so none is identical) runs every model slice: the same names, and the same voxels but
// for ties between classes.
TEST(SpineSegCommand, SlabOfIdenticalSlicesRunsTheNetworkOnce) {
  TempDir dir;
  const fs::path ph = make_phantom(dir, "--kind mr-t2 --first T12 --last L5 --spacing 1 --seed 6", "t2");
  const FloatImage pil = reorient(read_image(ph / "image.nii.gz").image, "PIL");
  Geometry g2;
  g2.dimension = 2;
  g2.size = {pil.nx(), pil.ny(), 1};
  g2.spacing = {pil.geometry.spacing[0], pil.geometry.spacing[1], 1.0};
  FloatImage slice(g2);
  const std::size_t plane = pil.nx() * pil.ny();
  std::copy(pil.voxels.begin() + static_cast<std::ptrdiff_t>(plane * (pil.nz() / 2)),
            pil.voxels.begin() + static_cast<std::ptrdiff_t>(plane * (pil.nz() / 2 + 1)), slice.voxels.begin());
  const FloatImage slab = slab_from_slice(slice);
  FloatImage hair = slab;
  const auto [lo, hi] = std::minmax_element(slab.voxels.begin(), slab.voxels.end());
  for (std::size_t k = 0; k < hair.nz(); ++k)
    for (std::size_t i = 0; i < plane; ++i) hair.voxels[k * plane + i] += static_cast<float>(1e-5 * (*hi - *lo) * (k + 1));
  write_image(slab, dir / "slab.nii.gz");
  write_image(hair, dir / "hair.nii.gz");
  const auto r = run_command(bin("spine-seg") + " " + q(dir / "slab.nii.gz") + " " + q(dir / "hair.nii.gz") +
                             " --threads 2 -q -o " + q(dir / "out"));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const auto seg = [&](const char* name) {
    return nlohmann::json::parse(test::read_file(dir / "out" / name / "segmentation.json"));
  };
  const auto js = seg("slab"), jh = seg("hair");
  // One slice for the identical slab; every model slice (every second one and the ends)
  // for the other.
  EXPECT_EQ(js["timing"]["fine_slices_run"], 1) << js["timing"].dump();
  EXPECT_GE(jh["timing"]["fine_slices_run"].get<int>(), 10) << jh["timing"].dump();
  std::vector<std::string> ns, nh;
  for (const auto& v : js["vertebrae"]) ns.push_back(v["name"]);
  for (const auto& v : jh["vertebrae"]) nh.push_back(v["name"]);
  EXPECT_EQ(ns, nh);
  EXPECT_GE(ns.size(), 5u);
  const LabelImage ls = read_labels(dir / "out" / "slab" / "labels.nii.gz");
  const LabelImage lh = read_labels(dir / "out" / "hair" / "labels.nii.gz");
  ASSERT_EQ(ls.voxels.size(), lh.voxels.size());
  std::size_t differ = 0, spine = 0;
  for (std::size_t i = 0; i < ls.voxels.size(); ++i) differ += ls.voxels[i] != lh.voxels[i], spine += ls.voxels[i] != 0;
  EXPECT_GT(spine, 1000u);
  EXPECT_LE(differ, spine / 1000) << differ << " of " << spine;
}

// An MR field much wider than the spine (140 mm of soft tissue around it) goes through
// the coarse pass, and the fine pass must then see the box the MR model was validated
// with. Fitted to the CT's 32-voxel windows instead (real image where the window had
// zeros), it found a vertebra that is not there (a "T11" above T12..L5) on three of four
// such phantoms, and on 98 of the 350 SPIDER slices the names of whole chains moved.
TEST(SpineSegCommand, WideMrFieldKeepsItsNames) {
  TempDir dir;
  const fs::path ph = make_phantom(dir, "--kind mr-t2 --first T12 --last L5 --spacing 1.5 --margin 140 --seed 9", "wide");
  const auto r = run_command(bin("spine-seg") + " " + q(ph / "image.nii.gz") + " --threads 2 -o " + q(dir / "out"));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const auto j = nlohmann::json::parse(test::read_file(dir / "out" / "image" / "segmentation.json"));
  EXPECT_EQ(j["modality"]["modality"], "mr");
  EXPECT_TRUE(j["timing"].contains("coarse_s")) << j["timing"].dump();  // the coarse pass ran
  const auto truth = truth_centroids(ph);
  EXPECT_GE(identification(j["vertebrae"], truth), 0.8) << j["vertebrae"].dump();
  for (const auto& v : j["vertebrae"]) {  // and nothing named that is not there
    if (v["name"] == "S") continue;          // the phantom's sacrum has no centre in truth.json
    const auto t = truth.find(v["name"].get<std::string>());
    EXPECT_TRUE(t != truth.end() && distance(v["centroid_lps_mm"].get<std::array<double, 3>>(), t->second) <= 20)
        << v.dump();
  }
}

// One batch: a 2D image, NaNs, a contradicting --modality, an empty volume and a good
// CT phantom. Each bad study is one clear line; the empty one is flagged, not failed.
TEST(SpineSegCommand, BadInputsInABatch) {
  TempDir dir;
  fs::create_directories(dir / "in");
  const fs::path ct = make_phantom(dir, "--kind ct --torso --first L2 --last L5 --spacing 2 --margin 10 --seed 79", "ct");
  fs::copy_file(ct / "image.nii.gz", dir / "in" / "good.nii.gz");
  write_image(FloatImage(make_geometry_2d(64, 64), 5.f), dir / "in" / "flat.nii.gz");
  FloatImage with_nan(make_geometry(40, 40, 40, {2, 2, 2}), -1000.f);
  with_nan.at(3, 3, 3) = std::numeric_limits<float>::quiet_NaN();
  write_image(with_nan, dir / "in" / "nan.mha");
  // Air around a water cylinder, in HU: CT without a spine.
  FloatImage empty(make_geometry(80, 80, 60, {2, 2, 2}), -1000.f);
  for (std::size_t z = 0; z < 60; ++z)
    for (std::size_t y = 0; y < 80; ++y)
      for (std::size_t x = 0; x < 80; ++x)
        if (std::hypot(x - 40.0, y - 40.0) < 30) empty.at(x, y, z) = x < 15 ? -100.f : 20.f + static_cast<float>((x * 7 + y * 3 + z) % 11);
  write_image(empty, dir / "in" / "empty.nii.gz", StoredPixel::kInt16);
  const auto r = run_command(bin("spine-seg") + " " + q(dir / "in") + " --modality ct --threads 2 -o " + q(dir / "out"));
  EXPECT_EQ(r.exit_code, 3) << r.output;
  EXPECT_NE(r.output.find("is a 2D image"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("1 of 64000 voxels are NaN or infinite"), std::string::npos) << r.output;
  EXPECT_FALSE(fs::exists(dir / "out" / "flat"));
  EXPECT_FALSE(fs::exists(dir / "out" / "nan"));
  ASSERT_TRUE(fs::exists(dir / "out" / "good" / "labels.nii.gz"));
  const auto j = nlohmann::json::parse(test::read_file(dir / "out" / "empty" / "segmentation.json"));
  EXPECT_TRUE(j["vertebrae"].empty());
  ASSERT_FALSE(j["flags"].empty());
  EXPECT_NE(j["flags"][0].get<std::string>().find("no spine found"), std::string::npos) << j.dump();
  const LabelImage none = read_labels(dir / "out" / "empty" / "labels.nii.gz");
  for (auto v : none.voxels) ASSERT_EQ(v, 0);

  // --modality mr on CT: the contradiction is reported for that study.
  const auto r2 = run_command(bin("spine-seg") + " " + q(dir / "in" / "good.nii.gz") + " --modality mr -o " +
                              q(dir / "out2"));
  EXPECT_EQ(r2.exit_code, 2) << r2.output;
  EXPECT_NE(r2.output.find("--modality mr contradicts the image"), std::string::npos) << r2.output;
  EXPECT_FALSE(fs::exists(dir / "out2" / "good"));
}

// --output-format dicom-seg on a CT given as a DICOM series: segmentation.dcm belongs to
// the source study, ties each frame to its source image, rebuilds exactly into
// labels.nii.gz, passes dciodvfy, and holds the patient's identity only when asked
// (tests/cmd/check_dicom_seg.py reads it back with pydicom).
TEST(SpineSegCommand, DicomSegOfADicomSeries) {
  TempDir dir;
  const fs::path ph = make_phantom(dir, "--kind ct --torso --first L2 --last L4 --spacing 2 --margin 10 --seed 81", "ct");
  const test::FakeIdentity who;
  test::write_ct_series(read_image(ph / "image.nii.gz").image, dir / "series" / "ct", who);
  const std::string secrets = " '" + who.name + "' " + who.id + " " + who.birth_date + " " + who.study_date + " " +
                              who.accession + " Secret";
  const std::string check = "/usr/bin/python3 " + q(fs::path(SPINE_SOURCE_DIR) / "tests" / "cmd" / "check_dicom_seg.py");

  const auto r = run_command(bin("spine-seg") + " " + q(dir / "series" / "ct") +
                             " --output-format dicom-seg --threads 2 -o " + q(dir / "out"));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  for (const std::string& s : {who.name, who.id, who.birth_date, who.study_date}) EXPECT_EQ(r.output.find(s), std::string::npos) << s;
  const auto j = nlohmann::json::parse(test::read_file(dir / "out" / "ct" / "segmentation.json"));
  ASSERT_TRUE(j["dicom_seg"].is_object()) << j.dump();
  EXPECT_TRUE(j["dicom_seg"]["references_source_series"].get<bool>());
  EXPECT_EQ(j["dicom_seg"]["segments"].get<std::size_t>(), j["vertebrae"].size() + j["discs"].size());
  EXPECT_GE(j["vertebrae"].size(), 3u) << j.dump();
  const auto c = run_command(check + " " + q(dir / "out" / "ct") + " " + q(dir / "series" / "ct") + " none" + secrets);
  EXPECT_EQ(c.exit_code, 0) << c.output;

  // On request the SEG carries the patient and study identity (and nothing else does).
  const auto r2 = run_command(bin("spine-seg") + " " + q(dir / "series" / "ct") +
                              " --output-format dicom-seg --dicom-patient-identity --threads 2 -o " + q(dir / "out2"));
  ASSERT_EQ(r2.exit_code, 0) << r2.output;
  const auto c2 = run_command(check + " " + q(dir / "out2" / "ct") + " " + q(dir / "series" / "ct") + " copied" + secrets);
  EXPECT_EQ(c2.exit_code, 0) << c2.output;

  // Under --anonymise-names the SEG stands alone: none of the source's UIDs, which would
  // tie the pseudonymised output to the patient's study; identity copying contradicts it.
  const auto r4 = run_command(bin("spine-seg") + " " + q(dir / "series" / "ct") + " --output-format dicom-seg --anonymise-names " +
                              q(dir / "names.csv") + " --threads 2 -o " + q(dir / "out4"));
  ASSERT_EQ(r4.exit_code, 0) << r4.output;
  fs::path pseudonymised;
  for (const auto& e : fs::directory_iterator(dir / "out4"))
    if (e.is_directory() && e.path().filename().string().rfind("anon-", 0) == 0) pseudonymised = e.path();
  ASSERT_FALSE(pseudonymised.empty()) << r4.output;
  const auto c4 = run_command(check + " " + q(pseudonymised) + " " + q(dir / "series" / "ct") + " anonymised" + secrets);
  EXPECT_EQ(c4.exit_code, 0) << c4.output;
  const auto r5 = run_command(bin("spine-seg") + " " + q(dir / "series" / "ct") + " --output-format dicom-seg --anonymise-names " +
                              q(dir / "names.csv") + " --dicom-patient-identity -o " + q(dir / "out5"));
  EXPECT_EQ(r5.exit_code, 1) << r5.output;
  EXPECT_NE(r5.output.find("--dicom-patient-identity contradicts --anonymise-names"), std::string::npos) << r5.output;
  EXPECT_FALSE(fs::exists(dir / "out5"));

  // Without dicom-seg output the identity flag is a usage error.
  const auto r3 = run_command(bin("spine-seg") + " " + q(dir / "series" / "ct") + " --dicom-patient-identity -o " +
                              q(dir / "out3"));
  EXPECT_EQ(r3.exit_code, 1) << r3.output;
  EXPECT_NE(r3.output.find("--dicom-patient-identity needs --output-format dicom-seg"), std::string::npos) << r3.output;
}

// Pedicle screws in a CT: metal (3000 HU) the CT model has never seen. The vertebra they
// are in is flagged by name, and its neighbours' far ends are not; the same CT without them
// has no such flag.
TEST(SpineSegCommand, MetalBesideAVertebraIsFlagged) {
  TempDir dir;
  const fs::path ph = make_phantom(dir, "--kind ct --torso --first L1 --last L5 --spacing 1.5 --margin 10 --seed 84", "ct");
  FloatImage ct = read_image(ph / "image.nii.gz").image;
  // Two screws into L3's body from behind: 35 mm long, 3 mm across, 12 mm either side of
  // the midline, from 30 mm behind the body's centre (LPS: +y is posterior).
  const auto c = truth_centroids(ph).at("L3");
  const Geometry& g = ct.geometry;
  for (std::size_t k = 0; k < ct.nz(); ++k)
    for (std::size_t j = 0; j < ct.ny(); ++j)
      for (std::size_t i = 0; i < ct.nx(); ++i) {
        const auto p = g.index_to_lps(i, j, k);
        const double behind = p[1] - c[1];
        for (double side : {-12.0, 12.0})
          if (behind > -5 && behind < 30 && std::hypot(p[0] - c[0] - side * behind / 30, p[2] - c[2]) < 1.5)
            ct.at(i, j, k) = 3000;
      }
  write_image(ct, dir / "screws.nii.gz");
  const auto r = run_command(bin("spine-seg") + " " + q(ph / "image.nii.gz") + " " + q(dir / "screws.nii.gz") +
                             " --threads 2 -o " + q(dir / "out"));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  auto metal_flag = [&](const std::string& study) {
    const auto j = nlohmann::json::parse(test::read_file(dir / "out" / study / "segmentation.json"));
    for (const auto& f : j["flags"])
      if (f.get<std::string>().rfind("metal beside", 0) == 0) return f.get<std::string>();
    return std::string();
  };
  EXPECT_EQ(metal_flag("image"), "");
  const std::string f = metal_flag("screws");
  EXPECT_NE(f.find("L3"), std::string::npos) << f;
  EXPECT_EQ(f.find("L1"), std::string::npos) << f;
  EXPECT_EQ(f.find("L5"), std::string::npos) << f;
}

// A CT acquired with the gantry tilted (15 degrees here) comes as a sheared stack of axial
// slices. spine-seg finds and names the same vertebrae at the same places as in the same
// CT acquired flat, says the tilt was corrected, and its DICOM SEG lies on the source
// images' own pixels (check_dicom_seg.py: each frame has each source pixel's nearest label
// of labels.nii.gz, on its source image's position and orientation).
TEST(SpineSegCommand, GantryTiltedSeriesKeepsItsAnatomy) {
  TempDir dir;
  const fs::path ph = make_phantom(dir, "--kind ct --torso --first L1 --last L4 --spacing 2 --margin 10 --seed 83", "ct");
  const FloatImage ct = read_image(ph / "image.nii.gz").image;
  test::write_ct_series(ct, dir / "flat" / "ct");
  test::write_ct_series(ct, dir / "tilted" / "ct", {}, 15);
  for (const char* s : {"flat", "tilted"}) {
    const auto r = run_command(bin("spine-seg") + " " + q(dir / s / "ct") + " --output-format dicom-seg --threads 2 -o " +
                               q(dir / (std::string("out-") + s)));
    ASSERT_EQ(r.exit_code, 0) << r.output;
  }
  const auto flat = nlohmann::json::parse(test::read_file(dir / "out-flat" / "ct" / "segmentation.json"));
  const auto tilted = nlohmann::json::parse(test::read_file(dir / "out-tilted" / "ct" / "segmentation.json"));
  EXPECT_EQ(flat["gantry_tilt_corrected_deg"].get<double>(), 0.0);
  EXPECT_NEAR(tilted["gantry_tilt_corrected_deg"].get<double>(), 15.0, 0.01);
  EXPECT_GE(identification(flat["vertebrae"], truth_centroids(ph)), 0.99) << flat["vertebrae"].dump();
  EXPECT_GE(identification(tilted["vertebrae"], truth_centroids(ph)), 0.99) << tilted["vertebrae"].dump();
  ASSERT_EQ(flat["vertebrae"].size(), tilted["vertebrae"].size());
  for (std::size_t i = 0; i < flat["vertebrae"].size(); ++i) {
    const auto& a = flat["vertebrae"][i];
    const auto& b = tilted["vertebrae"][i];
    EXPECT_EQ(a["name"], b["name"]);
    double d2 = 0;
    for (int k = 0; k < 3; ++k) d2 += std::pow(a["centroid_lps_mm"][k].get<double>() - b["centroid_lps_mm"][k].get<double>(), 2);
    EXPECT_LT(std::sqrt(d2), 2.0) << a["name"];
    // The tilted slices were sampled from the 2 mm phantom and are resampled again on reading:
    // twice interpolated, the bone's edges blur and the outlines grow by a few per cent.
    EXPECT_NEAR(a["volume_ml"].get<double>(), b["volume_ml"].get<double>(), 0.10 * a["volume_ml"].get<double>()) << a["name"];
  }
  const std::string check = "/usr/bin/python3 " + q(fs::path(SPINE_SOURCE_DIR) / "tests" / "cmd" / "check_dicom_seg.py");
  const auto c = run_command(check + " " + q(dir / "out-tilted" / "ct") + " " + q(dir / "tilted" / "ct") + " none");
  EXPECT_EQ(c.exit_code, 0) << c.output;
}

}  // namespace
}  // namespace spine
