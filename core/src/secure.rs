//! Closed swarms: the swarm key, the handshake that proves both ends hold it, and the
//! record layer that encrypts and authenticates every byte after it (Noise NNpsk0, by
//! `snow`). Sans-IO like the rest: bytes in, bytes out, ephemeral keys from a seeded
//! generator that the driver fills from the OS (and the simulator from its seed).

use crate::wire::FrameDecoder;
use rand::{RngCore, SeedableRng};
use rand_chacha::ChaCha20Rng;
use snow::params::{CipherChoice, DHChoice, HashChoice, NoiseParams};
use snow::resolvers::{CryptoResolver, DefaultResolver, RingResolver};
use snow::types::{Cipher, Dh, Hash, Random};
use snow::{HandshakeState, TransportState};
use std::fmt;

/// Both ends hold the swarm key (the pre-shared key, mixed in before anything is sent) and
/// make fresh ephemeral keys, so every connection gets its own session keys and a recorded
/// connection cannot be replayed or read later. AES-GCM: with AES-NI the fastest choice
/// measured here (SECURITY.md, "What it costs").
const NOISE_PARAMS: &str = "Noise_NNpsk0_25519_AESGCM_SHA256";
/// Binds the handshake to this protocol, so a key cannot be confused with another use.
const PROLOGUE: &[u8] = b"drizzle closed swarm v1";
/// Length prefix of a record: a big-endian `u16`, Noise's own message limit.
const RECORD_PREFIX_BYTES: usize = 2;
/// A Noise message is at most this long, its 16-byte tag included.
const MAX_RECORD_BYTES: usize = 65_535;
const TAG_BYTES: usize = 16;
/// Plain bytes per record.
const MAX_RECORD_PLAIN_BYTES: usize = MAX_RECORD_BYTES - TAG_BYTES;
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
}

/// One connection's security: a Noise handshake, then records. Plain bytes queued before
/// the handshake is done are held and sealed the moment it is.
pub(crate) struct Channel {
    state: State,
    initiator: bool,
    /// Plain bytes to send, held until the handshake is done.
    held: Vec<u8>,
    /// Received bytes that are not yet a whole record; `rx[rx_start..]` is unread.
    rx: Vec<u8>,
    rx_start: usize,
    scratch: Vec<u8>,
}

enum State {
    Handshaking(Box<HandshakeState>),
    Sealed(Box<TransportState>),
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
            .field("rx", &(self.rx.len() - self.rx_start))
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
            rx_start: 0,
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
        self.rx.len() - self.rx_start
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
        let transport =
            (hs.into_transport_mode()).map_err(|e| SealError::Handshake(e.to_string()))?;
        self.state = State::Sealed(Box::new(transport));
        Ok(answer)
    }

    // ---- records ----

    /// The wire bytes for `plain`, sealed into records; `None` while the handshake is not
    /// done (the bytes are held, and come out of `take_held` when it is).
    pub fn seal(&mut self, plain: &[u8]) -> Option<Vec<u8>> {
        let State::Sealed(transport) = &mut self.state else {
            self.held.extend_from_slice(plain);
            return None;
        };
        let records = plain.len().div_ceil(MAX_RECORD_PLAIN_BYTES).max(1);
        let mut out = vec![0u8; plain.len() + records * (RECORD_PREFIX_BYTES + TAG_BYTES)];
        let mut at = 0;
        for piece in plain.chunks(MAX_RECORD_PLAIN_BYTES) {
            let Some(body) = out.get_mut(at + RECORD_PREFIX_BYTES..) else {
                break;
            };
            // Cannot fail: the piece and its tag fit the room and Noise's limit.
            let Ok(len) = transport.write_message(piece, body) else {
                self.state = State::Failed;
                return Some(Vec::new());
            };
            if let Some(prefix) = out.get_mut(at..at + RECORD_PREFIX_BYTES) {
                prefix.copy_from_slice(&(len as u16).to_be_bytes());
            }
            at += RECORD_PREFIX_BYTES + len;
        }
        out.truncate(at);
        Some(out)
    }

    /// What was held back during the handshake, sealed; `None` if nothing was.
    pub fn take_held(&mut self) -> Option<Vec<u8>> {
        if self.held.is_empty() || !self.is_sealed() {
            return None;
        }
        let held = std::mem::take(&mut self.held);
        self.seal(&held)
    }

    /// Takes received wire bytes and opens every whole record among them into `decoder`
    /// (straight into its receive window when the record fits there, sparing a copy).
    pub fn open(&mut self, wire: &[u8], decoder: &mut FrameDecoder) -> Result<(), SealError> {
        let State::Sealed(transport) = &mut self.state else {
            return Err(SealError::Early);
        };
        if self.rx_start > 0 && self.rx_start == self.rx.len() {
            self.rx.clear();
            self.rx_start = 0;
        }
        let result = if self.rx_start == self.rx.len() {
            // Nothing buffered: open whole records straight from the input.
            let used = open_records(transport, wire, decoder, &mut self.scratch);
            used.map(|used| {
                self.rx
                    .extend_from_slice(wire.get(used..).unwrap_or_default())
            })
        } else {
            self.rx.extend_from_slice(wire);
            let pending = self.rx.get(self.rx_start..).unwrap_or_default();
            let used = open_records(transport, pending, decoder, &mut self.scratch);
            used.map(|used| self.rx_start += used)
        };
        if result.is_err() {
            self.state = State::Failed;
        }
        result?;
        if self.rx_start > self.rx.len() / 2 {
            self.rx.drain(..self.rx_start);
            self.rx_start = 0;
        }
        Ok(())
    }
}

/// Opens the whole records at the front of `wire` into `decoder`; how many bytes they took.
fn open_records(
    transport: &mut TransportState,
    wire: &[u8],
    decoder: &mut FrameDecoder,
    scratch: &mut Vec<u8>,
) -> Result<usize, SealError> {
    let mut used = 0;
    loop {
        let rest = wire.get(used..).unwrap_or_default();
        let Some(prefix) = rest.get(..RECORD_PREFIX_BYTES) else {
            return Ok(used);
        };
        let Ok(prefix) = <[u8; RECORD_PREFIX_BYTES]>::try_from(prefix) else {
            return Ok(used);
        };
        let len = u16::from_be_bytes(prefix) as usize;
        let Some(record) = rest.get(RECORD_PREFIX_BYTES..RECORD_PREFIX_BYTES + len) else {
            return Ok(used);
        };
        if len < TAG_BYTES {
            return Err(SealError::Tampered);
        }
        // Room for the whole record, tag included: ring opens it in place there (with less
        // room it allocates and copies twice).
        match decoder.receive_window().filter(|w| w.len() >= len) {
            Some(window) => {
                let n =
                    (transport.read_message(record, window)).map_err(|_| SealError::Tampered)?;
                decoder.received_in_window(n);
            }
            None => {
                scratch.resize(len, 0);
                let n =
                    (transport.read_message(record, scratch)).map_err(|_| SealError::Tampered)?;
                decoder.push(scratch.get(..n).unwrap_or_default());
            }
        }
        used += RECORD_PREFIX_BYTES + len;
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
