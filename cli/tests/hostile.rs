//! Protocol-correct adversaries against the real binary: holders that register a file's
//! real manifest with every chunk and then never send one.

// Test code: a panic here is how a failure is reported.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;

use common::*;
use drizzle_core::wire::{encode, FrameDecoder, Hello, Message, Role, SharedFile};
use drizzle_core::{ChunkSet, FileName, Manifest, Root};
use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A holder that registers `manifest` under `name` with every chunk, accepts fetchers,
/// says its hello and then reads their requests forever without answering one — or, when
/// it `trickles`, begins the first chunk asked and sends a byte of it every 500 ms.
fn silent_holder(tracker: &str, name: &str, manifest: &Manifest, id: u64, trickles: bool) {
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
                let mut decoder = FrameDecoder::new();
                let mut buf = [0u8; 4096];
                while let Ok(n @ 1..) = conn.read(&mut buf) {
                    decoder.push(&buf[..n]);
                    while let Ok(Some(msg)) = decoder.next_message() {
                        decoder.hello_done();
                        if let (true, Message::GetChunk { root, chunk, .. }) = (trickles, msg) {
                            trickle(&mut conn, root, chunk);
                            return;
                        }
                    }
                }
            });
        }
    });
}

/// Sends the header of chunk `chunk` of `root` (64 KiB) and then a byte of it every 500 ms.
fn trickle(conn: &mut TcpStream, root: Root, chunk: u32) {
    let [header, _] = drizzle_core::wire::encode_chunk_data(root, chunk, vec![0u8; CHUNK].into());
    if conn.write_all(&header).is_err() {
        return;
    }
    while conn.write_all(&[0]).is_ok() {
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// Eight holders that take requests and never send, or trickle a byte now and then: the
/// download still completes from the one honest sharer, long before any request times out (the holders' chunks are asked of
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
        silent_holder(&tracker, "f.bin", &manifest, 1_000 + id, id % 2 == 1);
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

/// A connection that takes a place in a sharer's line for `root` and, once called with
/// `Ready`, asks for a deep pipeline of chunks and stops reading (or, given `trickle`,
/// reads that many bytes a second); dropped, it comes back.
fn line_filler(
    from: IpAddr,
    sharer: SocketAddr,
    root: Root,
    first: u32,
    chunks: u32,
    trickle: Option<usize>,
    stop: Arc<AtomicBool>,
) {
    std::thread::spawn(move || {
        let mut n = first;
        while !stop.load(Ordering::Relaxed) {
            let Ok(mut conn) = connect_from(from, sharer) else {
                std::thread::sleep(Duration::from_millis(50));
                continue;
            };
            let ask = |n: u32| {
                encode(&Message::GetChunk {
                    root,
                    chunk: n % chunks,
                    others: 0,
                })
            };
            let mut hello = encode(&Message::Hello(Hello::new(Role::Peer)));
            hello.extend(ask(n));
            n += 1;
            if conn.write_all(&hello).is_err() {
                continue;
            }
            let mut decoder = FrameDecoder::new();
            let mut buf = vec![0u8; 64 * 1024];
            let called = 'wait: loop {
                let Ok(len) = conn.read(&mut buf) else {
                    break false;
                };
                if len == 0 {
                    break false;
                }
                decoder.push(&buf[..len]);
                while let Ok(Some(msg)) = decoder.next_message() {
                    if matches!(msg, Message::ChunkRefused { .. }) {
                        // Sent too often from here: ask for another one.
                        n += 1;
                        let _ = conn.write_all(&ask(n));
                    }
                    if matches!(msg, Message::Hello(_)) {
                        decoder.hello_done();
                    }
                    if matches!(msg, Message::Ready { .. } | Message::ChunkData { .. }) {
                        break 'wait true;
                    }
                }
            };
            if !called {
                continue;
            }
            let pipeline: Vec<u8> = (0..12).flat_map(|i| ask(n + i)).collect();
            n += 12;
            let _ = conn.write_all(&pipeline);
            if let Some(rate) = trickle {
                // A tenth of it every 100 ms: steady, never silent for long.
                let mut sip = vec![0u8; rate / 10];
                while !stop.load(Ordering::Relaxed) && matches!(conn.read(&mut sip), Ok(1..)) {
                    std::thread::sleep(Duration::from_millis(100));
                }
                continue;
            }
            // Holds the slot and reads nothing more, until dropped.
            let _ = conn.set_read_timeout(Some(Duration::from_millis(100)));
            while !stop.load(Ordering::Relaxed) {
                match conn.peek(&mut buf[..1]) {
                    Ok(0) => break,
                    Err(e)
                        if e.kind() != std::io::ErrorKind::WouldBlock
                            && e.kind() != std::io::ErrorKind::TimedOut =>
                    {
                        break
                    }
                    _ => std::thread::sleep(Duration::from_millis(100)),
                }
            }
        }
    });
}

/// An open swarm with one sharer of 20 MiB (in 1 MiB chunks) on 127.0.0.1.
struct Shared20 {
    _tracker: Proc,
    tracker: String,
    _sharer: Proc,
    sharer: SocketAddr,
    root: Root,
    dir: tempfile::TempDir,
}

fn shared_20mib(salt: u8) -> Shared20 {
    let (t, tracker) = tracker_with(&["--open"]);
    let dir = tempfile::tempdir().unwrap();
    let bytes = data(20 << 20, salt);
    write(dir.path(), "f.bin", &bytes);
    let path = dir.path().to_str().unwrap();
    let args = [
        "share",
        path,
        "--tracker",
        &tracker,
        "--listen",
        "127.0.0.1:0",
        "--open",
        // The attacks below were measured on 20 chunks (the default before files under
        // 32 MiB got smaller ones).
        "--chunk-size",
        "1MiB",
    ];
    let mut sharer = Proc::start(&args);
    let addr = sharer.listening().parse().unwrap();
    sharer.wait_line("shared", |l| l.starts_with("shared "));
    Shared20 {
        _tracker: t,
        tracker,
        _sharer: sharer,
        sharer: addr,
        root: Manifest::from_bytes(&bytes, 1 << 20).unwrap().root(),
        dir,
    }
}

/// An honest `get` of the file from another host (127.0.0.2): how long it took, the copy
/// checked.
fn honest_get(swarm: &Shared20) -> Duration {
    let out = tempfile::tempdir().unwrap();
    let started = Instant::now();
    let extra = ["--stall-timeout", "40", "--open"];
    let got = get_at("127.0.0.2:0", "f.bin", &swarm.tracker, out.path(), &extra);
    let took = started.elapsed();
    assert_eq!(code(&got), 0, "{}", String::from_utf8_lossy(&got.stderr));
    assert_same_file(swarm.dir.path(), out.path(), "f.bin");
    took
}

/// A TCP connection to `to` leaving from `from` (127.0.0.x stands for another host).
fn connect_from(from: IpAddr, to: SocketAddr) -> std::io::Result<TcpStream> {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)?;
    socket.bind(&SocketAddr::new(from, 0).into())?;
    socket.connect(&to.into())?;
    Ok(socket.into())
}

