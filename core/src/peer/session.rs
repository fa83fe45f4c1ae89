//! The peer's session with the tracker: connecting and reconnecting (backoff), registering
//! what it shares (in batches that fit a frame), the requests it has outstanding there
//! (locates, a list), what the tracker says back, and the bad holders it reports.

use super::{Conn, Peer};
use crate::limits::{KEEPALIVE_MS, MAX_FILES_PER_REGISTER, MAX_FRAME_BYTES};
use crate::link::{clip, Link};
use crate::machine::{ConnId, Event, Output};
use crate::manifest::{FileName, Manifest};
use crate::time::Timestamp;
use crate::wire::{Complaint, Message, Refusal, Role, SharedFile};
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use std::collections::BTreeMap;
use std::net::SocketAddr;

/// Where the session stands, and what is pending on it. Private: the peer moves it only
/// through the transitions below.
#[derive(Debug)]
pub(super) struct TrackerSession {
    state: State,
    reconnect_attempts: u32,
    /// This session's connection is established (TCP), and the tracker answered our
    /// register: told apart so that a server that is not a Drizzle tracker is named as
    /// such, not as unreachable.
    reached: bool,
    answered: bool,
    /// The page of the list the user asked for, while unanswered (its request, and the
    /// name it starts after): asked again on reconnect.
    list_pending: Option<(u32, Option<FileName>)>,
    next_req: u32,
    /// Pending requests: request id → file name (`None` for a list).
    reqs: BTreeMap<u32, Option<FileName>>,
    /// When a `Keepalive` last went out on this connection.
    keepalive_sent: Option<Timestamp>,
}

#[derive(Debug)]
enum State {
    Down { retry_at: Timestamp },
    Up { conn: ConnId },
}

impl TrackerSession {
    /// A session to be opened at once (at the first timeout).
    pub fn new() -> TrackerSession {
        TrackerSession {
            state: State::Down {
                retry_at: Timestamp::ZERO,
            },
            reconnect_attempts: 0,
            reached: false,
            answered: false,
            list_pending: None,
            next_req: 0,
            reqs: BTreeMap::new(),
            keepalive_sent: None,
        }
    }

    // ---- getters ----

    /// The session's connection, while it is up.
    pub fn conn(&self) -> Option<ConnId> {
        match self.state {
            State::Up { conn } => Some(conn),
            State::Down { .. } => None,
        }
    }

    /// Whether `conn` is the session's connection.
    pub fn is(&self, conn: ConnId) -> bool {
        self.conn() == Some(conn)
    }

    /// When to connect again, while down.
    pub fn retry_at(&self) -> Option<Timestamp> {
        match self.state {
            State::Down { retry_at } => Some(retry_at),
            State::Up { .. } => None,
        }
    }

    /// Whether the session's connection was established.
    pub fn was_reached(&self) -> bool {
        self.reached
    }

    // ---- transitions ----

    /// A connection `conn` is being opened. Everything pending was asked of the previous
    /// one: forgotten, except a page of the list, asked again: the returned request.
    pub fn opened(&mut self, conn: ConnId) -> Option<Message> {
        self.state = State::Up { conn };
        self.reached = false;
        self.answered = false;
        self.reqs.clear();
        self.keepalive_sent = None;
        let (_, after) = self.list_pending.take()?;
        Some(self.ask_list(after))
    }

    /// `conn` is established; whether it is the session's.
    pub fn reached(&mut self, conn: ConnId) -> bool {
        let ours = self.is(conn);
        self.reached |= ours;
        ours
    }

    /// The tracker answered a register; whether for the first time on this connection.
    pub fn registered(&mut self) -> bool {
        self.reconnect_attempts = 0;
        !std::mem::replace(&mut self.answered, true)
    }

    /// When to tell a registered session's tracker we are alive: `KEEPALIVE_MS` after we
    /// last heard from it (`heard`) or last told it, whichever is later.
    pub fn keepalive_at(&self, heard: Timestamp) -> Option<Timestamp> {
        let State::Up { .. } = self.state else {
            return None;
        };
        let from = self.keepalive_sent.map_or(heard, |sent| sent.max(heard));
        self.answered.then(|| from.plus_ms(KEEPALIVE_MS))
    }

    /// A `Keepalive` went out at `now`.
    pub fn kept_alive(&mut self, now: Timestamp) {
        self.keepalive_sent = Some(now);
    }

    /// The connection is gone: retried after a capped, jittered backoff, returned.
    pub fn lost(&mut self, now: Timestamp, base_ms: u64, max_ms: u64, rng: &mut ChaCha8Rng) -> u64 {
        let delay = backoff_ms(base_ms, max_ms, self.reconnect_attempts, rng);
        self.reconnect_attempts = self.reconnect_attempts.saturating_add(1);
        self.state = State::Down {
            retry_at: now.plus_ms(delay),
        };
        delay
    }

