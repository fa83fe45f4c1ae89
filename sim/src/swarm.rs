//! Swarms in the simulator: S seeders and N peers that all want one file, with links of
//! one rate or a mix of rates, arriving at once or as a Poisson stream. Reports when each
//! peer finished beside the lower bound for distributing the file,
//! T ≥ max(F/u_seed, F/d_min, N·F/(u_seed + Σuᵢ)), computed for the mix.

use crate::faults::{Adversaries, Fault};
use crate::world::{NodeId, World, WorldConfig};
use drizzle_core::machine::Event;
use drizzle_core::peer::{DownloadRequest, PeerCommand};
use drizzle_core::{ChunkSet, FileName, PeerConfig};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::collections::BTreeSet;
use std::time::Instant;

const FILE: &str = "swarm.bin";
/// The tracker is not part of the bound: it gets a link no swarm can fill.
const TRACKER_BYTES_PER_SEC: u64 = 10_000_000_000;
/// What one getter moves over loopback on the reference machine (README, "Performance").
const LOOPBACK_BYTES_PER_SEC: u64 = 1_000_000_000;
/// Virtual time for the seeders to register before the first peer arrives.
const WARMUP_MS: u64 = 100;

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Arrival {
    /// Every peer asks at once.
    All,
    /// Peers arrive one by one, `per_sec` on average.
    Poisson { per_sec: f64 },
}

/// Values shared out over a group of nodes — rates (bytes per second) or latencies (ms) —
/// each with its share of the group. Node i of n gets the value whose cumulative share
/// first passes (i + ½)/n, so the proportions are exact and no draw is made.
#[derive(Clone, Debug, PartialEq)]
pub struct Mix(pub Vec<(u64, f64)>);

impl Mix {
    /// Every node at `rate`.
    pub fn one(rate: u64) -> Mix {
        Mix(vec![(rate, 1.0)])
    }

    /// The rate of node `i` of `n`.
    pub fn rate_of(&self, i: usize, n: usize) -> u64 {
        let total: f64 = self.0.iter().map(|(_, share)| share).sum();
        let at = (i as f64 + 0.5) / n.max(1) as f64 * total;
        let mut seen = 0.0;
        for (rate, share) in &self.0 {
            seen += share;
            if at < seen {
                return *rate;
            }
        }
        self.0.last().map_or(0, |(rate, _)| *rate)
    }

    /// Every node's rate, for a group of `n`.
    pub fn rates(&self, n: usize) -> Vec<u64> {
        (0..n).map(|i| self.rate_of(i, n)).collect()
    }

    /// As `--up` takes it: `10000000:80%,2000000:20%` (a single rate alone).
    pub fn describe(&self) -> String {
        match self.0.as_slice() {
            [(rate, _)] => rate.to_string(),
            parts => {
                let total: f64 = parts.iter().map(|(_, s)| s).sum();
                let each: Vec<String> = parts
                    .iter()
                    .map(|(r, s)| format!("{r}:{}%", s / total * 100.0))
                    .collect();
                each.join(",")
            }
        }
    }
}

#[derive(Clone, Debug)]
pub struct SwarmConfig {
    pub peers: usize,
    pub seeders: usize,
    pub file_size: u64,
    pub chunk_size: u32,
    pub up_bytes_per_sec: u64,
    pub down_bytes_per_sec: u64,
    pub latency_ms: u64,
    /// The peers' upload and download rates, when they differ (`up_bytes_per_sec` and
    /// `down_bytes_per_sec` otherwise), and the seeders' upload rates.
    pub up_mix: Option<Mix>,
    pub down_mix: Option<Mix>,
    pub seed_up: Option<Mix>,
    /// The peers' own access latencies, one-way ms, when they differ: a link between two
    /// peers takes the sum of theirs (`latency_ms` otherwise, for every link).
    pub access_latency_ms: Option<Mix>,
    /// Peers leave this long after they are done (`None`: they stay and serve).
    pub linger_ms: Option<u64>,
    pub arrival: Arrival,
    pub seed: u64,
    /// Give up at this many times the bound (after the last arrival).
    pub deadline_factor: u64,
    /// Keep the full trace (every request and chunk; for small swarms).
    pub trace: bool,
    /// Faults to inject (nodes: 0 tracker, then seeders, then peers).
    pub faults: Vec<Fault>,
    /// Adversaries beside the `seeders` and `peers` above, which stay the honest ones: the
    /// bound is theirs, and only their outcomes are reported. (The hogs join first and take
    /// the first places of a rate mix.)
    pub adversaries: Adversaries,
    /// Run the checkers after every step (for tests; slow for large swarms).
    pub check_every_step: bool,
    /// Adjusts each peer's config before it starts.
    pub tune_peer: fn(&mut PeerConfig),
    /// Sample the swarm's state this often (virtual ms) into `SwarmReport::timeline`.
    pub timeline_ms: Option<u64>,
    /// A closed swarm: every connection keyed and every byte sealed with the real cipher.
    /// Off by default: at swarm scale sealing gigabytes costs more wall time than the
    /// rest of the run (300 peers x 100 MiB: 87 s instead of about 15), and the scenario,
    /// fault and property tests run closed.
    pub closed: bool,
}

