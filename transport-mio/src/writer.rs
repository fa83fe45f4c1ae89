//! Disk writes off the event loop: verified chunks, commits and discards run in order on
//! one writer thread, so receiving and hashing the next chunk overlaps writing this one.
//! Completions come back through a channel and wake the loop.

use crate::storage::FileStore;
use drizzle_core::machine::Output;
use drizzle_core::IoId;
use mio::Waker;
use std::path::PathBuf;
use std::sync::mpsc::{channel, sync_channel, Receiver, SyncSender};
use std::sync::Arc;
use std::thread::JoinHandle;

/// Writes queued at most; past it the loop waits for the disk (a bound on memory).
const QUEUE: usize = 8;

#[derive(Debug)]
pub struct Writer {
    jobs: Option<SyncSender<Output>>,
    done: Receiver<(IoId, Result<(), String>)>,
    thread: Option<JoinHandle<()>>,
}

impl Writer {
    /// A writer for files under `dir`; `waker` is woken after every finished write.
    pub fn spawn(dir: PathBuf, waker: Arc<Waker>) -> Writer {
        let (jobs, inbox) = sync_channel::<Output>(QUEUE);
        let (report, done) = channel();
        let thread = std::thread::spawn(move || {
            let mut store = FileStore::new(dir);
            for job in inbox {
                let (io, result) = match job {
                    Output::Store {
                        io,
                        name,
                        root,
                        size,
                        chunk,
                        offset,
                        data,
                    } => (io, store.store(&name, root, size, chunk, offset, &data)),
                    Output::Commit { io, name } => (io, store.commit(&name)),
                    Output::Discard { io, name } => (io, store.discard(&name)),
                    _ => continue, // only writes are sent here
                };
                if report
                    .send((io, result.map_err(|e| e.to_string())))
                    .is_err()
                {
                    return;
                }
                let _ = waker.wake();
            }
        });
        Writer {
            jobs: Some(jobs),
            done,
            thread: Some(thread),
        }
    }

    /// Queues a write (`Output::Store`, `Commit` or `Discard`); waits while the queue is full.
    pub fn submit(&self, write: Output) -> Result<(), String> {
        match &self.jobs {
            Some(jobs) => jobs
                .send(write)
                .map_err(|_| "the writer thread stopped".to_string()),
            None => Err("the writer thread stopped".into()),
        }
    }

    /// Finished writes, in order.
    pub fn finished(&self) -> impl Iterator<Item = (IoId, Result<(), String>)> + '_ {
        self.done.try_iter()
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        // Closing the queue lets the thread finish what it has and stop.
        self.jobs.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
