#!/usr/bin/env bash
# Starts and stops the etcd servers berth's store tests run against, all on loopback:
#   (a) a single member, client 127.0.0.1:23790 (peer 23800)
#   (b) a 3-member cluster, clients 127.0.0.1:23791..23793 (peers 23801..23803)
#
#   etcd-test-cluster.sh start DIR          start both (killing leftovers of earlier runs), wait
#                                           until healthy, write DIR/env for the tests to source
#   etcd-test-cluster.sh stop DIR           kill every member (by recorded pid), remove the data
#   etcd-test-cluster.sh kill-member DIR N  SIGKILL member N (1..3) of the 3-member cluster
#   etcd-test-cluster.sh start-member DIR N start member N again on its old data (it rejoins)
# (N = 0 means the single member: killed and restarted on its old data the same way.)
# ("DIR CMD [N]" works too, which is how the tests call it through $BERTH_TEST_ETCD_CTL.)
#
# Elections are made fast (heartbeat 50 ms, election timeout 500 ms) since loopback is quick.
set -euo pipefail

ETCD=${ETCD:-/usr/bin/etcd}
HOST=127.0.0.1
SINGLE_CLIENT=23790
SINGLE_PEER=23800
CLUSTER_TOKEN=berth-test-3
INITIAL_CLUSTER="m1=http://$HOST:23801,m2=http://$HOST:23802,m3=http://$HOST:23803"

usage() {
  echo "usage: $0 start DIR | stop DIR | kill-member DIR N | start-member DIR N" >&2
  exit 2
}

# Kills the process whose pid is recorded in $1 (if it is still an etcd) and removes the file.
kill_pidfile() {
  local pidfile=$1 pid
  [[ -f $pidfile ]] || return 0
  pid=$(cat "$pidfile" 2>/dev/null || true)
  if [[ -n $pid ]] && kill -0 "$pid" 2>/dev/null &&
    [[ "$(cat /proc/"$pid"/comm 2>/dev/null)" == etcd* ]]; then
    kill -KILL "$pid" 2>/dev/null || true
    # Wait for it to be gone so its ports are free for the next start.
    for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.05; done
  fi
  rm -f "$pidfile"
}

# Waits until the member with client port $1 answers /health (up to ~30 s).
wait_healthy() {
  local port=$1
  for _ in $(seq 300); do
    if curl -fsS --max-time 1 "http://$HOST:$port/health" 2>/dev/null | grep -q '"health":"true"'; then
      return 0
    fi
    sleep 0.1
  done
  echo "etcd on $HOST:$port did not become healthy; see its log in $DIR" >&2
  return 1
}

start_single() {
  kill_pidfile "$DIR/single.pid"
  mkdir -p "$DIR/single"
  setsid "$ETCD" --name single --data-dir "$DIR/single/data" \
    --listen-client-urls "http://$HOST:$SINGLE_CLIENT" \
    --advertise-client-urls "http://$HOST:$SINGLE_CLIENT" \
    --listen-peer-urls "http://$HOST:$SINGLE_PEER" \
    --initial-advertise-peer-urls "http://$HOST:$SINGLE_PEER" \
    --initial-cluster "single=http://$HOST:$SINGLE_PEER" \
    --initial-cluster-token berth-test-1 --initial-cluster-state new \
    --heartbeat-interval=50 --election-timeout=500 \
    </dev/null >>"$DIR/single/etcd.log" 2>&1 &
  echo $! >"$DIR/single.pid"
}

start_member() {
  local n=$1
  kill_pidfile "$DIR/m$n.pid"
  mkdir -p "$DIR/m$n"
  # On old data etcd ignores the --initial-* flags and rejoins with its stored identity.
  setsid "$ETCD" --name "m$n" --data-dir "$DIR/m$n/data" \
    --listen-client-urls "http://$HOST:2379$n" \
    --advertise-client-urls "http://$HOST:2379$n" \
    --listen-peer-urls "http://$HOST:2380$n" \
    --initial-advertise-peer-urls "http://$HOST:2380$n" \
    --initial-cluster "$INITIAL_CLUSTER" \
    --initial-cluster-token "$CLUSTER_TOKEN" --initial-cluster-state new \
    --heartbeat-interval=50 --election-timeout=500 \
    </dev/null >>"$DIR/m$n/etcd.log" 2>&1 &
  echo $! >"$DIR/m$n.pid"
}

stop_all() {
  kill_pidfile "$DIR/single.pid"
  for n in 1 2 3; do kill_pidfile "$DIR/m$n.pid"; done
}

member_arg() {
  [[ ${1:-} =~ ^[0123]$ ]] || { echo "member must be 1, 2 or 3 (or 0: the single member)" >&2; exit 2; }
}

[[ $# -ge 2 ]] || usage
# Both "CMD DIR [N]" and "DIR CMD [N]" are accepted: the tests call "$BERTH_TEST_ETCD_CTL CMD N"
# with BERTH_TEST_ETCD_CTL="<this script> <DIR>".
case $1 in
  start | stop | kill-member | start-member) cmd=$1 dir=$2 ;;
  *) cmd=$2 dir=$1 ;;
esac
shift 2
mkdir -p "$dir"
DIR=$(cd "$dir" && pwd)
SELF=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/$(basename "${BASH_SOURCE[0]}")

case $cmd in
  start)
    stop_all
    rm -rf "$DIR/single" "$DIR/m1" "$DIR/m2" "$DIR/m3" "$DIR/env"
    start_single
    for n in 1 2 3; do start_member "$n"; done
    wait_healthy $SINGLE_CLIENT
    for n in 1 2 3; do wait_healthy "2379$n"; done
    cat >"$DIR/env" <<ENV
export BERTH_TEST_ETCD=$HOST:$SINGLE_CLIENT
export BERTH_TEST_ETCD_CLUSTER=$HOST:23791,$HOST:23792,$HOST:23793
export BERTH_TEST_ETCD_CTL="$SELF $DIR"
ENV
    echo "etcd test clusters running; . $DIR/env"
    ;;
  stop)
    stop_all
    rm -rf "$DIR/single" "$DIR/m1" "$DIR/m2" "$DIR/m3" "$DIR/env"
    ;;
  kill-member)
    member_arg "${1:-}"
    if [[ $1 == 0 ]]; then kill_pidfile "$DIR/single.pid"; else kill_pidfile "$DIR/m$1.pid"; fi
    ;;
  start-member)
    member_arg "${1:-}"
    if [[ $1 == 0 ]]; then
      [[ -d $DIR/single/data ]] || { echo "no single member under $DIR; run start first" >&2; exit 1; }
      start_single
      wait_healthy $SINGLE_CLIENT
      exit 0
    fi
    [[ -d $DIR/m$1/data ]] || { echo "member $1 has no data under $DIR; run start first" >&2; exit 1; }
    start_member "$1"
    wait_healthy "2379$1"
    ;;
  *) usage ;;
esac
