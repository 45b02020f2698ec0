#!/usr/bin/env bash
# Agent memory: resident memory of `berth agent --dev` idle with no allocations, and idle with 50
# running allocations, for the process driver and the docker driver. Each driver gets a fresh
# agent (own data dir and machine id):
#   1. start the agent, wait SETTLE seconds, sample ("idle, 0 allocations");
#   2. submit one job with count 50 (bench/jobs/sleep-process.yml or sleep-docker.yml, both
#      `/bin/busybox sleep 3600`), wait until `berth alloc ls` shows 50 running and the 50
#      tasks exist (processes found by their BENCH_RUN environment value, containers by the
#      label berth.machine=<this agent's machine id>), wait SETTLE seconds, sample;
#   3. stop and purge the job, wait until the tasks are gone, wait SETTLE seconds, sample;
#   4. stop the agent.
# A sample is VmRSS, VmHWM, RssAnon and Threads from /proc/PID/status and Pss from
# /proc/PID/smaps_rollup. For context it also samples dockerd, containerd, the containerd shims
# of the 50 containers, and the 50 sleep processes. Target (issue): under 20 MiB with 50
# allocations.
#
#   bench/agent_rss.sh [--drivers process,docker] [--count 50] [--settle 10] [--no-doc]
#
# By default it also replaces the section "## Agent memory" in docs/benchmarks.md.
# Env: BUILD_DIR (default build-bench; configured -G Ninja RelWithDebInfo if new), BERTH (a berth
# binary to use instead of building), DOCKER_HOST (unix:// only). Needs root for the docker
# driver (dockerd, started by scripts/docker-test-engine.sh if none answers, stopped at exit only
# if this script started it).
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
# shellcheck source=bench/lib.sh
. "$ROOT/bench/lib.sh"
BUILD_DIR="${BUILD_DIR:-$ROOT/build-bench}"
DRIVERS=process,docker
COUNT=50
SETTLE=10
WRITE_DOC=1
COMMAND="bench/agent_rss.sh${*:+ $*}"
while [[ $# -gt 0 ]]; do
  case $1 in
    --drivers) DRIVERS=$2; shift 2 ;;
    --drivers=*) DRIVERS=${1#--drivers=}; shift ;;
    --count) COUNT=$2; shift 2 ;;
    --count=*) COUNT=${1#--count=}; shift ;;
    --settle) SETTLE=$2; shift 2 ;;
    --settle=*) SETTLE=${1#--settle=}; shift ;;
    --no-doc) WRITE_DOC=0; shift ;;
    *) echo "usage: $0 [--drivers process,docker] [--count N] [--settle S] [--no-doc]" >&2; exit 2 ;;
  esac
done
IMAGE=berth/busybox:latest
export DOCKER_HOST="${DOCKER_HOST:-unix:///var/run/docker.sock}"

# --- build -------------------------------------------------------------------------------------
if [[ -z "${BERTH:-}" ]]; then
  BERTH="$BUILD_DIR/src/berth"
  bench_build "$BERTH" berth
fi

REV="$(bench_rev)"

WORK="$(mktemp -d /tmp/berth-rss-bench.XXXXXX)"
RID="$(basename "$WORK" | cut -d. -f2 | tr '[:upper:]' '[:lower:]')"
AGENT_PID=""
EVENTS_PID=""
MACHINES=()
TAGS=()
PROBLEMS=()

problem() { PROBLEMS+=("$*"); log "problem: $*"; }

# PIDs of processes whose environment holds BENCH_RUN=$1 (the process driver's tasks).
tagged_pids() {
  python3 - "$1" <<'EOF'
import os, sys
want = b"BENCH_RUN=" + sys.argv[1].encode()
for pid in os.listdir("/proc"):
    if not pid.isdigit() or int(pid) == os.getpid():
        continue
    try:
        env = open("/proc/%s/environ" % pid, "rb").read().split(b"\0")
    except OSError:
        continue
    if want in env:
        print(pid)
EOF
}

