//! Upload slots: a peer uploads to `upload_slots` fetchers at once (more on a long path),
//! in turns; the others are told `Busy` and wait in a line, called with `Ready` as slots
//! free; slots nobody waits for are reported to the tracker, which introduces fetchers.

use super::files::LocalFile;
use super::serve::SlotLoss;
use super::ServePolicy;
use super::{Conn, Peer};
use crate::limits::{
    MAX_WAITING_FETCHERS, MAX_WAITING_PER_ADDRESS, MAX_WATCHERS_PER_FILE, SLOT_STALL_MS,
    SLOT_STALL_PENALTY_MS,
};
use crate::machine::ConnId;
use crate::manifest::Root;
use crate::time::Timestamp;
use crate::wire::Message;
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::net::IpAddr;
use std::ops::Bound;

/// Slots in use: those held, and one for each `calls_per_free_slot` fetchers called.
fn slots_in_use(policy: &ServePolicy, serving: usize, called: usize) -> usize {
    serving + called.div_ceil(policy.calls_per_free_slot.max(1))
}

/// The slots' own state (each fetcher's place at a slot is on its `InLink`). Private to
/// this module: the rest of the peer goes through the methods here.
#[derive(Debug, Default)]
pub(super) struct UploadSlots {
    /// `Busy` answers sent so far (tells a slot holder that others are waiting).
    busy_refusals: u64,
    /// Fetchers holding an upload slot or invited to one, and perhaps a few whose
    /// invitation lapsed: the few connections `slots_taken` looks at.
    conns: BTreeSet<ConnId>,
    /// Fetchers told `Busy`, oldest first, with the address each connects from: called
    /// with `Ready` as slots free, the first `calls_per_free_slot` for each. A fetcher
    /// leaves the line when its connection closes, so every place here is a live one
    /// (a seeder's line is long: looking each address up was a tenth of the instructions
    /// of a simulated swarm).
    waiting: VecDeque<(ConnId, Root, IpAddr)>,
    /// Fetchers called with `Ready` and not yet come, in the order called: they go back to
    /// the front of `waiting` if the slots fill first (see `Peer::recall_invitations`).
    called: Vec<(ConnId, Root)>,
    /// When to look at free upload slots again (see `Peer::check_free_slots`): an
    /// invitation lapses, or the tracker is to hear of them.
    check_at: Option<Timestamp>,
    /// When the tracker last heard of idle slots, and for which file.
    last_idle_report: Option<(Timestamp, Root)>,
    /// Idle reports in a row that brought no fetcher: each waits twice as long.
    idle_streak: u32,
    /// Addresses that stalled a slot, and until when they are called only to idle slots
    /// (see `lose_slot`).
    penalised_until: BTreeMap<IpAddr, Timestamp>,
    /// The uplink's pace: what fetchers took since `uplink_since`, and the best rate of a
    /// window (of at least `UPLINK_WINDOW_MS`) in the last `UPLINK_MEMORY_MS` — the best,
    /// for windows when little was queued, or stalled fetchers held it, say nothing of
    /// what the uplink can do.
    uplink_since: Timestamp,
    uplink_bytes: u64,
    uplink_bytes_per_ms: f64,
    uplink_best_at: Timestamp,
    /// Smoothed time from calling a fetcher with `Ready` to its request.
    call_round_trip_ms: Option<f64>,
    /// The last `CALL_SAMPLES` of those times, oldest first...
    recent_calls_ms: VecDeque<u64>,
    /// ...and their lower quartile: the path's own round trip. A fetcher with other
    /// things to ask first answers a call late (at 20 ms one way, half the calls were
    /// answered after 177 ms), one whose request crossed the call early; a quarter of the
    /// way up, the samples of a 100 ms swarm read its 200 ms round trip.
    path_round_trip_ms: Option<u64>,
    /// The chunk size of the file last asked of us (see `UploadSlots::count`).
    chunk_bytes: u32,
    /// Neighbours told of each chunk of a file as it begins to arrive (`Message::Watch`),
    /// at most `MAX_WATCHERS_PER_FILE` a file.
    watchers: BTreeSet<(Root, ConnId)>,
}

