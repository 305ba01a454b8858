// DICOM SEG output through DCMTK's dcmseg (a Debian library that writes the
// Segmentation IOD, its functional groups and bit-packed frames correctly; doing that by
// hand is how SEG writers go wrong).
//
// One binary segment per label present, one frame per segment and slice it appears in.
// Frames carry their plane position, the source image they were derived from (when the
// input was a DICOM series) and their dimension index (segment, position), so viewers can
// rebuild the volume. Patient identity is copied from the source only on request.
#include "spine/dicom_seg.hpp"

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdio>
#include <map>
#include <memory>
#include <set>
#include <vector>

#include <dcmtk/config/osconfig.h>  // must come first among DCMTK headers
#include <dcmtk/dcmdata/dcdeftag.h>
#include <dcmtk/dcmdata/dcfilefo.h>
#include <dcmtk/dcmdata/dcuid.h>
#include <dcmtk/dcmfg/fgderimg.h>
#include <dcmtk/dcmfg/fgfracon.h>
#include <dcmtk/dcmfg/fgpixmsr.h>
#include <dcmtk/dcmfg/fgplanor.h>
#include <dcmtk/dcmfg/fgplanpo.h>
#include <dcmtk/dcmiod/cielabutil.h>
#include <dcmtk/dcmiod/iodreferences.h>
#include <dcmtk/dcmseg/segdoc.h>
#include <dcmtk/dcmseg/segment.h>
#include <dcmtk/oflog/oflog.h>

#include "io/header_check.hpp"
#include "spine/error.hpp"
#include "spine/labels.hpp"

namespace fs = std::filesystem;

