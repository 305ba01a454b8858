#!/usr/bin/python3
"""Radiographs as they come, made from the AASCE validation split (patients never trained
on) with fixed seeds, and the scores of spine-cobb on them. SYNTHETIC framing around real
images: every figure from here is labelled synthetic.

  make OUT     writes OUT/<set>/list.txt and images:
    tight      the validation images as they are (the reference framing), reduced to
               at most 1000 pixels high as all the sets are
    reframed   each one as a full-length film: synthetic surroundings (neck, skull,
               shoulders, arms, pelvis, femoral heads), padding, other aspect, burnt-in
               text, rulers, seams, small rotation, exposure and noise
    hardware   each one with rods and pedicle screws drawn on its spine (half of them
               also re-framed)
    not-spine  what is not a frontal spine radiograph: chest films cut above L1, lateral
               projections and slices of CT phantoms, noise
    tight-512, reframed-512
               the tight and re-framed films padded to a square with black borders and
               reduced to 512 x 512 pixels: the form of the external films issue 12 was
               filed on (a re-framed film's spine is then about 300 pixels tall)
  make-small SETS  adds the two 512 x 512 sets to sets made before they existed
  make-training OUT  the 365 training films (patients the networks trained on) as tight,
               reframed and their two 512 x 512 sets, other seeds: for deciding a change
               on small or re-framed films without scoring the validation films
  score SETS OUT  reads the lists in SETS and OUT/<set>/results/*/cobb.json, prints the figures

Usage: scripts/eval_cobb_reframed.sh [OUT [spine-cobb options...]]
"""
import functools
import json
import os
import subprocess
import sys

import numpy as np
from PIL import Image

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from cobb import data, reframe  # noqa: E402
from cobb.angles import smape  # noqa: E402
from lib.nifti import read_nifti  # noqa: E402

MAX_CROP_H = 1000   # validation images are first reduced to at most this height (speed; the
                    # landmark stages work at 1024 x 512 of what they see)


def aasce_names(training=False):
    """The validation films (training: the training films), those whose landmarks are in order."""
    landmarks, angles = data.read_table()
    names = [n for n in sorted(landmarks)
             if data.is_validation(n) != training and not data.label_problems(landmarks[n])]
    return names, landmarks, angles


def load(n, landmarks):
    g = data.load_grey(os.path.join(data.DATA, "images", n)).astype(np.float32) / 255
    p = landmarks[n].astype(np.float64)
    if g.shape[0] > MAX_CROP_H:
        g, p, _ = reframe.resize(g, p, MAX_CROP_H)
    return g, p


def save(path, img):
    Image.fromarray((np.clip(img, 0, 1) * 255).round().astype(np.uint8)).save(path)


def tight_and_reframed(out, n, landmarks, angles, seed, sets, truth):
    """Film n as it is (tight) and re-framed with the given seed, written under out and
    added to sets and truth; returns the tight image and its landmarks."""
    stem = n[:-4]
    g, p = load(n, landmarks)
    path = os.path.join(out, "tight", stem + ".png")
    save(path, g)
    sets["tight"].append(path)
    truth[f"tight/{stem}"] = {"angles": angles[n].tolist(), "name": n}
    film, q, _ = reframe.as_they_come(g, p, np.random.default_rng(seed), surroundings=True, strength=1.0)
    path = os.path.join(out, "reframed", stem + ".png")
    save(path, film)
    sets["reframed"].append(path)
    truth[f"reframed/{stem}"] = {"angles": angles[n].tolist(), "name": n, "landmarks": q.tolist()}
    return g, p


def write_lists(out, sets, truth):
    for k, paths in sets.items():
        with open(os.path.join(out, k, "list.txt"), "w") as f:
            f.write("\n".join(os.path.abspath(p) for p in paths) + "\n")
    with open(os.path.join(out, "truth.json"), "w") as f:
        json.dump(truth, f)


