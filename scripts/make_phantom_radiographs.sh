#!/usr/bin/env bash
# Makes N synthetic frontal radiographs with spine-phantom, with varied curves (single and
# S-shaped, both directions), apex heights and pixel sizes, for fine-tuning the landmark
# model on the phantom domain. Usage: scripts/make_phantom_radiographs.sh OUTDIR N [SEED]
set -euo pipefail
cd "$(dirname "$0")/.."
out=$1
n=$2
seed=${3:-1000}
mkdir -p "$out"
for ((i = 0; i < n; i++)); do
  s=$((seed + i))
  # Deterministic parameters from the seed (bash arithmetic, no randomness source needed).
  cobb=$(( (s * 37) % 91 - 45 ))
  apex=$(printf '0.%02d' $(( 30 + (s * 13) % 41 )))
  second=$(( (s * 17) % 3 == 0 ? -(cobb * 6 / 10) : 0 ))
  pixel=$(printf '0.%02d' $(( 45 + (s * 7) % 26 )))
  build/bin/spine-phantom --kind xray --scoliosis "$cobb" --apex "$apex" --second-curve "$second" \
    --pixel "$pixel" --seed "$s" -q --force -o "$out" --name "xr-$s"
done
echo "$n phantom radiographs in $out"
