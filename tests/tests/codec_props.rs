//! Properties of the wire: every message survives encoding and any split of the stream,
//! and no byte sequence a stranger sends makes the decoder or either machine panic or
//! buffer more than the frame limit allows.

// Test code: a panic here is how a failure is reported.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;

use drizzle_core::limits::MAX_FRAME_BYTES;
use drizzle_core::machine::{Input, Machine, Received};
use drizzle_core::wire::{
    encode, encode_chunk_data, FrameDecoder, Hello, LocatedHolder, Message, Role,
};
use drizzle_core::{
    ChunkSet, ConnId, FileName, Manifest, Peer, PeerConfig, Root, Timestamp, Tracker, TrackerConfig,
};
use proptest::prelude::*;
use std::net::SocketAddr;

fn name() -> impl Strategy<Value = FileName> {
    "[a-z]{1,8}(/[a-zé]{1,8}){0,2}".prop_map(|s| FileName::new(s).unwrap())
}

fn root() -> impl Strategy<Value = Root> {
    any::<[u8; 32]>().prop_map(Root)
}

fn message() -> impl Strategy<Value = Message> {
    prop_oneof![
        Just(Message::Hello(Hello::new(Role::Peer))),
        (any::<u32>(), prop::option::of(name()))
            .prop_map(|(req, after)| Message::ListFiles { req, after }),
        (any::<u32>(), name(), prop::option::of(root()))
            .prop_map(|(req, name, known)| Message::Locate { req, name, known }),
        (any::<u32>(), name(), root()).prop_map(|(req, name, root)| Message::Holders {
            req,
            name,
            root,
            holders: vec![LocatedHolder {
                addr: SocketAddr::from(([10, 0, 0, 1], 9)),
                have: ChunkSet::from_indices(70, [0, 69]),
            }],
        }),
        (root(), any::<u32>()).prop_map(|(root, chunk)| Message::HaveChunk { root, chunk }),
        (root(), any::<u32>(), any::<u8>()).prop_map(|(root, chunk, others)| {
            Message::GetChunk {
                root,
                chunk,
                others,
            }
        }),
        (root(), any::<u32>()).prop_map(|(root, chunk)| Message::Busy { root, chunk }),
        root().prop_map(|root| Message::Ready { root }),
        (root(), any::<u8>()).prop_map(|(root, free)| Message::Idle { root, free }),
        root().prop_map(|root| Message::Introduce {
            root,
            holder: LocatedHolder {
                addr: SocketAddr::from(([10, 0, 0, 2], 7)),
                have: ChunkSet::from_indices(9, [3, 8]),
            },
        }),
        (root(), any::<u32>()).prop_map(|(root, chunk)| Message::Have { root, chunk }),
        root().prop_map(|root| Message::Watch { root }),
        (
            root(),
            any::<u32>(),
            prop::collection::vec(any::<u8>(), 0..3000)
        )
            .prop_map(|(root, chunk, data)| Message::ChunkData {
                root,
                chunk,
                data: data.into()
            }),
        (
            any::<u32>(),
            name(),
            prop::collection::vec(any::<u8>(), 0..2000),
            0u32..5
        )
            .prop_map(|(req, name, data, holders)| {
                let manifest = Manifest::from_bytes(&data, 256).unwrap();
                let count = manifest.chunk_count();
                let holders = (0..holders)
                    .map(|i| LocatedHolder {
                        addr: SocketAddr::from(([127, 0, 0, 1], 7000 + i as u16)),
                        have: ChunkSet::from_indices(
                            count,
                            (0..count).filter(|c| c % (i + 1) == 0),
                        ),
                    })
                    .collect();
                Message::Located {
                    req,
                    name,
                    manifest,
                    holders,
                }
            }),
        ".{0,40}".prop_map(|reason| Message::Error { reason }),
    ]
}

/// Feeds `bytes` cut at `cuts`, as the kinds of driver do: piece `i` goes first into the
/// decoder's receive window, as far as one is offered, when bit `i % 64` of `via_window` is
/// set; the rest is handed over as `Bytes` (`push_bytes`) when bit `i % 64` of `hand_over`
/// is set, else lent (`push`).
fn feed_all(
    decoder: &mut FrameDecoder,
    bytes: &[u8],
    cuts: &[usize],
    (hand_over, via_window): (u64, u64),
) -> Result<Vec<Message>, String> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut points: Vec<usize> = cuts.iter().map(|c| c % (bytes.len() + 1)).collect();
    points.sort_unstable();
    points.push(bytes.len());
    for (i, end) in points.into_iter().enumerate() {
        let mut piece = &bytes[start..end.max(start)];
        while via_window >> (i % 64) & 1 == 1 && !piece.is_empty() {
            let Some(window) = decoder.receive_window() else {
                break;
            };
            let n = window.len().min(piece.len());
            window[..n].copy_from_slice(&piece[..n]);
            decoder.received_in_window(n);
            piece = &piece[n..];
        }
        if hand_over >> (i % 64) & 1 == 1 {
            decoder.push_bytes(piece.to_vec().into());
        } else {
            decoder.push(piece);
        }
        start = end.max(start);
        while let Some(m) = decoder.next_message().map_err(|e| e.to_string())? {
            if matches!(m, Message::Hello(_)) {
                decoder.hello_done();
            }
            out.push(m);
        }
    }
    Ok(out)
}

