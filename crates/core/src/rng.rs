//! The one seeded pseudo-random generator of the toolkit: SplitMix64 (Steele, Lea & Flood 2014).
//!
//! Everything seeded uses it: a sweep's passage choice, probes and bootstrap resamples (occ-eval), the
//! noise of page degradations (occ-render), synthetic weights and test inputs (occ-model, through
//! [`splitmix64_at`]) and the trainer's pages and initial weights (occ-train). `rand`'s `StdRng` may
//! change its algorithm between releases; a sweep's sample list, a degraded page or a synthetic
//! checkpoint must not, so the toolkit pins this 10-line generator, specified here to the bit.

/// SplitMix64's increment (the golden ratio in 64-bit fixed point).
const GAMMA: u64 = 0x9E37_79B9_7F4A_7C15;

/// SplitMix64's output function: a bijective mix of the state.
#[inline]
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The `i`-th output (from 0) of the SplitMix64 stream seeded with `key`, without stepping through
/// the ones before: `SplitMix64::new(key)`'s `i + 1`-th call of [`SplitMix64::next_u64`].
#[inline]
pub fn splitmix64_at(key: u64, i: u64) -> u64 {
    mix(key.wrapping_add(i.wrapping_add(1).wrapping_mul(GAMMA)))
}

/// 64-bit FNV-1a of `bytes` (how names become seeds: [`SplitMix64::stream`], synthetic weights).
pub fn fnv1a64(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// SplitMix64: 64-bit state, full period, good enough for sampling, bootstrap and noise.
#[derive(Debug, Clone)]
pub struct SplitMix64 {
    state: u64,
}

impl SplitMix64 {
    /// A generator seeded with `seed`.
    pub fn new(seed: u64) -> SplitMix64 {
        SplitMix64 { state: seed }
    }

    /// A generator for a named stream derived from `seed` (independent streams per purpose): the seed
    /// xor the [`fnv1a64`] hash of the name, one output skipped.
    pub fn stream(seed: u64, name: &str) -> SplitMix64 {
        let mut g = SplitMix64::new(seed ^ fnv1a64(name.as_bytes()));
        g.next_u64();
        g
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(GAMMA);
        mix(self.state)
    }

    /// Uniform integer in `0..n` (`n > 0`; returns 0 for `n == 0`). Lemire's multiply-shift; the
    /// bias is below 2⁻³² for the sizes used here.
    pub fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            return 0;
        }
        ((u128::from(self.next_u64()) * n as u128) >> 64) as usize
    }

    /// Fisher–Yates shuffle.
    pub fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            let j = self.below(i + 1);
            items.swap(i, j);
        }
    }

    /// Uniform in (0, 1]: the top 53 bits, plus one, over 2⁵³ (never 0, so its logarithm is finite).
    pub fn unit_nonzero(&mut self) -> f64 {
        ((self.next_u64() >> 11) as f64 + 1.0) / (1u64 << 53) as f64
    }

    /// Standard normal by Box–Muller from two [`SplitMix64::unit_nonzero`] draws (one value per call;
    /// the pair's second half is discarded).
    pub fn normal(&mut self) -> f64 {
        let (u1, u2) = (self.unit_nonzero(), self.unit_nonzero());
        (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splitmix_matches_reference_values() {
        // Reference outputs of SplitMix64 seeded with 0 (Vigna's splitmix64.c).
        let mut g = SplitMix64::new(0);
        assert_eq!(g.next_u64(), 0xe220_a839_7b1d_cdaf);
        assert_eq!(g.next_u64(), 0x6e78_9e6a_a1b9_65f4);
        assert_eq!(splitmix64_at(0, 0), 0xe220_a839_7b1d_cdaf);
        assert_eq!(splitmix64_at(0, 1), 0x6e78_9e6a_a1b9_65f4);
    }

    #[test]
    fn indexed_outputs_are_the_stream() {
        for key in [0, 7, u64::MAX] {
            let mut g = SplitMix64::new(key);
            for i in 0..20 {
                assert_eq!(g.next_u64(), splitmix64_at(key, i));
            }
        }
    }

    #[test]
    fn shuffle_is_a_seeded_permutation() {
        let mut a: Vec<u32> = (0..50).collect();
        let mut b = a.clone();
        SplitMix64::new(7).shuffle(&mut a);
        SplitMix64::new(7).shuffle(&mut b);
        assert_eq!(a, b);
        let mut sorted = a.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, (0..50).collect::<Vec<_>>());
        assert_ne!(a, (0..50).collect::<Vec<_>>());
    }

    #[test]
    fn unit_nonzero_is_in_the_half_open_interval_and_normal_is_finite() {
        let mut g = SplitMix64::new(3);
        for _ in 0..1000 {
            let u = g.unit_nonzero();
            assert!(u > 0.0 && u <= 1.0);
            assert!(g.normal().is_finite());
        }
    }
}
