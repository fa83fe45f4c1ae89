//! A download's chunk map: which holders have which chunks (as the tracker's samples and
//! the holders themselves said), which holders proved bad, and each chunk's rarity (its
//! good holders), kept true through every change in bit planes, so that both a holder's
//! whole set counted in or out and a pick of the rarest chunk go a word at a time instead
//! of a chunk at a time.

use super::addrmap::{self, AddrMap};
use crate::chunkset::{self, Change, ChunkSet};
use crate::limits::MAX_KNOWN_HOLDERS;
use rand::Rng;
use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;

#[derive(Debug)]
pub(crate) struct ChunkMap {
    holders: AddrMap<ChunkSet>,
    /// Holders that sent a chunk that failed verification: never asked again for this file.
    bad: BTreeSet<SocketAddr>,
    /// For each chunk, how many holders not known bad have it.
    rarity: Rarity,
}

impl ChunkMap {
    /// An empty map of a file of `chunks` chunks.
    pub fn new(chunks: u32) -> ChunkMap {
        ChunkMap {
            holders: AddrMap::default(),
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
    pub fn iter(&self) -> addrmap::Iter<'_, ChunkSet> {
        self.holders.iter()
    }

    pub fn get(&self, holder: &SocketAddr) -> Option<&ChunkSet> {
        self.holders.get(holder)
    }

    /// The holder's entry, its address borrowed from the map.
    pub fn get_key_value(&self, holder: &SocketAddr) -> Option<(&SocketAddr, &ChunkSet)> {
        self.holders.get_key_value(holder)
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
        *holders = fresh.into_iter().collect();
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
        self.rarity = Rarity::new(self.rarity.chunks());
        for (addr, have) in self.holders.iter() {
            if !self.bad.contains(addr) {
                self.rarity.moved(None, Some(have));
            }
        }
    }
}

/// Each chunk's number of good holders, bit-sliced: bit `k` of chunk `c`'s count is bit
/// `c` of plane `k`. A holder's whole set is counted in or out a word at a time (a carry
/// or borrow through the planes), where a count per chunk took a step per chunk held —
/// the most of a 100 GiB swarm's time, as the tracker's samples come and go.
#[derive(Debug)]
struct Rarity {
    chunks: u32,
    /// Low bit first; as many planes as the largest count needs.
    planes: Vec<Vec<u64>>,
}

impl Rarity {
    fn new(chunks: u32) -> Rarity {
        Rarity {
            chunks,
            planes: Vec::new(),
        }
    }

    fn chunks(&self) -> u32 {
        self.chunks
    }

    fn words(&self) -> usize {
        self.chunks.div_ceil(64) as usize
    }

    fn count(&self, chunk: u32) -> u32 {
        let (w, bit) = ((chunk / 64) as usize, chunk % 64);
        (0u32..).zip(&self.planes).fold(0, |n, (k, plane)| {
            n | (plane.get(w).map_or(0, |word| (word >> bit) as u32 & 1) << k)
        })
    }

    /// One more (`more`) or one fewer good holder of `chunk`.
    fn change(&mut self, chunk: u32, more: bool) {
        if chunk < self.chunks {
            let (w, bit) = ((chunk / 64) as usize, 1u64 << (chunk % 64));
            self.step_word(w, bit, more);
        }
    }

    /// Counts the chunks of `bits` (word `w`) one up or one down; a count of zero stays
    /// zero.
    fn step_word(&mut self, w: usize, bits: u64, up: bool) {
        let mut carry = match up {
            true => bits,
            false => {
                bits & self
                    .planes
                    .iter()
                    .fold(0, |any, p| any | p.get(w).unwrap_or(&0))
            }
        };
        for plane in self.planes.iter_mut() {
            let Some(word) = plane.get_mut(w) else { return };
            if carry == 0 {
                return;
            }
            // Adding, a carry goes on where the bit was set; subtracting, where it was not.
            let next = if up { *word & carry } else { !*word & carry };
            *word ^= carry;
            carry = next;
        }
        if carry != 0 {
            let mut plane = vec![0; self.words()];
            if let Some(word) = plane.get_mut(w) {
                *word = carry;
            }
            self.planes.push(plane);
        }
    }

    /// A good holder's chunks went from `before` to `after`: only what changed is counted
    /// (a holder introduced again, or refreshed, mostly holds what it held).
    fn moved(&mut self, before: Option<&ChunkSet>, after: Option<&ChunkSet>) {
        match (before, after) {
            (Some(before), Some(after)) => (after.changes_since(before))
                .for_each(|(c, change)| self.change(c, change == Change::Gained)),
            (None, Some(after)) => self.count_set(after, true),
            (Some(before), None) => self.count_set(before, false),
            (None, None) => {}
        }
    }

    fn count_set(&mut self, set: &ChunkSet, up: bool) {
        if set.len() == self.chunks {
            for (w, bits) in set.words().enumerate() {
                if bits != 0 {
                    self.step_word(w, bits, up);
                }
            }
        }
    }

    /// The rarest chunks of `among` (fewest good holders), one drawn at random: from the
    /// top plane down, chunks with a 0 where some candidate has one are the rarer.
    fn rarest_among(&self, among: &ChunkSet, rng: &mut impl Rng) -> Option<u32> {
        if among.len() != self.chunks() {
            return None;
        }
        let mut rarest: Vec<u64> = among.words().collect();
        for plane in self.planes.iter().rev() {
            if (rarest.iter().zip(plane)).any(|(r, p)| r & !p != 0) {
                rarest.iter_mut().zip(plane).for_each(|(r, p)| *r &= !p);
            }
        }
        let ties: u32 = rarest.iter().map(|w| w.count_ones()).sum();
        if ties == 0 {
            return None;
        }
        chunkset::nth_one(rarest.into_iter(), rng.gen_range(0..ties))
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

    /// Counts carried through many planes and borrowed back come out exact, and a count
    /// of zero taken one from stays zero.
    #[test]
    fn bit_plane_counts_carry_and_borrow() {
        let (chunks, holders) = (130, 300u32);
        let set = ChunkSet::from_indices(chunks, (0..chunks).filter(|c| c % 3 != 0));
        let mut rarity = Rarity::new(chunks);
        for _ in 0..holders {
            rarity.moved(None, Some(&set));
        }
        rarity.change(129, false); // 129 % 3 == 0: never counted
        for c in 0..chunks {
            assert_eq!(rarity.count(c), if c % 3 == 0 { 0 } else { holders });
        }
        rarity.change(1, false);
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let among = ChunkSet::from_indices(chunks, [1, 2, 4]);
        assert_eq!(rarity.rarest_among(&among, &mut rng), Some(1));
        rarity.change(1, true);
        for _ in 0..holders {
            rarity.moved(Some(&set), None);
        }
        assert!((0..chunks).all(|c| rarity.count(c) == 0));
    }

    /// Through every kind of change, the kept rarity is the counted one, and a pick from
    /// the planes is the pick (and the draw) of `picker::rarest` over the chunks in order.
    #[test]
    fn kept_rarity_picks_as_the_plain_count_does() {
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
