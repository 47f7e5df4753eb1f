//! Opening a store root: load the CommitLog, find its valid end, cut and zero a torn tail, and
//! bring ConsumeQueue and IndexFile in line with it (spec §7, with the stricter rules of
//! `design/TESTING.md` §4).
//!
//! Where the scan starts:
//! * clean shutdown (no `abort`, checkpoint trailer intact, RocketMQ's timestamps no newer than
//!   the trailer recorded — a newer one means a broker wrote since, handled as the next case):
//!   at the durable offset `D` the checkpoint names. Derived data is trusted if its shape
//!   (queue, unit, index file and entry counts) matches what the checkpoint recorded; otherwise
//!   it is rebuilt as below;
//! * unclean shutdown with an intact trailer: at the start of the segment holding `D` (records
//!   below `D` were acknowledged durable: an invalid one there is a corruption error, never a
//!   silent cut). Derived data is kept incrementally: what describes records below the
//!   checkpoint's derived-durable offset `Dd` was synced before the checkpoint and is kept after
//!   cheap checks, what describes later records is cut away, and only records from `Dd` (index
//!   keys: from where the kept IndexFile stops, at most `Dd`) are re-dispatched. Any check that
//!   fails, or a re-dispatched record that does not continue its queue, falls back to the
//!   rebuild below (see [`RecoveryReport::derived_fallback`]);
//! * a clean RocketMQ root (no `abort`, a checkpoint RocketMQ wrote, none of our trailer): as
//!   RocketMQ's normal recovery, made safe and cheap: the newest ConsumeQueue unit (which must
//!   point at its record) stands in for both offsets of the case above, derived data is kept
//!   after the same checks, and the walk validates the log from the oldest of the queues' newest
//!   units (never before the third segment from the end, where RocketMQ's own walk starts) to
//!   its end, re-dispatching what a lagging queue lacks. Below that the log is trusted as a clean
//!   open trusts it below the durable offset (reads check CRCs; `rocketstore verify` checks all);
//! * no usable trailer (a RocketMQ root after a crash, a damaged checkpoint), or derived data that
//!   cannot be kept: ConsumeQueue and IndexFile are deleted and rebuilt by re-dispatching every
//!   record, so the whole CommitLog is scanned.
//!
//! The scan accepts a record only if it decodes (magic, lengths, CRCs when configured), its
//! PHYSICALOFFSET equals its position, and its queue offset is the next one of its queue. The
//! first record that fails ends the log: the segment is cut there, the rest of it zeroed (so no
//! stale record can ever resurface), and later segments are deleted.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use crate::checkpoint::summarize;
use crate::config::StoreConfig;
use crate::consume_queue::{ConsumeQueue, UnitRun};
use crate::dispatch::dispatch;
use crate::error::{Error, Result};
use crate::format::checkpoint_layout::{Checkpoint, Trailer};
use crate::format::cq_unit::CqUnit;
use crate::format::dispatch_entry::DispatchEntry;
use crate::format::evidence;
use crate::format::filler;
use crate::format::record::{
    self, DecodeOptions, Decoded, RecordView, TRANSACTION_COMMIT, TRANSACTION_NOT_TYPE,
};
use crate::format::root::StoreRoot;
use crate::format::schedule::DelayLevels;
use crate::format::topic::check_topic;
use crate::index::{EntryRecord, IndexService};
use crate::segments::{self, Segment, Tail};
use crate::storage::{FileKind, FlushStrategy, MappedFile, Vfs};

mod gaps;
mod salvage;
pub use gaps::GapRepair;

/// What recovery found and did at open.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RecoveryReport {
    /// The previous run closed cleanly (no `abort` file and an intact checkpoint).
    pub clean_shutdown: bool,
    /// The checkpoint trailer was intact and used.
    pub checkpoint_trusted: bool,
    /// No `abort` file and a checkpoint RocketMQ wrote (no trailer of ours): recovered as
    /// RocketMQ's normal recovery does, made safe. The newest ConsumeQueue unit's record end
    /// stood in for the durable and derived-durable offsets: the log was validated from the
    /// oldest of the queues' newest units (at most the last three segments, RocketMQ's own
    /// window) to its end, ConsumeQueue and IndexFile kept after their tails were checked
    /// against the log (any doubt rebuilds them, see [`derived_fallback`](Self::derived_fallback)).
    pub rocketmq_normal_recovery: bool,
    /// RocketMQ's timestamps in the checkpoint are newer than its trailer recorded: another
    /// store (a RocketMQ broker) wrote to the root after this crate's last checkpoint. The
    /// trailer was trusted for what it covers and the rest checked as after a crash
    /// ([`clean_shutdown`](Self::clean_shutdown) is false).
    pub written_since_checkpoint: bool,
    /// CommitLog offset the validation scan started at.
    pub scanned_from: u64,
    /// Bytes validated by the scan.
    pub scanned_bytes: u64,
    /// Records the scan (from [`scanned_from`](Self::scanned_from)) accepted without a `__CRC32#` property (written by RocketMQ 4.x, by
    /// 5.x without `enabledAppendPropCRC`, or with `append_crc_property = false`): valid on
    /// their BODYCRC and structure, wherever they sit in the log.
    pub records_without_crc: u64,
    /// Recovered end of the CommitLog.
    pub end_offset: u64,
    /// CommitLog offset where a torn or invalid tail was cut (the bytes after it were zeroed);
    /// `None` when the data simply ended (a zero header where the next record would start).
    pub truncated_at: Option<u64>,
    /// Segments deleted because they lay entirely past the cut.
    pub segments_removed: usize,
    /// ConsumeQueue and IndexFile were deleted and rebuilt from the whole CommitLog.
    pub derived_rebuilt: bool,
    /// Records dispatched to ConsumeQueue (and IndexFile) during recovery: those from
    /// [`dispatched_from`](Self::dispatched_from) to the end.
    pub records_dispatched: u64,
    /// CommitLog offset from which records were (re-)dispatched to ConsumeQueue and IndexFile:
    /// the log's start after a rebuild, the checkpoint's derived-durable offset otherwise
    /// (after an unclean shutdown, derived data describing records from here on was cut away
    /// first, see `src/recovery.rs`).
    pub dispatched_from: u64,
    /// After an unclean shutdown with an intact checkpoint: why the derived data could not be
    /// kept up to the checkpoint (a check failed, or a re-dispatched record did not continue
    /// its queue), so it was rebuilt from the whole CommitLog
    /// ([`derived_rebuilt`](Self::derived_rebuilt) is set). `None` when there was nothing to
    /// doubt.
    pub derived_fallback: Option<String>,
    /// Why the checkpoint was not believed (it claimed more durable data than the CommitLog
    /// holds, or its durable offset is not where the last record ends): recovery then scanned
    /// the whole log and rebuilt derived data. Acknowledged data may be missing.
    pub checkpoint_rejected: Option<String>,
    /// With [`StoreConfig::salvage_corrupt_log`](crate::StoreConfig::salvage_corrupt_log):
    /// exactly what damaged data was given up, in CommitLog order (skipped spans, or the cut
    /// below the checkpoint's durable offset). Empty when nothing was.
    pub salvaged: Vec<Salvage>,
    /// The CommitLog's segment files had a gap and recovery deleted the files on one side of it
    /// (see [`GapRepair`] and [`StoreConfig::segment_gap`](crate::StoreConfig::segment_gap)).
    pub gap_repaired: Option<GapRepair>,
    /// The log was cut at a damaged record although valid records follow it, because a crash
    /// that lost some unsynced writes and kept later ones explains the damage (see
    /// `src/format/evidence.rs`): the CommitLog offset of the first of those records, all of
    /// them past the durable offset. `None` when nothing valid followed the end.
    pub cut_after_lost_write: Option<u64>,
}

/// Damaged CommitLog data that recovery gave up instead of refusing to open
/// ([`StoreConfig::salvage_corrupt_log`](crate::StoreConfig::salvage_corrupt_log)).
///
/// When valid records follow the damage, the damaged span `[offset, resumed_at)` is skipped:
/// its bytes are copied to [`saved_to`](Self::saved_to), then replaced by filler records (topic
/// `%SALVAGED%`, never dispatched; a span running to its segment's end also gets the BLANK that
/// closes the segment), and the ConsumeQueue offsets of the messages it held read as removed.
/// Otherwise the log is cut at `offset`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Salvage {
    /// Segment file holding the damage.
    pub path: std::path::PathBuf,
    /// CommitLog offset where the damage starts (the first invalid record).
    pub offset: u64,
    /// Bytes given up: the skipped span, or for a cut the acknowledged bytes from `offset` to
    /// the durable offset.
    pub len: u64,
    /// Where the log goes on after the skipped span; `None` when the log was cut at `offset`.
    pub resumed_at: Option<u64>,
    /// The checkpoint's durable offset (0 when no checkpoint vouched for any).
    pub durable_offset: u64,
    /// What was wrong with the first damaged record.
    pub reason: String,
    /// File under the root's `salvaged/` directory holding the skipped span's bytes as they were.
    pub saved_to: Option<std::path::PathBuf>,
}

/// The recovered state handed to the store.
pub(crate) struct Recovered {
    pub segments: Vec<Segment>,
    pub end: u64,
    pub queues: HashMap<String, HashMap<i32, ConsumeQueue>>,
    pub index: Option<IndexService>,
    pub last_store_timestamp: i64,
    pub report: RecoveryReport,
}

/// Loads every ConsumeQueue under `consumequeue/`.
/// Every ConsumeQueue of the root, by topic and queue id.
type Queues = HashMap<String, HashMap<i32, ConsumeQueue>>;

