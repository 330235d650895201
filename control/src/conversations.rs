//! The network graph behind `/v1/conversations`: connection records from the dataplane added
//! up per (client group, server group, protocol, server port, application), in memory (like
//! NeuVector's graph, it is rebuilt from traffic after a restart). Bounded: past
//! [`MAX_EDGES`] the edge seen longest ago is forgotten.

use std::collections::HashMap;

use dataplane::report::{ConnectionRecord, Verdict};
use serde::Serialize;
use utoipa::ToSchema;

/// Edges kept at most.
pub const MAX_EDGES: usize = 100_000;

/// One edge of the graph.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct Edge {
    /// Client group (`external`, `nodes`, a workload's group, an address group).
    pub from: String,
    /// Server group.
    pub to: String,
    /// `tcp`, `udp`, `icmp`, or the IP protocol number.
    pub protocol: String,
    /// Server port (0 for ICMP).
    pub port: u16,
    /// Application (`unknown` when DPI did not decide).
    pub app: String,
    /// Connections.
    pub sessions: u64,
    /// Bytes, both directions.
    pub bytes: u64,
    /// Connections forwarded under an allow rule.
    pub allowed: u64,
    /// Connections forwarded and reported (monitor, discover without a rule).
    pub alerted: u64,
    /// Connections dropped.
    pub denied: u64,
    /// Unix ms.
    pub first_seen_ms: u64,
    /// Unix ms.
    pub last_seen_ms: u64,
    /// Client workloads seen on it.
    pub clients: Vec<String>,
    /// Server workloads seen on it.
    pub servers: Vec<String>,
}

/// A node of the graph.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct Node {
    /// Group name.
    pub group: String,
    /// Workloads of the group seen in traffic.
    pub workloads: Vec<String>,
}

/// Nodes and edges.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, ToSchema)]
pub struct Graph {
    /// Groups seen in traffic, by name.
    pub nodes: Vec<Node>,
    /// Edges, by (from, to, protocol, port, app).
    pub edges: Vec<Edge>,
}

type Key = (String, String, u8, u16, String);

/// The graph being built.
#[derive(Debug, Default)]
pub struct Conversations {
    edges: HashMap<Key, Edge>,
}

fn protocol(p: u8) -> String {
    match p {
        6 => "tcp".into(),
        17 => "udp".into(),
        1 | 58 => "icmp".into(),
        n => n.to_string(),
    }
}

fn add(v: &mut Vec<String>, s: &Option<String>) {
    if let Some(s) = s
        && !v.contains(s)
        && v.len() < 256
    {
        v.push(s.clone());
        v.sort();
    }
}

impl Conversations {
    /// Adds one record.
    pub fn add(&mut self, r: &ConnectionRecord) {
        let port = if matches!(r.proto, 1 | 58) {
            0
        } else {
            r.server.addr.port()
        };
        let key = (
            r.client.group.clone(),
            r.server.group.clone(),
            r.proto,
            port,
            r.app.clone(),
        );
        if !self.edges.contains_key(&key) && self.edges.len() >= MAX_EDGES {
            let oldest = self
                .edges
                .iter()
                .min_by_key(|(_, e)| e.last_seen_ms)
                .map(|(k, _)| k.clone());
            if let Some(k) = oldest {
                self.edges.remove(&k);
            }
        }
        let e = self.edges.entry(key).or_insert_with(|| Edge {
            from: r.client.group.clone(),
            to: r.server.group.clone(),
            protocol: protocol(r.proto),
            port,
            app: r.app.clone(),
            sessions: 0,
            bytes: 0,
            allowed: 0,
            alerted: 0,
            denied: 0,
            first_seen_ms: r.first_seen_ms,
            last_seen_ms: r.last_seen_ms,
            clients: Vec::new(),
            servers: Vec::new(),
        });
        e.sessions = e.sessions.saturating_add(r.sessions);
        e.bytes = e.bytes.saturating_add(r.bytes);
        let n = match r.verdict {
            Verdict::Allowed => &mut e.allowed,
            Verdict::Alerted => &mut e.alerted,
            Verdict::Denied => &mut e.denied,
        };
        *n = n.saturating_add(r.sessions);
        e.first_seen_ms = e.first_seen_ms.min(r.first_seen_ms);
        e.last_seen_ms = e.last_seen_ms.max(r.last_seen_ms);
        add(&mut e.clients, &r.client.workload);
        add(&mut e.servers, &r.server.workload);
    }

    /// The graph, optionally only edges touching `group`.
    pub fn graph(&self, group: Option<&str>) -> Graph {
        let mut edges: Vec<Edge> = self
            .edges
            .values()
            .filter(|e| group.is_none_or(|g| e.from == g || e.to == g))
            .cloned()
            .collect();
        edges.sort_by(|a, b| {
            (&a.from, &a.to, &a.protocol, a.port, &a.app).cmp(&(
                &b.from,
                &b.to,
                &b.protocol,
                b.port,
                &b.app,
            ))
        });
        let mut nodes: std::collections::BTreeMap<String, Vec<String>> = Default::default();
        for e in &edges {
            for (g, ws) in [(&e.from, &e.clients), (&e.to, &e.servers)] {
                let n = nodes.entry(g.clone()).or_default();
                for w in ws {
                    if !n.contains(w) {
                        n.push(w.clone());
                    }
                }
            }
        }
        Graph {
            nodes: nodes
                .into_iter()
                .map(|(group, mut workloads)| {
                    workloads.sort();
                    Node { group, workloads }
                })
                .collect(),
            edges,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dataplane::policy::Mode;
    use dataplane::report::Endpoint;

    fn rec(
        client: &str,
        server: &str,
        port: u16,
        verdict: Verdict,
        sessions: u64,
    ) -> ConnectionRecord {
        ConnectionRecord {
            client: Endpoint {
                addr: "198.18.0.1:0".parse().unwrap(),
                workload: Some(format!("{client}-1")),
                group: client.into(),
            },
            server: Endpoint {
                addr: format!("198.18.0.2:{port}").parse().unwrap(),
                workload: Some(format!("{server}-1")),
                group: server.into(),
            },
            proto: 6,
            app: "http".into(),
            sessions,
            packets: 10,
            bytes: 1000,
            first_seen_ms: 5,
            last_seen_ms: 9,
            verdict,
            rule: None,
            mode: Mode::Monitor,
            answered: true,
        }
    }

    #[test]
    fn records_add_up_per_edge_with_verdicts() {
        let mut c = Conversations::default();
        c.add(&rec("auto.a", "auto.b", 80, Verdict::Allowed, 2));
        c.add(&rec("auto.a", "auto.b", 80, Verdict::Denied, 1));
        c.add(&rec("auto.a", "auto.c", 443, Verdict::Alerted, 4));
        let g = c.graph(None);
        assert_eq!(g.edges.len(), 2);
        let e = &g.edges[0];
        assert_eq!(
            (e.to.as_str(), e.sessions, e.allowed, e.denied, e.bytes),
            ("auto.b", 3, 2, 1, 2000)
        );
        assert_eq!(e.clients, vec!["auto.a-1".to_owned()]);
        assert_eq!(g.nodes.len(), 3);
        assert_eq!(c.graph(Some("auto.c")).edges.len(), 1);
    }
}
