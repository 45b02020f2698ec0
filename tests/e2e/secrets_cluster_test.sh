#!/usr/bin/env bash
# End-to-end: a secret set by an operator reaches a running container on a real 3-agent cluster
# (the 3-member etcd test cluster, a real Docker Engine) and nowhere else.
#   1. three agents register their machine keys as recipients; an operator key is made and
#      trusted as a writer; `berth secret set` seals a value to all four
#   2. an unauthenticated client, and a token of too little power, can neither read nor change
#      the secret (nor anything else it would need: recipients, the job)
#   3. a docker job pinned nowhere runs on one machine; its container reads the value at
#      /run/secrets/password
#   4. the value is nowhere else: not in an etcd dump of the prefix (plain or base64), not in
#      `docker inspect`, not in the other machines' secrets dirs, not in any agent's log, not in
#      the API's answers
#   5. the machine running it dies (SIGKILL of its agent, its container removed): the
#      replacement on another machine opens the same value; the dead machine's secret files go
#      when it comes back
# Needs BERTH_TEST_ETCD_CLUSTER (scripts/test.sh), a Docker Engine at $DOCKER_HOST or
# /var/run/docker.sock, root, busybox-static, etcdctl, python3. Everything made here is removed
# at exit (agents, containers labelled with this run's job names, tmpfs mounts, the prefix).
# Usage: secrets_cluster_test.sh BERTH_BINARY
set -uo pipefail
BERTH=$(realpath "$1")
HERE=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=lib.sh
. "$HERE/lib.sh"
# shellcheck source=cluster_lib.sh
. "$HERE/cluster_lib.sh"
# shellcheck source=agent_docker_lib.sh
. "$HERE/agent_docker_lib.sh"

if [[ -z "${BERTH_TEST_ETCD_CLUSTER:-}" ]]; then
  echo "BERTH_TEST_ETCD_CLUSTER is not set: run through scripts/test.sh"
  exit 1