impl SwarmConfig {
    /// `peers` peers and one seeder, 100 MiB in 1 MiB chunks, 10 MB/s up and down, 20 ms.
    pub fn new(peers: usize, seed: u64) -> SwarmConfig {
        SwarmConfig {
            peers,
            seeders: 1,
            file_size: 100 << 20,
            chunk_size: 1 << 20,
            up_bytes_per_sec: 10_000_000,
            down_bytes_per_sec: 10_000_000,
            latency_ms: 20,
            up_mix: None,
            down_mix: None,
            seed_up: None,
            access_latency_ms: None,
            linger_ms: None,
            arrival: Arrival::All,
            seed,
            deadline_factor: 20,
            trace: false,
            faults: Vec::new(),
            adversaries: Adversaries::default(),
            check_every_step: false,
            tune_peer: |_| {},
            timeline_ms: None,
            closed: false,
        }
    }

    /// What `drizzle bench transfer` runs on one machine, as the simulator sees it: loopback
    /// links (fast downloads, no latency to speak of) with every node's upload capped at
    /// `upload_limit` when there is one. Compared with the real run, it calibrates the sim.
    pub fn loopback(
        getters: usize,
        seeders: usize,
        file_size: u64,
        chunk_size: u32,
        upload_limit: Option<u64>,
    ) -> SwarmConfig {
        SwarmConfig {
            seeders,
            file_size,
            chunk_size,
            up_bytes_per_sec: upload_limit.unwrap_or(LOOPBACK_BYTES_PER_SEC),
            down_bytes_per_sec: LOOPBACK_BYTES_PER_SEC,
            latency_ms: 1,
            ..SwarmConfig::new(getters, 1)
        }
    }

    /// The peers' upload rates, in the order they join.
    pub fn peer_ups(&self) -> Vec<u64> {
        let one = Mix::one(self.up_bytes_per_sec);
        self.up_mix.as_ref().unwrap_or(&one).rates(self.peers)
    }

    /// The peers' download rates, in the order they join.
    pub fn peer_downs(&self) -> Vec<u64> {
        let one = Mix::one(self.down_bytes_per_sec);
        self.down_mix.as_ref().unwrap_or(&one).rates(self.peers)
    }

    /// The seeders' upload rates.
    pub fn seeder_ups(&self) -> Vec<u64> {
        let one = Mix::one(self.up_bytes_per_sec);
        self.seed_up.as_ref().unwrap_or(&one).rates(self.seeders)
    }

    /// The lower bound, seconds, for peer `i` (in joining order) to hold the file: as
    /// `bound_secs`, but with its own downlink rather than the slowest one.
    pub fn peer_bound_secs(&self, i: usize) -> f64 {
        self.bound_with_downlink(self.peer_downs().get(i).copied().unwrap_or(1))
    }

    /// The lower bound, seconds, for every peer to hold the file when all arrive at once:
    /// the seeders must send it once, the slowest downlink must take it whole, and all the
    /// uplinks together must carry N copies.
    pub fn bound_secs(&self) -> f64 {
        self.bound_with_downlink(self.peer_downs().into_iter().min().unwrap_or(1))
    }

    /// The bound for a peer whose downlink takes `down` bytes per second.
    fn bound_with_downlink(&self, down: u64) -> f64 {
        self.bound_of(self.peers, down)
    }

