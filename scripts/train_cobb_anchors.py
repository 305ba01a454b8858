#!/usr/bin/python3
"""Trains the level anchors of the frontal-radiograph landmarks (scripts/cobb/anchors.py:
which of C6..T3 or L3..S2 lies at a point of the chain) on the first stage's training
images and split, on CPU, and exports TorchScript with its model card. Resumable
(checkpoint every epoch); the epoch count is fixed beforehand.

  /usr/bin/python3 scripts/train_cobb_anchors.py --out work-data/cobb-anchors --epochs 14
  /usr/bin/python3 scripts/train_cobb_anchors.py --out work-data/cobb-anchors --epochs 14 --evaluate
  /usr/bin/python3 scripts/train_cobb_anchors.py --out work-data/cobb-anchors --epochs 14 \
      --export models/xray-level-anchors.pt
"""
import argparse
import json
import math
import os
import sys
import time

if __name__ == "__main__":
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))
    from huge_pages import restart_with_huge_pages

    restart_with_huge_pages()

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from cobb import anchors, data, fine, preprocess  # noqa: E402
from cobb.model import N_VERT  # noqa: E402
from lib import checkpoint  # noqa: E402
from lib.model_card import export_scripted  # noqa: E402
from train_cobb import split  # noqa: E402
from train_cobb_fine import augment_intensity  # noqa: E402


def is_tuning(name):
    """A fifth of the training patients, by a hash of the patient id (another hash than the
    validation split's), held out when comparing training recipes (--tuning)."""
    import hashlib
    return int(hashlib.sha256(("tune-" + data.patient_id(name)).encode()).hexdigest(), 16) % 5 == 0


def batch(images, positions, spacing, img_idx, cls_idx, rng, train=True, edge_cut=0.0):
    """Crops at level cls_idx[i] of image img_idx[i]; jittered and augmented when training.
    edge_cut: the probability that a crop's film ends (black beyond) a random 0.3..2.5
    spacings past the extrapolated end level (C6 above, S2 below), so that where the film's
    edge lies is no cue to the level."""
    b = len(img_idx)
    end = (cls_idx >= 5).long()
    sp = spacing[img_idx, end]
    centre = positions[img_idx, cls_idx].clone()
    scale = anchors.scale_from_spacing(sp)
    angle = flip = None
    if train:
        # The first stage's centres are off by a fraction of a spacing; the spacing it gives
        # is that of whichever vertebrae it counted.
        jitter = torch.tensor(rng.normal(0, 0.12, (b, 2)), dtype=torch.float32).clamp(-0.3, 0.3)
        centre = centre + jitter * sp[:, None]
        scale = anchors.scale_from_spacing(sp * torch.tensor(rng.uniform(0.8, 1.2, b), dtype=torch.float32))
        angle = torch.tensor(rng.uniform(-15, 15, b) * math.pi / 180, dtype=torch.float32)
        flip = torch.tensor(rng.uniform(0, 1, b) < 0.5)
    coords = anchors.crop_coords(centre, scale, angle, flip)
    raw = fine.sample_raw(images[img_idx].float()[:, None], coords)
    if train and edge_cut > 0:
        cut = torch.tensor(rng.uniform(0, 1, b) < edge_cut)
        u = torch.tensor(rng.uniform(0.3, 2.5, b), dtype=torch.float32)
        top_edge = positions[img_idx, 0, 1] - u * sp      # above C6
        bottom_edge = positions[img_idx, 9, 1] + u * sp   # below S2
        y = coords[..., 1]
        beyond = torch.where((end == 1).view(b, 1, 1), y > bottom_edge.view(b, 1, 1), y < top_edge.view(b, 1, 1))
        raw = torch.where((cut.view(b, 1, 1) & beyond)[:, None], torch.zeros_like(raw), raw)
    if train:
        raw = augment_intensity(raw, rng)
        invert = torch.tensor(rng.uniform(0, 1, b) < 0.1).view(b, 1, 1, 1)
        raw = torch.where(invert, 255 - raw, raw)
    return fine.zscore(raw)


