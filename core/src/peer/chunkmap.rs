//! A download's chunk map: which holders have which chunks (as the tracker's samples and
//! the holders themselves said), which holders proved bad, and each chunk's rarity (its
//! good holders), kept true through every change and kept by rarity too, so that a pick of
//! the rarest chunk reads sets a word at a time instead of weighing every missing chunk.

use crate::chunkset::{self, Change, ChunkSet};
use crate::limits::MAX_KNOWN_HOLDERS;
use rand::Rng;
use std::collections::{btree_map, BTreeMap, BTreeSet};
use std::net::SocketAddr;

#[derive(Debug)]
pub(crate) struct ChunkMap {
    holders: BTreeMap<SocketAddr, ChunkSet>,
    /// Holders that sent a chunk that failed verification: never asked again for this file.
    bad: BTreeSet<SocketAddr>,
    /// For each chunk, how many holders not known bad have it.
    rarity: Rarity,
}

impl ChunkMap {
    /// An empty map of a file of `chunks` chunks.
    pub fn new(chunks: u32) -> ChunkMap {
        ChunkMap {
            holders: BTreeMap::new(),
            bad: BTreeSet::new(),
            rarity: Rarity::new(chunks),
        }
    }

    // ---- getters ----

    /// Holders known.
    pub fn len(&self) -> usize {
        self.holders.len()
    }

    /// Every holder with its chunks, in address order.
    pub fn iter(&self) -> btree_map::Iter<'_, SocketAddr, ChunkSet> {
        self.holders.iter()
    }

    pub fn get(&self, holder: &SocketAddr) -> Option<&ChunkSet> {
        self.holders.get(holder)
    }

    pub fn knows(&self, holder: SocketAddr) -> bool {
        self.holders.contains_key(&holder)
    }

    pub fn is_bad(&self, holder: &SocketAddr) -> bool {
        self.bad.contains(holder)
    }

    /// How many holders not known bad have `chunk`.
    pub fn good_count(&self, chunk: u32) -> usize {
        self.rarity.count(chunk) as usize
    }

    /// One of the chunks of `among` with the fewest good holders, ties broken by one draw:
    /// the same pick, with the same draw, as [`picker::rarest`] over `among` in ascending
    /// order, in a few word-wide passes.
    ///
    /// [`picker::rarest`]: super::picker::rarest
    pub fn rarest_among(&self, among: &ChunkSet, rng: &mut impl Rng) -> Option<u32> {
        self.rarity.rarest_among(among, rng)
    }

    /// Whether `holder` has `chunk` and is not known bad.
    pub fn is_good_holder(&self, holder: SocketAddr, chunk: u32) -> bool {
        !self.bad.contains(&holder) && self.holders.get(&holder).is_some_and(|h| h.contains(chunk))
    }

    /// Holders of `chunk` not known bad.
    pub fn good_holders(&self, chunk: u32) -> impl Iterator<Item = SocketAddr> + '_ {
        self.holders
            .iter()
            .filter(move |(addr, have)| have.contains(chunk) && !self.bad.contains(addr))
            .map(|(addr, _)| *addr)
    }

    /// Whether any holder, good or bad, has `chunk`.
    pub fn anyone_has(&self, chunk: u32) -> bool {
        self.holders.values().any(|h| h.contains(chunk))
    }

    // ---- changes ----

    /// Replaces the map with `fresh` (chunk sets that fit the file), keeping holders for
    /// which `keep` holds when `fresh` leaves them out. Bad marks stay.
    pub fn replace(
        &mut self,
        mut fresh: BTreeMap<SocketAddr, ChunkSet>,
        keep: impl Fn(SocketAddr) -> bool,
    ) {
        // Rarity follows what changed, holder by holder: a refreshed map mostly repeats
        // the last one. Both maps are in address order: one walk pairs them.
        let ChunkMap {
            holders,
            bad,
            rarity,
        } = self;
        let mut kept = Vec::new();
        let mut new = fresh.iter().peekable();
        for (addr, have) in std::mem::take(holders) {
            while let Some((a, h)) = new.next_if(|(a, _)| **a < addr) {
                if !bad.contains(a) {
                    rarity.moved(None, Some(h));
                }
            }
            match new.next_if(|(a, _)| **a == addr).map(|(_, h)| h) {
                None if keep(addr) => kept.push((addr, have)),
                now if !bad.contains(&addr) => rarity.moved(Some(&have), now),
                _ => {}
            }
        }
        for (a, h) in new {
            if !bad.contains(a) {
                rarity.moved(None, Some(h));
            }
        }
        fresh.extend(kept);
        *holders = fresh;
    }

    /// Adds or updates one holder whose chunk set fits the file; false if the map is full.
    pub fn learn_holder(&mut self, addr: SocketAddr, have: ChunkSet) -> bool {
        if self.holders.len() >= MAX_KNOWN_HOLDERS && !self.holders.contains_key(&addr) {
            return false;
        }
        let before = self.holders.insert(addr, have);
        if !self.bad.contains(&addr) {
            self.rarity.moved(before.as_ref(), self.holders.get(&addr));
        }
        true
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
            self.rarity.change(chunk, true);
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
            self.rarity.change(chunk, false);
        }
    }

    /// `holder` sent bad data: it is never asked again for this file.
    pub fn mark_bad(&mut self, holder: SocketAddr) {
        if self.bad.insert(holder) {
            self.recount();
        }
    }

    /// Counts rarity afresh (after the map or the bad marks changed wholesale).
    fn recount(&mut self) {
        let mut counts = vec![0u32; self.rarity.counts.len()];
        for (addr, have) in &self.holders {
            if !self.bad.contains(addr) {
                for c in have.iter() {
                    if let Some(n) = counts.get_mut(c as usize) {
                        *n = n.saturating_add(1);
                    }
                }
            }
        }
        self.rarity = Rarity::from_counts(counts);
    }
}

