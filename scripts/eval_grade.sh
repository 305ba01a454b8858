#!/usr/bin/env bash
# Validation of spine-grade on SPIDER's validation patients (never trained on), with the
# C++ tool as users run it: the SPIDER slices (PNG without spacing) are written as 2D
# MetaImages with their series' pixel spacing, spine-grade grades them, and
# scripts/eval_grade.py scores grades.json against gradings.csv (overall, per sequence,
# per scanner group).
#   scripts/eval_grade.sh [OUTDIR] [extra spine-grade options...]
# SUBSET=training runs it on the training patients instead: the grading model learned
# from them, so its grades there mean nothing, but the disc finding and naming (spine-seg's
# MR model, which never saw SPIDER) can be studied there without touching validation.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
data="$root/../shared/data/mri-spider-gradings"
out=$(realpath -m "${1:-$root/work-data/eval-grade}")
shift || true
[ -d "$data" ] || { echo "eval_grade: $data not found"; exit 2; }
mkdir -p "$out"
/usr/bin/python3 "$root/scripts/grade/spider_to_mha.py" "$data" "$out/mha"
subset=${SUBSET:-validation}
/usr/bin/python3 - "$data" "$out" "$subset" <<'PY'
import csv, sys
rows = [r for r in csv.DictReader(open(sys.argv[1] + "/series.csv")) if r["subset"] == sys.argv[3]]
with open(sys.argv[2] + "/inputs.txt", "w") as f:
    for r in rows:
        f.write(f"{sys.argv[2]}/mha/{r['series']}.mha\n")
print(f"{len(rows)} {sys.argv[3]} series")
PY
"$root/build/bin/spine-grade" "$out/inputs.txt" -o "$out/grades" --threads 2 --force -q "$@" || true
# card-validation.json: the figures as the model card carries them (scripts/recard_model.py)
/usr/bin/python3 "$root/scripts/eval_grade.py" "$out/grades" --data "$data" --subset "$subset" --json "$out/metrics.json" \
  --card "$out/card-validation.json" --command "scripts/eval_grade.sh ${out#"$root"/}${*:+ $*}"
