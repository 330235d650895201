//! Real payloads for the tests. Most are copied from the nDPI regression captures in
//! `shared/dpi-corpus/pcap` (file and packet named above each, extracted with
//! `tcpdump -x`); the rest are built from the RFC or specification cited.

/// hls.pcapng, packet 1 (VLC to a Python HTTP server).
pub(crate) const HTTP_GET: &[u8] = b"GET /output.m3u8 HTTP/1.1\x0d\x0aHost: 192.168.88.231:8080\x0d\x0aAccept: */*\x0d\x0aAccept-Language: en_US\x0d\x0aUser-Agent: VLC/3.0.18 LibVLC/3.0.18\x0d\x0aRange: bytes=0-\x0d\x0a\x0d\x0a";
/// hls.pcapng, the response.
pub(crate) const HTTP_200: &[u8] = b"HTTP/1.0 200 OK\x0d\x0aServer: SimpleHTTP/0.6 Python/3.11.4\x0d\x0aDate: Mon, 15 Jul 2024 14:50:13 GMT\x0d\x0aContent-type: application/vnd.apple.mpegurl\x0d\x0aContent-Length: 117\x0d\x0aLast-Modified: Mon, 15 Jul 2024 14:43:06 GMT\x0d\x0a\x0d\x0a";
/// http2.pcapng, packet 1: h2c preface and SETTINGS.
pub(crate) const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\x0d\x0a\x0d\x0aSM\x0d\x0a\x0d\x0a\x00\x00\x12\x04\x00\x00\x00\x00\x00\x00\x02\x00\x00\x00\x00\x00\x04\x00@\x00\x00\x00\x06\x00\xa0\x00\x00\x00\x00\x04\x08\x00\x00\x00\x00\x00@\x00\x00\x00";
/// http2.pcapng, packet 2: HEADERS (POST, content-type application/json, Huffman-coded).
pub(crate) const H2_HEADERS_JSON: &[u8] = b"\x00\x00]\x01\x04\x00\x00\x00\x03A\x8b\x08\x9d\x5c\x0b\x81p\xdc\x13\xed\x85\xef\x83E\x93b\xa1\xd3*\xc4=4\xb1\xdc,\x22\xd8\xd0K\x0dZLz\x91\x86_\x8b\x1du\xd0b\x0d&=LtA\xeaS\x8b\x1du\xd0b\x0d&=LtA\xeaz\x93\xd5Yj\x87^E\xb1\x16\xa2\xd84\x9e\xc6\x02\xb8\x17\x03\x13\x1f\x5c\x03135P\x83\x9b\xd9\xab";
/// tls_alert.pcap, packet 1: TLS 1.0 ClientHello, SNI www.google-analytics.com, ALPN
/// h2, h2-16, h2-15, h2-14, spdy/3.1, spdy/3, http/1.1.
pub(crate) const TLS_CLIENT_HELLO: &[u8] = b"\x16\x03\x01\x00\xc2\x01\x00\x00\xbe\x03\x01R\xdb5\xf3\xea\xa1\x18\x8b\xf1\xe1\x93\xfc\xcf3>Xs\xf45\xbb\xdc\x1cH\x18\x17\x85?Tv%j:\x00\x00\x12\x00/\x003\x005\x009\xc0\x09\xc0\x0a\xc0\x13\xc0\x14V\x00\x01\x00\x00\x83\xff\x01\x00\x01\x00\x00\x00\x00\x1d\x00\x1b\x00\x00\x18www.google-analytics.com\x00\x17\x00\x00\x00\x05\x00\x05\x01\x00\x00\x00\x003t\x00\x00\x00\x12\x00\x00\x00\x10\x000\x00.\x02h2\x05h2-16\x05h2-15\x05h2-14\x08spdy/3.1\x06spdy/3\x08http/1.1\x00\x0b\x00\x02\x01\x00\x00\x0a\x00\x0a\x00\x08\x00\x1d\x00\x17\x00\x18\x00\x19";
/// tls_alert.pcap, packet 2: the server's alert (handshake_failure).
pub(crate) const TLS_ALERT: &[u8] = b"\x15\x03\x01\x00\x02\x02F";
/// mullvad_dns.pcap, packet 1: A? www.mullvad.net with EDNS.
pub(crate) const DNS_QUERY: &[u8] = b"Y\x86\x01 \x00\x01\x00\x00\x00\x00\x00\x01\x03www\x07mullvad\x03net\x00\x00\x01\x00\x01\x00\x00)\x04\xd0\x00\x00\x00\x00\x00\x0c\x00\x0a\x00\x08\xc2\x17\x06\x86\xca\x0a\x933";
/// mullvad_dns.pcap, packet 2: the answer (CNAME, A).
pub(crate) const DNS_RESPONSE: &[u8] = b"Y\x86\x81\xa0\x00\x01\x00\x02\x00\x00\x00\x01\x03www\x07mullvad\x03net\x00\x00\x01\x00\x01\xc0\x0c\x00\x05\x00\x01\x00\x00\x06\xd7\x00\x02\xc0\x10\xc0\x10\x00\x01\x00\x01\x00\x00\x00\x0b\x00\x04-S\xdf\xd1\x00\x00)\x04\xd0\x00\x00\x00\x00\x00\x00";
/// netbios_wildcard_dns_query.pcap: an NBNS-style wildcard name sent to port 53 (nDPI: DNS).
pub(crate) const DNS_NBNS_NAME: &[u8] = b"\x80\xf0\x00\x10\x00\x01\x00\x00\x00\x00\x00\x00 CKAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\x00\x00!\x00\x01";
/// fuzz-2006-06-26-2594.pcap, first NBNS query 137 -> 137 (one letter damaged).
pub(crate) const NBNS_QUERY: &[u8] = b"\x84\xe7\x01\x10\x00\x01\x00\x00\x00\x00\x00\x00 EFEDEJFPEEEPENEBEJEOSACACACACABM\x00\x00 \x00\x01";
/// ssh.pcap, the server banner.
pub(crate) const SSH_BANNER: &[u8] = b"SSH-2.0-OpenSSH_5.3\x0d\x0a";
/// mysql.pcapng, the MariaDB server greeting (protocol 10).
pub(crate) const MYSQL_GREETING: &[u8] = b"j\x00\x00\x00\x0a5.5.5-10.6.12-MariaDB-0ubuntu0.22.04.1\x00 \x00\x00\x00GgP=!+TH\x00\xfe\xf7-\x02\x00\xff\x81\x15\x00\x00\x00\x00\x00\x00\x1d\x00\x00\x00Iv7Oe/YRmR1>\x00mysql_native_password\x00";
/// pgsql2.pcapng, packet 1: SSLRequest.
pub(crate) const PG_SSL_REQUEST: &[u8] = b"\x00\x00\x00\x08\x04\xd2\x16/";
/// A StartupMessage 3.0 for user "app", database "shop" (protocol docs, 55.7).
pub(crate) const PG_STARTUP: &[u8] =
    b"\x00\x00\x00\x20\x00\x03\x00\x00user\x00app\x00database\x00shop\x00\x00";
