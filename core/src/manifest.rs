//! What pins a file's content: its size, chunk size and per-chunk SHA-256 hashes (the
//! manifest), the manifest's own hash (the root), and the validated relative name it is
//! shared under. Chunking and hashing are pure computation, so they live here.

use crate::limits::{
    DEFAULT_CHUNK_SIZE, MAX_CHUNKS_PER_FILE, MAX_CHUNK_SIZE, MAX_NAME_BYTES,
    MAX_NAME_COMPONENT_BYTES, MIN_CHUNK_SIZE,
};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::fmt::{self, Write as _};
use std::sync::Arc;

/// A SHA-256 digest.
pub type Hash = [u8; 32];

/// SHA-256 of `data`.
pub fn sha256(data: &[u8]) -> Hash {
    Sha256::digest(data).into()
}

/// The SHA-256 of a file's encoded manifest: what `list` shows and `get --expect` checks.
/// Human-readable formats (JSON) carry it as lowercase hex, binary ones as 32 bytes.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Root(pub Hash);

impl Serialize for Root {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if s.is_human_readable() {
            s.serialize_str(&self.to_hex())
        } else {
            self.0.serialize(s)
        }
    }
}

impl<'de> Deserialize<'de> for Root {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        if d.is_human_readable() {
            let s = String::deserialize(d)?;
            Root::from_hex(&s).ok_or_else(|| serde::de::Error::custom("root is not 64 hex digits"))
        } else {
            Hash::deserialize(d).map(Root)
        }
    }
}

impl Root {
    /// Lowercase hex, as printed by `list`.
    pub fn to_hex(&self) -> String {
        hex_digits(&self.0).collect()
    }

    pub fn from_hex(s: &str) -> Option<Root> {
        if s.len() != 64 || !s.is_ascii() {
            return None;
        }
        let mut out = [0u8; 32];
        for (i, byte) in out.iter_mut().enumerate() {
            *byte = u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok()?;
        }
        Some(Root(out))
    }

    /// The first 8 hex digits: enough to tell files apart in a log line.
    pub fn short(&self) -> String {
        hex_digits(self.0.get(..4).unwrap_or_default()).collect()
    }
}

/// Lowercase hex digits of `bytes`, without a string per byte: a `list` of 25,000 files
/// spent a third of its time formatting roots a byte at a time.
fn hex_digits(bytes: &[u8]) -> impl Iterator<Item = char> + '_ {
    let digit = |d: u8| char::from_digit(u32::from(d), 16).unwrap_or('0');
    bytes
        .iter()
        .flat_map(move |b| [digit(b >> 4), digit(b & 0xf)])
}

impl fmt::Debug for Root {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Root({})", self.short())
    }
}

impl fmt::Display for Root {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        hex_digits(&self.0).try_for_each(|c| f.write_char(c))
    }
}

/// Why a manifest received from elsewhere is unusable.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ManifestError {
    #[error("chunk size {0} is outside {MIN_CHUNK_SIZE}..={MAX_CHUNK_SIZE}")]
    ChunkSize(u32),
    #[error("file of {size} bytes in chunks of {chunk_size} needs {expected} hashes, got {got}")]
    HashCount {
        size: u64,
        chunk_size: u32,
        expected: u64,
        got: usize,
    },
    #[error("file needs more than {MAX_CHUNKS_PER_FILE} chunks")]
    TooManyChunks,
}

/// Size, chunk size and the SHA-256 of every chunk: everything needed to verify a file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub size: u64,
    pub chunk_size: u32,
    pub hashes: Vec<Hash>,
}

impl Manifest {
    /// Chunks `data` and hashes each chunk.
    pub fn from_bytes(data: &[u8], chunk_size: u32) -> Result<Manifest, ManifestError> {
        let mut builder = ManifestBuilder::new(chunk_size)?;
        builder.update(data);
        builder.finish()
    }

