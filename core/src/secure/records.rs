//! A sealed connection's records: Noise transport messages (AES-256-GCM, nonces counted
//! from zero per direction, no associated data), each behind a 2-byte length on the wire.
//! Sealed and opened in place with ring, where snow's API copies every record twice.

use super::SealError;
use crate::wire::FrameDecoder;
use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM};
use std::ops::{Range, RangeFrom};

/// Length prefix of a record: a big-endian `u16`, Noise's own message limit.
pub(super) const RECORD_PREFIX_BYTES: usize = 2;
/// A Noise message is at most this long, its 16-byte tag included.
const MAX_RECORD_BYTES: usize = 65_535;
const TAG_BYTES: usize = 16;
/// Plain bytes per record.
const MAX_RECORD_PLAIN_BYTES: usize = MAX_RECORD_BYTES - TAG_BYTES;
/// A full record on the wire, prefix included.
pub(super) const FULL_RECORD_BYTES: usize = RECORD_PREFIX_BYTES + MAX_RECORD_BYTES;

/// The wire bytes of `plain_len` plain bytes sealed as one run of records.
pub fn records_len(plain_len: usize) -> usize {
    plain_len + plain_len.div_ceil(MAX_RECORD_PLAIN_BYTES) * (RECORD_PREFIX_BYTES + TAG_BYTES)
}

/// Where each record's plain bytes lie in the `records_len(plain_len)` wire bytes of one
/// run of records. A driver reads a payload into these ranges (`Layout::Records`), and the
/// channel seals it where it lies, with no copy.
pub fn record_bodies(plain_len: usize) -> impl Iterator<Item = Range<usize>> {
    (0..plain_len)
        .step_by(MAX_RECORD_PLAIN_BYTES)
        .enumerate()
        .map(move |(record, at)| {
            let start = record * FULL_RECORD_BYTES + RECORD_PREFIX_BYTES;
            start..start + (plain_len - at).min(MAX_RECORD_PLAIN_BYTES)
        })
}

/// `plain` laid out over `record_bodies`, as a driver that holds its bytes in memory
/// answers a `Layout::Records` load.
pub fn spread_into_records(plain: &[u8]) -> Vec<u8> {
    let mut wire = vec![0u8; records_len(plain.len())];
    let pieces = plain.chunks(MAX_RECORD_PLAIN_BYTES);
    for (body, piece) in record_bodies(plain.len()).zip(pieces) {
        if let Some(dst) = wire.get_mut(body) {
            dst.copy_from_slice(piece);
        }
    }
    wire
}

/// Both directions of a sealed connection, keyed by the handshake's split.
pub(super) struct Records {
    send: Cipher,
    receive: Cipher,
}

impl Records {
    /// `split` is the handshake's pair of keys: the first for what the initiator sends.
    pub fn new(split: ([u8; 32], [u8; 32]), initiator: bool) -> Result<Records, SealError> {
        let (to_responder, to_initiator) = split;
        let (send, receive) = if initiator {
            (to_responder, to_initiator)
        } else {
            (to_initiator, to_responder)
        };
        Ok(Records {
            send: Cipher::new(&send)?,
            receive: Cipher::new(&receive)?,
        })
    }

    /// The wire bytes of `plain`, sealed into as many records as it needs.
    pub fn seal(&mut self, plain: &[u8]) -> Result<Vec<u8>, SealError> {
        let mut wire = Vec::with_capacity(records_len(plain.len()));
        for piece in plain.chunks(MAX_RECORD_PLAIN_BYTES) {
            let start = wire.len();
            wire.extend_from_slice(&[0; RECORD_PREFIX_BYTES]);
            wire.extend_from_slice(piece);
            wire.extend_from_slice(&[0; TAG_BYTES]);
            self.send.seal(wire.get_mut(start..).unwrap_or_default())?;
        }
        Ok(wire)
    }

    /// Seals `plain_len` plain bytes laid out over `record_bodies` where they lie: the
    /// same wire bytes `seal` makes of them.
    pub fn seal_in_place(&mut self, wire: &mut [u8], plain_len: usize) -> Result<(), SealError> {
        if wire.len() != records_len(plain_len) {
            return Err(SealError::Records("bytes not laid out as records"));
        }
        for body in record_bodies(plain_len) {
            let record = body.start - RECORD_PREFIX_BYTES..body.end + TAG_BYTES;
            self.send.seal(wire.get_mut(record).unwrap_or_default())?;
        }
        Ok(())
    }

