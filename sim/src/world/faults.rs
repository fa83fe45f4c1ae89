//! Faults applied to the world as the run reaches them: crashes and restarts, partitions,
//! slow links, corrupted storage.

use super::*;

impl World {
    pub(super) fn apply_fault(&mut self, fault: Fault) {
        self.note(format!("fault: {fault:?}"));
        match fault {
            Fault::Crash { node, .. } => self.crash(node),
            Fault::Restart { node, .. } => self.restart(node),
            Fault::Partition { a, b, until_ms, .. } => {
                self.partitions.push((a, b, until_ms * 1000));
                let mut doomed: Vec<LinkId> = self
                    .links
                    .iter()
                    .filter(|(_, l)| {
                        let nodes = [l.ends[0].node, l.ends[1].node];
                        nodes == [a, b] || nodes == [b, a]
                    })
                    .map(|(id, _)| *id)
                    .collect();
                doomed.sort_unstable();
                for link in doomed {
                    self.sever(link);
                }
            }
            Fault::SlowLink {
                node,
                factor,
                until_ms,
                ..
            } => {
                if let Some(n) = self.nodes.get_mut(node) {
                    n.slow = Some((factor, until_ms * 1000));
                }
            }
            Fault::DiskFails {
                node,
                until_ms,
                reads,
                writes,
                ..
            } => {
                if let Some(n) = self.nodes.get_mut(node) {
                    let until_us = until_ms.saturating_mul(1000);
                    n.disk_fault = Some(DiskFault {
                        until_us,
                        reads,
                        writes,
                    });
                }
            }
            Fault::ReadsHang { node, .. } => {
                if let Some(n) = self.nodes.get_mut(node) {
                    n.reads_hang = true;
                }
            }
            Fault::StopsReading { node, .. } => {
                if let Some(n) = self.nodes.get_mut(node) {
                    n.stopped_reading = true;
                    n.held.clear();
                }
            }
            Fault::Corrupt {
                node, file, chunk, ..
            } => {
                let chunk_size = self.config.chunk_size as usize;
                let Ok(name) = FileName::new(file) else {
                    return;
                };
                let Some(data) = self
                    .nodes
                    .get_mut(node)
                    .and_then(|n| n.storage.files.get_mut(&name))
                else {
                    return;
                };
                let start = u64::from(chunk) * chunk_size as u64;
                data.modify(start, start + chunk_size as u64, |b| b ^ 0xA5);
            }
        }
    }

    pub(super) fn crash(&mut self, node: NodeId) {
        let Some(n) = self.nodes.get_mut(node) else {
            return;
        };
        if n.machine.is_none() {
            return;
        }
        n.machine = None;
        n.incarnation += 1;
        n.timer_us = None;
        n.held.clear();
        n.written.clear();
        let mut conns: Vec<(ConnId, LinkId)> = std::mem::take(&mut n.conns).into_iter().collect();
        conns.sort_unstable();
        // Unfinished downloads are lost with the process.
        n.storage.parts.clear();
        for (conn, link) in conns {
            self.close_towards(link, node, conn);
            self.forget_if_unused(link);
        }
    }

    pub(super) fn restart(&mut self, node: NodeId) {
        if self.nodes.get(node).is_none_or(|n| n.machine.is_some()) {
            return;
        }
        self.start(node);
        let files: Vec<FileName> = self
            .nodes
            .get(node)
            .map(|n| n.storage.files.keys().cloned().collect())
            .unwrap_or_default();
        for name in files {
            let Some(manifest) = self.manifest_on_disk(node, &name) else {
                continue;
            };
            let cmd = PeerCommand::Share {
                name,
                manifest,
                have: None,
            };
            // Re-sharing what is on disk; a refusal shows in the trace.
            let _ = self.command(node, cmd);
        }
    }

    /// The manifest of `name` as `node`'s disk holds it now: the truth's when it holds
    /// the truth (known without reading it), hashed from its bytes otherwise.
    fn manifest_on_disk(&self, node: NodeId, name: &FileName) -> Option<Manifest> {
        let content = self.nodes.get(node)?.storage.files.get(name)?;
        match self.truth.get(name) {
            Some(truth) if content.same_as(truth) => Some(truth.manifest.clone()),
            _ => Manifest::from_bytes(&content.to_vec(), self.config.chunk_size).ok(),
        }
    }
}
