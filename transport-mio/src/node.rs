//! A tracker or peer running on its own thread, for programs that run several nodes in one
//! process (`drizzle demo`, tests): commands go in through a channel, events come out
//! through a callback, and dropping the handle stops the node.

use crate::driver::{Driver, Flow};
use crate::storage::FileStore;
use drizzle_core::machine::Event;
use drizzle_core::machine::Machine;
use drizzle_core::peer::PeerCommand;
use drizzle_core::secure::Security;
use drizzle_core::{Peer, PeerConfig, Timestamp, Tracker, TrackerConfig};
use mio::Waker;
use std::io;
use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{channel, Sender};
use std::sync::Arc;
use std::thread::JoinHandle;

/// A running node. Dropping it stops the node and waits for its thread.
#[derive(Debug)]
pub struct NodeHandle {
    /// The address it listens on.
    pub addr: SocketAddr,
    commands: Sender<PeerCommand>,
    waker: Arc<Waker>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<io::Result<()>>>,
}

impl NodeHandle {
    /// Gives a peer a command (ignored by a tracker).
    pub fn command(&self, cmd: PeerCommand) {
        if self.commands.send(cmd).is_ok() {
            let _ = self.waker.wake();
        }
    }

    /// Stops the node and waits for it.
    pub fn stop(mut self) -> io::Result<()> {
        self.shutdown()
    }

    fn shutdown(&mut self) -> io::Result<()> {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.waker.wake();
        match self.thread.take().map(JoinHandle::join) {
            Some(Ok(result)) => result,
            Some(Err(_)) => Err(io::Error::other("node thread panicked")),
            None => Ok(()),
        }
    }
}

impl Drop for NodeHandle {
    fn drop(&mut self) {
        let _ = self.shutdown();
    }
}

/// Starts a tracker listening on `listen`, open or closed as `security` says.
pub fn spawn_tracker(
    listen: SocketAddr,
    seed: u64,
    security: Security,
    on_event: impl FnMut(&Event) + Send + 'static,
) -> io::Result<NodeHandle> {
    let listener = TcpListener::bind(listen)?;
    let addr = listener.local_addr()?;
    let stop = Arc::new(AtomicBool::new(false));
    let mut config = TrackerConfig::new(seed);
    config.security = security;
    let tracker = Tracker::new(config);
    let driver = Driver::new(tracker, Some(listener), None, stop.clone())?;
    // A tracker takes no commands.
    Ok(start(driver, addr, stop, |_, _, _| {}, on_event))
}

/// Starts a peer with its files in `dir`, listening on `listen`. `tune` adjusts its config.
pub fn spawn_peer(
    tracker: SocketAddr,
    listen: SocketAddr,
    dir: PathBuf,
    seed: u64,
    upload_limit: Option<u64>,
    tune: impl FnOnce(&mut PeerConfig),
    on_event: impl FnMut(&Event) + Send + 'static,
) -> io::Result<NodeHandle> {
    let listener = TcpListener::bind(listen)?;
    let addr = listener.local_addr()?;
    let mut config = PeerConfig::new(tracker, addr, seed);
    tune(&mut config);
    let stop = Arc::new(AtomicBool::new(false));
    let store = FileStore::new(dir);
    let mut driver = Driver::new(Peer::new(config), Some(listener), Some(store), stop.clone())?;
    driver.set_upload_limit(upload_limit);
    let apply = |peer: &mut Peer, now, cmd| {
        if let Err(e) = peer.command(now, cmd) {
            log::warn!("command refused: {e}");
        }
    };
    Ok(start(driver, addr, stop, apply, on_event))
}

/// Runs `driver` on a thread: commands from the handle are applied on each loop turn,
/// events go to `on_event`.
fn start<M: Machine + Send + 'static>(
    mut driver: Driver<M>,
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    mut apply: impl FnMut(&mut M, Timestamp, PeerCommand) + Send + 'static,
    mut on_event: impl FnMut(&Event) + Send + 'static,
) -> NodeHandle {
    let (commands, inbox) = channel::<PeerCommand>();
    let waker = driver.waker();
    let thread = std::thread::spawn(move || {
        driver.run(|machine, now, event| {
            match event {
                Some(e) => on_event(e),
                None => {
                    while let Ok(cmd) = inbox.try_recv() {
                        apply(machine, now, cmd);
                    }
                }
            }
            Flow::Continue
        })
    });
    NodeHandle {
        addr,
        commands,
        waker,
        stop,
        thread: Some(thread),
    }
}
