//! Serving chunks to other peers: requests queue per connection (bounded), a few loads per
//! connection are outstanding at once (bounding what sits in send buffers), and every answer
//! is the chunk or a refusal saying why.

use super::{Conn, Io, Peer};
use crate::bytes::Bytes;
use crate::limits::{
    CALLS_PER_FREE_SLOT, FETCHER_IDLE_TIMEOUT_MS, IDLE_REPORT_BACKOFF_STEPS, IDLE_REPORT_GAP_MS,
    MAX_FETCHER_FRAME_BYTES, MAX_LOADS_PER_CONN, MAX_QUEUED_REQUESTS_PER_CONN,
    MAX_WAITERS_TOLD_HAVE, SERVE_UNSENT_LOW_BYTES, SLOT_TURN_CHUNKS, UPLOAD_SLOTS,
};
use crate::link::Link;
use crate::machine::{ConnId, Event, Output, StorageKey};
use crate::manifest::{FileName, Root};
use crate::time::Timestamp;
use crate::wire::{encode_chunk_data, Message, RefusedBecause, Role};
use std::collections::{BTreeSet, VecDeque};
use std::net::SocketAddr;
use std::ops::Bound;

/// Chunks remembered per fetcher as steered elsewhere (a bound on memory; forgetting one
/// only means it may be steered once more).
const MAX_STEERED_PER_CONN: usize = 4096;
/// Fetchers remembered as waiting for a slot; one that does not fit polls as before.
const MAX_WAITING_FETCHERS: usize = 256;
/// A slot offered with `Ready` is kept for the fetcher this long, so that a newcomer asking
/// first cannot take it and send the waiter to the back again (at 1000 peers that starved a
/// quarter of the swarm). Long enough for a round trip on a LAN or nearby; on longer paths
/// the hold lapses and the slot goes to whoever asks first, as without it.
const READY_HOLD_MS: u64 = 60;

/// Slots in use: those held, and one for each `CALLS_PER_FREE_SLOT` fetchers called.
fn slots_in_use(serving: usize, called: usize) -> usize {
    serving + called.div_ceil(CALLS_PER_FREE_SLOT)
}

/// An inbound connection from a peer that fetches from us.
#[derive(Debug)]
pub(super) struct InLink {
    pub link: Link,
    queue: VecDeque<(Root, u32)>,
    loading: usize,
    /// Holds one of the upload slots: its requests are served, not refused as busy.
    slot: bool,
    /// Called with `Ready` for a slot, kept for it until then.
    invited_until: Option<Timestamp>,
    /// Chunks accepted in this turn at the slot.
    turn_chunks: u32,
    /// The peer's count of busy refusals when this turn began: a higher count now means
    /// others are waiting.
    turn_began_at_refusal: u64,
    /// Chunks refused to this fetcher as sent here too often. A refusal is a hint, never a
    /// denial: a fetcher that asks again found no better holder, and is served (two full
    /// holders each pointing at the other would otherwise starve it).
    steered: BTreeSet<(Root, u32)>,
}

impl InLink {
    pub fn new(remote: SocketAddr, now: Timestamp) -> InLink {
        InLink {
            link: Link::with_frame_limit(remote, Role::Peer, now, MAX_FETCHER_FRAME_BYTES),
            queue: VecDeque::new(),
            loading: 0,
            slot: false,
            invited_until: None,
            turn_chunks: 0,
            turn_began_at_refusal: 0,
            steered: BTreeSet::new(),
        }
    }
}

impl InLink {
    /// Called with `Ready` for a slot it has not taken, and the slot still kept for it.
    fn is_called(&self, now: Timestamp) -> bool {
        !self.slot && self.invited_until.is_some_and(|t| t > now)
    }

    /// When to drop this fetcher: the link's own deadlines, or idleness while it has
    /// nothing queued or loading.
    pub fn deadline(&self) -> Option<(Timestamp, &'static str)> {
        let idle = (self.queue.is_empty() && self.loading == 0).then_some(FETCHER_IDLE_TIMEOUT_MS);
        self.link.deadline(idle)
    }
}

