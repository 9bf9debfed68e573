use proptest::prelude::*;

use super::*;

const TWENTY: Quota = Quota {
    rate: 20.0,
    burst: 20.0,
    fill_secs: 60,
};

fn shares(rate: f64, demands: &[f64]) -> Vec<f64> {
    let clients = demands.len() as u32;
    let weights: Vec<f64> = demands.iter().map(|&d| weight(d, rate, clients)).collect();
    let total: f64 = weights.iter().sum();
    weights.iter().map(|&w| share(rate, w, total)).collect()
}

fn bucket(grant: Grant) -> TokenGrant {
    match grant {
        Grant::Bucket(bucket) => bucket,
        other => panic!("not a token bucket: {other:?}"),
    }
}

proptest! {
    #[test]
    fn shares_add_up_to_the_quota_whatever_the_demands(
        rate in 0.001f64..1e7,
        demands in prop::collection::vec(0.0f64..1e6, 1..40),
    ) {
        let shares = shares(rate, &demands);
        let sum: f64 = shares.iter().sum();
        prop_assert!((sum - rate).abs() <= rate * 1e-9, "{sum} for {rate}");
        prop_assert!(shares.iter().all(|&s| s > 0.0));
    }

    #[test]
    fn shares_follow_demand_above_the_floor(
        rate in 1.0f64..1e5,
        a in 1.0f64..1e5,
        b in 1.0f64..1e5,
    ) {
        // Both above the floor: the split is the ratio of the demands.
        let floor = FLOOR * rate / 2.0;
        prop_assume!(a > floor && b > floor);
        let s = shares(rate, &[a, b]);
        prop_assert!((s[0] / s[1] - a / b).abs() <= 1e-9 * (a / b));
    }

    #[test]
    fn idle_envoys_together_keep_at_most_the_floor(
        rate in 0.1f64..1e5,
        idle in 1usize..200,
    ) {
        // One Envoy asks for the whole quota or more; the idle ones ask for nothing.
        let mut demands = vec![rate];
        demands.extend(std::iter::repeat_n(0.0, idle));
        let s = shares(rate, &demands);
        prop_assert!(s[0] >= rate * (1.0 - FLOOR), "{} of {rate}", s[0]);
    }

    #[test]
    fn a_newcomer_gets_at_least_an_equal_share(
        rate in 0.1f64..1e5,
        others in prop::collection::vec(0.0f64..1e5, 1..20),
        own in 0.0f64..10.0,
    ) {
        let n = others.len() as u32 + 1;
        let weights: Vec<f64> = others.iter().map(|&d| weight(d, rate, n)).collect();
        let sum: f64 = weights.iter().sum();
        let mine = newcomer_weight(weight(own, rate, n), sum, n - 1);
        let got = share(rate, mine, sum + mine);
        prop_assert!(got >= rate / f64::from(n) * (1.0 - 1e-12), "{got} of {rate} among {n}");
    }

    #[test]
    fn a_grant_never_refills_faster_than_its_share(
        rate in 0.01f64..1e6,
        fraction in 0.0001f64..=1.0,
        fill_secs in 1u64..100_000,
        burst_per_rate in 0.1f64..100.0,
    ) {
        let quota = Quota { rate, burst: rate * burst_per_rate, fill_secs };
        let share = rate * fraction;
        let granted = bucket(grant(&quota, share));
        // Rounded down to whole tokens per fill; one token per fill at the least.
        if share * fill_secs as f64 >= 1.0 {
            let fill = granted.fill_secs as f64;
            prop_assert!(granted.fill_secs <= fill_secs);
            prop_assert!(granted.rate() <= share * (1.0 + 1e-12));
            prop_assert!(granted.rate() > share - 1.0 / fill);
        } else {
            prop_assert_eq!(granted.tokens_per_fill, 1);
        }
        prop_assert!(granted.max_tokens >= 1);
        prop_assert!(f64::from(granted.max_tokens) <= (quota.burst * fraction).max(1.0));
    }

    #[test]
    fn a_settled_grant_is_never_above_the_new_one_nor_far_below_it(
        held_tokens in 1u32..100_000,
        next_tokens in 1u32..100_000,
        held_max in 1u32..1000,
        next_max in 1u32..1000,
    ) {
        let held = Grant::Bucket(TokenGrant { max_tokens: held_max, tokens_per_fill: held_tokens, fill_secs: 60 });
        let next = TokenGrant { max_tokens: next_max, tokens_per_fill: next_tokens, fill_secs: 60 };
        let settled = bucket(settle(Some(&held), Grant::Bucket(next)));
        prop_assert!(settled.rate() <= next.rate());
        prop_assert!(settled.max_tokens <= next.max_tokens);
        prop_assert!(settled.rate() >= next.rate() * (1.0 - BAND));
    }

    #[test]
    fn a_changed_grant_always_looks_changed_to_envoy(
        held_tokens in 1u32..u32::MAX,
        held_fill in 1u64..100_000,
        next_fill in 1u64..100_000,
        max_tokens in 1u32..1000,
    ) {
        let held = TokenGrant { max_tokens, tokens_per_fill: held_tokens, fill_secs: held_fill };
        let next = TokenGrant { max_tokens, tokens_per_fill: held_tokens, fill_secs: next_fill };
        let settled = bucket(settle(Some(&Grant::Bucket(held)), Grant::Bucket(next)));
        // Envoy's comparison: max_tokens, tokens_per_fill, and the interval's nanoseconds
        // (always 0 here): a grant of another rate must differ in one of the first two.
        if settled != held {
            prop_assert!(settled.tokens_per_fill != held.tokens_per_fill || settled.max_tokens != held.max_tokens);
            prop_assert!(settled.rate() <= next.rate() * (1.0 + 1e-12));
            let resolution = 1.0 / settled.fill_secs as f64;
            prop_assert!(settled.rate() >= next.rate() * (1.0 - 1e-12) - resolution);
        }
    }

    #[test]
    fn demand_is_the_requests_over_the_time_they_took(
        counts in prop::collection::vec((0u64..10_000, 100u64..10_000), 1..20),
    ) {
        // Reports at least 100 ms apart; the rate of each closed window is exact.
        let mut meter = DemandMeter::new(Duration::ZERO);
        let (mut now, mut since, mut pending) = (Duration::ZERO, Duration::ZERO, 0u64);
        for (count, gap_ms) in counts {
            now += Duration::from_millis(gap_ms);
            meter.record(now, count);
            pending += count;
            if now - since >= MIN_WINDOW {
                let expected = pending as f64 / (now - since).as_secs_f64();
                prop_assert!((meter.rate() - expected).abs() <= 1e-9 * expected.max(1.0));
                since = now;
                pending = 0;
            }
        }
    }
}

