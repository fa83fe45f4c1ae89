//! The network: TCP-like links between nodes — latency, each node's upload and download
//! bandwidth (a send leaves when the sender's uplink is free and lands when the receiver's
//! downlink is), sends cut at random points, partitions and closes, and receivers that stop
//! reading (their senders' writes stall once the buffers between are full).

use super::*;
use crate::faults::STALLED_READER_WINDOW_BYTES;

/// How much of a large write is reported done at a time (see `send`).
const SENT_PIECE_BYTES: u64 = 256 * 1024;

/// How much of a bulk send lands ahead of the rest: a socket read's worth.
pub(super) const FIRST_BYTES: u64 = 16 * 1024;

#[derive(Debug)]
pub(super) struct LinkEnd {
    pub(super) node: NodeId,
    pub(super) conn: ConnId,
    pub(super) incarnation: u32,
    /// When the last byte sent towards this end arrives.
    pub(super) last_arrival_us: u64,
    /// When the last byte sent towards this end left its sender.
    pub(super) last_departure_us: u64,
    /// Bytes handed to the link towards this end since its node stopped reading
    /// (`Fault::StopsReading`), and of those and earlier ones, bytes whose write completed.
    pub(super) unread_queued_bytes: u64,
    pub(super) unread_bytes: u64,
}

#[derive(Debug)]
pub(super) struct Link {
    pub(super) ends: [LinkEnd; 2],
}

impl World {
    /// One-way latency between `a` and `b`: the world's, or the sum of each node's own
    /// access latency where set (a node without one counts half the world's).
    pub(super) fn latency_us(&self, a: NodeId, b: NodeId) -> u64 {
        let world = self.config.latency_ms * 1000;
        let access = |n: NodeId| self.nodes.get(n).and_then(|n| n.latency_us);
        match (access(a), access(b)) {
            (None, None) => world,
            (x, y) => x.unwrap_or(world / 2) + y.unwrap_or(world / 2),
        }
    }

    pub(super) fn partitioned(&self, a: NodeId, b: NodeId) -> bool {
        self.partitions
            .iter()
            .any(|(x, y, until)| ((*x, *y) == (a, b) || (*x, *y) == (b, a)) && *until > self.now_us)
    }

    pub(super) fn connect(&mut self, node: NodeId, conn: ConnId, addr: SocketAddr) {
        let incarnation = self.nodes.get(node).map_or(0, |n| n.incarnation);
        let target = self.node_listening_at(addr);
        let reachable = target.filter(|t| {
            self.nodes.get(*t).is_some_and(|n| n.machine.is_some()) && !self.partitioned(node, *t)
        });
        let lat = self.latency_us(node, target.unwrap_or(node));
        let Some(server) = reachable else {
            self.push(
                self.now_us + lat,
                Action::ConnectFailed {
                    node,
                    incarnation,
                    conn,
                },
            );
            return;
        };
        let link = self.next_link;
        self.next_link += 1;
        let (server_inc, server_conn) = match self.nodes.get_mut(server) {
            Some(s) => {
                s.next_inbound += 1;
                let c = ConnId::Inbound(s.next_inbound);
                s.conns.insert(c, link);
                (s.incarnation, c)
            }
            None => return,
        };
        if let Some(n) = self.nodes.get_mut(node) {
            n.conns.insert(conn, link);
        }
        let end = |node, conn, incarnation, first_departure_us| LinkEnd {
            node,
            conn,
            incarnation,
            last_arrival_us: 0,
            last_departure_us: first_departure_us,
            unread_queued_bytes: 0,
            unread_bytes: 0,
        };
        // What the connecting side writes at once leaves with the handshake's last ACK, a
        // round trip from now (as TCP sends it, without fast open); the accepting side
        // writes from the moment it accepts.
        let handshake_done_us = self.now_us + 2 * lat;
        self.links.insert(
            link,
            Link {
                ends: [
                    end(node, conn, incarnation, 0),
                    end(server, server_conn, server_inc, handshake_done_us),
                ],
            },
        );
        self.push(self.now_us + lat, Action::Accept { link });
        self.push(self.now_us + 2 * lat, Action::Connected { link });
    }

    /// The link `node`'s connection `conn` is on, and which of its two ends is the other.
    fn route(&self, node: NodeId, conn: ConnId) -> Option<(LinkId, usize)> {
        let link = *self.nodes.get(node)?.conns.get(&conn)?;
        let l = self.links.get(&link)?;
        Some((
            link,
            usize::from(l.ends[0].node == node && l.ends[0].conn == conn),
        ))
    }

