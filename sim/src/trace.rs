//! Turning core events into the run's trace: one line per event, with virtual time, the
//! node, and words a newcomer can follow; or one JSON object per line for machines.

use drizzle_core::limits::REPORTERS_TO_SUSPEND;
use drizzle_core::machine::FailKind;
use drizzle_core::Event;
use serde::Serialize;
use std::net::SocketAddr;

/// One line of a run's trace.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct TraceLine {
    pub t_ms: u64,
    pub node: String,
    pub text: String,
    #[serde(skip)]
    pub event: Option<Event>,
}

impl TraceLine {
    pub fn human(&self) -> String {
        format!(
            "{:>5}.{:03}s  {:<8} {}",
            self.t_ms / 1000,
            self.t_ms % 1000,
            self.node,
            self.text
        )
    }

    /// `{"t_ms":..,"node":..,"event":..,...}`; lines without a core event carry `"event":"note"`.
    pub fn json(&self) -> String {
        let mut obj = serde_json::Map::new();
        obj.insert("t_ms".into(), self.t_ms.into());
        obj.insert("node".into(), self.node.clone().into());
        match self.event.as_ref().map(serde_json::to_value) {
            Some(Ok(serde_json::Value::Object(fields))) => obj.extend(fields),
            _ => {
                obj.insert("event".into(), "note".into());
                obj.insert("text".into(), self.text.clone().into());
            }
        }
        serde_json::Value::Object(obj).to_string()
    }
}

/// Describes `event` in words; `who` names an address (a node name where it is one).
pub fn describe(event: &Event, who: &dyn Fn(SocketAddr) -> String) -> String {
    match event {
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
        Event::TrackerLost { retry_in_ms, .. } => {
            format!("lost the tracker; retrying in {retry_in_ms} ms")
        }
        Event::Shared { name } => format!("shares {name}"),
        Event::ShareRefused { name, reason } => format!("tracker refused {name}: {reason}"),
        Event::FileList { files, more } => {
            let names: Vec<&str> = files.iter().map(|f| f.name.as_str()).collect();
            let cut = if *more { ", … (cut)" } else { "" };
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
