#!/usr/bin/python3
"""Writes the malformed-input corpus: small broken (and a few valid control) files for
every reader spine has, made on the fly so that nothing big is committed.

    /usr/bin/python3 tests/malformed/make_corpus.py OUTDIR

OUTDIR/manifest.json lists the cases: {"name", "path" (relative to OUTDIR), "kind"
("3d", "2d" or "any": which commands read it), "expect" ("refuse" or "accept"), "why"}.
"accept" cases are valid files that must still work (so that a reader made too strict
is caught as well); every "refuse" case must end in a clear input error.
Only numpy and the standard library (plus PIL for JPEG) are needed.
"""
import gzip
import io
import json
import os
import shutil
import struct
import sys
import zlib
from pathlib import Path

import numpy as np

# A small volume that spine-seg and spine-detect accept (>= 20 mm and >= 4 voxels per
# axis) and process in about a second: a bright box in a darker body.
NX, NY, NZ = 32, 28, 24
SPACING = (1.5, 1.5, 2.0)


def base_volume():
    z, y, x = np.mgrid[0:NZ, 0:NY, 0:NX]
    v = np.full((NZ, NY, NX), -1000, np.int16)
    body = (x - NX / 2) ** 2 / 14 ** 2 + (y - NY / 2) ** 2 / 12 ** 2 < 1
    v[body] = 40
    v[body & (abs(x - NX / 2) < 4) & (abs(y - NY / 2 - 3) < 4)] = 700
    return v


def base_picture(w=96, h=160):
    y, x = np.mgrid[0:h, 0:w]
    p = (60 + 120 * np.exp(-((x - w / 2) ** 2) / (2 * 12 ** 2)) + 20 * np.sin(y / 7.0)).clip(0, 255)
    return p.astype(np.uint8)


# ---------------------------------------------------------------- NIfTI-1
DT = {np.dtype(np.int16): (4, 16), np.dtype(np.float32): (16, 32), np.dtype(np.uint8): (2, 8)}


def nifti_bytes(vol, spacing=SPACING, sform=True, patch=None, vox_offset=352.0):
    """vol is z, y, x; patch: list of (offset, struct format, value) written into the header."""
    hdr = bytearray(348)
    struct.pack_into("<i", hdr, 0, 348)
    dims = [3, vol.shape[2], vol.shape[1], vol.shape[0], 1, 1, 1, 1]
    struct.pack_into("<8h", hdr, 40, *dims)
    code, bitpix = DT[vol.dtype]
    struct.pack_into("<hh", hdr, 70, code, bitpix)
    struct.pack_into("<8f", hdr, 76, 1.0, *spacing, 0, 0, 0, 0)
    struct.pack_into("<f", hdr, 108, vox_offset)
    struct.pack_into("<ff", hdr, 112, 1.0, 0.0)
    struct.pack_into("<B", hdr, 123, 2)  # mm
    if sform:
        struct.pack_into("<hh", hdr, 252, 0, 1)
        struct.pack_into("<4f", hdr, 280, -spacing[0], 0, 0, 20.0)
        struct.pack_into("<4f", hdr, 296, 0, -spacing[1], 0, 20.0)
        struct.pack_into("<4f", hdr, 312, 0, 0, spacing[2], -10.0)
    else:
        struct.pack_into("<hh", hdr, 252, 1, 0)
        struct.pack_into("<6f", hdr, 256, 0, 0, 1.0, 20.0, 20.0, -10.0)  # 180 deg about z: LPS->RAS
    hdr[344:348] = b"n+1\0"
    for off, fmt, val in patch or []:
        if isinstance(val, (tuple, list)):
            struct.pack_into(fmt, hdr, off, *val)
        else:
            struct.pack_into(fmt, hdr, off, val)
    return bytes(hdr) + b"\0\0\0\0" + vol.astype(vol.dtype.newbyteorder("<")).tobytes()


def byteswapped_nifti(vol):
    b = bytearray(nifti_bytes(vol))
    # Re-pack the numeric header fields big-endian: the reader must detect the order.
    out = bytearray(b)
    def swap(off, fmt, n):
        vals = struct.unpack_from("<" + fmt * n, b, off)
        struct.pack_into(">" + fmt * n, out, off, *vals)
    swap(0, "i", 1); swap(40, "h", 8); swap(70, "h", 4); swap(76, "f", 8); swap(108, "f", 3)
    swap(252, "h", 2); swap(256, "f", 6); swap(280, "f", 12)
    data = vol.astype(">i2").tobytes()
    return bytes(out[:352]) + data


