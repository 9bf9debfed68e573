//! `cargo fuzz run request_json`: see [`rls_fuzz::request_json`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| rls_fuzz::request_json(data));
