//! The hosts: each node runs a real core machine (tracker or peer); inputs are fed to it,
//! its outputs drained and acted on, its timer kept in the queue, its events recorded.

use super::*;
use drizzle_core::secure::{Security, SwarmKey};
use rand::RngCore;
use rand_chacha::ChaCha20Rng;

/// Keeps the key streams apart from the seeds they are derived from.
const KEY_SALT: u64 = 0x6b65_795f_7361_6c74;

#[derive(Debug)]
pub(crate) enum NodeMachine {
    Tracker(Box<Tracker>),
    Peer(Box<Peer>),
}

impl NodeMachine {
    pub(super) fn machine(&mut self) -> &mut dyn Machine {
        match self {
            NodeMachine::Tracker(t) => t.as_mut(),
            NodeMachine::Peer(p) => p.as_mut(),
        }
    }
}

#[derive(Debug)]
pub(crate) struct Node {
    pub name: String,
    pub addr: SocketAddr,
    pub is_tracker: bool,
    /// `None` while crashed.
    pub machine: Option<NodeMachine>,
    /// Bumped by every crash, so actions meant for an earlier life are dropped.
    pub(super) incarnation: u32,
    pub storage: Storage,
    pub(super) up_bps: u64,
    pub(super) down_bps: u64,
    pub(super) slow: Option<(u32, u64)>,
    pub(super) up_free_us: u64,
    pub(super) down_free_us: u64,
    pub(super) timer_us: Option<u64>,
    pub(super) next_inbound: u64,
    pub(super) conns: IdMap<ConnId, LinkId>,
    /// One-way latency of the node's own access link, if it has its own (see
    /// `World::latency_us`).
    pub(super) latency_us: Option<u64>,
    /// When the node's disk has finished what it was asked (see `World::storage_request`).
    pub(super) disk_free_us: u64,
    /// A disk fault in force (see `Fault::DiskFails`).
    pub(super) disk_fault: Option<DiskFault>,
    /// Reads are never answered (see `Fault::ReadsHang`).
    pub(super) reads_hang: bool,
    /// Nothing more is read from the network (see `Fault::StopsReading`).
    pub(super) stopped_reading: bool,
    /// Input the machine would not take yet (`Machine::accepts_input`), in arrival order:
    /// it waits in the network, as bytes wait in a socket nobody reads.
    pub(super) held: VecDeque<Held>,
    /// Short writes made in the drain under way, fed back as `Input::Sent` once it is done.
    pub(super) written: Vec<(ConnId, usize)>,
}

/// Input that arrived while its connection's machine held back (see `Node::held`).
#[derive(Debug)]
pub(super) enum Held {
    Data(ConnId, Bytes),
    Closed(ConnId),
}

impl Held {
    fn conn(&self) -> ConnId {
        match self {
            Held::Data(conn, _) | Held::Closed(conn) => *conn,
        }
    }
}

/// Node `id` listens on 127.0.0.(id+1):7000 (labels only: no socket is ever opened).
pub(super) fn node_addr(id: NodeId) -> SocketAddr {
    let [a, b] = (id as u16 + 1).to_be_bytes();
    SocketAddr::new(IpAddr::V4(Ipv4Addr::new(127, 0, a, b)), LISTEN_PORT)
}

/// The id whose `node_addr` has the IP of `addr`, if the IP is of that form (the node may
/// not exist): computed, since a search of 10,000 nodes for each connection took a
/// twentieth of a 10,000-peer swarm's time.
fn node_id_of_ip(addr: SocketAddr) -> Option<NodeId> {
    match addr.ip() {
        IpAddr::V4(ip) => match ip.octets() {
            [127, 0, a, b] => usize::from(u16::from_be_bytes([a, b])).checked_sub(1),
            _ => None,
        },
        IpAddr::V6(_) => None,
    }
}

impl World {
    /// The node at an address (matching the IP, so ephemeral ports resolve too).
    pub fn node_at(&self, addr: SocketAddr) -> Option<NodeId> {
        let id = node_id_of_ip(addr)?;
        (self.nodes.get(id))
            .is_some_and(|n| n.addr.ip() == addr.ip())
            .then_some(id)
    }

    /// The node listening at `addr` (IP and port), if any.
    pub(super) fn node_listening_at(&self, addr: SocketAddr) -> Option<NodeId> {
        self.node_at(addr)
            .filter(|id| self.nodes.get(*id).is_some_and(|n| n.addr == addr))
    }