fn load_queues(
    vfs: &dyn Vfs,
    root: &StoreRoot,
    config: &StoreConfig,
    tail: Tail,
) -> Result<HashMap<String, HashMap<i32, ConsumeQueue>>> {
    let dir = root.consume_queue_dir();
    let mut out: HashMap<String, HashMap<i32, ConsumeQueue>> = HashMap::new();
    let Some(meta) = vfs.metadata(&dir).map_err(|e| Error::io(&dir, e))? else {
        return Ok(out);
    };
    if meta.kind != FileKind::Dir {
        return Err(Error::Layout {
            path: dir,
            reason: "expected a directory".into(),
        });
    }
    for topic in vfs.read_dir(&dir).map_err(|e| Error::io(&dir, e))? {
        let tdir = dir.join(&topic.name);
        if topic.kind != FileKind::Dir || check_topic(&topic.name).is_err() {
            return Err(Error::Layout {
                path: tdir,
                reason: "not a topic directory".into(),
            });
        }
        for q in vfs.read_dir(&tdir).map_err(|e| Error::io(&tdir, e))? {
            // RocketMQ skips queue directories whose name is not an integer.
            let Ok(qid) = q.name.parse::<i32>() else {
                continue;
            };
            if q.kind != FileKind::Dir || qid < 0 || qid as u32 >= config.max_queues_per_topic {
                return Err(Error::Layout {
                    path: tdir.join(&q.name),
                    reason: "not a queue directory".into(),
                });
            }
            let cq = ConsumeQueue::load(
                vfs,
                root,
                &topic.name,
                qid,
                config.consume_queue_file_size(),
                tail,
            )?;
            out.entry(topic.name.clone()).or_default().insert(qid, cq);
        }
    }
    Ok(out)
}

/// After a clean shutdown the checkpoint's durable offset `durable` must be exactly where the
/// log ends: the newest ConsumeQueue unit of all queues points at a valid record at its offset
/// that ends at `durable`, or at a record followed by the segment's BLANK when `durable` is the
/// next segment's start. Anything else (a durable offset past the data, inside a record, or a
/// unit pointing past it) means the checkpoint does not describe this log.
fn check_clean_end(
    files: &[(u64, MappedFile)],
    size: usize,
    durable: u64,
    queues: &HashMap<String, HashMap<i32, ConsumeQueue>>,
    config: &StoreConfig,
) -> std::result::Result<(), String> {
    let first_start = files.first().map_or(0, |(s, _)| *s);
    let newest = queues
        .values()
        .flat_map(|m| m.values())
        .filter(|q| q.max_offset() > q.min_offset())
        .max_by_key(|q| q.max_physical_end());
    let Some(q) = newest else {
        return if durable <= first_start {
            Ok(())
        } else {
            Err(format!(
                "checkpoint durable offset {durable} but no ConsumeQueue unit points at a record"
            ))
        };
    };
    let unit = q
        .unit(q.max_offset() - 1)
        .ok_or_else(|| "newest ConsumeQueue unit unreadable".to_string())?;
    let (offset, len) = (unit.commitlog_offset as u64, unit.size as u64);
    let record_ok =
        record_at(files, size, offset, config).is_some_and(|r| r.total_size() as u64 == len);
    if !record_ok {
        return Err(format!(
            "the newest ConsumeQueue unit ({}:{} at {}) does not point at its record at CommitLog offset {offset}",
            q.topic(),
            q.queue_id(),
            q.max_offset() - 1
        ));
    }
    let end = offset + len;
    if end == durable {
        return Ok(());
    }
    // The last segment was filled up: a BLANK from `end` to the segment end == durable.
    let blank_to_durable = durable.is_multiple_of(size as u64)
        && end < durable
        && durable - end < size as u64
        && bytes_at(files, size, end).is_some_and(|data| {
            matches!(record::decode(data, &point_check_options(config)), Ok(Decoded::Blank { total_size })
                if end + total_size as u64 == durable)
        });
    if blank_to_durable {
        return Ok(());
    }
    Err(format!(
        "checkpoint durable offset {durable} is not where the log ends (the newest record ends at {end})"
    ))
}

/// Before derived data the checkpoint vouches for is deleted for a rebuild: rewrites the
/// checkpoint with the summary no store can have (as `Store::flush_all` does for damaged derived
/// data), so that a crash during the rebuild is followed by another rebuild, never by an
/// incremental recovery trusting data below `Dd` that is gone. The durable offset is kept.
fn mark_derived_damaged(
    vfs: &dyn Vfs,
    root: &StoreRoot,
    cp: &Checkpoint,
    t: Trailer,
) -> Result<()> {
    if t.derived_damaged {
        return Ok(());
    }
    let marked = Checkpoint {
        trailer: Some(Trailer {
            derived_damaged: true,
            ..t
        }),
        ..*cp
    };
    crate::checkpoint::write(vfs, root, &marked)
}

fn remove_derived(vfs: &dyn Vfs, root: &StoreRoot) -> Result<()> {
    let cq = root.consume_queue_dir();
    if vfs.metadata(&cq).map_err(|e| Error::io(&cq, e))?.is_some() {
        vfs.remove_dir_all(&cq).map_err(|e| Error::io(&cq, e))?;
    }
    IndexService::remove_all(vfs, root)?;
    vfs.sync_dir(root.path())
        .map_err(|e| Error::io(root.path(), e))
}

/// Runs recovery for `root`. `abort_present` tells whether the previous run ended uncleanly.
pub(crate) fn recover(
    vfs: &dyn Vfs,
    root: &StoreRoot,
    config: &StoreConfig,
    abort_present: bool,
    cp: &Checkpoint,
) -> Result<Recovered> {
    recover_writing_back(vfs, root, config, abort_present, cp, WRITE_BACK_EVERY)
}

