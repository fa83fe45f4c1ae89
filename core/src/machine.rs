//! The driver-facing face of every machine: what goes in ([`Input`]), what comes out
//! ([`Output`], [`Event`]) and the one trait ([`Machine`]) that lets a single mio loop or
//! simulator loop drive a tracker and a peer alike.

use crate::bytes::Bytes;
pub use crate::event::{Event, FailKind};
use crate::manifest::{FileName, Hash, Root};
use crate::pool::BufferPool;
use crate::time::Timestamp;
use std::fmt;
use std::net::SocketAddr;

/// A connection, named by whoever created it: the driver names the ones it accepts
/// (`Inbound`), the machine names the ones it asks for (`Outbound`), so the two never clash.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ConnId {
    Inbound(u64),
    Outbound(u64),
}

impl fmt::Display for ConnId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConnId::Inbound(n) => write!(f, "in#{n}"),
            ConnId::Outbound(n) => write!(f, "out#{n}"),
        }
    }
}

/// Names one storage request so its completion can be matched to it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct IoId(pub u64);

/// Which bytes a storage request is about: a finished (or shared) file, or the `.part` file
/// of a download in progress.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct StorageKey {
    pub name: FileName,
    pub partial: bool,
}

/// Everything a driver feeds a machine, besides commands and timeouts.
#[derive(Debug)]
pub enum Input<'a> {
    /// The driver accepted a connection and named it.
    Accepted { conn: ConnId, remote: SocketAddr },
    /// An outbound connection the machine asked for is established.
    Connected { conn: ConnId },
    /// An outbound connection could not be established.
    ConnectFailed { conn: ConnId, reason: String },
    /// Bytes arrived, split anywhere.
    Received { conn: ConnId, data: Received<'a> },
    /// The connection is gone (remote close, reset, or the driver dropped it).
    Closed { conn: ConnId },
    /// The driver wrote `bytes` of this connection's queued output to the network. Machines
    /// stop decoding a connection's requests while too much output is unsent.
    Sent { conn: ConnId, bytes: usize },
    /// A [`Output::Load`] finished.
    Loaded {
        io: IoId,
        result: Result<Bytes, String>,
    },
    /// A [`Output::Hash`] finished: the SHA-256 of `data`, and the bytes handed back.
    Hashed { io: IoId, digest: Hash, data: Bytes },
    /// A [`Output::Store`] finished: the chunk is written, and recorded as there.
    Stored {
        io: IoId,
        result: Result<(), String>,
    },
    /// A [`Output::Commit`] finished: the file is synced and under its final name.
    Committed {
        io: IoId,
        result: Result<(), String>,
    },
    /// A [`Output::Discard`] finished: the `.part` file is gone.
    Discarded {
        io: IoId,
        result: Result<(), String>,
    },
}

impl Input<'_> {
    /// The completion of a write (`Output::Store`, `Commit` or `Discard`) with `io`, for
    /// drivers that run writes apart and answer them alike; `None` for other outputs.
    pub fn written(write: &Output, result: Result<(), String>) -> Option<Input<'static>> {
        Some(match *write {
            Output::Store { io, .. } => Input::Stored { io, result },
            Output::Commit { io, .. } => Input::Committed { io, result },
            Output::Discard { io, .. } => Input::Discarded { io, result },
            _ => return None,
        })
    }
}

/// Bytes that arrived on a connection, in the form the driver has them.
#[derive(Debug)]
pub enum Received<'a> {
    /// Borrowed from the driver's read buffer.
    Slice(&'a [u8]),
    /// Handed over: the machine may keep them without a copy (a chunk payload that arrives
    /// whole, as the simulator delivers it).
    Owned(Bytes),
    /// This many bytes were read straight into the start of the window that
    /// [`Machine::receive_window`] gave for the connection just before.
    InWindow(usize),
}