/// A call answered later than this says nothing of the round trip: the fetcher had other
/// things to ask first.
const ROUND_TRIP_SAMPLE_MAX_MS: f64 = 2_000.0;

/// Calls whose round trips tell the path's (see `UploadSlots::path_round_trip_ms`).
const CALL_SAMPLES: usize = 16;

/// The uplink's rate is measured over windows at least this long...
const UPLINK_WINDOW_MS: u64 = 500;
/// ...and the best of them is kept this long.
const UPLINK_MEMORY_MS: u64 = 30_000;

impl UploadSlots {
    /// Fetchers waiting for a slot.
    pub fn waiting(&self) -> usize {
        self.waiting.len()
    }

    /// The connections holding a slot or called to one.
    pub fn conns(&self) -> Vec<ConnId> {
        self.conns.iter().copied().collect()
    }

    /// When free slots are to be looked at next.
    pub fn check_at(&self) -> Option<Timestamp> {
        self.check_at
    }

    /// Upload slots to fill: `upload_slots`, and one more for each whole chunk's transfer
    /// the round trip to fetchers holds, up to `most_upload_slots`. Where a chunk lands
    /// long after it leaves, a slot spends most of a turn waiting on round trips, and a
    /// chunk's spread is a tree whose every generation is mostly latency: more children
    /// per holder fill both. (Counted in one-way latencies, the slots were too few at 20
    /// ms in 256 KiB chunks: docs/swarm.md.)
    pub fn count(&self, policy: &ServePolicy) -> usize {
        let base = policy.upload_slots;
        let (Some(round_trip_ms), rate) = (self.path_round_trip_ms, self.uplink_bytes_per_ms)
        else {
            return base;
        };
        if rate <= 0.0 || self.chunk_bytes == 0 {
            return base;
        }
        let chunk_ms = f64::from(self.chunk_bytes) / rate;
        let extra = (round_trip_ms as f64 / chunk_ms) as usize;
        (base + extra).min(policy.most_upload_slots.max(base))
    }

    /// A call was answered `sample_ms` after it was made.
    fn note_call_round_trip(&mut self, sample_ms: u64) {
        if self.recent_calls_ms.len() == CALL_SAMPLES {
            self.recent_calls_ms.pop_front();
        }
        self.recent_calls_ms.push_back(sample_ms);
        // Unfilled places sort last, past the samples' lower quartile.
        let mut sorted = [u64::MAX; CALL_SAMPLES];
        for (place, sample) in sorted.iter_mut().zip(&self.recent_calls_ms) {
            *place = *sample;
        }
        sorted.sort_unstable();
        self.path_round_trip_ms = sorted.get(self.recent_calls_ms.len() / 4).copied();
    }

    /// A request for a chunk of `chunk_bytes` came.
    pub fn note_chunk_bytes(&mut self, chunk_bytes: u32) {
        self.chunk_bytes = chunk_bytes;
    }

    /// Fetchers took `bytes` of what we sent.
    pub fn uplink_took(&mut self, now: Timestamp, bytes: usize) {
        self.uplink_bytes = self.uplink_bytes.saturating_add(bytes as u64);
        let elapsed_ms = now.since_ms(self.uplink_since);
        if elapsed_ms >= UPLINK_WINDOW_MS {
            let rate = self.uplink_bytes as f64 / elapsed_ms as f64;
            let forgotten = now.since_ms(self.uplink_best_at) > UPLINK_MEMORY_MS;
            if rate >= self.uplink_bytes_per_ms || forgotten {
                self.uplink_bytes_per_ms = rate;
                self.uplink_best_at = now;
            }
            self.uplink_since = now;
            self.uplink_bytes = 0;
        }
    }

