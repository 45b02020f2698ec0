#!/usr/bin/env bash
# Start latency: the time from "job submitted" (`berth job run`) to "container running" through a
# `berth agent --dev` on the docker driver, against a bare `docker run -d` of the same image,
# command, memory limit and CPU shares. Runs are interleaved (berth, docker, berth, docker, ...)
# after one discarded warm-up pair, so drift in the load of a shared machine lands on both sides.
#
#   bench/start_vs_docker.sh [--runs N] [--http] [--no-doc]
#
#   --runs N   measured runs per side (default 15, at least 10)
#   --http     busybox httpd with a published port (bench/jobs/httpd-docker.yml; docker run gets
#              -p 127.0.0.1::8080) instead of busybox sleep (bench/jobs/sleep-docker.yml)
#   --no-doc   print the table only; by default it also replaces the section
#              "## Start latency: berth vs docker run" (or "... (published port)" with --http) in
#              docs/benchmarks.md, leaving the other sections alone
#
# How it measures. One `docker events --filter type=container --filter event=create
# --filter event=start` stream runs for the whole benchmark (read through a FIFO, so waiting costs
# no CPU); the end of every run is the engine's own TimeNano of the container's start event, and
# its create event splits the run into "until the container is created" (for berth: the CLI, the
# API, the store, the reconciler reacting) and "create -> start" (the engine). The start is a timestamp taken in
# this shell (bash's $EPOCHREALTIME, no fork) just before the CLI command.
#   berth:  before `berth job run` (a new job name per run, count 1) -> start event of the
#           container labelled berth.job=<name>; also reported: when `berth job run` returned.
#   docker: before `docker run -d` -> start event of that container, and -> `docker run -d`
#           returned (it returns once the container has started).
# After each run the job is stopped and purged (and the script waits until its container no
# longer runs) or the docker container removed, then 1 s of quiet before the next run.
# Target (issue): berth's median at most 1.1x docker run's.
#
# Env: BUILD_DIR (default build-bench; configured -G Ninja RelWithDebInfo if new), BERTH (a berth
# binary to use instead of building), DOCKER_HOST (unix:// only; default /var/run/docker.sock).
# Needs root (dockerd), docker, python3, and /bin/busybox (busybox-static) if the image
# berth/busybox:latest has to be imported.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
# shellcheck source=bench/lib.sh
. "$ROOT/bench/lib.sh"
BUILD_DIR="${BUILD_DIR:-$ROOT/build-bench}"
RUNS=15
HTTP=0
WRITE_DOC=1
COMMAND="bench/start_vs_docker.sh${*:+ $*}"
while [[ $# -gt 0 ]]; do
  case $1 in
    --runs) RUNS=$2; shift 2 ;;
    --runs=*) RUNS=${1#--runs=}; shift ;;
    --http) HTTP=1; shift ;;
    --no-doc) WRITE_DOC=0; shift ;;
    *) echo "usage: $0 [--runs N] [--http] [--no-doc]" >&2; exit 2 ;;
  esac
done
[[ $RUNS =~ ^[0-9]+$ && $RUNS -ge 10 ]] || { echo "--runs: at least 10" >&2; exit 2; }

IMAGE=berth/busybox:latest
export DOCKER_HOST="${DOCKER_HOST:-unix:///var/run/docker.sock}"
if ((HTTP)); then
  JOB_TEMPLATE="$ROOT/bench/jobs/httpd-docker.yml"
  DOCKER_CMD=(/bin/busybox httpd -f -p 8080 -h /)
  DOCKER_PORTS=(-p 127.0.0.1::8080)
  SECTION_TITLE="## Start latency: berth vs docker run (published port)"
  WORKLOAD="busybox httpd -f -p 8080 with container port 8080 published on a host port of 127.0.0.1"
else
  JOB_TEMPLATE="$ROOT/bench/jobs/sleep-docker.yml"
  DOCKER_CMD=(/bin/busybox sleep 3600)
  DOCKER_PORTS=()
  SECTION_TITLE="## Start latency: berth vs docker run"
  WORKLOAD="busybox sleep 3600, no ports"
fi

