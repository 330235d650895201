//! A blocking control-socket client: one request at a time, each waiting for its reply (up to
//! [`ClientConfig::timeout`]). Events that arrive while a reply is awaited are kept, in order,
//! for [`Client::next_event`].

use std::collections::VecDeque;
use std::io::{ErrorKind, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

use super::frame::{self, DEFAULT_MAX_FRAME, Decoder};
use super::msg::{self, Envelope, Message, PROTOCOL_VERSION};
use super::port::PortSpecDto;
use super::stats::Stats;
use super::{CtlError, ProtocolError};
use crate::policy::{Policy, Workload};
use crate::report::Event;

/// Settings of a [`Client`].
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// Name sent in Hello (shows in the dataplane's log).
    pub name: String,
    /// Largest frame payload sent or accepted.
    pub max_frame: u32,
    /// How long a request waits for its reply (`None`: forever). Policy acknowledgements
    /// wait for every worker, and pair removal for its worker to let go.
    pub timeout: Option<Duration>,
}

impl Default for ClientConfig {
    fn default() -> Self {
        Self {
            name: concat!("palisade ", env!("CARGO_PKG_VERSION")).to_owned(),
            max_frame: DEFAULT_MAX_FRAME,
            timeout: Some(Duration::from_secs(30)),
        }
    }
}

/// What the dataplane said in `hello_ok`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerHello {
    /// Its protocol version.
    pub version: u32,
    /// Its version string.
    pub dataplane: String,
    /// Generation of the policy it was running at connect time.
    pub generation: u64,
}

/// A connection to the dataplane's control socket, past the handshake.
#[derive(Debug)]
pub struct Client {
    stream: UnixStream,
    decoder: Decoder,
    cfg: ClientConfig,
    next_id: u64,
    hello: ServerHello,
    events: VecDeque<Event>,
    buf: Vec<u8>,
}

fn unexpected(expected: &'static str, got: &Message) -> CtlError {
    CtlError::Protocol(ProtocolError::Unexpected {
        expected,
        got: got.type_name().to_owned(),
    })
}

impl Client {
    /// Connects with default settings and does the handshake.
    pub fn connect(path: impl AsRef<Path>) -> Result<Self, CtlError> {
        Self::connect_with(path, ClientConfig::default())
    }

    /// Connects and does the handshake.
    pub fn connect_with(path: impl AsRef<Path>, cfg: ClientConfig) -> Result<Self, CtlError> {
        let path = path.as_ref();
        let stream = UnixStream::connect(path)
            .map_err(|e| CtlError::io(format!("connect to {}", path.display()), e))?;
        let mut c = Self {
            stream,
            decoder: Decoder::new(cfg.max_frame),
            next_id: 1,
            hello: ServerHello {
                version: 0,
                dataplane: String::new(),
                generation: 0,
            },
            events: VecDeque::new(),
            buf: vec![0; 64 << 10],
            cfg,
        };
        let hello = Message::Hello {
            version: PROTOCOL_VERSION,
            client: c.cfg.name.clone(),
        };
        match c.request(hello)? {
            Message::HelloOk {
                version,
                dataplane,
                generation,
            } => {
                if version != PROTOCOL_VERSION {
                    return Err(CtlError::Protocol(ProtocolError::Version {
                        ours: PROTOCOL_VERSION,
                        theirs: version.to_string(),
                    }));
                }
                c.hello = ServerHello {
                    version,
                    dataplane,
                    generation,
                };
                Ok(c)
            }
            other => Err(unexpected("hello_ok", &other)),
        }
    }

    /// The dataplane's handshake answer.
    pub fn server(&self) -> &ServerHello {
        &self.hello
    }

    /// Liveness check.
    pub fn ping(&mut self) -> Result<(), CtlError> {
        match self.request(Message::Ping)? {
            Message::Pong => Ok(()),
            other => Err(unexpected("pong", &other)),
        }
    }

    /// Replaces the whole policy; returns the generation every worker now runs.
    pub fn set_policy(&mut self, policy: &Policy) -> Result<u64, CtlError> {
        match self.request(Message::SetPolicy(policy.clone()))? {
            Message::PolicyAck { generation } => Ok(generation),
            other => Err(unexpected("policy_ack", &other)),
        }
    }

    /// Adds or replaces a workload; returns once every worker enforces it.
    pub fn set_workload(&mut self, workload: &Workload) -> Result<(), CtlError> {
        self.expect_ok(Message::SetWorkload(workload.clone()))
    }

    /// Removes a workload; returns once every worker has dropped it.
    pub fn remove_workload(&mut self, id: &str) -> Result<(), CtlError> {
        self.expect_ok(Message::RemoveWorkload { id: id.to_owned() })
    }

    /// Attaches two ports and forwards between them; returns the pair id.
    pub fn add_pair(&mut self, a: PortSpecDto, b: PortSpecDto) -> Result<u64, CtlError> {
        match self.request(Message::AddPair {
            ports: Box::new([a, b]),
        })? {
            Message::PairAdded { id } => Ok(id),
            other => Err(unexpected("pair_added", &other)),
        }
    }

    /// Detaches a pair.
    pub fn remove_pair(&mut self, id: u64) -> Result<(), CtlError> {
        self.expect_ok(Message::RemovePair { id })
    }

    /// Every counter.
    pub fn stats(&mut self) -> Result<Stats, CtlError> {
        match self.request(Message::GetStats)? {
            Message::Stats(s) => Ok(s),
            other => Err(unexpected("stats", &other)),
        }
    }

