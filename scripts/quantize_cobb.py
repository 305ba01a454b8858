#!/usr/bin/python3
"""Int8 copies of spine-cobb's two landmark stages (models/xray-landmarks.pt and
models/xray-corners.pt) for CPUs: post-training static quantization with oneDNN's
quantized engine (weights int8 per output channel, activations uint8), calibrated on the
inputs the stages see in the pipeline for CALIBRATION_FILMS AASCE *training* films (never
the validation split). Each network's last 1x1 convolution stays float (FIRST_FLOAT,
SECOND_FLOAT): the first stage's corner offsets are read to a fraction of an output pixel,
finer than an 8-bit step of their range, and it costs almost nothing. Keeping more layers
float (the second stage's last decoder block, where int8 moved its corners most) took
back most of the speed: a float layer inside a quantized graph runs without oneDNN's
blocked layout, between quantize and dequantize steps (models/xray-landmarks.md, "Int8
copies of both stages").

Why: these two stages are over 80 % of a film's time, and on 2 cores of an AVX2 machine
oneDNN's int8 convolutions ran each stage's two-network ensemble about 1.6x faster than its
float ones (scripts/bench_cobb.sh measures the whole pipeline, side by side: 1.37x a film).

They are an option, not the default: on the 365 training films they moved the angles more
than the rule fixed beforehand allowed (models/xray-landmarks.md), so spine-cobb
uses the float files unless given --precision int8 (CPU only: LibTorch's quantized
operators have no CUDA kernels).

  /usr/bin/python3 scripts/quantize_cobb.py [--models models] [--threads 2]
writes MODELS/xray-landmarks-int8.pt and MODELS/xray-corners-int8.pt from the float files
there, each with the float model's card plus `precision` (how it was made, from which
file by SHA-256) and without the float model's validation figures: measure the int8
pipeline (scripts/eval_cobb.sh OUT --precision int8, scripts/eval_cobb_reframed.sh) and put
its figures in both cards with scripts/recard_model.py, as scripts/check_figures.py checks
them there."""
import argparse
import copy
import os
import random
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from torch.ao.quantization import HistogramObserver, PerChannelMinMaxObserver, QConfig, QConfigMapping  # noqa: E402
from torch.ao.quantization.quantize_fx import convert_fx, prepare_fx  # noqa: E402

import train_cobb  # noqa: E402
from cobb import data, fine, preprocess  # noqa: E402
from cobb.model import N_VERT, LandmarkNet, decode  # noqa: E402
from cobb.networks import eager, flip_average  # noqa: E402
from ensemble_models import sha256  # noqa: E402
from lib.model_card import read_card, save_with_card  # noqa: E402

ENGINE = "onednn"
CALIBRATION_FILMS = 32
CALIBRATION_SEED = 7
# Modules (names as in cobb.model.LandmarkNet / cobb.fine.CornerNet, inside an ensemble's
# members too) that stay float, and everything inside them.
FIRST_FLOAT = ("head.2",)
SECOND_FLOAT = ("head",)


def calibration_names():
    """CALIBRATION_FILMS training films, drawn with a fixed seed (sorted names first)."""
    landmarks, _ = data.read_table()
    train, _, _ = train_cobb.split(landmarks)
    random.Random(CALIBRATION_SEED).shuffle(train)
    return train[:CALIBRATION_FILMS]


def stage_inputs(first_stage, names):
    """What each stage sees in the pipeline: the first stage's input and its mirror (flip
    averaging), the second stage's 17 vertebra crops around the first stage's corners and
    their mirrors."""
    firsts, crops = [], []
    for name in names:
        grey = data.load_grey(f"{data.DATA}/images/{name}")
        working = preprocess.resize_to_cache(grey)[None]
        x = preprocess.cache_to_input(working)[:, None]
        with torch.no_grad():
            _, corners, _ = decode(flip_average(first_stage, x))
            first = (corners[0] + 0.5) * preprocess.STRIDE * 2 - 0.5  # output -> working px
            c, _, _ = fine.vertebra_crops(working[None].expand(N_VERT, 1, -1, -1), first)
        firsts += [x, x.flip(-1)]
        crops += [c, c.flip(-1)]
    return firsts, crops


def quantize(model, samples, float_modules):
    """FX static quantization of `model` calibrated on `samples`; the modules named in
    `float_modules` (a name's last parts) stay float."""
    mapping = QConfigMapping().set_global(QConfig(
        activation=HistogramObserver.with_args(reduce_range=False),
        weight=PerChannelMinMaxObserver.with_args(dtype=torch.qint8, qscheme=torch.per_channel_symmetric)))
    for name, _ in model.named_modules():
        if any(name == f or name.endswith("." + f) for f in float_modules):
            mapping = mapping.set_module_name(name, None)
    prepared = prepare_fx(copy.deepcopy(model).eval(), mapping, (samples[0],))
    with torch.no_grad():
        for s in samples:
            prepared(s)
    return torch.jit.script(convert_fx(prepared)).eval()


def export(quantized, float_model, source, out, names, samples, float_modules):
    """Saves `quantized` (made from `float_model`, read from `source`) with the float card."""
    card = read_card(source)
    card["version"] = card["version"] + "+int8"
    card["precision"] = {
        "weights": "int8, symmetric, per output channel", "activations": "uint8, per tensor",
        "float_modules": list(float_modules), "engine": ENGINE,
        "quantized_from": {"file": os.path.basename(source), "sha256": sha256(source)},
        "calibration": f"the pipeline's inputs for {len(names)} AASCE training films (seed {CALIBRATION_SEED}), "
                       "each with its mirror; none of the validation split",
        "command": "/usr/bin/python3 scripts/quantize_cobb.py",
    }
    # The float pipeline's figures are not this model's.
    card["validation"] = {"note": "not measured yet: scripts/eval_cobb.sh OUT --precision int8, then "
                                  "scripts/recard_model.py with the figures"}
    # How far the int8 outputs are from the float ones, on calibration inputs (what the
    # validation figures then show in angles is in the model's .md).
    with torch.no_grad():
        diffs = [(quantized(s) - float_model(s)).abs().max().item() for s in samples[:8]]
    card["precision"]["max_abs_output_difference_on_calibration"] = round(max(diffs), 4)
    save_with_card(quantized, card, out)
    print(f"exported {out} (max |int8 - float| output on calibration inputs {max(diffs):.4f})", flush=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default="models")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if ENGINE not in torch.backends.quantized.supported_engines:
        sys.exit(f"this torch has no {ENGINE} quantized engine")
    torch.backends.quantized.engine = ENGINE
    landmarks_pt = os.path.join(args.models, "xray-landmarks.pt")
    corners_pt = os.path.join(args.models, "xray-corners.pt")
    first = eager(landmarks_pt, lambda w: LandmarkNet(context=any(k.startswith("context.") for k in w)))
    second = eager(corners_pt, lambda w: fine.CornerNet())
    names = calibration_names()
    firsts, crops = stage_inputs(first, names)
    export(quantize(first, firsts, FIRST_FLOAT), first, landmarks_pt,
           os.path.join(args.models, "xray-landmarks-int8.pt"), names, firsts, FIRST_FLOAT)
    export(quantize(second, crops, SECOND_FLOAT), second, corners_pt,
           os.path.join(args.models, "xray-corners-int8.pt"), names, crops, SECOND_FLOAT)


if __name__ == "__main__":
    main()
