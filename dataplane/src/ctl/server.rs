//! The I/O shell around [`Session`]: a listening Unix socket and its connections, driven from
//! the caller's thread by [`Server::poll`] (in `palisade-dp`, the main lcore's loop, between
//! counter logs). Non-blocking sockets throughout, so a poll never waits longer than its
//! timeout for I/O; only a backend call (which may wait for workers to acknowledge) can hold
//! it up.
//!
//! Several clients may be connected at once (up to [`ServerConfig::max_clients`]; more are
//! told `busy` and closed); each has its own session and handshake. Each poll pass serves the
//! connections in turn (a bounded number of reads each), so one connection's requests keep
//! their order but requests of different connections interleave. A client that goes away
//! changes nothing in the dataplane: the next one connects, learns the running generation
//! from `hello_ok`, and resyncs.
//!
//! The socket file is created mode 0600 regardless of the umask: it is bound inside a private
//! (0700) directory next to its final path, chmod-ed, then renamed into place, so no other
//! user can connect during the moment between bind and chmod (the temporary path is a few
//! bytes longer than the final one: mind the 107-byte socket path limit). A missing parent
//! directory is created 0700. At start a stale socket file is replaced (only a socket nobody
//! listens on; anything else at the path is an error and left alone); on drop the file is
//! removed if it is still the one this server created.

use std::io::{ErrorKind, Read, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::frame;
use super::msg::{self, Envelope, ErrorCode, Message};
use super::session::{Backend, Session, SessionConfig};
use super::{CtlError, DEFAULT_SOCKET};
use crate::report::Event;

/// Default limit of simultaneous control connections.
pub const DEFAULT_MAX_CLIENTS: usize = 8;

/// Bytes read per `read` call.
const READ_CHUNK: usize = 64 << 10;
/// Reads per connection per pass, so one busy client cannot starve the others.
const READS_PER_PASS: usize = 16;
/// How long a closing connection may take to flush its last replies.
const CLOSE_LINGER: Duration = Duration::from_secs(1);
/// Idle sleeps inside [`Server::poll`] start here and double up to `MAX_NAP`.
const MIN_NAP: Duration = Duration::from_micros(50);
const MAX_NAP: Duration = Duration::from_millis(2);

/// Settings of a [`Server`].
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Socket path.
    pub path: PathBuf,
    /// Settings of every session (frame limit, event queue, version string).
    pub session: SessionConfig,
    /// Simultaneous connections.
    pub max_clients: usize,
}

impl ServerConfig {
    /// Defaults, listening on `path`.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self {
            path: path.into(),
            session: SessionConfig::default(),
            max_clients: DEFAULT_MAX_CLIENTS,
        }
    }
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self::new(DEFAULT_SOCKET)
    }
}

#[derive(Debug)]
struct Conn {
    id: u64,
    stream: UnixStream,
    session: Session,
    closing_since: Option<Instant>,
}

/// The control-socket server.
#[derive(Debug)]
pub struct Server {
    listener: UnixListener,
    cfg: ServerConfig,
    /// Device and inode of the socket file this server created.
    file: (u64, u64),
    conns: Vec<Conn>,
    next_conn: u64,
    buf: Vec<u8>,
}

impl Server {
    /// Creates the socket file and listens on it.
    pub fn bind(cfg: ServerConfig) -> Result<Self, CtlError> {
        let path = cfg.path.clone();
        let parent = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        if !parent.exists() {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(&parent)
                .map_err(|e| CtlError::io(format!("create {}", parent.display()), e))?;
            set_mode(&parent, 0o700)?;
        }
        remove_stale(&path)?;
        let listener = bind_private(&parent, &path)?;
        listener
            .set_nonblocking(true)
            .map_err(|e| CtlError::io("make the listener non-blocking", e))?;
        let meta = std::fs::symlink_metadata(&path)
            .map_err(|e| CtlError::io(format!("stat {}", path.display()), e))?;
        tracing::info!(path = %path.display(), "control socket listening");
        Ok(Self {
            listener,
            file: (meta.dev(), meta.ino()),
            cfg,
            conns: Vec::new(),
            next_conn: 1,
            buf: vec![0; READ_CHUNK],
        })
    }

