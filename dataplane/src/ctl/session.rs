//! The server side of one connection as a sans-IO state machine: bytes in
//! ([`Session::receive`]), requests turned into [`Backend`] calls, replies and events out
//! ([`Session::poll_transmit`] / [`Session::advance`]). No sockets, no clock: the I/O shell
//! ([`super::Server`]) or a test drives it.
//!
//! States: `AwaitHello` -> (compatible Hello) -> `Ready`; anything else first, or a Hello of
//! another version, is answered with an `Error` and closes. In `Ready`, a frame that does not
//! decode is answered with an `Error` (same `id` when it can be read), logged, and the
//! connection stays usable; only a frame above the size limit closes it (the stream cannot be
//! resynchronised). A closing session accepts no further input; the shell flushes what is
//! queued and closes.

use std::collections::VecDeque;

use super::frame::{self, DEFAULT_MAX_FRAME, Decoder, FrameError};
use super::msg::{self, ErrorCode, Message, PROTOCOL_VERSION};
use super::port::pair_configs;
use super::stats::Stats;
use crate::config::PortConfig;
use crate::policy::{Policy, PolicyError, Workload};
use crate::report::Event;

/// Default capacity of a subscriber's event queue.
pub const DEFAULT_EVENT_QUEUE: usize = 4096;

/// Queued output above which a session stops taking input (a client that sends requests but
/// does not read the replies) and stops pulling events from its queue into the output.
const OUT_HIGH_WATER: usize = 256 << 10;

/// What the dataplane does for control. Every method runs on the thread that polls the
/// server and may block until the dataplane has done the work; the session replies only
/// after it returns.
pub trait Backend {
    /// Generation of the policy running now (0 before the first).
    fn generation(&self) -> u64;

    /// Compiles and publishes `policy` (already validated, and not older than the running
    /// one) and returns once every worker runs it, with the generation now running (normally
    /// `policy.generation`).
    fn set_policy(&mut self, policy: Policy) -> Result<u64, BackendError>;

    /// Adds or replaces one workload (by id) in the running policy; returns once every worker
    /// runs the result. The running generation does not change.
    fn set_workload(&mut self, workload: Workload) -> Result<(), BackendError>;

    /// Removes a workload from the running policy; returns once every worker runs the
    /// result. [`ErrorCode::NotFound`] when there is no such workload.
    fn remove_workload(&mut self, id: &str) -> Result<(), BackendError>;

    /// Attaches two (validated) ports, forwards between them, and returns the pair's id.
    fn add_pair(&mut self, ports: [PortConfig; 2]) -> Result<u64, BackendError>;

    /// Stops forwarding between a pair's ports and detaches them once their worker has let
    /// go. [`ErrorCode::NotFound`] when there is no such pair.
    fn remove_pair(&mut self, id: u64) -> Result<(), BackendError>;

    /// Every counter, now.
    fn stats(&mut self) -> Stats;
}

/// A request the backend refused or could not carry out; becomes an `Error` reply.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct BackendError {
    /// Reply code ([`ErrorCode::Invalid`], [`ErrorCode::NotFound`], [`ErrorCode::Failed`]).
    pub code: ErrorCode,
    /// Reason.
    pub message: String,
}

impl BackendError {
    /// The request's content was wrong.
    pub fn invalid(message: impl Into<String>) -> Self {
        Self {
            code: ErrorCode::Invalid,
            message: message.into(),
        }
    }

    /// No such pair or workload.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self {
            code: ErrorCode::NotFound,
            message: message.into(),
        }
    }

    /// The dataplane could not do it.
    pub fn failed(message: impl Into<String>) -> Self {
        Self {
            code: ErrorCode::Failed,
            message: message.into(),
        }
    }
}

impl From<PolicyError> for BackendError {
    fn from(e: PolicyError) -> Self {
        Self::invalid(e.to_string())
    }
}

/// Settings of a session.
#[derive(Debug, Clone)]
pub struct SessionConfig {
    /// Largest frame payload accepted and sent, bytes.
    pub max_frame: u32,
    /// Events a subscriber may have queued before further ones are dropped and counted.
    pub event_queue: usize,
    /// Version string sent in `HelloOk`.
    pub dataplane: String,
}

impl Default for SessionConfig {
    fn default() -> Self {
        Self {
            max_frame: DEFAULT_MAX_FRAME,
            event_queue: DEFAULT_EVENT_QUEUE,
            dataplane: concat!("palisade-dp ", env!("CARGO_PKG_VERSION")).to_owned(),
        }
    }
}

/// A subscriber's bounded event queue. Publishing never blocks: when the queue is full the
/// event is dropped and counted, and the count goes out as one `Event::Overflow { lost }`
/// ahead of the next event that fits (or once the queue has drained).
#[derive(Debug)]
struct EventQueue {
    queue: VecDeque<Event>,
    cap: usize,
    lost: u64,
}

impl EventQueue {
    fn new(cap: usize) -> Self {
        Self {
            queue: VecDeque::new(),
            cap: cap.max(1),
            lost: 0,
        }
    }

