//! Each node's disk as the world runs it: storage requests (load, store, commit, discard)
//! served from the node's in-memory `Storage`, their completions queued like any action;
//! and the hasher, which answers digests of shared content by comparison.

use super::*;

impl World {
    /// A storage request of `node`, served on its disk and answered.
    pub(super) fn storage_request(&mut self, node: NodeId, request: Output) {
        let incarnation = self.nodes.get(node).map_or(0, |n| n.incarnation);
        let done = match request {
            Output::Load {
                io,
                key,
                offset,
                len,
                ..
            } => {
                let result = self
                    .nodes
                    .get(node)
                    .map_or(Err("no node".into()), |n| n.storage.load(&key, offset, len));
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
                let truth = verified
                    .then(|| self.truth.get(&name).map(|(_, t)| t.clone()))
                    .flatten();
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
            _ => return,
        };
        let action = Action::Io {
            node,
            incarnation,
            done,
        };
        self.push(self.now_us, action);
    }

    pub(super) fn learn_chunks(&mut self, manifest: &Manifest, truth: &Arc<[u8]>) {
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
        let candidates = self.known_chunks.get(&(data.len(), chunk_prefix(data)));
        for (truth, start, digest) in candidates.into_iter().flatten() {
            let by_reference = data
                .window()
                .is_some_and(|(all, at)| Arc::ptr_eq(all, truth) && at == *start);
            if by_reference || truth.get(*start..start + data.len()) == Some(&data[..]) {
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
