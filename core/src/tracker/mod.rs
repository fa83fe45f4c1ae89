//! The tracker machine: who is online, which files exist (pinned by the first manifest
//! registered for each name), and which peer holds which chunks. A peer's holdings live
//! exactly as long as its session; peers re-register after a tracker restart. Each file's
//! swarm (holders, seekers, reports) is in `swarm`.

mod counters;
mod swarm;

pub use counters::TrackerCounters;

use crate::chunkset::ChunkSet;
use crate::deadlines::{earliest, ConnDeadlines};
use crate::limits::{
    MAX_FILES_PER_REGISTER, MAX_FILES_PER_SESSION, MAX_FILE_LIST_BYTES, MAX_INTRODUCTIONS_PER_IDLE,
    MAX_LOCATE_HOLDERS, MAX_MANIFEST_BYTES, MAX_MANIFEST_BYTES_PER_ADDRESS, MAX_NAMES_PER_ADDRESS,
    MAX_REPORTS_PER_SESSION, MAX_TRACKER_FILES, MIN_IDLE_GAP_MS, ORPHAN_TTL_MS,
    REGISTER_TIMEOUT_MS, SESSION_SILENT_MS,
};
use crate::link::{Link, DEADLINE_LEAD_MS};
use crate::machine::{ConnId, Event, Input, Machine, Output, Received};
use crate::manifest::{FileName, Manifest, Root};
use crate::outbox::{CloseReason, Outbox};
use crate::secure::{Keyring, Security};
use crate::time::Timestamp;
use crate::wire::{Complaint, FileSummary, LocatedHolder, Message, Refusal, Role, SharedFile};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, SocketAddr};
use std::ops::Bound;
use swarm::{draw_neighbours, draw_seeker, Swarm};

#[derive(Clone, Debug)]
pub struct TrackerConfig {
    /// Seeds the tracker's RNG (holder sampling); the real driver draws it from the OS.
    pub seed: u64,
    /// Seekers an idle report introduces the holder to per free upload slot: most
    /// introduced seekers already have every chunk the holder could give them requested
    /// elsewhere (or their request budget spent) and ask nothing, so one per slot leaves
    /// slots idle (see `docs/swarm.md`).
    pub introductions_per_free_slot: usize,
    /// Seekers holding nothing yet that a newcomer holding nothing is introduced to (and
    /// they to it) when it first locates a file: its neighbours (see `Message::Watch`).
    pub neighbours: usize,
    /// Open, or closed to all but holders of the swarm key.
    pub security: Security,
}

impl TrackerConfig {
    pub fn new(seed: u64) -> TrackerConfig {
        TrackerConfig {
            seed,
            introductions_per_free_slot: 4,
            neighbours: 4,
            security: Security::Open,
        }
    }
}

/// A registered peer: its session is the connection it registered on.
#[derive(Debug)]
pub struct Session {
    peer_id: u64,
    listen: SocketAddr,
    /// Files this peer holds (some chunks of).
    roots: BTreeSet<Root>,
    /// Names it registered: at most `MAX_FILES_PER_SESSION` (names, not contents: one
    /// content under many names costs the tracker a name each).
    names: BTreeSet<FileName>,
    /// Files this peer located: the only ones it may announce new chunks of.
    located: BTreeSet<Root>,
    /// When it last said it was idle (it may not say so more often than
    /// `MIN_IDLE_GAP_MS`).
    last_idle: Option<Timestamp>,
    /// Bad-holder reports it made (at most `MAX_REPORTS_PER_SESSION` count).
    reports_made: usize,
}

#[derive(Debug)]
pub struct Tracker {
    config: TrackerConfig,
    /// The first instant the tracker was driven: its start.
    started: Option<Timestamp>,
    now: Timestamp,
    rng: ChaCha8Rng,
    links: BTreeMap<ConnId, Link>,
    /// When the links' deadlines are next looked at.
    deadlines: ConnDeadlines,
    sessions: BTreeMap<ConnId, Session>,
    names: BTreeMap<FileName, Root>,
    /// Who pinned each name (registered it first): names pinned per IP address are
    /// bounded, so one host cannot fill the tracker for everyone else.
    pinned_by: BTreeMap<FileName, IpAddr>,
    pins_per_ip: BTreeMap<IpAddr, usize>,
    /// Manifest bytes kept, in all and per address that first registered the content
    /// (each swarm is charged to one address, `charged_to`, until it is forgotten).
    manifest_bytes: u64,
    manifest_bytes_per_ip: BTreeMap<IpAddr, u64>,
    charged_to: BTreeMap<Root, (IpAddr, u64)>,
    swarms: BTreeMap<Root, Swarm>,
    /// Makes each connection's channel in a closed swarm.
    keyring: Option<Keyring>,
    counters: TrackerCounters,
    out: Outbox,
}

