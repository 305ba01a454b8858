#!/usr/bin/python3
"""Scores spine-seg / spine-detect outputs against reference label maps.

  /usr/bin/python3 scripts/eval_seg.py --pred OUTDIR --cases LIST [--json out.json]

LIST: lines "study_name<TAB>reference_labels.nii.gz<TAB>kind" with kind one of
  named    vertebral bodies with VerSe labels (per-level Dice, identification)
  unnamed  vertebral bodies as instances 1000+ (binary body Dice only)
  disc     discs 100+ (per-disc Dice)
  ct       whole vertebrae and discs with VerSe labels (phantoms: per-level Dice, identification)
Identification (VerSe): a reference vertebra counts when the prediction has a vertebra
of the same name whose centroid lies within 20 mm of the reference centroid. Only
vertebrae whose reference is not cut by the volume's edge are scored for identification.
Calibration of the names' `confidence`: each predicted vertebra whose centroid lies within
20 mm of a reference vertebra's (cut ones included) is judged right when the nearest such reference has
its name; the table bins these by confidence (predictions of unlabelled levels, e.g. the
sacrum below a VerSe crop, are not judged).
"""
import argparse
import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from lib.nifti import read_nifti  # noqa: E402


def dice(a, b):
    s = a.sum() + b.sum()
    return float(2 * (a & b).sum() / s) if s else float("nan")


def centroid_lps(mask, affine):
    idx = np.argwhere(mask).mean(axis=0)
    ras = affine[:3, :3] @ idx + affine[:3, 3]
    return np.array([-ras[0], -ras[1], ras[2]])


def touches_edge(mask):
    for ax in range(3):
        if mask.take(0, axis=ax).any() or mask.take(mask.shape[ax] - 1, axis=ax).any():
            return True
    return False


CONFIDENCE_BINS = (0.0, 0.5, 0.7, 0.9, 0.95, 1.0001)


def calibration(judged):
    """Rows of the calibration table: per confidence bin, how many names and how many right."""
    rows = []
    for lo, hi in zip(CONFIDENCE_BINS[:-1], CONFIDENCE_BINS[1:]):
        inbin = [j for j in judged if lo <= j["confidence"] < hi]
        rows.append({"confidence": f"[{lo:.2f}, {min(hi, 1.0):.2f}{']' if hi > 1 else ')'}", "names": len(inbin),
                     "right": sum(j["right"] for j in inbin),
                     "right_rate": (sum(j["right"] for j in inbin) / len(inbin)) if inbin else None})
    high = [j for j in judged if j["confidence"] >= 0.9]
    rows.append({"confidence": ">= 0.90", "names": len(high), "right": sum(j["right"] for j in high),
                 "right_rate": (sum(j["right"] for j in high) / len(high)) if high else None})
    return rows


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--pred", required=True)
    ap.add_argument("--cases", required=True)
    ap.add_argument("--json")
    args = ap.parse_args()
    per_case = []
    body_dice, disc_dice, level_dice = [], [], {}
    ident_hits = ident_total = 0
    naming = []
    for line in open(args.cases):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        study, ref_path, kind = line.split("\t")
        pred_path = os.path.join(args.pred, study, "labels.nii.gz")
        ref, aff = read_nifti(ref_path)
        if not os.path.exists(pred_path):
            per_case.append({"study": study, "kind": kind, "failed": True})
            print(f"{study}: no output", flush=True)
            continue
        pred, _ = read_nifti(pred_path)
        assert pred.shape == ref.shape, (study, pred.shape, ref.shape)
        rec = {"study": study, "kind": kind}
        pv = (pred > 0) & (pred < 30)
        if kind in ("named", "unnamed", "ct"):
            rv = ((ref > 0) & (ref < 30)) | (ref >= 1000)
            rec["vertebra_dice_binary"] = dice(pv, rv)
            body_dice.append(rec["vertebra_dice_binary"])
        if kind in ("named", "ct"):
            levels = {}
            vjson = os.path.join(args.pred, study, "vertebrae.json")
            if not os.path.exists(vjson):
                vjson = os.path.join(args.pred, study, "segmentation.json")
            pred_list = json.load(open(vjson))["vertebrae"]
            pred_verts = {v["name"]: np.array(v["centroid_lps_mm"]) for v in pred_list}
            from seg.names import vertebra_name
            hits = []
            ref_centres = {}
            for v in sorted(int(x) for x in np.unique(ref) if 0 < x < 30):  # vertebrae (not cord 60, canal 61)
                m = ref == v
                d = dice(pred == v, m)
                name = vertebra_name(v)
                levels[name] = d
                level_dice.setdefault(name, []).append(d)
                c = centroid_lps(m, aff)
                ref_centres[name] = c
                if touches_edge(m):
                    continue
                ok = name in pred_verts and np.linalg.norm(pred_verts[name] - c) <= 20.0
                hits.append(bool(ok))
            ident_hits += sum(hits)
            ident_total += len(hits)
            judged = []
            for pred_v in pred_list if ref_centres else []:
                pc = np.array(pred_v["centroid_lps_mm"])
                near = min(ref_centres, key=lambda n: np.linalg.norm(ref_centres[n] - pc))
                if np.linalg.norm(ref_centres[near] - pc) <= 20.0:
                    judged.append({"name": pred_v["name"], "confidence": pred_v["confidence"],
                                   "right": near == pred_v["name"]})
            naming.extend(judged)
            rec["naming"] = judged
            rec["level_dice"] = levels
            rec["identified"] = f"{sum(hits)}/{len(hits)}"
        if kind in ("disc", "ct"):
            discs = {}
            for v in sorted(int(x) for x in np.unique(ref) if 100 <= x < 200):
                d = dice(pred == v, ref == v)
                discs[str(v)] = d
                disc_dice.append(d)
            rec["disc_dice"] = discs
            rd = (ref >= 100) & (ref < 200)
            rec["disc_dice_binary"] = dice((pred >= 100) & (pred < 200), rd)
        per_case.append(rec)
        print(json.dumps(rec), flush=True)

    def stats(v):
        v = np.array([x for x in v if x == x])
        return {"mean": float(v.mean()) if len(v) else None, "sd": float(v.std()) if len(v) else None, "n": int(len(v))}
    summary = {
        "vertebra_dice_binary": stats(body_dice),
        "vertebra_dice_per_level": {k: stats(v) for k, v in sorted(level_dice.items())},
        "vertebra_dice_all_levels": stats([x for v in level_dice.values() for x in v]),
        "disc_dice_per_disc": stats(disc_dice),
        "identification_rate": (ident_hits / ident_total) if ident_total else None,
        "identified": f"{ident_hits}/{ident_total}",
        "failed": sum(1 for c in per_case if c.get("failed")),
        "calibration": calibration(naming),
    }
    print(json.dumps(summary, indent=1))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"summary": summary, "cases": per_case}, f, indent=1)


if __name__ == "__main__":
    main()
