//! Incremental recovery after an unclean shutdown (`src/recovery.rs`): with an intact
//! checkpoint, ConsumeQueue and IndexFile keep what the checkpoint vouches for and only the
//! records written after it are re-dispatched, and the result is exactly what a rebuild from the
//! whole CommitLog gives. Damaged kept data is detected and rebuilt.
//!
//! An unclean shutdown is produced two ways: on the real file system by putting back the
//! checkpoint taken before the last writes plus the `abort` marker (a crash in which every page
//! reached the disk but the later checkpoint did not), and on the simulated disk by crashing it
//! in every mode (KILL, DROP, TORN, META) after Sync puts that followed a checkpoint.

#[path = "support/crash.rs"]
mod crash;

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crash::{assert_same_image, create_abort, store_image, StoreImage};
use rocketstore::internals::{CrashMode, SimVfs, Vfs};
use rocketstore::{FlushMode, Message, RecoveryReport, Store, StoreConfig};
use rocketstore_test_support::copy_tree;

const TOPICS: [&str; 2] = ["orders", "audit"];
const QUEUES: i32 = 3;
const CQ_UNITS: usize = 50;
const INDEX_ENTRIES: u32 = 64;
/// Offset of `derived_durable_offset` in the checkpoint (trailer at 3968, field at +24).
const CP_DERIVED_DURABLE: usize = 3968 + 24;

/// Tiny files: 128 KiB CommitLog segments, 50-unit ConsumeQueue files, 63-entry index files.
fn config(mode: FlushMode) -> StoreConfig {
    StoreConfig {
        commitlog_segment_size: 128 * 1024,
        max_message_size: 4096,
        consume_queue_units_per_file: CQ_UNITS,
        index_hash_slots: 16,
        index_max_entries: INDEX_ENTRIES,
        max_queues_per_topic: 8,
        flush_mode: mode,
        cleaner_enabled: false,
        ..StoreConfig::small()
    }
}

/// Message `n`: topic, queue, one to three keys (so a record's keys straddle index rolls).
fn message(n: u64) -> (String, i32, Vec<String>, Vec<u8>) {
    let topic = TOPICS[(n % 2) as usize].to_string();
    let queue = ((n / 2) % QUEUES as u64) as i32;
    let keys = (0..1 + n % 3).map(|k| format!("K{n}-{k}")).collect();
    let body = format!("body {n} {}", "x".repeat((n * 37 % 900) as usize)).into_bytes();
    (topic, queue, keys, body)
}

fn put_range(store: &Store, range: std::ops::Range<u64>) {
    for n in range {
        let (topic, queue, keys, body) = message(n);
        store
            .put(
                &Message::new(&topic, queue, &body)
                    .with_tags(if n % 2 == 0 { "even" } else { "odd" })
                    .with_keys(keys.iter().map(String::as_str)),
            )
            .unwrap();
    }
}

fn all_keys(n: u64) -> Vec<(String, String)> {
    (0..n)
        .flat_map(|i| {
            let (topic, _, keys, _) = message(i);
            keys.into_iter().map(move |k| (topic.clone(), k))
        })
        .collect()
}

fn derived_durable(checkpoint: &[u8]) -> u64 {
    u64::from_be_bytes(
        checkpoint[CP_DERIVED_DURABLE..CP_DERIVED_DURABLE + 8]
            .try_into()
            .unwrap(),
    )
}

/// A store root on the real file system with `before` records under a checkpoint and `after`
/// more, closed cleanly; returns the checkpoint taken after the first `before` records.
fn build(root: &Path, before: u64, after: u64) -> Vec<u8> {
    let store = Store::open(root, config(FlushMode::Async)).unwrap();
    put_range(&store, 0..before);
    store.flush().unwrap();
    let checkpoint = fs::read(root.join("checkpoint")).unwrap();
    put_range(&store, before..before + after);
    store.close().unwrap();
    checkpoint
}

/// Opens `root` and returns its recovery report and image.
fn open_image(root: &Path, keys: &[(String, String)]) -> (RecoveryReport, StoreImage) {
    let store = Store::open(root, config(FlushMode::Async)).unwrap();
    let report = store.recovery_report().clone();
    let image = store_image(&store, keys);
    store.close().unwrap();
    (report, image)
}

/// The reference: the same root with ConsumeQueue and IndexFile deleted, rebuilt at open.
fn rebuilt_reference(root: &Path, keys: &[(String, String)]) -> StoreImage {
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("ref");
    copy_tree(root, &copy).unwrap();
    fs::remove_dir_all(copy.join("consumequeue")).unwrap();
    fs::remove_dir_all(copy.join("index")).unwrap();
    let (report, image) = open_image(&copy, keys);
    assert!(report.derived_rebuilt, "{report:?}");
    image
}

