//! Work off the event loop: a thread that takes jobs in order from a bounded queue, and
//! hands results back through a channel, waking the loop after each. The writer (disk
//! writes) and the hasher (SHA-256 of received chunks) are workers.

use mio::Waker;
use std::sync::mpsc::{channel, sync_channel, Receiver, SyncSender};
use std::sync::Arc;
use std::thread::JoinHandle;

#[derive(Debug)]
pub struct Worker<J, R> {
    jobs: Option<SyncSender<J>>,
    done: Receiver<R>,
    thread: Option<JoinHandle<()>>,
}

impl<J: Send + 'static, R: Send + 'static> Worker<J, R> {
    /// A thread running `work` on each job; at most `queue` jobs wait (a bound on memory:
    /// past it [`Worker::submit`] waits).
    pub fn spawn(
        queue: usize,
        waker: Arc<Waker>,
        mut work: impl FnMut(J) -> R + Send + 'static,
    ) -> Worker<J, R> {
        let (jobs, inbox) = sync_channel::<J>(queue);
        let (report, done) = channel();
        let thread = std::thread::spawn(move || {
            for job in inbox {
                if report.send(work(job)).is_err() {
                    return;
                }
                let _ = waker.wake();
            }
        });
        Worker {
            jobs: Some(jobs),
            done,
            thread: Some(thread),
        }
    }

    /// Queues a job; waits while the queue is full. Gives the job back if the thread stopped.
    pub fn submit(&self, job: J) -> Result<(), J> {
        match &self.jobs {
            Some(jobs) => jobs.send(job).map_err(|e| e.0),
            None => Err(job),
        }
    }

    /// Finished jobs' results, in order.
    pub fn finished(&self) -> impl Iterator<Item = R> + '_ {
        self.done.try_iter()
    }
}

impl<J, R> Drop for Worker<J, R> {
    fn drop(&mut self) {
        // Closing the queue lets the thread finish what it has and stop.
        self.jobs.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
