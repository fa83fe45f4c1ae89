//! Serving chunks to other peers: requests queue per connection (bounded), a few loads per
//! connection are outstanding at once (bounding what sits in send buffers), and every answer
//! is the chunk or a refusal saying why.

use super::files::LocalFiles;
use super::slots::Seat;
use super::{Conn, Io, Peer};
use crate::bytes::Bytes;
use crate::limits::{
    FETCHER_IDLE_TIMEOUT_MS, MAX_FETCHER_FRAME_BYTES, MAX_LOADS_PER_CONN,
    MAX_QUEUED_REQUESTS_PER_CONN, MAX_STEERED_PER_CONN, SLOT_MIN_BYTES_PER_SEC,
    SLOT_PACE_WINDOW_MS, SLOT_STALL_MS,
};
use crate::link::Link;
use crate::machine::{ConnId, Event, Layout, Output, StorageKey};
use crate::manifest::{FileName, Root};
use crate::secure::Channel;
use crate::time::Timestamp;
use crate::wire::{encode_chunk_header, Message, RefusedBecause, Role};
use std::collections::{BTreeSet, VecDeque};
use std::net::SocketAddr;

/// An inbound connection from a peer that fetches from us.
#[derive(Debug)]
pub(super) struct InLink {
    pub link: Link,
    queue: VecDeque<(Root, u32)>,
    loading: usize,
    /// Its place at the upload slots.
    pub seat: Seat,
    /// Chunks refused to this fetcher as sent here too often. A refusal is a hint, never a
    /// denial: a fetcher that asks again found no better holder, and is served (two full
    /// holders each pointing at the other would otherwise starve it).
    steered: BTreeSet<(Root, u32)>,
    /// How it takes what is sent to it while it holds a slot (see `slot_check`).
    pace: Pace,
}

/// A slot holder's pace: when it last took data we sent (or began to be sent data), and
/// what it took since `since` — with data waiting for it then (`backlogged`).
#[derive(Debug)]
struct Pace {
    drained_at: Timestamp,
    since: Timestamp,
    bytes: u64,
    backlogged: bool,
}

/// Why a slot holder loses its slot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum SlotLoss {
    /// It took nothing for `SLOT_STALL_MS`.
    Stalled,
    /// It took less than `SLOT_MIN_BYTES_PER_SEC` over a window with data waiting.
    Slow,
}

impl InLink {
    pub fn new(remote: SocketAddr, now: Timestamp, channel: Option<Channel>) -> InLink {
        let link = Link::with_frame_limit(remote, Role::Peer, now, MAX_FETCHER_FRAME_BYTES);
        InLink {
            link: link.secured(channel),
            queue: VecDeque::new(),
            loading: 0,
            seat: Seat::default(),
            steered: BTreeSet::new(),
            pace: Pace {
                drained_at: now,
                since: now,
                bytes: 0,
                backlogged: false,
            },
        }
    }

    /// It is about to be sent data with nothing unsent, or took a slot: its pace is timed
    /// from now.
    pub fn drained(&mut self, now: Timestamp) {
        self.pace.drained_at = now;
    }

    /// It took `bytes` of what was sent to it (`Input::Sent`).
    pub fn took(&mut self, now: Timestamp, bytes: usize) {
        self.pace.drained_at = now;
        self.pace.bytes = self.pace.bytes.saturating_add(bytes as u64);
    }

    /// Whether it took data in the last `SLOT_STALL_MS` (or has just been given some).
    pub fn taking(&self, now: Timestamp) -> bool {
        now <= self.pace.drained_at.plus_ms(SLOT_STALL_MS)
    }

    /// A new pace window starts (a slot taken, or the last window judged).
    pub fn restart_pace(&mut self, now: Timestamp) {
        self.pace.since = now;
        self.pace.bytes = 0;
        self.pace.backlogged = self.link.unsent() > 0;
    }
}

impl InLink {
    /// Requests queued and not yet loaded.
    pub fn queued(&self) -> usize {
        self.queue.len()
    }

