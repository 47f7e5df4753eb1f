//! The consumer layer (issue 15): committed offsets survive close and crash, clustering splits
//! the queues and rebalances, broadcasting gives everyone everything, polls wait for puts,
//! seeks, ordered consumption's locks and in-place retry, and the bad inputs.

#[path = "support/crash.rs"]
mod crash;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use rocketstore::consumer::allocate::Strategy;
use rocketstore::consumer::{ConsumerConfig, MessageModel, SeekTo, StartFrom};
use rocketstore::{Error, FlushMode, Message, Store, StoreConfig, TagFilter};
use rocketstore_test_support::copy_tree;

const T: &str = "orders";

fn config(mode: FlushMode) -> StoreConfig {
    StoreConfig {
        flush_mode: mode,
        ..StoreConfig::small()
    }
}

fn from_first() -> ConsumerConfig {
    ConsumerConfig {
        start_from: StartFrom::First,
        ..ConsumerConfig::default()
    }
}

fn put_n(store: &Store, queues: i32, per_queue: u64) {
    for i in 0..per_queue {
        for q in 0..queues {
            store
                .put(&Message::new(T, q, format!("{q}:{i}").as_bytes()))
                .unwrap();
        }
    }
}

/// Drains everything the consumer can see now, as `(queue, offset)`.
fn drain(c: &mut rocketstore::consumer::Consumer) -> Vec<(i32, u64)> {
    let mut out = Vec::new();
    loop {
        let b = c.poll(64, Duration::from_millis(20)).unwrap();
        if b.is_empty() {
            return out;
        }
        out.extend(b.messages().map(|m| (m.queue_id(), m.queue_offset())));
    }
}

#[test]
fn committed_offsets_survive_a_clean_close_and_a_crash() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("s");
    for mode in [FlushMode::Sync, FlushMode::Async] {
        let _ = std::fs::remove_dir_all(&root);
        let store = Store::open(&root, config(mode)).unwrap();
        put_n(&store, 2, 10);
        store.commit_offsets("g", T, &[(0, 4), (1, 7)]).unwrap();
        store.commit_offsets("g", T, &[(0, 6)]).unwrap();
        store.commit_offsets_durable("h", T, &[(1, 10)]).unwrap();
        store.close().unwrap();
        let store = Store::open(&root, config(mode)).unwrap();
        assert_eq!(store.committed_offset("g", T, 0).unwrap(), Some(6));
        assert_eq!(store.committed_offset("g", T, 1).unwrap(), Some(7));
        assert_eq!(store.committed_offset("h", T, 1).unwrap(), Some(10));
        assert_eq!(store.committed_offset("h", T, 0).unwrap(), None);
        // The snapshot is RocketMQ's file, with the group's queues.
        let json = std::fs::read_to_string(root.join("config/consumerOffset.json")).unwrap();
        assert!(json.contains("\"orders@g\""), "{json}");

        // A durable commit, then a crash: the files as the running process leaves them
        // (copied while it runs, `abort` included) recover with it.
        store.commit_offsets_durable("g", T, &[(0, 9)]).unwrap();
        let crashed = dir.path().join("crashed");
        let _ = std::fs::remove_dir_all(&crashed);
        copy_tree(&root, &crashed).unwrap();
        store.close().unwrap();
        std::fs::remove_file(crashed.join("lock")).unwrap();
        let store = Store::open(&crashed, config(mode)).unwrap();
        assert!(!store.recovery_report().clean_shutdown);
        assert_eq!(store.committed_offset("g", T, 0).unwrap(), Some(9));
        assert_eq!(store.committed_offset("g", T, 1).unwrap(), Some(7));
        store.close().unwrap();
    }
}

