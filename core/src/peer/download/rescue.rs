//! Holders by their pace: each holder's delivery speed, measured chunk to chunk; the
//! request budget that holders which never deliver cannot hold; and the rescue — a chunk
//! owed by holders far slower than a delivering one (or stalled) is asked of that one too.

use super::*;

/// How long a request to a holder that has never delivered counts against the budget.
const PROBE_PATIENCE_MS: u64 = 1_000;
/// Probe expiries remembered per download (requests in flight are far fewer).
const MAX_PROBES_DUE: usize = 256;

/// A holder's delivery rate, smoothed, and when its last chunk came.
#[derive(Clone, Copy, Debug)]
pub(super) struct Speed {
    bytes_per_ms: f64,
    last: Timestamp,
}

impl Active {
    /// `holder` delivered a chunk of `len` bytes at `now`, asked of it at `issued`: its
    /// speed is the bytes over the time since it was asked or since its previous chunk
    /// came, whichever is later (a pipelined holder is timed from chunk to chunk),
    /// smoothed over deliveries.
    pub fn delivered(&mut self, holder: SocketAddr, len: usize, issued: Timestamp, now: Timestamp) {
        self.failures.remove(&holder);
        let known = self.speeds.get(&holder).copied();
        if known.is_none() && self.speeds.len() >= MAX_KNOWN_HOLDERS {
            return;
        }
        let from = known.map_or(issued, |s| s.last.max(issued));
        let sample = len as f64 / now.since_ms(from).max(1) as f64;
        let bytes_per_ms = known.map_or(sample, |s| (s.bytes_per_ms + sample) / 2.0);
        self.speeds.insert(
            holder,
            Speed {
                bytes_per_ms,
                last: now,
            },
        );
    }

    /// A request went to `holder` at `now`: if it has not delivered yet, the download is
    /// looked at again when that request stops counting against the budget.
    pub fn issued(&mut self, holder: SocketAddr, now: Timestamp) {
        if self.tried.len() < MAX_KNOWN_HOLDERS {
            self.tried.insert(holder);
        }
        if !self.has_delivered(holder) && self.probes_due.len() < MAX_PROBES_DUE {
            self.probes_due.push_back(now.plus_ms(PROBE_PATIENCE_MS));
        }
    }

    /// `holder` answered a request without the chunk (a refusal, or `Busy`): it is not
    /// silent, and while nobody delivers it may be probed again — or a download whose
    /// other holders take requests and never send would wait on them until the request
    /// timeout, while this one, free again or asked again after steering us, would serve.
    pub fn answered(&mut self, holder: SocketAddr) {
        self.tried.remove(&holder);
    }

    /// Probes due by `now` are looked at.
    pub fn probes_looked_at(&mut self, now: Timestamp) {
        while self.probes_due.front().is_some_and(|t| *t <= now) {
            self.probes_due.pop_front();
        }
    }

    /// Whether `holder` has delivered a chunk of this download.
    pub fn has_delivered(&self, holder: SocketAddr) -> bool {
        self.speeds.contains_key(&holder)
    }

    /// Whether any holder has.
    pub fn any_delivered(&self) -> bool {
        !self.speeds.is_empty()
    }

    /// `holder` steered us away from `chunk`: it is not picked for it again, but it may
    /// still rescue it (see `steered`). Bounded: one entry per chunk at most, per holder
    /// known.
    pub fn steered_away(&mut self, chunk: u32, holder: SocketAddr) {
        self.map.forget_chunk(holder, chunk);
        if self.steered.len() < (self.want.len() as usize).max(MAX_KNOWN_HOLDERS) {
            self.steered.insert((holder, chunk));
        }
    }

    /// Of `fresh` (chunks some holder of `ready` has), those some holder could be asked
    /// for other than one that steered us away from it. A refreshed map lists a steered
    /// chunk there again, and asked for it as if new, the holder takes the ask for the hint
    /// that we found it nowhere else: it sends a copy while chunks it never sent wait. So a
    /// pick asks it again only when nothing else is left (`steered`: the holders that
    /// steered us from some wanted chunk, in address order). `None`: all of `fresh`.
    pub(super) fn heed_steering(
        &self,
        fresh: &ChunkSet,
        ready: &[(SocketAddr, &ChunkSet)],
        steered: &[SocketAddr],
    ) -> Option<ChunkSet> {
        let steered_ready = ready
            .iter()
            .filter(|(a, _)| steered.binary_search(a).is_ok());
        let only_there: Vec<u32> = steered_ready
            .flat_map(|(holder, _)| self.steered.range((*holder, 0)..=(*holder, u32::MAX)))
            .map(|(_, chunk)| *chunk)
            .filter(|chunk| fresh.contains(*chunk))
            .filter(|chunk| {
                !(ready.iter()).any(|(other, have)| {
                    have.contains(*chunk) && !self.steered_from(*other, *chunk, steered)
                })
            })
            .collect();
        if only_there.is_empty() {
            return None;
        }
        let mut heeded = fresh.clone();
        only_there.iter().for_each(|chunk| heeded.remove(*chunk));
        Some(heeded)
    }

