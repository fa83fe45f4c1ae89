//! The connection table: every connection the peer has (the tracker's, holders we fetch
//! from, fetchers we serve), how bytes become messages for the right room, deadlines and
//! silence, and which holder connection makes room for another when all are in use.

use super::addrmap::AddrMap;
use super::ledger::Ledger;
use super::serve::InLink;
use super::{Peer, PeerConfig};
use crate::deadlines::{earliest, ConnDeadlines};
use crate::idmap::IdMap;
use crate::limits::{
    FETCHER_IDLE_TIMEOUT_MS, HOLDER_EVICTABLE_AFTER_MS, HOLDER_IDLE_TIMEOUT_MS, MAX_CHUNKS_STORING,
    MAX_PEER_CONNECTIONS, SESSION_SILENT_MS, SLOT_PACE_WINDOW_MS,
};
use crate::link::{clip, Link, DEADLINE_LEAD_MS};
use crate::machine::{ConnId, Event, Output};
use crate::manifest::Root;
use crate::outbox::CloseReason;
use crate::time::Timestamp;
use crate::wire::{Complaint, Message, Role};
use std::cell::Cell;
use std::net::SocketAddr;

/// An outbound connection to a holder.
#[derive(Debug)]
pub(super) struct OutLink {
    link: Link,
    /// When the holder last answered, or was first asked after owing nothing: it owes an
    /// answer within the request timeout from then.
    last_activity: Timestamp,
    /// The holder served us since it last said `Busy`: a full pipeline may go to it. Until
    /// then one request probes it, so a busy holder costs one refusal, not a pipeline's.
    serving: bool,
    /// When the connection was established: requests made before waited for it.
    connected_at: Option<Timestamp>,
}

impl OutLink {
    pub(super) fn remote(&self) -> SocketAddr {
        self.link.remote
    }

    /// The connection is established.
    pub(super) fn connected(&mut self, now: Timestamp) {
        self.connected_at = Some(now);
    }

    /// When a request made at `issued` could leave: then, or once connected.
    pub(super) fn left_at(&self, issued: Timestamp) -> Timestamp {
        self.connected_at.map_or(issued, |at| at.max(issued))
    }

    /// Whether the holder served us since it last said `Busy` (or has not answered yet).
    pub(super) fn serving(&self) -> bool {
        self.serving
    }

    /// A request goes to the holder; `owed_nothing`: it owed none before, so its time to
    /// answer starts now.
    pub(super) fn asked(&mut self, now: Timestamp, owed_nothing: bool) {
        if owed_nothing {
            self.last_activity = now;
        }
    }

    /// The holder answered a request: with data (`Some(true)`), `Busy` (`Some(false)`) or
    /// a refusal (`None`, which says nothing of its slots).
    pub(super) fn answered(&mut self, now: Timestamp, serving: Option<bool>) {
        self.last_activity = now;
        if let Some(serving) = serving {
            self.serving = serving;
        }
    }
}

/// Every connection the peer has, by id, with what is kept about them as a whole.
#[derive(Debug)]
pub(super) struct ConnTable {
    /// Looked up for nearly every input, so hashed (boxed: a table has room to spare, and
    /// a connection is half a kilobyte)...
    by_id: IdMap<ConnId, Box<Conn>>,
    /// ...and walked in id order, kept here.
    order: Vec<ConnId>,
    /// Our connection to each holder we fetch from, by the holder's address.
    holders: AddrMap<ConnId>,
    /// When the connections' deadlines are next looked at.
    deadlines: ConnDeadlines,
    /// No outbound connection is evictable before this (see `any_evictable`).
    no_evictable_before: Cell<Timestamp>,
    next_id: u64,
}

