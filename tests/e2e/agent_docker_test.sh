#!/usr/bin/env bash
# End-to-end: `berth agent --dev` runs docker jobs on this machine through a real Docker Engine.
#   1. start/stop: count 2 runs, exactly 2 containers, the published ports answer, job stop
#   2. restart policy: a task exiting 3 is restarted twice, then failed for good (mode fail)
#   3. health: an http check turns unhealthy when the page goes and healthy when it is back
#   4. agent SIGKILL: a new agent on the same data dir re-adopts the 3 containers untouched, and
#      an agent of another machine on the same engine leaves them alone
#   5. static port held by someone else: the status names the port; once free, the task runs
#   6. missing image: a clear status naming the image, no containers, the agent keeps serving
#   7. engine stopped and started under a running agent (a private dockerd, so nothing else is
#      disturbed): the status shows the outage, the job comes back with exactly `count` containers;
#      an agent restarted while its engine is unreachable re-adopts the same containers
# Usage: agent_docker_test.sh BERTH_BINARY. Needs root, a Docker Engine at $DOCKER_HOST or
# /var/run/docker.sock (scripts/docker-test-engine.sh start), dockerd, busybox-static, python3.
# Bounds are generous wait_for limits, never timing requirements. Everything made here (the
# containers labelled berth.machine=itest-*, agents, the private engine) is removed at the start
# (leftovers of an earlier run) and at exit.
# shellcheck source-path=SCRIPTDIR
set -uo pipefail
BERTH=$(realpath "$1")
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
JOBS=$HERE/jobs
# shellcheck source=lib.sh
. "$HERE/lib.sh"
# shellcheck source=agent_docker_lib.sh
. "$HERE/agent_docker_lib.sh"