/// Every file under `root/<sub>`, by name (index files by position: their names are times).
fn files_under(root: &Path, sub: &str) -> BTreeMap<PathBuf, Vec<u8>> {
    let snap = crash::snapshot_files(root, &[sub]);
    if sub != "index" {
        return snap;
    }
    snap.into_values()
        .enumerate()
        .map(|(i, b)| (PathBuf::from(format!("index#{i}")), b))
        .collect()
}

const BEFORE: u64 = 700;
const AFTER: u64 = 260;

/// Several segments, queue files and index rolls on each side of the checkpoint.
fn crashed_root(dir: &Path) -> (PathBuf, u64) {
    let root = dir.join("store");
    let checkpoint = build(&root, BEFORE, AFTER);
    let segments = fs::read_dir(root.join("commitlog")).unwrap().count();
    let index_files = fs::read_dir(root.join("index")).unwrap().count();
    assert!(segments >= 4, "{segments} segments");
    assert!(index_files >= 10, "{index_files} index files");
    // The crash: the later checkpoint never reached the disk, the abort marker is still there.
    fs::write(root.join("checkpoint"), &checkpoint).unwrap();
    create_abort(&root);
    (root, derived_durable(&checkpoint))
}

#[test]
fn unclean_open_redispatches_only_what_follows_the_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let (root, dd) = crashed_root(dir.path());
    let keys = all_keys(BEFORE + AFTER);
    let want = rebuilt_reference(&root, &keys);

    let (report, got) = open_image(&root, &keys);
    assert!(
        !report.clean_shutdown && report.checkpoint_trusted,
        "{report:?}"
    );
    assert!(!report.derived_rebuilt, "{report:?}");
    assert_eq!(report.derived_fallback, None, "{report:?}");
    assert_eq!(report.dispatched_from, dd, "{report:?}");
    assert_eq!(report.records_dispatched, AFTER, "{report:?}");
    assert_same_image(&want, &got, "incremental vs rebuilt");
    for (t, k) in &keys {
        assert_eq!(got.keys[&(t.clone(), k.clone())].len(), 1, "{t}#{k}");
    }

    // Byte for byte what a rebuild writes (index files compared by position).
    let reference = dir.path().join("reference");
    copy_tree(&root, &reference).unwrap();
    fs::remove_dir_all(reference.join("consumequeue")).unwrap();
    fs::remove_dir_all(reference.join("index")).unwrap();
    open_image(&reference, &keys);
    for sub in ["consumequeue", "index"] {
        crash::assert_same_files(&files_under(&reference, sub), &files_under(&root, sub), sub);
    }
}

#[test]
fn a_second_unclean_open_after_incremental_recovery_changes_no_byte() {
    let dir = tempfile::tempdir().unwrap();
    let (root, _) = crashed_root(dir.path());
    let keys = all_keys(BEFORE + AFTER);
    let store = Store::open(&root, config(FlushMode::Async)).unwrap();
    assert!(!store.recovery_report().derived_rebuilt);
    drop(store);
    // Crashed again right after the open (the open's own checkpoint is the last one).
    let snapshot = crash::snapshot_files(&root, &["commitlog", "consumequeue", "index"]);
    let checkpoint = fs::read(root.join("checkpoint")).unwrap();
    create_abort(&root);
    let (report, image) = open_image(&root, &keys);
    assert!(!report.derived_rebuilt, "{report:?}");
    assert_eq!(report.records_dispatched, 0, "{report:?}");
    assert_eq!(fs::read(root.join("checkpoint")).unwrap(), checkpoint);
    crash::assert_same_files(
        &snapshot,
        &crash::snapshot_files(&root, &["commitlog", "consumequeue", "index"]),
        "second recovery",
    );
    assert_eq!(image.keys.len(), keys.len());
}

/// The file and position of unit `n` of a queue.
fn unit_pos(root: &Path, topic: &str, queue: i32, n: u64) -> (PathBuf, u64) {
    let byte = n * 20;
    let file_bytes = (CQ_UNITS * 20) as u64;
    let start = byte - byte % file_bytes;
    (
        root.join("consumequeue")
            .join(topic)
            .join(queue.to_string())
            .join(format!("{start:020}")),
        byte - start,
    )
}

