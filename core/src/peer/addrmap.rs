//! A small map keyed by holder address, kept as a list in address order. The picker walks
//! a download's holder maps whole, side by side, on every pick (after each `Busy`, each
//! cooldown's end): a list walks in one run of memory where a tree goes node by node, and
//! its changes (a shift of a few hundred entries at most) come far less often.

use std::cmp::Ordering;
use std::iter::Peekable;
use std::net::SocketAddr;

/// `a.cmp(b)`, the same order, with IPv4 addresses compared as two integers rather than
/// field by field and byte by byte (std's order is the same: address, then port).
pub(crate) fn addr_order(a: &SocketAddr, b: &SocketAddr) -> Ordering {
    match (a, b) {
        (SocketAddr::V4(a), SocketAddr::V4(b)) => {
            (a.ip().to_bits(), a.port()).cmp(&(b.ip().to_bits(), b.port()))
        }
        _ => a.cmp(b),
    }
}

/// The value at `key` of a map walked in ascending address order: skips what lies before
/// `key` and stops there. Asked about ascending keys only, a whole pass costs one walk of
/// the map instead of a search per key.
pub(crate) fn seek<'a, V: 'a>(
    walk: &mut Peekable<impl Iterator<Item = (&'a SocketAddr, &'a V)>>,
    key: &SocketAddr,
) -> Option<&'a V> {
    seek_entry(walk, key).map(|(_, v)| v)
}

/// Like [`seek`], the entry found: its key is the map's own, borrowed as long as the value.
pub(crate) fn seek_entry<'a, V: 'a>(
    walk: &mut Peekable<impl Iterator<Item = (&'a SocketAddr, &'a V)>>,
    key: &SocketAddr,
) -> Option<(&'a SocketAddr, &'a V)> {
    // One comparison per step: a pick's walks make one for each holder they pass.
    while let Some((k, _)) = walk.peek() {
        match addr_order(k, key) {
            Ordering::Less => _ = walk.next(),
            Ordering::Equal => return walk.peek().map(|(k, v)| (*k, *v)),
            Ordering::Greater => return None,
        }
    }
    None
}

#[derive(Debug)]
pub(crate) struct AddrMap<V> {
    entries: Vec<(SocketAddr, V)>,
}

/// The entries of an [`AddrMap`] in address order, as a tree map's `iter` gives them.
pub(crate) type Iter<'a, V> = std::iter::Map<
    std::slice::Iter<'a, (SocketAddr, V)>,
    fn(&'a (SocketAddr, V)) -> (&'a SocketAddr, &'a V),
>;

/// The addresses of an [`AddrMap`] in order.
pub(crate) type Keys<'a, V> = std::iter::Map<
    std::slice::Iter<'a, (SocketAddr, V)>,
    fn(&'a (SocketAddr, V)) -> &'a SocketAddr,
>;

impl<V> Default for AddrMap<V> {
    fn default() -> Self {
        AddrMap {
            entries: Vec::new(),
        }
    }
}

impl<V> AddrMap<V> {
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn get(&self, addr: &SocketAddr) -> Option<&V> {
        let i = self.position(addr).ok()?;
        self.entries.get(i).map(|(_, v)| v)
    }

    pub fn get_key_value(&self, addr: &SocketAddr) -> Option<(&SocketAddr, &V)> {
        let i = self.position(addr).ok()?;
        self.entries.get(i).map(|(a, v)| (a, v))
    }

    pub fn get_mut(&mut self, addr: &SocketAddr) -> Option<&mut V> {
        let i = self.position(addr).ok()?;
        self.entries.get_mut(i).map(|(_, v)| v)
    }

    pub fn contains_key(&self, addr: &SocketAddr) -> bool {
        self.position(addr).is_ok()
    }

    /// Sets `addr`'s value, returning the one it replaces.
    pub fn insert(&mut self, addr: SocketAddr, value: V) -> Option<V> {
        match self.position(&addr) {
            Ok(i) => self
                .entries
                .get_mut(i)
                .map(|(_, v)| std::mem::replace(v, value)),
            Err(i) => {
                self.entries.insert(i, (addr, value));
                None
            }
        }
    }

    pub fn remove(&mut self, addr: &SocketAddr) -> Option<V> {
        let i = self.position(addr).ok()?;
        Some(self.entries.remove(i).1)
    }

    pub fn iter(&self) -> Iter<'_, V> {
        self.entries.iter().map(|(a, v)| (a, v))
    }

    pub fn keys(&self) -> Keys<'_, V> {
        self.entries.iter().map(|(a, _)| a)
    }

    pub fn values(&self) -> impl Iterator<Item = &V> {
        self.entries.iter().map(|(_, v)| v)
    }

    /// Where `addr` is, or where it would go.
    fn position(&self, addr: &SocketAddr) -> Result<usize, usize> {
        self.entries.binary_search_by(|(a, _)| addr_order(a, addr))
    }
}

/// Entries in any order; a later value for an address replaces an earlier one.
impl<V> FromIterator<(SocketAddr, V)> for AddrMap<V> {
    fn from_iter<I: IntoIterator<Item = (SocketAddr, V)>>(iter: I) -> Self {
        let mut map = AddrMap::default();
        iter.into_iter().for_each(|(a, v)| _ = map.insert(a, v));
        map
    }
}

impl<V> IntoIterator for AddrMap<V> {
    type Item = (SocketAddr, V);
    type IntoIter = std::vec::IntoIter<(SocketAddr, V)>;

    fn into_iter(self) -> Self::IntoIter {
        self.entries.into_iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    /// The list answers as a tree map would, in the same order, through any changes.
    #[test]
    fn it_keeps_a_tree_maps_order_and_answers() {
        let addr = |i: u32| SocketAddr::from(((i * 7919 % 1000).to_be_bytes(), (i % 3) as u16));
        let mut list = AddrMap::default();
        let mut tree = BTreeMap::new();
        for i in 0..600 {
            let a = addr(i % 450);
            match i % 5 {
                0..=2 => assert_eq!(list.insert(a, i), tree.insert(a, i)),
                3 => assert_eq!(list.remove(&a), tree.remove(&a)),
                _ => assert_eq!(list.get(&a), tree.get(&a)),
            }
            assert_eq!(list.contains_key(&a), tree.contains_key(&a));
        }
        assert_eq!(list.len(), tree.len());
        assert!(list.iter().eq(tree.iter()));
        let rebuilt: AddrMap<u32> = tree.clone().into_iter().rev().collect();
        assert!(rebuilt.into_iter().eq(tree));
    }

    #[test]
    fn addresses_are_ordered_as_std_orders_them() {
        let addrs: Vec<SocketAddr> = [
            "10.0.0.1:80",
            "10.0.0.1:81",
            "10.0.0.2:1",
            "9.255.255.255:65535",
            "200.1.2.3:0",
            "[::1]:80",
            "[::1]:79",
            "[fe80::1%2]:80",
        ]
        .iter()
        .filter_map(|s| s.parse().ok())
        .collect();
        assert_eq!(addrs.len(), 8);
        for a in &addrs {
            for b in &addrs {
                assert_eq!(addr_order(a, b), a.cmp(b), "{a} vs {b}");
            }
        }
    }
}
