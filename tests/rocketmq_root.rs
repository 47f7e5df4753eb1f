//! A store root written by RocketMQ itself (records without the `__CRC32#` property, a
//! checkpoint without our trailer, maybe an `abort` file) opened with the default
//! configuration: nothing is cut, reads verify what the records carry, and new records (with
//! the property) follow in the same segment and survive a crash.

mod common;

use std::path::Path;

use common::*;
use rocketstore::{GetOptions, GetStatus, Message, Store, StoreConfig};

/// Writes `n` records the way RocketMQ 4.x does (no CRC property) and leaves a checkpoint with
/// only RocketMQ's fields; with `crashed`, an `abort` file as after a broker crash.
fn rocketmq_root(root: &Path, n: u32, crashed: bool) {
    let store = Store::open(
        root,
        StoreConfig {
            append_crc_property: false,
            cleaner_enabled: false,
            ..tiny()
        },
    )
    .unwrap();
    for i in 0..n {
        store
            .put(&Message::new("legacy", (i % 2) as i32, &body(i)).with_keys([format!("k{i}")]))
            .unwrap();
    }
    store.close().unwrap();
    // RocketMQ's checkpoint is 4 KiB with its fields up front and zeros after: drop our trailer.
    let cp = root.join("checkpoint");
    let mut bytes = std::fs::read(&cp).unwrap();
    bytes[64..].fill(0);
    std::fs::write(&cp, bytes).unwrap();
    if crashed {
        std::fs::write(root.join("abort"), b"").unwrap();
    }
}

/// This crate's defaults (CRC property written and checked), in the root's geometry.
fn defaults() -> StoreConfig {
    StoreConfig {
        cleaner_enabled: false,
        ..tiny()
    }
}

fn body(i: u32) -> Vec<u8> {
    format!("legacy message {i} ").repeat(10).into_bytes()
}

fn assert_all(store: &Store, n: u32) {
    let opts = GetOptions {
        verify_crc: true,
        ..GetOptions::new(64)
    };
    let mut seen = 0;
    for q in 0..2 {
        let mut next = 0;
        loop {
            let g = store.get_with("legacy", q, next, &opts).unwrap();
            if g.status() != GetStatus::Found {
                break;
            }
            for m in g.messages() {
                let i = 2 * m.queue_offset() as u32 + q as u32;
                assert_eq!(m.body(), body(i).as_slice());
                seen += 1;
            }
            next = g.next_offset();
        }
    }
    assert_eq!(seen, n);
}

#[test]
fn a_rocketmq_root_opened_with_defaults_keeps_every_record() {
    for crashed in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        rocketmq_root(dir.path(), 900, crashed);
        let segments = list_dir(&dir.path().join("commitlog")).len();
        assert!(segments >= 2, "records span segments");
        let store = Store::open(dir.path(), defaults()).unwrap();
        let r = store.recovery_report().clone();
        assert_eq!(r.truncated_at, None, "crashed={crashed}: {r:?}");
        assert_eq!(store.commitlog_max_offset(), r.end_offset);
        assert_all(&store, 900);
        let hits = store.query_by_key("legacy", "k7", 0, i64::MAX, 4).unwrap();
        assert_eq!(hits.len(), 1);
        // New records carry the CRC property and follow in the same segment.
        for i in 900..1000 {
            store
                .put(&Message::new("legacy", (i % 2) as i32, &body(i)))
                .unwrap();
        }
        store.close().unwrap();
        // As after a crash: the next open validates the whole mixed segment, cutting nothing.
        std::fs::write(dir.path().join("abort"), b"").unwrap();
        let store = Store::open(dir.path(), defaults()).unwrap();
        assert!(!store.recovery_report().clean_shutdown);
        assert_eq!(store.recovery_report().truncated_at, None);
        assert_all(&store, 1000);
        store.close().unwrap();
    }
}

