//! TLS on the gRPC listener (the reference's `GRPC_SERVER_USE_TLS`, `GRPC_CLIENT_TLS_*`):
//! clients with a certificate the CA signed are served, others refused; a required SAN is
//! checked; a rotated certificate is served to new connections while open ones are kept,
//! and a bad file changes nothing. And the xDS feed over mTLS both ways.

mod common;

use std::path::Path;

use common::ads::{AdsServer, mutual_tls};
use common::certs::{Certs, Leaf, replace_file};
use common::serve::{Served, eventually, request};
use common::tls::{SERVER_NAME, TlsClient, ask};
use proto::rls::rate_limit_response::Code;
use proto::rls_config::{RateLimitConfig, RateLimitDescriptor, RateLimitPolicy, RateLimitUnit};
use rls::Settings;
use rls::settings::xds::ConfigSource;
use tempfile::TempDir;

const QUOTAS: &str = "domain: edge\ndescriptors:\n  - key: path\n    rate_limit: {unit: hour, requests_per_unit: 100}\n";

/// A CA `ca`, the server's certificate `rls` for [`SERVER_NAME`], and the quota file.
fn setup() -> (Certs, Leaf, TempDir) {
    let certs = Certs::new();
    certs.authority("ca");
    let server = certs.leaf("rls", "ca", &format!("DNS:{SERVER_NAME}"));
    let quotas = tempfile::tempdir().expect("temp dir");
    std::fs::write(quotas.path().join("edge.yaml"), QUOTAS).expect("write quotas");
    (certs, server, quotas)
}

fn settings(server: &Leaf, quotas: &Path, client_ca: Option<&Path>) -> Settings {
    let mut settings = Settings::defaults();
    settings.quotas.config = Some(quotas.to_path_buf());
    settings.grpc_tls.grpc_tls_cert = Some(server.cert.clone());
    settings.grpc_tls.grpc_tls_key = Some(server.key.clone());
    settings.grpc_tls.grpc_tls_client_ca = client_ca.map(Path::to_path_buf);
    settings
}

async fn answered(client: &TlsClient) -> Result<Code, String> {
    let answer = client.ask_once(request("edge", &[("path", "/")])).await?;
    Ok(answer.overall_code())
}

#[tokio::test]
async fn an_mtls_listener_serves_clients_its_ca_signed_and_refuses_the_others() {
    let (certs, server, quotas) = setup();
    let envoy = certs.leaf("envoy", "ca", "DNS:envoy.test");
    certs.authority("rogue");
    let intruder = certs.leaf("intruder", "rogue", "DNS:envoy.test");
    let ca = certs.path("ca.crt");
    let served = Served::start(settings(&server, quotas.path(), Some(&ca))).await;
    served.wait_ready().await;

    let signed = TlsClient::new(served.grpc, &ca, Some(&envoy));
    assert_eq!(answered(&signed).await, Ok(Code::Ok));
    for (who, client, alert) in [
        (
            "no certificate",
            TlsClient::new(served.grpc, &ca, None),
            "CertificateRequired",
        ),
        (
            "another CA's",
            TlsClient::new(served.grpc, &ca, Some(&intruder)),
            "UnknownCA",
        ),
    ] {
        let refused = answered(&client).await.expect_err(who);
        assert!(
            refused.contains(&format!("received fatal alert: {alert}")),
            "{who}: {refused}"
        );
    }
    // Plain text on the TLS port is no gRPC either.
    let plain = proto::rls::rate_limit_service_client::RateLimitServiceClient::connect(format!(
        "http://{}",
        served.grpc
    ))
    .await;
    if let Ok(mut plain) = plain {
        let call = plain
            .should_rate_limit(request("edge", &[("path", "/")]))
            .await;
        assert!(call.is_err(), "plain text was served: {call:?}");
    }
    served.stop().await;
}

#[tokio::test]
async fn a_client_certificate_without_the_required_san_is_refused() {
    let (certs, server, quotas) = setup();
    let envoy = certs.leaf("envoy", "ca", "DNS:envoy.test");
    let other = certs.leaf("other", "ca", "DNS:other.test");
    let ca = certs.path("ca.crt");
    let mut settings = settings(&server, quotas.path(), Some(&ca));
    settings.grpc_tls.grpc_tls_client_san = Some("envoy.test".into());
    let served = Served::start(settings).await;
    served.wait_ready().await;

    let named = TlsClient::new(served.grpc, &ca, Some(&envoy));
    assert_eq!(answered(&named).await, Ok(Code::Ok));
    let misnamed = answered(&TlsClient::new(served.grpc, &ca, Some(&other))).await;
    let refused = misnamed.expect_err("a certificate for other.test");
    assert!(refused.contains("received fatal alert"), "{refused}");
    served.stop().await;
}