# ---------------------------------------------------------------- MetaImage
def mha_bytes(vol, fields=None, data=None, compress=False, drop=()):
    f = {"ObjectType": "Image", "NDims": "3", "BinaryData": "True", "BinaryDataByteOrderMSB": "False",
         "CompressedData": "True" if compress else "False",
         "TransformMatrix": "1 0 0 0 1 0 0 0 1", "Offset": "0 0 0", "ElementSpacing": " ".join(map(str, SPACING)),
         "DimSize": f"{vol.shape[2]} {vol.shape[1]} {vol.shape[0]}", "ElementType": "MET_SHORT"}
    raw = vol.astype("<i2").tobytes() if data is None else data
    if compress:
        raw = zlib.compress(raw)
        f["CompressedDataSize"] = str(len(raw))
    f.update(fields or {})
    for k in drop:
        f.pop(k, None)
    f.setdefault("ElementDataFile", "LOCAL")
    edf = f.pop("ElementDataFile")
    text = "".join(f"{k} = {v}\n" for k, v in f.items()) + f"ElementDataFile = {edf}\n"
    return text.encode() + raw


# ---------------------------------------------------------------- NRRD
def nrrd_bytes(vol, fields=None, encoding="raw", data=None, drop=()):
    f = {"type": "short", "dimension": "3", "space": "left-posterior-superior",
         "sizes": f"{vol.shape[2]} {vol.shape[1]} {vol.shape[0]}",
         "space directions": f"({SPACING[0]},0,0) (0,{SPACING[1]},0) (0,0,{SPACING[2]})",
         "endian": "little", "encoding": encoding, "space origin": "(0,0,0)"}
    f.update(fields or {})
    for k in drop:
        f.pop(k, None)
    raw = vol.astype("<i2").tobytes() if data is None else data
    if encoding == "gzip" and data is None:
        raw = gzip.compress(raw)
    return b"NRRD0004\n" + "".join(f"{k}: {v}\n" for k, v in f.items()).encode() + b"\n" + raw


# ---------------------------------------------------------------- PNG
def png_chunk(kind, data, crc=None):
    c = zlib.crc32(kind + data) if crc is None else crc
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", c & 0xFFFFFFFF)


def png_bytes(pic, width=None, height=None, depth=8, colour=0, idat=None, bad_crc=False, filters=None):
    h, w = pic.shape
    rows = b"".join(bytes([0 if filters is None else filters]) + pic[r].tobytes() for r in range(h))
    ihdr = struct.pack(">IIBBBBB", w if width is None else width, h if height is None else height, depth, colour, 0, 0, 0)
    data = zlib.compress(rows) if idat is None else idat
    crc = 0x12345678 if bad_crc else None
    return b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", data, crc) + png_chunk(b"IEND", b"")


def jpeg_bytes(pic, quality=90):
    from PIL import Image
    b = io.BytesIO()
    Image.fromarray(pic).save(b, format="JPEG", quality=quality)
    return b.getvalue()


# ---------------------------------------------------------------- DICOM (explicit VR little endian)
LONG_VR = {b"OB", b"OW", b"OF", b"SQ", b"UT", b"UN"}


def element(group, elem, vr, value):
    if isinstance(value, str):
        value = value.encode()
        if len(value) % 2:
            value += b"\0" if vr == b"UI" else b" "
    elif isinstance(value, int):
        value = struct.pack("<H", value) if vr == b"US" else struct.pack("<I", value)
    tag = struct.pack("<HH", group, elem)
    if vr in LONG_VR:
        return tag + vr + b"\0\0" + struct.pack("<I", len(value)) + value
    return tag + vr + struct.pack("<H", len(value)) + value


