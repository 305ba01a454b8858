// Label maps as DICOM Segmentation objects (binary SEG, one segment per label), written
// with DCMTK's dcmseg so that PACS and viewers (3D Slicer, OHIF) show the vertebrae and
// discs with their names, standard codes and colours over the source series.
#pragma once
#include <cstddef>
#include <filesystem>
#include <string>

#include "spine/image.hpp"

namespace spine {

struct DicomSegOptions {
  // The DICOM series that was segmented (a folder of single-frame images): the SEG then
  // belongs to its study, shares its frame of reference and names the source image of
  // every frame. Empty (NIfTI, NRRD, ... input): the SEG stands alone, with new UIDs.
  std::filesystem::path source_series;
  // Copy the patient's name, ID, birth date and sex and the study's date, time, ID,
  // accession number and description from the source, so that a PACS files the SEG with
  // its study. Off by default: the project writes no patient name, ID or date anywhere;
  // the SEG then carries the source's UIDs only and says Patient Identity Removed: YES.
  bool copy_patient_identity = false;
  std::string series_description = "spine vertebrae and discs";
  std::string algorithm_name = "spine-seg";
  std::string software_version;  // written as the equipment's Software Versions
};

struct DicomSegSummary {
  std::size_t segments = 0;
  std::size_t frames = 0;
  bool references_source = false;
  std::string source_problem;  // why a source series given could not be referenced
};

// A coded concept as DICOM writes it (Code Value, Coding Scheme Designator, Code Meaning).
struct CodedConcept {
  std::string value, scheme, meaning;
};
// The Segmented Property Type of a label: the vertebra's or disc's own SNOMED CT code
// (DICOM CID 7603 / 7604, the sacrum), else the generic "Vertebra" or "Intervertebral
// disc" (T13, L6 and the discs beside them).
CodedConcept segmented_property_type(int label);

// Writes `labels` (label values as in labels.hpp; 0 = background) atomically to `path`.
// Throws spine::Error: input when the source series cannot be read or does not match the
// label map's grid, internal when DCMTK refuses the object.
DicomSegSummary write_dicom_seg(const LabelImage& labels, const std::filesystem::path& path,
                                const DicomSegOptions& options);

}  // namespace spine
