//! The `recover_image` entry point and the checks any opened store image must pass.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use rocketstore::{Error, GetOptions, GetStatus, Message, Store};

use crate::image::{base_image, BaseImage, BaseRecord, StoreImage};
use crate::mutation::decode_mutations;
use crate::scratch::ScratchDir;
use crate::{fixture_config, FIXTURE_T0_MS};

/// What [`check_recovery`] saw.
#[derive(Debug)]
pub enum RecoveryOutcome {
    /// `Store::open` failed with this typed error.
    Refused(Error),
    /// The store opened; these are its recovery report and what it served.
    Opened {
        /// The report of the first open.
        report: rocketstore::RecoveryReport,
        /// Messages read back, by (topic, queue, queue offset): (commitlog offset, bytes).
        served: BTreeMap<(String, i32, u64), (u64, Vec<u8>)>,
    },
}

/// Applies the mutations encoded in `data` to a copy of [`base_image`], writes it to a scratch
/// directory and runs [`check_recovery`] on it.
pub fn recover_image(data: &[u8]) {
    let base = base_image();
    let mut img = base.image.clone();
    for m in decode_mutations(data) {
        m.apply(&mut img, base);
    }
    let scratch = ScratchDir::new("recover");
    let root = scratch.path().join("store");
    img.write_to(&root).expect("write the mutated image");
    let _ = check_recovery(&root, base);
}

