//! Holders a download leaves alone for a while (they said `Busy`, or their connection
//! failed), each until some moment. Kept in address order for the picker's merged walk and
//! in time order so the earliest end, which every `poll_timeout` asks for, costs no scan.

use super::addrmap::{self, AddrMap};
use crate::time::Timestamp;
use std::collections::BTreeSet;
use std::net::SocketAddr;

#[derive(Debug, Default)]
pub(crate) struct Cooldowns {
    by_addr: AddrMap<Timestamp>,
    by_time: BTreeSet<(Timestamp, SocketAddr)>,
}

impl Cooldowns {
    /// Leaves `addr` alone until `until`, replacing any earlier cooldown of it.
    pub fn set(&mut self, addr: SocketAddr, until: Timestamp) {
        if let Some(old) = self.by_addr.insert(addr, until) {
            self.by_time.remove(&(old, addr));
        }
        self.by_time.insert((until, addr));
    }

    /// Leaves `addr` alone until `until` at least (a longer cooldown stays).
    pub fn extend(&mut self, addr: SocketAddr, until: Timestamp) {
        let longer = self.by_addr.get(&addr).map_or(until, |t| (*t).max(until));
        self.set(addr, longer);
    }

    pub fn remove(&mut self, addr: SocketAddr) {
        if let Some(old) = self.by_addr.remove(&addr) {
            self.by_time.remove(&(old, addr));
        }
    }

    /// Forgets cooldowns over by `now`.
    pub fn expire(&mut self, now: Timestamp) {
        while let Some((until, addr)) = self.by_time.first().copied() {
            if until > now {
                break;
            }
            self.by_time.pop_first();
            self.by_addr.remove(&addr);
        }
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
    fn the_earliest_end_follows_sets_extends_and_expiry() {
        let (a, b) = (
            SocketAddr::from(([127, 0, 0, 1], 1)),
            SocketAddr::from(([127, 0, 0, 2], 1)),
        );
        let mut c = Cooldowns::default();
        assert_eq!(c.earliest_end(), None);
        c.set(a, Timestamp(300));
        c.set(b, Timestamp(200));
        assert_eq!(c.earliest_end(), Some(Timestamp(200)));
        c.extend(b, Timestamp(100));
        assert_eq!(
            c.earliest_end(),
            Some(Timestamp(200)),
            "extending never shortens"
        );
        c.extend(b, Timestamp(400));
        assert_eq!(c.earliest_end(), Some(Timestamp(300)));
        c.set(b, Timestamp(50));
        assert_eq!(c.earliest_end(), Some(Timestamp(50)), "setting replaces");
        c.expire(Timestamp(50));
        assert!(!c.is_cooling(b, Timestamp(0)) && c.is_cooling(a, Timestamp(299)));
        assert_eq!(c.by_addr().count(), 1);
        c.remove(a);
        assert_eq!((c.earliest_end(), c.by_addr().count()), (None, 0));
    }
}