#[test]
fn a_consumer_resumes_where_its_group_committed_and_redelivers_at_most_the_last_batch() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("s"), config(FlushMode::Async)).unwrap();
    put_n(&store, 1, 100);
    let mut seen = Vec::new();
    {
        let mut c = store.consumer("g", T, from_first()).unwrap();
        for _ in 0..3 {
            let b = c.poll(10, Duration::from_secs(1)).unwrap();
            seen.extend(b.messages().map(|m| m.queue_offset()));
        }
        // The third batch (20..30) is not committed yet: auto-commit runs at the next poll.
        assert_eq!(store.committed_offset("g", T, 0).unwrap(), Some(20));
    } // dropped: commits 30
    assert_eq!(store.committed_offset("g", T, 0).unwrap(), Some(30));
    let mut c = store.consumer("g", T, from_first()).unwrap();
    seen.extend(drain(&mut c).into_iter().map(|(_, o)| o));
    assert_eq!(
        seen,
        (0..100).collect::<Vec<u64>>(),
        "every message once, in order"
    );
}

#[test]
fn clustering_splits_the_queues_and_rebalances_when_a_consumer_leaves() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("s"), config(FlushMode::Async)).unwrap();
    put_n(&store, 8, 5);
    let mut a = store.consumer("g", T, from_first()).unwrap();
    let mut b = store.consumer("g", T, from_first()).unwrap();
    let mut c = store.consumer("g", T, from_first()).unwrap();
    let (qa, qb, qc) = (
        a.assigned().unwrap(),
        b.assigned().unwrap(),
        c.assigned().unwrap(),
    );
    let mut all: Vec<i32> = [qa.clone(), qb.clone(), qc.clone()].concat();
    all.sort_unstable();
    assert_eq!(all, (0..8).collect::<Vec<_>>(), "{qa:?} {qb:?} {qc:?}");
    let mut sizes = [qa.len(), qb.len(), qc.len()];
    sizes.sort_unstable();
    assert_eq!(sizes, [2, 3, 3]);
    let got_a = drain(&mut a);
    assert!(got_a.iter().all(|(q, _)| qa.contains(q)));
    assert_eq!(got_a.len(), qa.len() * 5);
    drop(c);
    let (qa2, qb2) = (a.assigned().unwrap(), b.assigned().unwrap());
    let mut all: Vec<i32> = [qa2, qb2].concat();
    all.sort_unstable();
    assert_eq!(all, (0..8).collect::<Vec<_>>());
    // b gets the rest once, including what c left (c never polled: from the start).
    let got: BTreeSet<(i32, u64)> = [drain(&mut a), drain(&mut b)]
        .concat()
        .into_iter()
        .collect();
    let mut expect = BTreeSet::new();
    for q in 0..8 {
        if !qa.contains(&q) {
            for o in 0..5 {
                expect.insert((q, o));
            }
        }
    }
    assert_eq!(got, expect);
}

#[test]
fn broadcasting_consumers_each_see_every_message_with_offsets_of_their_own() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("s"), config(FlushMode::Async)).unwrap();
    put_n(&store, 3, 4);
    let bc = |id: &str| ConsumerConfig {
        model: MessageModel::Broadcasting,
        consumer_id: Some(id.into()),
        ..from_first()
    };
    let mut x = store.consumer("g", T, bc("x")).unwrap();
    let mut y = store.consumer("g", T, bc("y")).unwrap();
    assert_eq!(drain(&mut x).len(), 12);
    assert_eq!(drain(&mut y).len(), 12);
    x.commit().unwrap();
    drop(x);
    // x's offsets are its own: a new x resumes at the end, y's are untouched by x.
    let mut x = store.consumer("g", T, bc("x")).unwrap();
    assert_eq!(drain(&mut x).len(), 0);
    assert_eq!(store.committed_offset("g", T, 0).unwrap(), None);
}