/// Writes RocketMQ's three timestamps (the first 24 bytes) of `root/checkpoint` as a broker's
/// flush does, leaving everything after them alone.
fn rewrite_rocketmq_timestamps(root: &Path, ts: i64) {
    let cp = root.join("checkpoint");
    let mut bytes = std::fs::read(&cp).unwrap();
    for field in 0..3 {
        bytes[8 * field..8 * field + 8].copy_from_slice(&ts.to_be_bytes());
    }
    std::fs::write(&cp, bytes).unwrap();
}

/// Issue 19: RocketMQ rewrites the checkpoint's first 24 bytes on every flush. Our trailer
/// survives it; a timestamp newer than the trailer recorded means a broker wrote since, so the
/// trailer is trusted for what it covers and only what came after is scanned and re-dispatched.
#[test]
fn a_broker_rewriting_the_checkpoint_timestamps_keeps_the_trailer_trusted() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), defaults()).unwrap();
    for i in 0..900 {
        store
            .put(&Message::new("legacy", (i % 2) as i32, &body(i)).with_keys([format!("k{i}")]))
            .unwrap();
    }
    store.close().unwrap();
    let end = store.commitlog_max_offset();
    drop(store);
    let ours = std::fs::read(dir.path().join("checkpoint")).unwrap();
    let last_ts = i64::from_be_bytes(ours[..8].try_into().unwrap());
    assert!(end > 2 * SEG, "the log spans segments");

    // Rewritten but no newer (a broker that wrote nothing): still a clean open.
    rewrite_rocketmq_timestamps(dir.path(), last_ts);
    let store = Store::open(dir.path(), defaults()).unwrap();
    let r = store.recovery_report().clone();
    assert!(r.checkpoint_trusted && r.clean_shutdown, "{r:?}");
    assert!(!r.written_since_checkpoint, "{r:?}");
    assert_eq!((r.scanned_from, r.scanned_bytes), (end, 0), "{r:?}");
    store.close().unwrap();
    drop(store);

    // A broker appends 100 records (no CRC property, units and index keys of its own) and
    // rewrites the timestamps; our trailer from before is left as it was.
    let before = std::fs::read(dir.path().join("checkpoint")).unwrap();
    let broker = Store::open(
        dir.path(),
        StoreConfig {
            append_crc_property: false,
            ..defaults()
        },
    )
    .unwrap();
    for i in 900..1000 {
        broker
            .put(&Message::new("legacy", (i % 2) as i32, &body(i)).with_keys([format!("k{i}")]))
            .unwrap();
    }
    broker.close().unwrap();
    drop(broker);
    std::fs::write(dir.path().join("checkpoint"), &before).unwrap();
    rewrite_rocketmq_timestamps(dir.path(), common::now_ms() + 1);

    let store = Store::open(dir.path(), defaults()).unwrap();
    let r = store.recovery_report().clone();
    assert!(
        r.checkpoint_trusted,
        "the trailer survives the rewrite: {r:?}"
    );
    assert!(r.written_since_checkpoint, "{r:?}");
    assert!(!r.clean_shutdown, "{r:?}");
    assert_eq!(r.checkpoint_rejected, None, "{r:?}");
    assert!(
        !r.derived_rebuilt,
        "derived data below the trailer kept: {r:?}"
    );
    assert_eq!(
        r.scanned_from,
        end - end % SEG,
        "only the tail segment: {r:?}"
    );
    assert_eq!(r.dispatched_from, end, "{r:?}");
    assert_eq!(r.records_dispatched, 100, "{r:?}");
    assert_eq!(r.records_without_crc, 100, "{r:?}");
    assert_eq!(r.truncated_at, None, "{r:?}");
    assert_all(&store, 1000);
    assert_eq!(
        store
            .query_by_key("legacy", "k950", 0, i64::MAX, 4)
            .unwrap()
            .len(),
        1
    );
    store.close().unwrap();
    drop(store);
    // Our close wrote a fresh trailer: the next open is clean again.
    let store = Store::open(dir.path(), defaults()).unwrap();
    let r = store.recovery_report();
    assert!(r.clean_shutdown && !r.written_since_checkpoint, "{r:?}");
    store.close().unwrap();
}

