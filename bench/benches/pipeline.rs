//! Criterion micro-benchmarks of the packet pipeline's steps, per packet:
//!
//! - `parse`: `wire::parse` of an IPv4/TCP segment with a timestamp option and 64 B payload;
//! - `conntrack_hit/N`: tracking a packet of an existing flow in a table of N sessions
//!   (flows visited in a scattered order, so large tables miss the CPU caches as they would);
//! - `conntrack_insert/N`: a packet of a new flow, looked up and inserted, next to N sessions;
//! - `dpi_first_packet/<app>`: a fresh session's first payload (HTTP request, TLS ClientHello);
//! - `established/N`: the whole path of an established flow through `Pipeline::process`
//!   (parse + conntrack hit + the session's cached state), the path with a 100-cycle goal;
//! - `established_burst/{plain,prefetched}`: the same for 10k flows in a table of the default
//!   1M sessions (the `protect-10k` benchmark's shape), a burst of 32 at a time as a worker
//!   takes it: `process` alone, or the burst's software pipeline as the worker runs it
//!   (`Pipeline::prepare` over the burst, then `prefetch_session`, then `process_prepared`).
//!
//! `scripts/bench.sh` runs these and converts the times to cycles with the TSC frequency,
//! next to `dpdk-testpmd` io-forward's cycles per packet measured in the same run.

// A benchmark that cannot set up has nothing to measure.
#![allow(clippy::expect_used)]

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use dataplane::conntrack::{self, FlowKey, Table, Timestamp};
use dataplane::dpi;
use dataplane::pipeline::{Config, FlowState, Pipeline, Prepared};
use dataplane::policy::ActivePolicy;
use dataplane::wire::{self, TcpFlags};

const SIZES: [usize; 3] = [1_000, 100_000, 1_000_000];

/// An Ethernet/IPv4/TCP frame from 10.(i>>16).(i>>8).i:40000 to 10.255.0.1:80 with `flags`, a
/// timestamp option and 64 bytes of payload.
fn frame(i: u32, flags: u8) -> Vec<u8> {
    frame_with(i, flags, &[0x61u8; 64])
}

fn frame_with(i: u32, flags: u8, payload: &[u8]) -> Vec<u8> {
    let mut f = vec![2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1, 0x08, 0x00];
    let tcp_len = 32 + payload.len();
    let total = (20 + tcp_len) as u16;
    f.extend_from_slice(&[0x45, 0]);
    f.extend_from_slice(&total.to_be_bytes());
    f.extend_from_slice(&[0, 1, 0x40, 0, 64, 6, 0, 0]);
    f.extend_from_slice(&[10, (i >> 16) as u8, (i >> 8) as u8, i as u8]);
    f.extend_from_slice(&[10, 255, 0, 1]);
    f.extend_from_slice(&40000u16.to_be_bytes());
    f.extend_from_slice(&80u16.to_be_bytes());
    f.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 1, 0x80, flags, 0xff, 0xff, 0, 0, 0, 0]);
    f.extend_from_slice(&[1, 1, 8, 10, 0, 0, 0, 1, 0, 0, 0, 2]);
    f.extend_from_slice(payload);
    f
}

fn key(i: u32) -> (FlowKey, conntrack::Side) {
    let src = IpAddr::V4(Ipv4Addr::new(10, (i >> 16) as u8, (i >> 8) as u8, i as u8));
    FlowKey::new(6, src, 40000, IpAddr::V4(Ipv4Addr::new(10, 255, 0, 1)), 80)
}

/// A multiplicative walk over 0..n that visits every index once per cycle, scattered.
fn scatter(n: usize) -> Vec<u32> {
    let mut v: Vec<u32> = (0..n as u32).collect();
    let mut x = 0x9e37_79b9u64;
    for i in (1..v.len()).rev() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        v.swap(i, (x % (i as u64 + 1)) as usize);
    }
    v
}

fn table(n: usize, spare: usize) -> Table<FlowState> {
    let mut t = Table::with_capacity(conntrack::Config::with_capacity(n + spare)).expect("table");
    for i in 0..n as u32 {
        let (key, from) = key(i);
        let p = conntrack::PacketMeta {
            key,
            from,
            tcp_flags: TcpFlags::SYN,
            len: 60,
        };
        let _ = t.track(&p, Timestamp::from_secs(1));
    }
    t
}

