//! The simulated world: nodes running real core machines, driven by one queue of actions
//! from one master seed. `World` holds the state and the public face (build, share, command,
//! step, inspect) and applies each action; its rooms are `queue` (the event order), `network`
//! (links, latency, bandwidth, partitions), `hosts` (the machines and their outputs), `disk`
//! (each node's storage and the hasher) and `faults` (crashes, restarts, slow links, ...).

mod disk;
mod faults;
mod hosts;
mod network;
mod queue;

use crate::checkers;
use crate::faults::Fault;
use crate::storage::{Content, Storage};
use crate::trace::TraceLine;
use crate::truth::Truth;
use drizzle_core::idmap::IdMap;
use drizzle_core::machine::{Event, Input, IoId, Machine, Output, Received};
use drizzle_core::manifest::Hash;
use drizzle_core::peer::{CommandError, PeerCommand};
use drizzle_core::{
    Bytes, ConnId, FileName, Manifest, Peer, PeerConfig, Timestamp, Tracker, TrackerConfig,
};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;

use disk::DiskFault;
pub use disk::DiskModel;
use hosts::node_addr;
pub(crate) use hosts::{Node, NodeMachine};
use network::Link;
use queue::Queue;

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
    /// How long each node's disk takes (instant by default).
    pub disk: DiskModel,
    /// A peer whose download is done leaves (its process ends) this long after; `None`:
    /// it stays and serves.
    pub leave_after_ms: Option<u64>,
    /// A closed swarm: every node holds the world's swarm key, and every connection is
    /// handshaken and sealed with the real cipher.
    pub closed: bool,
    /// Keep a copy of every byte any node sends in `World::wire` (for tests that look at
    /// what an eavesdropper would see).
    pub tap_wire: bool,
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
            disk: DiskModel::default(),
            leave_after_ms: None,
            closed: true,
            tap_wire: false,
        }
    }
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

/// A chunk of shared content: the content, where the chunk starts, its SHA-256.
type KnownChunk = (Arc<[u8]>, usize, Hash);

/// The whole simulated world.
#[derive(Debug)]
pub struct World {
    pub config: WorldConfig,
    now_us: u64,
    seq: u64,
    queue: Queue,
    pub(crate) nodes: Vec<Node>,
    links: IdMap<LinkId, Link>,
    next_link: LinkId,
    rng: ChaCha8Rng,
    seeds: ChaCha8Rng,
    partitions: Vec<(NodeId, NodeId, u64)>,
    /// What was first shared under each name: what every copy must equal.
    pub(crate) truth: BTreeMap<FileName, Arc<Truth>>,
    /// Digests of every chunk of shared content, found by length and first bytes: a chunk
    /// that equals one is "hashed" by a comparison, far cheaper than SHA-256 at swarm scale.
    known_chunks: BTreeMap<(usize, [u8; 16]), Vec<KnownChunk>>,
    pub trace: Vec<TraceLine>,
    pub events: Vec<(u64, NodeId, Event)>,
    pub violations: Vec<String>,
    /// Every byte sent, when `WorldConfig::tap_wire` asked for it.
    pub wire: Vec<u8>,
    pub steps: u64,
    /// Chunks each node has served, kept even with the trace off.
    pub served: BTreeMap<NodeId, u64>,
    /// Downloads ended (done, failed or rejected) by each node, kept even with the trace
    /// off, and in all: a run waits on this count, looked at after every step.
    pub downloads_ended: BTreeMap<NodeId, usize>,
    pub downloads_ended_total: usize,
    /// Bytes peers' writes have put on their uplinks (the tracker's aside).
    pub peers_sent_bytes: u64,
    /// Peers that left once done (see `WorldConfig::leave_after_ms`).
    pub departures: usize,
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
            queue: Queue::default(),
            nodes: Vec::new(),
            links: IdMap::default(),
            next_link: 0,
            rng,
            seeds,
            partitions: Vec::new(),
            truth: BTreeMap::new(),
            known_chunks: BTreeMap::new(),
            trace: Vec::new(),
            events: Vec::new(),
            downloads_ended: BTreeMap::new(),
            downloads_ended_total: 0,
            violations: Vec::new(),
            wire: Vec::new(),
            steps: 0,
            served: BTreeMap::new(),
            peers_sent_bytes: 0,
            departures: 0,
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

    /// Sets one node's bandwidths, bytes per second.
    /// Gives `node` an access link of its own with `ms` of one-way latency: a link between
    /// two nodes takes the sum of theirs (half the world's latency for a node without one).
    pub fn set_latency(&mut self, node: NodeId, ms: u64) {
        if let Some(n) = self.nodes.get_mut(node) {
            n.latency_us = Some(ms.saturating_mul(1000));
        }
    }

    pub fn set_bandwidth(&mut self, node: NodeId, up: u64, down: u64) {
        if let Some(n) = self.nodes.get_mut(node) {
            n.up_bps = up.max(1);
            n.down_bps = down.max(1);
        }
    }

    // ---- the user's side ----

