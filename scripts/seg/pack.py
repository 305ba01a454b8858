"""The CT model's training volumes in one compressed file, for training where neither
../shared/data nor the phantom generator is (the lent GPU machine takes at most 64 MiB
with the repository). What is packed, and how it comes back:

- torso phantoms rendered WITHOUT noise (PHANTOM_NOISE=0 scripts/make_ct_phantoms.sh):
  flat tissue compresses about 40-fold. The generator's noise is white Gaussian of
  20 HU per noise step (src/phantom/phantom.cpp), so `read` adds exactly that, at each
  phantom's nominal noise, read from its noisy twin's provenance: the same anatomy and
  the same noise statistics as the phantoms the CPU training reads (another draw);
- real CT and manual masks in IPR at their own spacing (data.read_ct_case_native),
  resampled to 1 mm at load as data.load_ct_case does.

CT images are stored as 8 bits over [-1000, 2000] HU: steps of 11.8 HU, below the noise
of any CT (and the training adds noise on top). Each array is LZMA-compressed (about
twice as small as the zip deflate of np.savez_compressed on these volumes)."""
import json
import lzma
import os

import numpy as np

from seg import data

HU_MIN, HU_MAX = -1000.0, 2000.0
PHANTOM_NOISE_HU = 20.0  # per noise step, as spine-phantom renders CT


def _quantise_hu(hu):
    return np.round((np.clip(hu, HU_MIN, HU_MAX) - HU_MIN) / (HU_MAX - HU_MIN) * 255).astype(np.uint8)


def _hu(q):
    return q.astype(np.float32) * np.float32((HU_MAX - HU_MIN) / 255) + np.float32(HU_MIN)


def _packed(arr):
    """An array as LZMA bytes, and what restores it."""
    if arr.dtype.kind in "iu" and arr.size and 0 <= arr.min() and arr.max() < 256:
        arr = arr.astype(np.uint8)  # label maps: every label here is below 256
    return np.frombuffer(lzma.compress(np.ascontiguousarray(arr).tobytes()), np.uint8), \
        {"dtype": arr.dtype.str, "shape": list(arr.shape)}


def _unpacked(z, key, how):
    return np.frombuffer(lzma.decompress(z[key].tobytes()), np.dtype(how["dtype"])).reshape(how["shape"]).copy()


def write(path, clean_phantoms, noisy_phantoms, real, masks):
    """clean_phantoms: data.ct_phantom_cases of the noise-free folder; noisy_phantoms: the
    folder of the same phantoms with noise (their provenance gives the noise level);
    real, masks: data.verse_ct_cases(), data.mask_only_cases()."""
    arrays, meta = {}, []
    for i, c in enumerate(clean_phantoms):
        case = data.load_case(c, "ct")  # normalised, cropped to the spine's slices
        prov = json.load(open(os.path.join(noisy_phantoms, c[0], "provenance.json")))
        noise = float(prov["config"]["volume"]["noise"])
        m = {"key": f"p{i}", "id": c[0], "source": c[1], "kind": c[2], "noise": noise}
        arrays[f"p{i}_image"], m["image"] = _packed(_quantise_hu(case["image"] * 1000 - 1000))
        arrays[f"p{i}_labels"], m["labels"] = _packed(case["labels"])
        meta.append(m)
    for i, c in enumerate(real + masks):
        native = data.read_ct_case_native(c)
        m = {"key": f"r{i}", "id": c[0], "source": c[1], "kind": c[2],
             "spacing": [float(v) for v in native["spacing"]]}
        if native["image_hu"] is not None:
            arrays[f"r{i}_image"], m["image"] = _packed(_quantise_hu(native["image_hu"]))
        arrays[f"r{i}_labels"], m["labels"] = _packed(native["labels"])
        meta.append(m)
    arrays["meta"] = np.frombuffer(json.dumps(meta).encode(), np.uint8)
    with open(path + ".tmp", "wb") as f:
        np.savez(f, **arrays)
    os.replace(path + ".tmp", path)


def read(path, seed=0):
    """(phantoms, real, masks): case dicts as data.load_case / data.load_ct_case give them."""
    z = np.load(path)
    meta = json.loads(bytes(z["meta"]).decode())
    rng = np.random.default_rng(seed)
    phantoms, real, masks = [], [], []
    for m in meta:
        k = m["key"]
        labels = _unpacked(z, f"{k}_labels", m["labels"]).astype(np.int16)
        if m["kind"] == "ct-phantom":
            hu = _hu(_unpacked(z, f"{k}_image", m["image"]))
            hu += rng.normal(0, PHANTOM_NOISE_HU * m["noise"], hu.shape).astype(np.float32)
            phantoms.append({"id": m["id"], "source": m["source"], "kind": m["kind"],
                             "image": data.normalise_ct(hu), "labels": labels, "spacing": np.ones(3)})
            continue
        native = {"id": m["id"], "source": m["source"], "kind": m["kind"], "labels": labels,
                  "image_hu": _hu(_unpacked(z, f"{k}_image", m["image"])) if "image" in m else None,
                  "spacing": np.array(m["spacing"])}
        (real if m["kind"] == "ct-real" else masks).append(data.ct_case_at_1mm(native))
    return phantoms, real, masks
