//! Application identification from payload (DPI): pure Rust, no DPDK, no I/O, no allocation.
//!
//! A [`State`] lives in each connection-table entry. The worker feeds it the L4 payload of
//! the first packets of a session, in both directions, through [`State::inspect`]; once
//! [`State::done`] says so it stops. The decision is [`State::app`].
//!
//! # Contract
//!
//! - **Payload decides, not ports.** Every detector looks at bytes. A port only breaks a tie
//!   between detectors that matched the same payload (DNS vs mDNS on 5353, FTP vs SMTP on a
//!   bare `220 ` greeting), or confirms *weak* payload evidence (see below). A flow whose
//!   payload matches nothing stays [`App::Unknown`], whatever its port.
//! - **Strong and weak evidence.** A detector answers per packet with a `Hit`: `Strong`
//!   (the bytes are this protocol's opening or a self-describing frame: decide now) or `Weak`
//!   (consistent with the protocol but short or generic, e.g. a TFTP DATA block or a `220 `
//!   greeting). A weak hit decides when a second packet of the flow gives weak or strong
//!   evidence for the same application, or when the flow uses that application's registered
//!   port. Several strong hits on one packet are settled by port, then by table order (the
//!   more specific detector first).
//! - **Budget.** [`BUDGET`] non-empty payloads per direction are inspected; empty payloads
//!   (bare ACKs) do not count. The state gives up when both directions have spent their
//!   budget, or when one direction has sent twice its budget while the other stayed silent.
//! - **No reassembly.** Each packet is looked at alone. Detectors key on the first bytes of a
//!   protocol's opening message, which fit the first segment even when the message does not
//!   (a 1.8 kB TLS ClientHello, a long HTTP request line).
//! - **Never panics**, whatever the input: every read is bounds-checked (`get`), and the
//!   tests run every detector over random and truncated inputs.
//!
//! # Known limits
//!
//! - HTTP/2 over TLS is reported as [`App::Tls`]: the protocol inside is encrypted, and the
//!   ALPN offer (`h2`) is in [`TlsHello`] for reports and rules that want it. Likewise for
//!   every TLS-wrapped protocol (IMAPS, LDAPS, ...). h2c reached through an HTTP/1.1
//!   `Upgrade: h2c` is reported as [`App::Http`] (its first message is HTTP/1.1). An h2c
//!   flow whose first HEADERS frame is not seen within the budget stays unknown.
//! - A flow caught mid-stream is identified only when its later messages describe
//!   themselves (TLS records, AMQP, MQTT, TDS, MongoDB, DNS, ...); line protocols need their
//!   greeting or first command.
//! - RDP over UDP is recognised from its SYN datagram only.
//!
//! `tests/dpi_corpus_probe.rs` replays the nDPI captures in `shared/dpi-corpus` and prints
//! how often this module agrees with nDPI, per application (a development probe).
//!
//! # Crates and hand-written code
//!
//! - HTTP/1.x request and status lines: [`httparse`], the SIMD-capable zero-copy parser
//!   hyper uses; it parses into a caller-owned (here empty) header array, so no allocation.
//! - Everything else is hand-written, each detector reading only the handful of header
//!   bytes it needs: a general-purpose parser would do more work than the detection needs,
//!   and those that exist allocate per message or reject a message cut at a segment
//!   boundary. `tls-parser` (rusticata) returns a `Vec` of ciphers and extensions per
//!   ClientHello and `Incomplete` for a ClientHello that spans segments, so
//!   [`tls_client_hello`] walks the hello by hand; `tls-parser` is kept as a test oracle
//!   that cross-checks it. DNS crates (`simple-dns`, `hickory-proto`) allocate records per
//!   message, and a strict parse rejects the truncated or damaged queries real resolvers
//!   still answer; the DNS detector checks the header and walks the question name. No crate
//!   covers the binary database and messaging protocols (MySQL, TDS, TNS, CQL, Kafka, ...)
//!   at the "is this the opening message" level, and `ssh-parser` is LGPL, for an 8-byte
//!   banner prefix.

mod asn1;

mod db;
mod dns;
mod http;
mod mail;
mod messaging;
mod netsvc;
mod quic;
mod remote;
mod tls;

pub use tls::{AlpnIter, TlsHello, tls_client_hello};

/// Non-empty payloads inspected per direction before the state gives up.
pub const BUDGET: u8 = 8;

