//! cargo-fuzz target: [`rocketstore::fuzz_targets::recover_image`].
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| rocketstore::fuzz_targets::recover_image(data));
