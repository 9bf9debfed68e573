use config::{LoadOptions, QuotaSet};
use proto::rlqs::rate_limit_quota_usage_reports::BucketQuotaUsage;

use super::*;
use crate::rlqs::assign::TokenGrant;
use crate::rlqs::state::MemoryShares;

const QUOTAS: &str = "domain: api
descriptors:
  - key: api_key
    value: alice
    rate_limit: {unit: second, requests_per_unit: 20}
  - key: api_key
    rate_limit: {unit: second, requests_per_unit: 10}
  - key: internal
    rate_limit: {unlimited: true}
";

const LIMITS: Limits = Limits {
    max_buckets: 3,
    abandon_after: Duration::from_secs(60),
    ttl: Duration::from_secs(5),
};

fn map() -> Arc<BucketMap> {
    let quotas = QuotaSet::from_sources([("api.yaml", QUOTAS)], &LoadOptions::default())
        .expect("valid quotas");
    Arc::new(BucketMap::new(Arc::new(quotas)))
}

fn usage(pairs: &[(&str, &str)], allowed: u64, denied: u64) -> BucketQuotaUsage {
    BucketQuotaUsage {
        bucket_id: Some(BucketId {
            bucket: pairs
                .iter()
                .map(|&(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }),
        time_elapsed: None,
        num_requests_allowed: allowed,
        num_requests_denied: denied,
    }
}

fn report(domain: &str, usages: Vec<BucketQuotaUsage>) -> RateLimitQuotaUsageReports {
    RateLimitQuotaUsageReports {
        domain: domain.to_string(),
        bucket_quota_usages: usages,
    }
}

fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s)
}

/// One push or answer: what `session` gets for `which`, its weights exchanged through
/// `shares`.
fn assign(session: &mut Session, shares: &MemoryShares, which: &[usize]) -> Vec<BucketAction> {
    let (shared, contributions) = session.contributions(which);
    let splits: Vec<Split> = shares
        .exchange_now(&contributions)
        .into_iter()
        .map(Split::Totals)
        .collect();
    session.assign(which, &shared, &splits, LIMITS.ttl)
}

fn strategy_of(action: &BucketAction) -> Option<Strategy> {
    match &action.bucket_action {
        Some(Action::QuotaAssignmentAction(assignment)) => {
            assert_eq!(
                assignment.assignment_time_to_live,
                Some(proto::wkt::Duration {
                    seconds: 5,
                    nanos: 0
                })
            );
            assignment.rate_limit_strategy.as_ref()?.strategy
        }
        _ => None,
    }
}

fn token_bucket(action: &BucketAction) -> TokenGrant {
    match strategy_of(action) {
        Some(Strategy::TokenBucket(bucket)) => TokenGrant {
            max_tokens: bucket.max_tokens,
            tokens_per_fill: bucket.tokens_per_fill.map_or(0, |t| t.value),
            fill_secs: bucket.fill_interval.map_or(0, |d| d.seconds as u64),
        },
        other => panic!("not a token bucket: {other:?}"),
    }
}

#[tokio::test(start_paused = true)]
async fn a_new_bucket_is_answered_with_its_whole_quota_when_alone() {
    let (map, shares) = (map(), MemoryShares::new(Duration::from_secs(5)));
    let mut session = Session::new(1);
    let first = report("api", vec![usage(&[("api_key", "alice")], 1, 0)]);
    let seen = session
        .report(secs(0.0), first, &map, Policy::default(), &LIMITS)
        .expect("valid");
    assert_eq!(seen.new, [0]);
    let actions = assign(&mut session, &shares, &seen.new);
    let granted = token_bucket(&actions[0]);
    assert_eq!((granted.rate(), granted.max_tokens), (20.0, 20));
    // The same bucket again is not new.
    let again = report("", vec![usage(&[("api_key", "alice")], 30, 70)]);
    let seen = session
        .report(secs(5.0), again, &map, Policy::default(), &LIMITS)
        .expect("valid");
    assert!(seen.new.is_empty() && seen.untracked.is_empty());
}

