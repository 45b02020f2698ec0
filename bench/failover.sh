#!/usr/bin/env bash
# Failover: how long after a machine dies its work runs elsewhere, on a real cluster on loopback:
# three `berth agent` processes (machines m1, m2, m3, each its own data dir, API port and
# --meta) on a 3-member etcd cluster, running one job of 6 sleeping processes spread over them
# (bench/jobs/failover-sleep.yml: 2 per machine).
#
# A trial kills a machine: SIGKILL of its agent and of every task the agent started (process
# tasks outlive their agent by design, so both go, as when a machine loses power). The clock
# starts just before the kill; a poller reads the whole key prefix from etcd in one request
# (one consistent snapshot) every ~50 ms and stops the clock at the first snapshot where the job
# has exactly 6 allocations, none on the dead machine, each with a status "running" reported
# by the machine it is placed on. The same snapshots give the steps on the way: the machine's
# record gone (its lease expired), its allocations off it (the engine saw it go and marked them
# lost), the replacements placed, the replacements running. Then the dead machine's agent is
# started again on its data dir and the cluster settles (all 6 running, exactly 6 task
# processes, SETTLE seconds of quiet) before the next trial.
#
#   --trials N          machine-death trials (default 20); the victim is the machine, other
#                       than the engine leader, that runs most of the job
#   --leader-trials N   trials where the victim is the engine leader's machine (default 10):
#                       also measures the time to a leader record naming another machine
#   --settle S          quiet seconds between trials (default 3)
#   --no-doc            print only; by default it also replaces the section "## Failover" in
#                       docs/benchmarks.md, leaving the other sections alone
#
# Target (DESIGN.md, issue 4): a dead machine's work running elsewhere within 5 s (p50) at the
# default settings. The agents run with the defaults of `berth agent` except where MACHINE_TTL
# or ENGINE_TTL are given (they are printed with the results).
#
# Env: BUILD_DIR (default build-bench; configured -G Ninja RelWithDebInfo if new), BERTH (a berth
# binary to use instead of building), MACHINE_TTL / ENGINE_TTL (seconds; default: the agent's
# defaults), BERTH_TEST_ETCD_CLUSTER (a 3-member cluster to use; by default this script starts
# one with scripts/etcd-test-cluster.sh in its work dir and stops it at the end).
# Needs python3, etcdctl, /bin/busybox. Traffic stays on 127.0.0.1.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
# shellcheck source=bench/lib.sh
. "$ROOT/bench/lib.sh"
BUILD_DIR="${BUILD_DIR:-$ROOT/build-bench}"
TRIALS=20
LEADER_TRIALS=10
SETTLE=3
WRITE_DOC=1
COUNT=6
COMMAND="bench/failover.sh${*:+ $*}"
while [[ $# -gt 0 ]]; do
  case $1 in
    --trials) TRIALS=$2; shift 2 ;;
    --trials=*) TRIALS=${1#--trials=}; shift ;;
    --leader-trials) LEADER_TRIALS=$2; shift 2 ;;
    --leader-trials=*) LEADER_TRIALS=${1#--leader-trials=}; shift ;;
    --settle) SETTLE=$2; shift 2 ;;
    --settle=*) SETTLE=${1#--settle=}; shift ;;
    --no-doc) WRITE_DOC=0; shift ;;
    *) echo "usage: $0 [--trials N] [--leader-trials N] [--settle S] [--no-doc]" >&2; exit 2 ;;
  esac
done
[[ $TRIALS =~ ^[0-9]+$ && $TRIALS -ge 1 ]] || { echo "--trials: at least 1" >&2; exit 2; }
[[ $LEADER_TRIALS =~ ^[0-9]+$ ]] || { echo "--leader-trials: a number" >&2; exit 2; }

# --- build -------------------------------------------------------------------------------------
if [[ -z "${BERTH:-}" ]]; then
  BERTH="$BUILD_DIR/src/berth"
  bench_build "$BERTH" berth
fi
REV="$(bench_rev)"
BUILD_TYPE="$(grep -m1 CMAKE_BUILD_TYPE "$(dirname "$(dirname "$BERTH")")/CMakeCache.txt" 2>/dev/null | cut -d= -f2 || true)"

# The agent's own defaults, unless overridden.
agent_default() { "$BERTH" agent --help | sed -n "s/^ *--$1 INT=\([0-9]*\).*/\1/p"; }
MACHINE_TTL="${MACHINE_TTL:-$(agent_default machine-ttl)}"
ENGINE_TTL="${ENGINE_TTL:-$(agent_default engine-ttl)}"
[[ -n $MACHINE_TTL && -n $ENGINE_TTL ]] || { echo "cannot read the agent's TTL defaults" >&2; exit 1; }
TASK_POLL_MS="$(agent_default task-poll-ms)"

