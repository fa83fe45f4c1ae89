//! A download's chunk map: which holders have which chunks (as the tracker's samples and
//! the holders themselves said), which holders proved bad, and each chunk's rarity (its
//! good holders), kept true through every change: the picker weighs every missing chunk on
//! every request, so rarity is kept, not counted.

use crate::chunkset::ChunkSet;
use crate::limits::MAX_KNOWN_HOLDERS;
use std::collections::{btree_map, BTreeMap, BTreeSet};
use std::net::SocketAddr;

#[derive(Debug)]
pub(crate) struct ChunkMap {
    holders: BTreeMap<SocketAddr, ChunkSet>,
    /// Holders that sent a chunk that failed verification: never asked again for this file.
    bad: BTreeSet<SocketAddr>,
    /// For each chunk, how many holders not known bad have it.
    good_counts: Vec<u32>,
}

impl ChunkMap {
    /// An empty map of a file of `chunks` chunks.
    pub fn new(chunks: u32) -> ChunkMap {
        ChunkMap {
            holders: BTreeMap::new(),
            bad: BTreeSet::new(),
            good_counts: vec![0; chunks as usize],
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
        self.good_counts
            .get(chunk as usize)
            .map_or(0, |n| *n as usize)
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
        for (addr, have) in std::mem::take(&mut self.holders) {
            if keep(addr) && !fresh.contains_key(&addr) {
                fresh.insert(addr, have);
            }
        }
        self.holders = fresh;
        self.recount();
    }

    /// Adds or updates one holder whose chunk set fits the file; false if the map is full.
    pub fn learn_holder(&mut self, addr: SocketAddr, have: ChunkSet) -> bool {
        if self.holders.len() >= MAX_KNOWN_HOLDERS && !self.holders.contains_key(&addr) {
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
