//! The three roots Apache RocketMQ 4.9.8 wrote itself (`tests/fixtures/rocketmq-4.9.8/`, whose
//! README says how each was made): each opens with the default configuration plus the geometry
//! its files have, serves every message and key the README lists, takes appends from this crate
//! and opens clean afterwards. Every test works on a copy in a temporary directory.

mod common;

use std::fs;
use std::path::{Path, PathBuf};

use common::list_dir;
use rocketstore::format::cq_unit::CQ_UNIT_SIZE;
use rocketstore::{GetOptions, GetStatus, Message, Store, StoreConfig};
use rocketstore_test_support::copy_tree;

const TOPIC: &str = "compat";
const QUEUES: u32 = 4;
const BODY_LEN: usize = 200;
/// RocketMQ's IndexFile header; each slot is 4 bytes, each entry 20.
const INDEX_HEADER: u64 = 40;
/// Room RocketMQ allows on top of the body for topic and properties.
const RECORD_HEADROOM: usize = 64 * 1024;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/rocketmq-4.9.8")
        .join(name)
}

/// A writable copy of fixture `name` (the committed files stay untouched).
fn copy_fixture(name: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    copy_tree(&fixture(name), dir.path()).unwrap();
    dir
}

/// `StoreConfig::default()` with the geometry the root's files have, as the CLI infers it:
/// segment size from a CommitLog file, units from a ConsumeQueue file, index slots and entries
/// from an IndexFile's length at RocketMQ's 1:4 ratio. The cleaner is off: the fixtures'
/// timestamps age, and time-based retention must not decide a test.
fn config_for(root: &Path) -> StoreConfig {
    let segment = list_dir(&root.join("commitlog"))[0].1 as usize;
    let cq = list_dir(&root.join("consumequeue").join(TOPIC).join("0"))[0].1 as usize;
    let index = list_dir(&root.join("index"))[0].1;
    let slots = (index - INDEX_HEADER) / (4 + 4 * 20);
    assert_eq!(
        INDEX_HEADER + slots * 4 + slots * 4 * 20,
        index,
        "1:4 index"
    );
    StoreConfig {
        commitlog_segment_size: segment,
        consume_queue_units_per_file: cq / CQ_UNIT_SIZE,
        index_hash_slots: slots as u32,
        index_max_entries: slots as u32 * 4,
        max_message_size: StoreConfig::default()
            .max_message_size
            .min(segment - RECORD_HEADROOM - 8),
        cleaner_enabled: false,
        ..StoreConfig::default()
    }
}

fn open(root: &Path) -> Store {
    Store::open(root, config_for(root)).unwrap_or_else(|e| panic!("open {}: {e}", root.display()))
}

/// Message `i`'s body as the fixture README describes it.
fn body(i: u64) -> Vec<u8> {
    let mut b = format!("msg-{i}-").into_bytes();
    while b.len() < BODY_LEN {
        b.push(b'a' + ((i + b.len() as u64) % 26) as u8);
    }
    b
}

fn keys(i: u64) -> Vec<String> {
    let mut k = vec![format!("k{i}")];
    if i.is_multiple_of(10) {
        k.push(format!("m{i}"));
    }
    k
}

/// Message `i` as the fixture pattern makes it (used for this crate's appends).
fn message(i: u64) -> Message<'static> {
    let mut m = Message::from_vec(TOPIC, (i % QUEUES as u64) as i32, body(i))
        .with_keys(keys(i))
        .with_tags(format!("T{}", i % 3));
    if i.is_multiple_of(5) {
        m = m.with_property("prop", format!("v{i}-é"));
    }
    m
}

/// Every message 0..n is served, CRC-checked, with its body, keys, tags and property, at queue
/// `i % 4` offset `i / 4`; every key finds exactly its message.
fn assert_messages(store: &Store, n: u64, ctx: &str) {
    let opts = GetOptions {
        verify_crc: true,
        ..GetOptions::new(64)
    };
    let mut offsets = vec![u64::MAX; n as usize];
    for q in 0..QUEUES {
        let mut next = 0;
        loop {
            let g = store.get_with(TOPIC, q as i32, next, &opts).unwrap();
            if g.status() != GetStatus::Found {
                break;
            }
            for m in g.messages() {
                let i = m.queue_offset() * QUEUES as u64 + q as u64;
                assert!(i < n, "{ctx}: message {i} past {n}");
                assert_eq!(m.body(), body(i).as_slice(), "{ctx}: body of {i}");
                assert_eq!(m.keys().collect::<Vec<_>>(), keys(i), "{ctx}: keys of {i}");
                assert_eq!(m.tags(), Some(format!("T{}", i % 3).as_str()), "{ctx}");
                let prop = i.is_multiple_of(5).then(|| format!("v{i}-é"));
                assert_eq!(m.property("prop"), prop.as_deref(), "{ctx}: prop of {i}");
                offsets[i as usize] = m.commitlog_offset();
            }
            next = g.next_offset();
        }
        assert_eq!(
            store.max_offset(TOPIC, q as i32).unwrap(),
            n / QUEUES as u64,
            "{ctx}: queue {q}"
        );
    }
    let missing: Vec<_> = (0..n)
        .filter(|&i| offsets[i as usize] == u64::MAX)
        .collect();
    assert!(
        missing.is_empty(),
        "{ctx}: {} missing, first {:?}",
        missing.len(),
        missing.first()
    );
    for i in 0..n {
        for key in keys(i) {
            let hits = store.query_by_key(TOPIC, &key, 0, i64::MAX, 4).unwrap();
            let at: Vec<_> = hits.iter().map(|h| h.view().commitlog_offset()).collect();
            assert_eq!(at, [offsets[i as usize]], "{ctx}: key {key}");
        }
    }
}

