#!/usr/bin/env bash
# Idempotent machine setup for building, testing and running Palisade (Debian 12, as root).
#
#   - Debian packages: DPDK 22.11 (runtime, PMD plugins, headers, pkg-config file), libclang
#     for bindgen, iproute2/ethtool/ping/tcpdump/netcat for the network tests and the demo;
#   - 2 MiB hugepages (PALISADE_HUGEPAGES, default 512) and a hugetlbfs mount on /dev/hugepages;
#   - podman + runc + busybox-static for the real-container tests, and the local image
#     `palisade-busybox:test` (a busybox rootfs, `podman import`ed) they run;
#   - cargo-nextest when it is missing (every DPDK test needs its own process);
#   - schemathesis (PyPI, major version 4) when missing, for scripts/schemathesis.sh.
#
# Safe to run again: it only does what is missing.
set -euo pipefail

HUGEPAGES=${PALISADE_HUGEPAGES:-512}
PACKAGES=(
  dpdk dpdk-dev libdpdk-dev pkg-config libclang-dev
  iproute2 iputils-ping ethtool tcpdump procps netcat-openbsd
  podman runc busybox-static
)

log() { printf 'setup: %s\n' "$*"; }

if [[ $(id -u) -ne 0 ]]; then
  echo "setup: must run as root (it installs packages and reserves hugepages)" >&2
  exit 1
fi

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if ((${#missing[@]})); then
  log "installing: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
else
  log "packages present"
fi

# Hugepages: reserve at least $HUGEPAGES 2 MiB pages (never shrink what an operator set).
cur=$(cat /proc/sys/vm/nr_hugepages)
if ((cur < HUGEPAGES)); then
  log "reserving $HUGEPAGES x 2 MiB hugepages (had $cur)"
  echo "$HUGEPAGES" >/proc/sys/vm/nr_hugepages
  got=$(cat /proc/sys/vm/nr_hugepages)
  if ((got < HUGEPAGES)); then
    echo "setup: the kernel gave only $got of $HUGEPAGES hugepages (memory too fragmented?)" >&2
    exit 1
  fi
else
  log "hugepages: $cur reserved"
fi
if ! mountpoint -q /dev/hugepages; then
  mkdir -p /dev/hugepages
  mount -t hugetlbfs -o pagesize=2M nodev /dev/hugepages
  log "mounted hugetlbfs on /dev/hugepages"
fi

# The image the real-container tests run (control/tests/discovery_podman.rs,
# tests/tests/containers_e2e.rs): busybox and its applets, /www for httpd, and the /etc files
# static busybox needs (its wget looks the port up in /etc/services through glibc's NSS and
# crashes without it), so it needs no registry. IMAGE_VERSION changes when its content does;
# an older image is rebuilt.
BUSYBOX_IMAGE=palisade-busybox:test
IMAGE_VERSION=2
have=$(podman image inspect --format '{{index .Labels "palisade.image.version"}}' "$BUSYBOX_IMAGE" 2>/dev/null || true)
if [[ $have != "$IMAGE_VERSION" ]]; then
  log "building $BUSYBOX_IMAGE (version $IMAGE_VERSION)"
  rootfs=$(mktemp -d)
  mkdir -p "$rootfs/bin" "$rootfs/tmp" "$rootfs/www" "$rootfs/etc"
  cp /bin/busybox "$rootfs/bin/busybox"
  for applet in $("$rootfs/bin/busybox" --list); do
    [[ $applet == busybox ]] || ln -s busybox "$rootfs/bin/$applet"
  done
  printf 'root:x:0:0:root:/:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n' >"$rootfs/etc/passwd"
  printf 'root:x:0:\nnogroup:x:65534:\n' >"$rootfs/etc/group"
  printf 'hosts: files\nservices: files\npasswd: files\ngroup: files\n' >"$rootfs/etc/nsswitch.conf"
  printf 'http 80/tcp\nhttps 443/tcp\n' >"$rootfs/etc/services"
  podman image rm --force "$BUSYBOX_IMAGE" >/dev/null 2>&1 || true
  tar -C "$rootfs" -c . | podman import --quiet --change "LABEL palisade.image.version=$IMAGE_VERSION" - "$BUSYBOX_IMAGE" >/dev/null
  rm -rf "$rootfs"
else
  log "image $BUSYBOX_IMAGE present (version $IMAGE_VERSION)"
fi

if ! command -v cargo-nextest >/dev/null 2>&1; then
  log "installing cargo-nextest"
  cargo install --locked cargo-nextest
fi

# API conformance testing (scripts/schemathesis.sh). Pinned to one major version: its CLI
# options and checks change between majors.
SCHEMATHESIS_SPEC='schemathesis>=4,<5'
if ! command -v schemathesis >/dev/null 2>&1 ||
  ! schemathesis --version 2>/dev/null | grep -Eq 'version 4\.'; then
  if ! command -v pip3 >/dev/null 2>&1; then
    log "installing python3-pip"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends python3-pip >/dev/null
  fi
  log "installing $SCHEMATHESIS_SPEC"
  # Debian's system Python refuses global pip installs (PEP 668) unless told otherwise.
  pip3 install -q "$SCHEMATHESIS_SPEC" 2>/dev/null ||
    pip3 install -q --break-system-packages "$SCHEMATHESIS_SPEC"
fi

log "ok"
