//! The serving commands: `drizzle tracker` and `drizzle share DIR`, which print their
//! listening address first and then serve until SIGINT/SIGTERM.

use crate::exit::{Exit, Fail};
use crate::http::peer_view::PeerHttp;
use crate::http::tracker_view::TrackerWatcher;
use crate::http::HttpListener;
use crate::keys::{KeyArgs, TrackerKeyArgs};
use crate::node::{bind_and_announce, log_event, os_seed, stop_on_signal, TrackerWatch};
use crate::out::{say, warn_user};
use crate::units;
use drizzle_core::peer::PeerCommand;
use drizzle_core::{Event, FileName, Manifest, Peer, PeerConfig, Tracker, TrackerConfig};
use drizzle_mio::storage::hash_file;
use drizzle_mio::{scan_dir, Driver, FileStore, Flow};
use std::collections::BTreeSet;
use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{mpsc, Arc};

pub fn tracker(
    listen: SocketAddr,
    keys: &TrackerKeyArgs,
    http: Option<SocketAddr>,
) -> Result<(), Fail> {
    let (security, key) = keys.security()?;
    let http = HttpListener::bind(http)?;
    let (listener, _) = bind_and_announce(listen)?;
    match key {
        Some(key) => say!("swarm key {}", key.to_hex()),
        None => say!("swarm open (no key)"),
    }
    let stop = stop_on_signal();
    let mut config = TrackerConfig::new(os_seed());
    config.security = security;
    let machine = Tracker::new(config);
    let mut driver = Driver::new(machine, Some(listener), None, stop)?;
    let waker = driver.waker();
    let handoff = match http {
        Some(http) => Some(http.start(false, move || drop(waker.wake()))?),
        None => None,
    };
    let stats = driver.stats();
    let mut watcher = TrackerWatcher::default();
    driver.run(|tracker, now, event| {
        match event {
            Some(e) => {
                log_event("tracker", e);
                watcher.saw(now, e);
            }
            None => watcher.turn(now, tracker.counters()),
        }
        if let Some(h) = handoff.as_ref().filter(|h| h.wanted()) {
            h.publish(watcher.view(tracker, now, &stats.counts()));
        }
        Flow::Continue
    })?;
    Ok(())
}

/// What `drizzle share` was asked.
#[derive(clap::Args, Debug)]
pub struct ShareArgs {
    /// The directory to share; each file is named by its path relative to DIR.
    pub dir: PathBuf,
    /// The tracker's address, HOST:PORT or IP:PORT.
    #[arg(long, value_parser = units::parse_addr)]
    pub tracker: SocketAddr,
    /// Address to serve other peers on; connections to the tracker leave from its IP.
    #[arg(long, default_value = "0.0.0.0:0", value_parser = units::parse_addr)]
    pub listen: SocketAddr,
    /// Address other peers should use to reach this one (NAT, port forwarding): its
    /// port is registered instead of the listening port.
    #[arg(long, value_parser = units::parse_addr)]
    pub advertise: Option<SocketAddr>,
    /// Chunk size, e.g. 1MiB or 65536 (64 B to 16 MiB). Default: 1 MiB, smaller for a file
    /// under 128 MiB (128 chunks at least, of 256 KiB at least), larger past 256 GiB. A
    /// file whose name the tracker holds for a file of its size in other chunks is hashed
    /// again in those and offered once more (the same bytes join that swarm).
    #[arg(long, value_parser = units::parse_chunk_size)]
    pub chunk_size: Option<u32>,
    /// Upload cap, e.g. 25MB/s (no cap when left out).
    #[arg(long, value_parser = units::parse_rate)]
    pub upload_limit: Option<u64>,
    /// Serve /metrics (Prometheus) and /api/peer (JSON) on this address (port 0 picks a
    /// free one; prints `http on IP:PORT`).
    #[arg(long, value_parser = units::parse_addr)]
    pub http: Option<SocketAddr>,
    #[command(flatten)]
    pub keys: KeyArgs,
}

