#!/usr/bin/env bash
# Validation of the MR model on the held-out MRI split (scripts/seg/data.py mr_split),
# with the C++ tool as users run it (spine-seg: labels for Dice, named centroids for identification).
#   scripts/eval_seg_mr.sh [OUTDIR] [extra spine-seg options...]
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
out=$(realpath -m "${1:-$root/work-data/eval-mr}")
shift || true
mkdir -p "$out"
/usr/bin/python3 -c "
import sys; sys.path.insert(0, '$root/scripts')
from seg import data
_, val = data.mr_split()
with open('$out/inputs.txt', 'w') as f:
    for c in val: f.write(c[3] + '\n')
with open('$out/cases.tsv', 'w') as f:
    for c in val: f.write(c[0] + '_image\t' + c[4] + '\t' + c[2] + '\n')
"
"$root/build/bin/spine-seg" "$out/inputs.txt" -o "$out/seg" --threads 2 --force "$@" || true
# identification from segmentation.json's vertebrae (spine-detect runs the same pipeline)
/usr/bin/python3 "$root/scripts/eval_seg.py" --pred "$out/seg" --cases "$out/cases.tsv" --json "$out/metrics.json"
