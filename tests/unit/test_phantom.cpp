// Phantoms: deterministic per seed, plausible HU and labels, radiograph landmarks whose
// Cobb angle is the one asked for.
#include <map>
#include <set>

#include "spine/labels.hpp"
#include "spine/phantom.hpp"
#include "test_util.hpp"

namespace spine {
namespace {

PhantomConfig small_ct() {
  PhantomConfig c;
  c.first_vertebra = "L3";
  c.last_vertebra = "L5";
  c.spacing_mm = 2.0;
  c.margin_mm = 15;
  return c;
}

TEST(Phantom, DeterministicPerSeed) {
  const PhantomVolume a = make_phantom_volume(small_ct());
  const PhantomVolume b = make_phantom_volume(small_ct());
  EXPECT_EQ(a.image.voxels, b.image.voxels);
  EXPECT_EQ(a.labels.voxels, b.labels.voxels);
  PhantomConfig other = small_ct();
  other.seed = 2;
  EXPECT_NE(make_phantom_volume(other).image.voxels, a.image.voxels);
}

TEST(Phantom, CtHasExpectedLabelsAndHounsfieldUnits) {
  const PhantomVolume p = make_phantom_volume(small_ct());
  std::map<int, std::pair<double, int>> hu;  // label -> (sum, count)
  for (std::size_t i = 0; i < p.labels.voxels.size(); ++i) {
    auto& e = hu[p.labels.voxels[i]];
    e.first += p.image.voxels[i];
    ++e.second;
  }
  for (int l : {22, 23, 24, 122, 123, label::kSpinalCanal}) ASSERT_TRUE(hu.count(l)) << l;
  EXPECT_FALSE(hu.count(label::kSpinalCord));  // lumbar: below the conus
  const auto mean = [&](int l) { return hu[l].first / hu[l].second; };
  EXPECT_GT(mean(22), 200);   // bone
  EXPECT_LT(mean(122), 150);  // disc
  EXPECT_GT(mean(122), 30);
  EXPECT_LT(mean(label::kSpinalCanal), 60);
  EXPECT_LT(intensity_range(p.image).min, -900);  // air around the body
  ASSERT_EQ(p.vertebrae.size(), 3u);
  EXPECT_EQ(p.vertebrae[0].name, "L3");
  // Lumbar spacing from real CT medians: about 36 mm between body centres.
  const auto& c0 = p.vertebrae[0].centroid_lps_mm;
  const auto& c1 = p.vertebrae[1].centroid_lps_mm;
  const double d = std::sqrt(std::pow(c0[0] - c1[0], 2) + std::pow(c0[1] - c1[1], 2) + std::pow(c0[2] - c1[2], 2));
  EXPECT_NEAR(d, 36, 5);
  EXPECT_GT(c0[2], c1[2]);  // L3 above L4 (z is superior)
}

TEST(Phantom, MrHasBrightCsfOnT2) {
  PhantomConfig c = small_ct();
  c.modality = "mr-t2";
  const PhantomVolume p = make_phantom_volume(c);
  double csf = 0, bone = 0;
  int ncsf = 0, nbone = 0;
  for (std::size_t i = 0; i < p.labels.voxels.size(); ++i) {
    if (p.labels.voxels[i] == label::kSpinalCanal) csf += p.image.voxels[i], ++ncsf;
    if (p.labels.voxels[i] == 23) bone += p.image.voxels[i], ++nbone;
  }
  EXPECT_GT(csf / ncsf, 1.5 * bone / nbone);
}

TEST(Phantom, RadiographCobbAngleIsTheRequestedOne) {
  for (double cobb : {0.0, 18.0, 42.0}) {
    RadiographConfig c;
    c.scoliosis_deg = cobb;
    c.pixel_mm = 1.0;
    const PhantomRadiograph r = make_phantom_radiograph(c);
    ASSERT_EQ(r.landmarks.size(), 68u);
    EXPECT_NEAR(r.angles.major.angle_deg, cobb, 0.5) << cobb;
    for (const auto& p : r.landmarks) {
      EXPECT_GE(p.x, 0);
      EXPECT_LT(p.x, r.image.nx());
      EXPECT_GE(p.y, 0);
      EXPECT_LT(p.y, r.image.ny());
    }
    // Vertebrae run top to bottom.
    for (int v = 1; v < 17; ++v) EXPECT_GT(r.landmarks[4 * v].y, r.landmarks[4 * (v - 1)].y);
  }
}

TEST(Phantom, RadiographBonesAreBrighterAtLandmarks) {
  RadiographConfig c;
  c.pixel_mm = 1.0;
  const PhantomRadiograph r = make_phantom_radiograph(c);
  // Body centre (mean of the corners) vs. a point far lateral in the soft tissue.
  double inside = 0, outside = 0;
  for (int v = 0; v < 17; ++v) {
    double x = 0, y = 0;
    for (int k = 0; k < 4; ++k) x += r.landmarks[4 * v + k].x / 4, y += r.landmarks[4 * v + k].y / 4;
    inside += r.image.at(static_cast<std::size_t>(x), static_cast<std::size_t>(y));
    outside += r.image.at(static_cast<std::size_t>(x) + 45, static_cast<std::size_t>(y));
  }
  EXPECT_GT(inside, outside + 17 * 10);
}

}  // namespace
}  // namespace spine
