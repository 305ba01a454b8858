#!/usr/bin/env bash
# Cohort throughput of spine-seg on this machine, side by side in one run over the same
# COUNT studies (default 12; SYNTHETIC lumbar MR T2 phantoms, the size of a real lumbar
# MRI crop):
#   per-study processes  one spine-seg process per study, 2 threads (what a shell loop does)
#   1 worker             one process for the whole cohort, 2 threads (models loaded once)
#   2 workers            two processes at once, --shard 1/2 and 2/2, 1 thread each, one folder
# and the fixed cost of a process that runs no study (--cohort-files-only: start, model
# checks, cohort files; models are loaded only by a study that needs one). What a
# long-running worker saves per study (process start and model load) is the difference
# between the per-study processes and the one worker.
#   scripts/bench_cohort.sh [COUNT]
set -euo pipefail
cd "$(dirname "$0")/.."
count=${1:-12}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/in"
for i in $(seq 1 "$count"); do
  build/bin/spine-phantom --kind mr-t2 --first T12 --last L5 --spacing 1 --seed "$i" -q -o "$work/ph" --name "p$i"
  cp "$work/ph/p$i/image.nii.gz" "$work/in/p$i.nii.gz"
done
seg=(build/bin/spine-seg --modality mr --no-overlay -q)
now() { date +%s.%N; }
rate() { /usr/bin/python3 -c "import sys; n, s = $count, $1; print(f'{s:.1f} s, {60 * n / s:.1f} studies per minute')"; }

t0=$(now)
"${seg[@]}" "$work/in" -o "$work/empty" --cohort-files-only --threads 2 >/dev/null 2>&1 || true
t1=$(now)
fixed=$(/usr/bin/python3 -c "print(round($t1 - $t0, 2))")

t0=$(now)
for f in "$work"/in/*.nii.gz; do "${seg[@]}" "$f" -o "$work/per-study" --threads 2 2>/dev/null; done
t1=$(now)
per_study=$(/usr/bin/python3 -c "print($t1 - $t0)")

t0=$(now)
"${seg[@]}" "$work/in" -o "$work/one" --threads 2 2>/dev/null
t1=$(now)
one=$(/usr/bin/python3 -c "print($t1 - $t0)")

t0=$(now)
"${seg[@]}" "$work/in" -o "$work/two" --threads 1 --shard 1/2 2>/dev/null &
"${seg[@]}" "$work/in" -o "$work/two" --threads 1 --shard 2/2 2>/dev/null
wait
t1=$(now)
two=$(/usr/bin/python3 -c "print($t1 - $t0)")

cmp "$work/one/seg.csv" "$work/two/seg.csv" && cmp "$work/one/seg.csv" "$work/per-study/seg.csv" ||
  { echo "bench_cohort: the three ways gave different tables" >&2; exit 1; }
echo "spine-seg over $count MR T2 phantom volumes (SYNTHETIC), $(nproc) cores"
echo "per-study processes (2 threads each): $(rate "$per_study")"
echo "1 worker, 2 threads:                   $(rate "$one")"
echo "2 workers, 1 thread each, one folder:  $(rate "$two")"
echo "fixed cost of a process that runs no study (start, model checks, cohort files; no model is loaded): $fixed s"
/usr/bin/python3 -c "print(f'per-study overhead a long-running worker saves: {($per_study - $one) / $count:.2f} s per study')"
echo "the three tables are identical"