fn peer() -> Peer {
    let addr = |p| SocketAddr::from(([127, 0, 0, 1], p));
    Peer::new(PeerConfig::new(addr(1), addr(2), 9))
}

proptest! {
    #![proptest_config(common::persisted(512))]

    /// Cut anywhere — or also where a sender's parts end (a chunk's header, its payload),
    /// which is where handed-over payloads are kept whole — and read into the decoder's
    /// window, lent or handed over.
    #[test]
    fn messages_round_trip_in_any_split(
        msgs in prop::collection::vec(message(), 1..6),
        mut cuts in prop::collection::vec(any::<usize>(), 0..8),
        at_parts in any::<bool>(),
        hand_over in any::<u64>(),
        via_window in any::<u64>(),
    ) {
        let mut stream = encode(&Message::Hello(Hello::new(Role::Tracker)));
        let mut parts_end = vec![stream.len()];
        for m in &msgs {
            let parts = match m {
                Message::ChunkData { root, chunk, data } => {
                    encode_chunk_data(*root, *chunk, data.clone()).map(|p| p.to_vec())
                }
                other => [encode(other), Vec::new()],
            };
            for part in parts {
                stream.extend(part);
                parts_end.push(stream.len());
            }
        }
        if at_parts {
            cuts.extend(parts_end);
        }
        let feeding = (hand_over, via_window);
        let got = feed_all(&mut FrameDecoder::new(), &stream, &cuts, feeding).unwrap();
        prop_assert_eq!(&got[1..], &msgs[..]);
    }

    #[test]
    fn arbitrary_bytes_never_panic_the_decoder(
        bytes in prop::collection::vec(any::<u8>(), 0..4096),
        cuts in prop::collection::vec(any::<usize>(), 0..8),
        hello_first in any::<bool>(),
        hand_over in any::<u64>(),
        via_window in any::<u64>(),
    ) {
        let mut stream = if hello_first { encode(&Message::Hello(Hello::new(Role::Peer))) } else { Vec::new() };
        stream.extend(bytes);
        let mut decoder = FrameDecoder::new();
        let _ = feed_all(&mut decoder, &stream, &cuts, (hand_over, via_window));
        prop_assert!(decoder.buffered() <= stream.len());
    }

    /// Both machines take arbitrary bytes on a connection (after a valid hello or not)
    /// without panicking, and close that connection when the bytes are not protocol.
    #[test]
    fn machines_survive_arbitrary_bytes(
        bytes in prop::collection::vec(any::<u8>(), 0..2048),
        cuts in prop::collection::vec(0usize..2048, 0..6),
        hello_first in any::<bool>(),
    ) {
        let mut stream = if hello_first { encode(&Message::Hello(Hello::new(Role::Peer))) } else { Vec::new() };
        stream.extend(bytes);
        let mut points: Vec<usize> = cuts.into_iter().filter(|c| *c < stream.len()).collect();
        points.sort_unstable();
        points.push(stream.len());
        let remote = SocketAddr::from(([127, 0, 0, 9], 4000));
        let mut tracker = Tracker::new(TrackerConfig::new(1));
        let mut peer = peer();
        let machines: [&mut dyn Machine; 2] = [&mut tracker, &mut peer];
        for m in machines {
            let conn = ConnId::Inbound(1);
            m.handle(Timestamp(0), Input::Accepted { conn, remote });
            let mut start = 0;
            for end in &points {
                m.handle(Timestamp(1), Input::Received { conn, data: Received::Slice(&stream[start..*end]) });
                start = *end;
                while let Some(out) = m.poll_output() {
                    if let drizzle_core::Output::Send { bytes, .. } = out {
                        prop_assert!(bytes.len() <= MAX_FRAME_BYTES + 4);
                    }
                }
            }
            m.handle(Timestamp(2), Input::Closed { conn });
            while m.poll_output().is_some() {}
        }
    }
}

#[test]
fn a_huge_length_prefix_is_refused_without_allocating() {
    let mut d = FrameDecoder::new();
    d.push(&encode(&Message::Hello(Hello::new(Role::Peer))));
    assert!(d.next_message().unwrap().is_some());
    d.hello_done();
    d.push(&u32::MAX.to_le_bytes());
    assert!(d.next_message().is_err());
    assert!(d.buffered() <= 4);
}