    /// The bound for `k` of the peers to hold the file, the slowest of them taking `down`
    /// bytes per second: the uplinks together must carry k copies.
    fn bound_of(&self, k: usize, down: u64) -> f64 {
        let f = self.file_size as f64;
        let u_seed: f64 = self.seeder_ups().iter().map(|u| *u as f64).sum();
        let u_peers: f64 = self.peer_ups().iter().map(|u| *u as f64).sum();
        let n = k as f64;
        let seed_alone = f / u_seed.max(1.0);
        let download = f / (down as f64).max(1.0);
        let everyone = n * f / (u_seed + u_peers).max(1.0);
        seed_alone.max(download).max(everyone)
    }

    /// A lower bound, seconds, for `k` peers to hold the file when all arrive at once, that
    /// counts latency: on top of what `bound_secs` counts for `k` peers (the slowest of
    /// them has at most the `k`-th fastest downlink), the chunk whose first copy leaves the
    /// seeders last spreads no faster than whole verified chunks can be relayed. Each holder sends at best a copy per chunk
    /// time at the fastest uplink, and each copy lands a latency after (the postal model of
    /// Bar-Noy and Kipnis): at 100 ms one way no protocol of verified chunks reaches the
    /// plain bound, and this says how close one can come.
    pub fn relay_bound_secs(&self, k: usize) -> f64 {
        let f = self.file_size as f64;
        let (seeds, peers) = (self.seeder_ups(), self.peer_ups());
        let u_seed: f64 = seeds.iter().map(|u| *u as f64).sum::<f64>().max(1.0);
        let u_max = seeds
            .iter()
            .chain(&peers)
            .copied()
            .max()
            .unwrap_or(1)
            .max(1) as f64;
        let mut downs = self.peer_downs();
        downs.sort_unstable_by(|a, b| b.cmp(a));
        let d_kth = downs.get(k.saturating_sub(1)).copied().unwrap_or(1);
        let plain = self.bound_of(k, d_kth);
        let chunk_secs = (self.chunk_size as f64).min(f) / u_max;
        let latency = self.min_latency_ms() as f64 / 1000.0 / chunk_secs;
        let units = informed_after(self.seeders.max(1), k, latency);
        let relayed = (f / u_seed - chunk_secs).max(0.0) + chunk_secs * units;
        plain.max(relayed)
    }

    /// The shortest one-way latency between two nodes, ms (see `World::latency_us`: a link
    /// takes the sum of its nodes' access latencies; a seeder counts half the world's).
    fn min_latency_ms(&self) -> u64 {
        let Some(access) = &self.access_latency_ms else {
            return self.latency_ms;
        };
        let least = access.0.iter().map(|(ms, _)| *ms).min().unwrap_or(0);
        (2 * least).min(self.latency_ms / 2 + least)
    }
}

/// In the postal model — a node that holds a message sends a copy per time unit, each
/// landing `latency` units after it began leaving (`latency` counts the unit itself) —
/// how many units `origins` holders need until `k` more nodes hold it, sending greedily.
fn informed_after(origins: usize, k: usize, latency: f64) -> f64 {
    use std::cmp::Reverse;
    let lands = 1.0 + latency;
    // Batches of copies landing together: (when, how many), earliest first. A batch that
    // lands makes its nodes senders (their first copies land `lands` later), and the
    // senders of the batch send their next copies a unit later.
    let mut landing = std::collections::BinaryHeap::new();
    let key = |t: f64| Reverse((t * 1e6) as u64);
    landing.push((key(lands), origins));
    let mut informed = 0;
    while let Some((Reverse(at), count)) = landing.pop() {
        let at = at as f64 / 1e6;
        informed += count;
        if informed >= k {
            return at;
        }
        landing.push((key(at + 1.0), count));
        landing.push((key(at + lands), count));
    }
    lands
}

/// One peer's fate: when it asked, and when it held the whole file (ms of virtual time).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerOutcome {
    pub node: NodeId,
    pub arrived_ms: u64,
    pub done_ms: Option<u64>,
}

impl PeerOutcome {
    pub fn secs(&self) -> Option<f64> {
        self.done_ms
            .map(|d| d.saturating_sub(self.arrived_ms) as f64 / 1000.0)
    }
}

#[derive(Debug)]
pub struct SwarmReport {
    pub config: SwarmConfig,
    pub outcomes: Vec<PeerOutcome>,
    /// Simulator steps (events processed).
    pub events: u64,
    pub virtual_ms: u64,
    pub wall_secs: f64,
    /// Invariant violations and peers that failed; empty when all went well.
    pub failures: Vec<String>,
    /// Every event, when `SwarmConfig::trace` asked for it.
    pub trace: Vec<crate::TraceLine>,
    /// Chunks the seeders uploaded in all (the file has `file_size / chunk_size` of them).
    pub seeder_uploads: u64,
    /// The swarm sampled every `SwarmConfig::timeline_ms`: where its time goes.
    pub timeline: Vec<TimelineRow>,
    /// Peers that left once done (`SwarmConfig::linger_ms`).
    pub departures: usize,
}