    /// Whether `holder` steered us away from `chunk` (`steered` as for `heed_steering`).
    pub(super) fn steered_from(
        &self,
        holder: SocketAddr,
        chunk: u32,
        steered: &[SocketAddr],
    ) -> bool {
        steered.binary_search(&holder).is_ok() && self.steered.contains(&(holder, chunk))
    }

    /// The holders that steered us away from some chunk of `wanted`, in address order: one
    /// pass per pick, where asking it of each holder the pick passed over took a range
    /// search apiece.
    pub(super) fn steered_holders(&self, wanted: &ChunkSet) -> Vec<SocketAddr> {
        let mut holders: Vec<SocketAddr> = (self.steered.iter())
            .filter(|(_, c)| wanted.contains(*c))
            .map(|(holder, _)| *holder)
            .collect();
        holders.dedup();
        holders
    }

    /// Requests in flight that count against the budget: all of them but those to holders
    /// that have never delivered to us, asked more than `PROBE_PATIENCE_MS` ago (still
    /// owed). So holders that take requests and send nothing cannot hold the budget until
    /// the request timeout while others could deliver.
    pub(super) fn counted(&self, asked: &Asked, now: Timestamp) -> usize {
        let stale = |(_, holder, at): &(u32, SocketAddr, Timestamp)| {
            now.since_ms(*at) >= PROBE_PATIENCE_MS && !self.speeds.contains_key(holder)
        };
        asked.count() - asked.requests().filter(stale).count()
    }

    /// Every missing chunk is asked of someone, the endgame not yet: a chunk still owed by
    /// holders that are slow beside a ready one is asked of that one too, and whichever copy
    /// comes first is kept. Without it a download waits on a slow holder for every chunk
    /// queued there while a fast holder idles (4.4x the bound for one getter of a 4 MB/s and
    /// a 400 KB/s seeder). Only a holder whose speed is known is trusted to be faster.
    pub(super) fn rescue(
        &self,
        asked: &Asked,
        now: Timestamp,
        only: Option<&mut dyn Iterator<Item = SocketAddr>>,
        has_slot: &mut dyn FnMut(SocketAddr) -> bool,
        rng: &mut ChaCha8Rng,
    ) -> Option<(u32, SocketAddr)> {
        let copies = self.policy.copies_in_flight;
        let owed: Vec<u32> = self
            .missing()
            .filter(|c| self.live_copies(*c, asked, now) < copies)
            .collect();
        if owed.is_empty() {
            return None;
        }
        // Holders that delivered are trusted to rescue. Until someone delivers, or while
        // every holder asked has stopped sending, holders never asked (or that answered
        // since, see `answered`) are tried too (probes): otherwise, with every chunk asked
        // of holders that never send or no longer do, nothing would be asked elsewhere
        // until the request timeout. (Not one merely owing nothing now: its answers may
        // still be being checked, which under load outlasts the patience.)
        let probing = !self.any_delivered() || self.all_given_up(asked, now);
        let candidates = self.candidates(only);
        let ready: Vec<(SocketAddr, &ChunkSet)> = candidates
            .filter(|(addr, _)| {
                self.speeds.contains_key(addr) || (probing && !self.tried.contains(addr))
            })
            .filter(|(addr, _)| !self.cooling(**addr, now) && !self.map.is_bad(addr))
            .filter(|(addr, _)| has_slot(**addr))
            .map(|(addr, have)| (*addr, have))
            .collect();
        self.rescue_among(&ready, &owed, asked, now, rng)
    }

