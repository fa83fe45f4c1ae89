//! Every message of the protocol, peer ⇄ tracker and peer ⇄ peer, as serde types.
//! Counts inside messages are bounded by the frame limit when decoded and checked against
//! `limits` by the machines before they are used.

use crate::bytes::Bytes;
use crate::chunkset::ChunkSet;
use crate::manifest::{FileName, Manifest, Root};
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;

/// Sent first on every connection so that a stranger speaking another protocol is told so.
pub const MAGIC: [u8; 4] = *b"DRZL";
pub const PROTOCOL_VERSION: u16 = 10;

/// What the sender of a hello is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Role {
    Tracker,
    Peer,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    pub magic: [u8; 4],
    pub version: u16,
    pub role: Role,
    /// Whether the sender's swarm is closed: a `Handshake` follows, then only records. The
    /// two ends compare their own setting, never negotiate it (no downgrade).
    pub closed: bool,
}

impl Hello {
    /// The hello of an open swarm.
    pub fn new(role: Role) -> Hello {
        Hello {
            magic: MAGIC,
            version: PROTOCOL_VERSION,
            role,
            closed: false,
        }
    }
}

/// One file a peer announces, with which of its chunks it holds.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SharedFile {
    pub name: FileName,
    pub manifest: Manifest,
    pub have: ChunkSet,
}

/// A file the tracker refused to record, and why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Refusal {
    pub name: FileName,
    pub reason: String,
}

/// One line of the tracker's file list.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileSummary {
    pub name: FileName,
    pub size: u64,
    pub chunk_size: u32,
    pub chunks: u32,
    pub root: Root,
    /// Peers holding at least one chunk.
    pub peers: u32,
}

/// A holder in a locate answer: where it listens and which chunks it has.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LocatedHolder {
    pub addr: SocketAddr,
    pub have: ChunkSet,
}

/// Why a holder refused a chunk: a fetcher reports the holder to the tracker for a
/// refusal the tracker's chunk map did not predict, never for a hint to go elsewhere.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum RefusedBecause {
    /// The holder does not have the chunk (or no longer shares the file).
    NotHeld,
    /// The holder could not read it from its disk (it withdraws the file).
    Unreadable,
    /// The holder has sent this chunk more often than others: fetch it elsewhere.
    SentOften,
    /// The fetcher took the request back ([`Message::Cancel`]) before it was served.
    Cancelled,
}

/// What a fetcher reports about a holder the tracker handed out, in a [`Message::Report`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Complaint {
    /// No connection could be made to it.
    Unreachable,
    /// It refused a chunk the tracker listed it as holding.
    Refused,
    /// It accepted requests and sent nothing for the request timeout.
    Stalled,
    /// It sent a chunk that does not match the manifest.
    BadData,
}

