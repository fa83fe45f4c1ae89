//! Holders a download leaves alone for a while (they said `Busy`, or their connection
//! failed), each until some moment. Kept in address order for the picker's merged walk and
//! in time order so the earliest end, which every `poll_timeout` asks for, costs no scan;
//! those that said `Busy` are also the lines the download waits in.

use super::addrmap::{self, AddrMap};
use crate::time::Timestamp;
use std::collections::BTreeSet;
use std::net::SocketAddr;

#[derive(Debug, Default)]
pub(crate) struct Cooldowns {
    by_addr: AddrMap<Timestamp>,
    by_time: BTreeSet<(Timestamp, SocketAddr)>,
    /// Those cooling because they said `Busy`: we wait in their lines, to be called.
    lines: BTreeSet<SocketAddr>,
}

impl Cooldowns {
    /// Leaves `addr` alone until `until`, replacing any earlier cooldown of it (its
    /// connection failed: whatever line we were in there is gone).
    pub fn set(&mut self, addr: SocketAddr, until: Timestamp) {
        self.lines.remove(&addr);
        self.put(addr, until);
    }

    /// `addr` said `Busy`: we are in its line, and leave it alone until `until` at least
    /// (a longer cooldown stays).
    pub fn in_line(&mut self, addr: SocketAddr, until: Timestamp) {
        let longer = self.by_addr.get(&addr).map_or(until, |t| (*t).max(until));
        self.put(addr, longer);
        self.lines.insert(addr);
    }

    fn put(&mut self, addr: SocketAddr, until: Timestamp) {
        if let Some(old) = self.by_addr.insert(addr, until) {
            self.by_time.remove(&(old, addr));
        }
        self.by_time.insert((until, addr));
    }

    pub fn remove(&mut self, addr: SocketAddr) {
        if let Some(old) = self.by_addr.remove(&addr) {
            self.by_time.remove(&(old, addr));
        }
        self.lines.remove(&addr);
    }

    /// Forgets cooldowns over by `now`.
    pub fn expire(&mut self, now: Timestamp) {
        while let Some((until, addr)) = self.by_time.first().copied() {
            if until > now {
                break;
            }
            self.by_time.pop_first();
            self.by_addr.remove(&addr);
            self.lines.remove(&addr);
        }
    }

    /// Lines we wait in: holders cooling since they said `Busy` (until `expire`).
    pub fn lines(&self) -> usize {
        self.lines.len()
    }

    pub fn is_cooling(&self, addr: SocketAddr, now: Timestamp) -> bool {
        self.by_addr.get(&addr).is_some_and(|until| *until > now)
    }

    /// When the first cooldown ends (perhaps already past, until `expire`).
    pub fn earliest_end(&self) -> Option<Timestamp> {
        self.by_time.first().map(|(until, _)| *until)
    }

    /// Every cooldown, in address order.
    pub fn by_addr(&self) -> addrmap::Iter<'_, Timestamp> {
        self.by_addr.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_earliest_end_follows_sets_lines_and_expiry() {
        let (a, b) = (
            SocketAddr::from(([127, 0, 0, 1], 1)),
            SocketAddr::from(([127, 0, 0, 2], 1)),
        );
        let mut c = Cooldowns::default();
        assert_eq!(c.earliest_end(), None);
        c.set(a, Timestamp(300));
        c.set(b, Timestamp(200));
        assert_eq!(c.earliest_end(), Some(Timestamp(200)));
        assert_eq!(c.lines(), 0, "failures are no lines");
        c.in_line(b, Timestamp(100));
        assert_eq!(
            c.earliest_end(),
            Some(Timestamp(200)),
            "a line never shortens a cooldown"
        );
        c.in_line(b, Timestamp(400));
        assert_eq!(c.earliest_end(), Some(Timestamp(300)));
        c.in_line(a, Timestamp(300));
        assert_eq!(c.lines(), 2);
        c.set(b, Timestamp(50));
        assert_eq!(c.earliest_end(), Some(Timestamp(50)), "setting replaces");
        assert_eq!(c.lines(), 1, "a failure ends the line");
        c.expire(Timestamp(50));
        assert!(!c.is_cooling(b, Timestamp(0)) && c.is_cooling(a, Timestamp(299)));
        assert_eq!(c.by_addr().count(), 1);
        c.remove(a);
        assert_eq!(
            (c.earliest_end(), c.by_addr().count(), c.lines()),
            (None, 0, 0)
        );
    }
}
