//! One file's swarm at the tracker: its manifest, who holds which chunks, who seeks it (to
//! introduce idle holders to), and the bad-holder reports that can suspend a holder — never
//! the last source of a chunk.

use super::Session;
use crate::chunkset::ChunkSet;
use crate::limits::{MAX_REPORTERS_PER_HOLDER, REPORTERS_TO_SUSPEND, REPORT_TTL_MS, SEEKER_DRAWS};
use crate::machine::ConnId;
use crate::manifest::Manifest;
use crate::time::Timestamp;
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

/// Everything known about one content root.
#[derive(Debug)]
pub(super) struct Swarm {
    manifest: Manifest,
    holders: BTreeMap<ConnId, ChunkSet>,
    /// Sessions that located the file and may still lack chunks of it: whom an idle holder
    /// is introduced to. A list to draw from at random, and a set to keep it free of
    /// duplicates; sessions that left or completed are dropped when drawn.
    seekers: Vec<ConnId>,
    seeking: BTreeSet<ConnId>,
    /// Since when nobody holds it. Kept a while (holders may be reconnecting), then
    /// forgotten with its name, so departed sessions leave nothing behind for long.
    orphaned_since: Option<Timestamp>,
    /// Holders reported as failing fetchers of this file: by which IP address, when.
    /// Dropped with the holder; a report counts for `REPORT_TTL_MS`.
    reports: BTreeMap<ConnId, BTreeMap<IpAddr, Timestamp>>,
}

impl Swarm {
    pub(super) fn new(manifest: Manifest) -> Swarm {
        Swarm {
            manifest,
            holders: BTreeMap::new(),
            seekers: Vec::new(),
            seeking: BTreeSet::new(),
            orphaned_since: None,
            reports: BTreeMap::new(),
        }
    }

    pub(super) fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// Who holds which chunks, by session.
    pub(super) fn holders(&self) -> &BTreeMap<ConnId, ChunkSet> {
        &self.holders
    }

    /// Since when nobody holds the file, if nobody does.
    pub(super) fn orphaned_since(&self) -> Option<Timestamp> {
        self.orphaned_since
    }

    /// `conn` holds `chunks` (which must be in the file), besides what it held before:
    /// how many it did not hold before.
    pub(super) fn hold(&mut self, conn: ConnId, chunks: impl IntoIterator<Item = u32>) -> u64 {
        self.orphaned_since = None;
        let count = self.manifest.chunk_count();
        let held = self
            .holders
            .entry(conn)
            .or_insert_with(|| ChunkSet::empty(count));
        chunks.into_iter().filter(|c| held.insert(*c)).count() as u64
    }

    /// `conn` located the file: an idle holder may be introduced to it.
    pub(super) fn seek(&mut self, conn: ConnId) {
        if self.seeking.insert(conn) {
            self.seekers.push(conn);
        }
    }

    /// `conn` holds the file no more (it unshared or left), with the reports about it; the
    /// file is orphaned from `now` when nobody is left.
    pub(super) fn drop_holder(&mut self, conn: ConnId, now: Timestamp) {
        self.holders.remove(&conn);
        self.reports.remove(&conn);
        if self.holders.is_empty() {
            self.orphaned_since = Some(now);
        }
    }

    /// A report on holder `reported` from the address `ip` at `now` (the first of up to
    /// `MAX_REPORTERS_PER_HOLDER` addresses counts; repeats refresh): how many addresses
    /// now report it, or `None` if the report was not counted.
    pub(super) fn report(&mut self, reported: ConnId, ip: IpAddr, now: Timestamp) -> Option<u32> {
        let reports = self.reports.entry(reported).or_default();
        reports.retain(|_, at| now.since_ms(*at) < REPORT_TTL_MS);
        if reports.len() >= MAX_REPORTERS_PER_HOLDER && !reports.contains_key(&ip) {
            return None;
        }
        reports.insert(ip, now);
        Some(reports.len() as u32)
    }

    /// Whether `conn` holds some chunk of the file (not whether it counts as a holder: see
    /// `is_holder`); a seeker holding none may be introduced as a neighbour.
    pub(super) fn holds_some(&self, conn: &ConnId) -> bool {
        self.holders.get(conn).is_some_and(|h| !h.is_empty())
    }

    /// Whether a peer with these chunks can serve anything (everyone holds an empty file).
    pub(super) fn is_holder(&self, have: &ChunkSet) -> bool {
        !have.is_empty() || self.manifest.chunk_count() == 0
    }

