//! Bad input: every typed error, and the store exactly as it was afterwards.

mod common;

use std::collections::BTreeMap;
use std::path::Path;

use common::*;
use rocketstore::{Error, Message, Store, StoreConfig, MAX_TOPIC_LEN};

/// What must not change when a call is rejected.
#[derive(Debug, PartialEq, Eq)]
struct State {
    topics: Vec<String>,
    queues: BTreeMap<(String, i32), (u64, u64)>,
    commitlog_max: u64,
    /// `topic/queue` directories under `consumequeue/`.
    consumequeue_dirs: Vec<String>,
}

fn state(store: &Store) -> State {
    let mut queues = BTreeMap::new();
    for t in store.topics() {
        for q in store.queue_ids(&t) {
            queues.insert(
                (t.clone(), q),
                (
                    store.min_offset(&t, q).unwrap(),
                    store.max_offset(&t, q).unwrap(),
                ),
            );
        }
    }
    let cq = store.root().join("consumequeue");
    State {
        topics: store.topics(),
        queues,
        commitlog_max: store.commitlog_max_offset(),
        consumequeue_dirs: if cq.exists() {
            list_dir(&cq)
                .into_iter()
                .flat_map(|(t, _)| {
                    list_dir(&cq.join(&t))
                        .into_iter()
                        .map(move |(q, _)| format!("{t}/{q}"))
                })
                .collect()
        } else {
            Vec::new()
        },
    }
}

/// A store holding a few messages in `good/0` and `good/1`.
fn seeded(dir: &Path) -> Store {
    let store = Store::open(dir, tiny()).unwrap();
    for i in 0..5u8 {
        store
            .put(&Message::new("good", (i % 2) as i32, &[i; 10]).with_keys(["k"]))
            .unwrap();
    }
    store
}

/// Runs `bad`, checks the error with `check`, then that nothing changed and that the next good
/// put lands exactly where it would have before.
fn rejected<T: std::fmt::Debug>(
    store: &Store,
    bad: impl FnOnce(&Store) -> rocketstore::Result<T>,
    check: impl FnOnce(&Error) -> bool,
) {
    let before = state(store);
    let err = bad(store).expect_err("the call must be rejected");
    assert!(check(&err), "unexpected error: {err:?}");
    assert_eq!(state(store), before, "store changed after {err:?}");
    let q = store.max_offset("good", 1).unwrap();
    let end = store.commitlog_max_offset();
    let m = Message::new("good", 1, b"next");
    let r = store.put(&m).unwrap();
    assert_eq!(r.queue_offset, q, "after {err:?}");
    assert_eq!(r.commitlog_offset, expected_offset(end, r.wrote_bytes, SEG));
}

#[test]
fn body_larger_than_max_message_size_is_message_too_large() {
    let dir = tempfile::tempdir().unwrap();
    let store = seeded(dir.path());
    let big = vec![0u8; MAX_BODY + 1];
    rejected(
        &store,
        |s| s.put(&Message::new("good", 1, &big)),
        |e| {
            matches!(e, Error::MessageTooLarge { len, limit }
                if *len == MAX_BODY + 1 && *limit == MAX_BODY)
        },
    );
    // Exactly the limit is fine.
    let max = vec![0u8; MAX_BODY];
    let r = store.put(&Message::new("good", 0, &max)).unwrap();
    assert_eq!(
        store
            .read_at(r.commitlog_offset)
            .unwrap()
            .view()
            .body()
            .len(),
        MAX_BODY
    );
}

#[test]
fn batch_whose_bodies_add_up_past_max_message_size_is_message_too_large() {
    let dir = tempfile::tempdir().unwrap();
    let store = seeded(dir.path());
    let half = vec![0u8; MAX_BODY / 2];
    let one = [1u8];
    rejected(
        &store,
        |s| {
            s.put_batch(&[
                Message::new("good", 1, &half),
                Message::new("good", 1, &half),
                Message::new("good", 1, &one),
            ])
        },
        |e| {
            matches!(e, Error::MessageTooLarge { len, limit }
                if *len == MAX_BODY + 1 && *limit == MAX_BODY)
        },
    );
}