impl ConnTable {
    /// A table whose connections' deadlines are at least `lead_ms` away when set.
    pub(super) fn new(lead_ms: u64) -> ConnTable {
        ConnTable {
            by_id: IdMap::default(),
            order: Vec::new(),
            holders: AddrMap::default(),
            deadlines: ConnDeadlines::new(lead_ms),
            no_evictable_before: Cell::new(Timestamp::ZERO),
            next_id: 0,
        }
    }

    pub(super) fn get(&self, id: &ConnId) -> Option<&Conn> {
        self.by_id.get(id).map(|c| &**c)
    }

    pub(super) fn get_mut(&mut self, id: &ConnId) -> Option<&mut Conn> {
        self.by_id.get_mut(id).map(|c| &mut **c)
    }

    pub(super) fn contains_key(&self, id: &ConnId) -> bool {
        self.by_id.contains_key(id)
    }

    /// Forgets a connection (a holder's stays listed by address until `forget_holder`).
    pub(super) fn remove(&mut self, id: &ConnId) -> Option<Conn> {
        let conn = self.by_id.remove(id)?;
        if let Ok(at) = self.order.binary_search(id) {
            self.order.remove(at);
        }
        Some(*conn)
    }

    /// Every connection, in id order.
    pub(super) fn iter(&self) -> impl Iterator<Item = (&ConnId, &Conn)> {
        (self.order.iter()).filter_map(|id| self.by_id.get_key_value(id).map(|(id, c)| (id, &**c)))
    }

    /// Outbound connections in no particular order, for questions whose answer does not
    /// depend on it (whether any, which is least): no lookup per connection.
    pub(super) fn outbound_any_order(&self) -> impl Iterator<Item = (&ConnId, &Conn)> {
        (self.by_id.iter())
            .filter(|(id, _)| matches!(id, ConnId::Outbound(_)))
            .map(|(id, c)| (id, &**c))
    }

    /// A name for a connection the peer opens.
    pub(super) fn new_id(&mut self) -> ConnId {
        self.next_id += 1;
        ConnId::Outbound(self.next_id)
    }

    pub(super) fn open(&mut self, now: Timestamp, id: ConnId, conn: Conn) {
        if self.by_id.insert(id, Box::new(conn)).is_none() {
            let at = self.order.partition_point(|other| *other < id);
            self.order.insert(at, id);
        }
        self.deadlines.opened(now);
    }

    /// Our connection to the holder at `addr`.
    pub(super) fn holder(&self, addr: SocketAddr) -> Option<ConnId> {
        self.holders.get(&addr).copied()
    }

    /// Holders' connections, in address order.
    pub(super) fn holders(&self) -> &AddrMap<ConnId> {
        &self.holders
    }

    /// Connections to holders, however many are open.
    pub(super) fn holder_count(&self) -> usize {
        self.holders.len()
    }

    fn set_holder(&mut self, addr: SocketAddr, conn: ConnId) {
        self.holders.insert(addr, conn);
    }

    /// `conn` to `addr` is no longer the holder's connection.
    pub(super) fn forget_holder(&mut self, addr: SocketAddr, conn: ConnId) {
        if self.holders.get(&addr) == Some(&conn) {
            self.holders.remove(&addr);
        }
    }

    pub(super) fn deadlines(&self) -> &ConnDeadlines {
        &self.deadlines
    }

    /// A fetcher's upload slot stalls at `at` unless it takes data (sooner than the lead).
    pub(super) fn slot_stall_due(&mut self, at: Timestamp) {
        self.deadlines.due_by(at);
    }

    /// An outbound connection has nothing asked of it from `now`: it may be evicted from
    /// `HOLDER_EVICTABLE_AFTER_MS` on.
    pub(super) fn fell_idle(&self, now: Timestamp) {
        let from = now.plus_ms(HOLDER_EVICTABLE_AFTER_MS);
        self.no_evictable_before
            .set(self.no_evictable_before.get().min(from));
    }
}

#[derive(Debug)]
pub(super) enum Conn {
    Tracker(Link),
    Out(OutLink),
    In(InLink),
}

