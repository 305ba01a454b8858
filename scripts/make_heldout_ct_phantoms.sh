#!/usr/bin/env bash
# The held-out CT torso phantoms the CT checks score (seeds 5000.., never used in training;
# SYNTHETIC): heldout-00 .. heldout-(N-1), varying in the covered levels, scoliosis and
# noise. Used by scripts/eval_seg_ct.sh and scripts/eval_seg_ct_thickness.py, so both
# score the same phantoms.
#   scripts/make_heldout_ct_phantoms.sh OUTDIR [N]
set -euo pipefail
out=${1:?usage: make_heldout_ct_phantoms.sh OUTDIR [N]}
n=${2:-8}
bin="$(cd "$(dirname "$0")/.." && pwd)/build/bin/spine-phantom"
for ((i = 0; i < n; i++)); do
  first=$(( 2 + (i * 5) % 10 ))
  last=$([ $((i % 4)) = 3 ] && echo L4 || echo L5)
  "$bin" --kind ct --torso --first "T$first" --last "$last" --scoliosis $(( (i * 17) % 41 - 20 )) \
    --noise $(( 1 + i % 2 )) --margin 10 --seed $((5000 + i)) -q -o "$out" --name "$(printf 'heldout-%02d' "$i")" \
    --resume
done
