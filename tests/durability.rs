//! Durability: what a put acknowledges survives close/reopen byte for byte; Async flush makes
//! everything durable; the recovered content does not depend on `abort`, the checkpoint or the
//! derived data (ConsumeQueue, IndexFile), and recovering a recovered store changes no byte
//! (TESTING.md §3 oracle items 1, 2, 4 and 5).

#[path = "support/crash.rs"]
mod crash;

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::Path;
use std::sync::Arc;

use crash::*;
use rocketstore::{FlushMode, Message, PutStatus, RecoveryReport, Store};
use rocketstore_test_support::copy_tree;

/// Sync puts from `threads` threads, `per_thread` each: every put is Ok and durable when it
/// returns; after close and reopen every acknowledged record is present, byte-identical.
fn sync_puts_are_durable_when_acknowledged(threads: usize, per_thread: usize) {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("store");
    let store = Arc::new(Store::open(&root, crash_config(FlushMode::Sync)).unwrap());
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let store = store.clone();
            std::thread::spawn(move || {
                let mut acks = Vec::with_capacity(per_thread);
                for i in 0..per_thread {
                    let seq = (t * per_thread + i) as u64;
                    let body = seq_body(seq);
                    let topic = if seq.is_multiple_of(3) {
                        "durA"
                    } else {
                        "durB"
                    };
                    let queue = (seq % 5) as i32;
                    let keys = vec![format!("K-{seq}")];
                    let msg = Message::new(topic, queue, &body)
                        .with_tags(if seq.is_multiple_of(2) { "even" } else { "odd" })
                        .with_keys(keys.clone());
                    let r = store.put(&msg).unwrap();
                    assert_eq!(r.status, PutStatus::Ok, "sync put {seq}");
                    let end = r.commitlog_offset + r.wrote_bytes as u64;
                    let durable = store.durable_offset();
                    assert!(
                        durable >= end,
                        "put {seq} returned with durable_offset {durable} < record end {end}"
                    );
                    let m = store.read_at(r.commitlog_offset).unwrap();
                    assert_eq!(m.view().as_bytes().len(), r.wrote_bytes);
                    assert_eq!(m.view().body(), &body[..]);
                    acks.push(Acked {
                        topic: topic.into(),
                        queue,
                        queue_offset: r.queue_offset,
                        offset: r.commitlog_offset,
                        bytes: m.view().as_bytes().to_vec(),
                        keys,
                    });
                }
                acks
            })
        })
        .collect();
    let mut acks: Vec<Acked> = handles
        .into_iter()
        .flat_map(|h| h.join().unwrap())
        .collect();
    acks.sort_by_key(|a| a.offset);
    let end = acks.last().unwrap().end();
    assert!(store.durable_offset() >= end);
    // Records do not overlap, and queue offsets per queue are exactly 0..n.
    for w in acks.windows(2) {
        assert!(w[0].end() <= w[1].offset, "records overlap");
    }
    let mut per_queue: BTreeMap<(String, i32), BTreeSet<u64>> = BTreeMap::new();
    for a in &acks {
        assert!(per_queue
            .entry((a.topic.clone(), a.queue))
            .or_default()
            .insert(a.queue_offset));
    }
    for (k, offs) in &per_queue {
        assert_eq!(
            offs.iter().copied().collect::<Vec<_>>(),
            (0..offs.len() as u64).collect::<Vec<_>>(),
            "{k:?}"
        );
    }
    store.close().unwrap();
    drop(store);
    assert!(
        segments_on_disk(&root).len() >= 2,
        "the run should roll CommitLog segments"
    );

    let store = Store::open(&root, crash_config(FlushMode::Sync)).unwrap();
    let r = store.recovery_report();
    assert!(r.clean_shutdown, "{r:?}");
    assert_eq!(r.end_offset, store.commitlog_max_offset());
    assert!(store.commitlog_max_offset() >= end);
    for a in &acks {
        assert_acked_present(&store, a);
        let hits = store
            .query_by_key(&a.topic, &a.keys[0], 0, i64::MAX, 4)
            .unwrap();
        assert_eq!(hits.len(), 1, "key {}", a.keys[0]);
        assert_eq!(hits[0].view().commitlog_offset(), a.offset);
    }
    for ((t, q), offs) in &per_queue {
        assert_eq!(store.max_offset(t, *q).unwrap(), offs.len() as u64);
        assert_eq!(store.min_offset(t, *q).unwrap(), 0);
    }
    store.close().unwrap();
}

