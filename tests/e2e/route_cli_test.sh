#!/usr/bin/env bash
# End-to-end: `berth route` against a dev agent that runs the router. Imports hipache's routes
# from a real redis-server (its own, on a free loopback port), checks `route ls` and that
# requests with those Host names reach the backends through the router (busybox httpd), then
# route add/rm, an agent's own route (the example job) and the errors.
# Usage: route_cli_test.sh BERTH_BINARY
set -uo pipefail
BERTH=$1
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
# shellcheck source=lib.sh
. "$HERE/lib.sh"

# Not a skip: CI installs these (scripts/install-deps.sh), so their absence is a failure.
for tool in redis-server redis-cli busybox curl python3; do
  if ! command -v "$tool" >/dev/null 2>&1; then
    echo "FAIL - $tool is not installed: run scripts/install-deps.sh (it installs redis-server," \
      "busybox-static, curl and python3)"
    echo "0 passed, 1 failed"
    exit 1
  fi
done

TMP=$(mktemp -d /tmp/berth-route-e2e-XXXXXX)
AGENT_PID=""
REDIS_PID=""
HTTPD_PIDS=()
cleanup() {
  local p
  for p in "$AGENT_PID" "$REDIS_PID" "${HTTPD_PIDS[@]}"; do
    [[ -n "$p" ]] || continue
    kill -9 "$p" 2>/dev/null
    wait "$p" 2>/dev/null # reaped quietly (no "Killed" line)
  done
  kill_process_tasks "$TMP/data" # the example job's server
  rm -rf "$TMP"
}
trap cleanup EXIT

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# --- backends: busybox httpd, each saying who it is ------------------------------------------
start_backend() { # NAME -> sets PORT
  mkdir -p "$TMP/www-$1/m"
  echo "backend $1" >"$TMP/www-$1/index.html"
  echo "backend $1 under /m" >"$TMP/www-$1/m/index.html"
  local tries
  for tries in 1 2 3; do
    PORT=$(free_port)
    busybox httpd -f -p "127.0.0.1:$PORT" -h "$TMP/www-$1" &
    local pid=$!
    if wait_for 10 curl -sf "http://127.0.0.1:$PORT/"; then
      HTTPD_PIDS+=("$pid")
      return 0
    fi
    kill -9 "$pid" 2>/dev/null
  done
  return 1
}
start_backend one && B1=$PORT
start_backend two && B2=$PORT
start_backend three && B3=$PORT
check "three backends answer" test -n "${B1:-}" -a -n "${B2:-}" -a -n "${B3:-}"

# --- redis -------------------------------------------------------------------------------
start_redis() {
  mkdir -p "$TMP/redis"
  local tries
  for tries in 1 2 3; do
    REDIS_PORT=$(free_port)
    redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save '' --appendonly no \
      --dir "$TMP/redis" --daemonize no --logfile "$TMP/redis.log" &
    REDIS_PID=$!
    if wait_for 20 bash -c "[[ \$(redis-cli -p $REDIS_PORT ping) == PONG ]]"; then return 0; fi
    kill -9 "$REDIS_PID" 2>/dev/null
    REDIS_PID=""
  done
  echo "redis-server did not start; log:"
  cat "$TMP/redis.log"
  return 1
}
check "redis-server starts" start_redis
rcli() { redis-cli -p "$REDIS_PORT" "$@" >/dev/null; }
# hipache's schema: frontend:<host> -> [identifier, backend URL...]
rcli rpush frontend:App.Example.test myapp "http://127.0.0.1:$B1" "http://127.0.0.1:$B2"
rcli rpush 'frontend:*.wild.test' wildapp "http://127.0.0.1:$B2" "http://backend.invalid:80"
rcli rpush frontend:lonely.test onlyanid
rcli set frontend:string.test not-a-list
rcli rpush unrelated:key x

