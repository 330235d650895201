//! The HTTP family: HTTP/1.x (RFC 9112), cleartext HTTP/2 and gRPC (RFC 9113, RFC 7541),
//! RTSP (RFC 2326, RFC 7826), SIP (RFC 3261) and SSDP (UPnP discovery over UDP).
//!
//! HTTP/1.x lines go through `httparse` (zero-copy, no allocation: it is given an empty
//! header array and stops with `TooManyHeaders` right after the start line). RTSP and SIP
//! share HTTP's shape but not its version token, which httparse rejects; their start lines
//! are matched here. HTTP/2 frames and the few HPACK representations that can carry
//! `content-type` are walked by hand, comparing the value with its Huffman encoding
//! instead of decoding it, so gRPC detection needs no decoder and no buffer.

use super::{App, Hit, Pkt};
use crate::bytes::{be24, first_line, starts_with_ci, u8_at};

/// Request methods of RFC 9110 and WebDAV (RFC 4918) that start an HTTP/1.x request.
const HTTP_METHODS: &[&[u8]] = &[
    b"GET",
    b"POST",
    b"HEAD",
    b"PUT",
    b"DELETE",
    b"OPTIONS",
    b"PATCH",
    b"CONNECT",
    b"TRACE",
    b"PROPFIND",
    b"PROPPATCH",
    b"MKCOL",
    b"COPY",
    b"MOVE",
    b"LOCK",
    b"UNLOCK",
    b"REPORT",
    b"SEARCH",
    b"MKCALENDAR",
];

fn known_method(m: &str) -> bool {
    HTTP_METHODS.contains(&m.as_bytes())
}

pub(super) fn detect_http(p: &Pkt<'_>) -> Hit {
    let d = p.data;
    if d.starts_with(b"HTTP/1.") {
        let mut none = [];
        let mut resp = httparse::Response::new(&mut none);
        return match resp.parse(d) {
            Ok(_) | Err(httparse::Error::TooManyHeaders) if resp.code.is_some() => {
                Hit::Strong(App::Http)
            }
            // Status line cut by the segment end: the version alone is telling enough.
            Ok(httparse::Status::Partial) => Hit::Strong(App::Http),
            _ => Hit::Miss,
        };
    }
    let mut none = [];
    let mut req = httparse::Request::new(&mut none);
    match req.parse(d) {
        Ok(_) | Err(httparse::Error::TooManyHeaders) if req.version.is_some() => {
            Hit::Strong(App::Http)
        }
        // A request line longer than the segment: a known method and a path are enough.
        Ok(httparse::Status::Partial) => match req.method {
            Some(m) if known_method(m) => {
                let target = d.get(m.len() + 1..).unwrap_or_default();
                if target.starts_with(b"/") || starts_with_ci(target, b"http://") {
                    Hit::Strong(App::Http)
                } else if target.is_empty() || m == "CONNECT" {
                    Hit::Weak(App::Http)
                } else {
                    Hit::Miss
                }
            }
            _ => Hit::Miss,
        },
        _ => Hit::Miss,
    }
}

const RTSP_METHODS: &[&[u8]] = &[
    b"OPTIONS",
    b"DESCRIBE",
    b"SETUP",
    b"PLAY",
    b"PAUSE",
    b"TEARDOWN",
    b"GET_PARAMETER",
    b"SET_PARAMETER",
    b"ANNOUNCE",
    b"RECORD",
    b"REDIRECT",
];

/// `METHOD SP target ...` where the target has one of the protocol's URI schemes, or
/// `METHOD SP target SP VERSION` with `VERSION` starting with `version`.
fn request_line(d: &[u8], methods: &[&[u8]], version: &[u8], schemes: &[&[u8]]) -> bool {
    let Some(sp) = d.iter().take(20).position(|&b| b == b' ') else {
        return false;
    };
    if !methods.contains(&&d[..sp]) {
        return false;
    }
    let rest = &d[sp + 1..];
    if schemes.iter().any(|s| starts_with_ci(rest, s)) {
        return true;
    }
    match first_line(rest) {
        Some(line) => match line.iter().rposition(|&b| b == b' ') {
            Some(at) => line[at + 1..].starts_with(version),
            None => false,
        },
        None => false,
    }
}

/// `VERSION SP 3DIGIT`.
fn status_line(d: &[u8], version: &[u8]) -> bool {
    d.starts_with(version)
        && d.get(version.len()) == Some(&b' ')
        && d.get(version.len() + 1..version.len() + 4)
            .is_some_and(|c| c.iter().all(u8::is_ascii_digit))
}

