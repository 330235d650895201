//! `rte_ring`: lock-free FIFOs of mbuf pointers, used to build in-process ports
//! ([`super::Port::from_rings`]) that a test or the pktgen feeds and drains directly.

use std::ffi::{CString, c_void};
use std::ptr::NonNull;

use super::{DpdkError, Eal, Mbuf, log};

/// A multi-producer, multi-consumer ring of mbufs, freed on drop (with any mbufs still in it).
#[derive(Debug)]
pub struct Ring {
    raw: NonNull<ffi::rte_ring>,
    name: String,
    _eal: Eal,
}

// SAFETY: a DPDK ring lives in shared memory; the handle is a pointer to it.
unsafe impl Send for Ring {}
// SAFETY: the ring is created multi-producer/multi-consumer, so concurrent enqueues and
// dequeues through `&Ring` from any threads are what DPDK supports.
unsafe impl Sync for Ring {}

impl Ring {
    /// Creates a ring that holds up to `count - 1` mbufs (`count` is rounded up to a power of
    /// two by the caller's choice; DPDK requires one).
    pub fn new(eal: &Eal, name: &str, count: u32) -> Result<Self, DpdkError> {
        let op = || format!("create ring {name}");
        let cname = CString::new(name).map_err(|_| DpdkError {
            op: op(),
            code: libc::EINVAL,
            reason: "name contains a NUL byte".into(),
            hint: None,
            log: Vec::new(),
        })?;
        let mark = log::mark();
        let flags = 0; // multi-producer, multi-consumer
        // SAFETY: `cname` is NUL-terminated and copied by DPDK; the EAL is initialised.
        let raw = unsafe { ffi::rte_ring_create(cname.as_ptr(), count, eal.socket_id(), flags) };
        let raw = NonNull::new(raw).ok_or_else(|| DpdkError::from_errno(op(), mark))?;
        Ok(Self {
            raw,
            name: name.to_owned(),
            _eal: eal.clone(),
        })
    }

    pub(crate) fn as_ptr(&self) -> *mut ffi::rte_ring {
        self.raw.as_ptr()
    }

    /// Ring name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Mbufs currently queued.
    pub fn count(&self) -> u32 {
        // SAFETY: `raw` is a live ring.
        unsafe { ffi::rte_ring_count(self.raw.as_ptr()) }
    }

    /// Enqueues as many of `pkts` as fit, in order; returns the ones that did not fit.
    pub fn enqueue(&self, pkts: Vec<Mbuf>) -> Vec<Mbuf> {
        let mut raw: Vec<*mut c_void> = pkts
            .into_iter()
            .map(|m| m.into_raw().as_ptr().cast())
            .collect();
        let n = u32::try_from(raw.len()).unwrap_or(u32::MAX);
        // SAFETY: `raw` holds `n` valid mbuf pointers we own; the ring takes ownership of the
        // first `done` (an MP ring, so other producers may run concurrently).
        let done = unsafe { ffi::rte_ring_enqueue_burst(self.raw.as_ptr(), raw.as_ptr(), n) };
        raw.drain(..done as usize);
        raw.into_iter()
            .filter_map(|p| NonNull::new(p.cast::<ffi::rte_mbuf>()))
            // SAFETY: the ring did not take these; we still own their one reference each.
            .map(|p| unsafe { Mbuf::from_raw(p) })
            .collect()
    }

    /// Dequeues up to `max` mbufs.
    pub fn dequeue(&self, max: usize) -> Vec<Mbuf> {
        let mut raw: Vec<*mut c_void> = vec![std::ptr::null_mut(); max];
        let n = u32::try_from(max).unwrap_or(u32::MAX);
        // SAFETY: `raw` has room for `n` pointers (an MC ring, so other consumers may run
        // concurrently).
        let got = unsafe { ffi::rte_ring_dequeue_burst(self.raw.as_ptr(), raw.as_mut_ptr(), n) };
        raw.truncate(got as usize);
        raw.into_iter()
            .filter_map(|p| NonNull::new(p.cast::<ffi::rte_mbuf>()))
            // SAFETY: each dequeued pointer is an mbuf whose reference the ring held and now
            // hands to us.
            .map(|p| unsafe { Mbuf::from_raw(p) })
            .collect()
    }
}

impl Drop for Ring {
    fn drop(&mut self) {
        // Free whatever is still queued, then the ring.
        while !self.dequeue(64).is_empty() {}
        // SAFETY: no port uses the ring any more (ports built on it hold an Arc to it), and it
        // is freed once.
        unsafe { ffi::rte_ring_free(self.raw.as_ptr()) };
    }
}
