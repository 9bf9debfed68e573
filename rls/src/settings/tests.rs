//! The settings' own checks: defaults, backends, Redis URLs and counts.

use super::*;

#[test]
fn defaults_match_the_documented_ports_and_headers() {
    let s = Settings::defaults();
    assert_eq!(s.grpc_addr.port(), 8081);
    assert_eq!(s.http_addr.port(), 8080);
    assert_eq!(s.limit_header, "RateLimit-Limit");
    assert_eq!(s.quotas.default_algorithm, AlgorithmArg::TokenBucket);
    assert!(!s.shadow_mode && !s.response_headers);
}

#[test]
fn default_settings_shape_answers_as_the_default_options_do() {
    let s = Settings::defaults();
    assert_eq!(s.answer_options(), AnswerOptions::default());
    let names = HeaderNames {
        limit: s.limit_header,
        remaining: s.remaining_header,
        reset: s.reset_header,
    };
    assert_eq!(names, HeaderNames::default());
}

#[test]
fn cluster_nodes_without_a_scheme_become_redis_urls() {
    let mut s = Settings::defaults();
    s.redis_cluster = vec!["a:7000".into(), "rediss://b:7001".into()];
    let clock: Arc<dyn Clock> = Arc::new(limiter::SystemClock::new());
    let options = s.redis_options(clock).expect("valid settings");
    match options.endpoints.as_slice() {
        [Endpoint::Cluster(nodes)] => assert_eq!(nodes, &["redis://a:7000", "rediss://b:7001"]),
        other => panic!("not one cluster: {other:?}"),
    }
}

// Reproduces --redis-url without --backend redis being ignored: every replica then
// enforced the whole quota on its own.
#[test]
fn a_redis_server_without_a_backend_means_redis_and_with_memory_is_refused() {
    let mut s = Settings::defaults();
    assert_eq!(s.backend_kind().expect("valid"), BackendKind::Memory);
    s.redis_urls = vec!["redis://127.0.0.1:6380".into()];
    assert_eq!(s.backend_kind().expect("valid"), BackendKind::Redis);
    s.backend = Some(BackendKind::Memory);
    let refused = s.backend_kind().expect_err("memory with a Redis server");
    assert!(
        refused.to_string().contains("--backend memory"),
        "{refused}"
    );
    s.redis_urls.clear();
    s.redis_cluster = vec!["a:7000".into()];
    assert!(s.backend_kind().is_err());
    s.backend = None;
    assert_eq!(s.backend_kind().expect("valid"), BackendKind::Redis);
    s.redis_cluster.clear();
    s.sentinel.redis_sentinel = vec!["redis://s1:26379".into()];
    assert_eq!(s.backend_kind().expect("valid"), BackendKind::Redis);
    s.backend = Some(BackendKind::Memory);
    assert!(s.backend_kind().is_err(), "memory with sentinels");
}

// Reproduces an unparseable Redis URL accepted at start and then retried for ever.
#[test]
fn a_redis_url_that_does_not_parse_is_refused_naming_it_without_its_password() {
    let clock: Arc<dyn Clock> = Arc::new(limiter::SystemClock::new());
    for (urls, cluster, named) in [
        (
            vec!["redis://:s3cret@10.0.0.5:99999"],
            vec![],
            "redis://***@10.0.0.5:99999",
        ),
        (
            vec!["redis://a:6379", "http://b:6379"],
            vec![],
            "http://b:6379",
        ),
        (vec![], vec!["a:7000", "b:port"], "redis://b:port"),
    ] {
        let mut s = Settings::defaults();
        s.redis_urls = urls.into_iter().map(String::from).collect();
        s.redis_cluster = cluster.into_iter().map(String::from).collect();
        let refused = s.redis_options(clock.clone()).err().expect("refused");
        let text = refused.to_string();
        assert!(
            text.contains(&format!("invalid Redis URL {named}")),
            "{text}"
        );
        assert!(!text.contains("s3cret"), "{text}");
    }
}

#[test]
fn a_count_of_zero_is_refused_when_parsed() {
    #[derive(clap::Parser)]
    struct Only {
        #[command(flatten)]
        settings: Settings,
    }
    for flag in [
        "--replicas",
        "--max-in-flight",
        "--batch-max-checks",
        "--pipeline-depth",
    ] {
        let parsed = <Only as clap::Parser>::try_parse_from(["rls", flag, "0"]);
        assert!(parsed.is_err(), "{flag} 0 was accepted");
    }
}