def make(out):
    names, landmarks, angles = aasce_names()
    sets = {k: [] for k in ("tight", "reframed", "hardware", "not-spine")}
    truth = {}
    for k in sets:
        os.makedirs(os.path.join(out, k), exist_ok=True)
    for i, n in enumerate(names):
        stem = n[:-4]
        g, p = tight_and_reframed(out, n, landmarks, angles, 1000 + i, sets, truth)
        rng = np.random.default_rng(2000 + i)
        film, q, _ = reframe.as_they_come(g, p, rng, hardware=True, surroundings=bool(i % 2), strength=0.6)
        path = os.path.join(out, "hardware", stem + ".png")
        save(path, film)
        sets["hardware"].append(path)
        truth[f"hardware/{stem}"] = {"angles": angles[n].tolist(), "name": n}
        if i < 30:   # a chest film: the same image cut between T10 and T12, re-framed above
            c = p.reshape(17, 4, 2)
            cut = int(c[int(rng.integers(9, 12)), 2:, 1].mean())
            film, _, _ = reframe.as_they_come(g[:cut], p, rng, surroundings=False, strength=0.6)
            path = os.path.join(out, "not-spine", f"chest-{stem}.png")
            save(path, film)
            sets["not-spine"].append(path)
        print(f"{i + 1}/{len(names)} {n}", flush=True)
    rng = np.random.default_rng(7)
    for k in range(10):
        h, w = int(rng.integers(600, 2000)), int(rng.integers(300, 1500))
        path = os.path.join(out, "not-spine", f"noise-{k}.png")
        save(path, rng.uniform(0, 1, (h, w)) if k % 2 == 0 else reframe._blur(rng.uniform(0, 1, (h, w)), 8) * 3 - 1)
        sets["not-spine"].append(path)
    # CT phantoms: a lateral projection (a lateral film of a synthetic torso), a mid-sagittal
    # slice and an axial slice each
    spine_phantom = os.path.join(os.path.dirname(__file__), "..", "build", "bin", "spine-phantom")
    for k in range(5):
        ph = os.path.join(out, "ct-phantoms")
        subprocess.run([spine_phantom, "--kind", "ct", "--torso", "--first", "T1", "--last", "L5", "--spacing", "2",
                        "--seed", str(40 + k), "-q", "--force", "-o", ph, "--name", f"ct{k}"], check=True)
        vol, aff = read_nifti(os.path.join(ph, f"ct{k}", "image.nii.gz"))   # x, y, z (RAS voxel axes)
        mu = np.clip(vol.astype(np.float32) + 1000, 0, None) / 1000
        lateral = mu.sum(axis=0).T[::-1]                      # z up, y across
        lateral = 1 - np.exp(-lateral / np.percentile(lateral, 99) * 2)
        sag = vol[vol.shape[0] // 2].T[::-1].astype(np.float32)
        ax = vol[:, :, vol.shape[2] // 2].T.astype(np.float32)
        for tag, img in (("lateral", lateral), ("sagittal-slice", sag), ("axial-slice", ax)):
            img = (img - img.min()) / max(1e-6, float(img.max() - img.min()))
            s = max(1, int(round(1200 / img.shape[0]))) if tag != "axial-slice" else 3
            img = np.kron(img, np.ones((s, s), np.float32))
            path = os.path.join(out, "not-spine", f"{tag}-ct{k}.png")
            save(path, img)
            sets["not-spine"].append(path)
    write_lists(out, sets, truth)
    make_small(out)


def make_training(out):
    """The training films framed as the validation sets are (tight, re-framed, and both at
    512 x 512), with seeds of their own (5000 + i): the films a change on small or re-framed
    films is decided on, so that the validation films are scored once, after the decision."""
    names, landmarks, angles = aasce_names(training=True)
    sets, truth = {"tight": [], "reframed": []}, {}
    for k in sets:
        os.makedirs(os.path.join(out, k), exist_ok=True)
    for i, n in enumerate(names):
        tight_and_reframed(out, n, landmarks, angles, 5000 + i, sets, truth)
        print(f"{i + 1}/{len(names)} {n}", flush=True)
    write_lists(out, sets, truth)
    make_small(out)


SMALL_SIDE = 512


def square_padding(h, w):
    """The side of the square an h x w film is padded to (centred) and the film's top and
    left offsets in it."""
    side = max(h, w)
    return side, (side - h) // 2, (side - w) // 2


def make_small(out):
    """The tight and re-framed films as square 512 x 512 images (black padding, bilinear)."""
    for k in ("tight", "reframed"):
        os.makedirs(os.path.join(out, f"{k}-{SMALL_SIDE}"), exist_ok=True)
        paths = []
        for line in open(os.path.join(out, k, "list.txt")):
            film = np.asarray(Image.open(line.strip()).convert("L"), dtype=np.float32) / 255
            h, w = film.shape
            side, top, left = square_padding(h, w)
            square = np.zeros((side, side), np.float32)
            square[top:top + h, left:left + w] = film
            small = Image.fromarray(square, mode="F").resize((SMALL_SIDE, SMALL_SIDE), Image.BILINEAR)
            path = os.path.join(out, f"{k}-{SMALL_SIDE}", os.path.basename(line.strip()))
            save(path, np.asarray(small))
            paths.append(os.path.abspath(path))
        with open(os.path.join(out, f"{k}-{SMALL_SIDE}", "list.txt"), "w") as f:
            f.write("\n".join(paths) + "\n")


@functools.lru_cache(maxsize=4)
def read_truth(sets):
    return json.load(open(os.path.join(sets, "truth.json")))


def reference_landmarks(sets, k, stem, landmarks):
    """The 68 reference landmarks of film `stem` of set k in that film's pixels: the AASCE
    ones moved as the film was made (tight: reduced to MAX_CROP_H; re-framed: as stored in
    truth.json; the 512 sets: padded square and reduced as make_small does)."""
    base = k.split("-")[0]
    t = read_truth(sets)[f"{base}/{stem}"]
    if "landmarks" in t:
        p = np.array(t["landmarks"], dtype=np.float64)
    else:   # the tight film: the AASCE image reduced as load() reduces it (its size from the header)
        ow, oh = Image.open(os.path.join(data.DATA, "images", t["name"])).size
        p = landmarks[t["name"]].astype(np.float64)
        if oh > MAX_CROP_H:
            p = reframe.scale_points(p, (oh, ow), (MAX_CROP_H, reframe.resized_width(oh, ow, MAX_CROP_H)))
    if k.endswith(f"-{SMALL_SIDE}"):
        w, h = Image.open(os.path.join(sets, base, stem + ".png")).size
        side, top, left = square_padding(h, w)
        p = reframe.scale_points(p + [left, top], (side, side), (SMALL_SIDE, SMALL_SIDE))
    return p


def results(sets, out, k):
    res = {}
    d = os.path.join(out, k, "results")
    for line in open(os.path.join(sets, k, "list.txt")):
        stem = os.path.splitext(os.path.basename(line.strip()))[0]
        f = os.path.join(d, stem, "cobb.json")
        res[stem] = json.load(open(f)) if os.path.exists(f) else None
    return res


def score(sets, out):
    truth = read_truth(sets)
    figures = {}
    small = [f"tight-{SMALL_SIDE}", f"reframed-{SMALL_SIDE}"]
    have_small = all(os.path.exists(os.path.join(sets, k, "list.txt")) for k in small)
    for k in ["tight", "reframed"] + (small if have_small else []):
        r = results(sets, out, k)
        sm, mae, unrel, rel_sm, rel_mae = [], [], 0, [], []
        for stem, j in r.items():
            # the 512 x 512 films keep their film's angles (uniform scaling, no turn)
            ref = np.array(truth[f"{k.split('-')[0]}/{stem}"]["angles"])
            if j is None:
                sm.append(100.0)   # no result: the worst score, not dropped
                mae.append(ref[0])
                continue
            pred = np.array([j["angles_deg"][a] for a in ("pt", "mt", "tl")])
            sm.append(smape(pred, ref))
            mae.append(abs(j["major"]["angle_deg"] - ref[0]))
            unrel += not j.get("reliable", not j["flags"])
            if j.get("reliable", not j["flags"]):
                rel_sm.append(sm[-1])
                rel_mae.append(mae[-1])
        figures[k] = {"images": len(r), "smape": float(np.mean(sm)), "major_mae": float(np.mean(mae)),
                      "unreliable": unrel, "failed": sum(j is None for j in r.values())}
        print(f"{k}: {len(r)} images, SMAPE {np.mean(sm):.2f} %, major MAE {np.mean(mae):.2f} deg, "
              f"flagged unreliable {unrel}, no result {figures[k]['failed']}; the {len(rel_sm)} reliable: "
              f"SMAPE {np.mean(rel_sm):.2f} %, major MAE {np.mean(rel_mae):.2f} deg")
    if "tight" in figures and "reframed" in figures:
        d = figures["reframed"]["smape"] - figures["tight"]["smape"]
        print(f"reframed minus tight: {d:+.2f} SMAPE points (target <= +1.5; synthetic framing)")
    if have_small:
        ts, rs = figures[small[0]]["smape"], figures[small[1]]["smape"]
        print(f"at {SMALL_SIDE} x {SMALL_SIDE}: reframed minus tight at full size {rs - figures['tight']['smape']:+.2f}, "
              f"minus tight at {SMALL_SIDE} {rs - ts:+.2f}; tight at {SMALL_SIDE} minus tight at full size "
              f"{ts - figures['tight']['smape']:+.2f} SMAPE points (synthetic framing)")
    r = results(sets, out, "hardware")
    hw = [j for j in r.values() if j is not None]
    named = sum(any("hardware" in f for f in j["flags"]) for j in hw)
    unrel = sum(not j.get("reliable", not j["flags"]) for j in hw)
    print(f"hardware: {len(r)} images with drawn rods and screws: hardware flagged {named}, "
          f"unreliable {unrel} ({100 * unrel / max(1, len(r)):.1f} %; target >= 90 %), no result {len(r) - len(hw)}")
    tight = results(sets, out, "tight")
    false_hw = sum(j is not None and any("hardware" in f for f in j["flags"]) for j in tight.values())
    print(f"hardware flag on the tight validation images (none has drawn hardware): {false_hw} of {len(tight)}")
    r = results(sets, out, "not-spine")
    caught = {}
    for stem, j in r.items():
        kind = stem.split("-")[0]
        ok = j is None or not j.get("reliable", not j["flags"])
        caught.setdefault(kind, []).append(ok)
    total = sum(sum(v) for v in caught.values())
    n = sum(len(v) for v in caught.values())
    print(f"not a frontal spine radiograph: {n} images, refused or flagged {total} ({100 * total / max(1, n):.1f} %; "
          f"target >= 95 %): " + ", ".join(f"{k} {sum(v)}/{len(v)}" for k, v in sorted(caught.items())))


if __name__ == "__main__":
    if sys.argv[1:2] == ["make"] and len(sys.argv) == 3:
        make(sys.argv[2])
    elif sys.argv[1:2] == ["make-training"] and len(sys.argv) == 3:
        make_training(sys.argv[2])
    elif sys.argv[1:2] == ["make-small"] and len(sys.argv) == 3:
        make_small(sys.argv[2])
    elif sys.argv[1:2] == ["score"] and len(sys.argv) == 4:
        score(sys.argv[2], sys.argv[3])
    else:
        sys.exit(__doc__)