macro_rules! apps {
    ($($(#[$m:meta])* $v:ident = $name:literal, ports: [$($p:literal),*];)*) => {
        /// An application protocol, as policy rules name it (`apps: ["http"]`).
        #[repr(u16)]
        #[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Default)]
        pub enum App {
            /// Not (yet) identified.
            #[default]
            Unknown = 0,
            $($(#[$m])* $v,)*
        }

        impl App {
            /// Every application, [`App::Unknown`] first, in discriminant order.
            pub const ALL: &'static [App] = &[App::Unknown, $(App::$v,)*];

            /// The lower-case name used in rules and reports.
            pub fn name(self) -> &'static str {
                match self {
                    App::Unknown => "unknown",
                    $(App::$v => $name,)*
                }
            }

            /// Registered ports: used only to break ties between payload matches and to
            /// confirm weak payload evidence, never to decide alone.
            pub fn ports(self) -> &'static [u16] {
                match self {
                    App::Unknown => &[],
                    $(App::$v => &[$($p),*],)*
                }
            }
        }
    };
}

apps! {
    /// HTTP/1.x.
    Http = "http", ports: [80, 8080, 8000, 8008, 8081, 3128];
    /// Cleartext HTTP/2 (h2c, prior knowledge). HTTP/2 over TLS is reported as [`App::Tls`];
    /// its ALPN (`h2`) is in [`TlsHello`].
    Http2 = "http2", ports: [];
    /// gRPC over cleartext HTTP/2 (`content-type: application/grpc...` in a HEADERS frame).
    Grpc = "grpc", ports: [50051];
    /// TLS (any version; the record layer and the handshake hellos).
    Tls = "tls", ports: [443, 8443, 993, 995, 465, 636, 853, 5061, 6443];
    /// DNS over UDP or TCP.
    Dns = "dns", ports: [53];
    /// SSH.
    Ssh = "ssh", ports: [22];
    /// MySQL / MariaDB client-server protocol.
    Mysql = "mysql", ports: [3306];
    /// PostgreSQL frontend/backend protocol.
    Postgresql = "postgresql", ports: [5432];
    /// Redis RESP.
    Redis = "redis", ports: [6379];
    /// MongoDB wire protocol.
    Mongodb = "mongodb", ports: [27017];
    /// Cassandra CQL native protocol.
    Cassandra = "cassandra", ports: [9042];
    /// Kafka.
    Kafka = "kafka", ports: [9092];
    /// ZooKeeper.
    Zookeeper = "zookeeper", ports: [2181];
    /// Memcached (text and binary).
    Memcached = "memcached", ports: [11211];
    /// NTP.
    Ntp = "ntp", ports: [123];
    /// DHCP (BOOTP with the DHCP magic cookie).
    Dhcp = "dhcp", ports: [67, 68];
    /// AMQP 0-9-1 / 0-10 / 1.0.
    Amqp = "amqp", ports: [5672];
    /// MQTT.
    Mqtt = "mqtt", ports: [1883];
    /// NATS client protocol.
    Nats = "nats", ports: [4222];
    /// Microsoft SQL Server TDS.
    Mssql = "mssql", ports: [1433];
    /// Oracle TNS.
    Oracle = "oracle", ports: [1521];
    /// FTP control connection.
    Ftp = "ftp", ports: [21];
    /// SMTP.
    Smtp = "smtp", ports: [25, 587, 2525];
    /// IMAP.
    Imap = "imap", ports: [143];
    /// POP3.
    Pop3 = "pop3", ports: [110];
    /// LDAP (and CLDAP over UDP).
    Ldap = "ldap", ports: [389];
    /// SIP.
    Sip = "sip", ports: [5060];
    /// RTSP.
    Rtsp = "rtsp", ports: [554, 8554];
    /// Syslog.
    Syslog = "syslog", ports: [514, 601];
    /// SNMP.
    Snmp = "snmp", ports: [161, 162];
    /// TFTP.
    Tftp = "tftp", ports: [69];
    /// Kerberos.
    Kerberos = "kerberos", ports: [88];
    /// QUIC (IETF and Google QUIC).
    Quic = "quic", ports: [443];
    /// RADIUS.
    Radius = "radius", ports: [1812, 1813, 1645, 1646];
    /// Remote Desktop Protocol.
    Rdp = "rdp", ports: [3389];
    /// Telnet.
    Telnet = "telnet", ports: [23];
    /// Git native protocol (`git://`).
    Git = "git", ports: [9418];
    /// Elasticsearch transport protocol.
    Elasticsearch = "elasticsearch", ports: [9300];
    /// Multicast DNS.
    Mdns = "mdns", ports: [5353];
    /// NetBIOS name and datagram services.
    Netbios = "netbios", ports: [137, 138];
    /// CoAP.
    Coap = "coap", ports: [5683];
    /// SSDP (UPnP discovery).
    Ssdp = "ssdp", ports: [1900];
}

impl App {
    /// The application named `name` (as [`App::name`] spells it), if any.
    pub fn from_name(name: &str) -> Option<App> {
        App::ALL.iter().copied().find(|a| a.name() == name)
    }

    /// This application's bit in a 64-bit set.
    fn bit(self) -> u64 {
        1u64 << (self as u16 & 63)
    }
}

// Sets of apps are u64 bit masks.
const _: () = assert!(App::ALL.len() <= 64);

/// The transport a flow runs over.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum Transport {
    /// TCP.
    Tcp,
    /// UDP.
    Udp,
}

/// Which way a payload travels.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum Dir {
    /// From the side that opened the session.
    ClientToServer,
    /// Towards the side that opened the session.
    ServerToClient,
}

