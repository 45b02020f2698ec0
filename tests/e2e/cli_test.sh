#!/usr/bin/env bash
# End-to-end: a job round-trips CLI -> API -> store -> CLI, survives agent restarts (SIGTERM and
# SIGKILL), bad input gets clear errors without harming what is stored, and the event stream
# reports changes. Usage: cli_test.sh BERTH_BINARY dev|etcd
set -uo pipefail
BERTH=$1
MODE=$2
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
# shellcheck source=lib.sh
. "$HERE/lib.sh"

TMP=$(mktemp -d /tmp/berth-e2e-XXXXXX)
AGENT_PID=""
EVENTS_PID=""
cleanup() {
  [[ -n "$EVENTS_PID" ]] && kill "$EVENTS_PID" 2>/dev/null
  [[ -n "$AGENT_PID" ]] && kill -9 "$AGENT_PID" 2>/dev/null
  kill_process_tasks "$TMP/data"  # in dev mode the agent runs the web job's processes
  rm -rf "$TMP"
}
trap cleanup EXIT

if [[ "$MODE" == "dev" ]]; then
  AGENT_ARGS=(--dev)
else
  if [[ -z "${BERTH_TEST_ETCD:-}" ]]; then
    echo "BERTH_TEST_ETCD is not set: run through scripts/test.sh (it starts etcd)"
    exit 1
  fi
  AGENT_ARGS=(--store "etcd://$BERTH_TEST_ETCD" --prefix "/berth-e2e-$$-$RANDOM/")
fi
AGENT_ARGS+=(--data-dir "$TMP/data" --api 127.0.0.1:0 --machine-id "e2e-$MODE" --meta rack=r1
  --meta zone=z9)

start_agent() {
  rm -f "$TMP/data/api.addr"
  "$BERTH" agent "${AGENT_ARGS[@]}" "$@" >>"$TMP/agent.log" 2>&1 &
  AGENT_PID=$!
  if ! wait_for 60 test -s "$TMP/data/api.addr"; then
    echo "agent did not start; log:"
    cat "$TMP/agent.log"
    return 1
  fi
  export BERTH_ADDR
  BERTH_ADDR=$(cat "$TMP/data/api.addr")
  wait_for 60 curl -sf "http://$BERTH_ADDR/v1/health"
}

stop_agent() { # SIGNAL
  kill "-$1" "$AGENT_PID" 2>/dev/null
  wait "$AGENT_PID" 2>/dev/null
  AGENT_PID=""
}

check "agent starts ($MODE)" start_agent

# --- round trip ---------------------------------------------------------------------------
out=$("$BERTH" job run "$ROOT/examples/web.yml" 2>&1)
check "job run submits version 1: $out" contains "$out" "version 1 submitted"
out=$("$BERTH" job run "$ROOT/examples/web.yml" 2>&1)
check "same file again is unchanged: $out" contains "$out" "unchanged (version 1)"
out=$("$BERTH" job ls --json)
check "job ls --json lists web at version 1" \
  python3 -c 'import json,sys; j=json.loads(sys.argv[1]); assert [x["name"] for x in j]==["web"] and j[0]["version"]==1' "$out"
out=$("$BERTH" job ls)
check "job ls prints a table" contains "$out" "NAME"
out=$("$BERTH" job status web)
check "job status shows the job" contains "$out" "Name:       web"
sed 's/count: 1/count: 3/' "$ROOT/examples/web.yml" >"$TMP/web3.yml"
out=$("$BERTH" job run "$TMP/web3.yml" 2>&1)
check "changed spec makes version 2: $out" contains "$out" "version 2 submitted"
out=$("$BERTH" job status web --json)
check "job status --json round-trips the spec (count 3)" \
  python3 -c 'import json,sys; j=json.loads(sys.argv[1]); assert j["version"]==2 and j["spec"]["groups"][0]["count"]==3 and j["spec"]["name"]=="web"' "$out"
out=$("$BERTH" job history web --json)
check "job history has 2 versions" \
  python3 -c 'import json,sys; j=json.loads(sys.argv[1]); assert [x["version"] for x in j]==[1,2]' "$out"
