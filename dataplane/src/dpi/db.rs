//! Databases and caches: MySQL, PostgreSQL, Microsoft SQL Server (TDS), Oracle (TNS),
//! MongoDB, Cassandra (CQL), Redis (RESP) and Memcached.
//!
//! Hand-written: no crate parses these wire protocols at the "is this an opening message"
//! level. Each check is a fixed header plus a length field that must agree with the
//! payload, which is what makes a binary protocol recognisable from one packet.

use super::{App, Hit, Pkt};
use crate::bytes::{be16, be32, first_line, is_text, le16, le32, u8_at};

/// MySQL: the server's initial handshake (protocol 10), or the client's handshake response.
/// <https://dev.mysql.com/doc/dev/mysql-server/latest/page_protocol_connection_phase.html>
pub(super) fn detect_mysql(p: &Pkt<'_>) -> Hit {
    let d = p.data;
    let (Some(len), Some(seq)) = (le32(d, 0).map(|v| v & 0x00ff_ffff), u8_at(d, 3)) else {
        return Hit::Miss;
    };
    let len = len as usize;
    if len + 4 != d.len() && !(len + 4 > d.len() && d.len() >= 64) {
        return Hit::Miss;
    }
    if seq == 0 && u8_at(d, 4) == Some(0x0a) {
        // Greeting: a NUL-terminated printable version ("8.0.36", "5.5.5-10.6.12-MariaDB").
        let ver = d.get(5..d.len().min(5 + 64)).unwrap_or_default();
        if let Some(nul) = ver.iter().position(|&b| b == 0) {
            let v = &ver[..nul];
            if nul >= 3
                && v.first().is_some_and(u8::is_ascii_digit)
                && v.iter().all(|&b| is_text(b))
            {
                return Hit::Strong(App::Mysql);
            }
        }
        return Hit::Miss;
    }
    if seq == 0 && u8_at(d, 4) == Some(0xff) && len >= 3 && !p.c2s() && p.first() {
        // Connection refused before the greeting: ERR packet, "Host ... is not allowed".
        return Hit::Weak(App::Mysql);
    }
    if seq == 1 && p.c2s() && len >= 32 {
        // HandshakeResponse41: capabilities with CLIENT_PROTOCOL_41, then 23 filler bytes,
        // zero but for MariaDB's extended capabilities in the last 4.
        let caps = le32(d, 4).unwrap_or(0);
        if caps & 0x200 != 0 && d.get(13..32).is_some_and(|f| f.iter().all(|&b| b == 0)) {
            return Hit::Strong(App::Mysql);
        }
    }
    Hit::Miss
}

/// PostgreSQL (protocol 3.0, <https://www.postgresql.org/docs/current/protocol-message-formats.html>):
/// StartupMessage, SSLRequest, GSSENCRequest, CancelRequest from the client; an
/// authentication request from the server.
pub(super) fn detect_postgresql(p: &Pkt<'_>) -> Hit {
    let d = p.data;
    if p.c2s() {
        let (Some(len), Some(code)) = (be32(d, 0), be32(d, 4)) else {
            return Hit::Miss;
        };
        let exact = len as usize == d.len();
        return match code {
            // SSLRequest, GSSENCRequest: exactly 8 bytes.
            80_877_103 | 80_877_104 if len == 8 && exact => Hit::Strong(App::Postgresql),
            80_877_102 if len == 16 && exact => Hit::Strong(App::Postgresql),
            // StartupMessage 3.0 (0x00030000) with its first parameter name.
            0x0003_0000 if (9..=10_000).contains(&len) && exact => {
                let params = d.get(8..).unwrap_or_default();
                let known = [
                    &b"user\0"[..],
                    b"database\0",
                    b"application_name\0",
                    b"client_encoding\0",
                    b"options\0",
                    b"replication\0",
                ];
                if known.iter().any(|k| params.starts_with(k)) || d.ends_with(&[0, 0]) {
                    Hit::Strong(App::Postgresql)
                } else {
                    Hit::Miss
                }
            }
            _ => Hit::Miss,
        };
    }
    // Server: 'R' AuthenticationXXX: length 8 (ok, cleartext, kerberos, gss, sspi),
    // 12 (md5 + salt) or more (SASL mechanism list).
    if u8_at(d, 0) == Some(b'R') {
        let (Some(len), Some(code)) = (be32(d, 1), be32(d, 5)) else {
            return Hit::Miss;
        };
        let fits = (len as usize) < d.len();
        return match code {
            10 if fits && d.get(9..).is_some_and(|m| m.starts_with(b"SCRAM-SHA-256")) => {
                Hit::Strong(App::Postgresql)
            }
            0 | 2 | 3 | 7 | 9 if len == 8 && fits => Hit::Weak(App::Postgresql),
            5 if len == 12 && fits => Hit::Weak(App::Postgresql),
            _ => Hit::Miss,
        };
    }
    Hit::Miss
}

