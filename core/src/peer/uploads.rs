//! How often this peer has uploaded each chunk of a file it holds. A holder that has sent
//! some chunk more often than another refuses it to requesters who know another holder of
//! it, or while its last copy is fresh and its recipient still connected (it will share it
//! soon), so its upload goes to what the swarm lacks: super-seeding, by refusal.

use crate::chunkset::ChunkSet;
use crate::machine::ConnId;
use crate::time::Timestamp;
use std::collections::BTreeMap;

/// How long a sent chunk counts as fresh: time for its recipient to get, verify and
/// register it, and for others to see that in a refreshed chunk map.
const FRESH_MS: u64 = 5_000;

#[derive(Debug, Default)]
pub(super) struct Uploads {
    sent: Vec<u32>,
    /// How often each chunk's upload began (was read to be sent): unlike `sent`, a
    /// promise still queued does not count.
    began: Vec<u32>,
    /// When each chunk was last promised, and to whom.
    last_sent: Vec<Option<(Timestamp, ConnId)>>,
    /// Upload count → how many held chunks were uploaded that often.
    held_by_count: BTreeMap<u32, u32>,
}

impl Uploads {
    pub fn new(have: &ChunkSet) -> Uploads {
        let mut u = Uploads {
            sent: vec![0; have.len() as usize],
            began: vec![0; have.len() as usize],
            last_sent: vec![None; have.len() as usize],
            held_by_count: BTreeMap::new(),
        };
        let held = have.count();
        if held > 0 {
            u.held_by_count.insert(0, held);
        }
        u
    }

    /// Chunk `chunk` is newly held (a download stored it).
    pub fn held(&mut self, chunk: u32) {
        if let Some(n) = self.sent.get(chunk as usize) {
            *self.held_by_count.entry(*n).or_default() += 1;
        }
    }

    /// Chunk `chunk` (held) was uploaded once more.
    pub fn sent(&mut self, chunk: u32, now: Timestamp, to: ConnId) {
        if let Some(t) = self.last_sent.get_mut(chunk as usize) {
            *t = Some((now, to));
        }
        self.recount(chunk, |n| n.checked_add(1));
    }

    /// The upload of `chunk` begins: it is read to be sent.
    pub fn begin(&mut self, chunk: u32) {
        if let Some(n) = self.began.get_mut(chunk as usize) {
            *n = n.saturating_add(1);
        }
    }

    /// How often the upload of `chunk` began.
    pub fn began(&self, chunk: u32) -> u32 {
        self.began.get(chunk as usize).copied().unwrap_or(0)
    }

    /// An upload of `chunk` promised to `to` was called off before it was sent.
    pub fn withdrawn(&mut self, chunk: u32, to: ConnId) {
        if let Some(t) = self.last_sent.get_mut(chunk as usize) {
            if t.is_some_and(|(_, c)| c == to) {
                *t = None;
            }
        }
        self.recount(chunk, |n| n.checked_sub(1));
    }

    /// Changes how often `chunk` was uploaded to `change(count)` (unless that is `None`),
    /// moving it between the `held_by_count` buckets.
    fn recount(&mut self, chunk: u32, change: impl Fn(u32) -> Option<u32>) {
        let Some(n) = self.sent.get_mut(chunk as usize) else {
            return;
        };
        let Some(to) = change(*n) else {
            return;
        };
        if let Some(k) = self.held_by_count.get_mut(n) {
            *k -= 1;
            if *k == 0 {
                self.held_by_count.remove(n);
            }
        }
        *n = to;
        *self.held_by_count.entry(to).or_default() += 1;
    }

    /// Whether to refuse `chunk` to `requester`, who knows `others` other holders of it:
    /// it was uploaded more often than some other held chunk, and the requester can go
    /// elsewhere, or its last copy went lately to another peer that `spreads` it (still
    /// connected, and taking what it is sent).
    pub fn refuse(
        &self,
        chunk: u32,
        others: u8,
        now: Timestamp,
        requester: ConnId,
        spreads: impl Fn(ConnId) -> bool,
    ) -> bool {
        let least = self.held_by_count.keys().next().copied().unwrap_or(0);
        let more_than_least = self.sent.get(chunk as usize).is_some_and(|n| *n > least);
        let fresh_elsewhere = self
            .last_sent
            .get(chunk as usize)
            .copied()
            .flatten()
            .is_some_and(|(t, to)| now.since_ms(t) < FRESH_MS && to != requester && spreads(to));
        more_than_least && (others > 0 || fresh_elsewhere)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_chunk_sent_more_than_others_is_refused_while_fresh_or_elsewhere() {
        let t = Timestamp(10_000);
        let (a, b) = (ConnId::Inbound(1), ConnId::Inbound(2));
        let up = |_: ConnId| true;
        let mut u = Uploads::new(&ChunkSet::from_indices(4, [0, 1]));
        assert!(!u.refuse(0, 5, t, b, up));
        u.sent(0, t, a);
        assert!(
            u.refuse(0, 0, t, b, up),
            "1 is still unsent and a has 0 fresh"
        );
        assert!(!u.refuse(0, 0, t, a, up), "a asks again: it did not get it");
        assert!(
            !u.refuse(0, 0, t, b, |_| false),
            "a left: its copy will not spread"
        );
        assert!(u.refuse(0, 1, t.plus_ms(FRESH_MS), b, up), "others hold it");
        assert!(
            !u.refuse(0, 0, t.plus_ms(FRESH_MS), b, up),
            "stale, and nobody else"
        );
        assert!(!u.refuse(1, 3, t, b, up));
        u.sent(1, t, a);
        assert!(!u.refuse(0, 3, t, b, up) && !u.refuse(1, 3, t, b, up));
        u.held(2);
        assert!(u.refuse(0, 3, t, b, up), "a new chunk has never been sent");
        u.sent(2, t, a);
        assert!(!u.refuse(0, 3, t, b, up));
    }
}
