#!/usr/bin/env bash
# Regenerate the DPI accuracy test captures in tests/data/dpi/ (root only).
#
# For each protocol: two fresh network namespaces joined by a veth pair (client 198.18.200.1/24,
# server 198.18.200.2/24, IPv6 off, checksum/segmentation offloads off so the capture holds
# wire-exact packets), the real Debian server started by hand inside the server namespace with a
# throwaway config/data dir (no system instance, no service unit), tcpdump on the client's veth,
# a short exchange by the real Debian client, then everything is stopped by pid and removed.
# No packet leaves the namespaces.
#
# Debian packages (only the missing ones are installed, with --no-install-recommends; their
# services are never started by this script):
#   tcpdump iproute2 ethtool procps netcat-openbsd openssl curl wget
#   nginx dnsmasq-base bind9-dnsutils openssh-server openssh-client redis-server redis-tools
#   postgresql postgresql-client mariadb-server mariadb-client memcached nats-server
#   mosquitto mosquitto-clients vsftpd tftpd-hpa tftp-hpa snmpd snmp chrony
#   python3-aiosmtpd slapd ldap-utils bsdutils kamailio sipsak
#
# Usage: scripts/capture-dpi.sh [PROTO...]
#   PROTO is any of: http tls dns ssh redis postgresql mysql memcached nats mqtt ftp tftp
#   syslog snmp ntp ldap smtp sip (default: all). A full run removes the old pcaps first; a partial
#   run replaces only the named protocols' files and lines in EXPECTED.tsv.
#
# Output: tests/data/dpi/*.pcap, tests/data/dpi/EXPECTED.tsv (file<TAB>app<TAB>note, one line
# per pcap, app = what the dataplane must report for the main flow) and tests/data/dpi/README.md.
set -euo pipefail

PACKAGES=(
  tcpdump iproute2 ethtool procps netcat-openbsd openssl curl wget
  nginx dnsmasq-base bind9-dnsutils openssh-server openssh-client redis-server redis-tools
  postgresql postgresql-client mariadb-server mariadb-client memcached nats-server
  mosquitto mosquitto-clients vsftpd tftpd-hpa tftp-hpa snmpd snmp chrony
  python3-aiosmtpd slapd ldap-utils bsdutils kamailio sipsak
)
ALL_PROTOS=(http tls dns ssh redis postgresql mysql memcached nats mqtt ftp tftp syslog snmp ntp ldap smtp sip)

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
OUT=$ROOT/tests/data/dpi
CLI=198.18.200.1
SRV=198.18.200.2
NET=198.18.200.0/24
ID=$$
NSC=pcap-$ID-c          # client namespace
NSS=pcap-$ID-s          # server namespace
VC=pcapc$ID             # client veth end (<= 15 chars)
VS=pcaps$ID             # server veth end

