//! Codec, session state machine (with a fake backend), and server/client over a real Unix
//! socket in a temporary directory. No root needed.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use super::frame::{HEADER_LEN, encode};
use super::msg::decode;
use super::session::DEFAULT_EVENT_QUEUE;
use super::stats::{PairStats, PipelineStats, PortCounterStats, PortStats, WorkerStats};
use super::*;
use crate::config::{PortConfig, PortKind};
use crate::policy::{Action, Group, Mac, Mode, Policy, PortSpec, Rule, Workload};
use crate::report::{Endpoint, Event, Threat, ThreatKind, Verdict, Violation};

// ---------------------------------------------------------------- fixtures

fn endpoint(addr: &str, group: &str) -> Endpoint {
    Endpoint {
        addr: addr.parse::<SocketAddr>().unwrap(),
        workload: Some("c1".into()),
        group: group.into(),
    }
}

/// A distinct event per `i`.
fn ev(i: u64) -> Event {
    Event::Violation(Violation {
        at_ms: i,
        client: endpoint("10.0.0.1:40000", "auto.client"),
        server: endpoint("10.0.0.2:80", "auto.web"),
        proto: 6,
        app: "http".into(),
        rule: None,
        mode: Mode::Protect,
        verdict: Verdict::Denied,
    })
}

fn workload(id: &str, group: &str) -> Workload {
    Workload {
        id: id.into(),
        group: group.into(),
        mode: Mode::Protect,
        macs: vec![Mac([2, 0, 0, 0, 0, 1])],
        ips: vec!["10.0.0.2".parse().unwrap()],
        exempt: false,
    }
}

fn policy(generation: u64) -> Policy {
    Policy {
        generation,
        groups: vec![Group {
            name: "auto.web".into(),
            mode: Mode::Protect,
            members: vec![],
            cidrs: vec!["10.0.0.0/24".parse().unwrap()],
        }],
        rules: vec![Rule {
            id: 10001,
            from: "external".into(),
            to: "auto.web".into(),
            ports: vec![PortSpec::Tcp(80, 80)],
            apps: vec![crate::dpi::App::Http],
            action: Action::Allow,
            priority: 0,
            learned: true,
            disabled: false,
        }],
        workloads: vec![workload("c1", "auto.web")],
        nodes: vec!["192.168.1.0/24".parse().unwrap()],
    }
}

fn af_packet(name: &str, iface: &str) -> PortSpecDto {
    PortSpecDto {
        name: name.into(),
        kind: "af_packet".into(),
        iface: Some(iface.into()),
        ..PortSpecDto::default()
    }
}

fn sample_stats() -> Stats {
    let mut snap = crate::pipeline::PipelineSnapshot {
        frames: 10,
        ..Default::default()
    };
    snap.malformed[crate::wire::Malformed::TcpTruncated.index()] = 2;
    Stats {
        generation: 3,
        policy_compile_us: Some(15),
        policy_swap_us: Some(4),
        pairs: vec![PairStats {
            id: 1,
            ports: ["a".into(), "b".into()],
            lcore: 1,
            lcores: vec![1],
        }],
        ports: vec![PortStats {
            name: "a".into(),
            port_id: 0,
            pair: 1,
            lcore: 1,
            lcores: vec![1],
            rss: false,
            counters: PortCounterStats::from(&crate::stats::PortSnapshot {
                rx_packets: 5,
                drops: [1, 2, 0, 0, 0],
                ..Default::default()
            }),
            pmd: None,
            link: Default::default(),
        }],
        workers: vec![WorkerStats {
            lcore: 1,
            pairs: 1,
            running: true,
            pipeline: PipelineStats::from(&snap),
            ..Default::default()
        }],
    }
}

/// One message of every type.
fn every_message() -> Vec<Message> {
    vec![
        Message::Hello {
            version: PROTOCOL_VERSION,
            client: "test".into(),
        },
        Message::SetPolicy(policy(7)),
        Message::SetWorkload(workload("c2", "auto.web")),
        Message::RemoveWorkload { id: "c2".into() },
        Message::AddPair {
            ports: Box::new([af_packet("a", "veth-a"), af_packet("b", "veth-b")]),
        },
        Message::RemovePair { id: 4 },
        Message::GetStats,
        Message::Subscribe,
        Message::Ping,
        Message::HelloOk {
            version: PROTOCOL_VERSION,
            dataplane: "palisade-dp 0.1.0".into(),
            generation: 7,
        },
        Message::PolicyAck { generation: 7 },
        Message::Ok,
        Message::PairAdded { id: 4 },
        Message::Stats(sample_stats()),
        Message::Event(Event::Threat(Threat {
            at_ms: 1,
            kind: ThreatKind::SynFlood,
            id: ThreatKind::SynFlood.id(),
            name: ThreatKind::SynFlood.name().into(),
            client: endpoint("10.0.0.1:1", "external"),
            server: endpoint("10.0.0.2:80", "auto.web"),
            proto: 6,
            verdict: Verdict::Alerted,
            detail: String::new(),
        })),
        Message::Pong,
        Message::error(ErrorCode::NotFound, "no pair 9"),
    ]
}

fn frame_of(id: u64, msg: Message) -> Vec<u8> {
    let payload = msg::to_payload(&Envelope::new(id, msg)).unwrap();
    encode(&payload, DEFAULT_MAX_FRAME).unwrap()
}

fn raw_frame(payload: &[u8]) -> Vec<u8> {
    let mut f = (payload.len() as u32).to_be_bytes().to_vec();
    f.extend_from_slice(payload);
    f
}

/// Every whole frame in `bytes`, decoded.
fn decode_all(bytes: &[u8]) -> Vec<Envelope> {
    let mut d = Decoder::new(DEFAULT_MAX_FRAME);
    d.push(bytes);
    let mut out = Vec::new();
    while let Some(p) = d.next_frame().unwrap() {
        out.push(decode(&p).unwrap());
    }
    assert_eq!(d.buffered(), 0, "a frame was cut short");
    out
}