impl Conn {
    pub(super) fn link(&self) -> &Link {
        match self {
            Conn::Tracker(link) => link,
            Conn::Out(o) => &o.link,
            Conn::In(i) => &i.link,
        }
    }

    pub(super) fn link_mut(&mut self) -> &mut Link {
        match self {
            Conn::Tracker(link) => link,
            Conn::Out(o) => &mut o.link,
            Conn::In(i) => &mut i.link,
        }
    }

    /// When this connection is dropped for silence (see `Link::deadline`); `owes_nothing`:
    /// a holder's owes no request.
    pub(super) fn deadline(&self, owes_nothing: bool) -> Option<(Timestamp, &'static str)> {
        match self {
            // Keepalives come back at least every `KEEPALIVE_MS`: silence means it is gone.
            Conn::Tracker(link) => link.deadline(Some(SESSION_SILENT_MS)),
            // A holder we ask nothing of is let go, freeing one of the outbound slots.
            Conn::Out(o) => o
                .link
                .deadline(owes_nothing.then_some(HOLDER_IDLE_TIMEOUT_MS)),
            Conn::In(i) => i.deadline(),
        }
    }
}

impl Peer {
    /// Bytes arrived on `conn` (`push` hands them to its link and says whether there were
    /// any): decode and act on every message they complete.
    pub(super) fn handle_received(
        &mut self,
        now: Timestamp,
        conn: ConnId,
        push: impl FnOnce(&mut Link) -> bool,
    ) {
        match self.conns.get_mut(&conn) {
            Some(Conn::Tracker(link)) => {
                push(link);
            }
            Some(Conn::Out(o)) => {
                if push(&mut o.link) {
                    o.last_activity = now;
                }
            }
            Some(Conn::In(i)) => {
                push(&mut i.link);
            }
            None => return,
        }
        loop {
            let next = match self.conns.get_mut(&conn) {
                Some(Conn::Tracker(link)) => link.next_message(),
                Some(Conn::Out(o)) => o.link.next_message(),
                Some(Conn::In(i)) => i.link.next_message(),
                None => return,
            };
            if let Some(link) = self.conns.get_mut(&conn).map(Conn::link_mut) {
                self.out.flush(link, conn);
            }
            match next {
                Ok(Some(msg)) => self.dispatch(now, conn, msg),
                Ok(None) => return self.note_arriving(now, conn),
                Err(reason) => return self.close_for(now, conn, reason),
            }
        }
    }

    /// A chunk we asked this holder for has begun to arrive: see `Peer::chunk_arriving`.
    pub(super) fn note_arriving(&mut self, now: Timestamp, conn: ConnId) {
        let Some(Conn::Out(o)) = self.conns.get(&conn) else {
            return;
        };
        let arriving = o.link.arriving_chunk();
        let owed = |(root, chunk): &(Root, u32)| self.ledger.owes(conn, *root, *chunk);
        if let Some((root, chunk)) = arriving.filter(owed) {
            if self.chunk_arriving(now, root, chunk) {
                self.answer_began(now, conn, root, chunk);
            }
        }
    }

    pub(super) fn dispatch(&mut self, now: Timestamp, conn: ConnId, msg: Message) {
        if let Message::Error { reason } = &msg {
            return self.closed_by_remote(now, conn, reason);
        }
        match self.conns.get(&conn) {
            Some(Conn::Tracker(_)) => self.handle_tracker_message(now, conn, msg),
            Some(Conn::Out(_)) => self.handle_holder_message(now, conn, msg),
            Some(Conn::In(_)) => self.handle_request(now, conn, msg),
            None => {}
        }
    }

    /// The remote said why it leaves (`Message::Error`): we close too.
    pub(super) fn closed_by_remote(&mut self, now: Timestamp, conn: ConnId, reason: &str) {
        match self.conns.get(&conn) {
            Some(Conn::Tracker(_)) => {
                log::warn!("tracker closed the session: {}", clip(reason));
                self.out.close(conn);
            }
            Some(c) => self.out.close_on_error(c.link(), conn, reason),
            None => return,
        }
        self.close_conn(now, conn);
    }

