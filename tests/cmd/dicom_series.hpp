// A CT volume written as a DICOM series (one CT Image Storage file per axial slice, with
// DCMTK), carrying a made-up patient identity that the commands must not copy anywhere
// unless asked to.
#pragma once
#include <cmath>
#include <cstdio>
#include <string>
#include <vector>

#include <dcmtk/config/osconfig.h>
#include <dcmtk/dcmdata/dctk.h>

#include "test_util.hpp"
#include "spine/image.hpp"
#include "spine/preprocess.hpp"

namespace spine::test {

struct FakeIdentity {
  std::string name = "Doe^Secret", id = "SECRET-4711", birth_date = "19610203", study_date = "20190304",
              accession = "ACC-SECRET-9";
};

inline std::string ds_text(double v) {
  char b[32];
  std::snprintf(b, sizeof b, "%.6g", std::fabs(v) < 1e-9 ? 0.0 : v);
  return b;
}

// Writes `image` reoriented to LPS (axial slices, as a scanner stores them) into `dir`,
// values rounded to int16 (HU). Returns the SOP Instance UIDs, first slice first.
// With a gantry tilt the slices are acquired as a tilted scanner does: the table still moves
// head to foot by the slice spacing, but each slice plane is turned by the tilt about the
// left-right axis (its columns point posterior and up), so the stack is sheared; each slice
// is the image resampled on its plane (air outside).
inline std::vector<std::string> write_ct_series(const FloatImage& image, const fs::path& dir,
                                                const FakeIdentity& who = {}, double gantry_tilt_deg = 0) {
  const FloatImage lps = reorient(image, "LPS");
  Geometry g = lps.geometry;
  const double t = gantry_tilt_deg * 3.14159265358979323846 / 180;
  if (gantry_tilt_deg != 0) g.direction = {1, 0, 0, 0, std::cos(t), -std::sin(t), 0, std::sin(t), std::cos(t)};
  fs::create_directories(dir);
  char study[100], series[100], frame[100];
  dcmGenerateUniqueIdentifier(study, SITE_STUDY_UID_ROOT);
  dcmGenerateUniqueIdentifier(series, SITE_SERIES_UID_ROOT);
  dcmGenerateUniqueIdentifier(frame, SITE_INSTANCE_UID_ROOT);
  const auto& d = g.direction;
  const std::string iop = ds_text(d[0]) + "\\" + ds_text(d[3]) + "\\" + ds_text(d[6]) + "\\" + ds_text(d[1]) + "\\" +
                          ds_text(d[4]) + "\\" + ds_text(d[7]);
  std::vector<std::string> uids;
  std::vector<Sint16> pixels(lps.nx() * lps.ny());
  for (std::size_t z = 0; z < lps.nz(); ++z) {
    DcmFileFormat file;
    DcmDataset* s = file.getDataset();
    char sop[100];
    dcmGenerateUniqueIdentifier(sop, SITE_INSTANCE_UID_ROOT);
    uids.push_back(sop);
    // Where the table puts slice z (a tilt turns the slice's plane, not the table's path).
    const auto p = lps.geometry.index_to_lps(0, 0, static_cast<double>(z));
    s->putAndInsertString(DCM_SOPClassUID, UID_CTImageStorage);
    s->putAndInsertString(DCM_SOPInstanceUID, sop);
    s->putAndInsertString(DCM_StudyInstanceUID, study);
    s->putAndInsertString(DCM_SeriesInstanceUID, series);
    s->putAndInsertString(DCM_FrameOfReferenceUID, frame);
    s->putAndInsertString(DCM_Modality, "CT");
    s->putAndInsertString(DCM_PatientName, who.name.c_str());
    s->putAndInsertString(DCM_PatientID, who.id.c_str());
    s->putAndInsertString(DCM_PatientBirthDate, who.birth_date.c_str());
    s->putAndInsertString(DCM_PatientSex, "O");
    s->putAndInsertString(DCM_StudyDate, who.study_date.c_str());
    s->putAndInsertString(DCM_StudyTime, "101500");
    s->putAndInsertString(DCM_AccessionNumber, who.accession.c_str());
    s->putAndInsertString(DCM_StudyID, "7");
    s->putAndInsertString(DCM_SeriesNumber, "2");
    s->putAndInsertString(DCM_InstanceNumber, std::to_string(z + 1).c_str());
    s->putAndInsertString(DCM_ImagePositionPatient,
                          (ds_text(p[0]) + "\\" + ds_text(p[1]) + "\\" + ds_text(p[2])).c_str());
    s->putAndInsertString(DCM_ImageOrientationPatient, iop.c_str());
    s->putAndInsertString(DCM_PixelSpacing, (ds_text(g.spacing[1]) + "\\" + ds_text(g.spacing[0])).c_str());
    s->putAndInsertString(DCM_SliceThickness, ds_text(g.spacing[2]).c_str());
    s->putAndInsertUint16(DCM_SamplesPerPixel, 1);
    s->putAndInsertString(DCM_PhotometricInterpretation, "MONOCHROME2");
    s->putAndInsertUint16(DCM_Rows, static_cast<Uint16>(lps.ny()));
    s->putAndInsertUint16(DCM_Columns, static_cast<Uint16>(lps.nx()));
    s->putAndInsertUint16(DCM_BitsAllocated, 16);
    s->putAndInsertUint16(DCM_BitsStored, 16);
    s->putAndInsertUint16(DCM_HighBit, 15);
    s->putAndInsertUint16(DCM_PixelRepresentation, 1);
    s->putAndInsertString(DCM_RescaleIntercept, "0");
    s->putAndInsertString(DCM_RescaleSlope, "1");
    const float* values = lps.voxels.data() + z * pixels.size();
    FloatImage plane;
    if (gantry_tilt_deg != 0) {
      Geometry pg = g;
      pg.size[2] = 1;
      pg.origin = {p[0], p[1], p[2]};
      plane = resample_image_to(lps, pg, -1024.f);
      values = plane.voxels.data();
    }
    for (std::size_t i = 0; i < pixels.size(); ++i)
      pixels[i] = static_cast<Sint16>(std::lround(std::clamp(values[i], -32768.f, 32767.f)));
    s->putAndInsertUint16Array(DCM_PixelData, reinterpret_cast<const Uint16*>(pixels.data()), pixels.size());
    char name[32];
    std::snprintf(name, sizeof name, "slice%04zu.dcm", z);
    EXPECT_TRUE(file.saveFile((dir / name).c_str(), EXS_LittleEndianExplicit).good());
  }
  return uids;
}

}  // namespace spine::test
