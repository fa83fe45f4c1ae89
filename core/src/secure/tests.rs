use super::*;
use crate::bytes::Bytes;
use crate::manifest::Root;
use crate::wire::{encode, encode_chunk_data, Message};

fn key(byte: u8) -> SwarmKey {
    SwarmKey::from_bytes([byte; 32])
}

/// An initiator and a responder, handshake done (or the responder's error).
fn pair(
    initiator_key: &SwarmKey,
    responder_key: &SwarmKey,
) -> Result<(Channel, Channel), SealError> {
    let mut a = Channel::new(initiator_key, [1; 32], true);
    let mut b = Channel::new(responder_key, [2; 32], false);
    let first = a.first_message().expect("an initiator speaks first");
    let answer = b.read_handshake(&first)?.expect("a responder answers");
    assert_eq!(a.read_handshake(&answer)?, None);
    Ok((a, b))
}

fn sealed_decoder() -> FrameDecoder {
    let mut d = FrameDecoder::new();
    d.hello_done();
    d
}

fn messages(d: &mut FrameDecoder) -> Vec<Message> {
    let mut out = Vec::new();
    while let Some(m) = d.next_message().unwrap() {
        out.push(m);
    }
    out
}

#[test]
fn keys_parse_from_the_hex_the_tracker_prints() {
    let k = key(0xab);
    assert_eq!(
        SwarmKey::from_hex(&format!(" {}\n", k.to_hex())),
        Ok(k.clone())
    );
    assert_eq!(SwarmKey::from_hex(&k.to_hex()[1..]), Err(KeyError));
    assert_eq!(SwarmKey::from_hex(&"g".repeat(64)), Err(KeyError));
    assert_eq!(format!("{k:?}"), "SwarmKey(…)");
}

#[test]
fn frames_cross_sealed_in_both_directions_split_anywhere() {
    let (mut a, mut b) = pair(&key(7), &key(7)).unwrap();
    let payload: Vec<u8> = (0..300_000u32).map(|i| (i * 7 + i / 251) as u8).collect();
    let [header, data] = encode_chunk_data(Root([3; 32]), 5, Bytes::from(payload.clone()));
    let mut plain = encode(&Message::ListFiles {
        req: 9,
        after: None,
    });
    plain.extend_from_slice(&header);
    plain.extend_from_slice(&data);
    let wire = a.seal(&plain).unwrap();
    assert!(wire.len() > plain.len(), "records add prefixes and tags");
    for split in [1, 2, 17, 1000, 65_537, 131_000] {
        let (mut a2, mut b2) = pair(&key(7), &key(7)).unwrap();
        let wire = a2.seal(&plain).unwrap();
        let mut d = sealed_decoder();
        for piece in wire.chunks(split) {
            b2.open(piece, &mut d).unwrap();
        }
        let got = messages(&mut d);
        assert_eq!(got.len(), 2, "split {split}");
        assert_eq!(
            got[1],
            Message::ChunkData {
                root: Root([3; 32]),
                chunk: 5,
                data: payload.clone().into()
            }
        );
        // And back.
        let reply = b2
            .seal(&encode(&Message::ListFiles {
                req: 10,
                after: None,
            }))
            .unwrap();
        let mut d = sealed_decoder();
        a2.open(&reply, &mut d).unwrap();
        assert_eq!(
            messages(&mut d),
            vec![Message::ListFiles {
                req: 10,
                after: None
            }]
        );
    }
    let mut d = sealed_decoder();
    b.open(&wire, &mut d).unwrap();
    assert_eq!(messages(&mut d).len(), 2);
}

#[test]
fn the_wire_never_carries_the_plain_bytes() {
    let (mut a, _) = pair(&key(7), &key(7)).unwrap();
    let secret = b"the plaintext of a file that nobody on the path may read".repeat(100);
    let wire = a.seal(&secret).unwrap();
    assert!(!wire.windows(16).any(|w| secret.windows(16).any(|s| s == w)));
}

#[test]
fn a_wrong_key_is_refused_by_the_responder() {
    assert_eq!(pair(&key(7), &key(8)).err(), Some(SealError::WrongKey));
}

#[test]
fn a_flipped_bit_fails_authentication() {
    let (mut a, mut b) = pair(&key(7), &key(7)).unwrap();
    let mut wire = a
        .seal(&encode(&Message::ListFiles {
            req: 1,
            after: None,
        }))
        .unwrap();
    let last = wire.len() - 1;
    wire[last] ^= 1;
    let mut d = sealed_decoder();
    assert_eq!(b.open(&wire, &mut d), Err(SealError::Tampered));
    assert!(!b.is_sealed(), "a broken channel takes nothing more");
    assert!(b.open(&[], &mut d).is_err());
}

