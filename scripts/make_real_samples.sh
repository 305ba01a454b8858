#!/usr/bin/env bash
# Copies the few REAL sample studies that data/sample/ ships, byte for byte, from the shared
# data (../shared/data, not part of the repository) and checks them against the SHA-256
# sums in data/sample/README.md. Only cases whose licence allows redistribution, with their
# attribution in that README: the abdominal example CT (TotalSegmentator's test files,
# Apache-2.0) and one VerSe 2019 CT with its manual masks (CC BY-SA 4.0). The SPIDER slices
# come from scripts/grade/spider_to_mha.py.
set -euo pipefail
cd "$(dirname "$0")/.."
shared=${SPINE_SHARED_DATA:-../shared/data}
[ -d "$shared" ] || { echo "make_real_samples.sh: $shared not found" >&2; exit 1; }
copy() {  # SOURCE (under $shared) DESTINATION (under data/sample)
  install -m 0644 "$shared/$1" "data/sample/$2"
}
copy ct-abdomen-example/example_ct.nii.gz real_ct_abdomen.nii.gz
copy ct-abdomen-example/example_ct_vertebrae_model_labels.nii.gz real_ct_abdomen_reference_labels.nii.gz
copy ct-verse/sub-verse007_ct.nii.gz verse007_ct.nii.gz
copy ct-verse/sub-verse007_seg-vert_msk.nii.gz verse007_vertebra_masks.nii.gz
# The README's table of sums is the record of what was shipped.
sed -n 's/^| `\([a-z0-9_]*\.nii\.gz\)` | \([0-9a-f]\{64\}\) |.*/\2  data\/sample\/\1/p' data/sample/README.md | sha256sum -c -
