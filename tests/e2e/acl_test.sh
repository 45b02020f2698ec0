#!/usr/bin/env bash
# End-to-end: API access control on a cluster-mode agent (not --dev: tokens always required).
# An unauthenticated `berth` can neither read nor change anything; bootstrap works once; each
# policy does what it should and no more; revocation is immediate; the API over TLS, with and
# without client certificates; repeated failures get 429; --dev says it runs without tokens and
# --dev --acl requires them. Usage: acl_test.sh BERTH_BINARY embedded|etcd
set -uo pipefail
BERTH=$1
MODE=${2:-embedded}
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
# shellcheck source=lib.sh
. "$HERE/lib.sh"

TMP=$(mktemp -d /tmp/berth-acl-e2e-XXXXXX)
AGENT_PID=""
cleanup() {
  [[ -n "$AGENT_PID" ]] && kill -9 "$AGENT_PID" 2>/dev/null
  kill_process_tasks "$TMP/data"
  rm -rf "$TMP"
}
trap cleanup EXIT

if [[ "$MODE" == "etcd" ]]; then
  if [[ -z "${BERTH_TEST_ETCD:-}" ]]; then
    echo "BERTH_TEST_ETCD is not set: run through scripts/test.sh (it starts etcd)"
    exit 1
  fi
  STORE=(--store "etcd://$BERTH_TEST_ETCD" --prefix "/berth-acl-e2e-$$-$RANDOM/")
else
  STORE=(--store "embedded:$TMP/data")
fi
# No 429s until the rate-limiting section: the refusals below would otherwise lock this address
# out for 10 s.
BASE_ARGS=("${STORE[@]}" --data-dir "$TMP/data" --api 127.0.0.1:0 --machine-id "acl-$MODE"
  --publish-ip 127.0.0.1)
LIMIT=(--acl-max-failures 0)
unset BERTH_TOKEN BERTH_CACERT BERTH_CLIENT_CERT BERTH_CLIENT_KEY

# start_agent [ARGS...]: starts the agent, waits for its health probe (over https when
# SCHEME=https; curl then uses CURL_TLS).
SCHEME=http
CURL_TLS=()
start_agent() {
  rm -f "$TMP/data/api.addr"
  "$BERTH" agent "${BASE_ARGS[@]}" "${LIMIT[@]}" "$@" >>"$TMP/agent.log" 2>&1 &
  AGENT_PID=$!
  if ! wait_for 60 test -s "$TMP/data/api.addr"; then
    echo "agent did not start; log:"
    tail -30 "$TMP/agent.log"
    return 1
  fi
  export BERTH_ADDR
  BERTH_ADDR="$SCHEME://$(cat "$TMP/data/api.addr")"
  wait_for 60 curl -sf "${CURL_TLS[@]}" "$BERTH_ADDR/v1/health"
}
stop_agent() {
  kill -TERM "$AGENT_PID" 2>/dev/null
  wait "$AGENT_PID" 2>/dev/null
  AGENT_PID=""
}
# code METHOD PATH [CURL ARGS...]: the HTTP status of one request.
code() {
  local method=$1 path=$2
  shift 2
  curl -s -o /dev/null -w '%{http_code}' "${CURL_TLS[@]}" -X "$method" "$@" "$BERTH_ADDR$path"
}
# refused RC OUT: exit 5 and one line saying the agent refused the (missing) token.
refused() { [[ $1 -eq 5 && $(wc -l <<<"$2") -eq 1 ]] && grep -q "not authenticated" <<<"$2"; }
denied() { [[ $1 -eq 5 && $(wc -l <<<"$2") -eq 1 ]] && grep -q "permission denied" <<<"$2"; }

check "agent starts ($MODE, cluster mode)" start_agent
check "it says access control is on and not bootstrapped yet" \
  grep -q "ACL not bootstrapped yet" "$TMP/agent.log"

# --- no token: nothing can be read or changed ---------------------------------------------
sed "s/name: web/name: acl-web/" "$ROOT/examples/web.yml" >"$TMP/web.yml"
for cmd in "job ls" "job status acl-web" "job history acl-web" "job run $TMP/web.yml" \
  "job stop acl-web" "job revert acl-web 1" "machine ls" "machine drain acl-$MODE" \
  "machine ineligible acl-$MODE" "alloc ls" "alloc status x" "logs x" "events" "route ls" \
  "route add a.example.com http://127.0.0.1:9" "route rm a.example.com x" "acl token ls" \
  "acl token self" "acl token create --name x --policy admin" "acl token revoke 0123456789abcdef"; do
  # shellcheck disable=SC2086
  out=$(timeout 30 "$BERTH" $cmd 2>&1)
  rc=$?
  check "no token: berth $cmd is refused (exit $rc): $out" refused "$rc" "$out"
