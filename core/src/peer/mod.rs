//! The peer machine: shares files, keeps a session with the tracker, downloads files chunk
//! by chunk from other peers (rarest first, random holder, pipelined, verified) and serves
//! the chunks it holds. Downloading logic is in `download`, pure choices in `picker`,
//! serving in `serve`.

mod check;
mod cooldown;
mod download;
pub mod picker;
mod serve;
mod session;
mod slots;
mod uploads;

use crate::bytes::Bytes;
use crate::chunkset::ChunkSet;
use crate::deadlines::{earliest, ConnDeadlines};
use crate::limits::{
    FETCHER_IDLE_TIMEOUT_MS, HOLDER_EVICTABLE_AFTER_MS, HOLDER_IDLE_TIMEOUT_MS, MAX_CHUNKS_STORING,
    MAX_PEER_CONNECTIONS,
};
use crate::link::{clip, Link, DEADLINE_LEAD_MS};
use crate::machine::{ConnId, Event, FailKind, Input, IoId, Machine, Output};
use crate::manifest::{FileName, Manifest, Root};
use crate::outbox::Outbox;
use crate::time::Timestamp;
use crate::wire::{Complaint, Hello, LocatedHolder, Message, RefusedBecause, Role, SharedFile};
use check::DiskCheck;
use download::{seek, Active, Verdict};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serve::InLink;
use session::TrackerSession;
use slots::UploadSlots;
use std::cell::Cell;
use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use uploads::Uploads;

/// How a peer behaves; times in milliseconds.
#[derive(Clone, Debug)]
pub struct PeerConfig {
    pub tracker: SocketAddr,
    /// Where this peer accepts other peers (`0.0.0.0:p` lets the tracker fill in the IP).
    pub listen: SocketAddr,
    /// Seeds the peer's RNG; the real driver draws it from the OS and logs it.
    pub seed: u64,
    /// A holder that sends nothing for this long while owing chunks is dropped.
    pub request_timeout_ms: u64,
    /// How often a download asks the tracker for a fresh chunk map: soon after a map that
    /// brought news (new holders or chunks), backing off by doubling up to the max when
    /// the maps stop changing. Peers that download together learn of each other quickly.
    pub refresh_min_ms: u64,
    pub refresh_max_ms: u64,
    /// A download that cannot progress for this long fails as unavailable.
    pub unavailable_after_ms: u64,
    /// A holder whose connection failed is left alone this long.
    pub holder_retry_ms: u64,
    /// A holder that said `Busy` is asked again after about this long (jittered) if its
    /// `Ready` has not come first.
    pub busy_retry_ms: u64,
    /// When only holders that sent bad data are left for some chunk, the chunk map is
    /// refreshed and the file rejected if no good holder shows up within this time.
    pub reject_grace_ms: u64,
    /// Tracker reconnect backoff: first delay and cap (each jittered).
    pub reconnect_base_ms: u64,
    pub reconnect_max_ms: u64,
}

impl PeerConfig {
    pub fn new(tracker: SocketAddr, listen: SocketAddr, seed: u64) -> PeerConfig {
        PeerConfig {
            tracker,
            listen,
            seed,
            request_timeout_ms: 20_000,
            refresh_min_ms: 250,
            refresh_max_ms: 5_000,
            unavailable_after_ms: 30_000,
            holder_retry_ms: 2_000,
            busy_retry_ms: 2_000,
            reject_grace_ms: 3_000,
            reconnect_base_ms: 200,
            reconnect_max_ms: 5_000,
        }
    }
}

/// What the user asks a peer to fetch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DownloadRequest {
    pub name: FileName,
    /// Refuse the file unless the tracker's manifest has this root.
    pub expect: Option<Root>,
    /// Only these chunks (`--chunks`); `None` for the whole file.
    pub only: Option<Vec<u32>>,
    /// What of the file is already on disk: checked against the manifest before it counts.
    pub on_disk: Option<OnDisk>,
    /// A file under the name with other content is replaced (`--force`); without this the
    /// download fails (`FailKind::Exists`) and the file is left as it is.
    pub replace: bool,
}

/// What of a file is on disk when its download starts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OnDisk {
    /// An interrupted download of `root` recorded these chunks in its `.part` file. The
    /// record is only a hint: each chunk is hashed again before it counts, since the bytes
    /// may have changed between runs.
    Part { root: Root, chunks: Vec<u32> },
    /// A file of `size` bytes is already under the final name.
    Final { size: u64 },
}

impl DownloadRequest {
    pub fn whole(name: FileName) -> DownloadRequest {
        DownloadRequest {
            name,
            expect: None,
            only: None,
            on_disk: None,
            replace: false,
        }
    }
}

/// Commands from the local user (through the driver).
#[derive(Clone, Debug)]
pub enum PeerCommand {
    /// Share a file; `have: None` means every chunk, stored under its final name.
    Share {
        name: FileName,
        manifest: Manifest,
        have: Option<ChunkSet>,
    },
    /// Ask the tracker for its file list (answered by [`Event::FileList`]).
    List,
    Download(DownloadRequest),
}

/// Mistakes in a command: the caller's fault, not the network's.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CommandError {
    #[error("{0} is already being downloaded")]
    AlreadyDownloading(FileName),
    #[error("invalid manifest: {0}")]
    Manifest(String),
    #[error("chunk set does not match the manifest")]
    ChunkSet,
}

/// A file this peer can serve.
#[derive(Debug)]
struct LocalFile {
    manifest: Manifest,
    /// The manifest's root, kept so it is not re-hashed.
    root: Root,
    have: ChunkSet,
    /// Stored in the `.part` file (a download in progress, or `--chunks`).
    partial: bool,
    uploads: Uploads,
    /// Chunks whose data has begun to arrive: already announced as held (see
    /// `Peer::chunk_arriving`); requests for them wait until they are stored.
    arriving: BTreeSet<u32>,
    /// Chunks announced as arriving whose transfer then failed: the tracker still lists
    /// them for us (requests are refused) until they are fetched again and stored.
    owed: BTreeSet<u32>,
}

#[derive(Debug)]
struct Download {
    request: DownloadRequest,
    started: Timestamp,
    /// `None` while locating.
    active: Option<Active>,
    /// While locating: when to ask the tracker again after a "not found" that may only
    /// mean the tracker restarted and its peers have not re-registered yet.
    relocate_at: Option<Timestamp>,
}