/// RocketMQ's `config/` directory (consumer offsets, delay offsets, topics, subscription groups,
/// and the `.bak` copies the broker keeps) is the broker's, not ours: no rocketstore operation
/// may touch it.
#[test]
fn the_brokers_config_directory_survives_every_store_operation() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let store = Store::open(root, defaults()).unwrap();
    for i in 0..900 {
        store
            .put(&Message::new("legacy", (i % 2) as i32, &body(i)))
            .unwrap();
    }
    store.close().unwrap();
    drop(store);
    let config = root.join("config");
    std::fs::create_dir_all(&config).unwrap();
    let files = [
        ("delayOffset.json", "{\n  \"offsetTable\": {}\n}"),
        (
            "consumerOffset.json",
            "{\"offsetTable\":{\"legacy@g\":{0:12,1:7}}}",
        ),
        ("consumerOffset.json.bak", "{\"offsetTable\":{}}"),
        ("topics.json", "{\"topicConfigTable\":{\"legacy\":{}}}"),
        ("subscriptionGroup.json", "{\"subscriptionGroupTable\":{}}"),
    ];
    for (name, text) in files {
        std::fs::write(config.join(name), text).unwrap();
    }
    let intact = |step: &str| {
        let mut names: Vec<_> = list_dir(&config).into_iter().map(|(n, _)| n).collect();
        names.sort();
        let mut want: Vec<_> = files.iter().map(|(n, _)| n.to_string()).collect();
        want.sort();
        assert_eq!(names, want, "{step}: config/ entries");
        for (name, text) in files {
            assert_eq!(
                std::fs::read_to_string(config.join(name)).unwrap(),
                text,
                "{step}: config/{name}"
            );
        }
    };
    let reopen = |step: &str| {
        let store = Store::open(root, defaults()).unwrap_or_else(|e| panic!("{step}: {e}"));
        intact(step);
        store
    };

    let store = reopen("clean open");
    store.close().unwrap();
    drop(store);
    intact("close");

    std::fs::write(root.join("abort"), b"").unwrap();
    let store = reopen("recovery after a crash");
    assert!(!store.recovery_report().clean_shutdown);
    store.close().unwrap();
    drop(store);

    std::fs::remove_dir_all(root.join("consumequeue")).unwrap();
    let store = reopen("rebuild of derived data");
    assert!(store.recovery_report().derived_rebuilt);
    assert_all(&store, 900);

    let cut = store.commitlog_min_offset() + SEG;
    let cleaned = store.delete_before(cut).unwrap();
    intact("retention");
    assert!(store.commitlog_min_offset() >= cut, "{cleaned:?}");
    store.clean_expired_now().unwrap();
    intact("cleaner");
    store.close().unwrap();
    drop(store);
    intact("close after retention");
}

/// Issue 19: a RocketMQ root shut down cleanly (no `abort`, RocketMQ's checkpoint) is recovered
/// as RocketMQ's normal recovery does, but cheaply: ConsumeQueue and IndexFile kept once their
/// tails check out against the log, nothing rebuilt, and the log validated from the oldest of
/// the queues' newest units (here message 1998, the last of queue 0), not from the third
/// segment from the end.
#[test]
fn a_clean_rocketmq_root_validates_its_tail_and_keeps_its_derived_data() {
    let dir = tempfile::tempdir().unwrap();
    rocketmq_root(dir.path(), 2000, false);
    let segments = list_dir(&dir.path().join("commitlog"));
    assert!(segments.len() > 3, "more segments than RocketMQ checks");
    let third_last: u64 = segments[segments.len() - 3].0.parse().unwrap();
    let store = Store::open(dir.path(), defaults()).unwrap();
    let r = store.recovery_report().clone();
    assert!(r.rocketmq_normal_recovery, "{r:?}");
    assert!(!r.checkpoint_trusted && !r.clean_shutdown, "{r:?}");
    assert!(!r.derived_rebuilt, "{r:?}");
    assert_eq!(r.derived_fallback, None, "{r:?}");
    let last_of_queue_0 = store.get("legacy", 0, 999, 1).unwrap();
    let from = last_of_queue_0
        .messages()
        .next()
        .unwrap()
        .commitlog_offset();
    assert!(from > third_last, "{from} {third_last}");
    assert_eq!(
        r.scanned_from, from,
        "from the oldest of the queues' newest units: {r:?}"
    );
    assert_eq!(r.scanned_bytes, r.end_offset - from, "{r:?}");
    assert_eq!(r.truncated_at, None, "{r:?}");
    assert_eq!(r.records_dispatched, 0, "{r:?}");
    assert_all(&store, 2000);
    assert_eq!(
        store
            .query_by_key("legacy", "k1999", 0, i64::MAX, 4)
            .unwrap()
            .len(),
        1
    );
    store.close().unwrap();
}

