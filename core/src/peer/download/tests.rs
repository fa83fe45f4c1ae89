//! The download's pure decisions: the picker against a reference, rarity counts, budgets.
use super::*;
use rand::SeedableRng;

fn addr(n: u8) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, n], 7000))
}

/// The next request with every holder ready and none serving us.
fn pick(
    a: &Active,
    asked: &Asked,
    now: Timestamp,
    rng: &mut ChaCha8Rng,
) -> Option<(u32, SocketAddr)> {
    a.next_request(asked, now, None, &mut |_| true, &|_| false, rng)
}

/// A one-chunk download whose chunk holders 1..=`n` all have.
fn held_by(n: u8) -> Active {
    let holders: Vec<(u8, &[u32])> = (1..=n).map(|h| (h, &[0u32][..])).collect();
    active(1, &holders)
}

fn active(chunks: u32, holders: &[(u8, &[u32])]) -> Active {
    let manifest = Manifest {
        size: u64::from(chunks) * 64,
        chunk_size: 64,
        hashes: vec![[0; 32]; chunks as usize],
    };
    let mut a = Active::new(
        FetchPolicy::default(),
        manifest.root(),
        Arc::new(manifest),
        ChunkSet::full(chunks),
        None,
        0,
        Timestamp::ZERO,
    );
    a.set_holders(
        holders
            .iter()
            .map(|(n, have)| LocatedHolder {
                addr: addr(*n),
                have: ChunkSet::from_indices(chunks, have.iter().copied()),
            })
            .collect(),
    );
    a
}

#[test]
fn rare_chunks_come_first() {
    let a = active(4, &[(1, &[0, 1, 2, 3]), (2, &[1, 3])]);
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    let (chunk, holder) = pick(&a, &Asked::default(), Timestamp::ZERO, &mut rng).unwrap();
    assert!(chunk == 0 || chunk == 2);
    assert_eq!(holder, addr(1));
}

/// In a swarm (more holders than `few_holders`), of a chunk's ready holders one already
/// serving us is asked (its connection's handshake is paid); with none serving, any of
/// them may be. Among a few holders any may be asked all the same.
#[test]
fn a_holder_serving_us_is_asked_before_a_new_one() {
    let picks = |holders: u8, serving: &dyn Fn(&SocketAddr) -> bool| {
        let a = held_by(holders);
        let mut picked = BTreeSet::new();
        for seed in 0..60 {
            let mut rng = ChaCha8Rng::seed_from_u64(seed);
            let asked = Asked::default();
            let pick = a.next_request(
                &asked,
                Timestamp::ZERO,
                None,
                &mut |_| true,
                serving,
                &mut rng,
            );
            picked.extend(pick.map(|(_, h)| h));
        }
        picked
    };
    let many = FetchPolicy::default().few_holders as u8 + 2;
    let everyone = |n: u8| (1..=n).map(addr).collect::<BTreeSet<_>>();
    assert_eq!(
        picks(many, &|h| *h == addr(2)),
        [addr(2)].into_iter().collect()
    );
    assert_eq!(picks(many, &|_| false), everyone(many));
    assert_eq!(picks(3, &|h| *h == addr(2)), everyone(3));
}

#[test]
fn with_only_some_holders_listed_the_others_are_not_asked() {
    let a = active(2, &[(1, &[0, 1]), (2, &[0, 1]), (3, &[0, 1])]);
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    for _ in 0..20 {
        let mut asked = Vec::new();
        let mut only = [addr(2), addr(4)].into_iter();
        let next = a.next_request(
            &Asked::default(),
            Timestamp::ZERO,
            Some(&mut only),
            &mut |h| {
                asked.push(h);
                true
            },
            &|_| false,
            &mut rng,
        );
        assert_eq!(next.map(|(_, h)| h), Some(addr(2)));
        assert_eq!(
            asked,
            vec![addr(2)],
            "an unknown listed holder is skipped too"
        );
    }
}

#[test]
fn verified_chunks_are_never_requested_again() {
    let mut a = active(2, &[(1, &[0, 1]), (2, &[0, 1])]);
    a.have.insert(0);
    let asked = Asked::with(Timestamp::ZERO, [(1, vec![addr(1)])]);
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    for _ in 0..20 {
        let next = pick(&a, &asked, Timestamp::ZERO, &mut rng);
        assert_eq!(next, Some((1, addr(2))));
    }
}

