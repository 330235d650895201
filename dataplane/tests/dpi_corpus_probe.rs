//! DEVELOPMENT PROBE, not the accuracy test: replays the nDPI captures in
//! `shared/dpi-corpus` through `dataplane::dpi::State` and prints, per application, how often
//! we agree with nDPI's DPI-confidence answers. It asserts nothing except "no panic"; the
//! integrator's corpus test (built on the project's own parser and connection tracker)
//! replaces it.
//!
//! Run: `cargo test -p dataplane --no-default-features --test dpi_corpus_probe -- --nocapture`
//! (`DPI_PROBE_VERBOSE=1` also lists every flow we got wrong; `DPI_CORPUS=dir` points
//! elsewhere). Packets are read with `pcap-parser`, IP with `etherparse` (lax, so truncated
//! captures still yield their payload prefix); TCP/UDP headers are split here by hand.
//! No reassembly: each packet's payload is fed as is, in capture order, until the state is
//! done. The client is the SYN sender, else the first sender.

#![allow(clippy::print_stdout, clippy::print_stderr)]

use dataplane::dpi::{App, Dir, Flow, State, Transport};
use etherparse::{EtherType, LaxNetSlice, LaxSlicedPacket};
use pcap_parser::{Block, Linktype, PcapBlockOwned, PcapError};
use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};

fn corpus_dir() -> PathBuf {
    if let Ok(d) = std::env::var("DPI_CORPUS") {
        return PathBuf::from(d);
    }
    let here = Path::new(env!("CARGO_MANIFEST_DIR"));
    for up in here.ancestors() {
        let c = up.join("shared/dpi-corpus");
        if c.is_dir() {
            return c;
        }
    }
    PathBuf::from("/work/shared/dpi-corpus")
}

/// One L4 packet: transport, endpoints, TCP SYN/ACK flags, payload.
struct L4<'a> {
    transport: Transport,
    src: SocketAddr,
    dst: SocketAddr,
    syn: bool,
    ack: bool,
    payload: &'a [u8],
}

fn l4_from_ip(data: &[u8], depth: u8) -> Option<L4<'_>> {
    let p = LaxSlicedPacket::from_ip(data).ok()?;
    l4_from_sliced(&p, depth)
}

fn l4_from_sliced<'a>(p: &LaxSlicedPacket<'a>, depth: u8) -> Option<L4<'a>> {
    let (src, dst, pl) = match p.net.as_ref()? {
        LaxNetSlice::Ipv4(v4) => {
            let h = v4.header();
            // Non-first fragments carry no L4 header.
            if h.fragments_offset().value() != 0 {
                return None;
            }
            (
                IpAddr::V4(h.source_addr()),
                IpAddr::V4(h.destination_addr()),
                v4.payload().clone(),
            )
        }
        LaxNetSlice::Ipv6(v6) => {
            let h = v6.header();
            (
                IpAddr::V6(h.source_addr()),
                IpAddr::V6(h.destination_addr()),
                v6.payload().clone(),
            )
        }
        LaxNetSlice::Arp(_) => return None,
    };
    let b = pl.payload;
    match pl.ip_number.0 {
        4 | 41 if depth < 2 => l4_from_ip(b, depth + 1),
        6 => {
            if b.len() < 20 {
                return None;
            }
            let off = usize::from(b[12] >> 4) * 4;
            let payload = b.get(off..).unwrap_or(&[]);
            Some(L4 {
                transport: Transport::Tcp,
                src: SocketAddr::new(src, u16::from_be_bytes([b[0], b[1]])),
                dst: SocketAddr::new(dst, u16::from_be_bytes([b[2], b[3]])),
                syn: b[13] & 0x02 != 0,
                ack: b[13] & 0x10 != 0,
                payload,
            })
        }
        17 => {
            if b.len() < 8 {
                return None;
            }
            Some(L4 {
                transport: Transport::Udp,
                src: SocketAddr::new(src, u16::from_be_bytes([b[0], b[1]])),
                dst: SocketAddr::new(dst, u16::from_be_bytes([b[2], b[3]])),
                syn: false,
                ack: false,
                payload: &b[8..],
            })
        }
        _ => None,
    }
}

fn l4_from_link(linktype: Linktype, data: &[u8]) -> Option<L4<'_>> {
    match linktype {
        Linktype::ETHERNET => {
            let p = LaxSlicedPacket::from_ethernet(data).ok()?;
            if let Some(l4) = l4_from_sliced(&p, 0) {
                return Some(l4);
            }
            pppoe(data)
        }
        Linktype::RAW | Linktype::IPV4 | Linktype::IPV6 | Linktype(12) | Linktype(14) => {
            l4_from_ip(data, 0)
        }
        Linktype::NULL | Linktype::LOOP => l4_from_ip(data.get(4..)?, 0),
        Linktype::LINUX_SLL => {
            let et = u16::from_be_bytes([*data.get(14)?, *data.get(15)?]);
            let p = LaxSlicedPacket::from_ether_type(EtherType(et), data.get(16..)?);
            l4_from_sliced(&p, 0)
        }
        Linktype(9) => {
            // Address/control 0xff 0x03 (optional), then a 2-byte protocol.
            let d = if data.starts_with(&[0xff, 0x03]) {
                data.get(2..)?
            } else {
                data
            };
            match u16::from_be_bytes([*d.first()?, *d.get(1)?]) {
                0x0021 | 0x0057 => l4_from_ip(d.get(2..)?, 0),
                _ => None,
            }
        }
        _ => None,
    }
}

