//! Hostile input fed straight into the machines: every bad stream ends in a closed
//! connection with a reason (never a panic), silence is timed out, absurd counts are refused,
//! and the machine keeps serving everyone else.

// Test code: a panic here is how a failure is reported.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use drizzle_core::limits::{
    FRAME_TIMEOUT_MS, HELLO_TIMEOUT_MS, KEEPALIVE_MS, MAX_CHUNKS_STORING, REGISTER_TIMEOUT_MS,
    SESSION_SILENT_MS,
};
use drizzle_core::machine::{Event, Input, Machine, Output};
use drizzle_core::peer::PeerCommand;
use drizzle_core::wire::{
    encode, FrameDecoder, Hello, Message, RefusedBecause, Role, SharedFile, MAGIC,
};
use drizzle_core::{
    ChunkSet, ConnId, FileName, Manifest, Peer, PeerConfig, Received, Root, StorageKey, Timestamp,
    Tracker, TrackerConfig,
};
use std::collections::{BTreeSet, VecDeque};
use std::net::SocketAddr;

fn addr(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

fn hello(role: Role) -> Vec<u8> {
    encode(&Message::Hello(Hello::new(role)))
}

/// Drains a machine, returning what it sent per connection (decoded), closes and events.
#[derive(Default, Debug)]
struct Drained {
    sent: Vec<(ConnId, Message)>,
    closed: Vec<ConnId>,
    events: Vec<Event>,
    loads: Vec<(drizzle_core::IoId, StorageKey, u32)>,
    hashes: Vec<(drizzle_core::IoId, drizzle_core::Bytes)>,
    stores: Vec<(drizzle_core::IoId, u32)>,
    commits: Vec<drizzle_core::IoId>,
    connects: Vec<(ConnId, SocketAddr)>,
}

fn drain(m: &mut dyn Machine) -> Drained {
    let mut d = Drained::default();
    while let Some(out) = m.poll_output() {
        match out {
            Output::Send { conn, bytes } => {
                let mut dec = FrameDecoder::new();
                dec.hello_done();
                dec.push(&bytes);
                while let Ok(Some(msg)) = dec.next_message() {
                    d.sent.push((conn, msg));
                }
            }
            Output::Close { conn } => d.closed.push(conn),
            Output::Event(e) => d.events.push(e),
            Output::Load { io, key, len, .. } => d.loads.push((io, key, len)),
            Output::Hash { io, data } => d.hashes.push((io, data)),
            Output::Store { io, chunk, .. } => d.stores.push((io, chunk)),
            Output::Commit { io, .. } => d.commits.push(io),
            Output::Connect { conn, addr } => d.connects.push((conn, addr)),
            _ => {}
        }
    }
    d
}

fn connect(t: &mut Tracker, n: u64, now: u64) -> ConnId {
    let conn = ConnId::Inbound(n);
    t.handle(
        Timestamp(now),
        Input::Accepted {
            conn,
            remote: addr(40_000 + n as u16),
        },
    );
    conn
}

fn send(m: &mut dyn Machine, conn: ConnId, now: u64, bytes: &[u8]) -> Drained {
    m.handle(
        Timestamp(now),
        Input::Received {
            conn,
            data: Received::Slice(bytes),
        },
    );
    drain(m)
}

fn register(t: &mut Tracker, conn: ConnId, files: Vec<SharedFile>) -> Drained {
    register_as(t, conn, 1, files)
}

/// `register` for peer `peer_id` (a second id is a second peer, not its reconnection).
fn register_as(t: &mut Tracker, conn: ConnId, peer_id: u64, files: Vec<SharedFile>) -> Drained {
    let mut bytes = hello(Role::Peer);
    bytes.extend(encode(&Message::Register {
        peer_id,
        listen: addr(6999 + peer_id as u16),
        files,
    }));
    send(t, conn, 1, &bytes)
}

fn file(name: &str, data: &[u8]) -> SharedFile {
    let manifest = Manifest::from_bytes(data, 64).unwrap();
    let have = ChunkSet::full(manifest.chunk_count());
    SharedFile {
        name: FileName::new(name).unwrap(),
        manifest,
        have,
    }
}

fn lists_ok(t: &mut Tracker, n: u64) -> bool {
    let conn = connect(t, n, 2);
    let mut bytes = hello(Role::Peer);
    bytes.extend(encode(&Message::ListFiles {
        req: 9,
        after: None,
    }));
    let d = send(t, conn, 2, &bytes);
    d.sent
        .iter()
        .any(|(c, m)| *c == conn && matches!(m, Message::FileList { req: 9, .. }))
}

/// The chunks named by the messages `d` sent to `to` that `chunk_of` picks out.
fn chunks_sent(d: &Drained, to: ConnId, chunk_of: impl Fn(&Message) -> Option<u32>) -> Vec<u32> {
    d.sent
        .iter()
        .filter(|(c, _)| *c == to)
        .filter_map(|(_, m)| chunk_of(m))
        .collect()
}

fn closed_with_reason(d: &Drained, conn: ConnId, needle: &str) -> bool {
    d.closed.contains(&conn)
        && d.sent.iter().any(|(c, m)| {
            *c == conn && matches!(m, Message::Error { reason } if reason.contains(needle))
        })
}

/// A peer downloading `manifest` as `name`, told by its tracker that `holders` have it:
/// returns the peer, its tracker connection and what it did on hearing that.
fn downloading(
    name: FileName,
    manifest: Manifest,
    holders: Vec<drizzle_core::wire::LocatedHolder>,
) -> (Peer, ConnId, Drained) {
    downloading_with(|_| {}, name, manifest, holders)
}

/// `downloading` at a peer whose fetch policy `tune` changed.
fn downloading_with(
    tune: impl FnOnce(&mut drizzle_core::FetchPolicy),
    name: FileName,
    manifest: Manifest,
    holders: Vec<drizzle_core::wire::LocatedHolder>,
) -> (Peer, ConnId, Drained) {
    let mut config = PeerConfig::new(addr(1), addr(2), 5);
    // These files come in 64-byte chunks: the shared depths count chunks of that size.
    config.fetch.shared_depth_chunk_bytes = 64;
    tune(&mut config.fetch);
    let mut p = Peer::new(config);
    p.handle_timeout(Timestamp(0)); // connects to the tracker
    let get = drizzle_core::peer::DownloadRequest::whole(name.clone());
    p.command(Timestamp(0), PeerCommand::Download(get)).unwrap();
    let d = drain(&mut p);
    let (tracker, _) = d.connects[0];
    let req = d
        .sent
        .iter()
        .find_map(|(_, m)| match m {
            Message::Locate { req, .. } => Some(*req),
            _ => None,
        })
        .expect("a locate");
    p.handle(Timestamp(0), Input::Connected { conn: tracker });
    let mut answer = hello(Role::Tracker);
    answer.extend(encode(&Message::Located {
        req,
        name,
        manifest,
        holders,
    }));
    let d = send(&mut p, tracker, 1, &answer);
    (p, tracker, d)
}

/// A peer fetching `manifest` as "f" from its one holder in `holders`, connected and
/// greeted: the peer, its tracker connection, the holder's connection and the chunks it
/// asked for first.
fn fetching_from_one_holder(
    manifest: &Manifest,
    holders: Vec<drizzle_core::wire::LocatedHolder>,
) -> (Peer, ConnId, ConnId, Vec<u32>) {
    let (mut p, tracker, d) = downloading(FileName::new("f").unwrap(), manifest.clone(), holders);
    let (holder, _) = d.connects[0];
    p.handle(Timestamp(1), Input::Connected { conn: holder });
    send(&mut p, holder, 1, &hello(Role::Peer));
    let asked = chunks_sent(&d, holder, |m| match m {
        Message::GetChunk { chunk, .. } => Some(*chunk),
        _ => None,
    });
    (p, tracker, holder, asked)
}

/// A file of `chunks` chunks of 64 bytes, its manifest, and one holder (port 9) of all of it.
fn one_holder_of(chunks: u32) -> (Vec<u8>, Manifest, Vec<drizzle_core::wire::LocatedHolder>) {
    let data: Vec<u8> = (0..64 * chunks as usize).map(|i| (i % 251) as u8).collect();
    let manifest = Manifest::from_bytes(&data, 64).unwrap();
    let holders = vec![drizzle_core::wire::LocatedHolder {
        addr: addr(9),
        have: ChunkSet::full(chunks),
    }];
    (data, manifest, holders)
}

/// Chunk `chunk` of `data` as a holder sends it.
fn chunk_frame(data: &[u8], manifest: &Manifest, chunk: u32) -> Vec<u8> {
    let (offset, len) = manifest.chunk_range(chunk).unwrap();
    let piece = data[offset as usize..(offset + u64::from(len)) as usize].to_vec();
    encode(&Message::ChunkData {
        root: manifest.root(),
        chunk,
        data: piece.into(),
    })
}

#[test]
fn bad_streams_close_only_their_connection() {
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "garbage instead of a hello",
            b"GET / HTTP/1.1\r\n\r\n".to_vec(),
            "",
        ),
        (
            "4 GiB length prefix",
            u32::MAX.to_le_bytes().to_vec(),
            "exceeds the limit",
        ),
        (
            "wrong magic",
            encode(&Message::Hello(Hello {
                magic: *b"XXXX",
                version: 1,
                role: Role::Peer,
                closed: false,
            })),
            "magic",
        ),
        (
            "wrong version",
            encode(&Message::Hello(Hello {
                magic: MAGIC,
                version: 99,
                role: Role::Peer,
                closed: false,
            })),
            "version 99",
        ),
        ("wrong role", hello(Role::Tracker), "expected a Peer"),
        (
            "not a hello first",
            encode(&Message::ListFiles {
                req: 1,
                after: None,
            }),
            "not a hello",
        ),
        (
            "unknown message type",
            [hello(Role::Peer), vec![2, 0, 0, 0, 250, 1]].concat(),
            "undecodable",
        ),
        (
            "tracker message from a peer",
            [
                hello(Role::Peer),
                encode(&Message::NotFound {
                    req: 1,
                    name: FileName::new("x").unwrap(),
                    uptime_ms: 60_000,
                }),
            ]
            .concat(),
            "unexpected",
        ),
    ];
    for (what, bytes, reason) in cases {
        let mut t = Tracker::new(TrackerConfig::new(1));
        let honest = connect(&mut t, 1, 0);
        register(&mut t, honest, vec![file("a", b"abc")]);
        let bad = connect(&mut t, 2, 0);
        let d = send(&mut t, bad, 1, &bytes);
        assert!(closed_with_reason(&d, bad, reason), "{what}: {d:?}");
        assert!(
            d.events
                .iter()
                .any(|e| matches!(e, Event::ProtocolViolation { .. })),
            "{what}"
        );
        assert!(!d.closed.contains(&honest), "{what}");
        assert!(lists_ok(&mut t, 3), "{what}: tracker stopped serving");
        assert_eq!(t.files().len(), 1, "{what}: honest peer's file lost");
    }
}

#[test]
fn a_frame_cut_in_half_then_eof_leaves_nothing_behind() {
    let mut t = Tracker::new(TrackerConfig::new(1));
    let conn = connect(&mut t, 1, 0);
    let frame = encode(&Message::Register {
        peer_id: 1,
        listen: addr(1),
        files: vec![file("a", &[1; 500])],
    });
    send(
        &mut t,
        conn,
        1,
        &[hello(Role::Peer), frame[..frame.len() / 2].to_vec()].concat(),
    );
    t.handle(Timestamp(2), Input::Closed { conn });
    drain(&mut t);
    assert_eq!(t.connection_count(), 0);
    assert!(t.files().is_empty());
}

#[test]
fn a_name_held_by_other_content_is_refused_naming_how_that_was_cut() {
    let mut t = Tracker::new(TrackerConfig::new(1));
    let first = connect(&mut t, 1, 0);
    register(&mut t, first, vec![file("model.bin", &[7; 640])]);
    // The same bytes in other chunks (another `--chunk-size`, an older default) make
    // another manifest: refused, and told the chunk size that would join the swarm.
    let mut recut = file("model.bin", &[7; 640]);
    recut.manifest = Manifest::from_bytes(&[7; 640], 128).unwrap();
    recut.have = ChunkSet::full(recut.manifest.chunk_count());
    let second = connect(&mut t, 2, 0);
    let d = register_as(&mut t, second, 2, vec![recut]);
    let reason = d
        .sent
        .iter()
        .find_map(|(_, m)| match m {
            Message::Registered { refused, .. } => refused.first().map(|r| r.reason.clone()),
            _ => None,
        })
        .unwrap_or_default();
    assert!(
        reason.contains("640 bytes in chunks of 64 bytes"),
        "{reason:?}"
    );
    assert_eq!(t.files().len(), 1);
}

/// A sharer refused for a name asks what the tracker holds under it; only a file of its
/// size in other chunks is hashed again (in those), so refusals cannot keep it hashing.
#[test]
fn a_refused_share_is_cut_again_only_for_the_same_size_in_other_chunks() {
    let (name, data) = (FileName::new("f").unwrap(), [7u8; 640]);
    let mut p = Peer::new(PeerConfig::new(addr(1), addr(2), 5));
    let share = PeerCommand::Share {
        name: name.clone(),
        manifest: Manifest::from_bytes(&data, 64).unwrap(),
        have: None,
    };
    p.command(Timestamp(0), share).unwrap();
    p.handle_timeout(Timestamp(0)); // connects to the tracker
    let (tracker, _) = drain(&mut p).connects[0];
    p.handle(Timestamp(0), Input::Connected { conn: tracker });
    drain(&mut p);
    let mut greeted = false;
    let mut recut_for = |registered: Manifest, now: u64| {
        let refused = Message::Registered {
            accepted: vec![],
            refused: vec![drizzle_core::wire::Refusal {
                name: name.clone(),
                reason: "held for other content".into(),
            }],
        };
        let mut bytes = if greeted {
            vec![]
        } else {
            hello(Role::Tracker)
        };
        greeted = true;
        bytes.extend(encode(&refused));
        let d = send(&mut p, tracker, now, &bytes);
        let req = d.sent.iter().find_map(|(_, m)| match m {
            Message::Locate { req, .. } => Some(*req),
            _ => None,
        });
        let located = Message::Located {
            req: req.expect("a locate of the refused name"),
            name: name.clone(),
            manifest: registered,
            holders: vec![],
        };
        let d = send(&mut p, tracker, now, &encode(&located));
        d.events.iter().find_map(|e| match e {
            Event::ShareRecut { chunk_size, .. } => Some(*chunk_size),
            _ => None,
        })
    };
    let cut = |bytes: &[u8], chunk: u32| Manifest::from_bytes(bytes, chunk).unwrap();
    assert_eq!(recut_for(cut(&data, 128), 1), Some(128));
    assert_eq!(
        recut_for(cut(&[8; 640], 64), 2),
        None,
        "other bytes, our cut"
    );
    assert_eq!(recut_for(cut(&[7; 700], 128), 3), None, "another size");
}

