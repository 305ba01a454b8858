#!/usr/bin/env bash
# The benchmarks' CT: 512 x 512 x 300 voxels at 0.8 x 0.8 x 1 mm, a torso phantom
# (T11..L5 with ribs, organs, sacrum and pelvis; SYNTHETIC) padded with air or cropped
# head to foot around the spine to exactly that size. Usage: scripts/make_bench_ct.sh OUT.nii.gz
set -euo pipefail
cd "$(dirname "$0")/.."
out=$1
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
build/bin/spine-phantom --kind ct --torso --first T11 --last L5 --spacing 0.8 --margin 60 --seed 5 -q -o "$work/ph" --name ct
build/bin/spine-prep "$work/ph/ct/image.nii.gz" --resample 0.8 0.8 1.0 --pixel int16 -q -o "$work/prep"
/usr/bin/python3 - "$work/prep/image/image.nii.gz" "$work/ph/ct/labels.nii.gz" "$out" <<'PY'
import sys
import numpy as np
sys.path.insert(0, "scripts")
from lib.nifti import read_nifti, write_nifti
img, aff = read_nifti(sys.argv[1])
lab, laff = read_nifti(sys.argv[2])
size = (512, 512, 300)
zs = np.nonzero(((lab > 0) & (lab < 30)).any(axis=(0, 1)))[0]
centre_mm = (zs.min() + zs.max()) / 2 * laff[2, 2] + laff[2, 3]   # spine's head-foot centre
start = [(img.shape[0] - size[0]) // 2, (img.shape[1] - size[1]) // 2,
         int(np.clip(round((centre_mm - aff[2, 3]) / aff[2, 2]) - size[2] // 2, 0, img.shape[2] - size[2]))]
out = np.full(size, -1000, img.dtype)                                  # air where the phantom ends
src = [slice(max(s, 0), min(s + n, m)) for s, n, m in zip(start, size, img.shape)]
dst = [slice(max(-s, 0), max(-s, 0) + (b.stop - b.start)) for s, b in zip(start, src)]
out[tuple(dst)] = img[tuple(src)]
shifted = aff.copy()
shifted[:3, 3] = aff[:3, :3] @ np.array(start, dtype=float) + aff[:3, 3]
write_nifti(sys.argv[3], out, shifted)
PY
