//! Replays every committed fuzz corpus file (`fuzz/corpus/<target>/*`) through the same
//! functions the cargo-fuzz targets call (`rocketstore_test_support`), so CI covers the
//! corpora without the fuzzer (TESTING.md §5). Each target must have at least one file.
//!
//! The hand-written seeds are produced by `regenerate_seed_corpora` (deterministic; run with
//! `cargo test --test fuzz_corpus -- --ignored regenerate_seed_corpora`); the `hostile-*` seeds
//! of `recover_image` come from `tests/hostile_files.rs`; other files were found by the fuzzer
//! and kept after `cargo fuzz cmin`.

use std::fs;
use std::path::{Path, PathBuf};

use rocketstore::format::checkpoint_layout::Checkpoint;
use rocketstore::format::cq_unit::CqUnit;
use rocketstore::format::record::{self, EncodeOptions, RecordFields};
use rocketstore_test_support::{
    base_image, encode_model_ops, encode_mutations, CheckpointField, ModelOp, Mutation,
    RecordField, FIXTURE_INDEX_ENTRIES, FIXTURE_INDEX_SLOTS,
};

fn corpus_dir(target: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target)
}

/// Runs `f` on every file of the target's corpus; returns how many ran. A panic names the file.
fn replay(target: &str, f: fn(&[u8])) -> usize {
    let mut files: Vec<PathBuf> = fs::read_dir(corpus_dir(target))
        .unwrap_or_else(|e| panic!("corpus of {target}: {e}"))
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    for path in &files {
        // A fuzzer running in this checkout replaces corpus files as it minimizes them.
        let data = match fs::read(path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            other => other.unwrap(),
        };
        if let Err(panic) = std::panic::catch_unwind(|| f(&data)) {
            eprintln!("{target}: corpus file {} failed", path.display());
            std::panic::resume_unwind(panic);
        }
    }
    files.len()
}

#[test]
fn record_decode_corpus_replays() {
    let n = replay("record_decode", rocketstore_test_support::record_decode);
    assert!(n > 0, "record_decode corpus is empty");
}

#[test]
fn cq_index_decode_corpus_replays() {
    let n = replay("cq_index_decode", rocketstore_test_support::cq_index_decode);
    assert!(n > 0, "cq_index_decode corpus is empty");
}

#[test]
fn recover_image_corpus_replays() {
    let n = replay("recover_image", rocketstore_test_support::recover_image);
    assert!(n > 0, "recover_image corpus is empty");
}

#[test]
fn ops_model_corpus_replays() {
    let n = replay("ops_model", rocketstore_test_support::ops_model);
    assert!(n > 0, "ops_model corpus is empty");
}

/// Regression, found by `ops_model` with 5 ms flusher periods: `Store::flush` and the
/// background flusher both write the checkpoint through `checkpoint.tmp`; unserialised, one
/// rename found the temporary file gone and `flush` failed with ENOENT.
#[test]
fn flush_never_races_the_background_checkpoint() {
    let scratch = rocketstore_test_support::ScratchDir::new("flush-race");
    let config = rocketstore::StoreConfig {
        consume_queue_flush_interval: std::time::Duration::from_millis(1),
        flush_interval: std::time::Duration::from_millis(1),
        ..rocketstore_test_support::fixture_config()
    };
    let store = rocketstore::Store::open(scratch.path().join("s"), config).unwrap();
    for i in 0..3000 {
        store
            .put(&rocketstore::Message::new("alpha", 0, b"x"))
            .unwrap();
        if let Err(e) = store.flush() {
            panic!("flush {i} failed: {e}");
        }
    }
    store.close().unwrap();
}

// --- regressions found by the fuzzer ---------------------------------------------------------

fn hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

/// Runs `recover_image` on `input` in a thread and fails if it does not return within `secs`
/// (a hang would otherwise hang the test run; the thread is left behind).
fn recover_image_within(input: Vec<u8>, secs: u64) {
    let (tx, rx) = std::sync::mpsc::channel();
    let worker = std::thread::spawn(move || {
        rocketstore_test_support::recover_image(&input);
        let _ = tx.send(());
    });
    match rx.recv_timeout(std::time::Duration::from_secs(secs)) {
        Ok(()) => worker.join().unwrap(),
        // The worker panicked (the oracle failed): report its panic.
        Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
            std::panic::resume_unwind(worker.join().unwrap_err())
        }
        Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
            panic!("recover_image did not finish within {secs} s (hang)")
        }
    }
}

/// Regression, found by `recover_image`: an IndexFile entry with a negative `prev` makes the
/// chain walk report the file damaged, and `query_by_key` then scans the CommitLog range the
/// file's header claims. The damaged header claimed a range far past the CommitLog's end, and
/// the scan stepped through it one segment size at a time (`read_at` failing at every step):
/// a key query that never returned.
#[test]
fn key_query_over_a_damaged_index_terminates() {
    recover_image_within(
        hex("010900000200ff965680ffffff15780c0040020300000000efefefefefefefefefef00ef0d0035"),
        60,
    );
}

