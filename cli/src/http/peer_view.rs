//! What a sharing or serving peer shows its operator (`share --http`, `get --serve --http`):
//! chunks verified and served, hash mismatches, holders lost by reason, upload slots, and
//! bytes per remote address. Counted from the peer's events and the driver's counters.

use super::metrics::Metrics;
use super::server::View;
use super::{Handoff, HttpListener};
use crate::exit::Fail;
use drizzle_core::{Event, Peer, Timestamp};
use drizzle_mio::{Driver, DriverCounts, DriverStats};
use serde::{Deserialize, Serialize};
use std::net::IpAddr;
use std::sync::Arc;

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct PeerView {
    pub uptime_s: f64,
    pub counts: PeerCounts,
    /// Upload slots open (3, more on a long path) and in use.
    pub upload_slots: usize,
    pub upload_slots_in_use: usize,
    pub fetchers_waiting: usize,
    pub downloading: bool,
    pub connections_open: u64,
    /// Bytes per remote address (past `drizzle_mio::stats::MAX_REMOTES`, summed under
    /// 0.0.0.0).
    pub traffic: Vec<RemoteTraffic>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct PeerCounts {
    pub chunks_verified: u64,
    pub hash_mismatches: u64,
    pub chunks_served: u64,
    /// Bytes of chunks that came after another copy of them (asked of two holders).
    pub duplicate_bytes: u64,
    /// Holders given up for a while, by why: they timed out, closed, or could not be
    /// reached.
    pub holders_timed_out: u64,
    pub holders_closed: u64,
    pub holders_unreachable: u64,
    /// Times a download said it was waiting with nothing arriving.
    pub download_waits: u64,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RemoteTraffic {
    pub remote: IpAddr,
    pub up: u64,
    pub down: u64,
}

/// A peer's `--http`, as its command's loop sees it: events counted, snapshots published
/// when asked for. Without `--http` it does nothing.
#[derive(Debug)]
pub struct PeerHttp {
    served: Option<(Arc<Handoff<PeerView>>, Arc<DriverStats>)>,
    watcher: PeerWatcher,
}

impl PeerHttp {
    /// Serves on `http` if given (saying where, in NDJSON with `json`).
    pub fn start(
        http: Option<HttpListener>,
        json: bool,
        driver: &Driver<Peer>,
    ) -> Result<PeerHttp, Fail> {
        let served = match http {
            Some(http) => {
                let waker = driver.waker();
                let handoff = http.start(json, move || drop(waker.wake()))?;
                Some((handoff, driver.stats()))
            }
            None => None,
        };
        Ok(PeerHttp {
            served,
            watcher: PeerWatcher::default(),
        })
    }

    /// Looks at an event (or a loop turn, `None`).
    pub fn see(&mut self, peer: &Peer, now: Timestamp, event: Option<&Event>) {
        let Some((handoff, stats)) = &self.served else {
            return;
        };
        if let Some(e) = event {
            self.watcher.saw(e);
        }
        if handoff.wanted() {
            handoff.publish(self.watcher.view(peer, now, &stats.counts()));
        }
    }
}

/// What the loop counts between snapshots.
#[derive(Debug, Default)]
pub struct PeerWatcher {
    counts: PeerCounts,
}

impl PeerWatcher {
    pub fn saw(&mut self, event: &Event) {
        let c = &mut self.counts;
        match event {
            Event::Verified { .. } => c.chunks_verified += 1,
            Event::Mismatch { .. } => c.hash_mismatches += 1,
            Event::Served { .. } => c.chunks_served += 1,
            Event::Waiting { .. } => c.download_waits += 1,
            Event::HolderLost { reason, .. } => match reason.as_str() {
                "timed out" => c.holders_timed_out += 1,
                "connection closed" => c.holders_closed += 1,
                _ => c.holders_unreachable += 1,
            },
            _ => {}
        }
    }

    pub fn view(&self, peer: &Peer, now: Timestamp, conns: &DriverCounts) -> PeerView {
        PeerView {
            uptime_s: now.as_ms() as f64 / 1000.0,
            counts: PeerCounts {
                duplicate_bytes: peer.duplicate_bytes(),
                ..self.counts.clone()
            },
            upload_slots: peer.upload_slots(),
            upload_slots_in_use: peer.upload_slots_in_use(now),
            fetchers_waiting: peer.fetchers_waiting(),
            downloading: peer.is_downloading(),
            connections_open: conns.open,
            traffic: (conns.traffic.iter())
                .map(|(remote, t)| RemoteTraffic {
                    remote: *remote,
                    up: t.up,
                    down: t.down,
                })
                .collect(),
        }
    }
}

impl View for PeerView {
    const API: &'static str = "/api/peer";
    const PAGE: Option<&'static str> = None;

    fn metrics(&self) -> String {
        let c = &self.counts;
        let mut m = Metrics::new("drizzle_peer");
        m.counter(
            "chunks_verified",
            "Chunks received and verified",
            c.chunks_verified,
        );
        m.counter(
            "hash_mismatches",
            "Chunks received that failed verification",
            c.hash_mismatches,
        );
        let help = "Bytes of chunks received after another copy of them";
        m.counter("duplicate_bytes", help, c.duplicate_bytes);
        m.counter(
            "chunks_served",
            "Chunks served to other peers",
            c.chunks_served,
        );
        let help = "Times a download waited with nothing arriving";
        m.counter("download_waits", help, c.download_waits);
        let lost = [
            ("timed_out", c.holders_timed_out),
            ("closed", c.holders_closed),
            ("unreachable", c.holders_unreachable),
        ];
        let help = "Holders given up for a while, by reason";
        m.counters_by("holder_stalls", help, "reason", lost);
        let help = "Upload slots open (more on a long path)";
        m.gauge("upload_slots", help, self.upload_slots as u64);
        let slots = self.upload_slots_in_use as u64;
        m.gauge(
            "upload_slots_in_use",
            "Upload slots serving a fetcher",
            slots,
        );
        let waiting = self.fetchers_waiting as u64;
        m.gauge(
            "fetchers_waiting",
            "Fetchers waiting for an upload slot",
            waiting,
        );
        m.gauge(
            "connections_open",
            "Connections open",
            self.connections_open,
        );
        m.gauge(
            "uptime_seconds",
            "Seconds since the peer started",
            self.uptime_s as u64,
        );
        let sent = self.traffic.iter().map(|t| (t.remote, t.up));
        let received = self.traffic.iter().map(|t| (t.remote, t.down));
        m.counters_by(
            "bytes_sent",
            "Bytes sent, by remote address",
            "remote",
            sent,
        );
        m.counters_by(
            "bytes_received",
            "Bytes received, by remote address",
            "remote",
            received,
        );
        m.render()
    }
}
