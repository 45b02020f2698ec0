#!/usr/bin/env bash
# Makes sure a Docker Engine answers for the tests labelled "docker" (ctest -L docker).
#
#   docker-test-engine.sh start [DIR]  if the engine's socket does not answer /_ping, start
#                                      dockerd in the background (pid and log in DIR), then wait
#                                      until /_ping answers. Idempotent: an engine that already
#                                      answers (ours or the machine's) is left alone.
#   docker-test-engine.sh stop [DIR]   stop the dockerd this script started (its pid in DIR),
#                                      and nothing else.
# DIR defaults to .testrun/docker. The socket is DOCKER_HOST's (unix:// only), else
# /var/run/docker.sock. Installs nothing: scripts/install-deps.sh provides docker.io and
# busybox-static (the tests build their image from /bin/busybox). Needs root, as dockerd does.
set -euo pipefail
cd "$(dirname "$0")/.."

CMD=${1:-}
DIR=${2:-.testrun/docker}
HOST=${DOCKER_HOST:-unix:///var/run/docker.sock}
if [[ $HOST != unix://* ]]; then
  echo "DOCKER_HOST=$HOST: only unix:// sockets are supported" >&2
  exit 2
fi
SOCK=${HOST#unix://}
PIDFILE=$DIR/dockerd.pid

ping_engine() {
  if command -v curl >/dev/null; then
    [[ "$(curl -s --max-time 5 --unix-socket "$SOCK" http://docker/_ping 2>/dev/null)" == OK ]]
  else
    docker -H "$HOST" version >/dev/null 2>&1
  fi
}

# The pid recorded in $PIDFILE if that process is still a dockerd; empty otherwise.
our_pid() {
  local pid
  [[ -f $PIDFILE ]] || return 0
  pid=$(cat "$PIDFILE" 2>/dev/null || true)
  if [[ -n $pid ]] && [[ "$(cat /proc/"$pid"/comm 2>/dev/null)" == dockerd ]]; then
    echo "$pid"
  fi
}

case $CMD in
  start)
    if ping_engine; then
      echo "docker engine at $HOST answers"
      exit 0
    fi
    mkdir -p "$DIR"
    if [[ -z "$(our_pid)" ]]; then
      command -v dockerd >/dev/null || {
        echo "dockerd not found: install docker.io (scripts/install-deps.sh)" >&2
        exit 1
      }
      # setsid: the engine outlives this shell (and a test runner's process group).
      setsid dockerd -H "$HOST" >"$DIR/dockerd.log" 2>&1 </dev/null &
      echo $! >"$PIDFILE"
    fi
    for _ in $(seq 600); do
      if ping_engine; then
        echo "docker engine at $HOST started (pid $(cat "$PIDFILE"), log $DIR/dockerd.log)"
        exit 0
      fi
      if [[ -z "$(our_pid)" ]]; then
        echo "dockerd exited; its log:" >&2
        tail -n 30 "$DIR/dockerd.log" >&2 || true
        exit 1
      fi
      sleep 0.1
    done
    echo "dockerd did not answer on $SOCK within 60s; log: $DIR/dockerd.log" >&2
    exit 1
    ;;
  stop)
    pid=$(our_pid)
    if [[ -z $pid ]]; then
      echo "no dockerd started by this script"
      rm -f "$PIDFILE"
      exit 0
    fi
    kill -TERM "$pid"
    for _ in $(seq 300); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    if kill -0 "$pid" 2>/dev/null; then
      echo "dockerd $pid did not exit after SIGTERM within 30s; sending SIGKILL" >&2
      kill -KILL "$pid" 2>/dev/null || true
    fi
    rm -f "$PIDFILE"
    echo "dockerd $pid stopped"
    ;;
  *)
    echo "usage: $0 start [DIR] | stop [DIR]" >&2
    exit 2
    ;;
esac
