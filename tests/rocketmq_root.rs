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
