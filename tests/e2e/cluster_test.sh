#!/usr/bin/env bash
# End-to-end: a real cluster on loopback. Three `berth agent` processes (machines m1, m2, m3 with
# --meta rack=r1, r2, r1; each its own data dir, API port and port range) on the 3-member etcd
# test cluster, under a key prefix of this run's own, with machine and engine TTLs of 3 s.
#   (a) placement: a count-6 job spread over the machines (2 each); a job spread over meta.rack
#       (2 on rack r2 = m2, 2 on rack r1 = m1+m3); a job constrained to rack r2 (only on m2)
#   (b) a machine dies (SIGKILL of its agent and its tasks): its allocations turn lost and are
#       replaced on the other two; the count stays exact; the machine comes back
#   (c) an agent dies but its tasks live on: replacements run elsewhere, and when the agent
#       comes back it stops its stale tasks (exactly count task processes remain)
#   (d) the engine leader's agent dies: another machine leads, and in every snapshot taken
#       meanwhile no (job, group, index) is held by two allocations; the job keeps its count
#   (e) an etcd member (the raft leader) dies: jobs can still be submitted and stopped, no
#       machine expires, nothing moves; the member rejoins
#   (f) every agent is stopped (SIGTERM) and started again on its data dir: same allocations,
#       same task pids, no restarts
#   (g) draining m3 moves its allocations to m1/m2; a job pinned to m3 waits (unplaced) while
#       it drains and runs there once m3 is eligible again
#   (h) a system job runs once on every machine, and on a fourth machine that joins later
#   (i) rolling updates: a new env rolls out to every instance; a version that never turns
#       healthy fails its deployment, and auto_revert submits the last stable spec again
# Needs BERTH_TEST_ETCD_CLUSTER and BERTH_TEST_ETCD_CTL (scripts/test.sh sets them), python3,
# etcdctl and /bin/busybox. Leaves nothing behind: agents, tasks and the prefix in etcd are
# removed on exit, whatever happened (CT_KEEP=1 keeps the work dir with the agents' logs).
# Usage: cluster_test.sh BERTH_BINARY
set -uo pipefail
BERTH=$1
HERE=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=lib.sh
. "$HERE/lib.sh"
# shellcheck source=cluster_lib.sh
. "$HERE/cluster_lib.sh"

if [[ -z "${BERTH_TEST_ETCD_CLUSTER:-}" || -z "${BERTH_TEST_ETCD_CTL:-}" ]]; then
  echo "BERTH_TEST_ETCD_CLUSTER / BERTH_TEST_ETCD_CTL are not set: run through scripts/test.sh"
  echo "(or: scripts/etcd-test-cluster.sh start DIR && . DIR/env)"
  exit 1
fi
ct_init "$BERTH" "$BERTH_TEST_ETCD_CLUSTER" 29000
# shellcheck disable=SC2034 # read by cluster_lib.sh
CT_AGENT_ARGS=(--task-poll-ms 200)
T=$CT_TMP
SAMPLER_PID=""
ETCD_DOWN=""
WATCH_PID=""
cleanup() {
  [[ -n "$WATCH_PID" ]] && kill "$WATCH_PID" 2>/dev/null
  if [[ -n "$SAMPLER_PID" ]]; then
    touch "$T/sample.stop"
    wait "$SAMPLER_PID" 2>/dev/null
  fi
  # shellcheck disable=SC2086
  [[ -n "$ETCD_DOWN" ]] && $BERTH_TEST_ETCD_CTL start-member "$ETCD_DOWN" >/dev/null 2>&1
  ((FAILED > 0)) && ct_dump_logs 40
  ct_cleanup
}
trap cleanup EXIT

# need "description" command...: a check the rest cannot do without.
need() {
  check "$@" && return 0
  echo "cannot go on"
  finish
  exit 1
}

section() { echo "# $(date -u +%T) $*"; }

