//! One test per rejection: the message and the line it points at.

use std::path::Path;

use super::*;

const PORTS: &str = r#"
[[dataplane.port]]
name = "a"
kind = "af_packet"
iface = "veth-a"

[[dataplane.port]]
name = "b"
kind = "af_packet"
iface = "veth-b"

[[dataplane.pair]]
ports = ["a", "b"]
"#;

fn ok(text: &str) -> DataplaneConfig {
    match parse(text, Path::new("p.toml")) {
        Ok(c) => c,
        Err(e) => panic!("expected a valid config, got: {e}"),
    }
}

/// Parses `text` expecting an error; returns (line, message).
fn bad(text: &str) -> (usize, String) {
    match parse(text, Path::new("p.toml")) {
        Ok(c) => panic!("expected an error, got {c:?}"),
        Err(e) => {
            let line = e.line().unwrap_or(0);
            // The Display form names the file and position.
            assert!(e.to_string().starts_with(&format!("p.toml:{line}:")), "{e}");
            (line, e.message())
        }
    }
}

#[test]
fn minimal_config_gets_documented_defaults() {
    let c = ok(&format!("[dataplane]\n{PORTS}"));
    assert_eq!(c.lcores, vec![0, 1]);
    assert_eq!(c.worker_lcores(), &[1]);
    assert_eq!(c.memory, Memory::InMemory);
    assert_eq!(c.file_prefix, "palisade");
    assert_eq!(c.idle, Idle::Adaptive);
    assert_eq!(c.idle_sleep_us, defaults::IDLE_SLEEP_US);
    assert_eq!(c.mbufs, defaults::MBUFS);
    assert_eq!(c.stats_interval_s, defaults::STATS_INTERVAL_S);
    assert!(!c.pci);
    assert_eq!(c.pairs, vec![[0, 1]]);
    assert_eq!(
        c.ports[0],
        PortConfig {
            name: "a".into(),
            kind: PortKind::AfPacket {
                iface: "veth-a".into(),
                frames: None
            },
            queues: 1,
        }
    );
}

#[test]
fn the_documented_shape_parses() {
    let c = ok(&format!(
        "[dataplane]\nlcores = \"0-1\"\nmemory = \"in-memory\"\nfile_prefix = \"palisade\"\nidle = \"adaptive\"\neal_extra = []\n{PORTS}"
    ));
    assert_eq!(c.lcores_arg, "0,1");
}

#[test]
fn eal_args_follow_memory_mode() {
    let mut c = ok(&format!("[dataplane]\nfile_prefix = \"t1\"\n{PORTS}"));
    assert_eq!(
        c.eal_args(),
        [
            "-l",
            "0,1",
            "--file-prefix",
            "t1",
            "--no-telemetry",
            "--in-memory",
            "--single-file-segments",
            "--no-pci"
        ]
    );
    c.memory = Memory::NoHuge;
    c.pci = true;
    c.eal_extra = vec!["--log-level=7".into()];
    assert_eq!(
        c.eal_args(),
        [
            "-l",
            "0,1",
            "--file-prefix",
            "t1",
            "--no-telemetry",
            "--no-huge",
            "-m",
            "256",
            "--log-level=7"
        ]
    );
    c.memory = Memory::Hugepages;
    c.eal_extra.clear();
    assert_eq!(
        c.eal_args(),
        [
            "-l",
            "0,1",
            "--file-prefix",
            "t1",
            "--no-telemetry",
            "--huge-unlink"
        ]
    );
}

