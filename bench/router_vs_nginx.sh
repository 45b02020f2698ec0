#!/usr/bin/env bash
# Router benchmark: berth's router against nginx as a reverse proxy, side by side in one run.
#
# One backend, an nginx (1 worker) serving a small static file on 127.0.0.1. wrk (1 thread,
# 64 keep-alive connections, Host: bench.local) measures it three ways: direct, through nginx
# as a reverse proxy (upstream keep-alive), and through berth's router (memory: store with one
# route) — each proxy with 1 and with 2 worker threads. Rounds alternate between the targets,
# so a burst of load on the shared machine does not land on one side only; each figure is the
# median over the rounds. Then bench/router_propagation_bench.cc measures route propagation
# (store write → first request served by the new backend, 10,000 routes, 1,000 changes) and
# route churn under load (100 changes/s for 30 s, failed requests counted).
# Writes the figures under "## Router" in docs/benchmarks.md, leaving other sections alone.
#
#   bench/router_vs_nginx.sh [--rounds N] [--duration SECONDS] [--connections N] [--no-doc]
#
# Env: BUILD_DIR (default build-bench).
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
BUILD_DIR="${BUILD_DIR:-$ROOT/build-bench}"
ROUNDS=3
DURATION=10
CONNECTIONS=64
WRITE_DOC=1
COMMAND="bench/router_vs_nginx.sh${*:+ $*}"
while (($#)); do
  case "$1" in
    --rounds) ROUNDS="$2"; shift 2 ;;
    --duration) DURATION="$2"; shift 2 ;;
    --connections) CONNECTIONS="$2"; shift 2 ;;
    --no-doc) WRITE_DOC=0; shift ;;
    *) echo "unknown flag $1" >&2; exit 2 ;;
  esac
done
for tool in nginx wrk python3; do
  command -v "$tool" >/dev/null || { echo "$tool missing: run scripts/install-deps.sh" >&2; exit 1; }
done

# Other folders may be mid-edit in a shared tree; a failed build is not fatal when the
# binaries are already there.
if ! { cmake -S "$ROOT" -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null &&
       cmake --build "$BUILD_DIR" -j2 --target berth-router berth_router_propagation_bench >/dev/null; }; then
  [[ -x "$BUILD_DIR/src/router/berth-router" ]] || { echo "build failed" >&2; exit 1; }
  echo "warning: build failed; using the existing binaries in $BUILD_DIR" >&2
fi
ROUTER="$BUILD_DIR/src/router/berth-router"
PROPAGATION="$BUILD_DIR/src/router/berth_router_propagation_bench"

WORK="$(mktemp -d /tmp/berth-router-bench.XXXXXX)"
PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT

# Free ports chosen by the kernel.
read -r BACKEND NGINX1 NGINX2 BERTH1 BERTH2 < <(python3 -c '
import socket
ss = [socket.socket() for _ in range(5)]
for s in ss: s.bind(("127.0.0.1", 0))
print(*[s.getsockname()[1] for s in ss])')

mkdir -p "$WORK/www"
chmod 755 "$WORK" "$WORK/www"  # nginx workers run as another user
# A small static body (128 bytes).
python3 -c 'print("x" * 127)' >"$WORK/www/index.html"
chmod 644 "$WORK/www/index.html"

nginx_conf() {  # name workers body
  cat >"$WORK/$1.conf" <<EOF
worker_processes $2;
daemon off;
pid $WORK/$1.pid;
error_log $WORK/$1.error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  keepalive_requests 1000000;
  keepalive_timeout 60s;
  client_body_temp_path $WORK/$1.body;
  proxy_temp_path $WORK/$1.proxy;
  fastcgi_temp_path $WORK/$1.fastcgi;
  uwsgi_temp_path $WORK/$1.uwsgi;
  scgi_temp_path $WORK/$1.scgi;
$3
}
EOF
}
nginx_conf backend 1 "
  open_file_cache max=16;
  server {
    listen 127.0.0.1:$BACKEND;
    root $WORK/www;
  }"
for n in 1 2; do
  port_var="NGINX$n"
  nginx_conf "proxy$n" "$n" "
  upstream backend {
    server 127.0.0.1:$BACKEND;
    keepalive 128;
    keepalive_requests 1000000;
  }
  server {
    listen 127.0.0.1:${!port_var} reuseport;
    location / {
      proxy_pass http://backend;
      proxy_http_version 1.1;
      proxy_set_header Connection \"\";
      proxy_set_header Host \$host;
      proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for;
      proxy_set_header X-Forwarded-Proto \$scheme;
      proxy_set_header X-Forwarded-Host \$host;
    }
  }"
