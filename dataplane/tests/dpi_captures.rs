//! Our own captures of real clients against real servers (`tests/data/dpi`, made by
//! `scripts/capture-dpi.sh`): the main flow of each must be identified as `EXPECTED.tsv` says,
//! whatever port it runs on.

use std::path::Path;

use dataplane::classify::classify;

#[test]
fn every_recorded_capture_is_identified() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/data/dpi");
    let expected = std::fs::read_to_string(dir.join("EXPECTED.tsv")).expect("EXPECTED.tsv");
    let mut failures = Vec::new();
    let mut n = 0;
    for line in expected
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
    {
        let mut cols = line.split('\t');
        let (Some(file), Some(app)) = (cols.next(), cols.next()) else {
            continue;
        };
        n += 1;
        let report = classify(&dir.join(file)).unwrap_or_else(|e| panic!("{file}: {e}"));
        assert!(report.damage.is_none(), "{file}: {:?}", report.damage);
        assert!(
            report.malformed.is_empty(),
            "{file}: malformed {:?}",
            report.malformed
        );
        // The main flow is the one with the most packets.
        let main = report
            .flows
            .iter()
            .max_by_key(|f| f.packets)
            .unwrap_or_else(|| panic!("{file}: no flows"));
        println!(
            "{file:<28} {:<6} {} -> {} {}",
            main.proto, main.client, main.server, main.app
        );
        if main.app != app {
            failures.push(format!(
                "{file}: expected {app}, got {} ({} -> {})",
                main.app, main.client, main.server
            ));
        }
    }
    assert!(n >= 20, "EXPECTED.tsv lists only {n} captures");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
