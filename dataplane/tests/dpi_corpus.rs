//! DPI accuracy against nDPI on real captures (`../shared/dpi-corpus`, nDPI's regression
//! suite with its per-flow answers): every capture goes through `classify` (the project's own
//! parser, connection tracker and classifier); for every flow nDPI identified from payload
//! (`[Confidence: DPI]`) as an application we support, our answer must agree on at least 95%
//! of them. Prints the per-application table. No capture may crash anything.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use dataplane::classify::{FlowRecord, classify};
use dataplane::dpi::App;

/// nDPI's application name (the part before a dot) -> ours, for the applications we claim.
fn ours(ndpi: &str) -> Option<&'static str> {
    let master = ndpi.split('.').next().unwrap_or(ndpi);
    let name = match master {
        "HTTP" => "http",
        "HTTP2" => "http2",
        "TLS" => "tls",
        "DNS" => "dns",
        "SSH" => "ssh",
        "MySQL" => "mysql",
        "PostgreSQL" => "postgresql",
        "Redis" => "redis",
        "MongoDB" => "mongodb",
        "Cassandra" => "cassandra",
        "Kafka" => "kafka",
        "ZooKeeper" | "Zookeeper" => "zookeeper",
        "Memcached" => "memcached",
        "NTP" => "ntp",
        "DHCP" => "dhcp",
        "AMQP" => "amqp",
        "MQTT" => "mqtt",
        "Nats" => "nats",
        "MsSQL-TDS" => "mssql",
        "Oracle" => "oracle",
        "FTP_CONTROL" => "ftp",
        "SMTP" => "smtp",
        "IMAP" => "imap",
        "POP3" => "pop3",
        "LDAP" => "ldap",
        "SIP" => "sip",
        "RTSP" => "rtsp",
        "Syslog" => "syslog",
        "SNMP" => "snmp",
        "TFTP" => "tftp",
        "Kerberos" => "kerberos",
        "QUIC" => "quic",
        "Radius" | "RADIUS" => "radius",
        "RDP" => "rdp",
        "Telnet" => "telnet",
        "Git" => "git",
        "Elasticsearch" => "elasticsearch",
        _ => return None,
    };
    // Only what our classifier knows counts.
    App::from_name(name).map(|a| a.name())
}

struct Expected {
    proto: String,
    a: SocketAddr,
    b: SocketAddr,
    app: &'static str,
}

/// The `[Confidence: DPI]` flows of one nDPI `.out` file that name an application we claim.
fn expected(out: &Path) -> Vec<Expected> {
    let text = std::fs::read_to_string(out).unwrap_or_default();
    text.lines()
        .filter(|l| l.contains("[Confidence: DPI]"))
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            let _n = f.next()?;
            let proto = f.next()?.to_ascii_lowercase();
            let a: SocketAddr = f.next()?.parse().ok()?;
            let _arrow = f.next()?;
            let b: SocketAddr = f.next()?.parse().ok()?;
            let app = l
                .split("[proto: ")
                .nth(1)?
                .split(']')
                .next()?
                .split('/')
                .nth(1)?;
            Some(Expected {
                proto,
                a,
                b,
                app: ours(app)?,
            })
        })
        .collect()
}

fn find<'a>(flows: &'a [FlowRecord], e: &Expected) -> Option<&'a FlowRecord> {
    flows.iter().find(|f| {
        f.proto == e.proto
            && ((f.client == e.a && f.server == e.b) || (f.client == e.b && f.server == e.a))
    })
}

#[derive(Default)]
struct Row {
    flows: u32,
    agreed: u32,
    disagreed: u32,
    unidentified: u32,
}

#[test]
fn agrees_with_ndpi_on_95_percent_of_dpi_flows() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/dpi-corpus");
    let root = if root.exists() {
        root
    } else {
        PathBuf::from("/work/shared/dpi-corpus")
    };
    let mut pcaps: Vec<PathBuf> = std::fs::read_dir(root.join("pcap"))
        .expect("the DPI corpus is at ../shared/dpi-corpus")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .collect();
    pcaps.sort();
    assert!(
        pcaps.len() >= 50,
        "corpus incomplete: {} captures",
        pcaps.len()
    );
    let mut table: BTreeMap<&'static str, Row> = BTreeMap::new();
    let mut misses = Vec::new();
    for pcap in &pcaps {
        let name = pcap.file_name().unwrap().to_string_lossy().into_owned();
        // Every capture must go through without a crash, damaged or not.
        let report = classify(pcap);
        let exp = expected(&root.join("expected").join(format!("{name}.out")));
        if matches!(&report, Ok(r) if r.frames == 0) {
            // The corpus ships this capture empty (0 bytes): nobody could classify it.
            println!(
                "skipped: {name} is empty; its {} expected flows are not counted",
                exp.len()
            );
            continue;
        }
        let flows = report.as_ref().map(|r| r.flows.as_slice()).unwrap_or(&[]);
        for e in &exp {
            let row = table.entry(e.app).or_default();
            row.flows += 1;
            match find(flows, e) {
                Some(f) if f.app == e.app => row.agreed += 1,
                Some(f) if f.app != "unknown" => {
                    row.disagreed += 1;
                    misses.push(format!(
                        "{name}: {} {} <-> {} nDPI {} ours {}",
                        e.proto, e.a, e.b, e.app, f.app
                    ));
                }
                Some(_) | None => {
                    row.unidentified += 1;
                    misses.push(format!(
                        "{name}: {} {} <-> {} nDPI {} ours unknown",
                        e.proto, e.a, e.b, e.app
                    ));
                }
            }
        }
    }
    let (mut total, mut agreed) = (0u32, 0u32);
    println!(
        "{:<14} {:>6} {:>7} {:>10} {:>13}",
        "application", "flows", "agreed", "disagreed", "unidentified"
    );
    for (app, r) in &table {
        println!(
            "{app:<14} {:>6} {:>7} {:>10} {:>13}",
            r.flows, r.agreed, r.disagreed, r.unidentified
        );
        total += r.flows;
        agreed += r.agreed;
    }
    let pct = f64::from(agreed) * 100.0 / f64::from(total.max(1));
    println!(
        "{:<14} {total:>6} {agreed:>7}   ({pct:.1}% agreement)",
        "all"
    );
    for m in &misses {
        println!("miss: {m}");
    }
    assert!(
        total >= 400,
        "too few DPI flows matched our applications: {total}"
    );
    assert!(pct >= 95.0, "agreement {pct:.1}% < 95%");
}