# submit FILE: `berth job run` through a live agent (prints the CLI's output on failure).
submit() {
  local out
  out=$(ct_berth job run "$1" 2>&1) || { echo "job run $1: $out"; return 1; }
}

# exact JOB COUNT: the job has exactly COUNT allocations, all running on the machine they are
# placed on, and exactly COUNT live task processes.
exact() {
  ct_ok "len(allocs('$1')) == $2 and len(running('$1')) == $2 and len(procs('$1')) == $2"
}

# gone JOB: no allocation, no status record, no process of the job.
gone() {
  ct_ok "not allocs('$1') and not [i for i, s in S.items() if s.get('job') == '$1'] and not procs('$1')"
}

stop_job() { ct_berth job stop "$1" >/dev/null 2>&1 && wait_for 60 gone "$1"; }
stop_jobs() {
  local j
  for j; do stop_job "$j" || return 1; done
}

leader() { ct_q "L['machine'] if L else ''"; }

# A live machine other than the engine leader that runs allocations of JOB (the one with most).
non_leader_with() {
  ct_q "max((m for m in where('$1') if m != (L or {}).get('machine')), key=lambda m: where('$1')[m])"
}

# ---------------------------------------------------------------------------------------------
section "(a) three machines, placement"
for n in 1 2 3; do ct_launch_agent "$n"; done
for n in 1 2 3; do need "agent m$n starts (rack ${CT_RACK[n]})" ct_wait_agent "$n"; done
need "the store lists machines m1, m2, m3" ct_ok "sorted(M) == ['m1', 'm2', 'm3']"
need "one engine leader among them (engine/leader)" wait_for 60 ct_ok "L and L['machine'] in M"
code=$(ct_curl -s -o "$T/engine.json" -w '%{http_code}' "http://$(ct_addr)/v1/engine")
if [[ $code == 404 ]]; then
  echo "note - GET /v1/engine is not served by this build (404); the leader was read from etcd"
else
  check "GET /v1/engine names the leader $(leader) (HTTP $code)" \
    "$CT_PYTHON" -c 'import json,sys; j=json.load(open(sys.argv[1])); assert sys.argv[2] in (j.get("machine"), (j.get("leader") or {}).get("machine"))' \
    "$T/engine.json" "$(leader)"
fi

ct_job cluster-sleep.yml "$T/spread.yml" NAME=ct-spread COUNT=6
need "submit ct-spread (count 6, strategy spread)" submit "$T/spread.yml"
need "(a) ct-spread: 6 allocations running, 2 on each machine, 6 task processes" \
  wait_for 60 ct_ok "where('ct-spread') == {'m1': 2, 'm2': 2, 'm3': 2} and len(allocs('ct-spread')) == 6 and len(procs('ct-spread')) == 6"
out=$(ct_berth alloc ls --job ct-spread --json)
check "(a) berth alloc ls --json shows the 6 running with their machines" \
  "$CT_PYTHON" -c 'import json,sys; j=json.loads(sys.argv[1]); assert len(j)==6 and all(a["state"]=="running" for a in j) and sorted(a["machine"] for a in j)==["m1","m1","m2","m2","m3","m3"]' "$out"

ct_job cluster-rack.yml "$T/rack.yml"
ct_job cluster-r2.yml "$T/r2.yml"
submit "$T/rack.yml"
submit "$T/r2.yml"
check "(a) ct-rack spreads over meta.rack: 2 on r2 (m2), 2 on r1 (m1 + m3)" \
  wait_for 60 ct_ok "len(allocs('ct-rack')) == 4 and len(running('ct-rack')) == 4 and where('ct-rack').get('m2') == 2 and where('ct-rack').get('m1', 0) + where('ct-rack').get('m3', 0) == 2"
check "(a) ct-r2 (constraint meta.rack == r2): both instances on m2 only" \
  wait_for 60 ct_ok "where('ct-r2') == {'m2': 2} and len(allocs('ct-r2')) == 2"
