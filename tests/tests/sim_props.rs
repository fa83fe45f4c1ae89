//! Properties of whole downloads in the simulator, under generated corruption and faults:
//! safety (nothing unverified is ever stored or accepted), liveness (with a good holder for
//! every chunk and finite faults, every download completes) and re-registration (a finished
//! downloader is recorded for every chunk and can serve a newcomer alone).
//! Every failure message names the seed and the faults, which reproduce the run exactly.

// Test code: a panic here is how a failure is reported.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use drizzle_core::machine::Event;
use drizzle_core::peer::{DownloadRequest, PeerCommand};
use drizzle_core::FileName;
use drizzle_sim::scenarios::ended;
use drizzle_sim::{Fault, NodeId, World, WorldConfig};
mod common;

use common::patient;
use proptest::prelude::*;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

const CHUNK: u32 = 1024;
const DEADLINE_MS: u64 = 600_000;

fn name() -> FileName {
    FileName::new("A").unwrap()
}

/// A world with `holders` peers sharing the same file A and one downloader (the last node).
fn swarm(seed: u64, holders: usize, size: usize) -> (World, Vec<NodeId>, NodeId) {
    swarm_with(seed, holders, size, |_| {})
}

/// As `swarm`, with `tune` adjusting the world's config first.
fn swarm_with(
    seed: u64,
    holders: usize,
    size: usize,
    tune: impl FnOnce(&mut WorldConfig),
) -> (World, Vec<NodeId>, NodeId) {
    let mut config = WorldConfig::new(seed);
    config.chunk_size = CHUNK;
    config.tune_peer = patient;
    // Slow links, so that transfers take seconds and the faults land in the middle of them.
    config.up_bytes_per_sec = 16_000;
    config.down_bytes_per_sec = 16_000;
    tune(&mut config);
    let mut world = World::new(config);
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let data: Vec<u8> = (0..size).map(|_| rng.gen()).collect();
    let ids: Vec<NodeId> = (0..holders)
        .map(|i| world.add_peer(&format!("peer{}", i + 1)))
        .collect();
    for id in &ids {
        world.share(*id, "A", data.clone()).unwrap();
    }
    let all_shared = |w: &World| {
        ids.iter()
            .all(|id| w.events_of(*id).any(|e| matches!(e, Event::Shared { .. })))
    };
    assert!(
        world.run_until(10_000, all_shared),
        "holders could not share; seed {seed}"
    );
    let getter = world.add_peer("getter");
    (world, ids, getter)
}

fn get(world: &mut World, node: NodeId) {
    world
        .command(node, PeerCommand::Download(DownloadRequest::whole(name())))
        .unwrap();
}

fn held_identical(world: &World, node: NodeId) -> bool {
    let held = world.storage(node).and_then(|s| s.files.get(&name()));
    matches!((held, world.truth(&name())), (Some(h), Some(t)) if h.same_as(t))
}

/// Faults on nodes 0..=holders (tracker and holders), all within the first 3 s, each one
/// healing (a crash is followed by a restart, partitions and slow links end).
fn faults(holders: usize) -> impl Strategy<Value = Vec<Fault>> {
    let node = 0..=holders;
    let fault = (
        0u64..3_000,
        node.clone(),
        node,
        1u64..3_000,
        2u32..20,
        0u8..3,
    )
        .prop_map(|(at_ms, a, b, dur, factor, kind)| match kind {
            0 => vec![
                Fault::Crash { at_ms, node: a },
                Fault::Restart {
                    at_ms: at_ms + dur,
                    node: a,
                },
            ],
            1 => vec![Fault::Partition {
                at_ms,
                a,
                b,
                until_ms: at_ms + dur,
            }],
            _ => vec![Fault::SlowLink {
                at_ms,
                node: a,
                factor,
                until_ms: at_ms + dur,
            }],
        });
    prop::collection::vec(fault, 0..5).prop_map(|v| v.into_iter().flatten().collect())
}

/// Corrupts the given (holder, chunk) pairs, schedules the faults, and runs the getter's
/// download of A to its end.
fn run_download(
    world: &mut World,
    ids: &[NodeId],
    getter: NodeId,
    chunks: u32,
    corrupt: &[(usize, u32)],
    faults: &[Fault],
) {
    for (h, c) in corrupt {
        if let Some(node) = ids.get(*h) {
            let file = "A".to_string();
            world.add_fault(Fault::Corrupt {
                at_ms: 0,
                node: *node,
                file,
                chunk: *c % chunks,
            });
        }
    }
    add_faults(world, faults, ids.len(), &corrupted(ids, corrupt));
    get(world, getter);
    world.run_until(DEADLINE_MS, |w| ended(w, getter, "A").is_some());
}