#[test]
fn a_replayed_handshake_cannot_be_followed_by_recorded_records() {
    let mut a = Channel::new(&key(7), [1; 32], true);
    let mut b = Channel::new(&key(7), [2; 32], false);
    let first = a.first_message().unwrap();
    let answer = b.read_handshake(&first).unwrap().unwrap();
    a.read_handshake(&answer).unwrap();
    let recorded = a
        .seal(&encode(&Message::ListFiles {
            req: 1,
            after: None,
        }))
        .unwrap();
    // An eavesdropper replays both to a fresh responder (fresh ephemeral key).
    let mut c = Channel::new(&key(7), [3; 32], false);
    c.read_handshake(&first).unwrap();
    let mut d = sealed_decoder();
    assert_eq!(c.open(&recorded, &mut d), Err(SealError::Tampered));
}

#[test]
fn bytes_queued_during_the_handshake_are_held_then_sealed() {
    let mut a = Channel::new(&key(7), [1; 32], true);
    let mut b = Channel::new(&key(7), [2; 32], false);
    let first = a.first_message().unwrap();
    assert_eq!(
        a.seal(&encode(&Message::ListFiles {
            req: 4,
            after: None
        })),
        None
    );
    let answer = b.read_handshake(&first).unwrap().unwrap();
    assert_eq!(a.take_held(), None, "not before the handshake is done");
    a.read_handshake(&answer).unwrap();
    let wire = a.take_held().unwrap();
    let mut d = sealed_decoder();
    b.open(&wire, &mut d).unwrap();
    assert_eq!(
        messages(&mut d),
        vec![Message::ListFiles {
            req: 4,
            after: None
        }]
    );
    assert_eq!(a.take_held(), None);
}

#[test]
fn records_before_the_handshake_or_garbage_handshakes_are_refused() {
    let mut b = Channel::new(&key(7), [2; 32], false);
    assert_eq!(
        b.open(&[0, 20], &mut sealed_decoder()),
        Err(SealError::Early)
    );
    let mut b = Channel::new(&key(7), [2; 32], false);
    assert!(b.read_handshake(&[0u8; 7]).is_err());
    let mut b = Channel::new(&key(7), [2; 32], false);
    assert!(b.read_handshake(&[0u8; MAX_HANDSHAKE_BYTES + 1]).is_err());
    let mut a = Channel::new(&key(7), [1; 32], true);
    assert!(
        a.read_handshake(&[0u8; 48]).is_err(),
        "the initiator speaks first"
    );
}

/// What a driver and its machine do: read at most `read` bytes at a time, into the receive
/// window when the channel offers one, else through the driver's own buffer, and decode the
/// messages after each read. The messages, and how many reads used a window.
fn receive_as_a_driver(
    channel: &mut Channel,
    mut wire: &[u8],
    read: usize,
    d: &mut FrameDecoder,
) -> Result<(Vec<Message>, usize), SealError> {
    let (mut got, mut in_window) = (Vec::new(), 0);
    while !wire.is_empty() {
        let (now, later) = match channel.receive_window(d) {
            Some(window) => {
                let n = window.len().min(read).min(wire.len());
                window[..n].copy_from_slice(&wire[..n]);
                channel.opened_in_window(n, d)?;
                in_window += 1;
                wire.split_at(n)
            }
            None => {
                let (now, later) = wire.split_at(read.min(wire.len()));
                channel.open(now, d)?;
                (now, later)
            }
        };
        let _ = now;
        wire = later;
        got.extend(messages(d));
    }
    Ok((got, in_window))
}

fn chunk_then_list(payload: &[u8]) -> Vec<u8> {
    let [header, data] = encode_chunk_data(Root([3; 32]), 5, Bytes::from(payload.to_vec()));
    let mut plain = header.to_vec();
    plain.extend_from_slice(&data);
    plain.extend_from_slice(&encode(&Message::ListFiles {
        req: 9,
        after: None,
    }));
    plain
}

#[test]
fn a_payload_is_opened_where_the_driver_read_it() {
    let payload: Vec<u8> = (0..1_500_000u32).map(|i| (i * 7 + i / 251) as u8).collect();
    let plain = chunk_then_list(&payload);
    for read in [1000, 65_537, 100_000, 262_144, 1 << 20] {
        let (mut a, mut b) = pair(&key(7), &key(7)).unwrap();
        let wire = a.seal(&plain).unwrap();
        let mut d = sealed_decoder();
        let (got, windows) = receive_as_a_driver(&mut b, &wire, read, &mut d).unwrap();
        assert!(read < 65_537 || windows > 0, "read {read}: no window used");
        assert_eq!(got.len(), 2, "read {read}");
        assert_eq!(
            got[0],
            Message::ChunkData {
                root: Root([3; 32]),
                chunk: 5,
                data: payload.clone().into()
            },
            "read {read}"
        );
    }
}