    pub(super) fn send(&mut self, node: NodeId, conn: ConnId, bytes: Bytes) {
        let Some((link, to)) = self.route(node, conn) else {
            return;
        };
        let Some(l) = self.links.get(&link) else {
            return;
        };
        let (dest, in_order) = (l.ends[to].node, l.ends[to].last_departure_us);
        let Some(bytes) = self.fit_unread(link, to, bytes) else {
            return; // it never leaves: the other end reads nothing and the buffers are full
        };
        let n = bytes.len() as u64;
        if self.config.tap_wire {
            self.wire.extend_from_slice(&bytes);
        }
        let (up, down) = (self.bandwidth(node).0, self.bandwidth(dest).1);
        let now_us = self.now_us;
        let lat = self.latency_us(node, dest);
        let Some(src) = self.nodes.get_mut(node) else {
            return;
        };
        // Bulk sends queue for the uplink one after another. A short message does not wait
        // behind bulk on other connections (TCP interleaves flows packet by packet), only
        // behind what its own connection sent before; it still uses its share of the link.
        let short = n < self.config.interleave_below_bytes;
        let up_us = n * 1_000_000 / up;
        let queued = src.up_free_us.max(now_us) + up_us;
        src.up_free_us = queued;
        let departed = if short { now_us + up_us } else { queued }.max(in_order);
        let incarnation = src.incarnation;
        // A short write completes at once, as a socket with room in its buffer takes it
        // (and as a driver reports it: after the write, not when the bytes leave) — unless
        // the other end stopped reading, when the window decides.
        let stalled = self.nodes.get(dest).is_some_and(|d| d.stopped_reading);
        let mut done = 0;
        if short && !stalled {
            done = n;
            if let Some(src) = self.nodes.get_mut(node) {
                match src.written.last_mut() {
                    Some((c, bytes)) if *c == conn => *bytes += n as usize,
                    _ => src.written.push((conn, n as usize)),
                }
            }
        }
        // A socket reports a large write done bit by bit as its buffer drains: so does
        // this, a piece at a time, each when its last byte leaves.
        while done < n {
            let piece = SENT_PIECE_BYTES.min(n - done);
            done += piece;
            let at = departed
                .saturating_sub((n - done) * 1_000_000 / up)
                .max(now_us);
            let sent = Action::Sent {
                node,
                incarnation,
                conn,
                bytes: piece as usize,
            };
            self.push(at, sent);
        }
        let Some(dst) = self.nodes.get_mut(dest) else {
            return;
        };
        // A fluid approximation: the last byte lands when it has crossed the wire and when
        // the receiver's downlink has had time to take all `n` bytes (short messages slip
        // between bulk arrivals, as on the uplink). The downlink counts only the time its
        // own capacity takes: a slow sender's bytes trickle in beside other flows (TCP
        // interleaves them), they do not hold the downlink until their last byte lands.
        let down_us = n * 1_000_000 / down;
        let down_done = dst.down_free_us.max(now_us + lat) + down_us;
        dst.down_free_us = down_done;
        let arrived = if short {
            departed + lat + down_us
        } else {
            down_done.max(departed + lat)
        };
        let Some(l) = self.links.get_mut(&link) else {
            return;
        };
        l.ends[to].last_departure_us = departed;
        let arrival = arrived.max(l.ends[to].last_arrival_us);
        let before = l.ends[to].last_arrival_us;
        l.ends[to].last_arrival_us = arrival;
        // Bulk bytes trickle in: the first of them land once they have crossed the wire and
        // the downlink, well before the last (a receiver sees a chunk begin to arrive).
        let mut bytes = bytes;
        if !short {
            let first = FIRST_BYTES.min(n / 2);
            let rest_us = (n - first) * 1_000_000;
            let landed = arrival
                .saturating_sub(rest_us / down)
                .max(queued.saturating_sub(rest_us / up) + lat)
                .clamp(before, arrival);
            let rest = bytes.split_off(first as usize);
            let data = bytes;
            self.push(
                landed,
                Action::Deliver {
                    link,
                    end: to,
                    data,
                },
            );
            bytes = rest;
        }
        for piece in self.split(bytes) {
            self.push(
                arrival,
                Action::Deliver {
                    link,
                    end: to,
                    data: piece,
                },
            );
        }
    }

    /// What of a send towards `end` of `link` leaves: all of it, unless that end's node
    /// stopped reading, when only what still fits its window does (what does not never
    /// uses the sender's uplink).
    fn fit_unread(&mut self, link: LinkId, end: usize, bytes: Bytes) -> Option<Bytes> {
        let n = bytes.len() as u64;
        match self.stalled_window(link, end, n, |e| &mut e.unread_queued_bytes) {
            0 => None,
            // Owned bytes are copied to be sliced: nearly every send leaves whole.
            fit if fit == n => Some(bytes),
            fit => Some(bytes.slice(0..fit as usize)),
        }
    }

