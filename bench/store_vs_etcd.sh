#!/usr/bin/env bash
# Store benchmark: the embedded store (SQLite WAL, fsync on) against a real single-member etcd
# (fresh data dir on 127.0.0.1, fsync by default), one workload through berth's Store interface.
# Builds berth_store_bench, runs it, stops etcd, and writes the table (and this exact command)
# under "## Store: embedded vs etcd" in docs/benchmarks.md, leaving other sections alone.
#
#   bench/store_vs_etcd.sh [extra berth_store_bench flags, e.g. --puts=5000 --rounds=5]
#
# Env: BUILD_DIR (default build-embedded), ETCD (default: etcd on PATH).
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
BUILD_DIR="${BUILD_DIR:-$ROOT/build-embedded}"
ETCD="${ETCD:-etcd}"
COMMAND="bench/store_vs_etcd.sh${*:+ $*}"

# Other folders may be mid-edit in a shared tree; a failed configure is not fatal when a
# bench binary is already there (a warning says it may be stale).
if ! { cmake -S "$ROOT" -B "$BUILD_DIR" -G Ninja >/dev/null &&
       cmake --build "$BUILD_DIR" -j2 --target berth_store_bench >/dev/null; }; then
  [[ -x "$BUILD_DIR/bench/berth_store_bench" ]] || { echo "build failed" >&2; exit 1; }
  echo "warning: build failed; using the existing $BUILD_DIR/bench/berth_store_bench" >&2
fi

WORK="$(mktemp -d /tmp/berth-store-bench.XXXXXX)"
ETCD_PID=""
cleanup() {
  if [[ -n "$ETCD_PID" ]]; then
    kill "$ETCD_PID" 2>/dev/null || true
    wait "$ETCD_PID" 2>/dev/null || true
  fi
  rm -rf "$WORK"
}
trap cleanup EXIT

# Free ports chosen by the kernel, so concurrent runs and other tests do not collide.
read -r CLIENT_PORT PEER_PORT < <(python3 -c '
import socket
a, b = socket.socket(), socket.socket()
a.bind(("127.0.0.1", 0)); b.bind(("127.0.0.1", 0))
print(a.getsockname()[1], b.getsockname()[1])')

"$ETCD" --name bench --data-dir "$WORK/etcd" \
  --listen-client-urls "http://127.0.0.1:$CLIENT_PORT" \
  --advertise-client-urls "http://127.0.0.1:$CLIENT_PORT" \
  --listen-peer-urls "http://127.0.0.1:$PEER_PORT" \
  --initial-advertise-peer-urls "http://127.0.0.1:$PEER_PORT" \
  --initial-cluster "bench=http://127.0.0.1:$PEER_PORT" \
  >"$WORK/etcd.log" 2>&1 &
ETCD_PID=$!

for _ in $(seq 1 100); do
  if curl -fsS "http://127.0.0.1:$CLIENT_PORT/health" 2>/dev/null | grep -q '"health":"true"'; then
    break
  fi
  if ! kill -0 "$ETCD_PID" 2>/dev/null; then
    echo "etcd exited:" >&2
    cat "$WORK/etcd.log" >&2
    exit 1
  fi
  sleep 0.1
done

mkdir -p "$WORK/embedded"
LOAD="$(cut -d' ' -f1-3 /proc/loadavg)"
TABLE="$("$BUILD_DIR/bench/berth_store_bench" --embedded="$WORK/embedded/store.db" \
  --etcd="127.0.0.1:$CLIENT_PORT" --rounds=3 "$@")"

kill "$ETCD_PID"
wait "$ETCD_PID" 2>/dev/null || true
ETCD_PID=""

echo "$TABLE"

DOC="$ROOT/docs/benchmarks.md"
SECTION="$WORK/section.md"
{
  echo "## Store: embedded vs etcd"
  echo
  echo "Run on $(date -u +%Y-%m-%d) on $(nproc) cores ($(uname -m)), etcd $("$ETCD" --version | head -1 | awk '{print $3}'),"
  echo "both on the same local disk with fsync on every commit; load average before the run: $LOAD."
  echo "Command: \`$COMMAND\`"
  echo
  echo "Each figure is the median of 3 rounds that alternate between the backends (so a burst of"
  echo "load on the shared machine does not land on one backend only). Watch delivery is measured"
  echo "from issuing a Put to the watch callback receiving its event, so it includes the write's"
  echo "own commit (the put latency rows); the last two rows isolate the notification path: how long"
  echo "after the Put returned its event reached the callback."
  echo
  echo "$TABLE"
  echo
} >"$SECTION"

python3 - "$DOC" "$SECTION" <<'EOF'
import re, sys
doc_path, section_path = sys.argv[1], sys.argv[2]
section = open(section_path).read()
try:
    doc = open(doc_path).read()
except FileNotFoundError:
    doc = "# Benchmarks\n\n"
heading = "## Store: embedded vs etcd"
start = doc.find(heading)
if start < 0:
    doc = doc.rstrip("\n") + "\n\n" + section
else:
    nxt = re.search(r"^## ", doc[start + len(heading):], re.M)
    end = start + len(heading) + nxt.start() if nxt else len(doc)
    doc = doc[:start] + section + doc[end:].lstrip("\n") if nxt else doc[:start] + section
open(doc_path, "w").write(doc.rstrip("\n") + "\n")
EOF
echo "wrote $DOC"
