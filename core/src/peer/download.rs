//! One download's state once its manifest is known: what is wanted, held, in flight, who
//! holds what, and who proved bad. Deciding the next request and whether the download is
//! stuck are pure functions of this state (plus an RNG), so they are testable alone.

use super::check::DiskCheck;
use super::cooldown::Cooldowns;
use super::ledger::Asked;
use super::picker;
use crate::chunkset::ChunkSet;
use crate::limits::{
    FEW_HOLDERS, MAX_KNOWN_HOLDERS, MAX_REQUESTS_PER_DOWNLOAD, MAX_REQUESTS_PER_HOLDER,
    MAX_SHARED_REQUESTS_PER_DOWNLOAD, MAX_SHARED_REQUESTS_PER_HOLDER, REPORT_TTL_MS,
};
use crate::manifest::{Manifest, Root};
use crate::time::Timestamp;
use crate::wire::LocatedHolder;
use rand_chacha::ChaCha8Rng;
use std::cmp::Ordering;
use std::collections::{btree_map, BTreeMap, BTreeSet};
use std::iter::Peekable;
use std::net::SocketAddr;

/// A download that receives nothing says what it waits on this often.
pub(crate) const STALL_NOTE_EVERY_MS: u64 = 5_000;
/// A chunk may be requested from at most this many holders at once (endgame duplicates).
const MAX_COPIES_IN_FLIGHT: usize = 2;
/// Endgame starts when every missing chunk is in flight and at most this many are missing:
/// duplicating earlier would waste bandwidth on chunks that are merely queued.
const ENDGAME_MAX_MISSING: usize = 4;

#[derive(Debug)]
pub(crate) struct Active {
    pub root: Root,
    pub manifest: Manifest,
    /// Chunks the user asked for (all of them unless `--chunks`).
    pub want: ChunkSet,
    /// Verified and stored.
    pub have: ChunkSet,
    /// Verified, being written.
    pub storing: BTreeSet<u32>,
    /// Who holds what, as the tracker's samples said (changed only through methods, which
    /// keep `good_counts` true).
    holders: BTreeMap<SocketAddr, ChunkSet>,
    /// Holders that sent a chunk that failed verification: never asked again for this file.
    bad: BTreeSet<SocketAddr>,
    /// For each chunk, how many holders not known bad have it: its rarity, kept rather than
    /// counted because the picker weighs every missing chunk on every request.
    good_counts: Vec<u32>,
    /// Holders whose connection failed, unused until the time given.
    pub cooldown: Cooldowns,
    pub mismatched: BTreeSet<u32>,
    /// When a download that cannot progress gives up (armed while it waits).
    pub give_up_at: Option<Timestamp>,
    /// When a download whose remaining chunks have only bad holders is rejected (armed when
    /// that happens; a refreshed chunk map with a good holder disarms it).
    pub reject_at: Option<Timestamp>,
    pub next_refresh: Timestamp,
    /// The current wait between chunk-map refreshes (see `PeerConfig::refresh_min_ms`).
    pub refresh_ms: u64,
    pub committing: bool,
    /// Chunks found on disk still being checked (see `check`): not requested meanwhile.
    pub check: Option<DiskCheck>,
    /// When a chunk last arrived, or was found good on disk: a download that goes without
    /// for the stall timeout fails, whatever it is still waiting for.
    pub last_progress: Timestamp,
    /// When the user was last told what a download without progress waits on.
    pub stall_noted: Timestamp,
    /// Bytes fetched from holders (for the rate shown; chunks found on disk excluded).
    pub fetched: u64,
    /// Why each holder last failed us (refused, timed out, busy, bad data): named when the
    /// download stalls. Bounded like the chunk map.
    trouble: BTreeMap<SocketAddr, String>,
    /// When each holder was last reported to the tracker (see `may_report`).
    reported: BTreeMap<SocketAddr, Timestamp>,
}

/// The value at `key` of a map walked in ascending key order: skips what lies before `key`
/// and stops there. Asked about ascending keys only, a whole pass costs one walk of the
/// map instead of a search per key.
pub(super) fn seek<'a, K: Ord, V>(
    walk: &mut Peekable<btree_map::Iter<'a, K, V>>,
    key: &K,
) -> Option<&'a V> {
    // One comparison per step: the keys here are socket addresses, not cheap to compare.
    while let Some((k, v)) = walk.peek() {
        match (*k).cmp(key) {
            Ordering::Less => _ = walk.next(),
            Ordering::Equal => return Some(*v),
            Ordering::Greater => return None,
        }
    }
    None
}