done
if "$BERTH" secret --help >/dev/null 2>&1; then
  for cmd in "secret ls" "secret rm db/password" "secret recipients ls"; do
    # shellcheck disable=SC2086
    out=$(timeout 30 "$BERTH" $cmd 2>&1)
    rc=$?
    check "no token: berth $cmd is refused (exit $rc): $out" \
      bash -c '[[ $1 -ne 0 ]] && grep -q "not authenticated" <<<"$2"' _ "$rc" "$out"
  done
fi
for req in "GET /v1/jobs" "GET /v1/machines" "GET /v1/allocs" "GET /v1/routes" "GET /v1/events" \
  "GET /v1/version" "GET /v1/agent/self" "GET /v1/engine" "POST /v1/jobs" "DELETE /v1/jobs/acl-web" \
  "PUT /v1/machines/acl-$MODE/drain" "PUT /v1/routes/a.example.com/x" "GET /v1/acl/tokens" \
  "POST /v1/acl/tokens" "GET /v1/secrets" "GET /v1/secrets/db/password" "GET /v1/secret-keys"; do
  c=$(code ${req% *} "${req#* }" --max-time 5)
  check "no token: $req is 401 ($c)" test "$c" = 401
done
c=$(code GET /v1/jobs -H "Authorization: Bearer 0123456789abcdef.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA")
check "an unknown token is 401 ($c)" test "$c" = 401
c=$(code GET /v1/health)
check "the health probe needs no token ($c)" test "$c" = 200

# --- bootstrap ------------------------------------------------------------------------------
ADMIN=$("$BERTH" acl bootstrap 2>"$TMP/boot.err")
check "acl bootstrap prints the admin token alone on stdout" \
  bash -c '[[ $1 =~ ^[0-9a-f]{16}\.[A-Za-z0-9_-]{43}$ ]]' _ "$ADMIN"
check "and says what it is on stderr" grep -q "admin token" "$TMP/boot.err"
out=$("$BERTH" acl bootstrap 2>&1)
rc=$?
check "a second bootstrap is refused naming the reset (exit $rc): $out" \
  bash -c '[[ $1 -eq 1 ]] && grep -q "already bootstrapped" <<<"$2" && grep -q "acl/bootstrap" <<<"$2"' _ "$rc" "$out"
check "the log names the bootstrap's accessor, never the secret" \
  bash -c 'grep -q "admin token ${1%%.*} made" "$2" && ! grep -qF -- "${1#*.}" "$2"' _ "$ADMIN" "$TMP/agent.log"
check "no refusal in the log shows a secret" bash -c '! grep -q "AAAAAAAAAAAAAAAAAAAA" "$1"' _ "$TMP/agent.log"

# nothing the unauthenticated commands tried reached the store
out=$(BERTH_TOKEN=$ADMIN "$BERTH" job ls 2>&1)
check "no job was submitted without a token: $out" contains "$out" "no jobs"
out=$(BERTH_TOKEN=$ADMIN "$BERTH" machine ls --json)
check "the machine was not drained or made ineligible" \
  python3 -c 'import json,sys; m=json.loads(sys.argv[1])[0]; assert m["eligible"] and not m["drain"]' "$out"
out=$(BERTH_TOKEN=$ADMIN "$BERTH" route ls 2>&1)
check "no route was added: $out" bash -c '! grep -q a.example.com <<<"$1"' _ "$out"
out=$(BERTH_TOKEN=$ADMIN "$BERTH" acl token ls --json)
check "no token was made: only the bootstrap token" \
  python3 -c 'import json,sys; j=json.loads(sys.argv[1]); assert len(j)==1 and j[0]["policy"]=="admin" and "hash" not in j[0]' "$out"