    /// Asks for the event stream; read it with [`Client::next_event`] or [`Client::events`].
    pub fn subscribe(&mut self) -> Result<(), CtlError> {
        self.expect_ok(Message::Subscribe)
    }

    /// The next event, waiting up to `timeout` (`None`: forever); `Ok(None)` on timeout.
    pub fn next_event(&mut self, timeout: Option<Duration>) -> Result<Option<Event>, CtlError> {
        if let Some(ev) = self.events.pop_front() {
            return Ok(Some(ev));
        }
        let deadline = timeout.map(|t| Instant::now() + t);
        let Some(env) = self.read_envelope(deadline)? else {
            return Ok(None);
        };
        match env.msg {
            Message::Event(ev) if env.id == 0 => Ok(Some(ev)),
            Message::Error { code, message } => Err(CtlError::Remote { code, message }),
            other => Err(unexpected("event", &other)),
        }
    }

    /// Events as a blocking iterator; it ends when the dataplane closes the connection.
    pub fn events(&mut self) -> Events<'_> {
        Events {
            client: self,
            done: false,
        }
    }

    /// Sends any message and returns its reply; an `error` reply becomes
    /// [`CtlError::Remote`].
    pub fn request(&mut self, msg: Message) -> Result<Message, CtlError> {
        let id = self.next_id;
        self.next_id += 1;
        let payload = msg::to_payload(&Envelope::new(id, msg)).map_err(|e| {
            CtlError::Protocol(ProtocolError::Malformed {
                code: super::ErrorCode::BadRequest,
                message: e.to_string(),
            })
        })?;
        let bytes = frame::encode(&payload, self.cfg.max_frame)?;
        self.stream
            .set_write_timeout(self.cfg.timeout)
            .map_err(|e| CtlError::io("set a write timeout", e))?;
        if let Err(e) = self.stream.write_all(&bytes) {
            return Err(match e.kind() {
                // The dataplane may have said why before closing (`busy`, `frame_too_large`).
                ErrorKind::BrokenPipe | ErrorKind::ConnectionReset => self.parting_error(),
                ErrorKind::WouldBlock | ErrorKind::TimedOut => {
                    CtlError::Timeout(self.cfg.timeout.unwrap_or_default())
                }
                _ => CtlError::io("send a request", e),
            });
        }
        let deadline = self.cfg.timeout.map(|t| Instant::now() + t);
        loop {
            let Some(env) = self.read_envelope(deadline)? else {
                return Err(CtlError::Timeout(self.cfg.timeout.unwrap_or_default()));
            };
            match env.msg {
                Message::Error { code, message } if env.id == id || env.id == 0 => {
                    return Err(CtlError::Remote { code, message });
                }
                Message::Event(ev) if env.id == 0 => self.events.push_back(ev),
                m if env.id == id => return Ok(m),
                other => return Err(unexpected("a reply to the request", &other)),
            }
        }
    }

    /// After the dataplane closed the connection: the error it sent last, if it sent one.
    fn parting_error(&mut self) -> CtlError {
        let deadline = Instant::now() + Duration::from_millis(100);
        loop {
            match self.read_envelope(Some(deadline)) {
                Ok(Some(Envelope {
                    msg: Message::Error { code, message },
                    ..
                })) => return CtlError::Remote { code, message },
                Ok(Some(Envelope {
                    msg: Message::Event(ev),
                    ..
                })) => self.events.push_back(ev),
                Ok(Some(_)) => {}
                Ok(None) | Err(_) => return CtlError::Closed,
            }
        }
    }

    fn expect_ok(&mut self, msg: Message) -> Result<(), CtlError> {
        match self.request(msg)? {
            Message::Ok => Ok(()),
            other => Err(unexpected("ok", &other)),
        }
    }

    /// The next envelope, or `None` once `deadline` passes.
    fn read_envelope(&mut self, deadline: Option<Instant>) -> Result<Option<Envelope>, CtlError> {
        loop {
            if let Some(payload) = self.decoder.next_frame()? {
                return msg::decode(&payload).map(Some).map_err(|r| {
                    CtlError::Protocol(ProtocolError::Malformed {
                        code: r.code,
                        message: r.message,
                    })
                });
            }
            let wait = match deadline {
                None => None,
                Some(d) => {
                    let left = d.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        return Ok(None);
                    }
                    // A zero read timeout means "forever" to the OS: never pass one.
                    Some(left.max(Duration::from_millis(1)))
                }
            };
            self.stream
                .set_read_timeout(wait)
                .map_err(|e| CtlError::io("set a read timeout", e))?;
            match self.stream.read(&mut self.buf) {
                Ok(0) => {
                    self.decoder.finish()?;
                    return Err(CtlError::Closed);
                }
                Ok(n) => self.decoder.push(&self.buf[..n]),
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) if e.kind() == ErrorKind::ConnectionReset => return Err(CtlError::Closed),
                Err(e) => return Err(CtlError::io("read a reply", e)),
            }
        }
    }
}

/// Blocking iterator over a subscribed client's events; see [`Client::events`].
#[derive(Debug)]
pub struct Events<'a> {
    client: &'a mut Client,
    done: bool,
}

impl Iterator for Events<'_> {
    type Item = Result<Event, CtlError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        match self.client.next_event(None) {
            Ok(Some(ev)) => Some(Ok(ev)),
            Ok(None) | Err(CtlError::Closed) => {
                self.done = true;
                None
            }
            Err(e) => {
                self.done = true;
                Some(Err(e))
            }
        }
    }
}
