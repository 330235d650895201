//! FTP, SMTP, IMAP and POP3 tests.

use super::*;
use crate::dpi::Transport;
use crate::dpi::fixtures::*;
use crate::dpi::testutil::*;

#[test]
fn greetings_that_name_their_protocol() {
    assert_eq!(detect_ftp(&tcp_s2c(FTP_GREETING)), strong(App::Ftp));
    assert_eq!(detect_smtp(&tcp_s2c(FTP_GREETING)), Hit::Miss);
    assert_eq!(detect_smtp(&tcp_s2c(SMTP_GREETING)), strong(App::Smtp));
    assert_eq!(detect_ftp(&tcp_s2c(SMTP_GREETING)), Hit::Miss);
    assert_eq!(detect_imap(&tcp_s2c(IMAP_GREETING)), strong(App::Imap));
    assert_eq!(detect_pop3(&tcp_s2c(POP3_GREETING)), strong(App::Pop3));
}

#[test]
fn whole_sessions() {
    let ftp = classify(
        Transport::Tcp,
        NEUTRAL_PORT,
        &[(S2C, FTP_GREETING), (C2S, FTP_USER)],
    );
    assert_eq!(ftp.0, App::Ftp);
    let smtp = classify(
        Transport::Tcp,
        NEUTRAL_PORT,
        &[(S2C, SMTP_GREETING), (C2S, SMTP_EHLO)],
    );
    assert_eq!(smtp.0, App::Smtp);
    let imap = classify(Transport::Tcp, NEUTRAL_PORT, &[(S2C, IMAP_GREETING)]);
    assert_eq!(imap.0, App::Imap);
    let pop = classify(
        Transport::Tcp,
        NEUTRAL_PORT,
        &[(S2C, POP3_GREETING), (C2S, POP3_USER)],
    );
    assert_eq!(pop.0, App::Pop3);
}

#[test]
fn client_commands() {
    assert_eq!(detect_smtp(&tcp_c2s(SMTP_EHLO)), strong(App::Smtp));
    assert_eq!(detect_imap(&tcp_c2s(IMAP_CAPABILITY)), strong(App::Imap));
    assert_eq!(detect_ftp(&tcp_c2s(b"FEAT\r\n")), strong(App::Ftp));
    assert_eq!(detect_pop3(&tcp_c2s(b"CAPA\r\n")), strong(App::Pop3));
    // USER is FTP's and POP3's: weak for both.
    assert_eq!(detect_ftp(&tcp_c2s(FTP_USER)), Hit::Weak(App::Ftp));
    assert_eq!(detect_pop3(&tcp_c2s(FTP_USER)), Hit::Weak(App::Pop3));
}

#[test]
fn look_alikes() {
    // A bare "+OK" is Redis's or NATS's too; a 220 with binary; an IMAP-looking tag with
    // an unknown command; a greeting from the wrong side.
    assert_eq!(
        classify(Transport::Tcp, NEUTRAL_PORT, &[(S2C, b"+OK\r\n")]).0,
        App::Unknown
    );
    assert_eq!(detect_ftp(&tcp_s2c(b"220 \x01\x02\x03\r\n")), Hit::Miss);
    assert_eq!(detect_imap(&tcp_c2s(b"a1 FROB\r\n")), Hit::Miss);
    assert_eq!(detect_imap(&tcp_c2s(IMAP_GREETING)), Hit::Miss);
    assert_eq!(detect_smtp(&tcp_c2s(HTTP_GET)), Hit::Miss);
}

#[test]
fn never_panics() {
    let seeds = [
        FTP_GREETING,
        FTP_USER,
        SMTP_GREETING,
        SMTP_EHLO,
        IMAP_GREETING,
        IMAP_CAPABILITY,
        POP3_GREETING,
        POP3_USER,
    ];
    for seed in seeds {
        for detect in [detect_ftp, detect_smtp, detect_imap, detect_pop3] {
            assert!(no_panic(detect, seed) > 0);
        }
    }
}
