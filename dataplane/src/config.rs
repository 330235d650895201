//! The `[dataplane]` section of `palisade.toml`: serde's raw shape, then a validated
//! [`DataplaneConfig`].
//!
//! Parsing contract: [`parse`] never panics; every rejection is a [`ConfigError`] naming the file,
//! the line and column of the offending value and the reason. `palisade-dp` reads only
//! `[dataplane]` and leaves the other sections (`[api]`, `[store]`, ...) to `palisade`, which
//! validates the whole file with these same types.
//!
//! Documentation for every field lives in `config/palisade.toml`; keep the two in step.

use std::collections::BTreeSet;
use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use toml::Spanned;

/// Highest lcore id DPDK accepts (`RTE_MAX_LCORE` of the Debian build).
pub const MAX_LCORE: u32 = 128;
/// Longest port name: it becomes part of a DPDK device name (at most 64 bytes).
pub const MAX_PORT_NAME: usize = 32;
/// Longest Linux interface name (`IFNAMSIZ` - 1).
pub const MAX_IFACE_NAME: usize = 15;
/// Most queues a port may have (`net_af_packet` allows 16 queue pairs; more workers than that
/// on one port pair is past what one PMD instance spreads well anyway).
pub const MAX_QUEUES: u16 = 16;

/// Why a configuration was rejected.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read {}", path.display())]
    Read {
        /// File that was being read.
        path: PathBuf,
        /// What the OS said.
        #[source]
        source: std::io::Error,
    },
    /// The file was read but its content is wrong; `line` and `column` are 1-based.
    #[error("{}:{line}:{column}: {message}", path.display())]
    Invalid {
        /// File the error is in.
        path: PathBuf,
        /// 1-based line of the offending value.
        line: usize,
        /// 1-based column of the offending value.
        column: usize,
        /// What is wrong and, where it helps, what would be right.
        message: String,
    },
}

impl ConfigError {
    /// The reason alone, without the position (for tests and API answers).
    pub fn message(&self) -> String {
        match self {
            Self::Read { source, .. } => source.to_string(),
            Self::Invalid { message, .. } => message.clone(),
        }
    }

    /// The 1-based line the error points at, when it points at one.
    pub fn line(&self) -> Option<usize> {
        match self {
            Self::Read { .. } => None,
            Self::Invalid { line, .. } => Some(*line),
        }
    }
}

/// The source text being parsed, to turn byte offsets into line and column.
#[derive(Debug, Clone, Copy)]
pub struct Source<'a> {
    /// Path shown in messages.
    pub path: &'a Path,
    /// Whole file content.
    pub text: &'a str,
}

impl Source<'_> {
    /// An error at `span` (a byte range into the text).
    pub fn error(&self, span: Range<usize>, message: impl Into<String>) -> ConfigError {
        let start = span.start.min(self.text.len());
        let before = self.text.get(..start).unwrap_or("");
        let line = before.matches('\n').count() + 1;
        let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
        ConfigError::Invalid {
            path: self.path.to_path_buf(),
            line,
            column,
            message: message.into(),
        }
    }

    /// Turns a serde/TOML error into a positioned [`ConfigError`].
    pub fn toml_error(&self, e: &toml::de::Error) -> ConfigError {
        let span = e.span().unwrap_or(0..0);
        self.error(span, e.message().trim_end().to_owned())
    }
}

/// How DPDK gets its memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Memory {
    /// Hugepage files under hugetlbfs with `--file-prefix` (unlinked right after mapping);
    /// not for virtio_user ports, which need single-file segments.
    Hugepages,
    /// Hugepages without any files or shared config (`--in-memory`); the default.
    InMemory,
    /// Ordinary memory (`--no-huge`): slower, needs no hugepages; not for virtio-user.
    NoHuge,
}

/// What a worker does when its ports have nothing to receive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Idle {
    /// Poll without pause: lowest latency, one whole core per worker.
    Busy,
    /// Poll, then back off to sleeps of up to `idle_sleep_us`; traffic resets the backoff.
    Adaptive,
}

/// Role of a memif port in the memif handshake.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemifRole {
    /// Creates the socket and the shared memory regions.
    Server,
    /// Connects to a server's socket.
    Client,
}

impl MemifRole {
    fn as_str(self) -> &'static str {
        match self {
            Self::Server => "server",
            Self::Client => "client",
        }
    }
}

