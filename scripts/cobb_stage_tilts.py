#!/usr/bin/python3
"""Each vertebra's tilt as the two landmark stages of spine-cobb read it, against the AASCE
reference: where the second stage is better, where worse, and the k of the Huber weight
spine-cobb gives the second stage (models/xray-corners.md, "Where the two stages disagree,
the first stage weighs more").

  SPLIT=training scripts/eval_cobb.sh W0 --second-stage-weight 0 --stage-disagreement 0 --centreline-weight 0 --no-overlay
  SPLIT=training scripts/eval_cobb.sh W1 --second-stage-weight 1 --stage-disagreement 0 --centreline-weight 0 --no-overlay
  /usr/bin/python3 scripts/cobb_stage_tilts.py W0/training.txt W0/results W1/results

Films where the two runs place the same corners (the second stage did not run: hardware)
and chains counted a level off in either run (3 or more vertebra centres nearest another
level's reference centre: cobb_metrics.level_shifted) are left out."""
import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from cobb import data  # noqa: E402
from cobb.angles import vertebra_tilts as tilts  # noqa: E402
from cobb_metrics import level_shifted  # noqa: E402

LEVELS = [f"T{i}" for i in range(1, 13)] + [f"L{i}" for i in range(1, 6)]
K_GRID = (3.0, 4.0, 5.0, 6.0, 8.0)


def huber_weight(d, k):
    """spine-cobb's weight of the second stage: 0.5 while the tilts agree within k degrees."""
    return 0.5 * np.minimum(1.0, k / np.maximum(np.abs(d), 1e-9))


def main():
    if len(sys.argv) != 4:
        sys.exit(__doc__)
    listfile, first, second = sys.argv[1:4]
    landmarks, _ = data.read_table()
    e1, e2, same, shifted = [], [], 0, 0
    for line in open(listfile):
        name = os.path.basename(line.strip())
        if not name:
            continue
        study = os.path.splitext(name)[0]
        pa = np.array(json.load(open(os.path.join(first, study, "cobb.json")))["landmarks_px"])
        pb = np.array(json.load(open(os.path.join(second, study, "cobb.json")))["landmarks_px"])
        ref = landmarks[name]
        if np.allclose(pa, pb):
            same += 1
            continue
        if level_shifted(pa, ref) or level_shifted(pb, ref):
            shifted += 1
            continue
        t = tilts(ref)
        e1.append(tilts(pa) - t)
        e2.append(tilts(pb) - t)
    e1, e2 = np.array(e1), np.array(e2)
    d = e2 - e1
    print(f"films: {len(e1)} used; {same} with the same corners in both runs (hardware); {shifted} level-shifted")
    print("level  median |error| first / second   95th percentile   largest second   |d| > 5: second worse")
    for v, name in enumerate(LEVELS):
        a, b = np.abs(e1[:, v]), np.abs(e2[:, v])
        big = np.abs(d[:, v]) > 5
        print(f"{name:5s}  {np.median(a):5.2f} / {np.median(b):5.2f}   {np.percentile(a, 95):5.2f} / {np.percentile(b, 95):5.2f}"
              f"   {b.max():5.1f}   {int((b > a)[big].sum())} of {int(big.sum())}")
    for thr in (5, 8):
        big = np.abs(d) > thr
        print(f"all levels, |d| > {thr} degrees: second stage worse {int((np.abs(e2) > np.abs(e1))[big].sum())} of {int(big.sum())}")
    rms = lambda e: float(np.sqrt(np.mean(e ** 2)))  # noqa: E731
    print(f"tilt RMS error: first {rms(e1):.3f}, second {rms(e2):.3f}, mean of the two {rms((e1 + e2) / 2):.3f}")
    best = None
    for k in K_GRID:
        r = rms(e1 + huber_weight(d, k) * d)
        print(f"Huber weight, k = {k:g} degrees: {r:.3f}")
        if best is None or r < best[1]:
            best = (k, r)
    print(f"chosen k: {best[0]:g} degrees (tilt RMS {best[1]:.3f})")


if __name__ == "__main__":
    main()
