#!/usr/bin/python3
"""Checks a spine-seg DICOM SEG as a user's own tools would see it: read back by pydicom,
validated by dicom3tools' dciodvfy, rebuilt voxel by voxel into a label map equal to the
study's labels.nii.gz, each frame tied to the source image at its position, and patient
identity present only when asked for.

  check_dicom_seg.py STUDY_DIR SOURCE_SERIES_DIR {none|copied|anonymised} SECRET...

none: tied to the source series, no identity; copied: tied to it, identity copied;
anonymised (--anonymise-names): stands alone, no UID of the source anywhere in it.

Prints one line per failed check and exits 1 if any failed, else prints "ok".
"""
import glob
import gzip
import json
import os
import subprocess
import sys

import numpy as np
import pydicom

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "scripts"))
from lib.nifti import read_nifti  # noqa: E402

study, source_dir, identity = sys.argv[1], sys.argv[2], sys.argv[3]
secrets = sys.argv[4:]
failures = []


def expect(ok, what):
    if not ok:
        failures.append(what)


seg_path = os.path.join(study, "segmentation.dcm")
seg = pydicom.dcmread(seg_path)
labels, affine = read_nifti(os.path.join(study, "labels.nii.gz"))
result = json.load(open(os.path.join(study, "segmentation.json")))

# dciodvfy: errors fail; warnings (for example DICOMDIR keys left empty on purpose) do not.
v = subprocess.run(["dciodvfy", seg_path], capture_output=True, text=True)
errors = [ln for ln in (v.stdout + v.stderr).splitlines() if ln.startswith("Error")]
expect(not errors, "dciodvfy: " + " | ".join(errors))

expect(seg.SOPClassUID == "1.2.840.10008.5.1.4.1.1.66.4", f"SOP class {seg.SOPClassUID}")
expect(seg.Modality == "SEG" and seg.SegmentationType == "BINARY", "not a binary SEG")

sources = {}
for f in glob.glob(os.path.join(source_dir, "*")):
    s = pydicom.dcmread(f, stop_before_pixels=True)
    sources[s.SOPInstanceUID] = s
first = next(iter(sources.values()))
linked = identity != "anonymised"
expect(seg.SeriesInstanceUID != first.SeriesInstanceUID, "reuses the source's series UID")
if linked:
    expect(seg.StudyInstanceUID == first.StudyInstanceUID, "not in the source's study")
    expect(seg.FrameOfReferenceUID == first.FrameOfReferenceUID, "not in the source's frame of reference")
    ref_series = [r.SeriesInstanceUID for r in seg.ReferencedSeriesSequence]
    expect(ref_series == [first.SeriesInstanceUID], f"referenced series {ref_series}")
else:
    with open(seg_path, "rb") as f:
        raw = f.read()
    uids = {first.StudyInstanceUID, first.SeriesInstanceUID, first.FrameOfReferenceUID} | set(sources)
    leaked = sorted(u for u in uids if u and u.encode() in raw)
    expect(not leaked, f"the SEG holds {len(leaked)} of the source's UIDs")
    expect(not seg.get("ReferencedSeriesSequence"), "references the source series")
    expect(result["dicom_seg"]["references_source_series"] is False, "segmentation.json says it references the source")
    expect("--anonymise-names" in result["dicom_seg"].get("why_no_references", ""), "segmentation.json does not say why")

# Segments: names and codes, and the label value each stands for (from segmentation.json).
value_of = {v["name"]: v["label"] for v in result["vertebrae"] + result["discs"]}
segment_value = {}
for s in seg.SegmentSequence:
    expect(s.SegmentLabel in value_of, f"segment {s.SegmentLabel} not in segmentation.json")
    t = s.SegmentedPropertyTypeCodeSequence[0]
    expect(t.CodingSchemeDesignator == "SCT", f"{s.SegmentLabel}: scheme {t.CodingSchemeDesignator}")
    expect(s.SegmentLabel in t.CodeMeaning or t.CodeMeaning in ("Vertebra", "Intervertebral disc", "Sacrum"),
           f"{s.SegmentLabel}: code meaning {t.CodeMeaning}")
    expect(len(s.RecommendedDisplayCIELabValue) == 3, f"{s.SegmentLabel}: no colour")
    segment_value[s.SegmentNumber] = value_of.get(s.SegmentLabel, -1)
expect(sorted(segment_value.values()) == sorted(value_of.values()), "segments differ from the named structures")

# Rebuild the label map from the frames and compare with labels.nii.gz.
frames = seg.pixel_array
if frames.ndim == 2:
    frames = frames[None]
expect(frames.shape[0] == seg.NumberOfFrames, "frame count")
ras_to_index = np.linalg.inv(affine)
tilted = result.get("gantry_tilt_corrected_deg", 0) > 0


def grid_index(ipp):
    return ras_to_index @ np.array([-ipp[0], -ipp[1], ipp[2], 1.0])


shared = seg.SharedFunctionalGroupsSequence[0]
iop = [float(x) for x in shared.PlaneOrientationSequence[0].ImageOrientationPatient]
pixel = [float(x) for x in shared.PixelMeasuresSequence[0].PixelSpacing]  # between rows, between columns