#[test]
fn properties_over_32767_bytes_are_properties_too_large() {
    let dir = tempfile::tempdir().unwrap();
    let store = seeded(dir.path());
    // "p" 0x01 value 0x02 + the 20-byte CRC property must fit in 32767 bytes: value <= 32744.
    let fits = "v".repeat(32744);
    let r = store
        .put(&Message::new("good", 0, b"x").with_property("p", fits.as_str()))
        .unwrap();
    assert_eq!(
        store
            .read_at(r.commitlog_offset)
            .unwrap()
            .view()
            .property("p"),
        Some(fits.as_str())
    );
    let too_long = "v".repeat(32745);
    rejected(
        &store,
        |s| s.put(&Message::new("good", 1, b"x").with_property("p", too_long.as_str())),
        |e| matches!(e, Error::PropertiesTooLarge { len, limit } if *len == 32768 && *limit == 32767),
    );
    let many_keys: Vec<String> = (0..4000).map(|i| format!("key{i:05}")).collect();
    rejected(
        &store,
        |s| s.put(&Message::new("good", 1, b"x").with_keys(many_keys.iter().map(String::as_str))),
        |e| matches!(e, Error::PropertiesTooLarge { .. }),
    );
}

#[test]
fn bad_topics_are_invalid_topic() {
    let dir = tempfile::tempdir().unwrap();
    let store = seeded(dir.path());
    let long = "t".repeat(MAX_TOPIC_LEN + 1);
    for topic in [
        "",
        "a b",
        "a/b",
        "..",
        "a.b",
        "tópico",
        "a\0b",
        "a:b",
        long.as_str(),
    ] {
        rejected(
            &store,
            |s| s.put(&Message::new(topic, 0, b"x")),
            |e| matches!(e, Error::InvalidTopic { topic: t, .. } if t == topic),
        );
        rejected(
            &store,
            |s| s.put_batch(&[Message::new(topic, 0, b"x")]),
            |e| matches!(e, Error::InvalidTopic { .. }),
        );
    }
    // 255 bytes and every allowed character class are fine.
    let max = "T".repeat(MAX_TOPIC_LEN);
    store.put(&Message::new(max.as_str(), 0, b"x")).unwrap();
    store.put(&Message::new("aZ09_-%|", 0, b"x")).unwrap();
    assert_eq!(store.max_offset(&max, 0).unwrap(), 1);
    assert!(store.topics().contains(&max));
}

#[test]
fn queue_ids_outside_0_to_max_queues_are_queue_id_out_of_range() {
    let dir = tempfile::tempdir().unwrap();
    let store = seeded(dir.path());
    let limit = tiny().max_queues_per_topic;
    for q in [-1, i32::MIN, limit as i32, i32::MAX] {
        rejected(
            &store,
            |s| s.put(&Message::new("good", q, b"x")),
            |e| matches!(e, Error::QueueIdOutOfRange { queue_id, limit: l } if *queue_id == q && *l == limit),
        );
    }
    store
        .put(&Message::new("good", limit as i32 - 1, b"x"))
        .unwrap();
}

#[test]
fn keys_that_are_empty_or_contain_a_space_or_separator_are_invalid_property() {
    let dir = tempfile::tempdir().unwrap();
    let store = seeded(dir.path());
    for keys in [
        vec!["a b"],
        vec![""],
        vec!["ok", ""],
        vec!["ok", "x y"],
        vec!["a\u{1}b"],
        vec!["a\u{2}b"],
    ] {
        rejected(
            &store,
            |s| s.put(&Message::new("good", 0, b"x").with_keys(keys.clone())),
            |e| matches!(e, Error::InvalidProperty { name, .. } if name == "KEYS"),
        );
    }
}

#[test]
fn reserved_or_malformed_properties_are_invalid_property() {
    let dir = tempfile::tempdir().unwrap();
    let store = seeded(dir.path());
    for (name, value) in [
        ("TAGS", "v"),
        ("KEYS", "v"),
        ("__CRC32#", "0000000000"),
        ("p", "a\u{1}b"),
        ("p", "a\u{2}b"),
        ("p\u{1}", "v"),
        ("p\u{2}q", "v"),
        ("", "v"),
        ("p", ""),
    ] {
        rejected(
            &store,
            |s| s.put(&Message::new("good", 0, b"x").with_property(name, value)),
            |e| matches!(e, Error::InvalidProperty { name: n, .. } if n == name),
        );
    }
    rejected(
        &store,
        |s| s.put(&Message::new("good", 0, b"x").with_tags("a\u{1}b")),
        |e| matches!(e, Error::InvalidProperty { name, .. } if name == "TAGS"),
    );
    // One bad message anywhere in a batch rejects the whole batch.
    rejected(
        &store,
        |s| {
            s.put_batch(&[
                Message::new("good", 1, b"a"),
                Message::new("good", 1, b"b").with_property("p", "\u{2}"),
            ])
        },
        |e| matches!(e, Error::InvalidProperty { .. }),
    );
    // UNIQ_KEY is an ordinary (indexed) user property.
    store
        .put(&Message::new("good", 0, b"x").with_property("UNIQ_KEY", "u1"))
        .unwrap();
}

