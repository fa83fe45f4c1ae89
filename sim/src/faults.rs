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

/// Adversaries beside an honest swarm (`SwarmConfig::adversaries`): seeders that register
/// every chunk and never send one, seeders that send at a trickle, and fetchers that join
/// like everyone else and stop reading at the given times (they take upload slots and let
/// the data pile up: slot hogs; line fillers, when many, each its own address).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Adversaries {
    pub silent_seeders: usize,
    pub trickling_seeders: usize,
    pub hogs_stop_at_ms: Vec<u64>,
}

impl Adversaries {
    /// How much slower than the others a trickling seeder sends.
    pub const TRICKLE_FACTOR: u32 = 100;

    pub fn is_empty(&self) -> bool {
        self.seeders() == 0 && self.hogs_stop_at_ms.is_empty()
    }

    /// Seeders among them.
    pub fn seeders(&self) -> usize {
        self.silent_seeders + self.trickling_seeders
    }

    /// The faults that make them in a swarm with `seeders` honest seeders: seeders are
    /// nodes 1.. (the honest ones, then the silent, then the trickling), and the hogs are
    /// the first peers to join, after every seeder.
    pub fn faults(&self, seeders: usize) -> Vec<Fault> {
        let silent = (0..self.silent_seeders).map(|i| Fault::ReadsHang {
            at_ms: 0,
            node: 1 + seeders + i,
        });
        let trickling = (0..self.trickling_seeders).map(|i| Fault::SlowLink {
            at_ms: 0,
            node: 1 + seeders + self.silent_seeders + i,
            factor: Self::TRICKLE_FACTOR,
            until_ms: u64::MAX / 1000,
        });
        let first_peer = 1 + seeders + self.seeders();
        let hogs =
            (self.hogs_stop_at_ms.iter().enumerate()).map(|(i, at_ms)| Fault::StopsReading {
                at_ms: *at_ms,
                node: first_peer + i,
            });
        silent.chain(trickling).chain(hogs).collect()
    }
}

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