    /// Closes a connection whose remote broke the protocol, telling it why.
    pub(super) fn violation(&mut self, now: Timestamp, conn: ConnId, reason: String) {
        self.close_for(now, conn, CloseReason::Violation(reason));
    }

    /// Closes a connection for `reason`, telling the remote why; the tracker's connection
    /// closed this way tells the user what the tracker is not (a Drizzle tracker, or of
    /// this swarm).
    pub(super) fn close_for(&mut self, now: Timestamp, conn: ConnId, reason: CloseReason) {
        if !self.conns.contains_key(&conn) {
            return;
        }
        let user_told = match &reason {
            CloseReason::Unauthorised(why) => self.not_authorised(conn, why),
            reason => self.not_a_tracker(conn, &reason.to_string()),
        };
        if let Some(link) = self.conns.get_mut(&conn).map(Conn::link_mut) {
            self.out.close_for(now, link, conn, reason, user_told);
        }
        self.close_conn(now, conn);
    }

    /// A connection closes as unauthorised: if it is the tracker's, our key was refused and
    /// the user is told so (whether they were).
    fn not_authorised(&mut self, conn: ConnId, reason: &str) -> bool {
        let tracker = matches!(self.conns.get(&conn), Some(Conn::Tracker(_)));
        if tracker {
            self.emit(Event::NotAuthorised {
                tracker: self.config.tracker,
                reason: reason.to_string(),
            });
        }
        tracker
    }

    /// Opens connection `conn` on our side: our hello, and our handshake when closed.
    pub(super) fn greet(&mut self, conn: ConnId) {
        if let Some(link) = self.conns.get_mut(&conn).map(Conn::link_mut) {
            self.out.greet(link, conn, Role::Peer);
        }
    }

    /// Forgets a connection that closed (or that we closed) and recovers what it owed.
    pub(super) fn close_conn(&mut self, now: Timestamp, conn: ConnId) {
        match self.conns.remove(&conn) {
            Some(Conn::Tracker(_)) if self.session.is(conn) => self.tracker_lost(now),
            Some(Conn::Out(o)) => {
                self.holder_lost(now, conn, o.link.remote, "connection closed", None)
            }
            Some(Conn::In(_)) => {
                self.slots.forget(conn);
                self.fetcher_left(now);
            }
            Some(Conn::Tracker(_)) | None => {}
        }
    }

    /// Closes connections past a deadline — silent, idle, or holders that let a request
    /// go unanswered — and finds when the next one is due.
    pub(super) fn expire_conns(&mut self, now: Timestamp) {
        let timeout = self.config.request_timeout_ms;
        // While input is held back for our own disk, silence is not the holders' fault.
        let held_back = self.chunks_storing() >= MAX_CHUNKS_STORING;
        let (mut expired, mut stalled, mut next) = (Vec::new(), Vec::new(), None);
        let (mut slot_losses, mut windows_over) = (Vec::new(), Vec::new());
        let mut consider = |t: Timestamp| next = earliest(next, Some(t));
        for (id, c) in self.conns.iter() {
            if let Conn::In(i) = c {
                let stall_ms = self.slot_stall_ms(now, *id);
                let (loss, check_at, window_over) = i.slot_check(now, stall_ms);
                slot_losses.extend(loss.map(|l| (*id, l)));
                check_at.map(&mut consider);
                if window_over {
                    windows_over.push(*id);
                }
            }
            let owes_nothing = self.ledger.owes_nothing(*id);
            match c.deadline(owes_nothing) {
                Some((t, why)) if t <= now => {
                    expired.push((*id, why));
                    continue;
                }
                Some((t, _)) => consider(t),
                None => {}
            }
            if let Conn::Out(o) = c {
                if !owes_nothing {
                    let t = o.last_activity.plus_ms(timeout);
                    if t <= now && !held_back {
                        stalled.push(*id);
                    } else {
                        consider(t);
                    }
                }
            }
        }
        for (conn, why) in expired {
            let user_told = self.session.was_reached() && self.not_a_tracker(conn, why);
            if let Some(link) = self.conns.get_mut(&conn).map(Conn::link_mut) {
                let reason = CloseReason::TimedOut(why);
                self.out.close_for(now, link, conn, reason, user_told);
            }
            self.close_conn(now, conn);
        }
        for (conn, loss) in slot_losses {
            self.lose_slot(now, conn, loss);
        }
        for conn in windows_over {
            if let Some(Conn::In(i)) = self.conns.get_mut(&conn) {
                i.restart_pace(now);
                consider(now.plus_ms(SLOT_PACE_WINDOW_MS));
            }
        }
        for conn in stalled {
            if let Some(Conn::Out(o)) = self.conns.remove(&conn) {
                self.out.close(conn);
                let holder = o.link.remote;
                self.holder_lost(now, conn, holder, "timed out", Some(Complaint::Stalled));
            }
        }
        let open = self.conns.by_id.len();
        self.conns.deadlines.scanned(now, next, open);
    }

