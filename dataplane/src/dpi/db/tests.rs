//! Database and cache detector tests.

use super::*;
use crate::dpi::Transport;
use crate::dpi::fixtures::*;
use crate::dpi::testutil::*;

#[test]
fn mysql_greeting() {
    assert_eq!(detect_mysql(&tcp_s2c(MYSQL_GREETING)), strong(App::Mysql));
    // A greeting cut at the segment end: the version string is what counts.
    assert_eq!(
        detect_mysql(&tcp_s2c(&MYSQL_GREETING[..70])),
        strong(App::Mysql)
    );
    // Wrong protocol version byte; wrong length; HTTP.
    let mut v9 = MYSQL_GREETING.to_vec();
    v9[4] = 9;
    assert_eq!(detect_mysql(&tcp_s2c(&v9)), Hit::Miss);
    assert_eq!(detect_mysql(&tcp_s2c(&MYSQL_GREETING[..20])), Hit::Miss);
    assert_eq!(detect_mysql(&tcp_c2s(HTTP_GET)), Hit::Miss);
    assert_eq!(
        classify(Transport::Tcp, NEUTRAL_PORT, &[(S2C, MYSQL_GREETING)]).0,
        App::Mysql
    );
}

#[test]
fn mysql_handshake_response() {
    // mysql.pcapng, the client's HandshakeResponse41 (first 60 bytes; length 0xd6).
    let resp = b"\xd6\x00\x00\x01\x84\xa6\xff \x00\x00\x00\x01!\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x1d\x00\x00\x00admin\x00\x14\xe3\x87!\xfb\xab\x83\x05\xd5GF[\x19\xe4\x0b";
    let mut whole = resp.to_vec();
    whole.resize(0xd6 + 4, 0);
    assert_eq!(detect_mysql(&tcp_c2s(&whole)), strong(App::Mysql));
    // The same cut to 60 bytes is too little to tell.
    assert_eq!(detect_mysql(&tcp_c2s(resp)), Hit::Miss);
}

#[test]
fn postgresql_client_openings() {
    assert_eq!(
        detect_postgresql(&tcp_c2s(PG_SSL_REQUEST)),
        strong(App::Postgresql)
    );
    assert_eq!(
        detect_postgresql(&tcp_c2s(PG_STARTUP)),
        strong(App::Postgresql)
    );
    // Same bytes from the server mean nothing; a wrong length is not a StartupMessage.
    assert_eq!(detect_postgresql(&tcp_s2c(PG_SSL_REQUEST)), Hit::Miss);
    assert_eq!(detect_postgresql(&tcp_c2s(&PG_STARTUP[..20])), Hit::Miss);
    // SASL authentication request from the server.
    let sasl = b"R\x00\x00\x00\x17\x00\x00\x00\x0aSCRAM-SHA-256\x00\x00";
    assert_eq!(detect_postgresql(&tcp_s2c(sasl)), strong(App::Postgresql));
    assert_eq!(
        detect_postgresql(&tcp_s2c(b"R\x00\x00\x00\x08\x00\x00\x00\x00")),
        Hit::Weak(App::Postgresql)
    );
}

#[test]
fn mssql_tds() {
    assert_eq!(detect_mssql(&tcp_c2s(TDS_PRELOGIN)), strong(App::Mssql));
    assert_eq!(detect_mssql(&tcp_s2c(TDS_RESULT)), strong(App::Mssql));
    // mssql_tds.pcap: an RPC request without ALL_HEADERS (procedure sp_executesql).
    let rpc = b"\x03\x09\x00\x28\x00\x00\x01\x00\x0d\x00s\x00p\x00_\x00e\x00x\x00e\x00c\x00u\x00t\x00e\x00s\x00q\x00l\x00\x02\x00\x00\x00";
    assert_eq!(detect_mssql(&tcp_c2s(&rpc[..])), strong(App::Mssql));
    // A length that disagrees with the payload; a non-zero window byte.
    let mut bad = TDS_PRELOGIN.to_vec();
    bad[3] += 1;
    assert_eq!(detect_mssql(&tcp_c2s(&bad)), Hit::Miss);
    let mut window = TDS_PRELOGIN.to_vec();
    window[7] = 1;
    assert_eq!(detect_mssql(&tcp_c2s(&window)), Hit::Miss);
}

#[test]
fn oracle_tns() {
    assert_eq!(detect_oracle(&tcp_c2s(TNS_CONNECT)), strong(App::Oracle));
    assert_eq!(detect_oracle(&tcp_s2c(TNS_RESEND)), Hit::Weak(App::Oracle));
    assert_eq!(
        classify(
            Transport::Tcp,
            1521,
            &[(C2S, TNS_CONNECT), (S2C, TNS_RESEND)]
        )
        .0,
        App::Oracle
    );
    let mut old = TNS_CONNECT.to_vec();
    old[8..10].copy_from_slice(&200u16.to_be_bytes());
    assert_eq!(detect_oracle(&tcp_c2s(&old)), Hit::Miss);
    assert_eq!(detect_oracle(&tcp_c2s(&TNS_CONNECT[..100])), Hit::Miss);
}

