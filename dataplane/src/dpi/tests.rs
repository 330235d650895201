//! Engine tests: names, state size, budget, the strong/weak/port rules, and no panics.

use super::fixtures::*;
use super::testutil::*;
use super::*;

#[test]
fn names_round_trip_and_all_is_in_discriminant_order() {
    for (i, app) in App::ALL.iter().enumerate() {
        assert_eq!(*app as usize, i, "{app:?}");
        assert_eq!(App::from_name(app.name()), Some(*app));
        assert_eq!(app.name(), app.name().to_ascii_lowercase());
    }
    assert_eq!(App::from_name("unknown"), Some(App::Unknown));
    assert_eq!(App::from_name("HTTP"), None);
    assert_eq!(App::from_name("mssql"), Some(App::Mssql));
    assert_eq!(App::default(), App::Unknown);
    let required = [
        "http",
        "http2",
        "grpc",
        "tls",
        "dns",
        "ssh",
        "mysql",
        "postgresql",
        "redis",
        "mongodb",
        "cassandra",
        "kafka",
        "zookeeper",
        "memcached",
        "ntp",
        "dhcp",
        "amqp",
        "mqtt",
        "nats",
        "mssql",
        "oracle",
        "ftp",
        "smtp",
        "imap",
        "pop3",
        "ldap",
        "sip",
        "rtsp",
        "syslog",
        "snmp",
        "tftp",
        "kerberos",
        "quic",
    ];
    for name in required {
        assert!(App::from_name(name).is_some(), "{name}");
    }
}

#[test]
fn state_is_small() {
    assert!(size_of::<State>() <= 16);
}

#[test]
fn strong_payload_decides_on_the_first_packet() {
    let (app, progress) = classify(Transport::Tcp, NEUTRAL_PORT, &[(C2S, HTTP_GET)]);
    assert_eq!((app, progress), (App::Http, Progress::Decided(App::Http)));
}

#[test]
fn http_on_the_mysql_port_is_http() {
    let (app, _) = classify(Transport::Tcp, 3306, &[(C2S, HTTP_GET)]);
    assert_eq!(app, App::Http);
    let (app, _) = classify(Transport::Tcp, 3306, &[(S2C, HTTP_200)]);
    assert_eq!(app, App::Http);
}

#[test]
fn a_port_alone_decides_nothing() {
    let junk = [0x5au8; 64];
    for port in [80, 443, 53, 3306, 5432, 6379, 1433] {
        let flow = Flow {
            transport: Transport::Tcp,
            client_port: CLIENT_PORT,
            server_port: port,
        };
        let mut st = State::default();
        assert_eq!(
            st.inspect(&flow, Dir::ClientToServer, &junk),
            Progress::Continue
        );
        assert_eq!(st.app(), App::Unknown);
    }
}

#[test]
fn empty_payloads_do_not_count() {
    let flow = Flow {
        transport: Transport::Tcp,
        client_port: CLIENT_PORT,
        server_port: 80,
    };
    let mut st = State::default();
    for _ in 0..100 {
        assert_eq!(
            st.inspect(&flow, Dir::ClientToServer, &[]),
            Progress::Continue
        );
        assert_eq!(
            st.inspect(&flow, Dir::ServerToClient, &[]),
            Progress::Continue
        );
    }
    assert!(!st.done());
    assert_eq!(
        st.inspect(&flow, Dir::ClientToServer, HTTP_GET),
        Progress::Decided(App::Http)
    );
}

#[test]
fn budget_exhaustion_gives_up_after_both_directions() {
    let flow = Flow {
        transport: Transport::Tcp,
        client_port: CLIENT_PORT,
        server_port: 80,
    };
    let mut st = State::default();
    let junk = [0x5au8; 40];
    for i in 0..BUDGET {
        assert_eq!(
            st.inspect(&flow, Dir::ClientToServer, &junk),
            Progress::Continue,
            "c2s {i}"
        );
    }
    for i in 0..BUDGET - 1 {
        assert_eq!(
            st.inspect(&flow, Dir::ServerToClient, &junk),
            Progress::Continue,
            "s2c {i}"
        );
    }
    assert!(!st.done());
    assert_eq!(
        st.inspect(&flow, Dir::ServerToClient, &junk),
        Progress::GaveUp
    );
    assert!(st.done());
    assert_eq!(st.app(), App::Unknown);
    // Once done, the answer does not change, even for a telling payload.
    assert_eq!(
        st.inspect(&flow, Dir::ClientToServer, HTTP_GET),
        Progress::GaveUp
    );
    assert_eq!(st.app(), App::Unknown);
}

#[test]
fn a_one_sided_flow_gives_up_at_twice_the_budget() {
    let flow = Flow {
        transport: Transport::Udp,
        client_port: CLIENT_PORT,
        server_port: 9,
    };
    let mut st = State::default();
    let junk = [0xa5u8; 40];
    for _ in 0..2 * BUDGET - 1 {
        assert_eq!(
            st.inspect(&flow, Dir::ClientToServer, &junk),
            Progress::Continue
        );
    }
    assert_eq!(
        st.inspect(&flow, Dir::ClientToServer, &junk),
        Progress::GaveUp
    );
}