impl Download {
    /// When this download's next timer is due: a refresh, a cooldown's end, giving up or
    /// rejecting; while locating, asking again or giving up.
    fn next_timer(&self, unavailable_after_ms: u64) -> Timestamp {
        let Some(a) = &self.active else {
            let give_up = self.started.plus_ms(unavailable_after_ms);
            return earliest(Some(give_up), self.relocate_at).unwrap_or(give_up);
        };
        let stall_at = a.last_progress.plus_ms(unavailable_after_ms);
        let timers = [
            a.cooldown.earliest_end(),
            a.give_up_at,
            a.reject_at,
            Some(stall_at),
            Some(a.stall_note_at()),
        ];
        timers.into_iter().fold(a.next_refresh, |t, other| {
            earliest(Some(t), other).unwrap_or(t)
        })
    }
}

/// An outbound connection to a holder.
#[derive(Debug)]
struct OutLink {
    link: Link,
    /// Chunks requested on this link and not yet answered, oldest first.
    requests: Vec<(Root, u32)>,
    last_activity: Timestamp,
    /// The holder served us since it last said `Busy`: a full pipeline may go to it. Until
    /// then one request probes it, so a busy holder costs one refusal, not a pipeline's.
    serving: bool,
}

#[derive(Debug)]
enum Conn {
    Tracker(Link),
    Out(OutLink),
    In(InLink),
}

impl Conn {
    fn link(&self) -> &Link {
        match self {
            Conn::Tracker(link) => link,
            Conn::Out(o) => &o.link,
            Conn::In(i) => &i.link,
        }
    }

    fn link_mut(&mut self) -> &mut Link {
        match self {
            Conn::Tracker(link) => link,
            Conn::Out(o) => &mut o.link,
            Conn::In(i) => &mut i.link,
        }
    }

    /// When this connection is dropped for silence (see `Link::deadline`).
    fn deadline(&self) -> Option<(Timestamp, &'static str)> {
        match self {
            Conn::Tracker(link) => link.deadline(None),
            // A holder we ask nothing of is let go, freeing one of the outbound slots.
            Conn::Out(o) => o
                .link
                .deadline(o.requests.is_empty().then_some(HOLDER_IDLE_TIMEOUT_MS)),
            Conn::In(i) => i.deadline(),
        }
    }
}

/// What a storage request was for.
#[derive(Debug)]
enum Io {
    Serve {
        conn: ConnId,
        root: Root,
        chunk: u32,
    },
    /// A chunk found on disk being read (`hashing: false`) or hashed, to be checked against
    /// the manifest before it counts (see `OnDisk`).
    Check {
        name: FileName,
        root: Root,
        chunk: u32,
        hashing: bool,
    },
    /// A received chunk being hashed; `root` tells it from a later download of the same name.
    Verify {
        name: FileName,
        root: Root,
        chunk: u32,
        peer: SocketAddr,
    },
    Store {
        name: FileName,
        chunk: u32,
        peer: SocketAddr,
    },
    Commit {
        name: FileName,
    },
    /// Removing a rejected download's `.part`; the rejection is announced when it is done.
    Discard(Event),
}

#[derive(Debug)]
pub struct Peer {
    config: PeerConfig,
    rng: ChaCha8Rng,
    peer_id: u64,
    session: TrackerSession,
    files: BTreeMap<FileName, LocalFile>,
    by_root: BTreeMap<Root, FileName>,
    downloads: BTreeMap<FileName, Download>,
    conns: BTreeMap<ConnId, Conn>,
    /// When the connections' deadlines are next looked at.
    deadlines: ConnDeadlines,
    holder_conns: BTreeMap<SocketAddr, ConnId>,
    ios: BTreeMap<IoId, Io>,
    /// No outbound connection is evictable before this (see `any_evictable`).
    no_evictable_before: Cell<Timestamp>,
    slots: UploadSlots,
    next_conn: u64,
    next_io: u64,
    out: Outbox,
}

impl Peer {
    pub fn new(config: PeerConfig) -> Peer {
        let mut rng = ChaCha8Rng::seed_from_u64(config.seed);
        let peer_id = rng.gen();
        let deadlines = ConnDeadlines::new(conn_deadline_lead_ms(&config));
        Peer {
            config,
            rng,
            peer_id,
            session: TrackerSession::new(),
            files: BTreeMap::new(),
            by_root: BTreeMap::new(),
            downloads: BTreeMap::new(),
            conns: BTreeMap::new(),
            deadlines,
            holder_conns: BTreeMap::new(),
            ios: BTreeMap::new(),
            no_evictable_before: Cell::new(Timestamp::ZERO),
            slots: UploadSlots::default(),
            next_conn: 0,
            next_io: 0,
            out: Outbox::default(),
        }
    }

    // ---- getters ----

    pub fn peer_id(&self) -> u64 {
        self.peer_id
    }

    pub fn listen(&self) -> SocketAddr {
        self.config.listen
    }

    /// Chunks held (verified and stored) of the file with this root.
    pub fn have(&self, root: &Root) -> Option<&ChunkSet> {
        let name = self.by_root.get(root)?;
        self.files.get(name).map(|f| &f.have)
    }

    /// Chunks of the file with this root that we told the tracker we hold: those held, and
    /// those announced as they began to arrive (see `Peer::chunk_arriving`) and not yet
    /// stored. The tracker's record of us never runs ahead of this.
    pub fn announced(&self, root: &Root) -> Option<ChunkSet> {
        let name = self.by_root.get(root)?;
        let f = self.files.get(name)?;
        let mut all = f.have.clone();
        for chunk in f.arriving.iter().chain(&f.owed) {
            all.insert(*chunk);
        }
        Some(all)
    }

    /// Upload slots held by fetchers (or kept for one called with `Ready`).
    pub fn upload_slots_in_use(&self, now: Timestamp) -> usize {
        self.slots_taken(now, None)
    }

    /// Fetchers told `Busy` that wait to be called when a slot frees.
    pub fn fetchers_waiting(&self) -> usize {
        self.slots.waiting()
    }

    pub fn is_downloading(&self) -> bool {
        !self.downloads.is_empty()
    }

    /// Chunk requests outstanding, per holder (for limit checkers).
    pub fn requests_per_holder(&self) -> BTreeMap<SocketAddr, usize> {
        self.conns
            .values()
            .filter_map(|c| match c {
                Conn::Out(o) => Some((o.link.remote, o.requests.len())),
                _ => None,
            })
            .collect()
    }