/// One port kind with its kind-specific settings, each mapped onto its PMD's devargs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PortKind {
    /// `net_af_packet` on a kernel interface (works on any interface, kernel-bound speed).
    AfPacket {
        /// Kernel interface name.
        iface: String,
        /// Ring frames per queue (`framecnt`), PMD default when unset.
        frames: Option<u32>,
    },
    /// `net_af_xdp` on a kernel interface (native XDP where the driver has it).
    AfXdp {
        /// Kernel interface name.
        iface: String,
        /// First device queue to bind (`start_queue`).
        queue: u32,
    },
    /// `net_memif`: shared-memory packet interface to another process.
    Memif {
        /// Control socket path (an abstract socket unless `abstract = false`).
        socket: String,
        /// Server or client end.
        role: MemifRole,
        /// Interface id on the socket; both ends must agree.
        id: u32,
        /// Use the abstract socket namespace (no file on disk).
        abstract_socket: bool,
    },
    /// `net_virtio_user`: the virtio end of a vhost-user socket.
    VirtioUser {
        /// vhost-user socket path.
        path: String,
        /// Create the socket and wait for the vhost end (`server=1`).
        server: bool,
    },
    /// `net_vhost`: the vhost end of a vhost-user socket.
    Vhost {
        /// vhost-user socket path.
        socket: String,
        /// Connect to an existing socket instead of creating it.
        client: bool,
    },
    /// `net_tap`: creates a kernel TAP interface.
    Tap {
        /// Name of the TAP interface to create.
        iface: String,
    },
    /// `net_pcap`: reads and/or writes pcap files or kernel interfaces through libpcap.
    Pcap {
        /// pcap file to replay as received packets.
        rx_pcap: Option<String>,
        /// pcap file to write transmitted packets to.
        tx_pcap: Option<String>,
        /// Kernel interface for both directions.
        iface: Option<String>,
        /// Replay `rx_pcap` forever.
        infinite_rx: bool,
    },
    /// `net_null`: receives synthetic packets (unless `no_rx`), drops what it transmits.
    Null {
        /// Size of the synthetic packets.
        size: u32,
        /// Receive nothing.
        no_rx: bool,
    },
    /// `net_ring`: a loopback ring (what is sent comes back); for tests.
    Ring,
}

/// Every kind name, in the order shown in messages.
pub const PORT_KINDS: &[&str] = &[
    "af_packet",
    "af_xdp",
    "memif",
    "virtio_user",
    "vhost",
    "tap",
    "pcap",
    "null",
    "ring",
];

impl PortKind {
    /// Kind name as written in the config file.
    pub fn name(&self) -> &'static str {
        match self {
            Self::AfPacket { .. } => "af_packet",
            Self::AfXdp { .. } => "af_xdp",
            Self::Memif { .. } => "memif",
            Self::VirtioUser { .. } => "virtio_user",
            Self::Vhost { .. } => "vhost",
            Self::Tap { .. } => "tap",
            Self::Pcap { .. } => "pcap",
            Self::Null { .. } => "null",
            Self::Ring => "ring",
        }
    }

    /// DPDK driver serving this kind; a vdev name must start with it.
    pub fn driver(&self) -> &'static str {
        match self {
            Self::AfPacket { .. } => "net_af_packet",
            Self::AfXdp { .. } => "net_af_xdp",
            Self::Memif { .. } => "net_memif",
            Self::VirtioUser { .. } => "net_virtio_user",
            Self::Vhost { .. } => "net_vhost",
            Self::Tap { .. } => "net_tap",
            Self::Pcap { .. } => "net_pcap",
            Self::Null { .. } => "net_null",
            Self::Ring => "net_ring",
        }
    }

    /// Kernel interface this port needs to exist before it is attached.
    pub fn required_iface(&self) -> Option<&str> {
        match self {
            Self::AfPacket { iface, .. } | Self::AfXdp { iface, .. } => Some(iface),
            Self::Pcap { iface: Some(i), .. } => Some(i),
            _ => None,
        }
    }
}

/// A port: a name operators use and the PMD behind it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortConfig {
    /// Unique name (`[A-Za-z0-9_-]`, at most 32 characters).
    pub name: String,
    /// PMD and its settings.
    pub kind: PortKind,
    /// Rx/tx queue pairs (1-[`MAX_QUEUES`]); queue `i` of a port forwards to queue `i` of its
    /// pair's other port, and each such lane may run on its own worker.
    pub queues: u16,
}

impl PortConfig {
    /// DPDK device name: the driver name, then the port name (`net_af_packet_a`).
    pub fn vdev_name(&self) -> String {
        format!("{}_{}", self.kind.driver(), self.name)
    }

    /// The full devargs string for `rte_dev_probe` (`net_af_packet_a,iface=veth-a`).
    pub fn devargs(&self) -> String {
        let mut args = vec![self.vdev_name()];
        match &self.kind {
            PortKind::AfPacket { iface, frames } => {
                args.push(format!("iface={iface}"));
                // One AF_PACKET socket per queue in a PACKET_FANOUT_HASH group: the kernel's
                // symmetric flow hash puts both directions of a flow on the same queue index.
                args.push(format!("qpairs={}", self.queues));
                if let Some(n) = frames {
                    args.push(format!("framecnt={n}"));
                }
            }
            PortKind::AfXdp { iface, queue } => {
                args.push(format!("iface={iface}"));
                args.push(format!("start_queue={queue}"));
                args.push(format!("queue_count={}", self.queues));
            }
            PortKind::Memif {
                socket,
                role,
                id,
                abstract_socket,
            } => {
                args.push(format!("role={}", role.as_str()));
                args.push(format!("socket={socket}"));
                args.push(format!("id={id}"));
                args.push(format!(
                    "socket-abstract={}",
                    if *abstract_socket { "yes" } else { "no" }
                ));
            }
            PortKind::VirtioUser { path, server } => {
                args.push(format!("path={path}"));
                args.push(format!("queues={}", self.queues));
                args.push(format!("server={}", u8::from(*server)));
            }
            PortKind::Vhost { socket, client } => {
                args.push(format!("iface={socket}"));
                args.push(format!("queues={}", self.queues));
                args.push(format!("client={}", u8::from(*client)));
            }
            PortKind::Tap { iface } => args.push(format!("iface={iface}")),
            PortKind::Pcap {
                rx_pcap,
                tx_pcap,
                iface,
                infinite_rx,
            } => {
                if let Some(p) = rx_pcap {
                    args.push(format!("rx_pcap={p}"));
                }
                if let Some(p) = tx_pcap {
                    args.push(format!("tx_pcap={p}"));
                }
                if let Some(i) = iface {
                    args.push(format!("iface={i}"));
                }
                if *infinite_rx {
                    args.push("infinite_rx=1".to_owned());
                }
            }
            PortKind::Null { size, no_rx } => {
                args.push(format!("size={size}"));
                args.push(format!("no-rx={}", u8::from(*no_rx)));
            }
            PortKind::Ring => {}
        }
        args.join(",")
    }
}

