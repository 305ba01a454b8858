#!/usr/bin/env bash
# Evaluates spine-cobb (the C++ tool, both models) on the fixed validation split of
# ../shared/data/xray-ap-aasce that training never saw, and the angle code on the
# reference landmarks. Usage: scripts/eval_cobb.sh [OUTDIR [spine-cobb options...]]
# (default OUTDIR work-data/eval-cobb; e.g. --no-corner-refinement for the first stage alone)
# SPLIT=training runs the 365 training films instead (OUTDIR/training.txt), where options
# are chosen without looking at the validation split; compare two runs film by film with
# scripts/cobb_paired.py. SMALL=512 runs the split's films padded square with black borders
# and reduced to 512 x 512 (JPEG, quality 95, under their own names in OUTDIR/images-512),
# the form of the external films issue 12 was filed on; it prints SMAPE and major-angle MAE
# only (the landmark figures would be in the reduced films' pixels).
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
if [ -n "${SMALL:-}" ]; then
  /usr/bin/python3 - "$list" "$out/images-$SMALL" "$SMALL" <<'PY'
import os, sys
from PIL import Image
listfile, folder, side = sys.argv[1], sys.argv[2], int(sys.argv[3])
os.makedirs(folder, exist_ok=True)
paths = []
for line in open(listfile):
    src = line.strip()
    im = Image.open(src).convert("L")
    w, h = im.size
    square = Image.new("L", (max(w, h), max(w, h)), 0)
    square.paste(im, ((max(w, h) - w) // 2, (max(w, h) - h) // 2))
    dst = os.path.join(folder, os.path.basename(src))
    square.resize((side, side), Image.BILINEAR).save(dst, format="JPEG", quality=95)
    paths.append(os.path.abspath(dst))
open(listfile, "w").write("\n".join(paths) + "\n")
PY
  build/bin/spine-cobb "$list" -o "$out/results" --threads 2 --force -q "$@" || true
  /usr/bin/python3 - "$list" "$out/results" <<'PY' | tee "$out/metrics.txt"
import json, os, sys
import numpy as np
sys.path.insert(0, "scripts")
from cobb import data
from cobb.angles import smape
_, angles = data.read_table()
sm, mae = [], []
for line in open(sys.argv[1]):
    n = os.path.basename(line.strip())
    j = json.load(open(os.path.join(sys.argv[2], os.path.splitext(n)[0], "cobb.json")))
    pred, ref = [j["angles_deg"][k] for k in ("pt", "mt", "tl")], angles[n]
    sm.append(smape(pred, ref))
    mae.append(abs(j["major"]["angle_deg"] - ref[0]))  # the first angle is the major curve's (cobb_metrics.py)
print(f"{len(sm)} films at {os.path.basename(os.path.dirname(line.strip()))}: SMAPE {np.mean(sm):.2f} %, "
      f"major-angle MAE {np.mean(mae):.2f} degrees")
PY
  exit 0
fi
build/bin/spine-cobb "$list" -o "$out/results" --threads 2 --force -q "$@" || true
/usr/bin/python3 scripts/cobb_metrics.py "$list" "$out/results" | tee "$out/metrics.txt"
build/bin/spine_unit_tests --gtest_filter='Cobb.ReproducesAasceReferenceAngles' | grep "AASCE rule" | tee -a "$out/metrics.txt"
