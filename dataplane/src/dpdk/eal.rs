//! The Environment Abstraction Layer: initialised once per process, cleaned up on drop.

use std::ffi::{CStr, CString, c_char, c_int};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use super::{DpdkError, log};

/// An EAL logical core id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LcoreId(pub u32);

impl std::fmt::Display for LcoreId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "lcore {}", self.0)
    }
}

/// `rte_eal_init` succeeds once per process, even after `rte_eal_cleanup`.
static INITIALISED: AtomicBool = AtomicBool::new(false);

/// A handle on the initialised EAL. Pools and ports hold a clone, so `rte_eal_cleanup` runs
/// (and the EAL's runtime directory is removed, leaving no files behind) only when the last
/// handle is gone.
#[derive(Debug, Clone)]
pub struct Eal(Arc<EalInner>);

#[derive(Debug)]
struct EalInner {
    runtime_dir: Option<PathBuf>,
    main: LcoreId,
    workers: Vec<LcoreId>,
}

fn init_hint(code: i32) -> Option<&'static str> {
    match code {
        libc::EACCES | libc::EPERM => Some("run as root: DPDK needs hugepages and /dev access"),
        libc::ENOMEM => Some(
            "not enough hugepage memory: run scripts/setup.sh, lower `mbufs`, or set memory = \"no-huge\"",
        ),
        libc::EINVAL => Some("an EAL argument is invalid: check `lcores` and `eal_extra`"),
        libc::EALREADY => Some("the EAL was already initialised in this process"),
        libc::EFAULT => Some(
            "the EAL's tailq configuration failed; another DPDK process may use the same file_prefix",
        ),
        libc::ENODEV => Some("no usable memory or device was found; check hugepages and `pci`"),
        libc::EPROTO => Some(
            "a DPDK process with the same `file_prefix` is running or its files are stale: use a unique `file_prefix`",
        ),
        libc::ENOTSUP => Some("the EAL lacks a feature it needs on this machine"),
        libc::ENOEXEC => Some("a DPDK plugin failed to load"),
        _ => None,
    }
}

impl Eal {
    /// Initialises the EAL with `args` (without the program name). Fails when called a second
    /// time in the same process.
    pub fn init(args: &[String]) -> Result<Eal, DpdkError> {
        if INITIALISED.swap(true, Ordering::SeqCst) {
            return Err(DpdkError {
                op: "EAL initialisation".to_owned(),
                code: libc::EALREADY,
                reason: "already initialised".to_owned(),
                hint: Some(
                    "DPDK allows one rte_eal_init per process; run each DPDK test in its own process (cargo nextest)",
                ),
                log: Vec::new(),
            });
        }
        log::install();
        let mut owned = Vec::with_capacity(args.len() + 1);
        for a in std::iter::once("palisade-dp").chain(args.iter().map(String::as_str)) {
            let c = CString::new(a).map_err(|_| DpdkError {
                op: "EAL initialisation".to_owned(),
                code: libc::EINVAL,
                reason: format!("argument {a:?} contains a NUL byte"),
                hint: None,
                log: Vec::new(),
            })?;
            owned.push(c);
        }
        // The EAL may keep pointers into argv (and permutes it): give it storage that lives for
        // the rest of the process, which is what a C main's argv would do.
        let argv: &'static mut [*mut c_char] = Vec::leak(
            owned
                .into_iter()
                .map(CString::into_raw)
                .chain(std::iter::once(std::ptr::null_mut()))
                .collect(),
        );
        let argc = c_int::try_from(argv.len() - 1).unwrap_or(c_int::MAX);
        let mark = log::mark();
        // SAFETY: argv holds argc valid NUL-terminated strings followed by NULL, all leaked so
        // they outlive the EAL; INITIALISED guarantees this runs once per process.
        let rc = unsafe { ffi::rte_eal_init(argc, argv.as_mut_ptr()) };
        if rc < 0 {
            let e = DpdkError::from_errno("EAL initialisation", mark);
            let hint = init_hint(e.code);
            return Err(DpdkError { hint, ..e });
        }
        // SAFETY: the EAL is initialised; this returns a pointer to a static NUL-terminated path.
        let dir = unsafe { ffi::rte_eal_get_runtime_dir() };
        let runtime_dir = (!dir.is_null()).then(|| {
            // SAFETY: non-null, NUL-terminated and static for the life of the EAL.
            PathBuf::from(
                unsafe { CStr::from_ptr(dir) }
                    .to_string_lossy()
                    .into_owned(),
            )
        });
        // SAFETY: the EAL is initialised; plain value getters.
        let main = LcoreId(unsafe { ffi::rte_get_main_lcore() });
        let mut workers = Vec::new();
        let mut i = u32::MAX; // rte_get_next_lcore(-1, ...) starts from the first lcore
        loop {
            // SAFETY: the EAL is initialised; `i` is an lcore id or the -1 start value.
            i = unsafe { ffi::rte_get_next_lcore(i, 1, 0) };
            if i >= ffi::RTE_MAX_LCORE {
                break;
            }
            workers.push(LcoreId(i));
        }
        Ok(Eal(Arc::new(EalInner {
            runtime_dir,
            main,
            workers,
        })))
    }

    /// The main lcore (the thread that called [`Eal::init`]).
    pub fn main_lcore(&self) -> LcoreId {
        self.0.main
    }

    /// Every enabled lcore but the main one.
    pub fn worker_lcores(&self) -> &[LcoreId] {
        &self.0.workers
    }

    /// Time-stamp counter frequency, Hz (to turn cycle counts into time).
    pub fn tsc_hz(&self) -> u64 {
        // SAFETY: plain getter on an initialised EAL.
        unsafe { ffi::rte_get_tsc_hz() }
    }

    /// NUMA socket of the calling thread's lcore (for allocations).
    pub fn socket_id(&self) -> i32 {
        // SAFETY: plain getter on an initialised EAL.
        let s = unsafe { ffi::rte_socket_id() };
        i32::try_from(s).unwrap_or(ffi::SOCKET_ID_ANY)
    }
}

impl Drop for EalInner {
    fn drop(&mut self) {
        // SAFETY: this is the last handle: every pool and port (which hold one) is gone, and
        // workers are stopped before the ports they poll; cleanup runs once.
        let rc = unsafe { ffi::rte_eal_cleanup() };
        if rc != 0 {
            tracing::warn!(rc, "rte_eal_cleanup failed");
        }
        // DPDK leaves its runtime directory (config, fbarray and socket files) behind; it is
        // ours alone because the file prefix is unique per process.
        if let Some(dir) = &self.runtime_dir
            && dir.exists()
            && let Err(e) = std::fs::remove_dir_all(dir)
        {
            tracing::warn!(dir = %dir.display(), error = %e, "cannot remove DPDK runtime dir");
        }
    }
}
