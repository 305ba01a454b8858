// Vertebra and disc segmentation of CT and MRI volumes with a 2.5D sagittal-slice model,
// coarse-to-fine, and identification of every vertebra by its place in the sequence.
// The pipeline: modality decision -> reorientation to the model's orientation and
// resampling to its spacing -> a coarse pass on a downsampled volume that finds the spine
// -> the full-resolution pass only around it -> instances, names (sequence constraint),
// discs -> labels back in the input's own grid.
#pragma once
#include <array>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "spine/image.hpp"
#include "spine/model.hpp"

namespace spine {

// --- Modality ------------------------------------------------------------------------
struct ModalityDecision {
  std::string modality;  // "ct" or "mr"
  std::string reason;    // how it was decided, for the log and the outputs
};

// `requested` is "auto", "ct" or "mr"; `dicom_modality` the DICOM Modality tag ("CT",
// "MR", or empty). Auto uses the tag when there is one, else the intensities (CT is in
// HU, with air near -1000). An explicit choice that the tag or the intensities
// contradict throws an input error that says why.
ModalityDecision decide_modality(const FloatImage& image, const std::string& requested,
                                 const std::string& dicom_modality);

// --- Segmentation --------------------------------------------------------------------
struct SpineSegConfig {
  bool coarse_to_fine = true;       // false: every sagittal slice over the whole field
  double coarse_spacing_mm = 2.0;   // resolution of the coarse pass
  double coarse_slice_step_mm = 6.0;  // distance between sagittal slices of the coarse pass
  double roi_margin_mm = 25.0;      // added around the spine found by the coarse pass
  double min_vertebra_ml = 1.0;     // smaller vertebra fragments are dropped
  double min_fraction_of_median = 0.25;  // ... and those below this fraction of the median one
  double min_disc_ml = 0.3;
  int fine_slice_stride = 2;         // fine pass: model on every Nth sagittal slice, those between interpolated

  void validate() const;
  nlohmann::json to_json() const;
};

// Whether bone that is not vertebra (a rib) leaves a vertebra at its height on CT.
enum class RibEvidence : int { kUnknown = -1, kNone = 0, kRibs = 1 };

struct IdentifiedVertebra {
  int label = 0;                    // VerSe number
  std::string name;                 // "L3"
  std::array<double, 3> centroid_lps_mm{0, 0, 0};
  double confidence = 0;            // 0..1: the level model's support for this name
  double volume_ml = 0;
  bool touches_border = false;      // cut by the field of view
  bool cut_head_foot = false;       // ... at its top or bottom, so its centroid is off head to foot
  RibEvidence ribs = RibEvidence::kUnknown;  // CT only
};

struct IdentifiedDisc {
  int label = 0;                    // 100 + the vertebra above
  std::string name;                 // "L4/L5"
  std::array<double, 3> centroid_lps_mm{0, 0, 0};
  double volume_ml = 0;
};

struct SpineSegResult {
  LabelImage labels;                // in the input's grid and geometry
  ModalityDecision modality;
  std::string vertebra_part;        // "body" (MR model) or "whole" (CT model)
  std::vector<IdentifiedVertebra> vertebrae;  // top to bottom
  std::vector<IdentifiedDisc> discs;          // top to bottom
  double naming_confidence = 0;     // probability of the chosen level offset over the others
  std::vector<std::string> flags;
  std::vector<std::string> model_limitations;  // the used model card's known failure modes
  nlohmann::json timing;            // seconds per stage, region of interest
};

// Holds the models (loaded once, on first use per modality) and segments volumes.
class SpineSegmenter {
 public:
  // Paths to the MR and CT models; a path may be empty when that modality is not needed.
  SpineSegmenter(ModelFile mr_model, ModelFile ct_model, std::string device);
  ~SpineSegmenter();
  SpineSegmenter(SpineSegmenter&&) noexcept;

  // image: a 3D volume. requested_modality: "auto", "ct", "mr".
  SpineSegResult segment(const FloatImage& image, const std::string& requested_modality,
                         const std::string& dicom_modality, const SpineSegConfig& config);

