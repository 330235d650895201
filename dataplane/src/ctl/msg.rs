//! Messages and the JSON envelope every frame carries:
//! `{"v": PROTOCOL_VERSION, "id": <u64>, "msg": {"type": "<snake_case>", "data": <body>}}`.
//!
//! `id` ties a reply to its request (the reply repeats it); unsolicited frames (events) carry
//! 0. Messages without a body have no `data` (`{"type": "ping"}`).

use std::fmt;

use serde::{Deserialize, Serialize};

use super::port::PortSpecDto;
use super::stats::Stats;
use crate::policy::{Policy, Workload};
use crate::report::Event;

/// The protocol version this build speaks. Both ends must speak the same one.
pub const PROTOCOL_VERSION: u32 = 1;

/// One frame's payload.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Envelope {
    /// Protocol version ([`PROTOCOL_VERSION`]).
    pub v: u32,
    /// Request id; a reply repeats its request's; 0 for unsolicited frames.
    pub id: u64,
    /// The message.
    pub msg: Message,
}

impl Envelope {
    /// An envelope of this protocol version.
    pub fn new(id: u64, msg: Message) -> Self {
        Self {
            v: PROTOCOL_VERSION,
            id,
            msg,
        }
    }
}

/// Everything either end sends. Requests go from control to the dataplane, replies and events
/// back; see the module documentation of [`crate::ctl`] for which reply each request gets.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", content = "data", rename_all = "snake_case")]
pub enum Message {
    // ---- requests (control -> dataplane) ----
    /// The first message on every connection.
    Hello {
        /// Protocol version the client speaks.
        version: u32,
        /// Who is connecting (for logs), e.g. `palisade 0.1.0`.
        client: String,
    },
    /// Replace the whole policy. Answered by `PolicyAck` once every worker runs it.
    SetPolicy(Policy),
    /// Add or replace one workload. Answered by `Ok` once every worker runs the result.
    SetWorkload(Workload),
    /// Forget a workload. Answered by `Ok` once every worker runs the result.
    RemoveWorkload {
        /// Its id.
        id: String,
    },
    /// Attach two ports and forward between them. Answered by `PairAdded`.
    AddPair {
        /// The two ports, as `[[dataplane.port]]` tables (boxed: the largest message body).
        ports: Box<[PortSpecDto; 2]>,
    },
    /// Stop forwarding between a pair's ports and detach them. Answered by `Ok`.
    RemovePair {
        /// The id `PairAdded` gave.
        id: u64,
    },
    /// Answered by `Stats`.
    GetStats,
    /// Answered by `Ok`, then events stream (id 0) until the connection closes.
    Subscribe,
    /// Answered by `Pong`.
    Ping,

    // ---- replies and events (dataplane -> control) ----
    /// Handshake accepted.
    HelloOk {
        /// Protocol version the server speaks.
        version: u32,
        /// The dataplane's version string.
        dataplane: String,
        /// Generation of the policy running now (0: none yet).
        generation: u64,
    },
    /// Every worker runs the policy of this generation.
    PolicyAck {
        /// The generation.
        generation: u64,
    },
    /// Done.
    Ok,
    /// A pair was added.
    PairAdded {
        /// Its id, for `RemovePair`.
        id: u64,
    },
    /// Counters.
    Stats(Stats),
    /// An event (id 0), after `Subscribe`.
    Event(Event),
    /// Liveness reply.
    Pong,
    /// The request (or frame) was refused.
    Error {
        /// What kind of failure.
        code: ErrorCode,
        /// Human-readable reason.
        message: String,
    },
}

impl Message {
    /// The `type` of every message, in declaration order.
    pub const TYPES: &'static [&'static str] = &[
        "hello",
        "set_policy",
        "set_workload",
        "remove_workload",
        "add_pair",
        "remove_pair",
        "get_stats",
        "subscribe",
        "ping",
        "hello_ok",
        "policy_ack",
        "ok",
        "pair_added",
        "stats",
        "event",
        "pong",
        "error",
    ];

    /// This message's `type` on the wire.
    pub fn type_name(&self) -> &'static str {
        match self {
            Self::Hello { .. } => "hello",
            Self::SetPolicy(_) => "set_policy",
            Self::SetWorkload(_) => "set_workload",
            Self::RemoveWorkload { .. } => "remove_workload",
            Self::AddPair { .. } => "add_pair",
            Self::RemovePair { .. } => "remove_pair",
            Self::GetStats => "get_stats",
            Self::Subscribe => "subscribe",
            Self::Ping => "ping",
            Self::HelloOk { .. } => "hello_ok",
            Self::PolicyAck { .. } => "policy_ack",
            Self::Ok => "ok",
            Self::PairAdded { .. } => "pair_added",
            Self::Stats(_) => "stats",
            Self::Event(_) => "event",
            Self::Pong => "pong",
            Self::Error { .. } => "error",
        }
    }

    /// Whether control sends this one (a request), as opposed to the dataplane.
    pub fn is_request(&self) -> bool {
        matches!(
            self,
            Self::Hello { .. }
                | Self::SetPolicy(_)
                | Self::SetWorkload(_)
                | Self::RemoveWorkload { .. }
                | Self::AddPair { .. }
                | Self::RemovePair { .. }
                | Self::GetStats
                | Self::Subscribe
                | Self::Ping
        )
    }

    /// An `Error` message.
    pub fn error(code: ErrorCode, message: impl Into<String>) -> Self {
        Self::Error {
            code,
            message: message.into(),
        }
    }
}

