//! Snapshots handed from the event loop to the HTTP thread. The loop never waits on HTTP:
//! a request raises a flag and wakes the loop, which builds a snapshot on its next turn (at
//! most every `MIN_GAP`) and publishes it; requests within `MIN_GAP` of it share it.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::Notify;

/// However many clients ask, the loop builds at most one snapshot per this; a snapshot
/// younger is served as it is.
const MIN_GAP: Duration = Duration::from_millis(100);
/// How long a request waits for the loop before it is served the last snapshot (or 503).
const WAIT_FOR_LOOP: Duration = Duration::from_secs(2);

type Wake = Box<dyn Fn() + Send + Sync>;

pub struct Handoff<V> {
    latest: Mutex<Option<(Instant, Arc<V>)>>,
    wanted: AtomicBool,
    published: Notify,
    wake: Wake,
}

impl<V> std::fmt::Debug for Handoff<V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Handoff")
            .field("wanted", &self.wanted)
            .finish_non_exhaustive()
    }
}

impl<V> Handoff<V> {
    /// `wake` makes the loop take a turn (the driver's waker).
    pub fn new(wake: impl Fn() + Send + Sync + 'static) -> Arc<Handoff<V>> {
        Arc::new(Handoff {
            latest: Mutex::new(None),
            wanted: AtomicBool::new(false),
            published: Notify::new(),
            wake: Box::new(wake),
        })
    }

    // ---- the loop's side ----

    /// Whether the loop should build a snapshot now: one was asked for and the last is
    /// at least `MIN_GAP` old.
    pub fn wanted(&self) -> bool {
        self.wanted.load(Ordering::Acquire) && self.age().is_none_or(|age| age >= MIN_GAP)
    }

    pub fn publish(&self, view: V) {
        if let Ok(mut latest) = self.latest.lock() {
            *latest = Some((Instant::now(), Arc::new(view)));
        }
        self.wanted.store(false, Ordering::Release);
        self.published.notify_waiters();
    }

    // ---- the HTTP side ----

    /// A snapshot at most `MIN_GAP` old if the loop answers within `WAIT_FOR_LOOP`; else
    /// the last one there is (`None` before the first).
    pub async fn fresh(&self) -> Option<Arc<V>> {
        if self.age().is_some_and(|age| age < MIN_GAP) {
            return self.last();
        }
        // Made before the flag is raised, so a publish in between is not missed.
        let published = self.published.notified();
        self.wanted.store(true, Ordering::Release);
        (self.wake)();
        if tokio::time::timeout(WAIT_FOR_LOOP, published)
            .await
            .is_err()
        {
            log::warn!("http: the event loop did not answer within {WAIT_FOR_LOOP:?}");
        }
        self.last()
    }

    fn last(&self) -> Option<Arc<V>> {
        let latest = self.latest.lock().ok()?;
        latest.as_ref().map(|(_, v)| v.clone())
    }

    fn age(&self) -> Option<Duration> {
        let latest = self.latest.lock().ok()?;
        latest.as_ref().map(|(at, _)| at.elapsed())
    }
}
