//! What machines report ([`Event`]), for people (logs, progress, traces, through
//! [`Event::describe`] or `Display`) and programs (`--json`, the simulator's checkers).

use crate::limits::REPORTERS_TO_SUSPEND;
use crate::manifest::{FileName, Root};
use crate::wire::{Complaint, FileSummary, LocatedHolder, Refusal};
use serde::Serialize;
use std::fmt;
use std::net::SocketAddr;

/// Why a download ended without its file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FailKind {
    /// The tracker has no such file.
    NotFound,
    /// The tracker's manifest is not the one the user expected (`--expect`).
    RootMismatch,
    /// Some chunk has no reachable holder, or the tracker cannot be reached.
    Unavailable,
    /// Local storage failed.
    Storage,
    /// A different file is already under the name (replacing it takes `--force`).
    Exists,
    /// No chunk arrived for the stall timeout while some were missing.
    Stalled,
    /// The request does not fit the file (a chunk index past its end).
    BadRequest,
}

/// What happened, for people (logs, progress) and programs (`--json`, sim checkers).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    /// Tracker side: a peer registered files.
    PeerRegistered {
        peer: SocketAddr,
        accepted: u32,
        refused: Vec<Refusal>,
    },
    /// Tracker side: a peer's session closed; its holdings are forgotten.
    PeerLeft { peer: SocketAddr },
    /// Tracker side: `reporter` says `holder` failed it for the file with this root;
    /// `reporters`: distinct addresses that now report it (at `REPORTERS_TO_SUSPEND` it is
    /// no longer handed out).
    HolderReported {
        holder: SocketAddr,
        reporter: SocketAddr,
        root: Root,
        complaint: Complaint,
        reporters: u32,
    },
    /// Peer side: the connection to the tracker's address is established (it may yet
    /// turn out not to be a Drizzle tracker).
    TrackerReached { tracker: SocketAddr },
    /// Peer side: the tracker session is up: the tracker answered our register.
    TrackerConnected { tracker: SocketAddr },
    /// Peer side: the server at the tracker's address does not speak Drizzle (no hello,
    /// or bytes that are not one); it is tried again like a lost tracker.
    NotATracker { tracker: SocketAddr, reason: String },
    /// Peer side: the tracker and this peer are not of one swarm (a wrong or missing swarm
    /// key, or an open swarm meeting a closed one); it is tried again like a lost tracker.
    NotAuthorised { tracker: SocketAddr, reason: String },
    /// Peer side: the tracker session is down; it is retried after `retry_in_ms`.
    TrackerLost {
        tracker: SocketAddr,
        retry_in_ms: u64,
    },
    /// The tracker recorded a shared file.
    Shared { name: FileName },
    /// The tracker refused a shared file.
    ShareRefused { name: FileName, reason: String },
    /// The tracker holds a shared file's name for a file of the same size cut in other
    /// chunks (another `--chunk-size`, another version's default): hashed in
    /// `chunk_size`-byte chunks and shared again, the same bytes join that swarm.
    ShareRecut { name: FileName, chunk_size: u32 },
    /// A shared file could not be read as registered: it is no longer offered (the tracker
    /// was told) until shared again.
    Withdrawn { name: FileName, reason: String },
    /// A page of the tracker's files, in name order; `more`: the next page is asked for
    /// and follows.
    FileList { files: Vec<FileSummary>, more: bool },
    /// A download learned its manifest and holders.
    Located {
        name: FileName,
        root: Root,
        chunks: u32,
        holders: Vec<LocatedHolder>,
    },
    Requested {
        name: FileName,
        chunk: u32,
        peer: SocketAddr,
    },
    Verified {
        name: FileName,
        chunk: u32,
        peer: SocketAddr,
        have: u32,
        want: u32,
    },
    Mismatch {
        name: FileName,
        chunk: u32,
        peer: SocketAddr,
    },
    /// A holder stopped being used for a while (connection failed, closed or timed out).
    HolderLost {
        name: FileName,
        peer: SocketAddr,
        reason: String,
    },
    Done {
        name: FileName,
        root: Root,
        bytes: u64,
        /// False when only some chunks were asked for.
        complete: bool,
        /// Bytes fetched from holders by this download (not those found on disk).
        fetched: u64,
    },
    /// Chunks found on disk (an interrupted download's `.part`, or a file already under
    /// the name) are being hashed before they count.
    Checking { name: FileName, chunks: u32 },
    /// The chunks found on disk were checked: `good` count as held, `bad` are fetched again.
    Checked {
        name: FileName,
        good: u32,
        bad: Vec<u32>,
    },
    /// The file under the name already has the manifest's content: nothing was fetched.
    AlreadyComplete {
        name: FileName,
        root: Root,
        bytes: u64,
    },
    /// Nothing arrived for `secs` seconds: what the download waits on (repeated every
    /// few seconds until something arrives or the stall timeout ends it).
    Waiting {
        name: FileName,
        secs: u64,
        on: String,
    },
    /// Hash mismatches left some chunk with no good holder: the file is refused.
    Rejected {
        name: FileName,
        reason: String,
        chunks: Vec<u32>,
    },
    Failed {
        name: FileName,
        kind: FailKind,
        reason: String,
    },
    /// Served a chunk to another peer.
    Served {
        root: Root,
        chunk: u32,
        to: SocketAddr,
    },
    /// A remote broke the protocol; its connection was closed.
    ProtocolViolation { remote: SocketAddr, reason: String },
}

impl Event {
    /// The file whose download this event ends (done, rejected or failed), if it does.
    pub fn ended_download(&self) -> Option<&FileName> {
        match self {
            Event::Done { name, .. }
            | Event::AlreadyComplete { name, .. }
            | Event::Rejected { name, .. }
            | Event::Failed { name, .. } => Some(name),
            _ => None,
        }
    }