impl Peer {
    pub(super) fn handle_request(&mut self, now: Timestamp, conn: ConnId, msg: Message) {
        let Message::GetChunk {
            root,
            chunk,
            others,
        } = msg
        else {
            let reason = format!("unexpected {} from a fetching peer", msg.kind());
            return self.violation(now, conn, reason);
        };
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
        if !self.take_slot(now, conn) {
            self.busy_refusals += 1;
            self.join_line(conn, root, false);
            self.send(conn, &Message::Busy { root, chunk });
            return self.cut_long_turns(conn);
        }
        let Some(Conn::In(i)) = self.conns.get_mut(&conn) else {
            return;
        };
        if i.queue.len() >= MAX_QUEUED_REQUESTS_PER_CONN {
            return self.send(conn, &Message::Busy { root, chunk });
        }
        i.queue.push_back((root, chunk));
        i.turn_chunks += 1;
        // Counted when promised, not when sent: requests arriving together must not all
        // be granted the same chunk.
        if let Some(f) = self.by_root.get(&root).and_then(|n| self.files.get_mut(n)) {
            f.uploads.sent(chunk, now, conn);
        }
        self.pump_serving(now, conn);
    }

    /// Whether `conn` may be served now: it holds a slot whose turn is not over, or a
    /// slot is free (or kept for it after `Ready`). A turn ends after `SLOT_TURN_CHUNKS` if
    /// someone was turned away meanwhile; the slot is given up once what was accepted has
    /// been sent.
    fn take_slot(&mut self, now: Timestamp, conn: ConnId) -> bool {
        let refusals = self.busy_refusals;
        let (serving, called) = self.slot_counts(now, Some(conn));
        let others = slots_in_use(serving, called);
        let Some(Conn::In(i)) = self.conns.get_mut(&conn) else {
            return false;
        };
        if i.slot {
            let others_waiting = refusals > i.turn_began_at_refusal;
            return i.turn_chunks < SLOT_TURN_CHUNKS || !others_waiting;
        }
        let invited = i.invited_until.take().is_some_and(|t| t > now);
        // However many were called, no more than `UPLOAD_SLOTS` are served at once.
        if serving >= UPLOAD_SLOTS || (!invited && others >= UPLOAD_SLOTS) {
            self.slot_conns.remove(&conn);
            return false;
        }
        i.slot = true;
        self.idle_streak = 0;
        self.slot_conns.insert(conn);
        i.turn_chunks = 0;
        i.turn_began_at_refusal = refusals;
        self.waiting.retain(|(c, _)| *c != conn);
        if serving + 1 >= UPLOAD_SLOTS {
            self.recall_invitations(now);
        }
        true
    }

    /// Every slot is taken: fetchers still called for one go back to the front of the line
    /// in the order they waited, to be called first when a slot frees.
    fn recall_invitations(&mut self, now: Timestamp) {
        let called = std::mem::take(&mut self.called);
        for (conn, root) in called.into_iter().rev() {
            let Some(Conn::In(i)) = self.conns.get_mut(&conn) else {
                continue;
            };
            if !i.is_called(now) {
                continue;
            }
            i.invited_until = None;
            self.slot_conns.remove(&conn);
            self.join_line(conn, root, true);
        }
    }

    /// The data of chunk `chunk` of `root`, requested from a holder, has begun to arrive:
    /// it is announced as held now, not when verified and stored. The next fetchers' requests
    /// then travel while the transfer finishes and are served the moment it is stored — a
    /// chunk spreads through a swarm in generations, and each generation no longer waits a
    /// tracker hop and a request after the last. Should the transfer fail, those waiting are
    /// refused (`settle_arrivals`).
    pub(super) fn chunk_arriving(&mut self, now: Timestamp, root: Root, chunk: u32) {
        let Some(f) = self.by_root.get(&root).and_then(|n| self.files.get_mut(n)) else {
            return;
        };
        if !f.have.contains(chunk) && f.arriving.insert(chunk) {
            self.announce_chunk(now, root, chunk);
        }
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
        let conns: Vec<ConnId> = self.slot_conns.iter().copied().collect();
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
        if f.arriving.is_empty() {
            return;
        }
        let a = self.downloads.get(name).and_then(|d| d.active.as_ref());
        // Never held as well: a chunk leaves `arriving` when it is stored.
        let coming =
            |c: u32| a.is_some_and(|a| a.in_flight.contains_key(&c) || a.storing.contains(&c));
        let failed: Vec<u32> = f.arriving.iter().copied().filter(|c| !coming(*c)).collect();
        if failed.is_empty() {
            return;
        }
        let root = f.root;
        for chunk in &failed {
            f.arriving.remove(chunk);
            f.owed.insert(*chunk);
        }
        // Requests queue only at fetchers holding a slot.
        let conns: Vec<ConnId> = self.slot_conns.iter().copied().collect();
        for conn in conns {
            let Some(Conn::In(i)) = self.conns.get_mut(&conn) else {
                continue;
            };
            let lost = |(r, c): &(Root, u32)| *r == root && failed.contains(c);
            let refused: Vec<(Root, u32)> = i.queue.iter().copied().filter(lost).collect();
            i.queue.retain(|q| !lost(q));
            for (root, chunk) in refused {
                if let Some(f) = self.files.get_mut(name) {
                    f.uploads.withdrawn(chunk, conn);
                }
                let reason = format!("chunk {chunk} not held here (its transfer failed)");
                self.refuse(conn, root, chunk, RefusedBecause::NotHeld, reason);
            }
            self.pump_serving(now, conn);
        }
    }