    /// Takes back the queued requests past the first `keep`.
    pub fn unqueue_from(&mut self, keep: usize) -> Vec<(Root, u32)> {
        let keep = keep.min(self.queue.len());
        self.queue.drain(keep..).collect()
    }

    /// When to drop this fetcher: the link's own deadlines, or idleness while it has
    /// nothing queued or loading.
    pub fn deadline(&self) -> Option<(Timestamp, &'static str)> {
        let idle = (self.queue.is_empty() && self.loading == 0).then_some(FETCHER_IDLE_TIMEOUT_MS);
        self.link.deadline(idle)
    }

    /// Bytes queued for it and not yet taken.
    pub fn unsent(&self) -> usize {
        self.link.unsent()
    }

    /// Whether every request accepted has been loaded into the link.
    pub fn all_loaded(&self) -> bool {
        self.queue.is_empty() && self.loading == 0
    }

    /// Whether something it was promised has not left yet: requests queued or loading, or
    /// bytes unsent.
    pub fn promised_more(&self) -> bool {
        !self.all_loaded() || self.link.unsent() > 0
    }

    /// A slot holder's standing at `now`: whether it loses the slot, and if not when to
    /// look again; `window_over` when its pace window has ended (then restart it).
    /// `stall_ms`: how long it may take nothing (see `Peer::slot_stall_ms`).
    pub fn slot_check(
        &self,
        now: Timestamp,
        stall_ms: u64,
    ) -> (Option<SlotLoss>, Option<Timestamp>, bool) {
        if !self.seat.holds_slot() {
            return (None, None, false);
        }
        let p = &self.pace;
        let unsent = self.link.unsent() > 0;
        let stall_at = unsent.then(|| p.drained_at.plus_ms(stall_ms));
        if stall_at.is_some_and(|t| t <= now) {
            return (Some(SlotLoss::Stalled), None, false);
        }
        let window_end = p.since.plus_ms(SLOT_PACE_WINDOW_MS);
        if window_end > now {
            // `stall_ms` follows the other holders (it falls to the floor once none takes
            // anything): looked at again within the floor, not only when it ends.
            let recheck = now.plus_ms(SLOT_STALL_MS);
            let next = stall_at
                .map_or(window_end, |t| t.min(window_end))
                .min(recheck);
            return (None, Some(next), false);
        }
        let elapsed_ms = now.since_ms(p.since).max(1);
        let slow = p.backlogged && unsent && p.bytes * 1000 < SLOT_MIN_BYTES_PER_SEC * elapsed_ms;
        (slow.then_some(SlotLoss::Slow), None, true)
    }
}

impl Peer {
    pub(super) fn handle_request(&mut self, now: Timestamp, conn: ConnId, msg: Message) {
        let (root, chunk, others) = match msg {
            Message::GetChunk {
                root,
                chunk,
                others,
            } => (root, chunk, others),
            Message::Cancel { root, chunk } => return self.handle_cancel(now, conn, root, chunk),
            Message::Watch { root } => return self.watch(conn, root),
            _ => {
                let reason = format!("unexpected {} from a fetching peer", msg.kind());
                return self.violation(now, conn, reason);
            }
        };
        self.note_request(now, conn);
        if let Err((because, reason)) = self.check_servable(&root, chunk, others, now, conn) {
            let steered = because == RefusedBecause::SentOften;
            if let (true, Some(Conn::In(i))) = (steered, self.conns.get_mut(&conn)) {
                if i.steered.len() >= MAX_STEERED_PER_CONN {
                    i.steered.clear();
                }
                i.steered.insert((root, chunk));
            }
            return self.refuse(conn, root, chunk, because, reason);
        }
        if let Some(f) = self.files.by_root(&root) {
            self.slots.note_chunk_bytes(f.manifest().chunk_size);
        }
        if !self.take_slot(now, conn) {
            return self.refuse_busy(now, conn, root, chunk);
        }
        let Some(Conn::In(i)) = self.conns.get_mut(&conn) else {
            return;
        };
        if i.queue.len() >= MAX_QUEUED_REQUESTS_PER_CONN {
            return self.send(conn, &Message::Busy { root, chunk });
        }
        if i.link.unsent() == 0 {
            i.drained(now);
            self.conns.slot_stall_due(now.plus_ms(SLOT_STALL_MS));
        }
        let Some(Conn::In(i)) = self.conns.get_mut(&conn) else {
            return;
        };
        i.queue.push_back((root, chunk));
        i.seat.accepted();
        // Counted when promised, not when sent: requests arriving together must not all
        // be granted the same chunk.
        if let Some(f) = self.files.by_root_mut(&root) {
            f.uploads_mut().sent(chunk, now, conn);
        }
        self.pump_serving(now, conn);
    }

