//! The xDS client's loop: connect, subscribe to `RateLimitConfig` resources (a wildcard
//! subscription, as the reference makes), apply or refuse each response, answer it with an
//! ACK or a NACK; when the stream ends, wait ([`Backoff`](super::Backoff)) and start over,
//! announcing the version it serves so that an up-to-date server need not resend it.

use std::error::Error;
use std::sync::Arc;
use std::time::{Duration, Instant};

use config::{LoadOptions, QuotaSet};
use prost::Message;
use proto::RATE_LIMIT_CONFIG_TYPE_URL;
use proto::core::{Node, node::UserAgentVersionType};
use proto::rls_config::RateLimitConfig;
use proto::rpc::Status;
use proto::xds::aggregated_discovery_service_client::AggregatedDiscoveryServiceClient;
use proto::xds::{DiscoveryRequest, DiscoveryResponse};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::{Channel, Endpoint};

use super::{XdsOptions, XdsStatus};
use crate::decide::Decider;
use crate::snapshot::record_load_duration;
use crate::store::BucketStore;

/// Longest wait for a connection to the server.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// `google.rpc.Code.INVALID_ARGUMENT`, the code of a NACK's `error_detail`.
const INVALID_ARGUMENT: i32 = 3;

/// Starts the client: it serves each rule set the server sends on `decider`, read with
/// `load` as quota files are. Runs until the task is aborted.
pub fn start<S: BucketStore>(
    decider: Arc<Decider<S>>,
    options: XdsOptions,
    load: LoadOptions,
) -> (JoinHandle<()>, watch::Receiver<XdsStatus>) {
    let (report, status) = watch::channel(XdsStatus::default());
    let client = Client {
        decider,
        node: node(&options),
        options,
        load,
        report,
    };
    (tokio::spawn(client.run()), status)
}

struct Client<S> {
    decider: Arc<Decider<S>>,
    options: XdsOptions,
    node: Node,
    load: LoadOptions,
    report: watch::Sender<XdsStatus>,
}

impl<S: BucketStore> Client<S> {
    async fn run(self) {
        let mut backoff = self.options.backoff.clone();
        let server = self.options.uri.to_string();
        tracing::info!(%server, node = %self.node.id, "xDS: subscribing to RateLimitConfig resources");
        loop {
            let (answered, end) = self.session().await;
            self.report.send_modify(|s| s.connected = false);
            metrics::gauge!("rls_xds_connected").set(0.0);
            if answered {
                backoff.reset();
            }
            let wait = backoff.next_wait(&mut rand::rng());
            tracing::warn!(%server, reason = %end, retry_in = ?wait,
                "xDS stream ended; the last rule set keeps serving");
            tokio::time::sleep(wait).await;
        }
    }

    /// One stream, to its end: whether the server answered on it, and why it ended.
    async fn session(&self) -> (bool, String) {
        let mut answered = false;
        let end = match self.stream(&mut answered).await {
            Ok(()) => "the server closed the stream".to_owned(),
            Err(reason) => reason,
        };
        (answered, end)
    }

    async fn stream(&self, answered: &mut bool) -> Result<(), String> {
        let channel = self.connect().await?;
        // Connected: a server with no set for this node may send nothing for long, and
        // some send no response headers before their first response.
        self.report.send_modify(|s| s.connected = true);
        metrics::gauge!("rls_xds_connected").set(1.0);
        tracing::info!(server = %self.options.uri, "xDS server connected");
        let mut client = AggregatedDiscoveryServiceClient::new(channel)
            .max_decoding_message_size(self.options.max_message_bytes);
        let (requests, outgoing) = mpsc::channel(4);
        let subscribe = DiscoveryRequest {
            version_info: self.report.borrow().version.clone().unwrap_or_default(),
            node: Some(self.node.clone()),
            type_url: RATE_LIMIT_CONFIG_TYPE_URL.to_owned(),
            ..Default::default()
        };
        let _ = requests.send(subscribe).await;
        let mut responses = client
            .stream_aggregated_resources(ReceiverStream::new(outgoing))
            .await
            .map_err(|status| describe(&status))?
            .into_inner();
        while let Some(response) = responses.message().await.map_err(|s| describe(&s))? {
            *answered = true;
            let reply = self.apply(response);
            if requests.send(reply).await.is_err() {
                return Err("the request stream closed".to_owned());
            }
        }
        Ok(())
    }

    async fn connect(&self) -> Result<Channel, String> {
        let mut endpoint = Endpoint::from(self.options.uri.clone())
            .connect_timeout(CONNECT_TIMEOUT)
            .tcp_nodelay(true)
            .tcp_keepalive(Some(Duration::from_secs(60)));
        if let Some(tls) = &self.options.tls {
            let config = tls.tonic_config().map_err(|e| e.to_string())?;
            endpoint = endpoint.tls_config(config).map_err(|e| describe(&e))?;
        }
        endpoint.connect().await.map_err(|e| describe(&e))
    }