stop_agent() {
  [[ -n "$AGENT_PID" ]] || return 0
  if kill -0 "$AGENT_PID" 2>/dev/null; then
    kill -TERM "$AGENT_PID"
    for _ in $(seq 200); do kill -0 "$AGENT_PID" 2>/dev/null || break; sleep 0.1; done
    if kill -0 "$AGENT_PID" 2>/dev/null; then
      problem "agent $AGENT_PID still running 20s after SIGTERM; sent SIGKILL"
      kill -KILL "$AGENT_PID"
    fi
  fi
  wait "$AGENT_PID" 2>/dev/null || true
  AGENT_PID=""
}

cleanup() {
  set +e
  [[ -n "$EVENTS_PID" ]] && kill "$EVENTS_PID" 2>/dev/null
  stop_agent
  local m t ids pids
  for m in "${MACHINES[@]}"; do
    ids="$(docker ps -aq --filter "label=berth.machine=$m" 2>/dev/null)"
    if [[ -n "$ids" ]]; then
      log "removing $(echo "$ids" | wc -l) leftover container(s) of $m"
      # shellcheck disable=SC2086
      docker rm -f $ids >/dev/null
    fi
  done
  for t in "${TAGS[@]}"; do
    pids="$(tagged_pids "$t")"
    if [[ -n "$pids" ]]; then
      log "killing $(echo "$pids" | wc -l) leftover process(es) tagged BENCH_RUN=$t"
      # shellcheck disable=SC2086
      kill -KILL $pids 2>/dev/null
    fi
  done
  "$ROOT/scripts/docker-test-engine.sh" stop "$WORK/docker" >/dev/null 2>&1
  if [[ -n "${KEEP_WORK:-}" ]]; then log "kept $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# "VmRSS VmHWM RssAnon RssFile Pss Threads" of a pid, in KiB (Threads a count); dashes if gone.
sample() {
  local pid=$1
  if [[ ! -r /proc/$pid/status ]]; then echo "- - - - - -"; return; fi
  awk -v pss="$(awk '/^Pss:/ {print $2}' "/proc/$pid/smaps_rollup" 2>/dev/null)" '
    /^VmRSS:/ {rss=$2} /^VmHWM:/ {hwm=$2} /^RssAnon:/ {anon=$2} /^RssFile:/ {file=$2}
    /^Threads:/ {thr=$2}
    END {print rss, hwm, anon, file, (pss == "" ? "-" : pss), thr}' "/proc/$pid/status"
}

# utime+stime of a pid in clock ticks (0 if gone).
cpu_ticks() {
  local stat
  stat="$(cat "/proc/$1/stat" 2>/dev/null)" || { echo 0; return; }
  stat="${stat##*) }"  # the fields after "(comm) "; utime and stime are then fields 12 and 13
  awk '{print $12 + $13}' <<<"$stat"
}
CLK_TCK="$(getconf CLK_TCK)"

# Sum and count of VmRSS (KiB) over a list of pids.
rss_sum() {
  local total=0 n=0 pid kb
  for pid in "$@"; do
    kb=$(awk '/^VmRSS:/ {print $2}' "/proc/$pid/status" 2>/dev/null || true)
    [[ -n "$kb" ]] || continue
    total=$((total + kb)); n=$((n + 1))
  done
  echo "$total $n"
}

# Number of allocations of job $1 in state running, per `berth alloc ls --json`; -1 if the
# command fails.
running_allocs() {
  local out
  out="$("$BERTH" --addr "$ADDR" alloc ls --job "$1" --json 2>"$WORK/alloc-ls.err")" || { echo -1; return; }
  python3 -c '
import json, sys
try:
    doc = json.loads(sys.argv[1])
except ValueError:
    print(-1); sys.exit()
if isinstance(doc, dict):
    doc = doc.get("allocs") or doc.get("allocations") or []
print(sum(1 for a in doc if isinstance(a, dict) and a.get("state") == "running"))' "$out"
}

# Number of live tasks of this phase: containers running with our machine label, or tagged
# processes.
task_count() {
  if [[ $DRIVER == docker ]]; then
    docker ps -q --filter "label=berth.machine=$MACHINE" | wc -l
  else
    tagged_pids "$TAG" | wc -l
  fi
}

RESULTS="$WORK/results.txt"
PEERS="$WORK/peers.txt"
: >"$RESULTS"
: >"$PEERS"
# settle_and_record DRIVER STATE: waits SETTLE seconds, then samples the agent; also the CPU the
# agent (and, for docker, dockerd) used during those seconds, in % of one core.
settle_and_record() {
  local s a0 a1 d0=0 d1=0 dpid="" t0 t1 acpu dcpu="-"
  [[ $1 == docker ]] && dpid="$(pgrep -x -o dockerd || true)"
  t0=$EPOCHREALTIME
  a0=$(cpu_ticks "$AGENT_PID")
  [[ -n "$dpid" ]] && d0=$(cpu_ticks "$dpid")
  sleep "$SETTLE"
  a1=$(cpu_ticks "$AGENT_PID")
  [[ -n "$dpid" ]] && d1=$(cpu_ticks "$dpid")
  t1=$EPOCHREALTIME
  s="$(sample "$AGENT_PID")"
  acpu=$(awk -v d=$((a1 - a0)) -v t0="$t0" -v t1="$t1" -v hz="$CLK_TCK" 'BEGIN {printf "%.1f", 100 * d / hz / (t1 - t0)}')
  [[ -n "$dpid" ]] && dcpu=$(awk -v d=$((d1 - d0)) -v t0="$t0" -v t1="$t1" -v hz="$CLK_TCK" 'BEGIN {printf "%.1f", 100 * d / hz / (t1 - t0)}')
  echo "$1|$2|$s $acpu $dcpu" >>"$RESULTS"
  log "$1, $2: VmRSS VmHWM RssAnon RssFile Pss (KiB) Threads agent-CPU% dockerd-CPU% = $s $acpu $dcpu"
}

LOAD_START="$(cut -d' ' -f1-3 /proc/loadavg)"
AGENT_HELP="$("$BERTH" agent --help 2>&1 || true)"

IFS=',' read -r -a DRIVER_LIST <<<"$DRIVERS"
for DRIVER in "${DRIVER_LIST[@]}"; do
  case $DRIVER in process|docker) ;; *) echo "unknown driver $DRIVER" >&2; exit 2 ;; esac
  MACHINE="bench-rss-$RID-$DRIVER"
  TAG="$RID-$DRIVER"
  JOB="rss-$RID-$DRIVER"
  MACHINES+=("$MACHINE")
  TAGS+=("$TAG")

  if [[ $DRIVER == docker ]]; then
    "$ROOT/scripts/docker-test-engine.sh" start "$WORK/docker" >&2
    bench_ensure_image "$IMAGE"
  fi

  # 1. a fresh agent, idle
  DATA="$WORK/agent-$DRIVER"
  mkdir -p "$DATA"
  ARGS=(agent --dev --data-dir "$DATA" --api 127.0.0.1:0 --machine-id "$MACHINE")
  if grep -q -- '--docker-host' <<<"$AGENT_HELP"; then ARGS+=(--docker-host "$DOCKER_HOST"); fi
  "$BERTH" "${ARGS[@]}" >"$WORK/agent-$DRIVER.log" 2>&1 &
  AGENT_PID=$!
  ADDR=""
  for _ in $(seq 300); do
    if [[ -s "$DATA/api.addr" ]]; then ADDR="$(head -1 "$DATA/api.addr")"; break; fi
    kill -0 "$AGENT_PID" 2>/dev/null || break
    sleep 0.1
  done
  if [[ -z "$ADDR" ]]; then
    echo "agent did not write $DATA/api.addr; its log:" >&2
    tail -n 30 "$WORK/agent-$DRIVER.log" >&2
    exit 1
  fi
  log "$DRIVER: agent $AGENT_PID at $ADDR, machine $MACHINE; settling ${SETTLE}s"
  settle_and_record "$DRIVER" "idle, 0 allocations"

  # 2. COUNT allocations
  sed -e "s/^name: .*/name: $JOB/" -e "s/^    count: .*/    count: $COUNT/" \
    -e "s/BENCH_RUN: \"manual\"/BENCH_RUN: \"$TAG\"/" \
    "$ROOT/bench/jobs/sleep-$DRIVER.yml" >"$WORK/$JOB.yml"
  if [[ $DRIVER == docker ]]; then
    # The engine's create/start events of our containers: how many starts were in flight at once.
    docker events --filter "label=berth.machine=$MACHINE" --filter event=create --filter event=start \
      --format '{{.TimeNano}} {{.Action}} {{.Actor.ID}}' >"$WORK/events-$DRIVER.txt" 2>/dev/null &
    EVENTS_PID=$!
    sleep 1  # the stream subscribes asynchronously
  fi
  T0=$SECONDS
  if ! "$BERTH" --addr "$ADDR" job run "$WORK/$JOB.yml" >"$WORK/$JOB.out" 2>&1; then
    echo "berth job run failed:" >&2; cat "$WORK/$JOB.out" >&2; exit 1
  fi
  RUNNING=0 TASKS=0
  while ((SECONDS - T0 < 300)); do
    RUNNING=$(running_allocs "$JOB")
    TASKS=$(task_count)
    ((RUNNING == COUNT && TASKS == COUNT)) && break
    kill -0 "$AGENT_PID" 2>/dev/null || { echo "agent exited; its log:" >&2; tail -n 30 "$WORK/agent-$DRIVER.log" >&2; exit 1; }
    sleep 1
  done
  log "$DRIVER: after $((SECONDS - T0))s: $RUNNING allocations running (alloc ls), $TASKS tasks live"
  if ((RUNNING != COUNT || TASKS != COUNT)); then
    ((RUNNING < 0)) && problem "$DRIVER: \`berth alloc ls --job $JOB --json\` failed: $(head -c 300 "$WORK/alloc-ls.err")"
    problem "$DRIVER: after 300s, alloc ls reports $RUNNING of $COUNT running and $TASKS tasks are live"
    ((TASKS == 0)) && { tail -n 20 "$WORK/agent-$DRIVER.log" >&2; exit 1; }
  fi
  START_SECS=$((SECONDS - T0))
  echo "$DRIVER|start_secs|$START_SECS" >>"$PEERS"
  echo "$DRIVER|start_errors|$(grep -c 'start-error' "$WORK/agent-$DRIVER.log" || true) $(grep 'start-error' "$WORK/agent-$DRIVER.log" | grep -c 'no answer within' || true)" >>"$PEERS"
  if [[ -n "$EVENTS_PID" ]]; then
    kill "$EVENTS_PID" 2>/dev/null || true
    wait "$EVENTS_PID" 2>/dev/null || true
    EVENTS_PID=""
    echo "$DRIVER|starts|$(python3 - "$WORK/events-$DRIVER.txt" <<'EOF'
