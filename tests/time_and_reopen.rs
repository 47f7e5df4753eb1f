//! Offsets by time, and what survives close / drop and reopen.

mod common;

use common::*;
use rocketstore::{Message, Store, TimeBoundary};

/// Queue 0 of "tq" gets at least 250 messages (three ConsumeQueue files) in runs of 1..=9 per distinct
/// millisecond; queue 1 gets interleaved noise. Returns queue 0's store timestamps by offset.
fn timed_store(dir: &std::path::Path) -> (Store, Vec<i64>) {
    let store = Store::open(dir, tiny()).unwrap();
    let mut times = Vec::new();
    let mut rng = Rng::new(7);
    while times.len() < 250 {
        if let Some(&t) = times.last() {
            spin_past(t);
        }
        for _ in 0..1 + rng.below(9) {
            let r = store.put(&Message::new("tq", 0, b"m")).unwrap();
            assert_eq!(r.queue_offset, times.len() as u64);
            times.push(r.store_timestamp);
            store.put(&Message::new("tq", 1, b"noise")).unwrap();
        }
    }
    (store, times)
}

fn lower(times: &[i64], t: i64) -> u64 {
    times.iter().position(|&x| x >= t).unwrap_or(times.len()) as u64
}

fn upper(times: &[i64], t: i64) -> u64 {
    times.iter().rposition(|&x| x <= t).unwrap_or(0) as u64
}

fn probe_times(times: &[i64]) -> Vec<i64> {
    let mut probes: Vec<i64> = times.iter().flat_map(|&t| [t - 1, t, t + 1]).collect();
    probes.extend([i64::MIN, -1, 0, 1, i64::MAX]);
    probes.sort_unstable();
    probes.dedup();
    probes
}

#[test]
fn offset_for_timestamp_finds_the_lower_and_upper_boundaries() {
    let dir = tempfile::tempdir().unwrap();
    let (store, times) = timed_store(dir.path());
    let mut distinct = times.clone();
    distinct.dedup();
    assert!(
        distinct.len() >= 25,
        "the workload must produce many distinct times"
    );
    for t in probe_times(&times) {
        assert_eq!(
            store.offset_for_timestamp("tq", 0, t).unwrap(),
            lower(&times, t),
            "Lower({t})"
        );
        assert_eq!(
            store
                .offset_for_timestamp_with("tq", 0, t, TimeBoundary::Lower)
                .unwrap(),
            lower(&times, t),
            "explicit Lower({t})"
        );
        assert_eq!(
            store
                .offset_for_timestamp_with("tq", 0, t, TimeBoundary::Upper)
                .unwrap(),
            upper(&times, t),
            "Upper({t})"
        );
    }
    let (first, last) = (times[0], times[times.len() - 1]);
    // Boundaries spelled out: before everything / after everything.
    assert_eq!(store.offset_for_timestamp("tq", 0, first - 1).unwrap(), 0);
    let n = times.len() as u64;
    assert!(n >= 250);
    assert_eq!(store.max_offset("tq", 0).unwrap(), n);
    assert_eq!(store.offset_for_timestamp("tq", 0, last + 1).unwrap(), n);
    let up = |t| {
        store
            .offset_for_timestamp_with("tq", 0, t, TimeBoundary::Upper)
            .unwrap()
    };
    assert_eq!(up(first - 1), 0);
    assert_eq!(up(last + 1), n - 1);
    assert_eq!(up(last), n - 1);
    // Unknown queue or topic: 0 whatever the time.
    for (topic, q) in [("tq", 5), ("nope", 0)] {
        for t in [0, first, i64::MAX] {
            assert_eq!(store.offset_for_timestamp(topic, q, t).unwrap(), 0);
            assert_eq!(
                store
                    .offset_for_timestamp_with(topic, q, t, TimeBoundary::Upper)
                    .unwrap(),
                0
            );
        }
    }
}