/// oracle12.pcapng, packet 1: TNS CONNECT, version 315.
pub(crate) const TNS_CONNECT: &[u8] = b"\x00\xd4\x00\x00\x01\x00\x00\x00\x01;\x01,\x0cA \x00\xff\xff\x7f\x08\x00\x00\x01\x00\x00\x8e\x00F\x00\x00\x08\x00AA\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00 \x00\x00 \x00\x00\x00\x00\x00\x00(DESCRIPTION=(CONNECT_DATA=(SID=igor)(CID=(PROGRAM=sqlplus@kali)(HOST=kali)(USER=root)))(ADDRESS=(PROTOCOL=TCP)(HOST=10.0.72.139)(PORT=1521)))";
/// oracle12.pcapng, packet 2: the server's RESEND.
pub(crate) const TNS_RESEND: &[u8] = b"\x00\x08\x00\x00\x0b\x00\x00\x00";
/// A TDS PRELOGIN (MS-TDS 2.2.6.5): VERSION, ENCRYPTION, INSTOPT, THREADID, MARS, end.
pub(crate) const TDS_PRELOGIN: &[u8] = b"\x12\x01\x00\x2f\x00\x00\x01\x00\x00\x00\x1a\x00\x06\x01\x00\x20\x00\x01\x02\x00\x21\x00\x01\x03\x00\x22\x00\x04\x04\x00\x26\x00\x01\xff\x0f\x00\x07\xd0\x00\x00\x00\x00\x00\x00\x00\x00\x00";
/// mssql_tds.pcap, the server's tabular result (a DONE token).
pub(crate) const TDS_RESULT: &[u8] = b"\x04\x01\x00\x22\x005\x01\x00\xfd\x01\x00\xf9\x00\x00\x00\x00\x00\x00\x00\x00\x00\xfd\x00\x00\xba\x00\x00\x00\x00\x00\x00\x00\x00\x00";
/// cassandra.pcap, packet 1: CQL v4 OPTIONS.
pub(crate) const CQL_OPTIONS: &[u8] = b"\x04\x00\x00\x00\x05\x00\x00\x00\x00";
/// cassandra.pcap, packet 2: SUPPORTED.
pub(crate) const CQL_SUPPORTED: &[u8] = b"\x84\x00\x00\x00\x06\x00\x00\x004\x00\x02\x00\x0bCOMPRESSION\x00\x02\x00\x06snappy\x00\x03lz4\x00\x0bCQL_VERSION\x00\x01\x00\x053.3.1";
/// A MongoDB OP_MSG `{ping: 1, $db: "admin"}` (wire protocol docs).
pub(crate) const MONGO_OP_MSG: &[u8] = b"\x33\x00\x00\x00\x01\x00\x00\x00\x00\x00\x00\x00\xdd\x07\x00\x00\x00\x00\x00\x00\x00\x1e\x00\x00\x00\x10ping\x00\x01\x00\x00\x00\x02$db\x00\x06\x00\x00\x00admin\x00\x00";
/// Redis: `PING` as a RESP array (RESP spec).
pub(crate) const REDIS_PING: &[u8] = b"*1\r\n$4\r\nPING\r\n";
/// memcached.cap: the client's `stats`, and the first line of the reply.
pub(crate) const MEMCACHED_STATS: &[u8] = b"stats\r\n";
pub(crate) const MEMCACHED_STAT: &[u8] = b"STAT pid 8837\r\nSTAT uptime 193\r\n";
/// kafka.pcapng, packet 1: ApiVersions v0 from rdkafka.
pub(crate) const KAFKA_API_VERSIONS: &[u8] =
    b"\x00\x00\x00\x15\x00\x12\x00\x00\x00\x00\x00\x81\x00\x07rdkafka\x00\x00\x00\x00";