import sys
ev = [l.split() for l in open(sys.argv[1]) if len(l.split()) == 3]
created, spans = {}, []
for t, action, cid in ev:
    if action == "create":
        created[cid] = int(t)
    elif action == "start" and cid in created:
        spans.append((created[cid], int(t)))
if not spans:
    print("-"); sys.exit()
points = sorted([(a, 1) for a, _ in spans] + [(b, -1) for _, b in spans])
cur = peak = 0
for _, d in points:
    cur += d; peak = max(peak, cur)
first, last = min(a for a, _ in spans), max(b for _, b in spans)
print("%d %.1f %d" % (len(spans), (last - first) / 1e9, peak))
EOF
)" >>"$PEERS"
  fi
  settle_and_record "$DRIVER" "$COUNT allocations running"

  # Context: the engine, and the tasks themselves.
  if [[ $DRIVER == docker ]]; then
    for d in dockerd containerd; do
      p="$(pgrep -x -o "$d" || true)"
      [[ -n "$p" ]] && echo "docker|$d|$(sample "$p")" >>"$PEERS"
    done
    mapfile -t CPIDS < <(docker ps -q --filter "label=berth.machine=$MACHINE" |
      xargs -r docker inspect -f '{{.State.Pid}}')
    SHIMS=()
    for p in "${CPIDS[@]}"; do
      pp="$(awk '{print $4}' "/proc/$p/stat" 2>/dev/null || true)"
      [[ -n "$pp" ]] && SHIMS+=("$pp")
    done
    mapfile -t SHIMS < <(printf '%s\n' "${SHIMS[@]}" | sort -u)
    echo "docker|shim_comm|$(cat "/proc/${SHIMS[0]}/comm" 2>/dev/null || echo '?')" >>"$PEERS"
    echo "docker|shims|$(rss_sum "${SHIMS[@]}")" >>"$PEERS"
    echo "docker|tasks|$(rss_sum "${CPIDS[@]}")" >>"$PEERS"
  else
    mapfile -t TPIDS < <(tagged_pids "$TAG")
    echo "process|tasks|$(rss_sum "${TPIDS[@]}")" >>"$PEERS"
  fi

  # 3. stop and purge, then idle again
  T0=$SECONDS
  "$BERTH" --addr "$ADDR" job stop "$JOB" --purge >>"$WORK/$JOB.out" 2>&1 ||
    problem "$DRIVER: berth job stop $JOB --purge failed: $(tail -n 2 "$WORK/$JOB.out")"
  while (($(task_count) > 0 && SECONDS - T0 < 180)); do sleep 1; done
  LEFT=$(task_count)
  ((LEFT > 0)) && problem "$DRIVER: $LEFT of $COUNT tasks still live 180s after job stop --purge"
  echo "$DRIVER|stop_secs|$((SECONDS - T0))" >>"$PEERS"
  if [[ $DRIVER == docker ]]; then
    echo "docker|exited_left|$(docker ps -aq --filter "label=berth.machine=$MACHINE" --filter status=exited | wc -l)" >>"$PEERS"
  fi
  log "$DRIVER: tasks gone after $((SECONDS - T0))s; settling ${SETTLE}s"
  settle_and_record "$DRIVER" "after stop --purge, 0 allocations"

  # 4. done with this agent
  stop_agent