    /// Checks what a remote (or a caller) claims; every manifest from the wire passes here.
    pub fn validate(&self) -> Result<(), ManifestError> {
        if !(MIN_CHUNK_SIZE..=MAX_CHUNK_SIZE).contains(&self.chunk_size) {
            return Err(ManifestError::ChunkSize(self.chunk_size));
        }
        let expected = self.size.div_ceil(u64::from(self.chunk_size));
        if expected > u64::from(MAX_CHUNKS_PER_FILE) {
            return Err(ManifestError::TooManyChunks);
        }
        if expected != self.hashes.len() as u64 {
            return Err(ManifestError::HashCount {
                size: self.size,
                chunk_size: self.chunk_size,
                expected,
                got: self.hashes.len(),
            });
        }
        Ok(())
    }

    /// Number of chunks (a validated manifest never has more than `MAX_CHUNKS_PER_FILE`).
    pub fn chunk_count(&self) -> u32 {
        u32::try_from(self.hashes.len()).unwrap_or(u32::MAX)
    }

    /// Byte offset and length of chunk `i`, or `None` past the end.
    pub fn chunk_range(&self, i: u32) -> Option<(u64, u32)> {
        if i >= self.chunk_count() {
            return None;
        }
        let offset = u64::from(i) * u64::from(self.chunk_size);
        let len = (self.size - offset).min(u64::from(self.chunk_size));
        Some((offset, len as u32))
    }

    /// Whether `data` is exactly chunk `i`.
    pub fn verify_chunk(&self, i: u32, data: &[u8]) -> bool {
        self.chunk_matches(i, data.len(), &sha256(data))
    }

    /// Whether `len` bytes with SHA-256 `digest` are chunk `i` (the digest computed elsewhere).
    pub fn chunk_matches(&self, i: u32, len: usize, digest: &Hash) -> bool {
        match (self.chunk_range(i), self.hashes.get(i as usize)) {
            (Some((_, expected_len)), Some(expected)) => {
                len == expected_len as usize && digest == expected
            }
            _ => false,
        }
    }

    /// SHA-256 of the canonical (postcard) encoding.
    pub fn root(&self) -> Root {
        let encoded = postcard::to_stdvec(self).unwrap_or_default();
        Root(sha256(&encoded))
    }
}

/// A file in fewer chunks than this spreads slowly: few peers can exchange pieces at once.
const MIN_SPREAD_CHUNKS: u64 = 128;
/// The smallest chunk a file gets unless asked: each chunk costs requests and round trips.
const MIN_DEFAULT_CHUNK_SIZE: u32 = 256 * 1024;

/// The chunk size a file of `size` bytes gets unless one is asked for: `DEFAULT_CHUNK_SIZE`,
/// halved (down to 256 KiB) while the file would have fewer than 128 chunks, and doubled
/// (up to `MAX_CHUNK_SIZE`) while it would have more than `MAX_CHUNKS_PER_FILE`. Smaller
/// chunks relay faster, each generation of a chunk's spread taking a shorter transfer: 500
/// simulated peers got 100 MiB in 512 KiB chunks at 1.11x the bound on 1 ms links and 1.15x
/// on 20 ms ones, 1.20x and 1.22x in 1 MiB chunks, and 50 MiB in 256 KiB at 1.12x where 512
/// KiB took 1.20x — but at 100 ms each generation is mostly round trips, which do not
/// shrink with the chunk: 20 MiB in 256 KiB took 2.86x where 512 KiB took 2.74x, hence the
/// floor (docs/swarm.md).
pub fn default_chunk_size(size: u64) -> u32 {
    let chunks = |chunk: u32| size.div_ceil(u64::from(chunk));
    let mut chunk = DEFAULT_CHUNK_SIZE;
    while chunk > MIN_DEFAULT_CHUNK_SIZE && chunks(chunk) < MIN_SPREAD_CHUNKS {
        chunk /= 2;
    }
    while chunk < MAX_CHUNK_SIZE && chunks(chunk) > u64::from(MAX_CHUNKS_PER_FILE) {
        chunk *= 2;
    }
    chunk
}

/// Builds a manifest from a stream of bytes fed in any split, holding at most one chunk.
#[derive(Debug)]
pub struct ManifestBuilder {
    chunk_size: u32,
    size: u64,
    hashes: Vec<Hash>,
    current: Sha256,
    current_len: u32,
}

