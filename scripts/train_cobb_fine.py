#!/usr/bin/python3
"""Trains the second landmark stage (scripts/cobb/fine.py: each vertebra's corners from a
crop around it at the working image's full resolution) on the same training images and
split as the first stage, on CPU, and exports TorchScript with its model card.
Resumable (checkpoint every epoch). The epoch count is fixed beforehand, never chosen on
the validation split.

  /usr/bin/python3 scripts/train_cobb_fine.py --out work-data/cobb-fine --epochs 12
  /usr/bin/python3 scripts/train_cobb_fine.py --out work-data/cobb-fine --epochs 12 \
      --export models/xray-corners.pt
  # first stage + this stage on the validation split (Python, no flip, no sequence constraint):
  /usr/bin/python3 scripts/train_cobb_fine.py --out work-data/cobb-fine --epochs 12 --evaluate
"""
import argparse
import json
import math
import os
import sys
import time

# Before torch is imported: run as a script, it starts again on huge pages
# (scripts/lib/huge_pages.py); imported by another script, it leaves that one alone.
if __name__ == "__main__":
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))
    from huge_pages import restart_with_huge_pages

    restart_with_huge_pages()

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from cobb import data, fine, preprocess  # noqa: E402
from cobb.angles import aasce_angles, smape  # noqa: E402
from cobb.model import N_VERT, decode  # noqa: E402
from lib import checkpoint  # noqa: E402
from lib.model_card import export_scripted  # noqa: E402
from train_cobb import split  # noqa: E402

def augment_intensity(crops_raw, rng):
    """Gamma, contrast and noise on raw working-image intensities (0..255)."""
    b = crops_raw.shape[0]
    gamma = torch.tensor(rng.uniform(0.7, 1.4, b), dtype=torch.float32).view(b, 1, 1, 1)
    x = 255 * (crops_raw.clamp(0, 255) / 255) ** gamma
    x = x * torch.tensor(rng.uniform(0.8, 1.2, b), dtype=torch.float32).view(b, 1, 1, 1)
    return x + torch.randn_like(x) * float(rng.uniform(0, 6))


def with_hardware(images, corners, img_idx, vert_idx, fraction, rng):
    """The batch's working images as float [B,1,H,W], with rods and pedicle screws drawn
    (scripts/cobb/reframe.py, as the first stage's fine-tuning draws them) for a fraction
    of the samples. Drawn only over the rows a crop of the sample's vertebra can reach,
    to keep steps fast. Tried against real instrumented films and not kept
    (models/xray-corners.md)."""
    from cobb import reframe
    src = images[img_idx].float()[:, None]
    h = src.shape[-2]
    for k in np.nonzero(rng.uniform(size=len(img_idx)) < fraction)[0]:
        pts = corners[img_idx[k]].reshape(-1, 2).numpy().astype(np.float64)
        ref = corners[img_idx[k], vert_idx[k]]
        reach = 1.5 * float(fine.crop_scale(ref)) * fine.VERT_W + 20
        cy = float(ref[:, 1].mean())
        y0, y1 = max(0, int(cy - reach)), min(h, int(cy + reach) + 1)
        if y1 - y0 < 8:
            continue
        window = src[k, 0, y0:y1].numpy() / 255
        reframe.draw_hardware(window, pts - np.array([0.0, y0]), rng)
        src[k, 0, y0:y1] = torch.from_numpy(np.clip(window * 255, 0, 255))
    return src


def training_batch(images, corners, img_idx, vert_idx, rng, hardware=0.0, hw_rng=None):
    """Crops of vertebrae (img_idx[i], vert_idx[i]) with reference corners, augmented.
    The hardware drawings use their own random stream, so that the rest of the
    augmentation is the same with and without them."""
    ref = corners[img_idx, vert_idx]  # [B,4,2] working pixels
    centre, scale, angle, flip = fine.random_crop_params(ref, rng)
    coords = fine.crop_coords(centre, scale, angle, flip)
    src = (with_hardware(images, corners, img_idx, vert_idx, hardware, hw_rng) if hardware > 0
           else images[img_idx].float()[:, None])
    raw = fine.sample_raw(src, coords)
    crops = fine.zscore(augment_intensity(raw, rng))
    pts = fine.to_crop(ref, centre, scale, angle, flip)
    pts = torch.where(flip.view(-1, 1, 1), pts[:, fine.MIRROR], pts)
    return crops, pts