    /// Serves the set `response` holds, or refuses it: the ACK or NACK to send back.
    fn apply(&self, response: DiscoveryResponse) -> DiscoveryRequest {
        let version = response.version_info.clone();
        let started = Instant::now();
        // A refusal is recorded for `/config` and the refused-reload gauge, as a quota
        // file's is.
        let snapshots = self.decider.snapshots();
        let applied = match decode(&response) {
            Ok(configs) => QuotaSet::from_rate_limit_configs(&configs, &self.load).map_err(|e| {
                snapshots.refuse(&e);
                config::Report(&e).to_string()
            }),
            Err(error) => {
                snapshots.refuse_because(error.clone());
                Err(error)
            }
        };
        record_load_duration(started.elapsed());
        let mut reply = DiscoveryRequest {
            response_nonce: response.nonce,
            type_url: RATE_LIMIT_CONFIG_TYPE_URL.to_owned(),
            ..Default::default()
        };
        match applied {
            Ok(quotas) => {
                tracing::info!(%version, domains = quotas.domains().count(),
                    rules = quotas.rule_count(), "xDS rule set applied");
                metrics::counter!("rls_config_reloads_total", "result" => "loaded").increment(1);
                self.decider.replace_quotas(quotas);
                self.report.send_modify(|s| {
                    s.version = Some(version.clone());
                    s.applied += 1;
                    s.last_error = None;
                });
                reply.version_info = version;
            }
            Err(error) => {
                tracing::error!(%version, %error,
                    "xDS rule set refused; the previous one keeps serving");
                metrics::counter!("rls_config_reloads_total", "result" => "refused").increment(1);
                self.report.send_modify(|s| {
                    s.refused += 1;
                    s.last_error = Some(error.clone());
                });
                // A NACK names the version still serving, and says why.
                reply.version_info = self.report.borrow().version.clone().unwrap_or_default();
                reply.error_detail = Some(Status {
                    code: INVALID_ARGUMENT,
                    message: error,
                    details: Vec::new(),
                });
            }
        }
        reply
    }
}

/// The resources of a response, each a `RateLimitConfig`.
fn decode(response: &DiscoveryResponse) -> Result<Vec<RateLimitConfig>, String> {
    if response.type_url != RATE_LIMIT_CONFIG_TYPE_URL {
        return Err(format!(
            "resources of type {:?}, expected {RATE_LIMIT_CONFIG_TYPE_URL}",
            response.type_url
        ));
    }
    let decode_one = |(i, any): (usize, &proto::wkt::Any)| {
        if any.type_url != RATE_LIMIT_CONFIG_TYPE_URL {
            return Err(format!("resources[{i}] is of type {:?}", any.type_url));
        }
        RateLimitConfig::decode(any.value.as_ref())
            .map_err(|e| format!("resources[{i}] is not a RateLimitConfig: {e}"))
    };
    response
        .resources
        .iter()
        .enumerate()
        .map(decode_one)
        .collect()
}

/// The node rls introduces itself as.
fn node(options: &XdsOptions) -> Node {
    let fields = options
        .node_metadata
        .iter()
        .map(|(key, value)| {
            let value = proto::wkt::Value {
                kind: Some(proto::wkt::value::Kind::StringValue(value.clone())),
            };
            (key.clone(), value)
        })
        .collect();
    Node {
        id: options.node_id.clone(),
        metadata: Some(proto::wkt::Struct { fields }),
        user_agent_name: "rls".to_owned(),
        user_agent_version_type: Some(UserAgentVersionType::UserAgentVersion(
            env!("CARGO_PKG_VERSION").to_owned(),
        )),
        ..Default::default()
    }
}

/// An error with its causes, for the log: tonic's own messages are terse.
fn describe(error: &dyn Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn response(type_url: &str, resources: Vec<proto::wkt::Any>) -> DiscoveryResponse {
        DiscoveryResponse {
            type_url: type_url.to_owned(),
            resources,
            ..Default::default()
        }
    }

    #[test]
    fn resources_of_another_type_or_undecodable_are_refused_naming_them() {
        let config = RateLimitConfig {
            name: "a".into(),
            domain: "a".into(),
            descriptors: vec![],
        };
        let good = proto::wkt::Any {
            type_url: RATE_LIMIT_CONFIG_TYPE_URL.into(),
            value: config.encode_to_vec().into(),
        };
        let decoded = decode(&response(RATE_LIMIT_CONFIG_TYPE_URL, vec![good.clone()]));
        assert_eq!(decoded, Ok(vec![config]));

        let cluster = "type.googleapis.com/envoy.config.cluster.v3.Cluster";
        let error = decode(&response(cluster, vec![])).expect_err("wrong type");
        assert!(error.contains("envoy.config.cluster.v3.Cluster"), "{error}");

        let garbage = proto::wkt::Any {
            type_url: RATE_LIMIT_CONFIG_TYPE_URL.into(),
            value: vec![0xff, 0xff].into(),
        };
        let error = decode(&response(RATE_LIMIT_CONFIG_TYPE_URL, vec![good, garbage]))
            .expect_err("garbage");
        assert!(
            error.starts_with("resources[1] is not a RateLimitConfig"),
            "{error}"
        );
    }

    #[test]
    fn the_node_carries_its_id_and_metadata() {
        let options = XdsOptions {
            uri: "http://127.0.0.1:18000".parse().expect("uri"),
            tls: None,
            node_id: "envoy-ratelimit".into(),
            node_metadata: vec![("zone".into(), "a".into())],
            backoff: super::super::Backoff::new(Duration::from_secs(1), Duration::from_secs(2)),
            max_message_bytes: 1 << 20,
            force_start: false,
        };
        let node = node(&options);
        assert_eq!(node.id, "envoy-ratelimit");
        let metadata = node.metadata.expect("metadata");
        assert_eq!(
            metadata.fields["zone"].kind,
            Some(proto::wkt::value::Kind::StringValue("a".into()))
        );
    }
}
