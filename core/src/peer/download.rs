//! One download's state once its manifest is known: what is wanted, held, in flight, who
//! holds what, and who proved bad. Deciding the next request and whether the download is
//! stuck are pure functions of this state (plus an RNG), so they are testable alone.

use super::addrmap::{seek, seek_entry, AddrMap};
use super::check::DiskCheck;
use super::chunkmap::ChunkMap;
use super::cooldown::Cooldowns;
use super::ledger::Asked;
use super::picker;
use super::timers::DownloadTimer;
use super::FetchPolicy;
use crate::chunkset::ChunkSet;
use crate::limits::{MAX_KNOWN_HOLDERS, REPORT_TTL_MS};
use crate::manifest::{Manifest, Root};
use crate::time::Timestamp;
use crate::wire::LocatedHolder;
use rand_chacha::ChaCha8Rng;
use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;

/// A holder's wait after failures doubles at most this many times (2 s → 16 s by default):
/// long enough that a holder that never sends costs little, short enough that a seeder
/// that restarted is asked again soon.
const MAX_FAILURE_DOUBLINGS: u32 = 3;

#[derive(Debug)]
pub(crate) struct Active {
    policy: FetchPolicy,
    root: Root,
    /// Shared with the file's entry among those served (a 100 GiB file's is 3 MiB).
    manifest: Arc<Manifest>,
    /// Chunks the user asked for (all of them unless `--chunks`).
    want: ChunkSet,
    /// Verified and stored.
    have: ChunkSet,
    /// Verified, being written.
    storing: BTreeSet<u32>,
    /// Who holds what, who proved bad, and each chunk's rarity.
    map: ChunkMap,
    /// Holders whose connection failed, unused until the time given.
    cooldown: Cooldowns,
    mismatched: BTreeSet<u32>,
    /// When a download that cannot progress gives up (armed while it waits).
    give_up_at: Option<Timestamp>,
    /// When a download whose remaining chunks have only bad holders is rejected (armed when
    /// that happens; a refreshed chunk map with a good holder disarms it).
    reject_at: Option<Timestamp>,
    next_refresh: Timestamp,
    /// The current wait between chunk-map refreshes (see `PeerConfig::refresh_min_ms`).
    refresh_ms: u64,
    committing: bool,
    /// Chunks found on disk still being checked (see `check`): not requested meanwhile.
    check: Option<DiskCheck>,
    /// When a chunk last arrived, or was found good on disk: a download that goes without
    /// for the stall timeout fails, whatever it is still waiting for.
    last_progress: Timestamp,
    /// When the user was last told what a download without progress waits on.
    stall_noted: Timestamp,
    /// Bytes fetched from holders (for the rate shown; chunks found on disk excluded).
    fetched: u64,
    /// Why each holder last failed us (refused, timed out, busy, bad data): named when the
    /// download stalls. Bounded like the chunk map.
    trouble: BTreeMap<SocketAddr, Cow<'static, str>>,
    /// When each holder was last reported to the tracker (see `may_report`).
    reported: BTreeMap<SocketAddr, Timestamp>,
    /// How fast each holder has been sending us chunks (see `delivered`). Bounded like the
    /// chunk map.
    speeds: AddrMap<rescue::Speed>,
    /// When requests to holders that had not delivered stop counting against the budget
    /// (see `rescue::PROBE_PATIENCE_MS`), in order: the download is looked at again then.
    probes_due: VecDeque<Timestamp>,
    /// Holders asked for something in this download (bounded like the chunk map).
    tried: BTreeSet<SocketAddr>,
    /// Chunks a holder steered us away from (`SentOften`): no longer picked there, but
    /// the rescue may still ask it when those it steered us to do not deliver (it serves
    /// a chunk it steered once when asked again).
    steered: BTreeSet<(SocketAddr, u32)>,
    /// Holders whose connection failed or timed out since they last delivered, and how
    /// many times: each failure doubles the wait before they are asked again.
    failures: BTreeMap<SocketAddr, u32>,
    /// The shortest time from a request to the first bytes of its answer (a chunk's, or
    /// `Busy`, which is sent at once) seen in this download: the round trip to the nearest
    /// holders, which sizes the shared pipelines.
    answer_min_ms: Option<u64>,
}

