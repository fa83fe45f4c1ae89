//! The files this peer can serve, by name and by content root: each file's manifest, the
//! chunks held, those announced as they began to arrive (and those still owed when such a
//! transfer failed), and the record of what was uploaded to whom.

use super::uploads::Uploads;
use crate::chunkset::ChunkSet;
use crate::manifest::{FileName, Manifest, Root};
use std::collections::{BTreeMap, BTreeSet};
use std::ops::Bound;
use std::sync::Arc;

#[derive(Debug, Default)]
pub(super) struct LocalFiles {
    by_name: BTreeMap<FileName, LocalFile>,
    /// The name each root is served under (the first, if several names share content).
    by_root: BTreeMap<Root, FileName>,
}

/// A file this peer can serve.
#[derive(Debug)]
pub(super) struct LocalFile {
    manifest: Arc<Manifest>,
    /// The manifest's root, kept so it is not re-hashed.
    root: Root,
    have: ChunkSet,
    /// Stored in the `.part` file (a download in progress, or `--chunks`).
    partial: bool,
    uploads: Uploads,
    /// Chunks whose data has begun to arrive: already announced as held (see
    /// `Peer::chunk_arriving`); requests for them wait until they are stored.
    arriving: BTreeSet<u32>,
    /// Chunks announced as arriving whose transfer then failed: the tracker still lists
    /// them for us (requests are refused) until they are fetched again and stored.
    owed: BTreeSet<u32>,
}

impl LocalFiles {
    pub fn get(&self, name: &FileName) -> Option<&LocalFile> {
        self.by_name.get(name)
    }

    pub fn get_mut(&mut self, name: &FileName) -> Option<&mut LocalFile> {
        self.by_name.get_mut(name)
    }

    /// The name the file with this root is served under.
    pub fn name_of(&self, root: &Root) -> Option<&FileName> {
        self.by_root.get(root)
    }

    pub fn by_root(&self, root: &Root) -> Option<&LocalFile> {
        self.by_name.get(self.by_root.get(root)?)
    }

    pub fn by_root_mut(&mut self, root: &Root) -> Option<&mut LocalFile> {
        self.by_name.get_mut(self.by_root.get(root)?)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&FileName, &LocalFile)> {
        self.by_name.iter()
    }

    /// The roots served, ascending.
    pub fn roots(&self) -> impl Iterator<Item = &Root> {
        self.by_root.keys()
    }

    /// The roots served after `after`, ascending.
    pub fn roots_after(&self, after: Bound<&Root>) -> impl Iterator<Item = &Root> {
        self.by_root
            .range((after, Bound::Unbounded))
            .map(|(r, _)| r)
    }

    /// Serves `manifest` (root `root`) under `name`, holding `have`; a name now holding
    /// other content is no longer served under its old root.
    pub fn insert(
        &mut self,
        name: FileName,
        manifest: Arc<Manifest>,
        root: Root,
        have: ChunkSet,
        partial: bool,
    ) {
        if let Some(old) = self.by_name.get(&name).map(|f| f.root) {
            if old != root && self.by_root.get(&old) == Some(&name) {
                self.by_root.remove(&old);
            }
        }
        self.by_root.entry(root).or_insert_with(|| name.clone());
        let uploads = Uploads::new(&have);
        let file = LocalFile {
            manifest,
            root,
            have,
            partial,
            uploads,
            arriving: BTreeSet::new(),
            owed: BTreeSet::new(),
        };
        self.by_name.insert(name, file);
    }

    /// Stops serving `name`.
    pub fn remove(&mut self, name: &FileName) -> Option<LocalFile> {
        let file = self.by_name.remove(name)?;
        if self.by_root.get(&file.root) == Some(name) {
            self.by_root.remove(&file.root);
        }
        Some(file)
    }
}

impl LocalFile {
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    pub fn root(&self) -> Root {
        self.root
    }

    /// Chunks verified and stored.
    pub fn have(&self) -> &ChunkSet {
        &self.have
    }

    /// Whether the file is in its `.part` (being downloaded, or only some chunks wanted).
    pub fn is_partial(&self) -> bool {
        self.partial
    }

    /// Chunks we told the tracker we hold: those held, and those announced as they began
    /// to arrive and not yet stored. The tracker's record of us never runs ahead of this.
    pub fn announced(&self) -> ChunkSet {
        let mut all = self.have.clone();
        for chunk in self.arriving.iter().chain(&self.owed) {
            all.insert(*chunk);
        }
        all
    }

    pub fn is_arriving(&self, chunk: u32) -> bool {
        self.arriving.contains(&chunk)
    }

    /// Whether anything of the file can be served now or soon.
    pub fn has_any(&self) -> bool {
        !self.have.is_empty() || !self.arriving.is_empty()
    }

    pub fn uploads(&self) -> &Uploads {
        &self.uploads
    }

    pub fn uploads_mut(&mut self) -> &mut Uploads {
        &mut self.uploads
    }

    /// `chunk` has begun to arrive: whether that is news to announce (not held, not
    /// already arriving).
    pub fn begin_arriving(&mut self, chunk: u32) -> bool {
        !self.have.contains(chunk) && self.arriving.insert(chunk)
    }

    /// Chunks announced as arriving for which `coming` no longer holds: they are owed from
    /// now on (and returned).
    pub fn fail_arrivals(&mut self, coming: impl Fn(u32) -> bool) -> Vec<u32> {
        let failed: Vec<u32> = self
            .arriving
            .iter()
            .copied()
            .filter(|c| !coming(*c))
            .collect();
        for chunk in &failed {
            self.arriving.remove(chunk);
            self.owed.insert(*chunk);
        }
        failed
    }

    /// `chunk` is verified and stored: held. Whether it had been announced as it arrived.
    pub fn hold(&mut self, chunk: u32) -> bool {
        let announced = self.arriving.remove(&chunk);
        self.owed.remove(&chunk);
        if self.have.insert(chunk) {
            self.uploads.held(chunk);
        }
        announced
    }

    /// The download is committed: the file is under its final name.
    pub fn completed(&mut self) {
        self.partial = false;
    }
}