/// Validated `[dataplane]` section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataplaneConfig {
    /// EAL lcores, ascending; the first is the main lcore (control), the rest run workers.
    pub lcores: Vec<u32>,
    /// The CPU each lcore's thread runs on, in `lcores` order: the lcore's own number unless
    /// the list maps it (`2@1`: lcore 2 on CPU 1).
    pub cpus: Vec<u32>,
    /// The lcore list in canonical form: for `-l` (`0,1,2`), or for `--lcores` when some lcore
    /// is mapped to another CPU (`0@0,1@1,2@1`).
    pub lcores_arg: String,
    /// Memory mode.
    pub memory: Memory,
    /// Memory for `no-huge` (`-m`), MiB.
    pub memory_mb: u32,
    /// DPDK file prefix; unique per process on one host.
    pub file_prefix: String,
    /// Idle policy of workers.
    pub idle: Idle,
    /// Longest sleep of an idle worker under the adaptive policy, microseconds.
    pub idle_sleep_us: u32,
    /// Mbufs in the packet pool.
    pub mbufs: u32,
    /// Per-lcore mempool cache size.
    pub mbuf_cache: u32,
    /// Receive descriptors per queue (clamped to what the PMD accepts).
    pub rx_desc: u16,
    /// Transmit descriptors per queue (clamped to what the PMD accepts).
    pub tx_desc: u16,
    /// Seconds between counter log lines; 0 turns them off.
    pub stats_interval_s: u32,
    /// Let the EAL probe PCI devices (physical NICs); off by default.
    pub pci: bool,
    /// Raw EAL arguments appended last.
    pub eal_extra: Vec<String>,
    /// Control socket path (mode 0600).
    pub socket: PathBuf,
    /// Answer a TCP segment dropped by policy with a RST to its sender.
    pub tcp_reset: bool,
    /// Connection-table capacity of each worker.
    pub sessions: u32,
    /// Connection timeouts.
    pub timeouts: crate::conntrack::Timeouts,
    /// Ports, in file order.
    pub ports: Vec<PortConfig>,
    /// Port pairs as indexes into `ports`.
    pub pairs: Vec<[usize; 2]>,
}

impl DataplaneConfig {
    /// Worker lcores: every configured lcore but the main (first) one.
    pub fn worker_lcores(&self) -> &[u32] {
        self.lcores.get(1..).unwrap_or(&[])
    }

    /// Whether some lcore runs on a CPU other than its own number (`--lcores` then).
    pub fn lcores_mapped(&self) -> bool {
        self.lcores != self.cpus
    }

    /// EAL arguments for this config, without the program name.
    pub fn eal_args(&self) -> Vec<String> {
        let flag = if self.lcores_mapped() {
            "--lcores"
        } else {
            "-l"
        };
        let mut a = vec![
            flag.to_owned(),
            self.lcores_arg.clone(),
            "--file-prefix".to_owned(),
            self.file_prefix.clone(),
            // Our own counters replace telemetry; no socket is left in the runtime dir.
            "--no-telemetry".to_owned(),
        ];
        match self.memory {
            // Files are unlinked as soon as they are mapped, so even a killed process leaves
            // none; DPDK refuses that together with --single-file-segments, which is why
            // virtio_user ports want "in-memory".
            Memory::Hugepages => a.push("--huge-unlink".to_owned()),
            Memory::InMemory => {
                a.push("--in-memory".to_owned());
                a.push("--single-file-segments".to_owned());
            }
            Memory::NoHuge => {
                a.push("--no-huge".to_owned());
                a.push("-m".to_owned());
                a.push(self.memory_mb.to_string());
            }
        }
        if !self.pci {
            a.push("--no-pci".to_owned());
        }
        a.extend(self.eal_extra.iter().cloned());
        a
    }

    /// Rough upper bound of the hugepage memory this config needs, in bytes: the packet pool
    /// plus room for the EAL's own heap, rings and PMD state.
    pub fn hugepage_bytes_needed(&self) -> u64 {
        // (Connection tables live in ordinary memory, not hugepages.)
        const MBUF_FOOTPRINT: u64 = 2048 + 128 + 128 + 64; // data room + headroom + header + pad
        const EAL_BASE: u64 = 64 << 20;
        const PER_PORT: u64 = 4 << 20;
        u64::from(self.mbufs) * MBUF_FOOTPRINT + EAL_BASE + PER_PORT * self.ports.len() as u64
    }
}

