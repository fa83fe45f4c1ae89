//! SHA-256 of received chunks off the event loop, on a pool of threads sized to the
//! machine: hashing runs beside receiving, and several chunks are hashed at once, so one
//! core's hashing speed does not cap a download. The machine still compares and decides.

use crate::worker::Worker;
use drizzle_core::manifest::{sha256, Hash};
use drizzle_core::{Bytes, IoId};
use mio::Waker;
use std::sync::Arc;

/// Chunks waiting at one hashing thread at most (a bound on memory).
const QUEUE: usize = 4;

type HashWorker = Worker<(IoId, Bytes), (IoId, Hash, Bytes)>;

/// Hashing threads, given chunks in turn.
#[derive(Debug)]
pub struct Hasher {
    workers: Vec<HashWorker>,
    next: usize,
}

/// The cores this process may use.
pub fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, usize::from)
}

/// Threads to hash received chunks on when nobody says: one per core but the one the event
/// loop receives on (on 2 cores a second hashing thread only takes turns with the loop:
/// `bench transfer --size 1GiB`, four alternations, median 0.79 s with one, 0.84 s with two).
pub fn default_hash_threads() -> usize {
    cores().saturating_sub(1).max(1)
}

/// A pool of `threads` hashing threads (at least one) that wake `waker` with each result.
pub fn spawn_hasher(threads: usize, waker: Arc<Waker>) -> Hasher {
    let workers = (0..threads.max(1))
        .map(|_| {
            Worker::spawn(QUEUE, waker.clone(), |(io, data): (IoId, Bytes)| {
                (io, sha256(&data), data)
            })
        })
        .collect();
    Hasher { workers, next: 0 }
}

impl Hasher {
    /// Queues a chunk at the next thread in turn (waiting while its queue is full); gives
    /// the chunk back if that thread stopped.
    pub fn submit(&mut self, job: (IoId, Bytes)) -> Result<(), (IoId, Bytes)> {
        let Some(worker) = self.workers.get(self.next) else {
            return Err(job);
        };
        self.next = (self.next + 1) % self.workers.len();
        worker.submit(job)
    }

    /// Chunks hashed so far, each thread's in order.
    pub fn finished(&self) -> impl Iterator<Item = (IoId, Hash, Bytes)> + '_ {
        self.workers.iter().flat_map(Worker::finished)
    }
}