/// What to do with a download that has nothing in flight.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Requests can still be made (or are being made).
    Proceed,
    /// Some wanted chunk is held only by holders that sent bad data: reject the file.
    Reject,
    /// Some wanted chunk has no usable holder now; wait for the chunk map to change.
    Wait,
}

impl Active {
    pub fn new(
        root: Root,
        manifest: Manifest,
        want: ChunkSet,
        have: ChunkSet,
        now: Timestamp,
    ) -> Active {
        let good_counts = vec![0; want.len() as usize];
        Active {
            root,
            manifest,
            want,
            have,
            storing: BTreeSet::new(),
            holders: BTreeMap::new(),
            bad: BTreeSet::new(),
            good_counts,
            cooldown: Cooldowns::default(),
            mismatched: BTreeSet::new(),
            give_up_at: None,
            reject_at: None,
            next_refresh: now,
            refresh_ms: 0,
            committing: false,
            check: None,
            last_progress: now,
            stall_noted: now,
            fetched: 0,
            trouble: BTreeMap::new(),
            reported: BTreeMap::new(),
        }
    }

    /// When to tell the user next what the download waits on, if nothing arrives first.
    pub fn stall_note_at(&self) -> Timestamp {
        self.last_progress
            .max(self.stall_noted)
            .plus_ms(STALL_NOTE_EVERY_MS)
    }

    /// A chunk arrived or was found good on disk.
    pub fn note_progress(&mut self, now: Timestamp) {
        self.last_progress = now;
    }

    /// Remembers why `holder` failed us last (kept for as many holders as the map keeps).
    pub fn note_trouble(&mut self, holder: SocketAddr, why: &str) {
        if self.trouble.len() < MAX_KNOWN_HOLDERS || self.trouble.contains_key(&holder) {
            self.trouble.insert(holder, why.to_string());
        }
    }

    /// Whether `holder` may be reported to the tracker now (and, if so, that it was): once
    /// for as long as the tracker keeps a report, so a failing holder costs the tracker one
    /// message per download, not one per failure. Bounded like the chunk map.
    pub fn may_report(&mut self, holder: SocketAddr, now: Timestamp) -> bool {
        let fresh = |at: &Timestamp| now.since_ms(*at) < REPORT_TTL_MS;
        if self.reported.get(&holder).is_some_and(fresh) {
            return false;
        }
        if self.reported.len() >= MAX_KNOWN_HOLDERS {
            self.reported.retain(|_, at| fresh(at));
        }
        if self.reported.len() >= MAX_KNOWN_HOLDERS && !self.reported.contains_key(&holder) {
            return false;
        }
        self.reported.insert(holder, now);
        true
    }

    /// What the download waits on, in one line: the missing chunks, and for their holders
    /// why each has not delivered (or that nobody holds them).
    pub fn waiting_on(&self) -> String {
        const SHOWN: usize = 8;
        let missing: Vec<u32> = self.missing().collect();
        let mut chunks: Vec<String> = missing.iter().take(SHOWN).map(u32::to_string).collect();
        if missing.len() > SHOWN {
            chunks.push(format!("… {} more", missing.len() - SHOWN));
        }
        // Those that have a missing chunk, and those that failed us (a holder that refused
        // a chunk is no longer listed for it until the next chunk map).
        let mut holders: BTreeSet<SocketAddr> = self.trouble.keys().copied().collect();
        for (addr, have) in &self.holders {
            if missing.iter().any(|c| have.contains(*c)) {
                holders.insert(*addr);
            }
        }
        let mut why: Vec<String> = holders
            .iter()
            .take(SHOWN)
            .map(|h| {
                let reason = if self.bad.contains(h) {
                    "sent bad data"
                } else {
                    self.trouble
                        .get(h)
                        .map_or("asked, no answer yet", String::as_str)
                };
                format!("{h}: {reason}")
            })
            .collect();
        if holders.len() > SHOWN {
            why.push(format!("… {} more holder(s)", holders.len() - SHOWN));
        }
        let who = if why.is_empty() {
            "no holder of them is known".to_string()
        } else {
            format!("holders: {}", why.join("; "))
        };
        format!(
            "{} chunk(s) missing ({}); {who}",
            missing.len(),
            chunks.join(", ")
        )
    }