out=$("$BERTH" machine ls --json)
check "machine ls shows this machine with its meta" \
  python3 -c 'import json,sys; j=json.loads(sys.argv[1]); m=[x for x in j if x["id"]=="e2e-'"$MODE"'"][0]; assert m["meta"]=={"rack":"r1","zone":"z9"} and m["cpus"]>0' "$out"
out=$("$BERTH" machine ls)
check "machine ls prints a table" contains "$out" "e2e-$MODE"
out=$("$BERTH" version)
check "version names client and agent" contains "$out" "agent at"

# --- events --------------------------------------------------------------------------------
"$BERTH" events --topic jobs >"$TMP/events.out" 2>&1 &
EVENTS_PID=$!
check "events stream says ready" wait_for 30 grep -q '"ready"' "$TMP/events.out"
sed 's/count: 1/count: 2/' "$ROOT/examples/web.yml" >"$TMP/web2.yml"
"$BERTH" job run "$TMP/web2.yml" >/dev/null
check "events stream reports the new version" wait_for 30 grep -q '"key":"web"' "$TMP/events.out"
kill "$EVENTS_PID" 2>/dev/null
wait "$EVENTS_PID" 2>/dev/null
EVENTS_PID=""
idx=$("$BERTH" job status web --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["modify_index"])')
out=$(curl -s -N --max-time 5 "http://$BERTH_ADDR/v1/events?index=$idx&topic=jobs" || true)
check "events from the job's modify_index replay that version" contains "$out" '"version":3'

# --- bad input -----------------------------------------------------------------------------
printf 'name: bad\ngroups:\n  - name: g\n    count: [1\n' >"$TMP/bad.yml"
out=$("$BERTH" job run "$TMP/bad.yml" 2>&1)
rc=$?
check "malformed YAML: non-zero exit" test "$rc" -ne 0
check "malformed YAML: one line naming the file: $out" \
  bash -c '[[ $(wc -l <<<"$1") -eq 1 ]] && grep -q "bad.yml:" <<<"$1"' _ "$out"
printf 'name: bad\ncolour: blue\ngroups:\n  - name: g\n    tasks:\n      - name: t\n        driver: process\n        command: /bin/true\n' >"$TMP/unknown.yml"
out=$("$BERTH" job run "$TMP/unknown.yml" 2>&1)
check "unknown field is named with its line: $out" \
  bash -c 'grep -q "unknown.yml:2" <<<"$1" && grep -q colour <<<"$1"' _ "$out"
printf 'name: bad\ngroups:\n  - name: g\n    count: lots\n    tasks:\n      - name: t\n        driver: process\n        command: /bin/true\n' >"$TMP/type.yml"
out=$("$BERTH" job run "$TMP/type.yml" 2>&1)
check "wrong type names the field: $out" \
  bash -c 'grep -q "type.yml:4" <<<"$1" && grep -q "count" <<<"$1"' _ "$out"
head -c 2000000 /dev/zero | tr '\0' 'a' >"$TMP/big.yml"
code=$(curl -s -o "$TMP/big.out" -w '%{http_code}' -X POST --data-binary @"$TMP/big.yml" "http://$BERTH_ADDR/v1/jobs")
check "oversized body gets 413 ($code)" test "$code" = 413
check "413 body is a JSON error" grep -q '"error"' "$TMP/big.out"
code=$(curl -s -o "$TMP/json.out" -w '%{http_code}' -X POST -H 'Content-Type: application/json' --data '{"name": "x", ' "http://$BERTH_ADDR/v1/jobs")
check "invalid JSON gets 400 ($code)" test "$code" = 400
check "400 names the problem" grep -q '"error"' "$TMP/json.out"
code=$(curl -s -o "$TMP/route.out" -w '%{http_code}' "http://$BERTH_ADDR/v1/nope")
check "unknown route gets 404 ($code)" test "$code" = 404
check "404 is JSON" grep -q '"error"' "$TMP/route.out"
code=$(printf 'GARBAGE\r\n\r\n' | curl -s -o /dev/null -w '%{http_code}' --data-binary @- -X 'BAD METHOD' "http://$BERTH_ADDR/v1/jobs" || true)
check "malformed request line gets 400 ($code)" test "$code" = 400
out=$("$BERTH" job status nosuch 2>&1)
rc=$?
check "unknown job: exit 4 and a clear line: $out" \
  bash -c '[[ $1 -eq 4 ]] && grep -q "not found" <<<"$2"' _ "$rc" "$out"