#[test]
fn endgame_duplicates_to_another_holder() {
    let a = active(1, &[(1, &[0]), (2, &[0])]);
    let asked = Asked::with(Timestamp::ZERO, [(0, vec![addr(1)])]);
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    let next = pick(&a, &asked, Timestamp::ZERO, &mut rng);
    assert_eq!(next, Some((0, addr(2))));
    let asked = Asked::with(Timestamp::ZERO, [(0, vec![addr(1), addr(2)])]);
    assert_eq!(pick(&a, &asked, Timestamp::ZERO, &mut rng), None);
}

#[test]
fn only_bad_holders_means_reject() {
    let mut a = active(2, &[(1, &[0, 1])]);
    a.map.mark_bad(addr(1));
    a.mismatched.insert(0);
    assert_eq!(a.verdict(Timestamp::ZERO), Verdict::Reject);
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    assert_eq!(pick(&a, &Asked::default(), Timestamp::ZERO, &mut rng), None);
}

/// A holder that steered us away from a chunk (it sent it more than others) is not asked
/// for it again because a refreshed map lists it there while other chunks can be asked:
/// it would take the ask for the hint that we found it nowhere else and send a copy. Once
/// nothing else is left, it is asked (and serves it).
#[test]
fn a_refreshed_map_does_not_undo_a_steering() {
    let mut a = active(3, &[(1, &[0, 1, 2]), (2, &[1, 2])]);
    a.steered_away(0, addr(1));
    a.steered_away(2, addr(1));
    let full = LocatedHolder {
        addr: addr(1),
        have: ChunkSet::full(3),
    };
    a.merge_holders(vec![full], |_| true);
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    let mut pick = |a: &Active, asked: &Asked| pick(a, asked, Timestamp::ZERO, &mut rng);
    let picks: BTreeSet<_> = (0..40)
        .filter_map(|_| pick(&a, &Asked::default()))
        .collect();
    let expected = BTreeSet::from([(1, addr(1)), (1, addr(2)), (2, addr(2))]);
    assert_eq!(
        picks, expected,
        "chunk 0 is left for later, 2 asked elsewhere"
    );
    let asked = Asked::with(Timestamp::ZERO, [(1, vec![addr(1)]), (2, vec![addr(2)])]);
    let last = pick(&a, &asked);
    assert_eq!(last, Some((0, addr(1))), "nothing else left: asked again");
}

#[test]
fn connected_holders_outlive_a_sample_that_left_them_out() {
    let mut a = active(2, &[(1, &[0]), (2, &[1])]);
    let sample = vec![LocatedHolder {
        addr: addr(3),
        have: ChunkSet::from_indices(2, [0, 1]),
    }];
    a.merge_holders(sample, |h| h == addr(1));
    let known: Vec<SocketAddr> = a.map.iter().map(|(k, _)| k).copied().collect();
    assert_eq!(known, vec![addr(1), addr(3)]);
}

#[test]
fn kept_rarity_matches_a_count_of_good_holders() {
    let mut a = active(3, &[(1, &[0, 1]), (2, &[1, 2]), (3, &[1])]);
    let counted = |a: &Active| {
        (0..3)
            .map(|c| a.map.good_holders(c).count())
            .collect::<Vec<_>>()
    };
    let kept = |a: &Active| (0..3).map(|c| a.map.good_count(c)).collect::<Vec<_>>();
    assert_eq!(kept(&a), vec![1, 3, 1]);
    a.map.forget_chunk(addr(3), 1);
    a.map.forget_chunk(addr(3), 1);
    assert_eq!(kept(&a), counted(&a));
    a.map.mark_bad(addr(2));
    assert_eq!(kept(&a), vec![1, 1, 0]);
    a.map.forget_chunk(addr(2), 2);
    a.merge_holders(vec![], |h| h != addr(1));
    assert_eq!((kept(&a), counted(&a)), (vec![0, 0, 0], vec![0, 0, 0]));
}

