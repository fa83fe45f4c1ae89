//! Fetching a file: from the tracker's answer to chunks in hand — the chunk map and its
//! refreshes, picking (rarest first, a random holder), requests and what holders answer,
//! holders lost or reported, and each download's timers.

use super::addrmap::seek;
use super::check::DiskCheck;
use super::conns::{any_evictable, holder_has_slot};
use super::download::Active;
use super::timers::DownloadTimer;
use super::{Conn, DownloadRequest, Io, Peer};
use crate::bytes::Bytes;
use crate::chunkset::ChunkSet;
use crate::limits::MAX_PEER_CONNECTIONS;
use crate::link::clip;
use crate::machine::{ConnId, Event, FailKind, IoId, Output};
use crate::manifest::{FileName, Manifest, Root};
use crate::time::Timestamp;
use crate::wire::{Complaint, LocatedHolder, Message, RefusedBecause};
use rand::Rng;
use std::net::SocketAddr;
use std::sync::Arc;

#[derive(Debug)]
pub(super) struct Download {
    request: DownloadRequest,
    started: Timestamp,
    /// `None` while locating.
    active: Option<Active>,
    /// While locating: when to ask the tracker again after a "not found" that may only
    /// mean the tracker restarted and its peers have not re-registered yet.
    relocate_at: Option<Timestamp>,
}

impl Download {
    /// The user asked for `request` at `now`: the file is located first.
    pub(super) fn new(request: DownloadRequest, now: Timestamp) -> Download {
        Download {
            request,
            started: now,
            active: None,
            relocate_at: None,
        }
    }

    pub(super) fn request(&self) -> &DownloadRequest {
        &self.request
    }

    /// The download once located (`None` while locating).
    pub(super) fn active(&self) -> Option<&Active> {
        self.active.as_ref()
    }

    pub(super) fn active_mut(&mut self) -> Option<&mut Active> {
        self.active.as_mut()
    }

    pub(super) fn into_active(self) -> Option<Active> {
        self.active
    }

    /// This download's armed timers and when each is due; while locating, asking again
    /// or giving up.
    pub(super) fn timers(
        &self,
        unavailable_after_ms: u64,
    ) -> impl Iterator<Item = (DownloadTimer, Timestamp)> {
        let armed = match &self.active {
            Some(a) => a.timers(unavailable_after_ms),
            None => {
                let give_up = self.started.plus_ms(unavailable_after_ms);
                let relocate = self.relocate_at.map(|t| (DownloadTimer::Relocate, t));
                [
                    Some((DownloadTimer::Stall, give_up)),
                    relocate,
                    None,
                    None,
                    None,
                    None,
                    None,
                ]
            }
        };
        armed.into_iter().flatten()
    }
}

impl Peer {
    /// A tracker that is `settling` (just restarted) may not have heard from every holder
    /// yet, so its "not found" is retried rather than final.
    pub(super) fn handle_not_found(&mut self, now: Timestamp, name: FileName, settling: bool) {
        let retry_at = now.plus_ms(self.config.refresh_max_ms);
        let Some(d) = self.downloads.get_mut(&name) else {
            return;
        };
        if d.active.is_some() {
            return; // a refresh; what is already known stays usable
        }
        if settling {
            d.relocate_at = Some(retry_at);
        } else {
            let reason = format!("the tracker has no file {name}");
            self.fail(name, FailKind::NotFound, reason);
        }
    }

