#!/usr/bin/env bash
# Fuzzes spine's image readers with libFuzzer (clang from Debian), each target for
# SECONDS (default 30), starting from the committed corpus (fuzz/corpus/<target>/) and
# the malformed-input corpus's files of that format. Fails when a target finds a crash,
# a sanitizer report, a leak of memory past 2 GB or a hang (an input over 20 s that is
# as slow again when re-run alone); the input is kept in
# build-fuzz/ (crash-*, timeout-*, oom-*) and the command to reproduce it is printed.
#   scripts/fuzz.sh [SECONDS] [--update-corpus]
# --update-corpus merges what was found into fuzz/corpus/ (minimised, to commit).
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-30}
update=0
[ "${2:-}" = "--update-corpus" ] && update=1
generator=()
command -v ninja >/dev/null 2>&1 && generator=(-G Ninja)
if [ ! -f build-fuzz/CMakeCache.txt ]; then
  CC=clang CXX=clang++ cmake -S fuzz -B build-fuzz "${generator[@]}" >/dev/null
fi
cmake --build build-fuzz --parallel "$(nproc)"
rm -rf build-fuzz/seeds && /usr/bin/python3 tests/malformed/make_corpus.py build-fuzz/seeds >/dev/null
export ASAN_OPTIONS="detect_leaks=0"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"
limit=20
# Re-runs the input a timeout kept, alone and under the same limit; prints the seconds it
# took and succeeds when it finished in time (the run's timeout did not reproduce).
timeout_not_reproduced() {
  grep -aq "ERROR: libFuzzer: timeout" "$2" || return 1
  local input
  input=$(ls -t build-fuzz/"$1"-timeout-* 2>/dev/null | head -1)
  [ -n "$input" ] || return 1
  local start end
  start=$(date +%s.%N)
  ./build-fuzz/fuzz_"$1" -timeout="$limit" -rss_limit_mb=2048 "$input" >> "$2" 2>&1 || return 1
  end=$(date +%s.%N)
  awk -v a="$start" -v b="$end" 'BEGIN { printf "%.2f\n", b - a }'
}
failed=()
for pair in nifti=.nii niigz=.nii.gz meta=.mha nrrd=.nrrd png=.png jpeg=.jpg dicom=.dcm; do
  name=${pair%%=*}
  ext=${pair#*=}
  work=build-fuzz/work/$name
  rm -rf "$work" && mkdir -p "$work"
  [ -d "fuzz/corpus/$name" ] && cp fuzz/corpus/"$name"/* "$work"/ 2>/dev/null || true
  for f in build-fuzz/seeds/*"$ext"; do
    [ -f "$f" ] && [ ! -L "$f" ] || continue
    if [ "$name" = niigz ]; then gzip -dc "$f" > "$work/seed-$(basename "$f" .gz)" 2>/dev/null || true
    elif [ "$name" = nifti ] && [[ "$f" == *.nii.gz ]]; then continue
    else cp "$f" "$work/seed-$(basename "$f")"; fi
  done
  log=build-fuzz/$name.log
  if ./build-fuzz/fuzz_"$name" -max_total_time="$seconds" -rss_limit_mb=2048 -timeout="$limit" -max_len=100000 \
       -print_final_stats=1 -artifact_prefix=build-fuzz/"$name"- "$work" > "$log" 2>&1; then
    echo "fuzz_$name: $(grep -ao 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$') runs in ${seconds} s, corpus $(ls "$work" | wc -l) files, no failure"
  elif slow=$(timeout_not_reproduced "$name" "$log"); then
    # A shared CI machine can stall a process for seconds; a real hang is deterministic
    # (the readers hold no state between inputs), so it stalls again on the same input.
    echo "fuzz_$name: one input passed the ${limit} s limit in the run but took ${slow} s alone:" \
         "a stalled machine, not a hang (the input is kept: $(ls -t build-fuzz/"$name"-timeout-* | head -1))"
  else
    echo "fuzz_$name: FAILED, see $log; reproduce with: build-fuzz/fuzz_$name build-fuzz/$name-*"
    grep -a -m3 -E "ERROR|runtime error|==.*==" "$log" || tail -5 "$log"
    failed+=("$name")
  fi
  if [ $update -eq 1 ]; then
    mkdir -p "fuzz/corpus/$name"
    ./build-fuzz/fuzz_"$name" -merge=1 -max_len=100000 "fuzz/corpus/$name" "$work" >/dev/null 2>&1
  fi
done
if [ ${#failed[@]} -gt 0 ]; then
  echo "fuzzing found problems in: ${failed[*]}"
  exit 1
fi
