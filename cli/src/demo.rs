//! `drizzle demo`: the three reference scenarios on 127.0.0.1 over real TCP, every node a
//! real driver on its own thread with its own directory, narrated as it happens. Each
//! scenario checks that it behaved as specified; the demo exits 0 only if all did.

use crate::exit::{Exit, Fail};
use crate::keys;
use crate::out::say;
use drizzle_core::peer::{DownloadRequest, PeerCommand};
use drizzle_core::{Event, FileName};
use drizzle_mio::{scan_dir, spawn_peer, spawn_tracker, NodeHandle};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{channel, Receiver, Sender};
use std::time::{Duration, Instant};

const CHUNK: u32 = 64 * 1024;
const STEP_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Which {
    Standard,
    Integrity,
    RarestFirst,
    All,
}

/// One scenario: narrates itself and says how it misbehaved, if it did.
type Run = fn(&mut Stage) -> Result<(), String>;

const RUNS: [(Which, &str, Run); 3] = [
    (Which::Standard, "standard", standard),
    (Which::Integrity, "integrity", integrity),
    (Which::RarestFirst, "rarest-first", rarest_first),
];

pub fn demo(which: Which) -> Result<(), Fail> {
    let mut failed = Vec::new();
    for (kind, name, run) in RUNS {
        if which != Which::All && which != kind {
            continue;
        }
        let mut stage = Stage::new()?;
        match run(&mut stage) {
            Ok(()) => stage.say(&format!("{name}: PASSED")),
            Err(why) => {
                stage.say(&format!("{name}: FAILED: {why}"));
                failed.push(name);
            }
        }
        say!("");
    }
    if failed.is_empty() {
        say!("all scenarios behaved as specified");
        Ok(())
    } else {
        Err(Fail::new(
            Exit::Failure,
            format!("demo scenario(s) failed: {}", failed.join(", ")),
        ))
    }
}

/// One scenario's world: a tracker, peers, their directories and the narration.
struct Stage {
    started: Instant,
    dir: tempfile::TempDir,
    /// Removes `dir` should the demo be interrupted.
    _scratch: crate::cleanup::TrackedDir,
    tx: Sender<(String, Event)>,
    rx: Receiver<(String, Event)>,
    names: BTreeMap<SocketAddr, String>,
    seen: Vec<(String, Event)>,
    tracker: Option<NodeHandle>,
    peers: BTreeMap<String, NodeHandle>,
    seed: u64,
    /// The demo runs a closed swarm of its own, as `drizzle tracker` does by default.
    key: drizzle_core::secure::SwarmKey,
}

impl Stage {
    fn new() -> Result<Stage, Fail> {
        let (tx, rx) = channel();
        crate::cleanup::on_interrupt();
        let dir = tempfile::tempdir()?;
        Ok(Stage {
            started: Instant::now(),
            _scratch: crate::cleanup::track_dir(dir.path()),
            dir,
            tx,
            rx,
            names: BTreeMap::new(),
            seen: Vec::new(),
            tracker: None,
            peers: BTreeMap::new(),
            seed: crate::node::os_seed(),
            key: keys::random_key(),
        })
    }

    fn say(&self, text: &str) {
        let t = self.started.elapsed().as_secs_f64();
        say!("{t:>8.3}s  {:<8} {text}", "--");
    }

    fn banner(&self, title: &str) {
        say!("-----\n--- {title} ---\n-----");
    }

    fn start_tracker(&mut self) -> Result<SocketAddr, String> {
        let tx = self.tx.clone();
        let localhost = SocketAddr::from(([127, 0, 0, 1], 0));
        let security = keys::closed(self.key.clone());
        let node = spawn_tracker(localhost, self.seed, security, move |e| {
            let _ = tx.send(("tracker".into(), e.clone()));
        })
        .map_err(|e| format!("tracker: {e}"))?;
        let addr = node.addr;
        self.names.insert(addr, "tracker".into());
        self.say(&format!(
            "tracker started on {addr} (a closed swarm: every connection keyed and encrypted)"
        ));
        self.tracker = Some(node);
        Ok(addr)
    }

    fn dir_of(&self, peer: &str) -> PathBuf {
        self.dir.path().join(peer)
    }

