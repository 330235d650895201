//! The policy model shared by `palisade` (which owns and edits it) and `palisade-dp` (which
//! compiles and enforces it), exactly as ARCHITECTURE.md defines groups and network rules.
//!
//! Everything here is plain data with serde: the control socket carries it, the REST API
//! will expose it. [`Policy::validate`] checks cross-references; it never panics.

use std::collections::HashSet;
use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use ipnet::IpNet;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::dpi::App;

/// How a group's (and its workloads') network traffic is treated.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, Default,
)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Forward everything; report connections so control can learn rules.
    #[default]
    Discover,
    /// Forward everything; raise a violation for what no allow rule covers or a deny rule
    /// matches.
    Monitor,
    /// Drop what no allow rule covers or a deny rule matches, and raise a violation.
    Protect,
}

impl Mode {
    /// Lower-case name.
    pub fn name(self) -> &'static str {
        match self {
            Self::Discover => "discover",
            Self::Monitor => "monitor",
            Self::Protect => "protect",
        }
    }
}

/// A rule's action.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// Allow the connection.
    Allow,
    /// Deny it: drop in protect, alert otherwise.
    Deny,
}

/// Names of the groups every policy has without defining them.
pub mod special {
    /// Any address that is no known workload or node.
    pub const EXTERNAL: &str = "external";
    /// The host nodes' addresses ([`super::Policy::nodes`]).
    pub const NODES: &str = "nodes";
    /// Every workload.
    pub const CONTAINERS: &str = "containers";
    /// All three names.
    pub const ALL: [&str; 3] = [EXTERNAL, NODES, CONTAINERS];
}

/// One entry of a rule's `ports`: `tcp/80`, `udp/53`, `tcp/8000-8080`, `icmp`, `any`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PortSpec {
    /// Every protocol and port.
    Any,
    /// ICMP and ICMPv6.
    Icmp,
    /// TCP ports `lo..=hi`.
    Tcp(u16, u16),
    /// UDP ports `lo..=hi`.
    Udp(u16, u16),
}

/// A port spec that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("bad port spec `{0}`: expected tcp/PORT, udp/PORT, tcp/LO-HI, udp/LO-HI, icmp or any")]
pub struct BadPortSpec(pub String);

impl PortSpec {
    /// Whether a packet of IP protocol `proto` to `port` matches.
    #[inline]
    pub fn matches(&self, proto: u8, port: u16) -> bool {
        match *self {
            Self::Any => true,
            Self::Icmp => proto == 1 || proto == 58,
            Self::Tcp(lo, hi) => proto == 6 && (lo..=hi).contains(&port),
            Self::Udp(lo, hi) => proto == 17 && (lo..=hi).contains(&port),
        }
    }
}

impl FromStr for PortSpec {
    type Err = BadPortSpec;

    fn from_str(s: &str) -> Result<Self, BadPortSpec> {
        let bad = || BadPortSpec(s.to_owned());
        match s {
            "any" => return Ok(Self::Any),
            "icmp" => return Ok(Self::Icmp),
            _ => {}
        }
        let (proto, ports) = s.split_once('/').ok_or_else(bad)?;
        let port = |p: &str| -> Result<u16, BadPortSpec> {
            match p.parse::<u16>() {
                Ok(n) if n > 0 => Ok(n),
                _ => Err(bad()),
            }
        };
        let (lo, hi) = match ports.split_once('-') {
            Some((a, b)) => (port(a)?, port(b)?),
            None => {
                let p = port(ports)?;
                (p, p)
            }
        };
        if lo > hi {
            return Err(bad());
        }
        match proto {
            "tcp" => Ok(Self::Tcp(lo, hi)),
            "udp" => Ok(Self::Udp(lo, hi)),
            _ => Err(bad()),
        }
    }
}

impl fmt::Display for PortSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::Any => f.write_str("any"),
            Self::Icmp => f.write_str("icmp"),
            Self::Tcp(lo, hi) | Self::Udp(lo, hi) => {
                let p = if matches!(self, Self::Tcp(..)) {
                    "tcp"
                } else {
                    "udp"
                };
                if lo == hi {
                    write!(f, "{p}/{lo}")
                } else {
                    write!(f, "{p}/{lo}-{hi}")
                }
            }
        }
    }
}

impl Serialize for PortSpec {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for PortSpec {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// Applications in rules travel by their lower-case names (`"http"`).
mod app_names {
    use serde::{Deserialize, Deserializer, Serializer};

    use crate::dpi::App;