    // ---- requests ----

    /// A page of the list is asked for, the names after `after`: the request to send.
    pub fn ask_list(&mut self, after: Option<FileName>) -> Message {
        let req = self.next_req();
        self.list_pending = Some((req, after.clone()));
        self.reqs.insert(req, None);
        Message::ListFiles { req, after }
    }

    /// A locate of `name` is asked for: its request id. One per name is outstanding: an
    /// unanswered one is superseded, not piled up.
    pub fn ask_locate(&mut self, name: &FileName) -> u32 {
        self.reqs.retain(|_, n| n.as_ref() != Some(name));
        let req = self.next_req();
        self.reqs.insert(req, Some(name.clone()));
        req
    }

    /// Whether `req` is the list outstanding (which it answers).
    pub fn answered_list(&mut self, req: u32) -> bool {
        if self.list_pending.as_ref().map(|(r, _)| *r) != Some(req) {
            return false;
        }
        self.list_pending = None;
        self.reqs.remove(&req);
        true
    }

    /// Whether `req` is an outstanding locate of `name`; it is answered either way.
    pub fn answered(&mut self, req: u32, name: &FileName) -> bool {
        self.reqs.remove(&req).flatten().as_ref() == Some(name)
    }

    fn next_req(&mut self) -> u32 {
        self.next_req = self.next_req.wrapping_add(1);
        self.next_req
    }
}

/// Capped exponential backoff with jitter: uniform in [d/2, d] for d = base·2^attempt.
fn backoff_ms(base_ms: u64, max_ms: u64, attempt: u32, rng: &mut ChaCha8Rng) -> u64 {
    let d = base_ms
        .saturating_mul(1u64 << attempt.min(20))
        .min(max_ms)
        .max(2);
    rng.gen_range(d / 2..=d)
}

impl Peer {
    pub(super) fn tracker_up(&self) -> bool {
        self.session.conn().is_some()
    }

    pub(super) fn connect_tracker(&mut self, now: Timestamp) {
        let conn = self.conns.new_id();
        let tracker = self.config.tracker;
        let relist = self.session.opened(conn);
        let channel = self.keyring.as_mut().map(|k| k.channel(true));
        let link = Link::new(tracker, Role::Tracker, now).secured(channel);
        self.conns.open(now, conn, Conn::Tracker(link));
        self.out.push(Output::Connect {
            conn,
            addr: tracker,
        });
        self.greet(conn);
        let files: Vec<SharedFile> = self
            .files
            .iter()
            .map(|(name, f)| SharedFile {
                name: name.clone(),
                manifest: f.manifest().clone(),
                have: f.have().clone(),
            })
            .collect();
        // Registering even with no files tells the tracker where this peer listens.
        self.send_register(files);
        // Everything asked of the previous session is asked again.
        if let Some(ask) = relist {
            self.send(conn, &ask);
        }
        let names: Vec<FileName> = self.downloads.keys().cloned().collect();
        for name in names {
            self.send_locate(name);
        }
        for d in self.downloads.values_mut() {
            if let Some(a) = d.active_mut() {
                a.refresh_from(now);
            }
        }
    }

    /// Sends register messages, split so that each stays well inside the frame limit.
    pub(super) fn send_register(&mut self, files: Vec<SharedFile>) {
        let budget = MAX_FRAME_BYTES / 2;
        let mut batch = Vec::new();
        let mut size = 0;
        for file in files {
            let cost = file.manifest.hashes.len() * 33 + file.have.len() as usize / 8 + 1100;
            if !batch.is_empty() && (size + cost > budget || batch.len() >= MAX_FILES_PER_REGISTER)
            {
                self.register_batch(std::mem::take(&mut batch));
                size = 0;
            }
            size += cost;
            batch.push(file);
        }
        if !batch.is_empty() || size == 0 {
            self.register_batch(batch);
        }
    }

    fn register_batch(&mut self, files: Vec<SharedFile>) {
        self.send_tracker(&Message::Register {
            peer_id: self.peer_id,
            listen: self.config.listen,
            files,
        });
    }

    pub(super) fn tracker_lost(&mut self, now: Timestamp) {
        let (base_ms, max_ms) = (self.config.reconnect_base_ms, self.config.reconnect_max_ms);
        let delay = self.session.lost(now, base_ms, max_ms, &mut self.rng);
        self.emit(Event::TrackerLost {
            tracker: self.config.tracker,
            retry_in_ms: delay,
        });
    }

