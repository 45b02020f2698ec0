#!/usr/bin/env bash
# Runs every berth test, on one build: ASan + UBSan, Debug (build-asan/), so the end-to-end
# tests and the agents, routers and CLIs they start run under the sanitizers too, not only the
# unit tests. Starts (and afterwards stops) real etcd clusters on loopback, one single-member
# and one 3-member, and a Docker Engine if none answers. Then:
#   1. unit tests (LeakSanitizer on)
#   2. end-to-end tests without outside services, then those on the Docker Engine, then those
#      on etcd (LeakSanitizer off: an agent killed or stopped mid-work is not a leak report)
#   3. a short libFuzzer run of every fuzz target (clang, build-fuzz/; compiled at low priority
#      while step 2 runs, which mostly waits on processes)
#   4. a clang-format check
# BERTH_TEST_FAST=1 runs steps 1 and 2 only. Every test has a timeout (ctest's TIMEOUT, else
# 300 s), so a hung test fails with its output instead of stalling the run.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
JOBS=${JOBS:-2}
BUILD=${BERTH_TEST_BUILD:-build-asan}
RUN=$ROOT/.testrun
mkdir -p "$RUN"
# Each stage says when it starts (seconds since this script began), so a slow run shows where.
stage() { echo "== $* [${SECONDS}s]"; }

scripts/install-deps.sh

stage "build (ASan + UBSan, Debug: $BUILD)"
cmake -S . -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=Debug -DBERTH_SANITIZE=ON >/dev/null
cmake --build "$BUILD" -j"$JOBS"

stage "etcd clusters and Docker Engine"
scripts/etcd-test-cluster.sh stop "$RUN/etcd" >/dev/null 2>&1 || true
FUZZ_BUILD_PID=""
cleanup() {
  [[ -n "$FUZZ_BUILD_PID" ]] && kill -- "-$FUZZ_BUILD_PID" 2>/dev/null
  scripts/etcd-test-cluster.sh stop "$RUN/etcd" >/dev/null 2>&1 || true
  scripts/docker-test-engine.sh stop "$RUN/docker" >/dev/null 2>&1 || true
}
trap cleanup EXIT
scripts/docker-test-engine.sh start "$RUN/docker"
scripts/etcd-test-cluster.sh start "$RUN/etcd"
# shellcheck disable=SC1091
. "$RUN/etcd/env"
export BERTH_TEST_ETCD BERTH_TEST_ETCD_CLUSTER BERTH_TEST_ETCD_CTL

# The fuzz targets compile meanwhile, at the lowest priority: the end-to-end tests mostly wait
# on processes, so their idle CPU builds them, and they still get the CPU when they need it.
if [[ "${BERTH_TEST_FAST:-0}" != "1" ]]; then
  stage "building the fuzz targets in the background (log: $RUN/fuzz-build.log)"
  # Its own session, so that an early exit can stop it and its compilers (cleanup).
  setsid nice -n 19 scripts/fuzz.sh 0 >"$RUN/fuzz-build.log" 2>&1 &
  FUZZ_BUILD_PID=$!
fi

export UBSAN_OPTIONS=print_stacktrace=1
CTEST=(ctest --test-dir "$BUILD" --output-on-failure --timeout 300)
stage "unit tests"
ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 "${CTEST[@]}" -L unit -j"$JOBS"
export ASAN_OPTIONS=detect_leaks=0:abort_on_error=1
stage "end-to-end tests (no outside service)"
"${CTEST[@]}" -LE 'unit|etcd|docker' -j"$JOBS"
stage "tests on the Docker Engine"
"${CTEST[@]}" -L docker -LE 'unit|etcd' -j"$JOBS"
stage "tests on etcd"
# Two at a time; the tests that kill etcd members or compact its history are RUN_SERIAL.
"${CTEST[@]}" -L etcd -LE unit -j"$JOBS"

if [[ "${BERTH_TEST_FAST:-0}" == "1" ]]; then
  echo "fast tests passed [${SECONDS}s]"
  exit 0
fi

stage "fuzz (short run of every target)"
if ! wait "$FUZZ_BUILD_PID"; then
  FUZZ_BUILD_PID=""
  tail -n 60 "$RUN/fuzz-build.log"
  echo "the fuzz build failed"
  exit 1
fi
FUZZ_BUILD_PID=""
scripts/fuzz.sh "${BERTH_FUZZ_SECONDS:-20}"

stage "format"
git ls-files '*.h' '*.cc' | xargs clang-format --dry-run --Werror
echo "all tests passed [${SECONDS}s]"
