//! Offline captures: pcap and pcapng files (through `pcap-parser`), for
//! `palisade-dp classify` and the DPI accuracy tests.
//!
//! A damaged file is not an error of the tool: the records read before the damage are kept
//! and the damage is reported beside them. Link types: Ethernet, Linux cooked (v1 and v2),
//! BSD loopback (null and loop), raw IP (v4, v6 or either) and PPP; other link types give
//! [`FrameError::UnsupportedLink`] per record.

use std::fs::File;
use std::path::{Path, PathBuf};

use pcap_parser::{Block, Linktype, PcapBlockOwned, PcapError, create_reader};

use crate::bytes::be16;
use crate::wire::{self, Malformed, Packet, ethertype};

/// One captured frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// Capture time, nanoseconds since the epoch.
    pub ts_ns: u64,
    /// Link type (pcap LINKTYPE_* value).
    pub link: u32,
    /// The captured bytes.
    pub data: Vec<u8>,
}

/// A capture file's records.
#[derive(Debug, Clone, Default)]
pub struct Capture {
    /// Records in file order.
    pub records: Vec<Record>,
    /// Where the file is damaged, when it is: what was read before it is in `records`.
    pub damage: Option<String>,
}

/// The file could not be read as a capture at all.
#[derive(Debug, thiserror::Error)]
pub enum CaptureError {
    /// Opening or reading failed.
    #[error("cannot read {}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// Not a pcap or pcapng file.
    #[error("{} is not a pcap or pcapng file: {reason}", path.display())]
    Format {
        /// The file.
        path: PathBuf,
        /// What pcap-parser said.
        reason: String,
    },
}

/// Why one record could not become a [`Packet`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameError {
    /// The bytes are malformed.
    Malformed(Malformed),
    /// The link type is not one this reader knows.
    UnsupportedLink(u32),
}

/// LINKTYPE values (https://www.tcpdump.org/linktypes.html).
pub mod link {
    /// BSD loopback, host byte order family.
    pub const NULL: u32 = 0;
    /// Ethernet.
    pub const ETHERNET: u32 = 1;
    /// PPP.
    pub const PPP: u32 = 9;
    /// Raw IP (OpenBSD's DLT_RAW value).
    pub const RAW_OLD: u32 = 12;
    /// Raw IP (another historic DLT_RAW value).
    pub const RAW_OLD2: u32 = 14;
    /// Raw IP.
    pub const RAW: u32 = 101;
    /// OpenBSD loopback, network byte order family.
    pub const LOOP: u32 = 108;
    /// Linux cooked capture v1.
    pub const LINUX_SLL: u32 = 113;
    /// Raw IPv4.
    pub const IPV4: u32 = 228;
    /// Raw IPv6.
    pub const IPV6: u32 = 229;
    /// Linux cooked capture v2.
    pub const LINUX_SLL2: u32 = 276;
}