/// PPPoE session frames (ethertype 0x8864, optionally VLAN-tagged): 6-byte PPPoE header,
/// 2-byte PPP protocol, then IP.
fn pppoe(data: &[u8]) -> Option<L4<'_>> {
    let mut at = 12;
    while data.get(at..at + 2)? == [0x81, 0x00] {
        at += 4;
    }
    if data.get(at..at + 2)? != [0x88, 0x64] {
        return None;
    }
    let ppp = data.get(at + 2 + 6..)?;
    match ppp.get(..2)? {
        [0x00, 0x21] | [0x00, 0x57] => l4_from_ip(ppp.get(2..)?, 0),
        _ => None,
    }
}

#[derive(PartialEq, Eq, Hash, Clone, PartialOrd, Ord, Debug)]
struct Key {
    tcp: bool,
    a: String,
    b: String,
}

fn key(tcp: bool, x: &str, y: &str) -> Key {
    let (a, b) = if x <= y { (x, y) } else { (y, x) };
    Key {
        tcp,
        a: a.to_string(),
        b: b.to_string(),
    }
}

struct Tracked {
    client: SocketAddr,
    state: State,
    fed: u32,
}

/// Replays one capture; returns our verdict per flow key.
fn replay(path: &Path) -> HashMap<Key, (App, u32)> {
    let mut flows: HashMap<Key, Tracked> = HashMap::new();
    let Ok(file) = std::fs::File::open(path) else {
        return HashMap::new();
    };
    let Ok(mut reader) = pcap_parser::create_reader(1 << 20, file) else {
        eprintln!("{}: not a capture", path.display());
        return HashMap::new();
    };
    let mut linktypes: Vec<Linktype> = Vec::new();
    let mut legacy_lt = Linktype::ETHERNET;
    loop {
        match reader.next() {
            Ok((offset, block)) => {
                let pkt: Option<(Linktype, &[u8])> = match &block {
                    PcapBlockOwned::LegacyHeader(h) => {
                        legacy_lt = h.network;
                        None
                    }
                    PcapBlockOwned::Legacy(b) => Some((legacy_lt, b.data)),
                    PcapBlockOwned::NG(Block::InterfaceDescription(idb)) => {
                        linktypes.push(idb.linktype);
                        None
                    }
                    PcapBlockOwned::NG(Block::EnhancedPacket(epb)) => {
                        let lt = linktypes
                            .get(epb.if_id as usize)
                            .copied()
                            .unwrap_or(Linktype::ETHERNET);
                        let n = (epb.caplen as usize).min(epb.data.len());
                        Some((lt, &epb.data[..n]))
                    }
                    PcapBlockOwned::NG(Block::SimplePacket(spb)) => Some((
                        linktypes.first().copied().unwrap_or(Linktype::ETHERNET),
                        spb.data,
                    )),
                    PcapBlockOwned::NG(_) => None,
                };
                if let Some((lt, data)) = pkt
                    && let Some(l4) = l4_from_link(lt, data)
                {
                    feed(&mut flows, &l4);
                }
                reader.consume(offset);
            }
            Err(PcapError::Eof) => break,
            Err(PcapError::Incomplete(_)) => {
                if reader.refill().is_err() {
                    break;
                }
            }
            Err(e) => {
                eprintln!("{}: {e:?}", path.display());
                break;
            }
        }
    }
    flows
        .into_iter()
        .map(|(k, t)| (k, (t.state.app(), t.fed)))
        .collect()
}

fn feed(flows: &mut HashMap<Key, Tracked>, l4: &L4<'_>) {
    let tcp = matches!(l4.transport, Transport::Tcp);
    let k = key(tcp, &l4.src.to_string(), &l4.dst.to_string());
    let t = flows.entry(k).or_insert_with(|| Tracked {
        // A SYN-ACK seen first means the receiver opened the connection.
        client: if l4.syn && l4.ack { l4.dst } else { l4.src },
        state: State::default(),
        fed: 0,
    });
    if t.state.done() {
        return;
    }
    let (dir, client, server) = if l4.src == t.client {
        (Dir::ClientToServer, l4.src, l4.dst)
    } else {
        (Dir::ServerToClient, l4.dst, l4.src)
    };
    let flow = Flow {
        transport: l4.transport,
        client_port: client.port(),
        server_port: server.port(),
    };
    if !l4.payload.is_empty() {
        t.fed += 1;
    }
    t.state.inspect(&flow, dir, l4.payload);
}

/// nDPI's application name (the part before the dot) as ours.
fn ndpi_app(name: &str) -> Option<App> {
    let base = name.split('.').next().unwrap_or(name);
    let ours = match base {
        "FTP_CONTROL" => "ftp",
        "MsSQL-TDS" => "mssql",
        other => return App::from_name(&other.to_ascii_lowercase()),
    };
    App::from_name(ours)
}

