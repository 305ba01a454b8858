// The grading model over one series' disc sequence: Pfirrmann grade probabilities and
// the binary findings at the operating points the model card carries.
#include <algorithm>
#include <cmath>

#include "spine/disc_grading.hpp"
#include "spine/error.hpp"

namespace spine {

const std::vector<std::string>& disc_finding_names() {
  static const std::vector<std::string> names{"modic_change", "upper_endplate", "lower_endplate", "spondylolisthesis",
                                              "herniation",   "narrowing",      "bulging"};
  return names;
}

DiscGrader::DiscGrader(const Model& model) : model_(model) {
  const auto& raw = model.card().raw;
  const std::string who = model.card().name + " " + model.card().version;
  try {
    const auto& p = raw.at("patch");
    spec_.width_px = p.at("width_px").get<int>();
    spec_.height_px = p.at("height_px").get<int>();
    spec_.spacing_mm = p.at("spacing_mm").get<double>();
    spec_.posterior_shift_mm = p.at("posterior_shift_mm").get<double>();
    if (raw.at("findings").get<std::vector<std::string>>() != disc_finding_names())
      throw model_error(who + ": its findings are not the ones this spine-grade reads");
    for (const auto& f : disc_finding_names()) thresholds_.push_back(raw.at("operating_points").at(f).get<double>());
  } catch (const nlohmann::json::exception& e) {
    throw model_error(who + ": model card lacks the grading fields (patch, findings, operating_points): " + e.what());
  }
  if (spec_.width_px < 8 || spec_.height_px < 8 || spec_.width_px > 512 || spec_.height_px > 512 || !(spec_.spacing_mm > 0))
    throw model_error(who + ": implausible patch in its card");
  for (double t : thresholds_)
    if (!(t > 0 && t < 1)) throw model_error(who + ": operating points must lie in (0, 1)");
}

std::vector<DiscGrades> DiscGrader::grade(const FloatImage& slice, const std::vector<DiscLocation>& discs) const {
  std::vector<DiscGrades> out;
  if (discs.empty()) return out;
  const Tensor x = disc_patches(slice, discs, spec_);
  const Tensor y = model_.forward(x, 2);  // [discs, grades + findings]
  const auto n_out = static_cast<std::int64_t>(kPfirrmannGrades + disc_finding_names().size());
  if (y.shape.size() != 2 || y.shape[1] != n_out)
    throw model_error(model_.card().name + ": expected " + std::to_string(n_out) + " outputs per disc");
  const double half_w = spec_.width_px * spec_.spacing_mm / 2, half_h = spec_.height_px * spec_.spacing_mm / 2;
  const double sx = slice.geometry.spacing[0], sy = slice.geometry.spacing[1];
  const double ext_x = static_cast<double>(slice.nx()) * sx, ext_y = static_cast<double>(slice.ny()) * sy;
  for (std::size_t d = 0; d < discs.size(); ++d) {
    const float* row = y.data.data() + static_cast<std::int64_t>(d) * n_out;
    DiscGrades g;
    g.disc = discs[d];
    const float mx = *std::max_element(row, row + kPfirrmannGrades);
    double sum = 0;
    for (int k = 0; k < kPfirrmannGrades; ++k) sum += g.pfirrmann_probabilities[k] = std::exp(row[k] - mx);
    for (int k = 0; k < kPfirrmannGrades; ++k) {
      g.pfirrmann_probabilities[k] /= sum;
      g.pfirrmann_expected += (k + 1) * g.pfirrmann_probabilities[k];
    }
    g.pfirrmann = 1 + static_cast<int>(std::max_element(g.pfirrmann_probabilities.begin(), g.pfirrmann_probabilities.end()) -
                                       g.pfirrmann_probabilities.begin());
    for (std::size_t f = 0; f < disc_finding_names().size(); ++f) {
      DiscFinding fi;
      fi.name = disc_finding_names()[f];
      fi.probability = 1.0 / (1.0 + std::exp(-static_cast<double>(row[kPfirrmannGrades + f])));
      fi.threshold = thresholds_[f];
      fi.present = fi.probability >= fi.threshold;
      g.findings.push_back(fi);
    }
    // The patch's centre and the disc's neighbours must be in the slice for the grades to rest on the disc.
    const double cx = g.disc.centre_px.x * sx, cy = g.disc.centre_px.y * sy;
    g.flags = g.disc.flags;
    if (g.disc.cut) g.flags.push_back("a neighbouring vertebral body is cut by the field of view");
    if (cx - half_w < 0 || cy - half_h < 0 || cx + half_w > ext_x || cy + half_h > ext_y)
      g.flags.push_back("the disc's neighbourhood leaves the image");
    if (g.disc.height_mm >= 0 && g.disc.height_mm < 1.0)
      g.flags.push_back("the vertebral bodies touch in the segmentation (a collapsed disc, or bodies merged)");
    out.push_back(std::move(g));
  }
  return out;
}

}  // namespace spine
