#!/usr/bin/env bash
# End-to-end: task secrets through a real agent on etcd, the real `berth secret` CLI and a real
# Docker Engine.
#   1. an operator key (keygen, recipients add --writer); the agent registered machine:<id>
#   2. `berth secret set` a file secret and an env secret; a docker job that lists both runs:
#      the container reads /run/secrets/db_password (0400, read-only mount, BERTH_SECRETS_DIR),
#      the host copy is on a tmpfs the agent mounted over its --secrets-dir (0700 dirs, 0400 file)
#   3. the values are nowhere else: not in `docker inspect` (file target; the env target is, as
#      documented), not in an etcd dump of the prefix (plain or base64), not in the API's job and
#      allocation answers, `berth job status`, `berth alloc status` (which show the references),
#      nor in the agent's log
#   4. a missing secret: the task does not start, its status names the path and why; `berth
#      secret set` then starts it without a restart of anything
#   5. a secret not sealed to the machine: the status says so; after an agent restart (which
#      re-registers the machine and re-adopts the running container, secret files intact) and
#      `berth secret rotate`, the task starts
#   6. stopping the jobs removes their containers and their secret files
# Usage: secrets_docker_test.sh BERTH_BINARY. Needs root, a Docker Engine at $DOCKER_HOST or
# /var/run/docker.sock (scripts/docker-test-engine.sh start), etcd at $BERTH_TEST_ETCD
# (scripts/test.sh), etcdctl, busybox-static, python3. Bounds are generous wait_for limits,
# never timing requirements. Everything made here (containers labelled berth.machine=sectest-*,
# the agent, the tmpfs, the etcd prefix) is removed at exit.
# shellcheck source-path=SCRIPTDIR
set -uo pipefail
BERTH=$(realpath "$1")
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
# shellcheck source=lib.sh
. "$HERE/lib.sh"
# shellcheck source=agent_docker_lib.sh
. "$HERE/agent_docker_lib.sh"

