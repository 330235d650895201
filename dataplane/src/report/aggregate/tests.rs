use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use super::*;
use crate::report::record::{Flow, ThreatDetail};
use crate::report::ring::{RecordProducer, ring};

const T0_UNIX_MS: u64 = 1_700_000_000_000;

/// The clock at `ms` milliseconds after the origin of the monotonic clock.
fn at(ms: u64) -> Now {
    Now {
        mono: Timestamp::from_millis(ms),
        unix_ms: T0_UNIX_MS + ms,
    }
}

fn ip(last: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(10, 0, 0, last))
}

/// Workloads are 10.0.0.1-99 (`wl-N` in group `web`), everything else is external.
fn resolver(ip: IpAddr) -> (Option<String>, String) {
    match ip {
        IpAddr::V4(v4) if v4.octets()[..3] == [10, 0, 0] && v4.octets()[3] < 100 => {
            (Some(format!("wl-{}", v4.octets()[3])), "web".to_owned())
        }
        _ => (None, "external".to_owned()),
    }
}

fn flow(client: u8, client_port: u16, server: u8, server_port: u16, app: App) -> Flow {
    Flow {
        client: ip(client),
        server: ip(server),
        client_port,
        server_port,
        proto: 6,
        app,
    }
}

fn conn(f: Flow, new: bool, packets: u64, bytes: u64, first_ms: u64, last_ms: u64) -> WorkerRecord {
    WorkerRecord::Connection(ConnectionDelta {
        flow: f,
        new_session: new,
        packets,
        bytes,
        first: Timestamp::from_millis(first_ms),
        last: Timestamp::from_millis(last_ms),
        verdict: Verdict::Allowed,
        rule: Some(10001),
        mode: Mode::Monitor,
        answered: true,
    })
}

fn violation(f: Flow, at_ms: u64, rule: Option<u32>) -> WorkerRecord {
    WorkerRecord::Violation(ViolationRecord {
        flow: f,
        at: Timestamp::from_millis(at_ms),
        rule,
        mode: Mode::Protect,
        verdict: Verdict::Denied,
    })
}

fn threat(f: Flow, at_ms: u64, kind: ThreatKind) -> WorkerRecord {
    WorkerRecord::Threat(ThreatRecord {
        flow: f,
        at: Timestamp::from_millis(at_ms),
        kind,
        detail: ThreatDetail::TcpFlags(0x03),
        verdict: Verdict::Alerted,
    })
}

fn feed(agg: &mut Aggregator, now: Now, recs: &[WorkerRecord]) -> Vec<Event> {
    let mut out = Vec::new();
    for r in recs {
        agg.ingest(*r, now, &resolver, &mut out);
    }
    out
}

fn flush(agg: &mut Aggregator, now: Now) -> Vec<Event> {
    let mut out = Vec::new();
    agg.flush(now, &resolver, &mut out);
    out
}

fn connections(events: &[Event]) -> Vec<&ConnectionRecord> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Connection(c) => Some(c),
            _ => None,
        })
        .collect()
}

/// (server port, app, sessions, packets, bytes) of each connection event, in order.
fn sums(events: &[Event]) -> Vec<(u16, &str, u64, u64, u64)> {
    connections(events)
        .iter()
        .map(|c| {
            (
                c.server.addr.port(),
                c.app.as_str(),
                c.sessions,
                c.packets,
                c.bytes,
            )
        })
        .collect()
}

#[test]
fn now_maps_monotonic_times_to_unix_ms() {
    let now = at(5_000);
    assert_eq!(
        now.unix_ms_of(Timestamp::from_millis(5_000)),
        T0_UNIX_MS + 5_000
    );
    assert_eq!(
        now.unix_ms_of(Timestamp::from_millis(1_250)),
        T0_UNIX_MS + 1_250
    );
    assert_eq!(
        now.unix_ms_of(Timestamp::from_millis(7_000)),
        T0_UNIX_MS + 7_000
    );
    let early = Now {
        mono: Timestamp::from_secs(10),
        unix_ms: 3,
    };
    assert_eq!(early.unix_ms_of(Timestamp::ZERO), 0, "saturates");
}