fi
HOST=${DOCKER_HOST:-unix:///var/run/docker.sock}
ct_init "$BERTH" "$BERTH_TEST_ETCD_CLUSTER" 30500
TMP=$CT_TMP
# shellcheck disable=SC2034 # read by cluster_lib.sh
CT_AGENT_ARGS=(--task-poll-ms 200 --docker-host "$HOST")
J=secct-$CT_RUN
export BERTH_SECRET_KEY=$TMP/ops.key
cleanup() {
  ((FAILED > 0)) && ct_dump_logs 40
  local ids
  ids=$(dk "$HOST" ps -aq --filter "label=berth.job=$J" 2>/dev/null)
  # shellcheck disable=SC2086
  [[ -z $ids ]] || dk "$HOST" rm -f -v $ids >/dev/null 2>&1
  ct_cleanup
}
trap cleanup EXIT

if ! engine_answers "$HOST"; then
  fail "a docker engine answers at $HOST"
  finish
  exit 1
fi
check "test image berth/busybox:latest" ensure_image "$HOST"

# --- 1. recipients and the value ------------------------------------------------------------
for n in 1 2 3; do check "agent m$n starts" ct_start_agent "$n"; done
machines_registered() {
  [[ $(ct_berth secret recipients ls --json | grep -c '"machine:m[123]"') == 3 ]]
}
check "the three machines registered their keys as recipients" wait_for 60 machines_registered
check "operator keygen" bash -c "'$BERTH' secret keygen --out '$BERTH_SECRET_KEY' --name ops >/dev/null"
check "the operator is trusted as a writer" \
  ct_berth secret recipients add ops "$BERTH_SECRET_KEY.pub" --writer
VALUE="pw-$CT_RUN-$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')"
out=$(printf '%s' "$VALUE" | ct_berth secret set app/password 2>&1)
check "secret set seals to 4 recipients (3 machines, 1 operator)" \
  contains "$out" "to 4 recipients (3 machines, 1 operators)"

# --- 2. no one uninvited -------------------------------------------------------------------
A1=${CT_ADDR[1]}
code() { curl -s -o /dev/null -w '%{http_code}' "$@"; }
check "no token: GET /v1/secrets/app/password is 401" \
  test "$(code "http://$A1/v1/secrets/app/password")" == 401
check "no token: PUT /v1/secrets/app/password is 401" \
  test "$(code -X PUT -d '{"sealed":"QUFB"}' "http://$A1/v1/secrets/app/password")" == 401
check "no token: GET /v1/secret-keys is 401" test "$(code "http://$A1/v1/secret-keys")" == 401
BERTH_ADDR=$A1 BERTH_TOKEN="" "$BERTH" secret ls >/dev/null 2>&1
check "no token: berth secret ls exits 5" test $? == 5
READ_TOKEN=$(ct_berth acl token create --name reader --policy read 2>/dev/null | grep -o '[0-9a-f]\{16\}\.[A-Za-z0-9_-]*' | head -1)
check "a read token is made" test -n "$READ_TOKEN"
check "a read token: GET /v1/secrets/app/password is 403" \
  test "$(code -H "Authorization: Bearer $READ_TOKEN" "http://$A1/v1/secrets/app/password")" == 403
check "a read token: DELETE /v1/secrets/app/password is 403" \
  test "$(code -X DELETE -H "Authorization: Bearer $READ_TOKEN" "http://$A1/v1/secrets/app/password")" == 403
check "a read token: adding a recipient is 403" \
  test "$(code -X PUT -H "Authorization: Bearer $READ_TOKEN" -d "{\"public_key\":\"$(cat "$BERTH_SECRET_KEY.pub")\"}" \
    "http://$A1/v1/secret-keys/mallory")" == 403

# --- 3. the container gets it ------------------------------------------------------------------
cat >"$TMP/$J.yml" <<EOF
name: $J
groups:
  - name: g
    restart: {delay: 200ms, max_delay: 2s}
    tasks:
      - name: app
        driver: docker
        image: berth/busybox:latest
        command: /bin/busybox
        args: ["sleep", "3600"]
        resources: {memory: 16MiB}
        kill_timeout: 1s
        secrets:
          - {path: app/password, file: password}
EOF
check "job $J submitted" ct_berth job run "$TMP/$J.yml"
placed_running() { ct_ok "len(running('$J')) == 1"; }
check "job $J runs on one machine" wait_for 120 placed_running
ON=$(ct_q "list(where('$J'))[0]")
ON_N=${ON#m}
CID=$(ctr_ids "$HOST" "$J" | head -1)
echo "     on $ON, container ${CID:0:12}"
check "the container reads the value at /run/secrets/password" \
  test "$(dk "$HOST" exec "$CID" /bin/busybox cat /run/secrets/password)" == "$VALUE"

# --- 4. ... and nowhere else -------------------------------------------------------------------
B64=$(printf '%s' "$VALUE" | base64 -w0)
absent() { # WHAT TEXT: the value (plain or base64) is not in TEXT
  if contains "$2" "$VALUE" || contains "$2" "$B64"; then fail "$1"; else ok "$1"; fi
}
dump=$(ct_etcdctl get --prefix "$CT_PREFIX")
check "the etcd dump holds the sealed value" contains "$dump" "${CT_PREFIX}secrets/app/password"
absent "the etcd dump (every key of the run) does not hold the value" "$dump"
absent "docker inspect does not show it" "$(dk "$HOST" inspect "$CID")"
api_text=$(for p in "/v1/jobs/$J" /v1/allocs /v1/secrets /v1/secrets/app/password /v1/secret-keys /v1/machines; do
  ct_curl -s "http://$A1$p"
done)
absent "the API's answers do not hold it" "$api_text"
absent "berth job status does not show it" "$(ct_berth job status "$J" 2>&1)"
for n in 1 2 3; do
  [[ $n == "$ON_N" ]] && continue
  files=$(grep -rl -- "$VALUE" "$TMP/m$n" 2>/dev/null)
  check "machine m$n (not running it) has no copy of it" test -z "$files"
done
absent "no agent's log holds it" "$(cat "$TMP"/m*.log)"

# --- 5. failover -------------------------------------------------------------------------------
check "m$ON_N dies (SIGKILL of its agent; its container removed)" ct_kill_agent "$ON_N" KILL
dk "$HOST" rm -f -v "$CID" >/dev/null 2>&1
moved() { ct_ok "len(running('$J')) == 1 and list(where('$J'))[0] != '$ON'"; }
check "the job runs again on another machine" wait_for 60 moved
NEW=$(ct_q "list(where('$J'))[0]")
CID2=$(ctr_ids "$HOST" "$J" | head -1)
check "the replacement on $NEW reads the same value" \
  test "$(dk "$HOST" exec "$CID2" /bin/busybox cat /run/secrets/password 2>/dev/null)" == "$VALUE"
check "m$ON_N comes back" ct_start_agent "$ON_N"
gone_from_dead() { [[ -z "$(grep -rl -- "$VALUE" "$TMP/m$ON_N/task-secrets" 2>/dev/null)" ]]; }
check "... and removes the secret files of the allocation it lost" wait_for 60 gone_from_dead
check "stop the job" ct_berth job stop "$J"
check "its container goes" wait_for 60 bash -c "[[ -z \"\$(docker -H '$HOST' ps -aq --filter label=berth.job=$J)\" ]]"
absent "in the end, still no agent's log holds it" "$(cat "$TMP"/m*.log)"
finish
