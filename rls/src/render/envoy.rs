//! `rls render envoy`: a runnable bootstrap — one listener with a virtual host per host of
//! the resources (and a catch-all that limits nothing), the resources' filters, a cluster
//! for rls and one for the upstream — or, with `--fragment`, only the pieces to paste.

use std::net::{IpAddr, SocketAddr};
use std::path::Path;

use config::resource::{Mode, RateLimitResource};
use serde_json::{Value, json};

use crate::render::actions::{self, global_filter, local_filter, per_host_configs};
use crate::render::args::{EnvoyArgs, host_port};
use crate::render::input::Input;
use crate::render::{Rendered, yaml};

const HCM: &str = "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager";
const ROUTER: &str = "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router";
const HTTP_OPTIONS: &str =
    "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions";
/// The cluster rls is reached through.
const RLS_CLUSTER: &str = "rls";
/// The cluster the routes send requests to.
const UPSTREAM_CLUSTER: &str = "upstream";

/// Renders `input` as `args` say.
pub(crate) fn render(input: &Input, args: &EnvoyArgs) -> anyhow::Result<Rendered> {
    let (rls_host, rls_port) = host_port(&args.rls_address)?;
    let rls = cluster(RLS_CLUSTER, &rls_host, rls_port, true);
    let filters = http_filters(&input.resources, args);
    let hosts = virtual_hosts(&input.resources);
    let mut lines = vec![format!(
        "Rendered by `rls render envoy` from {}: {} RateLimit resource(s), rls at {}.",
        args.quotas
            .config
            .as_deref()
            .unwrap_or(Path::new(""))
            .display(),
        input.resources.len(),
        args.rls_address
    )];
    let doc = if args.fragment {
        lines.extend(fragment_comments());
        fragment(filters, rls, hosts)
    } else {
        lines.extend(bootstrap_comments(args));
        bootstrap(filters, rls, hosts, args)?
    };
    Ok(Rendered {
        yaml: yaml::documents(&[(lines, doc)])?,
        notes: input.notes.clone(),
    })
}

fn bootstrap_comments(args: &EnvoyArgs) -> Vec<String> {
    let upstream = match &args.upstream {
        Some(upstream) => format!("the upstream is {upstream}"),
        None => format!(
            "the upstream is this Envoy's own listener on {} answering 200 (--upstream \
             HOST:PORT for a real one)",
            args.upstream_listen
        ),
    };
    vec![
        format!(
            "Clients call {}; {upstream}; admin on {}.",
            args.listen, args.admin
        ),
        "Each host of a resource is a virtual host of its own; any other host is served".to_owned(),
        "without limits. Run: envoy -c <this file>".to_owned(),
    ]
}

fn fragment_comments() -> Vec<String> {
    [
        "http_filters: insert before the router filter of your HTTP connection manager.",
        "clusters: add to static_resources.clusters.",
        "virtual_hosts: merge each entry's typed_per_filter_config into the virtual host of",
        "that name (the domains are the hosts as the resources list them).",
    ]
    .map(str::to_owned)
    .to_vec()
}

/// The HTTP filters, in chain order: every resource's local filter (a request refused
/// there costs no rls call), then every global filter, in load order.
fn http_filters(resources: &[RateLimitResource], args: &EnvoyArgs) -> Vec<Value> {
    let local = resources
        .iter()
        .filter(|r| r.has_mode(Mode::Local))
        .map(local_filter);
    let global = resources
        .iter()
        .filter(|r| r.has_mode(Mode::Global))
        .map(|r| global_filter(r, RLS_CLUSTER, args.rls_timeout));
    local.chain(global).collect()
}

/// One virtual host per distinct host (in any case, as Envoy compares them), in order of
/// first mention and as first written, carrying the configuration of every resource that
/// lists it.
fn virtual_hosts(resources: &[RateLimitResource]) -> Vec<Value> {
    let mut hosts: Vec<(String, serde_json::Map<String, Value>)> = Vec::new();
    for resource in resources {
        let configs = per_host_configs(resource);
        for host in &resource.hosts {
            let index = match hosts.iter().position(|(h, _)| h.eq_ignore_ascii_case(host)) {
                Some(index) => index,
                None => {
                    hosts.push((host.clone(), serde_json::Map::new()));
                    hosts.len() - 1
                }
            };
            hosts[index].1.extend(configs.clone());
        }
    }
    hosts
        .into_iter()
        .map(|(host, configs)| {
            json!({
                "name": host,
                "domains": [host],
                "typed_per_filter_config": configs,
            })
        })
        .collect()
}

