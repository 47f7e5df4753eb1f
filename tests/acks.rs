//! Durability acknowledgements without a blocked thread per put: `Store::put_with_ack` and
//! `Store::when_durable` (src/engine/acks.rs).

use std::sync::{mpsc, Arc};
use std::time::Duration;

use rocketstore::{Error, FlushMode, Message, PutStatus, Store, StoreConfig};
use rocketstore_test_support::FaultVfs;

fn config(flush_mode: FlushMode) -> StoreConfig {
    StoreConfig {
        flush_mode,
        preallocate_next_segment: false,
        flush_interval: Duration::from_millis(20),
        ..StoreConfig::small()
    }
}

/// `n` puts from one thread, each acknowledged through a channel; returns per put its end
/// offset, the durable offset the store reported when its callback ran, and whether `Ok`.
fn put_n(store: &Arc<Store>, n: u32) -> Vec<(u32, u64, u64, bool)> {
    let (tx, rx) = mpsc::channel();
    let mut ends = Vec::new();
    for i in 0..n {
        let body = i.to_be_bytes();
        let (tx, s) = (tx.clone(), store.clone());
        let r = store
            .put_with_ack(&[Message::new("acks", (i % 4) as i32, &body)], move |r| {
                let _ = tx.send((i, s.durable_offset(), r.is_ok()));
            })
            .unwrap();
        assert_eq!(r.status, PutStatus::Ok);
        ends.push(r.commitlog_offset + r.wrote_bytes as u64);
        // Readable at once, whether or not durable yet.
        let got = store.read_at(r.commitlog_offset).unwrap();
        assert_eq!(got.view().body(), body);
    }
    let acked: Vec<(u32, u64, bool)> = (0..n)
        .map(|_| {
            rx.recv_timeout(Duration::from_secs(30))
                .expect("every put is acknowledged")
        })
        .collect();
    let order: Vec<u32> = acked.iter().map(|a| a.0).collect();
    assert_eq!(
        order,
        (0..n).collect::<Vec<_>>(),
        "acknowledged once each, in put order"
    );
    acked
        .into_iter()
        .map(|(i, durable, ok)| (i, ends[i as usize], durable, ok))
        .collect()
}

#[test]
fn sync_puts_from_one_thread_are_each_acknowledged_once_durable() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(Store::open(dir.path(), config(FlushMode::Sync)).unwrap());
    for (i, end, durable, ok) in put_n(&store, 2000) {
        assert!(ok, "put {i}");
        assert!(
            durable >= end,
            "put {i} acknowledged at durable {durable} < its end {end}"
        );
    }
    store.close().unwrap();
}

#[test]
fn async_puts_are_acknowledged_by_the_flusher_without_waiting_for_least_pages() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(
        Store::open(
            dir.path(),
            StoreConfig {
                // Far more than the test writes: only a pending acknowledgement makes it sync.
                flush_least_pages: 1 << 20,
                flush_thorough_interval: Duration::from_secs(3600),
                ..config(FlushMode::Async)
            },
        )
        .unwrap(),
    );
    for (i, end, durable, ok) in put_n(&store, 50) {
        assert!(ok && durable >= end, "put {i}: {durable} < {end}");
    }
    store.close().unwrap();
}

#[test]
fn when_durable_runs_at_once_for_a_durable_offset_and_refuses_one_past_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), config(FlushMode::Sync)).unwrap();
    let r = store.put(&Message::new("acks", 0, b"x")).unwrap();
    let end = r.commitlog_offset + r.wrote_bytes as u64;
    let (tx, rx) = mpsc::channel();
    store
        .when_durable(end, move |r| tx.send(r.is_ok()).unwrap())
        .unwrap();
    // Ran before `when_durable` returned.
    assert_eq!(rx.try_recv(), Ok(true));
    let past = store.when_durable(end + 1, |_| panic!("must not run"));
    assert!(matches!(past, Err(Error::InvalidArgument(_))), "{past:?}");
    store.close().unwrap();
    let closed = store.when_durable(0, |_| panic!("must not run"));
    assert!(matches!(closed, Err(Error::Closed)), "{closed:?}");
}

