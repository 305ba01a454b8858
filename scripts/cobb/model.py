"""Vertebra landmark network: a compact U-Net to stride 4 that outputs, per vertebra
T1..L5, a centre heatmap (17 channels, order fixed by channel) and the four corner
offsets from the centre (8 channels, in units of 16 output pixels)."""
import torch
import torch.nn as nn
import torch.nn.functional as F

from lib.layers import block

N_VERT = 17
OFFSET_SCALE = 16.0


class Context(nn.Module):
    """Residual dilated convolutions at the stride-32 bottleneck (16 x 8 cells of a 512 x 256
    input). Without them a cell sees about half the image's height, too little to count
    vertebrae from T1 or from the sacrum, and the network fell back on where vertebrae
    usually lie in the frame: a whole chain one level off when the framing differs. Dilations
    2, 4, 8 rows reach across all 16 rows. The last batch norm starts at zero so the block is
    the identity until trained (fine-tuning from a model without it starts where that was)."""

    def __init__(self, w):
        super().__init__()
        def conv(d):  # dilated d rows, at most 2 columns (the bottleneck is 8 wide)
            return nn.Conv2d(w, w, 3, padding=(d, min(d, 2)), dilation=(d, min(d, 2)), bias=False)
        last = nn.BatchNorm2d(w)
        nn.init.zeros_(last.weight)
        self.body = nn.Sequential(conv(2), nn.BatchNorm2d(w), nn.ReLU(inplace=True),
                                  conv(4), nn.BatchNorm2d(w), nn.ReLU(inplace=True),
                                  conv(8), last)

    def forward(self, x):
        return F.relu(x + self.body(x))


class LandmarkNet(nn.Module):
    def __init__(self, widths=(16, 32, 64, 96, 128, 160), context: bool = True):
        super().__init__()
        self.context = Context(widths[-1]) if context else nn.Identity()
        self.enc = nn.ModuleList()
        cin = 1
        for w in widths:
            self.enc.append(block(cin, w))
            cin = w
        # decoder back to stride 4 (encoder levels 5, 4, 3 -> indices 4, 3, 2)
        self.dec = nn.ModuleList([
            block(widths[5] + widths[4], widths[4]),
            block(widths[4] + widths[3], widths[3]),
            block(widths[3] + widths[2], widths[2]),
        ])
        self.head = nn.Sequential(nn.Conv2d(widths[2], 64, 3, padding=1), nn.ReLU(inplace=True),
                                  nn.Conv2d(64, N_VERT + 8, 1))

    def forward(self, x):
        skips = []
        for i, e in enumerate(self.enc):
            if i > 0:
                x = F.max_pool2d(x, 2)
            x = e(x)
            if i == len(self.enc) - 1:
                x = self.context(x)
            skips.append(x)
        for d, skip in zip(self.dec, (skips[4], skips[3], skips[2])):
            x = F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False)
            x = d(torch.cat([x, skip], dim=1))
        return self.head(x)


def heatmap_peaks(heat: torch.Tensor):
    """heat [B, K, h, w] -> (x [B,K], y [B,K] in heatmap pixels, peak [B,K]): each map's
    maximum refined by the weighted centroid of the positive heatmap within +-2 pixels
    (the C++ refine_peak)."""
    b, k, h, w = heat.shape
    peak, idx = heat.reshape(b, k, -1).max(dim=2)
    cy = (idx // w).float()
    cx = (idx % w).float()
    ys = torch.arange(h, dtype=torch.float32).view(1, 1, h, 1)
    xs = torch.arange(w, dtype=torch.float32).view(1, 1, 1, w)
    win = ((ys - cy[..., None, None]).abs() <= 2) & ((xs - cx[..., None, None]).abs() <= 2)
    wgt = heat.clamp_min(0) * win
    s = wgt.sum(dim=(2, 3)).clamp_min(1e-6)
    return (wgt * xs).sum(dim=(2, 3)) / s, (wgt * ys).sum(dim=(2, 3)) / s, peak


def decode(out: torch.Tensor):
    """out [B, 25, h, w] -> (centres [B,17,2] in output pixels, corners [B,17,4,2] in
    output pixels, peak [B,17]) using argmax refined by a local weighted centroid."""
    b, _, h, w = out.shape
    rx, ry, peak = heatmap_peaks(out[:, :N_VERT])
    centres = torch.stack([rx, ry], dim=-1)
    # bilinear sample of the offsets at the centres
    grid = torch.stack([(rx + 0.5) / w * 2 - 1, (ry + 0.5) / h * 2 - 1], dim=-1).view(b, N_VERT, 1, 2)
    off = F.grid_sample(out[:, N_VERT:], grid, mode="bilinear", align_corners=False)  # [B,8,17,1]
    off = off[..., 0].permute(0, 2, 1).reshape(b, N_VERT, 4, 2) * OFFSET_SCALE
    corners = centres[:, :, None, :] + off
    return centres, corners, peak