#[test]
fn every_port_kind_maps_to_devargs() {
    let text = r#"
[dataplane]
[[dataplane.port]]
name = "p1"
kind = "af_packet"
iface = "eth0"
frames = 1024
[[dataplane.port]]
name = "p2"
kind = "af_xdp"
iface = "eth1"
queue = 2
[[dataplane.port]]
name = "p3"
kind = "memif"
socket = "/run/m.sock"
role = "server"
id = 7
abstract = false
[[dataplane.port]]
name = "p4"
kind = "virtio_user"
path = "/run/vhost.sock"
server = true
[[dataplane.port]]
name = "p5"
kind = "vhost"
socket = "/run/vhost.sock"
[[dataplane.port]]
name = "p6"
kind = "tap"
iface = "pal0"
[[dataplane.port]]
name = "p7"
kind = "pcap"
rx_pcap = "/tmp/in.pcap"
tx_pcap = "/tmp/out.pcap"
infinite_rx = true
[[dataplane.port]]
name = "p8"
kind = "null"
size = 128
no_rx = true
[[dataplane.port]]
name = "p9"
kind = "ring"
[[dataplane.port]]
name = "p10"
kind = "null"
[[dataplane.pair]]
ports = ["p1", "p2"]
[[dataplane.pair]]
ports = ["p3", "p4"]
[[dataplane.pair]]
ports = ["p5", "p6"]
[[dataplane.pair]]
ports = ["p7", "p8"]
[[dataplane.pair]]
ports = ["p9", "p10"]
"#;
    let c = ok(text);
    let got: Vec<String> = c.ports.iter().map(PortConfig::devargs).collect();
    assert_eq!(
        got,
        [
            "net_af_packet_p1,iface=eth0,qpairs=1,framecnt=1024",
            "net_af_xdp_p2,iface=eth1,start_queue=2,queue_count=1",
            "net_memif_p3,role=server,socket=/run/m.sock,id=7,socket-abstract=no",
            "net_virtio_user_p4,path=/run/vhost.sock,queues=1,server=1",
            "net_vhost_p5,iface=/run/vhost.sock,queues=1,client=0",
            "net_tap_p6,iface=pal0",
            "net_pcap_p7,rx_pcap=/tmp/in.pcap,tx_pcap=/tmp/out.pcap,infinite_rx=1",
            "net_null_p8,size=128,no-rx=1",
            "net_ring_p9",
            "net_null_p10,size=64,no-rx=0",
        ]
    );
    let names: Vec<&str> = c.ports.iter().map(|p| p.kind.name()).collect();
    assert_eq!(&names[..9], PORT_KINDS);
}

#[test]
fn other_sections_are_left_to_palisade() {
    let c = ok(&format!(
        "[api]\nlisten = \"127.0.0.1:10443\"\n[store]\nx = 1\n[dataplane]\n{PORTS}"
    ));
    assert_eq!(c.ports.len(), 2);
}

#[test]
fn toml_syntax_error_names_the_line() {
    let (line, msg) = bad("[dataplane]\nlcores = \"0-1\"\nidle = \n");
    assert_eq!(line, 3);
    assert!(
        msg.contains("string values must be quoted") || msg.contains("expected"),
        "{msg}"
    );
}

#[test]
fn missing_section() {
    assert_eq!(bad("[api]\n"), (1, "missing section [dataplane]".into()));
}

#[test]
fn unknown_key_in_dataplane() {
    let (line, msg) = bad("[dataplane]\nlcore = \"0-1\"\n");
    assert_eq!(line, 2);
    assert!(
        msg.starts_with("unknown field `lcore`, expected one of"),
        "{msg}"
    );
}

#[test]
fn unknown_port_kind() {
    let (line, msg) = bad("[dataplane]\n[[dataplane.port]]\nname = \"a\"\nkind = \"e1000\"\n");
    assert_eq!(line, 4);
    assert_eq!(
        msg,
        "unknown port kind `e1000`; expected one of af_packet, af_xdp, memif, virtio_user, vhost, tap, pcap, null, ring"
    );
}

#[test]
fn unknown_key_in_port() {
    let (line, msg) =
        bad("[dataplane]\n[[dataplane.port]]\nname = \"a\"\nkind = \"null\"\ncolour = \"red\"\n");
    assert_eq!(line, 5);
    assert!(msg.starts_with("unknown field `colour`"), "{msg}");
}

