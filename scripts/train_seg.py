#!/usr/bin/python3
"""Trains the 2.5D sagittal-slice spine segmentation model (structure: vertebra/disc, and
vertebral level per pixel) on CPU and exports TorchScript with its model card.

MRI (real data, ../shared/data, split by patient in scripts/seg/data.py):
  /usr/bin/python3 scripts/train_seg.py --task mr --out work-data/seg-mr --steps 2400
CT (spine-phantom volumes made by scripts/make_ct_phantoms.sh):
  /usr/bin/python3 scripts/train_seg.py --task ct --phantoms work-data/ct-phantoms --out work-data/seg-ct
Export (after training; --card-validation adds measured figures):
  /usr/bin/python3 scripts/train_seg.py --task mr --out work-data/seg-mr --export models/mr-spine-seg.pt
Losses for partly labelled data: a volume labelled with bodies only does not say what
its other voxels are (they may be disc), so its loss is on p(body) vs p(not body), the
marginal over the unlabelled classes; likewise for disc-only volumes.
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
from lib import checkpoint  # noqa: E402
from lib.model_card import export_scripted  # noqa: E402
from seg import ct_from_masks, data  # noqa: E402
from seg.model import SliceUNet  # noqa: E402

CROP_Y, CROP_X = 160, 288  # anterior-posterior rows, superior-inferior columns (mm at 1 mm)
SLICE_STEP = 2             # neighbouring slices at -2, 0, +2 voxels (mm)


def sample_batch(cases, weights, batch, rng, train=True, realism=False, thick_slices=0.0):
    xs, sts, lvs, kinds = [], [], [], []
    for _ in range(batch):
        c = cases[rng.choice(len(cases), p=weights)]
        img, struct, lev = c["image"], c["struct"], c["level"]
        nz = c["label_slices"]
        z = int(rng.choice(nz)) if (rng.uniform() < 0.85 and len(nz)) else int(rng.integers(img.shape[0]))
        zs = [min(max(z + d, 0), img.shape[0] - 1) for d in (-SLICE_STEP, 0, SLICE_STEP)]
        x = img[zs]
        s, l = struct[z], lev[z]
        bone, disc = (c["bone"][zs], c["disc"][zs]) if "bone" in c else (None, None)
        vert = c["vertebra"][zs] if "vertebra" in c else None
        # pad to the crop, then a random crop
        py, px = max(0, CROP_Y - x.shape[1]), max(0, CROP_X - x.shape[2])
        if py or px:
            pads = ((0, 0), (py // 2, py - py // 2), (px // 2, px - px // 2))
            x = np.pad(x, pads, constant_values=float(c["pad"]))
            s = np.pad(s, pads[1:], constant_values=0)
            l = np.pad(l, pads[1:], constant_values=-1)
            if bone is not None:
                bone, disc = np.pad(bone, pads), np.pad(disc, pads)
            if vert is not None:
                vert = np.pad(vert, pads)
        fg = np.argwhere((s == 1) | (s == 2)) if rng.uniform() < 0.7 else ()
        if len(fg):  # centre the crop near the spine, jittered
            cy, cx = fg[int(rng.integers(len(fg)))]
            y0 = int(np.clip(cy - CROP_Y // 2 + rng.integers(-40, 41), 0, x.shape[1] - CROP_Y))
            x0 = int(np.clip(cx - CROP_X // 2 + rng.integers(-60, 61), 0, x.shape[2] - CROP_X))
        else:
            y0 = int(rng.integers(0, x.shape[1] - CROP_Y + 1))
            x0 = int(rng.integers(0, x.shape[2] - CROP_X + 1))
        x = x[:, y0:y0 + CROP_Y, x0:x0 + CROP_X]
        if bone is not None:
            x = mr_as_ct(x, bone[:, y0:y0 + CROP_Y, x0:x0 + CROP_X], disc[:, y0:y0 + CROP_Y, x0:x0 + CROP_X], rng)
        if vert is not None:  # a mask without its CT: rendered anew every sample
            x = ct_from_masks.render(vert[:, y0:y0 + CROP_Y, x0:x0 + CROP_X], x > 0.5, rng)
        xs.append(x)
        sts.append(s[y0:y0 + CROP_Y, x0:x0 + CROP_X])
        lvs.append(l[y0:y0 + CROP_Y, x0:x0 + CROP_X])
        kinds.append(c["kind"])
    x = torch.from_numpy(np.stack(xs)).float()
    st = torch.from_numpy(np.stack(sts).astype(np.float32))[:, None]
    lv = torch.from_numpy(np.stack(lvs).astype(np.float32))[:, None]
    if train:
        x, st, lv = augment(x, st, lv, rng, kinds, realism, thick_slices)
    return x, st[:, 0].long(), lv[:, 0].long(), kinds


def augment(x, st, lv, rng, kinds, realism=False, thick_slices=0.0):
    b = x.shape[0]
    # geometry: rotation, zoom (sometimes far out: the coarse pass runs at 2 mm), shift
    ang = torch.tensor(rng.uniform(-12, 12, b), dtype=torch.float32) * math.pi / 180
    zoom = rng.uniform(0.75, 1.3, b)
    far = rng.uniform(0, 1, b) < 0.15
    zoom[far] = rng.uniform(0.45, 0.6, far.sum())
    zoom = torch.tensor(zoom, dtype=torch.float32)
    theta = torch.zeros(b, 2, 3)
    cos, sin = torch.cos(ang), torch.sin(ang)
    theta[:, 0, 0] = cos / zoom
    theta[:, 0, 1] = -sin / zoom * CROP_Y / CROP_X
    theta[:, 1, 0] = sin / zoom * CROP_X / CROP_Y
    theta[:, 1, 1] = cos / zoom
    theta[:, :, 2] = torch.tensor(rng.uniform(-0.1, 0.1, (b, 2)), dtype=torch.float32)
    grid = F.affine_grid(theta, x.shape, align_corners=False)
    pad = x.amin(dim=(1, 2, 3), keepdim=True)
    x = F.grid_sample(x - pad, grid, mode="bilinear", padding_mode="zeros", align_corners=False) + pad
    st = F.grid_sample(st, grid, mode="nearest", padding_mode="zeros", align_corners=False)
    lv = F.grid_sample(lv + 1, grid, mode="nearest", padding_mode="zeros", align_corners=False) - 1
    for i in range(b):
        if is_ct(kinds[i]):
            if realism:
                x[i] = ct_realism(x[i], (st[i, 0] != 1) & (st[i, 0] != 2), rng)
            if kinds[i] in REAL_SHAPE_CT:
                x[i] = real_ct_variation(x[i], rng)
            if rng.uniform() < thick_slices:
                x[i] = thick_axial_slices(x[i], rng)
            # HU scale/offset drift, noise, blur (real scanners, kernels, slice thickness)
            x[i] = x[i] * float(rng.uniform(0.85, 1.15)) + float(rng.uniform(-0.08, 0.08))
        else:
            # MR contrast: gamma, smooth multiplicative bias field, noise
            g = float(np.exp(rng.uniform(-0.5, 0.5)))
            x[i] = x[i].clamp(0, 1) ** g
            field = torch.tensor(rng.normal(0, 0.25, (1, 1, 3, 3)), dtype=torch.float32)
            field = F.interpolate(field, size=x.shape[-2:], mode="bicubic", align_corners=True)[0]
            x[i] = x[i] * torch.exp(field)
        # lower resolution (CT: often, real abdominal CT comes in 3-5 mm slices)
        p_low, f_max = (0.5, 3.5) if is_ct(kinds[i]) and realism else (0.25, 3)
        if rng.uniform() < p_low:
            f = float(rng.uniform(1.5, f_max))
            small = F.interpolate(x[i:i + 1], scale_factor=1 / f, mode="area")
            x[i] = F.interpolate(small, size=x.shape[-2:], mode="bilinear", align_corners=False)[0]
        x[i] = x[i] + torch.randn_like(x[i]) * float(rng.uniform(0, 0.06))
    return x, st, lv


MR_AS_CT = "-as-ct"  # kind suffix: a real MRI volume rendered as CT (mr_as_ct) for the CT model


# Kinds of real vertebra shapes for the CT model: real CT with manual masks, and manual
# masks rendered as CT (ct_from_masks). Both say nothing of discs or of unlabelled levels.
REAL_SHAPE_CT = ("ct-real", "ct-synth")


def is_ct(kind):
    return kind == "ct-phantom" or kind.endswith(MR_AS_CT) or kind in REAL_SHAPE_CT


def real_ct_variation(x, rng):
    """What real CT varies in and three crops cannot show (normalised units, [3, H, W];
    columns run head to foot): bone density (the range above 100 HU compressed or
    stretched: osteoporotic to sclerotic), slice thickness (blur head to foot, 1.5..5 mm),
    reconstruction kernel (sharpened: edge overshoot and amplified grain)."""
    soft = 1.1
    if rng.uniform() < 0.6:
        f = float(rng.uniform(0.45, 1.25))
        x = torch.where(x > soft, soft + (x - soft) * f, x)
    if rng.uniform() < 0.4:
        k = int(rng.integers(2, 6))  # slice thickness in mm (1 mm pixels)
        kernel = torch.ones(3, 1, 1, k) / k
        x = F.conv2d(F.pad(x[None], (k // 2, (k - 1) // 2, 0, 0), mode="replicate"), kernel, groups=3)[0]
    if rng.uniform() < 0.3:
        blur = F.avg_pool2d(F.pad(x[None], (1, 1, 1, 1), mode="replicate"), 3, stride=1)[0]
        x = x + (x - blur) * float(rng.uniform(0.3, 1.2))
    return x


def thick_axial_slices(x, rng, max_mm=6):
    """A CT reconstructed in thick axial slices as spine-seg sees it ([C, H, W] at 1 mm,
    columns head to foot): k mm slices (2..max_mm) are the mean of the k 1-mm columns they
    span, placed k mm apart at a random phase, and spine-seg's resampling to 1 mm
    interpolates linearly between their centres (held at the ends). A box blur
    (real_ct_variation) keeps every 1 mm sample and misses both the coarse sampling and
    the interpolation: the shipped model, trained with the blur only, merged and misnamed
    vertebrae on real CT at 5 mm (scripts/eval_seg_ct_thickness.py)."""
    k = int(rng.integers(2, max_mm + 1))
    w = x.shape[-1]
    phase = int(rng.integers(0, k))
    # Column j of the padded row is column j - (k - 1) of x (edges repeated), so slice i,
    # averaging x's columns phase + i*k - (k - 1) .. phase + i*k, covers the row's start.
    padded = F.pad(x[None], (k - 1, k, 0, 0), mode="replicate")[0]
    means = F.avg_pool1d(padded.reshape(-1, 1, padded.shape[-1])[..., phase:], k, stride=k)
    means = means.reshape(x.shape[0], x.shape[1], -1)
    first_centre = phase - (k - 1) / 2  # slice i's centre lies at first_centre + i*k in x's columns
    pos = np.clip((np.arange(w) - first_centre) / k, 0, means.shape[-1] - 1)
    i0 = np.floor(pos).astype(np.int64)
    i1 = np.minimum(i0 + 1, means.shape[-1] - 1)
    f = torch.from_numpy((pos - i0).astype(np.float32))
    return means[..., i0] * (1 - f) + means[..., i1] * f


erode = ct_from_masks.erode  # one-pixel 4-neighbour erosion of [C, H, W] masks


def mr_as_ct(x, bone, disc, rng):
    """Renders a real MRI crop ([3, H, W], normalised 0..1) in CT's normalised units (air 0,
    water 1, 100 HU = 1.1) so the CT model sees real anatomy, not only phantom shapes:
    the soft tissue keeps the MRI's structure through a random smooth intensity curve into
    the fat-to-muscle range (-140..+100 HU; rising, falling or neither, since MRI and CT
    order fat, muscle and fluid differently); the labelled bone (bodies and the first
    sacral segment; for disc volumes the region between the discs) becomes marrow of a
    random density (40..350 HU: osteoporotic to young bone) with the MRI's texture and a
    1-2 pixel cortical rim (+100..+800 HU); labelled discs become 40..120 HU. The arch is
    not labelled in the MRI, so it keeps soft-tissue values: its loss is masked
    (ct_codes_from_mr)."""
    knots = np.linspace(0, 1, 6)
    values = rng.uniform(0.86, 1.10, 6)
    order = rng.uniform()
    values = np.sort(values) if order < 0.45 else (np.sort(values)[::-1] if order < 0.75 else values)
    out = np.interp(x, knots, values).astype(np.float32)
    if bone.any():
        mean = float(x[bone].mean())
        marrow = rng.uniform(1.04, 1.35)
        out[bone] = marrow + (x[bone] - mean) * rng.uniform(-0.25, 0.25)
        inner = erode(bone)
        if rng.uniform() < 0.5:
            inner = erode(inner)
        out[bone & ~inner] += rng.uniform(0.1, 0.8)
    if disc.any():
        out[disc] = rng.uniform(1.04, 1.12) + (x[disc] - float(x[disc].mean())) * 0.05
    return out


def ct_realism(x, unlabelled, rng):
    """What the phantoms lack and real CT has (normalised units: air 0, water 1): bone
    density that varies between patients (osteoporotic marrow near 100 HU, partial-volume
    cortex far below 900 HU), grainy texture rather than flat tissue, and clutter in the
    soft tissue (bowel gas, fat, contrast-filled vessels and bowel) that is not spine.
    The phantom's marrow and cortex are about 230 and 900 HU; real lumbar bodies measured
    in ct-abdomen-example have a median near 170 HU and 95th percentiles of 460-600."""
    soft = 1.1  # 100 HU
    f = float(rng.uniform(0.35, 1.05))
    x = torch.where(x > soft, soft + (x - soft) * f, x)
    h, w = x.shape[-2:]
    k = int(rng.integers(2, 5))
    tex = F.interpolate(torch.randn(1, 3, h // k + 1, w // k + 1), size=(h, w), mode="bilinear",
                        align_corners=False)[0]
    x = x + tex * float(rng.uniform(0, 0.05))
    soft_tissue = unlabelled & (x[1] > 0.8) & (x[1] < 1.15)
    yy, xx = torch.meshgrid(torch.arange(h, dtype=torch.float32), torch.arange(w, dtype=torch.float32),
                            indexing="ij")
    for _ in range(int(rng.integers(0, 10))):
        cy, cx = rng.uniform(0, h), rng.uniform(0, w)
        ry, rx = rng.uniform(3, 22, 2)
        value = float(rng.choice([0.0, 0.05, 0.9, 1.2, 1.3]))  # gas, fat, contrast
        blob = (((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1) & soft_tissue
        x[:, blob] = value + float(rng.normal(0, 0.02))
    return x


def loss_fn(out, st, lv, kinds):
    logits = out[:, :3]
    logz = torch.logsumexp(logits, dim=1)
    p = torch.softmax(logits, dim=1)
    total = 0.0
    for i, k in enumerate(kinds):
        li = logits[i]
        s = st[i]
        if k in ("named", "unnamed", "disc"):
            cls = 1 if k != "disc" else 2
            other = [c for c in range(3) if c != cls]
            pos = (s == cls).float()
            known_bg = (s == data.KNOWN_BACKGROUND).float()
            lp_pos = li[cls] - logz[i]
            lp_neg = torch.logsumexp(li[other], dim=0) - logz[i]
            lp_bg = li[0] - logz[i]
            ce = -(pos * lp_pos + (1 - pos - known_bg) * lp_neg + known_bg * lp_bg).mean()
            inter = (p[i, cls] * pos).sum()
            dice = 1 - (2 * inter + 1) / (p[i, cls].sum() + pos.sum() + 1)
            total = total + ce + dice
        elif k.endswith(MR_AS_CT):
            total = total + coded_loss(li, logz[i], p[i], s)
        elif k in REAL_SHAPE_CT:
            total = total + coded_loss(li, logz[i], p[i], s, dice_classes=(1,))
        else:
            ce = F.cross_entropy(li[None], s[None])
            dice = 0
            for cls in (1, 2):
                pos = (s == cls).float()
                dice = dice + 1 - (2 * (p[i, cls] * pos).sum() + 1) / (p[i, cls].sum() + pos.sum() + 1)
            total = total + ce + dice / 2
    lev_logits = out[:, 3:]
    mask = lv >= 0
    if mask.any():
        lce = F.cross_entropy(lev_logits.permute(0, 2, 3, 1)[mask], lv[mask])
    else:
        lce = torch.zeros(())
    return total / len(kinds) + 0.5 * lce, float(lce)


ALLOWED_CLASSES = {0: [0], 1: [1], 2: [2], data.NOT_VERTEBRA: [0, 2], data.NOT_DISC: [0, 1]}


def coded_loss(logits, logz, p, codes, dice_classes=(1, 2)):
    """Cross-entropy on the set of classes each code allows (marginal likelihood), and soft
    Dice per class over the voxels where that class is known (not NOT_* of another kind,
    not UNKNOWN). Labels that never name discs (VerSe masks) take Dice on the vertebra
    only: a disc Dice over their NOT_VERTEBRA voxels would push p(disc) down in the discs."""
    ce, known = 0.0, 0
    for code, classes in ALLOWED_CLASSES.items():
        m = codes == code
        if m.any():
            lp = torch.logsumexp(logits[classes][:, m], dim=0) - logz[m]
            ce = ce - lp.sum()
            known += int(m.sum())
    ce = ce / max(known, 1)
    dice = 0.0
    for cls, ambiguous in ((1, data.NOT_VERTEBRA), (2, data.NOT_DISC)):
        if cls not in dice_classes:
            continue
        where = ((codes >= 0) & (codes != ambiguous)).float()
        pos = (codes == cls).float()
        dice = dice + 1 - (2 * (p[cls] * pos).sum() + 1) / ((p[cls] * where).sum() + pos.sum() + 1)
    return ce + dice / 2


def prepare_mr_as_ct(case, levels):
    """A real MRI volume for the CT model: structure codes (ct_codes_from_mr), and the masks
    mr_as_ct renders as bone and disc."""
    codes, lev = data.ct_codes_from_mr(case["labels"], case["kind"], levels)
    if case["kind"] == "disc":
        case["bone"] = (codes == 1) | ((lev >= 0) & (codes != 2))
        case["disc"] = codes == 2
    else:
        case["bone"] = codes == 1
        case["disc"] = np.zeros_like(case["bone"])
    case["struct"], case["level"] = codes, lev
    case["label_slices"] = np.nonzero(((codes == 1) | (codes == 2)).reshape(codes.shape[0], -1).any(axis=1))[0]
    case["pad"] = float(case["image"].min())
    case["kind"] = case["kind"] + MR_AS_CT
    del case["labels"]
    return case


def prepare(case, levels, disc_anchors=True):
    struct, lev = data.structure_and_level(case["labels"], case["kind"], levels, disc_anchors)
    case["struct"], case["level"] = struct, lev
    case["label_slices"] = np.nonzero(case["labels"].reshape(case["labels"].shape[0], -1).any(axis=1))[0]
    case["pad"] = float(case["image"].min())
    del case["labels"]
    return case


def prepare_real_shape_ct(case, levels):
    """A real CT or a mask to render: structure codes from the whole-vertebra mask
    (data.structure_codes_from_vertebra_masks)."""
    synth = case["kind"] == "ct-synth"
    codes, lev = data.structure_codes_from_vertebra_masks(case["labels"], levels, known_outside=synth)
    case["struct"], case["level"] = codes, lev
    if synth:
        case["vertebra"] = codes == 1
    case["label_slices"] = np.nonzero((codes == 1).reshape(codes.shape[0], -1).any(axis=1))[0]
    case["pad"] = 0.0  # air (a rendered mask's canvas is 1 inside the volume)
    del case["labels"]
    return case


def sampling_weights(cases, disc_kind="disc"):
    """Sampling weights summing to 1. Disc-labelled volumes are few: a fifth of the samples."""
    w = np.ones(len(cases))
    is_disc = np.array([c["kind"] == disc_kind for c in cases])
    if is_disc.any() and not is_disc.all():
        w[is_disc] = 0.2 / is_disc.sum()
        w[~is_disc] = 0.8 / (~is_disc).sum()
    return w / w.sum()


def initial_weights(path):
    """Weights of a training checkpoint, or of an exported model (TorchScript with its card:
    a leave-one-out fold fine-tunes from the shipped phantom-trained model)."""
    if path.endswith(".npz"):
        z = np.load(path)
        return {k: torch.from_numpy(z[k].astype(np.float32) if z[k].dtype == np.float16 else z[k])
                for k in z.files if not k.startswith("__")}
    try:
        return torch.jit.load(path).state_dict()
    except RuntimeError:
        return torch.load(path)["model"]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--task", choices=["mr", "ct"], required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--phantoms", help="CT: folder of spine-phantom volumes")
    ap.add_argument("--steps", type=int, default=2400)
    ap.add_argument("--batch", type=int, default=6)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--init", help="start from this checkpoint's weights (a second training leg "
                    "with its own schedule)")
    ap.add_argument("--no-disc-anchors", action="store_true",
                    help="MR: without disc_anchored_labels (as the shipped model's first leg was trained)")
    ap.add_argument("--thick-slices", type=float, default=0.0, metavar="P",
                    help="CT: the chance that a sample is seen as thick axial slices (thick_axial_slices: 2..6 mm, "
                         "resampled to 1 mm as spine-seg does)")
    ap.add_argument("--ct-realism", action="store_true",
                    help="CT: add ct_realism() to the augmentation (an experiment; not used by the shipped model)")
    ap.add_argument("--mr-mix", type=float, default=0.0,
                    help="CT: this fraction of the samples from the real MRI training volumes rendered as CT "
                         "(mr_as_ct); the MRI validation volumes stay held out")
    ap.add_argument("--real-ct", type=float, default=0.0,
                    help="CT: this fraction of the samples from the real CT with manual masks (ct-verse)")
    ap.add_argument("--mask-ct", type=float, default=0.0,
                    help="CT: this fraction of the samples from manual vertebra masks rendered as CT "
                         "(ct_from_masks: the masks without CT, and the training folds' real CT masks)")
    ap.add_argument("--hold-out", nargs="*", default=[],
                    help="CT: real CT cases (e.g. sub-verse005) left out of training, their masks too "
                         "(a leave-one-out fold)")
    ap.add_argument("--device", default="cpu", help="cpu, or cuda (training on a lent GPU machine: train_fast)")
    ap.add_argument("--workers", type=int, default=0, help="DataLoader worker processes sampling the batches")
    ap.add_argument("--seconds", type=float, default=0,
                    help="train_fast: stop after this many seconds of training if --steps is not reached first")
    ap.add_argument("--pack", help="CT: read the training volumes from this pack (scripts/seg/pack.py) "
                    "instead of ../shared/data and --phantoms")
    ap.add_argument("--write-pack", help="CT: write the training volumes (--phantoms, noise-free, see "
                    "scripts/seg/pack.py; --noisy-phantoms; the real CT and masks) to this pack and stop")
    ap.add_argument("--noisy-phantoms", help="--write-pack: the phantoms with noise, whose provenance gives the noise")
    ap.add_argument("--import-weights", help="export: the weights.npz that train_fast wrote (instead of "
                    "--out's checkpoint)")
    ap.add_argument("--export")
    ap.add_argument("--model-version", default="1.0.0", help="export: the version in the model card")
    ap.add_argument("--earlier-legs", nargs="*", help="export: the commands of the legs before --init's checkpoint")
    ap.add_argument("--card-validation")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    os.makedirs(args.out, exist_ok=True)
    levels = data.MR_LEVELS if args.task == "mr" else data.CT_LEVELS
    model = SliceUNet(n_levels=len(levels))
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=1e-4)
    ckpt_path = os.path.join(args.out, "checkpoint.pt")
    state = checkpoint.resume(model, opt, ckpt_path)
    if args.init and not state["epoch"]:
        init = initial_weights(args.init)
        own = model.state_dict()
        # A model with other level classes (the MR model for the CT one): all but the level head's output layer.
        skipped = [k for k in init if k not in own or init[k].shape != own[k].shape]
        own.update({k: v for k, v in init.items() if k not in skipped})
        model.load_state_dict(own)
        print(f"weights from {args.init}" + (f" except {skipped}" if skipped else ""), flush=True)
    if args.task == "mr":
        train, val = data.mr_split()
    else:
        train, val = (data.ct_phantom_cases(args.phantoms) if args.phantoms else []), []
    with open(os.path.join(args.out, "split.json"), "w") as f:
        json.dump({"train": [c[0] for c in train], "validation": [c[0] for c in val]}, f, indent=1)
    if args.write_pack:
        from seg import pack
        pack.write(args.write_pack, train, args.noisy_phantoms, data.verse_ct_cases(), data.mask_only_cases())
        print(f"{args.write_pack}: {os.path.getsize(args.write_pack) / 1e6:.1f} MB", flush=True)
        return
    if args.import_weights:
        state = import_weights(model, args.import_weights)
    if args.export:
        export(model, state, args, levels, train, val)
        return
    t0 = time.time()
    cases, w = training_cases(args, levels, train)
    print(f"{len(cases)} training volumes loaded in {time.time() - t0:.0f} s; validation held out: "
          f"{[c[0] for c in val]}", flush=True)
    if args.device != "cpu" or args.workers or args.seconds:
        train_fast(model, opt, state, cases, w, args)
        return
    chunk = 100
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=args.lr, total_steps=args.steps, pct_start=0.05,
                                                last_epoch=state["epoch"] * chunk - 1 if state["epoch"] else -1)
    rng = np.random.default_rng(args.seed + state["epoch"])
    model.train()
    for block_i in range(state["epoch"], math.ceil(args.steps / chunk)):
        te = time.time()
        tot = tl = 0.0
        n = min(chunk, args.steps - block_i * chunk)
        for _ in range(n):
            x, st, lv, kinds = sample_batch(cases, w, args.batch, rng, realism=args.ct_realism,
                                            thick_slices=args.thick_slices)
            out = model(x)
            loss, lce = loss_fn(out, st, lv, kinds)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            tot += float(loss); tl += lce
        msg = {"steps": (block_i * chunk + n), "loss": tot / n, "level_ce": tl / n, "seconds": time.time() - te}
        state = checkpoint.save(ckpt_path, model, opt, block_i + 1, state["history"] + [msg])
        print(json.dumps(msg), flush=True)
    export(model, state, args, levels, train, val)


def training_cases(args, levels, train):
    """The prepared training volumes and their sampling weights (summing to 1): from
    ../shared/data and the phantom folder, or from a pack (scripts/seg/pack.py)."""
    if args.pack:
        from seg import pack
        phantoms, real, masks = pack.read(args.pack, args.seed)
        cases = [prepare(c, levels) for c in phantoms]
        real = [c for c in real if c["id"] not in args.hold_out] if args.real_ct > 0 else []
        masks = [c for c in masks if c["id"][:-len("-mask")] not in args.hold_out] if args.mask_ct > 0 else []
        w = sampling_weights(cases)
        return add_real_shape(cases, w, real, masks, args, levels)
    cases = [prepare(data.load_case(c, args.task), levels, not args.no_disc_anchors) for c in train]
    w = sampling_weights(cases)
    if args.task == "ct" and args.mr_mix > 0:
        mr_train, mr_val = data.mr_split()
        mr = [prepare_mr_as_ct(data.load_case(c, "mr"), levels) for c in mr_train]
        w = np.concatenate([w * (1 - args.mr_mix), sampling_weights(mr, "disc" + MR_AS_CT) * args.mr_mix])
        cases += mr
        print(f"{len(mr)} real MRI volumes rendered as CT; MRI validation held out: "
              f"{[c[0] for c in mr_val]}", flush=True)
    if args.task == "ct" and (args.real_ct > 0 or args.mask_ct > 0):
        real, masks = real_shape_cases(args)
        return add_real_shape(cases, w, [data.load_ct_case(c) for c in real],
                              [data.load_ct_case(c) for c in masks], args, levels)
    return cases, w


def add_real_shape(cases, w, real, masks, args, levels):
    """Adds the real CT (args.real_ct of the samples) and the masks rendered as CT
    (args.mask_ct) to the phantoms' cases and weights."""
    extra = [prepare_real_shape_ct(c, levels) for c in real + masks]
    share = np.array([args.real_ct / len(real) if real else 0.0] * len(real)
                     + [args.mask_ct / len(masks) if masks else 0.0] * len(masks))
    print(f"real CT for training: {[c['id'] for c in real]}; masks rendered as CT: {[c['id'] for c in masks]}; "
          f"held out: {args.hold_out}", flush=True)
    return cases + extra, np.concatenate([w * (1 - share.sum()), share])


