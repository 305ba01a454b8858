#!/usr/bin/python3
"""Floating-point operations of one forward pass of each shipped model, on its card's
patch size at the batch the commands use, counted by torch's profiler: 2 per multiply-add
of every convolution and matrix product; element-wise work and what runs inside LSTM
kernels are not counted.

  /usr/bin/python3 scripts/model_flops.py [MODELS_DIR]

Prints one line per model: FILE:BATCH:GFLOP (what bench/bench_models.cpp takes), then a
readable table on stderr.
"""
import json
import os
import sys
import zipfile

import torch

MODELS = {  # file: batch the commands run it at
    "ct-spine-seg.pt": 2,       # two sagittal slices per forward (spine-seg)
    "mr-spine-seg.pt": 2,
    "xray-spine-finder.pt": 1,  # one radiograph
    "xray-landmarks.pt": 1,
    "xray-corners.pt": 17,      # one crop per vertebra T1..L5
    "mr-disc-grading.pt": 6,    # one series' discs T12/L1..L5/S1
}


def card(path):
    z = zipfile.ZipFile(path)
    name = next(n for n in z.namelist() if n.endswith("extra/model_card.json"))
    return json.loads(z.read(name))


def count(module, x):
    """FLOPs of one forward pass by operator, as torch's profiler counts them (2 per
    multiply-add; convolutions from their output size: checked against the formula for
    strided convolutions); element-wise operations left out."""
    with torch.no_grad(), torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU],
                                                 record_shapes=True, with_flops=True) as prof:
        module(x)
    flops = {}
    for e in prof.events():
        if e.flops and e.name in ("aten::conv2d", "aten::addmm", "aten::mm", "aten::bmm", "aten::matmul"):
            flops[e.name] = flops.get(e.name, 0) + e.flops
    return flops


def main():
    models_dir = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "..", "models")
    torch.set_num_threads(1)
    for file, batch in MODELS.items():
        path = os.path.join(models_dir, file)
        c = card(path)
        w, h = c["patch_size"]
        flops = count(torch.jit.load(path).eval(), torch.rand(batch, c["input_channels"], h, w))
        total = sum(flops.values()) / 1e9
        print(f"{file}:{batch}:{total:.4f}")
        parts = ", ".join(f"{k} {v / 1e9:.3f}" for k, v in sorted(flops.items()))
        print(f"{file:22s} batch {batch:2d} x {c['input_channels']} x {h} x {w}: {total:.3f} GFLOP ({parts})",
              file=sys.stderr)


if __name__ == "__main__":
    main()
