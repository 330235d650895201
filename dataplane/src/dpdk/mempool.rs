//! Packet buffer pools.

use std::ffi::CString;
use std::ptr::NonNull;

use super::{DpdkError, Eal, log};

/// A `rte_pktmbuf` pool. Freed on drop, unless mbufs from it are still out (then it is leaked
/// with a warning: freeing memory in use would be worse).
#[derive(Debug)]
pub struct Mempool {
    raw: NonNull<ffi::rte_mempool>,
    name: String,
    size: u32,
    _eal: Eal,
}

// SAFETY: a DPDK mempool is a shared-memory object whose get/put operations are multi-producer
// and multi-consumer safe; the handle is only a pointer to it.
unsafe impl Send for Mempool {}
// SAFETY: as above; `&Mempool` only allows thread-safe get/put and read-only queries.
unsafe impl Sync for Mempool {}

impl Mempool {
    /// Creates a pool of `size` mbufs with the default data room (2048 bytes + headroom) and a
    /// per-lcore cache of `cache` on the caller's NUMA socket.
    pub fn new(eal: &Eal, name: &str, size: u32, cache: u32) -> Result<Self, DpdkError> {
        let op = || format!("create mbuf pool {name}");
        let cname = CString::new(name).map_err(|_| DpdkError {
            op: op(),
            code: libc::EINVAL,
            reason: "name contains a NUL byte".into(),
            hint: None,
            log: Vec::new(),
        })?;
        let data_room = u16::try_from(ffi::RTE_MBUF_DEFAULT_DATAROOM + ffi::RTE_PKTMBUF_HEADROOM)
            .unwrap_or(u16::MAX);
        let mark = log::mark();
        // SAFETY: `cname` is NUL-terminated and copied by DPDK; the EAL is initialised (we hold
        // a handle); the sizes are plain values DPDK validates.
        let raw = unsafe {
            ffi::rte_pktmbuf_pool_create(cname.as_ptr(), size, cache, 0, data_room, eal.socket_id())
        };
        let raw = NonNull::new(raw).ok_or_else(|| {
            DpdkError::from_errno(op(), mark).with_hint(
                "not enough hugepage memory for the pool: lower `mbufs` or reserve more hugepages",
            )
        })?;
        Ok(Self {
            raw,
            name: name.to_owned(),
            size,
            _eal: eal.clone(),
        })
    }

    /// Raw pointer for DPDK calls.
    pub(crate) fn as_ptr(&self) -> *mut ffi::rte_mempool {
        self.raw.as_ptr()
    }

    /// Pool name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Number of mbufs the pool was created with.
    pub fn size(&self) -> u32 {
        self.size
    }

    /// Mbufs currently available (in the pool and in per-lcore caches).
    pub fn available(&self) -> u32 {
        // SAFETY: `raw` is a live pool for as long as `self` exists.
        unsafe { ffi::rte_mempool_avail_count(self.raw.as_ptr()) }
    }

    /// Mbufs currently handed out (held by ports, workers or callers).
    pub fn in_use(&self) -> u32 {
        // SAFETY: `raw` is a live pool for as long as `self` exists.
        unsafe { ffi::rte_mempool_in_use_count(self.raw.as_ptr()) }
    }
}

impl Drop for Mempool {
    fn drop(&mut self) {
        let in_use = self.in_use();
        if in_use != 0 {
            tracing::warn!(pool = %self.name, in_use, "mbufs still in use: leaking the pool");
            return;
        }
        // SAFETY: no mbuf from this pool is outstanding (checked above), no port queue refers
        // to it (ports hold an Arc to their pool and are gone), and it is freed once.
        unsafe { ffi::rte_mempool_free(self.raw.as_ptr()) };
    }
}
