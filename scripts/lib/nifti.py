"""Minimal NIfTI-1 reader/writer (Debian has no nibabel): enough for the project's
training data, which are plain single-file .nii/.nii.gz volumes."""
import gzip
import struct

import numpy as np

_DTYPES = {2: np.uint8, 4: np.int16, 8: np.int32, 16: np.float32, 64: np.float64,
           256: np.int8, 512: np.uint16, 768: np.uint32}


def read_nifti(path):
    """Returns (array indexed [x, y, z], affine 4x4 voxel -> RAS mm)."""
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "rb") as f:
        raw = f.read()
    endian = "<" if struct.unpack("<i", raw[:4])[0] == 348 else ">"
    dim = struct.unpack(endian + "8h", raw[40:56])
    datatype = struct.unpack(endian + "h", raw[70:72])[0]
    pixdim = struct.unpack(endian + "8f", raw[76:108])
    vox_offset = int(struct.unpack(endian + "f", raw[108:112])[0])
    scl_slope, scl_inter = struct.unpack(endian + "2f", raw[112:120])
    qform_code, sform_code = struct.unpack(endian + "2h", raw[252:256])
    quat = struct.unpack(endian + "6f", raw[256:280])
    srow = np.array(struct.unpack(endian + "12f", raw[280:328]), dtype=np.float64).reshape(3, 4)
    ndim = dim[0]
    shape = tuple(dim[1:1 + ndim])
    dtype = np.dtype(_DTYPES[datatype]).newbyteorder(endian)
    count = int(np.prod(shape))
    data = np.frombuffer(raw, dtype=dtype, count=count, offset=vox_offset)
    data = data.reshape(shape, order="F")
    if scl_slope not in (0.0, 1.0) or scl_inter != 0.0:
        data = data.astype(np.float32) * (scl_slope or 1.0) + scl_inter
    affine = np.eye(4)
    if sform_code > 0:
        affine[:3] = srow
    elif qform_code > 0:
        b, c, d, qx, qy, qz = quat
        a = np.sqrt(max(0.0, 1.0 - (b * b + c * c + d * d)))
        rot = np.array([[a*a+b*b-c*c-d*d, 2*(b*c-a*d), 2*(b*d+a*c)],
                        [2*(b*c+a*d), a*a+c*c-b*b-d*d, 2*(c*d-a*b)],
                        [2*(b*d-a*c), 2*(c*d+a*b), a*a+d*d-b*b-c*c]])
        qfac = -1.0 if pixdim[0] < 0 else 1.0
        scale = np.array([pixdim[1], pixdim[2], pixdim[3] * qfac])
        affine[:3, :3] = rot * scale
        affine[:3, 3] = [qx, qy, qz]
    else:
        affine[:3, :3] = np.diag(pixdim[1:4])
    return np.ascontiguousarray(data), affine


_CODES = {np.dtype(v).str[1:]: k for k, v in _DTYPES.items()}


def write_nifti(path, data, affine):
    """Writes a [x, y, z] array with its voxel -> RAS affine as single-file NIfTI-1 (sform
    and the matching qform), gzipped when the name ends in .gz."""
    data = np.asarray(data)
    code = _CODES[data.dtype.newbyteorder("<").str[1:]]
    hdr = bytearray(352)
    struct.pack_into("<i", hdr, 0, 348)
    struct.pack_into("<8h", hdr, 40, data.ndim, *data.shape, *([1] * (7 - data.ndim)))
    struct.pack_into("<hh", hdr, 70, code, data.dtype.itemsize * 8)
    affine = np.asarray(affine, dtype=np.float64)
    spacing = np.sqrt((affine[:3, :3] ** 2).sum(axis=0))
    rot = affine[:3, :3] / spacing
    qfac = 1.0
    if np.linalg.det(rot) < 0:
        qfac, rot = -1.0, rot * np.array([1, 1, -1])
    # The quaternion of the rotation too (qform): ITK rebuilds the sform in float precision
    # and may judge a lone sform not orthonormal.
    a = 0.5 * np.sqrt(max(0.0, 1 + np.trace(rot)))
    if a > 1e-3:
        b, c, d = (rot[2, 1] - rot[1, 2]) / (4 * a), (rot[0, 2] - rot[2, 0]) / (4 * a), (rot[1, 0] - rot[0, 1]) / (4 * a)
    else:  # a rotation of 180 degrees: from the largest diagonal element
        k = int(np.argmax(np.diag(rot)))
        q = np.zeros(3)
        q[k] = 0.5 * np.sqrt(max(0.0, 1 + 2 * rot[k, k] - np.trace(rot)))
        for j in range(3):
            if j != k:
                q[j] = (rot[j, k] + rot[k, j]) / (4 * q[k])
        b, c, d = q
        if a == 0 and b < 0:
            b, c, d = -b, -c, -d
    struct.pack_into("<8f", hdr, 76, qfac, *spacing, 1, 1, 1, 1)
    struct.pack_into("<f", hdr, 108, 352.0)
    struct.pack_into("<2f", hdr, 112, 1.0, 0.0)
    struct.pack_into("<2h", hdr, 252, 2, 2)  # qform and sform: aligned to another scan
    struct.pack_into("<6f", hdr, 256, b, c, d, *affine[:3, 3])
    struct.pack_into("<12f", hdr, 280, *affine[:3].ravel())
    hdr[344:348] = b"n+1\0"
    raw = bytes(hdr) + np.asarray(data, dtype=data.dtype.newbyteorder("<")).tobytes(order="F")
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "wb") as f:
        f.write(raw)
