#!/usr/bin/env bash
# Throughput of a TCP transfer between two podman containers, direct (no Palisade), tapped
# (discover: tc mirror to the dataplane) and inline (protect: through the dataplane's
# af_packet pair), all in one run on the same machine, reported as ratios to direct.
#
#   scripts/bench-plumb.sh [--mib N] [--rounds N]
#
# Needs root, podman + runc + the palisade-busybox:test image (scripts/setup.sh), hugepages
# and release binaries (built here). Everything it creates (network 198.18.105.0/24, two
# containers, a podman API service, palisade up and its dataplane) is removed on exit; it stops
# only the processes it started, by pid.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/lib/bench-up.sh
source scripts/lib/bench-up.sh

MIB=128
ROUNDS=3
while [[ $# -gt 0 ]]; do
  case $1 in
    --mib) MIB=$2; shift 2 ;;
    --rounds) ROUNDS=$2; shift 2 ;;
    *) echo "usage: $0 [--mib N] [--rounds N]" >&2; exit 2 ;;
  esac
done

cargo build --release --locked -p control -p dataplane --bins >/dev/null
BIN=$PWD/target/release

P=(podman --runtime runc --cgroup-manager=cgroupfs)
RUN=(--ulimit nofile=1024:1024 --ulimit nproc=1024:1024)
TAG=pb$$
NET=pal-$TAG
SERVER=198.18.105.10
CLIENT=198.18.105.11
DIR=$(mktemp -d /tmp/palisade-bench-plumb.XXXXXX)
UP_PID=
SVC_PID=

cleanup() {
  set +e
  [[ -n $UP_PID ]] && kill -TERM "$UP_PID" 2>/dev/null && wait "$UP_PID" 2>/dev/null
  [[ -n $SVC_PID ]] && kill "$SVC_PID" 2>/dev/null && wait "$SVC_PID" 2>/dev/null
  "${P[@]}" rm --force --time 0 "$TAG-srv" "$TAG-cli" >/dev/null 2>&1
  "${P[@]}" network rm --force "$NET" >/dev/null 2>&1
  rm -rf "$DIR"
}
trap cleanup EXIT

"${P[@]}" network create --subnet 198.18.105.0/24 "$NET" >/dev/null
BRIDGE=$("${P[@]}" network inspect "$NET" --format '{{.NetworkInterface}}')
"${P[@]}" run --detach --name "$TAG-srv" --network "$NET" --ip $SERVER --label app=bsrv "${RUN[@]}" \
  palisade-busybox:test sh -c 'printf "#!/bin/sh\ncat >/dev/null\n" >/tmp/sink && chmod +x /tmp/sink && exec nc -ll -p 9001 -e /tmp/sink' >/dev/null
"${P[@]}" run --detach --name "$TAG-cli" --network "$NET" --ip $CLIENT --label app=bcli "${RUN[@]}" \
  palisade-busybox:test sleep 3600 >/dev/null

# Seconds for one transfer of $MIB MiB (the client's nc ends at its input's end).
transfer() {
  local t0 t1
  t0=$(date +%s.%N)
  "${P[@]}" exec "$TAG-cli" sh -c "dd if=/dev/zero bs=64k count=$((MIB * 16)) 2>/dev/null | nc $SERVER 9001" ||
    { echo "transfer failed" >&2; exit 1; }
  t1=$(date +%s.%N)
  echo "$t1 - $t0" | bc -l
}

# Best of $ROUNDS, in MiB/s.
measure() {
  local best=0 s r
  for _ in $(seq "$ROUNDS"); do
    s=$(transfer)
    r=$(echo "$MIB / $s" | bc -l)
    best=$(echo "if ($r > $best) $r else $best" | bc -l)
  done
  printf '%.1f' "$best"
}

sleep 1
DIRECT=$(measure)
echo "direct: $DIRECT MiB/s"

start_podman_service
start_palisade "[plumb]
tap_iface = \"pbt$$\"
bridges = [\"$BRIDGE\"]
[dataplane]
lcores = \"0-1\"
memory = \"in-memory\"
idle = \"adaptive\"
file_prefix = \"bench-plumb-$$\"
socket = \"$DIR/dp.sock\"" --dp "$BIN/palisade-dp"
plumbed() { # all containers of the network have plumbing $1
  [[ $(api "$API/v1/workloads?limit=1000" | jq --arg p "$1" \
    '[.items[] | select(.name | startswith("'$TAG'")) | select(.plumbing == $p)] | length') == 2 ]]
}
for _ in $(seq 300); do plumbed tap && break; sleep 0.2; done
plumbed tap || { echo "containers not tapped; log in $DIR/up.log" >&2; cat "$DIR/up.log" >&2; exit 1; }
TAP=$(measure)
echo "tap (discover): $TAP MiB/s"
for _ in $(seq 100); do
  [[ $(api "$API/v1/rules?limit=1000" | jq '[.items[] | select(.ports == ["tcp/9001"])] | length') -ge 1 ]] && break
  sleep 0.2
done
for g in auto.bsrv auto.bcli; do
  api -X PATCH -d '{"network_mode":"protect"}' "$API/v1/groups/$g" >/dev/null
done
for _ in $(seq 300); do plumbed inline && break; sleep 0.2; done
plumbed inline || { echo "containers not inline; log in $DIR/up.log" >&2; exit 1; }
INLINE=$(measure)
echo "inline (protect): $INLINE MiB/s"
# Stopping palisade undoes the plumbing; the direct path again, now with the offloads off
# that tap and inline turned off (the fairer reference for them).
kill -TERM "$UP_PID"
wait "$UP_PID" || true
UP_PID=
AFTER=$(measure)
echo "direct, offloads off: $AFTER MiB/s"
printf '\n| path | MiB/s (best of %s, %s MiB) | ratio to direct |\n|---|---|---|\n' "$ROUNDS" "$MIB"
printf '| direct | %s | 1.00 |\n' "$DIRECT"
printf '| direct, offloads off (after palisade stopped) | %s | %.2f |\n' "$AFTER" "$(echo "$AFTER / $DIRECT" | bc -l)"
printf '| tap (discover) | %s | %.2f |\n' "$TAP" "$(echo "$TAP / $DIRECT" | bc -l)"
printf '| inline (protect) | %s | %.2f |\n' "$INLINE" "$(echo "$INLINE / $DIRECT" | bc -l)"
