//! Test support for rocketstore: the fuzz entry points, so that the cargo-fuzz targets under
//! `fuzz/` and the corpus replay in `tests/fuzz_corpus.rs` run exactly the same checks.
//!
//! Every entry point accepts any byte string and panics only when a property it states is
//! violated (the fuzzer reports the panic):
//!
//! * `record_decode`: the record decoder and the property, hash and checkpoint parsers never
//!   panic, never read outside their input, and round-trip what they accept.
//! * `cq_index_decode`: ConsumeQueue units and IndexFile header/slot/entry walks over arbitrary
//!   bytes stay in bounds and terminate.
//! * `recover_image`: the bytes are a list of `Mutation`s applied to a copy of a small valid
//!   store image (`base_image`); `Store::open` on the result gives `Ok` or a typed error naming
//!   a file inside the root, never a panic; an opened store answers every read with `Ok` or
//!   `Err`, accepts a put, closes, and reopens with everything it served before.
//! * `ops_model`: the bytes are a short sequence of put / get / flush / reopen / close / crash
//!   (copy of the files of a running store) / read / query operations, checked against an
//!   in-memory model.
//!
//! The base image is built byte by byte with the `format` module (not by running the engine), so
//! it is deterministic and an independent check of the engine's own reader. The hostile-file
//! fixtures of `tests/hostile_files.rs` are this image with a `Mutation` list applied, and the
//! same list, encoded with `encode_mutations`, is their seed in the `recover_image` corpus.
//!
//! Scratch stores live in `/dev/shm` when it exists (tmpfs: syncs cost nothing), otherwise in
//! the system temporary directory, and are removed when an entry point returns or unwinds.
//!
//! The input byte formats of `recover_image` ([`decode_mutations`]) and `ops_model`
//! ([`decode_model_ops`]) are hand-written and frozen: the committed corpus under `fuzz/corpus`
//! and its replay in `tests/fuzz_corpus.rs` depend on them, so they are not derived with
//! `arbitrary` and must not change meaning.
//!
//! Besides the fuzz entry points, the crate holds what several test files share: the fixture
//! configuration and image, scratch directories, copying and reading whole trees
//! ([`copy_tree`], [`files_under`]), and [`FaultVfs`], the one fault-injecting file system
//! (failed or slow CommitLog syncs, a full disk, a denied path).
//!
//! Only the public API of `rocketstore` (mostly its `format` layer) and its `internals` feature
//! are used: nothing here is compiled into the library. Not published.
#![warn(missing_docs)]
#![deny(unsafe_op_in_unsafe_fn)]
#![warn(clippy::undocumented_unsafe_blocks)]

mod decode;
mod fault_vfs;
mod files;
mod image;
mod input;
mod model;
mod mutation;
mod recover;
mod scratch;

pub use decode::{cq_index_decode, record_decode};
pub use fault_vfs::FaultVfs;
pub use files::{copy_tree, files_under};
pub use image::{base_image, cq_path, index_path, segment_path, BaseImage, BaseRecord, StoreImage};
pub use model::{decode_model_ops, encode_model_ops, ops_model, ModelOp};
pub use mutation::{
    decode_mutations, encode_mutations, CheckpointField, Mutation, RecordField, ADD_DIRS, ADD_NAMES,
};
pub use recover::{check_recovery, recover_image, RecoveryOutcome};
pub use scratch::ScratchDir;

use rocketstore::{FlushMode, StoreConfig};

