//! Policy as code: the whole policy as one YAML document (`GET /v1/policy/export`,
//! `POST /v1/policy/import`, `palisade export` / `palisade import`), its validation and the
//! diff between two documents.
//!
//! The document is plain serde data with `deny_unknown_fields` everywhere, so a typo in a
//! key is an error that names its line and column (as `serde_yaml_ng` reports them), never
//! a silently ignored field. [`PolicyDocument::validate`] returns *every* problem, each
//! naming its field by a dotted path (`rules[3].to`, `process_profiles.web[0].path`).
//!
//! [`diff`] compares two documents: groups by name, rules by id, process profiles and file
//! rules per group. Its order is deterministic: groups, rules, process profiles, file rules;
//! within a kind by name (rules by numeric id). A change in the order of rules that exist in
//! both documents (which matters for rules of equal priority) is one extra `change` of kind
//! `rule` named `order`, whose `before` and `after` are the id lists.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use dataplane::dpi::App;

use crate::model::{self, Action, FileRule, Group, Invalid, PortSpec, ProcessEntry, Rule};

/// The only document version this build reads and writes.
pub const VERSION: u32 = 1;

/// The whole policy as code.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PolicyDocument {
    /// Document format version: [`VERSION`].
    pub version: u32,
    /// Groups (special groups `external`, `nodes`, `containers` are never listed).
    #[serde(default)]
    pub groups: Vec<Group>,
    /// Network rules, in order.
    #[serde(default)]
    #[schema(value_type = Vec<crate::api::schema::RuleSchema>)]
    pub rules: Vec<Rule>,
    /// Process profile per group name.
    #[serde(default)]
    pub process_profiles: BTreeMap<String, Vec<ProcessEntry>>,
    /// File rules per group name.
    #[serde(default)]
    pub file_rules: BTreeMap<String, Vec<FileRule>>,
}

impl Default for PolicyDocument {
    fn default() -> Self {
        Self {
            version: VERSION,
            groups: Vec::new(),
            rules: Vec::new(),
            process_profiles: BTreeMap::new(),
            file_rules: BTreeMap::new(),
        }
    }
}

/// A document that cannot be read or written.
#[derive(Debug, thiserror::Error)]
pub enum PolicyCodeError {
    /// Not YAML, or not the document's shape. `message` is `serde_yaml_ng`'s own, which
    /// names the line and column (`... at line 3 column 5`).
    #[error("policy document: {message}")]
    Parse {
        /// 1-based line, when known.
        line: Option<usize>,
        /// 1-based column, when known.
        column: Option<usize>,
        /// What is wrong, with its position.
        message: String,
    },
    /// Serializing failed (a value YAML cannot represent).
    #[error("cannot write the policy document as YAML")]
    Emit(#[source] serde_yaml_ng::Error),
}

impl PolicyDocument {
    /// Parses a YAML document. Shape errors only; call [`Self::validate`] for the rest.
    pub fn from_yaml(text: &str) -> Result<Self, PolicyCodeError> {
        serde_yaml_ng::from_str(text).map_err(|e| {
            let loc = e.location();
            PolicyCodeError::Parse {
                line: loc.as_ref().map(serde_yaml_ng::Location::line),
                column: loc.as_ref().map(serde_yaml_ng::Location::column),
                message: e.to_string(),
            }
        })
    }

    /// The document as YAML.
    pub fn to_yaml(&self) -> Result<String, PolicyCodeError> {
        serde_yaml_ng::to_string(self).map_err(PolicyCodeError::Emit)
    }

