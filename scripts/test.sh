#!/usr/bin/env bash
# Installs what is missing, builds, and runs every test: formatting, lints, the pure-Rust core
# without DPDK, then the whole workspace under cargo-nextest (one process per test: the EAL
# initialises once per process). Needs root: DPDK, hugepages and network namespaces.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n== %s\n' "$*"; }

step setup
scripts/setup.sh

step format
cargo fmt --all -- --check

step lints
cargo clippy --workspace --all-targets --locked -- -D warnings
cargo clippy -p dataplane --no-default-features --all-targets --locked -- -D warnings

step "pure-Rust core without DPDK"
cargo test -p dataplane --no-default-features --locked

step "policy swaps under Miri (when a nightly toolchain with Miri is installed)"
if RUSTUP_AUTO_INSTALL=0 cargo +nightly miri --version >/dev/null 2>&1; then
  cargo +nightly miri test -p dataplane --no-default-features --locked --test policy_swap
else
  echo "skipped: no \`cargo +nightly miri\` (rustup toolchain install nightly --component miri)"
fi

step build
cargo build --workspace --all-targets --locked

step tests
cargo nextest run --workspace --locked --profile ci "$@"

step "REST API against its OpenAPI document (schemathesis)"
scripts/schemathesis.sh
