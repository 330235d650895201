//! Transparent huge pages for the large per-worker tables (the connection index and the
//! session slab, tens of MiB at the default capacity), and the prefetch hint their lookups
//! use to overlap cache misses across a burst.
//!
//! With THP in `madvise` mode (the usual default, and this machine's), an allocation is backed
//! by 2 MiB pages only when asked with `MADV_HUGEPAGE` before its pages are first touched.
//! Lookups land at random places in the index, so with 4 KiB pages nearly every one misses
//! the TLB: 10k flows spread over a 16 MiB index touch 4096 pages, far more than the TLB
//! holds. Measured with `palisade-pktgen` at its maximum through palisade-dp over memif, 10k
//! flows (docs/benchmarks.md): 1.75 Mpps with the default 1M sessions, 2.56 Mpps with 64k.
//! (The `libc` call is written here because no crate in the workspace wraps `madvise` for a
//! `Vec`'s spare capacity.)

/// Asks for huge pages on `v`'s whole allocation; call it after reserving and before
/// writing. Best effort: an error (THP off or unsupported) leaves 4 KiB pages.
pub(crate) fn advise<T>(v: &Vec<T>) {
    const HUGE: usize = 2 << 20;
    let start = v.as_ptr() as usize;
    let len = v.capacity().saturating_mul(size_of::<T>());
    let first = start.next_multiple_of(HUGE);
    let end = start.saturating_add(len) / HUGE * HUGE;
    if end > first {
        // SAFETY: [first, end) lies inside `v`'s allocation. MADV_HUGEPAGE only changes how
        // the kernel backs those pages; it never changes their contents or their validity.
        let _ =
            unsafe { libc::madvise(first as *mut libc::c_void, end - first, libc::MADV_HUGEPAGE) };
    }
}

/// Asks the CPU to bring the cache line holding `p` into every cache level (a hint: no fault,
/// no effect on memory). Hand-written because the standard library's only stable prefetch is
/// the x86_64 intrinsic; other targets get nothing.
#[inline(always)]
pub(crate) fn prefetch<T>(p: *const T) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: PREFETCHT0 never faults and reads nothing architecturally, whatever the address.
    unsafe {
        core::arch::x86_64::_mm_prefetch(p.cast::<i8>(), core::arch::x86_64::_MM_HINT_T0);
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}
