#!/usr/bin/python3
"""Trains the spine finder for frontal radiographs as they come: from any film (any size,
aspect, padding, field of view) reduced to 256 x 256 with its aspect kept, it finds the
top of T1 and the bottom of L5, the column between them, and spinal hardware. spine-cobb
crops the film around what it finds so that the landmark stages see what they know.

Training images: the AASCE training split (never the validation patients) re-framed by
scripts/cobb/reframe.py (synthetic surroundings, furniture, padding, rotation, polarity,
hardware), plus films where T1 or L5 is out of view and images that are no spine at all.
A pool of samples is made once (2 processes) and the network trained over it.

  /usr/bin/python3 scripts/train_spine_finder.py --out work-data/finder --pool 3000 --steps 2500
  /usr/bin/python3 scripts/train_spine_finder.py --out work-data/finder --export models/xray-spine-finder.pt
"""
import argparse
import json
import multiprocessing as mp
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
import torch.nn as nn
import torch.nn.functional as F
from PIL import Image, ImageDraw

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from cobb import data, reframe  # noqa: E402
from lib.layers import block  # noqa: E402
from lib.model_card import export_scripted  # noqa: E402

SIZE = 256          # the finder's input: the film letterboxed to 256 x 256
STRIDE = 4          # outputs 64 x 64
OUT = SIZE // STRIDE
SIGMA = 1.5         # keypoint heatmap sd, output pixels
CROP_H = 640        # AASCE crops are reduced to this height before re-framing


class FinderNet(nn.Module):
    """A strided stem, a U-Net from stride 2 to 32 and back to 4. Outputs [B, 4, 64, 64]:
    T1-top and L5-bottom heatmaps (about 0..1), then the probabilities of column and
    hardware. The stem keeps it cheap on 2 cores; the finder only needs a rough box."""

    def __init__(self, widths=(16, 32, 48, 64, 96)):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(1, widths[0], 3, stride=2, padding=1, bias=False),
                                  nn.BatchNorm2d(widths[0]), nn.ReLU(inplace=True))
        self.enc = nn.ModuleList()
        cin = widths[0]
        for w in widths:
            self.enc.append(block(cin, w))
            cin = w
        self.dec = nn.ModuleList([block(widths[4] + widths[3], widths[3]), block(widths[3] + widths[2], widths[2]),
                                  block(widths[2] + widths[1], widths[1])])
        self.head = nn.Conv2d(widths[1], 4, 1)

    def raw(self, x):
        x = self.stem(x)
        skips = []
        for i, e in enumerate(self.enc):
            if i > 0:
                x = F.max_pool2d(x, 2)
            x = e(x)
            skips.append(x)
        for d, skip in zip(self.dec, (skips[3], skips[2], skips[1])):
            x = F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False)
            x = d(torch.cat([x, skip], dim=1))
        return self.head(x)

    def forward(self, x):
        r = self.raw(x)
        return torch.cat([r[:, :2], torch.sigmoid(r[:, 2:])], dim=1)


def letterbox(film: np.ndarray):
    """film H x W (any range) -> (input [256,256] float32, (x scale, y scale), offset x,
    offset y): the film reduced by area averaging (adaptive average pooling) to
    round(W s) x round(H s), s = 256 / max(H, W), z-scored over the film, centred, zeros
    around it. Same as src/inference/xray_spine_finder.cpp."""
    h, w = film.shape
    s = SIZE / max(h, w)
    nw, nh = max(1, min(SIZE, int(round(w * s)))), max(1, min(SIZE, int(round(h * s))))
    t = torch.from_numpy(np.ascontiguousarray(film, dtype=np.float32))[None, None]
    small = F.adaptive_avg_pool2d(t, (nh, nw))[0, 0].numpy()
    small = (small - small.mean()) / max(1e-6, float(small.std()))
    ox, oy = (SIZE - nw) // 2, (SIZE - nh) // 2
    out = np.zeros((SIZE, SIZE), np.float32)
    out[oy:oy + nh, ox:ox + nw] = small
    return out, (nw / w, nh / h), ox, oy


