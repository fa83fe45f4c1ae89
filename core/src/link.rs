//! One connection's framing state, shared by both machines: incremental decoding and the
//! hello check. A `Link` turns raw bytes into messages or into a reason to close.

use crate::limits::{
    FRAME_TIMEOUT_MS, HELLO_TIMEOUT_MS, MAX_FRAME_BYTES, MAX_UNSENT_BYTES_PER_CONN,
};
use crate::machine::Received;
use crate::manifest::Root;
use crate::time::Timestamp;
use crate::wire::{FrameDecoder, Hello, Message, Role, MAGIC, PROTOCOL_VERSION};
use std::net::SocketAddr;

/// No deadline of a link is set sooner than this ahead, besides the idle time its machine
/// chooses (see [`crate::deadlines`]).
pub(crate) const DEADLINE_LEAD_MS: u64 = if HELLO_TIMEOUT_MS < FRAME_TIMEOUT_MS {
    HELLO_TIMEOUT_MS
} else {
    FRAME_TIMEOUT_MS
};

#[derive(Debug)]
pub(crate) struct Link {
    pub remote: SocketAddr,
    decoder: FrameDecoder,
    expect: Role,
    hello_done: bool,
    opened: Timestamp,
    last_rx: Timestamp,
    /// When the frame being received started to arrive (slow-loris guard).
    frame_started: Option<Timestamp>,
    /// Bytes queued for this connection that the driver has not yet written.
    unsent: usize,
}

impl Link {
    /// A link to `remote`, which must introduce itself as `expect`.
    pub fn new(remote: SocketAddr, expect: Role, now: Timestamp) -> Link {
        Link::with_frame_limit(remote, expect, now, MAX_FRAME_BYTES)
    }

    /// Like `new`, for a remote whose frames after the hello are at most `max` bytes.
    pub fn with_frame_limit(remote: SocketAddr, expect: Role, now: Timestamp, max: usize) -> Link {
        Link {
            remote,
            decoder: FrameDecoder::with_frame_limit(max),
            expect,
            hello_done: false,
            opened: now,
            last_rx: now,
            frame_started: None,
            unsent: 0,
        }
    }

    /// Whether the remote introduced itself with a valid hello.
    pub fn hello_done(&self) -> bool {
        self.hello_done
    }

    /// Counts bytes queued to send on this link.
    pub fn queued(&mut self, bytes: usize) {
        self.unsent = self.unsent.saturating_add(bytes);
    }

    /// Counts bytes the driver wrote (`Input::Sent`).
    pub fn sent(&mut self, bytes: usize) {
        self.unsent = self.unsent.saturating_sub(bytes);
    }

    /// Bytes queued for this connection that have not left yet.
    pub fn unsent(&self) -> usize {
        self.unsent
    }

    /// The chunk whose payload has begun to arrive and is not all in yet.
    pub fn arriving_chunk(&self) -> Option<(Root, u32)> {
        self.decoder.arriving_chunk()
    }

    /// Takes received bytes, in whatever form they came; whether there were any.
    pub fn receive(&mut self, now: Timestamp, data: Received<'_>) -> bool {
        match data {
            Received::Slice(data) => {
                let any = self.received(now, data.len());
                if any {
                    self.decoder.push(data);
                }
                any
            }
            // Kept without a copy (see [`FrameDecoder::push_bytes`]).
            Received::Owned(data) => {
                let any = self.received(now, data.len());
                if any {
                    self.decoder.push_bytes(data);
                }
                any
            }
            Received::InWindow(len) => {
                let any = self.received(now, len);
                if any {
                    self.decoder.received_in_window(len);
                }
                any
            }
        }
    }

    /// Where the next bytes may be received straight into (see
    /// [`FrameDecoder::receive_window`]).
    pub fn receive_window(&mut self) -> Option<&mut [u8]> {
        self.decoder.receive_window()
    }

    /// Notes when bytes last came, if `len` says any did.
    fn received(&mut self, now: Timestamp, len: usize) -> bool {
        if len > 0 {
            self.last_rx = now;
        }
        len > 0
    }

    /// When this link must be closed if nothing changes, and why: no hello in time, a frame
    /// stalled halfway (slow-loris), or idle for longer than `idle_ms` (when given).
    pub fn deadline(&self, idle_ms: Option<u64>) -> Option<(Timestamp, &'static str)> {
        if !self.hello_done {
            Some((self.opened.plus_ms(HELLO_TIMEOUT_MS), "no hello in time"))
        } else if let Some(started) = self.frame_started {
            Some((
                started.plus_ms(FRAME_TIMEOUT_MS),
                "frame too slow to arrive",
            ))
        } else {
            idle_ms.map(|ms| (self.last_rx.plus_ms(ms), "idle for too long"))
        }
    }

    /// The next message after the hello, `Ok(None)` when more bytes are needed, `Err` with a
    /// reason when the remote broke the protocol.
    /// Decoding stops while the answers already owed to this remote are unsent.
    pub fn next_message(&mut self) -> Result<Option<Message>, String> {
        loop {
            if self.unsent > MAX_UNSENT_BYTES_PER_CONN {
                return Ok(None);
            }
            let Some(msg) = self.decoder.next_message().map_err(|e| e.to_string())? else {
                if self.decoder.buffered() > 0 {
                    self.frame_started.get_or_insert(self.last_rx);
                }
                return Ok(None);
            };
            self.frame_started = None;
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