/// Opens the store at `root` with [`fixture_config`] and checks what any store image must give:
///
/// * `Store::open` returns `Ok` or a typed error; a layout or corruption error names a path
///   inside the root; when it fails, the CommitLog files are byte for byte what they were;
/// * when it opens, no base record that was intact in the image and lay at or past the
///   recovered end was dropped unless the report says so (salvaged, cut after lost writes, or
///   its segment deleted by a gap repair);
/// * when it opens: the report agrees with the store; every queue is read from min to max with
///   `Ok` or `Err` (served messages belong to their queue, at their offsets); `read_at` at
///   every base record offset and at odd offsets, key queries and time lookups return `Ok` or
///   `Err` (hits are re-checked);
/// * a put then succeeds or fails with a typed error; if it and `close` succeed, a reopen must
///   succeed and serve every message served before, plus the new one.
pub fn check_recovery(root: &Path, base: &BaseImage) -> RecoveryOutcome {
    let config = fixture_config();
    let before = StoreImage::read_from(root).expect("read the image before open");
    let commitlog_intact = commitlog_matches(&before, base);
    let store = match Store::open(root, config.clone()) {
        Ok(s) => s,
        Err(e) => {
            assert_error_names_root(&e, root);
            // An open that fails changes nothing in the CommitLog: the operator (or a later
            // version) must find the data as it was.
            let after = StoreImage::read_from(root).expect("read the image after open");
            let (was, now) = (commitlog_files(&before), commitlog_files(&after));
            let changed: Vec<String> = was
                .keys()
                .chain(now.keys())
                .collect::<BTreeSet<_>>()
                .into_iter()
                .filter(|p| was.get(*p) != now.get(*p))
                .map(|p| {
                    let len = |m: &BTreeMap<&str, &[u8]>| m.get(p).map(|b| b.len());
                    format!("{p} (length {:?} -> {:?})", len(&was), len(&now))
                })
                .collect();
            assert!(
                changed.is_empty(),
                "open failed ({e}) but changed the CommitLog files: {changed:?}"
            );
            return RecoveryOutcome::Refused(e);
        }
    };
    let report = store.recovery_report().clone();
    check_no_intact_record_dropped(&before, base, &report);
    assert_eq!(
        report.end_offset,
        store.commitlog_max_offset(),
        "{report:?}"
    );
    if let Some(t) = report.truncated_at {
        assert_eq!(t, report.end_offset, "{report:?}");
    }
    assert!(store.commitlog_min_offset() <= store.commitlog_max_offset());
    let served = serve_everything(&store, base);
    let put = store.put(&Message::new("alpha", 0, b"after recovery").with_keys(["after"]));
    let closed = store.close();
    drop(store);
    if let (Ok(p), Ok(())) = (&put, &closed) {
        let again = match Store::open(root, config) {
            Ok(s) => s,
            // The clean open trusted the CommitLog below the checkpoint's durable offset; if
            // the mutation damaged a record there and anything made the next open rebuild
            // derived data (a damaged unit or index chain met by a read marks it so), the
            // rebuild's full scan meets the damaged acknowledged record: the typed error
            // damage calls for. With an intact CommitLog the reopen must succeed.
            Err(Error::Corruption { .. }) if !commitlog_intact => {
                return RecoveryOutcome::Refused(Error::InvalidArgument(
                    "damage below the durable offset reported at the next open".into(),
                ));
            }
            Err(e) => panic!(
                "reopen after a successful open, put and close failed: {e}; first open {report:?}"
            ),
        };
        let served_again = serve_everything(&again, base);
        for (k, v) in &served {
            assert_eq!(
                served_again.get(k),
                Some(v),
                "message {k:?} served before the put and close is gone after reopen; first open {report:?}, second {:?}",
                again.recovery_report()
            );
        }
        let key = ("alpha".to_string(), 0, p.queue_offset);
        assert_eq!(
            served_again.get(&key).map(|(off, _)| *off),
            Some(p.commitlog_offset),
            "acknowledged put {p:?} missing after close and reopen; {:?}",
            again.recovery_report()
        );
        if commitlog_intact {
            // The CommitLog is the base image's (only derived data, checkpoint or markers were
            // damaged) plus one acknowledged put. After a crash, recovery keeps the derived
            // data the checkpoint vouches for (checked cheaply, not record by record), so it
            // serves at least what the reopen served; with the derived data gone it must get
            // all of it back, whatever the damage made the earlier opens do.
            again
                .close()
                .unwrap_or_else(|e| panic!("close after reopen failed: {e}"));
            drop(again);
            std::fs::write(root.join("abort"), b"").expect("write abort");
            let crashed = Store::open(root, fixture_config()).unwrap_or_else(|e| {
                panic!("unclean reopen of an intact CommitLog plus one put failed: {e}; first open {report:?}")
            });
            let served_crashed = serve_everything(&crashed, base);
            for (k, v) in &served_again {
                assert_eq!(
                    served_crashed.get(k),
                    Some(v),
                    "message {k:?} served before is gone after an unclean reopen; first open {report:?}, last {:?}",
                    crashed.recovery_report()
                );
            }
            crashed
                .close()
                .unwrap_or_else(|e| panic!("close after the unclean reopen failed: {e}"));
            drop(crashed);
            for derived in ["consumequeue", "index"] {
                let dir = root.join(derived);
                if dir.exists() {
                    std::fs::remove_dir_all(&dir).expect("remove derived data");
                }
            }
            std::fs::write(root.join("abort"), b"").expect("write abort");
            let rebuilt = Store::open(root, fixture_config()).unwrap_or_else(|e| {
                panic!("unclean reopen of an intact CommitLog plus one put, derived data deleted, failed: {e}; first open {report:?}")
            });
            let served_rebuilt = serve_everything(&rebuilt, base);
            for r in &base.records {
                let key = (r.topic.clone(), r.queue_id, r.queue_offset);
                assert_eq!(
                    served_rebuilt.get(&key).map(|(off, _)| *off),
                    Some(r.offset),
                    "base record {key:?} not served after a rebuild; first open {report:?}, last {:?}",
                    rebuilt.recovery_report()
                );
            }
            assert_eq!(
                served_rebuilt
                    .get(&("alpha".to_string(), 0, p.queue_offset))
                    .map(|(off, _)| *off),
                Some(p.commitlog_offset),
                "acknowledged put {p:?} lost by a rebuild; first open {report:?}, last {:?}",
                rebuilt.recovery_report()
            );
            let _ = rebuilt.close();
        } else {
            let _ = again.close();
        }
    } else if let Err(e) = &put {
        assert_error_names_root(e, root);
    }
    RecoveryOutcome::Opened { report, served }
}

/// The files under `commitlog/` of an image, by path.
fn commitlog_files(img: &StoreImage) -> BTreeMap<&str, &[u8]> {
    img.files
        .iter()
        .filter(|(p, _)| p.starts_with("commitlog/"))
        .map(|(p, b)| (p.as_str(), b.as_slice()))
        .collect()
}

/// Whether the image's `commitlog/` holds exactly the base image's segments, byte for byte.
fn commitlog_matches(img: &StoreImage, base: &BaseImage) -> bool {
    let no_dirs = !img.dirs.iter().any(|d| d.starts_with("commitlog/"));
    no_dirs && commitlog_files(img) == commitlog_files(&base.image)
}

/// Whether base record `r` is in `img` byte for byte, at its base position.
fn record_is_intact(img: &StoreImage, base: &BaseImage, r: &BaseRecord) -> bool {
    let span = r.segment_pos()..r.segment_pos() + r.size;
    let path = r.segment_path();
    let (Some(seg), Some(orig)) = (img.files.get(&path), base.image.files.get(&path)) else {
        return false;
    };
    seg.get(span.clone()).is_some_and(|b| b == &orig[span])
}

