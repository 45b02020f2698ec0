# shellcheck shell=bash
# A real berth cluster on loopback for tests and benchmarks (bash, sourced after lib.sh):
# N agent processes (machines m1, m2, ...) on a real etcd cluster, each with its own
# --machine-id, --data-dir, --api port, --meta, --port-range and --secrets-dir (in its data dir),
# under a key prefix of their own.
# Used by tests/e2e/cluster_test.sh and bench/failover.sh.
#
#   ct_init BERTH ENDPOINTS [PORT_BASE]   work dir, unique prefix and run id; writes the helper
#   ct_start_agent N                      starts machine mN (meta rack=${CT_RACK[N]}) and waits
#                                         until its API answers and its machine record is there
#                                         (= ct_launch_agent N, then ct_wait_agent N)
#   ct_kill_agent N [SIGNAL]              signals (default KILL) the agent only; waits for it
#   ct_kill_tasks N                       SIGKILLs every process task mN's agent started
#   ct_addr                               the API address of some live agent
#   ct_q EXPR / ct_ok EXPR                evaluates EXPR over one consistent snapshot of the
#                                         prefix in etcd (see CT_PY below): prints it / succeeds
#                                         if it is true
#   ct_job TEMPLATE OUT [KEY=VALUE ...]   copies tests/e2e/jobs/TEMPLATE, replacing @RUN@ and
#                                         each @KEY@
#   ct_berth ARGS...                      the CLI against a live agent, with the run's admin
#                                         token (CT_TOKEN: bootstrapped when the first agent
#                                         is up; cluster-mode agents always require a token)
#   ct_cleanup                            kills every agent and task of this run, deletes the
#                                         prefix from etcd and the work dir (call it from a trap)
#
# Every task the jobs start carries CT_RUN=<run id> in its environment (the job templates set
# it), so the run's processes can be counted and, at the end, all killed, whatever happened.
# The helpers never export CT_RUN: agents do not carry it, only their tasks do.

CT_LIB_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# Debian's python3 directly: a version-manager shim in front of it can cost a second per call.
if [[ -z "${CT_PYTHON:-}" ]]; then
  CT_PYTHON=python3
  [[ -x /usr/bin/python3 ]] && CT_PYTHON=/usr/bin/python3
fi
CT_MACHINE_TTL=${CT_MACHINE_TTL:-3}
CT_ENGINE_TTL=${CT_ENGINE_TTL:-3}
CT_AGENT_ARGS=()
CT_TOKEN=""
declare -a CT_PID CT_ADDR CT_RACK
CT_RACK=([1]=r1 [2]=r2 [3]=r1 [4]=r3 [5]=r3)

ct_init() {
  BERTH=$1
  CT_ENDPOINTS=$2
  CT_PORT_BASE=${3:-29000}
  CT_TMP=$(mktemp -d /tmp/berth-cluster-XXXXXX)
  CT_RUN=$(basename "$CT_TMP" | cut -d- -f3 | tr '[:upper:]' '[:lower:]')
  CT_PREFIX="/berth-ct-$$-$CT_RUN/"
  printf '%s' "$CT_PY" >"$CT_TMP/ct.py"
}

# Runs the helper with this run's settings (in its environment only).
ct_py() {
  CT_ENDPOINTS=$CT_ENDPOINTS CT_PREFIX=$CT_PREFIX CT_RUN=$CT_RUN "$CT_PYTHON" "$CT_TMP/ct.py" "$@"
}
ct_q() { ct_py q "$1"; }
ct_ok() { ct_py ok "$1" >/dev/null 2>&1; }

ct_etcdctl() {
  ETCDCTL_API=3 etcdctl --endpoints "$CT_ENDPOINTS" --dial-timeout 3s --command-timeout 10s "$@"
}

# ct_launch_agent N starts machine mN's agent in the background; ct_wait_agent N waits until
# its API answers and its machine record (with that API address) is in the store.
ct_launch_agent() {
  local n=$1 dir=$CT_TMP/m$1
  mkdir -p "$dir"
  rm -f "$dir/api.addr"
  local lo=$((CT_PORT_BASE + n * 100))
  echo "=== $(date -u +%T.%N) start" >>"$CT_TMP/m$n.log"
  "$BERTH" agent --store "etcd://$CT_ENDPOINTS" --prefix "$CT_PREFIX" --machine-id "m$n" \
    --data-dir "$dir" --api 127.0.0.1:0 --meta "rack=${CT_RACK[$n]}" --meta "n=$n" \
    --machine-ttl "$CT_MACHINE_TTL" --engine-ttl "$CT_ENGINE_TTL" --publish-ip 127.0.0.1 \
    --port-range "$lo-$((lo + 99))" --secrets-dir "$dir/task-secrets" "${CT_AGENT_ARGS[@]}" \
    >>"$CT_TMP/m$n.log" 2>&1 &
  CT_PID[n]=$!
}

