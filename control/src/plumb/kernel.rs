//! The kernel side of the plumbing: veths, bridge membership, tc mirrors and offloads,
//! through iproute2 (`ip`, `tc`), `ethtool` and `nsenter`.
//!
//! Why commands and not a netlink crate: no netlink crate is in the lockfile, discovery
//! already relies on iproute2's JSON (see [`crate::workload::netns`]), and tc's u32 + mirred
//! encoding is long and easy to get subtly wrong by hand; iproute2 is the reference encoder
//! and is installed wherever Palisade runs (`scripts/setup.sh`). Each operation is a few
//! milliseconds, which is far inside the plumbing's budgets (a mode switch waits for a
//! dataplane acknowledgement anyway; fail-open has one second).
//!
//! Everything Palisade creates is recognisable after a crash: tc filters carry the preference
//! [`FILTER_PREF`] and mirror to the tap veth, inline veths carry the alias
//! `palisade-inline <tap> <veth> <bridge>` (on the bridge side), and the tap veth has the
//! configured name. The tap name tells one Palisade's objects from another's (tests run
//! several on one host), so a sweep only ever removes its own.

use std::process::{Command, Stdio};

/// tc preference (priority) of Palisade's mirror filters: a fixed number so that they are
/// found and deleted exactly, whatever else is attached to the same hook.
pub const FILTER_PREF: u16 = 49_231;

/// Alias prefix of the bridge-side veth of an inline workload.
pub const INLINE_ALIAS: &str = "palisade-inline";

/// A failed command.
#[derive(Debug, Clone, thiserror::Error)]
#[error("`{command}` failed: {message}")]
pub struct KernelError {
    /// The command line.
    pub command: String,
    /// Its standard error (or why it could not run).
    pub message: String,
}

/// Runs a command; its stdout on success.
pub(crate) fn run(args: &[&str]) -> Result<String, KernelError> {
    let Some((prog, rest)) = args.split_first() else {
        return Ok(String::new());
    };
    let command = args.join(" ");
    let out = Command::new(prog)
        .args(rest)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| KernelError {
            command: command.clone(),
            message: e.to_string(),
        })?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(KernelError {
            command,
            message: format!(
                "{}: {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ),
        })
    }
}

/// An inline set-up found on the host (after a crash, or to undo).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FoundInline {
    /// The bridge-side veth (carries the alias).
    pub bridge_side: String,
    /// The workload's host veth.
    pub veth: String,
    /// The bridge it came from.
    pub bridge: String,
}

/// What the plumbing asks of the kernel; [`Iproute2`] is the real one, tests use a fake.
pub trait Kernel: std::fmt::Debug + Send + Sync + 'static {
    /// Creates the tap veth pair `tap` <-> `tap-dp` (both up, IPv6 off, offloads off) unless
    /// it exists.
    fn ensure_tap(&self, tap: &str) -> Result<(), KernelError>;
    /// Deletes a link (and its veth peer) if it exists.
    fn delete_link(&self, name: &str) -> Result<(), KernelError>;
    /// Mirrors every frame in and out of `veth` to `tap` (replacing Palisade's filters).
    fn mirror(&self, veth: &str, tap: &str) -> Result<(), KernelError>;
    /// Removes Palisade's mirror filters from `veth` (and its clsact qdisc when nothing else
    /// uses it); a missing `veth` is no error.
    fn unmirror(&self, veth: &str) -> Result<(), KernelError>;
    /// Whether `veth` carries a Palisade mirror filter to `tap`.
    fn mirrored(&self, veth: &str, tap: &str) -> bool;
    /// Turns checksum and segmentation offloads off on `veth` and, inside the network
    /// namespace of `pid`, on `inner` (so that frames are wire-sized with real checksums:
    /// `af_packet` hands the dataplane what the kernel has, super-packets included).
    fn offloads_off(&self, veth: &str, pid: u32, inner: &str) -> Result<(), KernelError>;
    /// Creates the veth pair `dp_side` <-> `bridge_side` (the latter in `bridge`, aliased
    /// with `tap` as the owner), with `veth`'s MTU, then takes `veth` out of `bridge`.
    fn inline(
        &self,
        tap: &str,
        veth: &str,
        bridge: &str,
        dp_side: &str,
        bridge_side: &str,
    ) -> Result<(), KernelError>;
    /// Puts `veth` back into `bridge` (when it still exists) and deletes `dp_side`.
    fn restore(&self, veth: &str, bridge: &str, dp_side: &str) -> Result<(), KernelError>;
    /// Inline set-ups of the Palisade owning `tap` present on the host.
    fn found_inline(&self, tap: &str) -> Vec<FoundInline>;
    /// Host veths carrying a Palisade mirror filter to `tap`.
    fn found_mirrors(&self, tap: &str) -> Vec<String>;
    /// Whether a link exists.
    fn exists(&self, name: &str) -> bool;
}