def evaluate(model, images, positions, spacing):
    """Accuracy at the reference positions (no jitter), per end, and the confusion."""
    model.eval()
    n = images.shape[0]
    conf = np.zeros((10, 10), dtype=int)
    with torch.no_grad():
        for i in range(n):
            idx = torch.full((10,), i, dtype=torch.long)
            crops = batch(images, positions, spacing, idx, torch.arange(10), None, train=False)
            logits = (model(crops) + model(crops.flip(-1))) / 2
            for c in range(10):
                grp = anchors.TOP if c < 5 else anchors.BOTTOM
                pred = int(torch.argmax(logits[c, grp])) + grp.start
                conf[c, pred] += 1
    model.train()
    top = np.trace(conf[:5, :5]) / max(1, conf[:5].sum())
    bottom = np.trace(conf[5:, 5:]) / max(1, conf[5:].sum())
    t1 = conf[2, 2] / max(1, conf[2].sum())
    l5 = conf[7, 7] / max(1, conf[7].sum())
    return {"top_accuracy": round(float(top), 3), "bottom_accuracy": round(float(bottom), 3),
            "T1_recall": round(float(t1), 3), "L5_recall": round(float(l5), 3), "confusion": conf.tolist()}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--epochs", type=int, default=14)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--cache", default="work-data/cobb", help="folder with the first stage's image caches")
    ap.add_argument("--evaluate", action="store_true", help="validation accuracy at the reference positions, then exit")
    ap.add_argument("--edge-cut", type=float, default=0.0, help="probability of a training crop's film ending "
                    "at a random place past the end levels (see batch)")
    ap.add_argument("--tuning", action="store_true", help="train without a fifth of the training patients and "
                    "evaluate on them instead of the validation split (to compare recipes)")
    ap.add_argument("--export", help="write TorchScript with card to this path and exit")
    ap.add_argument("--card-validation", help="JSON file of measured validation figures to put in the card")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    os.makedirs(args.out, exist_ok=True)
    os.makedirs(args.cache, exist_ok=True)

    landmarks, _ = data.read_table()
    train, val, rejected = split(landmarks)
    if args.tuning:
        train, val = [n for n in train if not is_tuning(n)], [n for n in train if is_tuning(n)]
    print(f"train {len(train)}, {'tuning' if args.tuning else 'validation'} {len(val)}, "
          f"rejected for label problems {len(rejected)}", flush=True)
    model = anchors.AnchorNet()
    ckpt_path = os.path.join(args.out, "checkpoint.pt")
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=1e-4)
    state = checkpoint.resume(model, opt, ckpt_path)
    if args.export:
        export(model, state, args, len(train), len(val), len(rejected))
        return

    def prepared(names, cache_name):
        img, sizes = data.build_cache(names, cache_path=os.path.join(args.cache, cache_name))
        corners = torch.tensor(data.to_cache_points(landmarks, names, sizes)).view(-1, N_VERT, 4, 2)
        pos, sp = anchors.level_positions(corners.mean(dim=2))
        return img, pos, sp

    va_img, va_pos, va_sp = prepared(val, "cache-tune.pt" if args.tuning else "cache-val.pt")
    if args.evaluate:
        print(json.dumps(evaluate(model, va_img, va_pos, va_sp)), flush=True)
        return
    tr_img, tr_pos, tr_sp = prepared(train, "cache-train-tuning.pt" if args.tuning else "cache-train.pt")

    pairs = np.array([(i, c) for i in range(len(train)) for c in range(10)])
    steps_per_epoch = math.ceil(len(pairs) / args.batch)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=args.lr, total_steps=steps_per_epoch * args.epochs,
                                                pct_start=0.1, last_epoch=state["epoch"] * steps_per_epoch - 1)
    first_epoch = state["epoch"]
    for epoch in range(first_epoch, args.epochs):
        te = time.time()
        perm = rng.permutation(len(pairs))
        tot, right = 0.0, 0
        for s in range(steps_per_epoch):
            idx = pairs[perm[s * args.batch:(s + 1) * args.batch]]
            img_idx, cls = torch.tensor(idx[:, 0]), torch.tensor(idx[:, 1])
            logits = model(batch(tr_img, tr_pos, tr_sp, img_idx, cls, rng, edge_cut=args.edge_cut))
            loss = F.cross_entropy(logits, cls)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            tot += loss.item() * len(idx)
            right += int((logits.argmax(dim=1) == cls).sum())
            if epoch == first_epoch and s == 19:
                print(f"20 steps in {time.time() - te:.1f} s", flush=True)
        msg = {"epoch": epoch + 1, "loss": tot / len(pairs), "train_accuracy": right / len(pairs),
               "seconds": round(time.time() - te, 1)}
        state = checkpoint.save(ckpt_path, model, opt, epoch + 1, state["history"] + [msg])
        print(json.dumps(msg), flush=True)
    print(json.dumps({"tuning" if args.tuning else "validation": evaluate(model, va_img, va_pos, va_sp)}), flush=True)
    export(model, state, args, len(train), len(val), len(rejected))


def export(model, state, args, n_train, n_val, n_rejected):
    card = {
        "name": "xray-ap-level-anchors",
        "version": "1.0.0",
        "task": "xray-ap-level-anchors",
        "modality": "xray",
        "dimension": 2,
        "input_channels": 1,
        "patch_size": [anchors.CROP_W, anchors.CROP_H],
        "input_spacing_mm": [],
        "normalisation": {"method": "chain-crop-bilinear-zero-padded-then-zscore",
                          "working_size": [preprocess.CACHE_W, preprocess.CACHE_H],
                          "spacing_px": anchors.SPACING_PX,
                          "scale_range": [anchors.SCALE_MIN, anchors.SCALE_MAX]},
        "output": {"logits": len(anchors.CLASSES), "top": anchors.CLASSES[anchors.TOP],
                   "bottom": anchors.CLASSES[anchors.BOTTOM]},
        "classes": [{"label": i + 1, "name": n} for i, n in enumerate(anchors.CLASSES)],
        "training_data": f"AASCE 2019 public training set (xray-ap-aasce): {n_train} images "
                         f"({n_train * 10} level crops per epoch) for training, {n_val} held out by patient "
                         f"(the first stage's split, scripts/cobb/data.py is_validation), "
                         f"{n_rejected} excluded for landmark-order problems",
        "training": {"epochs": state.get("epoch", 0), "seed": args.seed, "threads": "2 (CPU)",
                     "command": f"/usr/bin/python3 scripts/train_cobb_anchors.py --out work-data/cobb-anchors "
                                f"--epochs {args.epochs}",
                     "last_epoch": state["history"][-1] if state.get("history") else {}},
        "validation": json.load(open(args.card_validation)) if args.card_validation else {},
        "limitations": ["Trained on one centre's adolescent scoliosis films (AASCE), where T1..L5 are all in "
                        "view; the levels beyond them (C6, C7, S1, S2) are placed by extrapolation in training, so "
                        "transitional anatomy (a sacralised L5, a lumbar rib) is not known to it."],
    }
    path = args.export or os.path.join(args.out, "xray-level-anchors.pt")
    export_scripted(model, card, path)


if __name__ == "__main__":
    main()