/// Microsoft SQL Server, TDS (MS-TDS section 2.2.3): an 8-byte header whose length matches
/// the payload, then a body of a kind the header type announces.
pub(super) fn detect_mssql(p: &Pkt<'_>) -> Hit {
    let d = p.data;
    let (Some(ty), Some(status), Some(len), Some(window)) =
        (u8_at(d, 0), u8_at(d, 1), be16(d, 2), u8_at(d, 7))
    else {
        return Hit::Miss;
    };
    let len = usize::from(len);
    // Status bits: EOM 0x01, ignore 0x02, reset 0x08/0x10.
    if status & !0x1b != 0 || window != 0 || len < 9 || len > d.len().max(4096) {
        return Hit::Miss;
    }
    let exact = len == d.len();
    let body = d.get(8..len.min(d.len())).unwrap_or_default();
    match ty {
        // PRELOGIN: option tokens (type, offset, length) up to 0xff, first is VERSION.
        0x12 if exact && prelogin_options(body) => Hit::Strong(App::Mssql),
        // SQL batch and RPC: ALL_HEADERS (TDS 7.2+: total length, then headers of type
        // 1-3), else directly UTF-16LE text (batch) or a UTF-16LE procedure name with its
        // length in characters (RPC).
        0x01 | 0x03 if exact => {
            let headers = match (le32(body, 0), le32(body, 4), le16(body, 8)) {
                (Some(total), Some(hlen), Some(htype)) => {
                    (total as usize) < body.len() && hlen <= total && (1..=3).contains(&htype)
                }
                _ => false,
            };
            let text = if ty == 0x01 {
                body
            } else {
                body.get(2..).unwrap_or_default()
            };
            let named = ty == 0x01
                || le16(body, 0).is_some_and(|n| n > 0 && usize::from(n) * 2 <= text.len());
            if headers || (named && utf16_ascii(text)) {
                Hit::Strong(App::Mssql)
            } else {
                Hit::Miss
            }
        }
        // LOGIN7: its own length field repeats the body length, TDS version 7.x.
        0x10 if le32(body, 0).is_some_and(|l| l as usize == body.len() || !exact) => {
            match u8_at(body, 7) {
                Some(0x70..=0x74) => Hit::Strong(App::Mssql),
                _ => Hit::Miss,
            }
        }
        // Tabular result: the first token is one a server sends first.
        0x04 if exact && !p.c2s() => match u8_at(body, 0) {
            Some(0xfd | 0xfe | 0xff | 0x81 | 0xaa | 0xab | 0xad | 0xe3 | 0x79) => {
                Hit::Strong(App::Mssql)
            }
            // A PRELOGIN response is sent as type 4 with option tokens.
            Some(0x00) if prelogin_options(body) => Hit::Strong(App::Mssql),
            _ => Hit::Miss,
        },
        _ => Hit::Miss,
    }
}

/// Whether `d` starts with at least four UTF-16LE printable ASCII characters.
fn utf16_ascii(d: &[u8]) -> bool {
    d.len() >= 8
        && d.chunks_exact(2)
            .take(8)
            .all(|c| c[1] == 0 && is_text(c[0]))
}

/// PRELOGIN option list: 5-byte tokens (type, offset, length), terminated by 0xff, the first
/// one VERSION (0) at an offset just past the list.
fn prelogin_options(body: &[u8]) -> bool {
    if u8_at(body, 0) != Some(0) {
        return false;
    }
    let mut at = 0;
    while let Some(t) = u8_at(body, at) {
        if t == 0xff {
            let first_off = be16(body, 1).map(usize::from);
            return first_off == Some(at + 1) && at > 0;
        }
        if t > 0x08 {
            return false;
        }
        at += 5;
    }
    false
}

/// Oracle TNS (Transparent Network Substrate): the CONNECT packet (type 1) with a version
/// in the 3xx range, or the server's ACCEPT/REFUSE/REDIRECT/RESEND answer to it.
pub(super) fn detect_oracle(p: &Pkt<'_>) -> Hit {
    let d = p.data;
    let (Some(len), Some(ty), Some(flags)) = (be16(d, 0), u8_at(d, 4), u8_at(d, 5)) else {
        return Hit::Miss;
    };
    if usize::from(len) != d.len() || len < 8 || flags != 0 || be16(d, 2) != Some(0) {
        return Hit::Miss;
    }
    match ty {
        1 if p.c2s() => {
            let (Some(ver), Some(compat)) = (be16(d, 8), be16(d, 10)) else {
                return Hit::Miss;
            };
            if (300..=400).contains(&ver) && (300..=ver).contains(&compat) {
                Hit::Strong(App::Oracle)
            } else {
                Hit::Miss
            }
        }
        2 | 4 | 5 if !p.c2s() && p.first() => match be16(d, 8) {
            Some(300..=400) => Hit::Strong(App::Oracle),
            _ if ty != 2 => Hit::Weak(App::Oracle),
            _ => Hit::Miss,
        },
        11 if !p.c2s() && p.first() && len == 8 => Hit::Weak(App::Oracle),
        _ => Hit::Miss,
    }
}