    /// The data of chunk `chunk` of `root`, requested from a holder, has begun to arrive:
    /// it is announced as held now, not when verified and stored. The next fetchers' requests
    /// then travel while the transfer finishes and are served the moment it is stored — a
    /// chunk spreads through a swarm in generations, and each generation no longer waits a
    /// tracker hop and a request after the last. Should the transfer fail, those waiting are
    /// refused (`settle_arrivals`).
    /// Whether it had not begun to arrive before.
    pub(super) fn chunk_arriving(&mut self, now: Timestamp, root: Root, chunk: u32) -> bool {
        let Some(f) = self.files.by_root_mut(&root) else {
            return false;
        };
        let began = f.begin_arriving(chunk);
        if began {
            self.announce_chunk(now, root, chunk);
        }
        began
    }

    /// Tells the tracker and our fetchers that we hold `chunk` of `root` (or are receiving
    /// it), and offers free slots for it.
    pub(super) fn announce_chunk(&mut self, now: Timestamp, root: Root, chunk: u32) {
        self.send_tracker(&Message::HaveChunk { root, chunk });
        self.tell_fetchers(root, chunk);
        self.schedule_idle_report(now);
    }

    /// A chunk that was arriving is stored: requests that waited for it are served.
    pub(super) fn serve_waiting_requests(&mut self, now: Timestamp) {
        let conns = self.slots.conns();
        for conn in conns {
            self.pump_serving(now, conn);
        }
    }

    /// Chunks of `name` announced as arriving whose transfer failed (no longer requested
    /// or being stored) are owed: requests waiting for them are refused, so those
    /// fetchers ask elsewhere. The tracker is not told; we still want the chunk and will
    /// hold it once fetched again (and tell our fetchers then).
    pub(super) fn settle_arrivals(&mut self, now: Timestamp, name: &FileName) {
        let Some(f) = self.files.get_mut(name) else {
            return;
        };
        let a = self.downloads.get(name).and_then(|d| d.active());
        let ledger = &self.ledger;
        // Never held as well: a chunk leaves `arriving` when it is stored.
        let coming =
            |c: u32| a.is_some_and(|a| ledger.asked(&a.root()).contains(c) || a.is_storing(c));
        let failed = f.fail_arrivals(coming);
        if failed.is_empty() {
            return;
        }
        let root = f.root();
        // Requests queue only at fetchers holding a slot.
        let conns = self.slots.conns();
        for conn in conns {
            let Some(Conn::In(i)) = self.conns.get_mut(&conn) else {
                continue;
            };
            let lost = |(r, c): &(Root, u32)| *r == root && failed.contains(c);
            let refused: Vec<(Root, u32)> = i.queue.iter().copied().filter(lost).collect();
            i.queue.retain(|q| !lost(q));
            for (root, chunk) in refused {
                let reason = format!("chunk {chunk} not held here (its transfer failed)");
                self.refuse_queued(conn, root, chunk, RefusedBecause::NotHeld, reason);
            }
            self.pump_serving(now, conn);
        }
    }

