#!/usr/bin/env bash
# Added task start latency of secrets: the same job (same image or program, same command) with
# 10 file secrets and with none, started through `berth agent --dev`, runs interleaved (none,
# ten, none, ten, ...) after one discarded warm-up pair, so drift in the load of a shared machine
# lands on both sides.
#
#   bench/secrets_start.sh [--runs N] [--driver docker|process|both] [--no-doc]
#
#   --runs N     measured runs per variant and driver (default 15, at least 10)
#   --driver D   docker (the container case: files bind-mounted at /run/secrets), process (no
#                engine in the way: the rest of a start is the CLI, the API, the store and the
#                agent), or both (default)
#   --no-doc     print the tables only; by default they also replace the section
#                "## Secrets: task start with 10 secrets vs none" in docs/benchmarks.md
#
# The secrets are real: an operator key (`berth secret keygen`), trusted as a writer, seals ten
# values of 1 KiB (bench/s0 .. bench/s9) with `berth secret set` to every recipient, the agent's
# machine key among them, so each start opens ten sealed values from the store (signature check,
# key unwrap, decryption) and writes ten 0400 files on the tmpfs of --secrets-dir (the agent
# mounts one there: the directory is on /tmp's disk).
#
# How it measures. The start of a run is a timestamp taken in this shell (bash's $EPOCHREALTIME)
# just before `berth job run` (a new job name per run, count 1). The end:
#   docker:  the engine's own TimeNano of the container's start event (one `docker events`
#            stream for the whole benchmark, read through a FIFO); its create event splits the
#            run into "until the container is created" (CLI, API, store, the reconciler, and for
#            the secrets variant opening and writing them) and the engine's create -> start
#            (including the bind mount).
#   process: the task's started_at_ms in its status (the agent's wall clock right after the
#            fork), read with `berth alloc status --json` once it is there.
# After each run the job is stopped and purged, and the script waits until its container or
# process is gone (and its secret files), then 1 s of quiet. A few milliseconds are lost in the
# run-to-run spread of whole starts on a busy machine, so the script then runs
# bench/secrets_start_bench.cc (berth_secrets_start_bench, next to the berth binary's build, or
# MICRO_BIN), which times the agent's own part of it apart, and puts both in the section.
#
# Env: BUILD_DIR (default build-bench; configured -G Ninja RelWithDebInfo if new), BERTH (a berth
# binary to use instead of building), DOCKER_HOST (unix:// only; default /var/run/docker.sock).
# Needs root (dockerd, the tmpfs mount), docker, python3, and /bin/busybox (busybox-static).
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
# shellcheck source=bench/lib.sh
. "$ROOT/bench/lib.sh"
BUILD_DIR="${BUILD_DIR:-$ROOT/build-bench}"
RUNS=15
DRIVERS=(docker process)
WRITE_DOC=1
COMMAND="bench/secrets_start.sh${*:+ $*}"
while [[ $# -gt 0 ]]; do
  case $1 in
    --runs) RUNS=$2; shift 2 ;;
    --runs=*) RUNS=${1#--runs=}; shift ;;
    --driver) [[ $2 == both ]] && DRIVERS=(docker process) || DRIVERS=("$2"); shift 2 ;;
    --no-doc) WRITE_DOC=0; shift ;;
    *) echo "usage: $0 [--runs N] [--driver docker|process|both] [--no-doc]" >&2; exit 2 ;;
  esac
done
[[ $RUNS =~ ^[0-9]+$ && $RUNS -ge 10 ]] || { echo "--runs: at least 10" >&2; exit 2; }
for d in "${DRIVERS[@]}"; do
  [[ $d == docker || $d == process ]] || { echo "--driver: docker, process or both" >&2; exit 2; }
done

IMAGE=berth/busybox:latest
NSECRETS=10
SECTION_TITLE="## Secrets: task start with 10 secrets vs none"
export DOCKER_HOST="${DOCKER_HOST:-unix:///var/run/docker.sock}"

# --- build -------------------------------------------------------------------------------------
if [[ -z "${BERTH:-}" ]]; then
  BERTH="$BUILD_DIR/src/berth"
  bench_build "$BERTH" berth
fi
REV="$(bench_rev)"

WORK="$(mktemp -d /tmp/berth-secrets-bench.XXXXXX)"
RID="$(basename "$WORK" | cut -d. -f2 | tr '[:upper:]' '[:lower:]')"
MACHINE="bench-sec-$RID"
SECRETS_DIR="$WORK/secrets"
AGENT_PID=""
EVENTS_PID=""
export BERTH_SECRET_KEY="$WORK/ops.key"


