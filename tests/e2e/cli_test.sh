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
# A cluster-mode agent (etcd) requires a token: start_agent bootstraps one and exports it as
# BERTH_TOKEN; curl gets it through AUTH. In dev mode both stay empty (no tokens needed).
export BERTH_TOKEN=""
AUTH=()

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
  wait_for 60 curl -sf "http://$BERTH_ADDR/v1/health" || return 1
  if [[ "$MODE" != "dev" && -z "$BERTH_TOKEN" ]]; then
    BERTH_TOKEN=$("$BERTH" acl bootstrap 2>/dev/null) || return 1
    AUTH=(-H "Authorization: Bearer $BERTH_TOKEN")
  fi
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
out=$(curl -s -N --max-time 5 "${AUTH[@]}" "http://$BERTH_ADDR/v1/events?index=$idx&topic=jobs" || true)
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
code=$(curl -s -o "$TMP/big.out" -w '%{http_code}' "${AUTH[@]}" -X POST --data-binary @"$TMP/big.yml" "http://$BERTH_ADDR/v1/jobs")
check "oversized body gets 413 ($code)" test "$code" = 413
check "413 body is a JSON error" grep -q '"error"' "$TMP/big.out"
code=$(curl -s -o "$TMP/json.out" -w '%{http_code}' "${AUTH[@]}" -X POST -H 'Content-Type: application/json' --data '{"name": "x", ' "http://$BERTH_ADDR/v1/jobs")
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

# --- revert and history --------------------------------------------------------------------
out=$("$BERTH" job revert web 1 2>&1)
check "job revert submits version 1's spec as version 4: $out" \
  contains "$out" "version 4 submitted (the spec of version 1)"
out=$("$BERTH" job status web --json)
check "the reverted spec runs (count 1, version 4)" \
  python3 -c 'import json,sys; j=json.loads(sys.argv[1]); assert j["version"]==4 and j["spec"]["groups"][0]["count"]==1' "$out"
out=$("$BERTH" job revert web 1 2>&1)
check "reverting to what runs is unchanged: $out" contains "$out" "unchanged (version 4"
out=$("$BERTH" job revert web 99 2>&1)
rc=$?
check "revert to an unknown version: exit 4 naming it: $out" \
  bash -c '[[ $1 -eq 4 ]] && grep -q "has no version 99" <<<"$2"' _ "$rc" "$out"
out=$("$BERTH" job revert web x 2>&1)
rc=$?
check "revert with a bad version is a usage error ($rc)" test "$rc" -eq 2
out=$("$BERTH" job history web --json)
check "history keeps every version and says which is stable" \
  python3 -c 'import json,sys; j=json.loads(sys.argv[1]); assert [x["version"] for x in j]==[1,2,3,4] and all(isinstance(x["stable"], bool) for x in j)' "$out"
out=$("$BERTH" job history web)
check "history table has a deployment column" contains "$out" "DEPLOYMENT"

# --- machines: admin settings, allocations, the engine leader -------------------------------
ME="e2e-$MODE"
machine_field() { # FIELD: that field of this machine in `machine ls --json`, as JSON
  "$BERTH" machine ls --json | python3 -c 'import json,sys; print(json.dumps([m for m in json.load(sys.stdin) if m["id"]==sys.argv[1]][0][sys.argv[2]]))' "$ME" "$1"
}
admin="$(machine_field eligible)/$(machine_field drain)"
check "a machine is eligible and not draining by default ($admin)" test "$admin" = "true/false"
allocs=$(machine_field allocations)
check "machine ls counts the machine's allocations ($allocs)" bash -c '[[ $1 =~ ^[0-9]+$ ]]' _ "$allocs"
out=$("$BERTH" machine ineligible "$ME" 2>&1)
check "machine ineligible: $out" contains "$out" "ineligible (no new allocations"
check "machine ls shows it ineligible" test "$(machine_field eligible)" = false
out=$("$BERTH" machine drain "$ME" 2>&1)
check "machine drain: $out" contains "$out" "draining"
check "machine ls shows it draining" test "$(machine_field drain)" = true
out=$("$BERTH" machine ls)
check "machine ls table has admin and allocation columns" \
  bash -c 'head -1 <<<"$1" | grep -q "ELIGIBLE  DRAIN  ALLOCS"' _ "$out"