    pub fn serialize<S: Serializer>(apps: &[App], s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(apps.iter().map(|a| a.name()))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<App>, D::Error> {
        let names = Vec::<String>::deserialize(d)?;
        names
            .iter()
            .map(|n| {
                App::from_name(n)
                    .filter(|a| *a != App::Unknown)
                    .ok_or_else(|| serde::de::Error::custom(format!("unknown application `{n}`")))
            })
            .collect()
    }
}

/// A MAC address, `aa:bb:cc:dd:ee:ff` on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Mac(pub [u8; 6]);

impl fmt::Display for Mac {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let m = self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            m[0], m[1], m[2], m[3], m[4], m[5]
        )
    }
}

impl FromStr for Mac {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let mut m = [0u8; 6];
        let mut parts = s.split(':');
        for b in &mut m {
            let p = parts.next().ok_or_else(|| format!("bad MAC `{s}`"))?;
            if p.len() != 2 {
                return Err(format!("bad MAC `{s}`"));
            }
            *b = u8::from_str_radix(p, 16).map_err(|_| format!("bad MAC `{s}`"))?;
        }
        if parts.next().is_some() {
            return Err(format!("bad MAC `{s}`"));
        }
        Ok(Self(m))
    }
}

impl Serialize for Mac {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Mac {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

/// A container (or other endpoint) the dataplane enforces for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Workload {
    /// Stable id (the container id).
    pub id: String,
    /// Its group (`auto.web`, or a user group).
    pub group: String,
    /// Network mode (the group's, unless overridden).
    pub mode: Mode,
    /// Interface MACs.
    #[serde(default)]
    pub macs: Vec<Mac>,
    /// Interface addresses.
    #[serde(default)]
    pub ips: Vec<IpAddr>,
    /// Host-network, system-namespace and Palisade's own containers: never dropped, only
    /// alerted on.
    #[serde(default)]
    pub exempt: bool,
}

/// A group as the dataplane needs it: its mode and how members are found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Group {
    /// Unique name.
    pub name: String,
    /// Network mode of its workloads.
    pub mode: Mode,
    /// Workloads that belong to it besides those naming it as their `group` (control resolves
    /// criteria such as labels into this list).
    #[serde(default)]
    pub members: Vec<String>,
    /// Address-group members: every address in these networks.
    #[serde(default)]
    pub cidrs: Vec<IpNet>,
}

/// A network rule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    /// Unique id (learned rules start at 10000).
    pub id: u32,
    /// Client group.
    pub from: String,
    /// Server group.
    pub to: String,
    /// Protocols and server ports; empty means `any`.
    #[serde(default)]
    pub ports: Vec<PortSpec>,
    /// Applications; empty means any application.
    #[serde(default, with = "app_names")]
    pub apps: Vec<App>,
    /// Allow or deny.
    pub action: Action,
    /// Higher first; rules of equal priority keep their list order.
    #[serde(default)]
    pub priority: i32,
    /// Learned in discover mode.
    #[serde(default)]
    pub learned: bool,
    /// Kept but not enforced.
    #[serde(default)]
    pub disabled: bool,
}

/// The whole network policy the dataplane enforces.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    /// Increases with every change; acknowledged once every worker runs it.
    pub generation: u64,
    /// Groups (special groups need no definition).
    #[serde(default)]
    pub groups: Vec<Group>,
    /// Rules, in order.
    #[serde(default)]
    pub rules: Vec<Rule>,
    /// Workloads known when the snapshot was made (more may arrive one by one).
    #[serde(default)]
    pub workloads: Vec<Workload>,
    /// Host node addresses (the `nodes` group).
    #[serde(default)]
    pub nodes: Vec<IpNet>,
}

/// A policy that references something that does not exist, or repeats itself.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    /// Two groups with one name, or a group named like a special group.
    #[error("group `{0}` is defined twice or shadows a special group")]
    DuplicateGroup(String),
    /// Two rules with one id.
    #[error("rule {0} is defined twice")]
    DuplicateRule(u32),
    /// A rule names a group no one defined.
    #[error("rule {rule} names group `{group}`, which does not exist")]
    UnknownGroup {
        /// The rule.
        rule: u32,
        /// The missing group.
        group: String,
    },
    /// Two workloads with one id.
    #[error("workload `{0}` is defined twice")]
    DuplicateWorkload(String),
    /// A workload's group does not exist.
    #[error("workload `{workload}` is in group `{group}`, which does not exist")]
    WorkloadGroup {
        /// The workload.
        workload: String,
        /// The missing group.
        group: String,
    },
}