impl ManifestBuilder {
    pub fn new(chunk_size: u32) -> Result<Self, ManifestError> {
        if !(MIN_CHUNK_SIZE..=MAX_CHUNK_SIZE).contains(&chunk_size) {
            return Err(ManifestError::ChunkSize(chunk_size));
        }
        Ok(ManifestBuilder {
            chunk_size,
            size: 0,
            hashes: Vec::new(),
            current: Sha256::new(),
            current_len: 0,
        })
    }

    pub fn update(&mut self, mut data: &[u8]) {
        while !data.is_empty() {
            let room = (self.chunk_size - self.current_len) as usize;
            let (now, rest) = data.split_at(room.min(data.len()));
            self.current.update(now);
            self.current_len += now.len() as u32;
            self.size += now.len() as u64;
            if self.current_len == self.chunk_size {
                let done = std::mem::take(&mut self.current);
                self.hashes.push(done.finalize().into());
                self.current_len = 0;
            }
            data = rest;
        }
    }

    pub fn finish(mut self) -> Result<Manifest, ManifestError> {
        if self.current_len > 0 {
            self.hashes.push(self.current.finalize().into());
        }
        let manifest = Manifest {
            size: self.size,
            chunk_size: self.chunk_size,
            hashes: self.hashes,
        };
        manifest.validate()?;
        Ok(manifest)
    }
}

/// Why a file name is refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    #[error("name is empty")]
    Empty,
    #[error("name is longer than {MAX_NAME_BYTES} bytes")]
    TooLong,
    #[error("name component is longer than {MAX_NAME_COMPONENT_BYTES} bytes")]
    ComponentTooLong,
    #[error("name must be relative (no leading '/')")]
    Absolute,
    #[error("name has an empty component ('//' or a trailing '/')")]
    EmptyComponent,
    #[error("name has a '.' or '..' component")]
    DotComponent,
    #[error("name contains a backslash")]
    Backslash,
    #[error("name contains a control character")]
    ControlChar,
}

/// A validated file name: a relative path with `/` separators, no `.`/`..`, no empty
/// components, no backslashes or control characters, bounded in length. Safe to join onto a
/// directory. Shared, not copied, when cloned: a peer names its download in most of what it
/// does (copies of names were a tenth of the simulator's allocations).
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct FileName(Arc<str>);

impl FileName {
    pub fn new(name: impl Into<String>) -> Result<FileName, NameError> {
        let name = name.into();
        validate_name(&name)?;
        Ok(FileName(name.into()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The `/`-separated components, each safe as one path element.
    pub fn components(&self) -> impl Iterator<Item = &str> {
        self.0.split('/')
    }
}

fn validate_name(name: &str) -> Result<(), NameError> {
    if name.is_empty() {
        return Err(NameError::Empty);
    }
    if name.len() > MAX_NAME_BYTES {
        return Err(NameError::TooLong);
    }
    if name.starts_with('/') {
        return Err(NameError::Absolute);
    }
    if name.contains('\\') {
        return Err(NameError::Backslash);
    }
    if name.chars().any(char::is_control) {
        return Err(NameError::ControlChar);
    }
    for part in name.split('/') {
        match part {
            "" => return Err(NameError::EmptyComponent),
            "." | ".." => return Err(NameError::DotComponent),
            p if p.len() > MAX_NAME_COMPONENT_BYTES => return Err(NameError::ComponentTooLong),
            _ => {}
        }
    }
    Ok(())
}

impl Serialize for FileName {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for FileName {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        FileName::new(s).map_err(serde::de::Error::custom)
    }
}

impl fmt::Debug for FileName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.0)
    }
}

