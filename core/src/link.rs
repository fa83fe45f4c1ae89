//! One connection's framing state, shared by both machines: incremental decoding and the
//! hello check. A `Link` turns raw bytes into messages or into a reason to close.

use crate::wire::{FrameDecoder, Hello, Message, Role, MAGIC, PROTOCOL_VERSION};
use std::net::SocketAddr;

#[derive(Debug)]
pub(crate) struct Link {
    pub remote: SocketAddr,
    decoder: FrameDecoder,
    expect: Role,
    hello_done: bool,
}

impl Link {
    /// A link to `remote`, which must introduce itself as `expect`.
    pub fn new(remote: SocketAddr, expect: Role) -> Link {
        Link {
            remote,
            decoder: FrameDecoder::new(),
            expect,
            hello_done: false,
        }
    }

    pub fn push(&mut self, data: &[u8]) {
        self.decoder.push(data);
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
