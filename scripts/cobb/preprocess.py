"""The landmark model's input contract, shared with the C++ loader (spine-cobb):
grey image -> bilinear resize (half-pixel centres, no antialiasing) to 1024 x 512 (H x W)
-> 2 x 2 average pooling to 512 x 256 -> z-score over the image.
Landmark coordinates map as x_in = (x + 0.5) * 256 / W - 0.5 (same for y with 512 / H).
"""
import numpy as np
import torch
import torch.nn.functional as F

CACHE_H, CACHE_W = 1024, 512
INPUT_H, INPUT_W = 512, 256
STRIDE = 4  # output heatmaps are 128 x 64


def resize_to_cache(grey: np.ndarray) -> torch.Tensor:
    """uint8/float H x W -> float32 1024 x 512 (values kept in the original range)."""
    t = torch.from_numpy(np.asarray(grey, dtype=np.float32))[None, None]
    return F.interpolate(t, size=(CACHE_H, CACHE_W), mode="bilinear", align_corners=False)[0, 0]


def cache_to_input(cached: torch.Tensor) -> torch.Tensor:
    """[..., 1024, 512] -> [..., 512, 256] z-scored per image."""
    shape = cached.shape
    x = cached.reshape(-1, 1, CACHE_H, CACHE_W)
    x = F.avg_pool2d(x, 2)
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    std = x.std(dim=(1, 2, 3), unbiased=False, keepdim=True).clamp_min(1e-6)
    x = (x - mean) / std
    return x.reshape(*shape[:-2], INPUT_H, INPUT_W)


def from_input_coords(points: np.ndarray, width: int, height: int) -> np.ndarray:
    out = np.array(points, dtype=np.float64)
    out[..., 0] = (out[..., 0] + 0.5) * width / INPUT_W - 0.5
    out[..., 1] = (out[..., 1] + 0.5) * height / INPUT_H - 0.5
    return out


def to_cache_coords(points, width: int, height: int):
    """Image pixels -> working-image (1024 x 512) pixels, half-pixel centres (arrays or tensors)."""
    out = points.clone() if hasattr(points, "clone") else np.array(points, dtype=np.float64)
    out[..., 0] = (out[..., 0] + 0.5) * CACHE_W / width - 0.5
    out[..., 1] = (out[..., 1] + 0.5) * CACHE_H / height - 0.5
    return out


def from_cache_coords(points, width: int, height: int) -> np.ndarray:
    """Working-image pixels -> image pixels (float64 array)."""
    out = np.array(points, dtype=np.float64)
    out[..., 0] = (out[..., 0] + 0.5) * width / CACHE_W - 0.5
    out[..., 1] = (out[..., 1] + 0.5) * height / CACHE_H - 0.5
    return out
