#!/usr/bin/env bash
# Evaluates spine-cobb (the C++ tool, both models) on the fixed validation split of
# ../shared/data/xray-ap-aasce that training never saw, and the angle code on the
# reference landmarks. Usage: scripts/eval_cobb.sh [OUTDIR [spine-cobb options...]]
# (default OUTDIR work-data/eval-cobb; e.g. --no-corner-refinement for the first stage alone)
# SPLIT=training runs the 365 training films instead (OUTDIR/training.txt), where options
# are chosen without looking at the validation split; compare two runs film by film with
# scripts/cobb_paired.py.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-work-data/eval-cobb}
shift || true
split=${SPLIT:-validation}
case "$split" in validation | training) ;; *) echo "SPLIT must be validation or training" >&2; exit 2 ;; esac
mkdir -p "$out"
/usr/bin/python3 -c "
import sys; sys.path.insert(0, 'scripts')
import train_cobb
from cobb import data
lm, _ = data.read_table()
train, val, _ = train_cobb.split(lm)
names = train if '$split' == 'training' else val
print('\n'.join(f'{data.DATA}/images/{n}' for n in names))" > "$out/$split.txt"
list="$out/$split.txt"
build/bin/spine-cobb "$list" -o "$out/results" --threads 2 --force -q "$@" || true
/usr/bin/python3 scripts/cobb_metrics.py "$list" "$out/results" | tee "$out/metrics.txt"
build/bin/spine_unit_tests --gtest_filter='Cobb.ReproducesAasceReferenceAngles' | grep "AASCE rule" | tee -a "$out/metrics.txt"