class Batches(torch.utils.data.IterableDataset):
    """Endless training batches, sampled and augmented in DataLoader worker processes
    (each with its own random stream), so a GPU is not left waiting for one CPU core."""

    def __init__(self, cases, weights, batch, seed, realism, thick_slices=0.0):
        self.cases, self.weights, self.batch, self.seed, self.realism = cases, weights, batch, seed, realism
        self.thick_slices = thick_slices

    def __iter__(self):
        info = torch.utils.data.get_worker_info()
        worker = info.id if info else 0
        torch.set_num_threads(1)
        rng = np.random.default_rng([self.seed, worker])
        while True:
            yield sample_batch(self.cases, self.weights, self.batch, rng, realism=self.realism,
                               thick_slices=self.thick_slices)


def one_cycle_lr(f, max_lr, warmup=0.05):
    """The learning rate at fraction f of the run, shaped as torch's OneCycleLR (cosine
    warm-up from max/25, cosine annealing to max/25/1e4)."""
    if f < warmup:
        lo = max_lr / 25
        return lo + (max_lr - lo) * (1 - math.cos(math.pi * f / warmup)) / 2
    lo = max_lr / 25 / 1e4
    return lo + (max_lr - lo) * (1 + math.cos(math.pi * min(1.0, (f - warmup) / (1 - warmup)))) / 2


