//! Checks of the host made before the EAL starts, so that the common mistakes (a missing
//! interface, no hugepages, an lcore the machine does not have) get a message that says what to
//! do instead of DPDK's generic failure.
//!
//! The checks take the text of the kernel files they read, so each message is testable
//! without touching the host; [`check_host`] reads the real ones.

use std::path::Path;

use crate::config::{DataplaneConfig, Memory};

/// A host problem that would make the dataplane fail to start.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PreflightError {
    /// A port names a kernel interface that does not exist.
    #[error(
        "port `{port}`: interface `{iface}` does not exist (create it first, or fix `iface` in [[dataplane.port]])"
    )]
    MissingInterface {
        /// Port name.
        port: String,
        /// Missing interface.
        iface: String,
    },
    /// Not enough free hugepage memory for the packet pool and the EAL.
    #[error(
        "too few hugepages: about {needed_mib} MiB needed, {free_mib} MiB free ({free_pages} free of {total_pages} pages of {page_kib} KiB); \
         reserve more (scripts/setup.sh, or `echo 512 > /proc/sys/vm/nr_hugepages`), lower `mbufs`, or set memory = \"no-huge\""
    )]
    TooFewHugepages {
        /// Estimated need.
        needed_mib: u64,
        /// Free hugepage memory.
        free_mib: u64,
        /// `HugePages_Free`.
        free_pages: u64,
        /// `HugePages_Total`.
        total_pages: u64,
        /// `Hugepagesize`.
        page_kib: u64,
    },
    /// No hugetlbfs is mounted.
    #[error(
        "no hugetlbfs is mounted: run scripts/setup.sh or `mount -t hugetlbfs nodev /dev/hugepages`, or set memory = \"no-huge\""
    )]
    NoHugetlbfs,
    /// An lcore's CPU is not an online CPU of this machine.
    #[error(
        "lcore {lcore} runs on CPU {cpu}, which is not an online CPU of this machine (online: {online}); fix `lcores`"
    )]
    LcoreOffline {
        /// Offending lcore.
        lcore: u32,
        /// The CPU it was to run on (the lcore's own number unless mapped with `lcore@cpu`).
        cpu: u32,
        /// The kernel's online CPU list.
        online: String,
    },
}

/// Every check against the real host files.
pub fn check_host(cfg: &DataplaneConfig) -> Result<(), PreflightError> {
    if let Ok(online) = std::fs::read_to_string("/sys/devices/system/cpu/online") {
        check_lcores(cfg, &online)?;
    }
    check_interfaces(cfg, Path::new("/sys/class/net"))?;
    if cfg.memory != Memory::NoHuge {
        let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
        let mounts = std::fs::read_to_string("/proc/mounts").unwrap_or_default();
        check_hugepages(cfg, &meminfo, &mounts)?;
    }
    Ok(())
}

/// Every interface a port needs exists under `net_dir` (normally `/sys/class/net`).
pub fn check_interfaces(cfg: &DataplaneConfig, net_dir: &Path) -> Result<(), PreflightError> {
    for p in &cfg.ports {
        if let Some(iface) = p.kind.required_iface()
            && !net_dir.join(iface).exists()
        {
            return Err(PreflightError::MissingInterface {
                port: p.name.clone(),
                iface: iface.to_owned(),
            });
        }
    }
    Ok(())
}

/// Every configured lcore is in the kernel's online CPU list (`0-1`, `0,2-3`).
pub fn check_lcores(cfg: &DataplaneConfig, online: &str) -> Result<(), PreflightError> {
    let online = online.trim();
    let Ok(cpus) = crate::config::parse_lcores(online) else {
        return Ok(()); // an unreadable list is the EAL's to judge
    };
    match cfg
        .lcores
        .iter()
        .zip(&cfg.cpus)
        .find(|(_, c)| !cpus.contains(c))
    {
        Some((l, c)) => Err(PreflightError::LcoreOffline {
            lcore: *l,
            cpu: *c,
            online: online.to_owned(),
        }),
        None => Ok(()),
    }
}

fn meminfo_value(meminfo: &str, key: &str) -> Option<u64> {
    meminfo.lines().find_map(|l| {
        let rest = l.strip_prefix(key)?.strip_prefix(':')?;
        rest.split_whitespace().next()?.parse().ok()
    })
}