HOST=${DOCKER_HOST:-unix:///var/run/docker.sock}
# Short: the private engine's Unix socket paths live under it.
TMP=$(mktemp -d /tmp/bit-XXXXXX)
PRIV_DIR=$TMP/pd
PRIV_HOST=unix://$PRIV_DIR/docker.sock
ROUTER_PORT=28792
MAIN_ARGS=(--dev --machine-id itest-main --publish-ip 127.0.0.1 --docker-host "$HOST"
  --router "127.0.0.1:$ROUTER_PORT")
PRIV_ARGS=(--dev --machine-id itest-priv --publish-ip 127.0.0.1 --docker-host "$PRIV_HOST")

EVENTS_PID=""
cleanup() {
  local pid
  [[ -n "$HOLDER_PID" ]] && stop_pid KILL "$HOLDER_PID"
  [[ -n "$EVENTS_PID" ]] && stop_pid TERM "$EVENTS_PID"
  for pid in "${AGENT_PIDS[@]}"; do
    kill -0 "$pid" 2>/dev/null && stop_pid TERM "$pid"
  done
  if ((FAILED > 0)); then
    for log in "$TMP"/*.log; do
      [[ -f $log ]] || continue
      echo "--- last lines of $(basename "$log")"
      tail -n 40 "$log"
    done
  fi
  remove_itest_containers "$HOST"
  "$ROOT/scripts/private-dockerd.sh" stop "$PRIV_DIR" >/dev/null 2>&1
  rm -rf "$TMP"
}
trap cleanup EXIT

# --- preconditions ------------------------------------------------------------------------
if ! engine_answers "$HOST"; then
  echo "no Docker Engine answers at $HOST: run scripts/docker-test-engine.sh start (or scripts/test.sh)"
  fail "docker engine answers at $HOST"
  finish
  exit 1
fi
remove_itest_containers "$HOST"
check "test image berth/busybox:latest on $HOST" ensure_image "$HOST"
check "agent starts (machine itest-main)" start_agent main "${MAIN_ARGS[@]}"
A=${ADDR[main]:-}
if ! "$BERTH" --addr "$A" alloc ls --json >"$TMP/alloc-ls.out" 2>&1; then
  fail "berth alloc ls --json answers: $(head -c 300 "$TMP/alloc-ls.out")"
  echo "(the agent's reconciler or the alloc CLI is missing: nothing else can be checked)"
  finish
  exit 1
fi
ok "berth alloc ls --json answers"

# --- 0. the example job (examples/web-docker.yml) ----------------------------------------------
J=web
out=$("$BERTH" --addr "$A" job run "$ROOT/examples/web-docker.yml" 2>&1)
check "[example] job run examples/web-docker.yml: $out" contains "$out" "submitted"
check_allocs "[example] running and healthy" 90 "$A" "$J" \
  'all_state(a, 1, "running") and a[0]["health"] == "healthy"'
p=$(alloc_py "$A" "$J" 'tasks(a)[0]["ports"]["http"]')
body=$(curl -s --max-time 5 "http://127.0.0.1:$p/")
check "[example] it answers on its published port $p: $body" \
  contains "$body" "hello from berth in docker"
router_says() { [[ "$(curl -s -m 5 -H "Host: $1" "http://127.0.0.1:$ROUTER_PORT/")" == *"$2"* ]]; }
check "[example] reachable through the router as web.berth.localhost" \
  wait_for 30 router_says web.berth.localhost "hello from berth in docker"
"$BERTH" --addr "$A" job stop "$J" --purge >/dev/null 2>&1
check "[example] stopped: the router answers 404 for web.berth.localhost" \
  wait_for 30 router_says web.berth.localhost "404"
check "[example] job stop --purge: no container of $J left" wait_for 90 ctr_count_is 0 "$HOST" "$J" -a

# --- 1. start/stop ----------------------------------------------------------------------------
J=itest-web
out=$("$BERTH" --addr "$A" job run "$JOBS/$J.yml" 2>&1)
check "[start/stop] job run $J: $out" contains "$out" "submitted"
check_allocs "[start/stop] 2 allocations reach running" 90 "$A" "$J" 'all_state(a, 2, "running")'
check "[start/stop] exactly 2 containers labelled berth.job=$J" ctr_count_is 2 "$HOST" "$J" -a
check "[start/stop] both running" ctr_count_is 2 "$HOST" "$J"
labels=$(dk "$HOST" ps -a --filter "label=berth.job=$J" --format '{{.Label "berth.machine"}}' | sort -u)
check "[start/stop] containers carry berth.machine=itest-main ($labels)" test "$labels" = itest-main
ports=$(alloc_py "$A" "$J" '[t["ports"].get("http", 0) for t in tasks(a)]')
n_ok=0
for p in $ports; do
  if wait_for 30 curl -sf --max-time 5 "http://127.0.0.1:$p/"; then
    body=$(curl -s --max-time 5 "http://127.0.0.1:$p/")
    contains "$body" "hello from itest-web" && n_ok=$((n_ok + 1))
  fi
done
check "[start/stop] both published host ports answer on 127.0.0.1 (ports: $ports)" test "$n_ok" -eq 2
handles=$(alloc_py "$A" "$J" 'sorted(t["handle"] for t in tasks(a))')
ids=$(ctr_ids "$HOST" "$J" | tr '\n' ' ')
check "[start/stop] task handles are the container ids" test "$handles" = "${ids% }"
out=$("$BERTH" --addr "$A" job stop "$J" 2>&1)
check "[start/stop] job stop: $out" contains "$out" "stopped"
check "[start/stop] no container of $J runs after job stop" wait_for 90 ctr_count_is 0 "$HOST" "$J"
check_allocs "[start/stop] allocations stopped or gone" \
  60 "$A" "$J" 'all(x["state"] in ("stopped", "complete") for x in a)'

# --- 2. restart policy and crash-loop back-off -----------------------------------------------
J=itest-crash
# Count the containers made for the job from the engine's live event stream (started before the
# submission; a later `docker events --since` can miss events that its buffer already dropped).
# (docker itself, not the dk function, in the background: then $! is docker and stopping it works)
docker -H "$HOST" events --since "$(date +%s)" --filter "label=berth.job=$J" --filter event=create \
  --format '{{.ID}}' >"$TMP/crash-creates" 2>&1 &
EVENTS_PID=$!
out=$("$BERTH" --addr "$A" job run "$JOBS/$J.yml" 2>&1)
check "[restart] job run $J: $out" contains "$out" "submitted"
if check_allocs "[restart] the allocation ends failed" 90 "$A" "$J" 'all_state(a, 1, "failed")'; then
  check_allocs "[restart] restarts == 2 and exit_code == 3" 0 "$A" "$J" \
    'len(tasks(a)) == 1 and tasks(a)[0]["restarts"] == 2 and tasks(a)[0]["exit_code"] == 3'
  # An observation window (not a timing requirement): longer than max_delay, so a further
  # restart would have happened in it.
  sleep 4
  check_allocs "[restart] still failed with restarts == 2 a while later" 0 "$A" "$J" \
    'all_state(a, 1, "failed") and tasks(a)[0]["restarts"] == 2'
  id=$(alloc_py "$A" "$J" 'a[0]["id"]')
  out=$("$BERTH" --addr "$A" logs "$id" 2>&1)
  # The exited run is kept until the next start, so a crashed task's output can be read.
  check "[restart] berth logs shows the failed task's output: ${out:0:200}" \
    contains "$out" "itest-crash-output"
  out=$("$BERTH" --addr "$A" alloc status "$id" --json 2>&1)
  check "[restart] berth alloc status --json: the same allocation, failed" python3 -c '
import json, sys
j = json.loads(sys.argv[1])
assert j["id"] == sys.argv[2] and j["state"] == "failed", j' "$out" "$id"
  creates=$(sort -u "$TMP/crash-creates" | grep -c . || true)
  check "[restart] 3 containers were created in all, 1 + 2 restarts ($creates)" test "$creates" -eq 3
fi
stop_pid TERM "$EVENTS_PID"
EVENTS_PID=""
check "[restart] no container of $J runs" ctr_count_is 0 "$HOST" "$J"
"$BERTH" --addr "$A" job stop "$J" >/dev/null 2>&1

# --- 3. health: unhealthy and back --------------------------------------------------------------
J=itest-health
mkdir -p "$TMP/www"
echo ok >"$TMP/www/index.html"
render "$JOBS/$J.yml" "$TMP/$J.yml" "WWW=$TMP/www"
out=$("$BERTH" --addr "$A" job run "$TMP/$J.yml" 2>&1)
check "[health] job run $J: $out" contains "$out" "submitted"
check_allocs "[health] running and healthy" \
  90 "$A" "$J" 'all_state(a, 1, "running") and a[0]["health"] == "healthy"'
cid=$(ctr_ids "$HOST" "$J" | head -n 1)
check "[health] docker exec removes index.html" \
  dk "$HOST" exec "$cid" /bin/busybox rm -f /www/index.html
check_allocs "[health] turns unhealthy" \
  60 "$A" "$J" 'len(a) == 1 and a[0]["health"] == "unhealthy"'
# Put it back through the running container (the agent may have restarted it on unhealthy:
# take whichever runs now; the directory is the host's, so a container that is between
# restarts gets it too).
restore() {
  local c
  c=$(ctr_ids "$HOST" "$J" | head -n 1)
  [[ -n $c ]] && dk "$HOST" exec "$c" /bin/busybox sh -c 'echo ok > /www/index.html'
}
if ! wait_for 30 restore; then
  echo "    (no running container to exec into: restoring the file on the host side)"
  echo ok >"$TMP/www/index.html"
fi
check_allocs "[health] healthy again after the page is restored" \
  90 "$A" "$J" 'all_state(a, 1, "running") and a[0]["health"] == "healthy"'
restarts=$(alloc_py "$A" "$J" '[t["restarts"] for t in tasks(a)]')
echo "    (restarts of the health task: $restarts)"
"$BERTH" --addr "$A" job stop "$J" >/dev/null 2>&1

# --- 4. agent SIGKILL and re-adoption ------------------------------------------------------------
J=itest-adopt
out=$("$BERTH" --addr "$A" job run "$JOBS/$J.yml" 2>&1)
check "[adopt] job run $J: $out" contains "$out" "submitted"
check_allocs "[adopt] 3 allocations running" 90 "$A" "$J" 'all_state(a, 3, "running")'
before_ids=$(ctr_ids "$HOST" "$J" -a)
before_started=$(for c in $before_ids; do dk "$HOST" inspect -f '{{.State.StartedAt}}' "$c"; done)
before_allocs=$(alloc_py "$A" "$J" 'sorted(x["id"] + "=" + str(x["tasks"][0]["ports"]) for x in a)')
check "[adopt] 3 containers before the kill" test "$(grep -c . <<<"$before_ids")" -eq 3
# The engine's events for the job from here on, to show who stopped or replaced what if a
# container changes.
docker -H "$HOST" events --since "$(date +%s)" --filter "label=berth.job=$J" \
  --format '{{.Time}} {{.Action}} {{.Actor.Attributes.name}} {{.ID}}' >"$TMP/adopt-events" 2>&1 &
EVENTS_PID=$!
stop_pid KILL "${AGENT_PID[main]}"
check "[adopt] agent restarts on the same data dir after SIGKILL" start_agent main "${MAIN_ARGS[@]}"
A=${ADDR[main]:-}
check_allocs "[adopt] allocations running after the restart" 90 "$A" "$J" 'all_state(a, 3, "running")'
# Let the new agent settle (an observation window: anything it would restart or duplicate
# shows up in it), then compare.
sleep 5
check_allocs "[adopt] still running once settled" 30 "$A" "$J" 'all_state(a, 3, "running")'
after_ids=$(ctr_ids "$HOST" "$J" -a)
after_started=$(for c in $after_ids; do dk "$HOST" inspect -f '{{.State.StartedAt}}' "$c"; done)
if ! check "[adopt] exactly 3 containers, the same ids as before" test "$after_ids" = "$before_ids"; then
  echo "    engine events for $J since the kill:"
  grep -v exec_ "$TMP/adopt-events" | head -n 30 | sed 's/^/    /'
fi
stop_pid TERM "$EVENTS_PID"
EVENTS_PID=""
check "[adopt] none restarted (same start times)" test "$after_started" = "$before_started"
after_allocs=$(alloc_py "$A" "$J" 'sorted(x["id"] + "=" + str(x["tasks"][0]["ports"]) for x in a)')
check "[adopt] same allocations and host ports" test "$after_allocs" = "$before_allocs"
handles=$(alloc_py "$A" "$J" 'sorted(t["handle"] for t in tasks(a))')
check "[adopt] task handles are the adopted container ids" test "$handles" = "$(tr '\n' ' ' <<<"$after_ids" | sed 's/ $//')"
# Another agent (another machine id) on the same engine must leave these containers alone: it
# lists only containers labelled with its own machine id.
if check "[adopt] an agent of another machine (itest-other) starts on the same engine" \
  start_agent other --dev --machine-id itest-other --publish-ip 127.0.0.1 --docker-host "$HOST"; then
  sleep 3 # observation window: its first listing and orphan sweeps happen in it
  check "[adopt] it leaves the 3 containers alone" test "$(ctr_ids "$HOST" "$J" -a)" = "$before_ids"
  check_allocs "[adopt] they still run" 30 "$A" "$J" 'all_state(a, 3, "running")'
  stop_pid TERM "${AGENT_PID[other]}"
fi
"$BERTH" --addr "$A" job stop "$J" >/dev/null 2>&1

# --- 5. static port in use -------------------------------------------------------------------------
J=itest-port
if check "[port] a test listener holds a port on 127.0.0.1" hold_port "$TMP/held.port"; then
  PORT=$(cat "$TMP/held.port")
  render "$JOBS/$J.yml" "$TMP/$J.yml" "PORT=$PORT"
  out=$("$BERTH" --addr "$A" job run "$TMP/$J.yml" 2>&1)
  check "[port] job run $J (static port $PORT): $out" contains "$out" "submitted"
  check_allocs "[port] status names port $PORT and is not running" 60 "$A" "$J" \
    "len(a) == 1 and a[0]['state'] != 'running' and '$PORT' in texts(a)"
  check "[port] no container of $J runs" ctr_count_is 0 "$HOST" "$J"
  stop_pid KILL "$HOLDER_PID"
  HOLDER_PID=""
  check_allocs "[port] runs once the port is free (back-off retry)" \
    90 "$A" "$J" 'all_state(a, 1, "running")'
  check "[port] the static port answers" wait_for 30 curl -sf --max-time 5 "http://127.0.0.1:$PORT/"
  check "[port] exactly 1 container" ctr_count_is 1 "$HOST" "$J" -a
  "$BERTH" --addr "$A" job stop "$J" >/dev/null 2>&1
fi

# --- 6. missing image ---------------------------------------------------------------------------
J=itest-noimage
out=$("$BERTH" --addr "$A" job run "$JOBS/$J.yml" 2>&1)
check "[image] job run $J: $out" contains "$out" "submitted"
check_allocs "[image] status names the missing image" 60 "$A" "$J" \
  'len(a) == 1 and a[0]["state"] != "running" and "berth/no-such-image" in texts(a)'
sleep 3 # observation window: a crash loop would create containers in it
check "[image] no container was created for $J" ctr_count_is 0 "$HOST" "$J" -a
check "[image] agent still running" kill -0 "${AGENT_PID[main]}"
check "[image] agent still serves" curl -sf -o /dev/null --max-time 10 "http://$A/v1/health"
check_allocs "[image] still not running, still naming the image" 0 "$A" "$J" \
  'len(a) == 1 and a[0]["state"] != "running" and "berth/no-such-image" in texts(a)'
"$BERTH" --addr "$A" job stop "$J" >/dev/null 2>&1

# --- 7. Docker Engine stopped and started under a running agent (private engine) ---------------
J=itest-engine
if check "[engine] private dockerd starts" "$ROOT/scripts/private-dockerd.sh" start "$PRIV_DIR"; then
  check "[engine] test image on the private engine" ensure_image "$PRIV_HOST"
  check "[engine] second agent starts (machine itest-priv, --docker-host $PRIV_HOST)" \
    start_agent priv "${PRIV_ARGS[@]}"
  P=${ADDR[priv]:-}
  out=$("$BERTH" --addr "$P" job run "$JOBS/$J.yml" 2>&1)
  check "[engine] job run $J: $out" contains "$out" "submitted"
  check_allocs "[engine] 2 allocations running" 90 "$P" "$J" 'all_state(a, 2, "running")'
  check "[engine] 2 containers on the private engine" ctr_count_is 2 "$PRIV_HOST" "$J" -a
  check "[engine] none on the machine's engine" ctr_count_is 0 "$HOST" "$J" -a
  check "[engine] private dockerd stops" "$ROOT/scripts/private-dockerd.sh" stop "$PRIV_DIR"
  # The problem shows as a current message about the engine (its tasks' state is unknowable
  # while it is down, so a state other than running is not required).
  check_allocs "[engine] status shows the outage (a current message naming the engine)" \
    90 "$P" "$J" 'len(a) == 2 and any(w in current(a) for w in ("unreachable", "engine"))'
  check "[engine] agent keeps serving: alloc ls answers" allocs_are "$P" "$J" 'len(a) == 2'
  check "[engine] agent still running" kill -0 "${AGENT_PID[priv]}"
  check "[engine] private dockerd starts again" "$ROOT/scripts/private-dockerd.sh" start "$PRIV_DIR"
  check_allocs "[engine] 2 allocations running again" 120 "$P" "$J" 'all_state(a, 2, "running")'
  check "[engine] exactly 2 containers running" wait_for 30 ctr_count_is 2 "$PRIV_HOST" "$J"
  check "[engine] exactly 2 containers in all (old ones replaced, not piled up)" \
    ctr_count_is 2 "$PRIV_HOST" "$J" -a
  check_allocs "[engine] the restarts were counted" 0 "$P" "$J" \
    'all(t["restarts"] >= 1 for t in tasks(a))'
  # The agent restarts (SIGKILL) while its engine is unreachable but running, containers and
  # all (its socket moved away): the containers are not gone, only out of sight, so once the
  # engine answers again the new agent must re-adopt the same ones, and count no restart.
  ids_before=$(ctr_ids "$PRIV_HOST" "$J" -a)
  restarts_before=$(alloc_py "$P" "$J" 'sorted(t["restarts"] for t in tasks(a))')
  stop_pid KILL "${AGENT_PID[priv]}"
  mv "$PRIV_DIR/docker.sock" "$PRIV_DIR/docker.sock.away"
  check "[engine] agent restarts while its engine is unreachable" start_agent priv "${PRIV_ARGS[@]}"
  P=${ADDR[priv]:-}
  check_allocs "[engine] status names the unreachable engine" 60 "$P" "$J" \
    'len(a) == 2 and all(any(w in current([x]) for w in ("unreachable", "engine")) for x in a)'
  sleep 2 # observation window: what the new agent concludes without its engine
  mv "$PRIV_DIR/docker.sock.away" "$PRIV_DIR/docker.sock"
  check_allocs "[engine] running again once the engine answers" 90 "$P" "$J" 'all_state(a, 2, "running")'
  check "[engine] the same 2 containers, re-adopted" test "$(ctr_ids "$PRIV_HOST" "$J" -a)" = "$ids_before"
  # A task that ran before is not taken for gone while its driver cannot be listed.
  check "[engine] no restart counted for containers that never stopped" allocs_are "$P" "$J" \
    "sorted(t['restarts'] for t in tasks(a)) == [int(x) for x in '$restarts_before'.split()]"
  "$BERTH" --addr "$P" job stop "$J" >/dev/null 2>&1
  check "[engine] job stop: no container runs" wait_for 60 ctr_count_is 0 "$PRIV_HOST" "$J"

  # The same with no restarts allowed (attempts 0, mode fail): a container that never stopped
  # must not turn its allocation failed, nor be left running after the job stops.
  J=itest-once
  out=$("$BERTH" --addr "$P" job run "$JOBS/$J.yml" 2>&1)
  check "[engine] job run $J: $out" contains "$out" "submitted"
  check_allocs "[engine] $J running" 90 "$P" "$J" 'all_state(a, 1, "running")'
  stop_pid KILL "${AGENT_PID[priv]}"
  mv "$PRIV_DIR/docker.sock" "$PRIV_DIR/docker.sock.away"
  check "[engine] agent restarts while its engine is unreachable ($J)" \
    start_agent priv "${PRIV_ARGS[@]}"
  P=${ADDR[priv]:-}
  sleep 2 # observation window: what the new agent concludes without its engine
  mv "$PRIV_DIR/docker.sock.away" "$PRIV_DIR/docker.sock"
  # With no restarts left, a container that never stopped must not fail its allocation.
  check "[engine] $J not given up as failed while its container runs" \
    wait_allocs 20 "$P" "$J" 'all_state(a, 1, "running")'
  "$BERTH" --addr "$P" job stop "$J" >/dev/null 2>&1
  check_allocs "[engine] $J: allocation stopped or gone after job stop" 60 "$P" "$J" \
    'all(x["state"] in ("stopped", "complete") for x in a)'
  check "[engine] $J: job stop leaves no container running" \
    wait_for 20 ctr_count_is 0 "$PRIV_HOST" "$J"
fi

check "main agent still running at the end" kill -0 "${AGENT_PID[main]}"
finish
