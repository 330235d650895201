#!/usr/bin/env bash
# Benchmarks palisade-dp against dpdk-testpmd in the same position, on the same ports and
# cores, alternating, in one invocation; prints a table and writes target/bench/report.json.
#
#   scripts/bench.sh [--quick] [SCENARIO...]
#
# Scenarios (default: all):
#   forward         palisade-pktgen -> memif -> DUT -> memif -> palisade-pktgen: zero-loss rate
#                   (RFC 2544) and latency at it, 10k flows, no policy
#   protect-10k     the same with palisade-dp in protect mode, 10k rules, established flows
#   rule-scaling    10 / 1k / 10k / 100k rules: established and new-flow zero-loss rates
#   hitless-update  100 policy swaps at 80% of the zero-loss rate: extra loss, mixed verdicts,
#                   swap time
#   txonly          testpmd txonly -> memif -> DUT -> null
#   null            null -> null, no generator
#   pipeline        criterion micro-benchmarks in cycles, next to testpmd's
#   policy          policy engine at 10 to 100k rules, swap latency in palisade-dp
#   control         palisade up between two namespaces: REST mode change until the dataplane
#                   runs it and until the traffic shows it; a new connection until its learned
#                   rule is in the API (alias: mode-change)
#   veth            the zero-loss search over veth pairs between two namespaces of its own,
#                   af_packet and af_xdp (the container path): veth-af_packet, veth-af_xdp
# Then (not with --quick) draws docs/benchmarks/{rule-scaling,latency}.svg from the report.
#
# Needs root and hugepages (scripts/setup.sh). Runs two busy pollers at a time (generator on
# CPU 0, device under test on CPU 1): leave the machine otherwise idle while it runs.
#
# On a bigger box: --workers N --worker-cpus LIST [--generator-cpu C] gives the device under
# test N workers, one queue of each port per worker (palisade-dp `queues`, testpmd
# --nb-cores/--rxq/--txq), on the CPUs listed; the generator sends on N queues (one lcore).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh >/dev/null
cargo build --release --locked -p dataplane --bin palisade-dp -p bench --bin palisade-bench --bin palisade-pktgen --bin palisade-bench-charts -p control --bin palisade
# Scenario names are the arguments that are neither flags nor a flag's value.
scenarios=()
skip=0
out=target/bench/report.json
prev=
for a in "$@"; do
  if ((skip)); then
    skip=0
    [[ $prev == --out ]] && out=$a
    continue
  fi
  prev=$a
  case $a in
    --rounds | --seconds | --size | --out | --dp | --testpmd | --criterion | --workers | --worker-cpus | --generator-cpu) skip=1 ;;
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
  set -- "$@" forward protect-10k rule-scaling hitless-update txonly null pipeline policy control veth
fi
target/release/palisade-bench --dp target/release/palisade-dp "$@"
# Charts of rule scaling and latency (docs/benchmarks/*.svg) from the scenarios that carry
# them; a run without rule-scaling or forward draws what it can and says what is missing.
if [[ " $* " != *" --quick "* ]]; then
  target/release/palisade-bench-charts "$out" --out docs/benchmarks ||
    echo "bench.sh: charts incomplete (run forward and rule-scaling for both)" >&2
fi
