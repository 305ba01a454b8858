"""Second stage of the frontal-radiograph landmarks: one vertebra's four corners from a
crop around it, at the working image's full resolution (1024 x 512), where the first
stage sees it pooled to 512 x 256 and decodes at stride 4.

Crop contract (shared with src/inference/xray_landmarks.cpp, held equal by
tests/unit/test_xray_contract.cpp): a CROP_H x CROP_W grid centred on the vertebra's
estimated centre (cx, cy) in working-image pixels, its pixel (u, v) sampled at
    x = cx + s * (u - (CROP_W - 1) / 2),   y = cy + s * (v - (CROP_H - 1) / 2)
with s = estimated vertebra width / VERT_W (so every vertebra appears about VERT_W crop
pixels wide), bilinear with zero padding outside the image, then z-scored over the crop.
The network outputs 4 corner heatmaps (TL, TR, BL, BR) at stride FINE_STRIDE.
"""
import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from lib.layers import block

from .model import heatmap_peaks

CROP_H, CROP_W = 80, 128
VERT_W = 80.0
FINE_STRIDE = 2
FINE_H, FINE_W = CROP_H // FINE_STRIDE, CROP_W // FINE_STRIDE
SCALE_MIN, SCALE_MAX = 0.3, 4.0


class CornerNet(nn.Module):
    """U-Net, encoder to stride 16, decoder back to stride 2; 4 corner heatmaps."""

    def __init__(self, widths=(12, 24, 48, 96, 128), dec=(96, 48, 32)):
        super().__init__()
        self.enc = nn.ModuleList()
        cin = 1
        for w in widths:
            self.enc.append(block(cin, w))
            cin = w
        self.dec = nn.ModuleList([
            block(widths[4] + widths[3], dec[0]),
            block(dec[0] + widths[2], dec[1]),
            block(dec[1] + widths[1], dec[2]),
        ])
        self.head = nn.Conv2d(dec[2], 4, 1)

    def forward(self, x):
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


def crop_scale(corners):
    """corners [..., 4, 2] (TL, TR, BL, BR) in working pixels -> crop scale s [...]:
    the mean of the top and bottom endplate widths over VERT_W, clamped."""
    top = (corners[..., 1, :] - corners[..., 0, :]).norm(dim=-1)
    bottom = (corners[..., 3, :] - corners[..., 2, :]).norm(dim=-1)
    return ((top + bottom) / 2 / VERT_W).clamp(SCALE_MIN, SCALE_MAX)


def crop_coords(centre, scale, angle=None, flip=None, size=(CROP_H, CROP_W)):
    """Working-image coordinates of every crop pixel: [B, H, W, 2] (x, y) for a crop of
    size (H, W) (this stage's by default; the level anchors' crops use the same grid).
    centre [B,2], scale [B]; optional rotation angle [B] (radians) and mirror flags [B]
    (training augmentation only)."""
    b = centre.shape[0]
    h, w = size
    u = torch.arange(w, dtype=torch.float32) - (w - 1) / 2
    v = torch.arange(h, dtype=torch.float32) - (h - 1) / 2
    uu = u.view(1, 1, w).expand(b, h, w)
    vv = v.view(1, h, 1).expand(b, h, w)
    if flip is not None:
        uu = torch.where(flip.view(b, 1, 1), -uu, uu)
    if angle is not None:
        c, s = torch.cos(angle).view(b, 1, 1), torch.sin(angle).view(b, 1, 1)
        uu, vv = c * uu - s * vv, s * uu + c * vv
    sc = scale.view(b, 1, 1)
    return torch.stack([centre[:, 0].view(b, 1, 1) + sc * uu, centre[:, 1].view(b, 1, 1) + sc * vv], dim=-1)


def to_crop(points, centre, scale, angle=None, flip=None):
    """Inverse of crop_coords for points [B, K, 2] in working pixels -> crop pixels."""
    d = (points - centre[:, None, :]) / scale.view(-1, 1, 1)
    if angle is not None:
        c, s = torch.cos(angle).view(-1, 1), torch.sin(angle).view(-1, 1)
        d = torch.stack([c * d[..., 0] + s * d[..., 1], -s * d[..., 0] + c * d[..., 1]], dim=-1)
    if flip is not None:
        d = torch.stack([torch.where(flip.view(-1, 1), -d[..., 0], d[..., 0]), d[..., 1]], dim=-1)
    return d + torch.tensor([(CROP_W - 1) / 2, (CROP_H - 1) / 2])


