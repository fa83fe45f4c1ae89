//! One mio event loop driving one core machine: accepts and dials TCP connections, moves
//! bytes between sockets and the machine, runs its timers, carries out its storage requests,
//! and hands its events to the application. Follows the drain rule after every input.

use crate::hasher::{default_hash_threads, spawn_hasher, Hasher};
use crate::out_queue::OutQueue;
use crate::rate::RateLimiter;
use crate::stats::{DriverStats, Traffic};
use crate::storage::FileStore;
use crate::writer::{spawn_writer, Writer};
use drizzle_core::log_gate::LogGate;
use drizzle_core::machine::{Event, Input, IoId, Machine, Output, Received};
use drizzle_core::manifest::sha256;
use drizzle_core::BufferPool;
use drizzle_core::{Bytes, ConnId, Timestamp};

use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token, Waker};
use std::collections::{BTreeMap, VecDeque};
use std::io::{self, Read};
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const LISTENER: Token = Token(0);
const WAKER: Token = Token(1);
const FIRST_CONN: usize = 2;
/// Stop reading a connection whose unsent bytes pass this; resume below `WRITE_LOW`.
/// Stop reading a connection whose unsent bytes pass this (the machine stops decoding its
/// requests at the same mark); resume below `WRITE_LOW`.
const WRITE_HIGH: usize = drizzle_core::limits::MAX_UNSENT_BYTES_PER_CONN;
const WRITE_LOW: usize = 1 << 20;
/// Connections accepted at most (beyond it, new ones are closed at once).
const MAX_CONNECTIONS: usize = 1024;
/// Connections accepted from one IP address: one host cannot take every place. A getter
/// holds one connection to each holder it fetches from, so even many peers behind one
/// address stay far below it.
pub const MAX_CONNECTIONS_PER_ADDRESS: usize = 128;
/// A connection with bytes to send that takes none of them for this long is dropped
/// (a remote that stops reading must not pin its buffers forever).
const WRITE_STALL: Duration = Duration::from_secs(60);
/// The loop wakes at least this often, to notice a stop request.
const TICK: Duration = Duration::from_millis(100);
const READ_BUF: usize = 256 * 1024;
/// The read after a chunk's payload ends: enough for the next chunk's header (or its
/// record, in a closed swarm), so that the payload behind it is read into its own buffer,
/// not through `read_buf` and copied (up to `READ_BUF` a chunk).
const AFTER_PAYLOAD_READ: usize = 4096;

/// What the application wants after an event or tick.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flow {
    Continue,
    Stop,
}

#[derive(Debug)]
struct Conn {
    stream: TcpStream,
    token: Token,
    out: OutQueue,
    connecting: bool,
    closing: bool,
    /// When bytes last left: a remote that stops reading is dropped after `WRITE_STALL`.
    last_write: Instant,
    /// Readable data is waiting while reading is paused for back-pressure.
    read_pending: bool,
    /// The last read went into a chunk payload's window.
    read_into_window: bool,
    /// The remote's IP, for connections it opened to us (counted per address).
    accepted_from: Option<IpAddr>,
    /// The remote's IP, whoever opened the connection (traffic is counted per address).
    remote_ip: IpAddr,
}

impl Conn {
    fn unsent(&self) -> usize {
        self.out.unsent()
    }
}

/// A deferred chunk read: the machine's `Load`, held while its connection's buffer is full.
#[derive(Debug)]
struct PendingLoad {
    io: drizzle_core::IoId,
    key: drizzle_core::StorageKey,
    offset: u64,
    len: u32,
    layout: drizzle_core::Layout,
}