def dicom_bytes(pixels, position=(0.0, 0.0, 0.0), series="1.2.826.0.1.3680043.2.1125.7.1", instance=1,
                modality="CT", spacing=(SPACING[0], SPACING[1]), thickness=SPACING[2], rows=None, cols=None,
                pixel_length=None):
    h, w = pixels.shape
    sop = f"{series}.{instance}"
    meta_body = (element(2, 1, b"OB", b"\0\1") + element(2, 2, b"UI", "1.2.840.10008.5.1.4.1.1.2") +
                 element(2, 3, b"UI", sop) + element(2, 0x10, b"UI", "1.2.840.10008.1.2.1") +
                 element(2, 0x12, b"UI", "1.2.826.0.1.3680043.2.1125.1"))
    meta = element(2, 0, b"UL", len(meta_body)) + meta_body
    px = pixels.astype("<i2").tobytes()
    ds = b"".join([
        element(8, 0x16, b"UI", "1.2.840.10008.5.1.4.1.1.2"), element(8, 0x18, b"UI", sop),
        element(8, 0x20, b"DA", "20010203"), element(8, 0x60, b"CS", modality),
        element(0x10, 0x10, b"PN", "CORPUS^PATIENT"), element(0x10, 0x20, b"LO", "PID-CORPUS-0042"),
        element(0x10, 0x30, b"DA", "19700101"),
        element(0x18, 0x50, b"DS", f"{thickness}"),
        element(0x20, 0x0D, b"UI", "1.2.826.0.1.3680043.2.1125.7"), element(0x20, 0x0E, b"UI", series),
        element(0x20, 0x11, b"IS", "1"), element(0x20, 0x13, b"IS", str(instance)),
        element(0x20, 0x32, b"DS", "\\".join(f"{p:g}" for p in position)),
        element(0x20, 0x37, b"DS", "1\\0\\0\\0\\1\\0"),
        element(0x28, 0x02, b"US", 1), element(0x28, 0x04, b"CS", "MONOCHROME2"),
        element(0x28, 0x10, b"US", h if rows is None else rows), element(0x28, 0x11, b"US", w if cols is None else cols),
        element(0x28, 0x30, b"DS", f"{spacing[1]}\\{spacing[0]}"),
        element(0x28, 0x100, b"US", 16), element(0x28, 0x101, b"US", 16), element(0x28, 0x102, b"US", 15),
        element(0x28, 0x103, b"US", 1), element(0x28, 0x1052, b"DS", "0"), element(0x28, 0x1053, b"DS", "1"),
    ])
    if pixel_length is None:
        pix = element(0x7FE0, 0x10, b"OW", px)
    else:  # a declared length that differs from the bytes present
        pix = struct.pack("<HH", 0x7FE0, 0x10) + b"OW\0\0" + struct.pack("<I", pixel_length) + px
    return b"\0" * 128 + b"DICM" + meta + ds + pix


def dicom_series(dirpath, vol, positions=None, sizes=None, truncate_slice=None, series_of=None):
    dirpath.mkdir(parents=True, exist_ok=True)
    for k in range(vol.shape[0]):
        sl = vol[k]
        if sizes and k in sizes:
            sl = np.zeros(sizes[k], np.int16)
        z = positions[k] if positions else k * SPACING[2]
        series = series_of(k) if series_of else "1.2.826.0.1.3680043.2.1125.7.1"
        b = dicom_bytes(sl, position=(0.0, 0.0, z), instance=k + 1, series=series)
        if truncate_slice is not None and k == truncate_slice:
            b = b[: len(b) - sl.size]  # half of the pixel data gone
        (dirpath / f"slice{k:03d}.dcm").write_bytes(b)