def sampled(ipp, shape):
    """labels.nii.gz at the nearest voxel to each pixel centre of a frame of `shape` (rows,
    columns) whose first pixel lies at `ipp` (LPS), on the SEG's orientation (0 off the
    map), and where a centre lies so near halfway between voxels that the header's float32
    affine cannot say which is nearest (such pixels are not judged)."""
    jj, ii = np.meshgrid(np.arange(shape[0]), np.arange(shape[1]), indexing="ij")
    lps = (np.asarray(ipp)[None, None, :] + ii[..., None] * pixel[1] * np.asarray(iop[:3])
           + jj[..., None] * pixel[0] * np.asarray(iop[3:]))
    ras = lps * np.array([-1.0, -1.0, 1.0])
    c = np.einsum("ab,ijb->ija", ras_to_index[:3, :3], ras) + ras_to_index[:3, 3]
    idx = np.floor(c + 0.5).astype(int)
    ok = np.all((idx >= 0) & (idx < np.array(labels.shape)), axis=-1)
    out = np.zeros(shape, dtype=labels.dtype)
    out[ok] = labels[idx[ok][:, 0], idx[ok][:, 1], idx[ok][:, 2]]
    return out, np.any(np.abs(c - np.floor(c) - 0.5) < 1e-3, axis=-1)


rebuilt = np.zeros(labels.shape, dtype=np.int32)
seen = set()
for i, fg in enumerate(seg.PerFrameFunctionalGroupsSequence):
    number = fg.SegmentIdentificationSequence[0].ReferencedSegmentNumber
    ipp = [float(x) for x in fg.PlanePositionSequence[0].ImagePositionPatient]
    if not linked:
        expect(not fg.get("DerivationImageSequence"), f"frame {i + 1}: names a source image")
    else:
        src = fg.DerivationImageSequence[0].SourceImageSequence[0].ReferencedSOPInstanceUID
        expect(src in sources, f"frame {i + 1}: source image not in the series")
        if src in sources:
            sp = [float(x) for x in sources[src].ImagePositionPatient]
            expect(max(abs(a - b) for a, b in zip(sp, ipp)) < 1e-3, f"frame {i + 1}: source image at another position")
            expect(frames[i].shape == (sources[src].Rows, sources[src].Columns), f"frame {i + 1}: not the source's size")
            so = [float(x) for x in sources[src].ImageOrientationPatient]
            expect(max(abs(a - b) for a, b in zip(so, iop)) < 1e-4, f"frame {i + 1}: not the source's orientation")
    if tilted and linked:
        # A gantry-tilted series, read onto an upright grid: each frame lies on its source
        # image's own pixels and holds the nearest label of labels.nii.gz there.
        near, unsure = sampled(ipp, frames[i].shape)
        wrong = int(np.count_nonzero(((frames[i] > 0) != (near == segment_value[number])) & ~unsure))
        expect(wrong == 0, f"frame {i + 1}: {wrong} pixels differ from labels.nii.gz")
        seen.add((number, src))
        continue
    ijk = grid_index(ipp)
    k = int(round(ijk[2]))
    expect(abs(ijk[0]) < 1e-3 and abs(ijk[1]) < 1e-3 and abs(ijk[2] - k) < 1e-3, f"frame {i + 1}: position off the grid")
    # Frame rows run along the volume's y axis, columns along x.
    rebuilt[:, :, k][frames[i].T > 0] = segment_value[number]
if tilted and linked:
    # Every segment present on a source image has its frame.
    for uid, s in sources.items():
        here = sampled([float(x) for x in s.ImagePositionPatient], (s.Rows, s.Columns))[0]
        for number, value in segment_value.items():
            expect((number, uid) in seen or not np.any(here == value), f"no frame of segment {number} on image {uid[-8:]}")
    expect(len(seen) > 0, "no frame")
else:
    mismatch = int(np.count_nonzero(rebuilt != labels))
    expect(mismatch == 0, f"rebuilt label map differs from labels.nii.gz in {mismatch} voxels")

# Identity: in the SEG only on request, never in any other output.
with open(seg_path, "rb") as f:
    seg_bytes = f.read()
if identity in ("none", "anonymised"):
    expect(seg.get("PatientIdentityRemoved") == "YES", "Patient Identity Removed is not YES")
    for s in secrets:
        expect(s.encode() not in seg_bytes, f"SEG holds {s}")
else:
    expect(str(seg.PatientName) == str(first.PatientName), "patient name not copied")
    expect(seg.PatientID == first.PatientID, "patient ID not copied")
    expect(seg.StudyDate == first.StudyDate, "study date not copied")
for path in glob.glob(os.path.join(study, "*")):
    if os.path.basename(path) == "segmentation.dcm":
        continue
    data = open(path, "rb").read()
    if path.endswith(".gz"):
        data = gzip.decompress(data)
    for s in secrets:
        expect(s.encode() not in data, f"{os.path.basename(path)} holds {s}")

for f in failures:
    print(f)
print("ok" if not failures else f"{len(failures)} checks failed")
sys.exit(1 if failures else 0)
