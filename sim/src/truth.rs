//! What was first shared under each name — its manifest and its bytes — which every copy is
//! checked against. The bytes are a test's own (held), or generated from the seed chunk by
//! chunk and made only where someone reads them: a simulated 100 GiB file costs its manifest.

use drizzle_core::limits::MAX_CHUNKS_PER_FILE;
use drizzle_core::manifest::{sha256, Hash, ManifestError};
use drizzle_core::{Bytes, Manifest};
use sha2::{Digest, Sha256};
use std::fmt;
use std::sync::Arc;

/// The bytes of each generated chunk that are its own; the rest is a prefix all share.
const TAIL_BYTES: usize = 32;

pub struct Truth {
    pub manifest: Manifest,
    body: Body,
}

enum Body {
    Held(Arc<[u8]>),
    Generated(Arc<Generated>),
}

impl Truth {
    /// `bytes` in chunks of `chunk_size`, hashed.
    pub fn held(bytes: Arc<[u8]>, chunk_size: u32) -> Result<Truth, ManifestError> {
        let manifest = Manifest::from_bytes(&bytes, chunk_size)?;
        Ok(Truth {
            manifest,
            body: Body::Held(bytes),
        })
    }

    /// `size` bytes derived from `seed`, in chunks of `chunk_size`; `file_tag` tells this
    /// file's payloads from other generated files' in the same world.
    pub fn generated(
        file_tag: u32,
        seed: u64,
        size: u64,
        chunk_size: u32,
    ) -> Result<Truth, ManifestError> {
        let generated = Generated::new(file_tag, seed, chunk_size);
        let manifest = generated.manifest(size)?;
        Ok(Truth {
            manifest,
            body: Body::Generated(Arc::new(generated)),
        })
    }

    pub fn size(&self) -> u64 {
        self.manifest.size
    }

    /// The bytes held, when they are (a generated file has none to give).
    pub fn held_bytes(&self) -> Option<&Arc<[u8]>> {
        match &self.body {
            Body::Held(all) => Some(all),
            Body::Generated(_) => None,
        }
    }

    /// Chunk `i`, by reference: a window of the held bytes, or lazy bytes not yet made.
    pub fn chunk(&self, i: u32) -> Option<Bytes> {
        let (offset, len) = self.manifest.chunk_range(i)?;
        let (start, len) = (offset as usize, len as usize);
        match &self.body {
            Body::Held(all) => Bytes::shared(all, start..start + len),
            Body::Generated(g) => Some(Bytes::lazy(g.clone(), g.tag(i), len)),
        }
    }

    /// The chunk `data` is by reference (a window this truth handed out, at that chunk's
    /// place and length), if it is one: known without reading a byte.
    pub fn chunk_by_reference(&self, data: &Bytes) -> Option<u32> {
        let chunk_size = u64::from(self.manifest.chunk_size.max(1));
        let (i, start) = match &self.body {
            Body::Held(all) => {
                let (_, start) = data.window().filter(|(w, _)| Arc::ptr_eq(w, all))?;
                (u32::try_from(start as u64 / chunk_size).ok()?, start)
            }
            Body::Generated(g) => {
                let (lazy, start) = data.lazy_window()?;
                let i = g.chunk_of(lazy.tag())?;
                let offset = u64::from(i) * chunk_size;
                (i, (offset as usize).checked_add(start)?)
            }
        };
        let (offset, len) = self.manifest.chunk_range(i)?;
        (offset == start as u64 && len as usize == data.len()).then_some(i)
    }

    /// `len` bytes at `offset` (short at the end), made and copied.
    pub fn read(&self, offset: u64, len: usize) -> Vec<u8> {
        let end = offset.saturating_add(len as u64).min(self.size());
        if offset >= end {
            return Vec::new();
        }
        match &self.body {
            Body::Held(all) => all
                .get(offset as usize..end as usize)
                .unwrap_or_default()
                .to_vec(),
            Body::Generated(g) => g.read(&self.manifest, offset, end),
        }
    }