ct_wait_agent() {
  local n=$1 dir=$CT_TMP/m$1
  if ! wait_for 60 test -s "$dir/api.addr"; then
    echo "agent m$n did not start; its log ends:"
    tail -20 "$CT_TMP/m$n.log"
    return 1
  fi
  CT_ADDR[n]=$(cat "$dir/api.addr")
  wait_for 60 curl -sf "http://${CT_ADDR[n]}/v1/health" &&
    wait_for 60 ct_ok "'m$n' in M and M['m$n']['address'] == '${CT_ADDR[n]}'" &&
    ct_bootstrap "$n"
}

# The first agent up bootstraps the ACL of this run's prefix: CT_TOKEN is its admin token.
ct_bootstrap() {
  [[ -n "$CT_TOKEN" ]] && return 0
  CT_TOKEN=$(BERTH_ADDR=${CT_ADDR[$1]} BERTH_TOKEN="" "$BERTH" acl bootstrap 2>>"$CT_TMP/m$1.log")
  [[ -n "$CT_TOKEN" ]] || { echo "acl bootstrap on m$1 failed"; return 1; }
}

# curl against the API with the run's token: ct_curl ARGS... (URLs as usual).
ct_curl() { curl -H "Authorization: Bearer $CT_TOKEN" "$@"; }

ct_start_agent() { ct_launch_agent "$1" && ct_wait_agent "$1"; }

ct_kill_agent() {
  local n=$1 sig=${2:-KILL}
  [[ -n "${CT_PID[n]:-}" ]] || return 0
  echo "=== $(date -u +%T.%N) SIG$sig" >>"$CT_TMP/m$n.log"
  kill "-$sig" "${CT_PID[n]}" 2>/dev/null
  wait "${CT_PID[n]}" 2>/dev/null
  CT_PID[n]=""
  CT_ADDR[n]=""
}

ct_kill_tasks() { kill_process_tasks "$CT_TMP/m$1"; }

ct_alive() { [[ -n "${CT_PID[$1]:-}" ]] && kill -0 "${CT_PID[$1]}" 2>/dev/null; }

ct_addr() {
  local n
  for n in "${!CT_PID[@]}"; do
    if ct_alive "$n"; then
      echo "${CT_ADDR[n]}"
      return 0
    fi
  done
  return 1
}

ct_berth() { BERTH_ADDR=$(ct_addr) BERTH_TOKEN=$CT_TOKEN "$BERTH" "$@"; }

ct_job() {
  local template=$1 out=$2
  shift 2
  local args=(-e "s/@RUN@/$CT_RUN/g") kv
  for kv in "$@"; do args+=(-e "s|@${kv%%=*}@|${kv#*=}|g"); done
  sed "${args[@]}" "$CT_LIB_DIR/jobs/$template" >"$out"
}

ct_cleanup() {
  local n
  for n in "${!CT_PID[@]}"; do
    [[ -n "${CT_PID[n]:-}" ]] && kill -9 "${CT_PID[n]}" 2>/dev/null
  done
  for n in "${!CT_PID[@]}"; do
    [[ -n "${CT_PID[n]:-}" ]] && wait "${CT_PID[n]}" 2>/dev/null
  done
  for d in "$CT_TMP"/m*/; do kill_process_tasks "$d"; done
  ct_py killrun 2>/dev/null
  # The tmpfs an agent mounts over its --secrets-dir (when a task has file secrets).
  local mnt
  for mnt in $(findmnt -rn -o TARGET 2>/dev/null | grep "^$CT_TMP/"); do umount -l "$mnt"; done
  ct_etcdctl del --prefix "$CT_PREFIX" >/dev/null 2>&1 ||
    echo "could not delete $CT_PREFIX from etcd ($CT_ENDPOINTS)"
  if [[ -n "${CT_KEEP:-}" ]]; then
    echo "kept $CT_TMP"
  else
    rm -rf "$CT_TMP"
  fi
}

# Prints the agents' logs (the last lines of each), for a failure report.
ct_dump_logs() {
  local f
  for f in "$CT_TMP"/m*.log; do
    echo "----- $f (last ${1:-30} lines)"
    tail -"${1:-30}" "$f"
  done
}

