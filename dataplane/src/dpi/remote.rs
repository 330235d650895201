//! Remote access and code transfer: RDP (TPKT + X.224 over TCP, MS-RDPEUDP over UDP),
//! Telnet (RFC 854 option negotiation) and the Git native protocol (pkt-line requests).
//! SSH's banner check lives with the detector table in `mod.rs`.

use super::{App, Hit, Pkt};
use crate::bytes::{be16, be32, u8_at};

/// RDP over TCP: TPKT version 3 (RFC 1006) whose length is the payload, carrying an X.224
/// Connection Request (0xe0) or Connection Confirm (0xd0) whose length indicator agrees.
/// Over UDP: the MS-RDPEUDP SYN datagram (source ack 0xffffffff, SYN flag, MTUs, padded to
/// 1232 bytes).
pub(super) fn detect_rdp(p: &Pkt<'_>) -> Hit {
    let d = p.data;
    if !p.tcp() {
        let (Some(ack), Some(flags), Some(up), Some(down)) =
            (be32(d, 0), be16(d, 6), be16(d, 12), be16(d, 14))
        else {
            return Hit::Miss;
        };
        let mtu = 1132..=1232;
        return if ack == 0xffff_ffff
            && flags & 0x0001 != 0
            && mtu.contains(&up)
            && mtu.contains(&down)
            && d.len() >= 1132
        {
            Hit::Strong(App::Rdp)
        } else {
            Hit::Miss
        };
    }
    let (Some(3), Some(0), Some(len), Some(li), Some(code)) = (
        u8_at(d, 0),
        u8_at(d, 1),
        be16(d, 2),
        u8_at(d, 4),
        u8_at(d, 5),
    ) else {
        return Hit::Miss;
    };
    let ok = usize::from(len) == d.len()
        && usize::from(li) + 5 == d.len()
        && matches!(code & 0xf0, 0xe0 | 0xd0);
    if ok { Hit::Strong(App::Rdp) } else { Hit::Miss }
}

const IAC: u8 = 0xff;
const SB: u8 = 0xfa;
const SE: u8 = 0xf0;

/// Telnet: a payload made of option negotiation (IAC WILL/WONT/DO/DONT option, or
/// IAC SB ... IAC SE). Two or more commands are strong; a single one is weak.
pub(super) fn detect_telnet(p: &Pkt<'_>) -> Hit {
    let d = p.data;
    if u8_at(d, 0) != Some(IAC) {
        return Hit::Miss;
    }
    let mut at = 0;
    let mut commands = 0;
    while at < d.len() {
        if d[at] != IAC {
            break; // Text after the negotiation (a banner) is fine.
        }
        match u8_at(d, at + 1) {
            Some(0xfb..=0xfe) if u8_at(d, at + 2).is_some() => at += 3,
            Some(SB) => {
                // Sub-negotiation runs to IAC SE.
                let Some(end) = d[at + 2..].windows(2).position(|w| w == [IAC, SE]) else {
                    return Hit::Miss;
                };
                at += 2 + end + 2;
            }
            _ => return Hit::Miss,
        }
        commands += 1;
    }
    match commands {
        0 => Hit::Miss,
        1 => Hit::Weak(App::Telnet),
        _ => Hit::Strong(App::Telnet),
    }
}

/// Git native protocol: a pkt-line (4 hex digits of length) carrying
/// `git-upload-pack`, `git-receive-pack` or `git-upload-archive` and a path.
pub(super) fn detect_git(p: &Pkt<'_>) -> Hit {
    let d = p.data;
    if !p.c2s() {
        return Hit::Miss;
    }
    let Some(hex) = d.get(..4) else {
        return Hit::Miss;
    };
    let len = hex.iter().try_fold(0usize, |acc, &b| {
        (b as char).to_digit(16).map(|v| acc * 16 + v as usize)
    });
    let Some(len) = len else {
        return Hit::Miss;
    };
    let body = &d[4..];
    let known = [
        &b"git-upload-pack "[..],
        b"git-receive-pack ",
        b"git-upload-archive ",
    ];
    if len <= d.len() && len > 4 && known.iter().any(|k| body.starts_with(k)) {
        Hit::Strong(App::Git)
    } else {
        Hit::Miss
    }
}

#[cfg(test)]
mod tests;
