//! Small swarms (up to 12 peers) under generated faults: the tracker and seeders crash and
//! restart, links partition and slow down, and a second seeder may hold corrupted chunks.
//! Safety: the checkers (nothing unverified stored, limits, tracker never ahead of its
//! peers) hold after every step. Completion: every peer ends with the exact file.
//! Every failure names the seed and faults, which reproduce the run.

// Test code: a panic here is how a failure is reported.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use drizzle_core::ServePolicy;
use drizzle_sim::{run_swarm, Adversaries, Fault, SwarmConfig};
mod common;

use common::patient;
use proptest::prelude::*;

const CHUNK: u32 = 1024;

/// Faults on the tracker (node 0) and the seeders (1..=seeders), each healing: crashes
/// are followed by restarts (a restarted seeder re-shares its file), partitions and slow
/// links end. Partitions and slow links may also hit peers.
fn faults(seeders: usize, nodes: usize) -> impl Strategy<Value = Vec<Fault>> {
    let fault = (
        0u64..3_000,
        0..=seeders,
        0..nodes,
        1u64..3_000,
        2u32..20,
        0u8..3,
    )
        .prop_map(|(at_ms, crashable, any, dur, factor, kind)| match kind {
            0 => vec![
                Fault::Crash {
                    at_ms,
                    node: crashable,
                },
                Fault::Restart {
                    at_ms: at_ms + dur,
                    node: crashable,
                },
            ],
            1 => vec![Fault::Partition {
                at_ms,
                a: crashable,
                b: any,
                until_ms: at_ms + dur,
            }],
            _ => vec![Fault::SlowLink {
                at_ms,
                node: any,
                factor,
                until_ms: at_ms + dur,
            }],
        });
    prop::collection::vec(fault, 0..4).prop_map(|v| v.into_iter().flatten().collect())
}

fn swarm_case() -> impl Strategy<Value = (u64, usize, usize, u32, Vec<u32>, Vec<Fault>)> {
    (any::<u64>(), 1usize..=2, 2usize..=12, 2u32..=12).prop_flat_map(
        |(seed, seeders, peers, chunks)| {
            let nodes = 1 + seeders + peers;
            // Corrupted chunks only on the second seeder: the first stays good.
            let corrupt = if seeders == 2 {
                prop::collection::vec(0..chunks, 0..4).boxed()
            } else {
                Just(Vec::new()).boxed()
            };
            (
                Just(seed),
                Just(seeders),
                Just(peers),
                Just(chunks),
                corrupt,
                faults(seeders, nodes),
            )
        },
    )
}

proptest! {
    #![proptest_config(common::persisted(256))]

    #[test]
    fn small_swarms_stay_safe_and_finish_under_faults(
        (seed, seeders, peers, chunks, corrupt, mut faults) in swarm_case()
    ) {
        if !corrupt.is_empty() {
            // A restarted corrupted seeder would re-hash and share its changed file as new
            // content (see sim_props); keep it up, corrupt only.
            faults.retain(|f| !matches!(f, Fault::Crash { node: 2, .. } | Fault::Restart { node: 2, .. }));
        }
        for chunk in &corrupt {
            faults.push(Fault::Corrupt {
                at_ms: 50,
                node: 2,
                file: "swarm.bin".into(),
                chunk: *chunk,
            });
        }
        let config = SwarmConfig {
            seeders,
            file_size: u64::from(chunks * CHUNK) - 5,
            chunk_size: CHUNK,
            up_bytes_per_sec: 64_000,
            down_bytes_per_sec: 64_000,
            latency_ms: 10,
            deadline_factor: 200,
            faults: faults.clone(),
            check_every_step: true,
            tune_peer: patient,
            // Half the swarms closed: the faults hit keyed, sealed connections too.
            closed: seed % 2 == 1,
            ..SwarmConfig::new(peers, seed)
        };
        let report = run_swarm(&config);
        prop_assert!(
            report.failures.is_empty(),
            "{:?}\nreproduce: seed {} seeders {} peers {} chunks {} closed {} faults {:?}",
            report.failures, seed, seeders, peers, chunks, config.closed, faults
        );
        prop_assert_eq!(report.finished(), peers);
    }
}