/// The real kernel, through iproute2, ethtool and nsenter.
#[derive(Debug, Clone, Copy, Default)]
pub struct Iproute2;

fn ipv6_off(name: &str) {
    // Best effort: without IPv6 the kernel sends no router solicitations or MLD reports of
    // its own through the dataplane's ports.
    let _ = std::fs::write(format!("/proc/sys/net/ipv6/conf/{name}/disable_ipv6"), "1");
}

fn host_offloads_off(name: &str) -> Result<(), KernelError> {
    run(&[
        "ethtool", "-K", name, "tx", "off", "tso", "off", "gso", "off", "gro", "off",
    ])
    .map(drop)
}

/// `ip -j link show` rows, as far as the plumbing reads them.
#[derive(Debug, serde::Deserialize)]
struct LinkRow {
    ifname: String,
    #[serde(default)]
    ifalias: Option<String>,
    #[serde(default)]
    linkinfo: Option<LinkInfo>,
}

#[derive(Debug, serde::Deserialize)]
struct LinkInfo {
    #[serde(default)]
    info_kind: Option<String>,
}

fn links() -> Vec<LinkRow> {
    run(&["ip", "-d", "-j", "link", "show"])
        .ok()
        .and_then(|s| serde_json::from_str(&s).ok())
        .unwrap_or_default()
}

/// The inline alias of a link owned by `tap`, parsed: `(veth, bridge)`.
pub fn parse_alias(alias: &str, tap: &str) -> Option<(String, String)> {
    let mut it = alias.split_whitespace();
    if it.next()? != INLINE_ALIAS || it.next()? != tap {
        return None;
    }
    let veth = it.next()?;
    let bridge = it.next()?;
    if it.next().is_some()
        || !crate::config::valid_ifname(veth)
        || !crate::config::valid_ifname(bridge)
    {
        return None;
    }
    Some((veth.to_owned(), bridge.to_owned()))
}

impl Kernel for Iproute2 {
    fn ensure_tap(&self, tap: &str) -> Result<(), KernelError> {
        let peer = format!("{tap}-dp");
        if !self.exists(tap) || !self.exists(&peer) {
            let _ = self.delete_link(tap);
            let _ = self.delete_link(&peer);
            run(&[
                "ip", "link", "add", tap, "type", "veth", "peer", "name", &peer,
            ])?;
        }
        for n in [tap, peer.as_str()] {
            ipv6_off(n);
            host_offloads_off(n)?;
            run(&["ip", "link", "set", n, "up"])?;
        }
        Ok(())
    }

    fn delete_link(&self, name: &str) -> Result<(), KernelError> {
        if !self.exists(name) {
            return Ok(());
        }
        run(&["ip", "link", "del", name]).map(drop)
    }

    fn mirror(&self, veth: &str, tap: &str) -> Result<(), KernelError> {
        // An existing clsact qdisc is fine ("File exists").
        if let Err(e) = run(&["tc", "qdisc", "add", "dev", veth, "clsact"])
            && !e.message.contains("File exists")
        {
            return Err(e);
        }
        let pref = FILTER_PREF.to_string();
        for hook in ["ingress", "egress"] {
            let _ = run(&["tc", "filter", "del", "dev", veth, hook, "pref", &pref]);
            // `u32 match u32 0 0` is "every frame" (flower and matchall are not in every
            // kernel; see ENVIRONMENT.md).
            run(&[
                "tc", "filter", "add", "dev", veth, hook, "pref", &pref, "protocol", "all", "u32",
                "match", "u32", "0", "0", "action", "mirred", "egress", "mirror", "dev", tap,
            ])?;
        }
        Ok(())
    }

    fn unmirror(&self, veth: &str) -> Result<(), KernelError> {
        if !self.exists(veth) {
            return Ok(());
        }
        let pref = FILTER_PREF.to_string();
        let mut others = false;
        for hook in ["ingress", "egress"] {
            let _ = run(&["tc", "filter", "del", "dev", veth, hook, "pref", &pref]);
            others |= run(&["tc", "filter", "show", "dev", veth, hook])
                .map(|s| !s.trim().is_empty())
                .unwrap_or(true);
        }
        if !others {
            let _ = run(&["tc", "qdisc", "del", "dev", veth, "clsact"]);
        }
        Ok(())
    }

