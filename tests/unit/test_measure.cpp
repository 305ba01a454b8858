// spine-measure's measurements held to the phantoms' exact values (SYNTHETIC): body
// heights, Genant grades and types, trabecular HU and the osteoporosis screen, disc
// heights, lordosis and the coronal Cobb angle; the same study resampled and reoriented
// gives the same numbers; Genant's grade boundaries.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <map>

#include "spine/measure.hpp"
#include "spine/phantom.hpp"
#include "spine/preprocess.hpp"

namespace spine {
namespace {

PhantomVolume fractured_phantom(double spacing = 1.0) {
  PhantomConfig c;
  c.modality = "ct";
  c.first_vertebra = "T11";
  c.last_vertebra = "L3";
  c.spacing_mm = spacing;
  c.margin_mm = 12;
  c.fractures = {"T12:crush:0.35", "L1:wedge:0.35", "L2:biconcave:0.3"};
  c.marrow_hu = 95;
  c.seed = 7;
  return make_phantom_volume(c);
}

std::map<std::string, const VertebraMeasurement*> by_name(const SpineMeasurements& m) {
  std::map<std::string, const VertebraMeasurement*> out;
  for (const auto& v : m.vertebrae) out[v.name] = &v;
  return out;
}

TEST(Genant, GradesTypesAndBoundaries) {
  EXPECT_EQ(genant_grade(25, 25, 25, 25).grade, 0);
  EXPECT_EQ(genant_grade(25, 25, 25, 25).type, "none");
  EXPECT_EQ(genant_grade(20.5, 25, 25, 25).grade, 0);   // 18 %
  EXPECT_EQ(genant_grade(19.5, 25, 25, 25).grade, 1);   // 22 %
  EXPECT_EQ(genant_grade(19.5, 25, 25, 25).type, "wedge");
  EXPECT_EQ(genant_grade(25, 17, 25, 25).grade, 2);     // 32 %
  EXPECT_EQ(genant_grade(25, 17, 25, 25).type, "biconcave");
  EXPECT_EQ(genant_grade(14, 14, 14, 25).grade, 3);     // 44 % against the neighbours
  EXPECT_EQ(genant_grade(14, 14, 14, 25).type, "crush");
  EXPECT_EQ(genant_grade(14, 14, 14, 0).grade, 0);      // no neighbours: a crush is not seen
  EXPECT_NEAR(genant_grade(15, 25, 25, 25).reduction, 0.4, 1e-12);
  EXPECT_EQ(genant_grade(15, 25, 25, 25).grade, 2);     // 40 % exactly is still moderate
}

// Outlines from the CT model: every graded vertebra is flagged (so not reliable), the
// others and every number stay as they are.
TEST(Measure, GradesOnCtModelOutlinesAreFlagged) {
  const PhantomVolume p = fractured_phantom();
  MeasureOptions model_outlines;
  model_outlines.outlines_from_ct_model = true;
  const SpineMeasurements plain = measure_spine(p.labels, &p.image, MeasureOptions{});
  const SpineMeasurements flagged = measure_spine(p.labels, &p.image, model_outlines);
  ASSERT_EQ(plain.vertebrae.size(), flagged.vertebrae.size());
  int graded = 0;
  for (std::size_t i = 0; i < plain.vertebrae.size(); ++i) {
    const auto& a = plain.vertebrae[i];
    const auto& b = flagged.vertebrae[i];
    SCOPED_TRACE(a.name);
    EXPECT_EQ(a.genant.grade, b.genant.grade);
    EXPECT_EQ(a.heights.middle, b.heights.middle);
    const bool has = std::any_of(b.flags.begin(), b.flags.end(),
                                 [](const std::string& f) { return f.find("CT model's outlines") != std::string::npos; });
    EXPECT_EQ(has, a.genant.grade >= 1);
    EXPECT_EQ(b.flags.size(), a.flags.size() + (a.genant.grade >= 1 ? 1u : 0u));
    graded += a.genant.grade >= 1;
  }
  EXPECT_GE(graded, 2);  // the phantom's fractures, so the flag was exercised
}

TEST(Measure, PhantomHeightsGradesAndAttenuationMatchTruth) {
  const PhantomVolume p = fractured_phantom();
  const SpineMeasurements m = measure_spine(p.labels, &p.image, MeasureOptions{});
  const auto got = by_name(m);
  int compared = 0;
  for (const auto& t : p.vertebrae) {
    SCOPED_TRACE(t.name);
    ASSERT_TRUE(got.count(t.name));
    const VertebraMeasurement& v = *got.at(t.name);
    ASSERT_TRUE(v.heights.valid);
    EXPECT_NEAR(v.heights.anterior, t.anterior_height, 0.8);
    EXPECT_NEAR(v.heights.middle, t.middle_height, 0.8);
    EXPECT_NEAR(v.heights.posterior, t.posterior_height, 0.8);
    EXPECT_EQ(v.genant.grade, t.genant_grade);
    if (t.fracture != "none") {
      EXPECT_EQ(v.genant.type, t.fracture);
    }
    ASSERT_TRUE(v.trabecular_hu_median.has_value());
    EXPECT_NEAR(*v.trabecular_hu_median, 95.0, 5.0);
    ASSERT_TRUE(v.canal_ap_mm.has_value());
    EXPECT_NEAR(*v.canal_ap_mm, t.canal_ap_mm, 1.0);
    EXPECT_NEAR(*v.canal_area_mm2, t.canal_area_mm2, 0.1 * t.canal_area_mm2);
    EXPECT_TRUE(v.posterior_elements);
    ++compared;
  }
  EXPECT_EQ(compared, 5);
  // The fractures are graded as built (a phantom whose truth grades are 0 would test nothing).
  EXPECT_GE(got.at("L1")->genant.grade, 2);
  EXPECT_GE(got.at("T12")->genant.grade, 1);
  EXPECT_EQ(m.bone_screen.at("level"), "L1");
  EXPECT_EQ(m.bone_screen.at("category"), "osteoporosis likely");
  for (const auto& d : p.discs) {
    SCOPED_TRACE(d.name);
    const DiscMeasurement* found = nullptr;
    for (const auto& x : m.discs)
      if (x.name == d.name) found = &x;
    ASSERT_NE(found, nullptr);
    ASSERT_TRUE(found->heights.valid);
    EXPECT_EQ(found->method, "disc label");
    EXPECT_NEAR(found->heights.anterior, d.anterior_height, 0.8);
    EXPECT_NEAR(found->heights.middle, d.middle_height, 0.8);
    EXPECT_NEAR(found->heights.posterior, d.posterior_height, 0.8);
  }
  EXPECT_GE(p.discs.size(), 1u);
}

TEST(Measure, LordosisAndCoronalCobbMatchTruth) {
  PhantomConfig c;
  c.modality = "ct";
  c.first_vertebra = "T12";
  c.last_vertebra = "L5";
  c.spacing_mm = 1.5;
  c.margin_mm = 12;
  c.scoliosis_deg = 24;
  c.noise = 0;
  c.seed = 3;
  const PhantomVolume p = make_phantom_volume(c);
  const SpineMeasurements m = measure_spine(p.labels, &p.image, MeasureOptions{});
  std::map<std::string, double> angle;
  for (const auto& a : m.angles) angle[a.name] = a.degrees;
  ASSERT_TRUE(angle.count("lumbar lordosis"));
  ASSERT_TRUE(angle.count("coronal Cobb"));
  EXPECT_GT(p.lordosis_deg, 20);  // a real lordosis to measure
  EXPECT_NEAR(angle["lumbar lordosis"], p.lordosis_deg, 2.0);
  EXPECT_NEAR(p.coronal_cobb_deg, 24, 1.0);
  EXPECT_NEAR(angle["coronal Cobb"], p.coronal_cobb_deg, 2.0);
}

// The same study on a coarser grid and in another orientation: the same measurements
// within what the coarser voxels allow.
TEST(Measure, ResampledAndReorientedStudyGivesTheSameMeasurements) {
  const PhantomVolume p = fractured_phantom();
  const SpineMeasurements fine = measure_spine(p.labels, &p.image, MeasureOptions{});
  const LabelImage coarse_labels = resample_labels(p.labels, {2.0, 2.0, 2.0});
  const FloatImage coarse_image = resample_image(p.image, {2.0, 2.0, 2.0});
  const SpineMeasurements coarse = measure_spine(coarse_labels, &coarse_image, MeasureOptions{});
  const LabelImage turned_labels = reorient(p.labels, "PIR");
  const FloatImage turned_image = reorient(p.image, "PIR");
  const SpineMeasurements turned = measure_spine(turned_labels, &turned_image, MeasureOptions{});
  const auto a = by_name(fine), b = by_name(coarse), r = by_name(turned);
  for (const auto& [name, v] : a) {
    SCOPED_TRACE(name);
    ASSERT_TRUE(b.count(name) && r.count(name));
    // Reorienting moves no voxel: identical up to rounding.
    EXPECT_NEAR(r.at(name)->heights.anterior, v->heights.anterior, 0.05);
    EXPECT_NEAR(r.at(name)->heights.middle, v->heights.middle, 0.05);
    EXPECT_NEAR(r.at(name)->heights.posterior, v->heights.posterior, 0.05);
    EXPECT_EQ(r.at(name)->genant.grade, v->genant.grade);
    EXPECT_NEAR(*r.at(name)->trabecular_hu_median, *v->trabecular_hu_median, 1.0);
    // 2 mm voxels (the labels resampled by label voting, which moves boundaries by up to
    // half a voxel): heights within 1.5 mm, the grade where the reduction is clear of a boundary.
    EXPECT_NEAR(b.at(name)->heights.anterior, v->heights.anterior, 1.5);
    EXPECT_NEAR(b.at(name)->heights.middle, v->heights.middle, 1.5);
    EXPECT_NEAR(b.at(name)->heights.posterior, v->heights.posterior, 1.5);
    double margin = 1;
    for (double t : {0.20, 0.25, 0.40}) margin = std::min(margin, std::fabs(v->genant.reduction - t));
    if (margin > 0.04) {
      EXPECT_EQ(b.at(name)->genant.grade, v->genant.grade);
    }
    EXPECT_NEAR(*b.at(name)->trabecular_hu_median, *v->trabecular_hu_median, 5.0);
  }
}

TEST(Measure, CutAndMissingStructuresAreFlagged) {
  const PhantomVolume p = fractured_phantom(1.5);
  // Crop the grid through the top vertebra (the phantom's grid is LPS, z growing with k).
  const auto& g = p.labels.geometry;
  std::size_t top_k = 0;
  for (std::size_t k = 0; k < g.size[2]; ++k)
    for (std::size_t j = 0; j < g.size[1]; ++j)
      for (std::size_t i = 0; i < g.size[0]; ++i)
        if (p.labels.at(i, j, k) == 18) top_k = std::max(top_k, k);  // T11
  Geometry cut = g;
  cut.size[2] = top_k - 5;
  LabelImage labels(cut, 0);
  FloatImage image(cut, 0.f);
  std::copy(p.labels.voxels.begin(), p.labels.voxels.begin() + static_cast<long>(labels.voxels.size()), labels.voxels.begin());
  std::copy(p.image.voxels.begin(), p.image.voxels.begin() + static_cast<long>(image.voxels.size()), image.voxels.begin());
  const SpineMeasurements m = measure_spine(labels, &image, MeasureOptions{});
  const auto got = by_name(m);
  ASSERT_TRUE(got.count("T11"));
  bool flagged = false;
  for (const auto& f : got.at("T11")->flags) flagged |= f.find("cut by the field of view") != std::string::npos;
  EXPECT_TRUE(flagged);
  EXPECT_LT(got.at("T11")->genant_confidence, 0.5);
  // A map without vertebrae says so instead of returning nothing silently.
  LabelImage empty(cut, 0);
  const SpineMeasurements none = measure_spine(empty, nullptr, MeasureOptions{});
  EXPECT_TRUE(none.vertebrae.empty());
  ASSERT_EQ(none.flags.size(), 1u);
}

}  // namespace
}  // namespace spine