/// MongoDB wire protocol: a 16-byte little-endian header (length, request id, response-to,
/// opcode) whose length covers the message.
pub(super) fn detect_mongodb(p: &Pkt<'_>) -> Hit {
    let d = p.data;
    let (Some(len), Some(response_to), Some(op)) = (le32(d, 0), le32(d, 8), le32(d, 12)) else {
        return Hit::Miss;
    };
    let len = len as usize;
    if !(21..=48_000_000).contains(&len) || len < d.len() {
        return Hit::Miss;
    }
    let exact = len == d.len();
    let strong_or_weak = |ok: bool| match (ok, exact) {
        (true, true) => Hit::Strong(App::Mongodb),
        (true, false) => Hit::Weak(App::Mongodb),
        _ => Hit::Miss,
    };
    match op {
        // OP_MSG: flag bits (checksumPresent, moreToCome, exhaustAllowed), section kind 0/1.
        2013 => {
            let flags = le32(d, 16).unwrap_or(u32::MAX);
            strong_or_weak(flags & !0x0001_0003 == 0 && matches!(u8_at(d, 20), Some(0 | 1)))
        }
        // OP_QUERY: flags, then a "db.collection" C string (response-to is 0 or -1).
        2004 => {
            let name = d.get(20..d.len().min(20 + 128)).unwrap_or_default();
            let ok = name.iter().position(|&b| b == 0).is_some_and(|n| {
                n > 2 && name[..n].contains(&b'.') && name[..n].iter().all(|&b| is_text(b))
            });
            strong_or_weak(ok)
        }
        // OP_REPLY: answers a request; cursor, starting-from, number returned, documents.
        1 if response_to != 0 && !p.c2s() => strong_or_weak(len >= 36),
        // OP_COMPRESSED: original opcode, size, compressor (noop, snappy, zlib, zstd).
        2012 => strong_or_weak(
            matches!(le32(d, 16), Some(2013 | 2004 | 1)) && matches!(u8_at(d, 24), Some(0..=3)),
        ),
        _ => Hit::Miss,
    }
}

/// Cassandra CQL native protocol (v1-v5 frame header): version (high bit set on
/// responses), flags, stream, opcode, body length equal to the rest of the frame.
pub(super) fn detect_cassandra(p: &Pkt<'_>) -> Hit {
    let d = p.data;
    // Internode messaging (port 7000) opens with the protocol magic 0xCA552DFA.
    if be32(d, 0) == Some(0xca55_2dfa) {
        return Hit::Strong(App::Cassandra);
    }
    let (Some(ver), Some(flags)) = (u8_at(d, 0), u8_at(d, 1)) else {
        return Hit::Miss;
    };
    let response = ver & 0x80 != 0;
    let v = ver & 0x7f;
    if !(1..=5).contains(&v) || flags & !0x1f != 0 || response == p.c2s() {
        return Hit::Miss;
    }
    let (op_at, hdr) = if v <= 2 { (3, 8) } else { (4, 9) };
    let (Some(op), Some(len)) = (u8_at(d, op_at), be32(d, op_at + 1)) else {
        return Hit::Miss;
    };
    if len as usize + hdr != d.len() {
        return Hit::Miss;
    }
    match (response, op) {
        // STARTUP, OPTIONS; READY, AUTHENTICATE, SUPPORTED.
        (false, 0x01 | 0x05) | (true, 0x02 | 0x03 | 0x06) => Hit::Strong(App::Cassandra),
        (false, 0x07 | 0x09 | 0x0a | 0x0b | 0x0d | 0x0f)
        | (true, 0x00 | 0x08 | 0x0c | 0x0e | 0x10) => Hit::Weak(App::Cassandra),
        _ => Hit::Miss,
    }
}

/// Parses ASCII digits; `None` if empty or not all digits.
fn digits(s: &[u8]) -> Option<u64> {
    if s.is_empty() || s.len() > 18 {
        return None;
    }
    s.iter().try_fold(0u64, |acc, &b| {
        b.is_ascii_digit().then(|| acc * 10 + u64::from(b - b'0'))
    })
}

