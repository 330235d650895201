//! Which rule an access to a file falls under, and what that means.
//!
//! Two kinds of rule, by behavior:
//! - **monitor** rules (and the built-in defaults) watch *changes*: a write by a program not
//!   in the rule's `apps` is reported (learned in discover);
//! - **block** rules watch *every open*: an open by a program not in `apps` is denied in
//!   protect (`EPERM`), reported in monitor, learned in discover.
//!
//! A rule matches a path when its filter (an absolute path or a glob, `*` not crossing `/`)
//! matches the path or, for a recursive rule, any directory above it. The group's own rules
//! are consulted first; the defaults only for paths no group rule matches.

use glob::{MatchOptions, Pattern};

use crate::fanotify::Access;
use crate::model::{FileBehavior, FileRule};

/// The defaults every container gets, monitor only: (filter, recursive).
pub const DEFAULTS: &[(&str, bool)] = &[
    ("/etc/passwd", false),
    ("/etc/shadow", false),
    ("/etc/group", false),
    ("/etc/hosts", false),
    ("/etc/resolv.conf", false),
    ("/etc/sudoers", false),
    ("/root/.ssh/*", false),
    ("/home/*/.ssh/*", false),
    ("/var/lib/dpkg/status", false),
    ("/lib/apk/db/installed", false),
    ("/var/lib/rpm/*", false),
    ("/bin", true),
    ("/sbin", true),
    ("/usr/bin", true),
    ("/usr/sbin", true),
    ("/usr/local/bin", true),
    ("/lib*", true),
];

/// The defaults as rules.
pub fn defaults() -> Vec<FileRule> {
    DEFAULTS
        .iter()
        .map(|(filter, recursive)| FileRule {
            filter: (*filter).to_owned(),
            recursive: *recursive,
            behavior: FileBehavior::Monitor,
            apps: Vec::new(),
            learned: false,
        })
        .collect()
}

const OPTIONS: MatchOptions = MatchOptions {
    case_sensitive: true,
    require_literal_separator: true,
    require_literal_leading_dot: false,
};

/// A rule with its filter compiled.
#[derive(Debug, Clone)]
pub struct Compiled {
    /// The rule.
    pub rule: FileRule,
    /// Its filter; `None` if it is not a valid glob (then it matches the literal path only).
    pattern: Option<Pattern>,
}

impl Compiled {
    /// Compiles `rule`.
    pub fn new(rule: FileRule) -> Self {
        let pattern = Pattern::new(&rule.filter).ok();
        Self { rule, pattern }
    }

    fn matches_one(&self, path: &str) -> bool {
        match &self.pattern {
            Some(p) => p.matches_with(path, OPTIONS),
            None => path == self.rule.filter,
        }
    }

    /// Whether the rule covers `path`.
    pub fn matches(&self, path: &str) -> bool {
        if self.matches_one(path) {
            return true;
        }
        self.rule.recursive
            && std::path::Path::new(path)
                .ancestors()
                .skip(1)
                .filter_map(|a| a.to_str())
                .any(|a| a != "/" && !a.is_empty() && self.matches_one(a))
    }

    /// Whether `name` (the program's name) or `exe` (its executable) is one of the apps.
    pub fn allows(&self, name: Option<&str>, exe: Option<&str>) -> bool {
        self.rule
            .apps
            .iter()
            .any(|a| Some(a.as_str()) == name || Some(a.as_str()) == exe)
    }
}

/// A group's rules and the defaults, compiled.
#[derive(Debug, Clone, Default)]
pub struct RuleSet {
    /// The group's rules.
    pub group: Vec<Compiled>,
    /// The defaults.
    pub defaults: Vec<Compiled>,
}

/// What an access amounts to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Judgement {
    /// No rule watches this kind of access to this file.
    Unwatched,
    /// Watched, and the program is allowed.
    Allowed,
    /// Watched and not allowed: the rule (its filter, behavior, whether a default).
    Violation {
        /// The rule's filter.
        filter: String,
        /// Whether it is recursive.
        recursive: bool,
        /// Monitor or block.
        behavior: FileBehavior,
        /// One of the defaults (the group has no rule for the path).
        default: bool,
    },
}

/// What the kernel may stop reporting for a file (ignore marks).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Watch {
    /// Nothing watches the file: no more events at all.
    Nothing,
    /// Only changes: no more open events.
    Changes,
    /// Opens and changes.
    Everything,
}

impl RuleSet {
    /// Compiles the group's rules, with the defaults.
    pub fn new(group: &[FileRule]) -> Self {
        Self {
            group: group.iter().cloned().map(Compiled::new).collect(),
            defaults: defaults().into_iter().map(Compiled::new).collect(),
        }
    }

    /// The rules that apply to `path`: the group's matching ones, else the matching defaults.
    fn applicable(&self, path: &str) -> (Vec<&Compiled>, bool) {
        let own: Vec<&Compiled> = self.group.iter().filter(|r| r.matches(path)).collect();
        if !own.is_empty() {
            return (own, false);
        }
        (
            self.defaults.iter().filter(|r| r.matches(path)).collect(),
            true,
        )
    }

    /// What watches `path` at all.
    pub fn watch(&self, path: &str) -> Watch {
        let (rules, _) = self.applicable(path);
        if rules.is_empty() {
            Watch::Nothing
        } else if rules.iter().any(|r| r.rule.behavior == FileBehavior::Block) {
            Watch::Everything
        } else {
            Watch::Changes
        }
    }