/// [`recover`], writing a rebuild's derived data back every `write_back_every` bytes of
/// dispatched log (see [`walk`]).
fn recover_writing_back(
    vfs: &dyn Vfs,
    root: &StoreRoot,
    config: &StoreConfig,
    abort_present: bool,
    cp: &Checkpoint,
    write_back_every: u64,
) -> Result<Recovered> {
    let size = config.commitlog_segment_size;
    let dir = root.commitlog_dir();
    // What a file may hold past its written end: after a clean shutdown nothing, so a clean
    // open does not zero and sync every tail again.
    let tail = if abort_present {
        Tail::MayHoldStale
    } else {
        Tail::Clean
    };
    // A zero-length last segment (a crash right after its creation) is deleted only below,
    // once recovery has decided to open: a refused open leaves the CommitLog as it found it.
    let loaded = segments::load_runs(vfs, &dir, size, true)?;
    let (mut files, gap_repaired) =
        gaps::join(vfs, &dir, config, cp.trailer.as_ref(), loaded.runs)?;
    let first_start = files.first().map_or(0, |(s, _)| *s);
    let data_end = files.last().map_or(0, |(s, _)| s + size as u64);

    let mut trailer = cp.trailer;
    let mut rejected = None;
    if let Some(t) = trailer {
        if t.durable_commitlog_offset > data_end
            || (files.is_empty() && t.durable_commitlog_offset > 0)
        {
            rejected = Some(format!(
                "checkpoint says {} bytes of CommitLog are durable but the segments end at {data_end}: acknowledged data is missing",
                t.durable_commitlog_offset
            ));
            trailer = None;
        }
    }
    // A RocketMQ broker that opened the root since our checkpoint rewrote its timestamps and
    // may have appended: the trailer still vouches for what it covers, the rest is checked as
    // after a crash (scan from the segment holding its durable offset, keep derived data below
    // its derived-durable offset, re-dispatch the records after it).
    let written_since = trailer.is_some() && cp.written_since_trailer();
    if written_since {
        log::info!("recovery: the checkpoint's RocketMQ timestamps are newer than its trailer recorded (a broker wrote here since); checking what came after it");
    }
    // A clean RocketMQ root (no `abort`, a checkpoint RocketMQ wrote, no trailer of ours):
    // RocketMQ's normal recovery, made safe. The newest ConsumeQueue unit marks where the log
    // ended at the broker's shutdown; it stands in for our trailer's durable and derived-durable
    // offsets, so the ConsumeQueue and IndexFile are kept after their tails are checked against
    // the log (as after a crash with a trailer), and the last segments are validated.
    let mut rocketmq_tail = None;
    let mut preloaded = None;
    if !abort_present
        && trailer.is_none()
        && rejected.is_none()
        && !files.is_empty()
        && crate::checkpoint::written_by_rocketmq(vfs, root)?
    {
        match rocketmq_shutdown_end(vfs, root, config, &files, size, tail) {
            Ok((walk_from, end, queues)) => {
                preloaded = Some(queues);
                log::info!("recovery: a RocketMQ root shut down cleanly; its ConsumeQueue ends at {end}: validating the log from {walk_from} and the derived data's tails");
                trailer = Some(Trailer {
                    durable_commitlog_offset: end,
                    derived_durable_offset: end,
                    ..Trailer::default()
                });
                rocketmq_tail = Some(walk_from);
            }
            Err(reason) => log::info!("recovery: a RocketMQ root, but {reason}: rebuilding ConsumeQueue and IndexFile from the whole CommitLog"),
        }
    }
    // Files deleted to close a gap may hold records derived data points at: not a clean open.
    let mut clean = !abort_present
        && trailer.is_some()
        && !written_since
        && rocketmq_tail.is_none()
        && gap_repaired.is_none();
    let mut durable = trailer.map_or(0, |t| t.durable_commitlog_offset.max(first_start));

    // Derived data: trusted after a clean shutdown if it loads; otherwise rebuilt.
    let mut derived = if clean && trailer.is_some_and(|t| t.derived_damaged) {
        log::warn!("the last run found its derived data damaged; rebuilding ConsumeQueue and IndexFile from the CommitLog");
        None
    } else if clean {
        match (
            load_queues(vfs, root, config, tail),
            index_load(vfs, root, config),
        ) {
            (Ok(q), Ok(i)) => {
                let found = summarize(q.values().flat_map(|m| m.values()), i.as_ref());
                let expected = trailer.map(|t| t.derived).unwrap_or_default();
                if found != expected {
                    log::warn!(
                        "derived data differs from the checkpoint (found {found:?}, expected {expected:?}); rebuilding ConsumeQueue and IndexFile from the CommitLog"
                    );
                    None
                } else if let Err(reason) = check_clean_end(&files, size, durable, &q, config) {
                    // The checkpoint does not describe this log: believe neither it nor the
                    // derived data, scan everything.
                    rejected = Some(reason);
                    trailer = None;
                    clean = false;
                    durable = first_start;
                    None
                } else {
                    Some((q, i))
                }
            }
            (Err(e), _) | (_, Err(e)) => {
                log::warn!(
                    "derived data unusable ({}); rebuilding ConsumeQueue and IndexFile from the CommitLog",
                    crate::error::chain(&e)
                );
                None
            }
        }
    } else {
        None
    };
    if let Some(reason) = &rejected {
        log::error!("recovery: {reason}; ignoring the checkpoint, scanning the whole CommitLog");
    }
    let mut report = RecoveryReport {
        clean_shutdown: clean,
        checkpoint_trusted: trailer.is_some() && rocketmq_tail.is_none(),
        rocketmq_normal_recovery: rocketmq_tail.is_some(),
        written_since_checkpoint: written_since,
        checkpoint_rejected: rejected,
        gap_repaired,
        ..Default::default()
    };
    let mut plan = match (&derived, trailer) {
        (Some(_), Some(t)) => {
            let from = t.derived_durable_offset.clamp(first_start, durable);
            Plan {
                cq_from: from,
                index_from: from,
                incremental: false,
            }
        }
        _ => Plan::full(first_start),
    };
    // Unclean shutdown with an intact checkpoint: keep what it vouches for, re-dispatch the rest.
    if let (None, false, Some(t)) = (&derived, clean, trailer) {
        match prepare_incremental(vfs, root, config, &files, t, preloaded.take(), tail)? {
            Ok((queues, index, p)) => {
                log::info!(
                    "recovery: keeping derived data below {}, re-dispatching the records from there",
                    p.cq_from
                );
                derived = Some((queues, index));
                plan = p;
            }
            Err(reason) => {
                log::warn!("recovery: derived data past the checkpoint cannot be cut away ({reason}); rebuilding ConsumeQueue and IndexFile from the whole CommitLog");
                report.derived_fallback = Some(reason);
            }
        }
    }

    let scan_start = if clean {
        durable
    } else if let Some(tail) = rocketmq_tail {
        tail
    } else if trailer.is_some() {
        durable - (durable - first_start) % size as u64
    } else {
        first_start
    };
    let ctx = WalkCtx {
        vfs,
        root,
        config,
        files: &files,
        size,
        first_start,
        durable,
        vouched: trailer.is_some(),
        write_back_every,
    };
    let (queues, index, walked) = loop {
        if derived.is_none() {
            report.derived_rebuilt = true;
            // (A trailer standing in for RocketMQ's shutdown is not ours to write.)
            if let Some(t) = trailer.filter(|_| rocketmq_tail.is_none()) {
                mark_derived_damaged(vfs, root, cp, t)?;
            }
            remove_derived(vfs, root)?;
            derived = Some((HashMap::new(), index_load(vfs, root, config)?));
        }
        let (mut queues, index) = derived.take().expect("set above");
        let walk_from = scan_start.min(plan.cq_from).min(plan.index_from);
        report.scanned_from = walk_from;
        report.dispatched_from = plan.cq_from;
        if walk_from != first_start || !files.is_empty() {
            log::info!("recovery: scanning CommitLog from {walk_from} (durable {durable}, segments end {data_end}, clean {clean})");
        }
        match walk(
            &ctx,
            walk_from,
            &plan,
            &mut queues,
            index.as_ref(),
            &mut report,
        )? {
            Walked::Abandoned(reason) => {
                log::warn!("recovery: incremental re-dispatch abandoned ({reason}); rebuilding ConsumeQueue and IndexFile from the whole CommitLog");
                report.derived_fallback = Some(reason);
                report.scanned_bytes = 0;
                report.records_without_crc = 0;
                report.records_dispatched = 0;
                report.salvaged.clear();
                report.cut_after_lost_write = None;
                drop((queues, index));
                plan = Plan::full(first_start);
            }
            w @ Walked::End { .. } => break (queues, index, w),
        }
    };
    let Walked::End {
        end,
        mut last_store_timestamp,
    } = walked
    else {
        unreachable!("the loop breaks only on End")
    };
    let walk_from = report.scanned_from;
    let mut queues = queues;
    report.end_offset = end;

    // The walk accepted the log: from here on recovery changes it. First the empty last file
    // left out above (the newest: deleting it first keeps the files a contiguous prefix).
    if let Some(path) = &loaded.empty_last {
        segments::remove_empty_last(vfs, &dir, path)?;
    }

    // Salvaged spans the walk skipped: copied aside, then filled, before anything is cut.
    salvage::write_fillers(
        vfs,
        root,
        &mut files,
        size,
        config.max_record_size(),
        &mut report.salvaged,
        last_store_timestamp,
    )?;

    // Cut: zero the rest of the segment holding `end`, delete the segments after it.
    let keep = if files.is_empty() {
        0
    } else {
        (((end - first_start) / size as u64) as usize + 1).min(files.len())
    };
    // Newest first, each removal synced before the next (segments::remove_tail): a crash in
    // the middle leaves a shorter log, never a gap.
    report.segments_removed += segments::remove_tail(vfs, &dir, &mut files, keep)?;
    if let Some((start, last)) = files.last_mut() {
        let pos = (end - *start) as usize;
        if pos < size {
            // A zero header is the ordinary end of data; anything else was torn or stale.
            let rest = &last.readable()[pos..];
            let nonzero = |n: usize| rest.iter().take(n).any(|&b| b != 0);
            if nonzero(record::END_FILE_MIN_BLANK_LENGTH) {
                report.truncated_at = Some(end);
            }
            // After a clean shutdown nothing lies past the end (checked for its first page).
            if tail == Tail::MayHoldStale || nonzero(PAGE) {
                last.truncate(pos)
            } else {
                last.end_at(pos)
            }
            .map_err(|e| Error::io(last.path(), e))?;
        }
    }
    if !clean {
        // After a process crash the page cache may hold records that never reached the disk;
        // recovery just accepted them, so make them durable before anything new is acknowledged
        // behind them (a sync of a clean file costs ~30 µs).
        let from = ((walk_from.saturating_sub(first_start)) / size as u64) as usize;
        for (_, f) in files.iter().skip(from) {
            f.sync_data().map_err(|e| Error::io(f.path(), e))?;
        }
    }

    // Derived entries pointing past the cut go (only possible when they were trusted).
    for qs in queues.values_mut() {
        for q in qs.values_mut() {
            q.truncate_beyond(vfs, end)?;
        }
    }
    // Queue min offsets follow the CommitLog's (retention may have removed the start).
    for qs in queues.values() {
        for q in qs.values() {
            q.advance_min(first_start);
        }
    }
    if last_store_timestamp == 0 {
        last_store_timestamp = cp.physic_msg_timestamp;
    }
    let segments = files
        .into_iter()
        .map(|(start, f)| Segment {
            start,
            file: Arc::new(f),
        })
        .collect();
    Ok(Recovered {
        segments,
        end,
        queues,
        index,
        last_store_timestamp,
        report,
    })
}

/// Where re-dispatch starts.
struct Plan {
    /// Records from here get their ConsumeQueue unit (and index keys).
    cq_from: u64,
    /// Where the kept IndexFile stops (at most `cq_from`): records from here to `cq_from` must
    /// have no index keys.
    index_from: u64,
    /// Derived data below the offsets was kept from an unclean shutdown: a record that does not
    /// fit it abandons the walk for a full rebuild instead of ending the log.
    incremental: bool,
}

impl Plan {
    fn full(first_start: u64) -> Plan {
        Plan {
            cq_from: first_start,
            index_from: first_start,
            incremental: false,
        }
    }
}

/// What the walk needs to know about the CommitLog.
struct WalkCtx<'a> {
    vfs: &'a dyn Vfs,
    root: &'a StoreRoot,
    config: &'a StoreConfig,
    files: &'a [(u64, MappedFile)],
    size: usize,
    first_start: u64,
    durable: u64,
    /// A checkpoint (ours, or RocketMQ's shutdown point) vouches for `durable`: damage past it
    /// may be a crash's lost write-back (see [`evidence`]).
    vouched: bool,
    /// Dispatched log bytes between two background write-backs of a rebuild.
    write_back_every: u64,
}

/// How the walk ended.
enum Walked {
    /// The log ends at `end`.
    End { end: u64, last_store_timestamp: i64 },
    /// An incremental walk met a record the kept derived data does not agree with, or the log
    /// ends below the kept data: nothing of the CommitLog was changed, rebuild everything.
    Abandoned(String),
}

/// A page: how much of a clean file's tail recovery checks is zero before it trusts the rest.
const PAGE: usize = 4096;

/// CommitLog bytes a rebuild dispatches between two background write-backs of its derived data
/// (see [`walk`]); a walk over less than twice this writes nothing back early (nor starts a
/// thread).
const WRITE_BACK_EVERY: u64 = 128 << 20;

