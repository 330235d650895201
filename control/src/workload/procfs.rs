//! Container processes from `/proc`: which pids belong to which container, the container's
//! root pid, its start time and network namespace.
//!
//! Pure over a directory: [`scan`] reads `<root>/[0-9]*/{cgroup,stat}` and
//! `<root>/<pid>/ns/net`, so tests point it at a fake tree. Processes come and go while it
//! reads; a pid whose files vanish or cannot be parsed is skipped, never an error.

use super::cgroup::{self, ContainerId};
use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

/// The fields of `/proc/<pid>/stat` discovery needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stat {
    /// Parent pid (field 4).
    pub ppid: u32,
    /// Start time after boot in clock ticks (field 22).
    pub start_time: u64,
}

/// Parses `/proc/<pid>/stat`. The command name (field 2) is in parentheses and may itself
/// contain spaces and parentheses, so the fields are counted from the **last** `)`.
pub fn parse_stat(text: &str) -> Option<Stat> {
    let (_, rest) = text.rsplit_once(')')?;
    // rest: " <state(3)> <ppid(4)> ... <starttime(22)> ..."
    let mut f = rest.split_ascii_whitespace();
    let _state = f.next()?;
    let ppid = f.next()?.parse().ok()?;
    let start_time = f.nth(22 - 5)?.parse().ok()?;
    Some(Stat { ppid, start_time })
}

/// Parses a namespace link target, `net:[4026531840]`.
pub fn parse_ns_link(target: &str, kind: &str) -> Option<u64> {
    target
        .strip_prefix(kind)?
        .strip_prefix(":[")?
        .strip_suffix(']')?
        .parse()
        .ok()
}

/// The network namespace inode of `pid`, from `<root>/<pid>/ns/net`.
pub fn netns_inode(root: &Path, pid: u32) -> Option<u64> {
    let target = fs::read_link(root.join(pid.to_string()).join("ns/net")).ok()?;
    parse_ns_link(target.to_str()?, "net")
}

/// A container found in `/proc`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerProcs {
    /// Its id.
    pub id: ContainerId,
    /// The process whose parent is outside the container (the earliest started if several
    /// are, e.g. after `exec`; then the lowest pid).
    pub root_pid: u32,
    /// The root's start time, clock ticks after boot.
    pub start_time: u64,
    /// Every pid in the container, ascending.
    pub pids: Vec<u32>,
}

/// One process's container and stat, `None` when it is on the host or gone.
fn read_proc(root: &Path, pid: u32) -> Option<(ContainerId, Stat)> {
    let dir = root.join(pid.to_string());
    let id = cgroup::container_id(&fs::read_to_string(dir.join("cgroup")).ok()?)?;
    let stat = parse_stat(&fs::read_to_string(dir.join("stat")).ok()?)?;
    Some((id, stat))
}

/// Every container with at least one process under `root` (normally `/proc`), ordered by id.
/// Fails only when `root` itself cannot be listed.
pub fn scan(root: &Path) -> std::io::Result<Vec<ContainerProcs>> {
    let mut by_id: BTreeMap<ContainerId, Vec<(u32, Stat)>> = BTreeMap::new();
    for entry in fs::read_dir(root)? {
        let Ok(entry) = entry else { continue };
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        if let Some((id, stat)) = read_proc(root, pid) {
            by_id.entry(id).or_default().push((pid, stat));
        }
    }
    Ok(by_id
        .into_iter()
        .filter_map(|(id, mut procs)| {
            procs.sort_by_key(|(pid, _)| *pid);
            let pids: Vec<u32> = procs.iter().map(|(p, _)| *p).collect();
            let (root_pid, stat) = procs
                .iter()
                .filter(|(_, s)| pids.binary_search(&s.ppid).is_err())
                .min_by_key(|(pid, s)| (s.start_time, *pid))?;
            Some(ContainerProcs {
                id,
                root_pid: *root_pid,
                start_time: stat.start_time,
                pids,
            })
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Captured on this test bed (`sleep` in a podman container).
    const SLEEP: &str = "24917 (sleep) S 24906 24917 24917 0 -1 4194560 1145 0 1 0 2 1 0 0 20 0 1 0 \
        1832588 2322432 324 18446744073709551615 4198400 5785993 140731443688336 0 0 0 0 0 0 1 0 0 \
        17 1 0 0 0 0 0 6141704 6178576 774791168 140731443695464 140731443695474 140731443695474 \
        140731443695597 0\n";

    #[test]
    fn stat_fields() {
        assert_eq!(
            parse_stat(SLEEP),
            Some(Stat {
                ppid: 24906,
                start_time: 1832588
            })
        );
    }

    #[test]
    fn stat_with_odd_comm() {
        for comm in ["a b", "x) S 1 2 (y", ")", "((", "tricky) 9 9 9", ""] {
            let text = SLEEP.replacen("(sleep)", &format!("({comm})"), 1);
            assert_eq!(
                parse_stat(&text),
                Some(Stat {
                    ppid: 24906,
                    start_time: 1832588
                }),
                "comm {comm:?}"
            );
        }
    }

    #[test]
    fn stat_malformed() {
        assert_eq!(parse_stat(""), None);
        assert_eq!(parse_stat("1 (x"), None);
        assert_eq!(parse_stat("1 (x) S 1 2 3"), None);
        assert_eq!(parse_stat(&SLEEP.replace("24906", "-")), None);
    }

    #[test]
    fn ns_links() {
        assert_eq!(parse_ns_link("net:[4026532392]", "net"), Some(4026532392));
        assert_eq!(parse_ns_link("mnt:[4026532392]", "net"), None);
        assert_eq!(parse_ns_link("net:[x]", "net"), None);
        assert_eq!(parse_ns_link("net:4026532392", "net"), None);
    }
}