#[test]
fn empty_batch_is_invalid_argument() {
    let dir = tempfile::tempdir().unwrap();
    let store = seeded(dir.path());
    rejected(
        &store,
        |s| s.put_batch(&[]),
        |e| matches!(e, Error::InvalidArgument(_)),
    );
}

#[test]
fn every_call_after_close_is_closed() {
    let dir = tempfile::tempdir().unwrap();
    let store = seeded(dir.path());
    let end = store.commitlog_max_offset();
    store.close().unwrap();
    let closed = |r: Result<(), Error>, what: &str| {
        assert!(matches!(r, Err(Error::Closed)), "{what}: {r:?}");
    };
    let m = Message::new("good", 0, b"x");
    closed(store.put(&m).map(drop), "put");
    closed(
        store.put_batch(std::slice::from_ref(&m)).map(drop),
        "put_batch",
    );
    closed(store.put_batch(&[]).map(drop), "empty put_batch");
    closed(store.get("good", 0, 0, 1).map(drop), "get");
    closed(
        store
            .get_with("good", 0, 0, &rocketstore::GetOptions::default())
            .map(drop),
        "get_with",
    );
    closed(store.read_at(0).map(drop), "read_at");
    closed(store.min_offset("good", 0).map(drop), "min_offset");
    closed(store.max_offset("good", 0).map(drop), "max_offset");
    closed(
        store.offset_for_timestamp("good", 0, 0).map(drop),
        "offset_for_timestamp",
    );
    closed(
        store
            .offset_for_timestamp_with("good", 0, 0, rocketstore::TimeBoundary::Upper)
            .map(drop),
        "offset_for_timestamp_with",
    );
    closed(
        store.query_by_key("good", "k", 0, i64::MAX, 10).map(drop),
        "query_by_key",
    );
    closed(store.flush(), "flush");
    closed(store.close(), "second close");
    drop(store);
    // Nothing was written by the rejected calls.
    let store = Store::open(dir.path(), tiny()).unwrap();
    assert_eq!(store.commitlog_max_offset(), end);
    assert_eq!(store.max_offset("good", 0).unwrap(), 3);
}

#[test]
fn second_open_of_an_open_root_is_locked_until_the_first_closes() {
    let dir = tempfile::tempdir().unwrap();
    let store = seeded(dir.path());
    match Store::open(dir.path(), tiny()) {
        Err(Error::Locked { path }) => assert_eq!(path, dir.path()),
        Err(e) => panic!("expected Locked, got {e:?}"),
        Ok(_) => panic!("expected Locked, the second open succeeded"),
    }
    // The failed open did not disturb the running store.
    assert_eq!(
        store
            .put(&Message::new("good", 0, b"x"))
            .unwrap()
            .queue_offset,
        3
    );
    store.close().unwrap();
    let again = Store::open(dir.path(), tiny()).unwrap();
    assert_eq!(again.max_offset("good", 0).unwrap(), 4);
    // Dropping (rather than closing) also releases the lock.
    drop(again);
    let third = Store::open(dir.path(), tiny()).unwrap();
    assert_eq!(third.max_offset("good", 0).unwrap(), 4);
}

fn invalid_config_field(config: StoreConfig) -> &'static str {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("never-created");
    match Store::open(&root, config) {
        Err(Error::InvalidConfig { field, .. }) => {
            assert!(!root.exists(), "a rejected config must not create the root");
            field
        }
        Err(e) => panic!("expected InvalidConfig, got {e:?}"),
        Ok(_) => panic!("expected InvalidConfig, the open succeeded"),
    }
}