#[test]
fn sync_puts_1_thread_durable_when_acknowledged() {
    sync_puts_are_durable_when_acknowledged(1, 1000);
}

#[test]
fn sync_puts_4_threads_durable_when_acknowledged() {
    sync_puts_are_durable_when_acknowledged(4, 300);
}

#[test]
fn sync_puts_16_threads_durable_when_acknowledged() {
    sync_puts_are_durable_when_acknowledged(16, 64);
}

#[test]
fn sync_puts_64_threads_durable_when_acknowledged() {
    sync_puts_are_durable_when_acknowledged(64, 20);
}

#[test]
fn sync_batches_are_durable_when_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), crash_config(FlushMode::Sync)).unwrap();
    let mut acks = Vec::new();
    for b in 0..60u64 {
        let bodies: Vec<Vec<u8>> = (0..5).map(|i| seq_body(b * 5 + i)).collect();
        let msgs: Vec<Message<'_>> = bodies
            .iter()
            .map(|body| Message::new("batch", (b % 3) as i32, body))
            .collect();
        let r = store.put_batch(&msgs).unwrap();
        assert_eq!(r.status, PutStatus::Ok);
        assert_eq!(r.message_count, 5);
        let end = r.commitlog_offset + r.wrote_bytes as u64;
        assert!(store.durable_offset() >= end);
        let g = store
            .get("batch", (b % 3) as i32, r.queue_offset, 5)
            .unwrap();
        assert_eq!(g.len(), 5);
        let mut off = r.commitlog_offset;
        for (i, m) in g.messages().enumerate() {
            assert_eq!(m.commitlog_offset(), off, "batch members are contiguous");
            assert_eq!(m.body(), &bodies[i][..]);
            off += m.stored_size() as u64;
            acks.push(Acked {
                topic: "batch".into(),
                queue: (b % 3) as i32,
                queue_offset: m.queue_offset(),
                offset: m.commitlog_offset(),
                bytes: m.as_bytes().to_vec(),
                keys: vec![],
            });
        }
        assert_eq!(off, end, "wrote_bytes covers the whole batch");
    }
    store.close().unwrap();
    drop(store);
    let store = Store::open(dir.path(), crash_config(FlushMode::Sync)).unwrap();
    for a in &acks {
        assert_acked_present(&store, a);
    }
}

#[test]
fn async_flush_makes_everything_durable() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), crash_config(FlushMode::Async)).unwrap();
    assert_eq!(store.durable_offset(), store.commitlog_max_offset());
    let mut acks = Vec::new();
    let mut seq = 0u64;
    for round in 0..6 {
        for _ in 0..(50 + round * 60) {
            let body = seq_body(seq);
            acks.push(put_acked(
                &store,
                &Message::new("async", (seq % 4) as i32, &body),
                &[],
            ));
            seq += 1;
            assert!(store.durable_offset() <= store.commitlog_max_offset());
        }
        store.flush().unwrap();
        assert_eq!(
            store.durable_offset(),
            store.commitlog_max_offset(),
            "after flush in round {round}"
        );
        assert_eq!(store.commitlog_max_offset(), acks.last().unwrap().end());
    }
    // Idle flush is a no-op that keeps the equality.
    store.flush().unwrap();
    assert_eq!(store.durable_offset(), store.commitlog_max_offset());
    let max = store.commitlog_max_offset();
    store.close().unwrap();
    drop(store);
    assert!(segments_on_disk(dir.path()).len() >= 2);
    let store = Store::open(dir.path(), crash_config(FlushMode::Async)).unwrap();
    assert_eq!(store.commitlog_max_offset(), max);
    assert_eq!(store.durable_offset(), max);
    for a in &acks {
        assert_acked_present(&store, a);
    }
}

