"""The AASCE angle rule in Python (mirror of src/measure/cobb.cpp) for training-time
validation; the reported figures come from the C++ tool."""
import numpy as np


def _angle(a, b):
    na, nb = np.linalg.norm(a), np.linalg.norm(b)
    if na == 0 or nb == 0:
        return 0.0
    return float(np.degrees(np.arccos(np.clip(np.dot(a, b) / (na * nb), -1, 1))))


def _tilt_vectors(p):
    """Per vertebra (p: [17, 4, 2]), its right side's midpoint minus its left side's."""
    return (p[:, 1] + p[:, 3]) / 2 - (p[:, 0] + p[:, 2]) / 2


def vertebra_tilts(points):
    """Each vertebra's AASCE tilt in degrees (68 points, AASCE order): the direction of its
    right side's midpoint minus its left side's, as aasce_angles reads it."""
    v = _tilt_vectors(np.asarray(points, dtype=np.float64).reshape(17, 4, 2))
    return np.degrees(np.arctan2(v[:, 1], v[:, 0]))


def aasce_angles(points, image_height):
    p = np.asarray(points, dtype=np.float64).reshape(17, 4, 2)
    tilt = _tilt_vectors(p)
    mid = np.empty((34, 2))
    mid[0::2] = (p[:, 0] + p[:, 1]) / 2
    mid[1::2] = (p[:, 2] + p[:, 3]) / 2
    n = 17
    a = np.array([[_angle(tilt[i], tilt[j]) for j in range(n)] for i in range(n)])
    colmax = a.max(axis=0)
    j = int(np.argmax(colmax))
    i = int(np.argmax(a[:, j]))
    first, last = mid[0], mid[-1]
    offs = []
    for k in range(1, 33):
        dy, dx = first[1] - last[1], first[0] - last[0]
        offs.append(((mid[k, 1] - last[1]) / dy if dy else 0) - ((mid[k, 0] - last[0]) / dx if dx else 0))
    offs = np.array(offs)
    s_shaped = bool((offs > 0).any() and (offs < 0).any())
    if not s_shaped:
        return np.array([a[i, j], a[0, j], a[n - 1, i]])
    k = int(np.argmax(a[j, :j + 1]))
    second = a[j, k]
    if mid[2 * i + 1, 1] + mid[2 * j + 1, 1] < image_height:
        third = a[i, i:].max()
    else:
        third = a[k, :k + 1].max()
    return np.array([a[i, j], second, third])


def smape(pred, ref):
    pred, ref = np.asarray(pred), np.asarray(ref)
    den = (pred + ref).sum()
    return 100.0 * np.abs(pred - ref).sum() / den if den > 0 else 0.0