/// Up to this many holders a pick looks up rather than walks to (a search costs a few
/// comparisons, a walk up to one per holder known).
const FEW: usize = 4;

/// Whether `only` lists at most `FEW` holders.
fn is_few(only: &Option<&mut (dyn Iterator<Item = SocketAddr> + '_)>) -> bool {
    (only.as_ref()).is_some_and(|o| o.size_hint().1.is_some_and(|n| n <= FEW))
}

/// How a download stands after a change (see `Active::judge`).
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Standing {
    /// Still under way, or waiting within its time.
    Going,
    /// Every wanted chunk is held.
    Complete,
    /// No chunk arrived for the stall timeout.
    Stalled,
    /// These chunks came bad from every holder that has them, and the grace is over.
    Rejected(Vec<u32>),
    /// This chunk has had no usable holder for the unavailability timeout.
    Unavailable(u32),
}

/// What to do with a download that has nothing in flight.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Requests can still be made (or are being made).
    Proceed,
    /// Some wanted chunk is held only by holders that sent bad data: reject the file.
    Reject,
    /// Some wanted chunk has no usable holder now; wait for the chunk map to change.
    Wait,
}

impl Active {
    /// A download of `want` of the file `root` starting at `now` with nothing held, whose
    /// chunk map is refreshed `refresh_ms` from now and `check` on disk first.
    pub fn new(
        policy: FetchPolicy,
        root: Root,
        manifest: Arc<Manifest>,
        want: ChunkSet,
        check: Option<DiskCheck>,
        refresh_ms: u64,
        now: Timestamp,
    ) -> Active {
        Active {
            policy,
            root,
            have: ChunkSet::empty(manifest.chunk_count()),
            map: ChunkMap::new(manifest.chunk_count()),
            manifest,
            want,
            storing: BTreeSet::new(),
            cooldown: Cooldowns::default(),
            mismatched: BTreeSet::new(),
            give_up_at: None,
            reject_at: None,
            next_refresh: now.plus_ms(refresh_ms),
            refresh_ms,
            committing: false,
            check,
            last_progress: now,
            stall_noted: now,
            fetched: 0,
            trouble: BTreeMap::new(),
            reported: BTreeMap::new(),
            speeds: AddrMap::default(),
            probes_due: VecDeque::new(),
            tried: BTreeSet::new(),
            steered: BTreeSet::new(),
            failures: BTreeMap::new(),
            answer_min_ms: None,
        }
    }

    // ---- getters ----

    pub fn root(&self) -> Root {
        self.root
    }

    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    pub fn shared_manifest(&self) -> &Arc<Manifest> {
        &self.manifest
    }

    /// Chunks the user asked for.
    pub fn want(&self) -> &ChunkSet {
        &self.want
    }

    /// Chunks verified and stored.
    pub fn have(&self) -> &ChunkSet {
        &self.have
    }

    /// Whether `chunk` arrived and is being hashed or written.
    pub fn is_storing(&self, chunk: u32) -> bool {
        self.storing.contains(&chunk)
    }

    /// Chunks arrived and being hashed or written.
    pub fn storing_count(&self) -> usize {
        self.storing.len()
    }

    /// Bytes fetched from holders (chunks found on disk excluded).
    pub fn fetched(&self) -> u64 {
        self.fetched
    }

    /// The check of chunks found on disk, while it runs.
    pub fn check(&self) -> Option<&DiskCheck> {
        self.check.as_ref()
    }

    pub fn check_mut(&mut self) -> Option<&mut DiskCheck> {
        self.check.as_mut()
    }