    /// Chunk requests outstanding, per download.
    pub fn requests_per_download(&self) -> Vec<usize> {
        self.downloads
            .values()
            .filter_map(|d| d.active.as_ref().map(Active::requests_in_flight))
            .collect()
    }

    /// Chunks received and not yet stored (being hashed or written), over all downloads.
    pub fn chunks_storing(&self) -> usize {
        self.downloads
            .values()
            .filter_map(|d| d.active.as_ref().map(|a| a.storing.len()))
            .sum()
    }

    // ---- commands ----

    pub fn command(&mut self, now: Timestamp, cmd: PeerCommand) -> Result<(), CommandError> {
        match cmd {
            PeerCommand::Share {
                name,
                manifest,
                have,
            } => self.share(name, manifest, have),
            PeerCommand::List => {
                let req = self.session.ask_list();
                self.send_tracker(&Message::ListFiles { req });
                Ok(())
            }
            PeerCommand::Download(request) => {
                if self.downloads.contains_key(&request.name) {
                    return Err(CommandError::AlreadyDownloading(request.name));
                }
                let name = request.name.clone();
                self.downloads.insert(
                    name.clone(),
                    Download {
                        request,
                        started: now,
                        active: None,
                        relocate_at: None,
                    },
                );
                self.send_locate(name);
                Ok(())
            }
        }
    }

    fn share(
        &mut self,
        name: FileName,
        manifest: Manifest,
        have: Option<ChunkSet>,
    ) -> Result<(), CommandError> {
        manifest
            .validate()
            .map_err(|e| CommandError::Manifest(e.to_string()))?;
        let count = manifest.chunk_count();
        let partial = have.is_some();
        let have = have.unwrap_or_else(|| ChunkSet::full(count));
        if have.len() != count || !have.is_well_formed() {
            return Err(CommandError::ChunkSet);
        }
        let root = manifest.root();
        let file = SharedFile {
            name: name.clone(),
            manifest: manifest.clone(),
            have: have.clone(),
        };
        self.insert_file(name, manifest, root, have, partial);
        if self.tracker_up() {
            self.send_register(vec![file]);
        }
        Ok(())
    }

    fn insert_file(
        &mut self,
        name: FileName,
        manifest: Manifest,
        root: Root,
        have: ChunkSet,
        partial: bool,
    ) {
        // A name now holding other content must not be served under its old root.
        if let Some(old) = self.files.get(&name).map(|f| f.root) {
            if old != root && self.by_root.get(&old) == Some(&name) {
                self.by_root.remove(&old);
            }
        }
        self.by_root.entry(root).or_insert_with(|| name.clone());
        let uploads = Uploads::new(&have);
        self.files.insert(
            name,
            LocalFile {
                manifest,
                root,
                have,
                partial,
                uploads,
                arriving: BTreeSet::new(),
                owed: BTreeSet::new(),
            },
        );
    }

    // ---- downloading ----

