"""Training data for the slice-wise (2.5D) spine segmentation models: real lumbar MRI from
../shared/data (bodies, unnamed bodies, discs) and spine-phantom CT volumes. Volumes are
reoriented to the model's canonical orientation, code "IPR" (voxel x toward Inferior,
y toward Posterior, z toward patient Right, the orientation the shared MRI already has),
so a sagittal slice is vol[z] with rows anterior->posterior and columns superior->inferior.
"""
import glob
import hashlib
import json
import os

import numpy as np

from lib.nifti import read_nifti

SHARED = os.environ.get("SPINE_SHARED_DATA",
                        os.path.join(os.path.dirname(__file__), "..", "..", "..", "shared", "data"))
CANONICAL = "IPR"
# Level head classes: VerSe labels of the vertebra (for a disc: the vertebra above it).
MR_LEVELS = [18, 19, 20, 21, 22, 23, 24]        # T11 .. L5
CT_LEVELS = list(range(8, 25)) + [26]           # T1 .. L5, sacrum
# Structure classes (softmax): 0 background, 1 vertebra (MR: body only), 2 disc.
STRUCTURES = ["background", "vertebra", "disc"]

_RAS_LETTERS = [("L", "R"), ("P", "A"), ("I", "S")]  # (negative, positive) per RAS axis


def orientation_code(affine):
    """Letters naming where each voxel axis points (LPS-style letters, as spine::orientation_code)."""
    code = ""
    for j in range(3):
        col = affine[:3, j]
        i = int(np.argmax(np.abs(col)))
        code += _RAS_LETTERS[i][1 if col[i] > 0 else 0]
    return code


def to_canonical(array, affine, code=CANONICAL):
    """Permutes/flips a [x, y, z] array to the given code; returns the array as [z, y, x]
    (C order, x fastest, like an ITK buffer) and the spacing (x, y, z) in mm."""
    src = orientation_code(affine)
    spacing = np.sqrt((affine[:3, :3] ** 2).sum(axis=0))
    opposite = {"L": "R", "R": "L", "A": "P", "P": "A", "S": "I", "I": "S"}
    perm, flips = [], []
    for letter in code:
        if letter in src:
            perm.append(src.index(letter)); flips.append(False)
        else:
            perm.append(src.index(opposite[letter])); flips.append(True)
    out = np.transpose(array, perm)
    for ax, f in enumerate(flips):
        if f:
            out = np.flip(out, axis=ax)
    return np.ascontiguousarray(out.transpose(2, 1, 0)), spacing[perm]


def normalise_mr(vol, lower=0.5, upper=99.5):
    """The model card's MR normalisation: clip to percentiles, then scale to [0, 1]."""
    lo, hi = np.percentile(vol, [lower, upper])
    return ((np.clip(vol, lo, hi) - lo) / max(hi - lo, 1e-6)).astype(np.float32)


def normalise_ct(vol):
    """The model card's CT normalisation: HU clipped to [-1000, 2000], plus 1000, divided
    by 1000 (air 0, water 1, dense bone 3), so zero padding reads as air."""
    return ((np.clip(vol, -1000, 2000) + 1000) / 1000.0).astype(np.float32)


def is_validation_rank(case_ids):
    """Fixed split by patient: per source, the ids sorted by SHA-256 of the id; the first
    fifth (at least one) is held out for validation."""
    ranked = sorted(case_ids, key=lambda c: hashlib.sha256(c.encode()).hexdigest())
    n_val = max(1, round(len(ranked) / 5))
    return set(ranked[:n_val])


def mr_cases():
    """[(case_id, source, image path, label path)] of all real MRI with labels."""
    out = []
    for folder, kind in (("mri-lumbar-vertebrae", "named"), ("mri-lumbar-vertebrae-unnamed", "unnamed"),
                         ("mri-lumbar-discs", "disc")):
        for img in sorted(glob.glob(os.path.join(SHARED, folder, "*_image.nii.gz"))):
            cid = os.path.basename(img)[:-len("_image.nii.gz")]
            source = cid.split("-")[0]  # vb3, vb2, vb1, ivd
            out.append((cid, source, kind, img, img.replace("_image.nii.gz", "_labels.nii.gz")))
    return out


def mr_split():
    cases = mr_cases()
    val = set()
    for source in sorted({c[1] for c in cases}):
        val |= is_validation_rank([c[0] for c in cases if c[1] == source])
    return [c for c in cases if c[0] not in val], [c for c in cases if c[0] in val]