/// Redis RESP: a client command array `*N\r\n$M\r\n`, or a few telling replies.
pub(super) fn detect_redis(p: &Pkt<'_>) -> Hit {
    let d = p.data;
    if let Some(rest) = d.strip_prefix(b"*") {
        // *<count>\r\n$<len>\r\n<command>
        let Some(line) = first_line(rest) else {
            return Hit::Miss;
        };
        let after = rest.get(line.len() + 2..).unwrap_or_default();
        if digits(line).is_some_and(|n| (1..=1_000_000).contains(&n)) && after.starts_with(b"$") {
            let bulk = first_line(&after[1..]);
            if bulk.and_then(digits).is_some() {
                return Hit::Strong(App::Redis);
            }
        }
        return Hit::Miss;
    }
    if !p.c2s()
        && (d.starts_with(b"-NOAUTH ")
            || d.starts_with(b"-DENIED Redis")
            || d.starts_with(b"-ERR unknown command"))
    {
        return Hit::Strong(App::Redis);
    }
    if d == b"+PONG\r\n" || (p.c2s() && d.eq_ignore_ascii_case(b"PING\r\n")) {
        return Hit::Weak(App::Redis);
    }
    Hit::Miss
}

/// Memcached: text protocol commands and replies
/// (<https://github.com/memcached/memcached/blob/master/doc/protocol.txt>), the binary
/// protocol's 24-byte header (magic 0x80/0x81), and the 8-byte UDP frame header.
pub(super) fn detect_memcached(p: &Pkt<'_>) -> Hit {
    let mut d = p.data;
    if !p.tcp() {
        // UDP frame header: request id, sequence, datagram count, reserved zero.
        match (be16(d, 2), be16(d, 4), be16(d, 6)) {
            (Some(seq), Some(total), Some(0)) if total >= 1 && seq < total => d = &d[8..],
            _ => return Hit::Miss,
        }
    }
    if let Some(m @ (0x80 | 0x81)) = u8_at(d, 0) {
        let (Some(op), Some(klen), Some(elen), Some(dtype), Some(body)) = (
            u8_at(d, 1),
            be16(d, 2),
            u8_at(d, 4),
            u8_at(d, 5),
            be32(d, 8),
        ) else {
            return Hit::Miss;
        };
        let ok = op <= 0x48
            && dtype == 0
            && u32::from(klen) + u32::from(elen) <= body
            && body as usize + 24 == d.len()
            && (m == 0x80) == p.c2s();
        return if ok {
            Hit::Strong(App::Memcached)
        } else {
            Hit::Miss
        };
    }
    let Some(line) = first_line(d) else {
        return Hit::Miss;
    };
    if !line.iter().all(|&b| is_text(b))
        || !d.get(line.len()..).is_some_and(|r| r.starts_with(b"\r\n"))
    {
        return Hit::Miss;
    }
    let mut words = line.split(|&b| b == b' ');
    let cmd = words.next().unwrap_or_default();
    let args: [&[u8]; 5] = std::array::from_fn(|_| words.next().unwrap_or_default());
    let num = |s: &[u8]| digits(s).is_some();
    let key = |s: &[u8]| !s.is_empty() && s.len() <= 250;
    match cmd {
        // Storage: <key> <flags> <exptime> <bytes> [noreply]; cas adds <cas unique>.
        b"set" | b"add" | b"replace" | b"append" | b"prepend"
            if key(args[0]) && num(args[1]) && num(args[2]) && num(args[3]) =>
        {
            Hit::Strong(App::Memcached)
        }
        b"cas" if key(args[0]) && num(args[1]) && num(args[2]) && num(args[3]) && num(args[4]) => {
            Hit::Strong(App::Memcached)
        }
        // Replies: VALUE <key> <flags> <bytes>, STAT <name> <value>.
        b"VALUE" if key(args[0]) && num(args[1]) && num(args[2]) => Hit::Strong(App::Memcached),
        b"STAT" if key(args[0]) && !args[1].is_empty() => Hit::Strong(App::Memcached),
        b"get" | b"gets" | b"gat" | b"gats" | b"delete" | b"incr" | b"decr" | b"touch"
            if key(args[0]) =>
        {
            Hit::Weak(App::Memcached)
        }
        b"stats" | b"version" | b"flush_all" | b"verbosity" | b"STORED" | b"NOT_STORED"
        | b"EXISTS" | b"NOT_FOUND" | b"DELETED" | b"TOUCHED" | b"END" | b"VERSION" => {
            Hit::Weak(App::Memcached)
        }
        _ => Hit::Miss,
    }
}

#[cfg(test)]
mod tests;
