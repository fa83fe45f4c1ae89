//! The driver-facing face of every machine: what goes in ([`Input`]), what comes out
//! ([`Output`], [`Event`]) and the one trait ([`Machine`]) that lets a single mio loop or
//! simulator loop drive a tracker and a peer alike.

use crate::bytes::Bytes;
use crate::manifest::{FileName, Hash, Root};
use crate::time::Timestamp;
use crate::wire::{Complaint, FileSummary, LocatedHolder, Refusal};
use serde::Serialize;
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
    Received { conn: ConnId, data: &'a [u8] },
    /// Bytes arrived, handed over: as `Received`, except that the machine may keep them
    /// without a copy (a chunk payload that arrives whole, as the simulator delivers it).
    ReceivedBytes { conn: ConnId, data: Bytes },
    /// `len` bytes arrived and were read straight into the start of the window that
    /// [`Machine::receive_window`] gave for `conn` just before.
    ReceivedInWindow { conn: ConnId, len: usize },
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
    /// A [`Output::Store`] or [`Output::Commit`] or [`Output::Discard`] finished.
    Stored {
        io: IoId,
        result: Result<(), String>,
    },
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
    /// Read `len` bytes at `offset`; answer with [`Input::Loaded`]. When the bytes will be
    /// sent on `conn`, a driver may defer the read while that connection's send buffer is
    /// full; `None` for bytes read to be checked (a resumed or existing file).
    Load {
        io: IoId,
        key: StorageKey,
        offset: u64,
        len: u32,
        conn: Option<ConnId>,
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
    /// answer with [`Input::Stored`].
    Commit {
        io: IoId,
        name: FileName,
    },
    /// Remove the `.part` file of a rejected download; answer with [`Input::Stored`].
    Discard {
        io: IoId,
        name: FileName,
    },
    Event(Event),
}

/// Why a download ended without its file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FailKind {
    /// The tracker has no such file.
    NotFound,
    /// The tracker's manifest is not the one the user expected (`--expect`).
    RootMismatch,
    /// Some chunk has no reachable holder, or the tracker cannot be reached.
    Unavailable,
    /// Local storage failed.
    Storage,
    /// A different file is already under the name (replacing it takes `--force`).
    Exists,
    /// No chunk arrived for the stall timeout while some were missing.
    Stalled,
    /// The request does not fit the file (a chunk index past its end).
    BadRequest,
}

/// What happened, for people (logs, progress) and programs (`--json`, sim checkers).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    /// Tracker side: a peer registered files.
    PeerRegistered {
        peer: SocketAddr,
        accepted: u32,
        refused: Vec<Refusal>,
    },
    /// Tracker side: a peer's session closed; its holdings are forgotten.
    PeerLeft { peer: SocketAddr },
    /// Tracker side: `reporter` says `holder` failed it for the file with this root;
    /// `reporters`: distinct addresses that now report it (at `REPORTERS_TO_SUSPEND` it is
    /// no longer handed out).
    HolderReported {
        holder: SocketAddr,
        reporter: SocketAddr,
        root: Root,
        complaint: Complaint,
        reporters: u32,
    },
    /// Peer side: the connection to the tracker's address is established (it may yet
    /// turn out not to be a Drizzle tracker).
    TrackerReached { tracker: SocketAddr },
    /// Peer side: the tracker session is up: the tracker answered our register.
    TrackerConnected { tracker: SocketAddr },
    /// Peer side: the server at the tracker's address does not speak Drizzle (no hello,
    /// or bytes that are not one); it is tried again like a lost tracker.
    NotATracker { tracker: SocketAddr, reason: String },
    /// Peer side: the tracker session is down; it is retried after `retry_in_ms`.
    TrackerLost {
        tracker: SocketAddr,
        retry_in_ms: u64,
    },
    /// The tracker recorded a shared file.
    Shared { name: FileName },
    /// The tracker refused a shared file.
    ShareRefused { name: FileName, reason: String },
    /// A shared file could not be read as registered: it is no longer offered (the tracker
    /// was told) until shared again.
    Withdrawn { name: FileName, reason: String },
    /// The tracker's files; `more`: it had more than one answer carries.
    FileList { files: Vec<FileSummary>, more: bool },
    /// A download learned its manifest and holders.
    Located {
        name: FileName,
        root: Root,
        chunks: u32,
        holders: Vec<LocatedHolder>,
    },
    Requested {
        name: FileName,
        chunk: u32,
        peer: SocketAddr,
    },
    Verified {
        name: FileName,
        chunk: u32,
        peer: SocketAddr,
        have: u32,
        want: u32,
    },
    Mismatch {
        name: FileName,
        chunk: u32,
        peer: SocketAddr,
    },
    /// A holder stopped being used for a while (connection failed, closed or timed out).
    HolderLost {
        name: FileName,
        peer: SocketAddr,
        reason: String,
    },
    Done {
        name: FileName,
        root: Root,
        bytes: u64,
        /// False when only some chunks were asked for.
        complete: bool,
        /// Bytes fetched from holders by this download (not those found on disk).
        fetched: u64,
    },
    /// Chunks found on disk (an interrupted download's `.part`, or a file already under
    /// the name) are being hashed before they count.
    Checking { name: FileName, chunks: u32 },
    /// The chunks found on disk were checked: `good` count as held, `bad` are fetched again.
    Checked {
        name: FileName,
        good: u32,
        bad: Vec<u32>,
    },
    /// The file under the name already has the manifest's content: nothing was fetched.
    AlreadyComplete {
        name: FileName,
        root: Root,
        bytes: u64,
    },
    /// Nothing arrived for `secs` seconds: what the download waits on (repeated every
    /// few seconds until something arrives or the stall timeout ends it).
    Waiting {
        name: FileName,
        secs: u64,
        on: String,
    },
    /// Hash mismatches left some chunk with no good holder: the file is refused.
    Rejected {
        name: FileName,
        reason: String,
        chunks: Vec<u32>,
    },
    Failed {
        name: FileName,
        kind: FailKind,
        reason: String,
    },
    /// Served a chunk to another peer.
    Served {
        root: Root,
        chunk: u32,
        to: SocketAddr,
    },
    /// A remote broke the protocol; its connection was closed.
    ProtocolViolation { remote: SocketAddr, reason: String },
}

impl Event {
    /// The file whose download this event ends (done, rejected or failed), if it does.
    pub fn ended_download(&self) -> Option<&FileName> {
        match self {
            Event::Done { name, .. }
            | Event::AlreadyComplete { name, .. }
            | Event::Rejected { name, .. }
            | Event::Failed { name, .. } => Some(name),
            _ => None,
        }
    }
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
    /// [`Input::ReceivedInWindow`], sparing the copy out of its own read buffer.
    fn receive_window(&mut self, _conn: ConnId) -> Option<&mut [u8]> {
        None
    }
}
