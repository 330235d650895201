//! Network services, mostly over UDP: DHCP (RFC 2131), NTP (RFC 5905, with the mode 6
//! control and mode 7 private formats of the reference implementation), Syslog (RFC 3164,
//! RFC 5424, TCP framing RFC 6587), TFTP (RFC 1350, options RFC 2347), RADIUS (RFC 2865,
//! RFC 2866, RFC 5176) and CoAP (RFC 7252).
//!
//! Hand-written: fixed headers and length fields no crate checks more cheaply.

use super::{App, Hit, Pkt};
use crate::bytes::{be16, is_text, starts_with_ci, u8_at};

/// DHCP: a BOOTP message (op 1 or 2, hardware address length <= 16) with the DHCP magic
/// cookie 0x63825363 at offset 236.
pub(super) fn detect_dhcp(p: &Pkt<'_>) -> Hit {
    let d = p.data;
    let ok = matches!(u8_at(d, 0), Some(1 | 2))
        && u8_at(d, 2).is_some_and(|hlen| hlen <= 16)
        && d.get(236..240) == Some(&[0x63, 0x82, 0x53, 0x63]);
    if ok {
        Hit::Strong(App::Dhcp)
    } else {
        Hit::Miss
    }
}

/// NTP: version 1-4 and, by mode, a 48-byte header (plus a MAC or extension fields), a
/// mode 6 control message whose count fits, or a mode 7 private message whose items fit.
pub(super) fn detect_ntp(p: &Pkt<'_>) -> Hit {
    let d = p.data;
    let Some(b0) = u8_at(d, 0) else {
        return Hit::Miss;
    };
    let version = (b0 >> 3) & 0x7;
    let mode = b0 & 0x7;
    if !(1..=4).contains(&version) {
        return Hit::Miss;
    }
    let len = d.len();
    match mode {
        1..=5 => {
            let stratum = u8_at(d, 1).unwrap_or(u8::MAX);
            // 48 bytes, + key id and MD5 (20) or SHA-1 (24) digest, or v4 extension fields.
            let size_ok = len == 48
                || len == 68
                || len == 72
                || (len > 48 && len.is_multiple_of(4) && len <= 1024);
            if size_ok && stratum <= 16 {
                Hit::Strong(App::Ntp)
            } else {
                Hit::Miss
            }
        }
        6 if version >= 2 => {
            // Control: op, sequence, status, association id, offset, count, data padded to
            // 4 bytes, then optionally a key id and an MD5 or SHA-1 digest.
            let (Some(op), Some(count)) = (u8_at(d, 1), be16(d, 10)) else {
                return Hit::Miss;
            };
            let body = (12 + usize::from(count)).next_multiple_of(4);
            let size_ok = len == 12 + usize::from(count)
                || len == body
                || len == body + 20
                || len == body + 24;
            if (1..=31).contains(&(op & 0x1f)) && size_ok {
                Hit::Strong(App::Ntp)
            } else {
                Hit::Miss
            }
        }
        7 if version >= 2 => {
            // Private: seq, implementation (0 univ, 2 xntpd old, 3 xntpd), request code,
            // then error + item count and item size (12 bits each).
            let (Some(imp), Some(items), Some(size)) = (u8_at(d, 2), be16(d, 4), be16(d, 6)) else {
                return Hit::Miss;
            };
            let data = usize::from(items & 0x0fff) * usize::from(size & 0x0fff);
            let ok = matches!(imp, 0 | 2 | 3)
                && size & 0xf000 == 0
                && (8 + data == len || (items & 0x0fff == 0 && matches!(len, 8 | 48 | 72 | 192)));
            if ok { Hit::Strong(App::Ntp) } else { Hit::Miss }
        }
        _ => Hit::Miss,
    }
}

/// Syslog: `<PRI>` (0-191, no leading zeros) then printable text; over TCP optionally
/// preceded by an octet count (`123 <PRI>...`).
pub(super) fn detect_syslog(p: &Pkt<'_>) -> Hit {
    let mut d = p.data;
    if p.tcp()
        && let Some(sp) = d.iter().take(6).position(|&b| b == b' ')
        && sp > 0
        && d[..sp].iter().all(u8::is_ascii_digit)
    {
        d = &d[sp + 1..];
    }
    let Some(rest) = d.strip_prefix(b"<") else {
        return Hit::Miss;
    };
    let Some(gt) = rest.iter().take(4).position(|&b| b == b'>') else {
        return Hit::Miss;
    };
    let pri = &rest[..gt];
    let value = pri.iter().try_fold(0u16, |acc, &b| {
        b.is_ascii_digit().then(|| acc * 10 + u16::from(b - b'0'))
    });
    let leading_zero = pri.len() > 1 && pri[0] == b'0';
    let text = &rest[gt + 1..];
    let head = &text[..text.len().min(32)];
    match value {
        Some(v) if v <= 191 && !pri.is_empty() && !leading_zero => {
            if head.len() >= 4 && head.iter().all(|&b| is_text(b)) {
                Hit::Strong(App::Syslog)
            } else {
                Hit::Miss
            }
        }
        _ => Hit::Miss,
    }
}

