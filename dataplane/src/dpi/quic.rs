//! QUIC: IETF long headers (RFC 9000 section 17.2; v1, v2 RFC 9369, drafts 0xff0000xx,
//! mvfst 0xfaceb00x, Google's Q046+/T0xx in the IETF layout) and Google QUIC's older
//! public header (Q043 and before: flags, 8-byte connection id, `Q0nn`).
//!
//! The header is in clear; the payload is protected, so version, connection id lengths
//! and the client Initial's padding to 1200 bytes (RFC 9000 section 14.1) are all there is.

use super::{App, Hit, Pkt};
use crate::bytes::{be32, u8_at};

/// Whether a 4-byte version tag is one of Google's (`Q0nn`, `T0nn`).
fn google_version(v: &[u8]) -> bool {
    matches!(v, [b'Q' | b'T', b'0', a, b] if a.is_ascii_digit() && b.is_ascii_digit())
}

fn known_version(d: &[u8], v: u32) -> bool {
    v == 1
        || v == 0x6b33_43cf
        || v & 0xffff_ff00 == 0xff00_0000
        || v & 0xffff_fff0 == 0xface_b000
        || d.get(1..5).is_some_and(google_version)
}

pub(super) fn detect(p: &Pkt<'_>) -> Hit {
    let d = p.data;
    let Some(b0) = u8_at(d, 0) else {
        return Hit::Miss;
    };
    if b0 & 0x80 != 0 {
        let Some(v) = be32(d, 1) else {
            return Hit::Miss;
        };
        let Some(dcid) = u8_at(d, 5) else {
            return Hit::Miss;
        };
        let scid = u8_at(d, 6 + usize::from(dcid));
        if dcid > 20 || scid.is_none_or(|s| s > 20) {
            return Hit::Miss;
        }
        if v == 0 {
            // Version negotiation, from the server.
            return if p.c2s() {
                Hit::Miss
            } else {
                Hit::Weak(App::Quic)
            };
        }
        if !known_version(d, v) || b0 & 0x40 == 0 {
            return Hit::Miss;
        }
        let initial = if v == 0x6b33_43cf { 0x10 } else { 0x00 };
        if !p.c2s() {
            return Hit::Strong(App::Quic);
        }
        return if b0 & 0x30 == initial && d.len() >= 1200 {
            Hit::Strong(App::Quic)
        } else {
            Hit::Weak(App::Quic)
        };
    }
    // Google QUIC public header: version flag 0x01, 8-byte connection id (0x08 or 0x0c),
    // reserved bits clear, then the version tag.
    if b0 & 0x01 != 0
        && b0 & 0x08 != 0
        && b0 & 0xc0 == 0
        && d.get(9..13).is_some_and(google_version)
    {
        return Hit::Strong(App::Quic);
    }
    Hit::Miss
}

#[cfg(test)]
mod tests;