    /// The socket path.
    pub fn path(&self) -> &Path {
        &self.cfg.path
    }

    /// Open connections (with or without a finished handshake).
    pub fn connections(&self) -> usize {
        self.conns.len()
    }

    /// Connections that subscribed to events.
    pub fn subscribers(&self) -> usize {
        self.conns
            .iter()
            .filter(|c| c.session.is_subscribed())
            .count()
    }

    /// Offers an event to every subscriber; never blocks (a full queue drops and counts it).
    /// Returns how many subscribers queued it. It goes out on the next [`Server::poll`].
    pub fn publish(&mut self, event: &Event) -> usize {
        let mut queued = 0;
        for c in &mut self.conns {
            queued += usize::from(c.session.publish(event));
        }
        queued
    }

    /// Serves whatever is ready — new connections, requests, queued replies and events — for
    /// `timeout` (one pass when zero), napping briefly while idle. Returns the number of frames
    /// received. Socket errors end the connection they happen on, never the server.
    pub fn poll<B: Backend + ?Sized>(&mut self, backend: &mut B, timeout: Duration) -> usize {
        let start = Instant::now();
        let mut frames = 0;
        let mut nap = MIN_NAP;
        loop {
            let (n, progress) = self.pass(backend);
            frames += n;
            let elapsed = start.elapsed();
            if elapsed >= timeout {
                return frames;
            }
            if progress {
                nap = MIN_NAP;
                continue;
            }
            std::thread::sleep(nap.min(timeout - elapsed));
            nap = (nap * 2).min(MAX_NAP);
        }
    }