/// File shape as `palisade-dp` reads it: `[dataplane]` only, other sections are `palisade`'s.
#[derive(Debug, Deserialize)]
struct DpFile {
    dataplane: Option<Spanned<RawDataplane>>,
}

/// `[dataplane]` exactly as written, before validation. `palisade` embeds it in its own
/// whole-file config and calls [`RawDataplane::validate`].
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDataplane {
    #[serde(default)]
    lcores: Option<Spanned<String>>,
    #[serde(default)]
    memory: Option<Memory>,
    #[serde(default)]
    memory_mb: Option<Spanned<u32>>,
    #[serde(default)]
    file_prefix: Option<Spanned<String>>,
    #[serde(default)]
    idle: Option<Idle>,
    #[serde(default)]
    idle_sleep_us: Option<Spanned<u32>>,
    #[serde(default)]
    mbufs: Option<Spanned<u32>>,
    #[serde(default)]
    mbuf_cache: Option<Spanned<u32>>,
    #[serde(default)]
    rx_desc: Option<Spanned<u16>>,
    #[serde(default)]
    tx_desc: Option<Spanned<u16>>,
    #[serde(default)]
    stats_interval_s: Option<u32>,
    #[serde(default)]
    pci: Option<bool>,
    #[serde(default)]
    eal_extra: Vec<String>,
    #[serde(default)]
    sessions: Option<Spanned<u32>>,
    #[serde(default)]
    socket: Option<Spanned<PathBuf>>,
    #[serde(default)]
    tcp_reset: Option<bool>,
    #[serde(default)]
    timeouts: Option<RawTimeouts>,
    #[serde(default)]
    port: Vec<RawPort>,
    #[serde(default)]
    pair: Vec<RawPair>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPort {
    name: Spanned<String>,
    kind: Spanned<String>,
    #[serde(default)]
    iface: Option<Spanned<String>>,
    #[serde(default)]
    frames: Option<Spanned<u32>>,
    #[serde(default)]
    queue: Option<Spanned<u32>>,
    #[serde(default)]
    socket: Option<Spanned<String>>,
    #[serde(default)]
    role: Option<Spanned<String>>,
    #[serde(default)]
    id: Option<Spanned<u32>>,
    #[serde(default, rename = "abstract")]
    abstract_socket: Option<Spanned<bool>>,
    #[serde(default)]
    path: Option<Spanned<String>>,
    #[serde(default)]
    server: Option<Spanned<bool>>,
    #[serde(default)]
    client: Option<Spanned<bool>>,
    #[serde(default)]
    rx_pcap: Option<Spanned<String>>,
    #[serde(default)]
    tx_pcap: Option<Spanned<String>>,
    #[serde(default)]
    infinite_rx: Option<Spanned<bool>>,
    #[serde(default)]
    size: Option<Spanned<u32>>,
    #[serde(default)]
    no_rx: Option<Spanned<bool>>,
    #[serde(default)]
    queues: Option<Spanned<u16>>,
}

/// `[dataplane.timeouts]`, seconds; every key optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTimeouts {
    #[serde(default)]
    tcp_opening: Option<Spanned<u32>>,
    #[serde(default)]
    tcp_established: Option<Spanned<u32>>,
    #[serde(default)]
    tcp_half_closed: Option<Spanned<u32>>,
    #[serde(default)]
    tcp_time_wait: Option<Spanned<u32>>,
    #[serde(default)]
    tcp_closed: Option<Spanned<u32>>,
    #[serde(default)]
    udp: Option<Spanned<u32>>,
    #[serde(default)]
    icmp: Option<Spanned<u32>>,
    #[serde(default)]
    other: Option<Spanned<u32>>,
}