log() { printf 'capture-dpi: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

if [[ $(id -u) -ne 0 ]]; then
  echo "capture-dpi: must run as root (namespaces, tcpdump, servers on ports < 1024)" >&2
  exit 1
fi

if (($#)); then
  PROTOS=("$@")
  for p in "${PROTOS[@]}"; do
    [[ " ${ALL_PROTOS[*]} " == *" $p "* ]] || die "unknown protocol '$p' (known: ${ALL_PROTOS[*]})"
  done
else
  PROTOS=("${ALL_PROTOS[@]}")
fi

# ---------------------------------------------------------------------------------------------
# State and cleanup.
TMP=$(mktemp -d /tmp/capture-dpi.XXXXXX)
chmod 755 "$TMP"          # servers that drop privileges (nginx workers, postgres...) read below it
SERVER_PIDS=()
TD_PID=
MADE_RUN_SSHD=0
ADDED_POLICY=0

stop_pid() { # stop_pid PID: TERM, up to 10 s, then KILL; reap it
  local pid=$1 i
  kill -0 "$pid" 2>/dev/null || { wait "$pid" 2>/dev/null || true; return 0; }
  kill -TERM "$pid" 2>/dev/null || true
  for ((i = 0; i < 100; i++)); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  if kill -0 "$pid" 2>/dev/null; then kill -KILL "$pid" 2>/dev/null || true; fi
  wait "$pid" 2>/dev/null || true
}

ns_exists() { ip netns list | awk '{print $1}' | grep -qx "$1"; }

ns_down() {
  local ns pid
  if [[ -n $TD_PID ]]; then
    kill -INT "$TD_PID" 2>/dev/null || true
    wait "$TD_PID" 2>/dev/null || true
    TD_PID=
  fi
  for pid in "${SERVER_PIDS[@]}"; do stop_pid "$pid"; done
  SERVER_PIDS=()
  for ns in "$NSC" "$NSS"; do
    ns_exists "$ns" || continue
    # Anything still inside our own namespaces was started by this script (children of servers).
    for pid in $(ip netns pids "$ns" 2>/dev/null); do kill -TERM "$pid" 2>/dev/null || true; done
    sleep 0.2
    for pid in $(ip netns pids "$ns" 2>/dev/null); do kill -KILL "$pid" 2>/dev/null || true; done
    ip netns del "$ns" 2>/dev/null || true
  done
}

cleanup() {
  local rc=$?
  set +e
  ns_down
  ((MADE_RUN_SSHD)) && rmdir /run/sshd 2>/dev/null
  ((ADDED_POLICY)) && rm -f /usr/sbin/policy-rc.d
  rm -rf "$TMP"
  if ((rc != 0)); then log "FAILED (exit $rc); namespaces, processes and $TMP removed"; fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM HUP

# ---------------------------------------------------------------------------------------------
# Packages. Debian's maintainer scripts would start the system instance of each server; a
# policy-rc.d that says "no" (101) stops that. If the machine has none, one is put in place only
# for the duration of the install.
missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if ((${#missing[@]})); then
  log "installing: ${missing[*]}"
  if [[ ! -e /usr/sbin/policy-rc.d ]]; then
    ADDED_POLICY=1
    printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
    chmod 755 /usr/sbin/policy-rc.d
  fi
  export DEBIAN_FRONTEND=noninteractive
  rc=0
  { apt-get update -qq && apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null; } || rc=$?
  if ((ADDED_POLICY)); then rm -f /usr/sbin/policy-rc.d; ADDED_POLICY=0; fi
  ((rc == 0)) || die "apt-get install failed"
fi


# ---------------------------------------------------------------------------------------------
# Helpers.
ns_up() {
  ns_down
  ip netns add "$NSC"
  ip netns add "$NSS"
  local ns
  for ns in "$NSC" "$NSS"; do
    ip netns exec "$ns" sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1
    ip -n "$ns" link set lo up
  done
  ip link add "$VC" netns "$NSC" type veth peer name "$VS" netns "$NSS"
  ip -n "$NSC" addr add "$CLI/24" dev "$VC"
  ip -n "$NSS" addr add "$SRV/24" dev "$VS"
  # Wire-exact packets in the capture: real checksums, no GSO/GRO super-packets.
  ip netns exec "$NSC" ethtool -K "$VC" tx off rx off tso off gso off gro off >/dev/null 2>&1 || true
  ip netns exec "$NSS" ethtool -K "$VS" tx off rx off tso off gso off gro off >/dev/null 2>&1 || true
  ip -n "$NSC" link set "$VC" up
  ip -n "$NSS" link set "$VS" up
}

W=                     # work dir of the current protocol
proto_begin() { W=$TMP/$1; mkdir -p "$W"; ns_up; log "== $1"; }
proto_end() { ns_down; }

srv() { # srv LOGNAME CMD...: start a server in the server namespace, in the background
  local name=$1; shift
  ip netns exec "$NSS" "$@" >"$W/$name.log" 2>&1 </dev/null &
  SERVER_PIDS+=($!)
  LAST_PID=$!
}

wait_port() { # wait_port tcp|udp PORT [PID]: until the server namespace listens there
  local proto=$1 port=$2 pid=${3:-$LAST_PID} i flag=-Hlnt
  [[ $proto == udp ]] && flag=-Hlnu
  for ((i = 0; i < 300; i++)); do
    if ip netns exec "$NSS" ss "$flag" "sport = :$port" | grep -q .; then return 0; fi
    if ! kill -0 "$pid" 2>/dev/null; then
      tail -n 20 "$W"/*.log >&2 || true
      die "server (pid $pid) exited before listening on $proto/$port"
    fi
    sleep 0.1
  done
  tail -n 20 "$W"/*.log >&2 || true
  die "nothing listens on $proto/$port after 30 s"
}

cli() { # cli CMD...: run a client in the client namespace (bounded in time)
  ip netns exec "$NSC" timeout 30 "$@"
}

CUR_FILE=
cap_start() { # cap_start FILE FILTER: tcpdump on the client veth into $OUT/FILE
  CUR_FILE=$1
  local filter=$2 i
  rm -f "$OUT/$CUR_FILE"
  : >"$W/tcpdump.log"
  ip netns exec "$NSC" tcpdump -i "$VC" -s 0 -U --immediate-mode -n -Z root -w "$OUT/$CUR_FILE" "$filter" \
    >"$W/tcpdump.log" 2>&1 </dev/null &
  TD_PID=$!
  for ((i = 0; i < 100; i++)); do
    grep -q 'listening on' "$W/tcpdump.log" && return 0
    kill -0 "$TD_PID" 2>/dev/null || { cat "$W/tcpdump.log" >&2; die "tcpdump exited"; }
    sleep 0.1
  done
  die "tcpdump did not start"
}

cap_stop() { # cap_stop APP NOTE [both|c2s]: stop tcpdump, check the file, record expectation
  local app=$1 note=$2 dirs=${3:-both}
  sleep 0.5                               # let the last FIN/ACK and late datagrams land
  kill -INT "$TD_PID"
  wait "$TD_PID" 2>/dev/null || true
  TD_PID=
  check_pcap "$OUT/$CUR_FILE" "$dirs"
  printf '%s\t%s\t%s\n' "$CUR_FILE" "$app" "$note" >>"$TMP/expected.tsv"
  log "   $CUR_FILE: $app, $(stat -c %s "$OUT/$CUR_FILE") bytes, $(count "$OUT/$CUR_FILE") packets"
}

count() { tcpdump -nn -r "$1" ${2:+"$2"} 2>/dev/null | wc -l; }

# Packets that carry application payload (UDP, or TCP with data after the header).
PAYLOAD='(udp or (tcp and (ip[2:2] - ((ip[0] & 0xf) << 2) - ((tcp[12] & 0xf0) >> 2)) > 0))'
check_pcap() {
  local f=$1 dirs=$2 c2s s2c
  c2s=$(count "$f" "src host $CLI and dst host $SRV and $PAYLOAD")
  s2c=$(count "$f" "src host $SRV and dst host $CLI and $PAYLOAD")
  ((c2s > 0)) || die "$f: no client-to-server payload"
  if [[ $dirs == both ]]; then ((s2c > 0)) || die "$f: no server-to-client payload"; fi
  if [[ $(count "$f" 'tcp') -gt 0 ]]; then
    [[ $(count "$f" 'tcp[tcpflags] & tcp-syn != 0') -gt 0 ]] || die "$f: no TCP handshake"
  fi
}

# One self-signed certificate for every TLS server.
CERT=$TMP/cert.pem
KEY=$TMP/key.pem
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 3650 \
  -subj /CN=example.test -addext subjectAltName=DNS:example.test \
  -keyout "$KEY" -out "$CERT" 2>/dev/null
chmod 644 "$KEY"

# ---------------------------------------------------------------------------------------------
# Protocols.
cap_http() {
  proto_begin http
  mkdir -p "$W/html" "$W/logs"
  printf 'Hello from the Palisade DPI capture.\n' >"$W/html/hello.txt"
  printf '<!doctype html><title>palisade</title><p>index</p>\n' >"$W/html/index.html"
  cat >"$W/nginx.conf" <<EOF
worker_processes 1;
daemon off;
pid $W/nginx.pid;
error_log $W/logs/error.log;
events { worker_connections 64; }
http {
  access_log $W/logs/access.log;
  client_body_temp_path $W/tmp_body;
  proxy_temp_path $W/tmp_proxy;
  fastcgi_temp_path $W/tmp_fastcgi;
  uwsgi_temp_path $W/tmp_uwsgi;
  scgi_temp_path $W/tmp_scgi;
  default_type text/plain;
  types { text/html html; text/plain txt; }
  server {
    listen $SRV:80;
    listen $SRV:8081;
    server_name example.test;
    root $W/html;
  }
  server {
    listen $SRV:443 ssl http2;
    server_name example.test;
    ssl_certificate $CERT;
    ssl_certificate_key $KEY;
    root $W/html;
  }
}
EOF
  srv nginx /usr/sbin/nginx -e "$W/logs/error.log" -p "$W" -c "$W/nginx.conf"
  wait_port tcp 80; wait_port tcp 8081; wait_port tcp 443

  cap_start http-curl.pcap "tcp and host $SRV and port 80"
  cli curl -sS -o /dev/null -o /dev/null --resolve "example.test:80:$SRV" \
    http://example.test/hello.txt http://example.test/index.html
  cap_stop http "curl: two GET requests on one keep-alive connection, port 80"

  cap_start http-wget.pcap "tcp and host $SRV and port 80"
  cli wget -q -O /dev/null "http://$SRV/hello.txt"
  cap_stop http "wget: GET by IP address, port 80"

  cap_start http-port8081.pcap "tcp and host $SRV and port 8081"
  cli curl -sS -o /dev/null --resolve "example.test:8081:$SRV" http://example.test:8081/hello.txt
  cap_stop http "curl: GET on non-standard port 8081 (port independence)"

  cap_start tls-nginx-h2.pcap "tcp and host $SRV and port 443"
  cli curl -sS -o /dev/null -w '%{http_version}\n' -k --http2 --resolve "example.test:443:$SRV" \
    https://example.test/hello.txt >"$W/h2.out"
  cap_stop tls "curl --http2 to nginx: TLS 1.3, SNI example.test, ALPN h2 negotiated"
  grep -qx 2 "$W/h2.out" || die "tls-nginx-h2: HTTP/2 was not negotiated"
  proto_end
}

cap_tls() {
  proto_begin tls
  printf 'Hello over TLS from the Palisade DPI capture.\n' >"$W/hello.txt"
  srv s_server443 env -C "$W" openssl s_server -accept "$SRV:443" -cert "$CERT" -key "$KEY" \
    -WWW -alpn http/1.1
  wait_port tcp 443
  srv s_server8443 env -C "$W" openssl s_server -accept "$SRV:8443" -cert "$CERT" -key "$KEY" \
    -WWW -alpn http/1.1
  wait_port tcp 8443

  local req='GET /hello.txt HTTP/1.0\r\nHost: example.test\r\n\r\n'
  cap_start tls13-openssl.pcap "tcp and host $SRV and port 443"
  printf "$req" | cli openssl s_client -connect "$SRV:443" -servername example.test \
    -alpn h2,http/1.1 -ign_eof >"$W/c1.out" 2>&1
  cap_stop tls "openssl s_client: TLS 1.3, SNI example.test, ALPN offer h2,http/1.1 (http/1.1 chosen), port 443"

  cap_start tls12-openssl.pcap "tcp and host $SRV and port 443"
  printf "$req" | cli openssl s_client -connect "$SRV:443" -servername example.test \
    -alpn h2,http/1.1 -tls1_2 -ign_eof >"$W/c2.out" 2>&1
  cap_stop tls "openssl s_client -tls1_2: TLS 1.2, SNI example.test, ALPN offer h2,http/1.1, port 443"

  cap_start tls13-port8443.pcap "tcp and host $SRV and port 8443"
  printf "$req" | cli openssl s_client -connect "$SRV:8443" -servername example.test \
    -alpn h2,http/1.1 -ign_eof >"$W/c3.out" 2>&1
  cap_stop tls "openssl s_client: TLS 1.3, SNI example.test, non-standard port 8443"
  grep -q 'Protocol  *: TLSv1.3' "$W/c1.out" || die "tls13: not TLS 1.3"
  grep -q 'Protocol  *: TLSv1.2' "$W/c2.out" || die "tls12: not TLS 1.2"
  grep -q 'ALPN protocol: http/1.1' "$W/c1.out" || die "tls13: ALPN http/1.1 not negotiated"
  proto_end
}

cap_dns() {
  proto_begin dns
  srv dnsmasq dnsmasq --keep-in-foreground --conf-file=/dev/null --no-resolv --no-hosts \
    --bind-interfaces --listen-address="$SRV" --port=53 --user=nobody --group=nogroup \
    --pid-file="$W/dnsmasq.pid" --address=/example.test/"$SRV" --log-queries --log-facility=-
  wait_port udp 53; wait_port tcp 53

  cap_start dns-udp.pcap "host $SRV and port 53"
  cli dig @"$SRV" example.test A +tries=1 +time=5 >"$W/d1.out"
  cap_stop dns "dig: A example.test over UDP (answer 198.18.200.2)"
  grep -q "^example.test\..*A.*$SRV" "$W/d1.out" || die "dns: no answer over UDP"

  cap_start dns-tcp.pcap "host $SRV and port 53"
  cli dig @"$SRV" example.test A +tcp +tries=1 +time=5 >"$W/d2.out"
  cap_stop dns "dig +tcp: A example.test over TCP (length-prefixed)"
  grep -q "^example.test\..*A.*$SRV" "$W/d2.out" || die "dns: no answer over TCP"
  proto_end
}

cap_ssh() {
  proto_begin ssh
  if [[ ! -d /run/sshd ]]; then mkdir -m 755 /run/sshd; MADE_RUN_SSHD=1; fi
  ssh-keygen -q -t ed25519 -N '' -C capture-host -f "$W/host_ed25519"
  ssh-keygen -q -t ed25519 -N '' -C capture-client -f "$W/client_ed25519"
  cp "$W/client_ed25519.pub" "$W/authorized_keys"
  cat >"$W/sshd_config" <<EOF
Port 22
Port 2222
ListenAddress $SRV
HostKey $W/host_ed25519
PidFile $W/sshd.pid
AuthorizedKeysFile $W/authorized_keys
StrictModes no
UsePAM no
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
X11Forwarding no
PrintMotd no
EOF
  srv sshd /usr/sbin/sshd -D -e -f "$W/sshd_config"
  wait_port tcp 22; wait_port tcp 2222

  local opts=(-F /dev/null -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null
    -o BatchMode=yes -o LogLevel=ERROR)
  cap_start ssh-22.pcap "tcp and host $SRV and port 22"
  cli ssh "${opts[@]}" -o IdentitiesOnly=yes -i "$W/client_ed25519" -p 22 "root@$SRV" \
    echo hello >"$W/s1.out"
  cap_stop ssh "OpenSSH client to sshd: banner, kex, publickey auth, one command, port 22"
  grep -qx hello "$W/s1.out" || die "ssh: command did not run"

  cap_start ssh-port2222.pcap "tcp and host $SRV and port 2222"
  cli ssh "${opts[@]}" -o PubkeyAuthentication=no -p 2222 "capture@$SRV" true \
    >"$W/s2.out" 2>&1 && die "ssh: auth unexpectedly succeeded"
  cap_stop ssh "OpenSSH client on non-standard port 2222: banner, kex, auth refused"
  proto_end
}

cap_redis() {
  proto_begin redis
  srv redis6379 redis-server --bind "$SRV" --port 6379 --save '' --appendonly no --dir "$W" \
    --daemonize no --protected-mode no --logfile ''
  wait_port tcp 6379
  srv redis6380 redis-server --bind "$SRV" --port 6380 --save '' --appendonly no --dir "$W" \
    --daemonize no --protected-mode no --logfile ''
  wait_port tcp 6380

  cap_start redis.pcap "tcp and host $SRV and port 6379"
  # One command per redis-cli run: fed commands on stdin, redis-cli 7.0 first fetches
  # COMMAND DOCS (180 KB of reply), which would bloat the file.
  cli redis-cli -h "$SRV" -p 6379 set palisade:key hello >/dev/null
  cli redis-cli -h "$SRV" -p 6379 get palisade:key >"$W/r1.out"
  cap_stop redis "redis-cli: SET then GET (RESP arrays), two connections, port 6379"
  grep -qx hello "$W/r1.out" || die "redis: GET failed"

  cap_start redis-port6380.pcap "tcp and host $SRV and port 6380"
  cli redis-cli -h "$SRV" -p 6380 ping >/dev/null
  cap_stop redis "redis-cli: PING on non-standard port 6380"
  proto_end
}

cap_postgresql() {
  proto_begin postgresql
  local bin
  bin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)
  chown postgres: "$W"
  local as_pg=(setpriv --reuid=postgres --regid=postgres --init-groups)
  "${as_pg[@]}" "$bin/initdb" -D "$W/data" -A trust -U postgres -E UTF8 --locale=C --no-sync \
    >"$W/initdb.log" 2>&1
  echo "host all all $NET trust" >>"$W/data/pg_hba.conf"
  srv postgres "${as_pg[@]}" "$bin/postgres" -D "$W/data" -k "$W" -h "$SRV" -p 5432 \
    -c fsync=off -c logging_collector=off
  wait_port tcp 5432

  cap_start postgresql.pcap "tcp and host $SRV and port 5432"
  cli psql "host=$SRV port=5432 user=postgres dbname=postgres sslmode=disable gssencmode=disable" \
    -X -A -t -c 'select 1' >"$W/p1.out"
  cap_stop postgresql "psql sslmode=disable: startup message, trust auth, simple query 'select 1'"
  grep -qx 1 "$W/p1.out" || die "postgresql: query failed"

  cap_start postgresql-sslrequest.pcap "tcp and host $SRV and port 5432"
  cli psql "host=$SRV port=5432 user=postgres dbname=postgres sslmode=prefer" \
    -X -A -t -c 'select 1' >"$W/p2.out"
  cap_stop postgresql "psql sslmode=prefer: SSLRequest refused ('N'), then plaintext startup and 'select 1'"
  proto_end
}

cap_mysql() {
  proto_begin mysql
  mariadb-install-db --no-defaults --datadir="$W/data" --user=root --skip-test-db \
    --auth-root-authentication-method=socket >"$W/install.log" 2>&1
  srv mariadbd /usr/sbin/mariadbd --no-defaults --datadir="$W/data" --socket="$W/s" \
    --bind-address="$SRV" --port=3306 --user=root --skip-name-resolve --pid-file="$W/mariadbd.pid" \
    --log-error="$W/mariadbd.err" --innodb-buffer-pool-size=16M --skip-log-bin
  wait_port tcp 3306
  local i
  for ((i = 0; i < 100; i++)); do [[ -S $W/s ]] && break; sleep 0.1; done
  ip netns exec "$NSS" mariadb --no-defaults --socket="$W/s" -u root -e \
    "CREATE USER 'capture'@'%' IDENTIFIED BY 'capture'; GRANT ALL ON *.* TO 'capture'@'%';"

  cap_start mysql.pcap "tcp and host $SRV and port 3306"
  cli mariadb --no-defaults --skip-ssl -h "$SRV" -P 3306 -u capture -pcapture -N -e 'select 1' >"$W/m1.out"
  cap_stop mysql "mariadb client to mariadbd: server greeting, native password auth, 'select 1'"
  grep -qx 1 "$W/m1.out" || die "mysql: query failed"
  proto_end
}

cap_memcached() {
  proto_begin memcached
  srv memcached memcached -u nobody -l "$SRV" -p 11211 -U 0 -m 16 -c 64 -t 1
  wait_port tcp 11211

  cap_start memcached.pcap "tcp and host $SRV and port 11211"
  { printf 'set palisade 0 0 5\r\nhello\r\n'; sleep 0.2
    printf 'get palisade\r\n'; sleep 0.2
    printf 'stats\r\n'; sleep 0.2
    printf 'quit\r\n'; sleep 0.2
  } | cli nc -N -w 3 "$SRV" 11211 >"$W/mc.out"
  cap_stop memcached "nc text protocol: set, get, stats, quit"
  grep -q '^VALUE palisade' "$W/mc.out" || die "memcached: get failed"
  proto_end
}

cap_nats() {
  proto_begin nats
  srv nats nats-server -a "$SRV" -p 4222
  wait_port tcp 4222

  cap_start nats.pcap "tcp and host $SRV and port 4222"
  { sleep 0.3
    printf 'CONNECT {"verbose":false,"pedantic":false,"name":"capture","lang":"sh","version":"0"}\r\nPING\r\n'; sleep 0.2
    printf 'SUB palisade.test 1\r\nPUB palisade.test 5\r\nhello\r\nPING\r\n'; sleep 0.3
  } | cli nc -N -w 3 "$SRV" 4222 >"$W/n.out"
  cap_stop nats "nc as client (no NATS client is packaged): INFO, CONNECT, PING/PONG, SUB, PUB, MSG"
  grep -q '^MSG palisade.test 1 5' "$W/n.out" || die "nats: no MSG"
  proto_end
}

cap_mqtt() {
  proto_begin mqtt
  cat >"$W/mosquitto.conf" <<EOF
listener 1883 $SRV
allow_anonymous true
persistence false
log_dest stderr
EOF
  srv mosquitto mosquitto -c "$W/mosquitto.conf"
  wait_port tcp 1883

  cap_start mqtt.pcap "tcp and host $SRV and port 1883"
  cli mosquitto_pub -h "$SRV" -p 1883 -i capture-pub -t palisade/test -m hello -q 1
  cap_stop mqtt "mosquitto_pub MQTT 3.1.1: CONNECT, PUBLISH qos 1, PUBACK, DISCONNECT"

  cap_start mqtt-v5.pcap "tcp and host $SRV and port 1883"
  cli mosquitto_pub -V 5 -h "$SRV" -p 1883 -i capture-pub5 -t palisade/test -m hello -q 1
  cap_stop mqtt "mosquitto_pub MQTT 5: CONNECT, PUBLISH qos 1, PUBACK, DISCONNECT"
  proto_end
}

cap_ftp() {
  proto_begin ftp
  mkdir -p "$W/root" "$W/empty"
  printf 'Hello over FTP from the Palisade DPI capture.\n' >"$W/root/hello.txt"
  cat >"$W/vsftpd.conf" <<EOF
listen=YES
listen_ipv6=NO
listen_address=$SRV
listen_port=21
background=NO
anonymous_enable=YES
no_anon_password=YES
anon_root=$W/root
local_enable=NO
write_enable=NO
secure_chroot_dir=$W/empty
pasv_enable=YES
pasv_min_port=30000
pasv_max_port=30010
seccomp_sandbox=NO
xferlog_enable=NO
vsftpd_log_file=$W/vsftpd.log
ftp_username=ftp
EOF
  srv vsftpd /usr/sbin/vsftpd "$W/vsftpd.conf"
  wait_port tcp 21

  cap_start ftp.pcap "tcp and host $SRV"
  cli curl -sS -o "$W/hello.out" "ftp://$SRV/hello.txt"
  cap_stop ftp "curl anonymous RETR: control connection on port 21 is the main flow; passive data connection (EPSV, port 30000-30010) also in the file"
  cmp -s "$W/hello.out" "$W/root/hello.txt" || die "ftp: download differs"
  proto_end
}

cap_tftp() {
  proto_begin tftp
  mkdir -p "$W/root"
  # Three DATA blocks (512 + 512 + rest).
  for i in $(seq 1 30); do printf 'line %02d of the Palisade DPI TFTP capture file.....\n' "$i"; done >"$W/root/hello.txt"
  srv tftpd /usr/sbin/in.tftpd -L -u tftp -a "$SRV:69" -s "$W/root"
  wait_port udp 69

  cap_start tftp.pcap "udp and host $SRV"
  cli tftp -m octet "$SRV" -c get hello.txt "$W/hello.out"
  cap_stop tftp "tftp-hpa RRQ octet to port 69; DATA/ACK on ephemeral ports of both sides"
  cmp -s "$W/hello.out" "$W/root/hello.txt" || die "tftp: download differs"
  proto_end
}

cap_syslog() {
  proto_begin syslog
  srv nc3164 nc -u -l "$SRV" 514
  wait_port udp 514
  cap_start syslog-rfc3164.pcap "udp and host $SRV and port 514"
  printf 'palisade capture: first message\npalisade capture: second message\n' |
    cli unshare --uts sh -c 'hostname capture-client && exec logger "$@"' logger \
      -n "$SRV" -P 514 -d --rfc3164 -t palisade
  cap_stop syslog "logger --rfc3164 over UDP to port 514 (nc -ul as receiver): two messages, one direction" c2s
  stop_pid "$LAST_PID"

  srv nc5424 nc -u -l "$SRV" 514
  wait_port udp 514
  cap_start syslog-rfc5424.pcap "udp and host $SRV and port 514"
  cli unshare --uts sh -c 'hostname capture-client && exec logger "$@"' logger \
    -n "$SRV" -P 514 -d --rfc5424 -t palisade 'palisade capture: RFC 5424 message'
  cap_stop syslog "logger --rfc5424 over UDP to port 514 (nc -ul as receiver): one message, one direction" c2s
  grep -q 'RFC 5424 message' "$W/nc5424.log" || die "syslog: message not received"
  proto_end
}

cap_snmp() {
  proto_begin snmp
  mkdir -p "$W/persist"
  cat >"$W/snmpd.conf" <<EOF
agentaddress udp:$SRV:161
rocommunity public $NET
sysLocation palisade-capture
sysContact capture@example.test
sysDescr Palisade DPI capture agent
EOF
  srv snmpd env SNMP_PERSISTENT_DIR="$W/persist" MIBS= snmpd -f -Lo -C -c "$W/snmpd.conf" \
    -p "$W/snmpd.pid"
  wait_port udp 161

  cap_start snmp.pcap "udp and host $SRV and port 161"
  cli env SNMP_PERSISTENT_DIR="$W/persist" MIBS= snmpget -v2c -c public -On -r 0 -t 5 "$SRV" \
    1.3.6.1.2.1.1.1.0 1.3.6.1.2.1.1.6.0 >"$W/snmp.out"
  cap_stop snmp "snmpget v2c community public: sysDescr.0, sysLocation.0"
  grep -q palisade-capture "$W/snmp.out" || die "snmp: no answer"
  proto_end
}

cap_ntp() {
  proto_begin ntp
  cat >"$W/chrony.conf" <<EOF
local stratum 8
allow $NET
bindaddress $SRV
port 123
cmdport 0
bindcmdaddress /
pidfile $W/chronyd.pid
EOF
  srv chronyd chronyd -d -x -f "$W/chrony.conf"
  wait_port udp 123

  cap_start ntp.pcap "udp and host $SRV and port 123"
  cli chronyd -Q -t 10 -f /dev/null "server $SRV iburst maxsamples 1" "cmdport 0" \
    "bindcmdaddress /" "pidfile $W/client.pid" >"$W/ntpc.out" 2>&1
  cap_stop ntp "chronyd -Q client (NTPv4 mode 3) to chronyd server (mode 4), port 123"
  proto_end
}

cap_ldap() {
  proto_begin ldap
  mkdir -p "$W/db"
  cat >"$W/slapd.conf" <<EOF
include /etc/ldap/schema/core.schema
pidfile $W/slapd.pid
argsfile $W/slapd.args
modulepath /usr/lib/ldap
moduleload back_mdb
database mdb
maxsize 16777216
suffix "dc=example,dc=test"
rootdn "cn=admin,dc=example,dc=test"
rootpw capture
directory $W/db
EOF
  srv slapd /usr/sbin/slapd -d 0 -h "ldap://$SRV:389/" -f "$W/slapd.conf"
  wait_port tcp 389

  cap_start ldap.pcap "tcp and host $SRV and port 389"
  cli env LDAPNOINIT=1 ldapsearch -x -H "ldap://$SRV:389" -D cn=admin,dc=example,dc=test -w capture \
    -b '' -s base '(objectClass=*)' namingContexts >"$W/ldap.out"
  cap_stop ldap "ldapsearch: simple bind, root DSE search, unbind (BER over TCP port 389)"
  grep -q 'namingContexts: dc=example,dc=test' "$W/ldap.out" || die "ldap: search failed"
  proto_end
}

cap_smtp() {
  proto_begin smtp
  printf 'From: capture@example.test\r\nTo: user@example.test\r\nSubject: palisade capture\r\n\r\nHello over SMTP.\r\n' >"$W/mail.txt"
  srv aiosmtpd /usr/bin/python3 -m aiosmtpd -n -l "$SRV:25" -c aiosmtpd.handlers.Sink
  wait_port tcp 25

  cap_start smtp.pcap "tcp and host $SRV and port 25"
  cli curl -sS "smtp://$SRV:25/client.example.test" --mail-from capture@example.test \
    --mail-rcpt user@example.test -T "$W/mail.txt"
  cap_stop smtp "curl to aiosmtpd (python3-aiosmtpd): banner, EHLO, MAIL, RCPT, DATA, QUIT"
  proto_end
}

cap_sip() {
  proto_begin sip
  mkdir -p "$W/run"
  cat >"$W/kamailio.cfg" <<EOF
#!KAMAILIO
debug=2
log_stderror=yes
children=1
tcp_children=1
listen=udp:$SRV:5060
listen=tcp:$SRV:5060
mpath="/usr/lib/x86_64-linux-gnu/kamailio/modules/"
loadmodule "sl.so"
request_route {
    sl_send_reply("200", "OK");
}
EOF
  srv kamailio /usr/sbin/kamailio -f "$W/kamailio.cfg" -DD -E -Y "$W/run" -P "$W/kamailio.pid" -m 16 -M 4
  wait_port udp 5060; wait_port tcp 5060

  cap_start sip-udp.pcap "host $SRV and port 5060"
  cli sipsak -s "sip:capture@$SRV" -H "$CLI" >"$W/sip1.out"
  cap_stop sip "sipsak OPTIONS over UDP to kamailio, 200 OK"

  cap_start sip-tcp.pcap "host $SRV and port 5060"
  cli sipsak -E tcp -s "sip:capture@$SRV" -H "$CLI" >"$W/sip2.out"
  cap_stop sip "sipsak OPTIONS over TCP to kamailio, 200 OK"
  proto_end
}

# ---------------------------------------------------------------------------------------------
mkdir -p "$OUT"
full=0
[[ $# -eq 0 ]] && full=1
if ((full)); then rm -f "$OUT"/*.pcap; fi
: >"$TMP/expected.tsv"
for p in "${PROTOS[@]}"; do "cap_$p"; done

# EXPECTED.tsv: this run's lines, plus (partial run) the old lines for files not regenerated.
{
  cat "$TMP/expected.tsv"
  if ((!full)) && [[ -f $OUT/EXPECTED.tsv ]]; then
    awk -F'\t' 'NR == FNR { new[$1] = 1; next } !($1 in new)' "$TMP/expected.tsv" "$OUT/EXPECTED.tsv"
  fi
} | sort -t$'\t' -k1,1 >"$TMP/expected.all"
mv "$TMP/expected.all" "$OUT/EXPECTED.tsv"
chmod 644 "$OUT/EXPECTED.tsv" "$OUT"/*.pcap

# README.md with the versions of the packages used.
{
  cat <<'EOF'
# DPI accuracy test captures

Real clients talking to real servers, one protocol per pcap, captured by
`scripts/capture-dpi.sh` (run as root: it creates network namespaces, starts the servers and
runs tcpdump; regenerate with `sudo scripts/capture-dpi.sh`, or `sudo scripts/capture-dpi.sh
redis tls` for some protocols only).

How each file was made: two fresh network namespaces joined by a veth pair, client
198.18.200.1/24 and server 198.18.200.2/24 (RFC 2544 benchmarking range), IPv6 off, checksum
and segmentation offloads off (packets in the file are as on the wire, checksums valid). The
server is the Debian package's daemon, started by hand inside the server namespace with a
throwaway config and data directory; the client is the Debian package's client, run inside the
client namespace; `tcpdump -s 0 -U` runs on the client's veth with a filter on the server's
address (and port), so a file holds only that protocol's flows, both directions, handshake and
teardown included. Nothing left the namespaces.

`EXPECTED.tsv`: one line per pcap, `file<TAB>app<TAB>note`, no header; `app` is the lower-case
application name the dataplane must report for the main flow (the first flow, client
198.18.200.1 to server 198.18.200.2). Where a file holds secondary flows (FTP's passive data
connection, TFTP's transfer on ephemeral ports) the note says so.

Timestamps, ports, keys and random fields change at each regeneration; the protocol content
does not.

Clients: the packaged client where Debian has one (curl, wget, openssl s_client, dig, ssh,
redis-cli, psql, mariadb, mosquitto_pub, ldapsearch, snmpget, tftp, logger, sipsak, chronyd -Q);
`nc` speaks the text protocol for memcached and NATS (Debian packages no NATS client), and
`nc -ul` is the syslog receiver (the client's datagrams are what matter). SMTP's server is
`python3-aiosmtpd` (Debian package), the lightest real SMTP server packaged.

Not captured: IPv6, QUIC/HTTP/3 (Debian 12's curl has no HTTP/3), DNS over TLS/HTTPS.

## Package versions used

| package | version |
| --- | --- |
EOF
  for p in "${PACKAGES[@]}"; do
    printf '| %s | %s |\n' "$p" "$(dpkg-query -W -f='${Version}' "$p" 2>/dev/null || echo '?')"
  done
  printf '\nKernel: %s; Debian %s.\n' "$(uname -r)" "$(cat /etc/debian_version)"
} >"$OUT/README.md"

log "done: $(wc -l <"$OUT/EXPECTED.tsv") pcaps in $OUT"
