#!/usr/bin/env bash
# Validation of spine-grade on SPIDER's validation patients (never trained on), with the
# C++ tool as users run it: the SPIDER slices (PNG without spacing) are written as 2D
# MetaImages with their series' pixel spacing, spine-grade grades them, and
# scripts/eval_grade.py scores grades.json against gradings.csv (overall, per sequence,
# per scanner group).
#   scripts/eval_grade.sh [OUTDIR] [extra spine-grade options...]
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
data="$root/../shared/data/mri-spider-gradings"
out=$(realpath -m "${1:-$root/work-data/eval-grade}")
shift || true
[ -d "$data" ] || { echo "eval_grade: $data not found"; exit 2; }
mkdir -p "$out"
/usr/bin/python3 "$root/scripts/grade/spider_to_mha.py" "$data" "$out/mha"
/usr/bin/python3 - "$data" "$out" <<'PY'
import csv, sys
rows = [r for r in csv.DictReader(open(sys.argv[1] + "/series.csv")) if r["subset"] == "validation"]
with open(sys.argv[2] + "/inputs.txt", "w") as f:
    for r in rows:
        f.write(f"{sys.argv[2]}/mha/{r['series']}.mha\n")
print(f"{len(rows)} validation series")
PY
"$root/build/bin/spine-grade" "$out/inputs.txt" -o "$out/grades" --threads 2 --force -q "$@" || true
/usr/bin/python3 "$root/scripts/eval_grade.py" "$out/grades" --data "$data" --subset validation --json "$out/metrics.json"
