//! The event queue: every action is due at a time in microseconds and was queued `seq`-th;
//! the earliest comes first, ties in the order queued, so a run is one sequence.

use super::*;

/// An action due at `at_us`, queued `seq`-th. The queue is a max-heap, so the order is
/// reversed: the earliest action, first queued among equals, comes out first.
#[derive(Debug)]
pub(super) struct Queued {
    pub(super) at_us: u64,
    pub(super) seq: u64,
    pub(super) action: Action,
}

impl Ord for Queued {
    fn cmp(&self, other: &Self) -> Ordering {
        (other.at_us, other.seq).cmp(&(self.at_us, self.seq))
    }
}

impl PartialOrd for Queued {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for Queued {
    fn eq(&self, other: &Self) -> bool {
        (self.at_us, self.seq) == (other.at_us, other.seq)
    }
}

impl Eq for Queued {}