    /// Queues `ev`, or counts it lost. A dropped `Overflow { lost: n }` (from a worker's
    /// ring) counts the `n` events it stands for.
    fn push(&mut self, ev: &Event) -> bool {
        if self.queue.len() >= self.cap {
            self.lost += match ev {
                Event::Overflow { lost } => *lost,
                _ => 1,
            };
            return false;
        }
        if self.lost > 0 {
            // The marker may take the queue one past its capacity.
            self.queue.push_back(Event::Overflow { lost: self.lost });
            self.lost = 0;
        }
        self.queue.push_back(ev.clone());
        true
    }

    fn pop(&mut self) -> Option<Event> {
        if let Some(ev) = self.queue.pop_front() {
            return Some(ev);
        }
        (self.lost > 0).then(|| Event::Overflow {
            lost: std::mem::take(&mut self.lost),
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    AwaitHello,
    Ready,
    Closing,
}

/// One control connection, server side.
#[derive(Debug)]
pub struct Session {
    cfg: SessionConfig,
    state: State,
    decoder: Decoder,
    out: Vec<u8>,
    /// Bytes of `out` already transmitted.
    sent: usize,
    events: Option<EventQueue>,
    client: Option<String>,
}

impl Session {
    /// A fresh connection awaiting Hello.
    pub fn new(cfg: SessionConfig) -> Self {
        Self {
            decoder: Decoder::new(cfg.max_frame),
            cfg,
            state: State::AwaitHello,
            out: Vec::new(),
            sent: 0,
            events: None,
            client: None,
        }
    }

    /// The client's name from its Hello, once the handshake is done.
    pub fn client(&self) -> Option<&str> {
        self.client.as_deref()
    }

    /// Whether the handshake is done and the session not closing.
    pub fn is_ready(&self) -> bool {
        self.state == State::Ready
    }

    /// Whether the session will take no more input; close once the output is flushed.
    pub fn is_closing(&self) -> bool {
        self.state == State::Closing
    }

    /// Whether it asked for events.
    pub fn is_subscribed(&self) -> bool {
        self.events.is_some()
    }

    /// Whether the shell should read more input now: not closing, and not holding much
    /// unsent output.
    pub fn wants_input(&self) -> bool {
        self.state != State::Closing && self.pending() < OUT_HIGH_WATER
    }

    /// Bytes queued for transmission.
    pub fn pending(&self) -> usize {
        self.out.len() - self.sent
    }

    /// Feeds bytes read from the connection; handles every whole frame among them. Returns
    /// the number of frames handled.
    pub fn receive<B: Backend + ?Sized>(&mut self, bytes: &[u8], backend: &mut B) -> usize {
        if self.state == State::Closing {
            return 0;
        }
        self.decoder.push(bytes);
        let mut handled = 0;
        while self.state != State::Closing {
            match self.decoder.next_frame() {
                Ok(Some(payload)) => {
                    handled += 1;
                    self.handle(&payload, backend);
                }
                Ok(None) => break,
                Err(e) => {
                    tracing::warn!(error = %e, "control frame too large; closing the connection");
                    self.send(0, Message::error(ErrorCode::FrameTooLarge, e.to_string()));
                    self.state = State::Closing;
                }
            }
        }
        handled
    }

    /// The peer closed its end. Logs a frame cut short.
    pub fn peer_closed(&mut self) {
        if let Err(e) = self.decoder.finish()
            && self.state != State::Closing
        {
            tracing::warn!(error = %e, "control connection closed inside a frame");
        }
        self.state = State::Closing;
    }

    /// Offers an event to a subscribed session; never blocks. Returns whether it was queued
    /// (`false` when not subscribed, or dropped and counted because the queue is full).
    pub fn publish(&mut self, event: &Event) -> bool {
        match &mut self.events {
            Some(q) if self.state == State::Ready => q.push(event),
            _ => false,
        }
    }

    /// Bytes to transmit next (empty when there is nothing to send). Queued events are
    /// encoded into the output here, as the output drains, so a slow reader backs up into
    /// its bounded event queue rather than into unbounded output.
    pub fn poll_transmit(&mut self) -> &[u8] {
        if self.state == State::Ready {
            while self.pending() < OUT_HIGH_WATER {
                let Some(ev) = self.events.as_mut().and_then(EventQueue::pop) else {
                    break;
                };
                if let Err(e) = self.encode(0, &Message::Event(ev)) {
                    tracing::warn!(error = %e, "event not sent");
                    if let Some(q) = &mut self.events {
                        q.lost += 1;
                    }
                }
            }
        }
        &self.out[self.sent..]
    }

    /// Marks `n` bytes of [`Session::poll_transmit`]'s output as transmitted.
    pub fn advance(&mut self, n: usize) {
        self.sent = (self.sent + n).min(self.out.len());
        if self.sent == self.out.len() {
            self.out.clear();
            self.sent = 0;
        } else if self.sent > OUT_HIGH_WATER {
            self.out.drain(..self.sent);
            self.sent = 0;
        }
    }

    fn encode(&mut self, id: u64, msg: &Message) -> Result<(), FrameError> {
        let payload = match msg::payload(id, msg) {
            Ok(p) => p,
            Err(e) => {
                // Unreachable for these types (no non-string map keys); answer all the same.
                tracing::error!(error = %e, "cannot serialise a control message");
                msg::payload(
                    id,
                    &Message::error(ErrorCode::Failed, "reply could not be serialised"),
                )
                .unwrap_or_default()
            }
        };
        let bytes = frame::encode(&payload, self.cfg.max_frame)?;
        self.out.extend_from_slice(&bytes);
        Ok(())
    }

    /// Queues a reply; one too large for a frame is replaced by an error saying so.
    fn send(&mut self, id: u64, msg: Message) {
        if let Err(e) = self.encode(id, &msg) {
            tracing::warn!(error = %e, reply = msg.type_name(), "control reply too large");
            let small = Message::error(
                ErrorCode::FrameTooLarge,
                format!("the `{}` reply is too large: {e}", msg.type_name()),
            );
            if let Err(e) = self.encode(id, &small) {
                tracing::error!(error = %e, "cannot send even an error reply");
            }
        }
    }

    fn refuse(&mut self, id: u64, code: ErrorCode, message: String, close: bool) {
        tracing::warn!(
            id,
            code = code.name(),
            client = self.client.as_deref().unwrap_or("-"),
            close,
            "control request refused: {message}"
        );
        self.send(id, Message::Error { code, message });
        if close {
            self.state = State::Closing;
        }
    }

    fn handle<B: Backend + ?Sized>(&mut self, payload: &[u8], backend: &mut B) {
        let awaiting_hello = self.state == State::AwaitHello;
        let env = match msg::decode(payload) {
            Ok(env) => env,
            Err(r) => return self.refuse(r.id, r.code, r.message, awaiting_hello),
        };
        let id = env.id;
        if awaiting_hello {
            return match env.msg {
                Message::Hello { version, client } if version == PROTOCOL_VERSION => {
                    tracing::info!(%client, version, "control client connected");
                    self.client = Some(client);
                    self.state = State::Ready;
                    let reply = Message::HelloOk {
                        version: PROTOCOL_VERSION,
                        dataplane: self.cfg.dataplane.clone(),
                        generation: backend.generation(),
                    };
                    self.send(id, reply);
                }
                Message::Hello { version, .. } => self.refuse(
                    id,
                    ErrorCode::Version,
                    format!(
                        "protocol version {version} is not supported; this dataplane speaks {PROTOCOL_VERSION}"
                    ),
                    true,
                ),
                other => self.refuse(
                    id,
                    ErrorCode::HandshakeRequired,
                    format!("`hello` must come first, not `{}`", other.type_name()),
                    true,
                ),
            };
        }
        let reply = match self.dispatch(env.msg, backend) {
            Ok(reply) => reply,
            Err(e) => return self.refuse(id, e.code, e.message, false),
        };
        self.send(id, reply);
    }

    fn dispatch<B: Backend + ?Sized>(
        &mut self,
        msg: Message,
        backend: &mut B,
    ) -> Result<Message, BackendError> {
        let ty = msg.type_name();
        Ok(match msg {
            Message::Ping => Message::Pong,
            Message::SetPolicy(policy) => {
                let running = backend.generation();
                if policy.generation < running {
                    return Err(BackendError {
                        code: ErrorCode::StaleGeneration,
                        message: format!(
                            "policy generation {} is older than the running generation {running}",
                            policy.generation
                        ),
                    });
                }
                policy.validate()?;
                let wanted = policy.generation;
                let generation = backend.set_policy(policy)?;
                tracing::info!(generation, wanted, "policy acknowledged by every worker");
                Message::PolicyAck { generation }
            }
            Message::SetWorkload(w) => {
                let id = w.id.clone();
                backend.set_workload(w)?;
                tracing::debug!(workload = %id, "workload set");
                Message::Ok
            }
            Message::RemoveWorkload { id } => {
                backend.remove_workload(&id)?;
                tracing::debug!(workload = %id, "workload removed");
                Message::Ok
            }
            Message::AddPair { ports } => {
                let cfgs = pair_configs(&ports).map_err(BackendError::invalid)?;
                let id = backend.add_pair(cfgs)?;
                Message::PairAdded { id }
            }
            Message::RemovePair { id } => {
                backend.remove_pair(id)?;
                Message::Ok
            }
            Message::GetStats => Message::Stats(backend.stats()),
            Message::Subscribe => {
                if self.events.is_none() {
                    self.events = Some(EventQueue::new(self.cfg.event_queue));
                }
                Message::Ok
            }
            Message::Hello { .. } => {
                return Err(BackendError {
                    code: ErrorCode::Unexpected,
                    message: "the handshake is already done".into(),
                });
            }
            Message::HelloOk { .. }
            | Message::PolicyAck { .. }
            | Message::Ok
            | Message::PairAdded { .. }
            | Message::Stats(_)
            | Message::Event(_)
            | Message::Pong
            | Message::Error { .. } => {
                return Err(BackendError {
                    code: ErrorCode::Unexpected,
                    message: format!("`{ty}` is sent by the dataplane, not to it"),
                });
            }
        })
    }
}
