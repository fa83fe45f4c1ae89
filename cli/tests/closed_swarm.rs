//! Closed swarms over real TCP: only key holders join, refusals are clear (exit 5) and leave
//! everyone else served, and nothing on the wire reads as the file.

// Test code: a panic here is how a failure is reported.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;

use common::*;
use drizzle_core::wire::{encode, Hello, Message, Role};
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const WRONG_KEY: &str = "0000000000000000000000000000000000000000000000000000000000000001";

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn list(tracker: &str, extra: &[&str]) -> std::process::Output {
    drizzle()
        .args(["list", "--tracker", tracker])
        .args(extra)
        .output()
        .unwrap()
}

#[test]
fn strangers_are_refused_with_exit_5_and_key_holders_go_on() {
    let (_t, tracker) = tracker();
    let dir = tempfile::tempdir().unwrap();
    let bytes = data(300 * 1024, 7);
    write(dir.path(), "f.bin", &bytes);
    let (_sharer, sharer) = share(dir.path(), &tracker, &["f.bin"], &[]);

    let wrong = list(&tracker, &["--key", WRONG_KEY]);
    assert_eq!(code(&wrong), 5, "{}", stderr(&wrong));
    assert!(
        stderr(&wrong).contains("wrong swarm key"),
        "{}",
        stderr(&wrong)
    );
    let open = list(&tracker, &["--open"]);
    assert_eq!(code(&open), 5);
    assert!(stderr(&open).contains("closed swarm"), "{}", stderr(&open));
    let nowhere = tempfile::tempdir().unwrap();
    let keyless = drizzle()
        .args(["list", "--tracker", &tracker])
        .env("XDG_CONFIG_HOME", nowhere.path())
        .output()
        .unwrap();
    assert_eq!(code(&keyless), 5);
    assert!(
        stderr(&keyless).contains("no swarm key"),
        "{}",
        stderr(&keyless)
    );
    let out = tempfile::tempdir().unwrap();
    let got = get("f.bin", &tracker, out.path(), &["--key", WRONG_KEY]);
    assert_eq!(code(&got), 5);
    let failed = events(&got);
    assert_eq!(of_kind(&failed, "failed")[0]["code"], 5);
    assert!(!out.path().join("f.bin").exists());

    // A stranger that knows where the sharer listens cannot fetch from it either.
    let mut stranger = TcpStream::connect(&sharer).unwrap();
    stranger.set_read_timeout(Some(WAIT)).unwrap();
    let hello = encode(&Message::Hello(Hello::new(Role::Peer)));
    stranger.write_all(&hello).unwrap();
    let mut answer = Vec::new();
    stranger.read_to_end(&mut answer).unwrap();
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.contains("open swarm"), "{answer:?}");
    assert!(answer.len() < 512, "only a hello and a refusal");

    // Nor register, locate or list at the tracker: it answers a hello and a refusal.
    let squat = drizzle_core::Manifest::from_bytes(b"squatted", 1024).unwrap();
    let mut session = TcpStream::connect(&tracker).unwrap();
    session.set_read_timeout(Some(WAIT)).unwrap();
    let mut attempt = encode(&Message::Hello(Hello::new(Role::Peer)));
    for msg in [
        Message::Register {
            peer_id: 9,
            listen: "127.0.0.1:9".parse().unwrap(),
            files: vec![drizzle_core::wire::SharedFile {
                name: drizzle_core::FileName::new("squat.bin").unwrap(),
                have: drizzle_core::ChunkSet::full(squat.chunk_count()),
                manifest: squat,
            }],
        },
        Message::Locate {
            req: 1,
            name: drizzle_core::FileName::new("f.bin").unwrap(),
            known: None,
        },
        Message::ListFiles {
            req: 2,
            after: None,
        },
    ] {
        attempt.extend(encode(&msg));
    }
    let _ = session.write_all(&attempt);
    let mut answer = Vec::new();
    let _ = session.read_to_end(&mut answer);
    let answer = String::from_utf8_lossy(&answer);
    assert!(
        answer.contains("open swarm") && !answer.contains("f.bin"),
        "{answer:?}"
    );
    let listed = list(&tracker, &[]);
    assert!(!String::from_utf8_lossy(&listed.stdout).contains("squat.bin"));

    // Everyone with the key is still served.
    assert_eq!(code(&list(&tracker, &[])), 0);
    let got = get("f.bin", &tracker, out.path(), &[]);
    assert_eq!(code(&got), 0, "{}", stderr(&got));
    assert_eq!(std::fs::read(out.path().join("f.bin")).unwrap(), bytes);
}

#[test]
fn an_open_tracker_refuses_keyed_peers_and_serves_open_ones() {
    let (_t, tracker) = tracker_with(&["--open"]);
    let keyed = list(&tracker, &[]);
    assert_eq!(code(&keyed), 5);
    assert!(stderr(&keyed).contains("open swarm"), "{}", stderr(&keyed));
    assert_eq!(code(&list(&tracker, &["--open"])), 0);
}

