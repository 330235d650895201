//! The command lines of `palisade-dp` and `palisade`: exit codes and messages for good and bad
//! configurations and hosts (the start-up failures need root and DPDK).
#![allow(clippy::unwrap_used, clippy::panic)]

use std::path::Path;
use std::process::{Command, Output};

use palisade_tests::{bin, unique};

fn write(dir: &Path, text: &str) -> std::path::PathBuf {
    let p = dir.join("p.toml");
    std::fs::write(&p, text).unwrap();
    p
}

fn run(name: &str, args: &[&str]) -> Output {
    Command::new(bin(name))
        .args(args)
        .env("RUST_LOG", "warn")
        .output()
        .unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

const PAIR: &str = "[[dataplane.port]]\nname = \"a\"\nkind = \"null\"\n[[dataplane.port]]\nname = \"b\"\nkind = \"null\"\nno_rx = true\n[[dataplane.pair]]\nports = [\"a\", \"b\"]\n";

#[test]
fn dp_check_accepts_a_good_config() {
    let dir = tempfile::tempdir().unwrap();
    let p = write(dir.path(), &format!("[dataplane]\n{PAIR}"));
    let o = run("palisade-dp", &["--check", "--config", p.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(
        String::from_utf8_lossy(&o.stdout),
        format!("{}: ok (2 ports, 1 pairs, 1 worker lcores)\n", p.display())
    );
}

#[test]
fn dp_check_rejects_a_bad_config_with_line_and_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let p = write(
        dir.path(),
        "[dataplane]\n[[dataplane.port]]\nname = \"a\"\nkind = \"e1000\"\n",
    );
    let o = run("palisade-dp", &["--check", "--config", p.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    assert_eq!(
        stderr(&o),
        format!(
            "palisade-dp: error: {}:4:8: unknown port kind `e1000`; expected one of af_packet, af_xdp, memif, virtio_user, vhost, tap, pcap, null, ring\n",
            p.display()
        )
    );
    // Starting (not only checking) a bad config is the same exit 2.
    let o = run("palisade-dp", &["--config", p.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
}

#[test]
fn dp_missing_config_file_is_exit_2() {
    let o = run(
        "palisade-dp",
        &["--check", "--config", "/nonexistent/p.toml"],
    );
    assert_eq!(o.status.code(), Some(2));
    assert_eq!(
        stderr(&o),
        "palisade-dp: error: cannot read /nonexistent/p.toml\n  caused by: No such file or directory (os error 2)\n"
    );
}

#[test]
fn dp_start_with_missing_interface_says_which() {
    let dir = tempfile::tempdir().unwrap();
    let iface = unique("pmiss");
    let p = write(
        dir.path(),
        &format!(
            "[dataplane]\n[[dataplane.port]]\nname = \"a\"\nkind = \"af_packet\"\niface = \"{iface}\"\n[[dataplane.port]]\nname = \"b\"\nkind = \"null\"\n[[dataplane.pair]]\nports = [\"a\", \"b\"]\n"
        ),
    );
    let o = run("palisade-dp", &["--config", p.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(
        stderr(&o),
        format!(
            "palisade-dp: error: port `a`: interface `{iface}` does not exist (create it first, or fix `iface` in [[dataplane.port]])\n"
        )
    );
}

#[test]
fn dp_start_with_too_few_hugepages_says_what_to_do() {
    let dir = tempfile::tempdir().unwrap();
    // 4M mbufs need about 9.5 GiB: more than this machine reserves.
    let p = write(
        dir.path(),
        &format!(
            "[dataplane]\nmbufs = 4000000\nfile_prefix = \"{}\"\n{PAIR}",
            unique("hp")
        ),
    );
    let o = run("palisade-dp", &["--config", p.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    let e = stderr(&o);
    assert!(
        e.starts_with("palisade-dp: error: too few hugepages: about 9"),
        "{e}"
    );
    assert!(e.contains("scripts/setup.sh"), "{e}");
}

#[test]
fn dp_eal_failure_quotes_dpdk_and_hints() {
    let dir = tempfile::tempdir().unwrap();
    let p = write(
        dir.path(),
        &format!(
            "[dataplane]\nfile_prefix = \"{}\"\neal_extra = [\"--no-such-eal-flag\"]\n{PAIR}",
            unique("ef")
        ),
    );
    let o = run("palisade-dp", &["--config", p.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    let e = stderr(&o);
    assert!(
        e.contains("palisade-dp: error: EAL initialisation: Invalid argument (DPDK error 22); an EAL argument is invalid: check `lcores` and `eal_extra`"),
        "{e}"
    );
    assert!(
        e.contains("DPDK said:") && e.contains("Invalid 'command line' arguments"),
        "{e}"
    );
}

#[test]
fn versions() {
    for b in ["palisade-dp", "palisade"] {
        let o = run(b, &["--version"]);
        assert_eq!(o.status.code(), Some(0));
        assert_eq!(
            String::from_utf8_lossy(&o.stdout),
            format!("{b} {}\n", env!("CARGO_PKG_VERSION"))
        );
    }
}

#[test]
fn palisade_check_validates_the_whole_file() {
    let dir = tempfile::tempdir().unwrap();
    let p = write(dir.path(), "[api]\nlisten = \"127.0.0.1:10443\"\n");
    let o = run(
        "palisade",
        &[
            "check",
            "--config",
            p.to_str().unwrap(),
            "--data-dir",
            "/tmp/pal-data",
        ],
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(
        String::from_utf8_lossy(&o.stdout),
        format!(
            "{}: ok (api 127.0.0.1:10443, data /tmp/pal-data, 0 dataplane ports)\n",
            p.display()
        )
    );
    let p = write(dir.path(), "[api]\nlisten = \"0.0.0.0:10443\"\n");
    let o = run("palisade", &["check", "--config", p.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    assert_eq!(
        stderr(&o),
        format!(
            "palisade: error: {}:2:10: the API would listen on 0.0.0.0:10443 without TLS: set `tls_cert` and `tls_key`, or listen on a loopback address\n",
            p.display()
        )
    );
}

#[test]
fn dp_classify_prints_flows_as_text_and_json() {
    let pcap = Path::new(env!("CARGO_MANIFEST_DIR")).join("data/dpi/http-port8081.pcap");
    let o = run(
        "palisade-dp",
        &["classify", pcap.to_str().unwrap(), "--json"],
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 1, "one flow: {out}");
    let v: serde_json::Value = serde_json::from_str(lines[0]).unwrap();
    assert_eq!(v["proto"], "tcp");
    assert_eq!(v["app"], "http");
    assert_eq!(v["server"], "198.18.200.2:8081");
    assert!(v["client"].as_str().unwrap().starts_with("198.18.200.1:"));
    let (p, b) = (v["packets"].as_u64().unwrap(), v["bytes"].as_u64().unwrap());
    assert_eq!(
        p,
        v["client_packets"].as_u64().unwrap() + v["server_packets"].as_u64().unwrap()
    );
    assert!(p >= 8 && b > 500, "{v}");
    // The totals go to stderr as JSON.
    let summary: serde_json::Value = serde_json::from_str(stderr(&o).trim()).unwrap();
    assert_eq!(summary["summary"]["flows"], 1);

    let o = run("palisade-dp", &["classify", pcap.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0));
    let text = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(
        text.contains("198.18.200.2:8081") && text.contains(" http "),
        "{text}"
    );
    assert!(text.trim_end().ends_with("flows 1"), "{text}");
}

#[test]
fn dp_classify_refuses_what_is_not_a_capture() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("x.pcap");
    std::fs::write(&f, b"this is not a capture file at all").unwrap();
    let o = run("palisade-dp", &["classify", f.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).starts_with(&format!(
            "palisade-dp: error: {} is not a pcap or pcapng file",
            f.display()
        )),
        "{}",
        stderr(&o)
    );
}