    /// Chunk `chunk` of `root` was just stored: the fetchers served (or invited) and the
    /// first `MAX_WAITERS_TOLD_HAVE` waiting for it hear so at once. Their chunk maps come
    /// from the tracker, seconds stale, so a chunk new to the swarm would otherwise wait at
    /// its few holders while they upload what many others have too.
    pub(super) fn tell_fetchers(&mut self, root: Root, chunk: u32) {
        let waiting = self.waiting.iter().filter(|(_, r)| *r == root);
        let first_in_line = waiting.map(|(c, _)| *c).take(MAX_WAITERS_TOLD_HAVE);
        let told: BTreeSet<ConnId> = self
            .slot_conns
            .iter()
            .copied()
            .chain(first_in_line)
            .collect();
        for conn in told {
            if matches!(self.conns.get(&conn), Some(Conn::In(_))) {
                self.send(conn, &Message::Have { root, chunk });
            }
        }
    }

    /// Someone waits now: fetchers whose turn ran past `SLOT_TURN_CHUNKS` (they asked for
    /// more before anyone waited) are told `Busy` for what is still queued past it, so a
    /// deep pipeline cannot keep a slot from others for longer than a turn.
    fn cut_long_turns(&mut self, waiter: ConnId) {
        let slots: Vec<ConnId> = self
            .slot_conns
            .iter()
            .copied()
            .filter(|c| *c != waiter)
            .collect();
        for conn in slots {
            let Some(Conn::In(i)) = self.conns.get_mut(&conn) else {
                continue;
            };
            let excess = i.turn_chunks.saturating_sub(SLOT_TURN_CHUNKS) as usize;
            let keep = i.queue.len().saturating_sub(excess);
            let cut: Vec<(Root, u32)> = i.queue.drain(keep..).collect();
            i.turn_chunks -= cut.len() as u32;
            for (root, chunk) in cut {
                if let Some(f) = self.by_root.get(&root).and_then(|n| self.files.get_mut(n)) {
                    f.uploads.withdrawn(chunk, conn);
                }
                self.join_line(conn, root, false);
                self.send(conn, &Message::Busy { root, chunk });
            }
        }
    }

    /// Slots held or kept for fetchers called with `Ready` (those called for one slot count
    /// as one), but for `except`'s.
    pub(super) fn slots_taken(&self, now: Timestamp, except: Option<ConnId>) -> usize {
        let (serving, called) = self.slot_counts(now, except);
        slots_in_use(serving, called)
    }

    /// Fetchers holding a slot, and fetchers called for one and not yet come, but for
    /// `except`: one pass over the few connections in `slot_conns`.
    fn slot_counts(&self, now: Timestamp, except: Option<ConnId>) -> (usize, usize) {
        let (mut serving, mut called) = (0, 0);
        for id in self.slot_conns.iter().filter(|id| Some(**id) != except) {
            match self.conns.get(id) {
                Some(Conn::In(i)) if i.slot => serving += 1,
                Some(Conn::In(i)) if i.is_called(now) => called += 1,
                _ => {}
            }
        }
        (serving, called)
    }

    /// A fetcher left: if that freed a slot (its own, or one kept for it), the next in
    /// line is called.
    pub(super) fn fetcher_left(&mut self, now: Timestamp) {
        if self.slots_taken(now, None) < UPLOAD_SLOTS {
            self.invite_waiting(now);
        }
    }

    /// Remembers a fetcher told `Busy` (at the back of the line) or called back (at the
    /// front), once, so it hears `Ready` when a slot frees; one that does not fit polls.
    fn join_line(&mut self, conn: ConnId, root: Root, at_front: bool) {
        if self.waiting.len() >= MAX_WAITING_FETCHERS
            || self.waiting.iter().any(|(c, _)| *c == conn)
        {
            return;
        }
        if at_front {
            self.waiting.push_front((conn, root));
        } else {
            self.waiting.push_back((conn, root));
        }
    }