def targets(pts, scale, ox, oy, hw_mask, t1_in, l5_in):
    """Targets [4, 64, 64] for points (film pixels) of a film letterboxed as given."""
    def to_out(p):
        return np.array([((p[0] + 0.5) * scale[0] + ox) / STRIDE - 0.5, ((p[1] + 0.5) * scale[1] + oy) / STRIDE - 0.5])
    t = np.zeros((4, OUT, OUT), np.float32)
    ys, xs = np.mgrid[0:OUT, 0:OUT].astype(np.float32)
    c = pts.reshape(17, 4, 2)
    for ch, (p, seen) in enumerate([(c[0, :2].mean(axis=0), t1_in), (c[16, 2:].mean(axis=0), l5_in)]):
        if seen:
            q = to_out(p)
            t[ch] = np.exp(-((xs - q[0]) ** 2 + (ys - q[1]) ** 2) / (2 * SIGMA ** 2))
    col = Image.new("L", (OUT, OUT), 0)
    d = ImageDraw.Draw(col)
    for v in range(17):
        quad = [tuple(to_out(c[v, k])) for k in (0, 1, 3, 2)]
        d.polygon(quad, fill=1)
    t[2] = np.asarray(col, np.float32)
    if hw_mask is not None:
        m = Image.fromarray((hw_mask * 255).astype(np.uint8))
        h, w = hw_mask.shape
        nw, nh = max(1, int(round(w * scale[0]))), max(1, int(round(h * scale[1])))
        m = np.asarray(m.resize((nw, nh), Image.BILINEAR), np.float32) / 255
        big = np.zeros((SIZE, SIZE), np.float32)
        big[oy:oy + nh, ox:ox + nw] = m
        t[3] = big.reshape(OUT, STRIDE, OUT, STRIDE).max(axis=(1, 3)) > 0.25
    return t


def not_a_spine(rng, shape=(SIZE * 3, SIZE * 2)):
    """An image with no frontal spine: noise, gradients, blobs, or a scrambled radiograph."""
    h, w = shape
    kind = rng.integers(0, 3)
    if kind == 0:
        img = rng.uniform(0, 1, shape).astype(np.float32)
    elif kind == 1:
        ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
        img = (np.sin(xs / rng.uniform(5, 60)) * np.cos(ys / rng.uniform(5, 60)) + 1) / 2
    else:
        img = np.zeros(shape, np.float32)
        lay = Image.fromarray(img, mode="F")
        d = ImageDraw.Draw(lay)
        for _ in range(int(rng.integers(3, 12))):
            x, y, r = rng.uniform(0, w), rng.uniform(0, h), rng.uniform(10, 120)
            d.ellipse([x - r, y - r, x + r, y + r * rng.uniform(0.5, 2)], fill=float(rng.uniform(0.2, 1)))
        img = np.asarray(lay, np.float32)
    return img + rng.normal(0, 0.05, shape).astype(np.float32)


def make_sample(args):
    """One training sample: (input uint8-coded z-score [256,256], targets [4,64,64])."""
    crop, pts, seed = args
    rng = np.random.default_rng(seed)
    u = rng.uniform()
    if u < 0.05:
        x, _, _, _ = letterbox(not_a_spine(rng))
        return x, np.zeros((4, OUT, OUT), np.float32)
    hardware = rng.uniform() < 0.3
    film, p, hw = reframe.as_they_come(crop, pts, rng, hardware=hardware)
    t1_in = l5_in = True
    c = p.reshape(17, 4, 2)
    if 0.05 <= u < 0.15:
        # a chest film: cut above L5 (between T10 and L4) - or a lumbar film: cut below T1
        h = film.shape[0]
        if rng.uniform() < 0.6:
            v = int(rng.integers(9, 16))
            cut = int(np.clip(c[v, 2:, 1].mean(), 16, h))
            film, l5_in = film[:cut], False
            if hw is not None:
                hw = hw[:cut]
        else:
            v = int(rng.integers(1, 8))
            cut = int(np.clip(c[v, :2, 1].mean(), 0, h - 16))
            film, t1_in = film[cut:], False
            p = p - np.array([0, cut])
            if hw is not None:
                hw = hw[cut:]
    x, scale, ox, oy = letterbox(film)
    # (the column target keeps any vertebra cut out of view that still falls inside the
    # 256 x 256 input, in the letterbox's zero border: the model was trained so)
    return x, targets(p, scale, ox, oy, hw, t1_in, l5_in)


