#!/usr/bin/python3
"""Builds the small TorchScript models the test suite loads (deterministic, seconds):
  pointwise2d.pt / pointwise3d.pt  fully convolutional 1x1 models with a valid card
  wrong_task.pt                    the same 2D model whose card names another task
  no_card.pt                       a model without model_card.json
  card_only.pt                     a zip archive laid out as a model, with a valid card but no
                                   TorchScript code or weights
  nan_landmarks.pt                 an 'xray-ap-landmarks' model whose output is all NaN
  empty_landmarks.pt               an 'xray-ap-landmarks' model whose output is empty
Usage: /usr/bin/python3 scripts/make_test_models.py OUTDIR
"""
import json
import os
import sys
import zipfile

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from lib.model_card import save_with_card  # noqa: E402


class Pointwise(torch.nn.Module):
    """1x1 convolutions only, so sliding-window and whole-image inference must agree."""

    def __init__(self, dims: int, channels_in: int = 1, channels_out: int = 3):
        super().__init__()
        conv = torch.nn.Conv2d if dims == 2 else torch.nn.Conv3d
        self.a = conv(channels_in, 8, 1)
        self.b = conv(8, channels_out, 1)

    def forward(self, x):
        return self.b(torch.tanh(self.a(x)))


class Damaged(torch.nn.Module):
    """A landmark-shaped model gone wrong: NaN weights, or an output with no pixels."""

    def __init__(self, empty: bool):
        super().__init__()
        self.conv = torch.nn.Conv2d(1, 25, 1)
        self.empty = empty
        if not empty:
            with torch.no_grad():
                self.conv.weight.fill_(float("nan"))

    def forward(self, x):
        y = self.conv(x[:, :, ::4, ::4])
        if self.empty:
            return y[:, :, :0, :0]
        return y


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