  // The model for a modality, loading it when needed (for provenance and --version).
  const Model& model(const std::string& modality);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// --- Naming --------------------------------------------------------------------------
// The normal cranio-caudal sequence of VerSe labels C1..C7, T1..T12, L1..L5, sacrum.
std::vector<int> normal_sequence();

// Names vertebra instances (ordered top to bottom) as consecutive levels. level_probs[i]
// holds instance i's mean probability for each of `level_labels` (the level model's
// classes, in cranio-caudal order). Names outside the classes are allowed at the ends
// (a T10 above a T11..L5 model) with a penalty. When the model has a sacrum class, the
// last 2..4 candidates may all be named S (a sacrum segmented in pieces; the caller
// merges them). Returns the labels, the probability of the chosen hypothesis among all,
// and flags (e.g. transitional anatomy suspected).
//
// `ribs` (CT; empty or one per instance): where the ribs are seen to end (an instance with
// ribs, the next without or unclear, and the one after without) that instance is the
// lowest rib-bearing vertebra, T12 in the normal spine: each hypothesis is weighed by how
// likely its name for it is (T12 0.6; T11 or L1 0.15: a 12th rib too short to see, 11 or
// 13 rib pairs, a lumbar rib; anything else 0.05). When the ribs change the names the
// level model alone would give, or the name of the lowest rib-bearing vertebra is not
// T12, it is flagged.
//
// `volumes_ml` (empty or one per instance): a candidate inside the chain (not its first or
// last) under half the volume of each neighbour cannot be a whole vertebra (neighbours
// differ by a few per cent), so it may be a piece of one of them (cut off at a disc and
// left a candidate of its own); the hypotheses then include its neighbour's name for it, the
// names consecutive around it, at a prior of kPiecePrior. When such a hypothesis wins,
// `piece` is the candidate and `piece_of` the neighbour (the caller merges them) and it is
// flagged.
struct SequenceNaming {
  std::vector<int> labels;
  std::vector<double> confidence;   // per instance
  double offset_probability = 0;
  std::size_t sacrum_pieces = 0;    // > 1: the last candidates are pieces of one sacrum (all named S)
  int piece = -1, piece_of = -1;    // a candidate named as a piece of its neighbour, or -1
  int lowest_rib_bearing = -1;      // the instance the ribs anchor on, or -1
  std::vector<std::string> flags;
};
inline constexpr double kPiecePrior = 0.1;
SequenceNaming name_vertebra_sequence(const std::vector<std::vector<double>>& level_probs,
                                      const std::vector<int>& level_labels,
                                      const std::vector<RibEvidence>& ribs = {},
                                      const std::vector<double>& volumes_ml = {});

// Plausibility of the names given the instances' positions: the distance between
// consecutive named centroids against the median spacing of those levels in 2116 real CT
// scans (ct-vertebra-keypoints; src/phantom/anatomy_stats.inc). Flags a spine whose
// overall spacing does not fit its names (median ratio outside 0.7..1.4; real scans span
// 0.80..1.22) and single gaps far from the rest (ratio to that median outside 0.6..1.6;
// real scans: 0.74..1.35 at the 0.1st and 99.9th percentiles). Vertebrae cut by the field
// of view are left out. Returns the flags (empty when plausible or too few vertebrae).
std::vector<std::string> vertebra_spacing_flags(const std::vector<IdentifiedVertebra>& vertebrae);

// Metal beside the vertebrae of a CT (screws, rods, cages, cement with contrast): voxels of
// kMetalHu or more within kMetalReachMm of a vertebra's labels, as 0.05 ml or more. The
// CT model has seen no implant, so such vertebrae's outlines and names are not to be
// trusted; metal elsewhere (a hip prosthesis, as in the abdominal example CT) is not
// flagged. Cortical bone stays below about 2120 HU on the real CTs here. `labels` on
// `ct`'s grid. Returns one flag naming the vertebrae, or none.
constexpr double kMetalHu = 2500;
constexpr double kMetalReachMm = 5;
std::vector<std::string> metal_flags(const FloatImage& ct, const LabelImage& labels,
                                     const std::vector<IdentifiedVertebra>& vertebrae);

// 3D Slicer markups (.mrk.json) of named points in LPS mm.
nlohmann::json slicer_markups(const std::vector<IdentifiedVertebra>& vertebrae);

}  // namespace spine