    /// Puts `data` on the node's disk as `name` and shares it.
    pub fn share(&mut self, node: NodeId, name: &str, data: Vec<u8>) -> Result<(), String> {
        let name = FileName::new(name).map_err(|e| e.to_string())?;
        let (manifest, content) = match self.truth.get(&name) {
            Some(truth) if truth.equals(&data) => (truth.manifest.clone(), Content::of(truth)),
            Some(_) => {
                let manifest = Manifest::from_bytes(&data, self.config.chunk_size)
                    .map_err(|e| e.to_string())?;
                let mut own = Content::empty(data.len() as u64);
                own.write(0, data.into(), None);
                (manifest, own)
            }
            None => {
                let truth =
                    Truth::held(data.into(), self.config.chunk_size).map_err(|e| e.to_string())?;
                self.learn_chunks(&truth);
                self.first_shared(&name, truth)
            }
        };
        self.share_content(node, name, manifest, content)
    }

    /// Shares `size` bytes derived from `seed` as `name` from the node's disk: bytes made
    /// only where someone reads them (a swarm's file, whatever its size). The same name,
    /// size and seed on another node is the same file.
    pub fn share_generated(
        &mut self,
        node: NodeId,
        name: &str,
        size: u64,
        seed: u64,
    ) -> Result<(), String> {
        let name = FileName::new(name).map_err(|e| e.to_string())?;
        // Files are never forgotten, so a new one's count is a tag no other file has (the
        // bytes depend on the seed alone: an existing name is compared by its manifest).
        let file_tag = u32::try_from(self.truth.len()).map_err(|e| e.to_string())?;
        let made = Truth::generated(file_tag, seed, size, self.config.chunk_size)
            .map_err(|e| e.to_string())?;
        let (manifest, content) = match self.truth.get(&name) {
            Some(truth) if truth.manifest == made.manifest => {
                (truth.manifest.clone(), Content::of(truth))
            }
            Some(_) => return Err(format!("{name} was first shared with other bytes")),
            None => self.first_shared(&name, made),
        };
        self.share_content(node, name, manifest, content)
    }

    /// Records `truth` as what `name` must be everywhere; its manifest and all of it.
    fn first_shared(&mut self, name: &FileName, truth: Truth) -> (Manifest, Content) {
        let truth = Arc::new(truth);
        self.truth.insert(name.clone(), truth.clone());
        (truth.manifest.clone(), Content::of(&truth))
    }

    fn share_content(
        &mut self,
        node: NodeId,
        name: FileName,
        manifest: Manifest,
        content: Content,
    ) -> Result<(), String> {
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
    /// (Kept only with the trace on, like the events it narrates.)
    pub fn note(&mut self, text: impl Into<String>) {
        if !self.config.trace {
            return;
        }
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
        self.truth.get(name).map(|t| &t.manifest)
    }

    /// What was first shared under `name`: what every copy must equal.
    pub fn truth(&self, name: &FileName) -> Option<&Arc<Truth>> {
        self.truth.get(name)
    }

    pub fn node_name(&self, node: NodeId) -> &str {
        self.nodes.get(node).map_or("?", |n| n.name.as_str())
    }

    pub fn node_addr(&self, node: NodeId) -> SocketAddr {
        node_addr(node)
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
        let Some((at_us, action)) = self.queue.pop() else {
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

    /// Runs every event due by `at_ms` and leaves the clock there: a world with nothing
    /// due stays at its last event otherwise, and a command given next would happen then,
    /// not at `at_ms`.
    pub fn run_to(&mut self, at_ms: u64) {
        self.run_until(at_ms, |_| false);
        self.now_us = self.now_us.max(at_ms.saturating_mul(1000));
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
            match self.queue.next_due_us() {
                Some(at_us) if at_us <= deadline_ms.saturating_mul(1000) => {}
                _ => return done(self),
            }
            self.step();
        }
    }

    fn push(&mut self, at_us: u64, action: Action) {
        self.seq += 1;
        let seq = self.seq;
        self.queue.push(at_us, seq, action);
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
                    self.deliver(node, conn, data);
                }
            }
            Action::Closed { link, end } => {
                let Some(e) = self.links.get(&link).and_then(|l| l.ends.get(end)) else {
                    return;
                };
                let (node, conn, inc) = (e.node, e.conn, e.incarnation);
                if self.alive(node, inc) && self.mapped(node, conn, link) {
                    self.deliver_close(node, conn);
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
                let bytes = self.completed_write(node, conn, bytes);
                if node != 0 {
                    self.peers_sent_bytes += bytes as u64;
                }
                if bytes > 0 && self.alive(node, incarnation) {
                    self.feed(node, Input::Sent { conn, bytes });
                }
            }
            Action::Fault(fault) => self.apply_fault(fault),
        }
    }

    fn handle_output(&mut self, node: NodeId, output: Output) {
        let incarnation = self.nodes.get(node).map_or(0, |n| n.incarnation);
        let now_us = self.now_us;
        match output {
            Output::Connect { conn, addr } => self.connect(node, conn, addr),
            Output::Send { conn, bytes } => self.send(node, conn, bytes),
            Output::Close { conn } => self.close(node, conn),
            request @ (Output::Load { .. }
            | Output::Store { .. }
            | Output::Commit { .. }
            | Output::Discard { .. }) => self.storage_request(node, request),
            Output::Hash { io, data } => self.push(
                now_us,
                Action::Hashed {
                    node,
                    incarnation,
                    io,
                    data,
                },
            ),
            Output::Event(event) => self.record(node, event),
        }
    }

    // ---- the network ----

    // ---- faults ----
}
