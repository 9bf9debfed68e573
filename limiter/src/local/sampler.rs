//! [`Sampler`]: the randomness behind `filter_enabled` and `filter_enforced`, injected so
//! tests decide the roll ([`FixedSampler`]) while services use [`RandomSampler`].

use std::cell::Cell;
use std::hash::{BuildHasher, RandomState};

use config::Percent;

/// A source of uniform draws in `0..1_000_000` (parts per million). Consulted only for a
/// fraction strictly between 0% and 100%: a draw below the fraction passes.
pub trait Sampler: Send + Sync + 'static {
    /// One draw, uniform in `0..1_000_000`.
    fn draw(&self) -> u32;
}

/// A fast per-thread generator (SplitMix64) seeded from std's random hasher keys. Not
/// cryptographic: it only spreads requests over a percentage.
#[derive(Clone, Copy, Debug, Default)]
pub struct RandomSampler;

thread_local! {
    static STATE: Cell<u64> = Cell::new(RandomState::new().hash_one(std::thread::current().id()));
}

impl Sampler for RandomSampler {
    fn draw(&self) -> u32 {
        let x = STATE.with(|state| {
            let x = state.get().wrapping_add(0x9E37_79B9_7F4A_7C15);
            state.set(x);
            x
        });
        let mut z = x;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        // The high 32 bits scaled to 0..1_000_000 (multiply-shift, no modulo bias to speak of).
        (((z >> 32) * 1_000_000) >> 32) as u32
    }
}

/// Always the same draw: 0 passes every fraction above 0%, 999 999 only 100%.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FixedSampler(pub u32);

impl Sampler for FixedSampler {
    fn draw(&self) -> u32 {
        self.0
    }
}

/// Whether a request falls in `percent`; draws only for a fraction strictly between 0% and
/// 100%.
pub(crate) fn passes(percent: Percent, sampler: &dyn Sampler) -> bool {
    match percent.per_million() {
        0 => false,
        1_000_000.. => true,
        fraction => sampler.draw() < fraction,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_draws_stay_in_range_and_spread() {
        let below_half = (0..100_000)
            .map(|_| RandomSampler.draw())
            .inspect(|&d| assert!(d < 1_000_000))
            .filter(|&d| d < 500_000)
            .count();
        assert!((45_000..55_000).contains(&below_half), "{below_half}");
    }

    #[test]
    fn whole_and_empty_fractions_never_draw() {
        struct Panics;
        impl Sampler for Panics {
            fn draw(&self) -> u32 {
                panic!("drew for a fraction that needs no draw")
            }
        }
        assert!(passes(Percent::ALL, &Panics));
        assert!(!passes(Percent::NONE, &Panics));
        let half = Percent::from_per_million(500_000).unwrap();
        assert!(passes(half, &FixedSampler(499_999)));
        assert!(!passes(half, &FixedSampler(500_000)));
    }
}
