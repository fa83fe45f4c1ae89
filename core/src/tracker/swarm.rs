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
    /// The holders that can serve something (`serves`), in session order: kept beside
    /// `holders` so that a locate draws a few of thousands without walking them all.
    serving: Vec<ConnId>,
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
            serving: Vec::new(),
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
        let added = chunks.into_iter().filter(|c| held.insert(*c)).count() as u64;
        if serves(held, count) {
            if let Err(at) = self.serving.binary_search(&conn) {
                self.serving.insert(at, conn);
            }
        }
        added
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
        if let Ok(at) = self.serving.binary_search(&conn) {
            self.serving.remove(at);
        }
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
    /// `serves`); a seeker holding none may be introduced as a neighbour.
    pub(super) fn holds_some(&self, conn: &ConnId) -> bool {
        self.holders.get(conn).is_some_and(|h| !h.is_empty())
    }

    /// How many holders can serve something (see `serves`).
    pub(super) fn serving_count(&self) -> usize {
        self.serving.len()
    }

    /// Up to `n` of the holders that can serve something, other than `excluded`, drawn at
    /// random without repeats, in session order, with what each holds — all of them when
    /// there are no more than `n`. The draw is of positions among those holders, so it
    /// costs `n` lookups however many there are.
    pub(super) fn draw_holders(
        &self,
        excluded: &BTreeSet<ConnId>,
        n: usize,
        rng: &mut ChaCha8Rng,
    ) -> Vec<(ConnId, &ChunkSet)> {
        // In session order, as `excluded` is: ascending positions.
        let skipped: Vec<usize> = (excluded.iter())
            .filter_map(|c| self.serving.binary_search(c).ok())
            .collect();
        let count = self.serving.len() - skipped.len();
        let picked: Vec<usize> = if count > n {
            let mut idx = rand::seq::index::sample(rng, count, n).into_vec();
            idx.sort_unstable();
            idx
        } else {
            (0..count).collect()
        };
        (picked.into_iter())
            .filter_map(|i| {
                let conn = self.serving.get(position_past(i, &skipped))?;
                Some((*conn, self.holders.get(conn)?))
            })
            .collect()
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

/// Whether a peer holding `have` of a file in `chunk_count` chunks can serve anything
/// (everyone holds an empty file).
fn serves(have: &ChunkSet, chunk_count: u32) -> bool {
    !have.is_empty() || chunk_count == 0
}

/// The position of the `i`-th element of a list once the elements at `skipped` (ascending
/// positions) are taken out, in the list before they were.
fn position_past(i: usize, skipped: &[usize]) -> usize {
    let mut at = i;
    for s in skipped {
        if *s > at {
            break;
        }
        at += 1;
    }
    at
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

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    /// The draw is the one a walk over every holder would make: the same holders, in the
    /// same order, for the same random numbers — with holders that hold nothing, holders
    /// gone again and excluded ones (some not holders at all) among them.
    #[test]
    fn draw_holders_matches_a_walk_over_all_holders() {
        for seed in 0..200u64 {
            let mut rng = ChaCha8Rng::seed_from_u64(seed);
            let chunks = rng.gen_range(0..4u32);
            let data = vec![7u8; chunks as usize * 64];
            let mut swarm = Swarm::new(Manifest::from_bytes(&data, 64).unwrap());
            let conn = |n: u64| ConnId::Inbound(n);
            for _ in 0..rng.gen_range(0..120) {
                let c = conn(rng.gen_range(0..80));
                match rng.gen_range(0..5) {
                    0 => swarm.drop_holder(c, Timestamp::ZERO),
                    1 => _ = swarm.hold(c, []),
                    _ if chunks > 0 => _ = swarm.hold(c, [rng.gen_range(0..chunks)]),
                    _ => _ = swarm.hold(c, []),
                }
            }
            let excluded: BTreeSet<ConnId> = (0..rng.gen_range(0..6))
                .map(|_| conn(rng.gen_range(0..80)))
                .collect();
            let n = rng.gen_range(0..30);
            let walk: Vec<(ConnId, &ChunkSet)> = (swarm.holders.iter())
                .filter(|(c, have)| serves(have, chunks) && !excluded.contains(c))
                .map(|(c, have)| (*c, have))
                .collect();
            let mut want_rng = ChaCha8Rng::seed_from_u64(seed);
            let want: Vec<(ConnId, &ChunkSet)> = if walk.len() > n {
                let mut idx = rand::seq::index::sample(&mut want_rng, walk.len(), n).into_vec();
                idx.sort_unstable();
                idx.into_iter()
                    .filter_map(|i| walk.get(i).copied())
                    .collect()
            } else {
                walk.clone()
            };
            let mut got_rng = ChaCha8Rng::seed_from_u64(seed);
            let got = swarm.draw_holders(&excluded, n, &mut got_rng);
            assert_eq!(got, want, "seed {seed}");
            assert_eq!(
                swarm.serving_count(),
                (swarm.holders.values())
                    .filter(|h| serves(h, chunks))
                    .count(),
                "seed {seed}"
            );
        }
    }
}
