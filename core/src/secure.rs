//! Closed swarms: the swarm key, the handshake that proves both ends hold it, and the
//! record layer that encrypts and authenticates every byte after it (Noise NNpsk0, by
//! `snow`; records in `records.rs`). Sans-IO like the rest: bytes in, bytes out, ephemeral
//! keys from a seeded generator that the driver fills from the OS (and the simulator from
//! its seed).

use crate::wire::FrameDecoder;
use rand::{RngCore, SeedableRng};
use rand_chacha::ChaCha20Rng;
use snow::params::{CipherChoice, DHChoice, HashChoice, NoiseParams};
use snow::resolvers::{CryptoResolver, DefaultResolver, RingResolver};
use snow::types::{Cipher, Dh, Hash, Random};
use snow::HandshakeState;
use std::fmt;

mod records;
pub use records::{record_bodies, records_len, spread_into_records};
use records::{record_len, Records, FULL_RECORD_BYTES, RECORD_PREFIX_BYTES};

/// Both ends hold the swarm key (the pre-shared key, mixed in before anything is sent) and
/// make fresh ephemeral keys, so every connection gets its own session keys and a recorded
/// connection cannot be replayed or read later. AES-GCM: with AES-NI the fastest choice
/// measured here (SECURITY.md, "What it costs").
const NOISE_PARAMS: &str = "Noise_NNpsk0_25519_AESGCM_SHA256";
/// Binds the handshake to this protocol, so a key cannot be confused with another use.
const PROLOGUE: &[u8] = b"drizzle closed swarm v1";
/// A handshake message is an ephemeral key and a tag: never more than this.
pub const MAX_HANDSHAKE_BYTES: usize = 128;
/// What a responder says when the initiator's first handshake message does not
/// authenticate: part of the protocol, so the initiator can say "wrong swarm key".
pub const WRONG_KEY_REASON: &str = "wrong swarm key";

/// The secret shared by every member of a closed swarm: 256 random bits.
#[derive(Clone, PartialEq, Eq)]
pub struct SwarmKey([u8; 32]);

/// A swarm key that is not 64 hexadecimal digits.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("a swarm key is 64 hexadecimal digits (the tracker prints it as `swarm key KEY`)")]
pub struct KeyError;

impl SwarmKey {
    pub fn from_bytes(bytes: [u8; 32]) -> SwarmKey {
        SwarmKey(bytes)
    }

    /// Parses the 64 hex digits the tracker prints (surrounding whitespace ignored).
    pub fn from_hex(text: &str) -> Result<SwarmKey, KeyError> {
        let text = text.trim().as_bytes();
        if text.len() != 64 {
            return Err(KeyError);
        }
        let mut key = [0u8; 32];
        for (byte, pair) in key.iter_mut().zip(text.chunks(2)) {
            let digit = |c: u8| (c as char).to_digit(16).ok_or(KeyError);
            let (hi, lo) = match pair {
                [hi, lo] => (digit(*hi)?, digit(*lo)?),
                _ => return Err(KeyError),
            };
            *byte = (hi * 16 + lo) as u8;
        }
        Ok(SwarmKey(key))
    }

    pub fn to_hex(&self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }
}

/// Never printed by accident: logs and panics show that a key is there, not what it is.
impl fmt::Debug for SwarmKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SwarmKey(…)")
    }
}

/// Whether a machine's swarm is closed (every connection keyed and encrypted) or open.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Security {
    /// No key: anyone may connect, and everything travels in the clear.
    #[default]
    Open,
    /// Only holders of `key` connect. `secret_seed` seeds the ephemeral keys: the real
    /// driver draws it from the OS and never logs it; the simulator derives it from its
    /// seed (so a simulated run stays reproducible).
    Closed {
        key: SwarmKey,
        secret_seed: [u8; 32],
    },
}

impl Security {
    pub fn is_closed(&self) -> bool {
        matches!(self, Security::Closed { .. })
    }
}

/// A machine's side of closed swarms: makes each connection's channel.
#[derive(Debug)]
pub(crate) struct Keyring {
    key: SwarmKey,
    rng: ChaCha20Rng,
}

