//! Ethernet ports: virtual devices hotplugged by devargs (`rte_eal_hotplug_add`), configured
//! with the config's number of rx/tx queue pairs (RSS with a symmetric key where the PMD hashes
//! in hardware), started, stopped, and removed again on drop.

use std::ffi::CString;
use std::sync::Arc;

use super::{BURST, DpdkError, Eal, Mbuf, Mempool, Ring, log};
use crate::config::PortConfig;

/// A DPDK ethdev port id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PortId(pub u16);

/// A queue index on a port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct QueueId(pub u16);

/// The PMD's own counters (`rte_eth_stats`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PortStats {
    /// Packets received.
    pub ipackets: u64,
    /// Packets sent.
    pub opackets: u64,
    /// Bytes received.
    pub ibytes: u64,
    /// Bytes sent.
    pub obytes: u64,
    /// Packets the hardware/kernel dropped because no descriptor was free (missed).
    pub imissed: u64,
    /// Erroneous received packets.
    pub ierrors: u64,
    /// Failed transmissions.
    pub oerrors: u64,
    /// Receive failures for want of an mbuf.
    pub rx_nombuf: u64,
}

/// Link state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Link {
    /// Link is up.
    pub up: bool,
    /// Speed in Mbit/s (0 when unknown).
    pub speed_mbps: u32,
    /// Full duplex.
    pub full_duplex: bool,
}

/// An ethernet port. On drop it is stopped, closed and its device removed from the bus, so
/// the same name can be attached again.
#[derive(Debug)]
pub struct Port {
    id: PortId,
    name: String,
    dev_name: String,
    queues: u16,
    /// Whether the port spreads flows over its queues by symmetric RSS (set by `configure`).
    rss: bool,
    configured: bool,
    started: bool,
    pool: Option<Arc<Mempool>>,
    _rings: Vec<Arc<Ring>>,
    _eal: Eal,
}

/// Length of the RSS key when the PMD does not say (`hash_key_size` 0): Toeplitz's 40 bytes.
const RSS_KEY_LEN: usize = 40;

/// A Toeplitz key that gives both directions of a flow the same hash: `6d5a` repeated makes
/// the hash invariant under swapping source and destination addresses and ports (Woo and
/// Park, "Scalable TCP Session Monitoring with Symmetric Receive-side Scaling", 2012). With the
/// same key and the default redirection table on both ports of a pair, a flow and its reply
/// land on the same queue index, hence the same worker and connection table.
fn symmetric_rss_key(len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| if i % 2 == 0 { 0x6d } else { 0x5a })
        .collect()
}

fn cstring(op: &str, s: &str) -> Result<CString, DpdkError> {
    CString::new(s).map_err(|_| DpdkError {
        op: op.to_owned(),
        code: libc::EINVAL,
        reason: format!("{s:?} contains a NUL byte"),
        hint: None,
        log: Vec::new(),
    })
}

fn port_by_name(op: &str, dev_name: &str, mark: u64) -> Result<PortId, DpdkError> {
    let c = cstring(op, dev_name)?;
    let mut id = 0u16;
    // SAFETY: `c` is NUL-terminated and `id` is a valid out-pointer for the call.
    let rc = unsafe { ffi::rte_eth_dev_get_port_by_name(c.as_ptr(), &mut id) };
    if rc != 0 {
        return Err(DpdkError::from_code(op, rc, mark));
    }
    Ok(PortId(id))
}

fn remove_vdev(dev_name: &str) -> Result<(), DpdkError> {
    let op = format!("remove device {dev_name}");
    let bus = cstring(&op, "vdev")?;
    let name = cstring(&op, dev_name)?;
    let mark = log::mark();
    // SAFETY: both strings are NUL-terminated; the device's port is stopped and no worker
    // polls it any more (callers guarantee, see `Port::drop`).
    let rc = unsafe { ffi::rte_eal_hotplug_remove(bus.as_ptr(), name.as_ptr()) };
    if rc != 0 {
        return Err(DpdkError::from_code(op, rc, mark));
    }
    Ok(())
}