    fn start_peer(&mut self, name: &str) -> Result<(), String> {
        let tracker = self.tracker.as_ref().map(|t| t.addr).ok_or("no tracker")?;
        let dir = self.dir_of(name);
        std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
        let tx = self.tx.clone();
        let who = name.to_string();
        self.seed = self.seed.wrapping_add(1);
        let security = keys::closed(self.key.clone());
        let node = spawn_peer(
            tracker,
            SocketAddr::from(([127, 0, 0, 1], 0)),
            dir.clone(),
            self.seed,
            None,
            |config| config.security = security,
            move |e| {
                let _ = tx.send((who.clone(), e.clone()));
            },
        )
        .map_err(|e| format!("{name}: {e}"))?;
        self.names.insert(node.addr, name.to_string());
        self.say(&format!("{name} started, uploading on {}", node.addr));
        for (file, manifest) in scan_dir(&dir, Some(CHUNK), &mut |_, _| {})
            .map_err(|e| e.to_string())?
            .files
        {
            node.command(PeerCommand::Share {
                name: file,
                manifest,
                have: None,
            });
        }
        self.peers.insert(name.to_string(), node);
        Ok(())
    }

    fn command(&self, peer: &str, cmd: PeerCommand) -> Result<(), String> {
        self.peers
            .get(peer)
            .ok_or(format!("no peer {peer}"))?
            .command(cmd);
        Ok(())
    }

    /// Narrates events until `done` holds for one of them (or time runs out).
    fn wait(&mut self, what: &str, done: impl Fn(&str, &Event) -> bool) -> Result<(), String> {
        let deadline = Instant::now() + STEP_TIMEOUT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let (who, event) = self
                .rx
                .recv_timeout(left)
                .map_err(|_| format!("timed out waiting for {what}"))?;
            self.narrate(&who, &event);
            let hit = done(&who, &event);
            self.seen.push((who, event));
            if hit {
                return Ok(());
            }
        }
    }

    fn narrate(&self, who: &str, event: &Event) {
        if matches!(event, Event::Served { .. } | Event::TrackerConnected { .. }) {
            return;
        }
        let names = &self.names;
        let text = event.describe(&|a| names.get(&a).cloned().unwrap_or_else(|| a.to_string()));
        let t = self.started.elapsed().as_secs_f64();
        say!("{t:>8.3}s  {who:<8} {text}");
    }

    fn list(&mut self, peer: &str) -> Result<(), String> {
        self.command(peer, PeerCommand::List)?;
        self.wait("the file list", |w, e| {
            w == peer && matches!(e, Event::FileList { .. })
        })
    }

    fn ended(who: &str, name: &str) -> impl Fn(&str, &Event) -> bool {
        let (who, name) = (who.to_string(), name.to_string());
        move |w, e| w == who && e.ended_download().is_some_and(|n| n.as_str() == name)
    }

    fn events_of<'a>(&'a self, who: &'a str) -> impl Iterator<Item = &'a Event> + 'a {
        self.seen
            .iter()
            .filter(move |(w, _)| w == who)
            .map(|(_, e)| e)
    }
}

fn file(name: &str) -> Result<FileName, String> {
    FileName::new(name).map_err(|e| e.to_string())
}