    /// A slot came free: calls the `CALLS_PER_FREE_SLOT` longest-waiting fetchers still
    /// connected (`Ready`) and keeps it for them for `READY_HOLD_MS` (unused, it goes to
    /// whoever asks next). The first to ask takes it; the others go back to the front of the
    /// line. With nobody waiting, the tracker is told the slot is free.
    pub(super) fn invite_waiting(&mut self, now: Timestamp) {
        let until = now.plus_ms(READY_HOLD_MS);
        // Those called before who came, or whose call lapsed, are no longer called.
        let conns = &self.conns;
        let still_called =
            |c: &ConnId| matches!(conns.get(c), Some(Conn::In(i)) if i.is_called(now));
        self.called.retain(|(c, _)| still_called(c));
        let mut called = 0;
        while called < CALLS_PER_FREE_SLOT {
            let Some((conn, root)) = self.waiting.pop_front() else {
                break;
            };
            let Some(Conn::In(i)) = self.conns.get_mut(&conn) else {
                continue;
            };
            if !i.slot {
                i.invited_until = Some(until);
                self.slot_conns.insert(conn);
                self.called.push((conn, root));
                self.send(conn, &Message::Ready { root });
                called += 1;
            }
        }
        if called == 0 {
            return self.schedule_idle_report(now);
        }
        self.check_slots_at(until);
    }

    /// Upload slots free with nobody waiting for them.
    fn idle_slots(&self, now: Timestamp) -> usize {
        if !self.waiting.is_empty() {
            return 0;
        }
        UPLOAD_SLOTS.saturating_sub(self.slots_taken(now, None))
    }

    /// Reports idle slots to the tracker as soon as `IDLE_REPORT_GAP_MS` allows: a slot came
    /// free, or there is a new chunk to offer.
    pub(super) fn schedule_idle_report(&mut self, now: Timestamp) {
        let at = match self.last_idle_report {
            Some((t, _)) => t.plus_ms(IDLE_REPORT_GAP_MS).max(now),
            None => now,
        };
        self.check_slots_at(at);
    }

    /// Free slots are looked at again at `at` (or earlier, if asked for earlier).
    fn check_slots_at(&mut self, at: Timestamp) {
        self.slots_check_at = Some(self.slots_check_at.map_or(at, |t| t.min(at)));
    }

    /// Puts free slots to use: the next waiting fetcher is called when one called with
    /// `Ready` asked nothing while the slot was kept for it (it found what we have elsewhere
    /// meanwhile; left free, the slot would wait for someone to ask on their own, and the
    /// line would keep the tracker from hearing of it). With nobody waiting, tells the
    /// tracker about idle slots, offering the files held in turn, so that it sends fetchers
    /// that lack what we have (`Message::Introduce`).
    pub(super) fn check_free_slots(&mut self, now: Timestamp) {
        self.slots_check_at = None;
        if !self.waiting.is_empty() && self.slots_taken(now, None) < UPLOAD_SLOTS {
            return self.invite_waiting(now);
        }
        let free = self.idle_slots(now);
        if free == 0 || !self.tracker_up() {
            return;
        }
        let last = self.last_idle_report.map(|(_, r)| r);
        let held = |r: &&Root| {
            let f = self.by_root.get(r).and_then(|n| self.files.get(n));
            f.is_some_and(|f| !f.have.is_empty() || !f.arriving.is_empty())
        };
        let after = last.map_or(Bound::Unbounded, Bound::Excluded);
        let later = self
            .by_root
            .range((after, Bound::Unbounded))
            .map(|(r, _)| r);
        let Some(root) = later.chain(self.by_root.keys()).find(held).copied() else {
            return;
        };
        self.last_idle_report = Some((now, root));
        let free = u8::try_from(free).unwrap_or(u8::MAX);
        self.send_tracker(&Message::Idle { root, free });
        // Still idle later (nobody came): say so again, less often each time.
        let wait_ms = IDLE_REPORT_GAP_MS << self.idle_streak.min(IDLE_REPORT_BACKOFF_STEPS);
        self.idle_streak += 1;
        self.slots_check_at = Some(now.plus_ms(wait_ms));
    }