def loss_fn(out, target):
    return (((out - target) ** 2) * (1 + 20 * target)).mean() * 10


def refine(model, images, corners1):
    """Second stage on every vertebra: images uint8 [N,H,W] working images, corners1
    [N,17,4,2] first-stage corners (working pixels) -> refined corners, peaks."""
    n = images.shape[0]
    src = images.float()[:, None].repeat_interleave(N_VERT, dim=0)
    refined, peak = fine.refine_corners(model, src, corners1.reshape(n * N_VERT, 4, 2))
    return refined.reshape(n, N_VERT, 4, 2), peak.reshape(n, N_VERT, 4)


def evaluate(model, stage1, images, sizes, names, landmarks, angles_ref):
    """First stage alone and first + second stage on the given images (no flip averaging,
    no sequence constraint): mean landmark error (original px), SMAPE, major MAE."""
    model.eval()
    res = {"stage1": [], "stage2": []}
    with torch.no_grad():
        for i in range(0, len(names), 8):
            cache = images[i:i + 8].float()
            out = stage1(preprocess.cache_to_input(cache)[:, None])
            _, corners, _ = decode(out)  # output px
            c_in = (corners + 0.5) * preprocess.STRIDE - 0.5  # input px
            c_cache = (c_in + 0.5) * 2 - 0.5                  # working px
            c2, _ = refine(model, images[i:i + 8], c_cache)
            for k in range(cache.shape[0]):
                w, h = sizes[i + k]
                ref = landmarks[names[i + k]]
                for key, cc in (("stage1", c_cache[k]), ("stage2", c2[k])):
                    p = preprocess.from_cache_coords(cc.reshape(68, 2).numpy(), w, h)
                    a = aasce_angles(p, h)
                    r = angles_ref[names[i + k]]
                    res[key].append((np.linalg.norm(p - ref, axis=1).mean(), smape(a, r), abs(a[0] - r[0])))
    model.train()
    return {k: {"landmark_px": float(np.mean([e[0] for e in v])), "smape": float(np.mean([e[1] for e in v])),
                "major_mae": float(np.mean([e[2] for e in v]))} for k, v in res.items()}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--epochs", type=int, default=12)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--hardware", type=float, default=0.0,
                    help="fraction of crops with rods and screws drawn on the spine (default 0, as shipped)")
    ap.add_argument("--limit", type=int, default=0, help="use only N training images (smoke test)")
    ap.add_argument("--stage1-cache", default="work-data/cobb", help="folder with the first stage's image caches")
    ap.add_argument("--stage1-model", default="models/xray-landmarks.pt")
    ap.add_argument("--evaluate", action="store_true", help="validation figures of stage 1 and 1+2, then exit")
    ap.add_argument("--export", help="write TorchScript with card to this path and exit")
    ap.add_argument("--card-validation", help="JSON file of measured validation figures to put in the card")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    hw_rng = np.random.default_rng([args.seed, 1])
    os.makedirs(args.out, exist_ok=True)

    landmarks, angles = data.read_table()
    train, val, rejected = split(landmarks)
    if args.limit:
        train = train[:args.limit]
    print(f"train {len(train)}, validation {len(val)}, rejected for label problems {len(rejected)}", flush=True)

    model = fine.CornerNet()
    ckpt_path = os.path.join(args.out, "checkpoint.pt")
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=1e-4)
    state = checkpoint.resume(model, opt, ckpt_path)
    if args.export:
        export(model, state, args, len(train), len(val), len(rejected))
        return

    tr_img, tr_sizes = data.build_cache(train, cache_path=None if args.limit else os.path.join(args.stage1_cache, "cache-train.pt"))
    va_img, va_sizes = data.build_cache(val, cache_path=os.path.join(args.stage1_cache, "cache-val.pt"))
    if args.evaluate:
        stage1 = torch.jit.load(args.stage1_model).eval()
        print(json.dumps(evaluate(model, stage1, va_img, va_sizes, val, landmarks, angles)), flush=True)
        return
    tr_corners = torch.tensor(data.to_cache_points(landmarks, train, tr_sizes)).view(-1, N_VERT, 4, 2)

    pairs = np.array([(i, v) for i in range(len(train)) for v in range(N_VERT)])
    steps_per_epoch = math.ceil(len(pairs) / args.batch)
    total = steps_per_epoch * args.epochs
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=args.lr, total_steps=total, pct_start=0.1,
                                                last_epoch=state["epoch"] * steps_per_epoch - 1)
    first_epoch = state["epoch"]
    for epoch in range(first_epoch, args.epochs):
        te = time.time()
        perm = rng.permutation(len(pairs))
        tot = 0.0
        for s in range(steps_per_epoch):
            idx = pairs[perm[s * args.batch:(s + 1) * args.batch]]
            crops, pts = training_batch(tr_img, tr_corners, torch.tensor(idx[:, 0]), torch.tensor(idx[:, 1]), rng,
                                         args.hardware, hw_rng)
            out = model(crops)
            loss = loss_fn(out, fine.heat_targets(pts))
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            tot += loss.item()
            if epoch == first_epoch and s == 19:
                print(f"20 steps in {time.time() - te:.1f} s", flush=True)
        msg = {"epoch": epoch + 1, "loss": tot / steps_per_epoch, "seconds": time.time() - te}
        state = checkpoint.save(ckpt_path, model, opt, epoch + 1, state["history"] + [msg])
        print(json.dumps(msg), flush=True)
    export(model, state, args, len(train), len(val), len(rejected))