#[test]
fn connections_sum_per_key_exactly() {
    let mut agg = Aggregator::new(Config::default());
    let web = flow(1, 40000, 2, 80, App::Http);
    let out = feed(
        &mut agg,
        at(100),
        &[
            // Two sessions of one conversation (client ports differ: same key), one of them
            // reported twice (a session update, then its end).
            conn(web, true, 10, 1_000, 10, 20),
            conn(flow(1, 40001, 2, 80, App::Http), true, 4, 400, 30, 40),
            conn(web, false, 6, 600, 50, 90),
            // Another server port, another application: other keys.
            conn(flow(1, 40002, 2, 8080, App::Http), true, 3, 300, 15, 16),
            conn(flow(1, 40003, 2, 80, App::Unknown), true, 1, 60, 17, 18),
            // The reverse roles: another key.
            conn(flow(2, 50000, 1, 80, App::Http), true, 2, 120, 60, 61),
        ],
    );
    assert!(out.is_empty(), "connections wait for the flush");
    assert_eq!(agg.len(), 4);
    let out = flush(&mut agg, at(100));
    // New keys, in the order they appeared.
    assert_eq!(
        sums(&out),
        [
            (80, "http", 2, 20, 2_000),
            (8080, "http", 1, 3, 300),
            (80, "unknown", 1, 1, 60),
            (80, "http", 1, 2, 120),
        ]
    );
    let c = connections(&out)[0];
    assert_eq!(c.client.addr, "10.0.0.1:0".parse().expect("addr"));
    assert_eq!(c.client.workload.as_deref(), Some("wl-1"));
    assert_eq!(c.client.group, "web");
    assert_eq!(c.server.addr, "10.0.0.2:80".parse().expect("addr"));
    assert_eq!(c.proto, 6);
    assert_eq!(c.first_seen_ms, T0_UNIX_MS + 10);
    assert_eq!(c.last_seen_ms, T0_UNIX_MS + 90);
    assert_eq!(c.verdict, Verdict::Allowed);
    assert_eq!(c.rule, Some(10001));
    assert_eq!(c.mode, Mode::Monitor);
    assert_eq!(agg.stats().connection_events, 4);
    assert_eq!(agg.stats().records, 6);
    // Nothing new: nothing to say, however long we wait.
    assert!(flush(&mut agg, at(5_000)).is_empty());
}

#[test]
fn a_key_is_reported_at_most_once_per_interval_with_the_deltas_since() {
    let mut agg = Aggregator::new(Config::default());
    let web = flow(1, 40000, 2, 80, App::Http);
    feed(&mut agg, at(0), &[conn(web, true, 1, 100, 0, 0)]);
    assert_eq!(sums(&flush(&mut agg, at(0))), [(80, "http", 1, 1, 100)]);
    // More traffic: held until a full interval after the previous event.
    feed(&mut agg, at(300), &[conn(web, true, 2, 200, 300, 300)]);
    assert!(flush(&mut agg, at(300)).is_empty());
    feed(&mut agg, at(600), &[conn(web, false, 3, 300, 600, 600)]);
    assert!(flush(&mut agg, at(999)).is_empty());
    let out = flush(&mut agg, at(1_000));
    assert_eq!(sums(&out), [(80, "http", 1, 5, 500)]);
    let c = connections(&out)[0];
    assert_eq!(
        c.first_seen_ms,
        T0_UNIX_MS + 300,
        "the span of this event's records"
    );
    assert_eq!(c.last_seen_ms, T0_UNIX_MS + 600);
    // The next interval starts at the event, not at the traffic.
    feed(&mut agg, at(1_100), &[conn(web, false, 1, 1, 1_100, 1_100)]);
    assert!(flush(&mut agg, at(1_999)).is_empty());
    assert_eq!(sums(&flush(&mut agg, at(2_000))), [(80, "http", 0, 1, 1)]);
    assert_eq!(agg.stats().connection_events, 3);
}

#[test]
fn the_global_cap_defers_and_counts_and_loses_nothing() {
    let mut agg = Aggregator::new(Config {
        max_connection_events: 2,
        ..Config::default()
    });
    let recs: Vec<_> = (1..=5)
        .map(|i| {
            conn(
                flow(i, 40000, 50, 80, App::Http),
                true,
                u64::from(i),
                0,
                0,
                0,
            )
        })
        .collect();
    feed(&mut agg, at(0), &recs);
    let client = |e: &Event| match e {
        Event::Connection(c) => c.client.addr.ip(),
        _ => ip(0),
    };
    let out = flush(&mut agg, at(0));
    assert_eq!(out.iter().map(client).collect::<Vec<_>>(), [ip(1), ip(2)]);
    assert_eq!(agg.stats().connections_deferred, 3);
    // Same window: nothing more goes out, the three wait (and are counted again).
    assert!(flush(&mut agg, at(500)).is_empty());
    assert_eq!(agg.stats().connections_deferred, 6);
    // Key 1 gets traffic again; in the next window the never-reported keys go first.
    feed(
        &mut agg,
        at(600),
        &[conn(flow(1, 1, 50, 80, App::Http), true, 10, 0, 600, 600)],
    );
    let out = flush(&mut agg, at(1_000));
    assert_eq!(out.iter().map(client).collect::<Vec<_>>(), [ip(3), ip(4)]);
    assert_eq!(agg.stats().connections_deferred, 8);
    let out = flush(&mut agg, at(2_000));
    assert_eq!(out.iter().map(client).collect::<Vec<_>>(), [ip(5), ip(1)]);
    assert_eq!(sums(&out), [(80, "http", 1, 5, 0), (80, "http", 1, 10, 0)]);
    assert_eq!(agg.stats().connection_events, 6);
    assert_eq!(agg.stats().connections_deferred, 8);
}