fn parse(c: &mut Criterion) {
    let f = frame(1, 0x10);
    let mut g = c.benchmark_group("parse");
    g.throughput(Throughput::Elements(1));
    g.bench_function("ipv4_tcp", |b| {
        b.iter(|| wire::parse(black_box(&f)).is_ok())
    });
    g.finish();
}

fn conntrack_hit(c: &mut Criterion) {
    let mut g = c.benchmark_group("conntrack_hit");
    g.throughput(Throughput::Elements(1));
    for n in SIZES {
        let mut t = table(n, 0);
        let order = scatter(n);
        let keys: Vec<_> = order.iter().map(|&i| key(i)).collect();
        let mut at = 0usize;
        g.bench_with_input(BenchmarkId::from_parameter(n), &n, |b, _| {
            b.iter(|| {
                let (key, from) = keys[at];
                at = if at + 1 == keys.len() { 0 } else { at + 1 };
                let p = conntrack::PacketMeta {
                    key,
                    from,
                    tcp_flags: TcpFlags::ACK,
                    len: 116,
                };
                t.track(black_box(&p), Timestamp::from_secs(2)).is_ok()
            })
        });
    }
    g.finish();
}

fn conntrack_insert(c: &mut Criterion) {
    let mut g = c.benchmark_group("conntrack_insert");
    g.throughput(Throughput::Elements(1));
    const FRESH: u32 = 4096;
    for n in SIZES {
        let mut t = table(n, FRESH as usize);
        // Keys beyond the preloaded ones: inserted in timed chunks, removed untimed.
        let fresh: Vec<_> = (0..FRESH).map(|i| key(n as u32 + i)).collect();
        g.bench_with_input(BenchmarkId::from_parameter(n), &n, |b, _| {
            b.iter_custom(|iters| {
                let mut spent = Duration::ZERO;
                let mut left = iters;
                while left > 0 {
                    let chunk = left.min(u64::from(FRESH)) as usize;
                    let start = Instant::now();
                    for &(key, from) in &fresh[..chunk] {
                        let p = conntrack::PacketMeta {
                            key,
                            from,
                            tcp_flags: TcpFlags::SYN,
                            len: 60,
                        };
                        black_box(t.track(&p, Timestamp::from_secs(2)).is_ok());
                    }
                    spent += start.elapsed();
                    for (key, _) in &fresh[..chunk] {
                        t.remove(key);
                    }
                    left -= chunk as u64;
                }
                spent
            })
        });
    }
    g.finish();
}

fn dpi_first_packet(c: &mut Criterion) {
    let mut g = c.benchmark_group("dpi_first_packet");
    g.throughput(Throughput::Elements(1));
    let http = b"GET /index.html HTTP/1.1\r\nHost: example.test\r\nUser-Agent: curl/7.88.1\r\nAccept: */*\r\n\r\n".to_vec();
    // A TLS 1.3 ClientHello (record + handshake headers, SNI example.test, ALPN h2), built
    // by hand so the bench needs no fixture file.
    let tls = client_hello();
    for (name, payload, port) in [("http", http, 80u16), ("tls", tls, 443)] {
        let flow = dpi::Flow {
            transport: dpi::Transport::Tcp,
            client_port: 40000,
            server_port: port,
        };
        g.bench_function(name, |b| {
            b.iter(|| {
                let mut s = dpi::State::default();
                black_box(s.inspect(&flow, dpi::Dir::ClientToServer, black_box(&payload)));
                s.app()
            })
        });
    }
    g.finish();
}

fn client_hello() -> Vec<u8> {
    let sni = b"example.test";
    let mut ext = Vec::new();
    // server_name
    let mut sn = vec![0u8];
    sn.extend_from_slice(&(sni.len() as u16).to_be_bytes());
    sn.extend_from_slice(sni);
    let mut sn_list = (sn.len() as u16).to_be_bytes().to_vec();
    sn_list.extend_from_slice(&sn);
    ext.extend_from_slice(&[0, 0]);
    ext.extend_from_slice(&(sn_list.len() as u16).to_be_bytes());
    ext.extend_from_slice(&sn_list);
    // ALPN h2
    ext.extend_from_slice(&[0, 16, 0, 5, 0, 3, 2, b'h', b'2']);
    // supported_versions: TLS 1.3
    ext.extend_from_slice(&[0, 43, 0, 3, 2, 3, 4]);
    let mut body = vec![3, 3];
    body.extend_from_slice(&[0x11; 32]); // random
    body.push(0); // session id
    body.extend_from_slice(&[0, 2, 0x13, 0x01]); // one cipher suite
    body.extend_from_slice(&[1, 0]); // compression: null
    body.extend_from_slice(&(ext.len() as u16).to_be_bytes());
    body.extend_from_slice(&ext);
    let mut hs = vec![1];
    hs.extend_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
    hs.extend_from_slice(&body);
    let mut rec = vec![22, 3, 1];
    rec.extend_from_slice(&(hs.len() as u16).to_be_bytes());
    rec.extend_from_slice(&hs);
    rec
}