    /// The tracker connection `conn` is being closed for `reason`: if the remote never
    /// said a Drizzle hello, it is not a Drizzle tracker, and the user is told so (whether
    /// they were).
    pub(super) fn not_a_tracker(&mut self, conn: ConnId, reason: &str) -> bool {
        let told = matches!(self.conns.get(&conn), Some(Conn::Tracker(l)) if !l.hello_done());
        if told {
            self.emit(Event::NotATracker {
                tracker: self.config.tracker,
                reason: reason.to_string(),
            });
        }
        told
    }

    /// Whether a connection to one more holder may open now, leaving a holder we only wait
    /// at if need be: a free slot serves at once, a place in a busy holder's queue may take
    /// long.
    pub(super) fn room_for_one_more(&mut self, now: Timestamp) -> bool {
        self.conns.holder_count() < MAX_PEER_CONNECTIONS
            || any_evictable(&self.conns, &self.ledger, now)
            || self.leave_a_busy_holder(now)
    }

    /// Closes the connection to a holder we only wait at (it said `Busy`, nothing is
    /// asked of it), the one heard from longest ago; whether there was one.
    pub(super) fn leave_a_busy_holder(&mut self, now: Timestamp) -> bool {
        let ledger = &self.ledger;
        let waited_at = self
            .conns
            .outbound_any_order()
            .filter_map(|(id, c)| match c {
                Conn::Out(o) if !o.serving && ledger.owes_nothing(*id) => {
                    Some((o.last_activity, *id))
                }
                _ => None,
            })
            .min();
        let Some((_, conn)) = waited_at else {
            return false;
        };
        self.evict_holder(now, conn);
        true
    }

    /// Closes a connection to a holder with nothing asked of it to make room for another.
    /// No pick follows: the caller is about to make the request the room is for.
    pub(super) fn evict_holder(&mut self, now: Timestamp, conn: ConnId) {
        self.out.close(conn);
        if let Some(Conn::Out(o)) = self.conns.remove(&conn) {
            self.forget_holder(now, conn, o.link.remote, "connection closed", None);
        }
    }

    /// Nothing is left to fetch: connections to holders would only keep our place in their
    /// queues (and take invitations others could use), so they close now.
    pub(super) fn drop_holder_conns(&mut self) {
        let outbound = std::mem::take(&mut self.conns.holders);
        for (holder, conn) in outbound {
            self.conns.remove(&conn);
            self.ledger.drop_conn(conn, holder);
            self.out.close(conn);
        }
    }

