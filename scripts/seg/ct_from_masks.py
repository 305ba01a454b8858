"""Synthetic CT from manual vertebra masks: real vertebra shapes, sizes and spacing (VerSe
masks, some without their CT) rendered in CT's normalised units (air 0, water 1, +1 per
1000 HU), with new random tissue every sample. The phantoms' vertebrae are ellipses and
rings; these are real vertebrae, so the model learns their outline, not the phantom's.

What is rendered, per 3-slice crop [3, H, W] (the same random tissue in the 3 slices,
which lie 2 mm apart):
- soft tissue: a smooth random field between fat (-120 HU) and muscle (+60 HU), grain;
- marrow: a random density (80..350 HU: osteoporotic to young bone) with trabecular grain;
- cortex: the mask's 1-2 pixel rim, +250..+900 HU above the marrow (the arch and the
  processes are thin, so they come out mostly cortical, as on real CT);
- outside the volume (padding): air, as around a real spine-centred crop.
"""
import numpy as np
import torch
import torch.nn.functional as F


def smooth_noise(shape, cell, rng):
    """Gaussian noise on a grid of `cell` pixels, bilinearly upsampled to `shape` (H, W)."""
    h, w = shape
    coarse = torch.from_numpy(rng.normal(0, 1, (1, 1, h // cell + 2, w // cell + 2)).astype(np.float32))
    return F.interpolate(coarse, size=(h, w), mode="bilinear", align_corners=False)[0, 0].numpy()


def erode(mask):
    """One-pixel 4-neighbour erosion of [C, H, W] boolean masks."""
    inner = mask.copy()
    inner[:, 1:] &= mask[:, :-1]
    inner[:, :-1] &= mask[:, 1:]
    inner[:, :, 1:] &= mask[:, :, :-1]
    inner[:, :, :-1] &= mask[:, :, 1:]
    return inner


def render(vertebra, inside, rng):
    """vertebra, inside: [3, H, W] boolean (inside: within the scanned volume). Returns
    float32 [3, H, W] in normalised CT units."""
    shape = vertebra.shape[-2:]
    fat, muscle = rng.uniform(0.86, 0.92), rng.uniform(1.02, 1.065)
    mix = np.clip(0.5 + smooth_noise(shape, int(rng.integers(6, 24)), rng) * rng.uniform(0.3, 0.9), 0, 1)
    soft = fat + (muscle - fat) * mix
    out = np.repeat(soft[None], 3, axis=0).astype(np.float32)
    out += rng.normal(0, rng.uniform(0.005, 0.02), out.shape).astype(np.float32)
    if vertebra.any():
        marrow = rng.uniform(1.08, 1.35)
        grain = np.stack([smooth_noise(shape, int(rng.integers(1, 3)), rng) for _ in range(3)])
        bone = marrow + grain * rng.uniform(0.01, 0.06)
        inner = erode(vertebra)
        if rng.uniform() < 0.5:
            inner = erode(inner)
        rim = vertebra & ~inner
        bone = bone + rim * rng.uniform(0.25, 0.9)
        out = np.where(vertebra, bone, out).astype(np.float32)
    return np.where(inside, out, 0.0).astype(np.float32)