#[test]
fn mongodb_messages() {
    assert_eq!(detect_mongodb(&tcp_c2s(MONGO_OP_MSG)), strong(App::Mongodb));
    // mongodb.pcap: OP_QUERY isMaster from PyMongo (first 64 bytes of 247).
    let query = b"\xf7\x00\x00\x00\x98\x36\x6e\x4d\x00\x00\x00\x00\xd4\x07\x00\x00\x00\x00\x00\x00admin.$cmd\x00\x00\x00\x00\x00\xff\xff\xff\xff\xd0\x00\x00\x00\x10ismaster\x00\x01\x00\x00\x00\x03cl";
    assert_eq!(detect_mongodb(&tcp_c2s(query)), Hit::Weak(App::Mongodb));
    let mut whole = query.to_vec();
    whole.resize(0xf7, 0);
    assert_eq!(detect_mongodb(&tcp_c2s(&whole)), strong(App::Mongodb));
    let mut op = MONGO_OP_MSG.to_vec();
    op[12] = 0x01; // opcode 0x7d01: none
    assert_eq!(detect_mongodb(&tcp_c2s(&op)), Hit::Miss);
}

#[test]
fn cassandra_frames() {
    assert_eq!(
        detect_cassandra(&tcp_c2s(CQL_OPTIONS)),
        strong(App::Cassandra)
    );
    assert_eq!(
        detect_cassandra(&tcp_s2c(CQL_SUPPORTED)),
        strong(App::Cassandra)
    );
    // A request frame from the server side, or a wrong body length.
    assert_eq!(detect_cassandra(&tcp_s2c(CQL_OPTIONS)), Hit::Miss);
    assert_eq!(detect_cassandra(&tcp_s2c(&CQL_SUPPORTED[..30])), Hit::Miss);
    // cassandra.pcap, port 7000: internode messaging magic.
    let internode = b"\xca\x55\x2d\xfa\x0c\x0a\x0c\x11\x06\xc6\x12\x00\x02\x1b\x58\xf3\xcb\x19\xb3";
    assert_eq!(
        detect_cassandra(&tcp_c2s(internode)),
        strong(App::Cassandra)
    );
}

#[test]
fn redis_resp() {
    assert_eq!(detect_redis(&tcp_c2s(REDIS_PING)), strong(App::Redis));
    assert_eq!(
        detect_redis(&tcp_c2s(b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\nv\r\n")),
        strong(App::Redis)
    );
    assert_eq!(detect_redis(&tcp_s2c(b"+PONG\r\n")), Hit::Weak(App::Redis));
    // IMAP's untagged "* OK" is not a RESP array.
    assert_eq!(detect_redis(&tcp_s2c(IMAP_GREETING)), Hit::Miss);
    assert_eq!(detect_redis(&tcp_c2s(b"*0\r\n")), Hit::Miss);
}

#[test]
fn memcached_text_and_binary() {
    assert_eq!(
        detect_memcached(&tcp_c2s(MEMCACHED_STATS)),
        Hit::Weak(App::Memcached)
    );
    assert_eq!(
        detect_memcached(&tcp_s2c(MEMCACHED_STAT)),
        strong(App::Memcached)
    );
    assert_eq!(
        classify(
            Transport::Tcp,
            NEUTRAL_PORT,
            &[(C2S, MEMCACHED_STATS), (S2C, MEMCACHED_STAT)]
        )
        .0,
        App::Memcached
    );
    assert_eq!(
        detect_memcached(&tcp_c2s(b"set foo 0 300 3\r\nbar\r\n")),
        strong(App::Memcached)
    );
    assert_eq!(detect_memcached(&tcp_c2s(b"set foo bar\r\n")), Hit::Miss);
    // Binary GET request for key "Hello" (protocol_binary.txt example).
    let get = b"\x80\x00\x00\x05\x00\x00\x00\x00\x00\x00\x00\x05\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00Hello";
    assert_eq!(detect_memcached(&tcp_c2s(get)), strong(App::Memcached));
    assert_eq!(detect_memcached(&tcp_s2c(get)), Hit::Miss);
    // Over UDP, behind the 8-byte frame header.
    let udp = b"\x00\x01\x00\x00\x00\x01\x00\x00get foo\r\n";
    assert_eq!(detect_memcached(&udp_c2s(udp)), Hit::Weak(App::Memcached));
    assert_eq!(detect_memcached(&udp_c2s(b"get foo\r\n")), Hit::Miss);
}

#[test]
fn never_panics() {
    let seeds = [
        MYSQL_GREETING,
        PG_SSL_REQUEST,
        PG_STARTUP,
        TDS_PRELOGIN,
        TDS_RESULT,
        TNS_CONNECT,
        MONGO_OP_MSG,
        CQL_OPTIONS,
        CQL_SUPPORTED,
        REDIS_PING,
        MEMCACHED_STAT,
    ];
    for seed in seeds {
        for detect in [
            detect_mysql,
            detect_postgresql,
            detect_mssql,
            detect_oracle,
            detect_mongodb,
            detect_cassandra,
            detect_redis,
            detect_memcached,
        ] {
            assert!(no_panic(detect, seed) > 0);
        }
    }
}
