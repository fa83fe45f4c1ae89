//! SHA-256 of received chunks off the event loop, so hashing one chunk overlaps receiving
//! the next. The machine still compares the digest and decides.

use crate::worker::Worker;
use drizzle_core::manifest::{sha256, Hash};
use drizzle_core::IoId;
use mio::Waker;
use std::sync::Arc;

/// Chunks waiting to be hashed at most (a bound on memory).
const QUEUE: usize = 8;

pub type Hasher = Worker<(IoId, Vec<u8>), (IoId, Hash, Vec<u8>)>;

pub fn spawn_hasher(waker: Arc<Waker>) -> Hasher {
    Worker::spawn(QUEUE, waker, |(io, data): (IoId, Vec<u8>)| {
        (io, sha256(&data), data)
    })
}
