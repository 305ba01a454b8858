#!/usr/bin/env bash
# Validation of the MR model on the held-out MRI split (scripts/seg/data.py mr_split),
# with the C++ tools as users run them: spine-seg for Dice, spine-detect for identification.
#   scripts/eval_seg_mr.sh [OUTDIR] [extra spine-seg options...]
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
out=${1:-$root/work-data/eval-mr}
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
"$root/build/bin/spine-detect" "$out/inputs.txt" -o "$out/seg-detect" --threads 2 --force "$@" || true
# identification from spine-detect's vertebrae.json next to spine-seg's labels
for d in "$out"/seg-detect/*/; do
  s=$(basename "$d"); [ -f "$d/vertebrae.json" ] && cp "$d/vertebrae.json" "$out/seg/$s/vertebrae.json"
done
/usr/bin/python3 "$root/scripts/eval_seg.py" --pred "$out/seg" --cases "$out/cases.tsv" --json "$out/metrics.json"
