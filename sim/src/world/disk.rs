//! Each node's disk as the world runs it: storage requests (load, store, commit, discard)
//! served from the node's in-memory `Storage`, their completions queued like any action;
//! and the hasher, which answers digests of shared content by comparison.

use super::*;
use drizzle_core::secure::spread_into_records;
use drizzle_core::Layout;

/// How long a node's disk takes. Requests run one after another, as on one disk (the real
/// driver's writer thread takes writes in order): each starts when the disk is free and
/// takes `min_us` to `max_us` (uniform), plus its bytes at `bytes_per_sec` (0: no limit),
/// plus `sync_us` for a commit. All zero (the default): every request is done at once.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DiskModel {
    pub min_us: u64,
    pub max_us: u64,
    pub bytes_per_sec: u64,
    pub sync_us: u64,
}

/// A disk fault in force on a node until `until_us` (see `Fault::DiskFails`).
#[derive(Clone, Copy, Debug)]
pub(super) struct DiskFault {
    pub until_us: u64,
    pub reads: bool,
    pub writes: bool,
}

impl World {
    /// How long `request` keeps the disk busy (drawn from the world's RNG only when the
    /// model has a spread, so a run without one draws exactly as before).
    fn service_us(&mut self, request: &Output) -> u64 {
        let model = self.config.disk;
        let base = if model.max_us > model.min_us {
            self.rng.gen_range(model.min_us..=model.max_us)
        } else {
            model.min_us
        };
        let bytes = match request {
            Output::Load { len, .. } => u64::from(*len),
            Output::Store { data, .. } => data.len() as u64,
            _ => 0,
        };
        let transfer = match model.bytes_per_sec {
            0 => 0,
            bps => bytes.saturating_mul(1_000_000) / bps,
        };
        let sync = match request {
            Output::Commit { .. } => model.sync_us,
            _ => 0,
        };
        base + transfer + sync
    }

    /// The fault `request` meets on `node`'s disk now, if any: the error it fails with.
    fn disk_error(&self, node: NodeId, request: &Output) -> Option<String> {
        let fault = self.nodes.get(node)?.disk_fault?;
        if self.now_us >= fault.until_us {
            return None;
        }
        match request {
            Output::Load { .. } if fault.reads => {
                Some("input/output error (simulated disk fault)".into())
            }
            Output::Store { .. } | Output::Commit { .. } | Output::Discard { .. }
                if fault.writes =>
            {
                Some("no space left on device (simulated disk fault)".into())
            }
            _ => None,
        }
    }

    /// A storage request of `node`: served on its disk when the disk gets to it (a faulty
    /// disk fails it and changes nothing), and answered when done.
    pub(super) fn storage_request(&mut self, node: NodeId, request: Output) {
        let incarnation = self.nodes.get(node).map_or(0, |n| n.incarnation);
        let service_us = self.service_us(&request);
        let Some(n) = self.nodes.get_mut(node) else {
            return;
        };
        if n.reads_hang && matches!(request, Output::Load { .. }) {
            return; // never answered
        }
        let done_us = n.disk_free_us.max(self.now_us) + service_us;
        n.disk_free_us = done_us;
        let done = match self.disk_error(node, &request) {
            Some(error) => failed(request, error),
            None => self.serve(node, request),
        };
        let Some(done) = done else {
            return;
        };
        let action = Action::Io {
            node,
            incarnation,
            done,
        };
        self.push(done_us, action);
    }

