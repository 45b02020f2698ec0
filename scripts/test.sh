#!/usr/bin/env bash
# Runs every berth test. Starts (and afterwards stops) real etcd clusters on loopback:
# one single-member and one 3-member cluster. Then:
#   1. the normal build: unit tests, driver tests against a real dockerd (started here if none
#      answers), store conformance (embedded + etcd), end-to-end CLI tests
#   2. an ASan+UBSan build (compiled at low priority while step 1 runs) running the unit tests
#   3. a short libFuzzer run of every fuzz target
#   4. a clang-format check
# BERTH_TEST_FAST=1 runs step 1 only.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
JOBS=${JOBS:-2}
RUN=$ROOT/.testrun
mkdir -p "$RUN"
# Each stage says when it starts (seconds since this script began), so a slow run shows where.
stage() { echo "== $* [${SECONDS}s]"; }

scripts/install-deps.sh

stage "build"
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j"$JOBS"

stage "etcd clusters and Docker Engine"
scripts/etcd-test-cluster.sh stop "$RUN/etcd" >/dev/null 2>&1 || true
ASAN_BUILD_PID=""
cleanup() {
  [[ -n "$ASAN_BUILD_PID" ]] && kill -- "-$ASAN_BUILD_PID" 2>/dev/null
  scripts/etcd-test-cluster.sh stop "$RUN/etcd" >/dev/null 2>&1 || true
  scripts/docker-test-engine.sh stop "$RUN/docker" >/dev/null 2>&1 || true
}
trap cleanup EXIT
scripts/docker-test-engine.sh start "$RUN/docker"
scripts/etcd-test-cluster.sh start "$RUN/etcd"
# shellcheck disable=SC1091
. "$RUN/etcd/env"
export BERTH_TEST_ETCD BERTH_TEST_ETCD_CLUSTER BERTH_TEST_ETCD_CTL
export BERTH_BIN=$ROOT/build/src/berth

# The sanitizer build compiles meanwhile, at the lowest priority: the end-to-end tests mostly
# wait on processes, so their idle CPU builds it, and they still get the CPU when they need it.
if [[ "${BERTH_TEST_FAST:-0}" != "1" ]]; then
  stage "building the ASan + UBSan unit tests in the background (log: $RUN/asan-build.log)"
  cmake -S . -B build-asan -G Ninja -DCMAKE_BUILD_TYPE=Debug -DBERTH_SANITIZE=ON >/dev/null
  # Only the unit-test binaries (target unit_tests): they are what this build runs.
  # Its own session, so that an early exit can stop it and its compilers (cleanup).
  setsid nice -n 19 cmake --build build-asan -j"$JOBS" --target unit_tests \
    >"$RUN/asan-build.log" 2>&1 &
  ASAN_BUILD_PID=$!
fi

stage "tests (normal build)"
ctest --test-dir build --output-on-failure -LE 'etcd|docker' -j"$JOBS"
stage "tests (normal build, Docker)"
ctest --test-dir build --output-on-failure -L docker -LE etcd -j"$JOBS"
stage "tests (normal build, etcd)"
# Two at a time; the tests that kill etcd members or compact its history are RUN_SERIAL.
ctest --test-dir build --output-on-failure -L etcd -j"$JOBS"

if [[ "${BERTH_TEST_FAST:-0}" == "1" ]]; then
  exit 0
fi

stage "tests (ASan + UBSan build, unit tests)"
if ! wait "$ASAN_BUILD_PID"; then
  ASAN_BUILD_PID=""
  tail -n 60 "$RUN/asan-build.log"
  echo "the ASan + UBSan build failed"
  exit 1
fi
ASAN_BUILD_PID=""
stage "ASan + UBSan build done; running its unit tests"
ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1 \
  ctest --test-dir build-asan --output-on-failure -L unit -j"$JOBS"

stage "fuzz (short run of every target)"
scripts/fuzz.sh "${BERTH_FUZZ_SECONDS:-30}"

stage "format"
git ls-files '*.h' '*.cc' | xargs clang-format --dry-run --Werror
echo "all tests passed [${SECONDS}s]"