    /// Checks everything a document must satisfy before it can replace the policy; returns
    /// every problem found, in document order.
    pub fn validate(&self) -> Result<(), Vec<Invalid>> {
        let mut errors = Vec::new();
        if self.version != VERSION {
            errors.push(Invalid::new(
                "version",
                format!(
                    "version {} is not supported (expected {VERSION})",
                    self.version
                ),
            ));
        }
        let prefixed =
            |prefix: &str, e: Invalid| Invalid::new(format!("{prefix}.{}", e.field), e.reason);

        let mut names: HashMap<&str, usize> = HashMap::new();
        for (i, g) in self.groups.iter().enumerate() {
            if let Err(e) = g.validate() {
                errors.push(prefixed(&format!("groups[{i}]"), e));
            }
            if let Some(first) = names.insert(g.name.as_str(), i) {
                errors.push(Invalid::new(
                    format!("groups[{i}].name"),
                    format!("duplicate group `{}` (also groups[{first}])", g.name),
                ));
            }
        }
        let exists = |g: &str| names.contains_key(g);

        let mut ids: HashMap<u32, usize> = HashMap::new();
        // Hashed, not compared pairwise: documents may hold 100k learned rules.
        let mut matches: HashMap<MatchKey<'_>, usize> = HashMap::new();
        for (i, r) in self.rules.iter().enumerate() {
            if let Err(e) = model::validate_rule(r, exists) {
                errors.push(prefixed(&format!("rules[{i}]"), e));
            }
            if let Some(first) = ids.insert(r.id, i) {
                errors.push(Invalid::new(
                    format!("rules[{i}].id"),
                    format!("duplicate rule id {} (also rules[{first}])", r.id),
                ));
            }
            if let Some(&j) = matches.get(&match_key(r)) {
                errors.push(Invalid::new(
                    format!("rules[{i}]"),
                    format!(
                        "duplicate of rules[{j}] (id {}): same from, to, ports, apps and action",
                        self.rules[j].id
                    ),
                ));
            }
            matches.entry(match_key(r)).or_insert(i);
        }

        for (group, entries) in &self.process_profiles {
            let field = format!("process_profiles.{group}");
            if !exists(group) {
                errors.push(Invalid::new(&field, format!("unknown group `{group}`")));
            }
            let mut seen = HashSet::new();
            for (i, p) in entries.iter().enumerate() {
                let f = format!("{field}[{i}]");
                if let Err(e) = p.validate(&f) {
                    errors.push(e);
                }
                if !seen.insert((p.name.as_str(), p.path.as_str())) {
                    errors.push(Invalid::new(
                        f,
                        format!(
                            "duplicate entry for name `{}` and path `{}`",
                            p.name, p.path
                        ),
                    ));
                }
            }
        }

        for (group, rules) in &self.file_rules {
            let field = format!("file_rules.{group}");
            if !exists(group) {
                errors.push(Invalid::new(&field, format!("unknown group `{group}`")));
            }
            let mut seen = HashSet::new();
            for (i, r) in rules.iter().enumerate() {
                let f = format!("{field}[{i}]");
                if let Err(e) = r.validate(&f) {
                    errors.push(e);
                }
                if !seen.insert(r.filter.as_str()) {
                    errors.push(Invalid::new(
                        format!("{f}.filter"),
                        format!("duplicate filter `{}`", r.filter),
                    ));
                }
            }
        }

        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors)
        }
    }
}

/// What makes two rules duplicates: they match the same traffic the same way (ids,
/// priority and flags aside).
type MatchKey<'a> = (&'a str, &'a str, &'a [PortSpec], &'a [App], Action);

fn match_key(r: &Rule) -> MatchKey<'_> {
    (&r.from, &r.to, &r.ports, &r.apps, r.action)
}

/// What a [`Change`] does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ChangeOp {
    /// Only in the new document.
    Add,
    /// Only in the current one.
    Remove,
    /// In both, different.
    Change,
}

/// What a [`Change`] is about.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum ChangeKind {
    /// A group, named by its name.
    Group,
    /// A network rule, named by its id (or `order`).
    Rule,
    /// A group's process profile, named by the group.
    ProcessProfile,
    /// A group's file rules, named by the group.
    FileRules,
}

impl ChangeKind {
    /// snake_case name, as on the wire.
    pub fn name(self) -> &'static str {
        match self {
            Self::Group => "group",
            Self::Rule => "rule",
            Self::ProcessProfile => "process_profile",
            Self::FileRules => "file_rules",
        }
    }
}