def write_xray_contract_fixture(out):
    """An 8-bit radiograph-like PNG with the landmark model's input computed by the Python
    preprocessing, and a random model output with its Python decoding, so the C++ side can
    be held equal to both (tests/unit/test_xray_contract.cpp)."""
    import numpy as np
    from PIL import Image

    from cobb import preprocess
    from cobb.model import decode

    rng = np.random.default_rng(5)
    h, w = 733, 301
    yy, xx = np.mgrid[0:h, 0:w]
    img = (120 + 60 * np.sin(xx / 17.0) * np.cos(yy / 29.0) + rng.normal(0, 10, (h, w))).clip(0, 255).astype(np.uint8)
    Image.fromarray(img).save(os.path.join(out, "xray_contract.png"))
    x = preprocess.cache_to_input(preprocess.resize_to_cache(img)[None])[0]
    x.numpy().astype("<f4").tofile(os.path.join(out, "xray_contract_input.f32"))
    g = torch.Generator().manual_seed(3)
    output = torch.rand(1, 25, 128, 64, generator=g) * 0.2
    for v in range(17):  # one clear peak per vertebra, top to bottom
        output[0, v, 5 + 7 * v, 20 + v] = 0.9
    output[0, 17:] = torch.randn(1, 8, 128, 64, generator=g) * 0.3
    output.numpy().astype("<f4").tofile(os.path.join(out, "xray_contract_output.f32"))
    _, corners, peak = decode(output)
    c_in = (corners[0].reshape(68, 2).numpy() + 0.5) * preprocess.STRIDE - 0.5
    pts = preprocess.from_input_coords(c_in, w, h)
    pts.astype("<f8").tofile(os.path.join(out, "xray_contract_points.f64"))
    peak[0].numpy().astype("<f8").tofile(os.path.join(out, "xray_contract_peaks.f64"))

    # Second stage: crops around 17 plausible vertebrae (two of them partly outside the
    # image), and a random corner-heatmap output with its decoding back to image pixels.
    from cobb import fine
    t = np.linspace(0, 1, 17)
    cx, cy = 150 + 40 * np.sin(3 * t), 60 + 640 * t
    half_w, half_h = 30 + 10 * t, 12 + 5 * t
    tilt = 0.2 * np.cos(4 * t)
    cx[0], cy[16] = 10.0, 725.0
    pts = np.zeros((17, 4, 2))
    for k, (sx, sy) in enumerate([(-1, -1), (1, -1), (-1, 1), (1, 1)]):
        pts[:, k, 0] = cx + sx * half_w - sy * half_h * tilt
        pts[:, k, 1] = cy + sy * half_h + sx * half_w * tilt
    pts = pts.reshape(68, 2)
    pts.astype("<f8").tofile(os.path.join(out, "xray_corner_points.f64"))
    working = preprocess.resize_to_cache(img)[None, None]
    c = preprocess.to_cache_coords(torch.tensor(pts, dtype=torch.float32), w, h).view(17, 4, 2)
    crops, centre, scale = fine.vertebra_crops(working.expand(17, 1, -1, -1), c)
    crops.numpy().astype("<f4").tofile(os.path.join(out, "xray_corner_crops.f32"))
    heat = torch.rand(17, 4, fine.FINE_H, fine.FINE_W, generator=g) * 0.2
    for v in range(17):
        for k in range(4):
            heat[v, k, 10 + 5 * (k // 2) + v % 3, 12 + 30 * (k % 2) + v % 5] = 0.8
    heat[3, 2] *= 0.1  # no clear peak: this corner keeps its first-stage position
    heat.numpy().astype("<f4").tofile(os.path.join(out, "xray_corner_heat.f32"))
    wpts, _ = fine.corners_from_heatmaps(heat, centre, scale)
    refined = preprocess.from_cache_coords(wpts.reshape(68, 2).numpy(), w, h)
    refined[4 * 3 + 2] = pts[4 * 3 + 2]
    refined.astype("<f8").tofile(os.path.join(out, "xray_corner_refined.f64"))

    # Level anchor crops at four points of the working image (one near its edge, where the
    # crop runs off it), with their chain spacings (working pixels): x, y, spacing.
    from cobb import anchors
    apts = np.array([[256.0, 300.0, 30.0], [40.5, 980.0, 55.0], [300.25, 512.75, 3.0], [256.0, 100.0, 200.0]])
    apts.astype("<f8").tofile(os.path.join(out, "xray_anchor_points.f64"))
    ac = torch.tensor(apts, dtype=torch.float32)
    acoords = anchors.crop_coords(ac[:, :2], anchors.scale_from_spacing(ac[:, 2]))
    acrops = fine.sample_crops(working.expand(4, 1, -1, -1), acoords)
    acrops.numpy().astype("<f4").tofile(os.path.join(out, "xray_anchor_crops.f32"))

    # The spine finder's letterbox input of the same image.
    import train_spine_finder
    x, _, _, _ = train_spine_finder.letterbox(img.astype(np.float32))
    x.astype("<f4").tofile(os.path.join(out, "finder_contract_input.f32"))


def main():
    if sys.argv[1:] in (["-h"], ["--help"]):
        print(__doc__)
        return
    if len(sys.argv) != 2 or sys.argv[1].startswith("-"):
        # An option taken for OUTDIR would become a folder named after it.
        sys.exit("usage: make_test_models.py OUTDIR")
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    torch.manual_seed(0)
    for dims in (2, 3):
        m = torch.jit.script(Pointwise(dims).eval())
        save_with_card(m, card(dims), os.path.join(out, f"pointwise{dims}d.pt"))
    m = torch.jit.script(Pointwise(2).eval())
    save_with_card(m, card(2, task="another-task"), os.path.join(out, "wrong_task.pt"))
    torch.jit.save(m, os.path.join(out, "no_card.pt"))
    with zipfile.ZipFile(os.path.join(out, "card_only.pt"), "w") as z:
        z.writestr("card_only/extra/model_card.json", json.dumps(card(2)))
    for empty, name in ((False, "nan_landmarks.pt"), (True, "empty_landmarks.pt")):
        c = card(2, task="xray-ap-landmarks")
        c.update(name=name[:-3], modality="xray", classes=[], patch_size=[256, 512])
        save_with_card(torch.jit.script(Damaged(empty).eval()), c, os.path.join(out, name))
    write_xray_contract_fixture(out)
    print(f"test models written to {out}")


if __name__ == "__main__":
    main()
