//! A CommitLog whose segment files are not contiguous (issue 20): a crash during recovery's cut
//! or retention of an older version, or a file deleted by hand, left a gap. `open` closes a gap
//! that is the remains of an interrupted cut, refuses any other with `Error::SegmentGap` and
//! changes nothing, and `StoreConfig::segment_gap` chooses the side to keep. And the removals
//! themselves never leave a gap now: a recovery that must delete several segments is crashed
//! after every one of its disk operations, in every crash mode, and each root it leaves opens
//! without a gap to repair.

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use common::{tiny, SEG};
use rocketstore::internals::{CrashMode, OpenMode, SimVfs, Vfs};
use rocketstore::{Error, GapPolicy, GetOptions, GetStatus, Message, Store, StoreConfig};
use rocketstore_test_support::{copy_tree, files_under};

const TOPIC: &str = "gaps";

/// Bodies of every message of queue 0, in order, from the queue's min offset.
fn bodies(store: &Store) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut next = store.min_offset(TOPIC, 0).unwrap();
    let max = store.max_offset(TOPIC, 0).unwrap();
    while next < max {
        let g = store
            .get_with(TOPIC, 0, next, &GetOptions::new(64))
            .unwrap();
        assert_eq!(g.status(), GetStatus::Found, "{TOPIC}/0@{next}");
        out.extend(g.messages().map(|m| m.body().to_vec()));
        next = g.next_offset();
    }
    out
}

fn body(i: usize) -> Vec<u8> {
    format!("message {i:06} ").repeat(40).into_bytes()
}

/// Writes messages until the log reaches into segment `segments - 1`, closes, and returns the
/// bodies with the CommitLog offset of each.
fn write_store(root: &Path, config: &StoreConfig, segments: u64) -> Vec<(u64, Vec<u8>)> {
    let store = Store::open(root, config.clone()).unwrap();
    let mut out = Vec::new();
    while store.commitlog_max_offset() < (segments - 1) * SEG + SEG / 3 {
        let b = body(out.len());
        let r = store.put(&Message::new(TOPIC, 0, &b)).unwrap();
        out.push((r.commitlog_offset, b));
    }
    store.close().unwrap();
    out
}

fn segment(root: &Path, n: u64) -> PathBuf {
    root.join("commitlog").join(format!("{:020}", n * SEG))
}

#[test]
fn a_gap_behind_a_log_that_ends_inside_its_segment_is_an_interrupted_cut_and_is_closed() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("s");
    let config = tiny();
    let written = write_store(&root, &config, 3);
    // What a cut interrupted by a crash of an older version left: the log ends inside segment
    // 2; segment 3 is gone, segment 4 (prepared, never written) survived.
    for n in [3, 4] {
        let f = fs::File::create(segment(&root, n)).unwrap();
        f.set_len(SEG).unwrap();
    }
    fs::remove_file(segment(&root, 3)).unwrap();
    fs::write(root.join("abort"), b"").unwrap();

    let store = Store::open(&root, config.clone()).unwrap();
    let repair = store
        .recovery_report()
        .gap_repaired
        .clone()
        .expect("the gap is reported");
    assert_eq!((repair.missing_from, repair.missing_to), (3 * SEG, 4 * SEG));
    assert_eq!(repair.removed, vec![segment(&root, 4)]);
    assert!(!segment(&root, 4).exists());
    let want: Vec<Vec<u8>> = written.iter().map(|(_, b)| b.clone()).collect();
    assert_eq!(bodies(&store), want);
    // A put continues the log right where it ended.
    let r = store.put(&Message::new(TOPIC, 0, b"after")).unwrap();
    let (last_off, last) = written.last().unwrap();
    assert_eq!(
        r.commitlog_offset,
        last_off + (store.read_at(*last_off).unwrap().view().as_bytes().len() as u64)
    );
    assert!(last.len() > 1);
    store.close().unwrap();
    let again = Store::open(&root, config).unwrap();
    assert_eq!(again.recovery_report().gap_repaired, None);
    assert_eq!(bodies(&again).len(), want.len() + 1);
}