/// TFTP: RRQ/WRQ (`filename\0mode\0` with a known mode) are strong; DATA, ACK, ERROR and
/// OACK are weak (a transfer runs on fresh ports, so they decide once both sides agree).
pub(super) fn detect_tftp(p: &Pkt<'_>) -> Hit {
    let d = p.data;
    let Some(op) = be16(d, 0) else {
        return Hit::Miss;
    };
    let rest = &d[2..];
    match op {
        1 | 2 => {
            let Some(nul) = rest.iter().position(|&b| b == 0) else {
                return Hit::Miss;
            };
            let name = &rest[..nul];
            let mode = &rest[nul + 1..];
            let known = [&b"octet\0"[..], b"netascii\0", b"mail\0"];
            if !name.is_empty()
                && name.iter().all(|&b| is_text(b))
                && known.iter().any(|m| starts_with_ci(mode, m))
            {
                Hit::Strong(App::Tftp)
            } else {
                Hit::Miss
            }
        }
        // DATA: block number and at most 512 bytes (more with the blksize option).
        3 if d.len() >= 4 && d.len() <= 65468 + 4 => Hit::Weak(App::Tftp),
        4 if d.len() == 4 => Hit::Weak(App::Tftp),
        5 if be16(d, 2).is_some_and(|c| c <= 8) && d.last() == Some(&0) => Hit::Weak(App::Tftp),
        // OACK: NUL-terminated option/value pairs; RFC 2348/2349/7440 names are telling.
        6 if d.len() > 3 && d.last() == Some(&0) => {
            let known = [&b"blksize\0"[..], b"tsize\0", b"timeout\0", b"windowsize\0"];
            if known.iter().any(|k| starts_with_ci(rest, k))
                && rest.iter().all(|&b| b == 0 || is_text(b))
            {
                Hit::Strong(App::Tftp)
            } else {
                Hit::Weak(App::Tftp)
            }
        }
        _ => Hit::Miss,
    }
}

/// RADIUS: a known code and a length equal to the datagram (20..=4096). Attributes are
/// not walked: damaged attributes are still RADIUS, and the exact length in bytes 2-3 is
/// what random datagrams lack.
pub(super) fn detect_radius(p: &Pkt<'_>) -> Hit {
    let d = p.data;
    let (Some(code), Some(len)) = (u8_at(d, 0), be16(d, 2)) else {
        return Hit::Miss;
    };
    let len = usize::from(len);
    if matches!(code, 1..=5 | 11..=13 | 40..=45) && (20..=4096).contains(&len) && len == d.len() {
        Hit::Strong(App::Radius)
    } else {
        Hit::Miss
    }
}

/// CoAP: version 1, token length <= 8, a request or response code, then options that end
/// at the payload marker or the datagram end. Four header bytes are little to go on: weak.
pub(super) fn detect_coap(p: &Pkt<'_>) -> Hit {
    let d = p.data;
    let (Some(b0), Some(code)) = (u8_at(d, 0), u8_at(d, 1)) else {
        return Hit::Miss;
    };
    let tkl = usize::from(b0 & 0x0f);
    let class = code >> 5;
    if b0 >> 6 != 1 || tkl > 8 || !matches!(class, 0 | 2 | 4 | 5) || d.len() < 4 + tkl {
        return Hit::Miss;
    }
    if code == 0 {
        // Empty message: header only.
        return if d.len() == 4 {
            Hit::Weak(App::Coap)
        } else {
            Hit::Miss
        };
    }
    if class == 0 && !(1..=7).contains(&code) {
        return Hit::Miss;
    }
    let mut at = 4 + tkl;
    while let Some(&b) = d.get(at) {
        if b == 0xff {
            return if at + 1 < d.len() {
                Hit::Weak(App::Coap)
            } else {
                Hit::Miss
            };
        }
        let (delta, len) = (b >> 4, b & 0x0f);
        if delta == 15 || len == 15 {
            return Hit::Miss;
        }
        at += 1;
        let ext = |n: u8| match n {
            13 => 1,
            14 => 2,
            _ => 0,
        };
        at += ext(delta);
        let vlen = match len {
            13 => usize::from(u8_at(d, at).unwrap_or(0)) + 13,
            14 => usize::from(be16(d, at).unwrap_or(0)) + 269,
            l => usize::from(l),
        };
        at += ext(len) + vlen;
    }
    if at == d.len() {
        Hit::Weak(App::Coap)
    } else {
        Hit::Miss
    }
}

#[cfg(test)]
mod tests;
