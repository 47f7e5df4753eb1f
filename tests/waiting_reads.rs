//! Waiting reads (issue 15): `get_waiting` and `wait_for_messages` sleep until a put (or, for
//! durable-only reads, a sync) gives them something, honour the tag filter and the timeout, and
//! `close` ends every wait with `Error::Closed`. Durable-only reads never return a message
//! before it is durable.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use rocketstore::{
    Error, FlushMode, GetOptions, GetStatus, Message, Store, StoreConfig, TagFilter,
};

const LONG: Duration = Duration::from_secs(30);

fn open_store(mode: FlushMode) -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let config = StoreConfig {
        flush_mode: mode,
        ..StoreConfig::small()
    };
    let store = Store::open(dir.path().join("s"), config).unwrap();
    (dir, store)
}

/// Waits until `f` holds (a helper thread reached its wait), at most 10 s.
fn eventually(f: impl Fn() -> bool) {
    let t0 = Instant::now();
    while !f() {
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "condition never held"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
}

#[test]
fn a_waiting_get_returns_the_message_a_put_brings_and_skips_what_the_filter_rejects() {
    let (_dir, store) = open_store(FlushMode::Async);
    store.put(&Message::new("t", 0, b"old")).unwrap();
    let returned = AtomicBool::new(false);
    std::thread::scope(|s| {
        let waiter = s.spawn(|| {
            let opts = GetOptions {
                tag_filter: Some(TagFilter::parse("B")),
                ..GetOptions::new(8)
            };
            let r = store.get_waiting("t", 0, 1, &opts, LONG);
            returned.store(true, Ordering::SeqCst);
            r
        });
        // Put into other queues and a rejected tag: the waiter keeps waiting.
        std::thread::sleep(Duration::from_millis(50));
        store.put(&Message::new("t", 1, b"other queue")).unwrap();
        store.put(&Message::new("u", 0, b"other topic")).unwrap();
        store
            .put(&Message::new("t", 0, b"rejected").with_tags("A"))
            .unwrap();
        std::thread::sleep(Duration::from_millis(100));
        assert!(!returned.load(Ordering::SeqCst), "returned without a match");
        store
            .put(&Message::new("t", 0, b"wanted").with_tags("B"))
            .unwrap();
        let got = waiter.join().unwrap().unwrap();
        assert_eq!(got.status(), GetStatus::Found);
        let bodies: Vec<&[u8]> = got.messages().map(|m| m.body()).collect();
        assert_eq!(bodies, [b"wanted".as_slice()]);
        assert_eq!(got.messages().next().unwrap().queue_offset(), 2);
        assert_eq!(got.next_offset(), 3);
    });
}

#[test]
fn a_waiting_get_times_out_with_where_to_go_on() {
    let (_dir, store) = open_store(FlushMode::Async);
    for tag in ["A", "A"] {
        store
            .put(&Message::new("t", 0, b"x").with_tags(tag))
            .unwrap();
    }
    let opts = GetOptions {
        tag_filter: Some(TagFilter::parse("B")),
        ..GetOptions::new(8)
    };
    let t0 = Instant::now();
    let got = store
        .get_waiting("t", 0, 0, &opts, Duration::from_millis(80))
        .unwrap();
    assert!(t0.elapsed() >= Duration::from_millis(80));
    assert_eq!(got.len(), 0);
    // Past the two rejected messages: the next wait starts at 2.
    assert_eq!(got.next_offset(), 2);
    // A queue that does not exist yet can be waited on too.
    let got = store
        .get_waiting("new", 3, 0, &GetOptions::new(1), Duration::from_millis(20))
        .unwrap();
    assert_eq!(got.status(), GetStatus::NoMatchedLogicQueue);
    // Offsets to correct come back at once.
    let t0 = Instant::now();
    let got = store
        .get_waiting("t", 0, 9, &GetOptions::new(1), LONG)
        .unwrap();
    assert_eq!(
        (got.status(), got.next_offset()),
        (GetStatus::OffsetOverflowBadly, 2)
    );
    assert!(t0.elapsed() < Duration::from_secs(5));
}

#[test]
fn wait_for_messages_names_the_queue_that_got_one() {
    let (_dir, store) = open_store(FlushMode::Async);
    store.put(&Message::new("t", 2, b"there already")).unwrap();
    let queues = [("t", 0, 0), ("t", 1, 0), ("t", 2, 1)];
    assert_eq!(
        store
            .wait_for_messages(&queues, false, Duration::from_millis(10))
            .unwrap(),
        None
    );
    std::thread::scope(|s| {
        let w = s.spawn(|| store.wait_for_messages(&queues, false, LONG));
        std::thread::sleep(Duration::from_millis(30));
        store.put(&Message::new("t", 1, b"here")).unwrap();
        assert_eq!(w.join().unwrap().unwrap(), Some(1));
    });
}

#[test]
fn close_ends_every_wait_with_closed() {
    let (_dir, store) = open_store(FlushMode::Sync);
    let started = std::sync::atomic::AtomicUsize::new(0);
    std::thread::scope(|s| {
        let waiters: Vec<_> = (0..16)
            .map(|i| {
                let (store, started) = (&store, &started);
                s.spawn(move || {
                    started.fetch_add(1, Ordering::SeqCst);
                    let opts = GetOptions {
                        durable_only: i % 2 == 0,
                        ..GetOptions::new(1)
                    };
                    store.get_waiting("t", i, 0, &opts, LONG)
                })
            })
            .collect();
        eventually(|| started.load(Ordering::SeqCst) == 16);
        std::thread::sleep(Duration::from_millis(50));
        let t0 = Instant::now();
        store.close().unwrap();
        for w in waiters {
            assert!(matches!(w.join().unwrap(), Err(Error::Closed)));
        }
        assert!(t0.elapsed() < Duration::from_secs(5));
    });
    assert!(matches!(
        store.wait_for_messages(&[("t", 0, 0)], false, LONG),
        Err(Error::Closed)
    ));
}

#[test]
fn durable_only_reads_never_run_ahead_of_the_durable_offset() {
    // Async: a put is visible at once, durable only after a flush.
    let (_dir, store) = open_store(FlushMode::Async);
    let r = store.put(&Message::new("t", 0, b"a")).unwrap();
    let durable_only = GetOptions {
        durable_only: true,
        ..GetOptions::new(8)
    };
    if store.stats().durable_offset <= r.commitlog_offset {
        let got = store.get_with("t", 0, 0, &durable_only).unwrap();
        assert_eq!(got.len(), 0);
        // Not "no message in queue": there is one, it is not durable yet.
        assert_eq!(got.status(), GetStatus::OffsetOverflowOne);
        // A reader that is already past it (it read without durable_only) is not sent back.
        let got = store.get_with("t", 0, 1, &durable_only).unwrap();
        assert_eq!(
            (got.status(), got.next_offset()),
            (GetStatus::OffsetOverflowOne, 1)
        );
    }
    store.flush().unwrap();
    assert_eq!(store.get_with("t", 0, 0, &durable_only).unwrap().len(), 1);

    // Sync: a waiting durable-only reader, woken by the syncs, sees every message and never one
    // that is not durable at the moment it returns.
    let (_dir, store) = open_store(FlushMode::Sync);
    let n = 300;
    std::thread::scope(|s| {
        let reader = s.spawn(|| {
            let mut next = 0;
            while next < n {
                let got = store
                    .get_waiting("t", 0, next, &durable_only, LONG)
                    .unwrap();
                let durable = store.stats().durable_offset;
                for m in got.messages() {
                    assert!(
                        m.commitlog_offset() + m.stored_size() as u64 <= durable,
                        "message {} read before it was durable",
                        m.queue_offset()
                    );
                }
                next = got.next_offset();
            }
        });
        for i in 0..n {
            store
                .put(&Message::new("t", 0, format!("{i}").as_bytes()))
                .unwrap();
        }
        reader.join().unwrap();
    });
}
