#!/usr/bin/env bash
# End-to-end seconds per radiograph on this machine: spine-cobb (C++, models loaded once)
# side by side with the same models driven from Python (scripts/bench_cobb.py), same
# images, same thread count; each with the float landmark stages (the default) and with
# their int8 copies (--precision int8). Uses the AASCE validation images when ../shared/data is present,
# otherwise synthetic phantom radiographs. Usage: scripts/bench_cobb.sh [N] [THREADS] [ROUNDS]
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
# The same code ran 0.34 s a film on one 2-core machine and 0.60 s on another (2026-12-05
# and -06): say which CPU and vector extensions this run had, so figures are compared
# like with like.
echo "cpu: $(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1), $(nproc) cores," \
  "vector extensions: $(grep -o -w 'avx[0-9a-z_]*' /proc/cpuinfo | sort -u | tr '\n' ' ')"
# The machine is shared and its speed drifts by tens of per cent within minutes, so the
# C++ runs and the Python run alternate, ROUNDS times, and the medians are compared.
rounds=${3:-3}
# spine-cobb with its default (float) landmark stages, the same with every network of a
# pair reading both sides of the film (--ensemble-reading all, the default until
# 2026-12-07), and with --precision int8 (their int8 copies, scripts/quantize_cobb.py);
# Python runs the default and int8 with the same files and the same passes.
for r in $(seq "$rounds"); do
  for mode in "--no-overlay" "--no-overlay --ensemble-reading all" "--no-overlay --precision int8" ""; do
    rm -rf "$work/cpp"
    build/bin/spine-cobb "$work/list.txt" -o "$work/cpp" --threads "$threads" $mode 2>&1 |
      sed -n 's/.*summary: .*; \([0-9.]*\) s per study.*/\1/p' |
      xargs -I{} echo "round $r spine-cobb ${mode:-(with overlay)}: {} s per image"
  done
  for precision in int8 fp32; do
    rm -rf "$work/py"
    /usr/bin/python3 scripts/bench_cobb.py "$work/list.txt" "$work/py" "$threads" "$precision" split-corners | sed "s/^/round $r /"
  done
done | tee "$work/rounds.txt"
# Where a film's time goes (the last run of spine-cobb, with overlay), mean per stage.
/usr/bin/python3 scripts/stage_profile.py spine-cobb "$work/cpp/*/cobb.json" read_s spine_finder_s landmarks_s angles_and_flags_s overlay_s
/usr/bin/python3 - "$work/rounds.txt" <<'PY'
import re, statistics, sys
runs = {}
for line in open(sys.argv[1]):
    m = re.match(r"round \d+ (.*?): ([0-9.]+) s per image", line)
    if m:
        runs.setdefault(m.group(1), []).append(float(m.group(2)))
med = {k: statistics.median(v) for k, v in runs.items()}
for k, v in med.items():
    ratio = ""
    if k.startswith("spine-cobb"):
        py = med.get("python (int8)" if "int8" in k else None if "reading all" in k else "python (fp32)")
        ratio = f", {py / v:.2f}x the median of Python with the same models" if py else ""
    print(f"median of {len(runs[k])}: {k} {v:.3f} s per image{ratio}")
cpp, cpp_int8 = med.get("spine-cobb --no-overlay"), med.get("spine-cobb --no-overlay --precision int8")
if cpp and cpp_int8:
    print(f"--precision int8: {cpp / cpp_int8:.2f}x the default's speed (spine-cobb --no-overlay)")
cpp_all = med.get("spine-cobb --no-overlay --ensemble-reading all")
if cpp and cpp_all:
    print(f"the default (split-corners): {cpp_all / cpp:.2f}x the speed of --ensemble-reading all")
PY
