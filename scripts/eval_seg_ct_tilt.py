#!/usr/bin/python3
"""How spine-seg holds up on CT acquired with the gantry tilted, read as a DICOM series.

A tilted gantry turns each axial slice's plane about the left-right axis while the table
still moves head to foot, so the series is a sheared stack: each slice lies shifted in its
plane. Each case here is "acquired" that way: slice k's plane (rows along patient left,
columns turned by the tilt from posterior towards the head) through the table position k x the
case's head-foot spacing, sampled from the case's CT (trilinear, air outside), written as a
DICOM CT series with its positions and orientation. spine-seg reads each series (since
2026-12-08 resampled onto an upright grid) and its labels are put back on the case's own grid (nearest label) and scored by scripts/eval_seg.py
against the case's reference. Beside it, "as read before": the same slices laid one above
the other along their normal as ITK's series reader lays them (what spine-seg read before
2026-12-08), given to spine-seg as a NIfTI.

  /usr/bin/python3 scripts/eval_seg_ct_tilt.py OUT [--tilt 0,15,25] [--phantoms 2]
      [--spine-seg build/bin/spine-seg] [-- extra spine-seg options]

(about 15 minutes with the defaults on 2 cores)

Cases as scripts/eval_seg_ct_thickness.py: the three VerSe CTs (the shipped model trained on
them: what tilt does, not how well it generalises), the abdominal example CT (never trained
on; TotalSegmentator's labels) and held-out torso phantoms (SYNTHETIC).
"""
import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
from pydicom.dataset import FileDataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE / "lib"))
sys.path.insert(0, str(HERE))
from nifti import read_nifti, write_nifti  # noqa: E402
from eval_seg_ct_thickness import cases, score  # noqa: E402

ROOT = HERE.parent
LPS = np.array([-1.0, -1.0, 1.0])  # RAS <-> LPS


def trilinear(vol, idx, fill):
    """vol sampled at continuous indices idx (N x 3); `fill` outside."""
    lo = np.floor(idx).astype(np.int64)
    f = idx - lo
    out = np.zeros(len(idx), dtype=np.float64)
    inside = np.all((idx >= 0) & (idx <= np.array(vol.shape) - 1), axis=1)
    for dx in (0, 1):
        for dy in (0, 1):
            for dz in (0, 1):
                i = np.clip(lo + [dx, dy, dz], 0, np.array(vol.shape) - 1)
                w = (f[:, 0] if dx else 1 - f[:, 0]) * (f[:, 1] if dy else 1 - f[:, 1]) * (f[:, 2] if dz else 1 - f[:, 2])
                out += w * vol[i[:, 0], i[:, 1], i[:, 2]]
    out[~inside] = fill
    return out


def acquire(img, aff, tilt_deg):
    """The case's CT as a scanner with the gantry tilted would slice it: a list of 2D slices
    (rows x columns), each slice's position (LPS), the row and column directions, spacing."""
    img = np.asarray(img, dtype=np.float32)
    spacing = np.linalg.norm(aff[:3, :3], axis=0)
    direction = aff[:3, :3] / spacing
    # In-plane pixel size and table step: the case's spacing along the axes nearest LPS x, y, z.
    near = [int(np.argmax(np.abs(direction[a]))) for a in range(3)]
    sx, sy, dz = (float(spacing[near[a]]) for a in range(3))
    corners = np.array([[i, j, k, 1] for i in (0, img.shape[0] - 1) for j in (0, img.shape[1] - 1)
                        for k in (0, img.shape[2] - 1)], dtype=float)
    lps = (corners @ aff.T)[:, :3] * LPS
    lo, hi = lps.min(axis=0), lps.max(axis=0)
    t = np.deg2rad(tilt_deg)
    row = np.array([1.0, 0, 0])                    # along a row: patient left
    col = np.array([0, np.cos(t), np.sin(t)])      # down a column: posterior, rising with the tilt
    ncol = int(np.ceil((hi[0] - lo[0]) / sx)) + 1
    nrow = int(np.ceil((hi[1] - lo[1]) / (sy * np.cos(t)))) + 1
    rise = (nrow - 1) * sy * np.sin(t)             # how far a slice climbs from its first row to its last
    zs = np.arange(lo[2] - rise, hi[2] + dz / 2, dz)
    inv = np.linalg.inv(aff)
    jj, ii = np.meshgrid(np.arange(nrow), np.arange(ncol), indexing="ij")
    inplane = ii.ravel()[:, None] * sx * row + jj.ravel()[:, None] * sy * col
    slices, positions = [], []
    for z in zs:
        p = np.array([lo[0], lo[1], z])
        pts = (p + inplane) * LPS
        idx = (np.c_[pts, np.ones(len(pts))] @ inv.T)[:, :3]
        s = trilinear(img, idx, -1024.0).reshape(nrow, ncol)
        if np.all(s <= -1023):
            continue  # a slice wholly outside the case
        slices.append(s)
        positions.append(p)
    return slices, positions, row, col, (sx, sy)