    /// Tells the tracker that `holder` failed the download of `name` (it stops handing it
    /// out once enough addresses say so). Once per holder and download for as long as the
    /// tracker keeps a report; not while the tracker is away (there is nobody to tell).
    pub(super) fn report_holder(
        &mut self,
        now: Timestamp,
        name: &FileName,
        holder: SocketAddr,
        complaint: Complaint,
    ) {
        if !self.tracker_up() {
            return;
        }
        let Some(a) = self.active_mut(name) else {
            return;
        };
        if !a.may_report(holder, now) {
            return;
        }
        let root = a.root();
        log::debug!("reporting {holder} for {name}: {}", complaint.as_str());
        self.send_tracker(&Message::Report {
            root,
            holder,
            complaint,
        });
    }

    /// Tells the tracker this session is alive, if it is due (see `keepalive_at`).
    pub(super) fn keep_alive(&mut self, now: Timestamp) {
        if self.keepalive_at().is_some_and(|t| t <= now) {
            self.session.kept_alive(now);
            self.send_tracker(&Message::Keepalive);
        }
    }

    /// When the next keepalive is due, if the session is up and registered.
    pub(super) fn keepalive_at(&self) -> Option<Timestamp> {
        let conn = self.session.conn()?;
        match self.conns.get(&conn) {
            Some(Conn::Tracker(link)) => self.session.keepalive_at(link.last_received()),
            _ => None,
        }
    }

    pub(super) fn send_tracker(&mut self, msg: &Message) {
        if let Some(conn) = self.session.conn() {
            self.send(conn, msg);
        }
    }

    pub(super) fn send_locate(&mut self, name: FileName) {
        if !self.tracker_up() {
            return; // asked again on reconnect
        }
        let req = self.session.ask_locate(&name);
        let known = self
            .downloads
            .get(&name)
            .and_then(|d| d.active())
            .map(|a| a.root());
        self.send_tracker(&Message::Locate { req, name, known });
    }

    /// A file we share was refused and the tracker holds its name for `registered`: if that
    /// is a file of our size cut in other chunks, the driver is asked to hash ours in those
    /// and share it again (the tracker then compares roots). Other content, or the same
    /// cut, is left refused; so a second refusal ends it.
    pub(super) fn recut(&mut self, name: FileName, registered: &Manifest) {
        let Some(ours) = self.files.get(&name).map(|f| f.manifest()) else {
            return;
        };
        let recuttable = registered.validate().is_ok()
            && registered.size == ours.size
            && registered.chunk_size != ours.chunk_size;
        if recuttable {
            let chunk_size = registered.chunk_size;
            self.emit(Event::ShareRecut { name, chunk_size });
        }
    }

    pub(super) fn handle_tracker_message(&mut self, now: Timestamp, conn: ConnId, msg: Message) {
        match msg {
            Message::Registered { accepted, refused } => {
                if self.session.registered() {
                    self.emit(Event::TrackerConnected {
                        tracker: self.config.tracker,
                    });
                }
                for name in accepted {
                    self.emit(Event::Shared { name });
                }
                for Refusal { name, reason } in refused {
                    self.emit(Event::ShareRefused {
                        name: name.clone(),
                        reason: clip(&reason),
                    });
                    // The name may be held for these bytes in other chunks: see `recut`.
                    if self.files.get(&name).is_some() && !self.downloads.contains_key(&name) {
                        self.send_locate(name);
                    }
                }
            }
            Message::FileList { req, files, more } => {
                if !self.session.answered_list(req) {
                    return;
                }
                // An empty page that says more follow would only be asked again.
                let next = files.last().map(|f| f.name.clone()).filter(|_| more);
                self.emit(Event::FileList {
                    files,
                    more: next.is_some(),
                });
                if let Some(after) = next {
                    let ask = self.session.ask_list(Some(after));
                    self.send_tracker(&ask);
                }
            }
            Message::Located {
                req,
                name,
                manifest,
                holders,
            } => {
                if self.session.answered(req, &name) {
                    self.handle_located(now, name, manifest, holders);
                }
            }
            Message::Holders {
                req,
                name,
                root,
                holders,
            } => {
                let active_root = self.active_mut(&name).map(|a| a.root());
                if self.session.answered(req, &name) && active_root == Some(root) {
                    self.refresh_holders(now, &name, holders);
                }
            }
            Message::NotFound {
                req,
                name,
                uptime_ms,
            } => {
                if self.session.answered(req, &name) {
                    let settling = uptime_ms < self.config.tracker_settle_ms;
                    self.handle_not_found(now, name, settling);
                }
            }
            Message::Introduce { root, holder } => self.handle_introduce(now, root, holder),
            Message::Keepalive => {} // it was heard: that is all it says
            other => self.violation(
                now,
                conn,
                format!("unexpected {} from the tracker", other.kind()),
            ),
        }
    }
}
