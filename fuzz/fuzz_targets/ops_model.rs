//! cargo-fuzz target: [`rocketstore_test_support::ops_model`].
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| rocketstore_test_support::ops_model(data));