# --- build -------------------------------------------------------------------------------------
if [[ -z "${BERTH:-}" ]]; then
  BERTH="$BUILD_DIR/src/berth"
  bench_build "$BERTH" berth
fi

REV="$(bench_rev)"

WORK="$(mktemp -d /tmp/berth-start-bench.XXXXXX)"
RID="$(basename "$WORK" | cut -d. -f2 | tr '[:upper:]' '[:lower:]')"
MACHINE="bench-start-$RID"
AGENT_PID=""
EVENTS_PID=""


cleanup() {
  set +e
  if [[ -n "$EVENTS_PID" ]]; then kill "$EVENTS_PID" 2>/dev/null; wait "$EVENTS_PID" 2>/dev/null; fi
  exec 3<&- 2>/dev/null
  if [[ -n "$AGENT_PID" ]] && kill -0 "$AGENT_PID" 2>/dev/null; then
    kill -TERM "$AGENT_PID"
    for _ in $(seq 200); do kill -0 "$AGENT_PID" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$AGENT_PID" 2>/dev/null && { log "agent $AGENT_PID ignored SIGTERM for 20s; SIGKILL"; kill -KILL "$AGENT_PID"; }
    wait "$AGENT_PID" 2>/dev/null
  fi
  # Only what this run made: the agent's containers (berth.machine=<ours>) and our docker run ones.
  local ids
  ids="$(docker ps -aq --filter "label=berth.machine=$MACHINE"; docker ps -aq --filter "label=bench.run=$RID")"
  if [[ -n "$ids" ]]; then
    log "removing $(echo "$ids" | wc -l) leftover container(s)"
    # shellcheck disable=SC2086
    docker rm -f $ids >/dev/null
  fi
  "$ROOT/scripts/docker-test-engine.sh" stop "$WORK/docker" >/dev/null 2>&1
  if [[ -n "${KEEP_WORK:-}" ]]; then log "kept $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- engine and image --------------------------------------------------------------------------
# Starts a dockerd only if none answers (and then stops it at exit; an engine that was already
# running is left alone).
"$ROOT/scripts/docker-test-engine.sh" start "$WORK/docker" >&2
bench_ensure_image "$IMAGE"

LOAD_START="$(cut -d' ' -f1-3 /proc/loadavg)"

# --- agent ---------------------------------------------------------------------------------------
AGENT_HELP="$("$BERTH" agent --help 2>&1 || true)"
AGENT_ARGS=(agent --dev --data-dir "$WORK/agent" --api 127.0.0.1:0 --machine-id "$MACHINE")
if grep -q -- '--docker-host' <<<"$AGENT_HELP"; then AGENT_ARGS+=(--docker-host "$DOCKER_HOST"); fi
if ((HTTP)) && grep -q -- '--publish-ip' <<<"$AGENT_HELP"; then AGENT_ARGS+=(--publish-ip 127.0.0.1); fi
mkdir -p "$WORK/agent"
"$BERTH" "${AGENT_ARGS[@]}" >"$WORK/agent.log" 2>&1 &
AGENT_PID=$!
ADDR=""
for _ in $(seq 300); do
  if [[ -s "$WORK/agent/api.addr" ]]; then ADDR="$(head -1 "$WORK/agent/api.addr")"; break; fi
  kill -0 "$AGENT_PID" 2>/dev/null || break
  sleep 0.1
done
if [[ -z "$ADDR" ]]; then
  echo "agent did not write $WORK/agent/api.addr; its log:" >&2
  tail -n 30 "$WORK/agent.log" >&2
  exit 1
fi
log "agent $AGENT_PID at $ADDR, machine $MACHINE ($("$BERTH" --version))"

# --- events ------------------------------------------------------------------------------------
mkfifo "$WORK/events.fifo"
docker events --filter type=container --filter event=create --filter event=start \
  --format '{{.TimeNano}}|{{.Actor.Attributes.name}}|{{index .Actor.Attributes "berth.job"}}|{{index .Actor.Attributes "berth.machine"}}|{{.Action}}' \
  >"$WORK/events.fifo" 2>"$WORK/events.err" &
EVENTS_PID=$!
exec 3<"$WORK/events.fifo"

# Reads events until a start event matches field $1 (2 = container name, 3 = berth.job) == $2;
# prints the TimeNano of that container's create event (0 if not seen) and of its start event.
# Other containers' events (other users of the engine) are skipped.
wait_start() {
  local field=$1 want=$2 timeout=${3:-60} line deadline=$((SECONDS + ${3:-60})) created=0
  while ((SECONDS < deadline)); do
    if ! IFS= read -r -t "$timeout" -u 3 line; then break; fi
    echo "$line" >>"$WORK/events.log"
    local -a f
    IFS='|' read -r -a f <<<"$line"
    if [[ "${f[$((field - 1))]:-}" == "$want" ]]; then
      [[ "${f[4]:-}" == create ]] && { created=${f[0]}; continue; }
      [[ "${f[4]:-}" == start ]] && { echo "$created ${f[0]}"; return 0; }
    fi
  done
  return 1
}

# --- one berth run / one docker run ------------------------------------------------------------
# Globals set by each: R_SUBMIT (ns to the CLI returning), R_CREATE / R_START (ns to the create /
# start event).
berth_run() {
  local name=$1 file="$WORK/$1.yml" t0 t1 ev
  sed -e "s/^name: .*/name: $name/" -e "s/BENCH_RUN: \"manual\"/BENCH_RUN: \"$RID\"/" \
    "$JOB_TEMPLATE" >"$file"
  t0=$(now_ns)
  if ! "$BERTH" --addr "$ADDR" job run "$file" >"$WORK/$name.out" 2>&1; then
    echo "berth job run $name failed:" >&2; cat "$WORK/$name.out" >&2; return 1
  fi
  t1=$(now_ns)
  if ! ev=$(wait_start 3 "$name" 60); then
    echo "no start event for job $name within 60s; agent log:" >&2
    tail -n 20 "$WORK/agent.log" >&2
    "$BERTH" --addr "$ADDR" alloc ls --job "$name" --json >&2 || true
    return 1
  fi
  R_SUBMIT=$((t1 - t0)); R_CREATE=$((${ev% *} - t0)); R_START=$((${ev#* } - t0))
  # Label check: the container carries our berth.machine label (cleanup relies on it).
  grep -q "|$name|$MACHINE|start\$" "$WORK/events.log" || LABEL_PROBLEM=1
  # Stop and purge; wait until the container is gone (or at least stopped, if it is still there
  # 10 s later) so the next run starts quiet.
  "$BERTH" --addr "$ADDR" job stop "$name" --purge >>"$WORK/$name.out" 2>&1 || {
    echo "berth job stop $name --purge failed:" >&2; cat "$WORK/$name.out" >&2; return 1; }
  local waited=0 states
  while :; do
    states="$(docker ps -a --filter "label=berth.job=$name" --filter "label=berth.machine=$MACHINE" --format '{{.State}}')"
    [[ -z "$states" ]] && break
    if ! grep -q running <<<"$states" && ((waited >= 100)); then KEPT=$((KEPT + 1)); break; fi
    sleep 0.1; waited=$((waited + 1))
    if ((waited > 300)); then
      echo "container of job $name still running 30s after job stop --purge; removing it" >&2
      STOP_PROBLEM=1
      # shellcheck disable=SC2046
      docker rm -f $(docker ps -aq --filter "label=berth.job=$name" --filter "label=berth.machine=$MACHINE") >/dev/null
      break
    fi
  done
  STOP_WAIT_TOTAL=$((STOP_WAIT_TOTAL + waited))
}

docker_run() {
  local name=$1 t0 t1 ev
  t0=$(now_ns)
  docker run -d --name "$name" --label "bench.run=$RID" -e "BENCH_RUN=$RID" \
    "${DOCKER_LIMITS[@]}" "${DOCKER_PORTS[@]}" "$IMAGE" "${DOCKER_CMD[@]}" >/dev/null
  t1=$(now_ns)
  ev=$(wait_start 2 "$name" 60) || { echo "no start event for container $name" >&2; return 1; }
  R_SUBMIT=$((t1 - t0)); R_CREATE=$((${ev% *} - t0)); R_START=$((${ev#* } - t0))
  docker rm -f "$name" >/dev/null
}

# --- warm-up (discarded) -----------------------------------------------------------------------
# The event stream subscribes asynchronously: the first docker run is retried until its start
# event shows up, which proves the stream is live.
DOCKER_LIMITS=(--memory 32m)
for attempt in 1 2 3 4 5; do
  t0=$(now_ns)
  docker run -d --name "bench-warm-$RID-$attempt" --label "bench.run=$RID" "$IMAGE" /bin/busybox true >/dev/null
  if wait_start 2 "bench-warm-$RID-$attempt" 5 >/dev/null; then break; fi
  [[ $attempt == 5 ]] && { echo "docker events stream shows no start events" >&2; cat "$WORK/events.err" >&2; exit 1; }
done
docker rm -f "bench-warm-$RID-"{1..5} >/dev/null 2>&1 || true

LABEL_PROBLEM=0
STOP_PROBLEM=0
STOP_WAIT_TOTAL=0
KEPT=0
berth_run "bs-$RID-w"
# Same limits as berth's container: read them off the warm-up container the agent made? It is
# gone (purged); so the values come from the job template (memory 32MiB) and, for CpuShares,
# from one more berth container inspected while it runs.
name="bs-$RID-probe"
sed -e "s/^name: .*/name: $name/" -e "s/BENCH_RUN: \"manual\"/BENCH_RUN: \"$RID\"/" "$JOB_TEMPLATE" >"$WORK/$name.yml"
"$BERTH" --addr "$ADDR" job run "$WORK/$name.yml" >/dev/null
wait_start 3 "$name" 60 >/dev/null
PROBE_ID="$(docker ps -q --filter "label=berth.job=$name" | head -1)"
read -r MEM SHARES NANOCPUS LABELS < <(docker inspect -f \
  '{{.HostConfig.Memory}} {{.HostConfig.CpuShares}} {{.HostConfig.NanoCpus}} {{json .Config.Labels}}' "$PROBE_ID")
"$BERTH" --addr "$ADDR" job stop "$name" --purge >/dev/null
DOCKER_LIMITS=()
[[ "$MEM" != 0 ]] && DOCKER_LIMITS+=(--memory "${MEM}b")
[[ "$SHARES" != 0 ]] && DOCKER_LIMITS+=(--cpu-shares "$SHARES")
[[ "$NANOCPUS" != 0 ]] && DOCKER_LIMITS+=(--cpus "$(python3 -c "print($NANOCPUS/1e9)")")
log "berth's container: Memory=$MEM CpuShares=$SHARES NanoCpus=$NANOCPUS labels=$LABELS"
log "docker run gets: ${DOCKER_LIMITS[*]:-(no limits)} ${DOCKER_PORTS[*]:-}"
while [[ -n "$(docker ps -q --filter "label=berth.job=$name")" ]]; do sleep 0.1; done
docker_run "bd-$RID-w"
sleep 1

# --- measured runs -----------------------------------------------------------------------------
: >"$WORK/results.txt"
for i in $(seq 1 "$RUNS"); do
  berth_run "bs-$RID-$i"
  echo "berth $R_SUBMIT $R_START $R_CREATE" >>"$WORK/results.txt"
  b=$R_START
  sleep 1
  docker_run "bd-$RID-$i"
  echo "docker $R_SUBMIT $R_START $R_CREATE" >>"$WORK/results.txt"
  log "run $i/$RUNS: berth $((b / 1000000)) ms, docker run $((R_SUBMIT / 1000000)) ms (start event $((R_START / 1000000)) ms)"
  sleep 1
done
LOAD_END="$(cut -d' ' -f1-3 /proc/loadavg)"

TABLE="$(python3 - "$WORK/results.txt" <<'EOF'
import math, statistics, sys
rows = [l.split() for l in open(sys.argv[1]) if l.strip()]
def col(side, i):
    return [int(r[i]) / 1e6 for r in rows if r[0] == side]
b_sub, b_start, b_create = col("berth", 1), col("berth", 2), col("berth", 3)
d_wall, d_start, d_create = col("docker", 1), col("docker", 2), col("docker", 3)
def p(xs, q):  # nearest rank
    s = sorted(xs); return s[max(0, math.ceil(q * len(s)) - 1)]
stats = [("median", statistics.median), ("p90", lambda x: p(x, 0.9)), ("min", min),
         ("max", max), ("mean", statistics.mean)]
lines = [
    ("**berth: job run → container start event**", b_start),
    ("berth: job run → create event (CLI, API, store, reconciler)", b_create),
    ("berth: create → start event (engine)", [s - c for s, c in zip(b_start, b_create)]),
    ("berth: job run returned", b_sub),
    ("**docker run -d → container start event**", d_start),
    ("docker run -d → create event", d_create),
    ("docker run -d: create → start event (engine)", [s - c for s, c in zip(d_start, d_create)]),
    ("**docker run -d returned**", d_wall),
    ("berth − docker run, start events of the same pair", [b - d for b, d in zip(b_start, d_start)]),
]
print("| ms (%d runs per side) | " % len(b_start) + " | ".join(n for n, _ in stats) + " |")
print("|---|" + "---:|" * len(stats))
for label, xs in lines:
    print("| %s | " % label + " | ".join("%.1f" % f(xs) for _, f in stats) + " |")
mb, md, mw = statistics.median(b_start), statistics.median(d_start), statistics.median(d_wall)
print()
verdict = ("met" if mb / mw <= 1.1 and mb / md <= 1.1 else
           "met against docker run's return only" if mb / mw <= 1.1 else "not met")
print("Ratio of medians, berth (job run → start event) / docker run -d: **%.2fx** against"
      " docker run's start event, **%.2fx** against docker run returning; target ≤ 1.1x: %s."
      % (mb / md, mb / mw, verdict))
EOF
)"

echo
echo "$TABLE"
((LABEL_PROBLEM)) && echo "problem: some berth containers lacked the label berth.machine=$MACHINE" >&2
((STOP_PROBLEM)) && echo "problem: some berth containers kept running 30s after job stop --purge" >&2
((KEPT)) && echo "problem: $KEPT berth container(s) stopped but not removed 10s after job stop --purge" >&2
echo "(berth job stop --purge → container removed: mean $((STOP_WAIT_TOTAL * 100 / (RUNS + 1))) ms, polled at 100 ms)" >&2

if ((WRITE_DOC)); then
  DOC="$ROOT/docs/benchmarks.md"
  SECTION="$WORK/section.md"
  {
    echo "$SECTION_TITLE"
    echo
    echo "Run on $(date -u +%Y-%m-%d) on $(nproc) cores ($(uname -m), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//')),"
    echo "$(awk '/MemTotal/ {printf "%.1f GiB", $2/1048576}' /proc/meminfo) RAM, kernel $(uname -r), Docker Engine $(docker version -f '{{.Server.Version}}' 2>/dev/null),"
    echo "berth $("$BERTH" --version | awk '{print $2}') ($REV, $(grep -m1 CMAKE_BUILD_TYPE "$(dirname "$(dirname "$BERTH")")/CMakeCache.txt" 2>/dev/null | cut -d= -f2 || echo '?') build);"
    echo "load average at the start: $LOAD_START, at the end: $LOAD_END (a shared machine: other"
    echo "builds ran alongside, which is why the runs are interleaved)."
    echo "Command: \`$COMMAND\`"
    echo
    echo "Workload: image $IMAGE, $WORKLOAD; the \`docker run -d\` side gets the same command and"
    echo "the limits read off berth's own container (\`${DOCKER_LIMITS[*]:-none}\`). $RUNS runs per side after a"
    echo "discarded warm-up pair, alternating berth / docker run with 1 s of quiet between runs; each"
    echo "berth run submits a new job (count 1) to \`berth agent --dev\` and stops and purges it"
    echo "afterwards (waiting until its container is gone). The end of a run is the engine's own"
    echo "timestamp of the container's \`start\` event (one \`docker events\` stream for the whole"
    echo "benchmark); the start is taken in the script just before the CLI command, so both sides"
    echo "include their CLI's process start. The container's \`create\` event splits each run into"
    echo "the part before the engine is asked to create it (for berth: CLI, API, store write, the"
    echo "reconciler noticing and placing the allocation) and the engine's create → start."
    echo
    echo "$TABLE"
    echo
  } >"$SECTION"
  bench_write_section "$DOC" "$SECTION" "$SECTION_TITLE"
fi
