//! The client commands: `drizzle list` asks the tracker for its files; `drizzle get`
//! downloads one (checking what an earlier run left, never replacing the user's file
//! unless told), serving what it holds while it runs.

use crate::exit::{Exit, Fail};
use crate::http::peer_view::PeerHttp;
use crate::http::HttpListener;
use crate::keys::KeyArgs;
use crate::node::{log_event, os_seed, stop_on_signal, TrackerWatch};
use crate::out::{self, say};
use crate::progress::{Display, Tally};
use crate::units;
use drizzle_core::machine::FailKind;
use drizzle_core::peer::{DownloadRequest, PeerCommand};
use drizzle_core::{Event, FileName, Peer, PeerConfig, Root};
use drizzle_mio::{Driver, FileStore, Flow};
use serde_json::json;
use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::time::Instant;

pub fn list(tracker: SocketAddr, json_out: bool, keys: &KeyArgs) -> Result<(), Fail> {
    let listen = SocketAddr::from(([0, 0, 0, 0], 0));
    let mut config = PeerConfig::new(tracker, listen, os_seed());
    config.security = keys.security()?;
    let mut peer = Peer::new(config);
    peer.command(drizzle_core::Timestamp::ZERO, PeerCommand::List)
        .map_err(|e| Fail::new(Exit::Failure, e.to_string()))?;
    let mut driver = Driver::new(peer, None, None, stop_on_signal())?;
    let mut watch = TrackerWatch::new(tracker);
    let mut outcome = Err(Fail::new(Exit::Failure, "interrupted"));
    let mut listed_any = false;
    driver.run(|_, _, event| {
        if let Err(fail) = watch.see(event) {
            outcome = Err(fail);
            return Flow::Stop;
        }
        let Some(Event::FileList { files, more }) = event else {
            return Flow::Continue;
        };
        out::lines(|w| {
            for f in files {
                if json_out {
                    let line = json!({"name": f.name, "size": f.size, "chunk_size": f.chunk_size,
                        "chunks": f.chunks, "root": f.root, "peers": f.peers});
                    writeln!(w, "{line}")?;
                } else {
                    let (name, size, chunks, peers) = (&f.name, f.size, f.chunks, f.peers);
                    writeln!(
                        w,
                        "{name}  {size} bytes  {chunks} chunks  {peers} peer(s)  root {}",
                        f.root
                    )?;
                }
            }
            Ok(())
        });
        if *more {
            listed_any |= !files.is_empty();
            return Flow::Continue; // the next page is on its way
        }
        if files.is_empty() && !listed_any && !json_out {
            say!("(no files)");
        }
        outcome = Ok(());
        Flow::Stop
    })?;
    outcome
}

/// What `drizzle get` was asked.
#[derive(clap::Args, Debug)]
pub struct GetArgs {
    /// The file's name as `list` shows it (a relative path).
    pub name: String,
    /// The tracker's address, HOST:PORT or IP:PORT.
    #[arg(long, value_parser = units::parse_addr)]
    pub tracker: SocketAddr,
    /// Directory to write NAME into (created if missing).
    #[arg(long, default_value = ".")]
    pub out: PathBuf,
    /// Address to serve other peers on while downloading.
    #[arg(long, default_value = "0.0.0.0:0", value_parser = units::parse_addr)]
    pub listen: SocketAddr,
    /// Address other peers should use to reach this one (see `share --advertise`).
    #[arg(long, value_parser = units::parse_addr)]
    pub advertise: Option<SocketAddr>,
    /// Refuse the file unless its root (from `list`) is this.
    #[arg(long)]
    pub expect: Option<String>,
    /// Only these chunks, e.g. 0,2,5-9 (the file stays partial, but served).
    #[arg(long, value_parser = units::parse_chunk_list)]
    pub chunks: Option<units::ChunkList>,
    /// Keep serving after the download until SIGINT/SIGTERM.
    #[arg(long)]
    pub serve: bool,
    /// Upload cap while serving, e.g. 25MB/s.
    #[arg(long, value_parser = units::parse_rate)]
    pub upload_limit: Option<u64>,
    /// Replace DIR/NAME if it exists with other content (never done otherwise).
    #[arg(long)]
    pub force: bool,
    /// Threads that verify received chunks (default: one per core but one).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=256))]
    pub hash_threads: Option<u64>,
    /// Give up (exit 4) when no chunk has arrived for this many seconds.
    #[arg(long, default_value = "30", value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub stall_timeout: u64,
    /// NDJSON events on stdout.
    #[arg(long)]
    pub json: bool,
    /// Serve /metrics (Prometheus) and /api/peer (JSON) on this address (port 0 picks a
    /// free one; prints `http on IP:PORT`).
    #[arg(long, value_parser = units::parse_addr)]
    pub http: Option<SocketAddr>,
    #[command(flatten)]
    pub keys: KeyArgs,
}

/// Runs `get`; with `--json`, every failure is also an event, `failed`, the last line.
pub fn get(args: GetArgs) -> Result<(), Fail> {
    let json = args.json;
    let result = fetch(args);
    if let (true, Err(f)) = (json, &result) {
        say!(
            "{}",
            json!({"event": "failed", "code": f.exit as u8, "reason": f.message})
        );
    }
    result
}

