# Helpers for berth's end-to-end tests (bash). Each check prints ok/FAIL; finish prints
# "N passed, M failed" and sets the exit code.
PASSED=0
FAILED=0

ok() { PASSED=$((PASSED + 1)); echo "ok   - $*"; }
fail() { FAILED=$((FAILED + 1)); echo "FAIL - $*"; }

# check "description" command...: passes if the command succeeds.
check() {
  local what=$1
  shift
  if "$@"; then ok "$what"; else fail "$what"; fi
}

contains() { grep -q -- "$2" <<<"$1"; }

# wait_for SECONDS command...: polls until the command succeeds (a generous bound, not a
# timing requirement: slow machines just take longer).
wait_for() {
  local limit=$1
  shift
  local end=$((SECONDS + limit))
  while ((SECONDS < end)); do
    if "$@" >/dev/null 2>&1; then return 0; fi
    sleep 0.1
  done
  return 1
}

finish() {
  echo "$PASSED passed, $FAILED failed"
  [[ $FAILED -eq 0 ]]
}
