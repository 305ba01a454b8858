#!/usr/bin/python3
"""Scores spine-cobb outputs against the AASCE reference: SMAPE (AASCE definition), major
angle MAE with 95 % bootstrap intervals over images, MAE per angle, mean landmark error in
pixels, grade confusion matrix, and flag counts.
Usage: /usr/bin/python3 scripts/cobb_metrics.py LISTFILE RESULTSDIR"""
import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from cobb import data  # noqa: E402
from cobb.angles import smape  # noqa: E402

GRADES = ["spinal curve", "mild", "moderate", "severe"]


def grade(a):
    return GRADES[0] if a < 10 else GRADES[1] if a < 20 else GRADES[2] if a <= 40 else GRADES[3]


def level_shifted(pred, ref):
    """True when 3 or more predicted vertebra centres lie nearest the reference centre of
    another level: the chain was counted one level (or more) off, somewhere."""
    pc, rc = pred.reshape(17, 4, 2).mean(axis=1), ref.reshape(17, 4, 2).mean(axis=1)
    nearest = np.argmin(np.linalg.norm(pc[:, None] - rc[None], axis=2), axis=1)
    return int((nearest != np.arange(17)).sum()) >= 3


def main():
    listfile, results = sys.argv[1], sys.argv[2]
    landmarks, angles = data.read_table()
    names = [os.path.basename(l.strip()) for l in open(listfile) if l.strip()]
    sm, mae, lerr, flagged, missing, bias, has_flags, abs_err = [], [], [], 0, [], [], [], []
    shifted = []
    confusion = np.zeros((4, 4), dtype=int)
    for n in names:
        study = n[:-4]
        f = os.path.join(results, study, "cobb.json")
        if not os.path.exists(f):
            missing.append(n)
            continue
        j = json.load(open(f))
        pred = np.array([j["angles_deg"][k] for k in ("pt", "mt", "tl")])
        ref = angles[n]
        sm.append(smape(pred, ref))
        abs_err.append(np.abs(pred - ref))
        mae.append(abs(j["major"]["angle_deg"] - ref[0]))
        bias.append(j["major"]["angle_deg"] - ref[0])
        has_flags.append(bool(j["flags"]))
        points = np.array(j["landmarks_px"])
        lerr.append(np.linalg.norm(points - landmarks[n], axis=1).mean())
        shifted.append(level_shifted(points, landmarks[n]))
        confusion[GRADES.index(grade(ref[0])), GRADES.index(j["grade"])] += 1
        flagged += bool(j["flags"])
    print(f"validation images: {len(names)} (scored {len(sm)}, failed {len(missing)})")
    print(f"SMAPE: {np.mean(sm):.2f} %")
    print(f"major angle MAE: {np.mean(mae):.2f} deg (median {np.median(mae):.2f})")
    print(f"mean landmark error: {np.mean(lerr):.1f} px (median {np.median(lerr):.1f})")
    sh = np.array(shifted, dtype=bool)
    print(f"level-shifted chains (3 or more vertebrae nearest another level's reference): {sh.sum()} of {len(sh)}; "
          f"SMAPE {np.mean(np.array(sm)[sh]) if sh.any() else 0:.2f} % on those, "
          f"{np.mean(np.array(sm)[~sh]) if (~sh).any() else 0:.2f} % on the others")
    print(f"major angle mean signed error: {np.mean(bias):+.2f} deg")
    print("MAE of the pt / mt / tl angles: " + " / ".join(f"{v:.2f}" for v in np.mean(abs_err, axis=0)) + " deg")
    rng = np.random.default_rng(0)  # fixed, so the interval is reproducible
    idx = rng.integers(0, len(sm), (5000, len(sm)))
    lo_s, hi_s = np.percentile(np.array(sm)[idx].mean(axis=1), [2.5, 97.5])
    lo_m, hi_m = np.percentile(np.array(mae)[idx].mean(axis=1), [2.5, 97.5])
    print(f"95 % bootstrap interval over images: SMAPE {lo_s:.2f}-{hi_s:.2f} %, major MAE {lo_m:.2f}-{hi_m:.2f} deg")
    ok = ~np.array(has_flags, dtype=bool)
    print(f"studies with flags: {flagged}; without flags ({ok.sum()}): SMAPE {np.mean(np.array(sm)[ok]):.2f} %, "
          f"major MAE {np.mean(np.array(mae)[ok]):.2f} deg")
    print("grade confusion (rows reference, columns predicted): " + ", ".join(GRADES))
    for g, row in zip(GRADES, confusion):
        print(f"  {g:>12}: {' '.join(f'{v:3d}' for v in row)}")
    print(f"grade agreement: {np.trace(confusion) / max(1, confusion.sum()) * 100:.1f} %")


if __name__ == "__main__":
    main()
