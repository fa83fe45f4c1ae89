//! One connection's framing state, shared by both machines: incremental decoding, the
//! hello check and, in a closed swarm, the handshake and records (`crate::secure`). A
//! `Link` turns raw bytes into messages or into a reason to close, and plain frames into
//! the bytes to put on the wire.

use crate::bytes::Bytes;
use crate::limits::{
    FRAME_TIMEOUT_MS, HELLO_TIMEOUT_MS, MAX_FRAME_BYTES, MAX_UNSENT_BYTES_PER_CONN,
};
use crate::machine::{Layout, Received};
use crate::manifest::Root;
use crate::outbox::CloseReason;
use crate::pool::BufferPool;
use crate::secure::{Channel, SealError, WRONG_KEY_REASON};
use crate::time::Timestamp;
use crate::wire::{encode, FrameDecoder, Hello, Message, Role, MAGIC, PROTOCOL_VERSION};
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
    /// A closed swarm's handshake and records; `None` in an open swarm.
    channel: Option<Channel>,
    /// Wire bytes the link itself has for the remote (its handshake answer, what was held
    /// during the handshake), taken by the machine's outbox (`Outbox::flush`).
    outgoing: Vec<Bytes>,
    /// Why the link broke while receiving (a record that failed authentication).
    broken: Option<CloseReason>,
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
            channel: None,
            outgoing: Vec::new(),
            broken: None,
        }
    }

    /// This link in a closed swarm: `channel` (from the machine's keyring) secures it.
    pub fn secured(mut self, channel: Option<Channel>) -> Link {
        self.channel = channel;
        self
    }

    /// This link collects chunk payloads in buffers from `pool`, when given (see
    /// [`Machine::share_buffers`](crate::machine::Machine::share_buffers)).
    pub fn collecting_in(mut self, pool: Option<BufferPool>) -> Link {
        if let Some(pool) = pool {
            self.decoder.collect_in(pool);
        }
        self
    }

    /// Whether the remote introduced itself with a valid hello.
    pub fn hello_done(&self) -> bool {
        self.hello_done
    }

    /// Whether messages flow: the hello is done and, in a closed swarm, the handshake too.
    fn ready(&self) -> bool {
        self.hello_done && self.channel.as_ref().is_none_or(Channel::is_sealed)
    }

    /// The frames this side opens the connection with: its hello and, when it connected
    /// into a closed swarm, the first handshake message.
    pub fn greeting(&mut self, role: Role) -> Vec<Message> {
        let mut hello = Hello::new(role);
        hello.closed = self.channel.is_some();
        let first = self.channel.as_mut().and_then(Channel::first_message);
        let handshake = first.map(|noise| Message::Handshake { noise });
        std::iter::once(Message::Hello(hello))
            .chain(handshake)
            .collect()
    }

    /// The wire bytes for plain frames `plain`: as they are in an open swarm (or, for
    /// `clear_ok` frames — hello, handshake, a refusal — before the handshake is done),
    /// sealed into records in a closed one, or `None` while held for the handshake.
    pub fn wire(&mut self, plain: Bytes, clear_ok: bool) -> Option<Bytes> {
        match self.channel.as_mut() {
            None => Some(plain),
            Some(c) if !c.is_sealed() && clear_ok => Some(plain),
            Some(c) => c.seal(&plain).map(Bytes::from),
        }
    }

    /// How a payload to be sent on this link is best loaded: spread over records where the
    /// link seals what it sends, so it is sealed where it lies.
    pub fn load_layout(&self) -> Layout {
        match &self.channel {
            Some(c) if c.is_sealed() => Layout::Records,
            _ => Layout::Plain,
        }
    }

    /// The wire bytes of a payload of `plain_len` bytes loaded as `Layout::Records`,
    /// sealed where they lie; `None` if this link does not seal.
    pub fn wire_records(&mut self, wire: Bytes, plain_len: usize) -> Option<Bytes> {
        let channel = self.channel.as_mut()?;
        channel
            .seal_in_place(wire.into_vec(), plain_len)
            .map(Bytes::from)
    }

    /// What the link itself has to send (see `outgoing`).
    pub fn take_outgoing(&mut self) -> Vec<Bytes> {
        std::mem::take(&mut self.outgoing)
    }

    /// Counts bytes queued to send on this link.
    pub fn queued(&mut self, bytes: usize) {
        self.unsent = self.unsent.saturating_add(bytes);
    }

    /// Counts bytes the driver wrote (`Input::Sent`): how many of them were queued here.
    pub fn sent(&mut self, bytes: usize) -> usize {
        let taken = bytes.min(self.unsent);
        self.unsent -= taken;
        taken
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
        if self.channel.as_ref().is_some_and(Channel::is_sealed) {
            let (wire, in_window) = match &data {
                Received::Slice(data) => (*data, None),
                Received::Owned(data) => (data.as_slice(), None),
                Received::InWindow(len) => (&[][..], Some(*len)),
            };
            let any = self.received(now, in_window.unwrap_or(wire.len()));
            let opened = match (self.channel.as_mut(), in_window) {
                (Some(c), Some(len)) if any => c.opened_in_window(len, &mut self.decoder),
                (Some(c), None) if any => c.open(wire, &mut self.decoder),
                _ => Ok(()),
            };
            if let Err(e) = opened {
                self.broken.get_or_insert(seal_failed(e));
            }
            return any;
        }
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
        match self.channel.as_mut() {
            Some(c) => c.receive_window(&mut self.decoder),
            None => self.decoder.receive_window(),
        }
    }

    /// When bytes last came (or the link opened).
    pub fn last_received(&self) -> Timestamp {
        self.last_rx
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
        } else if !self.ready() {
            Some((
                self.opened.plus_ms(HELLO_TIMEOUT_MS),
                "no handshake in time",
            ))
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
    pub fn next_message(&mut self) -> Result<Option<Message>, CloseReason> {
        if let Some(why) = self.broken.take() {
            return Err(why);
        }
        loop {
            if self.unsent > MAX_UNSENT_BYTES_PER_CONN {
                return Ok(None);
            }
            let next = self.decoder.next_message();
            let next = next.map_err(|e| CloseReason::Violation(e.to_string()))?;
            let Some(msg) = next else {
                let buffered =
                    self.decoder.buffered() + self.channel.as_ref().map_or(0, Channel::buffered);
                if buffered > 0 {
                    self.frame_started.get_or_insert(self.last_rx);
                }
                return Ok(None);
            };
            self.frame_started = None;
            if self.ready() {
                return Ok(Some(msg));
            }
            if !self.hello_done {
                self.check_hello(&msg)?;
                self.hello_done = true;
                if self.channel.is_none() {
                    self.decoder.hello_done();
                }
                continue;
            }
            if let Some(msg) = self.handshake(msg)? {
                return Ok(Some(msg));
            }
        }
    }

    /// A message of a closed swarm's handshake: the remote's half of it (after which the
    /// link is sealed), or its refusal. An `Error` that is not about the key is handed on.
    fn handshake(&mut self, msg: Message) -> Result<Option<Message>, CloseReason> {
        let Some(channel) = self.channel.as_mut() else {
            return Ok(Some(msg));
        };
        let noise = match msg {
            Message::Handshake { noise } => noise,
            Message::Error { reason } if reason == WRONG_KEY_REASON => {
                let who = role_name(self.expect);
                return Err(CloseReason::Unauthorised(format!(
                    "{WRONG_KEY_REASON}: the {who} refused ours"
                )));
            }
            Message::Error { .. } => return Ok(Some(msg)),
            other => {
                let why = format!("expected the handshake, got a {}", other.kind());
                return Err(CloseReason::Violation(why));
            }
        };
        let answer = channel.read_handshake(&noise).map_err(seal_failed)?;
        if let Some(noise) = answer {
            let frame = encode(&Message::Handshake { noise });
            self.outgoing.push(frame.into());
        }
        if let Some(held) = channel.take_held() {
            self.outgoing.push(held.into());
        }
        self.decoder.hello_done();
        let rest = self.decoder.take_unread();
        channel
            .open(&rest, &mut self.decoder)
            .map_err(seal_failed)?;
        Ok(None)
    }

    fn check_hello(&self, msg: &Message) -> Result<(), CloseReason> {
        let closed_here = self.channel.is_some();
        let who = role_name(self.expect);
        match msg {
            Message::Hello(Hello { closed, .. }) if *closed && !closed_here => {
                return Err(CloseReason::Unauthorised(format!(
                    "the {who} runs a closed swarm; this side has no swarm key"
                )));
            }
            Message::Hello(Hello { closed, .. }) if !*closed && closed_here => {
                return Err(CloseReason::Unauthorised(format!(
                    "the {who} runs an open swarm; this side has a swarm key (an open swarm \
                     is joined with --open)"
                )));
            }
            _ => {}
        }
        self.check_hello_fields(msg).map_err(CloseReason::Violation)
    }

    fn check_hello_fields(&self, msg: &Message) -> Result<(), String> {
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

fn role_name(role: Role) -> &'static str {
    match role {
        Role::Tracker => "tracker",
        Role::Peer => "peer",
    }
}

/// A broken channel as a reason to close: a wrong key is a refusal, the rest a violation.
fn seal_failed(e: SealError) -> CloseReason {
    match e {
        SealError::WrongKey => CloseReason::Unauthorised(WRONG_KEY_REASON.to_string()),
        e => CloseReason::Violation(e.to_string()),
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
