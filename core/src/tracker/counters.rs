//! What the tracker has done since it started, counted for its operator (metrics, the live
//! page, `drizzle status`). Counters only grow; what is true now (peers online, files,
//! chunks held) is read from the tracker's state instead.

use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrackerCounters {
    /// Register messages handled (a session opening, or more files shared on it).
    pub registers: u64,
    /// Files a register offered that the tracker refused (a name taken, a budget spent).
    pub files_refused: u64,
    /// Chunks newly recorded as held, from registers and have-chunk announcements.
    pub chunks_registered: u64,
    /// Locate requests answered (found or not).
    pub locates: u64,
    /// File-list pages answered.
    pub file_lists: u64,
    /// Bad-holder reports counted (the uncounted are ignored, see `handle_report`).
    pub reports: u64,
    /// Seekers an idle holder was introduced to.
    pub introductions: u64,
    /// Bytes of the messages the tracker sent (answers, introductions), before encryption.
    pub answer_bytes: u64,
    /// Connections the tracker closed because the remote broke the protocol.
    pub closed_violation: u64,
    /// ... because the remote stayed silent past a deadline.
    pub closed_timeout: u64,
    /// ... because the remote is not of this swarm (a wrong or missing swarm key).
    pub closed_unauthorised: u64,
}
