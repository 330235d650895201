//! Messaging and coordination: AMQP, MQTT, NATS, Kafka, ZooKeeper, and the Elasticsearch
//! transport protocol. Hand-written (fixed headers and length fields; no crate checks
//! "is this the opening message" for these).

use super::{App, Hit, Pkt};
use crate::bytes::{be16, be32, is_text, u8_at};

/// AMQP: the protocol header `AMQP` + 4 version bytes (0-9-1: `\0\0\x09\x01`, 0-10:
/// `\x01\x01\0\x0a`, 1.0: `\0\x01\0\0` and its SASL/TLS variants), or the server's
/// `connection.start` method frame.
pub(super) fn detect_amqp(p: &Pkt<'_>) -> Hit {
    let d = p.data;
    if d.len() == 8 && d.starts_with(b"AMQP") {
        return Hit::Strong(App::Amqp);
    }
    amqp_frames(d)
}

/// AMQP 0-9-1 frames (section 4.2.3): type (method 1, header 2, body 3, heartbeat 8),
/// channel, size, payload, frame-end 0xCE. Every frame that ends inside the payload must
/// end with 0xCE; a method frame of a known class makes it strong (a flow caught
/// mid-stream), a lone heartbeat weak.
fn amqp_frames(d: &[u8]) -> Hit {
    let mut at = 0;
    let mut method = false;
    let mut frames = 0;
    while at < d.len() {
        let (Some(ty), Some(size)) = (u8_at(d, at), be32(d, at + 3)) else {
            return Hit::Miss;
        };
        if !matches!(ty, 1 | 2 | 3 | 8) || size > 1 << 24 {
            return Hit::Miss;
        }
        if ty == 1 {
            // Class ids: connection 10, channel 20, exchange 40, queue 50, basic 60,
            // confirm 85, tx 90.
            if !matches!(be16(d, at + 7), Some(10 | 20 | 40 | 50 | 60 | 85 | 90)) {
                return Hit::Miss;
            }
            method = true;
        }
        let end = at + 7 + size as usize;
        match u8_at(d, end) {
            Some(0xce) => frames += 1,
            Some(_) => return Hit::Miss,
            None => break, // continues in the next segment
        }
        at = end + 1;
    }
    match (method, frames) {
        (true, _) => Hit::Strong(App::Amqp),
        (false, 1..) => Hit::Weak(App::Amqp),
        _ => Hit::Miss,
    }
}

/// An MQTT variable-length "remaining length" (1-4 bytes); returns (value, bytes used).
fn mqtt_remaining(d: &[u8]) -> Option<(usize, usize)> {
    let mut v = 0usize;
    for i in 0..4 {
        let b = *d.get(i)?;
        v |= usize::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            return Some((v, i + 1));
        }
    }
    None
}

/// MQTT (3.1, 3.1.1, 5.0): CONNECT with protocol name `MQTT` (levels 4, 5) or `MQIsdp`
/// (level 3); CONNACK weakly.
pub(super) fn detect_mqtt(p: &Pkt<'_>) -> Hit {
    let d = p.data;
    let Some(first) = u8_at(d, 0) else {
        return Hit::Miss;
    };
    let Some((rem, n)) = d.get(1..).and_then(mqtt_remaining) else {
        return Hit::Miss;
    };
    let body = d.get(1 + n..).unwrap_or_default();
    if first == 0x10 && p.c2s() {
        let name_len = be16(body, 0).map(usize::from);
        let name = name_len.and_then(|l| body.get(2..2 + l));
        let level = name_len.and_then(|l| u8_at(body, 2 + l));
        return match (name, level) {
            (Some(b"MQTT"), Some(4 | 5)) | (Some(b"MQIsdp"), Some(3)) if rem >= body.len() => {
                Hit::Strong(App::Mqtt)
            }
            _ => Hit::Miss,
        };
    }
    // Mid-session packets whose remaining length is exactly the payload: weak.
    if rem != body.len() {
        return Hit::Miss;
    }
    let weak = match first {
        // CONNACK: session-present flag, reason code.
        0x20 => rem >= 2 && matches!(u8_at(body, 0), Some(0 | 1)),
        // PINGREQ, PINGRESP, DISCONNECT (3.1.1).
        0xc0 | 0xd0 | 0xe0 => rem == 0,
        // PUBLISH: topic length then a UTF-8 topic.
        0x30..=0x3f => be16(body, 0).is_some_and(|n| {
            let n = usize::from(n);
            n > 0
                && n + 2 <= rem
                && body
                    .get(2..2 + n)
                    .is_some_and(|t| t.iter().all(|&b| is_text(b)))
        }),
        // PUBACK, PUBREC, PUBREL, PUBCOMP, UNSUBACK (3.1.1): a packet id.
        0x40 | 0x50 | 0x62 | 0x70 | 0xb0 => rem == 2,
        // SUBSCRIBE: packet id, then a topic filter.
        0x82 => rem >= 5 && be16(body, 2).is_some_and(|n| usize::from(n) + 4 < rem + 1),
        _ => false,
    };
    if weak {
        Hit::Weak(App::Mqtt)
    } else {
        Hit::Miss
    }
}