impl Policy {
    /// Checks names and references: unique groups, rules and workloads; every group a rule or
    /// workload names exists (or is special).
    pub fn validate(&self) -> Result<(), PolicyError> {
        let mut groups: HashSet<&str> = special::ALL.into_iter().collect();
        for g in &self.groups {
            if !groups.insert(&g.name) {
                return Err(PolicyError::DuplicateGroup(g.name.clone()));
            }
        }
        let mut ids = HashSet::new();
        for r in &self.rules {
            if !ids.insert(r.id) {
                return Err(PolicyError::DuplicateRule(r.id));
            }
            for g in [&r.from, &r.to] {
                if !groups.contains(g.as_str()) {
                    return Err(PolicyError::UnknownGroup {
                        rule: r.id,
                        group: g.clone(),
                    });
                }
            }
        }
        let mut wids = HashSet::new();
        for w in &self.workloads {
            if !wids.insert(&w.id) {
                return Err(PolicyError::DuplicateWorkload(w.id.clone()));
            }
            if !groups.contains(w.group.as_str()) {
                return Err(PolicyError::WorkloadGroup {
                    workload: w.id.clone(),
                    group: w.group.clone(),
                });
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_specs_parse_and_print() {
        for (s, p) in [
            ("any", PortSpec::Any),
            ("icmp", PortSpec::Icmp),
            ("tcp/80", PortSpec::Tcp(80, 80)),
            ("udp/53", PortSpec::Udp(53, 53)),
            ("tcp/8000-8080", PortSpec::Tcp(8000, 8080)),
        ] {
            assert_eq!(s.parse::<PortSpec>(), Ok(p));
            assert_eq!(p.to_string(), s);
        }
        for bad in [
            "",
            "tcp",
            "tcp/",
            "tcp/0",
            "tcp/70000",
            "sctp/1",
            "tcp/9-8",
            "tcp/a",
            "udp/1-",
            "ANY",
        ] {
            assert_eq!(
                bad.parse::<PortSpec>(),
                Err(BadPortSpec(bad.into())),
                "{bad}"
            );
        }
        assert!(PortSpec::Tcp(8000, 8080).matches(6, 8080));
        assert!(!PortSpec::Tcp(8000, 8080).matches(17, 8080));
        assert!(PortSpec::Icmp.matches(58, 0));
    }

    #[test]
    fn rule_json_is_the_architecture_shape() {
        let json = r#"{"id": 10001, "from": "auto.client", "to": "auto.web", "ports": ["tcp/80"],
            "apps": ["http"], "action": "allow", "priority": 0, "learned": true, "disabled": false}"#;
        let r: Rule = serde_json::from_str(json).unwrap();
        assert_eq!(r.ports, vec![PortSpec::Tcp(80, 80)]);
        assert_eq!(r.apps, vec![App::Http]);
        let back = serde_json::to_value(&r).unwrap();
        assert_eq!(back["apps"][0], "http");
        assert_eq!(back["ports"][0], "tcp/80");
        let bad: Result<Rule, _> = serde_json::from_str(&json.replace("\"http\"", "\"gopher\""));
        assert!(
            bad.unwrap_err()
                .to_string()
                .contains("unknown application `gopher`")
        );
    }

    #[test]
    fn validation_names_what_is_wrong() {
        let g = |n: &str| Group {
            name: n.into(),
            mode: Mode::Monitor,
            members: vec![],
            cidrs: vec![],
        };
        let r = |id, from: &str, to: &str| Rule {
            id,
            from: from.into(),
            to: to.into(),
            ports: vec![],
            apps: vec![],
            action: Action::Allow,
            priority: 0,
            learned: false,
            disabled: false,
        };
        let mut p = Policy {
            generation: 1,
            groups: vec![g("web")],
            rules: vec![r(1, "external", "web")],
            ..Policy::default()
        };
        assert_eq!(p.validate(), Ok(()));
        p.rules.push(r(1, "web", "web"));
        assert_eq!(p.validate(), Err(PolicyError::DuplicateRule(1)));
        p.rules[1].id = 2;
        p.rules[1].to = "db".into();
        assert_eq!(
            p.validate(),
            Err(PolicyError::UnknownGroup {
                rule: 2,
                group: "db".into()
            })
        );
        p.rules.pop();
        p.groups.push(g("nodes"));
        assert_eq!(
            p.validate(),
            Err(PolicyError::DuplicateGroup("nodes".into()))
        );
        p.groups.pop();
        p.workloads.push(Workload {
            id: "c1".into(),
            group: "db".into(),
            mode: Mode::Protect,
            macs: vec![],
            ips: vec![],
            exempt: false,
        });
        assert_eq!(
            p.validate(),
            Err(PolicyError::WorkloadGroup {
                workload: "c1".into(),
                group: "db".into()
            })
        );
    }

    #[test]
    fn macs() {
        let m: Mac = "02:00:0a:ff:00:01".parse().unwrap();
        assert_eq!(m.0, [2, 0, 10, 255, 0, 1]);
        assert_eq!(m.to_string(), "02:00:0a:ff:00:01");
        for bad in [
            "",
            "02:00:0a:ff:00",
            "02:00:0a:ff:00:01:02",
            "2:0:a:ff:0:1",
            "zz:00:0a:ff:00:01",
        ] {
            assert!(bad.parse::<Mac>().is_err(), "{bad}");
        }
    }
}
