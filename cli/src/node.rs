//! What every long-running command needs: binding the listen address (and saying where),
//! an OS-drawn seed for the machine's RNG, a stop flag raised by SIGINT/SIGTERM, and event
//! narration for logs.

use crate::exit::{Exit, Fail};
use crate::out::say;
use drizzle_core::Event;
use std::hash::{BuildHasher, Hasher};
use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long a command waits for the tracker's address to accept a connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a server that accepted the connection has to answer as a Drizzle tracker
/// (its hello is due within 10 s; the rest is a margin for the register's answer).
const ANSWER_TIMEOUT: Duration = Duration::from_secs(15);

/// Watches a command's first contact with its tracker and names what went wrong: nobody
/// there, or somebody there who is not a Drizzle tracker. Once the session is up it has
/// nothing more to say (a tracker lost later is retried; downloads have their own
/// stall timeout).
#[derive(Debug)]
pub struct TrackerWatch {
    tracker: SocketAddr,
    started: Instant,
    reached: bool,
    up: bool,
}

impl TrackerWatch {
    pub fn new(tracker: SocketAddr) -> TrackerWatch {
        TrackerWatch {
            tracker,
            started: Instant::now(),
            reached: false,
            up: false,
        }
    }

    /// Whether the tracker session has been up (so a lost tracker is worth a word).
    pub fn was_up(&self) -> bool {
        self.up
    }

    /// Looks at an event (or a tick, `None`); `Err` ends the command with exit 4.
    pub fn see(&mut self, event: Option<&Event>) -> Result<(), Fail> {
        let tracker = self.tracker;
        match event {
            _ if self.up => Ok(()),
            Some(Event::TrackerReached { .. }) => {
                self.reached = true;
                Ok(())
            }
            Some(Event::TrackerConnected { .. }) => {
                self.up = true;
                Ok(())
            }
            Some(Event::NotAuthorised { reason, .. }) => Err(Fail::new(
                Exit::NotAuthorised,
                format!("tracker {tracker}: {reason}"),
            )),
            Some(Event::NotATracker { reason, .. }) => Err(Fail::new(
                Exit::Unavailable,
                format!("{tracker} is not a Drizzle tracker ({reason})"),
            )),
            None if !self.reached && self.started.elapsed() > CONNECT_TIMEOUT => Err(Fail::new(
                Exit::Unavailable,
                format!("tracker {tracker} is unreachable"),
            )),
            None if self.started.elapsed() > ANSWER_TIMEOUT => Err(Fail::new(
                Exit::Unavailable,
                format!(
                    "{tracker} accepted the connection but did not answer as a Drizzle tracker \
                     within {} s",
                    ANSWER_TIMEOUT.as_secs()
                ),
            )),
            _ => Ok(()),
        }
    }
}

/// Binds `addr` and prints the contract's first line, `listening on IP:PORT`.
pub fn bind_and_announce(addr: SocketAddr) -> Result<(TcpListener, SocketAddr), Fail> {
    let listener = TcpListener::bind(addr)
        .map_err(|e| Fail::new(Exit::Failure, format!("cannot listen on {addr}: {e}")))?;
    let local = listener.local_addr()?;
    say!("listening on {local}");
    Ok((listener, local))
}

/// A random seed drawn from the OS (std's hasher keys are OS-random), logged so a run's
/// choices can be replayed.
pub fn os_seed() -> u64 {
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(std::process::id().into());
    let seed = h.finish();
    log::info!("rng seed {seed}");
    seed
}

/// A flag raised by SIGINT or SIGTERM; drivers stop within a tick once it is set.
pub fn stop_on_signal() -> Arc<AtomicBool> {
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        if let Err(e) = signal_hook::flag::register(signal, stop.clone()) {
            log::warn!("cannot handle signal {signal}: {e}");
        }
    }
    stop
}

/// Logs an event in words.
pub fn log_event(who: &str, event: &Event) {
    let text = event.to_string();
    match event {
        // Said once, by the command that ends on it (a mismatch by `get` as it happens).
        Event::Rejected { .. }
        | Event::Failed { .. }
        | Event::NotATracker { .. }
        | Event::NotAuthorised { .. }
        | Event::Mismatch { .. } => {
            log::debug!("{who}: {text}")
        }
        // An operator should hear when the swarm stops handing a holder out.
        Event::HolderReported { reporters, .. }
            if *reporters as usize == drizzle_core::limits::REPORTERS_TO_SUSPEND =>
        {
            log::warn!("{who}: {text}")
        }
        // Retried quietly: the commands say when it matters (see `TrackerWatch`).
        Event::TrackerLost { .. } => log::info!("{who}: {text}"),
        // The machine logged it as it closed the connection.
        Event::ProtocolViolation { .. } => log::debug!("{who}: {text}"),
        Event::Served { .. } | Event::Requested { .. } | Event::Verified { .. } => {
            log::debug!("{who}: {text}")
        }
        _ => log::info!("{who}: {text}"),
    }
}
