#!/usr/bin/env bash
# Property-based API testing: schemathesis generates requests (valid and invalid) from the
# served OpenAPI document and checks every answer against it:
#   not_a_server_error           no 5xx, whatever the input
#   status_code_conformance      every status the API answers is declared
#   content_type_conformance     every Content-Type is the declared one
#   response_schema_conformance  every body matches its declared schema
#
# Runs `palisade up --no-dataplane` on a loopback port with its own configuration and data
# directory (a temporary directory, removed on exit), logs in as admin, creates an admin API
# key and tests with it: schemathesis calls `DELETE /v1/auth` too, which would revoke a session
# token in the middle of the run.
#
# `GET /v1/events/stream` is left out: an SSE stream never ends, so every generated request
# would just run into the request timeout (its filters are the ones `GET /v1/events` takes,
# which is tested).
#
# Environment: PALISADE_BIN (default: build and use target/debug/palisade),
# SCHEMATHESIS_MAX_EXAMPLES (default 15 per operation), SCHEMATHESIS_SEED (default fixed, so a
# failure reproduces; set "random" for a new one), SCHEMATHESIS_REPORT_DIR (keep the JUnit
# report there; default: removed with the temporary directory). Extra arguments go to
# `schemathesis run`.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf 'schemathesis.sh: %s\n' "$*"; }

if ! command -v schemathesis >/dev/null 2>&1; then
  echo "schemathesis.sh: schemathesis is not installed (scripts/setup.sh installs it)" >&2
  exit 1
fi

if [[ -z ${PALISADE_BIN:-} ]]; then
  cargo build -p control --bin palisade --locked
  PALISADE_BIN="${CARGO_TARGET_DIR:-target}/debug/palisade"
fi

tmp=$(mktemp -d -t palisade-schemathesis.XXXXXX)
server_pid=
cleanup() {
  if [[ -n $server_pid ]] && kill -0 "$server_pid" 2>/dev/null; then
    kill -TERM "$server_pid" 2>/dev/null || true
    for _ in $(seq 50); do
      kill -0 "$server_pid" 2>/dev/null || break
      sleep 0.1
    done
    kill -KILL "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
  fi
  rm -rf "$tmp"
}
trap cleanup EXIT INT TERM

# Port 0: the kernel picks a free port, and `palisade up` prints the URL it got.
cat >"$tmp/palisade.toml" <<EOF
[api]
listen = "127.0.0.1:0"

[store]
data_dir = "$tmp/data"
EOF

password="st-$(head -c 18 /dev/urandom | base64 | tr -d '/+=')"
PALISADE_ADMIN_PASSWORD=$password RUST_LOG=${RUST_LOG:-warn} \
  "$PALISADE_BIN" up --no-dataplane --config "$tmp/palisade.toml" \
  >"$tmp/server.out" 2>"$tmp/server.err" &
server_pid=$!

base=
for _ in $(seq 100); do
  base=$(sed -n 's/^palisade: API at \(http:\/\/[^ ]*\)$/\1/p' "$tmp/server.out")
  [[ -n $base ]] && break
  if ! kill -0 "$server_pid" 2>/dev/null; then
    cat "$tmp/server.out" "$tmp/server.err" >&2
    echo "schemathesis.sh: palisade up exited" >&2
    exit 1
  fi
  sleep 0.1
done
if [[ -z $base ]]; then
  cat "$tmp/server.out" "$tmp/server.err" >&2
  echo "schemathesis.sh: palisade up printed no API address" >&2
  exit 1
fi
log "server pid $server_pid at $base"

json_field() { python3 -c 'import json,sys; print(json.load(sys.stdin)[sys.argv[1]])' "$1"; }

token=$(curl -fsS -X POST "$base/v1/auth" -H 'Content-Type: application/json' \
  -d "{\"username\": \"admin\", \"password\": \"$password\"}" | json_field token)
key=$(curl -fsS -X POST "$base/v1/api-keys" -H "Authorization: Bearer $token" \
  -H 'Content-Type: application/json' -d '{"name": "schemathesis-run", "role": "admin"}' |
  json_field secret)

seed=${SCHEMATHESIS_SEED:-20261129}
seed_args=(--seed "$seed")
[[ $seed == random ]] && seed_args=()

start=$SECONDS
status=0
# From the temporary directory: schemathesis keeps a cache of past failures in the working
# directory, which does not belong in the repository.
(cd "$tmp" && schemathesis run "$base/v1/openapi.json" \
  --header "Authorization: Bearer $key" \
  --checks not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance \
  --phases examples,coverage,fuzzing \
  --max-examples "${SCHEMATHESIS_MAX_EXAMPLES:-15}" \
  "${seed_args[@]}" \
  --exclude-path /v1/events/stream \
  --workers 2 \
  --request-timeout 10 \
  --suppress-health-check too_slow,filter_too_much \
  --warnings off \
  --report junit --report-dir "${SCHEMATHESIS_REPORT_DIR:-$tmp/report}" \
  "$@") || status=$?
log "schemathesis took $((SECONDS - start)) s, exit status $status"

# The server must have survived whatever schemathesis sent it.
if ! curl -fsS "$base/healthz" >/dev/null; then
  echo "schemathesis.sh: the server does not answer /healthz after the run" >&2
  cat "$tmp/server.err" >&2
  status=1
fi
if ((status != 0)) && [[ -s $tmp/server.err ]]; then
  log "server log (last 50 lines):"
  tail -n 50 "$tmp/server.err" >&2
fi
exit "$status"