#[derive(Debug)]
pub struct Driver<M: Machine> {
    machine: M,
    poll: Poll,
    listener: Option<TcpListener>,
    waker: Arc<Waker>,
    stop: Arc<AtomicBool>,
    conns: BTreeMap<ConnId, Conn>,
    tokens: BTreeMap<Token, ConnId>,
    next_token: usize,
    next_inbound: u64,
    store: Option<FileStore>,
    writer: Option<Writer>,
    hasher: Option<Hasher>,
    limiter: Option<RateLimiter>,
    /// Under an upload limit, the connection written to last (see `retry_rate_limited`).
    rate_turn: Option<ConnId>,
    /// Where outbound connections leave from (see `set_local_ip`).
    local_ip: Option<IpAddr>,
    /// Open accepted connections per remote IP (see `MAX_CONNECTIONS_PER_ADDRESS`).
    accepted_per_ip: BTreeMap<IpAddr, usize>,
    /// Warnings about remotes (refused, not reading), once a minute per address (the
    /// counters in `stats` miss none).
    log_gate: LogGate,
    deferred: BTreeMap<ConnId, VecDeque<PendingLoad>>,
    epoch: Instant,
    read_buf: Vec<u8>,
    /// Chunk buffers: loads take them, sent ones come back.
    pool: BufferPool,
    flow: Flow,
    stats: Arc<DriverStats>,
}

impl<M: Machine> Driver<M> {
    /// A driver for `machine`, accepting on `listener` if given, keeping files in `store` if
    /// given. Setting `stop` ends [`Driver::run`] within a tick.
    pub fn new(
        mut machine: M,
        listener: Option<std::net::TcpListener>,
        store: Option<FileStore>,
        stop: Arc<AtomicBool>,
    ) -> io::Result<Driver<M>> {
        let poll = Poll::new()?;
        let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
        // Chunks read for sending, and chunks received once written, are kept for the next.
        let pool = BufferPool::default();
        machine.share_buffers(&pool);
        // Writes and hashing run on their own threads, overlapping the loop's receiving.
        let writer = store
            .as_ref()
            .map(|s| spawn_writer(s.twin(), waker.clone(), pool.clone()));
        let hasher = store
            .as_ref()
            .map(|_| spawn_hasher(default_hash_threads(), waker.clone()));
        let listener = match listener {
            Some(l) => {
                l.set_nonblocking(true)?;
                let mut l = TcpListener::from_std(l);
                poll.registry()
                    .register(&mut l, LISTENER, Interest::READABLE)?;
                Some(l)
            }
            None => None,
        };
        Ok(Driver {
            machine,
            poll,
            listener,
            waker,
            stop,
            conns: BTreeMap::new(),
            tokens: BTreeMap::new(),
            next_token: FIRST_CONN,
            next_inbound: 0,
            writer,
            hasher,
            store,
            limiter: None,
            rate_turn: None,
            local_ip: None,
            accepted_per_ip: BTreeMap::new(),
            log_gate: LogGate::default(),
            deferred: BTreeMap::new(),
            epoch: Instant::now(),
            read_buf: vec![0; READ_BUF],
            pool,
            flow: Flow::Continue,
            stats: Arc::default(),
        })
    }

    /// Hashes received chunks on `threads` threads (the default: one per core).
    pub fn set_hash_threads(&mut self, threads: usize) {
        if self.hasher.is_some() {
            self.hasher = Some(spawn_hasher(threads, self.waker.clone()));
        }
    }

    /// Caps what this process uploads, in bytes per second.
    /// Outbound connections leave from `ip` (the address a node listens on, so that the
    /// tracker records the address it serves on); `None` or unspecified: the OS picks.
    pub fn set_local_ip(&mut self, ip: Option<IpAddr>) {
        self.local_ip = ip.filter(|ip| !ip.is_unspecified());
    }

    pub fn set_upload_limit(&mut self, bytes_per_sec: Option<u64>) {
        self.limiter = bytes_per_sec.map(|r| RateLimiter::new(r, Instant::now()));
    }

    pub fn machine(&self) -> &M {
        &self.machine
    }

    /// Wakes the loop from another thread (after queueing work for the tick callback).
    pub fn waker(&self) -> Arc<Waker> {
        self.waker.clone()
    }

    /// The driver's counters, readable from any thread while it runs.
    pub fn stats(&self) -> Arc<DriverStats> {
        self.stats.clone()
    }

    pub fn store(&self) -> Option<&FileStore> {
        self.store.as_ref()
    }

    /// The machine's notion of now.
    pub fn now(&self) -> Timestamp {
        Timestamp(self.epoch.elapsed().as_millis() as u64)
    }

