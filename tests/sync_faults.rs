//! Fault injection through the `Vfs` seam: failed syncs and slow syncs in Sync mode, on
//! [`FaultVfs`] (the real file system with switchable faults).
//! (The full simulated disk with crash images is `tests/crash_torture.rs`'s; these cover the
//! durability rules that need a sync to misbehave on demand.)

use std::sync::{mpsc, Arc};
use std::time::Duration;

use rocketstore::{Error, FlushMode, Message, PutStatus, Store, StoreConfig};
use rocketstore_test_support::FaultVfs;

fn sync_config() -> StoreConfig {
    StoreConfig {
        flush_mode: FlushMode::Sync,
        preallocate_next_segment: false,
        // No periodic flush: its CommitLog sync would race the syncs these tests stage (CI once
        // saw the background flusher, not the put's leader, take the slowed sync).
        consume_queue_flush_interval: Duration::from_secs(3600),
        ..StoreConfig::small()
    }
}

#[test]
fn failed_sync_is_never_acknowledged_and_turns_store_read_only() {
    let dir = tempfile::tempdir().unwrap();
    let vfs = FaultVfs::new();
    let store = Store::open_with_vfs(dir.path(), sync_config(), vfs.clone()).unwrap();
    let ok = store.put(&Message::new("t", 0, b"durable")).unwrap();
    assert_eq!(ok.status, PutStatus::Ok);

    vfs.fail_commitlog_syncs(true);
    let failed = store.put(&Message::new("t", 0, b"not acknowledged"));
    assert!(
        matches!(failed, Err(Error::FlushFailed { .. })),
        "{failed:?}"
    );
    // Never retried into an acknowledgement, even once the disk "recovers".
    vfs.fail_commitlog_syncs(false);
    assert!(matches!(
        store.put(&Message::new("t", 0, b"x")),
        Err(Error::ReadOnly { .. })
    ));
    // Reads keep working.
    assert_eq!(
        store
            .get("t", 0, 0, 1)
            .unwrap()
            .messages()
            .next()
            .unwrap()
            .body(),
        b"durable"
    );
    // Close refuses to bless the state: `abort` stays, the next open recovers.
    assert!(matches!(store.close(), Err(Error::ReadOnly { .. })));
    assert!(dir.path().join("abort").exists());
    drop(store);

    let store = Store::open(dir.path(), sync_config()).unwrap();
    assert!(!store.recovery_report().clean_shutdown);
    let first = store.read_at(ok.commitlog_offset).unwrap();
    assert_eq!(first.view().body(), b"durable");
    // A new acknowledged put lands after whatever recovery kept.
    let again = store.put(&Message::new("t", 0, b"after")).unwrap();
    assert_eq!(again.status, PutStatus::Ok);
    assert_eq!(
        store.read_at(again.commitlog_offset).unwrap().view().body(),
        b"after"
    );
    store.close().unwrap();
}

#[test]
fn slow_sync_gives_flush_disk_timeout_to_waiters_not_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let vfs = FaultVfs::new();
    let config = StoreConfig {
        sync_flush_timeout: Duration::from_millis(50),
        ..sync_config()
    };
    let store = Arc::new(Store::open_with_vfs(dir.path(), config, vfs.clone()).unwrap());
    // The first segment's creation syncs too: create it before syncs are slowed, so the slowed
    // sync the test waits for is the group commit's.
    store.put(&Message::new("warm-up", 0, b"x")).unwrap();
    let (tx, rx) = mpsc::channel();
    vfs.notify_slow_sync(tx);
    vfs.slow_commitlog_syncs(Duration::from_millis(600));

    let first = {
        let s = store.clone();
        std::thread::spawn(move || s.put(&Message::new("t", 0, b"first")).unwrap())
    };
    rx.recv().unwrap(); // the sync thread is inside the (slow) sync of `first` now
    let follower = store.put(&Message::new("t", 0, b"follower")).unwrap();
    assert_eq!(follower.status, PutStatus::FlushDiskTimeout);
    // Puts never sync themselves: the put whose record the hung sync covers also returns at
    // its timeout, not when the sync comes back (it would then have said Ok).
    assert_eq!(first.join().unwrap().status, PutStatus::FlushDiskTimeout);
    vfs.slow_commitlog_syncs(Duration::ZERO);
    // The follower's record is stored and becomes durable with the next sync.
    assert_eq!(
        store
            .get("t", 0, 1, 1)
            .unwrap()
            .messages()
            .next()
            .unwrap()
            .body(),
        b"follower"
    );
    store.flush().unwrap();
    assert!(store.durable_offset() >= follower.commitlog_offset + follower.wrote_bytes as u64);
    Arc::try_unwrap(store).ok().unwrap().close().unwrap();
}

/// After a failed fsync the kernel may have dropped the dirty pages; a later fsync can then
/// succeed without them. So a failed CommitLog sync is final: a flush after the disk "recovers"
/// still fails, and the durable offset never moves past what the failed sync should have made
/// durable.
#[test]
fn a_failed_commitlog_sync_is_never_retried_into_durability() {
    let dir = tempfile::tempdir().unwrap();
    let vfs = FaultVfs::new();
    let config = StoreConfig {
        consume_queue_flush_interval: Duration::from_secs(3600),
        flush_interval: Duration::from_secs(3600),
        ..StoreConfig::small()
    };
    let store = Store::open_with_vfs(dir.path(), config, vfs.clone()).unwrap();
    store.put(&Message::new("t", 0, b"synced")).unwrap();
    store.flush().unwrap();
    let durable = store.durable_offset();
    store
        .put(&Message::new("t", 0, b"lost to the failed sync"))
        .unwrap();
    vfs.fail_commitlog_syncs(true);
    assert!(store.flush().is_err());
    vfs.fail_commitlog_syncs(false);
    assert!(
        store.flush().is_err(),
        "a flush after a failed sync succeeded"
    );
    assert_eq!(store.durable_offset(), durable);
    assert!(matches!(
        store.put(&Message::new("t", 0, b"x")),
        Err(Error::ReadOnly { .. })
    ));
}
