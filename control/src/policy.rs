//! The policy snapshot `palisade` pushes to the dataplane, built from what control stores.
//!
//! [`build`] resolves control's groups (criteria, three modes) into the dataplane's
//! [`Group`]s (a mode, explicit workload members, address networks), turns each control
//! workload into a dataplane [`Workload`] carrying its group's network mode, and keeps the
//! rules in order. It is pure: the caller passes everything, nothing is read from the store.
//!
//! What is tolerated rather than refused, so that one bad row never stops enforcement:
//! - a rule naming a group that does not exist is left out (logged, and listed in
//!   [`Built::skipped_rules`]); disabled rules are kept, the dataplane skips them;
//! - a workload whose group is not among `groups` gets a group of that name in the default
//!   mode ([`BuildOptions::default_mode`], `discover` unless configured);
//! - a control group named like a special group (`external`, `nodes`, `containers`) is left
//!   out (special groups need no definition).
//!
//! What is refused: two groups, two rules or two workloads with one name or id
//! ([`PolicyError`] from [`Policy::validate`]).

use std::collections::{BTreeMap, HashSet};

use dataplane::policy::model::special;
use dataplane::policy::{Group, Mode, Policy, PolicyError, Rule, Workload};
use ipnet::IpNet;

use crate::model;

/// Settings of [`build_with`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct BuildOptions {
    /// Network mode of a workload whose group is unknown (`discover` by default).
    pub default_mode: Mode,
}

/// A snapshot and what was left out of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Built {
    /// The snapshot, valid for [`Policy::validate`].
    pub policy: Policy,
    /// Ids of rules left out because a group they name does not exist.
    pub skipped_rules: Vec<u32>,
}

/// [`build_with`] with the default options (unknown groups are in `discover`).
pub fn build(
    groups: &[model::Group],
    rules: &[Rule],
    workloads: &[model::Workload],
    nodes: &[IpNet],
    generation: u64,
) -> Result<Policy, PolicyError> {
    build_with(
        groups,
        rules,
        workloads,
        nodes,
        generation,
        BuildOptions::default(),
    )
    .map(|b| b.policy)
}

