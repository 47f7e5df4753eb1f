//! Retention (spec §8): segments deleted from the front, derived files following, queue min
//! offsets moving, views into deleted segments staying valid, and all of it surviving a reopen.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::*;
use rocketstore::{GetStatus, Message, Store, StoreConfig};

const BODY: usize = 300;

fn config() -> StoreConfig {
    StoreConfig {
        // Retention is driven by the calls in each test, not by the clock.
        cleaner_enabled: false,
        // The directory then holds exactly the segments of the log (no prepared next one).
        preallocate_next_segment: false,
        ..tiny()
    }
}

fn body(i: u32) -> Vec<u8> {
    let mut b = i.to_be_bytes().repeat(BODY / 4);
    b.truncate(BODY);
    b
}

/// Writes `n` messages to `t/0` and `t/1` alternately, each with key `k<i>`; returns the
/// CommitLog offset of each.
fn fill(store: &Store, from: u32, n: u32) -> Vec<u64> {
    (from..from + n)
        .map(|i| {
            let b = body(i);
            store
                .put(&Message::new("t", (i % 2) as i32, &b).with_keys([format!("k{i}")]))
                .unwrap()
                .commitlog_offset
        })
        .collect()
}

fn segments(root: &Path) -> Vec<String> {
    list_dir(&root.join("commitlog"))
        .into_iter()
        .map(|(n, _)| n)
        .collect()
}

fn cq_files(root: &Path, q: i32) -> usize {
    list_dir(&root.join("consumequeue").join("t").join(q.to_string())).len()
}

#[test]
fn delete_before_removes_whole_segments_and_moves_queue_minimums() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), config()).unwrap();
    let offsets = fill(&store, 0, 2000);
    let segs_before = segments(dir.path());
    assert!(segs_before.len() >= 5, "{segs_before:?}");
    let (cq_before, cq_before_1) = (cq_files(dir.path(), 0), cq_files(dir.path(), 1));
    assert!(cq_before >= 5);
    let max0 = store.max_offset("t", 0).unwrap();

    // A reader holds a view into segment 0 across the deletion.
    let held = store.get("t", 0, 0, 4).unwrap();
    assert_eq!(held.status(), GetStatus::Found);

    let cut = 2 * SEG;
    let report = store.delete_before(cut + 1).unwrap();
    assert_eq!(report.segments_deleted, 2);
    assert_eq!(report.commitlog_min_offset, cut);
    assert_eq!(store.commitlog_min_offset(), cut);
    assert_eq!(segments(dir.path()), segs_before[2..].to_vec());
    assert!(report.consume_queue_files_deleted > 0);
    assert_eq!(
        cq_files(dir.path(), 0) + cq_files(dir.path(), 1) + report.consume_queue_files_deleted,
        cq_before + cq_before_1
    );

    // The held view still reads the deleted segment's bytes.
    let bodies: Vec<Vec<u8>> = held.messages().map(|m| m.body().to_vec()).collect();
    assert_eq!(bodies, vec![body(0), body(2), body(4), body(6)]);
    drop(held);

    // Queue min offsets: the first message at or after the cut, per queue.
    for q in 0..2 {
        let first_kept = (0..2000u32)
            .filter(|i| i % 2 == q)
            .position(|i| offsets[i as usize] >= cut)
            .unwrap() as u64;
        assert_eq!(store.min_offset("t", q as i32).unwrap(), first_kept);
        let g = store.get("t", q as i32, 0, 1).unwrap();
        assert_eq!(g.status(), GetStatus::OffsetTooSmall);
        assert_eq!(g.next_offset(), first_kept);
        let g = store.get("t", q as i32, first_kept, 1).unwrap();
        assert_eq!(g.status(), GetStatus::Found);
        let i = 2 * first_kept as u32 + q;
        assert_eq!(g.messages().next().unwrap().body(), body(i).as_slice());
    }
    assert_eq!(store.max_offset("t", 0).unwrap(), max0);
    // Reading at a deleted CommitLog offset is a typed error, not a crash.
    assert!(store.read_at(offsets[0]).is_err());

    // The same after a reopen, and writes continue.
    let mins: Vec<u64> = (0..2).map(|q| store.min_offset("t", q).unwrap()).collect();
    store.close().unwrap();
    let store = Store::open(dir.path(), config()).unwrap();
    assert_eq!(store.commitlog_min_offset(), cut);
    for q in 0..2 {
        assert_eq!(store.min_offset("t", q).unwrap(), mins[q as usize]);
    }
    assert_eq!(store.max_offset("t", 0).unwrap(), max0);
    fill(&store, 2000, 10);
    assert_eq!(store.max_offset("t", 0).unwrap(), max0 + 5);
    store.close().unwrap();
}

#[test]
fn the_active_segment_is_never_deleted_and_an_expired_queue_reads_empty_but_keeps_its_max() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), config()).unwrap();
    store.put(&Message::new("old", 0, b"early")).unwrap();
    store.put(&Message::new("old", 0, b"early2")).unwrap();
    fill(&store, 0, 1200);
    let report = store.delete_before(u64::MAX).unwrap();
    assert!(report.segments_deleted >= 2);
    assert_eq!(segments(dir.path()).len(), 1, "the active segment stays");
    // Every message of `old` is gone: min == max == 2, a get at 2 is "overflow one".
    assert_eq!(store.min_offset("old", 0).unwrap(), 2);
    assert_eq!(store.max_offset("old", 0).unwrap(), 2);
    assert_eq!(
        store.get("old", 0, 0, 8).unwrap().status(),
        GetStatus::OffsetTooSmall
    );
    assert_eq!(
        store.get("old", 0, 2, 8).unwrap().status(),
        GetStatus::OffsetOverflowOne
    );
    // The next message of `old` gets offset 2.
    let r = store.put(&Message::new("old", 0, b"late")).unwrap();
    assert_eq!(r.queue_offset, 2);
    store.close().unwrap();
    let store = Store::open(dir.path(), config()).unwrap();
    assert_eq!(store.min_offset("old", 0).unwrap(), 2);
    assert_eq!(store.max_offset("old", 0).unwrap(), 3);
    let g = store.get("old", 0, 2, 8).unwrap();
    assert_eq!(g.messages().next().unwrap().body(), b"late");
    store.close().unwrap();
}