/// Why a request or frame was refused. Unknown codes from a newer peer read as `Other`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// The payload is not JSON, or not an envelope.
    Malformed,
    /// The envelope's `v` or the Hello's version is not this protocol's.
    Version,
    /// A `type` this end does not know.
    UnknownMessage,
    /// A known message whose body does not fit it.
    BadRequest,
    /// Something other than Hello before the handshake.
    HandshakeRequired,
    /// A message not valid here (a reply sent as a request, a second Hello).
    Unexpected,
    /// A frame above the size limit (the connection closes).
    FrameTooLarge,
    /// The request's content was rejected (a policy that does not validate, a bad port).
    Invalid,
    /// A policy older than the one running.
    StaleGeneration,
    /// No such pair or workload.
    NotFound,
    /// The dataplane could not carry the request out (device error, ack timeout).
    Failed,
    /// Too many control connections.
    Busy,
    /// A code this build does not know.
    #[serde(other)]
    Other,
}

impl ErrorCode {
    /// The code as on the wire.
    pub fn name(self) -> &'static str {
        match self {
            Self::Malformed => "malformed",
            Self::Version => "version",
            Self::UnknownMessage => "unknown_message",
            Self::BadRequest => "bad_request",
            Self::HandshakeRequired => "handshake_required",
            Self::Unexpected => "unexpected",
            Self::FrameTooLarge => "frame_too_large",
            Self::Invalid => "invalid",
            Self::StaleGeneration => "stale_generation",
            Self::NotFound => "not_found",
            Self::Failed => "failed",
            Self::Busy => "busy",
            Self::Other => "other",
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A payload that did not decode into an [`Envelope`], with what could be read of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejected {
    /// The request id, when it could be read (else 0).
    pub id: u64,
    /// Error code for the reply.
    pub code: ErrorCode,
    /// Reason for the reply and the log.
    pub message: String,
}

/// Decodes a payload in two steps, so that a bad message still yields its `id` for the error
/// reply: first the envelope as generic JSON, then the message.
pub fn decode(payload: &[u8]) -> Result<Envelope, Rejected> {
    let value: serde_json::Value = serde_json::from_slice(payload).map_err(|e| Rejected {
        id: 0,
        code: ErrorCode::Malformed,
        message: format!("not JSON: {e}"),
    })?;
    let serde_json::Value::Object(mut obj) = value else {
        return Err(Rejected {
            id: 0,
            code: ErrorCode::Malformed,
            message: "a frame must hold a JSON object {\"v\", \"id\", \"msg\"}".into(),
        });
    };
    let bad = |id, code, message: String| Rejected { id, code, message };
    let id = match obj.get("id") {
        None => return Err(bad(0, ErrorCode::Malformed, "missing `id`".into())),
        Some(v) => v.as_u64().ok_or_else(|| {
            bad(
                0,
                ErrorCode::Malformed,
                "`id` must be an unsigned integer".into(),
            )
        })?,
    };
    let v = obj.get("v").and_then(serde_json::Value::as_u64);
    if v != Some(u64::from(PROTOCOL_VERSION)) {
        let got = obj.get("v").map_or("nothing".into(), ToString::to_string);
        return Err(bad(
            id,
            ErrorCode::Version,
            format!("protocol version {PROTOCOL_VERSION} expected, got {got}"),
        ));
    }
    let Some(msg) = obj.remove("msg") else {
        return Err(bad(id, ErrorCode::Malformed, "missing `msg`".into()));
    };
    if let Some(extra) = obj.keys().find(|k| !matches!(k.as_str(), "v" | "id")) {
        return Err(bad(
            id,
            ErrorCode::Malformed,
            format!("unknown envelope field `{extra}`"),
        ));
    }
    let ty = msg
        .get("type")
        .and_then(serde_json::Value::as_str)
        .map(str::to_owned);
    match serde_json::from_value::<Message>(msg) {
        Ok(msg) => Ok(Envelope {
            v: PROTOCOL_VERSION,
            id,
            msg,
        }),
        Err(e) => Err(match ty {
            None => bad(
                id,
                ErrorCode::Malformed,
                "`msg` must be an object with a string `type`".into(),
            ),
            Some(t) if !Message::TYPES.contains(&t.as_str()) => bad(
                id,
                ErrorCode::UnknownMessage,
                format!("unknown message type `{t}`"),
            ),
            Some(t) => bad(id, ErrorCode::BadRequest, format!("bad `{t}` message: {e}")),
        }),
    }
}

/// Serialises an envelope to JSON (the payload of a frame).
pub fn to_payload(env: &Envelope) -> Result<Vec<u8>, serde_json::Error> {
    payload(env.id, &env.msg)
}

/// The payload of `msg` under request id `id`, without building (cloning into) an
/// [`Envelope`]; the same bytes.
pub fn payload(id: u64, msg: &Message) -> Result<Vec<u8>, serde_json::Error> {
    #[derive(Serialize)]
    struct EnvelopeRef<'a> {
        v: u32,
        id: u64,
        msg: &'a Message,
    }
    serde_json::to_vec(&EnvelopeRef {
        v: PROTOCOL_VERSION,
        id,
        msg,
    })
}