#[test]
fn absurd_counts_are_refused() {
    let mut t = Tracker::new(TrackerConfig::new(1));
    let conn = connect(&mut t, 1, 0);
    // A manifest claiming 10^9 chunks with no hashes, and a chunk set of the wrong length.
    let mut huge = file("huge", b"x");
    huge.manifest.size = 64_000_000_000;
    let mut mismatched = file("mismatched", &[0; 640]);
    mismatched.have = ChunkSet::full(3);
    let d = register(&mut t, conn, vec![huge, mismatched, file("fine", b"ok")]);
    let refused: Vec<String> = d
        .sent
        .iter()
        .find_map(|(_, m)| match m {
            Message::Registered { refused, .. } => {
                Some(refused.iter().map(|r| r.name.to_string()).collect())
            }
            _ => None,
        })
        .unwrap();
    assert_eq!(refused, vec!["huge", "mismatched"]);
    assert_eq!(t.files().len(), 1);
    // A chunk index past the end closes the connection.
    let root = file("fine", b"ok").manifest.root();
    let d = send(
        &mut t,
        conn,
        2,
        &encode(&Message::HaveChunk { root, chunk: 5 }),
    );
    assert!(closed_with_reason(&d, conn, "past the end"), "{d:?}");
}

#[test]
fn names_that_escape_are_undecodable() {
    for bad in [
        "../x",
        "/etc/passwd",
        "a//b",
        "a\\b",
        "a\0b",
        &"n".repeat(2000),
    ] {
        // Encoded by hand (FileName refuses to hold such a name): Message::Locate is
        // variant 4, then req 1, then the name's length and bytes, then `known: None`.
        let mut buf = Vec::new();
        postcard_varint(bad.len(), &mut buf);
        let mut msg = vec![4u8, 1];
        msg.extend(&buf);
        msg.extend(bad.as_bytes());
        msg.push(0);
        let mut frame = (msg.len() as u32).to_le_bytes().to_vec();
        frame.extend(msg);
        let mut t = Tracker::new(TrackerConfig::new(1));
        let conn = connect(&mut t, 1, 0);
        let d = send(&mut t, conn, 1, &[hello(Role::Peer), frame].concat());
        assert!(
            closed_with_reason(&d, conn, "undecodable"),
            "{bad:?}: {d:?}"
        );
    }
}

