#!/usr/bin/python3
"""Builds the small TorchScript models the test suite loads (deterministic, seconds):
  pointwise2d.pt / pointwise3d.pt  fully convolutional 1x1 models with a valid card
  wrong_task.pt                    the same 2D model whose card names another task
  no_card.pt                       a model without model_card.json
Usage: /usr/bin/python3 scripts/make_test_models.py OUTDIR
"""
import json
import os
import sys

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))
from model_card import save_with_card  # noqa: E402


class Pointwise(torch.nn.Module):
    """1x1 convolutions only, so sliding-window and whole-image inference must agree."""

    def __init__(self, dims: int, channels_in: int = 1, channels_out: int = 3):
        super().__init__()
        conv = torch.nn.Conv2d if dims == 2 else torch.nn.Conv3d
        self.a = conv(channels_in, 8, 1)
        self.b = conv(8, channels_out, 1)

    def forward(self, x):
        return self.b(torch.tanh(self.a(x)))


def card(dims, task="test-pointwise"):
    return {
        "name": f"test-pointwise-{dims}d",
        "version": "1.0.0",
        "task": task,
        "modality": "any",
        "dimension": dims,
        "input_channels": 1,
        "patch_size": [32] * dims,
        "input_spacing_mm": [],
        "normalisation": {"method": "none"},
        "classes": [{"label": i, "name": f"channel {i}"} for i in range(3)],
        "training_data": "none: random weights for tests",
        "validation": {},
    }


def main():
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    torch.manual_seed(0)
    for dims in (2, 3):
        m = torch.jit.script(Pointwise(dims).eval())
        save_with_card(m, card(dims), os.path.join(out, f"pointwise{dims}d.pt"))
    m = torch.jit.script(Pointwise(2).eval())
    save_with_card(m, card(2, task="another-task"), os.path.join(out, "wrong_task.pt"))
    torch.jit.save(m, os.path.join(out, "no_card.pt"))
    print(f"test models written to {out}")


if __name__ == "__main__":
    main()