const TOPICS: [&str; 2] = ["alpha", "beta"];

/// Writes a store with two topics, several queues, tags, unique and shared keys; closes it.
/// Returns the (topic, key) pairs to query.
fn write_reference_store(root: &Path) -> Vec<(String, String)> {
    let store = Store::open(root, crash_config(FlushMode::Async)).unwrap();
    let mut keys = BTreeSet::new();
    for seq in 0..1800u64 {
        let topic = TOPICS[(seq % 2) as usize];
        let body = seq_body(seq);
        let uniq = format!("U{seq}");
        let shared = format!("G{}", seq % 7);
        let msg = Message::new(topic, ((seq / 2) % 6) as i32, &body)
            .with_tags(["a", "b", "c"][(seq % 3) as usize])
            .with_keys([uniq.clone(), shared.clone()]);
        store.put(&msg).unwrap();
        if seq % 37 == 0 {
            keys.insert((topic.to_string(), uniq));
        }
        keys.insert((topic.to_string(), shared));
    }
    keys.insert(("alpha".into(), "absent-key".into()));
    store.close().unwrap();
    keys.into_iter().collect()
}

/// Damage applied to a copy of a cleanly closed store.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Variant {
    AsIs,
    EmptyAbort,
    GarbageCheckpoint,
    NoConsumeQueue,
    NoIndex,
    NoCheckpoint,
}

fn damage(root: &Path, v: Variant) {
    match v {
        Variant::AsIs => {}
        Variant::EmptyAbort => fs::write(root.join("abort"), b"").unwrap(),
        Variant::GarbageCheckpoint => {
            let len = fs::metadata(root.join("checkpoint")).unwrap().len() as usize;
            fs::write(root.join("checkpoint"), CrashRng::new(7).bytes(len)).unwrap()
        }
        Variant::NoConsumeQueue => fs::remove_dir_all(root.join("consumequeue")).unwrap(),
        Variant::NoIndex => fs::remove_dir_all(root.join("index")).unwrap(),
        Variant::NoCheckpoint => fs::remove_file(root.join("checkpoint")).unwrap(),
    }
}

/// What each variant's report must say, per the field docs of [`RecoveryReport`]:
/// `clean_shutdown` = no `abort` and an intact checkpoint; `checkpoint_trusted` = intact trailer.
fn check_report(v: Variant, r: &RecoveryReport, end: u64) {
    let ctx = format!("{v:?}: {r:?}");
    assert_eq!(r.end_offset, end, "{ctx}");
    assert_eq!(r.truncated_at, None, "{ctx}");
    assert_eq!(r.segments_removed, 0, "{ctx}");
    let (clean, trusted) = match v {
        Variant::AsIs | Variant::NoConsumeQueue | Variant::NoIndex => (true, true),
        Variant::EmptyAbort => (false, true),
        Variant::GarbageCheckpoint | Variant::NoCheckpoint => (false, false),
    };
    assert_eq!(r.clean_shutdown, clean, "clean_shutdown {ctx}");
    assert_eq!(r.checkpoint_trusted, trusted, "checkpoint_trusted {ctx}");
    if v == Variant::AsIs {
        assert!(!r.derived_rebuilt, "{ctx}");
        assert_eq!(r.records_dispatched, 0, "{ctx}");
        assert_eq!(r.scanned_from, end, "{ctx}");
    } else if v == Variant::EmptyAbort {
        // Unclean, but the checkpoint vouches for all derived data: nothing to re-dispatch;
        // the segment holding the durable offset is validated again.
        assert!(!r.derived_rebuilt, "{ctx}");
        assert_eq!(r.records_dispatched, 0, "{ctx}");
        assert_eq!(r.dispatched_from, end, "{ctx}");
        assert_eq!(r.scanned_from, end - end % CRASH_SEG, "{ctx}");
    } else {
        assert_eq!(r.scanned_from, 0, "{ctx}");
        assert!(r.records_dispatched > 0, "{ctx}");
    }
}