fn fetch(args: GetArgs) -> Result<(), Fail> {
    let name = FileName::new(args.name.clone()).map_err(|e| {
        Fail::new(
            Exit::Usage,
            format!("invalid file name {:?}: {e}", args.name),
        )
    })?;
    let expect = match &args.expect {
        Some(hex) => Some(Root::from_hex(&hex.to_ascii_lowercase()).ok_or_else(|| {
            Fail::new(
                Exit::Usage,
                format!("--expect {hex:?} is not 64 hex digits"),
            )
        })?),
        None => None,
    };
    let security = args.keys.security()?;
    std::fs::create_dir_all(&args.out).map_err(|e| {
        // create_dir_all says only "File exists" of a file in the way.
        let why = if args.out.exists() && !args.out.is_dir() {
            "it is not a directory".to_string()
        } else {
            e.to_string()
        };
        Fail::new(
            Exit::Failure,
            format!("cannot use --out {}: {why}", args.out.display()),
        )
    })?;
    let store = FileStore::new(&args.out).replacing(args.force);
    let path = store.final_path(&name);
    let cannot = |e: std::io::Error| Fail::new(Exit::Failure, format!("{}: {e}", path.display()));
    let _lock = store.lock(&name).map_err(cannot)?.ok_or_else(|| {
        Fail::new(
            Exit::Failure,
            format!(
                "another drizzle get is writing {} (its lock is {}.part.lock); wait for it or stop it",
                path.display(),
                path.display()
            ),
        )
    })?;
    let on_disk = store.on_disk(&name).map_err(cannot)?;
    let http = HttpListener::bind(args.http)?;
    let listener = TcpListener::bind(args.listen).map_err(|e| {
        Fail::new(
            Exit::Failure,
            format!("cannot listen on {}: {e}", args.listen),
        )
    })?;
    let local = listener.local_addr()?;
    let request = DownloadRequest {
        name: name.clone(),
        expect,
        only: args.chunks.as_ref().map(|c| c.0.clone()),
        on_disk,
        replace: args.force,
    };
    let mut config = PeerConfig::new(args.tracker, args.advertise.unwrap_or(local), os_seed());
    config.unavailable_after_ms = args.stall_timeout.saturating_mul(1000);
    config.security = security;
    let mut peer = Peer::new(config);
    peer.command(
        drizzle_core::Timestamp::ZERO,
        PeerCommand::Download(request),
    )
    .map_err(|e| Fail::new(Exit::Failure, e.to_string()))?;
    let part = store.part_path(&name);
    let mut driver = Driver::new(peer, Some(listener), Some(store), stop_on_signal())?;
    if let Some(threads) = args.hash_threads {
        driver.set_hash_threads(threads as usize);
    }
    driver.set_upload_limit(args.upload_limit);
    driver.set_local_ip(Some(local.ip()));
    let mut view = PeerHttp::start(http, args.json, &driver)?;

    let started = Instant::now();
    let mut display = Display::new(args.json);
    let mut tally = Tally::default();
    let mut watch = TrackerWatch::new(args.tracker);
    let mut outcome: Option<Result<(), Fail>> = None;
    driver.run(|peer, now, event| {
        view.see(peer, now, event);
        if let Err(fail) = watch.see(event) {
            if outcome.is_none() {
                outcome = Some(Err(fail));
                return Flow::Stop;
            }
        }
        let Some(event) = event else {
            return Flow::Continue;
        };
        log_event("get", event);
        let shown = match event {
            Event::Done {
                complete: false, ..
            } => &part,
            _ => &path,
        };
        display.show(event, &mut tally, shown, started.elapsed().as_secs_f64());
        let ended = match event {
            Event::Done { name: n, .. } | Event::AlreadyComplete { name: n, .. } if *n == name => {
                Some(Ok(()))
            }
            Event::Rejected {
                name: n, chunks, ..
            } if *n == name => Some(Err(Fail::new(
                Exit::Integrity,
                format!("{name} rejected: hash mismatch in chunk(s) {chunks:?}"),
            ))),
            Event::Failed {
                name: n,
                kind,
                reason,
            } if *n == name => Some(Err(failure(*kind, &path, reason))),
            _ => None,
        };
        match ended {
            Some(result) => {
                let keep_serving = args.serve && result.is_ok();
                outcome = Some(result);
                if keep_serving {
                    Flow::Continue
                } else {
                    Flow::Stop
                }
            }
            None => Flow::Continue,
        }
    })?;
    outcome.unwrap_or_else(|| {
        Err(Fail::new(
            Exit::Failure,
            format!("interrupted; run the same get again to resume {name}"),
        ))
    })
}

fn failure(kind: FailKind, path: &std::path::Path, reason: &str) -> Fail {
    let exit = match kind {
        FailKind::RootMismatch => Exit::Integrity,
        FailKind::NotFound | FailKind::Unavailable | FailKind::Stalled => Exit::Unavailable,
        FailKind::BadRequest => Exit::Usage,
        FailKind::Storage => Exit::Failure,
        FailKind::Exists => {
            return Fail::new(Exit::Failure, format!("{}: {reason}", path.display()))
        }
    };
    Fail::new(exit, reason.to_string())
}