def load_case(case, modality="mr"):
    cid, source, kind, img_path, lab_path = case
    img, aff = read_nifti(img_path)
    lab, _ = read_nifti(lab_path)
    img, spacing = to_canonical(img.astype(np.float32), aff)
    lab, _ = to_canonical(lab.astype(np.int16), aff)
    img = normalise_mr(img) if modality == "mr" else normalise_ct(img)
    if kind == "ct-phantom":
        # keep the sagittal slices within 40 mm of the spine (memory)
        zs = np.nonzero(lab.reshape(lab.shape[0], -1).any(axis=1))[0]
        z0, z1 = max(0, zs.min() - 40), min(lab.shape[0], zs.max() + 41)
        img, lab = np.ascontiguousarray(img[z0:z1]), np.ascontiguousarray(lab[z0:z1])
    return {"id": cid, "source": source, "kind": kind, "image": img, "labels": lab, "spacing": spacing}


def ct_phantom_cases(folder):
    """spine-phantom output folders (image.nii.gz, labels.nii.gz)."""
    out = []
    for d in sorted(glob.glob(os.path.join(folder, "*", "labels.nii.gz"))):
        base = os.path.dirname(d)
        out.append((os.path.basename(base), "phantom", "ct-phantom", os.path.join(base, "image.nii.gz"), d))
    return out


def structure_and_level(labels, kind, levels, disc_anchors=True):
    """Per-voxel structure class (-1 = unknown), 'known' masks and level class (-1 = none)."""
    structure = np.zeros(labels.shape, np.int8)
    lv = np.full(labels.shape, -1, np.int8)
    index = {v: i for i, v in enumerate(levels)}
    if kind in ("named", "unnamed"):
        structure[(labels > 0) & (labels < 100) | (labels >= 1000)] = 1
        if kind == "named":
            for v, i in index.items():
                lv[labels == v] = i
    elif kind == "disc":
        structure[(labels >= 100) & (labels < 200)] = 2
        for v, i in index.items():
            lv[labels == 100 + v] = i
        if disc_anchors:
            disc_anchored_labels(labels, structure, lv, index)
    else:  # CT phantom: whole vertebrae 1..28, discs 100+
        structure[(labels > 0) & (labels < 30)] = 1
        structure[(labels >= 100) & (labels < 200)] = 2
        for v, i in index.items():
            lv[labels == v] = i
            if v < 26:
                lv[labels == 100 + v] = i
    return structure, lv


SACRUM_DEPTH_MM = 20  # how far below the L5/S1 disc the first sacral body is taken as certain
KNOWN_BACKGROUND = 3  # structure value: not a vertebral body and not a disc (a disc-only volume's sacrum)


def disc_anchored_labels(labels, structure, lv, index):
    """What the discs of a disc-only volume say about the voxels between them. Between the
    discs above and below vertebra v lies v's body: its level is known there (whatever the
    body's exact outline). Below the L5/S1 disc (124) lies the first sacral segment, which
    is not a lumbar body: without this, the model has no example of a sacrum in this
    source's contrast and may segment S1 as the lowest body and name it L5. Works per
    sagittal slice and per anterior-posterior row, inside the discs' own rows, so the
    discs' tilt is followed. In place; image axes [z, y (posterior), x (inferior)]."""
    for z in range(labels.shape[0]):
        sl = labels[z]
        present = [d for d in range(101, 125) if (sl == d).any()]
        if not present:
            continue
        extent = {}
        for d in present:
            m = sl == d
            rows = np.nonzero(m.any(axis=1))[0]
            first = np.where(m[rows], np.arange(m.shape[1]), m.shape[1]).min(axis=1)
            last = np.where(m[rows], np.arange(m.shape[1]), -1).max(axis=1)
            extent[d] = {int(y): (int(a), int(b)) for y, a, b in zip(rows, first, last)}
        for d in present:
            below = d - 100 + 1  # vertebra below disc d
            if d + 1 in extent and below in index:
                for y, (_, last_up) in extent[d].items():
                    if y in extent[d + 1]:
                        first_down = extent[d + 1][y][0]
                        if first_down - last_up > 3:
                            lv[z, y, last_up + 2:first_down - 1] = index[below]
        if 124 in extent:
            for y, (_, last) in extent[124].items():
                structure[z, y, last + 2:last + 2 + SACRUM_DEPTH_MM] = KNOWN_BACKGROUND


# Structure codes of real MRI used to train the CT model (whole vertebrae, sacrum included):
# an MRI label says less about the CT classes than about its own. Besides 0 background,
# 1 vertebra and 2 disc: NOT_VERTEBRA (background or disc), NOT_DISC (background or
# vertebra), UNKNOWN (no structure loss).
NOT_VERTEBRA, NOT_DISC, UNKNOWN = 4, 5, -1
LATERAL_BACKGROUND_MM = 55  # beyond this from the bodies' centre no part of a lumbar vertebra lies
ARCH_SEARCH_MM = 20         # columns either side searched for the bodies' posterior wall