/// The picker as first written: every holder visited, rarity counted per chunk. The
/// kept counts and early exits of `next_request` must not change a single choice or
/// random draw (the simulator's reports depend on both).
fn reference_pick(
    a: &Active,
    in_flight: &Asked,
    now: Timestamp,
    only: Option<&[SocketAddr]>,
    has_slot: &dyn Fn(SocketAddr) -> bool,
    rng: &mut ChaCha8Rng,
) -> Option<(u32, SocketAddr)> {
    let missing: Vec<u32> = a
        .want
        .iter()
        .filter(|c| !a.have.contains(*c) && !a.storing.contains(c))
        .collect();
    let good: Vec<(SocketAddr, &ChunkSet)> = a
        .map
        .iter()
        .filter(|(addr, _)| !a.map.is_bad(addr))
        .map(|(addr, have)| (*addr, have))
        .collect();
    let rarity = |c: u32| good.iter().filter(|(_, h)| h.contains(c)).count();
    let hopeless = !a.mismatched.is_empty()
        && missing
            .iter()
            .any(|c| rarity(*c) == 0 && a.map.iter().map(|(_, v)| v).any(|h| h.contains(*c)));
    if hopeless {
        return None;
    }
    let ready: Vec<(SocketAddr, &ChunkSet)> = good
        .iter()
        .filter(|(addr, _)| {
            !a.cooling(*addr, now) && only.is_none_or(|o| o.contains(addr)) && has_slot(*addr)
        })
        .copied()
        .collect();
    let asked = |c: u32| in_flight.holders(c).to_vec();
    let ready_for = |c: u32| -> Vec<SocketAddr> {
        let asked = asked(c);
        ready
            .iter()
            .filter(|(addr, have)| have.contains(c) && !asked.contains(addr))
            .map(|(addr, _)| *addr)
            .collect()
    };
    let fresh = missing
        .iter()
        .copied()
        .filter(|c| !in_flight.contains(*c) && ready.iter().any(|(_, h)| h.contains(*c)));
    let chunk = match picker::rarest(fresh.map(|c| (c, rarity(c))), rng) {
        Some(chunk) => chunk,
        None if a.in_endgame(in_flight) => {
            let stragglers = missing
                .iter()
                .copied()
                .filter(|c| asked(*c).len() < FetchPolicy::default().copies_in_flight)
                .filter(|c| !ready_for(*c).is_empty());
            picker::rarest(stragglers.map(|c| (c, rarity(c))), rng)?
        }
        None => return None,
    };
    let holder = picker::random_holder(&ready_for(chunk), rng)?;
    Some((chunk, holder))
}

proptest::proptest! {
    #[test]
    fn next_request_picks_as_the_reference_does(
        chunks in 1u32..20,
        sets in proptest::collection::vec(proptest::collection::vec(proptest::bool::weighted(0.4), 20), 0..7),
        state in proptest::collection::vec(0u8..8, 20),
        per_holder in proptest::collection::vec(0u8..16, 7),
        mismatch in proptest::bool::weighted(0.1),
        seed in proptest::prelude::any::<u64>(),
    ) {
        let holders: Vec<(u8, Vec<u32>)> = sets
            .iter()
            .enumerate()
            .map(|(i, bits)| (i as u8 + 1, (0..chunks).filter(|c| bits[*c as usize]).collect()))
            .collect();
        let held: Vec<(u8, &[u32])> = holders.iter().map(|(n, c)| (*n, c.as_slice())).collect();
        let mut a = active(chunks, &held);
        let now = Timestamp(1_000);
        let mut flight = Vec::new();
        for c in 0..chunks {
            match state[c as usize] {
                0 => { a.have.insert(c); }
                1 => { a.storing.insert(c); }
                2 => { a.want.remove(c); }
                3 => flight.push((c, vec![addr(1 + c as u8 % 7)])),
                4 => flight.push((c, vec![addr(1), addr(2)])),
                _ => {}
            }
        }
        // Per holder: bad, cooling (past or future), slot, listed in `only`.
        for (i, bits) in per_holder.iter().enumerate() {
            let h = addr(i as u8 + 1);
            if bits & 1 != 0 && i % 3 == 0 { a.map.mark_bad(h); }
            if bits & 2 != 0 { a.cooldown.set(h, Timestamp(if i % 2 == 0 { 500 } else { 1_500 })); }
        }
        if mismatch { a.mismatched.insert(0); }
        // Asked just now: none given up, so the rescue (which the reference leaves out)
        // has nothing to take over.
        let in_flight = Asked::with(now, flight);
        let slot = |h: SocketAddr| per_holder.iter().enumerate().any(|(i, b)| addr(i as u8 + 1) == h && b & 4 == 0);
        let listed: Vec<SocketAddr> = (0..7u8).filter(|i| per_holder[*i as usize] & 8 == 0).map(|i| addr(i + 1)).collect();
        for only in [None, Some(listed.as_slice())] {
            let (mut r1, mut r2) = (ChaCha8Rng::seed_from_u64(seed), ChaCha8Rng::seed_from_u64(seed));
            let mut it = only.map(|o| o.iter().copied());
            let got = a.next_request(
                &in_flight,
                now,
                it.as_mut().map(|i| i as &mut dyn Iterator<Item = SocketAddr>),
                &mut |h| slot(h),
                &|_| false,
                &mut r1,
            );
            let want = reference_pick(&a, &in_flight, now, only, &slot, &mut r2);
            proptest::prop_assert_eq!(got, want);
            proptest::prop_assert_eq!(rand::RngCore::next_u64(&mut r1), rand::RngCore::next_u64(&mut r2), "random draws differ");
        }
    }
}

