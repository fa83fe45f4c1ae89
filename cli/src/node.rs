//! What every long-running command needs: binding the listen address (and saying where),
//! an OS-drawn seed for the machine's RNG, a stop flag raised by SIGINT/SIGTERM, and event
//! narration for logs.

use crate::exit::{Exit, Fail};
use drizzle_core::Event;
use std::hash::{BuildHasher, Hasher};
use std::io::Write;
use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

/// Binds `addr` and prints the contract's first line, `listening on IP:PORT`.
pub fn bind_and_announce(addr: SocketAddr) -> Result<(TcpListener, SocketAddr), Fail> {
    let listener = TcpListener::bind(addr)
        .map_err(|e| Fail::new(Exit::Failure, format!("cannot listen on {addr}: {e}")))?;
    let local = listener.local_addr()?;
    println!("listening on {local}");
    let _ = std::io::stdout().flush();
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
    let text = drizzle_sim::trace::describe(event, &|a| a.to_string());
    match event {
        Event::Mismatch { .. } | Event::Rejected { .. } | Event::Failed { .. } => {
            log::error!("{who}: {text}")
        }
        Event::ProtocolViolation { .. } | Event::TrackerLost { .. } => log::warn!("{who}: {text}"),
        Event::Served { .. } | Event::Requested { .. } | Event::Verified { .. } => {
            log::debug!("{who}: {text}")
        }
        _ => log::info!("{who}: {text}"),
    }
}