done
LOAD_END="$(cut -d' ' -f1-3 /proc/loadavg)"

TABLES="$(python3 - "$RESULTS" "$PEERS" "$COUNT" <<'EOF'
import sys
results = [l.rstrip("\n").split("|") for l in open(sys.argv[1]) if l.strip()]
peers = [l.rstrip("\n").split("|") for l in open(sys.argv[2]) if l.strip()]
count = int(sys.argv[3])
def mib(v):
    return "-" if v in ("-", "") else "%.1f" % (int(v) / 1024)
print("| driver | agent state | VmRSS (MiB) | VmHWM (MiB) | RssAnon (MiB) | RssFile (MiB) | Pss (MiB) | threads | agent CPU (% of a core) | dockerd CPU (% of a core) |")
print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
worst = None
for driver, state, s in results:
    rss, hwm, anon, rfile, pss, thr, acpu, dcpu = s.split()
    print("| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |" % (
        driver, state, mib(rss), mib(hwm), mib(anon), mib(rfile), mib(pss), thr, acpu, dcpu))
    if state.startswith(str(count)) and rss != "-":
        worst = max(worst or 0, int(rss))
print()
by = {(d, st): v.split() for d, st, v in results}
for d in ("process", "docker"):
    idle, busy = by.get((d, "idle, 0 allocations")), by.get((d, "%d allocations running" % count))
    if idle and busy and "-" not in idle[:6] and "-" not in busy[:6]:
        print("%s driver, per allocation: %+.0f KiB VmRSS, %+.0f KiB RssAnon, %+.2f threads "
              "(idle → %d running)." % (d, (int(busy[0]) - int(idle[0])) / count,
              (int(busy[2]) - int(idle[2])) / count, (int(busy[5]) - int(idle[5])) / count, count))
