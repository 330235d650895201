//! Runtime events: `GET /events?filters={"type":["container"]}` on a Docker-compatible socket
//! (Docker's, or podman's `podman system service`). The answer never ends: one JSON object per
//! line (chunked under HTTP/1.1, as both send it), for example
//!
//! ```text
//! {"status":"start","id":"8e98…","from":"nginx","Type":"container","Action":"start",
//!  "Actor":{"ID":"8e98…","Attributes":{"image":"nginx","name":"web-1","app":"shop"}},
//!  "scope":"local","time":1795962250,"timeNano":1795962250422711242}
//! ```
//!
//! (`Attributes` carries the container's labels too.) Only `start`, `die` and `stop` matter:
//! they make [`super::sync`] scan at once instead of at its next interval. Docker sends `die`
//! then `stop` for `docker stop`; podman 4 only `die`.
//!
//! [`Decoder`] is the sans-IO part: fed whatever bytes the socket gives, split anywhere, it
//! yields the events. A line longer than [`MAX_LINE`] is dropped whole, a line that is no
//! event JSON is reported and skipped; only a broken head or framing ends the stream.
//! [`follow`] is the I/O shell: connect, request, feed the decoder, and reconnect with
//! backoff (from [`BACKOFF_MIN`] doubling to [`BACKOFF_MAX`]) when the stream ends.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde::Deserialize;
use tokio::io::AsyncReadExt;
use tokio::sync::mpsc;

use super::http::{self, Body};
use super::oci::label;
use super::runtime::{self, TIMEOUT};

/// Longest event line accepted (an event is a few hundred bytes plus the container's labels).
pub const MAX_LINE: usize = 64 << 10;

/// First wait before reconnecting.
pub const BACKOFF_MIN: Duration = Duration::from_millis(250);

/// Longest wait before reconnecting (also between looks for a socket when none exists).
pub const BACKOFF_MAX: Duration = Duration::from_secs(30);

/// A connection that lasted this long resets the backoff.
const STABLE: Duration = Duration::from_secs(10);

/// The request: container events only (`{"type":["container"]}`, URL-encoded).
const REQUEST: &str = "GET /events?filters=%7B%22type%22%3A%5B%22container%22%5D%7D HTTP/1.1\r\n\
                       Host: localhost\r\nAccept: application/json\r\n\r\n";

/// What happened to a container.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// `start`.
    Started,
    /// `die` or `stop`.
    Stopped,
}

/// A container event that matters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerEvent {
    /// The container id, as the runtime gave it.
    pub id: String,
    /// Its name (attribute `name`), empty when the runtime gave none.
    pub name: String,
    /// Its image (attribute `image`), empty when the runtime gave none.
    pub image: String,
    /// The runtime's action (`start`, `die`, `stop`).
    pub action: String,
    /// What it means.
    pub change: Change,
    /// A Kubernetes pod's sandbox (pause) container (label `io.kubernetes.docker.type` is
    /// `podsandbox`).
    pub sandbox: bool,
}

impl ContainerEvent {
    /// The name, else the short id.
    pub fn display_name(&self) -> &str {
        if self.name.is_empty() {
            self.id.get(..12).unwrap_or(&self.id)
        } else {
            &self.name
        }
    }
}

/// What the decoder found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Item {
    /// The runtime accepted the request (status 200): events follow.
    Connected,
    /// A container started or stopped.
    Event(ContainerEvent),
    /// A line that is no event, skipped; why.
    Bad(String),
}

/// Why a stream ended.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StreamError {
    /// The answer's head is not HTTP.
    #[error("bad answer head: {0}")]
    Head(String),
    /// The runtime refused the request.
    #[error("status {0}")]
    Status(u16),
    /// The body's framing is broken.
    #[error("bad body: {0}")]
    Body(&'static str),
    /// The body ended (the runtime closed the stream).
    #[error("the runtime ended the stream")]
    Ended,
}

#[derive(Debug)]
enum Phase {
    Head(Vec<u8>),
    Body(Body),
    Failed(StreamError),
}

/// Sans-IO decoder of the events answer (head and body).
#[derive(Debug)]
pub struct Decoder {
    phase: Phase,
    /// Body bytes of the current line so far.
    line: Vec<u8>,
    /// Dropping the rest of a line longer than [`MAX_LINE`].
    skipping: bool,
}