struct Expected {
    key: Key,
    ndpi: String,
    dpi: bool,
    line: String,
}

fn parse_out(path: &Path) -> Vec<Expected> {
    let Ok(text) = std::fs::read_to_string(path) else {
        return Vec::new();
    };
    let mut v = Vec::new();
    for line in text.lines() {
        let t = line.trim_start();
        let mut it = t.split_whitespace();
        let (Some(num), Some(proto), Some(a), Some(arrow), Some(b)) =
            (it.next(), it.next(), it.next(), it.next(), it.next())
        else {
            continue;
        };
        if num.parse::<u32>().is_err() || !(arrow == "<->" || arrow == "->") {
            continue;
        }
        let tcp = match proto {
            "TCP" => true,
            "UDP" => false,
            _ => continue,
        };
        let Some(p) = t.find("[proto: ") else {
            continue;
        };
        let rest = &t[p + 8..];
        let Some(end) = rest.find(']') else { continue };
        let pname = &rest[..end];
        let name = pname.split('/').nth(1).unwrap_or("Unknown").to_string();
        v.push(Expected {
            key: key(tcp, a, b),
            ndpi: name,
            dpi: t.contains("[Confidence: DPI]"),
            line: t.chars().take(160).collect(),
        });
    }
    v
}

#[derive(Default)]
struct Row {
    flows: u32,
    agreed: u32,
    disagreed: u32,
    unidentified: u32,
}

#[test]
fn dpi_corpus_probe() {
    let dir = corpus_dir();
    let pdir = dir.join("pcap");
    let Ok(rd) = std::fs::read_dir(&pdir) else {
        eprintln!("no corpus at {}: skipped", dir.display());
        return;
    };
    let verbose = std::env::var_os("DPI_PROBE_VERBOSE").is_some();
    let only = std::env::var("DPI_PROBE_ONLY").ok();
    let mut files: Vec<PathBuf> = rd.filter_map(|e| e.ok().map(|e| e.path())).collect();
    files.sort();
    let mut table: BTreeMap<&'static str, Row> = BTreeMap::new();
    let mut false_pos: BTreeMap<String, u32> = BTreeMap::new();
    let mut wrong: Vec<String> = Vec::new();
    for f in &files {
        let name = f.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if let Some(o) = &only
            && !name.contains(o.as_str())
        {
            continue;
        }
        let ours = replay(f);
        let exp = parse_out(&dir.join("expected").join(format!("{name}.out")));
        for e in &exp {
            let got = ours.get(&e.key).map(|x| x.0);
            let fed = ours.get(&e.key).map(|x| x.1).unwrap_or(0);
            let want = ndpi_app(&e.ndpi);
            match (e.dpi, want) {
                (true, Some(w)) => {
                    let row = table.entry(w.name()).or_default();
                    row.flows += 1;
                    match got {
                        Some(g) if g == w => row.agreed += 1,
                        Some(App::Unknown) | None => {
                            row.unidentified += 1;
                            wrong.push(format!(
                                "{name}: want {} got unknown{} (fed {fed}) :: {}",
                                w.name(),
                                if got.is_none() {
                                    " (flow not seen)"
                                } else {
                                    ""
                                },
                                e.line
                            ));
                        }
                        Some(g) => {
                            row.disagreed += 1;
                            wrong.push(format!(
                                "{name}: want {} got {} :: {}",
                                w.name(),
                                g.name(),
                                e.line
                            ));
                        }
                    }
                }
                _ => {
                    // Not a flow we can be judged on; note what we claimed.
                    if let Some(g) = got
                        && g != App::Unknown
                        && Some(g) != want
                    {
                        *false_pos
                            .entry(format!("{} -> {}", e.ndpi, g.name()))
                            .or_default() += 1;
                        if verbose {
                            wrong.push(format!(
                                "{name}: FP nDPI {} ({}), we {} :: {}",
                                e.ndpi,
                                if e.dpi { "dpi" } else { "guess" },
                                g.name(),
                                e.line
                            ));
                        }
                    }
                }
            }
        }
    }
    println!(
        "\n{:<14} {:>6} {:>7} {:>10} {:>13}",
        "app", "flows", "agreed", "disagreed", "unidentified"
    );
    let mut tot = Row::default();
    for (app, r) in &table {
        println!(
            "{app:<14} {:>6} {:>7} {:>10} {:>13}",
            r.flows, r.agreed, r.disagreed, r.unidentified
        );
        tot.flows += r.flows;
        tot.agreed += r.agreed;
        tot.disagreed += r.disagreed;
        tot.unidentified += r.unidentified;
    }
    println!(
        "{:<14} {:>6} {:>7} {:>10} {:>13}",
        "TOTAL", tot.flows, tot.agreed, tot.disagreed, tot.unidentified
    );
    println!("\nclaims on flows nDPI names otherwise (not judged):");
    for (k, n) in &false_pos {
        println!("  {k}: {n}");
    }
    if verbose {
        println!("\nmisses:");
        for w in &wrong {
            println!("  {w}");
        }
    }
}
