//! Bytes in, parse out: `wire::parse` and every link-type adapter must never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = dataplane::wire::parse(data);
    // The first byte picks a link type for the capture adapters.
    if let Some((&sel, rest)) = data.split_first() {
        let links = [0u32, 1, 9, 12, 101, 108, 113, 228, 229, 276];
        let _ = dataplane::capture::to_packet(links[usize::from(sel) % links.len()], rest);
    }
});