#[test]
fn a_callback_may_register_another_from_inside_the_sync_thread() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(Store::open(dir.path(), config(FlushMode::Sync)).unwrap());
    let (tx, rx) = mpsc::channel();
    let s = store.clone();
    store
        .put_with_ack(&[Message::new("acks", 0, b"first")], move |r| {
            assert!(r.is_ok());
            // Durable already: runs inside this callback, on this thread, without deadlock.
            let end = s.durable_offset();
            s.when_durable(end, move |r| tx.send(r.is_ok()).unwrap())
                .unwrap();
        })
        .unwrap();
    assert_eq!(rx.recv_timeout(Duration::from_secs(10)), Ok(true));
    store.close().unwrap();
}

#[test]
fn the_last_handle_to_the_store_may_drop_inside_a_callback() {
    let dir = tempfile::tempdir().unwrap();
    for mode in [FlushMode::Sync, FlushMode::Async] {
        let store = Arc::new(Store::open(dir.path(), config(mode)).unwrap());
        let (tx, rx) = mpsc::channel();
        let s = store.clone();
        store
            .put_with_ack(&[Message::new("acks", 0, b"x")], move |r| {
                // Wait until the test dropped its handle: this one is the last, and dropping
                // it closes the store on the thread running the callback.
                while Arc::strong_count(&s) > 1 {
                    std::thread::yield_now();
                }
                drop(s);
                tx.send(r.is_ok()).unwrap();
            })
            .unwrap();
        drop(store);
        assert_eq!(
            rx.recv_timeout(Duration::from_secs(10)),
            Ok(true),
            "{mode:?}"
        );
        // Closed cleanly: the root opens again (the lock is free) without recovery.
        let again = Store::open(dir.path(), config(mode)).unwrap();
        assert!(again.recovery_report().clean_shutdown, "{mode:?}");
        again.close().unwrap();
    }
}

#[test]
fn a_failed_sync_fails_every_pending_acknowledgement_and_every_later_one() {
    let dir = tempfile::tempdir().unwrap();
    let vfs = FaultVfs::new();
    let store = Store::open_with_vfs(
        dir.path(),
        StoreConfig {
            consume_queue_flush_interval: Duration::from_secs(3600),
            ..config(FlushMode::Sync)
        },
        vfs.clone(),
    )
    .unwrap();
    let (tx, rx) = mpsc::channel();
    let t = tx.clone();
    store
        .put_with_ack(&[Message::new("acks", 0, b"ok")], move |r| {
            t.send(("before", r.is_ok())).unwrap()
        })
        .unwrap();
    assert_eq!(
        rx.recv_timeout(Duration::from_secs(10)),
        Ok(("before", true))
    );
    vfs.fail_commitlog_syncs(true);
    let t = tx.clone();
    store
        .put_with_ack(&[Message::new("acks", 0, b"lost")], move |r| {
            let failed = matches!(r, Err(Error::FlushFailed { .. }));
            t.send(("failed", failed)).unwrap()
        })
        .unwrap();
    assert_eq!(
        rx.recv_timeout(Duration::from_secs(10)),
        Ok(("failed", true))
    );
    // The disk "recovers": nothing written after the failure is ever acknowledged.
    vfs.fail_commitlog_syncs(false);
    let later = store.put_with_ack(&[Message::new("acks", 0, b"after")], |_| {});
    assert!(
        matches!(later, Err(Error::ReadOnly { .. })),
        "a read-only store takes no put: {later:?}"
    );
    let end = store.commitlog_max_offset();
    store
        .when_durable(end, move |r| {
            tx.send(("later", matches!(r, Err(Error::FlushFailed { .. }))))
                .unwrap()
        })
        .unwrap();
    assert_eq!(
        rx.recv_timeout(Duration::from_secs(10)),
        Ok(("later", true))
    );
    let _ = store.close();
}
