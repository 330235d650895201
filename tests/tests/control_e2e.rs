//! `palisade up` end to end (needs root, network namespaces, hugepages, DPDK): the real control
//! process on its own config and data directory supervises a real palisade-dp whose two
//! af_packet ports join two namespaces, and the test drives it through the REST API only.
//!
//! discover: declared workloads, one connection, exactly one learned rule; protect: the
//! learned port works, another is refused and reported (events list and SSE stream); restart
//! on the same data directory: login, groups, rules and workloads are kept and the policy is
//! enforced again once the new dataplane runs.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stderr
)]

use std::io::ErrorKind;
use std::time::{Duration, Instant};

use palisade_tests::up::{Api, PASSWORD, Up, free_port, sse};
use palisade_tests::{Netns, Veth, echo_servers, talk, unique};
use serde_json::{Value, json};

const CLIENT: &str = "198.18.0.1";
const SERVER: &str = "198.18.0.2";

// ---------------------------------------------------------------------------------------
// Traffic.

/// Repeats `talk` until it gives `want` (the policy reaches the dataplane asynchronously).
fn talk_until(ns: &Netns, port: u16, want: Result<(), ErrorKind>, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    let mut got = Vec::new();
    while Instant::now() < deadline {
        let r = talk(ns, SERVER, port);
        if r == want {
            return;
        }
        got.push(r);
        std::thread::sleep(Duration::from_millis(250));
    }
    panic!("port {port}: wanted {want:?} within {timeout:?}, got {got:?}");
}

/// The rules without their ids, sorted, for comparisons.
fn learned_rules(api: &Api) -> Vec<Value> {
    api.items("/v1/rules?limit=1000")
}