/// Three hundred connections from three addresses of one host (a hundred each: one address
/// may open 128) fill a sharer's waiting line and, called, hold its upload slots without
/// reading: an honest fetcher from another address still gets the file, soon.
#[test]
fn line_fillers_from_one_address_cannot_starve_a_fetcher() {
    let swarm = shared_20mib(9);
    let (sharer_addr, root) = (swarm.sharer, swarm.root);
    let stop = Arc::new(AtomicBool::new(false));
    for i in 0..300u16 {
        let from = IpAddr::from([127, 0, 0, 3 + (i % 3) as u8]);
        line_filler(
            from,
            sharer_addr,
            root,
            u32::from(i),
            20,
            None,
            stop.clone(),
        );
    }
    std::thread::sleep(Duration::from_millis(500));
    let took = honest_get(&swarm);
    stop.store(true, Ordering::Relaxed);
    eprintln!("done in {took:?} beside 300 line fillers");
    // 0.5-2.0 s on an idle machine; before, no chunk came for 40 s.
    assert!(took < Duration::from_secs(8), "took {took:?}");
}

/// Three fetchers from one host take a sharer's upload slots, ask for twelve chunks each
/// and read 32 KiB a second, steadily: a fetcher from another host still gets the file,
/// soon.
#[test]
fn slow_readers_cannot_hold_a_sharers_slots() {
    let swarm = shared_20mib(5);
    let (sharer_addr, root) = (swarm.sharer, swarm.root);
    let stop = Arc::new(AtomicBool::new(false));
    let from = IpAddr::from([127, 0, 0, 3]);
    for i in 0..3 {
        line_filler(
            from,
            sharer_addr,
            root,
            i * 5,
            20,
            Some(32 * 1024),
            stop.clone(),
        );
    }
    std::thread::sleep(Duration::from_millis(1500));
    let took = honest_get(&swarm);
    stop.store(true, Ordering::Relaxed);
    eprintln!("done in {took:?} beside 3 slow readers");
    assert!(took < Duration::from_secs(15), "took {took:?}");
}

