#!/usr/bin/python3
"""Trains the second-stage corner refinement model on crops around each vertebra of the
AASCE training images (same split as scripts/train_cobb.py), and evaluates the two stages
together on the validation split. Resumable; exports TorchScript with its card.

  /usr/bin/python3 scripts/train_cobb_refine.py --out work-data/cobb-refine --epochs 24 --threads 1
  /usr/bin/python3 scripts/train_cobb_refine.py --out work-data/cobb-refine --export models/xray-vertebra-corners.pt
"""
import argparse
import json
import math
import os
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from cobb import data, preprocess  # noqa: E402
from cobb.refine import CROP, HALF_FACTOR, CornerNet, from_crop_frame, local_spacing, sample_crops, to_crop_frame  # noqa: E402
from lib import checkpoint  # noqa: E402
from lib.model_card import save_with_card  # noqa: E402
import train_cobb  # noqa: E402

SWAP = [1, 0, 3, 2]


def training_batch(images, points, idx, rng):
    """Crops with jittered centre, scale and rotation, plus flips and intensity changes."""
    crops, targets = [], []
    for i in idx:
        img = images[i].float()
        gamma = float(rng.uniform(0.7, 1.4))
        img = 255 * (img / 255) ** gamma + torch.randn_like(img) * float(rng.uniform(0, 5))
        corners = torch.as_tensor(points[i]).view(17, 4, 2)
        centres = corners.mean(dim=1)
        s = local_spacing(centres)
        n = 17
        half = s * HALF_FACTOR * torch.tensor(rng.uniform(0.85, 1.15, n), dtype=torch.float32)
        jitter = torch.tensor(rng.normal(0, 0.12, (n, 2)), dtype=torch.float32) * s[:, None]
        c = centres + jitter
        angle = torch.tensor(rng.uniform(-0.2, 0.2, n), dtype=torch.float32)
        cr = sample_crops(img, c, half, angle)
        uv = to_crop_frame(corners, c, half, angle)
        flip = torch.tensor(rng.uniform(0, 1, n) < 0.5)
        cr = torch.where(flip[:, None, None, None], cr.flip(-1), cr)
        uv_f = uv[:, SWAP].clone()
        uv_f[..., 0] = -uv_f[..., 0]
        uv = torch.where(flip[:, None, None], uv_f, uv)
        crops.append(cr)
        targets.append(uv)
    return torch.cat(crops), torch.cat(targets)


def refine(model, image, centres, iterations=2):
    """image [H,W] working image; centres [17,2] -> corners [17,4,2] working px."""
    c = centres.clone()
    for _ in range(iterations):
        half = local_spacing(c) * HALF_FACTOR
        angle = torch.zeros(17)
        with torch.no_grad():
            uv = model(sample_crops(image, c, half, angle))
        corners = from_crop_frame(uv, c, half, angle)
        c = corners.mean(dim=1)
    return corners