impl Keyring {
    /// `None` for an open swarm.
    pub fn new(security: &Security) -> Option<Keyring> {
        match security {
            Security::Open => None,
            Security::Closed { key, secret_seed } => Some(Keyring {
                key: key.clone(),
                rng: ChaCha20Rng::from_seed(*secret_seed),
            }),
        }
    }

    /// The channel of a new connection; `initiator` for the side that connected.
    pub fn channel(&mut self, initiator: bool) -> Channel {
        let mut seed = [0u8; 32];
        self.rng.fill_bytes(&mut seed);
        Channel::new(&self.key, seed, initiator)
    }
}

/// Why a channel cannot go on. Always ends the connection.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SealError {
    #[error("{WRONG_KEY_REASON}")]
    WrongKey,
    #[error("the handshake failed: {0}")]
    Handshake(String),
    #[error("a record failed authentication (tampered with, or not from this connection)")]
    Tampered,
    #[error("a record arrived before the handshake finished")]
    Early,
    #[error("sealed records failed: {0}")]
    Records(&'static str),
}

/// One connection's security: a Noise handshake, then records. Plain bytes queued before
/// the handshake is done are held and sealed the moment it is.
pub(crate) struct Channel {
    state: State,
    initiator: bool,
    /// Plain bytes to send, held until the handshake is done.
    held: Vec<u8>,
    /// The front of a record split between reads (never more than one record).
    rx: Vec<u8>,
    /// Whether `rx` was copied to the start of the receive window last offered.
    staged: bool,
    scratch: Vec<u8>,
}

enum State {
    Handshaking(Box<HandshakeState>),
    Sealed(Box<Records>),
    /// Broken (a failed handshake or record): nothing more goes in or out.
    Failed,
}

impl fmt::Debug for Channel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match self.state {
            State::Handshaking(_) => "handshaking",
            State::Sealed(_) => "sealed",
            State::Failed => "failed",
        };
        f.debug_struct("Channel")
            .field("state", &state)
            .field("initiator", &self.initiator)
            .field("held", &self.held.len())
            .field("rx", &self.rx.len())
            .finish()
    }
}

impl Channel {
    fn new(key: &SwarmKey, seed: [u8; 32], initiator: bool) -> Channel {
        let state = match handshake(key, seed, initiator) {
            Ok(hs) => State::Handshaking(Box::new(hs)),
            Err(e) => {
                // Only a build without the primitives gets here; refuse rather than fall
                // back to anything weaker.
                log::error!("cannot start a Noise handshake: {e}");
                State::Failed
            }
        };
        Channel {
            state,
            initiator,
            held: Vec::new(),
            rx: Vec::new(),
            staged: false,
            scratch: Vec::new(),
        }
    }

    // ---- getters ----

    /// Whether the handshake is done and records flow.
    pub fn is_sealed(&self) -> bool {
        matches!(self.state, State::Sealed(_))
    }

    /// Received bytes waiting to become a whole record.
    pub fn buffered(&self) -> usize {
        self.rx.len()
    }

    // ---- the handshake ----

    /// The initiator's first handshake message (`-> psk, e`); `None` for a responder.
    pub fn first_message(&mut self) -> Option<Vec<u8>> {
        let State::Handshaking(hs) = &mut self.state else {
            return None;
        };
        if !self.initiator {
            return None;
        }
        let mut msg = vec![0u8; MAX_HANDSHAKE_BYTES];
        match hs.write_message(&[], &mut msg) {
            Ok(len) => {
                msg.truncate(len);
                Some(msg)
            }
            Err(e) => {
                log::error!("cannot write a handshake message: {e}");
                self.state = State::Failed;
                None
            }
        }
    }

