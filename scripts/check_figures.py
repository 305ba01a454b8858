#!/usr/bin/python3
"""Checks that the validation figures inside the shipped models' cards are what the code
gives today: runs the evaluations that produced them (on the real data of ../shared/data)
and compares their headline figures with each card. A change of any stage can move the
figures of another; on 2026-12-05 a CT speed change renamed whole MR chains on the SPIDER
slices, spine-grade's figures fell, and nothing said so for a day.

  /usr/bin/python3 scripts/check_figures.py [--out DIR] [--only mr-spine-seg,mr-disc-grading,xray-landmarks,xray-landmarks-int8,ct-spine-seg]

Exit 0: every figure matches its card (within rounding); 1: some figure moved (each one
printed, with the card's value and today's); 77: ../shared/data is not here (skipped).
After an intended change, re-measure and re-card the model (scripts/recard_model.py).
The CT model's real-CT leave-one-out is not checked (it needs a GPU training run per fold);
its held-out torso phantoms (synthetic) are.
"""
import argparse
import json
import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts" / "lib"))


def card_of(model):
    from model_card import read_card  # torch is imported only when a card is read

    return read_card(str(ROOT / "models" / f"{model}.pt"))


def run(cmd, log):
    with open(log, "w") as f:
        r = subprocess.run(cmd, cwd=ROOT, stdout=f, stderr=subprocess.STDOUT)
    if r.returncode != 0:
        raise RuntimeError(f"{' '.join(map(str, cmd))} failed (exit {r.returncode}); see {log}")


# Each check runs its evaluation into `out` and returns (figure, today's value, the value in
# the card's validation object `card`, tolerance).
def mr_spine_seg(out, card):
    run(["scripts/eval_seg_mr.sh", out], out + ".log")
    s = json.load(open(Path(out) / "metrics.json"))["summary"]
    return [
        ("vertebral body Dice per level", s["vertebra_dice_all_levels"]["mean"],
         card["vertebral_body_dice_per_level"]["mean"], 0.002),
        ("body Dice, all bodies one class", s["vertebra_dice_binary"]["mean"],
         card["body_dice_binary_incl_unnamed"]["mean"], 0.002),
        ("identification", s["identification_rate"], card["identification_rate"]["value"], 0.001),
        ("disc Dice (ivd-42)", s["disc_dice_per_disc"]["mean"], card["disc_dice_per_named_disc_ivd42"]["mean"], 0.002),
    ]


def mr_disc_grading(out, card):
    run(["scripts/eval_grade.sh", out], out + ".log")
    v = json.load(open(Path(out) / "card-validation.json"))  # the card's own shape
    checks = [("discs found and named", v["detection"]["found_named"], card["detection"]["found_named"], 0),
              ("graded discs matched", v["all"]["discs"], card["all"]["discs"], 0)]
    for k in ("pfirrmann_exact", "pfirrmann_within_one", "pfirrmann_weighted_kappa"):
        checks.append((k, v["all"][k], card["all"][k], 0.002))
    for k, auc in v["all"]["auc"].items():
        checks.append((f"{k} AUC", auc, card["all"]["auc"][k], 0.002))
    # At the card's operating points (a threshold moved by recard_model.py shows here).
    for k, (sens, spec) in v["operating_point_sensitivity_specificity"].items():
        card_sens, card_spec = card["operating_point_sensitivity_specificity"][k]
        checks += [(f"{k} sensitivity", sens, card_sens, 0.002), (f"{k} specificity", spec, card_spec, 0.002)]
    return checks


def xray_landmarks(out, card, options=()):
    run(["scripts/eval_cobb.sh", out, *options], out + ".log")
    text = (Path(out) / "metrics.txt").read_text()
    smape = float(re.search(r"^SMAPE: ([\d.]+) %", text, re.M).group(1))
    mae = float(re.search(r"^major angle MAE: ([\d.]+) deg", text, re.M).group(1))
    return [("SMAPE %", smape, card["smape_percent"], 0.015),
            ("major angle MAE", mae, card["major_angle_mae_deg"], 0.015)]


def xray_landmarks_int8(out, card):
    # spine-cobb --precision int8: both landmark stages from their int8 copies, whose
    # first-stage card holds that pipeline's figures.
    return xray_landmarks(out, card, ["--precision", "int8"])


def ct_spine_seg(out, card):
    # Its real-CT leave-one-out needs a GPU training run per fold; the held-out torso
    # phantoms (SYNTHETIC) go through the same CT pipeline, where most speed work lands.
    run(["scripts/eval_seg_ct.sh", out, "8"], out + ".log")
    s = json.load(open(Path(out) / "phantoms-metrics.json"))["summary"]
    c = card["phantoms_synthetic"]
    return [
        ("phantom vertebra Dice per level", s["vertebra_dice_all_levels"]["mean"],
         first_number(c["whole_vertebra_dice_per_level"]), 0.002),
        ("phantom vertebrae identified", first_number(s["identified"]), first_number(c["identified"]), 0),
        ("phantom disc Dice", s["disc_dice_per_disc"]["mean"], first_number(c["disc_dice"]), 0.002),
    ]


def first_number(text):
    """The figure at the start of a text ("0.967 +- 0.024 (112)", "112/112")."""
    return float(re.match(r"\s*([\d.]+)", text).group(1))


CHECKS = {"mr-spine-seg": mr_spine_seg, "mr-disc-grading": mr_disc_grading, "xray-landmarks": xray_landmarks,
          "xray-landmarks-int8": xray_landmarks_int8, "ct-spine-seg": ct_spine_seg}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=str(ROOT / "work-data" / "check-figures"))
    ap.add_argument("--only", help="comma-separated models (default: all of " + ", ".join(CHECKS) + ")")
    args = ap.parse_args()
    if not (ROOT.parent / "shared" / "data").is_dir():
        print("check_figures: ../shared/data not found: skipped")
        return 77
    if not (ROOT / "build" / "bin").is_dir():
        print("check_figures: build/bin not found: build first (scripts/build.sh)")
        return 2
    names = args.only.split(",") if args.only else list(CHECKS)
    unknown = [n for n in names if n not in CHECKS]
    if unknown:
        print(f"check_figures: no check for {', '.join(unknown)}")
        return 2
    os.makedirs(args.out, exist_ok=True)
    moved = 0
    for name in names:
        card = card_of(name)["validation"]
        for figure, today, carded, tol in CHECKS[name](os.path.join(args.out, name), card):
            ok = abs(today - carded) <= tol
            moved += not ok
            print(f"{'ok   ' if ok else 'MOVED'} {name}: {figure}: card {carded}, today {round(today, 4)}")
    if moved:
        print(f"check_figures: {moved} figure(s) differ from the cards: find the change that moved them, "
              "or re-measure and re-card the model if it was meant")
        return 1
    print("check_figures: every figure matches its card")
    return 0


if __name__ == "__main__":
    sys.exit(main())
