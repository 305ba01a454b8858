#!/usr/bin/python3
"""The same four models as spine-cobb, driven from Python (eager PyTorch): decode the
image, the spine finder on its letterbox (T1 / L5 peaks, crop when the spine fills less
than the image), resize, pool, z-score, first stage on the image and its mirror (flip
averaging), decode, the level anchors' six crops at the chain's ends and their mirrors
(the re-count itself, arithmetic on 17 points, is left out), 17 vertebra crops, second
stage on them and their mirrors (skipped, as in spine-cobb, where the finder sees
hardware), decode,
AASCE angles, cobb.json per image. The sequence constraint is left out (it costs
well under a millisecond in C++). Prints the mean seconds per image; loading the model
is not counted, as in spine-cobb. PRECISION (default fp32, as spine-cobb's) picks the
two landmark stages' files as spine-cobb --precision does: the int8 copies run as the
TorchScript they are (frozen, as spine-cobb freezes them), the float ones as eager networks.
READING (default all) is spine-cobb's --ensemble-reading: split gives each float stage's
two networks one side of the film each, split-corners does so in the corner stage only
(the int8 copies, one graph each, read both sides whole, as in spine-cobb).
Usage: /usr/bin/python3 scripts/bench_cobb.py LISTFILE OUTDIR THREADS [fp32|int8] [all|split|split-corners]"""
import json
import os
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from cobb import anchors, data, fine, preprocess  # noqa: E402
from cobb.angles import aasce_angles  # noqa: E402
from cobb.model import N_VERT, LandmarkNet, decode  # noqa: E402
from cobb.networks import eager, flip_average, sides  # noqa: E402
import train_spine_finder as finder_lib  # noqa: E402


class Frozen(torch.nn.Module):
    """A quantized TorchScript model, frozen; its dequantized output made contiguous."""

    def __init__(self, path):
        super().__init__()
        self.model = torch.jit.freeze(torch.jit.load(path).eval())

    def forward(self, x):
        return self.model(x).contiguous()


def main():
    listfile, out, threads = sys.argv[1], sys.argv[2], int(sys.argv[3])
    precision = sys.argv[4] if len(sys.argv) > 4 else "fp32"
    reading = sys.argv[5] if len(sys.argv) > 5 else "all"
    if reading not in ("all", "split", "split-corners"):
        sys.exit(f"READING must be all, split or split-corners (got {reading})")
    torch.set_num_threads(threads)
    if precision == "int8":
        torch.backends.quantized.engine = "onednn"  # as spine-cobb (scripts/quantize_cobb.py)
        model, corner_model = Frozen("models/xray-landmarks-int8.pt"), Frozen("models/xray-corners-int8.pt")
    else:
        # 1.0.0 had no context block
        model = eager("models/xray-landmarks.pt", lambda w: LandmarkNet(context=any(k.startswith("context.") for k in w)))
        corner_model = eager("models/xray-corners.pt", lambda w: fine.CornerNet())
    anchor_model = anchors.AnchorNet()
    anchor_model.load_state_dict(torch.jit.load("models/xray-level-anchors.pt").state_dict())
    anchor_model.eval()
    finder = finder_lib.FinderNet()
    finder.load_state_dict(torch.jit.load("models/xray-spine-finder.pt").state_dict())
    finder.eval()
    paths = [l.strip() for l in open(listfile) if l.strip()]
    os.makedirs(out, exist_ok=True)
    t0 = time.time()
    for p in paths:
        grey = data.load_grey(p)
        with torch.no_grad():
            x, scale, ox, oy = finder_lib.letterbox(grey.astype("float32"))
            fout = finder(torch.from_numpy(x)[None, None])
            t1, l5 = finder_lib.decode(fout)[0][0]
            # SpineFinderOptions: 3 or more output pixels over 0.5 are hardware in view.
            hardware = int((fout[0, 3] > 0.5).sum()) >= 3
            to_img = lambda q: (((q[0] + 0.5) * 4 - ox) / scale[0], ((q[1] + 0.5) * 4 - oy) / scale[1])
            (x1, y1), (x2, y2) = to_img(t1.tolist()), to_img(l5.tolist())
            length = max(1.0, ((x2 - x1) ** 2 + (y2 - y1) ** 2) ** 0.5)
            box = [max(0, int((x1 + x2) / 2 - 0.21 * length)), max(0, int(y1 - 0.04 * length)),
                   min(grey.shape[1], int((x1 + x2) / 2 + 0.21 * length) + 1), min(grey.shape[0], int(y2 + 0.09 * length) + 1)]
            if (box[2] - box[0]) * (box[3] - box[1]) < 0.75 * grey.size and box[2] > box[0] + 16 and box[3] > box[1] + 32:
                grey = grey[box[1]:box[3], box[0]:box[2]]
        h, w = grey.shape
        with torch.no_grad():
            working = preprocess.resize_to_cache(grey)[None]
            x = preprocess.cache_to_input(working)[:, None]
            _, corners, peak = decode(flip_average(model, x, split=reading == "split"))
            first = (corners[0] + 0.5) * preprocess.STRIDE * 2 - 0.5  # output -> input -> working px
            ends, spacing = anchors.chain_end_points(first.mean(dim=1))
            crops = fine.sample_crops(working[None].expand(6, 1, -1, -1),
                                      anchors.crop_coords(ends, anchors.scale_from_spacing(spacing)))
            _ = (anchor_model(crops) + anchor_model(crops.flip(-1))) / 2
            image_net, mirror_net = sides(corner_model, reading != "all")
            refined = first if hardware else fine.refine_corners(
                image_net, working[None].expand(N_VERT, 1, -1, -1), first, flip_average=True, mirror_model=mirror_net)[0]
        pts = preprocess.from_cache_coords(refined.reshape(68, 2).numpy(), w, h)
        a = aasce_angles(pts, h)
        name = os.path.splitext(os.path.basename(p))[0]
        with open(os.path.join(out, name + ".json"), "w") as f:
            json.dump({"study": name, "angles_deg": dict(zip(("pt", "mt", "tl"), a.tolist())),
                       "landmarks_px": pts.tolist(), "confidence": peak[0].tolist()}, f)
    print(f"python ({precision}): {(time.time() - t0) / len(paths):.3f} s per image over {len(paths)} images")


if __name__ == "__main__":
    main()