    pub(super) fn handle_located(
        &mut self,
        now: Timestamp,
        name: FileName,
        manifest: Manifest,
        holders: Vec<LocatedHolder>,
    ) {
        let Some(download) = self.downloads.get(&name) else {
            return self.recut(name, &manifest);
        };
        if let Err(e) = manifest.validate() {
            let reason = format!("the tracker sent an invalid manifest: {e}");
            return self.fail(name, FailKind::Unavailable, reason);
        }
        let root = manifest.root();
        if let Some(active) = &download.active {
            if active.root() == root {
                self.refresh_holders(now, &name, holders);
            }
            return;
        }
        if let Some(expect) = download.request.expect {
            if expect != root {
                let reason = format!("tracker serves root {root}, expected {expect}");
                return self.fail(name, FailKind::RootMismatch, reason);
            }
        }
        let count = manifest.chunk_count();
        let want = match &download.request.only {
            Some(only) => match only.iter().find(|c| **c >= count) {
                Some(bad) => {
                    let reason = format!("chunk {bad} is past the end ({name} has {count} chunks)");
                    return self.fail(name, FailKind::BadRequest, reason);
                }
                None => ChunkSet::from_indices(count, only.iter().copied()),
            },
            None => ChunkSet::full(count),
        };
        let request = &download.request;
        let check =
            match DiskCheck::plan(request.on_disk.as_ref(), root, &manifest, request.replace) {
                Ok(check) => check,
                Err(reason) => return self.fail(name, FailKind::Exists, reason),
            };
        self.emit(Event::Located {
            name: name.clone(),
            root,
            chunks: count,
            holders: holders.clone(),
        });
        if let Some(check) = &check {
            self.emit(Event::Checking {
                name: name.clone(),
                chunks: check.chunks(),
            });
        }
        let have = ChunkSet::empty(count);
        let refresh_ms = self.config.refresh_min_ms;
        let policy = self.config.fetch;
        let manifest = Arc::new(manifest);
        let mut active = Active::new(policy, root, manifest.clone(), want, check, refresh_ms, now);
        active.set_holders(holders);
        if let Some(d) = self.downloads.get_mut(&name) {
            d.active = Some(active);
        }
        self.files.insert(name.clone(), manifest, root, have, true);
        self.pump_checks(now, &name);
        self.pump(now, &name);
    }

    /// A fresh chunk map for a download under way: use it, and refresh again soon if it
    /// brought news, later if not.
    pub(super) fn refresh_holders(
        &mut self,
        now: Timestamp,
        name: &FileName,
        holders: Vec<LocatedHolder>,
    ) {
        let (min_ms, max_ms) = (self.config.refresh_min_ms, self.config.refresh_max_ms);
        // Holders we are connected to stay known: the tracker samples afresh each time, and
        // a map that forgot them would churn connections.
        let conns = &self.conns;
        let keep = |addr: SocketAddr| conns.holder(addr).is_some_and(|c| conns.contains_key(&c));
        if let Some(a) = self.downloads.get_mut(name).and_then(|d| d.active.as_mut()) {
            let news = a.merge_holders(holders, keep);
            a.refreshed(now, news, min_ms, max_ms);
        }
        self.pump(now, name);
    }

    pub(super) fn active_mut(&mut self, name: &FileName) -> Option<&mut Active> {
        self.downloads.get_mut(name)?.active.as_mut()
    }

    /// Sends as many requests as the limits allow, then finishes the download if it is
    /// complete, rejected or stuck.
    pub(super) fn pump(&mut self, now: Timestamp, name: &FileName) {
        self.settle_arrivals(now, name);
        loop {
            let Some(active) = self.downloads.get(name).and_then(|d| d.active.as_ref()) else {
                return;
            };
            let asked = self.ledger.asked(&active.root());
            if !active.may_request(asked, now) {
                break;
            }
            let (conns, ledger) = (&self.conns, &self.ledger);
            let holder_conns = conns.holders();
            let room = active.may_connect()
                && (holder_conns.len() < MAX_PEER_CONNECTIONS || any_evictable(conns, ledger, now));
            // Without room for a new connection (or leave to open one) only connected
            // holders can take a request.
            let mut connected = holder_conns.keys().copied();
            let only = (!room).then_some(&mut connected as &mut dyn Iterator<Item = SocketAddr>);
            let serving = |addr: &SocketAddr| {
                let conn = holder_conns.get(addr);
                conn.is_some_and(|c| matches!(conns.get(c), Some(Conn::Out(o)) if o.serving()))
            };
            // Asked in address order, as `holder_conns` is kept: one walk.
            let mut by_addr = holder_conns.iter().peekable();
            let mut has_slot = |addr: SocketAddr| {
                let conn = seek(&mut by_addr, &addr).copied();
                holder_has_slot(conns, ledger, conn, room, || active.depth_for(addr))
            };
            let Some((chunk, holder)) =
                active.next_request(asked, now, only, &mut has_slot, &serving, &mut self.rng)
            else {
                break;
            };
            let root = active.root();
            self.request_chunk(now, name, root, chunk, holder);
        }
        self.settle(now, name);
    }

