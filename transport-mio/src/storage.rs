//! Files on disk for a peer: shared files are read with positioned reads; a download is
//! written into `NAME.part` with positioned writes, with a record of verified chunks beside
//! it (`NAME.part.chunks`) so an interrupted download resumes, and renamed into place (file
//! and directory synced) only when the machine commits it. Whole aligned chunks skip the page
//! cache (O_DIRECT) where the filesystem allows it.

use crate::hasher::cores;
use drizzle_core::limits::MAX_CHUNKS_PER_FILE;
use drizzle_core::manifest::{default_chunk_size, sha256, ManifestBuilder};
use drizzle_core::peer::OnDisk;
use drizzle_core::secure::record_bodies;
use drizzle_core::BufferPool;
use drizzle_core::{FileName, Layout, Manifest, Root, StorageKey};
use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, IoSliceMut, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

const PART_SUFFIX: &str = ".part";
const RECORD_SUFFIX: &str = ".part.chunks";
/// Held (flock) by the one `get` writing `NAME.part`. The longest side-file suffix is
/// what `MAX_NAME_COMPONENT_BYTES` leaves room for.
const LOCK_SUFFIX: &str = ".part.lock";
/// Open file handles kept for reuse.
const MAX_OPEN_FILES: usize = 64;
/// Alignment O_DIRECT asks of offsets, lengths and buffers (covers 512 B and 4 KiB sectors).
const DIRECT_ALIGN: usize = 4096;

/// A peer's directory: what it shares and where its downloads land.
#[derive(Debug)]
pub struct FileStore {
    dir: PathBuf,
    open: BTreeMap<StorageKey, File>,
    /// The root each `.part.chunks` record was started for, once known.
    records: BTreeMap<FileName, Root>,
    /// `.part` files opened for direct writes; `None` where the filesystem refuses them.
    direct: BTreeMap<FileName, Option<File>>,
    /// Reused for direct writes, which need an aligned buffer.
    aligned: AlignedBuf,
    /// A commit may replace a file already under the final name (`get --force`).
    replace: bool,
}

/// The lock on one download's `.part` (see [`FileStore::lock`]); released and removed
/// when dropped.
#[derive(Debug)]
pub struct DownloadLock {
    file: File,
    path: PathBuf,
}

impl Drop for DownloadLock {
    fn drop(&mut self) {
        // Removed while still held, so a `get` that opens the path afterwards makes a new
        // lock file rather than locking this one just as it goes.
        let _ = fs::remove_file(&self.path);
        let _ = self.file.unlock();
    }
}

impl FileStore {
    pub fn new(dir: impl Into<PathBuf>) -> FileStore {
        FileStore {
            dir: dir.into(),
            open: BTreeMap::new(),
            records: BTreeMap::new(),
            direct: BTreeMap::new(),
            aligned: AlignedBuf::default(),
            replace: false,
        }
    }

    /// Another store on the same directory with the same settings (for a writer thread;
    /// file handles are not shared).
    pub fn twin(&self) -> FileStore {
        FileStore::new(self.dir.clone()).replacing(self.replace)
    }

    /// Lets a commit replace a file already under the final name (`get --force`).
    pub fn replacing(mut self, replace: bool) -> FileStore {
        self.replace = replace;
        self
    }

