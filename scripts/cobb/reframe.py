"""Frontal radiographs as they come, made from the AASCE crops with known landmarks:
the tight T1..L5 crop placed in a full-length film with synthetic surroundings (lungs and
ribs continued to the sides, body outline, neck and cervical column, skull, clavicles and
shoulders, arms, pelvis, sacrum, femoral heads), then what films carry: padding, burnt-in
text, rulers, side markers, stitching seams, rotation, inverted polarity, exposure,
noise, low resolution; and spinal hardware (rods and pedicle screws) drawn on the spine.

Used to train the spine finder (scripts/train_spine_finder.py) and, with fixed seeds, to
measure how spine-cobb holds on re-framed validation images (scripts/eval_cobb_reframed.py).
Everything is synthetic around a real image: figures measured on it are labelled synthetic.
"""
import math

import numpy as np
from PIL import Image, ImageDraw, ImageFont


def _box(a: np.ndarray, r: int, axis: int) -> np.ndarray:
    """Mean over a window of 2r+1 along one axis (edges repeated)."""
    pad = [(0, 0), (0, 0)]
    pad[axis] = (r + 1, r)
    c = np.cumsum(np.pad(a, pad, mode="edge"), axis=axis, dtype=np.float64)
    n = a.shape[axis]
    hi = np.take(c, np.arange(2 * r + 1, 2 * r + 1 + n), axis=axis)
    lo = np.take(c, np.arange(0, n), axis=axis)
    return ((hi - lo) / (2 * r + 1)).astype(np.float32)


def _blur(a: np.ndarray, radius: float) -> np.ndarray:
    """About a Gaussian of sd `radius` pixels: two box passes per axis."""
    r = int(round(radius * 0.9))
    if r < 1:
        return a.astype(np.float32)
    out = a.astype(np.float32)
    for _ in range(2):
        out = _box(_box(out, r, 0), r, 1)
    return out


def _layer(shape):
    return Image.new("F", (shape[1], shape[0]), 0.0)


def _smooth_noise(shape, rng, scale, amp):
    """Low-frequency texture: noise at 1/scale resolution, upsampled and blurred."""
    h, w = max(2, int(shape[0] / scale)), max(2, int(shape[1] / scale))
    small = rng.normal(0, 1, (h, w)).astype(np.float32)
    big = np.asarray(Image.fromarray(small, mode="F").resize((shape[1], shape[0]), Image.BILINEAR))
    return amp * big


def spine_geometry(points: np.ndarray):
    """points [68,2] -> dict: T1 top centre, L5 bottom centre, length L, mean vertebra
    width, per-vertebra centres [17,2]."""
    c = points.reshape(17, 4, 2)
    top = c[0, :2].mean(axis=0)
    bottom = c[16, 2:].mean(axis=0)
    width = float(np.mean(np.hypot(*(c[:, 1] - c[:, 0]).T)))
    return {"top": top, "bottom": bottom, "length": float(np.hypot(*(bottom - top))),
            "width": width, "centres": c.mean(axis=1)}