def train_fast(model, opt, state, cases, w, args):
    """Training on a GPU (or with sampling workers): batches from worker processes, and a
    budget of --steps or --seconds, whichever ends first; the learning-rate schedule
    follows the fraction of that budget spent. The weights are written as weights.npz
    (plain arrays: a model trained with a newer torch is exported by this machine's, with
    --import-weights)."""
    device = torch.device(args.device)
    torch.backends.cudnn.benchmark = True  # one input size throughout
    model.to(device)
    for group in opt.state.values():
        for k, v in group.items():
            if torch.is_tensor(v):
                group[k] = v.to(device)
    more = {"prefetch_factor": 4} if args.workers else {}
    batches = Batches(cases, w, args.batch, args.seed + state["epoch"], args.ct_realism, args.thick_slices)
    loader = torch.utils.data.DataLoader(batches, batch_size=None, num_workers=args.workers,
                                         pin_memory=device.type == "cuda", **more)
    model.train()
    history = state["history"]
    step, t0, te, tot, tl, n = 0, None, time.time(), 0.0, 0.0, 0
    for x, st, lv, kinds in loader:
        if t0 is None:
            t0 = time.time()  # the budget starts with the first batch (after the workers' start)
        f = max(step / args.steps, (time.time() - t0) / args.seconds if args.seconds else 0.0)
        if f >= 1:
            break
        for g in opt.param_groups:
            g["lr"] = one_cycle_lr(f, args.lr)
        x, st, lv = (t.to(device, non_blocking=True) for t in (x, st, lv))
        out = model(x)
        loss, lce = loss_fn(out, st, lv, kinds)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        step += 1
        tot += float(loss); tl += lce; n += 1
        if step % 100 == 0:
            history = history + [{"steps": step, "loss": tot / n, "level_ce": tl / n, "seconds": time.time() - te}]
            print(json.dumps(history[-1]), flush=True)
            tot = tl = 0.0; n = 0; te = time.time()
        if step % 2000 == 0:
            save_weights(model, args, history, step, t0)
    if n:
        history = history + [{"steps": step, "loss": tot / n, "level_ce": tl / n, "seconds": time.time() - te}]
    save_weights(model, args, history, step, t0)
    print(f"{step} steps in {time.time() - (t0 or time.time()):.0f} s on {args.device}; "
          f"{os.path.join(args.out, 'weights.npz')} written", flush=True)


