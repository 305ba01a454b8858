"""AASCE frontal radiographs: reading, the fixed patient-level validation split, label
checks, and a cache of images resized to the model's 1024 x 512 working size."""
import csv
import hashlib
import os
import re

import numpy as np
import torch
from PIL import Image

from .preprocess import CACHE_H, CACHE_W, resize_to_cache, to_cache_coords

DATA = os.path.join(os.path.dirname(__file__), "..", "..", "..", "shared", "data", "xray-ap-aasce")


def patient_id(name: str) -> str:
    """'sunhl-1th-02-Jan-2017-162 A AP.jpg' -> '162'; 'sunhl-1th-20-Jul-2016-coronal7.jpg' -> 'coronal7'."""
    m = re.search(r"-(\d+) [A-Z]", name)
    if m:
        return m.group(1)
    m = re.search(r"-(coronal\d+)", name)
    return m.group(1) if m else name


def is_validation(name: str) -> bool:
    """Fixed split by patient: about one patient in six, chosen by a hash of the patient id
    so that the split does not depend on file order or on which files are present."""
    h = int(hashlib.sha256(patient_id(name).encode()).hexdigest(), 16)
    return h % 6 == 0


def label_problems(points: np.ndarray) -> list:
    """points [68, 2]: reasons why this landmark set cannot be trusted (empty when fine)."""
    problems = []
    corners = points.reshape(17, 4, 2)
    centres = corners.mean(axis=1)
    if np.any(np.diff(centres[:, 1]) <= 0):
        problems.append("vertebra order not top to bottom")
    if np.any(corners[:, 0, 0] >= corners[:, 1, 0]) or np.any(corners[:, 2, 0] >= corners[:, 3, 0]):
        problems.append("left and right corners swapped")
    if np.any(corners[:, 0, 1] >= corners[:, 2, 1]) or np.any(corners[:, 1, 1] >= corners[:, 3, 1]):
        problems.append("top and bottom corners swapped")
    return problems


def read_table(data_dir=DATA):
    with open(os.path.join(data_dir, "landmarks.csv")) as f:
        rows = list(csv.reader(f))[1:]
    landmarks = {r[0]: np.array([float(v) for v in r[1:]]).reshape(68, 2) for r in rows}
    with open(os.path.join(data_dir, "angles.csv")) as f:
        rows = list(csv.reader(f))[1:]
    angles = {r[0]: np.array([float(v) for v in r[1:4]]) for r in rows}
    return landmarks, angles


def load_grey(path: str) -> np.ndarray:
    return np.asarray(Image.open(path).convert("L"))


def cache_images(paths):
    """Working images (uint8 [N,1024,512]) and original sizes [N,2] (W,H) of image files."""
    images = torch.zeros(len(paths), CACHE_H, CACHE_W, dtype=torch.uint8)
    sizes = np.zeros((len(paths), 2), dtype=np.int64)
    for i, path in enumerate(paths):
        grey = load_grey(path)
        sizes[i] = (grey.shape[1], grey.shape[0])
        images[i] = resize_to_cache(grey).round().clamp(0, 255).to(torch.uint8)
    return images, sizes


def build_cache(names, data_dir=DATA, cache_path=None):
    """Returns (images uint8 [N,1024,512] tensor, sizes [N,2] (W,H)); cached on disk."""
    if cache_path and os.path.exists(cache_path):
        blob = torch.load(cache_path)
        if blob["names"] == list(names):
            return blob["images"], blob["sizes"]
    images, sizes = cache_images([os.path.join(data_dir, "images", n) for n in names])
    if cache_path:
        torch.save({"names": list(names), "images": images, "sizes": sizes}, cache_path)
    return images, sizes


def to_cache_points(landmarks, names, sizes):
    """Reference landmarks of `names` in working-image (1024 x 512) pixels: [N, 68, 2]."""
    out = np.zeros((len(names), 68, 2), dtype=np.float32)
    for i, n in enumerate(names):
        w, h = sizes[i]
        out[i] = to_cache_coords(landmarks[n], w, h)
    return out
