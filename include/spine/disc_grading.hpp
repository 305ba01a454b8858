// Degenerative grading of lumbar discs on one sagittal MRI slice: the grading slice
// (the input slice, or the sagittal slice of a volume through the discs' centres), the
// discs found and named from the MR vertebra segmentation (anchored on the sacrum), a
// patch per disc in the disc's own frame, and a grading model over the disc sequence.
#pragma once
#include <array>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "spine/cobb.hpp"
#include "spine/image.hpp"
#include "spine/model.hpp"
#include "spine/spine_seg.hpp"

namespace spine {

// --- Grading slice ---------------------------------------------------------------------
// A sagittal slice in the grading frame: x toward the patient's posterior (anterior at
// the left of the picture), y toward the feet (head up), spacing in mm.
struct GradingSlice {
  FloatImage image;           // 2D
  LabelImage labels;          // 2D, VerSe vertebra labels (bodies) and discs (100 + level)
  std::vector<IdentifiedVertebra> vertebrae;  // top to bottom, as the segmentation named them
  std::string choice;         // how the slice was chosen, for the outputs
  int slice_index = -1;       // in the volume's left-right axis (PIL orientation); -1 for a 2D input
  int slice_count = 1;
  // Where a pixel (x, y) of the slice lies in the patient: position.index_to_lps(x, y,
  // position_k) (the input's own geometry for a 2D input; PNG and JPEG have none, so
  // their pixels are placed from the origin).
  Geometry position;
  int position_k = 0;
  double naming_confidence = 0;
  std::vector<std::string> flags;  // from the segmentation (transitional anatomy, spacing)
  std::vector<std::string> model_limitations;
};

// A 2D input is taken as a sagittal slice shown head up and anterior left (how sagittal
// MRI is displayed; SPIDER's convention). The MR model is 2.5D (a slice and its
// neighbours 2 mm either side), so a single slice is given to it as a slab of identical
// slices. A 3D input is segmented as it is and the slice through the median left-right
// position of the discs (else of the vertebrae) is taken. Throws an input error when the
// image is not plausibly a sagittal lumbar MRI (no vertebrae found, too few to name).
GradingSlice grading_slice(const FloatImage& image, SpineSegmenter& segmenter, const SpineSegConfig& config,
                           const std::string& dicom_modality);

// The slab a 2D slice becomes for the 2.5D model (PIL orientation, `thickness_mm` thick at 1 mm).
FloatImage slab_from_slice(const FloatImage& slice, double thickness_mm = 21.0);

// --- Discs -----------------------------------------------------------------------------
struct DiscLocation {
  int label = 0;               // 100 + VerSe number of the vertebra above
  std::string name;            // "L4/L5"
  Point2 centre_px;            // in the grading slice
  Point2 axis{0, 1};           // unit vector along the spine, head to foot (upper body -> lower body)
  double height_mm = 0;        // gap between the two bodies along the axis; -1 when not measured
  double width_mm = 0;         // anteroposterior depth of the neighbouring bodies
  bool cut = false;            // a neighbouring body or the disc's neighbourhood leaves the slice
  std::string placement = "between bodies";  // how the centre was found
  double turn_deg = 0;         // largest angle between this disc's axis and its neighbours' (above and below)
  std::vector<std::string> flags;  // geometry that makes the disc's place doubtful
};

// Geometry checks on the disc chain: the spine bends smoothly, so a disc whose axis
// turns more than this from its neighbour's, or whose bodies lie much nearer or farther
// apart than the others', rests on a misplaced or missed body (on SPIDER slices: bowel
// or pelvis taken for L5 or the sacrum). The 55 degrees were chosen from the turns over
// all 350 SPIDER slices (95th percentile 35, 99th 69) and the overlays of 12 of them (10
// training, 2 validation slices): real lumbosacral turns reached 44 degrees there.
inline constexpr double kMaxDiscTurnDeg = 55.0;
inline constexpr double kMinBodySpacingRatio = 0.6, kMaxBodySpacingRatio = 1.6;

// Every pair of consecutive named vertebrae (sacrum included) in the slice has a disc
// between them. Ordered top to bottom, with the geometry flags above.
std::vector<DiscLocation> locate_discs(const GradingSlice& slice);

// What the grading model sees: per disc a patch of `size_px` (width across the spine,
// posterior to the right; height along it) at `spacing_mm`, in the disc's frame, with
// the slice's intensities scaled by its 1st..99th percentiles to 0..1.
struct PatchSpec {
  int width_px = 96;
  int height_px = 64;
  double spacing_mm = 0.7;
  // The patch centre sits this far posterior of the disc centre (the canal, where
  // herniations and bulges show, is behind the disc).
  double posterior_shift_mm = 4.0;
};
// [discs, 1, height, width], the discs in the order given.
Tensor disc_patches(const FloatImage& slice, const std::vector<DiscLocation>& discs, const PatchSpec& spec);

// --- A study's series together ---------------------------------------------------------
// A series name's study: the name before its first sequence token (t1, t2, t1w, t2w, any
// case); its sequence: that token and the all-letter tokens after it ("101_t2_SPACE" ->
// "101" and "t2_SPACE", "sub-01_T1w_2019" -> "sub-01" and "T1w"). All empty when the name
// has no such token; study_key alone empty when nothing comes before it ("T2_SAG": spine-grade
// then takes the series' folder for its study).
struct SeriesOfStudy {
  std::string study_key;
  std::string sequence;
  std::string token;  // the sequence token alone ("t2")
};
SeriesOfStudy series_of_study(const std::string& series_name);

// A disc's name (label) and where it lies in the patient (LPS mm): the same disc in two
// series of one study lies at the same place.
struct DiscPosition {
  int label = 0;
  std::array<double, 3> lps_mm{};
};

// Two series' names for the discs they both show (nearest disc within tolerance_mm).
struct NameComparison {
  int matched = 0;
  // How many levels higher (nearer the head) this series names the matched discs than the
  // other; negative: lower; 0: the same names.
  int levels_higher = 0;
  bool consistent = true;  // every matched disc differs by the same number of levels
};
NameComparison compare_disc_names(const std::vector<DiscPosition>& mine, const std::vector<DiscPosition>& other,
                                  double tolerance_mm = 6.0);
// At least this many discs matched before two series' names are compared at all.
inline constexpr int kMinDiscsToCompareNames = 3;

// Renames every disc `levels` levels down the normal sequence (L4/L5 -> L5/S); a disc that
// would fall inside the sacrum is removed. Returns how many were removed.
int move_names_down(std::vector<DiscLocation>& discs, int levels);

// Another series of the same study, as it named its discs alone.
struct OtherSeries {
  std::string sequence;                              // "t2_SPACE": how results name it
  const std::vector<DiscPosition>* discs = nullptr;  // nullptr: its discs could not be found
};
struct NameReconciliation {
  nlohmann::json record;            // `series_of_study` of grades.json
  std::vector<std::string> flags;   // for the series' flags
  bool names_disagree = false;      // with any series compared (naming_reliable is then false)
  int moved_down = 0;               // levels this series' names moved
  std::string lower_sequence;       // the series whose names it took
};
// Compares a series' names (`positions`, as it named `discs` alone) with its study's other
// series and, where one names the same discs lower by a whole number of levels, moves
// `discs` down to the lowest such naming (move_names_down); recorded and flagged.
NameReconciliation reconcile_names(std::vector<DiscLocation>& discs, const std::vector<DiscPosition>& positions,
                                   const std::string& sequence, const std::vector<OtherSeries>& others);

// --- Grades ----------------------------------------------------------------------------
inline constexpr int kPfirrmannGrades = 5;
// The binary findings in the model's output order after the Pfirrmann logits.
const std::vector<std::string>& disc_finding_names();

struct DiscFinding {
  std::string name;
  double probability = 0;
  double threshold = 0.5;      // operating point from the model card
  bool present = false;
};

struct DiscGrades {
  DiscLocation disc;
  std::array<double, kPfirrmannGrades> pfirrmann_probabilities{};
  int pfirrmann = 0;           // most probable grade 1..5
  double pfirrmann_expected = 0;
  std::vector<DiscFinding> findings;
  std::vector<std::string> flags;
};

class DiscGrader {
 public:
  explicit DiscGrader(const Model& model);
  const PatchSpec& patch_spec() const { return spec_; }
  // One series' discs, top to bottom (the model's context runs along this order).
  std::vector<DiscGrades> grade(const FloatImage& slice, const std::vector<DiscLocation>& discs) const;

 private:
  const Model& model_;
  PatchSpec spec_;
  std::vector<double> thresholds_;  // per finding
};

}  // namespace spine