def save_weights(model, args, history, step, t0):
    """weights.npz: the weights as plain arrays, the loss history and how they were trained;
    written atomically (also every 2000 steps, so a run stopped from outside leaves weights)."""
    trained = {"command": training_command(args), "device": device_name(torch.device(args.device)), "steps": step,
               "seconds": round(time.time() - (t0 or time.time())), "torch": torch.__version__}
    path = os.path.join(args.out, "weights.npz")
    with open(path + ".tmp", "wb") as f:
        np.savez(f, **{k: v.detach().cpu().numpy() for k, v in model.state_dict().items()},
                 __history__=np.frombuffer(json.dumps(history).encode(), np.uint8),
                 __trained__=np.frombuffer(json.dumps(trained).encode(), np.uint8))
    os.replace(path + ".tmp", path)


def import_weights(model, path):
    """weights.npz of train_fast into the model; returns the training state for the card."""
    z = np.load(path)
    model.load_state_dict({k: torch.from_numpy(z[k]) for k in z.files if not k.startswith("__")})
    history = json.loads(bytes(z["__history__"]).decode())
    trained = json.loads(bytes(z["__trained__"]).decode())
    return {"epoch": math.ceil(trained["steps"] / 100), "history": history, "trained": trained}


def device_name(device):
    if device.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(device)})"
    return f"cpu ({torch.get_num_threads()} threads)"


