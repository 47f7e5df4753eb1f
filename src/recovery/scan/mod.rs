//! Phase 3, scan: the walk over the CommitLog that validates records from the planned start and
//! dispatches those from the dispatch start to ConsumeQueue and IndexFile, until the first
//! invalid record (which is where the log ends).
//!
//! * this file: the walk's retries (an incremental walk that meets a record the kept data
//!   disagrees with starts over as a rebuild), and the threads of a long walk (background
//!   write-back, dispatch on a thread of its own);
//! * [`walk`](mod@walk): the record-by-record walk itself;
//! * [`sink`] and [`dispatcher`]: where validated records go, inline or through a pipe;
//! * [`damage`]: what an invalid record means (the end, a corruption error, or salvage);
//! * [`kept_units`]: checking records below `Dd` against the kept ConsumeQueue.

use std::sync::Arc;

use crate::config::StoreConfig;
use crate::error::{Error, Result};
use crate::format::checkpoint_layout::Checkpoint;
use crate::format::root::StoreRoot;
use crate::index::IndexService;
use crate::storage::{FlushStrategy, MappedFile, Vfs};

use self::damage::invalid_at;
use self::dispatcher::{Dispatched, Dispatcher};
use self::sink::{RecordBatch, Sink, PIPE_BATCH};
use self::walk::walk_dispatching;
use super::load::Queues;
use super::plan::{self, Plan};
use super::trust::Trust;
use super::RecoveryReport;

mod damage;
mod dispatcher;
mod kept_units;
mod sink;
mod walk;

/// CommitLog bytes a rebuild dispatches between two background write-backs of its derived data
/// (see [`walk`](fn@walk)); a walk over less than twice this writes nothing back early (nor
/// starts a thread).
pub(super) const WRITE_BACK_EVERY: u64 = 128 << 20;

/// What the walk needs to know about the CommitLog.
pub(super) struct WalkCtx<'a> {
    pub vfs: &'a dyn Vfs,
    pub root: &'a StoreRoot,
    pub config: &'a StoreConfig,
    pub files: &'a [(u64, MappedFile)],
    pub size: usize,
    pub first_start: u64,
    pub durable: u64,
    /// A checkpoint (ours, or RocketMQ's shutdown point) vouches for `durable`: damage past it
    /// may be a crash's lost write-back (see [`evidence`](crate::format::evidence)).
    pub vouched: bool,
    /// Dispatched log bytes between two background write-backs of a rebuild.
    pub write_back_every: u64,
}

/// How the walk ended.
enum Walked {
    /// The log ends at `end`.
    End { end: u64, last_store_timestamp: i64 },
    /// An incremental walk met a record the kept derived data does not agree with, or the log
    /// ends below the kept data: nothing of the CommitLog was changed, rebuild everything.
    Abandoned(String),
}

/// What the scan leaves: the derived data, brought up to the log's end.
pub(super) struct Scanned {
    /// Every ConsumeQueue, with the units of the records dispatched.
    pub queues: Queues,
    /// The IndexFile, with the keys of the records dispatched.
    pub index: Option<IndexService>,
    /// Where the log ends.
    pub end: u64,
    /// The newest store timestamp among the records walked (0 when none).
    pub last_store_timestamp: i64,
}

