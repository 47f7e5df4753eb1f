//! Phase 2, plan: where the walk starts and from where it (re-)dispatches, given what phase 1
//! trusts.
//!
//! * Derived data trusted after a clean shutdown: dispatch from the checkpoint's
//!   derived-durable offset, walk from the durable offset.
//! * An unclean shutdown with a believed trailer: keep the derived data below its
//!   derived-durable offset `Dd` and cut away the rest ([`prepare_incremental`]); walk from the
//!   segment holding the durable offset (or, for a clean RocketMQ root, from the oldest of its
//!   queues' newest units).
//! * Anything else: a rebuild from the log's start ([`Plan::full`]), after the checkpoint is
//!   marked as vouching for no derived data ([`fresh_derived`]).

use std::collections::HashMap;

use crate::checkpoint::summarize;
use crate::config::StoreConfig;
use crate::error::{Error, Result};
use crate::format::checkpoint_layout::{Checkpoint, Trailer};
use crate::format::dispatch_entry::DispatchEntry;
use crate::format::root::StoreRoot;
use crate::index::{EntryRecord, IndexService};
use crate::segments::Tail;
use crate::storage::{MappedFile, Vfs};

use super::load::{index_load, load_queues, record_at, Queues};
use super::trust::{Derived, Trust};
use super::RecoveryReport;

/// Where re-dispatch starts.
pub(super) struct Plan {
    /// Records from here get their ConsumeQueue unit (and index keys).
    pub cq_from: u64,
    /// Where the kept IndexFile stops (at most `cq_from`): records from here to `cq_from` must
    /// have no index keys.
    pub index_from: u64,
    /// Derived data below the offsets was kept from an unclean shutdown: a record that does not
    /// fit it abandons the walk for a full rebuild instead of ending the log.
    pub incremental: bool,
}

impl Plan {
    /// A rebuild: every record from the log's start is dispatched.
    pub(super) fn full(first_start: u64) -> Plan {
        Plan {
            cq_from: first_start,
            index_from: first_start,
            incremental: false,
        }
    }
}

/// The derived data an incremental recovery keeps, and where its re-dispatch starts.
type Kept = (Queues, Option<IndexService>, Plan);

/// Plans the dispatch for what `trust` believes about `files`. After an unclean shutdown with
/// a believed trailer this keeps the derived data the trailer vouches for (setting
/// `trust.derived`), or records in `report` why it cannot.
pub(super) fn decide(
    vfs: &dyn Vfs,
    root: &StoreRoot,
    config: &StoreConfig,
    files: &[(u64, MappedFile)],
    trust: &mut Trust,
    report: &mut RecoveryReport,
) -> Result<Plan> {
    let first_start = files.first().map_or(0, |(s, _)| *s);
    let plan = match (&trust.derived, trust.trailer) {
        (Some(_), Some(t)) => {
            let from = t.derived_durable_offset.clamp(first_start, trust.durable);
            Plan {
                cq_from: from,
                index_from: from,
                incremental: false,
            }
        }
        _ => Plan::full(first_start),
    };
    // Unclean shutdown with an intact checkpoint: keep what it vouches for, re-dispatch the rest.
    let (None, false, Some(t)) = (&trust.derived, trust.clean, trust.trailer) else {
        return Ok(plan);
    };
    let preloaded = trust.preloaded.take();
    match prepare_incremental(vfs, root, config, files, t, preloaded, trust.tail)? {
        Ok((queues, index, p)) => {
            log::info!(
                "recovery: keeping derived data below {}, re-dispatching the records from there",
                p.cq_from
            );
            trust.derived = Some((queues, index));
            Ok(p)
        }
        Err(reason) => {
            log::warn!("recovery: derived data past the checkpoint cannot be cut away ({reason}); rebuilding ConsumeQueue and IndexFile from the whole CommitLog");
            report.derived_fallback = Some(reason);
            Ok(plan)
        }
    }
}

/// Where the validation walk starts (before the dispatch start if that is lower): the durable
/// offset after a clean shutdown, a clean RocketMQ root's window, the start of the segment
/// holding the durable offset after a crash with a believed trailer, else the log's start.
pub(super) fn scan_start(trust: &Trust, first_start: u64, size: usize) -> u64 {
    let durable = trust.durable;
    if trust.clean {
        durable
    } else if let Some(tail) = trust.rocketmq_tail {
        tail
    } else if trust.trailer.is_some() {
        durable - (durable - first_start) % size as u64
    } else {
        first_start
    }
}

