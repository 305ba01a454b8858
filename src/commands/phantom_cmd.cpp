// spine-phantom: synthetic CT / MR volumes with label maps, or frontal radiographs with
// landmarks and exact Cobb angles, one study folder each.
#include "spine/commands/phantom_cmd.hpp"

#include <cmath>
#include <cstdio>

#include "spine/error.hpp"
#include "spine/io.hpp"
#include "spine/labels.hpp"
#include "spine/log.hpp"

namespace spine {

void PhantomCommandConfig::register_cli(CLI::App& app) {
  common.register_cli(app, /*with_inputs=*/false);
  app.add_option("--kind", kind, "What to make")->check(CLI::IsMember({"ct", "mr-t1", "mr-t2", "xray"}));
  app.add_option("--name", name, "Study name (with --count: NAME-000, NAME-001, ...)");
  app.add_option("--count", count, "Number of phantoms (seeds SEED, SEED+1, ...)")->check(CLI::Range(1, 100000));
  app.add_option("--seed", volume.seed, "Random seed");
  app.add_option("--first", volume.first_vertebra, "First (top) vertebra of a volume phantom");
  app.add_option("--last", volume.last_vertebra, "Last (bottom) vertebra of a volume phantom");
  app.add_option("--spacing", volume.spacing_mm, "Voxel size of a volume phantom (mm)")->check(CLI::Range(0.25, 10.0));
  app.add_option("--margin", volume.margin_mm, "Soft tissue around the spine (mm)")->check(CLI::Range(0.0, 300.0));
  app.add_option("--scoliosis", volume.scoliosis_deg, "Coronal Cobb angle of the curve (degrees)")
      ->check(CLI::Range(-80.0, 80.0));
  app.add_option("--apex", volume.scoliosis_apex, "Apex position along the segment (0 top .. 1 bottom)")
      ->check(CLI::Range(0.1, 0.9));
  app.add_option("--second-curve", radiograph.second_curve_deg, "xray: compensatory curve below the first (degrees)")
      ->check(CLI::Range(-80.0, 80.0));
  app.add_option("--pixel", radiograph.pixel_mm, "xray: pixel size (mm)")->check(CLI::Range(0.1, 2.0));
  app.add_option("--noise", volume.noise, "Noise multiplier (0 = none)")->check(CLI::Range(0.0, 10.0));
  app.add_flag("--bias-field", volume.bias_field, "Smooth multiplicative bias field (MR)");
  app.add_flag("--torso", volume.torso, "Ribs, lungs, liver, kidneys, sacrum and iliac wings around the spine");
  app.add_option("--fracture", volume.fractures,
                 "Vertebral fracture NAME:TYPE:LOSS (wedge, biconcave or crush; LOSS the fraction of height lost "
                 "where most), e.g. L1:wedge:0.3; repeatable");
  app.add_option("--marrow-hu", volume.marrow_hu, "ct: trabecular bone attenuation (HU, default 230)");
  app.add_option("--format", format, "Volume format")->check(CLI::IsMember({"nii.gz", "nii", "nrrd", "mha"}));
}

std::vector<std::string> PhantomCommandConfig::validate() const {
  std::vector<std::string> warnings;
  if (name.empty() || name.find('/') != std::string::npos) throw usage_error("--name must be a plain folder name");
  if (kind == "xray") {
    RadiographConfig r = radiograph;
    r.scoliosis_deg = volume.scoliosis_deg;
    r.scoliosis_apex = volume.scoliosis_apex;
    r.noise = volume.noise;
    r.validate();
    if (volume.bias_field) warnings.push_back("--bias-field has no effect on xray phantoms");
    if (volume.first_vertebra != PhantomConfig{}.first_vertebra || volume.last_vertebra != PhantomConfig{}.last_vertebra)
      warnings.push_back("--first / --last have no effect on xray phantoms (always T1..L5)");
  } else {
    PhantomConfig v = volume;
    v.modality = kind;
    v.validate();
    if (radiograph.second_curve_deg != 0) warnings.push_back("--second-curve only applies to xray phantoms");
    if (kind == "ct" && volume.bias_field) warnings.push_back("--bias-field has no effect on CT phantoms");
  }
  return warnings;
}

nlohmann::json PhantomCommandConfig::to_json() const {
  nlohmann::json j{{"common", common.to_json()}, {"kind", kind}, {"name", name}, {"count", count}, {"format", format}};
  if (kind == "xray") {
    RadiographConfig r = radiograph;
    r.scoliosis_deg = volume.scoliosis_deg;
    r.scoliosis_apex = volume.scoliosis_apex;
    r.noise = volume.noise;
    r.seed = volume.seed;
    j["radiograph"] = r.to_json();
  } else {
    PhantomConfig v = volume;
    v.modality = kind;
    j["volume"] = v.to_json();
  }
  return j;
}

namespace {

nlohmann::json angles_json(const CobbAngles& a) {
  return {{"aasce_deg", {{"pt", a.aasce_deg[0]}, {"mt", a.aasce_deg[1]}, {"tl", a.aasce_deg[2]}}},
          {"s_shaped", a.s_shaped},
          {"major", major_curve_json(a.major)}};
}

}  // namespace

BatchSummary run_phantom(const PhantomCommandConfig& c) {
  for (const auto& w : c.validate()) log::warn("{}", w);
  std::vector<Study> studies;
  for (int i = 0; i < c.count; ++i) {
    char suffix[16];
    std::snprintf(suffix, sizeof suffix, "-%03d", i);
    studies.push_back({c.count == 1 ? c.name : c.name + suffix, {}});
  }
  BatchOptions options = c.common.batch_options("spine-phantom", c.to_json());
  int index = 0;
  return run_batch(studies, options, [&](const Study& study, const std::filesystem::path& work) {
    const std::uint64_t seed = c.volume.seed + static_cast<std::uint64_t>(index++);
    nlohmann::json truth{{"study", study.name}, {"synthetic", true}, {"seed", seed}};
    if (c.kind == "xray") {
      RadiographConfig r = c.radiograph;
      r.scoliosis_deg = c.volume.scoliosis_deg;
      r.scoliosis_apex = c.volume.scoliosis_apex;
      r.noise = c.volume.noise;
      r.seed = seed;
      const PhantomRadiograph x = make_phantom_radiograph(r);
      write_image(x.image, work / "image.png", StoredPixel::kUInt8);
      nlohmann::json lm = nlohmann::json::array();
      for (const auto& p : x.landmarks) lm.push_back({p.x, p.y});
      truth["image_size_px"] = {x.image.nx(), x.image.ny()};
      truth["pixel_mm"] = r.pixel_mm;
      truth["landmarks_px"] = lm;
      truth["angles"] = angles_json(x.angles);
    } else {
      PhantomConfig v = c.volume;
      v.modality = c.kind;
      v.seed = seed;
      const PhantomVolume p = make_phantom_volume(v);
      write_image(p.image, work / ("image." + c.format),
                  c.kind == "ct" ? StoredPixel::kInt16 : StoredPixel::kFloat32);
      write_labels(p.labels, work / ("labels." + c.format));
      std::vector<int> present;
      nlohmann::json verts = nlohmann::json::array();
      auto r3 = [](double x) { return std::round(x * 1000) / 1000; };
      for (const auto& t : p.vertebrae) {
        nlohmann::json j{{"name", t.name}, {"label", t.label}, {"centroid_lps_mm", t.centroid_lps_mm}};
        if (t.label != label::kSacrum) {
          j["axial"] = t.axial;
          j["heights_mm"] = {{"anterior", r3(t.anterior_height)}, {"middle", r3(t.middle_height)}, {"posterior", r3(t.posterior_height)}};
          j["fracture"] = {{"type", t.fracture}, {"loss", t.fracture_loss}, {"genant_grade", t.genant_grade}};
          if (c.kind == "ct") j["trabecular_hu"] = t.trabecular_hu;
          j["canal"] = {{"area_mm2", r3(t.canal_area_mm2)}, {"ap_mm", r3(t.canal_ap_mm)}};
        }
        verts.push_back(j);
        present.push_back(t.label);
        if (t.label <= label::kL5) present.push_back(disc_label_below(t.label));
      }
      present.push_back(label::kSpinalCanal);
      present.push_back(label::kSpinalCord);
      write_color_tables(present, work / "labels");
      truth["modality"] = c.kind;
      truth["vertebrae"] = verts;
      nlohmann::json discs = nlohmann::json::array();
      for (const auto& d : p.discs)
        discs.push_back({{"name", d.name}, {"label", d.label},
                         {"heights_mm", {{"anterior", r3(d.anterior_height)}, {"middle", r3(d.middle_height)},
                                         {"posterior", r3(d.posterior_height)}}}});
      truth["discs"] = discs;
      if (p.lordosis_deg != 0) truth["lumbar_lordosis_deg"] = r3(p.lordosis_deg);
      if (p.kyphosis_deg != 0) truth["thoracic_kyphosis_deg"] = r3(p.kyphosis_deg);
      truth["coronal_cobb_deg"] = r3(p.coronal_cobb_deg);
      truth["measurement_definitions"] =
          "heights along each body's axis in its mid-sagittal plane at 10/50/90 % of its depth (anterior wall to "
          "the front of the canal), as spine-measure measures them; discs between the endplate planes at "
          "10/50/90 % of the disc's depth; lordosis from the L1 upper to the L5 lower endplate";
      truth["note"] = "centroid_lps_mm is the vertebral body centre used to build the phantom";
    }
    write_text_file(work / "truth.json", truth.dump(2) + "\n");
    return nlohmann::json{{"truth", "truth.json"}};
  });
}

}  // namespace spine
