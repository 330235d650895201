#!/usr/bin/env bash
# Palisade demo: two network namespaces whose only link is palisade-dp. Their veths' host ends
# are the two af_packet ports of one pair; a ping and a TCP transfer cross it, then a ping runs
# until Ctrl-C. Everything it creates (namespaces, veths, the dataplane process, a temp dir) is
# removed on exit. Run as root on Debian 12; it installs what is missing and builds first.
#
# Until the control process lands (`palisade up --demo`), this drives palisade-dp directly.
set -euo pipefail
cd "$(dirname "$0")/.."

if [[ $(id -u) -ne 0 ]]; then
  echo "demo: run as root (DPDK, hugepages and network namespaces need it)" >&2
  exit 1
fi

say() { printf '\033[1mdemo:\033[0m %s\n' "$*"; }

scripts/setup.sh
say "building palisade-dp (release)"
cargo build --release --locked -p dataplane --bin palisade-dp
DP=target/release/palisade-dp

tag=$$
NS_A=pal-demo-a-$tag
NS_B=pal-demo-b-$tag
IF_A=pda$tag
IF_B=pdb$tag
WORK=$(mktemp -d /tmp/palisade-demo.XXXXXX)
DP_PID=

cleanup() {
  set +e
  # A second Ctrl-C (or a signal sent to the whole group twice) must not cut the cleanup short.
  trap - EXIT
  trap '' INT TERM
  if [[ -n $DP_PID ]] && kill -0 "$DP_PID" 2>/dev/null; then
    say "stopping palisade-dp (pid $DP_PID)"
    kill -TERM "$DP_PID"
    wait "$DP_PID"
    say "palisade-dp exited with $?; its last counters:"
    grep -E 'port counters|worker counters' "$WORK/dp.log" | tail -3 | sed 's/^/  /'
  fi
  ip link del "$IF_A" 2>/dev/null
  ip link del "$IF_B" 2>/dev/null
  ip netns del "$NS_A" 2>/dev/null
  ip netns del "$NS_B" 2>/dev/null
  rm -rf "$WORK"
  say "cleaned up"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

say "creating namespaces $NS_A (198.18.0.1) and $NS_B (198.18.0.2)"
for side in A B; do
  ns_var=NS_$side; if_var=IF_$side
  ns=${!ns_var}; ifc=${!if_var}
  ip netns add "$ns"
  ip -n "$ns" link set lo up
  ip link add "$ifc" type veth peer name eth0 netns "$ns"
  sysctl -qw "net.ipv6.conf.$ifc.disable_ipv6=1"
  # AF_PACKET sees frames as the kernel left them: no partial checksums, no super-frames.
  ethtool -K "$ifc" tx off tso off gso off gro off >/dev/null
  ip netns exec "$ns" ethtool -K eth0 tx off tso off gso off gro off >/dev/null
  ip link set "$ifc" up
  ip -n "$ns" link set eth0 up
done
ip -n "$NS_A" addr add 198.18.0.1/24 dev eth0
ip -n "$NS_B" addr add 198.18.0.2/24 dev eth0

say "before palisade-dp runs, the namespaces cannot reach each other:"
ip netns exec "$NS_A" ping -c 1 -W 1 198.18.0.2 >/dev/null 2>&1 && echo "  (unexpected: reachable)" || echo "  ping 198.18.0.2: no answer"

cat >"$WORK/palisade.toml" <<TOML
[dataplane]
lcores = "0-1"
memory = "in-memory"
file_prefix = "palisade-demo-$tag"
idle = "adaptive"
stats_interval_s = 5

[[dataplane.port]]
name = "a"
kind = "af_packet"
iface = "$IF_A"

[[dataplane.port]]
name = "b"
kind = "af_packet"
iface = "$IF_B"

[[dataplane.pair]]
ports = ["a", "b"]
TOML

say "starting palisade-dp (log: $WORK/dp.log)"
"$DP" --config "$WORK/palisade.toml" 2>"$WORK/dp.log" &
DP_PID=$!
for _ in $(seq 1 300); do
  grep -q 'dataplane running' "$WORK/dp.log" && break
  kill -0 "$DP_PID" 2>/dev/null || { cat "$WORK/dp.log"; exit 1; }
  sleep 0.1
done
grep -m1 'dataplane running' "$WORK/dp.log" | sed 's/^/  /'

say "ping across the dataplane:"
ip netns exec "$NS_A" ping -c 3 -i 0.3 198.18.0.2 | sed 's/^/  /'

say "TCP transfer of 20 MB from $NS_A to $NS_B (sha256 compared):"
head -c 20000000 /dev/urandom >"$WORK/payload"
want=$(sha256sum <"$WORK/payload" | cut -d' ' -f1)
ip netns exec "$NS_B" nc -l -N 198.18.0.2 5001 >"$WORK/received" &
NC_PID=$!
sleep 0.3
start=$(date +%s.%N)
ip netns exec "$NS_A" nc -N 198.18.0.2 5001 <"$WORK/payload"
wait "$NC_PID"
end=$(date +%s.%N)
got=$(sha256sum <"$WORK/received" | cut -d' ' -f1)
printf '  sent     %s\n  received %s  (%s bytes in %.2f s)\n' "$want" "$got" "$(stat -c %s "$WORK/received")" "$(awk -v a="$start" -v b="$end" 'BEGIN { print b - a }')"
[[ $want == "$got" ]] && echo "  intact" || { echo "  MISMATCH"; exit 1; }

say "pinging until Ctrl-C; palisade-dp logs its counters every 5 s in $WORK/dp.log"
ip netns exec "$NS_A" ping -i 1 198.18.0.2 | sed 's/^/  /' &
PING_PID=$!
tail -n 0 -f "$WORK/dp.log" --pid "$PING_PID" | grep --line-buffered -E 'port counters' | sed -u 's/^/  dp: /' &
wait "$PING_PID"