impl Session {
    /// Where the peer serves (the session's IP, the port it announced).
    pub fn listen(&self) -> SocketAddr {
        self.listen
    }

    /// The files it located (is fetching or fetched), by root.
    pub fn located(&self) -> impl Iterator<Item = &Root> + '_ {
        self.located.iter()
    }
}

/// One (peer, file) holding, as the tracker records it; for checkers and tests.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Holding {
    pub peer_id: u64,
    pub listen: SocketAddr,
    pub root: Root,
    pub have: ChunkSet,
}

impl Tracker {
    pub fn new(config: TrackerConfig) -> Tracker {
        Tracker {
            rng: ChaCha8Rng::seed_from_u64(config.seed),
            keyring: Keyring::new(&config.security),
            started: None,
            now: Timestamp::ZERO,
            config,
            links: BTreeMap::new(),
            deadlines: ConnDeadlines::new(DEADLINE_LEAD_MS.min(REGISTER_TIMEOUT_MS)),
            sessions: BTreeMap::new(),
            names: BTreeMap::new(),
            pinned_by: BTreeMap::new(),
            pins_per_ip: BTreeMap::new(),
            manifest_bytes: 0,
            manifest_bytes_per_ip: BTreeMap::new(),
            charged_to: BTreeMap::new(),
            swarms: BTreeMap::new(),
            counters: TrackerCounters::default(),
            out: Outbox::default(),
        }
    }

    // ---- getters ----

    /// The file list as `list` shows it: files with at least one holder.
    pub fn files(&self) -> Vec<FileSummary> {
        self.summaries(None).collect()
    }