cleanup() {
  set +e
  if [[ -n "$EVENTS_PID" ]]; then kill "$EVENTS_PID" 2>/dev/null; wait "$EVENTS_PID" 2>/dev/null; fi
  exec 3<&- 2>/dev/null
  if [[ -n "$AGENT_PID" ]] && kill -0 "$AGENT_PID" 2>/dev/null; then
    kill -TERM "$AGENT_PID"
    for _ in $(seq 200); do kill -0 "$AGENT_PID" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$AGENT_PID" 2>/dev/null && kill -KILL "$AGENT_PID"
    wait "$AGENT_PID" 2>/dev/null
  fi
  local ids
  ids="$(docker ps -aq --filter "label=berth.machine=$MACHINE" 2>/dev/null)"
  # shellcheck disable=SC2086
  [[ -n "$ids" ]] && docker rm -f $ids >/dev/null
  # Process tasks outlive their agent by design: kill what this run's agent started.
  local f pid
  for f in "$WORK"/agent/process/*.json; do
    [[ -e $f ]] || continue
    pid=$(basename "$f"); pid=${pid%%_*}
    [[ $pid =~ ^[0-9]+$ ]] && kill -9 -- "-$pid" "$pid" 2>/dev/null
  done
  mountpoint -q "$SECRETS_DIR" 2>/dev/null && umount -l "$SECRETS_DIR"
  "$ROOT/scripts/docker-test-engine.sh" stop "$WORK/docker" >/dev/null 2>&1
  if [[ -n "${KEEP_WORK:-}" ]]; then log "kept $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- engine and image --------------------------------------------------------------------------
if [[ " ${DRIVERS[*]} " == *" docker "* ]]; then
  "$ROOT/scripts/docker-test-engine.sh" start "$WORK/docker" >&2
  bench_ensure_image "$IMAGE"
fi
LOAD_START="$(cut -d' ' -f1-3 /proc/loadavg)"

# --- agent, keys, secrets ----------------------------------------------------------------------
mkdir -p "$WORK/agent"
"$BERTH" agent --dev --data-dir "$WORK/agent" --api 127.0.0.1:0 --machine-id "$MACHINE" \
  --docker-host "$DOCKER_HOST" --secrets-dir "$SECRETS_DIR" >"$WORK/agent.log" 2>&1 &
AGENT_PID=$!
ADDR=""
for _ in $(seq 300); do
  if [[ -s "$WORK/agent/api.addr" ]]; then ADDR="$(head -1 "$WORK/agent/api.addr")"; break; fi
  kill -0 "$AGENT_PID" 2>/dev/null || break
  sleep 0.1
done
[[ -n "$ADDR" ]] || { echo "agent did not start; its log:" >&2; tail -n 30 "$WORK/agent.log" >&2; exit 1; }
export BERTH_ADDR="$ADDR"
log "agent $AGENT_PID at $ADDR, machine $MACHINE ($("$BERTH" --version))"
"$BERTH" secret keygen --out "$BERTH_SECRET_KEY" >/dev/null
"$BERTH" secret recipients add bench "$BERTH_SECRET_KEY.pub" --writer >/dev/null
for i in $(seq 0 $((NSECRETS - 1))); do
  head -c 768 /dev/urandom | base64 -w0 | "$BERTH" secret set "bench/s$i" - >/dev/null
done
log "sealed $NSECRETS values of 1 KiB to $("$BERTH" secret recipients ls --json | python3 -c 'import json,sys; print(len(json.load(sys.stdin)))') recipients"

# job_file NAME DRIVER NSECRETS: the job, with NSECRETS file secrets (0 = none).
job_file() {
  local name=$1 driver=$2 n=$3 i
  {
    echo "name: $name"
    echo "groups:"
    echo "  - name: g"
    echo "    tasks:"
    echo "      - name: sleep"
    echo "        driver: $driver"
    [[ $driver == docker ]] && echo "        image: $IMAGE"
    echo "        command: /bin/busybox"
    echo "        args: [\"sleep\", \"3600\"]"
    echo "        env: {BENCH_RUN: \"$RID\"}"
    echo "        resources: {cpu: 100, memory: 32MiB}"
    echo "        kill_timeout: 1s"
    if ((n > 0)); then
      echo "        secrets:"
      for i in $(seq 0 $((n - 1))); do echo "          - {path: bench/s$i, file: s$i}"; done
    fi
  } >"$WORK/$name.yml"
}

# --- docker events -----------------------------------------------------------------------------
if [[ " ${DRIVERS[*]} " == *" docker "* ]]; then
  mkfifo "$WORK/events.fifo"
  docker events --filter type=container --filter event=create --filter event=start \
    --filter "label=berth.machine=$MACHINE" \
    --format '{{.TimeNano}}|{{index .Actor.Attributes "berth.job"}}|{{.Action}}' \
    >"$WORK/events.fifo" 2>"$WORK/events.err" &
  EVENTS_PID=$!
  exec 3<"$WORK/events.fifo"
fi

# Reads events until the start event of job $1; prints "<create ns> <start ns>".
wait_start() {
  local want=$1 line created=0 deadline=$((SECONDS + 60))
  while ((SECONDS < deadline)); do
    IFS= read -r -t 60 -u 3 line || break
    local -a f
    IFS='|' read -r -a f <<<"$line"
    [[ "${f[1]:-}" == "$want" ]] || continue
    [[ "${f[2]:-}" == create ]] && { created=${f[0]}; continue; }
    [[ "${f[2]:-}" == start ]] && { echo "$created ${f[0]}"; return 0; }
  done
  return 1
}

# started_ms JOB: the started_at_ms of its task once the agent reports one.
started_ms() {
  "$BERTH" alloc ls --job "$1" --json 2>/dev/null | python3 -c 'import json,sys
a = json.load(sys.stdin)
t = a[0]["tasks"][0] if a and a[0].get("tasks") else {}
print(t.get("started_at_ms", 0) if t.get("state") == "running" else 0)'
}

# The allocations' directories in the secrets dir (not the agent's .berth-secrets-dir marker).
allocs_with_files() {
  find "$SECRETS_DIR" -mindepth 1 -maxdepth 1 ! -name .berth-secrets-dir 2>/dev/null
}

# stop_job NAME DRIVER: stop and purge, then wait until its task and secret files are gone.
stop_job() {
  local name=$1 driver=$2 waited=0
  "$BERTH" job stop "$name" --purge >/dev/null
  while :; do
    local left=""
    if [[ $driver == docker ]]; then
      left="$(docker ps -aq --filter "label=berth.job=$name" --filter "label=berth.machine=$MACHINE")"
    else
      left="$("$BERTH" alloc ls --job "$name" --json 2>/dev/null | python3 -c 'import json,sys; print(len(json.load(sys.stdin)) or "")')"
    fi
    [[ -z "$left" ]] && break
    sleep 0.1; waited=$((waited + 1))
    ((waited < 300)) || { echo "job $name still has tasks 30 s after job stop --purge" >&2; return 1; }
  done
  if [[ -n "$(allocs_with_files)" ]]; then
    # The files go with the allocation; give the agent a moment, then say so if they stay.
    for _ in $(seq 100); do [[ -z "$(allocs_with_files)" ]] && break; sleep 0.1; done
    [[ -z "$(allocs_with_files)" ]] || FILES_LEFT=1
  fi
}

# one_run DRIVER VARIANT(0|10) NAME: appends "<driver> <variant> <to create ms> <to start ms>
# <job run returned ms>" to results.
one_run() {
  local driver=$1 n=$2 name=$3 t0 t1 ev
  job_file "$name" "$driver" "$n"
  t0=$(now_ns)
  "$BERTH" job run "$WORK/$name.yml" >"$WORK/$name.out" 2>&1 ||
    { echo "job run $name failed:" >&2; cat "$WORK/$name.out" >&2; return 1; }
  t1=$(now_ns)
  if [[ $driver == docker ]]; then
    ev=$(wait_start "$name") || { echo "no start event for $name; agent log:" >&2; tail -n 20 "$WORK/agent.log" >&2; return 1; }
    echo "$driver $n $(((${ev% *} - t0) / 1000)) $(((${ev#* } - t0) / 1000)) $(((t1 - t0) / 1000))" >>"$WORK/results.txt"
  else
    local ms=0 tries=0
    while [[ "$ms" == 0 ]]; do
      ms=$(started_ms "$name")
      ((++tries < 600)) || { echo "$name did not start; agent log:" >&2; tail -n 20 "$WORK/agent.log" >&2; return 1; }
      [[ "$ms" == 0 ]] && sleep 0.05
    done
    echo "$driver $n 0 $((ms * 1000 - t0 / 1000)) $(((t1 - t0) / 1000))" >>"$WORK/results.txt"
  fi
  if ((n > 0)); then
    # The files were there (a sanity check of the secrets variant).
    local a
    a=$("$BERTH" alloc ls --job "$name" --json | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["id"])')
    [[ $(ls "$SECRETS_DIR/$a/sleep" | wc -l) -eq $n ]] || { echo "$name: expected $n secret files" >&2; return 1; }
  fi
  stop_job "$name" "$driver"
}

# --- runs ----------------------------------------------------------------------------------------
: >"$WORK/results.txt"
FILES_LEFT=0
for driver in "${DRIVERS[@]}"; do
  one_run "$driver" 0 "sw0-$RID-${driver:0:1}"
  one_run "$driver" "$NSECRETS" "sw10-$RID-${driver:0:1}"
  : >"$WORK/results.txt"  # the warm-up pair is discarded
done
for i in $(seq 1 "$RUNS"); do
  for driver in "${DRIVERS[@]}"; do
    # Alternate which variant goes first, so neither always follows the other.
    if ((i % 2)); then order=(0 "$NSECRETS"); else order=("$NSECRETS" 0); fi
    for n in "${order[@]}"; do
      one_run "$driver" "$n" "s$n-$RID-${driver:0:1}-$i"
      sleep 1
    done
  done
  log "run $i/$RUNS: $(tail -n $((2 * ${#DRIVERS[@]})) "$WORK/results.txt" | awk '{printf "%s/%s %.0f ms  ", $1, $2, $4 / 1000}')"
done
# The agent's own part, apart from the noise of a whole start: bench/secrets_start_bench.cc.
MICRO_BIN="${MICRO_BIN:-$(dirname "$(dirname "$BERTH")")/bench/berth_secrets_start_bench}"
if [[ ! -x "$MICRO_BIN" && -z "${MICRO_NO_BUILD:-}" && -f "$(dirname "$(dirname "$BERTH")")/build.ninja" ]]; then
  cmake --build "$(dirname "$(dirname "$BERTH")")" -j2 --target berth_secrets_start_bench >/dev/null 2>&1 || true
fi
MICRO=""
if [[ -x "$MICRO_BIN" ]]; then
  log "running $(basename "$MICRO_BIN")"
  "$MICRO_BIN" --benchmark_repetitions=5 --benchmark_report_aggregates_only=true \
    --benchmark_format=json >"$WORK/micro.json" 2>/dev/null
  MICRO="$(python3 - "$WORK/micro.json" <<'EOF2'
import json, sys
b = {x["name"]: x for x in json.load(open(sys.argv[1]))["benchmarks"] if x.get("aggregate_name") == "median"}
def row(label, name):
    x = b.get(name + "_median")
    if x is None:
        return None
    return "| %s | %.0f | %.0f |" % (label, x["real_time"], x["cpu_time"])
rows = [row("open 1 secret, write its file, remove it (embedded store)", "StartPath/embedded/1"),
        row("**open 10 secrets, write their files, remove them (embedded store)**", "StartPath/embedded/10"),
        row("the same, memory store", "StartPath/memory/10"),
        row("open 10 secrets only (embedded store)", "OpenOnly/embedded/10"),
        row("write and remove 10 files of 1 KiB on tmpfs only", "FilesOnly/10")]
print("| per start (median of 5) | wall µs | CPU µs |")
print("|---|---:|---:|")
print("\n".join(r for r in rows if r))
EOF2
)"
  echo
  echo "$MICRO"
fi
LOAD_END="$(cut -d' ' -f1-3 /proc/loadavg)"
((FILES_LEFT)) && echo "problem: secret files stayed after a job was stopped" >&2

TABLE="$(python3 - "$WORK/results.txt" "$NSECRETS" <<'EOF'
import math, statistics, sys
rows = [l.split() for l in open(sys.argv[1]) if l.strip()]
n = sys.argv[2]
def col(driver, variant, i):
    return [int(r[i]) / 1000 for r in rows if r[0] == driver and r[1] == variant]
def p(xs, q):  # nearest rank
    s = sorted(xs); return s[max(0, math.ceil(q * len(s)) - 1)]
stats = [("p50", statistics.median), ("p90", lambda x: p(x, 0.9)), ("min", min), ("max", max),
         ("mean", statistics.mean)]
out = []
for driver in ("docker", "process"):
    if not col(driver, "0", 3):
        continue
    runs = len(col(driver, "0", 3))
    end = "container start event" if driver == "docker" else "task started (its status)"
    lines = [("**none: job run → %s**" % end, col(driver, "0", 3)),
             ("**%s secrets: job run → %s**" % (n, end), col(driver, n, 3))]
    if driver == "docker":
        lines += [("none: job run → create event", col(driver, "0", 2)),
                  ("%s secrets: job run → create event" % n, col(driver, n, 2)),
                  ("none: create → start event (engine)",
                   [s - c for s, c in zip(col(driver, "0", 3), col(driver, "0", 2))]),
                  ("%s secrets: create → start event (engine, with the bind mount)" % n,
                   [s - c for s, c in zip(col(driver, n, 3), col(driver, n, 2))])]
    lines += [("%s secrets − none, runs of the same round" % n,
               [a - b for a, b in zip(col(driver, n, 3), col(driver, "0", 3))])]
    out.append("%s driver, %d runs per variant:" % (driver, runs))
    out.append("")
    out.append("| ms | " + " | ".join(s for s, _ in stats) + " |")
    out.append("|---|" + "---:|" * len(stats))
    for label, xs in lines:
        out.append("| %s | " % label + " | ".join("%.1f" % f(xs) for _, f in stats) + " |")
    d50 = statistics.median(col(driver, n, 3)) - statistics.median(col(driver, "0", 3))
    d90 = p(col(driver, n, 3), 0.9) - p(col(driver, "0", 3), 0.9)
    out.append("")
    diffs = [a - b for a, b in zip(col(driver, n, 3), col(driver, "0", 3))]
    lo, hi = p(diffs, 0.1), p(diffs, 0.9)
    verdict = ("within the run-to-run spread: the differences of same-round runs go from %.0f to "
               "%.0f ms (p10 to p90), so whole starts cannot resolve it" % (lo, hi)
               if lo < 0 < hi else
               "outside the run-to-run spread (same-round differences %.0f to %.0f ms, p10 to "
               "p90)" % (lo, hi))
    out.append("Added start latency of %s secrets (%s): **%+.1f ms at p50, %+.1f ms at p90**, %s."
               % (n, driver, d50, d90, verdict))
    out.append("")
print("\n".join(out).rstrip())
EOF
)"
echo
echo "$TABLE"

if ((WRITE_DOC)); then
  DOC="$ROOT/docs/benchmarks.md"
  SECTION="$WORK/section.md"
  {
    echo "$SECTION_TITLE"
    echo
    echo "Run on $(date -u +%Y-%m-%d) on $(nproc) cores ($(uname -m), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//')),"
    echo "$(awk '/MemTotal/ {printf "%.1f GiB", $2/1048576}' /proc/meminfo) RAM, kernel $(uname -r), Docker Engine $(docker version -f '{{.Server.Version}}' 2>/dev/null || echo '?'),"
    echo "berth $("$BERTH" --version | awk '{print $2}') ($REV);"
    echo "load average at the start: $LOAD_START, at the end: $LOAD_END (a shared machine: other"
    echo "builds ran alongside, which is why the runs are interleaved)."
    echo "Command: \`$COMMAND\`"
    echo
    echo "Workload: the same job twice, \`busybox sleep 3600\` (image $IMAGE on docker, /bin/busybox"
    echo "on the process driver), once with $NSECRETS file secrets and once with none. The secrets are"
    echo "real: $NSECRETS values of 1 KiB sealed with \`berth secret set\` to every recipient (the"
    echo "agent's machine key and the operator's), so each start opens $NSECRETS sealed values from the"
    echo "store (the writer's signature checked, the data key unwrapped, the value decrypted) and"
    echo "writes $NSECRETS files 0400 to the tmpfs the agent mounted over \`--secrets-dir\`; docker then"
    echo "bind-mounts the directory read-only at /run/secrets. Each run submits a new job (count 1)"
    echo "to \`berth agent --dev\` and stops and purges it afterwards; variants alternate (and which"
    echo "goes first alternates), 1 s of quiet between runs, after a discarded warm-up pair. The start"
    echo "is taken in the script just before \`berth job run\`; the end is the engine's start event"
    echo "(docker) or the task's \`started_at_ms\` in its status (process)."
    echo
    echo "$TABLE"
    echo
    if [[ -n "$MICRO" ]]; then
      echo "The agent's own part of it, measured apart from the rest of a start:"
      echo "\`$(basename "$MICRO_BIN") --benchmark_repetitions=5\` (bench/secrets_start_bench.cc;"
      echo "the same work as the runner, in one process, the files on /dev/shm; the runs above used"
      echo "the embedded store of \`--dev\`: on etcd every open also pays a store round trip):"
      echo
      echo "$MICRO"
      echo
    fi
  } >"$SECTION"
  bench_write_section "$DOC" "$SECTION" "$SECTION_TITLE"
fi
