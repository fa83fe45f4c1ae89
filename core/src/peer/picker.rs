//! Pure download decisions: which chunk next (rarest first, ties at random) and which holder
//! (uniformly at random). They take the RNG as a parameter so properties can test them alone.

use rand::Rng;

/// Picks, among `(chunk, holder_count)` candidates, one with the fewest holders; ties are
/// broken uniformly at random (reservoir sampling, one pass, no allocation).
pub fn rarest<R: Rng>(
    candidates: impl IntoIterator<Item = (u32, usize)>,
    rng: &mut R,
) -> Option<u32> {
    let mut best: Option<(u32, usize)> = None;
    let mut ties = 0u32;
    for (chunk, count) in candidates {
        match best {
            Some((_, best_count)) if count > best_count => {}
            Some((_, best_count)) if count == best_count => {
                ties += 1;
                if rng.gen_range(0..ties) == 0 {
                    best = Some((chunk, count));
                }
            }
            _ => {
                best = Some((chunk, count));
                ties = 1;
            }
        }
    }
    best.map(|(chunk, _)| chunk)
}

/// Picks one holder uniformly at random.
pub fn random_holder<T: Copy, R: Rng>(holders: &[T], rng: &mut R) -> Option<T> {
    if holders.is_empty() {
        return None;
    }
    holders.get(rng.gen_range(0..holders.len())).copied()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    #[test]
    fn rarest_prefers_fewest_holders() {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let pick = rarest([(0, 3), (1, 1), (2, 2)], &mut rng);
        assert_eq!(pick, Some(1));
        assert_eq!(rarest(std::iter::empty(), &mut rng), None);
    }

    #[test]
    fn ties_are_all_reachable() {
        let mut rng = ChaCha8Rng::seed_from_u64(2);
        let mut seen = [0u32; 3];
        for _ in 0..300 {
            let pick = rarest([(0, 1), (1, 1), (2, 1), (3, 2)], &mut rng).unwrap();
            seen[pick as usize] += 1;
        }
        assert!(seen.iter().all(|&n| n > 60), "{seen:?}");
    }
}
