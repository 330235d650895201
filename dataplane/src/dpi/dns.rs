//! DNS (RFC 1035 section 4.1) over UDP and TCP (2-byte length prefix, RFC 1035
//! section 4.2.2), its look-alikes mDNS (RFC 6762, same format on port 5353: the port
//! settles the tie) and the NetBIOS name and datagram services (RFC 1002 sections 4.2 and
//! 4.4: DNS-shaped, with 32-letter encoded names).
//!
//! The check is the header plus a walk of the first question: a strict full parse (as DNS
//! crates do, allocating records) would reject the damaged queries resolvers still get.
//! A header that is plausible but whose question does not parse is weak evidence, and
//! only on the protocol's own port (so other UDP protocols with a DNS-like first 12 bytes
//! are not taken for damaged DNS).

use super::{App, Hit, Pkt};
use crate::bytes::{be16, u8_at};

/// Outcome of looking at a DNS message.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Shape {
    No,
    /// Header plausible (flags, question count), the rest unreadable or odd.
    Header,
    /// Header, section counts and first question well formed.
    Full,
}

/// The first question's name: its first label's length and bytes.
fn first_label(d: &[u8]) -> Option<&[u8]> {
    let n = usize::from(u8_at(d, 12)?);
    d.get(13..13 + n)
}

fn shape(d: &[u8]) -> Shape {
    let (Some(flags), Some(qd), Some(an), Some(ns), Some(ar)) =
        (be16(d, 2), be16(d, 4), be16(d, 6), be16(d, 8), be16(d, 10))
    else {
        return Shape::No;
    };
    let response = flags & 0x8000 != 0;
    let opcode = (flags >> 11) & 0xf;
    // Opcodes: query, inverse query, status, notify, update, DSO.
    if !matches!(opcode, 0..=2 | 4..=6) {
        return Shape::No;
    }
    // Damaged messages still count as DNS, weakly: a query (no response code) asks
    // something, a response answers or echoes a question.
    let header = if response {
        qd > 0 || an > 0
    } else {
        flags & 0xf == 0 && (qd > 0 || ns > 0 || ar > 0)
    };
    if !header {
        return Shape::No;
    }
    let sane_counts = if response {
        qd <= 4 && an <= 256 && ns <= 64 && ar <= 64 && flags & 0xf <= 10
    } else if opcode == 5 || opcode == 4 {
        qd == 1 && an <= 64 && ns <= 64 && ar <= 64
    } else {
        qd <= 4 && an == 0 && ns <= 8 && ar <= 8
    };
    if sane_counts && question(d) {
        Shape::Full
    } else {
        Shape::Header
    }
}

/// Walks the first question's name (uncompressed labels, at most 255 bytes) and checks its
/// class.
fn question(d: &[u8]) -> bool {
    let mut at = 12;
    let mut total = 0usize;
    loop {
        let Some(len) = u8_at(d, at).map(usize::from) else {
            return false;
        };
        at += 1;
        if len == 0 {
            break;
        }
        if len > 63 || d.get(at..at + len).is_none() {
            return false;
        }
        at += len;
        total += len + 1;
        if total > 255 {
            return false;
        }
    }
    // mDNS sets the top bit of the class for "unicast response".
    let qclass = be16(d, at + 2).map(|c| c & 0x7fff);
    matches!(qclass, Some(1 | 3 | 4 | 254 | 255))
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
        Shape::Full => Hit::Strong(app),
        // A damaged message is only worth anything on the protocol's own port.
        Shape::Header if p.on_port_of(app) => Hit::Weak(app),
        _ => Hit::Miss,
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
    if usize::from(len) < 12 {
        return Hit::Miss;
    }
    match shape(msg) {
        Shape::Full => Hit::Strong(App::Dns),
        Shape::Header if usize::from(len) == msg.len() => Hit::Weak(App::Dns),
        _ => Hit::Miss,
    }
}

/// NetBIOS name service (DNS-shaped; the name is one 32-byte label of letters `A`-`P`
/// encoding 16 bytes, type NB 0x20 or NBSTAT 0x21) and datagram service.
pub(super) fn detect_netbios(p: &Pkt<'_>) -> Hit {
    let d = p.data;
    // Datagram service (RFC 1002 section 4.4.1): type 0x10-0x12 (direct unique, direct
    // group, broadcast), flags in the low nibble, then id, source IP and port, and a
    // datagram length counting from offset 14.
    if let (Some(0x10..=0x12), Some(flags), Some(len)) = (u8_at(d, 0), u8_at(d, 1), be16(d, 10))
        && flags & 0xf0 == 0
        && usize::from(len) + 14 == d.len()
    {
        return Hit::Strong(App::Netbios);
    }
    let sh = shape(d);
    if sh != Shape::No {
        if let Some(label) = first_label(d).filter(|l| l.len() == 32) {
            // Mostly letters A-P: a damaged encoded name is still one.
            let encoded = label.iter().filter(|c| (b'A'..=b'P').contains(c)).count() >= 24;
            let nb_type = matches!(be16(d, 12 + 1 + 32 + 1), Some(0x20 | 0x21));
            if encoded || nb_type {
                return Hit::Strong(App::Netbios);
            }
        }
        // A damaged name-service packet on the NetBIOS port: DNS-shaped, weak. (Elsewhere
        // DNS claims DNS-shaped packets.)
        return if p.on_port_of(App::Netbios) {
            Hit::Weak(App::Netbios)
        } else {
            Hit::Miss
        };
    }
    Hit::Miss
}

#[cfg(test)]
mod tests;