/// Validates records from `walk_from` and dispatches them as `plan` says, until the first
/// invalid one (which is where the log ends).
///
/// A rebuild of a long log writes ConsumeQueue and IndexFile back while it dispatches: every
/// [`WRITE_BACK_EVERY`] bytes of dispatched log, a helper thread syncs the units and index
/// entries written so far (not the hash slots, which later entries keep changing), so the disk works during the walk instead of all of it waiting for
/// the sync the store does when recovery is over (which then finds little left to write).
/// Syncing derived data early weakens nothing: the rebuild's derived data counts for nothing
/// until the checkpoint written after that final sync names it.
fn walk(
    ctx: &WalkCtx<'_>,
    walk_from: u64,
    plan: &Plan,
    queues: &mut HashMap<String, HashMap<i32, ConsumeQueue>>,
    index: Option<&IndexService>,
    report: &mut RecoveryReport,
) -> Result<Walked> {
    // A rebuild is the index's only writer and nothing reads it yet: headers are written once
    // at the end (and at rolls), not for every key.
    let defer = index.filter(|_| !plan.incremental);
    if let Some(i) = defer {
        i.defer_headers(true);
    }
    let walked = walk_writing_back(ctx, walk_from, plan, queues, index, report);
    if let Some(i) = defer {
        i.defer_headers(false);
    }
    walked
}

/// [`walk`] with the background write-back of a long walk and, for a long rebuild, dispatch on
/// a thread of its own: the walk validates records (decode, CRCs) and hands them over in
/// batches, in CommitLog order, so validation and dispatch (ConsumeQueue units, index keys,
/// first touches of their pages) use both cores. Where dispatch refuses a record (a gap in its
/// queue), the log ends there, exactly as when both run on one thread.
fn walk_writing_back(
    ctx: &WalkCtx<'_>,
    walk_from: u64,
    plan: &Plan,
    queues: &mut HashMap<String, HashMap<i32, ConsumeQueue>>,
    index: Option<&IndexService>,
    report: &mut RecoveryReport,
) -> Result<Walked> {
    let log_end = ctx.files.last().map_or(0, |(s, _)| s + ctx.size as u64);
    let dispatcher = Dispatcher::new(ctx, walk_from, plan, queues, index);
    if log_end.saturating_sub(plan.cq_from) < ctx.write_back_every.saturating_mul(2) {
        let mut sink = Sink::Inline(dispatcher, &mut |_| {});
        return walk_dispatching(ctx, walk_from, plan, &mut sink, report);
    }
    std::thread::scope(|scope| {
        // One request in flight: when the helper is still busy the walk does not wait, the
        // next request takes the units written since.
        let (tx, rx) = std::sync::mpsc::sync_channel::<Vec<Arc<MappedFile>>>(1);
        let helper = std::thread::Builder::new()
            .name("rocketstore-recovery-write-back".into())
            .spawn_scoped(scope, move || -> Result<()> {
                for files in rx {
                    for f in files {
                        f.flush(FlushStrategy::Msync)
                            .map_err(|e| Error::io(f.path(), e))?;
                    }
                    if let Some(i) = index {
                        i.flush_entries()?;
                    }
                }
                Ok(())
            })
            .map_err(|e| Error::io(ctx.root.path(), e))?;
        let walked = if plan.incremental {
            let mut write_back = |files| {
                let _ = tx.try_send(files);
            };
            let mut sink = Sink::Inline(dispatcher, &mut write_back);
            walk_dispatching(ctx, walk_from, plan, &mut sink, report)
        } else {
            walk_pipelined(ctx, walk_from, plan, dispatcher, tx.clone(), report, scope)
        };
        drop(tx);
        let written_back = helper
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
        let walked = walked?;
        written_back?;
        Ok(walked)
    })
}

/// Records handed from the walk to the dispatching thread at a time.
const PIPE_BATCH: usize = 256;

/// A batch of validated records, described for dispatch by the walk (which has their bytes in
/// its cache; the dispatching thread then reads little of them).
type RecordBatch<'a> = Vec<DispatchEntry<'a>>;

/// The rebuild's walk with dispatch on a thread of its own (see [`walk_writing_back`]).
fn walk_pipelined<'a, 'scope>(
    ctx: &'a WalkCtx<'a>,
    walk_from: u64,
    plan: &Plan,
    mut dispatcher: Dispatcher<'a, 'scope>,
    write_back: std::sync::mpsc::SyncSender<Vec<Arc<MappedFile>>>,
    report: &mut RecoveryReport,
    scope: &'scope std::thread::Scope<'scope, '_>,
) -> Result<Walked>
where
    'a: 'scope,
{
    let (tx, rx) = std::sync::mpsc::sync_channel::<RecordBatch<'a>>(8);
    let dispatcher_index = dispatcher.index;
    let worker = std::thread::Builder::new()
        .name("rocketstore-recovery-dispatch".into())
        .spawn_scoped(scope, move || {
            let mut write_back = |files| {
                let _ = write_back.try_send(files);
            };
            for batch in rx {
                for entry in batch {
                    match dispatcher.dispatch(&entry, &mut write_back) {
                        Ok(Dispatched::Done) => {}
                        Ok(stop) => {
                            return (dispatcher.done(), Ok(Some((entry.physical_offset, stop))))
                        }
                        Err(e) => return (dispatcher.done(), Err(e)),
                    }
                }
            }
            (dispatcher.done(), Ok(None))
        })
        .map_err(|e| Error::io(ctx.root.path(), e))?;
    let mut sink = Sink::Pipe(Vec::with_capacity(PIPE_BATCH), tx, dispatcher_index);
    let walked = walk_dispatching(ctx, walk_from, plan, &mut sink, report);
    // Hands over the last batch, closes the channel.
    sink.finish();
    drop(sink);
    let ((records, dispatched_timestamp), stopped) = worker
        .join()
        .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
    report.records_dispatched = records;
    match stopped? {
        None => walked,
        Some((_, Dispatched::Abandoned(reason))) => Ok(Walked::Abandoned(reason)),
        Some((offset, Dispatched::Invalid(reason))) => {
            // The log ends at the refused record: whatever the walk found after it does not
            // count (the ConsumeQueue units dispatched after it are cut by `recover`).
            report.salvaged.retain(|s| s.offset < offset);
            report.cut_after_lost_write = None;
            invalid_at(ctx, report, offset, reason, false)?;
            report.scanned_bytes = offset - walk_from;
            Ok(Walked::End {
                end: offset,
                last_store_timestamp: dispatched_timestamp,
            })
        }
        Some((_, Dispatched::Done)) => unreachable!("the dispatcher stops only on a refusal"),
    }
}

/// Where the walk sends the records it validated (from the dispatch start on).
enum Sink<'a, 'q, 'w> {
    /// Dispatch each record right away, calling the write-back every so often.
    Inline(Dispatcher<'a, 'q>, &'w mut dyn FnMut(Vec<Arc<MappedFile>>)),
    /// Batches for the dispatching thread (which dispatches to this index).
    Pipe(
        RecordBatch<'a>,
        std::sync::mpsc::SyncSender<RecordBatch<'a>>,
        Option<&'a IndexService>,
    ),
}

impl<'a> Sink<'a, '_, '_> {
    /// The queues of an inline sink (an incremental walk checks kept units against them);
    /// a pipe, used only by rebuilds, has none to show.
    fn queues(&self) -> &HashMap<String, HashMap<i32, ConsumeQueue>> {
        match self {
            Sink::Inline(d, _) => d.queues,
            Sink::Pipe(..) => unreachable!("only a walk that is not incremental pipes its records"),
        }
    }

    /// The index records are dispatched to.
    fn index(&self) -> Option<&IndexService> {
        match self {
            Sink::Inline(d, _) => d.index,
            Sink::Pipe(_, _, index) => *index,
        }
    }

    /// Dispatches one entry (an inline sink) or queues it for the dispatching thread (a pipe);
    /// `Some` says why dispatch stopped.
    fn send(
        &mut self,
        entry: DispatchEntry<'a>,
        report: &mut RecoveryReport,
    ) -> Result<Option<Stop>> {
        match self {
            Sink::Inline(dispatcher, write_back) => {
                match dispatcher.dispatch(&entry, *write_back)? {
                    Dispatched::Done => {}
                    Dispatched::Invalid(reason) => return Ok(Some(Stop::Refused(reason))),
                    Dispatched::Abandoned(reason) => return Ok(Some(Stop::Abandoned(reason))),
                }
                report.records_dispatched = dispatcher.records;
                Ok(None)
            }
            Sink::Pipe(batch, tx, _) => {
                batch.push(entry);
                if batch.len() >= PIPE_BATCH && tx.send(std::mem::take(batch)).is_err() {
                    // The dispatcher refused a record: the log ends there (see
                    // `walk_pipelined`).
                    return Ok(Some(Stop::PipeClosed));
                }
                Ok(None)
            }
        }
    }

    /// Sends what the pipe holds.
    fn finish(&mut self) {
        if let Sink::Pipe(batch, tx, _) = self {
            if !batch.is_empty() {
                let _ = tx.send(std::mem::take(batch));
            }
        }
    }
}

/// Why [`Sink::send`] stopped the walk.
enum Stop {
    /// Dispatch refused this record (it does not continue its queue).
    Refused(String),
    /// An incremental walk met a record its kept data disagrees with: rebuild everything.
    Abandoned(String),
    /// The dispatching thread refused an earlier record: the log ends there.
    PipeClosed,
}

/// What dispatching one record came to.
enum Dispatched {
    /// Its units and keys are in.
    Done,
    /// Dispatch refused it (it does not continue its queue): the log ends there.
    Invalid(String),
    /// An incremental walk met a record its kept data disagrees with: rebuild everything.
    Abandoned(String),
}

