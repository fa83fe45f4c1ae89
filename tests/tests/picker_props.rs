//! Properties of the pure download decisions: rarest-first picks a chunk with the fewest
//! holders and spreads ties; the holder choice is uniform (chi-square).

// Test code: a panic here is how a failure is reported.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;

use drizzle_core::peer::picker::{random_holder, rarest};
use proptest::prelude::*;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

proptest! {
    #![proptest_config(common::persisted(256))]

    #[test]
    fn each_pick_has_minimal_holder_count(
        counts in prop::collection::vec(0usize..6, 1..64),
        eligible_mask in prop::collection::vec(any::<bool>(), 64),
        seed in any::<u64>(),
    ) {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let candidates: Vec<(u32, usize)> = counts
            .iter()
            .enumerate()
            .filter(|(i, _)| eligible_mask[*i])
            .map(|(i, c)| (i as u32, *c))
            .collect();
        let pick = rarest(candidates.iter().copied(), &mut rng);
        match candidates.iter().map(|(_, c)| *c).min() {
            None => prop_assert_eq!(pick, None),
            Some(min) => {
                let chunk = pick.unwrap();
                let count = candidates.iter().find(|(c, _)| *c == chunk).map(|(_, n)| *n);
                prop_assert_eq!(count, Some(min), "seed {}", seed);
            }
        }
    }

    #[test]
    fn ties_are_spread(ties in 2usize..8, others in 0usize..8, seed in any::<u64>()) {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let candidates: Vec<(u32, usize)> = (0..ties)
            .map(|i| (i as u32, 1))
            .chain((0..others).map(|i| ((ties + i) as u32, 2)))
            .collect();
        let rounds = 200 * ties;
        let mut seen = vec![0usize; ties];
        for _ in 0..rounds {
            let pick = rarest(candidates.iter().copied(), &mut rng).unwrap() as usize;
            prop_assert!(pick < ties, "picked a commoner chunk; seed {}", seed);
            seen[pick] += 1;
        }
        // Each tie expects 200 picks; 100 is more than 7 standard deviations below.
        prop_assert!(seen.iter().all(|n| *n >= 100), "ties {:?}; seed {}", seen, seed);
    }

    #[test]
    fn holder_choice_is_uniform(holders in 2usize..10, seed in any::<u64>()) {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let list: Vec<usize> = (0..holders).collect();
        let per = 500usize;
        let mut seen = vec![0usize; holders];
        for _ in 0..per * holders {
            seen[random_holder(&list, &mut rng).unwrap()] += 1;
        }
        let chi2: f64 = seen
            .iter()
            .map(|o| {
                let d = *o as f64 - per as f64;
                d * d / per as f64
            })
            .sum();
        let df = (holders - 1) as f64;
        // Wilson–Hilferty: the chi-square quantile at p ≈ 1e-6 (z = 4.75), so a fair chooser
        // fails this in about one run in a million.
        let k = 2.0 / (9.0 * df);
        let critical = df * (1.0 - k + 4.75 * k.sqrt()).powi(3);
        prop_assert!(chi2 < critical, "chi2 {} >= {} for {:?}; seed {}", chi2, critical, seen, seed);
    }
}