pub(super) fn detect_rtsp(p: &Pkt<'_>) -> Hit {
    let d = p.data;
    if status_line(d, b"RTSP/1.0") || status_line(d, b"RTSP/2.0") {
        return Hit::Strong(App::Rtsp);
    }
    if request_line(
        d,
        RTSP_METHODS,
        b"RTSP/",
        &[b"rtsp://", b"rtsps://", b"rtspu://"],
    ) {
        return Hit::Strong(App::Rtsp);
    }
    Hit::Miss
}

const SIP_METHODS: &[&[u8]] = &[
    b"INVITE",
    b"ACK",
    b"BYE",
    b"CANCEL",
    b"REGISTER",
    b"OPTIONS",
    b"PRACK",
    b"SUBSCRIBE",
    b"NOTIFY",
    b"PUBLISH",
    b"INFO",
    b"REFER",
    b"MESSAGE",
    b"UPDATE",
];

pub(super) fn detect_sip(p: &Pkt<'_>) -> Hit {
    let d = p.data;
    if status_line(d, b"SIP/2.0") {
        return Hit::Strong(App::Sip);
    }
    if request_line(d, SIP_METHODS, b"SIP/2.0", &[b"sip:", b"sips:", b"tel:"]) {
        return Hit::Strong(App::Sip);
    }
    // Keep-alives: a bare CRLF pair (RFC 5626 section 3.5.1) or a phone's "hello".
    if !p.tcp() && (d == b"\r\n\r\n" || d == b"\r\n" || d.starts_with(b"hello\0") || d == b"hello")
    {
        return Hit::Weak(App::Sip);
    }
    Hit::Miss
}

pub(super) fn detect_ssdp(p: &Pkt<'_>) -> Hit {
    let d = p.data;
    if d.starts_with(b"M-SEARCH * HTTP/1.1\r\n") || d.starts_with(b"NOTIFY * HTTP/1.1\r\n") {
        Hit::Strong(App::Ssdp)
    } else if status_line(d, b"HTTP/1.1") {
        Hit::Weak(App::Ssdp)
    } else {
        Hit::Miss
    }
}

/// The HTTP/2 client connection preface (RFC 9113 section 3.4).
const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const FRAME_HEADERS: u8 = 0x1;
const FLAG_PADDED: u8 = 0x8;
const FLAG_PRIORITY: u8 = 0x20;

/// h2c and gRPC. The preface alone is weak evidence of HTTP/2 (remembered); the first
/// HEADERS frame, in either direction, decides between gRPC and plain HTTP/2.
pub(super) fn detect_h2(p: &Pkt<'_>) -> Hit {
    let d = p.data;
    let frames = if let Some(rest) = d.strip_prefix(PREFACE) {
        rest
    } else if p.seen(App::Http2) {
        d
    } else if p.c2s() && p.first() && d.len() >= 16 && PREFACE.starts_with(d) {
        return Hit::Weak(App::Http2);
    } else {
        return Hit::Miss;
    };
    match first_headers_grpc(frames) {
        Some(true) => Hit::Strong(App::Grpc),
        Some(false) => Hit::Strong(App::Http2),
        None if d.starts_with(PREFACE) => Hit::Weak(App::Http2),
        None => Hit::Miss,
    }
}

/// Walks HTTP/2 frames; at the first HEADERS frame, whether its block names a gRPC
/// content type. `None` if no HEADERS frame starts in `d`.
fn first_headers_grpc(mut d: &[u8]) -> Option<bool> {
    while d.len() >= 9 {
        let len = usize::try_from(be24(d, 0)?).ok()?;
        let ty = u8_at(d, 3)?;
        let flags = u8_at(d, 4)?;
        let body = d.get(9..).unwrap_or_default();
        let body = body.get(..len).unwrap_or(body);
        if ty == FRAME_HEADERS {
            let mut block = body;
            let mut pad = 0;
            if flags & FLAG_PADDED != 0 {
                pad = usize::from(*block.first()?);
                block = block.get(1..)?;
            }
            if flags & FLAG_PRIORITY != 0 {
                block = block.get(5..)?;
            }
            if len == body.len() {
                block = block
                    .get(..block.len().saturating_sub(pad))
                    .unwrap_or(block);
            }
            return Some(hpack_has_grpc_content_type(block));
        }
        d = d.get(9 + len..)?;
    }
    None
}