def ct_codes_from_mr(labels, kind, levels):
    """Structure codes and level classes of a real MRI volume for training the CT model,
    whose vertebra class is the WHOLE vertebra (body and posterior elements) and includes
    the sacrum. A body label says: the body is vertebra; what lies in front of the bodies'
    posterior wall and is not body is not vertebra (disc or soft tissue); what lies behind
    it may be the arch (unknown); and far to the side, within the labelled levels, nothing
    is vertebra. Levels above and below the labelled run are unlabelled vertebrae: unknown.
    A disc label says: discs are disc, the rest is not disc; the first sacral segment below
    the L5/S1 disc is vertebra (sacrum). Axes [z (right), y (posterior), x (inferior)]."""
    structure, lv = structure_and_level(labels, kind, levels)
    codes = np.full(labels.shape, UNKNOWN, np.int8)
    if kind == "disc":
        codes[:] = NOT_DISC
        codes[structure == 2] = 2
        sacrum = structure == KNOWN_BACKGROUND
        codes[sacrum] = 1
        if 26 in levels:
            lv[sacrum] = levels.index(26)
        return codes, lv
    body = structure == 1
    zs, _, xs = np.nonzero(body)
    if not len(zs):
        return codes, lv
    x0, x1 = xs.min(), xs.max()
    zc = np.median(zs)
    for z in range(labels.shape[0]):
        sl = body[z]
        if abs(z - zc) > LATERAL_BACKGROUND_MM:
            codes[z, :, x0:x1 + 1] = 0
            continue
        rows = np.where(sl, np.arange(sl.shape[0])[:, None], -1).max(axis=0)  # posterior wall per column
        if rows.max() < 0:
            continue
        padded = np.pad(rows, ARCH_SEARCH_MM, constant_values=-1)
        wall = np.lib.stride_tricks.sliding_window_view(padded, 2 * ARCH_SEARCH_MM + 1).max(axis=1)
        y = np.arange(sl.shape[0])[:, None]
        in_front = (y < wall[None, :] + 2) & (wall[None, :] >= 0)
        in_front[:, :x0] = False
        in_front[:, x1 + 1:] = False
        codes[z][in_front] = NOT_VERTEBRA
    codes[body] = 1
    if kind == "named" and 26 in levels:
        first_sacral_segment(labels, codes, lv, levels.index(26))
    return codes, lv


L5, L4 = 24, 23


def first_sacral_segment(labels, codes, lv, sacrum_class):
    """Below a labelled L5 body, across the L5/S1 disc (as thick as the L4/L5 disc in the
    same row, else 10 mm), lies the first sacral segment: the CT model's sacrum, the
    anchor of the names, which the body labels leave out. Per sagittal slice and per
    anterior-posterior row of L5, like disc_anchored_labels; in place."""
    for z in range(labels.shape[0]):
        sl = labels[z]
        rows = np.nonzero((sl == L5).any(axis=1))[0]
        for y in rows:
            l5 = np.nonzero(sl[y] == L5)[0]
            l4 = np.nonzero(sl[y] == L4)[0]
            gap = int(np.clip(l5[0] - l4[-1] - 1, 4, 16)) if len(l4) else 10
            disc_end = l5[-1] + 1 + gap
            codes[z, y, l5[-1] + 1:disc_end] = NOT_VERTEBRA
            codes[z, y, disc_end:disc_end + SACRUM_DEPTH_MM] = 1
            lv[z, y, disc_end:disc_end + SACRUM_DEPTH_MM] = sacrum_class


# Real CT with manual whole-vertebra masks (VerSe), and manual masks whose CT is not
# available (rendered as CT by scripts/seg/ct_from_masks.py).
VERSE_CT = "ct-verse"
MASKS_NO_IMAGE = "ct-vertebra-masks-no-image"
# How far inside the labelled run's first and last vertebra the unlabelled voxels are
# known not to be vertebra: an unlabelled neighbour's processes reach that far (T12's
# spinous process overlaps L1 head to foot; S1's articular processes rise beside L5's).
UNLABELLED_NEIGHBOUR_MM = 15


def verse_ct_cases():
    """[(case_id, source, kind, image, mask)] of the real CT with manual masks."""
    out = []
    for img in sorted(glob.glob(os.path.join(SHARED, VERSE_CT, "*_ct.nii.gz"))):
        cid = os.path.basename(img)[:-len("_ct.nii.gz")]
        out.append((cid, "verse", "ct-real", img, img.replace("_ct.nii.gz", "_seg-vert_msk.nii.gz")))
    return out


