//! What `palisade` stores and serves: groups with criteria and three modes, network rules,
//! process profiles, file rules, users, workloads and events, as ARCHITECTURE.md defines them.
//!
//! Plain serde data; every type that comes from outside (API bodies, YAML imports) has a
//! `validate` that returns a [`Invalid`] naming the field, never panics. Network rules, ports,
//! actions and modes are the dataplane's own types (`dataplane::policy`), so what the API
//! accepts is exactly what the dataplane compiles.

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

pub use dataplane::policy::model::special;
pub use dataplane::policy::{Action, Mac, Mode, PortSpec, Rule};

/// Learned network rule ids start here; rules added by hand get ids below (from 1).
pub const FIRST_LEARNED_RULE_ID: u32 = 10_000;
/// More learned ports than this for one (from, to) pair collapse into one `any` rule.
pub const MAX_LEARNED_PORTS: usize = 20;
/// Prefix of groups created from workloads.
pub const AUTO_PREFIX: &str = "auto.";

/// A rejected input: which field, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct Invalid {
    /// Dotted path of the field (`criteria[1].value`).
    pub field: String,
    /// What is wrong with it.
    pub reason: String,
}

impl Invalid {
    /// `field: reason`.
    pub fn new(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            reason: reason.into(),
        }
    }
}

/// API roles.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Reads and changes everything.
    Admin,
    /// Reads everything but users and secrets; changes nothing.
    Reader,
}

impl Role {
    /// Lowercase name.
    pub fn name(self) -> &'static str {
        match self {
            Self::Admin => "admin",
            Self::Reader => "reader",
        }
    }
}

impl FromStr for Role {
    type Err = Invalid;

    fn from_str(s: &str) -> Result<Self, Invalid> {
        match s {
            "admin" => Ok(Self::Admin),
            "reader" => Ok(Self::Reader),
            _ => Err(Invalid::new(
                "role",
                format!("`{s}` is not admin or reader"),
            )),
        }
    }
}

/// A user as the API shows it (never the hash).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct User {
    /// Login name.
    pub name: String,
    /// Role.
    pub role: Role,
    /// The password was generated or reset and must be changed before anything else.
    pub must_change_password: bool,
    /// Unix seconds.
    pub created_at: i64,
}

/// Which workload attribute a criterion looks at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum CriterionKey {
    /// Image reference (`nginx:1.27`, `docker.io/library/nginx`).
    Image,
    /// Container name.
    Name,
    /// A label: the value is `key=value` (or `key` for presence with `=`).
    Label,
    /// Kubernetes namespace (the `io.kubernetes.pod.namespace` label).
    Namespace,
    /// Addresses: the value is a CIDR; the group becomes an address group.
    Address,
}

/// How a criterion compares.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
pub enum CriterionOp {
    /// Equal; a `*` in the value matches any run of characters.
    #[serde(rename = "=")]
    Eq,
    /// Not equal (same wildcard rule).
    #[serde(rename = "!=")]
    Ne,
    /// Substring.
    #[serde(rename = "contains")]
    Contains,
    /// Prefix.
    #[serde(rename = "prefix")]
    Prefix,
    /// Regular expression (Rust `regex` syntax), anchored by the author if wanted.
    #[serde(rename = "regex")]
    Regex,
}

/// One criterion of a user group.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Criterion {
    /// Attribute.
    pub key: CriterionKey,
    /// Comparison.
    pub op: CriterionOp,
    /// Value compared with.
    pub value: String,
}

/// What a criterion needs to know about a workload.
#[derive(Debug, Clone, Default)]
pub struct WorkloadMeta<'a> {
    /// Container name.
    pub name: &'a str,
    /// Image.
    pub image: &'a str,
    /// Labels.
    pub labels: Option<&'a BTreeMap<String, String>>,
    /// Addresses.
    pub ips: &'a [IpAddr],
}