    /// Replaces the chunk map with a fresh locate answer (bad marks and cooldowns stay).
    /// Whether it brought news: some holder has a chunk still missing that it did not
    /// have before.
    pub fn set_holders(&mut self, holders: Vec<LocatedHolder>) -> bool {
        self.merge_holders(holders, |_| false)
    }

    /// Like `set_holders`, but holders for which `keep` holds stay in the map even when
    /// the sample left them out (their chunk sets can only have grown since).
    pub fn merge_holders(
        &mut self,
        holders: Vec<LocatedHolder>,
        keep: impl Fn(SocketAddr) -> bool,
    ) -> bool {
        let count = self.manifest.chunk_count();
        let mut fresh: BTreeMap<SocketAddr, ChunkSet> = holders
            .into_iter()
            .filter(|h| h.have.len() == count && h.have.is_well_formed())
            .map(|h| (h.addr, h.have))
            .collect();
        let news = fresh.iter().any(|(addr, have)| {
            let before = self.holders.get(addr);
            self.missing()
                .any(|c| have.contains(c) && !before.is_some_and(|b| b.contains(c)))
        });
        for (addr, have) in std::mem::take(&mut self.holders) {
            if keep(addr) && !fresh.contains_key(&addr) {
                fresh.insert(addr, have);
            }
        }
        self.holders = fresh;
        self.recount();
        news
    }

    /// Counts `good_counts` afresh (after the map or the bad marks changed wholesale).
    fn recount(&mut self) {
        self.good_counts.fill(0);
        for (addr, have) in &self.holders {
            if !self.bad.contains(addr) {
                for c in have.iter() {
                    count_holder(&mut self.good_counts, c, true);
                }
            }
        }
    }

    /// Adds or updates one holder (an introduction); false if its chunk set does not fit
    /// the file, or the map is full.
    pub fn learn_holder(&mut self, holder: LocatedHolder) -> bool {
        let LocatedHolder { addr, have } = holder;
        let full = self.holders.len() >= MAX_KNOWN_HOLDERS && !self.holders.contains_key(&addr);
        if full || have.len() != self.manifest.chunk_count() || !have.is_well_formed() {
            return false;
        }
        let good = !self.bad.contains(&addr);
        if good {
            for c in have.iter() {
                count_holder(&mut self.good_counts, c, true);
            }
        }
        if let Some(before) = self.holders.insert(addr, have).filter(|_| good) {
            for c in before.iter() {
                count_holder(&mut self.good_counts, c, false);
            }
        }
        true
    }

    /// Requests one holder may have outstanding: with few holders a deep pipeline (nobody
    /// else could take the chunks, and depth hides latency), with many a shallow one, so
    /// that a chunk does not wait queued at one holder while another that frees a slot
    /// could send it at once.
    pub fn pipeline_depth(&self) -> usize {
        if self.holders.len() > FEW_HOLDERS {
            MAX_SHARED_REQUESTS_PER_HOLDER
        } else {
            MAX_REQUESTS_PER_HOLDER
        }
    }

    /// Requests this download may have outstanding in all: with few holders many (each
    /// holder's pipeline is deep), with many a few, so that chunks are not committed to
    /// holders long before they can arrive.
    pub fn request_budget(&self) -> usize {
        if self.holders.len() > FEW_HOLDERS {
            MAX_SHARED_REQUESTS_PER_DOWNLOAD
        } else {
            MAX_REQUESTS_PER_DOWNLOAD
        }
    }

    /// Whether another request may be made now, with `asked` in flight.
    pub fn may_request(&self, asked: &Asked) -> bool {
        !self.committing && asked.count() < self.request_budget()
    }

    /// Whether `addr` is in the chunk map.
    pub fn knows(&self, addr: SocketAddr) -> bool {
        self.holders.contains_key(&addr)
    }

    /// `holder`, in the map, says it now has `chunk` (which must be in the file); whether
    /// that is news.
    pub fn learn_chunk(&mut self, holder: SocketAddr, chunk: u32) -> bool {
        let Some(have) = self.holders.get_mut(&holder) else {
            return false;
        };
        if chunk >= have.len() || !have.insert(chunk) {
            return false;
        }
        if !self.bad.contains(&holder) {
            count_holder(&mut self.good_counts, chunk, true);
        }
        true
    }