#[tokio::test(start_paused = true)]
async fn two_streams_on_one_bucket_split_its_quota_by_demand() {
    let (map, shares) = (map(), MemoryShares::new(Duration::from_secs(5)));
    let policy = Policy::default();
    let (mut a, mut b) = (Session::new(1), Session::new(2));
    // Over 5 s, a asked for 300 (60 a second) and b for 100 (20 a second).
    for (session, asked) in [(&mut a, 300), (&mut b, 100)] {
        let first = report("api", vec![usage(&[("api_key", "bob")], 1, 0)]);
        session
            .report(secs(0.0), first, &map, policy, &LIMITS)
            .expect("valid");
        let later = report("api", vec![usage(&[("api_key", "bob")], 10, asked - 10)]);
        session
            .report(secs(5.0), later, &map, policy, &LIMITS)
            .expect("valid");
    }
    let (all_a, all_b) = (a.all(), b.all());
    assign(&mut a, &shares, &all_a);
    assign(&mut b, &shares, &all_b);
    // Totals as both see them now: a gets 3/4 of 10 a second, b 1/4.
    let rate_a = token_bucket(&assign(&mut a, &shares, &all_a)[0]).rate();
    let rate_b = token_bucket(&assign(&mut b, &shares, &all_b)[0]).rate();
    assert!(
        (rate_a - 7.5).abs() < 0.02 && (rate_b - 2.5).abs() < 0.02,
        "{rate_a} {rate_b}"
    );
    assert!(rate_a + rate_b <= 10.0);
}

#[tokio::test(start_paused = true)]
async fn blanket_rules_go_to_unlimited_and_unmatched_buckets() {
    let (map, shares) = (map(), MemoryShares::new(Duration::from_secs(5)));
    let deny = Policy {
        unmatched: Unmatched::Deny,
        ..Policy::default()
    };
    let mut session = Session::new(1);
    let first = report(
        "api",
        vec![
            usage(&[("internal", "x")], 1, 0),
            usage(&[("tenant", "acme")], 1, 0),
        ],
    );
    let seen = session
        .report(secs(0.0), first, &map, deny, &LIMITS)
        .expect("valid");
    let actions = assign(&mut session, &shares, &seen.new);
    let allow = Some(Strategy::BlanketRule(BlanketRule::AllowAll as i32));
    let denied = Some(Strategy::BlanketRule(BlanketRule::DenyAll as i32));
    assert_eq!(strategy_of(&actions[0]), allow);
    assert_eq!(strategy_of(&actions[1]), denied);
    assert!(shares.is_empty(), "blanket rules share nothing");
}

#[test]
fn a_stream_must_name_its_domain_first_and_keep_it() {
    let map = map();
    let mut session = Session::new(1);
    let unnamed = report("", vec![usage(&[("api_key", "alice")], 1, 0)]);
    let error = session
        .report(secs(0.0), unnamed, &map, Policy::default(), &LIMITS)
        .unwrap_err();
    assert_eq!(error.code(), tonic::Code::InvalidArgument);
    session
        .report(
            secs(0.0),
            report("api", vec![]),
            &map,
            Policy::default(),
            &LIMITS,
        )
        .expect("named");
    let other = session
        .report(
            secs(1.0),
            report("edge", vec![]),
            &map,
            Policy::default(),
            &LIMITS,
        )
        .unwrap_err();
    assert_eq!(other.code(), tonic::Code::InvalidArgument);
    assert!(other.message().contains("edge"), "{}", other.message());
}

#[test]
fn usages_without_a_bucket_id_are_skipped_and_buckets_past_the_bound_are_untracked() {
    let map = map();
    let mut session = Session::new(1);
    let mut usages = vec![BucketQuotaUsage::default(), usage(&[], 1, 0)];
    usages.extend((0..5).map(|i| usage(&[("api_key", &format!("k{i}"))], 1, 0)));
    let seen = session
        .report(
            secs(0.0),
            report("api", usages),
            &map,
            Policy::default(),
            &LIMITS,
        )
        .expect("valid");
    assert_eq!(seen.new.len(), 3);
    assert_eq!(seen.untracked.len(), 2);
    assert_eq!(session.len(), 3);
    let answer = untracked(&seen.untracked[0], Unmatched::Allow);
    let Some(Action::QuotaAssignmentAction(assignment)) = answer.bucket_action else {
        panic!("an assignment");
    };
    assert_eq!(
        assignment.assignment_time_to_live.map(|d| d.seconds),
        Some(15)
    );
}