/// Dispatches the walk's records, in CommitLog order.
struct Dispatcher<'a, 'q> {
    vfs: &'a dyn Vfs,
    root: &'a StoreRoot,
    config: &'a StoreConfig,
    /// The delay table: a scheduled message's unit holds its delivery time.
    delays: DelayLevels,
    incremental: bool,
    allow_late_start: bool,
    queues: &'q mut HashMap<String, HashMap<i32, ConsumeQueue>>,
    index: Option<&'a IndexService>,
    /// A topic `queues` is known to have.
    present_topic: &'a str,
    next_write_back: u64,
    write_back_every: u64,
    records: u64,
    last_store_timestamp: i64,
    /// The unit of the last salvage filler met: from there on a queue may skip offsets (the
    /// messages of a salvaged span), which get this unit and read as removed.
    filler: Option<CqUnit>,
    /// Offsets queues may still skip: one per shortest record the salvaged spans could hold.
    skippable: u64,
}

impl<'a, 'q> Dispatcher<'a, 'q> {
    fn new(
        ctx: &WalkCtx<'a>,
        walk_from: u64,
        plan: &Plan,
        queues: &'q mut HashMap<String, HashMap<i32, ConsumeQueue>>,
        index: Option<&'a IndexService>,
    ) -> Self {
        Dispatcher {
            vfs: ctx.vfs,
            root: ctx.root,
            config: ctx.config,
            delays: DelayLevels::parse(&ctx.config.message_delay_level).unwrap_or_default(),
            incremental: plan.incremental,
            // A queue may start late only in a full rebuild of a log whose head was deleted;
            // kept derived data already has every queue that had records below the kept point.
            allow_late_start: ctx.first_start > 0 && !plan.incremental,
            queues,
            index,
            present_topic: "",
            next_write_back: walk_from
                .max(plan.cq_from)
                .saturating_add(ctx.write_back_every),
            write_back_every: ctx.write_back_every,
            records: 0,
            last_store_timestamp: 0,
            filler: None,
            skippable: 0,
        }
    }

    /// Records dispatched, and the newest store timestamp among them.
    fn done(&self) -> (u64, i64) {
        (self.records, self.last_store_timestamp)
    }

    /// Dispatches the record `entry` describes (the walk checked that its physical offset is
    /// where it lies); calls `write_back` with the ConsumeQueue files holding unsynced units
    /// every `write_back_every` bytes of log.
    fn dispatch(
        &mut self,
        entry: &DispatchEntry<'a>,
        write_back: &mut dyn FnMut(Vec<Arc<MappedFile>>),
    ) -> Result<Dispatched> {
        let offset = entry.physical_offset;
        if filler::is_filler(entry.topic, entry.transaction_type) {
            self.filler = Some(CqUnit {
                commitlog_offset: offset as i64,
                size: entry.size,
                tags_code: 0,
            });
            self.skippable = self
                .skippable
                .saturating_add(entry.size.max(0) as u64 / record::MIN_RECORD_LEN as u64 + 1);
            return Ok(Dispatched::Done);
        }
        let queues = &mut *self.queues;
        // Look the topic up by `&str`: an owned key only for a topic's first record; none at
        // all while records keep to the topic of the last one (topics are never removed
        // during the walk).
        if entry.topic != self.present_topic && !queues.contains_key(entry.topic) {
            queues.insert(entry.topic.to_owned(), HashMap::new());
        }
        self.present_topic = entry.topic;
        let (root, config) = (self.root, self.config);
        let q = queues
            .get_mut(entry.topic)
            .expect("inserted above")
            .entry(entry.queue_id)
            .or_insert_with(|| {
                ConsumeQueue::new_empty(
                    root,
                    entry.topic,
                    entry.queue_id,
                    config.consume_queue_file_size(),
                )
            });
        let skipped = match self.filler {
            Some(hole) if consumable(entry) && entry.queue_offset > q.max_offset() => {
                fill_skipped(self.vfs, q, entry.queue_offset, hole, &mut self.skippable)
            }
            _ => Ok(()),
        };
        let dispatched = skipped.and_then(|()| {
            dispatch(
                self.vfs,
                q,
                self.index,
                entry,
                self.allow_late_start,
                &self.delays,
            )
        });
        if let Err(e) = dispatched {
            return match e {
                // Kept derived data and this record disagree: the derived data is suspect,
                // not the log.
                Error::Corruption { reason, .. } if self.incremental => Ok(Dispatched::Abandoned(
                    format!("record at {offset}: {reason}"),
                )),
                Error::Corruption { reason, .. } => Ok(Dispatched::Invalid(reason)),
                other => Err(other),
            };
        }
        self.records += 1;
        self.last_store_timestamp = self.last_store_timestamp.max(entry.store_timestamp);
        if offset >= self.next_write_back {
            self.next_write_back = offset.saturating_add(self.write_back_every);
            write_back(
                queues
                    .values()
                    .flat_map(|m| m.values())
                    .flat_map(ConsumeQueue::unflushed_files)
                    .collect(),
            );
        }
        Ok(Dispatched::Done)
    }
}

/// Whether dispatch gives the record a ConsumeQueue unit (not a prepared or rolled-back
/// transaction half).
fn consumable(entry: &DispatchEntry<'_>) -> bool {
    matches!(
        entry.transaction_type,
        record::TRANSACTION_NOT_TYPE | record::TRANSACTION_COMMIT
    )
}

/// Gives the offsets `q` skips before `queue_offset` (messages of a salvaged span) the filler's
/// unit, within `budget`.
fn fill_skipped(
    vfs: &dyn Vfs,
    q: &ConsumeQueue,
    queue_offset: u64,
    hole: CqUnit,
    budget: &mut u64,
) -> Result<()> {
    let from = q.max_offset();
    let n = queue_offset - from;
    if n > *budget {
        return Err(Error::Corruption {
            path: PathBuf::new(),
            offset: queue_offset,
            reason: format!(
                "queue {}:{} skips {n} offsets after a salvaged span that cannot have held more than {budget} messages",
                q.topic(),
                q.queue_id()
            ),
        });
    }
    *budget -= n;
    for k in from..queue_offset {
        q.append(vfs, k, hole, false)?;
    }
    Ok(())
}

/// What recovery does about an invalid record.
enum Verdict {
    /// The log ends here.
    End,
    /// Salvage: the damaged span up to `to` is given up (filled once the walk is over) and the
    /// walk goes on at `to`.
    Skip { to: u64 },
}

/// Decides about the invalid record at `offset` ([`evidence`]):
///
/// - nothing valid follows it: the end of the log (a torn tail), unless the checkpoint vouches
///   for data past it, which is then lost: [`Error::Corruption`];
/// - valid records follow and a crash's lost writes explain the damage (past the durable
///   offset only): the end of the log, those records were never durable;
/// - valid records follow otherwise: [`Error::Corruption`] naming how much.
///
/// With [`StoreConfig::salvage_corrupt_log`] the errors become salvage instead, recorded in
/// `report`: the damaged span is skipped when valid records follow it (and `can_skip`), else
/// the log is cut there.
fn invalid_at(
    ctx: &WalkCtx<'_>,
    report: &mut RecoveryReport,
    offset: u64,
    reason: String,
    can_skip: bool,
) -> Result<Verdict> {
    let (durable, config) = (ctx.durable, ctx.config);
    let idx = usize::try_from((offset - ctx.first_start) / ctx.size as u64).ok();
    let path = idx
        .and_then(|i| ctx.files.get(i))
        .map_or_else(|| ctx.root.commitlog_dir(), |(_, f)| f.path().to_path_buf());
    let follows = idx.and_then(|i| valid_after(ctx, i, offset));
    let acknowledged = offset < durable;
    match &follows {
        None if !acknowledged => {
            // The ordinary end of a log is a zero header; anything else was torn.
            let zero_header = bytes_at(ctx.files, ctx.size, offset).is_none_or(|b| {
                b.iter()
                    .take(record::END_FILE_MIN_BLANK_LENGTH)
                    .all(|&x| x == 0)
            });
            if zero_header {
                log::debug!("recovery: CommitLog ends at {offset}");
            } else {
                log::warn!("recovery: CommitLog ends at {offset} (torn tail): {reason}");
            }
            return Ok(Verdict::End);
        }
        Some(f) if f.explained && !acknowledged => {
            log::warn!(
                "recovery: CommitLog ends at {offset}: {reason}; {} records written after it reached the disk before it did (a crash during write-back) and are cut too",
                f.chain.records
            );
            report.cut_after_lost_write = Some(f.chain.start);
            return Ok(Verdict::End);
        }
        _ => {}
    }
    let what = match &follows {
        Some(f) => {
            let later = if f.later_segments > 0 {
                format!(
                    " and {} later segment(s) hold valid records",
                    f.later_segments
                )
            } else {
                String::new()
            };
            format!(
                "invalid record ({reason}) followed by valid data: {} records ({} bytes) from offset {}{later}",
                f.chain.records, f.chain.bytes, f.chain.start
            )
        }
        None => format!("invalid record below the durable offset {durable}: {reason}"),
    };
    if !config.salvage_corrupt_log {
        return Err(Error::Corruption {
            path,
            offset,
            reason: format!(
                "{what}; this is not a torn tail, so nothing was changed (StoreConfig::salvage_corrupt_log gives the damaged records up instead)"
            ),
        });
    }
    let skip_to = follows
        .as_ref()
        .filter(|_| can_skip)
        .and_then(|f| salvage_span(ctx, offset, f))
        .map(|(resume, _)| resume);
    let given_up = match skip_to {
        Some(to) => to - offset,
        None => durable.saturating_sub(offset),
    };
    log::error!(
        "recovery (salvage): {what} at {offset} in {}; {}",
        path.display(),
        match skip_to {
            Some(to) => format!("skipping the {given_up} damaged bytes up to {to}"),
            None => format!("cutting the log there and giving up {given_up} acknowledged bytes"),
        }
    );
    report.salvaged.push(Salvage {
        path,
        offset,
        len: given_up,
        resumed_at: skip_to,
        durable_offset: durable,
        reason,
        saved_to: None,
    });
    Ok(skip_to.map_or(Verdict::End, |to| Verdict::Skip { to }))
}