#[test]
fn key_of_another_kind() {
    let (line, msg) = bad(
        "[dataplane]\n[[dataplane.port]]\nname = \"a\"\nkind = \"af_packet\"\niface = \"x\"\nsocket = \"/s\"\n",
    );
    assert_eq!(line, 6);
    assert_eq!(
        msg,
        "key `socket` does not apply to a af_packet port (it takes iface, frames, queues)"
    );
    let (_, msg) =
        bad("[dataplane]\n[[dataplane.port]]\nname = \"a\"\nkind = \"ring\"\niface = \"x\"\n");
    assert_eq!(
        msg,
        "key `iface` does not apply to a ring port (it takes no other keys)"
    );
}

#[test]
fn missing_required_key() {
    let (line, msg) = bad("[dataplane]\n[[dataplane.port]]\nname = \"a\"\nkind = \"af_packet\"\n");
    assert_eq!(
        (line, msg.as_str()),
        (4, "port `a`: a af_packet port needs `iface`")
    );
    let (_, msg) = bad("[dataplane]\n[[dataplane.port]]\nname = \"m\"\nkind = \"memif\"\n");
    assert_eq!(msg, "port `m`: a memif port needs `socket`");
    let (_, msg) = bad("[dataplane]\n[[dataplane.port]]\nname = \"p\"\nkind = \"pcap\"\n");
    assert_eq!(
        msg,
        "port `p`: a pcap port needs `rx_pcap`, `tx_pcap` or `iface`"
    );
}

#[test]
fn bad_values() {
    let port = |extra: &str| format!("[dataplane]\n[[dataplane.port]]\nname = \"a\"\n{extra}\n");
    assert_eq!(
        bad(&port("kind = \"af_packet\"\niface = \"a/b\"")),
        (
            5,
            "`a/b` is not a valid interface name (1-15 characters, no '/', ' ', ',', '=' or ':')"
                .into()
        )
    );
    assert_eq!(
        bad(&port(
            "kind = \"af_packet\"\niface = \"averyveryverylongname\""
        ))
        .1,
        "`averyveryverylongname` is not a valid interface name (1-15 characters, no '/', ' ', ',', '=' or ':')"
    );
    assert_eq!(
        bad(&port("kind = \"af_packet\"\niface = \"x\"\nframes = 1000")),
        (6, "`frames` must be a power of two".into())
    );
    assert_eq!(
        bad(&port("kind = \"memif\"\nsocket = \"/a,b\"")),
        (
            5,
            "`socket` must be non-empty and may not contain ',' or '='".into()
        )
    );
    assert_eq!(
        bad(&port(
            "kind = \"memif\"\nsocket = \"/s\"\nrole = \"master\""
        )),
        (
            6,
            "memif `role` is `server` or `client`, not `master`".into()
        )
    );
    assert_eq!(
        bad(&port("kind = \"null\"\nsize = 4")),
        (5, "`size` must be 14-9000 bytes".into())
    );
    let (line, msg) = bad("[dataplane]\n[[dataplane.port]]\nname = \"a b\"\nkind = \"null\"\n");
    assert_eq!(line, 3);
    assert_eq!(
        msg,
        "port name `a b` must be 1-32 characters of letters, digits, '_' and '-'"
    );
}

#[test]
fn bad_lcores() {
    assert_eq!(
        bad("[dataplane]\nlcores = \"\"\n"),
        (2, "lcore list is empty".into())
    );
    assert_eq!(
        bad("[dataplane]\nlcores = \"0-x\"\n"),
        (2, "`x` is not an lcore number".into())
    );
    assert_eq!(
        bad("[dataplane]\nlcores = \"3-1\"\n"),
        (2, "lcore range `3-1` runs backwards".into())
    );
    assert_eq!(
        bad("[dataplane]\nlcores = \"0,200\"\n"),
        (2, "lcore 200 is out of range (DPDK allows 0-127)".into())
    );
    assert_eq!(
        bad("[dataplane]\nlcores = \"0\"\n"),
        (2, "`lcores` must name at least two lcores: the first serves control, the others run workers".into())
    );
    assert_eq!(
        ok(&format!("[dataplane]\nlcores = \"0, 2-3\"\n{PORTS}")).lcores,
        vec![0, 2, 3]
    );
}