    /// A tracker that is `settling` (just restarted) may not have heard from every holder
    /// yet, so its "not found" is retried rather than final.
    fn handle_not_found(&mut self, now: Timestamp, name: FileName, settling: bool) {
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

    fn handle_located(
        &mut self,
        now: Timestamp,
        name: FileName,
        manifest: Manifest,
        holders: Vec<LocatedHolder>,
    ) {
        let Some(download) = self.downloads.get(&name) else {
            return;
        };
        if let Err(e) = manifest.validate() {
            let reason = format!("the tracker sent an invalid manifest: {e}");
            return self.fail(name, FailKind::Unavailable, reason);
        }
        let root = manifest.root();
        if let Some(active) = &download.active {
            if active.root == root {
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
        let mut active = Active::new(root, manifest.clone(), want, have.clone(), now);
        active.set_holders(holders);
        active.refresh_ms = self.config.refresh_min_ms;
        active.next_refresh = now.plus_ms(active.refresh_ms);
        active.check = check;
        if let Some(d) = self.downloads.get_mut(&name) {
            d.active = Some(active);
        }
        self.insert_file(name.clone(), manifest, root, have, true);
        self.pump_checks(now, &name);
        self.pump(now, &name);
    }

    /// A fresh chunk map for a download under way: use it, and refresh again soon if it
    /// brought news, later if not.
    fn refresh_holders(&mut self, now: Timestamp, name: &FileName, holders: Vec<LocatedHolder>) {
        let (min_ms, max_ms) = (self.config.refresh_min_ms, self.config.refresh_max_ms);
        // Holders we are connected to stay known: the tracker samples afresh each time, and
        // a map that forgot them would churn connections.
        let (conns, holder_conns) = (&self.conns, &self.holder_conns);
        let keep = |addr: SocketAddr| {
            holder_conns
                .get(&addr)
                .is_some_and(|c| conns.contains_key(c))
        };
        if let Some(a) = self.downloads.get_mut(name).and_then(|d| d.active.as_mut()) {
            let news = a.merge_holders(holders, keep);
            a.refresh_ms = if news {
                min_ms
            } else {
                a.refresh_ms.saturating_mul(2).clamp(min_ms, max_ms)
            };
            a.next_refresh = now.plus_ms(a.refresh_ms);
        }
        self.pump(now, name);
    }

    fn active_mut(&mut self, name: &FileName) -> Option<&mut Active> {
        self.downloads.get_mut(name)?.active.as_mut()
    }

    /// Sends as many requests as the limits allow, then finishes the download if it is
    /// complete, rejected or stuck.
    fn pump(&mut self, now: Timestamp, name: &FileName) {
        self.settle_arrivals(now, name);
        loop {
            let Some(active) = self.downloads.get(name).and_then(|d| d.active.as_ref()) else {
                return;
            };
            if !active.may_request() {
                break;
            }
            let (conns, holder_conns) = (&self.conns, &self.holder_conns);
            let room = holder_conns.len() < MAX_PEER_CONNECTIONS
                || any_evictable(conns, now, &self.no_evictable_before);
            // Without room for a new connection only connected holders can take a request.
            let mut connected = holder_conns.keys().copied();
            let only = (!room).then_some(&mut connected as &mut dyn Iterator<Item = SocketAddr>);
            // Asked in address order, as `holder_conns` is kept: one walk.
            let mut by_addr = holder_conns.iter().peekable();
            let depth = active.pipeline_depth();
            let mut has_slot = |addr: SocketAddr| {
                holder_has_slot(conns, seek(&mut by_addr, &addr).copied(), room, depth)
            };
            let Some((chunk, holder)) =
                active.next_request(now, only, &mut has_slot, &mut self.rng)
            else {
                break;
            };
            let root = active.root;
            self.request_chunk(now, name, root, chunk, holder);
        }
        self.settle(now, name);
    }

    fn request_chunk(
        &mut self,
        now: Timestamp,
        name: &FileName,
        root: Root,
        chunk: u32,
        holder: SocketAddr,
    ) {
        let conn = match self.holder_conns.get(&holder) {
            Some(conn) => *conn,
            None => self.connect_holder(now, holder),
        };
        if let Some(Conn::Out(o)) = self.conns.get_mut(&conn) {
            if o.requests.is_empty() {
                o.last_activity = now;
            }
            o.requests.push((root, chunk));
        }
        if let Some(a) = self.active_mut(name) {
            a.in_flight.entry(chunk).or_default().push(holder);
        }
        let others = self.active_mut(name).map_or(0, |a| {
            let n = a.good_holder_count(chunk) - usize::from(a.is_good_holder(holder, chunk));
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

    /// Nothing is left to fetch: connections to holders would only keep our place in their
    /// queues (and take invitations others could use), so they close now.
    fn drop_holder_conns(&mut self) {
        let outbound: Vec<ConnId> = self.holder_conns.values().copied().collect();
        for conn in outbound {
            self.conns.remove(&conn);
            self.out.close(conn);
        }
        self.holder_conns.clear();
    }

    fn connect_holder(&mut self, now: Timestamp, addr: SocketAddr) -> ConnId {
        if self.holder_conns.len() >= MAX_PEER_CONNECTIONS {
            // The holder asked nothing for longest makes room: its map entry stays, and
            // it is reconnected when it has something we want.
            if let Some((_, idle)) = evictable_holders(&self.conns, now).min() {
                self.evict_holder(now, idle);
            }
        }
        let conn = self.new_conn();
        self.out.push(Output::Connect { conn, addr });
        let out = OutLink {
            link: Link::new(addr, Role::Peer, now),
            requests: Vec::new(),
            last_activity: now,
            serving: true,
        };
        self.open_conn(now, conn, Conn::Out(out));
        self.fell_idle(now);
        self.holder_conns.insert(addr, conn);
        self.send(conn, &Message::Hello(Hello::new(Role::Peer)));
        conn
    }

    fn handle_holder_message(&mut self, now: Timestamp, conn: ConnId, msg: Message) {
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
        let Some(Conn::Out(o)) = self.conns.get_mut(&conn) else {
            return;
        };
        let Some(pos) = o.requests.iter().position(|r| *r == (root, chunk)) else {
            return self.violation(now, conn, format!("chunk {chunk} was not requested"));
        };
        o.requests.remove(pos);
        o.last_activity = now;
        match &msg {
            Message::ChunkData { .. } => o.serving = true,
            Message::Busy { .. } => o.serving = false,
            _ => {}
        }
        let (holder, idle) = (o.link.remote, o.requests.is_empty());
        if idle {
            self.fell_idle(now);
        }
        let Some(name) = self.download_of(&root) else {
            return; // finished or abandoned meanwhile
        };
        if let Some(a) = self.active_mut(&name) {
            if let Some(asked) = a.in_flight.get_mut(&chunk) {
                asked.retain(|h| *h != holder);
                if asked.is_empty() {
                    a.in_flight.remove(&chunk);
                }
            }
        }
        match msg {
            Message::ChunkData { data, .. } => self.handle_chunk(&name, chunk, holder, data),
            Message::ChunkRefused {
                because, reason, ..
            } => {
                log::info!(
                    "{holder} refused chunk {chunk} of {name}: {}",
                    clip(&reason)
                );
                if let Some(a) = self.active_mut(&name) {
                    a.forget_chunk(holder, chunk);
                    a.note_trouble(holder, &format!("refused: {}", clip(&reason)));
                }
                if because != RefusedBecause::SentOften {
                    self.report_holder(now, &name, holder, Complaint::Refused);
                }
            }
            Message::Busy { .. } => {
                let base = self.config.busy_retry_ms.max(2);
                let retry_at = now.plus_ms(self.rng.gen_range(base / 2..=base));
                if let Some(a) = self.active_mut(&name) {
                    a.cooldown.extend(holder, retry_at);
                    a.note_trouble(holder, "busy serving others");
                }
            }
            _ => {}
        }
        self.pump(now, &name);
    }

    /// A holder we fetch from (or wait at) has a new chunk: if we lack it, it goes in the
    /// chunk map, and is asked for at once if the holder has room for a request.
    fn handle_have(&mut self, now: Timestamp, conn: ConnId, root: Root, chunk: u32) {
        let Some(Conn::Out(o)) = self.conns.get(&conn) else {
            return;
        };
        let holder = o.link.remote;
        let Some(name) = self.download_of(&root) else {
            return; // finished or abandoned meanwhile
        };
        let Some(a) = self.active_mut(&name) else {
            return;
        };
        let count = a.manifest.chunk_count();
        if chunk >= count {
            let reason = format!("have for chunk {chunk} past the end ({count} chunks)");
            return self.violation(now, conn, reason);
        }
        // Only news may change a pick: a holder repeating itself costs us no pick.
        if a.want.contains(chunk) && !a.have.contains(chunk) && a.learn_chunk(holder, chunk) {
            self.ask_first(now, &name, holder);
        }
    }

    /// A holder that said `Busy` has a free slot: stop waiting for it.
    fn handle_ready(&mut self, now: Timestamp, conn: ConnId, root: Root) {
        let Some(Conn::Out(o)) = self.conns.get(&conn) else {
            return;
        };
        let holder = o.link.remote;
        let Some(name) = self.download_of(&root) else {
            return;
        };
        if let Some(a) = self.active_mut(&name) {
            a.cooldown.remove(holder);
        }
        self.ask_first(now, &name, holder);
    }

    /// Asks `holder` (whose slot is free for us) for the rarest chunk it has that we lack,
    /// before the rest of the pipeline fills: a free slot left unused lapses.
    fn ask_first(&mut self, now: Timestamp, name: &FileName, holder: SocketAddr) {
        let conn = self.holder_conns.get(&holder).copied();
        let Some(a) = self.downloads.get(name).and_then(|d| d.active.as_ref()) else {
            return;
        };
        let may_ask = a.may_request();
        let conns = &self.conns;
        let depth = a.pipeline_depth();
        let mut has_slot = |_| holder_has_slot(conns, conn, true, depth);
        let mut only = std::iter::once(holder);
        let pick = may_ask
            .then(|| a.next_request(now, Some(&mut only), &mut has_slot, &mut self.rng))
            .flatten();
        let root = a.root;
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
    fn handle_introduce(&mut self, now: Timestamp, root: Root, holder: LocatedHolder) {
        let Some(name) = self.download_of(&root) else {
            return;
        };
        let addr = holder.addr;
        let Some(a) = self.active_mut(&name) else {
            return;
        };
        if a.learn_holder(holder) {
            a.cooldown.remove(addr);
            self.ask_first(now, &name, addr);
        }
    }

    /// Whether a connection to one more holder may open now, leaving a holder we only wait
    /// at if need be: a free slot serves at once, a place in a busy holder's queue may take
    /// long.
    fn room_for_one_more(&mut self, now: Timestamp) -> bool {
        self.holder_conns.len() < MAX_PEER_CONNECTIONS
            || any_evictable(&self.conns, now, &self.no_evictable_before)
            || self.leave_a_busy_holder(now)
    }

    /// Closes the connection to a holder we only wait at (it said `Busy`, nothing is
    /// asked of it), the one heard from longest ago; whether there was one.
    fn leave_a_busy_holder(&mut self, now: Timestamp) -> bool {
        let waited_at = self
            .conns
            .range(ConnId::Outbound(0)..)
            .filter_map(|(id, c)| match c {
                Conn::Out(o) if !o.serving && o.requests.is_empty() => Some((o.last_activity, *id)),
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
    fn evict_holder(&mut self, now: Timestamp, conn: ConnId) {
        self.out.close(conn);
        if let Some(Conn::Out(o)) = self.conns.remove(&conn) {
            self.forget_holder(now, conn, &o, "connection closed", None);
        }
    }

    /// A requested chunk arrived: have it hashed (unless an endgame duplicate already did).
    /// It counts as `storing` from now on, so it is not requested again while hashed.
    fn handle_chunk(&mut self, name: &FileName, chunk: u32, holder: SocketAddr, data: Bytes) {
        let Some(a) = self.active_mut(name) else {
            return;
        };
        if a.have.contains(chunk) || a.storing.contains(&chunk) {
            return; // an endgame duplicate
        }
        a.storing.insert(chunk);
        // Duplicates still owed by other holders are ignored when they land.
        a.in_flight.remove(&chunk);
        let root = a.root;
        let io = self.new_io(Io::Verify {
            name: name.clone(),
            root,
            chunk,
            peer: holder,
        });
        self.out.push(Output::Hash { io, data });
    }

    /// A received chunk's digest is known: store it if it is the chunk the manifest names,
    /// otherwise mark its sender bad and ask elsewhere.
    fn handle_hashed(
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
                    a.root == root && a.manifest.chunk_matches(chunk, data.len(), digest)
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
        let Some(a) = self.active_mut(&name).filter(|a| a.root == root) else {
            return; // finished or abandoned meanwhile
        };
        if !a.manifest.chunk_matches(chunk, data.len(), digest) {
            a.storing.remove(&chunk);
            a.mismatched.insert(chunk);
            a.mark_bad(peer);
            a.note_trouble(peer, "sent bad data");
            self.report_holder(now, &name, peer, Complaint::BadData);
            self.emit(Event::Mismatch {
                name: name.clone(),
                chunk,
                peer,
            });
            return self.pump(now, &name);
        }
        let (offset, size) = (
            a.manifest.chunk_range(chunk).map_or(0, |(o, _)| o),
            a.manifest.size,
        );
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

    fn handle_stored(&mut self, now: Timestamp, name: FileName, chunk: u32, peer: SocketAddr) {
        let Some(a) = self.active_mut(&name) else {
            return;
        };
        a.storing.remove(&chunk);
        a.note_progress(now);
        a.fetched += a
            .manifest
            .chunk_range(chunk)
            .map_or(0, |(_, len)| u64::from(len));
        self.hold_chunk(now, &name, chunk);
        let Some(a) = self.active_mut(&name) else {
            return;
        };
        let (have, want) = (a.have.count(), a.want.count());
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
    fn hold_chunk(&mut self, now: Timestamp, name: &FileName, chunk: u32) {
        let Some(a) = self.active_mut(name) else {
            return;
        };
        a.have.insert(chunk);
        let root = a.root;
        let mut announced = false;
        if let Some(f) = self.files.get_mut(name) {
            announced = f.arriving.remove(&chunk);
            f.owed.remove(&chunk);
            if f.have.insert(chunk) {
                f.uploads.held(chunk);
            }
        }
        if announced {
            self.serve_waiting_requests(now);
        } else {
            self.announce_chunk(now, root, chunk);
        }
    }

    /// Ends the download when it is complete, hopeless or starved.
    fn settle(&mut self, now: Timestamp, name: &FileName) {
        let unavailable_after = self.config.unavailable_after_ms;
        let reject_grace = self.config.reject_grace_ms;
        let Some(a) = self.active_mut(name) else {
            return;
        };
        if now.since_ms(a.last_progress) >= unavailable_after && !a.committing {
            let reason = format!(
                "no chunk arrived for {} s: {}",
                unavailable_after / 1000,
                a.waiting_on()
            );
            return self.fail(name.clone(), FailKind::Stalled, reason);
        }
        if a.committing || a.requests_in_flight() > 0 || !a.storing.is_empty() || a.check.is_some()
        {
            a.give_up_at = None;
            a.reject_at = None;
            return;
        }
        if a.is_complete() {
            return self.complete(name);
        }
        match a.verdict(now) {
            Verdict::Proceed => {
                a.give_up_at = None;
                a.reject_at = None;
            }
            Verdict::Reject if a.reject_at.is_none() => {
                // A good holder may be between sessions: look again before refusing the file.
                a.reject_at = Some(now.plus_ms(reject_grace));
                a.give_up_at = None;
                a.next_refresh = now;
            }
            Verdict::Reject if a.reject_at.is_some_and(|t| t > now) => {}
            Verdict::Reject => {
                let chunks: Vec<u32> = a.mismatched.iter().copied().collect();
                let reason = format!(
                    "hash mismatch in {} chunk(s) and no good holder left for them",
                    chunks.len()
                );
                let rejected = Event::Rejected {
                    name: name.clone(),
                    reason,
                    chunks,
                };
                self.abandon(name);
                // Told once the `.part` file is gone, so "rejected" means cleaned up too.
                let io = self.new_io(Io::Discard(rejected));
                self.out.push(Output::Discard {
                    io,
                    name: name.clone(),
                });
            }
            Verdict::Wait => match a.give_up_at {
                _ if a.reject_at.take().is_some() => {}
                None => a.give_up_at = Some(now.plus_ms(unavailable_after)),
                Some(t) if t <= now => {
                    let stuck = a.want.iter().find(|c| !a.have.contains(*c)).unwrap_or(0);
                    let reason = format!("no reachable holder for chunk {stuck} of {name}");
                    self.fail(name.clone(), FailKind::Unavailable, reason);
                }
                Some(_) => {}
            },
        }
    }

    fn complete(&mut self, name: &FileName) {
        let Some(a) = self.active_mut(name) else {
            return;
        };
        if a.want.is_full() {
            a.committing = true;
            let io = self.new_io(Io::Commit { name: name.clone() });
            self.out.push(Output::Commit {
                io,
                name: name.clone(),
            });
        } else {
            self.finish(name, false);
        }
    }

    /// Ends the download of `name` that got its file: returns its state, and lets go of
    /// holders if it was the last download.
    fn end_download(&mut self, name: &FileName) -> Option<Active> {
        let d = self.downloads.remove(name)?;
        if self.downloads.is_empty() {
            self.drop_holder_conns();
        }
        d.active
    }

    fn finish(&mut self, name: &FileName, complete: bool) {
        let Some(a) = self.end_download(name) else {
            return;
        };
        if complete {
            if let Some(f) = self.files.get_mut(name) {
                f.partial = false;
            }
        }
        let bytes = a
            .have
            .iter()
            .filter_map(|c| a.manifest.chunk_range(c))
            .map(|(_, len)| u64::from(len))
            .sum();
        self.emit(Event::Done {
            name: name.clone(),
            root: a.root,
            bytes,
            complete,
            fetched: a.fetched,
        });
    }

    fn fail(&mut self, name: FileName, kind: FailKind, reason: String) {
        self.abandon(&name);
        self.emit(Event::Failed { name, kind, reason });
    }

    /// Drops a download; what it verified stays in the `.part` file but is no longer served
    /// unless shared again.
    fn abandon(&mut self, name: &FileName) {
        let Some(d) = self.downloads.remove(name) else {
            return;
        };
        if let Some(a) = d.active {
            if self.files.get(name).is_some_and(|f| f.partial) {
                self.files.remove(name);
                if self.by_root.get(&a.root) == Some(name) {
                    self.by_root.remove(&a.root);
                }
                self.send_tracker(&Message::Unshare { root: a.root });
            }
        }
    }

    fn download_of(&self, root: &Root) -> Option<FileName> {
        self.downloads
            .iter()
            .find(|(_, d)| d.active.as_ref().is_some_and(|a| a.root == *root))
            .map(|(name, _)| name.clone())
    }

    // ---- connections ----

    /// Bytes arrived on `conn` (`push` hands them to its link and says whether there were
    /// any): decode and act on every message they complete.
    fn handle_received(
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
            match next {
                Ok(Some(msg)) => self.dispatch(now, conn, msg),
                Ok(None) => return self.note_arriving(now, conn),
                Err(reason) => return self.violation(now, conn, reason),
            }
        }
    }

    /// A chunk we asked this holder for has begun to arrive: see `Peer::chunk_arriving`.
    fn note_arriving(&mut self, now: Timestamp, conn: ConnId) {
        let Some(Conn::Out(o)) = self.conns.get(&conn) else {
            return;
        };
        let arriving = o.link.arriving_chunk();
        if let Some((root, chunk)) = arriving.filter(|a| o.requests.contains(a)) {
            self.chunk_arriving(now, root, chunk);
        }
    }

    fn dispatch(&mut self, now: Timestamp, conn: ConnId, msg: Message) {
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
    fn closed_by_remote(&mut self, now: Timestamp, conn: ConnId, reason: &str) {
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
    fn violation(&mut self, now: Timestamp, conn: ConnId, reason: String) {
        if !self.conns.contains_key(&conn) {
            return;
        }
        self.not_a_tracker(conn, &reason);
        if let Some(link) = self.conns.get_mut(&conn).map(Conn::link_mut) {
            self.out.close_for_violation(link, conn, reason);
        }
        self.close_conn(now, conn);
    }

    /// Forgets a connection that closed (or that we closed) and recovers what it owed.
    fn close_conn(&mut self, now: Timestamp, conn: ConnId) {
        match self.conns.remove(&conn) {
            Some(Conn::Tracker(_)) if self.session.is(conn) => self.tracker_lost(now),
            Some(Conn::Out(o)) => self.holder_lost(now, conn, o, "connection closed", None),
            Some(Conn::In(_)) => {
                self.slots.forget(conn);
                self.fetcher_left(now);
            }
            Some(Conn::Tracker(_)) | None => {}
        }
    }

    fn holder_lost(
        &mut self,
        now: Timestamp,
        conn: ConnId,
        o: OutLink,
        reason: &str,
        complaint: Option<Complaint>,
    ) {
        let names = self.forget_holder(now, conn, &o, reason, complaint);
        for name in &names {
            self.pump(now, name);
        }
    }

    /// A holder connection is gone: what it owed returns to the pool and the holder cools
    /// down (and, for a `complaint`, is reported to the tracker). Returns every download's
    /// name, for a caller that picks again.
    fn forget_holder(
        &mut self,
        now: Timestamp,
        conn: ConnId,
        o: &OutLink,
        reason: &str,
        complaint: Option<Complaint>,
    ) -> Vec<FileName> {
        let holder = o.link.remote;
        if self.holder_conns.get(&holder) == Some(&conn) {
            self.holder_conns.remove(&holder);
        }
        let retry_at = now.plus_ms(self.config.holder_retry_ms);
        let names: Vec<FileName> = self.downloads.keys().cloned().collect();
        for name in &names {
            let Some(a) = self.active_mut(name) else {
                continue;
            };
            let owed = o.requests.iter().any(|(r, _)| *r == a.root);
            for asked in a.in_flight.values_mut() {
                asked.retain(|h| *h != holder);
            }
            a.in_flight.retain(|_, asked| !asked.is_empty());
            if owed || a.knows(holder) {
                a.cooldown.set(holder, retry_at);
                a.note_trouble(holder, reason);
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

    // ---- helpers ----

    /// An outbound connection has nothing asked of it from `now`: it may be evicted from
    /// `HOLDER_EVICTABLE_AFTER_MS` on.
    fn fell_idle(&mut self, now: Timestamp) {
        let from = now.plus_ms(HOLDER_EVICTABLE_AFTER_MS);
        self.no_evictable_before
            .set(self.no_evictable_before.get().min(from));
    }

    fn new_conn(&mut self) -> ConnId {
        self.next_conn += 1;
        ConnId::Outbound(self.next_conn)
    }

    fn new_io(&mut self, io: Io) -> IoId {
        self.next_io += 1;
        let id = IoId(self.next_io);
        self.ios.insert(id, io);
        id
    }

    fn send(&mut self, conn: ConnId, msg: &Message) {
        let link = self.conns.get_mut(&conn).map(Conn::link_mut);
        self.out.send(link, conn, msg);
    }

    /// Queues encoded bytes (whole frames, or a frame's parts in order).
    fn send_bytes(&mut self, conn: ConnId, bytes: Bytes) {
        let link = self.conns.get_mut(&conn).map(Conn::link_mut);
        self.out.send_bytes(link, conn, bytes);
    }

    fn emit(&mut self, event: Event) {
        self.out.emit(event);
    }

    fn handle_io(&mut self, now: Timestamp, io: IoId, result: Result<Option<Bytes>, String>) {
        let Some(purpose) = self.ios.remove(&io) else {
            return;
        };
        match (purpose, result) {
            (Io::Serve { conn, root, chunk }, result) => {
                self.handle_loaded(now, conn, root, chunk, result)
            }
            (Io::Store { name, chunk, peer }, Ok(_)) => self.handle_stored(now, name, chunk, peer),
            (Io::Commit { name }, Ok(_)) => self.finish(&name, true),
            (
                Io::Check {
                    name,
                    root,
                    chunk,
                    hashing: false,
                },
                result,
            ) => self.handle_check_loaded(now, name, root, chunk, result),
            (Io::Verify { name, .. } | Io::Check { name, .. }, _) => {
                let reason = "the driver answered a hash request as storage".to_string();
                self.fail(name, FailKind::Storage, reason);
            }
            (Io::Store { name, .. } | Io::Commit { name }, Err(e)) => {
                let reason = format!("cannot write {name}: {e}");
                self.fail(name, FailKind::Storage, reason);
            }
            (Io::Discard(rejected), result) => {
                if let Err(e) = result {
                    log::warn!("cannot remove a rejected download: {e}");
                }
                self.emit(rejected);
            }
        }
    }
}

/// How far ahead a peer with `config` sets connection deadlines at the least — the link's
/// own, the idle times, the request timeout — and so how often it scans for them at the
/// least (see [`crate::deadlines`]).
fn conn_deadline_lead_ms(config: &PeerConfig) -> u64 {
    DEADLINE_LEAD_MS
        .min(HOLDER_IDLE_TIMEOUT_MS)
        .min(FETCHER_IDLE_TIMEOUT_MS)
        .min(config.request_timeout_ms)
}

/// Whether one more request may go to a holder: its connection `conn` has room in its
/// pipeline of `depth` requests, or it has none and there is room for a new connection. A
/// holder that said `Busy` and has not served us since gets one request at a time.
fn holder_has_slot(
    conns: &BTreeMap<ConnId, Conn>,
    conn: Option<ConnId>,
    room: bool,
    depth: usize,
) -> bool {
    match conn.and_then(|c| conns.get(&c)) {
        Some(Conn::Out(o)) if o.serving => o.requests.len() < depth,
        Some(Conn::Out(o)) => o.requests.is_empty(),
        _ => room,
    }
}

/// Whether some outbound connection is evictable now. `no_evictable_before` skips the walk
/// while no connection can be (a bound that `Peer::fell_idle` lowers); a walk that finds
/// none raises it to the moment the first idle connection becomes evictable.
fn any_evictable(
    conns: &BTreeMap<ConnId, Conn>,
    now: Timestamp,
    no_evictable_before: &Cell<Timestamp>,
) -> bool {
    if now < no_evictable_before.get() {
        return false;
    }
    let mut first = Timestamp(u64::MAX);
    for from in conns
        .range(ConnId::Outbound(0)..)
        .filter_map(|(_, c)| evictable_from(c))
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
fn evictable_from(c: &Conn) -> Option<Timestamp> {
    match c {
        Conn::Out(o) if o.requests.is_empty() => {
            Some(o.last_activity.plus_ms(HOLDER_EVICTABLE_AFTER_MS))
        }
        _ => None,
    }
}

/// Outbound holder connections with nothing asked of them for a while (evictable), with
/// when they became evictable; `min()` is the one idle longest.
fn evictable_holders(
    conns: &BTreeMap<ConnId, Conn>,
    now: Timestamp,
) -> impl Iterator<Item = (Timestamp, ConnId)> + '_ {
    // Inbound ids sort first: fetchers' connections are not even looked at.
    conns
        .range(ConnId::Outbound(0)..)
        .filter_map(move |(id, c)| Some((evictable_from(c)?, *id)))
        .filter(move |(from, _)| *from <= now)
}

impl Machine for Peer {
    fn handle(&mut self, now: Timestamp, input: Input<'_>) {
        match input {
            Input::Accepted { conn, remote } => {
                self.open_conn(now, conn, Conn::In(InLink::new(remote, now)));
                self.send(conn, &Message::Hello(Hello::new(Role::Peer)));
            }
            Input::Connected { conn } => {
                if self.session.reached(conn) {
                    self.emit(Event::TrackerReached {
                        tracker: self.config.tracker,
                    });
                }
            }
            Input::ConnectFailed { conn, reason } => {
                log::debug!("connection {conn} failed: {reason}");
                if !matches!(self.conns.get(&conn), Some(Conn::Out(_))) {
                    return self.close_conn(now, conn);
                }
                if let Some(Conn::Out(o)) = self.conns.remove(&conn) {
                    let why = format!("cannot connect: {reason}");
                    self.holder_lost(now, conn, o, &why, Some(Complaint::Unreachable));
                }
            }
            Input::Received { conn, data } => {
                self.handle_received(now, conn, |l| l.push(now, data))
            }
            Input::ReceivedBytes { conn, data } => {
                self.handle_received(now, conn, |l| l.push_bytes(now, data))
            }
            Input::ReceivedInWindow { conn, len } => {
                self.handle_received(now, conn, |l| l.received_in_window(now, len))
            }
            Input::Closed { conn } => self.close_conn(now, conn),
            Input::Sent { conn, bytes } => {
                if let Some(link) = self.conns.get_mut(&conn).map(Conn::link_mut) {
                    link.sent(bytes);
                }
                if matches!(self.conns.get(&conn), Some(Conn::In(_))) {
                    self.pump_serving(now, conn);
                }
                self.handle_received(now, conn, |_| false);
            }
            Input::Loaded { io, result } => self.handle_io(now, io, result.map(Some)),
            Input::Stored { io, result } => self.handle_io(now, io, result.map(|()| None)),
            Input::Hashed { io, digest, data } => self.handle_hashed(now, io, &digest, data),
        }
    }

    fn poll_output(&mut self) -> Option<Output> {
        self.out.pop()
    }

    fn accepts_input(&self, conn: ConnId) -> bool {
        match self.conns.get(&conn) {
            Some(Conn::Out(_)) => self.chunks_storing() < MAX_CHUNKS_STORING,
            _ => true,
        }
    }

    fn receive_window(&mut self, conn: ConnId) -> Option<&mut [u8]> {
        self.conns.get_mut(&conn)?.link_mut().receive_window()
    }

    fn poll_timeout(&self) -> Option<Timestamp> {
        let mut next: Option<Timestamp> = None;
        let mut consider = |t: Timestamp| next = earliest(next, Some(t));
        if let Some(retry_at) = self.session.retry_at() {
            consider(retry_at);
        }
        if let Some(t) = self.deadlines.next_scan() {
            consider(t);
        }
        if let Some(t) = self.slots.check_at() {
            consider(t);
        }
        for d in self.downloads.values() {
            consider(d.next_timer(self.config.unavailable_after_ms));
        }
        next
    }

    fn handle_timeout(&mut self, now: Timestamp) {
        if self.deadlines.is_due(now) {
            self.expire_conns(now);
        }
        if self.session.retry_at().is_some_and(|t| t <= now) {
            self.connect_tracker(now);
        }
        if self.slots.check_at().is_some_and(|t| t <= now) {
            self.check_free_slots(now);
        }
        // Only downloads with a timer due: the others' picks would find nothing new.
        let unavailable_after = self.config.unavailable_after_ms;
        let due: Vec<FileName> = self
            .downloads
            .iter()
            .filter(|(_, d)| d.next_timer(unavailable_after) <= now)
            .map(|(name, _)| name.clone())
            .collect();
        for name in due {
            self.download_timers(now, &name);
        }
    }
}

impl Peer {
    /// Closes connections past a deadline — silent, idle, or holders that let a request
    /// go unanswered — and finds when the next one is due.
    fn expire_conns(&mut self, now: Timestamp) {
        let timeout = self.config.request_timeout_ms;
        // While input is held back for our own disk, silence is not the holders' fault.
        let held_back = self.chunks_storing() >= MAX_CHUNKS_STORING;
        let (mut expired, mut stalled, mut next) = (Vec::new(), Vec::new(), None);
        let mut consider = |t: Timestamp| next = earliest(next, Some(t));
        for (id, c) in &self.conns {
            match c.deadline() {
                Some((t, why)) if t <= now => {
                    expired.push((*id, why));
                    continue;
                }
                Some((t, _)) => consider(t),
                None => {}
            }
            if let Conn::Out(o) = c {
                if !o.requests.is_empty() {
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
            log::info!("closing {conn}: timed out: {why}");
            if self.session.was_reached() {
                self.not_a_tracker(conn, why);
            }
            self.out.close(conn);
            self.close_conn(now, conn);
        }
        for conn in stalled {
            if let Some(Conn::Out(o)) = self.conns.remove(&conn) {
                self.out.close(conn);
                self.holder_lost(now, conn, o, "timed out", Some(Complaint::Stalled));
            }
        }
        self.deadlines.scanned(now, next, self.conns.len());
    }

    /// The tracker connection `conn` is being closed for `reason`: if the remote never
    /// said a Drizzle hello, it is not a Drizzle tracker, and the user is told so.
    fn not_a_tracker(&mut self, conn: ConnId, reason: &str) {
        if let Some(Conn::Tracker(link)) = self.conns.get(&conn) {
            if !link.hello_done() {
                self.emit(Event::NotATracker {
                    tracker: self.config.tracker,
                    reason: reason.to_string(),
                });
            }
        }
    }

    fn open_conn(&mut self, now: Timestamp, id: ConnId, conn: Conn) {
        self.conns.insert(id, conn);
        self.deadlines.opened(now);
    }

    fn download_timers(&mut self, now: Timestamp, name: &FileName) {
        let unavailable_after = self.config.unavailable_after_ms;
        let Some(d) = self.downloads.get_mut(name) else {
            return;
        };
        let Some(a) = d.active.as_mut() else {
            if now.since_ms(d.started) >= unavailable_after {
                let reason = format!("could not locate {name}: tracker unreachable");
                self.fail(name.clone(), FailKind::Unavailable, reason);
            } else if d.relocate_at.is_some_and(|t| t <= now) {
                d.relocate_at = None;
                self.send_locate(name.clone());
            }
            return;
        };
        a.cooldown.expire(now);
        if a.stall_note_at() <= now && !a.committing {
            a.stall_noted = now;
            let waiting = Event::Waiting {
                name: name.clone(),
                secs: now.since_ms(a.last_progress) / 1000,
                on: a.waiting_on(),
            };
            self.emit(waiting);
        }
        let refresh_max_ms = self.config.refresh_max_ms;
        let Some(a) = self.active_mut(name) else {
            return;
        };
        if a.next_refresh <= now {
            // Pushed back again by the answer; this covers an answer that never comes.
            a.next_refresh = now.plus_ms(a.refresh_ms.max(refresh_max_ms));
            self.send_locate(name.clone());
        }
        self.pump(now, name);
    }
}
