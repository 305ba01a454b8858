#!/usr/bin/python3
"""How spine-seg holds up on CT reconstructed in thicker slices, head to foot.

Routine abdominal and trauma CT is often reconstructed at 3 or 5 mm axial slices; the real
labelled CTs here are 1 mm head to foot (VerSe) and 3 mm (the abdominal example). Each case
is made thicker the way a scanner's thick reconstruction is: the voxels of k consecutive
axial slices averaged into one slice k times as thick, placed at their centre; its
reference labels are the most frequent label of those k voxels. Then spine-seg runs on
every resliced volume in one process and scripts/eval_seg.py scores it.

  /usr/bin/python3 scripts/eval_seg_ct_thickness.py OUT [--thickness 1,3,4,5,6] [--phantoms 4]
      [--folds DIR] [--spine-seg build/bin/spine-seg] [-- extra spine-seg options, e.g. --ct-model M]

--folds DIR: leave-one-out models in scripts/eval_seg_ct_loo.sh's layout
(DIR/fold-sub-verseNNN/ct-spine-seg.pt, DIR/all/ct-spine-seg.pt): each VerSe case is then
segmented by the model trained without it, and the others by DIR/all's, so the VerSe
figures are held out too.

Cases: the three VerSe CTs with manual masks (the shipped CT model trained on them: their
figures show what thickness does, not how well the model generalises), the abdominal
example CT (never trained on; its labels are TotalSegmentator's output, not manual) and
held-out torso phantoms (scripts/make_heldout_ct_phantoms.sh, as scripts/eval_seg_ct.sh; SYNTHETIC). A thickness
below a case's own spacing, or one it cannot be resliced to (not a whole multiple of its
spacing), is left out for that case.
"""
import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE / "lib"))
from nifti import read_nifti, write_nifti  # noqa: E402

ROOT = HERE.parent
SHARED = ROOT.parent / "shared" / "data"


def head_foot_axis(affine):
    """The array axis that runs most nearly head to foot (RAS z)."""
    direction = affine[:3, :3] / np.linalg.norm(affine[:3, :3], axis=0)
    return int(np.argmax(np.abs(direction[2])))


def thicker(image, labels, affine, axis, k):
    """k consecutive slices along `axis` made one: voxels averaged, labels by majority."""
    img = np.moveaxis(np.asarray(image, dtype=np.float32), axis, 0)
    lab = np.moveaxis(np.asarray(labels), axis, 0)
    n = img.shape[0] // k
    out_img = img[: n * k].reshape((n, k) + img.shape[1:]).mean(axis=1)
    blocks = lab[: n * k].reshape((n, k) + lab.shape[1:])
    # The label most of the k voxels hold: per voxel, how many of the k agree with each one
    # (ties: the first such, from the head-most slice).
    agree = np.stack([(blocks == blocks[:, j:j + 1]).sum(axis=1) for j in range(k)], axis=1)
    out_lab = np.take_along_axis(blocks, np.argmax(agree, axis=1)[:, None], axis=1)[:, 0].astype(np.int16)
    a = affine.copy()
    # The thick slice lies at the centre of the k slices it averages.
    a[:3, 3] += affine[:3, axis] * (k - 1) / 2
    a[:3, axis] *= k
    return np.moveaxis(out_img, 0, axis), np.moveaxis(out_lab, 0, axis), a


def cases(out, n_phantoms):
    found = []
    for c in ("005", "007", "008"):
        ct = SHARED / "ct-verse" / f"sub-verse{c}_ct.nii.gz"
        if ct.exists():
            found.append((f"verse{c}", ct, SHARED / "ct-verse" / f"sub-verse{c}_seg-vert_msk.nii.gz",
                          "real, manual masks, trained on"))
    abd = SHARED / "ct-abdomen-example"
    if abd.exists():
        found.append(("abdomen", abd / "example_ct.nii.gz", abd / "example_ct_vertebrae_model_labels.nii.gz",
                      "real, never trained on, TotalSegmentator's labels"))
    if n_phantoms:  # the held-out phantoms scripts/eval_seg_ct.sh scores
        subprocess.run([str(HERE / "make_heldout_ct_phantoms.sh"), str(out / "phantoms"), str(n_phantoms)], check=True)
    for i in range(n_phantoms):
        name = f"heldout-{i:02d}"
        found.append((name, out / "phantoms" / name / "image.nii.gz", out / "phantoms" / name / "labels.nii.gz",
                      "SYNTHETIC phantom, never trained on"))
    return found