#[test]
fn many_holders_mean_a_shallow_pipeline() {
    let mut a = held_by(FetchPolicy::default().few_holders as u8);
    a.policy.shared_depth_chunk_bytes = 64; // the depths in this file's own chunks
    assert_eq!(
        a.pipeline_depth(),
        FetchPolicy::default().requests_per_holder
    );
    let one_more = LocatedHolder {
        addr: addr(200),
        have: ChunkSet::full(1),
    };
    assert!(a.learn_holder(one_more));
    assert_eq!(
        a.pipeline_depth(),
        FetchPolicy::default().shared_requests_per_holder
    );
    assert_eq!(a.map.good_count(0), FetchPolicy::default().few_holders + 1);
}

/// In a swarm, a file in smaller chunks keeps as many bytes in flight as one in 1 MiB
/// chunks (more requests), never more requests than with few holders.
#[test]
fn shared_depths_count_bytes() {
    let p = FetchPolicy::default();
    let mut a = held_by(p.few_holders as u8 + 1);
    let depths = |a: &Active| (a.pipeline_depth(), a.request_budget());
    Arc::make_mut(&mut a.manifest).chunk_size = 1 << 20;
    assert_eq!(
        depths(&a),
        (p.shared_requests_per_holder, p.shared_requests_per_download)
    );
    Arc::make_mut(&mut a.manifest).chunk_size = 4 << 20;
    assert_eq!(
        depths(&a),
        (p.shared_requests_per_holder, p.shared_requests_per_download)
    );
    Arc::make_mut(&mut a.manifest).chunk_size = 256 << 10;
    assert_eq!(
        depths(&a),
        (
            4 * p.shared_requests_per_holder,
            4 * p.shared_requests_per_download
        )
    );
    Arc::make_mut(&mut a.manifest).chunk_size = 64;
    assert_eq!(depths(&a), (p.requests_per_holder, p.requests_per_download));
}

/// On a path longer than the shared depths cover, they keep bytes in flight in proportion
/// to the shortest wait seen for an answer (up to four times as many); a shorter one
/// seen later brings them back.
#[test]
fn shared_depths_grow_with_the_round_trip() {
    let p = FetchPolicy::default();
    let mut a = held_by(p.few_holders as u8 + 1);
    Arc::make_mut(&mut a.manifest).chunk_size = 1 << 20;
    let depths = |a: &Active| (a.pipeline_depth(), a.request_budget());
    let shared = (p.shared_requests_per_holder, p.shared_requests_per_download);
    let times = |n: usize| (n * shared.0, n * shared.1);
    assert_eq!(depths(&a), shared, "nothing seen yet");
    let covered_ms = p.shared_depth_round_trip_ms;
    a.answer_began(Timestamp(1_000), Timestamp(1_000 + 10 * covered_ms));
    assert_eq!(depths(&a), times(4), "at most four times");
    a.answer_began(Timestamp(2_000), Timestamp(2_000 + 2 * covered_ms));
    assert_eq!(depths(&a), times(2));
    a.answer_began(Timestamp(3_000), Timestamp(3_000 + 3 * covered_ms));
    assert_eq!(depths(&a), times(2), "the shortest wait counts");
    a.answer_began(Timestamp(4_000), Timestamp(4_000 + covered_ms / 2));
    assert_eq!(depths(&a), shared, "never fewer than covered");
}