/// A mixed workload: three topics, six queues, batches, keys, several CommitLog segments.
fn mixed_workload(store: &Store, seed: u64, n: usize) {
    let mut rng = Rng::new(seed);
    let mut i = 0;
    while i < n {
        let topic = ["alpha", "beta", "gamma"][rng.below(3) as usize];
        let q = rng.below(2) as i32;
        let len = 200 + rng.below(1500) as usize;
        if rng.below(10) == 0 {
            let bodies: Vec<Vec<u8>> = (0..4).map(|_| rng.bytes(len / 4)).collect();
            let msgs: Vec<_> = bodies
                .iter()
                .enumerate()
                .map(|(k, b)| {
                    Message::new(topic, q, b)
                        .with_tags("batch")
                        .with_keys([format!("b{seed}-{i}-{k}")])
                })
                .collect();
            store.put_batch(&msgs).unwrap();
            i += 4;
        } else {
            let body = rng.bytes(len);
            store
                .put(
                    &Message::new(topic, q, &body)
                        .with_tags(if i % 2 == 0 { "even" } else { "odd" })
                        .with_keys([format!("k{seed}-{i}"), format!("g{}", i % 7)])
                        .with_property("UNIQ_KEY", format!("U{seed}-{i}"))
                        .with_flag(i as i32),
                )
                .unwrap();
            i += 1;
        }
    }
}

/// Everything the API answers about a store, for before/after comparisons.
#[derive(Debug, PartialEq, Eq)]
struct Answers {
    snapshot: Snapshot,
    queries: Vec<Vec<Vec<u8>>>,
    times: Vec<(u64, u64)>,
}

fn answers(store: &Store, seeds: &[u64]) -> Answers {
    let snapshot = snapshot(store);
    let mut keys: Vec<(String, String)> = (0..7)
        .flat_map(|g| ["alpha", "beta", "gamma"].map(|t| (t.to_string(), format!("g{g}"))))
        .collect();
    for s in seeds {
        for i in (0..300).step_by(13) {
            keys.push(("alpha".into(), format!("k{s}-{i}")));
            keys.push(("beta".into(), format!("U{s}-{i}")));
        }
    }
    let queries = keys
        .iter()
        .map(|(t, k)| {
            store
                .query_by_key(t, k, 0, i64::MAX, 64)
                .unwrap()
                .iter()
                .map(|m| m.view().as_bytes().to_vec())
                .collect()
        })
        .collect();
    // Offsets by time at every record's store time of alpha/0.
    let ts: Vec<i64> = snapshot
        .queues
        .get(&("alpha".to_string(), 0))
        .map(|(_, _, recs)| {
            recs.iter()
                .map(|r| i64::from_be_bytes(r[56..64].try_into().unwrap()))
                .collect()
        })
        .unwrap_or_default();
    let times = ts
        .iter()
        .map(|&t| {
            (
                store.offset_for_timestamp("alpha", 0, t).unwrap(),
                store
                    .offset_for_timestamp_with("alpha", 0, t, TimeBoundary::Upper)
                    .unwrap(),
            )
        })
        .collect();
    Answers {
        snapshot,
        queries,
        times,
    }
}

/// Puts one message and one batch and checks they continue exactly where the store left off.
fn check_appending_continues(store: &Store) {
    let last_ts = store
        .read_at(walk_commitlog(store).last().unwrap().0)
        .unwrap()
        .view()
        .store_timestamp();
    let q = store.max_offset("alpha", 1).unwrap();
    let end = store.commitlog_max_offset();
    let r = store
        .put(&Message::new("alpha", 1, b"after reopen"))
        .unwrap();
    assert_eq!(r.queue_offset, q);
    assert_eq!(r.commitlog_offset, expected_offset(end, r.wrote_bytes, SEG));
    assert!(r.store_timestamp >= last_ts, "store time went backwards");
    let end = store.commitlog_max_offset();
    let r2 = store
        .put_batch(&[
            Message::new("alpha", 1, b"b1"),
            Message::new("alpha", 1, b"b2"),
        ])
        .unwrap();
    assert_eq!(r2.queue_offset, q + 1);
    assert_eq!(
        r2.commitlog_offset,
        expected_offset(end, r2.wrote_bytes, SEG)
    );
    let g = store.get("alpha", 1, q, 10).unwrap();
    let bodies: Vec<&[u8]> = g.messages().map(|m| m.body()).collect();
    assert_eq!(bodies, vec![&b"after reopen"[..], b"b1", b"b2"]);
}