    /// The fetcher on `conn` takes back its request for `chunk` of `root`: still queued, it
    /// is dropped and answered `Cancelled`, and the uplink goes to what is still wanted. A
    /// chunk being loaded or sent is let finish; a request never made is ignored (it costs
    /// one search of a bounded queue).
    fn handle_cancel(&mut self, now: Timestamp, conn: ConnId, root: Root, chunk: u32) {
        let Some(Conn::In(i)) = self.conns.get_mut(&conn) else {
            return;
        };
        let Some(at) = i.queue.iter().position(|q| *q == (root, chunk)) else {
            return;
        };
        i.queue.remove(at);
        let reason = format!("chunk {chunk}: request cancelled");
        self.refuse_queued(conn, root, chunk, RefusedBecause::Cancelled, reason);
        self.pump_serving(now, conn);
    }

    /// A request taken off `conn`'s queue is answered with a refusal after all: its upload,
    /// counted when it was accepted, no longer counts.
    fn refuse_queued(
        &mut self,
        conn: ConnId,
        root: Root,
        chunk: u32,
        because: RefusedBecause,
        reason: String,
    ) {
        if let Some(f) = self.files.by_root_mut(&root) {
            f.uploads_mut().withdrawn(chunk, conn);
        }
        self.refuse(conn, root, chunk, because, reason);
    }

    fn check_servable(
        &self,
        root: &Root,
        chunk: u32,
        others: u8,
        now: Timestamp,
        requester: ConnId,
    ) -> Result<(), (RefusedBecause, String)> {
        // A copy sent lately to a fetcher whose address stalls its slots will not spread:
        // it does not make the chunk available elsewhere.
        let spreads = |c: ConnId| self.conns.contains_key(&c) && !self.penalised(c, now);
        let steered_before = match self.conns.get(&requester) {
            Some(Conn::In(i)) => i.steered.contains(&(*root, chunk)),
            _ => false,
        };
        let file = self.files.by_root(root);
        match file {
            None => Err((RefusedBecause::NotHeld, "file not shared here".into())),
            // A chunk arriving here is as good as held: the request waits for it.
            Some(f) if !f.have().contains(chunk) && !f.is_arriving(chunk) => Err((
                RefusedBecause::NotHeld,
                format!("chunk {chunk} not held here"),
            )),
            // Only a holder of the whole file steers requests (every chunk is wanted from
            // it); a partial holder serves what it has.
            Some(f)
                if f.have().is_full()
                    && !steered_before
                    && f.uploads().refuse(chunk, others, now, requester, spreads) =>
            {
                let why = "was sent from here more than others: fetch it elsewhere";
                Err((RefusedBecause::SentOften, format!("chunk {chunk} {why}")))
            }
            Some(_) => Ok(()),
        }
    }

    /// Starts loads for queued requests while the connection has load slots and little
    /// unsent; then sees whether its slot goes to the next in line: once everything
    /// accepted has left, or earlier on a long path (`hand_over_early`).
    pub(super) fn pump_serving(&mut self, now: Timestamp, conn: ConnId) {
        self.load_queued(conn);
        match self.conns.get(&conn) {
            Some(Conn::In(i)) if !i.promised_more() => self.all_sent(now, conn),
            Some(Conn::In(_)) => self.hand_over_early(now, conn),
            _ => {}
        }
    }

    fn load_queued(&mut self, conn: ConnId) {
        let unsent_low_bytes = self.config.serve.unsent_low_bytes;
        loop {
            let Some(Conn::In(i)) = self.conns.get_mut(&conn) else {
                return;
            };
            let unsent = i.link.unsent();
            if i.loading >= MAX_LOADS_PER_CONN || unsent >= unsent_low_bytes {
                return;
            }
            let Some(at) = next_load(&i.queue, &self.files) else {
                return;
            };
            let Some((root, chunk)) = i.queue.remove(at) else {
                return;
            };
            if let Some(f) = self.files.by_root_mut(&root) {
                f.uploads_mut().begin(chunk);
            }
            i.loading += 1;
            let layout = i.link.load_layout();
            let located = self.files.name_of(&root).and_then(|name| {
                let f = self.files.get(name)?;
                let (offset, len) = f.manifest().chunk_range(chunk)?;
                let key = StorageKey {
                    name: name.clone(),
                    partial: f.is_partial(),
                };
                Some((key, offset, len))
            });
            let Some((key, offset, len)) = located else {
                self.finish_load(conn);
                let reason = "file no longer shared here".into();
                self.refuse(conn, root, chunk, RefusedBecause::NotHeld, reason);
                continue;
            };
            let io = self.new_io(Io::Serve {
                conn,
                root,
                chunk,
                layout,
            });
            self.out.push(Output::Load {
                io,
                key,
                offset,
                len,
                conn: Some(conn),
                layout,
            });
        }
    }

