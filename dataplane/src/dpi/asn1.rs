//! BER-encoded protocols (X.690): Kerberos (RFC 4120 section 5, TCP framing section
//! 7.2.2), LDAP (RFC 4511 section 4.2) and SNMP (RFC 1157, RFC 3416, RFC 3412).
//!
//! Hand-written: the checks read three or four TLV headers, and their lengths must nest,
//! which is what tells a BER message from noise. ASN.1 crates decode whole messages.

use super::{App, Hit, Pkt};
use crate::bytes::{be32, u8_at};

/// One BER TLV header at `at`: (tag, content length, header length). Low-tag-number form
/// only; definite lengths of up to 4 bytes.
fn tlv(d: &[u8], at: usize) -> Option<(u8, usize, usize)> {
    let tag = u8_at(d, at)?;
    let first = u8_at(d, at + 1)?;
    if tag & 0x1f == 0x1f {
        return None;
    }
    if first & 0x80 == 0 {
        return Some((tag, usize::from(first), 2));
    }
    let n = usize::from(first & 0x7f);
    if n == 0 || n > 4 {
        return None;
    }
    let mut len = 0usize;
    for i in 0..n {
        len = (len << 8) | usize::from(u8_at(d, at + 2 + i)?);
    }
    Some((tag, len, 2 + n))
}

/// An INTEGER TLV at `at` with a value of 1-4 bytes: (value, bytes used).
fn integer(d: &[u8], at: usize) -> Option<(u32, usize)> {
    let (tag, len, hdr) = tlv(d, at)?;
    if tag != 0x02 || !(1..=4).contains(&len) {
        return None;
    }
    let mut v = 0u32;
    for i in 0..len {
        v = (v << 8) | u32::from(u8_at(d, at + hdr + i)?);
    }
    Some((v, hdr + len))
}

/// A Kerberos message: APPLICATION tag (AS-REQ 10 .. KRB-ERROR 30) around a SEQUENCE
/// whose first field is `pvno` = 5 (tagged [1] in KDC requests, [0] elsewhere). `avail`
/// is how much of the message this payload holds; the outer length must cover it.
fn kerberos(d: &[u8]) -> bool {
    let Some((tag, len, hdr)) = tlv(d, 0) else {
        return false;
    };
    // [APPLICATION n], constructed: 0x60 | n.
    let app = tag & 0x1f;
    if tag & 0xe0 != 0x60 || !matches!(app, 10..=15 | 20..=22 | 30) || len + hdr < d.len() {
        return false;
    }
    let Some((0x30, _, shdr)) = tlv(d, hdr) else {
        return false;
    };
    let at = hdr + shdr;
    let pvno_tag = if matches!(app, 10 | 12) { 0xa1 } else { 0xa0 };
    match tlv(d, at) {
        Some((t, _, thdr)) if t == pvno_tag => matches!(integer(d, at + thdr), Some((5, _))),
        _ => false,
    }
}

pub(super) fn detect_kerberos_udp(p: &Pkt<'_>) -> Hit {
    if kerberos(p.data) && tlv(p.data, 0).is_some_and(|(_, l, h)| l + h == p.data.len()) {
        Hit::Strong(App::Kerberos)
    } else {
        Hit::Miss
    }
}

/// Over TCP each message has a 4-byte length (high bit reserved); a message may continue
/// in the next segments.
pub(super) fn detect_kerberos_tcp(p: &Pkt<'_>) -> Hit {
    let d = p.data;
    let Some(len) = be32(d, 0) else {
        return Hit::Miss;
    };
    let msg = &d[4..];
    let len = len as usize;
    let consistent = tlv(msg, 0).is_some_and(|(_, l, h)| l + h == len);
    if len >= msg.len() && len < 1 << 20 && consistent && kerberos(msg) {
        Hit::Strong(App::Kerberos)
    } else {
        Hit::Miss
    }
}

/// LDAPMessage: SEQUENCE { messageID INTEGER, protocolOp [APPLICATION n] ... }. Requests
/// and responses with a recognisable first field are strong.
pub(super) fn detect_ldap(p: &Pkt<'_>) -> Hit {
    let d = p.data;
    let Some((0x30, len, hdr)) = tlv(d, 0) else {
        return Hit::Miss;
    };
    // Over TCP a message may continue in the next segment or be followed by another.
    if len + hdr != d.len() && !p.tcp() {
        return Hit::Miss;
    }
    let Some((_, id_len)) = integer(d, hdr) else {
        return Hit::Miss;
    };
    let at = hdr + id_len;
    let Some((op, op_len, op_hdr)) = tlv(d, at) else {
        return Hit::Miss;
    };
    if op_len + op_hdr + id_len > len {
        return Hit::Miss;
    }
    let inner = at + op_hdr;
    match op {
        // bindRequest: version 1-3.
        0x60 => match integer(d, inner) {
            Some((1..=3, _)) => Hit::Strong(App::Ldap),
            _ => Hit::Miss,
        },
        // searchRequest, modify, add, modDN, compare: an LDAPDN OCTET STRING first.
        0x63 | 0x66 | 0x68 | 0x6c | 0x6e if u8_at(d, inner) == Some(0x04) => Hit::Strong(App::Ldap),
        // Responses (bind, search done, modify, add, del, modDN, compare, extended):
        // an ENUMERATED resultCode first.
        0x61 | 0x65 | 0x67 | 0x69 | 0x6b | 0x6d | 0x6f | 0x78 if u8_at(d, inner) == Some(0x0a) => {
            Hit::Strong(App::Ldap)
        }
        // searchResEntry: objectName OCTET STRING.
        0x64 if u8_at(d, inner) == Some(0x04) => Hit::Strong(App::Ldap),
        // extendedRequest: requestName [0].
        0x77 if u8_at(d, inner) == Some(0x80) => Hit::Strong(App::Ldap),
        // unbindRequest (NULL), delRequest, abandonRequest: primitive.
        0x42 if op_len == 0 => Hit::Weak(App::Ldap),
        0x4a | 0x50 if op_len > 0 => Hit::Weak(App::Ldap),
        _ => Hit::Miss,
    }
}

/// SNMP: SEQUENCE { version INTEGER (0 v1, 1 v2c, 3 v3), ... }. v1/v2c continue with a
/// community OCTET STRING and a PDU tag [0]-[8]; v3 with a msgGlobalData SEQUENCE.
pub(super) fn detect_snmp(p: &Pkt<'_>) -> Hit {
    let d = p.data;
    let Some((0x30, len, hdr)) = tlv(d, 0) else {
        return Hit::Miss;
    };
    if len + hdr != d.len() {
        return Hit::Miss;
    }
    let Some((version, vlen)) = integer(d, hdr) else {
        return Hit::Miss;
    };
    let at = hdr + vlen;
    match version {
        0 | 1 => {
            let Some((0x04, clen, chdr)) = tlv(d, at) else {
                return Hit::Miss;
            };
            match tlv(d, at + chdr + clen) {
                Some((0xa0..=0xa8, plen, phdr)) if at + chdr + clen + phdr + plen == d.len() => {
                    Hit::Strong(App::Snmp)
                }
                _ => Hit::Miss,
            }
        }
        3 => match tlv(d, at) {
            Some((0x30, _, ghdr)) if integer(d, at + ghdr).is_some() => Hit::Strong(App::Snmp),
            _ => Hit::Miss,
        },
        _ => Hit::Miss,
    }
}

#[cfg(test)]
mod tests;