/// `*` wildcard match, no other metacharacters (hand-written: three lines, no crate needed).
fn wildcard(pattern: &str, s: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == s;
    }
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if !s.starts_with(first) || s.len() < first.len() + last.len() || !s.ends_with(last) {
        return false;
    }
    let mut rest = &s[first.len()..s.len() - last.len()];
    for p in &parts[1..parts.len() - 1] {
        match rest.find(p) {
            Some(i) => rest = &rest[i + p.len()..],
            None => return false,
        }
    }
    true
}

impl Criterion {
    /// Checks the value for the key and op (CIDR for `address`, a valid regex for `regex`).
    pub fn validate(&self, field: &str) -> Result<(), Invalid> {
        let f = || format!("{field}.value");
        if self.value.is_empty() {
            return Err(Invalid::new(f(), "empty"));
        }
        if self.value.len() > 1024 {
            return Err(Invalid::new(f(), "longer than 1024 bytes"));
        }
        match (self.key, self.op) {
            (CriterionKey::Address, CriterionOp::Eq) => {
                self.value
                    .parse::<IpNet>()
                    .or_else(|_| self.value.parse::<IpAddr>().map(IpNet::from))
                    .map_err(|_| Invalid::new(f(), format!("`{}` is not a CIDR", self.value)))?;
            }
            (CriterionKey::Address, _) => {
                return Err(Invalid::new(
                    format!("{field}.op"),
                    "an address criterion takes `=` and a CIDR",
                ));
            }
            (_, CriterionOp::Regex) => {
                regex::Regex::new(&self.value)
                    .map_err(|e| Invalid::new(f(), format!("bad regex: {e}")))?;
            }
            _ => {}
        }
        Ok(())
    }

    /// The network, for an `address` criterion.
    pub fn cidr(&self) -> Option<IpNet> {
        if self.key != CriterionKey::Address {
            return None;
        }
        self.value
            .parse::<IpNet>()
            .ok()
            .or_else(|| self.value.parse::<IpAddr>().ok().map(IpNet::from))
    }

    fn compare(&self, s: &str) -> bool {
        match self.op {
            CriterionOp::Eq => wildcard(&self.value, s),
            CriterionOp::Ne => !wildcard(&self.value, s),
            CriterionOp::Contains => s.contains(&self.value),
            CriterionOp::Prefix => s.starts_with(&self.value),
            CriterionOp::Regex => regex::Regex::new(&self.value).is_ok_and(|r| r.is_match(s)),
        }
    }

    /// Whether the workload matches.
    pub fn matches(&self, w: &WorkloadMeta<'_>) -> bool {
        match self.key {
            CriterionKey::Image => self.compare(w.image),
            CriterionKey::Name => self.compare(w.name),
            CriterionKey::Namespace => {
                let ns = w
                    .labels
                    .and_then(|l| l.get("io.kubernetes.pod.namespace"))
                    .map_or("", String::as_str);
                self.compare(ns)
            }
            CriterionKey::Label => {
                let Some(labels) = w.labels else {
                    return self.op == CriterionOp::Ne;
                };
                match self.value.split_once('=') {
                    // `key=value`: compare the value of that label with the pattern.
                    Some((k, v)) => {
                        let c = Self {
                            key: CriterionKey::Name,
                            op: self.op,
                            value: v.to_owned(),
                        };
                        match labels.get(k) {
                            Some(have) => c.compare(have),
                            None => self.op == CriterionOp::Ne,
                        }
                    }
                    // `key`: presence.
                    None => match self.op {
                        CriterionOp::Ne => !labels.keys().any(|k| wildcard(&self.value, k)),
                        _ => labels.keys().any(|k| self.compare(k)),
                    },
                }
            }
            CriterionKey::Address => self
                .cidr()
                .is_some_and(|n| w.ips.iter().any(|ip| n.contains(ip))),
        }
    }
}