impl Port {
    /// Hotplugs the virtual device a config entry describes and returns its port, not yet
    /// configured.
    pub fn attach(eal: &Eal, cfg: &PortConfig) -> Result<Self, DpdkError> {
        let dev_name = cfg.vdev_name();
        let devargs = cfg.devargs();
        let args = devargs.split_once(',').map_or("", |(_, a)| a);
        let op = format!("attach port {} ({devargs})", cfg.name);
        let bus = cstring(&op, "vdev")?;
        let cname = cstring(&op, &dev_name)?;
        let cargs = cstring(&op, args)?;
        let mark = log::mark();
        // SAFETY: all three strings are NUL-terminated and copied by DPDK; the EAL is up.
        let rc = unsafe { ffi::rte_eal_hotplug_add(bus.as_ptr(), cname.as_ptr(), cargs.as_ptr()) };
        if rc != 0 {
            let mut e = DpdkError::from_code(op, rc, mark);
            if cfg.kind.required_iface().is_some() {
                e = e.with_hint("check that the interface exists and is not used by another port");
            }
            return Err(e);
        }
        let id = match port_by_name(&op, &dev_name, mark) {
            Ok(id) => id,
            Err(e) => {
                let _ = remove_vdev(&dev_name);
                return Err(e);
            }
        };
        Ok(Self {
            id,
            name: cfg.name.clone(),
            dev_name,
            queues: cfg.queues.max(1),
            rss: false,
            configured: false,
            started: false,
            pool: None,
            _rings: Vec::new(),
            _eal: eal.clone(),
        })
    }

    /// Builds a port that receives from `rx` and transmits into `tx` (the ring PMD's
    /// `rte_eth_from_rings`): whoever holds the rings is the other end of the wire.
    pub fn from_rings(
        eal: &Eal,
        name: &str,
        rx: Arc<Ring>,
        tx: Arc<Ring>,
    ) -> Result<Self, DpdkError> {
        // The ring PMD names the device `net_ring_<name>` itself.
        let dev_name = format!("net_ring_{name}");
        let op = format!("create ring port {name}");
        let cname = cstring(&op, name)?;
        let mut rxs = [rx.as_ptr()];
        let mut txs = [tx.as_ptr()];
        let mark = log::mark();
        // SAFETY: the arrays hold one live ring each and the rings are kept alive by the Arcs
        // stored in the returned Port for as long as the port exists.
        let rc = unsafe {
            ffi::rte_eth_from_rings(
                cname.as_ptr(),
                rxs.as_mut_ptr(),
                1,
                txs.as_mut_ptr(),
                1,
                eal.socket_id().cast_unsigned(),
            )
        };
        if rc < 0 {
            return Err(DpdkError::from_errno(op, mark));
        }
        let id = PortId(u16::try_from(rc).unwrap_or(u16::MAX));
        Ok(Self {
            id,
            name: name.to_owned(),
            dev_name,
            queues: 1,
            rss: false,
            configured: false,
            started: false,
            pool: None,
            _rings: vec![rx, tx],
            _eal: eal.clone(),
        })
    }

    /// Receives up to `max` packets (at most [`BURST`]) from queue 0 into `out`; returns how
    /// many. For single-threaded users of a port outside the workers (the packet generator).
    pub fn rx_burst(&self, out: &mut Vec<Mbuf>, max: usize) -> usize {
        self.rx_burst_from(0, out, max)
    }

    /// [`Port::rx_burst`] from queue `queue` (nothing when the port has no such queue).
    pub fn rx_burst_from(&self, queue: u16, out: &mut Vec<Mbuf>, max: usize) -> usize {
        if queue >= self.queues {
            return 0;
        }
        let mut ptrs = [std::ptr::null_mut::<ffi::rte_mbuf>(); BURST];
        let n = u16::try_from(max.min(BURST)).unwrap_or(0);
        // SAFETY: a valid port id with `queue` set up; `ptrs` has room for `n` pointers, and
        // each one returned is an mbuf whose one reference the PMD hands over to us.
        let got =
            usize::from(unsafe { ffi::rte_eth_rx_burst(self.id.0, queue, ptrs.as_mut_ptr(), n) });
        for &p in &ptrs[..got.min(BURST)] {
            if let Some(raw) = std::ptr::NonNull::new(p) {
                // SAFETY: see above: an mbuf we now own.
                out.push(unsafe { Mbuf::from_raw(raw) });
            }
        }
        got
    }

    /// Sends packets from the front of `pkts` (at most [`BURST`]) on queue 0. Those sent leave
    /// `pkts` (the PMD owns them now); the rest stay, in order. Returns how many were sent.
    pub fn tx_burst(&self, pkts: &mut Vec<Mbuf>) -> usize {
        self.tx_burst_on(0, pkts)
    }

    /// [`Port::tx_burst`] on queue `queue` (sends nothing when the port has no such queue).
    pub fn tx_burst_on(&self, queue: u16, pkts: &mut Vec<Mbuf>) -> usize {
        let n = pkts.len().min(BURST);
        if n == 0 || queue >= self.queues {
            return 0;
        }
        let mut ptrs = [std::ptr::null_mut::<ffi::rte_mbuf>(); BURST];
        for (slot, m) in ptrs.iter_mut().zip(pkts.iter()) {
            *slot = m.as_ptr();
        }
        // SAFETY: a valid port id with `queue` set up; the first `n` pointers are valid mbufs
        // owned by `pkts`. The PMD takes ownership of the first `sent` of them only.
        let sent = usize::from(unsafe {
            ffi::rte_eth_tx_burst(
                self.id.0,
                queue,
                ptrs.as_mut_ptr(),
                u16::try_from(n).unwrap_or(0),
            )
        });
        for m in pkts.drain(..sent.min(n)) {
            // Owned by the PMD now: not freed here.
            let _ = m.into_raw();
        }
        sent
    }

