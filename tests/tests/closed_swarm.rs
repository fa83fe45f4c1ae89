//! Closed swarms in the simulator: the real handshake and cipher, seen from the wire.

// Test code: a panic here is how a failure is reported.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use drizzle_core::{DownloadRequest, Event, FileName, PeerCommand};
use drizzle_sim::{World, WorldConfig};
use rand::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::collections::HashSet;

/// One peer shares 60 KiB of random bytes, another downloads them; every byte sent is
/// kept. Returns the file and the wire.
fn transfer(closed: bool, seed: u64) -> (Vec<u8>, Vec<u8>) {
    let mut world = World::new(WorldConfig {
        closed,
        tap_wire: true,
        ..WorldConfig::new(seed)
    });
    let mut data = vec![0u8; 60 * 1024];
    ChaCha8Rng::seed_from_u64(seed).fill_bytes(&mut data);
    let sharer = world.add_peer("sharer");
    world.share(sharer, "secret.bin", data.clone()).unwrap();
    let getter = world.add_peer("getter");
    let name = FileName::new("secret.bin").unwrap();
    world
        .command(getter, PeerCommand::Download(DownloadRequest::whole(name)))
        .unwrap();
    let done = |w: &World| w.events_of(getter).any(|e| matches!(e, Event::Done { .. }));
    assert!(
        world.run_until(60_000, done),
        "no download (closed: {closed}, seed {seed}): {:?}",
        world.violations
    );
    (data, world.wire)
}

/// How many 16-byte-aligned 32-byte pieces of `file` appear anywhere on `wire`: any run of
/// 48 plain bytes on the wire contains one.
fn plain_pieces_seen(file: &[u8], wire: &[u8]) -> usize {
    let windows: HashSet<&[u8]> = wire.windows(32).collect();
    (0..file.len().saturating_sub(32))
        .step_by(16)
        .filter(|at| windows.contains(&file[*at..*at + 32]))
        .count()
}

#[test]
fn a_closed_swarm_never_puts_a_files_plaintext_on_the_wire() {
    for seed in [1, 2, 3] {
        let (file, wire) = transfer(true, seed);
        assert!(wire.len() > file.len(), "the file crossed the wire");
        assert_eq!(plain_pieces_seen(&file, &wire), 0, "seed {seed}");
    }
}

#[test]
fn an_open_swarm_does_and_the_check_sees_it() {
    let (file, wire) = transfer(false, 1);
    assert!(plain_pieces_seen(&file, &wire) > file.len() / 32);
}

/// When a getter that starts at once has located a file, and when its first chunk is in.
fn first_steps_ms(closed: bool) -> (u64, u64) {
    let mut world = World::new(WorldConfig {
        closed,
        latency_ms: 20,
        ..WorldConfig::new(5)
    });
    let sharer = world.add_peer("sharer");
    world.share(sharer, "f.bin", vec![9; 8192]).unwrap();
    let shared = |w: &World| {
        w.events_of(sharer)
            .any(|e| matches!(e, Event::Shared { .. }))
    };
    assert!(world.run_until(10_000, shared));
    let started = world.now_ms();
    let getter = world.add_peer("getter");
    let name = FileName::new("f.bin").unwrap();
    world
        .command(getter, PeerCommand::Download(DownloadRequest::whole(name)))
        .unwrap();
    let located = |w: &World| {
        w.events_of(getter)
            .any(|e| matches!(e, Event::Located { .. }))
    };
    assert!(world.run_until(10_000, located));
    let located_ms = world.now_ms() - started;
    let verified = |w: &World| {
        w.events_of(getter)
            .any(|e| matches!(e, Event::Verified { .. }))
    };
    assert!(world.run_until(10_000, verified));
    (located_ms, world.now_ms() - started)
}

#[test]
fn the_handshake_costs_one_round_trip_per_connection() {
    let (open_located, open_verified) = first_steps_ms(false);
    let (closed_located, closed_verified) = first_steps_ms(true);
    let rtt = 2 * 20;
    // The tracker session: one round trip more before the locate is answered.
    assert_eq!(
        closed_located - open_located,
        rtt,
        "{closed_located} vs {open_located}"
    );
    // And the connection to the holder one more before the chunk comes.
    assert!(
        closed_verified - open_verified <= 2 * rtt + 1,
        "{closed_verified} vs {open_verified}"
    );
}
