// Measurements as JSON (nested, with units and methods) and as long-form rows.
#include <cmath>

#include "spine/measure.hpp"

namespace spine {
namespace {

double r2(double v) { return std::round(v * 100) / 100; }

nlohmann::json vec(const Vec3d& v) { return {r2(v[0]), r2(v[1]), r2(v[2])}; }

nlohmann::json value(double v, const char* unit) { return {{"value", r2(v)}, {"unit", unit}}; }

nlohmann::json heights_json(const Heights& h) {
  if (!h.valid) return nullptr;
  nlohmann::json points = nlohmann::json::array();
  for (const auto& p : h.points) points.push_back(vec(p));
  return {{"anterior", value(h.anterior, "mm")},
          {"middle", value(h.middle, "mm")},
          {"posterior", value(h.posterior, "mm")},
          {"points_lps_mm", points}};
}

nlohmann::json endplate_json(const Endplate& e) {
  return {{"centre_lps_mm", vec(e.centre)},
          {"normal", {std::round(e.normal[0] * 1e4) / 1e4, std::round(e.normal[1] * 1e4) / 1e4, std::round(e.normal[2] * 1e4) / 1e4}},
          {"sagittal_tilt", value(e.sagittal_deg, "deg")},
          {"coronal_tilt", value(e.coronal_deg, "deg")},
          {"fit_points", e.points},
          {"fit_rms", value(e.rms_mm, "mm")}};
}

}  // namespace

nlohmann::json measurements_json(const SpineMeasurements& m) {
  nlohmann::json vertebrae = nlohmann::json::array(), discs = nlohmann::json::array(), angles = nlohmann::json::array();
  for (const auto& v : m.vertebrae) {
    nlohmann::json j{{"label", v.label},
                     {"name", v.name},
                     {"volume", value(v.volume_mm3, "mm3")},
                     {"body_volume", value(v.body_volume_mm3, "mm3")},
                     {"posterior_elements_in_label", v.posterior_elements},
                     {"body_centre_lps_mm", vec(v.centre)},
                     {"body_depth", value(v.depth_mm, "mm")},
                     {"body_width", value(v.width_mm, "mm")},
                     {"heights", heights_json(v.heights)},
                     {"upper_endplate", endplate_json(v.upper)},
                     {"lower_endplate", endplate_json(v.lower)},
                     {"genant", {{"grade", v.genant.grade},
                                 {"type", v.genant.type},
                                 {"height_reduction", value(100 * v.genant.reduction, "%")},
                                 {"confidence", v.genant_confidence}}},
                     {"flags", v.flags},
                     {"notes", v.notes},
                     {"reliable", v.flags.empty()}};
    if (v.trabecular_hu_median)
      j["trabecular_attenuation"] = {{"median", value(*v.trabecular_hu_median, "HU")},
                                     {"iqr", value(*v.trabecular_hu_iqr, "HU")},
                                     {"voxels", v.trabecular_voxels},
                                     {"core_erosion", value(v.core_erosion_mm, "mm")}};
    if (v.canal_area_mm2) j["canal"] = {{"area", value(*v.canal_area_mm2, "mm2")}, {"ap_diameter", value(v.canal_ap_mm.value_or(0), "mm")}};
    vertebrae.push_back(j);
  }
  for (const auto& d : m.discs) {
    nlohmann::json j{{"label", d.label},   {"name", d.name},
                     {"method", d.method}, {"heights", heights_json(d.heights)},
                     {"height_index", r2(d.height_index)},
                     {"wedge_angle", value(d.wedge_deg, "deg")},
                     {"flags", d.flags},   {"reliable", d.flags.empty()}};
    if (d.volume_mm3 > 0) j["volume"] = value(d.volume_mm3, "mm3");
    if (d.signal_ratio) j["signal_ratio_to_bodies"] = r2(*d.signal_ratio);
    discs.push_back(j);
  }
  for (const auto& a : m.angles)
    angles.push_back({{"name", a.name}, {"angle", value(a.degrees, "deg")}, {"from", a.from}, {"to", a.to}, {"method", a.method}});
  return {{"vertebrae", vertebrae},
          {"discs", discs},
          {"angles", angles},
          {"bone_screen", m.bone_screen},
          {"flags", m.flags},
          {"methods",
           {{"frame", "each body's axis is the mean normal of planes fitted to its upper and lower endplates (central "
                      "60 % x 60 % of the section); posterior is the patient's back in the plane of the section"},
            {"body", "for whole-vertebra labels the body is the part in front of the posterior wall, where the "
                     "mid-sagittal line from the deepest point of the label leaves the bone"},
            {"heights", "along the body's axis in its mid-sagittal plane at 10 %, 50 % and 90 % of its depth "
                        "(anterior, middle, posterior), the trimmed mean of 35 lines within 3 mm laterally and 1.5 mm along the depth; boundaries at the 0.5 "
                        "level of the trilinearly interpolated mask (sub-voxel)"},
            {"genant", "largest of 1 - anterior/posterior (wedge), 1 - middle/posterior (biconcave) and 1 - "
                       "posterior/(mean posterior of the adjacent levels) (crush): < 20 % grade 0, 20-25 % 1, "
                       "25-40 % 2, > 40 % 3 (Genant et al. 1993)"},
            {"trabecular_attenuation", "median and interquartile range of the CT values of body voxels at least "
                                       "core_erosion from the body's surface"},
            {"disc_height_index", "middle disc height / mean middle height of the two adjacent bodies"},
            {"angles", "between endplate normals projected on the patient's sagittal or coronal plane"}}}};
}

std::vector<MeasurementRow> measurement_rows(const SpineMeasurements& m) {
  std::vector<MeasurementRow> rows;
  for (const auto& v : m.vertebrae) {
    rows.push_back({v.name, "volume", v.volume_mm3, "mm3"});
    rows.push_back({v.name, "body_volume", v.body_volume_mm3, "mm3"});
    if (v.heights.valid) {
      rows.push_back({v.name, "anterior_height", v.heights.anterior, "mm"});
      rows.push_back({v.name, "middle_height", v.heights.middle, "mm"});
      rows.push_back({v.name, "posterior_height", v.heights.posterior, "mm"});
      rows.push_back({v.name, "genant_grade", double(v.genant.grade), "grade"});
      rows.push_back({v.name, "height_reduction", 100 * v.genant.reduction, "%"});
    }
    rows.push_back({v.name, "upper_endplate_sagittal_tilt", v.upper.sagittal_deg, "deg"});
    rows.push_back({v.name, "upper_endplate_coronal_tilt", v.upper.coronal_deg, "deg"});
    rows.push_back({v.name, "lower_endplate_sagittal_tilt", v.lower.sagittal_deg, "deg"});
    rows.push_back({v.name, "lower_endplate_coronal_tilt", v.lower.coronal_deg, "deg"});
    if (v.trabecular_hu_median) {
      rows.push_back({v.name, "trabecular_hu_median", *v.trabecular_hu_median, "HU"});
      rows.push_back({v.name, "trabecular_hu_iqr", *v.trabecular_hu_iqr, "HU"});
    }
    if (v.canal_area_mm2) rows.push_back({v.name, "canal_area", *v.canal_area_mm2, "mm2"});
    if (v.canal_ap_mm) rows.push_back({v.name, "canal_ap_diameter", *v.canal_ap_mm, "mm"});
    rows.push_back({v.name, "reliable", v.flags.empty() ? 1.0 : 0.0, "bool"});
  }
  for (const auto& d : m.discs) {
    if (d.heights.valid) {
      rows.push_back({d.name, "anterior_height", d.heights.anterior, "mm"});
      rows.push_back({d.name, "middle_height", d.heights.middle, "mm"});
      rows.push_back({d.name, "posterior_height", d.heights.posterior, "mm"});
      rows.push_back({d.name, "height_index", d.height_index, "ratio"});
    }
    rows.push_back({d.name, "wedge_angle", d.wedge_deg, "deg"});
    if (d.signal_ratio) rows.push_back({d.name, "signal_ratio_to_bodies", *d.signal_ratio, "ratio"});
  }
  for (const auto& a : m.angles) rows.push_back({"spine", a.name, a.degrees, "deg"});
  return rows;
}

}  // namespace spine
