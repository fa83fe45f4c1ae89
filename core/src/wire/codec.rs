//! Framing: `u32` little-endian payload length, then a postcard-encoded [`Message`].
//! [`FrameDecoder`] accepts bytes in any split and refuses an oversized length before
//! allocating for it; the limit is tight until the hello is done.

use super::message::Message;
use crate::bytes::Bytes;
use crate::limits::{MAX_FRAME_BYTES, MAX_HELLO_FRAME_BYTES};
use crate::manifest::Root;
use crate::pool::BufferPool;

const PREFIX_BYTES: usize = 4;
/// The first payload byte of a `ChunkData` frame: its variant index (pinned by a test).
const CHUNK_DATA_TAG: u8 = 12;
/// A chunk payload's buffer is reserved up front at most this big, and grows as bytes come.
const MAX_PAYLOAD_RESERVE: usize = 2 << 20;
/// Payloads at least this big are collected starting on a boundary of it, so a driver can
/// write them to disk unbuffered (O_DIRECT wants 4 KiB-aligned memory) without a copy.
const PAYLOAD_ALIGN: usize = 4096;

/// Why a byte stream is not a valid Drizzle stream. Always ends the connection.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("frame of {len} bytes exceeds the limit of {limit}")]
    TooLarge { len: usize, limit: usize },
    #[error("undecodable message: {0}")]
    Malformed(String),
}

/// Encodes one message as a frame.
pub fn encode(msg: &Message) -> Vec<u8> {
    frame_into(msg, Vec::with_capacity(256))
}

/// Encodes one message as a frame of exactly its size, through `scratch`, which keeps its
/// capacity for the next: a large answer (a locate's holders) costs one allocation rather
/// than a doubling series. Past a kilobyte each of those takes the allocator's lock once a
/// process has a second thread (a tracker with `--http`: 5-10% of `bench tracker`).
pub fn encode_with(msg: &Message, scratch: &mut Vec<u8>) -> Vec<u8> {
    let framed = frame_into(msg, std::mem::take(scratch));
    let exact = framed.clone();
    // A rare big one (a page of the file list) is not kept.
    if framed.capacity() <= MAX_SCRATCH_BYTES {
        *scratch = framed;
    }
    exact
}

/// The most `encode_with`'s scratch keeps between messages.
const MAX_SCRATCH_BYTES: usize = 64 * 1024;

fn frame_into(msg: &Message, mut buf: Vec<u8>) -> Vec<u8> {
    buf.clear();
    buf.extend_from_slice(&[0u8; PREFIX_BYTES]);
    // Encoding an in-memory `Message` cannot fail: postcard only fails on serde features
    // that `Message` does not use.
    let Ok(mut out) = postcard::to_extend(msg, buf) else {
        return Vec::new();
    };
    let len = (out.len() - PREFIX_BYTES) as u32;
    if let Some(prefix) = out.get_mut(..PREFIX_BYTES) {
        prefix.copy_from_slice(&len.to_le_bytes());
    }
    out
}

/// The frame of a `ChunkData` message in two parts, its header and the payload itself, so
/// a chunk is sent without copying it into a frame: header ++ data == `encode(ChunkData)`.
pub fn encode_chunk_data(root: Root, chunk: u32, data: Bytes) -> [Bytes; 2] {
    let header = encode_chunk_header(root, chunk, data.len());
    [header.into(), data]
}

/// The frame of a `ChunkData` message up to its `payload_len` payload bytes, which follow
/// it.
pub fn encode_chunk_header(root: Root, chunk: u32, payload_len: usize) -> Vec<u8> {
    let empty = Message::ChunkData {
        root,
        chunk,
        data: Bytes::default(),
    };
    let mut header = encode(&empty);
    // The empty payload ends the frame as its length, a one-byte varint 0: put the real
    // length there and fix the frame's length prefix.
    header.pop();
    let mut len = payload_len;
    loop {
        let byte = (len & 0x7f) as u8;
        len >>= 7;
        if len == 0 {
            header.push(byte);
            break;
        }
        header.push(byte | 0x80);
    }
    let frame_len = (header.len() - PREFIX_BYTES + payload_len) as u32;
    if let Some(prefix) = header.get_mut(..PREFIX_BYTES) {
        prefix.copy_from_slice(&frame_len.to_le_bytes());
    }
    header
}

/// What a decoder's buffer keeps of its capacity once it is empty.
const KEPT_BUFFER_BYTES: usize = 64 << 10;