/// One difference between two documents: `{"op", "kind", "name", "before", "after"}`;
/// `before` is null for an add, `after` for a remove.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Change {
    /// Add, remove or change.
    pub op: ChangeOp,
    /// Group, rule, process profile or file rules.
    pub kind: ChangeKind,
    /// Group name, or rule id in decimal.
    pub name: String,
    /// The current value (JSON), when there is one.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub before: Option<Value>,
    /// The new value (JSON), when there is one.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub after: Option<Value>,
}

fn json<T: Serialize>(v: &T) -> Option<Value> {
    serde_json::to_value(v).ok()
}

/// Compares keyed items, in key order.
fn diff_keyed<K: Ord + ToString, T: Serialize>(
    kind: ChangeKind,
    current: BTreeMap<K, T>,
    new: BTreeMap<K, T>,
    equal: impl Fn(&T, &T) -> bool,
    out: &mut Vec<Change>,
) {
    let keys: BTreeSet<&K> = current.keys().chain(new.keys()).collect();
    for k in keys {
        let (op, before, after) = match (current.get(k), new.get(k)) {
            (None, Some(n)) => (ChangeOp::Add, None, Some(n)),
            (Some(c), None) => (ChangeOp::Remove, Some(c), None),
            (Some(c), Some(n)) if !equal(c, n) => (ChangeOp::Change, Some(c), Some(n)),
            _ => continue,
        };
        out.push(Change {
            op,
            kind,
            name: k.to_string(),
            before: before.and_then(json),
            after: after.and_then(json),
        });
    }
}

/// Order-insensitive comparison of a profile or a group's file rules (entries are matched
/// by name and path, or by filter, never by position).
fn same_set<T: Eq + std::hash::Hash>(a: &&Vec<T>, b: &&Vec<T>) -> bool {
    a.len() == b.len() && a.iter().collect::<HashSet<_>>() == b.iter().collect::<HashSet<_>>()
}

/// What changes when `new` replaces `current`, in a deterministic order (see the module
/// documentation). An empty profile or file rule list is the same as none.
pub fn diff(current: &PolicyDocument, new: &PolicyDocument) -> Vec<Change> {
    let mut out = Vec::new();
    diff_keyed(
        ChangeKind::Group,
        groups(current),
        groups(new),
        |a, b| a == b,
        &mut out,
    );

    let (cur_rules, new_rules) = (rules(current), rules(new));
    let common = |d: &PolicyDocument, other: &BTreeMap<u32, &Rule>| {
        d.rules
            .iter()
            .map(|r| r.id)
            .filter(|id| other.contains_key(id))
            .collect::<Vec<_>>()
    };
    let (cur_order, new_order) = (common(current, &new_rules), common(new, &cur_rules));
    diff_keyed(
        ChangeKind::Rule,
        cur_rules,
        new_rules,
        |a, b| a == b,
        &mut out,
    );
    if cur_order != new_order {
        out.push(Change {
            op: ChangeOp::Change,
            kind: ChangeKind::Rule,
            name: "order".to_owned(),
            before: json(&cur_order),
            after: json(&new_order),
        });
    }

    diff_keyed(
        ChangeKind::ProcessProfile,
        non_empty(&current.process_profiles),
        non_empty(&new.process_profiles),
        same_set,
        &mut out,
    );
    diff_keyed(
        ChangeKind::FileRules,
        non_empty(&current.file_rules),
        non_empty(&new.file_rules),
        same_set,
        &mut out,
    );
    out
}

fn groups(d: &PolicyDocument) -> BTreeMap<String, &Group> {
    d.groups.iter().map(|g| (g.name.clone(), g)).collect()
}

fn rules(d: &PolicyDocument) -> BTreeMap<u32, &Rule> {
    d.rules.iter().map(|r| (r.id, r)).collect()
}

