//! The tracker machine alone, without sockets: 64 holders of a 1,024-chunk file, each
//! sending batches of "I now hold chunk c" and "who holds the file?" (the load of `drizzle
//! bench tracker`), answers acknowledged as sent. Prints microseconds per message, best of
//! seven rounds, in a process with one thread and again once a second thread exists (as in
//! a tracker with `--http`: glibc's allocator then takes a lock past its per-thread cache).

// A bench drives the machine itself, like a driver: it owns the clock and the threads.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::disallowed_types,
    clippy::disallowed_methods
)]

use drizzle_core::wire::{encode, Hello, Message, Role, SharedFile};
use drizzle_core::{ChunkSet, ConnId, FileName, Input, Machine, Manifest, Output, Received};
use drizzle_core::{Timestamp, Tracker, TrackerConfig};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

const HOLDERS: u64 = 64;
const CHUNKS: u32 = 1024;
const PAIRS_PER_BATCH: u32 = 100;
const BATCHES_PER_ROUND: u64 = 200;

fn main() {
    let single = best_us_per_message();
    std::thread::spawn(|| std::thread::sleep(Duration::from_secs(3600)));
    let threaded = best_us_per_message();
    println!("tracker: {single:.2} µs per message with one thread, {threaded:.2} µs with two");
}

/// Carries out the tracker's outputs, feeding back every send as sent.
fn drain(t: &mut Tracker) {
    let mut sent = Vec::new();
    while let Some(out) = t.poll_output() {
        if let Output::Send { conn, bytes } = out {
            sent.push((conn, bytes.len()));
        }
    }
    for (conn, bytes) in sent {
        t.handle(Timestamp(2), Input::Sent { conn, bytes });
        while t.poll_output().is_some() {}
    }
}

fn best_us_per_message() -> f64 {
    let hashes = (0..CHUNKS).map(|i| [(i % 251) as u8; 32]).collect();
    let manifest = Manifest {
        size: u64::from(CHUNKS) << 20,
        chunk_size: 1 << 20,
        hashes,
    };
    let root = manifest.root();
    let name = FileName::new("bench.bin").unwrap();
    let mut t = Tracker::new(TrackerConfig::new(1));
    for i in 0..HOLDERS {
        let conn = ConnId::Inbound(i);
        let ip = [127, 1, 0, i as u8 + 1];
        let remote = SocketAddr::from((ip, 1000));
        t.handle(Timestamp(1), Input::Accepted { conn, remote });
        let have = ChunkSet::from_indices(
            CHUNKS,
            (0..CHUNKS).filter(|c| (c + i as u32).is_multiple_of(2)),
        );
        let file = SharedFile {
            name: name.clone(),
            manifest: manifest.clone(),
            have,
        };
        let mut bytes = encode(&Message::Hello(Hello::new(Role::Peer)));
        bytes.extend(encode(&Message::Register {
            peer_id: i,
            listen: SocketAddr::from((ip, 2000)),
            files: vec![file],
        }));
        t.handle(
            Timestamp(1),
            Input::Received {
                conn,
                data: Received::Slice(&bytes),
            },
        );
        drain(&mut t);
    }
    let mut batch = Vec::new();
    for k in 0..PAIRS_PER_BATCH {
        let chunk = (k * 13) % CHUNKS;
        batch.extend(encode(&Message::HaveChunk { root, chunk }));
        let known = Some(root);
        batch.extend(encode(&Message::Locate {
            req: k,
            name: name.clone(),
            known,
        }));
    }
    let messages = f64::from(2 * PAIRS_PER_BATCH) * BATCHES_PER_ROUND as f64;
    let mut best = f64::MAX;
    for _ in 0..7 {
        let started = Instant::now();
        for b in 0..BATCHES_PER_ROUND {
            let conn = ConnId::Inbound(b % HOLDERS);
            t.handle(
                Timestamp(2),
                Input::Received {
                    conn,
                    data: Received::Slice(&batch),
                },
            );
            drain(&mut t);
        }
        best = best.min(started.elapsed().as_secs_f64() * 1e6 / messages);
    }
    best
}
