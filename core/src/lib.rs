//! drizzle-core: the sans-IO heart of Drizzle.
//! Protocol framing, manifests, and the tracker and peer state machines live here; they
//! perform no I/O, read no clock and draw no OS randomness, so any driver (mio, the simulator)
//! can run them. Everything enters through [`Machine::handle`] (and a peer's commands) and
//! leaves through [`Machine::poll_output`]; time is only ever a parameter.
//!
//! A driver's loop, in short (`transport-mio` and `sim` are the real ones):
//!
//! ```
//! use drizzle_core::{FileName, Input, Machine, Output, Peer, PeerCommand, PeerConfig, Timestamp};
//! use drizzle_core::peer::DownloadRequest;
//!
//! let tracker = "127.0.0.1:55555".parse().unwrap();
//! let listen = "127.0.0.1:7000".parse().unwrap();
//! let mut peer = Peer::new(PeerConfig::new(tracker, listen, 7)); // seeded: deterministic
//! let now = Timestamp::ZERO; // the driver's clock, in milliseconds
//! let name = FileName::new("notes.txt").unwrap();
//! peer.command(now, PeerCommand::Download(DownloadRequest::whole(name))).unwrap();
//! peer.handle_timeout(now); // timers due now: here, connecting to the tracker
//! // Drain every output after each call; each asks the driver to do one thing.
//! let mut connects = Vec::new();
//! while let Some(output) = peer.poll_output() {
//!     match output {
//!         Output::Connect { conn, addr } => connects.push((conn, addr)), // open a socket
//!         Output::Send { .. } => {}  // write these bytes to that connection, in order
//!         Output::Event(event) => println!("{event}"), // for people and programs
//!         _ => {} // close, load, hash, store, commit: storage and sockets, done outside
//!     }
//! }
//! assert_eq!(connects.len(), 1);
//! // What happened outside comes back as input; then drain again.
//! let (conn, _) = connects[0];
//! peer.handle(now, Input::Connected { conn });
//! // Sleep until the next timer (or until a socket has something), then `handle_timeout`.
//! assert!(peer.poll_timeout().is_some());
//! ```

pub mod bytes;
pub mod chunkset;
mod deadlines;
pub mod event;
pub mod idmap;
pub mod limits;
mod link;
pub mod log_gate;
pub mod machine;
pub mod manifest;
mod outbox;
pub mod peer;
pub mod pool;
pub mod secure;
pub mod time;
pub mod tracker;
pub mod wire;

pub use bytes::Bytes;
pub use chunkset::ChunkSet;
pub use machine::{ConnId, Event, Input, IoId, Layout, Machine, Output, Received, StorageKey};
pub use manifest::{FileName, Manifest, NameError, Root};
pub use peer::{DownloadRequest, FetchPolicy, Peer, PeerCommand, PeerConfig, ServePolicy};
pub use pool::BufferPool;
pub use time::Timestamp;
pub use tracker::{Tracker, TrackerConfig, TrackerCounters};
