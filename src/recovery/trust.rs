//! Phase 1, trust: what the checkpoint, the `abort` file and the CommitLog's files say recovery
//! may believe before it reads a single record.
//!
//! * A trailer claiming more durable data than the segments hold is rejected (the whole log is
//!   then scanned and derived data rebuilt).
//! * RocketMQ timestamps newer than the trailer recorded mean a broker wrote since: the trailer
//!   vouches for what it covers, the rest is checked as after a crash.
//! * A clean RocketMQ root (no trailer of ours) gets a trailer standing in for its shutdown:
//!   the end of the record its newest ConsumeQueue unit points at ([`rocketmq_shutdown_end`]).
//! * After a clean shutdown, derived data is trusted if its shape matches the checkpoint's
//!   summary and the checkpoint's durable offset is where the log ends ([`check_clean_end`]).

use crate::checkpoint::summarize;
use crate::config::StoreConfig;
use crate::error::Result;
use crate::format::checkpoint_layout::{Checkpoint, Trailer};
use crate::format::record::{self, Decoded};
use crate::format::root::StoreRoot;
use crate::index::IndexService;
use crate::segments::Tail;
use crate::storage::{MappedFile, Vfs};

use super::load::{bytes_at, index_load, load_queues, point_check_options, record_at, Queues};

/// Derived data recovery keeps: the ConsumeQueues and the IndexFile (if enabled).
pub(super) type Derived = (Queues, Option<IndexService>);

/// Segments RocketMQ's normal recovery validates at the end of the log (`recoverNormally`
/// starts at the third segment from the end): no walk of a clean RocketMQ root starts before.
const ROCKETMQ_TAIL_SEGMENTS: usize = 3;

/// What recovery believes before the walk.
pub(super) struct Trust {
    /// The trailer believed: the checkpoint's own, or one standing in for a clean RocketMQ
    /// shutdown (then [`rocketmq_tail`](Self::rocketmq_tail) is set).
    pub trailer: Option<Trailer>,
    /// Why the checkpoint was not believed.
    pub rejected: Option<String>,
    /// A RocketMQ broker wrote to the root after the trailer was written.
    pub written_since: bool,
    /// A clean RocketMQ root: where its walk starts.
    pub rocketmq_tail: Option<u64>,
    /// The ConsumeQueues loaded to find a clean RocketMQ root's end (kept for the plan).
    pub preloaded: Option<Queues>,
    /// The previous run closed cleanly and nothing since casts doubt on it.
    pub clean: bool,
    /// The durable offset the believed trailer names (at least the log's start), else 0.
    pub durable: u64,
    /// Derived data trusted as it is after a clean shutdown.
    pub derived: Option<Derived>,
    /// What the files may hold past their written end (see [`tail_after`]).
    pub tail: Tail,
}

/// What a file may hold past its written end: after a clean shutdown nothing, so a clean open
/// does not zero and sync every tail again.
pub(super) fn tail_after(abort_present: bool) -> Tail {
    if abort_present {
        Tail::MayHoldStale
    } else {
        Tail::Clean
    }
}

impl Trust {
    /// Decides what to believe about `files` (the joined CommitLog segments) given the
    /// checkpoint `cp`, whether the `abort` file was present and whether a segment gap was
    /// repaired.
    pub(super) fn decide(
        vfs: &dyn Vfs,
        root: &StoreRoot,
        config: &StoreConfig,
        cp: &Checkpoint,
        files: &[(u64, MappedFile)],
        abort_present: bool,
        gap_repaired: bool,
    ) -> Result<Trust> {
        let size = config.commitlog_segment_size;
        let tail = tail_after(abort_present);
        let first_start = files.first().map_or(0, |(s, _)| *s);
        let data_end = files.last().map_or(0, |(s, _)| s + size as u64);
        let (mut trailer, rejected) = believed_trailer(cp, files, data_end);
        // A RocketMQ broker that opened the root since our checkpoint rewrote its timestamps
        // and may have appended: the trailer still vouches for what it covers, the rest is
        // checked as after a crash (scan from the segment holding its durable offset, keep
        // derived data below its derived-durable offset, re-dispatch the records after it).
        let written_since = trailer.is_some() && cp.written_since_trailer();
        if written_since {
            log::info!("recovery: the checkpoint's RocketMQ timestamps are newer than its trailer recorded (a broker wrote here since); checking what came after it");
        }
        let mut rocketmq_tail = None;
        let mut preloaded = None;
        if !abort_present
            && trailer.is_none()
            && rejected.is_none()
            && !files.is_empty()
            && crate::checkpoint::written_by_rocketmq(vfs, root)?
        {
            if let Some((stand_in, walk_from, queues)) =
                rocketmq_stand_in(vfs, root, config, files, tail)
            {
                preloaded = Some(queues);
                trailer = Some(stand_in);
                rocketmq_tail = Some(walk_from);
            }
        }
        // Files deleted to close a gap may hold records derived data points at: not a clean
        // open.
        let clean = !abort_present
            && trailer.is_some()
            && !written_since
            && rocketmq_tail.is_none()
            && !gap_repaired;
        let mut trust = Trust {
            trailer,
            rejected,
            written_since,
            rocketmq_tail,
            preloaded,
            clean,
            durable: trailer.map_or(0, |t| t.durable_commitlog_offset.max(first_start)),
            derived: None,
            tail,
        };
        trust.derived = trust.clean_derived(vfs, root, config, files, tail);
        if let Some(reason) = &trust.rejected {
            log::error!(
                "recovery: {reason}; ignoring the checkpoint, scanning the whole CommitLog"
            );
        }
        Ok(trust)
    }