# The helper: reads the whole prefix in one range request (one revision, so one consistent
# snapshot) through etcd's JSON gateway, trying each endpoint in turn, and evaluates an
# expression over it. Names available to expressions:
#   M            machines/<id> records by id          L   engine/leader record (or None)
#   A            alloc records, each with _machine (from its key) and _id
#   S            status records by alloc id           D   deployments/<job> records by job
#   J            jobs/<job> records by job            ADMIN machine-admin/<id> records
#   allocs(job)  the job's allocation records
#   running(job, version=None, healthy=False)  its allocations whose status (reported by the
#                machine they are placed on) is running (and healthy)
#   where(job)   {machine: number of running allocations}
#   state(id)    the status state of an allocation ("" if none)
#   dups()       (job, group, index) keys held by more than one allocation
#   procs(job)   pids of live task processes of this run with BERTH_JOB=job
#   procs_env(s) pids of live task processes of this run whose environment holds s
# Commands: q EXPR (print), ok EXPR (exit status), killrun (SIGKILL this run's tasks),
# sample STOPFILE OUT (duplicate sampler: see cluster_test.sh), failover ... (bench/failover.sh).
CT_PY=$(
  cat <<'PYEOF'
import base64, json, os, signal, sys, time, urllib.request

EPS = os.environ["CT_ENDPOINTS"].split(",")
PREFIX = os.environ["CT_PREFIX"]
RUN = os.environ.get("CT_RUN", "")
_good = [0]


def b64(s):
    return base64.b64encode(s.encode()).decode()


def post(path, body, timeout=2):
    last = None
    for i in range(len(EPS)):
        ep = EPS[(_good[0] + i) % len(EPS)]
        try:
            req = urllib.request.Request("http://%s%s" % (ep, path),
                                         data=json.dumps(body).encode(),
                                         headers={"Content-Type": "application/json"})
            with urllib.request.urlopen(req, timeout=timeout) as r:
                out = json.loads(r.read())
            _good[0] = (_good[0] + i) % len(EPS)
            return out
        except Exception as e:  # try the next member
            last = e
    raise RuntimeError("no etcd endpoint answered: %s" % last)


class State:
    def __init__(self):
        end = PREFIX[:-1] + chr(ord(PREFIX[-1]) + 1)
        out = post("/v3/kv/range", {"key": b64(PREFIX), "range_end": b64(end)})
        self.rev = int(out["header"]["revision"])
        kv = {}
        for x in out.get("kvs", []):
            k = base64.b64decode(x["key"]).decode()[len(PREFIX):]
            v = base64.b64decode(x.get("value", "")).decode()
            try:
                v = json.loads(v)
            except ValueError:
                pass
            kv[k] = v
        self.kv = kv

        def sub(p):
            return {k[len(p):]: v for k, v in kv.items() if k.startswith(p)}
        self.M = sub("machines/")
        self.S = sub("status/")
        self.D = sub("deployments/")
        self.J = sub("jobs/")
        self.ADMIN = sub("machine-admin/")
        self.L = kv.get("engine/leader")
        self.A = []
        for k, v in sub("allocs/").items():
            if isinstance(v, dict) and "/" in k:
                a = dict(v)
                a["_machine"], a["_id"] = k.split("/", 1)
                self.A.append(a)
        self.A.sort(key=lambda a: (a.get("job", ""), a.get("group", ""), a.get("index", 0)))

    def allocs(self, job):
        return [a for a in self.A if a.get("job") == job]

    def state(self, aid):
        s = self.S.get(aid)
        return s.get("state", "") if isinstance(s, dict) else ""

    def running(self, job, version=None, healthy=False):
        out = []
        for a in self.allocs(job):
            s = self.S.get(a["_id"])
            if not isinstance(s, dict) or s.get("state") != "running":
                continue
            if s.get("machine", a["_machine"]) != a["_machine"]:
                continue
            if version is not None and a.get("job_version") != version:
                continue
            if healthy and s.get("health") != "healthy":
                continue
            out.append(a)
        return out

    def where(self, job):
        w = {}
        for a in self.running(job):
            w[a["_machine"]] = w.get(a["_machine"], 0) + 1
        return w

    def dups(self):
        seen = {}
        for a in self.A:
            seen.setdefault((a.get("job"), a.get("group"), a.get("index")), []).append(
                a["_machine"] + "/" + a["_id"])
        return {"%s/%s/%s" % k: v for k, v in seen.items() if len(v) > 1}


def task_pids(*needles):
    """Live processes of this run (CT_RUN=<run> and BERTH_ALLOC_ID set) holding every needle."""
    want = [b"CT_RUN=" + RUN.encode(), b"BERTH_ALLOC_ID="] + [n.encode() for n in needles]
    out = []
    for d in os.listdir("/proc"):
        if not d.isdigit() or int(d) == os.getpid():
            continue
        try:
            with open("/proc/%s/stat" % d, "rb") as f:
                if f.read().rsplit(b")", 1)[1].split()[0] == b"Z":
                    continue
            with open("/proc/%s/environ" % d, "rb") as f:
                env = f.read().split(b"\0")
        except OSError:
            continue
        if all(any(e == n or (n.endswith(b"=") and e.startswith(n)) for e in env) for n in want):
            out.append(int(d))
    return sorted(out)


def namespace(st):
    return {
        "M": st.M, "S": st.S, "D": st.D, "J": st.J, "L": st.L, "A": st.A, "ADMIN": st.ADMIN,
        "REV": st.rev, "allocs": st.allocs, "running": st.running, "where": st.where,
        "state": st.state, "dups": st.dups,
        "procs": lambda job: task_pids("BERTH_JOB=" + job),
        "procs_env": lambda s: task_pids(s),
        "json": json, "sorted": sorted, "len": len, "set": set,
    }


def show(v):
    return v if isinstance(v, str) else json.dumps(v, sort_keys=True)


def cmd_q(expr):
    print(show(eval(expr, namespace(State()))))


def cmd_ok(expr):
    try:
        v = eval(expr, namespace(State()))
    except Exception as e:
        print("error: %s" % e)
        return 1
    return 0 if v else 1


def cmd_killrun():
    for pid in task_pids():
        for target in (-pid, pid):
            try:
                os.kill(target, signal.SIGKILL)
            except OSError:
                pass


def cmd_sample(stopfile, outfile):
    """Until STOPFILE exists: snapshot every ~50 ms and record any (job, group, index) held by
    two allocations, and the leaders seen. Writes a JSON summary to OUT."""
    n = errors = 0
    violations, leaders = [], []
    while not os.path.exists(stopfile):
        try:
            st = State()
        except Exception:
            errors += 1
            time.sleep(0.05)
            continue
        n += 1
        if n == 1:
            open(outfile + ".started", "w").close()
        d = st.dups()
        if d:
            violations.append({"rev": st.rev, "dups": d})
        m = (st.L or {}).get("machine") if isinstance(st.L, dict) else None
        if not leaders or leaders[-1] != m:
            leaders.append(m)
        time.sleep(0.05)
    with open(outfile, "w") as f:
        json.dump({"samples": n, "errors": errors, "violations": violations[:20],
                   "violating_samples": len(violations), "leaders": leaders}, f)


def kill_tasks_of(data_dir):
    d = os.path.join(data_dir, "process")
    try:
        names = os.listdir(d)
    except OSError:
        return
    for name in names:
        pid = name.split("_", 1)[0]
        if name.endswith(".json") and pid.isdigit():
            for target in (-int(pid), int(pid)):
                try:
                    os.kill(target, signal.SIGKILL)
                except OSError:
                    pass


def cmd_failover(machine, agent_pid, data_dir, job, count, limit):
    """SIGKILLs an agent and its tasks (a machine's death), then polls (~50 ms) until the job has
    exactly COUNT allocations, none on MACHINE, all running on the machine they are placed on
    (and, if MACHINE led the engine, another machine leads). Prints JSON: seconds from the kill
    to the first snapshot where that held (running_s), and to the first where the dead
    machine's record was gone (machine_gone_s), its allocations were off it (moved_s), all
    replacements were placed (placed_s), and another machine led (leader_s)."""
    count, limit = int(count), float(limit)
    before = State()
    victims = [a["_id"] for a in before.allocs(job) if a["_machine"] == machine]
    was_leader = isinstance(before.L, dict) and before.L.get("machine") == machine
    t0 = time.monotonic()
    os.kill(int(agent_pid), signal.SIGKILL)
    kill_tasks_of(data_dir)
    marks = {"victims": len(victims), "was_leader": was_leader}
    snapshots = errors = 0
    while time.monotonic() - t0 < limit:
        try:
            st = State()
        except Exception:
            errors += 1
            time.sleep(0.05)
            continue
        snapshots += 1
        t = time.monotonic() - t0
        if machine not in st.M:
            marks.setdefault("machine_gone_s", t)
        leader = st.L.get("machine") if isinstance(st.L, dict) else None
        if was_leader and leader and leader != machine:
            marks.setdefault("leader_s", t)
            marks["leader"] = leader
        mine = [a for a in st.allocs(job) if a["_machine"] == machine]
        if not mine:
            marks.setdefault("moved_s", t)
            if len(st.allocs(job)) == count:
                marks.setdefault("placed_s", t)
        if (not mine and len(st.allocs(job)) == count and len(st.running(job)) == count and
                (not was_leader or "leader_s" in marks)):
            marks["running_s"] = t
            break
        time.sleep(0.05)
    marks.update({"snapshots": snapshots, "errors": errors})
    print(json.dumps(marks, sort_keys=True))
    return 0 if "running_s" in marks else 1


if __name__ == "__main__":
    cmd, args = sys.argv[1], sys.argv[2:]
    if cmd == "q":
        cmd_q(args[0])
    elif cmd == "ok":
        sys.exit(cmd_ok(args[0]))
    elif cmd == "killrun":
        cmd_killrun()
    elif cmd == "sample":
        cmd_sample(*args)
    elif cmd == "failover":
        sys.exit(cmd_failover(*args))
    else:
        sys.exit("unknown command " + cmd)
PYEOF
)