pub fn share(args: ShareArgs) -> Result<(), Fail> {
    let dir = args.dir.as_path();
    let security = args.keys.security()?;
    if !dir.is_dir() {
        let what = match dir.metadata() {
            Ok(_) => "is not a directory".to_string(),
            Err(e) => format!("cannot be read: {e}"),
        };
        return Err(Fail::new(
            Exit::Failure,
            format!("{} {what}", dir.display()),
        ));
    }
    let http = HttpListener::bind(args.http)?;
    let (listener, local) = bind_and_announce(args.listen)?;
    let stop = stop_on_signal();
    // On a terminal, a spinner says which file is being hashed (big trees take a while).
    let spinner = std::io::stderr().is_terminal().then(|| {
        let bar = indicatif::ProgressBar::new_spinner();
        bar.enable_steady_tick(std::time::Duration::from_millis(100));
        bar
    });
    let (mut count, mut bytes) = (0u64, 0u64);
    let scanned = scan_dir(dir, args.chunk_size, &mut |name, size| {
        log::info!("hashing {name} ({size} bytes)");
        if let Some(bar) = &spinner {
            bar.set_message(format!(
                "hashing {name} ({count} files, {bytes} bytes done)"
            ));
        }
        count += 1;
        bytes += size;
    });
    if let Some(bar) = spinner {
        bar.finish_and_clear();
    }
    let scan = scanned
        .map_err(|e| Fail::new(Exit::Failure, format!("cannot read {}: {e}", dir.display())))?;
    for (path, why) in &scan.skipped {
        warn_user!("drizzle: not sharing {}: {why}", path.display());
    }
    let total: u64 = scan.files.iter().map(|(_, m)| m.size).sum();
    say!(
        "sharing {} file(s), {total} bytes, from {}",
        scan.files.len(),
        dir.display()
    );
    let mut config = PeerConfig::new(args.tracker, args.advertise.unwrap_or(local), os_seed());
    config.security = security;
    let mut peer = Peer::new(config);
    let now = drizzle_core::Timestamp::ZERO;
    for (name, manifest) in scan.files {
        let cmd = PeerCommand::Share {
            name,
            manifest,
            have: None,
        };
        peer.command(now, cmd)
            .map_err(|e| Fail::new(Exit::Failure, e.to_string()))?;
    }
    let mut driver = Driver::new(peer, Some(listener), Some(FileStore::new(dir)), stop)?;
    driver.set_upload_limit(args.upload_limit);
    driver.set_local_ip(Some(local.ip()));
    let mut view = PeerHttp::start(http, false, &driver)?;
    let mut watch = TrackerWatch::new(args.tracker);
    let mut outcome = Ok(());
    let mut recuts = Recuts::new(dir, &driver);
    driver.run(|peer, now, event| {
        for (name, manifest) in recuts.done() {
            let cmd = PeerCommand::Share {
                name,
                manifest,
                have: None,
            };
            if let Err(e) = peer.command(now, cmd) {
                warn_user!("drizzle: cannot share again: {e}");
            }
        }
        view.see(peer, now, event);
        if let Err(fail) = watch.see(event) {
            outcome = Err(fail);
            return Flow::Stop;
        }
        match event {
            Some(Event::Shared { name }) => say!("shared {name}"),
            Some(Event::ShareRefused { name, reason }) => say!("refused {name}: {reason}"),
            Some(Event::ShareRecut { name, chunk_size }) => recuts.start(name, *chunk_size),
            Some(Event::TrackerLost {
                tracker,
                retry_in_ms,
            }) if watch.was_up() => {
                warn_user!("drizzle: lost the tracker {tracker}; retrying in {retry_in_ms} ms")
            }
            Some(Event::Withdrawn { name, reason }) => {
                say!("withdrawn {name}: {reason}; restart share to offer it again")
            }
            Some(e) => log_event("share", e),
            None => {}
        }
        Flow::Continue
    })?;
    outcome
}

/// Files hashed again, off the event loop, in the chunks the tracker holds their names in
/// (`Event::ShareRecut`): a large file takes a while, and the loop keeps serving meanwhile.
/// Once per name: a tracker that names another cut each time cannot keep us hashing.
struct Recuts {
    dir: PathBuf,
    started: BTreeSet<FileName>,
    wake: Arc<dyn Fn() + Send + Sync>,
    sender: mpsc::Sender<(FileName, Manifest)>,
    receiver: mpsc::Receiver<(FileName, Manifest)>,
}

impl Recuts {
    fn new<M: drizzle_core::Machine>(dir: &Path, driver: &Driver<M>) -> Recuts {
        let (sender, receiver) = mpsc::channel();
        let waker = driver.waker();
        Recuts {
            dir: dir.to_path_buf(),
            started: BTreeSet::new(),
            wake: Arc::new(move || drop(waker.wake())),
            sender,
            receiver,
        }
    }

    fn start(&mut self, name: &FileName, chunk_size: u32) {
        if !self.started.insert(name.clone()) {
            return log::warn!("{name}: hashed again once already; left refused");
        }
        say!("hashing {name} again in chunks of {chunk_size} bytes, as the tracker holds it");
        let (name, path) = (name.clone(), self.dir.join(name.as_str()));
        let (sender, wake) = (self.sender.clone(), self.wake.clone());
        std::thread::spawn(move || match hash_file(&path, chunk_size) {
            Ok(manifest) => {
                // The loop gone, nobody wants the manifest.
                if sender.send((name, manifest)).is_ok() {
                    wake();
                }
            }
            Err(e) => warn_user!("drizzle: cannot hash {name} again: {e}"),
        });
    }

    fn done(&self) -> Vec<(FileName, Manifest)> {
        self.receiver.try_iter().collect()
    }
}
