//! The request ledger: every chunk request outstanding, recorded once and changed only by
//! `issue`, `answer`, `arrived`, `release_holder` and `drop_conn`. It is read two ways: per holder connection
//! (what it owes, for pipelines, deadlines and eviction) and per file (who was asked for
//! each chunk, for the picker and the request budget).

use crate::machine::ConnId;
use crate::manifest::Root;
use crate::time::Timestamp;
use std::collections::BTreeMap;
use std::net::SocketAddr;

#[derive(Debug, Default)]
pub(super) struct Ledger {
    /// Per holder connection: requests not yet answered, in the order asked (a holder
    /// answers in that order). An endgame duplicate stays here after another copy arrived:
    /// the holder still owes it and will send it.
    owed: BTreeMap<ConnId, Vec<(Root, u32)>>,
    /// Per file: chunks asked for and not yet arrived, with the holders asked.
    asked: BTreeMap<Root, Asked>,
}

/// Who was asked for each chunk of one file that has not arrived yet, and when.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Asked {
    by_chunk: BTreeMap<u32, Requests>,
    /// Requests in `by_chunk`: every pick asks, most of them when the budget is full.
    count: usize,
}

/// The requests for one chunk: the holders asked, in the order asked, and when, side by
/// side (the picker reads the holders as a slice).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Requests {
    holders: Vec<SocketAddr>,
    issued: Vec<Timestamp>,
}

static NOTHING_ASKED: Asked = Asked {
    by_chunk: BTreeMap::new(),
    count: 0,
};

impl Asked {
    /// Requests outstanding for chunks still missing (a duplicate counts once per holder).
    pub fn count(&self) -> usize {
        self.count
    }

    /// Every request outstanding: the chunk, the holder asked, and when.
    pub fn requests(&self) -> impl Iterator<Item = (u32, SocketAddr, Timestamp)> + '_ {
        (self.by_chunk.iter()).flat_map(|(chunk, r)| {
            (r.holders.iter().zip(&r.issued)).map(|(holder, at)| (*chunk, *holder, *at))
        })
    }

    pub fn contains(&self, chunk: u32) -> bool {
        self.by_chunk.contains_key(&chunk)
    }

    /// The holders asked for `chunk`.
    pub fn holders(&self, chunk: u32) -> &[SocketAddr] {
        self.by_chunk
            .get(&chunk)
            .map(|r| r.holders.as_slice())
            .unwrap_or_default()
    }

    /// When `holder` was asked for `chunk`.
    pub fn issued(&self, chunk: u32, holder: SocketAddr) -> Option<Timestamp> {
        let r = self.by_chunk.get(&chunk)?;
        let i = r.holders.iter().position(|h| *h == holder)?;
        r.issued.get(i).copied()
    }

    /// The chunks asked for, ascending.
    pub fn chunks(&self) -> impl Iterator<Item = u32> + '_ {
        self.by_chunk.keys().copied()
    }

    fn add(&mut self, chunk: u32, holder: SocketAddr, now: Timestamp) {
        let r = self.by_chunk.entry(chunk).or_default();
        r.holders.push(holder);
        r.issued.push(now);
        self.count += 1;
    }

    fn remove(&mut self, chunk: u32, holder: SocketAddr) {
        if let Some(r) = self.by_chunk.get_mut(&chunk) {
            self.count -= r.remove(holder);
            if r.holders.is_empty() {
                self.by_chunk.remove(&chunk);
            }
        }
    }

    fn remove_chunk(&mut self, chunk: u32) {
        if let Some(r) = self.by_chunk.remove(&chunk) {
            self.count -= r.holders.len();
        }
    }

    fn remove_holder(&mut self, holder: SocketAddr) {
        for r in self.by_chunk.values_mut() {
            self.count -= r.remove(holder);
        }
        self.by_chunk.retain(|_, r| !r.holders.is_empty());
    }

    /// Requests for `chunks`, each asked of its holders at `at`.
    #[cfg(test)]
    pub fn with(at: Timestamp, chunks: impl IntoIterator<Item = (u32, Vec<SocketAddr>)>) -> Asked {
        let mut asked = Asked::default();
        for (chunk, holders) in chunks {
            holders.into_iter().for_each(|h| asked.add(chunk, h, at));
        }
        asked
    }
}