    pub(super) fn request_chunk(
        &mut self,
        now: Timestamp,
        name: &FileName,
        root: Root,
        chunk: u32,
        holder: SocketAddr,
    ) {
        let conn = match self.conns.holder(holder) {
            Some(conn) => conn,
            None => self.connect_holder(now, holder),
        };
        if let Some(Conn::Out(o)) = self.conns.get_mut(&conn) {
            o.asked(now, self.ledger.owes_nothing(conn));
        }
        self.ledger.issue(conn, holder, root, chunk, now);
        if let Some(a) = self.active_mut(name) {
            a.issued(holder, now);
        }
        let others = self.active_mut(name).map_or(0, |a| {
            let n = a.map().good_count(chunk) - usize::from(a.map().is_good_holder(holder, chunk));
            u8::try_from(n).unwrap_or(u8::MAX)
        });
        self.send(
            conn,
            &Message::GetChunk {
                root,
                chunk,
                others,
            },
        );
        self.emit(Event::Requested {
            name: name.clone(),
            chunk,
            peer: holder,
        });
    }

    pub(super) fn handle_holder_message(&mut self, now: Timestamp, conn: ConnId, msg: Message) {
        match msg {
            Message::Ready { root } => return self.handle_ready(now, conn, root),
            Message::Have { root, chunk } => return self.handle_have(now, conn, root, chunk),
            _ => {}
        }
        let (root, chunk) = match &msg {
            Message::ChunkData { root, chunk, .. }
            | Message::ChunkRefused { root, chunk, .. }
            | Message::Busy { root, chunk } => (*root, *chunk),
            other => {
                let reason = format!("unexpected {} from a holder", other.kind());
                return self.violation(now, conn, reason);
            }
        };
        if matches!(msg, Message::Busy { .. }) {
            self.answer_began(now, conn, root, chunk);
        }
        let Some(Conn::Out(o)) = self.conns.get_mut(&conn) else {
            return;
        };
        let holder = o.remote();
        let issued = self.ledger.asked(&root).issued(chunk, holder);
        let Some(idle) = self.ledger.answer(conn, holder, root, chunk) else {
            return self.violation(now, conn, format!("chunk {chunk} was not requested"));
        };
        let serving = match &msg {
            Message::ChunkData { .. } => Some(true),
            Message::Busy { .. } => Some(false),
            _ => None,
        };
        o.answered(now, serving);
        if idle {
            self.conns.fell_idle(now);
        }
        let Some(name) = self.download_of(&root) else {
            return; // finished or abandoned meanwhile
        };
        match msg {
            Message::ChunkData { data, .. } => {
                if let (Some(a), Some(issued)) = (self.active_mut(&name), issued) {
                    a.delivered(holder, data.len(), issued, now);
                }
                self.handle_chunk(&name, chunk, holder, data)
            }
            Message::ChunkRefused {
                because, reason, ..
            } => {
                // Only a chunk already here can have been cancelled by us: any other
                // "cancelled" is a refusal like the rest, or a holder could keep us asking.
                let held = |a: &Active| a.have().contains(chunk) || a.is_storing(chunk);
                if because == RefusedBecause::Cancelled
                    && self.active_mut(&name).is_some_and(|a| held(a))
                {
                    return self.pump(now, &name); // its place is free for another request
                }
                log::info!(
                    "{holder} refused chunk {chunk} of {name}: {}",
                    clip(&reason)
                );
                if let Some(a) = self.active_mut(&name) {
                    a.answered(holder);
                    if because == RefusedBecause::SentOften {
                        a.steered_away(chunk, holder);
                    } else {
                        a.map_mut().forget_chunk(holder, chunk);
                    }
                    a.note_trouble(holder, format!("refused: {}", clip(&reason)));
                }
                if because != RefusedBecause::SentOften {
                    self.report_holder(now, &name, holder, Complaint::Refused);
                }
            }
            Message::Busy { .. } => {
                let base = self.config.busy_retry_ms.max(2);
                let retry_at = now.plus_ms(self.rng.gen_range(base / 2..=base));
                if let Some(a) = self.active_mut(&name) {
                    a.answered(holder);
                    a.cool_at_least(holder, retry_at);
                    a.note_trouble(holder, "busy serving others");
                }
            }
            _ => {}
        }
        self.pump(now, &name);
    }