const VARIANTS: [Variant; 6] = [
    Variant::AsIs,
    Variant::EmptyAbort,
    Variant::GarbageCheckpoint,
    Variant::NoConsumeQueue,
    Variant::NoIndex,
    Variant::NoCheckpoint,
];

/// Recovers one damaged copy and compares it with the undamaged one; returns the report.
fn recover_variant(
    base: &Path,
    v: Variant,
    keys: &[(String, String)],
    want: &StoreImage,
) -> RecoveryReport {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join(format!("{v:?}"));
    copy_tree(base, &root).unwrap();
    damage(&root, v);
    let store = Store::open(&root, crash_config(FlushMode::Async))
        .unwrap_or_else(|e| panic!("{v:?}: open failed: {e}"));
    let report = store.recovery_report().clone();
    let got = store_image(&store, keys);
    store.close().unwrap();
    drop(store);
    assert_same_image(want, &got, &format!("{v:?}"));
    check_report(v, &report, want.commitlog_max);
    report
}

#[test]
fn abort_checkpoint_and_derived_data_do_not_change_recovered_content() {
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().join("base");
    let keys = write_reference_store(&base);
    let want = {
        let s = Store::open(&base, crash_config(FlushMode::Async)).unwrap();
        let img = store_image(&s, &keys);
        s.close().unwrap();
        img
    };
    assert_eq!(want.queues.len(), 12);
    assert!(want.queues.values().all(|(_, max, _)| *max == 150));
    assert!(want.keys.values().filter(|h| !h.is_empty()).count() > 10);
    for v in VARIANTS {
        if matches!(v, Variant::NoConsumeQueue | Variant::NoIndex) {
            continue; // see the separate tests below
        }
        let r = recover_variant(&base, v, &keys, &want);
        // An abort alone is an unclean shutdown whose checkpoint vouches for all derived data.
        if !matches!(v, Variant::AsIs | Variant::EmptyAbort) {
            assert!(r.derived_rebuilt, "{v:?}: {r:?}");
        }
    }
}

/// A clean shutdown whose `consumequeue/` was deleted afterwards must still serve every queue.
#[test]
fn missing_consumequeue_after_clean_shutdown_is_rebuilt() {
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().join("base");
    let keys = write_reference_store(&base);
    let want = {
        let s = Store::open(&base, crash_config(FlushMode::Async)).unwrap();
        let img = store_image(&s, &keys);
        s.close().unwrap();
        img
    };
    let r = recover_variant(&base, Variant::NoConsumeQueue, &keys, &want);
    assert!(r.derived_rebuilt, "{r:?}");
}

/// A clean shutdown whose `index/` was deleted afterwards must still answer key queries.
#[test]
fn missing_index_after_clean_shutdown_is_rebuilt() {
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().join("base");
    let keys = write_reference_store(&base);
    let want = {
        let s = Store::open(&base, crash_config(FlushMode::Async)).unwrap();
        let img = store_image(&s, &keys);
        s.close().unwrap();
        img
    };
    let r = recover_variant(&base, Variant::NoIndex, &keys, &want);
    assert!(r.derived_rebuilt, "{r:?}");
}