/// The swarm at one moment of virtual time (peers only, seeders left out).
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize)]
pub struct TimelineRow {
    pub t_secs: f64,
    /// Peers done.
    pub done: usize,
    /// Peers holding at least one chunk (each can upload).
    pub holding: usize,
    /// Chunks the peers hold, as a share of all they want.
    pub held_pct: f64,
    /// Chunks every node (seeders too) began uploading since the last row, as a share of
    /// what their uplinks could have carried meanwhile.
    pub upload_pct: f64,
    /// Upload slots in use, summed over every node.
    pub slots_in_use: usize,
    /// Fetchers told `Busy` and waiting to be called, summed over every node.
    pub waiting: usize,
}

/// Order statistics of the peers' download times, seconds.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Spread {
    pub min: f64,
    pub median: f64,
    pub p99: f64,
    pub max: f64,
}

impl SwarmReport {
    /// Download times of the peers that finished, sorted.
    pub fn times(&self) -> Vec<f64> {
        let mut t: Vec<f64> = self.outcomes.iter().filter_map(PeerOutcome::secs).collect();
        t.sort_by(f64::total_cmp);
        t
    }

    /// `SwarmConfig::relay_bound_secs` for the median peer (as `spread` picks it) and the
    /// last.
    pub fn relay_bounds_secs(&self) -> (f64, f64) {
        let n = self.config.peers;
        let median_k = (n.saturating_sub(1) as f64 * 0.5).round() as usize + 1;
        let c = &self.config;
        (c.relay_bound_secs(median_k.min(n)), c.relay_bound_secs(n))
    }

    pub fn spread(&self) -> Spread {
        let t = self.times();
        let at = |p: f64| {
            let i = ((t.len() as f64 - 1.0) * p).round() as usize;
            t.get(i).copied().unwrap_or(f64::NAN)
        };
        Spread {
            min: at(0.0),
            median: at(0.5),
            p99: at(0.99),
            max: at(1.0),
        }
    }

    pub fn finished(&self) -> usize {
        self.outcomes.iter().filter(|o| o.done_ms.is_some()).count()
    }

    /// The command that reproduces this run.
    pub fn reproduce(&self) -> String {
        let c = &self.config;
        let arrival = match c.arrival {
            Arrival::All => "all".to_string(),
            Arrival::Poisson { per_sec } => format!("poisson:{per_sec}"),
        };
        let mix = |m: &Option<Mix>, one: u64| m.as_ref().map_or(one.to_string(), Mix::describe);
        let flag = |name: &str, m: &Option<Mix>| {
            m.as_ref()
                .map_or(String::new(), |m| format!(" --{name} {}", m.describe()))
        };
        let linger = c
            .linger_ms
            .map_or(String::new(), |ms| format!(" --linger {ms}"));
        let seed_up =
            flag("seed-up", &c.seed_up) + &flag("access-latency", &c.access_latency_ms) + &linger;
        let a = &c.adversaries;
        let count = |name: &str, n: usize| match n {
            0 => String::new(),
            n => format!(" --{name} {n}"),
        };
        let hogs = match a.hogs_stop_at_ms.as_slice() {
            [] => String::new(),
            at => format!(
                " --hogs {}",
                at.iter().map(u64::to_string).collect::<Vec<_>>().join(",")
            ),
        };
        let adversaries = count("silent-seeders", a.silent_seeders)
            + &count("trickling-seeders", a.trickling_seeders)
            + &hogs
            + if c.closed { " --closed" } else { "" };
        format!(
            "drizzle sim swarm --peers {} --seeders {} --file-size {} --chunk-size {} --up {} --down {}{seed_up} --latency {} --arrival {arrival}{adversaries} --seed {}",
            c.peers, c.seeders, c.file_size, c.chunk_size, mix(&c.up_mix, c.up_bytes_per_sec),
            mix(&c.down_mix, c.down_bytes_per_sec), c.latency_ms, c.seed
        )
    }
}