    /// This download's armed timers and when each is due. While the file is committed
    /// nothing is waited for: no stall counts.
    pub fn timers(&self, unavailable_after_ms: u64) -> [Option<(DownloadTimer, Timestamp)>; 7] {
        let waiting = !self.committing;
        let stall_at = self.last_progress.plus_ms(unavailable_after_ms);
        [
            waiting.then_some((DownloadTimer::Stall, stall_at)),
            Some((DownloadTimer::Refresh, self.next_refresh)),
            self.cooldown
                .earliest_end()
                .map(|t| (DownloadTimer::CooldownEnd, t)),
            self.give_up_at.map(|t| (DownloadTimer::GiveUp, t)),
            self.reject_at.map(|t| (DownloadTimer::Reject, t)),
            waiting.then(|| (DownloadTimer::StallNote, self.stall_note_at())),
            (self.probes_due.front()).map(|t| (DownloadTimer::ProbeDue, *t)),
        ]
    }

    // ---- what happens to it ----

    /// A copy of `chunk` arrived: false if it is held or being stored already (an endgame
    /// duplicate), otherwise it is being stored from now on.
    pub fn arrived(&mut self, chunk: u32) -> bool {
        if self.have.contains(chunk) || self.storing.contains(&chunk) {
            return false;
        }
        self.storing.insert(chunk)
    }

    /// The copy of `chunk` that `holder` sent failed verification: the holder is bad for
    /// this file, and the chunk is missing again.
    pub fn mismatched(&mut self, chunk: u32, holder: SocketAddr) {
        self.storing.remove(&chunk);
        self.mismatched.insert(chunk);
        self.map.mark_bad(holder);
        self.note_trouble(holder, "sent bad data");
    }

    /// `chunk`, fetched, is stored: progress (not yet held: see `hold`).
    pub fn stored(&mut self, now: Timestamp, chunk: u32) {
        self.storing.remove(&chunk);
        self.note_progress(now);
        self.fetched += self
            .manifest
            .chunk_range(chunk)
            .map_or(0, |(_, len)| u64::from(len));
    }

    /// `chunk` is verified and on disk: held.
    pub fn hold(&mut self, chunk: u32) {
        self.have.insert(chunk);
    }

    /// Every wanted chunk is held and the file is being committed: nothing more is asked.
    pub fn start_commit(&mut self) {
        self.committing = true;
    }

    /// The check on disk is over (or abandoned): its chunks count as missing or held.
    pub fn end_check(&mut self) -> Option<DiskCheck> {
        self.check.take()
    }

    /// `holder`'s connection failed or timed out at `now`: it is left alone for `base_ms`,
    /// doubled for each failure since it last delivered (up to 8 times as long), so a
    /// holder that keeps taking requests and never sends is asked ever more rarely.
    pub fn failed(&mut self, holder: SocketAddr, now: Timestamp, base_ms: u64) {
        let known = self.failures.contains_key(&holder);
        if !known && self.failures.len() >= MAX_KNOWN_HOLDERS {
            return self.cooldown.set(holder, now.plus_ms(base_ms));
        }
        let n = self.failures.entry(holder).or_insert(0);
        let wait_ms = base_ms.saturating_mul(1 << (*n).min(MAX_FAILURE_DOUBLINGS));
        *n = n.saturating_add(1);
        self.cooldown.set(holder, now.plus_ms(wait_ms));
    }

    /// Leaves `holder` alone until `until` at least (it said `Busy`: we wait in its line).
    pub fn cool_at_least(&mut self, holder: SocketAddr, until: Timestamp) {
        self.cooldown.in_line(holder, until);
    }

    /// Whether the download may open a connection to another holder: not while it waits
    /// in `most_lines_waiting` holders' lines (see `FetchPolicy::most_lines_waiting`).
    pub fn may_connect(&self) -> bool {
        self.cooldown.lines() < self.policy.most_lines_waiting
    }

    /// `holder` may be asked at once (it said `Ready`, or the tracker introduced it).
    pub fn warm(&mut self, holder: SocketAddr) {
        self.cooldown.remove(holder);
    }