    /// The fetchers watching `root` (see `Peer::watch`).
    fn watchers_of(&self, root: Root) -> impl Iterator<Item = ConnId> + '_ {
        let all = (root, ConnId::Inbound(0))..=(root, ConnId::Inbound(u64::MAX));
        self.watchers.range(all).map(|(_, c)| *c)
    }

    /// A fetcher's connection closed.
    pub fn forget(&mut self, conn: ConnId) {
        self.conns.remove(&conn);
        self.watchers.retain(|(_, c)| *c != conn);
        self.waiting.retain(|(c, _, _)| *c != conn);
    }
}

/// A fetcher's place at the upload slots (kept on its connection).
#[derive(Debug, Default)]
pub(super) struct Seat {
    /// Holds one of the upload slots: its requests are served, not refused as busy.
    slot: bool,
    /// Called with `Ready` for a slot, kept for it until then.
    invited_until: Option<Timestamp>,
    /// When it was last called with `Ready`, until it next asks for a chunk.
    called_at: Option<Timestamp>,
    /// Chunks accepted in this turn at the slot.
    turn_chunks: u32,
    /// The peer's count of busy refusals when this turn began: a higher count now means
    /// others are waiting.
    turn_began_at_refusal: u64,
}

impl Seat {
    pub fn holds_slot(&self) -> bool {
        self.slot
    }

    /// A request was accepted in this turn.
    pub fn accepted(&mut self) {
        self.turn_chunks += 1;
    }

    /// Its turn at the slot is over: it was accepted `slot_turn_chunks` while others waited
    /// (`refusals`: the peer's count of `Busy` answers so far).
    fn turn_over(&self, refusals: u64, policy: &ServePolicy) -> bool {
        self.turn_chunks >= policy.slot_turn_chunks && refusals > self.turn_began_at_refusal
    }

    /// Called with `Ready` for a slot it has not taken, and the slot still kept for it.
    fn is_called(&self, now: Timestamp) -> bool {
        !self.slot && self.invited_until.is_some_and(|t| t > now)
    }
}

impl Peer {
    /// `conn` has been sent all it was promised: a slot it holds goes to the next in line;
    /// one whose turn ended earlier is no longer looked at with the slot holders.
    pub(super) fn all_sent(&mut self, now: Timestamp, conn: ConnId) {
        match self.conns.get(&conn) {
            Some(Conn::In(i)) if i.seat.slot => self.leave_slot(now, conn),
            Some(Conn::In(i)) if i.seat.is_called(now) => {}
            _ => {
                self.slots.conns.remove(&conn);
            }
        }
    }

    /// Hands `conn`'s slot to the next in line before its data has left, if its turn is
    /// over (it was accepted `slot_turn_chunks` while others waited), all it was promised
    /// is on its way, and that drains within a round trip to those called (`Ready` to their
    /// request): the next fetcher's requests then arrive as the uplink frees. Handed over
    /// once the data had left, a slot idled a round trip per turn — 200 ms on 100 ms links,
    /// where a turn's two chunks take 100 ms at 10 MB/s.
    pub(super) fn hand_over_early(&mut self, now: Timestamp, conn: ConnId) {
        let (refusals, policy) = (self.slots.busy_refusals, &self.config.serve);
        let unsent = match self.conns.get(&conn) {
            Some(Conn::In(i))
                if i.seat.slot && i.seat.turn_over(refusals, policy) && i.all_loaded() =>
            {
                i.unsent()
            }
            _ => return,
        };
        let (Some(round_trip_ms), rate) = (
            self.slots.call_round_trip_ms,
            self.slots.uplink_bytes_per_ms,
        ) else {
            return;
        };
        // Connections with bytes unsent share the uplink, and the one called will too.
        let sharing = (self.slots.conns.iter())
            .filter(|c| matches!(self.conns.get(c), Some(Conn::In(i)) if i.unsent() > 0))
            .count()
            .max(1);
        let drain_ms = (unsent * (sharing + 1)) as f64 / rate;
        if rate <= 0.0 || drain_ms > round_trip_ms {
            return;
        }
        if let Some(Conn::In(i)) = self.conns.get_mut(&conn) {
            i.seat.slot = false;
        }
        self.invite_waiting(now);
    }