/// Regression, found by `recover_image`: a stray segment file with a start offset that is not
/// a multiple of the segment size (`commitlog/00000000000000000080`) beside an empty file for
/// the next segment.
#[test]
fn failed_open_leaves_the_commitlog_unchanged() {
    recover_image_within(b"FFFFFFFF%".to_vec(), 60);
}

/// Regression, found by `recover_image`: a directory named `abort` made the open recover (and
/// cut or zero the log's tail), then fail writing the marker: a failed open that had changed
/// the CommitLog. The marker's kind is now checked before recovery.
#[test]
fn abort_directory_is_refused_before_recovery_changes_the_log() {
    recover_image_within(
        hex("0772fbd5006f0000630000003b006565656565650063006565652d002001"),
        60,
    );
}

/// Found by `recover_image`: intact records in a later segment whose first record is damaged.
///
/// Input: no checkpoint; segment 1 zeroed from byte 1525 (its first record torn); a bit
/// flipped in the SYSFLAG of the first record of segment 2 (base record 9); records 10..12 of
/// segment 2 intact. Recovery once cut the log at 69632 (segment 1's start) and deleted
/// segment 2 with its three intact records, reporting neither `cut_after_lost_write` nor a
/// refusal, because a later segment counted as evidence only if its first record was valid.
/// The evidence now includes a chain found by a resync inside a later segment
/// (`evidence::chain_in_later`).
///
/// The second input: a report that said `cut_after_lost_write` named segment 2's first record
/// (139264) as the first valid one after the cut at 0, while segment 1, whose first record is
/// damaged, held intact records from 71817.
#[test]
fn intact_records_after_a_damaged_segment_start_are_evidence() {
    recover_image_within(hex("000d0000002525252504f5020025f5f5f5f5"), 60);
    recover_image_within(
        hex("54b500000000b5b554b5fc0313b9b9b9b9fc03b92148ffffff0a000000532f6a756e6bfffffffffffffffaff"),
        60,
    );
}

// --- seed generator -------------------------------------------------------------------------

fn write_seed(target: &str, name: &str, bytes: &[u8]) {
    let dir = corpus_dir(target);
    fs::create_dir_all(&dir).unwrap();
    fs::write(dir.join(format!("seed-{name}")), bytes).unwrap();
}

fn encoded_record(topic: &str, body: &[u8], props: &[u8], crc_property: bool) -> Vec<u8> {
    let mut buf = Vec::new();
    let fields = RecordFields {
        topic,
        queue_id: 1,
        flag: 0,
        sys_flag: 0,
        born_timestamp: 1_700_000_000_000,
        born_host: "10.1.2.3:4567".parse().unwrap(),
        store_host: "127.0.0.1:10911".parse().unwrap(),
        reconsume_times: 0,
        prepared_transaction_offset: 0,
        body,
        properties: props,
    };
    let opts = EncodeOptions {
        append_crc_property: crc_property,
        max_body_size: 4096,
    };
    let layout = record::encode(&mut buf, &fields, &opts).unwrap();
    record::finalize(&mut buf, &layout, 3, 4096, 1_700_000_000_500);
    buf
}