fn corrupted(ids: &[NodeId], corrupt: &[(usize, u32)]) -> Vec<NodeId> {
    corrupt
        .iter()
        .filter_map(|(h, _)| ids.get(*h).copied())
        .collect()
}

/// Schedules the generated faults on the tracker and the holders that exist, except crashes
/// of corrupted holders: a restarted holder re-hashes and re-shares its changed file, and
/// after a tracker restart it may be the first to register it, which legitimately makes the
/// changed content the file (the tracker pins the first manifest it hears of; `get --expect`
/// is the defence against that). That is a new file, not a wrong copy of the old one.
fn add_faults(world: &mut World, faults: &[Fault], holders: usize, corrupted: &[NodeId]) {
    for f in faults {
        let skip = match f {
            Fault::Crash { node, .. } | Fault::Restart { node, .. } => {
                *node > holders || corrupted.contains(node)
            }
            _ => false,
        };
        if !skip {
            world.add_fault(f.clone());
        }
    }
}

proptest! {
    #![proptest_config(common::persisted(3000))]

    /// Corrupt copies on some holders, faults on the way: the getter either ends with the
    /// exact file or refuses it; no checker ever sees an unverified byte stored.
    #[test]
    fn never_accepts_wrong_bytes(
        seed in any::<u64>(),
        holders in 1usize..4,
        chunks in 1u32..24,
        corrupt in prop::collection::vec((0usize..3, 0u32..24), 0..12),
        faults in faults(3),
    ) {
        let (mut world, ids, getter) = swarm(seed, holders, (chunks * CHUNK) as usize - 7);
        run_download(&mut world, &ids, getter, chunks, &corrupt, &faults);
        prop_assert!(world.violations.is_empty(), "{:?}; seed {} faults {:?}", world.violations, seed, faults);
        match ended(&world, getter, "A") {
            Some(Event::Done { .. }) => {
                prop_assert!(held_identical(&world, getter), "accepted a wrong file; seed {}", seed)
            }
            Some(Event::Rejected { .. }) | Some(Event::Failed { .. }) | None => {
                prop_assert!(
                    !world.storage(getter).unwrap().files.contains_key(&name()),
                    "a file exists under its final name without being done; seed {}", seed
                );
            }
            Some(other) => prop_assert!(false, "unexpected end {:?}", other),
        }
    }

    /// With peer1 always good (it may crash, but restarts) and finite faults, the download
    /// completes and is identical.
    #[test]
    fn completes_with_a_good_holder(
        seed in any::<u64>(),
        holders in 1usize..4,
        chunks in 1u32..40,
        corrupt in prop::collection::vec((1usize..3, 0u32..40), 0..8),
        faults in faults(3),
    ) {
        let (mut world, ids, getter) = swarm(seed, holders, (chunks * CHUNK) as usize);
        // Corruption only on holders other than peer1.
        run_download(&mut world, &ids, getter, chunks, &corrupt, &faults);
        prop_assert!(world.violations.is_empty(), "{:?}; seed {} faults {:?}", world.violations, seed, faults);
        let end = ended(&world, getter, "A").cloned();
        prop_assert!(matches!(end, Some(Event::Done { .. })), "ended {:?}; seed {} faults {:?}", end, seed, faults);
        prop_assert!(held_identical(&world, getter), "seed {}", seed);
    }

    /// After a completed download the tracker records the downloader for every chunk, and
    /// a newcomer can fetch the whole file from it alone.
    #[test]
    fn downloaders_are_registered_and_serve(seed in any::<u64>(), chunks in 1u32..30) {
        let (mut world, ids, getter) = swarm(seed, 1, (chunks * CHUNK) as usize - 1);
        get(&mut world, getter);
        world.run_until(DEADLINE_MS, |w| ended(w, getter, "A").is_some());
        let getter_id = world.peer(getter).unwrap().peer_id();
        let registered = |w: &World| {
            w.tracker().unwrap().holdings().iter().any(|h| h.peer_id == getter_id && h.have.is_full())
        };
        prop_assert!(world.run_until(world.now_ms() + 1_000, registered), "getter not registered; seed {}", seed);
        world.add_fault(Fault::Crash { at_ms: world.now_ms(), node: ids[0] });
        let newcomer = world.add_peer("newcomer");
        get(&mut world, newcomer);
        world.run_until(DEADLINE_MS, |w| ended(w, newcomer, "A").is_some());
        prop_assert!(held_identical(&world, newcomer), "newcomer failed; seed {}", seed);
        let from_getter = world.events_of(getter).filter(|e| matches!(e, Event::Served { .. })).count();
        prop_assert_eq!(from_getter as u32, chunks, "seed {}", seed);
        prop_assert!(world.violations.is_empty(), "{:?}; seed {}", world.violations, seed);
    }
}

