//! cargo-fuzz target: [`rocketstore_test_support::cq_index_decode`].
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| rocketstore_test_support::cq_index_decode(data));