# shellcheck source=tests/e2e/lib.sh
. "$ROOT/tests/e2e/lib.sh"
# shellcheck source=tests/e2e/cluster_lib.sh
. "$ROOT/tests/e2e/cluster_lib.sh"
# shellcheck disable=SC2034 # read by cluster_lib.sh
CT_MACHINE_TTL=$MACHINE_TTL
# shellcheck disable=SC2034
CT_ENGINE_TTL=$ENGINE_TTL


# --- etcd --------------------------------------------------------------------------------------
OWN_ETCD=""
if [[ -z "${BERTH_TEST_ETCD_CLUSTER:-}" ]]; then
  if curl -fsS --max-time 1 http://127.0.0.1:23791/health >/dev/null 2>&1; then
    echo "an etcd already answers on 127.0.0.1:23791 (someone's test cluster?): set" >&2
    echo "BERTH_TEST_ETCD_CLUSTER to use it, or stop it" >&2
    exit 1
  fi
  OWN_ETCD="$(mktemp -d /tmp/berth-failover-etcd.XXXXXX)"
  "$ROOT/scripts/etcd-test-cluster.sh" start "$OWN_ETCD" >/dev/null
  BERTH_TEST_ETCD_CLUSTER=127.0.0.1:23791,127.0.0.1:23792,127.0.0.1:23793
fi

ct_init "$BERTH" "$BERTH_TEST_ETCD_CLUSTER" 29500
cleanup() {
  set +e
  ct_cleanup
  if [[ -n $OWN_ETCD ]]; then
    "$ROOT/scripts/etcd-test-cluster.sh" stop "$OWN_ETCD" >/dev/null 2>&1 || true
    rm -rf "$OWN_ETCD"
  fi
}
trap cleanup EXIT
T=$CT_TMP
RESULTS="$T/results.jsonl"
: >"$RESULTS"
JOB=bench-failover

# --- cluster -----------------------------------------------------------------------------------
LOAD_START="$(cut -d' ' -f1-3 /proc/loadavg)"
log "3 agents (machine TTL ${MACHINE_TTL}s, engine TTL ${ENGINE_TTL}s), etcd $BERTH_TEST_ETCD_CLUSTER, prefix $CT_PREFIX"
for n in 1 2 3; do ct_launch_agent "$n"; done
for n in 1 2 3; do ct_wait_agent "$n" || { echo "agent m$n did not start" >&2; exit 1; }; done
sed -e "s/@RUN@/$CT_RUN/g" -e "s/@COUNT@/$COUNT/g" "$ROOT/bench/jobs/failover-sleep.yml" >"$T/job.yml"
ct_berth job run "$T/job.yml" >/dev/null

settled() {
  ct_ok "sorted(M) == ['m1', 'm2', 'm3'] and L and len(allocs('$JOB')) == $COUNT and len(running('$JOB')) == $COUNT and len(procs('$JOB')) == $COUNT"
}
wait_for 120 settled || { echo "the job did not settle: $(ct_q "where('$JOB')")" >&2; exit 1; }

# trial KIND VICTIM_N: one death, its result appended to $RESULTS.
trial() {
  local kind=$1 n=$2 out
  out=$(ct_py failover "m$n" "${CT_PID[n]}" "$T/m$n" "$JOB" "$COUNT" 120) || true
  wait "${CT_PID[n]}" 2>/dev/null || true
  CT_PID[n]=""
  log "$kind m$n: $out"
  echo "{\"kind\": \"$kind\", \"machine\": \"m$n\", \"result\": $out}" >>"$RESULTS"
  ct_start_agent "$n" || { echo "agent m$n did not start again" >&2; exit 1; }
  wait_for 120 settled || { echo "no settling after trial: $(ct_q "where('$JOB')")" >&2; exit 1; }
  sleep "$SETTLE"
}

sleep "$SETTLE"
for i in $(seq "$TRIALS"); do
  victim=$(ct_q "max((m for m in where('$JOB') if m != L['machine']), key=lambda m: where('$JOB')[m])")
  log "trial $i/$TRIALS: where=$(ct_q "where('$JOB')") leader=$(ct_q "L['machine']")"
  trial machine "${victim#m}"
done
for i in $(seq "$LEADER_TRIALS"); do
  victim=$(ct_q "L['machine']")
  log "leader trial $i/$LEADER_TRIALS: where=$(ct_q "where('$JOB')") leader=$victim"
  trial leader "${victim#m}"
done
LOAD_END="$(cut -d' ' -f1-3 /proc/loadavg)"