/// Deterministic filler bytes, different per `salt`.
fn bytes(len: usize, salt: u64) -> Vec<u8> {
    let mut x = salt.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

fn write(dir: &Path, name: &str, data: &[u8]) -> Result<(), String> {
    std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
    std::fs::write(dir.join(name), data).map_err(|e| e.to_string())
}

fn same_file(a: &Path, b: &Path) -> bool {
    matches!((std::fs::read(a), std::fs::read(b)), (Ok(x), Ok(y)) if x == y)
}

fn standard(s: &mut Stage) -> Result<(), String> {
    s.banner("Standard test: 1 tracker, 2 peers with upload/download");
    s.start_tracker()?;
    let c = CHUNK as usize;
    write(&s.dir_of("peer1"), "A", &bytes(2 * c + c / 2, 1))?;
    write(&s.dir_of("peer1"), "B", &bytes(13 * c + 100, 2))?;
    write(&s.dir_of("peer2"), "C", &bytes(7 * c, 3))?;
    s.start_peer("peer1")?;
    s.wait("peer1 to share B", |w, e| {
        w == "peer1" && matches!(e, Event::Shared { name } if name.as_str() == "B")
    })?;
    s.list("peer1")?;
    s.start_peer("peer2")?;
    s.wait("peer2 to share C", |w, e| {
        w == "peer2" && matches!(e, Event::Shared { .. })
    })?;
    s.list("peer2")?;
    for (peer, name) in [("peer2", "A"), ("peer2", "B"), ("peer1", "C")] {
        s.command(
            peer,
            PeerCommand::Download(DownloadRequest::whole(file(name)?)),
        )?;
    }
    for (peer, name) in [("peer2", "A"), ("peer2", "B"), ("peer1", "C")] {
        if !s.seen.iter().any(|(w, e)| Stage::ended(peer, name)(w, e)) {
            s.wait(
                &format!("{peer} to finish {name}"),
                Stage::ended(peer, name),
            )?;
        }
    }
    for (from, to, name) in [
        ("peer1", "peer2", "A"),
        ("peer1", "peer2", "B"),
        ("peer2", "peer1", "C"),
    ] {
        if !same_file(&s.dir_of(from).join(name), &s.dir_of(to).join(name)) {
            return Err(format!("{to}'s copy of {name} differs from {from}'s"));
        }
    }
    Ok(())
}

fn integrity(s: &mut Stage) -> Result<(), String> {
    s.banner("Integrity test: 2 peers; a file modified after registering must be rejected");
    s.start_tracker()?;
    let c = CHUNK as usize;
    let original = bytes(12 * c, 4);
    write(&s.dir_of("peer1"), "A", &original)?;
    s.start_peer("peer1")?;
    s.wait("peer1 to share A", |w, e| {
        w == "peer1" && matches!(e, Event::Shared { .. })
    })?;
    let mut changed = original.clone();
    for b in changed.iter_mut().skip(6 * c) {
        *b = b.wrapping_add(1);
    }
    write(&s.dir_of("peer1"), "A", &changed)?;
    s.say("peer1's A changes on disk after registering: chunks 6..=11 now differ");
    s.start_peer("peer2")?;
    s.list("peer2")?;
    s.command(
        "peer2",
        PeerCommand::Download(DownloadRequest::whole(file("A")?)),
    )?;
    s.wait("peer2's download of A to end", Stage::ended("peer2", "A"))?;
    let rejected = s.events_of("peer2").find_map(|e| match e {
        Event::Rejected { chunks, .. } => Some(chunks.clone()),
        _ => None,
    });
    let Some(chunks) = rejected else {
        return Err("peer2 did not reject A".into());
    };
    if chunks.is_empty() || chunks.iter().any(|c| *c < 6) {
        return Err(format!(
            "rejection names chunks {chunks:?}; the changed ones are 6..=11"
        ));
    }
    let dir = s.dir_of("peer2");
    if dir.join("A").exists() || dir.join("A.part").exists() {
        return Err("peer2 left A (or A.part) on disk".into());
    }
    s.say(&format!(
        "peer2 rejected A (mismatched chunks {chunks:?}); no file A was written"
    ));
    Ok(())
}

fn rarest_first(s: &mut Stage) -> Result<(), String> {
    s.banner(
        "Rarest first test: peer1 has all chunks, peer2 half; peer3 must fetch the rare half first",
    );
    s.start_tracker()?;
    let chunks = 20u32;
    write(
        &s.dir_of("peer1"),
        "A",
        &bytes(chunks as usize * CHUNK as usize, 5),
    )?;
    s.start_peer("peer1")?;
    s.wait("peer1 to share A", |w, e| {
        w == "peer1" && matches!(e, Event::Shared { .. })
    })?;
    s.start_peer("peer2")?;
    let odd: Vec<u32> = (0..chunks).filter(|c| c % 2 == 1).collect();
    s.say(&format!("peer2 fetches and registers only chunks {odd:?}"));
    let half = DownloadRequest {
        only: Some(odd.clone()),
        ..DownloadRequest::whole(file("A")?)
    };
    s.command("peer2", PeerCommand::Download(half))?;
    s.wait("peer2 to hold its half", Stage::ended("peer2", "A"))?;
    s.start_peer("peer3")?;
    s.command(
        "peer3",
        PeerCommand::Download(DownloadRequest::whole(file("A")?)),
    )?;
    s.wait("peer3's download of A to end", Stage::ended("peer3", "A"))?;
    if !same_file(&s.dir_of("peer1").join("A"), &s.dir_of("peer3").join("A")) {
        return Err("peer3's copy of A differs".into());
    }
    let order: Vec<u32> = s
        .events_of("peer3")
        .filter_map(|e| match e {
            Event::Requested { chunk, .. } => Some(*chunk),
            _ => None,
        })
        .collect();
    if !drizzle_sim::scenarios::rare_before_common(&order, &odd) {
        return Err(format!(
            "a chunk both hold was requested before a rare one: {order:?}"
        ));
    }
    // Each common chunk goes to a random holder, so both are asked. (Who answers first can
    // differ: in the endgame the last chunks are also asked of the other holder.)
    let peer2 = s.peers.get("peer2").map(|p| p.addr);
    let asked_peer2 = s
        .events_of("peer3")
        .filter(|e| matches!(e, Event::Requested { peer, .. } if Some(*peer) == peer2))
        .count();
    if asked_peer2 == 0 {
        return Err("peer3 never asked peer2 for a chunk".into());
    }
    s.say(&format!(
        "peer3 requested {order:?}: every rare (even) chunk first; {asked_peer2} request(s) went to peer2"
    ));
    Ok(())
}