print()
if worst is not None:
    print("Largest VmRSS with %d allocations: **%.1f MiB**; target < 20 MiB: %s." %
          (count, worst / 1024, "met" if worst < 20 * 1024 else "not met"))
    print()
p = {(d, k): v for d, k, v in peers}
rows = []
for d in ("process", "docker"):
    if (d, "start_secs") in p:
        rows.append("| %s: job run → %d allocations running and tasks live | %s s |" % (d, count, p[(d, "start_secs")]))
    if (d, "stop_secs") in p:
        rows.append("| %s: job stop --purge → no task live | %s s |" % (d, p[(d, "stop_secs")]))
for d in ("dockerd", "containerd"):
    if ("docker", d) in p:
        rss = p[("docker", d)].split()[0]
        rows.append("| %s VmRSS (with the %d containers) | %s MiB |" % (d, count, mib(rss)))
if ("docker", "shims") in p:
    total, n = map(int, p[("docker", "shims")].split())
    if n:
        rows.append("| %s, VmRSS per container (%d shims) | %.1f MiB (sum %.1f MiB) |" %
                    (p.get(("docker", "shim_comm"), "shim"), n, total / n / 1024, total / 1024))
for d in ("process", "docker"):
    if (d, "tasks") in p:
        total, n = map(int, p[(d, "tasks")].split())
        if n:
            rows.append("| %s: busybox sleep VmRSS per task (%d tasks) | %.2f MiB |" % (d, n, total / n / 1024))