    pub(super) fn add_node(&mut self, name: &str, is_tracker: bool) -> NodeId {
        let id = self.nodes.len();
        self.nodes.push(Node {
            name: name.to_string(),
            addr: node_addr(id),
            is_tracker,
            machine: None,
            incarnation: 0,
            storage: Storage::default(),
            up_bps: self.config.up_bytes_per_sec,
            down_bps: self.config.down_bytes_per_sec,
            slow: None,
            up_free_us: 0,
            down_free_us: 0,
            timer_us: None,
            next_inbound: 0,
            conns: IdMap::default(),
            latency_us: None,
            disk_free_us: 0,
            disk_fault: None,
            reads_hang: false,
            stopped_reading: false,
            held: VecDeque::new(),
            written: Vec::new(),
        });
        self.start(id);
        id
    }

    pub(super) fn start(&mut self, id: NodeId) {
        let seed = self.seeds.gen();
        let tracker = self.tracker_addr();
        let tune = self.config.tune_peer;
        let security = self.security(seed);
        let Some(node) = self.nodes.get_mut(id) else {
            return;
        };
        node.machine = Some(if node.is_tracker {
            let mut config = TrackerConfig::new(seed);
            config.security = security;
            NodeMachine::Tracker(Box::new(Tracker::new(config)))
        } else {
            let mut config = PeerConfig::new(tracker, node.addr, seed);
            config.security = security;
            tune(&mut config);
            NodeMachine::Peer(Box::new(Peer::new(config)))
        });
        self.reschedule_timer(id);
    }

    /// A node's security: in a closed swarm, the world's key (from the world's seed) and
    /// ephemeral keys seeded from the node's own seed — drawn without touching the seed
    /// stream, so an open world runs exactly as before closed ones existed.
    fn security(&self, node_seed: u64) -> Security {
        if !self.config.closed {
            return Security::Open;
        }
        let mut key = [0u8; 32];
        ChaCha20Rng::seed_from_u64(self.config.seed ^ KEY_SALT).fill_bytes(&mut key);
        let mut secret_seed = [0u8; 32];
        ChaCha20Rng::seed_from_u64(node_seed ^ KEY_SALT).fill_bytes(&mut secret_seed);
        Security::Closed {
            key: SwarmKey::from_bytes(key),
            secret_seed,
        }
    }

    pub(super) fn alive(&self, node: NodeId, incarnation: u32) -> bool {
        self.nodes
            .get(node)
            .is_some_and(|n| n.machine.is_some() && n.incarnation == incarnation)
    }

    pub(super) fn mapped(&self, node: NodeId, conn: ConnId, link: LinkId) -> bool {
        self.nodes
            .get(node)
            .is_some_and(|n| n.conns.get(&conn) == Some(&link))
    }

    /// Feeds one input to a node, then drains it.
    pub(super) fn feed(&mut self, node: NodeId, input: Input<'_>) {
        self.feed_one(node, input);
        self.release_held(node);
    }

    fn feed_one(&mut self, node: NodeId, input: Input<'_>) {
        let now = self.now();
        if let Some(m) = self.nodes.get_mut(node).and_then(|n| n.machine.as_mut()) {
            m.machine().handle(now, input);
        }
        self.drain(node);
    }

    /// Bytes arrived for `conn`: fed to the machine if it takes input on `conn` now and
    /// nothing arrived before them is still waiting; otherwise they wait in line.
    pub(super) fn deliver(&mut self, node: NodeId, conn: ConnId, data: Bytes) {
        let Some(n) = self.nodes.get_mut(node) else {
            return;
        };
        if n.stopped_reading {
            return; // it would wait in a socket nobody reads, for good
        }
        let queued = n.held.iter().any(|h| h.conn() == conn);
        let accepts = n
            .machine
            .as_mut()
            .is_some_and(|m| m.machine().accepts_input(conn));
        if queued || !accepts {
            n.held.push_back(Held::Data(conn, data));
            return;
        }
        let data = Received::Owned(data);
        self.feed(node, Input::Received { conn, data });
    }

    /// `conn` closed: seen after whatever arrived on it before.
    pub(super) fn deliver_close(&mut self, node: NodeId, conn: ConnId) {
        let Some(n) = self.nodes.get_mut(node) else {
            return;
        };
        if n.held.iter().any(|h| h.conn() == conn) {
            n.held.push_back(Held::Closed(conn));
            return;
        }
        let link = n.conns.remove(&conn);
        if let Some(link) = link {
            self.forget_if_unused(link);
        }
        self.feed(node, Input::Closed { conn });
    }

