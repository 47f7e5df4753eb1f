//! Bad disks, on the simulated disk (TESTING.md §1): EIO on the N-th sync, ENOSPC on the N-th
//! allocation, and media corruption (bit flips, zeroed sectors) under acknowledged data. Each
//! must give a typed error, never bad data, and after a power loss every acknowledged put is
//! still there.

mod common;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use common::*;
use rocketstore::internals::{CrashMode, FaultError, FaultKind, SimVfs, Vfs};
use rocketstore::{Error, FlushMode, Message, PutStatus, Store, StoreConfig};

const ROOT: &str = "/store";

fn config() -> StoreConfig {
    let long = Duration::from_secs(3600);
    StoreConfig {
        flush_mode: FlushMode::Sync,
        sync_flush_timeout: long,
        flush_interval: long,
        flush_thorough_interval: long,
        consume_queue_flush_interval: long,
        preallocate_next_segment: false,
        cleaner_enabled: false,
        ..tiny()
    }
}

fn disk(seed: u64) -> SimVfs {
    let sim = SimVfs::new(seed);
    sim.create_dir_all(Path::new(ROOT)).unwrap();
    sim.sync_dir(Path::new("/")).unwrap();
    sim
}

fn open(sim: &SimVfs) -> rocketstore::Result<Store> {
    Store::open_with_vfs(ROOT, config(), Arc::new(sim.clone()) as Arc<dyn Vfs>)
}

fn body(i: u32) -> Vec<u8> {
    format!("acked {i} ")
        .repeat(1 + (i as usize * 37) % 300)
        .into_bytes()
}

/// After a power loss: every acknowledged put is there, byte for byte, at its offsets.
fn assert_acked_survive(sim: &SimVfs, acked: &[(u32, u64, u64)], seed: u64) {
    let after = sim.crash(CrashMode::Drop, seed);
    let store = open(&after).unwrap_or_else(|e| panic!("seed {seed}: reopen failed: {e}"));
    for &(i, commitlog_offset, queue_offset) in acked {
        let m = store
            .read_at(commitlog_offset)
            .unwrap_or_else(|e| panic!("seed {seed}: acked put {i} lost: {e}"));
        assert_eq!(m.view().body(), body(i).as_slice(), "seed {seed}: put {i}");
        assert_eq!(m.view().queue_offset(), queue_offset);
    }
    assert_eq!(store.max_offset("t", 0).unwrap(), acked.len() as u64);
}

#[test]
fn a_failed_sync_fails_its_put_and_nothing_acknowledged_is_lost() {
    for n in 1..=16u64 {
        let sim = disk(n);
        let store = open(&sim).unwrap();
        sim.fail_nth(FaultKind::Sync, n, FaultError::Eio);
        let mut acked = Vec::new();
        let mut failures = 0;
        for i in 0..40u32 {
            match store.put(&Message::new("t", 0, &body(i))) {
                Ok(r) => {
                    assert_eq!(r.status, PutStatus::Ok);
                    acked.push((i, r.commitlog_offset, r.queue_offset));
                }
                // A failed CommitLog sync: the put fails and the store refuses writes until it
                // is reopened (a failed sync is never retried into an acknowledgement).
                Err(Error::FlushFailed { .. }) => {
                    failures += 1;
                    assert!(matches!(
                        store.put(&Message::new("t", 0, b"after")),
                        Err(Error::ReadOnly { .. })
                    ));
                    assert!(store.stats().read_only_reason.is_some());
                    break;
                }
                // A failed directory sync while creating a ConsumeQueue or IndexFile for the put:
                // refused before anything was appended, with the path.
                Err(Error::Io { path, .. }) => {
                    failures += 1;
                    assert!(path.starts_with(ROOT), "n={n}: {path:?}");
                }
                // A failure while rolling the CommitLog turns the store read-only too.
                Err(Error::ReadOnly { .. }) if failures == 1 => break,
                Err(e) => panic!("n={n}: put {i}: untyped outcome {e:?}"),
            }
        }
        assert_eq!(
            failures, 1,
            "n={n}: the injected EIO must surface exactly once"
        );
        // Reads still work.
        for &(i, off, _) in &acked {
            assert_eq!(
                store.read_at(off).unwrap().view().body(),
                body(i).as_slice()
            );
        }
        let _ = store.close();
        drop(store);
        // Acknowledged puts are numbered by their queue offset only if nothing was refused in
        // between; the check uses what each put returned.
        let after = sim.crash(CrashMode::Drop, n);
        let store = open(&after).unwrap_or_else(|e| panic!("n={n}: reopen failed: {e}"));
        for &(i, off, qoff) in &acked {
            let m = store
                .read_at(off)
                .unwrap_or_else(|e| panic!("n={n}: acked put {i} lost: {e}"));
            assert_eq!(m.view().body(), body(i).as_slice());
            assert_eq!(m.view().queue_offset(), qoff);
        }
    }
}