impl Requests {
    /// Forgets the requests to `holder`: how many there were.
    fn remove(&mut self, holder: SocketAddr) -> usize {
        let before = self.holders.len();
        // The times first, each kept where its holder is.
        let mut kept = self.holders.iter().map(|h| *h != holder);
        self.issued.retain(|_| kept.next().unwrap_or(true));
        self.holders.retain(|h| *h != holder);
        before - self.holders.len()
    }
}

impl Ledger {
    // ---- getters ----

    /// Who was asked for which chunk of the file `root`.
    pub fn asked(&self, root: &Root) -> &Asked {
        self.asked.get(root).unwrap_or(&NOTHING_ASKED)
    }

    /// How many requests the holder on `conn` owes.
    pub fn owed_by(&self, conn: ConnId) -> usize {
        self.owed.get(&conn).map_or(0, Vec::len)
    }

    /// Whether the holder on `conn` owes nothing (it may be let go).
    pub fn owes_nothing(&self, conn: ConnId) -> bool {
        self.owed_by(conn) == 0
    }

    /// Whether the holder on `conn` owes `chunk` of `root`.
    pub fn owes(&self, conn: ConnId, root: Root, chunk: u32) -> bool {
        self.owed
            .get(&conn)
            .is_some_and(|o| o.contains(&(root, chunk)))
    }

    // ---- changes ----

    /// `chunk` of `root` was asked of `holder` on `conn` at `now`.
    pub fn issue(
        &mut self,
        conn: ConnId,
        holder: SocketAddr,
        root: Root,
        chunk: u32,
        now: Timestamp,
    ) {
        self.owed.entry(conn).or_default().push((root, chunk));
        self.asked.entry(root).or_default().add(chunk, holder, now);
    }

    /// `holder` on `conn` answered the request for `chunk` of `root` (with data, a refusal
    /// or `Busy`). `None` if that was never asked of it; otherwise whether it now owes
    /// nothing.
    pub fn answer(
        &mut self,
        conn: ConnId,
        holder: SocketAddr,
        root: Root,
        chunk: u32,
    ) -> Option<bool> {
        let owed = self.owed.get_mut(&conn)?;
        let pos = owed.iter().position(|r| *r == (root, chunk))?;
        owed.remove(pos);
        let idle = owed.is_empty();
        if idle {
            self.owed.remove(&conn);
        }
        if let Some(asked) = self.asked.get_mut(&root) {
            asked.remove(chunk, holder);
        }
        Some(idle)
    }

    /// A copy of `chunk` of `root` arrived: it is no longer in flight, though holders
    /// asked for duplicates still owe theirs (ignored when they land).
    pub fn arrived(&mut self, root: Root, chunk: u32) {
        if let Some(asked) = self.asked.get_mut(&root) {
            asked.remove_chunk(chunk);
        }
    }

    /// `holder` turned out bad for the file `root`: what it still owes no longer counts as
    /// in flight, so those chunks are asked elsewhere at once. It stays owed on the
    /// connection, so the answers are still expected (and dropped when they land).
    pub fn release_holder(&mut self, root: &Root, holder: SocketAddr) {
        if let Some(asked) = self.asked.get_mut(root) {
            asked.remove_holder(holder);
        }
    }

    /// The connection `conn` to `holder` is gone: nothing it owed will come. Returns what
    /// it owed.
    pub fn drop_conn(&mut self, conn: ConnId, holder: SocketAddr) -> Vec<(Root, u32)> {
        for asked in self.asked.values_mut() {
            asked.remove_holder(holder);
        }
        self.owed.remove(&conn).unwrap_or_default()
    }

