#!/usr/bin/env bash
# The cohort workflow as a user runs it: the same small phantom cohort (four CT phantoms
# and one broken file) through spine-seg in one process, through workflow/Snakefile on
# this machine, through the Snakefile on a real single-node Slurm cluster (started here,
# stopped at the end), and as a Slurm array job (workflow/slurm-array.sh). Every way must
# end with the same cohort table, list files and report rows.
#   test_workflow.sh BIN_DIR REPO_DIR      (exit 77: a tool is missing, skipped)
set -euo pipefail
bin=$(realpath "$1")
repo=$(realpath "$2")
for tool in snakemake sbatch slurmctld slurmd munged; do
  if ! command -v "$tool" >/dev/null && [ ! -x "/usr/sbin/$tool" ]; then
    echo "SKIP: $tool missing (scripts/install-deps.sh installs it)"
    exit 77
  fi
done
work=$(mktemp -d /tmp/spine-workflow-XXXXXX)
cleanup() {
  "$repo/tests/workflow/slurm_cluster.sh" stop "$work/slurm" || true
  rm -rf "$work"
}
trap cleanup EXIT
failures=0 passes=0
check() {  # check WHAT COMMAND...
  local what=$1
  shift
  if "$@"; then
    echo "ok: $what"
    passes=$((passes + 1))
  else
    echo "FAIL: $what"
    failures=$((failures + 1))
  fi
}

"$bin/spine-phantom" --kind ct --first L4 --last L5 --spacing 2 --margin 10 -q -o "$work/ph" --name ct
mkdir -p "$work/in"
for i in 1 2 3 4; do cp "$work/ph/ct/image.nii.gz" "$work/in/s$i.nii.gz"; done
echo "not an image" > "$work/in/broken.nii.gz"
opts=(--no-overlay)

status=0
"$bin/spine-seg" "$work/in" -o "$work/single" --threads 2 -q "${opts[@]}" || status=$?
check "one process: exit 3 for the broken study" [ "$status" -eq 3 ]

snake() {  # snake OUT [snakemake options...]
  local out=$1
  shift
  snakemake -s "$repo/workflow/Snakefile" --directory "$work/snakework-$(basename "$out")" --quiet "$@" \
    --config command=spine-seg inputs="$work/in" out="$out" shards=3 bin="$bin" threads=1 args="${opts[*]}" \
    > "$work/$(basename "$out").snakemake.log" 2>&1
}
check "Snakemake on this machine" snake "$work/local" --cores 2
ls "$work"/in/*.nii.gz > "$work/list.txt"
check "Snakemake, one job per study" snakemake -s "$repo/workflow/Snakefile" --directory "$work/snakework-per-study" \
  --quiet --cores 2 --config command=spine-seg inputs="$work/list.txt" out="$work/per-study" per_study=true bin="$bin" \
  threads=1 args="${opts[*]}"

SLURM_CONF=$("$repo/tests/workflow/slurm_cluster.sh" start "$work/slurm")
export SLURM_CONF
check "Snakemake on Slurm" snake "$work/slurm-snake" --jobs 3 --latency-wait 10 \
  --cluster "sbatch --parsable -c {threads} --mem=2000 -J spine-{rule} -o $work/slurm/job-%j.out"
check "Slurm array job" sbatch --wait --array=1-3 -c 1 -o "$work/slurm/array-%A_%a.out" \
  "$repo/workflow/slurm-array.sh" "$bin/spine-seg" "$work/in" "$work/slurm-array" "${opts[@]}"

rows() { grep -c '<tr class="study' "$1/report.html"; }
for out in local per-study slurm-snake slurm-array; do
  check "$out: seg.csv equals the one-process table" cmp "$work/single/seg.csv" "$work/$out/seg.csv"
  check "$out: failed.txt equals the one-process list" cmp "$work/single/failed.txt" "$work/$out/failed.txt"
  check "$out: flagged.txt equals the one-process list" cmp "$work/single/flagged.txt" "$work/$out/flagged.txt"
  check "$out: report.html has the same rows" [ "$(rows "$work/single")" = "$(rows "$work/$out")" ]
done
check "the broken study is on the failed list" grep -q "/broken.nii.gz$" "$work/single/failed.txt"
check "four studies in the table" [ "$(cut -d, -f1 "$work/single/seg.csv" | sort -u | grep -c '^s[0-9]')" = 4 ]
check "the shards ran as Slurm jobs" [ "$(ls "$work"/slurm/job-*.out | wc -l)" -ge 4 ]

if [ "$failures" -gt 0 ]; then
  for f in "$work"/*.snakemake.log; do echo "== $f"; tail -n 30 "$f"; done
  tail -n 20 "$work/slurm/slurmctld.log" || true
fi
echo "workflow: $passes passed, $failures failed"
[ "$failures" -eq 0 ]