    /// A request came on `conn`: if it was called with `Ready`, how long it took to come
    /// is a round trip to fetchers (see `hand_over_early`).
    pub(super) fn note_request(&mut self, now: Timestamp, conn: ConnId) {
        let Some(Conn::In(i)) = self.conns.get_mut(&conn) else {
            return;
        };
        let Some(called_at) = i.seat.called_at.take() else {
            return;
        };
        let sample_ms = now.since_ms(called_at) as f64;
        if sample_ms > ROUND_TRIP_SAMPLE_MAX_MS {
            return;
        }
        // Smoothed as TCP smooths its round-trip time (RFC 6298).
        let smoothed = &mut self.slots.call_round_trip_ms;
        *smoothed = Some(smoothed.map_or(sample_ms, |s| s + (sample_ms - s) / 8.0));
        self.slots.note_call_round_trip(sample_ms as u64);
    }

    /// `conn` gives up its slot: it goes to the next in line.
    fn leave_slot(&mut self, now: Timestamp, conn: ConnId) {
        if let Some(Conn::In(i)) = self.conns.get_mut(&conn) {
            i.seat.slot = false;
        }
        self.slots.conns.remove(&conn);
        self.invite_waiting(now);
    }

    /// `conn` holds a slot and takes nothing of what is sent to it, or takes it too slowly
    /// while another address waits: the slot goes to the next in line, what it asked
    /// beyond what is loaded is refused `Busy`, and its address waits behind every other
    /// address for `SLOT_STALL_PENALTY_MS`.
    pub(super) fn lose_slot(&mut self, now: Timestamp, conn: ConnId, loss: SlotLoss) {
        if loss == SlotLoss::Slow && !self.another_address_waits(now, conn) {
            return;
        }
        let Some(Conn::In(i)) = self.conns.get_mut(&conn) else {
            return;
        };
        let why = match loss {
            SlotLoss::Stalled => "took nothing for a second",
            SlotLoss::Slow => "takes data too slowly while others wait",
        };
        log::info!(
            "{} ({conn}) {why}: its upload slot goes to another",
            i.link.remote
        );
        i.seat.slot = false;
        let ip = i.link.remote.ip();
        let cut = i.unqueue_from(0);
        for (root, chunk) in cut {
            if let Some(f) = self.files.by_root_mut(&root) {
                f.uploads_mut().withdrawn(chunk, conn);
            }
            self.send(conn, &Message::Busy { root, chunk });
        }
        self.slots
            .penalised_until
            .insert(ip, now.plus_ms(SLOT_STALL_PENALTY_MS));
        self.leave_slot(now, conn);
    }

    /// Answers a request that found no slot: `Busy`, a place in line (to be called with
    /// `Ready`), and the turns of those at a slot cut to make room.
    /// A fetcher whose address lost a slot for stalling is not one that turns end for.
    pub(super) fn refuse_busy(&mut self, now: Timestamp, conn: ConnId, root: Root, chunk: u32) {
        self.join_line(conn, root, false);
        self.send(conn, &Message::Busy { root, chunk });
        if self.penalised(conn, now) {
            return;
        }
        self.slots.busy_refusals += 1;
        self.cut_long_turns(now, conn);
    }

