//! The three reference scenarios of DESIGN.md, run in the simulator: standard exchange,
//! integrity (a file changed after registering is rejected), and rarest-first ordering.
//! Each returns its trace and the list of ways it failed to behave as specified.

use crate::trace::TraceLine;
use crate::world::{NodeId, World, WorldConfig};
use drizzle_core::machine::Event;
use drizzle_core::peer::{DownloadRequest, PeerCommand};
use drizzle_core::FileName;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Virtual time a scenario may take before it counts as stalled.
const DEADLINE_MS: u64 = 120_000;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scenario {
    Standard,
    Integrity,
    RarestFirst,
}

impl Scenario {
    pub const ALL: [Scenario; 3] = [
        Scenario::Standard,
        Scenario::Integrity,
        Scenario::RarestFirst,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Scenario::Standard => "standard",
            Scenario::Integrity => "integrity",
            Scenario::RarestFirst => "rarest-first",
        }
    }

    pub fn from_name(name: &str) -> Option<Scenario> {
        Scenario::ALL.into_iter().find(|s| s.name() == name)
    }
}

/// What a scenario run showed.
#[derive(Debug)]
pub struct ScenarioReport {
    pub scenario: Scenario,
    pub seed: u64,
    pub trace: Vec<TraceLine>,
    /// Empty when the scenario behaved as specified.
    pub failures: Vec<String>,
    pub virtual_ms: u64,
    pub steps: u64,
    /// Whether the swarm was closed (keyed and sealed), as scenarios run by default.
    pub closed: bool,
}

impl ScenarioReport {
    pub fn passed(&self) -> bool {
        self.failures.is_empty()
    }

    /// The command that reproduces this run.
    pub fn reproduce(&self) -> String {
        let open = if self.closed { "" } else { " --open" };
        format!(
            "drizzle sim {} --seed {}{open}",
            self.scenario.name(),
            self.seed
        )
    }
}

/// Runs `scenario` from `seed`, in a `closed` swarm (every connection keyed and sealed
/// with the real cipher) or an open one.
pub fn run_scenario(scenario: Scenario, seed: u64, closed: bool) -> ScenarioReport {
    let mut world = World::new(WorldConfig {
        closed,
        ..WorldConfig::new(seed)
    });
    let mut data_rng = ChaCha8Rng::seed_from_u64(seed ^ 0x5eed_da7a);
    let mut failures = match scenario {
        Scenario::Standard => standard(&mut world, &mut data_rng),
        Scenario::Integrity => integrity(&mut world, &mut data_rng),
        Scenario::RarestFirst => rarest_first(&mut world, &mut data_rng),
    };
    failures.extend(world.violations.iter().cloned());
    let verdict = if failures.is_empty() {
        "PASSED"
    } else {
        "FAILED"
    };
    world.note(format!("{} scenario {verdict}", scenario.name()));
    for f in &failures {
        world.note(format!("failure: {f}"));
    }
    ScenarioReport {
        scenario,
        seed,
        virtual_ms: world.now_ms(),
        steps: world.steps,
        closed,
        trace: std::mem::take(&mut world.trace),
        failures,
    }
}

fn standard(w: &mut World, rng: &mut ChaCha8Rng) -> Vec<String> {
    let chunk = w.config.chunk_size as usize;
    w.note("--- Standard: 1 tracker, 2 peers; peer1 shares A and B, peer2 shares C ---");
    let p1 = w.add_peer("peer1");
    let mut failures = Vec::new();
    share(
        w,
        p1,
        "A",
        random_bytes(rng, 2 * chunk + chunk / 2),
        &mut failures,
    );
    share(
        w,
        p1,
        "B",
        random_bytes(rng, 13 * chunk + 100),
        &mut failures,
    );
    list(w, p1);
    let p2 = w.add_peer("peer2");
    share(w, p2, "C", random_bytes(rng, 7 * chunk), &mut failures);
    list(w, p2);
    w.note("--- each peer downloads what it lacks from the other ---");
    for (node, name) in [(p2, "A"), (p2, "B"), (p1, "C")] {
        download(
            w,
            node,
            DownloadRequest::whole(file_name(name)),
            &mut failures,
        );
    }
    let all_done = |w: &World| {
        [(p2, "A"), (p2, "B"), (p1, "C")]
            .iter()
            .all(|(n, f)| ended(w, *n, f).is_some())
    };
    if !w.run_until(DEADLINE_MS, all_done) {
        failures.push("downloads did not finish".into());
    }
    for (node, name) in [(p2, "A"), (p2, "B"), (p1, "C")] {
        expect_identical(w, node, name, &mut failures);
    }
    failures
}