def mask_only_cases(exclude=()):
    """[(case_id, source, kind, None, mask)]: the manual masks without CT, and the masks of
    the real CT (their CT rendered anew from the mask) except those in `exclude` (a
    held-out fold's case must not reach training through its mask either)."""
    out = []
    for m in sorted(glob.glob(os.path.join(SHARED, MASKS_NO_IMAGE, "*.nii.gz"))):
        cid = os.path.basename(m).split("_")[0]
        out.append((cid + "-mask", "verse-mask", "ct-synth", None, m))
    for c in verse_ct_cases():
        if c[0] not in exclude:
            out.append((c[0] + "-mask", "verse-mask", "ct-synth", None, c[4]))
    return out


def resample_to_1mm(vol, spacing, labels=False):
    """[z, y, x] array with spacing (x, y, z) mm -> 1 mm. Images trilinear; label maps
    per label (linear interpolation of each label's mask, then the most likely label), so
    a 3 mm label map is not blocky at 1 mm. Torch, since Debian's torch has no scipy."""
    import torch
    import torch.nn.functional as F
    size = [max(1, int(round(n * s))) for n, s in zip(vol.shape, spacing[::-1])]
    if list(vol.shape) == size:
        return vol
    if not labels:
        t = torch.from_numpy(np.ascontiguousarray(vol, dtype=np.float32))[None, None]
        return F.interpolate(t, size=size, mode="trilinear", align_corners=False)[0, 0].numpy()
    best = torch.full(size, 0.5)
    out = torch.zeros(size, dtype=torch.int16)
    for v in np.unique(vol):
        if v == 0:
            continue
        m = torch.from_numpy((vol == v).astype(np.float32))[None, None]
        p = F.interpolate(m, size=size, mode="trilinear", align_corners=False)[0, 0]
        win = p > best
        out[win] = int(v)
        best = torch.maximum(best, p)
    return out.numpy()


def read_ct_case_native(case):
    """A real CT (kind ct-real) or a mask to render (ct-synth) in IPR at the file's own
    spacing: image in HU (None for a mask without CT), labels rounded (float masks,
    interpolated by the source). Label pieces far from their vertebra are kept (the
    source's own small detached pieces are few and tiny)."""
    cid, source, kind, img_path, lab_path = case
    lab, aff = read_nifti(lab_path)
    lab, spacing = to_canonical(np.round(lab).astype(np.int16), aff)
    img = None
    if img_path is not None:
        img, aff_i = read_nifti(img_path)
        img, _ = to_canonical(img.astype(np.float32), aff_i)
    return {"id": cid, "source": source, "kind": kind, "image_hu": img, "labels": lab, "spacing": spacing}


def ct_case_at_1mm(native):
    """read_ct_case_native's case at 1 mm, its image normalised (a mask's image is the
    canvas that ct_from_masks renders per sample)."""
    lab = resample_to_1mm(native["labels"], native["spacing"], labels=True)
    if native["image_hu"] is not None:
        img = normalise_ct(resample_to_1mm(native["image_hu"], native["spacing"]))
    else:
        img = np.ones(lab.shape, np.float32)
    return {"id": native["id"], "source": native["source"], "kind": native["kind"], "image": img, "labels": lab,
            "spacing": np.ones(3)}


def load_ct_case(case):
    """A real CT or a mask to render, at 1 mm in IPR (read_ct_case_native, ct_case_at_1mm)."""
    return ct_case_at_1mm(read_ct_case_native(case))


def structure_codes_from_vertebra_masks(labels, levels, known_outside=False):
    """Structure codes (see ct_codes_from_mr) and level classes of a whole-vertebra mask
    without discs or sacrum (VerSe): labelled voxels are vertebra of their level; the rest,
    within the labelled run's head-foot extent less UNLABELLED_NEIGHBOUR_MM at either end,
    is background or disc (NOT_VERTEBRA); beyond that it may be an unlabelled vertebra or
    the sacrum (UNKNOWN), unless `known_outside` (a rendered mask: nothing is there).
    Levels outside the model's classes (cervical) train the structure head only.
    Axes [z (right), y (posterior), x (inferior)]."""
    vert = (labels > 0) & (labels < 30)
    codes = np.full(labels.shape, NOT_VERTEBRA if known_outside else UNKNOWN, np.int8)
    lv = np.full(labels.shape, -1, np.int8)
    xs = np.nonzero(vert.any(axis=(0, 1)))[0]
    if len(xs):
        x0, x1 = xs.min() + UNLABELLED_NEIGHBOUR_MM, xs.max() - UNLABELLED_NEIGHBOUR_MM
        if x1 > x0:
            codes[:, :, x0:x1 + 1] = NOT_VERTEBRA
    codes[vert] = 1
    for i, v in enumerate(levels):
        lv[labels == v] = i
    return codes, lv
