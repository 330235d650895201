//! The HTTP/1.x client side that the runtime API needs: the head of an answer (`httparse`) and
//! an incremental decoder of its body, fed bytes as they arrive, so one decoder serves both a
//! whole answer ([`super::runtime::inspect`]) and a never-ending stream ([`super::events`]).
//!
//! Bodies are framed by `Transfer-Encoding: chunked` (RFC 9112 §7.1: hex size, optional
//! extensions after `;`, CRLF, data, CRLF; a zero size, optional trailer lines and an empty
//! line end it), else by `Content-Length`, else by the end of the connection (§6.3). Chunk
//! size lines and trailers are bounded; the data is handed out as it comes, never buffered
//! here, so memory stays bounded whatever the peer sends.

use std::path::Path;

use tokio::io::AsyncWriteExt;
use tokio::net::UnixStream;

/// Largest answer head accepted.
pub const MAX_HEAD: usize = 64 << 10;

/// Longest chunk-size or trailer line accepted (size, extensions, CRLF).
const MAX_CHUNK_LINE: usize = 1024;

/// Most trailer bytes accepted after the last chunk.
const MAX_TRAILERS: usize = 8 << 10;

/// How the body of an answer ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// `Transfer-Encoding: chunked`.
    Chunked,
    /// `Content-Length` bytes.
    Length(usize),
    /// When the connection closes.
    UntilClose,
}

/// An answer's head.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Head {
    /// The status code.
    pub status: u16,
    /// How its body ends.
    pub framing: Framing,
    /// Bytes of the head, blank line included: the body starts there.
    pub len: usize,
}

/// The head at the start of `raw`; `None` while it is incomplete (and not longer than
/// [`MAX_HEAD`]).
pub fn parse_head(raw: &[u8]) -> Result<Option<Head>, String> {
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut res = httparse::Response::new(&mut headers);
    let len = match res.parse(raw) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) if raw.len() > MAX_HEAD => {
            return Err(format!("answer head longer than {MAX_HEAD} bytes"));
        }
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(e) => return Err(format!("bad answer: {e}")),
    };
    let status = res.code.unwrap_or(0);
    let chunked = res.headers.iter().any(|h| {
        h.name.eq_ignore_ascii_case("transfer-encoding")
            && String::from_utf8_lossy(h.value)
                .to_ascii_lowercase()
                .contains("chunked")
    });
    let length = res
        .headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case("content-length"))
        .and_then(|h| {
            std::str::from_utf8(h.value)
                .ok()?
                .trim()
                .parse::<usize>()
                .ok()
        });
    // Chunked wins over a length (RFC 9112 §6.3, 3).
    let framing = match (chunked, length) {
        (true, _) => Framing::Chunked,
        (false, Some(n)) => Framing::Length(n),
        (false, None) => Framing::UntilClose,
    };
    Ok(Some(Head {
        status,
        framing,
        len,
    }))
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum State {
    /// Reading a chunk-size line.
    Size(Vec<u8>),
    /// Inside a chunk, this many bytes to go.
    Data(usize),
    /// After a chunk's data: its CRLF (`true` once the CR was seen).
    DataEnd(bool),
    /// After the last chunk: a trailer line so far, and the trailer bytes seen.
    Trailer(Vec<u8>, usize),
    /// `Content-Length` body, this many bytes to go.
    Length(usize),
    /// Body until the connection closes.
    UntilClose,
    /// The body is complete.
    Done,
}

/// Incremental body decoder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Body {
    state: State,
}

impl Body {
    /// A decoder for a body framed as `framing`.
    pub fn new(framing: Framing) -> Self {
        let state = match framing {
            Framing::Chunked => State::Size(Vec::new()),
            Framing::Length(0) => State::Done,
            Framing::Length(n) => State::Length(n),
            Framing::UntilClose => State::UntilClose,
        };
        Self { state }
    }

    /// Whether the body is complete (bytes fed after that are ignored).
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Whether the end of the connection ends the body properly here.
    pub fn may_close(&self) -> bool {
        matches!(self.state, State::Done | State::UntilClose)
    }