    /// Takes the remote's handshake message. A responder answers it (the returned message);
    /// either side is then sealed. A responder that cannot authenticate the message says
    /// `WrongKey`: the remote does not hold the swarm key.
    pub fn read_handshake(&mut self, msg: &[u8]) -> Result<Option<Vec<u8>>, SealError> {
        let state = std::mem::replace(&mut self.state, State::Failed);
        let State::Handshaking(mut hs) = state else {
            return Err(SealError::Handshake("unexpected handshake message".into()));
        };
        if hs.is_my_turn() || msg.len() > MAX_HANDSHAKE_BYTES {
            return Err(SealError::Handshake("unexpected handshake message".into()));
        }
        let mut payload = [0u8; MAX_HANDSHAKE_BYTES];
        if let Err(e) = hs.read_message(msg, &mut payload) {
            return Err(match (self.initiator, e) {
                (false, snow::Error::Decrypt) => SealError::WrongKey,
                (_, e) => SealError::Handshake(e.to_string()),
            });
        }
        let answer = if !hs.is_handshake_finished() {
            let mut answer = vec![0u8; MAX_HANDSHAKE_BYTES];
            let len = (hs.write_message(&[], &mut answer))
                .map_err(|e| SealError::Handshake(e.to_string()))?;
            answer.truncate(len);
            Some(answer)
        } else {
            None
        };
        if !hs.is_handshake_finished() {
            return Err(SealError::Handshake("the handshake did not finish".into()));
        }
        let records = Records::new(hs.dangerously_get_raw_split(), self.initiator)?;
        self.state = State::Sealed(Box::new(records));
        Ok(answer)
    }

    // ---- records ----

    /// The wire bytes for `plain`, sealed into records; `None` while the handshake is not
    /// done (the bytes are held, and come out of `take_held` when it is).
    pub fn seal(&mut self, plain: &[u8]) -> Option<Vec<u8>> {
        let State::Sealed(records) = &mut self.state else {
            self.held.extend_from_slice(plain);
            return None;
        };
        let sealed = records.seal(plain);
        match self.failing(sealed) {
            Ok(wire) => Some(wire),
            Err(e) => {
                log::error!("{e}");
                Some(Vec::new())
            }
        }
    }

    /// Seals, where they lie, `plain_len` plain bytes a driver read into `record_bodies` of
    /// `wire` (`Layout::Records`); `None` unless the handshake is done and they are laid
    /// out so.
    pub fn seal_in_place(&mut self, mut wire: Vec<u8>, plain_len: usize) -> Option<Vec<u8>> {
        let State::Sealed(records) = &mut self.state else {
            return None;
        };
        let sealed = records.seal_in_place(&mut wire, plain_len);
        match self.failing(sealed) {
            Ok(()) => Some(wire),
            Err(e) => {
                log::error!("{e}");
                None
            }
        }
    }

    /// What was held back during the handshake, sealed; `None` if nothing was.
    pub fn take_held(&mut self) -> Option<Vec<u8>> {
        if self.held.is_empty() || !self.is_sealed() {
            return None;
        }
        let held = std::mem::take(&mut self.held);
        self.seal(&held)
    }

    /// Takes received wire bytes and opens every whole record among them into `decoder`.
    pub fn open(&mut self, wire: &[u8], decoder: &mut FrameDecoder) -> Result<(), SealError> {
        self.staged = false;
        let State::Sealed(records) = &mut self.state else {
            return Err(SealError::Early);
        };
        let opened = open_split(records, &mut self.rx, wire, decoder, &mut self.scratch);
        self.failing(opened)
    }

