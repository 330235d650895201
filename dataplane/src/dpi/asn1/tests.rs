//! Kerberos, LDAP and SNMP tests.

use super::*;
use crate::dpi::fixtures::*;
use crate::dpi::testutil::*;

/// kerberos-login.pcap: the start of a TGS-REQ over UDP (APPLICATION 12, pvno 5, msg-type
/// 12); the message is 1211 bytes, so the tests pad it to its stated length.
const TGS_REQ_HEAD: &[u8] = b"l\x82\x04\xb70\x82\x04\xb3\xa1\x03\x02\x01\x05\xa2\x03\x02\x01\x0c\xa3\x82\x0410\x82\x04-0\x82\x04)\xa1\x03\x02\x01\x01";

fn tgs_req() -> Vec<u8> {
    let mut v = TGS_REQ_HEAD.to_vec();
    v.resize(0x04b7 + 4, 0);
    v
}

/// kerberos.pcap: a KRB-ERROR over TCP, the first 24 bytes (length 0x112).
const KRB_ERROR_TCP_HEAD: &[u8] =
    b"\x00\x00\x01\x12~\x82\x01\x0e0\x82\x01\x0a\xa0\x03\x02\x01\x05\xa1\x03\x02\x01\x1e\xa4\x11";

#[test]
fn kerberos_over_udp_and_tcp() {
    assert_eq!(
        detect_kerberos_udp(&udp_c2s(&tgs_req())),
        strong(App::Kerberos)
    );
    // A datagram must hold the whole message.
    assert_eq!(detect_kerberos_udp(&udp_c2s(TGS_REQ_HEAD)), Hit::Miss);
    // Over TCP the first segment is enough.
    assert_eq!(
        detect_kerberos_tcp(&tcp_s2c(KRB_ERROR_TCP_HEAD)),
        strong(App::Kerberos)
    );
    let mut framed = (tgs_req().len() as u32).to_be_bytes().to_vec();
    framed.extend_from_slice(&tgs_req());
    assert_eq!(
        detect_kerberos_tcp(&tcp_c2s(&framed)),
        strong(App::Kerberos)
    );
}

#[test]
fn kerberos_look_alikes() {
    // pvno 4, an APPLICATION tag that is not a Kerberos message, a TCP length that
    // disagrees with the BER length.
    let mut v4 = tgs_req();
    v4[12] = 4;
    assert_eq!(detect_kerberos_udp(&udp_c2s(&v4)), Hit::Miss);
    let mut tag = tgs_req();
    tag[0] = 0x61;
    assert_eq!(detect_kerberos_udp(&udp_c2s(&tag)), Hit::Miss);
    let mut len = KRB_ERROR_TCP_HEAD.to_vec();
    len[3] = 0x13;
    assert_eq!(detect_kerberos_tcp(&tcp_s2c(&len)), Hit::Miss);
    assert_eq!(detect_kerberos_udp(&udp_c2s(LDAP_BIND)), Hit::Miss);
}

#[test]
fn ldap_messages() {
    assert_eq!(detect_ldap(&tcp_c2s(LDAP_BIND)), strong(App::Ldap));
    assert_eq!(detect_ldap(&tcp_s2c(LDAP_BIND_RESPONSE)), strong(App::Ldap));
    // searchRequest for "dc=example" (RFC 4511 shape), and CLDAP over UDP.
    let search = b"0\x20\x02\x01\x02c\x1b\x04\x0adc=example\x0a\x01\x02\x0a\x01\x00\x02\x01\x00\x02\x01\x00\x01\x01\x00";
    assert_eq!(detect_ldap(&tcp_c2s(search)), strong(App::Ldap));
    assert_eq!(detect_ldap(&udp_c2s(search)), strong(App::Ldap));
    assert_eq!(detect_ldap(&udp_c2s(&search[..20])), Hit::Miss);
    // bindRequest with version 9; SNMP's SEQUENCE is not an LDAPMessage.
    let mut v9 = LDAP_BIND.to_vec();
    v9[9] = 9;
    assert_eq!(detect_ldap(&tcp_c2s(&v9)), Hit::Miss);
    assert_eq!(detect_ldap(&udp_c2s(SNMP_GETNEXT)), Hit::Miss);
}

#[test]
fn snmp_versions() {
    assert_eq!(detect_snmp(&udp_c2s(SNMP_GETNEXT)), strong(App::Snmp));
    // v2c: same shape, version 1.
    let mut v2c = SNMP_GETNEXT.to_vec();
    v2c[4] = 1;
    assert_eq!(detect_snmp(&udp_c2s(&v2c)), strong(App::Snmp));
    // v3 (RFC 3412): version 3, msgGlobalData SEQUENCE { msgID ... }.
    let v3 = b"0\x0f\x02\x01\x030\x0a\x02\x01\x01\x02\x02\x05\xdc\x04\x01\x04";
    assert_eq!(detect_snmp(&udp_c2s(v3)), strong(App::Snmp));
    // Version 2 does not exist; the outer length must be the datagram.
    let mut v2 = SNMP_GETNEXT.to_vec();
    v2[4] = 2;
    assert_eq!(detect_snmp(&udp_c2s(&v2)), Hit::Miss);
    assert_eq!(detect_snmp(&udp_c2s(&SNMP_GETNEXT[..30])), Hit::Miss);
    assert_eq!(detect_snmp(&udp_c2s(LDAP_BIND)), Hit::Miss);
}

#[test]
fn ber_lengths() {
    assert_eq!(tlv(b"\x30\x03abc", 0), Some((0x30, 3, 2)));
    assert_eq!(tlv(b"\x30\x82\x01\x00", 0), Some((0x30, 256, 4)));
    assert_eq!(tlv(b"\x30\x80", 0), None); // indefinite
    assert_eq!(tlv(b"\x30\x85\x01\x01\x01\x01\x01", 0), None); // too long a length
    assert_eq!(tlv(b"\x1f\x01", 0), None); // high tag number
    assert_eq!(integer(b"\x02\x01\x05", 0), Some((5, 3)));
    assert_eq!(integer(b"\x02\x05\x01\x02\x03\x04\x05", 0), None);
}

#[test]
fn never_panics() {
    let req = tgs_req();
    for seed in [
        &req[..64],
        KRB_ERROR_TCP_HEAD,
        LDAP_BIND,
        LDAP_BIND_RESPONSE,
        SNMP_GETNEXT,
    ] {
        for detect in [
            detect_kerberos_udp,
            detect_kerberos_tcp,
            detect_ldap,
            detect_snmp,
        ] {
            assert!(no_panic(detect, seed) > 0);
        }
    }
}
