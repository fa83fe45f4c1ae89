//! The simulated world: nodes running real core machines, a (time, seq)-ordered queue of
//! actions, TCP-like links with latency and per-node bandwidth, in-memory disks, faults,
//! and the trace. Everything random comes from one master seed.

use crate::checkers;
use crate::faults::Fault;
use crate::storage::{Content, Storage};
use crate::trace::TraceLine;
use drizzle_core::machine::{Event, Input, IoId, Machine, Output, Received};
use drizzle_core::manifest::Hash;
use drizzle_core::peer::{CommandError, PeerCommand};
use drizzle_core::{
    Bytes, ConnId, FileName, Manifest, Peer, PeerConfig, Timestamp, Tracker, TrackerConfig,
};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;

/// How much of a bulk send lands ahead of the rest: a socket read's worth.
const FIRST_BYTES: u64 = 16 * 1024;

/// Index of a node; the tracker is node 0.
pub type NodeId = usize;
type LinkId = u64;

const LISTEN_PORT: u16 = 7000;

#[derive(Clone, Debug)]
pub struct WorldConfig {
    pub seed: u64,
    pub latency_ms: u64,
    /// Default per-node bandwidths, bytes per second.
    pub up_bytes_per_sec: u64,
    pub down_bytes_per_sec: u64,
    pub chunk_size: u32,
    /// Run the checkers after every step (slower, for tests).
    pub check_every_step: bool,
    /// Adjusts each peer's config (timeouts) before it starts.
    pub tune_peer: fn(&mut PeerConfig),
    /// A run that takes more steps than this has livelocked: it stops with a violation.
    pub max_steps: u64,
    /// Cut sends at random points (exercises framing); off for large swarms, where it
    /// only costs copies.
    pub split_sends: bool,
    /// Keep every event and trace line; when off, only the events that end a download
    /// (a thousand-peer swarm would otherwise keep millions).
    pub trace: bool,
    /// Sends shorter than this (requests, answers, refusals) are not queued behind bulk
    /// data of other connections; see `World::send`.
    pub interleave_below_bytes: u64,
}

impl WorldConfig {
    pub fn new(seed: u64) -> WorldConfig {
        WorldConfig {
            seed,
            latency_ms: 5,
            up_bytes_per_sec: 10_000_000,
            down_bytes_per_sec: 10_000_000,
            chunk_size: 4096,
            check_every_step: true,
            tune_peer: |_| {},
            max_steps: 1_000_000,
            split_sends: true,
            trace: true,
            interleave_below_bytes: 1024,
        }
    }
}

#[derive(Debug)]
pub(crate) enum NodeMachine {
    Tracker(Box<Tracker>),
    Peer(Box<Peer>),
}

