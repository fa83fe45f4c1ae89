//! The event queue: every action is due at a time in microseconds and was queued `seq`-th;
//! the earliest comes first, ties in the order queued, so a run is one sequence.

use super::*;

/// A key: due time above, queue order below, so that keys order as actions are run. No
/// two are equal (`seq` counts up).
type Key = u128;

/// Buckets of a radix heap: one for the last key taken and one per bit a key may first
/// differ from it in.
const BUCKETS: usize = Key::BITS as usize + 1;

/// Actions in the order they are due, as a radix heap: simulated time never goes back, so
/// nearly every key queued is at least the least one waiting, and a key waits in the
/// bucket of the highest bit where it differs from that one. Taking the least moves only
/// the lowest non-empty bucket's keys, each to a lower bucket, in runs through memory: a
/// binary heap of millions jumps across it at every level of each sift. The actions wait
/// in slots beside the keys.
#[derive(Debug)]
pub(super) struct Queue {
    /// No key waiting is less: the least taken or looked at, or one queued below it since.
    last: Key,
    /// Bucket 0 holds `last` itself (if not yet taken); bucket `i` the keys whose highest
    /// bit differing from `last` is bit `i - 1`.
    buckets: Vec<Vec<(Key, u32)>>,
    /// Which buckets hold keys, a bit each: the lowest is found in one step.
    occupied: [u64; BUCKETS.div_ceil(64)],
    slots: Vec<Option<Action>>,
    free: Vec<u32>,
}

impl Default for Queue {
    fn default() -> Self {
        Queue {
            last: 0,
            buckets: (0..BUCKETS).map(|_| Vec::new()).collect(),
            occupied: [0; BUCKETS.div_ceil(64)],
            slots: Vec::new(),
            free: Vec::new(),
        }
    }
}

impl Queue {
    pub(super) fn push(&mut self, at_us: u64, seq: u64, action: Action) {
        let slot = match self.free.pop() {
            Some(slot) => {
                if let Some(s) = self.slots.get_mut(slot as usize) {
                    *s = Some(action);
                }
                slot
            }
            None => {
                self.slots.push(Some(action));
                u32::try_from(self.slots.len() - 1).unwrap_or(u32::MAX)
            }
        };
        let key = Key::from(at_us) << 64 | Key::from(seq);
        if key < self.last {
            self.lower_last(key);
        }
        self.file(key, slot);
    }

    /// The earliest action and when it is due.
    pub(super) fn pop(&mut self) -> Option<(u64, Action)> {
        let (key, slot) = self.take_least()?;
        let action = self.slots.get_mut(slot as usize)?.take()?;
        self.free.push(slot);
        Some(((key >> 64) as u64, action))
    }

    /// Every action waiting, in no order.
    #[cfg(test)]
    pub(super) fn actions(&self) -> impl Iterator<Item = &Action> {
        self.slots.iter().flatten()
    }

    /// When the earliest action is due.
    pub(super) fn next_due_us(&mut self) -> Option<u64> {
        Some((self.settle()? >> 64) as u64)
    }

    fn bucket(&self, key: Key) -> usize {
        (Key::BITS - (key ^ self.last).leading_zeros()) as usize
    }

    fn file(&mut self, key: Key, slot: u32) {
        let b = self.bucket(key);
        if let (Some(bucket), Some(word)) = (self.buckets.get_mut(b), self.occupied.get_mut(b / 64))
        {
            bucket.push((key, slot));
            *word |= 1 << (b % 64);
        }
    }

    /// Makes `key`, below `last`, the new `last`. The buckets above the one `key` falls in
    /// hold keys that differ from `key` where they differed from the old `last`, and stay;
    /// the keys of that bucket and those below are filed again. Time runs back only when the
    /// world is told to run to a moment before the next action due.
    fn lower_last(&mut self, key: Key) {
        let top = self.bucket(key);
        let mut merged = Vec::new();
        for b in 0..=top {
            if let Some(bucket) = self.buckets.get_mut(b) {
                merged.append(bucket);
            }
            if let Some(word) = self.occupied.get_mut(b / 64) {
                *word &= !(1 << (b % 64));
            }
        }
        self.last = key;
        for (key, slot) in merged {
            self.file(key, slot);
        }
    }

    fn take_least(&mut self) -> Option<(Key, u32)> {
        self.settle()?;
        let least = self.buckets.first_mut()?.pop();
        if let Some(word) = self.occupied.first_mut() {
            *word &= !1;
        }
        least
    }

    /// Makes bucket 0 hold the least key, by moving the keys of the lowest non-empty
    /// bucket under the least of them as `last`; that key, or `None` if nothing waits.
    fn settle(&mut self) -> Option<Key> {
        let lowest = (self.occupied.iter().enumerate())
            .find(|(_, word)| **word != 0)
            .map(|(i, word)| i * 64 + word.trailing_zeros() as usize)?;
        if lowest > 0 {
            let moving = std::mem::take(self.buckets.get_mut(lowest)?);
            if let Some(word) = self.occupied.get_mut(lowest / 64) {
                *word &= !(1 << (lowest % 64));
            }
            self.last = moving.iter().map(|(key, _)| *key).min()?;
            for &(key, slot) in &moving {
                self.file(key, slot);
            }
            // The emptied bucket keeps its room for the keys it will take next.
            let mut room = moving;
            room.clear();
            if let Some(bucket) = self.buckets.get_mut(lowest) {
                if bucket.is_empty() {
                    *bucket = room;
                }
            }
        }
        Some(self.last)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;
    use std::cmp::Reverse;
    use std::collections::BinaryHeap;

    fn tick(n: u64) -> Action {
        Action::Timer {
            node: 0,
            incarnation: 0,
            at_us: n,
        }
    }

    /// Pushes and pops interleaved at random, times mostly ahead of the last taken and
    /// sometimes behind it, come out as a sort by (time, order queued) says they must.
    #[test]
    fn takes_actions_in_due_order_then_queue_order() {
        for seed in 0..20 {
            let mut rng = ChaCha8Rng::seed_from_u64(seed);
            let mut queue = Queue::default();
            let mut reference = BinaryHeap::new();
            let (mut seq, mut now_us) = (0u64, 0u64);
            for _ in 0..5_000 {
                if rng.gen_bool(0.55) {
                    seq += 1;
                    let span = 1u64 << rng.gen_range(1..40);
                    let at_us = match rng.gen_range(0..10) {
                        0 => now_us.saturating_sub(rng.gen_range(0..50)),
                        1 => now_us,
                        _ => now_us + rng.gen_range(0..span),
                    };
                    queue.push(at_us, seq, tick(seq));
                    reference.push(Reverse((at_us, seq)));
                } else {
                    let want = reference.pop().map(|Reverse((at_us, seq))| (at_us, seq));
                    assert_eq!(
                        queue.next_due_us(),
                        want.map(|(at_us, _)| at_us),
                        "seed {seed}"
                    );
                    let got = queue.pop().map(|(at_us, action)| match action {
                        Action::Timer { at_us: seq, .. } => (at_us, seq),
                        other => panic!("seed {seed}: {other:?} was never queued"),
                    });
                    assert_eq!(got, want, "seed {seed}");
                    now_us = now_us.max(got.map_or(0, |(at_us, _)| at_us));
                }
            }
        }
    }
}