/// One address floods the tracker with names: 120 sessions (of the 128 an address may
/// open) register 30,000 until its quarter of the tracker is full; another registers ten
/// manifests of the largest file. An honest sharer from a third is still accepted, `list`
/// answers soon and shows its file after every flooding name, and the tracker's memory
/// stays bounded.
#[test]
fn a_flooding_host_leaves_the_tracker_to_everyone_else() {
    use drizzle_core::limits::{MAX_CHUNKS_PER_FILE, MAX_FILES_PER_REGISTER};
    let (mut tracker, addr) = tracker_with(&["--open"]);
    let to: SocketAddr = addr.parse().unwrap();
    let mut sessions = Vec::new();
    let mut register = |from: u8, id: u64, files: Vec<SharedFile>| {
        let mut s = connect_from(IpAddr::from([127, 0, 0, from]), to).unwrap();
        let mut bytes = encode(&Message::Hello(Hello::new(Role::Peer)));
        let listen = SocketAddr::from(([127, 0, 0, from], 7000 + id as u16));
        bytes.extend(encode(&Message::Register {
            peer_id: id,
            listen,
            files,
        }));
        // The tracker may close a session it will not keep: the flood goes on regardless.
        let _ = s.write_all(&bytes);
        sessions.push(s);
    };
    // 30,000 tiny files under names that sort before the honest one, 250 per session.
    for id in 0..120u64 {
        let files = (0..250u64)
            .map(|i| {
                let content = format!("{id}/{i}");
                let manifest = Manifest::from_bytes(content.as_bytes(), 64).unwrap();
                SharedFile {
                    name: FileName::new(format!("a-{id:03}-{i:03}")).unwrap(),
                    have: ChunkSet::full(manifest.chunk_count()),
                    manifest,
                }
            })
            .collect::<Vec<_>>();
        assert!(files.len() <= MAX_FILES_PER_REGISTER);
        register(3, id, files);
    }
    // From a second address, ten manifests of 262,144 chunks (8 MiB of hashes each):
    // eight fit an address's 64 MiB of manifests.
    for id in 120..130u64 {
        let manifest = Manifest {
            size: u64::from(MAX_CHUNKS_PER_FILE) * 64,
            chunk_size: 64,
            hashes: vec![[id as u8; 32]; MAX_CHUNKS_PER_FILE as usize],
        };
        let have = ChunkSet::full(manifest.chunk_count());
        let name = FileName::new(format!("huge-{id}")).unwrap();
        register(
            4,
            id,
            vec![SharedFile {
                name,
                manifest,
                have,
            }],
        );
    }
    std::thread::sleep(Duration::from_millis(500));
    // An honest sharer from 127.0.0.1 is accepted.
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "zz-honest.bin", &data(100_000, 3));
    let path = dir.path().to_str().unwrap();
    let args = [
        "share",
        path,
        "--tracker",
        &addr,
        "--listen",
        "127.0.0.1:0",
        "--open",
    ];
    let mut sharer = Proc::start(&args);
    sharer.wait_line("the honest file shared", |l| l == "shared zz-honest.bin");
    // `list` pages through every name and shows the honest file at the end.
    let started = Instant::now();
    let listed = drizzle()
        .args(["list", "--tracker", &addr, "--open"])
        .output()
        .unwrap();
    let took = started.elapsed();
    let out = String::from_utf8_lossy(&listed.stdout);
    assert_eq!(
        code(&listed),
        0,
        "{}",
        String::from_utf8_lossy(&listed.stderr)
    );
    assert!(
        out.lines().any(|l| l.starts_with("zz-honest.bin ")),
        "honest file listed"
    );
    let flood = out.lines().filter(|l| l.starts_with("a-")).count();
    let rss_kib = std::fs::read_to_string(format!("/proc/{}/status", tracker.child.id()))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse::<u64>().ok())
        .unwrap();
    eprintln!(
        "list of {} names in {took:?} ({flood} of the flood's 30,000 accepted); tracker RSS {} MiB",
        out.lines().count(),
        rss_kib / 1024
    );
    assert_eq!(
        flood, 25_000,
        "one address holds a quarter of the names, no more"
    );
    let huge = out.lines().filter(|l| l.starts_with("huge-")).count();
    assert_eq!(huge, 8, "one address holds 64 MiB of manifests, no more");
    assert!(rss_kib < 256 * 1024, "tracker RSS {rss_kib} KiB");
    assert!(took < Duration::from_secs(2), "list took {took:?}");
    drop(sessions);
    let _ = tracker.child.kill();
}

