#!/usr/bin/env bash
# The demo: a single-node `berth agent --dev` on the embedded store, with the example job.
set -euo pipefail
cd "$(dirname "$0")/.."
BERTH=$PWD/build/src/berth
DIR=$PWD/.demo
ADDR=${BERTH_DEMO_ADDR:-127.0.0.1:4680}
ROUTER=${BERTH_DEMO_ROUTER:-127.0.0.1:8080}
mkdir -p "$DIR"

# Stop the agent of an earlier demo, if any.
if [[ -f "$DIR/agent.pid" ]] && kill -0 "$(cat "$DIR/agent.pid")" 2>/dev/null; then
  kill "$(cat "$DIR/agent.pid")" 2>/dev/null || true
  for _ in $(seq 50); do kill -0 "$(cat "$DIR/agent.pid")" 2>/dev/null || break; sleep 0.1; done
fi

nohup "$BERTH" agent --dev --data-dir "$DIR/data" --api "$ADDR" --router "$ROUTER" --meta demo=true \
  >"$DIR/agent.log" 2>&1 &
echo $! >"$DIR/agent.pid"
export BERTH_ADDR=$ADDR
for _ in $(seq 100); do
  if "$BERTH" version --json 2>/dev/null | grep -q '"agent"'; then break; fi
  if ! kill -0 "$(cat "$DIR/agent.pid")" 2>/dev/null; then
    echo "berth agent failed to start; its log:" >&2
    cat "$DIR/agent.log" >&2
    exit 1
  fi
  sleep 0.1
done

echo "== berth job run examples/web.yml"
"$BERTH" job run examples/web.yml
echo
# Wait (a generous bound) until the web server runs and passes its health check.
port=""
for _ in $(seq 300); do
  port=$("$BERTH" alloc ls --job web --json 2>/dev/null | python3 -c '
import json, sys
for a in json.load(sys.stdin):
    if a["state"] == "running" and a["health"] == "healthy":
        print(a["tasks"][0]["ports"]["http"])
        break' 2>/dev/null || true)
  [[ -n $port ]] && break
  sleep 0.1
done
echo "== berth alloc ls"
"$BERTH" alloc ls
echo
if [[ -n $port ]]; then
  echo "== curl http://127.0.0.1:$port/   (the task itself)"
  curl -s "http://127.0.0.1:$port/" || true
  echo "== curl -H 'Host: web.berth.localhost' http://$ROUTER/   (through berth's router)"
  for _ in $(seq 50); do
    out=$(curl -s -H 'Host: web.berth.localhost' "http://$ROUTER/" || true)
    [[ $out == *hello* ]] && break
    sleep 0.1
  done
  echo "$out"
else
  echo "the web job is not running and healthy yet: see berth alloc ls, and $DIR/agent.log" >&2
fi
echo
echo "== berth job ls"
"$BERTH" job ls
echo
echo "== berth machine ls"
"$BERTH" machine ls
cat <<MSG

berth is running (pid $(cat "$DIR/agent.pid")), single node, embedded store in $DIR/data.
Where to look:
  http://127.0.0.1:${port:-PORT}/   the example web server (a plain process; examples/web-docker.yml
                              is the same job in a container)
  curl -H 'Host: web.berth.localhost' http://$ROUTER/
                              the same through the router (its route appeared when it turned
                              healthy, and goes away when it stops)
  berth job status web        (BERTH_ADDR=$ADDR; the binary is $BERTH)
  berth alloc ls              its allocations; berth alloc status ID, berth logs ID [-f]
  berth events                stream of changes as they happen
  http://$ADDR/v1/jobs        the HTTP API
  $DIR/agent.log              the agent's log
Stop the job with: berth job stop web   (its tasks outlive the agent by design: a new agent
                   re-adopts them)
Stop the agent with: kill \$(cat $DIR/agent.pid)
MSG
