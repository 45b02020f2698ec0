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

# kill_process_tasks DATA_DIR: kills (SIGKILL, whole process group) every process-driver task
# recorded in an agent's data dir. Tasks outlive their agent by design, so tests that kill the
# agent call this on exit to leave nothing behind.
kill_process_tasks() {
  local f pid
  for f in "$1"/process/*.json; do
    [[ -e $f ]] || continue
    pid=$(basename "$f")
    pid=${pid%%_*}
    [[ $pid =~ ^[0-9]+$ ]] && kill -9 -- "-$pid" "$pid" 2>/dev/null
  done
  return 0
}

# json_get JSON PYTHON_EXPR: evaluates the expression with `j` bound to the parsed JSON and
# prints the result; fails (status 1) if it raises.
json_get() {
  python3 -c 'import json,sys
j=json.loads(sys.argv[1])
print(eval(sys.argv[2]))' "$1" "$2" 2>/dev/null
}