def load_crops(names, landmarks):
    crops, pts = [], []
    for n in names:
        g = data.load_grey(os.path.join(data.DATA, "images", n)).astype(np.float32) / 255
        crop, p, _ = reframe.resize(g, landmarks[n], CROP_H)
        crops.append(crop)
        pts.append(p)
    return crops, pts


def make_pool(crops, pts, n, seed, workers):
    jobs = [(crops[i % len(crops)], pts[i % len(crops)], seed * 1_000_003 + i) for i in range(n)]
    with mp.get_context("fork").Pool(workers) as pool:
        out = pool.map(make_sample, jobs, chunksize=16)
    x = torch.from_numpy(np.stack([o[0] for o in out]))[:, None]
    t = torch.from_numpy(np.stack([o[1] for o in out]))
    return x, t


def loss_fn(raw, t):
    heat = raw[:, :2]
    w = 1 + 20 * t[:, :2]
    l_heat = (w * (heat - t[:, :2]) ** 2).mean() * 10
    l_col = F.binary_cross_entropy_with_logits(raw[:, 2], t[:, 2])
    l_hw = F.binary_cross_entropy_with_logits(raw[:, 3], t[:, 3], pos_weight=torch.tensor(5.0))
    return l_heat + l_col + l_hw, (float(l_heat), float(l_col), float(l_hw))