    /// The download of `root` ended: its chunks are no longer in flight for anyone
    /// (holders that owe them still send them; they are ignored).
    pub fn end(&mut self, root: &Root) {
        self.asked.remove(root);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_released_holder_still_owes_but_nothing_counts_as_in_flight_there() {
        let (liar, other) = (addr(1), addr(2));
        let root = Root([7; 32]);
        let mut l = Ledger::default();
        l.issue(ConnId::Outbound(1), liar, root, 0, Timestamp(0));
        l.issue(ConnId::Outbound(1), liar, root, 1, Timestamp(0));
        l.issue(ConnId::Outbound(2), other, root, 1, Timestamp(0));
        l.release_holder(&root, liar);
        assert!(
            !l.asked(&root).contains(0),
            "chunk 0 may be asked elsewhere"
        );
        assert_eq!(l.asked(&root).holders(1), [other]);
        assert_eq!(
            l.owed_by(ConnId::Outbound(1)),
            2,
            "its answers are still expected"
        );
        assert_eq!(l.answer(ConnId::Outbound(1), liar, root, 0), Some(false));
    }

    const T: Timestamp = Timestamp::ZERO;

    fn addr(n: u8) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, n], 7000))
    }

    #[test]
    fn an_answer_clears_both_views_and_only_what_was_asked() {
        let mut l = Ledger::default();
        let (root, c1, c2) = (Root([1; 32]), ConnId::Outbound(1), ConnId::Outbound(2));
        l.issue(c1, addr(1), root, 0, T);
        l.issue(c1, addr(1), root, 1, T);
        l.issue(c2, addr(2), root, 1, T);
        assert_eq!(l.asked(&root).count(), 3);
        assert_eq!(l.answer(c2, addr(2), root, 0), None, "never asked of it");
        assert_eq!(l.answer(c1, addr(1), root, 1), Some(false));
        assert_eq!(l.asked(&root).holders(1), [addr(2)]);
        assert_eq!(l.answer(c1, addr(1), root, 0), Some(true));
        assert!(l.owes_nothing(c1) && !l.asked(&root).contains(0));
    }

    #[test]
    fn a_duplicate_stays_owed_after_another_copy_arrived() {
        let mut l = Ledger::default();
        let (root, c1, c2) = (Root([1; 32]), ConnId::Outbound(1), ConnId::Outbound(2));
        l.issue(c1, addr(1), root, 4, T);
        l.issue(c2, addr(2), root, 4, T);
        l.arrived(root, 4);
        assert_eq!(l.asked(&root).count(), 0);
        assert!(l.owes(c2, root, 4), "the holder will still send it");
        assert_eq!(l.answer(c2, addr(2), root, 4), Some(true));
    }

    #[test]
    fn a_dropped_connection_owes_nothing_and_is_asked_for_nothing() {
        let mut l = Ledger::default();
        let (a, b, c1) = (Root([1; 32]), Root([2; 32]), ConnId::Outbound(1));
        l.issue(c1, addr(1), a, 0, T);
        l.issue(c1, addr(1), b, 3, T);
        l.issue(ConnId::Outbound(2), addr(2), a, 0, T);
        assert_eq!(l.drop_conn(c1, addr(1)), vec![(a, 0), (b, 3)]);
        assert_eq!(l.owed_by(c1), 0);
        assert_eq!(l.asked(&a).holders(0), [addr(2)]);
        assert!(!l.asked(&b).contains(3));
        l.end(&a);
        assert_eq!(l.asked(&a).count(), 0);
    }

    /// The count kept as requests come and go is the count of requests, and each keeps
    /// the time it was issued, whatever the order of issues, answers, arrivals and drops.
    #[test]
    fn the_kept_count_and_times_follow_every_change() {
        use rand::{Rng, SeedableRng};
        let root = Root([1; 32]);
        for seed in 0..50 {
            let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
            let mut l = Ledger::default();
            let mut issued = BTreeMap::new();
            for step in 0..200u64 {
                let (n, chunk) = (rng.gen_range(1..5u8), rng.gen_range(0..6u32));
                let (conn, holder) = (ConnId::Outbound(u64::from(n)), addr(n));
                match rng.gen_range(0..6) {
                    0..=2 if !l.asked(&root).holders(chunk).contains(&holder) => {
                        l.issue(conn, holder, root, chunk, Timestamp(step));
                        issued.insert((chunk, holder), Timestamp(step));
                    }
                    0..=2 => {}
                    3 => {
                        l.answer(conn, holder, root, chunk);
                        issued.remove(&(chunk, holder));
                    }
                    4 => {
                        l.arrived(root, chunk);
                        issued.retain(|(c, _), _| *c != chunk);
                    }
                    _ => {
                        l.release_holder(&root, holder);
                        issued.retain(|(_, h), _| *h != holder);
                    }
                }
                let asked = l.asked(&root);
                let now: BTreeMap<_, _> = asked.requests().map(|(c, h, t)| ((c, h), t)).collect();
                assert_eq!(now, issued, "seed {seed}, step {step}");
                assert_eq!(asked.count(), issued.len(), "seed {seed}, step {step}");
                for ((c, h), t) in &issued {
                    assert_eq!(asked.issued(*c, *h), Some(*t), "seed {seed}, step {step}");
                }
            }
        }
    }
}