    /// Whether `data` is these bytes.
    pub fn equals(&self, data: &[u8]) -> bool {
        match &self.body {
            Body::Held(all) => all.as_ref() == data,
            Body::Generated(_) => {
                data.len() as u64 == self.size() && self.read(0, data.len()) == data
            }
        }
    }
}

impl fmt::Debug for Truth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let how = match self.body {
            Body::Held(_) => "held",
            Body::Generated(_) => "generated",
        };
        write!(f, "Truth({} bytes {how})", self.size())
    }
}

/// A file made from a seed: every chunk is one prefix, the same for all (incompressible
/// bytes from the seed), then `TAIL_BYTES` of its own from the seed and its index. Sharing
/// the prefix lets the manifest be computed from one hash of it, resumed for each tail,
/// instead of hashing the whole file: 100 GiB costs milliseconds, not minutes.
struct Generated {
    file_tag: u32,
    seed: u64,
    chunk_size: u32,
    prefix: Box<[u8]>,
}

impl Generated {
    fn new(file_tag: u32, seed: u64, chunk_size: u32) -> Generated {
        let prefix_len = (chunk_size as usize).saturating_sub(TAIL_BYTES);
        Generated {
            file_tag,
            seed,
            chunk_size,
            prefix: noise(seed, prefix_len).into_boxed_slice(),
        }
    }

    fn tag(&self, chunk: u32) -> u64 {
        u64::from(self.file_tag) << 32 | u64::from(chunk)
    }

    fn chunk_of(&self, tag: u64) -> Option<u32> {
        let file = u32::try_from(tag >> 32).ok()?;
        (file == self.file_tag).then_some(tag as u32)
    }

    /// Chunk `i`'s bytes when it is `len` long: as much of the prefix as leaves room for
    /// the tail, then the tail.
    fn chunk_bytes(&self, i: u32, len: usize) -> Vec<u8> {
        let shared = len.saturating_sub(TAIL_BYTES).min(self.prefix.len());
        let mut out = Vec::with_capacity(len);
        out.extend_from_slice(self.prefix.get(..shared).unwrap_or_default());
        out.extend_from_slice(self.tail(i).get(..len - out.len()).unwrap_or_default());
        out.resize(len, 0);
        out
    }

    /// The bytes of chunk `i` that are its own (all of them but the shared prefix).
    fn tail(&self, i: u32) -> Vec<u8> {
        noise(self.seed.wrapping_add(1 + u64::from(i)), TAIL_BYTES)
    }

    fn manifest(&self, size: u64) -> Result<Manifest, ManifestError> {
        let mut manifest = Manifest {
            size: 0,
            chunk_size: self.chunk_size,
            hashes: Vec::new(),
        };
        manifest.validate()?; // the chunk size, before dividing by it
        let chunk_size = u64::from(self.chunk_size);
        let chunks = size.div_ceil(chunk_size);
        if chunks > u64::from(MAX_CHUNKS_PER_FILE) {
            return Err(ManifestError::TooManyChunks);
        }
        let mut prefix_state = Sha256::new();
        prefix_state.update(&self.prefix);
        let mut hashes = Vec::new();
        for i in 0..chunks {
            let len = (size - i * chunk_size).min(chunk_size) as usize;
            let i = u32::try_from(i).map_err(|_| ManifestError::TooManyChunks)?;
            // A whole chunk is the prefix and its tail: the prefix's hash, resumed.
            let hash: Hash = if len == self.chunk_size as usize {
                let mut state = prefix_state.clone();
                state.update(self.tail(i));
                state.finalize().into()
            } else {
                sha256(&self.chunk_bytes(i, len))
            };
            hashes.push(hash);
        }
        (manifest.size, manifest.hashes) = (size, hashes);
        manifest.validate()?;
        Ok(manifest)
    }

