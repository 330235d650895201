#!/usr/bin/env bash
# Benchmarks palisade-dp against dpdk-testpmd in the same position, on the same ports and
# cores, alternating, in one invocation; prints a table and writes target/bench/report.json.
#
#   scripts/bench.sh [--quick] [SCENARIO...]   scenarios: forward (memif -> null), null
#                                              (null -> null, no generator), pipeline
#                                              (criterion micro-benchmarks in cycles, next to
#                                              testpmd's), policy (policy engine at 10 to 100k
#                                              rules, swap latency in palisade-dp), mode-change
#                                              (REST mode change until the dataplane runs it),
#                                              ndr (zero-loss rate, RFC 2544, measured by
#                                              palisade-pktgen through testpmd io and
#                                              palisade-dp on memif), veth (the same search
#                                              over veth pairs between namespaces of its
#                                              own, with af_packet and with af_xdp: the
#                                              container path; entries veth-af_packet,
#                                              veth-af_xdp); default: all
#
# Needs root and hugepages (scripts/setup.sh). Runs two busy pollers at a time (generator on
# CPU 0, device under test on CPU 1): leave the machine otherwise idle while it runs.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh >/dev/null
cargo build --release --locked -p dataplane --bin palisade-dp -p bench --bin palisade-bench --bin palisade-pktgen -p control --bin palisade
# Scenario names are the arguments that are neither flags nor a flag's value.
scenarios=()
skip=0
for a in "$@"; do
  if ((skip)); then skip=0; continue; fi
  case $a in
    --rounds | --seconds | --size | --out | --dp | --testpmd | --criterion) skip=1 ;;
    -*) ;;
    *) scenarios+=("$a") ;;
  esac
done
if ((${#scenarios[@]} == 0)) || [[ " ${scenarios[*]} " == *" pipeline "* ]]; then
  quick=()
  [[ " $* " == *" --quick "* ]] && quick=(--warm-up-time 1 --measurement-time 1)
  cargo bench --locked -p bench --bench pipeline -- --noplot "${quick[@]}"
fi
if ((${#scenarios[@]} == 0)); then
  set -- "$@" forward null pipeline policy mode-change ndr veth
fi
exec target/release/palisade-bench --dp target/release/palisade-dp "$@"
