//! What a driver counts for its operator (metrics, the live page): connections and bytes per
//! remote address. Shared behind an `Arc` and read from other threads while the loop runs,
//! so reading never stops the loop; the per-remote table is bounded.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

/// Remote addresses counted one by one; the traffic of any more is summed under
/// `0.0.0.0` (a swarm of thousands stays readable and a scanner cannot grow the table).
pub const MAX_REMOTES: usize = 1024;

/// Bytes exchanged with one remote address.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Traffic {
    /// Sent to it.
    pub up: u64,
    /// Received from it.
    pub down: u64,
}

#[derive(Debug, Default)]
pub struct DriverStats {
    open: AtomicU64,
    accepted: AtomicU64,
    refused_full: AtomicU64,
    refused_per_address: AtomicU64,
    per_remote: Mutex<BTreeMap<IpAddr, Traffic>>,
}

/// A copy of the counters at one instant.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DriverCounts {
    /// Connections open now (both directions).
    pub open: u64,
    /// Connections accepted since the start.
    pub accepted: u64,
    /// Connections refused because the process had its maximum open.
    pub refused_full: u64,
    /// Connections refused because their address had its maximum open.
    pub refused_per_address: u64,
    /// Bytes per remote address, in address order.
    pub traffic: Vec<(IpAddr, Traffic)>,
}

impl DriverStats {
    pub fn counts(&self) -> DriverCounts {
        let traffic = match self.per_remote.lock() {
            Ok(t) => t.iter().map(|(ip, t)| (*ip, *t)).collect(),
            Err(_) => Vec::new(),
        };
        DriverCounts {
            open: self.open.load(Ordering::Relaxed),
            accepted: self.accepted.load(Ordering::Relaxed),
            refused_full: self.refused_full.load(Ordering::Relaxed),
            refused_per_address: self.refused_per_address.load(Ordering::Relaxed),
            traffic,
        }
    }

    pub(crate) fn opened(&self, accepted: bool) {
        self.open.fetch_add(1, Ordering::Relaxed);
        if accepted {
            self.accepted.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub(crate) fn closed(&self) {
        self.open.fetch_sub(1, Ordering::Relaxed);
    }

    pub(crate) fn refused(&self, per_address: bool) {
        let counter = match per_address {
            true => &self.refused_per_address,
            false => &self.refused_full,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn moved(&self, remote: IpAddr, traffic: Traffic) {
        let Ok(mut table) = self.per_remote.lock() else {
            return;
        };
        let key = match table.len() < MAX_REMOTES || table.contains_key(&remote) {
            true => remote,
            false => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        };
        let t = table.entry(key).or_default();
        t.up += traffic.up;
        t.down += traffic.down;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remotes_past_the_bound_are_summed_under_the_unspecified_address() {
        let stats = DriverStats::default();
        for i in 0..MAX_REMOTES as u32 + 10 {
            let ip = IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + i));
            stats.moved(ip, Traffic { up: 1, down: 2 });
        }
        let counts = stats.counts();
        assert_eq!(counts.traffic.len(), MAX_REMOTES + 1);
        let other = counts.traffic.first().map(|(ip, t)| (*ip, *t));
        let unspecified = IpAddr::V4(Ipv4Addr::UNSPECIFIED);
        assert_eq!(other, Some((unspecified, Traffic { up: 10, down: 20 })));
    }
}