def draw_hardware(img: np.ndarray, points: np.ndarray, rng, level=1.0):
    """Draws posterior instrumentation on the spine (in place): two rods along the pedicle
    lines over 5..14 vertebrae and a pedicle screw per instrumented vertebra, as metal
    looks on a radiograph (brighter than any bone). Returns the hardware mask (bool)."""
    c = points.reshape(17, 4, 2)
    n = int(rng.integers(5, 15))
    first = int(rng.integers(0, 17 - n + 1))
    verts = range(first, first + n)
    width = float(np.mean(np.hypot(*(c[:, 1] - c[:, 0]).T)))
    lay = _layer(img.shape)
    d = ImageDraw.Draw(lay)
    rod_w = max(2, int(round(width * rng.uniform(0.08, 0.14))))
    inset = rng.uniform(0.15, 0.3)
    kinds = rng.uniform()
    for side in (0, 1):
        line = []
        for v in verts:
            top = c[v, side] * (1 - inset) + c[v, 1 - side] * inset
            bot = c[v, 2 + side] * (1 - inset) + c[v, 3 - side] * inset
            line += [tuple(top), tuple(bot)]
        if kinds < 0.85 or side == 0:   # sometimes one rod only
            d.line(line, fill=1.0, width=rod_w, joint="curve")
        for v in verts:
            if rng.uniform() < 0.2:
                continue
            centre = (c[v, side] + c[v, 2 + side]) / 2 * (1 - inset) + (c[v, 1 - side] + c[v, 3 - side]) / 2 * inset
            mid = c[v].mean(axis=0)
            direction = mid - centre
            direction /= max(1e-6, np.hypot(*direction))
            tip = centre + direction * width * rng.uniform(0.25, 0.4)
            d.line([tuple(centre), tuple(tip)], fill=1.0, width=max(2, int(rod_w * 0.9)))
            r = rod_w * rng.uniform(0.9, 1.4)
            d.ellipse([centre[0] - r, centre[1] - r, centre[0] + r, centre[1] + r], fill=1.0)
    if rng.uniform() < 0.3:   # cross-links
        v = int(rng.choice(list(verts)))
        mid_l = (c[v, 0] + c[v, 2]) / 2
        mid_r = (c[v, 1] + c[v, 3]) / 2
        d.line([tuple(mid_l), tuple(mid_r)], fill=1.0, width=rod_w)
    mask = np.asarray(lay) > 0.5
    metal = float(np.percentile(img, 99.7)) * rng.uniform(1.0, 1.15) * level
    metal = max(metal, float(img.max()) * 0.97)
    soft = _blur(np.asarray(lay), 0.6)
    img[:] = img * (1 - soft) + metal * soft
    return mask