/// The dataplane snapshot for control's groups, rules, workloads and nodes; see the module
/// documentation for what is tolerated and what is refused.
pub fn build_with(
    groups: &[model::Group],
    rules: &[Rule],
    workloads: &[model::Workload],
    nodes: &[IpNet],
    generation: u64,
    opts: BuildOptions,
) -> Result<Built, PolicyError> {
    let mut out: Vec<Group> = Vec::with_capacity(groups.len());
    // Group name -> network mode, for workloads.
    let mut modes: BTreeMap<&str, Mode> = BTreeMap::new();
    for g in groups {
        if special::ALL.contains(&g.name.as_str()) {
            tracing::warn!(group = %g.name, "a group named like a built-in group is left out of the dataplane policy");
            continue;
        }
        let members = workloads
            .iter()
            .filter(|w| g.matches(&w.meta()))
            .map(|w| w.id.clone())
            .collect();
        let cidrs = g
            .criteria
            .iter()
            .filter_map(model::Criterion::cidr)
            .collect();
        modes.entry(&g.name).or_insert(g.network_mode);
        out.push(Group {
            name: g.name.clone(),
            mode: g.network_mode,
            members,
            cidrs,
        });
    }

    let mut dp_workloads = Vec::with_capacity(workloads.len());
    let mut added: HashSet<String> = HashSet::new();
    for w in workloads {
        let group = if w.group.is_empty() {
            model::auto_group(&w.image, &w.labels)
        } else {
            w.group.clone()
        };
        let mode = match modes.get(group.as_str()) {
            Some(m) => *m,
            None => {
                if !special::ALL.contains(&group.as_str()) && added.insert(group.clone()) {
                    tracing::debug!(workload = %w.id, group = %group, mode = opts.default_mode.name(),
                        "workload group not defined; added in the default mode");
                    out.push(Group {
                        name: group.clone(),
                        mode: opts.default_mode,
                        members: vec![],
                        cidrs: vec![],
                    });
                }
                opts.default_mode
            }
        };
        dp_workloads.push(Workload {
            id: w.id.clone(),
            group,
            mode,
            macs: w.macs.clone(),
            ips: w.ips.clone(),
            exempt: w.exempt,
        });
    }

    let known: HashSet<&str> = out
        .iter()
        .map(|g| g.name.as_str())
        .chain(special::ALL)
        .collect();
    let mut kept = Vec::with_capacity(rules.len());
    let mut skipped_rules = Vec::new();
    for r in rules {
        match [&r.from, &r.to]
            .into_iter()
            .find(|g| !known.contains(g.as_str()))
        {
            Some(missing) => {
                tracing::warn!(rule = r.id, group = %missing, "rule names a group that does not exist; left out of the dataplane policy");
                skipped_rules.push(r.id);
            }
            None => kept.push(r.clone()),
        }
    }

    let policy = Policy {
        generation,
        groups: out,
        rules: kept,
        workloads: dp_workloads,
        nodes: nodes.to_vec(),
    };
    policy.validate()?;
    Ok(Built {
        policy,
        skipped_rules,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Criterion, CriterionKey, CriterionOp};
    use dataplane::policy::{Action, PortSpec};

    fn group(name: &str, criteria: Vec<Criterion>, mode: Mode) -> model::Group {
        model::Group {
            name: name.into(),
            criteria,
            network_mode: mode,
            process_mode: Mode::Discover,
            file_mode: Mode::Discover,
            learned: criteria_empty_is_learned(name),
            comment: String::new(),
        }
    }

    fn criteria_empty_is_learned(name: &str) -> bool {
        name.starts_with(model::AUTO_PREFIX)
    }

    fn workload(id: &str, image: &str, group: &str, ip: &str) -> model::Workload {
        model::Workload {
            id: id.into(),
            name: format!("{id}-name"),
            image: image.into(),
            labels: BTreeMap::new(),
            group: group.into(),
            ips: vec![ip.parse().unwrap()],
            macs: vec!["02:00:00:00:00:01".parse().unwrap()],
            netns: None,
            veth: None,
            mode: Mode::Discover,
            plumbing: model::Plumbing::None,
            exempt: false,
            source: model::WorkloadSource::Api,
        }
    }

    fn rule(id: u32, from: &str, to: &str) -> Rule {
        Rule {
            id,
            from: from.into(),
            to: to.into(),
            ports: vec![PortSpec::Tcp(80, 80)],
            apps: vec![],
            action: Action::Allow,
            priority: 0,
            learned: false,
            disabled: false,
        }
    }

    fn crit(key: CriterionKey, value: &str) -> Criterion {
        Criterion {
            key,
            op: CriterionOp::Eq,
            value: value.into(),
        }
    }

    #[test]
    fn groups_workloads_and_rules_become_the_dataplane_snapshot() {
        let groups = vec![
            group("auto.nginx", vec![], Mode::Protect),
            group("auto.curl", vec![], Mode::Monitor),
            group(
                "web",
                vec![crit(CriterionKey::Image, "nginx*")],
                Mode::Monitor,
            ),
            group(
                "lab",
                vec![
                    crit(CriterionKey::Address, "198.18.50.0/24"),
                    crit(CriterionKey::Address, "198.19.0.1"),
                ],
                Mode::Discover,
            ),
        ];
        let workloads = vec![
            workload("w1", "nginx:1.27", "auto.nginx", "198.18.0.2"),
            workload("w2", "curl:8", "auto.curl", "198.18.0.1"),
            workload("w3", "nginx:1.26", "", "198.18.0.3"),
        ];
        let mut disabled = rule(2, "auto.curl", "web");
        disabled.disabled = true;
        let rules = vec![
            rule(1, "auto.curl", "auto.nginx"),
            disabled,
            rule(3, "external", "lab"),
        ];
        let nodes: Vec<IpNet> = vec!["198.18.200.0/24".parse().unwrap()];
        let p = build(&groups, &rules, &workloads, &nodes, 7).unwrap();

        assert_eq!(p.generation, 7);
        assert_eq!(p.nodes, nodes);
        let names: Vec<&str> = p.groups.iter().map(|g| g.name.as_str()).collect();
        assert_eq!(names, ["auto.nginx", "auto.curl", "web", "lab"]);
        assert_eq!(
            p.groups[2],
            Group {
                name: "web".into(),
                mode: Mode::Monitor,
                members: vec!["w1".into(), "w3".into()],
                cidrs: vec![],
            }
        );
        assert_eq!(
            p.groups[3],
            Group {
                name: "lab".into(),
                mode: Mode::Discover,
                members: vec![],
                cidrs: vec![
                    "198.18.50.0/24".parse().unwrap(),
                    "198.19.0.1/32".parse().unwrap()
                ],
            }
        );
        assert!(p.groups[0].members.is_empty(), "auto groups match nothing");
        assert_eq!(
            p.workloads[0],
            Workload {
                id: "w1".into(),
                group: "auto.nginx".into(),
                mode: Mode::Protect,
                macs: vec!["02:00:00:00:00:01".parse().unwrap()],
                ips: vec!["198.18.0.2".parse().unwrap()],
                exempt: false,
            }
        );
        assert_eq!(p.workloads[1].mode, Mode::Monitor);
        assert_eq!(p.rules.len(), 3, "disabled rules are kept");
        assert!(p.rules[1].disabled);
        assert_eq!(p.validate(), Ok(()));
    }

    #[test]
    fn unknown_groups_get_the_default_mode_and_empty_group_names_are_derived() {
        let workloads = vec![
            workload("w3", "docker.io/library/nginx:1.26", "", "198.18.0.3"),
            workload("w4", "redis:7", "auto.redis", "198.18.0.4"),
            workload("w5", "redis:7", "auto.redis", "198.18.0.5"),
        ];
        let b = build_with(
            &[],
            &[],
            &workloads,
            &[],
            1,
            BuildOptions {
                default_mode: Mode::Monitor,
            },
        )
        .unwrap();
        let p = b.policy;
        assert_eq!(p.workloads[0].group, "auto.nginx");
        assert!(p.workloads.iter().all(|w| w.mode == Mode::Monitor));
        let names: Vec<(&str, Mode)> = p.groups.iter().map(|g| (g.name.as_str(), g.mode)).collect();
        assert_eq!(
            names,
            [("auto.nginx", Mode::Monitor), ("auto.redis", Mode::Monitor)],
            "one group per unknown name"
        );
        let p = build(&[], &[], &workloads, &[], 1).unwrap();
        assert!(p.workloads.iter().all(|w| w.mode == Mode::Discover));
    }

    #[test]
    fn rules_naming_missing_groups_are_skipped_not_fatal() {
        let groups = vec![group("auto.a", vec![], Mode::Discover)];
        let rules = vec![
            rule(1, "auto.a", "auto.gone"),
            rule(2, "auto.a", "nodes"),
            rule(3, "gone", "external"),
        ];
        let b = build_with(&groups, &rules, &[], &[], 3, BuildOptions::default()).unwrap();
        assert_eq!(b.skipped_rules, [1, 3]);
        assert_eq!(b.policy.rules, [rule(2, "auto.a", "nodes")]);
    }

    #[test]
    fn duplicates_are_refused_and_special_names_left_out() {
        let groups = vec![
            group("auto.a", vec![], Mode::Discover),
            group("auto.a", vec![], Mode::Protect),
        ];
        assert_eq!(
            build(&groups, &[], &[], &[], 1),
            Err(PolicyError::DuplicateGroup("auto.a".into()))
        );
        let groups = vec![group("external", vec![], Mode::Protect)];
        assert!(build(&groups, &[], &[], &[], 1).unwrap().groups.is_empty());
        let rules = vec![rule(5, "external", "nodes"), rule(5, "nodes", "external")];
        assert_eq!(
            build(&[], &rules, &[], &[], 1),
            Err(PolicyError::DuplicateRule(5))
        );
        let w = vec![
            workload("w1", "x", "auto.x", "198.18.0.1"),
            workload("w1", "x", "auto.x", "198.18.0.2"),
        ];
        assert_eq!(
            build(&[], &[], &w, &[], 1),
            Err(PolicyError::DuplicateWorkload("w1".into()))
        );
    }
}