/// Where the log resumes after a salvaged span that starts at `offset`, and the length of the
/// filler records that take its place: the valid chain in its segment, or the next segment
/// when the valid data is in a later one (the fillers then stop short of the segment's end,
/// leaving room for the BLANK that closes it). `None` when the span cannot hold a filler (it
/// is then cut instead).
fn salvage_span(ctx: &WalkCtx<'_>, offset: u64, f: &ValidAfter) -> Option<(u64, u64)> {
    let seg_end = offset - (offset - ctx.first_start) % ctx.size as u64 + ctx.size as u64;
    let (resume, filled) = if f.chain.start < seg_end {
        (f.chain.start, f.chain.start - offset)
    } else {
        let closing = record::END_FILE_MIN_BLANK_LENGTH as u64;
        (seg_end, (seg_end - offset).checked_sub(closing)?)
    };
    (filled >= filler::min_len() as u64).then_some((resume, filled))
}

/// Valid data found after an invalid record.
struct ValidAfter {
    /// The first valid chain after it.
    chain: evidence::Chain,
    /// Later segments that hold valid records (the chain's own included if it is in one).
    later_segments: usize,
    /// Whether a crash's lost writes can explain the damage (see [`evidence`]).
    explained: bool,
}

/// Looks past the invalid record at `offset` (in segment `idx`) for valid records: a chain
/// later in its segment, else the first one in a later segment.
fn valid_after(ctx: &WalkCtx<'_>, idx: usize, offset: u64) -> Option<ValidAfter> {
    let opts = point_check_options(ctx.config);
    let (seg_start, file) = ctx.files.get(idx)?;
    let seg = file.readable();
    let pos = usize::try_from(offset - seg_start).ok()?;
    // Each later segment is looked at once, in order: the first chain found is the evidence,
    // and the count says how many later segments hold valid data.
    let mut later = ctx
        .files
        .iter()
        .skip(idx + 1)
        .filter_map(|(s, f)| evidence::chain_in_later(f.readable(), *s, &opts));
    let (chain, span_end, later_segments) = match evidence::chain_after(seg, *seg_start, pos, &opts)
    {
        Some(c) => (c, (c.start - seg_start) as usize, later.count()),
        None => {
            let first = later.next()?;
            (first, seg.len(), 1 + later.count())
        }
    };
    // Past a checkpoint's durable offset a sector may have been written back once while the
    // record was copied into it; with nothing vouching for any offset, only sectors that were
    // never written back (zeros from the damage to their end) count as lost writes.
    let explained = evidence::lost_writes_explain(seg, pos, span_end, !ctx.vouched);
    Some(ValidAfter {
        chain,
        later_segments,
        explained,
    })
}

/// [`walk`] itself: validates records and hands those from the dispatch start on to `sink`.
fn walk_dispatching<'a>(
    ctx: &WalkCtx<'a>,
    walk_from: u64,
    plan: &Plan,
    sink: &mut Sink<'a, '_, '_>,
    report: &mut RecoveryReport,
) -> Result<Walked> {
    let WalkCtx {
        config,
        files,
        size,
        first_start,
        ..
    } = *ctx;
    // One CRC rule for every record (`properties::crc_property`): a `__CRC32#` property is
    // checked; a record without one (RocketMQ 4.x, or a broker appending to a segment this
    // store began) is valid on its BODYCRC and structure, wherever it sits; a damaged property
    // or a torn property list is invalid.
    let check = config.check_crc_on_recover;
    let opts = DecodeOptions {
        verify_body_crc: check,
        verify_record_crc: check,
        max_record_size: config.max_record_size(),
    };
    let mut offset = walk_from;
    let mut last_store_timestamp = 0i64;
    let mut cut: Option<u64> = None;
    let mut kept_units = KeptUnits::default();
    // The segment the last record was in and its bytes (nothing writes the CommitLog during
    // the walk), looked up again only when the walk leaves it.
    let mut current: Option<(usize, u64, &MappedFile, &[u8])> = None;
    'walk: while !files.is_empty() {
        let (idx, seg_start, _, bytes) = match current {
            Some(c) if offset.wrapping_sub(c.1) < size as u64 => c,
            _ => {
                let idx = ((offset - first_start) / size as u64) as usize;
                let Some((seg_start, file)) = files.get(idx) else {
                    cut = Some(offset);
                    break 'walk;
                };
                let c = (idx, *seg_start, file, file.readable());
                current = Some(c);
                c
            }
        };
        let pos = (offset - seg_start) as usize;
        let data = &bytes[pos..];
        let decoded = record::decode(data, &opts);
        let problem: Option<(String, bool)> = 'check: {
            match decoded {
                Ok(Decoded::Blank { total_size }) => {
                    if total_size as usize != data.len() {
                        break 'check Some((
                            format!(
                        "BLANK record of {total_size} bytes but {} bytes left in the segment",
                        data.len()
                    ),
                            true,
                        ));
                    }
                    report.scanned_bytes += data.len() as u64;
                    offset = seg_start + size as u64;
                    if idx + 1 == files.len() {
                        cut = Some(offset);
                        break 'walk;
                    }
                }
                Ok(Decoded::Record(rec)) => {
                    if rec.physical_offset() as u64 != offset {
                        break 'check Some((
                            format!("record claims physical offset {}", rec.physical_offset()),
                            true,
                        ));
                    }
                    if data.len() - rec.total_size() < record::END_FILE_MIN_BLANK_LENGTH {
                        break 'check Some((
                            "record ends closer than 8 bytes to the segment end".into(),
                            true,
                        ));
                    }
                    if offset >= plan.cq_from {
                        if rec.queue_id() < 0
                            || rec.queue_id() as u32 >= config.max_queues_per_topic
                            || check_topic(rec.topic()).is_err()
                        {
                            break 'check Some((
                                format!(
                                    "record names an unusable queue {}:{}",
                                    rec.topic(),
                                    rec.queue_id()
                                ),
                                true,
                            ));
                        }
                        match sink.send(DispatchEntry::of_record(&rec), report)? {
                            None => {}
                            // A record whose bytes are valid but that dispatch refuses is never skipped
                            // (the dispatching thread of a long rebuild could not skip it either).
                            Some(Stop::Refused(reason)) => break 'check Some((reason, false)),
                            Some(Stop::Abandoned(reason)) => return Ok(Walked::Abandoned(reason)),
                            Some(Stop::PipeClosed) => {
                                cut = Some(offset);
                                break 'walk;
                            }
                        }
                    } else if plan.incremental && !unit_agrees(sink.queues(), &mut kept_units, &rec)
                    {
                        // Below `Dd` the kept ConsumeQueue already has this record: it must be
                        // the unit at its queue offset (this also checks the queue offset as a
                        // re-dispatch would). If not, the kept data or the record is wrong: a
                        // rebuild finds out which.
                        return Ok(Walked::Abandoned(format!(
                        "the record at {offset} ({}:{} offset {}) is not where the kept ConsumeQueue points",
                        rec.topic(),
                        rec.queue_id(),
                        rec.queue_offset()
                    )));
                    } else if offset >= plan.index_from && sink.index().is_some() {
                        // Between the end of the kept IndexFile and `Dd`: the checkpoint vouches for
                        // the index entries of these records, so there may be none.
                        if !IndexService::key_hashes(&DispatchEntry::of_record(&rec)).is_empty() {
                            return Ok(Walked::Abandoned(format!(
                            "the record at {offset}, below the derived-durable offset {}, has index keys the kept IndexFile lacks",
                            plan.cq_from
                        )));
                        }
                    }
                    last_store_timestamp = last_store_timestamp.max(rec.store_timestamp());
                    if rec.record_crc().is_none() {
                        report.records_without_crc += 1;
                    }
                    report.scanned_bytes += rec.total_size() as u64;
                    offset += rec.total_size() as u64;
                }
                Err(e) => {
                    break 'check Some((e.to_string(), true));
                }
            }
            None
        };
        let Some((reason, can_skip)) = problem else {
            continue;
        };
        match invalid_at(ctx, report, offset, reason, can_skip)? {
            Verdict::End => {
                cut = Some(offset);
                break;
            }
            Verdict::Skip { to } => {
                // The damaged span becomes filler records once the walk is over; what follows
                // is dispatched as if they were there already (their queues skip the lost
                // offsets).
                if offset >= plan.cq_from {
                    let filled = filler::filled_len(offset, to, size);
                    let first = filler::pieces(filled, config.max_record_size());
                    let filler = DispatchEntry::filler(offset, first[0]);
                    match sink.send(filler, report)? {
                        None => {}
                        Some(Stop::Abandoned(reason)) => return Ok(Walked::Abandoned(reason)),
                        Some(Stop::Refused(_) | Stop::PipeClosed) => {
                            cut = Some(offset);
                            break;
                        }
                    }
                }
                report.scanned_bytes += to - offset;
                offset = to;
            }
        }
    }
    let end = cut.unwrap_or(offset);
    if plan.incremental && end < plan.cq_from {
        return Ok(Walked::Abandoned(format!(
            "the CommitLog ends at {end}, below the kept derived data ({})",
            plan.cq_from
        )));
    }
    Ok(Walked::End {
        end,
        last_store_timestamp,
    })
}

