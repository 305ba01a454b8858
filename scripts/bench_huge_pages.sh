#!/usr/bin/env bash
# What large buffers and tensors on transparent huge pages (src/core/huge_pages.cpp) buy,
# side by side in one run: the same executables with SPINE_HUGE_PAGES=0 (ordinary 4 KiB
# pages) and by default, alternating, ROUNDS times, on
#  - spine-seg, the 512 x 512 x 300 CT of scripts/make_bench_ct.sh (SYNTHETIC);
#  - spine-measure on that CT with spine-seg's labels.
# Prints each run's seconds and peak memory, the fine pass's seconds (segmentation.json),
# and the medians. Usage: scripts/bench_huge_pages.sh [THREADS] [ROUNDS]
set -euo pipefail
cd "$(dirname "$0")/.."
threads=${1:-2}
rounds=${2:-2}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
echo "transparent huge pages: $(cat /sys/kernel/mm/transparent_hugepage/enabled 2>/dev/null || echo 'not available')"
ct=$work/ct512.nii.gz
scripts/make_bench_ct.sh "$ct"
build/bin/spine-seg "$ct" -o "$work/labels" --threads "$threads" -q 2>/dev/null  # warm-up, and the labels to measure
run() {  # mode tool outdir args...
  local mode=$1 tool=$2 out=$3; shift 3
  rm -rf "$out"
  if [ "$mode" = "4k" ]; then export SPINE_HUGE_PAGES=0; else unset SPINE_HUGE_PAGES; fi
  /usr/bin/time -f "%e %M" -o "$work/time" build/bin/$tool "$@" -o "$out" --threads "$threads" -q 2>/dev/null
  unset SPINE_HUGE_PAGES
  read -r secs kb < "$work/time"
  echo "$tool $mode $secs $((kb / 1024))"
}
for r in $(seq "$rounds"); do
  for mode in 4k huge; do
    line=$(run "$mode" spine-seg "$work/seg-$mode" "$ct")
    fine=$(/usr/bin/python3 -c "import json,glob; print(json.load(open(glob.glob('$work/seg-$mode/*/segmentation.json')[0]))['timing']['fine_s'])")
    echo "$line $fine"
    run "$mode" spine-measure "$work/m-$mode" "$ct" --labels "$work/labels"
  done
done | tee "$work/runs.txt" | awk '{extra = NF > 4 ? sprintf("  (fine pass %.1f s)", $5) : ""; printf "%-13s %-4s %6.1f s %6d MiB peak%s\n", $1, $2, $3, $4, extra}'
/usr/bin/python3 - "$work/runs.txt" <<'PY'
import statistics, sys
runs = {}
for line in open(sys.argv[1]):
    f = line.split()
    runs.setdefault((f[0], f[1]), []).append(float(f[2]))
for tool in ("spine-seg", "spine-measure"):
    a, b = statistics.median(runs[(tool, "4k")]), statistics.median(runs[(tool, "huge")])
    print(f"median {tool}: 4 KiB pages {a:.1f} s, huge pages {b:.1f} s ({a / b:.2f}x)")
PY