/// Polls new connections until the server shows `expected`.
async fn wait_for_certificate(client: &TlsClient, expected: &[u8]) {
    eventually("the new certificate is served", || async {
        let served = answered(client).await == Ok(Code::Ok);
        (served && client.last_certificate() == expected).then_some(())
    })
    .await
}

/// The value of `rls_tls_reloads_total{result="refused"}` on the metrics page.
async fn refused_reloads(served: &Served) -> u64 {
    let (_, metrics) = served.get("/metrics").await;
    metrics
        .lines()
        .find_map(|l| l.strip_prefix("rls_tls_reloads_total{result=\"refused\"} "))
        .map_or(0, |v| v.trim().parse().expect("a count"))
}

#[tokio::test]
async fn a_rotated_certificate_is_served_to_new_connections_and_open_ones_are_kept() {
    let (certs, first, quotas) = setup();
    // The files the server reads, rotated in place as cert-manager does.
    let live = Leaf {
        cert: certs.path("live.crt"),
        key: certs.path("live.key"),
    };
    std::fs::copy(&first.cert, &live.cert).expect("copy");
    std::fs::copy(&first.key, &live.key).expect("copy");
    let ca = certs.path("ca.crt");
    let served = Served::start(settings(&live, quotas.path(), None)).await;
    served.wait_ready().await;

    let kept = TlsClient::new(served.grpc, &ca, None);
    let open = kept.channel().await.expect("connect");
    let answer = ask(&open, request("edge", &[("path", "/")])).await;
    assert_eq!(answer.map(|a| a.overall_code()), Ok(Code::Ok));
    assert_eq!(kept.last_certificate(), first.der());

    let second = certs.leaf("rls-rotated", "ca", &format!("DNS:{SERVER_NAME}"));
    replace_file(&second.key, &live.key);
    replace_file(&second.cert, &live.cert);
    let fresh = TlsClient::new(served.grpc, &ca, None);
    wait_for_certificate(&fresh, &second.der()).await;

    // The connection opened before the rotation still answers, and is the same one.
    let answer = ask(&open, request("edge", &[("path", "/")])).await;
    assert_eq!(answer.map(|a| a.overall_code()), Ok(Code::Ok));
    assert_eq!(kept.connections(), 1);

    // A bad certificate file is refused: the rotated certificate keeps serving.
    let before = refused_reloads(&served).await;
    let garbage = certs.path("garbage.pem");
    std::fs::write(&garbage, "not a certificate\n").expect("write");
    replace_file(&garbage, &live.cert);
    eventually("the bad file is refused", || async {
        (refused_reloads(&served).await > before).then_some(())
    })
    .await;
    assert_eq!(answered(&fresh).await, Ok(Code::Ok));
    assert_eq!(fresh.last_certificate(), second.der());
    served.stop().await;
}

#[tokio::test]
async fn rules_come_over_an_xds_feed_with_mtls_both_ways() {
    let (certs, server, _) = setup();
    let xds = certs.leaf("xds", "ca", "DNS:xds.test");
    let rls_client = certs.leaf("rls-client", "ca", "DNS:envoy-ratelimit.test");
    let envoy = certs.leaf("envoy", "ca", "DNS:envoy.test");
    let ca = certs.path("ca.crt");
    let ads = AdsServer::start(Some(mutual_tls(&xds, &ca))).await;
    ads.push(
        "1",
        vec![RateLimitConfig {
            name: "edge".into(),
            domain: "edge".into(),
            descriptors: vec![RateLimitDescriptor {
                key: "path".into(),
                rate_limit: Some(RateLimitPolicy {
                    unit: RateLimitUnit::Hour.into(),
                    requests_per_unit: 1,
                    ..Default::default()
                }),
                ..Default::default()
            }],
        }],
    );

    let mut settings = Settings::defaults();
    settings.xds.config_source = ConfigSource::Xds;
    settings.xds.xds_server = ads.url(true);
    settings.xds.xds_tls_ca = Some(ca.clone());
    settings.xds.xds_tls_cert = Some(rls_client.cert.clone());
    settings.xds.xds_tls_key = Some(rls_client.key.clone());
    settings.xds.xds_tls_san = Some("xds.test".into());
    settings.grpc_tls.grpc_tls_cert = Some(server.cert.clone());
    settings.grpc_tls.grpc_tls_key = Some(server.key.clone());
    settings.grpc_tls.grpc_tls_client_ca = Some(ca.clone());
    let served = Served::start(settings).await;
    let _subscription = ads.next_request().await;
    assert_eq!(ads.next_request().await.version_info, "1");
    served.wait_ready().await;

    let client = TlsClient::new(served.grpc, &ca, Some(&envoy));
    assert_eq!(answered(&client).await, Ok(Code::Ok));
    assert_eq!(answered(&client).await, Ok(Code::OverLimit));
    served.stop().await;
}
