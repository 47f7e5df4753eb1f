//! Unit tests of the IndexFile and the IndexService.

use std::sync::atomic::Ordering;

use super::*;
use crate::format::dispatch_entry::DispatchEntry;
use crate::format::index_layout::slot_pos;
use crate::format::root::StoreRoot;

/// `keep_entries` leaves the slot table exactly as rebuilding it from entries `1..=kept`
/// in order does (a slot holds the last of them that hashes to it, or 0), whatever the
/// slots held before, rewrites no slot that already had its value, and zeroes the entries
/// after `kept`.
#[test]
fn keep_entries_rebuilds_the_slot_table_from_the_kept_entries() {
    use crate::storage::OsVfs;
    let dir = tempfile::tempdir().unwrap();
    // 200 slots and 1000 entries: most slots have chains.
    let (slots, max_entries) = (200u32, 1200u32);
    let path = dir.path().join("idx");
    let mut f = IndexFile::create(&OsVfs, &path, slots, max_entries, 1_000, 0).unwrap();
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    let mut next = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for n in 0..1000u64 {
        // Hashes over a range of 150 slots only, so some slots stay empty.
        let hash = (next() % 150) as i32 + 50 * i32::from(n % 7 == 0);
        assert!(f.put(hash, n * 100, 1_000 + n as i64, true));
    }
    // Garbage in some slots, as a crash can leave them.
    for slot in (0..slots).step_by(3) {
        f.words
            .store_be(slot_pos(slot), next() as u32 % 5000, Ordering::Relaxed);
    }
    let kept = 600;
    let mut want = vec![0u32; slots as usize];
    for i in 1..=kept {
        want[(f.entry(i).hash as u32 % slots) as usize] = i;
    }
    f.keep_entries(kept, 1_000 + kept as i64).unwrap();
    let got: Vec<u32> = (0..slots)
        .map(|s| f.words.load_be(slot_pos(s), Ordering::Relaxed))
        .collect();
    assert_eq!(got, want);
    assert!(want.contains(&0), "the test should leave some slots empty");
    assert_eq!(
        f.hash_slot_count.load(Ordering::Relaxed),
        want.iter().filter(|&&h| h != 0).count() as u32
    );
    assert_eq!(f.entry_count(), kept);
    for i in kept + 1..max_entries {
        let e = f.entry(i);
        assert_eq!(
            (e.hash, e.offset, e.diff, e.prev),
            (0, 0, 0, 0),
            "entry {i}"
        );
    }
    // Again: nothing changes.
    let before = std::fs::read(&path).unwrap();
    f.keep_entries(kept, 1_000 + kept as i64).unwrap();
    assert_eq!(std::fs::read(&path).unwrap(), before);
}

/// Puts with deferred headers leave every file, header included, byte for byte as puts
/// that write the header each time, across rolls.
#[test]
fn deferred_headers_leave_the_same_bytes() {
    use crate::format::record::{DispatchProperties, TRANSACTION_NOT_TYPE};
    use crate::storage::OsVfs;
    let mut images = Vec::new();
    for deferred in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let service = IndexService::load(&OsVfs, &StoreRoot::new(dir.path()), 50, 40).unwrap();
        service.defer_headers(deferred);
        let keys: Vec<String> = (0..100).map(|n| format!("K{n}")).collect();
        for (n, key) in keys.iter().enumerate() {
            let entry = DispatchEntry {
                topic: "t",
                queue_id: 0,
                queue_offset: n as u64,
                commitlog_offset: n as u64 * 100,
                size: 100,
                store_timestamp: 1_000 + n as i64 * 700,
                transaction_type: TRANSACTION_NOT_TYPE,
                props: DispatchProperties {
                    uniq_key: Some(key.as_str()),
                    ..DispatchProperties::default()
                },
            };
            service.build(&OsVfs, &entry).unwrap();
        }
        service.defer_headers(false);
        service.flush().unwrap();
        let mut names: Vec<_> = std::fs::read_dir(dir.path().join("index"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        names.sort();
        assert_eq!(names.len(), 3, "the puts should roll files");
        images.push(
            names
                .iter()
                .map(|p| std::fs::read(p).unwrap())
                .collect::<Vec<_>>(),
        );
    }
    assert!(images[0] == images[1], "deferred headers changed the files");
}

#[test]
fn key_hash_is_java_hash_of_topic_hash_key() {
    for (t, k) in [("orders", "ORDER-100"), ("a", ""), ("Tópico", "ключ😀")] {
        assert_eq!(
            key_hash(t, k),
            java_hash::index_key_hash(&format!("{t}#{k}"))
        );
    }
}
