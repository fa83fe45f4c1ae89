//! A node's disk, in memory: complete files by name and `.part` files of downloads.
//! It answers the core's Load/Store/Commit/Discard requests the way real files would.
//! Chunks equal to what was first shared are kept as a bit each referring to that one copy,
//! so a hundred simulated peers holding a 100 GiB file cost kilobytes, not terabytes.

use crate::truth::Truth;
use drizzle_core::{Bytes, ChunkSet, FileName, StorageKey};
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
    /// is the truth whose chunk `data` is known to be there, referenced instead of kept.
    pub fn store(
        &mut self,
        name: &FileName,
        size: u64,
        offset: u64,
        data: Bytes,
        same_as: Option<&Arc<Truth>>,
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

/// One file's bytes: chunks of a truth, by reference (a bit each), and pieces at offsets
/// where it has bytes of its own (never where a truth chunk is marked); ranges neither
/// covers read as zeros (a sparse file).
#[derive(Debug, Default, Clone)]
pub struct Content {
    size: u64,
    truth: Option<Arc<Truth>>,
    /// The chunks of `truth` held, by index.
    same: ChunkSet,
    pieces: BTreeMap<u64, Bytes>,
}

impl Content {
    pub fn empty(size: u64) -> Content {
        Content {
            size,
            ..Content::default()
        }
    }

    /// The whole of `truth`, by reference.
    pub fn of(truth: &Arc<Truth>) -> Content {
        Content {
            size: truth.size(),
            same: ChunkSet::full(truth.manifest.chunk_count()),
            truth: Some(truth.clone()),
            pieces: BTreeMap::new(),
        }
    }

    pub fn len(&self) -> u64 {
        self.size
    }

    pub fn is_empty(&self) -> bool {
        self.size == 0
    }

    /// Up to `len` bytes at `offset` (short at the end, as `pread` is); by reference, not
    /// a copy, when one truth chunk or one shared piece holds them all.
    pub fn read_bytes(&self, offset: u64, len: usize) -> Bytes {
        let end = offset.saturating_add(len as u64).min(self.size);
        if offset >= end {
            return Bytes::default();
        }
        if let Some((at, chunk)) = self.truth_chunk_at(offset) {
            if end - at <= chunk.len() as u64 {
                return chunk.slice((offset - at) as usize..(end - at) as usize);
            }
        }
        if let Some((at, piece)) = self.pieces.range(..=offset).next_back() {
            let (from, to) = ((offset - at) as usize, (end - at) as usize);
            if to <= piece.len() && piece.is_shared() {
                return piece.slice(from..to);
            }
        }
        self.read(offset, len).into()
    }

    /// The marked truth chunk holding byte `offset`, and where it starts.
    fn truth_chunk_at(&self, offset: u64) -> Option<(u64, Bytes)> {
        let truth = self.truth.as_ref()?;
        let i = u32::try_from(offset / u64::from(truth.manifest.chunk_size.max(1))).ok()?;
        let (at, _) = truth.manifest.chunk_range(i)?;
        self.same
            .contains(i)
            .then(|| truth.chunk(i).map(|c| (at, c)))?
    }

    /// The marked truth chunks that overlap `from..to`: index, offset, length.
    fn truth_chunks_in(&self, from: u64, to: u64) -> Vec<(u32, u64, u32)> {
        let Some(truth) = self.truth.as_ref().filter(|_| from < to) else {
            return Vec::new();
        };
        let chunk_size = u64::from(truth.manifest.chunk_size.max(1));
        let (first, last) = (from / chunk_size, (to - 1) / chunk_size);
        (first..=last)
            .filter_map(|i| u32::try_from(i).ok())
            .filter(|i| self.same.contains(*i))
            .filter_map(|i| truth.manifest.chunk_range(i).map(|(at, len)| (i, at, len)))
            .collect()
    }

    /// Up to `len` bytes at `offset` (short at the end, as `pread` is), copied.
    pub fn read(&self, offset: u64, len: usize) -> Vec<u8> {
        let end = offset.saturating_add(len as u64).min(self.size);
        if offset >= end {
            return Vec::new();
        }
        let mut out = vec![0u8; (end - offset) as usize];
        let mut put = |at: u64, bytes: &[u8]| {
            let dst = out.get_mut((at - offset) as usize..(at - offset) as usize + bytes.len());
            if let Some(dst) = dst {
                dst.copy_from_slice(bytes);
            }
        };
        if let Some(truth) = &self.truth {
            for (_, at, len) in self.truth_chunks_in(offset, end) {
                let (from, to) = (offset.max(at), end.min(at + u64::from(len)));
                put(from, &truth.read(from, (to - from) as usize));
            }
        }
        let first = self
            .pieces
            .range(..=offset)
            .next_back()
            .map_or(offset, |(at, _)| *at);
        for (at, piece) in self.pieces.range(first..end) {
            let (from, to) = (offset.max(*at), end.min(at + piece.len() as u64));
            if from < to {
                put(
                    from,
                    piece
                        .get((from - at) as usize..(to - at) as usize)
                        .unwrap_or_default(),
                );
            }
        }
        out
    }

    /// Replaces the bytes at `offset` with `data`: marked as the chunk of `same_as` when
    /// the caller knows `data` is exactly that (checked in debug builds), kept otherwise.
    pub fn write(&mut self, offset: u64, data: Bytes, same_as: Option<&Arc<Truth>>) {
        if data.is_empty() {
            return;
        }
        let end = offset + data.len() as u64;
        self.unmark(offset, end);
        self.cut(offset, end);
        let ours = |t: &&Arc<Truth>| self.truth.as_ref().is_none_or(|mine| Arc::ptr_eq(mine, t));
        let chunk = same_as.filter(ours).and_then(|t| {
            let i = u32::try_from(offset / u64::from(t.manifest.chunk_size.max(1))).ok()?;
            let (at, len) = t.manifest.chunk_range(i)?;
            (at == offset && len as usize == data.len()).then(|| (t.clone(), i))
        });
        match chunk {
            Some((truth, i)) => {
                debug_assert!(
                    truth.chunk_by_reference(&data) == Some(i)
                        || truth.chunk(i).is_some_and(|c| c == data)
                );
                if self.truth.is_none() {
                    self.same = ChunkSet::empty(truth.manifest.chunk_count());
                    self.truth = Some(truth);
                }
                self.same.insert(i);
            }
            None => {
                self.pieces.insert(offset, data);
            }
        }
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

    /// Truth chunks overlapping `from..to` are no longer marked: what of them lies outside
    /// the range stays, as pieces (windows of the same chunk, still not made).
    fn unmark(&mut self, from: u64, to: u64) {
        let Some(truth) = self.truth.clone() else {
            return;
        };
        for (i, at, len) in self.truth_chunks_in(from, to) {
            self.same.remove(i);
            let chunk = truth.chunk(i).unwrap_or_default();
            let chunk_end = at + u64::from(len);
            if at < from {
                self.pieces.insert(at, chunk.slice(0..(from - at) as usize));
            }
            if to < chunk_end {
                let rest = chunk.slice((to - at) as usize..len as usize);
                self.pieces.insert(to, rest);
            }
        }
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

    /// Whether these bytes are `truth`'s: at a glance where its chunks are marked, by
    /// comparison elsewhere.
    pub fn same_as(&self, truth: &Truth) -> bool {
        if self.size != truth.size() {
            return false;
        }
        let mine = self
            .truth
            .as_deref()
            .is_some_and(|t| std::ptr::eq(t, truth));
        (0..truth.manifest.chunk_count()).all(|i| {
            if mine && self.same.contains(i) {
                return true;
            }
            let (at, len) = truth.manifest.chunk_range(i).unwrap_or_default();
            self.read(at, len as usize) == truth.read(at, len as usize)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::truth::noise;

    /// The same story over a held truth and a generated one: 300 bytes in 64-byte chunks.
    #[test]
    fn writes_reads_and_references() {
        let held = Truth::held(noise(5, 300).into(), 64).unwrap_or_else(|e| panic!("{e}"));
        let generated = Truth::generated(1, 5, 300, 64).unwrap_or_else(|e| panic!("{e}"));
        for truth in [Arc::new(held), Arc::new(generated)] {
            let all = truth.read(0, 300);
            let chunk = |i: u32| truth.chunk(i).unwrap_or_default();
            let mut c = Content::empty(300);
            c.write(64, Bytes::from(all[64..128].to_vec()), Some(&truth));
            assert!(
                c.same.contains(1) && c.pieces.is_empty(),
                "marked, not kept"
            );
            let read = c.read_bytes(70, 10);
            assert!(read.is_shared(), "read by reference");
            assert_eq!(&read[..], &all[70..80]);
            c.write(0, vec![7; 10].into(), None);
            let mut expected = vec![0u8; 300];
            expected[..10].fill(7);
            expected[64..128].copy_from_slice(&all[64..128]);
            assert_eq!(c.to_vec(), expected);
            assert_eq!(c.read(295, 10).len(), 5, "short read at the end");
            // Overwrite across the piece and the marked chunk: what is left of the chunk
            // stays a window of it.
            c.write(5, vec![1; 70].into(), None);
            assert!(!c.same.contains(1));
            assert!(c.pieces.get(&75).is_some_and(Bytes::is_shared));
            let read = c.read(0, 130);
            assert_eq!((&read[..5], &read[5..75]), (&[7; 5][..], &[1; 70][..]));
            assert_eq!(&read[75..128], &all[75..128]);
            assert!(!c.same_as(&truth));
            for i in 0..5 {
                c.write(u64::from(i) * 64, chunk(i), Some(&truth));
            }
            assert!(c.same_as(&truth) && c.pieces.is_empty());
            c.modify(130, 131, |b| b ^ 1);
            assert!(!c.same_as(&truth));
            assert!(Content::of(&truth).same_as(&truth));
            // Bytes equal to the truth's but held apart still compare equal.
            let mut copy = Content::empty(300);
            copy.write(0, all.clone().into(), None);
            assert!(copy.same_as(&truth));
        }
    }

    #[test]
    fn a_generated_file_is_stored_and_served_without_being_made() {
        let truth =
            Arc::new(Truth::generated(1, 9, 10 * 4096, 4096).unwrap_or_else(|e| panic!("{e}")));
        let seeder = Content::of(&truth);
        let mut getter = Content::empty(truth.size());
        for i in 0..10u32 {
            let sent = seeder.read_bytes(u64::from(i) * 4096, 4096);
            assert_eq!(truth.chunk_by_reference(&sent), Some(i));
            getter.write(u64::from(i) * 4096, sent.clone(), Some(&truth));
            assert!(sent.lazy_window().is_some_and(|(l, _)| !l.is_made()));
        }
        assert!(getter.same_as(&truth) && getter.pieces.is_empty());
    }
}