    /// Port id.
    pub fn id(&self) -> PortId {
        self.id
    }

    /// Operator-facing name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// DPDK device name.
    pub fn dev_name(&self) -> &str {
        &self.dev_name
    }

    /// Whether the port is started.
    pub fn is_started(&self) -> bool {
        self.started
    }

    /// Rx/tx queue pairs.
    pub fn queues(&self) -> u16 {
        self.queues
    }

    /// Whether the PMD spreads flows over the queues by (symmetric) RSS; with several queues
    /// and no RSS the PMD spreads them its own way (`af_packet`: the kernel's symmetric fanout
    /// hash; `memif`, `virtio_user`, `vhost`: the queue the peer sent on).
    pub fn rss(&self) -> bool {
        self.rss
    }

    fn socket(&self) -> u32 {
        // SAFETY: plain getter on a valid port id.
        let s = unsafe { ffi::rte_eth_dev_socket_id(self.id.0) };
        s.cast_unsigned() // -1 (unknown) is SOCKET_ID_ANY as an unsigned
    }

    /// Configures the port's rx queues, drawing from `pool`, and as many tx queues, with
    /// descriptor counts clamped to what the PMD accepts. With several queues and a PMD that
    /// hashes IP/TCP/UDP in hardware, RSS is turned on with a symmetric key.
    pub fn configure(
        &mut self,
        pool: Arc<Mempool>,
        rx_desc: u16,
        tx_desc: u16,
    ) -> Result<(), DpdkError> {
        let op = format!("configure port {}", self.name);
        let queues = self.queues;
        let mut conf = ffi::rte_eth_conf::default();
        let mut key = Vec::new();
        let mark = log::mark();
        if queues > 1 {
            let mut info = ffi::rte_eth_dev_info::default();
            // SAFETY: valid port; `info` is a valid out-pointer for the call.
            let rc = unsafe { ffi::rte_eth_dev_info_get(self.id.0, &mut info) };
            if rc != 0 {
                return Err(DpdkError::from_code(format!("{op}: device info"), rc, mark));
            }
            let most = info.max_rx_queues.min(info.max_tx_queues);
            if most < queues {
                return Err(DpdkError {
                    op,
                    code: libc::EINVAL,
                    reason: format!("{queues} queues asked, the PMD offers at most {most}"),
                    hint: Some("lower the port's `queues`"),
                    log: log::since(mark),
                });
            }
            // SAFETY: a pure function returning a constant.
            let hf = info.flow_type_rss_offloads & unsafe { ffi::shim_eth_rss_ip_tcp_udp() };
            if hf != 0 {
                let len = match usize::from(info.hash_key_size) {
                    0 => RSS_KEY_LEN,
                    n => n,
                };
                key = symmetric_rss_key(len);
                conf.rxmode.mq_mode = ffi::RTE_ETH_MQ_RX_RSS;
                conf.rx_adv_conf.rss_conf.rss_key = key.as_mut_ptr();
                conf.rx_adv_conf.rss_conf.rss_key_len = u8::try_from(len).unwrap_or(u8::MAX);
                conf.rx_adv_conf.rss_conf.rss_hf = hf;
            }
        }
        // SAFETY: valid stopped port; `conf` (and `key`, which it may point at) are read
        // during the call only.
        let rc = unsafe { ffi::rte_eth_dev_configure(self.id.0, queues, queues, &conf) };
        if rc != 0 {
            return Err(DpdkError::from_code(op, rc, mark));
        }
        self.rss = !key.is_empty();
        let (mut nrx, mut ntx) = (rx_desc, tx_desc);
        // SAFETY: valid configured port; the out-pointers are valid for the call.
        let rc = unsafe { ffi::rte_eth_dev_adjust_nb_rx_tx_desc(self.id.0, &mut nrx, &mut ntx) };
        if rc != 0 {
            return Err(DpdkError::from_code(
                format!("{op}: descriptor limits"),
                rc,
                mark,
            ));
        }
        let socket = self.socket();
        for q in 0..queues {
            // SAFETY: queue `q` exists (configured with `queues` rx queues); a null rxconf
            // means PMD defaults; `pool` outlives the queue because the port keeps the Arc
            // until it is closed.
            let rc = unsafe {
                ffi::rte_eth_rx_queue_setup(
                    self.id.0,
                    q,
                    nrx,
                    socket,
                    std::ptr::null(),
                    pool.as_ptr(),
                )
            };
            if rc != 0 {
                return Err(DpdkError::from_code(
                    format!("{op}: rx queue {q}"),
                    rc,
                    mark,
                ));
            }
            // SAFETY: queue `q` exists (as many tx queues); null txconf means PMD defaults.
            let rc =
                unsafe { ffi::rte_eth_tx_queue_setup(self.id.0, q, ntx, socket, std::ptr::null()) };
            if rc != 0 {
                return Err(DpdkError::from_code(
                    format!("{op}: tx queue {q}"),
                    rc,
                    mark,
                ));
            }
        }
        self.pool = Some(pool);
        self.configured = true;
        Ok(())
    }