/// What the detectors know of a flow besides its payload.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct Flow {
    /// TCP or UDP.
    pub transport: Transport,
    /// The opener's port.
    pub client_port: u16,
    /// The listener's port.
    pub server_port: u16,
}

/// The result of one [`State::inspect`] call.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Progress {
    /// The application is known; stop inspecting.
    Decided(App),
    /// Keep feeding payloads.
    Continue,
    /// Budget spent without a decision; stop inspecting (the app stays unknown).
    GaveUp,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
enum Phase {
    #[default]
    Inspecting,
    Decided,
    GaveUp,
}

/// Per-flow DPI state: 16 bytes.
#[derive(Default, Clone, Debug)]
pub struct State {
    /// Applications with weak evidence so far.
    weak: u64,
    app: App,
    /// Non-empty payloads seen client to server and back (saturating).
    c2s: u8,
    s2c: u8,
    phase: Phase,
}

/// One packet as the detectors see it.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Pkt<'a> {
    pub(crate) data: &'a [u8],
    pub(crate) dir: Dir,
    pub(crate) transport: Transport,
    /// How many non-empty payloads this direction carried before this one.
    pub(crate) nth: u8,
    pub(crate) client_port: u16,
    pub(crate) server_port: u16,
    /// Applications with weak evidence from earlier packets.
    pub(crate) weak: u64,
}

impl Pkt<'_> {
    /// From the session opener.
    pub(crate) fn c2s(&self) -> bool {
        self.dir == Dir::ClientToServer
    }

    /// The first non-empty payload of its direction.
    pub(crate) fn first(&self) -> bool {
        self.nth == 0
    }

    /// Whether an earlier packet gave weak evidence for `app`.
    pub(crate) fn seen(&self, app: App) -> bool {
        self.weak & app.bit() != 0
    }

    /// Whether either port is one of `app`'s registered ports.
    pub(crate) fn on_port_of(&self, app: App) -> bool {
        app.ports()
            .iter()
            .any(|&p| p == self.server_port || p == self.client_port)
    }

    pub(crate) fn tcp(&self) -> bool {
        self.transport == Transport::Tcp
    }
}

/// A detector's answer for one packet.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Hit {
    /// Nothing recognised.
    Miss,
    /// Consistent with `App`, not enough alone.
    Weak(App),
    /// `App`'s opening or a self-describing message of it.
    Strong(App),
}

