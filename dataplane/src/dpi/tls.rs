//! TLS: the record layer (RFC 8446 section 5.1, RFC 5246 section 6.2) and the hellos
//! (RFC 8446 section 4.1.2), plus SSLv2-compatible ClientHellos (RFC 5246 appendix E.2).
//!
//! Hand-written rather than `tls-parser`: the detector reads nine header bytes, and
//! [`tls_client_hello`] must not allocate (tls-parser builds a `Vec` of ciphers and
//! extensions per hello) and must work on the first segment of a hello that spans two
//! (tls-parser answers `Incomplete`). tls-parser checks this walker in the tests.

use super::{App, Hit, Pkt};
use crate::bytes::{be16, be24, u8_at};

const HANDSHAKE: u8 = 22;
const CLIENT_HELLO: u8 = 1;
const SERVER_HELLO: u8 = 2;
/// Largest record: 2^14 plaintext plus 2048 of expansion (RFC 5246 section 6.2.3).
const MAX_RECORD: u16 = 16384 + 2048;

/// A TLS record header: content type, protocol version 3.0-3.4, sane length.
fn record(d: &[u8]) -> Option<(u8, u16)> {
    let ct = u8_at(d, 0)?;
    if u8_at(d, 1)? != 3 || u8_at(d, 2)? > 4 {
        return None;
    }
    let len = be16(d, 3)?;
    (len > 0 && len <= MAX_RECORD && (20..=24).contains(&ct)).then_some((ct, len))
}

pub(super) fn detect(p: &Pkt<'_>) -> Hit {
    let d = p.data;
    let Some((ct, len)) = record(d) else {
        return sslv2_client_hello(p);
    };
    if ct != HANDSHAKE {
        // ChangeCipherSpec, alert, application data, heartbeat: a flow caught mid-stream.
        return Hit::Weak(App::Tls);
    }
    let (Some(hs), Some(hs_len), Some(ver)) = (u8_at(d, 5), be24(d, 6), be16(d, 9)) else {
        return Hit::Weak(App::Tls);
    };
    let hello_version = (0x0300..=0x0304).contains(&ver);
    // A hello fits its record (a hello fragmented over records is legal but not seen).
    let fits = hs_len >= 38 && hs_len + 4 <= u32::from(len);
    match hs {
        CLIENT_HELLO if p.c2s() && hello_version && fits => Hit::Strong(App::Tls),
        SERVER_HELLO if !p.c2s() && hello_version && fits => Hit::Strong(App::Tls),
        _ => Hit::Weak(App::Tls),
    }
}

/// An SSLv2-format ClientHello (2-byte header with the high bit set, msg type 1).
fn sslv2_client_hello(p: &Pkt<'_>) -> Hit {
    let d = p.data;
    let (Some(b0), Some(b1), Some(1), Some(ver), Some(cs_len)) = (
        u8_at(d, 0),
        u8_at(d, 1),
        u8_at(d, 2),
        be16(d, 3),
        be16(d, 5),
    ) else {
        return Hit::Miss;
    };
    let len = usize::from(b0 & 0x7f) << 8 | usize::from(b1);
    let ok = p.c2s()
        && p.first()
        && b0 & 0x80 != 0
        && matches!(ver, 0x0002 | 0x0300..=0x0303)
        && cs_len > 0
        && cs_len % 3 == 0
        && len + 2 == d.len();
    if ok { Hit::Strong(App::Tls) } else { Hit::Miss }
}

/// Facts from a TLS ClientHello, borrowed from the payload.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TlsHello<'a> {
    /// The record layer's version (0x0301 for most hellos, whatever the offer).
    pub record_version: u16,
    /// The hello's `legacy_version` (0x0303 for TLS 1.2 and 1.3 hellos).
    pub client_version: u16,
    /// The server name (`server_name` extension, `host_name` entry), if sent and UTF-8.
    pub sni: Option<&'a str>,
    /// Whether the whole hello was in this payload; when false, extensions past the end of
    /// the payload are missing from `sni`, `alpn` and the version.
    pub complete: bool,
    /// The `supported_versions` list, 2 bytes per version.
    supported_versions: &'a [u8],
    /// The ALPN `protocol_name_list`, each name length-prefixed by one byte.
    alpn: &'a [u8],
}

impl<'a> TlsHello<'a> {
    /// The highest version offered: from `supported_versions` (GREASE values skipped) when
    /// present, else `client_version`. 0x0304 is TLS 1.3.
    pub fn version(&self) -> u16 {
        self.supported_versions
            .chunks_exact(2)
            .map(|c| u16::from_be_bytes([c[0], c[1]]))
            .filter(|v| v & 0x0f0f != 0x0a0a)
            .max()
            .unwrap_or(self.client_version)
    }

    /// The ALPN protocols offered, in the client's order (`h2`, `http/1.1`, ...).
    pub fn alpn(&self) -> AlpnIter<'a> {
        AlpnIter(self.alpn)
    }

    /// Whether `proto` (e.g. `b"h2"`) is among the ALPN protocols offered.
    pub fn offers_alpn(&self, proto: &[u8]) -> bool {
        self.alpn().any(|p| p == proto)
    }
}