#[test]
fn one_envoy_gets_the_whole_quota_as_a_bucket_of_its_burst() {
    let s = shares(20.0, &[100.0]);
    assert_eq!(s, [20.0]);
    let granted = bucket(grant(&TWENTY, s[0]));
    assert_eq!(
        granted,
        TokenGrant {
            max_tokens: 20,
            tokens_per_fill: 1200,
            fill_secs: 60
        }
    );
    assert_eq!(granted.rate(), 20.0);
}

#[test]
fn two_envoys_asking_alike_get_half_each_and_an_idle_one_almost_nothing() {
    let s = shares(20.0, &[50.0, 50.0]);
    assert_eq!(s, [10.0, 10.0]);
    let s = shares(20.0, &[50.0, 0.0]);
    // The idle one weighs the floor, 20/64/2 = 0.156: the busy one gets 19.94 a second.
    assert!(s[0] > 19.9 && s[1] < 0.07, "{s:?}");
}

#[test]
fn a_quota_of_zero_denies_every_request() {
    let zero = Quota {
        rate: 0.0,
        ..TWENTY
    };
    assert_eq!(grant(&zero, 0.0), Grant::DenyAll);
}

#[test]
fn a_grant_within_the_band_below_the_new_share_is_kept_and_one_above_is_not() {
    let at = |tokens| {
        Grant::Bucket(TokenGrant {
            max_tokens: 10,
            tokens_per_fill: tokens,
            fill_secs: 60,
        })
    };
    // Held 600 per minute; new shares of 620 (held is 3 % below) and 640 (6 % below).
    assert_eq!(settle(Some(&at(600)), at(620)), at(600));
    assert_eq!(settle(Some(&at(600)), at(640)), at(640));
    // A share that falls even a little below what is held replaces it at once.
    assert_eq!(settle(Some(&at(600)), at(599)), at(599));
    assert_eq!(settle(None, at(599)), at(599));
    assert_eq!(settle(Some(&Grant::AllowAll), at(599)), at(599));
}

#[test]
fn a_meter_without_a_closed_window_counts_its_requests_as_a_second_s() {
    let mut meter = DemandMeter::new(Duration::from_secs(10));
    // Envoy's first report of a bucket: the request that created it, no time elapsed.
    meter.record(Duration::from_secs(10), 1);
    assert_eq!(meter.rate(), 1.0);
    meter.record(Duration::from_millis(10_300), 2);
    assert_eq!(meter.rate(), 3.0);
    meter.record(Duration::from_millis(15_000), 497);
    assert_eq!(meter.rate(), 100.0);
}