    /// A fresh chunk map came: refresh again soon if it brought `news`, later if not
    /// (doubling from `min_ms` up to `max_ms`).
    pub fn refreshed(&mut self, now: Timestamp, news: bool, min_ms: u64, max_ms: u64) {
        self.refresh_ms = if news {
            min_ms
        } else {
            self.refresh_ms.saturating_mul(2).clamp(min_ms, max_ms)
        };
        self.next_refresh = now.plus_ms(self.refresh_ms);
    }

    /// The tracker session began again: the next refresh is one wait from now.
    pub fn refresh_from(&mut self, now: Timestamp) {
        self.next_refresh = now.plus_ms(self.refresh_ms);
    }

    /// A refresh is asked for now: the next is pushed back by at least `max_ms` (a fresh
    /// map moves it again: this covers an answer that never comes).
    pub fn refresh_asked(&mut self, now: Timestamp, max_ms: u64) {
        self.next_refresh = now.plus_ms(self.refresh_ms.max(max_ms));
    }

    /// Forgets cooldowns over by `now`.
    pub fn expire_cooldowns(&mut self, now: Timestamp) {
        self.cooldown.expire(now);
    }

    /// What to tell the user a download without progress waits on (seconds without
    /// progress, what it waits on); the next note is due one period from now.
    pub fn stall_note(&mut self, now: Timestamp) -> (u64, String) {
        self.stall_noted = now;
        (now.since_ms(self.last_progress) / 1000, self.waiting_on())
    }

    /// Judges the download after a change, with `in_flight` requests outstanding: arms or
    /// disarms the give-up and reject timers and says how it stands.
    pub fn judge(
        &mut self,
        now: Timestamp,
        in_flight: usize,
        unavailable_after_ms: u64,
        reject_grace_ms: u64,
    ) -> Standing {
        if now.since_ms(self.last_progress) >= unavailable_after_ms && !self.committing {
            return Standing::Stalled;
        }
        if self.committing || in_flight > 0 || !self.storing.is_empty() || self.check.is_some() {
            self.give_up_at = None;
            self.reject_at = None;
            return Standing::Going;
        }
        if self.is_complete() {
            return Standing::Complete;
        }
        match self.verdict(now) {
            Verdict::Proceed => {
                self.give_up_at = None;
                self.reject_at = None;
            }
            Verdict::Reject if self.reject_at.is_none() => {
                // A good holder may be between sessions: look again before refusing the file.
                self.reject_at = Some(now.plus_ms(reject_grace_ms));
                self.give_up_at = None;
                self.next_refresh = now;
            }
            Verdict::Reject if self.reject_at.is_some_and(|t| t > now) => {}
            Verdict::Reject => {
                return Standing::Rejected(self.mismatched.iter().copied().collect())
            }
            Verdict::Wait => match self.give_up_at {
                _ if self.reject_at.take().is_some() => {}
                None => self.give_up_at = Some(now.plus_ms(unavailable_after_ms)),
                Some(t) if t <= now => {
                    let stuck = self.want.iter().find(|c| !self.have.contains(*c));
                    return Standing::Unavailable(stuck.unwrap_or(0));
                }
                Some(_) => {}
            },
        }
        Standing::Going
    }

    /// When to tell the user next what the download waits on, if nothing arrives first.
    fn stall_note_at(&self) -> Timestamp {
        self.last_progress
            .max(self.stall_noted)
            .plus_ms(self.policy.stall_note_every_ms)
    }

    /// A chunk arrived or was found good on disk.
    pub fn note_progress(&mut self, now: Timestamp) {
        self.last_progress = now;
    }

    /// Remembers why `holder` failed us last (kept for as many holders as the map keeps).
    /// (Most reasons are fixed text, kept without a copy: a busy holder is noted for
    /// every `Busy`.)
    pub fn note_trouble(&mut self, holder: SocketAddr, why: impl Into<Cow<'static, str>>) {
        if self.trouble.len() < MAX_KNOWN_HOLDERS || self.trouble.contains_key(&holder) {
            self.trouble.insert(holder, why.into());
        }
    }