    /// The files with at least one holder, in name order, after `after` (if given).
    fn summaries(&self, after: Option<&FileName>) -> impl Iterator<Item = FileSummary> + '_ {
        let from = after.map_or(Bound::Unbounded, Bound::Excluded);
        self.names
            .range::<FileName, _>((from, Bound::Unbounded))
            .filter_map(|(name, root)| {
                let swarm = self.swarms.get(root)?;
                let peers = swarm.serving_count();
                (peers > 0).then(|| FileSummary {
                    name: name.clone(),
                    size: swarm.manifest().size,
                    chunk_size: swarm.manifest().chunk_size,
                    chunks: swarm.manifest().chunk_count(),
                    root: *root,
                    peers: peers as u32,
                })
            })
    }

    /// One page of the file list: the files after `after` that fit one answer, and
    /// whether more follow (asked for with the last name as `after`). Paged, so that no
    /// file is hidden behind however many names sort before it.
    fn file_list(&self, after: Option<&FileName>) -> (Vec<FileSummary>, bool) {
        let mut files = Vec::new();
        let mut bytes = 0;
        for f in self.summaries(after) {
            // Name plus fixed fields (sizes, root, counts) as postcard encodes them, at most.
            bytes += f.name.as_str().len() + 64;
            if bytes > MAX_FILE_LIST_BYTES {
                return (files, true);
            }
            files.push(f);
        }
        (files, false)
    }

    /// Every recorded holding, in a stable order.
    pub fn holdings(&self) -> Vec<Holding> {
        (self.holdings_by_ref())
            .map(|(s, root, have)| Holding {
                peer_id: s.peer_id,
                listen: s.listen,
                root: *root,
                have: have.clone(),
            })
            .collect()
    }

    /// Every recorded holding without copying its chunk set: the holder's session, the
    /// file's root, the chunks held.
    pub fn holdings_by_ref(&self) -> impl Iterator<Item = (&Session, &Root, &ChunkSet)> + '_ {
        self.swarms.iter().flat_map(move |(root, swarm)| {
            (swarm.holders().iter())
                .filter_map(move |(conn, have)| Some((self.sessions.get(conn)?, root, have)))
        })
    }

    /// The registered peers, in connection order, with when each was last heard from.
    pub fn peers(&self) -> impl Iterator<Item = (&Session, Timestamp)> + '_ {
        (self.sessions.iter())
            .filter_map(|(conn, s)| Some((s, self.links.get(conn)?.last_received())))
    }

    pub fn connection_count(&self) -> usize {
        self.links.len()
    }

    /// What the tracker has done since it started.
    pub fn counters(&self) -> &TrackerCounters {
        &self.counters
    }

    // ---- input handling ----

    fn handle_received(&mut self, conn: ConnId, data: Received<'_>) {
        let Some(link) = self.links.get_mut(&conn) else {
            return;
        };
        link.receive(self.now, data);
        loop {
            let Some(link) = self.links.get_mut(&conn) else {
                return;
            };
            let next = link.next_message();
            self.out.flush(link, conn);
            match next {
                Ok(Some(msg)) => self.handle_message(conn, msg),
                Ok(None) => return,
                Err(reason) => return self.close_link(conn, reason),
            }
        }
    }

    fn handle_message(&mut self, conn: ConnId, msg: Message) {
        match msg {
            Message::Register {
                peer_id,
                listen,
                files,
            } => self.handle_register(conn, peer_id, listen, files),
            Message::ListFiles { req, after } => {
                self.counters.file_lists += 1;
                let (files, more) = self.file_list(after.as_ref());
                self.send(conn, &Message::FileList { req, files, more });
            }
            Message::Locate { req, name, known } => self.handle_locate(conn, req, name, known),
            Message::HaveChunk { root, chunk } => self.handle_have(conn, root, chunk),
            Message::Idle { root, free } => self.handle_idle(conn, root, free),
            Message::Keepalive => self.send(conn, &Message::Keepalive),
            Message::Report {
                root,
                holder,
                complaint,
            } => self.handle_report(conn, root, holder, complaint),
            Message::Unshare { root } => {
                self.drop_holder(root, conn);
                if let Some(s) = self.sessions.get_mut(&conn) {
                    s.roots.remove(&root);
                }
            }
            Message::Error { reason } => {
                if let Some(link) = self.links.get(&conn) {
                    self.out.close_on_error(link, conn, &reason);
                }
                self.forget(conn);
            }
            other => self.drop_link(conn, format!("unexpected message {}", other.kind())),
        }
    }

    fn handle_register(
        &mut self,
        conn: ConnId,
        peer_id: u64,
        listen: SocketAddr,
        files: Vec<SharedFile>,
    ) {
        if files.len() > MAX_FILES_PER_REGISTER {
            let reason = format!(
                "register of {} files (limit {MAX_FILES_PER_REGISTER})",
                files.len()
            );
            return self.drop_link(conn, reason);
        }
        let Some(remote) = self.links.get(&conn).map(|l| l.remote) else {
            return;
        };
        if !self.sessions.contains_key(&conn) {
            self.open_session(conn, peer_id, public_listen(listen, remote));
        }
        let mut accepted = Vec::new();
        let mut refused = Vec::new();
        for file in files {
            match self.record(conn, &file) {
                Ok(()) => accepted.push(file.name),
                Err(reason) => refused.push(Refusal {
                    name: file.name,
                    reason,
                }),
            }
        }
        self.counters.registers += 1;
        self.counters.files_refused += refused.len() as u64;
        let peer = self.sessions.get(&conn).map_or(remote, |s| s.listen);
        self.emit(Event::PeerRegistered {
            peer,
            accepted: accepted.len() as u32,
            refused: refused.clone(),
        });
        self.send(conn, &Message::Registered { accepted, refused });
    }

    /// Starts a session; an older session with the same listen address is a previous life
    /// of the same peer, so its holdings are dropped.
    fn open_session(&mut self, conn: ConnId, peer_id: u64, listen: SocketAddr) {
        let stale: Vec<ConnId> = self
            .sessions
            .iter()
            .filter(|(_, s)| s.listen == listen)
            .map(|(c, _)| *c)
            .collect();
        for old in stale {
            self.drop_link(
                old,
                "replaced by a newer session from the same address".into(),
            );
        }
        self.sessions.insert(
            conn,
            Session {
                peer_id,
                listen,
                roots: BTreeSet::new(),
                names: BTreeSet::new(),
                located: BTreeSet::new(),
                last_idle: None,
                reports_made: 0,
            },
        );
    }

    fn record(&mut self, conn: ConnId, file: &SharedFile) -> Result<(), String> {
        file.manifest.validate().map_err(|e| e.to_string())?;
        if file.have.len() != file.manifest.chunk_count() || !file.have.is_well_formed() {
            return Err("chunk set does not match the manifest".into());
        }
        let root = file.manifest.root();
        let Some(session) = self.sessions.get(&conn) else {
            return Err("not registered".into());
        };
        let ip = session.listen.ip();
        if !session.names.contains(&file.name) && session.names.len() >= MAX_FILES_PER_SESSION {
            return Err(format!(
                "a peer may share at most {MAX_FILES_PER_SESSION} files"
            ));
        }
        let pins = self.pins_per_ip.get(&ip).copied().unwrap_or(0);
        match self.names.get(&file.name) {
            Some(known) if *known != root => {
                let registered = self.swarms.get(known).map(Swarm::manifest);
                return Err(registered_otherwise(&file.name, known, registered));
            }
            Some(_) => {}
            None if self.names.len() >= MAX_TRACKER_FILES => {
                return Err(format!("tracker is full ({MAX_TRACKER_FILES} files)"))
            }
            None if pins >= MAX_NAMES_PER_ADDRESS => {
                return Err(format!(
                    "{ip} already registered {MAX_NAMES_PER_ADDRESS} names (the limit per address)"
                ))
            }
            None => {
                if !self.swarms.contains_key(&root) {
                    self.charge(root, ip, &file.manifest)?;
                }
                self.names.insert(file.name.clone(), root);
                self.pinned_by.insert(file.name.clone(), ip);
                self.pins_per_ip.insert(ip, pins + 1);
            }
        }
        if let Some(s) = self.sessions.get_mut(&conn) {
            s.names.insert(file.name.clone());
        }
        let swarm = self
            .swarms
            .entry(root)
            .or_insert_with(|| Swarm::new(file.manifest.clone()));
        self.counters.chunks_registered += swarm.hold(conn, file.have.iter());
        if let Some(s) = self.sessions.get_mut(&conn) {
            s.roots.insert(root);
        }
        Ok(())
    }

    /// Charges new content's manifest to the address registering it, within the budgets
    /// (`MAX_MANIFEST_BYTES_PER_ADDRESS`, `MAX_MANIFEST_BYTES`).
    fn charge(&mut self, root: Root, ip: IpAddr, manifest: &Manifest) -> Result<(), String> {
        let bytes = manifest.hashes.len() as u64 * 32;
        let by_ip = self.manifest_bytes_per_ip.get(&ip).copied().unwrap_or(0);
        if by_ip + bytes > MAX_MANIFEST_BYTES_PER_ADDRESS {
            return Err(format!(
                "{ip} registered {} MiB of manifests (the limit per address is {} MiB)",
                by_ip >> 20,
                MAX_MANIFEST_BYTES_PER_ADDRESS >> 20
            ));
        }
        if self.manifest_bytes + bytes > MAX_MANIFEST_BYTES {
            return Err(format!(
                "tracker is full ({} MiB of manifests)",
                MAX_MANIFEST_BYTES >> 20
            ));
        }
        self.manifest_bytes += bytes;
        self.manifest_bytes_per_ip.insert(ip, by_ip + bytes);
        self.charged_to.insert(root, (ip, bytes));
        Ok(())
    }

    /// A forgotten swarm's manifest no longer counts against its address.
    fn release(&mut self, root: &Root) {
        let Some((ip, bytes)) = self.charged_to.remove(root) else {
            return;
        };
        self.manifest_bytes = self.manifest_bytes.saturating_sub(bytes);
        if let Some(b) = self.manifest_bytes_per_ip.get_mut(&ip) {
            *b = b.saturating_sub(bytes);
            if *b == 0 {
                self.manifest_bytes_per_ip.remove(&ip);
            }
        }
    }

    fn handle_locate(&mut self, conn: ConnId, req: u32, name: FileName, known: Option<Root>) {
        self.counters.locates += 1;
        if let (Some(root), Some(session)) = (self.names.get(&name), self.sessions.get_mut(&conn)) {
            session.located.insert(*root);
        }
        let registered = self.sessions.contains_key(&conn);
        let asker_ip = self.links.get(&conn).map(|l| l.remote.ip());
        let now = self.now;
        let Some((&root, swarm)) = self
            .names
            .get(&name)
            .and_then(|r| Some((r, self.swarms.get_mut(r)?)))
        else {
            let uptime_ms = self.started.map_or(0, |t| self.now.since_ms(t));
            let reply = Message::NotFound {
                req,
                name,
                uptime_ms,
            };
            return self.send(conn, &reply);
        };
        if registered {
            swarm.seek(conn);
        }
        let mut excluded = swarm.withheld(conn, asker_ip, now);
        excluded.insert(conn);
        let holders = (swarm.draw_holders(&excluded, MAX_LOCATE_HOLDERS, &mut self.rng))
            .into_iter()
            .filter_map(|(c, have)| {
                let addr = self.sessions.get(&c)?.listen;
                Some(LocatedHolder {
                    addr,
                    have: have.clone(),
                })
            })
            .collect();
        let first = known != Some(root);
        let reply = if !first {
            Message::Holders {
                req,
                name,
                root,
                holders,
            }
        } else {
            Message::Located {
                req,
                name,
                manifest: swarm.manifest().clone(),
                holders,
            }
        };
        self.send(conn, &reply);
        if first && registered {
            self.introduce_neighbours(conn, root);
        }
    }

    /// `conn` located the file with this root and holds nothing of it: a few other seekers
    /// that hold nothing yet are introduced to it and it to them, so that each hears of
    /// the other's first chunks directly (`Message::Watch`).
    fn introduce_neighbours(&mut self, conn: ConnId, root: Root) {
        let Some(swarm) = self.swarms.get(&root) else {
            return;
        };
        if swarm.holds_some(&conn) {
            return;
        }
        let n = self.config.neighbours;
        let drawn = draw_neighbours(swarm, &self.sessions, conn, n, &mut self.rng);
        let nothing = ChunkSet::empty(swarm.manifest().chunk_count());
        let listen = |c: &ConnId| self.sessions.get(c).map(|s| s.listen);
        let Some(own) = listen(&conn) else {
            return;
        };
        let pairs: Vec<(ConnId, SocketAddr)> = drawn
            .iter()
            .filter_map(|s| Some([(conn, listen(s)?), (*s, own)]))
            .flatten()
            .collect();
        for (to, addr) in pairs {
            let holder = LocatedHolder {
                addr,
                have: nothing.clone(),
            };
            self.send(to, &Message::Introduce { root, holder });
        }
    }

    fn handle_have(&mut self, conn: ConnId, root: Root, chunk: u32) {
        if !self.sessions.contains_key(&conn) {
            return self.drop_link(conn, "chunk registered before the peer registered".into());
        }
        let known = self
            .sessions
            .get(&conn)
            .is_some_and(|s| s.roots.contains(&root) || s.located.contains(&root));
        let Some(swarm) = self.swarms.get_mut(&root).filter(|_| known) else {
            log::debug!("{conn}: have-chunk for a file it neither holds nor located");
            return;
        };
        let count = swarm.manifest().chunk_count();
        if chunk >= count {
            return self.drop_link(conn, format!("chunk {chunk} past the end ({count} chunks)"));
        }
        self.counters.chunks_registered += swarm.hold(conn, [chunk]);
        if let Some(s) = self.sessions.get_mut(&conn) {
            s.roots.insert(root);
        }
    }

    /// A holder has free upload slots and nobody waiting: each free slot is offered to
    /// `introductions_per_free_slot` seekers that lack some chunk the holder has, drawn at
    /// random (so idle holders are found at once; many seekers ask nothing, having what the
    /// holder has requested elsewhere, and one too many is only told `Busy`).
    fn handle_idle(&mut self, conn: ConnId, root: Root, free: u8) {
        let now = self.now;
        let Some(session) = self.sessions.get_mut(&conn) else {
            return self.drop_link(conn, "idle before the peer registered".into());
        };
        if !session.roots.contains(&root)
            || session
                .last_idle
                .is_some_and(|t| now.since_ms(t) < MIN_IDLE_GAP_MS)
        {
            return;
        }
        session.last_idle = Some(now);
        let listen = session.listen;
        let Some(swarm) = self.swarms.get_mut(&root) else {
            return;
        };
        let Some(have) = swarm.holders().get(&conn).cloned() else {
            return;
        };
        if swarm.suspended(conn, now) {
            return; // fetchers find it through locate answers if nobody else will do
        }
        let mut introduced = Vec::new();
        let per_slot = self.config.introductions_per_free_slot;
        let wanted = usize::from(free).saturating_mul(per_slot);
        for _ in 0..wanted.min(MAX_INTRODUCTIONS_PER_IDLE) {
            match draw_seeker(
                swarm,
                &self.sessions,
                conn,
                &have,
                &introduced,
                &mut self.rng,
            ) {
                Some(seeker) => introduced.push(seeker),
                None => break,
            }
        }
        self.counters.introductions += introduced.len() as u64;
        for seeker in introduced {
            let holder = LocatedHolder {
                addr: listen,
                have: have.clone(),
            };
            self.send(seeker, &Message::Introduce { root, holder });
        }
    }

    /// A fetcher says `holder` failed it. Counted only from a registered session that
    /// located or holds the file, about a current holder other than itself, within the
    /// session's report budget; one address counts once per holder.
    fn handle_report(&mut self, conn: ConnId, root: Root, holder: SocketAddr, why: Complaint) {
        let now = self.now;
        let Some(session) = self.sessions.get_mut(&conn) else {
            return self.drop_link(conn, "report before the peer registered".into());
        };
        let concerned = session.located.contains(&root) || session.roots.contains(&root);
        if !concerned || session.reports_made >= MAX_REPORTS_PER_SESSION {
            log::debug!("{conn}: report on {holder} ignored (file not located, or budget spent)");
            return;
        }
        session.reports_made += 1;
        let reporter = session.listen;
        let Some(swarm) = self.swarms.get_mut(&root) else {
            return;
        };
        let sessions = &self.sessions;
        let Some(reported) = (swarm.holders().keys().copied())
            .find(|c| *c != conn && sessions.get(c).is_some_and(|s| s.listen == holder))
        else {
            return; // gone already, or never a holder of this file
        };
        let Some(reporters) = swarm.report(reported, reporter.ip(), now) else {
            return;
        };
        self.counters.reports += 1;
        self.emit(Event::HolderReported {
            holder,
            reporter,
            root,
            complaint: why,
            reporters,
        });
    }

    // ---- helpers ----

    fn send(&mut self, conn: ConnId, msg: &Message) {
        self.counters.answer_bytes += self.out.send(self.links.get_mut(&conn), conn, msg) as u64;
    }

    fn emit(&mut self, event: Event) {
        self.out.emit(event);
    }

    /// Closes a connection whose remote broke the protocol, telling it why.
    fn drop_link(&mut self, conn: ConnId, reason: String) {
        self.close_link(conn, CloseReason::Violation(reason));
    }

    fn close_link(&mut self, conn: ConnId, reason: CloseReason) {
        let Some(link) = self.links.get_mut(&conn) else {
            return;
        };
        let closed = match reason {
            CloseReason::Violation(_) => &mut self.counters.closed_violation,
            CloseReason::TimedOut(_) => &mut self.counters.closed_timeout,
            CloseReason::Unauthorised(_) => &mut self.counters.closed_unauthorised,
        };
        *closed += 1;
        self.out.close_for(self.now, link, conn, reason, false);
        self.forget(conn);
    }

    /// A connection that has not registered must do so in time; a registered session must
    /// show life (its peer sends `Keepalive` when nothing else).
    fn link_deadline(&self, conn: ConnId, link: &Link) -> Option<(Timestamp, &'static str)> {
        let idle_ms = if self.sessions.contains_key(&conn) {
            SESSION_SILENT_MS
        } else {
            REGISTER_TIMEOUT_MS
        };
        link.deadline(Some(idle_ms))
    }

    fn drop_holder(&mut self, root: Root, conn: ConnId) {
        let now = self.now;
        if let Some(swarm) = self.swarms.get_mut(&root) {
            swarm.drop_holder(conn, now);
        }
    }

    /// Forgets files nobody has held for `ORPHAN_TTL_MS`, with their names.
    fn prune_orphans(&mut self, now: Timestamp) {
        let expired: Vec<Root> = self
            .swarms
            .iter()
            .filter(|(_, s)| {
                s.orphaned_since()
                    .is_some_and(|t| now.since_ms(t) >= ORPHAN_TTL_MS)
            })
            .map(|(r, _)| *r)
            .collect();
        for root in expired {
            self.swarms.remove(&root);
            self.release(&root);
            let names: Vec<FileName> = self
                .names
                .iter()
                .filter(|(_, r)| **r == root)
                .map(|(n, _)| n.clone())
                .collect();
            for name in names {
                self.forget_name(&name);
            }
        }
    }

    fn forget_name(&mut self, name: &FileName) {
        self.names.remove(name);
        let Some(ip) = self.pinned_by.remove(name) else {
            return;
        };
        if let Some(n) = self.pins_per_ip.get_mut(&ip) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.pins_per_ip.remove(&ip);
            }
        }
    }

    /// Forgets a connection and, with it, its session's holdings.
    fn forget(&mut self, conn: ConnId) {
        self.links.remove(&conn);
        let Some(session) = self.sessions.remove(&conn) else {
            return;
        };
        for root in &session.roots {
            self.drop_holder(*root, conn);
        }
        self.emit(Event::PeerLeft {
            peer: session.listen,
        });
    }
}