fn fragment(filters: Vec<Value>, rls: Value, hosts: Vec<Value>) -> Value {
    json!({"http_filters": filters, "clusters": [rls], "virtual_hosts": hosts})
}

fn bootstrap(
    mut filters: Vec<Value>,
    rls: Value,
    mut hosts: Vec<Value>,
    args: &EnvoyArgs,
) -> anyhow::Result<Value> {
    let route = json!([{"match": {"prefix": "/"}, "route": {"cluster": UPSTREAM_CLUSTER}}]);
    for host in &mut hosts {
        host["routes"] = route.clone();
    }
    if !hosts.iter().any(|h| h["name"] == "*") {
        hosts.push(json!({"name": "other_hosts", "domains": ["*"], "routes": route}));
    }
    filters.push(json!({"name": "envoy.filters.http.router", "typed_config": {"@type": ROUTER}}));
    let ingress = listener(
        "ingress",
        args.listen,
        json!({"name": "ingress", "virtual_hosts": hosts}),
        filters,
    );
    let mut listeners = vec![ingress];
    let upstream = match &args.upstream {
        Some(upstream) => {
            let (host, port) = host_port(upstream)?;
            cluster(UPSTREAM_CLUSTER, &host, port, false)
        }
        None => {
            listeners.push(answer_200_listener(args.upstream_listen));
            let at = args.upstream_listen;
            cluster(UPSTREAM_CLUSTER, &at.ip().to_string(), at.port(), false)
        }
    };
    Ok(json!({
        "admin": {"address": socket_address(args.admin)},
        "static_resources": {"listeners": listeners, "clusters": [rls, upstream]},
    }))
}

/// The bootstrap's own upstream: answers every request 200 itself.
fn answer_200_listener(at: SocketAddr) -> Value {
    let routes = json!({"name": "upstream", "virtual_hosts": [{
        "name": "upstream",
        "domains": ["*"],
        "routes": [{"match": {"prefix": "/"}, "direct_response": {"status": 200, "body": {"inline_string": "ok\n"}}}],
    }]});
    let router = json!({"name": "envoy.filters.http.router", "typed_config": {"@type": ROUTER}});
    listener("upstream", at, routes, vec![router])
}

fn listener(name: &str, at: SocketAddr, routes: Value, filters: Vec<Value>) -> Value {
    json!({
        "name": name,
        "address": socket_address(at),
        "filter_chains": [{"filters": [{
            "name": "envoy.filters.network.http_connection_manager",
            "typed_config": {
                "@type": HCM,
                "stat_prefix": name,
                // The client is the TCP peer: remote_address entries cannot be forged
                // with an x-forwarded-for header.
                "use_remote_address": true,
                "route_config": routes,
                "http_filters": filters,
            },
        }]}],
    })
}

fn socket_address(at: SocketAddr) -> Value {
    json!({"socket_address": {"address": at.ip().to_string(), "port_value": at.port()}})
}

/// A cluster of one endpoint: STATIC for an address, STRICT_DNS for a name; HTTP/2 for
/// gRPC.
fn cluster(name: &str, host: &str, port: u16, http2: bool) -> Value {
    let kind = if host.parse::<IpAddr>().is_ok() {
        "STATIC"
    } else {
        "STRICT_DNS"
    };
    let endpoint =
        json!({"endpoint": {"address": {"socket_address": {"address": host, "port_value": port}}}});
    let mut cluster = json!({
        "name": name,
        "type": kind,
        "connect_timeout": actions::duration(std::time::Duration::from_secs(1)),
        "load_assignment": {"cluster_name": name, "endpoints": [{"lb_endpoints": [endpoint]}]},
    });
    if http2 {
        cluster["typed_extension_protocol_options"] = json!({
            "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                "@type": HTTP_OPTIONS,
                "explicit_http_config": {"http2_protocol_options": {}},
            },
        });
    }
    cluster
}