/// Derived data for a rebuild: the checkpoint's trailer `mark` (if it is ours to write) is
/// first marked as vouching for no derived data, then ConsumeQueue and IndexFile are deleted
/// and an empty IndexFile loaded.
pub(super) fn fresh_derived(
    vfs: &dyn Vfs,
    root: &StoreRoot,
    config: &StoreConfig,
    cp: &Checkpoint,
    mark: Option<Trailer>,
) -> Result<Derived> {
    if let Some(t) = mark {
        mark_derived_damaged(vfs, root, cp, t)?;
    }
    remove_derived(vfs, root)?;
    Ok((HashMap::new(), index_load(vfs, root, config)?))
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

/// Deletes ConsumeQueue and IndexFile, syncing the root directory.
fn remove_derived(vfs: &dyn Vfs, root: &StoreRoot) -> Result<()> {
    let cq = root.consume_queue_dir();
    if vfs.metadata(&cq).map_err(|e| Error::io(&cq, e))?.is_some() {
        vfs.remove_dir_all(&cq).map_err(|e| Error::io(&cq, e))?;
    }
    IndexService::remove_all(vfs, root)?;
    vfs.sync_dir(root.path())
        .map_err(|e| Error::io(root.path(), e))
}

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
///
/// [`ConsumeQueue::truncate_from`]: crate::consume_queue::ConsumeQueue::truncate_from
fn prepare_incremental(
    vfs: &dyn Vfs,
    root: &StoreRoot,
    config: &StoreConfig,
    files: &[(u64, MappedFile)],
    t: Trailer,
    preloaded: Option<Queues>,
    tail: Tail,
) -> Result<std::result::Result<Kept, String>> {
    let first_start = files.first().map_or(0, |(s, _)| *s);
    let dd = t.derived_durable_offset;
    if let Err(reason) = check_trailer_offsets(t, first_start) {
        return Ok(Err(reason));
    }
    let (mut queues, index) = match load_kept(vfs, root, config, preloaded, tail) {
        Ok(loaded) => loaded,
        Err(reason) => return Ok(Err(reason)),
    };
    if let Err(reason) = cut_queues(vfs, config, files, &mut queues, dd)? {
        return Ok(Err(reason));
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
    let index_from = match &index {
        Some(i) => match cut_index(vfs, config, files, i, t, tail)? {
            Ok(from) => from,
            Err(reason) => return Ok(Err(reason)),
        },
        None => dd,
    };
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

/// Whether the trailer's derived data can be kept at all: not marked damaged, and its
/// derived-durable offset within the log it vouches for.
fn check_trailer_offsets(t: Trailer, first_start: u64) -> std::result::Result<(), String> {
    let dd = t.derived_durable_offset;
    if t.derived_damaged {
        return Err("the last run found its derived data damaged".to_string());
    }
    if dd < first_start || dd > t.durable_commitlog_offset {
        return Err(format!(
            "derived-durable offset {dd} outside the CommitLog ({first_start}..={})",
            t.durable_commitlog_offset
        ));
    }
    Ok(())
}

/// The ConsumeQueues (`preloaded`, or loaded now) and the IndexFile as found on disk; `Err`
/// says which is unusable.
fn load_kept(
    vfs: &dyn Vfs,
    root: &StoreRoot,
    config: &StoreConfig,
    preloaded: Option<Queues>,
    tail: Tail,
) -> std::result::Result<Derived, String> {
    let queues = preloaded
        .map_or_else(|| load_queues(vfs, root, config, tail), Ok)
        .map_err(|e| format!("ConsumeQueue unusable: {}", crate::error::chain(&e)))?;
    let index = index_load(vfs, root, config)
        .map_err(|e| format!("IndexFile unusable: {}", crate::error::chain(&e)))?;
    Ok((queues, index))
}

/// Cuts every ConsumeQueue's units of records at or after `dd` and checks that its last kept
/// unit points at its record; `Ok(Err(reason))` when a queue cannot be kept.
fn cut_queues(
    vfs: &dyn Vfs,
    config: &StoreConfig,
    files: &[(u64, MappedFile)],
    queues: &mut Queues,
    dd: u64,
) -> Result<std::result::Result<(), String>> {
    let size = config.commitlog_segment_size;
    let first_start = files.first().map_or(0, |(s, _)| *s);
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
    Ok(Ok(()))
}

/// Cuts the IndexFile to what [`IndexService::cut_for_recovery`] can vouch for below the
/// trailer's derived-durable offset, and checks it keeps at least the checkpoint's entries.
/// Returns where the kept index stops (records from there to `Dd` must have no keys).
fn cut_index(
    vfs: &dyn Vfs,
    config: &StoreConfig,
    files: &[(u64, MappedFile)],
    index: &IndexService,
    t: Trailer,
    tail: Tail,
) -> Result<std::result::Result<u64, String>> {
    let size = config.commitlog_segment_size;
    let first_start = files.first().map_or(0, |(s, _)| *s);
    let dd = t.derived_durable_offset;
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
    let index_from = match index.cut_for_recovery(vfs, dd, &record, tail)? {
        Ok(resume) => resume.unwrap_or(0).clamp(first_start, dd),
        Err(reason) => return Ok(Err(reason)),
    };
    let (_, entries_kept) = index.summary();
    if entries_kept < t.derived.index_entries {
        return Ok(Err(format!(
            "kept IndexFile ({entries_kept} entries) is less than the checkpoint's ({} entries)",
            t.derived.index_entries
        )));
    }
    Ok(Ok(index_from))
}