    /// How much of a write of `bytes` by `node` on `conn` completes: all of it, unless the
    /// other end stopped reading, when only what still fits that end's window does (so a
    /// sender's writes stall as on TCP once the buffers between them are full).
    pub(super) fn completed_write(&mut self, node: NodeId, conn: ConnId, bytes: usize) -> usize {
        let Some((link, to)) = self.route(node, conn) else {
            return bytes;
        };
        self.stalled_window(link, to, bytes as u64, |e| &mut e.unread_bytes) as usize
    }

    /// Of `n` bytes towards `end` of `link`, how many its node's window still takes, as
    /// counted by `used` (and counting them): all, unless the node stopped reading.
    fn stalled_window(
        &mut self,
        link: LinkId,
        end: usize,
        n: u64,
        used: impl Fn(&mut LinkEnd) -> &mut u64,
    ) -> u64 {
        let Some(e) = self.links.get_mut(&link).and_then(|l| l.ends.get_mut(end)) else {
            return n;
        };
        if !self.nodes.get(e.node).is_some_and(|n| n.stopped_reading) {
            return n;
        }
        let used = used(e);
        let fit = STALLED_READER_WINDOW_BYTES.saturating_sub(*used).min(n);
        *used += fit;
        fit
    }

    /// Cuts a send into up to three pieces at random points, to exercise framing. (Every
    /// send comes through here: no allocation when it stays whole.)
    pub(super) fn split(&mut self, mut bytes: Bytes) -> impl Iterator<Item = Bytes> {
        let mut pieces: [Option<Bytes>; 3] = Default::default();
        if self.config.split_sends && bytes.len() >= 2 && !self.rng.gen_bool(0.5) {
            let mut cuts: BTreeSet<usize> = BTreeSet::new();
            for _ in 0..self.rng.gen_range(1..=2) {
                cuts.insert(self.rng.gen_range(1..bytes.len()));
            }
            // From the last cut back, so each cut is an offset into what is left.
            let last = cuts.len();
            for (i, cut) in cuts.into_iter().rev().enumerate() {
                if let Some(piece) = pieces.get_mut(last - i) {
                    *piece = Some(bytes.split_off(cut));
                }
            }
        }
        if let Some(first) = pieces.first_mut() {
            *first = Some(bytes);
        }
        pieces.into_iter().flatten()
    }

    pub(super) fn bandwidth(&self, node: NodeId) -> (u64, u64) {
        let Some(n) = self.nodes.get(node) else {
            return (1, 1);
        };
        match n.slow {
            Some((factor, until)) if until > self.now_us => {
                let f = u64::from(factor.max(1));
                ((n.up_bps / f).max(1), (n.down_bps / f).max(1))
            }
            _ => (n.up_bps, n.down_bps),
        }
    }

    /// `node` closes its end; the other end hears of it after what was sent has arrived.
    pub(super) fn close(&mut self, node: NodeId, conn: ConnId) {
        let Some(link) = self.nodes.get_mut(node).and_then(|n| n.conns.remove(&conn)) else {
            return;
        };
        self.close_towards(link, node, conn);
        self.forget_if_unused(link);
    }

    /// Forgets `link` once neither end has a connection on it: nothing travels on it again
    /// (a swarm of thousands of peers opens and closes hundreds of thousands of links).
    pub(super) fn forget_if_unused(&mut self, link: LinkId) {
        let used = self
            .links
            .get(&link)
            .is_some_and(|l| l.ends.iter().any(|e| self.mapped(e.node, e.conn, link)));
        if !used {
            self.links.remove(&link);
        }
    }

    /// Both ends of a link hear that it broke (a partition resets it).
    pub(super) fn sever(&mut self, link: LinkId) {
        let Some(l) = self.links.get(&link) else {
            return;
        };
        let lat = self.latency_us(l.ends[0].node, l.ends[1].node);
        for end in 0..2 {
            self.push(self.now_us + lat, Action::Closed { link, end });
        }
    }