# --- policies -------------------------------------------------------------------------------
READ=$(BERTH_TOKEN=$ADMIN "$BERTH" acl token create --name viewer --policy read 2>/dev/null)
TEAM=$(BERTH_TOKEN=$ADMIN "$BERTH" acl token create --name team-a --policy jobs --job-prefix acl- 2>/dev/null)
check "tokens are made (read, jobs with a prefix)" test -n "$READ" -a -n "$TEAM"
out=$(BERTH_TOKEN=$READ "$BERTH" acl token self 2>&1)
check "acl token self names the token: $out" \
  bash -c 'grep -q "Name: *viewer" <<<"$1" && grep -q "Policy: *read" <<<"$1"' _ "$out"
out=$(BERTH_TOKEN=$READ "$BERTH" job run "$TMP/web.yml" 2>&1)
rc=$?
check "a read token cannot submit (exit $rc): $out" denied "$rc" "$out"
out=$(BERTH_TOKEN=$TEAM "$BERTH" job run "$TMP/web.yml" 2>&1)
check "a jobs token submits a job within its prefix: $out" contains "$out" "version 1 submitted"
sed "s/name: web/name: other-web/" "$ROOT/examples/web.yml" >"$TMP/other.yml"
out=$(BERTH_TOKEN=$TEAM "$BERTH" job run "$TMP/other.yml" 2>&1)
rc=$?
check "but not outside it (exit $rc): $out" denied "$rc" "$out"
check "naming the prefix" contains "$out" '"acl-"'
out=$(BERTH_TOKEN=$READ "$BERTH" job status acl-web 2>&1)
check "a read token reads the job: $out" contains "$out" "Name:       acl-web"
out=$(BERTH_TOKEN=$READ "$BERTH" machine drain "acl-$MODE" 2>&1)
rc=$?
check "a read token cannot drain (exit $rc): $out" denied "$rc" "$out"
out=$(BERTH_TOKEN=$TEAM "$BERTH" acl token ls 2>&1)
rc=$?
check "a jobs token cannot list tokens (exit $rc): $out" denied "$rc" "$out"
out=$(BERTH_TOKEN=$TEAM "$BERTH" job stop acl-web 2>&1)
check "the jobs token stops its job: $out" contains "$out" "stopped"

# --- revocation -----------------------------------------------------------------------------
acc=${READ%%.*}
out=$(BERTH_TOKEN=$ADMIN "$BERTH" acl token revoke "$acc" 2>&1)
check "acl token revoke: $out" contains "$out" "revoked"
out=$(BERTH_TOKEN=$READ "$BERTH" job ls 2>&1)
rc=$?
check "a revoked token is refused at once (exit $rc): $out" refused "$rc" "$out"
out=$(BERTH_TOKEN=$ADMIN "$BERTH" acl token ls)
check "acl token ls no longer lists it" bash -c '! grep -q "$1" <<<"$2"' _ "$acc" "$out"

# --- TLS ------------------------------------------------------------------------------------
stop_agent
mkdir -p "$TMP/pki"
(
  cd "$TMP/pki" || exit 1
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 -subj /CN=berth-ca \
    -keyout ca.key -out ca.pem 2>/dev/null
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj /CN=agent \
    -keyout server.key -out server.csr 2>/dev/null
  printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\n' >server.ext
  openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 1 \
    -extfile server.ext -out server.pem 2>/dev/null
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 \
    -subj /CN=client-ca -keyout client-ca.key -out client-ca.pem 2>/dev/null
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj /CN=operator \
    -keyout client.key -out client.csr 2>/dev/null
  openssl x509 -req -in client.csr -CA client-ca.pem -CAkey client-ca.key -CAcreateserial \
    -days 1 -out client.pem 2>/dev/null
)
check "test certificates made with openssl" test -s "$TMP/pki/server.pem" -a -s "$TMP/pki/client.pem"
SCHEME=https
CURL_TLS=(--cacert "$TMP/pki/ca.pem")
check "agent restarts with --api-cert/--api-key" \
  start_agent --api-cert "$TMP/pki/server.pem" --api-key "$TMP/pki/server.key"
out=$(BERTH_TOKEN=$ADMIN BERTH_CACERT=$TMP/pki/ca.pem "$BERTH" job ls 2>&1)
check "berth over https with BERTH_CACERT: $out" contains "$out" "acl-web"
out=$(BERTH_TOKEN=$ADMIN "$BERTH" job ls 2>&1)
rc=$?
check "without the CA the certificate is not trusted (exit $rc): $out" \
  bash -c '[[ $1 -eq 3 ]] && grep -q "certificate verify failed" <<<"$2"' _ "$rc" "$out"
