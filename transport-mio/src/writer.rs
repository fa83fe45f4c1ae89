//! Disk writes off the event loop: verified chunks, commits and discards run in order on
//! one worker thread, so receiving and hashing the next chunk overlaps writing this one.

use crate::storage::FileStore;
use crate::worker::Worker;
use drizzle_core::machine::Output;
use drizzle_core::IoId;
use mio::Waker;
use std::sync::Arc;

/// Writes queued at most; past it the loop waits for the disk (a bound on memory).
const QUEUE: usize = 8;

pub type Writer = Worker<Output, (IoId, Result<(), String>)>;

/// A writer for the files of `store`: takes `Output::Store`, `Commit` and `Discard`.
pub fn spawn_writer(mut store: FileStore, waker: Arc<Waker>) -> Writer {
    Worker::spawn(QUEUE, waker, move |job| match job {
        Output::Store {
            io,
            name,
            root,
            size,
            chunk,
            offset,
            data,
        } => (
            io,
            err_text(store.store(&name, root, size, chunk, offset, &data)),
        ),
        Output::Commit { io, name } => (io, err_text(store.commit(&name))),
        Output::Discard { io, name } => (io, err_text(store.discard(&name))),
        other => (IoId(u64::MAX), Err(format!("not a write: {other:?}"))),
    })
}

fn err_text(result: std::io::Result<()>) -> Result<(), String> {
    result.map_err(|e| e.to_string())
}