#[test]
fn a_damaged_kept_unit_is_detected_and_everything_rebuilt() {
    let dir = tempfile::tempdir().unwrap();
    let (root, _) = crashed_root(dir.path());
    let keys = all_keys(BEFORE + AFTER);
    let want = rebuilt_reference(&root, &keys);
    // The last unit of orders:1 the checkpoint vouches for: point it at the record before.
    let below: u64 = (0..BEFORE)
        .filter(|&n| {
            let (t, q, _, _) = message(n);
            t == "orders" && q == 1
        })
        .count() as u64;
    let (path, pos) = unit_pos(&root, "orders", 1, below - 1);
    let mut bytes = fs::read(&path).unwrap();
    let prev = bytes[pos as usize - 20..pos as usize].to_vec();
    bytes[pos as usize..pos as usize + 12].copy_from_slice(&prev[..12]);
    fs::write(&path, bytes).unwrap();

    let (report, got) = open_image(&root, &keys);
    assert!(report.derived_rebuilt, "{report:?}");
    let why = report.derived_fallback.clone().expect("fallback reason");
    assert!(why.contains("orders:1"), "{why}");
    assert_eq!(report.records_dispatched, BEFORE + AFTER, "{report:?}");
    assert_same_image(&want, &got, "after a damaged unit");
}

#[test]
fn a_damaged_kept_unit_inside_a_queue_is_detected_by_the_walk() {
    // Units before the last kept one, of both topics, checked record by record by the walk
    // (which reads them through a per-queue run of the file it last read).
    for (topic, queue, back) in [("orders", 1, 2u64), ("audit", 2, 3), ("orders", 0, 4)] {
        let dir = tempfile::tempdir().unwrap();
        let (root, _) = crashed_root(dir.path());
        let keys = all_keys(BEFORE + AFTER);
        let want = rebuilt_reference(&root, &keys);
        let below: u64 = (0..BEFORE)
            .filter(|&n| {
                let (t, q, _, _) = message(n);
                t == topic && q == queue
            })
            .count() as u64;
        // Point unit `below - back` at the record of the unit before it.
        let n = below - back;
        let (path, pos) = unit_pos(&root, topic, queue, n);
        let (prev_path, prev_pos) = unit_pos(&root, topic, queue, n - 1);
        let prev =
            fs::read(&prev_path).unwrap()[prev_pos as usize..prev_pos as usize + 12].to_vec();
        let mut bytes = fs::read(&path).unwrap();
        bytes[pos as usize..pos as usize + 12].copy_from_slice(&prev);
        fs::write(&path, bytes).unwrap();

        let (report, got) = open_image(&root, &keys);
        assert!(report.derived_rebuilt, "{topic}:{queue}: {report:?}");
        let why = report.derived_fallback.clone().expect("fallback reason");
        assert!(
            why.contains(&format!("{topic}:{queue} offset {n}"))
                && why.contains("is not where the kept ConsumeQueue points"),
            "{why}"
        );
        assert_same_image(&want, &got, "after a damaged unit inside a queue");
    }
}