    /// Opens the whole records at the front of `wire` into `decoder` (into its receive
    /// window when the record's plain bytes all belong there); how many bytes they took.
    pub fn open(
        &mut self,
        wire: &[u8],
        decoder: &mut FrameDecoder,
        scratch: &mut Vec<u8>,
    ) -> Result<usize, SealError> {
        let mut used = 0;
        while let Some(record) = whole_record(wire.get(used..).unwrap_or_default()) {
            let body = record.get(RECORD_PREFIX_BYTES..).unwrap_or_default();
            match decoder.receive_window().filter(|w| w.len() >= body.len()) {
                Some(window) => {
                    let in_out = window.get_mut(..body.len()).unwrap_or_default();
                    in_out.copy_from_slice(body);
                    let n = self.receive.open(in_out, 0..)?;
                    decoder.received_in_window(n);
                }
                None => {
                    scratch.clear();
                    scratch.extend_from_slice(body);
                    let n = self.receive.open(scratch, 0..)?;
                    decoder.push(scratch.get(..n).unwrap_or_default());
                }
            }
            used += record.len();
        }
        Ok(used)
    }

    /// Opens, where they lie, the whole records among the first `filled` wire bytes of
    /// `window` (the decoder's receive window, read into by the driver), moving each
    /// record's plain bytes down over the prefixes and tags before it. The plain bytes
    /// all belong to the window: a record reaching past it is never whole in it. Returns
    /// how many plain bytes are at the window's start, and where the unopened rest begins.
    pub fn open_in_place(
        &mut self,
        window: &mut [u8],
        filled: usize,
    ) -> Result<(usize, usize), SealError> {
        let filled = filled.min(window.len());
        let (mut plain, mut at) = (0, 0);
        while let Some(record) = whole_record(window.get(at..filled).unwrap_or_default()) {
            let end = at + record.len();
            let in_out = window.get_mut(plain..end).unwrap_or_default();
            plain += self
                .receive
                .open(in_out, at + RECORD_PREFIX_BYTES - plain..)?;
            at = end;
        }
        Ok((plain, at))
    }
}

/// The record at the front of `wire`, prefix included, if it is all there.
fn whole_record(wire: &[u8]) -> Option<&[u8]> {
    wire.get(..RECORD_PREFIX_BYTES + record_len(wire)?)
}

/// The body length a record's prefix at the front of `wire` announces, once it is whole.
pub(super) fn record_len(wire: &[u8]) -> Option<usize> {
    let prefix = wire.get(..RECORD_PREFIX_BYTES)?;
    let prefix = <[u8; RECORD_PREFIX_BYTES]>::try_from(prefix).ok()?;
    Some(u16::from_be_bytes(prefix) as usize)
}

/// One direction: Noise's CipherState for AESGCM.
struct Cipher {
    key: LessSafeKey,
    nonce: u64,
}

impl Cipher {
    fn new(key: &[u8; 32]) -> Result<Cipher, SealError> {
        let key = UnboundKey::new(&AES_256_GCM, key)
            .map_err(|_| SealError::Records("AES-256-GCM is unavailable"))?;
        Ok(Cipher {
            key: LessSafeKey::new(key),
            nonce: 0,
        })
    }

    /// Noise's nonce for AESGCM: 32 zero bits, then the counter, big-endian. Noise
    /// reserves the counter's last value, so a connection that reaches it ends.
    fn next_nonce(&mut self) -> Result<Nonce, SealError> {
        if self.nonce == u64::MAX {
            return Err(SealError::Records(
                "the connection used up its record counter",
            ));
        }
        let mut nonce = [0u8; 12];
        for (byte, counter) in nonce.iter_mut().skip(4).zip(self.nonce.to_be_bytes()) {
            *byte = counter;
        }
        self.nonce += 1;
        Ok(Nonce::assume_unique_for_key(nonce))
    }

    /// Seals one record where it lies: `record` is its prefix, its plain bytes, and room
    /// for its tag; the prefix and tag are written, the plain bytes encrypted.
    fn seal(&mut self, record: &mut [u8]) -> Result<(), SealError> {
        let nonce = self.next_nonce()?;
        let len = u16::try_from(record.len().saturating_sub(RECORD_PREFIX_BYTES))
            .map_err(|_| SealError::Records("a record longer than Noise allows"))?;
        let (prefix, rest) = record.split_at_mut(RECORD_PREFIX_BYTES.min(record.len()));
        prefix.copy_from_slice(&len.to_be_bytes());
        let (body, tag_room) = rest.split_at_mut(rest.len().saturating_sub(TAG_BYTES));
        let tag = (self
            .key
            .seal_in_place_separate_tag(nonce, Aad::empty(), body))
        .map_err(|_| SealError::Records("a record could not be sealed"))?;
        tag_room.copy_from_slice(tag.as_ref());
        Ok(())
    }

    /// Opens the record body (cipher text and tag) at `in_out[body]`, its plain bytes
    /// written at the start of `in_out`; how many there are.
    fn open(&mut self, in_out: &mut [u8], body: RangeFrom<usize>) -> Result<usize, SealError> {
        let nonce = self.next_nonce()?;
        match self.key.open_within(nonce, Aad::empty(), in_out, body) {
            Ok(plain) => Ok(plain.len()),
            Err(_) => Err(SealError::Tampered),
        }
    }
}