/// A group: its members and the three modes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Group {
    /// Unique name; `auto.*` for groups created from workloads.
    pub name: String,
    /// All must match (empty for auto groups: their members name them).
    #[serde(default)]
    pub criteria: Vec<Criterion>,
    /// Network mode.
    #[serde(default)]
    #[schema(value_type = crate::api::schema::ModeSchema)]
    pub network_mode: Mode,
    /// Process mode.
    #[serde(default)]
    #[schema(value_type = crate::api::schema::ModeSchema)]
    pub process_mode: Mode,
    /// File mode.
    #[serde(default)]
    #[schema(value_type = crate::api::schema::ModeSchema)]
    pub file_mode: Mode,
    /// Created from workloads (auto group), not by an operator.
    #[serde(default)]
    pub learned: bool,
    /// Free text.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub comment: String,
}

/// Checks a group or user name: 1-64 of letters, digits, `.`, `_`, `-`, starting with a
/// letter or digit.
pub fn validate_name(field: &str, name: &str) -> Result<(), Invalid> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
        && name
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphanumeric());
    if ok {
        Ok(())
    } else {
        Err(Invalid::new(
            field,
            format!(
                "`{name}`: 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit"
            ),
        ))
    }
}

impl Group {
    /// Checks the name (not a special group), the criteria, and that a user group has some.
    pub fn validate(&self) -> Result<(), Invalid> {
        validate_name("name", &self.name)?;
        if special::ALL.contains(&self.name.as_str()) {
            return Err(Invalid::new(
                "name",
                format!("`{}` is a built-in group", self.name),
            ));
        }
        if self.criteria.len() > 64 {
            return Err(Invalid::new("criteria", "more than 64 criteria"));
        }
        for (i, c) in self.criteria.iter().enumerate() {
            c.validate(&format!("criteria[{i}]"))?;
        }
        let address = self
            .criteria
            .iter()
            .filter(|c| c.key == CriterionKey::Address)
            .count();
        if address > 0 && address != self.criteria.len() {
            return Err(Invalid::new(
                "criteria",
                "an address group has only address criteria",
            ));
        }
        if self.comment.len() > 4096 {
            return Err(Invalid::new("comment", "longer than 4096 bytes"));
        }
        Ok(())
    }

    /// An address group: members are networks, not workloads.
    pub fn is_address_group(&self) -> bool {
        !self.criteria.is_empty() && self.criteria.iter().all(|c| c.key == CriterionKey::Address)
    }

    /// Whether a workload belongs to this (criteria) group: every criterion matches. Auto
    /// groups and address groups have no workload criteria and match nothing here.
    pub fn matches(&self, w: &WorkloadMeta<'_>) -> bool {
        !self.criteria.is_empty()
            && !self.is_address_group()
            && self.criteria.iter().all(|c| c.matches(w))
    }
}

/// Checks a network rule against the groups that exist (by name): both ends exist or are
/// built in, ports and apps were parsed by serde already.
pub fn validate_rule(rule: &Rule, group_exists: impl Fn(&str) -> bool) -> Result<(), Invalid> {
    for (field, g) in [("from", &rule.from), ("to", &rule.to)] {
        if !special::ALL.contains(&g.as_str()) && !group_exists(g) {
            return Err(Invalid::new(field, format!("unknown group `{g}`")));
        }
    }
    if rule.ports.len() > 256 {
        return Err(Invalid::new("ports", "more than 256 port specs"));
    }
    if rule.id == 0 {
        return Err(Invalid::new("id", "0 is not a rule id"));
    }
    Ok(())
}

/// One entry of a group's process profile.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProcessEntry {
    /// Program name (`comm`), or `*` for any name at `path`.
    pub name: String,
    /// Executable path, or `*` for any path with this name.
    pub path: String,
    /// Allow or deny.
    #[schema(value_type = crate::api::schema::ActionSchema)]
    pub action: Action,
    /// Learned in discover mode.
    #[serde(default)]
    pub learned: bool,
}

impl ProcessEntry {
    /// Checks name and path.
    pub fn validate(&self, field: &str) -> Result<(), Invalid> {
        if self.name.is_empty() || self.name.len() > 255 {
            return Err(Invalid::new(format!("{field}.name"), "1-255 bytes"));
        }
        if self.path != "*" && !self.path.starts_with('/') {
            return Err(Invalid::new(
                format!("{field}.path"),
                format!("`{}` is neither `*` nor an absolute path", self.path),
            ));
        }
        if self.path.len() > 4096 {
            return Err(Invalid::new(
                format!("{field}.path"),
                "longer than 4096 bytes",
            ));
        }
        Ok(())
    }
}