#[test]
fn bad_enums_and_numbers() {
    let (line, msg) = bad("[dataplane]\nmemory = \"huge\"\n");
    assert_eq!(line, 2);
    assert!(
        msg.starts_with(
            "unknown variant `huge`, expected one of `hugepages`, `in-memory`, `no-huge`"
        ),
        "{msg}"
    );
    let (_, msg) = bad("[dataplane]\nidle = \"lazy\"\n");
    assert!(
        msg.starts_with("unknown variant `lazy`, expected `busy` or `adaptive`"),
        "{msg}"
    );
    assert_eq!(
        bad("[dataplane]\nidle_sleep_us = 0\n"),
        (2, "`idle_sleep_us` must be greater than 0".into())
    );
    assert_eq!(
        bad("[dataplane]\nidle_sleep_us = 1000000\n"),
        (2, "`idle_sleep_us` must be at most 100000 (0.1 s)".into())
    );
    assert_eq!(
        bad("[dataplane]\nmbufs = 100\n"),
        (2, "`mbufs` must be at least 1024".into())
    );
    assert_eq!(
        bad("[dataplane]\nmbuf_cache = 600\n"),
        (
            2,
            "`mbuf_cache` must be at most 512 and at most mbufs / 8".into()
        )
    );
    let (line, msg) = bad("[dataplane]\nrx_desc = -1\n");
    assert_eq!(line, 2);
    assert!(
        msg.contains("invalid value") || msg.contains("u16"),
        "{msg}"
    );
    assert_eq!(
        bad("[dataplane]\nfile_prefix = \"a/b\"\n"),
        (
            2,
            "`file_prefix` must be 1-32 characters of letters, digits, '_' and '-'".into()
        )
    );
}

#[test]
fn bad_pairs() {
    let two = "[dataplane]\n[[dataplane.port]]\nname = \"a\"\nkind = \"null\"\n[[dataplane.port]]\nname = \"b\"\nkind = \"null\"\n";
    assert_eq!(
        bad(&format!(
            "{two}[[dataplane.pair]]\nports = [\"a\", \"c\"]\n"
        )),
        (
            9,
            "pair names port `c`, which no [[dataplane.port]] defines".into()
        )
    );
    assert_eq!(
        bad(&format!("{two}[[dataplane.pair]]\nports = [\"a\"]\n")),
        (9, "a pair joins exactly two ports, this one names 1".into())
    );
    assert_eq!(
        bad(&format!(
            "{two}[[dataplane.pair]]\nports = [\"a\", \"a\"]\n"
        ))
        .1,
        "port `a` is already in another pair"
    );
    assert_eq!(
        bad(&format!(
            "{two}[[dataplane.pair]]\nports = [\"a\", \"b\"]\n[[dataplane.pair]]\nports = [\"b\", \"a\"]\n"
        )),
        (11, "port `b` is already in another pair".into())
    );
    assert_eq!(
        bad(two),
        (
            3,
            "port `a` is in no [[dataplane.pair]]; every port forwards to its pair's other port"
                .into()
        )
    );
}

#[test]
fn duplicate_ports_and_shared_interfaces() {
    let text = "[dataplane]\n[[dataplane.port]]\nname = \"a\"\nkind = \"null\"\n[[dataplane.port]]\nname = \"a\"\nkind = \"null\"\n";
    assert_eq!(bad(text), (6, "port `a` is defined twice".into()));
    let text = "[dataplane]\n[[dataplane.port]]\nname = \"a\"\nkind = \"af_packet\"\niface = \"x\"\n[[dataplane.port]]\nname = \"b\"\nkind = \"af_xdp\"\niface = \"x\"\n";
    assert_eq!(
        bad(text),
        (7, "ports `a` and `b` both use interface `x`".into())
    );
}