fn integrity(w: &mut World, rng: &mut ChaCha8Rng) -> Vec<String> {
    let chunk = w.config.chunk_size as usize;
    let chunks = 12u32;
    w.note("--- Integrity: peer1 shares A, then A changes on its disk; peer2 must reject A ---");
    let p1 = w.add_peer("peer1");
    let mut failures = Vec::new();
    share(
        w,
        p1,
        "A",
        random_bytes(rng, chunks as usize * chunk),
        &mut failures,
    );
    let p2 = w.add_peer("peer2");
    list(w, p2);
    let changed: Vec<u32> = (chunks / 2..chunks).collect();
    if let Some(data) = w
        .storage_mut(p1)
        .and_then(|s| s.files.get_mut(&file_name("A")))
    {
        let start = changed.first().map_or(0, |c| *c as usize * chunk) as u64;
        data.modify(start, data.len(), |b| b.wrapping_add(1));
    }
    w.note(format!(
        "peer1's copy of A changes on disk: chunks {changed:?} now differ"
    ));
    download(w, p2, DownloadRequest::whole(file_name("A")), &mut failures);
    w.run_until(DEADLINE_MS, |w| ended(w, p2, "A").is_some());
    match ended(w, p2, "A") {
        Some(Event::Rejected { chunks, .. }) => {
            if chunks.is_empty() || chunks.iter().any(|c| !changed.contains(c)) {
                failures.push(format!(
                    "rejection names chunks {chunks:?}, changed were {changed:?}"
                ));
            }
        }
        other => failures.push(format!(
            "peer2's download of A ended with {other:?}, not a rejection"
        )),
    }
    let mismatches = w
        .events_of(p2)
        .filter(|e| matches!(e, Event::Mismatch { .. }))
        .count();
    if mismatches == 0 {
        failures.push("no hash mismatch was reported".into());
    }
    let disk = w.storage(p2);
    if disk.is_some_and(|s| s.files.contains_key(&file_name("A"))) {
        failures.push("a file A exists under its final name on peer2".into());
    }
    if disk.is_some_and(|s| s.parts.contains_key(&file_name("A"))) {
        failures.push("the rejected download left its .part file".into());
    }
    failures
}

fn rarest_first(w: &mut World, rng: &mut ChaCha8Rng) -> Vec<String> {
    let chunk = w.config.chunk_size as usize;
    let chunks = 16u32;
    w.note("--- Rarest first: peer1 has all of A, peer2 half; peer3 must fetch the rare half first ---");
    let p1 = w.add_peer("peer1");
    let mut failures = Vec::new();
    share(
        w,
        p1,
        "A",
        random_bytes(rng, chunks as usize * chunk),
        &mut failures,
    );
    let p2 = w.add_peer("peer2");
    let odd: Vec<u32> = (0..chunks).filter(|c| c % 2 == 1).collect();
    w.note(format!("peer2 fetches and registers only chunks {odd:?}"));
    let half = DownloadRequest {
        only: Some(odd.clone()),
        ..DownloadRequest::whole(file_name("A"))
    };
    download(w, p2, half, &mut failures);
    w.run_until(DEADLINE_MS, |w| ended(w, p2, "A").is_some());
    if !matches!(
        ended(w, p2, "A"),
        Some(Event::Done {
            complete: false,
            ..
        })
    ) {
        failures.push("peer2 did not obtain its half of A".into());
    }
    let p3 = w.add_peer("peer3");
    w.note("peer3 downloads A: chunks held only by peer1 are rarer and must be requested first");
    download(w, p3, DownloadRequest::whole(file_name("A")), &mut failures);
    w.run_until(DEADLINE_MS, |w| ended(w, p3, "A").is_some());
    expect_identical(w, p3, "A", &mut failures);
    let order: Vec<u32> = w
        .events_of(p3)
        .filter_map(|e| match e {
            Event::Requested { chunk, .. } => Some(*chunk),
            _ => None,
        })
        .collect();
    if !rare_before_common(&order, &odd) {
        failures.push(format!(
            "peer3 requested a common chunk before a rare one: {order:?}"
        ));
    }
    let served_by = |node: NodeId| {
        w.events_of(node)
            .filter(|e| matches!(e, Event::Served { to, .. } if w.node_at(*to) == Some(p3)))
            .count()
    };
    let (from1, from2) = (served_by(p1), served_by(p2));
    w.note(format!(
        "peer3 request order: {order:?}; peer1 served {from1}, peer2 served {from2}"
    ));
    failures
}

