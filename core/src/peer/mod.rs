//! The peer machine: shares files, keeps a session with the tracker, downloads files chunk
//! by chunk from other peers (rarest first, random holder, pipelined, verified) and serves
//! the chunks it holds. `Peer` routes inputs to its rooms:
//!
//! - `session`: the tracker session (connect, reconnect, register, requests, reports);
//! - `fetch`, `download` (with `rescue`), `chunkmap`, `ledger`, `picker`, `cooldown`,
//!   `check`, `finish`: downloads, from the tracker's answer through requests,
//!   verification and storage to their end;
//! - `serve`, `slots`, `uploads`, `files`: serving chunks, the upload slots and their line;
//! - `conns`: the connection table, deadlines and eviction; `timers`: every timer by name;
//!   `config`: how a peer behaves.

mod addrmap;
mod check;
mod chunkmap;
mod config;
mod conns;
mod cooldown;
mod download;
mod fetch;
mod files;
mod finish;
mod ledger;
pub mod picker;
mod serve;
mod session;
mod slots;
mod timers;
mod uploads;

use crate::bytes::Bytes;
use crate::chunkset::ChunkSet;
use crate::limits::MAX_CHUNKS_STORING;
use crate::machine::{ConnId, Event, FailKind, Input, IoId, Layout, Machine, Output};
use crate::manifest::{FileName, Manifest, Root};
use crate::outbox::Outbox;
use crate::pool::BufferPool;
use crate::secure::Keyring;
use crate::time::Timestamp;
use crate::wire::{Complaint, Message, SharedFile};
use conns::{conn_deadline_lead_ms, Conn, ConnTable};
use download::Active;
use fetch::Download;
use files::{LocalFile, LocalFiles};
use ledger::Ledger;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serve::InLink;
use session::TrackerSession;
use slots::UploadSlots;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;

pub use config::{FetchPolicy, PeerConfig, ServePolicy};

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

/// How a storage request ended, by kind (see `Input::Loaded` and the others).
#[derive(Debug)]
enum Done {
    Loaded(Result<Bytes, String>),
    Stored(Result<(), String>),
    Committed(Result<(), String>),
    Discarded(Result<(), String>),
}

/// Storage and hash requests asked of the driver and not yet answered, by id.
#[derive(Debug, Default)]
struct Ios {
    pending: BTreeMap<IoId, Io>,
    last: u64,
}

impl Ios {
    /// Names a request for `io`.
    fn start(&mut self, io: Io) -> IoId {
        self.last += 1;
        let id = IoId(self.last);
        self.pending.insert(id, io);
        id
    }

    fn get(&self, id: &IoId) -> Option<&Io> {
        self.pending.get(id)
    }

    /// The request `id` was answered: what it was for.
    fn remove(&mut self, id: &IoId) -> Option<Io> {
        self.pending.remove(id)
    }
}