    /// Whether `conn` may be served now: it holds a slot whose turn is not over, or a
    /// slot is free (or kept for it after `Ready`). A turn ends after `slot_turn_chunks` if
    /// someone was turned away meanwhile; the slot is given up once what was accepted has
    /// been sent.
    pub(super) fn take_slot(&mut self, now: Timestamp, conn: ConnId) -> bool {
        let refusals = self.slots.busy_refusals;
        let (serving, called) = self.slot_counts(now, Some(conn));
        let policy = self.config.serve;
        let count = self.slots.count(&policy);
        let others = slots_in_use(&policy, serving, called);
        let uncalled_ok = self.may_take_uncalled(now, conn);
        let Some(Conn::In(i)) = self.conns.get_mut(&conn) else {
            return false;
        };
        let seat = &mut i.seat;
        if seat.slot {
            return !seat.turn_over(refusals, &policy);
        }
        let invited = seat.invited_until.take().is_some_and(|t| t > now);
        // However many were called, no more than `count` are served at once.
        if serving >= count || (!invited && (others >= count || !uncalled_ok)) {
            // One whose turn ended may still be owed data, and is looked at until it is sent.
            if !i.promised_more() {
                self.slots.conns.remove(&conn);
            }
            return false;
        }
        seat.slot = true;
        i.drained(now);
        i.restart_pace(now);
        let seat = &mut i.seat;
        seat.turn_chunks = 0;
        seat.turn_began_at_refusal = refusals;
        self.slots.idle_streak = 0;
        self.conns.slot_stall_due(now.plus_ms(SLOT_STALL_MS));
        self.slots.conns.insert(conn);
        self.slots.waiting.retain(|(c, _, _)| *c != conn);
        if serving + 1 >= count {
            self.recall_invitations(now);
        }
        true
    }

    /// Every slot is taken: fetchers still called for one go back to the front of the line
    /// in the order they waited, to be called first when a slot frees.
    fn recall_invitations(&mut self, now: Timestamp) {
        let called = std::mem::take(&mut self.slots.called);
        for (conn, root) in called.into_iter().rev() {
            let Some(Conn::In(i)) = self.conns.get_mut(&conn) else {
                continue;
            };
            if !i.seat.is_called(now) {
                continue;
            }
            i.seat.invited_until = None;
            self.slots.conns.remove(&conn);
            self.join_line(conn, root, true);
        }
    }

    /// A fetcher on `conn` asks to hear of our chunks of `root` (see `Message::Watch`):
    /// heard while there is room, and the file is ours.
    pub(super) fn watch(&mut self, conn: ConnId, root: Root) {
        let room = self.slots.watchers_of(root).count() < MAX_WATCHERS_PER_FILE;
        if room && self.files.by_root(&root).is_some() {
            self.slots.watchers.insert((root, conn));
        }
    }

    /// Chunk `chunk` of `root` was just stored (or began to arrive): the fetchers served
    /// (or invited), the first `waiters_told_have` waiting, and its watchers hear so at
    /// once. Their chunk maps come from the tracker, seconds stale, so a chunk new to the
    /// swarm would otherwise wait at its few holders while they upload what many others
    /// have too.
    pub(super) fn tell_fetchers(&mut self, root: Root, chunk: u32) {
        let waiting = self.slots.waiting.iter().filter(|(_, r, _)| *r == root);
        let first_in_line = waiting
            .map(|(c, _, _)| *c)
            .take(self.config.serve.waiters_told_have);
        let watchers = self.slots.watchers_of(root);
        let told: BTreeSet<ConnId> = self
            .slots
            .conns
            .iter()
            .copied()
            .chain(first_in_line)
            .chain(watchers)
            .collect();
        for conn in told {
            if matches!(self.conns.get(&conn), Some(Conn::In(_))) {
                self.send(conn, &Message::Have { root, chunk });
            }
        }
    }