/// Whether the kept ConsumeQueue has `rec` (below `Dd`) as the unit at its queue offset.
/// Records that get no unit (prepared or rolled-back transactions) pass.
///
/// `cursors` remembers, per queue, the run of published units of the file the last check read
/// (see [`KeptUnits`]), so a record whose unit lies in that run costs no map lookup, lock or
/// `Arc` clone; the answer is the same as reading `queues` directly.
fn unit_agrees(
    queues: &HashMap<String, HashMap<i32, ConsumeQueue>>,
    cursors: &mut KeptUnits,
    rec: &RecordView<'_>,
) -> bool {
    let tx = rec.transaction_type();
    if tx != TRANSACTION_NOT_TYPE && tx != TRANSACTION_COMMIT {
        return true;
    }
    let n = rec.queue_offset() as u64;
    let unit = match cursors.run(rec.topic(), rec.queue_id(), n) {
        Some(run) => run.unit(n),
        None => {
            let Some(q) = queues.get(rec.topic()).and_then(|m| m.get(&rec.queue_id())) else {
                return false;
            };
            let max = q.max_offset();
            if n >= max {
                return false;
            }
            match q.units_from(n, usize::MAX) {
                Some(run) => {
                    let unit = run.unit(0);
                    cursors.keep(rec.topic(), rec.queue_id(), n, max, run);
                    unit
                }
                None => q.unit(n),
            }
        }
    };
    unit.is_some_and(|u| {
        u.commitlog_offset == rec.physical_offset() && u.size as usize == rec.total_size()
    })
}

/// The kept ConsumeQueue units the below-`Dd` check of [`unit_agrees`] read last: per topic,
/// per queue id, a run of consecutive published units (all below the queue's max offset when
/// it was taken) of the file holding the last unit checked. Records of a queue come in queue
/// offset order, so nearly every check finds its unit in the run of its queue. Units below
/// `Dd` do not change during the walk (only units from `Dd` on are appended), so a run stays
/// valid for the whole walk.
#[derive(Default)]
struct KeptUnits {
    /// The topic `current` belongs to.
    topic: String,
    /// Runs of `topic`, indexed by queue id.
    current: Vec<Option<KeptRun>>,
    /// Runs of the other topics met so far.
    others: HashMap<String, Vec<Option<KeptRun>>>,
}

/// Queue ids from here on are not given a run by [`KeptUnits::keep`].
const MAX_KEPT_QUEUE_ID: usize = 4096;

/// A run of a queue's units: units `first..end` are `run.unit(n - first)`.
struct KeptRun {
    first: u64,
    end: u64,
    run: UnitRun,
}

impl KeptUnits {
    /// The run holding unit `n` of `topic:queue_id`, if one was kept.
    fn run(&mut self, topic: &str, queue_id: i32, n: u64) -> Option<KeptUnitAt<'_>> {
        if topic != self.topic && !self.switch_to(topic, false) {
            return None;
        }
        let r = self
            .current
            .get(usize::try_from(queue_id).ok()?)?
            .as_ref()?;
        (r.first..r.end).contains(&n).then_some(KeptUnitAt(r))
    }

    /// Remembers `run`, which starts at unit `n` of `topic:queue_id` (whose max offset is
    /// `max`).
    fn keep(&mut self, topic: &str, queue_id: i32, n: u64, max: u64, run: UnitRun) {
        // Runs are indexed by queue id: a (configurable) huge id is looked up every time
        // instead of sizing a table for it.
        let Some(i) = usize::try_from(queue_id)
            .ok()
            .filter(|&i| i < MAX_KEPT_QUEUE_ID)
        else {
            return;
        };
        if topic != self.topic {
            self.switch_to(topic, true);
        }
        if self.current.len() <= i {
            self.current.resize_with(i + 1, || None);
        }
        let end = n.saturating_add(run.count as u64).min(max);
        self.current[i] = Some(KeptRun { first: n, end, run });
    }

    /// Makes `topic` current, parking the current topic's runs. Without `create`, returns
    /// whether `topic` had runs.
    fn switch_to(&mut self, topic: &str, create: bool) -> bool {
        let (name, runs) = match self.others.remove_entry(topic) {
            Some(found) => found,
            None if create => (topic.to_owned(), Vec::new()),
            None => return false,
        };
        let old_name = std::mem::replace(&mut self.topic, name);
        let old_runs = std::mem::replace(&mut self.current, runs);
        if !old_runs.is_empty() {
            self.others.insert(old_name, old_runs);
        }
        true
    }
}

/// A kept run known to hold the unit asked for.
struct KeptUnitAt<'a>(&'a KeptRun);

impl KeptUnitAt<'_> {
    fn unit(&self, n: u64) -> Option<CqUnit> {
        let i = usize::try_from(n - self.0.first).ok()?;
        self.0.run.unit(i)
    }
}

/// Reads the record starting at CommitLog `offset` (checked by the recovery decode options).
fn record_at<'a>(
    files: &'a [(u64, MappedFile)],
    size: usize,
    offset: u64,
    config: &StoreConfig,
) -> Option<RecordView<'a>> {
    let data = bytes_at(files, size, offset)?;
    match record::decode(data, &point_check_options(config)) {
        Ok(Decoded::Record(r)) if r.physical_offset() as u64 == offset => Some(r),
        _ => None,
    }
}

/// The loaded CommitLog bytes from `offset` to the end of its segment.
fn bytes_at(files: &[(u64, MappedFile)], size: usize, offset: u64) -> Option<&[u8]> {
    let first_start = files.first().map_or(0, |(s, _)| *s);
    let idx = usize::try_from(offset.checked_sub(first_start)? / size as u64).ok()?;
    let (start, f) = files.get(idx)?;
    f.readable().get(usize::try_from(offset - start).ok()?..)
}

/// How recovery checks a single record that derived data points at.
fn point_check_options(config: &StoreConfig) -> DecodeOptions {
    DecodeOptions {
        verify_body_crc: config.check_crc_on_recover,
        verify_record_crc: config.check_crc_on_recover,
        max_record_size: config.max_record_size(),
    }
}

/// Segments RocketMQ's normal recovery validates at the end of the log (`recoverNormally`
/// starts at the third segment from the end): no walk of a clean RocketMQ root starts before.
const ROCKETMQ_TAIL_SEGMENTS: usize = 3;

/// Where the log ended when RocketMQ shut down cleanly, as `(walk from, end, the ConsumeQueues
/// loaded to find it)`: `end` is the end
/// of the record the newest ConsumeQueue unit points at (RocketMQ's dispatch is complete at a
/// clean shutdown), `walk from` the oldest of the queues' newest units within the last
/// [`ROCKETMQ_TAIL_SEGMENTS`] segments. `Err` when the ConsumeQueue cannot say: unloadable,
/// empty, or pointing outside the segments.
fn rocketmq_shutdown_end(
    vfs: &dyn Vfs,
    root: &StoreRoot,
    config: &StoreConfig,
    files: &[(u64, MappedFile)],
    size: usize,
    tail: Tail,
) -> std::result::Result<(u64, u64, Queues), String> {
    let first_start = files.first().map_or(0, |(s, _)| *s);
    let data_end = files.last().map_or(0, |(s, _)| s + size as u64);
    let queues = load_queues(vfs, root, config, tail)
        .map_err(|e| format!("its ConsumeQueue is unusable ({})", crate::error::chain(&e)))?;
    let newest = queues
        .values()
        .flat_map(|m| m.values())
        .filter(|q| q.max_offset() > q.min_offset())
        .max_by_key(|q| q.max_physical_end())
        .ok_or("its ConsumeQueue is empty")?;
    let end = newest.max_physical_end();
    if end <= first_start || end > data_end {
        return Err(format!(
            "its newest ConsumeQueue unit ends at {end}, outside the CommitLog ({first_start}..{data_end})"
        ));
    }
    // The unit must point at its record: otherwise the ConsumeQueue ran ahead of the log (or
    // is damaged) and says nothing about where the log ended.
    let n = newest.max_offset() - 1;
    let points_right = newest.unit(n).is_some_and(|unit| {
        record_at(files, size, unit.commitlog_offset as u64, config).is_some_and(|r| {
            r.topic() == newest.topic()
                && r.queue_id() == newest.queue_id()
                && r.queue_offset() as u64 == n
                && r.total_size() as i64 == i64::from(unit.size)
        })
    });
    if !points_right {
        return Err(format!(
            "its newest ConsumeQueue unit ({}:{} at {n}) does not point at its record",
            newest.topic(),
            newest.queue_id()
        ));
    }
    // Where a walk finds every record the ConsumeQueue lacks: a queue's records after its
    // newest unit would be missing, so the walk starts at the oldest of the queues' newest
    // units (only queues with a unit in the segments RocketMQ itself checks count: anything
    // before those is as RocketMQ's recoverNormally leaves it).
    let window = files[files.len().saturating_sub(ROCKETMQ_TAIL_SEGMENTS)].0;
    let start = queues
        .values()
        .flat_map(|m| m.values())
        .filter(|q| q.max_offset() > q.min_offset())
        .filter_map(|q| q.unit(q.max_offset() - 1))
        .map(|unit| unit.commitlog_offset as u64)
        .filter(|&offset| offset >= window)
        .min()
        .unwrap_or(end)
        .min(end);
    Ok((start, end, queues))
}

/// The derived data an incremental recovery keeps, and where its re-dispatch starts.
type Kept = (
    HashMap<String, HashMap<i32, ConsumeQueue>>,
    Option<IndexService>,
    Plan,
);