#[test]
fn a_gap_after_a_full_segment_is_refused_with_a_typed_error_and_nothing_changes() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("s");
    let config = tiny();
    let written = write_store(&root, &config, 4);
    fs::remove_file(segment(&root, 1)).unwrap();
    let before = files_under(&root);

    for abort in [false, true] {
        if abort {
            fs::write(root.join("abort"), b"").unwrap();
        }
        let before = if abort {
            files_under(&root)
        } else {
            before.clone()
        };
        match Store::open(&root, config.clone()) {
            Err(Error::SegmentGap {
                missing_from,
                missing_to,
                segments_before,
                segments_after,
                ref reason,
                ..
            }) => {
                assert_eq!((missing_from, missing_to), (SEG, 2 * SEG));
                assert_eq!((segments_before, segments_after), (1, 2));
                assert!(reason.contains("full"), "{reason}");
            }
            other => panic!("expected SegmentGap, got {other:?}"),
        }
        assert!(
            files_under(&root) == before,
            "a refused open changed the root"
        );
    }
    let msg = Store::open(&root, config.clone()).unwrap_err().to_string();
    assert!(msg.contains("GapPolicy::KeepAfter"), "{msg}");

    // Keep what lies after the gap: the log now starts at segment 2.
    let keep_after = StoreConfig {
        segment_gap: GapPolicy::KeepAfter,
        ..config.clone()
    };
    let copy = dir.path().join("copy");
    copy_tree(&root, &copy).unwrap();
    let store = Store::open(&copy, keep_after).unwrap();
    let repair = store.recovery_report().gap_repaired.clone().unwrap();
    assert_eq!(repair.removed, vec![segment(&copy, 0)]);
    assert_eq!(store.commitlog_min_offset(), 2 * SEG);
    let want: Vec<Vec<u8>> = written
        .iter()
        .filter(|(o, _)| *o >= 2 * SEG)
        .map(|(_, b)| b.clone())
        .collect();
    assert_eq!(bodies(&store), want);
    store.close().unwrap();

    // Keep what lies before it: segment 0 only.
    let keep_before = StoreConfig {
        segment_gap: GapPolicy::KeepBefore,
        ..config
    };
    let store = Store::open(&root, keep_before).unwrap();
    let repair = store.recovery_report().gap_repaired.clone().unwrap();
    assert_eq!(repair.removed, vec![segment(&root, 3), segment(&root, 2)]);
    let want: Vec<Vec<u8>> = written
        .iter()
        .filter(|(o, _)| *o < SEG)
        .map(|(_, b)| b.clone())
        .collect();
    assert_eq!(bodies(&store), want);
    assert!(store.recovery_report().checkpoint_rejected.is_some());
}

/// Found by the recovery fuzz target: a flipped byte in segment 0 with valid records after it,
/// segment 1 gone and no checkpoint. The chain stops inside segment 0, which looked like the
/// end of an interrupted cut, so the gap repair deleted segments 2 and 3 before the walk
/// refused the damage as corruption: a failed open that changed the log.
#[test]
fn damage_before_a_gap_with_valid_records_after_it_is_refused_before_anything_is_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("s");
    let config = tiny();
    let written = write_store(&root, &config, 4);
    let victim = written[2].0 as usize;
    assert!(victim + 100 < SEG as usize && written[3].0 < SEG);
    let seg0 = segment(&root, 0);
    let mut bytes = fs::read(&seg0).unwrap();
    bytes[victim + 100] ^= 0x01;
    fs::write(&seg0, &bytes).unwrap();
    fs::remove_file(segment(&root, 1)).unwrap();
    fs::remove_file(root.join("checkpoint")).unwrap();
    fs::write(root.join("abort"), b"").unwrap();
    let before = files_under(&root);

    match Store::open(&root, config.clone()) {
        Err(Error::SegmentGap {
            missing_from,
            missing_to,
            ref reason,
            ..
        }) => {
            assert_eq!((missing_from, missing_to), (SEG, 2 * SEG));
            assert!(reason.contains("corruption"), "{reason}");
            assert!(reason.contains(&format!("breaks at {victim}")), "{reason}");
        }
        other => panic!("expected SegmentGap, got {other:?}"),
    }
    assert!(
        files_under(&root) == before,
        "a refused open changed the root"
    );
}

#[test]
fn a_gap_the_checkpoint_says_holds_acknowledged_data_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("s");
    let config = tiny();
    write_store(&root, &config, 4);
    // The log appears to end inside segment 1, but the checkpoint vouches for data in 3.
    let seg1 = fs::OpenOptions::new()
        .write(true)
        .open(segment(&root, 1))
        .unwrap();
    std::os::unix::fs::FileExt::write_all_at(&seg1, &vec![0u8; (SEG / 2) as usize], SEG / 2)
        .unwrap();
    fs::remove_file(segment(&root, 2)).unwrap();
    let before = files_under(&root);
    match Store::open(&root, config) {
        Err(Error::SegmentGap { reason, .. }) => {
            assert!(reason.contains("checkpoint"), "{reason}")
        }
        other => panic!("expected SegmentGap, got {other:?}"),
    }
    assert!(
        files_under(&root) == before,
        "a refused open changed the root"
    );
}

const SIM_ROOT: &str = "/store";

fn sim_open(sim: &SimVfs, config: &StoreConfig) -> rocketstore::Result<Store> {
    Store::open_with_vfs(
        SIM_ROOT,
        config.clone(),
        Arc::new(sim.clone()) as Arc<dyn Vfs>,
    )
}

