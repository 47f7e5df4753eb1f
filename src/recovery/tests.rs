//! Recovery's own tests: a rebuild that writes back and dispatches on a thread of its own
//! (`scan/mod.rs`) against one that does neither, through [`recover_writing_back`].

use super::*;
use crate::storage::OsVfs;
use crate::{Message, Store};
use std::path::{Path, PathBuf};

/// Every file under `dir`, by path relative to it, with its bytes.
fn files_under(dir: &Path) -> std::collections::BTreeMap<PathBuf, Vec<u8>> {
    let mut out = std::collections::BTreeMap::new();
    let mut todo = vec![dir.to_path_buf()];
    if !dir.exists() {
        // A rebuild of a log that is empty after its damage creates no derived files.
        return out;
    }
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                todo.push(p);
            } else {
                out.insert(
                    p.strip_prefix(dir).unwrap().to_path_buf(),
                    std::fs::read(&p).unwrap(),
                );
            }
        }
    }
    out
}

/// Puts 8,000 keyed messages over 3 queues into a fresh store at `root` with `config`,
/// closes it, copies it to `copy`, and returns the CommitLog offsets of the messages.
fn build_pair(root: &Path, copy: &Path, config: &StoreConfig) -> Vec<u64> {
    let store = Store::open(root, config.clone()).unwrap();
    let body = vec![7u8; 300];
    let mut offsets = Vec::with_capacity(8_000);
    for n in 0..8_000 {
        let key = format!("K{n}");
        let put = store
            .put(
                &Message::new("t", n % 3, &body)
                    .with_tags("TagA")
                    .with_keys([key.as_str()]),
            )
            .unwrap();
        offsets.push(put.commitlog_offset);
    }
    store.close().unwrap();
    std::fs::create_dir(copy).unwrap();
    for (rel, bytes) in files_under(root) {
        std::fs::create_dir_all(copy.join(&rel).parent().unwrap()).unwrap();
        std::fs::write(copy.join(&rel), bytes).unwrap();
    }
    offsets
}

/// Deletes `consumequeue/` under `root` and recovers it, writing back (and dispatching on
/// a thread of its own) every `every` bytes. Returns the report, whether any ConsumeQueue
/// unit was synced during the walk, and the derived files' bytes.
#[allow(clippy::type_complexity)]
fn rebuild(
    root: &Path,
    config: &StoreConfig,
    every: u64,
) -> (
    RecoveryReport,
    bool,
    std::collections::BTreeMap<PathBuf, Vec<u8>>,
    Vec<Vec<u8>>,
) {
    std::fs::remove_dir_all(root.join("consumequeue")).unwrap();
    let store_root = StoreRoot::new(root);
    let cp = crate::checkpoint::read(&OsVfs, &store_root).unwrap();
    let rec = recover_writing_back(&OsVfs, &store_root, config, false, &cp, every).unwrap();
    assert!(rec.report.derived_rebuilt);
    let written_back = rec
        .queues
        .values()
        .flat_map(|m| m.values())
        .any(|q| q.first_file_flushed() > 0);
    let report = rec.report.clone();
    drop(rec);
    (
        report,
        written_back,
        files_under(&root.join("consumequeue")),
        files_under(&root.join("index")).into_values().collect(),
    )
}

/// A rebuild that writes its derived data back and dispatches on a thread of its own
/// (here every 64 KiB of log) syncs ConsumeQueue units before the walk ends, and leaves the
/// same bytes and report as one that does neither.
#[test]
fn rebuild_writing_back_during_the_walk_builds_the_same_derived_data() {
    let config = StoreConfig::small();
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    build_pair(&a, &b, &config);
    let (report_a, written_a, cq_a, index_a) = rebuild(&a, &config, 64 << 10);
    let (report_b, written_b, cq_b, index_b) = rebuild(&b, &config, u64::MAX);
    assert!(written_a && !written_b);
    assert_eq!(report_a.records_dispatched, 8_000);
    assert_eq!(report_a, report_b);
    assert!(!cq_a.is_empty() && !index_a.is_empty());
    assert!(cq_a == cq_b, "ConsumeQueue differs");
    assert!(index_a == index_b, "IndexFile differs");
}

