//! An Istio `EnvoyFilter`'s patches applied to a small Envoy bootstrap shaped like the one
//! Istio gives a proxy (one HTTP listener ending in the router, one virtual host, one route,
//! the route's cluster, and Istio's `outbound|...` clusters that the patches name), so that
//! `envoy --mode validate` judges the Envoy configuration the patches carry.
//!
//! Applied as Istio applies them: `HTTP_FILTER` `INSERT_BEFORE` the router / `INSERT_FIRST`,
//! `VIRTUAL_HOST` and `HTTP_ROUTE` `MERGE` (protobuf merge: fields merged, lists appended),
//! `CLUSTER` `ADD`. Anything else panics, naming what to add here.

use serde_json::{Value, json};

const HCM: &str = "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager";
const ROUTER: &str = "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router";

/// A bootstrap (JSON) holding what `envoy_filter`'s patches put into a proxy.
pub fn bootstrap_with(envoy_filter: &Value) -> Value {
    let patches = envoy_filter["spec"]["configPatches"]
        .as_array()
        .expect("spec.configPatches");
    let route_name = patches
        .iter()
        .find_map(|p| p["match"]["routeConfiguration"]["vhost"]["route"]["name"].as_str())
        .unwrap_or("default");
    let mut bootstrap = skeleton(route_name);
    for patch in patches {
        apply(&mut bootstrap, patch);
    }
    add_istio_clusters(&mut bootstrap);
    bootstrap
}

fn skeleton(route_name: &str) -> Value {
    json!({
        "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": 15000}}},
        "static_resources": {
            "listeners": [{
                "name": "http",
                "address": {"socket_address": {"address": "127.0.0.1", "port_value": 15006}},
                "filter_chains": [{"filters": [{
                    "name": "envoy.filters.network.http_connection_manager",
                    "typed_config": {
                        "@type": HCM,
                        "stat_prefix": "http",
                        "route_config": {
                            "name": "http",
                            "virtual_hosts": [{
                                "name": "service",
                                "domains": ["*"],
                                "routes": [{
                                    "name": route_name,
                                    "match": {"prefix": "/"},
                                    "route": {"cluster": "service"}
                                }]
                            }]
                        },
                        "http_filters": [{"name": "envoy.filters.http.router", "typed_config": {"@type": ROUTER}}]
                    }
                }]}]
            }],
            "clusters": [static_cluster("service", false)]
        }
    })
}

fn static_cluster(name: &str, http2: bool) -> Value {
    let mut cluster = json!({
        "name": name,
        "type": "STATIC",
        "connect_timeout": "1s",
        "load_assignment": {"cluster_name": name, "endpoints": [{"lb_endpoints": [{"endpoint": {
            "address": {"socket_address": {"address": "127.0.0.1", "port_value": 8081}}
        }}]}]}
    });
    if http2 {
        cluster["typed_extension_protocol_options"] = json!({
            "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
                "explicit_http_config": {"http2_protocol_options": {}}
            }
        });
    }
    cluster
}

fn apply(bootstrap: &mut Value, patch: &Value) {
    let value = patch["patch"]["value"].clone();
    let operation = patch["patch"]["operation"].as_str().unwrap_or("");
    let hcm = "/static_resources/listeners/0/filter_chains/0/filters/0/typed_config";
    match (patch["applyTo"].as_str().unwrap_or(""), operation) {
        ("HTTP_FILTER", "INSERT_BEFORE" | "INSERT_FIRST") => {
            let filters = bootstrap
                .pointer_mut(&format!("{hcm}/http_filters"))
                .and_then(Value::as_array_mut)
                .expect("http_filters");
            // The router is last; INSERT_BEFORE names it as the subFilter in our files.
            let at = if operation == "INSERT_FIRST" {
                0
            } else {
                filters.len() - 1
            };
            filters.insert(at, value);
        }
        ("VIRTUAL_HOST", "MERGE") => {
            let vhost = bootstrap
                .pointer_mut(&format!("{hcm}/route_config/virtual_hosts/0"))
                .expect("virtual host");
            merge(vhost, value);
        }
        ("HTTP_ROUTE", "MERGE") => {
            let route = bootstrap
                .pointer_mut(&format!("{hcm}/route_config/virtual_hosts/0/routes/0"))
                .expect("route");
            merge(route, value);
        }
        ("CLUSTER", "ADD") => {
            let clusters = bootstrap
                .pointer_mut("/static_resources/clusters")
                .and_then(Value::as_array_mut)
                .expect("clusters");
            clusters.push(value);
        }
        (apply_to, operation) => {
            panic!("applying {apply_to} {operation} is not written yet: add it to common/istio.rs")
        }
    }
}

/// Protobuf's merge, on JSON: messages field by field, lists appended, scalars replaced.
fn merge(into: &mut Value, from: Value) {
    match (into, from) {
        (Value::Object(into), Value::Object(from)) => {
            for (key, value) in from {
                match into.get_mut(&key) {
                    Some(existing) => merge(existing, value),
                    None => {
                        into.insert(key, value);
                    }
                }
            }
        }
        (Value::Array(into), Value::Array(from)) => into.extend(from),
        (into, from) => *into = from,
    }
}

/// Istio defines a cluster per Service port (`outbound|8081||rls.rls.svc.cluster.local`):
/// one for each such name the patches use and do not add themselves, HTTP/2 as Istio
/// makes them for ports named `grpc`.
fn add_istio_clusters(bootstrap: &mut Value) {
    let mut names = Vec::new();
    collect_cluster_names(bootstrap, &mut names);
    let clusters = bootstrap
        .pointer_mut("/static_resources/clusters")
        .and_then(Value::as_array_mut)
        .expect("clusters");
    for name in names {
        if name.starts_with("outbound|") && !clusters.iter().any(|c| c["name"] == name.as_str()) {
            clusters.push(static_cluster(&name, true));
        }
    }
}

fn collect_cluster_names(value: &Value, names: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            for (key, value) in map {
                match (key.as_str(), value) {
                    ("cluster_name" | "cluster", Value::String(name)) => names.push(name.clone()),
                    _ => collect_cluster_names(value, names),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|v| collect_cluster_names(v, names)),
        _ => {}
    }
}
