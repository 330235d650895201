//! Tests only: a minimal HTTP/1.1 server on `127.0.0.1:0` that answers each connection with
//! the next canned response (then closes it) and records every request, so tests can assert
//! method, path, headers and body. Shared by the unit tests and `tests/cli_http.rs`
//! (included there with `#[path]`), so there is one copy.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

/// A canned response.
#[derive(Debug, Clone)]
pub struct Canned {
    status: u16,
    content_type: String,
    body: String,
    etag: Option<String>,
}

impl Canned {
    /// JSON body.
    pub fn json(status: u16, body: &str) -> Self {
        Self::text(status, "application/json", body)
    }

    /// Any body.
    pub fn text(status: u16, content_type: &str, body: &str) -> Self {
        Self {
            status,
            content_type: content_type.to_owned(),
            body: body.to_owned(),
            etag: None,
        }
    }

    /// With an `ETag`.
    pub fn etag(mut self, tag: &str) -> Self {
        self.etag = Some(tag.to_owned());
        self
    }
}

/// A request as received.
#[derive(Debug, Clone)]
pub struct Recorded {
    /// Method.
    pub method: String,
    /// Path and query.
    pub path: String,
    /// Headers, names lower-cased.
    pub headers: Vec<(String, String)>,
    /// Body (chunked bodies decoded).
    pub body: String,
}

impl Recorded {
    /// A header's value.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// The server; it stops after the last canned response.
#[derive(Debug)]
pub struct FakeServer {
    addr: SocketAddr,
    requests: Arc<Mutex<Vec<Recorded>>>,
    thread: Option<JoinHandle<()>>,
}

impl FakeServer {
    /// Starts serving `responses`, one per connection, in order.
    pub fn start(responses: Vec<Canned>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let rec = Arc::clone(&requests);
        let thread = std::thread::spawn(move || {
            for canned in responses {
                let Ok((stream, _)) = listener.accept() else {
                    return;
                };
                let mut reader = BufReader::new(stream);
                let Some(req) = read_request(&mut reader) else {
                    continue;
                };
                rec.lock().unwrap().push(req);
                let mut stream = reader.into_inner();
                let mut head = format!(
                    "HTTP/1.1 {} X\r\ncontent-type: {}\r\ncontent-length: {}\r\nconnection: close\r\n",
                    canned.status,
                    canned.content_type,
                    canned.body.len()
                );
                if let Some(t) = &canned.etag {
                    head.push_str(&format!("etag: {t}\r\n"));
                }
                head.push_str("\r\n");
                let _ = stream.write_all(head.as_bytes());
                let _ = stream.write_all(canned.body.as_bytes());
                let _ = stream.flush();
            }
        });
        Self {
            addr,
            requests,
            thread: Some(thread),
        }
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Requests received so far.
    pub fn requests(&self) -> Vec<Recorded> {
        self.requests.lock().unwrap().clone()
    }

    /// Waits until every canned response was sent, then returns the requests.
    pub fn finish(mut self) -> Vec<Recorded> {
        if let Some(t) = self.thread.take() {
            t.join().unwrap();
        }
        self.requests()
    }
}

fn read_request(r: &mut impl BufRead) -> Option<Recorded> {
    let mut line = String::new();
    r.read_line(&mut line).ok()?;
    let mut parts = line.split_whitespace();
    let method = parts.next()?.to_owned();
    let path = parts.next()?.to_owned();
    let mut headers = Vec::new();
    loop {
        let mut h = String::new();
        r.read_line(&mut h).ok()?;
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        let (k, v) = h.split_once(':')?;
        headers.push((k.trim().to_ascii_lowercase(), v.trim().to_owned()));
    }
    let get = |n: &str| headers.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone());
    let mut body = Vec::new();
    if let Some(n) = get("content-length").and_then(|v| v.parse::<usize>().ok()) {
        body.resize(n, 0);
        r.read_exact(&mut body).ok()?;
    } else if get("transfer-encoding").is_some_and(|v| v.contains("chunked")) {
        loop {
            let mut size = String::new();
            r.read_line(&mut size).ok()?;
            let n = usize::from_str_radix(size.trim(), 16).ok()?;
            let mut chunk = vec![0; n + 2];
            r.read_exact(&mut chunk).ok()?;
            if n == 0 {
                break;
            }
            body.extend_from_slice(&chunk[..n]);
        }
    }
    Some(Recorded {
        method,
        path,
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    })
}