    /// The rescue's pick: among `owed`, the rarest chunk that a holder of `ready` (with a
    /// known speed) would send far sooner than those it is asked of, and such a holder.
    pub(super) fn rescue_among(
        &self,
        ready: &[(SocketAddr, &ChunkSet)],
        owed: &[u32],
        asked: &Asked,
        now: Timestamp,
        rng: &mut ChaCha8Rng,
    ) -> Option<(u32, SocketAddr)> {
        let sooner_for = |c: u32| -> Vec<SocketAddr> {
            ready
                .iter()
                .filter(|(addr, have)| {
                    (have.contains(c) || self.steered.contains(&(*addr, c)))
                        && !asked.holders(c).contains(addr)
                        && self.sooner(*addr, c, asked, now)
                })
                .map(|(addr, _)| *addr)
                .collect()
        };
        let rescuable = owed.iter().filter(|c| !sooner_for(**c).is_empty());
        let chunk = picker::rarest(rescuable.map(|c| (*c, self.map.good_count(*c))), rng)?;
        picker::random_holder(&sooner_for(chunk), rng).map(|holder| (chunk, holder))
    }

    /// Copies of `chunk` asked of holders that may still send them: those given up on (see
    /// `given_up`) do not count against the copies allowed in flight, so holders that take
    /// a chunk and never send it cannot keep it from a holder that would.
    pub(super) fn live_copies(&self, chunk: u32, asked: &Asked, now: Timestamp) -> usize {
        let holders = asked.holders(chunk);
        holders.len()
            - holders
                .iter()
                .filter(|h| self.given_up(**h, chunk, asked, now))
                .count()
    }

    /// Whether every request in flight is to a holder given up on (see `given_up`).
    fn all_given_up(&self, asked: &Asked, now: Timestamp) -> bool {
        (asked.requests()).all(|(chunk, holder, _)| self.given_up(holder, chunk, asked, now))
    }

    /// Whether `holder`'s copy of `chunk` is no longer waited for: it has never delivered
    /// and was asked `PROBE_PATIENCE_MS` ago, or it has and has sent nothing since for four
    /// times its own chunk time.
    fn given_up(&self, holder: SocketAddr, chunk: u32, asked: &Asked, now: Timestamp) -> bool {
        let Some(issued) = asked.issued(chunk, holder) else {
            return false;
        };
        match self.speeds.get(&holder) {
            None => now.since_ms(issued) >= PROBE_PATIENCE_MS,
            Some(s) => {
                let len = self.manifest.chunk_range(chunk).map_or(0, |(_, l)| l) as f64;
                let takes_ms = len / s.bytes_per_ms.max(f64::MIN_POSITIVE);
                now.since_ms(s.last.max(issued)) as f64 > 4.0 * takes_ms
            }
        }
    }

    /// Whether `fast` would send `chunk` far sooner than every holder it is asked of: each
    /// is known to be less than half as fast; or has sent nothing for four times as long as
    /// it (or, not yet timed, `fast`) takes for a chunk while owing this one — a holder that
    /// was fast and stalled is not waited on for its pace of before.
    /// A holder not yet timed (a probe) is sooner only than holders given up on (see
    /// `given_up`): those that never delivered, asked `PROBE_PATIENCE_MS` ago or more, and
    /// those that stopped sending.
    fn sooner(&self, fast: SocketAddr, chunk: u32, asked: &Asked, now: Timestamp) -> bool {
        let Some(speed) = self.speeds.get(&fast).map(|s| s.bytes_per_ms) else {
            let given_up = |h: &SocketAddr| self.given_up(*h, chunk, asked, now);
            return asked.holders(chunk).iter().all(given_up);
        };
        let len = self.manifest.chunk_range(chunk).map_or(0, |(_, l)| l) as f64;
        let takes_ms = |bytes_per_ms: f64| len / bytes_per_ms.max(f64::MIN_POSITIVE);
        asked.holders(chunk).iter().all(|h| {
            let Some(issued) = asked.issued(chunk, *h) else {
                return false;
            };
            match self.speeds.get(h) {
                Some(s) if s.bytes_per_ms * 2.0 < speed => true,
                Some(_) => self.given_up(*h, chunk, asked, now),
                // While `fast` has nothing asked of it, one that never delivered is not
                // waited on past the probe patience, which its `ProbeDue` wakes the
                // download for (a trickler would otherwise hold its chunks until a
                // pessimistic estimate of `fast` ran out four times).
                None => {
                    let waited_ms = now.since_ms(issued);
                    let idle = || !asked.chunks().any(|c| asked.holders(c).contains(&fast));
                    waited_ms as f64 > 4.0 * takes_ms(speed)
                        || (waited_ms >= PROBE_PATIENCE_MS && idle())
                }
            }
        })
    }
}
