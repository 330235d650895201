//! RDP, Telnet and Git tests.

use super::*;
use crate::dpi::Transport;
use crate::dpi::fixtures::*;
use crate::dpi::testutil::*;

#[test]
fn rdp_over_tcp() {
    assert_eq!(detect_rdp(&tcp_c2s(RDP_CR)), strong(App::Rdp));
    assert_eq!(detect_rdp(&tcp_s2c(RDP_CC)), strong(App::Rdp));
    // A TPKT with a length that disagrees, or another X.224 code (data, 0xf0).
    assert_eq!(detect_rdp(&tcp_c2s(&RDP_CR[..18])), Hit::Miss);
    let mut dt = RDP_CR.to_vec();
    dt[5] = 0xf0;
    assert_eq!(detect_rdp(&tcp_c2s(&dt)), Hit::Miss);
}

#[test]
fn rdp_over_udp_syn() {
    // rdp2.pcap: MS-RDPEUDP SYN, source ack 0xffffffff, window 64, flags SYN|CORRELATION|
    // SYNEX, MTUs 1232, padded with zeros to 1232 bytes.
    let mut syn = b"\xff\xff\xff\xff\x00\x40\x18\x01\xbb\xff\x56\x87\x04\xd0\x04\xd0".to_vec();
    syn.resize(1232, 0);
    assert_eq!(detect_rdp(&udp_c2s(&syn)), strong(App::Rdp));
    assert_eq!(detect_rdp(&udp_c2s(&syn[..100])), Hit::Miss);
}

#[test]
fn telnet_negotiation() {
    assert_eq!(
        detect_telnet(&tcp_c2s(TELNET_NEGOTIATION)),
        strong(App::Telnet)
    );
    assert_eq!(
        detect_telnet(&tcp_s2c(b"\xff\xfd%")),
        Hit::Weak(App::Telnet)
    );
    assert_eq!(
        classify(Transport::Tcp, 23, &[(S2C, b"\xff\xfd%")]).0,
        App::Telnet
    );
    // Sub-negotiation (terminal type) then text.
    assert_eq!(
        detect_telnet(&tcp_c2s(
            b"\xff\xfa\x18\x00xterm\xff\xf0\xff\xfb\x01login: "
        )),
        strong(App::Telnet)
    );
    assert_eq!(detect_telnet(&tcp_c2s(b"\xff\xf9")), Hit::Miss);
    assert_eq!(detect_telnet(&tcp_c2s(b"\xff\xfa\x18\x00xterm")), Hit::Miss);
}

#[test]
fn git_requests() {
    assert_eq!(detect_git(&tcp_c2s(GIT_UPLOAD_PACK)), strong(App::Git));
    assert_eq!(detect_git(&tcp_s2c(GIT_UPLOAD_PACK)), Hit::Miss);
    assert_eq!(detect_git(&tcp_c2s(b"zz45git-upload-pack /x\0")), Hit::Miss);
    assert_eq!(detect_git(&tcp_c2s(b"0045git-frobnicate /x\0")), Hit::Miss);
}

#[test]
fn never_panics() {
    for seed in [RDP_CR, RDP_CC, TELNET_NEGOTIATION, GIT_UPLOAD_PACK] {
        for detect in [detect_rdp, detect_telnet, detect_git] {
            assert!(no_panic(detect, seed) > 0);
        }
    }
}