/// Reads every record of a pcap or pcapng file.
pub fn read(path: &Path) -> Result<Capture, CaptureError> {
    let file = File::open(path).map_err(|source| CaptureError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let mut reader = match create_reader(1 << 16, file) {
        Ok(r) => r,
        // An empty file holds no records; it is not a format error.
        Err(PcapError::Eof) => {
            return Ok(Capture {
                records: Vec::new(),
                damage: Some("empty file".to_owned()),
            });
        }
        Err(e) => {
            return Err(CaptureError::Format {
                path: path.to_path_buf(),
                reason: format!("{e:?}"),
            });
        }
    };
    let mut cap = Capture::default();
    let mut legacy_link = link::ETHERNET;
    let mut legacy_nanos = false;
    // pcapng: per interface, its link type and timestamp units per second.
    let mut interfaces: Vec<(u32, u64)> = Vec::new();
    loop {
        match reader.next() {
            Ok((offset, block)) => {
                match block {
                    PcapBlockOwned::LegacyHeader(h) => {
                        legacy_link = u32::try_from(h.network.0).unwrap_or(u32::MAX);
                        legacy_nanos = h.is_nanosecond_precision();
                    }
                    PcapBlockOwned::Legacy(b) => {
                        let sub = if legacy_nanos {
                            u64::from(b.ts_usec)
                        } else {
                            u64::from(b.ts_usec) * 1000
                        };
                        cap.records.push(Record {
                            ts_ns: u64::from(b.ts_sec) * 1_000_000_000 + sub,
                            link: legacy_link,
                            data: b.data.get(..b.caplen as usize).unwrap_or(b.data).to_vec(),
                        });
                    }
                    PcapBlockOwned::NG(Block::SectionHeader(_)) => interfaces.clear(),
                    PcapBlockOwned::NG(Block::InterfaceDescription(idb)) => {
                        let Linktype(lt) = idb.linktype;
                        interfaces.push((
                            u32::try_from(lt).unwrap_or(u32::MAX),
                            idb.ts_resolution().unwrap_or(1_000_000),
                        ));
                    }
                    PcapBlockOwned::NG(Block::EnhancedPacket(epb)) => {
                        let (lt, res) = interfaces
                            .get(epb.if_id as usize)
                            .copied()
                            .unwrap_or((link::ETHERNET, 1_000_000));
                        let units = (u64::from(epb.ts_high) << 32) | u64::from(epb.ts_low);
                        let ts_ns = if res == 0 {
                            0
                        } else {
                            units.saturating_mul(1_000_000_000 / res.min(1_000_000_000))
                        };
                        cap.records.push(Record {
                            ts_ns,
                            link: lt,
                            data: epb
                                .data
                                .get(..epb.caplen as usize)
                                .unwrap_or(epb.data)
                                .to_vec(),
                        });
                    }
                    PcapBlockOwned::NG(Block::SimplePacket(spb)) => {
                        let lt = interfaces.first().map_or(link::ETHERNET, |i| i.0);
                        cap.records.push(Record {
                            ts_ns: cap.records.last().map_or(0, |r| r.ts_ns),
                            link: lt,
                            data: spb.data.to_vec(),
                        });
                    }
                    PcapBlockOwned::NG(_) => {}
                }
                reader.consume(offset);
            }
            Err(PcapError::Eof) => break,
            Err(PcapError::Incomplete(_)) => {
                // The buffer ends inside a block: read more, unless the file has no more.
                if reader.reader_exhausted() {
                    if !reader.data().is_empty() {
                        cap.damage = Some(format!("truncated after {} records", cap.records.len()));
                    }
                    break;
                }
                if let Err(e) = reader.refill() {
                    cap.damage = Some(format!(
                        "unreadable after {} records: {e:?}",
                        cap.records.len()
                    ));
                    break;
                }
            }
            Err(e) => {
                cap.damage = Some(format!(
                    "damaged after {} records: {e:?}",
                    cap.records.len()
                ));
                break;
            }
        }
    }
    Ok(cap)
}

/// An IP packet whose version is in its first nibble.
fn by_version(b: &[u8]) -> Result<Packet<'_>, FrameError> {
    let ty = match b.first().map(|v| v >> 4) {
        Some(6) => ethertype::IPV6,
        _ => ethertype::IPV4,
    };
    wire::parse_l3(ty, b).map_err(FrameError::Malformed)
}

/// Parses one record's bytes according to its link type.
pub fn to_packet(link_type: u32, data: &[u8]) -> Result<Packet<'_>, FrameError> {
    let rest = |at: usize| data.get(at..).unwrap_or(&[]);
    match link_type {
        link::ETHERNET => wire::parse(data).map_err(FrameError::Malformed),
        link::LINUX_SLL => {
            // packet type(2) ARPHRD(2) address length(2) address(8) protocol(2)
            let ty = be16(data, 14).ok_or(FrameError::Malformed(Malformed::EthernetTruncated))?;
            wire::parse_l3(ty, rest(16)).map_err(FrameError::Malformed)
        }
        link::LINUX_SLL2 => {
            // protocol(2) reserved(2) interface(4) ARPHRD(2) packet type(1) address length(1) address(8)
            let ty = be16(data, 0).ok_or(FrameError::Malformed(Malformed::EthernetTruncated))?;
            wire::parse_l3(ty, rest(20)).map_err(FrameError::Malformed)
        }
        // A 4-byte address family, in whatever byte order: the IP version nibble decides.
        link::NULL | link::LOOP => by_version(rest(4)),
        link::RAW | link::RAW_OLD | link::RAW_OLD2 => by_version(data),
        link::IPV4 => wire::parse_l3(ethertype::IPV4, data).map_err(FrameError::Malformed),
        link::IPV6 => wire::parse_l3(ethertype::IPV6, data).map_err(FrameError::Malformed),
        link::PPP => {
            // Optional address 0xff and control 0x03, then a 2-byte protocol (RFC 1661/1662).
            let at = if data.first() == Some(&0xff) { 2 } else { 0 };
            match be16(data, at) {
                Some(0x0021) => {
                    wire::parse_l3(ethertype::IPV4, rest(at + 2)).map_err(FrameError::Malformed)
                }
                Some(0x0057) => {
                    wire::parse_l3(ethertype::IPV6, rest(at + 2)).map_err(FrameError::Malformed)
                }
                _ => Err(FrameError::UnsupportedLink(link_type)),
            }
        }
        other => Err(FrameError::UnsupportedLink(other)),
    }
}