def export(model, state, args, n_train, n_val, n_rejected):
    card = {
        "name": "xray-ap-corners",
        "version": "1.0.0",
        "task": "xray-ap-corners",
        "modality": "xray",
        "dimension": 2,
        "input_channels": 1,
        "patch_size": [fine.CROP_W, fine.CROP_H],
        "input_spacing_mm": [],
        "normalisation": {"method": "vertebra-crop-bilinear-zero-padded-then-zscore",
                          "working_size": [preprocess.CACHE_W, preprocess.CACHE_H],
                          "vertebra_width_px": fine.VERT_W,
                          "scale_range": [fine.SCALE_MIN, fine.SCALE_MAX]},
        "output": {"heatmaps": 4, "stride": fine.FINE_STRIDE, "corner_order": ["TL", "TR", "BL", "BR"]},
        "classes": [{"label": i + 1, "name": n} for i, n in enumerate(["TL", "TR", "BL", "BR"])],
        "training_data": f"AASCE 2019 public training set (xray-ap-aasce): {n_train} images "
                         f"({n_train * N_VERT} vertebra crops) for training, {n_val} held out by patient "
                         f"(the first stage's split, scripts/cobb/data.py is_validation), "
                         f"{n_rejected} excluded for landmark-order problems",
        "training": {"epochs": state.get("epoch", 0), "seed": args.seed, "threads": "2 (CPU)",
                     "command": f"/usr/bin/python3 scripts/train_cobb_fine.py --out work-data/cobb-fine "
                                f"--epochs {args.epochs}" + (f" --seed {args.seed}" if args.seed else "")
                                + (f" --hardware {args.hardware}" if args.hardware else ""),
                     "last_epoch": state["history"][-1] if state.get("history") else {}},
        "validation": json.load(open(args.card_validation)) if args.card_validation else {},
    }
    path = args.export or os.path.join(args.out, "xray-corners.pt")
    export_scripted(model, card, path)


if __name__ == "__main__":
    main()
