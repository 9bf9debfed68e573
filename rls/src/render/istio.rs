//! `rls render istio`: per resource, an EnvoyFilter for its global rules and one for its
//! local rules, each inserting the resource's filter before the router and merging its
//! configuration into the virtual hosts named by the resource's hosts (`host:port`, as
//! Istio names them). rls is reached through Istio's own cluster for its Service, which
//! spreads Envoy's HTTP/2 connections over the rls pods (a STRICT_DNS cluster of the
//! Service's address would pin them to few).

use config::resource::{Mode, RateLimitResource};
use serde_json::{Value, json};

use crate::render::actions::{
    global_filter, global_filter_name, local_filter, local_filter_name, per_host_configs,
};
use crate::render::args::{IstioArgs, host_port};
use crate::render::input::Input;
use crate::render::{Rendered, yaml};

/// Renders `input` as `args` say.
pub(crate) fn render(input: &Input, args: &IstioArgs) -> anyhow::Result<Rendered> {
    let (host, port) = host_port(&args.rls_address)?;
    let cluster = format!("outbound|{port}||{host}");
    let mut notes = input.notes.clone();
    let mut docs = Vec::new();
    for resource in &input.resources {
        let configs = per_host_configs(resource);
        if resource.has_mode(Mode::Global) {
            let filter = global_filter(resource, &cluster, args.rls_timeout);
            let name = global_filter_name(resource);
            let comments = vec![format!(
                "RateLimit {}: its global rules, asking rls ({}) for the domain {}.",
                resource.domain, args.rls_address, resource.domain
            )];
            let doc = envoy_filter(resource, "ratelimit", filter, &name, &configs);
            docs.push((comments, doc));
        }
        if resource.has_mode(Mode::Local) {
            if resource.workload_selector.is_empty() {
                notes.push(format!(
                    "RateLimit {} ({}): local rules and no spec.workloadSelector, so every \
                     pod of namespace {} that routes to its hosts gets its own buckets",
                    resource.domain,
                    resource.origin,
                    resource
                        .namespace
                        .as_deref()
                        .unwrap_or("(the one applied to)")
                ));
            }
            let filter = local_filter(resource);
            let name = local_filter_name(resource);
            let comments = vec![format!(
                "RateLimit {}: its local rules, each proxy keeping its own buckets.",
                resource.domain
            )];
            let doc = envoy_filter(resource, "local-ratelimit", filter, &name, &configs);
            docs.push((comments, doc));
        }
    }
    Ok(Rendered {
        yaml: yaml::documents(&docs)?,
        notes,
    })
}

/// An EnvoyFilter inserting `filter` and merging its configuration (`configs[name]`) into
/// each of the resource's virtual hosts.
fn envoy_filter(
    resource: &RateLimitResource,
    suffix: &str,
    filter: Value,
    name: &str,
    configs: &serde_json::Map<String, Value>,
) -> Value {
    let mut patches = vec![json!({
        "applyTo": "HTTP_FILTER",
        "match": {"listener": {"filterChain": {"filter": {
            "name": "envoy.filters.network.http_connection_manager",
            "subFilter": {"name": "envoy.filters.http.router"},
        }}}},
        "patch": {"operation": "INSERT_BEFORE", "value": filter},
    })];
    for host in &resource.hosts {
        patches.push(json!({
            "applyTo": "VIRTUAL_HOST",
            "match": {"routeConfiguration": {"vhost": {"name": host}}},
            "patch": {"operation": "MERGE", "value": {"typed_per_filter_config": {name: configs[name]}}},
        }));
    }
    let mut metadata = json!({"name": format!("{}-{suffix}", resource.name)});
    if let Some(namespace) = &resource.namespace {
        metadata["namespace"] = json!(namespace);
    }
    let mut spec = json!({"configPatches": patches});
    if !resource.workload_selector.is_empty() {
        spec["workloadSelector"] = json!({"labels": resource.workload_selector});
    }
    json!({
        "apiVersion": "networking.istio.io/v1alpha3",
        "kind": "EnvoyFilter",
        "metadata": metadata,
        "spec": spec,
    })
}
