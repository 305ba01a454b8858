"""2.5D U-Net for sagittal slices: input 3 neighbouring slices, output per pixel
3 structure logits (background, vertebra, disc) and one logit per vertebral level."""
import torch
import torch.nn as nn
import torch.nn.functional as F

from lib.layers import block


class SliceUNet(nn.Module):
    def __init__(self, in_channels=3, n_levels=7, widths=(16, 32, 64, 128, 160, 192)):
        super().__init__()
        self.enc = nn.ModuleList()
        cin = in_channels
        for w in widths:
            self.enc.append(block(cin, w))
            cin = w
        self.dec = nn.ModuleList()
        for i in range(len(widths) - 1, 0, -1):
            self.dec.append(block(widths[i] + widths[i - 1], widths[i - 1]))
        self.head = nn.Conv2d(widths[0], 3 + n_levels, 1)

    def forward(self, x):
        skips = []
        for i, e in enumerate(self.enc):
            if i > 0:
                x = F.max_pool2d(x, 2)
            x = e(x)
            skips.append(x)
        for j, d in enumerate(self.dec):
            skip = skips[len(skips) - 2 - j]
            x = F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False)
            x = d(torch.cat([x, skip], dim=1))
        return self.head(x)