impl SwarmConfig {
    /// Peers and seeders that run, adversaries among them.
    pub fn nodes_run(&self) -> (usize, usize) {
        let a = &self.adversaries;
        (
            self.peers + a.hogs_stop_at_ms.len(),
            self.seeders + a.seeders(),
        )
    }

    /// The swarm that runs: the honest one with its adversaries added as nodes and faults.
    fn with_adversaries(&self) -> SwarmConfig {
        let mut faults = self.adversaries.faults(self.seeders);
        faults.extend(self.faults.iter().cloned());
        let (peers, seeders) = self.nodes_run();
        SwarmConfig {
            seeders,
            peers,
            faults,
            adversaries: Adversaries::default(),
            ..self.clone()
        }
    }
}

/// Where a running swarm stands, told every virtual second (see `run_swarm_with`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Progress {
    pub virtual_ms: u64,
    /// Peers whose download ended (done, or failed), of `peers`.
    pub ended: usize,
    pub peers: usize,
    pub events: u64,
}

/// How much virtual time a swarm runs between two `Progress` reports.
const PROGRESS_STEP_MS: u64 = 1_000;

/// Runs one swarm to the end (every peer done, or the deadline).
pub fn run_swarm(honest: &SwarmConfig) -> SwarmReport {
    run_swarm_with(honest, &mut |_| {})
}

