//! Compiles the Envoy protos in `proto/` into prost messages, tonic stubs and pbjson serde
//! impls. Uses the vendored protoc unless `PROTOC` is set, so no system protoc is needed.

use std::path::PathBuf;

/// The files we compile; their imports are found through `proto/` and the vendored
/// `google/protobuf` includes.
const PROTOS: &[&str] = &[
    "proto/envoy/service/ratelimit/v3/rls.proto",
    "proto/envoy/extensions/common/ratelimit/v3/ratelimit.proto",
    "proto/envoy/type/v3/ratelimit_unit.proto",
    "proto/envoy/config/core/v3/base.proto",
    "proto/envoy/service/discovery/v3/ads.proto",
    "proto/ratelimit/config/ratelimit/v3/rls_conf.proto",
    "proto/envoy/service/rate_limit_quota/v3/rlqs.proto",
];

/// Packages that get proto3-JSON serde impls. The xDS discovery messages are left out:
/// they carry `google.rpc.Status`, which has no serde impls, and are never JSON here.
const JSON_PACKAGES: &[&str] = &[
    ".envoy.config.core",
    ".envoy.extensions",
    ".envoy.service.ratelimit",
    ".envoy.service.rate_limit_quota",
    ".envoy.type",
    ".ratelimit",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto");
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=PROTOC");

    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    let descriptor_path = out_dir.join("envoy_descriptor.bin");

    // Setting the protoc path on the config rather than `PROTOC` in the environment keeps
    // build.rs free of `unsafe { set_var }` (the workspace forbids unsafe code).
    let mut config = tonic_prost_build::Config::new();
    if std::env::var_os("PROTOC").is_none() {
        config.protoc_executable(protoc_bin_vendored::protoc_bin_path()?);
    }

    let protos: Vec<PathBuf> = PROTOS.iter().map(PathBuf::from).collect();
    let includes = [PathBuf::from("proto"), protoc_bin_vendored::include_path()?];

    // Well-known types come from pbjson-types, which carries their proto3 JSON forms
    // (Duration as "1.5s", UInt64Value as a string, Struct as an object).
    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        .compile_well_known_types(true)
        // A BucketId's map in key order: a stable encoding, and usable as a map key itself.
        .btree_map(".envoy.service.rate_limit_quota")
        .extern_path(".google.protobuf", "::pbjson_types")
        .file_descriptor_set_path(&descriptor_path)
        .compile_with_config(config, &protos, &includes)?;

    let descriptors = std::fs::read(&descriptor_path)?;
    pbjson_build::Builder::new()
        .register_descriptors(&descriptors)?
        .btree_map([".envoy.service.rate_limit_quota"])
        .build(JSON_PACKAGES)?;

    Ok(())
}