/// The room kept before a payload of `len` bytes for placing it on a `PAYLOAD_ALIGN`
/// boundary: none for a payload smaller than that.
fn payload_slack(len: usize) -> usize {
    if len >= PAYLOAD_ALIGN {
        PAYLOAD_ALIGN
    } else {
        0
    }
}

/// Where in `buf` a payload starts so as to lie on a `PAYLOAD_ALIGN` boundary, within the
/// `slack` kept before it.
fn payload_pad(buf: &[u8], slack: usize) -> usize {
    buf.as_ptr().align_offset(PAYLOAD_ALIGN).min(slack)
}

/// Reassembles frames from arbitrary splits of a byte stream. The payload of a large
/// `ChunkData` frame is collected straight into its own buffer once its header is in, so
/// chunk bytes are copied once on their way in, not into a frame buffer and out again —
/// and not at all when they are handed over whole ([`FrameDecoder::push_bytes`]).
#[derive(Debug)]
pub struct FrameDecoder {
    buf: Vec<u8>,
    /// Start of the undecoded bytes in `buf`; consumed bytes are dropped lazily.
    start: usize,
    limit: usize,
    /// A `ChunkData` frame whose payload is being collected; it precedes whatever is in `buf`.
    chunk: Option<PartialChunk>,
    /// The frame limit once the hello is done.
    after_hello: usize,
    /// Where chunk payloads are collected when a buffer there is big enough.
    buffers: Option<BufferPool>,
}

#[derive(Debug)]
struct PartialChunk {
    root: Root,
    chunk: u32,
    /// The payload collected so far is `data[pad..pad + filled]`; up to `pad + len` the
    /// rest is room for more, grown as bytes arrive (a header alone never reserves more
    /// than `MAX_PAYLOAD_RESERVE`, plus `PAYLOAD_ALIGN` of slack for `pad`, which puts the
    /// payload on a `PAYLOAD_ALIGN` boundary) — or all there from the start, in a buffer
    /// taken from the pool that an earlier chunk was received in.
    data: Vec<u8>,
    pad: usize,
    filled: usize,
    /// Or what came so far, handed over by reference in one window or in adjacent windows
    /// of the same shared bytes (then `data` stays empty until a piece must be copied).
    whole: Option<Bytes>,
    len: usize,
}

impl PartialChunk {
    /// A payload of `len` bytes to collect, in a reused buffer from `pool` if one is big
    /// enough (its old bytes are overwritten before they are read), else in one of its own.
    fn new(root: Root, chunk: u32, len: usize, pool: Option<&BufferPool>) -> PartialChunk {
        let slack = payload_slack(len);
        // A buffer comes back as long as its padding and the payload it held were.
        let fits = |b: &Vec<u8>| b.len() >= payload_pad(b, slack) + len;
        let (data, pad) = match pool.and_then(|p| p.take_fitting(fits)) {
            Some(data) => {
                let pad = payload_pad(&data, slack);
                (data, pad)
            }
            None => (Vec::new(), 0),
        };
        PartialChunk {
            root,
            chunk,
            data,
            pad,
            filled: 0,
            whole: None,
            len,
        }
    }

    fn collected(&self) -> usize {
        self.whole.as_ref().map_or(self.filled, |w| w.len())
    }

    fn missing(&self) -> usize {
        self.len - self.collected()
    }

    /// Room for the next payload bytes, grown when it ran out.
    fn room(&mut self) -> &mut [u8] {
        let held = self.data.len().saturating_sub(self.pad);
        if self.filled == held && held < self.len {
            let grown = (held + MAX_PAYLOAD_RESERVE).min(self.len);
            if self.data.is_empty() {
                let slack = payload_slack(self.len);
                // Zeroed by the allocator, which often gets fresh pages zeroed already.
                self.data = vec![0; grown + slack];
                self.pad = payload_pad(&self.data, slack);
                self.data.truncate(self.pad + grown);
            } else {
                self.data.resize(self.pad + grown, 0);
            }
        }
        let end = (self.pad + self.len).min(self.data.len());
        self.data
            .get_mut(self.pad + self.filled..end)
            .unwrap_or_default()
    }

