#!/usr/bin/python3
"""Trains the frontal-radiograph landmark model (68 AASCE corners, T1..L5) on the AASCE
training images minus the fixed validation split, on CPU, and exports TorchScript with
its model card. Resumable: checkpoints every epoch.

  /usr/bin/python3 scripts/train_cobb.py --out work-data/cobb --epochs 40 --threads 2
  /usr/bin/python3 scripts/train_cobb.py --out work-data/cobb --export models/xray-landmarks.pt
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
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from cobb import data, preprocess  # noqa: E402
from cobb.model import N_VERT, OFFSET_SCALE, LandmarkNet, decode  # noqa: E402
from lib import checkpoint  # noqa: E402
from lib.model_card import export_scripted  # noqa: E402

OUT_H, OUT_W = preprocess.INPUT_H // preprocess.STRIDE, preprocess.INPUT_W // preprocess.STRIDE
SIGMA = 1.5  # heatmap sigma in output pixels


def split(landmarks):
    train, val, rejected = [], [], {}
    for name in sorted(landmarks):
        problems = data.label_problems(landmarks[name])
        if problems:
            rejected[name] = problems
            continue
        (val if data.is_validation(name) else train).append(name)
    return train, val, rejected


def augment(images, points, rng, train=True, scale_range=(0.88, 1.12), shift_y=0.05):
    """images uint8 [B,1024,512]; points [B,68,2] in cache pixels.
    Returns model inputs [B,1,512,256] and points in input pixels. shift_y is in
    normalised coordinates (1 = half the image height)."""
    b = images.shape[0]
    x = images.float()[:, None]
    pts = torch.as_tensor(points, dtype=torch.float32).clone()
    if train:
        ang = torch.tensor(rng.uniform(-8, 8, b), dtype=torch.float32) * math.pi / 180
        scale = torch.tensor(rng.uniform(*scale_range, b), dtype=torch.float32)
        tx = torch.tensor(rng.uniform(-0.06, 0.06, b), dtype=torch.float32)
        ty = torch.tensor(rng.uniform(-shift_y, shift_y, b), dtype=torch.float32)
        flip = torch.tensor(rng.uniform(0, 1, b) < 0.5)
        # output normalised coords u -> input normalised coords: A u + t (aspect-aware rotation)
        H, W = preprocess.CACHE_H, preprocess.CACHE_W
        cos, sin = torch.cos(ang), torch.sin(ang)
        theta = torch.zeros(b, 2, 3)
        theta[:, 0, 0] = cos / scale
        theta[:, 0, 1] = -sin / scale * H / W
        theta[:, 1, 0] = sin / scale * W / H
        theta[:, 1, 1] = cos / scale
        theta[:, 0, 2] = tx
        theta[:, 1, 2] = ty
        fl = torch.where(flip, -1.0, 1.0)
        theta[:, :, 0] *= fl[:, None]
        grid = F.affine_grid(theta, x.shape, align_corners=False)
        x = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
        # forward-map the points: input normalised p = A u + t  =>  u = A^-1 (p - t)
        pn = torch.stack([(pts[..., 0] + 0.5) / W * 2 - 1, (pts[..., 1] + 0.5) / H * 2 - 1], dim=-1)
        A = theta[:, :, :2]
        t = theta[:, :, 2]
        u = torch.linalg.solve(A[:, None], (pn - t[:, None])[..., None])[..., 0]
        pts = torch.stack([(u[..., 0] + 1) / 2 * W - 0.5, (u[..., 1] + 1) / 2 * H - 0.5], dim=-1)
        # a mirrored image swaps left and right corners
        idx = torch.arange(68).view(17, 4)[:, [1, 0, 3, 2]].reshape(-1)
        pts = torch.where(flip[:, None, None], pts[:, idx], pts)
        # intensity: gamma, contrast, noise
        gamma = torch.tensor(rng.uniform(0.7, 1.4, b), dtype=torch.float32).view(b, 1, 1, 1)
        x = 255 * (x.clamp(0, 255) / 255) ** gamma
        x = x * torch.tensor(rng.uniform(0.8, 1.2, b), dtype=torch.float32).view(b, 1, 1, 1)
        x = x + torch.randn_like(x) * float(rng.uniform(0, 6))
    inp = preprocess.cache_to_input(x[:, 0])[:, None]
    # cache pixels -> input pixels (2x pooling with half-pixel centres)
    pts = (pts + 0.5) / 2 - 0.5
    return inp, pts


def targets(pts):
    """pts [B,68,2] input pixels -> heatmaps [B,17,h,w], offsets [B,8,h,w], mask [B,1,h,w]."""
    b = pts.shape[0]
    corners = (pts.view(b, N_VERT, 4, 2) + 0.5) / preprocess.STRIDE - 0.5  # input px -> output px
    centres = corners.mean(dim=2)
    ys = torch.arange(OUT_H, dtype=torch.float32).view(1, 1, OUT_H, 1)
    xs = torch.arange(OUT_W, dtype=torch.float32).view(1, 1, 1, OUT_W)
    d2 = (xs - centres[..., 0, None, None]) ** 2 + (ys - centres[..., 1, None, None]) ** 2
    heat = torch.exp(-d2 / (2 * SIGMA ** 2))
    # offsets of each vertebra painted in a radius-2 disc around its centre
    offsets = torch.zeros(b, 8, OUT_H, OUT_W)
    mask = torch.zeros(b, 1, OUT_H, OUT_W)
    rel = (corners - centres[:, :, None, :]).reshape(b, N_VERT, 8) / OFFSET_SCALE
    near = d2 <= 2.5 ** 2  # [B,17,h,w]
    for v in range(N_VERT):
        m = near[:, v:v + 1].float()
        offsets = offsets * (1 - m) + rel[:, v, :, None, None] * m
        mask = torch.maximum(mask, m)
    return heat, offsets, mask


def loss_fn(out, heat, offsets, mask):
    ph = out[:, :N_VERT]
    lh = (((ph - heat) ** 2) * (1 + 20 * heat)).mean()
    lo = (F.smooth_l1_loss(out[:, N_VERT:], offsets, reduction="none", beta=0.05) * mask).sum() / mask.sum().clamp_min(1) / 8
    return lh * 10 + lo, lh.item(), lo.item()


def evaluate(model, images, points, sizes, names, landmarks, angles_ref, batch=8):
    """Landmark error (original pixels) and AASCE angles on the given set."""
    from cobb.angles import aasce_angles, smape
    model.eval()
    errs, smapes, maes = [], [], []
    with torch.no_grad():
        for i in range(0, len(names), batch):
            inp, _ = augment(images[i:i + batch], points[i:i + batch], None, train=False)
            out = model(inp)
            _, corners, _ = decode(out)
            for k in range(out.shape[0]):
                w, h = sizes[i + k]
                c = corners[k].reshape(68, 2).numpy()
                c_in = (c + 0.5) * preprocess.STRIDE - 0.5
                pred = preprocess.from_input_coords(c_in, w, h)
                ref = landmarks[names[i + k]]
                errs.append(np.linalg.norm(pred - ref, axis=1).mean())
                a = aasce_angles(pred, h)
                smapes.append(smape(a, angles_ref[names[i + k]]))
                maes.append(abs(a[0] - angles_ref[names[i + k]][0]))
    model.train()
    return float(np.mean(errs)), float(np.mean(smapes)), float(np.mean(maes))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--epochs", type=int, default=40)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--limit", type=int, default=0, help="use only N training images (smoke test)")
    ap.add_argument("--export", help="write TorchScript with card to this path and exit")
    ap.add_argument("--phantoms", help="folder of spine-phantom radiographs (image.png + truth.json) "
                                       "added to the training images for the fine-tuning epochs")
    ap.add_argument("--finetune", type=int, default=0, help="epochs after --epochs at a constant learning rate")
    ap.add_argument("--finetune-lr", type=float, default=5e-5)
    ap.add_argument("--furniture", action="store_true",
                    help="in the fine-tuning epochs, also what films carry (scripts/cobb/reframe.py): inverted "
                         "polarity, burnt-in text and rulers, drawn rods and screws")
    ap.add_argument("--from-model", help="start from the weights of this exported model (no checkpoint needed)")
    ap.add_argument("--member", type=int, default=-1,
                    help="with --from-model: start from this member of a seed ensemble (scripts/ensemble_models.py)")
    ap.add_argument("--low-resolution", type=float, default=0.0, metavar="P",
                    help="fine-tuning: a fraction P of the working images blurred as a small film's are "
                         "(reduced to 0.25..0.7 of their size and enlarged back; with_low_resolution)")
    ap.add_argument("--no-validation", action="store_true",
                    help="do not score the validation split during training (nothing is chosen on it; "
                         "without this the split's figures are only printed)")
    ap.add_argument("--init-from", help="initialise from the weights of this exported model where they fit (a model "
                                        "without the context block), then train the full --epochs schedule")
    ap.add_argument("--no-context", action="store_true", help="the network without its bottleneck context block "
                                                               "(the network of the shipped models/xray-landmarks.pt 1.0.0)")
    ap.add_argument("--shift-y", type=float, default=0.05,
                    help="vertical shift augmentation, normalised (0.05 = 2.5 %% of the height)")
    ap.add_argument("--scale-range", default="0.88,1.12", help="zoom augmentation range")
    ap.add_argument("--card-validation", help="JSON file of measured validation figures to put in the card")
    ap.add_argument("--card-training", help="how this model was trained, for the card (default: this command)")
    ap.add_argument("--stop-after", type=int, default=0, help="stop (without exporting) after this epoch")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    os.makedirs(args.out, exist_ok=True)

    landmarks, angles = data.read_table()
    train, val, rejected = split(landmarks)
    if args.limit:
        train = train[:args.limit]
    print(f"train {len(train)}, validation {len(val)}, rejected for label problems {len(rejected)}", flush=True)
    with open(os.path.join(args.out, "split.json"), "w") as f:
        json.dump({"train": train, "validation": val, "rejected": rejected}, f, indent=1)

    model = LandmarkNet(context=not args.no_context)
    scale_range = tuple(float(v) for v in args.scale_range.split(","))
    ckpt_path = os.path.join(args.out, "checkpoint.pt")
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=1e-4)
    state = checkpoint.resume(model, opt, ckpt_path)
    if args.from_model and state["epoch"] == 0:
        load_exported(model, args.from_model, args.member)
        state = {"epoch": args.epochs, "history": []}
        print(f"starting from {args.from_model}: fine-tuning only", flush=True)
    if args.init_from and state["epoch"] == 0:
        load_exported(model, args.init_from)

    if args.export:
        export(model, state, args, len(train), len(val), len(rejected))
        return

    t0 = time.time()
    tr_img, tr_sizes = data.build_cache(train, cache_path=os.path.join(args.out, "cache-train.pt"))
    va_img, va_sizes = data.build_cache(val, cache_path=os.path.join(args.out, "cache-val.pt"))
    print(f"cache ready in {time.time() - t0:.0f} s", flush=True)

    tr_pts = data.to_cache_points(landmarks, train, tr_sizes)
    va_pts = data.to_cache_points(landmarks, val, va_sizes)
    ft_img, ft_pts = tr_img, tr_pts
    if args.phantoms:
        ph_img, ph_pts = load_phantoms(args.phantoms)
        ft_img, ft_pts = torch.cat([tr_img, ph_img]), np.concatenate([tr_pts, ph_pts])
        print(f"fine-tuning set: {len(train)} real + {len(ph_img)} phantom radiographs", flush=True)
    steps_per_epoch = math.ceil(len(train) / args.batch)
    total = steps_per_epoch * args.epochs
    # The one-cycle schedule covers --epochs; fine-tuning epochs use a constant rate.
    sched = None
    if state["epoch"] < args.epochs:
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=args.lr, total_steps=total, pct_start=0.1,
                                                    last_epoch=state["epoch"] * steps_per_epoch - 1)
    for epoch in range(state["epoch"], args.epochs + args.finetune):
        te = time.time()
        finetune = epoch >= args.epochs
        images, points = (ft_img, ft_pts) if finetune else (tr_img, tr_pts)
        if finetune:
            for g in opt.param_groups:
                g["lr"] = args.finetune_lr
        perm = rng.permutation(len(images))
        steps = math.ceil(len(images) / args.batch)
        tot = th = to = 0.0
        for s in range(steps):
            idx = perm[s * args.batch:(s + 1) * args.batch]
            batch_img = images[idx]
            if finetune and args.furniture:
                batch_img = with_furniture(batch_img, points[idx], rng)
            if finetune and args.low_resolution > 0:
                batch_img = with_low_resolution(batch_img, args.low_resolution, rng)
            inp, pts = augment(batch_img, points[idx], rng, train=True, scale_range=scale_range,
                               shift_y=args.shift_y)
            heat, offs, mask = targets(pts)
            out = model(inp)
            loss, lh, lo = loss_fn(out, heat, offs, mask)
            opt.zero_grad()
            loss.backward()
            opt.step()
            if not finetune:
                sched.step()
            tot += loss.item(); th += lh; to += lo
        msg = {"epoch": epoch + 1, "loss": tot / steps, "heat": th / steps,
               "offset": to / steps, "seconds": time.time() - te, "finetune": finetune}
        if not args.no_validation and ((epoch + 1) % 5 == 0 or epoch + 1 >= args.epochs):
            err, sm, mae = evaluate(model, va_img, va_pts, va_sizes, val, landmarks, angles)
            msg.update({"val_landmark_px": err, "val_smape": sm, "val_major_mae": mae})
        state = checkpoint.save(ckpt_path, model, opt, epoch + 1, state["history"] + [msg])
        print(json.dumps(msg), flush=True)
        if args.stop_after and epoch + 1 >= args.stop_after:
            print(f"stopped after epoch {epoch + 1}", flush=True)
            return
    export(model, state, args, len(train), len(val), len(rejected))


def load_exported(model, path, member=-1):
    """Weights of an exported model, where they fit: a 1.0.0 model has no context block,
    which then starts as the identity (Context in scripts/cobb/model.py). member >= 0: that
    member of a seed ensemble."""
    weights = torch.jit.load(path).state_dict()
    if member >= 0:
        prefix = f"members.{member}."
        weights = {k[len(prefix):]: v for k, v in weights.items() if k.startswith(prefix)}
        if not weights:
            raise SystemExit(f"{path}: no member {member} (not a seed ensemble, or fewer members)")
    result = model.load_state_dict(weights, strict=False)
    if result.unexpected_keys:
        raise SystemExit(f"{path}: weights this network does not have: {result.unexpected_keys[:3]}")
    if result.missing_keys:
        print(f"{path}: no weights for {sorted({k.split('.')[0] for k in result.missing_keys})}, "
              f"trained from their initial values", flush=True)


def with_furniture(images, points, rng):
    """uint8 working images [B,1024,512] with, at random, what films carry: inverted
    polarity (15 %), burnt-in text and rulers (30 %), drawn rods and screws (15 %)."""
    from cobb import reframe
    out = images.clone()
    for k in range(out.shape[0]):
        img = out[k].numpy().astype(np.float32) / 255
        if rng.uniform() < 0.15:
            reframe.draw_hardware(img, np.asarray(points[k], dtype=np.float64), rng)
        if rng.uniform() < 0.3:
            reframe.burn_in(img, rng)
        if rng.uniform() < 0.15:
            img = 1 - img
        out[k] = torch.from_numpy(np.clip(img * 255, 0, 255).round().astype(np.uint8))
    return out


def with_low_resolution(images, fraction, rng):
    """uint8 working images [B,1024,512], a fraction of them as a small film's spine comes
    to the first stage: the crop of a 512 x 512 film holds its spine in about 300 rows (a
    full-length film) to 450 (a tight one), enlarged to the working image's 1024. So each
    chosen image is reduced to 0.25..0.7 of its size (area averaging, as the film was made)
    and enlarged back (bilinear, as spine-cobb enlarges the crop)."""
    out = images.clone()
    h, w = out.shape[-2:]
    for k in np.nonzero(rng.uniform(size=out.shape[0]) < fraction)[0]:
        s = rng.uniform(0.25, 0.7)
        x = out[k].float()[None, None]
        small = F.interpolate(x, size=(max(8, round(h * s)), max(8, round(w * s))), mode="area")
        big = F.interpolate(small, size=(h, w), mode="bilinear", align_corners=False)
        out[k] = big[0, 0].clamp(0, 255).round().to(torch.uint8)
    return out


def load_phantoms(folder):
    """spine-phantom radiographs: working images and landmarks in working-image pixels."""
    dirs = sorted(d for d in os.listdir(folder) if os.path.exists(os.path.join(folder, d, "truth.json")))
    images, sizes = data.cache_images([os.path.join(folder, d, "image.png") for d in dirs])
    landmarks = {d: np.array(json.load(open(os.path.join(folder, d, "truth.json")))["landmarks_px"]) for d in dirs}
    return images, data.to_cache_points(landmarks, dirs, sizes)


def export(model, state, args, n_train, n_val, n_rejected):
    card = {
        "name": "xray-ap-landmarks",
        "version": "1.0.0" if args.no_context else "1.1.0",
        "task": "xray-ap-landmarks",
        "modality": "xray",
        "dimension": 2,
        "input_channels": 1,
        "patch_size": [preprocess.INPUT_W, preprocess.INPUT_H],
        "input_spacing_mm": [],
        "normalisation": {"method": "resize-bilinear-halfpixel-then-avgpool2-then-zscore",
                          "resize_to": [preprocess.CACHE_W, preprocess.CACHE_H],
                          "input_size": [preprocess.INPUT_W, preprocess.INPUT_H]},
        "output": {"heatmaps": N_VERT, "offset_channels": 8, "offset_scale": OFFSET_SCALE,
                   "stride": preprocess.STRIDE},
        "classes": [{"label": 8 + i, "name": ("T%d" % (i + 1)) if i < 12 else ("L%d" % (i - 11))}
                    for i in range(N_VERT)],
        "training_data": f"AASCE 2019 public training set (xray-ap-aasce): {n_train} images for training, "
                         f"{n_val} held out by patient (scripts/cobb/data.py is_validation), "
                         f"{n_rejected} excluded for landmark-order problems"
                         + (f"; fine-tuned {args.finetune} epochs with spine-phantom radiographs added "
                            f"(scripts/make_phantom_radiographs.sh)" if args.finetune and args.phantoms else "")
                         + (f"; fine-tuned {args.finetune} epochs from {args.from_model or 'the trained model'}"
                            + (f" (member {args.member})" if args.member >= 0 else "")
                            + f" with {args.low_resolution:.0%} of the working images blurred as a small film's "
                            f"(with_low_resolution in scripts/train_cobb.py)" if args.finetune and args.low_resolution else "")
                         + (f"; fine-tuned {args.finetune} epochs from {args.from_model or 'the trained model'} with film "
                            f"furniture drawn on the training images (inverted polarity, text and rulers, rods and "
                            f"screws; scripts/cobb/reframe.py)" if args.finetune and args.furniture else ""),
        "training": {"epochs": state.get("epoch", 0), "seed": args.seed, "threads": "2 (CPU)",
                     "command": args.card_training or (
                         f"/usr/bin/python3 scripts/train_cobb.py --out work-data/cobb --epochs {args.epochs}"
                         + (f" --seed {args.seed}" if args.seed else "")
                         + (" --no-context" if args.no_context else "")
                         + (f" --lr {args.lr}" if args.lr != 2e-3 else "")
                         + (f" --init-from {args.init_from}" if args.init_from else "")
                         + (f" --shift-y {args.shift_y}" if args.shift_y != 0.05 else "")
                         + (f" --scale-range {args.scale_range}" if args.scale_range != "0.88,1.12" else "")
                         + (f" --finetune {args.finetune} --phantoms work-data/phantom-xr" if args.finetune and args.phantoms else "")
                         # a fine-tuning from an exported model with what it drew on the images
                         + (f" --finetune {args.finetune} --finetune-lr {args.finetune_lr} --from-model {args.from_model}"
                            + (f" --member {args.member}" if args.member >= 0 else "")
                            + (" --furniture" if args.furniture else "")
                            + (f" --low-resolution {args.low_resolution}" if args.low_resolution else "")
                            if args.finetune and (args.furniture or args.low_resolution) else "")),
                     "last_epoch": state["history"][-1] if state.get("history") else {}},
        "validation": json.load(open(args.card_validation)) if args.card_validation else {},
        # Shown by spine-cobb with every result (log and cobb.json).
        "limitations": ["Trained only on the AASCE frontal radiographs (one centre, adolescent scoliosis, "
                        "T1..L5 all in view): expect worse results on other populations, lateral views, other "
                        "crops of the neck or pelvis, or implants; read the flags."],
    }
    path = args.export or os.path.join(args.out, "xray-landmarks.pt")
    export_scripted(model, card, path)


if __name__ == "__main__":
    main()