/// What a storage request was for.
#[derive(Debug)]
enum Io {
    Serve {
        conn: ConnId,
        root: Root,
        chunk: u32,
        layout: Layout,
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
    files: LocalFiles,
    downloads: BTreeMap<FileName, Download>,
    conns: ConnTable,
    /// Every chunk request outstanding.
    ledger: Ledger,
    ios: Ios,
    slots: UploadSlots,
    /// Makes each connection's channel in a closed swarm.
    keyring: Option<Keyring>,
    /// Bytes of chunks that arrived after another copy had (asked of two holders).
    duplicate_bytes: u64,
    /// The driver's buffers, which received chunks are collected in when it has some.
    buffers: Option<BufferPool>,
    out: Outbox,
}

impl Peer {
    pub fn new(config: PeerConfig) -> Peer {
        let mut rng = ChaCha8Rng::seed_from_u64(config.seed);
        let peer_id = rng.gen();
        let conns = ConnTable::new(conn_deadline_lead_ms(&config));
        Peer {
            rng,
            peer_id,
            session: TrackerSession::new(),
            files: LocalFiles::default(),
            downloads: BTreeMap::new(),
            conns,
            ledger: Ledger::default(),
            ios: Ios::default(),
            slots: UploadSlots::default(),
            keyring: Keyring::new(&config.security),
            config,
            duplicate_bytes: 0,
            buffers: None,
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

    /// How this peer was configured.
    pub fn config(&self) -> &PeerConfig {
        &self.config
    }

    /// Chunks held (verified and stored) of the file with this root.
    pub fn have(&self, root: &Root) -> Option<&ChunkSet> {
        self.files.by_root(root).map(LocalFile::have)
    }

    /// Chunks of the file with this root that we told the tracker we hold: those held, and
    /// those announced as they began to arrive (see `Peer::chunk_arriving`) and not yet
    /// stored. The tracker's record of us never runs ahead of this.
    pub fn announced(&self, root: &Root) -> Option<ChunkSet> {
        self.files.by_root(root).map(LocalFile::announced)
    }

    /// Upload slots open: `ServePolicy::upload_slots`, more on a long path (see
    /// `UploadSlots::count`).
    pub fn upload_slots(&self) -> usize {
        self.slots.count(&self.config.serve)
    }

    /// Upload slots held by fetchers (or kept for one called with `Ready`).
    pub fn upload_slots_in_use(&self, now: Timestamp) -> usize {
        self.slots_taken(now, None)
    }

    /// Fetchers told `Busy` that wait to be called when a slot frees.
    pub fn fetchers_waiting(&self) -> usize {
        self.slots.waiting()
    }

    /// Bytes of chunks received after another copy of the same chunk (one asked of a
    /// second holder, which the first delivered after all, perhaps after the download
    /// ended): what duplicates cost.
    pub fn duplicate_bytes(&self) -> u64 {
        self.duplicate_bytes
    }

    pub fn is_downloading(&self) -> bool {
        !self.downloads.is_empty()
    }

    /// Chunk requests outstanding, per holder (for limit checkers).
    pub fn requests_per_holder(&self) -> BTreeMap<SocketAddr, usize> {
        self.conns
            .iter()
            .filter_map(|(id, c)| match c {
                Conn::Out(o) => Some((o.remote(), self.ledger.owed_by(*id))),
                _ => None,
            })
            .collect()
    }

    /// Chunk requests outstanding, per download.
    pub fn requests_per_download(&self) -> Vec<usize> {
        self.downloads
            .values()
            .filter_map(Download::active)
            .map(|a| self.ledger.asked(&a.root()).count())
            .collect()
    }

    /// Chunks received and not yet stored (being hashed or written), over all downloads.
    pub fn chunks_storing(&self) -> usize {
        self.downloads
            .values()
            .filter_map(|d| d.active().map(Active::storing_count))
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
                let ask = self.session.ask_list(None);
                self.send_tracker(&ask);
                Ok(())
            }
            PeerCommand::Download(request) => {
                if self.downloads.contains_key(&request.name) {
                    return Err(CommandError::AlreadyDownloading(request.name));
                }
                let name = request.name.clone();
                self.downloads
                    .insert(name.clone(), Download::new(request, now));
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
        self.files
            .insert(name, Arc::new(manifest), root, have, partial);
        if self.tracker_up() {
            self.send_register(vec![file]);
        }
        Ok(())
    }

    // ---- helpers ----

    fn new_io(&mut self, io: Io) -> IoId {
        self.ios.start(io)
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

    /// A storage request finished: each kind of request takes only its own completion.
    fn handle_io(&mut self, now: Timestamp, io: IoId, done: Done) {
        let Some(purpose) = self.ios.remove(&io) else {
            return;
        };
        match (purpose, done) {
            (
                Io::Serve {
                    conn,
                    root,
                    chunk,
                    layout,
                },
                Done::Loaded(result),
            ) => self.handle_loaded(now, conn, (root, chunk), layout, result),
            (
                Io::Check {
                    name,
                    root,
                    chunk,
                    hashing: false,
                },
                Done::Loaded(result),
            ) => self.handle_check_loaded(now, name, root, chunk, result),
            (Io::Store { name, chunk, peer }, Done::Stored(Ok(()))) => {
                self.handle_stored(now, name, chunk, peer)
            }
            (Io::Commit { name }, Done::Committed(Ok(()))) => self.finish(&name, true),
            (Io::Store { name, .. }, Done::Stored(Err(e)))
            | (Io::Commit { name }, Done::Committed(Err(e))) => {
                let reason = format!("cannot write {name}: {e}");
                self.fail(name, FailKind::Storage, reason);
            }
            (Io::Discard(rejected), Done::Discarded(result)) => {
                if let Err(e) = result {
                    log::warn!("cannot remove a rejected download: {e}");
                }
                self.emit(rejected);
            }
            (purpose, done) => self.misanswered(now, purpose, done),
        }
    }

    /// The driver answered a request with another kind's completion: a driver bug, which
    /// fails what the request was for rather than guessing.
    fn misanswered(&mut self, now: Timestamp, purpose: Io, done: Done) {
        let reason = format!("the driver answered {purpose:?} with {done:?}");
        log::error!("{reason}");
        match purpose {
            Io::Serve {
                conn,
                root,
                chunk,
                layout,
            } => self.handle_loaded(now, conn, (root, chunk), layout, Err(reason)),
            Io::Check { name, .. }
            | Io::Verify { name, .. }
            | Io::Store { name, .. }
            | Io::Commit { name } => self.fail(name, FailKind::Storage, reason),
            Io::Discard(rejected) => self.emit(rejected),
        }
    }
}

impl Machine for Peer {
    fn handle(&mut self, now: Timestamp, input: Input<'_>) {
        match input {
            Input::Accepted { conn, remote } => {
                let channel = self.keyring.as_mut().map(|k| k.channel(false));
                let link = InLink::new(remote, now, channel);
                self.conns.open(now, conn, Conn::In(link));
                self.greet(conn);
            }
            Input::Connected { conn } => {
                if let Some(Conn::Out(o)) = self.conns.get_mut(&conn) {
                    o.connected(now);
                }
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
                    let unreachable = Some(Complaint::Unreachable);
                    self.holder_lost(now, conn, o.remote(), &why, unreachable);
                }
            }
            Input::Received { conn, data } => {
                self.handle_received(now, conn, |l| l.receive(now, data))
            }
            Input::Closed { conn } => self.close_conn(now, conn),
            Input::Sent { conn, bytes } => {
                // What left of ours: the pace of a fetcher and of the uplink is judged by it.
                let link = self.conns.get_mut(&conn).map(Conn::link_mut);
                let taken = link.map_or(0, |l| l.sent(bytes));
                if let Some(Conn::In(i)) = self.conns.get_mut(&conn) {
                    i.took(now, taken);
                    self.slots.uplink_took(now, taken);
                }
                if matches!(self.conns.get(&conn), Some(Conn::In(_))) {
                    self.pump_serving(now, conn);
                }
                self.handle_received(now, conn, |_| false);
            }
            Input::Loaded { io, result } => self.handle_io(now, io, Done::Loaded(result)),
            Input::Stored { io, result } => self.handle_io(now, io, Done::Stored(result)),
            Input::Committed { io, result } => self.handle_io(now, io, Done::Committed(result)),
            Input::Discarded { io, result } => self.handle_io(now, io, Done::Discarded(result)),
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

    fn share_buffers(&mut self, pool: &BufferPool) {
        self.buffers = Some(pool.clone());
    }

    fn receive_window(&mut self, conn: ConnId) -> Option<&mut [u8]> {
        self.conns.get_mut(&conn)?.link_mut().receive_window()
    }

    fn poll_timeout(&self) -> Option<Timestamp> {
        self.next_timeout()
    }

    fn handle_timeout(&mut self, now: Timestamp) {
        self.fire_due(now);
    }
}
