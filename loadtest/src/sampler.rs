//! [`KeySampler`]: which key the next request uses — one hot key, uniform, or Zipf(s) — drawn
//! from a seeded [`SplitMix64`], so that a run's key sequence repeats and costs a few ns.

use std::sync::Arc;

use crate::spec::Distribution;

/// SplitMix64: a tiny, fast generator with good statistical quality for choosing keys (not
/// for anything secret). Each worker owns one, seeded from the run's seed and its index.
#[derive(Clone, Debug)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    /// A generator starting from `seed`.
    pub fn new(seed: u64) -> SplitMix64 {
        SplitMix64(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A uniform number in `[0, 1)`.
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// A uniform number in `0..n` (`n > 0`), by Lemire's multiply-shift.
    pub fn below(&mut self, n: u32) -> u32 {
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u32
    }
}

/// Draws key numbers in `0..keys`.
#[derive(Clone, Debug)]
pub enum KeySampler {
    /// Always key 0.
    Hot,
    /// Uniform over `0..n`.
    Uniform(u32),
    /// Zipf: the cumulative distribution, `cdf[k] = P(key ≤ k)`, searched by bisection.
    Zipf(Arc<[f64]>),
}

impl KeySampler {
    /// The sampler for `keys` keys drawn by `distribution` (`s` is Zipf's exponent).
    pub fn new(distribution: Distribution, keys: u32, s: f64) -> KeySampler {
        match (keys, distribution) {
            (0 | 1, _) => KeySampler::Hot,
            (n, Distribution::Uniform) => KeySampler::Uniform(n),
            (n, Distribution::Zipf) => {
                let mut cdf: Vec<f64> = Vec::with_capacity(n as usize);
                let mut total = 0.0;
                for k in 0..n {
                    total += 1.0 / f64::from(k + 1).powf(s);
                    cdf.push(total);
                }
                cdf.iter_mut().for_each(|c| *c /= total);
                KeySampler::Zipf(cdf.into())
            }
        }
    }

    /// The next key number.
    pub fn sample(&self, rng: &mut SplitMix64) -> u32 {
        match self {
            KeySampler::Hot => 0,
            KeySampler::Uniform(n) => rng.below(*n),
            KeySampler::Zipf(cdf) => {
                let u = rng.next_f64();
                let k = cdf.partition_point(|&c| c <= u);
                // Rounding may leave the last entry a hair under 1.
                k.min(cdf.len() - 1) as u32
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn histogram(sampler: &KeySampler, keys: usize, draws: usize) -> Vec<u64> {
        let mut rng = SplitMix64::new(7);
        let mut counts = vec![0u64; keys];
        for _ in 0..draws {
            counts[sampler.sample(&mut rng) as usize] += 1;
        }
        counts
    }

    #[test]
    fn one_key_is_always_key_zero() {
        let sampler = KeySampler::new(Distribution::Zipf, 1, 1.1);
        assert_eq!(histogram(&sampler, 1, 1000), [1000]);
    }

    #[test]
    fn uniform_draws_every_key_about_equally_often() {
        let sampler = KeySampler::new(Distribution::Uniform, 10, 1.1);
        let counts = histogram(&sampler, 10, 100_000);
        // Seeded, so deterministic; the bound is five standard deviations wide.
        assert!(
            counts.iter().all(|&c| (9_500..=10_500).contains(&c)),
            "{counts:?}"
        );
    }

    #[test]
    fn zipf_draws_key_k_in_proportion_to_one_over_k_plus_one_to_the_s() {
        let sampler = KeySampler::new(Distribution::Zipf, 100, 1.0);
        let counts = histogram(&sampler, 100, 200_000);
        assert!(counts.windows(2).take(5).all(|w| w[0] > w[1]), "{counts:?}");
        let ratio = counts[0] as f64 / counts[1] as f64;
        assert!((1.9..2.1).contains(&ratio), "key 0 / key 1 = {ratio}");
        let ratio = counts[0] as f64 / counts[9] as f64;
        assert!((9.0..11.0).contains(&ratio), "key 0 / key 9 = {ratio}");
    }

    #[test]
    fn the_same_seed_gives_the_same_keys() {
        let sampler = KeySampler::new(Distribution::Zipf, 1000, 1.2);
        let draw = |seed| {
            let mut rng = SplitMix64::new(seed);
            (0..50)
                .map(|_| sampler.sample(&mut rng))
                .collect::<Vec<_>>()
        };
        assert_eq!(draw(3), draw(3));
        assert_ne!(draw(3), draw(4));
    }
}