/// A ZooKeeper ConnectRequest (jute): protocol 0, zxid 0, timeout 30000, session 0,
/// 16-byte zero password, read-only false.
pub(crate) const ZK_CONNECT: &[u8] = b"\x00\x00\x00\x2d\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x75\x30\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x10\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00";
/// AMQP 0-9-1 protocol header.
pub(crate) const AMQP_HEADER: &[u8] = b"AMQP\x00\x00\x09\x01";
/// amqp.pcap, a mid-stream basic.deliver method frame (the start of a packet).
pub(crate) const AMQP_DELIVER: &[u8] = b"\x01\x00\x03\x00\x00\x00)\x00<\x00<\x013\x00\x00\x00\x00\x00\x00av\x00\x08celeryev\x10worker.heartbeat\xce";
/// mqtt.pcap, packet 1: MQTT 3.1 CONNECT.
pub(crate) const MQTT_CONNECT: &[u8] = b"\x10@\x00\x06MQIsdp\x03\xc2\x00\x14\x00\x16cbaabcbabacbbbbbaaaaab\x00\x0c02D5050223D3\x00\x0c02D5050223D3";
/// nats.pcap, the client's CONNECT.
pub(crate) const NATS_CONNECT: &[u8] = b"CONNECT {\x22verbose\x22:false,\x22pedantic\x22:false,\x22tls_required\x22:false,\x22name\x22:\x22\x22,\x22lang\x22:\x22C\x22,\x22version\x22:\x222.1.0\x22,\x22protocol\x22:1,\x22echo\x22:true}\x0d\x0aPING\x0d\x0a";
/// elasticsearch.pcap, packet 1: transport handshake.
pub(crate) const ES_HANDSHAKE: &[u8] = b"ES\x00\x00\x004\x00\x00\x00\x00\x00\x00\x00\x01\x08\x00\x5c\xc6c\x00\x00\x01\x06x-pack\x16internal:tcp/handshake\x00\x04\xcb\xf6\xae\x03";
/// ftp.pcap: vsftpd greeting and the client's USER.
pub(crate) const FTP_GREETING: &[u8] = b"220 (vsFTPd 3.0.3)\r\n";
pub(crate) const FTP_USER: &[u8] = b"USER anonymous\r\n";
/// smtp.pcap: Sendmail greeting and the client's EHLO.
pub(crate) const SMTP_GREETING: &[u8] =
    b"220 pigeon.eyrie.af.mil ESMTP Sendmail 8.8.7/8.8.7; Sat, 7 Aug 1999 12:20:08 -0400\r\n";
