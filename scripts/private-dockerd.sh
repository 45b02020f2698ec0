#!/usr/bin/env bash
# A private Docker Engine for tests that stop and start "the engine" without disturbing the
# machine's own dockerd (or other tests using it).
#
#   private-dockerd.sh start DIR   start dockerd with everything under DIR: socket DIR/docker.sock,
#                                  --data-root DIR/data, --exec-root DIR/exec, pidfile DIR/dockerd.pid
#                                  (ours: DIR/started.pid), log DIR/dockerd.log, its own containerd
#                                  (under DIR/exec), its own network namespace, no bridge, no
#                                  iptables, empty config file; then wait until /_ping answers.
#                                  An engine of ours that already answers is left alone.
#   private-dockerd.sh stop DIR    SIGTERM our dockerd and wait for it (SIGKILL after 60 s), then
#                                  end its containerd if it outlived it, and unmount what is left
#                                  under DIR, so that `rm -rf DIR` works. Touches only the
#                                  processes whose pids it recorded under DIR.
#   private-dockerd.sh status DIR  exit 0 if our engine answers.
#
# Clients use DOCKER_HOST=unix://DIR/docker.sock. Containers there have no network but loopback
# (--bridge=none, in a network namespace of the engine's own), so they cannot publish ports.
# Keep DIR short: Unix socket paths (DIR/docker.sock, DIR/exec/containerd/containerd.sock) are
# limited to 107 bytes. Needs root, as dockerd does.
set -euo pipefail

CMD=${1:-}
DIR=${2:-}
if [[ -z $CMD || -z $DIR ]]; then
  echo "usage: $0 start|stop|status DIR" >&2
  exit 2
fi
mkdir -p "$DIR"
DIR=$(cd "$DIR" && pwd)
SOCK=$DIR/docker.sock
PIDFILE=$DIR/dockerd.pid     # written by dockerd itself
OURPID=$DIR/started.pid      # the pid this script started (dockerd refuses an existing pidfile)
CTRD_PIDFILE=$DIR/exec/containerd/containerd.pid
if ((${#DIR} + 40 > 107)); then
  echo "DIR $DIR is too long for the engine's Unix sockets; use a shorter one" >&2
  exit 2
fi

ping_engine() {
  [[ "$(curl -s --max-time 5 --unix-socket "$SOCK" http://docker/_ping 2>/dev/null)" == OK ]]
}

# Prints the pid in file $1 if that process is alive, is a $2, and mentions DIR on its command
# line (so a recycled pid is never taken for ours).
pid_of() {
  local pid
  [[ -f $1 ]] || return 0
  pid=$(tr -dc '0-9' <"$1" 2>/dev/null || true)
  [[ -n $pid ]] || return 0
  [[ "$(cat /proc/"$pid"/comm 2>/dev/null)" == "$2" ]] || return 0
  tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "$DIR/" || return 0
  echo "$pid"
}

wait_gone() { # PID SECONDS
  local i
  for ((i = 0; i < $2 * 10; i++)); do
    kill -0 "$1" 2>/dev/null || return 0
    sleep 0.1
  done
  return 1
}

case $CMD in
  start)
    if [[ -n "$(pid_of "$OURPID" dockerd)" ]] && ping_engine; then
      echo "private dockerd at unix://$SOCK answers"
      exit 0
    fi
    command -v dockerd >/dev/null || {
      echo "dockerd not found: install docker.io (scripts/install-deps.sh)" >&2
      exit 1
    }
    mkdir -p "$DIR/data" "$DIR/exec"
    # An empty config file: /etc/docker/daemon.json (hosts, bridge, ...) must not leak in.
    echo '{}' >"$DIR/daemon.json"
    if [[ -n "$(pid_of "$OURPID" dockerd)" ]]; then
      echo "private dockerd $(cat "$OURPID") runs but does not answer; stop it first" >&2
      exit 1
    fi
    rm -f "$SOCK" "$PIDFILE"
    # setsid: the engine outlives this shell and a test runner's process group.
    # unshare --net: its own network namespace. dockerd with --bridge=none deletes the interface
    # docker0 at start, which in the host's namespace would break the machine's own engine.
    setsid unshare --net dockerd \
      --config-file "$DIR/daemon.json" \
      -H "unix://$SOCK" \
      --data-root "$DIR/data" \
      --exec-root "$DIR/exec" \
      --pidfile "$PIDFILE" \
      --bridge=none \
      --iptables=false \
      --ip6tables=false \
      --ip-masq=false \
      --ip-forward=false \
      --shutdown-timeout 5 \
      >>"$DIR/dockerd.log" 2>&1 </dev/null &
    pid=$!
    echo "$pid" >"$OURPID"
    for _ in $(seq 600); do
      if ping_engine; then
        echo "private dockerd started: unix://$SOCK (pid $pid, log $DIR/dockerd.log)"
        exit 0
      fi
      if ! kill -0 "$pid" 2>/dev/null; then
        echo "private dockerd exited; its log:" >&2
        tail -n 30 "$DIR/dockerd.log" >&2 || true
        exit 1
      fi
      sleep 0.1
    done
    echo "private dockerd did not answer on $SOCK within 60s; log: $DIR/dockerd.log" >&2
    exit 1
    ;;
  stop)
    pid=$(pid_of "$OURPID" dockerd)
    ctrd=$(pid_of "$CTRD_PIDFILE" containerd)
    if [[ -n $pid ]]; then
      kill -TERM "$pid"
      if ! wait_gone "$pid" 60; then
        echo "private dockerd $pid did not exit within 60s of SIGTERM; sending SIGKILL" >&2
        kill -KILL "$pid" 2>/dev/null || true
        wait_gone "$pid" 10 || true
      fi
      echo "private dockerd $pid stopped"
    else
      echo "no private dockerd running for $DIR"
    fi
    # dockerd ends the containerd it started; one left over (dockerd killed) is ended here.
    if [[ -n $ctrd ]] && kill -0 "$ctrd" 2>/dev/null; then
      kill -TERM "$ctrd" 2>/dev/null || true
      wait_gone "$ctrd" 30 || kill -KILL "$ctrd" 2>/dev/null || true
    fi
    rm -f "$OURPID"
    # Mounts left under DIR (an engine that was killed) would make rm -rf DIR fail.
    awk -v d="$DIR/" 'index($2, d) == 1 {print $2}' /proc/self/mounts | sort -r |
      while read -r m; do umount -l "$m" 2>/dev/null || true; done
    ;;
  status)
    [[ -n "$(pid_of "$OURPID" dockerd)" ]] && ping_engine
    ;;
  *)
    echo "usage: $0 start|stop|status DIR" >&2
    exit 2
    ;;
esac
