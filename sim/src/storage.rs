//! A node's disk, in memory: complete files by name and `.part` files of downloads.
//! It answers the core's Load/Store/Commit/Discard requests the way real files would.
//! Bytes equal to what was first shared are kept as references to that one copy, so a
//! thousand simulated peers holding a 100 MiB file cost 100 MiB, not 100 GB.

use drizzle_core::{Bytes, FileName, StorageKey};
use std::collections::BTreeMap;
use std::sync::Arc;

#[derive(Debug, Default, Clone)]
pub struct Storage {
    pub files: BTreeMap<FileName, Content>,
    pub parts: BTreeMap<FileName, Content>,
}

impl Storage {
    pub fn load(&self, key: &StorageKey, offset: u64, len: u32) -> Result<Bytes, String> {
        let map = if key.partial {
            &self.parts
        } else {
            &self.files
        };
        let content = map
            .get(&key.name)
            .ok_or_else(|| format!("{}: no such file", key.name))?;
        Ok(content.read_bytes(offset, len as usize))
    }

    /// Writes `data` at `offset` of `name`'s `.part` (created `size` bytes long); `same_as`
    /// is content that `data` is known to equal at `offset`, referenced instead of kept.
    pub fn store(
        &mut self,
        name: &FileName,
        size: u64,
        offset: u64,
        data: Bytes,
        same_as: Option<&Arc<[u8]>>,
    ) -> Result<(), String> {
        let part = self
            .parts
            .entry(name.clone())
            .or_insert_with(|| Content::empty(size));
        if offset.saturating_add(data.len() as u64) > part.size {
            return Err(format!("write past the end of {name}.part"));
        }
        part.write(offset, data, same_as);
        Ok(())
    }

    pub fn commit(&mut self, name: &FileName) -> Result<(), String> {
        // An empty file never gets a chunk stored, so it has no `.part` yet.
        let part = self.parts.remove(name).unwrap_or_default();
        self.files.insert(name.clone(), part);
        Ok(())
    }

    pub fn discard(&mut self, name: &FileName) {
        self.parts.remove(name);
    }
}

/// One file's bytes: pieces at offsets, each a window into shared content or bytes of its
/// own; ranges no piece covers read as zeros (a sparse file).
#[derive(Debug, Default, Clone)]
pub struct Content {
    size: u64,
    pieces: BTreeMap<u64, Bytes>,
}

impl Content {
    pub fn empty(size: u64) -> Content {
        Content {
            size,
            pieces: BTreeMap::new(),
        }
    }

    /// The whole of `bytes`, by reference.
    pub fn shared(bytes: &Arc<[u8]>) -> Content {
        let mut c = Content::empty(bytes.len() as u64);
        if let Some(all) = Bytes::shared(bytes, 0..bytes.len()).filter(|b| !b.is_empty()) {
            c.pieces.insert(0, all);
        }
        c
    }

    pub fn len(&self) -> u64 {
        self.size
    }

    pub fn is_empty(&self) -> bool {
        self.size == 0
    }

    /// Up to `len` bytes at `offset` (short at the end, as `pread` is); a window of shared
    /// content, not a copy, when one piece holds them all.
    pub fn read_bytes(&self, offset: u64, len: usize) -> Bytes {
        let end = offset.saturating_add(len as u64).min(self.size);
        if offset >= end {
            return Bytes::default();
        }
        if let Some((at, piece)) = self.pieces.range(..=offset).next_back() {
            let (from, to) = ((offset - at) as usize, (end - at) as usize);
            if to <= piece.len() && piece.window().is_some() {
                return piece.slice(from..to);
            }
        }
        self.read(offset, len).into()
    }

    /// Up to `len` bytes at `offset` (short at the end, as `pread` is), copied.
    pub fn read(&self, offset: u64, len: usize) -> Vec<u8> {
        let end = offset.saturating_add(len as u64).min(self.size);
        if offset >= end {
            return Vec::new();
        }
        let mut out = vec![0u8; (end - offset) as usize];
        let first = self
            .pieces
            .range(..=offset)
            .next_back()
            .map_or(offset, |(at, _)| *at);
        for (at, piece) in self.pieces.range(first..end) {
            let (from, to) = (offset.max(*at), end.min(at + piece.len() as u64));
            if from >= to {
                continue;
            }
            let src = piece.get((from - at) as usize..(to - at) as usize);
            let dst = out.get_mut((from - offset) as usize..(to - offset) as usize);
            if let (Some(src), Some(dst)) = (src, dst) {
                dst.copy_from_slice(src);
            }
        }
        out
    }

