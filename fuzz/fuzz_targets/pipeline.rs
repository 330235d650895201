//! Bytes in, verdicts out: a sequence of frames (each prefixed by a 2-byte length) through one
//! pipeline, with time advancing, must never panic and must account for every frame.
#![no_main]

use std::cell::Cell;

use dataplane::conntrack::Timestamp;
use dataplane::pipeline::{Config, Pipeline, Step};
use dataplane::policy::ActivePolicy;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(mut p) = Pipeline::<u32>::new(Config::with_capacity(64)) else { return };
    let mut rest = data;
    let mut id = 0u32;
    let out = Cell::new(0u32);
    let mut held = 0u32;
    let mut now = 1_000_000_000u64;
    while rest.len() >= 2 {
        let len = usize::from(u16::from_le_bytes([rest[0], rest[1]]) & 0x7ff);
        let body = &rest[2..];
        let frame = &body[..len.min(body.len())];
        rest = &body[frame.len()..];
        now += u64::from(id % 7) * 3_000_000_000;
        let bump = || out.set(out.get() + 1);
        match p.process(frame, Timestamp::from_nanos(now), &policy, id, |_, _| bump(), |_| bump()) {
            Step::Done(..) => bump(),
            Step::Held => held += 1,
        }
        p.expire(Timestamp::from_nanos(now), |_| bump());
        id += 1;
    }
    // Everything held is either released, dropped, or still held: never lost or duplicated.
    let out = out.get();
    assert!(out <= id);
    assert!(out + held >= id);
});