#[test]
fn a_flipped_bit_read_into_the_window_fails_authentication() {
    let payload = vec![5u8; 1 << 20];
    let (mut a, mut b) = pair(&key(7), &key(7)).unwrap();
    let mut wire = a.seal(&chunk_then_list(&payload)).unwrap();
    wire[500_000] ^= 1;
    let mut d = sealed_decoder();
    let got = receive_as_a_driver(&mut b, &wire, 262_144, &mut d);
    assert_eq!(got.err(), Some(SealError::Tampered));
    assert!(!b.is_sealed());
    assert!(
        b.receive_window(&mut d).is_none(),
        "a broken channel offers nothing"
    );
}

/// The records are Noise transport messages exactly as snow makes them, both ways: the
/// in-place record layer is only a faster road to the same bytes.
#[test]
fn records_are_the_noise_messages_snow_makes() {
    let (mut a, mut b) = pair(&key(7), &key(7)).unwrap();
    // The same handshake again, by snow alone (same key, same ephemeral seeds).
    let mut init = handshake(&key(7), [1; 32], true).unwrap();
    let mut resp = handshake(&key(7), [2; 32], false).unwrap();
    let (mut m1, mut m2, mut p) = ([0u8; 128], [0u8; 128], [0u8; 128]);
    let n1 = init.write_message(&[], &mut m1).unwrap();
    resp.read_message(&m1[..n1], &mut p).unwrap();
    let n2 = resp.write_message(&[], &mut m2).unwrap();
    init.read_message(&m2[..n2], &mut p).unwrap();
    let mut init = init.into_transport_mode().unwrap();
    let mut resp = resp.into_transport_mode().unwrap();

    let plain: Vec<u8> = (0..200_000u32).map(|i| (i % 253) as u8).collect();
    let snow_wire = |t: &mut snow::TransportState| {
        let mut wire = Vec::new();
        for piece in plain.chunks(65_535 - 16) {
            let mut msg = vec![0u8; 65_535];
            let n = t.write_message(piece, &mut msg).unwrap();
            wire.extend_from_slice(&(n as u16).to_be_bytes());
            wire.extend_from_slice(&msg[..n]);
        }
        wire
    };
    assert_eq!(a.seal(&plain).unwrap(), snow_wire(&mut init));
    let from_b = b.seal(&plain).unwrap();
    assert_eq!(from_b, snow_wire(&mut resp));
    let mut d = sealed_decoder();
    a.open(&from_b, &mut d).unwrap();
    // And what snow seals next, the channel opens.
    let list = encode(&Message::ListFiles {
        req: 3,
        after: None,
    });
    let mut msg = vec![0u8; 1024];
    let n = resp.write_message(&list, &mut msg).unwrap();
    let mut wire = (n as u16).to_be_bytes().to_vec();
    wire.extend_from_slice(&msg[..n]);
    let mut d = sealed_decoder();
    a.open(&wire, &mut d).unwrap();
    assert_eq!(
        messages(&mut d),
        vec![Message::ListFiles {
            req: 3,
            after: None
        }]
    );
}

#[test]
fn a_payload_read_into_record_bodies_seals_to_the_same_wire_bytes() {
    for len in [0, 1, 65_519, 65_520, 131_038, 1 << 20] {
        let plain: Vec<u8> = (0..len).map(|i| (i % 241) as u8).collect();
        let spread = spread_into_records(&plain);
        assert_eq!(spread.len(), records_len(len));
        let bodies: Vec<_> = record_bodies(len).collect();
        assert_eq!(bodies.iter().map(|b| b.len()).sum::<usize>(), len);
        assert!(bodies.iter().all(|b| b.end <= spread.len()));
        let (mut a, _) = pair(&key(7), &key(7)).unwrap();
        let (mut a2, mut b2) = pair(&key(7), &key(7)).unwrap();
        let copied = a.seal(&plain).unwrap();
        let in_place = a2.seal_in_place(spread, len).unwrap();
        assert_eq!(in_place, copied, "{len} bytes");
        // And it opens, after records sealed the usual way.
        let mut d = sealed_decoder();
        b2.open(&in_place, &mut d).unwrap();
    }
    let (mut a, _) = pair(&key(7), &key(7)).unwrap();
    assert_eq!(
        a.seal_in_place(vec![0; 10], 10),
        None,
        "not laid out as records"
    );
}
