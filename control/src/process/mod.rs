//! The process engine: which programs each group runs, learned in discover, alerted on in
//! monitor, blocked before they run in protect.
//!
//! - [`attribution`]: pid -> container (cgroup, cached per pid and start time), program,
//!   path, command line, uid, parent; what is known of a process that is already gone;
//! - [`connector`]: process events (exec, fork, exit, uid/gid change) from the kernel's
//!   netlink proc connector, with loss counted (ENOBUFS) so the caller can rescan `/proc`;
//! - [`engine`]: profiles judged per exec (discover learns, monitor alerts, protect kills
//!   through a pidfd until exec marks take over), root-gain and reverse-shell findings,
//!   the loop in `palisade up`;
//! - [`gate`]: the exec gate of protect mode, the policy the exec permission responder
//!   ([`crate::fanotify`], `FAN_OPEN_EXEC_PERM`) asks, by path.

pub mod attribution;
pub mod connector;
pub mod engine;
pub mod gate;
