//! Framing: `u32` little-endian payload length, then a postcard-encoded [`Message`].
//! [`FrameDecoder`] accepts bytes in any split and refuses an oversized length before
//! allocating for it; the limit is tight until the hello is done.

use super::message::Message;
use crate::limits::{MAX_FRAME_BYTES, MAX_HELLO_FRAME_BYTES};

const PREFIX_BYTES: usize = 4;

/// Why a byte stream is not a valid Drizzle stream. Always ends the connection.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("frame of {len} bytes exceeds the limit of {limit}")]
    TooLarge { len: usize, limit: usize },
    #[error("undecodable message: {0}")]
    Malformed(String),
}

/// Encodes one message as a frame.
pub fn encode(msg: &Message) -> Vec<u8> {
    // Encoding an in-memory `Message` cannot fail: postcard only fails on serde features
    // that `Message` does not use.
    let Ok(mut out) = postcard::to_extend(msg, vec![0u8; PREFIX_BYTES]) else {
        return Vec::new();
    };
    let len = (out.len() - PREFIX_BYTES) as u32;
    if let Some(prefix) = out.get_mut(..PREFIX_BYTES) {
        prefix.copy_from_slice(&len.to_le_bytes());
    }
    out
}

/// Reassembles frames from arbitrary splits of a byte stream.
#[derive(Debug)]
pub struct FrameDecoder {
    buf: Vec<u8>,
    /// Start of the undecoded bytes in `buf`; consumed bytes are dropped lazily.
    start: usize,
    limit: usize,
}

impl Default for FrameDecoder {
    fn default() -> Self {
        FrameDecoder::new()
    }
}

impl FrameDecoder {
    /// A decoder for a fresh connection: only a hello-sized frame is accepted until
    /// [`FrameDecoder::hello_done`].
    pub fn new() -> FrameDecoder {
        FrameDecoder {
            buf: Vec::new(),
            start: 0,
            limit: MAX_HELLO_FRAME_BYTES,
        }
    }

    /// Raises the frame limit to the full size once the peer said a valid hello.
    pub fn hello_done(&mut self) {
        self.limit = MAX_FRAME_BYTES;
    }

    /// Bytes received but not yet decoded.
    pub fn buffered(&self) -> usize {
        self.buf.len() - self.start
    }

    pub fn push(&mut self, bytes: &[u8]) {
        if self.start > 0 && self.start >= self.buf.len() / 2 {
            self.buf.drain(..self.start);
            self.start = 0;
        }
        self.buf.extend_from_slice(bytes);
    }

    /// The next complete message, `Ok(None)` if more bytes are needed.
    pub fn next_message(&mut self) -> Result<Option<Message>, FrameError> {
        let pending = self.buf.get(self.start..).unwrap_or_default();
        let Some(prefix) = pending.get(..PREFIX_BYTES) else {
            return Ok(None);
        };
        let mut len_bytes = [0u8; PREFIX_BYTES];
        len_bytes.copy_from_slice(prefix);
        let len = u32::from_le_bytes(len_bytes) as usize;
        if len > self.limit {
            return Err(FrameError::TooLarge {
                len,
                limit: self.limit,
            });
        }
        let Some(payload) = pending.get(PREFIX_BYTES..PREFIX_BYTES + len) else {
            return Ok(None);
        };
        let msg = match postcard::take_from_bytes(payload) {
            Ok((msg, [])) => msg,
            Ok((_, rest)) => {
                let why = format!("{} stray bytes after the message", rest.len());
                return Err(FrameError::Malformed(why));
            }
            Err(e) => return Err(FrameError::Malformed(e.to_string())),
        };
        self.start += PREFIX_BYTES + len;
        if self.start == self.buf.len() {
            self.buf.clear();
            self.start = 0;
        }
        Ok(Some(msg))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::Root;
    use crate::wire::message::{Hello, Role};

    #[test]
    fn round_trip_in_every_split() {
        let msgs = vec![
            Message::Hello(Hello::new(Role::Peer)),
            Message::ChunkData {
                root: Root([3; 32]),
                chunk: 7,
                data: vec![9; 100],
            },
        ];
        let stream: Vec<u8> = msgs.iter().flat_map(encode).collect();
        for split in 0..stream.len() {
            let mut d = FrameDecoder::new();
            let mut got = Vec::new();
            for part in [&stream[..split], &stream[split..]] {
                d.push(part);
                while let Some(m) = d.next_message().unwrap() {
                    if matches!(m, Message::Hello(_)) {
                        d.hello_done();
                    }
                    got.push(m);
                }
            }
            assert_eq!(got, msgs);
        }
    }

    #[test]
    fn oversized_length_is_refused_before_the_payload_arrives() {
        let mut d = FrameDecoder::new();
        d.push(&u32::MAX.to_le_bytes());
        assert!(matches!(d.next_message(), Err(FrameError::TooLarge { .. })));
        let mut d = FrameDecoder::new();
        d.hello_done();
        d.push(&(MAX_FRAME_BYTES as u32 + 1).to_le_bytes());
        assert!(matches!(d.next_message(), Err(FrameError::TooLarge { .. })));
    }

    #[test]
    fn garbage_is_malformed() {
        let mut d = FrameDecoder::new();
        d.push(&[3, 0, 0, 0, 0xff, 0xff, 0xff]);
        assert!(matches!(d.next_message(), Err(FrameError::Malformed(_))));
    }
}