    /// Appends the body bytes in `input` to `out`. Errors are framing errors; the decoder
    /// must not be fed after one.
    pub fn feed(&mut self, mut input: &[u8], out: &mut Vec<u8>) -> Result<(), &'static str> {
        while !input.is_empty() {
            match &mut self.state {
                State::Done => return Ok(()),
                State::UntilClose => {
                    out.extend_from_slice(input);
                    return Ok(());
                }
                State::Length(left) => {
                    let n = (*left).min(input.len());
                    out.extend_from_slice(&input[..n]);
                    input = &input[n..];
                    *left -= n;
                    if *left == 0 {
                        self.state = State::Done;
                    }
                }
                State::Data(left) => {
                    let n = (*left).min(input.len());
                    out.extend_from_slice(&input[..n]);
                    input = &input[n..];
                    *left -= n;
                    if *left == 0 {
                        self.state = State::DataEnd(false);
                    }
                }
                State::DataEnd(cr) => {
                    let b = input[0];
                    input = &input[1..];
                    match (b, *cr) {
                        (b'\r', false) => *cr = true,
                        (b'\n', true) => self.state = State::Size(Vec::new()),
                        _ => return Err("chunk data not followed by CRLF"),
                    }
                }
                State::Size(line) => {
                    let Some(nl) = input.iter().position(|&b| b == b'\n') else {
                        if line.len() + input.len() > MAX_CHUNK_LINE {
                            return Err("chunk size line too long");
                        }
                        line.extend_from_slice(input);
                        return Ok(());
                    };
                    if line.len() + nl > MAX_CHUNK_LINE {
                        return Err("chunk size line too long");
                    }
                    line.extend_from_slice(&input[..nl]);
                    input = &input[nl + 1..];
                    let size = chunk_size(line)?;
                    self.state = if size == 0 {
                        State::Trailer(Vec::new(), 0)
                    } else {
                        State::Data(size)
                    };
                }
                State::Trailer(line, seen) => {
                    let nl = input.iter().position(|&b| b == b'\n');
                    let take = nl.map_or(input.len(), |n| n + 1);
                    *seen += take;
                    if *seen > MAX_TRAILERS || line.len() + take > MAX_CHUNK_LINE {
                        return Err("trailers too long");
                    }
                    line.extend_from_slice(&input[..take]);
                    input = &input[take..];
                    if nl.is_some() {
                        if line.as_slice() == b"\r\n" || line.as_slice() == b"\n" {
                            self.state = State::Done;
                        } else {
                            line.clear();
                        }
                    }
                }
            }
        }
        Ok(())
    }
}

/// The size of a chunk-size line (without its LF): hex digits, then optional `;extensions`.
fn chunk_size(line: &[u8]) -> Result<usize, &'static str> {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let digits = line.split(|&b| b == b';').next().unwrap_or_default();
    let digits = std::str::from_utf8(digits)
        .map_err(|_| "bad chunk size")?
        .trim_matches([' ', '\t']);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err("bad chunk size");
    }
    usize::from_str_radix(digits, 16).map_err(|_| "chunk size too large")
}

/// Connects to `socket` and sends `request` (a whole request head); the stream then carries
/// the answer. The error says which step failed.
pub async fn request(socket: &Path, request: &str) -> Result<UnixStream, String> {
    let mut stream = UnixStream::connect(socket)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    stream
        .write_all(request.as_bytes())
        .await
        .map_err(|e| format!("send: {e}"))?;
    Ok(stream)
}