    /// `holder` turned out not to have `chunk` after all.
    pub fn forget_chunk(&mut self, holder: SocketAddr, chunk: u32) {
        let counted = self.is_good_holder(holder, chunk);
        if let Some(have) = self.holders.get_mut(&holder) {
            have.remove(chunk);
        }
        if counted {
            count_holder(&mut self.good_counts, chunk, false);
        }
    }

    /// `holder` sent bad data: it is never asked again for this file.
    pub fn mark_bad(&mut self, holder: SocketAddr) {
        if self.bad.insert(holder) {
            self.recount();
        }
    }

    /// How many holders not known bad have `chunk`.
    pub fn good_holder_count(&self, chunk: u32) -> usize {
        self.good_counts
            .get(chunk as usize)
            .map_or(0, |n| *n as usize)
    }

    /// Whether `holder` has `chunk` and is not known bad.
    pub fn is_good_holder(&self, holder: SocketAddr, chunk: u32) -> bool {
        !self.bad.contains(&holder) && self.holders.get(&holder).is_some_and(|h| h.contains(chunk))
    }

    pub fn is_complete(&self) -> bool {
        self.want.is_subset(&self.have)
    }

    /// Wanted chunks neither held nor being stored nor waiting for their check on disk.
    fn missing(&self) -> impl Iterator<Item = u32> + '_ {
        self.want.iter().filter(|c| {
            !self.have.contains(*c) && !self.storing.contains(c) && !self.is_checking(*c)
        })
    }

    fn is_checking(&self, chunk: u32) -> bool {
        self.check.as_ref().is_some_and(|k| k.is_pending(chunk))
    }

    /// The chunks of `missing`, as a set.
    fn missing_set(&self) -> ChunkSet {
        let mut set = self.want.clone();
        set.remove_all(&self.have);
        self.storing.iter().for_each(|c| set.remove(*c));
        if self.check.is_some() {
            set = ChunkSet::from_indices(set.len(), set.iter().filter(|c| !self.is_checking(*c)));
        }
        set
    }

    /// Holders of `chunk` not known bad.
    fn good_holders(&self, chunk: u32) -> impl Iterator<Item = SocketAddr> + '_ {
        self.holders
            .iter()
            .filter(move |(addr, have)| have.contains(chunk) && !self.bad.contains(addr))
            .map(|(addr, _)| *addr)
    }

    fn cooling(&self, addr: SocketAddr, now: Timestamp) -> bool {
        self.cooldown.is_cooling(addr, now)
    }

    /// Whether some missing chunk has holders, all of them bad.
    fn hopeless(&self) -> bool {
        !self.mismatched.is_empty()
            && self.missing().any(|c| {
                self.good_holder_count(c) == 0 && self.holders.values().any(|h| h.contains(c))
            })
    }

    /// The next (chunk, holder) to request: the rarest missing chunk not in flight with a
    /// holder that has a free slot, then a random such holder; when every missing chunk is
    /// in flight (endgame), a straggler duplicated to another holder. It runs at least once
    /// per request, and most calls find nothing to ask, so holders with nothing wanted are
    /// passed over before the costlier slot check. `has_slot` is asked about holders in
    /// address order, so a caller can answer with [`seek`]; `only`, when given, lists (in
    /// address order) the only holders that may have a slot, and the rest are not visited.
    pub fn next_request(
        &self,
        asked: &Asked,
        now: Timestamp,
        only: Option<&mut dyn Iterator<Item = SocketAddr>>,
        has_slot: &mut dyn FnMut(SocketAddr) -> bool,
        rng: &mut ChaCha8Rng,
    ) -> Option<(u32, SocketAddr)> {
        if self.hopeless() {
            return None;
        }
        let endgame = self.in_endgame(asked);
        // What a request could be for: chunks nobody was asked for, or in the endgame
        // (where every missing chunk is in flight) stragglers.
        let mut wanted = self.missing_set();
        if !endgame {
            asked.chunks().for_each(|c| wanted.remove(c));
        }
        if wanted.is_empty() {
            return None;
        }
        // The holders, `only` and the cooldowns are all in address order: merged passes.
        let mut holders = self.holders.iter().peekable();
        let candidates: Box<dyn Iterator<Item = (SocketAddr, &ChunkSet)>> = match only {
            Some(only) => Box::new(only.filter_map(move |a| Some((a, seek(&mut holders, &a)?)))),
            None => Box::new(holders.map(|(addr, have)| (*addr, have))),
        };
        let mut cooldowns = self.cooldown.by_addr().peekable();
        let ready: Vec<(SocketAddr, &ChunkSet)> = candidates
            .filter(|(addr, have)| {
                let cooling = seek(&mut cooldowns, addr).is_some_and(|until| *until > now);
                !cooling && have.intersects(&wanted) && !self.bad.contains(addr) && has_slot(*addr)
            })
            .collect();
        if ready.is_empty() {
            return None;
        }
        let rarity = |c: u32| self.good_holder_count(c);
        let ready_for = |c: u32| {
            let asked = asked.holders(c);
            ready
                .iter()
                .filter(move |(addr, have)| have.contains(c) && !asked.contains(addr))
                .map(|(addr, _)| *addr)
        };
        let chunk = if endgame {
            let stragglers = wanted
                .iter()
                .filter(|c| asked.holders(*c).len() < MAX_COPIES_IN_FLIGHT)
                .filter(|c| ready_for(*c).next().is_some());
            picker::rarest(stragglers.map(|c| (c, rarity(c))), rng)?
        } else {
            // A chunk nobody was asked for has a ready holder if any ready holder has it.
            let mut offered = ChunkSet::empty(self.want.len());
            for (_, have) in &ready {
                offered.add_all(have);
            }
            let fresh = wanted.iter().filter(|c| offered.contains(*c));
            picker::rarest(fresh.map(|c| (c, rarity(c))), rng)?
        };
        let holders: Vec<SocketAddr> = ready_for(chunk).collect();
        let holder = picker::random_holder(&holders, rng)?;
        Some((chunk, holder))
    }

    /// Every missing chunk is in flight and few are missing: duplicating now costs little
    /// and saves waiting on the slowest holder.
    fn in_endgame(&self, asked: &Asked) -> bool {
        let mut missing = 0;
        for c in self.missing() {
            missing += 1;
            if missing > ENDGAME_MAX_MISSING || !asked.contains(c) {
                return false;
            }
        }
        true
    }

    /// Judges a download with nothing in flight and nothing being stored.
    pub fn verdict(&self, now: Timestamp) -> Verdict {
        if self.hopeless() {
            return Verdict::Reject;
        }
        let blocked = self
            .missing()
            .any(|c| self.good_holders(c).all(|a| self.cooling(a, now)));
        if blocked {
            Verdict::Wait
        } else {
            Verdict::Proceed
        }
    }
}

