//! The file geometry of a root (CommitLog segment size, ConsumeQueue units per file, IndexFile
//! slots and entries) is the root's: `StoreConfig::default()` opens a root of any geometry
//! (from its `rocketstore-geometry` record, or from the lengths of its files), and a
//! configuration that asks for another geometry is a typed error naming both values.

mod common;

use std::fs;
use std::path::{Path, PathBuf};

use rocketstore::format::root::GEOMETRY_FILE;
use rocketstore::vfs::OsVfs;
use rocketstore::{Error, Message, RootGeometry, Store, StoreConfig};
use rocketstore_test_support::files_under;

/// Not RocketMQ's default, not `StoreConfig::small`'s, and an index at a 1:6 ratio (no guess
/// from a file length finds it).
const SEGMENT: usize = 96 * 1024;
const CQ_UNITS: usize = 40;
const SLOTS: u32 = 50;
const ENTRIES: u32 = 300;
const BODY: usize = 2000;

fn geometry() -> StoreConfig {
    StoreConfig {
        commitlog_segment_size: SEGMENT,
        consume_queue_units_per_file: CQ_UNITS,
        index_hash_slots: SLOTS,
        index_max_entries: ENTRIES,
        max_message_size: 8 * 1024,
        cleaner_enabled: false,
        ..StoreConfig::default()
    }
}

fn key(i: usize) -> String {
    format!("K-{i}")
}

fn put(store: &Store, from: usize, to: usize) {
    for i in from..to {
        let body = vec![(i % 251) as u8; BODY];
        store
            .put(&Message::new("geo", (i % 2) as i32, &body).with_keys([key(i)]))
            .unwrap();
    }
}

/// Every message 0..n is where `put` left it, by queue and by key.
fn check(store: &Store, n: usize) {
    for q in 0..2 {
        let want = (0..n).filter(|i| i % 2 == q).count();
        let mut bodies = Vec::new();
        loop {
            let got = store.get("geo", q as i32, bodies.len() as u64, 32).unwrap();
            if got.is_empty() {
                break;
            }
            bodies.extend(got.messages().map(|m| m.body().to_vec()));
        }
        assert_eq!(bodies.len(), want, "queue {q}");
        for (k, b) in bodies.iter().enumerate() {
            assert_eq!(b[0], ((2 * k + q) % 251) as u8, "queue {q} message {k}");
        }
    }
    for i in [0, 1, n / 2, n - 1] {
        let hits = store.query_by_key("geo", &key(i), 0, i64::MAX, 4).unwrap();
        assert_eq!(hits.len(), 1, "key {}", key(i));
        assert_eq!(hits[0].view().body()[0], (i % 251) as u8);
    }
}

fn files_in(dir: &Path) -> usize {
    fs::read_dir(dir).map_or(0, |d| d.count())
}

/// A closed root of the non-default geometry holding `n` messages over several segments,
/// ConsumeQueue files and IndexFiles.
fn small_root(n: usize) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), geometry()).unwrap();
    put(&store, 0, n);
    store.close().unwrap();
    assert!(files_in(&dir.path().join("commitlog")) >= 3);
    assert!(files_in(&dir.path().join("consumequeue/geo/0")) >= 2);
    assert!(files_in(&dir.path().join("index")) >= 2);
    dir
}

#[test]
fn a_root_of_another_geometry_reopens_with_the_default_config_and_keeps_working() {
    const N: usize = 400;
    let dir = small_root(N);
    let recorded = RootGeometry::read(&OsVfs, dir.path()).unwrap().unwrap();
    assert_eq!(recorded, RootGeometry::of_config(&geometry()));

    let store = Store::open(dir.path(), StoreConfig::default()).unwrap();
    let c = store.config();
    assert_eq!(
        (
            c.commitlog_segment_size,
            c.consume_queue_units_per_file,
            c.index_hash_slots,
            c.index_max_entries
        ),
        (SEGMENT, CQ_UNITS, SLOTS, ENTRIES)
    );
    // 4 MiB bodies cannot fit a 96 KiB segment: the default limit shrinks to what fits.
    assert_eq!(c.max_message_size, SEGMENT - 64 * 1024 - 8);
    check(&store, N);
    put(&store, N, 2 * N);
    check(&store, 2 * N);
    store.close().unwrap();

    let store = Store::open(dir.path(), StoreConfig::default()).unwrap();
    assert!(!store.recovery_report().derived_rebuilt);
    check(&store, 2 * N);
    store.close().unwrap();
    // The configuration that wrote the root still opens it.
    Store::open(dir.path(), geometry())
        .unwrap()
        .close()
        .unwrap();
}