#[test]
fn unreadable_file() {
    let err = load(Path::new("/nonexistent/palisade.toml")).unwrap_err();
    assert_eq!(err.to_string(), "cannot read /nonexistent/palisade.toml");
    assert!(err.line().is_none());
}

#[test]
fn never_panics_on_garbage() {
    for text in [
        "",
        "\0",
        "[dataplane",
        "[dataplane]\nport = 3",
        "[[dataplane]]",
        "[dataplane]\n[[dataplane.pair]]\nports = 1",
        "[dataplane]\nlcores = \"-\"",
        "[dataplane]\nlcores = \"4294967296\"",
        "\u{feff}[dataplane]\u{0}",
    ] {
        let _ = parse(text, Path::new("g.toml"));
    }
}

#[test]
fn sessions_and_timeouts() {
    let c = ok(&format!(
        "[dataplane]\nsessions = 4096\n[dataplane.timeouts]\nudp = 60\ntcp_established = 3600\n{PORTS}"
    ));
    assert_eq!(c.sessions, 4096);
    assert_eq!(c.timeouts.udp, std::time::Duration::from_secs(60));
    assert_eq!(c.timeouts.established, std::time::Duration::from_secs(3600));
    assert_eq!(
        c.timeouts.opening,
        std::time::Duration::from_secs(20),
        "unset keys keep their default"
    );
    assert_eq!(
        bad("[dataplane]\nsessions = 10\n"),
        (2, "`sessions` must be 64-16777216".into())
    );
    assert_eq!(
        bad("[dataplane]\n[dataplane.timeouts]\nudp = 0\n"),
        (3, "a timeout must be 1-86400 seconds".into())
    );
    let (line, msg) = bad("[dataplane]\n[dataplane.timeouts]\ntcp = 5\n");
    assert_eq!(line, 3);
    assert!(msg.starts_with("unknown field `tcp`"), "{msg}");
}

#[test]
fn socket_and_tcp_reset() {
    let c = ok(&format!("[dataplane]\n{PORTS}"));
    assert_eq!(c.socket, PathBuf::from("/run/palisade/dp.sock"));
    assert!(c.tcp_reset);
    let c = ok(&format!(
        "[dataplane]\nsocket = \"/tmp/x/dp.sock\"\ntcp_reset = false\n{PORTS}"
    ));
    assert_eq!(c.socket, PathBuf::from("/tmp/x/dp.sock"));
    assert!(!c.tcp_reset);
    assert_eq!(
        bad("[dataplane]\nsocket = \"dp.sock\"\n"),
        (2, "`socket` must be an absolute path to a file".into())
    );
}

#[test]
fn one_port_table_validates_like_the_file() {
    let p = parse_port(
        "name = \"a\"\nkind = \"af_packet\"\niface = \"veth-a\"\n",
        Path::new("x"),
    )
    .unwrap();
    assert_eq!(
        p,
        PortConfig {
            name: "a".into(),
            kind: PortKind::AfPacket {
                iface: "veth-a".into(),
                frames: None
            },
            queues: 1,
        }
    );
    let err = |text: &str| parse_port(text, Path::new("x")).unwrap_err().message();
    assert_eq!(
        err("name = \"a\"\nkind = \"ring\"\niface = \"e\"\n"),
        "key `iface` does not apply to a ring port (it takes no other keys)"
    );
    assert_eq!(
        err("name = \"a\"\nkind = \"tap\"\n"),
        "port `a`: a tap port needs `iface`"
    );
    assert!(err("name = \"a\"\nkind = \"tap\"\nbogus = 1\n").starts_with("unknown field `bogus`"));
}