fn postcard_varint(mut n: usize, out: &mut Vec<u8>) {
    loop {
        let byte = (n & 0x7f) as u8;
        n >>= 7;
        if n == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

/// Silence is timed out: before the hello, mid-frame, before registering, and — a session
/// must show life — a registered session that sends nothing, not even a keepalive (a
/// crashed host, or an idle squatter of the tracker's sessions). One that keeps alive stays.
#[test]
fn silence_is_timed_out_and_registered_sessions_must_show_life() {
    let mut t = Tracker::new(TrackerConfig::new(1));
    let silent = connect(&mut t, 1, 0);
    let stalled = connect(&mut t, 2, 0);
    let unregistered = connect(&mut t, 3, 0);
    let registered = connect(&mut t, 4, 0);
    let kept = connect(&mut t, 5, 0);
    let mut bytes = hello(Role::Peer);
    bytes.extend(encode(&Message::Register {
        peer_id: 2,
        listen: addr(7001),
        files: vec![],
    }));
    send(&mut t, kept, 1, &bytes);
    send(
        &mut t,
        stalled,
        1,
        &[hello(Role::Peer), vec![100, 0, 0, 0, 1, 2]].concat(),
    );
    send(&mut t, unregistered, 1, &hello(Role::Peer));
    register(&mut t, registered, vec![]);
    let (mut closed, mut told, mut reported) = (Vec::new(), Vec::new(), Vec::new());
    let end = REGISTER_TIMEOUT_MS
        .max(FRAME_TIMEOUT_MS)
        .max(HELLO_TIMEOUT_MS)
        + 10;
    let (mut now, mut wakeups, mut next_keepalive, mut echoes) = (2, 0, KEEPALIVE_MS, 0);
    loop {
        let at = t.poll_timeout().map(Timestamp::as_ms);
        let keepalive_first = at.is_none_or(|at| next_keepalive <= at);
        now = at
            .filter(|_| !keepalive_first)
            .unwrap_or(next_keepalive)
            .max(now);
        if now > end * 10 {
            break;
        }
        let d = if keepalive_first {
            next_keepalive += KEEPALIVE_MS;
            send(&mut t, kept, now, &encode(&Message::Keepalive))
        } else {
            wakeups += 1;
            t.handle_timeout(Timestamp(now));
            drain(&mut t)
        };
        echoes += (d.sent.iter())
            .filter(|(c, m)| *c == kept && *m == Message::Keepalive)
            .count();
        closed.extend(d.closed.into_iter().map(|c| (c, now)));
        told.extend(d.sent.into_iter().filter_map(|(c, m)| match m {
            Message::Error { reason } => Some((c, reason)),
            _ => None,
        }));
        let violation = |e: &Event| matches!(e, Event::ProtocolViolation { .. });
        reported.extend(d.events.into_iter().filter(violation));
    }
    // Each is told why; silence is not reported as a protocol violation.
    assert_eq!(told.len(), 4, "{told:?}");
    assert!(
        told.iter().all(|(_, r)| r.starts_with("timed out")),
        "{told:?}"
    );
    assert!(reported.is_empty(), "{reported:?}");
    // Each at its deadline to the millisecond: from the accept, or from the last byte.
    let expected = [
        (silent, HELLO_TIMEOUT_MS),
        (stalled, 1 + FRAME_TIMEOUT_MS),
        (unregistered, 1 + REGISTER_TIMEOUT_MS),
        (registered, 1 + SESSION_SILENT_MS),
    ];
    for (conn, at) in expected {
        assert!(closed.contains(&(conn, at)), "{conn:?} at {at}: {closed:?}");
    }
    assert_eq!(closed.len(), 4, "{closed:?}");
    let keepalives = (end * 10 / KEEPALIVE_MS) as usize;
    assert_eq!(echoes, keepalives, "every keepalive is answered");
    // Once only the kept session remains the tracker still looks in now and then (a
    // deadline may come), never more often than the shortest deadline.
    assert!(
        wakeups <= 3 + (end * 10 / HELLO_TIMEOUT_MS) as usize,
        "{wakeups} wakeups"
    );
}

#[test]
fn a_sharer_refuses_chunks_it_cannot_read_whole() {
    let data = vec![7u8; 640];
    let manifest = Manifest::from_bytes(&data, 64).unwrap();
    let root: Root = manifest.root();
    let mut p = Peer::new(PeerConfig::new(addr(1), addr(2), 3));
    p.command(
        Timestamp(0),
        PeerCommand::Share {
            name: FileName::new("f").unwrap(),
            manifest,
            have: None,
        },
    )
    .unwrap();
    let conn = ConnId::Inbound(1);
    p.handle(
        Timestamp(0),
        Input::Accepted {
            conn,
            remote: addr(9),
        },
    );
    drain(&mut p);
    let mut bytes = hello(Role::Peer);
    bytes.extend(encode(&Message::GetChunk {
        root,
        chunk: 3,
        others: 0,
    }));
    bytes.extend(encode(&Message::GetChunk {
        root,
        chunk: 99,
        others: 0,
    }));
    let d = send(&mut p, conn, 1, &bytes);
    let refused_past_end = d
        .sent
        .iter()
        .any(|(_, m)| matches!(m, Message::ChunkRefused { chunk: 99, .. }));
    assert!(refused_past_end, "{d:?}");
    // The file shrank on disk: the load comes back short.
    let (io, _, len) = d.loads[0].clone();
    assert_eq!(len, 64);
    p.handle(
        Timestamp(2),
        Input::Loaded {
            io,
            result: Ok(vec![7; 10].into()),
        },
    );
    let d = drain(&mut p);
    assert!(
        d.sent
            .iter()
            .any(|(_, m)| matches!(m, Message::ChunkRefused { chunk: 3, .. })),
        "{d:?}"
    );
    assert!(!d
        .sent
        .iter()
        .any(|(_, m)| matches!(m, Message::ChunkData { .. })));
    // The file is withdrawn, so fetchers stop being sent to us for it.
    assert!(
        d.events
            .iter()
            .any(|e| matches!(e, Event::Withdrawn { name, .. } if name.as_str() == "f")),
        "{d:?}"
    );
    assert!(p.have(&root).is_none());
}

/// The per-session limit counts names, not contents: one content under many names costs
/// the tracker a name each.
#[test]
fn one_session_registers_at_most_its_quota_of_names() {
    use drizzle_core::limits::{MAX_FILES_PER_REGISTER, MAX_FILES_PER_SESSION};
    let mut t = Tracker::new(TrackerConfig::new(1));
    let conn = connect(&mut t, 1, 0);
    let one = file("x", b"same content");
    let names: Vec<SharedFile> = (0..=MAX_FILES_PER_SESSION)
        .map(|i| SharedFile {
            name: FileName::new(format!("n{i}")).unwrap(),
            ..one.clone()
        })
        .collect();
    let mut bytes = hello(Role::Peer);
    for batch in names.chunks(MAX_FILES_PER_REGISTER) {
        bytes.extend(encode(&Message::Register {
            peer_id: 1,
            listen: addr(7000),
            files: batch.to_vec(),
        }));
    }
    let d = send(&mut t, conn, 1, &bytes);
    let (mut accepted, mut refused) = (0, 0);
    for (_, m) in &d.sent {
        if let Message::Registered {
            accepted: a,
            refused: r,
        } = m
        {
            accepted += a.len();
            refused += r.len();
        }
    }
    assert_eq!((accepted, refused), (MAX_FILES_PER_SESSION, 1));
    assert!(lists_ok(&mut t, 2), "others are still served");
}

/// A fetcher only asks for chunks, so a connection to a peer that starts a large frame (a
/// 16 MiB "chunk" trickled slowly, say) is closed at its length prefix, before any of it is
/// buffered: a thousand such connections cannot make a peer hold gigabytes.
#[test]
fn a_fetcher_cannot_start_a_large_frame() {
    use drizzle_core::limits::{MAX_FETCHER_FRAME_BYTES, MAX_FRAME_BYTES};
    let mut p = Peer::new(PeerConfig::new(addr(1), addr(2), 3));
    let (big, small) = (ConnId::Inbound(1), ConnId::Inbound(2));
    for conn in [big, small] {
        let remote = addr(9);
        p.handle(Timestamp(0), Input::Accepted { conn, remote });
    }
    drain(&mut p);
    let mut bytes = hello(Role::Peer);
    bytes.extend((MAX_FRAME_BYTES as u32 - 1).to_le_bytes());
    bytes.extend([0u8; 1000]);
    let d = send(&mut p, big, 1, &bytes);
    assert!(closed_with_reason(&d, big, "exceeds the limit"), "{d:?}");
    // A request of the largest size allowed is still read (and answered) as usual.
    let mut bytes = hello(Role::Peer);
    let reason = "x".repeat(MAX_FETCHER_FRAME_BYTES - 16);
    bytes.extend(encode(&Message::Error { reason }));
    let d = send(&mut p, small, 2, &bytes);
    assert!(!closed_with_reason(&d, small, "exceeds the limit"), "{d:?}");
}

/// A few bytes of request must not buy unbounded answers: the tracker stops decoding a
/// connection's requests while its unsent answers pass the limit, and resumes as the
/// driver reports them sent.
#[test]
fn answers_are_paced_by_what_was_sent() {
    use drizzle_core::limits::MAX_UNSENT_BYTES_PER_CONN;
    let mut t = Tracker::new(TrackerConfig::new(1));
    let conn = connect(&mut t, 1, 0);
    // A manifest of 40,000 chunks: every answer about it is about 1.3 MB.
    register(&mut t, conn, vec![file("big", &vec![1u8; 64 * 40_000])]);
    let mut burst = Vec::new();
    for req in 0..60 {
        burst.extend(encode(&Message::Locate {
            req,
            name: FileName::new("big").unwrap(),
            known: None,
        }));
    }
    t.handle(
        Timestamp(2),
        Input::Received {
            conn,
            data: Received::Slice(&burst),
        },
    );
    let queued = |t: &mut Tracker| {
        let mut bytes = 0;
        while let Some(out) = t.poll_output() {
            if let Output::Send { bytes: b, .. } = out {
                bytes += b.len();
            }
        }
        bytes
    };
    let first = queued(&mut t);
    assert!(
        first > 0 && first <= MAX_UNSENT_BYTES_PER_CONN + 2_000_000,
        "queued {first} bytes"
    );
    // As the driver reports bytes sent, more answers follow, each batch bounded.
    let mut total = first;
    for _ in 0..2000 {
        t.handle(
            Timestamp(3),
            Input::Sent {
                conn,
                bytes: MAX_UNSENT_BYTES_PER_CONN,
            },
        );
        let more = queued(&mut t);
        assert!(more <= MAX_UNSENT_BYTES_PER_CONN + 2_000_000);
        total += more;
        if more == 0 {
            break;
        }
    }
    assert!(
        total > 60 * 1_000_000,
        "every request is answered in the end ({total} bytes)"
    );
}

/// Registering someone else's address neither evicts them nor points others at them: the
/// tracker takes the IP from the connection.
#[test]
fn a_stranger_cannot_register_another_address() {
    let mut t = Tracker::new(TrackerConfig::new(1));
    let victim = connect(&mut t, 1, 0); // from 127.0.0.1
    register(&mut t, victim, vec![file("a", b"abc")]);
    let stranger = ConnId::Inbound(2);
    let far = SocketAddr::from(([10, 9, 8, 7], 5555));
    t.handle(
        Timestamp(1),
        Input::Accepted {
            conn: stranger,
            remote: far,
        },
    );
    let mut bytes = hello(Role::Peer);
    bytes.extend(encode(&Message::Register {
        peer_id: 2,
        listen: addr(7000),
        files: vec![],
    }));
    let d = send(&mut t, stranger, 2, &bytes);
    assert!(!d.closed.contains(&victim), "the victim's session survives");
    let holdings = t.holdings();
    assert_eq!(holdings.len(), 1);
    assert_eq!(holdings[0].listen, addr(7000));
}

/// A file whose holders all left is kept a minute (they may be reconnecting), then
/// forgotten with its name.
#[test]
fn orphaned_files_are_forgotten_after_a_while() {
    use drizzle_core::limits::ORPHAN_TTL_MS;
    let mut t = Tracker::new(TrackerConfig::new(1));
    let conn = connect(&mut t, 1, 0);
    register(&mut t, conn, vec![file("a", b"abc")]);
    t.handle(Timestamp(10), Input::Closed { conn });
    drain(&mut t);
    assert!(t.files().is_empty(), "not listed without holders");
    let later = connect(&mut t, 2, 20);
    let mut bytes = hello(Role::Peer);
    bytes.extend(encode(&Message::Register {
        peer_id: 3,
        listen: addr(7001),
        files: vec![],
    }));
    bytes.extend(encode(&Message::Locate {
        req: 1,
        name: FileName::new("a").unwrap(),
        known: None,
    }));
    let d = send(&mut t, later, 20, &bytes);
    assert!(d
        .sent
        .iter()
        .any(|(_, m)| matches!(m, Message::Located { holders, .. } if holders.is_empty())));
    t.handle_timeout(Timestamp(10 + ORPHAN_TTL_MS));
    drain(&mut t);
    let d = send(
        &mut t,
        later,
        10 + ORPHAN_TTL_MS,
        &encode(&Message::Locate {
            req: 2,
            name: FileName::new("a").unwrap(),
            known: None,
        }),
    );
    assert!(
        d.sent
            .iter()
            .any(|(_, m)| matches!(m, Message::NotFound { .. })),
        "{d:?}"
    );
}

/// A holder that pours chunks faster than they can be hashed and written cannot grow the
/// downloader's memory: past `MAX_CHUNKS_STORING` the peer refuses more input from holders
/// (the driver stops reading; the rest waits in TCP) until chunks are stored.
#[test]
fn a_fast_holder_cannot_outrun_hashing_and_disk() {
    let (data, manifest, holders) = one_holder_of(40);
    let name = FileName::new("f").unwrap();
    let (mut p, tracker, d) = downloading(name, manifest.clone(), holders);
    let (holder, _) = d.connects[0];
    p.handle(Timestamp(1), Input::Connected { conn: holder });
    let asked: Vec<u32> = d
        .sent
        .iter()
        .filter_map(|(_, m)| match m {
            Message::GetChunk { chunk, .. } => Some(*chunk),
            _ => None,
        })
        .collect();
    assert!(asked.len() > MAX_CHUNKS_STORING, "{asked:?}");
    // Every requested chunk arrives at once, one frame per read.
    let mut d = send(&mut p, holder, 2, &hello(Role::Peer));
    for chunk in &asked {
        assert!(p.accepts_input(holder) || d.hashes.len() >= MAX_CHUNKS_STORING);
        if !p.accepts_input(holder) {
            break;
        }
        let more = send(&mut p, holder, 2, &chunk_frame(&data, &manifest, *chunk));
        d.hashes.extend(more.hashes);
    }
    assert_eq!(d.hashes.len(), MAX_CHUNKS_STORING);
    assert!(!p.accepts_input(holder), "reading must pause at the limit");
    assert!(
        p.accepts_input(tracker),
        "the tracker link is not held back"
    );
    // Hashing and writing them lets input flow again.
    for (io, bytes) in d.hashes {
        let digest = drizzle_core::manifest::sha256(&bytes);
        p.handle(
            Timestamp(3),
            Input::Hashed {
                io,
                digest,
                data: bytes,
            },
        );
    }
    let stored = drain(&mut p).stores;
    assert_eq!(stored.len(), MAX_CHUNKS_STORING);
    assert!(!p.accepts_input(holder), "still being written");
    for (io, _) in stored {
        p.handle(Timestamp(4), Input::Stored { io, result: Ok(()) });
    }
    assert!(p.accepts_input(holder));
}

/// Chunk-map refreshes are frequent while a swarm is busy: they must not carry the
/// manifest (32 bytes per chunk) again once the asker has it.
#[test]
fn a_refresh_does_not_resend_the_manifest() {
    let mut t = Tracker::new(TrackerConfig::new(1));
    let holder = connect(&mut t, 1, 0);
    let shared = file("a", &[9u8; 64 * 300]);
    let root = shared.manifest.root();
    register(&mut t, holder, vec![shared]);
    let asker = connect(&mut t, 2, 1);
    let mut bytes = hello(Role::Peer);
    bytes.extend(encode(&Message::Register {
        peer_id: 2,
        listen: addr(7002),
        files: vec![],
    }));
    for (req, known) in [(1, None), (2, Some(root)), (3, Some(Root([1; 32])))] {
        bytes.extend(encode(&Message::Locate {
            req,
            name: FileName::new("a").unwrap(),
            known,
        }));
    }
    let d = send(&mut t, asker, 2, &bytes);
    let answers: Vec<(u32, &str, usize)> = d
        .sent
        .iter()
        .filter_map(|(_, m)| match m {
            Message::Located { req, holders, .. } => Some((*req, "located", holders.len())),
            Message::Holders { req, holders, .. } => Some((*req, "holders", holders.len())),
            _ => None,
        })
        .collect();
    assert_eq!(
        answers,
        vec![(1, "located", 1), (2, "holders", 1), (3, "located", 1)]
    );
}

/// Fetchers turned away as `Busy` are not left to poll: when an upload slot frees, the
/// `serve().calls_per_free_slot` longest-waiting still connected are told `Ready` and the slot is
/// kept for them (a fetcher that left is skipped). The first to ask takes it; the others
/// are told `Busy` if they ask, and are called first, in their order, when a slot frees.
#[test]
fn a_freed_slot_calls_the_first_in_line_and_the_first_to_ask_takes_it() {
    let (mut p, root, loads, busy) = slots_full_and_waiting(serve().calls_per_free_slot as u64 + 3);
    let called = |d: &Drained| -> Vec<ConnId> {
        let ready = d
            .sent
            .iter()
            .filter(|(_, m)| matches!(m, Message::Ready { root: r } if *r == root));
        ready.map(|(c, _)| *c).collect()
    };
    let asked = |p: &mut Peer, conn: ConnId, chunk: u32, with_hello: bool| {
        let mut bytes = if with_hello {
            hello(Role::Peer)
        } else {
            Vec::new()
        };
        bytes.extend(encode(&Message::GetChunk {
            root,
            chunk,
            others: 0,
        }));
        send(p, conn, 4, &bytes)
    };
    let told_busy = |d: &Drained, conn: ConnId| {
        let busy = |(c, m): &(ConnId, Message)| *c == conn && matches!(m, Message::Busy { .. });
        d.sent.iter().any(busy)
    };
    // The first in line leaves; the slot that frees calls those after it.
    p.handle(Timestamp(2), Input::Closed { conn: busy[0] });
    let (conn, io) = loads[0];
    loaded_fives(&mut p, io, 3);
    assert!(called(&drain(&mut p)).is_empty());
    p.handle(
        Timestamp(4),
        Input::Sent {
            conn,
            bytes: usize::MAX,
        },
    );
    let first_called = &busy[1..=serve().calls_per_free_slot];
    assert_eq!(called(&drain(&mut p)), first_called);
    // The slot is kept for those called: a newcomer asking first is told to wait.
    let newcomer = ConnId::Inbound(100);
    p.handle(
        Timestamp(4),
        Input::Accepted {
            conn: newcomer,
            remote: addr(9100),
        },
    );
    let d = asked(&mut p, newcomer, 7, true);
    assert!(told_busy(&d, newcomer), "{d:?}");
    // The second called asks first and is served; the first called, asking after, waits.
    let d = asked(&mut p, busy[2], 8, false);
    assert_eq!(d.loads.len(), 1, "{d:?}");
    let d = asked(&mut p, busy[1], 9, false);
    assert!(told_busy(&d, busy[1]) && d.loads.is_empty(), "{d:?}");
    // The next slot to free calls the others called before, in their order, first.
    p.handle(Timestamp(5), Input::Closed { conn: busy[2] });
    let mut again = vec![busy[1]];
    again.extend(&busy[3..]);
    again.truncate(serve().calls_per_free_slot);
    assert_eq!(called(&drain(&mut p)), again);
}

/// On a long path a slot changes hands before the last of a turn has left: once a
/// fetcher's turn is over and what it was promised drains within the round trip a call
/// takes (from `Ready` to the request it brings), the next in line is called, so that its
/// requests arrive as the uplink frees rather than a round trip later.
#[test]
fn a_turn_over_on_a_long_path_calls_the_next_before_its_data_has_left() {
    let calls = serve().calls_per_free_slot;
    let mut config = PeerConfig::new(addr(1), addr(2), 3);
    // Calls stand through a long round trip, a turn is one chunk, and the slots stay as
    // many (a long path beside a chunk's transfer opens more: the test below).
    config.serve.ready_hold_ms = 5_000;
    config.serve.slot_turn_chunks = 1;
    config.serve.most_upload_slots = config.serve.upload_slots;
    let (mut p, root, loads, busy) = slots_full_and_waiting_with(config, calls as u64 + 1);
    let ask = |p: &mut Peer, conn: ConnId, now: u64, chunks: &[u32]| {
        let requests = chunks.iter().flat_map(|&chunk| {
            encode(&Message::GetChunk {
                root,
                chunk,
                others: 0,
            })
        });
        send(p, conn, now, &requests.collect::<Vec<u8>>())
    };
    // A slot frees once the uplink's pace is known; the first in line are called.
    let (conn, io) = loads[0];
    loaded_fives(&mut p, io, 3);
    let all = usize::MAX;
    p.handle(Timestamp(600), Input::Sent { conn, bytes: all });
    assert_eq!(called(&drain(&mut p)), &busy[..calls]);
    // The first called asks for a turn's chunk a 1.9 s round trip later (one chunk in
    // 600 ms is the pace; our greetings have left meanwhile); the last in line asks too and
    // waits.
    // (Chunks nobody was sent: one sent already is steered elsewhere.)
    let turn = [8];
    for conn in [busy[0], loads[1].0, loads[2].0] {
        let bytes = usize::MAX;
        p.handle(Timestamp(2_500), Input::Sent { conn, bytes });
    }
    let taking = ask(&mut p, busy[0], 2_500, &turn);
    assert_eq!(taking.loads.len(), turn.len(), "{taking:?}");
    let last = busy[calls];
    let d = ask(&mut p, last, 2_501, &[0]);
    assert!(d
        .sent
        .iter()
        .any(|(c, m)| *c == last && matches!(m, Message::Busy { .. })));
    // The turn's chunk is read and handed to the link, none of it taken yet: the slot
    // is the next ones' already (the two called with the first, back in front, and the
    // last).
    let mut d = Drained::default();
    for (io, _, _) in &taking.loads {
        loaded_fives(&mut p, *io, 2_502);
        d = drain(&mut p);
    }
    assert_eq!(called(&d), &busy[1..], "{d:?}");
    let last_chunk = turn[turn.len() - 1];
    let served = |e: &Event| matches!(e, Event::Served { chunk, .. } if *chunk == last_chunk);
    assert!(d.events.iter().any(served), "{d:?}");
}

/// Where a chunk lands long after it leaves, a slot spends most of a turn waiting on round
/// trips, so a holder serves more fetchers at once: one more for each chunk's transfer the
/// round trip a call takes holds (`Ready` to request), up to `most_upload_slots`; on a
/// short path `upload_slots`.
#[test]
fn a_long_path_beside_a_chunk_opens_more_slots() {
    // (round trip of the calls, fetchers served of the nine called): a chunk takes about
    // 110 ms to leave (below), so 250 ms hold two.
    let (short, most) = (serve().upload_slots, serve().most_upload_slots);
    for (round_trip_ms, served) in [(10, short), (250, short + 2), (1_900, most)] {
        let mut config = PeerConfig::new(addr(1), addr(2), 3);
        // The hold outlasts the long round trip, so every call stands when it is answered.
        config.serve.ready_hold_ms = 5_000;
        let (mut p, root, loads, busy) = slots_full_and_waiting_with(config, 9);
        // The three loads leave within 600 ms, a chunk in about 110 ms; each slot that
        // frees calls three.
        let freed_at = [300, 400, 600];
        for ((conn, io), at) in loads.into_iter().zip(freed_at) {
            loaded_fives(&mut p, io, 3);
            let bytes = usize::MAX;
            p.handle(Timestamp(at), Input::Sent { conn, bytes });
        }
        assert_eq!(called(&drain(&mut p)), busy, "round trip {round_trip_ms}");
        // Each asks, a round trip after its call, for a chunk nobody was sent (one sent
        // already is steered elsewhere).
        let mut loads = 0;
        for (n, conn) in busy.iter().enumerate() {
            let request = encode(&Message::GetChunk {
                root,
                chunk: 4 + n as u32,
                others: 0,
            });
            let at = freed_at[n / serve().calls_per_free_slot] + round_trip_ms;
            loads += send(&mut p, *conn, at, &request).loads.len();
        }
        assert_eq!(loads, served, "round trip {round_trip_ms} ms");
    }
    assert!(most > short + 2);
}

/// A sharer whose upload slots are all taken by fetchers asking for one chunk each, and
/// `waiting` more told `Busy`: the sharer, the file's root, the loads started and those
/// waiting, in order.
fn slots_full_and_waiting(
    waiting: u64,
) -> (Peer, Root, Vec<(ConnId, drizzle_core::IoId)>, Vec<ConnId>) {
    slots_full_and_waiting_with(PeerConfig::new(addr(1), addr(2), 3), waiting)
}

/// `slots_full_and_waiting` at a sharer configured so.
fn slots_full_and_waiting_with(
    config: PeerConfig,
    waiting: u64,
) -> (Peer, Root, Vec<(ConnId, drizzle_core::IoId)>, Vec<ConnId>) {
    let (mut p, _, root) = sharing_with(config, &[5u8; 64 * 16]);
    let fetchers = serve().upload_slots as u64 + waiting;
    let mut loads = Vec::new();
    let mut busy = Vec::new();
    for n in 1..=fetchers {
        let conn = ConnId::Inbound(n);
        let remote = addr(9000 + n as u16);
        p.handle(Timestamp(0), Input::Accepted { conn, remote });
        let mut bytes = hello(Role::Peer);
        let chunk = n as u32;
        bytes.extend(encode(&Message::GetChunk {
            root,
            chunk,
            others: 0,
        }));
        let d = send(&mut p, conn, 1, &bytes);
        loads.extend(d.loads.iter().map(|(io, _, _)| (conn, *io)));
        if d.sent
            .iter()
            .any(|(c, m)| *c == conn && matches!(m, Message::Busy { .. }))
        {
            busy.push(conn);
        }
    }
    assert_eq!(loads.len(), serve().upload_slots, "{loads:?}");
    assert_eq!(busy.len() as u64, waiting, "{busy:?}");
    (p, root, loads, busy)
}

/// The fetchers called to a slot (`Ready`) in what was drained, in order.
fn called(d: &Drained) -> Vec<ConnId> {
    let ready = d
        .sent
        .iter()
        .filter(|(_, m)| matches!(m, Message::Ready { .. }));
    ready.map(|(c, _)| *c).collect()
}

/// The sharer's read `io` (of a file of fives) completes at `now`.
fn loaded_fives(p: &mut Peer, io: drizzle_core::IoId, now: u64) {
    let result = Ok(vec![5; 64].into());
    p.handle(Timestamp(now), Input::Loaded { io, result });
}

/// Fetchers called with `Ready` that ask nothing while the slot is kept for them (they found
/// the chunks elsewhere meanwhile) do not keep the slot idle: when the hold lapses, the
/// next in line are called.
#[test]
fn a_lapsed_invitation_calls_the_next_in_line() {
    let (mut p, _, loads, busy) = slots_full_and_waiting(2 * serve().calls_per_free_slot as u64);
    let (conn, io) = loads[0];
    loaded_fives(&mut p, io, 3);
    p.handle(
        Timestamp(4),
        Input::Sent {
            conn,
            bytes: usize::MAX,
        },
    );
    let (first, next) = busy.split_at(serve().calls_per_free_slot);
    assert_eq!(called(&drain(&mut p)), first);
    // Those called ask nothing; the next timer calls the next, within a round trip or so.
    let at = p.poll_timeout().unwrap();
    assert!(at <= Timestamp(4 + 100), "{at:?}");
    p.handle_timeout(at);
    assert_eq!(called(&drain(&mut p)), next);
}

/// A peer with nothing left to fetch lets go of its holders: an idle connection would keep
/// its place in their queues and take a `Ready` another fetcher could use.
#[test]
fn a_finished_download_lets_go_of_its_holders() {
    let (mut p, holder, commit) = one_chunk_stored();
    p.handle(
        Timestamp(5),
        Input::Committed {
            io: commit,
            result: Ok(()),
        },
    );
    let d = drain(&mut p);
    let done = |e: &Event| matches!(e, Event::Done { complete: true, .. });
    assert!(d.events.iter().any(done), "{d:?}");
    assert_eq!(d.closed, vec![holder]);
}

/// Each storage request takes only its own kind of completion: a commit answered as a
/// chunk write (a driver bug) fails the download as a storage error; it is not taken for
/// the file being in place.
#[test]
fn a_completion_of_another_kind_fails_the_download_instead_of_passing_for_its_own() {
    let (mut p, _, commit) = one_chunk_stored();
    let io = commit;
    p.handle(Timestamp(5), Input::Stored { io, result: Ok(()) });
    let d = drain(&mut p);
    let done = |e: &Event| matches!(e, Event::Done { .. });
    assert!(!d.events.iter().any(done), "{d:?}");
    let failed = |e: &Event| {
        matches!(
            e,
            Event::Failed {
                kind: drizzle_core::machine::FailKind::Storage,
                ..
            }
        )
    };
    assert!(d.events.iter().any(failed), "{d:?}");
}

/// A peer downloading a one-chunk file from one holder, the chunk received, verified and
/// stored: returns the peer, the holder's connection and the commit asked of the driver.
fn one_chunk_stored() -> (Peer, ConnId, drizzle_core::IoId) {
    let data = vec![4u8; 64];
    let manifest = Manifest::from_bytes(&data, 64).unwrap();
    let root = manifest.root();
    let holders = vec![drizzle_core::wire::LocatedHolder {
        addr: addr(9),
        have: ChunkSet::full(1),
    }];
    let (mut p, _, d) = downloading(FileName::new("f").unwrap(), manifest, holders);
    let (holder, _) = d.connects[0];
    p.handle(Timestamp(1), Input::Connected { conn: holder });
    let mut bytes = hello(Role::Peer);
    bytes.extend(encode(&Message::ChunkData {
        root,
        chunk: 0,
        data: data.clone().into(),
    }));
    let d = send(&mut p, holder, 2, &bytes);
    let (io, data) = d.hashes[0].clone();
    let digest = drizzle_core::manifest::sha256(&data);
    p.handle(Timestamp(3), Input::Hashed { io, digest, data });
    let (io, _) = drain(&mut p).stores[0];
    p.handle(Timestamp(4), Input::Stored { io, result: Ok(()) });
    let d = drain(&mut p);
    assert!(d.closed.is_empty(), "{d:?}");
    (p, holder, d.commits[0])
}

/// A file of `chunks` chunks and its first `holders` holders, holder i having chunk i only.
fn one_chunk_each(chunks: u32, holders: u32) -> (Manifest, Vec<drizzle_core::wire::LocatedHolder>) {
    let data = vec![3u8; 64 * chunks as usize];
    let manifest = Manifest::from_bytes(&data, 64).unwrap();
    let located = (0..holders)
        .map(|i| drizzle_core::wire::LocatedHolder {
            addr: addr(10_000 + i as u16),
            have: ChunkSet::from_indices(chunks, [i]),
        })
        .collect();
    (manifest, located)
}

/// Connects every holder `d` connected to and answers the request sent to it with
/// `answer(chunk)`, the i-th at `now + i * step_ms`; then likewise the holders those
/// answers made room for (a download keeps only a few requests in flight). Returns every
/// connection made.
fn answer_each_request(
    p: &mut Peer,
    d: &Drained,
    now: u64,
    step_ms: u64,
    answer: impl Fn(u32) -> Message,
) -> Vec<(ConnId, SocketAddr)> {
    let (mut connects, mut sent) = (d.connects.clone(), d.sent.clone());
    let mut i = 0;
    while let Some((conn, _)) = connects.get(i).copied() {
        let at = now + i as u64 * step_ms;
        p.handle(Timestamp(at), Input::Connected { conn });
        let chunk = sent
            .iter()
            .find_map(|(c, m)| match m {
                Message::GetChunk { chunk, .. } if *c == conn => Some(*chunk),
                _ => None,
            })
            .unwrap();
        let mut bytes = hello(Role::Peer);
        bytes.extend(encode(&answer(chunk)));
        let more = send(p, conn, at, &bytes);
        connects.extend(more.connects);
        sent.extend(more.sent);
        i += 1;
    }
    connects
}

/// With every outbound connection taken, a holder that has nothing asked of it for a while
/// makes room for one that has a chunk we lack (else that chunk would never be fetched).
#[test]
fn a_full_connection_table_makes_room_for_a_needed_holder() {
    use drizzle_core::limits::{HOLDER_EVICTABLE_AFTER_MS, MAX_PEER_CONNECTIONS};
    let holders = MAX_PEER_CONNECTIONS as u32 + 1;
    let (manifest, located) = one_chunk_each(holders, holders);
    let root = manifest.root();
    let name = FileName::new("f").unwrap();
    let (mut p, _, d) = downloading(name, manifest, located);
    // Every holder refuses: nothing is asked of them any more.
    let connects = answer_each_request(&mut p, &d, 2, 0, |chunk| Message::ChunkRefused {
        root,
        chunk,
        because: drizzle_core::wire::RefusedBecause::SentOften,
        reason: "not now".to_string(),
    });
    assert_eq!(connects.len(), MAX_PEER_CONNECTIONS);
    let connected: Vec<SocketAddr> = connects.iter().map(|(_, a)| *a).collect();
    let left_out = (0..holders)
        .map(|i| addr(10_000 + i as u16))
        .find(|a| !connected.contains(a))
        .unwrap();
    p.handle_timeout(Timestamp(2 + HOLDER_EVICTABLE_AFTER_MS));
    let d = drain(&mut p);
    assert_eq!(d.closed.len(), 1, "{d:?}");
    assert!(d.connects.iter().any(|(_, a)| *a == left_out), "{d:?}");
}

/// A download that knows many holders keeps only a few requests in flight, however many
/// holders could take one: past a few, chunks would only wait their turn on our downlink,
/// committed to one holder while others fall idle. Each answer frees room for one more.
#[test]
fn a_download_with_many_holders_keeps_few_requests_in_flight() {
    let (data, manifest, _) = one_holder_of(64);
    let located: Vec<_> = (0..20)
        .map(|i| drizzle_core::wire::LocatedHolder {
            addr: addr(10_000 + i),
            have: ChunkSet::full(64),
        })
        .collect();
    assert!(
        located.len() * fetch_policy().shared_requests_per_holder
            > fetch_policy().shared_requests_per_download
    );
    let (mut p, _, d) = downloading(FileName::new("f").unwrap(), manifest.clone(), located);
    let requests = |d: &Drained| -> Vec<(ConnId, u32)> {
        let asked = d.sent.iter().filter_map(|(c, m)| match m {
            Message::GetChunk { chunk, .. } => Some((*c, *chunk)),
            _ => None,
        });
        asked.collect()
    };
    let asked = requests(&d);
    assert_eq!(
        asked.len(),
        fetch_policy().shared_requests_per_download,
        "{d:?}"
    );
    let (conn, chunk) = asked[0];
    p.handle(Timestamp(1), Input::Connected { conn });
    let mut bytes = hello(Role::Peer);
    bytes.extend(chunk_frame(&data, &manifest, chunk));
    let d = send(&mut p, conn, 2, &bytes);
    assert_eq!(requests(&d).len(), 1, "one answer, one more request: {d:?}");
}

/// Peer `n` (connection number and port) registers `files` with the tracker and locates
/// `name`, which makes it a seeker of that file.
fn join_swarm(t: &mut Tracker, n: u64, files: Vec<SharedFile>, name: &FileName) -> ConnId {
    join_from(t, n, [127, 0, 0, 1], files, name)
}

/// A holder with free slots and nobody waiting says so, and the tracker introduces it to a
/// seeker that lacks some of its chunks: not to the holder itself, not to a seeker that has
/// everything it has, not twice for reports closer than `MIN_IDLE_GAP_MS`, and not for a
/// file the holder does not hold. Saying so before registering closes the connection.
#[test]
fn an_idle_holder_is_introduced_to_a_seeker_that_lacks_its_chunks() {
    use drizzle_core::limits::MIN_IDLE_GAP_MS;
    let mut t = Tracker::new(TrackerConfig::new(1));
    let data = vec![6u8; 64 * 4];
    let full = file("f", &data);
    let root = full.manifest.root();
    let mut partial = full.clone();
    partial.have = ChunkSet::from_indices(4, [0]);
    let say =
        |t: &mut Tracker, conn: ConnId, now: u64, msg: &Message| send(t, conn, now, &encode(msg));
    let holder = join_swarm(&mut t, 1, vec![partial], &full.name);
    let has_all = join_swarm(&mut t, 2, vec![full.clone()], &full.name);
    let lacks = join_swarm(&mut t, 3, vec![], &full.name);
    let idle = Message::Idle { root, free: 2 };
    let d = say(&mut t, holder, 10, &idle);
    let introduced: Vec<ConnId> = d
        .sent
        .iter()
        .filter(|(_, m)| {
            matches!(m, Message::Introduce { root: r, holder: h }
                if *r == root && h.addr == addr(7001) && h.have == ChunkSet::from_indices(4, [0]))
        })
        .map(|(c, _)| *c)
        .collect();
    assert_eq!(introduced, vec![lacks], "{d:?}");
    assert_ne!(introduced, vec![has_all]);
    let again = say(&mut t, holder, 10 + MIN_IDLE_GAP_MS - 1, &idle);
    assert!(again.sent.is_empty(), "{again:?}");
    let other = Message::Idle {
        root: Root([9; 32]),
        free: 2,
    };
    let d = say(&mut t, holder, 10 + 2 * MIN_IDLE_GAP_MS, &other);
    assert!(d.sent.is_empty(), "{d:?}");
    let d = say(&mut t, holder, 10 + 3 * MIN_IDLE_GAP_MS, &idle);
    assert_eq!(d.sent.len(), 1, "{d:?}");
    let stranger = connect(&mut t, 9, 20);
    let mut bytes = hello(Role::Peer);
    bytes.extend(encode(&idle));
    let d = send(&mut t, stranger, 20, &bytes);
    assert!(
        closed_with_reason(&d, stranger, "before the peer registered"),
        "{d:?}"
    );
    assert!(lists_ok(&mut t, 10));
}

/// An introduced holder is asked at once, even when every outbound connection is taken by
/// holders that said `Busy`: the one heard from longest ago is left for it (a free slot
/// serves at once; a place in a busy holder's queue may take long).
#[test]
fn an_introduced_holder_is_asked_even_with_a_full_connection_table() {
    use drizzle_core::limits::MAX_PEER_CONNECTIONS;
    let holders = MAX_PEER_CONNECTIONS as u32 + 1;
    let (manifest, located) = one_chunk_each(holders, holders - 1);
    let root = manifest.root();
    // A download stops opening connections once it waits in a few lines, but holders it is
    // already connected to say `Busy` too: the table is filled here the quick way.
    let unlimited = |f: &mut drizzle_core::FetchPolicy| f.most_lines_waiting = usize::MAX;
    let name = FileName::new("f").unwrap();
    let (mut p, tracker, d) = downloading_with(unlimited, name, manifest, located);
    let waited_longest = d.connects[0].0;
    let connects = answer_each_request(&mut p, &d, 2, 1, |chunk| Message::Busy { root, chunk });
    assert_eq!(connects.len(), MAX_PEER_CONNECTIONS);
    let newcomer = addr(20_000);
    let introduce = introduction(
        root,
        newcomer,
        ChunkSet::from_indices(holders, [holders - 1]),
    );
    let d = send(&mut p, tracker, 100, &encode(&introduce));
    assert_eq!(d.closed, vec![waited_longest], "{d:?}");
    let (conn, _) = *d
        .connects
        .iter()
        .find(|(_, a)| *a == newcomer)
        .expect("connects");
    assert!(
        d.sent.iter().any(|(c, m)| *c == conn
            && matches!(m, Message::GetChunk { chunk, .. } if *chunk == holders - 1)),
        "{d:?}"
    );
    // A malformed introduction (a chunk set of the wrong size) is ignored.
    let bad = introduction(root, addr(20_001), ChunkSet::full(3));
    let d = send(&mut p, tracker, 101, &encode(&bad));
    assert!(d.connects.is_empty() && d.closed.is_empty(), "{d:?}");
}

/// The tracker's introduction of the holder at `addr`, which has `have` of `root`.
fn introduction(root: Root, addr: SocketAddr, have: ChunkSet) -> Message {
    let holder = drizzle_core::wire::LocatedHolder { addr, have };
    Message::Introduce { root, holder }
}

/// A download waiting in `most_lines_waiting` holders' lines (each said `Busy`) opens no
/// connection to another holder: it waits to be called, and asks at once a holder that
/// calls it (`Ready`) or one the tracker introduces as having a free slot.
#[test]
fn a_download_waiting_in_enough_lines_opens_no_new_connection() {
    let holders = 20;
    let (manifest, located) = one_chunk_each(holders, holders - 1);
    let root = manifest.root();
    let most = drizzle_core::FetchPolicy::default().most_lines_waiting;
    let (mut p, tracker, d) = downloading(FileName::new("f").unwrap(), manifest, located);
    let first: Vec<ConnId> = d.connects.iter().map(|(c, _)| *c).collect();
    assert!(first.len() > most, "{d:?}");
    let mut opened = Vec::new();
    for (i, conn) in first.iter().enumerate() {
        let at = 2 + i as u64;
        p.handle(Timestamp(at), Input::Connected { conn: *conn });
        let chunk = chunks_sent(&d, *conn, |m| match m {
            Message::GetChunk { chunk, .. } => Some(*chunk),
            _ => None,
        })[0];
        let mut bytes = hello(Role::Peer);
        bytes.extend(encode(&Message::Busy { root, chunk }));
        opened.push(send(&mut p, *conn, at, &bytes).connects.len());
    }
    // Each of the first `Busy`s frees a request, asked of a holder not yet connected; from
    // the last line on, nothing is opened.
    let mut expected = vec![1; most - 1];
    expected.resize(first.len(), 0);
    assert_eq!(opened, expected);

    // A holder in whose line we wait calls: it is asked on its connection at once.
    let called = first[0];
    let d = send(&mut p, called, 50, &encode(&Message::Ready { root }));
    assert!(
        d.sent
            .iter()
            .any(|(c, m)| *c == called && matches!(m, Message::GetChunk { .. })),
        "{d:?}"
    );
    assert!(d.connects.is_empty(), "{d:?}");

    // The tracker introduces a holder with a free slot: it is connected to and asked.
    let newcomer = addr(20_000);
    let introduce = introduction(
        root,
        newcomer,
        ChunkSet::from_indices(holders, [holders - 1]),
    );
    let d = send(&mut p, tracker, 60, &encode(&introduce));
    assert!(d.connects.iter().any(|(_, a)| *a == newcomer), "{d:?}");
}

/// A holder sharing `data` as "f", registered with its tracker: the peer, the tracker
/// connection and the file's root.
fn sharing(data: &[u8]) -> (Peer, ConnId, Root) {
    sharing_with(PeerConfig::new(addr(1), addr(2), 3), data)
}

/// `sharing` at a peer configured so.
fn sharing_with(config: PeerConfig, data: &[u8]) -> (Peer, ConnId, Root) {
    let manifest = Manifest::from_bytes(data, 64).unwrap();
    let root = manifest.root();
    let mut p = Peer::new(config);
    let name = FileName::new("f").unwrap();
    let share = PeerCommand::Share {
        name,
        manifest,
        have: None,
    };
    p.command(Timestamp(0), share).unwrap();
    p.handle_timeout(Timestamp(0));
    let d = drain(&mut p);
    let (tracker, _) = d.connects[0];
    p.handle(Timestamp(0), Input::Connected { conn: tracker });
    send(&mut p, tracker, 0, &hello(Role::Tracker));
    (p, tracker, root)
}

/// A fetcher `n` (connection and port) asks for `chunks` in one go.
fn fetch(p: &mut Peer, n: u64, now: u64, root: Root, chunks: &[u32]) -> (ConnId, Drained) {
    let conn = ConnId::Inbound(n);
    let remote = addr(9000 + n as u16);
    p.handle(Timestamp(now), Input::Accepted { conn, remote });
    let mut bytes = hello(Role::Peer);
    for chunk in chunks {
        bytes.extend(encode(&Message::GetChunk {
            root,
            chunk: *chunk,
            others: 0,
        }));
    }
    (conn, send(p, conn, now, &bytes))
}

/// When a slot frees and nobody waits for it, the tracker hears that the holder is idle
/// (so that it can send a fetcher); reports that bring nobody are repeated, less often.
#[test]
fn a_free_slot_nobody_waits_for_is_reported_to_the_tracker() {
    let (mut p, tracker, root) = sharing(&[5u8; 64 * 4]);
    let (conn, d) = fetch(&mut p, 1, 1, root, &[0]);
    let (io, _, _) = d.loads[0];
    let data = vec![5u8; 64].into();
    p.handle(
        Timestamp(2),
        Input::Loaded {
            io,
            result: Ok(data),
        },
    );
    drain(&mut p);
    p.handle(
        Timestamp(3),
        Input::Sent {
            conn,
            bytes: usize::MAX,
        },
    );
    drain(&mut p);
    let idle_reports = |p: &mut Peer, now: u64| {
        p.handle_timeout(Timestamp(now));
        let d = drain(p);
        d.sent
            .iter()
            .filter(|(c, m)| {
                *c == tracker && matches!(m, Message::Idle { root: r, .. } if *r == root)
            })
            .map(|(_, m)| m.clone())
            .collect::<Vec<_>>()
    };
    let free = serve().upload_slots as u8;
    assert_eq!(idle_reports(&mut p, 3), vec![Message::Idle { root, free }]);
    assert!(idle_reports(&mut p, 3 + serve().idle_report_gap_ms - 1).is_empty());
    assert_eq!(
        idle_reports(&mut p, 3 + serve().idle_report_gap_ms).len(),
        1
    );
    assert!(idle_reports(&mut p, 3 + 2 * serve().idle_report_gap_ms).is_empty());
    assert_eq!(
        idle_reports(&mut p, 3 + 3 * serve().idle_report_gap_ms).len(),
        1
    );
}

/// Fetchers that arrive together asking for a file in the same order are sent different
/// chunks once the first reads are under way: of a connection's queued requests, the chunk
/// whose upload began least often is read next, so that their first copies can be traded
/// rather than sent twice. (Before, both were sent chunks 0–3 first.)
#[test]
fn fetchers_asking_alike_are_sent_different_chunks_first() {
    let (mut p, _, root) = sharing(&[5u8; 64 * 8]);
    let all: Vec<u32> = (0..8).collect();
    let (_, a) = fetch(&mut p, 1, 1, root, &all);
    let (_, b) = fetch(&mut p, 2, 1, root, &all);
    let mut reads: VecDeque<_> = a.loads.iter().chain(&b.loads).map(|l| l.0).collect();
    let mut served: Vec<(SocketAddr, u32)> = Vec::new();
    while let Some(io) = reads.pop_front() {
        loaded_fives(&mut p, io, 2);
        let d = drain(&mut p);
        reads.extend(d.loads.iter().map(|l| l.0));
        served.extend(d.events.iter().filter_map(|e| match e {
            Event::Served { chunk, to, .. } => Some((*to, *chunk)),
            _ => None,
        }));
    }
    let first_four = |to: SocketAddr| -> BTreeSet<u32> {
        let to_them = served.iter().filter(|(t, _)| *t == to);
        to_them.take(4).map(|(_, c)| *c).collect()
    };
    let (to_a, to_b) = (first_four(addr(9001)), first_four(addr(9002)));
    assert_eq!(to_a.len() + to_b.len(), 8, "{served:?}");
    assert_eq!(
        to_a.union(&to_b).count(),
        6,
        "only the reads begun on arrival repeat: {served:?}"
    );
    assert_eq!(served.len(), 16, "both are sent the whole file: {served:?}");
}

/// A fetcher that asked for many chunks before anyone waited keeps its slot for one turn
/// only once someone does: what it asked for past the turn is answered `Busy`.
#[test]
fn a_deep_pipeline_is_cut_to_one_turn_when_others_wait() {
    let (mut p, _, root) = sharing(&[5u8; 64 * 16]);
    let deep: Vec<u32> = (0..10).collect();
    let (first, d) = fetch(&mut p, 1, 1, root, &deep);
    assert!(
        d.sent
            .iter()
            .all(|(_, m)| !matches!(m, Message::Busy { .. })),
        "{d:?}"
    );
    for n in 2..=serve().upload_slots as u64 {
        fetch(&mut p, n, 2, root, &[10 + n as u32]);
    }
    let (late, d) = fetch(&mut p, 50, 3, root, &[15]);
    let busy = |c: ConnId| {
        chunks_sent(&d, c, |m| match m {
            Message::Busy { chunk, .. } => Some(*chunk),
            _ => None,
        })
    };
    assert_eq!(busy(late), vec![15], "{d:?}");
    let past_turn: Vec<u32> = deep[serve().slot_turn_chunks as usize..].to_vec();
    assert_eq!(busy(first), past_turn, "{d:?}");
}

/// A peer that stores a chunk tells the fetchers it serves and the first
/// `serve().waiters_told_have` waiting for a slot (their chunk maps are seconds stale), and
/// nobody else: not those further back in line, not a fetcher it refused.
#[test]
fn a_new_chunk_is_told_to_the_fetchers_served_and_first_in_line() {
    let (data, manifest, holders) = one_holder_of(8);
    let root = manifest.root();
    let (mut p, _, holder, _) = fetching_from_one_holder(&manifest, holders);
    // The holder sends chunk `chunk`; what `p` sends once it is verified and stored.
    let arrives = |p: &mut Peer, chunk: u32, now: u64| {
        let frame = chunk_frame(&data, &manifest, chunk);
        let (io, bytes) = send(p, holder, now, &frame).hashes[0].clone();
        let digest = drizzle_core::manifest::sha256(&bytes);
        let input = Input::Hashed {
            io,
            digest,
            data: bytes,
        };
        p.handle(Timestamp(now), input);
        let (io, _) = drain(p).stores[0];
        p.handle(Timestamp(now), Input::Stored { io, result: Ok(()) });
        drain(p)
    };
    arrives(&mut p, 0, 2);
    let served: Vec<ConnId> = (1..=serve().upload_slots as u64)
        .map(|n| fetch(&mut p, n, 3, root, &[0]).0)
        .collect();
    let waiting: Vec<ConnId> = (0..=serve().waiters_told_have as u64)
        .map(|i| fetch(&mut p, 100 + i, 4 + i, root, &[0]).0)
        .collect();
    let (refused, d) = fetch(&mut p, 200, 20, root, &[5]);
    assert!(
        d.sent
            .iter()
            .any(|(c, m)| *c == refused && matches!(m, Message::ChunkRefused { .. })),
        "{d:?}"
    );
    let d = arrives(&mut p, 1, 30);
    let told: Vec<ConnId> = d
        .sent
        .iter()
        .filter(|(_, m)| *m == Message::Have { root, chunk: 1 })
        .map(|(c, _)| *c)
        .collect();
    let mut expected = served.clone();
    expected.extend(&waiting[..serve().waiters_told_have]);
    assert_eq!(told, expected, "{d:?}");
}

/// A holder that says it has a new chunk we lack is asked for it at once; a `Have` for a
/// chunk past the end of the file closes its connection.
#[test]
fn a_holder_telling_of_a_new_chunk_is_asked_for_it() {
    let (manifest, located) = one_chunk_each(3, 2);
    let root = manifest.root();
    let (mut p, _, d) = downloading(FileName::new("f").unwrap(), manifest, located);
    let first = d
        .connects
        .iter()
        .find(|(_, a)| *a == addr(10_000))
        .map(|(c, _)| *c)
        .unwrap();
    p.handle(Timestamp(1), Input::Connected { conn: first });
    send(&mut p, first, 1, &hello(Role::Peer));
    let asked = |d: &Drained| {
        chunks_sent(d, first, |m| match m {
            Message::GetChunk { chunk, .. } => Some(*chunk),
            _ => None,
        })
    };
    let d = send(&mut p, first, 2, &encode(&Message::Have { root, chunk: 2 }));
    assert_eq!(asked(&d), vec![2], "{d:?}");
    let d = send(&mut p, first, 3, &encode(&Message::Have { root, chunk: 3 }));
    assert!(closed_with_reason(&d, first, "past the end"), "{d:?}");
}

/// Each free slot an idle holder reports is offered to `TrackerConfig::new(0).introductions_per_free_slot`
/// different seekers (many introduced seekers ask nothing), never more.
#[test]
fn a_free_slot_is_offered_to_more_than_one_seeker() {
    let mut t = Tracker::new(TrackerConfig::new(2));
    let full = file("f", &[6u8; 64 * 4]);
    let root = full.manifest.root();
    let holder = join_swarm(&mut t, 1, vec![full.clone()], &full.name);
    let seekers: Vec<ConnId> = (2..12)
        .map(|n| join_swarm(&mut t, n, vec![], &full.name))
        .collect();
    let d = send(
        &mut t,
        holder,
        10,
        &encode(&Message::Idle { root, free: 1 }),
    );
    let mut introduced: Vec<ConnId> = d
        .sent
        .iter()
        .filter(|(_, m)| matches!(m, Message::Introduce { .. }))
        .map(|(c, _)| *c)
        .collect();
    assert_eq!(
        introduced.len(),
        TrackerConfig::new(0).introductions_per_free_slot,
        "{d:?}"
    );
    assert!(introduced.iter().all(|c| seekers.contains(c)));
    introduced.sort();
    introduced.dedup();
    assert_eq!(
        introduced.len(),
        TrackerConfig::new(0).introductions_per_free_slot
    );
}

/// A chunk is announced (to the tracker, and to fetchers) as soon as its data begins to
/// arrive; a request for it is taken and served once the chunk is stored. Should the
/// transfer fail, requests waiting for it are refused at once. Data for a chunk nobody
/// asked for announces nothing.
#[test]
fn a_chunk_is_announced_as_it_begins_to_arrive() {
    let (data, manifest, holders) = one_holder_of(32);
    let root = manifest.root();
    let turned_away = |d: &Drained, fetcher: ConnId| {
        let refusal =
            |m: &Message| matches!(m, Message::ChunkRefused { .. } | Message::Busy { .. });
        d.sent.iter().any(|(c, m)| *c == fetcher && refusal(m))
    };
    // A peer fetching from one holder: the chunks it asked for first.
    let start = || fetching_from_one_holder(&manifest, holders.clone());
    let frame = |chunk: u32| chunk_frame(&data, &manifest, chunk);
    let announced = |d: &Drained, tracker: ConnId, chunk: u32| {
        d.sent
            .iter()
            .any(|(c, m)| *c == tracker && *m == Message::HaveChunk { root, chunk })
    };
    // The first bytes of a chunk never asked for announce nothing (the frame is judged once
    // whole).
    let (mut p, tracker, holder, asked) = start();
    let unasked = (0..32).find(|c| !asked.contains(c)).unwrap();
    let d = send(&mut p, holder, 2, &frame(unasked)[..50]);
    assert!(!announced(&d, tracker, unasked), "{d:?}");
    let (mut p, tracker, holder, asked) = start();
    let (first, second) = (asked[0], asked[1]);
    let whole = frame(first);
    let cut = whole.len() - 10;
    let d = send(&mut p, holder, 2, &whole[..cut]);
    assert!(announced(&d, tracker, first), "{d:?}");
    // A fetcher asking for it now is neither refused nor served yet.
    let (fetcher, d) = fetch(&mut p, 1, 3, root, &[first]);
    assert!(!turned_away(&d, fetcher), "{d:?}");
    assert!(d.loads.is_empty(), "{d:?}");
    // The rest arrives, is verified and stored: the request is served, the chunk not
    // announced twice.
    let d = send(&mut p, holder, 4, &whole[cut..]);
    let (io, bytes) = d.hashes[0].clone();
    let digest = drizzle_core::manifest::sha256(&bytes);
    p.handle(
        Timestamp(4),
        Input::Hashed {
            io,
            digest,
            data: bytes,
        },
    );
    let (io, _) = drain(&mut p).stores[0];
    p.handle(Timestamp(5), Input::Stored { io, result: Ok(()) });
    let d = drain(&mut p);
    assert!(!announced(&d, tracker, first), "{d:?}");
    assert_eq!(d.loads.len(), 1, "{d:?}");
    // The second chunk begins to arrive and is asked for; then the holder goes away.
    let whole = frame(second);
    let d = send(&mut p, holder, 6, &whole[..whole.len() - 10]);
    assert!(announced(&d, tracker, second), "{d:?}");
    let (fetcher, d) = fetch(&mut p, 2, 7, root, &[second]);
    assert!(!turned_away(&d, fetcher), "{d:?}");
    p.handle(Timestamp(8), Input::Closed { conn: holder });
    let d = drain(&mut p);
    let refused = chunks_sent(&d, fetcher, |m| match m {
        Message::ChunkRefused { chunk, .. } => Some(*chunk),
        _ => None,
    });
    assert_eq!(refused, vec![second], "{d:?}");
}

/// Peer `n` (connection number and port) joins from the IP address `ip` (its host):
/// registers `files` and locates `name`, which makes it a seeker of that file.
fn join_from(
    t: &mut Tracker,
    n: u64,
    ip: [u8; 4],
    files: Vec<SharedFile>,
    name: &FileName,
) -> ConnId {
    join_seeing(t, n, ip, files, name).0
}

/// As `join_from`, with what the tracker sent on hearing it.
fn join_seeing(
    t: &mut Tracker,
    n: u64,
    ip: [u8; 4],
    files: Vec<SharedFile>,
    name: &FileName,
) -> (ConnId, Drained) {
    let conn = ConnId::Inbound(n);
    let remote = SocketAddr::from((ip, 40_000 + n as u16));
    t.handle(Timestamp(1), Input::Accepted { conn, remote });
    let mut bytes = hello(Role::Peer);
    bytes.extend(encode(&Message::Register {
        peer_id: n,
        listen: SocketAddr::from((ip, 7000 + n as u16)),
        files,
    }));
    bytes.extend(encode(&Message::Locate {
        req: 1,
        name: name.clone(),
        known: None,
    }));
    (conn, send(t, conn, 1, &bytes))
}

/// The holders a locate by `conn` at `now` is answered with.
fn located_holders(t: &mut Tracker, conn: ConnId, now: u64, name: &FileName) -> Vec<SocketAddr> {
    let ask = encode(&Message::Locate {
        req: 2,
        name: name.clone(),
        known: None,
    });
    let d = send(t, conn, now, &ask);
    let holders = d.sent.iter().find_map(|(c, m)| match m {
        Message::Located { holders, .. } if *c == conn => Some(holders),
        _ => None,
    });
    let mut addrs: Vec<SocketAddr> = holders.unwrap().iter().map(|h| h.addr).collect();
    addrs.sort();
    addrs
}

fn reports(d: &Drained) -> Vec<u32> {
    d.events
        .iter()
        .filter_map(|e| match e {
            Event::HolderReported { reporters, .. } => Some(*reporters),
            _ => None,
        })
        .collect()
}

/// A holder reported from `REPORTERS_TO_SUSPEND` addresses is handed out to nobody and not
/// introduced either — unless it alone offers some chunk, counting as no source a holder
/// the asker itself reported. One address counts once, reports expire, and reports from a
/// session that never located the file, or on an address that is not a holder, count for
/// nothing: a liar on one host cannot hide an honest holder.
#[test]
fn reported_holders_are_withheld_but_never_the_last_source_of_a_chunk() {
    use drizzle_core::limits::{REPORTERS_TO_SUSPEND, REPORT_TTL_MS};
    use drizzle_core::wire::Complaint;
    assert_eq!(
        REPORTERS_TO_SUSPEND, 3,
        "the test reports from three addresses"
    );
    let mut t = Tracker::new(TrackerConfig::new(1));
    let data = vec![6u8; 64 * 4];
    let full = file("f", &data);
    let (name, root) = (full.name.clone(), full.manifest.root());
    let mut first_three = full.clone();
    first_three.have = ChunkSet::from_indices(4, [0, 1, 2]);
    let doubted = SocketAddr::from(([10, 0, 0, 1], 7001));
    let other = SocketAddr::from(([10, 0, 0, 2], 7002));
    let a = join_from(&mut t, 1, [10, 0, 0, 1], vec![full.clone()], &name);
    let b = join_from(&mut t, 2, [10, 0, 0, 2], vec![full.clone()], &name);
    let r1 = join_from(&mut t, 3, [10, 0, 1, 1], vec![], &name);
    let r1_again = join_from(&mut t, 4, [10, 0, 1, 1], vec![], &name);
    let r2 = join_from(&mut t, 5, [10, 0, 1, 2], vec![], &name);
    let r3 = join_from(&mut t, 6, [10, 0, 1, 3], vec![], &name);
    let bystander = join_from(&mut t, 7, [10, 0, 1, 4], vec![], &name);
    let stranger = join_from(
        &mut t,
        8,
        [10, 0, 1, 5],
        vec![],
        &FileName::new("g").unwrap(),
    );
    let report = |holder, complaint| {
        encode(&Message::Report {
            root,
            holder,
            complaint,
        })
    };
    let both = vec![doubted, other];

    // Not counted: a session that never located the file, an address holding nothing.
    let d = send(&mut t, stranger, 10, &report(doubted, Complaint::Stalled));
    assert_eq!(reports(&d), Vec::<u32>::new(), "{d:?}");
    let nobody = SocketAddr::from(([10, 9, 9, 9], 7000));
    assert_eq!(
        reports(&send(&mut t, r1, 10, &report(nobody, Complaint::Stalled))),
        vec![]
    );

    // One address counts once, however many sessions it opens; below three, nothing changes.
    let d = send(&mut t, r1, 10, &report(doubted, Complaint::Unreachable));
    assert_eq!(reports(&d), vec![1], "{d:?}");
    let d = send(&mut t, r1_again, 12, &report(doubted, Complaint::Refused));
    assert_eq!(reports(&d), vec![1], "{d:?}");
    assert_eq!(
        reports(&send(&mut t, r2, 13, &report(doubted, Complaint::BadData))),
        vec![2]
    );
    assert_eq!(located_holders(&mut t, r1, 14, &name), both);
    assert_eq!(located_holders(&mut t, bystander, 14, &name), both);
    assert_eq!(
        reports(&send(&mut t, r3, 15, &report(doubted, Complaint::Stalled))),
        vec![3]
    );
    assert_eq!(located_holders(&mut t, bystander, 16, &name), vec![other]);
    assert_eq!(located_holders(&mut t, r1, 16, &name), vec![other]);

    // A suspended holder is not introduced when idle.
    let idle = encode(&Message::Idle { root, free: 2 });
    let d = send(&mut t, a, 20, &idle);
    assert!(
        !d.sent
            .iter()
            .any(|(_, m)| matches!(m, Message::Introduce { .. })),
        "{d:?}"
    );

    // Reports expire.
    let later = 15 + REPORT_TTL_MS;
    assert_eq!(located_holders(&mut t, bystander, later, &name), both);

    // Suspended or not, the only source of a chunk is handed out: the only one the asker
    // can count on, or the only one at all.
    for (conn, at) in [(r1, later + 1), (r2, later + 2), (r3, later + 3)] {
        send(&mut t, conn, at, &report(doubted, Complaint::Stalled));
    }
    assert_eq!(
        located_holders(&mut t, bystander, later + 4, &name),
        vec![other]
    );
    send(
        &mut t,
        bystander,
        later + 5,
        &report(other, Complaint::BadData),
    );
    assert_eq!(located_holders(&mut t, bystander, later + 6, &name), both);
    assert_eq!(located_holders(&mut t, r1, later + 6, &name), vec![other]);
    let mut partial = encode(&Message::Unshare { root });
    partial.extend(encode(&Message::Register {
        peer_id: 2,
        listen: other,
        files: vec![first_three],
    }));
    send(&mut t, b, later + 7, &partial);
    assert_eq!(located_holders(&mut t, r1, later + 8, &name), both);
}

/// A fetcher reports a holder that refuses a chunk it was listed as holding, once per
/// holder (a repeated failure costs the tracker nothing more); a refusal that only steers
/// it elsewhere is not reported. A "cancelled" for a request never taken back is a
/// refusal like the others (or a holder could keep the fetcher asking it).
#[test]
fn a_fetcher_reports_a_holder_that_refuses_once_but_not_one_that_steers() {
    use drizzle_core::wire::Complaint;
    let (manifest, located) = one_chunk_each(3, 3);
    let root = manifest.root();
    let (mut p, tracker, d) = downloading(FileName::new("f").unwrap(), manifest, located);
    assert_eq!(d.connects.len(), 3, "{d:?}");
    let mut reported = Vec::new();
    // Holder 10,000 + i holds chunk i (and is connected to in the order of the picks).
    for (conn, holder) in d.connects.iter().copied() {
        let i = holder.port() - 10_000;
        p.handle(Timestamp(2), Input::Connected { conn });
        let because = [
            RefusedBecause::SentOften,
            RefusedBecause::NotHeld,
            RefusedBecause::Cancelled,
        ][usize::from(i)];
        let refusal = |chunk| {
            encode(&Message::ChunkRefused {
                root,
                chunk,
                because,
                reason: "no".into(),
            })
        };
        let mut bytes = hello(Role::Peer);
        bytes.extend(refusal(u32::from(i)));
        // It says it has the chunk after all, is asked again and refuses again.
        bytes.extend(encode(&Message::Have {
            root,
            chunk: u32::from(i),
        }));
        let mut d = send(&mut p, conn, 3, &bytes);
        let asked_again = d
            .sent
            .iter()
            .any(|(c, m)| *c == conn && matches!(m, Message::GetChunk { .. }));
        assert!(asked_again, "{d:?}");
        d.sent
            .extend(send(&mut p, conn, 4, &refusal(u32::from(i))).sent);
        for (c, m) in d.sent {
            if let (
                true,
                Message::Report {
                    holder: h,
                    complaint,
                    root: r,
                },
            ) = (c == tracker, m)
            {
                assert_eq!((r, h), (root, holder));
                reported.push((h, complaint));
            }
        }
    }
    reported.sort();
    let refused = |port| (addr(port), Complaint::Refused);
    assert_eq!(reported, vec![refused(10_001), refused(10_002)]);
}

/// A remote that says why it leaves (`Error`) is let go on our side too — by a peer as by
/// the tracker — without being answered with an error of our own.
#[test]
fn a_remote_that_says_why_it_leaves_is_closed_quietly() {
    let said = |d: &Drained, conn: ConnId| d.sent.iter().any(|(c, _)| *c == conn);
    let leaving = encode(&Message::Error {
        reason: "bye".into(),
    });
    let (mut p, tracker, root) = sharing(&[5u8; 64 * 4]);
    let (fetcher, _) = fetch(&mut p, 1, 1, root, &[]);
    let d = send(&mut p, fetcher, 2, &leaving);
    assert!(d.closed.contains(&fetcher) && !said(&d, fetcher), "{d:?}");
    assert!(d.events.is_empty(), "{d:?}");
    let d = send(&mut p, tracker, 3, &leaving);
    assert!(d.closed.contains(&tracker) && !said(&d, tracker), "{d:?}");

    let mut t = Tracker::new(TrackerConfig::new(1));
    let conn = connect(&mut t, 1, 1);
    register(&mut t, conn, vec![]);
    let d = send(&mut t, conn, 2, &leaving);
    assert!(d.closed.contains(&conn) && !said(&d, conn), "{d:?}");
}

/// The serve and fetch policies these tests' peers run with (the defaults).
fn serve() -> drizzle_core::ServePolicy {
    drizzle_core::ServePolicy::default()
}

fn fetch_policy() -> drizzle_core::FetchPolicy {
    drizzle_core::FetchPolicy::default()
}

/// A tracker of a closed swarm.
fn closed_tracker() -> Tracker {
    let mut config = TrackerConfig::new(1);
    config.security = drizzle_core::secure::Security::Closed {
        key: drizzle_core::secure::SwarmKey::from_bytes([5; 32]),
        secret_seed: [6; 32],
    };
    Tracker::new(config)
}

fn closed_hello() -> Vec<u8> {
    let mut hello = Hello::new(Role::Peer);
    hello.closed = true;
    encode(&Message::Hello(hello))
}

#[test]
fn a_closed_swarm_closes_half_handshakes_in_time() {
    let mut t = closed_tracker();
    let conn = connect(&mut t, 1, 0);
    drain(&mut t);
    let d = send(&mut t, conn, 10, &closed_hello());
    assert!(d.closed.is_empty(), "a hello alone is not yet a fault");
    t.handle_timeout(Timestamp(HELLO_TIMEOUT_MS - 1));
    assert!(drain(&mut t).closed.is_empty());
    t.handle_timeout(Timestamp(HELLO_TIMEOUT_MS + 1));
    assert_eq!(drain(&mut t).closed, vec![conn], "no handshake in time");
}

#[test]
fn a_closed_swarm_refuses_forged_oversized_and_missing_handshakes() {
    let forged = encode(&Message::Handshake { noise: vec![7; 48] });
    let oversized = encode(&Message::Handshake {
        noise: vec![7; 200],
    });
    let not_a_handshake = encode(&Message::ListFiles {
        req: 1,
        after: None,
    });
    let garbage = vec![0xff; 64];
    for (what, bytes) in [
        ("forged", forged),
        ("oversized", oversized),
        ("no handshake", not_a_handshake),
        ("garbage", garbage),
    ] {
        let mut t = closed_tracker();
        let conn = connect(&mut t, 1, 0);
        drain(&mut t);
        let mut stream = closed_hello();
        stream.extend(bytes);
        let d = send(&mut t, conn, 10, &stream);
        assert_eq!(d.closed, vec![conn], "{what}");
        assert!(
            !d.sent
                .iter()
                .any(|(_, m)| matches!(m, Message::FileList { .. })),
            "{what}: nothing answered"
        );
        // And the tracker goes on serving others.
        let other = connect(&mut t, 2, 20);
        assert!(drain(&mut t)
            .sent
            .iter()
            .any(|(c, m)| *c == other && matches!(m, Message::Hello(_))));
    }
}

/// A manifest of the largest file (262,144 chunks, 8 MiB of hashes), distinct per `n`.
fn huge_manifest(n: u8) -> Manifest {
    let chunks = drizzle_core::limits::MAX_CHUNKS_PER_FILE as usize;
    Manifest {
        size: chunks as u64 * 64,
        chunk_size: 64,
        hashes: (0..chunks)
            .map(|i| {
                [n, (i >> 16) as u8, (i >> 8) as u8, i as u8]
                    .repeat(8)
                    .try_into()
                    .unwrap()
            })
            .collect(),
    }
}

#[test]
fn one_address_cannot_fill_the_tracker_with_huge_manifests() {
    let mut t = Tracker::new(TrackerConfig::new(1));
    let conn = connect(&mut t, 1, 0);
    drain(&mut t);
    send(&mut t, conn, 1, &hello(Role::Peer));
    let per_address = drizzle_core::limits::MAX_MANIFEST_BYTES_PER_ADDRESS;
    let fits = (per_address / (8 << 20)) as u8;
    let mut accepted = 0;
    let mut refusals = Vec::new();
    for n in 0..fits + 2 {
        let manifest = huge_manifest(n);
        let msg = Message::Register {
            peer_id: 1,
            listen: addr(7000),
            files: vec![SharedFile {
                name: FileName::new(format!("huge{n}")).unwrap(),
                have: ChunkSet::full(manifest.chunk_count()),
                manifest,
            }],
        };
        for (_, m) in send(&mut t, conn, 2, &encode(&msg)).sent {
            if let Message::Registered {
                accepted: a,
                refused,
            } = m
            {
                accepted += a.len();
                refusals.extend(refused.into_iter().map(|r| r.reason));
            }
        }
    }
    assert_eq!(accepted, usize::from(fits));
    assert_eq!(refusals.len(), 2, "{refusals:?}");
    assert!(refusals[0].contains("limit per address"), "{refusals:?}");
    // Another address is still served, and content already known costs nothing more.
    let other = ConnId::Inbound(2);
    t.handle(
        Timestamp(3),
        Input::Accepted {
            conn: other,
            remote: "10.0.0.2:4000".parse().unwrap(),
        },
    );
    drain(&mut t);
    let mut bytes = hello(Role::Peer);
    let manifest = huge_manifest(0);
    bytes.extend(encode(&Message::Register {
        peer_id: 2,
        listen: addr(7001),
        files: vec![
            file("honest.txt", b"hello"),
            SharedFile {
                name: FileName::new("huge0").unwrap(),
                have: ChunkSet::full(manifest.chunk_count()),
                manifest,
            },
        ],
    }));
    let d = send(&mut t, other, 4, &bytes);
    assert!(d.sent.iter().any(|(_, m)| matches!(m, Message::Registered { accepted, refused } if accepted.len() == 2 && refused.is_empty())), "{:?}", d.sent);
}

/// A fetcher connecting from `ip` asks for `chunk`: its connection, and what it was told.
fn fetch_from(
    p: &mut Peer,
    ip: [u8; 4],
    n: u64,
    now: u64,
    root: Root,
    chunk: u32,
) -> (ConnId, Drained) {
    let conn = ConnId::Inbound(n);
    let remote = SocketAddr::from((ip, 9000 + n as u16));
    p.handle(Timestamp(now), Input::Accepted { conn, remote });
    let mut bytes = hello(Role::Peer);
    bytes.extend(encode(&Message::GetChunk {
        root,
        chunk,
        others: 0,
    }));
    (conn, send(p, conn, now, &bytes))
}

/// One host's connections take every upload slot, stop reading, and queue up for more: the
/// line keeps room for other hosts, the stalled slots are taken back within a second, and
/// the fetcher from another host is called first — while that host's stalled slots stay
/// taken back.
#[test]
fn a_host_that_fills_the_line_and_stalls_its_slots_cannot_starve_another() {
    let (mut p, _, root) = sharing(&[5u8; 64 * 10]);
    let hog = [127, 0, 0, 9];
    let mut hogs = Vec::new();
    for n in 1..=3 {
        let (conn, d) = fetch_from(&mut p, hog, n, 1, root, n as u32);
        loaded_fives(&mut p, d.loads[0].0, 2);
        hogs.push(conn);
    }
    for n in 4..40 {
        fetch_from(&mut p, hog, n, 3, root, (n % 10) as u32);
    }
    assert_eq!(
        p.fetchers_waiting(),
        drizzle_core::limits::MAX_WAITING_PER_ADDRESS
    );
    let (honest, d) = fetch_from(&mut p, [127, 0, 0, 7], 100, 4, root, 0);
    assert!(d
        .sent
        .iter()
        .any(|(c, m)| *c == honest && matches!(m, Message::Busy { .. })));
    assert_eq!(
        p.fetchers_waiting(),
        drizzle_core::limits::MAX_WAITING_PER_ADDRESS + 1
    );
    // The hogs took nothing of what was sent: a second later their slots go, the honest
    // fetcher is called first, and no slot goes back to the hog's address meanwhile.
    let stall = drizzle_core::limits::SLOT_STALL_MS;
    p.handle_timeout(Timestamp(1 + stall - 1));
    assert!(drain(&mut p)
        .sent
        .iter()
        .all(|(_, m)| !matches!(m, Message::Ready { .. })));
    p.handle_timeout(Timestamp(1 + stall));
    let d = drain(&mut p);
    let called: Vec<ConnId> = (d.sent.iter())
        .filter(|(_, m)| matches!(m, Message::Ready { .. }))
        .map(|(c, _)| *c)
        .collect();
    assert_eq!(called, vec![honest], "{d:?}");
    assert_eq!(
        p.upload_slots_in_use(Timestamp(1 + stall)),
        1,
        "only the honest call"
    );
}

/// A fetcher takes back a request still queued: it is answered `Cancelled` and never
/// loaded, and the rest are served in order. Taking back one being loaded, or one never
/// made, changes nothing and closes nothing.
#[test]
fn a_cancelled_request_leaves_the_queue_and_is_answered() {
    let (mut p, _, root) = sharing(&[5u8; 64 * 10]);
    let (conn, d) = fetch(&mut p, 1, 1, root, &[0, 1, 2, 3, 4]);
    let mut loads: Vec<_> = d.loads.iter().map(|(io, _, _)| *io).collect();
    assert_eq!(loads.len(), 2, "two loads at a time: {d:?}");
    let cancel =
        |p: &mut Peer, chunk: u32| send(p, conn, 2, &encode(&Message::Cancel { root, chunk }));
    let d = cancel(&mut p, 3);
    let answered: Vec<_> = (d.sent.iter())
        .filter_map(|(c, m)| match m {
            Message::ChunkRefused { chunk, because, .. } if *c == conn => Some((*chunk, *because)),
            _ => None,
        })
        .collect();
    assert_eq!(answered, [(3, RefusedBecause::Cancelled)], "{d:?}");
    for chunk in [0, 9] {
        let d = cancel(&mut p, chunk);
        assert!(
            d.sent.is_empty() && d.closed.is_empty(),
            "chunk {chunk}: {d:?}"
        );
    }
    let mut served = Vec::new();
    for now in 3..10 {
        let Some(io) = loads.pop() else { break };
        loaded_fives(&mut p, io, now);
        p.handle(
            Timestamp(now),
            Input::Sent {
                conn,
                bytes: usize::MAX,
            },
        );
        let d = drain(&mut p);
        loads.extend(d.loads.iter().map(|(io, _, _)| *io));
        served.extend(d.events.iter().filter_map(|e| match e {
            Event::Served { chunk, .. } => Some(*chunk),
            _ => None,
        }));
    }
    served.sort();
    assert_eq!(served, [0, 1, 2, 4]);
}

/// A fetcher waiting for a slot whose connection closes leaves the line at once: it holds
/// no place that a live fetcher could have (nor one of the first told of a new chunk).
#[test]
fn a_closed_fetcher_leaves_the_line_at_once() {
    let (mut p, _, root) = sharing(&[5u8; 64 * 10]);
    for n in 1..=3 {
        let (_, d) = fetch_from(&mut p, [127, 0, 0, n as u8], n, 1, root, n as u32);
        loaded_fives(&mut p, d.loads[0].0, 2);
    }
    let mut line = Vec::new();
    for n in 4..=6 {
        let (conn, d) = fetch_from(&mut p, [127, 0, 0, n as u8], n, 2, root, 0);
        assert!(d
            .sent
            .iter()
            .any(|(c, m)| *c == conn && matches!(m, Message::Busy { .. })));
        line.push(conn);
    }
    assert_eq!(p.fetchers_waiting(), 3);
    p.handle(Timestamp(3), Input::Closed { conn: line[1] });
    drain(&mut p);
    assert_eq!(p.fetchers_waiting(), 2);
}

/// A full holder steers a fetcher away from a chunk it just sent elsewhere (that copy will
/// spread) — but not when the copy went to a fetcher whose address stalls its slots: that
/// copy goes nowhere, and steering an honest fetcher after it only delays it (line fillers
/// that take one chunk each and stop reading cost an honest `get` up to 2.6 s this way).
#[test]
fn a_copy_sent_to_a_staller_steers_nobody_away() {
    let (mut p, _, root) = sharing(&[5u8; 64 * 10]);
    let (_, d) = fetch_from(&mut p, [127, 0, 0, 9], 1, 1, root, 3);
    loaded_fives(&mut p, d.loads[0].0, 2);
    let refused = |d: &Drained, conn: ConnId| {
        (d.sent.iter()).any(|(c, m)| *c == conn && matches!(m, Message::ChunkRefused { .. }))
    };
    // Before the copy's fetcher shows it stalls, chunk 3 is steered away from.
    let (early, d) = fetch_from(&mut p, [127, 0, 0, 7], 2, 3, root, 3);
    assert!(refused(&d, early), "{d:?}");
    // It takes nothing for a second and loses its slot: its copy no longer steers.
    let stall = drizzle_core::limits::SLOT_STALL_MS;
    p.handle_timeout(Timestamp(1 + stall));
    drain(&mut p);
    let (honest, d) = fetch_from(&mut p, [127, 0, 0, 8], 3, 2 + stall, root, 3);
    assert!(!refused(&d, honest), "{d:?}");
}

/// Thousands of long names that sort first cannot hide a file: the list comes in pages,
/// and the last page has it.
#[test]
fn the_file_list_comes_in_pages_so_no_file_hides_behind_others() {
    let mut t = Tracker::new(TrackerConfig::new(1));
    let flooder = connect(&mut t, 1, 0);
    drain(&mut t);
    let shared = file("x", b"the same content under every name");
    send(&mut t, flooder, 1, &hello(Role::Peer));
    for batch in 0..4 {
        let files = (0..4000)
            .map(|i| SharedFile {
                name: FileName::new(format!("a{batch}{i:05}{}", "-".repeat(200))).unwrap(),
                ..shared.clone()
            })
            .collect();
        let register = encode(&Message::Register {
            peer_id: 1,
            listen: addr(7000),
            files,
        });
        send(&mut t, flooder, 1, &register);
        // Its answers leave, so its next message is read.
        t.handle(
            Timestamp(1),
            Input::Sent {
                conn: flooder,
                bytes: usize::MAX,
            },
        );
    }
    let honest = ConnId::Inbound(2);
    t.handle(
        Timestamp(2),
        Input::Accepted {
            conn: honest,
            remote: "10.0.0.2:4000".parse().unwrap(),
        },
    );
    drain(&mut t);
    let d = register(&mut t, honest, vec![file("zzz.txt", b"honest")]);
    assert!(d
        .sent
        .iter()
        .any(|(_, m)| matches!(m, Message::Registered { refused, .. } if refused.is_empty())));
    let (mut pages, mut seen, mut after) = (0, Vec::new(), None);
    loop {
        t.handle(
            Timestamp(3),
            Input::Sent {
                conn: honest,
                bytes: usize::MAX,
            },
        );
        let ask = encode(&Message::ListFiles {
            req: pages,
            after: after.clone(),
        });
        let d = send(&mut t, honest, 3, &ask);
        let Some((files, more)) = d.sent.into_iter().find_map(|(_, m)| match m {
            Message::FileList { files, more, .. } => Some((files, more)),
            _ => None,
        }) else {
            panic!("no answer to page {pages}");
        };
        pages += 1;
        after = files.last().map(|f| f.name.clone());
        seen.extend(files.into_iter().map(|f| f.name));
        if !more {
            break;
        }
    }
    assert!(
        pages >= 2,
        "the flood is more than one answer: {} names",
        seen.len()
    );
    assert_eq!(seen.len(), 16_001);
    assert_eq!(seen.last().map(FileName::as_str), Some("zzz.txt"));
}

/// A peer listing asks for each next page, after the last name it got, until the last.
#[test]
fn a_peer_asks_for_every_page_of_the_list() {
    let mut p = Peer::new(PeerConfig::new(addr(1), addr(2), 3));
    p.command(Timestamp(0), PeerCommand::List).unwrap();
    p.handle_timeout(Timestamp(0));
    let d = drain(&mut p);
    let tracker = d.connects[0].0;
    p.handle(Timestamp(0), Input::Connected { conn: tracker });
    send(&mut p, tracker, 0, &hello(Role::Tracker));
    let asked = |d: &Drained| {
        d.sent.iter().find_map(|(_, m)| match m {
            Message::ListFiles { req, after } => Some((*req, after.clone())),
            _ => None,
        })
    };
    let (req, after) = asked(&d).expect("the first page is asked");
    assert_eq!(after, None);
    let summary = |name: &str| drizzle_core::wire::FileSummary {
        name: FileName::new(name).unwrap(),
        size: 1,
        chunk_size: 64,
        chunks: 1,
        root: Root([1; 32]),
        peers: 1,
    };
    let page = |req, name: &str, more| {
        encode(&Message::FileList {
            req,
            files: vec![summary(name)],
            more,
        })
    };
    let d = send(&mut p, tracker, 1, &page(req, "a", true));
    assert!(d
        .events
        .iter()
        .any(|e| matches!(e, Event::FileList { more: true, .. })));
    let (req, after) = asked(&d).expect("the next page is asked");
    assert_eq!(after.as_ref().map(FileName::as_str), Some("a"));
    let d = send(&mut p, tracker, 2, &page(req, "b", false));
    assert!(d
        .events
        .iter()
        .any(|e| matches!(e, Event::FileList { more: false, .. })));
    assert_eq!(asked(&d), None, "no page after the last");
}

/// Fetchers that hold every upload slot and take what is sent to them, but far too slowly,
/// lose the slots to a fetcher from another address waiting for one.
#[test]
fn slots_go_from_slow_readers_to_a_waiting_fetcher() {
    let (mut p, _, root) = sharing(&[5u8; 64 * 10]);
    let slow = [127, 0, 0, 9];
    let mut readers = Vec::new();
    for n in 1..=3 {
        let (conn, d) = fetch_from(&mut p, slow, n, 1, root, n as u32);
        loaded_fives(&mut p, d.loads[0].0, 2);
        readers.push(conn);
    }
    let (honest, d) = fetch_from(&mut p, [127, 0, 0, 7], 100, 3, root, 0);
    assert!(d
        .sent
        .iter()
        .any(|(c, m)| *c == honest && matches!(m, Message::Busy { .. })));
    // Each takes a byte every 100 ms, never silent for a second (and never done).
    let mut called = Vec::new();
    for step in 1..=45u64 {
        let now = 3 + step * 100;
        for conn in &readers {
            p.handle(
                Timestamp(now),
                Input::Sent {
                    conn: *conn,
                    bytes: 1,
                },
            );
        }
        p.handle_timeout(Timestamp(now));
        let d = drain(&mut p);
        called.extend(
            d.sent
                .iter()
                .filter(|(_, m)| matches!(m, Message::Ready { .. }))
                .map(|(c, _)| (now, *c)),
        );
    }
    let window = drizzle_core::limits::SLOT_PACE_WINDOW_MS;
    assert!(
        matches!(called.first(), Some((at, c)) if *c == honest && *at <= 3 + 2 * window + 100),
        "{called:?}"
    );
}

/// Once a holder's copy fails verification, what it still sends is dropped unhashed: a
/// liar costs one hash, not one per chunk it was asked for.
#[test]
fn a_holder_caught_lying_is_not_hashed_again() {
    let (_, manifest, mut holders) = one_holder_of(8);
    holders.push(drizzle_core::wire::LocatedHolder {
        addr: addr(10),
        have: ChunkSet::full(8),
    });
    let (mut p, _tracker, d) = downloading(FileName::new("f").unwrap(), manifest.clone(), holders);
    let liar = d.connects.iter().find(|(_, a)| *a == addr(9)).unwrap().0;
    for (conn, _) in &d.connects {
        p.handle(Timestamp(1), Input::Connected { conn: *conn });
    }
    let get_chunk = |m: &Message| match m {
        Message::GetChunk { chunk, .. } => Some(*chunk),
        _ => None,
    };
    let owed = chunks_sent(&d, liar, get_chunk);
    assert!(
        owed.len() >= 2,
        "the liar is asked for several chunks: {owed:?}"
    );
    let lie = |chunk: u32| {
        let (_, len) = manifest.chunk_range(chunk).unwrap();
        encode(&Message::ChunkData {
            root: manifest.root(),
            chunk,
            data: vec![0xee; len as usize].into(),
        })
    };
    let first = send(&mut p, liar, 2, &[hello(Role::Peer), lie(owed[0])].concat());
    let [(io, bytes)] = first.hashes.as_slice() else {
        panic!("one copy hashed: {first:?}")
    };
    let digest = drizzle_core::manifest::sha256(bytes);
    let (io, data_back) = (*io, bytes.clone());
    p.handle(
        Timestamp(3),
        Input::Hashed {
            io,
            digest,
            data: data_back,
        },
    );
    let caught = drain(&mut p);
    assert!(caught
        .events
        .iter()
        .any(|e| matches!(e, Event::Mismatch { .. })));
    for (i, chunk) in owed.iter().enumerate().skip(1) {
        let late = send(&mut p, liar, 4 + i as u64, &lie(*chunk));
        assert!(
            late.hashes.is_empty(),
            "chunk {chunk} from a known liar was hashed"
        );
    }
}

/// A sharer that has nothing to ask its tracker still tells it it is alive, and a tracker
/// that goes silent (a host gone without a word, a NAT that dropped the mapping) is left
/// and connected to again rather than trusted for ever.
#[test]
fn a_peer_keeps_its_session_alive_and_leaves_a_silent_tracker() {
    let (mut p, tracker, _) = sharing(b"some bytes to share");
    let registered = Message::Registered {
        accepted: vec![FileName::new("f").unwrap()],
        refused: vec![],
    };
    send(&mut p, tracker, 10, &encode(&registered));
    let last_heard = 10 + KEEPALIVE_MS;
    let mut keepalives = Vec::new();
    let mut now = 10;
    let mut closed_at = None;
    while closed_at.is_none() {
        now = p.poll_timeout().expect("a timer is armed").as_ms().max(now);
        let silent_for = now.saturating_sub(last_heard);
        assert!(
            silent_for <= SESSION_SILENT_MS,
            "still trusting a silent tracker at {now}"
        );
        p.handle_timeout(Timestamp(now));
        let d = drain(&mut p);
        keepalives.extend(
            (d.sent.iter())
                .filter(|(c, m)| *c == tracker && *m == Message::Keepalive)
                .map(|_| now),
        );
        if d.closed.contains(&tracker) {
            closed_at = Some(now);
        }
        // The first keepalive is answered; then the tracker says nothing more.
        if keepalives.len() == 1 && now == 10 + KEEPALIVE_MS {
            send(&mut p, tracker, now, &encode(&Message::Keepalive));
        }
    }
    assert_eq!(keepalives.first(), Some(&(10 + KEEPALIVE_MS)));
    assert_eq!(
        keepalives.get(1),
        Some(&(last_heard + KEEPALIVE_MS)),
        "{keepalives:?}"
    );
    assert_eq!(closed_at, Some(last_heard + SESSION_SILENT_MS));
    let reconnect = (0..10).find_map(|_| {
        let at = p.poll_timeout()?;
        p.handle_timeout(at);
        drain(&mut p).connects.first().map(|(_, a)| *a)
    });
    assert_eq!(reconnect, Some(addr(1)), "it connects to the tracker again");
}

/// What the operator's metrics count moves with what the tracker does: registers, chunks
/// newly recorded (a chunk announced twice counts once), locates, introductions, the bytes
/// of every answer, and connections closed by why. Everything shown in `/metrics` and on
/// the live page comes from here.
#[test]
fn the_tracker_counts_what_it_does_for_its_operator() {
    use drizzle_core::TrackerCounters;
    let mut t = Tracker::new(TrackerConfig::new(1));
    let full = file("f", &[6u8; 64 * 4]);
    let root = full.manifest.root();
    let mut partial = full.clone();
    partial.have = ChunkSet::from_indices(4, [0]);
    let holder = join_swarm(&mut t, 1, vec![partial], &full.name);
    let seeker = join_swarm(&mut t, 2, vec![], &full.name);
    let mut answered = 0;
    let mut say = |t: &mut Tracker, conn: ConnId, msg: &Message| {
        let d = send(t, conn, 10, &encode(msg));
        answered += d.sent.len();
        d
    };
    let have = |chunk| Message::HaveChunk { root, chunk };
    say(&mut t, seeker, &have(2));
    say(&mut t, seeker, &have(2));
    say(&mut t, holder, &have(1));
    let d = say(&mut t, holder, &Message::Idle { root, free: 1 });
    assert_eq!(d.sent.len(), 1, "the seeker lacks chunk 0: {d:?}");
    say(
        &mut t,
        seeker,
        &Message::ListFiles {
            req: 3,
            after: None,
        },
    );
    let breaker = connect(&mut t, 3, 11);
    send(&mut t, breaker, 11, &[0xff; 64]);
    connect(&mut t, 4, 11); // and says nothing
    t.handle_timeout(Timestamp(11 + drizzle_core::limits::REGISTER_TIMEOUT_MS));
    let c = t.counters().clone();
    let bytes = c.answer_bytes;
    assert!(bytes > 0 && answered > 0);
    let expected = TrackerCounters {
        registers: 2,
        files_refused: 0,
        chunks_registered: 3,
        locates: 2,
        file_lists: 1,
        reports: 0,
        introductions: 1,
        answer_bytes: bytes,
        closed_violation: 1,
        closed_timeout: 1,
        closed_unauthorised: 0,
    };
    assert_eq!(c, expected);
    let peers: Vec<SocketAddr> = t.peers().map(|(s, _)| s.listen()).collect();
    assert_eq!(peers, vec![addr(7001), addr(7002)]);
    let held: Vec<u32> = t.holdings_by_ref().map(|(_, _, h)| h.count()).collect();
    assert_eq!(held, vec![2, 1]);
}

/// A chunk asked of two holders (the endgame) and delivered by both is used once; the
/// second copy is counted as duplicate bytes (an operator's measure of what duplicating
/// costs, `drizzle_peer_duplicate_bytes_total`).
#[test]
fn a_second_copy_of_a_chunk_is_counted_as_duplicate() {
    let (data, manifest, mut holders) = one_holder_of(1);
    holders.push(drizzle_core::wire::LocatedHolder {
        addr: addr(10),
        have: ChunkSet::full(1),
    });
    let (mut p, _tracker, d) = downloading(FileName::new("f").unwrap(), manifest.clone(), holders);
    for (conn, _) in &d.connects {
        p.handle(Timestamp(1), Input::Connected { conn: *conn });
    }
    let get_chunk = |m: &Message| match m {
        Message::GetChunk { chunk, .. } => Some(*chunk),
        _ => None,
    };
    let asked: Vec<ConnId> = (d.connects.iter())
        .filter(|(conn, _)| chunks_sent(&d, *conn, get_chunk) == vec![0])
        .map(|(conn, _)| *conn)
        .collect();
    assert_eq!(
        asked.len(),
        2,
        "the one chunk is asked of both holders: {d:?}"
    );
    let copy = [hello(Role::Peer), chunk_frame(&data, &manifest, 0)].concat();
    let first = send(&mut p, asked[0], 2, &copy);
    assert_eq!(first.hashes.len(), 1);
    assert_eq!(p.duplicate_bytes(), 0);
    let second = send(&mut p, asked[1], 3, &copy);
    assert!(
        second.hashes.is_empty(),
        "the second copy is not hashed: {second:?}"
    );
    assert_eq!(p.duplicate_bytes(), 64);
}

/// A newcomer that holds nothing of a file it first locates is introduced, with an empty
/// chunk set, to a few seekers that hold nothing yet, and they to it: neighbours, which
/// connect and `Watch` each other before either has a chunk. Not seekers that hold some,
/// not on a refresh of the chunk map, and never more than `TrackerConfig::neighbours`.
#[test]
fn a_newcomer_is_introduced_to_neighbours_that_hold_nothing_yet() {
    let mut t = Tracker::new(TrackerConfig::new(1));
    let full = file("f", &[6u8; 64 * 4]);
    let root = full.manifest.root();
    let mut partial = full.clone();
    partial.have = ChunkSet::from_indices(4, [0]);
    let ip = [127, 0, 0, 1];
    let _seeder = join_swarm(&mut t, 1, vec![full.clone()], &full.name);
    let _holds_some = join_swarm(&mut t, 2, vec![partial], &full.name);
    let neighbours = TrackerConfig::new(1).neighbours;
    let seekers: Vec<ConnId> = (0..neighbours as u64 + 2)
        .map(|i| join_swarm(&mut t, 10 + i, vec![], &full.name))
        .collect();
    let (newcomer, d) = join_seeing(&mut t, 50, ip, vec![], &full.name);
    let introductions: Vec<(ConnId, SocketAddr)> = d
        .sent
        .iter()
        .filter_map(|(c, m)| match m {
            Message::Introduce { root: r, holder } if *r == root => {
                assert!(holder.have.is_empty(), "{holder:?}");
                Some((*c, holder.addr))
            }
            _ => None,
        })
        .collect();
    let to_newcomer: Vec<SocketAddr> = (introductions.iter())
        .filter(|(c, _)| *c == newcomer)
        .map(|(_, a)| *a)
        .collect();
    assert_eq!(to_newcomer.len(), neighbours, "{introductions:?}");
    let seeker_addrs: Vec<SocketAddr> = seekers
        .iter()
        .map(|c| {
            let ConnId::Inbound(n) = c else {
                unreachable!()
            };
            SocketAddr::from((ip, 7000 + *n as u16))
        })
        .collect();
    assert!(to_newcomer.iter().all(|a| seeker_addrs.contains(a)));
    let newcomer_addr = SocketAddr::from((ip, 7050));
    let told_of_it = (introductions.iter()).filter(|(c, a)| *c != newcomer && *a == newcomer_addr);
    assert_eq!(told_of_it.count(), neighbours, "{introductions:?}");
    // A refresh introduces nobody.
    let refresh = encode(&Message::Locate {
        req: 3,
        name: full.name.clone(),
        known: Some(root),
    });
    let d = send(&mut t, newcomer, 2, &refresh);
    assert!(
        !d.sent
            .iter()
            .any(|(_, m)| matches!(m, Message::Introduce { .. })),
        "{d:?}"
    );
}

/// A neighbour introduced with nothing is connected and asked to `Watch`; a peer watched
/// tells its watchers of each chunk as it begins to arrive (`Have`), at most
/// `MAX_WATCHERS_PER_FILE` (16) of them, and a `Watch` for a file it lacks is ignored.
#[test]
fn neighbours_watch_each_other_and_hear_of_chunks_as_they_arrive() {
    let (data, manifest, holders) = one_holder_of(32);
    let root = manifest.root();
    let (mut p, tracker, holder, asked) = fetching_from_one_holder(&manifest, holders);
    let (first, second) = (asked[0], asked[1]);
    // Introduced to a neighbour holding nothing: connected, and watched.
    let neighbour = addr(20_000);
    let introduce = introduction(root, neighbour, ChunkSet::empty(32));
    let d = send(&mut p, tracker, 2, &encode(&introduce));
    let (conn, _) = *d
        .connects
        .iter()
        .find(|(_, a)| *a == neighbour)
        .expect("connects");
    let asks: Vec<&(ConnId, Message)> = (d.sent.iter())
        .filter(|(_, m)| !matches!(m, Message::Hello(_)))
        .collect();
    assert_eq!(asks, vec![&(conn, Message::Watch { root })], "{d:?}");
    // Seventeen neighbours watch it, and one watches a file it does not have.
    let watch = |p: &mut Peer, n: u64, root: Root| {
        let conn = ConnId::Inbound(n);
        let remote = addr(9000 + n as u16);
        p.handle(Timestamp(3), Input::Accepted { conn, remote });
        let mut bytes = hello(Role::Peer);
        bytes.extend(encode(&Message::Watch { root }));
        let d = send(p, conn, 3, &bytes);
        assert!(d.closed.is_empty(), "{d:?}");
        conn
    };
    let watchers: Vec<ConnId> = (1..=17).map(|n| watch(&mut p, n, root)).collect();
    let stranger = watch(&mut p, 30, Root([7; 32]));
    // A chunk begins to arrive: the first sixteen watchers hear of it.
    let told_of = |p: &mut Peer, chunk: u32, now: u64| -> Vec<ConnId> {
        let whole = chunk_frame(&data, &manifest, chunk);
        let d = send(p, holder, now, &whole[..whole.len() - 10]);
        (d.sent.iter())
            .filter(|(_, m)| *m == Message::Have { root, chunk })
            .map(|(c, _)| *c)
            .collect()
    };
    let told = told_of(&mut p, first, 4);
    assert_eq!(told, watchers[..16].to_vec());
    assert!(!told.contains(&stranger));
    // A watcher that leaves makes room for another. (The rest of the first chunk comes
    // first: a holder's frames arrive in order.)
    let whole = chunk_frame(&data, &manifest, first);
    send(&mut p, holder, 5, &whole[whole.len() - 10..]);
    p.handle(Timestamp(5), Input::Closed { conn: watchers[0] });
    let late = watch(&mut p, 40, root);
    let told = told_of(&mut p, second, 6);
    assert!(
        told.contains(&late) && !told.contains(&watchers[0]),
        "{told:?}"
    );
    assert_eq!(told.len(), 16);
}
