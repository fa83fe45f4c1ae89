//! The client commands: `drizzle list` asks the tracker for its files; `drizzle get`
//! downloads one (resuming an interrupted download), serving what it holds while it runs.

use crate::exit::{Exit, Fail};
use crate::node::{log_event, os_seed, stop_on_signal};
use crate::progress::{Display, Tally};
use drizzle_core::machine::FailKind;
use drizzle_core::peer::{DownloadRequest, PeerCommand};
use drizzle_core::{Event, FileName, Peer, PeerConfig, Root};
use drizzle_mio::{Driver, FileStore, Flow};
use serde_json::json;
use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// How long a client waits for the tracker to accept its connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

pub fn list(tracker: SocketAddr, json_out: bool) -> Result<(), Fail> {
    let listen = SocketAddr::from(([0, 0, 0, 0], 0));
    let mut peer = Peer::new(PeerConfig::new(tracker, listen, os_seed()));
    peer.command(drizzle_core::Timestamp::ZERO, PeerCommand::List)
        .map_err(|e| Fail::new(Exit::Failure, e.to_string()))?;
    let mut driver = Driver::new(peer, None, None, stop_on_signal())?;
    let started = Instant::now();
    let mut outcome = Err(Fail::new(Exit::Failure, "interrupted"));
    let mut connected = false;
    driver.run(|_, _, event| match event {
        Some(Event::TrackerConnected { .. }) => {
            connected = true;
            Flow::Continue
        }
        Some(Event::FileList { files, more }) => {
            for f in files {
                if json_out {
                    let line = json!({"name": f.name, "size": f.size, "chunk_size": f.chunk_size,
                        "chunks": f.chunks, "root": f.root, "peers": f.peers});
                    println!("{line}");
                } else {
                    println!(
                        "{}  {} bytes  {} chunks  {} peer(s)  root {}",
                        f.name, f.size, f.chunks, f.peers, f.root
                    );
                }
            }
            if files.is_empty() && !json_out {
                println!("(no files)");
            }
            if *more {
                eprintln!(
                    "drizzle: the tracker has more files than one answer carries; the list is cut"
                );
            }
            outcome = Ok(());
            Flow::Stop
        }
        None if !connected && started.elapsed() > CONNECT_TIMEOUT => {
            outcome = Err(unreachable_tracker(tracker));
            Flow::Stop
        }
        _ => Flow::Continue,
    })?;
    outcome
}

fn unreachable_tracker(tracker: SocketAddr) -> Fail {
    Fail::new(
        Exit::Unavailable,
        format!("tracker {tracker} is unreachable"),
    )
}

/// What `drizzle get` was asked.
#[derive(Debug)]
pub struct GetArgs {
    pub name: String,
    pub tracker: SocketAddr,
    pub out: PathBuf,
    pub listen: SocketAddr,
    pub expect: Option<String>,
    pub chunks: Option<Vec<u32>>,
    pub serve: bool,
    pub upload_limit: Option<u64>,
    pub json: bool,
}

pub fn get(args: GetArgs) -> Result<(), Fail> {
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
    std::fs::create_dir_all(&args.out).map_err(|e| {
        Fail::new(
            Exit::Failure,
            format!("cannot create {}: {e}", args.out.display()),
        )
    })?;
    let listener = TcpListener::bind(args.listen).map_err(|e| {
        Fail::new(
            Exit::Failure,
            format!("cannot listen on {}: {e}", args.listen),
        )
    })?;
    let local = listener.local_addr()?;
    let store = FileStore::new(&args.out);
    let path = store.final_path(&name);
    let resume = store.resume_info(&name);
    if let Some((_, chunks)) = &resume {
        log::info!(
            "resuming {name}: {} chunk(s) already verified",
            chunks.len()
        );
    }
    let request = DownloadRequest {
        name: name.clone(),
        expect,
        only: args.chunks.clone(),
        resume,
    };
    let mut peer = Peer::new(PeerConfig::new(args.tracker, local, os_seed()));
    peer.command(
        drizzle_core::Timestamp::ZERO,
        PeerCommand::Download(request),
    )
    .map_err(|e| Fail::new(Exit::Failure, e.to_string()))?;
    let mut driver = Driver::new(peer, Some(listener), Some(store), stop_on_signal())?;
    driver.set_upload_limit(args.upload_limit);

    let started = Instant::now();
    let mut display = Display::new(args.json);
    let mut tally = Tally::default();
    let mut connected = false;
    let mut outcome: Option<Result<(), Fail>> = None;
    driver.run(|_, _, event| {
        let Some(event) = event else {
            if !connected && started.elapsed() > CONNECT_TIMEOUT && outcome.is_none() {
                outcome = Some(Err(unreachable_tracker(args.tracker)));
                return Flow::Stop;
            }
            return Flow::Continue;
        };
        log_event("get", event);
        display.show(event, &mut tally, &path, started.elapsed().as_secs_f64());
        let ended = match event {
            Event::TrackerConnected { .. } => {
                connected = true;
                None
            }
            Event::Done { name: n, .. } if *n == name => Some(Ok(())),
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
            } if *n == name => Some(Err(failure(*kind, reason))),
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

fn failure(kind: FailKind, reason: &str) -> Fail {
    let exit = match kind {
        FailKind::RootMismatch => Exit::Integrity,
        FailKind::NotFound | FailKind::Unavailable => Exit::Unavailable,
        FailKind::BadRequest => Exit::Usage,
        FailKind::Storage => Exit::Failure,
    };
    Fail::new(exit, reason.to_string())
}