#[test]
fn the_least_recently_updated_aggregate_is_evicted_and_counted() {
    let mut agg = Aggregator::new(Config {
        max_aggregates: 2,
        ..Config::default()
    });
    let (a, b, c) = (
        flow(1, 1, 50, 80, App::Http),
        flow(2, 1, 50, 80, App::Http),
        flow(3, 1, 50, 80, App::Http),
    );
    feed(
        &mut agg,
        at(0),
        &[
            conn(a, true, 1, 0, 0, 0),
            conn(b, true, 1, 0, 0, 0),
            conn(a, false, 1, 0, 0, 0), // a is now more recent than b
            conn(c, true, 1, 0, 0, 0),  // evicts b, unreported
        ],
    );
    assert_eq!(agg.len(), 2);
    assert_eq!(agg.stats().evicted, 1);
    assert_eq!(agg.stats().evicted_unreported, 1);
    let out = flush(&mut agg, at(0));
    let clients: Vec<_> = connections(&out)
        .iter()
        .map(|c| c.client.addr.ip())
        .collect();
    assert_eq!(clients, [ip(1), ip(3)]);
    assert_eq!(sums(&out)[0], (80, "http", 1, 2, 0));
    // Reported aggregates evicted later lose nothing.
    feed(&mut agg, at(10), &[conn(b, true, 1, 0, 10, 10)]);
    assert_eq!(agg.stats().evicted, 2);
    assert_eq!(agg.stats().evicted_unreported, 1);
    // b is back as a new key: reported at once.
    assert_eq!(connections(&flush(&mut agg, at(10))).len(), 1);
}

#[test]
fn idle_reported_aggregates_are_forgotten() {
    let mut agg = Aggregator::new(Config {
        idle_timeout: Duration::from_secs(10),
        ..Config::default()
    });
    feed(
        &mut agg,
        at(0),
        &[
            conn(flow(1, 1, 50, 80, App::Http), true, 1, 0, 0, 0),
            conn(flow(2, 1, 50, 80, App::Http), true, 1, 0, 0, 0),
        ],
    );
    flush(&mut agg, at(0));
    feed(
        &mut agg,
        at(5_000),
        &[conn(flow(2, 1, 50, 80, App::Http), false, 1, 0, 0, 0)],
    );
    let out = flush(&mut agg, at(9_999));
    assert_eq!(sums(&out), [(80, "http", 0, 1, 0)]);
    assert_eq!(agg.len(), 2);
    assert!(flush(&mut agg, at(10_000)).is_empty());
    assert_eq!(
        agg.len(),
        1,
        "the first is idle; the second was updated at 5 s"
    );
    assert_eq!(agg.stats().expired, 1);
    flush(&mut agg, at(15_000));
    assert!(agg.is_empty());
    assert_eq!(agg.stats().expired, 2);
}

#[test]
fn identical_violations_go_out_once_per_interval() {
    let mut agg = Aggregator::new(Config::default());
    let f = flow(1, 40000, 200, 22, App::Ssh);
    let mut out = feed(&mut agg, at(0), &[violation(f, 0, None)]);
    // Another client port, same key: suppressed; another rule: its own key.
    out.extend(feed(
        &mut agg,
        at(400),
        &[
            violation(flow(1, 40001, 200, 22, App::Ssh), 400, None),
            violation(f, 400, Some(7)),
        ],
    ));
    out.extend(feed(&mut agg, at(999), &[violation(f, 999, None)]));
    out.extend(feed(&mut agg, at(1_000), &[violation(f, 1_000, None)]));
    let got: Vec<_> = out
        .iter()
        .map(|e| match e {
            Event::Violation(v) => (v.at_ms - T0_UNIX_MS, v.rule, v.client.addr.port()),
            _ => (0, None, 0),
        })
        .collect();
    assert_eq!(
        got,
        [
            (0, None, 40000),
            (400, Some(7), 40000),
            (1_000, None, 40000)
        ]
    );
    let Event::Violation(v) = &out[0] else {
        panic!("a violation");
    };
    assert_eq!(v.server.group, "external");
    assert_eq!(v.server.workload, None);
    assert_eq!(v.client.workload.as_deref(), Some("wl-1"));
    assert_eq!(v.app, "ssh");
    assert_eq!(v.verdict, Verdict::Denied);
    assert_eq!(v.mode, Mode::Protect);
    assert_eq!(agg.stats().violations, 3);
    assert_eq!(agg.stats().violations_suppressed, 2);
}