/// A slow holder beside a fast one never makes a download slower (on real links it did:
/// the slow holder was asked for chunks nobody asked again elsewhere). One getter, a
/// 4 MB/s seeder, then also a 400 KB/s one: within 5% of the time with the fast one alone,
/// and within 1.15x the bound. Fails without the picker's rescue (3.4x the bound) and
/// without the simulator's downlink letting flows interleave (1.7x).
#[test]
fn a_slow_holder_never_slows_a_download() {
    let time = |seed_up: Option<drizzle_sim::Mix>, seeders: usize| {
        let config = SwarmConfig {
            seeders,
            file_size: 40 << 20,
            up_bytes_per_sec: 4_000_000,
            down_bytes_per_sec: 100_000_000,
            seed_up,
            ..SwarmConfig::new(1, 1)
        };
        let report = run_swarm(&config);
        assert!(report.failures.is_empty(), "{:?}", report.failures);
        (report.spread().max, config.bound_secs())
    };
    let (alone, _) = time(None, 1);
    let mix = drizzle_sim::Mix(vec![(4_000_000, 1.0), (400_000, 1.0)]);
    let (with_slow, bound) = time(Some(mix), 2);
    assert!(
        with_slow <= alone * 1.05,
        "{with_slow} s with a slow holder, {alone} s without"
    );
    assert!(with_slow <= bound * 1.15, "{with_slow} s, bound {bound} s");
}

/// No download is reported faster than its bound: every byte leaves the seeder at its
/// rate, so no peer holds the file before F / u_seed. Each time counts from the moment the
/// download starts; counted from the warmup's end while the download had begun at the
/// world's last event (4 ms), one getter finished in 0.978x the bound.
#[test]
fn no_download_beats_the_seeders_uplink() {
    for peers in [1, 4] {
        let config = SwarmConfig {
            file_size: 4 << 20,
            up_bytes_per_sec: 5_000_000,
            down_bytes_per_sec: 100_000_000,
            latency_ms: 1,
            ..SwarmConfig::new(peers, 1)
        };
        let report = run_swarm(&config);
        assert!(report.failures.is_empty(), "{:?}", report.failures);
        let floor = config.file_size as f64 / config.up_bytes_per_sec as f64;
        let first = report.spread().min;
        assert!(
            first >= floor,
            "{peers} peer(s): the first done in {first} s, floor {floor} s"
        );
    }
}

/// A chunk asked of two holders (a rescue from the slow one) is cancelled at the other
/// once one copy lands: the fast holder's uplink goes to chunks still wanted, not to copies
/// already here. One getter, seeders at 5 and 1.25 MB/s, as on the testbed: without
/// `Cancel` the seeders sent 59 chunks for 50 and the getter took 1.11x the bound.
#[test]
fn a_copy_that_landed_elsewhere_is_cancelled() {
    let config = SwarmConfig {
        seeders: 2,
        file_size: 50 << 20,
        down_bytes_per_sec: 100_000_000,
        seed_up: Some(drizzle_sim::Mix(vec![(5_000_000, 1.0), (1_250_000, 1.0)])),
        latency_ms: 1,
        ..SwarmConfig::new(1, 1)
    };
    let report = run_swarm(&config);
    assert!(report.failures.is_empty(), "{:?}", report.failures);
    assert!(
        report.seeder_uploads <= 55,
        "{} chunks sent for 50",
        report.seeder_uploads
    );
    let (time, bound) = (report.spread().max, config.bound_secs());
    assert!(time <= bound * 1.06, "{time} s, bound {bound} s");
}