/// `run_swarm`, telling `progress` where the swarm stands every virtual second: a run of
/// 100 GiB takes hours and is otherwise silent until its report. The run is the same.
pub fn run_swarm_with(honest: &SwarmConfig, progress: &mut dyn FnMut(Progress)) -> SwarmReport {
    let config = &honest.with_adversaries();
    let started = Instant::now();
    let Ok(name) = FileName::new(FILE) else {
        return SwarmReport {
            config: honest.clone(),
            outcomes: Vec::new(),
            events: 0,
            virtual_ms: 0,
            wall_secs: 0.0,
            failures: vec![format!("{FILE} is not a valid file name")],
            trace: Vec::new(),
            seeder_uploads: 0,
            timeline: Vec::new(),
            departures: 0,
        };
    };
    let mut world = World::new(WorldConfig {
        latency_ms: config.latency_ms,
        up_bytes_per_sec: config.up_bytes_per_sec,
        down_bytes_per_sec: config.down_bytes_per_sec,
        chunk_size: config.chunk_size,
        check_every_step: config.check_every_step,
        tune_peer: config.tune_peer,
        max_steps: u64::MAX,
        split_sends: false,
        trace: config.trace,
        interleave_below_bytes: 16 * 1024,
        leave_after_ms: config.linger_ms,
        closed: config.closed,
        ..WorldConfig::new(config.seed)
    });
    world.set_bandwidth(0, TRACKER_BYTES_PER_SEC, TRACKER_BYTES_PER_SEC);
    let mut rng = ChaCha8Rng::seed_from_u64(config.seed ^ 0x5741_524d);
    let file_seed = rng.gen::<u64>();
    let mut failures = Vec::new();
    let mut seeders = Vec::new();
    let seeder_ups = config.seeder_ups();
    for s in 0..config.seeders {
        let node = world.add_peer(&format!("seed{s}"));
        if let Some(up) = seeder_ups.get(s) {
            world.set_bandwidth(node, *up, config.down_bytes_per_sec);
        }
        seeders.push(node);
        if let Err(e) = world.share_generated(node, FILE, config.file_size, file_seed) {
            failures.push(format!("seed{s} could not share: {e}"));
        }
    }
    for f in &config.faults {
        world.add_fault(f.clone());
    }
    let (ups, downs) = (config.peer_ups(), config.peer_downs());
    let latencies = config
        .access_latency_ms
        .as_ref()
        .map(|m| m.rates(config.peers));
    let peers: Vec<NodeId> = (0..config.peers)
        .map(|i| {
            let node = world.add_peer(&format!("p{i}"));
            if let (Some(up), Some(down)) = (ups.get(i), downs.get(i)) {
                world.set_bandwidth(node, *up, *down);
            }
            if let Some(ms) = latencies.as_ref().and_then(|l| l.get(i)) {
                world.set_latency(node, *ms);
            }
            node
        })
        .collect();
    let adversaries: BTreeSet<NodeId> = config.faults.iter().filter_map(Fault::adversary).collect();
    let mut outcomes = Vec::new();
    let mut at_ms = WARMUP_MS;
    for node in peers {
        if let Arrival::Poisson { per_sec } = config.arrival {
            let gap_secs = -(1.0 - rng.gen::<f64>()).ln() / per_sec.max(1e-9);
            at_ms += (gap_secs * 1000.0) as u64;
        }
        // A peer's time is counted from its arrival: its download starts then, not at the
        // world's last event before it (the warmup's idle end, 96 ms early).
        world.run_to(at_ms);
        let arrived_ms = world.now_ms();
        let request = DownloadRequest::whole(name.clone());
        if let Err(e) = world.command(node, PeerCommand::Download(request)) {
            failures.push(format!("{}: {e}", world.node_name(node)));
        }
        if adversaries.contains(&node) {
            continue;
        }
        outcomes.push(PeerOutcome {
            node,
            arrived_ms,
            done_ms: None,
        });
    }
    // Against the bound that counts latency: on long links (100 s one way) the plain one
    // would give up before the first chunk could land.
    let bound_secs = config
        .relay_bound_secs(config.peers)
        .max(config.bound_secs());
    let bound_ms = (bound_secs * 1000.0) as u64;
    let deadline = at_ms + bound_ms.max(1000) * config.deadline_factor.max(1);
    let everyone = outcomes.len();
    let ended = |w: &World| {
        let by_adversaries: usize = (adversaries.iter())
            .filter_map(|n| w.downloads_ended.get(n))
            .sum();
        w.downloads_ended_total - by_adversaries
    };
    let timeline = match config.timeline_ms {
        Some(step_ms) => {
            let nodes = Nodes {
                seeders: &seeders,
                peers: &outcomes.iter().map(|o| o.node).collect::<Vec<_>>(),
            };
            let done = |w: &World| ended(w) >= everyone;
            let run = Run {
                step_ms,
                deadline,
                done: &done,
                progress,
            };
            sample_timeline(&mut world, config, &name, &nodes, run)
        }
        None => {
            // In steps, to report progress: stopping and going on again runs the same events.
            let mut at = world.now_ms();
            loop {
                at = (at + PROGRESS_STEP_MS).min(deadline);
                let finished = world.run_until(at, |w| ended(w) >= everyone);
                progress(Progress {
                    virtual_ms: if finished { world.now_ms() } else { at },
                    ended: ended(&world),
                    peers: everyone,
                    events: world.steps,
                });
                if finished || at >= deadline {
                    break;
                }
            }
            Vec::new()
        }
    };
    let endings = world
        .events
        .iter()
        .filter(|(_, _, e)| e.ended_download().is_some());
    for (t_ms, node, event) in endings {
        let Some(o) = outcomes.iter_mut().find(|o| o.node == *node) else {
            continue;
        };
        match event {
            Event::Done { .. } => o.done_ms = Some(*t_ms),
            other => failures.push(format!("{}: {}", world.node_name(*node), other)),
        }
    }
    let unfinished = outcomes.iter().filter(|o| o.done_ms.is_none()).count();
    if unfinished > 0 {
        failures.push(format!(
            "{unfinished} peer(s) not done by {deadline} ms of virtual time"
        ));
    }
    failures.extend(world.violations.iter().cloned());
    SwarmReport {
        config: honest.clone(),
        outcomes,
        events: world.steps,
        virtual_ms: world.now_ms(),
        wall_secs: started.elapsed().as_secs_f64(),
        failures,
        trace: std::mem::take(&mut world.trace),
        seeder_uploads: seeders
            .iter()
            .map(|s| world.served.get(s).copied().unwrap_or(0))
            .sum(),
        timeline,
        departures: world.departures,
    }
}

/// Who is who in a swarm's world.
struct Nodes<'a> {
    seeders: &'a [NodeId],
    peers: &'a [NodeId],
}

/// How a sampled run goes: to `deadline` or until `done`, a sample every `step_ms`, each
/// told to `progress` too.
struct Run<'a> {
    step_ms: u64,
    deadline: u64,
    done: &'a dyn Fn(&World) -> bool,
    progress: &'a mut dyn FnMut(Progress),
}