#[test]
fn a_poll_waits_for_a_put_and_honours_the_tag_filter() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("s"), config(FlushMode::Async)).unwrap();
    store.put(&Message::new(T, 0, b"before")).unwrap();
    let mut c = store
        .consumer(
            "g",
            T,
            ConsumerConfig {
                tag_filter: Some(TagFilter::parse("B")),
                ..ConsumerConfig::default()
            },
        )
        .unwrap();
    // Last offset: "before" is not delivered.
    assert_eq!(c.poll(8, Duration::from_millis(20)).unwrap().len(), 0);
    std::thread::scope(|s| {
        let t = s.spawn(move || {
            let t0 = Instant::now();
            let b = c.poll(8, Duration::from_secs(30)).unwrap();
            let bodies: Vec<Vec<u8>> = b.messages().map(|m| m.body().to_vec()).collect();
            (bodies, t0.elapsed())
        });
        std::thread::sleep(Duration::from_millis(50));
        store.put(&Message::new(T, 0, b"A").with_tags("A")).unwrap();
        store.put(&Message::new(T, 0, b"B").with_tags("B")).unwrap();
        let (bodies, took) = t.join().unwrap();
        assert_eq!(bodies, [b"B".to_vec()]);
        assert!(took < Duration::from_secs(10));
    });
}

#[test]
fn seek_moves_a_queue_and_refuses_past_the_end() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("s"), config(FlushMode::Async)).unwrap();
    put_n(&store, 1, 10);
    let mut c = store.consumer("g", T, ConsumerConfig::default()).unwrap();
    assert_eq!(c.assigned().unwrap(), [0]);
    assert_eq!(c.seek(0, SeekTo::Start).unwrap(), 0);
    assert_eq!(c.seek(0, SeekTo::Offset(7)).unwrap(), 7);
    assert_eq!(drain(&mut c), [(0, 7), (0, 8), (0, 9)]);
    assert_eq!(c.seek(0, SeekTo::End).unwrap(), 10);
    assert!(matches!(
        c.seek(0, SeekTo::Offset(11)),
        Err(Error::OffsetPastMax {
            offset: 11,
            max: 10,
            ..
        })
    ));
    assert_eq!(c.seek(0, SeekTo::Timestamp(0)).unwrap(), 0);
    let lag = c.lag().unwrap();
    assert_eq!((lag[0].position, lag[0].max_offset), (0, 10));
}

#[test]
fn ordered_consumers_hold_a_queue_each_and_retry_a_failed_message_in_place() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("s"), config(FlushMode::Async)).unwrap();
    put_n(&store, 1, 3);
    let ordered = |id: &str| ConsumerConfig {
        ordered: true,
        consumer_id: Some(id.into()),
        retry_interval: Duration::from_millis(100),
        model: MessageModel::Broadcasting,
        ..from_first()
    };
    let mut a = store.consumer("g", T, ordered("a")).unwrap();
    let mut b = store.consumer("g", T, ordered("b")).unwrap();
    assert_eq!(a.assigned().unwrap(), [0]);
    // b wants queue 0 too (broadcasting), but a holds its consume lock.
    assert_eq!(b.assigned().unwrap(), Vec::<i32>::new());
    match b.lock_queue(0) {
        Err(Error::QueueLocked {
            holder,
            queue_id: 0,
            ..
        }) => assert_eq!(holder, "a"),
        other => panic!("expected QueueLocked, got {other:?}"),
    }

    let batch = a.poll(8, Duration::from_secs(1)).unwrap();
    let second = batch.messages().nth(1).unwrap();
    assert_eq!(second.queue_offset(), 1);
    a.fail(&second).unwrap();
    drop(batch);
    let t0 = Instant::now();
    let again = a.poll(8, Duration::from_secs(5)).unwrap();
    assert!(
        t0.elapsed() >= Duration::from_millis(90),
        "retried before the interval"
    );
    let offsets: Vec<u64> = again.messages().map(|m| m.queue_offset()).collect();
    assert_eq!(
        offsets,
        [1, 2],
        "the failed message first, then the ones behind it"
    );
    // a committed 1 (what it processed before the failure) at that poll.
    assert_eq!(
        store.committed_offset("g%BROADCAST%a", T, 0).unwrap(),
        Some(1)
    );
    drop(again);
    drop(a);
    assert_eq!(
        b.assigned().unwrap(),
        [0],
        "the lock is released when a leaves"
    );
}