    /// Does `request` on `node`'s storage; its completion.
    fn serve(&mut self, node: NodeId, request: Output) -> Option<Input<'static>> {
        Some(match request {
            Output::Load {
                io,
                key,
                offset,
                len,
                layout,
                ..
            } => {
                let result = self
                    .nodes
                    .get(node)
                    .map_or(Err("no node".into()), |n| n.storage.load(&key, offset, len));
                let result = match layout {
                    Layout::Plain => result,
                    // Held in memory, so laid out by a copy (a real driver reads into place).
                    Layout::Records => result.map(|b| spread_into_records(&b).into()),
                };
                Input::Loaded { io, result }
            }
            Output::Store {
                io,
                name,
                size,
                offset,
                data,
                ..
            } => {
                // Verified bytes are the shared content there: kept by reference.
                let verified = checkers::check_store(self, node, &name, offset, &data);
                let truth = verified.then(|| self.truth.get(&name).cloned()).flatten();
                let result = match self.nodes.get_mut(node) {
                    Some(n) => n.storage.store(&name, size, offset, data, truth.as_ref()),
                    None => Err("no node".into()),
                };
                Input::Stored { io, result }
            }
            Output::Commit { io, name } => {
                let result = match self.nodes.get_mut(node) {
                    Some(n) => n.storage.commit(&name),
                    None => Err("no node".into()),
                };
                checkers::check_commit(self, node, &name);
                Input::Committed { io, result }
            }
            Output::Discard { io, name } => {
                if let Some(n) = self.nodes.get_mut(node) {
                    n.storage.discard(&name);
                }
                Input::Discarded { io, result: Ok(()) }
            }
            _ => return None,
        })
    }

    /// Files held in memory (a test's own bytes) are learnt chunk by chunk, so that a copy
    /// of a chunk is recognised by comparison; generated ones need not be (their copies
    /// travel by reference, and a copy made is hashed).
    pub(super) fn learn_chunks(&mut self, truth: &Truth) {
        let (manifest, Some(truth)) = (&truth.manifest, truth.held_bytes()) else {
            return;
        };
        for (i, digest) in (0..manifest.chunk_count()).zip(&manifest.hashes) {
            let Some((offset, len)) = manifest.chunk_range(i) else {
                continue;
            };
            let (start, len) = (offset as usize, len as usize);
            let key = (
                len,
                chunk_prefix(truth.get(start..start + len).unwrap_or_default()),
            );
            self.known_chunks
                .entry(key)
                .or_default()
                .push((truth.clone(), start, *digest));
        }
    }

    /// SHA-256 of `data`, by comparison when it is a chunk of shared content.
    /// A window of shared content at a chunk's place is that chunk, known without looking.
    pub(crate) fn digest(&self, data: &Bytes) -> Hash {
        for truth in self.truth.values() {
            let known = truth.chunk_by_reference(data);
            if let Some(digest) = known.and_then(|i| truth.manifest.hashes.get(i as usize)) {
                return *digest;
            }
        }
        let candidates = self.known_chunks.get(&(data.len(), chunk_prefix(data)));
        for (truth, start, digest) in candidates.into_iter().flatten() {
            if truth.get(*start..start + data.len()) == Some(&data[..]) {
                return *digest;
            }
        }
        drizzle_core::manifest::sha256(data)
    }
}

/// The first bytes of a chunk (zero-padded), to find shared chunks it may equal.
fn chunk_prefix(data: &[u8]) -> [u8; 16] {
    let mut prefix = [0u8; 16];
    for (p, b) in prefix.iter_mut().zip(data) {
        *p = *b;
    }
    prefix
}

/// The completion of `request` failed with `error`.
fn failed(request: Output, error: String) -> Option<Input<'static>> {
    match request {
        Output::Load { io, .. } => Some(Input::Loaded {
            io,
            result: Err(error),
        }),
        write => Input::written(&write, Err(error)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use drizzle_core::peer::DownloadRequest;

    /// A generated file's chunks travel unmade and are known by reference; a chunk changed
    /// on the seeder's disk is made, hashed for real, and refused by the getter.
    #[test]
    fn a_corrupted_generated_chunk_is_hashed_and_refused() {
        let mut w = World::new(WorldConfig {
            chunk_size: 4096,
            ..WorldConfig::new(3)
        });
        let seeder = w.add_peer("seed");
        assert_eq!(w.share_generated(seeder, "big", 8 * 4096, 11), Ok(()));
        let name = FileName::new("big").unwrap_or_else(|e| panic!("{e}"));
        let stored = w.storage_mut(seeder).and_then(|s| s.files.get_mut(&name));
        stored
            .unwrap_or_else(|| panic!("shared"))
            .modify(3 * 4096, 3 * 4096 + 1, |b| !b);
        let getter = w.add_peer("get");
        w.run_until(500, |_| false);
        let request = DownloadRequest::whole(name.clone());
        assert!(w.command(getter, PeerCommand::Download(request)).is_ok());
        let ended = |w: &World| w.events_of(getter).any(|e| e.ended_download().is_some());
        w.run_until(60_000, ended);
        let mismatched: Vec<u32> = w
            .events_of(getter)
            .filter_map(|e| match e {
                Event::Mismatch { chunk, .. } => Some(*chunk),
                _ => None,
            })
            .collect();
        assert_eq!(
            mismatched,
            [3],
            "{:?}",
            w.events_of(getter).collect::<Vec<_>>()
        );
        // Nothing unverified was stored (the checkers ran after every step), and the only
        // holder's copy is refused, not committed.
        assert!(w.violations.is_empty(), "{:?}", w.violations);
        let committed = w
            .storage(getter)
            .is_some_and(|s| s.files.contains_key(&name));
        assert!(!committed);
    }
}