/// An HPACK prefixed integer (RFC 7541 section 5.1) with `bits` prefix bits.
fn hpack_int(d: &[u8], at: &mut usize, bits: u8) -> Option<usize> {
    let mask = (1u16 << bits) as u8 - 1;
    let first = *d.get(*at)? & mask;
    *at += 1;
    if first < mask {
        return Some(usize::from(first));
    }
    let mut v = usize::from(mask);
    for shift in (0..28).step_by(7) {
        let b = *d.get(*at)?;
        *at += 1;
        v += usize::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Some(v);
        }
    }
    None
}

/// An HPACK string literal: (huffman, bytes), possibly cut at the end of `d`.
fn hpack_str<'a>(d: &'a [u8], at: &mut usize) -> Option<(bool, &'a [u8])> {
    let huff = *d.get(*at)? & 0x80 != 0;
    let len = hpack_int(d, at, 7)?;
    let start = *at;
    *at = start.checked_add(len)?;
    let s = d.get(start..)?;
    Some((huff, s.get(..len).unwrap_or(s)))
}

/// Static table index of `content-type` (RFC 7541 appendix A).
const CONTENT_TYPE_INDEX: usize = 31;

/// Whether a header block carries `content-type: application/grpc...` as a literal.
fn hpack_has_grpc_content_type(d: &[u8]) -> bool {
    let mut at = 0;
    while at < d.len() {
        let b = d[at];
        let prefix = if b & 0x80 != 0 {
            // Indexed field: no literal to look at.
            if hpack_int(d, &mut at, 7).is_none() {
                return false;
            }
            continue;
        } else if b & 0xc0 == 0x40 {
            6 // literal with incremental indexing
        } else if b & 0xe0 == 0x20 {
            if hpack_int(d, &mut at, 5).is_none() {
                return false; // dynamic table size update
            }
            continue;
        } else {
            4 // literal without indexing / never indexed
        };
        let Some(index) = hpack_int(d, &mut at, prefix) else {
            return false;
        };
        let is_ct = if index == 0 {
            match hpack_str(d, &mut at) {
                Some((false, name)) => name.eq_ignore_ascii_case(b"content-type"),
                Some((true, name)) => name == CONTENT_TYPE_HUFFMAN.as_slice(),
                None => return false,
            }
        } else {
            index == CONTENT_TYPE_INDEX
        };
        let Some((huff, value)) = hpack_str(d, &mut at) else {
            return false;
        };
        if is_ct {
            return if huff {
                value.starts_with(&GRPC_HUFFMAN)
            } else {
                value.starts_with(b"application/grpc")
            };
        }
    }
    false
}

/// The HPACK Huffman code (RFC 7541 appendix B) of the few characters the two constants
/// below need: (code, bit length).
const fn huffman_code(c: u8) -> (u32, u32) {
    match c {
        b'-' => (0x16, 6),
        b'/' => (0x18, 6),
        b'a' => (0x3, 5),
        b'c' => (0x4, 5),
        b'e' => (0x5, 5),
        b'g' => (0x26, 6),
        b'i' => (0x6, 5),
        b'l' => (0x28, 6),
        b'n' => (0x2a, 6),
        b'o' => (0x7, 5),
        b'p' => (0x2b, 6),
        b'r' => (0x2c, 6),
        b't' => (0x9, 5),
        b'y' => (0x79, 7),
        _ => (0, 0),
    }
}

/// Huffman-encodes `s` into `N` bytes, padding the last byte with 1s (the EOS prefix).
const fn huffman<const N: usize>(s: &[u8]) -> [u8; N] {
    let mut out = [0u8; N];
    let mut acc: u64 = 0;
    let mut nbits: u32 = 0;
    let mut o = 0;
    let mut i = 0;
    while i < s.len() {
        let (code, len) = huffman_code(s[i]);
        acc = (acc << len) | code as u64;
        nbits += len;
        while nbits >= 8 && o < N {
            out[o] = (acc >> (nbits - 8)) as u8;
            nbits -= 8;
            o += 1;
        }
        i += 1;
    }
    if nbits > 0 && o < N {
        out[o] = ((acc << (8 - nbits)) as u8) | (0xffu8 >> nbits);
    }
    out
}

/// `application/grpc` is 88 bits: a prefix of `application/grpc+proto` etc. as well.
const GRPC_HUFFMAN: [u8; 11] = huffman(b"application/grpc");
/// `content-type` as a Huffman-coded literal name (66 bits, padded).
const CONTENT_TYPE_HUFFMAN: [u8; 9] = huffman(b"content-type");

#[cfg(test)]
mod tests;
