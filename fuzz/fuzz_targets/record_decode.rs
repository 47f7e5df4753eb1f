//! cargo-fuzz target: [`rocketstore_test_support::record_decode`].
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| rocketstore_test_support::record_decode(data));
