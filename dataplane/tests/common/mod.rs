//! Shared pieces of the DPDK tests. Each test binary runs one test per process (nextest), so
//! every test initialises its own EAL with a file prefix unique to its process.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use dataplane::config::{self, DataplaneConfig};
use dataplane::dpdk::{Eal, Mbuf, Mempool, Port, Ring};

/// A config with the given ports/pairs text, an in-memory EAL on lcores 0-1, and a prefix
/// unique to this process.
pub fn config(ports: &str) -> DataplaneConfig {
    let text = format!(
        "[dataplane]\nlcores = \"0-1\"\nmemory = \"in-memory\"\nfile_prefix = \"pt{}\"\nmbufs = 8191\nsessions = 4096\nidle = \"adaptive\"\nidle_sleep_us = 50\n{ports}",
        std::process::id()
    );
    config::parse(&text, Path::new("test.toml")).unwrap_or_else(|e| panic!("test config: {e}"))
}

/// Initialises this process's EAL.
pub fn eal() -> (Eal, DataplaneConfig) {
    let _ = tracing_subscriber::fmt()
        .with_test_writer()
        .with_env_filter("info")
        .try_init();
    let cfg = config("");
    let eal = Eal::init(&cfg.eal_args()).unwrap_or_else(|e| panic!("{e}"));
    (eal, cfg)
}

/// A ring port: the test enqueues into `rx` (the port receives it) and dequeues from `tx`
/// (what the port sent).
pub struct RingPort {
    pub port: Port,
    pub rx: Arc<Ring>,
    pub tx: Arc<Ring>,
}

pub fn ring_port(eal: &Eal, name: &str, rx_size: u32, tx_size: u32) -> RingPort {
    let rx = Arc::new(Ring::new(eal, &format!("{name}_rx"), rx_size).unwrap());
    let tx = Arc::new(Ring::new(eal, &format!("{name}_tx"), tx_size).unwrap());
    let port = Port::from_rings(eal, name, Arc::clone(&rx), Arc::clone(&tx)).unwrap();
    RingPort { port, rx, tx }
}

/// An Ethernet/IPv4/UDP frame of `len` bytes (at least 46) carrying `seq` after the UDP
/// header, between 198.18.0.1 and 198.18.0.2.
pub fn frame(seq: u32, len: usize) -> Vec<u8> {
    assert!(len >= 46);
    let mut f = vec![0u8; len];
    f[0..6].copy_from_slice(&[0x02, 0, 0, 0, 0, 2]);
    f[6..12].copy_from_slice(&[0x02, 0, 0, 0, 0, 1]);
    f[12..14].copy_from_slice(&[0x08, 0x00]);
    let ip_len = (len - 14) as u16;
    f[14] = 0x45;
    f[16..18].copy_from_slice(&ip_len.to_be_bytes());
    f[22] = 64;
    f[23] = 17;
    f[26..30].copy_from_slice(&[198, 18, 0, 1]);
    f[30..34].copy_from_slice(&[198, 18, 0, 2]);
    f[34..36].copy_from_slice(&4000u16.to_be_bytes());
    f[36..38].copy_from_slice(&5000u16.to_be_bytes());
    f[38..40].copy_from_slice(&(ip_len - 20).to_be_bytes());
    f[42..46].copy_from_slice(&seq.to_be_bytes());
    f
}

/// The sequence number [`frame`] put in.
pub fn seq_of(data: &[u8]) -> u32 {
    u32::from_be_bytes(data[42..46].try_into().unwrap())
}

/// Enqueues frames `first..first + n` into `ring`, waiting for room as needed.
pub fn inject(pool: &Mempool, ring: &Ring, first: u32, n: u32, len: usize) {
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut next = first;
    while next < first + n {
        let chunk: Vec<Mbuf> = (next..(next + 64).min(first + n))
            .map(|s| Mbuf::from_slice(pool, &frame(s, len)).expect("pool exhausted"))
            .collect();
        let sent = chunk.len() as u32 - ring.enqueue(chunk).len() as u32;
        next += sent;
        if sent == 0 {
            assert!(Instant::now() < deadline, "ring stayed full for 60 s");
            std::thread::sleep(Duration::from_micros(100));
        }
    }
}

/// Polls `cond` until it holds or `timeout` passes; returns whether it held. Tests assert exact
/// counters afterwards: the timeout only bounds a hang, it is not a performance assertion.
pub fn wait_until(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

pub const WAIT: Duration = Duration::from_secs(30);
