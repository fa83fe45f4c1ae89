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