    /// Someone waits now: fetchers whose turn ran past `slot_turn_chunks` (they asked for
    /// more before anyone waited) are told `Busy` for what is still queued past it, so a
    /// deep pipeline cannot keep a slot from others for longer than a turn.
    fn cut_long_turns(&mut self, now: Timestamp, waiter: ConnId) {
        let slots: Vec<ConnId> = self
            .slots
            .conns
            .iter()
            .copied()
            .filter(|c| *c != waiter)
            .collect();
        let turn_chunks = self.config.serve.slot_turn_chunks;
        for conn in slots {
            let Some(Conn::In(i)) = self.conns.get_mut(&conn) else {
                continue;
            };
            let excess = i.seat.turn_chunks.saturating_sub(turn_chunks) as usize;
            let cut = i.unqueue_from(i.queued().saturating_sub(excess));
            i.seat.turn_chunks -= cut.len() as u32;
            for (root, chunk) in cut {
                if let Some(f) = self.files.by_root_mut(&root) {
                    f.uploads_mut().withdrawn(chunk, conn);
                }
                self.join_line(conn, root, false);
                self.send(conn, &Message::Busy { root, chunk });
            }
            self.hand_over_early(now, conn);
        }
    }

    /// Slots held or kept for fetchers called with `Ready` (those called for one slot count
    /// as one), but for `except`'s.
    pub(super) fn slots_taken(&self, now: Timestamp, except: Option<ConnId>) -> usize {
        let (serving, called) = self.slot_counts(now, except);
        slots_in_use(&self.config.serve, serving, called)
    }

    /// Fetchers holding a slot, and fetchers called for one and not yet come, but for
    /// `except`: one pass over the few connections in `slot_conns`.
    fn slot_counts(&self, now: Timestamp, except: Option<ConnId>) -> (usize, usize) {
        let (mut serving, mut called) = (0, 0);
        for id in self.slots.conns.iter().filter(|id| Some(**id) != except) {
            match self.conns.get(id) {
                Some(Conn::In(i)) if i.seat.slot => serving += 1,
                Some(Conn::In(i)) if i.seat.is_called(now) => called += 1,
                _ => {}
            }
        }
        (serving, called)
    }

    /// A fetcher left: if that freed a slot (its own, or one kept for it), the next in
    /// line is called.
    pub(super) fn fetcher_left(&mut self, now: Timestamp) {
        if self.slots_taken(now, None) < self.slots.count(&self.config.serve) {
            self.invite_waiting(now);
        }
    }

    /// The address a fetcher connects from.
    fn fetcher_ip(&self, conn: ConnId) -> Option<IpAddr> {
        match self.conns.get(&conn) {
            Some(Conn::In(i)) => Some(i.link.remote.ip()),
            _ => None,
        }
    }

    /// Remembers a fetcher told `Busy` (at the back of the line) or called back (at the
    /// front), once, so it hears `Ready` when a slot frees; one that does not fit (the line
    /// is full, or its address holds `MAX_WAITING_PER_ADDRESS` places) polls.
    fn join_line(&mut self, conn: ConnId, root: Root, at_front: bool) {
        let Some(ip) = self.fetcher_ip(conn) else {
            return;
        };
        let waiting = &self.slots.waiting;
        let same_address = waiting.iter().filter(|(_, _, a)| *a == ip).count();
        if waiting.len() >= MAX_WAITING_FETCHERS
            || same_address >= MAX_WAITING_PER_ADDRESS
            || waiting.iter().any(|(c, _, _)| *c == conn)
        {
            return;
        }
        if at_front {
            self.slots.waiting.push_front((conn, root, ip));
        } else {
            self.slots.waiting.push_back((conn, root, ip));
        }
    }