/// Rebuilds two copies of a log of 8,000 records (written with `config`) whose record 5,000
/// dispatch refuses (its queue offset leaves a gap), one dispatching on a thread of its own
/// (which the walk runs ahead of), one inline; checks both end the log there and leave the
/// same report and derived data. Returns the report.
fn rebuild_past_a_refused_record(config: &StoreConfig) -> RecoveryReport {
    let config = StoreConfig {
        // The queue offset is changed in place below, without fixing the record's CRC.
        check_crc_on_recover: false,
        salvage_corrupt_log: true,
        ..config.clone()
    };
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    let bad = build_pair(&a, &b, &config)[5_000];
    for root in [&a, &b] {
        let seg_size = config.commitlog_segment_size as u64;
        let seg = root
            .join("commitlog")
            .join(crate::segments::file_name(bad - bad % seg_size));
        let mut bytes = std::fs::read(&seg).unwrap();
        let pos = (bad % seg_size) as usize + crate::format::record::POS_QUEUE_OFFSET;
        bytes[pos + 7] ^= 0x40;
        std::fs::write(&seg, bytes).unwrap();
    }
    let (mut report_a, _, cq_a, index_a) = rebuild(&a, &config, 64 << 10);
    let (mut report_b, _, cq_b, index_b) = rebuild(&b, &config, u64::MAX);
    for (report, root) in [(&mut report_a, &a), (&mut report_b, &b)] {
        assert_eq!(report.salvaged.len(), 1, "cut below the durable offset");
        let salvage = &mut report.salvaged[0];
        assert_eq!(
            salvage.resumed_at, None,
            "a record dispatch refuses is not skipped"
        );
        salvage.path = salvage.path.strip_prefix(root).unwrap().to_path_buf();
    }
    assert_eq!(report_a.end_offset, bad);
    assert_eq!(report_a.scanned_bytes, bad);
    assert_eq!(report_a.records_dispatched, 5_000);
    assert_eq!(report_a.salvaged[0].offset, bad);
    assert_eq!(report_a, report_b);
    assert!(cq_a == cq_b, "ConsumeQueue differs");
    assert!(index_a == index_b, "IndexFile differs");
    report_a
}

/// When dispatch refuses a record (its queue offset leaves a gap), the log ends there
/// whether dispatch runs on the walk's thread or on its own (which the walk has run ahead
/// of): same end, report and derived data.
#[test]
fn a_record_dispatch_refuses_ends_the_log_there_when_dispatch_runs_on_its_own_thread() {
    let report = rebuild_past_a_refused_record(&StoreConfig::small());
    assert_eq!(report.records_without_crc, 0);
}

/// Records without a `__CRC32#` property (RocketMQ 4.x's) are counted only up to the record
/// dispatch refuses, also when dispatch runs on a thread of its own and the walk has
/// validated (and counted) records past it.
#[test]
fn records_without_crc_are_counted_up_to_a_record_dispatch_refuses() {
    let report = rebuild_past_a_refused_record(&StoreConfig {
        append_crc_property: false,
        ..StoreConfig::small()
    });
    assert_eq!(report.records_without_crc, 5_000);
}