def score(pred, cases_tsv, json_path):
    """scripts/eval_seg.py over the studies in `pred`: its per-study records by study name."""
    res = subprocess.run([sys.executable, str(HERE / "eval_seg.py"), "--pred", str(pred), "--cases", str(cases_tsv),
                          "--json", str(json_path)], check=True, capture_output=True, text=True)
    return {j["study"]: j for j in (json.loads(line) for line in res.stdout.splitlines() if line.startswith('{"study"'))}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("out")
    ap.add_argument("--thickness", default="1,3,4,5,6", help="head-foot slice thicknesses in mm")
    ap.add_argument("--phantoms", type=int, default=4)
    ap.add_argument("--folds", help="leave-one-out models: DIR/fold-sub-verseNNN/ and DIR/all/ct-spine-seg.pt")
    ap.add_argument("--spine-seg", default=str(ROOT / "build/bin/spine-seg"))
    # After "--": more spine-seg options (argparse would take them for its own).
    argv = sys.argv[1:]
    extra = argv[argv.index("--") + 1:] if "--" in argv else []
    args = ap.parse_args(argv[:argv.index("--")] if "--" in argv else argv)
    out = Path(args.out).resolve()
    (out / "volumes").mkdir(parents=True, exist_ok=True)
    rows, inputs, kinds = [], [], {}
    for name, ct, ref, kind in cases(out, args.phantoms):
        img, aff = read_nifti(ct)
        lab, _ = read_nifti(ref)
        lab = np.rint(np.asarray(lab)).astype(np.int16)
        axis = head_foot_axis(aff)
        spacing = float(np.linalg.norm(aff[:3, axis]))
        kinds[name] = kind
        for t in (float(v) for v in args.thickness.split(",")):
            k = int(round(t / spacing))
            if k < 1 or abs(k * spacing - t) > 0.05 * t:
                continue
            study = f"{name}_{t:g}mm"
            path = out / "volumes" / f"{study}.nii"  # uncompressed: written and read faster
            if k == 1:
                vol, vlab, vaff = np.asarray(img, dtype=np.float32), lab, aff
            else:
                vol, vlab, vaff = thicker(img, lab, aff, axis, k)
            write_nifti(path, vol, vaff)
            write_nifti(out / "volumes" / f"{study}_labels.nii", vlab, vaff)
            inputs.append(str(path))
            rows.append((study, name, t))
    with open(out / "cases.tsv", "w") as f:
        for study, _, _ in rows:
            f.write(f"{study}\t{out / 'volumes' / (study + '_labels.nii')}\tct\n")
    # One spine-seg run per model: with --folds each VerSe case has its own.
    groups = {}
    for path, (_, name, _) in zip(inputs, rows):
        model = None
        if args.folds:
            fold = Path(args.folds) / f"fold-sub-{name}" / "ct-spine-seg.pt"
            model = fold if fold.exists() else Path(args.folds) / "all" / "ct-spine-seg.pt"
        groups.setdefault(model, []).append(path)
    for i, (model, paths) in enumerate(groups.items()):
        (out / f"inputs-{i}.txt").write_text("\n".join(paths) + "\n")
        subprocess.run([args.spine_seg, str(out / f"inputs-{i}.txt"), "-o", str(out / "seg"), "--threads", "2", "-q",
                        "--force", *(["--ct-model", str(model)] if model else []), *extra], check=False)
    per_study = score(out / "seg", out / "cases.tsv", out / "metrics.json")
    summary = []
    print(f"{'case':12s} {'mm':>4s}  {'Dice (one class)':>16s}  {'per level':>9s}  identified  names right  kind")
    for study, name, t in rows:
        j = per_study.get(study)
        if j is None:
            summary.append({"study": study, "case": name, "thickness_mm": t, "output": False})
            print(f"{name:12s} {t:4g}  no output")
            continue
        levels = [v for v in j["level_dice"].values() if v == v]
        right = sum(n["right"] for n in j["naming"])
        rec = {"study": study, "case": name, "kind": kinds[name], "thickness_mm": t,
               "dice_one_class": j["vertebra_dice_binary"], "dice_per_level_mean": float(np.mean(levels)) if levels
               else None, "identified": j["identified"], "names_judged": len(j["naming"]), "names_right": right}
        summary.append(rec)
        per_level = rec["dice_per_level_mean"] if rec["dice_per_level_mean"] is not None else float("nan")
        print(f"{name:12s} {t:4g}  {rec['dice_one_class']:16.3f}  {per_level:9.3f}  "
              f"{j['identified']:>10s}  {right:4d} of {len(j['naming']):<3d} {kinds[name]}")
    json.dump({"thickness_mm": args.thickness, "cases": summary}, open(out / "summary.json", "w"), indent=1)


if __name__ == "__main__":
    main()