/// Zeroes unit `n` of queue `queue_id` of topic `legacy`.
fn zero_unit(root: &Path, queue_id: i32, n: u64) {
    let dir = root.join(format!("consumequeue/legacy/{queue_id}"));
    let start = n / CQ_UNITS * CQ_UNITS * 20;
    let path = dir.join(format!("{start:020}"));
    let mut bytes = std::fs::read(&path).unwrap();
    let at = (n % CQ_UNITS) as usize * 20;
    assert_ne!(&bytes[at..at + 20], &[0u8; 20], "unit {n} is there");
    bytes[at..at + 20].fill(0);
    std::fs::write(&path, bytes).unwrap();
}

/// The same open with a ConsumeQueue that does not agree with the log: a lagging tail (the
/// newest unit of a queue missing) is re-dispatched; a unit missing below the ConsumeQueue's
/// end means the derived data cannot be trusted, so it is rebuilt. Nothing is lost either way.
#[test]
fn a_clean_rocketmq_root_whose_consume_queue_disagrees_is_repaired() {
    for (unit, rebuilt) in [(999, false), (990, true)] {
        let dir = tempfile::tempdir().unwrap();
        rocketmq_root(dir.path(), 2000, false);
        zero_unit(dir.path(), 1, unit);
        let store = Store::open(dir.path(), defaults()).unwrap();
        let r = store.recovery_report().clone();
        assert!(r.rocketmq_normal_recovery, "{r:?}");
        assert_eq!(r.derived_rebuilt, rebuilt, "unit {unit}: {r:?}");
        assert_eq!(r.derived_fallback.is_some(), rebuilt, "unit {unit}: {r:?}");
        if !rebuilt {
            assert_eq!(r.records_dispatched, 1, "only the lagging record: {r:?}");
        }
        assert_eq!(r.truncated_at, None, "{r:?}");
        assert_all(&store, 2000);
        store.close().unwrap();
    }
}

/// A clean RocketMQ root whose ConsumeQueue points past the log (the newest unit names a record
/// that is not there) says nothing about where the log ended: the whole log is scanned and the
/// derived data rebuilt, as for a root without a checkpoint, and nothing valid is lost.
#[test]
fn a_clean_rocketmq_root_whose_consume_queue_runs_past_the_log_is_rebuilt() {
    let dir = tempfile::tempdir().unwrap();
    rocketmq_root(dir.path(), 2000, false);
    // Queue 1's newest unit points 4 KiB further, still inside the last segment.
    let path = dir
        .path()
        .join(format!("consumequeue/legacy/1/{:020}", 900 * 20));
    let mut bytes = std::fs::read(&path).unwrap();
    let at = 99 * 20;
    let offset = i64::from_be_bytes(bytes[at..at + 8].try_into().unwrap());
    assert!(offset as u64 % SEG + 4096 < SEG, "stays in its segment");
    bytes[at..at + 8].copy_from_slice(&(offset + 4096).to_be_bytes());
    std::fs::write(&path, bytes).unwrap();
    let store = Store::open(dir.path(), defaults()).unwrap();
    let r = store.recovery_report().clone();
    assert!(!r.rocketmq_normal_recovery, "{r:?}");
    assert!(r.derived_rebuilt, "{r:?}");
    assert_eq!(r.scanned_from, 0, "{r:?}");
    assert_eq!(r.truncated_at, None, "{r:?}");
    assert_all(&store, 2000);
    store.close().unwrap();
}