    /// Whether `holder` may be reported to the tracker now (and, if so, that it was): once
    /// for as long as the tracker keeps a report, so a failing holder costs the tracker one
    /// message per download, not one per failure. Bounded like the chunk map.
    pub fn may_report(&mut self, holder: SocketAddr, now: Timestamp) -> bool {
        let fresh = |at: &Timestamp| now.since_ms(*at) < REPORT_TTL_MS;
        if self.reported.get(&holder).is_some_and(fresh) {
            return false;
        }
        if self.reported.len() >= MAX_KNOWN_HOLDERS {
            self.reported.retain(|_, at| fresh(at));
        }
        if self.reported.len() >= MAX_KNOWN_HOLDERS && !self.reported.contains_key(&holder) {
            return false;
        }
        self.reported.insert(holder, now);
        true
    }

    /// What the download waits on, in one line: the missing chunks, and for their holders
    /// why each has not delivered (or that nobody holds them).
    pub fn waiting_on(&self) -> String {
        const SHOWN: usize = 8;
        let missing: Vec<u32> = self.missing().collect();
        let mut chunks: Vec<String> = missing.iter().take(SHOWN).map(u32::to_string).collect();
        if missing.len() > SHOWN {
            chunks.push(format!("… {} more", missing.len() - SHOWN));
        }
        // Those that have a missing chunk, and those that failed us (a holder that refused
        // a chunk is no longer listed for it until the next chunk map).
        let mut holders: BTreeSet<SocketAddr> = self.trouble.keys().copied().collect();
        for (addr, have) in self.map.iter() {
            if missing.iter().any(|c| have.contains(*c)) {
                holders.insert(*addr);
            }
        }
        let mut why: Vec<String> = holders
            .iter()
            .take(SHOWN)
            .map(|h| {
                let reason = if self.map.is_bad(h) {
                    "sent bad data"
                } else {
                    self.trouble
                        .get(h)
                        .map_or("asked, no answer yet", |why| why)
                };
                format!("{h}: {reason}")
            })
            .collect();
        if holders.len() > SHOWN {
            why.push(format!("… {} more holder(s)", holders.len() - SHOWN));
        }
        let who = if why.is_empty() {
            "no holder of them is known".to_string()
        } else {
            format!("holders: {}", why.join("; "))
        };
        format!(
            "{} chunk(s) missing ({}); {who}",
            missing.len(),
            chunks.join(", ")
        )
    }

    /// Replaces the chunk map with a fresh locate answer (bad marks and cooldowns stay).
    /// Whether it brought news: some holder has a chunk still missing that it did not
    /// have before.
    pub fn set_holders(&mut self, holders: Vec<LocatedHolder>) -> bool {
        self.merge_holders(holders, |_| false)
    }

    /// Like `set_holders`, but holders for which `keep` holds stay in the map even when
    /// the sample left them out (their chunk sets can only have grown since).
    pub fn merge_holders(
        &mut self,
        holders: Vec<LocatedHolder>,
        keep: impl Fn(SocketAddr) -> bool,
    ) -> bool {
        let count = self.manifest.chunk_count();
        let fresh: BTreeMap<SocketAddr, ChunkSet> = holders
            .into_iter()
            .filter(|h| h.have.len() == count && h.have.is_well_formed())
            .map(|h| (h.addr, h.have))
            .collect();
        let missing = self.missing_set();
        let news = fresh.iter().any(|(addr, have)| match self.map.get(addr) {
            Some(before) => (have.words().zip(before.words()).zip(missing.words()))
                .any(|((now, then), missing)| now & !then & missing != 0),
            None => have.intersects(&missing),
        });
        self.map.replace(fresh, keep);
        news
    }

    /// Adds or updates one holder (an introduction); false if its chunk set does not fit
    /// the file, or the map is full.
    pub fn learn_holder(&mut self, holder: LocatedHolder) -> bool {
        let LocatedHolder { addr, have } = holder;
        if have.len() != self.manifest.chunk_count() || !have.is_well_formed() {
            return false;
        }
        self.map.learn_holder(addr, have)
    }