for d in ("process", "docker"):
    if (d, "start_errors") in p:
        n, timeouts = p[(d, "start_errors")].split()
        rows.append("| %s: start errors in the agent log (of which engine timeouts) | %s (%s) |" % (d, n, timeouts))
if p.get(("docker", "starts"), "-") != "-":
    n, secs, peak = p[("docker", "starts")].split()
    rows.append("| docker: first create → last start of the %s containers (engine events) | %s s |" % (n, secs))
    rows.append("| docker: most containers between create and start at once | %s |" % peak)
if ("docker", "exited_left") in p:
    rows.append("| docker: exited containers left after stop --purge | %s |" % p[("docker", "exited_left")])
if rows:
    print("| context | value |")
    print("|---|---:|")
    print("\n".join(rows))
EOF
)"
echo
echo "$TABLES"
for p in "${PROBLEMS[@]}"; do echo "problem: $p" >&2; done

if ((WRITE_DOC)); then
  DOC="$ROOT/docs/benchmarks.md"
  SECTION="$WORK/section.md"
  {
    echo "## Agent memory"
    echo
    echo "Run on $(date -u +%Y-%m-%d) on $(nproc) cores ($(uname -m), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//')),"
    echo "$(awk '/MemTotal/ {printf "%.1f GiB", $2/1048576}' /proc/meminfo) RAM, kernel $(uname -r), Docker Engine $(docker version -f '{{.Server.Version}}' 2>/dev/null || echo '?'),"
    echo "berth $("$BERTH" --version | awk '{print $2}') ($REV, $(grep -m1 CMAKE_BUILD_TYPE "$(dirname "$(dirname "$BERTH")")/CMakeCache.txt" 2>/dev/null | cut -d= -f2 || echo '?') build);"
    echo "load average at the start: $LOAD_START, at the end: $LOAD_END."
    echo "Command: \`$COMMAND\`"
    echo
    echo "One fresh \`berth agent --dev\` per driver. Samples are taken ${SETTLE} s after the agent"
    echo "started, ${SETTLE} s after all $COUNT allocations of one job (count $COUNT, \`/bin/busybox sleep"
    echo "3600\`: bench/jobs/sleep-process.yml, bench/jobs/sleep-docker.yml) were running, and ${SETTLE} s"
    echo "after the job was stopped and purged. VmRSS = RssAnon (heap, stacks) + RssFile (the binary"
    echo "and shared libraries, counted in full) + RssShmem; Pss shares file pages out among the"
    echo "processes that map them; VmHWM is the peak VmRSS so far. CPU is what the process used"
    echo "during the ${SETTLE} s before the sample (dockerd's includes any other users of the engine)."
    echo
    echo "$TABLES"
    for p in "${PROBLEMS[@]}"; do echo; echo "Problem seen: $p"; done
    echo
  } >"$SECTION"
  bench_write_section "$DOC" "$SECTION" "## Agent memory"
fi
