#!/usr/bin/env bash
# What spine-measure adds to a segmentation (issue 14: at most 1 s per study on 2 cores):
# a CT torso phantom (SYNTHETIC) segmented by spine-seg, then measured with spine-seg's
# labels; prints the segmentation's wall time, spine-measure's own measure_s (from
# measurements.json, the measurements alone) and the whole spine-measure process
# (reading, measuring, overlay, writing), side by side, then where spine-measure's time
# goes (the stages in measurements.json; the rest of the process is start-up, the
# provenance's hashes and the cohort files).
#   scripts/bench_measure.sh [THREADS] [FIRST] [LAST] [SPACING]
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
threads=${1:-2}; first=${2:-T4}; last=${3:-L5}; spacing=${4:-1}
work=$(mktemp -d /tmp/spine-bench-measure-XXXXXX)
trap 'rm -rf "$work"' EXIT
bin="$root/build/bin"
"$bin/spine-phantom" --kind ct --torso --first "$first" --last "$last" --spacing "$spacing" -q -o "$work" --name ph
t0=$(date +%s.%N)
"$bin/spine-seg" "$work/ph/image.nii.gz" --threads "$threads" -q -o "$work/seg" 2>/dev/null
t1=$(date +%s.%N)
"$bin/spine-measure" "$work/ph/image.nii.gz" --labels "$work/seg" --threads "$threads" -q -o "$work/m" 2>/dev/null
t2=$(date +%s.%N)
/usr/bin/python3 - "$work/m/image/measurements.json" "$t0" "$t1" "$t2" "$first" "$last" "$spacing" "$threads" <<'PY'
import json, sys
m = json.load(open(sys.argv[1]))
t0, t1, t2 = map(float, sys.argv[2:5])
print(f"CT torso phantom {sys.argv[5]}..{sys.argv[6]} at {sys.argv[7]} mm (SYNTHETIC), {sys.argv[8]} threads: "
      f"spine-seg {t1 - t0:.1f} s; measurements {m['timing']['measure_s']:.2f} s "
      f"({100 * m['timing']['measure_s'] / (t1 - t0):.1f} % of the segmentation), whole spine-measure process "
      f"{t2 - t1:.1f} s; {len(m['vertebrae'])} vertebrae measured")
PY
/usr/bin/python3 "$root/scripts/stage_profile.py" spine-measure "$work/m/*/measurements.json" \
  read_s labels_s measure_s tables_s overlay_s