    /// Derived data: trusted after a clean shutdown if it loads, its shape matches the
    /// checkpoint's summary and the checkpoint describes this log; otherwise `None` (rebuilt).
    /// A checkpoint that does not describe the log is rejected here.
    fn clean_derived(
        &mut self,
        vfs: &dyn Vfs,
        root: &StoreRoot,
        config: &StoreConfig,
        files: &[(u64, MappedFile)],
        tail: Tail,
    ) -> Option<Derived> {
        if !self.clean {
            return None;
        }
        if self.trailer.is_some_and(|t| t.derived_damaged) {
            log::warn!("the last run found its derived data damaged; rebuilding ConsumeQueue and IndexFile from the CommitLog");
            return None;
        }
        let (q, i) = match (
            load_queues(vfs, root, config, tail),
            index_load(vfs, root, config),
        ) {
            (Ok(q), Ok(i)) => (q, i),
            (Err(e), _) | (_, Err(e)) => {
                log::warn!(
                    "derived data unusable ({}); rebuilding ConsumeQueue and IndexFile from the CommitLog",
                    crate::error::chain(&e)
                );
                return None;
            }
        };
        let found = summarize(q.values().flat_map(|m| m.values()), i.as_ref());
        let expected = self.trailer.map(|t| t.derived).unwrap_or_default();
        if found != expected {
            log::warn!(
                "derived data differs from the checkpoint (found {found:?}, expected {expected:?}); rebuilding ConsumeQueue and IndexFile from the CommitLog"
            );
            return None;
        }
        let size = config.commitlog_segment_size;
        if let Err(reason) = check_clean_end(files, size, self.durable, &q, config) {
            // The checkpoint does not describe this log: believe neither it nor the derived
            // data, scan everything.
            self.rejected = Some(reason);
            self.trailer = None;
            self.clean = false;
            self.durable = files.first().map_or(0, |(s, _)| *s);
            return None;
        }
        Some((q, i))
    }
}

/// The checkpoint's trailer unless it claims more durable CommitLog than the segments (ending
/// at `data_end`) hold, and why it was rejected if so.
fn believed_trailer(
    cp: &Checkpoint,
    files: &[(u64, MappedFile)],
    data_end: u64,
) -> (Option<Trailer>, Option<String>) {
    match cp.trailer {
        Some(t)
            if t.durable_commitlog_offset > data_end
                || (files.is_empty() && t.durable_commitlog_offset > 0) =>
        {
            let reason = format!(
                "checkpoint says {} bytes of CommitLog are durable but the segments end at {data_end}: acknowledged data is missing",
                t.durable_commitlog_offset
            );
            (None, Some(reason))
        }
        trailer => (trailer, None),
    }
}

/// A clean RocketMQ root (no `abort`, a checkpoint RocketMQ wrote, no trailer of ours):
/// RocketMQ's normal recovery, made safe. The newest ConsumeQueue unit marks where the log
/// ended at the broker's shutdown; it stands in for our trailer's durable and derived-durable
/// offsets, so the ConsumeQueue and IndexFile are kept after their tails are checked against
/// the log (as after a crash with a trailer), and the last segments are validated.
///
/// Returns the stand-in trailer, where the walk starts and the ConsumeQueues loaded to find
/// them; `None` (logged) when the ConsumeQueue cannot say, so everything is rebuilt.
fn rocketmq_stand_in(
    vfs: &dyn Vfs,
    root: &StoreRoot,
    config: &StoreConfig,
    files: &[(u64, MappedFile)],
    tail: Tail,
) -> Option<(Trailer, u64, Queues)> {
    let size = config.commitlog_segment_size;
    match rocketmq_shutdown_end(vfs, root, config, files, size, tail) {
        Ok((walk_from, end, queues)) => {
            log::info!("recovery: a RocketMQ root shut down cleanly; its ConsumeQueue ends at {end}: validating the log from {walk_from} and the derived data's tails");
            let stand_in = Trailer {
                durable_commitlog_offset: end,
                derived_durable_offset: end,
                ..Trailer::default()
            };
            Some((stand_in, walk_from, queues))
        }
        Err(reason) => {
            log::info!("recovery: a RocketMQ root, but {reason}: rebuilding ConsumeQueue and IndexFile from the whole CommitLog");
            None
        }
    }
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
    queues: &Queues,
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