/// Reads `conn` until the other side closes it (or 5 s pass): the server has dealt with it.
fn until_closed(mut conn: TcpStream) {
    conn.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut sink = [0u8; 1024];
    while let Ok(1..) = conn.read(&mut sink) {}
}

/// One address sends the tracker 200 connections of garbage, opens more connections than
/// it may hold, and more to the status page than it may: the tracker's log says so once
/// for each kind, not 200 times (a flood of bad input cannot flood the operator's log).
#[test]
fn a_flood_of_bad_connections_is_logged_once_per_address_not_once_each() {
    use drizzle_mio::driver::MAX_CONNECTIONS_PER_ADDRESS;
    use std::io::BufRead;
    let mut tracker = drizzle()
        .args(["tracker", "--listen", "127.0.0.1:0", "--open"])
        .args(["--http", "127.0.0.1:0"])
        .env_remove("RUST_LOG")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufReader::new(tracker.stdout.take().unwrap()).lines();
    let mut line = || lines.next().unwrap().unwrap();
    let addr: SocketAddr = line()
        .strip_prefix("listening on ")
        .unwrap()
        .parse()
        .unwrap();
    let _swarm = line();
    let http: SocketAddr = line().strip_prefix("http on ").unwrap().parse().unwrap();
    let garbage = IpAddr::from([127, 0, 0, 5]);
    for _ in 0..200 {
        let mut conn = connect_from(garbage, addr).unwrap();
        conn.write_all(&[0xff; 64]).unwrap();
        until_closed(conn);
    }
    let crowd = IpAddr::from([127, 0, 0, 6]);
    let held: Vec<TcpStream> = (0..MAX_CONNECTIONS_PER_ADDRESS)
        .map(|_| connect_from(crowd, addr).unwrap())
        .collect();
    for _ in 0..20 {
        until_closed(connect_from(crowd, addr).unwrap());
    }
    let page_crowd = IpAddr::from([127, 0, 0, 7]);
    let held_pages: Vec<TcpStream> = (0..8)
        .map(|_| connect_from(page_crowd, http).unwrap())
        .collect();
    for _ in 0..20 {
        until_closed(connect_from(page_crowd, http).unwrap());
    }
    tracker.kill().unwrap();
    tracker.wait().unwrap();
    drop((held, held_pages));
    let mut err = String::new();
    let mut stderr = tracker.stderr.take().unwrap();
    stderr.read_to_string(&mut err).unwrap();
    let warned = |what: &str| {
        (err.lines())
            .filter(|l| l.contains(" WARN ") && l.contains(what))
            .count()
    };
    assert_eq!(warned("closing 127.0.0.5:"), 1, "{err}");
    assert_eq!(warned("refusing 127.0.0.6:"), 1, "{err}");
    assert_eq!(warned("http: refusing 127.0.0.7:"), 1, "{err}");
    assert_eq!(err.lines().count(), 3, "{err}");
}