    /// Replaces the bytes at `offset` with `data`, kept as a window of `same_as` when the
    /// caller knows they equal it there (checked in debug builds).
    pub fn write(&mut self, offset: u64, data: Bytes, same_as: Option<&Arc<[u8]>>) {
        if data.is_empty() {
            return;
        }
        let end = offset + data.len() as u64;
        self.cut(offset, end);
        let start = offset as usize;
        let window = same_as.and_then(|t| Bytes::shared(t, start..start + data.len()));
        let piece = match window {
            Some(w) => {
                debug_assert!(w == data);
                w
            }
            None => data,
        };
        self.pieces.insert(offset, piece);
    }

    /// Applies `f` to every byte in `start..end` (a file changing on disk).
    pub fn modify(&mut self, start: u64, end: u64, f: impl Fn(u8) -> u8) {
        let end = end.min(self.size);
        if start >= end {
            return;
        }
        let mut bytes = self.read(start, (end - start) as usize);
        for b in &mut bytes {
            *b = f(*b);
        }
        self.write(start, bytes.into(), None);
    }

    /// Removes `from..to` from every piece, keeping what lies outside it.
    fn cut(&mut self, from: u64, to: u64) {
        let first = self
            .pieces
            .range(..=from)
            .next_back()
            .map_or(from, |(at, _)| *at);
        let touched: Vec<u64> = self.pieces.range(first..to).map(|(at, _)| *at).collect();
        for at in touched {
            let Some(piece) = self.pieces.remove(&at) else {
                continue;
            };
            let len = piece.len() as u64;
            if at + len <= from {
                self.pieces.insert(at, piece);
                continue;
            }
            if at < from {
                self.pieces.insert(at, piece.slice(0..(from - at) as usize));
            }
            if at + len > to {
                let rest = piece.slice((to - at) as usize..len as usize);
                self.pieces.insert(to, rest);
            }
        }
    }

    pub fn to_vec(&self) -> Vec<u8> {
        self.read(0, self.size as usize)
    }

    /// Whether these bytes are `truth`, cheaply when they are windows of it.
    pub fn same_as(&self, truth: &Arc<[u8]>) -> bool {
        if self.size != truth.len() as u64 {
            return false;
        }
        let mut covered = 0u64;
        for (at, piece) in &self.pieces {
            if *at != covered {
                return self.to_vec() == truth.as_ref();
            }
            let by_reference = piece
                .window()
                .is_some_and(|(all, start)| Arc::ptr_eq(all, truth) && start as u64 == *at);
            let equal = by_reference
                || truth.get(*at as usize..*at as usize + piece.len()) == Some(&piece[..]);
            if !equal {
                return false;
            }
            covered += piece.len() as u64;
        }
        covered == self.size
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_reads_and_references() {
        let truth: Arc<[u8]> = (0..100u8).collect::<Vec<_>>().into();
        let mut c = Content::empty(100);
        c.write(40, truth[40..60].to_vec().into(), Some(&truth));
        assert!(c.pieces.get(&40).is_some_and(|p| p.window().is_some()));
        assert!(c.read_bytes(45, 10).window().is_some(), "read by reference");
        c.write(0, vec![7; 10].into(), None);
        assert!(c.pieces.get(&0).is_some_and(|p| p.window().is_none()));
        let mut expected = vec![0u8; 100];
        expected[..10].fill(7);
        expected[40..60].copy_from_slice(&truth[40..60]);
        assert_eq!(c.to_vec(), expected);
        assert_eq!(c.read(95, 10).len(), 5, "short read at the end");
        // Overwrite across both pieces, then restore the truth everywhere.
        c.write(5, vec![1; 50].into(), None);
        assert_eq!(c.read(0, 60)[..5], [7; 5]);
        assert_eq!(c.read(0, 60)[5..55], [1; 50]);
        assert_eq!(c.read(55, 5), truth[55..60].to_vec());
        for start in (0..100).step_by(25) {
            c.write(
                start,
                truth[start as usize..start as usize + 25].to_vec().into(),
                Some(&truth),
            );
        }
        assert!(c.same_as(&truth));
        c.modify(30, 31, |b| b ^ 1);
        assert!(!c.same_as(&truth));
        assert!(Content::shared(&truth).same_as(&truth));
    }
}