def surround(crop: np.ndarray, points: np.ndarray, rng, aspect=None, up=None, down=None):
    """Places the crop (float, 0..1, H x W) in a full-length film with synthetic anatomy
    around it. Returns (film, points in film pixels)."""
    H, W = crop.shape
    g = spine_geometry(points)
    L = g["length"]
    vw = g["width"]
    cx = float(np.median(g["centres"][:, 0]))
    up = rng.uniform(0.05, 0.55) * L if up is None else up * L
    down = rng.uniform(0.05, 0.7) * L if down is None else down * L
    total_h = H + up + down
    aspect = rng.uniform(0.4, 1.25) if aspect is None else aspect
    total_w = max(W * 1.05, total_h * aspect)
    # the spine near the film's middle
    left = float(np.clip(total_w / 2 - cx + rng.uniform(-0.06, 0.06) * total_w, 0, total_w - W))
    fh, fw = int(round(total_h)), int(round(total_w))
    ox, oy = left, up
    ys, xs = np.mgrid[0:fh, 0:fw].astype(np.float32)
    u = xs - ox        # crop coordinates
    v = ys - oy
    sx = cx            # spine x in crop coordinates
    border = np.concatenate([crop[:, : max(2, W // 12)].ravel(), crop[:, -max(2, W // 12):].ravel()])
    soft = float(np.percentile(border, 60)) * rng.uniform(0.85, 1.05)
    bone = float(np.percentile(crop[:, int(max(0, sx - vw / 2)):int(min(W, sx + vw / 2 + 1))], 90))
    air = rng.uniform(0.0, 0.08)
    t1 = g["top"][1]
    l5 = g["bottom"][1]
    # body outline: half width by height (crop coordinates)
    chest = rng.uniform(0.32, 0.45) * L
    neck = rng.uniform(0.07, 0.1) * L
    hips = chest * rng.uniform(0.95, 1.2)
    shoulder_y = t1 + rng.uniform(-0.02, 0.04) * L
    half = np.where(v < shoulder_y - 0.06 * L, neck,
                    np.where(v < l5 + 0.45 * L, np.where(v < l5, chest, hips), hips * 0.6))
    body = (np.abs(u - sx) < half).astype(np.float32)
    # two thighs below the pelvis
    thighs = (v > l5 + 0.45 * L) & (np.abs(np.abs(u - sx) - hips * 0.5) < hips * 0.38)
    body = np.maximum(body, thighs.astype(np.float32))
    body = _blur(body, 0.02 * L)
    film = air + (soft - air) * body + _smooth_noise((fh, fw), rng, 0.05 * L, 0.03) * body
    # arms beside the chest, sometimes
    lay = _layer((fh, fw))
    d = ImageDraw.Draw(lay)
    if rng.uniform() < 0.6:
        for s in (-1, 1):
            ax = ox + sx + s * (chest + rng.uniform(0.06, 0.14) * L)
            aw = rng.uniform(0.06, 0.09) * L
            d.rectangle([ax - aw, oy + shoulder_y, ax + aw, oy + l5 + 0.2 * L], fill=soft * 0.9)
            d.rectangle([ax - aw * 0.35, oy + shoulder_y + 0.05 * L, ax + aw * 0.35, oy + l5 + 0.2 * L], fill=bone * 0.95)
    film = np.maximum(film, np.asarray(lay))
    bones = _layer((fh, fw))
    d = ImageDraw.Draw(bones)
    # cervical column and skull above T1
    y = oy + t1
    cw = vw * 0.75
    for k in range(7):
        hgt = 0.032 * L
        y0 = y - (k + 1) * (hgt * 1.3)
        if y0 < -hgt:
            break
        xc = ox + g["centres"][0, 0] + rng.normal(0, 0.004 * L)
        d.rectangle([xc - cw / 2, y0, xc + cw / 2, y0 + hgt], fill=bone * rng.uniform(0.8, 0.95))
        cw *= 0.96
    skull_y = oy + t1 - 0.3 * L
    if skull_y > -0.2 * L:
        r = rng.uniform(0.17, 0.21) * L
        xc = ox + g["centres"][0, 0]
        d.ellipse([xc - r, skull_y - 2 * r, xc + r, skull_y + 0.2 * r], outline=bone, width=max(2, int(0.02 * L)),
                  fill=soft * 1.1)
    # clavicles and shoulders
    for s in (-1, 1):
        x0 = ox + sx + s * vw * 0.8
        x1 = ox + sx + s * chest * rng.uniform(0.85, 1.0)
        y0 = oy + t1 + 0.03 * L
        y1 = oy + t1 - rng.uniform(0.0, 0.05) * L
        d.line([(x0, y0), ((x0 + x1) / 2, (y0 + y1) / 2 + 0.015 * L), (x1, y1)], fill=bone * 0.9,
               width=max(2, int(0.022 * L)), joint="curve")
        r = 0.06 * L
        d.ellipse([x1 - r, y1 - r * 0.5, x1 + r * 1.2, y1 + r * 1.5], fill=bone * 0.85)
    # pelvis below L5: iliac wings, sacrum, femoral heads
    py = oy + l5
    for s in (-1, 1):
        wx = ox + sx + s * chest * 0.55
        rw, rh = chest * 0.45, 0.22 * L
        d.ellipse([wx - rw, py - 0.1 * L, wx + rw, py - 0.1 * L + 2 * rh], outline=bone * 0.95,
                  width=max(2, int(0.02 * L)), fill=soft * 1.15)
        fx = ox + sx + s * chest * 0.55
        fy = py + 0.42 * L
        r = 0.055 * L
        d.ellipse([fx - r, fy - r, fx + r, fy + r], fill=bone * 0.95)
        d.line([(fx, fy), (fx + s * 0.05 * L, fy + 0.4 * L)], fill=bone * 0.9, width=max(2, int(0.05 * L)))
    sxc = ox + g["bottom"][0]
    d.polygon([(sxc - vw * 0.9, py + 0.01 * L), (sxc + vw * 0.9, py + 0.01 * L), (sxc, py + 0.28 * L)],
              fill=bone * 0.8)
    bones = _blur(np.asarray(bones), 0.004 * L)
    film = np.maximum(film, bones * (0.9 + _smooth_noise((fh, fw), rng, 0.02 * L, 0.08)))
    # lungs and ribs continued to the sides: the crop's outer strips mirrored outward,
    # faded into the body outline, only beside the chest
    inside_rows = (v >= 0) & (v < H)
    mu = np.where(u < 0, -u, np.where(u >= W, 2 * (W - 1) - u, u))
    mu = np.clip(mu, 0, W - 1).astype(np.int64)
    mv = np.clip(v, 0, H - 1).astype(np.int64)
    ext = crop[mv, mu]
    dist = np.where(u < 0, -u, np.where(u >= W, u - (W - 1), 0))
    fade = np.clip(1 - dist / (0.15 * L), 0, 1) * inside_rows * (v < l5 - 0.1 * L) * (np.abs(u - sx) < chest)
    film = film * (1 - fade) + ext * fade
    # the crop itself, feathered in so that no rectangle edge shows
    feather = max(2.0, 0.03 * min(H, W))
    a = np.minimum.reduce([u, W - 1 - u, v, H - 1 - v]) / feather
    alpha = np.clip(a, 0, 1)
    inside = (u >= 0) & (u < W) & (v >= 0) & (v < H)
    cu = np.clip(u, 0, W - 1).astype(np.int64)
    cv = np.clip(v, 0, H - 1).astype(np.int64)
    film = np.where(inside, crop[cv, cu] * alpha + film * (1 - alpha), film)
    return np.clip(film, 0, 1).astype(np.float32), points + np.array([ox, oy])


def burn_in(film: np.ndarray, rng):
    """Film furniture: text, a ruler, side markers, a stitching seam (in place)."""
    h, w = film.shape
    lay = Image.fromarray((film * 255).astype(np.uint8), mode="L")
    d = ImageDraw.Draw(lay)
    try:
        font = ImageFont.load_default()
    except OSError:
        font = None
    white = int(rng.uniform(200, 255))
    for _ in range(int(rng.integers(1, 5))):
        x, y = rng.uniform(0, 0.7) * w, rng.uniform(0, 0.95) * h
        text = rng.choice(["AP STANDING", "R", "L", "PA", "ERECT", "72 IN", "kVp 85 mAs 20", "STITCHED", "SPINE"])
        size = max(1, int(h / 400))
        tmp = Image.new("L", (len(text) * 6 + 2, 11), 0)
        ImageDraw.Draw(tmp).text((1, 0), text, fill=white, font=font)
        tmp = tmp.resize((tmp.width * size * 2, tmp.height * size * 2), Image.NEAREST)
        lay.paste(white, (int(x), int(y)), tmp)
    if rng.uniform() < 0.5:   # ruler down one side
        x = int(rng.choice([rng.uniform(0.02, 0.1), rng.uniform(0.9, 0.97)]) * w)
        step = max(4, h // 60)
        d.line([(x, 0), (x, h)], fill=white, width=max(1, h // 700))
        for k, y in enumerate(range(0, h, step)):
            d.line([(x, y), (x + (step if k % 5 == 0 else step // 2), y)], fill=white, width=max(1, h // 900))
    out = np.asarray(lay, dtype=np.float32) / 255
    if rng.uniform() < 0.4:   # stitching seam: the lower part shifted and rescaled a little
        y = int(rng.uniform(0.35, 0.65) * h)
        gain = rng.uniform(0.85, 1.15)
        out = out.copy()
        out[y:] = np.clip(out[y:] * gain, 0, 1)
        out[y:y + max(1, h // 500)] = rng.uniform(0, 1)
    film[:] = out


def pad(film: np.ndarray, pts: np.ndarray, rng, mask=None):
    """Constant borders (black or white) on some sides, as in padded square exports."""
    h, w = film.shape
    value = 0.0 if rng.uniform() < 0.7 else 1.0
    top, bottom = (int(rng.uniform(0, 0.12) * h) for _ in range(2))
    left, right = (int(rng.uniform(0, 0.25) * w) for _ in range(2))
    out = np.full((h + top + bottom, w + left + right), value, np.float32)
    out[top:top + h, left:left + w] = film
    if mask is not None:
        m = np.zeros(out.shape, bool)
        m[top:top + h, left:left + w] = mask
        mask = m
    return out, pts + np.array([left, top]), mask


def rotate(film: np.ndarray, pts: np.ndarray, deg: float, mask=None):
    h, w = film.shape
    img = Image.fromarray(film, mode="F").rotate(deg, resample=Image.BILINEAR, expand=True, fillcolor=0.0)
    if mask is not None:
        mask = np.asarray(Image.fromarray(mask.astype(np.float32), mode="F").rotate(
            deg, resample=Image.BILINEAR, expand=True, fillcolor=0.0)) > 0.5
    nh, nw = img.height, img.width
    a = math.radians(deg)
    c, s = math.cos(a), math.sin(a)
    p = pts - np.array([w / 2, h / 2])
    # PIL rotates counter-clockwise on screen (y down): x' = c x + s y, y' = -s x + c y
    q = np.stack([c * p[:, 0] + s * p[:, 1], -s * p[:, 0] + c * p[:, 1]], axis=1)
    return np.asarray(img, dtype=np.float32), q + np.array([nw / 2, nh / 2]), mask


def photometric(film: np.ndarray, rng, invert_p=0.15):
    out = np.clip(film, 0, 1) ** rng.uniform(0.7, 1.4)
    out = out * rng.uniform(0.8, 1.1) + rng.uniform(-0.05, 0.05)
    if rng.uniform() < invert_p:
        out = 1 - out
    out = out + rng.normal(0, rng.uniform(0, 0.03), out.shape).astype(np.float32)
    return np.clip(out, 0, 1).astype(np.float32)


def low_resolution(film: np.ndarray, rng):
    h, w = film.shape
    s = rng.uniform(0.25, 0.6)
    small = Image.fromarray(film, mode="F").resize((max(8, int(w * s)), max(8, int(h * s))), Image.BILINEAR)
    return np.asarray(small.resize((w, h), Image.BILINEAR), dtype=np.float32)


def resized_width(h: int, w: int, out_height: int) -> int:
    """The width resize() gives a film of h x w brought to out_height rows."""
    return max(8, int(round(w * out_height / h)))


def scale_points(pts: np.ndarray, from_hw, to_hw) -> np.ndarray:
    """Points (x, y in pixel centres) of an image of from_hw = (h, w) resized to to_hw."""
    return (pts + 0.5) * np.array([to_hw[1] / from_hw[1], to_hw[0] / from_hw[0]]) - 0.5


def resize(film: np.ndarray, pts: np.ndarray, out_height: int, mask=None):
    h, w = film.shape
    size = (resized_width(h, w, out_height), out_height)
    out = np.asarray(Image.fromarray(film, mode="F").resize(size, Image.BILINEAR), dtype=np.float32)
    if mask is not None:
        mask = np.asarray(Image.fromarray(mask.astype(np.float32), mode="F").resize(size, Image.BILINEAR)) > 0.5
    return out, scale_points(pts, (h, w), out.shape), mask


def as_they_come(crop: np.ndarray, points: np.ndarray, rng, hardware=False, out_height=None, strength=1.0,
                 surroundings=None):
    """The full chain: surroundings (most of the time), hardware (when asked), furniture,
    padding, rotation, photometric changes. Returns (film, points, hardware mask or None).
    strength < 1 keeps the film closer to the crop (fewer and milder changes)."""
    film = crop.astype(np.float32)
    pts = np.array(points, dtype=np.float64)
    if surroundings is None:
        surroundings = rng.uniform() < 0.8 * strength
    if surroundings:
        film, pts = surround(film, pts, rng)
    mask = draw_hardware(film, pts, rng) if hardware else None
    if rng.uniform() < 0.6 * strength:
        burn_in(film, rng)
    if rng.uniform() < 0.5 * strength:
        film, pts, mask = pad(film, pts, rng, mask)
    if rng.uniform() < 0.5 * strength:
        film, pts, mask = rotate(film, pts, rng.uniform(-10, 10) * strength, mask)
    film = photometric(film, rng, invert_p=0.15 * strength)
    if rng.uniform() < 0.2 * strength:
        film = low_resolution(film, rng)
    if out_height is not None:
        film, pts, mask = resize(film, pts, out_height, mask)
    return film, pts, mask