    /// Bytes `offset..end` of the file, chunk by chunk.
    fn read(&self, manifest: &Manifest, offset: u64, end: u64) -> Vec<u8> {
        let chunk_size = u64::from(self.chunk_size.max(1));
        let mut out = Vec::with_capacity((end - offset) as usize);
        let mut at = offset;
        while at < end {
            let Ok(i) = u32::try_from(at / chunk_size) else {
                break;
            };
            let Some((start, len)) = manifest.chunk_range(i) else {
                break;
            };
            let bytes = self.chunk_bytes(i, len as usize);
            let to = end.min(start + u64::from(len));
            out.extend_from_slice(
                bytes
                    .get((at - start) as usize..(to - start) as usize)
                    .unwrap_or_default(),
            );
            at = to;
        }
        out
    }
}

impl drizzle_core::bytes::Source for Generated {
    fn make(&self, tag: u64, len: usize) -> Vec<u8> {
        self.chunk_of(tag)
            .map_or_else(Vec::new, |i| self.chunk_bytes(i, len))
    }
}

/// `len` incompressible bytes from `seed` (xorshift, cheap at a mebibyte, started from the
/// seed's splitmix64 so that nearby seeds give unrelated bytes).
pub fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    let mut x = (z ^ (z >> 31)).max(1);
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_generated_file_is_its_manifest_and_is_made_only_when_read() {
        // 5 chunks of 4 KiB and a short one of 100 bytes (less than a tail and prefix).
        for (size, chunk_size) in [(5 * 4096 + 100, 4096), (3 * 64 + 20, 64), (0, 4096)] {
            let t = Truth::generated(3, 42, size, chunk_size).unwrap_or_else(|e| panic!("{e}"));
            let all = t.read(0, size as usize);
            let made = Manifest::from_bytes(&all, chunk_size).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(t.manifest, made, "the manifest is the bytes' own");
            assert!(t.equals(&all));
            for i in 0..t.manifest.chunk_count() {
                let chunk = t.chunk(i).unwrap_or_default();
                assert_eq!(t.chunk_by_reference(&chunk), Some(i));
                assert!(chunk.lazy_window().is_some_and(|(l, _)| !l.is_made()));
                let (offset, len) = t.manifest.chunk_range(i).unwrap_or_default();
                assert_eq!(
                    &chunk[..],
                    &all[offset as usize..(offset + u64::from(len)) as usize]
                );
                assert_eq!(t.chunk_by_reference(&chunk.slice(1..chunk.len())), None);
                assert_eq!(t.chunk_by_reference(&Bytes::from(chunk.to_vec())), None);
            }
        }
        let (a, b) = (
            Truth::generated(1, 42, 8192, 4096).unwrap_or_else(|e| panic!("{e}")),
            Truth::generated(1, 43, 8192, 4096).unwrap_or_else(|e| panic!("{e}")),
        );
        assert_ne!(a.manifest.hashes[0], a.manifest.hashes[1], "chunks differ");
        assert_ne!(a.manifest, b.manifest, "seeds differ");
        let other = Truth::generated(2, 42, 8192, 4096).unwrap_or_else(|e| panic!("{e}"));
        let theirs = other.chunk(0).unwrap_or_default();
        assert_eq!(a.chunk_by_reference(&theirs), None, "another file's chunk");
    }

    #[test]
    fn a_held_chunk_is_known_by_reference() {
        let bytes: Arc<[u8]> = noise(1, 10_000).into();
        let t = Truth::held(bytes.clone(), 4096).unwrap_or_else(|e| panic!("{e}"));
        let second = t.chunk(1).unwrap_or_default();
        assert_eq!(
            (t.chunk_by_reference(&second), second.len()),
            (Some(1), 4096)
        );
        let skewed = Bytes::shared(&bytes, 100..4196).unwrap_or_default();
        assert_eq!(t.chunk_by_reference(&skewed), None);
        let last = t.chunk(2).unwrap_or_default();
        assert_eq!(
            (t.chunk_by_reference(&last), last.len()),
            (Some(2), 10_000 - 8192)
        );
        assert_eq!(t.read(9_990, 100), bytes[9_990..].to_vec());
    }
}