impl Complaint {
    pub fn as_str(self) -> &'static str {
        match self {
            Complaint::Unreachable => "unreachable",
            Complaint::Refused => "refused",
            Complaint::Stalled => "stalled",
            Complaint::BadData => "bad data",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Message {
    Hello(Hello),
    /// Either side, then close: why the connection is being dropped.
    Error {
        reason: String,
    },

    // peer → tracker
    /// Announce the peer (its id and listen address) and files it shares; may be repeated
    /// to add files.
    Register {
        peer_id: u64,
        listen: SocketAddr,
        files: Vec<SharedFile>,
    },
    /// One page of the file list: the files named after `after` (from the first if
    /// `None`), in name order; the answer says whether more follow.
    ListFiles {
        req: u32,
        after: Option<FileName>,
    },
    /// Who holds `name`? `known`: the root of the manifest the asker already has; while
    /// it is still the file's, the answer is [`Message::Holders`], without the manifest.
    Locate {
        req: u32,
        name: FileName,
        known: Option<Root>,
    },
    /// The sender now holds (verified) chunk `chunk` of the file with this root.
    HaveChunk {
        root: Root,
        chunk: u32,
    },
    /// The sender no longer serves the file with this root (a download it abandoned).
    Unshare {
        root: Root,
    },

    // tracker → peer
    Registered {
        accepted: Vec<FileName>,
        refused: Vec<Refusal>,
    },
    /// `more`: another page follows (ask with the last name as `after`).
    FileList {
        req: u32,
        files: Vec<FileSummary>,
        more: bool,
    },
    Located {
        req: u32,
        name: FileName,
        manifest: Manifest,
        holders: Vec<LocatedHolder>,
    },
    /// No such file, from a tracker up for `uptime_ms`: just after a restart its peers may
    /// still be re-registering, so the answer may change (the asker judges how long that
    /// takes: `PeerConfig::tracker_settle_ms`).
    NotFound {
        req: u32,
        name: FileName,
        uptime_ms: u64,
    },

    // peer ⇄ peer
    /// `others`: how many other holders of this chunk the requester knows (capped at 255);
    /// a holder that has sent this chunk more than others may refuse it when some exist.
    GetChunk {
        root: Root,
        chunk: u32,
        others: u8,
    },
    ChunkData {
        root: Root,
        chunk: u32,
        data: Bytes,
    },
    ChunkRefused {
        root: Root,
        chunk: u32,
        because: RefusedBecause,
        reason: String,
    },

    // (Variants below were added later; last, so that earlier ones keep their wire tags.)

    // holder → fetcher
    /// The holder is serving others (its upload slots are taken): ask again later, or
    /// ask another holder.
    Busy {
        root: Root,
        chunk: u32,
    },

    // tracker → peer
    /// A fresh chunk map for a file whose manifest (root `root`) the asker has.
    Holders {
        req: u32,
        name: FileName,
        root: Root,
        holders: Vec<LocatedHolder>,
    },

    // holder → fetcher
    /// An upload slot came free for a fetcher this holder told `Busy`: ask now. A fetcher
    /// waits for this instead of polling a busy holder.
    Ready {
        root: Root,
    },

    // peer → tracker
    /// The sender has `free` upload slots and nobody waiting for them: the tracker may
    /// send it fetchers of the file with this root (one [`Message::Introduce`] each).
    Idle {
        root: Root,
        free: u8,
    },

    // tracker → peer
    /// `holder` has a free upload slot and chunks of `root` that the receiver lacks: ask it.
    /// With an empty chunk set, `holder` is a neighbour instead — a seeker holding nothing
    /// yet, sent when the receiver first locates the file: connect and `Watch` it.
    Introduce {
        root: Root,
        holder: LocatedHolder,
    },

    // holder → fetcher
    /// The sender has just verified and stored chunk `chunk` of the file with this root:
    /// told to the fetchers it serves and the first few waiting, so that a chunk new to the
    /// swarm is asked for before the tracker's chunk maps catch up.
    Have {
        root: Root,
        chunk: u32,
    },

    // peer → tracker
    /// The holder listening at `holder`, handed out for the file with this root, failed
    /// the sender. Once enough addresses report it (`limits::REPORTERS_TO_SUSPEND`), the
    /// tracker stops handing it out for a while.
    Report {
        root: Root,
        holder: SocketAddr,
        complaint: Complaint,
    },

    // either side, in a closed swarm
    /// A Noise handshake message (see `crate::secure`), in the clear after the hello; at
    /// most `secure::MAX_HANDSHAKE_BYTES`.
    Handshake {
        noise: Vec<u8>,
    },

    // peer ⇄ tracker
    /// The session is alive: a peer that has heard nothing from its tracker for
    /// `limits::KEEPALIVE_MS` says so, and the tracker answers in kind. Each side closes a
    /// session silent for `limits::SESSION_SILENT_MS`.
    Keepalive,

    // fetcher → holder
    /// Do not send `chunk` of `root` after all: a copy asked of another holder arrived
    /// first. A holder that has not begun sending it answers `ChunkRefused` (`Cancelled`),
    /// freeing the request's place; one already sending it lets it finish.
    Cancel {
        root: Root,
        chunk: u32,
    },

    // fetcher → peer
    /// Tell the sender of each chunk of `root` as it begins to arrive (`Have`), though it
    /// holds none yet: a neighbour, introduced by the tracker, connected before it has
    /// anything to ask, so that its first chunks are asked for a round trip sooner.
    Watch {
        root: Root,
    },
}

impl Message {
    /// The variant's name, for logs and error reasons.
    pub fn kind(&self) -> &'static str {
        match self {
            Message::Hello(_) => "hello",
            Message::Error { .. } => "error",
            Message::Register { .. } => "register",
            Message::ListFiles { .. } => "list-files",
            Message::Locate { .. } => "locate",
            Message::HaveChunk { .. } => "have-chunk",
            Message::Unshare { .. } => "unshare",
            Message::Registered { .. } => "registered",
            Message::FileList { .. } => "file-list",
            Message::Located { .. } => "located",
            Message::NotFound { .. } => "not-found",
            Message::GetChunk { .. } => "get-chunk",
            Message::ChunkData { .. } => "chunk-data",
            Message::ChunkRefused { .. } => "chunk-refused",
            Message::Holders { .. } => "holders",
            Message::Busy { .. } => "busy",
            Message::Ready { .. } => "ready",
            Message::Idle { .. } => "idle",
            Message::Introduce { .. } => "introduce",
            Message::Have { .. } => "have",
            Message::Watch { .. } => "watch",
            Message::Report { .. } => "report",
            Message::Handshake { .. } => "handshake",
            Message::Keepalive => "keepalive",
            Message::Cancel { .. } => "cancel",
        }
    }
}