/// Recovering a recovered store changes no CommitLog or ConsumeQueue byte, and a rebuilt
/// ConsumeQueue is byte-identical to the one written at put time.
#[test]
fn recovery_is_idempotent_and_rebuilds_identical_consume_queues() {
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().join("base");
    write_reference_store(&base);
    let original_cq = snapshot_files(&base, &["consumequeue"]);
    let original_cl = snapshot_files(&base, &["commitlog"]);
    assert!(original_cq.len() > 12, "ConsumeQueue files should roll");
    for v in VARIANTS {
        let root = dir.path().join(format!("{v:?}"));
        copy_tree(&base, &root).unwrap();
        damage(&root, v);
        Store::open(&root, crash_config(FlushMode::Async))
            .unwrap()
            .close()
            .unwrap();
        let once = snapshot_files(&root, &["commitlog", "consumequeue"]);
        assert_same_files(
            &original_cl,
            &snapshot_files(&root, &["commitlog"]),
            &format!("{v:?}: CommitLog after recovery"),
        );
        assert_same_files(
            &original_cq,
            &snapshot_files(&root, &["consumequeue"]),
            &format!("{v:?}: rebuilt ConsumeQueue"),
        );
        for round in 0..2 {
            let s = Store::open(&root, crash_config(FlushMode::Async)).unwrap();
            assert!(s.recovery_report().clean_shutdown);
            assert!(!s.recovery_report().derived_rebuilt);
            s.close().unwrap();
            drop(s);
            assert_same_files(
                &once,
                &snapshot_files(&root, &["commitlog", "consumequeue"]),
                &format!("{v:?}: reopen {round}"),
            );
        }
        // A crash right after the recovery (abort left behind again) recovers to the same bytes.
        create_abort(&root);
        Store::open(&root, crash_config(FlushMode::Async))
            .unwrap()
            .close()
            .unwrap();
        assert_same_files(
            &once,
            &snapshot_files(&root, &["commitlog", "consumequeue"]),
            &format!("{v:?}: second unclean recovery"),
        );
    }
}

/// Reference store plus its image, for the derived-data damage tests.
fn reference(dir: &Path) -> (std::path::PathBuf, Vec<(String, String)>, StoreImage) {
    let base = dir.join("base");
    let keys = write_reference_store(&base);
    let s = Store::open(&base, crash_config(FlushMode::Async)).unwrap();
    let img = store_image(&s, &keys);
    s.close().unwrap();
    (base, keys, img)
}

type Surgery = fn(&Path);

/// Applies each damage to a copy of a cleanly closed store (no `abort`), reopens and expects
/// the undamaged content.
fn derived_damage_is_repaired(cases: &[(&str, Surgery)]) {
    let dir = tempfile::tempdir().unwrap();
    let (base, keys, want) = reference(dir.path());
    for (name, surgery) in cases {
        let root = dir.path().join(name.replace(' ', "_"));
        copy_tree(&base, &root).unwrap();
        surgery(&root);
        let store = Store::open(&root, crash_config(FlushMode::Async))
            .unwrap_or_else(|e| panic!("{name}: open failed: {e}"));
        let report = store.recovery_report().clone();
        let got =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| store_image(&store, &keys)))
                .unwrap_or_else(|_| {
                    panic!("{name}: reading the recovered store failed; {report:?}")
                });
        assert_same_image(&want, &got, &format!("{name} ({report:?})"));
        store.close().unwrap();
    }
}

/// `consumequeue/alpha/0` holds 150 units: file 0 (100 units) and file 2000 (50 units).
fn cq_file(root: &Path, start: u64) -> std::path::PathBuf {
    root.join("consumequeue/alpha/0")
        .join(format!("{start:020}"))
}

/// A ConsumeQueue file of the wrong length is a layout problem of derived data: rebuilt.
#[test]
fn consume_queue_file_of_wrong_length_is_rebuilt() {
    derived_damage_is_repaired(&[
        ("short cq file", |r| {
            fs::OpenOptions::new()
                .write(true)
                .open(cq_file(r, 2000))
                .unwrap()
                .set_len(1990)
                .unwrap()
        }),
        ("long cq file", |r| {
            fs::OpenOptions::new()
                .write(true)
                .open(cq_file(r, 0))
                .unwrap()
                .set_len(2001)
                .unwrap()
        }),
    ]);
}