    fn check_servable(
        &self,
        root: &Root,
        chunk: u32,
        others: u8,
        now: Timestamp,
        requester: ConnId,
    ) -> Result<(), (RefusedBecause, String)> {
        let connected = |c: ConnId| self.conns.contains_key(&c);
        let steered_before = match self.conns.get(&requester) {
            Some(Conn::In(i)) => i.steered.contains(&(*root, chunk)),
            _ => false,
        };
        let file = self.by_root.get(root).and_then(|n| self.files.get(n));
        match file {
            None => Err((RefusedBecause::NotHeld, "file not shared here".into())),
            // A chunk arriving here is as good as held: the request waits for it.
            Some(f) if !f.have.contains(chunk) && !f.arriving.contains(&chunk) => Err((
                RefusedBecause::NotHeld,
                format!("chunk {chunk} not held here"),
            )),
            // Only a holder of the whole file steers requests (every chunk is wanted from
            // it); a partial holder serves what it has.
            Some(f)
                if f.have.is_full()
                    && !steered_before
                    && f.uploads.refuse(chunk, others, now, requester, connected) =>
            {
                let why = "was sent from here more than others: fetch it elsewhere";
                Err((RefusedBecause::SentOften, format!("chunk {chunk} {why}")))
            }
            Some(_) => Ok(()),
        }
    }

    /// Starts loads for queued requests while the connection has load slots and little
    /// unsent; gives up the upload slot once everything accepted has left.
    pub(super) fn pump_serving(&mut self, now: Timestamp, conn: ConnId) {
        loop {
            let Some(Conn::In(i)) = self.conns.get_mut(&conn) else {
                return;
            };
            let unsent = i.link.unsent();
            if i.slot && i.queue.is_empty() && i.loading == 0 && unsent == 0 {
                i.slot = false;
                self.slot_conns.remove(&conn);
                self.invite_waiting(now);
                continue;
            }
            if i.loading >= MAX_LOADS_PER_CONN || unsent >= SERVE_UNSENT_LOW_BYTES {
                return;
            }
            // The first request that can be served: one for a chunk still arriving waits
            // (a file no longer here is not waited for; it is refused below).
            let (files, by_root) = (&self.files, &self.by_root);
            let arriving = |(r, c): &(Root, u32)| {
                let f = by_root.get(r).and_then(|n| files.get(n));
                f.is_some_and(|f| f.arriving.contains(c))
            };
            let Some(at) = i.queue.iter().position(|q| !arriving(q)) else {
                return;
            };
            let Some((root, chunk)) = i.queue.remove(at) else {
                return;
            };
            i.loading += 1;
            let located = self.by_root.get(&root).and_then(|name| {
                let f = self.files.get(name)?;
                let (offset, len) = f.manifest.chunk_range(chunk)?;
                let key = StorageKey {
                    name: name.clone(),
                    partial: f.partial,
                };
                Some((key, offset, len))
            });
            let Some((key, offset, len)) = located else {
                self.finish_load(conn);
                let reason = "file no longer shared here".into();
                self.refuse(conn, root, chunk, RefusedBecause::NotHeld, reason);
                continue;
            };
            let io = self.new_io(Io::Serve { conn, root, chunk });
            self.out.push(Output::Load {
                io,
                key,
                offset,
                len,
                conn: Some(conn),
            });
        }
    }

    fn finish_load(&mut self, conn: ConnId) {
        if let Some(Conn::In(i)) = self.conns.get_mut(&conn) {
            i.loading = i.loading.saturating_sub(1);
        }
    }

    pub(super) fn handle_loaded(
        &mut self,
        now: Timestamp,
        conn: ConnId,
        root: Root,
        chunk: u32,
        result: Result<Option<Bytes>, String>,
    ) {
        let Some(Conn::In(i)) = self.conns.get(&conn) else {
            return; // the fetcher left meanwhile
        };
        let to = i.link.remote;
        self.finish_load(conn);
        let expected = self
            .by_root
            .get(&root)
            .and_then(|n| self.files.get(n))
            .and_then(|f| f.manifest.chunk_range(chunk))
            .map(|(_, len)| len as usize);
        let reason = match result {
            Ok(Some(data)) if Some(data.len()) == expected => {
                self.emit(Event::Served { root, chunk, to });
                for bytes in encode_chunk_data(root, chunk, data) {
                    self.send_bytes(conn, bytes);
                }
                return self.pump_serving(now, conn);
            }
            Ok(_) => format!("chunk {chunk} is short on disk (the file changed)"),
            Err(e) => format!("cannot read chunk {chunk}: {e}"),
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
        let Some(name) = self.by_root.get(&root).cloned() else {
            return;
        };
        if self.downloads.contains_key(&name) {
            return;
        }
        self.files.remove(&name);
        self.by_root.remove(&root);
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