    pub(super) fn close_towards(&mut self, link: LinkId, node: NodeId, conn: ConnId) {
        let now_us = self.now_us;
        let Some(l) = self.links.get(&link) else {
            return;
        };
        let to = usize::from(l.ends[0].node == node && l.ends[0].conn == conn);
        let lat = self.latency_us(l.ends[0].node, l.ends[1].node);
        let at = (now_us + lat).max(l.ends[to].last_arrival_us);
        self.push(at, Action::Closed { link, end: to });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use drizzle_core::peer::DownloadRequest;

    /// A world where a seeder shares `bytes` and a getter, half a second in, has just been
    /// told to download them; the getter's id.
    fn one_download(config: WorldConfig, bytes: Vec<u8>) -> (World, NodeId) {
        let mut w = World::new(config);
        let seeder = w.add_peer("seed");
        assert_eq!(w.share(seeder, "f", bytes), Ok(()));
        let getter = w.add_peer("get");
        w.run_until(500, |_| false);
        let Ok(name) = FileName::new("f") else {
            panic!("valid name");
        };
        assert!(w
            .command(getter, PeerCommand::Download(DownloadRequest::whole(name)))
            .is_ok());
        (w, getter)
    }

    /// A short answer is not queued behind the bulk a downloading peer is receiving: a file
    /// list asked mid-download comes back in a round trip, not after the chunks in flight.
    #[test]
    fn short_messages_slip_between_bulk_transfers() {
        let config = WorldConfig {
            latency_ms: 20,
            chunk_size: 1 << 20,
            check_every_step: false,
            interleave_below_bytes: 16 * 1024,
            ..WorldConfig::new(1)
        };
        let (mut w, getter) = one_download(config, vec![7; 20 << 20]);
        w.run_until(1_500, |_| false);
        assert!(w.peer(getter).is_some_and(Peer::is_downloading));
        let asked_ms = w.now_ms();
        assert!(w.command(getter, PeerCommand::List).is_ok());
        let listed = |w: &World| {
            w.events_of(getter)
                .any(|e| matches!(e, Event::FileList { .. }))
        };
        assert!(w.run_until(asked_ms + 5_000, listed));
        let took_ms = w.now_ms() - asked_ms;
        assert!(took_ms <= 60, "the list took {took_ms} ms");
    }

    /// A connection's first bytes from the side that opened it leave when TCP's handshake is
    /// done and land three latencies after the connect; the accepting side's land one
    /// latency after it writes them.
    #[test]
    fn the_first_bytes_of_a_connection_wait_for_its_handshake() {
        let config = WorldConfig {
            latency_ms: 100,
            check_every_step: false,
            ..WorldConfig::new(1)
        };
        let mut w = World::new(config);
        let (a, b) = (w.add_peer("a"), w.add_peer("b"));
        w.run_until(500, |_| false);
        let (conn, connected_us) = (ConnId::Outbound(u64::MAX), w.now_us);
        w.connect(a, conn, w.node_addr(b));
        let Some(link) = w.nodes.get(a).and_then(|n| n.conns.get(&conn)).copied() else {
            panic!("the connection has a link");
        };
        w.send(a, conn, Bytes::from(vec![0u8; 100]));
        let lands_us = |w: &mut World, towards: usize| {
            std::iter::from_fn(|| w.queue.pop())
                .find(|(_, action)| {
                    matches!(action, Action::Deliver { link: l, end, .. } if *l == link && *end == towards)
                })
                .map(|(at_us, _)| at_us - connected_us)
        };
        let first_ms = lands_us(&mut w, 1).map(|us| us / 1000);
        assert_eq!(
            first_ms,
            Some(300),
            "the opener's bytes land after the handshake"
        );
        let Some(server) = w.nodes.get(b).map(|n| n.next_inbound) else {
            panic!("b accepted");
        };
        w.now_us = connected_us + 100_000;
        w.send(b, ConnId::Inbound(server), Bytes::from(vec![0u8; 100]));
        let answer_ms = lands_us(&mut w, 0).map(|us| us / 1000);
        assert_eq!(
            answer_ms,
            Some(200),
            "the acceptor writes as soon as it accepts"
        );
    }

    /// A short write is reported done with the drain that made it, as a driver reports a
    /// write a socket took, not later as a queued action; bulk is reported as it leaves.
    #[test]
    fn short_writes_complete_at_once() {
        let config = WorldConfig {
            chunk_size: 64 * 1024,
            check_every_step: false,
            interleave_below_bytes: 16 * 1024,
            split_sends: false,
            ..WorldConfig::new(3)
        };
        let (mut w, getter) = one_download(config, vec![9; 1 << 20]);
        let (mut bulk_sent, mut short_sent) = (0, 0);
        let done = |w: &World| w.events_of(getter).any(|e| matches!(e, Event::Done { .. }));
        while !done(&w) && w.now_ms() < 60_000 && w.step() {
            for action in w.queue.actions() {
                if let Action::Sent { bytes, .. } = action {
                    match *bytes >= 16 * 1024 {
                        true => bulk_sent += 1,
                        false => short_sent += 1,
                    }
                }
            }
        }
        assert!(w.events_of(getter).any(|e| matches!(e, Event::Done { .. })));
        assert!(bulk_sent > 0, "chunks are reported sent as they leave");
        assert_eq!(short_sent, 0, "short writes waited in the queue");
    }
}
