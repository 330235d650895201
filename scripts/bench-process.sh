#!/usr/bin/env bash
# Cost of the process engine: N fork+exec of a `true` binary in a busybox container, with no
# engine, in discover (events, attribution, learning) and in protect (the exec gate answering
# from its cache, plus the name check), all in one run; and whether the engine kept up (its
# exec count and loss reports from /v1/stats). Then the sustained rate: `palisade-exec-storm`
# spawns a static `true` from 2 threads for --storm seconds inside the container's cgroups,
# with no engine and in discover; the engine must see every exec and report no loss.
#
#   scripts/bench-process.sh [--execs N] [--rounds N] [--storm SECONDS] [--storm-threads N]
#                            [--storm-program PATH]
#
# --storm-program: a static binary to spawn instead of busybox, e.g. the smallest possible
# one, built with
#   printf 'void _start(void){__asm__ volatile("mov $60,%%eax\\nxor %%edi,%%edi\\nsyscall");}' \
#     | gcc -static -nostdlib -O2 -x c -o /tmp/tiny-true -
#
# Needs root, podman + runc + the palisade-busybox:test image (scripts/setup.sh) and release
# binaries (built here). Everything it creates is removed on exit; it stops only the processes
# it started, by pid.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/lib/bench-up.sh
source scripts/lib/bench-up.sh

EXECS=10000
ROUNDS=3
STORM=10
STORM_THREADS=2
STORM_PROGRAM=/bin/busybox
while [[ $# -gt 0 ]]; do
  case $1 in
    --execs) EXECS=$2; shift 2 ;;
    --rounds) ROUNDS=$2; shift 2 ;;
    --storm) STORM=$2; shift 2 ;;
    --storm-threads) STORM_THREADS=$2; shift 2 ;;
    --storm-program) STORM_PROGRAM=$2; shift 2 ;;
    *) echo "usage: $0 [--execs N] [--rounds N] [--storm SECONDS] [--storm-threads N] [--storm-program PATH]" >&2; exit 2 ;;
  esac
done

cargo build --release --locked -p control -p bench --bins >/dev/null
BIN=$PWD/target/release
P=(podman --runtime runc --cgroup-manager=cgroupfs)
TAG=bp$$
DIR=$(mktemp -d /tmp/palisade-bench-process.XXXXXX)
UP_PID=
SVC_PID=
cleanup() {
  set +e
  [[ -n $UP_PID ]] && kill -TERM "$UP_PID" 2>/dev/null && wait "$UP_PID" 2>/dev/null
  [[ -n $SVC_PID ]] && kill "$SVC_PID" 2>/dev/null && wait "$SVC_PID" 2>/dev/null
  "${P[@]}" rm --force --time 0 "$TAG" >/dev/null 2>&1
  rm -rf "$DIR"
}
trap cleanup EXIT

# A copy of busybox named `true` outside /bin: the shell must exec it (no applet shortcut).
"${P[@]}" run --detach --name "$TAG" --network none --label app=benchproc \
  --ulimit nofile=1024:1024 --ulimit nproc=1024:1024 palisade-busybox:test \
  sh -c 'mkdir -p /tmp/x && cp /bin/busybox /tmp/x/true && sleep 3600' >/dev/null
sleep 1

# Seconds for $EXECS fork+exec inside the container (one podman exec around them).
loop() {
  local t0 t1
  t0=$(date +%s.%N)
  "${P[@]}" exec "$TAG" sh -c "i=0; while [ \$i -lt $EXECS ]; do /tmp/x/true; i=\$((i+1)); done"
  t1=$(date +%s.%N)
  echo "$t1 - $t0" | bc -l
}
best() {
  local b=999999 s
  for _ in $(seq "$ROUNDS"); do
    s=$(loop)
    b=$(echo "if ($s < $b) $s else $b" | bc -l)
  done
  printf '%.3f' "$b"
}

NONE=$(best)
echo "no engine: $NONE s for $EXECS execs"

# The storm: a static busybox named `true` spawned from the container's cgroups (so the
# engine attributes every exec to the container), JSON {execs, failed, seconds, per_sec}.
cp "$STORM_PROGRAM" "$DIR/true"
CPID=$("${P[@]}" inspect --format '{{.State.Pid}}' "$TAG")
storm() {
  "$BIN/palisade-exec-storm" --program "$DIR/true" --threads "$STORM_THREADS" --seconds "$STORM" \
    --join-cgroups-of "$CPID"
}
# utime+stime of a process, all threads, in clock ticks.
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
STORM_NONE=$(storm)
echo "storm, no engine: $STORM_NONE"

start_podman_service
start_palisade "[plumb]
enabled = false" --no-dataplane
for _ in $(seq 100); do
  api "$API/v1/groups/auto.benchproc" >/dev/null 2>&1 && break
  sleep 0.2
done
sleep 1
stats() { api "$API/v1/stats" | jq -c .process; }
BEFORE=$(stats)
DISCOVER=$(best)
AFTER=$(stats)
echo "discover: $DISCOVER s; engine counters before $BEFORE after $AFTER"
T0=$(cpu_ticks "$UP_PID")
S0=$(stats)
STORM_DISCOVER=$(storm)
sleep 1 # let the engine drain its socket
S1=$(stats)
T1=$(cpu_ticks "$UP_PID")
echo "storm, discover: $STORM_DISCOVER; engine counters before $S0 after $S1"
# Learned by now (sh, true); protect: the gate answers from its cache.
api -X PATCH -d '{"process_mode":"protect"}' "$API/v1/groups/auto.benchproc" >/dev/null
sleep 1
PROTECT=$(best)
FINAL=$(stats)
echo "protect: $PROTECT s; engine counters $FINAL"
printf '\n| engine | seconds for %s fork+exec (best of %s) | ratio | execs per second |\n|---|---|---|---|\n' "$EXECS" "$ROUNDS"
for row in "none $NONE" "discover $DISCOVER" "protect $PROTECT"; do
  set -- $row
  printf '| %s | %s | %.3f | %.0f |\n' "$1" "$2" "$(echo "$2 / $NONE" | bc -l)" "$(echo "$EXECS / $2" | bc -l)"
done
echo
echo "engine: $(echo "$AFTER" | jq '.execs') - $(echo "$BEFORE" | jq '.execs') execs seen in discover for $((EXECS * ROUNDS)) run; loss reports $(echo "$FINAL" | jq '.lost')"
SENT=$(echo "$STORM_DISCOVER" | jq .execs)
SEEN=$(($(echo "$S1" | jq .execs) - $(echo "$S0" | jq .execs)))
LOST=$(($(echo "$S1" | jq .lost) - $(echo "$S0" | jq .lost)))
TICK=$(getconf CLK_TCK)
printf '\n| storm (%s s, %s threads, %s) | execs per second | execs the engine saw | loss reports | palisade CPU per exec |\n|---|---|---|---|---|\n' "$STORM" "$STORM_THREADS" "$(basename "$STORM_PROGRAM")"
printf '| no engine | %s | - | - | - |\n' "$(echo "$STORM_NONE" | jq .per_sec)"
printf '| discover | %s | %s of %s | %s | %.1f us |\n' "$(echo "$STORM_DISCOVER" | jq .per_sec)" \
  "$SEEN" "$SENT" "$LOST" "$(echo "($T1 - $T0) * 1000000 / $TICK / $SENT" | bc -l)"
echo
echo "process violations (count, name, path):"
api "$API/v1/events?kind=process_violation&limit=1000" |
  jq -r '.items[] | "\(.details.name) \(.details.path) \(.details.mode)"' | sort | uniq -c | head