    /// A slot came free: calls the `calls_per_free_slot` longest-waiting fetchers still
    /// connected (`Ready`) and keeps it for them for `ready_hold_ms` (unused, it goes to
    /// whoever asks next). The first to ask takes it; the others go back to the front of the
    /// line. With nobody waiting, the tracker is told the slot is free.
    pub(super) fn invite_waiting(&mut self, now: Timestamp) {
        let until = now.plus_ms(self.config.serve.ready_hold_ms);
        // Those called before who came, or whose call lapsed, are no longer called.
        let conns = &self.conns;
        let still_called =
            |c: &ConnId| matches!(conns.get(c), Some(Conn::In(i)) if i.seat.is_called(now));
        self.slots.called.retain(|(c, _)| still_called(c));
        let mut served = self.addresses_at_slots(now);
        let mut called = 0;
        while called < self.config.serve.calls_per_free_slot {
            let Some(next) = self.next_in_line(now, &served) else {
                break;
            };
            let Some((conn, root, ip)) = self.slots.waiting.remove(next) else {
                break;
            };
            served.insert(ip);
            let Some(Conn::In(i)) = self.conns.get_mut(&conn) else {
                continue;
            };
            if !i.seat.slot {
                i.seat.invited_until = Some(until);
                i.seat.called_at = Some(now);
                self.slots.conns.insert(conn);
                self.slots.called.push((conn, root));
                self.send(conn, &Message::Ready { root });
                called += 1;
            }
        }
        if called == 0 {
            return self.schedule_idle_report(now);
        }
        self.check_slots_at(until);
    }

    /// Who in line is called next: the longest waiting, but of an address holding no slot
    /// if one waits (one host's many connections cannot take every slot while another
    /// host waits), and not of an address serving a penalty unless every slot is idle.
    fn next_in_line(&mut self, now: Timestamp, served: &BTreeSet<IpAddr>) -> Option<usize> {
        self.slots.penalised_until.retain(|_, t| *t > now);
        let penalised_until = &self.slots.penalised_until;
        let callable = |ip: &IpAddr| served.is_empty() || !penalised_until.contains_key(ip);
        let waiting = &self.slots.waiting;
        let fresh = |ip: &IpAddr| callable(ip) && !served.contains(ip);
        (waiting.iter().position(|(_, _, ip)| fresh(ip)))
            .or_else(|| waiting.iter().position(|(_, _, ip)| callable(ip)))
    }

    /// Whether `conn`, not called, may take a free slot: not if its address stalled a slot
    /// (it waits to be called, after every other address), nor if its address is at a slot
    /// already while another address waits in line.
    fn may_take_uncalled(&self, now: Timestamp, conn: ConnId) -> bool {
        let Some(ip) = self.fetcher_ip(conn) else {
            return false;
        };
        let another_waits = (self.slots.waiting.iter()).any(|(_, _, other)| *other != ip);
        let crowding = another_waits && self.addresses_at_slots(now).contains(&ip);
        !(self.penalised(conn, now) || crowding)
    }

    /// How long the slot holder on `conn` may take nothing before it loses its slot:
    /// `SLOT_STALL_MS`, or, when the uplink is the bottleneck, four times what is queued
    /// for it and for the other slot holders still taking data takes at the uplink's
    /// measured rate — a holder waiting behind others' data on a slow uplink has not
    /// stalled. But an uplink on which no slot holder took anything for `SLOT_STALL_MS` is
    /// idle, not the bottleneck, and the floor holds; and holders that stalled never count.
    /// Else fetchers that stop reading with deep pipelines buy themselves and each other
    /// seconds of grace (1-4 s a round in `slot_hogs_cost_a_swarm_little`).
    pub(super) fn slot_stall_ms(&self, now: Timestamp, conn: ConnId) -> u64 {
        let (mut queued, mut uplink_busy) = (0, false);
        for c in &self.slots.conns {
            let Some(Conn::In(i)) = self.conns.get(c) else {
                continue;
            };
            let taking = i.seat.holds_slot() && i.taking(now);
            uplink_busy |= taking;
            if taking || (*c == conn && i.seat.holds_slot()) {
                queued += i.unsent();
            }
        }
        if !uplink_busy {
            return SLOT_STALL_MS;
        }
        let rate = self.slots.uplink_bytes_per_ms;
        if rate <= 0.0 {
            return SLOT_STALL_MS;
        }
        let drain_ms = (4.0 * queued as f64 / rate).min(u64::MAX as f64 / 2.0) as u64;
        drain_ms.max(SLOT_STALL_MS)
    }