def evaluate(stage1, model, images, sizes, names, landmarks, angles_ref):
    """Both stages on the validation images: landmark error (original px), SMAPE, major MAE."""
    from cobb.angles import aasce_angles, smape
    from cobb.model import decode
    model.eval()
    stage1.eval()
    errs, errs1, sm, mae, sm1 = [], [], [], [], []
    for i, n in enumerate(names):
        w, h = sizes[i]
        img = images[i].float()
        with torch.no_grad():
            out = stage1(preprocess.cache_to_input(img[None])[:, None])
        centres, corners1, _ = decode(out)
        # stage-1 output px -> input px -> working (cache) px: (c + 0.5) * stride * 2 - 0.5
        c_cache = (centres[0] + 0.5) * preprocess.STRIDE * 2 - 0.5
        corners = refine(model, img, c_cache)
        ref = landmarks[n]
        for pts_cache, e_list, s_list in ((corners.reshape(68, 2).numpy(), errs, sm),
                                          (((corners1[0].reshape(68, 2) + 0.5) * preprocess.STRIDE * 2 - 0.5).numpy(), errs1, sm1)):
            p = pts_cache.astype(np.float64).copy()
            p[:, 0] = (p[:, 0] + 0.5) * w / preprocess.CACHE_W - 0.5
            p[:, 1] = (p[:, 1] + 0.5) * h / preprocess.CACHE_H - 0.5
            e_list.append(np.linalg.norm(p - ref, axis=1).mean())
            a = aasce_angles(p, h)
            s_list.append(smape(a, angles_ref[n]))
            if s_list is sm:
                mae.append(abs(a[0] - angles_ref[n][0]))
    model.train()
    return {"val_landmark_px": float(np.mean(errs)), "val_smape": float(np.mean(sm)), "val_major_mae": float(np.mean(mae)),
            "stage1_landmark_px": float(np.mean(errs1)), "stage1_smape": float(np.mean(sm1))}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--stage1", default="work-data/cobb/checkpoint.pt")
    ap.add_argument("--epochs", type=int, default=24)
    ap.add_argument("--images-per-step", type=int, default=2)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--eval-every", type=int, default=6)
    ap.add_argument("--export")
    ap.add_argument("--evaluate", action="store_true", help="evaluate both stages on the validation split and exit")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    os.makedirs(args.out, exist_ok=True)

    landmarks, angles = data.read_table()
    train, val, rejected = train_cobb.split(landmarks)
    model = CornerNet()
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=1e-4)
    ckpt = os.path.join(args.out, "checkpoint.pt")
    state = checkpoint.resume(model, opt, ckpt)

    if args.export:
        export(model, state, args, len(train), len(val), len(rejected))
        return

    cache_dir = os.path.dirname(args.stage1)
    tr_img, tr_sizes = data.build_cache(train, cache_path=os.path.join(cache_dir, "cache-train.pt"))
    va_img, va_sizes = data.build_cache(val, cache_path=os.path.join(cache_dir, "cache-val.pt"))
    tr_pts = data.to_cache_points(landmarks, train, tr_sizes)

    def stage1_model():
        from cobb.model import LandmarkNet
        m = LandmarkNet()
        m.load_state_dict(torch.load(args.stage1)["model"])
        return m.eval()

    if args.evaluate:
        print(json.dumps(evaluate(stage1_model(), model, va_img, va_sizes, val, landmarks, angles)), flush=True)
        return

    steps = math.ceil(len(train) / args.images_per_step)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=args.lr, total_steps=steps * args.epochs, pct_start=0.1,
                                                last_epoch=state["epoch"] * steps - 1)
    for epoch in range(state["epoch"], args.epochs):
        t0 = time.time()
        perm = rng.permutation(len(train))
        total = 0.0
        for s in range(steps):
            idx = perm[s * args.images_per_step:(s + 1) * args.images_per_step]
            x, y = training_batch(tr_img, tr_pts, idx, rng)
            loss = F.smooth_l1_loss(model(x), y, beta=0.02)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            total += loss.item()
        msg = {"epoch": epoch + 1, "loss": total / steps, "seconds": time.time() - t0}
        if (epoch + 1) % args.eval_every == 0 or epoch + 1 == args.epochs:
            msg.update(evaluate(stage1_model(), model, va_img, va_sizes, val, landmarks, angles))
        state = checkpoint.save(ckpt, model, opt, epoch + 1, state["history"] + [msg])
        print(json.dumps(msg), flush=True)
    export(model, state, args, len(train), len(val), len(rejected))


def export(model, state, args, n_train, n_val, n_rejected):
    model.eval()
    card = {
        "name": "xray-vertebra-corners",
        "version": "1.0.0",
        "task": "xray-vertebra-corners",
        "modality": "xray",
        "dimension": 2,
        "input_channels": 1,
        "patch_size": [CROP, CROP],
        "input_spacing_mm": [],
        "normalisation": {"method": "crop-of-1024x512-working-image-then-zscore", "crop": CROP,
                          "half_size_factor": HALF_FACTOR, "iterations": 2},
        "classes": [{"label": i, "name": n} for i, n in enumerate(["TL", "TR", "BL", "BR"])],
        "training_data": f"AASCE 2019 public training set (xray-ap-aasce): crops of {n_train} images; "
                         f"{n_val} validation images held out by patient; {n_rejected} excluded for label problems",
        "training": {"epochs": state.get("epoch", 0), "seed": args.seed,
                     "command": "/usr/bin/python3 scripts/train_cobb_refine.py --out work-data/cobb-refine --epochs %d" % state.get("epoch", 0)},
        "validation": {"history_last": state["history"][-1] if state.get("history") else {}},
    }
    path = args.export or os.path.join(args.out, "xray-vertebra-corners.pt")
    save_with_card(torch.jit.script(model), card, path)
    print(f"exported {path}", flush=True)


if __name__ == "__main__":
    main()
