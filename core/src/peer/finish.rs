//! How a download ends: complete (committed under its final name), partial (`--chunks`),
//! rejected (bad data and no good holder left) or failed — and what it lets go of.

use super::download::{Active, Standing};
use super::fetch::Download;
use super::files::LocalFile;
use super::{Io, Peer};
use crate::machine::{Event, FailKind, Output};
use crate::manifest::FileName;
use crate::time::Timestamp;
use crate::wire::Message;

impl Peer {
    /// Ends the download when it is complete, hopeless or starved.
    pub(super) fn settle(&mut self, now: Timestamp, name: &FileName) {
        let unavailable_after = self.config.unavailable_after_ms;
        let reject_grace = self.config.reject_grace_ms;
        let Some(a) = self.downloads.get_mut(name).and_then(Download::active_mut) else {
            return;
        };
        let in_flight = self.ledger.asked(&a.root()).count();
        match a.judge(now, in_flight, unavailable_after, reject_grace) {
            Standing::Going => {}
            Standing::Complete => self.complete(name),
            Standing::Stalled => {
                let secs = unavailable_after / 1000;
                let reason = format!("no chunk arrived for {secs} s: {}", a.waiting_on());
                self.fail(name.clone(), FailKind::Stalled, reason);
            }
            Standing::Rejected(chunks) => {
                let reason = format!(
                    "hash mismatch in {} chunk(s) and no good holder left for them",
                    chunks.len()
                );
                let rejected = Event::Rejected {
                    name: name.clone(),
                    reason,
                    chunks,
                };
                self.abandon(name);
                // Told once the `.part` file is gone, so "rejected" means cleaned up too.
                let io = self.new_io(Io::Discard(rejected));
                self.out.push(Output::Discard {
                    io,
                    name: name.clone(),
                });
            }
            Standing::Unavailable(stuck) => {
                let reason = format!("no reachable holder for chunk {stuck} of {name}");
                self.fail(name.clone(), FailKind::Unavailable, reason);
            }
        }
    }

    pub(super) fn complete(&mut self, name: &FileName) {
        let Some(a) = self.active_mut(name) else {
            return;
        };
        if a.want().is_full() {
            a.start_commit();
            let io = self.new_io(Io::Commit { name: name.clone() });
            self.out.push(Output::Commit {
                io,
                name: name.clone(),
            });
        } else {
            self.finish(name, false);
        }
    }

    /// Ends the download of `name` that got its file: returns its state, and lets go of
    /// holders if it was the last download.
    pub(super) fn end_download(&mut self, name: &FileName) -> Option<Active> {
        let d = self.downloads.remove(name)?;
        if let Some(a) = d.active() {
            self.ledger.end(&a.root());
        }
        if self.downloads.is_empty() {
            self.drop_holder_conns();
        }
        d.into_active()
    }

    pub(super) fn finish(&mut self, name: &FileName, complete: bool) {
        let Some(a) = self.end_download(name) else {
            return;
        };
        if complete {
            if let Some(f) = self.files.get_mut(name) {
                f.completed();
            }
        }
        let bytes = a
            .have()
            .iter()
            .filter_map(|c| a.manifest().chunk_range(c))
            .map(|(_, len)| u64::from(len))
            .sum();
        self.emit(Event::Done {
            name: name.clone(),
            root: a.root(),
            bytes,
            complete,
            fetched: a.fetched(),
        });
    }

    pub(super) fn fail(&mut self, name: FileName, kind: FailKind, reason: String) {
        self.abandon(&name);
        self.emit(Event::Failed { name, kind, reason });
    }

    /// Drops a download; what it verified stays in the `.part` file but is no longer served
    /// unless shared again.
    pub(super) fn abandon(&mut self, name: &FileName) {
        let Some(d) = self.downloads.remove(name) else {
            return;
        };
        if let Some(a) = d.into_active() {
            let root = a.root();
            self.ledger.end(&root);
            if self.files.get(name).is_some_and(LocalFile::is_partial) {
                self.files.remove(name);
                self.send_tracker(&Message::Unshare { root });
            }
        }
    }
}