/// How a driver lays out the bytes of an [`Output::Load`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Layout {
    /// As they are in the file.
    Plain,
    /// Spread over the bodies of sealed records ([`crate::secure::record_bodies`] of the
    /// bytes read), the gaps left for each record's length and tag: bytes for a closed
    /// swarm's connection, which seals them where they lie instead of copying them.
    Records,
}

impl Layout {
    /// How many bytes `plain_len` bytes of a file take laid out so.
    pub fn len(self, plain_len: usize) -> usize {
        match self {
            Layout::Plain => plain_len,
            Layout::Records => crate::secure::records_len(plain_len),
        }
    }
}

/// Everything a machine asks of its driver. Drain with `poll_output` until `None` after
/// every call that mutates the machine.
#[derive(Debug, PartialEq, Eq)]
pub enum Output {
    Connect {
        conn: ConnId,
        addr: SocketAddr,
    },
    Send {
        conn: ConnId,
        bytes: Bytes,
    },
    /// Flush what was sent, then close.
    Close {
        conn: ConnId,
    },
    /// Read `len` bytes at `offset`, laid out as `layout` says; answer with
    /// [`Input::Loaded`]. When the bytes will be sent on `conn`, a driver may defer the read
    /// while that connection's send buffer is full; `None` for bytes read to be checked (a
    /// resumed or existing file). A read cut short (the file shrank) gives fewer bytes.
    Load {
        io: IoId,
        key: StorageKey,
        offset: u64,
        len: u32,
        conn: Option<ConnId>,
        layout: Layout,
    },
    /// Compute the SHA-256 of `data`; answer with [`Input::Hashed`]. Pure computation, asked
    /// of the driver so it can run beside receiving (another thread); the machine still
    /// compares the digest and decides.
    Hash {
        io: IoId,
        data: Bytes,
    },
    /// Write verified chunk `chunk` of the file with root `root` into the `.part` file
    /// (created at `size` bytes if missing) at `offset`, and remember that it is there so an
    /// interrupted download can resume; answer with [`Input::Stored`].
    Store {
        io: IoId,
        name: FileName,
        root: Root,
        size: u64,
        chunk: u32,
        offset: u64,
        data: Bytes,
    },
    /// Every chunk is verified and stored: sync the `.part` file and rename it into place;
    /// answer with [`Input::Committed`].
    Commit {
        io: IoId,
        name: FileName,
    },
    /// Remove the `.part` file of a rejected download; answer with [`Input::Discarded`].
    Discard {
        io: IoId,
        name: FileName,
    },
    Event(Event),
}

/// The one driver-facing interface of trackers and peers (quinn-proto's shape: inputs in,
/// outputs drained, timers inside).
pub trait Machine {
    /// Feeds one input. Remote misbehaviour never errors: it becomes a close and an event.
    fn handle(&mut self, now: Timestamp, input: Input<'_>);
    /// The next output, or `None` when drained.
    fn poll_output(&mut self) -> Option<Output>;
    /// When `handle_timeout` next wants to run.
    fn poll_timeout(&self) -> Option<Timestamp>;
    /// Runs every timer due at `now`; an early or repeated call is a no-op.
    fn handle_timeout(&mut self, now: Timestamp);
    /// Whether the driver may read more from `conn` now. `false` is back-pressure: the
    /// machine holds all the input it can (a peer whose received chunks wait for hashing
    /// and the disk), so the rest waits in the network. Asked again after every input.
    fn accepts_input(&self, _conn: ConnId) -> bool {
        true
    }

    /// Where the next bytes on `conn` may be read straight into, if anywhere: the room left
    /// in a chunk payload being collected. A driver that reads into it reports that with
    /// [`Received::InWindow`], sparing the copy out of its own read buffer.
    fn receive_window(&mut self, _conn: ConnId) -> Option<&mut [u8]> {
        None
    }

    /// The driver's chunk buffers: the machine may receive chunks into buffers from `pool`,
    /// which the driver refills with those it is done with (written to disk), instead of
    /// allocating (and zeroing) one a chunk.
    fn share_buffers(&mut self, _pool: &BufferPool) {}
}
