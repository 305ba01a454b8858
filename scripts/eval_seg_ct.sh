#!/usr/bin/env bash
# CT checks of the CT model with the C++ tools:
#  1. held-out torso phantoms (seeds never used in training; SYNTHETIC figures)
#  2. the real CT of ../shared/data when present: the abdominal CT (labels made by
#     another model, TotalSegmentator: a sanity check, not ground truth), the same study
#     as a DICOM series (modality from the tag), and the small real CT crop around L3
#     (manual VerSe-style labels, L2-L4).
#   scripts/eval_seg_ct.sh [OUTDIR] [N_PHANTOMS] [extra spine-seg options, e.g. --ct-model M]
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
out=$(realpath -m "${1:-$root/work-data/eval-ct}")
n=${2:-8}
shift $(( $# < 2 ? $# : 2 ))
bin=$root/build/bin
mkdir -p "$out"
: > "$out/phantoms.tsv"
"$root/scripts/make_heldout_ct_phantoms.sh" "$out/phantoms" "$n"
for ((i = 0; i < n; i++)); do
  name=$(printf 'heldout-%02d' "$i")
  echo "$out/phantoms/$name/image.nii.gz" >> "$out/phantom-inputs.txt.tmp"
  printf '%s_image\t%s\tct\n' "$name" "$out/phantoms/$name/labels.nii.gz" >> "$out/phantoms.tsv"
done
# study names: the phantom folder names
sort -u "$out/phantom-inputs.txt.tmp" > "$out/phantom-inputs.txt" && rm "$out/phantom-inputs.txt.tmp"
# identification from segmentation.json (spine-detect runs the same pipeline)
"$bin/spine-seg" "$out/phantom-inputs.txt" -o "$out/phantoms-seg" --threads 2 --force "$@" || true
echo "== held-out CT phantoms (synthetic) =="
/usr/bin/python3 "$root/scripts/eval_seg.py" --pred "$out/phantoms-seg" --cases "$out/phantoms.tsv" --json "$out/phantoms-metrics.json" | tail -40

shared=$root/../shared/data
if [ -d "$shared/ct-abdomen-example" ]; then
  echo "== real CT =="
  "$bin/spine-seg" "$shared/ct-abdomen-example/example_ct.nii.gz" "$shared/ct-mr-crops/sub-ct_label-22_ct.nii.gz" \
    -o "$out/real-seg" --threads 2 --force "$@" || true
  "$bin/spine-detect" "$shared/ct-abdomen-example/example_ct.nii.gz" "$shared/ct-mr-crops/sub-ct_label-22_ct.nii.gz" \
    "$shared/ct-abdomen-example/example_ct_dicom" -o "$out/real-detect" --threads 2 --force "$@" || true
  for d in "$out"/real-detect/*/; do
    s=$(basename "$d"); [ -d "$out/real-seg/$s" ] && cp "$d/vertebrae.json" "$out/real-seg/$s/" || true
  done
  printf 'example_ct\t%s\tct\nsub-ct_label-22_ct\t%s\tct\n' \
    "$shared/ct-abdomen-example/example_ct_vertebrae_model_labels.nii.gz" \
    "$shared/ct-mr-crops/sub-ct_seg-vert_label-22_msk.nii.gz" > "$out/real.tsv"
  /usr/bin/python3 "$root/scripts/eval_seg.py" --pred "$out/real-seg" --cases "$out/real.tsv" --json "$out/real-metrics.json"
  echo "DICOM series: $(/usr/bin/python3 -c "
import json; j = json.load(open('$out/real-detect/example_ct_dicom/vertebrae.json'))
print(j['modality'], [v['name'] for v in j['vertebrae']], j['flags'])")"
fi
