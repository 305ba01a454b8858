"""Writes each SPIDER slice (8-bit PNG without spacing) as a 2D MetaImage carrying the
pixel spacing from series.csv, so spine-grade reads every series at its own resolution.

/usr/bin/python3 scripts/grade/spider_to_mha.py ../shared/data/mri-spider-gradings work-data/spider-mha
"""
import csv
import sys
from pathlib import Path

import numpy as np
from PIL import Image


def main(data_dir, out_dir):
    data_dir, out_dir = Path(data_dir), Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    n = 0
    for row in csv.DictReader(open(data_dir / "series.csv")):
        png = data_dir / "images" / (row["series"] + ".png")
        if not png.exists():
            continue
        a = np.asarray(Image.open(png).convert("L"), dtype=np.uint8)
        # DICOM PixelSpacing is (row spacing, column spacing); MetaImage wants x then y.
        row_mm, col_mm = (float(v) for v in row["PixelSpacing"].strip("[]").split(","))
        header = ("ObjectType = Image\nNDims = 2\nBinaryData = True\nBinaryDataByteOrderMSB = False\n"
                  "CompressedData = False\nTransformMatrix = 1 0 0 1\nOffset = 0 0\n"
                  f"ElementSpacing = {col_mm} {row_mm}\nDimSize = {a.shape[1]} {a.shape[0]}\n"
                  "ElementType = MET_UCHAR\nElementDataFile = LOCAL\n")
        with open(out_dir / (row["series"] + ".mha"), "wb") as f:
            f.write(header.encode() + a.tobytes())
        n += 1
    print(f"{n} series -> {out_dir}")


if __name__ == "__main__":
    main(*sys.argv[1:3])