def training_command(args):
    """The command line of a training run, for the model card."""
    mr = args.task == "mr"
    return (f"/usr/bin/python3 scripts/train_seg.py --task {args.task} --out {args.out} "
            f"--steps {args.steps} --lr {args.lr} --seed {args.seed}"
            + (f" --batch {args.batch}" if args.batch != 6 else "")
            + ("" if mr or not args.phantoms else f" --phantoms {args.phantoms}")
            + (f" --pack {args.pack}" if args.pack else "")
            + (f" --device {args.device}" if args.device != "cpu" else "")
            + (f" --workers {args.workers}" if args.workers else "")
            + (f" --seconds {args.seconds:g}" if args.seconds else "")
            + (" --ct-realism" if args.ct_realism else "")
            + (f" --thick-slices {args.thick_slices:g}" if args.thick_slices else "")
            + (f" --mr-mix {args.mr_mix}" if args.mr_mix else "")
            + (f" --real-ct {args.real_ct}" if args.real_ct else "")
            + (f" --mask-ct {args.mask_ct}" if args.mask_ct else "")
            + (f" --hold-out {' '.join(args.hold_out)}" if args.hold_out else "")
            + (" --no-disc-anchors" if args.no_disc_anchors else "")
            + (f" --init {args.init}" if args.init else ""))