#[test]
fn threats_are_limited_per_key_and_globally() {
    let mut agg = Aggregator::new(Config {
        max_alerts: 3,
        ..Config::default()
    });
    let f = |c| flow(c, 1, 50, 80, App::Unknown);
    let out = feed(
        &mut agg,
        at(0),
        &[
            threat(f(1), 0, ThreatKind::InvalidTcpFlags),
            threat(f(1), 0, ThreatKind::InvalidTcpFlags), // same key: suppressed
            threat(f(1), 0, ThreatKind::SynFlood),        // other kind: passes
            threat(f(2), 0, ThreatKind::InvalidTcpFlags), // other client: passes
            threat(f(3), 0, ThreatKind::InvalidTcpFlags), // over the cap of 3
            violation(f(4), 0, None),                     // the cap is shared
        ],
    );
    assert_eq!(out.len(), 3);
    let Event::Threat(t) = &out[0] else {
        panic!("a threat");
    };
    assert_eq!(t.kind, ThreatKind::InvalidTcpFlags);
    assert_eq!(t.id, 1006);
    assert_eq!(t.name, "Invalid TCP flags");
    assert_eq!(t.detail, "TCP flags FIN+SYN (0x03), SYN+FIN scan");
    assert_eq!(t.verdict, Verdict::Alerted);
    let s = agg.stats();
    assert_eq!(
        (s.threats, s.threats_suppressed, s.alerts_capped),
        (3, 1, 2)
    );
    // A capped alert was not remembered: in the next window it goes out.
    let out = feed(
        &mut agg,
        at(1_000),
        &[threat(f(3), 1_000, ThreatKind::InvalidTcpFlags)],
    );
    assert_eq!(out.len(), 1);
}

#[test]
fn a_full_alert_key_table_forgets_old_keys_and_stays_bounded() {
    let mut agg = Aggregator::new(Config {
        max_alert_keys: 2,
        ..Config::default()
    });
    let f = |c| flow(c, 1, 50, 80, App::Unknown);
    let k = ThreatKind::Teardrop;
    let out = feed(&mut agg, at(0), &[threat(f(1), 0, k), threat(f(2), 0, k)]);
    assert_eq!(out.len(), 2);
    // Full of fresh keys: a third key goes out unremembered, so its repeat goes out too.
    let out = feed(
        &mut agg,
        at(100),
        &[threat(f(3), 100, k), threat(f(3), 100, k)],
    );
    assert_eq!(out.len(), 2);
    assert_eq!(agg.alert_last.len(), 2);
    // Remembered keys still suppress.
    assert!(feed(&mut agg, at(200), &[threat(f(1), 200, k)]).is_empty());
    // After the interval the old keys are swept and the new one is remembered.
    let out = feed(
        &mut agg,
        at(1_200),
        &[threat(f(3), 1_200, k), threat(f(3), 1_200, k)],
    );
    assert_eq!(out.len(), 1);
    assert_eq!(agg.alert_last.len(), 1);
}

#[test]
fn poll_reports_overflow_first_then_alerts_then_connections() {
    let (mut p0, c0) = ring(2).expect("ring");
    let (mut p1, c1) = ring(8).expect("ring");
    let mut rings = [c0, c1];
    let web = flow(1, 40000, 2, 80, App::Http);
    for _ in 0..5 {
        p0.push(conn(web, true, 1, 10, 0, 0));
    }
    p1.push(threat(web, 0, ThreatKind::WeakTls));
    p1.push(conn(web, false, 1, 10, 0, 0));
    let mut agg = Aggregator::new(Config::default());
    let mut out = Vec::new();
    assert_eq!(agg.poll(&mut rings, at(0), &resolver, &mut out), 4);
    assert_eq!(out.len(), 3);
    assert_eq!(out[0], Event::Overflow { lost: 3 });
    assert!(matches!(&out[1], Event::Threat(t) if t.kind == ThreatKind::WeakTls));
    assert_eq!(sums(&out), [(80, "http", 2, 3, 30)]);
    assert_eq!(agg.stats().overflow_lost, 3);
    out.clear();
    p0.push(conn(web, false, 1, 10, 0, 0));
    assert_eq!(agg.poll(&mut rings, at(1_000), &resolver, &mut out), 1);
    assert_eq!(
        sums(&out),
        [(80, "http", 0, 1, 10)],
        "no second overflow event"
    );
}