#[tokio::test(start_paused = true)]
async fn buckets_idle_past_the_limit_are_abandoned_and_forgotten() {
    let (map, shares) = (map(), MemoryShares::new(Duration::from_secs(600)));
    let mut session = Session::new(1);
    let first = report(
        "api",
        vec![
            usage(&[("api_key", "a")], 1, 0),
            usage(&[("api_key", "b")], 1, 0),
        ],
    );
    session
        .report(secs(0.0), first, &map, Policy::default(), &LIMITS)
        .expect("valid");
    let all = session.all();
    assign(&mut session, &shares, &all);
    // b keeps being used; a is reported idle (0 + 0) from then on.
    let later = report(
        "api",
        vec![
            usage(&[("api_key", "a")], 0, 0),
            usage(&[("api_key", "b")], 3, 0),
        ],
    );
    session
        .report(secs(59.0), later, &map, Policy::default(), &LIMITS)
        .expect("valid");
    let (actions, gone) = session.abandon_idle(secs(61.0), LIMITS.abandon_after);
    assert_eq!(actions.len(), 1);
    assert_eq!(
        actions[0].bucket_action,
        Some(Action::AbandonAction(AbandonAction {}))
    );
    let id = actions[0].bucket_id.as_ref().expect("an id");
    assert_eq!(id.bucket.get("api_key").map(String::as_str), Some("a"));
    assert_eq!(session.len(), 1);
    shares.forget_now(1, &gone);
    assert_eq!(shares.len(), 1, "b's weight stays");
    // The remaining bucket still answers, by its index.
    let all = session.all();
    assert_eq!(assign(&mut session, &shares, &all).len(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_changed_quota_reaches_the_next_push() {
    let shares = MemoryShares::new(Duration::from_secs(5));
    let mut session = Session::new(1);
    let first = report("api", vec![usage(&[("api_key", "alice")], 1, 0)]);
    session
        .report(secs(0.0), first, &map(), Policy::default(), &LIMITS)
        .expect("valid");
    let doubled = QUOTAS.replace("requests_per_unit: 20", "requests_per_unit: 40");
    let quotas = QuotaSet::from_sources([("api.yaml", doubled.as_str())], &LoadOptions::default())
        .expect("valid quotas");
    session.remap(
        &Arc::new(BucketMap::new(Arc::new(quotas))),
        Policy::default(),
    );
    let all = session.all();
    let granted = token_bucket(&assign(&mut session, &shares, &all)[0]);
    assert_eq!((granted.rate(), granted.max_tokens), (40.0, 40));
}

#[tokio::test(start_paused = true)]
async fn a_newcomer_starts_with_at_least_an_equal_share() {
    let (map, shares) = (map(), MemoryShares::new(Duration::from_secs(5)));
    let policy = Policy::default();
    let bob = &[("api_key", "bob")][..];
    // a has asked for 60 a second for 5 s: measured.
    let mut a = Session::new(1);
    a.report(
        secs(0.0),
        report("api", vec![usage(bob, 1, 0)]),
        &map,
        policy,
        &LIMITS,
    )
    .expect("valid");
    let later = report("api", vec![usage(bob, 50, 250)]);
    a.report(secs(5.0), later, &map, policy, &LIMITS)
        .expect("valid");
    let all = a.all();
    assign(&mut a, &shares, &all);
    // b's first report counts only the request that made its bucket: 1 a second, as
    // measured; it starts at half of the 10 instead.
    let mut b = Session::new(2);
    let seen = b
        .report(
            secs(5.0),
            report("api", vec![usage(bob, 1, 0)]),
            &map,
            policy,
            &LIMITS,
        )
        .expect("valid");
    let first = token_bucket(&assign(&mut b, &shares, &seen.new)[0]);
    assert!((first.rate() - 5.0).abs() < 0.02, "{}", first.rate());
}
