#!/usr/bin/env bash
# The demo: a single-node `berth agent --dev` on the embedded store, with the example job.
set -euo pipefail
cd "$(dirname "$0")/.."
BERTH=$PWD/build/src/berth
DIR=$PWD/.demo
ADDR=${BERTH_DEMO_ADDR:-127.0.0.1:4680}
mkdir -p "$DIR"

# Stop the agent of an earlier demo, if any.
if [[ -f "$DIR/agent.pid" ]] && kill -0 "$(cat "$DIR/agent.pid")" 2>/dev/null; then
  kill "$(cat "$DIR/agent.pid")" 2>/dev/null || true
  for _ in $(seq 50); do kill -0 "$(cat "$DIR/agent.pid")" 2>/dev/null || break; sleep 0.1; done
fi

nohup "$BERTH" agent --dev --data-dir "$DIR/data" --api "$ADDR" --meta demo=true \
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
echo "== berth job ls"
"$BERTH" job ls
echo
echo "== berth machine ls"
"$BERTH" machine ls
cat <<MSG

berth is running (pid $(cat "$DIR/agent.pid")), single node, embedded store in $DIR/data.
Where to look:
  berth job status web        (BERTH_ADDR=$ADDR; the binary is $BERTH)
  berth events                stream of changes as they happen
  http://$ADDR/v1/jobs        the HTTP API
  $DIR/agent.log              the agent's log
Stop it with: kill \$(cat $DIR/agent.pid)
MSG
