#!/usr/bin/env bash
# The sanitizer step of the test suite: builds spine with AddressSanitizer and
# UndefinedBehaviorSanitizer into build-asan/ (Debug-like -O1 so that reports have line
# numbers) and runs the unit tests, the output/model integrity tests and the
# malformed-input corpus through every command under them. Any sanitizer report fails
# the test that triggered it (halt_on_error, UBSan without recovery).
set -euo pipefail
cd "$(dirname "$0")/.."
generator=()
command -v ninja >/dev/null 2>&1 && generator=(-G Ninja)
start=$(date +%s)
if [ ! -f build-asan/CMakeCache.txt ]; then
  cmake -S . -B build-asan "${generator[@]}" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="-O1 -g" \
    -DSPINE_SANITIZE=ON -DSPINE_BUILD_BENCH=OFF >/dev/null
fi
cmake --build build-asan --parallel "$(nproc)"
echo "sanitizer build: $(( $(date +%s) - start )) s"
# Leak checking is off: ITK's and libtorch's singletons live until exit by design and
# would drown real reports. Everything else (heap overflows, use after free, UB) is on.
export ASAN_OPTIONS="detect_leaks=0:halt_on_error=1:abort_on_error=0:exitcode=99"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1:exitcode=99"
built=$(date +%s)
(cd build-asan && ctest --output-on-failure --parallel "$(nproc)" --timeout 1500 -L "unit|corpus")
(cd build-asan && ctest --output-on-failure --parallel "$(nproc)" --timeout 900 -R "Integrity")
echo "sanitizer tests: $(( $(date +%s) - built )) s"