#[test]
fn many_holders_mean_few_requests_in_flight() {
    let mut a = held_by(FetchPolicy::default().few_holders as u8);
    a.policy.shared_depth_chunk_bytes = 64; // the depths in this file's own chunks
    assert_eq!(
        a.request_budget(),
        FetchPolicy::default().requests_per_download
    );
    let holders =
        (0..FetchPolicy::default().shared_requests_per_download as u8).map(|n| addr(100 + n));
    let mut flight: Vec<SocketAddr> = holders.collect();
    assert!(a.may_request(
        &Asked::with(Timestamp::ZERO, [(0, flight.clone())]),
        Timestamp::ZERO
    ));
    let one_more = LocatedHolder {
        addr: addr(200),
        have: ChunkSet::full(1),
    };
    assert!(a.learn_holder(one_more));
    assert_eq!(
        a.request_budget(),
        FetchPolicy::default().shared_requests_per_download
    );
    assert!(
        !a.may_request(
            &Asked::with(Timestamp::ZERO, [(0, flight.clone())]),
            Timestamp::ZERO
        ),
        "the budget is spent"
    );
    flight.pop();
    let asked = Asked::with(Timestamp::ZERO, [(0, flight)]);
    assert!(a.may_request(&asked, Timestamp::ZERO));
    a.committing = true;
    assert!(
        !a.may_request(&asked, Timestamp::ZERO),
        "nothing is asked while committing"
    );
}

#[test]
fn introductions_fill_the_chunk_map_only_to_its_bound() {
    let mut a = active(1, &[]);
    let holder = |i: usize| LocatedHolder {
        addr: SocketAddr::from(([10, 1, (i >> 8) as u8, i as u8], 7)),
        have: ChunkSet::full(1),
    };
    for i in 0..MAX_KNOWN_HOLDERS {
        assert!(a.learn_holder(holder(i)));
    }
    assert!(!a.learn_holder(holder(MAX_KNOWN_HOLDERS)));
    assert!(a.learn_holder(holder(0)), "a known holder may still change");
    assert_eq!(a.map.good_count(0), MAX_KNOWN_HOLDERS);
}

#[test]
fn a_told_chunk_counts_once_and_only_for_a_known_good_holder() {
    let mut a = active(3, &[(1, &[0]), (2, &[0])]);
    assert!(a.map.learn_chunk(addr(1), 2));
    assert!(!a.map.learn_chunk(addr(1), 2), "no news the second time");
    assert!(!a.map.learn_chunk(addr(9), 2), "not in the map");
    assert!(!a.map.learn_chunk(addr(1), 3), "past the end");
    assert_eq!(a.map.good_count(2), 1);
    assert!(a.map.is_good_holder(addr(1), 2));
    a.map.mark_bad(addr(2));
    a.map.learn_chunk(addr(2), 1);
    assert_eq!(a.map.good_count(1), 0);
}

#[test]
fn cooling_holders_mean_wait() {
    let mut a = active(1, &[(1, &[0])]);
    a.cooldown.set(addr(1), Timestamp(500));
    assert_eq!(a.verdict(Timestamp(10)), Verdict::Wait);
    assert_eq!(a.verdict(Timestamp(500)), Verdict::Proceed);
}

#[test]
fn a_download_being_committed_waits_for_nothing() {
    let mut a = active(1, &[(1, &[0])]);
    let armed = |a: &Active| -> Vec<DownloadTimer> {
        a.timers(30_000)
            .into_iter()
            .flatten()
            .map(|(t, _)| t)
            .collect()
    };
    assert!(armed(&a).contains(&DownloadTimer::Stall));
    assert!(armed(&a).contains(&DownloadTimer::StallNote));
    a.start_commit();
    // A slow fsync must not count as a stall, nor wake the peer over and over once past.
    assert_eq!(armed(&a), [DownloadTimer::Refresh]);
}