    /// Describes `event` in words; `who` names an address (a node name where it is one).
    pub fn describe(&self, who: &dyn Fn(SocketAddr) -> String) -> String {
        match self {
            Event::PeerRegistered {
                peer,
                accepted: 0,
                refused,
            } if refused.is_empty() => format!("{} joined", who(*peer)),
            Event::PeerRegistered {
                peer,
                accepted,
                refused,
            } => {
                let mut s = format!("{} registered {accepted} file(s)", who(*peer));
                for r in refused {
                    s.push_str(&format!("; refused {}: {}", r.name, r.reason));
                }
                s
            }
            Event::PeerLeft { peer } => format!("{} left; its holdings are forgotten", who(*peer)),
            Event::HolderReported {
                holder,
                reporter,
                root,
                complaint,
                reporters,
            } => {
                let mut s = format!(
                    "{} reports {} for {} ({}); reported from {reporters} address(es)",
                    who(*reporter),
                    who(*holder),
                    root.short(),
                    complaint.as_str()
                );
                if *reporters as usize >= REPORTERS_TO_SUSPEND {
                    s.push_str(": no longer handed out where others offer its chunks");
                }
                s
            }
            Event::TrackerConnected { .. } => "connected to the tracker".into(),
            Event::TrackerReached { tracker } => format!("reached {}", who(*tracker)),
            Event::NotATracker { tracker, reason } => {
                format!("{} is not a Drizzle tracker: {reason}", who(*tracker))
            }
            Event::NotAuthorised { tracker, reason } => {
                format!("{} refused: {reason}", who(*tracker))
            }
            Event::TrackerLost { retry_in_ms, .. } => {
                format!("lost the tracker; retrying in {retry_in_ms} ms")
            }
            Event::Shared { name } => format!("shares {name}"),
            Event::ShareRefused { name, reason } => format!("tracker refused {name}: {reason}"),
            Event::ShareRecut { name, chunk_size } => {
                format!("tracker holds {name} in chunks of {chunk_size} bytes")
            }
            Event::FileList { files, more } => {
                let names: Vec<&str> = files.iter().map(|f| f.name.as_str()).collect();
                let cut = if *more { ", … (more follow)" } else { "" };
                format!("file list: {{{}{cut}}}", names.join(", "))
            }
            Event::Located {
                name,
                chunks,
                holders,
                root,
            } => {
                let mut s = format!("located {name} (root {}, {chunks} chunks)", root.short());
                for c in 0..*chunks {
                    let list: Vec<String> = holders
                        .iter()
                        .filter(|h| h.have.contains(c))
                        .map(|h| who(h.addr))
                        .collect();
                    s.push_str(&format!(
                        "\n{:>24}chunk {c} present in [{}]",
                        "",
                        list.join(", ")
                    ));
                }
                s
            }
            Event::Requested { name, chunk, peer } => {
                format!("requests chunk {chunk} of {name} from {}", who(*peer))
            }
            Event::Verified {
                name,
                chunk,
                peer,
                have,
                want,
            } => format!(
                "verified chunk {chunk} of {name} from {} [{have}/{want}, {}%]",
                who(*peer),
                u64::from(*have) * 100 / u64::from((*want).max(1))
            ),
            Event::Mismatch { name, chunk, peer } => {
                format!(
                    "HASH MISMATCH for chunk {chunk} of {name} from {}",
                    who(*peer)
                )
            }
            Event::HolderLost { name, peer, reason } => {
                format!("lost holder {} for {name}: {reason}", who(*peer))
            }
            Event::Done {
                name,
                bytes,
                complete,
                ..
            } => {
                if *complete {
                    format!("-- {name} downloaded and verified ({bytes} bytes) --")
                } else {
                    format!("-- holds the requested chunks of {name} ({bytes} bytes, partial) --")
                }
            }
            Event::Checking { name, chunks } => {
                format!("checking {chunks} chunk(s) of {name} found on disk")
            }
            Event::Checked { name, good, bad } if bad.is_empty() => {
                format!("checked {name}: {good} chunk(s) on disk are good")
            }
            Event::Checked { name, good, bad } => format!(
                "checked {name}: {good} chunk(s) on disk are good, {} damaged (fetched again): {bad:?}",
                bad.len()
            ),
            Event::Withdrawn { name, reason } => {
                format!("withdrew {name}: {reason}; share it again to offer it")
            }
            Event::Waiting { name, secs, on } => {
                format!("{name}: nothing arrived for {secs} s; waiting on {on}")
            }
            Event::AlreadyComplete { name, bytes, .. } => {
                format!("-- {name} is already complete ({bytes} bytes); nothing fetched --")
            }
            Event::Rejected {
                name,
                reason,
                chunks,
            } => {
                format!("REJECTED {name}: {reason}; mismatched chunks {chunks:?}")
            }
            Event::Failed { name, kind, reason } => {
                let kind = match kind {
                    FailKind::NotFound => "not found",
                    FailKind::RootMismatch => "root mismatch",
                    FailKind::Unavailable => "unavailable",
                    FailKind::Storage => "storage error",
                    FailKind::BadRequest => "bad request",
                    FailKind::Exists => "exists",
                    FailKind::Stalled => "stalled",
                };
                format!("FAILED {name} ({kind}): {reason}")
            }
            Event::Served { chunk, to, root } => {
                format!("served chunk {chunk} of {} to {}", root.short(), who(*to))
            }
            Event::ProtocolViolation { remote, reason } => {
                format!("dropped {}: {reason}", who(*remote))
            }
        }
    }
}

impl fmt::Display for Event {
    /// The event in words, addresses as they are.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.describe(&|a| a.to_string()))
    }
}