pub(crate) const SMTP_EHLO: &[u8] = b"EHLO delta.peach.mil\r\n";
/// imap.pcap: greeting and the client's CAPABILITY.
pub(crate) const IMAP_GREETING: &[u8] = b"* OK IMAP4Rev1 Server Version 4.9.04.012\r\n";
pub(crate) const IMAP_CAPABILITY: &[u8] = b"C00000 CAPABILITY\r\n";
/// pop3.pcap: greeting and the client's user command.
pub(crate) const POP3_GREETING: &[u8] = b"+OK POP server ready H migmxus005\r\n";
pub(crate) const POP3_USER: &[u8] = b"user cicciopernacchio@mail.com\r\n";
/// log4j-webapp-exploit.pcap: LDAP bindRequest (v3, anonymous) and bindResponse.
pub(crate) const LDAP_BIND: &[u8] = b"0\x0c\x02\x01\x01`\x07\x02\x01\x03\x04\x00\x80\x00";
pub(crate) const LDAP_BIND_RESPONSE: &[u8] = b"0\x0c\x02\x01\x01a\x07\x0a\x01\x00\x04\x00\x04\x00";
/// fuzz-2006-06-26-2594.pcap: a SIP REGISTER (headers damaged by the fuzzer).
pub(crate) const SIP_REGISTER: &[u8] = b"REGISTER sip:sip.cybercity.dk SIP/2.0\x0d\x0aVi\x1d: SIP/2.0/UDP 192.168.1.l;branch=z9hG4bKnp151248737-46Za715e192.168.1.2;rport\x0d\x0aFrom: <sip:voi18063@sip.cybercity.dk>;tag=903df0a\x0d\x0a";
pub(crate) const SIP_401: &[u8] =
    b"SIP/2.0 401 Unauthorized\r\nVia: SIP/2.0/UDP 192.168.1.2:5060\r\n\r\n";
/// rtsp.pcap: GET_PARAMETER from VLC.
pub(crate) const RTSP_GET_PARAMETER: &[u8] = b"GET_PARAMETER rtsp://10.2.2.2:8554/ RTSP/1.0\x0d\x0aCSeq: 7\x0d\x0aUser-Agent: LibVLC/3.0.16 (LIVE555 Streaming Media v2016.11.28)\x0d\x0aSession: 660fc4c0c6ad43a1\x0d\x0a\x0d\x0a";
/// syslog.pcap, packet 1 (BSD-style, no timestamp).
pub(crate) const SYSLOG_MSG: &[u8] = b"<134>854 08/20/2013-19:05:23 CONFIG QLA23XX PCIDEV03 DiscLoopId qla23xxStMachRun.cxx 3510\x0a0 Local Port Connection Type= LOOP: loopId=0x7D\x0a\x0a\x00";
/// snmp.pcap, packet 1: v1 GetNextRequest, community "public".
pub(crate) const SNMP_GETNEXT: &[u8] = b"0)\x02\x01\x00\x04\x06public\xa1\x1c\x02\x04Kx\x1an\x02\x01\x00\x02\x01\x000\x0e0\x0c\x06\x08+\x06\x01\x02\x01\x01\x05\x00\x05\x00";
/// tftp.pcap, packet 1: RRQ (empty file name as sent) in octet mode; and a WRQ with options.
pub(crate) const TFTP_RRQ: &[u8] = b"\x00\x01boot.img\x00octet\x00";
pub(crate) const TFTP_WRQ_OPTIONS: &[u8] =
    b"\x00\x02empty100KB\x00octet\x00blksize\x001468\x00tsize\x00100000\x00";