def real_shape_cases(args):
    """The real CT and the masks rendered as CT that this run trains on (a fold leaves its
    held-out case out of both)."""
    real = [c for c in data.verse_ct_cases() if c[0] not in args.hold_out] if args.real_ct > 0 else []
    masks = data.mask_only_cases(exclude=args.hold_out) if args.mask_ct > 0 else []
    return real, masks


def real_ct_training_data(args):
    real, masks = ([c[0] for c in cases] for cases in real_shape_cases(args))
    return (f"; {args.real_ct:.0%} of the samples from real CT with manual whole-vertebra masks (shared/data "
            f"ct-verse, VerSe 2019, CC BY-SA 4.0: {', '.join(real) or 'none'}); {args.mask_ct:.0%} from manual "
            f"VerSe masks rendered as CT by scripts/seg/ct_from_masks.py ({', '.join(masks) or 'none'})"
            + (f"; held out: {', '.join(args.hold_out)}" if args.hold_out else ""))


# Shown by spine-seg/spine-detect with every result of the model (log and JSON).
LIMITATIONS = {
    "mr": ["Segments vertebral bodies only (no posterior elements) and learned its levels from lumbar MRI "
           "(T11..L5 and the sacrum): levels above T11 are named by counting, not recognised."],
    "ct": ["Trained without real labelled CT (synthetic spine-phantom CT; real MRI rendered as CT when "
           "the card's training command says --mr-mix): on the real CT checked, vertebrae were fragmented "
           "and misnamed. Treat names and outlines on real CT as unverified and read the flags."],
    # The CT model trained on real CT (--real-ct): what its evidence is and is not.
    "ct-real": ["Real-CT evidence is small: 3 spine-centred VerSe CTs with manual masks (T9..L5). Leave-one-out over "
                "them: per-vertebra Dice 0.83 +- 0.04 (0.78..0.89), below the 0.88 aimed at, and 10 of 10 uncut "
                "vertebrae named right. Outlines of the posterior elements and endplates are approximate.",
                "The level votes do not tell the first sacral segment from L5 on real CT (the VerSe masks label no "
                "sacrum): spine-seg separates them at the L5/S1 disc; where that disc is not found, L5 takes in part "
                "of the sacrum (its volume then reads large).",
                "On real CT unlike those crops the names can be one level off: on a 1.5 mm lumbar crop (L2..L4) "
                "every name was one level too high, with per-vertebra confidence 0.55..0.64 and no sign but the "
                "flag that the names are not anchored (neither sacrum nor the end of the ribs in view). On the "
                "abdominal example CT (3 mm, full field) T12..L5 were named right. Check the names of vertebrae "
                "with a confidence below 0.9.",
                "Not seen in any real CT: the cervical spine and the upper thoracic spine (cervical shapes only "
                "from masks rendered as CT), fractures, implants and metal, contrast agent, children. Read the "
                "flags on such scans.",
                "Name confidence on real CT rarely reaches 0.9 (2 of 28 names on the real CTs checked, both right); "
                "below 0.9, 22 of 26 were right, so a low confidence there does not by itself mean a wrong name."],
}