    /// Takes what of `bytes` belongs to the payload, handed over by reference: kept as it
    /// is while the pieces so far are adjacent windows of the same shared bytes, copied
    /// otherwise. Returns the rest.
    fn take(&mut self, mut bytes: Bytes) -> Bytes {
        let rest = bytes.split_off(self.missing());
        if bytes.is_empty() {
            return rest;
        }
        if self.filled == 0 {
            match self.whole.take() {
                None => {
                    self.whole = Some(bytes);
                    return rest;
                }
                Some(before) => match before.joined(&bytes) {
                    Some(both) => {
                        self.whole = Some(both);
                        return rest;
                    }
                    None => self.whole = Some(before),
                },
            }
        }
        self.fill(&bytes);
        rest
    }

    /// Copies what came by reference into `data`, so that more can be copied after it.
    fn spill(&mut self) {
        if let Some(before) = self.whole.take() {
            self.fill(&before);
        }
    }

    /// Copies what of `bytes` belongs to the payload; returns the rest.
    fn fill<'b>(&mut self, mut bytes: &'b [u8]) -> &'b [u8] {
        if self.whole.is_some() && self.missing() > 0 && !bytes.is_empty() {
            self.spill();
        }
        while !bytes.is_empty() && self.missing() > 0 {
            let room = self.room();
            let take = room.len().min(bytes.len());
            let (now, later) = bytes.split_at(take);
            if let Some(dst) = room.get_mut(..take) {
                dst.copy_from_slice(now);
            }
            self.filled += take;
            bytes = later;
        }
        bytes
    }
}

impl Default for FrameDecoder {
    fn default() -> Self {
        FrameDecoder::new()
    }
}

impl FrameDecoder {
    /// A decoder for a fresh connection: only a hello-sized frame is accepted until
    /// [`FrameDecoder::hello_done`].
    pub fn new() -> FrameDecoder {
        FrameDecoder::with_frame_limit(MAX_FRAME_BYTES)
    }

    /// Like `new`, but frames after the hello are at most `max` bytes (never more than
    /// `MAX_FRAME_BYTES`): for remotes that have no business sending large ones.
    pub fn with_frame_limit(max: usize) -> FrameDecoder {
        FrameDecoder {
            buf: Vec::new(),
            start: 0,
            limit: MAX_HELLO_FRAME_BYTES,
            chunk: None,
            after_hello: max.min(MAX_FRAME_BYTES),
            buffers: None,
        }
    }

    /// Collects chunk payloads in buffers from `pool` where it has them: a driver that
    /// gives them back once written spares a zeroed allocation a chunk.
    pub fn collect_in(&mut self, pool: BufferPool) {
        self.buffers = Some(pool);
    }

    /// Raises the frame limit once the peer said a valid hello.
    pub fn hello_done(&mut self) {
        self.limit = self.after_hello;
    }

    /// The `ChunkData` frame whose payload has begun to arrive (some bytes of it are in,
    /// not all): its root and chunk index.
    pub fn arriving_chunk(&self) -> Option<(Root, u32)> {
        let c = self.chunk.as_ref()?;
        (c.collected() > 0 && c.missing() > 0).then_some((c.root, c.chunk))
    }

    /// Bytes received but not yet decoded.
    pub fn buffered(&self) -> usize {
        self.buf.len() - self.start + self.chunk.as_ref().map_or(0, |c| c.collected())
    }

    /// Takes bytes that are handed over: a chunk payload whose header is in and which
    /// arrives whole is kept as it is, not copied.
    pub fn push_bytes(&mut self, mut bytes: Bytes) {
        if let Some(c) = self.chunk.as_mut() {
            bytes = c.take(bytes);
        }
        self.push(&bytes);
    }

    pub fn push(&mut self, mut bytes: &[u8]) {
        if let Some(c) = self.chunk.as_mut() {
            bytes = c.fill(bytes);
        }
        if bytes.is_empty() {
            return;
        }
        if self.start > 0 && self.start >= self.buf.len() / 2 {
            self.buf.drain(..self.start);
            self.start = 0;
        }
        self.buf.extend_from_slice(bytes);
    }

    /// Takes the bytes received but not decoded: the records after a closed swarm's
    /// handshake, which arrived before the decoder knew they were not frames. Never a chunk
    /// payload (none is collected before the hello is done).
    pub fn take_unread(&mut self) -> Vec<u8> {
        let mut rest = std::mem::take(&mut self.buf);
        rest.drain(..self.start.min(rest.len()));
        self.start = 0;
        rest
    }

