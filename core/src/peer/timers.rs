//! The peer's timers, by name: what can wake the peer and when. Each is derived from the
//! state of the room that owns it (nothing to keep in step); `poll_timeout` is the earliest,
//! and `handle_timeout` acts on those due, by name, logging why the peer woke.

use super::Peer;
use crate::deadlines::earliest;
use crate::manifest::FileName;
use crate::time::Timestamp;
use std::fmt;

/// A timer of the peer as a whole.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Timer {
    /// The connections' deadlines are looked at: silence, idleness, unanswered requests.
    ConnDeadlines,
    /// The tracker is connected to again.
    TrackerReconnect,
    /// The upload slots are checked for fetchers that left theirs unused.
    FreeSlots,
    /// The tracker is told this session is alive (nothing heard from it for a while).
    Keepalive,
}

/// In the order they are handled when several are due at once.
const PEER_TIMERS: [Timer; 4] = [
    Timer::ConnDeadlines,
    Timer::TrackerReconnect,
    Timer::FreeSlots,
    Timer::Keepalive,
];

/// A timer of one download.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum DownloadTimer {
    /// Locating: ask the tracker again (its "not found" may only mean it just restarted).
    Relocate,
    /// Giving up: locating took too long, or no chunk arrived for the stall timeout.
    Stall,
    /// Ask the tracker for a fresh chunk map.
    Refresh,
    /// A holder's cooldown ends: it may be asked again.
    CooldownEnd,
    /// Some chunk has had no usable holder for the unavailability timeout.
    GiveUp,
    /// Only holders that sent bad data are left for some chunk, and the grace is over.
    Reject,
    /// Tell the user what a download without progress waits on.
    StallNote,
    /// Requests to holders that have not delivered stop counting: ask elsewhere.
    ProbeDue,
}

impl fmt::Display for Timer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Timer::ConnDeadlines => "connection deadlines",
            Timer::TrackerReconnect => "tracker reconnect",
            Timer::FreeSlots => "upload slot check",
            Timer::Keepalive => "tracker keepalive",
        })
    }
}

impl Peer {
    /// When `timer` is due, if it is armed.
    fn timer_at(&self, timer: Timer) -> Option<Timestamp> {
        match timer {
            Timer::ConnDeadlines => self.conns.deadlines().next_scan(),
            Timer::TrackerReconnect => self.session.retry_at(),
            Timer::FreeSlots => self.slots.check_at(),
            Timer::Keepalive => self.keepalive_at(),
        }
    }

    fn fire(&mut self, now: Timestamp, timer: Timer) {
        match timer {
            Timer::ConnDeadlines => self.expire_conns(now),
            Timer::TrackerReconnect => self.connect_tracker(now),
            Timer::FreeSlots => self.check_free_slots(now),
            Timer::Keepalive => self.keep_alive(now),
        }
    }

    pub(super) fn next_timeout(&self) -> Option<Timestamp> {
        let unavailable_after_ms = self.config.unavailable_after_ms;
        let downloads = self.downloads.values();
        let download_timers = downloads.flat_map(|d| d.timers(unavailable_after_ms));
        let peer_timers = PEER_TIMERS.iter().filter_map(|t| self.timer_at(*t));
        let next = download_timers.map(|(_, at)| at).min();
        earliest(peer_timers.min(), next)
    }

    /// Acts on every timer due at `now`. Each is looked at just before it is handled, as
    /// handling one may move another.
    pub(super) fn fire_due(&mut self, now: Timestamp) {
        for timer in PEER_TIMERS {
            if self.timer_at(timer).is_some_and(|t| t <= now) {
                log::trace!("woke for the {timer}");
                self.fire(now, timer);
            }
        }
        // Only downloads with a timer due: the others' picks would find nothing new.
        let unavailable_after_ms = self.config.unavailable_after_ms;
        let due: Vec<FileName> = self
            .downloads
            .iter()
            .filter(|(_, d)| d.timers(unavailable_after_ms).any(|(_, t)| t <= now))
            .map(|(name, _)| name.clone())
            .collect();
        for name in due {
            let Some(d) = self.downloads.get(&name) else {
                continue;
            };
            let fired: Vec<DownloadTimer> = d
                .timers(unavailable_after_ms)
                .filter(|(_, t)| *t <= now)
                .map(|(timer, _)| timer)
                .collect();
            log::trace!("woke for {name}: {fired:?}");
            self.download_timers(now, &name, &fired);
        }
    }
}
