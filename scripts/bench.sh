#!/usr/bin/env bash
# Benchmarks palisade-dp against dpdk-testpmd in the same position, on the same ports and
# cores, alternating, in one invocation; prints a table and writes target/bench/report.json.
#
#   scripts/bench.sh [--quick] [SCENARIO...]   scenarios: forward (memif -> null), null
#                                              (null -> null, no generator); default: all
#
# Needs root and hugepages (scripts/setup.sh). Runs two busy pollers at a time (generator on
# CPU 0, device under test on CPU 1): leave the machine otherwise idle while it runs.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh >/dev/null
cargo build --release --locked -p dataplane --bin palisade-dp -p bench --bin palisade-bench
exec target/release/palisade-bench --dp target/release/palisade-dp "$@"
