#!/usr/bin/python3
"""Two spine-cobb result folders on the same AASCE films, film by film: per-film SMAPE and
major-angle absolute error, B minus A, with a 95 % bootstrap over patients (2000
resamples, seed 0), so that a change is judged against the spread of the films.

  /usr/bin/python3 scripts/cobb_paired.py LIST A_RESULTS B_RESULTS
LIST: the image list both were run on (e.g. OUT/training.txt from SPLIT=training
scripts/eval_cobb.sh OUT, or a set of scripts/eval_cobb_reframed.py, whose films keep their
AASCE name with another extension); A_RESULTS, B_RESULTS: their OUT/results folders."""
import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from cobb import data  # noqa: E402
from cobb.angles import smape  # noqa: E402


def main():
    if len(sys.argv) != 4:
        sys.exit(__doc__)
    listfile, a, b = sys.argv[1:4]
    _, angles = data.read_table()
    by_stem = {os.path.splitext(k)[0]: k for k in angles}
    names = [os.path.basename(line.strip()) for line in open(listfile) if line.strip()]
    rows = []
    for n in names:
        study = os.path.splitext(n)[0]
        n = n if n in angles else by_stem[study]
        ja = json.load(open(os.path.join(a, study, "cobb.json")))
        jb = json.load(open(os.path.join(b, study, "cobb.json")))
        pa = [ja["angles_deg"][k] for k in ("pt", "mt", "tl")]
        pb = [jb["angles_deg"][k] for k in ("pt", "mt", "tl")]
        ref = angles[n]
        major = int(np.argmax(ref))
        rows.append((data.patient_id(n), smape(pa, ref), smape(pb, ref),
                     abs(pa[major] - ref[major]), abs(pb[major] - ref[major])))
    pid = np.array([r[0] for r in rows])
    v = np.array([r[1:] for r in rows])
    ds, dm = v[:, 1] - v[:, 0], v[:, 3] - v[:, 2]
    print(f"films {len(rows)}: mean per-film SMAPE A {v[:, 0].mean():.2f} B {v[:, 1].mean():.2f}; "
          f"major MAE A {v[:, 2].mean():.2f} B {v[:, 3].mean():.2f}")
    print(f"B better on {int((ds < -1e-9).sum())}, worse on {int((ds > 1e-9).sum())}")
    rng = np.random.default_rng(0)
    patients = np.unique(pid)
    films_of = {p: np.nonzero(pid == p)[0] for p in patients}
    bs, bm = [], []
    for _ in range(2000):
        take = np.concatenate([films_of[p] for p in rng.choice(patients, len(patients))])
        bs.append(ds[take].mean())
        bm.append(dm[take].mean())
    print(f"paired SMAPE B-A {ds.mean():+.2f} ({np.percentile(bs, 2.5):+.2f} to {np.percentile(bs, 97.5):+.2f}); "
          f"major MAE B-A {dm.mean():+.2f} ({np.percentile(bm, 2.5):+.2f} to {np.percentile(bm, 97.5):+.2f})")


if __name__ == "__main__":
    main()