    /// Starts the port and turns promiscuous mode on where the PMD supports it.
    pub fn start(&mut self) -> Result<(), DpdkError> {
        if self.started {
            return Ok(());
        }
        let op = format!("start port {}", self.name);
        if !self.configured {
            return Err(DpdkError {
                op,
                code: libc::EINVAL,
                reason: "port is not configured".into(),
                hint: None,
                log: Vec::new(),
            });
        }
        let mark = log::mark();
        // SAFETY: valid, configured port.
        let rc = unsafe { ffi::rte_eth_dev_start(self.id.0) };
        if rc != 0 {
            return Err(DpdkError::from_code(op, rc, mark));
        }
        self.started = true;
        // Not every PMD has promiscuous mode (ring, null): ignore ENOTSUP and friends.
        // SAFETY: valid started port.
        let _ = unsafe { ffi::rte_eth_promiscuous_enable(self.id.0) };
        Ok(())
    }

    /// Stops the port. No worker may poll it while or after it stops.
    pub fn stop(&mut self) -> Result<(), DpdkError> {
        if !self.started {
            return Ok(());
        }
        let mark = log::mark();
        // SAFETY: valid started port; callers guarantee no worker polls it (Dataplane removes
        // it from every worker's assignment and waits for the acknowledgement first).
        let rc = unsafe { ffi::rte_eth_dev_stop(self.id.0) };
        if rc != 0 {
            return Err(DpdkError::from_code(
                format!("stop port {}", self.name),
                rc,
                mark,
            ));
        }
        self.started = false;
        Ok(())
    }

    /// The PMD's counters.
    pub fn stats(&self) -> Result<PortStats, DpdkError> {
        let mut s = ffi::rte_eth_stats::default();
        let mark = log::mark();
        // SAFETY: valid port; `s` is a valid out-pointer for the call.
        let rc = unsafe { ffi::rte_eth_stats_get(self.id.0, &mut s) };
        if rc != 0 {
            return Err(DpdkError::from_code(
                format!("stats of port {}", self.name),
                rc,
                mark,
            ));
        }
        Ok(PortStats {
            ipackets: s.ipackets,
            opackets: s.opackets,
            ibytes: s.ibytes,
            obytes: s.obytes,
            imissed: s.imissed,
            ierrors: s.ierrors,
            oerrors: s.oerrors,
            rx_nombuf: s.rx_nombuf,
        })
    }

    /// Link state, without waiting.
    pub fn link(&self) -> Link {
        let mut l = ffi::rte_eth_link::default();
        // SAFETY: valid port; `l` is a valid out-pointer for the call.
        let rc = unsafe { ffi::rte_eth_link_get_nowait(self.id.0, &mut l) };
        if rc != 0 {
            return Link {
                up: false,
                speed_mbps: 0,
                full_duplex: false,
            };
        }
        Link {
            up: u32::from(l.link_status()) == ffi::RTE_ETH_LINK_UP,
            speed_mbps: if l.link_speed == ffi::RTE_ETH_SPEED_NUM_UNKNOWN {
                0
            } else {
                l.link_speed
            },
            full_duplex: u32::from(l.link_duplex()) == ffi::RTE_ETH_LINK_FULL_DUPLEX,
        }
    }

    /// The port's MAC address.
    pub fn mac(&self) -> [u8; 6] {
        let mut a = ffi::rte_ether_addr::default();
        // SAFETY: valid port; `a` is a valid out-pointer for the call.
        let rc = unsafe { ffi::rte_eth_macaddr_get(self.id.0, &mut a) };
        if rc != 0 { [0; 6] } else { a.addr_bytes }
    }
}

impl Drop for Port {
    fn drop(&mut self) {
        if let Err(e) = self.stop() {
            tracing::warn!(port = %self.name, error = %e, "stop on drop failed");
        }
        // The driver's remove closes the ethdev and frees the device; fall back to a plain
        // close when removal fails so the port id is released either way.
        if let Err(e) = remove_vdev(&self.dev_name) {
            tracing::warn!(port = %self.name, error = %e, "device removal failed; closing the port");
            // SAFETY: valid, stopped port no worker polls; closed once.
            unsafe { ffi::rte_eth_dev_close(self.id.0) };
        }
    }
}
