//! One connection's framing state, shared by both machines: incremental decoding and the
//! hello check. A `Link` turns raw bytes into messages or into a reason to close.

use crate::limits::{FRAME_TIMEOUT_MS, HELLO_TIMEOUT_MS};
use crate::time::Timestamp;
use crate::wire::{FrameDecoder, Hello, Message, Role, MAGIC, PROTOCOL_VERSION};
use std::net::SocketAddr;

#[derive(Debug)]
pub(crate) struct Link {
    pub remote: SocketAddr,
    decoder: FrameDecoder,
    expect: Role,
    hello_done: bool,
    opened: Timestamp,
    last_rx: Timestamp,
}

impl Link {
    /// A link to `remote`, which must introduce itself as `expect`.
    pub fn new(remote: SocketAddr, expect: Role, now: Timestamp) -> Link {
        Link {
            remote,
            decoder: FrameDecoder::new(),
            expect,
            hello_done: false,
            opened: now,
            last_rx: now,
        }
    }

    pub fn push(&mut self, now: Timestamp, data: &[u8]) {
        self.last_rx = now;
        self.decoder.push(data);
    }

    /// When this link must be closed if nothing changes, and why: no hello in time, a frame
    /// stalled halfway (slow-loris), or idle for longer than `idle_ms` (when given).
    pub fn deadline(&self, idle_ms: Option<u64>) -> Option<(Timestamp, &'static str)> {
        if !self.hello_done {
            Some((self.opened.plus_ms(HELLO_TIMEOUT_MS), "no hello in time"))
        } else if self.decoder.buffered() > 0 {
            Some((
                self.last_rx.plus_ms(FRAME_TIMEOUT_MS),
                "frame stalled halfway",
            ))
        } else {
            idle_ms.map(|ms| (self.last_rx.plus_ms(ms), "idle for too long"))
        }
    }

    /// The next message after the hello, `Ok(None)` when more bytes are needed, `Err` with a
    /// reason when the remote broke the protocol.
    pub fn next_message(&mut self) -> Result<Option<Message>, String> {
        loop {
            let Some(msg) = self.decoder.next_message().map_err(|e| e.to_string())? else {
                return Ok(None);
            };
            if self.hello_done {
                return Ok(Some(msg));
            }
            self.check_hello(&msg)?;
            self.hello_done = true;
            self.decoder.hello_done();
        }
    }

    fn check_hello(&self, msg: &Message) -> Result<(), String> {
        match msg {
            Message::Hello(Hello { magic, .. }) if *magic != MAGIC => {
                Err("not a Drizzle connection (bad magic)".into())
            }
            Message::Hello(Hello { version, .. }) if *version != PROTOCOL_VERSION => Err(format!(
                "protocol version {version} is not supported (this side speaks {PROTOCOL_VERSION})"
            )),
            Message::Hello(Hello { role, .. }) if *role != self.expect => {
                Err(format!("expected a {:?}, got a {role:?}", self.expect))
            }
            Message::Hello(_) => Ok(()),
            Message::Error { reason } => Err(format!("remote refused: {}", clip(reason))),
            _ => Err("first message was not a hello".into()),
        }
    }
}

/// Shortens a remote-supplied reason for logs and replies.
pub(crate) fn clip(reason: &str) -> String {
    let max = crate::limits::MAX_REASON_BYTES;
    if reason.len() <= max {
        return reason.to_string();
    }
    let mut end = max;
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", reason.get(..end).unwrap_or_default())
}