def write_series(folder, slices, positions, row, col, pixel):
    folder.mkdir(parents=True, exist_ok=True)
    study, series, frame = generate_uid(), generate_uid(), generate_uid()
    for k, (s, p) in enumerate(zip(slices, positions)):
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
        meta.MediaStorageSOPInstanceUID = generate_uid()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = FileDataset(None, {}, file_meta=meta, preamble=b"\0" * 128)
        ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = study, series, frame
        ds.Modality, ds.InstanceNumber = "CT", k + 1
        ds.ImagePositionPatient = [f"{v:.4f}" for v in p]
        ds.ImageOrientationPatient = [f"{v:.6f}" for v in list(row) + list(col)]
        ds.PixelSpacing = [f"{pixel[1]:.6g}", f"{pixel[0]:.6g}"]
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.Rows, ds.Columns = s.shape
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
        ds.RescaleIntercept, ds.RescaleSlope = 0, 1
        ds.PixelData = np.clip(np.rint(s), -32768, 32767).astype("<i2").tobytes()
        ds.is_little_endian, ds.is_implicit_VR = True, False
        ds.save_as(str(folder / f"s{k:04d}.dcm"), write_like_original=False)


def as_read_before(path, slices, positions, row, col, pixel):
    """The slices stacked along their normal, the full step between them apart: ITK's
    series reader's layout (the tilt's in-plane shift lost)."""
    vol = np.stack([s.T for s in slices], axis=2)  # x (columns), y (rows), slice
    normal = np.cross(row, col)
    step = np.linalg.norm(np.asarray(positions[-1]) - np.asarray(positions[0])) / (len(positions) - 1)
    m = np.eye(4)
    m[:3, 0], m[:3, 1], m[:3, 2], m[:3, 3] = row * pixel[0], col * pixel[1], normal * step, positions[0]
    m[:3] *= LPS[:, None]  # LPS -> RAS rows
    write_nifti(path, vol.astype(np.float32), m)