impl fmt::Display for FileName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunking_covers_every_byte() {
        let data: Vec<u8> = (0..1000u32).map(|i| i as u8).collect();
        let m = Manifest::from_bytes(&data, 300).unwrap();
        assert_eq!(m.chunk_count(), 4);
        assert_eq!(m.chunk_range(3), Some((900, 100)));
        assert_eq!(m.chunk_range(4), None);
        assert!(m.verify_chunk(3, &data[900..]));
        assert!(!m.verify_chunk(2, &data[900..]));
        assert!(m.validate().is_ok());
    }

    #[test]
    fn builder_is_split_independent() {
        let data = vec![7u8; 1000];
        let whole = Manifest::from_bytes(&data, 128).unwrap();
        let mut b = ManifestBuilder::new(128).unwrap();
        for piece in data.chunks(37) {
            b.update(piece);
        }
        assert_eq!(b.finish().unwrap(), whole);
    }

    #[test]
    fn empty_file_has_no_chunks() {
        let m = Manifest::from_bytes(&[], 1024).unwrap();
        assert_eq!(m.chunk_count(), 0);
        assert!(m.validate().is_ok());
    }

    #[test]
    fn lying_manifests_are_refused() {
        let mut m = Manifest::from_bytes(&[1; 500], 100).unwrap();
        m.size = 10_000;
        assert!(matches!(m.validate(), Err(ManifestError::HashCount { .. })));
        m.chunk_size = 1;
        assert!(matches!(m.validate(), Err(ManifestError::ChunkSize(1))));
        let huge = Manifest {
            size: u64::MAX,
            chunk_size: MIN_CHUNK_SIZE,
            hashes: vec![],
        };
        assert_eq!(huge.validate(), Err(ManifestError::TooManyChunks));
    }

    #[test]
    fn small_files_get_smaller_chunks_and_huge_ones_larger() {
        let mib = 1u64 << 20;
        assert_eq!(default_chunk_size(0), 256 << 10);
        assert_eq!(default_chunk_size(mib), 256 << 10);
        assert_eq!(default_chunk_size(10 * mib), 256 << 10);
        assert_eq!(default_chunk_size(20 * mib), 256 << 10);
        assert_eq!(default_chunk_size(32 * mib), 256 << 10);
        assert_eq!(default_chunk_size(63 * mib), 256 << 10);
        assert_eq!(default_chunk_size(64 * mib), 512 << 10);
        assert_eq!(default_chunk_size(100 * mib), 512 << 10);
        assert_eq!(default_chunk_size(127 * mib), 512 << 10);
        assert_eq!(default_chunk_size(128 * mib), 1 << 20);
        assert_eq!(default_chunk_size(256 << 30), 1 << 20);
        assert_eq!(default_chunk_size((256 << 30) + 1), 2 << 20);
        assert_eq!(default_chunk_size(u64::MAX), MAX_CHUNK_SIZE);
    }

    #[test]
    fn root_round_trips_through_hex() {
        let root = Manifest::from_bytes(b"hello", 64).unwrap().root();
        assert_eq!(Root::from_hex(&root.to_hex()), Some(root));
        assert_eq!(Root::from_hex("zz"), None);
        let mut bytes = [0u8; 32];
        bytes[0] = 0x0f;
        bytes[31] = 0xa0;
        let root = Root(bytes);
        let hex = format!("0f{}a0", "00".repeat(30));
        assert_eq!((root.to_hex(), root.to_string()), (hex.clone(), hex));
        assert_eq!(root.short(), "0f000000");
    }

    #[test]
    fn names_are_validated() {
        for ok in ["a", "dir/file.txt", "ünïcødé/名前", "a.b/c..d"] {
            assert!(FileName::new(ok).is_ok(), "{ok}");
        }
        let bad = [
            ("", NameError::Empty),
            ("/etc/passwd", NameError::Absolute),
            ("../x", NameError::DotComponent),
            ("a/./b", NameError::DotComponent),
            ("a//b", NameError::EmptyComponent),
            ("a/", NameError::EmptyComponent),
            ("a\\b", NameError::Backslash),
            ("a\0b", NameError::ControlChar),
        ];
        for (name, err) in bad {
            assert_eq!(FileName::new(name), Err(err), "{name:?}");
        }
        assert_eq!(FileName::new("x".repeat(2000)), Err(NameError::TooLong));
        assert_eq!(
            FileName::new("x".repeat(300)),
            Err(NameError::ComponentTooLong)
        );
    }
}
