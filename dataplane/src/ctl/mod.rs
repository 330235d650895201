//! The control socket between `palisade` (control) and `palisade-dp` (the dataplane): the
//! protocol, a sans-IO server core, its Unix-socket shell, and a blocking client.
//!
//! # Wire format
//!
//! A Unix stream socket (default `/run/palisade/dp.sock`, mode 0600 in a parent directory
//! created 0700). Each frame is a 4-byte big-endian payload length, then the payload
//! ([`frame`]); payloads above the limit ([`frame::DEFAULT_MAX_FRAME`], 64 MiB, configurable)
//! are refused from their length prefix alone, and the connection then closes. The payload is
//! a JSON envelope `{"v": 1, "id": <u64>, "msg": {"type": "...", "data": ...}}` ([`msg`]):
//! readable with `socat`, and control is not the packet path.
//!
//! # Messages (request -> reply)
//!
//! | request | reply |
//! |---|---|
//! | `hello {version, client}` (first, always) | `hello_ok {version, dataplane, generation}`, or `error` and close |
//! | `set_policy <Policy>` | `policy_ack {generation}` once every worker runs it |
//! | `set_workload <Workload>` | `ok` once every worker runs the updated policy |
//! | `remove_workload {id}` | `ok` once every worker runs the updated policy |
//! | `add_pair {ports: [port, port]}` | `pair_added {id}` |
//! | `remove_pair {id}` | `ok` once the worker has let go and the ports are detached |
//! | `get_stats` | `stats <Stats>` |
//! | `subscribe` | `ok`, then `event <Event>` frames with id 0 until the connection closes |
//! | `ping` | `pong` |
//!
//! Any request may instead get `error {code, message}` ([`ErrorCode`]) with its id. A payload
//! that is not JSON, an unknown `type`, a bad body or a wrong `v` gets an `error` with the
//! request's `id` when it can be read (else 0) and a log line; the connection stays usable.
//! Only an oversized frame, and anything but a compatible `hello` before the handshake, close
//! it. Forwarding never depends on any of this.
//!
//! # Ordering, acknowledgements, reconnects
//!
//! - A connection's requests are handled one at a time, in order; each reply is sent when its
//!   request is done, so replies come in request order. Event frames (id 0) interleave between
//!   replies; `subscribe`'s `ok` precedes its first event.
//! - `policy_ack {generation}` and the `ok` of the workload and pair requests are sent only
//!   after the backend has returned, i.e. once every worker runs the change. Workload updates
//!   change the running policy but not its generation (the generation is control's number for
//!   a whole snapshot); a `set_policy` older than the running generation is refused with
//!   `stale_generation`, an equal one is accepted (an idempotent resync).
//! - Events never block the dataplane: each subscriber has a bounded queue
//!   ([`session::DEFAULT_EVENT_QUEUE`] events); what does not fit is dropped and counted, and
//!   the count arrives as `event {"type": "overflow", "lost": n}` before the next event.
//! - If control goes away the dataplane keeps enforcing the last policy; a new connection's
//!   `hello_ok` says which generation runs, and a full `set_policy` resyncs.
//!
//! # Layers
//!
//! [`frame`] (codec) and [`msg`] (messages) are shared by both ends. [`Session`] is the server
//! side of one connection as a state machine over a [`Backend`] (what `palisade-dp` does);
//! [`Server`] owns the listening socket and drives sessions from the caller's thread
//! ([`Server::poll`]). [`Client`] is the blocking client `palisade` uses.

pub mod client;
pub mod frame;
pub mod msg;
pub mod port;
pub mod server;
pub mod session;
pub mod stats;

use std::path::PathBuf;
use std::time::Duration;

pub use client::{Client, ClientConfig, ServerHello};
pub use frame::{DEFAULT_MAX_FRAME, Decoder, FrameError};
pub use msg::{Envelope, ErrorCode, Message, PROTOCOL_VERSION};
pub use port::PortSpecDto;
pub use server::{Server, ServerConfig};
pub use session::{Backend, BackendError, Session, SessionConfig};
pub use stats::Stats;

/// Default path of the control socket.
pub const DEFAULT_SOCKET: &str = "/run/palisade/dp.sock";

/// A protocol violation by the other end.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProtocolError {
    /// The peer speaks another protocol version.
    #[error("the peer speaks protocol version {theirs}, this build speaks {ours}")]
    Version {
        /// Ours.
        ours: u32,
        /// Theirs.
        theirs: String,
    },
    /// A message that does not answer what was asked.
    #[error("expected `{expected}`, got `{got}`")]
    Unexpected {
        /// What was expected.
        expected: &'static str,
        /// What came.
        got: String,
    },
    /// A frame that does not decode.
    #[error("undecodable frame ({code}): {message}")]
    Malformed {
        /// Classification.
        code: ErrorCode,
        /// Reason.
        message: String,
    },
}

/// Why a control-socket operation failed.
#[derive(Debug, thiserror::Error)]
pub enum CtlError {
    /// A socket or file operation failed.
    #[error("control socket: cannot {op}")]
    Io {
        /// What was being done (`bind /run/palisade/dp.sock`).
        op: String,
        /// What the OS said.
        #[source]
        source: std::io::Error,
    },
    /// A frame above the limit, or cut short.
    #[error(transparent)]
    Frame(#[from] FrameError),
    /// The peer broke the protocol.
    #[error(transparent)]
    Protocol(#[from] ProtocolError),
    /// The dataplane answered with an error.
    #[error("the dataplane refused the request ({code}): {message}")]
    Remote {
        /// Its code.
        code: ErrorCode,
        /// Its reason.
        message: String,
    },
    /// The peer closed the connection.
    #[error("the control connection was closed by the peer")]
    Closed,
    /// No reply in time.
    #[error("no reply from the dataplane within {0:?}")]
    Timeout(Duration),
    /// The socket path is taken by something that is not a socket; it is left alone.
    #[error("{} exists and is not a socket; not removing it", .0.display())]
    NotASocket(PathBuf),
    /// Another process is listening on the socket path.
    #[error("{} is in use: another dataplane is listening on it", .0.display())]
    InUse(PathBuf),
}

impl CtlError {
    fn io(op: impl Into<String>, source: std::io::Error) -> Self {
        Self::Io {
            op: op.into(),
            source,
        }
    }
}

#[cfg(test)]
mod tests;