#[test]
fn bad_commits_are_refused_with_typed_errors() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("s"), config(FlushMode::Async)).unwrap();
    put_n(&store, 1, 2);
    assert!(matches!(
        store.commit_offsets("g", T, &[(0, 3)]),
        Err(Error::OffsetPastMax {
            offset: 3,
            max: 2,
            ..
        })
    ));
    assert!(matches!(
        store.commit_offsets("g", "unknown", &[(0, 1)]),
        Err(Error::OffsetPastMax { max: 0, .. })
    ));
    assert!(matches!(
        store.commit_offsets("bad group", T, &[(0, 1)]),
        Err(Error::InvalidGroup { .. })
    ));
    assert!(matches!(
        store.commit_offsets("g", T, &[(-1, 0)]),
        Err(Error::QueueIdOutOfRange { .. })
    ));
    assert!(matches!(
        store.put(&Message::new("rmq_sys_rocketstore_offsets", 0, b"x")),
        Err(Error::InvalidTopic { .. })
    ));
    let mut c = store.consumer("g", T, ConsumerConfig::default()).unwrap();
    assert!(matches!(
        store.consumer(
            "g",
            T,
            ConsumerConfig {
                consumer_id: Some(c.id().to_owned()),
                ..ConsumerConfig::default()
            }
        ),
        Err(Error::InvalidArgument(_))
    ));
    store.close().unwrap();
    assert!(matches!(c.poll(1, Duration::ZERO), Err(Error::Closed)));
    assert!(matches!(
        store.commit_offsets("g", T, &[(0, 1)]),
        Err(Error::Closed)
    ));
}

#[test]
fn queue_for_key_is_rocketmqs_select_by_hash() {
    // Java: "hello".hashCode() = 99162322; "ORDER-100" = -1900184878;
    // "polygenelubricants" = Integer.MIN_VALUE (Math.abs of the remainder, not of the hash).
    assert_eq!(rocketstore::queue_for_key("hello", 8), 2);
    assert_eq!(rocketstore::queue_for_key("ORDER-100", 8), 6);
    assert_eq!(rocketstore::queue_for_key("polygenelubricants", 8), 0);
    assert_eq!(rocketstore::queue_for_key("polygenelubricants", 7), 2);
}

#[test]
fn a_message_is_found_by_its_offset_message_id() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("s"), config(FlushMode::Async)).unwrap();
    put_n(&store, 1, 3);
    let got = store.get(T, 0, 1, 1).unwrap();
    let m = got.messages().next().unwrap();
    let id = m.msg_id();
    let found = store.read_by_msg_id(&id).unwrap();
    assert_eq!(found.view().body(), m.body());
    assert_eq!(
        store
            .read_by_msg_id(&id.to_lowercase())
            .unwrap()
            .view()
            .queue_offset(),
        1
    );
    assert!(matches!(
        store.read_by_msg_id("nonsense"),
        Err(Error::InvalidArgument(_))
    ));
    // An id whose offset is not a record start.
    let bad = format!("{}{:016X}", &id[..16], m.commitlog_offset() + 1);
    assert!(matches!(
        store.read_by_msg_id(&bad),
        Err(Error::NoRecordAt { .. })
    ));
}