/// Per-node access latencies add up per link: every peer at 10 ms of its own is the same
/// swarm as every link at 20 ms, to the millisecond; a fifth of the peers far away makes
/// the last peer later, never the swarm faster.
#[test]
fn access_latencies_add_up_per_link() {
    let run = |latency_ms: u64, access: Option<drizzle_sim::Mix>| {
        let config = SwarmConfig {
            file_size: 4 << 20,
            chunk_size: 256 << 10,
            latency_ms,
            access_latency_ms: access,
            ..SwarmConfig::new(10, 3)
        };
        let report = run_swarm(&config);
        assert!(report.failures.is_empty(), "{:?}", report.failures);
        report.times()
    };
    let everywhere = run(20, None);
    assert_eq!(run(20, Some(drizzle_sim::Mix::one(10))), everywhere);
    let far = drizzle_sim::Mix(vec![(10, 4.0), (100, 1.0)]);
    let with_far = run(20, Some(far));
    let last = |t: &[f64]| t.last().copied().unwrap_or(f64::NAN);
    assert!(
        last(&with_far) > last(&everywhere),
        "{with_far:?} vs {everywhere:?}"
    );
}

/// Peers that leave once done (`--linger`): every one leaves, and those still downloading
/// finish from the seeder and whoever is left.
#[test]
fn peers_that_leave_when_done_leave_and_the_rest_finish() {
    let run = |linger_ms: Option<u64>| {
        let config = SwarmConfig {
            file_size: 4 << 20,
            chunk_size: 256 << 10,
            arrival: drizzle_sim::Arrival::Poisson { per_sec: 4.0 },
            linger_ms,
            ..SwarmConfig::new(8, 5)
        };
        run_swarm(&config)
    };
    let stay = run(None);
    assert_eq!(
        (stay.finished(), stay.departures),
        (8, 0),
        "{:?}",
        stay.failures
    );
    let leave = run(Some(0));
    assert!(leave.failures.is_empty(), "{:?}", leave.failures);
    assert_eq!((leave.finished(), leave.departures), (8, 8));
}

/// What `adversaries` may cost at most, as the defences allow, given the attack-free time:
/// half of it again, the probe patience (1 s) for silent seeders, and per round of hogs
/// that can fill a sharer's upload slots, the second a slot may take nothing and half as
/// much again for the buffers between to fill and the slot to change hands. Over 800 cases
/// the most a round cost beyond the rest was 0.51 s. (Before a slot's stall allowance fell
/// to the floor on an idle uplink, a hog's own queue stretched it: 1.69 s -> 5.34 s with
/// three hogs, a case kept in the regressions.)
fn hogs_bound_secs(adversaries: &Adversaries, free_secs: f64) -> f64 {
    let slots = ServePolicy::default().upload_slots;
    let rounds = adversaries.hogs_stop_at_ms.len().div_ceil(slots) as f64;
    1.5 * free_secs + 1.0 + 1.5 * rounds
}

/// The last honest peer's finish, seconds, in a swarm of `peers` beside one good seeder
/// and `adversaries`.
fn finish_beside(seed: u64, peers: usize, adversaries: &Adversaries) -> f64 {
    let config = SwarmConfig {
        file_size: 4 << 20,
        chunk_size: 256 << 10,
        up_bytes_per_sec: 4_000_000,
        down_bytes_per_sec: 8_000_000,
        latency_ms: 10,
        deadline_factor: 200,
        adversaries: adversaries.clone(),
        check_every_step: true,
        closed: seed.is_multiple_of(2),
        ..SwarmConfig::new(peers, seed)
    };
    let report = run_swarm(&config);
    assert!(
        report.failures.is_empty(),
        "{:?}; seed {seed} peers {peers} {adversaries:?}",
        report.failures
    );
    assert_eq!(
        report.finished(),
        peers,
        "seed {seed} peers {peers} {adversaries:?}"
    );
    report.spread().max
}

