//! Chunks found on disk when a download starts — an interrupted download's `.part`, or a
//! file already under the final name — are read back and hashed before they count: a
//! record of chunks is only a hint, and the bytes may have changed since it was written.

use super::{Io, OnDisk, Peer};
use crate::bytes::Bytes;
use crate::chunkset::ChunkSet;
use crate::machine::{Event, FailKind, Layout, Output};
use crate::manifest::{FileName, Manifest, Root};
use crate::time::Timestamp;
use crate::wire::SharedFile;
use crate::StorageKey;
use std::collections::{BTreeSet, VecDeque};

/// Chunks read back at once: enough to keep the disk and the hasher busy, few enough that
/// memory stays a few chunks whatever the file's size.
const MAX_CHECK_READS: usize = 4;

/// The chunks of one download still to be checked, and what the check found so far.
#[derive(Debug)]
pub(crate) struct DiskCheck {
    /// Checking the file under the final name (all of it) rather than the `.part`.
    pub in_final: bool,
    /// Chunks not yet judged: neither requested from holders nor counted as held.
    pending: BTreeSet<u32>,
    /// Chunks not yet asked of the disk, lowest first.
    unread: VecDeque<u32>,
    reading: usize,
    good: u32,
    bad: Vec<u32>,
}

impl DiskCheck {
    /// What to check of `on_disk` for a file with `manifest` (root `root`); `None` when
    /// nothing on disk is of use. `Err` names why an existing file stands in the way.
    pub fn plan(
        on_disk: Option<&OnDisk>,
        root: Root,
        manifest: &Manifest,
        replace: bool,
    ) -> Result<Option<DiskCheck>, String> {
        let count = manifest.chunk_count();
        let chunks: BTreeSet<u32> = match on_disk {
            Some(OnDisk::Part { root: r, chunks }) if *r == root => {
                chunks.iter().copied().filter(|c| *c < count).collect()
            }
            Some(OnDisk::Final { size }) if *size == manifest.size => (0..count).collect(),
            Some(OnDisk::Final { size }) if !replace => {
                return Err(format!(
                    "a different file is already there ({size} bytes, the tracker's has {}); \
                     --force replaces it",
                    manifest.size
                ))
            }
            _ => BTreeSet::new(),
        };
        let in_final = matches!(on_disk, Some(OnDisk::Final { .. }));
        // An empty file has no chunk to check: its content is its size.
        if chunks.is_empty() && !(in_final && count == 0 && manifest.size == 0) {
            return Ok(None);
        }
        Ok(Some(DiskCheck {
            in_final,
            unread: chunks.iter().copied().collect(),
            pending: chunks,
            reading: 0,
            good: 0,
            bad: Vec::new(),
        }))
    }

    /// Whether `chunk` still waits for its check.
    pub fn is_pending(&self, chunk: u32) -> bool {
        self.pending.contains(&chunk)
    }

    pub fn chunks(&self) -> u32 {
        u32::try_from(self.pending.len()).unwrap_or(u32::MAX) + self.good
    }

    fn next_read(&mut self) -> Option<u32> {
        if self.reading >= MAX_CHECK_READS {
            return None;
        }
        let chunk = self.unread.pop_front()?;
        self.reading += 1;
        Some(chunk)
    }

    /// Records a verdict; false if `chunk` was not pending (a stale answer).
    fn judge(&mut self, chunk: u32, good: bool) -> bool {
        if !self.pending.remove(&chunk) {
            return false;
        }
        self.reading = self.reading.saturating_sub(1);
        if good {
            self.good += 1;
        } else {
            self.bad.push(chunk);
        }
        true
    }

    fn is_done(&self) -> bool {
        self.pending.is_empty()
    }
}