def onto_reference(pred_dir, study, ref_aff, ref_shape, out_dir):
    """The study's labels put on the reference's grid (nearest label), with its JSON."""
    lab, aff = read_nifti(pred_dir / study / "labels.nii.gz")
    lab = np.asarray(lab)
    inv = np.linalg.inv(aff)
    out = np.zeros(ref_shape, dtype=np.int16)
    ii, jj = np.meshgrid(np.arange(ref_shape[0]), np.arange(ref_shape[1]), indexing="ij")
    for k in range(ref_shape[2]):
        pts = np.c_[ii.ravel(), jj.ravel(), np.full(ii.size, k), np.ones(ii.size)] @ ref_aff.T
        idx = np.rint((pts @ inv.T)[:, :3]).astype(np.int64)
        ok = np.all((idx >= 0) & (idx < np.array(lab.shape)), axis=1)
        v = np.zeros(ii.size, dtype=np.int16)
        v[ok] = lab[idx[ok, 0], idx[ok, 1], idx[ok, 2]]
        out[:, :, k] = v.reshape(ii.shape)
    (out_dir / study).mkdir(parents=True, exist_ok=True)
    write_nifti(out_dir / study / "labels.nii.gz", out, ref_aff)
    (out_dir / study / "segmentation.json").write_text((pred_dir / study / "segmentation.json").read_text())


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("out")
    ap.add_argument("--tilt", default="0,15,25", help="gantry tilts in degrees")
    ap.add_argument("--phantoms", type=int, default=2)
    ap.add_argument("--spine-seg", default=str(ROOT / "build/bin/spine-seg"))
    argv = sys.argv[1:]
    extra = argv[argv.index("--") + 1:] if "--" in argv else []
    args = ap.parse_args(argv[:argv.index("--")] if "--" in argv else argv)
    out = Path(args.out).resolve()
    tilts = [float(v) for v in args.tilt.split(",")]
    rows, inputs, refs, kinds = [], [], {}, {}
    for name, ct, ref, kind in cases(out, args.phantoms):
        img, aff = read_nifti(ct)
        lab, _ = read_nifti(ref)
        refs[name] = (aff, np.asarray(lab).shape, ref)
        kinds[name] = kind
        for t in tilts:
            slices, positions, row, col, pixel = acquire(img, aff, t)
            study = f"{name}_tilt{t:g}"
            write_series(out / "series" / study, slices, positions, row, col, pixel)
            inputs.append(str(out / "series" / study))
            rows.append((study, name, t, "read now"))
            if t != 0:
                before = f"{study}_before"
                as_read_before(out / "series" / f"{before}.nii", slices, positions, row, col, pixel)
                inputs.append(str(out / "series" / f"{before}.nii"))
                rows.append((before, name, t, "as read before"))
    (out / "inputs.txt").write_text("\n".join(inputs) + "\n")
    subprocess.run([args.spine_seg, str(out / "inputs.txt"), "-o", str(out / "seg"), "--threads", "2", "-q", "--force",
                    *extra], check=False)
    with open(out / "cases.tsv", "w") as f:
        for study, name, _, _ in rows:
            if (out / "seg" / study / "labels.nii.gz").exists():
                aff, shape, ref = refs[name]
                onto_reference(out / "seg", study, aff, shape, out / "scored")
                f.write(f"{study}\t{ref}\tct\n")
    per_study = score(out / "scored", out / "cases.tsv", out / "metrics.json")
    summary = []
    print(f"{'case':12s} {'tilt':>4s}  {'read':14s} {'Dice (one class)':>16s}  {'per level':>9s}  identified  names right")
    for study, name, t, how in rows:
        j = per_study.get(study)
        if j is None:
            summary.append({"study": study, "case": name, "tilt_deg": t, "read": how, "output": False})
            print(f"{name:12s} {t:4g}  {how:14s} no output")
            continue
        levels = [v for v in j["level_dice"].values() if v == v]
        right = sum(n["right"] for n in j["naming"])
        tilt_read = json.loads((out / "seg" / study / "segmentation.json").read_text()).get("gantry_tilt_corrected_deg")
        rec = {"study": study, "case": name, "kind": kinds[name], "tilt_deg": t, "read": how,
               "gantry_tilt_corrected_deg": tilt_read, "dice_one_class": j["vertebra_dice_binary"],
               "dice_per_level_mean": float(np.mean(levels)) if levels else None, "identified": j["identified"],
               "names_judged": len(j["naming"]), "names_right": right}
        summary.append(rec)
        per_level = rec["dice_per_level_mean"] if rec["dice_per_level_mean"] is not None else float("nan")
        print(f"{name:12s} {t:4g}  {how:14s} {rec['dice_one_class']:16.3f}  {per_level:9.3f}  "
              f"{j['identified']:>10s}  {right:4d} of {len(j['naming'])}")
    json.dump({"tilt_deg": tilts, "cases": summary}, open(out / "summary.json", "w"), indent=1)


if __name__ == "__main__":
    main()