/// Every strategy splits the queues so that a group reads each message exactly once, and after
/// a consumer joins the group still covers every queue once.
#[test]
fn every_allocation_strategy_covers_each_queue_once_before_and_after_a_join() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("s"), config(FlushMode::Async)).unwrap();
    put_n(&store, 16, 3);
    let strategies = [
        Strategy::Averagely,
        Strategy::AveragelyByCircle,
        Strategy::consistent_hash("broker-a"),
    ];
    for (k, strategy) in strategies.iter().enumerate() {
        let group = format!("g{k}");
        let cfg = |id: &str| ConsumerConfig {
            strategy: strategy.clone(),
            consumer_id: Some(id.into()),
            ..from_first()
        };
        let mut members: Vec<_> = ["host-a_1", "host-b_7", "Host-c"]
            .iter()
            .map(|id| store.consumer(&group, T, cfg(id)).unwrap())
            .collect();
        let check = |members: &mut Vec<rocketstore::consumer::Consumer>| {
            let mut all: Vec<i32> = members
                .iter_mut()
                .flat_map(|c| c.assigned().unwrap())
                .collect();
            all.sort_unstable();
            assert_eq!(all, (0..16).collect::<Vec<_>>(), "{strategy:?}");
        };
        check(&mut members);
        let got: Vec<(i32, u64)> = members.iter_mut().flat_map(drain).collect();
        let unique: BTreeSet<_> = got.iter().copied().collect();
        assert_eq!(got.len(), 48, "{strategy:?}: each message once");
        assert_eq!(unique.len(), 48, "{strategy:?}");
        members.push(store.consumer(&group, T, cfg("host-d_2")).unwrap());
        check(&mut members);
    }
}

/// Past 64 hits a key query pages: every hit once, newest first, pages chained by `next`.
#[test]
fn a_key_query_pages_past_64_hits_newest_first_each_hit_once() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("s"), config(FlushMode::Async)).unwrap();
    let mut offsets = Vec::new();
    for i in 0..150u32 {
        let key = if i % 3 == 0 { "OTHER" } else { "HOT" };
        let r = store
            .put(&Message::new(T, (i % 4) as i32, format!("{i}").as_bytes()).with_keys([key]))
            .unwrap();
        if key == "HOT" {
            offsets.push(r.commitlog_offset);
        }
    }
    offsets.reverse();
    let mut got = Vec::new();
    let mut pages = Vec::new();
    let mut before = None;
    loop {
        let page = store
            .query_by_key_page(T, "HOT", 0, i64::MAX, 64, before)
            .unwrap();
        pages.push(page.messages.len());
        got.extend(page.messages.iter().map(|m| m.view().commitlog_offset()));
        match page.next {
            Some(n) => before = Some(n),
            None => break,
        }
    }
    assert_eq!(pages, [64, 36]);
    assert_eq!(got, offsets, "every hit once, newest first");
    // The plain query is the first page.
    let first = store.query_by_key(T, "HOT", 0, i64::MAX, 64).unwrap();
    assert_eq!(first.len(), 64);
    assert_eq!(first[0].view().commitlog_offset(), offsets[0]);
}

/// Offsets for a time across a topic, one per queue.
#[test]
fn offsets_for_a_timestamp_cover_every_queue_of_the_topic() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("s"), config(FlushMode::Async)).unwrap();
    put_n(&store, 3, 2);
    std::thread::sleep(Duration::from_millis(5));
    let mid = store.get(T, 0, 1, 1).unwrap();
    let cut = mid.messages().next().unwrap().store_timestamp() + 1;
    std::thread::sleep(Duration::from_millis(5));
    put_n(&store, 3, 2);
    let lower = store
        .offsets_for_timestamp(T, cut, rocketstore::TimeBoundary::Lower)
        .unwrap();
    assert_eq!(lower.keys().copied().collect::<Vec<_>>(), [0, 1, 2]);
    for (&q, &o) in &lower {
        assert_eq!(
            o,
            store
                .offset_for_timestamp_with(T, q, cut, rocketstore::TimeBoundary::Lower)
                .unwrap()
        );
        assert!((2..=4).contains(&o), "queue {q}: {o}");
    }
    assert!(store
        .offsets_for_timestamp("none", cut, rocketstore::TimeBoundary::Lower)
        .unwrap()
        .is_empty());
}