#[test]
fn queues_map_to_each_kinds_devargs_and_pairs_must_agree() {
    let pair = |a: &str, b: &str| {
        format!(
            "[dataplane]\n[[dataplane.port]]\nname = \"a\"\n{a}\n[[dataplane.port]]\nname = \"b\"\n{b}\n[[dataplane.pair]]\nports = [\"a\", \"b\"]\n"
        )
    };
    let c = ok(&pair(
        "kind = \"af_packet\"\niface = \"eth0\"\nqueues = 4",
        "kind = \"af_xdp\"\niface = \"eth1\"\nqueues = 4",
    ));
    assert_eq!(
        c.ports.iter().map(PortConfig::devargs).collect::<Vec<_>>(),
        [
            "net_af_packet_a,iface=eth0,qpairs=4",
            "net_af_xdp_b,iface=eth1,start_queue=0,queue_count=4",
        ]
    );
    assert_eq!(c.ports[0].queues, 4);
    let c = ok(&pair(
        "kind = \"virtio_user\"\npath = \"/run/v.sock\"\nqueues = 2",
        "kind = \"vhost\"\nsocket = \"/run/h.sock\"\nqueues = 2",
    ));
    assert_eq!(
        c.ports.iter().map(PortConfig::devargs).collect::<Vec<_>>(),
        [
            "net_virtio_user_a,path=/run/v.sock,queues=2,server=0",
            "net_vhost_b,iface=/run/h.sock,queues=2,client=0",
        ]
    );
    // memif, tap and null take their queue count from the ethdev configuration.
    let c = ok(&pair(
        "kind = \"memif\"\nsocket = \"/run/m.sock\"\nqueues = 3",
        "kind = \"null\"\nqueues = 3",
    ));
    assert_eq!(
        c.ports[0].devargs(),
        "net_memif_a,role=client,socket=/run/m.sock,id=0,socket-abstract=yes"
    );
    assert_eq!([c.ports[0].queues, c.ports[1].queues], [3, 3]);

    assert_eq!(
        bad(&pair("kind = \"null\"\nqueues = 2", "kind = \"null\"")),
        (
            10,
            "ports `a` (2 queues) and `b` (1 queue) form a pair and need the same `queues`: queue i of one forwards to queue i of the other".into()
        )
    );
    assert_eq!(
        bad(&pair("kind = \"null\"\nqueues = 0", "kind = \"null\"")),
        (5, "`queues` must be 1-16".into())
    );
    assert_eq!(
        bad(&pair("kind = \"null\"\nqueues = 17", "kind = \"null\"")),
        (5, "`queues` must be 1-16".into())
    );
    assert_eq!(
        bad(&pair("kind = \"ring\"\nqueues = 2", "kind = \"null\"")),
        (
            5,
            "key `queues` does not apply to a ring port (it takes no other keys)".into()
        )
    );
}

#[test]
fn lcores_may_map_lcores_onto_other_cpus() {
    let c = ok(&format!("[dataplane]\nlcores = \"0-1,2@1\"\n{PORTS}"));
    assert_eq!(c.lcores, vec![0, 1, 2]);
    assert_eq!(c.cpus, vec![0, 1, 1]);
    assert_eq!(c.worker_lcores(), &[1, 2]);
    assert_eq!(c.lcores_arg, "0@0,1@1,2@1");
    assert_eq!(&c.eal_args()[..2], ["--lcores", "0@0,1@1,2@1"]);
    let plain = ok(&format!("[dataplane]\nlcores = \"0,1@1\"\n{PORTS}"));
    assert_eq!(&plain.eal_args()[..2], ["-l", "0,1"]);
    assert_eq!(
        bad("[dataplane]\nlcores = \"0,1@0,1@1\"\n"),
        (2, "lcore 1 is mapped to two CPUs".into())
    );
    assert_eq!(
        bad("[dataplane]\nlcores = \"0,1@x\"\n"),
        (2, "`x` is not an lcore number".into())
    );
}