#[test]
fn output_is_deterministic() {
    let recs: Vec<_> = (0..200u16)
        .map(|i| {
            let f = flow(
                (i % 7) as u8 + 1,
                i,
                (i % 5) as u8 + 100,
                80 + i % 3,
                App::Http,
            );
            match i % 10 {
                0 => violation(f, u64::from(i), None),
                1 => threat(f, u64::from(i), ThreatKind::DnsTunneling),
                _ => conn(f, i % 2 == 0, 1, u64::from(i), u64::from(i), u64::from(i)),
            }
        })
        .collect();
    let run = || {
        let mut agg = Aggregator::new(Config {
            max_aggregates: 9,
            max_connection_events: 4,
            ..Config::default()
        });
        let mut out = Vec::new();
        for (i, r) in recs.iter().enumerate() {
            agg.ingest(*r, at(i as u64 * 10), &resolver, &mut out);
            if i % 17 == 0 {
                agg.flush(at(i as u64 * 10), &resolver, &mut out);
            }
        }
        agg.flush(at(10_000), &resolver, &mut out);
        (out, agg.stats())
    };
    let (a, sa) = run();
    let (b, sb) = run();
    assert_eq!(a, b);
    assert_eq!(sa, sb);
    assert!(sa.evicted > 0 && sa.connections_deferred > 0);
}

/// Two worker threads, each with its own ring, one consumer: every packet is either in a
/// connection event or counted lost in an overflow event, exactly.
#[test]
fn two_producers_one_consumer_exact_totals() {
    const PER_WORKER: u64 = 50_000;
    let (p0, c0) = ring(256).expect("ring");
    let (p1, c1) = ring(256).expect("ring");
    let done = Arc::new(AtomicBool::new(false));
    let spawn = |mut p: RecordProducer, worker: u8| {
        std::thread::spawn(move || {
            let mut lost = 0u64;
            for i in 0..PER_WORKER {
                // 16 conversations per worker; 1 packet and `worker + 1` bytes per record.
                let f = flow(
                    worker * 16 + (i % 16) as u8 + 1,
                    i as u16,
                    200,
                    443,
                    App::Tls,
                );
                if !p.push(conn(f, i % 4 == 0, 1, u64::from(worker) + 1, i, i)) {
                    lost += 1;
                }
                if i % 1024 == 0 {
                    std::thread::yield_now();
                }
            }
            lost
        })
    };
    let h0 = spawn(p0, 0);
    let h1 = spawn(p1, 1);
    let mut rings = [c0, c1];
    let mut agg = Aggregator::new(Config {
        interval: Duration::ZERO,
        ..Config::default()
    });
    let consumer_done = Arc::clone(&done);
    let watcher = std::thread::spawn(move || {
        let lost = (h0.join().expect("worker 0"), h1.join().expect("worker 1"));
        consumer_done.store(true, Ordering::Release);
        lost
    });
    let mut out = Vec::new();
    let mut ms = 0;
    loop {
        let finished = done.load(Ordering::Acquire);
        ms += 1;
        agg.poll(&mut rings, at(ms), &resolver, &mut out);
        if finished && rings.iter().all(RecordConsumer::is_empty) {
            break;
        }
        std::thread::yield_now();
    }
    agg.poll(&mut rings, at(ms + 1), &resolver, &mut out);
    let (lost0, lost1) = watcher.join().expect("watcher");
    let mut packets = 0u64;
    let mut bytes = 0u64;
    let mut lost = 0u64;
    for e in &out {
        match e {
            Event::Connection(c) => {
                packets += c.packets;
                bytes += c.bytes;
            }
            Event::Overflow { lost: n } => lost += n,
            _ => panic!("only connections and overflow expected"),
        }
    }
    assert_eq!(lost, lost0 + lost1);
    assert_eq!(packets + lost, 2 * PER_WORKER);
    assert_eq!(bytes + lost0 + 2 * lost1, PER_WORKER * 3);
    assert_eq!(agg.stats().records, 2 * PER_WORKER - lost);
    assert_eq!(agg.stats().overflow_lost, lost);
    assert_eq!(agg.len(), 32);
}