/// What a file rule does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum FileBehavior {
    /// Report accesses.
    Monitor,
    /// Deny accesses (protect mode), report them.
    Block,
}

/// One file rule of a group.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FileRule {
    /// Absolute path or glob (`/etc/*.conf`).
    pub filter: String,
    /// Directories: everything below too.
    #[serde(default)]
    pub recursive: bool,
    /// Monitor or block.
    pub behavior: FileBehavior,
    /// Programs allowed to access it (paths or names).
    #[serde(default)]
    pub apps: Vec<String>,
    /// Learned in discover mode.
    #[serde(default)]
    pub learned: bool,
}

impl FileRule {
    /// Checks the filter and apps.
    pub fn validate(&self, field: &str) -> Result<(), Invalid> {
        if !self.filter.starts_with('/') || self.filter.len() > 4096 {
            return Err(Invalid::new(
                format!("{field}.filter"),
                format!("`{}` is not an absolute path or glob", self.filter),
            ));
        }
        if self.apps.len() > 256 || self.apps.iter().any(|a| a.is_empty() || a.len() > 4096) {
            return Err(Invalid::new(
                format!("{field}.apps"),
                "at most 256 non-empty program names or paths",
            ));
        }
        Ok(())
    }
}

/// How a workload's traffic reaches the dataplane.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Plumbing {
    /// Not connected (declared workloads, or not plumbed yet).
    #[default]
    None,
    /// Mirrored (discover, monitor).
    Tap,
    /// In the path (protect).
    Inline,
}

/// Where a workload came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum WorkloadSource {
    /// Declared in the configuration file.
    Config,
    /// Declared through the API.
    #[default]
    Api,
    /// Found on the host by discovery.
    Discovered,
}

/// A workload (container) as control knows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Workload {
    /// Container id.
    pub id: String,
    /// Container name.
    #[serde(default)]
    pub name: String,
    /// Image.
    #[serde(default)]
    pub image: String,
    /// Labels.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Its (auto) group; derived when empty.
    #[serde(default)]
    pub group: String,
    /// Addresses.
    #[serde(default)]
    #[schema(value_type = Vec<String>)]
    pub ips: Vec<IpAddr>,
    /// MACs.
    #[serde(default)]
    #[schema(value_type = Vec<String>)]
    pub macs: Vec<Mac>,
    /// Network namespace path or inode, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub netns: Option<String>,
    /// Host-side veth, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub veth: Option<String>,
    /// Network mode in force (its group's).
    #[serde(default)]
    #[schema(value_type = crate::api::schema::ModeSchema)]
    pub mode: Mode,
    /// Tap or inline.
    #[serde(default)]
    pub plumbing: Plumbing,
    /// Host network, system namespace or Palisade itself: alert only.
    #[serde(default)]
    pub exempt: bool,
    /// Where it came from.
    #[serde(default)]
    pub source: WorkloadSource,
}

/// The service name a workload's auto group is named after: the
/// `io.kubernetes.container.name`, `com.docker.compose.service` or `app` label, else the
/// image's repository name without registry, path and tag.
pub fn service_name(image: &str, labels: &BTreeMap<String, String>) -> String {
    for key in [
        "com.docker.compose.service",
        "io.kubernetes.container.name",
        "app.kubernetes.io/name",
        "app",
    ] {
        if let Some(v) = labels.get(key).filter(|v| !v.is_empty()) {
            return sanitize(v);
        }
    }
    let no_digest = image.split('@').next().unwrap_or(image);
    let last = no_digest.rsplit('/').next().unwrap_or(no_digest);
    let repo = last.split(':').next().unwrap_or(last);
    if repo.is_empty() {
        "unknown".to_owned()
    } else {
        sanitize(repo)
    }
}

fn sanitize(s: &str) -> String {
    let mut out: String = s
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .take(58)
        .collect();
    if !out
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphanumeric())
    {
        out.insert(0, 'x');
    }
    out
}