/// Each chunk's number of good holders, and the chunks grouped by that number: group `n`
/// holds the chunks with `n` good holders. A group's set, once made, is kept when it
/// empties (chunks come and go all the time; there are at most `MAX_KNOWN_HOLDERS` + 1).
#[derive(Debug)]
struct Rarity {
    counts: Vec<u32>,
    by_count: Vec<Group>,
}

#[derive(Debug, Default)]
struct Group {
    size: u32,
    /// The group's chunks, 64 to a word: plain words rather than a `ChunkSet`, as a group
    /// changes with nearly every `Have` and a shared set's copy-on-write check cost more
    /// than the change.
    words: Vec<u64>,
}

impl Group {
    /// The group's chunks also in `among`, as words.
    fn common<'a>(&'a self, among: &'a ChunkSet) -> impl Iterator<Item = u64> + 'a {
        (self.words.iter().zip(among.words())).map(|(a, b)| a & b)
    }
}

impl Rarity {
    fn new(chunks: u32) -> Rarity {
        Rarity::from_counts(vec![0; chunks as usize])
    }

    fn from_counts(counts: Vec<u32>) -> Rarity {
        let mut rarity = Rarity {
            by_count: Vec::new(),
            counts,
        };
        for c in 0..rarity.chunks() {
            rarity.join(c, rarity.count(c));
        }
        rarity
    }

    fn chunks(&self) -> u32 {
        u32::try_from(self.counts.len()).unwrap_or(u32::MAX)
    }

    fn count(&self, chunk: u32) -> u32 {
        self.counts.get(chunk as usize).copied().unwrap_or(0)
    }

    /// One more (`more`) or one fewer good holder of `chunk`.
    fn change(&mut self, chunk: u32, more: bool) {
        let Some(n) = self.counts.get_mut(chunk as usize) else {
            return;
        };
        let before = *n;
        *n = if more {
            n.saturating_add(1)
        } else {
            n.saturating_sub(1)
        };
        let after = *n;
        if after != before {
            self.leave(chunk, before);
            self.join(chunk, after);
        }
    }