    /// A holder we fetch from (or wait at) has a new chunk: if we lack it, it goes in the
    /// chunk map, and is asked for at once if the holder has room for a request.
    pub(super) fn handle_have(&mut self, now: Timestamp, conn: ConnId, root: Root, chunk: u32) {
        let Some(Conn::Out(o)) = self.conns.get(&conn) else {
            return;
        };
        let holder = o.remote();
        let Some(name) = self.download_of(&root) else {
            return; // finished or abandoned meanwhile
        };
        let Some(a) = self.active_mut(&name) else {
            return;
        };
        let count = a.manifest().chunk_count();
        if chunk >= count {
            let reason = format!("have for chunk {chunk} past the end ({count} chunks)");
            return self.violation(now, conn, reason);
        }
        // Only news may change a pick: a holder repeating itself costs us no pick.
        let wanted = a.want().contains(chunk) && !a.have().contains(chunk);
        if wanted && a.map_mut().learn_chunk(holder, chunk) {
            self.ask_first(now, &name, holder);
        }
    }

    /// A holder that said `Busy` has a free slot: stop waiting for it.
    pub(super) fn handle_ready(&mut self, now: Timestamp, conn: ConnId, root: Root) {
        let Some(Conn::Out(o)) = self.conns.get(&conn) else {
            return;
        };
        let holder = o.remote();
        let Some(name) = self.download_of(&root) else {
            return;
        };
        if let Some(a) = self.active_mut(&name) {
            a.warm(holder);
        }
        self.ask_first(now, &name, holder);
    }

    /// Asks `holder` (whose slot is free for us) for the rarest chunk it has that we lack,
    /// before the rest of the pipeline fills: a free slot left unused lapses.
    pub(super) fn ask_first(&mut self, now: Timestamp, name: &FileName, holder: SocketAddr) {
        let conn = self.conns.holder(holder);
        let Some(a) = self.downloads.get(name).and_then(|d| d.active.as_ref()) else {
            return;
        };
        let asked = self.ledger.asked(&a.root());
        let may_ask = a.may_request(asked, now);
        let (conns, ledger) = (&self.conns, &self.ledger);
        let mut has_slot = |_| holder_has_slot(conns, ledger, conn, true, || a.depth_for(holder));
        let mut only = std::iter::once(holder);
        let pick = may_ask
            .then(|| {
                a.next_request(
                    asked,
                    now,
                    Some(&mut only),
                    &mut has_slot,
                    &|_| true,
                    &mut self.rng,
                )
            })
            .flatten();
        let root = a.root();
        // Nothing asked of it: nothing else changed that a full pick could use.
        let Some((chunk, holder)) = pick else {
            return;
        };
        if conn.is_some() || self.room_for_one_more(now) {
            self.request_chunk(now, name, root, chunk, holder);
        }
        self.pump(now, name);
    }

    /// The tracker sent a holder with a free upload slot and chunks we lack: ask it now.
    pub(super) fn handle_introduce(&mut self, now: Timestamp, root: Root, holder: LocatedHolder) {
        let Some(name) = self.download_of(&root) else {
            return;
        };
        let addr = holder.addr;
        let neighbour = holder.have.is_empty();
        let Some(a) = self.active_mut(&name) else {
            return;
        };
        if a.learn_holder(holder) {
            if neighbour {
                return self.watch_neighbour(now, root, addr);
            }
            a.warm(addr);
            self.ask_first(now, &name, addr);
        }
    }

    /// A seeker holding nothing yet, introduced as a neighbour: connected now (if there is
    /// room) and asked to tell us of its chunks as they arrive, so that its first ones are
    /// asked of it without waiting for the tracker or a handshake.
    fn watch_neighbour(&mut self, now: Timestamp, root: Root, addr: SocketAddr) {
        let conn = match self.conns.holder(addr) {
            Some(conn) => conn,
            None if self.room_for_one_more(now) => self.connect_holder(now, addr),
            None => return,
        };
        self.send(conn, &Message::Watch { root });
    }

    /// The answer to the request for `chunk` of `root` on `conn` began to come (its first
    /// bytes, or `Busy`): the download notes how long after the request left.
    pub(super) fn answer_began(&mut self, now: Timestamp, conn: ConnId, root: Root, chunk: u32) {
        let Some(Conn::Out(o)) = self.conns.get(&conn) else {
            return;
        };
        let Some(left) = (self.ledger.asked(&root).issued(chunk, o.remote())).map(|t| o.left_at(t))
        else {
            return;
        };
        let mut active = self.downloads.values_mut().filter_map(Download::active_mut);
        if let Some(a) = active.find(|a| a.root() == root) {
            a.answer_began(left, now);
        }
    }