#[test]
fn invalid_config_names_the_field_and_creates_nothing() {
    assert_eq!(
        invalid_config_field(StoreConfig {
            commitlog_segment_size: 100,
            ..tiny()
        }),
        "commitlog_segment_size"
    );
    // 4 KiB + 64 KiB + 8 does not fit a 68 KiB segment.
    assert_eq!(
        invalid_config_field(StoreConfig {
            commitlog_segment_size: 68 * 1024,
            ..tiny()
        }),
        "commitlog_segment_size"
    );
    assert_eq!(
        invalid_config_field(StoreConfig {
            max_message_size: 0,
            ..tiny()
        }),
        "max_message_size"
    );
    assert_eq!(
        invalid_config_field(StoreConfig {
            consume_queue_units_per_file: 0,
            ..tiny()
        }),
        "consume_queue_units_per_file"
    );
    assert_eq!(
        invalid_config_field(StoreConfig {
            index_hash_slots: 0,
            ..tiny()
        }),
        "index_hash_slots"
    );
    assert_eq!(
        invalid_config_field(StoreConfig {
            index_max_entries: 1,
            ..tiny()
        }),
        "index_max_entries"
    );
    assert_eq!(
        invalid_config_field(StoreConfig {
            max_queues_per_topic: 0,
            ..tiny()
        }),
        "max_queues_per_topic"
    );
    // The exact minimum segment size is accepted.
    let dir = tempfile::tempdir().unwrap();
    Store::open(
        dir.path(),
        StoreConfig {
            commitlog_segment_size: MAX_BODY + 64 * 1024 + 8,
            ..tiny()
        },
    )
    .unwrap();
}

#[test]
fn a_root_that_is_a_regular_file_is_a_layout_error() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("file");
    std::fs::write(&root, b"not a store").unwrap();
    match Store::open(&root, tiny()) {
        Err(Error::Layout { path, .. }) => assert_eq!(path, root),
        Err(e) => panic!("expected Layout, got {e:?}"),
        Ok(_) => panic!("expected Layout, the open succeeded"),
    }
    assert_eq!(std::fs::read(&root).unwrap(), b"not a store");
}

fn layout_error_path(root: &Path, config: StoreConfig) -> std::path::PathBuf {
    match Store::open(root, config) {
        Err(Error::Layout { path, .. }) => path,
        Err(e) => panic!("expected Layout, got {e:?}"),
        Ok(_) => panic!("expected Layout, the open succeeded"),
    }
}

/// A closed store with at least three full CommitLog segments.
fn closed_multi_segment_store(dir: &Path) -> Snapshot {
    let store = Store::open(dir, tiny()).unwrap();
    let body = vec![3u8; 3000];
    while store.commitlog_max_offset() < 3 * SEG + 100 {
        store.put(&Message::new("good", 0, &body)).unwrap();
    }
    let snap = snapshot(&store);
    store.close().unwrap();
    snap
}

#[test]
fn a_foreign_file_in_commitlog_is_a_layout_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let snap = closed_multi_segment_store(dir.path());
    let foo = dir.path().join("commitlog").join("foo");
    std::fs::write(&foo, b"x").unwrap();
    assert_eq!(layout_error_path(dir.path(), tiny()), foo);
    // Failing to open left the root untouched and unlocked: remove the file and all is there.
    std::fs::remove_file(&foo).unwrap();
    let store = Store::open(dir.path(), tiny()).unwrap();
    assert_eq!(snapshot(&store), snap);
}

#[test]
fn a_commitlog_segment_of_the_wrong_length_is_a_layout_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let snap = closed_multi_segment_store(dir.path());
    let seg1 = dir.path().join("commitlog").join(format!("{:020}", SEG));
    let original = std::fs::read(&seg1).unwrap();
    for len in [SEG - 1, SEG + 1, 0] {
        std::fs::OpenOptions::new()
            .write(true)
            .open(&seg1)
            .unwrap()
            .set_len(len)
            .unwrap();
        assert_eq!(layout_error_path(dir.path(), tiny()), seg1, "length {len}");
        assert!(seg1.exists(), "a bad non-last segment must not be deleted");
    }
    std::fs::write(&seg1, &original).unwrap();
    let store = Store::open(dir.path(), tiny()).unwrap();
    assert_eq!(snapshot(&store), snap);
}

/// Segments cannot change size: the root's recorded geometry and the configuration's are both
/// named (tests/geometry.rs has the rest of the geometry rules).
#[test]
fn reopening_with_another_segment_size_is_a_geometry_mismatch() {
    let dir = tempfile::tempdir().unwrap();
    let snap = closed_multi_segment_store(dir.path());
    match Store::open(
        dir.path(),
        StoreConfig {
            commitlog_segment_size: 2 * SEG as usize,
            ..tiny()
        },
    ) {
        Err(Error::GeometryMismatch {
            field,
            configured,
            found,
            path,
        }) => {
            assert_eq!(field, "commitlog_segment_size");
            assert_eq!((configured, found), (2 * SEG, SEG));
            assert_eq!(path, dir.path().join("rocketstore-geometry"));
        }
        other => panic!("expected GeometryMismatch, got {:?}", other.map(|_| ())),
    }
    let store = Store::open(dir.path(), tiny()).unwrap();
    assert_eq!(snapshot(&store), snap);
}