def decode(out):
    """out [B,4,64,64] -> per image dict: T1 / L5 points (output px) and peaks."""
    b = out.shape[0]
    flat = out[:, :2].reshape(b, 2, -1)
    peak, idx = flat.max(dim=2)
    return torch.stack([(idx % OUT).float(), (idx // OUT).float()], dim=-1), peak


def evaluate(model, x, t):
    model.eval()
    with torch.no_grad():
        out = torch.cat([model(x[i:i + 32]) for i in range(0, len(x), 32)])
    pts, peak = decode(out)
    ref_pts, ref_peak = decode(t)
    seen = ref_peak > 0.5
    err = (pts - ref_pts).norm(dim=-1)
    found = peak > 0.3
    res = {
        "keypoint_error_px_median": float(err[seen].median()) * STRIDE,
        "keypoint_within_8px": float((err[seen] * STRIDE <= 8).float().mean()),
        "found_when_in_view": float(found[seen].float().mean()),
        "found_when_out_of_view": float(found[~seen].float().mean()) if (~seen).any() else 0.0,
    }
    hw_ref = t[:, 3].flatten(1).amax(dim=1) > 0.5
    hw_pix = (out[:, 3] > 0.5).flatten(1).sum(dim=1)
    res["hardware_detected"] = float((hw_pix[hw_ref] >= 3).float().mean()) if hw_ref.any() else 0.0
    res["hardware_false_alarm"] = float((hw_pix[~hw_ref] >= 3).float().mean())
    model.train()
    return res


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True)
    ap.add_argument("--pool", type=int, default=3000, help="training samples made once")
    ap.add_argument("--val-pool", type=int, default=400, help="samples from the validation patients")
    ap.add_argument("--steps", type=int, default=2500)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--export")
    ap.add_argument("--card-validation")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    os.makedirs(args.out, exist_ok=True)
    model = FinderNet()
    ckpt = os.path.join(args.out, "finder.pt")
    if args.export:
        state = torch.load(ckpt)
        model.load_state_dict(state["model"])
        export(model, state, args)
        return
    landmarks, _ = data.read_table()
    train = [n for n in sorted(landmarks) if not data.label_problems(landmarks[n]) and not data.is_validation(n)]
    val = [n for n in sorted(landmarks) if not data.label_problems(landmarks[n]) and data.is_validation(n)]
    t0 = time.time()
    pool_path = os.path.join(args.out, f"pool-{args.pool}-{args.seed}.pt")
    if os.path.exists(pool_path):
        blob = torch.load(pool_path)
    else:
        crops, pts = load_crops(train, landmarks)
        vcrops, vpts = load_crops(val, landmarks)
        print(f"{len(train)} training, {len(val)} validation images read in {time.time() - t0:.0f} s", flush=True)
        x, t = make_pool(crops, pts, args.pool, args.seed, args.threads)
        vx, vt = make_pool(vcrops, vpts, args.val_pool, args.seed + 1, args.threads)
        blob = {"x": x.half(), "t": t.half(), "vx": vx.half(), "vt": vt.half()}
        torch.save(blob, pool_path)
    x, t, vx, vt = blob["x"].float(), blob["t"].float(), blob["vx"].float(), blob["vt"].float()
    print(f"pool {len(x)} + {len(vx)} validation samples ready after {time.time() - t0:.0f} s", flush=True)
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=2e-3, total_steps=args.steps, pct_start=0.15)
    g = torch.Generator().manual_seed(args.seed)
    history = []
    t1 = time.time()
    for step in range(1, args.steps + 1):
        idx = torch.randint(0, len(x), (args.batch,), generator=g)
        xb, tb = x[idx], t[idx]
        flip = torch.rand(args.batch, generator=g) < 0.5
        xb = torch.where(flip[:, None, None, None], xb.flip(-1), xb)
        tb = torch.where(flip[:, None, None, None], tb.flip(-1), tb)
        loss, parts = loss_fn(model.raw(xb), tb)
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        if step % 100 == 0 or step == args.steps:
            print(f"step {step} loss {float(loss):.4f} parts {parts} {time.time() - t1:.0f} s", flush=True)
        if step % 500 == 0 or step == args.steps:
            res = evaluate(model, vx, vt)
            res["step"] = step
            history.append(res)
            print("validation", json.dumps(res), flush=True)
            torch.save({"model": model.state_dict(), "step": step, "history": history,
                        "command": " ".join(sys.argv)}, ckpt + ".tmp")
            os.replace(ckpt + ".tmp", ckpt)
    print(f"trained in {time.time() - t1:.0f} s", flush=True)


def export(model, state, args):
    card = {
        "name": "xray-spine-finder",
        "version": "1.0.0",
        "task": "xray-spine-finder",
        "modality": "xray",
        "dimension": 2,
        "input_channels": 1,
        "patch_size": [SIZE, SIZE],
        "input_spacing_mm": [],
        "normalisation": {"method": "letterbox-bilinear-halfpixel-zscore-over-film-zero-pad", "input_size": [SIZE, SIZE]},
        "output": {"stride": STRIDE, "channels": ["T1 top heatmap", "L5 bottom heatmap", "column probability",
                                                  "hardware probability"]},
        "classes": [{"label": 1, "name": "T1 top"}, {"label": 2, "name": "L5 bottom"},
                    {"label": 3, "name": "column"}, {"label": 4, "name": "hardware"}],
        "training_data": "AASCE 2019 public training set (xray-ap-aasce), validation patients excluded "
                         "(scripts/cobb/data.py is_validation), re-framed with synthetic surroundings, film "
                         "furniture and drawn hardware (scripts/cobb/reframe.py); images without a spine",
        "training": {"steps": state.get("step"), "seed": args.seed, "threads": "2 (CPU)",
                     "command": state.get("command"), "last_validation": state["history"][-1] if state.get("history") else {}},
        "validation": json.load(open(args.card_validation)) if args.card_validation else {},
        "limitations": ["Learned the surroundings of a full-length film from synthetic anatomy drawn around the "
                        "AASCE crops, and hardware from drawn rods and screws: real full-length films and real "
                        "implants were not seen in training; read the flags."],
    }
    export_scripted(model, card, args.export)


if __name__ == "__main__":
    main()