def sample_raw(images, coords):
    """images float [B,1,H,W] (working images, raw intensities), coords [B,ch,cw,2] ->
    [B,1,ch,cw], bilinear with zero padding."""
    h, w = images.shape[-2:]
    grid = torch.stack([(coords[..., 0] + 0.5) / w * 2 - 1, (coords[..., 1] + 0.5) / h * 2 - 1], dim=-1)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def zscore(x):
    """[B,1,ch,cw] z-scored per crop."""
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    std = x.std(dim=(1, 2, 3), unbiased=False, keepdim=True).clamp_min(1e-6)
    return (x - mean) / std


def sample_crops(images, coords):
    """The model's input: sample_raw, z-scored per crop."""
    return zscore(sample_raw(images, coords))


def vertebra_crops(images, corners):
    """Inference crops. images float [B,1,H,W] (working images, one per vertebra; expand
    or repeat to match), corners [B,4,2] first-stage corners in working pixels ->
    (crops [B,1,CROP_H,CROP_W], centre [B,2], scale [B])."""
    centre, scale = corners.mean(dim=1), crop_scale(corners)
    return sample_crops(images, crop_coords(centre, scale)), centre, scale


def corners_from_heatmaps(heat, centre, scale):
    """Heatmaps [B,4,FINE_H,FINE_W] of crops made by vertebra_crops -> (corners [B,4,2] in
    working pixels, peaks [B,4])."""
    pts, peak = decode_fine(heat)
    off = torch.tensor([(CROP_W - 1) / 2, (CROP_H - 1) / 2])
    return centre[:, None, :] + scale.view(-1, 1, 1) * (pts - off), peak


MIRROR = [1, 0, 3, 2]  # corner order after a horizontal mirror


def refine_corners(model, images, corners, flip_average=False, mirror_model=None):
    """The second stage on vertebrae: images [B,1,H,W], corners [B,4,2] (working pixels)
    -> refined corners [B,4,2] and peaks [B,4]. flip_average: average the heatmaps with
    those of the mirrored crops (as spine-cobb does by default), read by mirror_model when
    given (spine-cobb's --ensemble-reading split: scripts/cobb/networks.py, sides())."""
    crops, centre, scale = vertebra_crops(images, corners)
    with torch.no_grad():
        heat = model(crops)
        if flip_average:
            heat = (heat + (mirror_model or model)(crops.flip(-1)).flip(-1)[:, MIRROR]) / 2
    return corners_from_heatmaps(heat, centre, scale)


def decode_fine(out):
    """out [B,4,FINE_H,FINE_W] -> (corners [B,4,2] in crop pixels, peaks [B,4]): argmax
    refined by the weighted centroid of the positive heatmap within +-2 output pixels."""
    rx, ry, peak = heatmap_peaks(out)
    pts = torch.stack([(rx + 0.5) * FINE_STRIDE - 0.5, (ry + 0.5) * FINE_STRIDE - 0.5], dim=-1)
    return pts, peak


def heat_targets(crop_pts, sigma=1.5):
    """crop_pts [B,4,2] in crop pixels -> target heatmaps [B,4,FINE_H,FINE_W]."""
    p = (crop_pts + 0.5) / FINE_STRIDE - 0.5
    ys = torch.arange(FINE_H, dtype=torch.float32).view(1, 1, FINE_H, 1)
    xs = torch.arange(FINE_W, dtype=torch.float32).view(1, 1, 1, FINE_W)
    d2 = (xs - p[..., 0, None, None]) ** 2 + (ys - p[..., 1, None, None]) ** 2
    return torch.exp(-d2 / (2 * sigma ** 2))


def random_crop_params(corners, rng):
    """Training crop parameters from reference corners [B,4,2]: centre jittered, scale
    off by up to 15 %, rotation +-12 degrees, half mirrored (as the first stage errs)."""
    b = corners.shape[0]
    centre = corners.mean(dim=1)
    jitter = torch.tensor(rng.normal(0, 5.0, (b, 2)), dtype=torch.float32).clamp(-15, 15)
    scale = crop_scale(corners) * torch.tensor(rng.uniform(0.85, 1.15, b), dtype=torch.float32)
    angle = torch.tensor(rng.uniform(-12, 12, b) * math.pi / 180, dtype=torch.float32)
    flip = torch.tensor(rng.uniform(0, 1, b) < 0.5)
    return centre + jitter, scale.clamp(SCALE_MIN, SCALE_MAX), angle, flip
