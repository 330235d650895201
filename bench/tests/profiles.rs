//! The Pktgen-DPDK and TRex profiles in `bench/profiles/` against the harness's flow set: the
//! constants between their `palisade:flowspec begin` and `end` markers are read here and must
//! describe [`NDR_FLOWS`] at the harness's frame size, so a change on either side fails this
//! test. Also pins the parts of `flows.rs`'s mapping the profiles reimplement (class counts,
//! which slots are allowed at 50%) and the IMIX cycle the TRex profile copies. Reads files
//! only: no Lua, Python, network or DPDK.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::HashMap;
use std::path::Path;

use bench::pktgen::flows::{Class, FlowSet, FlowSpec, NDR_FLOWS, PPM};
use bench::pktgen::packet::FCS_LEN;
use bench::pktgen::sizes::{IMIX_CYCLE, MIN_SIZE};

/// `NAME = value` lines between the markers (`local ` and trailing comments dropped, quotes
/// kept so strings and numbers stay apart).
fn constants(rel: &str, comment: &str) -> HashMap<String, String> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(rel);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{rel}: {e}"));
    let begin = text
        .find("palisade:flowspec begin")
        .unwrap_or_else(|| panic!("{rel}: no `palisade:flowspec begin` marker"));
    let end = text
        .find("palisade:flowspec end")
        .unwrap_or_else(|| panic!("{rel}: no `palisade:flowspec end` marker"));
    let block = &text[begin..end];
    let mut out = HashMap::new();
    for line in block.lines().skip(1) {
        let line = line.split(comment).next().unwrap_or("").trim();
        let line = line.strip_prefix("local ").unwrap_or(line);
        let Some((k, v)) = line.split_once('=') else {
            continue;
        };
        let previous = out.insert(k.trim().to_string(), v.trim().to_string());
        assert!(previous.is_none(), "{rel}: {} set twice", k.trim());
    }
    out
}

fn get<'a>(c: &'a HashMap<String, String>, rel: &str, key: &str) -> &'a str {
    c.get(key)
        .unwrap_or_else(|| panic!("{rel}: no {key} in the flowspec block"))
}

fn string(c: &HashMap<String, String>, rel: &str, key: &str) -> String {
    let v = get(c, rel, key);
    v.strip_prefix('"')
        .and_then(|v| v.strip_suffix('"'))
        .unwrap_or_else(|| panic!("{rel}: {key} = {v} is not a quoted string"))
        .to_string()
}

fn number(c: &HashMap<String, String>, rel: &str, key: &str) -> u64 {
    let v = get(c, rel, key);
    v.parse()
        .unwrap_or_else(|_| panic!("{rel}: {key} = {v} is not a whole number"))
}

/// The `--flows` spec a profile's constants stand for, in `palisade-pktgen`'s syntax (the
/// README's mapping table).
fn spec_of(c: &HashMap<String, String>, rel: &str, src: &str, dst: &str) -> FlowSpec {
    let s = format!(
        "count={},proto={},src={},dst={},sport={}-{},dport={},deny-dport={},allowed={}%",
        number(c, rel, "FLOWS"),
        string(c, rel, "PROTO"),
        string(c, rel, src),
        string(c, rel, dst),
        number(c, rel, "SPORT_FIRST"),
        number(c, rel, "SPORT_LAST"),
        number(c, rel, "DPORT"),
        number(c, rel, "DENY_DPORT"),
        number(c, rel, "ALLOWED_PERCENT"),
    );
    s.parse()
        .unwrap_or_else(|e| panic!("{rel}: its constants make `{s}`: {e}"))
}

/// The harness's flow set with everything `FlowSpec` leaves to its defaults spelt out.
fn harness() -> FlowSpec {
    NDR_FLOWS.parse().unwrap()
}

/// What a profile cannot express either way: the permutation seed and rotation.
fn without_seed_and_rotation(mut s: FlowSpec) -> FlowSpec {
    s.seed = 0;
    s.new_per_sec = 0;
    s
}

#[test]
fn pktgen_lua_describes_the_harness_flow_set() {
    let rel = "profiles/pktgen/palisade.lua";
    let c = constants(rel, "--");
    let spec = spec_of(&c, rel, "SRC_IP", "DST_IP");
    assert_eq!(spec, without_seed_and_rotation(harness()), "{rel}");
    assert_eq!(number(&c, rel, "FRAME_SIZE"), u64::from(MIN_SIZE), "{rel}");
    // Range mode varies the source port only: the flows must fit the port range.
    assert!(spec.sport.len() >= spec.count, "{rel}");
    FlowSet::new(spec).unwrap();
}

#[test]
fn trex_py_describes_the_harness_flow_set() {
    let rel = "profiles/trex/palisade.py";
    let c = constants(rel, "#");
    let spec = spec_of(&c, rel, "SRC_IP", "DST_IP");
    assert_eq!(spec, without_seed_and_rotation(harness()), "{rel}");
    assert_eq!(number(&c, rel, "FRAME_SIZE"), u64::from(MIN_SIZE), "{rel}");
    assert_eq!(number(&c, rel, "FCS_LEN"), FCS_LEN as u64, "{rel}");
    let imix: Vec<u16> = get(&c, rel, "IMIX_CYCLE")
        .trim_start_matches('[')
        .trim_end_matches(']')
        .split(',')
        .map(|s| s.trim().parse().unwrap())
        .collect();
    assert_eq!(imix, IMIX_CYCLE, "{rel}: IMIX_CYCLE");
    // `--ipv6`: the same set between the IPv6 defaults, one version on both sides.
    let v6 = spec_of(&c, rel, "SRC_IP6", "DST_IP6");
    let set = FlowSet::new(v6).unwrap();
    assert!(set.is_v6());
    assert_eq!(set.len(), harness().count);
}

#[test]
fn both_profiles_agree() {
    let lua = constants("profiles/pktgen/palisade.lua", "--");
    let py = constants("profiles/trex/palisade.py", "#");
    for key in [
        "FLOWS",
        "PROTO",
        "SRC_IP",
        "DST_IP",
        "SPORT_FIRST",
        "SPORT_LAST",
        "DPORT",
        "DENY_DPORT",
        "ALLOWED_PERCENT",
        "FRAME_SIZE",
    ] {
        assert_eq!(lua.get(key), py.get(key), "{key}");
    }
}

/// `class_counts` in the TRex profile: `floor(count * share)` allowed, the rest denied.
#[test]
fn class_counts_the_trex_profile_reimplements() {
    for (count, percent) in [(10_000u32, 100u32), (10_000, 80), (7, 50), (3, 33), (10, 0)] {
        let spec: FlowSpec = format!("count={count},allowed={percent}%").parse().unwrap();
        let set = FlowSet::new(spec).unwrap();
        let ppm = u64::from(percent) * 10_000;
        let allowed = u64::from(count) * ppm / u64::from(PPM);
        assert_eq!(
            u64::from(set.allowed_count()),
            allowed,
            "{count} at {percent}%"
        );
    }
}

/// The Lua profile's 50% mode: the destination port alternates denied, allowed, ... with the
/// source port, which is palisade-pktgen's class pattern at `allowed=50%` (odd slots allowed).
#[test]
fn half_allowed_alternates_starting_with_a_denied_slot() {
    let set = FlowSet::new("count=10000,allowed=50%".parse().unwrap()).unwrap();
    for slot in 0..10_000 {
        let want = if slot % 2 == 1 {
            Class::Allowed
        } else {
            Class::Denied
        };
        assert_eq!(set.class(slot), want, "slot {slot}");
    }
}
