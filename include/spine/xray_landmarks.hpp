// Frontal radiograph landmark detection: the 68 AASCE vertebra corners (T1..L5) in two
// stages: vertebra centres and rough corners from a heatmap + corner-offset model of the
// whole image (models/xray-landmarks.pt), then each vertebra's corners from a crop around
// it at full working resolution (models/xray-corners.pt); per-vertebra and per-landmark
// confidence.
#pragma once
#include <optional>
#include <string>
#include <vector>

#include "spine/cobb.hpp"
#include "spine/image.hpp"
#include "spine/model.hpp"
#include "spine/tensor.hpp"
#include "spine/xray_level_anchors.hpp"

namespace spine {

// The model's input contract (scripts/cobb/preprocess.py): bilinear resize with half-pixel
// centres and no antialiasing to 1024 x 512 (H x W), 2 x 2 average pooling to 512 x 256,
// z-score over the image. Returns [1, 1, 512, 256].
Tensor xray_model_input(const FloatImage& radiograph);

// The working image both stages sample from: the radiograph resized as above to 1024 x 512
// (row-major, H x W), before pooling.
std::vector<float> xray_working_image(const FloatImage& radiograph);

// What blend_tilts_with_centreline did.
struct CentrelineTiltResult {
  bool applied = false;
  std::string skipped_because;      // when not applied
  double largest_change_deg = 0;    // of any vertebra's tilt, signed
  int largest_change_vertebra = -1; // 0 = T1
};

// The direction across the spine's centreline at each vertebra, in the terms of
// vertebra_tilt_deg (cobb.hpp): the perpendicular to the line from the centre of the
// vertebra above to that of the one below (T1 and L5: to their one neighbour).
double centreline_tilt_deg(const std::vector<Point2>& points, int vertebra);

// Turns each vertebra about its centre so that its tilt t becomes t + weight (c - t), c its
// centreline_tilt_deg: two readings of the tilt, one from the vertebra's own corners and
// one from where its neighbours lie, combined; T1 and L5, whose centreline comes from their
// one neighbour, with end_weight instead. Not applied, and the points kept, when the
// centres do not run top to bottom (no centreline to read).
CentrelineTiltResult blend_tilts_with_centreline(std::vector<Point2>& points, double weight, double end_weight);

// What the level anchors read at the chain's ends (see xray_level_anchors.hpp).
struct XrayLevelReading {
  std::string top, bottom;           // the first stage's T1 and L5 in the anchors' reading
  double top_posterior = 0, bottom_posterior = 0;
  std::string change;                // what the re-count changed; empty when the chain was kept
};

struct XrayLandmarks {
  std::vector<Point2> points;           // 68, input image pixels, AASCE order
  std::vector<double> confidence;       // 17, per vertebra: heatmap peak, about 0..1
  // 68, per landmark: the vertebra's confidence, and with the second stage the lower of
  // that and the corner heatmap's peak.
  std::vector<double> landmark_confidence;
  // Landmarks ("T4 TL") the second stage left at the first stage's position because its
  // corner heatmap had no clear peak.
  std::vector<std::string> corners_unrefined;
  // Vertebrae whose second-stage corners were weighed less because that stage's tilt
  // differed from the first stage's by more than XrayLandmarkOptions::stage_disagreement_deg.
  std::vector<std::string> second_stage_held_back;
  std::vector<std::string> flags;       // reasons not to trust the result
  // Vertebrae whose centre the sequence constraint took from a weaker heatmap peak than
  // the strongest (information, not a flag: it is common and usually right).
  std::vector<std::string> sequence_adjusted;
  // Set when the level anchors ran.
  std::optional<XrayLevelReading> levels;
  // Set when the tilts were blended with the centreline (XrayLandmarkOptions::centreline_weight).
  std::optional<CentrelineTiltResult> centreline_tilt;
};

struct XrayLandmarkOptions {
  double low_confidence = 0.3;          // below: the vertebra is flagged
  double missing_confidence = 0.1;      // below: the vertebra is called missing
  // Choose each vertebra's centre among its heatmap's strongest peaks so that the 17
  // centres run top to bottom with plausible spacing (Viterbi over the chain), instead
  // of taking every heatmap's maximum on its own.
  bool sequence_constraint = true;
  // Average the prediction with that for the mirrored image (test-time augmentation).
  bool flip_averaging = true;
  // With flip averaging, how a stage that is an ensemble of networks reads the two sides:
  // `all`, every network both the image and its mirror; `split`, the first network (and
  // every other one after it) the image, the second (and so on) the mirror, and with an
  // odd number of networks the last one both at half weight (split_ensemble_passes): about
  // half the passes, both averagings kept (over networks and over sides), most networks'
  // own average with their mirror given up; `split_corners`, split in the corner stage only
  // (models/xray-landmarks.md, "Each network of a pair reads one side of the film"). A
  // model that is not an ensemble whose networks run on their own (the int8 copies are
  // one graph) reads both sides whole, as with `all`.
  // The default, split_corners, was chosen on the 365 AASCE training films: SMAPE +0.03
  // points against `all` (bootstrap -0.17 to +0.25), where `split` lost +0.21 (to +0.55),
  // in the chains counted a level off: the first stage counts, and keeps its four readings.
  enum class EnsembleReading { all, split, split_corners };
  EnsembleReading ensemble_reading = EnsembleReading::split_corners;
  // The second stage's crops at these zooms of the vertebra's width (1: the training
  // scale), each corner at the mean of the positions read at each (test-time augmentation;
  // 0.9, 1.0, 1.1 measured in models/xray-corners.md, not the default).
  std::vector<double> corner_zooms{1.0};
  // Each corner the second stage re-places ends at this fraction of the way from the
  // first stage's position to the second stage's (1: the second stage's alone). The two
  // stages err differently (the first from the whole film at low resolution, the second
  // from a crop at full resolution, weakest at L5 where the sacrum overlaps), so their
  // mean is better than either: on the 365 AASCE training films SMAPE 8.83 % against
  // 9.43 (second stage) and 9.71 (first), decided there before validation was scored
  // (models/xray-corners.md).
  double second_stage_weight = 0.5;
  // ... but where the two stages' tilts of a vertebra differ by more than this many
  // degrees, that vertebra's weight falls as this / |difference| (combine_stage_corners;
  // 0: the same weight everywhere). The second stage is the better reader in the middle of
  // its errors and the worse in their tails: on the 365 training films, where the two
  // tilts differ by over 5 degrees the second stage was the worse 209 times in 326. 5
  // degrees gave the smallest tilt error there of 3, 4, 5, 6, 8 (scripts/cobb_stage_tilts.py,
  // models/xray-corners.md).
  double stage_disagreement_deg = 5.0;
  // Then each vertebra's tilt is moved this fraction of the way to the direction across
  // the centreline through its neighbours' centres (blend_tilts_with_centreline; 0: off).
  // The Cobb angles are the largest differences between tilts, so noise in each tilt
  // inflates them; the centres are placed more surely than the corners, and a vertebra lies
  // nearly across the centreline (on the AASCE training films' reference landmarks the two
  // differ by 2.6 degrees on average, the most at L5). The weight is the
  // inverse-variance combination of the two readings' errors (with their covariance) on the
  // 365 training films, (v1 - c) / (v1 + v2 - 2 c) = 0.236, not a fitted score: SMAPE there
  // 8.83 -> 8.51 %, major MAE 3.19 -> 2.94 (models/xray-landmarks.md).
  double centreline_weight = 0.24;
  // ... except T1 and L5, which have one neighbour each: their "centreline" is the line to
  // it alone, a one-sided reading at a transition of the spine (on the training films'
  // reference landmarks 6.3 degrees sd from L5's own tilt, against 2.8-3.8 at T1..L4), whose
  // inverse-variance weight there is 0.03: they keep their own tilt (models/xray-landmarks.md,
  // "T1 and L5 keep their own tilt").
  double centreline_end_weight = 0;
};

// The second stage's crops (scripts/cobb/fine.py): per vertebra, a 128 x 80 (W x H) grid
// centred on its first-stage centre in the 1024 x 512 working image, pixel spacing
// s = (mean endplate width) / 80 working pixels (clamped to 0.3..4), bilinear with zero
// padding, z-scored per crop.
struct XrayCornerCrops {
  Tensor crops;                  // [17, 1, 80, 128]
  std::vector<Point2> centres;   // 17, working-image pixels
  std::vector<double> scales;    // 17, working pixels per crop pixel
};
XrayCornerCrops xray_corner_crops(const FloatImage& radiograph, const std::vector<Point2>& points_px);

// Replaces lm.points by the corners decoded from the second stage's heatmaps [17, 4, h, w]
// (stride = crop pixels per heatmap pixel); landmarks whose heatmap peak is below
// `min_peak` keep their first-stage position. Fills landmark_confidence.
void apply_corner_heatmaps(const Tensor& heatmaps, const XrayCornerCrops& crops, std::size_t width,
                           std::size_t height, int stride, double min_peak, XrayLandmarks& lm);

// Puts each vertebra's corners (68 points, AASCE order) at w (second - first) past the
// first stage's, w = second_stage_weight * min(1, disagreement_deg / |d|), d the
// difference between the two readings' tilts (vertebra_tilt_deg): their weighted mean
// while they agree within disagreement_deg degrees; beyond, the tilt moves no more than
// about second_stage_weight * disagreement_deg from the first stage's (a Huber weight).
// disagreement_deg <= 0: w = second_stage_weight everywhere. `second` becomes the result;
// returns the vertebrae (0 = T1) whose weight was reduced.
std::vector<int> combine_stage_corners(const std::vector<Point2>& first, std::vector<Point2>& second,
                                       double second_stage_weight, double disagreement_deg);

// How EnsembleReading::split shares out an ensemble of `members` networks' passes over the
// image and its mirror: networks 0, 2, ... read the image, 1, 3, ... the mirror, and with
// an odd number the last reads both at half weight. Every network weighs 1/members and
// each side 1/2 (the weights add up to 1), in members + members % 2 passes.
struct EnsemblePass {
  int member = 0;
  bool mirrored = false;
  double weight = 0;
};
std::vector<EnsemblePass> split_ensemble_passes(int members);

// Decodes a model output [1, 17 + 8, h, w] for an image of the given size (pixels).
XrayLandmarks decode_xray_landmarks(const Tensor& output, std::size_t width, std::size_t height,
                                    int stride, double offset_scale, const XrayLandmarkOptions& options = {});

// Flags what makes the measured curve itself untrustworthy (appended to lm.flags): an end
// vertebra of the major curve whose endplate corners are low-confidence, or that the
// sequence constraint had to move off its strongest heatmap peak.
void flag_curve_reliability(const CobbAngles& angles, double low_confidence, XrayLandmarks& lm);

// Throws an input error for images that are not 2D, are too small or too large, hold
// NaN or infinite values, or are blank.
void check_radiograph(const FloatImage& radiograph);

class XrayLandmarkDetector {
 public:
  // corner_model: the second stage, or null to keep the first stage's corners.
  // anchor_model: the level anchors (re-count the chain at its ends), or null.
  XrayLandmarkDetector(const Model& model, XrayLandmarkOptions options = {}, const Model* corner_model = nullptr,
                       const Model* anchor_model = nullptr);
  // Throws an input error for images check_radiograph refuses. refine_corners false keeps
  // the first stage's corners for this image even when a corner model is loaded.
  XrayLandmarks detect(const FloatImage& radiograph, bool refine_corners = true) const;

 private:
  const Model& model_;
  const Model* corner_model_;
  std::optional<XrayLevelAnchors> anchors_;
  XrayLandmarkOptions options_;
  int corner_stride_ = 2;
  int stride_ = 4;
  double offset_scale_ = 16;
};

}  // namespace spine
