//! Opening a store root: load the CommitLog, find its valid end, cut and zero a torn tail, and
//! bring ConsumeQueue and IndexFile in line with it (spec §7, with the stricter rules of
//! `design/TESTING.md` §4).
//!
//! Recovery runs five phases, in this order, each in a file named after it (the names say what
//! each phase decides, so that a reader looking for "why did the walk start there" or "why was
//! this cut" opens one file):
//!
//! 1. **trust** (`trust.rs`): what the `abort` file, the checkpoint and the segment files say
//!    can be believed. A clean shutdown (no `abort`, checkpoint trailer intact, RocketMQ's
//!    timestamps no newer than the trailer recorded — a newer one means a broker wrote since,
//!    handled as after a crash) trusts the durable offset `D` the checkpoint names, and derived
//!    data if its shape (queue, unit, index file and entry counts) matches what the checkpoint
//!    recorded and `D` is where the log ends. A trailer claiming more than the segments hold is
//!    rejected ([`RecoveryReport::checkpoint_rejected`]). A clean RocketMQ root (no `abort`, a
//!    checkpoint RocketMQ wrote, none of our trailer) gets a trailer standing in for its
//!    shutdown: the newest ConsumeQueue unit (which must point at its record) stands in for
//!    both offsets.
//! 2. **plan** (`plan.rs`): where the walk starts and from where it dispatches. After a clean
//!    shutdown: at `D`. After an unclean shutdown with an intact trailer: at the start of the
//!    segment holding `D` (records below `D` were acknowledged durable: an invalid one there is
//!    a corruption error, never a silent cut), with derived data kept incrementally: what
//!    describes records below the checkpoint's derived-durable offset `Dd` was synced before
//!    the checkpoint and is kept after cheap checks, what describes later records is cut away,
//!    and only records from `Dd` (index keys: from where the kept IndexFile stops, at most `Dd`)
//!    are re-dispatched. A clean RocketMQ root is walked from the oldest of the queues' newest
//!    units (never before the third segment from the end, where RocketMQ's own walk starts) to
//!    its end, re-dispatching what a lagging queue lacks; below that the log is trusted as a
//!    clean open trusts it below the durable offset (reads check CRCs; `rocketstore verify`
//!    checks all). With no usable trailer (a RocketMQ root after a crash, a damaged
//!    checkpoint), or derived data that cannot be kept, ConsumeQueue and IndexFile are deleted
//!    and rebuilt by re-dispatching every record, so the whole CommitLog is scanned.
//! 3. **scan** (`scan/`): the walk. It accepts a record only if it decodes (magic, lengths, CRCs
//!    when configured), its PHYSICALOFFSET equals its position, and its queue offset is the next
//!    one of its queue. The first record that fails ends the log (or, when valid data follows
//!    it, is a corruption error or salvage, `scan/damage.rs`). An incremental walk that meets a
//!    record the kept data disagrees with starts over as a rebuild (see
//!    [`RecoveryReport::derived_fallback`]).
//! 4. **cut** (`cut.rs`): the segment holding the end is cut there, the rest of it zeroed (so no
//!    stale record can ever resurface), later segments are deleted, salvaged spans filled
//!    (`salvage.rs`), and after an unclean shutdown the accepted records synced.
//! 5. **finish** (`finish.rs`): derived data follows the cut log and the recovered state goes to
//!    the store with the [`RecoveryReport`].
//!
//! Before the phases, the segment files are loaded and a gap between them repaired
//! (`gaps.rs`); `load.rs` holds the readers of on-disk state every phase shares.

use std::collections::HashMap;

use crate::config::StoreConfig;
use crate::consume_queue::ConsumeQueue;
use crate::error::Result;
use crate::format::checkpoint_layout::Checkpoint;
use crate::format::root::StoreRoot;
use crate::index::IndexService;
use crate::segments::{self, Segment};
use crate::storage::Vfs;

use self::cut::Cut;
use self::load::point_check_options;
use self::scan::{WalkCtx, WRITE_BACK_EVERY};
use self::trust::Trust;

mod cut;
mod finish;
mod gaps;
mod load;
mod plan;
mod salvage;
mod scan;
mod trust;
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
    /// first, see `src/recovery/plan.rs`).
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
/// dispatched log (see `scan/mod.rs`): the phases in order.
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
    // A zero-length last segment (a crash right after its creation) is deleted only by the
    // cut, once recovery has decided to open: a refused open leaves the CommitLog as it found
    // it.
    let loaded = segments::load_runs(vfs, &dir, size, true)?;
    let (mut files, gap_repaired) =
        gaps::join(vfs, &dir, config, cp.trailer.as_ref(), loaded.runs)?;
    let first_start = files.first().map_or(0, |(s, _)| *s);

    let mut trust = Trust::decide(
        vfs,
        root,
        config,
        cp,
        &files,
        abort_present,
        gap_repaired.is_some(),
    )?;
    let mut report = RecoveryReport {
        clean_shutdown: trust.clean,
        checkpoint_trusted: trust.trailer.is_some() && trust.rocketmq_tail.is_none(),
        rocketmq_normal_recovery: trust.rocketmq_tail.is_some(),
        written_since_checkpoint: trust.written_since,
        checkpoint_rejected: trust.rejected.take(),
        gap_repaired,
        ..Default::default()
    };
    let plan = plan::decide(vfs, root, config, &files, &mut trust, &mut report)?;

    let ctx = WalkCtx {
        vfs,
        root,
        config,
        files: &files,
        size,
        first_start,
        durable: trust.durable,
        vouched: trust.trailer.is_some(),
        write_back_every,
    };
    let scanned = scan::scan(&ctx, &mut trust, cp, plan, &mut report)?;

    let cut = Cut {
        vfs,
        root,
        config,
        empty_last: loaded.empty_last.as_deref(),
        clean: trust.clean,
        tail: trust.tail,
    };
    cut.apply(&mut files, &scanned, &mut report)?;
    finish::finish(vfs, cp, files, first_start, scanned, report)
}

#[cfg(test)]
mod tests;