    /// Runs until the application says stop or `stop` is set. `app` hears every event, and
    /// is called with `None` once per loop turn (to issue commands or check deadlines); it
    /// gets the machine's `now` and may mutate the machine, after which the driver drains it.
    pub fn run(
        &mut self,
        mut app: impl FnMut(&mut M, Timestamp, Option<&Event>) -> Flow,
    ) -> io::Result<()> {
        let mut events = Events::with_capacity(1024);
        loop {
            let now = self.now();
            if app(&mut self.machine, now, None) == Flow::Stop {
                self.flow = Flow::Stop;
            }
            self.drain(&mut app);
            if self.flow == Flow::Stop || self.stop.load(Ordering::Relaxed) {
                return Ok(());
            }
            let timeout = self.next_wakeup();
            if let Err(e) = self.poll.poll(&mut events, Some(timeout)) {
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e);
            }
            for event in events.iter() {
                match event.token() {
                    LISTENER => self.accept(&mut app),
                    WAKER => self.work_finished(&mut app),
                    token => {
                        let Some(conn) = self.tokens.get(&token).copied() else {
                            continue;
                        };
                        if event.is_writable() {
                            self.on_writable(conn, &mut app);
                        }
                        if event.is_readable() || event.is_read_closed() || event.is_error() {
                            self.on_readable(conn, &mut app);
                        }
                    }
                }
                if self.flow == Flow::Stop {
                    return Ok(());
                }
            }
            let now = self.now();
            if self.machine.poll_timeout().is_some_and(|t| t <= now) {
                self.machine.handle_timeout(now);
                self.drain(&mut app);
            }
            self.work_finished(&mut app);
            self.retry_rate_limited(&mut app);
            self.resume_paused_reads(&mut app);
            self.drop_stalled_writers(&mut app);
        }
    }

    fn drop_stalled_writers(
        &mut self,
        app: &mut impl FnMut(&mut M, Timestamp, Option<&Event>) -> Flow,
    ) {
        let stalled: Vec<(ConnId, IpAddr)> = self
            .conns
            .iter()
            .filter(|(_, c)| {
                c.unsent() > 0 && !c.connecting && c.last_write.elapsed() > WRITE_STALL
            })
            .map(|(id, c)| (*id, c.remote_ip))
            .collect();
        for (conn, ip) in stalled {
            let now = self.now();
            let text = format_args!("dropping {conn}: {ip} has not read for {WRITE_STALL:?}");
            self.log_gate.warn(module_path!(), ip, now, text);
            self.drop_conn(conn, true);
        }
        self.drain(app);
    }

    /// Reads paused for back-pressure whose connection has room again (`on_readable`
    /// pauses again at once if the machine still refuses input).
    fn resume_paused_reads(
        &mut self,
        app: &mut impl FnMut(&mut M, Timestamp, Option<&Event>) -> Flow,
    ) {
        let paused: Vec<ConnId> = self
            .conns
            .iter()
            .filter(|(_, c)| c.read_pending)
            .map(|(id, _)| *id)
            .collect();
        for conn in paused {
            if self.has_room(conn) {
                self.on_readable(conn, app);
            }
        }
    }

    fn next_wakeup(&mut self) -> Duration {
        let mut wait = TICK;
        if let Some(t) = self.machine.poll_timeout() {
            let ms = t.as_ms().saturating_sub(self.now().as_ms());
            wait = wait.min(Duration::from_millis(ms));
        }
        let unsent = self
            .conns
            .values()
            .filter(|c| !c.connecting)
            .map(Conn::unsent)
            .max();
        if let (Some(limiter), Some(n)) = (self.limiter.as_mut(), unsent) {
            if n > 0 {
                wait = wait.min(
                    limiter
                        .wait(n, Instant::now())
                        .max(Duration::from_millis(1)),
                );
            }
        }
        wait
    }

    /// The drain rule: carry out every output the machine has.
    fn drain(&mut self, app: &mut impl FnMut(&mut M, Timestamp, Option<&Event>) -> Flow) {
        loop {
            self.drain_outputs(app);
            // Chunk reads held back while their connection's buffer was full.
            let ready: Vec<ConnId> = self
                .deferred
                .iter()
                .filter(|(c, q)| !q.is_empty() && self.has_room(**c))
                .map(|(c, _)| *c)
                .collect();
            if ready.is_empty() {
                return;
            }
            for conn in ready {
                if let Some(p) = self.deferred.get_mut(&conn).and_then(VecDeque::pop_front) {
                    self.load(p);
                }
            }
        }
    }

    fn has_room(&self, conn: ConnId) -> bool {
        self.conns
            .get(&conn)
            .is_some_and(|c| c.unsent() < WRITE_LOW)
    }

    fn drain_outputs(&mut self, app: &mut impl FnMut(&mut M, Timestamp, Option<&Event>) -> Flow) {
        while let Some(output) = self.machine.poll_output() {
            match output {
                Output::Connect { conn, addr } => self.connect(conn, addr),
                Output::Send { conn, bytes } => self.send(conn, bytes),
                Output::Close { conn } => self.close(conn),
                Output::Load {
                    io,
                    key,
                    offset,
                    len,
                    conn,
                    layout,
                } => {
                    let pending = PendingLoad {
                        io,
                        key,
                        offset,
                        len,
                        layout,
                    };
                    match conn.filter(|c| self.conns.contains_key(c) && !self.has_room(*c)) {
                        Some(full) => self.deferred.entry(full).or_default().push_back(pending),
                        None => self.load(pending),
                    }
                }
                write @ (Output::Store { .. } | Output::Commit { .. } | Output::Discard { .. }) => {
                    self.write(write)
                }
                Output::Hash { io, data } => self.hash(io, data),
                Output::Event(event) => {
                    let now = self.now();
                    if app(&mut self.machine, now, Some(&event)) == Flow::Stop {
                        self.flow = Flow::Stop;
                    }
                }
            }
        }
    }

    /// Hands a write to the writer thread; a node without storage fails it at once.
    fn write(&mut self, write: Output) {
        let (write, why) = match &self.writer {
            Some(w) => match w.submit(write) {
                Ok(()) => return,
                Err(write) => (write, "the writer thread stopped"),
            },
            None => (write, "this node has no storage"),
        };
        if let Some(failed) = Input::written(&write, Err(why.into())) {
            self.feed(failed);
        }
    }

    /// Hands a chunk to the hasher thread, or hashes it here if there is none.
    fn hash(&mut self, io: IoId, data: Bytes) {
        let data = match &mut self.hasher {
            Some(h) => match h.submit((io, data)) {
                Ok(()) => return,
                Err((_, data)) => data,
            },
            None => data,
        };
        let digest = sha256(&data);
        self.feed(Input::Hashed { io, digest, data });
    }

    /// Feeds the machine what the writer and hasher threads finished.
    fn work_finished(&mut self, app: &mut impl FnMut(&mut M, Timestamp, Option<&Event>) -> Flow) {
        let hashed: Vec<_> = self.hasher.iter().flat_map(Hasher::finished).collect();
        for (io, digest, data) in hashed {
            self.feed(Input::Hashed { io, digest, data });
        }
        let written: Vec<_> = self.writer.iter().flat_map(Writer::finished).collect();
        for done in written.into_iter().flatten() {
            self.feed(done);
        }
        self.drain(app);
    }

    fn feed(&mut self, input: Input<'_>) {
        let now = self.now();
        self.machine.handle(now, input);
    }

    fn load(&mut self, p: PendingLoad) {
        let pool = &self.pool;
        let result = self
            .store
            .as_mut()
            .ok_or_else(|| io::Error::other("this node has no storage"))
            .and_then(|s| s.load(&p.key, p.offset, p.len, p.layout, pool))
            .map(Bytes::from)
            .map_err(|e| e.to_string());
        self.feed(Input::Loaded { io: p.io, result });
    }

    // ---- sockets ----

    fn register(
        &mut self,
        conn: ConnId,
        mut stream: TcpStream,
        remote_ip: IpAddr,
        connecting: bool,
    ) -> io::Result<()> {
        let token = Token(self.next_token);
        self.next_token += 1;
        self.poll.registry().register(
            &mut stream,
            token,
            Interest::READABLE | Interest::WRITABLE,
        )?;
        let _ = stream.set_nodelay(true);
        if let Err(e) = detect_silent_hosts(&stream) {
            log::debug!("cannot set keepalive on {conn}: {e}");
        }
        if !connecting {
            if let Err(e) = keep_the_order_of_uploads(&stream) {
                log::debug!("cannot bound the unsent bytes of {conn}: {e}");
            }
        }
        self.tokens.insert(token, conn);
        self.conns.insert(
            conn,
            Conn {
                stream,
                token,
                out: OutQueue::default(),
                connecting,
                closing: false,
                last_write: Instant::now(),
                read_pending: false,
                read_into_window: false,
                accepted_from: None,
                remote_ip,
            },
        );
        self.stats.opened(!connecting);
        Ok(())
    }

    fn accept(&mut self, app: &mut impl FnMut(&mut M, Timestamp, Option<&Event>) -> Flow) {
        loop {
            let Some(listener) = self.listener.as_ref() else {
                return;
            };
            match listener.accept() {
                Ok((stream, remote)) => {
                    if self.conns.len() >= MAX_CONNECTIONS {
                        self.stats.refused(false);
                        let (ip, now) = (remote.ip(), self.now());
                        let text =
                            format_args!("refusing {remote}: {MAX_CONNECTIONS} connections open");
                        self.log_gate.warn(module_path!(), ip, now, text);
                        continue;
                    }
                    let from = self.accepted_per_ip.get(&remote.ip()).copied();
                    if from.unwrap_or(0) >= MAX_CONNECTIONS_PER_ADDRESS {
                        self.stats.refused(true);
                        let (ip, now) = (remote.ip(), self.now());
                        let text = format_args!(
                            "refusing {remote}: {MAX_CONNECTIONS_PER_ADDRESS} connections open \
                             from {ip}"
                        );
                        self.log_gate.warn(module_path!(), ip, now, text);
                        continue;
                    }
                    self.next_inbound += 1;
                    let conn = ConnId::Inbound(self.next_inbound);
                    if self.register(conn, stream, remote.ip(), false).is_ok() {
                        if let Some(c) = self.conns.get_mut(&conn) {
                            c.accepted_from = Some(remote.ip());
                            *self.accepted_per_ip.entry(remote.ip()).or_default() += 1;
                        }
                        self.feed(Input::Accepted { conn, remote });
                        self.drain(app);
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) => {
                    log::warn!("accept failed: {e}");
                    return;
                }
            }
        }
    }

    fn connect(&mut self, conn: ConnId, addr: SocketAddr) {
        let result =
            connect_from(self.local_ip, addr).and_then(|s| self.register(conn, s, addr.ip(), true));
        if let Err(e) = result {
            self.feed(Input::ConnectFailed {
                conn,
                reason: e.to_string(),
            });
        }
    }

    fn send(&mut self, conn: ConnId, bytes: Bytes) {
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        if c.unsent() == 0 {
            // The stall clock starts when there is something to send.
            c.last_write = Instant::now();
        }
        c.out.push(bytes);
        self.flush_or_queue(conn);
    }

    fn close(&mut self, conn: ConnId) {
        if let Some(c) = self.conns.get_mut(&conn) {
            c.closing = true;
        }
        self.flush_or_queue(conn);
    }

    /// Writes now, or under an upload limit, leaves the bytes for this loop turn's fair
    /// pass (`retry_rate_limited`): whoever asked first would otherwise take every byte
    /// the limit allows, and a connection opened after busy ones waited until none of them
    /// had anything queued (a 3 MB file behind five fetchers of a large one: 12 s at 40
    /// MB/s).
    fn flush_or_queue(&mut self, conn: ConnId) {
        let queued = self.conns.get(&conn).is_some_and(|c| c.unsent() > 0);
        if self.limiter.is_none() || !queued {
            self.flush(conn);
        }
    }

    /// Writes what the rate limit and the socket allow; finishes a close once flushed.
    /// Returns the bytes written.
    fn flush(&mut self, conn: ConnId) -> usize {
        let Some(c) = self.conns.get_mut(&conn) else {
            return 0;
        };
        if c.connecting {
            return 0;
        }
        let mut failed = false;
        let mut written = 0;
        while c.unsent() > 0 {
            let mut n = c.unsent();
            if let Some(l) = self.limiter.as_mut() {
                n = l.allowance(n, Instant::now());
                if n == 0 {
                    break;
                }
            }
            match c.out.write_to(&mut c.stream, n, &self.pool) {
                Ok(0) => {
                    failed = true;
                    break;
                }
                Ok(w) => {
                    written += w;
                    c.last_write = Instant::now();
                    if let Some(l) = self.limiter.as_mut() {
                        l.consume(w);
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => {
                    failed = true;
                    break;
                }
            }
        }
        let done_closing = c.closing && c.unsent() == 0;
        if written > 0 {
            let up = Traffic {
                up: written as u64,
                down: 0,
            };
            self.stats.moved(c.remote_ip, up);
            // The machine paces its answers by what has actually left.
            self.feed(Input::Sent {
                conn,
                bytes: written,
            });
        }
        if failed {
            self.drop_conn(conn, true);
        } else if done_closing {
            self.drop_conn(conn, false);
        }
        written
    }

    /// Forgets a connection; `tell` feeds the machine a close it did not ask for.
    fn drop_conn(&mut self, conn: ConnId, tell: bool) {
        if let Some(mut c) = self.conns.remove(&conn) {
            self.stats.closed();
            if let Some(ip) = c.accepted_from {
                if let Some(n) = self.accepted_per_ip.get_mut(&ip) {
                    *n = n.saturating_sub(1);
                    if *n == 0 {
                        self.accepted_per_ip.remove(&ip);
                    }
                }
            }
            let _ = self.poll.registry().deregister(&mut c.stream);
            let _ = c.stream.shutdown(std::net::Shutdown::Both);
            self.tokens.remove(&c.token);
        }
        self.deferred.remove(&conn);
        if tell {
            self.feed(Input::Closed { conn });
        }
    }

    fn on_writable(
        &mut self,
        conn: ConnId,
        app: &mut impl FnMut(&mut M, Timestamp, Option<&Event>) -> Flow,
    ) {
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        if c.connecting {
            match (c.stream.take_error(), c.stream.peer_addr()) {
                (Ok(None), Ok(_)) => {
                    c.connecting = false;
                    self.feed(Input::Connected { conn });
                }
                (Ok(Some(e)) | Err(e), _) | (_, Err(e))
                    if e.kind() != io::ErrorKind::NotConnected =>
                {
                    self.drop_conn(conn, false);
                    self.feed(Input::ConnectFailed {
                        conn,
                        reason: e.to_string(),
                    });
                    self.drain(app);
                    return;
                }
                _ => return, // still connecting
            }
        }
        // Chunk reads held for this connection run in `drain`; reads paused on it resume
        // at the end of the loop turn (`resume_paused_reads`).
        self.flush_or_queue(conn);
        self.drain(app);
    }

    fn on_readable(
        &mut self,
        conn: ConnId,
        app: &mut impl FnMut(&mut M, Timestamp, Option<&Event>) -> Flow,
    ) {
        loop {
            let Some(c) = self.conns.get_mut(&conn) else {
                return;
            };
            if c.connecting {
                return;
            }
            if c.unsent() >= WRITE_HIGH || !self.machine.accepts_input(conn) {
                c.read_pending = true;
                return;
            }
            c.read_pending = false;
            // A chunk payload is read straight into its own buffer, the rest via ours.
            let (read, in_window) = match self.machine.receive_window(conn) {
                Some(window) => (c.stream.read(window), true),
                None => {
                    let len = match c.read_into_window {
                        true => AFTER_PAYLOAD_READ,
                        false => READ_BUF,
                    };
                    let buf = self.read_buf.get_mut(..len).unwrap_or_default();
                    (c.stream.read(buf), false)
                }
            };
            match read {
                Ok(0) => {
                    self.drop_conn(conn, true);
                    self.drain(app);
                    return;
                }
                Ok(len) => {
                    // Only a read that brought bytes: the header may not be there yet.
                    c.read_into_window = in_window;
                    let down = Traffic {
                        up: 0,
                        down: len as u64,
                    };
                    self.stats.moved(c.remote_ip, down);
                    let now = self.now();
                    if in_window {
                        self.machine.handle(
                            now,
                            Input::Received {
                                conn,
                                data: Received::InWindow(len),
                            },
                        );
                    } else {
                        let data = self.read_buf.get(..len).unwrap_or_default();
                        let data = Received::Slice(data);
                        self.machine.handle(now, Input::Received { conn, data });
                    }
                    self.drain(app);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => {
                    self.drop_conn(conn, true);
                    self.drain(app);
                    return;
                }
            }
        }
    }

    fn retry_rate_limited(
        &mut self,
        app: &mut impl FnMut(&mut M, Timestamp, Option<&Event>) -> Flow,
    ) {
        if self.limiter.is_none() {
            return;
        }
        let waiting: Vec<ConnId> = self
            .conns
            .iter()
            .filter(|(_, c)| !c.connecting && c.unsent() > 0)
            .map(|(id, _)| *id)
            .collect();
        // In turns: this pass starts after the connection the last one wrote to last (the
        // first in line takes all the limit allows).
        let first = (waiting.iter())
            .position(|c| Some(*c) > self.rate_turn)
            .unwrap_or(0);
        let (later, earlier) = waiting.split_at(first);
        for &conn in earlier.iter().chain(later) {
            if self.flush(conn) > 0 {
                self.rate_turn = Some(conn);
            }
        }
        self.drain(app);
    }
}

/// A non-blocking connect to `addr`, from `local` when given (bound first, any port).
fn connect_from(local: Option<IpAddr>, addr: SocketAddr) -> io::Result<TcpStream> {
    let Some(ip) = local.filter(|ip| ip.is_ipv4() == addr.is_ipv4()) else {
        return TcpStream::connect(addr);
    };
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(addr),
        socket2::Type::STREAM,
        Some(socket2::Protocol::TCP),
    )?;
    socket.set_nonblocking(true)?;
    socket.bind(&SocketAddr::new(ip, 0).into())?;
    match socket.connect(&addr.into()) {
        Ok(()) => {}
        Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => {}
        Err(e) => return Err(e),
    }
    Ok(TcpStream::from_std(socket.into()))
}

/// What a connection accepted from a fetcher may hold in the kernel not yet sent; beyond
/// it our writes wait. The kernel would take megabytes on each connection and send them
/// side by side: a seeder serving three fetchers sent every chunk at a third of its
/// uplink, so each landed three times later and spread that much later (on the testbed,
/// 8 getters of one seeder: median 5.66 s, now 5.31 s).
const UNSENT_IN_KERNEL_BYTES: u32 = 256 * 1024;

fn keep_the_order_of_uploads(stream: &TcpStream) -> io::Result<()> {
    socket2::SockRef::from(stream).set_tcp_notsent_lowat(UNSENT_IN_KERNEL_BYTES)
}

/// A host that vanishes without closing (powered off, cable pulled, link down) must not
/// hold a connection open for ever: the tracker would keep listing its chunks and fetchers
/// would wait on it. TCP keepalive probes an idle connection after 10 s, every 5 s, three
/// times; unacknowledged data gives up after 30 s. Either way the connection closes within
/// about 30 s and its owner forgets it.
fn detect_silent_hosts(stream: &TcpStream) -> io::Result<()> {
    let socket = socket2::SockRef::from(stream);
    let keepalive = socket2::TcpKeepalive::new()
        .with_time(Duration::from_secs(10))
        .with_interval(Duration::from_secs(5))
        .with_retries(3);
    socket.set_tcp_keepalive(&keepalive)?;
    socket.set_tcp_user_timeout(Some(Duration::from_secs(30)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fetchers_connection_holds_little_unsent_in_the_kernel() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let _client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (accepted, _) = listener.accept().unwrap();
        let stream = TcpStream::from_std(accepted);
        keep_the_order_of_uploads(&stream).unwrap();
        let lowat = socket2::SockRef::from(&stream).tcp_notsent_lowat().unwrap();
        assert_eq!(lowat, UNSENT_IN_KERNEL_BYTES);
    }
}