impl RawTimeouts {
    fn validate(&self, src: &Source<'_>) -> Result<crate::conntrack::Timeouts, ConfigError> {
        let mut t = crate::conntrack::Timeouts::default();
        let fields = [
            (&self.tcp_opening, &mut t.opening),
            (&self.tcp_established, &mut t.established),
            (&self.tcp_half_closed, &mut t.half_closed),
            (&self.tcp_time_wait, &mut t.time_wait),
            (&self.tcp_closed, &mut t.closed),
            (&self.udp, &mut t.udp),
            (&self.icmp, &mut t.icmp),
            (&self.other, &mut t.other),
        ];
        for (raw, slot) in fields {
            if let Some(v) = raw {
                if !(1..=86_400).contains(v.get_ref()) {
                    return Err(src.error(v.span(), "a timeout must be 1-86400 seconds"));
                }
                *slot = std::time::Duration::from_secs(u64::from(*v.get_ref()));
            }
        }
        Ok(t)
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPair {
    ports: Spanned<Vec<Spanned<String>>>,
}

/// Defaults, shared with `config/palisade.toml`'s comments.
pub mod defaults {
    /// Main lcore 0 for control, one worker on lcore 1.
    pub const LCORES: &str = "0-1";
    /// DPDK file prefix.
    pub const FILE_PREFIX: &str = "palisade";
    /// `no-huge` memory, MiB.
    pub const MEMORY_MB: u32 = 256;
    /// Longest adaptive idle sleep, microseconds.
    pub const IDLE_SLEEP_US: u32 = 100;
    /// Packet pool size (a power of two minus one suits the mempool ring).
    pub const MBUFS: u32 = 16_383;
    /// Per-lcore mempool cache.
    pub const MBUF_CACHE: u32 = 256;
    /// Descriptors per rx queue.
    pub const RX_DESC: u16 = 1024;
    /// Descriptors per tx queue.
    pub const TX_DESC: u16 = 1024;
    /// Counter log period, seconds.
    pub const STATS_INTERVAL_S: u32 = 10;
    /// Connection-table capacity per worker: 1M sessions.
    pub const SESSIONS: u32 = 1 << 20;
    /// Control socket.
    pub const SOCKET: &str = "/run/palisade/dp.sock";
    /// `net_null` synthetic packet size.
    pub const NULL_SIZE: u32 = 64;
}

/// Reads and validates the `[dataplane]` section of the file at `path`.
pub fn load(path: &Path) -> Result<DataplaneConfig, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    parse(&text, path)
}

/// Validates the `[dataplane]` section of `text` (read from `path`, used in messages).
pub fn parse(text: &str, path: &Path) -> Result<DataplaneConfig, ConfigError> {
    let src = Source { path, text };
    let file: DpFile = toml::from_str(text).map_err(|e| src.toml_error(&e))?;
    let Some(section) = file.dataplane else {
        return Err(src.error(0..0, "missing section [dataplane]"));
    };
    section.into_inner().validate(&src)
}

/// Validates one port given as the body of a `[[dataplane.port]]` table (`name = "a"`,
/// `kind = "af_packet"`, ...), with exactly the checks and messages of [`parse`]. The control
/// socket's `AddPair` carries ports in this shape; cross-port checks (unique names and
/// interfaces) are the caller's.
pub fn parse_port(text: &str, path: &Path) -> Result<PortConfig, ConfigError> {
    let src = Source { path, text };
    let raw: RawPort = toml::from_str(text).map_err(|e| src.toml_error(&e))?;
    raw.validate(&src)
}

/// Parses an EAL lcore list (`0-1`, `0,2,4-7`) into ascending unique ids.
pub fn parse_lcores(s: &str) -> Result<Vec<u32>, String> {
    let mut set = BTreeSet::new();
    if s.trim().is_empty() {
        return Err("lcore list is empty".to_owned());
    }
    for part in s.split(',') {
        let part = part.trim();
        let (lo, hi) = match part.split_once('-') {
            Some((a, b)) => (parse_lcore(a)?, parse_lcore(b)?),
            None => {
                let v = parse_lcore(part)?;
                (v, v)
            }
        };
        if lo > hi {
            return Err(format!("lcore range `{part}` runs backwards"));
        }
        set.extend(lo..=hi);
    }
    Ok(set.into_iter().collect())
}

/// Parses an lcore list that may map single lcores to other CPUs (`0-1,2@1`: lcores 0 and 1
/// on their own CPUs, lcore 2 on CPU 1, as EAL's `--lcores` spells it) into ascending
/// `(lcore, cpu)` pairs. Lets more workers than CPUs share them (tests on small machines).
pub fn parse_lcore_map(s: &str) -> Result<Vec<(u32, u32)>, String> {
    let mut map = std::collections::BTreeMap::new();
    let mut plain = String::new();
    for part in s.split(',') {
        match part.split_once('@') {
            Some((l, c)) => {
                let (l, c) = (parse_lcore(l)?, parse_lcore(c)?);
                if map.insert(l, c).is_some_and(|old| old != c) {
                    return Err(format!("lcore {l} is mapped to two CPUs"));
                }
            }
            None => {
                if !plain.is_empty() {
                    plain.push(',');
                }
                plain.push_str(part);
            }
        }
    }
    if !plain.is_empty() || map.is_empty() {
        for l in parse_lcores(&plain)? {
            if map.insert(l, l).is_some_and(|old| old != l) {
                return Err(format!("lcore {l} is mapped to two CPUs"));
            }
        }
    }
    Ok(map.into_iter().collect())
}

fn parse_lcore(s: &str) -> Result<u32, String> {
    let v: u32 = s
        .trim()
        .parse()
        .map_err(|_| format!("`{}` is not an lcore number", s.trim()))?;
    if v >= MAX_LCORE {
        return Err(format!(
            "lcore {v} is out of range (DPDK allows 0-{})",
            MAX_LCORE - 1
        ));
    }
    Ok(v)
}

/// Both ports of a pair have the same number of queues: queue `i` of one forwards to queue `i`
/// of the other.
pub fn check_pair_queues(a: &PortConfig, b: &PortConfig) -> Result<(), String> {
    if a.queues == b.queues {
        return Ok(());
    }
    let n = |q: u16| format!("{q} queue{}", if q == 1 { "" } else { "s" });
    Err(format!(
        "ports `{}` ({}) and `{}` ({}) form a pair and need the same `queues`: queue i of one forwards to queue i of the other",
        a.name,
        n(a.queues),
        b.name,
        n(b.queues)
    ))
}

fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= MAX_PORT_NAME
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// Devargs are `key=value` pairs separated by commas: a value may not contain either.
fn devarg_safe(s: &str) -> bool {
    !s.is_empty() && !s.contains([',', '=', '\n', '\0'])
}

fn check_iface(src: &Source<'_>, v: &Spanned<String>) -> Result<String, ConfigError> {
    let s = v.get_ref();
    if s.is_empty()
        || s.len() > MAX_IFACE_NAME
        || s.contains(['/', ' ', ',', '=', ':'])
        || s == "."
        || s == ".."
    {
        return Err(src.error(
            v.span(),
            format!("`{s}` is not a valid interface name (1-{MAX_IFACE_NAME} characters, no '/', ' ', ',', '=' or ':')"),
        ));
    }
    Ok(s.clone())
}

fn check_value(src: &Source<'_>, key: &str, v: &Spanned<String>) -> Result<String, ConfigError> {
    if !devarg_safe(v.get_ref()) {
        return Err(src.error(
            v.span(),
            format!("`{key}` must be non-empty and may not contain ',' or '='"),
        ));
    }
    Ok(v.get_ref().clone())
}

impl RawPort {
    /// Keys present in this table besides `name` and `kind`, with their spans.
    fn present_keys(&self) -> Vec<(&'static str, Range<usize>)> {
        let mut keys = Vec::new();
        let mut push = |k: &'static str, span: Option<Range<usize>>| {
            if let Some(s) = span {
                keys.push((k, s));
            }
        };
        push("iface", self.iface.as_ref().map(Spanned::span));
        push("frames", self.frames.as_ref().map(Spanned::span));
        push("queue", self.queue.as_ref().map(Spanned::span));
        push("socket", self.socket.as_ref().map(Spanned::span));
        push("role", self.role.as_ref().map(Spanned::span));
        push("id", self.id.as_ref().map(Spanned::span));
        push("abstract", self.abstract_socket.as_ref().map(Spanned::span));
        push("path", self.path.as_ref().map(Spanned::span));
        push("server", self.server.as_ref().map(Spanned::span));
        push("client", self.client.as_ref().map(Spanned::span));
        push("rx_pcap", self.rx_pcap.as_ref().map(Spanned::span));
        push("tx_pcap", self.tx_pcap.as_ref().map(Spanned::span));
        push("infinite_rx", self.infinite_rx.as_ref().map(Spanned::span));
        push("size", self.size.as_ref().map(Spanned::span));
        push("no_rx", self.no_rx.as_ref().map(Spanned::span));
        push("queues", self.queues.as_ref().map(Spanned::span));
        keys
    }