/// The index files, oldest first.
fn index_files(root: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = fs::read_dir(root.join("index"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    v.sort();
    v
}

#[test]
fn a_damaged_kept_index_header_is_detected_and_the_content_complete() {
    // (byte flipped, field): the low byte of each.
    for (byte, what) in [
        (31usize, "end phy offset"),
        (7, "begin timestamp"),
        (39, "count"),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let (root, _) = crashed_root(dir.path());
        let keys = all_keys(BEFORE + AFTER);
        let want = rebuilt_reference(&root, &keys);
        // The second file is full and indexes only records below the checkpoint.
        let path = index_files(&root)[1].clone();
        let mut bytes = fs::read(&path).unwrap();
        bytes[byte] ^= 0x10;
        fs::write(&path, bytes).unwrap();

        let (report, got) = open_image(&root, &keys);
        assert!(
            report.derived_rebuilt && report.derived_fallback.is_some(),
            "{what}: damage not noticed: {report:?}"
        );
        assert_same_image(&want, &got, what);
        for (t, k) in &keys {
            assert_eq!(
                got.keys[&(t.clone(), k.clone())].len(),
                1,
                "{what}: {t}#{k}"
            );
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Power loss on the simulated disk

const SIM_ROOT: &str = "/store";

fn sim_open(sim: &SimVfs) -> rocketstore::Result<Store> {
    Store::open_with_vfs(
        SIM_ROOT,
        config(FlushMode::Sync),
        Arc::new(sim.clone()) as Arc<dyn Vfs>,
    )
}

#[test]
fn power_loss_after_a_checkpoint_keeps_the_derived_data_before_it() {
    let keys = all_keys(BEFORE + AFTER);
    for seed in 1..=3u64 {
        for mode in CrashMode::ALL {
            let sim = SimVfs::new(seed);
            sim.create_dir_all(Path::new(SIM_ROOT)).unwrap();
            sim.sync_dir(Path::new("/")).unwrap();
            let store = sim_open(&sim).unwrap();
            put_range(&store, 0..BEFORE);
            store.flush().unwrap();
            // Sync puts: durable in the CommitLog, derived data not synced.
            put_range(&store, BEFORE..BEFORE + AFTER);
            sim.crash_now();
            drop(store);
            let ctx = format!("seed {seed} {mode:?}");

            let reference = sim.crash(mode, seed);
            reference
                .remove_dir_all(&Path::new(SIM_ROOT).join("consumequeue"))
                .unwrap();
            reference
                .remove_dir_all(&Path::new(SIM_ROOT).join("index"))
                .unwrap();
            let store = sim_open(&reference).unwrap();
            assert!(store.recovery_report().derived_rebuilt, "{ctx}");
            let want = store_image(&store, &keys);
            store.close().unwrap();

            let disk = sim.crash(mode, seed);
            let store = sim_open(&disk).unwrap();
            let report = store.recovery_report().clone();
            let got = store_image(&store, &keys);
            assert!(!report.derived_rebuilt, "{ctx}: {report:?}");
            assert_eq!(report.records_dispatched, AFTER, "{ctx}: {report:?}");
            assert_same_image(&want, &got, &ctx);
            for (t, k) in &keys {
                assert_eq!(got.keys[&(t.clone(), k.clone())].len(), 1, "{ctx}: {t}#{k}");
            }
            store.close().unwrap();
        }
    }
}

/// Puts of every property shape the put path dispatches from its own encoded fields (it does not
/// decode the record back): tags absent, empty, ASCII and not; keys ASCII and not; a UNIQ_KEY set
/// twice (the last one counts, as for a reader of the record); batches. A rebuild from the
/// CommitLog, which decodes every record, must write the same ConsumeQueue and IndexFile bytes.
#[test]
fn live_dispatch_writes_what_a_rebuild_writes_for_every_property_shape() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("store");
    let store = Store::open(&root, config(FlushMode::Async)).unwrap();
    let tags = ["", "even", "τag-ü", "TagA"];
    let bodies: Vec<Vec<u8>> = (0..300).map(|n| format!("body {n}").into_bytes()).collect();
    let shaped = |n: u64, keys: &'static [&'static str]| {
        let body = &bodies[n as usize];
        let mut m = Message::new(TOPICS[(n % 2) as usize], (n % 3) as i32, body);
        if !n.is_multiple_of(5) {
            m = m.with_tags(tags[(n % 4) as usize]);
        }
        if n.is_multiple_of(3) {
            m = m
                .with_property("UNIQ_KEY", format!("first-{n}"))
                .with_property("color", "blue")
                .with_property("UNIQ_KEY", format!("last-{n}"));
        }
        m.with_keys(keys.iter().copied())
    };
    for n in 0..300u64 {
        let keys: &'static [&'static str] = match n % 4 {
            0 => &[],
            1 => &["ascii"],
            2 => &["κλειδί", "ключ", "鍵"],
            _ => &["a", "b", "c", "d"],
        };
        if n.is_multiple_of(7) {
            let batch: Vec<Message<'_>> = (0..3).map(|_| shaped(n, keys)).collect();
            store.put_batch(&batch).unwrap();
        } else {
            store.put(&shaped(n, keys)).unwrap();
        }
    }
    let end = store.commitlog_max_offset();
    let found = store
        .query_by_key(TOPICS[1], "last-3", 0, i64::MAX, 64)
        .unwrap();
    assert_eq!(found.len(), 1, "the last UNIQ_KEY is indexed");
    let stale = store
        .query_by_key(TOPICS[1], "first-3", 0, i64::MAX, 64)
        .unwrap();
    assert!(stale.is_empty(), "an overridden UNIQ_KEY is not indexed");
    store.close().unwrap();

    let reference = dir.path().join("reference");
    copy_tree(&root, &reference).unwrap();
    fs::remove_dir_all(reference.join("consumequeue")).unwrap();
    fs::remove_dir_all(reference.join("index")).unwrap();
    let rebuilt = Store::open(&reference, config(FlushMode::Async)).unwrap();
    let report = rebuilt.recovery_report().clone();
    assert!(report.derived_rebuilt, "{report:?}");
    assert_eq!(rebuilt.commitlog_max_offset(), end);
    rebuilt.close().unwrap();
    for sub in ["consumequeue", "index"] {
        crash::assert_same_files(&files_under(&reference, sub), &files_under(&root, sub), sub);
    }
}
