//! Line-based client/server protocols with server greetings: FTP (RFC 959), SMTP
//! (RFC 5321), IMAP (RFC 9051) and POP3 (RFC 1939).
//!
//! A bare `220 ` greeting is shared by FTP and SMTP: it is weak evidence for both unless
//! its text names one (`vsFTPd`, `ESMTP`); the client's first command, or the port, then
//! settles it. `USER ` is shared by FTP and POP3 the same way.

use super::{App, Hit, Pkt};
use crate::bytes::{contains_ci, first_line, is_text, starts_with_ci};

/// The greeting's first line if `d` starts with `code` followed by `' '` or `'-'`.
fn reply<'a>(d: &'a [u8], code: &[u8]) -> Option<&'a [u8]> {
    let rest = d.strip_prefix(code)?;
    if !matches!(rest.first(), Some(b' ' | b'-')) {
        return None;
    }
    let line = first_line(d).unwrap_or(d);
    line.iter().all(|&b| is_text(b)).then_some(line)
}

fn command(d: &[u8], cmds: &[&[u8]]) -> bool {
    cmds.iter().any(|c| starts_with_ci(d, c))
}

pub(super) fn detect_ftp(p: &Pkt<'_>) -> Hit {
    let d = p.data;
    if !p.c2s() {
        if let Some(line) = reply(d, b"220") {
            return if contains_ci(line, b"FTP") {
                Hit::Strong(App::Ftp)
            } else if contains_ci(line, b"SMTP") || contains_ci(line, b"mail") {
                Hit::Miss
            } else {
                Hit::Weak(App::Ftp)
            };
        }
        // 331 "User name okay, need password" is FTP's own.
        if reply(d, b"331").is_some() {
            return Hit::Strong(App::Ftp);
        }
        return Hit::Miss;
    }
    if command(
        d,
        &[
            b"AUTH TLS\r\n",
            b"AUTH SSL\r\n",
            b"FEAT\r\n",
            b"SYST\r\n",
            b"PASV\r\n",
            b"EPSV\r\n",
            b"OPTS UTF8",
        ],
    ) {
        return Hit::Strong(App::Ftp);
    }
    if command(d, &[b"USER ", b"PASS "]) && first_line(d).is_some() {
        return Hit::Weak(App::Ftp);
    }
    Hit::Miss
}

pub(super) fn detect_smtp(p: &Pkt<'_>) -> Hit {
    let d = p.data;
    if !p.c2s() {
        if let Some(line) = reply(d, b"220") {
            return if contains_ci(line, b"SMTP") {
                Hit::Strong(App::Smtp)
            } else if contains_ci(line, b"FTP") {
                Hit::Miss
            } else {
                Hit::Weak(App::Smtp)
            };
        }
        return Hit::Miss;
    }
    if command(d, &[b"EHLO ", b"HELO ", b"MAIL FROM:", b"EHLO\r\n"]) && first_line(d).is_some() {
        return Hit::Strong(App::Smtp);
    }
    Hit::Miss
}

pub(super) fn detect_imap(p: &Pkt<'_>) -> Hit {
    let d = p.data;
    if !p.c2s() {
        if (d.starts_with(b"* OK") || d.starts_with(b"* PREAUTH") || d.starts_with(b"* BYE"))
            && first_line(d).is_some()
        {
            return Hit::Strong(App::Imap);
        }
        return Hit::Miss;
    }
    // <tag> SP <command>: the tag is alphanumeric (plus a few symbols), commands are known.
    let Some(sp) = d.iter().take(32).position(|&b| b == b' ') else {
        return Hit::Miss;
    };
    let tag = &d[..sp];
    if tag.is_empty()
        || !tag
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || b".-_".contains(b))
    {
        return Hit::Miss;
    }
    let rest = &d[sp + 1..];
    if command(
        rest,
        &[
            b"CAPABILITY\r\n",
            b"LOGIN ",
            b"AUTHENTICATE ",
            b"STARTTLS\r\n",
            b"ID ",
            b"SELECT ",
            b"EXAMINE ",
            b"LIST ",
            b"LSUB ",
        ],
    ) {
        Hit::Strong(App::Imap)
    } else {
        Hit::Miss
    }
}

pub(super) fn detect_pop3(p: &Pkt<'_>) -> Hit {
    let d = p.data;
    if !p.c2s() {
        // "+OK text": a bare "+OK\r\n" is also a Redis or NATS reply.
        return match reply(d, b"+OK") {
            Some(line) if line.len() > 4 && p.first() => Hit::Strong(App::Pop3),
            Some(_) => Hit::Weak(App::Pop3),
            None => Hit::Miss,
        };
    }
    if command(d, &[b"CAPA\r\n", b"STLS\r\n", b"APOP ", b"UIDL\r\n"]) {
        return Hit::Strong(App::Pop3);
    }
    if command(d, &[b"USER ", b"PASS ", b"STAT\r\n", b"RETR "]) && first_line(d).is_some() {
        return Hit::Weak(App::Pop3);
    }
    Hit::Miss
}

#[cfg(test)]
mod tests;
