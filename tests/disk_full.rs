//! A full disk: puts fail with a typed error and write nothing, nothing acknowledged is lost,
//! reads keep working, and the store becomes writable again by itself when space returns.
//!
//! The disk is the real one behind test-support's `FaultVfs`, a thin `Vfs` wrapper that can
//! report any fill ratio and fail file allocation with `ENOSPC`; a last test fills a real,
//! small tmpfs where the machine lets the test mount one.

mod common;

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use rocketstore::internals::{SimVfs, Vfs};
use rocketstore::{Error, GetStatus, Message, Store, StoreConfig};
use rocketstore_test_support::FaultVfs;

fn config() -> StoreConfig {
    StoreConfig {
        cleaner_enabled: false,
        // Segments are created inline, so an ENOSPC shows up in the put that rolls.
        preallocate_next_segment: false,
        // The simulated disk's fill is what these tests are about: RocketMQ's ratios, not the
        // relaxed ones `tiny` uses to keep the host's disk out of other tests.
        disk_max_used_space_ratio: StoreConfig::default().disk_max_used_space_ratio,
        disk_space_clean_forcibly_ratio: StoreConfig::default().disk_space_clean_forcibly_ratio,
        disk_space_warning_level_ratio: StoreConfig::default().disk_space_warning_level_ratio,
        ..tiny()
    }
}

/// The real file system reporting a disk half full (whatever the host's disk is) until a test
/// says otherwise.
fn half_full_disk() -> Arc<FaultVfs> {
    let disk = FaultVfs::new();
    disk.set_used(0.5);
    disk
}

fn open(root: &Path, disk: &Arc<FaultVfs>) -> Store {
    Store::open_with_vfs(root, config(), disk.clone()).unwrap()
}

fn msg(i: u32) -> Vec<u8> {
    format!("message {i:06} ").repeat(20).into_bytes()
}

fn assert_disk_full<T: std::fmt::Debug>(r: rocketstore::Result<T>) {
    match r {
        Err(Error::DiskFull { .. }) => {}
        other => panic!("expected DiskFull, got {other:?}"),
    }
}

/// Every message `0..n` of `t/0` reads back in order.
fn assert_all_there(store: &Store, n: u32) {
    let mut next = 0u64;
    while next < n as u64 {
        let g = store.get("t", 0, next, 64).unwrap();
        assert_eq!(g.status(), GetStatus::Found, "at {next}");
        for m in g.messages() {
            assert_eq!(m.body(), msg(next as u32).as_slice());
            next += 1;
        }
    }
    assert_eq!(store.max_offset("t", 0).unwrap(), n as u64);
}

#[test]
fn above_the_warning_ratio_puts_fail_and_write_nothing_until_space_returns() {
    let dir = tempfile::tempdir().unwrap();
    let disk = half_full_disk();
    let store = open(dir.path(), &disk);
    for i in 0..10 {
        store.put(&Message::new("t", 0, &msg(i))).unwrap();
    }
    disk.set_used(0.95);
    // The cleaner's pass (here run by hand) sees the disk and refuses puts from then on.
    let report = store.clean_expired_now().unwrap();
    assert!(report.disk_used_ratio.unwrap() > 0.9);
    let end = store.commitlog_max_offset();
    assert_disk_full(store.put(&Message::new("t", 0, &msg(10))));
    assert_disk_full(store.put(&Message::new("t", 1, b"new queue")));
    assert_eq!(store.commitlog_max_offset(), end, "nothing written");
    assert_eq!(store.max_offset("t", 1).unwrap(), 0);
    let s = store.stats();
    assert!(s.disk_full_reason.unwrap().contains("95.0% used"));
    assert!(
        s.read_only_reason.is_none(),
        "a full disk is not a failed sync"
    );
    // Reads keep working.
    assert_all_there(&store, 10);

    // Space returns: a refused put looks at the disk again within a second.
    disk.set_used(0.50);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match store.put(&Message::new("t", 0, &msg(10))) {
            Ok(r) => {
                assert_eq!(r.queue_offset, 10);
                break;
            }
            Err(Error::DiskFull { .. }) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(50))
            }
            Err(e) => panic!("{e}"),
        }
    }
    assert!(store.stats().disk_full_reason.is_none());
    store.close().unwrap();
    let store = open(dir.path(), &disk);
    assert_all_there(&store, 11);
    store.close().unwrap();
}