/// A TCP relay in front of a sharer that keeps every byte it forwards, and can flip one
/// bit of what the sharer sends on the first connection.
struct Relay {
    addr: SocketAddr,
    seen: Arc<Mutex<Vec<u8>>>,
    /// When the bit was flipped, and when the getter then closed that connection.
    flipped: Arc<Mutex<Option<Instant>>>,
    first_closed: Arc<Mutex<Option<Instant>>>,
}

impl Relay {
    /// A relay listening (its address is advertised before the sharer behind it exists).
    fn bind() -> (Relay, TcpListener) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let relay = Relay {
            addr: listener.local_addr().unwrap(),
            seen: Arc::default(),
            flipped: Arc::default(),
            first_closed: Arc::default(),
        };
        (relay, listener)
    }

    /// Forwards what `listener` accepts to `target`, and back.
    fn forward(&self, listener: TcpListener, target: SocketAddr, flip_at: Option<usize>) {
        let (seen, flipped, first_closed) = (
            self.seen.clone(),
            self.flipped.clone(),
            self.first_closed.clone(),
        );
        std::thread::spawn(move || {
            for (i, getter) in listener.incoming().enumerate() {
                let Ok(getter) = getter else { return };
                let Ok(sharer) = TcpStream::connect(target) else {
                    return;
                };
                let first = i == 0;
                let (g2, s2) = (getter.try_clone().unwrap(), sharer.try_clone().unwrap());
                let (seen1, closed) = (seen.clone(), first_closed.clone());
                std::thread::spawn(move || {
                    pump(getter, sharer, &seen1, None, &Arc::default());
                    if first {
                        closed.lock().unwrap().get_or_insert(Instant::now());
                    }
                });
                let (seen2, flipped) = (seen.clone(), flipped.clone());
                let flip = flip_at.filter(|_| first);
                std::thread::spawn(move || pump(s2, g2, &seen2, flip, &flipped));
            }
        });
    }
}

fn pump(
    mut from: TcpStream,
    mut to: TcpStream,
    seen: &Mutex<Vec<u8>>,
    flip_at: Option<usize>,
    flipped: &Mutex<Option<Instant>>,
) {
    let (mut total, mut buf) = (0, vec![0u8; 64 * 1024]);
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if let Some(at) = flip_at.filter(|at| (total..total + n).contains(at)) {
            buf[at - total] ^= 0x10;
            flipped.lock().unwrap().get_or_insert(Instant::now());
        }
        total += n;
        seen.lock().unwrap().extend_from_slice(&buf[..n]);
        if to.write_all(&buf[..n]).is_err() {
            break;
        }
    }
    let _ = to.shutdown(Shutdown::Both);
    let _ = from.shutdown(Shutdown::Both);
}

/// Shares `bytes` behind a relay (the sharer advertises the relay's address) and gets them.
fn through_relay(bytes: &[u8], flip_at: Option<usize>) -> (Relay, Vec<u8>) {
    let (_t, tracker) = tracker();
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "secret.bin", bytes);
    // The relay's address is advertised: bound first, then pointed at the sharer.
    let (relay, listener) = Relay::bind();
    let advertise = relay.addr.to_string();
    let (_sharer, sharer) = share(
        dir.path(),
        &tracker,
        &["secret.bin"],
        &["--advertise", &advertise],
    );
    relay.forward(listener, sharer.parse().unwrap(), flip_at);
    let out = tempfile::tempdir().unwrap();
    let got = get("secret.bin", &tracker, out.path(), &[]);
    assert_eq!(code(&got), 0, "{}", stderr(&got));
    (relay, std::fs::read(out.path().join("secret.bin")).unwrap())
}

#[test]
fn a_recording_relay_never_sees_the_file() {
    let bytes = data(1 << 20, 3);
    let (relay, got) = through_relay(&bytes, None);
    assert_eq!(got, bytes);
    let seen = relay.seen.lock().unwrap();
    assert!(seen.len() > bytes.len(), "the chunks crossed the relay");
    let windows: std::collections::HashSet<&[u8]> = seen.windows(32).collect();
    let plain = (0..bytes.len() - 32)
        .step_by(16)
        .filter(|at| windows.contains(&bytes[*at..*at + 32]))
        .count();
    assert_eq!(plain, 0, "pieces of the file in the clear");
}

#[test]
fn a_flipped_bit_closes_the_connection_and_the_get_still_completes() {
    let bytes = data(1 << 20, 4);
    let (relay, got) = through_relay(&bytes, Some(300_000));
    assert_eq!(got, bytes);
    let flipped = relay.flipped.lock().unwrap().expect("a bit was flipped");
    let closed = relay
        .first_closed
        .lock()
        .unwrap()
        .expect("the getter closed it");
    assert!(
        closed.saturating_duration_since(flipped) < Duration::from_secs(2),
        "closed {:?} after the flip",
        closed.saturating_duration_since(flipped)
    );
}