    fn validate(&self, src: &Source<'_>) -> Result<PortConfig, ConfigError> {
        let name = self.name.get_ref();
        if !valid_name(name) {
            return Err(src.error(
                self.name.span(),
                format!(
                    "port name `{name}` must be 1-{MAX_PORT_NAME} characters of letters, digits, '_' and '-'"
                ),
            ));
        }
        let kind_name = self.kind.get_ref().as_str();
        let allowed: &[&str] = match kind_name {
            "af_packet" => &["iface", "frames", "queues"],
            "af_xdp" => &["iface", "queue", "queues"],
            "memif" => &["socket", "role", "id", "abstract", "queues"],
            "virtio_user" => &["path", "server", "queues"],
            "vhost" => &["socket", "client", "queues"],
            "tap" => &["iface", "queues"],
            "pcap" => &["rx_pcap", "tx_pcap", "iface", "infinite_rx"],
            "null" => &["size", "no_rx", "queues"],
            "ring" => &[],
            other => {
                return Err(src.error(
                    self.kind.span(),
                    format!(
                        "unknown port kind `{other}`; expected one of {}",
                        PORT_KINDS.join(", ")
                    ),
                ));
            }
        };
        for (key, span) in self.present_keys() {
            if !allowed.contains(&key) {
                let hint = if allowed.is_empty() {
                    "it takes no other keys".to_owned()
                } else {
                    format!("it takes {}", allowed.join(", "))
                };
                return Err(src.error(
                    span,
                    format!("key `{key}` does not apply to a {kind_name} port ({hint})"),
                ));
            }
        }
        let need =
            |v: &Option<Spanned<String>>, key: &str| -> Result<Spanned<String>, ConfigError> {
                v.clone().ok_or_else(|| {
                    src.error(
                        self.kind.span(),
                        format!("port `{name}`: a {kind_name} port needs `{key}`"),
                    )
                })
            };
        let kind = match kind_name {
            "af_packet" => PortKind::AfPacket {
                iface: check_iface(src, &need(&self.iface, "iface")?)?,
                frames: match &self.frames {
                    Some(f) if *f.get_ref() == 0 || !f.get_ref().is_power_of_two() => {
                        return Err(src.error(f.span(), "`frames` must be a power of two"));
                    }
                    f => f.as_ref().map(|f| *f.get_ref()),
                },
            },
            "af_xdp" => PortKind::AfXdp {
                iface: check_iface(src, &need(&self.iface, "iface")?)?,
                queue: self.queue.as_ref().map_or(0, |q| *q.get_ref()),
            },
            "memif" => {
                let role = match self.role.as_ref() {
                    None => MemifRole::Client,
                    Some(r) => match r.get_ref().as_str() {
                        "server" => MemifRole::Server,
                        "client" => MemifRole::Client,
                        other => {
                            return Err(src.error(
                                r.span(),
                                format!("memif `role` is `server` or `client`, not `{other}`"),
                            ));
                        }
                    },
                };
                PortKind::Memif {
                    socket: check_value(src, "socket", &need(&self.socket, "socket")?)?,
                    role,
                    id: self.id.as_ref().map_or(0, |i| *i.get_ref()),
                    abstract_socket: self.abstract_socket.as_ref().is_none_or(|a| *a.get_ref()),
                }
            }
            "virtio_user" => PortKind::VirtioUser {
                path: check_value(src, "path", &need(&self.path, "path")?)?,
                server: self.server.as_ref().is_some_and(|s| *s.get_ref()),
            },
            "vhost" => PortKind::Vhost {
                socket: check_value(src, "socket", &need(&self.socket, "socket")?)?,
                client: self.client.as_ref().is_some_and(|c| *c.get_ref()),
            },
            "tap" => PortKind::Tap {
                iface: check_iface(src, &need(&self.iface, "iface")?)?,
            },
            "pcap" => {
                let opt = |v: &Option<Spanned<String>>, key| {
                    v.as_ref().map(|v| check_value(src, key, v)).transpose()
                };
                let kind = PortKind::Pcap {
                    rx_pcap: opt(&self.rx_pcap, "rx_pcap")?,
                    tx_pcap: opt(&self.tx_pcap, "tx_pcap")?,
                    iface: self
                        .iface
                        .as_ref()
                        .map(|i| check_iface(src, i))
                        .transpose()?,
                    infinite_rx: self.infinite_rx.as_ref().is_some_and(|v| *v.get_ref()),
                };
                if let PortKind::Pcap {
                    rx_pcap: None,
                    tx_pcap: None,
                    iface: None,
                    ..
                } = kind
                {
                    return Err(src.error(
                        self.kind.span(),
                        format!("port `{name}`: a pcap port needs `rx_pcap`, `tx_pcap` or `iface`"),
                    ));
                }
                kind
            }
            "null" => PortKind::Null {
                size: match &self.size {
                    Some(s) if !(14..=9000).contains(s.get_ref()) => {
                        return Err(src.error(s.span(), "`size` must be 14-9000 bytes"));
                    }
                    s => s.as_ref().map_or(defaults::NULL_SIZE, |s| *s.get_ref()),
                },
                no_rx: self.no_rx.as_ref().is_some_and(|v| *v.get_ref()),
            },
            _ => PortKind::Ring,
        };
        let queues = match &self.queues {
            None => 1,
            Some(q) if (1..=MAX_QUEUES).contains(q.get_ref()) => *q.get_ref(),
            Some(q) => {
                return Err(src.error(q.span(), format!("`queues` must be 1-{MAX_QUEUES}")));
            }
        };
        Ok(PortConfig {
            name: name.clone(),
            kind,
            queues,
        })
    }
}

