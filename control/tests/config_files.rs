//! Every file shipped under `config/` parses, for `palisade` (the whole file) and, where it
//! has a [dataplane] section, for `palisade-dp`.
#![allow(clippy::unwrap_used, clippy::panic)]

use std::path::{Path, PathBuf};

fn toml_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            toml_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "toml") {
            out.push(p);
        }
    }
}

#[test]
fn every_shipped_config_parses() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../config");
    let mut files = Vec::new();
    toml_files(&root, &mut files);
    assert!(files.len() >= 3, "found {files:?}");
    for f in &files {
        let c = control::config::load(f).unwrap_or_else(|e| panic!("{e}"));
        let text = std::fs::read_to_string(f).unwrap();
        if text.contains("[dataplane]") {
            let d = dataplane::config::load(f).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(d, c.dataplane, "{}", f.display());
        }
    }
}

#[test]
fn documented_defaults_are_the_defaults() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/palisade.toml");
    let documented = control::config::load(&root).unwrap();
    let implicit = control::config::parse("", Path::new("empty.toml")).unwrap();
    assert_eq!(
        documented, implicit,
        "config/palisade.toml and the code disagree on a default"
    );
}