/// The auto group name for a workload: `auto.<service>`.
pub fn auto_group(image: &str, labels: &BTreeMap<String, String>) -> String {
    format!("{AUTO_PREFIX}{}", service_name(image, labels))
}

impl Workload {
    /// Checks id, addresses and group name.
    pub fn validate(&self) -> Result<(), Invalid> {
        if self.id.is_empty()
            || self.id.len() > 128
            || !self
                .id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
        {
            return Err(Invalid::new(
                "id",
                format!("`{}`: 1-128 letters, digits, '.', '_' or '-'", self.id),
            ));
        }
        if !self.group.is_empty() {
            validate_name("group", &self.group)?;
        }
        if self.ips.len() > 64 || self.macs.len() > 64 {
            return Err(Invalid::new("ips", "at most 64 addresses and 64 MACs"));
        }
        Ok(())
    }

    /// What criteria look at.
    pub fn meta(&self) -> WorkloadMeta<'_> {
        WorkloadMeta {
            name: &self.name,
            image: &self.image,
            labels: Some(&self.labels),
            ips: &self.ips,
        }
    }
}

/// Event kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    /// A connection outside the network rules.
    NetworkViolation,
    /// A threat check fired.
    Threat,
    /// A program outside the process profile.
    ProcessViolation,
    /// A file access outside the file rules.
    FileViolation,
    /// A change made through the API or CLI.
    Audit,
    /// Palisade itself (start, stop, dataplane restarts).
    System,
}

impl EventKind {
    /// Every kind.
    pub const ALL: [Self; 6] = [
        Self::NetworkViolation,
        Self::Threat,
        Self::ProcessViolation,
        Self::FileViolation,
        Self::Audit,
        Self::System,
    ];

    /// snake_case name.
    pub fn name(self) -> &'static str {
        match self {
            Self::NetworkViolation => "network_violation",
            Self::Threat => "threat",
            Self::ProcessViolation => "process_violation",
            Self::FileViolation => "file_violation",
            Self::Audit => "audit",
            Self::System => "system",
        }
    }
}

impl FromStr for EventKind {
    type Err = Invalid;

    fn from_str(s: &str) -> Result<Self, Invalid> {
        Self::ALL
            .into_iter()
            .find(|k| k.name() == s)
            .ok_or_else(|| Invalid::new("kind", format!("unknown event kind `{s}`")))
    }
}

impl fmt::Display for EventKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Severity.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Informational (audit, learning).
    Info,
    /// Needs a look (violations in monitor mode).
    Warning,
    /// Blocked or dangerous (drops, threats).
    Critical,
}

/// An event as stored and served.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Event {
    /// Increasing id (the cursor).
    pub id: i64,
    /// Unix milliseconds.
    pub at_ms: i64,
    /// Kind.
    pub kind: EventKind,
    /// Severity.
    pub severity: Severity,
    /// Group concerned, when any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// Workload concerned, when any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workload: Option<String>,
    /// Who did it (audit), when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actor: Option<String>,
    /// One line for humans.
    pub message: String,
    /// Kind-specific fields: an object, `{}` when there are none.
    #[serde(default, serialize_with = "details_object")]
    #[schema(value_type = Object)]
    pub details: serde_json::Value,
}

/// Serialises "no details" (`null`) as `{}`, so `details` is always the object it is
/// documented to be.
fn details_object<S: serde::Serializer>(v: &serde_json::Value, s: S) -> Result<S::Ok, S::Error> {
    match v {
        serde_json::Value::Null => serde_json::Map::new().serialize(s),
        v => v.serialize(s),
    }
}

/// An event before the store gave it an id.
#[derive(Debug, Clone, PartialEq)]
pub struct NewEvent {
    /// Unix milliseconds.
    pub at_ms: i64,
    /// Kind.
    pub kind: EventKind,
    /// Severity.
    pub severity: Severity,
    /// Group.
    pub group: Option<String>,
    /// Workload.
    pub workload: Option<String>,
    /// Actor.
    pub actor: Option<String>,
    /// Message.
    pub message: String,
    /// Details.
    pub details: serde_json::Value,
}