/// Runs the getter's download of A to its end (or the deadline); its ending event.
fn download_to_end(world: &mut World, getter: NodeId) -> Option<Event> {
    get(world, getter);
    world.run_until(DEADLINE_MS, |w| ended(w, getter, "A").is_some());
    ended(world, getter, "A").cloned()
}

/// A disk slower than the network: received chunks pile up until the peer stops reading
/// (`MAX_CHUNKS_STORING`), the rest waits in the network, and the download completes. The
/// checkers, run after every step, flag a peer holding more (the simulator honours
/// `Machine::accepts_input`).
#[test]
fn a_slow_disk_holds_input_back_and_the_download_completes() {
    use drizzle_core::limits::MAX_CHUNKS_STORING;
    let (mut world, _, getter) = swarm_with(7, 3, 48 * CHUNK as usize, |c| {
        c.up_bytes_per_sec = 200_000;
        c.down_bytes_per_sec = 200_000;
        c.disk = drizzle_sim::DiskModel {
            min_us: 40_000,
            max_us: 60_000,
            ..Default::default()
        };
    });
    get(&mut world, getter);
    let mut most = 0;
    while ended(&world, getter, "A").is_none() && world.now_ms() < DEADLINE_MS {
        if !world.step() {
            break;
        }
        most = most.max(world.peer(getter).map_or(0, |p| p.chunks_storing()));
    }
    assert!(
        world.violations.is_empty(),
        "{:?}",
        first_violations(&world)
    );
    assert!(
        held_identical(&world, getter),
        "{:?}",
        ended(&world, getter, "A")
    );
    assert_eq!(most, MAX_CHUNKS_STORING, "the disk never held input back");
}

/// A full disk: the download fails as a storage error naming the cause, and nothing
/// appears under the final name.
#[test]
fn a_full_disk_fails_the_download_and_nothing_is_committed() {
    let (mut world, _, getter) = swarm(8, 1, 8 * CHUNK as usize);
    world.add_fault(Fault::DiskFails {
        at_ms: 0,
        node: getter,
        until_ms: DEADLINE_MS,
        reads: false,
        writes: true,
    });
    let end = download_to_end(&mut world, getter);
    let Some(Event::Failed { kind, reason, .. }) = &end else {
        panic!("expected a failure, got {end:?}");
    };
    assert_eq!(*kind, drizzle_core::machine::FailKind::Storage, "{reason}");
    assert!(reason.contains("no space left on device"), "{reason}");
    assert!(world
        .storage(getter)
        .is_some_and(|s| !s.files.contains_key(&name())));
    assert!(
        world.violations.is_empty(),
        "{:?}",
        first_violations(&world)
    );
}

/// A sharer whose disk cannot be read withdraws the file (the tracker stops listing it)
/// and the getter completes from the sharer that can.
#[test]
fn a_sharer_whose_disk_fails_is_left_for_one_that_reads() {
    let (mut world, ids, getter) = swarm(9, 2, 8 * CHUNK as usize);
    world.add_fault(Fault::DiskFails {
        at_ms: 0,
        node: ids[0],
        until_ms: DEADLINE_MS,
        reads: true,
        writes: false,
    });
    let end = download_to_end(&mut world, getter);
    assert!(held_identical(&world, getter), "{end:?}");
    let withdrawn = |e: &Event| matches!(e, Event::Withdrawn { .. });
    let asked_of_it = world.events_of(ids[0]).any(withdrawn);
    let served = world.served.get(&ids[0]).copied().unwrap_or(0);
    assert!(
        asked_of_it || served == 0,
        "the failing sharer served {served} chunks"
    );
    assert!(
        world.violations.is_empty(),
        "{:?}",
        first_violations(&world)
    );
}

fn first_violations(world: &World) -> &[String] {
    &world.violations[..world.violations.len().min(3)]
}