HOST=${DOCKER_HOST:-unix:///var/run/docker.sock}
TMP=$(mktemp -d /tmp/bsec-XXXXXX)
RUN=$$-$RANDOM
# Not itest-*: agent_docker_test.sh removes those containers, and ctest may run both at once.
MACHINE=sectest-$RUN
PREFIX=/berth-e2e-secrets-$RUN/
SECRETS_DIR=$TMP/secrets # on /tmp's disk: the agent (root) mounts a tmpfs over it
export BERTH_SECRET_KEY=$TMP/ops.key
export BERTH_TOKEN=""
AUTH=()
etcdctl_() { ETCDCTL_API=3 etcdctl --endpoints "$BERTH_TEST_ETCD" "$@"; }

# Every container of this run's agent (and nothing of anyone else's).
remove_run_containers() {
  local ids
  ids=$(dk "$HOST" ps -aq --filter "label=berth.machine=$MACHINE" 2>/dev/null)
  # shellcheck disable=SC2086
  [[ -z $ids ]] || dk "$HOST" rm -f -v $ids >/dev/null 2>&1
  return 0
}

cleanup() {
  local pid
  for pid in "${AGENT_PIDS[@]}"; do
    kill -0 "$pid" 2>/dev/null && stop_pid TERM "$pid"
  done
  if ((FAILED > 0)); then
    for log in "$TMP"/*.log; do
      [[ -f $log ]] || continue
      echo "--- last lines of $(basename "$log")"
      tail -n 40 "$log"
    done
  fi
  remove_run_containers
  [[ -n "${BERTH_TEST_ETCD:-}" ]] && etcdctl_ del --prefix "$PREFIX" >/dev/null 2>&1
  if mountpoint -q "$SECRETS_DIR" 2>/dev/null; then umount -l "$SECRETS_DIR"; fi
  rm -rf "$TMP"
}
trap cleanup EXIT

# --- preconditions ------------------------------------------------------------------------
if [[ -z "${BERTH_TEST_ETCD:-}" ]]; then
  echo "BERTH_TEST_ETCD is not set: run through scripts/test.sh (it starts etcd)"
  exit 1
fi
if ! engine_answers "$HOST"; then
  fail "docker engine answers at $HOST (scripts/docker-test-engine.sh start)"
  finish
  exit 1
fi
if ! "$BERTH" secret --help >/dev/null 2>&1; then
  echo "skipped: this berth has no \`berth secret\` commands yet"
  exit 77 # ctest: SKIP_RETURN_CODE
fi
check "test image berth/busybox:latest on $HOST" ensure_image "$HOST"

A_ARGS=(--store "etcd://$BERTH_TEST_ETCD" --prefix "$PREFIX" --machine-id "$MACHINE"
  --publish-ip 127.0.0.1 --docker-host "$HOST" --secrets-dir "$SECRETS_DIR" --machine-ttl 3)
check "agent starts (machine $MACHINE, on etcd)" start_agent main "${A_ARGS[@]}"
export BERTH_ADDR=${ADDR[main]:-}
BERTH_TOKEN=$("$BERTH" acl bootstrap 2>"$TMP/bootstrap.err")
check "acl bootstrap gives an admin token" test -n "$BERTH_TOKEN"
AUTH=(-H "Authorization: Bearer $BERTH_TOKEN")
b() { "$BERTH" "$@"; }
api() { curl -sf "${AUTH[@]}" "http://$BERTH_ADDR$1"; }

# --- 1. keys ------------------------------------------------------------------------------------
check "keygen writes the operator key 0600 and its .pub" \
  bash -c "'$BERTH' secret keygen --out '$BERTH_SECRET_KEY' >/dev/null &&
           [[ \$(stat -c %a '$BERTH_SECRET_KEY') == 600 && -s '$BERTH_SECRET_KEY.pub' ]]"
check "the operator is a recipient and a writer" \
  b secret recipients add ops "$BERTH_SECRET_KEY.pub" --writer
recipients=$(b secret recipients ls --json 2>&1)
check "the agent registered itself as recipient machine:$MACHINE" \
  contains "$recipients" "\"machine:$MACHINE\""

# --- 2. a container receives its secrets ---------------------------------------------------------
PASSWORD="pw-$RUN-$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')"
API_KEY="key-$RUN-$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')"
printf '%s' "$PASSWORD" | b secret set db/password - >"$TMP/set.out" 2>&1
check "secret set db/password (from stdin)" grep -q "sealed db/password" "$TMP/set.out"
printf '%s' "$API_KEY" >"$TMP/api.key"
check "secret set api/key (from a file)" b secret set api/key "$TMP/api.key"
rm -f "$TMP/api.key"
check "secret get gives the value back to the operator" \
  test "$(b secret get db/password)" == "$PASSWORD"

job_file() { # NAME PATH [extra secret lines]
  cat >"$TMP/$1.yml" <<EOF
name: $1
groups:
  - name: g
    restart: {delay: 200ms, max_delay: 2s}
    tasks:
      - name: app
        driver: docker
        image: berth/busybox:latest
        command: /bin/busybox
        args: ["sleep", "3600"]
        resources: {memory: 32MiB}
        kill_timeout: 1s
        secrets:
          - {path: $2, file: db_password}
${3:-}
EOF
}
J=sectest-app-$RUN
job_file "$J" db/password "          - {path: api/key, env: API_KEY}"
check "job $J submitted" b job run "$TMP/$J.yml"

alloc_of() { b alloc ls --job "$1" --json 2>/dev/null | python3 -c 'import json,sys
a=json.load(sys.stdin); print(a[0]["id"] if a else "")'; }
alloc_state() { b alloc status "$1" --json 2>/dev/null | python3 -c 'import json,sys
print(json.load(sys.stdin).get("state",""))'; }
alloc_message() { b alloc status "$1" --json 2>/dev/null | python3 -c 'import json,sys
print(json.load(sys.stdin).get("message",""))'; }
running() { [[ "$(alloc_state "$(alloc_of "$1")")" == running ]]; }
check "job $J runs" wait_for 120 running "$J"
AL=$(alloc_of "$J")
CID=$(ctr_ids "$HOST" "$J" | head -1)
check "one container for $J" test -n "$CID"
check "the container reads the file secret at /run/secrets/db_password" \
  test "$(dk "$HOST" exec "$CID" /bin/busybox cat /run/secrets/db_password)" == "$PASSWORD"
check "the container's file is 0400 (-r--------)" \
  test "$(dk "$HOST" exec "$CID" sh -c 'ls -l /run/secrets/db_password | cut -c1-10')" == "-r--------"
check "BERTH_SECRETS_DIR is /run/secrets in the container" \
  test "$(dk "$HOST" exec "$CID" sh -c 'echo $BERTH_SECRETS_DIR')" == /run/secrets
check "the env secret reaches the container" \
  test "$(dk "$HOST" exec "$CID" sh -c 'echo $API_KEY')" == "$API_KEY"
check "the container cannot write to /run/secrets" \
  bash -c "! docker -H '$HOST' exec '$CID' sh -c 'echo x > /run/secrets/db_password' 2>/dev/null"
HOST_FILE=$SECRETS_DIR/$AL/app/db_password
check "the host copy is on tmpfs ($HOST_FILE)" test "$(stat -f -c %T "$SECRETS_DIR/$AL/app")" == tmpfs
check "the host copy is 0400 in 0700 directories" \
  test "$(stat -c %a "$HOST_FILE") $(stat -c %a "$SECRETS_DIR/$AL/app") $(stat -c %a "$SECRETS_DIR/$AL")" == "400 700 700"

# --- 3. ... and nowhere else --------------------------------------------------------------------
b64() { printf '%s' "$1" | base64 -w0; }
nowhere() { # WHAT TEXT VALUE...: none of the values (nor their base64) is in TEXT
  local what=$1 text=$2 v ok=1
  shift 2
  for v in "$@"; do
    if contains "$text" "$v" || contains "$text" "$(b64 "$v")"; then ok=0; fi
  done
  if ((ok)); then ok "$what"; else fail "$what"; fi
}
inspect=$(dk "$HOST" inspect "$CID")
nowhere "docker inspect does not show the file secret" "$inspect" "$PASSWORD"
check "docker inspect shows the env secret (the documented caveat of env targets)" \
  contains "$inspect" "API_KEY=$API_KEY"
check "docker inspect shows the read-only bind of the task's secrets dir" \
  contains "$(dk "$HOST" inspect -f '{{range .Mounts}}{{.Source}}>{{.Destination}}:{{.RW}} {{end}}' "$CID")" \
  "$SECRETS_DIR/$AL/app>/run/secrets:false"
dump=$(etcdctl_ get --prefix "$PREFIX")
check "the etcd dump holds the sealed values" contains "$dump" "${PREFIX}secrets/db/password"
nowhere "the etcd dump holds neither value, plain or base64" "$dump" "$PASSWORD" "$API_KEY"
nowhere "GET /v1/jobs/$J, /v1/allocs and /v1/allocs/ID hold neither value" \
  "$(api "/v1/jobs/$J"; api /v1/allocs; api "/v1/allocs/$AL")" "$PASSWORD" "$API_KEY"
jstatus=$(b job status "$J" 2>&1)
astatus=$(b alloc status "$AL" 2>&1)
nowhere "berth job status / alloc status (text and --json) hold neither value" \
  "$jstatus$astatus$(b job status "$J" --json)$(b alloc status "$AL" --json)" "$PASSWORD" "$API_KEY"
check "berth job status lists the references" \
  bash -c "grep -q 'g/app *db/password *file /run/secrets/db_password (0400)' <<<'$jstatus' &&
           grep -q 'g/app *api/key *env API_KEY' <<<'$jstatus'"
check "berth alloc status lists the references" \
  grep -q "app *db/password *file /run/secrets/db_password (0400)" <<<"$astatus"

# --- 3b. a container that runs as another user ---------------------------------------------------
user_image() { # berth/busybox-user:latest: the busybox image with USER 1000:1000
  local rootfs
  dk "$HOST" image inspect berth/busybox-user:latest >/dev/null 2>&1 && return 0
  rootfs=$(mktemp -d "$TMP/rootfs-XXXXXX")
  mkdir -p "$rootfs/bin"
  cp /bin/busybox "$rootfs/bin/busybox"
  ln -s busybox "$rootfs/bin/sh"
  tar -C "$rootfs" -c . | dk "$HOST" import --change 'USER 1000:1000' - berth/busybox-user:latest >/dev/null
  rm -rf "$rootfs"
}
check "test image berth/busybox-user:latest (USER 1000:1000)" user_image
U=sectest-user-$RUN
cat >"$TMP/$U.yml" <<EOF
name: $U
groups:
  - name: g
    tasks:
      - name: app
        driver: docker
        image: berth/busybox-user:latest
        command: /bin/busybox
        args: ["sleep", "3600"]
        resources: {memory: 32MiB}
        kill_timeout: 1s
        secrets:
          - {path: db/password, file: db_password, uid: 1000, gid: 1000}
          - {path: api/key, file: not_mine}
EOF
check "job $U submitted" b job run "$TMP/$U.yml"
check "job $U runs" wait_for 120 running "$U"
UCID=$(ctr_ids "$HOST" "$U" | head -1)
check "its container runs as uid 1000" test "$(dk "$HOST" exec "$UCID" /bin/busybox id -u)" == 1000
check "uid 1000 reads the secret given to it (uid: 1000, gid: 1000)" \
  test "$(dk "$HOST" exec "$UCID" /bin/busybox cat /run/secrets/db_password)" == "$PASSWORD"
check "... but not the one left to the agent's user" \
  bash -c "! docker -H '$HOST' exec '$UCID' /bin/busybox cat /run/secrets/not_mine >/dev/null 2>&1"
check "... nor list the directory" \
  bash -c "! docker -H '$HOST' exec '$UCID' /bin/busybox ls /run/secrets >/dev/null 2>&1"
check "berth job status shows the owner" \
  grep -q "g/app *db/password *file /run/secrets/db_password (0400, uid 1000, gid 1000)" \
  <<<"$(b job status "$U" 2>&1)"
UAL=$(alloc_of "$U")

# --- 4. a missing secret -------------------------------------------------------------------------
M=sectest-missing-$RUN
job_file "$M" "missing/$RUN"
check "job $M submitted" b job run "$TMP/$M.yml"
waiting_for() { # JOB TEXT: the allocation's message says TEXT
  contains "$(alloc_message "$(alloc_of "$1")")" "$2"
}
check "a missing secret: the status names the path and says it is not started" \
  wait_for 60 waiting_for "$M" "missing/$RUN"
MSG=$(alloc_message "$(alloc_of "$M")")
echo "     status: $MSG"
check "... and why (nothing at that path), and that it will try again" \
  bash -c "grep -qi 'no secret\|not found' <<<'$MSG' && grep -q 'not started, trying again' <<<'$MSG'"
check "no container for $M" ctr_count_is 0 "$HOST" "$M" -a
MISSING_VALUE="late-$RUN"
printf '%s' "$MISSING_VALUE" | b secret set "missing/$RUN" - >/dev/null
check "set later, the secret starts the task" wait_for 60 running "$M"
MCID=$(ctr_ids "$HOST" "$M" | head -1)
check "... with the value" test "$(dk "$HOST" exec "$MCID" /bin/busybox cat /run/secrets/db_password)" == "$MISSING_VALUE"

# --- 5. not sealed to this machine -------------------------------------------------------------
check "recipients rm machine:$MACHINE" b secret recipients rm "machine:$MACHINE"
printf '%s' "other-$RUN" | b secret set "other/$RUN" - >/dev/null
N=sectest-unsealed-$RUN
job_file "$N" "other/$RUN"
check "job $N submitted" b job run "$TMP/$N.yml"
check "a value not sealed to the machine: the status says so" \
  wait_for 60 waiting_for "$N" "not sealed to"
echo "     status: $(alloc_message "$(alloc_of "$N")")"
check "no container for $N" ctr_count_is 0 "$HOST" "$N" -a
stop_pid TERM "${AGENT_PID[main]}"
check "agent restarts (it registers machine:$MACHINE again)" start_agent main "${A_ARGS[@]}"
export BERTH_ADDR=${ADDR[main]:-}
check "the running container was re-adopted, not restarted" \
  test "$(ctr_ids "$HOST" "$J" | head -1)" == "$CID"
check "... and its secret file is still there" \
  test "$(dk "$HOST" exec "$CID" /bin/busybox cat /run/secrets/db_password)" == "$PASSWORD"
check "secret rotate seals every value to the current recipients" b secret rotate
check "after the rotation the task starts" wait_for 60 running "$N"

# --- 6. stop --------------------------------------------------------------------------------------
NAL=$(alloc_of "$N")
MAL=$(alloc_of "$M")
for job in "$J" "$M" "$N" "$U"; do b job stop "$job" >/dev/null; done
check "stopped jobs leave no containers" wait_for 60 bash -c \
  "[[ -z \"\$(docker -H '$HOST' ps -aq --filter label=berth.machine=$MACHINE)\" ]]"
check "stopped jobs leave no secret files" wait_for 60 bash -c \
  "[[ ! -e '$SECRETS_DIR/$AL' && ! -e '$SECRETS_DIR/$MAL' && ! -e '$SECRETS_DIR/$NAL' &&
     ! -e '$SECRETS_DIR/$UAL' ]]"
nowhere "the agent's log holds no value" "$(cat "$TMP"/main.log)" "$PASSWORD" "$API_KEY" \
  "$MISSING_VALUE"
finish
