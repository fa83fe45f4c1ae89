//! drizzle-mio: runs Drizzle's core machines on real sockets and real files.
//! `driver` is one mio event loop per machine (sockets, timers, back-pressure, upload rate),
//! `storage` maps the machine's load/store/commit requests onto files (`writer` and `hasher`
//! run writes and hashing on `worker` threads; core's `BufferPool`, shared with the machine,
//! recycles chunk buffers), `node` runs a driver on a thread, `stats` counts connections
//! and bytes for the operator.

pub mod driver;
pub mod hasher;
pub mod node;
pub mod out_queue;
pub mod rate;
pub mod stats;
pub mod storage;
pub mod worker;
pub mod writer;

pub use driver::{Driver, Flow};
pub use node::{spawn_peer, spawn_tracker, NodeHandle};
pub use stats::{DriverCounts, DriverStats, Traffic};
pub use storage::{scan_dir, FileStore, Scan};
