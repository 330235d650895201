# Sourced by the container benchmarks (bench-plumb.sh, bench-process.sh): a podman API service
# and `palisade up` under $DIR. The pids land in SVC_PID and UP_PID (the caller's cleanup stops
# them, by pid); after start_palisade, API and TOKEN are set and `api` calls the REST API.
# Needs: P (the podman command array), DIR, BIN.

start_podman_service() {
  "${P[@]}" system service --time=0 "unix://$DIR/podman.sock" &
  SVC_PID=$!
  for _ in $(seq 100); do [[ -S $DIR/podman.sock ]] && break; sleep 0.1; done
}

# start_palisade EXTRA_TOML [palisade up options...]: discovery through the podman service
# every 0.5 s, EXTRA_TOML appended to the configuration.
start_palisade() {
  local extra=$1
  shift
  local addr=127.0.0.1:$((20000 + $$ % 20000)) pw=bench-Palisade-pw-$$
  mkdir -p "$DIR/data"
  cat >"$DIR/palisade.toml" <<TOML
[api]
listen = "$addr"
[store]
data_dir = "$DIR/data"
[discovery]
runtime_socket = "$DIR/podman.sock"
interval_ms = 500
$extra
TOML
  PALISADE_ADMIN_PASSWORD=$pw "$BIN/palisade" --config "$DIR/palisade.toml" up "$@" \
    >"$DIR/up.log" 2>&1 &
  UP_PID=$!
  API=http://$addr
  for _ in $(seq 300); do curl -fs "$API/healthz" >/dev/null 2>&1 && break; sleep 0.1; done
  TOKEN=$(curl -fs -H 'Content-Type: application/json' \
    -d "{\"username\":\"admin\",\"password\":\"$pw\"}" "$API/v1/auth" | jq -r .token)
}

api() { curl -fs -H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/json' "$@"; }