    /// A requested chunk arrived: have it hashed (unless an endgame duplicate already did).
    /// It counts as `storing` from now on, so it is not requested again while hashed.
    pub(super) fn handle_chunk(
        &mut self,
        name: &FileName,
        chunk: u32,
        holder: SocketAddr,
        data: Bytes,
    ) {
        let Some(a) = self.active_mut(name) else {
            // Asked of two holders, and the download ended with the other copy.
            self.duplicate_bytes += data.len() as u64;
            return;
        };
        if a.map().is_bad(&holder) {
            // Found bad while this was on its way: hashing it again would only repeat the
            // verdict (and let a fast liar spend our CPU); the chunk was already asked
            // elsewhere when the holder was marked.
            log::debug!("dropped chunk {chunk} of {name} from {holder}, known bad");
            return;
        }
        if !a.arrived(chunk) {
            self.duplicate_bytes += data.len() as u64;
            return; // a duplicate: another copy came first
        }
        let root = a.root();
        self.cancel_copies(root, chunk, holder);
        // Duplicates still owed by other holders are ignored when they land.
        self.ledger.arrived(root, chunk);
        let io = self.new_io(Io::Verify {
            name: name.clone(),
            root,
            chunk,
            peer: holder,
        });
        self.out.push(Output::Hash { io, data });
    }

    /// `chunk` of `root` came from `holder`: the other holders asked for a copy (an endgame
    /// straggler, a rescue from a slow holder) are told not to send it, so that their
    /// uplinks, and our downlink, carry chunks still wanted.
    fn cancel_copies(&mut self, root: Root, chunk: u32, holder: SocketAddr) {
        let others = self.ledger.asked(&root).holders(chunk);
        let conns: Vec<ConnId> = (others.iter())
            .filter(|a| **a != holder)
            .filter_map(|a| self.conns.holder(*a))
            .filter(|conn| self.ledger.owes(*conn, root, chunk))
            .collect();
        for conn in conns {
            self.send(conn, &Message::Cancel { root, chunk });
        }
    }

    /// A received chunk's digest is known: store it if it is the chunk the manifest names,
    /// otherwise mark its sender bad and ask elsewhere.
    pub(super) fn handle_hashed(
        &mut self,
        now: Timestamp,
        io: IoId,
        digest: &crate::manifest::Hash,
        data: Bytes,
    ) {
        if let Some(Io::Check { hashing: true, .. }) = self.ios.get(&io) {
            if let Some(Io::Check {
                name, root, chunk, ..
            }) = self.ios.remove(&io)
            {
                let good = self.active_mut(&name).is_some_and(|a| {
                    a.root() == root && a.manifest().chunk_matches(chunk, data.len(), digest)
                });
                self.judge_checked(now, &name, root, chunk, good);
            }
            return;
        }
        if !matches!(self.ios.get(&io), Some(Io::Verify { .. })) {
            return;
        }
        let Some(Io::Verify {
            name,
            root,
            chunk,
            peer,
        }) = self.ios.remove(&io)
        else {
            return;
        };
        let Some(a) = self.active_mut(&name).filter(|a| a.root() == root) else {
            return; // finished or abandoned meanwhile
        };
        if !a.manifest().chunk_matches(chunk, data.len(), digest) {
            a.mismatched(chunk, peer);
            self.ledger.release_holder(&root, peer);
            self.report_holder(now, &name, peer, Complaint::BadData);
            self.emit(Event::Mismatch {
                name: name.clone(),
                chunk,
                peer,
            });
            return self.pump(now, &name);
        }
        let manifest = a.manifest();
        let offset = manifest.chunk_range(chunk).map_or(0, |(o, _)| o);
        let size = manifest.size;
        let io = self.new_io(Io::Store {
            name: name.clone(),
            chunk,
            peer,
        });
        self.out.push(Output::Store {
            io,
            name,
            root,
            size,
            chunk,
            offset,
            data,
        });
    }