/// Whether every requested chunk not in `common` came before the first one in `common`:
/// the rarest-first scenario's claim, checked the same way in the simulator and the demo.
pub fn rare_before_common(order: &[u32], common: &[u32]) -> bool {
    let last_rare = order.iter().rposition(|c| !common.contains(c));
    let first_common = order.iter().position(|c| common.contains(c));
    match (last_rare, first_common) {
        (Some(r), Some(c)) => r < c,
        _ => true,
    }
}

// ---- helpers ----

fn random_bytes(rng: &mut ChaCha8Rng, len: usize) -> Vec<u8> {
    (0..len).map(|_| rng.gen()).collect()
}

#[allow(clippy::expect_used)] // only ever called with the scenarios' literal names
fn file_name(name: &str) -> FileName {
    FileName::new(name).expect("scenario file names are valid")
}

/// Shares a file and waits until the tracker accepted it.
fn share(w: &mut World, node: NodeId, name: &str, data: Vec<u8>, failures: &mut Vec<String>) {
    if let Err(e) = w.share(node, name, data) {
        failures.push(format!("share {name}: {e}"));
        return;
    }
    let shared = |w: &World| {
        w.events_of(node)
            .any(|e| matches!(e, Event::Shared { name: n } if n.as_str() == name))
    };
    if !w.run_until(w.now_ms() + 10_000, shared) {
        failures.push(format!("{} could not share {name}", w.node_name(node)));
    }
}

/// Asks for the file list and waits for it (it shows in the trace).
fn list(w: &mut World, node: NodeId) {
    let before = w
        .events_of(node)
        .filter(|e| matches!(e, Event::FileList { .. }))
        .count();
    if w.command(node, PeerCommand::List).is_ok() {
        let listed = move |w: &World| {
            w.events_of(node)
                .filter(|e| matches!(e, Event::FileList { .. }))
                .count()
                > before
        };
        w.run_until(w.now_ms() + 10_000, listed);
    }
}

fn download(w: &mut World, node: NodeId, request: DownloadRequest, failures: &mut Vec<String>) {
    let name = request.name.clone();
    if let Err(e) = w.command(node, PeerCommand::Download(request)) {
        failures.push(format!("download {name}: {e}"));
    }
}

/// How a node's download of `name` ended, if it did.
pub fn ended<'w>(w: &'w World, node: NodeId, name: &str) -> Option<&'w Event> {
    w.events_of(node)
        .find(|e| e.ended_download().is_some_and(|n| n.as_str() == name))
}

fn expect_identical(w: &World, node: NodeId, name: &str, failures: &mut Vec<String>) {
    let fname = file_name(name);
    let got = w.storage(node).and_then(|s| s.files.get(&fname));
    let want = w.truth.get(&fname);
    let same = matches!((got, want), (Some(g), Some(w)) if g.same_as(w));
    if !same {
        failures.push(format!(
            "{} does not hold an identical {name}",
            w.node_name(node)
        ));
    }
}