    /// Requests one holder may have outstanding: with few holders a deep pipeline (nobody
    /// else could take the chunks, and depth hides latency), with many a shallow one, so
    /// that a chunk does not wait queued at one holder while another that frees a slot
    /// could send it at once.
    pub fn pipeline_depth(&self) -> usize {
        let p = &self.policy;
        if self.map.len() > p.few_holders {
            self.in_shared_chunks(p.shared_requests_per_holder, p.requests_per_holder)
        } else {
            p.requests_per_holder
        }
    }

    /// `requests` of `FetchPolicy::shared_depth_chunk_bytes` each, as requests for this
    /// file's chunks (the same bytes in flight), between `requests` and `most`. They cover
    /// round trips up to `shared_depth_round_trip_ms`; on longer paths the bytes grow with
    /// the round trip (the shortest wait for an answer), or the downlink idles between them.
    fn in_shared_chunks(&self, requests: usize, most: usize) -> usize {
        let chunk = u64::from(self.manifest.chunk_size.max(1));
        let covered_ms = self.policy.shared_depth_round_trip_ms.max(1);
        let round_trip_ms = self
            .answer_min_ms
            .unwrap_or(0)
            .clamp(covered_ms, 4 * covered_ms);
        let bytes =
            requests as u64 * u64::from(self.policy.shared_depth_chunk_bytes) * round_trip_ms
                / covered_ms;
        let scaled = usize::try_from(bytes / chunk).unwrap_or(most);
        scaled.clamp(requests, most.max(requests))
    }

    /// The answer to a request made at `issued` began to come at `now` (a chunk's first
    /// bytes, or `Busy`).
    pub fn answer_began(&mut self, issued: Timestamp, now: Timestamp) {
        let waited_ms = now.since_ms(issued);
        self.answer_min_ms = Some(self.answer_min_ms.map_or(waited_ms, |m| m.min(waited_ms)));
    }

    /// Requests `holder` may have in flight: once another holder has delivered, one (a
    /// probe) until it has delivered too — so holders that take requests and send nothing
    /// hold one each, not a pipeline — else `pipeline_depth`.
    pub fn depth_for(&self, holder: SocketAddr) -> usize {
        if self.has_delivered(holder) || !self.any_delivered() {
            self.pipeline_depth()
        } else {
            1
        }
    }

    /// Requests this download may have outstanding in all: with few holders many (each
    /// holder's pipeline is deep), with many a few, so that chunks are not committed to
    /// holders long before they can arrive.
    pub fn request_budget(&self) -> usize {
        let p = &self.policy;
        if self.map.len() > p.few_holders {
            self.in_shared_chunks(p.shared_requests_per_download, p.requests_per_download)
        } else {
            p.requests_per_download
        }
    }

    /// Whether another request may be made now, with `asked` in flight (see `counted`).
    pub fn may_request(&self, asked: &Asked, now: Timestamp) -> bool {
        if self.committing {
            return false;
        }
        let budget = self.request_budget();
        // A request counts once at most: fewer than the budget need no closer look.
        asked.count() < budget || self.counted(asked, now) < budget
    }

    /// Who holds what.
    pub fn map(&self) -> &ChunkMap {
        &self.map
    }

    /// Changes to who holds what (a `Have`, a refusal); bad marks come with `mismatched`.
    pub fn map_mut(&mut self) -> &mut ChunkMap {
        &mut self.map
    }

    pub fn is_complete(&self) -> bool {
        self.want.is_subset(&self.have)
    }