/// Why `name` is refused for other content. The registered file's size and chunk size are
/// named: the same bytes hashed in other chunks (another `--chunk-size`, an older default)
/// make another manifest, and a sharer that knows the chunk size can join the swarm.
fn registered_otherwise(name: &FileName, root: &Root, registered: Option<&Manifest>) -> String {
    let what = match registered {
        Some(m) => format!(": {} bytes in chunks of {} bytes", m.size, m.chunk_size),
        None => String::new(),
    };
    format!(
        "{name} is already registered with a different manifest (root {}{what})",
        root.short()
    )
}

/// A peer is reachable at the IP its session comes from, on the port it announces: taking
/// the IP from the connection means nobody can register (or evict) another machine.
fn public_listen(listen: SocketAddr, remote: SocketAddr) -> SocketAddr {
    SocketAddr::new(remote.ip(), listen.port())
}

impl Machine for Tracker {
    fn handle(&mut self, now: Timestamp, input: Input<'_>) {
        self.started.get_or_insert(now);
        self.now = now;
        match input {
            Input::Accepted { conn, remote } => {
                let channel = self.keyring.as_mut().map(|k| k.channel(false));
                let link = self.links.entry(conn);
                let link = link.or_insert(Link::new(remote, Role::Peer, now).secured(channel));
                self.out.greet(link, conn, Role::Tracker);
                self.deadlines.opened(now);
            }
            Input::Received { conn, data } => self.handle_received(conn, data),
            Input::Closed { conn } => self.forget(conn),
            Input::Sent { conn, bytes } => {
                if let Some(link) = self.links.get_mut(&conn) {
                    link.sent(bytes);
                }
                self.handle_received(conn, Received::Slice(&[]));
            }
            // The tracker never connects out or touches storage, and never offers a
            // receive window.
            Input::Connected { .. }
            | Input::ConnectFailed { .. }
            | Input::Loaded { .. }
            | Input::Stored { .. }
            | Input::Committed { .. }
            | Input::Discarded { .. }
            | Input::Hashed { .. } => {}
        }
    }

    fn poll_output(&mut self) -> Option<Output> {
        self.out.pop()
    }

    fn poll_timeout(&self) -> Option<Timestamp> {
        let orphans = self
            .swarms
            .values()
            .filter_map(Swarm::orphaned_since)
            .map(|t| t.plus_ms(ORPHAN_TTL_MS));
        orphans.chain(self.deadlines.next_scan()).min()
    }

    fn handle_timeout(&mut self, now: Timestamp) {
        self.now = now;
        self.prune_orphans(now);
        if !self.deadlines.is_due(now) {
            return;
        }
        let deadlines: Vec<(ConnId, Timestamp, &'static str)> = self
            .links
            .iter()
            .filter_map(|(c, l)| self.link_deadline(*c, l).map(|(t, why)| (*c, t, why)))
            .collect();
        let mut next = None;
        for (conn, at, why) in deadlines {
            if at <= now {
                self.close_link(conn, CloseReason::TimedOut(why));
            } else {
                next = earliest(next, Some(at));
            }
        }
        self.deadlines.scanned(now, next, self.links.len());
    }
}