/// One more (`more`) or one fewer good holder of `chunk` in `counts`.
fn count_holder(counts: &mut [u32], chunk: u32, more: bool) {
    if let Some(n) = counts.get_mut(chunk as usize) {
        *n = if more {
            n.saturating_add(1)
        } else {
            n.saturating_sub(1)
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn addr(n: u8) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, n], 7000))
    }

    fn active(chunks: u32, holders: &[(u8, &[u32])]) -> Active {
        let manifest = Manifest {
            size: u64::from(chunks) * 64,
            chunk_size: 64,
            hashes: vec![[0; 32]; chunks as usize],
        };
        let mut a = Active::new(
            manifest.root(),
            manifest,
            ChunkSet::full(chunks),
            ChunkSet::empty(chunks),
            Timestamp::ZERO,
        );
        a.set_holders(
            holders
                .iter()
                .map(|(n, have)| LocatedHolder {
                    addr: addr(*n),
                    have: ChunkSet::from_indices(chunks, have.iter().copied()),
                })
                .collect(),
        );
        a
    }

    #[test]
    fn rare_chunks_come_first() {
        let a = active(4, &[(1, &[0, 1, 2, 3]), (2, &[1, 3])]);
        let mut rng = ChaCha8Rng::seed_from_u64(0);
        let (chunk, holder) = a
            .next_request(
                &Asked::default(),
                Timestamp::ZERO,
                None,
                &mut |_| true,
                &mut rng,
            )
            .unwrap();
        assert!(chunk == 0 || chunk == 2);
        assert_eq!(holder, addr(1));
    }

    #[test]
    fn with_only_some_holders_listed_the_others_are_not_asked() {
        let a = active(2, &[(1, &[0, 1]), (2, &[0, 1]), (3, &[0, 1])]);
        let mut rng = ChaCha8Rng::seed_from_u64(0);
        for _ in 0..20 {
            let mut asked = Vec::new();
            let mut only = [addr(2), addr(4)].into_iter();
            let next = a.next_request(
                &Asked::default(),
                Timestamp::ZERO,
                Some(&mut only),
                &mut |h| {
                    asked.push(h);
                    true
                },
                &mut rng,
            );
            assert_eq!(next.map(|(_, h)| h), Some(addr(2)));
            assert_eq!(
                asked,
                vec![addr(2)],
                "an unknown listed holder is skipped too"
            );
        }
    }

    #[test]
    fn verified_chunks_are_never_requested_again() {
        let mut a = active(2, &[(1, &[0, 1]), (2, &[0, 1])]);
        a.have.insert(0);
        let asked = Asked::with([(1, vec![addr(1)])]);
        let mut rng = ChaCha8Rng::seed_from_u64(0);
        for _ in 0..20 {
            let next = a.next_request(&asked, Timestamp::ZERO, None, &mut |_| true, &mut rng);
            assert_eq!(next, Some((1, addr(2))));
        }
    }

    #[test]
    fn endgame_duplicates_to_another_holder() {
        let a = active(1, &[(1, &[0]), (2, &[0])]);
        let asked = Asked::with([(0, vec![addr(1)])]);
        let mut rng = ChaCha8Rng::seed_from_u64(0);
        let next = a.next_request(&asked, Timestamp::ZERO, None, &mut |_| true, &mut rng);
        assert_eq!(next, Some((0, addr(2))));
        let asked = Asked::with([(0, vec![addr(1), addr(2)])]);
        assert_eq!(
            a.next_request(&asked, Timestamp::ZERO, None, &mut |_| true, &mut rng),
            None
        );
    }

    #[test]
    fn only_bad_holders_means_reject() {
        let mut a = active(2, &[(1, &[0, 1])]);
        a.mark_bad(addr(1));
        a.mismatched.insert(0);
        assert_eq!(a.verdict(Timestamp::ZERO), Verdict::Reject);
        let mut rng = ChaCha8Rng::seed_from_u64(0);
        assert_eq!(
            a.next_request(
                &Asked::default(),
                Timestamp::ZERO,
                None,
                &mut |_| true,
                &mut rng
            ),
            None
        );
    }

    #[test]
    fn connected_holders_outlive_a_sample_that_left_them_out() {
        let mut a = active(2, &[(1, &[0]), (2, &[1])]);
        let sample = vec![LocatedHolder {
            addr: addr(3),
            have: ChunkSet::from_indices(2, [0, 1]),
        }];
        a.merge_holders(sample, |h| h == addr(1));
        let known: Vec<SocketAddr> = a.holders.keys().copied().collect();
        assert_eq!(known, vec![addr(1), addr(3)]);
    }

    #[test]
    fn kept_rarity_matches_a_count_of_good_holders() {
        let mut a = active(3, &[(1, &[0, 1]), (2, &[1, 2]), (3, &[1])]);
        let counted = |a: &Active| {
            (0..3)
                .map(|c| a.good_holders(c).count())
                .collect::<Vec<_>>()
        };
        let kept = |a: &Active| (0..3).map(|c| a.good_holder_count(c)).collect::<Vec<_>>();
        assert_eq!(kept(&a), vec![1, 3, 1]);
        a.forget_chunk(addr(3), 1);
        a.forget_chunk(addr(3), 1);
        assert_eq!(kept(&a), counted(&a));
        a.mark_bad(addr(2));
        assert_eq!(kept(&a), vec![1, 1, 0]);
        a.forget_chunk(addr(2), 2);
        a.merge_holders(vec![], |h| h != addr(1));
        assert_eq!((kept(&a), counted(&a)), (vec![0, 0, 0], vec![0, 0, 0]));
    }

    /// The picker as first written: every holder visited, rarity counted per chunk. The
    /// kept counts and early exits of `next_request` must not change a single choice or
    /// random draw (the simulator's reports depend on both).
    fn reference_pick(
        a: &Active,
        in_flight: &Asked,
        now: Timestamp,
        only: Option<&[SocketAddr]>,
        has_slot: &dyn Fn(SocketAddr) -> bool,
        rng: &mut ChaCha8Rng,
    ) -> Option<(u32, SocketAddr)> {
        let missing: Vec<u32> = a
            .want
            .iter()
            .filter(|c| !a.have.contains(*c) && !a.storing.contains(c))
            .collect();
        let good: Vec<(SocketAddr, &ChunkSet)> = a
            .holders
            .iter()
            .filter(|(addr, _)| !a.bad.contains(addr))
            .map(|(addr, have)| (*addr, have))
            .collect();
        let rarity = |c: u32| good.iter().filter(|(_, h)| h.contains(c)).count();
        let hopeless = !a.mismatched.is_empty()
            && missing
                .iter()
                .any(|c| rarity(*c) == 0 && a.holders.values().any(|h| h.contains(*c)));
        if hopeless {
            return None;
        }
        let ready: Vec<(SocketAddr, &ChunkSet)> = good
            .iter()
            .filter(|(addr, _)| {
                !a.cooling(*addr, now) && only.is_none_or(|o| o.contains(addr)) && has_slot(*addr)
            })
            .copied()
            .collect();
        let asked = |c: u32| in_flight.holders(c).to_vec();
        let ready_for = |c: u32| -> Vec<SocketAddr> {
            let asked = asked(c);
            ready
                .iter()
                .filter(|(addr, have)| have.contains(c) && !asked.contains(addr))
                .map(|(addr, _)| *addr)
                .collect()
        };
        let fresh = missing
            .iter()
            .copied()
            .filter(|c| !in_flight.contains(*c) && ready.iter().any(|(_, h)| h.contains(*c)));
        let chunk = match picker::rarest(fresh.map(|c| (c, rarity(c))), rng) {
            Some(chunk) => chunk,
            None if a.in_endgame(in_flight) => {
                let stragglers = missing
                    .iter()
                    .copied()
                    .filter(|c| asked(*c).len() < MAX_COPIES_IN_FLIGHT)
                    .filter(|c| !ready_for(*c).is_empty());
                picker::rarest(stragglers.map(|c| (c, rarity(c))), rng)?
            }
            None => return None,
        };
        let holder = picker::random_holder(&ready_for(chunk), rng)?;
        Some((chunk, holder))
    }

    proptest::proptest! {
        #[test]
        fn next_request_picks_as_the_reference_does(
            chunks in 1u32..20,
            sets in proptest::collection::vec(proptest::collection::vec(proptest::bool::weighted(0.4), 20), 0..7),
            state in proptest::collection::vec(0u8..8, 20),
            per_holder in proptest::collection::vec(0u8..16, 7),
            mismatch in proptest::bool::weighted(0.1),
            seed in proptest::prelude::any::<u64>(),
        ) {
            let holders: Vec<(u8, Vec<u32>)> = sets
                .iter()
                .enumerate()
                .map(|(i, bits)| (i as u8 + 1, (0..chunks).filter(|c| bits[*c as usize]).collect()))
                .collect();
            let held: Vec<(u8, &[u32])> = holders.iter().map(|(n, c)| (*n, c.as_slice())).collect();
            let mut a = active(chunks, &held);
            let now = Timestamp(1_000);
            let mut flight = Vec::new();
            for c in 0..chunks {
                match state[c as usize] {
                    0 => { a.have.insert(c); }
                    1 => { a.storing.insert(c); }
                    2 => { a.want.remove(c); }
                    3 => flight.push((c, vec![addr(1 + c as u8 % 7)])),
                    4 => flight.push((c, vec![addr(1), addr(2)])),
                    _ => {}
                }
            }
            // Per holder: bad, cooling (past or future), slot, listed in `only`.
            for (i, bits) in per_holder.iter().enumerate() {
                let h = addr(i as u8 + 1);
                if bits & 1 != 0 && i % 3 == 0 { a.mark_bad(h); }
                if bits & 2 != 0 { a.cooldown.set(h, Timestamp(if i % 2 == 0 { 500 } else { 1_500 })); }
            }
            if mismatch { a.mismatched.insert(0); }
            let in_flight = Asked::with(flight);
            let slot = |h: SocketAddr| per_holder.iter().enumerate().any(|(i, b)| addr(i as u8 + 1) == h && b & 4 == 0);
            let listed: Vec<SocketAddr> = (0..7u8).filter(|i| per_holder[*i as usize] & 8 == 0).map(|i| addr(i + 1)).collect();
            for only in [None, Some(listed.as_slice())] {
                let (mut r1, mut r2) = (ChaCha8Rng::seed_from_u64(seed), ChaCha8Rng::seed_from_u64(seed));
                let mut it = only.map(|o| o.iter().copied());
                let got = a.next_request(
                    &in_flight,
                    now,
                    it.as_mut().map(|i| i as &mut dyn Iterator<Item = SocketAddr>),
                    &mut |h| slot(h),
                    &mut r1,
                );
                let want = reference_pick(&a, &in_flight, now, only, &slot, &mut r2);
                proptest::prop_assert_eq!(got, want);
                proptest::prop_assert_eq!(rand::RngCore::next_u64(&mut r1), rand::RngCore::next_u64(&mut r2), "random draws differ");
            }
        }
    }

    #[test]
    fn many_holders_mean_a_shallow_pipeline() {
        let few: Vec<(u8, &[u32])> = (1..=FEW_HOLDERS as u8).map(|n| (n, &[0u32][..])).collect();
        let mut a = active(1, &few);
        assert_eq!(a.pipeline_depth(), MAX_REQUESTS_PER_HOLDER);
        let one_more = LocatedHolder {
            addr: addr(200),
            have: ChunkSet::full(1),
        };
        assert!(a.learn_holder(one_more));
        assert_eq!(a.pipeline_depth(), MAX_SHARED_REQUESTS_PER_HOLDER);
        assert_eq!(a.good_holder_count(0), FEW_HOLDERS + 1);
    }

    #[test]
    fn many_holders_mean_few_requests_in_flight() {
        let few: Vec<(u8, &[u32])> = (1..=FEW_HOLDERS as u8).map(|n| (n, &[0u32][..])).collect();
        let mut a = active(1, &few);
        assert_eq!(a.request_budget(), MAX_REQUESTS_PER_DOWNLOAD);
        let holders = (0..MAX_SHARED_REQUESTS_PER_DOWNLOAD as u8).map(|n| addr(100 + n));
        let mut flight: Vec<SocketAddr> = holders.collect();
        assert!(a.may_request(&Asked::with([(0, flight.clone())])));
        let one_more = LocatedHolder {
            addr: addr(200),
            have: ChunkSet::full(1),
        };
        assert!(a.learn_holder(one_more));
        assert_eq!(a.request_budget(), MAX_SHARED_REQUESTS_PER_DOWNLOAD);
        assert!(
            !a.may_request(&Asked::with([(0, flight.clone())])),
            "the budget is spent"
        );
        flight.pop();
        let asked = Asked::with([(0, flight)]);
        assert!(a.may_request(&asked));
        a.committing = true;
        assert!(!a.may_request(&asked), "nothing is asked while committing");
    }

    #[test]
    fn introductions_fill_the_chunk_map_only_to_its_bound() {
        let mut a = active(1, &[]);
        let holder = |i: usize| LocatedHolder {
            addr: SocketAddr::from(([10, 1, (i >> 8) as u8, i as u8], 7)),
            have: ChunkSet::full(1),
        };
        for i in 0..MAX_KNOWN_HOLDERS {
            assert!(a.learn_holder(holder(i)));
        }
        assert!(!a.learn_holder(holder(MAX_KNOWN_HOLDERS)));
        assert!(a.learn_holder(holder(0)), "a known holder may still change");
        assert_eq!(a.good_holder_count(0), MAX_KNOWN_HOLDERS);
    }

    #[test]
    fn a_told_chunk_counts_once_and_only_for_a_known_good_holder() {
        let mut a = active(3, &[(1, &[0]), (2, &[0])]);
        assert!(a.learn_chunk(addr(1), 2));
        assert!(!a.learn_chunk(addr(1), 2), "no news the second time");
        assert!(!a.learn_chunk(addr(9), 2), "not in the map");
        assert!(!a.learn_chunk(addr(1), 3), "past the end");
        assert_eq!(a.good_holder_count(2), 1);
        assert!(a.is_good_holder(addr(1), 2));
        a.mark_bad(addr(2));
        a.learn_chunk(addr(2), 1);
        assert_eq!(a.good_holder_count(1), 0);
    }

    #[test]
    fn cooling_holders_mean_wait() {
        let mut a = active(1, &[(1, &[0])]);
        a.cooldown.set(addr(1), Timestamp(500));
        assert_eq!(a.verdict(Timestamp(10)), Verdict::Wait);
        assert_eq!(a.verdict(Timestamp(500)), Verdict::Proceed);
    }
}