fn positive<T: Copy + PartialOrd + Default + fmt::Display>(
    src: &Source<'_>,
    key: &str,
    v: Option<&Spanned<T>>,
    default: T,
) -> Result<T, ConfigError> {
    match v {
        None => Ok(default),
        Some(v) if *v.get_ref() > T::default() => Ok(*v.get_ref()),
        Some(v) => Err(src.error(v.span(), format!("`{key}` must be greater than 0"))),
    }
}

impl RawDataplane {
    /// Checks every value and cross-reference; errors point into `src`.
    pub fn validate(self, src: &Source<'_>) -> Result<DataplaneConfig, ConfigError> {
        let map = match &self.lcores {
            None => parse_lcore_map(defaults::LCORES).map_err(|m| src.error(0..0, m))?,
            Some(l) => {
                let map = parse_lcore_map(l.get_ref()).map_err(|m| src.error(l.span(), m))?;
                if map.len() < 2 {
                    return Err(src.error(
                        l.span(),
                        "`lcores` must name at least two lcores: the first serves control, the others run workers",
                    ));
                }
                map
            }
        };
        let lcores: Vec<u32> = map.iter().map(|(l, _)| *l).collect();
        let cpus: Vec<u32> = map.iter().map(|(_, c)| *c).collect();
        let lcores_arg = if lcores == cpus {
            lcores
                .iter()
                .map(u32::to_string)
                .collect::<Vec<_>>()
                .join(",")
        } else {
            map.iter()
                .map(|(l, c)| format!("{l}@{c}"))
                .collect::<Vec<_>>()
                .join(",")
        };

        let file_prefix = match &self.file_prefix {
            None => defaults::FILE_PREFIX.to_owned(),
            Some(p) => {
                let s = p.get_ref();
                if !valid_name(s) {
                    return Err(src.error(
                        p.span(),
                        format!("`file_prefix` must be 1-{MAX_PORT_NAME} characters of letters, digits, '_' and '-'"),
                    ));
                }
                s.clone()
            }
        };

        let idle_sleep_us = positive(
            src,
            "idle_sleep_us",
            self.idle_sleep_us.as_ref(),
            defaults::IDLE_SLEEP_US,
        )?;
        if let Some(v) = &self.idle_sleep_us
            && *v.get_ref() > 100_000
        {
            return Err(src.error(v.span(), "`idle_sleep_us` must be at most 100000 (0.1 s)"));
        }
        let mbufs = positive(src, "mbufs", self.mbufs.as_ref(), defaults::MBUFS)?;
        if mbufs < 1024 {
            let span = self.mbufs.as_ref().map_or(0..0, Spanned::span);
            return Err(src.error(span, "`mbufs` must be at least 1024"));
        }
        let mbuf_cache = match &self.mbuf_cache {
            None => defaults::MBUF_CACHE,
            Some(c) if *c.get_ref() <= 512 && *c.get_ref() <= mbufs / 8 => *c.get_ref(),
            Some(c) => {
                return Err(src.error(
                    c.span(),
                    "`mbuf_cache` must be at most 512 and at most mbufs / 8",
                ));
            }
        };
        let rx_desc = positive(src, "rx_desc", self.rx_desc.as_ref(), defaults::RX_DESC)?;
        let tx_desc = positive(src, "tx_desc", self.tx_desc.as_ref(), defaults::TX_DESC)?;
        let memory_mb = positive(
            src,
            "memory_mb",
            self.memory_mb.as_ref(),
            defaults::MEMORY_MB,
        )?;
        let sessions = match &self.sessions {
            None => defaults::SESSIONS,
            Some(v) if (64..=1 << 24).contains(v.get_ref()) => *v.get_ref(),
            Some(v) => return Err(src.error(v.span(), "`sessions` must be 64-16777216")),
        };
        let socket = match &self.socket {
            None => PathBuf::from(defaults::SOCKET),
            Some(p) if p.get_ref().is_absolute() && p.get_ref().file_name().is_some() => {
                p.get_ref().clone()
            }
            Some(p) => {
                return Err(src.error(p.span(), "`socket` must be an absolute path to a file"));
            }
        };
        let timeouts = match &self.timeouts {
            None => crate::conntrack::Timeouts::default(),
            Some(t) => t.validate(src)?,
        };

        let mut ports: Vec<PortConfig> = Vec::with_capacity(self.port.len());
        for p in &self.port {
            let cfg = p.validate(src)?;
            if ports.iter().any(|q| q.name == cfg.name) {
                return Err(src.error(
                    p.name.span(),
                    format!("port `{}` is defined twice", cfg.name),
                ));
            }
            if let Some(iface) = cfg.kind.required_iface()
                && let Some(q) = ports
                    .iter()
                    .find(|q| q.kind.required_iface() == Some(iface))
            {
                return Err(src.error(
                    p.name.span(),
                    format!(
                        "ports `{}` and `{}` both use interface `{iface}`",
                        q.name, cfg.name
                    ),
                ));
            }
            ports.push(cfg);
        }

        let mut pairs = Vec::with_capacity(self.pair.len());
        let mut paired = vec![false; ports.len()];
        for pair in &self.pair {
            let names = pair.ports.get_ref();
            if names.len() != 2 {
                return Err(src.error(
                    pair.ports.span(),
                    format!(
                        "a pair joins exactly two ports, this one names {}",
                        names.len()
                    ),
                ));
            }
            let mut idx = [0usize; 2];
            for (slot, n) in idx.iter_mut().zip(names) {
                let Some(i) = ports.iter().position(|p| p.name == *n.get_ref()) else {
                    return Err(src.error(
                        n.span(),
                        format!(
                            "pair names port `{}`, which no [[dataplane.port]] defines",
                            n.get_ref()
                        ),
                    ));
                };
                if paired[i] {
                    return Err(src.error(
                        n.span(),
                        format!("port `{}` is already in another pair", n.get_ref()),
                    ));
                }
                paired[i] = true;
                *slot = i;
            }
            if idx[0] == idx[1] {
                return Err(src.error(pair.ports.span(), "a pair needs two different ports"));
            }
            if let Err(m) = check_pair_queues(&ports[idx[0]], &ports[idx[1]]) {
                return Err(src.error(pair.ports.span(), m));
            }
            pairs.push(idx);
        }
        if let Some(i) = paired.iter().position(|p| !p) {
            return Err(src.error(
                self.port[i].name.span(),
                format!(
                    "port `{}` is in no [[dataplane.pair]]; every port forwards to its pair's other port",
                    ports[i].name
                ),
            ));
        }

        Ok(DataplaneConfig {
            lcores,
            cpus,
            lcores_arg,
            memory: self.memory.unwrap_or(Memory::InMemory),
            memory_mb,
            file_prefix,
            idle: self.idle.unwrap_or(Idle::Adaptive),
            idle_sleep_us,
            mbufs,
            mbuf_cache,
            rx_desc,
            tx_desc,
            stats_interval_s: self.stats_interval_s.unwrap_or(defaults::STATS_INTERVAL_S),
            pci: self.pci.unwrap_or(false),
            eal_extra: self.eal_extra,
            socket,
            tcp_reset: self.tcp_reset.unwrap_or(true),
            sessions,
            timeouts,
            ports,
            pairs,
        })
    }
}

#[cfg(test)]
mod tests;