/// Enough free hugepage memory (from `/proc/meminfo`) and a hugetlbfs mount (from
/// `/proc/mounts`) for `cfg`.
pub fn check_hugepages(
    cfg: &DataplaneConfig,
    meminfo: &str,
    mounts: &str,
) -> Result<(), PreflightError> {
    if !mounts
        .lines()
        .any(|l| l.split_whitespace().nth(2) == Some("hugetlbfs"))
    {
        return Err(PreflightError::NoHugetlbfs);
    }
    let total_pages = meminfo_value(meminfo, "HugePages_Total").unwrap_or(0);
    let free_pages = meminfo_value(meminfo, "HugePages_Free").unwrap_or(0);
    let page_kib = meminfo_value(meminfo, "Hugepagesize").unwrap_or(2048);
    let free = free_pages * page_kib * 1024;
    let needed = cfg.hugepage_bytes_needed();
    if free < needed {
        return Err(PreflightError::TooFewHugepages {
            needed_mib: needed.div_ceil(1 << 20),
            free_mib: free >> 20,
            free_pages,
            total_pages,
            page_kib,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::parse;

    fn cfg(extra: &str) -> DataplaneConfig {
        let text = format!(
            "[dataplane]\n{extra}\n[[dataplane.port]]\nname = \"a\"\nkind = \"af_packet\"\niface = \"lo\"\n\
             [[dataplane.port]]\nname = \"b\"\nkind = \"af_packet\"\niface = \"pal-nope0\"\n\
             [[dataplane.pair]]\nports = [\"a\", \"b\"]\n"
        );
        match parse(&text, Path::new("t.toml")) {
            Ok(c) => c,
            Err(e) => panic!("test config must parse: {e}"),
        }
    }

    const MOUNTS: &str = "nodev /dev/hugepages hugetlbfs rw,relatime,pagesize=2M 0 0\n";

    #[test]
    fn missing_interface_names_port_and_iface() {
        let dir = std::env::temp_dir().join(format!("pal-preflight-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("lo")).unwrap();
        let err = check_interfaces(&cfg(""), &dir).unwrap_err();
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(
            err.to_string(),
            "port `b`: interface `pal-nope0` does not exist (create it first, or fix `iface` in [[dataplane.port]])"
        );
    }

    #[test]
    fn too_few_hugepages_says_how_many_and_what_to_do() {
        let meminfo =
            "HugePages_Total:      10\nHugePages_Free:        4\nHugepagesize:       2048 kB\n";
        let err = check_hugepages(&cfg(""), meminfo, MOUNTS).unwrap_err();
        let PreflightError::TooFewHugepages {
            free_mib,
            free_pages,
            total_pages,
            page_kib,
            needed_mib,
        } = err.clone()
        else {
            panic!("wrong error {err:?}");
        };
        assert_eq!(
            (free_mib, free_pages, total_pages, page_kib),
            (8, 4, 10, 2048)
        );
        assert!(needed_mib > 8);
        let msg = err.to_string();
        assert!(msg.starts_with("too few hugepages: about "), "{msg}");
        assert!(
            msg.contains("8 MiB free (4 free of 10 pages of 2048 KiB)"),
            "{msg}"
        );
        assert!(msg.contains("scripts/setup.sh"), "{msg}");
    }

    #[test]
    fn enough_hugepages_pass_and_no_huge_skips_the_check() {
        let meminfo =
            "HugePages_Total:     512\nHugePages_Free:      512\nHugepagesize:       2048 kB\n";
        assert_eq!(check_hugepages(&cfg(""), meminfo, MOUNTS), Ok(()));
        assert_eq!(
            check_hugepages(&cfg(""), meminfo, ""),
            Err(PreflightError::NoHugetlbfs)
        );
    }

    #[test]
    fn offline_lcore_is_named() {
        let c = cfg("lcores = \"0,3\"");
        assert_eq!(
            check_lcores(&c, "0-1\n"),
            Err(PreflightError::LcoreOffline {
                lcore: 3,
                cpu: 3,
                online: "0-1".into()
            })
        );
        assert_eq!(check_lcores(&c, "0-3\n"), Ok(()));
    }

    #[test]
    fn mapped_lcores_are_checked_by_their_cpu() {
        // Three lcores on a two-CPU machine: lcore 2 shares CPU 1.
        assert_eq!(check_lcores(&cfg("lcores = \"0-1,2@1\""), "0-1\n"), Ok(()));
        assert_eq!(
            check_lcores(&cfg("lcores = \"0,1@3\""), "0-1\n"),
            Err(PreflightError::LcoreOffline {
                lcore: 1,
                cpu: 3,
                online: "0-1".into()
            })
        );
    }
}