#[test]
fn enospc_on_allocation_refuses_puts_until_space_returns_and_loses_nothing() {
    for n in 1..=6u64 {
        let sim = disk(100 + n);
        let store = open(&sim).unwrap();
        sim.fail_nth(FaultKind::Allocate, n, FaultError::Enospc);
        let mut acked = Vec::new();
        let mut refused = 0;
        let mut i = 0u32;
        while acked.len() < 600 {
            match store.put(&Message::new("t", 0, &body(i))) {
                Ok(r) => {
                    acked.push((i, r.commitlog_offset, r.queue_offset));
                    i += 1;
                }
                Err(Error::DiskFull { .. }) => refused += 1,
                Err(e) => panic!("n={n}: {e:?}"),
            }
            assert!(refused <= 1, "n={n}: a one-shot ENOSPC refused twice");
        }
        assert_eq!(refused, 1, "n={n}: the ENOSPC never surfaced");
        assert!(store.stats().read_only_reason.is_none());
        store.close().unwrap();
        drop(store);
        assert_acked_survive(&sim, &acked, n);
    }
}

#[test]
fn media_corruption_under_acknowledged_data_is_a_typed_error_or_a_repair_never_bad_data() {
    for seed in 0..40u64 {
        let sim = disk(1000 + seed);
        let store = open(&sim).unwrap();
        let mut acked = Vec::new();
        for i in 0..300u32 {
            let r = store.put(&Message::new("t", 0, &body(i))).unwrap();
            acked.push((i, r.commitlog_offset));
        }
        store.close().unwrap();
        drop(store);
        let damaged = if seed % 2 == 0 {
            sim.flip_random_bit(Path::new(ROOT))
        } else {
            let seg = Path::new(ROOT).join("commitlog/00000000000000000000");
            sim.zero_sector(&seg, seed * 7 % 200).unwrap();
            Some((seg, 0))
        };
        assert!(damaged.is_some());
        // A crash, so recovery cannot trust the checkpoint alone.
        let after = sim.crash(CrashMode::Kill, seed);
        std::mem::drop(after.open_file(
            &Path::new(ROOT).join("abort"),
            rocketstore::internals::OpenMode::CreateOrOpen,
        ));
        match open(&after) {
            Ok(store) => {
                // Whatever opened serves only true records.
                for &(i, off) in &acked {
                    if let Ok(m) = store.read_at(off) {
                        assert_eq!(m.view().body(), body(i).as_slice(), "seed {seed}: {i}");
                    }
                }
                let g = store.get("t", 0, 0, 32);
                if let Ok(g) = g {
                    for m in g.messages() {
                        let i = m.queue_offset() as u32;
                        assert_eq!(m.body(), body(i).as_slice(), "seed {seed}");
                    }
                }
            }
            Err(Error::Corruption { .. })
            | Err(Error::CorruptRecord { .. })
            | Err(Error::Layout { .. }) => {}
            Err(e) => panic!("seed {seed}: untyped outcome {e:?} after {damaged:?}"),
        }
    }
}