# --- the agent, with the router ------------------------------------------------------------
ROUTER_PORT=$(free_port)
start_agent() {
  "$BERTH" agent --dev --data-dir "$TMP/data" --api 127.0.0.1:0 --machine-id route-e2e \
    --task-poll-ms 200 --router "127.0.0.1:$ROUTER_PORT" >>"$TMP/agent.log" 2>&1 &
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
check "agent starts with the router" start_agent
via_router() { curl -s -m 5 -H "Host: $1" "http://127.0.0.1:$ROUTER_PORT${2:-/}"; }
router_says() { [[ "$(via_router "$1" "${3:-/}")" == *"$2"* ]]; }
check "the router answers (404 for an unknown host)" wait_for 30 router_says nope.test 404

# --- import-hipache ------------------------------------------------------------------------
out=$("$BERTH" route import-hipache "redis://127.0.0.1:$REDIS_PORT" --dry-run 2>&1)
check "dry run says what it would import: $out" \
  contains "$out" "would import app.example.test/hipache-0 -> http://127.0.0.1:$B1"
check "dry run writes nothing" contains "$("$BERTH" route ls)" "no routes"

out=$("$BERTH" route import-hipache "redis://127.0.0.1:$REDIS_PORT" 2>&1)
rc=$?
echo "$out" | sed 's/^/    /'
check "import exits 0" test "$rc" -eq 0
check "import: both backends of app.example.test (host lower-cased)" \
  bash -c 'grep -q "imported app.example.test/hipache-0 -> http://127.0.0.1:$2" <<<"$1" &&
           grep -q "imported app.example.test/hipache-1 -> http://127.0.0.1:$3" <<<"$1"' \
  _ "$out" "$B1" "$B2"
check "import: the wildcard host keeps its form" \
  contains "$out" "imported \*.wild.test/hipache-0 -> http://127.0.0.1:$B2"
check "import: a backend named by a host name is skipped with the reason" \
  contains "$out" "skipped frontend:\*.wild.test backend http://backend.invalid:80: .*IP address"
check "import: a list with only its identifier is skipped" \
  contains "$out" "skipped frontend:lonely.test: no backends"
check "import: a key that is not a list is skipped" \
  contains "$out" "skipped frontend:string.test: cannot be read: WRONGTYPE"
check "import: the summary" contains "$out" "4 frontends: 3 routes imported, 3 skipped"

out=$("$BERTH" route ls)
echo "$out" | sed 's/^/    /'
check "route ls shows the imported routes as manual" \
  bash -c 'grep -Eq "^app.example.test +/ +http://127.0.0.1:$2 +manual +hipache-0$" <<<"$1"' \
  _ "$out" "$B1"
out=$("$BERTH" route ls --json)
check "route ls --json: 3 routes, none leased" \
  python3 -c 'import json,sys; j=json.loads(sys.argv[1]); assert len(j)==3 and not any(r["leased"] for r in j), j' "$out"

check "app.example.test reaches backend one through the router" \
  wait_for 30 router_says app.example.test "backend one"
check "... and backend two (round-robin over the frontend's backends)" \
  wait_for 30 router_says App.Example.Test:80 "backend two"
check "a name under *.wild.test reaches backend two" wait_for 30 router_says a.b.wild.test "backend two"

# A backend leaves hipache's list: importing again removes its route.
rcli lrem frontend:App.Example.test 0 "http://127.0.0.1:$B2"
out=$("$BERTH" route import-hipache "redis://127.0.0.1:$REDIS_PORT" 2>&1)
check "re-import removes the route of the backend hipache no longer lists: $out" \
  contains "$out" "removed app.example.test/hipache-1"
only_one() {
  local i
  for i in 1 2 3 4 5 6; do router_says app.example.test "backend one" || return 1; done
}
check "app.example.test now reaches backend one only" wait_for 30 only_one

# --- route add / rm -------------------------------------------------------------------------
out=$("$BERTH" route add Manual.test "http://127.0.0.1:$B3" --path /m 2>&1)
check "route add: $out" contains "$out" "route manual.test/manual-"
id=$("$BERTH" route ls --json | python3 -c 'import json,sys; print([r["id"] for r in json.load(sys.stdin) if r["host"]=="manual.test"][0])')
check "the manual route serves its path prefix" \
  wait_for 30 router_says manual.test "backend three under /m" /m/
check "... and not other paths of that host (404)" router_says manual.test 404 /other
out=$("$BERTH" route add Manual.test "http://127.0.0.1:$B3" --path /m 2>&1)
check "adding the same route again keeps its id: $out" contains "$out" "route manual.test/$id"
check "... and does not add a second one" \
  test "$("$BERTH" route ls --json | python3 -c 'import json,sys; print(len(json.load(sys.stdin)))')" = 3
out=$("$BERTH" route add '*.wild.test' "http://127.0.0.1:$B1" --id mine 2>&1)
check "route add --id on a wildcard host: $out" contains "$out" "route \*.wild.test/mine"
out=$("$BERTH" route rm '*.wild.test' mine 2>&1)
check "route rm of a wildcard route: $out" contains "$out" "removed"
out=$("$BERTH" route rm manual.test "$id" 2>&1)
check "route rm: $out" contains "$out" "route manual.test/$id removed"
check "the removed route is gone from the router (404)" wait_for 30 router_says manual.test 404 /m/

# --- errors --------------------------------------------------------------------------------
out=$("$BERTH" route add x.test http://web.internal:80 2>&1)
rc=$?
check "a backend that is not an IP: exit 1 naming it: $out" \
  bash -c '[[ $1 -eq 1 ]] && grep -q "web.internal" <<<"$2" && grep -q "IP address" <<<"$2"' \
  _ "$rc" "$out"
out=$("$BERTH" route add 'bad host' http://127.0.0.1:1 2>&1)
rc=$?
check "a bad host: exit 1 naming it: $out" \
  bash -c '[[ $1 -eq 1 ]] && grep -q "malformed host" <<<"$2"' _ "$rc" "$out"
out=$("$BERTH" route add x.test http://127.0.0.1:1 --path nope 2>&1)
rc=$?
check "a bad path prefix: exit 1 naming it: $out" \
  bash -c '[[ $1 -eq 1 ]] && grep -q "path_prefix" <<<"$2"' _ "$rc" "$out"
out=$("$BERTH" route rm x.test nosuch 2>&1)
rc=$?
check "rm of an unknown route: exit 4: $out" \
  bash -c '[[ $1 -eq 4 ]] && grep -q "not found" <<<"$2"' _ "$rc" "$out"
dead=$(free_port)
out=$("$BERTH" route import-hipache "redis://127.0.0.1:$dead" 2>&1)
rc=$?
check "import from a Redis nobody runs: exit 3 naming it: $out" \
  bash -c '[[ $1 -eq 3 ]] && grep -q "cannot connect" <<<"$2" && grep -q "127.0.0.1:$3" <<<"$2"' \
  _ "$rc" "$out" "$dead"
out=$("$BERTH" route import-hipache "http://127.0.0.1:$REDIS_PORT" 2>&1)
rc=$?
check "import from a URL that is not redis://: exit 1: $out" \
  bash -c '[[ $1 -eq 1 ]] && grep -q "redis://" <<<"$2"' _ "$rc" "$out"

# --- an agent's own route --------------------------------------------------------------------
"$BERTH" job run "$ROOT/examples/web.yml" >/dev/null
agent_route() { "$BERTH" route ls | grep -Eq "^web.berth.localhost +/ +http://127.0.0.1:[0-9]+ +web-"; }
check "route ls shows the example job's route with its allocation as SOURCE" \
  wait_for 60 agent_route
out=$("$BERTH" route ls --json)
check "... leased, with job and machine" \
  python3 -c 'import json,sys; r=[r for r in json.loads(sys.argv[1]) if r["host"]=="web.berth.localhost"][0]; assert r["leased"] and r["job"]=="web" and r["machine"]=="route-e2e", r' "$out"
aid=$(python3 -c 'import json,sys; print([r["id"] for r in json.loads(sys.argv[1]) if r["host"]=="web.berth.localhost"][0])' "$out")
out=$("$BERTH" route add web.berth.localhost http://127.0.0.1:1 --id "$aid" 2>&1)
rc=$?
check "route add over an agent's route is refused (409, exit 1): $out" \
  bash -c '[[ $1 -eq 1 ]] && grep -q "published by an agent" <<<"$2"' _ "$rc" "$out"
out=$("$BERTH" route rm web.berth.localhost "$aid" 2>&1)
check "route rm of an agent's route says the agent publishes it: $out" \
  contains "$out" "an agent published it"
"$BERTH" job stop web >/dev/null

check "agent still running" kill -0 "$AGENT_PID"
finish