echo "    ct-rack: $(ct_q "where('ct-rack')"), ct-r2: $(ct_q "where('ct-r2')")"
check "(a) stopping ct-rack and ct-r2 removes their allocations and processes" \
  stop_jobs ct-rack ct-r2

# ---------------------------------------------------------------------------------------------
section "(b) a machine dies: agent and tasks SIGKILLed"
V=$(non_leader_with ct-spread)
need "a machine other than the leader runs ct-spread: ${V:-none}" test -n "$V"
V=${V#m}
ids=$(ct_q "sorted(a['_id'] for a in allocs('ct-spread') if a['_machine'] == 'm$V')")
echo "    leader $(leader); killing m$V (allocations $ids)"
# Every status write, to see the "lost" ones however briefly they last.
ETCDCTL_API=3 etcdctl --endpoints "$CT_ENDPOINTS" watch --prefix "${CT_PREFIX}status/" \
  >"$T/status-watch.log" 2>&1 &
WATCH_PID=$!
sleep 1 # (the watch starts; anything it misses makes the check below fail, not pass)
ct_kill_agent "$V" KILL
ct_kill_tasks "$V"
check "(b) m$V's machine record expires" wait_for 60 ct_ok "'m$V' not in M"
written_lost() {
  local id
  for id in $(ct_q "' '.join($ids)"); do
    grep -A1 "status/$id\$" "$T/status-watch.log" | grep -q '"state":"lost"' || return 1
  done
}
check "(b) the engine marks m$V's allocations lost (status \"lost\" written)" \
  wait_for 60 written_lost
kill "$WATCH_PID" 2>/dev/null
wait "$WATCH_PID" 2>/dev/null
WATCH_PID=""
check "(b) replacements run on the other two: 6 running, none on m$V, 6 processes" \
  wait_for 60 ct_ok "len(allocs('ct-spread')) == 6 and len(running('ct-spread')) == 6 and not [a for a in allocs('ct-spread') if a['_machine'] == 'm$V'] and len(procs('ct-spread')) == 6"
check "(b) no lost allocation id is placed again" \
  ct_ok "not [a for a in allocs('ct-spread') if a['_id'] in $ids]"
check "(b) m$V's allocations still show \"lost\" once the replacements run (kept for status_gc_after, 1 h)" \
  ct_ok "all(state(i) == 'lost' for i in $ids)"
echo "    ct-spread now: $(ct_q "where('ct-spread')")"
need "(b) m$V starts again" ct_start_agent "$V"
sleep $((CT_MACHINE_TTL + 1)) # a look for duplicates or stray moves (none may appear, however long)
check "(b) after m$V's return: still exactly 6 allocations running, 6 processes" exact ct-spread 6

# ---------------------------------------------------------------------------------------------
section "(c) an agent dies, its tasks live on; it comes back and stops its stale tasks"
V=$(non_leader_with ct-spread)
need "a machine other than the leader runs ct-spread: ${V:-none}" test -n "$V"
V=${V#m}
ids=$(ct_q "sorted(a['_id'] for a in allocs('ct-spread') if a['_machine'] == 'm$V')")
pids=$(ct_q "' '.join(str(t['pid']) for a in allocs('ct-spread') if a['_machine'] == 'm$V' for t in S[a['_id']]['tasks'])")
k=$(wc -w <<<"$pids")
echo "    leader $(leader); killing only the agent of m$V (allocations $ids, pids $pids)"
ct_kill_agent "$V" KILL
# shellcheck disable=SC2086 # $pids: one word per pid
check "(c) m$V's tasks outlive its agent ($pids)" kill -0 $pids
check "(c) replacements run elsewhere: 6 running allocations, none on m$V" \
  wait_for 60 ct_ok "len(allocs('ct-spread')) == 6 and len(running('ct-spread')) == 6 and not [a for a in allocs('ct-spread') if a['_machine'] == 'm$V']"
check "(c) meanwhile 6 + $k processes live (the stale ones included)" \
  wait_for 60 ct_ok "len(procs('ct-spread')) == 6 + $k"
need "(c) m$V starts again" ct_start_agent "$V"
check "(c) m$V stops its stale tasks ($pids)" \
  wait_for 60 bash -c "! kill -0 $pids 2>/dev/null"
check "(c) exactly 6 allocations running and 6 processes" wait_for 60 exact ct-spread 6
check "(c) the stale allocations' status records are removed" \
  wait_for 60 ct_ok "not [i for i in $ids if i in S]"
sleep $((CT_MACHINE_TTL + 1))
check "(c) still exactly 6 a while later" exact ct-spread 6

# ---------------------------------------------------------------------------------------------
section "(d) the engine leader's agent dies"
OLD=$(leader)
n=${OLD#m}
ct_py sample "$T/sample.stop" "$T/sample.json" &
SAMPLER_PID=$!
wait_for 30 test -e "$T/sample.json.started"
echo "    killing the agent of the leader $OLD (it runs $(ct_q "where('ct-spread').get('$OLD', 0)") of ct-spread)"
ct_kill_agent "$n" KILL
check "(d) another machine takes the lead" \
  wait_for 60 ct_ok "L and L['machine'] != '$OLD' and L['machine'] in M"
echo "    new leader: $(leader)"
check "(d) the job keeps its count: 6 running, none on $OLD" \
  wait_for 60 ct_ok "len(allocs('ct-spread')) == 6 and len(running('ct-spread')) == 6 and '$OLD' not in where('ct-spread')"
need "(d) $OLD starts again" ct_start_agent "$n"
check "(d) exactly 6 allocations running and 6 processes once $OLD is back" \
  wait_for 60 exact ct-spread 6
touch "$T/sample.stop"
wait "$SAMPLER_PID"
SAMPLER_PID=""
summary=$(cat "$T/sample.json" 2>/dev/null)
echo "    sampler: $summary"
check "(d) no (job, group, index) held by two allocations in any snapshot" \
  "$CT_PYTHON" -c 'import json,sys; j=json.loads(sys.argv[1]); assert j["samples"] > 0 and j["violating_samples"] == 0' "$summary"

# ---------------------------------------------------------------------------------------------
section "(e) an etcd member dies"
member=$("$CT_PYTHON" - "$BERTH_TEST_ETCD_CLUSTER" <<'EOF'
import json, sys, urllib.request
eps = sys.argv[1].split(",")
for ep in eps:
    try:
        req = urllib.request.Request("http://%s/v3/maintenance/status" % ep, data=b"{}")
        j = json.loads(urllib.request.urlopen(req, timeout=2).read())
        if j["leader"] == j["header"]["member_id"]:
            print(ep[-1])  # member N listens on client port 2379N (scripts/etcd-test-cluster.sh)
            break
    except Exception:
        pass
else:
    print(1)
EOF
)
before=$(ct_q "sorted(a['_id'] for a in A)")
echo "    killing etcd member $member (the raft leader)"
# shellcheck disable=SC2086
$BERTH_TEST_ETCD_CTL kill-member "$member"
ETCD_DOWN=$member
ct_job cluster-sleep.yml "$T/etcd.yml" NAME=ct-etcd COUNT=2
check "(e) with member $member down a job is submitted" submit "$T/etcd.yml"
check "(e) and runs: 2 allocations, 2 processes" wait_for 60 exact ct-etcd 2
check "(e) and stops" stop_job ct-etcd
check "(e) every machine stayed registered, no allocation moved" \
  ct_ok "sorted(M) == ['m1', 'm2', 'm3'] and sorted(a['_id'] for a in A) == $before and len(running('ct-spread')) == 6"
# shellcheck disable=SC2086
check "(e) member $member starts again and is healthy" $BERTH_TEST_ETCD_CTL start-member "$member"
ETCD_DOWN=""

# ---------------------------------------------------------------------------------------------
section "(f) every agent stopped (SIGTERM) and started again"
snap() {
  ct_q "json.dumps({a['_id']: [a['_machine'], S[a['_id']]['state']] + [[t.get('pid'), t.get('restarts')] for t in S[a['_id']]['tasks']] for a in A}, sort_keys=True)"
}
snap_is() { [[ "$(snap)" == "$1" ]]; }
before=$(snap)
pids=$(ct_q "' '.join(str(t['pid']) for a in A for t in S[a['_id']]['tasks'])")
OLD=$(leader)
# The leader first, so that no engine is left to react to the others leaving.
ct_kill_agent "${OLD#m}" TERM
for n in 1 2 3; do ct_kill_agent "$n" TERM; done
# shellcheck disable=SC2086 # $pids: one word per pid
check "(f) all task processes outlive their agents" kill -0 $pids
for n in 1 2 3; do ct_launch_agent "$n"; done
for n in 1 2 3; do need "(f) agent m$n starts again" ct_wait_agent "$n"; done
check "(f) same allocations on the same machines, running, same pids, no restarts" \
  wait_for 60 snap_is "$before"
sleep $((CT_MACHINE_TTL + 1))
after=$(snap)
check "(f) and still so a while later" test "$after" == "$before"
[[ "$after" == "$before" ]] || echo "    before: $before"$'\n'"    after:  $after"

# ---------------------------------------------------------------------------------------------
section "(g) drain m3"
ct_job cluster-sleep.yml "$T/drain.yml" NAME=ct-drain COUNT=3
submit "$T/drain.yml"
check "(g) ct-drain: one instance on each machine" \
  wait_for 60 ct_ok "where('ct-drain') == {'m1': 1, 'm2': 1, 'm3': 1}"
drain() { # MACHINE drain|eligible
  if "$BERTH" machine --help 2>/dev/null | grep -q "^ *$2 "; then
    ct_berth machine "$2" "$1" >/dev/null
  elif [[ $2 == drain ]]; then
    ct_etcdctl put "${CT_PREFIX}machine-admin/$1" '{"eligible":true,"drain":true}' >/dev/null
  else
    ct_etcdctl put "${CT_PREFIX}machine-admin/$1" '{"eligible":true,"drain":false}' >/dev/null
  fi
}
check "(g) berth machine drain m3" drain m3 drain
check "(g) m3's allocations move to m1/m2: nothing left on m3, ct-drain 3 and ct-spread 6 running" \
  wait_for 60 ct_ok "not [a for a in A if a['_machine'] == 'm3'] and len(allocs('ct-drain')) == 3 and len(running('ct-drain')) == 3 and len(allocs('ct-spread')) == 6 and len(running('ct-spread')) == 6"
check "(g) and their processes: exactly 3 + 6" \
  wait_for 60 ct_ok "len(procs('ct-drain')) == 3 and len(procs('ct-spread')) == 6"
ct_job cluster-pin.yml "$T/pin.yml" MACHINE=m3
submit "$T/pin.yml"
check "(g) a job pinned to m3 stays unplaced while m3 drains (the deployment says why)" \
  wait_for 60 ct_ok "not allocs('ct-pin') and D.get('ct-pin', {}).get('groups', {}).get('g', {}).get('unplaced') == 1"
echo "    explanation: $(ct_q "D.get('ct-pin', {}).get('groups', {}).get('g', {}).get('explanation')")"
check "(g) berth machine eligible m3" drain m3 eligible
check "(g) once eligible, the pinned job runs on m3" \
  wait_for 60 ct_ok "where('ct-pin') == {'m3': 1} and len(procs('ct-pin')) == 1"
check "(g) stopping ct-pin and ct-drain" stop_jobs ct-pin ct-drain

# ---------------------------------------------------------------------------------------------
section "(h) a system job, and a machine joining later"
ct_job cluster-system.yml "$T/system.yml"
submit "$T/system.yml"
check "(h) ct-system: one instance on each of m1, m2, m3" \
  wait_for 60 ct_ok "where('ct-system') == {'m1': 1, 'm2': 1, 'm3': 1} and len(allocs('ct-system')) == 3"
need "(h) a fourth machine m4 (rack r3) joins" ct_start_agent 4
check "(h) m4 gets one instance of ct-system too (4 in all, 4 processes)" \
  wait_for 60 ct_ok "where('ct-system') == {'m1': 1, 'm2': 1, 'm3': 1, 'm4': 1} and len(allocs('ct-system')) == 4 and len(procs('ct-system')) == 4"
check "(h) ct-spread did not move" exact ct-spread 6
check "(h) stopping ct-system" stop_job ct-system
ct_kill_agent 4 TERM
check "(h) m4 leaves (SIGTERM): its machine record goes" wait_for 60 ct_ok "'m4' not in M"

# ---------------------------------------------------------------------------------------------
section "(i) rolling updates"
roll() { # V CHECK DEADLINE
  ct_job cluster-roll.yml "$T/roll.yml" V="$1" CHECK="$2" DEADLINE="$3" && submit "$T/roll.yml"
}
deployed() { # VERSION: the deployment of VERSION succeeded and 3 healthy instances run it
  ct_ok "D.get('ct-roll', {}).get('version') == $1 and D['ct-roll']['state'] == 'successful' and len(allocs('ct-roll')) == 3 and len(running('ct-roll', $1, True)) == 3"
}
check "(i) ct-roll version 1 (3 web servers, http check) submitted" roll 1 http 2m
check "(i) version 1 deployed: 3 running and healthy, deployment successful" wait_for 90 deployed 1
check "(i) version 2 (a new env value) submitted" roll 2 http 2m
check "(i) version 2 rolls out: all 3 instances on version 2, healthy, deployment successful" \
  wait_for 120 deployed 2
check "(i) exactly 3 processes, all with the new env (CT_V=2)" \
  wait_for 60 ct_ok "len(procs('ct-roll')) == 3 and len(procs_env('CT_V=2')) == 3"
check "(i) version 3 (health check on a port nothing listens on, healthy_deadline 5s) submitted" \
  roll 3 probe 5s
check "(i) version 3 fails and auto_revert submits version 4" \
  wait_for 120 ct_ok "J['ct-roll']['version'] >= 4"
out=$(ct_berth job history ct-roll --json)
check "(i) version 4 is version 2's spec again" "$CT_PYTHON" -c '
import json, sys
vs = {v["version"]: v for v in json.loads(sys.argv[1])}
def spec(n):
    s = dict(vs[n]["spec"]); s.pop("version", None); return s
assert sorted(vs) == [1, 2, 3, 4], sorted(vs)
assert spec(4) == spec(2)
assert spec(3) != spec(2)' "$out"
check "(i) the deployment of version 4 says it reverted version 3" \
  wait_for 30 ct_ok "D['ct-roll']['version'] == 4 and D['ct-roll']['reverted_from'] == 3"
check "(i) version 4 deployed: 3 healthy instances, none left on version 3" \
  wait_for 120 ct_ok "D['ct-roll']['version'] == 4 and D['ct-roll']['state'] == 'successful' and len(allocs('ct-roll')) == 3 and len(running('ct-roll', None, True)) == 3 and not [a for a in allocs('ct-roll') if a['job_version'] == 3]"
check "(i) exactly 3 processes, none of version 3" \
  wait_for 60 ct_ok "len(procs('ct-roll')) == 3 and not procs_env('CT_V=3')"
echo "    ct-roll instances by job_version: $(ct_q "sorted(a['job_version'] for a in allocs('ct-roll'))")"
check "(i) stopping ct-roll" stop_job ct-roll
check "ct-spread still runs exactly 6 at the end" exact ct-spread 6

finish