impl NodeMachine {
    fn machine(&mut self) -> &mut dyn Machine {
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
    incarnation: u32,
    pub storage: Storage,
    up_bps: u64,
    down_bps: u64,
    slow: Option<(u32, u64)>,
    up_free_us: u64,
    down_free_us: u64,
    timer_us: Option<u64>,
    next_inbound: u64,
    conns: BTreeMap<ConnId, LinkId>,
}

#[derive(Debug)]
struct LinkEnd {
    node: NodeId,
    conn: ConnId,
    incarnation: u32,
    /// When the last byte sent towards this end arrives.
    last_arrival_us: u64,
    /// When the last byte sent towards this end left its sender.
    last_departure_us: u64,
}

#[derive(Debug)]
struct Link {
    ends: [LinkEnd; 2],
}

#[derive(Debug)]
enum Action {
    Accept {
        link: LinkId,
    },
    Connected {
        link: LinkId,
    },
    ConnectFailed {
        node: NodeId,
        incarnation: u32,
        conn: ConnId,
    },
    Sent {
        node: NodeId,
        incarnation: u32,
        conn: ConnId,
        bytes: usize,
    },
    Deliver {
        link: LinkId,
        end: usize,
        data: Bytes,
    },
    Closed {
        link: LinkId,
        end: usize,
    },
    /// A storage request's completion, typed as the machine takes it.
    Io {
        node: NodeId,
        incarnation: u32,
        done: Input<'static>,
    },
    Hashed {
        node: NodeId,
        incarnation: u32,
        io: IoId,
        data: Bytes,
    },
    Timer {
        node: NodeId,
        incarnation: u32,
        at_us: u64,
    },
    Fault(Fault),
}

/// An action due at `at_us`, queued `seq`-th. The queue is a max-heap, so the order is
/// reversed: the earliest action, first queued among equals, comes out first.
#[derive(Debug)]
struct Queued {
    at_us: u64,
    seq: u64,
    action: Action,
}

impl Ord for Queued {
    fn cmp(&self, other: &Self) -> Ordering {
        (other.at_us, other.seq).cmp(&(self.at_us, self.seq))
    }
}

impl PartialOrd for Queued {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for Queued {
    fn eq(&self, other: &Self) -> bool {
        (self.at_us, self.seq) == (other.at_us, other.seq)
    }
}

impl Eq for Queued {}

/// A chunk of shared content: the content, where the chunk starts, its SHA-256.
type KnownChunk = (Arc<[u8]>, usize, Hash);

/// The whole simulated world.
#[derive(Debug)]
pub struct World {
    pub config: WorldConfig,
    now_us: u64,
    seq: u64,
    queue: BinaryHeap<Queued>,
    pub(crate) nodes: Vec<Node>,
    links: BTreeMap<LinkId, Link>,
    next_link: LinkId,
    rng: ChaCha8Rng,
    seeds: ChaCha8Rng,
    partitions: Vec<(NodeId, NodeId, u64)>,
    /// The first manifest and content shared under each name: what every copy must equal.
    pub(crate) truth: BTreeMap<FileName, (Manifest, Arc<[u8]>)>,
    /// Digests of every chunk of shared content, found by length and first bytes: a chunk
    /// that equals one is "hashed" by a comparison, far cheaper than SHA-256 at swarm scale.
    known_chunks: BTreeMap<(usize, [u8; 16]), Vec<KnownChunk>>,
    pub trace: Vec<TraceLine>,
    pub events: Vec<(u64, NodeId, Event)>,
    pub violations: Vec<String>,
    pub steps: u64,
    /// Chunks each node has served, kept even with the trace off.
    pub served: BTreeMap<NodeId, u64>,
}

impl World {
    /// A world with a tracker (node 0) and nothing else.
    pub fn new(config: WorldConfig) -> World {
        let mut seeds = ChaCha8Rng::seed_from_u64(config.seed);
        let rng = ChaCha8Rng::seed_from_u64(seeds.gen());
        let mut world = World {
            config,
            now_us: 0,
            seq: 0,
            queue: BinaryHeap::new(),
            nodes: Vec::new(),
            links: BTreeMap::new(),
            next_link: 0,
            rng,
            seeds,
            partitions: Vec::new(),
            truth: BTreeMap::new(),
            known_chunks: BTreeMap::new(),
            trace: Vec::new(),
            events: Vec::new(),
            violations: Vec::new(),
            steps: 0,
            served: BTreeMap::new(),
        };
        world.add_node("tracker", true);
        world
    }

    pub fn tracker_addr(&self) -> SocketAddr {
        node_addr(0)
    }

    pub fn now_ms(&self) -> u64 {
        self.now_us / 1000
    }

    fn now(&self) -> Timestamp {
        Timestamp(self.now_ms())
    }

    /// Adds a peer named `name`, returning its id. It connects to the tracker at once.
    pub fn add_peer(&mut self, name: &str) -> NodeId {
        self.add_node(name, false)
    }

    fn add_node(&mut self, name: &str, is_tracker: bool) -> NodeId {
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
            conns: BTreeMap::new(),
        });
        self.start(id);
        id
    }

    /// Sets one node's bandwidths, bytes per second.
    pub fn set_bandwidth(&mut self, node: NodeId, up: u64, down: u64) {
        if let Some(n) = self.nodes.get_mut(node) {
            n.up_bps = up.max(1);
            n.down_bps = down.max(1);
        }
    }