/// Copies every file under `from` to `to` (a fresh directory).
fn copy_root(from: &Path, to: &Path) {
    for (rel, bytes) in files_under(from) {
        std::fs::create_dir_all(to.join(&rel).parent().unwrap()).unwrap();
        std::fs::write(to.join(&rel), bytes).unwrap();
    }
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig {
        cases: 24,
        ..Default::default()
    })]

    /// Whatever damage the log has (flipped bytes, a zeroed run: a torn or rotten record
    /// anywhere, below the durable offset; a record's queue offset changed in place), a rebuild that dispatches on a thread of its own
    /// and writes back during the walk ends the log at the same record, salvages the same
    /// way and leaves the same derived bytes and the same whole report as one that does
    /// neither; also for records without a `__CRC32#` property (RocketMQ 4.x's, counted in
    /// the report) and without CRC checks (damage then often gets past the decode and is a
    /// record dispatch refuses). The crash harness (small logs) never takes the threaded
    /// path, so this is where its equivalence is checked against damage.
    #[test]
    fn a_threaded_rebuild_of_a_damaged_log_matches_the_inline_one(
        damage in proptest::collection::vec((0.0f64..1.0, 0usize..4, 1usize..600), 1..4),
        crc_property in proptest::bool::ANY,
        check_crc in proptest::bool::ANY,
    ) {
        let config = StoreConfig {
            salvage_corrupt_log: true,
            append_crc_property: crc_property,
            check_crc_on_recover: check_crc,
            ..StoreConfig::small()
        };
        let pristine = pristine_root(&config);
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a"), dir.path().join("b"));
        let seg_size = config.commitlog_segment_size as u64;
        for root in [&a, &b] {
            copy_root(pristine.0.path(), root);
            for &(at, kind, len) in &damage {
                let off = match kind {
                    // The least significant byte of a record's QUEUEOFFSET.
                    3 => {
                        let records = &pristine.2;
                        records[(at * records.len() as f64) as usize]
                            + crate::format::record::POS_QUEUE_OFFSET as u64
                            + 7
                    }
                    _ => (at * pristine.1 as f64) as u64,
                };
                let seg = root
                    .join("commitlog")
                    .join(crate::segments::file_name(off - off % seg_size));
                let mut bytes = std::fs::read(&seg).unwrap();
                let pos = (off % seg_size) as usize;
                let end = (pos + len).min(bytes.len());
                match kind {
                    0 => bytes[pos] ^= 0x5A,
                    1 => bytes[pos..end].fill(0),
                    3 => bytes[pos] ^= (len % 255) as u8 + 1,
                    _ => bytes[pos..end].iter_mut().for_each(|b| *b = b.wrapping_add(1)),
                }
                std::fs::write(&seg, bytes).unwrap();
            }
        }
        let (mut report_a, _, cq_a, index_a) = rebuild(&a, &config, 64 << 10);
        let (mut report_b, _, cq_b, index_b) = rebuild(&b, &config, u64::MAX);
        for (report, root) in [(&mut report_a, &a), (&mut report_b, &b)] {
            for s in &mut report.salvaged {
                s.path = s.path.strip_prefix(root).unwrap().to_path_buf();
                s.saved_to = s.saved_to.as_ref().map(|p| p.strip_prefix(root).unwrap().to_path_buf());
            }
        }
        proptest::prop_assert_eq!(&report_a, &report_b);
        proptest::prop_assert!(cq_a == cq_b, "ConsumeQueue differs");
        proptest::prop_assert!(index_a == index_b, "IndexFile differs");
    }
}

/// One cleanly closed root of 8,000 keyed messages, built once per test process for each
/// [`append_crc_property`](StoreConfig::append_crc_property), its CommitLog end and the
/// offsets of its records.
fn pristine_root(config: &StoreConfig) -> &'static (tempfile::TempDir, u64, Vec<u64>) {
    static ROOTS: [std::sync::OnceLock<(tempfile::TempDir, u64, Vec<u64>)>; 2] =
        [std::sync::OnceLock::new(), std::sync::OnceLock::new()];
    ROOTS[usize::from(config.append_crc_property)].get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let (root, copy) = (dir.path().join("r"), dir.path().join("copy"));
        let records = build_pair(&root, &copy, config);
        let store = Store::open(&root, config.clone()).unwrap();
        let end = store.commitlog_max_offset();
        store.close().unwrap();
        std::fs::remove_dir_all(&copy).unwrap();
        let keep = tempfile::tempdir().unwrap();
        copy_root(&root, keep.path());
        (keep, end, records)
    })
}