def training_record(state, args):
    """The card's training entry: this machine's run (steps from the checkpoint), or the
    run that wrote --import-weights' weights.npz (its own command, device and torch)."""
    trained = state.get("trained")
    record = {"steps": state.get("epoch", 0) * 100, "seed": args.seed, "threads": "2 (CPU)",
              "command": training_command(args)} if not trained else \
        {"steps": trained["steps"], "seed": args.seed, "device": trained["device"], "seconds": trained["seconds"],
         "torch": trained["torch"], "command": trained["command"]}
    record["earlier_legs"] = args.earlier_legs or []
    record["last_block"] = state["history"][-1] if state.get("history") else {}
    return record


def export(model, state, args, levels, train, val):
    from seg.names import vertebra_name
    mr = args.task == "mr"
    card = {
        "name": f"{args.task}-spine-seg",
        "version": args.model_version,
        "task": "spine-seg",
        "modality": args.task,
        "dimension": 2,
        "input_channels": 3,
        "patch_size": [320, 192],
        "input_spacing_mm": [1.0, 1.0, 1.0],
        "orientation": data.CANONICAL,
        "slice_offsets_mm": [-SLICE_STEP, 0, SLICE_STEP],
        "normalisation": ({"method": "percentile-minmax", "lower": 0.5, "upper": 99.5} if mr else
                          {"method": "clip-shift-scale", "min": -1000, "max": 2000, "offset": 1000,
                           "scale": 0.001}),
        "output": {"structure_channels": 3, "level_channels": len(levels)},
        "structures": data.STRUCTURES,
        "classes": [{"label": v, "name": vertebra_name(v)} for v in levels],
        "vertebra_part": "body" if mr else "whole",
        "training_data": ("real sagittal lumbar MRI from shared/data (mri-lumbar-vertebrae, -unnamed, -discs): "
                          f"{len(train)} volumes for training, {len(val)} held out by patient "
                          "(scripts/seg/data.py mr_split)") if mr else
                         f"{len(train)} synthetic spine-phantom CT volumes (scripts/make_ct_phantoms.sh)"
                         + (f"; {args.mr_mix:.0%} of the samples from the real MRI training volumes (the MR model's "
                            "training split; its validation volumes held out) rendered as CT by mr_as_ct in "
                            "scripts/train_seg.py" if args.mr_mix else "")
                         + (real_ct_training_data(args) if args.real_ct or args.mask_ct else "; no real CT"),
        "training": training_record(state, args),
        "validation": json.load(open(args.card_validation)) if args.card_validation else {},
        "limitations": LIMITATIONS["ct-real" if args.task == "ct" and args.real_ct else args.task],
    }
    path = args.export or os.path.join(args.out, f"{args.task}-spine-seg.pt")
    export_scripted(model, card, path)


if __name__ == "__main__":
    main()
