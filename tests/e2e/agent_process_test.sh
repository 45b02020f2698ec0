#!/usr/bin/env bash
# End-to-end: `berth agent --dev` runs jobs as plain processes (the process driver): the example
# job serves HTTP on the port the agent chose and turns healthy; logs reach `berth logs`; a task
# killed from outside is restarted per its policy; the agent SIGKILLed and started again
# re-adopts its processes (same pids, none duplicated); a command that does not exist and a
# process that ignores SIGTERM become clear statuses; stopping a job stops its processes. The
# agent runs the router too: the healthy example job is reachable by its host name through it,
# and stops being reachable when the job is stopped.
# Usage: agent_process_test.sh BERTH_BINARY
set -uo pipefail
BERTH=$1
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
# shellcheck source=lib.sh
. "$HERE/lib.sh"

TMP=$(mktemp -d /tmp/berth-e2e-proc-XXXXXX)
DATA=$TMP/data
AGENT_PID=""
ROUTER_PORT=28791
cleanup() {
  [[ -n "$AGENT_PID" ]] && kill -9 "$AGENT_PID" 2>/dev/null
  kill_process_tasks "$DATA"
  rm -rf "$TMP"
}
trap cleanup EXIT

start_agent() {
  rm -f "$DATA/api.addr"
  "$BERTH" agent --dev --data-dir "$DATA" --api 127.0.0.1:0 --machine-id e2e-proc \
    --port-range 27000-27999 --task-poll-ms 200 --router "127.0.0.1:$ROUTER_PORT" \
    >>"$TMP/agent.log" 2>&1 &
  AGENT_PID=$!
  wait_for 60 test -s "$DATA/api.addr" || return 1
  export BERTH_ADDR
  BERTH_ADDR=$(cat "$DATA/api.addr")
  wait_for 60 curl -sf "http://$BERTH_ADDR/v1/health"
}

# alloc_field JOB EXPR: EXPR over `a`, the job's first allocation (sorted by index).
alloc_field() {
  local out
  out=$("$BERTH" alloc ls --job "$1" --json 2>/dev/null) || return 1
  python3 -c 'import json,sys
allocs=sorted(json.loads(sys.argv[1]), key=lambda a: a["index"])
a=allocs[0]
print(eval(sys.argv[2]))' "$out" "$2" 2>/dev/null
}
alloc_is() { [[ "$(alloc_field "$1" "$2")" == "$3" ]]; }

check "agent starts" start_agent

# --- the example job --------------------------------------------------------------------------
"$BERTH" job run "$ROOT/examples/web.yml" >/dev/null
check "web turns running and healthy" \
  wait_for 60 alloc_is web 'a["state"]+"/"+a["health"]' running/healthy
PORT=$(alloc_field web 'a["tasks"][0]["ports"]["http"]')
PID=$(alloc_field web 'a["tasks"][0]["pid"]')
ID=$(alloc_field web 'a["id"]')
out=$(curl -s "http://127.0.0.1:$PORT/")
check "web answers on its port $PORT: $out" contains "$out" "hello from berth"
check "its port is in --port-range" test "$PORT" -ge 27000 -a "$PORT" -le 27999
check "its pid $PID is alive" kill -0 "$PID"
out=$("$BERTH" alloc status "$ID")
check "alloc status shows the task" contains "$out" "server"
via_router() { curl -s -m 5 -H "Host: $1" "http://127.0.0.1:$ROUTER_PORT/"; }
router_says() { [[ "$(via_router "$1")" == *"$2"* ]]; }
check "web is reachable through the router by its host name" \
  wait_for 30 router_says web.berth.localhost "hello from berth"
check "an unknown host gets a 404 from the router" router_says nope.localhost "404"

# --- logs ---------------------------------------------------------------------------------------
cat >"$TMP/echo.yml" <<'JOB'
name: echo
groups:
  - name: g
    tasks:
      - name: t
        driver: process
        command: /bin/sh
        args: [-c, 'echo "hello ${BERTH_ALLOC_ID}"; echo oops >&2; exec /bin/busybox sleep 3600']