/// Status and body of an HTTP/1.x answer read to its end: the body per its framing; a
/// `Content-Length` body shorter than announced is returned as it is (its JSON then fails).
pub fn parse_answer(raw: &[u8]) -> Result<(u16, Vec<u8>), String> {
    let head = parse_head(raw)?.ok_or("answer cut short")?;
    let mut body = Body::new(head.framing);
    let mut out = Vec::new();
    body.feed(&raw[head.len..], &mut out)?;
    if head.framing == Framing::Chunked && !body.is_done() {
        return Err("chunked answer cut short".into());
    }
    Ok((head.status, out))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `input` split at every `step` bytes.
    fn feed_in_steps(body: &mut Body, input: &[u8], step: usize) -> Result<Vec<u8>, &'static str> {
        let mut out = Vec::new();
        for piece in input.chunks(step) {
            body.feed(piece, &mut out)?;
        }
        Ok(out)
    }

    const CHUNKED: &[u8] =
        b"4\r\n{\"Na\r\n9;x=1\r\nme\":\"/a\"}\r\n0\r\nX-Trailer: 1\r\n\r\nignored after the end";

    #[test]
    fn chunked_whole_and_split_everywhere() {
        for step in 1..=CHUNKED.len() {
            let mut body = Body::new(Framing::Chunked);
            let out = feed_in_steps(&mut body, CHUNKED, step).unwrap();
            assert_eq!(out, br#"{"Name":"/a"}"#, "step {step}");
            assert!(body.is_done(), "step {step}");
        }
    }

    #[test]
    fn chunked_framing_errors() {
        for (bad, why) in [
            (&b"x\r\n"[..], "bad chunk size"),
            (b"\r\n", "bad chunk size"),
            (b"-1\r\n", "bad chunk size"),
            (b"fffffffffffffffff\r\n", "chunk size too large"),
            (b"2\r\nabX", "chunk data not followed by CRLF"),
            (b"2\r\nab\rX", "chunk data not followed by CRLF"),
        ] {
            let mut body = Body::new(Framing::Chunked);
            assert_eq!(body.feed(bad, &mut Vec::new()), Err(why), "{bad:?}");
        }
        let mut body = Body::new(Framing::Chunked);
        let long = vec![b'1'; MAX_CHUNK_LINE + 1];
        assert_eq!(
            body.feed(&long, &mut Vec::new()),
            Err("chunk size line too long")
        );
        let mut body = Body::new(Framing::Chunked);
        let mut out = Vec::new();
        body.feed(b"0\r\n", &mut out).unwrap();
        let trailer = vec![b'a'; MAX_CHUNK_LINE + 1];
        assert_eq!(body.feed(&trailer, &mut out), Err("trailers too long"));
    }

    #[test]
    fn length_and_until_close() {
        let mut body = Body::new(Framing::Length(3));
        assert_eq!(feed_in_steps(&mut body, b"abcdef", 2).unwrap(), b"abc");
        assert!(body.is_done() && body.may_close());
        let mut body = Body::new(Framing::UntilClose);
        assert_eq!(feed_in_steps(&mut body, b"abcdef", 4).unwrap(), b"abcdef");
        assert!(!body.is_done() && body.may_close());
        assert!(Body::new(Framing::Length(0)).is_done());
        assert!(!Body::new(Framing::Chunked).may_close());
    }

    #[test]
    fn heads() {
        assert_eq!(parse_head(b"HTTP/1.1 200 OK\r\nContent-"), Ok(None));
        let raw = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n";
        assert_eq!(
            parse_head(raw),
            Ok(Some(Head {
                status: 200,
                framing: Framing::Chunked,
                len: raw.len()
            }))
        );
        assert_eq!(
            parse_head(b"HTTP/1.0 404 Not Found\r\nContent-Length: 2\r\n\r\n{}")
                .unwrap()
                .map(|h| (h.status, h.framing)),
            Some((404, Framing::Length(2)))
        );
        assert!(parse_head(b"SSH-2.0-OpenSSH\r\n\r\n").is_err());
        let mut endless = b"HTTP/1.1 200 OK\r\n".to_vec();
        while endless.len() <= MAX_HEAD {
            endless
                .extend_from_slice(b"X-Pad: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n");
        }
        assert!(parse_head(&endless).is_err());
    }

    #[test]
    fn whole_answers() {
        let mut raw = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
        raw.extend_from_slice(CHUNKED);
        assert_eq!(parse_answer(&raw), Ok((200, br#"{"Name":"/a"}"#.to_vec())));
        assert!(parse_answer(b"HTTP/1.1 200 OK\r\nContent-").is_err());
        assert_eq!(
            parse_answer(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nab"),
            Err("chunked answer cut short".into())
        );
        assert_eq!(
            parse_answer(b"HTTP/1.0 200 OK\r\n\r\n{\"a\":1}"),
            Ok((200, br#"{"a":1}"#.to_vec()))
        );
    }
}
