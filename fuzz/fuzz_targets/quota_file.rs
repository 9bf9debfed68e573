//! `cargo fuzz run quota_file`: see [`rls_fuzz::quota_file`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| rls_fuzz::quota_file(data));