    pub(super) fn handle_stored(
        &mut self,
        now: Timestamp,
        name: FileName,
        chunk: u32,
        peer: SocketAddr,
    ) {
        let Some(a) = self.active_mut(&name) else {
            return;
        };
        a.stored(now, chunk);
        self.hold_chunk(now, &name, chunk);
        let Some(a) = self.active_mut(&name) else {
            return;
        };
        let (have, want) = (a.have().count(), a.want().count());
        self.emit(Event::Verified {
            name: name.clone(),
            chunk,
            peer,
            have,
            want,
        });
        self.pump(now, &name);
    }

    /// `chunk` of the download `name` is verified and on disk (stored now, or found good
    /// there): held from now on, served, and announced unless it was as it arrived.
    pub(super) fn hold_chunk(&mut self, now: Timestamp, name: &FileName, chunk: u32) {
        let Some(a) = self.active_mut(name) else {
            return;
        };
        a.hold(chunk);
        let root = a.root();
        let announced = self.files.get_mut(name).is_some_and(|f| f.hold(chunk));
        if announced {
            self.serve_waiting_requests(now);
        } else {
            self.announce_chunk(now, root, chunk);
        }
    }

    pub(super) fn download_of(&self, root: &Root) -> Option<FileName> {
        self.downloads
            .iter()
            .find(|(_, d)| d.active.as_ref().is_some_and(|a| a.root() == *root))
            .map(|(name, _)| name.clone())
    }

    pub(super) fn holder_lost(
        &mut self,
        now: Timestamp,
        conn: ConnId,
        holder: SocketAddr,
        reason: &str,
        complaint: Option<Complaint>,
    ) {
        let names = self.forget_holder(now, conn, holder, reason, complaint);
        for name in &names {
            self.pump(now, name);
        }
    }

    /// A holder connection is gone: what it owed returns to the pool and the holder cools
    /// down (and, for a `complaint`, is reported to the tracker). Returns every download's
    /// name, for a caller that picks again.
    pub(super) fn forget_holder(
        &mut self,
        now: Timestamp,
        conn: ConnId,
        holder: SocketAddr,
        reason: &str,
        complaint: Option<Complaint>,
    ) -> Vec<FileName> {
        let owed = self.ledger.drop_conn(conn, holder);
        self.conns.forget_holder(holder, conn);
        let retry_ms = self.config.holder_retry_ms;
        let names: Vec<FileName> = self.downloads.keys().cloned().collect();
        for name in &names {
            let Some(a) = self.active_mut(name) else {
                continue;
            };
            let owed = owed.iter().any(|(r, _)| *r == a.root());
            if owed || a.map().knows(holder) {
                a.failed(holder, now, retry_ms);
                a.note_trouble(holder, reason.to_string());
                if let Some(complaint) = complaint {
                    self.report_holder(now, name, holder, complaint);
                }
            }
            if owed {
                self.emit(Event::HolderLost {
                    name: name.clone(),
                    peer: holder,
                    reason: reason.to_string(),
                });
            }
        }
        names
    }

    /// Acts on the download's timers that `fired`. Those not named here (a cooldown's end,
    /// giving up, rejecting, a stall) are acted on by the pick and the judgement that
    /// follow every timer.
    pub(super) fn download_timers(
        &mut self,
        now: Timestamp,
        name: &FileName,
        fired: &[DownloadTimer],
    ) {
        let refresh_max_ms = self.config.refresh_max_ms;
        let Some(d) = self.downloads.get_mut(name) else {
            return;
        };
        let Some(a) = d.active.as_mut() else {
            if fired.contains(&DownloadTimer::Stall) {
                let reason = format!("could not locate {name}: tracker unreachable");
                self.fail(name.clone(), FailKind::Unavailable, reason);
            } else if fired.contains(&DownloadTimer::Relocate) {
                d.relocate_at = None;
                self.send_locate(name.clone());
            }
            return;
        };
        a.expire_cooldowns(now);
        a.probes_looked_at(now);
        let note = fired
            .contains(&DownloadTimer::StallNote)
            .then(|| a.stall_note(now));
        let refresh = fired.contains(&DownloadTimer::Refresh);
        if refresh {
            a.refresh_asked(now, refresh_max_ms);
        }
        if let Some((secs, on)) = note {
            let name = name.clone();
            self.emit(Event::Waiting { name, secs, on });
        }
        if refresh {
            self.send_locate(name.clone());
        }
        self.pump(now, name);
    }
}