/// A stored message put again keeps what it carried (the retry path re-puts this way).
#[test]
fn a_stored_message_is_put_again_with_its_properties() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("s"), config(FlushMode::Async)).unwrap();
    let orig = Message::new(T, 1, b"payload")
        .with_tags("TagA")
        .with_keys(["K1", "K2"])
        .with_property("UNIQ_KEY", "0A0B0C0D0000000000000001")
        .with_property("source", "web")
        .with_flag(7)
        .with_born_timestamp(1_700_000_000_000)
        .with_reconsume_times(2);
    store.put(&orig).unwrap();
    let stored = store.get(T, 1, 0, 1).unwrap();
    let v = stored.messages().next().unwrap();
    let again = v.to_message("copy", 0);
    let r = store.put(&again).unwrap();
    let copy = store.read_at(r.commitlog_offset).unwrap();
    let c = copy.view();
    assert_eq!(c.topic(), "copy");
    assert_eq!(c.queue_id(), 0);
    assert_eq!(c.body(), b"payload");
    assert_eq!(c.tags(), Some("TagA"));
    assert_eq!(c.keys().collect::<Vec<_>>(), ["K1", "K2"]);
    assert_eq!(c.property("UNIQ_KEY"), Some("0A0B0C0D0000000000000001"));
    assert_eq!(c.property("source"), Some("web"));
    assert_eq!(c.flag(), 7);
    assert_eq!(c.born_timestamp(), 1_700_000_000_000);
    assert_eq!(c.reconsume_times(), 2);
    // One TAGS, one KEYS, one CRC property (the new record's own), nothing doubled.
    let names: Vec<&str> = c.properties().map(|(n, _)| n).collect();
    for n in ["TAGS", "KEYS", "__CRC32#", "UNIQ_KEY", "source"] {
        assert_eq!(
            names.iter().filter(|&&x| x == n).count(),
            1,
            "{n}: {names:?}"
        );
    }
    assert_eq!(
        store
            .query_by_key("copy", "K2", 0, i64::MAX, 8)
            .unwrap()
            .len(),
        1
    );
}

/// `stats` shows every group's committed offset, the queue's max offset and the lag.
#[test]
fn stats_show_each_groups_committed_offset_max_and_lag() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("s"), config(FlushMode::Async)).unwrap();
    put_n(&store, 2, 5);
    store.commit_offsets("ga", T, &[(0, 3), (1, 5)]).unwrap();
    store.commit_offsets("gb", T, &[(1, 1)]).unwrap();
    let g: Vec<(String, i32, Option<u64>, u64, u64)> = store
        .stats()
        .groups
        .into_iter()
        .map(|g| (g.group, g.queue_id, g.committed, g.max_offset, g.lag))
        .collect();
    assert_eq!(
        g,
        [
            ("ga".into(), 0, Some(3), 5, 2),
            ("ga".into(), 1, Some(5), 5, 0),
            ("gb".into(), 1, Some(1), 5, 4),
        ]
    );
}

/// The periodic checkpoint writes the offset snapshot at most every `flush_thorough_interval`
/// (two fsyncs and two renames per file each time); close writes what is left.
#[test]
fn the_offset_snapshot_is_written_at_most_every_thorough_interval_and_at_close() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("s");
    let store = Store::open(
        &root,
        StoreConfig {
            consume_queue_flush_interval: Duration::from_millis(10),
            flush_thorough_interval: Duration::from_secs(3600),
            ..config(FlushMode::Async)
        },
    )
    .unwrap();
    put_n(&store, 1, 5);
    let file = root.join("config/consumerOffset.json");
    let wait_for = |want: &str| {
        let t0 = Instant::now();
        while t0.elapsed() < Duration::from_secs(5) {
            if std::fs::read_to_string(&file).is_ok_and(|t| t.contains(want)) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        false
    };
    store.commit_offsets("g", T, &[(0, 2)]).unwrap();
    assert!(
        wait_for("0:2"),
        "the first snapshot since open is written by a checkpoint"
    );
    store.commit_offsets("g", T, &[(0, 4)]).unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(text.contains("0:2") && !text.contains("0:4"), "{text}");
    assert_eq!(store.committed_offset("g", T, 0).unwrap(), Some(4));
    store.close().unwrap();
    assert!(std::fs::read_to_string(&file).unwrap().contains("0:4"));
}
