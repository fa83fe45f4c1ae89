//! What a tracker shows its operator: files with how many peers hold each chunk, peers with
//! what they hold and when they were last heard, rates and counters, the last events. Built
//! on the loop from the tracker's state (`TrackerView::of`), served as `/api/swarm`, as
//! `/metrics`, and drawn by the page (`page.html`) and `drizzle status`.

use super::metrics::Metrics;
use super::server::View;
use drizzle_core::wire::FileSummary;
use drizzle_core::{Event, Root, Timestamp, Tracker, TrackerCounters};
use drizzle_mio::DriverCounts;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;

/// Files and peers listed at most (the counts say how many were left out): the view's
/// cost stays bounded however big the swarm.
const MAX_FILES_SHOWN: usize = 1000;
const MAX_PEERS_SHOWN: usize = 2000;
/// Events kept for the view.
const RECENT_EVENTS: usize = 50;

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TrackerView {
    pub uptime_s: f64,
    pub peers_online: usize,
    pub files_total: usize,
    pub counters: TrackerCounters,
    pub connections: Connections,
    pub rates: Rates,
    /// Files with at least one holder, in name order.
    pub files: Vec<FileView>,
    /// Registered peers, in address order.
    pub peers: Vec<PeerEntry>,
    pub peers_left_out: usize,
    /// Newest last.
    pub events: Vec<Recent>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Connections {
    pub open: u64,
    pub accepted: u64,
    pub refused_too_many_open: u64,
    pub refused_too_many_from_address: u64,
}

/// Per second, over the time since the previous snapshot (at least a second).
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize)]
pub struct Rates {
    pub registers_per_s: f64,
    pub chunks_registered_per_s: f64,
    pub locates_per_s: f64,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct FileView {
    pub name: String,
    pub size: u64,
    pub chunk_size: u32,
    pub chunks: u32,
    pub root: String,
    /// Peers holding some chunk of it.
    pub holders: u32,
    /// Peers holding all of it.
    pub complete: u32,
    /// For each chunk, how many peers hold it.
    pub holders_per_chunk: Vec<u32>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PeerEntry {
    pub addr: SocketAddr,
    pub last_seen_s: f64,
    /// (index into `files`, chunks of it held), for the files it holds or has located.
    pub held: Vec<(usize, u32)>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Recent {
    pub at_s: f64,
    pub text: String,
}

/// What the loop keeps between snapshots: the last events, the counters of the last rate
/// sample.
#[derive(Debug, Default)]
pub struct TrackerWatcher {
    events: VecDeque<Recent>,
    sample: Option<(Timestamp, TrackerCounters)>,
    rates: Rates,
}

impl TrackerWatcher {
    pub fn saw(&mut self, now: Timestamp, event: &Event) {
        if self.events.len() == RECENT_EVENTS {
            self.events.pop_front();
        }
        let at_s = secs(now.as_ms());
        self.events.push_back(Recent {
            at_s,
            text: event.to_string(),
        });
    }

    /// The tracker as it is at `now`.
    pub fn view(&self, tracker: &Tracker, now: Timestamp, conns: &DriverCounts) -> TrackerView {
        let counters = tracker.counters().clone();
        let summaries = tracker.files();
        let (files, peers) = files_and_peers(tracker, &summaries, now);
        let peers_online = tracker.peers().count();
        TrackerView {
            uptime_s: secs(now.as_ms()),
            peers_online,
            files_total: summaries.len(),
            counters,
            connections: Connections {
                open: conns.open,
                accepted: conns.accepted,
                refused_too_many_open: conns.refused_full,
                refused_too_many_from_address: conns.refused_per_address,
            },
            rates: self.rates,
            files,
            peers_left_out: peers_online.saturating_sub(peers.len()),
            peers,
            events: self.events.iter().cloned().collect(),
        }
    }

    /// Samples the counters once a second (called on every loop turn; the rates are over
    /// the last whole second, whether anyone is looking or not).
    pub fn turn(&mut self, now: Timestamp, counters: &TrackerCounters) {
        let Some((then, before)) = &self.sample else {
            self.sample = Some((now, counters.clone()));
            return;
        };
        let ms = now.since_ms(*then);
        if ms < 1000 {
            return;
        }
        let per_s = |a: u64, b: u64| a.saturating_sub(b) as f64 * 1000.0 / ms as f64;
        self.rates = Rates {
            registers_per_s: per_s(counters.registers, before.registers),
            chunks_registered_per_s: per_s(counters.chunks_registered, before.chunks_registered),
            locates_per_s: per_s(counters.locates, before.locates),
        };
        self.sample = Some((now, counters.clone()));
    }
}

fn secs(ms: u64) -> f64 {
    ms as f64 / 1000.0
}

/// The files (each chunk's holders counted) and the peers (what each holds of them).
fn files_and_peers(
    tracker: &Tracker,
    summaries: &[FileSummary],
    now: Timestamp,
) -> (Vec<FileView>, Vec<PeerEntry>) {
    let summaries = summaries.get(..MAX_FILES_SHOWN).unwrap_or(summaries);
    // A content may be listed under several names: each name shows it.
    let mut by_root: BTreeMap<Root, Vec<usize>> = BTreeMap::new();
    for (i, f) in summaries.iter().enumerate() {
        by_root.entry(f.root).or_default().push(i);
    }
    let mut files: Vec<FileView> = (summaries.iter())
        .map(|f| FileView {
            name: f.name.as_str().to_string(),
            size: f.size,
            chunk_size: f.chunk_size,
            chunks: f.chunks,
            root: f.root.to_hex(),
            holders: f.peers,
            complete: 0,
            holders_per_chunk: vec![0; f.chunks as usize],
        })
        .collect();
    let mut peers: BTreeMap<SocketAddr, PeerEntry> = (tracker.peers().take(MAX_PEERS_SHOWN))
        .map(|(s, heard)| {
            // What it seeks counts from nothing until it holds a chunk of it.
            let seeking = (s.located())
                .filter_map(|root| by_root.get(root))
                .flat_map(|indices| indices.iter().map(|&i| (i, 0)));
            let entry = PeerEntry {
                addr: s.listen(),
                last_seen_s: secs(now.since_ms(heard)),
                held: seeking.collect(),
            };
            (s.listen(), entry)
        })
        .collect();
    for (session, root, have) in tracker.holdings_by_ref() {
        let Some(indices) = by_root.get(root) else {
            continue;
        };
        let count = have.count();
        for &i in indices {
            let Some(file) = files.get_mut(i) else {
                continue;
            };
            for chunk in have.iter() {
                if let Some(n) = file.holders_per_chunk.get_mut(chunk as usize) {
                    *n += 1;
                }
            }
            file.complete += u32::from(count == file.chunks && count > 0);
            if let Some(peer) = peers.get_mut(&session.listen()) {
                match peer.held.iter_mut().find(|(file, _)| *file == i) {
                    Some(seeking) => seeking.1 = count,
                    None => peer.held.push((i, count)),
                }
            }
        }
    }
    (files, peers.into_values().collect())
}

impl View for TrackerView {
    const API: &'static str = "/api/swarm";
    const PAGE: Option<&'static str> = Some(include_str!("page.html"));

    fn metrics(&self) -> String {
        let (c, conns) = (&self.counters, &self.connections);
        let held: u64 = (self.files.iter())
            .flat_map(|f| &f.holders_per_chunk)
            .map(|n| u64::from(*n))
            .sum();
        let mut m = Metrics::new("drizzle_tracker");
        m.gauge(
            "peers",
            "Peers with a session open",
            self.peers_online as u64,
        );
        m.gauge(
            "files",
            "Files with at least one holder",
            self.files_total as u64,
        );
        m.gauge("chunks_held", "(Peer, chunk) holdings recorded", held);
        m.gauge(
            "uptime_seconds",
            "Seconds since the tracker started",
            self.uptime_s as u64,
        );
        m.gauge("connections_open", "Connections open", conns.open);
        let holders = (self.files.iter()).map(|f| (&f.name, u64::from(f.holders)));
        m.gauges_by(
            "file_holders",
            "Peers holding some chunk of the file",
            "file",
            holders,
        );
        m.counter("registers", "Register messages handled", c.registers);
        m.counter(
            "files_refused",
            "Files a register offered that were refused",
            c.files_refused,
        );
        m.counter(
            "chunks_registered",
            "Chunks newly recorded as held",
            c.chunks_registered,
        );
        m.counter("locates", "Locate requests answered", c.locates);
        m.counter("file_lists", "File-list pages answered", c.file_lists);
        m.counter(
            "bad_holder_reports",
            "Bad-holder reports counted",
            c.reports,
        );
        m.counter(
            "introductions",
            "Seekers an idle holder was introduced to",
            c.introductions,
        );
        m.counter(
            "answer_bytes",
            "Bytes of messages sent, before encryption",
            c.answer_bytes,
        );
        m.counter(
            "connections_accepted",
            "Connections accepted",
            conns.accepted,
        );
        let refused = [
            ("too_many_open", conns.refused_too_many_open),
            ("too_many_from_address", conns.refused_too_many_from_address),
            ("protocol_violation", c.closed_violation),
            ("timed_out", c.closed_timeout),
            ("unauthorised", c.closed_unauthorised),
        ];
        let help = "Connections refused or closed by the tracker, by reason";
        m.counters_by("connections_refused", help, "reason", refused);
        m.render()
    }
}
