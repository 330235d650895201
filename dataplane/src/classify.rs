//! Offline classification: a capture file through the [`pipeline`](crate::pipeline), one
//! record per flow (5-tuple, application, packets and bytes each way) plus the malformed
//! counts. `palisade-dp classify FILE` prints it; the DPI accuracy tests compare it with
//! nDPI's answers.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use serde::Serialize;

use crate::capture::{self, CaptureError, FrameError};
use crate::conntrack::{Dir, Timestamp};
use crate::pipeline::{Config, Pipeline};
use crate::policy::ActivePolicy;
use crate::wire::Malformed;

/// One flow of the capture.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FlowRecord {
    /// `tcp`, `udp`, `icmp`, `icmpv6` or `ip<N>`.
    pub proto: String,
    /// The side that opened the flow.
    pub client: SocketAddr,
    /// The other side.
    pub server: SocketAddr,
    /// Lower-case application name, `unknown` when undecided.
    pub app: &'static str,
    /// Packets, both directions.
    pub packets: u64,
    /// Bytes (IP datagrams), both directions.
    pub bytes: u64,
    /// Packets client to server.
    pub client_packets: u64,
    /// Packets server to client.
    pub server_packets: u64,
    /// Bytes client to server.
    pub client_bytes: u64,
    /// Bytes server to client.
    pub server_bytes: u64,
}

/// What a capture holds.
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// Flows, in order of their first packet.
    pub flows: Vec<FlowRecord>,
    /// Records read.
    pub frames: u64,
    /// Malformed frames by reason (reasons with a count only).
    pub malformed: Vec<(Malformed, u64)>,
    /// Records of a link type the reader does not know.
    pub unsupported_link: u64,
    /// Where the file is damaged, if it is.
    pub damage: Option<String>,
}

/// Name of an IP protocol as `classify` prints it.
pub fn proto_name(proto: u8) -> String {
    match proto {
        1 => "icmp".into(),
        6 => "tcp".into(),
        17 => "udp".into(),
        58 => "icmpv6".into(),
        n => format!("ip{n}"),
    }
}

/// Classifies every flow of the capture at `path`.
pub fn classify(path: &Path) -> Result<Report, CaptureError> {
    let cap = capture::read(path)?;
    let mut cfg = Config::with_capacity((cap.records.len() + 64).next_power_of_two());
    // One record per 5-tuple over the whole capture: nothing times out while replaying.
    let day = Duration::from_secs(86_400);
    let t = &mut cfg.conntrack.timeouts;
    (
        t.opening,
        t.established,
        t.half_closed,
        t.time_wait,
        t.closed,
        t.udp,
        t.icmp,
        t.other,
    ) = (day, day, day, day, day, day, day, day);
    let mut pipe: Pipeline<()> = match Pipeline::new(cfg, None) {
        Ok(p) => p,
        Err(e) => {
            return Err(CaptureError::Format {
                path: path.to_path_buf(),
                reason: format!("cannot size the connection table: {e}"),
            });
        }
    };
    // No policy: classification only (nothing is a workload, nothing is enforced).
    let policy = ActivePolicy::empty().map_err(|e| CaptureError::Format {
        path: path.to_path_buf(),
        reason: format!("empty policy: {e}"),
    })?;
    let mut report = Report {
        frames: cap.records.len() as u64,
        damage: cap.damage.clone(),
        ..Report::default()
    };
    for r in &cap.records {
        let now = Timestamp::from_nanos(r.ts_ns);
        match capture::to_packet(r.link, &r.data) {
            Ok(p) => {
                let _ = pipe.packet(&p, now, &policy, (), |_, _| {}, |_| {});
            }
            Err(FrameError::Malformed(m)) => pipe.counters.malformed[m.index()].add(1),
            Err(FrameError::UnsupportedLink(_)) => report.unsupported_link += 1,
        }
    }
    let mut sessions: Vec<_> = pipe.sessions().iter().collect();
    sessions.sort_by_key(|s| (s.first_seen(), s.client(), s.server()));
    report.flows = sessions
        .into_iter()
        .map(|s| {
            let c2s = s.counters(Dir::ClientToServer);
            let s2c = s.counters(Dir::ServerToClient);
            FlowRecord {
                proto: proto_name(s.proto()),
                client: s.client(),
                server: s.server(),
                app: s.ext.dpi.app().name(),
                packets: c2s.packets + s2c.packets,
                bytes: c2s.bytes + s2c.bytes,
                client_packets: c2s.packets,
                server_packets: s2c.packets,
                client_bytes: c2s.bytes,
                server_bytes: s2c.bytes,
            }
        })
        .collect();
    report.malformed = Malformed::ALL
        .iter()
        .map(|m| (*m, pipe.counters.malformed[m.index()].get()))
        .filter(|(_, n)| *n > 0)
        .collect();
    Ok(report)
}

impl Report {
    /// The human-readable form: a line per flow, then the totals.
    pub fn to_text(&self) -> String {
        let mut s = String::new();
        for f in &self.flows {
            s.push_str(&format!(
                "{:<6} {:>45} -> {:<45} {:<12} pkts {}/{} bytes {}/{}\n",
                f.proto,
                f.client.to_string(),
                f.server.to_string(),
                f.app,
                f.client_packets,
                f.server_packets,
                f.client_bytes,
                f.server_bytes
            ));
        }
        s.push_str(&format!(
            "frames {} flows {}",
            self.frames,
            self.flows.len()
        ));
        for (m, n) in &self.malformed {
            s.push_str(&format!(" {}={n}", m.name()));
        }
        if self.unsupported_link > 0 {
            s.push_str(&format!(" unsupported_link={}", self.unsupported_link));
        }
        s.push('\n');
        if let Some(d) = &self.damage {
            s.push_str(&format!("capture damaged: {d}\n"));
        }
        s
    }

    /// One JSON object per line and flow.
    pub fn to_json_lines(&self) -> String {
        let mut s = String::new();
        for f in &self.flows {
            if let Ok(j) = serde_json::to_string(f) {
                s.push_str(&j);
                s.push('\n');
            }
        }
        s
    }

    /// The totals as one JSON object (`classify --json` prints it on stderr, so that stdout
    /// holds flows only).
    pub fn summary_json(&self) -> String {
        let summary = serde_json::json!({
            "summary": {
                "frames": self.frames,
                "flows": self.flows.len(),
                "malformed": self.malformed.iter().map(|(m, n)| (m.name(), *n)).collect::<std::collections::BTreeMap<_, _>>(),
                "unsupported_link": self.unsupported_link,
                "damage": self.damage,
            }
        });
        summary.to_string()
    }
}
