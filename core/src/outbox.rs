//! What a machine has for its driver, in order: the plumbing tracker and peer share.
//! Sending counts the bytes on the connection's link (back-pressure); closing a connection
//! for a protocol violation is logged once, tells the remote why, and is reported.

use crate::bytes::Bytes;
use crate::link::{clip, Link};
use crate::machine::{ConnId, Event, Output};
use crate::wire::{encode, Message};
use std::collections::VecDeque;

#[derive(Debug, Default)]
pub(crate) struct Outbox {
    out: VecDeque<Output>,
}

impl Outbox {
    /// Queues `msg` for `conn`, counted on its `link` (if it still has one).
    pub fn send(&mut self, link: Option<&mut Link>, conn: ConnId, msg: &Message) {
        self.send_bytes(link, conn, encode(msg).into());
    }

    /// Queues encoded bytes (whole frames, or a frame's parts in order).
    pub fn send_bytes(&mut self, link: Option<&mut Link>, conn: ConnId, bytes: Bytes) {
        if let Some(link) = link {
            link.queued(bytes.len());
        }
        self.out.push_back(Output::Send { conn, bytes });
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

    /// Closes `conn`, whose remote broke the protocol: logged, the remote told why (the
    /// reason clipped to `MAX_REASON_BYTES`), and reported. The caller forgets the link.
    pub fn close_for_violation(&mut self, link: &mut Link, conn: ConnId, reason: String) {
        let remote = link.remote;
        log::warn!("closing {remote} ({conn}): {reason}");
        let error = Message::Error {
            reason: clip(&reason),
        };
        self.send(Some(link), conn, &error);
        self.close(conn);
        self.emit(Event::ProtocolViolation { remote, reason });
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
