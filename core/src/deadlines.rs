//! When a machine next looks through its connections for expired deadlines, so that
//! `poll_timeout` need not visit every connection after every input (a tracker has
//! thousands). Exact because no deadline is set sooner than `min_lead_ms` ahead.

use crate::time::Timestamp;

/// The next scan of connection deadlines: at the earliest deadline the last scan found, and
/// never later than `min_lead_ms` after it. A deadline set after a scan lies at least
/// `min_lead_ms` after the moment it was set, so it cannot come due before the next scan;
/// one that breaks that rule (reset from an old activity time) is caught within `min_lead_ms`.
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
        let at = now.plus_ms(self.min_lead_ms);
        self.next_scan = Some(self.next_scan.map_or(at, |t| t.min(at)));
    }

    /// A scan at `now` found `earliest` among `conns` connections (after closing the expired).
    pub fn scanned(&mut self, now: Timestamp, earliest: Option<Timestamp>, conns: usize) {
        let bound = now.plus_ms(self.min_lead_ms);
        self.next_scan = (conns > 0).then(|| earliest.map_or(bound, |t| t.min(bound)));
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