    /// Where the next bytes may be received straight into, saving `push`'s copy: the room
    /// for the rest of a chunk payload being collected. Report what was put there with
    /// [`FrameDecoder::received_in_window`].
    pub fn receive_window(&mut self) -> Option<&mut [u8]> {
        let c = self.chunk.as_mut()?;
        if c.missing() == 0 {
            return None;
        }
        c.spill();
        Some(c.room())
    }

    /// `len` bytes were written at the start of the last [`FrameDecoder::receive_window`].
    pub fn received_in_window(&mut self, len: usize) {
        if let Some(c) = self.chunk.as_mut().filter(|c| c.whole.is_none()) {
            c.filled = (c.filled + len)
                .min(c.data.len().saturating_sub(c.pad))
                .min(c.len);
        }
    }

    /// The next complete message, `Ok(None)` if more bytes are needed.
    pub fn next_message(&mut self) -> Result<Option<Message>, FrameError> {
        if let Some(mut c) = self.chunk.take() {
            if c.missing() > 0 {
                self.chunk = Some(c);
                return Ok(None);
            }
            c.data.truncate(c.pad + c.filled);
            let data = match c.whole {
                Some(whole) => whole,
                None => Bytes::after_padding(c.data, c.pad),
            };
            return Ok(Some(Message::ChunkData {
                root: c.root,
                chunk: c.chunk,
                data,
            }));
        }
        let pending = self.buf.get(self.start..).unwrap_or_default();
        let Some(prefix) = pending.get(..PREFIX_BYTES) else {
            return Ok(None);
        };
        let mut len_bytes = [0u8; PREFIX_BYTES];
        len_bytes.copy_from_slice(prefix);
        let len = u32::from_le_bytes(len_bytes) as usize;
        if len > self.limit {
            return Err(FrameError::TooLarge {
                len,
                limit: self.limit,
            });
        }
        let Some(payload) = pending.get(PREFIX_BYTES..PREFIX_BYTES + len) else {
            self.start_chunk(len);
            return Ok(None);
        };
        let msg = match postcard::take_from_bytes(payload) {
            Ok((msg, [])) => msg,
            Ok((_, rest)) => {
                let why = format!("{} stray bytes after the message", rest.len());
                return Err(FrameError::Malformed(why));
            }
            Err(e) => return Err(FrameError::Malformed(e.to_string())),
        };
        self.start += PREFIX_BYTES + len;
        if self.start == self.buf.len() {
            self.buf.clear();
            self.start = 0;
            // A connection that once sent a large frame (a register of big manifests)
            // does not keep a buffer that size for as long as it stays open: 128 idle
            // connections from one address would otherwise hold 2 GiB.
            self.buf.shrink_to(KEPT_BUFFER_BYTES);
        }
        Ok(Some(msg))
    }