#[test]
fn clean_expired_now_honours_the_reserved_time_and_the_batch_limit() {
    let dir = tempfile::tempdir().unwrap();
    let keep = StoreConfig {
        file_reserved_time: Duration::from_secs(3600),
        delete_files_batch_max: 2,
        ..config()
    };
    let store = Store::open(dir.path(), keep.clone()).unwrap();
    fill(&store, 0, 2000);
    let n = segments(dir.path()).len();
    assert_eq!(store.clean_expired_now().unwrap().segments_deleted, 0);
    assert_eq!(segments(dir.path()).len(), n);
    store.close().unwrap();

    let expire = StoreConfig {
        file_reserved_time: Duration::ZERO,
        ..keep
    };
    let store = Store::open(dir.path(), expire).unwrap();
    assert_eq!(store.clean_expired_now().unwrap().segments_deleted, 2);
    assert_eq!(segments(dir.path()).len(), n - 2);
    let mut passes = 1;
    while store.clean_expired_now().unwrap().segments_deleted > 0 {
        passes += 1;
    }
    assert_eq!(segments(dir.path()).len(), 1);
    assert_eq!(passes, (n - 1).div_ceil(2));
    store.close().unwrap();
}

#[test]
fn index_files_below_the_minimum_go_and_their_keys_are_no_longer_found() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), config()).unwrap();
    fill(&store, 0, 2000);
    let index_before = list_dir(&dir.path().join("index")).len();
    assert!(index_before >= 5, "tiny index files roll every 199 keys");
    let report = store.delete_before(3 * SEG).unwrap();
    assert!(report.index_files_deleted > 0);
    assert_eq!(
        list_dir(&dir.path().join("index")).len(),
        index_before - report.index_files_deleted
    );
    // Keys of deleted messages: no hit (the record is gone even if an index file remains).
    assert!(store
        .query_by_key("t", "k0", 0, i64::MAX, 8)
        .unwrap()
        .is_empty());
    // Keys of kept messages: found.
    let hits = store.query_by_key("t", "k1999", 0, i64::MAX, 8).unwrap();
    assert_eq!(hits.len(), 1);
    assert_eq!(hits[0].view().body(), body(1999).as_slice());
    store.close().unwrap();
}

#[test]
fn the_background_cleaner_deletes_expired_segments_at_the_configured_hours() {
    let dir = tempfile::tempdir().unwrap();
    let all_hours = (0..24)
        .map(|h| format!("{h:02}"))
        .collect::<Vec<_>>()
        .join(";");
    let store = Store::open(
        dir.path(),
        StoreConfig {
            cleaner_enabled: true,
            clean_resource_interval: Duration::from_millis(20),
            file_reserved_time: Duration::ZERO,
            delete_when: all_hours,
            ..tiny()
        },
    )
    .unwrap();
    fill(&store, 0, 1000);
    let deadline = Instant::now() + Duration::from_secs(20);
    // (The allocator's prepared next segment is in the directory but not in the log.)
    while store.stats().commitlog_segments > 1 {
        assert!(Instant::now() < deadline, "cleaner did not run");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(store.commitlog_min_offset() > 0);
    assert!(segments(dir.path()).len() <= 2);
    store.close().unwrap();
}

#[test]
fn stats_report_queues_sizes_and_flush_state() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), config()).unwrap();
    fill(&store, 0, 600);
    store.put(&Message::new("other", 3, b"x")).unwrap();
    let s = store.stats();
    assert_eq!(s.commitlog_max_offset, store.commitlog_max_offset());
    assert_eq!(s.commitlog_segments, segments(dir.path()).len());
    assert_eq!(s.commitlog_bytes, s.commitlog_segments as u64 * SEG);
    assert_eq!(s.dirty_bytes, s.commitlog_max_offset - s.durable_offset);
    assert_eq!(s.dispatch_lag_bytes, 0);
    assert!(s.read_only_reason.is_none() && s.disk_full_reason.is_none());
    let ratio = s.disk_used_ratio.unwrap();
    assert!((0.0..=1.0).contains(&ratio));
    let queues: Vec<(String, i32, u64, u64, u64)> = s
        .queues
        .iter()
        .map(|q| {
            (
                q.topic.clone(),
                q.queue_id,
                q.min_offset,
                q.max_offset,
                q.count,
            )
        })
        .collect();
    assert_eq!(
        queues,
        vec![
            ("other".into(), 3, 0, 1, 1),
            ("t".into(), 0, 0, 300, 300),
            ("t".into(), 1, 0, 300, 300),
        ]
    );
    assert_eq!(s.consume_queue_files, 3 + 2 + 2);
    assert_eq!(s.consume_queue_bytes, 7 * CQ_UNITS * 20);
    assert!(s.index_files >= 3);
    store.flush().unwrap();
    let s = store.stats();
    assert_eq!(s.dirty_bytes, 0);
    assert!(s.last_flush_ms.is_some());
    store.close().unwrap();
}