# --- results -----------------------------------------------------------------------------------
TABLE=$("$CT_PYTHON" - "$RESULTS" <<'EOF'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]

def pct(xs, p):  # linear interpolation between closest ranks
    xs = sorted(xs)
    if not xs:
        return float("nan")
    k = (len(xs) - 1) * p / 100.0
    lo = int(k)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (k - lo)

def line(label, xs, n):
    if not xs:
        return "| %s | - | - | - | - | - | 0 of %d |" % (label, n)
    return "| %s | %.2f | %.2f | %.2f | %.2f | %.2f | %d of %d |" % (
        label, pct(xs, 50), pct(xs, 90), min(xs), max(xs), sum(xs) / len(xs), len(xs), n)

out = []
for kind, title in (("machine", "a machine other than the engine leader dies"),
                    ("leader", "the engine leader's machine dies")):
    rs = [r["result"] for r in rows if r["kind"] == kind]
    if not rs:
        continue
    n = len(rs)
    out.append("**%s** (%d trials; the victim ran %s of the %s allocations)" % (
        title, n, "–".join(sorted({str(r.get("victims", "?")) for r in rs})), "6"))
    out.append("")
    out.append("| seconds from the SIGKILL to ... | p50 | p90 | min | max | mean | trials |")
    out.append("|---|---:|---:|---:|---:|---:|---:|")
    steps = [("machine_gone_s", "its machine record gone (lease expired)")]
    if kind == "leader":
        steps.append(("leader_s", "a leader record naming another machine"))
    steps += [("moved_s", "its allocations off it (marked lost by the engine)"),
              ("placed_s", "all replacements placed"),
              ("running_s", "**all replacements running elsewhere**")]
    for key, label in steps:
        out.append(line(label, [r[key] for r in rs if key in r], n))
    failed = [r for r in rs if "running_s" not in r]
    if failed:
        out.append("")
        out.append("%d trial(s) did not recover within 120 s: %s" % (len(failed), json.dumps(failed)))
    out.append("")
machine = [r["result"]["running_s"] for r in rows if r["kind"] == "machine" and "running_s" in r["result"]]
if machine:
    p50 = pct(machine, 50)
    out.append("Failover p50 **%.2f s**, max %.2f s (machine deaths, %d trials); target p50 ≤ 5 s: %s." % (
        p50, max(machine), len(machine), "met" if p50 <= 5 else "not met"))
print("\n".join(out))
EOF
)
echo
echo "$TABLE"

if ((WRITE_DOC)); then
  DOC="$ROOT/docs/benchmarks.md"
  SECTION="$T/section.md"
  ETCD_VERSION="$(etcd --version 2>/dev/null | sed -n 's/^etcd Version: //p')"
  {
    echo "## Failover"
    echo
    echo "Run on $(date -u +%Y-%m-%d) on $(nproc) cores ($(uname -m), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//')),"
    echo "kernel $(uname -r), etcd ${ETCD_VERSION:-?} (3 members on loopback, heartbeat 50 ms, election"
    echo "timeout 500 ms: scripts/etcd-test-cluster.sh), berth $("$BERTH" --version | awk '{print $2}') ($REV, ${BUILD_TYPE:-?} build);"
    echo "load average at the start: $LOAD_START, at the end: $LOAD_END (a shared machine)."
    echo "Command: \`$COMMAND\`"
    echo
    echo "Settings: machine TTL **${MACHINE_TTL} s** (\`--machine-ttl\`), engine TTL **${ENGINE_TTL} s**"
    echo "(\`--engine-ttl\`), task poll ${TASK_POLL_MS} ms; otherwise the agent's defaults."
    echo
    echo "Three \`berth agent\` processes (m1, m2, m3: own data dir, API port, \`--meta\`) run one job of"
    echo "$COUNT sleeping processes spread over them (bench/jobs/failover-sleep.yml). A trial SIGKILLs one"
    echo "agent and every task it started (a machine losing power; tasks outlive a lone agent crash"
    echo "by design) and polls etcd every ~50 ms, reading the whole key prefix in one request (one"
    echo "consistent snapshot), until the job has exactly $COUNT allocations, none on the dead machine,"
    echo "each with status \`running\` reported by the machine it is placed on. The dead machine's agent"
    echo "is then started again and the cluster settles ($SETTLE s of quiet once all $COUNT run) before the next"
    echo "trial. Times are to the first snapshot that shows each step, so they include up to one"
    echo "poll interval plus one etcd read."
    echo
    echo "$TABLE"
    echo
  } >"$SECTION"
  bench_write_section "$DOC" "$SECTION" "## Failover"
fi
