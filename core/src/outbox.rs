//! What a machine has for its driver, in order: the plumbing tracker and peer share.
//! Sending counts the bytes on the connection's link (back-pressure); closing a connection
//! for a reason (`CloseReason`) is logged once, tells the remote why, and, for a protocol
//! violation, is reported.

use crate::bytes::Bytes;
use crate::link::{clip, Link};
use crate::log_gate::LogGate;
use crate::machine::{ConnId, Event, Layout, Output};
use crate::time::Timestamp;
use crate::wire::{encode_with, Message, Role};
use std::collections::VecDeque;
use std::fmt;

/// Why a machine closes a connection on its own account. Kept whole for logs and events;
/// clipped to `MAX_REASON_BYTES` only where it is written to the wire.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum CloseReason {
    /// The remote broke the protocol (a bad frame, an unexpected message, a bound passed).
    Violation(String),
    /// The remote stayed silent past a deadline (which one).
    TimedOut(&'static str),
    /// The remote is not of this swarm: a wrong or missing swarm key, or an open swarm
    /// meeting a closed one.
    Unauthorised(String),
}

impl fmt::Display for CloseReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CloseReason::Violation(reason) | CloseReason::Unauthorised(reason) => {
                f.write_str(reason)
            }
            CloseReason::TimedOut(why) => write!(f, "timed out: {why}"),
        }
    }
}

#[derive(Debug, Default)]
pub(crate) struct Outbox {
    out: VecDeque<Output>,
    /// Where messages are encoded (see `encode_with`).
    scratch: Vec<u8>,
    /// Warnings about remotes, once a minute per address.
    gate: LogGate,
}

impl Outbox {
    /// Queues `msg` for `conn`, through its `link` (nothing for a connection gone): the
    /// bytes of its frame.
    pub fn send(&mut self, link: Option<&mut Link>, conn: ConnId, msg: &Message) -> usize {
        // Before a closed swarm's handshake is done, only these may go out in the clear.
        let clear_ok = matches!(
            msg,
            Message::Hello(_) | Message::Handshake { .. } | Message::Error { .. }
        );
        let frame = encode_with(msg, &mut self.scratch);
        let bytes = frame.len();
        self.send_wire(link, conn, frame.into(), clear_ok);
        bytes
    }

    /// Queues encoded bytes (whole frames, or a frame's parts in order).
    pub fn send_bytes(&mut self, link: Option<&mut Link>, conn: ConnId, bytes: Bytes) {
        self.send_wire(link, conn, bytes, false);
    }

    /// Queues a payload of `plain_len` bytes loaded as `layout` (see `Link::load_layout`).
    pub fn send_loaded(
        &mut self,
        link: Option<&mut Link>,
        conn: ConnId,
        loaded: Bytes,
        layout: Layout,
        plain_len: usize,
    ) {
        match (layout, link) {
            (Layout::Plain, link) => self.send_bytes(link, conn, loaded),
            (Layout::Records, Some(link)) => {
                if let Some(bytes) = link.wire_records(loaded, plain_len) {
                    self.push_send(link, conn, bytes);
                }
            }
            (Layout::Records, None) => {}
        }
    }

    fn send_wire(&mut self, link: Option<&mut Link>, conn: ConnId, plain: Bytes, clear_ok: bool) {
        let Some(link) = link else {
            return;
        };
        if let Some(bytes) = link.wire(plain, clear_ok) {
            self.push_send(link, conn, bytes);
        }
    }

    fn push_send(&mut self, link: &mut Link, conn: ConnId, bytes: Bytes) {
        link.queued(bytes.len());
        self.out.push_back(Output::Send { conn, bytes });
    }

    /// Opens a connection: this side's hello (and handshake, when it connected).
    pub fn greet(&mut self, link: &mut Link, conn: ConnId, role: Role) {
        for msg in link.greeting(role) {
            self.send(Some(link), conn, &msg);
        }
    }

    /// Queues what the link itself has to send (a handshake answer, what it held).
    pub fn flush(&mut self, link: &mut Link, conn: ConnId) {
        for bytes in link.take_outgoing() {
            self.push_send(link, conn, bytes);
        }
    }

    pub fn emit(&mut self, event: Event) {
        self.out.push_back(Output::Event(event));
    }

    /// Any other request of the driver (connect, close, storage).
    pub fn push(&mut self, output: Output) {
        self.out.push_back(output);
    }

    pub fn close(&mut self, conn: ConnId) {
        self.out.push_back(Output::Close { conn });
    }

    /// Closes `conn` for `reason` at `now`: logged, the remote told why (clipped), and a
    /// protocol violation reported. `user_told`: an event gives the user this cause
    /// already, so the log says it only at `info` (a failure names its cause once). The
    /// caller forgets the link.
    pub fn close_for(
        &mut self,
        now: Timestamp,
        link: &mut Link,
        conn: ConnId,
        reason: CloseReason,
        user_told: bool,
    ) {
        let remote = link.remote;
        let text = reason.to_string();
        match reason {
            CloseReason::Violation(_) if user_told => {
                log::info!("closing {remote} ({conn}): {text}")
            }
            CloseReason::Violation(_) => {
                let text = format_args!("closing {remote} ({conn}): {text}");
                self.gate.warn(module_path!(), remote.ip(), now, text)
            }
            CloseReason::TimedOut(_) => log::info!("closing {remote} ({conn}): {text}"),
            // Whoever refused a stranger says so; whoever was refused tells its user.
            CloseReason::Unauthorised(_) if matches!(conn, ConnId::Inbound(_)) => {
                let text = format_args!("refusing {remote} ({conn}): {text}");
                self.gate.warn(module_path!(), remote.ip(), now, text)
            }
            CloseReason::Unauthorised(_) => log::info!("refused by {remote} ({conn}): {text}"),
        }
        let error = Message::Error {
            reason: clip(&text),
        };
        self.send(Some(link), conn, &error);
        self.close(conn);
        if let CloseReason::Violation(reason) = reason {
            self.emit(Event::ProtocolViolation { remote, reason });
        }
    }

    /// The remote of `conn` said why it leaves (`Message::Error`): logged, and the
    /// connection closed on our side too. The caller forgets the link.
    pub fn close_on_error(&mut self, link: &Link, conn: ConnId, reason: &str) {
        log::info!(
            "{} ({conn}) closed the connection: {}",
            link.remote,
            clip(reason)
        );
        self.close(conn);
    }

    pub fn pop(&mut self) -> Option<Output> {
        self.out.pop_front()
    }
}
