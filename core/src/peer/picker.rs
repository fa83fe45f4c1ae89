//! Pure download decisions: which chunk next (rarest first, ties at random) and which holder
//! (uniformly at random). They take the RNG as a parameter so properties can test them alone.

use rand::Rng;

/// Picks, among `(chunk, holder_count)` candidates, one with the fewest holders; ties are
/// broken uniformly at random by one draw: the `n`-th of them in the order given, `n` drawn
/// below their number (no allocation). [`ChunkMap::rarest_among`] picks the same with the
/// same draw when the candidates come in ascending order.
///
/// [`ChunkMap::rarest_among`]: super::chunkmap::ChunkMap::rarest_among
pub fn rarest<R: Rng, I>(candidates: I, rng: &mut R) -> Option<u32>
where
    I: IntoIterator<Item = (u32, usize)>,
    I::IntoIter: Clone,
{
    let candidates = candidates.into_iter();
    let fewest = candidates.clone().map(|(_, count)| count).min()?;
    let tied = candidates.filter(move |(_, count)| *count == fewest);
    let ties = u32::try_from(tied.clone().count()).unwrap_or(u32::MAX);
    let n = rng.gen_range(0..ties);
    tied.map(|(chunk, _)| chunk).nth(n as usize)
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