/// Iterator over an ALPN `protocol_name_list`; stops at the first malformed entry.
#[derive(Clone, Debug)]
pub struct AlpnIter<'a>(&'a [u8]);

impl<'a> Iterator for AlpnIter<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        let (&n, rest) = self.0.split_first()?;
        let n = usize::from(n);
        let Some(name) = rest.get(..n).filter(|_| n > 0) else {
            self.0 = &[];
            return None;
        };
        self.0 = &rest[n..];
        Some(name)
    }
}

/// A cursor that never reads past its slice.
struct Cur<'a> {
    d: &'a [u8],
    at: usize,
}

impl<'a> Cur<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let s = self.d.get(self.at..self.at.checked_add(n)?)?;
        self.at += n;
        Some(s)
    }
    fn u8(&mut self) -> Option<u8> {
        Some(self.take(1)?[0])
    }
    fn u16(&mut self) -> Option<u16> {
        let b = self.take(2)?;
        Some(u16::from_be_bytes([b[0], b[1]]))
    }
}

/// Zero-copy TLS ClientHello facts for reports and threat checks (version offered, SNI, ALPN
/// list); `None` if `payload` does not start with a ClientHello record. A hello cut at the
/// end of the payload yields what precedes the cut (`complete` is then false).
pub fn tls_client_hello(payload: &[u8]) -> Option<TlsHello<'_>> {
    let (ct, rec_len) = record(payload)?;
    if ct != HANDSHAKE || u8_at(payload, 5)? != CLIENT_HELLO {
        return None;
    }
    let record_version = be16(payload, 1)?;
    let hs_len = usize::try_from(be24(payload, 6)?).ok()?;
    // The hello body: bounded by the handshake length, the record and the payload.
    let end = (9 + hs_len).min(5 + usize::from(rec_len));
    let complete = payload.len() >= end;
    let body = payload.get(9..end.min(payload.len()))?;
    let mut c = Cur { d: body, at: 0 };
    let client_version = c.u16()?;
    if !(0x0300..=0x0304).contains(&client_version) {
        return None;
    }
    let mut hello = TlsHello {
        record_version,
        client_version,
        sni: None,
        complete,
        supported_versions: &[],
        alpn: &[],
    };
    if walk_hello_rest(&mut c, &mut hello).is_none() {
        hello.complete = false;
    }
    Some(hello)
}

/// Reads past random, session id, ciphers and compressions, then the extensions; `None`
/// where the body ends early.
fn walk_hello_rest<'a>(c: &mut Cur<'a>, hello: &mut TlsHello<'a>) -> Option<()> {
    c.take(32)?;
    let sid = c.u8()?;
    c.take(usize::from(sid))?;
    let ciphers = c.u16()?;
    c.take(usize::from(ciphers))?;
    let comp = c.u8()?;
    c.take(usize::from(comp))?;
    if c.at == c.d.len() {
        return Some(()); // No extensions (SSL 3.0 style).
    }
    let ext_len = c.u16()?;
    let exts = match c.take(usize::from(ext_len)) {
        Some(e) => e,
        None => {
            // Cut short: walk what we have.
            let rest = c.d.get(c.at..)?;
            walk_extensions(rest, hello);
            return None;
        }
    };
    if walk_extensions(exts, hello) {
        Some(())
    } else {
        None
    }
}

/// Records SNI, ALPN and supported_versions; false if the list ends inside an extension.
fn walk_extensions<'a>(exts: &'a [u8], hello: &mut TlsHello<'a>) -> bool {
    let mut c = Cur { d: exts, at: 0 };
    while c.at < exts.len() {
        let (Some(ty), Some(len)) = (c.u16(), c.u16()) else {
            return false;
        };
        let Some(data) = c.take(usize::from(len)) else {
            return false;
        };
        match ty {
            0 => hello.sni = sni(data),
            16 => {
                hello.alpn = be16(data, 0)
                    .and_then(|n| data.get(2..2 + usize::from(n)))
                    .unwrap_or(&[])
            }
            43 => {
                hello.supported_versions = u8_at(data, 0)
                    .and_then(|n| data.get(1..1 + usize::from(n)))
                    .unwrap_or(&[]);
            }
            _ => {}
        }
    }
    true
}

/// The first `host_name` of a `server_name` extension (RFC 6066 section 3).
fn sni(data: &[u8]) -> Option<&str> {
    let list_len = usize::from(be16(data, 0)?);
    let list = data.get(2..2 + list_len)?;
    let mut c = Cur { d: list, at: 0 };
    while c.at < list.len() {
        let ty = c.u8()?;
        let n = c.u16()?;
        let name = c.take(usize::from(n))?;
        if ty == 0 {
            return std::str::from_utf8(name).ok();
        }
    }
    None
}

#[cfg(test)]
mod tests;