/// xorshift64*: deterministic, dependency-free.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    /// Up to `max - 1` random bytes.
    fn bytes(&mut self, max: u64) -> Vec<u8> {
        let n = self.below(max);
        (0..n).map(|_| self.next() as u8).collect()
    }
}

// ---------------------------------------------------------------- fake backend

#[derive(Debug, Default)]
struct Fake {
    generation: u64,
    /// When set, `set_policy` acknowledges this generation instead of the policy's.
    ack_as: Option<u64>,
    /// Returned by the next backend call.
    fail_next: Option<BackendError>,
    policies: Vec<u64>,
    workloads: BTreeMap<String, Workload>,
    pairs: BTreeMap<u64, [PortConfig; 2]>,
    next_pair: u64,
    stats: Stats,
}

impl Fake {
    fn fail(&mut self) -> Result<(), BackendError> {
        self.fail_next.take().map_or(Ok(()), Err)
    }
}

impl Backend for Fake {
    fn generation(&self) -> u64 {
        self.generation
    }

    fn set_policy(&mut self, policy: Policy) -> Result<u64, BackendError> {
        self.fail()?;
        self.generation = self.ack_as.unwrap_or(policy.generation);
        self.policies.push(policy.generation);
        self.workloads = policy
            .workloads
            .into_iter()
            .map(|w| (w.id.clone(), w))
            .collect();
        Ok(self.generation)
    }

    fn set_workload(&mut self, workload: Workload) -> Result<(), BackendError> {
        self.fail()?;
        self.workloads.insert(workload.id.clone(), workload);
        Ok(())
    }

    fn remove_workload(&mut self, id: &str) -> Result<(), BackendError> {
        self.fail()?;
        self.workloads
            .remove(id)
            .map(drop)
            .ok_or_else(|| BackendError::not_found(format!("no workload `{id}`")))
    }

    fn add_pair(&mut self, ports: [PortConfig; 2]) -> Result<u64, BackendError> {
        self.fail()?;
        self.next_pair += 1;
        self.pairs.insert(self.next_pair, ports);
        Ok(self.next_pair)
    }

    fn remove_pair(&mut self, id: u64) -> Result<(), BackendError> {
        self.fail()?;
        self.pairs
            .remove(&id)
            .map(drop)
            .ok_or_else(|| BackendError::not_found(format!("no pair {id}")))
    }

    fn stats(&mut self) -> Stats {
        Stats {
            generation: self.generation,
            ..self.stats.clone()
        }
    }
}

/// A session and its backend, driven by hand.
struct Harness {
    s: Session,
    b: Fake,
}

impl Harness {
    fn new() -> Self {
        Self::with(SessionConfig::default())
    }

    fn with(cfg: SessionConfig) -> Self {
        Self {
            s: Session::new(cfg),
            b: Fake::default(),
        }
    }

    /// A session past its handshake.
    fn ready() -> Self {
        let mut h = Self::new();
        h.hello();
        h
    }

    fn hello(&mut self) -> Envelope {
        let r = self.send(
            1,
            Message::Hello {
                version: PROTOCOL_VERSION,
                client: "test".into(),
            },
        );
        assert_eq!(r.len(), 1);
        assert!(self.s.is_ready());
        r.into_iter().next().unwrap()
    }

    fn bytes(&mut self, bytes: &[u8]) -> Vec<Envelope> {
        self.s.receive(bytes, &mut self.b);
        self.drain()
    }

    fn send(&mut self, id: u64, msg: Message) -> Vec<Envelope> {
        self.bytes(&frame_of(id, msg))
    }

    /// The one reply to a request.
    fn ask(&mut self, id: u64, msg: Message) -> Message {
        let mut r = self.send(id, msg);
        assert_eq!(r.len(), 1, "{r:?}");
        let env = r.remove(0);
        assert_eq!(env.id, id);
        env.msg
    }

    /// Everything the session has to send (it encodes events only as output drains).
    fn drain(&mut self) -> Vec<Envelope> {
        let mut all = Vec::new();
        loop {
            let out = self.s.poll_transmit().to_vec();
            if out.is_empty() {
                return decode_all(&all);
            }
            self.s.advance(out.len());
            all.extend(out);
        }
    }
}

fn error_code(m: &Message) -> ErrorCode {
    match m {
        Message::Error { code, .. } => *code,
        other => panic!("expected an error, got {other:?}"),
    }
}

// ---------------------------------------------------------------- codec

#[test]
fn every_message_round_trips() {
    let all = every_message();
    assert_eq!(all.len(), Message::TYPES.len(), "one sample per type");
    for (i, m) in all.into_iter().enumerate() {
        let json = serde_json::to_value(&m).unwrap();
        assert_eq!(json["type"], m.type_name(), "{json}");
        assert_eq!(Message::TYPES[i], m.type_name(), "TYPES is in order");
        assert_eq!(m.is_request(), i < 9, "{}", m.type_name());
        let bytes = frame_of(i as u64, m.clone());
        let got = decode_all(&bytes);
        assert_eq!(got, vec![Envelope::new(i as u64, m)]);
    }
}

