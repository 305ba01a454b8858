#!/usr/bin/env bash
# Leave-one-out figures of the CT model on the real CT with manual masks (ct-verse): each
# case is segmented by the fold model that never saw it (scripts/train_ct_loo.sh), and the
# three are scored together: per-vertebra Dice, identification (right name, centroid
# within 20 mm), per case, and the calibration table of the names' confidence.
#   scripts/eval_seg_ct_loo.sh [LOODIR] [OUTDIR] [extra spine-seg options]
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
loo=$(realpath -m "${1:-$root/work-data/ct-loo}")
out=$(realpath -m "${2:-$root/work-data/eval-ct-loo}")
shift $(( $# < 2 ? $# : 2 ))
shared=$root/../shared/data/ct-verse
[ -d "$shared" ] || { echo "eval_seg_ct_loo: $shared is absent" >&2; exit 2; }
mkdir -p "$out"
: > "$out/cases.tsv"
for img in "$shared"/*_ct.nii.gz; do
  case=$(basename "$img" _ct.nii.gz)
  model="$loo/fold-$case/ct-spine-seg.pt"
  [ -f "$model" ] || { echo "eval_seg_ct_loo: no fold model $model" >&2; exit 2; }
  "$root/build/bin/spine-seg" "$img" --ct-model "$model" -o "$out/seg" --threads 2 --force -q "$@" || true
  printf '%s_ct\t%s\tct\n' "$case" "$shared/${case}_seg-vert_msk.nii.gz" >> "$out/cases.tsv"
done
/usr/bin/python3 "$root/scripts/eval_seg.py" --pred "$out/seg" --cases "$out/cases.tsv" --json "$out/metrics.json" > "$out/eval.log"
/usr/bin/python3 - "$out/metrics.json" <<'PY'
import json, sys
m = json.load(open(sys.argv[1]))
print("case             per-vertebra Dice (mean +- sd, n)   identified   levels")
for c in m["cases"]:
    if c.get("failed"):
        print(f"{c['study']:16s} no output"); continue
    d = [v for v in c["level_dice"].values()]
    mean = sum(d) / len(d); sd = (sum((x - mean) ** 2 for x in d) / len(d)) ** 0.5
    print(f"{c['study']:16s} {mean:.3f} +- {sd:.3f} ({len(d)})              {c['identified']:10s}   "
          + " ".join(f"{k}:{v:.2f}" for k, v in c["level_dice"].items()))
s = m["summary"]
a = s["vertebra_dice_all_levels"]
print(f"all              {a['mean']:.3f} +- {a['sd']:.3f} ({a['n']})              {s['identified']} = "
      f"{100 * (s['identification_rate'] or 0):.0f} %")
print("calibration of the names' confidence (held-out cases):")
for r in s["calibration"]:
    rate = "-" if r["right_rate"] is None else f"{100 * r['right_rate']:.0f} %"
    print(f"  {r['confidence']:14s} {r['names']:3d} names, {r['right']:3d} right ({rate})")
PY
