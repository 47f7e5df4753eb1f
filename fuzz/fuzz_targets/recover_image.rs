//! cargo-fuzz target: [`rocketstore_test_support::recover_image`].
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| rocketstore_test_support::recover_image(data));