    /// The addresses whose reports on `holder` still count.
    pub(super) fn reporters(
        &self,
        holder: ConnId,
        now: Timestamp,
    ) -> impl Iterator<Item = IpAddr> + '_ {
        let live = move |(ip, at): (&IpAddr, &Timestamp)| {
            (now.since_ms(*at) < REPORT_TTL_MS).then_some(*ip)
        };
        self.reports
            .get(&holder)
            .into_iter()
            .flat_map(move |r| r.iter().filter_map(live))
    }

    /// Whether `holder` is reported by `REPORTERS_TO_SUSPEND` addresses: not handed out.
    pub(super) fn suspended(&self, holder: ConnId, now: Timestamp) -> bool {
        let mut reporters = self.reporters(holder, now);
        reporters.nth(REPORTERS_TO_SUSPEND - 1).is_some()
    }

    /// Holders not to hand `asker` (its session, its address): the suspended ones, except
    /// those offering a chunk that neither the asker nor any holder it can rely on has (one
    /// neither suspended nor reported from the asker's address). So reports steer fetchers
    /// away from a holder but never make a chunk unavailable; and a fetcher's own reports
    /// only tell the tracker whom it cannot count on — whom to avoid, it decides itself.
    pub(super) fn withheld(
        &self,
        asker: ConnId,
        ip: Option<IpAddr>,
        now: Timestamp,
    ) -> BTreeSet<ConnId> {
        let suspended: BTreeSet<ConnId> = (self.reports.keys().copied())
            .filter(|c| self.suspended(*c, now))
            .collect();
        if suspended.is_empty() || self.manifest.chunk_count() == 0 {
            return BTreeSet::new();
        }
        let doubted_by_asker =
            |c: &ConnId| ip.is_some_and(|ip| self.reporters(*c, now).any(|r| r == ip));
        let mut offered = ChunkSet::empty(self.manifest.chunk_count());
        for (conn, have) in &self.holders {
            if *conn == asker || !(suspended.contains(conn) || doubted_by_asker(conn)) {
                offered.add_all(have);
            }
        }
        suspended
            .into_iter()
            .filter(|c| self.holders.get(c).is_some_and(|h| h.is_subset(&offered)))
            .collect()
    }
}

/// Up to `n` seekers of `swarm` other than `conn` that hold nothing of it yet, drawn at
/// random (`SEEKER_DRAWS` draws for each): neighbours to connect before either has a chunk
/// to ask for.
pub(super) fn draw_neighbours(
    swarm: &Swarm,
    sessions: &BTreeMap<ConnId, Session>,
    conn: ConnId,
    n: usize,
    rng: &mut ChaCha8Rng,
) -> Vec<ConnId> {
    let mut drawn = Vec::new();
    for _ in 0..SEEKER_DRAWS.saturating_mul(n) {
        if drawn.len() >= n || swarm.seekers.is_empty() {
            break;
        }
        let Some(seeker) = swarm.seekers.get(rng.gen_range(0..swarm.seekers.len())) else {
            break;
        };
        let fits = *seeker != conn && !swarm.holds_some(seeker) && !drawn.contains(seeker);
        if fits && sessions.contains_key(seeker) {
            drawn.push(*seeker);
        }
    }
    drawn
}

/// Draws a seeker of `swarm` (not `holder`, nor one in `skip`) lacking some chunk of
/// `have`, dropping those that left or completed; a few draws at most, so an idle report
/// costs little however many seekers have all the holder has.
pub(super) fn draw_seeker(
    swarm: &mut Swarm,
    sessions: &BTreeMap<ConnId, Session>,
    holder: ConnId,
    have: &ChunkSet,
    skip: &[ConnId],
    rng: &mut ChaCha8Rng,
) -> Option<ConnId> {
    for _ in 0..SEEKER_DRAWS {
        if swarm.seekers.is_empty() {
            return None;
        }
        let i = rng.gen_range(0..swarm.seekers.len());
        let seeker = *swarm.seekers.get(i)?;
        let theirs = swarm.holders.get(&seeker);
        let gone = !sessions.contains_key(&seeker) || theirs.is_some_and(ChunkSet::is_full);
        if gone {
            swarm.seekers.swap_remove(i);
            swarm.seeking.remove(&seeker);
            continue;
        }
        let lacks = theirs.is_none_or(|t| !have.is_subset(t));
        if seeker != holder && lacks && !skip.contains(&seeker) {
            return Some(seeker);
        }
    }
    None
}
