//! cargo-fuzz target: [`rocketstore::fuzz_targets::ops_model`].
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| rocketstore::fuzz_targets::ops_model(data));
