//! A node's disk, in memory: complete files by name and `.part` files of downloads.
//! It answers the core's Load/Store/Commit/Discard requests the way real files would.

use drizzle_core::{FileName, StorageKey};
use std::collections::BTreeMap;

#[derive(Debug, Default, Clone)]
pub struct Storage {
    pub files: BTreeMap<FileName, Vec<u8>>,
    pub parts: BTreeMap<FileName, Vec<u8>>,
}

impl Storage {
    pub fn load(&self, key: &StorageKey, offset: u64, len: u32) -> Result<Vec<u8>, String> {
        let map = if key.partial {
            &self.parts
        } else {
            &self.files
        };
        let data = map
            .get(&key.name)
            .ok_or_else(|| format!("{}: no such file", key.name))?;
        let start = usize::try_from(offset).map_err(|e| e.to_string())?;
        let end = start.saturating_add(len as usize).min(data.len());
        // A file that shrank yields a short read, as `pread` would.
        Ok(data.get(start..end).map(<[u8]>::to_vec).unwrap_or_default())
    }

    pub fn store(
        &mut self,
        name: &FileName,
        size: u64,
        offset: u64,
        data: &[u8],
    ) -> Result<(), String> {
        let part = self
            .parts
            .entry(name.clone())
            .or_insert_with(|| vec![0; size as usize]);
        let start = offset as usize;
        let slot = part
            .get_mut(start..start + data.len())
            .ok_or_else(|| format!("write past the end of {name}.part"))?;
        slot.copy_from_slice(data);
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