#[test]
fn a_roll_into_a_nearly_full_disk_is_refused_before_the_cleaner_notices() {
    let dir = tempfile::tempdir().unwrap();
    let disk = half_full_disk();
    let store = open(dir.path(), &disk);
    let mut acked = 0;
    // Fill most of the first segment while the disk looks fine.
    while store.commitlog_max_offset() + 2 * msg(0).len() as u64 + 200 < SEG {
        store.put(&Message::new("t", 0, &msg(acked))).unwrap();
        acked += 1;
    }
    disk.set_used(0.93);
    // Puts that fit the active segment need no new space; the one that rolls is refused.
    let mut refused = false;
    for _ in 0..10 {
        match store.put(&Message::new("t", 0, &msg(acked))) {
            Ok(_) => acked += 1,
            Err(Error::DiskFull { .. }) => {
                refused = true;
                break;
            }
            Err(e) => panic!("{e}"),
        }
    }
    assert!(refused);
    assert!(store.commitlog_max_offset() <= SEG);
    assert_all_there(&store, acked);
    store.close().unwrap();
}

#[test]
fn enospc_while_creating_files_fails_the_put_cleanly_and_recovers_by_itself() {
    let dir = tempfile::tempdir().unwrap();
    let disk = half_full_disk();
    let store = open(dir.path(), &disk);
    let mut acked = 0u32;
    disk.fail_allocations(true);
    // A new queue needs a ConsumeQueue file: refused before anything is appended.
    let end = store.commitlog_max_offset();
    assert_disk_full(store.put(&Message::new("t", 0, &msg(0))));
    assert_eq!(store.commitlog_max_offset(), end);
    disk.fail_allocations(false);
    // The disk stays full; each put that needs a new file (ConsumeQueue every 100 units,
    // IndexFile every 199 keys, CommitLog segment every ~330 messages) is refused first, then
    // goes through once space is back.
    let mut refusals = 0;
    while acked < 800 {
        disk.fail_allocations(true);
        let m = msg(acked);
        let key = format!("k{acked}");
        let put = || store.put(&Message::new("t", 0, &m).with_keys([key.as_str()]));
        let r = match put() {
            Ok(r) => r,
            Err(Error::DiskFull { .. }) => {
                refusals += 1;
                assert!(store.stats().read_only_reason.is_none());
                disk.fail_allocations(false);
                put().unwrap()
            }
            Err(e) => panic!("put {acked}: {e}"),
        };
        assert_eq!(r.queue_offset, acked as u64);
        acked += 1;
    }
    // 7 ConsumeQueue files, 4 IndexFile rolls, 2 CommitLog rolls at least.
    assert!(refusals >= 10, "{refusals} refusals");
    let s = store.stats();
    assert!(s.read_only_reason.is_none(), "{:?}", s.read_only_reason);
    assert_eq!(s.dispatch_lag_bytes, 0);
    assert_all_there(&store, acked);
    store.close().unwrap();
    let store = open(dir.path(), &disk);
    assert_all_there(&store, acked);
    for i in [0, 150, 799] {
        let hits = store
            .query_by_key("t", &format!("k{i}"), 0, i64::MAX, 4)
            .unwrap();
        assert_eq!(hits.len(), 1, "key k{i}");
    }
    store.close().unwrap();
}

/// A small file system that is mostly free, but smaller than one segment: the put that creates
/// the first segment says what it needed, what is free and which setting to change, and the
/// stats carry the same words (issue 14). Both with the background allocator (the default) and
/// without it.
#[test]
fn a_segment_larger_than_the_free_space_says_what_it_needs_and_what_is_free() {
    for preallocate in [true, false] {
        let sim = SimVfs::new(7);
        let root = Path::new("/store");
        sim.create_dir_all(root).unwrap();
        sim.set_capacity(600 << 10);
        let config = StoreConfig {
            commitlog_segment_size: 1 << 20,
            preallocate_next_segment: preallocate,
            ..config()
        };
        let store =
            Store::open_with_vfs(root, config, Arc::new(sim.clone()) as Arc<dyn Vfs>).unwrap();
        let err = store.put(&Message::new("t", 0, &msg(0))).unwrap_err();
        let Error::DiskFull { path, reason } = &err else {
            panic!("expected DiskFull, got {err:?}");
        };
        assert_eq!(path, &root.join("commitlog").join("00000000000000000000"));
        let free = sim.disk_usage(root).unwrap().available_bytes;
        assert!(free < 1 << 20 && free > 500 << 10, "{free} bytes free");
        let want = format!(
            "creating CommitLog segment 00000000000000000000 needs 1048576 bytes, the file \
             system has {free} bytes free (commitlog_segment_size is 1 MiB; set a smaller \
             commitlog_segment_size)"
        );
        assert!(reason.starts_with(&want), "{reason}\nwant {want}");
        assert!(err.to_string().contains(&want), "{err}");
        let s = store.stats();
        assert_eq!(s.disk_full_reason.as_deref(), Some(reason.as_str()));
        assert!(s.read_only_reason.is_none(), "{:?}", s.read_only_reason);
        // Space returns (a bigger disk): the next put goes through at once and the reason is
        // gone.
        sim.set_capacity(64 << 20);
        let r = store.put(&Message::new("t", 0, &msg(0))).unwrap();
        assert_eq!(r.queue_offset, 0);
        assert!(store.stats().disk_full_reason.is_none());
        assert_all_there(&store, 1);
        store.close().unwrap();
    }
}

