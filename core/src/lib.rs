//! drizzle-core: the sans-IO heart of Drizzle.
//! Protocol framing, manifests, and the tracker and peer state machines live here; they
//! perform no I/O, read no clock and draw no OS randomness, so any driver (mio, the simulator)
//! can run them. Everything enters through [`Machine::handle`] and leaves through
//! [`Machine::poll_output`].

pub mod bytes;
pub mod chunkset;
mod deadlines;
pub mod event;
pub mod limits;
mod link;
pub mod machine;
pub mod manifest;
mod outbox;
pub mod peer;
pub mod time;
pub mod tracker;
pub mod wire;

pub use bytes::Bytes;
pub use chunkset::ChunkSet;
pub use machine::{ConnId, Event, Input, IoId, Machine, Output, StorageKey};
pub use manifest::{FileName, Manifest, NameError, Root};
pub use peer::{DownloadRequest, Peer, PeerCommand, PeerConfig};
pub use time::Timestamp;
pub use tracker::{Tracker, TrackerConfig};