proptest! {
    #![proptest_config(common::persisted(24))]

    /// Seeders that take every request and never deliver, or deliver at a trickle (as
    /// many as four, beside one good seeder; half the swarms closed) cost honest peers at
    /// most a bounded share of the attack-free time.
    #[test]
    fn silent_holders_cost_a_swarm_little(seed in any::<u64>(), peers in 1usize..8, silent in 0usize..5, trickling in 0usize..3) {
        let free = finish_beside(seed, peers, &Adversaries::default());
        let adversaries = Adversaries { silent_seeders: silent, trickling_seeders: trickling, ..Adversaries::default() };
        let attacked = finish_beside(seed, peers, &adversaries);
        // The probe patience (1 s) for the silent ones together, and for each trickler,
        // which may hold one of the last chunks that long before it is asked elsewhere.
        // Measured over 300 cases: silent only, at most 1 s more (1.01 s -> 2.01 s); with
        // tricklers, 0.83 of this bound at worst.
        let bound = 1.5 * free + 1.0 + trickling as f64;
        prop_assert!(attacked <= bound, "{free:.2} s -> {attacked:.2} s; seed {seed} peers {peers} {adversaries:?}");
    }

    /// Fetchers that join, take upload slots and stop reading (up to four, each its own
    /// address: a Sybil line filler), beside honest peers and possibly silent seeders,
    /// cost the honest peers at most a bounded share of the attack-free time.
    #[test]
    fn slot_hogs_cost_a_swarm_little(
        seed in any::<u64>(),
        peers in 1usize..8,
        hogs_stop_at_ms in prop::collection::vec(100u64..700, 1..9),
        silent_seeders in 0usize..3,
    ) {
        let free = finish_beside(seed, peers, &Adversaries::default());
        let adversaries = Adversaries { silent_seeders, hogs_stop_at_ms, ..Adversaries::default() };
        let attacked = finish_beside(seed, peers, &adversaries);
        let bound = hogs_bound_secs(&adversaries, free);
        prop_assert!(attacked <= bound, "{free:.2} s -> {attacked:.2} s (bound {bound:.2} s); seed {seed} peers {peers} {adversaries:?}");
    }
}

/// Found by `slot_hogs_cost_a_swarm_little`: the last chunk, asked of three peers that
/// had stopped reading, waited 9 s while the seeder that had steered the getter away from
/// it (it had sent that chunk more than others) idled — copies given up on held the
/// copies allowed in flight, and the steering hid the seeder from the rescue.
#[test]
fn a_last_chunk_stuck_at_deaf_peers_is_rescued_by_the_seeder() {
    let seed = 52131850201012645;
    let adversaries = Adversaries {
        silent_seeders: 2,
        hogs_stop_at_ms: vec![217, 635, 221, 698, 482],
        ..Adversaries::default()
    };
    one_getter_within_bound(seed, &adversaries);
}

/// One getter beside `adversaries` takes no longer than `hogs_bound_secs` allows (with no
/// hogs, the silent seeders' bound: half as long again and the probe patience).
fn one_getter_within_bound(seed: u64, adversaries: &Adversaries) {
    let free = finish_beside(seed, 1, &Adversaries::default());
    let attacked = finish_beside(seed, 1, adversaries);
    let bound = hogs_bound_secs(adversaries, free);
    assert!(
        attacked <= bound,
        "{free:.2} s -> {attacked:.2} s (bound {bound:.2} s)"
    );
}

/// Found by `slot_hogs_cost_a_swarm_little`: the only good seeder had promised every chunk
/// to slot hogs and steered the getter away; its other holders were a silent seeder and a
/// hog that sent one chunk and stopped reading. The rescue tried again only holders never
/// asked (a steering seeder had been) and, once one had delivered, only timed holders: the
/// getter waited 20 s for its requests to time out. Now a holder that answered may be
/// probed again for chunks whose every copy was given up on: 1.13 s -> 3.12 s.
#[test]
fn a_getter_steered_from_its_only_good_seeder_asks_it_again() {
    let seed = 15797916196041381694;
    let adversaries = Adversaries {
        silent_seeders: 1,
        hogs_stop_at_ms: vec![181, 100, 100, 201, 166, 416],
        ..Adversaries::default()
    };
    one_getter_within_bound(seed, &adversaries);
}

/// Found by `silent_holders_cost_a_swarm_little` once probes were also tried while every
/// request in flight was given up on: a getter asked three silent seeders for every
/// chunk, probed the good one (which delivered), and then, every request still given up
/// on, looked for rescuers only among holders never asked — not the one that had just
/// delivered: 1.13 s -> 21.06 s. Holders that delivered always may rescue: 2.15 s.
#[test]
fn a_probe_that_delivered_goes_on_rescuing() {
    let seed = 6931064126387966596;
    let adversaries = Adversaries {
        silent_seeders: 3,
        ..Adversaries::default()
    };
    one_getter_within_bound(seed, &adversaries);
}