/// A successful open never throws away silently an intact base record at or past its
/// recovered end: such a record was given up only if the report says how (a salvaged span,
/// a cut after lost writes, or a segment deleted by a gap repair).
fn check_no_intact_record_dropped(
    before: &StoreImage,
    base: &BaseImage,
    report: &rocketstore::RecoveryReport,
) {
    for r in &base.records {
        if r.offset < report.end_offset || !record_is_intact(before, base, r) {
            continue;
        }
        let salvaged = report
            .salvaged
            .iter()
            .any(|s| s.offset <= r.offset && s.resumed_at.is_none_or(|resumed| r.offset < resumed));
        let cut_after_lost_write = report
            .cut_after_lost_write
            .is_some_and(|first| first <= r.offset);
        let segment = r.segment_path();
        let gap_repaired = report
            .gap_repaired
            .as_ref()
            .is_some_and(|g| g.removed.iter().any(|p| p.ends_with(Path::new(&segment))));
        assert!(
            salvaged || cut_after_lost_write || gap_repaired,
            "intact base record at {} (ends {}) lies past the recovered end and was dropped without a report saying why: {report:?}",
            r.offset,
            r.end()
        );
    }
}

fn assert_error_names_root(e: &Error, root: &Path) {
    let _ = e.to_string();
    let path = match e {
        Error::Layout { path, .. }
        | Error::Corruption { path, .. }
        | Error::CorruptRecord { path, .. }
        | Error::Io { path, .. }
        | Error::DiskFull { path, .. }
        | Error::FlushFailed { path, .. }
        | Error::Locked { path } => path,
        _ => return,
    };
    assert!(
        path.starts_with(root),
        "error names {} outside the store root {}: {e}",
        path.display(),
        root.display()
    );
}

/// Reads everything a store serves: each queue from min to max, `read_at` at base offsets and
/// odd ones, key queries and time lookups. Panics only on a violated property.
fn serve_everything(
    store: &Store,
    base: &BaseImage,
) -> BTreeMap<(String, i32, u64), (u64, Vec<u8>)> {
    let mut served = BTreeMap::new();
    let verify = GetOptions {
        verify_crc: true,
        ..GetOptions::new(8)
    };
    for topic in store.topics() {
        for q in store.queue_ids(&topic) {
            let (Ok(min), Ok(max)) = (store.min_offset(&topic, q), store.max_offset(&topic, q))
            else {
                panic!("min/max offset of an open store failed");
            };
            assert!(min <= max, "{topic}:{q} min {min} > max {max}");
            let mut next = min;
            let mut calls = 0;
            while next < max && calls < 1000 {
                calls += 1;
                let opts = if calls % 2 == 0 {
                    verify.clone()
                } else {
                    GetOptions::new(8)
                };
                let Ok(got) = store.get_with(&topic, q, next, &opts) else {
                    // A damaged unit or record: the messages after it are still servable.
                    next += 1;
                    continue;
                };
                if got.is_empty() {
                    assert!(got.next_offset() > next || got.status() != GetStatus::Found);
                    if got.next_offset() <= next {
                        break;
                    }
                }
                for (i, m) in got.messages().enumerate() {
                    assert_eq!(m.topic(), topic);
                    assert_eq!(m.queue_id(), q);
                    assert!(m.queue_offset() >= next + i as u64 && m.queue_offset() < max);
                    served.insert(
                        (topic.clone(), q, m.queue_offset()),
                        (m.commitlog_offset(), m.as_bytes().to_vec()),
                    );
                }
                assert!(
                    got.next_offset() > next,
                    "get made no progress at {topic}:{q}@{next}"
                );
                next = got.next_offset();
            }
            for t in [0, FIXTURE_T0_MS + 3_500, i64::MAX] {
                if let Ok(n) = store.offset_for_timestamp(&topic, q, t) {
                    assert!(
                        n >= min && n <= max,
                        "time lookup gave {n} outside {min}..={max}"
                    );
                }
            }
        }
    }
    let end = store.commitlog_max_offset();
    let odd = [
        0,
        1,
        end.saturating_sub(1),
        end,
        end + 1,
        u64::MAX,
        i64::MAX as u64,
    ];
    for off in base.records.iter().map(|r| r.offset).chain(odd) {
        if let Ok(m) = store.read_at(off) {
            assert_eq!(m.view().commitlog_offset(), off);
        }
    }
    for r in base.records.iter().step_by(3) {
        for key in r.keys.iter().chain([&r.uniq_key]) {
            if let Ok(hits) = store.query_by_key(&r.topic, key, 0, i64::MAX, 64) {
                assert!(hits.len() <= 64);
                for h in &hits {
                    let v = h.view();
                    assert_eq!(v.topic(), r.topic);
                    assert!(v.keys().any(|k| k == key) || v.property("UNIQ_KEY") == Some(key));
                }
            }
        }
    }
    served
}