#[test]
fn the_wire_shape_is_the_documented_one() {
    let bytes = frame_of(7, Message::Ping);
    let body = br#"{"v":1,"id":7,"msg":{"type":"ping"}}"#;
    assert_eq!(&bytes[..HEADER_LEN], &(body.len() as u32).to_be_bytes());
    assert_eq!(&bytes[HEADER_LEN..], body);
    let hello = serde_json::to_string(&Message::Hello {
        version: 1,
        client: "socat".into(),
    })
    .unwrap();
    assert_eq!(
        hello,
        r#"{"type":"hello","data":{"version":1,"client":"socat"}}"#
    );
    // Hand-written JSON (as typed into socat) decodes, `data: null` included.
    let env = decode(br#"{"v": 1, "id": 3, "msg": {"type": "get_stats", "data": null}}"#).unwrap();
    assert_eq!(env.msg, Message::GetStats);
    // Unknown error codes from a newer peer still read.
    let env =
        decode(br#"{"v":1,"id":3,"msg":{"type":"error","data":{"code":"quota","message":"m"}}}"#)
            .unwrap();
    assert_eq!(error_code(&env.msg), ErrorCode::Other);
    let ev = serde_json::to_string(&Message::Event(Event::Overflow { lost: 3 })).unwrap();
    assert_eq!(
        ev,
        r#"{"type":"event","data":{"type":"overflow","lost":3}}"#
    );
}

#[test]
fn decode_classifies_what_is_wrong_and_keeps_the_id() {
    let cases: &[(&[u8], u64, ErrorCode)] = &[
        (b"", 0, ErrorCode::Malformed),
        (b"{not json", 0, ErrorCode::Malformed),
        (b"[1,2]", 0, ErrorCode::Malformed),
        (br#"{"v":1,"msg":{"type":"ping"}}"#, 0, ErrorCode::Malformed),
        (
            br#"{"v":1,"id":-1,"msg":{"type":"ping"}}"#,
            0,
            ErrorCode::Malformed,
        ),
        (
            br#"{"v":2,"id":5,"msg":{"type":"ping"}}"#,
            5,
            ErrorCode::Version,
        ),
        (br#"{"id":5,"msg":{"type":"ping"}}"#, 5, ErrorCode::Version),
        (br#"{"v":1,"id":5}"#, 5, ErrorCode::Malformed),
        (
            br#"{"v":1,"id":5,"msg":{"type":"ping"},"x":1}"#,
            5,
            ErrorCode::Malformed,
        ),
        (br#"{"v":1,"id":5,"msg":"ping"}"#, 5, ErrorCode::Malformed),
        (
            br#"{"v":1,"id":5,"msg":{"type":"reboot"}}"#,
            5,
            ErrorCode::UnknownMessage,
        ),
        (
            br#"{"v":1,"id":5,"msg":{"type":"remove_pair","data":{"id":"x"}}}"#,
            5,
            ErrorCode::BadRequest,
        ),
        (
            br#"{"v":1,"id":5,"msg":{"type":"set_policy","data":{"generation":1,"bogus":[]}}}"#,
            5,
            ErrorCode::BadRequest,
        ),
    ];
    for (payload, id, code) in cases {
        let r = decode(payload).unwrap_err();
        assert_eq!(
            (r.id, r.code),
            (*id, *code),
            "{}: {}",
            String::from_utf8_lossy(payload),
            r.message
        );
    }
}

#[test]
fn split_reads_one_byte_at_a_time() {
    let msgs = every_message();
    let stream: Vec<u8> = msgs
        .iter()
        .enumerate()
        .flat_map(|(i, m)| frame_of(i as u64, m.clone()))
        .collect();
    let mut d = Decoder::new(DEFAULT_MAX_FRAME);
    let mut got = Vec::new();
    for b in &stream {
        d.push(std::slice::from_ref(b));
        while let Some(p) = d.next_frame().unwrap() {
            got.push(decode(&p).unwrap().msg);
        }
    }
    assert_eq!(got, msgs);
    assert_eq!(d.buffered(), 0);
    assert!(d.finish().is_ok());
}

#[test]
fn several_frames_in_one_read() {
    let mut stream = Vec::new();
    for i in 0..5 {
        stream.extend(frame_of(i, Message::Ping));
    }
    // And half of a sixth.
    let sixth = frame_of(5, Message::Pong);
    stream.extend_from_slice(&sixth[..7]);
    let mut d = Decoder::new(DEFAULT_MAX_FRAME);
    d.push(&stream);
    for i in 0..5 {
        assert_eq!(decode(&d.next_frame().unwrap().unwrap()).unwrap().id, i);
    }
    assert_eq!(d.next_frame(), Ok(None));
    assert_eq!(d.buffered(), 7);
    d.push(&sixth[7..]);
    assert_eq!(
        decode(&d.next_frame().unwrap().unwrap()).unwrap().msg,
        Message::Pong
    );
    // An empty payload is a frame (that then fails to decode, not to frame).
    d.push(&[0, 0, 0, 0]);
    assert_eq!(d.next_frame(), Ok(Some(vec![])));
}

#[test]
fn oversized_length_is_rejected_before_allocation() {
    let max = 1024;
    let mut d = Decoder::new(max);
    // Header and the start of a body in one read: the body is not buffered.
    let mut bytes = u32::MAX.to_be_bytes().to_vec();
    bytes.extend(vec![b'x'; 4096]);
    d.push(&bytes);
    let want = FrameError::TooLarge {
        len: u64::from(u32::MAX),
        max,
    };
    assert_eq!(d.next_frame(), Err(want.clone()));
    assert!(d.capacity() <= 64, "capacity {}", d.capacity());
    assert_eq!(d.buffered(), 0);
    // The stream cannot be resynchronised: later bytes are refused, the error stays.
    d.push(&frame_of(1, Message::Ping));
    assert_eq!(d.next_frame(), Err(want.clone()));
    assert_eq!(d.finish(), Err(want));
    // The limit itself is allowed; one more is not.
    let mut d = Decoder::new(4);
    d.push(&raw_frame(b"abcd"));
    assert_eq!(d.next_frame(), Ok(Some(b"abcd".to_vec())));
    d.push(&raw_frame(b"abcde")[..HEADER_LEN]);
    assert_eq!(d.next_frame(), Err(FrameError::TooLarge { len: 5, max: 4 }));
    // Encoding refuses too.
    assert_eq!(
        encode(b"abcde", 4),
        Err(FrameError::TooLarge { len: 5, max: 4 })
    );
}

#[test]
fn truncated_frame_at_eof_is_an_error() {
    let f = frame_of(1, Message::Ping);
    for cut in 1..f.len() {
        let mut d = Decoder::new(DEFAULT_MAX_FRAME);
        d.push(&f[..cut]);
        assert_eq!(d.next_frame(), Ok(None));
        let need = if cut < HEADER_LEN {
            HEADER_LEN
        } else {
            f.len()
        };
        assert_eq!(
            d.finish(),
            Err(FrameError::Truncated { have: cut, need }),
            "cut at {cut}"
        );
    }
    let mut d = Decoder::new(DEFAULT_MAX_FRAME);
    d.push(&f);
    assert!(d.next_frame().unwrap().is_some());
    assert_eq!(d.finish(), Ok(()));
}

#[test]
fn random_bytes_never_panic() {
    let mut rng = Rng(0x5eed_cafe_f00d_0001);
    let valid: Vec<Vec<u8>> = every_message()
        .into_iter()
        .map(|m| msg::to_payload(&Envelope::new(9, m)).unwrap())
        .collect();
    for case in 0..4000 {
        // Pure noise into a decoder, in random chunks.
        let noise = rng.bytes(200);
        let mut d = Decoder::new(rng.below(300) as u32);
        let mut at = 0;
        while at < noise.len() {
            let n = 1 + rng.below(16) as usize;
            let end = (at + n).min(noise.len());
            d.push(&noise[at..end]);
            at = end;
            while let Ok(Some(p)) = d.next_frame() {
                let _ = decode(&p);
            }
        }
        let _ = d.finish();

        // Well-framed payloads (noise, or a valid message with bytes flipped) into a session:
        // every reply is a well-formed frame, and the session never panics.
        let mut h = Harness::with(SessionConfig {
            event_queue: 4,
            ..SessionConfig::default()
        });
        if case % 2 == 0 {
            h.hello();
        }
        for _ in 0..4 {
            let payload = if rng.below(3) == 0 {
                rng.bytes(64)
            } else {
                let mut p = valid[rng.below(valid.len() as u64) as usize].clone();
                for _ in 0..=rng.below(4) {
                    let i = rng.below(p.len() as u64) as usize;
                    p[i] = rng.next() as u8;
                }
                p
            };
            for env in h.bytes(&raw_frame(&payload)) {
                assert!(!env.msg.is_request(), "{env:?}");
            }
            h.s.publish(&ev(case));
        }
        let _ = h.bytes(&rng.bytes(32));
        h.s.peer_closed();
        let _ = h.drain();
    }
}

// ---------------------------------------------------------------- ports

#[test]
fn port_dtos_validate_like_the_config_file() {
    let kinds = [
        "name = \"p1\"\nkind = \"af_packet\"\niface = \"eth0\"\nframes = 512\n",
        "name = \"p2\"\nkind = \"af_xdp\"\niface = \"eth1\"\nqueue = 2\n",
        "name = \"p3\"\nkind = \"memif\"\nsocket = \"/run/m.sock\"\nrole = \"server\"\nid = 3\nabstract = false\n",
        "name = \"p4\"\nkind = \"virtio_user\"\npath = \"/run/v.sock\"\nserver = true\n",
        "name = \"p5\"\nkind = \"vhost\"\nsocket = \"/run/h.sock\"\nclient = true\n",
        "name = \"p6\"\nkind = \"tap\"\niface = \"tap0\"\n",
        "name = \"p7\"\nkind = \"pcap\"\nrx_pcap = \"/in.pcap\"\ntx_pcap = \"/out.pcap\"\ninfinite_rx = true\n",
        "name = \"p8\"\nkind = \"null\"\nsize = 128\nno_rx = true\n",
        "name = \"p9\"\nkind = \"ring\"\n",
    ];
    for text in kinds {
        let cfg = crate::config::parse_port(text, std::path::Path::new("t")).unwrap();
        let dto = PortSpecDto::from(&cfg);
        // Through JSON, as on the socket.
        let json = serde_json::to_string(&dto).unwrap();
        let back: PortSpecDto = serde_json::from_str(&json).unwrap();
        assert_eq!(back.to_config().unwrap(), cfg, "{json}");
    }
    let dto: PortSpecDto =
        serde_json::from_str(r#"{"name":"m","kind":"memif","socket":"/s","abstract":true}"#)
            .unwrap();
    assert_eq!(dto.abstract_socket, Some(true));
    assert!(
        serde_json::from_str::<PortSpecDto>(r#"{"name":"m","kind":"ring","colour":1}"#).is_err()
    );

    let err = |d: PortSpecDto| d.to_config().unwrap_err().message();
    assert_eq!(
        err(PortSpecDto {
            kind: "ring".into(),
            iface: Some("e".into()),
            ..af_packet("r", "e")
        }),
        "key `iface` does not apply to a ring port (it takes no other keys)"
    );
    assert!(
        err(PortSpecDto {
            kind: "gre".into(),
            ..af_packet("g", "e")
        })
        .starts_with("unknown port kind `gre`")
    );
    assert!(err(af_packet("a", "not/an/iface")).contains("is not a valid interface name"));
    assert!(err(af_packet("bad name", "e")).starts_with("port name `bad name`"));
    // A value that would inject a TOML key is just a (bad) value.
    assert!(err(af_packet("a", "x\"\nframes = 3")).contains("is not a valid interface name"));
}

// ---------------------------------------------------------------- session

#[test]
fn hello_ok_says_version_dataplane_and_generation() {
    let mut h = Harness::new();
    h.b.generation = 41;
    let env = h.hello();
    assert_eq!(env.id, 1);
    assert_eq!(
        env.msg,
        Message::HelloOk {
            version: PROTOCOL_VERSION,
            dataplane: SessionConfig::default().dataplane,
            generation: 41
        }
    );
    assert_eq!(h.s.client(), Some("test"));
}

#[test]
fn handshake_is_required() {
    for first in [
        Message::Ping,
        Message::GetStats,
        Message::SetPolicy(policy(1)),
        Message::Pong,
    ] {
        let mut h = Harness::new();
        let r = h.ask(3, first);
        assert_eq!(error_code(&r), ErrorCode::HandshakeRequired);
        assert!(h.s.is_closing());
        // Nothing more is read, a Hello included.
        assert!(
            h.send(
                4,
                Message::Hello {
                    version: PROTOCOL_VERSION,
                    client: "late".into()
                }
            )
            .is_empty()
        );
        assert!(h.b.policies.is_empty());
    }
    // Garbage before Hello closes too.
    let mut h = Harness::new();
    let r = h.bytes(&raw_frame(b"nope"));
    assert_eq!(error_code(&r[0].msg), ErrorCode::Malformed);
    assert!(h.s.is_closing());
}

#[test]
fn wrong_version_gets_an_error_and_closes() {
    let mut h = Harness::new();
    let r = h.ask(
        1,
        Message::Hello {
            version: PROTOCOL_VERSION + 1,
            client: "future".into(),
        },
    );
    assert_eq!(error_code(&r), ErrorCode::Version);
    assert!(h.s.is_closing());
    assert!(!h.s.wants_input());

    // A Hello in an envelope of another version, too.
    let mut h = Harness::new();
    let r = h.bytes(&raw_frame(
        br#"{"v":2,"id":8,"msg":{"type":"hello","data":{"version":1,"client":"x"}}}"#,
    ));
    assert_eq!((r[0].id, error_code(&r[0].msg)), (8, ErrorCode::Version));
    assert!(h.s.is_closing());
}

#[test]
fn bad_frames_after_the_handshake_get_errors_and_the_connection_stays_usable() {
    let mut h = Harness::ready();
    let cases: &[(&[u8], u64, ErrorCode)] = &[
        (b"{\"v\":1,\"id\":5,", 0, ErrorCode::Malformed),
        (
            br#"{"v":2,"id":6,"msg":{"type":"ping"}}"#,
            6,
            ErrorCode::Version,
        ),
        (
            br#"{"v":1,"id":7,"msg":{"type":"format_disk"}}"#,
            7,
            ErrorCode::UnknownMessage,
        ),
        (
            br#"{"v":1,"id":8,"msg":{"type":"remove_pair"}}"#,
            8,
            ErrorCode::BadRequest,
        ),
    ];
    for (payload, id, code) in cases {
        let r = h.bytes(&raw_frame(payload));
        assert_eq!(r.len(), 1);
        assert_eq!((r[0].id, error_code(&r[0].msg)), (*id, *code));
        assert!(h.s.is_ready());
        assert_eq!(h.ask(100, Message::Ping), Message::Pong);
    }
    // Replies sent as requests, and a second Hello.
    for m in [Message::Pong, Message::Ok, Message::Event(ev(1))] {
        assert_eq!(error_code(&h.ask(9, m)), ErrorCode::Unexpected);
    }
    let r = h.ask(
        10,
        Message::Hello {
            version: PROTOCOL_VERSION,
            client: "again".into(),
        },
    );
    assert_eq!(error_code(&r), ErrorCode::Unexpected);
    assert_eq!(h.ask(11, Message::Ping), Message::Pong);
}

#[test]
fn an_oversized_frame_gets_an_error_and_closes() {
    let mut h = Harness::with(SessionConfig {
        max_frame: 256,
        ..SessionConfig::default()
    });
    h.hello();
    let r = h.bytes(&raw_frame(&[b' '; 257]));
    assert_eq!(r.len(), 1);
    assert_eq!(
        (r[0].id, error_code(&r[0].msg)),
        (0, ErrorCode::FrameTooLarge)
    );
    assert!(h.s.is_closing());
    assert!(h.send(2, Message::Ping).is_empty());
}

#[test]
fn a_reply_too_large_for_a_frame_becomes_an_error() {
    let mut h = Harness::with(SessionConfig {
        max_frame: 200,
        ..SessionConfig::default()
    });
    h.hello();
    h.b.stats = sample_stats();
    let r = h.ask(2, Message::GetStats);
    assert_eq!(error_code(&r), ErrorCode::FrameTooLarge);
    assert!(h.s.is_ready());
    assert_eq!(h.ask(3, Message::Ping), Message::Pong);
}

#[test]
fn set_policy_is_acked_with_the_generation_the_backend_returns() {
    let mut h = Harness::ready();
    assert_eq!(
        h.ask(2, Message::SetPolicy(policy(5))),
        Message::PolicyAck { generation: 5 }
    );
    h.b.ack_as = Some(9);
    assert_eq!(
        h.ask(3, Message::SetPolicy(policy(6))),
        Message::PolicyAck { generation: 9 }
    );
    assert_eq!(h.b.policies, vec![5, 6]);
    h.b.ack_as = None;

    // Older than what runs: refused before the backend sees it. Equal: a resync, accepted.
    assert_eq!(
        error_code(&h.ask(4, Message::SetPolicy(policy(8)))),
        ErrorCode::StaleGeneration
    );
    assert_eq!(
        h.ask(5, Message::SetPolicy(policy(9))),
        Message::PolicyAck { generation: 9 }
    );
    // A policy that does not validate: the PolicyError's message, backend untouched.
    let mut bad = policy(10);
    bad.rules[0].to = "nowhere".into();
    match h.ask(6, Message::SetPolicy(bad)) {
        Message::Error { code, message } => {
            assert_eq!(code, ErrorCode::Invalid);
            assert_eq!(
                message,
                "rule 10001 names group `nowhere`, which does not exist"
            );
        }
        other => panic!("{other:?}"),
    }
    // The backend's own refusal (e.g. compile failure) passes through.
    h.b.fail_next = Some(BackendError::failed("workers did not acknowledge"));
    match h.ask(7, Message::SetPolicy(policy(10))) {
        Message::Error { code, message } => {
            assert_eq!(code, ErrorCode::Failed);
            assert_eq!(message, "workers did not acknowledge");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(h.b.policies, vec![5, 6, 9]);
    assert_eq!(h.b.generation, 9);
}

#[test]
fn workloads_pairs_stats_and_ping() {
    let mut h = Harness::ready();
    h.b.stats = sample_stats();
    assert_eq!(
        h.ask(2, Message::SetWorkload(workload("c9", "auto.web"))),
        Message::Ok
    );
    assert!(h.b.workloads.contains_key("c9"));
    assert_eq!(
        h.ask(3, Message::RemoveWorkload { id: "c9".into() }),
        Message::Ok
    );
    assert_eq!(
        error_code(&h.ask(4, Message::RemoveWorkload { id: "c9".into() })),
        ErrorCode::NotFound
    );

    let r = h.ask(
        5,
        Message::AddPair {
            ports: Box::new([af_packet("a", "veth-a"), af_packet("b", "veth-b")]),
        },
    );
    assert_eq!(r, Message::PairAdded { id: 1 });
    assert_eq!(
        h.b.pairs[&1][0].kind,
        PortKind::AfPacket {
            iface: "veth-a".into(),
            frames: None
        }
    );
    for ports in [
        [af_packet("a", "veth-a"), af_packet("a", "veth-b")],
        [af_packet("a", "veth-a"), af_packet("b", "veth-a")],
        [af_packet("a", "veth-a"), af_packet("b", "")],
    ] {
        assert_eq!(
            error_code(&h.ask(
                6,
                Message::AddPair {
                    ports: Box::new(ports)
                }
            )),
            ErrorCode::Invalid
        );
    }
    assert_eq!(h.b.pairs.len(), 1);
    assert_eq!(h.ask(7, Message::RemovePair { id: 1 }), Message::Ok);
    assert_eq!(
        error_code(&h.ask(8, Message::RemovePair { id: 1 })),
        ErrorCode::NotFound
    );

    match h.ask(9, Message::GetStats) {
        Message::Stats(s) => {
            assert_eq!(s, h.b.stats());
            assert_eq!(s.malformed(), 2);
            assert_eq!(s.workers[0].pipeline.malformed["tcp_truncated"], 2);
            assert_eq!(s.workers[0].pipeline.malformed.len(), 1);
            assert_eq!(s.ports[0].counters.drops["tx_full"], 1);
            assert_eq!(s.ports[0].counters.drops["malformed"], 2);
            assert_eq!(s.ports[0].counters.drops["fragment"], 0);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(h.ask(10, Message::Ping), Message::Pong);
}

#[test]
fn subscribers_get_events_in_order() {
    let mut h = Harness::ready();
    assert!(!h.s.publish(&ev(0)), "not subscribed: not queued");
    // Subscribe's Ok comes before the first event, even one published before the output
    // drained.
    h.s.receive(&frame_of(2, Message::Subscribe), &mut h.b);
    for i in 1..=3 {
        assert!(h.s.publish(&ev(i)));
    }
    let r = h.drain();
    assert_eq!(r[0], Envelope::new(2, Message::Ok));
    let events: Vec<_> = r[1..].iter().map(|e| (e.id, e.msg.clone())).collect();
    assert_eq!(
        events,
        (1..=3)
            .map(|i| (0, Message::Event(ev(i))))
            .collect::<Vec<_>>()
    );
    // Requests keep working between events.
    h.s.publish(&ev(4));
    let r = h.send(3, Message::Ping);
    assert_eq!(r[0], Envelope::new(3, Message::Pong));
    assert_eq!(r[1], Envelope::new(0, Message::Event(ev(4))));
    // Subscribing twice changes nothing.
    assert_eq!(h.ask(4, Message::Subscribe), Message::Ok);
}

#[test]
fn a_slow_subscriber_overflows_with_the_exact_count() {
    let mut h = Harness::with(SessionConfig {
        event_queue: 4,
        ..SessionConfig::default()
    });
    h.hello();
    assert_eq!(h.ask(2, Message::Subscribe), Message::Ok);
    // Nothing is drained while 10 events arrive: 4 fit, 6 are lost.
    let queued = (1..=10).filter(|i| h.s.publish(&ev(*i))).count();
    assert_eq!(queued, 4);
    // The next event that fits comes after the count of what was lost.
    let msgs: Vec<_> = h.drain().into_iter().map(|e| e.msg).collect();
    assert_eq!(
        msgs,
        vec![
            Message::Event(ev(1)),
            Message::Event(ev(2)),
            Message::Event(ev(3)),
            Message::Event(ev(4)),
            Message::Event(Event::Overflow { lost: 6 }),
        ]
    );
    // Drained: no loss now.
    assert!(h.s.publish(&ev(11)));
    assert_eq!(
        h.drain().into_iter().map(|e| e.msg).collect::<Vec<_>>(),
        vec![Message::Event(ev(11))]
    );

    // The loss is reported ahead of the next event that fits, when the queue has room again
    // before it has drained: big events stop the encoding at the output's high-water mark.
    // A worker's own Overflow that is dropped adds the events it stood for.
    let big = |i: u64| match ev(i) {
        Event::Violation(mut v) => {
            v.app = "x".repeat(100 << 10);
            Event::Violation(v)
        }
        other => other,
    };
    for i in 20..24 {
        assert!(h.s.publish(&big(i)));
    }
    assert!(!h.s.publish(&ev(24)));
    assert!(!h.s.publish(&Event::Overflow { lost: 10 }));
    let partial = h.s.poll_transmit().len();
    assert!(partial > 0);
    assert!(h.s.publish(&ev(25)), "room again: queued");
    // (Summarised: the big events would make a failure message megabytes long.)
    let summary: Vec<String> = h
        .drain()
        .into_iter()
        .map(|e| match e.msg {
            Message::Event(Event::Violation(v)) => format!("{}:{}", v.at_ms, v.app.len()),
            Message::Event(Event::Overflow { lost }) => format!("lost {lost}"),
            other => format!("{other:?}"),
        })
        .collect();
    let n = 100 << 10;
    assert_eq!(
        summary,
        [
            format!("20:{n}"),
            format!("21:{n}"),
            format!("22:{n}"),
            format!("23:{n}"),
            "lost 11".into(),
            "25:4".into()
        ]
    );
}

#[test]
fn a_client_that_does_not_read_stops_being_read() {
    let mut h = Harness::ready();
    let ping = frame_of(2, Message::Ping);
    let mut n = 0;
    while h.s.wants_input() {
        h.s.receive(&ping, &mut h.b);
        n += 1;
        assert!(n < 1_000_000);
    }
    assert!(h.s.pending() > 0);
    let out = h.s.poll_transmit().to_vec();
    h.s.advance(out.len());
    assert_eq!(decode_all(&out).len(), n);
    assert!(h.s.wants_input());
}

#[test]
fn default_event_queue_is_documented() {
    assert_eq!(SessionConfig::default().event_queue, DEFAULT_EVENT_QUEUE);
}

// ---------------------------------------------------------------- over a Unix socket

mod socket {
    use std::os::unix::fs::{FileTypeExt, PermissionsExt};
    use std::os::unix::net::{UnixListener, UnixStream};
    use std::path::{Path, PathBuf};
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::thread::JoinHandle;

    use super::*;

    /// A server polled on its own thread until stopped; gives the backend back.
    struct Running {
        stop: Arc<AtomicBool>,
        thread: Option<JoinHandle<Fake>>,
    }

    impl Running {
        fn start(cfg: ServerConfig, backend: Fake, events: Vec<Event>) -> Self {
            let mut server = Server::bind(cfg).unwrap();
            let stop = Arc::new(AtomicBool::new(false));
            let flag = Arc::clone(&stop);
            let thread = std::thread::spawn(move || {
                let mut b = backend;
                let mut events = events;
                while !flag.load(Ordering::Acquire) {
                    server.poll(&mut b, Duration::from_millis(5));
                    // Publish once someone listens.
                    if !events.is_empty() && server.subscribers() > 0 {
                        for e in events.drain(..) {
                            server.publish(&e);
                        }
                    }
                }
                drop(server);
                b
            });
            Self {
                stop,
                thread: Some(thread),
            }
        }

        fn stop(mut self) -> Fake {
            self.stop.store(true, Ordering::Release);
            self.thread.take().unwrap().join().unwrap()
        }
    }

    impl Drop for Running {
        fn drop(&mut self) {
            self.stop.store(true, Ordering::Release);
            if let Some(t) = self.thread.take() {
                let _ = t.join();
            }
        }
    }

    fn sock(dir: &tempfile::TempDir) -> PathBuf {
        dir.path().join("run").join("dp.sock")
    }

    fn quick() -> ClientConfig {
        ClientConfig {
            timeout: Some(Duration::from_secs(10)),
            ..ClientConfig::default()
        }
    }

    fn mode(p: &Path) -> u32 {
        std::fs::metadata(p).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn socket_file_is_0600_in_a_0700_directory_and_removed_on_drop() {
        let dir = tempfile::tempdir().unwrap();
        let path = sock(&dir);
        let server = Server::bind(ServerConfig::new(&path)).unwrap();
        let meta = std::fs::symlink_metadata(&path).unwrap();
        assert!(meta.file_type().is_socket());
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
        assert_eq!(mode(path.parent().unwrap()), 0o700);
        // No leftovers from the private bind directory.
        let names: Vec<_> = std::fs::read_dir(path.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("dp.sock")]);
        drop(server);
        assert!(!path.exists());
    }

    #[test]
    fn drop_leaves_a_file_that_replaced_the_socket() {
        let dir = tempfile::tempdir().unwrap();
        let path = sock(&dir);
        let server = Server::bind(ServerConfig::new(&path)).unwrap();
        std::fs::remove_file(&path).unwrap();
        std::fs::write(&path, "someone else's").unwrap();
        drop(server);
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "someone else's");
    }

    #[test]
    fn a_client_sets_policy_leaves_and_the_next_one_resyncs() {
        let dir = tempfile::tempdir().unwrap();
        let path = sock(&dir);
        let running = Running::start(ServerConfig::new(&path), Fake::default(), vec![]);

        let mut c1 = Client::connect_with(&path, quick()).unwrap();
        assert_eq!(c1.server().version, PROTOCOL_VERSION);
        assert_eq!(c1.server().generation, 0);
        assert_eq!(c1.set_policy(&policy(5)).unwrap(), 5);
        c1.set_workload(&workload("c7", "auto.web")).unwrap();
        drop(c1);

        // The dataplane kept the policy; a new client sees its generation and resyncs.
        let mut c2 = Client::connect_with(&path, quick()).unwrap();
        assert_eq!(c2.server().generation, 5);
        assert_eq!(
            c2.set_policy(&policy(5)).unwrap(),
            5,
            "same generation: resync"
        );
        assert_eq!(c2.set_policy(&policy(6)).unwrap(), 6);
        match c2.set_policy(&policy(2)) {
            Err(CtlError::Remote { code, .. }) => assert_eq!(code, ErrorCode::StaleGeneration),
            other => panic!("{other:?}"),
        }
        let id = c2
            .add_pair(af_packet("a", "veth-a"), af_packet("b", "veth-b"))
            .unwrap();
        c2.remove_pair(id).unwrap();
        match c2.remove_pair(id) {
            Err(CtlError::Remote { code, message }) => {
                assert_eq!(code, ErrorCode::NotFound);
                assert_eq!(message, format!("no pair {id}"));
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(c2.stats().unwrap().generation, 6);
        c2.ping().unwrap();
        drop(c2);

        let b = running.stop();
        assert_eq!(b.policies, vec![5, 5, 6]);
        assert!(!path.exists(), "removed when the server stopped");
    }

    #[test]
    fn events_stream_to_a_subscriber_until_the_server_goes() {
        let dir = tempfile::tempdir().unwrap();
        let path = sock(&dir);
        let events: Vec<Event> = (1..=50).map(ev).collect();
        let running = Running::start(ServerConfig::new(&path), Fake::default(), events.clone());
        let mut c = Client::connect_with(&path, quick()).unwrap();
        assert_eq!(c.next_event(Some(Duration::from_millis(20))).unwrap(), None);
        c.subscribe().unwrap();
        let mut got = Vec::new();
        while got.len() < events.len() {
            match c.next_event(Some(Duration::from_secs(10))).unwrap() {
                Some(e) => got.push(e),
                None => panic!("timed out after {} events", got.len()),
            }
        }
        assert_eq!(got, events);
        c.ping().unwrap();
        running.stop();
        // The server is gone: the iterator ends.
        assert_eq!(c.events().count(), 0);
    }

    #[test]
    fn malformed_and_oversized_frames_over_the_socket() {
        use std::io::{Read, Write};
        let dir = tempfile::tempdir().unwrap();
        let path = sock(&dir);
        let mut cfg = ServerConfig::new(&path);
        cfg.session.max_frame = 4096;
        let running = Running::start(cfg, Fake::default(), vec![]);

        let mut d = Decoder::new(DEFAULT_MAX_FRAME);
        let mut read_one = |s: &mut UnixStream| -> Envelope {
            let mut buf = [0u8; 4096];
            loop {
                if let Some(p) = d.next_frame().unwrap() {
                    return decode(&p).unwrap();
                }
                let n = s.read(&mut buf).unwrap();
                assert!(n > 0, "closed early");
                d.push(&buf[..n]);
            }
        };
        let mut s = UnixStream::connect(&path).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s.write_all(&frame_of(
            1,
            Message::Hello {
                version: PROTOCOL_VERSION,
                client: "raw".into(),
            },
        ))
        .unwrap();
        assert!(matches!(read_one(&mut s).msg, Message::HelloOk { .. }));
        // Garbage and a good request in one write.
        let mut w = raw_frame(b"\xff\xfe garbage");
        w.extend(frame_of(2, Message::Ping));
        s.write_all(&w).unwrap();
        let e = read_one(&mut s);
        assert_eq!((e.id, error_code(&e.msg)), (0, ErrorCode::Malformed));
        assert_eq!(read_one(&mut s), Envelope::new(2, Message::Pong));
        // A length above the limit: an error, then the server closes.
        s.write_all(&u32::MAX.to_be_bytes()).unwrap();
        let e = read_one(&mut s);
        assert_eq!(error_code(&e.msg), ErrorCode::FrameTooLarge);
        let mut rest = Vec::new();
        assert_eq!(s.read_to_end(&mut rest).unwrap(), 0, "closed");
        drop(running);
    }

    #[test]
    fn too_many_clients_are_told_busy() {
        let dir = tempfile::tempdir().unwrap();
        let path = sock(&dir);
        let mut cfg = ServerConfig::new(&path);
        cfg.max_clients = 1;
        let running = Running::start(cfg, Fake::default(), vec![]);
        let mut c1 = Client::connect_with(&path, quick()).unwrap();
        match Client::connect_with(&path, quick()) {
            Err(CtlError::Remote { code, .. }) => assert_eq!(code, ErrorCode::Busy),
            other => panic!("{other:?}"),
        }
        c1.ping().unwrap();
        drop(c1);
        // The slot frees up when the first client goes.
        let mut ok = None;
        for _ in 0..200 {
            match Client::connect_with(&path, quick()) {
                Ok(c) => {
                    ok = Some(c);
                    break;
                }
                Err(CtlError::Remote {
                    code: ErrorCode::Busy,
                    ..
                }) => std::thread::sleep(Duration::from_millis(10)),
                Err(e) => panic!("{e}"),
            }
        }
        ok.expect("a slot").ping().unwrap();
        drop(running);
    }

    #[test]
    fn a_stale_socket_file_is_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("dp.sock");
        drop(UnixListener::bind(&path).unwrap()); // leaves the file behind, nobody listening
        assert!(path.exists());
        let running = Running::start(ServerConfig::new(&path), Fake::default(), vec![]);
        Client::connect_with(&path, quick())
            .unwrap()
            .ping()
            .unwrap();
        drop(running);
    }

    #[test]
    fn a_live_socket_is_not_taken_over() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("dp.sock");
        let _other = UnixListener::bind(&path).unwrap();
        match Server::bind(ServerConfig::new(&path)) {
            Err(e @ CtlError::InUse(_)) => {
                assert!(e.to_string().contains("in use"), "{e}");
            }
            other => panic!("{other:?}"),
        }
        assert!(path.exists());
    }

    #[test]
    fn a_file_that_is_not_a_socket_is_an_error_and_kept() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("dp.sock");
        std::fs::write(&path, "precious").unwrap();
        match Server::bind(ServerConfig::new(&path)) {
            Err(e @ CtlError::NotASocket(_)) => {
                assert_eq!(
                    e.to_string(),
                    format!(
                        "{} exists and is not a socket; not removing it",
                        path.display()
                    )
                );
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "precious");
        // A directory, too.
        let d = dir.path().join("d.sock");
        std::fs::create_dir(&d).unwrap();
        assert!(matches!(
            Server::bind(ServerConfig::new(&d)),
            Err(CtlError::NotASocket(_))
        ));
        assert!(d.is_dir());
    }

    #[test]
    fn connecting_to_nothing_is_an_io_error_with_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("none.sock");
        match Client::connect(&path) {
            Err(e @ CtlError::Io { .. }) => {
                assert!(e.to_string().contains("none.sock"), "{e}");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn poll_returns_after_its_timeout_with_nothing_to_do() {
        let dir = tempfile::tempdir().unwrap();
        let mut server = Server::bind(ServerConfig::new(sock(&dir))).unwrap();
        let mut b = Fake::default();
        assert_eq!(server.poll(&mut b, Duration::ZERO), 0);
        assert_eq!(server.poll(&mut b, Duration::from_millis(10)), 0);
        assert_eq!(server.connections(), 0);
    }
}
