//! When a machine next looks through its connections for expired deadlines, so that
//! `poll_timeout` need not visit every connection after every input (a tracker has
//! thousands). Deadlines still fire on time; see [`ConnDeadlines`] for the one exception.

use crate::time::Timestamp;

/// The next scan of connection deadlines: at the earliest deadline the last scan found, and
/// never later than `min_lead_ms` after it. A deadline set after a scan almost always lies
/// at least `min_lead_ms` after the moment it was set, so it cannot come due before the
/// next scan and fires to the millisecond. The exception, a deadline counted from an older
/// moment (an idle time that starts when a queue drains, counted from the last byte
/// received), fires up to `min_lead_ms` late. The price: while any connection is open the
/// machine wakes at least every `min_lead_ms`, even with no deadline pending.
#[derive(Debug)]
pub(crate) struct ConnDeadlines {
    next_scan: Option<Timestamp>,
    min_lead_ms: u64,
}

impl ConnDeadlines {
    /// Scans start once a connection exists.
    pub fn new(min_lead_ms: u64) -> ConnDeadlines {
        ConnDeadlines {
            next_scan: None,
            min_lead_ms: min_lead_ms.max(1),
        }
    }

    /// When the next scan is due, if any.
    pub fn next_scan(&self) -> Option<Timestamp> {
        self.next_scan
    }

    pub fn is_due(&self, now: Timestamp) -> bool {
        self.next_scan.is_some_and(|t| t <= now)
    }

    /// A connection opened at `now`: its first deadline is at least `min_lead_ms` away.
    pub fn opened(&mut self, now: Timestamp) {
        self.next_scan = earliest(self.next_scan, Some(now.plus_ms(self.min_lead_ms)));
    }

    /// A deadline was set sooner than `min_lead_ms` ahead, at `at`: scan by then.
    pub fn due_by(&mut self, at: Timestamp) {
        self.next_scan = earliest(self.next_scan, Some(at));
    }

    /// A scan at `now` found `earliest` among `conns` connections (after closing the expired).
    pub fn scanned(&mut self, now: Timestamp, earliest_found: Option<Timestamp>, conns: usize) {
        let bound = now.plus_ms(self.min_lead_ms);
        self.next_scan = earliest(earliest_found, Some(bound)).filter(|_| conns > 0);
    }
}

/// The earlier of two optional moments (`None`: never).
pub(crate) fn earliest(a: Option<Timestamp>, b: Option<Timestamp>) -> Option<Timestamp> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scans_at_the_earliest_deadline_or_within_the_lead() {
        let mut d = ConnDeadlines::new(10_000);
        assert_eq!(d.next_scan(), None, "no connection, no timer");
        d.opened(Timestamp(5));
        assert_eq!(d.next_scan(), Some(Timestamp(10_005)));
        assert!(!d.is_due(Timestamp(10_004)) && d.is_due(Timestamp(10_005)));
        d.scanned(Timestamp(10_005), Some(Timestamp(12_000)), 3);
        assert_eq!(d.next_scan(), Some(Timestamp(12_000)));
        d.scanned(Timestamp(12_000), Some(Timestamp(99_000)), 3);
        assert_eq!(
            d.next_scan(),
            Some(Timestamp(22_000)),
            "never beyond the lead"
        );
        d.opened(Timestamp(12_500));
        assert_eq!(
            d.next_scan(),
            Some(Timestamp(22_000)),
            "a later opening waits"
        );
        d.scanned(Timestamp(22_000), None, 0);
        assert_eq!(d.next_scan(), None);
    }
}
