//! SHA-256 of received chunks off the event loop, so hashing one chunk overlaps receiving
//! the next. The machine still compares the digest and decides.

use crate::worker::Worker;
use drizzle_core::manifest::{sha256, Hash};
use drizzle_core::{Bytes, IoId};
use mio::Waker;
use std::sync::Arc;

/// Chunks waiting to be hashed at most (a bound on memory).
const QUEUE: usize = 8;

pub type Hasher = Worker<(IoId, Bytes), (IoId, Hash, Bytes)>;

pub fn spawn_hasher(waker: Arc<Waker>) -> Hasher {
    Worker::spawn(QUEUE, waker, |(io, data): (IoId, Bytes)| {
        (io, sha256(&data), data)
    })
}
