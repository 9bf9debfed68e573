//! `cargo fuzz run request_path`: see [`rls_fuzz::request_path`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| rls_fuzz::request_path(data));