JOB
"$BERTH" job run "$TMP/echo.yml" >/dev/null
check "echo runs" wait_for 60 alloc_is echo 'a["state"]' running
EID=$(alloc_field echo 'a["id"]')
logs_have() { "$BERTH" logs "$EID" | grep -q "$1"; }
check "berth logs shows stdout with the interpolated alloc id" wait_for 30 logs_have "hello $EID"
check "berth logs shows stderr" wait_for 30 logs_have oops
# The follower never ends by itself: it runs in the background until what is there has arrived
# (a bound, not a deadline: a slow machine, or a sanitized build, takes longer to get there).
FOLLOW_OUT=$TMP/logs-follow.out
"$BERTH" logs "$EID" -f >"$FOLLOW_OUT" 2>&1 &
FOLLOW_PID=$!
check "berth logs -f streams what is there" wait_for 60 grep -q -- "hello $EID" "$FOLLOW_OUT"
check "berth logs -f is still following" kill -0 "$FOLLOW_PID"
kill "$FOLLOW_PID" 2>/dev/null
wait "$FOLLOW_PID" 2>/dev/null || true

# --- a task killed from outside restarts per policy ---------------------------------------------
kill -9 "$PID"
check "web restarts after its process was killed (restarts 1, new pid)" \
  wait_for 60 alloc_is web '"%s/%d/%s" % (a["state"], a["tasks"][0]["restarts"], a["tasks"][0]["pid"]!='"$PID"')' running/1/True
PID=$(alloc_field web 'a["tasks"][0]["pid"]')
check "the restart kept port $PORT" alloc_is web 'a["tasks"][0]["ports"]["http"]' "$PORT"

# --- agent SIGKILL: processes are re-adopted ---------------------------------------------------
EPID=$(alloc_field echo 'a["tasks"][0]["pid"]')
kill -9 "$AGENT_PID"
wait "$AGENT_PID" 2>/dev/null
AGENT_PID=""
check "tasks outlive the agent" kill -0 "$PID"
check "agent starts again" start_agent
check "web is re-adopted: same pid $PID, still running" \
  wait_for 60 alloc_is web '"%s/%s" % (a["state"], a["tasks"][0]["pid"])' "running/$PID"
check "echo is re-adopted: same pid $EPID" \
  wait_for 60 alloc_is echo '"%s/%s" % (a["state"], a["tasks"][0]["pid"])' "running/$EPID"
sleep 2  # a generous look for duplicates (none may appear, however long we wait)
n=$(pgrep -fc "busybox httpd -f -p $PORT" || true)
check "exactly one web server process on port $PORT (found $n)" test "$n" -eq 1
check "web restarts still 1 (nothing restarted needlessly)" alloc_is web 'a["tasks"][0]["restarts"]' 1

# --- bad commands and stubborn processes --------------------------------------------------------
cat >"$TMP/bad.yml" <<'JOB'
name: bad
groups:
  - name: g
    restart: {attempts: 1, interval: 1m, delay: 100ms, max_delay: 200ms, mode: fail}
    tasks:
      - name: t
        driver: process
        command: /no/such/program
JOB
"$BERTH" job run "$TMP/bad.yml" >/dev/null
check "a missing command fails the allocation" wait_for 60 alloc_is bad 'a["state"]' failed
out=$(alloc_field bad 'a["message"]')
check "and says which command: $out" contains "$out" "/no/such/program"
cat >"$TMP/stubborn.yml" <<'JOB'
name: stubborn
groups:
  - name: g
    tasks:
      - name: t
        driver: process
        command: /bin/sh
        args: [-c, "trap '' TERM; while true; do /bin/busybox sleep 1; done"]
        kill_timeout: 1s
JOB
"$BERTH" job run "$TMP/stubborn.yml" >/dev/null
check "a process that ignores SIGTERM runs" wait_for 60 alloc_is stubborn 'a["state"]' running
SPID=$(alloc_field stubborn 'a["tasks"][0]["pid"]')
"$BERTH" job stop stubborn >/dev/null
check "stopping it kills it after kill_timeout" wait_for 60 bash -c "! kill -0 $SPID 2>/dev/null"
no_allocs() { [[ "$("$BERTH" alloc ls --job "$1" --json)" == "[]" ]]; }
check "and its allocation goes away" wait_for 60 no_allocs stubborn

# --- stop ----------------------------------------------------------------------------------------
"$BERTH" job stop web >/dev/null
check "job stop removes web's route: the router answers 404" \
  wait_for 30 router_says web.berth.localhost "404"
check "job stop stops web's process" wait_for 60 bash -c "! kill -0 $PID 2>/dev/null"
check "web's allocations go away" wait_for 60 no_allocs web
out=$(curl -s -m 2 "http://127.0.0.1:$PORT/" || true)
check "web no longer answers" test -z "$out"

finish
