#!/usr/bin/env bash
# End-to-end seconds per radiograph on this machine: spine-cobb (C++, models loaded once)
# side by side with the same models driven from Python (eager PyTorch), same images,
# same thread count. Uses the AASCE validation images when ../shared/data is present,
# otherwise synthetic phantom radiographs. Usage: scripts/bench_cobb.sh [N] [THREADS]
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-20}
threads=${2:-2}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
if [ -d ../shared/data/xray-ap-aasce/images ]; then
  /usr/bin/python3 -c "
import sys; sys.path.insert(0, 'scripts')
import train_cobb
from cobb import data
lm, _ = data.read_table()
_, val, _ = train_cobb.split(lm)
print('\n'.join(f'{data.DATA}/images/{v}' for v in val[:$n]))" > "$work/list.txt"
  echo "images: $n AASCE validation radiographs"
else
  build/bin/spine-phantom --kind xray --pixel 0.4 --scoliosis 25 --count "$n" -q -o "$work/ph" --name xr
  ls "$work"/ph/*/image.png > "$work/list.txt"
  echo "images: $n synthetic phantom radiographs"
fi
for mode in "--no-overlay" ""; do
  build/bin/spine-cobb "$work/list.txt" -o "$work/cpp$mode" --threads "$threads" $mode 2>&1 |
    sed -n 's/.*summary: .*; \([0-9.]*\) s per study.*/\1/p' |
    xargs -I{} echo "spine-cobb ${mode:-(with overlay)}: {} s per image"
done
# Where a film's time goes (the with-overlay run), mean per stage.
/usr/bin/python3 scripts/stage_profile.py spine-cobb "$work/cpp/*/cobb.json" read_s spine_finder_s landmarks_s angles_and_flags_s overlay_s
/usr/bin/python3 scripts/bench_cobb.py "$work/list.txt" "$work/py" "$threads"
