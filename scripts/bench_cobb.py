#!/usr/bin/python3
"""The same two models as spine-cobb, driven from Python (eager PyTorch): decode, resize,
stage 1, decoding, two refinement passes, AASCE angles, cobb.json per image. Prints the
mean seconds per image (models loaded once, not counted).
Usage: /usr/bin/python3 scripts/bench_cobb.py LISTFILE OUTDIR THREADS"""
import json
import os
import sys
import time

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from cobb import data, preprocess  # noqa: E402
from cobb.angles import aasce_angles  # noqa: E402
from cobb.model import LandmarkNet, decode  # noqa: E402
from cobb.refine import CornerNet  # noqa: E402
from train_cobb_refine import refine  # noqa: E402


def load_eager(cls, path):
    m = cls()
    m.load_state_dict(torch.jit.load(path).state_dict())
    return m.eval()


def main():
    listfile, out, threads = sys.argv[1], sys.argv[2], int(sys.argv[3])
    torch.set_num_threads(threads)
    stage1 = load_eager(LandmarkNet, "models/xray-landmarks.pt")
    stage2 = load_eager(CornerNet, "models/xray-vertebra-corners.pt")
    paths = [l.strip() for l in open(listfile) if l.strip()]
    os.makedirs(out, exist_ok=True)
    t0 = time.time()
    for p in paths:
        grey = data.load_grey(p)
        h, w = grey.shape
        working = preprocess.resize_to_cache(grey)
        with torch.no_grad():
            o = stage1(preprocess.cache_to_input(working[None])[:, None])
            centres, _, peak = decode(o)
            corners = refine(stage2, working, (centres[0] + 0.5) * preprocess.STRIDE * 2 - 0.5)
        pts = corners.reshape(68, 2).numpy().astype(np.float64)
        pts[:, 0] = (pts[:, 0] + 0.5) * w / preprocess.CACHE_W - 0.5
        pts[:, 1] = (pts[:, 1] + 0.5) * h / preprocess.CACHE_H - 0.5
        a = aasce_angles(pts, h)
        name = os.path.splitext(os.path.basename(p))[0]
        with open(os.path.join(out, name + ".json"), "w") as f:
            json.dump({"study": name, "angles_deg": dict(zip(("pt", "mt", "tl"), a.tolist())),
                       "landmarks_px": pts.tolist(), "confidence": peak[0].tolist()}, f)
    print(f"python eager: {(time.time() - t0) / len(paths):.3f} s per image over {len(paths)} images")


if __name__ == "__main__":
    main()
