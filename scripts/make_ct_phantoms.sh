#!/usr/bin/env bash
# Makes the synthetic CT training set of the CT segmentation model: spine-phantom CT
# volumes with a torso (ribs, lungs, organs, sacrum, pelvis) at 1 mm, varying in the
# covered levels, scoliosis, noise and size; deterministic (seed = index).
#   scripts/make_ct_phantoms.sh OUTDIR [COUNT]
# PHANTOM_NOISE=0 renders them without noise (the same anatomy; scripts/seg/pack.py adds
# the noise back at load time, so a packed training set compresses to a few MB).
set -euo pipefail
out=${1:?usage: make_ct_phantoms.sh OUTDIR [COUNT]}
count=${2:-36}
bin="${SPINE_PHANTOM:-$(cd "$(dirname "$0")/.." && pwd)/build/bin/spine-phantom}"
for ((i = 0; i < count; i++)); do
  first=$(( 1 + (i * 7) % 11 ))                 # T1 .. T11
  case $(( i % 6 )) in 0) last=L3 ;; 1) last=L4 ;; *) last=L5 ;; esac
  scol=$(( (i * 13) % 61 - 30 ))                # -30 .. 30 degrees
  apex=0.$(( 3 + (i * 3) % 5 ))                 # 0.3 .. 0.7
  noise=$(( 1 + i % 3 ))
  "$bin" --kind ct --torso --first "T$first" --last "$last" --scoliosis "$scol" --apex "$apex" \
    --noise "${PHANTOM_NOISE:-$noise}" --margin 10 --seed "$((1000 + i))" --name "$(printf 'ct-%03d' "$i")" -o "$out" --resume -q
done