type Detect = fn(&Pkt<'_>) -> Hit;

/// The detectors, most specific first (the order breaks ties no port settles).
const TCP: &[Detect] = &[
    tls::detect,
    ssh_detect,
    http::detect_h2,
    http::detect_rtsp,
    http::detect_sip,
    http::detect_http,
    db::detect_mysql,
    db::detect_postgresql,
    db::detect_mssql,
    db::detect_oracle,
    db::detect_mongodb,
    db::detect_cassandra,
    db::detect_redis,
    db::detect_memcached,
    messaging::detect_amqp,
    messaging::detect_mqtt,
    messaging::detect_nats,
    messaging::detect_kafka,
    messaging::detect_zookeeper,
    messaging::detect_elasticsearch,
    remote::detect_rdp,
    remote::detect_git,
    dns::detect_tcp,
    asn1::detect_kerberos_tcp,
    asn1::detect_ldap,
    mail::detect_imap,
    mail::detect_pop3,
    mail::detect_smtp,
    mail::detect_ftp,
    remote::detect_telnet,
    netsvc::detect_syslog,
];

const UDP: &[Detect] = &[
    quic::detect,
    netsvc::detect_dhcp,
    dns::detect_netbios,
    dns::detect_udp,
    asn1::detect_kerberos_udp,
    asn1::detect_snmp,
    asn1::detect_ldap,
    netsvc::detect_radius,
    remote::detect_rdp,
    netsvc::detect_ntp,
    netsvc::detect_tftp,
    http::detect_sip,
    http::detect_ssdp,
    netsvc::detect_syslog,
    db::detect_memcached,
    netsvc::detect_coap,
];

fn ssh_detect(p: &Pkt<'_>) -> Hit {
    // RFC 4253 section 4.2: "SSH-protoversion-softwareversion"; 1.99 announces 2.0 and 1.x.
    let d = p.data;
    if d.starts_with(b"SSH-2.0-") || d.starts_with(b"SSH-1.99-") || d.starts_with(b"SSH-1.5-") {
        Hit::Strong(App::Ssh)
    } else {
        Hit::Miss
    }
}

impl State {
    /// Feed one packet's L4 payload (may be empty: empty payloads do not count toward the
    /// budget).
    pub fn inspect(&mut self, flow: &Flow, dir: Dir, payload: &[u8]) -> Progress {
        match self.phase {
            Phase::Decided => return Progress::Decided(self.app),
            Phase::GaveUp => return Progress::GaveUp,
            Phase::Inspecting => {}
        }
        if payload.is_empty() {
            return Progress::Continue;
        }
        let count = match dir {
            Dir::ClientToServer => &mut self.c2s,
            Dir::ServerToClient => &mut self.s2c,
        };
        let nth = *count;
        *count = count.saturating_add(1);
        if nth < BUDGET {
            let pkt = Pkt {
                data: payload,
                dir,
                transport: flow.transport,
                nth,
                client_port: flow.client_port,
                server_port: flow.server_port,
                weak: self.weak,
            };
            if let Some(app) = self.decide(&pkt) {
                self.app = app;
                self.phase = Phase::Decided;
                return Progress::Decided(app);
            }
        }
        let (c2s, s2c) = (self.c2s, self.s2c);
        let spent = |n: u8| n >= BUDGET;
        let one_sided = |a: u8, b: u8| a >= BUDGET.saturating_mul(2) && b == 0;
        if (spent(c2s) && spent(s2c)) || one_sided(c2s, s2c) || one_sided(s2c, c2s) {
            self.phase = Phase::GaveUp;
            return Progress::GaveUp;
        }
        Progress::Continue
    }

    /// Runs the detectors on one packet; records weak evidence, returns a decision.
    fn decide(&mut self, pkt: &Pkt<'_>) -> Option<App> {
        let table = match pkt.transport {
            Transport::Tcp => TCP,
            Transport::Udp => UDP,
        };
        // Rank: strong on its port 4, strong 3, weak confirmed by its port 2, weak confirmed
        // by an earlier packet 1; ties go to the earlier detector.
        let mut best: Option<(u8, App)> = None;
        let mut new_weak = 0u64;
        for detect in table {
            let (app, strong) = match detect(pkt) {
                Hit::Miss => continue,
                Hit::Strong(app) => (app, true),
                Hit::Weak(app) => (app, false),
            };
            let port = pkt.on_port_of(app);
            if !strong && !port && !pkt.seen(app) {
                new_weak |= app.bit();
                continue;
            }
            let rank = if strong { 3 } else { 1 } + u8::from(port);
            if best.is_none_or(|(r, _)| rank > r) {
                best = Some((rank, app));
            }
            if rank == 4 {
                // Strong on its own port: nothing later can rank higher, and ties go to the
                // earlier detector; the remaining detectors need not run.
                break;
            }
        }
        self.weak |= new_weak;
        best.map(|(_, app)| app)
    }

    /// The decision: [`App::Unknown`] until decided.
    pub fn app(&self) -> App {
        self.app
    }

    /// Decided or gave up: the caller stops calling [`State::inspect`].
    pub fn done(&self) -> bool {
        self.phase != Phase::Inspecting
    }
}

#[cfg(test)]
mod fixtures;
#[cfg(test)]
mod tests;
#[cfg(test)]
pub(crate) mod testutil;