# ---------------------------------------------------------------- the corpus
def main():
    out = Path(sys.argv[1])
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    cases = []

    def add(name, data, kind, expect, why, suffix):
        p = out / (name + suffix)
        if isinstance(data, bytes):
            p.write_bytes(data)
        cases.append({"name": name, "path": p.name, "kind": kind, "expect": expect, "why": why})

    vol = base_volume()
    good = nifti_bytes(vol)
    nvox = vol.size

    # NIfTI, plain and gzip
    for gz in (False, True):
        sfx = ".nii.gz" if gz else ".nii"
        tag = "niigz" if gz else "nii"
        z = (lambda b: gzip.compress(b, 6)) if gz else (lambda b: b)
        add(f"{tag}-valid", z(good), "3d", "accept", "valid control", sfx)
        add(f"{tag}-valid-qform", z(nifti_bytes(vol, sform=False)), "3d", "accept", "valid control (qform only)", sfx)
        for cut in (2, 4, 1000, len(good) // 2):
            add(f"{tag}-truncated-{cut}", z(good[:-cut]), "3d", "refuse", f"{cut} bytes cut off the end", sfx)
        add(f"{tag}-header-only", z(good[:352]), "3d", "refuse", "header without voxels", sfx)
        add(f"{tag}-short-header", z(good[:100]), "3d", "refuse", "100 bytes", sfx)
        for name, off in (("past-end", 352.0 + 2 * nvox + 4096), ("inside-header", 100.0), ("negative", -8.0),
                          ("nan", float("nan")), ("huge", 1.99e36)):
            add(f"{tag}-voxoffset-{name}", z(nifti_bytes(vol, vox_offset=off)), "3d", "refuse", f"vox_offset {name}", sfx)
        for axis in (1, 2, 3):
            for bad in (0.0, float("nan"), float("inf"), -2.0):
                # Without an sform the pixdim is the spacing; with one, ITK still reads it.
                add(f"{tag}-pixdim{axis}-{bad}", z(nifti_bytes(vol, sform=False, patch=[(76 + 4 * axis, "<f", bad)])),
                    "3d", "refuse", f"pixdim[{axis}] = {bad}", sfx)
        if gz:
            continue  # the header variants below need not be repeated compressed
        add(f"{tag}-dim2-zero", nifti_bytes(vol, patch=[(44, "<h", 0)]), "3d", "refuse", "dim[2] = 0", sfx)
        add(f"{tag}-dim-negative", nifti_bytes(vol, patch=[(42, "<h", -5)]), "3d", "refuse", "dim[1] = -5", sfx)
        add(f"{tag}-ndim-zero", nifti_bytes(vol, patch=[(40, "<h", 0)]), "3d", "refuse", "dim[0] = 0", sfx)
        add(f"{tag}-ndim-nine", nifti_bytes(vol, patch=[(40, "<h", 9)]), "3d", "refuse", "dim[0] = 9", sfx)
        add(f"{tag}-huge-dims", nifti_bytes(vol, patch=[(42, "<3h", (32000, 32000, 32000))]), "3d", "refuse",
            "32000^3 voxels declared", sfx)
        add(f"{tag}-datatype-unknown", nifti_bytes(vol, patch=[(70, "<h", 999)]), "3d", "refuse", "datatype 999", sfx)
        add(f"{tag}-bitpix-mismatch", nifti_bytes(vol, patch=[(72, "<h", 64)]), "3d", "refuse", "bitpix 64 for int16", sfx)
        add(f"{tag}-sform-nan", nifti_bytes(vol, patch=[(280, "<f", float("nan"))]), "3d", "refuse", "NaN in srow_x", sfx)
        add(f"{tag}-sform-inf", nifti_bytes(vol, patch=[(320, "<f", float("inf"))]), "3d", "refuse", "Inf in srow_z", sfx)
        add(f"{tag}-sform-singular", nifti_bytes(vol, patch=[(280, "<12f", (0,) * 12)]), "3d", "refuse",
            "all-zero sform", sfx)
        add(f"{tag}-qform-nan", nifti_bytes(vol, sform=False, patch=[(256, "<f", float("nan"))]), "3d", "refuse",
            "NaN quaternion", sfx)
        add(f"{tag}-qform-not-unit", nifti_bytes(vol, sform=False, patch=[(256, "<3f", (0.9, 0.9, 0.9))]), "3d",
            "refuse", "quaternion b^2+c^2+d^2 > 1", sfx)
        add(f"{tag}-qoffset-inf", nifti_bytes(vol, sform=False, patch=[(268, "<f", float("inf"))]), "3d", "refuse",
            "Inf origin", sfx)
        add(f"{tag}-4d", nifti_bytes(np.concatenate([vol, vol]), patch=[(40, "<5h", (4, NX, NY, NZ, 2))]), "3d",
            "refuse", "4D image", sfx)
        add(f"{tag}-bad-magic", nifti_bytes(vol, patch=[(0, "<i", 1234)]), "3d", "refuse", "sizeof_hdr 1234", sfx)
        add(f"{tag}-zeros", bytes(4096), "3d", "refuse", "all zero bytes", sfx)
        add(f"{tag}-random", np.random.default_rng(7).integers(0, 256, 5000, dtype=np.uint8).tobytes(), "3d",
            "refuse", "random bytes", sfx)
        add(f"{tag}-empty", b"", "3d", "refuse", "empty file", sfx)
        add(f"{tag}-byteswapped", byteswapped_nifti(vol), "3d", "accept", "valid control (big-endian)", sfx)
        for name, values in (("nan-voxels", [np.nan] * 5), ("inf-voxels", [np.inf, -np.inf])):
            f = vol.astype(np.float32)
            f.flat[100:100 + len(values)] = values
            add(f"{tag}-{name}", nifti_bytes(f), "3d", "refuse", name, sfx)
        add(f"{tag}-all-nan", nifti_bytes(np.full(vol.shape, np.nan, np.float32)), "3d", "refuse", "all voxels NaN", sfx)
    gzgood = gzip.compress(good)
    broken = bytearray(gzgood)
    broken[len(broken) // 2:len(broken) // 2 + 16] = bytes(16)
    add("niigz-corrupt-stream", bytes(broken), "3d", "refuse", "16 zeroed bytes mid-stream", ".nii.gz")
    add("niigz-cut-stream", gzgood[: len(gzgood) // 2], "3d", "refuse", "gzip stream cut in half", ".nii.gz")
    add("niigz-not-gzip", good, "3d", "accept", "valid control (plain NIfTI named .nii.gz)", ".nii.gz")

    # MetaImage
    add("mha-valid", mha_bytes(vol), "3d", "accept", "valid control", ".mha")
    add("mha-valid-compressed", mha_bytes(vol, compress=True), "3d", "accept", "valid control (zlib)", ".mha")
    raw = vol.astype("<i2").tobytes()
    add("mha-truncated-third", mha_bytes(vol, data=raw[: len(raw) // 3]), "3d", "refuse", "a third of the voxels", ".mha")
    add("mha-truncated-2", mha_bytes(vol, data=raw[:-2]), "3d", "refuse", "2 bytes short", ".mha")
    comp = zlib.compress(raw)
    add("mha-compressed-size-small", mha_bytes(vol, compress=True, fields={"CompressedDataSize": str(len(comp) // 3)}),
        "3d", "refuse", "CompressedDataSize a third of the stream", ".mha")
    add("mha-compressed-size-large", mha_bytes(vol, compress=True, fields={"CompressedDataSize": str(len(comp) * 3)}),
        "3d", "refuse", "CompressedDataSize past the end", ".mha")
    txt = mha_bytes(vol, compress=True)
    add("mha-compressed-cut", txt[: len(txt) - len(comp) // 2], "3d", "refuse", "zlib stream cut in half", ".mha")
    for name, fields in (("spacing-zero", {"ElementSpacing": "0 1 1"}), ("spacing-nan", {"ElementSpacing": "1 nan 1"}),
                         ("spacing-negative", {"ElementSpacing": "1 1 -2"}), ("spacing-inf", {"ElementSpacing": "inf 1 1"}),
                         ("dimsize-zero", {"DimSize": f"{NX} 0 {NZ}"}), ("dimsize-negative", {"DimSize": f"{NX} -3 {NZ}"}),
                         ("dimsize-huge", {"DimSize": "100000 100000 100000"}),
                         ("type-unknown", {"ElementType": "MET_WIBBLE"}),
                         ("matrix-nan", {"TransformMatrix": "1 0 0 0 nan 0 0 0 1"}),
                         ("matrix-singular", {"TransformMatrix": "1 0 0 1 0 0 0 0 1"}),
                         ("matrix-skewed", {"TransformMatrix": "1 0 0 0.5 1 0 0 0 1"}),
                         ("offset-inf", {"Offset": "0 inf 0"}),
                         ("ndims-4", {"NDims": "4", "DimSize": f"{NX} {NY} {NZ // 2} 2"}),
                         ("datafile-missing", {"ElementDataFile": "missing.raw"}),
                         ("datafile-devzero", {"ElementDataFile": "/dev/zero"})):
        data = b"" if name.startswith("datafile") else None
        add(f"mha-{name}", mha_bytes(vol, fields=fields, data=data), "3d", "refuse", name, ".mha")
    add("mha-no-dimsize", mha_bytes(vol, drop=("DimSize",)), "3d", "refuse", "no DimSize", ".mha")
    f = vol.astype(np.float32)
    f.flat[50] = np.nan
    add("mha-nan-voxel", mha_bytes(f, fields={"ElementType": "MET_FLOAT"}, data=f.astype("<f4").tobytes()), "3d",
        "refuse", "a NaN voxel", ".mha")
    (out / "mhd-raw-short.raw").write_bytes(raw[: len(raw) // 2])
    add("mhd-raw-short", mha_bytes(vol, fields={"ElementDataFile": "mhd-raw-short.raw"}, data=b""), "3d", "refuse",
        "detached data file half as long", ".mhd")
    (out / "mhd-valid.raw").write_bytes(raw)
    add("mhd-valid", mha_bytes(vol, fields={"ElementDataFile": "mhd-valid.raw"}, data=b""), "3d", "accept",
        "valid control (detached data)", ".mhd")

    # NRRD
    add("nrrd-valid", nrrd_bytes(vol), "3d", "accept", "valid control", ".nrrd")
    add("nrrd-valid-gzip", nrrd_bytes(vol, encoding="gzip"), "3d", "accept", "valid control (gzip)", ".nrrd")
    add("nrrd-truncated", nrrd_bytes(vol, data=raw[: len(raw) // 2]), "3d", "refuse", "half the voxels", ".nrrd")
    add("nrrd-truncated-2", nrrd_bytes(vol, data=raw[:-2]), "3d", "refuse", "2 bytes short", ".nrrd")
    gzraw = gzip.compress(raw)
    add("nrrd-gzip-cut", nrrd_bytes(vol, encoding="gzip", data=gzraw[: len(gzraw) // 2]), "3d", "refuse",
        "gzip stream cut", ".nrrd")
    for name, fields in (("sizes-zero", {"sizes": f"{NX} 0 {NZ}"}),
                         ("direction-nan", {"space directions": "(nan,0,0) (0,1,0) (0,0,1)"}),
                         ("direction-zero", {"space directions": "(0,0,0) (0,1,0) (0,0,1)"}),
                         ("direction-parallel", {"space directions": "(1,0,0) (1,0,0) (0,0,1)"}),
                         ("type-unknown", {"type": "wibble"}), ("encoding-unknown", {"encoding": "rot13"}),
                         ("dimension-nine", {"dimension": "9"}),
                         ("datafile-missing", {"data file": "missing.raw"})):
        add(f"nrrd-{name}", nrrd_bytes(vol, fields=fields), "3d", "refuse", name, ".nrrd")
    add("nrrd-spacings-nan", nrrd_bytes(vol, fields={"spacings": "1 nan 1"}, drop=("space directions", "space", "space origin")),
        "3d", "refuse", "NaN spacing", ".nrrd")
    add("nrrd-no-magic", nrrd_bytes(vol)[9:], "3d", "refuse", "no NRRD magic", ".nrrd")

    # PNG
    pic = base_picture()
    gp = png_bytes(pic)
    add("png-valid", gp, "2d", "accept", "valid control", ".png")
    for cut in (8, 20, 33, 50, len(gp) // 2):
        add(f"png-cut-{cut}", gp[:cut], "2d", "refuse", f"first {cut} bytes", ".png")
    add("png-no-iend", gp[:-12], "2d", "refuse", "IEND chunk missing", ".png")
    add("png-bad-crc", png_bytes(pic, bad_crc=True), "2d", "refuse", "IDAT CRC wrong", ".png")
    rows = b"".join(b"\0" + pic[r].tobytes() for r in range(pic.shape[0]))
    z = bytearray(zlib.compress(rows))
    z[len(z) // 2:len(z) // 2 + 8] = b"\xff" * 8
    add("png-corrupt-deflate", png_bytes(pic, idat=bytes(z)), "2d", "refuse", "corrupt deflate, valid CRC", ".png")
    add("png-short-idat", png_bytes(pic, idat=zlib.compress(rows[: len(rows) // 2])), "2d", "refuse",
        "half the rows in IDAT", ".png")
    add("png-bad-filter", png_bytes(pic, filters=9), "2d", "refuse", "row filter type 9", ".png")
    add("png-width-zero", png_bytes(pic, width=0), "2d", "refuse", "width 0", ".png")
    add("png-height-huge", png_bytes(pic, height=2 ** 30), "2d", "refuse", "2^30 rows declared", ".png")
    add("png-depth-invalid", png_bytes(pic, depth=7), "2d", "refuse", "bit depth 7", ".png")
    add("png-colour-invalid", png_bytes(pic, colour=5), "2d", "refuse", "colour type 5", ".png")
    add("png-not-png", b"GIF89a" + bytes(200), "2d", "refuse", "a GIF header named .png", ".png")
    pic16 = (pic.astype(np.uint16) * 200)
    rows16 = b"".join(b"\0" + pic16[r].astype(">u2").tobytes() for r in range(pic.shape[0]))
    add("png-valid-16bit", png_bytes(pic, depth=16, idat=zlib.compress(rows16)), "2d", "accept", "valid control (16-bit)",
        ".png")
    nanpng = b"\x89PNG\r\n\x1a\n" + bytes(100)
    add("png-zero-chunks", nanpng, "2d", "refuse", "signature then zeros", ".png")

    # JPEG
    gj = jpeg_bytes(pic)
    add("jpeg-valid", gj, "2d", "accept", "valid control", ".jpg")
    add("jpeg-cut-half", gj[: len(gj) // 2], "2d", "refuse", "cut in half", ".jpg")
    add("jpeg-cut-half-eoi", gj[: len(gj) // 2] + b"\xff\xd9", "2d", "refuse", "cut in half, end marker appended", ".jpg")
    add("jpeg-cut-100", gj[:100], "2d", "refuse", "first 100 bytes", ".jpg")
    add("jpeg-no-soi", gj[2:], "2d", "refuse", "start marker missing", ".jpg")
    g = bytearray(gj)
    sos = gj.find(b"\xff\xda")
    g[sos + 40:sos + 48] = b"\xff\x00\xff\xd0\xff\x00\x13\x37"
    add("jpeg-garbled-scan", bytes(g), "2d", "refuse", "garbage in the entropy-coded data", ".jpg")
    h = bytearray(gj)
    sof = gj.find(b"\xff\xc0")
    struct.pack_into(">HH", h, sof + 5, 60000, 60000)
    add("jpeg-huge-dims", bytes(h), "2d", "refuse", "60000 x 60000 declared", ".jpg")

    # DICOM: single files and series directories
    pic16 = pic.astype(np.int16) * 4
    gd = dicom_bytes(pic16, modality="DX")
    add("dcm-valid", gd, "2d", "accept", "valid control (DX radiograph)", ".dcm")
    add("dcm-truncated-pixels", gd[: len(gd) - pic16.size], "2d", "refuse", "half the pixel data", ".dcm")
    add("dcm-pixel-length-huge", dicom_bytes(pic16, modality="DX", pixel_length=0xFFFFFFF0), "2d", "refuse",
        "pixel data element claims 4 GB", ".dcm")
    add("dcm-rows-zero", dicom_bytes(pic16, modality="DX", rows=0), "2d", "refuse", "Rows 0", ".dcm")
    add("dcm-rows-huge", dicom_bytes(pic16, modality="DX", rows=65535, cols=65535), "2d", "refuse",
        "65535 x 65535 declared in 8 KB", ".dcm")
    gh = bytearray(gd)
    pos = gd.find(b"\x10\x00\x10\x00PN")  # PatientName: garble its length and everything after
    gh[pos + 6:pos + 8] = b"\xff\xff"
    gh[pos + 8:] = np.random.default_rng(3).integers(0, 256, len(gh) - pos - 8, dtype=np.uint8).tobytes()
    add("dcm-garbled-header", bytes(gh), "2d", "refuse", "garbled header", ".dcm")
    add("dcm-preamble-only", gd[:132], "2d", "refuse", "preamble and magic only", ".dcm")
    # Found by scripts/fuzz.sh: PatientName's tag turned into Rows', so Rows appears twice,
    # first as PN. GDCM keeps the first and asserts (abort) reading it as US.
    pn = gd.find(b"\x10\x00\x10\x00PN")
    add("dcm-rows-twice-first-as-pn", gd[:pn] + b"\x28\x00\x10\x00" + gd[pn + 4:], "2d", "refuse",
        "Rows twice, the first with VR PN", ".dcm")
    # Also found by scripts/fuzz.sh: a meta element with a VR no standard has (GDCM asserts).
    sop_vr = gd.find(b"\x02\x00\x03\x00UI")
    add("dcm-unknown-vr", gd[:sop_vr + 4] + b"UM" + gd[sop_vr + 6:], "2d", "refuse", "VR 'UM' in the meta group", ".dcm")
    rows = gd.find(b"\x28\x00\x10\x00US")
    add("dcm-rows-wrong-vr", gd[:rows + 4] + b"SS" + gd[rows + 6:], "2d", "refuse", "Rows with VR SS, not US", ".dcm")
    add("dcm-columns-twice", gd[:rows + 10] + gd[rows + 10:rows + 20] + gd[rows + 10:], "2d", "refuse",
        "Columns given twice (ambiguous: GDCM keeps the first)", ".dcm")

    series_cases = [
        ("series-valid", {}, "accept", "valid control (24 slices)"),
        ("series-truncated-slice", {"truncate_slice": 11}, "refuse", "one slice cut short"),
        ("series-duplicate-position", {"positions": [k * SPACING[2] if k != 12 else 11 * SPACING[2] for k in range(NZ)]},
         "refuse", "two slices at one position"),
        ("series-gap", {"positions": [k * SPACING[2] + (SPACING[2] if k >= 12 else 0) for k in range(NZ)]}, "refuse",
         "a slice missing in the middle"),
        ("series-other-size", {"sizes": {5: (20, 20)}}, "refuse", "one slice of another size"),
        ("series-two-series", {"series_of": lambda k: "1.2.826.0.1.3680043.2.1125.7.1" if k < 16 else
                               "1.2.826.0.1.3680043.2.1125.7.2"}, "refuse", "two series in one folder"),
    ]
    for name, kw, expect, why in series_cases:
        dicom_series(out / name, vol, **kw)
        cases.append({"name": name, "path": name, "kind": "3d", "expect": expect, "why": why})
    d = out / "series-junk-slice"
    dicom_series(d, vol)
    (d / "slice099.dcm").write_bytes(b"\0" * 128 + b"DICM" + bytes(40))
    cases.append({"name": "series-junk-slice", "path": d.name, "kind": "3d", "expect": "refuse",
                  "why": "a broken file among the slices"})

    # The file system: links, devices, names
    os.symlink("loop-b.nii.gz", out / "loop-a.nii.gz")
    os.symlink("loop-a.nii.gz", out / "loop-b.nii.gz")
    cases.append({"name": "fs-symlink-loop", "path": "loop-a.nii.gz", "kind": "any", "expect": "refuse",
                  "why": "symlink loop"})
    os.symlink("nowhere.nii.gz", out / "dangling.nii.gz")
    cases.append({"name": "fs-dangling-link", "path": "dangling.nii.gz", "kind": "any", "expect": "refuse",
                  "why": "dangling symlink"})
    os.mkfifo(out / "fifo.nii.gz")
    cases.append({"name": "fs-fifo", "path": "fifo.nii.gz", "kind": "any", "expect": "refuse", "why": "a FIFO"})
    os.symlink("/dev/zero", out / "devzero.nii.gz")
    cases.append({"name": "fs-dev-zero", "path": "devzero.nii.gz", "kind": "any", "expect": "refuse",
                  "why": "link to /dev/zero"})
    os.symlink("/dev/urandom", out / "devrandom.png")
    cases.append({"name": "fs-dev-urandom", "path": "devrandom.png", "kind": "any", "expect": "refuse",
                  "why": "link to /dev/urandom"})
    (out / "dir.nii.gz").mkdir()
    cases.append({"name": "fs-directory-named-nii", "path": "dir.nii.gz", "kind": "any", "expect": "refuse",
                  "why": "an empty directory named .nii.gz"})
    add("fs-control-chars-\x1b[31mred\x07", good[:-4], "any", "refuse", "control characters in the name", ".nii")
    (out / "binary-list.txt").write_bytes(b"\x1b[2J\x1b[31m\x00\x07garbage\x9b\xff\n" + bytes(range(1, 32)) + b"\n")
    cases.append({"name": "fs-binary-list", "path": "binary-list.txt", "kind": "any", "expect": "refuse",
                  "why": "a binary list file"})
    (out / "list-of-missing.txt").write_text("nothing-here.nii.gz\nalso-missing.png\n")
    # Two studies, both failing: exit 3 (some failed), each named in its own error line.
    cases.append({"name": "fs-list-of-missing", "path": "list-of-missing.txt", "kind": "any", "expect": "refuse",
                  "why": "a list of missing files", "status": 3, "names": ["nothing-here.nii.gz", "also-missing.png"]})

    (out / "manifest.json").write_text(json.dumps(cases, indent=1) + "\n")
    print(f"{len(cases)} cases in {out}")


if __name__ == "__main__":
    main()