    /// A good holder's chunks went from `before` to `after`: only what changed is counted
    /// (a holder introduced again, or refreshed, mostly holds what it held).
    fn moved(&mut self, before: Option<&ChunkSet>, after: Option<&ChunkSet>) {
        match (before, after) {
            (Some(before), Some(after)) => (after.changes_since(before))
                .for_each(|(c, change)| self.change(c, change == Change::Gained)),
            (None, Some(after)) => after.iter().for_each(|c| self.change(c, true)),
            (Some(before), None) => before.iter().for_each(|c| self.change(c, false)),
            (None, None) => {}
        }
    }

    fn join(&mut self, chunk: u32, count: u32) {
        let chunks = self.chunks();
        if self.by_count.len() <= count as usize {
            self.by_count
                .resize_with(count as usize + 1, Group::default);
        }
        if let Some(group) = self.by_count.get_mut(count as usize) {
            if group.words.is_empty() {
                group.words = vec![0; chunks.div_ceil(64) as usize];
            }
            if let Some(word) = group.words.get_mut((chunk / 64) as usize) {
                *word |= 1 << (chunk % 64);
                group.size += 1;
            }
        }
    }

    fn leave(&mut self, chunk: u32, count: u32) {
        if let Some(group) = self.by_count.get_mut(count as usize) {
            if let Some(word) = group.words.get_mut((chunk / 64) as usize) {
                *word &= !(1 << (chunk % 64));
                group.size = group.size.saturating_sub(1);
            }
        }
    }

    fn rarest_among(&self, among: &ChunkSet, rng: &mut impl Rng) -> Option<u32> {
        if among.len() != self.chunks() {
            return None;
        }
        // Rarer groups than the one picked from share nothing with `among`: seen in a pass
        // that stops at the first common word, with nothing counted.
        let group = (self.by_count.iter().filter(|g| g.size > 0))
            .find(|group| group.common(among).any(|word| word != 0))?;
        let ties: u32 = group.common(among).map(u64::count_ones).sum();
        chunkset::nth_one(group.common(among), rng.gen_range(0..ties))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::peer::picker;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;
    use std::net::{IpAddr, Ipv4Addr};

    fn addr(i: u8) -> SocketAddr {
        SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, 0, 0, i)), 7000)
    }

    fn random_set(chunks: u32, rng: &mut ChaCha8Rng) -> ChunkSet {
        let p = rng.gen_range(0.0..1.0);
        ChunkSet::from_indices(chunks, (0..chunks).filter(|_| rng.gen_bool(p)))
    }

    /// Through every kind of change, the kept rarity is the counted one, and a pick from
    /// the groups is the pick (and the draw) of `picker::rarest` over the chunks in order.
    #[test]
    fn rarity_kept_by_group_picks_as_the_plain_count_does() {
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        for round in 0..200 {
            let chunks = rng.gen_range(1..300);
            let mut map = ChunkMap::new(chunks);
            for step in 0..30 {
                let holder = addr(rng.gen_range(1..8));
                match rng.gen_range(0..6) {
                    0 | 1 => {
                        map.learn_holder(holder, random_set(chunks, &mut rng));
                    }
                    2 => {
                        map.learn_chunk(holder, rng.gen_range(0..chunks));
                    }
                    3 => map.forget_chunk(holder, rng.gen_range(0..chunks)),
                    4 if step % 7 == 0 => map.mark_bad(holder),
                    _ => {
                        let fresh = (1..4).map(|i| (addr(i), random_set(chunks, &mut rng)));
                        map.replace(fresh.collect(), |a| a.ip() != addr(2).ip());
                    }
                }
                for c in 0..chunks {
                    assert_eq!(
                        map.good_count(c),
                        map.good_holders(c).count(),
                        "round {round}"
                    );
                }
                let among = random_set(chunks, &mut rng);
                let seed = rng.gen();
                let (mut a, mut b) = (
                    ChaCha8Rng::seed_from_u64(seed),
                    ChaCha8Rng::seed_from_u64(seed),
                );
                let plain = picker::rarest(among.iter().map(|c| (c, map.good_count(c))), &mut a);
                assert_eq!(
                    map.rarest_among(&among, &mut b),
                    plain,
                    "round {round} step {step}"
                );
            }
        }
    }
}