    fn finish_load(&mut self, conn: ConnId) {
        if let Some(Conn::In(i)) = self.conns.get_mut(&conn) {
            i.loading = i.loading.saturating_sub(1);
        }
    }

    /// Chunk `chunk` of `root` was read for `conn`, laid out as `layout`.
    pub(super) fn handle_loaded(
        &mut self,
        now: Timestamp,
        conn: ConnId,
        (root, chunk): (Root, u32),
        layout: Layout,
        result: Result<Bytes, String>,
    ) {
        let Some(Conn::In(i)) = self.conns.get(&conn) else {
            return; // the fetcher left meanwhile
        };
        let to = i.link.remote;
        self.finish_load(conn);
        let expected = self
            .files
            .by_root(&root)
            .and_then(|f| f.manifest().chunk_range(chunk))
            .map(|(_, len)| len as usize);
        let reason = match (result, expected) {
            (Ok(data), Some(len)) if data.len() == layout.len(len) => {
                self.emit(Event::Served { root, chunk, to });
                self.send_bytes(conn, encode_chunk_header(root, chunk, len).into());
                let link = self.conns.get_mut(&conn).map(Conn::link_mut);
                self.out.send_loaded(link, conn, data, layout, len);
                return self.pump_serving(now, conn);
            }
            (Ok(_), _) => format!("chunk {chunk} is short on disk (the file changed)"),
            (Err(e), _) => format!("cannot read chunk {chunk}: {e}"),
        };
        let because = RefusedBecause::Unreadable;
        self.refuse(conn, root, chunk, because, reason.clone());
        self.withdraw(root, reason);
        self.pump_serving(now, conn);
    }

    /// A shared file can no longer be read as registered (deleted, truncated, unreadable):
    /// the tracker stops listing us for it, so fetchers stop asking us in vain. A file
    /// being downloaded stays: its chunks are still coming.
    fn withdraw(&mut self, root: Root, reason: String) {
        let Some(name) = self.files.name_of(&root).cloned() else {
            return;
        };
        if self.downloads.contains_key(&name) {
            return;
        }
        self.files.remove(&name);
        self.send_tracker(&Message::Unshare { root });
        self.emit(Event::Withdrawn { name, reason });
    }

    /// Answers a request for `chunk` of `root` with a refusal saying why.
    fn refuse(
        &mut self,
        conn: ConnId,
        root: Root,
        chunk: u32,
        because: RefusedBecause,
        reason: String,
    ) {
        let msg = Message::ChunkRefused {
            root,
            chunk,
            because,
            reason,
        };
        self.send(conn, &msg);
    }
}

/// Which of a connection's queued requests to read next: of those that can be served (one
/// for a chunk still arriving waits; a file no longer here is not waited for, it is
/// refused once read), the chunk whose upload began here least often, first asked first
/// among equals. Fetchers that arrive together each ask for the whole file in their own
/// order; this way their first copies are different chunks, which they then trade, rather
/// than the same chunks twice.
fn next_load(queue: &VecDeque<(Root, u32)>, files: &LocalFiles) -> Option<usize> {
    // How often its upload began, or `None` while it is arriving: one lookup a request.
    let began = |(r, c): &(Root, u32)| match files.by_root(r) {
        Some(f) if f.is_arriving(*c) => None,
        Some(f) => Some(f.uploads().began(*c)),
        None => Some(0),
    };
    queue
        .iter()
        .enumerate()
        .filter_map(|(at, q)| Some((at, began(q)?)))
        .min_by_key(|(_, n)| *n)
        .map(|(at, _)| at)
}