/// Runs `world` on as `run_until(deadline, done)` would, stopping every `step_ms` of virtual
/// time to sample the swarm (from the last arrival on).
fn sample_timeline(
    world: &mut World,
    config: &SwarmConfig,
    name: &FileName,
    nodes: &Nodes<'_>,
    run: Run<'_>,
) -> Vec<TimelineRow> {
    let Run {
        step_ms,
        deadline,
        done,
        progress,
    } = run;
    let (root, chunks) = match world.manifest(name) {
        Some(m) => (Some(m.root()), u64::from(m.chunk_count())),
        None => (None, 0),
    };
    let step_ms = step_ms.max(1);
    let uploaders = (nodes.seeders.len() + nodes.peers.len()) as f64;
    let (mut rows, mut sent_before, mut before_ms) = (Vec::new(), 0, world.now_ms());
    let mut at = before_ms;
    loop {
        at = ((at / step_ms + 1) * step_ms).min(deadline);
        let finished = world.run_until(at, done);
        let now_ms = if finished { world.now_ms() } else { at };
        let now = drizzle_core::Timestamp(now_ms);
        let mut row = TimelineRow {
            t_secs: now_ms as f64 / 1000.0,
            ..TimelineRow::default()
        };
        for node in nodes.seeders.iter().chain(nodes.peers) {
            if let Some(p) = world.peer(*node) {
                row.slots_in_use += p.upload_slots_in_use(now);
                row.waiting += p.fetchers_waiting();
            }
        }
        let mut held = 0;
        let peers = nodes.peers.iter().filter_map(|n| world.peer(*n));
        for have in peers.map(|p| root.and_then(|r| p.have(&r))) {
            held += have.map_or(0, |h| u64::from(h.count()));
            row.holding += usize::from(have.is_some_and(|h| !h.is_empty()));
            row.done += usize::from(have.is_some_and(ChunkSet::is_full));
        }
        row.held_pct = 100.0 * held as f64 / (chunks * nodes.peers.len() as u64).max(1) as f64;
        // Bytes that left the uplinks, not chunks queued to leave: deep pipelines queue
        // ahead, and counted so a 100 ms sample read 192 %.
        let sent = world.peers_sent_bytes;
        let could = uploaders * config.up_bytes_per_sec as f64;
        let secs = now_ms.saturating_sub(before_ms) as f64 / 1000.0;
        row.upload_pct = 100.0 * sent.saturating_sub(sent_before) as f64 / (could * secs).max(1e-9);
        (sent_before, before_ms) = (sent, now_ms);
        progress(Progress {
            virtual_ms: now_ms,
            ended: row.done,
            peers: nodes.peers.len(),
            events: world.steps,
        });
        rows.push(row);
        if finished || at >= deadline {
            return rows;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Chunks above the size the simulator interleaves as short messages (16 KiB), so
    /// their bytes queue on the uplinks as bulk and the upload sampled is physical.
    #[test]
    fn a_timeline_samples_the_swarm_without_changing_its_run() {
        let plain = SwarmConfig {
            file_size: 1 << 20,
            chunk_size: 64 << 10,
            up_bytes_per_sec: 2_000_000,
            down_bytes_per_sec: 2_000_000,
            ..SwarmConfig::new(12, 7)
        };
        let sampled = SwarmConfig {
            timeline_ms: Some(100),
            ..plain.clone()
        };
        let (a, b) = (run_swarm(&plain), run_swarm(&sampled));
        assert!(a.failures.is_empty(), "{:?}", a.failures);
        assert_eq!((a.outcomes, a.events), (b.outcomes.clone(), b.events));
        assert!(a.timeline.is_empty());
        let rows = &b.timeline;
        assert!(rows.len() > 3, "{rows:?}");
        for pair in rows.windows(2) {
            let (r, s) = (&pair[0], &pair[1]);
            assert!(r.t_secs < s.t_secs && r.held_pct <= s.held_pct, "{pair:?}");
            assert!(r.holding <= s.holding && r.done <= s.done, "{pair:?}");
        }
        let last = &rows[rows.len() - 1];
        assert_eq!((last.done, last.holding), (12, 12), "{last:?}");
        assert!((last.held_pct - 100.0).abs() < 1e-9, "{last:?}");
        // A write counts when its last byte leaves, so a 100 ms sample can hold more than
        // 100 ms of an uplink; not twice as much.
        let busiest = rows.iter().map(|r| r.upload_pct).fold(0.0, f64::max);
        assert!(busiest > 30.0 && busiest < 200.0, "{rows:?}");
        assert!(rows.iter().any(|r| r.slots_in_use > 0), "{rows:?}");
    }

    /// A run told of its progress (sampled or not) is the run `run_swarm` makes; progress
    /// only grows, a report a virtual second or a sample apart, and ends with everyone done.
    #[test]
    fn progress_is_told_without_changing_the_run() {
        let plain = SwarmConfig {
            file_size: 1 << 20,
            chunk_size: 16 << 10,
            up_bytes_per_sec: 200_000,
            down_bytes_per_sec: 200_000,
            ..SwarmConfig::new(6, 3)
        };
        let sampled = SwarmConfig {
            timeline_ms: Some(500),
            ..plain.clone()
        };
        let expected = run_swarm(&plain);
        assert!(expected.failures.is_empty(), "{:?}", expected.failures);
        for config in [plain, sampled] {
            let mut told = Vec::new();
            let report = run_swarm_with(&config, &mut |p| told.push(p));
            assert_eq!(report.outcomes, expected.outcomes);
            assert_eq!(report.events, expected.events);
            assert!(told.len() > 2, "{told:?}");
            for pair in told.windows(2) {
                let (p, q) = (pair[0], pair[1]);
                assert!(
                    p.virtual_ms < q.virtual_ms && p.ended <= q.ended,
                    "{pair:?}"
                );
                assert!(q.virtual_ms - p.virtual_ms <= PROGRESS_STEP_MS, "{pair:?}");
            }
            let last = told.last().copied();
            assert_eq!(
                last.map(|p| (p.ended, p.peers, p.events)),
                Some((6, 6, expected.events))
            );
        }
    }

    /// The postal model's counts, by hand: without latency holders double each unit; with
    /// a latency of two units (a copy lands three units after it begins to leave), one
    /// origin has informed 1, 2, 3, 5 and 8 nodes at units 3, 4, 5, 6 and 7.
    #[test]
    fn relays_inform_as_the_postal_model_counts() {
        assert_eq!(informed_after(1, 1, 0.0), 1.0);
        assert_eq!(informed_after(1, 3, 0.0), 2.0);
        assert_eq!(informed_after(1, 7, 0.0), 3.0);
        assert_eq!(informed_after(2, 6, 0.0), 2.0);
        assert_eq!(informed_after(1, 1, 2.0), 3.0);
        assert_eq!(informed_after(1, 5, 2.0), 6.0);
        assert_eq!(informed_after(1, 8, 2.0), 7.0);
    }

    /// The bound that counts latency is one: no peer of a simulated swarm beats it, and it
    /// is the plain bound's (or more) — far more at long latency.
    #[test]
    fn no_swarm_beats_the_relay_bound() {
        let fifth_slow = Mix(vec![(10_000_000, 4.0), (2_000_000, 1.0)]);
        for (peers, latency_ms, seeders, mixed) in [
            (1, 1, 1, false),
            (12, 1, 1, false),
            (12, 40, 1, false),
            (16, 40, 2, false),
            (10, 20, 1, true),
        ] {
            let config = SwarmConfig {
                seeders,
                up_mix: mixed.then(|| fifth_slow.clone()),
                down_mix: mixed.then(|| fifth_slow.clone()),
                file_size: 2 << 20,
                chunk_size: 128 << 10,
                latency_ms,
                ..SwarmConfig::new(peers, 5)
            };
            let report = run_swarm(&config);
            assert!(report.failures.is_empty(), "{:?}", report.failures);
            let times = report.times();
            let (median, last) = report.relay_bounds_secs();
            let s = report.spread();
            assert!(
                s.median >= median && s.max >= last,
                "{times:?} vs {median} / {last}"
            );
            assert!(
                last >= config.bound_secs() && last >= median,
                "{last} {median}"
            );
        }
        let far = SwarmConfig {
            latency_ms: 100,
            file_size: 20 << 20,
            chunk_size: 512 << 10,
            ..SwarmConfig::new(500, 1)
        };
        let (plain, relayed) = (far.bound_secs(), far.relay_bound_secs(500));
        assert!(relayed > 1.4 * plain, "{relayed} vs {plain}");
    }

    /// The deadline counts latency: on 2 s links a 1 MiB swarm needs about ten latencies
    /// (locate, handshake, request, generations) where its plain bound is 0.1 s, and was
    /// given up at 20 s as if it had stalled.
    #[test]
    fn a_swarm_on_long_links_is_not_given_up_early() {
        let config = SwarmConfig {
            file_size: 1 << 20,
            chunk_size: 256 << 10,
            latency_ms: 2_000,
            ..SwarmConfig::new(20, 1)
        };
        let report = run_swarm(&config);
        assert!(report.failures.is_empty(), "{:?}", report.failures);
        assert_eq!(report.finished(), 20);
    }
}