    /// Whether the group has a block rule (its containers need open events).
    pub fn blocks(&self) -> bool {
        self.group
            .iter()
            .any(|r| r.rule.behavior == FileBehavior::Block)
    }

    /// The judgement of `access` to `path` by the program `name` (executable `exe`). Every
    /// applicable rule that watches the access must allow the program.
    pub fn judge(
        &self,
        path: &str,
        access: Access,
        name: Option<&str>,
        exe: Option<&str>,
    ) -> Judgement {
        let (rules, default) = self.applicable(path);
        let mut watched = false;
        let mut violation: Option<&Compiled> = None;
        for r in rules {
            let watches = match r.rule.behavior {
                FileBehavior::Block => true,
                FileBehavior::Monitor => access == Access::Write,
            };
            if !watches {
                continue;
            }
            watched = true;
            if !r.allows(name, exe) {
                // A block rule outranks a monitor rule in the report.
                if violation.is_none_or(|v| {
                    v.rule.behavior == FileBehavior::Monitor
                        && r.rule.behavior == FileBehavior::Block
                }) {
                    violation = Some(r);
                }
            }
        }
        match (watched, violation) {
            (false, _) => Judgement::Unwatched,
            (true, None) => Judgement::Allowed,
            (true, Some(r)) => Judgement::Violation {
                filter: r.rule.filter.clone(),
                recursive: r.rule.recursive,
                behavior: r.rule.behavior,
                default,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(filter: &str, recursive: bool, behavior: FileBehavior, apps: &[&str]) -> FileRule {
        FileRule {
            filter: filter.into(),
            recursive,
            behavior,
            apps: apps.iter().map(|a| (*a).to_owned()).collect(),
            learned: false,
        }
    }

    #[test]
    fn filters_globs_and_recursion() {
        let c = |f: &str, r: bool| Compiled::new(rule(f, r, FileBehavior::Monitor, &[]));
        assert!(c("/etc/passwd", false).matches("/etc/passwd"));
        assert!(!c("/etc/passwd", false).matches("/etc/passwd-"));
        assert!(c("/home/*/.ssh/*", false).matches("/home/ann/.ssh/id_rsa"));
        assert!(
            !c("/home/*/.ssh/*", false).matches("/home/ann/x/.ssh/id_rsa"),
            "* stays within one directory"
        );
        assert!(c("/bin", true).matches("/bin/sh"));
        assert!(c("/bin", true).matches("/bin/a/b/c"));
        assert!(!c("/bin", false).matches("/bin/sh"));
        assert!(!c("/bin", true).matches("/binary"));
        assert!(c("/lib*", true).matches("/lib64/ld-linux-x86-64.so.2"));
        assert!(c("/lib*", true).matches("/lib/apk/db/installed"));
        assert!(!c("/lib*", true).matches("/usr/lib/x"));
        assert!(c("/data", true).matches("/data"), "the directory itself");
        // An invalid glob matches itself literally.
        assert!(c("/etc/[x", false).matches("/etc/[x"));
    }

    #[test]
    fn defaults_watch_changes_only() {
        let s = RuleSet::new(&[]);
        assert_eq!(s.watch("/etc/passwd"), Watch::Changes);
        assert_eq!(s.watch("/bin/busybox"), Watch::Changes);
        assert_eq!(s.watch("/tmp/x"), Watch::Nothing);
        assert_eq!(
            s.judge("/etc/passwd", Access::Open, Some("cat"), None),
            Judgement::Unwatched
        );
        assert_eq!(
            s.judge(
                "/etc/passwd",
                Access::Write,
                Some("sh"),
                Some("/bin/busybox")
            ),
            Judgement::Violation {
                filter: "/etc/passwd".into(),
                recursive: false,
                behavior: FileBehavior::Monitor,
                default: true
            }
        );
        assert_eq!(
            s.judge("/tmp/x", Access::Write, Some("sh"), None),
            Judgement::Unwatched
        );
        assert!(!s.blocks());
    }

    #[test]
    fn group_rules_come_before_the_defaults() {
        let s = RuleSet::new(&[
            rule("/etc/passwd", false, FileBehavior::Block, &["cat"]),
            rule("/data", true, FileBehavior::Monitor, &["/bin/writer"]),
        ]);
        assert!(s.blocks());
        assert_eq!(s.watch("/etc/passwd"), Watch::Everything);
        assert_eq!(
            s.judge(
                "/etc/passwd",
                Access::Open,
                Some("cat"),
                Some("/bin/busybox")
            ),
            Judgement::Allowed
        );
        let Judgement::Violation {
            behavior, default, ..
        } = s.judge(
            "/etc/passwd",
            Access::Open,
            Some("sh"),
            Some("/bin/busybox"),
        )
        else {
            panic!("sh may not open it");
        };
        assert_eq!((behavior, default), (FileBehavior::Block, false));
        // Monitor rules: writes only; apps by executable path too.
        assert_eq!(
            s.judge("/data/a/b", Access::Open, Some("sh"), None),
            Judgement::Unwatched
        );
        assert_eq!(
            s.judge(
                "/data/a/b",
                Access::Write,
                Some("writer"),
                Some("/bin/writer")
            ),
            Judgement::Allowed
        );
        assert!(matches!(
            s.judge("/data/a/b", Access::Write, Some("sh"), Some("/bin/busybox")),
            Judgement::Violation { default: false, .. }
        ));
        // The defaults still cover what the group's rules do not.
        assert!(matches!(
            s.judge("/etc/shadow", Access::Write, Some("sh"), None),
            Judgement::Violation { default: true, .. }
        ));
    }
}
