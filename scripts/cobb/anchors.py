"""Level anchors of the frontal-radiograph landmarks: which vertebra a point of the chain
is, near the two ends that fix the count (T1 below the neck, L5 above the sacrum).

The first stage names the 17 vertebrae from the whole film pooled to 512 x 256, where a
cell of its bottleneck sees about half the height: on a quarter of the films it counts one
level off, most often with L5 placed on the sacrum or T1 on C7 (models/xray-landmarks.md).
This network looks at one place of the chain at the working image's full resolution, with
several vertebrae of context, and says which of five levels lies there: C6, C7, T1, T2, T3
near the top, L3, L4, L5, S1, S2 near the bottom. spine-cobb uses it to re-count a chain
whose ends the anchors place elsewhere (src/inference/xray_level_anchors.cpp).

Crop contract (shared with the C++ code, held equal by tests/unit/test_xray_contract.cpp):
a CROP_H x CROP_W grid centred on the point (cx, cy) in working-image pixels, its pixel
(u, v) sampled at x = cx + s * (u - (CROP_W - 1) / 2), y = cy + s * (v - (CROP_H - 1) / 2)
with s = the chain's local spacing (mean distance between neighbouring centres) / SPACING_PX,
clamped to SCALE_MIN..SCALE_MAX, bilinear with zero padding, then z-scored over the crop:
the second stage's sampling (fine.py) with another size and scale.
"""
import torch
import torch.nn as nn
import torch.nn.functional as F

from lib.layers import block

from . import fine

CROP_H, CROP_W = 160, 128
SPACING_PX = 22.0  # crop pixels per vertebra spacing: the crop spans about 7 vertebrae
SCALE_MIN, SCALE_MAX = 0.3, 6.0
CLASSES = ["C6", "C7", "T1", "T2", "T3", "L3", "L4", "L5", "S1", "S2"]
TOP, BOTTOM = slice(0, 5), slice(5, 10)  # the classes of each end
# Where the levels beyond the 17 annotated vertebrae lie, in units of the neighbouring
# spacing (T1 - T2 above, L5 - L4 below): cervical bodies are smaller than T1, the S1 body
# about as tall as L5. Used only to place training crops; the jitter covers the error.
ABOVE_T1 = (1.8, 0.9)   # C6, C7
BELOW_L5 = (1.0, 1.9)   # S1, S2


class AnchorNet(nn.Module):
    """Small CNN, stride 32, global average pooling, 10 logits (CLASSES)."""

    def __init__(self, widths=(16, 32, 48, 64, 96, 128)):
        super().__init__()
        self.enc = nn.ModuleList()
        cin = 1
        for w in widths:
            self.enc.append(block(cin, w))
            cin = w
        self.head = nn.Linear(widths[-1], len(CLASSES))

    def forward(self, x):
        for i, e in enumerate(self.enc):
            if i > 0:
                x = F.max_pool2d(x, 2)
            x = e(x)
        return self.head(x.mean(dim=(2, 3)))


def crop_coords(centre, scale, angle=None, flip=None):
    """Working-image coordinates of every crop pixel: [B, CROP_H, CROP_W, 2] (x, y)."""
    return fine.crop_coords(centre, scale, angle, flip, size=(CROP_H, CROP_W))


def scale_from_spacing(spacing):
    return (spacing / SPACING_PX).clamp(SCALE_MIN, SCALE_MAX)


def chain_end_points(centres):
    """The six points spine-cobb reads on a chain of 17 centres [17, 2] (working px), as
    src/inference/xray_level_anchors.cpp does: the place ABOVE_T1[1] spacings above T1, T1,
    T2, L4, L5 and the place BELOW_L5[0] spacings below L5; with each point's spacing (the
    mean of the three gaps at its end) -> (points [6, 2], spacings [6])."""
    c = centres
    top = (c[1:4] - c[:3]).norm(dim=1).mean()
    bottom = (c[14:] - c[13:16]).norm(dim=1).mean()
    points = torch.stack([c[0] + ABOVE_T1[1] * (c[0] - c[1]), c[0], c[1],
                          c[15], c[16], c[16] + BELOW_L5[0] * (c[16] - c[15])])
    return points, torch.stack([top] * 3 + [bottom] * 3)


def level_positions(centres):
    """Reference vertebra centres [N, 17, 2] (working px) -> the 10 anchor levels' centres
    [N, 10, 2] and the local spacing at each end [N, 2] (top, bottom)."""
    d_top = centres[:, 0] - centres[:, 1]      # points up, one spacing long
    d_bot = centres[:, 16] - centres[:, 15]    # points down
    pos = [centres[:, 0] + ABOVE_T1[0] * d_top, centres[:, 0] + ABOVE_T1[1] * d_top,
           centres[:, 0], centres[:, 1], centres[:, 2],
           centres[:, 14], centres[:, 15], centres[:, 16],
           centres[:, 16] + BELOW_L5[0] * d_bot, centres[:, 16] + BELOW_L5[1] * d_bot]
    gaps = (centres[:, 1:] - centres[:, :-1]).norm(dim=-1)
    spacing = torch.stack([gaps[:, :3].mean(dim=1), gaps[:, -3:].mean(dim=1)], dim=1)
    return torch.stack(pos, dim=1), spacing
