//! The simulator's only source of randomness: a seeded xorshift64* generator.
//!
//! A dozen lines instead of a dependency: the network needs coin flips (loss, duplication,
//! reordering) and the engines need initial sequence numbers, all reproducible from one seed.
//! The seed goes through the SplitMix64 finaliser first, so that neighbouring seeds (0, 1, 2,
//! ...) start from unrelated states and the state is never zero (xorshift's one fixed point).
//! Statistical quality is far beyond what a coin flip per packet needs.

/// A seeded pseudo-random generator (xorshift64*).
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator whose whole sequence is determined by `seed`.
    pub fn new(seed: u64) -> Self {
        // SplitMix64 finaliser: a bijection that spreads every bit of the seed.
        let mut z = seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^= z >> 31;
        Self(if z == 0 { 0x2545_f491_4f6c_dd1d } else { z })
    }

    /// The next 64 random bits (xorshift64*: shifts 12, 25, 27, then an odd multiplier).
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A uniform value in `0..n` (0 when `n` is 0). The modulo bias is below 2^-40 for the
    /// small `n` the simulator uses.
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 { 0 } else { self.next_u64() % n }
    }

    /// True with probability `p` (never for `p <= 0`, always for `p >= 1`).
    pub fn chance(&mut self, p: f64) -> bool {
        if p <= 0.0 {
            return false;
        }
        // 53 random bits: a uniform float in [0, 1).
        let unit = (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
        unit < p
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_sequence_and_seeds_differ() {
        let a: Vec<u64> = (0..4)
            .map({
                let mut r = Rng::new(7);
                move |_| r.next_u64()
            })
            .collect();
        let b: Vec<u64> = (0..4)
            .map({
                let mut r = Rng::new(7);
                move |_| r.next_u64()
            })
            .collect();
        let c = Rng::new(8).next_u64();
        assert_eq!(a, b);
        assert_ne!(a[0], c);
        assert!(Rng::new(0).next_u64() != 0);
    }

    #[test]
    fn chance_is_roughly_p() {
        let mut r = Rng::new(1);
        let hits = (0..100_000).filter(|_| r.chance(0.25)).count();
        assert!((23_000..27_000).contains(&hits), "{hits}");
        assert!(!r.chance(0.0));
        assert!(r.chance(1.0));
        assert!((0..1000).all(|_| r.below(3) < 3));
    }
}