/// Runs `action` on a copy of `base` crashed after each of its disk operations in turn, in
/// every crash mode (the one that undoes pending directory operations one by one with many
/// seeds), and calls `check` on the store each crash leaves; returns the number of crash points.
/// `action` returns its result once it completed before the crash point.
fn crash_everywhere(
    base: &SimVfs,
    config: &StoreConfig,
    action: impl Fn(&SimVfs) -> rocketstore::Result<Store>,
    check: impl Fn(&Store, &str),
) -> u64 {
    for k in 1.. {
        let disk = base.crash(CrashMode::Kill, 0);
        let r = action_with_crash(&disk, k, &action);
        if let Some(store) = r {
            check(&store, "no crash");
            return k - 1;
        }
        let crashes = CrashMode::ALL.into_iter().flat_map(|mode| {
            let seeds = if mode == CrashMode::Meta { 0..32 } else { 0..1 };
            seeds.map(move |s| (mode, s))
        });
        for (mode, seed) in crashes {
            let after = disk.crash(mode, k * 64 + seed);
            let what = format!("crash at op {k} ({mode:?}, seed {seed})");
            let store = sim_open(&after, config).unwrap_or_else(|e| panic!("{what}: {e}"));
            assert_eq!(
                store.recovery_report().gap_repaired,
                None,
                "{what} left a gap"
            );
            check(&store, &what);
        }
    }
    unreachable!()
}

fn action_with_crash(
    disk: &SimVfs,
    k: u64,
    action: &impl Fn(&SimVfs) -> rocketstore::Result<Store>,
) -> Option<Store> {
    let r = action(&{
        disk.crash_after_ops(k);
        disk.clone()
    });
    if disk.cancel_crash() {
        Some(r.expect("completed before the crash point"))
    } else {
        None
    }
}

/// A sim disk with a closed store whose log reaches into segment `segments - 1`; returns the
/// bodies with their CommitLog offsets.
fn sim_store(config: &StoreConfig, segments: u64) -> (SimVfs, Vec<(u64, Vec<u8>)>) {
    let base = SimVfs::new(20);
    base.create_dir_all(Path::new(SIM_ROOT)).unwrap();
    base.sync_dir(Path::new("/")).unwrap();
    let store = sim_open(&base, config).unwrap();
    let mut written = Vec::new();
    while store.commitlog_max_offset() < (segments - 1) * SEG + SEG / 2 {
        let b = body(written.len());
        let r = store.put(&Message::new(TOPIC, 0, &b)).unwrap();
        written.push((r.commitlog_offset, b));
    }
    store.close().unwrap();
    (base, written)
}

/// The regression behind issue 20: recovery deleted the segments past its cut and synced the
/// directory once at the end, so a crash that undid one removal and kept a later one left a gap
/// and every later `open` failed. Now each removal is synced before the next.
#[test]
fn a_recovery_deleting_several_segments_leaves_no_gap_wherever_it_crashes() {
    let config = StoreConfig {
        preallocate_next_segment: false,
        ..tiny()
    };
    let (base, written) = sim_store(&config, 2);
    let want: Vec<Vec<u8>> = written.into_iter().map(|(_, b)| b).collect();
    // Three prepared segments past the end (an older version's leftovers): recovery deletes
    // them, newest first.
    let dir = Path::new(SIM_ROOT).join("commitlog");
    for n in 2..5 {
        let f = base
            .open_file(&dir.join(format!("{:020}", n * SEG)), OpenMode::CreateNew)
            .unwrap();
        f.allocate(SEG).unwrap();
        f.sync_data().unwrap();
    }
    base.sync_dir(&dir).unwrap();
    let points = crash_everywhere(
        &base,
        &config,
        |disk| sim_open(disk, &config),
        |store, what| {
            assert_eq!(bodies(store), want, "{what}");
        },
    );
    assert!(points >= 6, "only {points} crash points");
}

/// Retention deleting several segments at once (oldest first) leaves a suffix of the log
/// wherever it crashes.
#[test]
fn retention_deleting_several_segments_leaves_no_gap_wherever_it_crashes() {
    let config = StoreConfig {
        preallocate_next_segment: false,
        cleaner_enabled: false,
        ..tiny()
    };
    let (base, written) = sim_store(&config, 5);
    let points = crash_everywhere(
        &base,
        &config,
        |disk| {
            let store = sim_open(disk, &config)?;
            let report = store.delete_before(4 * SEG)?;
            assert!(report.segments_deleted >= 4, "{report:?}");
            Ok(store)
        },
        |store, what| {
            let min = store.commitlog_min_offset();
            assert!(min % SEG == 0 && min <= 4 * SEG, "{what}: min {min}");
            let want: Vec<Vec<u8>> = written
                .iter()
                .filter(|(o, _)| *o >= min)
                .map(|(_, b)| b.clone())
                .collect();
            let got = bodies(store);
            assert!(
                got == want,
                "{what}: min {min}: {} messages, want {}",
                got.len(),
                want.len()
            );
        },
    );
    assert!(points >= 8, "only {points} crash points");
}