impl Default for Decoder {
    fn default() -> Self {
        Self::new()
    }
}

impl Decoder {
    /// A decoder expecting the answer's head.
    pub fn new() -> Self {
        Self {
            phase: Phase::Head(Vec::new()),
            line: Vec::new(),
            skipping: false,
        }
    }

    /// Feeds the next bytes; returns what they completed. After an error the stream is
    /// over and every later call returns the same error.
    pub fn feed(&mut self, bytes: &[u8]) -> Result<Vec<Item>, StreamError> {
        let mut items = Vec::new();
        let mut body_bytes = Vec::new();
        match &mut self.phase {
            Phase::Failed(e) => return Err(e.clone()),
            Phase::Body(body) => {
                if let Err(e) = body.feed(bytes, &mut body_bytes) {
                    return Err(self.fail(StreamError::Body(e)));
                }
            }
            Phase::Head(head) => {
                head.extend_from_slice(bytes);
                let parsed = match http::parse_head(head) {
                    Ok(None) => return Ok(items),
                    Ok(Some(h)) => h,
                    Err(e) => return Err(self.fail(StreamError::Head(e))),
                };
                if parsed.status != 200 {
                    return Err(self.fail(StreamError::Status(parsed.status)));
                }
                let rest = head.split_off(parsed.len);
                let mut body = Body::new(parsed.framing);
                if let Err(e) = body.feed(&rest, &mut body_bytes) {
                    return Err(self.fail(StreamError::Body(e)));
                }
                self.phase = Phase::Body(body);
                items.push(Item::Connected);
            }
        }
        self.lines(&body_bytes, &mut items);
        if let Phase::Body(body) = &self.phase
            && body.is_done()
        {
            // Report what came before the end, and the end at the next call.
            self.phase = Phase::Failed(StreamError::Ended);
        }
        Ok(items)
    }

    /// The error that ended the stream, once it is over (also when the body ended properly:
    /// an events stream is not meant to end).
    pub fn ended(&self) -> Option<StreamError> {
        match &self.phase {
            Phase::Failed(e) => Some(e.clone()),
            _ => None,
        }
    }

    /// The connection closed: the error that ends the stream.
    pub fn closed(&mut self) -> StreamError {
        match &self.phase {
            Phase::Failed(e) => e.clone(),
            Phase::Head(_) => self.fail(StreamError::Head("closed before the head".into())),
            Phase::Body(b) if b.may_close() => self.fail(StreamError::Ended),
            Phase::Body(_) => self.fail(StreamError::Body("closed inside a chunk")),
        }
    }

    fn fail(&mut self, e: StreamError) -> StreamError {
        self.phase = Phase::Failed(e.clone());
        e
    }

    fn lines(&mut self, mut bytes: &[u8], items: &mut Vec<Item>) {
        while !bytes.is_empty() {
            let nl = bytes.iter().position(|&b| b == b'\n');
            let take = nl.unwrap_or(bytes.len());
            if self.skipping {
                if nl.is_some() {
                    self.skipping = false;
                }
            } else if self.line.len() + take > MAX_LINE {
                items.push(Item::Bad(format!("line longer than {MAX_LINE} bytes")));
                self.line.clear();
                self.skipping = nl.is_none();
            } else {
                self.line.extend_from_slice(&bytes[..take]);
                if nl.is_some() {
                    if let Some(item) = parse_line(&self.line) {
                        items.push(item);
                    }
                    self.line.clear();
                }
            }
            bytes = &bytes[(take + 1).min(bytes.len())..];
        }
    }
}

#[derive(Debug, Deserialize)]
struct RawEvent {
    #[serde(rename = "Type", default)]
    kind: Option<String>,
    #[serde(rename = "Action", default)]
    action: Option<String>,
    /// Before API 1.22 the action was only here.
    #[serde(default)]
    status: Option<String>,
    #[serde(default)]
    id: Option<String>,
    #[serde(rename = "Actor", default)]
    actor: Option<Actor>,
}