#[test]
fn netns_palisade_up_learns_protects_and_keeps_everything_across_a_restart() {
    let ns_c = Netns::new("ctl-c");
    let ns_s = Netns::new("ctl-s");
    let vc = Veth::new(&ns_c, "pcc", &format!("{CLIENT}/24"));
    let vs = Veth::new(&ns_s, "pcs", &format!("{SERVER}/24"));
    let dir = tempfile::Builder::new()
        .prefix("palisade-up-")
        .tempdir()
        .unwrap();
    let addr = free_port();
    std::fs::write(
        dir.path().join("palisade.toml"),
        format!(
            "[api]\nlisten = \"{addr}\"\n\
             [store]\ndata_dir = \"{data}\"\n\
             [plumb]\nenabled = false\n\
             [dataplane]\nlcores = \"0-1\"\nmemory = \"in-memory\"\nidle = \"adaptive\"\nfile_prefix = \"{prefix}\"\n\
             sessions = 4096\nstats_interval_s = 0\nsocket = \"{socket}\"\n\
             [[dataplane.port]]\nname = \"c\"\nkind = \"af_packet\"\niface = \"{c}\"\n\
             [[dataplane.port]]\nname = \"s\"\nkind = \"af_packet\"\niface = \"{s}\"\n\
             [[dataplane.pair]]\nports = [\"c\", \"s\"]\n",
            data = dir.path().join("data").display(),
            prefix = unique("ctl"),
            socket = dir.path().join("dp.sock").display(),
            c = vc.host(),
            s = vs.host(),
        ),
    )
    .unwrap();
    std::fs::create_dir_all(dir.path().join("data")).unwrap();
    echo_servers(&ns_s, SERVER, &[5001, 5002]);

    // ---- discover ------------------------------------------------------------------------
    let started = Instant::now();
    let mut up = Up::start(dir.path(), addr, 1);
    let api = Api::login(addr, PASSWORD);
    api.wait_dataplane_up(0, Duration::from_secs(60));
    eprintln!("palisade up with its dataplane in {:?}", started.elapsed());
    for (id, ip) in [("client", CLIENT), ("server", SERVER)] {
        let w = api.call(
            "POST",
            "/v1/workloads",
            Some(&json!({"id": id, "name": id, "image": id, "ips": [ip]})),
        );
        assert_eq!(w["group"], format!("auto.{id}"));
    }
    for g in ["auto.client", "auto.server"] {
        let v = api.call("GET", &format!("/v1/groups/{g}"), None);
        assert_eq!(v["network_mode"], "discover", "{v}");
    }
    assert_eq!(learned_rules(&api), Vec::<Value>::new());

    // The workloads reach the dataplane asynchronously: connect until a rule is learned.
    let deadline = Instant::now() + Duration::from_secs(20);
    let rules = loop {
        assert_eq!(talk(&ns_c, SERVER, 5001), Ok(()));
        let until = Instant::now() + Duration::from_secs(3);
        let mut rules = learned_rules(&api);
        while rules.is_empty() && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(200));
            rules = learned_rules(&api);
        }
        if !rules.is_empty() {
            break rules;
        }
        assert!(Instant::now() < deadline, "nothing learned in 20 s");
    };
    // Later records of the same conversation learn nothing more.
    std::thread::sleep(Duration::from_millis(2500));
    let rules_now = learned_rules(&api);
    assert_eq!(rules_now, rules);
    assert_eq!(rules.len(), 1, "{rules:#?}");
    let r = &rules[0];
    assert!(r["id"].as_u64().unwrap() >= 10_000, "{r}");
    assert_eq!(
        (
            &r["from"],
            &r["to"],
            &r["ports"],
            &r["action"],
            &r["learned"],
            &r["disabled"],
            &r["priority"]
        ),
        (
            &json!("auto.client"),
            &json!("auto.server"),
            &json!(["tcp/5001"]),
            &json!("allow"),
            &json!(true),
            &json!(false),
            &json!(0)
        ),
        "{r}"
    );
    assert!(
        r["apps"].as_array().is_none_or(Vec::is_empty),
        "an unidentified echo names no application: {r}"
    );

    // ---- protect -------------------------------------------------------------------------
    let stream = sse(addr, &api.token);
    for g in ["auto.server", "auto.client"] {
        let v = api.call(
            "PATCH",
            &format!("/v1/groups/{g}"),
            Some(&json!({"network_mode": "protect"})),
        );
        assert_eq!(v["network_mode"], "protect", "{v}");
    }
    talk_until(
        &ns_c,
        5002,
        Err(ErrorKind::ConnectionRefused),
        Duration::from_secs(20),
    );
    assert_eq!(
        talk(&ns_c, SERVER, 5001),
        Ok(()),
        "the learned rule allows 5001"
    );
    let is_5002 = |e: &Value| {
        e["details"]["server"]["addr"]
            .as_str()
            .or_else(|| e["message"].as_str())
            .is_some_and(|s| s.contains(":5002"))
    };
    let deadline = Instant::now() + Duration::from_secs(15);
    let listed = loop {
        let evs = api.items("/v1/events?kind=network_violation&limit=1000");
        if let Some(e) = evs.iter().find(|e| is_5002(e)) {
            break e.clone();
        }
        assert!(Instant::now() < deadline, "no violation listed: {evs:#?}");
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(listed["kind"], "network_violation");
    assert_eq!(listed["details"]["verdict"], "denied", "{listed}");
    assert_eq!(listed["details"]["mode"], "protect", "{listed}");
    assert!(
        listed["message"]
            .as_str()
            .unwrap()
            .contains("[auto.client] -> 198.18.0.2:5002 [auto.server]"),
        "{listed}"
    );
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut streamed = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let (kind, data) = stream
            .recv_timeout(left)
            .unwrap_or_else(|_| panic!("no violation on the stream; got {streamed:#?}"));
        if kind == "network_violation" && is_5002(&data) {
            assert_eq!(data["details"]["verdict"], "denied");
            break;
        }
        streamed.push((kind, data));
    }
    assert!(
        api.items("/v1/events?kind=network_violation&limit=1000")
            .iter()
            .all(|e| !e["message"].as_str().unwrap_or("").contains(":5001 ")),
        "the allowed port is no violation"
    );
    assert_eq!(learned_rules(&api), rules, "protect learns nothing");
    let workloads = api.items("/v1/workloads");
    let groups = api.items("/v1/groups?limit=1000");

    // ---- restart on the same data directory ----------------------------------------------
    let before = api.last_event_id();
    let st = up.terminate(Duration::from_secs(30));
    assert!(st.success(), "palisade up exit {st}:\n{}", up.log_text());
    assert!(
        up.log_text().contains("palisade-dp"),
        "the log names the dataplane it supervised"
    );
    drop(stream);
    let started = Instant::now();
    let up2 = Up::start(dir.path(), addr, 2);
    let api = Api::login(addr, PASSWORD);
    api.wait_dataplane_up(before, Duration::from_secs(60));
    eprintln!("restarted with its dataplane in {:?}", started.elapsed());
    let groups2 = api.items("/v1/groups?limit=1000");
    for g in ["auto.client", "auto.server"] {
        let v = api.call("GET", &format!("/v1/groups/{g}"), None);
        assert_eq!(v["network_mode"], "protect", "{v}");
    }
    assert_eq!(groups2, groups);
    assert_eq!(learned_rules(&api), rules);
    assert_eq!(api.items("/v1/workloads"), workloads);
    talk_until(
        &ns_c,
        5002,
        Err(ErrorKind::ConnectionRefused),
        Duration::from_secs(30),
    );
    assert_eq!(
        talk(&ns_c, SERVER, 5001),
        Ok(()),
        "the learned rule still allows 5001"
    );
    assert_eq!(talk(&ns_c, SERVER, 5002), Err(ErrorKind::ConnectionRefused));

    drop(up2);
    drop((vc, vs, ns_c, ns_s));
}