/// A root without the record (RocketMQ's, or an older rocketstore's): segment size and
/// ConsumeQueue units come from the files, the index geometry from the configuration, and the
/// record is written.
#[test]
fn without_a_record_segment_and_queue_sizes_come_from_the_files() {
    const N: usize = 300;
    let dir = small_root(N);
    fs::remove_file(dir.path().join(GEOMETRY_FILE)).unwrap();
    let store = Store::open(
        dir.path(),
        StoreConfig {
            index_hash_slots: SLOTS,
            index_max_entries: ENTRIES,
            ..StoreConfig::default()
        },
    )
    .unwrap();
    assert_eq!(store.config().commitlog_segment_size, SEGMENT);
    assert_eq!(store.config().consume_queue_units_per_file, CQ_UNITS);
    check(&store, N);
    store.close().unwrap();
    assert_eq!(
        RootGeometry::read(&OsVfs, dir.path()).unwrap(),
        Some(RootGeometry::of_config(&geometry()))
    );
    Store::open(dir.path(), StoreConfig::default())
        .unwrap()
        .close()
        .unwrap();
}

fn mismatch(root: &Path, config: StoreConfig) -> (&'static str, u64, u64, PathBuf, String) {
    match Store::open(root, config) {
        Err(e @ Error::GeometryMismatch { .. }) => {
            let text = e.to_string();
            let Error::GeometryMismatch {
                field,
                configured,
                found,
                path,
            } = e
            else {
                unreachable!()
            };
            (field, configured, found, path, text)
        }
        other => panic!("expected GeometryMismatch, got {:?}", other.map(|_| ())),
    }
}

#[test]
fn an_explicit_geometry_that_contradicts_the_root_is_a_typed_error_naming_both_values() {
    let dir = small_root(300);
    let before = files_under(dir.path());
    let record = dir.path().join(GEOMETRY_FILE);
    let (field, configured, found, path, text) = mismatch(
        dir.path(),
        StoreConfig {
            commitlog_segment_size: 2 * SEGMENT,
            ..geometry()
        },
    );
    assert_eq!(
        (field, configured, found, &path),
        (
            "commitlog_segment_size",
            2 * SEGMENT as u64,
            SEGMENT as u64,
            &record
        )
    );
    for part in ["commitlog_segment_size", "196608", "98304", GEOMETRY_FILE] {
        assert!(text.contains(part), "{part:?} not in {text}");
    }
    let (field, configured, found, ..) = mismatch(dir.path(), StoreConfig::small());
    assert_eq!(
        (field, configured, found),
        ("commitlog_segment_size", 1 << 20, SEGMENT as u64)
    );
    let (field, configured, found, ..) = mismatch(
        dir.path(),
        StoreConfig {
            index_max_entries: 4 * SLOTS,
            ..geometry()
        },
    );
    assert_eq!(
        (field, configured, found),
        ("index_max_entries", 200, ENTRIES as u64)
    );
    assert_eq!(
        files_under(dir.path()),
        before,
        "a refused open changes nothing"
    );

    // Without the record, the conflict is with the files, and names one.
    fs::remove_file(&record).unwrap();
    let (field, configured, found, path, _) = mismatch(
        dir.path(),
        StoreConfig {
            consume_queue_units_per_file: 2 * CQ_UNITS,
            ..geometry()
        },
    );
    assert_eq!(
        (field, configured, found),
        ("consume_queue_units_per_file", 80, CQ_UNITS as u64)
    );
    assert!(
        path.starts_with(dir.path().join("consumequeue")),
        "{path:?}"
    );
}

#[test]
fn a_damaged_geometry_record_is_a_layout_error_naming_it() {
    let dir = small_root(300);
    let record = dir.path().join(GEOMETRY_FILE);
    let text = fs::read_to_string(&record).unwrap();
    fs::write(&record, text.replace(&format!("={SEGMENT}"), "=12")).unwrap();
    match Store::open(dir.path(), StoreConfig::default()) {
        Err(Error::Layout { path, reason }) => {
            assert_eq!(path, record);
            assert!(reason.contains("commitlog_segment_size"), "{reason}");
        }
        other => panic!("expected Layout, got {:?}", other.map(|_| ())),
    }
}

/// A new root records its geometry at its first open.
#[test]
fn a_new_root_records_its_geometry() {
    let dir = tempfile::tempdir().unwrap();
    Store::open(dir.path(), StoreConfig::small())
        .unwrap()
        .close()
        .unwrap();
    let text = fs::read_to_string(dir.path().join(GEOMETRY_FILE)).unwrap();
    assert!(text.contains("commitlog_segment_size=1048576\n"), "{text}");
    assert!(text.contains("index_max_entries=4000\n"), "{text}");
}
