//! `cargo fuzz run xds_config`: see [`rls_fuzz::xds_config`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| rls_fuzz::xds_config(data));
