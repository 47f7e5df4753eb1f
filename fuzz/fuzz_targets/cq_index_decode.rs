//! cargo-fuzz target: [`rocketstore::fuzz_targets::cq_index_decode`].
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| rocketstore::fuzz_targets::cq_index_decode(data));