/// A real full file system: a 4 MiB tmpfs. Needs the right to mount (root in a sandbox); the
/// test says so and passes without checking anything where it cannot mount.
#[test]
fn a_real_small_file_system_fills_up_without_losing_acknowledged_messages() {
    let mnt = tempfile::tempdir().unwrap();
    let mounted = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=4m", "tmpfs"])
        .arg(mnt.path())
        .status()
        .is_ok_and(|s| s.success());
    if !mounted {
        eprintln!("SKIPPED: cannot mount a tmpfs here (not root?)");
        return;
    }
    struct Unmount<'a>(&'a Path);
    impl Drop for Unmount<'_> {
        fn drop(&mut self) {
            let _ = std::process::Command::new("umount").arg(self.0).status();
        }
    }
    let _guard = Unmount(mnt.path());
    let root = mnt.path().join("store");
    let config = StoreConfig {
        cleaner_enabled: false,
        // Above the warning ratio only ENOSPC can stop the store: test the hard limit.
        disk_space_warning_level_ratio: 0.99,
        disk_space_clean_forcibly_ratio: 0.99,
        ..tiny()
    };
    let store = Store::open(&root, config.clone()).unwrap();
    let mut acked = 0u32;
    let full = loop {
        match store.put(&Message::new("t", 0, &msg(acked))) {
            Ok(_) => acked += 1,
            Err(e) => break e,
        }
        assert!(acked < 100_000, "4 MiB never filled");
    };
    assert!(matches!(full, Error::DiskFull { .. }), "{full}");
    assert!(acked > 100);
    assert_all_there(&store, acked);
    // Space returns: delete the oldest segments.
    store.delete_before(store.commitlog_max_offset()).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let first_after = acked;
    loop {
        match store.put(&Message::new("t", 0, &msg(acked))) {
            Ok(_) => {
                acked += 1;
                break;
            }
            Err(Error::DiskFull { .. }) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(50))
            }
            Err(e) => panic!("{e}"),
        }
    }
    store.close().unwrap();
    let store = Store::open(&root, config).unwrap();
    assert_eq!(store.max_offset("t", 0).unwrap(), acked as u64);
    let g = store.get("t", 0, first_after as u64, 1).unwrap();
    assert_eq!(
        g.messages().next().unwrap().body(),
        msg(first_after).as_slice()
    );
    store.close().unwrap();
}

/// A full disk during scheduled delivery: the pass fails with `DiskFull`, nothing it could not
/// re-put is marked delivered, and delivery resumes when space returns, every message once.
#[test]
fn a_full_disk_during_delivery_loses_nothing_and_delivery_resumes() {
    use rocketstore::clock::{Clock, ManualClock};
    let dir = tempfile::tempdir().unwrap();
    let disk = half_full_disk();
    let clock = ManualClock::new(1_700_000_000_000);
    let cfg = StoreConfig {
        clock: Clock::manual(clock.clone()),
        ..config()
    };
    let store = Store::open_with_vfs(dir.path(), cfg, disk.clone()).unwrap();
    for i in 0..5 {
        // Level 18 (2 h): its queue id 17 is past this config's 8 queues per topic, which
        // bind user topics only.
        store
            .put(&Message::new("t", 0, &msg(i)).with_delay_level(if i == 4 { 18 } else { 1 }))
            .unwrap();
    }
    clock.advance(Duration::from_secs(3 * 3600));
    disk.set_used(0.95);
    store.clean_expired_now().unwrap();
    assert_disk_full(store.deliver_due());
    assert_eq!(store.max_offset("t", 0).unwrap(), 0, "nothing delivered");
    let pending: u64 = store.schedule_stats().iter().map(|l| l.pending).sum();
    assert_eq!(pending, 5, "nothing marked delivered");
    disk.set_used(0.50);
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut delivered = 0;
    while delivered < 5 {
        match store.deliver_due() {
            Ok(p) => delivered += p.delivered,
            Err(Error::DiskFull { .. }) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(50))
            }
            Err(e) => panic!("{e}"),
        }
    }
    assert_all_there(&store, 5);
    assert_eq!(store.deliver_due().unwrap().delivered, 0, "each once");
    store.close().unwrap();
}
