#!/usr/bin/env bash
# Seconds per series for spine-grade on THREADS cores (default 2), end to end within one
# batch (read, segmentation, disc location, grading, grades.json, overlay.png), side by
# side with --discs-only (the same run without the grading model) so the grading stage's
# share shows as a ratio. Inputs: 20 SPIDER validation slices when ../shared is present,
# else 5 MR phantom mid-slices. Also the whole process's wall time (model loading included).
#   scripts/bench_grade.sh [THREADS]
set -euo pipefail
cd "$(dirname "$0")/.."
threads=${1:-2}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
data=../shared/data/mri-spider-gradings
if [ -d "$data" ]; then
  /usr/bin/python3 scripts/grade/spider_to_mha.py "$data" "$work/all" >/dev/null
  mkdir -p "$work/in"
  grep ',validation,' "$data/series.csv" | cut -d, -f1 | head -20 | while read -r s; do cp "$work/all/$s.mha" "$work/in/"; done
  what="20 SPIDER validation slices"
else
  for seed in 1 2 3 4 5; do
    build/bin/spine-phantom --kind mr-t2 --first T12 --last L5 --spacing 1 --seed $seed -q -o "$work/ph" --name p$seed
  done
  mkdir -p "$work/in"
  for seed in 1 2 3 4 5; do cp "$work/ph/p$seed/image.nii.gz" "$work/in/p$seed.nii.gz"; done
  what="5 MR phantom volumes"
fi
n=$(ls "$work/in" | wc -l)
run() {  # name options...
  local name=$1; shift
  local t0 t1 line
  t0=$(date +%s.%N)
  line=$(build/bin/spine-grade "$work/in" -o "$work/out-$name" --threads "$threads" "$@" 2>&1 | grep 'summary:' || true)
  t1=$(date +%s.%N)
  per=$(echo "$line" | sed -n 's/.*; \([0-9.]*\) s per study.*/\1/p')
  wall=$(/usr/bin/python3 -c "print(round($t1 - $t0, 1))")
  echo "$name: $per s per series in the batch; process wall $wall s for $n series"
  eval "per_$name=$per"
}
echo "spine-grade on $what, $threads threads"
run grade
run discs --discs-only
echo "ratio grade / discs-only: $(/usr/bin/python3 -c "print(round($per_grade / $per_discs, 3))")"
# Where a series' time goes (the grading run), mean per stage.
/usr/bin/python3 scripts/stage_profile.py spine-grade "$work/out-grade/*/grades.json" read_s segmentation_and_slice_s discs_s grading_s overlay_s
