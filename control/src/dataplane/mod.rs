//! `palisade`'s side of the dataplane: running and supervising `palisade-dp`
//! ([`Supervisor`]), keeping it on the latest policy snapshot across restarts, and turning
//! what it streams into control's events ([`events`]).
//!
//! ```text
//!  SupervisorHandle::set_policy/stats/shutdown        DpNotice (Up, Down, Restarted, Event)
//!            |                                                   ^
//!            v                                                   |
//!  [supervisor thread] -- spawn, SIGTERM --> palisade-dp --stdout/stderr--> tracing (target "dp")
//!      | requests connection (set_policy, get_stats)      ^
//!      +-- events thread: subscribed connection ----------+
//! ```
//!
//! The control-socket client is blocking, so the supervisor runs on its own threads and the
//! handle talks to them through a mutex-protected state and oneshot channels. Two connections
//! per dataplane run: one subscribed to events, one for requests (so a slow request never
//! holds events back, and events never sit queued behind a reply).

pub mod backoff;
pub mod events;
pub mod supervisor;

use std::sync::Arc;
use std::time::Duration;

pub use backoff::Backoff;
pub use supervisor::{DpState, Supervisor, SupervisorHandle, SupervisorOptions};

use dataplane::ctl::{CtlError, ErrorCode};

/// What the supervisor tells control.
// Events are nearly all notices: boxing them would add an allocation to each for nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub enum DpNotice {
    /// Connected to a dataplane and resynced: it runs this policy generation (0 when control
    /// has not pushed one yet).
    Up {
        /// Generation running.
        generation: u64,
    },
    /// The dataplane went away (exited, stopped answering, or the connection broke).
    Down {
        /// Why, for a system event.
        reason: String,
    },
    /// A new `palisade-dp` was started after a failure; `attempt` counts consecutive
    /// failures (1 for the first restart after a good run).
    Restarted {
        /// Consecutive failures so far.
        attempt: u32,
    },
    /// An event the dataplane streamed.
    Event(dataplane::report::Event),
}

/// Why a request to the dataplane failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum DpError {
    /// The dataplane answered with an error (an invalid or stale policy, ...).
    #[error("the dataplane refused the request ({code}): {message}")]
    Refused {
        /// Its code.
        code: ErrorCode,
        /// Its reason.
        message: String,
    },
    /// No dataplane is connected right now.
    #[error("the dataplane is not connected")]
    NotConnected,
    /// No answer in time.
    #[error("no answer from the dataplane within {0:?}")]
    Timeout(Duration),
    /// The connection failed during the request.
    #[error("the control connection failed")]
    Connection(#[source] Arc<CtlError>),
    /// The supervisor was shut down.
    #[error("the dataplane supervisor is shut down")]
    Shutdown,
    /// The request was for a dataplane run that has ended (its pairs died with it).
    #[error("the dataplane run the request was meant for has ended")]
    WrongRun,
    /// A reply of the wrong kind.
    #[error("unexpected reply from the dataplane: {0}")]
    Unexpected(String),
}

impl From<CtlError> for DpError {
    fn from(e: CtlError) -> Self {
        match e {
            CtlError::Remote { code, message } => Self::Refused { code, message },
            CtlError::Timeout(d) => Self::Timeout(d),
            other => Self::Connection(Arc::new(other)),
        }
    }
}
