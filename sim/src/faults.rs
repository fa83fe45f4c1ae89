//! The faults a run can suffer, as plain data: an explicit list (rather than random draws
//! inside the world) so that proptest can generate and shrink them.

use serde::Serialize;

/// One fault, applied at `at_ms` of virtual time. Nodes are named by index (0 = tracker).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "fault", rename_all = "snake_case")]
pub enum Fault {
    /// The node stops: its connections close, its pending work is lost, storage survives.
    Crash { at_ms: u64, node: usize },
    /// A crashed node starts again with its storage and re-shares its complete files.
    Restart { at_ms: u64, node: usize },
    /// Connections between `a` and `b` drop and cannot be made until `until_ms`.
    Partition {
        at_ms: u64,
        a: usize,
        b: usize,
        until_ms: u64,
    },
    /// The node's bandwidth is divided by `factor` until `until_ms`.
    SlowLink {
        at_ms: u64,
        node: usize,
        factor: u32,
        until_ms: u64,
    },
    /// The node's disk fails reads (`reads`) and writes, commits and removals (`writes`)
    /// until `until_ms`, changing nothing: an unreadable disk, a full one.
    DiskFails {
        at_ms: u64,
        node: usize,
        until_ms: u64,
        reads: bool,
        writes: bool,
    },
    /// The node's disk never answers a read from `at_ms` on: a holder that takes every
    /// request and sends nothing (a hung mount, or an adversary that registers chunks it
    /// will not serve).
    ReadsHang { at_ms: u64, node: usize },
    /// The node reads nothing more from `at_ms` on, on any connection, while it goes on
    /// sending: a fetcher that takes upload slots and lets the data pile up (a slot hog,
    /// or a line filler when many do it). What is sent to it fills
    /// [`STALLED_READER_WINDOW_BYTES`] per connection, as socket buffers would, and then
    /// its senders' writes never complete. Its own download is not waited for.
    StopsReading { at_ms: u64, node: usize },
    /// Flips bytes of one chunk of a stored file (after it was registered).
    Corrupt {
        at_ms: u64,
        node: usize,
        file: String,
        chunk: u32,
    },
}

/// What a connection towards a node that stopped reading takes before its sender's
/// writes stop completing: a receive buffer and a send buffer at Linux's defaults
/// (`tcp_rmem`, `tcp_wmem`: 128 KiB and 16 KiB before autotuning grows them).
pub const STALLED_READER_WINDOW_BYTES: u64 = 144 << 10;

impl Fault {
    /// The node this fault turns into an adversary, if it does: its own download is not
    /// an honest peer's outcome.
    pub fn adversary(&self) -> Option<usize> {
        match self {
            Fault::StopsReading { node, .. } => Some(*node),
            _ => None,
        }
    }

    pub fn at_ms(&self) -> u64 {
        match self {
            Fault::Crash { at_ms, .. }
            | Fault::Restart { at_ms, .. }
            | Fault::Partition { at_ms, .. }
            | Fault::SlowLink { at_ms, .. }
            | Fault::DiskFails { at_ms, .. }
            | Fault::ReadsHang { at_ms, .. }
            | Fault::StopsReading { at_ms, .. }
            | Fault::Corrupt { at_ms, .. } => *at_ms,
        }
    }
}