done
for name in backend proxy1 proxy2; do
  nginx -e "$WORK/$name.error.log" -c "$WORK/$name.conf" -p "$WORK" >"$WORK/$name.out" 2>&1 &
  PIDS+=($!)
done
for n in 1 2; do
  port_var="BERTH$n"
  "$ROUTER" router --store memory: --listen "127.0.0.1:${!port_var}" --router-threads "$n" \
    --route "bench.local=http://127.0.0.1:$BACKEND" >"$WORK/berth$n.log" 2>&1 &
  PIDS+=($!)
done

wait_port() {
  for _ in $(seq 1 100); do
    if curl -fsS -o /dev/null -H 'Host: bench.local' "http://127.0.0.1:$1/"; then return 0; fi
    sleep 0.1
  done
  echo "nothing answers on port $1" >&2
  cat "$WORK"/*.log "$WORK"/*.out >&2 || true
  exit 1
}
for p in $BACKEND $NGINX1 $NGINX2 $BERTH1 $BERTH2; do wait_port "$p"; done

# wrk's output → "req/s p50_ms p99_ms errors"
run_wrk() {  # port seconds
  wrk -t 1 -c "$CONNECTIONS" -d "${2}s" --latency -H 'Host: bench.local' \
    "http://127.0.0.1:$1/" | python3 -c '
import re, sys
t = sys.stdin.read()
def ms(v):
    n, u = re.match(r"([\d.]+)(us|ms|s)", v).groups()
    return float(n) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[u]
rps = float(re.search(r"Requests/sec:\s+([\d.]+)", t).group(1))
p50 = ms(re.search(r"^\s+50%\s+(\S+)", t, re.M).group(1))
p99 = ms(re.search(r"^\s+99%\s+(\S+)", t, re.M).group(1))
m = re.search(r"Non-2xx or 3xx responses: (\d+)", t)
e = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", t)
errors = (int(m.group(1)) if m else 0) + (sum(map(int, e.groups())) if e else 0)
print(f"{rps:.0f} {p50:.3f} {p99:.3f} {errors}")'
}

TARGETS=("direct:$BACKEND" "nginx1:$NGINX1" "berth1:$BERTH1" "nginx2:$NGINX2" "berth2:$BERTH2")
LOAD_BEFORE="$(cut -d' ' -f1-3 /proc/loadavg)"
for t in "${TARGETS[@]}"; do run_wrk "${t#*:}" 2 >/dev/null; done  # warm-up
: >"$WORK/results"
for r in $(seq 1 "$ROUNDS"); do
  for t in "${TARGETS[@]}"; do
    res="$(run_wrk "${t#*:}" "$DURATION")"
    echo "round $r ${t%%:*}: $res" >&2
    echo "${t%%:*} $res" >>"$WORK/results"
  done
done
LOAD_AFTER="$(cut -d' ' -f1-3 /proc/loadavg)"
BERTH_RSS="$(ps -o rss= -p "${PIDS[3]}" | tr -d ' ') / $(ps -o rss= -p "${PIDS[4]}" | tr -d ' ')"

echo "propagation and churn ..." >&2
PROP="$("$PROPAGATION" --routes=10000 --changes=1000 --churn-seconds=30 --churn-rate=100 \
  --load-connections=4 --threads=2)"
echo "$PROP" >&2

TABLE="$(python3 - "$WORK/results" <<'EOF'
import statistics, sys
rows = {}
for line in open(sys.argv[1]):
    name, rps, p50, p99, err = line.split()
    rows.setdefault(name, []).append((float(rps), float(p50), float(p99), int(err)))
def med(name, i):
    return statistics.median(r[i] for r in rows[name])
label = {
    "direct": "direct to the backend",
    "nginx1": "nginx reverse proxy, 1 worker",
    "berth1": "**berth router, 1 thread**",
    "nginx2": "nginx reverse proxy, 2 workers",
    "berth2": "**berth router, 2 threads**",
}
print("| path | req/s | req/s, rounds' min–max | p50 (ms) | p99 (ms) | errors |")
print("|---|---:|---:|---:|---:|---:|")
for n in ["direct", "nginx1", "berth1", "nginx2", "berth2"]:
    errs = sum(r[3] for r in rows[n])
    lo, hi = min(r[0] for r in rows[n]), max(r[0] for r in rows[n])
    print(f"| {label[n]} | {med(n, 0):.0f} | {lo:.0f}–{hi:.0f} | {med(n, 1):.3f} |"
          f" {med(n, 2):.3f} | {errs} |")
print()
for k in ("1", "2"):
    ratio = med("berth" + k, 0) / med("nginx" + k, 0)
    p99 = med("berth" + k, 2) / med("nginx" + k, 2)
    print(f"{k} worker{'s' if k == '2' else ''}: berth / nginx req/s **{ratio:.2f}x**"
          f" (target ≥ 1.0x), p99 berth / nginx {p99:.2f}x (target ≤ 1.0x).  ")
EOF
)"
echo "$TABLE"

get() { echo "$PROP" | awk -v k="$1" '$1 == k {print $2}'; }
REV="$(git -C "$ROOT" describe --always --dirty 2>/dev/null || echo '?')"
SECTION="$WORK/section.md"
{
  echo "## Router"
  echo
  echo "Run on $(date -u +%Y-%m-%d) on $(nproc) cores ($(uname -m), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//')),"
  echo "$(nginx -v 2>&1 | sed 's|nginx version: ||'), wrk $(wrk -v 2>&1 | head -1 | awk '{print $2}'), berth $REV (RelWithDebInfo);"
  echo "load average before: $LOAD_BEFORE, after: $LOAD_AFTER (a shared machine: other builds ran alongside)."
  echo "Command: \`$COMMAND\`"
  echo
  echo "Everything on 127.0.0.1, on the same $(nproc) cores: wrk (1 thread, $CONNECTIONS keep-alive"
  echo "connections, ${DURATION} s per run, Host: bench.local), the backend (nginx, 1 worker, a 128-byte"
  echo "static file), and the proxy under test: nginx (\`proxy_pass\` to an upstream with"
  echo "\`keepalive 128\`, HTTP/1.1, X-Forwarded-For/-Proto/-Host set, no access log) or berth's router"
  echo "(\`berth-router router --store memory: --route bench.local=...\`, which adds the same headers,"
  echo "no access log). Each figure is the median of $ROUNDS rounds; a round runs every path once,"
  echo "in the order of the table. Router resident memory at the end (KiB, 1 / 2 threads): $BERTH_RSS."
  echo "On a loaded shared machine the spread between rounds (the min–max column) can exceed the"
  echo "difference between the proxies: only a quiet machine gives a verdict on the targets."
  echo
  echo "$TABLE"
  echo
  echo "Route propagation (\`bench/router_propagation_bench.cc\`, in one process: memory: store,"
  echo "route watcher, router with 2 threads): $(get routes) routes in the table; $(get changes) times, one"
  echo "host's route is pointed at the other backend and the host is polled over a keep-alive"
  echo "connection until the new backend answers. Store write → first request served by the new"
  echo "backend: p50 $(get propagation_p50_ms) ms, **p99 $(get propagation_p99_ms) ms** (target < 10 ms), max $(get propagation_max_ms) ms"
  echo "(the store's own Put: p50 $(get store_put_p50_ms) ms, p99 $(get store_put_p99_ms) ms)."
  echo
  echo "Route churn under load: 4 keep-alive clients request one host as fast as they can while"
  echo "$(get churn_changes_per_s) route changes per second are written for $(get churn_seconds) s (half of them move that host"
  echo "between two backends, adding the new route before deleting the old, the rest rewrite"
  echo "other hosts' routes): $(get churn_requests) requests, **$(get churn_failed) failed** (target 0)."
  echo
} >"$SECTION"
cat "$SECTION"

if ((WRITE_DOC)); then
  DOC="$ROOT/docs/benchmarks.md"
  python3 - "$DOC" "$SECTION" <<'EOF'
import re, sys
doc_path, section_path = sys.argv[1], sys.argv[2]
section = open(section_path).read()
try:
    doc = open(doc_path).read()
except FileNotFoundError:
    doc = "# Benchmarks\n\n"
heading = "## Router"
m = re.search(r"^## Router\s*$", doc, re.M)
if not m:
    doc = doc.rstrip("\n") + "\n\n" + section
else:
    start = m.start()
    nxt = re.search(r"^## ", doc[m.end():], re.M)
    doc = doc[:start] + section + (doc[m.end() + nxt.start():] if nxt else "")
open(doc_path, "w").write(doc.rstrip("\n") + "\n")
EOF
  echo "wrote $DOC"
fi