/// Incremental recovery after an unclean shutdown whose checkpoint trailer is intact.
///
/// Everything derived from records below `Dd = trailer.derived_durable_offset` was synced before
/// the checkpoint was written; everything written after it may be in any state (pages of the
/// mapped files reach the disk independently). So: every ConsumeQueue loses the units of
/// records at or after `Dd` (zeroed on disk, see [`ConsumeQueue::truncate_from`]) and its last
/// kept unit must point at its record; the IndexFile keeps the files and entries
/// [`IndexService::cut_for_recovery`] can vouch for; the kept counts may not be below the
/// checkpoint's summary (taken just before `Dd`). The walk then dispatches the records from `Dd`,
/// refusing any that does not continue its queue (the dispatch's own gap check) and any with
/// index keys between the end of the kept index and `Dd`. Any doubt gives `Ok(Err(reason))`
/// and the caller rebuilds from the whole log.
///
/// Crash safety: this only ever removes derived data describing records at or after `Dd`, never
/// writes any for records below it, and re-dispatch is idempotent, so a crash at any point
/// leaves data the same checkpoint still describes. (A rebuild deletes data below `Dd`: the
/// caller first marks the checkpoint's derived data damaged, see [`mark_derived_damaged`].)
// The files, their geometry, the trailer and what the caller already loaded: one call site.
#[allow(clippy::too_many_arguments)]
fn prepare_incremental(
    vfs: &dyn Vfs,
    root: &StoreRoot,
    config: &StoreConfig,
    files: &[(u64, MappedFile)],
    t: Trailer,
    preloaded: Option<Queues>,
    tail: Tail,
) -> Result<std::result::Result<Kept, String>> {
    let size = config.commitlog_segment_size;
    let first_start = files.first().map_or(0, |(s, _)| *s);
    let dd = t.derived_durable_offset;
    if t.derived_damaged {
        return Ok(Err(
            "the last run found its derived data damaged".to_string()
        ));
    }
    if dd < first_start || dd > t.durable_commitlog_offset {
        return Ok(Err(format!(
            "derived-durable offset {dd} outside the CommitLog ({first_start}..={})",
            t.durable_commitlog_offset
        )));
    }
    let mut queues = match preloaded.map_or_else(|| load_queues(vfs, root, config, tail), Ok) {
        Ok(q) => q,
        Err(e) => {
            return Ok(Err(format!(
                "ConsumeQueue unusable: {}",
                crate::error::chain(&e)
            )))
        }
    };
    let index = match index_load(vfs, root, config) {
        Ok(i) => i,
        Err(e) => {
            return Ok(Err(format!(
                "IndexFile unusable: {}",
                crate::error::chain(&e)
            )))
        }
    };
    for qs in queues.values_mut() {
        for q in qs.values_mut() {
            // Only retention removes a queue's first files, and only after the CommitLog's head.
            if first_start == 0 && q.first_file_start().is_some_and(|s| s > 0) {
                return Ok(Err(format!(
                    "ConsumeQueue {}:{} lacks its first file but the CommitLog starts at 0",
                    q.topic(),
                    q.queue_id()
                )));
            }
            q.truncate_from(vfs, dd)?;
            let (max, min) = (q.max_offset(), q.min_offset());
            if max == min {
                continue;
            }
            let Some(unit) = q.unit(max - 1) else {
                return Ok(Err(format!(
                    "ConsumeQueue {}:{} unit {} unreadable",
                    q.topic(),
                    q.queue_id(),
                    max - 1
                )));
            };
            let offset = unit.commitlog_offset as u64;
            if offset < first_start {
                // Its record was deleted by retention: nothing to check it against.
                continue;
            }
            let points_right = record_at(files, size, offset, config).is_some_and(|r| {
                r.topic() == q.topic()
                    && r.queue_id() == q.queue_id()
                    && r.queue_offset() as u64 == max - 1
                    && r.total_size() as i64 == i64::from(unit.size)
            });
            if !points_right {
                return Ok(Err(format!(
                    "ConsumeQueue {}:{} unit {} does not point at its record (CommitLog offset {offset})",
                    q.topic(),
                    q.queue_id(),
                    max - 1
                )));
            }
        }
    }
    // The checkpoint's summary was taken just before `Dd` was read (see `Store::flush_all`):
    // what it counts describes records below `Dd`, so the kept data holds at least that much.
    // A queue or index file missing altogether shows here.
    let kept = summarize(queues.values().flat_map(|m| m.values()), None);
    if kept.queues < t.derived.queues || kept.units < t.derived.units {
        return Ok(Err(format!(
            "kept ConsumeQueue ({} queues, {} units) is less than the checkpoint's ({} queues, {} units)",
            kept.queues, kept.units, t.derived.queues, t.derived.units
        )));
    }
    let mut index_from = dd;
    if let Some(i) = &index {
        let record = |offset: u64| {
            if offset < first_start {
                return EntryRecord::Gone;
            }
            match record_at(files, size, offset, config) {
                Some(r) => EntryRecord::Found {
                    store_timestamp: r.store_timestamp(),
                    end: offset + r.total_size() as u64,
                    hashes: IndexService::key_hashes(&DispatchEntry::of_record(&r)),
                },
                None => EntryRecord::Missing,
            }
        };
        match i.cut_for_recovery(vfs, dd, &record, tail)? {
            Ok(resume) => index_from = resume.unwrap_or(0).clamp(first_start, dd),
            Err(reason) => return Ok(Err(reason)),
        }
        let (_, entries_kept) = i.summary();
        if entries_kept < t.derived.index_entries {
            return Ok(Err(format!(
                "kept IndexFile ({entries_kept} entries) is less than the checkpoint's ({} entries)",
                t.derived.index_entries
            )));
        }
    }
    Ok(Ok((
        queues,
        index,
        Plan {
            cq_from: dd,
            index_from,
            incremental: true,
        },
    )))
}

fn index_load(
    vfs: &dyn Vfs,
    root: &StoreRoot,
    config: &StoreConfig,
) -> Result<Option<IndexService>> {
    if !config.index_enabled {
        return Ok(None);
    }
    IndexService::load(vfs, root, config.index_hash_slots, config.index_max_entries).map(Some)
}

#[cfg(test)]
mod tests {
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
    /// closes it, copies it to `copy`, and returns the CommitLog offset of message 5,000.
    fn build_pair(root: &Path, copy: &Path, config: &StoreConfig) -> u64 {
        let store = Store::open(root, config.clone()).unwrap();
        let body = vec![7u8; 300];
        let mut middle = 0;
        for n in 0..8_000 {
            let key = format!("K{n}");
            let put = store
                .put(
                    &Message::new("t", n % 3, &body)
                        .with_tags("TagA")
                        .with_keys([key.as_str()]),
                )
                .unwrap();
            if n == 5_000 {
                middle = put.commitlog_offset;
            }
        }
        store.close().unwrap();
        std::fs::create_dir(copy).unwrap();
        for (rel, bytes) in files_under(root) {
            std::fs::create_dir_all(copy.join(&rel).parent().unwrap()).unwrap();
            std::fs::write(copy.join(&rel), bytes).unwrap();
        }
        middle
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

    /// When dispatch refuses a record (its queue offset leaves a gap), the log ends there
    /// whether dispatch runs on the walk's thread or on its own (which the walk has run ahead
    /// of): same end, report and derived data.
    #[test]
    fn a_record_dispatch_refuses_ends_the_log_there_when_dispatch_runs_on_its_own_thread() {
        let config = StoreConfig {
            // The queue offset is changed in place below, without fixing the record's CRC.
            check_crc_on_recover: false,
            salvage_corrupt_log: true,
            ..StoreConfig::small()
        };
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a"), dir.path().join("b"));
        let bad = build_pair(&a, &b, &config);
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
        assert_eq!(report_a.records_dispatched, 5_000);
        assert_eq!(report_a.salvaged[0].offset, bad);
        assert_eq!(report_a, report_b);
        assert!(cq_a == cq_b, "ConsumeQueue differs");
        assert!(index_a == index_b, "IndexFile differs");
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
        /// anywhere, below the durable offset), a rebuild that dispatches on a thread of its own
        /// and writes back during the walk ends the log at the same record, salvages the same
        /// way and leaves the same derived bytes as one that does neither. The crash harness
        /// (small logs) never takes the threaded path, so this is where its equivalence is
        /// checked against damage.
        #[test]
        fn a_threaded_rebuild_of_a_damaged_log_matches_the_inline_one(
            damage in proptest::collection::vec((0.0f64..1.0, 0usize..3, 1usize..600), 1..4),
        ) {
            let config = StoreConfig {
                salvage_corrupt_log: true,
                ..StoreConfig::small()
            };
            let pristine = pristine_root(&config);
            let dir = tempfile::tempdir().unwrap();
            let (a, b) = (dir.path().join("a"), dir.path().join("b"));
            let seg_size = config.commitlog_segment_size as u64;
            for root in [&a, &b] {
                copy_root(pristine.0.path(), root);
                for &(at, kind, len) in &damage {
                    let off = (at * pristine.1 as f64) as u64;
                    let seg = root
                        .join("commitlog")
                        .join(crate::segments::file_name(off - off % seg_size));
                    let mut bytes = std::fs::read(&seg).unwrap();
                    let pos = (off % seg_size) as usize;
                    let end = (pos + len).min(bytes.len());
                    match kind {
                        0 => bytes[pos] ^= 0x5A,
                        1 => bytes[pos..end].fill(0),
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

    /// One cleanly closed root of 8,000 keyed messages, built once per test process, and its
    /// CommitLog end.
    fn pristine_root(config: &StoreConfig) -> &'static (tempfile::TempDir, u64) {
        static ROOT: std::sync::OnceLock<(tempfile::TempDir, u64)> = std::sync::OnceLock::new();
        ROOT.get_or_init(|| {
            let dir = tempfile::tempdir().unwrap();
            let (root, copy) = (dir.path().join("r"), dir.path().join("copy"));
            build_pair(&root, &copy, config);
            let store = Store::open(&root, config.clone()).unwrap();
            let end = store.commitlog_max_offset();
            store.close().unwrap();
            std::fs::remove_dir_all(&copy).unwrap();
            let keep = tempfile::tempdir().unwrap();
            copy_root(&root, keep.path());
            (keep, end)
        })
    }
}
