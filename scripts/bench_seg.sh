#!/usr/bin/env bash
# Seconds and peak memory per volume for spine-seg on 2 cores, coarse-to-fine (default)
# side by side with a plain whole-volume sliding window of the same model (--no-coarse):
#  - a lumbar MRI: a real held-out volume of ../shared/data when present, else an MR phantom
#  - a CT of about 512 x 512 x 300 voxels (0.78 x 0.78 x 1.5 mm): a torso phantom
# Each run is one process (load, inference, writing outputs included); peak memory is
# the process's maximum resident set size. Usage: scripts/bench_seg.sh [THREADS]
set -euo pipefail
cd "$(dirname "$0")/.."
threads=${1:-2}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mri=../shared/data/mri-lumbar-vertebrae/vb3-01_image.nii.gz
if [ ! -f "$mri" ]; then
  build/bin/spine-phantom --kind mr-t2 --first T12 --last L5 --spacing 1 --bias-field -q -o "$work/ph" --name mr
  mri=$work/ph/mr/image.nii.gz
fi
build/bin/spine-phantom --kind ct --torso --first T9 --last L5 --spacing 0.78 --margin 45 --seed 5 -q -o "$work/ph" --name ct
build/bin/spine-prep "$work/ph/ct/image.nii.gz" --resample 0.78 0.78 1.5 --pixel int16 -q -o "$work/prep"
ct=$work/prep/image/image.nii.gz
size() { /usr/bin/python3 -c "
import sys; sys.path.insert(0, 'scripts')
from lib.nifti import read_nifti
a, aff = read_nifti('$1'); print('x'.join(map(str, a.shape)))"; }
echo "MRI: $mri ($(size "$mri"))"
echo "CT:  torso phantom $(size "$ct") voxels, 0.78 x 0.78 x 1.5 mm"
run() {  # name input options...
  local name=$1 input=$2; shift 2
  if ! timeout "${BENCH_LIMIT_S:-900}" /usr/bin/time -f "%e %M" -o "$work/time" build/bin/spine-seg "$input" \
      -o "$work/out-$name" --threads "$threads" -q "$@"; then
    printf '%-28s did not finish within %s s\n' "$name" "${BENCH_LIMIT_S:-900}"; return 0
  fi
  read -r secs kb < "$work/time"
  printf '%-28s %7.1f s  %7.0f MiB peak\n' "$name" "$secs" "$((kb / 1024))"
}
run "mri coarse-to-fine" "$mri"
run "mri whole-volume" "$mri" --no-coarse
run "ct coarse-to-fine" "$ct"
run "ct whole-volume" "$ct" --no-coarse
