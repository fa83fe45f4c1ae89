//! Disk writes off the event loop: verified chunks, commits and discards run in order on
//! one worker thread, so receiving and hashing the next chunk overlaps writing this one.

use crate::storage::FileStore;
use crate::worker::Worker;
use drizzle_core::machine::{Input, Output};
use drizzle_core::BufferPool;
use mio::Waker;
use std::sync::Arc;

/// Writes queued at most; past it the loop waits for the disk (a bound on memory).
const QUEUE: usize = 8;

/// Takes writes; gives back their completions (`None` for anything not a write).
pub type Writer = Worker<Output, Option<Input<'static>>>;

/// A writer for the files of `store`: takes `Output::Store`, `Commit` and `Discard`; a
/// stored chunk's buffer goes to `pool`, for a chunk received next.
pub fn spawn_writer(mut store: FileStore, waker: Arc<Waker>, pool: BufferPool) -> Writer {
    Worker::spawn(QUEUE, waker, move |job| {
        let result = match &job {
            Output::Store {
                name,
                root,
                size,
                chunk,
                offset,
                data,
                ..
            } => store.store(name, *root, *size, *chunk, *offset, data),
            Output::Commit { name, .. } => store.commit(name),
            Output::Discard { name, .. } => store.discard(name),
            _ => return None,
        };
        let done = Input::written(&job, result.map_err(|e| e.to_string()));
        if let Output::Store { data, .. } = job {
            pool.give(data);
        }
        done
    })
}