    /// Where the driver may read the next wire bytes straight into: the decoder's window
    /// for a chunk payload, with the front of a split record copied to its start, when a
    /// whole record fits there after it. The records are opened where they lie
    /// (`opened_in_window`), sparing a copy of most of a payload's bytes.
    pub fn receive_window<'d>(&mut self, decoder: &'d mut FrameDecoder) -> Option<&'d mut [u8]> {
        self.staged = false;
        if !self.is_sealed() {
            return None;
        }
        let window = decoder.receive_window()?;
        let front = self.rx.len();
        if window.len() < front + FULL_RECORD_BYTES {
            return None;
        }
        let (staged, rest) = window.split_at_mut(front);
        staged.copy_from_slice(&self.rx);
        self.staged = true;
        Some(rest)
    }

    /// The driver read `len` wire bytes into the window `receive_window` offered last.
    pub fn opened_in_window(
        &mut self,
        len: usize,
        decoder: &mut FrameDecoder,
    ) -> Result<(), SealError> {
        let opened = self.open_window(len, decoder);
        self.failing(opened)
    }

    /// A record that fails to seal or open breaks the channel: nothing more goes in or out.
    fn failing<T>(&mut self, result: Result<T, SealError>) -> Result<T, SealError> {
        if result.is_err() {
            self.state = State::Failed;
        }
        result
    }

    fn open_window(&mut self, len: usize, decoder: &mut FrameDecoder) -> Result<(), SealError> {
        let State::Sealed(records) = &mut self.state else {
            return Err(SealError::Early);
        };
        if !std::mem::take(&mut self.staged) {
            return Err(SealError::Records("bytes read into a window never offered"));
        }
        let window = decoder
            .receive_window()
            .ok_or(SealError::Records("the window is gone"))?;
        let (plain, opened) = records.open_in_place(window, self.rx.len() + len)?;
        let split = window.get(opened..self.rx.len() + len).unwrap_or_default();
        self.rx.clear();
        self.rx.extend_from_slice(split);
        decoder.received_in_window(plain);
        Ok(())
    }
}

/// Opens the record split between earlier reads and `wire`, then the whole records of
/// `wire`, and keeps the front of the next one in `rx`. Only a split record is copied into
/// `rx`: reads rarely end on a record's boundary, and copying every read after the first
/// split one cost a copy of every byte received.
fn open_split(
    records: &mut Records,
    rx: &mut Vec<u8>,
    mut wire: &[u8],
    decoder: &mut FrameDecoder,
    scratch: &mut Vec<u8>,
) -> Result<(), SealError> {
    while !rx.is_empty() && !wire.is_empty() {
        let (front, rest) = wire.split_at(split_record_missing(rx).min(wire.len()));
        rx.extend_from_slice(front);
        wire = rest;
        if split_record_missing(rx) == 0 {
            let used = records.open(rx, decoder, scratch)?;
            rx.drain(..used);
        }
    }
    if rx.is_empty() {
        let used = records.open(wire, decoder, scratch)?;
        rx.extend_from_slice(wire.get(used..).unwrap_or_default());
    }
    Ok(())
}

/// How many more bytes the record begun in `rx` needs before its length prefix, then its
/// body, is whole (0 when it is whole).
fn split_record_missing(rx: &[u8]) -> usize {
    match record_len(rx) {
        None => RECORD_PREFIX_BYTES.saturating_sub(rx.len()),
        Some(len) => (RECORD_PREFIX_BYTES + len).saturating_sub(rx.len()),
    }
}

fn handshake(
    key: &SwarmKey,
    seed: [u8; 32],
    initiator: bool,
) -> Result<HandshakeState, snow::Error> {
    let params: NoiseParams = NOISE_PARAMS.parse()?;
    let resolver = Box::new(Resolver { seed });
    let builder = snow::Builder::with_resolver(params, resolver)
        .psk(0, &key.0)?
        .prologue(PROLOGUE)?;
    if initiator {
        builder.build_initiator()
    } else {
        builder.build_responder()
    }
}

/// snow's primitives, but the ephemeral keys drawn from our seeded generator: core draws no
/// OS randomness, and the simulator's handshakes replay byte for byte.
struct Resolver {
    seed: [u8; 32],
}

struct SeededRandom(ChaCha20Rng);

impl Random for SeededRandom {
    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), snow::Error> {
        self.0.fill_bytes(dest);
        Ok(())
    }
}

impl CryptoResolver for Resolver {
    fn resolve_rng(&self) -> Option<Box<dyn Random>> {
        Some(Box::new(SeededRandom(ChaCha20Rng::from_seed(self.seed))))
    }

    fn resolve_dh(&self, choice: &DHChoice) -> Option<Box<dyn Dh>> {
        DefaultResolver.resolve_dh(choice)
    }

    fn resolve_hash(&self, choice: &HashChoice) -> Option<Box<dyn Hash>> {
        RingResolver.resolve_hash(choice)
    }

    fn resolve_cipher(&self, choice: &CipherChoice) -> Option<Box<dyn Cipher>> {
        RingResolver.resolve_cipher(choice)
    }
}

#[cfg(test)]
mod tests;
