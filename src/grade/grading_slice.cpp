// The grading slice: a 2D sagittal input as it is, or the sagittal slice of a volume
// through the discs' centres, with the MR segmentation's vertebrae and discs in it.
#include <algorithm>
#include <cmath>

#include "spine/disc_grading.hpp"
#include "spine/error.hpp"
#include "spine/labels.hpp"
#include "spine/preprocess.hpp"

namespace spine {
namespace {

// x posterior, y inferior, z left: a sagittal slice of it is the picture as displayed
// (head up, anterior left), indexed [x, y].
constexpr const char* kGradingFrame = "PIL";

template <class T>
Image<T> sagittal_slice(const Image<T>& volume, std::size_t k) {
  Geometry g;
  g.dimension = 2;
  g.size = {volume.nx(), volume.ny(), 1};
  g.spacing = {volume.geometry.spacing[0], volume.geometry.spacing[1], 1.0};
  Image<T> out(g);
  for (std::size_t y = 0; y < volume.ny(); ++y)
    for (std::size_t x = 0; x < volume.nx(); ++x) out.at(x, y) = volume.at(x, y, k);
  return out;
}

}  // namespace

FloatImage slab_from_slice(const FloatImage& slice, double thickness_mm) {
  Geometry g;
  g.dimension = 3;
  const auto n = static_cast<std::size_t>(std::max(4.0, std::round(thickness_mm)));
  g.size = {slice.nx(), slice.ny(), n};
  g.spacing = {slice.geometry.spacing[0], slice.geometry.spacing[1], 1.0};
  // Columns of the direction matrix are the voxel axes in LPS: x -> posterior (+P),
  // y -> inferior (-S), z -> left (+L).
  g.direction = {0, 0, 1, 1, 0, 0, 0, -1, 0};
  FloatImage slab(g);
  const std::size_t plane = slice.nx() * slice.ny();
  for (std::size_t k = 0; k < n; ++k) std::copy(slice.voxels.begin(), slice.voxels.end(), slab.voxels.begin() + k * plane);
  return slab;
}

GradingSlice grading_slice(const FloatImage& image, SpineSegmenter& segmenter, const SpineSegConfig& config,
                           const std::string& dicom_modality) {
  const bool planar = image.geometry.dimension == 2 || image.nz() == 1;
  const FloatImage volume = planar ? slab_from_slice(image) : reorient(image, kGradingFrame);
  // "mr": the grading model is for MRI; intensities or a DICOM tag that say CT stop here.
  SpineSegResult seg = segmenter.segment(volume, "mr", dicom_modality, config);
  const LabelImage& labels = seg.labels;  // in the PIL grid of `volume`
  GradingSlice out;
  out.naming_confidence = seg.naming_confidence;
  // A slab of identical slices reaches its left and right ends everywhere, so the
  // segmentation calls every body of a 2D input cut; whether a disc's bodies leave the
  // slice is checked in the slice itself (DiscLocation::cut).
  for (const auto& f : seg.flags) {
    const std::string cut = " is cut by the field of view";
    const bool slab_edge = planar && f.size() > cut.size() && f.compare(f.size() - cut.size(), cut.size(), cut) == 0;
    if (!slab_edge) out.flags.push_back(f);
  }
  out.model_limitations = seg.model_limitations;
  out.slice_count = static_cast<int>(volume.nz());
  if (seg.vertebrae.size() < 2)
    throw input_error("no lumbar spine found (" + std::to_string(seg.vertebrae.size()) +
                      " vertebral bodies): not a sagittal lumbar MRI, or the spine is out of view");

  std::size_t k = volume.nz() / 2;
  if (planar) {
    out.choice = "the input slice (2D)";
  } else {
    // The median left-right position of the discs (the slice through their centres);
    // the vertebrae's when no disc was segmented.
    std::vector<double> zs;
    for (const auto& d : seg.discs) zs.push_back(volume.geometry.lps_to_index(d.centroid_lps_mm)[2]);
    const bool by_discs = !zs.empty();
    if (!by_discs)
      for (const auto& v : seg.vertebrae) zs.push_back(volume.geometry.lps_to_index(v.centroid_lps_mm)[2]);
    std::nth_element(zs.begin(), zs.begin() + static_cast<std::ptrdiff_t>(zs.size() / 2), zs.end());
    const double zmed = zs[zs.size() / 2];
    k = static_cast<std::size_t>(std::clamp<long>(std::lround(zmed), 0, static_cast<long>(volume.nz()) - 1));
    out.slice_index = static_cast<int>(k);
    out.choice = "sagittal slice " + std::to_string(k) + " of " + std::to_string(volume.nz()) +
                 " (left to right), through the median left-right position of the " +
                 (by_discs ? std::to_string(zs.size()) + " segmented discs" : std::to_string(zs.size()) + " vertebrae");
  }
  out.position = planar ? image.geometry : volume.geometry;
  out.position_k = planar ? 0 : static_cast<int>(k);
  out.image = sagittal_slice(volume, k);
  out.labels = sagittal_slice(labels, k);
  out.vertebrae = seg.vertebrae;
  return out;
}

}  // namespace spine
