//! cargo-fuzz target: [`rocketstore::fuzz_targets::record_decode`].
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| rocketstore::fuzz_targets::record_decode(data));