check "agent still running after bad input" kill -0 "$AGENT_PID"
out=$("$BERTH" job status web --json)
check "bad submissions lost nothing (still version 3)" \
  python3 -c 'import json,sys; j=json.loads(sys.argv[1]); assert j["version"]==3' "$out"

# --- restarts ------------------------------------------------------------------------------
stop_agent TERM
check "agent restarts after SIGTERM" start_agent
out=$("$BERTH" job status web --json)
check "job survives a clean restart" \
  python3 -c 'import json,sys; j=json.loads(sys.argv[1]); assert j["version"]==3 and j["spec"]["groups"][0]["count"]==2' "$out"
stop_agent KILL
check "agent restarts after SIGKILL" start_agent
out=$("$BERTH" job status web --json)
check "job survives SIGKILL" \
  python3 -c 'import json,sys; j=json.loads(sys.argv[1]); assert j["version"]==3' "$out"
out=$("$BERTH" job history web --json)
check "history survives SIGKILL" \
  python3 -c 'import json,sys; j=json.loads(sys.argv[1]); assert [x["version"] for x in j]==[1,2,3]' "$out"

# --- stop and purge ------------------------------------------------------------------------
out=$("$BERTH" job stop web)
check "job stop writes a stopped version: $out" contains "$out" "stopped (version 4)"
out=$("$BERTH" job stop web --purge)
check "job stop --purge: $out" contains "$out" "purged"
out=$("$BERTH" job ls)
check "no jobs left: $out" contains "$out" "no jobs"

# --- mode-specific -------------------------------------------------------------------------
stop_agent TERM
if [[ "$MODE" == "dev" ]]; then
  out=$("$BERTH" agent --dev --data-dir "$TMP/d2" --api 0.0.0.0:0 2>&1)
  rc=$?
  check "--dev refuses a non-loopback address: $out" \
    bash -c '[[ $1 -ne 0 ]] && grep -q loopback <<<"$2"' _ "$rc" "$out"
  rm -f "$TMP/data/api.addr"
  "$BERTH" agent "${AGENT_ARGS[@]}" >"$TMP/second.log" 2>&1 &
  first=$!
  wait_for 60 test -s "$TMP/data/api.addr"
  # (timeout only guards the test run against a lock that failed to hold)
  out=$(timeout 60 "$BERTH" agent "${AGENT_ARGS[@]}" 2>&1)
  check "a second agent on the same data dir is refused: $out" contains "$out" "in use"
  kill "$first" 2>/dev/null
  wait "$first" 2>/dev/null
else
  # A store that is down: the agent runs, answers, and reports 503 with a clear line.
  rm -f "$TMP/down/api.addr"
  "$BERTH" agent --store etcd://127.0.0.1:1 --data-dir "$TMP/down" --api 127.0.0.1:0 \
    --machine-id down >"$TMP/down.log" 2>&1 &
  AGENT_PID=$!
  check "agent starts with its store down" wait_for 60 test -s "$TMP/down/api.addr"
  BERTH_ADDR=$(cat "$TMP/down/api.addr")
  out=$("$BERTH" job ls 2>&1)
  rc=$?
  check "store down: exit 3 and one line: $out" \
    bash -c '[[ $1 -eq 3 ]] && [[ $(wc -l <<<"$2") -eq 1 ]]' _ "$rc" "$out"
  code=$(curl -s -o /dev/null -w '%{http_code}' "http://$BERTH_ADDR/v1/jobs")
  check "store down: HTTP 503 ($code)" test "$code" = 503
  out=$("$BERTH" job run "$ROOT/examples/web.yml" 2>&1)
  check "store down: submit fails clearly: $out" contains "$out" "unavailable"
  check "store down: agent still running" kill -0 "$AGENT_PID"
  stop_agent TERM
fi

finish
