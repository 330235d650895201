#!/usr/bin/env bash
# Palisade demo: `palisade up --demo` on this host. It builds three network namespaces standing
# in for containers (pal-demo-client, pal-demo-web, pal-demo-db) whose only links go through
# palisade-dp (af_packet ports on the host ends of their veths), declares them as workloads in
# discover mode, and keeps a little traffic going (client -> web HTTP, web -> db) so learned
# rules appear. Ctrl-C stops it and removes everything it created; leftovers of a demo that
# was killed are removed at the next start. Run as root on Debian 12: it installs what is
# missing and builds first (release; PALISADE_DEMO_PROFILE=debug for a debug build).
#
# State lives in $PALISADE_DEMO_DIR (default /var/tmp/palisade-demo): the config written here,
# the database and the generated admin password in data/, so learned rules and mode changes
# survive a restart of the demo. Remove the directory to start over. Set
# PALISADE_ADMIN_PASSWORD to choose the admin password on the first run instead.
set -euo pipefail
cd "$(dirname "$0")/.."

if [[ $(id -u) -ne 0 ]]; then
  echo "demo: run as root (DPDK, hugepages and network namespaces need it)" >&2
  exit 1
fi

say() { printf '\033[1mdemo:\033[0m %s\n' "$*"; }

DIR=${PALISADE_DEMO_DIR:-/var/tmp/palisade-demo}
LISTEN=${PALISADE_DEMO_LISTEN:-127.0.0.1:10443}

scripts/setup.sh
# PALISADE_DEMO_PROFILE=debug builds faster (and forwards slower).
PROFILE=${PALISADE_DEMO_PROFILE:-release}
case $PROFILE in
  release) say "building palisade and palisade-dp (release; a few minutes the first time)"
           cargo build --release --locked -p control -p dataplane --bins
           BIN=${CARGO_TARGET_DIR:-target}/release ;;
  debug)   say "building palisade and palisade-dp (debug)"
           cargo build --locked -p control -p dataplane --bins
           BIN=${CARGO_TARGET_DIR:-target}/debug ;;
  *) echo "demo: PALISADE_DEMO_PROFILE must be release or debug" >&2; exit 2 ;;
esac

mkdir -p "$DIR/data"
cat >"$DIR/palisade.toml" <<TOML
# Written by scripts/demo.sh at every start. \`palisade up --demo\` replaces the dataplane's
# ports with the demo topology's (see $DIR/data/dataplane-demo.toml).
[api]
listen = "$LISTEN"

[store]
data_dir = "$DIR/data"

[discovery]
default_mode = "discover"

[dataplane]
lcores = "0-1"
memory = "in-memory"
file_prefix = "palisade-demo"
idle = "adaptive"
stats_interval_s = 10
socket = "$DIR/dp.sock"
TOML

say "config $DIR/palisade.toml, data $DIR/data"
if [[ -f $DIR/data/admin-password ]]; then
  say "admin password (generated at the first run): $DIR/data/admin-password"
fi
say "then, in another terminal:"
echo "  $BIN/palisade --url http://$LISTEN login --password-stdin < $DIR/data/admin-password"
echo "  echo NEW-PASSWORD | $BIN/palisade passwd     # a generated password must be changed first"
echo "  $BIN/palisade rules; $BIN/palisade events --follow; $BIN/palisade mode auto.web protect"
say "starting palisade up --demo (Ctrl-C stops it and removes the demo topology)"
exec "$BIN/palisade" --config "$DIR/palisade.toml" up --dp "$BIN/palisade-dp" --demo
