//! The file engine: who touches the sensitive files of each group's containers, learned in
//! discover, alerted on in monitor, blocked before the open in protect.
//!
//! - [`rules`]: the defaults and a group's rules, matched by path (globs, recursion), and
//!   what an access amounts to;
//! - [`engine`]: the fanotify policy (the same responder as the process engine's exec gate,
//!   [`crate::fanotify`]), the marks on each container's filesystem, learning and events, the
//!   loop in `palisade up`.

pub mod engine;
pub mod rules;