/// ConsumeQueue files deleted or zeroed after a clean shutdown are noticed (the checkpoint
/// records the shape of the derived data) and rebuilt.
#[test]
fn consume_queue_damage_after_clean_shutdown_is_rebuilt() {
    derived_damage_is_repaired(&[
        ("deleted last cq file", |r| {
            fs::remove_file(cq_file(r, 2000)).unwrap()
        }),
        ("zeroed cq units", |r| {
            zero_at(&cq_file(r, 2000), 0, 50 * 20)
        }),
        ("zeroed last cq unit", |r| {
            zero_at(&cq_file(r, 2000), 49 * 20, 20)
        }),
        ("deleted queue dir", |r| {
            fs::remove_dir_all(r.join("consumequeue/alpha/0")).unwrap()
        }),
    ]);
}

#[test]
#[ignore = "KNOWN LIMITATION: a garbage unit in the middle of a ConsumeQueue file after a clean \
            shutdown is not detected at open (the checkpoint summary only catches deleted, \
            truncated or zeroed units); get() returns Error::Corruption for that unit and the \
            next open rebuilds (see garbage_consume_queue_unit_seen_by_a_read_is_rebuilt_at_the_next_open)"]
fn garbage_consume_queue_unit_after_clean_shutdown_is_rebuilt() {
    derived_damage_is_repaired(&[("garbage cq unit", |r| {
        write_at(&cq_file(r, 0), 200, &[0x11; 20])
    })]);
}

/// What the store does about the limitation above: the read that meets the damaged unit fails
/// with a typed error, and the next open rebuilds derived data, after which everything reads.
#[test]
fn garbage_consume_queue_unit_seen_by_a_read_is_rebuilt_at_the_next_open() {
    let dir = tempfile::tempdir().unwrap();
    let (base, keys, want) = reference(dir.path());
    let root = dir.path().join("garbage");
    copy_tree(&base, &root).unwrap();
    write_at(&cq_file(&root, 0), 200, &[0x11; 20]);
    let store = Store::open(&root, crash_config(FlushMode::Async)).unwrap();
    match store.get("alpha", 0, 10, 1) {
        Err(rocketstore::Error::Corruption { path, offset, .. }) => {
            assert!(path.ends_with("consumequeue/alpha/0"), "{path:?}");
            assert_eq!(offset, 10);
        }
        other => panic!("expected Corruption, got {other:?}"),
    }
    store.close().unwrap();
    let store = Store::open(&root, crash_config(FlushMode::Async)).unwrap();
    assert!(store.recovery_report().derived_rebuilt);
    assert_same_image(&want, &store_image(&store, &keys), "after the rebuild");
    store.close().unwrap();
}

#[test]
fn index_file_deleted_after_clean_shutdown_is_rebuilt() {
    derived_damage_is_repaired(&[("deleted index file", |r| {
        let mut files: Vec<_> = fs::read_dir(r.join("index"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        files.sort();
        assert!(files.len() > 1);
        fs::remove_file(&files[0]).unwrap();
    })]);
}

/// A unit whose CommitLog offset lands inside another record (no record starts there): the read
/// fails with a typed error and the next open rebuilds derived data, so the damage cannot
/// outlive one restart.
#[test]
fn consume_queue_unit_pointing_inside_a_record_is_rebuilt_at_the_next_open() {
    let dir = tempfile::tempdir().unwrap();
    let (base, keys, want) = reference(dir.path());
    let root = dir.path().join("inside");
    copy_tree(&base, &root).unwrap();
    let cq = cq_file(&root, 0);
    let unit = std::fs::read(&cq).unwrap()[200..220].to_vec();
    let offset = i64::from_be_bytes(unit[..8].try_into().unwrap());
    write_at(&cq, 200, &(offset + 8).to_be_bytes());
    let store = Store::open(&root, crash_config(FlushMode::Async)).unwrap();
    match store.get("alpha", 0, 10, 1) {
        Err(rocketstore::Error::CorruptRecord { .. } | rocketstore::Error::Corruption { .. }) => {}
        other => panic!("expected a corruption error, got {other:?}"),
    }
    store.close().unwrap();
    let store = Store::open(&root, crash_config(FlushMode::Async)).unwrap();
    assert!(store.recovery_report().derived_rebuilt);
    assert_same_image(&want, &store_image(&store, &keys), "after the rebuild");
    store.close().unwrap();
}