fn established(c: &mut Criterion) {
    let mut g = c.benchmark_group("established");
    g.throughput(Throughput::Elements(1));
    // No workloads: sessions carry the unenforced decision, computed on their first packet.
    let policy = ActivePolicy::empty().expect("empty policy");
    for n in SIZES {
        let mut p = settled(n, n, &policy);
        let frames: Vec<Vec<u8>> = scatter(n.min(65_536))
            .iter()
            .map(|&i| frame(i * (n as u32 / n.min(65_536) as u32), 0x10))
            .collect();
        let mut at = 0usize;
        g.bench_with_input(BenchmarkId::from_parameter(n), &n, |b, _| {
            b.iter(|| {
                let f = &frames[at];
                at = if at + 1 == frames.len() { 0 } else { at + 1 };
                judge(&mut p, black_box(f), None, &policy)
            })
        });
    }
    g.finish();
}

/// A pipeline of `capacity` sessions with flows 0..`flows` opened by an HTTP request each, so
/// DPI has decided and every session is settled.
fn settled(capacity: usize, flows: usize, policy: &ActivePolicy) -> Pipeline<()> {
    let mut p: Pipeline<()> =
        Pipeline::new(Config::with_capacity(capacity), None).expect("pipeline");
    let get = b"GET / HTTP/1.1\r\nHost: example.test\r\n\r\n";
    for i in 0..flows as u32 {
        let _ = p.process(
            &frame_with(i, 0x02, get),
            Timestamp::from_secs(1),
            policy,
            (),
            |_, _| {},
            |_| {},
        );
    }
    p
}

/// Judges `frame` (through `process`, or `process_prepared` when `prepared` is given);
/// whether a verdict came out.
fn judge(
    p: &mut Pipeline<()>,
    frame: &[u8],
    prepared: Option<&Prepared<'_>>,
    policy: &ActivePolicy,
) -> bool {
    let now = Timestamp::from_secs(2);
    let step = match prepared {
        Some(x) => p.process_prepared(frame, x, now, policy, (), |_, _| {}, |_| {}),
        None => p.process(frame, now, policy, (), |_, _| {}, |_| {}),
    };
    matches!(step, dataplane::pipeline::Step::Done(..))
}

fn established_burst(c: &mut Criterion) {
    const FLOWS: usize = 10_000;
    const BURST: usize = 32;
    let mut g = c.benchmark_group("established_burst");
    g.throughput(Throughput::Elements(BURST as u64));
    let policy = ActivePolicy::empty().expect("empty policy");
    let mut p = settled(1 << 20, FLOWS, &policy);
    let frames: Vec<Vec<u8>> = scatter(FLOWS).iter().map(|&i| frame(i, 0x10)).collect();
    for prefetched in [false, true] {
        let mut at = 0usize;
        let id = if prefetched { "prefetched" } else { "plain" };
        g.bench_function(id, |b| {
            b.iter(|| {
                let burst = &frames[at..at + BURST];
                at = if at + 2 * BURST > frames.len() {
                    0
                } else {
                    at + BURST
                };
                let mut done = 0;
                if prefetched {
                    // As the worker does it: on the stack, each frame parsed once.
                    let mut prepared = [None::<Prepared<'_>>; BURST];
                    for (x, f) in prepared.iter_mut().zip(burst) {
                        *x = Some(p.prepare(black_box(f)));
                    }
                    for x in prepared.iter().flatten() {
                        p.prefetch_session(x);
                    }
                    for (f, x) in burst.iter().zip(&prepared) {
                        done += usize::from(judge(&mut p, f, x.as_ref(), &policy));
                    }
                } else {
                    for f in burst {
                        done += usize::from(judge(&mut p, black_box(f), None, &policy));
                    }
                }
                done
            })
        });
    }
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(3)).sample_size(30);
    targets = parse, conntrack_hit, conntrack_insert, dpi_first_packet, established, established_burst
}
criterion_main!(benches);