    /// Whether a fetcher from another address than `conn`'s, not serving a penalty, waits.
    fn another_address_waits(&self, now: Timestamp, conn: ConnId) -> bool {
        let ip = self.fetcher_ip(conn);
        (self.slots.waiting.iter())
            .any(|(c, _, other)| Some(*other) != ip && !self.penalised(*c, now))
    }

    /// Whether `conn`'s address lost a slot for stalling, and waits behind the others.
    pub(super) fn penalised(&self, conn: ConnId, now: Timestamp) -> bool {
        let at = self
            .fetcher_ip(conn)
            .and_then(|ip| self.slots.penalised_until.get(&ip));
        at.is_some_and(|t| *t > now)
    }

    /// Addresses holding a slot or called to one.
    fn addresses_at_slots(&self, now: Timestamp) -> BTreeSet<IpAddr> {
        (self.slots.conns.iter())
            .filter_map(|c| match self.conns.get(c) {
                Some(Conn::In(i)) if i.seat.slot || i.seat.is_called(now) => {
                    Some(i.link.remote.ip())
                }
                _ => None,
            })
            .collect()
    }

    /// Upload slots free with nobody waiting for them.
    fn idle_slots(&self, now: Timestamp) -> usize {
        if !self.slots.waiting.is_empty() {
            return 0;
        }
        (self.slots.count(&self.config.serve)).saturating_sub(self.slots_taken(now, None))
    }

    /// Reports idle slots to the tracker as soon as `idle_report_gap_ms` allows: a slot came
    /// free, or there is a new chunk to offer.
    pub(super) fn schedule_idle_report(&mut self, now: Timestamp) {
        let at = match self.slots.last_idle_report {
            Some((t, _)) => t.plus_ms(self.config.serve.idle_report_gap_ms).max(now),
            None => now,
        };
        self.check_slots_at(at);
    }

    /// Free slots are looked at again at `at` (or earlier, if asked for earlier).
    fn check_slots_at(&mut self, at: Timestamp) {
        self.slots.check_at = Some(self.slots.check_at.map_or(at, |t| t.min(at)));
    }

    /// Puts free slots to use: the next waiting fetcher is called when one called with
    /// `Ready` asked nothing while the slot was kept for it (it found what we have elsewhere
    /// meanwhile; left free, the slot would wait for someone to ask on their own, and the
    /// line would keep the tracker from hearing of it). With nobody waiting, tells the
    /// tracker about idle slots, offering the files held in turn, so that it sends fetchers
    /// that lack what we have (`Message::Introduce`).
    pub(super) fn check_free_slots(&mut self, now: Timestamp) {
        self.slots.check_at = None;
        if !self.slots.waiting.is_empty()
            && self.slots_taken(now, None) < self.slots.count(&self.config.serve)
        {
            return self.invite_waiting(now);
        }
        let free = self.idle_slots(now);
        if free == 0 || !self.tracker_up() {
            return;
        }
        let last = self.slots.last_idle_report.map(|(_, r)| r);
        let held = |r: &&Root| self.files.by_root(r).is_some_and(LocalFile::has_any);
        let after = last.as_ref().map_or(Bound::Unbounded, Bound::Excluded);
        let later = self.files.roots_after(after);
        let Some(root) = later.chain(self.files.roots()).find(held).copied() else {
            return;
        };
        self.slots.last_idle_report = Some((now, root));
        let free = u8::try_from(free).unwrap_or(u8::MAX);
        self.send_tracker(&Message::Idle { root, free });
        // Still idle later (nobody came): say so again, less often each time.
        let policy = &self.config.serve;
        let wait_ms = policy.idle_report_gap_ms
            << self.slots.idle_streak.min(policy.idle_report_backoff_steps);
        self.slots.idle_streak += 1;
        self.slots.check_at = Some(now.plus_ms(wait_ms));
    }
}
