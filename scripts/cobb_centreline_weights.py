#!/usr/bin/python3
"""The inverse-variance weights of the centreline blend (docs/cobb.md), from a spine-cobb run
on the AASCE training films with the blend off: for each vertebra, two readings of its
tilt, its corners' and the direction across the centreline through its neighbours'
centres (T1 and L5: the line to their one neighbour), each with its error against the
reference tilt; the weight on the centreline that minimises the combined error's variance
is (v1 - c) / (v1 + v2 - 2 c), v1 and v2 the two errors' variances, c their covariance.
Printed for all vertebrae pooled, for T1 and L5 (pooled) and T2..L4 (pooled), and per
vertebra. Chains counted a level off (cobb_metrics.level_shifted) and chains whose centres
do not run top to bottom are left out.

  SPLIT=training scripts/eval_cobb.sh OUT --centreline-weight 0 --centreline-end-weight 0 --no-overlay
  /usr/bin/python3 scripts/cobb_centreline_weights.py OUT/training.txt OUT/results
or on a set of films framed by scripts/eval_cobb_reframed.py (e.g. the training films at
512 x 512, `make-training SETS`), the run's results of SETS/NAME/list.txt:
  /usr/bin/python3 scripts/cobb_centreline_weights.py SETS/NAME/list.txt RESULTS --sets SETS NAME"""
import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from cobb import data  # noqa: E402
from cobb.angles import vertebra_tilts as tilts  # noqa: E402
from cobb_metrics import level_shifted  # noqa: E402


def wrap(a):
    return (a + 180) % 360 - 180


def centreline(points):
    """The direction across the line from the centre above to the centre below, in tilt terms."""
    c = np.asarray(points, dtype=np.float64).reshape(17, 4, 2).mean(axis=1)
    i = np.arange(17)
    a, b = c[np.maximum(i - 1, 0)], c[np.minimum(i + 1, 16)]
    return np.degrees(np.arctan2(-(b[:, 0] - a[:, 0]), b[:, 1] - a[:, 1])), c


def weight(e_own, e_line):
    v1, v2 = e_own.var(), e_line.var()
    c = np.cov(e_own, e_line)[0, 1]
    return (v1 - c) / (v1 + v2 - 2 * c)


def main():
    if len(sys.argv) not in (3, 6) or (len(sys.argv) == 6 and sys.argv[3] != "--sets"):
        sys.exit(__doc__)
    listfile, results = sys.argv[1:3]
    landmarks, _ = data.read_table()
    if len(sys.argv) == 6:
        from eval_cobb_reframed import reference_landmarks
        sets, set_name = sys.argv[4:6]

        def reference(n):
            return reference_landmarks(sets, set_name, os.path.splitext(n)[0], landmarks)
    else:
        by_stem = {os.path.splitext(k)[0]: k for k in landmarks}

        def reference(n):
            return landmarks[by_stem[os.path.splitext(n)[0]]]
    own, line = [], []
    for l in open(listfile):
        n = os.path.basename(l.strip())
        if not n:
            continue
        j = json.load(open(os.path.join(results, os.path.splitext(n)[0], "cobb.json")))
        if j.get("centreline_tilt") is not None:
            sys.exit(f"{n}: the run blended the tilts; run it with --centreline-weight 0 --centreline-end-weight 0")
        p = np.array(j["landmarks_px"])
        d, c = centreline(p)
        ref_points = reference(n)
        if not np.all(np.diff(c[:, 1]) > 0) or level_shifted(p, ref_points):
            continue
        ref = tilts(ref_points)
        own.append(wrap(tilts(p) - ref))
        line.append(wrap(d - ref))
    own, line = np.array(own), np.array(line)
    ends, inner = [0, 16], list(range(1, 16))
    print(f"{len(own)} chains")
    print(f"all vertebrae pooled: {weight(own.ravel(), line.ravel()):.3f}")
    print(f"T1 and L5 pooled: {weight(own[:, ends].ravel(), line[:, ends].ravel()):.3f}")
    print(f"T2..L4 pooled: {weight(own[:, inner].ravel(), line[:, inner].ravel()):.3f}")
    print("per vertebra: " + " ".join(f"{weight(own[:, v], line[:, v]):.2f}" for v in range(17)))
    print("sd of the centreline's error per vertebra (degrees): " + " ".join(f"{line[:, v].std():.1f}" for v in range(17)))


if __name__ == "__main__":
    main()