/// Every chunk asked of someone, half of them of a holder far slower than the other: a
/// ready fast holder is asked for one of the slow holder's chunks too. Holders of like
/// speed are not doubled up.
#[test]
fn a_chunk_owed_by_a_slow_holder_is_asked_of_a_fast_one_too() {
    use crate::machine::ConnId;
    use crate::peer::ledger::Ledger;
    let (fast, slow) = (addr(1), addr(2));
    // Issued as the peer issues them: in the ledger, and told to the download.
    let asked_of_each = |a: &mut Active| {
        let mut ledger = Ledger::default();
        for c in 0..10 {
            let (holder, conn) = if c < 5 { (fast, 1) } else { (slow, 2) };
            ledger.issue(ConnId::Outbound(conn), holder, a.root(), c, Timestamp::ZERO);
            a.issued(holder, Timestamp::ZERO);
        }
        ledger
    };
    let all: Vec<u32> = (0..10).collect();
    let mut a = active(10, &[(1, &all), (2, &all)]);
    let ledger = asked_of_each(&mut a);
    let asked = ledger.asked(&a.root());
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    let now = Timestamp(1_000);
    assert_eq!(
        pick(&a, asked, now, &mut rng),
        None,
        "no speed known: nothing doubled up"
    );
    a.delivered(fast, 64, Timestamp::ZERO, Timestamp(10));
    a.delivered(slow, 64, Timestamp::ZERO, Timestamp(1_000));
    let (chunk, holder) = pick(&a, asked, now, &mut rng).unwrap();
    assert_eq!(holder, fast);
    assert!(
        (5..10).contains(&chunk),
        "chunk {chunk} is not the slow holder's"
    );
    // Alike, and both still sending: 64 B in 10 ms and in 15 ms, the last 15 ms ago.
    let mut b = active(10, &[(1, &all), (2, &all)]);
    b.delivered(fast, 64, Timestamp::ZERO, Timestamp(10));
    b.delivered(slow, 64, Timestamp::ZERO, Timestamp(15));
    let ledger = asked_of_each(&mut b);
    let asked = ledger.asked(&b.root());
    assert_eq!(
        b.next_request(
            asked,
            Timestamp(30),
            None,
            &mut |_| true,
            &|_| false,
            &mut rng
        ),
        None
    );
}

/// A holder as fast as any, that stopped sending: once it has been silent for four of its
/// own chunk times while owing a chunk, that chunk is asked of a holder still sending.
#[test]
fn a_chunk_owed_by_a_holder_that_stalled_is_asked_elsewhere() {
    use crate::machine::ConnId;
    use crate::peer::ledger::Ledger;
    let (sending, stalled) = (addr(1), addr(2));
    let all: Vec<u32> = (0..10).collect();
    let mut a = active(10, &[(1, &all), (2, &all)]);
    let mut ledger = Ledger::default();
    for c in 0..10 {
        let (holder, conn) = if c < 5 { (sending, 1) } else { (stalled, 2) };
        ledger.issue(ConnId::Outbound(conn), holder, a.root(), c, Timestamp(0));
    }
    // Both delivered a chunk of 64 B in 10 ms; the stalled one at 10 ms, never since.
    a.delivered(sending, 64, Timestamp(0), Timestamp(10));
    a.delivered(stalled, 64, Timestamp(0), Timestamp(10));
    let asked = ledger.asked(&a.root());
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    let pick = |now: u64, rng: &mut ChaCha8Rng| pick(&a, asked, Timestamp(now), rng);
    assert_eq!(
        pick(45, &mut rng),
        None,
        "silent 35 ms: not yet four chunk times"
    );
    let (chunk, holder) = pick(60, &mut rng).unwrap();
    assert!(
        (5..10).contains(&chunk) && holder == sending,
        "{chunk} from {holder}"
    );
}

#[test]
fn a_holder_that_keeps_failing_waits_ever_longer_until_it_delivers() {
    let mut a = active(2, &[(1, &[0, 1])]);
    let h = addr(1);
    let mut now = Timestamp::ZERO;
    let mut waits = Vec::new();
    for _ in 0..6 {
        a.failed(h, now, 2_000);
        let wait_ms = (0..=u64::MAX / 2)
            .step_by(500)
            .find(|ms| !a.cooling(h, now.plus_ms(*ms)))
            .unwrap();
        waits.push(wait_ms);
        now = now.plus_ms(wait_ms);
    }
    assert_eq!(waits, [2_000, 4_000, 8_000, 16_000, 16_000, 16_000]);
    a.delivered(h, 64, now, now.plus_ms(10));
    a.failed(h, now, 2_000);
    assert!(!a.cooling(h, now.plus_ms(2_000)), "a delivery forgives");
}