/// CommitLog segment size of [`fixture_config`]: the smallest page multiple that holds the
/// largest record (`max_message_size` + 64 KiB + the 8-byte BLANK).
pub const FIXTURE_SEGMENT_SIZE: usize = 68 * 1024;
/// ConsumeQueue units per file in [`fixture_config`] (80-byte files, so queues span files).
pub const FIXTURE_CQ_UNITS_PER_FILE: usize = 4;
/// Hash slots per IndexFile in [`fixture_config`] (few, so keys share chains).
pub const FIXTURE_INDEX_SLOTS: u32 = 4;
/// Entries per IndexFile in [`fixture_config`].
pub const FIXTURE_INDEX_ENTRIES: u32 = 32;
/// Name of the base image's IndexFile (any 17 digits are a valid name).
pub const FIXTURE_INDEX_NAME: &str = "20231114221320000";
/// Store timestamp of the base image's first record; record `i` is stored at `+ i` seconds.
pub const FIXTURE_T0_MS: i64 = 1_700_000_000_000;
/// The 130-byte topic of the base image's V2 record (V1 holds at most 127 bytes).
pub const LONG_TOPIC: &str = "long-topic-with-a-name-of-one-hundred-and-thirty-bytes-so-the-record-needs-magic-v2-and-a-two-byte-topic-length-field-xxxxxxxxxx";

/// The configuration every fixture and fuzz store uses: tiny files so that an image of three
/// CommitLog segments, multi-file ConsumeQueues and an IndexFile stays around 200 KiB, no
/// background preallocation, Async flush.
pub fn fixture_config() -> StoreConfig {
    StoreConfig {
        commitlog_segment_size: FIXTURE_SEGMENT_SIZE,
        consume_queue_units_per_file: FIXTURE_CQ_UNITS_PER_FILE,
        index_hash_slots: FIXTURE_INDEX_SLOTS,
        index_max_entries: FIXTURE_INDEX_ENTRIES,
        max_message_size: 2048,
        preallocate_next_segment: false,
        flush_mode: FlushMode::Async,
        ..StoreConfig::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rocketstore::format::checkpoint_layout::{Checkpoint, Trailer};

    #[test]
    fn mutations_round_trip_through_their_encoding() {
        let muts = vec![
            Mutation::FlipBit {
                file: 3,
                offset: 77,
                bit: 5,
            },
            Mutation::SetBytes {
                file: 1,
                offset: 9,
                bytes: vec![1, 2, 3],
            },
            Mutation::Truncate { file: 2, len: 100 },
            Mutation::Extend { file: 0, by: 300 },
            Mutation::Zero {
                file: 4,
                offset: 8,
                len: 16,
            },
            Mutation::Delete { file: 7 },
            Mutation::AddFile {
                dir: 1,
                name: 2,
                len: 3,
                fill: 4,
            },
            Mutation::AddDir { dir: 0, name: 1 },
            Mutation::CreateAbort,
            Mutation::set_record_field(5, RecordField::PhysicalOffset, 42),
            Mutation::ResealRecord { record: 5 },
            Mutation::set_checkpoint_field(CheckpointField::DurableOffset, 7),
            Mutation::ResealCheckpoint,
        ];
        assert_eq!(decode_mutations(&encode_mutations(&muts)), muts);
        let ops = vec![
            ModelOp::Put {
                topic: 1,
                queue: 2,
                len: 300,
                tag: 1,
                keys: 3,
            },
            ModelOp::Get {
                topic: 0,
                queue: 1,
                offset: 2,
                max: 3,
            },
            ModelOp::Flush,
            ModelOp::Reopen,
            ModelOp::Close,
            ModelOp::Crash,
            ModelOp::ReadAt { pick: 1 },
            ModelOp::Query { pick: 2 },
        ];
        assert_eq!(decode_model_ops(&encode_model_ops(&ops)), ops);
    }

    #[test]
    fn resealing_a_checkpoint_matches_the_layout() {
        let cp = Checkpoint {
            trailer: Some(Trailer::default()),
            ..Checkpoint::default()
        };
        let mut b = cp.encode();
        let crc_at = rocketstore::format::checkpoint_layout::POS_CRC;
        b[crc_at..crc_at + 4].fill(0);
        rocketstore::format::checkpoint_layout::reseal(&mut b);
        assert_eq!(b, cp.encode());
    }
}
