//! Replays every input kept under `fuzz/regressions/<target>/` through the code its fuzz
//! target exercises: a crash found once stays fixed.

use std::path::Path;

fn inputs(target: &str) -> Vec<Vec<u8>> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../fuzz/regressions")
        .join(target);
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Vec::new();
    };
    entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| {
            p.is_file()
                && p.file_name()
                    .is_some_and(|n| !n.to_string_lossy().starts_with('.'))
        })
        .filter_map(|p| std::fs::read(p).ok())
        .collect()
}

#[test]
fn parse_regressions_do_not_panic() {
    for data in inputs("parse") {
        let _ = dataplane::wire::parse(&data);
        if let Some((&sel, rest)) = data.split_first() {
            let links = [0u32, 1, 9, 12, 101, 108, 113, 228, 229, 276];
            let _ = dataplane::capture::to_packet(links[usize::from(sel) % links.len()], rest);
        }
    }
}
