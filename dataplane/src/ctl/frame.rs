//! Length-prefixed frames: a 4-byte big-endian payload length, then the payload.
//!
//! Decoding contract: [`Decoder`] is sans-IO (bytes in, whole payloads out), never panics and
//! never allocates for a length it has not checked: a length prefix above the limit is an
//! error as soon as its 4 bytes are in, before any of the body is buffered, and the decoder
//! then refuses further input (a stream whose framing is lost cannot be resynchronised; the
//! connection must close). Bytes left over at end of stream are [`FrameError::Truncated`].

/// Bytes of the length prefix.
pub const HEADER_LEN: usize = 4;

/// Default largest payload, bytes (64 MiB: a whole policy with many thousand workloads fits).
pub const DEFAULT_MAX_FRAME: u32 = 64 << 20;

/// A frame that cannot be decoded or encoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// The length prefix (or a payload to send) exceeds the limit.
    #[error("frame of {len} bytes exceeds the limit of {max} bytes")]
    TooLarge {
        /// Declared (or actual) payload length.
        len: u64,
        /// The limit.
        max: u32,
    },
    /// The stream ended inside a frame.
    #[error("stream ended inside a frame ({have} of {need} bytes)")]
    Truncated {
        /// Bytes of the frame (header included) that arrived.
        have: usize,
        /// Bytes the frame needs (header included; 4 while the header itself is incomplete).
        need: usize,
    },
}

/// Prefixes `payload` with its length.
pub fn encode(payload: &[u8], max_frame: u32) -> Result<Vec<u8>, FrameError> {
    let len = u32::try_from(payload.len())
        .ok()
        .filter(|l| *l <= max_frame)
        .ok_or(FrameError::TooLarge {
            len: payload.len() as u64,
            max: max_frame,
        })?;
    let mut out = Vec::with_capacity(HEADER_LEN + payload.len());
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(payload);
    Ok(out)
}

/// Splits a byte stream into payloads.
#[derive(Debug)]
pub struct Decoder {
    buf: Vec<u8>,
    /// Start of the first undecoded byte in `buf`.
    start: usize,
    max: u32,
    failed: Option<FrameError>,
}

impl Decoder {
    /// A decoder that accepts payloads of up to `max_frame` bytes.
    pub fn new(max_frame: u32) -> Self {
        Self {
            buf: Vec::new(),
            start: 0,
            max: max_frame,
            failed: None,
        }
    }

    /// The payload limit.
    pub fn max_frame(&self) -> u32 {
        self.max
    }

    /// Appends bytes read from the stream. Ignored once the decoder has failed.
    pub fn push(&mut self, bytes: &[u8]) {
        if self.failed.is_some() || bytes.is_empty() {
            return;
        }
        if self.start > 0 && self.start >= self.buf.len() / 2 {
            self.buf.drain(..self.start);
            self.start = 0;
        }
        // Take only the header first when it is incomplete, so an oversized prefix is
        // caught before any body byte is buffered.
        let pending = self.buf.len() - self.start;
        if pending < HEADER_LEN {
            let take = (HEADER_LEN - pending).min(bytes.len());
            let (head, rest) = bytes.split_at(take);
            self.buf.extend_from_slice(head);
            if self.check_header().is_err() {
                return;
            }
            self.buf.extend_from_slice(rest);
        } else {
            self.buf.extend_from_slice(bytes);
        }
    }

    /// Declared length of the next frame, once its header is in; errors when it is too large.
    fn check_header(&mut self) -> Result<Option<usize>, FrameError> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        let Some(h) = self.buf.get(self.start..self.start + HEADER_LEN) else {
            return Ok(None);
        };
        let len = u32::from_be_bytes([h[0], h[1], h[2], h[3]]);
        if len > self.max {
            let e = FrameError::TooLarge {
                len: u64::from(len),
                max: self.max,
            };
            self.failed = Some(e.clone());
            self.buf = Vec::new();
            self.start = 0;
            return Err(e);
        }
        Ok(Some(len as usize))
    }

    /// The next whole payload, `None` until one has arrived in full.
    pub fn next_frame(&mut self) -> Result<Option<Vec<u8>>, FrameError> {
        let Some(len) = self.check_header()? else {
            return Ok(None);
        };
        let body = self.start + HEADER_LEN;
        let Some(payload) = self.buf.get(body..body + len) else {
            return Ok(None);
        };
        let payload = payload.to_vec();
        self.start = body + len;
        if self.start == self.buf.len() {
            self.buf.clear();
            self.start = 0;
        }
        Ok(Some(payload))
    }

    /// Bytes buffered that do not yet form a whole frame.
    pub fn buffered(&self) -> usize {
        self.buf.len() - self.start
    }

    /// Bytes reserved by the buffer (for tests that check nothing was allocated up front).
    pub fn capacity(&self) -> usize {
        self.buf.capacity()
    }

    /// The error that stopped the decoder, if any.
    pub fn error(&self) -> Option<&FrameError> {
        self.failed.as_ref()
    }

    /// Call at end of stream: an error if a frame was cut short.
    pub fn finish(&self) -> Result<(), FrameError> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        let have = self.buffered();
        if have == 0 {
            return Ok(());
        }
        let need = match self.buf.get(self.start..self.start + HEADER_LEN) {
            Some(h) => HEADER_LEN + u32::from_be_bytes([h[0], h[1], h[2], h[3]]) as usize,
            None => HEADER_LEN,
        };
        Err(FrameError::Truncated { have, need })
    }
}
