//! Messaging detector tests.

use super::*;
use crate::dpi::Transport;
use crate::dpi::fixtures::*;
use crate::dpi::testutil::*;

#[test]
fn amqp_header_and_frames() {
    assert_eq!(detect_amqp(&tcp_c2s(AMQP_HEADER)), strong(App::Amqp));
    assert_eq!(detect_amqp(&tcp_s2c(AMQP_DELIVER)), strong(App::Amqp));
    // A frame whose end byte is wrong; a heartbeat alone is weak.
    let mut bad = AMQP_DELIVER.to_vec();
    *bad.last_mut().expect("non-empty") = 0;
    assert_eq!(detect_amqp(&tcp_s2c(&bad)), Hit::Miss);
    assert_eq!(
        detect_amqp(&tcp_c2s(b"\x08\x00\x00\x00\x00\x00\x00\xce")),
        Hit::Weak(App::Amqp)
    );
    assert_eq!(detect_amqp(&tcp_c2s(b"AMQP")), Hit::Miss);
}

#[test]
fn mqtt_connect_and_session_packets() {
    assert_eq!(detect_mqtt(&tcp_c2s(MQTT_CONNECT)), strong(App::Mqtt));
    // MQTT 3.1.1 CONNECT: "MQTT" level 4, clean session, keep-alive 60, client id "c".
    let v311 = b"\x10\x0d\x00\x04MQTT\x04\x02\x00\x3c\x00\x01c";
    assert_eq!(detect_mqtt(&tcp_c2s(v311)), strong(App::Mqtt));
    // CONNECT with the wrong level for its protocol name.
    assert_eq!(
        detect_mqtt(&tcp_c2s(b"\x10\x0d\x00\x04MQTT\x03\x02\x00\x3c\x00\x01c")),
        Hit::Miss
    );
    // coap_mqtt.pcap: PINGREQ then PINGRESP, caught mid-session.
    assert_eq!(detect_mqtt(&tcp_c2s(b"\xc0\x00")), Hit::Weak(App::Mqtt));
    assert_eq!(
        classify(
            Transport::Tcp,
            NEUTRAL_PORT,
            &[(C2S, b"\xc0\x00"), (S2C, b"\xd0\x00")]
        )
        .0,
        App::Mqtt
    );
    // mqtt.pcap, packet 2: SUBSCRIBE.
    let sub = b"\x82\x1e\x00\x01\x00\x19astr/s720/02D5050223D3/99\x00";
    assert_eq!(detect_mqtt(&tcp_c2s(sub)), Hit::Weak(App::Mqtt));
}

#[test]
fn nats_greetings() {
    assert_eq!(detect_nats(&tcp_c2s(NATS_CONNECT)), strong(App::Nats));
    assert_eq!(
        detect_nats(&tcp_s2c(b"INFO {\"server_id\":\"x\"} \r\n")),
        strong(App::Nats)
    );
    assert_eq!(detect_nats(&tcp_s2c(b"INFO server\r\n")), Hit::Miss);
}

#[test]
fn kafka_request_header() {
    assert_eq!(
        detect_kafka(&tcp_c2s(KAFKA_API_VERSIONS)),
        strong(App::Kafka)
    );
    // From the server, or with a size that disagrees, or an absurd api key.
    assert_eq!(detect_kafka(&tcp_s2c(KAFKA_API_VERSIONS)), Hit::Miss);
    assert_eq!(detect_kafka(&tcp_c2s(&KAFKA_API_VERSIONS[..20])), Hit::Miss);
    let mut key = KAFKA_API_VERSIONS.to_vec();
    key[4] = 0x7f;
    assert_eq!(detect_kafka(&tcp_c2s(&key)), Hit::Miss);
}

#[test]
fn zookeeper_connect() {
    assert_eq!(
        detect_zookeeper(&tcp_c2s(ZK_CONNECT)),
        strong(App::Zookeeper)
    );
    assert_eq!(
        detect_zookeeper(&tcp_c2s(b"ruok")),
        Hit::Weak(App::Zookeeper)
    );
    assert_eq!(
        classify(Transport::Tcp, 2181, &[(C2S, b"ruok")]).0,
        App::Zookeeper
    );
    assert_eq!(detect_zookeeper(&tcp_c2s(&ZK_CONNECT[..40])), Hit::Miss);
}

#[test]
fn elasticsearch_transport() {
    assert_eq!(
        detect_elasticsearch(&tcp_c2s(ES_HANDSHAKE)),
        strong(App::Elasticsearch)
    );
    assert_eq!(
        detect_elasticsearch(&tcp_c2s(&ES_HANDSHAKE[..30])),
        Hit::Miss
    );
    assert_eq!(detect_elasticsearch(&tcp_c2s(b"ESMTP")), Hit::Miss);
}

#[test]
fn never_panics() {
    let seeds = [
        AMQP_HEADER,
        AMQP_DELIVER,
        MQTT_CONNECT,
        NATS_CONNECT,
        KAFKA_API_VERSIONS,
        ZK_CONNECT,
        ES_HANDSHAKE,
    ];
    for seed in seeds {
        for detect in [
            detect_amqp,
            detect_mqtt,
            detect_nats,
            detect_kafka,
            detect_zookeeper,
            detect_elasticsearch,
        ] {
            assert!(no_panic(detect, seed) > 0);
        }
    }
}