#[test]
fn close_and_reopen_give_identical_answers_and_appending_continues() {
    let dir = tempfile::tempdir().unwrap();
    let mut seeds = Vec::new();
    let mut prev: Option<Answers> = None;
    for cycle in 0..3u64 {
        let store = Store::open(dir.path(), tiny()).unwrap();
        if let Some(p) = &prev {
            let report = store.recovery_report();
            assert!(report.clean_shutdown, "cycle {cycle}: {report:?}");
            assert!(report.checkpoint_trusted, "cycle {cycle}: {report:?}");
            assert_eq!(report.end_offset, p.snapshot.commitlog_max);
            assert_eq!(report.truncated_at, None);
            assert_eq!(report.segments_removed, 0);
            assert_eq!(&answers(&store, &seeds), p, "cycle {cycle}");
            check_appending_continues(&store);
        }
        seeds.push(cycle);
        mixed_workload(&store, cycle, 300);
        let a = answers(&store, &seeds);
        assert!(a.snapshot.commitlog_max > (cycle + 1) * SEG, "rolls happen");
        assert!(
            dir.path().join("abort").exists(),
            "abort marks a running store"
        );
        assert_eq!(
            std::fs::read_to_string(dir.path().join("abort")).unwrap(),
            std::process::id().to_string()
        );
        store.close().unwrap();
        assert!(!dir.path().join("abort").exists(), "close removes abort");
        assert_eq!(
            std::fs::metadata(dir.path().join("checkpoint"))
                .unwrap()
                .len(),
            4096
        );
        assert_eq!(std::fs::read(dir.path().join("lock")).unwrap(), b"lock");
        prev = Some(a);
    }
}

#[test]
fn drop_without_close_leaves_a_reopenable_store_with_everything() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), tiny()).unwrap();
    mixed_workload(&store, 11, 400);
    let before = answers(&store, &[11]);
    drop(store);
    let store = Store::open(dir.path(), tiny()).unwrap();
    assert_eq!(answers(&store, &[11]), before);
    check_appending_continues(&store);
    // Drop runs the same shutdown as close.
    assert!(store.recovery_report().clean_shutdown);
}

#[test]
fn an_empty_store_reopens_empty_and_starts_at_offset_zero() {
    let dir = tempfile::tempdir().unwrap();
    Store::open(dir.path(), tiny()).unwrap().close().unwrap();
    let store = Store::open(dir.path(), tiny()).unwrap();
    assert!(store.topics().is_empty());
    assert_eq!(store.commitlog_min_offset(), 0);
    assert_eq!(store.commitlog_max_offset(), 0);
    let r = store.put(&Message::new("t", 0, b"first")).unwrap();
    assert_eq!((r.commitlog_offset, r.queue_offset), (0, 0));
}

#[test]
fn offset_for_timestamp_is_the_same_after_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let (store, times) = timed_store(dir.path());
    let probes = probe_times(&times);
    let ask = |s: &Store| -> Vec<(u64, u64)> {
        probes
            .iter()
            .map(|&t| {
                (
                    s.offset_for_timestamp("tq", 0, t).unwrap(),
                    s.offset_for_timestamp_with("tq", 0, t, TimeBoundary::Upper)
                        .unwrap(),
                )
            })
            .collect()
    };
    let before = ask(&store);
    store.close().unwrap();
    drop(store);
    let store = Store::open(dir.path(), tiny()).unwrap();
    assert_eq!(ask(&store), before);
    let expected: Vec<(u64, u64)> = probes
        .iter()
        .map(|&t| (lower(&times, t), upper(&times, t)))
        .collect();
    assert_eq!(before, expected);
}

#[test]
fn messages_held_across_close_and_reopen_stay_readable() {
    // `StoredMessage` and `GetResult` carry no lifetime: they must stay valid after the store
    // that produced them is closed, dropped and the root reopened by another store.
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), tiny()).unwrap();
    mixed_workload(&store, 21, 200);
    let held = store.read_at(0).unwrap();
    let held_bytes = held.view().as_bytes().to_vec();
    let page = store.get("alpha", 0, 0, 16).unwrap();
    let page_bytes: Vec<Vec<u8>> = page.messages().map(|m| m.as_bytes().to_vec()).collect();
    store.close().unwrap();
    drop(store);
    assert_eq!(held.view().as_bytes(), held_bytes.as_slice());
    let store = Store::open(dir.path(), tiny()).unwrap();
    mixed_workload(&store, 22, 200);
    assert_eq!(held.view().as_bytes(), held_bytes.as_slice());
    let again: Vec<Vec<u8>> = page.messages().map(|m| m.as_bytes().to_vec()).collect();
    assert_eq!(again, page_bytes);
    drop(store);
    assert_eq!(held.view().as_bytes(), held_bytes.as_slice());
}
