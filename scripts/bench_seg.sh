#!/usr/bin/env bash
# Seconds and peak memory per volume for spine-seg on 2 cores, coarse-to-fine (default)
# side by side with a plain whole-volume sliding window of the same model (--no-coarse):
#  - a lumbar MRI: a real held-out volume of ../shared/data when present, else an MR phantom
#  - a CT of 512 x 512 x 300 voxels at 0.8 x 0.8 x 1 mm: a torso phantom (T11..L5 with
#    ribs, organs, sacrum and pelvis), padded with air or cropped head to foot around the
#    spine to exactly that size
# Each run is one process (load, inference, writing outputs included); peak memory is
# the process's maximum resident set size. Usage: scripts/bench_seg.sh [THREADS] [ROUNDS]
# With ROUNDS > 1 the four runs are repeated in turn and the medians compared: on a shared
# virtual machine one run of each can be 20 % off in either direction.
set -euo pipefail
cd "$(dirname "$0")/.."
threads=${1:-2}
rounds=${2:-1}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mri=../shared/data/mri-lumbar-vertebrae/vb3-01_image.nii.gz
if [ ! -f "$mri" ]; then
  build/bin/spine-phantom --kind mr-t2 --first T12 --last L5 --spacing 1 --bias-field -q -o "$work/ph" --name mr
  mri=$work/ph/mr/image.nii.gz
fi
ct=$work/ct512.nii.gz
scripts/make_bench_ct.sh "$ct"
size() { /usr/bin/python3 -c "
import sys; sys.path.insert(0, 'scripts')
from lib.nifti import read_nifti
a, aff = read_nifti('$1'); print('x'.join(map(str, a.shape)))"; }
echo "MRI: $mri ($(size "$mri"))"
echo "CT:  torso phantom $(size "$ct") voxels, 0.8 x 0.8 x 1 mm"
# BENCH_BASELINE=EXE adds the same four runs of another spine-seg executable (one built
# from an earlier commit, beside build/bin so that it finds the same plug-in and models) in
# each round, so that two versions are compared side by side on the machine's same stretch.
exes=("build/bin/spine-seg")
[ -n "${BENCH_BASELINE:-}" ] && exes+=("$BENCH_BASELINE")
run() {  # name input options...
  local name=$1 input=$2; shift 2
  # stderr to a file: the models' limitations are logged even with -q; shown on failure.
  if ! timeout "${BENCH_LIMIT_S:-900}" /usr/bin/time -f "%e %M" -o "$work/time" "$exe" "$input" \
      -o "$work/out-$name" --threads "$threads" -q --force "$@" 2> "$work/stderr"; then
    printf '%-28s failed, or did not finish within %s s\n' "$name" "${BENCH_LIMIT_S:-900}"
    tail -3 "$work/stderr"; return 0
  fi
  read -r secs kb < "$work/time"
  printf '%-28s %7.1f s  %7.0f MiB peak\n' "$name" "$secs" "$((kb / 1024))"
  echo "$secs $kb" >> "$work/runs-${name// /_}"
}
# One untimed run first: the first spine-seg process after the set-up pays for loading
# libtorch from disk (measured: 18-49 s instead of 4-5 s), which is not the method's cost.
build/bin/spine-seg "$mri" -o "$work/warm-up" --threads "$threads" -q > /dev/null 2>&1 || true
for ((round = 1; round <= rounds; round++)); do
  [ "$rounds" -gt 1 ] && echo "round $round of $rounds"
  for exe in "${exes[@]}"; do
    tag=""
    [ "$exe" != "${exes[0]}" ] && tag=" (baseline)"
    run "mri coarse-to-fine$tag" "$mri"
    run "mri whole-volume$tag" "$mri" --no-coarse
    run "ct coarse-to-fine$tag" "$ct"
    run "ct whole-volume$tag" "$ct" --no-coarse
  done
done
median() {  # FILE COLUMN: the median of that column
  cut -d' ' -f"$2" "$1" | sort -g | awk '{v[NR]=$1} END {print (NR % 2) ? v[(NR+1)/2] : (v[NR/2]+v[NR/2+1])/2}'
}
for tag in "" " (baseline)"; do
  [ -f "$work/runs-ct_coarse-to-fine${tag// /_}" ] || continue
  if [ "$rounds" -gt 1 ]; then
    for name in "mri coarse-to-fine" "mri whole-volume" "ct coarse-to-fine" "ct whole-volume"; do
      f="$work/runs-${name// /_}${tag// /_}"
      [ -f "$f" ] || continue
      printf '%-39s median %7.1f s  %7.0f MiB peak (%s runs)\n' "$name$tag" "$(median "$f" 1)" \
        "$(awk -v kb="$(median "$f" 2)" 'BEGIN {print kb / 1024}')" "$(wc -l < "$f")"
    done
  fi
  c="$work/runs-ct_coarse-to-fine${tag// /_}" w="$work/runs-ct_whole-volume${tag// /_}"
  [ -f "$w" ] || continue
  printf 'ct: coarse to fine %.1fx faster than the whole-volume window%s (medians)\n' \
    "$(awk -v a="$(median "$w" 1)" -v b="$(median "$c" 1)" 'BEGIN {print a / b}')" "$tag"
  # The same ratio round by round: both runs of a round meet the same stretch of the
  # machine, whose speed drifts between rounds.
  paste -d' ' "$w" "$c" | awk '{printf "%.1f\n", $1 / $3}' > "$work/ratios"
  printf '    per round: %s; median %.1fx\n' "$(paste -sd' ' "$work/ratios" | sed 's/ /x, /g')x" "$(median "$work/ratios" 1)"
done
# Where a coarse-to-fine run's time goes, from its segmentation.json; the rest of the
# process's time is start-up, the model checks and the cohort files.
for name in "mri coarse-to-fine" "ct coarse-to-fine"; do
  json=$(ls -d "$work/out-$name"/*/ 2>/dev/null | head -1)segmentation.json
  [ -f "$json" ] || continue
  /usr/bin/python3 - "$name" "$json" <<'PY'
import json, sys
t = json.load(open(sys.argv[2]))["timing"]
stages = [("read", "read_s"), ("model load", "model_load_s"), ("prepare (orient, resample, normalise)", "prepare_s"), ("coarse pass", "coarse_s"),
          ("fine pass", "fine_s"), ("instances and names", "postprocess_s"), ("back to the input grid", "restore_grid_s"),
          ("write outputs", "write_s")]
print(f"{sys.argv[1]} profile: " + ", ".join(f"{n} {t.get(k, 0):.2f} s" for n, k in stages))
PY
done
