# shellcheck shell=bash
# shellcheck disable=SC2034  # AGENT_PID, ADDR and HOLDER_PID are read by the sourcing script
# Helpers for agent_docker_test.sh (bash; source after lib.sh): agents, allocation queries,
# containers by label, the test image, and a port holder. Expects TMP, BERTH and ROOT set.

declare -gA AGENT_PID=() # agent name -> pid
declare -gA ADDR=()      # agent name -> API address
AGENT_PIDS=()            # every agent pid started (for cleanup)
HOLDER_PID=""            # the port holder's pid (hold_port)

# Every container the tests' agents create carries berth.machine=<machine id> with this prefix
# (and every test job's name starts with it): cleanup removes exactly those.
ITEST_PREFIX=itest-

# --- Docker ---------------------------------------------------------------------------------
# dk HOST args...: the docker CLI against engine HOST (a unix:// address).
dk() {
  local host=$1
  shift
  docker -H "$host" "$@"
}

# engine_answers HOST: the engine's /_ping says OK.
engine_answers() {
  [[ "$(curl -s --max-time 5 --unix-socket "${1#unix://}" http://docker/_ping 2>/dev/null)" == OK ]]
}

# ensure_image HOST: berth/busybox:latest exists on engine HOST, imported from a root file
# system holding Debian's static /bin/busybox (package busybox-static) if it was missing.
ensure_image() {
  local host=$1 rootfs
  dk "$host" image inspect berth/busybox:latest >/dev/null 2>&1 && return 0
  [[ -x /bin/busybox ]] || {
    echo "/bin/busybox missing: apt-get install busybox-static" >&2
    return 1
  }
  rootfs=$(mktemp -d "$TMP/rootfs-XXXXXX")
  mkdir -p "$rootfs/bin"
  cp /bin/busybox "$rootfs/bin/busybox"
  ln -s busybox "$rootfs/bin/sh"
  tar -C "$rootfs" -c . | dk "$host" import - berth/busybox:latest >/dev/null
  rm -rf "$rootfs"
  dk "$host" image inspect berth/busybox:latest >/dev/null 2>&1
}

# remove_itest_containers HOST: removes (forcefully) every container on engine HOST whose
# berth.machine or berth.job label starts with ITEST_PREFIX: what this test's agents made, in
# this run or an earlier one that did not clean up.
remove_itest_containers() {
  local host=$1 ids
  ids=$(dk "$host" ps -a --filter label=berth.alloc \
    --format '{{.ID}} {{.Label "berth.machine"}} {{.Label "berth.job"}}' 2>/dev/null |
    awk -v p="$ITEST_PREFIX" 'index($2, p) == 1 || index($3, p) == 1 {print $1}')
  if [[ -n $ids ]]; then
    # shellcheck disable=SC2086
    dk "$host" rm -f -v $ids >/dev/null 2>&1 || true
  fi
}

# ctr_ids HOST JOB [-a]: sorted full ids of JOB's containers on HOST (running only, or all).
ctr_ids() {
  dk "$1" ps -q --no-trunc ${3:+"$3"} --filter "label=berth.job=$2" | sort
}
ctr_count() { ctr_ids "$@" | grep -c . || true; }
# ctr_count_is N HOST JOB [-a]
ctr_count_is() {
  local n=$1
  shift
  [[ "$(ctr_count "$@")" -eq "$n" ]]
}

# --- Agents -----------------------------------------------------------------------------------
# start_agent NAME args...: starts `berth agent` with data dir $TMP/NAME and the given
# arguments (log $TMP/NAME.log), waits for its fresh api.addr and /v1/health. Sets
# AGENT_PID[NAME] and ADDR[NAME].
start_agent() {
  local name=$1 pid addr
  shift
  mkdir -p "$TMP/$name"
  rm -f "$TMP/$name/api.addr"
  "$BERTH" agent --data-dir "$TMP/$name" --api 127.0.0.1:0 "$@" >>"$TMP/$name.log" 2>&1 &
  pid=$!
  AGENT_PID[$name]=$pid
  AGENT_PIDS+=("$pid")
  # (stops waiting early if the agent exits)
  if ! wait_for 60 addr_written_or_gone "$TMP/$name/api.addr" "$pid" ||
    ! test -s "$TMP/$name/api.addr"; then
    echo "agent $name did not write api.addr; its log:"
    tail -n 30 "$TMP/$name.log"
    return 1
  fi
  addr=$(cat "$TMP/$name/api.addr")
  ADDR[$name]=$addr
  wait_for 60 curl -sf "http://$addr/v1/health"
}

addr_written_or_gone() { test -s "$1" || ! kill -0 "$2" 2>/dev/null; }

# stop_pid SIGNAL PID: signals a process we started and waits for it.
stop_pid() {
  kill "-$1" "$2" 2>/dev/null
  wait "$2" 2>/dev/null
  return 0
}

# --- Allocations ---------------------------------------------------------------------------
# Python helpers for the expressions given to allocs_are: `a` is the list of allocations.
PY_ALLOC_HELPERS='
import json, sys
def tasks(a):
    return [t for x in a for t in x.get("tasks", [])]
def texts(a):
    """Every message of the allocations, their tasks and events, lower-cased, in one string."""
    out = []
    for x in a:
        out.append(x.get("message", ""))
        for t in x.get("tasks", []):
            out += [t.get("message", ""), t.get("health_message", "")]
        out += [e.get("message", "") for e in x.get("events", [])]
    return "\n".join(str(s) for s in out).lower()
def current(a):
    # the current messages of allocations and tasks (no event history), lower-cased
    out = []
    for x in a:
        out.append(x.get("message", ""))
        for t in x.get("tasks", []):
            out += [t.get("message", ""), t.get("health_message", "")]
    return "\n".join(str(s) for s in out).lower()
def all_state(a, n, state):
    return len(a) == n and all(x["state"] == state for x in a)
'

# allocs HOST_ADDR JOB: prints `berth alloc ls --job JOB --json` (and stores it in LAST_ALLOCS).
allocs() {
  LAST_ALLOCS=$("$BERTH" --addr "$1" alloc ls --job "$2" --json 2>&1)
  local rc=$?
  printf '%s\n' "$LAST_ALLOCS"
  return $rc
}

# allocs_are ADDR JOB PYTHON_EXPR: the expression over `a` (the allocations) holds.
allocs_are() {
  local json
  json=$(allocs "$1" "$2") || return 1
  LAST_ALLOCS=$json
  python3 -c "$PY_ALLOC_HELPERS"'
a = json.loads(sys.argv[1])
sys.exit(0 if eval(sys.argv[2]) else 1)' "$json" "$3"
}

# wait_allocs SECONDS ADDR JOB PYTHON_EXPR: polls allocs_are (LAST_ALLOCS keeps the last answer).
wait_allocs() {
  local limit=$1
  shift
  local end=$((SECONDS + limit))
  while ((SECONDS < end)); do
    if allocs_are "$@" >/dev/null 2>&1; then return 0; fi
    sleep 0.2
  done
  allocs_are "$@" >/dev/null 2>&1
}

# alloc_py ADDR JOB PYTHON_EXPR: prints the expression's value over the allocations.
alloc_py() {
  local json
  json=$(allocs "$1" "$2") || return 1
  python3 -c "$PY_ALLOC_HELPERS"'
a = json.loads(sys.argv[1])
v = eval(sys.argv[2])
print(" ".join(str(x) for x in v) if isinstance(v, list) else v)' "$json" "$3"
}

# shown: the last allocation listing, cut, for failure messages.
shown() { printf '%s' "${LAST_ALLOCS:0:1500}"; }

# --- Ports ----------------------------------------------------------------------------------
# hold_port FILE: starts a listener on 127.0.0.1 (a free port the kernel picks) that holds the
# port until killed; writes the port to FILE. Sets HOLDER_PID.
hold_port() {
  local file=$1
  rm -f "$file"
  python3 -c '
import socket, sys, time
s = socket.socket()
s.bind(("127.0.0.1", 0))
s.listen(8)
with open(sys.argv[1] + ".tmp", "w") as f:
    f.write(str(s.getsockname()[1]))
import os
os.rename(sys.argv[1] + ".tmp", sys.argv[1])
while True:
    time.sleep(3600)
' "$file" &
  HOLDER_PID=$!
  wait_for 30 test -s "$file"
}

# render SRC DST [KEY=VALUE...]: copies a job file replacing @KEY@ by VALUE.
render() {
  local src=$1 dst=$2 kv
  shift 2
  cp "$src" "$dst"
  for kv in "$@"; do
    sed -i "s|@${kv%%=*}@|${kv#*=}|g" "$dst"
  done
}

# check_allocs "description" SECONDS ADDR JOB PYTHON_EXPR: a check that waits (generously) for
# the expression to hold; on failure it shows the last listing.
check_allocs() {
  local what=$1
  shift
  if wait_allocs "$@"; then
    ok "$what"
  else
    fail "$what"
    echo "    allocations: $(shown)"
    return 1
  fi
}

# gap "description" command...: like check for behaviour that is wanted but known missing: it
# passes (counted) when the command succeeds, and otherwise prints "GAP" without failing the
# run, so the gap stays visible until it is closed (then make it a check).
gap() {
  local what=$1
  shift
  if "$@"; then ok "$what"; else echo "GAP  - $what"; fi
}
