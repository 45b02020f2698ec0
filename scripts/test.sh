#!/usr/bin/env bash
# Runs every berth test. Starts (and afterwards stops) real etcd clusters on loopback:
# one single-member and one 3-member cluster. Then:
#   1. the normal build: unit tests, driver tests against a real dockerd (started here if none
#      answers), store conformance (embedded + etcd), end-to-end CLI tests
#   2. an ASan+UBSan build running the unit tests
#   3. a short libFuzzer run of every fuzz target
#   4. a clang-format check
# BERTH_TEST_FAST=1 runs step 1 only.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
JOBS=${JOBS:-2}
RUN=$ROOT/.testrun
mkdir -p "$RUN"

scripts/install-deps.sh

echo "== build"
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j"$JOBS"

echo "== etcd clusters and Docker Engine"
scripts/etcd-test-cluster.sh stop "$RUN/etcd" >/dev/null 2>&1 || true
cleanup() {
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

echo "== tests (normal build)"
# Tests that share the etcd clusters (and kill members of one) run one at a time.
ctest --test-dir build --output-on-failure -LE 'etcd|docker' -j"$JOBS"
ctest --test-dir build --output-on-failure -L docker -j"$JOBS"
ctest --test-dir build --output-on-failure -L etcd -j1

if [[ "${BERTH_TEST_FAST:-0}" == "1" ]]; then
  exit 0
fi

echo "== tests (ASan + UBSan build, unit tests)"
cmake -S . -B build-asan -G Ninja -DCMAKE_BUILD_TYPE=Debug -DBERTH_SANITIZE=ON >/dev/null
# Only the unit-test binaries (target unit_tests): they are what this build runs.
cmake --build build-asan -j"$JOBS" --target unit_tests
ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1 \
  ctest --test-dir build-asan --output-on-failure -L unit -j"$JOBS"

echo "== fuzz (short run of every target)"
scripts/fuzz.sh "${BERTH_FUZZ_SECONDS:-30}"

echo "== format"
git ls-files '*.h' '*.cc' | xargs clang-format --dry-run --Werror
echo "all tests passed"
