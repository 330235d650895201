//! Packet buffers.
//!
//! The per-packet accessors (data pointer, lengths) are computed in Rust from `rte_mbuf`'s
//! layout; only allocation and freeing go through DPDK.

use std::ptr::NonNull;

use super::Mempool;

/// Packets per rx/tx burst.
pub const BURST: usize = 32;

/// One packet buffer. Owns exactly one reference to the mbuf and frees it on drop; it is never
/// `Clone`. Only the first segment is exposed (the pools here hold whole frames).
#[derive(Debug)]
pub struct Mbuf {
    raw: NonNull<ffi::rte_mbuf>,
}

// SAFETY: an Mbuf is the sole owner of its buffer (one reference), so moving it to another
// thread moves that ownership; freeing to the pool is thread-safe.
unsafe impl Send for Mbuf {}

impl Mbuf {
    /// Allocates an empty mbuf from `pool`; `None` when the pool is exhausted.
    pub fn alloc(pool: &Mempool) -> Option<Self> {
        // SAFETY: `pool` is a live pktmbuf pool.
        let raw = unsafe { ffi::rte_pktmbuf_alloc(pool.as_ptr()) };
        NonNull::new(raw).map(|raw| Self { raw })
    }

    /// Allocates an mbuf holding a copy of `bytes`; `None` when the pool is exhausted or the
    /// bytes do not fit in one segment.
    pub fn from_slice(pool: &Mempool, bytes: &[u8]) -> Option<Self> {
        let mut m = Self::alloc(pool)?;
        m.append(bytes.len())?.copy_from_slice(bytes);
        Some(m)
    }

    /// Takes ownership of a raw mbuf.
    ///
    /// # Safety
    /// `raw` must be a valid mbuf whose one reference the caller owns and gives up.
    pub unsafe fn from_raw(raw: NonNull<ffi::rte_mbuf>) -> Self {
        Self { raw }
    }

    /// Gives up ownership without freeing.
    pub fn into_raw(self) -> NonNull<ffi::rte_mbuf> {
        let raw = self.raw;
        std::mem::forget(self);
        raw
    }

    /// The raw mbuf, still owned by `self`.
    pub(crate) fn as_ptr(&self) -> *mut ffi::rte_mbuf {
        self.raw.as_ptr()
    }

    fn hdr(&self) -> &ffi::rte_mbuf {
        // SAFETY: `raw` is a valid mbuf we own for as long as `self` lives.
        unsafe { self.raw.as_ref() }
    }

    /// Bytes in the first segment.
    pub fn len(&self) -> usize {
        usize::from(self.hdr().data_len)
    }

    /// Whether the packet is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whole packet length over all segments.
    pub fn pkt_len(&self) -> u32 {
        self.hdr().pkt_len
    }

    /// Port the packet was received on (as set by the PMD).
    pub fn port(&self) -> u16 {
        self.hdr().port
    }

    /// The first segment's bytes.
    pub fn data(&self) -> &[u8] {
        let h = self.hdr();
        // SAFETY: buf_addr + data_off points at data_len initialised bytes inside the buffer,
        // owned by `self`, and no mutable access exists while `&self` is borrowed.
        unsafe {
            std::slice::from_raw_parts(
                h.buf_addr.cast::<u8>().add(usize::from(h.data_off)),
                usize::from(h.data_len),
            )
        }
    }

    /// The first segment's bytes, mutably.
    pub fn data_mut(&mut self) -> &mut [u8] {
        let h = self.hdr();
        let (addr, off, len) = (h.buf_addr, h.data_off, h.data_len);
        // SAFETY: as in `data`, and `&mut self` makes this the only access.
        unsafe {
            std::slice::from_raw_parts_mut(
                addr.cast::<u8>().add(usize::from(off)),
                usize::from(len),
            )
        }
    }

    /// Shortens the packet to `len` bytes (no change when it is already shorter).
    pub fn truncate(&mut self, len: usize) {
        // SAFETY: `raw` is valid and exclusively ours (`&mut self`).
        let h = unsafe { self.raw.as_mut() };
        if let Ok(l) = u16::try_from(len)
            && l < h.data_len
        {
            h.pkt_len -= u32::from(h.data_len - l);
            h.data_len = l;
        }
    }

    /// Grows the packet by `len` bytes at the tail and returns them; `None` (and no change)
    /// when the tailroom is too small.
    pub fn append(&mut self, len: usize) -> Option<&mut [u8]> {
        let len16 = u16::try_from(len).ok()?;
        // SAFETY: `raw` is valid and exclusively ours (`&mut self`).
        let h = unsafe { self.raw.as_mut() };
        let tail = usize::from(h.data_off) + usize::from(h.data_len);
        if tail + len > usize::from(h.buf_len) {
            return None;
        }
        h.data_len += len16;
        h.pkt_len += u32::from(len16);
        // SAFETY: [tail, tail + len) lies inside the buffer (checked against buf_len above) and
        // is now part of the packet we exclusively own.
        Some(unsafe { std::slice::from_raw_parts_mut(h.buf_addr.cast::<u8>().add(tail), len) })
    }
}

impl Drop for Mbuf {
    fn drop(&mut self) {
        // SAFETY: we own exactly one reference to a valid mbuf and give it back once.
        unsafe { ffi::rte_pktmbuf_free(self.raw.as_ptr()) };
    }
}

/// A burst of up to [`BURST`] raw mbufs owned by a worker. Whatever it still holds when
/// dropped is freed, so an early return cannot leak buffers.
pub(crate) struct Burst {
    pub(crate) ptrs: [*mut ffi::rte_mbuf; BURST],
    pub(crate) len: usize,
}

impl Burst {
    pub(crate) fn new() -> Self {
        Self {
            ptrs: [std::ptr::null_mut(); BURST],
            len: 0,
        }
    }

    /// Bytes of the packets at `range` (whole packets, all segments).
    #[inline]
    pub(crate) fn bytes(&self, range: std::ops::Range<usize>) -> u64 {
        self.ptrs[range]
            .iter()
            // SAFETY: every pointer in [0, len) is a valid mbuf owned by this burst.
            .map(|&m| u64::from(unsafe { (*m).pkt_len }))
            .sum()
    }

    /// Frees the packets from `start` to the end and empties the burst.
    #[inline]
    pub(crate) fn free_from(&mut self, start: usize) {
        if start < self.len {
            let n = u32::try_from(self.len - start).unwrap_or(0);
            // SAFETY: the pointers in [start, len) are valid mbufs owned by this burst and are
            // not used again (len is reset below).
            unsafe { ffi::rte_pktmbuf_free_bulk(self.ptrs[start..].as_mut_ptr(), n) };
        }
        self.len = 0;
    }
}

impl Drop for Burst {
    fn drop(&mut self) {
        self.free_from(0);
    }
}