fn non_empty<T>(m: &BTreeMap<String, Vec<T>>) -> BTreeMap<String, &Vec<T>> {
    m.iter()
        .filter(|(_, v)| !v.is_empty())
        .map(|(k, v)| (k.clone(), v))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Action, Criterion, CriterionKey, CriterionOp, FileBehavior, Mode};

    fn group(name: &str) -> Group {
        Group {
            name: name.into(),
            criteria: vec![Criterion {
                key: CriterionKey::Image,
                op: CriterionOp::Eq,
                value: format!("{name}*"),
            }],
            network_mode: Mode::Monitor,
            process_mode: Mode::Discover,
            file_mode: Mode::Protect,
            learned: false,
            comment: String::new(),
        }
    }

    fn rule(id: u32, from: &str, to: &str, port: &str) -> Rule {
        Rule {
            id,
            from: from.into(),
            to: to.into(),
            ports: vec![port.parse().unwrap()],
            apps: vec![],
            action: Action::Allow,
            priority: 0,
            learned: false,
            disabled: false,
        }
    }

    fn doc() -> PolicyDocument {
        PolicyDocument {
            version: 1,
            groups: vec![group("web"), group("db")],
            rules: vec![
                rule(1, "web", "db", "tcp/5432"),
                rule(2, "external", "web", "tcp/443"),
            ],
            process_profiles: [(
                "web".to_owned(),
                vec![ProcessEntry {
                    name: "nginx".into(),
                    path: "/usr/sbin/nginx".into(),
                    action: Action::Allow,
                    learned: true,
                }],
            )]
            .into(),
            file_rules: [(
                "db".to_owned(),
                vec![FileRule {
                    filter: "/var/lib/postgresql".into(),
                    recursive: true,
                    behavior: FileBehavior::Block,
                    apps: vec!["/usr/lib/postgresql/16/bin/postgres".into()],
                    learned: false,
                }],
            )]
            .into(),
        }
    }

    #[test]
    fn yaml_round_trip() {
        let d = doc();
        let text = d.to_yaml().unwrap();
        assert!(text.contains("network_mode: monitor"), "{text}");
        assert!(text.contains("- tcp/5432"), "{text}");
        assert_eq!(PolicyDocument::from_yaml(&text).unwrap(), d);
        assert_eq!(d.validate(), Ok(()));
    }

    #[test]
    fn parse_errors_name_line_and_column() {
        let e = PolicyDocument::from_yaml("version: 1\ngroups:\n  - name: web\n    colour: red\n")
            .unwrap_err();
        match &e {
            PolicyCodeError::Parse {
                line,
                column,
                message,
            } => {
                assert_eq!(*line, Some(4));
                assert_eq!(*column, Some(5));
                assert!(message.contains("unknown field `colour`"), "{message}");
                assert!(message.contains("line 4 column 5"), "{message}");
            }
            other => panic!("{other:?}"),
        }
        let e = PolicyDocument::from_yaml(
            "version: 1\nrules:\n  - {id: 1, from: a, to: b, ports: [tcp/0], action: allow}\n",
        )
        .unwrap_err();
        assert!(e.to_string().contains("bad port spec `tcp/0`"), "{e}");
        assert!(
            PolicyDocument::from_yaml("groups: []\n")
                .unwrap_err()
                .to_string()
                .contains("missing field `version`")
        );
    }

    #[test]
    fn validation_reports_every_problem_with_its_field() {
        let mut d = doc();
        d.version = 2;
        d.groups.push(group("web"));
        d.groups.push(group("external"));
        d.rules.push(rule(1, "web", "nowhere", "tcp/1"));
        d.rules.push(rule(3, "web", "db", "tcp/5432"));
        d.process_profiles.insert(
            "ghost".into(),
            vec![
                ProcessEntry {
                    name: "sh".into(),
                    path: "bin/sh".into(),
                    action: Action::Deny,
                    learned: false,
                },
                ProcessEntry {
                    name: "sh".into(),
                    path: "bin/sh".into(),
                    action: Action::Allow,
                    learned: false,
                },
            ],
        );
        d.file_rules.get_mut("db").unwrap().push(FileRule {
            filter: "relative".into(),
            recursive: false,
            behavior: FileBehavior::Monitor,
            apps: vec![],
            learned: false,
        });
        let errors = d.validate().unwrap_err();
        let fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "version",
                "groups[2].name",
                "groups[3].name",
                "rules[2].to",
                "rules[2].id",
                "rules[3]",
                "process_profiles.ghost",
                "process_profiles.ghost[0].path",
                "process_profiles.ghost[1].path",
                "process_profiles.ghost[1]",
                "file_rules.db[1].filter",
            ]
        );
        assert_eq!(errors.len(), 11, "{errors:?}");
        assert!(
            errors[2].reason.contains("built-in group"),
            "{:?}",
            errors[2]
        );
        assert!(
            errors[1].reason.contains("duplicate group `web`"),
            "{:?}",
            errors[1]
        );
        assert!(
            errors[5].reason.contains("duplicate of rules[0] (id 1)"),
            "{:?}",
            errors[5]
        );
    }

    #[test]
    fn special_groups_need_no_definition() {
        let mut d = PolicyDocument::default();
        d.rules.push(rule(7, "containers", "external", "any"));
        assert_eq!(d.validate(), Ok(()));
    }

    #[test]
    fn diff_of_equal_documents_is_empty() {
        assert_eq!(diff(&doc(), &doc()), vec![]);
        let mut reordered = doc();
        reordered.groups.reverse();
        let mut empty_profile = reordered.clone();
        empty_profile.process_profiles.insert("db".into(), vec![]);
        assert_eq!(diff(&doc(), &empty_profile), vec![]);
    }

    #[test]
    fn diff_lists_adds_removes_and_changes_in_order() {
        let cur = doc();
        let mut new = doc();
        new.groups.retain(|g| g.name != "db");
        new.groups[0].network_mode = Mode::Protect;
        new.groups.push(group("cache"));
        new.rules[0].to = "cache".into();
        new.rules.push(rule(10, "web", "cache", "tcp/6379"));
        new.rules.remove(1);
        new.process_profiles.clear();
        new.file_rules.insert(
            "cache".into(),
            vec![FileRule {
                filter: "/data".into(),
                recursive: true,
                behavior: FileBehavior::Monitor,
                apps: vec![],
                learned: false,
            }],
        );
        new.file_rules.remove("db");
        let got: Vec<(ChangeOp, ChangeKind, String)> = diff(&cur, &new)
            .into_iter()
            .map(|c| (c.op, c.kind, c.name))
            .collect();
        use ChangeKind as K;
        use ChangeOp as O;
        assert_eq!(
            got,
            vec![
                (O::Add, K::Group, "cache".to_owned()),
                (O::Remove, K::Group, "db".to_owned()),
                (O::Change, K::Group, "web".to_owned()),
                (O::Change, K::Rule, "1".to_owned()),
                (O::Remove, K::Rule, "2".to_owned()),
                (O::Add, K::Rule, "10".to_owned()),
                (O::Remove, K::ProcessProfile, "web".to_owned()),
                (O::Add, K::FileRules, "cache".to_owned()),
                (O::Remove, K::FileRules, "db".to_owned()),
            ]
        );
        let c = diff(&cur, &new);
        assert_eq!(c[2].before.as_ref().unwrap()["network_mode"], "monitor");
        assert_eq!(c[2].after.as_ref().unwrap()["network_mode"], "protect");
        assert_eq!(c[0].before, None);
        let wire = serde_json::to_value(&c[6]).unwrap();
        assert_eq!(wire["op"], "remove");
        assert_eq!(wire["kind"], "process_profile");
        assert_eq!(wire["after"], Value::Null);
    }

    #[test]
    fn diff_sees_a_new_rule_order() {
        let cur = doc();
        let mut new = doc();
        new.rules.reverse();
        let c = diff(&cur, &new);
        assert_eq!(c.len(), 1);
        assert_eq!(
            (c[0].op, c[0].kind, c[0].name.as_str()),
            (ChangeOp::Change, ChangeKind::Rule, "order")
        );
        assert_eq!(c[0].before, Some(serde_json::json!([1, 2])));
        assert_eq!(c[0].after, Some(serde_json::json!([2, 1])));
    }

    #[test]
    fn shipped_example_parses_and_validates() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../config/policy-example.yaml");
        let text = std::fs::read_to_string(path).unwrap();
        let d = PolicyDocument::from_yaml(&text).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(d.validate(), Ok(()));
        assert!(d.groups.len() >= 3 && d.rules.len() >= 3);
        assert!(!d.process_profiles.is_empty() && !d.file_rules.is_empty());
    }
}
