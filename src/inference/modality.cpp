// Which model a volume needs: CT or MR, from the DICOM Modality tag or the intensities
// (CT is calibrated in HU; magnitude MR is non-negative).
#include <algorithm>
#include <limits>
#include <sstream>

#include "spine/error.hpp"
#include "spine/log.hpp"
#include "spine/spine_seg.hpp"

namespace spine {

namespace {

struct IntensityEvidence {
  float min = 0;
  double below_minus50 = 0;   // fraction of voxels below -50 (fat and air in HU)
  double below_minus500 = 0;  // fraction below -500 (air, lung)
};

IntensityEvidence intensity_evidence(const FloatImage& image) {
  IntensityEvidence e;
  e.min = std::numeric_limits<float>::max();
  std::size_t n50 = 0, n500 = 0;
  for (float v : image.voxels) {
    e.min = std::min(e.min, v);
    n50 += v < -50.f;
    n500 += v < -500.f;
  }
  const double n = static_cast<double>(std::max<std::size_t>(1, image.voxels.size()));
  e.below_minus50 = n50 / n;
  e.below_minus500 = n500 / n;
  return e;
}

std::string percent(double fraction) {
  std::ostringstream s;
  s.precision(2);
  s << 100 * fraction << " %";
  return s.str();
}

}  // namespace

ModalityDecision decide_modality(const FloatImage& image, const std::string& requested,
                                 const std::string& dicom_modality) {
  if (requested != "auto" && requested != "ct" && requested != "mr")
    throw usage_error("--modality must be ct, mr or auto, not '" + requested + "'");
  std::string tag;
  if (dicom_modality == "CT") tag = "ct";
  if (dicom_modality == "MR") tag = "mr";
  const IntensityEvidence e = intensity_evidence(image);
  // CT is calibrated in HU: fat (-100) and air (-1000) give many clearly negative voxels.
  // Magnitude MR images are non-negative.
  const bool looks_ct = e.min < -200 && e.below_minus50 >= 0.01;
  const bool looks_mr = e.min >= -50;
  std::ostringstream why;
  why << "minimum " << e.min << ", " << percent(e.below_minus50) << " of voxels below -50";
  if (!tag.empty()) {
    if (requested != "auto" && requested != tag)
      throw input_error("--modality " + requested + " contradicts the DICOM Modality tag (" + dicom_modality + ")");
    if ((tag == "ct" && looks_mr) || (tag == "mr" && looks_ct))
      log::warn("the DICOM Modality tag says {} but the intensities ({}) suggest otherwise; following the tag",
                dicom_modality, why.str());
    return {tag, "DICOM Modality tag " + dicom_modality};
  }
  if (requested == "ct") {
    if (looks_mr)
      throw input_error("--modality ct contradicts the image: " + why.str() +
                        "; CT in HU has fat near -100 and air near -1000, so this looks like MR");
    return {"ct", "requested (--modality ct); intensities agree: " + why.str()};
  }
  if (requested == "mr") {
    if (looks_ct)
      throw input_error("--modality mr contradicts the image: " + why.str() +
                        "; that is CT in HU (fat and air), not MR");
    return {"mr", "requested (--modality mr); intensities agree: " + why.str()};
  }
  if (looks_ct) return {"ct", "intensities in HU: " + why.str()};
  if (looks_mr) return {"mr", "non-negative intensities: " + why.str()};
  throw input_error("cannot tell CT from MR from the intensities (" + why.str() + "); pass --modality ct or mr");
}

}  // namespace spine
