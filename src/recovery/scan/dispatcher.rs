//! Dispatch of the walk's records to ConsumeQueue and IndexFile, in CommitLog order, on the
//! walk's thread or on one of its own. A record dispatch refuses (it does not continue its
//! queue) ends the log, or abandons an incremental walk; a salvage filler lets its queues skip
//! the offsets of the messages it replaced.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use crate::config::StoreConfig;
use crate::consume_queue::ConsumeQueue;
use crate::dispatch::dispatch;
use crate::error::{Error, Result};
use crate::format::cq_unit::CqUnit;
use crate::format::dispatch_entry::DispatchEntry;
use crate::format::filler;
use crate::format::record;
use crate::format::root::StoreRoot;
use crate::format::schedule::DelayLevels;
use crate::index::IndexService;
use crate::storage::{MappedFile, Vfs};

use super::WalkCtx;
use crate::recovery::load::Queues;
use crate::recovery::plan::Plan;

/// What dispatching one record came to.
pub(super) enum Dispatched {
    /// Its units and keys are in.
    Done,
    /// Dispatch refused it (it does not continue its queue): the log ends there.
    Invalid(String),
    /// An incremental walk met a record its kept data disagrees with: rebuild everything.
    Abandoned(String),
}

/// Dispatches the walk's records, in CommitLog order.
pub(super) struct Dispatcher<'a, 'q> {
    vfs: &'a dyn Vfs,
    root: &'a StoreRoot,
    config: &'a StoreConfig,
    /// The delay table: a scheduled message's unit holds its delivery time.
    delays: DelayLevels,
    incremental: bool,
    allow_late_start: bool,
    /// The queues records are dispatched to.
    pub(super) queues: &'q mut Queues,
    /// The index records are dispatched to.
    pub(super) index: Option<&'a IndexService>,
    /// A topic `queues` is known to have.
    present_topic: &'a str,
    next_write_back: u64,
    write_back_every: u64,
    /// Records dispatched so far.
    pub(super) records: u64,
    last_store_timestamp: i64,
    /// The unit of the last salvage filler met: from there on a queue may skip offsets (the
    /// messages of a salvaged span), which get this unit and read as removed.
    filler: Option<CqUnit>,
    /// Offsets queues may still skip: one per shortest record the salvaged spans could hold.
    skippable: u64,
}

impl<'a, 'q> Dispatcher<'a, 'q> {
    /// A dispatcher for a walk from `walk_from` as `plan` says.
    pub(super) fn new(
        ctx: &WalkCtx<'a>,
        walk_from: u64,
        plan: &Plan,
        queues: &'q mut Queues,
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
    pub(super) fn done(&self) -> (u64, i64) {
        (self.records, self.last_store_timestamp)
    }

    /// Dispatches the record `entry` describes (the walk checked that its physical offset is
    /// where it lies); calls `write_back` with the ConsumeQueue files holding unsynced units
    /// every `write_back_every` bytes of log.
    pub(super) fn dispatch(
        &mut self,
        entry: &DispatchEntry<'a>,
        write_back: &mut dyn FnMut(Vec<Arc<MappedFile>>),
    ) -> Result<Dispatched> {
        let offset = entry.commitlog_offset;
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