    /// If the incomplete frame at the front (payload `frame_len` bytes) is a `ChunkData`
    /// whose header is in, moves its payload bytes into a buffer of their own; the rest of
    /// the payload is then collected there by `push`. Anything odd is left to the normal
    /// path, which judges the frame once it is whole.
    fn start_chunk(&mut self, frame_len: usize) {
        let pending = self
            .buf
            .get(self.start + PREFIX_BYTES..)
            .unwrap_or_default();
        let Some((&CHUNK_DATA_TAG, fields)) = pending.split_first() else {
            return;
        };
        let Ok(((root, chunk, data_len), rest)) =
            postcard::take_from_bytes::<(Root, u32, u64)>(fields)
        else {
            return;
        };
        let header_len = pending.len() - rest.len();
        if Some(frame_len) != usize::try_from(data_len).ok().map(|d| d + header_len) {
            return;
        }
        let len = frame_len - header_len;
        let mut partial = PartialChunk::new(root, chunk, len, self.buffers.as_ref());
        partial.fill(rest);
        self.chunk = Some(partial);
        self.buf.clear();
        self.start = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::message::{Hello, Role};

    #[test]
    fn round_trip_in_every_split() {
        let msgs = vec![
            Message::Hello(Hello::new(Role::Peer)),
            Message::ChunkData {
                root: Root([3; 32]),
                chunk: 7,
                data: vec![9; 100].into(),
            },
        ];
        let stream: Vec<u8> = msgs.iter().flat_map(encode).collect();
        for split in 0..stream.len() {
            let mut d = FrameDecoder::new();
            let mut got = Vec::new();
            for part in [&stream[..split], &stream[split..]] {
                d.push(part);
                while let Some(m) = d.next_message().unwrap() {
                    if matches!(m, Message::Hello(_)) {
                        d.hello_done();
                    }
                    got.push(m);
                }
            }
            assert_eq!(got, msgs);
        }
    }

    #[test]
    fn a_large_frame_leaves_no_large_buffer_behind() {
        let mut d = FrameDecoder::new();
        d.push(&encode(&Message::Hello(Hello::new(Role::Peer))));
        assert!(d.next_message().unwrap().is_some());
        d.hello_done();
        let big = Message::Error {
            reason: "x".repeat(4 << 20),
        };
        // Arriving in pieces, as from a socket, so the buffer grows to hold it.
        for piece in encode(&big).chunks(64 << 10) {
            d.push(piece);
        }
        assert_eq!(d.next_message().unwrap(), Some(big));
        assert!(
            d.buf.capacity() <= KEPT_BUFFER_BYTES,
            "{}",
            d.buf.capacity()
        );
    }

    #[test]
    fn chunk_data_tag_is_the_variant_index() {
        let frame = encode(&Message::ChunkData {
            root: Root([0; 32]),
            chunk: 0,
            data: Bytes::default(),
        });
        assert_eq!(frame[PREFIX_BYTES], CHUNK_DATA_TAG);
    }

    #[test]
    fn chunk_data_in_two_parts_is_the_same_frame() {
        for len in [0usize, 1, 127, 128, 300, 16_383, 16_384, 1 << 20] {
            let data: Vec<u8> = (0..len).map(|i| i as u8).collect();
            let whole = encode(&Message::ChunkData {
                root: Root([5; 32]),
                chunk: 300,
                data: data.clone().into(),
            });
            let [header, payload] = encode_chunk_data(Root([5; 32]), 300, data.into());
            assert_eq!([&header[..], &payload[..]].concat(), whole, "len {len}");
        }
    }

    /// A payload collected in a reused buffer bigger than it (old bytes in it) ends where
    /// it ends: the window offered stops there, and the frame after it decodes.
    #[test]
    fn a_payload_is_collected_in_a_pooled_buffer_and_no_further() {
        let pool = BufferPool::default();
        let old = vec![9u8; 24 * PAYLOAD_ALIGN];
        let old_at = old.as_ptr() as usize;
        pool.give(old.into());
        let payload: Vec<u8> = (0..=255u8).cycle().take(20 * PAYLOAD_ALIGN + 5).collect();
        let [header, data] = encode_chunk_data(Root([2; 32]), 7, payload.clone().into());
        let mut d = FrameDecoder::new();
        d.hello_done();
        d.collect_in(pool.clone());
        d.push(&[&header[..], &data[..100]].concat());
        assert_eq!(d.next_message(), Ok(None));
        let window = d.receive_window().unwrap_or_default();
        assert_eq!(
            window.len(),
            payload.len() - 100,
            "no room past the payload"
        );
        window.copy_from_slice(&data[100..]);
        d.received_in_window(payload.len() - 100);
        assert_eq!(d.receive_window(), None);
        d.push(&encode(&Message::Keepalive));
        let Ok(Some(Message::ChunkData { data: got, .. })) = d.next_message() else {
            panic!("no chunk");
        };
        assert_eq!(got.as_slice(), &payload[..]);
        assert_eq!(got.as_ptr().align_offset(PAYLOAD_ALIGN), 0);
        let at = got.as_ptr() as usize;
        assert!(
            (old_at..old_at + 2 * PAYLOAD_ALIGN).contains(&at),
            "in the pooled buffer"
        );
        assert_eq!(d.next_message(), Ok(Some(Message::Keepalive)));
        // Given back as a driver does once it is written, cut to its padding and payload,
        // the buffer takes the next payload of that size.
        pool.give(got);
        d.push(&[&header[..], &data[..100]].concat());
        assert_eq!(d.next_message(), Ok(None));
        d.push(&data[100..]);
        let Ok(Some(Message::ChunkData { data: again, .. })) = d.next_message() else {
            panic!("no second chunk");
        };
        assert_eq!(again.as_slice(), &payload[..]);
        assert_eq!(again.as_ptr() as usize, at, "the same buffer again");
    }

    #[test]
    fn a_collected_payload_starts_on_a_page_boundary() {
        let payload: Vec<u8> = (0..=255u8).cycle().take(3 * PAYLOAD_ALIGN + 5).collect();
        let [header, data] = encode_chunk_data(Root([2; 32]), 7, payload.clone().into());
        let mut d = FrameDecoder::new();
        d.hello_done();
        // The header with the payload's first bytes, as one socket read brings them.
        d.push(&[&header[..], &data[..100]].concat());
        assert_eq!(d.next_message(), Ok(None));
        let window = d.receive_window().unwrap_or_default();
        window[..1000].copy_from_slice(&data[100..1100]);
        d.received_in_window(1000);
        d.push(&data[1100..]);
        let Ok(Some(Message::ChunkData { data: got, .. })) = d.next_message() else {
            panic!("no chunk");
        };
        assert_eq!(got.as_slice(), &payload[..]);
        assert_eq!(got.as_ptr().align_offset(PAYLOAD_ALIGN), 0);
    }

    #[test]
    fn a_payload_handed_over_whole_is_kept_not_copied() {
        let all: std::sync::Arc<[u8]> = (0..=255u8).cycle().take(5000).collect();
        let payload = Bytes::shared(&all, 1000..4000).unwrap_or_default();
        let [header, data] = encode_chunk_data(Root([1; 32]), 3, payload.clone());
        let next = encode(&Message::Busy {
            root: Root([1; 32]),
            chunk: 4,
        });
        let mut d = FrameDecoder::new();
        d.hello_done();
        d.push(&header);
        assert_eq!(d.next_message(), Ok(None));
        // The payload and the next frame in one hand-over, as a simulator may deliver them.
        d.push_bytes(Bytes::from([&data[..], &next[..]].concat()));
        let Ok(Some(Message::ChunkData { data: got, .. })) = d.next_message() else {
            panic!("no chunk");
        };
        assert_eq!(got, payload);
        assert!(matches!(d.next_message(), Ok(Some(Message::Busy { .. }))));
        // A shared window arriving whole stays that window.
        d.push(&header);
        assert_eq!(d.next_message(), Ok(None));
        d.push_bytes(data);
        let Ok(Some(Message::ChunkData { data: got, .. })) = d.next_message() else {
            panic!("no chunk");
        };
        assert_eq!(got.window().map(|(_, at)| at), Some(1000), "not copied");
        assert_eq!(d.buffered(), 0);
    }

    #[test]
    fn a_payload_handed_over_in_adjacent_pieces_is_kept_not_copied() {
        let all: std::sync::Arc<[u8]> = (0..=255u8).cycle().take(5000).collect();
        let payload = Bytes::shared(&all, 1000..4000).unwrap_or_default();
        let [header, mut data] = encode_chunk_data(Root([1; 32]), 3, payload.clone());
        let mut d = FrameDecoder::new();
        d.hello_done();
        d.push(&header);
        assert_eq!(d.next_message(), Ok(None));
        let rest = data.split_off(700);
        d.push_bytes(data);
        assert_eq!(d.arriving_chunk(), Some((Root([1; 32]), 3)));
        assert_eq!(d.next_message(), Ok(None));
        d.push_bytes(rest);
        let Ok(Some(Message::ChunkData { data: got, .. })) = d.next_message() else {
            panic!("no chunk");
        };
        assert_eq!(got, payload);
        assert_eq!(got.window().map(|(_, at)| at), Some(1000), "not copied");
        // Pieces of different buffers are copied together.
        let [header, data] = encode_chunk_data(Root([1; 32]), 4, payload.clone());
        d.push(&header);
        assert_eq!(d.next_message(), Ok(None));
        d.push_bytes(data.slice(0..10));
        d.push_bytes(Bytes::from(data.as_slice()[10..].to_vec()));
        let Ok(Some(Message::ChunkData { data: got, .. })) = d.next_message() else {
            panic!("no chunk");
        };
        assert_eq!(got, payload);
    }

    #[test]
    fn oversized_length_is_refused_before_the_payload_arrives() {
        let mut d = FrameDecoder::new();
        d.push(&u32::MAX.to_le_bytes());
        assert!(matches!(d.next_message(), Err(FrameError::TooLarge { .. })));
        let mut d = FrameDecoder::new();
        d.hello_done();
        d.push(&(MAX_FRAME_BYTES as u32 + 1).to_le_bytes());
        assert!(matches!(d.next_message(), Err(FrameError::TooLarge { .. })));
    }

    #[test]
    fn garbage_is_malformed() {
        let mut d = FrameDecoder::new();
        d.push(&[3, 0, 0, 0, 0xff, 0xff, 0xff]);
        assert!(matches!(d.next_message(), Err(FrameError::Malformed(_))));
    }
}
