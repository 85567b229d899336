//! The guest ↔ host message format: versioned, length-prefixed, size-capped frames carrying a
//! JSON body, so either side can reject what it does not understand without guessing.
//!
//! ```text
//! +------+------+---------+------+----------------+---------------------+
//! | 'T'  | 'C'  | version | kind | length (u32 BE) | JSON body (length) |
//! +------+------+---------+------+----------------+---------------------+
//! ```
//!
//! `version` is [`VERSION`]; `kind` 1 = [`Report`] (guest → host), 2 = [`Target`]
//! (host → guest). Bodies over [`MAX_BODY`] bytes are refused before they are read.

use serde::{Deserialize, Serialize};

/// Format version this build speaks.
pub const VERSION: u8 = 1;
/// Largest body accepted, bytes.
pub const MAX_BODY: usize = 16 * 1024;
const HEADER: usize = 8;

/// What the guest daemon reports each period (and once at start, with `seq` 0 and no
/// measurements, so the host can send its target at once).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Report {
    /// Report sequence number.
    pub seq: u64,
    /// Detection backend used (`damon`, `mglru`, `memcg`).
    pub backend: String,
    /// Cold file-backed bytes found.
    pub cold_bytes: u64,
    /// Age threshold behind `cold_bytes`, ms (0 when the backend has no ages).
    pub age_ms: u64,
    /// Bytes reclaimed this period.
    pub reclaimed_bytes: u64,
    /// File refaults this period.
    pub refaults: u64,
    /// Memory PSI `some avg10`, if available.
    pub psi_some_avg10: Option<f64>,
    /// The most bytes per period the daemon holds itself to now (the host's target, once
    /// taken).
    pub max_bytes_per_period: u64,
    /// The age threshold in force now, ms.
    pub min_age_ms: u64,
}

/// What the host asks of the guest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Target {
    /// Most bytes to reclaim per period.
    pub max_bytes_per_period: u64,
    /// Pages idle at least this long count as cold, ms.
    pub min_age_ms: u64,
    /// Bytes the host asks to have reclaimed next period (raises the budget once, up to
    /// `max_bytes_per_period`; the guard still backs off if that hurts). 0: no request.
    #[serde(default)]
    pub reclaim_bytes: u64,
}

/// A decoded frame.
#[derive(Debug, Clone, PartialEq)]
pub enum Message {
    /// Guest → host.
    Report(Report),
    /// Host → guest.
    Target(Target),
}

/// A frame that cannot be accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// Not a Tide frame.
    #[error("bad magic {0:02x?}: not a tide-coldmem frame")]
    BadMagic([u8; 2]),
    /// A version this build does not speak.
    #[error("frame version {0} is not supported (this build speaks {VERSION})")]
    Version(u8),
    /// An unknown message kind.
    #[error("unknown message kind {0}")]
    Kind(u8),
    /// Body larger than [`MAX_BODY`].
    #[error("frame body of {0} bytes exceeds the {MAX_BODY}-byte limit")]
    TooLarge(usize),
    /// The body is not the message it claims to be.
    #[error("frame body: {0}")]
    Body(String),
}

/// Encodes one message as a frame.
pub fn encode(msg: &Message) -> Result<Vec<u8>, FrameError> {
    let (kind, body) = match msg {
        Message::Report(r) => (1u8, serde_json::to_vec(r)),
        Message::Target(t) => (2u8, serde_json::to_vec(t)),
    };
    let body = body.map_err(|e| FrameError::Body(e.to_string()))?;
    if body.len() > MAX_BODY {
        return Err(FrameError::TooLarge(body.len()));
    }
    let len = u32::try_from(body.len()).map_err(|_| FrameError::TooLarge(body.len()))?;
    let mut out = Vec::with_capacity(HEADER + body.len());
    out.extend_from_slice(b"TC");
    out.push(VERSION);
    out.push(kind);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(&body);
    Ok(out)
}

/// Decodes frames from a byte stream that arrives in pieces.
#[derive(Debug, Default)]
pub struct Decoder {
    buf: Vec<u8>,
}

impl Decoder {
    /// Adds received bytes.
    pub fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// The next complete message, `Ok(None)` while more bytes are needed. After an error the
    /// stream is out of step and should be dropped.
    pub fn next_message(&mut self) -> Result<Option<Message>, FrameError> {
        if self.buf.len() < HEADER {
            return Ok(None);
        }
        let magic = [self.buf[0], self.buf[1]];
        if &magic != b"TC" {
            return Err(FrameError::BadMagic(magic));
        }
        if self.buf[2] != VERSION {
            return Err(FrameError::Version(self.buf[2]));
        }
        let kind = self.buf[3];
        let len = u32::from_be_bytes([self.buf[4], self.buf[5], self.buf[6], self.buf[7]]);
        let len = usize::try_from(len).unwrap_or(usize::MAX);
        if len > MAX_BODY {
            return Err(FrameError::TooLarge(len));
        }
        if self.buf.len() < HEADER + len {
            return Ok(None);
        }
        let body: Vec<u8> = self.buf.drain(..HEADER + len).skip(HEADER).collect();
        let msg = match kind {
            1 => serde_json::from_slice(&body).map(Message::Report),
            2 => serde_json::from_slice(&body).map(Message::Target),
            k => return Err(FrameError::Kind(k)),
        };
        msg.map(Some).map_err(|e| FrameError::Body(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn report() -> Message {
        Message::Report(Report {
            seq: 7,
            backend: "damon".into(),
            cold_bytes: 1 << 30,
            age_ms: 30_000,
            reclaimed_bytes: 512 << 20,
            refaults: 3,
            psi_some_avg10: Some(0.12),
            max_bytes_per_period: 1 << 30,
            min_age_ms: 30_000,
        })
    }

    #[test]
    fn round_trip_in_pieces() {
        let target = Message::Target(Target {
            max_bytes_per_period: 64 << 20,
            min_age_ms: 10_000,
            reclaim_bytes: 0,
        });
        let mut bytes = encode(&report()).unwrap();
        bytes.extend(encode(&target).unwrap());
        let mut d = Decoder::default();
        let mut got = Vec::new();
        for chunk in bytes.chunks(5) {
            d.push(chunk);
            while let Some(m) = d.next_message().unwrap() {
                got.push(m);
            }
        }
        assert_eq!(got, vec![report(), target]);
    }

    #[test]
    fn refuses_what_it_does_not_understand() {
        let mut d = Decoder::default();
        d.push(b"XX\x01\x01\0\0\0\0");
        assert!(matches!(d.next_message(), Err(FrameError::BadMagic(_))));
        let mut d = Decoder::default();
        d.push(b"TC\x02\x01\0\0\0\0");
        assert_eq!(d.next_message(), Err(FrameError::Version(2)));
        let mut d = Decoder::default();
        d.push(b"TC\x01\x01\xff\xff\xff\xff");
        assert!(matches!(d.next_message(), Err(FrameError::TooLarge(_))));
        let mut d = Decoder::default();
        d.push(b"TC\x01\x09\0\0\0\x02{}");
        assert_eq!(d.next_message(), Err(FrameError::Kind(9)));
        let mut d = Decoder::default();
        d.push(b"TC\x01\x02\0\0\0\x0b{\"bogus\":1}");
        assert!(matches!(d.next_message(), Err(FrameError::Body(_))));
    }

    proptest! {
        #[test]
        fn never_panics_on_garbage(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let mut d = Decoder::default();
            d.push(&bytes);
            let _ = d.next_message();
        }
    }
}