out=$(BERTH_CACERT=$TMP/pki/ca.pem "$BERTH" job ls 2>&1)
rc=$?
check "TLS does not replace the token (exit $rc): $out" refused "$rc" "$out"
c=$(curl -s -o /dev/null -w '%{http_code}' --max-time 5 "http://${BERTH_ADDR#https://}/v1/health" || true)
check "plain http to the TLS port gets no answer ($c)" test "$c" != 200
stop_agent

# (even the health probe now needs a client certificate)
CURL_TLS=(--cacert "$TMP/pki/ca.pem" --cert "$TMP/pki/client.pem" --key "$TMP/pki/client.key")
check "agent restarts with --api-client-ca" \
  start_agent --api-cert "$TMP/pki/server.pem" --api-key "$TMP/pki/server.key" \
  --api-client-ca "$TMP/pki/client-ca.pem"
c=$(curl -s -o /dev/null -w '%{http_code}' --max-time 5 --cacert "$TMP/pki/ca.pem" \
  "$BERTH_ADDR/v1/health" || true)
check "curl without a client certificate gets no answer ($c)" test "$c" != 200
out=$(BERTH_TOKEN=$ADMIN BERTH_CACERT=$TMP/pki/ca.pem "$BERTH" job ls 2>&1)
rc=$?
check "without a client certificate the handshake fails (exit $rc): $out" test "$rc" -eq 3
out=$(BERTH_TOKEN=$ADMIN BERTH_CACERT=$TMP/pki/ca.pem BERTH_CLIENT_CERT=$TMP/pki/client.pem \
  BERTH_CLIENT_KEY=$TMP/pki/client.key "$BERTH" job ls 2>&1)
check "with one it works: $out" contains "$out" "acl-web"
stop_agent

# --- rate limiting (last: it locks this address out for 10 s) --------------------------------
SCHEME=http
CURL_TLS=()
LIMIT=(--acl-max-failures 3)
check "agent restarts with --acl-max-failures 3" start_agent
for i in 1 2 3; do "$BERTH" job ls >/dev/null 2>&1; done
out=$(BERTH_TOKEN=$ADMIN "$BERTH" job ls 2>&1)
rc=$?
check "after 3 failures even a good token gets 429 for a while (exit $rc): $out" \
  bash -c '[[ $1 -eq 1 ]] && grep -q "too many failed authentications" <<<"$2"' _ "$rc" "$out"
check "the refusals are logged" grep -q "rate-limited after repeated failures" "$TMP/agent.log"
stop_agent

# --- dev mode -------------------------------------------------------------------------------
if [[ "$MODE" == "embedded" ]]; then
  BASE_ARGS=(--dev --data-dir "$TMP/dev" --api 127.0.0.1:0 --machine-id acl-dev)
  rm -f "$TMP/dev/api.addr"
  "$BERTH" agent "${BASE_ARGS[@]}" >"$TMP/dev.log" 2>&1 &
  AGENT_PID=$!
  wait_for 60 test -s "$TMP/dev/api.addr"
  BERTH_ADDR=$(cat "$TMP/dev/api.addr")
  wait_for 60 curl -sf "http://$BERTH_ADDR/v1/health"
  check "--dev says at start that it runs without authentication" \
    grep -q "dev mode:.*no authentication" "$TMP/dev.log"
  out=$("$BERTH" job ls 2>&1)
  check "--dev needs no token: $out" contains "$out" "no jobs"
  stop_agent
  rm -f "$TMP/dev/api.addr"
  "$BERTH" agent "${BASE_ARGS[@]}" --acl >"$TMP/dev-acl.log" 2>&1 &
  AGENT_PID=$!
  wait_for 60 test -s "$TMP/dev/api.addr"
  BERTH_ADDR=$(cat "$TMP/dev/api.addr")
  wait_for 60 curl -sf "http://$BERTH_ADDR/v1/health"
  out=$("$BERTH" job ls 2>&1)
  rc=$?
  check "--dev --acl requires a token (exit $rc): $out" refused "$rc" "$out"
  stop_agent
  out=$("$BERTH" agent --dev --acl --data-dir "$TMP/dev2" --api 0.0.0.0:0 2>&1)
  check "--dev stays on loopback, with --acl too: $out" contains "$out" "loopback"
fi

finish