    fn mirrored(&self, veth: &str, tap: &str) -> bool {
        let pref = FILTER_PREF.to_string();
        let target = format!("to device {tap})");
        ["ingress", "egress"].iter().any(|hook| {
            run(&["tc", "filter", "show", "dev", veth, hook, "pref", &pref])
                .is_ok_and(|s| s.contains(&target))
        })
    }

    fn offloads_off(&self, veth: &str, pid: u32, inner: &str) -> Result<(), KernelError> {
        host_offloads_off(veth)?;
        let ns = format!("--net=/proc/{pid}/ns/net");
        run(&[
            "nsenter", &ns, "ethtool", "-K", inner, "tx", "off", "tso", "off", "gso", "off", "gro",
            "off",
        ])
        .map(drop)
    }

    fn inline(
        &self,
        tap: &str,
        veth: &str,
        bridge: &str,
        dp_side: &str,
        bridge_side: &str,
    ) -> Result<(), KernelError> {
        let mtu = std::fs::read_to_string(format!("/sys/class/net/{veth}/mtu"))
            .ok()
            .and_then(|s| s.trim().parse::<u32>().ok())
            .unwrap_or(1500)
            .to_string();
        let _ = self.delete_link(dp_side);
        run(&[
            "ip",
            "link",
            "add",
            dp_side,
            "mtu",
            &mtu,
            "type",
            "veth",
            "peer",
            "name",
            bridge_side,
            "mtu",
            &mtu,
        ])?;
        let alias = format!("{INLINE_ALIAS} {tap} {veth} {bridge}");
        let setup = (|| {
            run(&["ip", "link", "set", bridge_side, "alias", &alias])?;
            for n in [dp_side, bridge_side] {
                ipv6_off(n);
                host_offloads_off(n)?;
            }
            run(&["ip", "link", "set", dp_side, "up"])?;
            run(&["ip", "link", "set", bridge_side, "master", bridge, "up"])?;
            run(&["ip", "link", "set", veth, "nomaster"]).map(drop)
        })();
        if let Err(e) = setup {
            let _ = run(&["ip", "link", "set", veth, "master", bridge]);
            let _ = self.delete_link(dp_side);
            return Err(e);
        }
        Ok(())
    }

    fn restore(&self, veth: &str, bridge: &str, dp_side: &str) -> Result<(), KernelError> {
        let back = if self.exists(veth) {
            run(&["ip", "link", "set", veth, "master", bridge]).map(drop)
        } else {
            Ok(())
        };
        self.delete_link(dp_side)?;
        back
    }

    fn found_inline(&self, tap: &str) -> Vec<FoundInline> {
        links()
            .into_iter()
            .filter_map(|l| {
                let (veth, bridge) = parse_alias(l.ifalias.as_deref()?, tap)?;
                Some(FoundInline {
                    bridge_side: l.ifname,
                    veth,
                    bridge,
                })
            })
            .collect()
    }

    fn found_mirrors(&self, tap: &str) -> Vec<String> {
        links()
            .into_iter()
            .filter(|l| {
                l.linkinfo
                    .as_ref()
                    .and_then(|i| i.info_kind.as_deref())
                    .is_some_and(|k| k == "veth")
            })
            .filter(|l| self.mirrored(&l.ifname, tap))
            .map(|l| l.ifname)
            .collect()
    }

    fn exists(&self, name: &str) -> bool {
        crate::config::valid_ifname(name)
            && std::path::Path::new("/sys/class/net").join(name).exists()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alias_round_trip_and_garbage() {
        assert_eq!(
            parse_alias("palisade-inline pal-tap veth3 podman1", "pal-tap"),
            Some(("veth3".into(), "podman1".into()))
        );
        assert_eq!(
            parse_alias("palisade-inline other veth3 podman1", "pal-tap"),
            None,
            "another Palisade's"
        );
        assert_eq!(
            parse_alias("palisade-inline pal-tap veth3", "pal-tap"),
            None
        );
        assert_eq!(
            parse_alias("palisade-inline pal-tap veth3 podman1 x", "pal-tap"),
            None
        );
        assert_eq!(parse_alias("something else", "pal-tap"), None);
        assert_eq!(
            parse_alias("palisade-inline pal-tap ../x podman1", "pal-tap"),
            None
        );
        assert_eq!(parse_alias("", "pal-tap"), None);
    }
}