/// Appends messages `n..n + 100` with this crate's defaults, closes, reopens clean (trailer
/// trusted, nothing cut) and finds all `n + 100`.
fn append_and_reopen(root: &Path, store: Store, n: u64, ctx: &str) {
    for i in n..n + 100 {
        store.put(&message(i)).unwrap();
    }
    store.close().unwrap();
    drop(store);
    let store = open(root);
    let r = store.recovery_report().clone();
    assert!(r.clean_shutdown && r.checkpoint_trusted, "{ctx}: {r:?}");
    // RocketMQ's own config/ (where the fixture has one) is left as the broker wrote it.
    let config = root.join("config/delayOffset.json");
    if config.exists() {
        assert_eq!(
            fs::read_to_string(config).unwrap(),
            "{\n  \"offsetTable\": {}\n}",
            "{ctx}"
        );
    }
    assert_eq!(r.truncated_at, None, "{ctx}: {r:?}");
    assert!(!r.derived_rebuilt, "{ctx}: {r:?}");
    assert_messages(&store, n + 100, &format!("{ctx}, after appends"));
    store.close().unwrap();
}

/// Where the open of a clean RocketMQ root starts validating the log: the oldest of the queues'
/// newest units, i.e. message `n - QUEUES` of `n` written round-robin.
fn oldest_newest_unit(store: &Store, n: u64) -> u64 {
    let i = n - u64::from(QUEUES);
    let got = store
        .get(
            TOPIC,
            (i % u64::from(QUEUES)) as i32,
            i / u64::from(QUEUES),
            1,
        )
        .unwrap();
    let offset = got.messages().next().unwrap().commitlog_offset();
    offset
}

#[test]
fn java_clean_root_serves_every_message_and_key() {
    let dir = copy_fixture("java-clean");
    let store = open(dir.path());
    let r = store.recovery_report().clone();
    assert!(r.rocketmq_normal_recovery, "{r:?}");
    assert!(
        !r.derived_rebuilt,
        "RocketMQ's ConsumeQueue and IndexFile check out: {r:?}"
    );
    let from = oldest_newest_unit(&store, 5000);
    assert_eq!((r.scanned_from, r.records_dispatched), (from, 0), "{r:?}");
    assert_eq!(r.records_without_crc, 4, "the four records walked: {r:?}");
    assert_eq!(r.truncated_at, None, "{r:?}");
    assert_eq!(r.segments_removed, 0, "{r:?}");
    assert_messages(&store, 5000, "java-clean");
    append_and_reopen(dir.path(), store, 5000, "java-clean");
}

#[test]
fn java_crash_root_recovers_every_message_and_key() {
    let dir = copy_fixture("java-crash");
    let store = open(dir.path());
    let r = store.recovery_report().clone();
    assert!(!r.clean_shutdown, "abort was left: {r:?}");
    assert_eq!(r.truncated_at, None, "{r:?}");
    assert!(r.salvaged.is_empty(), "{r:?}");
    assert_eq!(r.scanned_from, 0, "no trailer: the whole log is checked");
    assert_eq!(r.records_dispatched, 5000, "{r:?}");
    assert_eq!(
        r.records_without_crc, 5000,
        "RocketMQ 4.9.8 never writes __CRC32#"
    );
    assert_messages(&store, 5000, "java-crash");
    append_and_reopen(dir.path(), store, 5000, "java-crash");
}

#[test]
fn rocketstore_then_java_root_keeps_the_brokers_appends() {
    let dir = copy_fixture("rocketstore-then-java");
    let store = open(dir.path());
    let r = store.recovery_report().clone();
    assert!(r.rocketmq_normal_recovery, "{r:?}");
    assert!(
        !r.derived_rebuilt,
        "the broker's ConsumeQueue and IndexFile check out: {r:?}"
    );
    assert_eq!(r.truncated_at, None, "{r:?}");
    assert!(r.salvaged.is_empty(), "{r:?}");
    assert_eq!(
        r.end_offset, 497_157,
        "the broker's records are kept: {r:?}"
    );
    assert_eq!(r.scanned_from, oldest_newest_unit(&store, 1500), "{r:?}");
    assert_eq!(
        r.records_without_crc, 4,
        "the four records walked are the broker's: {r:?}"
    );
    assert_messages(&store, 1500, "rocketstore-then-java");
    append_and_reopen(dir.path(), store, 1500, "rocketstore-then-java");
}

/// The committed fixtures are whole: the segments and markers the README describes.
#[test]
fn fixtures_are_complete_as_committed() {
    for (name, segments) in [
        ("java-clean", 2),
        ("java-crash", 3),
        ("rocketstore-then-java", 1),
    ] {
        let root = fixture(name);
        let segs = list_dir(&root.join("commitlog"));
        assert_eq!(segs.len(), segments, "{name}");
        assert!(segs.iter().all(|(_, len)| *len == 1 << 20), "{name}");
        assert_eq!(root.join("abort").exists(), name == "java-crash", "{name}");
    }
}
