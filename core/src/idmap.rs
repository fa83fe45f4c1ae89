//! Maps keyed by ids a process hands out itself (connection ids, the simulator's links):
//! looked up on nearly every input, so hashed rather than searched, with a hash that is
//! cheap and deterministic. Never keyed by what a remote chooses, never walked where order
//! matters unless sorted first.

#[allow(clippy::disallowed_types)]
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

/// A hash map keyed by locally assigned ids (see the module docs). Core's one hash map:
/// its hasher has no random keys, and its users walk it only in an order they keep.
#[allow(clippy::disallowed_types)]
pub type IdMap<K, V> = HashMap<K, V, BuildHasherDefault<IdHasher>>;

/// Hashes the integers an id is made of, multiplying each in (ids count up from zero, so
/// the product spreads them over the table). Deterministic: no random keys, no OS. Weak
/// against chosen keys, which is why ids chosen elsewhere never use it.
#[derive(Debug, Default)]
pub struct IdHasher(u64);

impl Hasher for IdHasher {
    fn write(&mut self, bytes: &[u8]) {
        bytes.iter().for_each(|b| self.write_u64(u64::from(*b)));
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0.rotate_left(5) ^ n).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }

    fn write_u32(&mut self, n: u32) {
        self.write_u64(u64::from(n));
    }

    fn write_isize(&mut self, n: isize) {
        self.write_u64(n as u64);
    }

    fn finish(&self) -> u64 {
        self.0
    }
}