    pub(super) fn connect_holder(&mut self, now: Timestamp, addr: SocketAddr) -> ConnId {
        if self.conns.holder_count() >= MAX_PEER_CONNECTIONS {
            // The holder asked nothing for longest makes room: its map entry stays, and
            // it is reconnected when it has something we want.
            if let Some((_, idle)) = evictable_holders(&self.conns, &self.ledger, now).min() {
                self.evict_holder(now, idle);
            }
        }
        let conn = self.conns.new_id();
        self.out.push(Output::Connect { conn, addr });
        let channel = self.keyring.as_mut().map(|k| k.channel(true));
        let out = OutLink {
            link: (Link::new(addr, Role::Peer, now).secured(channel))
                .collecting_in(self.buffers.clone()),
            last_activity: now,
            serving: true,
            connected_at: None,
        };
        self.conns.open(now, conn, Conn::Out(out));
        self.conns.fell_idle(now);
        self.conns.set_holder(addr, conn);
        self.greet(conn);
        conn
    }
}

/// How far ahead a peer with `config` sets connection deadlines at the least — the link's
/// own, the idle times, the request timeout — and so how often it scans for them at the
/// least (see [`crate::deadlines`]).
pub(super) fn conn_deadline_lead_ms(config: &PeerConfig) -> u64 {
    DEADLINE_LEAD_MS
        .min(HOLDER_IDLE_TIMEOUT_MS)
        .min(FETCHER_IDLE_TIMEOUT_MS)
        .min(config.request_timeout_ms)
}

/// Whether one more request may go to a holder: its connection `conn` has room in its
/// pipeline of `depth` requests, or it has none and there is room for a new connection. A
/// holder that said `Busy` and has not served us since gets one request at a time. The
/// depth is asked for only when it counts (a pick asks this of many holders).
pub(super) fn holder_has_slot(
    conns: &ConnTable,
    ledger: &Ledger,
    conn: Option<ConnId>,
    room: bool,
    depth: impl FnOnce() -> usize,
) -> bool {
    let Some(conn) = conn else {
        return room;
    };
    match conns.get(&conn) {
        Some(Conn::Out(o)) if o.serving => ledger.owed_by(conn) < depth(),
        Some(Conn::Out(_)) => ledger.owes_nothing(conn),
        _ => room,
    }
}

/// Whether some outbound connection is evictable now. `no_evictable_before` skips the walk
/// while no connection can be (a bound that `ConnTable::fell_idle` lowers); a walk that finds
/// none raises it to the moment the first idle connection becomes evictable.
pub(super) fn any_evictable(conns: &ConnTable, ledger: &Ledger, now: Timestamp) -> bool {
    let no_evictable_before = &conns.no_evictable_before;
    if now < no_evictable_before.get() {
        return false;
    }
    let mut first = Timestamp(u64::MAX);
    for from in conns
        .outbound_any_order()
        .filter_map(|(id, c)| evictable_from(*id, c, ledger))
    {
        if from <= now {
            return true;
        }
        first = first.min(from);
    }
    no_evictable_before.set(first);
    false
}

/// When an outbound connection with nothing asked of it may be evicted (`None`: in use).
pub(super) fn evictable_from(id: ConnId, c: &Conn, ledger: &Ledger) -> Option<Timestamp> {
    match c {
        Conn::Out(o) if ledger.owes_nothing(id) => {
            Some(o.last_activity.plus_ms(HOLDER_EVICTABLE_AFTER_MS))
        }
        _ => None,
    }
}

/// Outbound holder connections with nothing asked of them for a while (evictable), with
/// when they became evictable; `min()` is the one idle longest.
pub(super) fn evictable_holders<'a>(
    conns: &'a ConnTable,
    ledger: &'a Ledger,
    now: Timestamp,
) -> impl Iterator<Item = (Timestamp, ConnId)> + 'a {
    conns
        .outbound_any_order()
        .filter_map(move |(id, c)| Some((evictable_from(*id, c, ledger)?, *id)))
        .filter(move |(from, _)| *from <= now)
}
