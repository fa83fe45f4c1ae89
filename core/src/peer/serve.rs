//! Serving chunks to other peers: requests queue per connection (bounded), a few loads per
//! connection are outstanding at once (bounding what sits in send buffers), and every answer
//! is the chunk or a refusal saying why.

use super::{Conn, Io, Peer};
use crate::limits::{FETCHER_IDLE_TIMEOUT_MS, MAX_LOADS_PER_CONN, MAX_QUEUED_REQUESTS_PER_CONN};
use crate::link::Link;
use crate::machine::{ConnId, Event, Output, StorageKey};
use crate::manifest::Root;
use crate::time::Timestamp;
use crate::wire::{encode_chunk_data, Message, Role};
use std::collections::VecDeque;
use std::net::SocketAddr;

/// An inbound connection from a peer that fetches from us.
#[derive(Debug)]
pub(super) struct InLink {
    pub link: Link,
    queue: VecDeque<(Root, u32)>,
    loading: usize,
}

impl InLink {
    pub fn new(remote: SocketAddr, now: Timestamp) -> InLink {
        InLink {
            link: Link::new(remote, Role::Peer, now),
            queue: VecDeque::new(),
            loading: 0,
        }
    }
}

impl InLink {
    /// When to drop this fetcher: the link's own deadlines, or idleness while it has
    /// nothing queued or loading.
    pub fn deadline(&self) -> Option<(Timestamp, &'static str)> {
        let idle = (self.queue.is_empty() && self.loading == 0).then_some(FETCHER_IDLE_TIMEOUT_MS);
        self.link.deadline(idle)
    }
}

impl Peer {
    pub(super) fn handle_request(&mut self, now: Timestamp, conn: ConnId, msg: Message) {
        let Message::GetChunk { root, chunk } = msg else {
            let reason = format!("unexpected {} from a fetching peer", msg.kind());
            return self.violation(now, conn, reason);
        };
        if let Err(reason) = self.check_servable(&root, chunk) {
            return self.send(
                conn,
                &Message::ChunkRefused {
                    root,
                    chunk,
                    reason,
                },
            );
        }
        let Some(Conn::In(i)) = self.conns.get_mut(&conn) else {
            return;
        };
        if i.queue.len() >= MAX_QUEUED_REQUESTS_PER_CONN {
            let reason = format!("busy: {MAX_QUEUED_REQUESTS_PER_CONN} requests already queued");
            return self.send(
                conn,
                &Message::ChunkRefused {
                    root,
                    chunk,
                    reason,
                },
            );
        }
        i.queue.push_back((root, chunk));
        self.pump_serving(conn);
    }

    fn check_servable(&self, root: &Root, chunk: u32) -> Result<(), String> {
        match self.have(root) {
            None => Err("file not shared here".into()),
            Some(have) if !have.contains(chunk) => Err(format!("chunk {chunk} not held here")),
            Some(_) => Ok(()),
        }
    }

    /// Starts loads for queued requests while the connection has load slots.
    fn pump_serving(&mut self, conn: ConnId) {
        loop {
            let Some(Conn::In(i)) = self.conns.get_mut(&conn) else {
                return;
            };
            if i.loading >= MAX_LOADS_PER_CONN {
                return;
            }
            let Some((root, chunk)) = i.queue.pop_front() else {
                return;
            };
            i.loading += 1;
            let located = self.by_root.get(&root).and_then(|name| {
                let f = self.files.get(name)?;
                let (offset, len) = f.manifest.chunk_range(chunk)?;
                let key = StorageKey {
                    name: name.clone(),
                    partial: f.partial,
                };
                Some((key, offset, len))
            });
            let Some((key, offset, len)) = located else {
                self.finish_load(conn);
                let reason = "file no longer shared here".to_string();
                self.send(
                    conn,
                    &Message::ChunkRefused {
                        root,
                        chunk,
                        reason,
                    },
                );
                continue;
            };
            let io = self.new_io(Io::Serve { conn, root, chunk });
            self.out.push_back(Output::Load {
                io,
                key,
                offset,
                len,
                conn,
            });
        }
    }

    fn finish_load(&mut self, conn: ConnId) {
        if let Some(Conn::In(i)) = self.conns.get_mut(&conn) {
            i.loading = i.loading.saturating_sub(1);
        }
    }

    pub(super) fn handle_loaded(
        &mut self,
        _now: Timestamp,
        conn: ConnId,
        root: Root,
        chunk: u32,
        result: Result<Option<Vec<u8>>, String>,
    ) {
        let Some(Conn::In(i)) = self.conns.get(&conn) else {
            return; // the fetcher left meanwhile
        };
        let to = i.link.remote;
        self.finish_load(conn);
        let expected = self
            .by_root
            .get(&root)
            .and_then(|n| self.files.get(n))
            .and_then(|f| f.manifest.chunk_range(chunk))
            .map(|(_, len)| len as usize);
        let reply = match result {
            Ok(Some(data)) if Some(data.len()) == expected => {
                self.emit(Event::Served { root, chunk, to });
                for bytes in encode_chunk_data(root, chunk, data) {
                    self.send_bytes(conn, bytes);
                }
                return self.pump_serving(conn);
            }
            Ok(_) => {
                log::warn!(
                    "chunk {chunk} of {} is short on disk; refusing it",
                    root.short()
                );
                let reason = "chunk unreadable here (file changed on disk)".to_string();
                Message::ChunkRefused {
                    root,
                    chunk,
                    reason,
                }
            }
            Err(e) => {
                log::warn!("cannot read chunk {chunk} of {}: {e}", root.short());
                let reason = "chunk unreadable here".to_string();
                Message::ChunkRefused {
                    root,
                    chunk,
                    reason,
                }
            }
        };
        self.send(conn, &reply);
        self.pump_serving(conn);
    }
}