#[test]
fn payloads_past_the_budget_are_not_inspected() {
    // Nine junk packets from the client, then HTTP: the ninth is past the budget.
    let junk = [0x5au8; 40];
    let mut packets: Vec<(Dir, &[u8])> = vec![(C2S, &junk[..]); usize::from(BUDGET)];
    packets.push((C2S, HTTP_GET));
    assert_eq!(classify(Transport::Tcp, 80, &packets).0, App::Unknown);
    // The server's first payload is still within its own budget.
    packets.push((S2C, HTTP_200));
    assert_eq!(classify(Transport::Tcp, 80, &packets).0, App::Http);
}

#[test]
fn decided_is_sticky() {
    let flow = Flow {
        transport: Transport::Tcp,
        client_port: CLIENT_PORT,
        server_port: 22,
    };
    let mut st = State::default();
    assert_eq!(
        st.inspect(&flow, Dir::ServerToClient, SSH_BANNER),
        Progress::Decided(App::Ssh)
    );
    assert!(st.done());
    assert_eq!(
        st.inspect(&flow, Dir::ClientToServer, HTTP_GET),
        Progress::Decided(App::Ssh)
    );
    assert_eq!(st.app(), App::Ssh);
}

#[test]
fn weak_evidence_needs_a_second_packet_or_the_port() {
    // A bare 220 greeting: FTP or SMTP.
    let bare = b"220 Service ready\r\n";
    assert_eq!(
        classify(Transport::Tcp, NEUTRAL_PORT, &[(S2C, bare)]).0,
        App::Unknown
    );
    assert_eq!(classify(Transport::Tcp, 21, &[(S2C, bare)]).0, App::Ftp);
    assert_eq!(classify(Transport::Tcp, 25, &[(S2C, bare)]).0, App::Smtp);
    // The client's command settles it off-port.
    assert_eq!(
        classify(
            Transport::Tcp,
            NEUTRAL_PORT,
            &[(S2C, bare), (C2S, SMTP_EHLO)]
        )
        .0,
        App::Smtp
    );
    assert_eq!(
        classify(
            Transport::Tcp,
            NEUTRAL_PORT,
            &[(S2C, bare), (C2S, FTP_USER)]
        )
        .0,
        App::Ftp
    );
}

#[test]
fn the_port_breaks_a_tie_between_payload_matches() {
    // A DNS-format query: DNS on 53, mDNS on 5353.
    assert_eq!(
        classify(Transport::Udp, 53, &[(C2S, DNS_QUERY)]).0,
        App::Dns
    );
    assert_eq!(
        classify(Transport::Udp, 5353, &[(C2S, DNS_QUERY)]).0,
        App::Mdns
    );
    // An NBNS-encoded name: NetBIOS unless sent to the DNS port.
    assert_eq!(
        classify(Transport::Udp, 137, &[(C2S, DNS_NBNS_NAME)]).0,
        App::Netbios
    );
    assert_eq!(
        classify(Transport::Udp, NEUTRAL_PORT, &[(C2S, DNS_NBNS_NAME)]).0,
        App::Netbios
    );
    assert_eq!(
        classify(Transport::Udp, 53, &[(C2S, DNS_NBNS_NAME)]).0,
        App::Dns
    );
}

#[test]
fn random_payloads_stay_unknown_on_neutral_ports() {
    let mut rng = Rng::new(7);
    let mut buf = [0u8; 200];
    let mut decided = 0;
    for round in 0..400 {
        let transport = if round % 2 == 0 {
            Transport::Tcp
        } else {
            Transport::Udp
        };
        let flow = Flow {
            transport,
            client_port: CLIENT_PORT,
            server_port: NEUTRAL_PORT,
        };
        let mut st = State::default();
        for i in 0..4 {
            rng.fill(&mut buf);
            let n = 1 + rng.below(buf.len());
            let dir = if i % 2 == 0 {
                Dir::ClientToServer
            } else {
                Dir::ServerToClient
            };
            st.inspect(&flow, dir, &buf[..n]);
        }
        if st.app() != App::Unknown {
            decided += 1;
        }
    }
    // Short random buffers can look like a 4-byte CoAP header or a TFTP block; allow a
    // sliver, not a habit.
    assert!(decided <= 4, "{decided} of 400 random flows got an app");
}

#[test]
fn no_detector_panics() {
    let mut tried = 0;
    for seed in ALL {
        for detect in TCP.iter().chain(UDP) {
            tried += no_panic(*detect, seed);
        }
    }
    assert!(tried > 10_000);
}

#[test]
fn inspect_never_panics_on_fixture_mutations() {
    let mut rng = Rng::new(11);
    for seed in ALL {
        let mut buf = seed.to_vec();
        for round in 0..40 {
            buf.copy_from_slice(seed);
            let i = rng.below(buf.len());
            buf[i] ^= 1 << (round % 8);
            let cut = rng.below(buf.len() + 1);
            for transport in [Transport::Tcp, Transport::Udp] {
                let port = [53, 80, 137, 1812, 5060, NEUTRAL_PORT][round % 6];
                let flow = Flow {
                    transport,
                    client_port: port,
                    server_port: port,
                };
                let mut st = State::default();
                st.inspect(&flow, Dir::ClientToServer, &buf[..cut]);
                st.inspect(&flow, Dir::ServerToClient, &buf);
            }
        }
    }
}
