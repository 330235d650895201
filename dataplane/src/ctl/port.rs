//! Ports on the control socket: the keys of a `[[dataplane.port]]` table as JSON, validated by
//! the config module's own code so that a port is accepted (or refused, with the same message)
//! whether it comes from the file or from control.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::config::{self, ConfigError, MemifRole, PortConfig, PortKind};

/// One port exactly as a `[[dataplane.port]]` table spells it (`name`, `kind`, and the kind's
/// own keys: `iface`, `frames`, `queue`, `socket`, `role`, `id`, `abstract`, `path`, `server`,
/// `client`, `rx_pcap`, `tx_pcap`, `infinite_rx`, `size`, `no_rx`, `queues`). Unvalidated: turn it into a
/// [`PortConfig`] with [`PortSpecDto::to_config`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PortSpecDto {
    /// Port name.
    pub name: String,
    /// Port kind (`af_packet`, `memif`, ...).
    pub kind: String,
    /// Kernel interface (`af_packet`, `af_xdp`, `tap`, `pcap`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iface: Option<String>,
    /// Ring frames per queue (`af_packet`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub frames: Option<u32>,
    /// First device queue (`af_xdp`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queue: Option<u32>,
    /// Socket path (`memif`, `vhost`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub socket: Option<String>,
    /// `server` or `client` (`memif`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    /// Interface id (`memif`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<u32>,
    /// `abstract` in the file.
    #[serde(default, rename = "abstract", skip_serializing_if = "Option::is_none")]
    pub abstract_socket: Option<bool>,
    /// vhost-user socket path (`virtio_user`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// Create the socket (`virtio_user`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server: Option<bool>,
    /// Connect to an existing socket (`vhost`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client: Option<bool>,
    /// pcap file to replay (`pcap`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rx_pcap: Option<String>,
    /// pcap file to write (`pcap`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tx_pcap: Option<String>,
    /// Replay forever (`pcap`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub infinite_rx: Option<bool>,
    /// Synthetic packet size (`null`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<u32>,
    /// Receive nothing (`null`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub no_rx: Option<bool>,
    /// Rx/tx queue pairs (every kind but `pcap` and `ring`; default 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queues: Option<u16>,
}

/// Path shown in the messages of ports that came over the socket.
const ORIGIN: &str = "<control socket>";

impl PortSpecDto {
    /// Validates the port with [`config::parse_port`]: the same checks and messages as a
    /// `[[dataplane.port]]` table in `palisade.toml`.
    pub fn to_config(&self) -> Result<PortConfig, ConfigError> {
        let text = toml::to_string(self).map_err(|e| ConfigError::Invalid {
            path: ORIGIN.into(),
            line: 1,
            column: 1,
            message: format!("port cannot be written as TOML: {e}"),
        })?;
        config::parse_port(&text, Path::new(ORIGIN))
    }
}

impl From<&PortConfig> for PortSpecDto {
    fn from(p: &PortConfig) -> Self {
        let mut d = Self {
            name: p.name.clone(),
            kind: p.kind.name().to_owned(),
            queues: (p.queues != 1).then_some(p.queues),
            ..Self::default()
        };
        match &p.kind {
            PortKind::AfPacket { iface, frames } => {
                d.iface = Some(iface.clone());
                d.frames = *frames;
            }
            PortKind::AfXdp { iface, queue } => {
                d.iface = Some(iface.clone());
                d.queue = Some(*queue);
            }
            PortKind::Memif {
                socket,
                role,
                id,
                abstract_socket,
            } => {
                d.socket = Some(socket.clone());
                d.role = Some(
                    match role {
                        MemifRole::Server => "server",
                        MemifRole::Client => "client",
                    }
                    .to_owned(),
                );
                d.id = Some(*id);
                d.abstract_socket = Some(*abstract_socket);
            }
            PortKind::VirtioUser { path, server } => {
                d.path = Some(path.clone());
                d.server = Some(*server);
            }
            PortKind::Vhost { socket, client } => {
                d.socket = Some(socket.clone());
                d.client = Some(*client);
            }
            PortKind::Tap { iface } => d.iface = Some(iface.clone()),
            PortKind::Pcap {
                rx_pcap,
                tx_pcap,
                iface,
                infinite_rx,
            } => {
                d.rx_pcap.clone_from(rx_pcap);
                d.tx_pcap.clone_from(tx_pcap);
                d.iface.clone_from(iface);
                d.infinite_rx = Some(*infinite_rx);
            }
            PortKind::Null { size, no_rx } => {
                d.size = Some(*size);
                d.no_rx = Some(*no_rx);
            }
            PortKind::Ring => {}
        }
        d
    }
}

/// Validates both ports of an `AddPair` and checks they can form a pair: two names, and no
/// kernel interface used twice. (Clashes with ports already running are the backend's to find.)
pub fn pair_configs(ports: &[PortSpecDto; 2]) -> Result<[PortConfig; 2], String> {
    let a = ports[0].to_config().map_err(|e| e.message())?;
    let b = ports[1].to_config().map_err(|e| e.message())?;
    if a.name == b.name {
        return Err(format!("both ports of the pair are named `{}`", a.name));
    }
    config::check_pair_queues(&a, &b)?;
    if let (Some(x), Some(y)) = (a.kind.required_iface(), b.kind.required_iface())
        && x == y
    {
        return Err(format!(
            "ports `{}` and `{}` both use interface `{x}`",
            a.name, b.name
        ));
    }
    Ok([a, b])
}