impl Peer {
    /// Asks the disk for as many chunks of `name`'s check as may be read at once, or ends
    /// the check when nothing is left to judge (an empty file has no chunk).
    pub(super) fn pump_checks(&mut self, now: Timestamp, name: &FileName) {
        let done = self
            .active_mut(name)
            .and_then(|a| a.check())
            .is_some_and(DiskCheck::is_done);
        if done {
            return self.end_check(now, name);
        }
        loop {
            let Some(a) = self.active_mut(name) else {
                return;
            };
            let root = a.root();
            let Some(check) = a.check_mut() else {
                return;
            };
            let in_final = check.in_final;
            let Some(chunk) = check.next_read() else {
                return;
            };
            let Some((offset, len)) = a.manifest().chunk_range(chunk) else {
                continue;
            };
            let io = self.new_io(Io::Check {
                name: name.clone(),
                root,
                chunk,
                hashing: false,
            });
            self.out.push(Output::Load {
                io,
                key: StorageKey {
                    name: name.clone(),
                    partial: !in_final,
                },
                offset,
                len,
                conn: None,
                layout: Layout::Plain,
            });
        }
    }

    /// A chunk to check was read: have it hashed (a failed or short read fails the check).
    pub(super) fn handle_check_loaded(
        &mut self,
        now: Timestamp,
        name: FileName,
        root: Root,
        chunk: u32,
        result: Result<Bytes, String>,
    ) {
        match result {
            Ok(data) => {
                let io = self.new_io(Io::Check {
                    name,
                    root,
                    chunk,
                    hashing: true,
                });
                self.out.push(Output::Hash { io, data });
            }
            Err(_) => self.judge_checked(now, &name, root, chunk, false),
        }
    }

    /// The verdict on one chunk found on disk. A good chunk of a `.part` is held from now
    /// on; a bad one is fetched like any missing chunk. A file under the final name either
    /// is the manifest's content, every chunk of it, or stands in the way.
    pub(super) fn judge_checked(
        &mut self,
        now: Timestamp,
        name: &FileName,
        root: Root,
        chunk: u32,
        good: bool,
    ) {
        let replace = self
            .downloads
            .get(name)
            .is_some_and(|d| d.request().replace);
        let Some(a) = self.active_mut(name).filter(|a| a.root() == root) else {
            return;
        };
        let Some(check) = a.check_mut() else {
            return;
        };
        if !check.judge(chunk, good) {
            return;
        }
        let in_final = check.in_final;
        a.note_progress(now);
        if in_final && !good {
            a.end_check();
            if !replace {
                let reason = format!(
                    "a different file is already there (chunk {chunk} differs from the \
                     tracker's); --force replaces it"
                );
                return self.fail(name.clone(), FailKind::Exists, reason);
            }
            log::info!("{name} differs from the tracker's (chunk {chunk}); replacing it");
            return self.pump(now, name);
        }
        if good && !in_final {
            self.hold_chunk(now, name, chunk);
        }
        self.pump_checks(now, name);
    }

    fn end_check(&mut self, now: Timestamp, name: &FileName) {
        let Some(a) = self.active_mut(name) else {
            return;
        };
        let Some(check) = a.end_check() else {
            return;
        };
        if check.in_final {
            return self.already_complete(name);
        }
        self.emit(Event::Checked {
            name: name.clone(),
            good: check.good,
            bad: check.bad,
        });
        self.pump(now, name);
    }

    /// The file under the name is the manifest's content: nothing to fetch. It is served
    /// from there (and registered) for as long as this peer runs.
    fn already_complete(&mut self, name: &FileName) {
        let Some(a) = self.end_download(name) else {
            return;
        };
        let (root, manifest) = (a.root(), a.shared_manifest().clone());
        let have = ChunkSet::full(manifest.chunk_count());
        let file = SharedFile {
            name: name.clone(),
            manifest: Manifest::clone(&manifest),
            have: have.clone(),
        };
        let bytes = manifest.size;
        self.files.insert(name.clone(), manifest, root, have, false);
        if self.tracker_up() {
            self.send_register(vec![file]);
        }
        self.emit(Event::AlreadyComplete {
            name: name.clone(),
            root,
            bytes,
        });
    }
}