    /// Takes the lock that makes this process the only one downloading `name` here;
    /// `None` if another holds it. Two downloads writing one `.part` would each record
    /// chunks the other overwrote.
    pub fn lock(&self, name: &FileName) -> io::Result<Option<DownloadLock>> {
        let path = with_suffix(self.final_path(name), LOCK_SUFFIX);
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent)?;
        }
        loop {
            let file = OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .open(&path)?;
            match file.try_lock() {
                Ok(()) => {}
                Err(fs::TryLockError::WouldBlock) => return Ok(None),
                Err(fs::TryLockError::Error(e)) => return Err(e),
            }
            // The holder before us may have removed the path as we opened it: the lock is
            // ours only if the path still names the file we locked.
            use std::os::unix::fs::MetadataExt;
            let same = fs::metadata(&path)
                .map(|m| m.ino() == file.metadata().map(|f| f.ino()).unwrap_or(0))
                .unwrap_or(false);
            if same {
                return Ok(Some(DownloadLock { file, path }));
            }
        }
    }

    /// What of `name` is already here: a file under the final name, or an interrupted
    /// download's record of chunks. Nothing of it is trusted until the machine checks it.
    pub fn on_disk(&self, name: &FileName) -> io::Result<Option<OnDisk>> {
        let path = self.final_path(name);
        match fs::symlink_metadata(&path) {
            Ok(meta) if meta.is_file() => return Ok(Some(OnDisk::Final { size: meta.len() })),
            Ok(_) => {
                return Err(io::Error::new(
                    io::ErrorKind::AlreadyExists,
                    format!("{} exists and is not a regular file", path.display()),
                ))
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        Ok(self
            .resume_info(name)
            .map(|(root, chunks)| OnDisk::Part { root, chunks }))
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Where `name` lives (joined component by component: names are validated relative
    /// paths, so this never leaves the directory).
    pub fn final_path(&self, name: &FileName) -> PathBuf {
        let mut path = self.dir.clone();
        for part in name.components() {
            path.push(part);
        }
        path
    }

    pub fn part_path(&self, name: &FileName) -> PathBuf {
        with_suffix(self.final_path(name), PART_SUFFIX)
    }

    fn record_path(&self, name: &FileName) -> PathBuf {
        with_suffix(self.final_path(name), RECORD_SUFFIX)
    }

    fn file(&mut self, key: &StorageKey) -> io::Result<&File> {
        if !self.open.contains_key(key) {
            if self.open.len() >= MAX_OPEN_FILES {
                self.open.clear();
            }
            let path = if key.partial {
                self.part_path(&key.name)
            } else {
                self.final_path(&key.name)
            };
            let file = if key.partial {
                if let Some(parent) = path.parent() {
                    fs::create_dir_all(parent)?;
                }
                OpenOptions::new()
                    .read(true)
                    .write(true)
                    .create(true)
                    .truncate(false)
                    .open(&path)?
            } else {
                File::open(&path)?
            };
            self.open.insert(key.clone(), file);
        }
        self.open
            .get(key)
            .ok_or_else(|| io::Error::other("file handle vanished"))
    }

    /// Reads up to `len` bytes at `offset` into a buffer from `pool`, laid out as `layout`
    /// says; a file that shrank gives a short read.
    pub fn load(
        &mut self,
        key: &StorageKey,
        offset: u64,
        len: u32,
        layout: Layout,
        pool: &BufferPool,
    ) -> io::Result<Vec<u8>> {
        let file = self.file(key)?;
        let len = len as usize;
        if layout == Layout::Records {
            let mut buf = pool.take(layout.len(len));
            let got = read_into_records(file, offset, &mut buf, len)?;
            buf.truncate(layout.len(got));
            return Ok(buf);
        }
        let mut buf = pool.take(len);
        let mut got = 0;
        while got < buf.len() {
            let rest = buf.get_mut(got..).unwrap_or_default();
            match file.read_at(rest, offset + got as u64) {
                Ok(0) => break,
                Ok(n) => got += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        buf.truncate(got);
        Ok(buf)
    }

    /// Writes a verified chunk into the `.part` file and records it.
    pub fn store(
        &mut self,
        name: &FileName,
        root: Root,
        size: u64,
        chunk: u32,
        offset: u64,
        data: &[u8],
    ) -> io::Result<()> {
        let key = StorageKey {
            name: name.clone(),
            partial: true,
        };
        let file = self.file(&key)?;
        if file.metadata()?.len() != size {
            file.set_len(size)?;
        }
        if !self.write_direct(name, offset, data)? {
            self.file(&key)?.write_all_at(data, offset)?;
        }
        self.record(name, root, chunk)
    }

    /// Writes `data` past the page cache when it is whole aligned blocks and the filesystem
    /// allows it; false when the caller must write it buffered. Why: a download is written
    /// once and rarely read back soon, and through the cache every GiB costs fresh pages
    /// (slow where a VM's memory is handed out lazily) plus writeback at commit.
    fn write_direct(&mut self, name: &FileName, offset: u64, data: &[u8]) -> io::Result<bool> {
        let aligned =
            offset.is_multiple_of(DIRECT_ALIGN as u64) && data.len().is_multiple_of(DIRECT_ALIGN);
        if !aligned || data.is_empty() {
            return Ok(false);
        }
        if !self.direct.contains_key(name) {
            if self.direct.len() >= MAX_OPEN_FILES {
                self.direct.clear();
            }
            let file = OpenOptions::new()
                .write(true)
                .custom_flags(libc::O_DIRECT)
                .open(self.part_path(name))
                .ok();
            self.direct.insert(name.clone(), file);
        }
        // A payload the decoder placed on a page boundary goes as it is; others are copied.
        let block = if data.as_ptr().align_offset(DIRECT_ALIGN) == 0 {
            Some(data)
        } else {
            self.aligned.holding(data)
        };
        let (Some(Some(file)), Some(block)) = (self.direct.get(name), block) else {
            return Ok(false);
        };
        match file.write_all_at(block, offset) {
            Ok(()) => Ok(true),
            // Some filesystems accept the flag at open but refuse the write.
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
                self.direct.insert(name.clone(), None);
                Ok(false)
            }
            Err(e) => Err(e),
        }
    }

    /// Appends `chunk` to the record of verified chunks, starting a fresh record when the
    /// one there belongs to other content.
    fn record(&mut self, name: &FileName, root: Root, chunk: u32) -> io::Result<()> {
        let path = self.record_path(name);
        if !self.records.contains_key(name) {
            if let Some((r, _)) = self.resume_info(name) {
                self.records.insert(name.clone(), r);
            }
        }
        let fresh = self.records.get(name) != Some(&root);
        let mut file = if fresh {
            let mut f = File::create(&path)?;
            f.write_all(&root.0)?;
            self.records.insert(name.clone(), root);
            f
        } else {
            OpenOptions::new().append(true).open(&path)?
        };
        file.write_all(&chunk.to_le_bytes())
    }

    /// The root and verified chunks of an interrupted download of `name`, if any.
    pub fn resume_info(&self, name: &FileName) -> Option<(Root, Vec<u32>)> {
        let mut bytes = Vec::new();
        File::open(self.record_path(name))
            .ok()?
            .read_to_end(&mut bytes)
            .ok()?;
        let root: [u8; 32] = bytes.get(..32)?.try_into().ok()?;
        let chunks = bytes
            .get(32..)?
            .chunks_exact(4)
            .filter_map(|c| c.try_into().ok().map(u32::from_le_bytes))
            .collect();
        Some((Root(root), chunks))
    }

    /// Syncs the `.part` file, renames it into place and syncs the directory.
    pub fn commit(&mut self, name: &FileName) -> io::Result<()> {
        let key = StorageKey {
            name: name.clone(),
            partial: true,
        };
        // An empty file has no chunk, so its `.part` may not exist yet.
        self.file(&key)?.sync_all()?;
        self.open.retain(|k, _| k.name != *name);
        self.direct.remove(name);
        self.records.remove(name);
        let target = self.final_path(name);
        self.move_into_place(&self.part_path(name), &target)?;
        if let Some(parent) = target.parent() {
            File::open(parent)?.sync_all()?;
        }
        let _ = fs::remove_file(self.record_path(name));
        Ok(())
    }

    /// Renames `part` to `target`; unless replacing, never over a file that appeared there
    /// meanwhile (a hard link fails if the name is taken; where the filesystem has no hard
    /// links, a look first leaves only a short race).
    fn move_into_place(&self, part: &Path, target: &Path) -> io::Result<()> {
        if self.replace {
            return fs::rename(part, target);
        }
        let taken = || {
            io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!(
                    "{} appeared while downloading; --force replaces it",
                    target.display()
                ),
            )
        };
        match fs::hard_link(part, target) {
            Ok(()) => fs::remove_file(part),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Err(taken()),
            Err(_) if fs::symlink_metadata(target).is_ok() => Err(taken()),
            Err(_) => fs::rename(part, target),
        }
    }

    /// Removes the `.part` file and its record (a rejected download).
    pub fn discard(&mut self, name: &FileName) -> io::Result<()> {
        self.open.retain(|k, _| k.name != *name);
        self.direct.remove(name);
        self.records.remove(name);
        let _ = fs::remove_file(self.record_path(name));
        match fs::remove_file(self.part_path(name)) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }
}

/// A byte buffer whose contents start on a `DIRECT_ALIGN` boundary, grown on demand.
#[derive(Debug, Default)]
struct AlignedBuf {
    bytes: Vec<u8>,
}

impl AlignedBuf {
    /// An aligned copy of `data` (`None` cannot happen: the buffer has room for any start).
    fn holding(&mut self, data: &[u8]) -> Option<&[u8]> {
        if self.bytes.len() < data.len() + DIRECT_ALIGN {
            self.bytes = vec![0; data.len() + DIRECT_ALIGN];
        }
        let start = self.bytes.as_ptr().align_offset(DIRECT_ALIGN);
        let window = self.bytes.get_mut(start..start + data.len())?;
        window.copy_from_slice(data);
        Some(window)
    }
}

/// Reads up to `plain` bytes at `offset` into `record_bodies(plain)` of `buf` (sized for
/// them), in one vectored read where the file gives them all at once; how many came.
fn read_into_records(
    mut file: &File,
    offset: u64,
    buf: &mut [u8],
    plain: usize,
) -> io::Result<usize> {
    let mut slices = Vec::new();
    let (mut rest, mut at) = (buf, 0);
    for body in record_bodies(plain) {
        let (gap_and_body, after) = rest
            .split_at_mut_checked(body.end - at)
            .ok_or_else(|| io::Error::other("a buffer too small for its records"))?;
        let (_gap, body_bytes) = gap_and_body.split_at_mut(body.start - at);
        slices.push(IoSliceMut::new(body_bytes));
        (rest, at) = (after, body.end);
    }
    file.seek(SeekFrom::Start(offset))?;
    let mut unread = &mut slices[..];
    let mut got = 0;
    while !unread.is_empty() {
        match file.read_vectored(unread) {
            Ok(0) => break,
            Ok(n) => {
                got += n;
                IoSliceMut::advance_slices(&mut unread, n);
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(got)
}

fn with_suffix(path: PathBuf, suffix: &str) -> PathBuf {
    let mut s = path.into_os_string();
    s.push(suffix);
    PathBuf::from(s)
}

/// What `scan_dir` found: the files to share with their manifests, and what it passed
/// over, each with why (a symlink, a download in progress, an unreadable file, …).
#[derive(Debug, Default)]
pub struct Scan {
    pub files: Vec<(FileName, Manifest)>,
    pub skipped: Vec<(PathBuf, String)>,
}

/// Every regular file under `dir` (recursively, symlinks not followed, downloads in progress
/// skipped) with its manifest. `on_file` hears each name and size before it is hashed. Only
/// `dir` itself being unreadable is an error: whatever else cannot be read is skipped and
/// named, so one bad file does not stop the rest from being shared. Each file is hashed in
/// chunks of `chunk_size`, or of its own `default_chunk_size`.
pub fn scan_dir(
    dir: &Path,
    chunk_size: Option<u32>,
    on_file: &mut dyn FnMut(&FileName, u64),
) -> io::Result<Scan> {
    let mut scan = Scan::default();
    fs::read_dir(dir)?;
    let mut stack = vec![(dir.to_path_buf(), String::new())];
    while let Some((path, prefix)) = stack.pop() {
        let entries = fs::read_dir(&path).and_then(|d| d.collect::<Result<Vec<_>, _>>());
        let mut entries = match entries {
            Ok(entries) => entries,
            Err(e) => {
                scan.skipped
                    .push((path, format!("cannot read the directory: {e}")));
                continue;
            }
        };
        entries.sort_by_key(|e| e.file_name());
        for entry in entries {
            let path = entry.path();
            let mut skip = |why: String| scan.skipped.push((path.clone(), why));
            let Some(file_name) = entry.file_name().to_str().map(str::to_string) else {
                skip("the name is not UTF-8".into());
                continue;
            };
            let rel = format!("{prefix}{file_name}");
            let meta = match entry.metadata() {
                Ok(meta) => meta, // of the entry itself: symlinks are not followed
                Err(e) => {
                    skip(format!("cannot read: {e}"));
                    continue;
                }
            };
            if meta.is_dir() {
                stack.push((entry.path(), format!("{rel}/")));
            } else if meta.file_type().is_symlink() {
                skip("a symbolic link (not followed)".into());
            } else if !meta.is_file() {
                skip("not a regular file".into());
            } else if let Some(s) = [PART_SUFFIX, RECORD_SUFFIX, LOCK_SUFFIX]
                .iter()
                .find(|s| rel.ends_with(*s))
            {
                skip(format!("ends in {s}: a download's working file"));
            } else {
                match FileName::new(rel.clone()) {
                    Ok(name) => {
                        on_file(&name, meta.len());
                        let chunk_size = chunk_size.unwrap_or(default_chunk_size(meta.len()));
                        match hash_file(&entry.path(), chunk_size) {
                            Ok(manifest) => scan.files.push((name, manifest)),
                            Err(e) if e.kind() == io::ErrorKind::InvalidInput => {
                                skip(e.to_string())
                            }
                            Err(e) => skip(format!("cannot read: {e}")),
                        }
                    }
                    Err(e) => skip(format!("cannot be shared under that name: {e}")),
                }
            }
        }
    }
    scan.files.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(scan)
}

/// Hashes a file chunk by chunk on a thread per core, each taking a run of consecutive
/// chunks and holding one chunk's buffer: sharing a large directory is not held to one
/// core's hashing speed, and memory stays a chunk per thread.
pub fn hash_file(path: &Path, chunk_size: u32) -> io::Result<Manifest> {
    // Checks the chunk size, and makes the manifest of an empty file.
    let builder = ManifestBuilder::new(chunk_size).map_err(io::Error::other)?;
    let file = File::open(path)?;
    let size = file.metadata()?.len();
    if size == 0 {
        return builder.finish().map_err(io::Error::other);
    }
    let chunk = u64::from(chunk_size);
    let most = u64::from(MAX_CHUNKS_PER_FILE);
    if size.div_ceil(chunk) > most {
        // Said before hashing: the manifest would be refused after it.
        let fits = size.div_ceil(most);
        let why = format!(
            "{size} bytes in chunks of {chunk_size} would be more than {most} chunks: \
             use a --chunk-size of {fits} or more"
        );
        return Err(io::Error::new(io::ErrorKind::InvalidInput, why));
    }
    let count = usize::try_from(size.div_ceil(chunk)).map_err(io::Error::other)?;
    let threads = cores().clamp(1, count);
    let mut hashes = vec![[0u8; 32]; count];
    let per_thread = count.div_ceil(threads);
    std::thread::scope(|scope| {
        let runs: Vec<_> = hashes
            .chunks_mut(per_thread)
            .enumerate()
            .map(|(t, run)| {
                let file = &file;
                scope.spawn(move || -> io::Result<()> {
                    let mut buf = vec![0u8; chunk_size as usize];
                    let first = (t * per_thread) as u64;
                    for (i, digest) in run.iter_mut().enumerate() {
                        let offset = (first + i as u64) * chunk;
                        let len = (size - offset).min(chunk) as usize;
                        let piece = buf.get_mut(..len).unwrap_or_default();
                        file.read_exact_at(piece, offset)?;
                        *digest = sha256(piece);
                    }
                    Ok(())
                })
            })
            .collect();
        runs.into_iter().try_for_each(|r| {
            r.join()
                .map_err(|_| io::Error::other("a hashing thread panicked"))?
        })
    })?;
    let manifest = Manifest {
        size,
        chunk_size,
        hashes,
    };
    manifest.validate().map_err(io::Error::other)?;
    Ok(manifest)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_commit_and_resume_record() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = FileStore::new(dir.path());
        let name = FileName::new("sub/dir/file.bin").unwrap();
        let root = Root([7; 32]);
        store.store(&name, root, 10, 1, 5, b"world").unwrap();
        assert_eq!(store.resume_info(&name), Some((root, vec![1])));
        store.store(&name, root, 10, 0, 0, b"hello").unwrap();
        assert_eq!(store.resume_info(&name), Some((root, vec![1, 0])));
        assert!(!store.final_path(&name).exists());
        store.commit(&name).unwrap();
        assert_eq!(fs::read(store.final_path(&name)).unwrap(), b"helloworld");
        assert_eq!(store.resume_info(&name), None);
        assert!(!store.part_path(&name).exists());
    }

    #[test]
    fn aligned_chunks_and_a_ragged_tail_make_one_file() {
        // Chunks of 8 KiB go past the page cache where the filesystem allows; the 100-byte
        // tail is written buffered. Out of order, as downloads write them.
        let dir = tempfile::tempdir().unwrap();
        let mut store = FileStore::new(dir.path());
        let name = FileName::new("f").unwrap();
        let content: Vec<u8> = (0..3 * 8192 + 100).map(|i| (i * 7 % 251) as u8).collect();
        let size = content.len() as u64;
        for chunk in [2u32, 0, 3, 1] {
            let start = chunk as usize * 8192;
            let piece = &content[start..(start + 8192).min(content.len())];
            store
                .store(&name, Root([1; 32]), size, chunk, start as u64, piece)
                .unwrap();
        }
        store.commit(&name).unwrap();
        assert_eq!(fs::read(store.final_path(&name)).unwrap(), content);
    }

    /// A chunk for a sealed connection is read into its records' bodies, the bytes the
    /// machine would otherwise copy there; a file that shrank gives the records of what
    /// was there.
    #[test]
    fn a_chunk_is_read_into_record_bodies() {
        let dir = tempfile::tempdir().unwrap();
        let content: Vec<u8> = (0..300_000).map(|i| (i * 7 % 251) as u8).collect();
        fs::write(dir.path().join("f"), &content).unwrap();
        let mut store = FileStore::new(dir.path());
        let key = StorageKey {
            name: FileName::new("f").unwrap(),
            partial: false,
        };
        let pool = BufferPool::default();
        let bodies = |wire: &[u8], len| {
            let mut plain = Vec::new();
            for body in record_bodies(len) {
                plain.extend_from_slice(&wire[body]);
            }
            plain
        };
        let got = store
            .load(&key, 1000, 200_000, Layout::Records, &pool)
            .unwrap();
        assert_eq!(got.len(), Layout::Records.len(200_000));
        assert_eq!(bodies(&got, 200_000), &content[1000..201_000]);
        // Reused (dirty) buffers, and a read past the end.
        pool.give(got.into());
        let short = store
            .load(&key, 250_000, 200_000, Layout::Records, &pool)
            .unwrap();
        assert_eq!(short.len(), Layout::Records.len(50_000));
        assert_eq!(bodies(&short, 50_000), &content[250_000..]);
    }

    /// Hashed on several threads, a file's manifest is the one its bytes give: every chunk
    /// size, a ragged tail, one chunk, none.
    #[test]
    fn a_file_hashed_in_parallel_has_the_manifest_of_its_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        for len in [0usize, 1, 64, 65, 64 * 37 + 5, 4096 * 3] {
            let content: Vec<u8> = (0..len).map(|i| (i * 31 % 251) as u8).collect();
            fs::write(&path, &content).unwrap();
            let want = Manifest::from_bytes(&content, 64).unwrap();
            assert_eq!(hash_file(&path, 64).unwrap(), want, "{len} bytes");
        }
        assert!(
            hash_file(&path, 3).is_err(),
            "a chunk size below the minimum"
        );
    }

    /// A chunk size too small for the file is named before anything is hashed, with the
    /// smallest that fits.
    #[test]
    fn a_file_too_big_for_its_chunk_size_says_which_chunk_size_fits() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sparse");
        let file = File::create(&path).unwrap();
        file.set_len(u64::from(MAX_CHUNKS_PER_FILE) * 64 + 1)
            .unwrap();
        let e = hash_file(&path, 64).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
        assert!(
            e.to_string().ends_with("use a --chunk-size of 65 or more"),
            "{e}"
        );
        let scan = scan_dir(dir.path(), Some(64), &mut |_, _| {}).unwrap();
        let (_, why) = scan.skipped.first().unwrap();
        assert!(
            why.starts_with("16777217 bytes in chunks of 64 would be"),
            "{why}"
        );
    }

    #[test]
    fn scan_skips_symlinks_and_parts() {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir(dir.path().join("d")).unwrap();
        fs::write(dir.path().join("d/a"), b"abc").unwrap();
        fs::write(dir.path().join("b.part"), b"x").unwrap();
        std::os::unix::fs::symlink("/etc/passwd", dir.path().join("link")).unwrap();
        let scan = scan_dir(dir.path(), Some(64), &mut |_, _| {}).unwrap();
        assert_eq!(scan.skipped.len(), 2, "{:?}", scan.skipped);
        let names: Vec<&str> = scan.files.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, vec!["d/a"]);
    }
}