/// NATS: the server's `INFO {json}` greeting, the client's `CONNECT {json}`.
pub(super) fn detect_nats(p: &Pkt<'_>) -> Hit {
    let d = p.data;
    if d.starts_with(b"INFO {\"") || d.starts_with(b"CONNECT {\"") {
        return Hit::Strong(App::Nats);
    }
    if d == b"PING\r\n" || d == b"PONG\r\n" || d.starts_with(b"+OK\r\n") {
        return Hit::Weak(App::Nats);
    }
    Hit::Miss
}

/// Kafka request header v0-v2: size, api_key, api_version, correlation_id, client_id
/// (nullable string); the size must match the payload.
pub(super) fn detect_kafka(p: &Pkt<'_>) -> Hit {
    let d = p.data;
    if !p.c2s() {
        return Hit::Miss;
    }
    let (Some(size), Some(key), Some(ver), Some(corr), Some(cid_len)) =
        (be32(d, 0), be16(d, 4), be16(d, 6), be32(d, 8), be16(d, 12))
    else {
        return Hit::Miss;
    };
    if size as usize + 4 != d.len() || key > 80 || ver > 20 || corr > 0x7fff_ffff {
        return Hit::Miss;
    }
    if cid_len == 0xffff {
        return Hit::Weak(App::Kafka); // null client id: header alone
    }
    let cid_len = usize::from(cid_len);
    match d.get(14..14 + cid_len) {
        Some(cid) if cid.iter().all(|&b| is_text(b)) => Hit::Strong(App::Kafka),
        _ => Hit::Miss,
    }
}

/// ZooKeeper ConnectRequest: length 44 (45 with the read-only flag), protocol version 0,
/// then timeout, session id and a 16-byte password with its length; four-letter words
/// weakly.
pub(super) fn detect_zookeeper(p: &Pkt<'_>) -> Hit {
    let d = p.data;
    if p.c2s() && p.first() {
        if matches!(be32(d, 0), Some(44 | 45))
            && d.len() == be32(d, 0).unwrap_or(0) as usize + 4
            && be32(d, 4) == Some(0)
            && be32(d, 28) == Some(16)
        {
            return Hit::Strong(App::Zookeeper);
        }
        const WORDS: &[&[u8]] = &[
            b"ruok", b"stat", b"srvr", b"mntr", b"conf", b"cons", b"envi", b"wchs", b"dump",
            b"isro",
        ];
        if d.len() == 4 && WORDS.contains(&d) {
            return Hit::Weak(App::Zookeeper);
        }
    }
    Hit::Miss
}

/// Elasticsearch transport protocol (port 9300): `ES` then a 4-byte length of the rest.
pub(super) fn detect_elasticsearch(p: &Pkt<'_>) -> Hit {
    let d = p.data;
    match (d.strip_prefix(b"ES"), be32(d, 2)) {
        (Some(_), Some(len)) if len as usize + 6 == d.len() && len >= 13 => {
            Hit::Strong(App::Elasticsearch)
        }
        // A 6-byte ping (`ES` + 0xffffffff).
        (Some(_), Some(0xffff_ffff)) if d.len() == 6 => Hit::Weak(App::Elasticsearch),
        _ => Hit::Miss,
    }
}

#[cfg(test)]
mod tests;
