//! Test helpers shared by the detector tests: packets, whole-flow classification, and a
//! small deterministic PRNG for the no-panic loops.

use super::{App, Dir, Flow, Hit, Pkt, Progress, State, Transport};

/// Ports used when a test does not care: ephemeral client, an unassigned server port, so
/// that no port tie-break applies.
pub(crate) const CLIENT_PORT: u16 = 40000;
pub(crate) const NEUTRAL_PORT: u16 = 40001;

pub(crate) fn pkt(
    transport: Transport,
    dir: Dir,
    nth: u8,
    server_port: u16,
    data: &[u8],
) -> Pkt<'_> {
    Pkt {
        data,
        dir,
        transport,
        nth,
        client_port: CLIENT_PORT,
        server_port,
        weak: 0,
    }
}

/// First client-to-server TCP payload on a neutral port.
pub(crate) fn tcp_c2s(data: &[u8]) -> Pkt<'_> {
    pkt(Transport::Tcp, Dir::ClientToServer, 0, NEUTRAL_PORT, data)
}

/// First server-to-client TCP payload on a neutral port.
pub(crate) fn tcp_s2c(data: &[u8]) -> Pkt<'_> {
    pkt(Transport::Tcp, Dir::ServerToClient, 0, NEUTRAL_PORT, data)
}

/// First client-to-server UDP payload on a neutral port.
pub(crate) fn udp_c2s(data: &[u8]) -> Pkt<'_> {
    pkt(Transport::Udp, Dir::ClientToServer, 0, NEUTRAL_PORT, data)
}

/// First server-to-client UDP payload on a neutral port.
pub(crate) fn udp_s2c(data: &[u8]) -> Pkt<'_> {
    pkt(Transport::Udp, Dir::ServerToClient, 0, NEUTRAL_PORT, data)
}

/// Feeds `packets` in order through a fresh [`State`]; returns the app and the last
/// progress.
pub(crate) fn classify(
    transport: Transport,
    server_port: u16,
    packets: &[(Dir, &[u8])],
) -> (App, Progress) {
    let flow = Flow {
        transport,
        client_port: CLIENT_PORT,
        server_port,
    };
    let mut st = State::default();
    let mut last = Progress::Continue;
    for (dir, data) in packets {
        last = st.inspect(&flow, *dir, data);
        if st.done() {
            break;
        }
    }
    (st.app(), last)
}

pub(crate) const C2S: Dir = Dir::ClientToServer;
pub(crate) const S2C: Dir = Dir::ServerToClient;

/// Strong hit for `app`.
pub(crate) fn strong(app: App) -> Hit {
    Hit::Strong(app)
}

/// xorshift64*: deterministic bytes for the no-panic loops.
pub(crate) struct Rng(u64);

impl Rng {
    pub(crate) fn new(seed: u64) -> Rng {
        Rng(seed | 1)
    }
    pub(crate) fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    pub(crate) fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
    pub(crate) fn fill(&mut self, buf: &mut [u8]) {
        for b in buf {
            *b = self.next() as u8;
        }
    }
}

/// Runs `detect` over every prefix of `seed`, over copies of `seed` with bytes changed at
/// random, and over random buffers: it must return without panicking. Returns how many
/// inputs were tried.
pub(crate) fn no_panic(detect: fn(&Pkt<'_>) -> Hit, seed: &[u8]) -> usize {
    let mut rng = Rng::new(seed.len() as u64 ^ 0x9e37_79b9_7f4a_7c15);
    let mut tried = 0;
    let run = |data: &[u8], rng: &mut Rng| {
        for transport in [Transport::Tcp, Transport::Udp] {
            for dir in [Dir::ClientToServer, Dir::ServerToClient] {
                let p = pkt(transport, dir, (rng.next() % 3) as u8, NEUTRAL_PORT, data);
                let _ = detect(&p);
            }
        }
    };
    for n in 0..=seed.len() {
        run(&seed[..n], &mut rng);
        tried += 1;
    }
    let mut buf = seed.to_vec();
    for _ in 0..300 {
        buf.copy_from_slice(seed);
        for _ in 0..1 + rng.below(4) {
            let i = rng.below(buf.len());
            if let Some(b) = buf.get_mut(i) {
                *b = rng.next() as u8;
            }
        }
        let cut = rng.below(buf.len() + 1);
        run(&buf[..cut], &mut rng);
        tried += 1;
    }
    let mut junk = [0u8; 96];
    for _ in 0..300 {
        rng.fill(&mut junk);
        let n = rng.below(junk.len() + 1);
        run(&junk[..n], &mut rng);
        tried += 1;
    }
    tried
}