#[derive(Debug, Deserialize)]
struct Actor {
    #[serde(rename = "ID", default)]
    id: Option<String>,
    #[serde(rename = "Attributes", default)]
    attributes: Option<BTreeMap<String, serde_json::Value>>,
}

/// One line of the stream: an event that matters, a line that is no event (`Bad`), or
/// `None` for a blank line or an event of no interest (another type or action).
pub fn parse_line(line: &[u8]) -> Option<Item> {
    let text = line.trim_ascii();
    if text.is_empty() {
        return None;
    }
    let raw: RawEvent = match serde_json::from_slice(text) {
        Ok(r) => r,
        Err(e) => return Some(Item::Bad(format!("not an event: {e}"))),
    };
    if raw.kind.as_deref().is_some_and(|k| k != "container") {
        return None;
    }
    let action = raw.action.or(raw.status).unwrap_or_default();
    let change = match action.as_str() {
        "start" => Change::Started,
        "die" | "stop" => Change::Stopped,
        _ => return None,
    };
    let attributes = raw
        .actor
        .as_ref()
        .and_then(|a| a.attributes.as_ref())
        .cloned()
        .unwrap_or_default();
    let attr = |k: &str| {
        attributes
            .get(k)
            .and_then(serde_json::Value::as_str)
            .unwrap_or_default()
            .to_owned()
    };
    let id = raw
        .actor
        .and_then(|a| a.id)
        .filter(|id| !id.is_empty())
        .or(raw.id)
        .unwrap_or_default();
    if id.is_empty()
        || id.len() > 128
        || !id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
    {
        return Some(Item::Bad(format!("{action} event with a bad container id")));
    }
    let mut name = attr("name");
    // Docker's names are short; a runtime sending more is cut, on a character boundary.
    if name.len() > 253 {
        let end = (0..=253)
            .rev()
            .find(|&i| name.is_char_boundary(i))
            .unwrap_or(0);
        name.truncate(end);
    }
    Some(Item::Event(ContainerEvent {
        sandbox: attr(label::DOCKER_TYPE) == "podsandbox",
        id,
        name,
        image: attr("image"),
        action,
        change,
    }))
}

/// What [`follow`] tells the discovery loop.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Notice {
    /// Following the events of this socket.
    Connected(PathBuf),
    /// A container started or stopped.
    Event(ContainerEvent),
    /// The stream of this socket broke after [`Notice::Connected`]; why.
    Lost(PathBuf, String),
}

