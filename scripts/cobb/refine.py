"""Second stage: per-vertebra corner refinement on crops of the 1024 x 512 working image.

Crop contract (mirrored in src/inference/xray_landmarks.cpp): a square of half-size
`half` working pixels around `centre`, rotated by `angle` radians, sampled bilinearly
(zero padding, half-pixel centres) into CROP x CROP pixels, then z-scored per crop.
Crop pixel (i, j) samples the working-image point centre + half * R(angle) (u, v) with
u = (j + 0.5) / CROP * 2 - 1 and v = (i + 0.5) / CROP * 2 - 1. The network regresses
the four corners as (u, v) in that frame.
"""
import torch
import torch.nn as nn
import torch.nn.functional as F

CROP = 80
HALF_FACTOR = 1.1  # crop half-size in units of the local vertebra spacing


def crop_grid(centres, half, angle, h, w):
    """centres [N,2] (x,y working px), half [N], angle [N] -> grid [N,CROP,CROP,2] for grid_sample."""
    n = centres.shape[0]
    t = (torch.arange(CROP, dtype=torch.float32) + 0.5) / CROP * 2 - 1
    v, u = torch.meshgrid(t, t, indexing="ij")
    cos, sin = torch.cos(angle).view(n, 1, 1), torch.sin(angle).view(n, 1, 1)
    hs = half.view(n, 1, 1)
    px = centres[:, 0].view(n, 1, 1) + hs * (cos * u - sin * v)
    py = centres[:, 1].view(n, 1, 1) + hs * (sin * u + cos * v)
    return torch.stack([(px + 0.5) / w * 2 - 1, (py + 0.5) / h * 2 - 1], dim=-1)


def sample_crops(image, centres, half, angle):
    """image [H,W] float working image; returns [N,1,CROP,CROP] z-scored crops."""
    h, w = image.shape
    grid = crop_grid(centres, half, angle, h, w)
    src = image[None, None].expand(centres.shape[0], 1, h, w)
    crops = F.grid_sample(src, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    mean = crops.mean(dim=(1, 2, 3), keepdim=True)
    std = crops.std(dim=(1, 2, 3), unbiased=False, keepdim=True).clamp_min(1e-6)
    return (crops - mean) / std


def to_crop_frame(points, centres, half, angle):
    """points [N,4,2] working px -> (u, v) crop coordinates."""
    d = points - centres[:, None, :]
    cos, sin = torch.cos(angle)[:, None], torch.sin(angle)[:, None]
    u = (cos * d[..., 0] + sin * d[..., 1]) / half[:, None]
    v = (-sin * d[..., 0] + cos * d[..., 1]) / half[:, None]
    return torch.stack([u, v], dim=-1)


def from_crop_frame(uv, centres, half, angle):
    cos, sin = torch.cos(angle)[:, None], torch.sin(angle)[:, None]
    x = centres[:, None, 0] + half[:, None] * (cos * uv[..., 0] - sin * uv[..., 1])
    y = centres[:, None, 1] + half[:, None] * (sin * uv[..., 0] + cos * uv[..., 1])
    return torch.stack([x, y], dim=-1)


def local_spacing(centres):
    """centres [17,2] -> [17] mean distance to the neighbouring centres."""
    d = (centres[1:] - centres[:-1]).norm(dim=1)
    s = torch.empty(centres.shape[0])
    s[0], s[-1] = d[0], d[-1]
    s[1:-1] = (d[1:] + d[:-1]) / 2
    return s


def conv(cin, cout):
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class CornerNet(nn.Module):
    """80 x 80 crop -> 8 numbers: the four corners (TL, TR, BL, BR) as (u, v)."""

    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(
            conv(1, 16), conv(16, 16), nn.MaxPool2d(2),      # 40
            conv(16, 32), conv(32, 32), nn.MaxPool2d(2),     # 20
            conv(32, 64), conv(64, 64), nn.MaxPool2d(2),     # 10
            conv(64, 96), conv(96, 96), nn.MaxPool2d(2),     # 5
            conv(96, 64))
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(64 * 5 * 5, 256), nn.ReLU(inplace=True), nn.Linear(256, 8))

    def forward(self, x):
        return self.head(self.features(x)).view(-1, 4, 2)