out=$("$BERTH" machine drain "$ME" --cancel 2>&1)
check "machine drain --cancel: $out" contains "$out" "no longer draining"
admin="$(machine_field eligible)/$(machine_field drain)"
check "drain cancelled, still ineligible ($admin)" test "$admin" = "false/false"
"$BERTH" machine drain "$ME" >/dev/null 2>&1
out=$("$BERTH" machine eligible "$ME" 2>&1)
check "machine eligible: $out" contains "$out" "eligible (takes new allocations)"
admin="$(machine_field eligible)/$(machine_field drain)"
check "eligible again, and no longer draining ($admin)" test "$admin" = "true/false"
out=$("$BERTH" machine drain nosuch 2>&1)
rc=$?
check "draining an unknown machine: exit 4: $out" \
  bash -c '[[ $1 -eq 4 ]] && grep -q "machine nosuch not found" <<<"$2"' _ "$rc" "$out"
code=$(curl -s -o "$TMP/admin.out" -w '%{http_code}' "${AUTH[@]}" -X PUT -d '{"enable": "yes"}' "http://$BERTH_ADDR/v1/machines/$ME/drain")
check "a bad admin body gets 400 naming the field ($code)" \
  bash -c '[[ $1 == 400 ]] && grep -q "enable.* must be true or false" "$2"' _ "$code" "$TMP/admin.out"
code=$(curl -s -o "$TMP/engine.out" -w '%{http_code}' "${AUTH[@]}" "http://$BERTH_ADDR/v1/engine")
if [[ "$code" == 200 ]]; then
  check "the engine leader is this agent" \
    python3 -c 'import json,sys; assert json.load(open(sys.argv[1]))["machine"]==sys.argv[2]' "$TMP/engine.out" "$ME"
  check "machine ls marks the leader" test "$(machine_field leader)" = true
  deployed() { "$BERTH" job status web --json | python3 -c 'import json,sys; d=json.load(sys.stdin)["deployment"]; assert d["version"]==4 and d["groups"]["frontend"]["desired"]==1'; }
  check "job status --json carries the deployment of version 4" wait_for 60 deployed
  out=$("$BERTH" job status web)
  check "job status prints the deployment and its groups" \
    bash -c 'grep -q "^  Version:  4" <<<"$1" && grep -q "^  frontend " <<<"$1"' _ "$out"
else
  # No engine in this build: nothing leads, and job status says there is no deployment.
  check "no engine leader: 404 with a clear message ($code)" \
    bash -c '[[ $1 == 404 ]] && grep -q "no engine leader" "$2"' _ "$code" "$TMP/engine.out"
  check "machine ls marks no leader" test "$(machine_field leader)" = false
  out=$("$BERTH" job status web)
  check "job status says there is no deployment" contains "$out" "Deployment: none"
fi

# --- stop and purge ------------------------------------------------------------------------
out=$("$BERTH" job stop web)
check "job stop writes a stopped version: $out" contains "$out" "stopped (version 5)"
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
  code=$(curl -s -o /dev/null -w '%{http_code}' "${AUTH[@]}" "http://$BERTH_ADDR/v1/jobs")
  check "store down: HTTP 503 ($code)" test "$code" = 503
  out=$("$BERTH" job run "$ROOT/examples/web.yml" 2>&1)
  check "store down: submit fails clearly: $out" contains "$out" "unavailable"
  check "store down: agent still running" kill -0 "$AGENT_PID"
  stop_agent TERM
fi

finish