    fn start(&mut self, id: NodeId) {
        let seed = self.seeds.gen();
        let tracker = self.tracker_addr();
        let tune = self.config.tune_peer;
        let Some(node) = self.nodes.get_mut(id) else {
            return;
        };
        node.machine = Some(if node.is_tracker {
            NodeMachine::Tracker(Box::new(Tracker::new(TrackerConfig::new(seed))))
        } else {
            let mut config = PeerConfig::new(tracker, node.addr, seed);
            tune(&mut config);
            NodeMachine::Peer(Box::new(Peer::new(config)))
        });
        self.reschedule_timer(id);
    }

    // ---- the user's side ----

    /// Puts `data` on the node's disk as `name` and shares it.
    pub fn share(&mut self, node: NodeId, name: &str, data: Vec<u8>) -> Result<(), String> {
        let name = FileName::new(name).map_err(|e| e.to_string())?;
        let manifest =
            Manifest::from_bytes(&data, self.config.chunk_size).map_err(|e| e.to_string())?;
        let content = match self.truth.get(&name) {
            Some((_, truth)) if truth.as_ref() == data.as_slice() => Content::shared(truth),
            Some(_) => {
                let mut own = Content::empty(data.len() as u64);
                own.write(0, data.into(), None);
                own
            }
            None => {
                let truth: Arc<[u8]> = data.into();
                self.learn_chunks(&manifest, &truth);
                self.truth
                    .insert(name.clone(), (manifest.clone(), truth.clone()));
                Content::shared(&truth)
            }
        };
        if let Some(n) = self.nodes.get_mut(node) {
            n.storage.files.insert(name.clone(), content);
        }
        let cmd = PeerCommand::Share {
            name,
            manifest,
            have: None,
        };
        self.command(node, cmd).map_err(|e| e.to_string())
    }

