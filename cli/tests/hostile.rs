//! Protocol-correct adversaries against the real binary: holders that register a file's
//! real manifest with every chunk and then never send one.

// Test code: a panic here is how a failure is reported.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;

use common::*;
use drizzle_core::wire::{encode, Hello, Message, Role, SharedFile};
use drizzle_core::{ChunkSet, FileName, Manifest};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::{Duration, Instant};

/// A holder that registers `manifest` under `name` with every chunk, accepts fetchers,
/// says its hello and then reads their requests forever without answering one.
fn silent_holder(tracker: &str, name: &str, manifest: &Manifest, id: u64) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let listen = listener.local_addr().unwrap();
    let mut session = TcpStream::connect(tracker).unwrap();
    let file = SharedFile {
        name: FileName::new(name).unwrap(),
        manifest: manifest.clone(),
        have: ChunkSet::full(manifest.chunk_count()),
    };
    let mut hello = encode(&Message::Hello(Hello::new(Role::Peer)));
    hello.extend(encode(&Message::Register {
        peer_id: id,
        listen,
        files: vec![file],
    }));
    session.write_all(&hello).unwrap();
    std::thread::spawn(move || {
        let _session = session; // registered for as long as the test runs
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { return };
            std::thread::spawn(move || {
                let _ = conn.write_all(&encode(&Message::Hello(Hello::new(Role::Peer))));
                let mut sink = [0u8; 4096];
                while matches!(conn.read(&mut sink), Ok(n) if n > 0) {}
            });
        }
    });
}

/// Eight holders that take requests and never send: the download still completes from the
/// one honest sharer, long before any request times out (the holders' chunks are asked of
/// the sharer once it has shown its pace and they have sent nothing for four of its chunk
/// times).
#[test]
fn silent_holders_cannot_stall_a_download() {
    // The adversary speaks the open protocol: a key holder turned hostile, or anyone in an
    // open swarm.
    let (_t, tracker) = tracker_with(&["--open"]);
    let dir = tempfile::tempdir().unwrap();
    let bytes = data(20 * CHUNK, 7);
    write(dir.path(), "f.bin", &bytes);
    let (_sharer, _) = share(dir.path(), &tracker, &["f.bin"], &["--open"]);
    let manifest = Manifest::from_bytes(&bytes, CHUNK as u32).unwrap();
    for id in 0..8 {
        silent_holder(&tracker, "f.bin", &manifest, 1_000 + id);
    }
    std::thread::sleep(Duration::from_millis(200));
    let out = tempfile::tempdir().unwrap();
    let started = Instant::now();
    let got = get(
        "f.bin",
        &tracker,
        out.path(),
        &["--stall-timeout", "60", "--open"],
    );
    let took = started.elapsed();
    assert_eq!(code(&got), 0, "{}", String::from_utf8_lossy(&got.stderr));
    assert_same_file(dir.path(), out.path(), "f.bin");
    eprintln!("done in {took:?} beside 8 silent holders");
    assert!(took < Duration::from_secs(15), "took {took:?}");
}
