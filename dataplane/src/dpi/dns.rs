//! DNS (RFC 1035 section 4.1) over UDP and TCP (2-byte length prefix, RFC 1035
//! section 4.2.2), its look-alikes mDNS (RFC 6762, same format on port 5353: the port
//! settles the tie) and the NetBIOS name and datagram services (RFC 1002 sections 4.2 and
//! 4.4: DNS-shaped, with 32-letter encoded names).
//!
//! The check is the header plus a walk of the first question: a strict full parse (as DNS
//! crates do, allocating records) would reject the damaged queries resolvers still get.
//! A header that is plausible but whose question does not parse is weak evidence.

use super::bytes::{be16, u8_at};
use super::{App, Hit, Pkt};

/// Outcome of looking at a DNS message.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Shape {
    No,
    /// Header plausible, question unreadable.
    Header,
    /// Header and question name well formed; carries the first label's length and whether
    /// it is a NetBIOS-encoded name.
    Full { netbios_name: bool },
}

fn shape(d: &[u8]) -> Shape {
    let (Some(flags), Some(qd), Some(an), Some(ns), Some(ar)) =
        (be16(d, 2), be16(d, 4), be16(d, 6), be16(d, 8), be16(d, 10))
    else {
        return Shape::No;
    };
    let response = flags & 0x8000 != 0;
    let opcode = (flags >> 11) & 0xf;
    let rcode = flags & 0xf;
    if !matches!(opcode, 0..=2 | 4..=6) || rcode > 10 {
        return Shape::No;
    }
    let plausible = if response {
        qd <= 4 && an <= 256 && ns <= 64 && ar <= 64 && (qd + an + ns + ar) > 0
    } else if opcode == 5 || opcode == 4 {
        qd == 1 && an <= 64 && ns <= 64 && ar <= 64 // UPDATE, NOTIFY reuse the sections
    } else {
        (1..=4).contains(&qd) && an == 0 && ns <= 8 && ar <= 8
    };
    if !plausible {
        return Shape::No;
    }
    if qd == 0 {
        return Shape::Header;
    }
    match question(d) {
        Some(netbios_name) => Shape::Full { netbios_name },
        None => Shape::Header,
    }
}

/// Walks the first question's name (uncompressed labels, at most 255 bytes) and checks its
/// type and class. Returns whether the name is a NetBIOS-encoded name.
fn question(d: &[u8]) -> Option<bool> {
    let mut at = 12;
    let mut total = 0usize;
    let first = u8_at(d, at)?;
    loop {
        let len = usize::from(u8_at(d, at)?);
        at += 1;
        if len == 0 {
            break;
        }
        if len > 63 {
            return None;
        }
        d.get(at..at + len)?;
        at += len;
        total += len + 1;
        if total > 255 {
            return None;
        }
    }
    let qclass = be16(d, at + 2)? & 0x7fff; // mDNS: top bit is "unicast response"
    if !matches!(qclass, 1 | 3 | 4 | 254 | 255) {
        return None;
    }
    let netbios = first == 32
        && d.get(13..45)
            .is_some_and(|n| n.iter().all(|c| (b'A'..=b'P').contains(c)));
    Some(netbios)
}

/// DNS and mDNS over UDP. mDNS is told apart by port only (same format).
pub(super) fn detect_udp(p: &Pkt<'_>) -> Hit {
    if p.data.len() > 9000 {
        return Hit::Miss;
    }
    let app = if p.client_port == 5353 || p.server_port == 5353 {
        App::Mdns
    } else {
        App::Dns
    };
    match shape(p.data) {
        Shape::Full { .. } => Hit::Strong(app),
        Shape::Header => Hit::Weak(app),
        Shape::No => Hit::Miss,
    }
}

/// DNS over TCP: a 2-byte length, then a message. A long message may continue in the next
/// segment; the length must at least cover the header.
pub(super) fn detect_tcp(p: &Pkt<'_>) -> Hit {
    let d = p.data;
    let Some(len) = be16(d, 0) else {
        return Hit::Miss;
    };
    let msg = &d[2..];
    if usize::from(len) < 12 || usize::from(len) < msg.len() {
        return Hit::Miss;
    }
    match shape(msg) {
        Shape::Full { .. } => Hit::Strong(App::Dns),
        Shape::Header if usize::from(len) == msg.len() => Hit::Weak(App::Dns),
        _ => Hit::Miss,
    }
}

/// NetBIOS name service (DNS-shaped, encoded names) and datagram service.
pub(super) fn detect_netbios(p: &Pkt<'_>) -> Hit {
    let d = p.data;
    if let Shape::Full { netbios_name: true } = shape(d) {
        return Hit::Strong(App::Netbios);
    }
    // Datagram service header (RFC 1002 section 4.4.1): type 0x10-0x16, then for direct
    // and broadcast datagrams a 32-letter encoded source name at offset 14.
    match u8_at(d, 0) {
        Some(0x10..=0x12)
            if u8_at(d, 14) == Some(32)
                && d.get(15..47)
                    .is_some_and(|n| n.iter().all(|c| (b'A'..=b'P').contains(c))) =>
        {
            Hit::Strong(App::Netbios)
        }
        _ => Hit::Miss,
    }
}

#[cfg(test)]
mod tests;