    fn learn_chunks(&mut self, manifest: &Manifest, truth: &Arc<[u8]>) {
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

    /// Gives a peer a command now.
    pub fn command(&mut self, node: NodeId, cmd: PeerCommand) -> Result<(), CommandError> {
        let now = self.now();
        let result = match self.nodes.get_mut(node).and_then(|n| n.machine.as_mut()) {
            Some(NodeMachine::Peer(p)) => p.command(now, cmd),
            _ => return Ok(()),
        };
        self.drain(node);
        result
    }

    /// Schedules a fault.
    pub fn add_fault(&mut self, fault: Fault) {
        let at = fault.at_ms().saturating_mul(1000).max(self.now_us);
        self.push(at, Action::Fault(fault));
    }

    /// Writes a note into the trace (scenario narration).
    pub fn note(&mut self, text: impl Into<String>) {
        self.trace.push(TraceLine {
            t_ms: self.now_ms(),
            node: "--".into(),
            text: text.into(),
            event: None,
        });
    }

    pub fn peer(&self, node: NodeId) -> Option<&Peer> {
        match self.nodes.get(node)?.machine.as_ref()? {
            NodeMachine::Peer(p) => Some(p),
            NodeMachine::Tracker(_) => None,
        }
    }

    pub fn tracker(&self) -> Option<&Tracker> {
        match self.nodes.first()?.machine.as_ref()? {
            NodeMachine::Tracker(t) => Some(t),
            NodeMachine::Peer(_) => None,
        }
    }

    pub fn storage(&self, node: NodeId) -> Option<&Storage> {
        self.nodes.get(node).map(|n| &n.storage)
    }

    /// Mutable disk access: tests corrupt files this way.
    pub fn storage_mut(&mut self, node: NodeId) -> Option<&mut Storage> {
        self.nodes.get_mut(node).map(|n| &mut n.storage)
    }

    /// The manifest of the content first shared under `name`.
    pub fn manifest(&self, name: &FileName) -> Option<&Manifest> {
        self.truth.get(name).map(|(m, _)| m)
    }

    /// The content first shared under `name`: what every copy must equal.
    pub fn truth(&self, name: &FileName) -> Option<&Arc<[u8]>> {
        self.truth.get(name).map(|(_, data)| data)
    }

    pub fn node_name(&self, node: NodeId) -> &str {
        self.nodes.get(node).map_or("?", |n| n.name.as_str())
    }

    pub fn node_addr(&self, node: NodeId) -> SocketAddr {
        node_addr(node)
    }

    /// The node at an address (matching the IP, so ephemeral ports resolve too).
    pub fn node_at(&self, addr: SocketAddr) -> Option<NodeId> {
        self.nodes.iter().position(|n| n.addr.ip() == addr.ip())
    }

    /// Events a node emitted, in order.
    pub fn events_of(&self, node: NodeId) -> impl Iterator<Item = &Event> {
        self.events
            .iter()
            .filter(move |(_, n, _)| *n == node)
            .map(|(_, _, e)| e)
    }

    // ---- running ----

    /// Runs one queued action; `false` when nothing is left.
    pub fn step(&mut self) -> bool {
        let Some(Queued { at_us, action, .. }) = self.queue.pop() else {
            return false;
        };
        self.now_us = self.now_us.max(at_us);
        self.apply(action);
        self.steps += 1;
        if self.config.check_every_step {
            let found = checkers::check(self);
            self.violations.extend(found);
        }
        true
    }

    /// Runs until `done` holds, the queue empties, or virtual time passes `deadline_ms`.
    /// Returns whether `done` held.
    pub fn run_until(&mut self, deadline_ms: u64, done: impl Fn(&World) -> bool) -> bool {
        loop {
            if done(self) {
                return true;
            }
            if self.steps >= self.config.max_steps {
                let v = format!("livelock: {} steps without finishing", self.steps);
                if !self.violations.contains(&v) {
                    self.violations.push(v);
                }
                return false;
            }
            match self.queue.peek() {
                Some(q) if q.at_us <= deadline_ms.saturating_mul(1000) => {}
                _ => return done(self),
            }
            self.step();
        }
    }

    fn push(&mut self, at_us: u64, action: Action) {
        self.seq += 1;
        let seq = self.seq;
        self.queue.push(Queued { at_us, seq, action });
    }

    fn latency_us(&self) -> u64 {
        self.config.latency_ms * 1000
    }

    fn apply(&mut self, action: Action) {
        match action {
            Action::Accept { link } => {
                let Some(l) = self.links.get(&link) else {
                    return;
                };
                let (server, conn, inc) = (l.ends[1].node, l.ends[1].conn, l.ends[1].incarnation);
                let remote = SocketAddr::new(node_addr(l.ends[0].node).ip(), 40_000 + link as u16);
                if self.alive(server, inc) {
                    self.feed(server, Input::Accepted { conn, remote });
                }
            }
            Action::Connected { link } => {
                let Some(l) = self.links.get(&link) else {
                    return;
                };
                let (node, conn, inc) = (l.ends[0].node, l.ends[0].conn, l.ends[0].incarnation);
                if self.alive(node, inc) && self.mapped(node, conn, link) {
                    self.feed(node, Input::Connected { conn });
                }
            }
            Action::ConnectFailed {
                node,
                incarnation,
                conn,
            } => {
                if self.alive(node, incarnation) {
                    let reason = "connection refused".into();
                    self.feed(node, Input::ConnectFailed { conn, reason });
                }
            }
            Action::Deliver { link, end, data } => {
                let Some(e) = self.links.get(&link).and_then(|l| l.ends.get(end)) else {
                    return;
                };
                let (node, conn, inc) = (e.node, e.conn, e.incarnation);
                if self.alive(node, inc) && self.mapped(node, conn, link) {
                    let data = Received::Owned(data);
                    self.feed(node, Input::Received { conn, data });
                }
            }
            Action::Closed { link, end } => {
                let Some(e) = self.links.get(&link).and_then(|l| l.ends.get(end)) else {
                    return;
                };
                let (node, conn, inc) = (e.node, e.conn, e.incarnation);
                if self.alive(node, inc) && self.mapped(node, conn, link) {
                    if let Some(n) = self.nodes.get_mut(node) {
                        n.conns.remove(&conn);
                    }
                    self.feed(node, Input::Closed { conn });
                }
            }
            Action::Io {
                node,
                incarnation,
                done,
            } => {
                if self.alive(node, incarnation) {
                    self.feed(node, done);
                }
            }
            Action::Hashed {
                node,
                incarnation,
                io,
                data,
            } => {
                if self.alive(node, incarnation) {
                    let digest = self.digest(&data);
                    self.feed(node, Input::Hashed { io, digest, data });
                }
            }
            Action::Timer {
                node,
                incarnation,
                at_us,
            } => {
                let due = self
                    .nodes
                    .get(node)
                    .is_some_and(|n| n.timer_us == Some(at_us));
                if due && self.alive(node, incarnation) {
                    if let Some(n) = self.nodes.get_mut(node) {
                        n.timer_us = None;
                    }
                    let now = self.now();
                    if let Some(m) = self.nodes.get_mut(node).and_then(|n| n.machine.as_mut()) {
                        m.machine().handle_timeout(now);
                    }
                    self.drain(node);
                }
            }
            Action::Sent {
                node,
                incarnation,
                conn,
                bytes,
            } => {
                if self.alive(node, incarnation) {
                    self.feed(node, Input::Sent { conn, bytes });
                }
            }
            Action::Fault(fault) => self.apply_fault(fault),
        }
    }

    fn alive(&self, node: NodeId, incarnation: u32) -> bool {
        self.nodes
            .get(node)
            .is_some_and(|n| n.machine.is_some() && n.incarnation == incarnation)
    }

    fn mapped(&self, node: NodeId, conn: ConnId, link: LinkId) -> bool {
        self.nodes
            .get(node)
            .is_some_and(|n| n.conns.get(&conn) == Some(&link))
    }

    /// Feeds one input to a node, then drains it.
    fn feed(&mut self, node: NodeId, input: Input<'_>) {
        let now = self.now();
        if let Some(m) = self.nodes.get_mut(node).and_then(|n| n.machine.as_mut()) {
            m.machine().handle(now, input);
        }
        self.drain(node);
    }

    /// The drain rule: take every output, then re-arm the node's timer.
    fn drain(&mut self, node: NodeId) {
        loop {
            let output = self
                .nodes
                .get_mut(node)
                .and_then(|n| n.machine.as_mut())
                .and_then(|m| m.machine().poll_output());
            let Some(output) = output else { break };
            self.handle_output(node, output);
        }
        self.reschedule_timer(node);
    }

    fn reschedule_timer(&mut self, node: NodeId) {
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

    fn handle_output(&mut self, node: NodeId, output: Output) {
        let incarnation = self.nodes.get(node).map_or(0, |n| n.incarnation);
        let now_us = self.now_us;
        match output {
            Output::Connect { conn, addr } => self.connect(node, conn, addr),
            Output::Send { conn, bytes } => self.send(node, conn, bytes),
            Output::Close { conn } => self.close(node, conn),
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
                let done = Input::Loaded { io, result };
                self.push(
                    now_us,
                    Action::Io {
                        node,
                        incarnation,
                        done,
                    },
                );
            }
            Output::Hash { io, data } => self.push(
                now_us,
                Action::Hashed {
                    node,
                    incarnation,
                    io,
                    data,
                },
            ),
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
                let done = Input::Stored { io, result };
                self.push(
                    now_us,
                    Action::Io {
                        node,
                        incarnation,
                        done,
                    },
                );
            }
            Output::Commit { io, name } => {
                let result = match self.nodes.get_mut(node) {
                    Some(n) => n.storage.commit(&name),
                    None => Err("no node".into()),
                };
                checkers::check_commit(self, node, &name);
                let done = Input::Committed { io, result };
                self.push(
                    now_us,
                    Action::Io {
                        node,
                        incarnation,
                        done,
                    },
                );
            }
            Output::Discard { io, name } => {
                if let Some(n) = self.nodes.get_mut(node) {
                    n.storage.discard(&name);
                }
                let done = Input::Discarded { io, result: Ok(()) };
                self.push(
                    now_us,
                    Action::Io {
                        node,
                        incarnation,
                        done,
                    },
                );
            }
            Output::Event(event) => self.record(node, event),
        }
    }