/// Walks the log as `plan` says, starting over as a rebuild when an incremental walk is
/// abandoned; a rebuild first gets fresh derived data ([`plan::fresh_derived`]). Records the
/// walk in `report` (also its [`end_offset`](RecoveryReport::end_offset)).
pub(super) fn scan(
    ctx: &WalkCtx<'_>,
    trust: &mut Trust,
    cp: &Checkpoint,
    mut plan: Plan,
    report: &mut RecoveryReport,
) -> Result<Scanned> {
    let (vfs, root, config) = (ctx.vfs, ctx.root, ctx.config);
    let scan_start = plan::scan_start(trust, ctx.first_start, ctx.size);
    let data_end = ctx.files.last().map_or(0, |(s, _)| s + ctx.size as u64);
    let (durable, clean) = (ctx.durable, trust.clean);
    loop {
        if trust.derived.is_none() {
            report.derived_rebuilt = true;
            // (A trailer standing in for RocketMQ's shutdown is not ours to write.)
            let mark = trust.trailer.filter(|_| trust.rocketmq_tail.is_none());
            trust.derived = Some(plan::fresh_derived(vfs, root, config, cp, mark)?);
        }
        let (mut queues, index) = trust.derived.take().expect("set above");
        let walk_from = scan_start.min(plan.cq_from).min(plan.index_from);
        report.scanned_from = walk_from;
        report.dispatched_from = plan.cq_from;
        if walk_from != ctx.first_start || !ctx.files.is_empty() {
            log::info!("recovery: scanning CommitLog from {walk_from} (durable {durable}, segments end {data_end}, clean {clean})");
        }
        match walk(ctx, walk_from, &plan, &mut queues, index.as_ref(), report)? {
            Walked::Abandoned(reason) => {
                log::warn!("recovery: incremental re-dispatch abandoned ({reason}); rebuilding ConsumeQueue and IndexFile from the whole CommitLog");
                report.derived_fallback = Some(reason);
                report.scanned_bytes = 0;
                report.records_without_crc = 0;
                report.records_dispatched = 0;
                report.salvaged.clear();
                report.cut_after_lost_write = None;
                drop((queues, index));
                plan = Plan::full(ctx.first_start);
            }
            Walked::End {
                end,
                last_store_timestamp,
            } => {
                report.end_offset = end;
                return Ok(Scanned {
                    queues,
                    index,
                    end,
                    last_store_timestamp,
                });
            }
        }
    }
}

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
    queues: &mut Queues,
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

/// [`walk`](fn@walk) with the background write-back of a long walk and, for a long rebuild,
/// dispatch on a thread of its own: the walk validates records (decode, CRCs) and hands them
/// over in batches, in CommitLog order, so validation and dispatch (ConsumeQueue units, index
/// keys, first touches of their pages) use both cores. Where dispatch refuses a record (a gap
/// in its queue), the log ends there, exactly as when both run on one thread.
fn walk_writing_back(
    ctx: &WalkCtx<'_>,
    walk_from: u64,
    plan: &Plan,
    queues: &mut Queues,
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
            // Records without a `__CRC32#` property among those dispatched: the walk's count
            // may run past a record dispatch refuses.
            let mut without_crc = 0u64;
            for batch in rx {
                for (entry, no_crc) in batch {
                    match dispatcher.dispatch(&entry, &mut write_back) {
                        Ok(Dispatched::Done) => without_crc += u64::from(no_crc),
                        Ok(stop) => {
                            let stopped = Ok(Some((entry.commitlog_offset, stop)));
                            return (dispatcher.done(), without_crc, stopped);
                        }
                        Err(e) => return (dispatcher.done(), without_crc, Err(e)),
                    }
                }
            }
            (dispatcher.done(), without_crc, Ok(None))
        })
        .map_err(|e| Error::io(ctx.root.path(), e))?;
    let mut sink = Sink::Pipe(Vec::with_capacity(PIPE_BATCH), tx, dispatcher_index);
    let walked = walk_dispatching(ctx, walk_from, plan, &mut sink, report);
    // Hands over the last batch, closes the channel.
    sink.finish();
    drop(sink);
    let ((records, dispatched_timestamp), without_crc, stopped) = worker
        .join()
        .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
    report.records_dispatched = records;
    // The walk counted only the records it did not pipe (below the dispatch start).
    report.records_without_crc += without_crc;
    match stopped? {
        None => walked,
        Some((_, Dispatched::Abandoned(reason))) => Ok(Walked::Abandoned(reason)),
        Some((offset, Dispatched::Invalid(reason))) => {
            // The log ends at the refused record: whatever the walk found after it does not
            // count (the ConsumeQueue units dispatched after it are cut in `finish.rs`).
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