pub(crate) const TFTP_OACK: &[u8] = b"\x00\x06blksize\x001468\x00tsize\x00100000\x00";
/// NTPv3.pcap: a mode 4 (server) reply, 48 bytes.
pub(crate) const NTP_V3_SERVER: &[u8] = b"\x1c\x00\x04\xfa\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\xd9OO\x11\x00\x00\x00\x00\xd9OO\x11\x00\x00\x00\x00";
/// rdp.pcap: X.224 Connection Request and Confirm in TPKT.
pub(crate) const RDP_CR: &[u8] =
    b"\x03\x00\x00\x13\x0e\xe0\x00\x00\x00\x00\x00\x01\x00\x08\x00\x0b\x00\x00\x00";
pub(crate) const RDP_CC: &[u8] =
    b"\x03\x00\x00\x13\x0e\xd0\x00\x00\x124\x00\x02\x1f\x08\x00\x08\x00\x00\x00";
/// telnet.pcap: the client's option negotiation.
pub(crate) const TELNET_NEGOTIATION: &[u8] = b"\xff\xfd\x03\xff\xfb\x18\xff\xfb\x1f\xff\xfb \xff\xfb!\xff\xfb\x22\xff\xfb'\xff\xfd\x05\xff\xfb#";
/// git.pcap: git-upload-pack request.
pub(crate) const GIT_UPLOAD_PACK: &[u8] =
    b"0045git-upload-pack /collab-maint/wotsap.git\x00host=anonscm.debian.org\x00";
/// A RADIUS Access-Request (RFC 2865 section 7.1 example: User-Name "nemo", password,
/// NAS-IP-Address, NAS-Port).
pub(crate) const RADIUS_ACCESS_REQUEST: &[u8] = b"\x01\x00\x00\x38\x0f\x40\x3f\x94\x73\x97\x80\x57\xbd\x83\xd5\xcb\x98\xf4\x22\x7a\x01\x06\x6e\x65\x6d\x6f\x02\x12\x0d\xbe\x70\x8d\x93\xd4\x13\xce\x31\x96\xe4\x3f\x78\x2a\x0a\xee\x04\x06\xc0\xa8\x01\x10\x05\x06\x00\x00\x00\x03";
/// A CoAP GET /temperature (RFC 7252 appendix A, figure 16 style): CON, token 0x71,
/// Uri-Path "temperature".
pub(crate) const COAP_GET: &[u8] =
    b"\x41\x01\x7d\x34\x71\xbb\x74\x65\x6d\x70\x65\x72\x61\x74\x75\x72\x65";
/// Every fixture, for the no-panic loops.
pub(crate) const ALL: &[&[u8]] = &[
    HTTP_GET,
    HTTP_200,
    H2_PREFACE,
    H2_HEADERS_JSON,
    TLS_CLIENT_HELLO,
    TLS_ALERT,
    DNS_QUERY,
    DNS_RESPONSE,
    DNS_NBNS_NAME,
    NBNS_QUERY,
    SSH_BANNER,
    MYSQL_GREETING,
    PG_SSL_REQUEST,
    PG_STARTUP,
    TNS_CONNECT,
    TNS_RESEND,
    TDS_PRELOGIN,
    TDS_RESULT,
    CQL_OPTIONS,
    CQL_SUPPORTED,
    MONGO_OP_MSG,
    REDIS_PING,
    MEMCACHED_STATS,
    MEMCACHED_STAT,
    KAFKA_API_VERSIONS,
    ZK_CONNECT,
    AMQP_HEADER,
    AMQP_DELIVER,
    MQTT_CONNECT,
    NATS_CONNECT,
    ES_HANDSHAKE,
    FTP_GREETING,
    FTP_USER,
    SMTP_GREETING,
    SMTP_EHLO,
    IMAP_GREETING,
    IMAP_CAPABILITY,
    POP3_GREETING,
    POP3_USER,
    LDAP_BIND,
    LDAP_BIND_RESPONSE,
    SIP_REGISTER,
    SIP_401,
    RTSP_GET_PARAMETER,
    SYSLOG_MSG,
    SNMP_GETNEXT,
    TFTP_RRQ,
    TFTP_WRQ_OPTIONS,
    TFTP_OACK,
    NTP_V3_SERVER,
    RDP_CR,
    RDP_CC,
    TELNET_NEGOTIATION,
    GIT_UPLOAD_PACK,
    RADIUS_ACCESS_REQUEST,
    COAP_GET,
];