/// Rewrites the hand-written seeds of every target (the `seed-*` files).
#[test]
#[ignore = "generator: rewrites the seed-* files of fuzz/corpus"]
fn regenerate_seed_corpora() {
    let base = base_image();
    // record_decode: every base record (V1 and V2, IPv4 and IPv6 hosts, with properties and the
    // CRC property), records without properties or CRC property, 4.9-style properties without
    // the trailing separator, BLANK records, the checkpoint, a property text.
    for r in &base.records {
        let seg = &base.image.files[&r.segment_path()];
        let bytes = &seg[r.segment_pos()..r.segment_pos() + r.size];
        write_seed(
            "record_decode",
            &format!("base-record-{:06}", r.offset),
            bytes,
        );
    }
    write_seed(
        "record_decode",
        "v1-no-properties",
        &encoded_record("t", b"body", b"", false),
    );
    write_seed(
        "record_decode",
        "v1-no-properties-crc",
        &encoded_record("t", b"", b"", true),
    );
    write_seed(
        "record_decode",
        "v1-properties-no-trailing-separator",
        &encoded_record("orders", b"x", b"TAGS\x01a\x02KEYS\x01k1 k2", false),
    );
    write_seed(
        "record_decode",
        "v2-no-properties",
        &encoded_record(&"T".repeat(200), b"b", b"", false),
    );
    write_seed("record_decode", "blank", &record::blank_record(8));
    let mut blank_tail = record::blank_record(64).to_vec();
    blank_tail.resize(64, 0);
    write_seed("record_decode", "blank-with-tail", &blank_tail);
    write_seed(
        "record_decode",
        "checkpoint",
        &base.image.files["checkpoint"],
    );
    write_seed(
        "record_decode",
        "properties-text",
        b"TAGS\x01TagA\x02KEYS\x01a b\x02\x01x\x02y\x01\x02__CRC32#\x011234567890\x02",
    );
    // cq_index_decode: ConsumeQueue files, pre-blank units, the IndexFile prefixed with its
    // geometry bytes (slots - 1, entries - 2).
    for (path, bytes) in
        base.image.files.iter().filter(|(p, _)| {
            p.starts_with("consumequeue/alpha") || p.starts_with("consumequeue/beta")
        })
    {
        write_seed(
            "cq_index_decode",
            &format!("cq-{}", path.replace('/', "-")),
            bytes,
        );
    }
    let mut pre = CqUnit::PRE_BLANK.encode().repeat(2);
    pre.extend_from_slice(
        &CqUnit {
            commitlog_offset: 4096,
            size: 120,
            tags_code: -5,
        }
        .encode(),
    );
    write_seed("cq_index_decode", "cq-pre-blank", &pre);
    let mut index = vec![
        (FIXTURE_INDEX_SLOTS - 1) as u8,
        (FIXTURE_INDEX_ENTRIES - 2) as u8,
    ];
    index.extend_from_slice(&base.image.files[&rocketstore_test_support::index_path()]);
    write_seed("cq_index_decode", "index-base", &index);
    // recover_image: the base image as is, after a crash, and a few structured mutations.
    write_seed("recover_image", "base", b"");
    write_seed(
        "recover_image",
        "abort",
        &encode_mutations(&[Mutation::CreateAbort]),
    );
    write_seed(
        "recover_image",
        "no-checkpoint-abort",
        &encode_mutations(&[
            Mutation::Delete {
                file: base.image.selector("checkpoint"),
            },
            Mutation::CreateAbort,
        ]),
    );
    write_seed(
        "recover_image",
        "resealed-store-timestamp",
        &encode_mutations(&[
            Mutation::set_record_field(10, RecordField::StoreTimestamp, 1),
            Mutation::ResealRecord { record: 10 },
            Mutation::CreateAbort,
        ]),
    );
    write_seed(
        "recover_image",
        "checkpoint-derived-durable-zero",
        &encode_mutations(&[
            Mutation::set_checkpoint_field(CheckpointField::DerivedDurableOffset, 0),
            Mutation::ResealCheckpoint,
        ]),
    );
    // ops_model: puts across queues and segment rolls, reads, reopen, close, crash copies.
    let put = |topic, queue, len: u16, tag, keys| ModelOp::Put {
        topic,
        queue,
        len,
        tag,
        keys,
    };
    let get = |topic, queue, offset, max| ModelOp::Get {
        topic,
        queue,
        offset,
        max,
    };
    write_seed(
        "ops_model",
        "put-get",
        &encode_model_ops(&[
            put(0, 0, 10, 1, 3),
            put(0, 0, 0, 0, 0),
            get(0, 0, 0, 5),
            get(0, 0, 2, 1),
        ]),
    );
    let mut roll = Vec::new();
    for i in 0..40u8 {
        roll.push(put(i % 3, i % 2, 2048, i % 4, i % 4));
    }
    roll.extend([
        get(0, 0, 0, 19),
        ModelOp::Reopen,
        get(1, 1, 3, 4),
        ModelOp::Query { pick: 7 },
    ]);
    write_seed(
        "ops_model",
        "segment-rolls-reopen",
        &encode_model_ops(&roll),
    );
    write_seed(
        "ops_model",
        "crash-copy",
        &encode_model_ops(&[
            put(2, 1, 300, 2, 1),
            put(0, 2, 5, 0, 2),
            ModelOp::Crash,
            ModelOp::ReadAt { pick: 1 },
            put(2, 1, 7, 3, 3),
            ModelOp::Flush,
            ModelOp::Crash,
            get(2, 1, 0, 9),
        ]),
    );
    write_seed(
        "ops_model",
        "close-then-calls",
        &encode_model_ops(&[
            put(1, 0, 1, 1, 1),
            ModelOp::Close,
            put(1, 0, 1, 1, 1),
            get(1, 0, 0, 1),
            ModelOp::Flush,
            ModelOp::Close,
            ModelOp::Query { pick: 0 },
            ModelOp::Reopen,
            get(1, 0, 0, 1),
        ]),
    );
    let cp = Checkpoint::decode(&base.image.files["checkpoint"]);
    assert!(cp.trailer.is_some());
}

/// Found by `recover_image` (session 12): a record whose queue offset is so large that its
/// ConsumeQueue byte position overflows (`offset * 20`) reached the late-start path of a full
/// rebuild and panicked on the multiplication; it is now a typed refusal.
#[test]
fn a_queue_offset_past_what_a_consume_queue_addresses_is_refused_not_a_panic() {
    recover_image_within(hex("79323021343138312a2a2a2a2a2ad92a3f3533353739f6"), 60);
}
