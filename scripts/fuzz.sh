#!/usr/bin/env bash
# Builds berth's libFuzzer targets with clang in build-fuzz/ and runs each for SECONDS
# (default 60) on a scratch copy of its seed corpus (fuzz/corpus/<name>/, <name> without the
# _fuzz suffix), with its dictionary fuzz/<fuzzer>.dict if there is one, so the repository is
# not touched. Crash inputs land in build-fuzz/artifacts/<fuzzer>/. Exits non-zero if any
# fuzzer finds a crash, a leak or a timeout. FUZZ_JOBS fuzzers run at a time (default: one per
# core). SECONDS=0 only builds them (scripts/test.sh builds them while other tests run).
#   scripts/fuzz.sh [SECONDS] [FUZZER...]     e.g. scripts/fuzz.sh 300 job_parser_fuzz
set -euo pipefail

SECONDS_PER_FUZZER=${1:-60}
shift || true
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD="$ROOT/build-fuzz"

cmake -S "$ROOT" -B "$BUILD" -G Ninja -DBERTH_FUZZ=ON -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DCMAKE_C_COMPILER=clang -DCMAKE_CXX_COMPILER=clang++ >/dev/null

if (($# > 0)); then
  FUZZERS=("$@")
else
  mapfile -t FUZZERS < <(grep -v '^$' "$BUILD/fuzzers.txt")
fi
# Only the fuzz targets (and the libraries they need) are built: the rest of the tree is not
# required to compile under clang with sanitizers.
cmake --build "$BUILD" -j"$(nproc)" --target "${FUZZERS[@]}"
if ((SECONDS_PER_FUZZER == 0)); then
  exit 0
fi

# One fuzzer per core at a time (each is one process on one core); the report of each is
# printed when it ends.
run_one() {
  local fuzzer=$1
  local seeds="$ROOT/fuzz/corpus/${fuzzer%_fuzz}"
  local work
  work=$(mktemp -d)
  if [[ -d "$seeds" ]]; then cp -r "$seeds/." "$work/"; fi
  local artifacts="$BUILD/artifacts/$fuzzer"
  mkdir -p "$artifacts"
  local dict=()
  if [[ -f "$ROOT/fuzz/$fuzzer.dict" ]]; then dict=(-dict="$ROOT/fuzz/$fuzzer.dict"); fi
  local rc=0
  "$BUILD/fuzz/$fuzzer" "$work" "${dict[@]}" -max_total_time="$SECONDS_PER_FUZZER" -timeout=10 \
    -rss_limit_mb=2048 -max_len=65536 -print_final_stats=1 \
    -artifact_prefix="$artifacts/" 2>"$artifacts/log.txt" || rc=$?
  rm -rf "$work"
  if ((rc != 0)); then
    {
      echo "fuzz.sh: $fuzzer FAILED; see $artifacts/log.txt and the crash-* files beside it"
      tail -n 40 "$artifacts/log.txt"
    } >&2
    return 1
  fi
  awk -v f="$fuzzer" -v s="$SECONDS_PER_FUZZER" '
    /^stat::number_of_executed_units/ { runs = $2 }
    /^stat::new_units_added/ { added = $2 }
    END { printf "fuzz.sh: %s: %s runs in %ss, %s new inputs, no crash\n", f, runs, s, added }
  ' "$artifacts/log.txt"
}

PARALLEL=${FUZZ_JOBS:-$(nproc)}
echo "fuzz.sh: ${#FUZZERS[@]} fuzzers, ${SECONDS_PER_FUZZER}s each, $PARALLEL at a time"
status=0
running=0
for fuzzer in "${FUZZERS[@]}"; do
  if ((running >= PARALLEL)); then
    wait -n || status=1
    running=$((running - 1))
  fi
  run_one "$fuzzer" &
  running=$((running + 1))
done
while ((running > 0)); do
  wait -n || status=1
  running=$((running - 1))
done
exit $status