/// Follows the runtime's events until `tx` closes: the socket is `configured`, else the
/// first of [`runtime::DEFAULT_SOCKETS`] that exists (looked for again at every attempt).
/// Sends [`Notice::Connected`] when a stream starts, each event, and [`Notice::Lost`] when
/// a started stream breaks; attempts that fail before a stream starts are only logged.
pub async fn follow(configured: Option<PathBuf>, tx: mpsc::Sender<Notice>) {
    let mut backoff = BACKOFF_MIN;
    let mut last_failure = String::new();
    loop {
        if tx.is_closed() {
            return;
        }
        let Some(socket) = runtime::find_socket(configured.as_deref()) else {
            tokio::time::sleep(BACKOFF_MAX).await;
            continue;
        };
        let started = Instant::now();
        let (connected, why) = session(&socket, &tx).await;
        if connected {
            if tx
                .send(Notice::Lost(socket.clone(), why.clone()))
                .await
                .is_err()
            {
                return;
            }
            if started.elapsed() >= STABLE {
                backoff = BACKOFF_MIN;
            }
            last_failure.clear();
        } else if why != last_failure {
            // Logged when the reason changes, not at every attempt.
            tracing::info!(socket = %socket.display(), reason = %why, "runtime events unavailable; retrying");
            last_failure = why;
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(BACKOFF_MAX);
    }
}

/// One connection: whether the stream started, and why it ended.
async fn session(socket: &std::path::Path, tx: &mpsc::Sender<Notice>) -> (bool, String) {
    let mut stream = match tokio::time::timeout(TIMEOUT, http::request(socket, REQUEST)).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => return (false, e),
        Err(_) => return (false, format!("no connection within {TIMEOUT:?}")),
    };
    let mut decoder = Decoder::new();
    let mut connected = false;
    let mut buf = vec![0u8; 16 << 10];
    loop {
        // The head must come at once (Docker and podman flush it); events come when they do.
        let read = if connected {
            stream.read(&mut buf).await
        } else {
            match tokio::time::timeout(TIMEOUT, stream.read(&mut buf)).await {
                Ok(r) => r,
                Err(_) => return (false, format!("no answer within {TIMEOUT:?}")),
            }
        };
        let n = match read {
            Ok(0) => return (connected, decoder.closed().to_string()),
            Ok(n) => n,
            Err(e) => return (connected, format!("read: {e}")),
        };
        let items = match decoder.feed(&buf[..n]) {
            Ok(items) => items,
            Err(e) => return (connected, e.to_string()),
        };
        for item in items {
            let notice = match item {
                Item::Connected => {
                    connected = true;
                    Notice::Connected(socket.to_path_buf())
                }
                Item::Event(e) => Notice::Event(e),
                Item::Bad(why) => {
                    tracing::debug!(socket = %socket.display(), %why, "runtime event skipped");
                    continue;
                }
            };
            if tx.send(notice).await.is_err() {
                return (connected, "discovery stopped".into());
            }
        }
        if let Some(e) = decoder.ended() {
            return (connected, e.to_string());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "8e985a8addbb35c7059593595531092657a13bb5b88480ad7b9948a39904f4e5";

    /// Podman 4.3's answer, as captured from `podman system service` (one event per chunk).
    fn podman_answer() -> Vec<u8> {
        let mut raw = b"HTTP/1.1 200 OK\r\nApi-Version: 1.41\r\nContent-Type: application/json\r\n\
            Libpod-Api-Version: 4.3.1\r\nServer: Libpod/4.3.1 (linux)\r\n\
            Transfer-Encoding: chunked\r\n\r\n"
            .to_vec();
        for action in ["create", "init", "start", "die", "cleanup", "remove"] {
            let line = format!(
                r#"{{"status":"{action}","id":"{A}","from":"localhost/palisade-busybox:test","Type":"container","Action":"{action}","Actor":{{"ID":"{A}","Attributes":{{"containerExitCode":"0","image":"localhost/palisade-busybox:test","io.kubernetes.pod.namespace":"kube-system","name":"palk8s-ev","podId":""}}}},"scope":"local","time":1795962250,"timeNano":1795962250279036863}}"#
            );
            raw.extend_from_slice(format!("{:x}\r\n{line}\n\r\n", line.len() + 1).as_bytes());
        }
        raw
    }

    fn event(action: &str, change: Change) -> Item {
        Item::Event(ContainerEvent {
            id: A.into(),
            name: "palk8s-ev".into(),
            image: "localhost/palisade-busybox:test".into(),
            action: action.into(),
            change,
            sandbox: false,
        })
    }

    fn feed_all(d: &mut Decoder, raw: &[u8], cuts: &[usize]) -> (Vec<Item>, Option<StreamError>) {
        let mut items = Vec::new();
        let mut from = 0;
        for &to in cuts.iter().chain([raw.len()].iter()) {
            match d.feed(&raw[from..to]) {
                Ok(i) => items.extend(i),
                Err(e) => return (items, Some(e)),
            }
            from = to;
        }
        (items, None)
    }

    #[test]
    fn podman_stream_split_anywhere() {
        let raw = podman_answer();
        let want = vec![
            Item::Connected,
            event("start", Change::Started),
            event("die", Change::Stopped),
        ];
        let (whole, err) = feed_all(&mut Decoder::new(), &raw, &[]);
        assert_eq!((whole, err), (want.clone(), None));
        // Every single cut, then every pair of cuts 37 bytes apart.
        for cut in 0..=raw.len() {
            let (items, err) = feed_all(&mut Decoder::new(), &raw, &[cut]);
            assert_eq!((&items, err), (&want, None), "cut at {cut}");
        }
        for a in 0..raw.len() {
            let b = (a + 37).min(raw.len());
            let (items, err) = feed_all(&mut Decoder::new(), &raw, &[a, b]);
            assert_eq!((&items, err), (&want, None), "cuts at {a}, {b}");
        }
        // Byte by byte.
        let mut d = Decoder::new();
        let mut items = Vec::new();
        for b in &raw {
            items.extend(d.feed(std::slice::from_ref(b)).unwrap());
        }
        assert_eq!(items, want);
    }

    #[test]
    fn several_lines_per_chunk_and_lines_across_chunks() {
        // Docker may put two events in one chunk, or one event in two.
        let start = format!(
            r#"{{"Type":"container","Action":"start","Actor":{{"ID":"{A}","Attributes":{{"name":"web","image":"nginx","io.kubernetes.docker.type":"podsandbox"}}}}}}"#
        );
        let stop = format!(r#"{{"status":"stop","id":"{A}","from":"nginx"}}"#);
        let body = format!("{start}\n{stop}\n");
        let (one, two) = body.split_at(body.len() / 2);
        let raw = format!(
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n{one}\r\n{:x};ext=1\r\n{two}\r\n",
            one.len(),
            two.len()
        );
        let (items, err) = feed_all(&mut Decoder::new(), raw.as_bytes(), &[]);
        assert_eq!(err, None);
        assert_eq!(
            items,
            vec![
                Item::Connected,
                Item::Event(ContainerEvent {
                    id: A.into(),
                    name: "web".into(),
                    image: "nginx".into(),
                    action: "start".into(),
                    change: Change::Started,
                    sandbox: true,
                }),
                Item::Event(ContainerEvent {
                    id: A.into(),
                    name: String::new(),
                    image: String::new(),
                    action: "stop".into(),
                    change: Change::Stopped,
                    sandbox: false,
                }),
            ]
        );
    }

    #[test]
    fn garbage_lines_are_skipped_not_fatal() {
        let good = format!(r#"{{"Type":"container","Action":"start","id":"{A}"}}"#);
        let long = "x".repeat(MAX_LINE + 10);
        let body = [
            "not json",
            "{\"Type\":\"container\",\"Action\":\"start\"}",
            "{\"Type\":\"container\",\"Action\":\"start\",\"id\":\"../../x\"}",
            "{\"Type\":\"network\",\"Action\":\"connect\",\"id\":\"n\"}",
            "{\"Type\":\"container\",\"Action\":\"exec_start: sh\",\"id\":\"c\"}",
            "[1,2,3]",
            "",
            "\r",
            "\u{0}\u{ff}",
            &long,
            &good,
        ]
        .join("\n")
            + "\n";
        let raw = format!("HTTP/1.0 200 OK\r\n\r\n{body}");
        for step in [1, 7, 4096, raw.len()] {
            let mut d = Decoder::new();
            let mut items = Vec::new();
            for piece in raw.as_bytes().chunks(step) {
                items.extend(d.feed(piece).unwrap());
            }
            let bad = items.iter().filter(|i| matches!(i, Item::Bad(_))).count();
            // not json, no id, bad id, [1,2,3], the binary line, the long line.
            assert_eq!(bad, 6, "step {step}: {items:?}");
            assert_eq!(items.first(), Some(&Item::Connected));
            assert!(
                matches!(items.last(), Some(Item::Event(e)) if e.id == A && e.change == Change::Started),
                "step {step}: {items:?}"
            );
            // HTTP/1.0: the stream ends with the connection.
            assert_eq!(d.closed(), StreamError::Ended);
        }
    }

    #[test]
    fn broken_streams_end() {
        let mut d = Decoder::new();
        assert_eq!(
            d.feed(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n"),
            Err(StreamError::Status(404))
        );
        assert_eq!(d.feed(b"more"), Err(StreamError::Status(404)));
        let mut d = Decoder::new();
        assert!(matches!(
            d.feed(b"garbage\r\n\r\n"),
            Err(StreamError::Head(_))
        ));
        let mut d = Decoder::new();
        assert_eq!(d.feed(b"HTTP/1.1 200 OK\r\n"), Ok(vec![]));
        assert!(matches!(d.closed(), StreamError::Head(_)));
        let mut d = Decoder::new();
        let head = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n";
        assert_eq!(d.feed(head), Ok(vec![Item::Connected]));
        assert_eq!(d.feed(b"zz\r\n"), Err(StreamError::Body("bad chunk size")));
        let mut d = Decoder::new();
        d.feed(head).unwrap();
        d.feed(b"5\r\nab").unwrap();
        assert_eq!(d.closed(), StreamError::Body("closed inside a chunk"));
        // The last chunk ends the stream; the event before it still counts.
        let line = format!(r#"{{"Action":"die","id":"{A}"}}"#);
        let mut d = Decoder::new();
        let items = d
            .feed(
                format!(
                    "{}{:x}\r\n{line}\n\r\n0\r\n\r\n",
                    String::from_utf8_lossy(head),
                    line.len() + 1
                )
                .as_bytes(),
            )
            .unwrap();
        assert_eq!(items.len(), 2);
        assert_eq!(d.ended(), Some(StreamError::Ended));
        assert_eq!(d.feed(b""), Err(StreamError::Ended));
        assert_eq!(d.closed(), StreamError::Ended);
    }

    #[test]
    fn names() {
        let Some(Item::Event(e)) =
            parse_line(format!(r#"{{"Action":"start","id":"{A}"}}"#).as_bytes())
        else {
            panic!("no event");
        };
        assert_eq!(e.display_name(), &A[..12]);
        let long = "é".repeat(200);
        let Some(Item::Event(e)) = parse_line(
            format!(r#"{{"Action":"start","id":"x","Actor":{{"Attributes":{{"name":"{long}","image":7}}}}}}"#).as_bytes(),
        ) else {
            panic!("no event");
        };
        assert!(e.name.len() <= 253 && e.name.chars().all(|c| c == 'é'));
        assert_eq!(e.image, "");
        assert_eq!(e.display_name(), e.name);
    }

    /// A fake runtime: answers each connection with `answers[i]` (the last one repeatedly),
    /// then holds it open (`hold`) or closes it.
    async fn fake_runtime(listener: tokio::net::UnixListener, answers: Vec<(Vec<u8>, bool)>) {
        use tokio::io::AsyncWriteExt;
        let mut i = 0;
        loop {
            let Ok((mut s, _)) = listener.accept().await else {
                return;
            };
            let (answer, hold) = answers[i.min(answers.len() - 1)].clone();
            i += 1;
            tokio::spawn(async move {
                let mut req = [0u8; 1024];
                let _ = s.read(&mut req).await;
                let _ = s.write_all(&answer).await;
                if hold {
                    tokio::time::sleep(Duration::from_secs(600)).await;
                }
            });
        }
    }

    #[tokio::test]
    async fn follows_and_reconnects() {
        let dir = tempfile::tempdir().unwrap();
        let sock = dir.path().join("docker.sock");
        let listener = tokio::net::UnixListener::bind(&sock).unwrap();
        // First a refusal, then a stream that breaks after one event, then one that stays.
        let head = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
        let line = format!(r#"{{"Type":"container","Action":"start","id":"{A}"}}"#);
        let mut one = head.clone();
        one.extend_from_slice(format!("{:x}\r\n{line}\n\r\n", line.len() + 1).as_bytes());
        tokio::spawn(fake_runtime(
            listener,
            vec![
                (
                    b"HTTP/1.1 500 Oops\r\nContent-Length: 0\r\n\r\n".to_vec(),
                    false,
                ),
                (one.clone(), false),
                (one, true),
            ],
        ));
        let (tx, mut rx) = mpsc::channel(16);
        let task = tokio::spawn(follow(Some(sock.clone()), tx));
        let mut got = Vec::new();
        while got.len() < 5 {
            let n = tokio::time::timeout(Duration::from_secs(20), rx.recv())
                .await
                .unwrap()
                .unwrap();
            got.push(n);
        }
        let started =
            |n: &Notice| matches!(n, Notice::Event(e) if e.id == A && e.change == Change::Started);
        assert_eq!(got[0], Notice::Connected(sock.clone()));
        assert!(started(&got[1]), "{got:?}");
        assert_eq!(
            got[2],
            Notice::Lost(sock.clone(), "bad body: closed inside a chunk".into())
        );
        assert_eq!(got[3], Notice::Connected(sock.clone()));
        assert!(started(&got[4]), "{got:?}");
        // Closing the receiver ends the follower.
        drop(rx);
        task.abort();
    }
}