namespace spine {

namespace {

// SNOMED CT codes of DICOM CID 7603 (vertebrae) and CID 7604 (intervertebral discs, by
// the vertebra above), indexed by VerSe number 1 (C1) .. 24 (L5).
constexpr std::array<const char*, 24> kVertebraCodes{
    "14806007", "39976000", "113205007", "5329002",  "36978003", "36054005", "87391001", "64864005",
    "53733008", "1626008",  "73071006",  "56401006", "45296009", "62487009", "11068009", "82687006",
    "7610001",  "12989004", "23215003",  "66794005", "14293000", "36470004", "11994002", "49668003"};
constexpr std::array<const char*, 24> kDiscCodes{
    nullptr,     "1078209008", "58820006", "49400002", "73959003", "75095006", "37414007", "40908007",
    "6004007",   "2620004",    "82965004", "72692000", "74401007", "28693002", "9188009",  "113209001",
    "34959001",  "1537001",    "76206002", "80064006", "67459009", "62551000", "84020006", "715056000"};

std::string ds(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.6g", std::fabs(v) < 1e-9 ? 0.0 : v);
  return buf;
}

void check(const OFCondition& c, const std::string& what) {
  if (c.bad()) throw internal_error("DICOM SEG: " + what + ": " + c.text());
}

// A source image's header (pixel data not loaded) and where its slice lies.
struct SourceImage {
  std::unique_ptr<DcmFileFormat> file;
  std::array<double, 3> position{0, 0, 0};
  std::array<double, 6> orientation{1, 0, 0, 0, 1, 0};  // along a row, down a column
  std::array<double, 2> pixel_spacing{1, 1};            // between rows, between columns
  Uint16 rows = 0, columns = 0;
};

// The series' images, or empty with `problem` set when they cannot be referenced (a
// series stripped of its UIDs, as some anonymisers leave them): the SEG then stands alone.
std::vector<SourceImage> read_sources(const fs::path& dir, std::string& problem) {
  std::vector<SourceImage> out;
  for (const std::string& f : detail::check_dicom_series(dir, nullptr)) {
    SourceImage s;
    s.file = std::make_unique<DcmFileFormat>();
    // Values longer than 4 KiB (the pixel data) stay on disk.
    if (s.file->loadFile(f.c_str(), EXS_Unknown, EGL_noChange, 4096).bad())
      throw input_error(f + ": cannot be read as DICOM for the SEG's references");
    DcmDataset* d = s.file->getDataset();
    for (unsigned long i = 0; i < 3; ++i) {
      Float64 v = 0;
      if (d->findAndGetFloat64(DCM_ImagePositionPatient, v, i).bad())
        throw input_error(f + ": no Image Position (Patient) for the SEG's references");
      s.position[i] = v;
    }
    if (d->findAndGetUint16(DCM_Rows, s.rows).bad() || d->findAndGetUint16(DCM_Columns, s.columns).bad())
      throw input_error(f + ": no Rows / Columns for the SEG's references");
    for (unsigned long i = 0; i < 6; ++i)
      if (d->findAndGetFloat64(DCM_ImageOrientationPatient, s.orientation[i], i).bad())
        throw input_error(f + ": no Image Orientation (Patient) for the SEG's references");
    for (unsigned long i = 0; i < 2; ++i)
      if (d->findAndGetFloat64(DCM_PixelSpacing, s.pixel_spacing[i], i).bad())
        throw input_error(f + ": no Pixel Spacing for the SEG's references");
    for (const auto& [tag, name] : {std::pair{DCM_StudyInstanceUID, "Study Instance UID"},
                                    std::pair{DCM_SeriesInstanceUID, "Series Instance UID"},
                                    std::pair{DCM_SOPClassUID, "SOP Class UID"},
                                    std::pair{DCM_SOPInstanceUID, "SOP Instance UID"}}) {
      OFString uid;
      if (d->findAndGetOFString(tag, uid).bad() || uid.empty()) {
        problem = std::string("the source series has no ") + name;  // file names can be UIDs: not printed
        return {};
      }
    }
    out.push_back(std::move(s));
  }
  return out;
}

// The study, frame of reference and (on request) patient attributes that the SEG takes
// over from its source; everything else stays behind.
std::unique_ptr<DcmDataset> identity_subset(DcmDataset& source, bool with_patient) {
  auto out = std::make_unique<DcmDataset>();
  std::vector<DcmTagKey> keep{DCM_StudyInstanceUID, DCM_FrameOfReferenceUID, DCM_PositionReferenceIndicator};
  if (with_patient)
    keep.insert(keep.end(), {DCM_SpecificCharacterSet, DCM_PatientName, DCM_PatientID, DCM_IssuerOfPatientID,
                             DCM_PatientBirthDate, DCM_PatientSex, DCM_StudyDate, DCM_StudyTime, DCM_StudyID,
                             DCM_AccessionNumber, DCM_ReferringPhysicianName, DCM_StudyDescription});
  for (const auto& tag : keep) {
    DcmElement* e = nullptr;
    if (source.findAndGetElement(tag, e).good() && e) out->insert(OFstatic_cast(DcmElement*, e->clone()), true);
  }
  return out;
}

}  // namespace

CodedConcept segmented_property_type(int label) {
  if (label >= label::kC1 && label <= label::kL5)
    return {kVertebraCodes[static_cast<std::size_t>(label - 1)], "SCT", label_name(label) + " vertebra"};
  if (label == label::kSacrum) return {"54735007", "SCT", "Sacrum"};
  if (label == label::kL6 || label == label::kT13) return {"51282000", "SCT", "Vertebra"};
  if (is_disc_label(label)) {
    const int above = label - label::kDiscOffset;
    if (above >= label::kC1 && above <= label::kL5 && kDiscCodes[static_cast<std::size_t>(above - 1)])
      return {kDiscCodes[static_cast<std::size_t>(above - 1)], "SCT",
              above == label::kL5 ? "L5/S1 disc" : label_name(label) + " disc"};  // our name is "L5/S"
    return {"360499006", "SCT", "Intervertebral disc"};
  }
  throw internal_error("DICOM SEG: no code for label " + std::to_string(label));
}

DicomSegSummary write_dicom_seg(const LabelImage& labels, const fs::path& path, const DicomSegOptions& options) {
  // DCMTK logs through its own logger; what matters comes back as conditions, and its
  // messages could quote header values, so it stays silent.
  OFLog::configure(OFLogger::OFF_LOG_LEVEL);
  const Geometry& g = labels.geometry;
  if (g.dimension != 3 || labels.nz() == 0) throw internal_error("DICOM SEG: needs a 3D label map");

  // The source image of each slice, matched by position.
  std::vector<SourceImage> sources;
  std::vector<std::size_t> source_of(labels.nz(), 0);
  std::vector<std::array<double, 3>> frame_position(labels.nz());
  for (std::size_t z = 0; z < labels.nz(); ++z) frame_position[z] = g.index_to_lps(0, 0, static_cast<double>(z));
  const LabelImage* frames = &labels;
  LabelImage on_sources;
  DicomSegSummary summary;
  if (!options.source_series.empty()) sources = read_sources(options.source_series, summary.source_problem);
  if (!sources.empty()) {
    // Each slice at a source image's position, the sizes alike: the label map is on the
    // series' grid, and each frame is one of its slices.
    const double tolerance = 0.25 * g.spacing[2];
    bool on_grid = sources.front().columns == labels.nx() && sources.front().rows == labels.ny();
    for (std::size_t z = 0; z < labels.nz() && on_grid; ++z) {
      const auto& p = frame_position[z];
      double best = 1e300;
      for (std::size_t k = 0; k < sources.size(); ++k) {
        double d = 0;
        for (int a = 0; a < 3; ++a) d += (sources[k].position[a] - p[a]) * (sources[k].position[a] - p[a]);
        if (d < best) best = d, source_of[z] = k;
      }
      on_grid = std::sqrt(best) <= tolerance;
    }
    // Otherwise (a gantry-tilted series, which reading put on an upright grid) each frame
    // is the label map taken onto a source image's own pixels, so that it lies exactly on
    // the image it names, as viewers expect of a SEG.
    if (!on_grid) {
      // The frames' grid: the source images' size, axes and pixel spacing, and the
      // distance between their planes.
      auto plane_of = [](const SourceImage& src) {
        const auto& o = src.orientation;
        Geometry pg;
        pg.size = {src.columns, src.rows, 1};
        pg.spacing = {src.pixel_spacing[1], src.pixel_spacing[0], 1};
        pg.origin = src.position;
        pg.direction = {o[0], o[3], o[1] * o[5] - o[2] * o[4], o[1], o[4], o[2] * o[3] - o[0] * o[5],
                        o[2], o[5], o[0] * o[4] - o[1] * o[3]};
        return pg;
      };
      Geometry sg = plane_of(sources.front());
      sg.size[2] = sources.size();
      if (sources.size() > 1) {
        double along = 0;
        for (int a = 0; a < 3; ++a)
          along += (sources[1].position[a] - sources[0].position[a]) * sg.direction[static_cast<std::size_t>(a * 3 + 2)];
        sg.spacing[2] = std::fabs(along);
      }
      on_sources = LabelImage(sg);
      source_of.assign(sources.size(), 0);
      frame_position.assign(sources.size(), {});
      const std::size_t plane = sg.size[0] * sg.size[1];
      for (std::size_t k = 0; k < sources.size(); ++k) {
        const SourceImage& src = sources[k];
        if (src.columns != sg.size[0] || src.rows != sg.size[1])
          throw input_error(options.source_series.string() + ": images of different sizes");
        // Nearest label: the frame says which structure each source pixel's centre lies in.
        const Geometry pg = plane_of(src);
        for (std::size_t j = 0; j < sg.size[1]; ++j)
          for (std::size_t i = 0; i < sg.size[0]; ++i) {
            const auto c = g.lps_to_index(pg.index_to_lps(static_cast<double>(i), static_cast<double>(j), 0));
            const long x = std::lround(c[0]), y = std::lround(c[1]), z = std::lround(c[2]);
            if (x < 0 || y < 0 || z < 0 || x >= static_cast<long>(labels.nx()) || y >= static_cast<long>(labels.ny()) ||
                z >= static_cast<long>(labels.nz()))
              continue;
            on_sources.voxels[k * plane + j * sg.size[0] + i] =
                labels.at(static_cast<std::size_t>(x), static_cast<std::size_t>(y), static_cast<std::size_t>(z));
          }
        source_of[k] = k;
        frame_position[k] = src.position;
      }
      frames = &on_sources;
    }
  }
  if (frames->nx() > 65535 || frames->ny() > 65535) throw input_error(path.string() + ": slices too large for DICOM");
  const auto rows = static_cast<Uint16>(frames->ny()), cols = static_cast<Uint16>(frames->nx());

  // Which slices each label appears in.
  const std::size_t slice = frames->nx() * frames->ny();
  std::map<int, std::vector<std::size_t>> slices_of;
  for (std::size_t z = 0; z < frames->nz(); ++z) {
    std::set<int> here;
    for (std::size_t i = 0; i < slice; ++i)
      if (const int v = frames->voxels[z * slice + i]; v != 0) here.insert(v);
    for (int v : here) slices_of[v].push_back(z);
  }

  IODGeneralEquipmentModule::EquipmentInfo equipment("spine project", options.algorithm_name, "none",
                                                     options.software_version.empty() ? "unknown"
                                                                                      : options.software_version);
  ContentIdentificationMacro content("1", "SPINE_SEG", options.series_description, "");
  DcmSegmentation* raw = nullptr;
  check(DcmSegmentation::createBinarySegmentation(raw, rows, cols, equipment, content), "create");
  std::unique_ptr<DcmSegmentation> seg(raw);

  if (!sources.empty()) {
    const auto subset = identity_subset(*sources.front().file->getDataset(), options.copy_patient_identity);
    check(seg->importFromSourceImage(*subset, options.copy_patient_identity), "study of the source series");
  } else {
    char uid[100];
    check(seg->getStudy().setStudyInstanceUID(dcmGenerateUniqueIdentifier(uid, SITE_STUDY_UID_ROOT)), "study UID");
    check(seg->getFrameOfReference().setFrameOfReferenceUID(dcmGenerateUniqueIdentifier(uid, SITE_INSTANCE_UID_ROOT)),
          "frame of reference");
  }
  check(seg->getSeries().setSeriesDescription(options.series_description), "series description");
  check(seg->getSeries().setSeriesNumber("300"), "series number");

  // Geometry shared by all frames: the label map's, or the source images' when the frames
  // were taken onto them.
  const Geometry& fg = frames->geometry;
  FGPixelMeasures measures;
  check(measures.setPixelSpacing((ds(fg.spacing[1]) + "\\" + ds(fg.spacing[0])).c_str()), "pixel spacing");
  check(measures.setSliceThickness(ds(fg.spacing[2]).c_str()), "slice thickness");
  check(measures.setSpacingBetweenSlices(ds(fg.spacing[2]).c_str()), "spacing between slices");
  check(seg->addForAllFrames(measures), "pixel measures");
  const auto& d = fg.direction;  // row-major, columns = axes: x (along a row), y (down the columns)
  FGPlaneOrientationPatient orientation;
  check(orientation.setImageOrientationPatient(ds(d[0]).c_str(), ds(d[3]).c_str(), ds(d[6]).c_str(), ds(d[1]).c_str(),
                                               ds(d[4]).c_str(), ds(d[7]).c_str()),
        "orientation");
  check(seg->addForAllFrames(orientation), "orientation");

  // Frames are indexed by segment, then by position along the slice normal.
  char dim_uid[100];
  dcmGenerateUniqueIdentifier(dim_uid, SITE_INSTANCE_UID_ROOT);
  check(seg->getDimensions().addDimensionIndex(DCM_ReferencedSegmentNumber, dim_uid, DCM_SegmentIdentificationSequence,
                                               "ReferencedSegmentNumber"),
        "dimension (segment)");
  check(seg->getDimensions().addDimensionIndex(DCM_ImagePositionPatient, dim_uid, DCM_PlanePositionSequence,
                                               "ImagePositionPatient"),
        "dimension (position)");

  summary.references_source = !sources.empty();
  std::vector<Uint8> pixels(slice);
  // The Pixel Data as the standard packs a binary SEG: all frames' bits one after another,
  // the first pixel in a byte's lowest bit, with no padding between frames. DCMTK 3.6.7
  // (Debian 12) packs a frame that starts inside a byte wrongly, so every frame after the
  // first of an image whose rows x columns is not a multiple of 8 came out shifted; its
  // Pixel Data is replaced with this one below.
  std::size_t frame_count = 0;
  for (const auto& [label, zs] : slices_of) frame_count += zs.size();
  std::vector<Uint8> packed((frame_count * slice + 7) / 8 + ((frame_count * slice + 7) / 8) % 2, 0);
  std::size_t bit = 0;
  for (const auto& [label, zs] : slices_of) {
    const CodedConcept type = segmented_property_type(label);
    const LabelInfo info = label_info(label);
    DcmSegment* segment = nullptr;
    check(DcmSegment::create(segment, info.name, CodeSequenceMacro("91723000", "SCT", "Anatomical Structure"),
                             CodeSequenceMacro(type.value.c_str(), type.scheme.c_str(), type.meaning.c_str()),
                             DcmSegTypes::SAT_AUTOMATIC, options.algorithm_name.c_str()),
          "segment " + info.name);
    double L = 0, a = 0, b = 0;
    IODCIELabUtil::rgb2DicomLab(L, a, b, info.rgb[0] / 255.0, info.rgb[1] / 255.0, info.rgb[2] / 255.0);
    check(segment->setRecommendedDisplayCIELabValue(static_cast<Uint16>(std::lround(L)), static_cast<Uint16>(std::lround(a)),
                                                    static_cast<Uint16>(std::lround(b))),
          "colour of " + info.name);
    Uint16 number = 0;
    const OFCondition added = seg->addSegment(segment, number);
    if (added.bad()) delete segment;
    check(added, "segment " + info.name);
    ++summary.segments;

    for (std::size_t z : zs) {
      for (std::size_t i = 0; i < slice; ++i) pixels[i] = frames->voxels[z * slice + i] == label ? 1 : 0;
      const auto& p = frame_position[z];
      FGPlanePosPatient position;
      check(position.setImagePositionPatient(ds(p[0]).c_str(), ds(p[1]).c_str(), ds(p[2]).c_str()), "position");
      FGFrameContent frame;
      check(frame.setDimensionIndexValues(number, 0), "dimension index");
      check(frame.setDimensionIndexValues(static_cast<Uint32>(z + 1), 1), "dimension index");
      OFVector<FGBase*> per_frame{&position, &frame};
      FGDerivationImage derivation;
      if (!sources.empty()) {
        DerivationImageItem* item = nullptr;
        check(derivation.addDerivationImageItem(CodeSequenceMacro("113076", "DCM", "Segmentation"), "", item),
              "derivation");
        SourceImageItem* source = nullptr;
        check(item->addSourceImageItem(sources[source_of[z]].file->getDataset(),
                                       CodeSequenceMacro("121322", "DCM", "Source image for image processing operation"),
                                       source),
              "source image");
        per_frame.push_back(&derivation);
      }
      check(seg->addFrame(pixels.data(), number, per_frame), "frame");
      for (std::size_t i = 0; i < slice; ++i, ++bit)
        if (pixels[i]) packed[bit / 8] = static_cast<Uint8>(packed[bit / 8] | (1u << (bit % 8)));
      ++summary.frames;
    }
  }
  if (summary.frames == 0) throw input_error(path.string() + ": nothing segmented, so no DICOM SEG to write");

  if (!sources.empty()) {
    // Common Instance Reference: every source image the frames point to.
    OFString study;
    seg->getStudy().getStudyInstanceUID(study);
    IODReferences refs;
    std::set<std::size_t> used(source_of.begin(), source_of.end());
    for (std::size_t k : used) {
      DcmDataset* s = sources[k].file->getDataset();
      OFString series, sop, sop_class, src_study;
      s->findAndGetOFString(DCM_SeriesInstanceUID, series);
      s->findAndGetOFString(DCM_SOPInstanceUID, sop);
      s->findAndGetOFString(DCM_SOPClassUID, sop_class);
      s->findAndGetOFString(DCM_StudyInstanceUID, src_study);
      auto* ref = new IODImageReference("", src_study, series, sop, sop_class);
      if (!refs.add(ref)) {  // ownership passes only when added
        delete ref;
        throw internal_error("DICOM SEG: reference to a source image refused");
      }
    }
    if (seg->getCommonInstanceReference().addReferences(refs, study) != used.size())
      throw internal_error("DICOM SEG: references to the source images refused");
  }

  DcmFileFormat file;
  check(seg->writeDataset(*file.getDataset()), "write");
  check(file.getDataset()->putAndInsertUint8Array(DCM_PixelData, packed.data(), static_cast<unsigned long>(packed.size())),
        "pixel data");
  if (!options.copy_patient_identity) {
    DcmDataset* out = file.getDataset();
    check(out->putAndInsertString(DCM_PatientIdentityRemoved, "YES"), "identity removed");
    check(out->putAndInsertString(DCM_DeidentificationMethod, "spine: no patient name, ID, birth date or study date copied"),
          "de-identification method");
  }
  const fs::path tmp = path.string() + ".tmp";
  if (file.saveFile(tmp.c_str(), EXS_LittleEndianExplicit).bad()) {
    std::error_code ec;
    fs::remove(tmp, ec);
    throw input_error(path.string() + ": cannot be written");
  }
  fs::rename(tmp, path);
  return summary;
}

}  // namespace spine
