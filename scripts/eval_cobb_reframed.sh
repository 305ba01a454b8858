#!/usr/bin/env bash
# spine-cobb on radiographs as they come, made from the AASCE validation split with fixed
# seeds (scripts/eval_cobb_reframed.py): the tight validation images, the same images
# re-framed as full-length films, both also as 512 x 512 squares, with drawn hardware, and
# images that are not frontal spine radiographs. SYNTHETIC framing around real images.
# Usage: scripts/eval_cobb_reframed.sh [OUTDIR [spine-cobb options...]] (default work-data/eval-cobb-reframed)
# SETS=DIR reads the images made in DIR instead of making them in OUTDIR (to compare
# options on the same images, e.g. SETS=work-data/eval-cobb-reframed
# scripts/eval_cobb_reframed.sh work-data/eval-nofinder --no-spine-finder).
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-work-data/eval-cobb-reframed}
shift || true
sets=${SETS:-$out}
[ -f "$sets/truth.json" ] || /usr/bin/python3 scripts/eval_cobb_reframed.py make "$sets"
# Sets made before the 512 x 512 ones existed gain them here (the same films, reduced).
[ -f "$sets/reframed-512/list.txt" ] || /usr/bin/python3 scripts/eval_cobb_reframed.py make-small "$sets"
for set in tight reframed tight-512 reframed-512 hardware not-spine; do
  mkdir -p "$out/$set"
  build/bin/spine-cobb "$sets/$set/list.txt" -o "$out/$set/results" --threads 2 --force -q "$@" > "$out/$set/log.txt" 2>&1 || true
done
/usr/bin/python3 scripts/eval_cobb_reframed.py score "$sets" "$out" | tee "$out/metrics.txt"