    /// Wanted chunks neither held nor being stored nor waiting for their check on disk.
    fn missing(&self) -> impl Iterator<Item = u32> + '_ {
        self.want.iter().filter(|c| {
            !self.have.contains(*c) && !self.storing.contains(c) && !self.is_checking(*c)
        })
    }

    fn is_checking(&self, chunk: u32) -> bool {
        self.check.as_ref().is_some_and(|k| k.is_pending(chunk))
    }

    /// The chunks of `missing`, as a set.
    fn missing_set(&self) -> ChunkSet {
        let mut set = self.want.clone();
        set.remove_all(&self.have);
        self.storing.iter().for_each(|c| set.remove(*c));
        if self.check.is_some() {
            set = ChunkSet::from_indices(set.len(), set.iter().filter(|c| !self.is_checking(*c)));
        }
        set
    }

    fn cooling(&self, addr: SocketAddr, now: Timestamp) -> bool {
        self.cooldown.is_cooling(addr, now)
    }

    /// Whether some missing chunk has holders, all of them bad.
    fn hopeless(&self) -> bool {
        !self.mismatched.is_empty()
            && self
                .missing()
                .any(|c| self.map.good_count(c) == 0 && self.map.anyone_has(c))
    }

    /// The next (chunk, holder) to request: the rarest missing chunk not in flight with a
    /// holder that has a free slot, then a random such holder; when every missing chunk is
    /// in flight (endgame), a straggler duplicated to another holder. It runs at least once
    /// per request, and most calls find nothing to ask, so holders with nothing wanted are
    /// passed over before the costlier slot check. `has_slot` is asked about holders in
    /// address order, so a caller can answer with [`seek`]; `only`, when given, lists (in
    /// address order) the only holders that may have a slot, and the rest are not visited.
    /// Of a chunk's ready holders, one `serving` us (connected, and not `Busy` since) is
    /// picked if there is one.
    pub fn next_request(
        &self,
        asked: &Asked,
        now: Timestamp,
        only: Option<&mut dyn Iterator<Item = SocketAddr>>,
        has_slot: &mut dyn FnMut(SocketAddr) -> bool,
        serving: &dyn Fn(&SocketAddr) -> bool,
        rng: &mut ChaCha8Rng,
    ) -> Option<(u32, SocketAddr)> {
        if self.hopeless() {
            return None;
        }
        let endgame = self.in_endgame(asked);
        // What a request could be for: chunks nobody was asked for, or in the endgame
        // (where every missing chunk is in flight) stragglers.
        let mut wanted = self.missing_set();
        if !endgame {
            asked.chunks().for_each(|c| wanted.remove(c));
        }
        if wanted.is_empty() {
            return if endgame {
                None
            } else {
                self.rescue(asked, now, only, has_slot, rng)
            };
        }
        // The holders, `only` and the cooldowns are all in address order: merged passes,
        // but a few holders (`only` is often one) are looked up.
        let few = is_few(&only);
        let candidates = self.candidates(only);
        let mut cooldowns = self.cooldown.by_addr().peekable();
        let mut cooling = |addr: &SocketAddr| match few {
            true => self.cooling(*addr, now),
            false => seek(&mut cooldowns, addr).is_some_and(|until| *until > now),
        };
        let steered = self.steered_holders(&wanted);
        let ready: Vec<(SocketAddr, &ChunkSet)> = candidates
            .filter(|(addr, have)| {
                // Cheapest first: a holder's chunks lie beside its address, and most holders
                // have nothing wanted (behind us, or asked already) or are cooling (`Busy`).
                (have.intersects(&wanted) || steered.binary_search(addr).is_ok())
                    && !cooling(addr)
                    && !self.map.is_bad(addr)
                    && has_slot(**addr)
            })
            .map(|(addr, have)| (*addr, have))
            .collect();
        if ready.is_empty() {
            return None;
        }
        let rarity = |c: u32| self.map.good_count(c);
        let ready_for = |c: u32| {
            let asked = asked.holders(c);
            ready
                .iter()
                .filter(move |(addr, have)| have.contains(c) && !asked.contains(addr))
                .map(|(addr, _)| *addr)
        };
        let chunk = if endgame {
            let stragglers = wanted
                .iter()
                .filter(|c| asked.holders(*c).len() < self.policy.copies_in_flight)
                .filter(|c| ready_for(*c).next().is_some());
            match picker::rarest(stragglers.map(|c| (c, rarity(c))), rng) {
                Some(chunk) => chunk,
                // Every straggler has its copies out: one more goes to a holder far
                // sooner than all of them (those asked may have stalled).
                None if !self.speeds.is_empty() => {
                    let copies = self.policy.copies_in_flight + 1;
                    let owed: Vec<u32> = (wanted.iter())
                        .filter(|c| self.live_copies(*c, asked, now) < copies)
                        .collect();
                    return self.rescue_among(&ready, &owed, asked, now, rng);
                }
                None => return None,
            }
        } else {
            // A chunk nobody was asked for has a ready holder if any ready holder has it
            // (often one: a holder that said `Have` or `Ready` is asked on its own).
            let mut fresh = wanted;
            match ready.as_slice() {
                [(_, have)] => fresh.keep_all(have),
                _ => {
                    let mut offered = ChunkSet::empty(self.want.len());
                    ready.iter().for_each(|(_, have)| offered.add_all(have));
                    fresh.keep_all(&offered);
                }
            }
            let heeded = self.heed_steering(&fresh, &ready, &steered);
            match heeded.and_then(|heeded| self.map.rarest_among(&heeded, rng)) {
                Some(chunk) => chunk,
                None => self.map.rarest_among(&fresh, rng)?,
            }
        };
        let mut holders: Vec<SocketAddr> = ready_for(chunk).collect();
        // One that steered us from it only if nobody else has it (see `heed_steering`).
        let heeded = |h: &SocketAddr| !self.steered_from(*h, chunk, &steered);
        if holders.iter().any(heeded) {
            holders.retain(heeded);
        }
        // In a swarm a new connection costs a round trip before its first request (TCP's
        // handshake; a closed swarm's adds its own), and a holder that said `Busy` is probed
        // first. Among a few holders, all are connected soon, and the first connected would
        // take every request until its deep pipeline filled: a slow one, most of the file.
        if self.map.len() > self.policy.few_holders {
            let serving_us: Vec<SocketAddr> = holders.iter().copied().filter(serving).collect();
            if !serving_us.is_empty() {
                holders = serving_us;
            }
        }
        let holder = picker::random_holder(&holders, rng)?;
        Some((chunk, holder))
    }

    /// The holders a pick may consider, with their chunks, in address order (borrowed from
    /// the map: most are passed over, and an address is 32 bytes to copy): all of them,
    /// or those of `only` (also in address order) that are in the map, looked up when they
    /// are few and found in a walk beside the map when more.
    fn candidates<'r, 's: 'r, 'i: 'r>(
        &'s self,
        only: Option<&'r mut (dyn Iterator<Item = SocketAddr> + 'i)>,
    ) -> Box<dyn Iterator<Item = (&'s SocketAddr, &'s ChunkSet)> + 'r> {
        let few = is_few(&only);
        let mut holders = self.map.iter().peekable();
        match only {
            Some(only) if few => Box::new(only.filter_map(|a| self.map.get_key_value(&a))),
            Some(only) => Box::new(only.filter_map(move |a| seek_entry(&mut holders, &a))),
            None => Box::new(holders),
        }
    }

    /// Every missing chunk is in flight and few are missing: duplicating now costs little
    /// and saves waiting on the slowest holder.
    fn in_endgame(&self, asked: &Asked) -> bool {
        let mut missing = 0;
        for c in self.missing() {
            missing += 1;
            if missing > self.policy.endgame_max_missing || !asked.contains(c) {
                return false;
            }
        }
        true
    }

    /// Judges a download with nothing in flight and nothing being stored.
    pub fn verdict(&self, now: Timestamp) -> Verdict {
        if self.hopeless() {
            return Verdict::Reject;
        }
        let blocked = self
            .missing()
            .any(|c| self.map.good_holders(c).all(|a| self.cooling(a, now)));
        if blocked {
            Verdict::Wait
        } else {
            Verdict::Proceed
        }
    }
}

mod rescue;
#[cfg(test)]
mod tests;