impl NewEvent {
    /// A `system` event about Palisade itself, dated now, with no group, workload, actor or
    /// details (add them with the fields).
    pub fn system(severity: Severity, message: impl Into<String>) -> Self {
        Self {
            at_ms: crate::service::now_ms(),
            kind: EventKind::System,
            severity,
            group: None,
            workload: None,
            actor: None,
            message: message.into(),
            details: serde_json::Value::Null,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards() {
        assert!(wildcard("nginx*", "nginx:1.27"));
        assert!(wildcard("*nginx*", "docker.io/library/nginx:1"));
        assert!(wildcard("a*b*c", "aXbYc"));
        assert!(!wildcard("a*b*c", "aXcYb"));
        assert!(wildcard("exact", "exact"));
        assert!(!wildcard("exact", "exactly"));
        assert!(wildcard("*", ""));
        assert!(!wildcard("ab*ba", "aba"));
    }

    #[test]
    fn criteria_match_labels_names_images_and_addresses() {
        let labels: BTreeMap<String, String> = [
            ("app".to_owned(), "web".to_owned()),
            ("io.kubernetes.pod.namespace".to_owned(), "shop".to_owned()),
        ]
        .into();
        let ips = ["198.18.0.5".parse().unwrap()];
        let w = WorkloadMeta {
            name: "web-1",
            image: "docker.io/library/nginx:1.27",
            labels: Some(&labels),
            ips: &ips,
        };
        let c = |key, op, value: &str| Criterion {
            key,
            op,
            value: value.into(),
        };
        use CriterionKey as K;
        use CriterionOp as O;
        assert!(c(K::Image, O::Eq, "*nginx*").matches(&w));
        assert!(!c(K::Image, O::Eq, "nginx*").matches(&w));
        assert!(c(K::Name, O::Prefix, "web").matches(&w));
        assert!(c(K::Name, O::Regex, "^web-[0-9]+$").matches(&w));
        assert!(c(K::Label, O::Eq, "app=web").matches(&w));
        assert!(!c(K::Label, O::Eq, "app=db").matches(&w));
        assert!(c(K::Label, O::Ne, "tier=db").matches(&w));
        assert!(c(K::Label, O::Eq, "app").matches(&w));
        assert!(c(K::Namespace, O::Eq, "shop").matches(&w));
        assert!(c(K::Address, O::Eq, "198.18.0.0/24").matches(&w));
        assert!(!c(K::Address, O::Eq, "10.0.0.0/8").matches(&w));
    }

    #[test]
    fn group_validation_names_the_field() {
        let mut g = Group {
            name: "web".into(),
            criteria: vec![Criterion {
                key: CriterionKey::Address,
                op: CriterionOp::Eq,
                value: "not-a-cidr".into(),
            }],
            network_mode: Mode::Discover,
            process_mode: Mode::Discover,
            file_mode: Mode::Discover,
            learned: false,
            comment: String::new(),
        };
        assert_eq!(g.validate().unwrap_err().field, "criteria[0].value");
        g.criteria[0].value = "198.18.0.0/15".into();
        assert!(g.validate().is_ok());
        assert!(g.is_address_group());
        g.name = "external".into();
        assert_eq!(g.validate().unwrap_err().field, "name");
        g.name = "-x".into();
        assert_eq!(g.validate().unwrap_err().field, "name");
    }

    #[test]
    fn auto_group_names() {
        let none = BTreeMap::new();
        assert_eq!(
            auto_group("docker.io/library/nginx:1.27", &none),
            "auto.nginx"
        );
        assert_eq!(
            auto_group("registry:5000/team/api@sha256:ab", &none),
            "auto.api"
        );
        let l: BTreeMap<String, String> = [(
            "com.docker.compose.service".to_owned(),
            "Web App".to_owned(),
        )]
        .into();
        assert_eq!(auto_group("x", &l), "auto.web-app");
        assert_eq!(auto_group("", &none), "auto.unknown");
    }
}