    /// One round over the listener and every connection: (frames received, anything done).
    fn pass<B: Backend + ?Sized>(&mut self, backend: &mut B) -> (usize, bool) {
        let mut progress = false;
        loop {
            match self.listener.accept() {
                Ok((stream, _)) => {
                    progress = true;
                    self.admit(stream);
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => {
                    // EMFILE and the like: try again next pass, keep serving the others.
                    tracing::warn!(error = %e, "control socket accept failed");
                    break;
                }
            }
        }
        let mut frames = 0;
        let buf = &mut self.buf;
        self.conns.retain_mut(|c| {
            let (n, p, keep) = serve(c, buf, backend);
            frames += n;
            progress |= p;
            if !keep {
                tracing::info!(
                    conn = c.id,
                    client = c.session.client().unwrap_or("-"),
                    "control connection closed"
                );
            }
            keep
        });
        (frames, progress)
    }

    fn admit(&mut self, mut stream: UnixStream) {
        let id = self.next_conn;
        self.next_conn += 1;
        if let Err(e) = stream.set_nonblocking(true) {
            tracing::warn!(conn = id, error = %e, "cannot make a control connection non-blocking; closing it");
            return;
        }
        if self.conns.len() >= self.cfg.max_clients {
            tracing::warn!(
                conn = id,
                max = self.cfg.max_clients,
                "too many control connections; refusing one"
            );
            let msg = Message::error(
                ErrorCode::Busy,
                format!(
                    "at most {} control connections at once",
                    self.cfg.max_clients
                ),
            );
            if let Ok(payload) = msg::to_payload(&Envelope::new(0, msg))
                && let Ok(bytes) = frame::encode(&payload, self.cfg.session.max_frame)
            {
                // Best effort: a fresh socket's buffer takes this small frame whole.
                let _ = stream.write(&bytes);
            }
            return;
        }
        tracing::debug!(conn = id, "control connection accepted");
        self.conns.push(Conn {
            id,
            stream,
            session: Session::new(self.cfg.session.clone()),
            closing_since: None,
        });
    }
}

/// Reads, handles and writes what one connection has ready: (frames, progress, keep it).
fn serve<B: Backend + ?Sized>(
    c: &mut Conn,
    buf: &mut [u8],
    backend: &mut B,
) -> (usize, bool, bool) {
    let mut frames = 0;
    let mut progress = false;
    let mut reads = 0;
    while c.session.wants_input() && reads < READS_PER_PASS {
        match c.stream.read(buf) {
            Ok(0) => {
                c.session.peer_closed();
                progress = true;
            }
            Ok(n) => {
                reads += 1;
                progress = true;
                frames += c.session.receive(&buf[..n], backend);
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => {
                tracing::debug!(conn = c.id, error = %e, "control connection read failed");
                return (frames, true, false);
            }
        }
    }
    loop {
        let out = c.session.poll_transmit();
        if out.is_empty() {
            break;
        }
        match c.stream.write(out) {
            Ok(0) => return (frames, true, false),
            Ok(n) => {
                c.session.advance(n);
                progress = true;
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => {
                // EPIPE / ECONNRESET: the client is gone.
                tracing::debug!(conn = c.id, error = %e, "control connection write failed");
                return (frames, true, false);
            }
        }
    }
    if c.session.is_closing() {
        if c.session.pending() == 0 {
            return (frames, progress, false);
        }
        let since = *c.closing_since.get_or_insert_with(Instant::now);
        if since.elapsed() >= CLOSE_LINGER {
            tracing::debug!(
                conn = c.id,
                unsent = c.session.pending(),
                "closing connection did not drain"
            );
            return (frames, progress, false);
        }
    }
    (frames, progress, true)
}

fn set_mode(path: &Path, mode: u32) -> Result<(), CtlError> {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .map_err(|e| CtlError::io(format!("chmod {:o} {}", mode, path.display()), e))
}

/// Removes a socket file nobody listens on; refuses anything else at `path`.
fn remove_stale(path: &Path) -> Result<(), CtlError> {
    use std::os::unix::fs::FileTypeExt;
    let meta = match std::fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(CtlError::io(format!("stat {}", path.display()), e)),
    };
    if !meta.file_type().is_socket() {
        return Err(CtlError::NotASocket(path.to_path_buf()));
    }
    match UnixStream::connect(path) {
        Ok(_) => Err(CtlError::InUse(path.to_path_buf())),
        Err(e) if e.kind() == ErrorKind::ConnectionRefused => {
            tracing::info!(path = %path.display(), "removing stale control socket");
            std::fs::remove_file(path)
                .map_err(|e| CtlError::io(format!("remove stale {}", path.display()), e))
        }
        Err(e) => Err(CtlError::io(format!("probe {}", path.display()), e)),
    }
}

/// Binds in a fresh 0700 directory under `parent`, sets the socket 0600, renames it to
/// `path`.
fn bind_private(parent: &Path, path: &Path) -> Result<UnixListener, CtlError> {
    let pid = std::process::id();
    let mut attempt = 0u32;
    let dir = loop {
        let dir = parent.join(format!(".dp{pid}-{attempt}"));
        match std::fs::DirBuilder::new().mode(0o700).create(&dir) {
            Ok(()) => break dir,
            Err(e) if e.kind() == ErrorKind::AlreadyExists && attempt < 64 => attempt += 1,
            Err(e) => return Err(CtlError::io(format!("create {}", dir.display()), e)),
        }
    };
    let tmp = dir.join("s");
    let result = (|| {
        set_mode(&dir, 0o700)?;
        let listener = UnixListener::bind(&tmp)
            .map_err(|e| CtlError::io(format!("bind {}", path.display()), e))?;
        set_mode(&tmp, 0o600)?;
        std::fs::rename(&tmp, path).map_err(|e| {
            CtlError::io(format!("move {} to {}", tmp.display(), path.display()), e)
        })?;
        Ok(listener)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    let _ = std::fs::remove_dir(&dir);
    result
}

impl Drop for Server {
    fn drop(&mut self) {
        // Only our own file: a successor may already have replaced it.
        let path = &self.cfg.path;
        if let Ok(m) = std::fs::symlink_metadata(path)
            && (m.dev(), m.ino()) == self.file
            && let Err(e) = std::fs::remove_file(path)
        {
            tracing::warn!(path = %path.display(), error = %e, "cannot remove the control socket");
        }
    }
}