    /// Feeds waiting input the machine takes now, oldest first, each connection's in order.
    fn release_held(&mut self, node: NodeId) {
        loop {
            let Some(n) = self.nodes.get_mut(node) else {
                return;
            };
            let Some(m) = n.machine.as_mut() else {
                return;
            };
            let mut behind = BTreeSet::new();
            let mut next = None;
            for (i, h) in n.held.iter().enumerate() {
                if behind.contains(&h.conn()) {
                    continue;
                }
                let ready = match h {
                    Held::Data(conn, _) => m.machine().accepts_input(*conn),
                    Held::Closed(_) => true,
                };
                if ready {
                    next = Some(i);
                    break;
                }
                behind.insert(h.conn());
            }
            let Some(held) = next.and_then(|i| n.held.remove(i)) else {
                return;
            };
            match held {
                Held::Data(conn, data) => {
                    let data = Received::Owned(data);
                    self.feed_one(node, Input::Received { conn, data });
                }
                Held::Closed(conn) => {
                    if let Some(link) = n.conns.remove(&conn) {
                        self.forget_if_unused(link);
                    }
                    self.feed_one(node, Input::Closed { conn });
                }
            }
        }
    }

    /// The drain rule: take every output, then re-arm the node's timer. Short writes are
    /// reported done once the outputs are taken (see `World::send`).
    pub(super) fn drain(&mut self, node: NodeId) {
        loop {
            let output = self
                .nodes
                .get_mut(node)
                .and_then(|n| n.machine.as_mut())
                .and_then(|m| m.machine().poll_output());
            let Some(output) = output else { break };
            self.handle_output(node, output);
        }
        let written = self
            .nodes
            .get_mut(node)
            .map(|n| std::mem::take(&mut n.written))
            .unwrap_or_default();
        if written.is_empty() {
            self.reschedule_timer(node);
            return;
        }
        for (conn, bytes) in written {
            if node != 0 {
                self.peers_sent_bytes += bytes as u64;
            }
            self.feed(node, Input::Sent { conn, bytes });
        }
    }

    pub(super) fn reschedule_timer(&mut self, node: NodeId) {
        let now_us = self.now_us;
        let Some(n) = self.nodes.get_mut(node) else {
            return;
        };
        let Some(m) = n.machine.as_mut() else { return };
        let Some(t) = m.machine().poll_timeout() else {
            n.timer_us = None;
            return;
        };
        // A timer already due runs at the next millisecond, never in a loop at this instant.
        let at_us = (t.as_ms() * 1000).max(now_us + 1000 - now_us % 1000);
        if n.timer_us != Some(at_us) {
            n.timer_us = Some(at_us);
            let incarnation = n.incarnation;
            self.push(
                at_us,
                Action::Timer {
                    node,
                    incarnation,
                    at_us,
                },
            );
        }
    }

    pub(super) fn record(&mut self, node: NodeId, event: Event) {
        if matches!(event, Event::Served { .. }) {
            *self.served.entry(node).or_default() += 1;
        }
        if event.ended_download().is_some() {
            *self.downloads_ended.entry(node).or_default() += 1;
            self.downloads_ended_total += 1;
        }
        if let (Event::Done { .. }, Some(linger_ms)) = (&event, self.config.leave_after_ms) {
            let at_ms = self.now_ms() + linger_ms;
            self.add_fault(Fault::Crash { at_ms, node });
            self.departures += 1;
        }
        if !self.config.trace {
            if event.ended_download().is_some() {
                self.events.push((self.now_ms(), node, event));
            }
            return;
        }
        let who = |addr: SocketAddr| match self.node_at(addr) {
            Some(n) => self.node_name(n).to_string(),
            None => addr.to_string(),
        };
        let text = event.describe(&who);
        self.trace.push(TraceLine {
            t_ms: self.now_ms(),
            node: self.node_name(node).to_string(),
            text,
            event: Some(event.clone()),
        });
        self.events.push((self.now_ms(), node, event));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_node_id_is_read_back_from_its_address() {
        for id in [0, 1, 254, 255, 256, 9_999, 65_534] {
            assert_eq!(node_id_of_ip(node_addr(id)), Some(id), "node {id}");
        }
        let elsewhere: SocketAddr = "10.0.0.1:7000".parse().unwrap();
        assert_eq!(node_id_of_ip(elsewhere), None);
        assert_eq!(node_id_of_ip("[::1]:7000".parse().unwrap()), None);
    }
}