    fn record(&mut self, node: NodeId, event: Event) {
        if matches!(event, Event::Served { .. }) {
            *self.served.entry(node).or_default() += 1;
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

    // ---- the network ----

    fn partitioned(&self, a: NodeId, b: NodeId) -> bool {
        self.partitions
            .iter()
            .any(|(x, y, until)| ((*x, *y) == (a, b) || (*x, *y) == (b, a)) && *until > self.now_us)
    }

    fn connect(&mut self, node: NodeId, conn: ConnId, addr: SocketAddr) {
        let incarnation = self.nodes.get(node).map_or(0, |n| n.incarnation);
        let target = self.nodes.iter().position(|n| n.addr == addr);
        let reachable = target.filter(|t| {
            self.nodes.get(*t).is_some_and(|n| n.machine.is_some()) && !self.partitioned(node, *t)
        });
        let lat = self.latency_us();
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
        let end = |node, conn, incarnation| LinkEnd {
            node,
            conn,
            incarnation,
            last_arrival_us: 0,
            last_departure_us: 0,
        };
        self.links.insert(
            link,
            Link {
                ends: [
                    end(node, conn, incarnation),
                    end(server, server_conn, server_inc),
                ],
            },
        );
        self.push(self.now_us + lat, Action::Accept { link });
        self.push(self.now_us + 2 * lat, Action::Connected { link });
    }

    fn send(&mut self, node: NodeId, conn: ConnId, bytes: Bytes) {
        let Some(link) = self
            .nodes
            .get(node)
            .and_then(|n| n.conns.get(&conn))
            .copied()
        else {
            return;
        };
        let Some(l) = self.links.get(&link) else {
            return;
        };
        let to = usize::from(l.ends[0].node == node && l.ends[0].conn == conn);
        let (dest, in_order) = (l.ends[to].node, l.ends[to].last_departure_us);
        let n = bytes.len() as u64;
        let (up, down) = (self.bandwidth(node).0, self.bandwidth(dest).1);
        let now_us = self.now_us;
        let lat = self.latency_us();
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
        let sent = Action::Sent {
            node,
            incarnation,
            conn,
            bytes: n as usize,
        };
        self.push(departed, sent);
        let Some(dst) = self.nodes.get_mut(dest) else {
            return;
        };
        // A fluid approximation: the last byte lands when it has crossed the wire and when
        // the receiver's downlink has had time to take all `n` bytes (short messages slip
        // between bulk arrivals, as on the uplink).
        let down_us = n * 1_000_000 / down;
        let down_done = dst.down_free_us.max(now_us + lat) + down_us;
        dst.down_free_us = if short {
            down_done
        } else {
            down_done.max(departed + lat)
        };
        let arrived = if short {
            departed + lat + down_us
        } else {
            dst.down_free_us
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

    /// Cuts a send into up to three pieces at random points, to exercise framing.
    fn split(&mut self, mut bytes: Bytes) -> Vec<Bytes> {
        if !self.config.split_sends || bytes.len() < 2 || self.rng.gen_bool(0.5) {
            return vec![bytes];
        }
        let mut cuts: BTreeSet<usize> = BTreeSet::new();
        for _ in 0..self.rng.gen_range(1..=2) {
            cuts.insert(self.rng.gen_range(1..bytes.len()));
        }
        let mut pieces = Vec::new();
        // From the last cut back, so each cut is an offset into what is left.
        for cut in cuts.into_iter().rev() {
            pieces.push(bytes.split_off(cut));
        }
        pieces.push(bytes);
        pieces.reverse();
        pieces
    }

    fn bandwidth(&self, node: NodeId) -> (u64, u64) {
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
    fn close(&mut self, node: NodeId, conn: ConnId) {
        let Some(link) = self.nodes.get_mut(node).and_then(|n| n.conns.remove(&conn)) else {
            return;
        };
        self.close_towards(link, node, conn);
    }

    /// Both ends of a link hear that it broke (a partition resets it).
    fn sever(&mut self, link: LinkId) {
        let lat = self.latency_us();
        for end in 0..2 {
            self.push(self.now_us + lat, Action::Closed { link, end });
        }
    }

    fn close_towards(&mut self, link: LinkId, node: NodeId, conn: ConnId) {
        let lat = self.latency_us();
        let now_us = self.now_us;
        let Some(l) = self.links.get(&link) else {
            return;
        };
        let to = usize::from(l.ends[0].node == node && l.ends[0].conn == conn);
        let at = (now_us + lat).max(l.ends[to].last_arrival_us);
        self.push(at, Action::Closed { link, end: to });
    }

    // ---- faults ----

    fn apply_fault(&mut self, fault: Fault) {
        self.note(format!("fault: {fault:?}"));
        match fault {
            Fault::Crash { node, .. } => self.crash(node),
            Fault::Restart { node, .. } => self.restart(node),
            Fault::Partition { a, b, until_ms, .. } => {
                self.partitions.push((a, b, until_ms * 1000));
                let doomed: Vec<LinkId> = self
                    .links
                    .iter()
                    .filter(|(_, l)| {
                        let nodes = [l.ends[0].node, l.ends[1].node];
                        nodes == [a, b] || nodes == [b, a]
                    })
                    .map(|(id, _)| *id)
                    .collect();
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

    fn crash(&mut self, node: NodeId) {
        let Some(n) = self.nodes.get_mut(node) else {
            return;
        };
        if n.machine.is_none() {
            return;
        }
        n.machine = None;
        n.incarnation += 1;
        n.timer_us = None;
        let conns: Vec<(ConnId, LinkId)> = std::mem::take(&mut n.conns).into_iter().collect();
        // Unfinished downloads are lost with the process.
        n.storage.parts.clear();
        for (conn, link) in conns {
            self.close_towards(link, node, conn);
        }
    }

    fn restart(&mut self, node: NodeId) {
        if self.nodes.get(node).is_none_or(|n| n.machine.is_some()) {
            return;
        }
        self.start(node);
        let files: Vec<(FileName, Vec<u8>)> = self
            .nodes
            .get(node)
            .map(|n| {
                n.storage
                    .files
                    .iter()
                    .map(|(k, v)| (k.clone(), v.to_vec()))
                    .collect()
            })
            .unwrap_or_default();
        for (name, data) in files {
            let Ok(manifest) = Manifest::from_bytes(&data, self.config.chunk_size) else {
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
}

/// The first bytes of a chunk (zero-padded), to find shared chunks it may equal.
fn chunk_prefix(data: &[u8]) -> [u8; 16] {
    let mut prefix = [0u8; 16];
    for (p, b) in prefix.iter_mut().zip(data) {
        *p = *b;
    }
    prefix
}

/// Node `id` listens on 127.0.0.(id+1):7000 (labels only: no socket is ever opened).
fn node_addr(id: NodeId) -> SocketAddr {
    let [a, b] = (id as u16 + 1).to_be_bytes();
    SocketAddr::new(IpAddr::V4(Ipv4Addr::new(127, 0, a, b)), LISTEN_PORT)
}

#[cfg(test)]
mod tests {
    use super::*;
    use drizzle_core::peer::DownloadRequest;

    /// A short answer is not queued behind the bulk a downloading peer is receiving: a file
    /// list asked mid-download comes back in a round trip, not after the chunks in flight.
    #[test]
    fn short_messages_slip_between_bulk_transfers() {
        let mut w = World::new(WorldConfig {
            latency_ms: 20,
            chunk_size: 1 << 20,
            check_every_step: false,
            interleave_below_bytes: 16 * 1024,
            ..WorldConfig::new(1)
        });
        let seeder = w.add_peer("seed");
        assert_eq!(w.share(seeder, "big", vec![7; 20 << 20]), Ok(()));
        let getter = w.add_peer("get");
        w.run_until(500, |_| false);
        let Ok(name) = FileName::new("big") else {
            panic!("valid name");
        };
        assert!(w
            .command(getter, PeerCommand::Download(DownloadRequest::whole(name)))
            .is_ok());
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
}
