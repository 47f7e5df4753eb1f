//! Dispatch: turning one CommitLog record into its derived entries (ConsumeQueue unit, index
//! keys). The same function runs for every put and for every record recovery re-reads, so the
//! derived data built live and the data rebuilt after a crash cannot differ: recovery describes
//! a record by [`DispatchEntry::of_record`] from its bytes, the put path by the same fields it
//! just encoded (checked against `of_record` in debug builds).

use crate::consume_queue::ConsumeQueue;
use crate::error::Result;
use crate::format::cq_unit::CqUnit;
use crate::format::dispatch_entry::DispatchEntry;
use crate::format::record::{TRANSACTION_COMMIT, TRANSACTION_NOT_TYPE};
use crate::format::schedule::{DelayLevels, SCHEDULE_TOPIC};
use crate::index::IndexService;
use crate::storage::Vfs;

/// Appends the record's ConsumeQueue unit to `queue` (the record's own queue) and its keys to
/// the index. Idempotent: entries already present are skipped. `allow_late_start` lets an empty
/// queue begin past offset 0 (only when the CommitLog's head was deleted by retention).
/// `delays` gives the tags code of a scheduled message: its delivery time.
pub(crate) fn dispatch(
    vfs: &dyn Vfs,
    queue: &ConsumeQueue,
    index: Option<&IndexService>,
    entry: &DispatchEntry<'_>,
    allow_late_start: bool,
    delays: &DelayLevels,
) -> Result<()> {
    debug_assert_eq!(queue.topic(), entry.topic);
    debug_assert_eq!(queue.queue_id(), entry.queue_id);
    let tx = entry.transaction_type;
    // Prepared and rolled-back transactional records are not consumable (spec §1.10).
    if tx == TRANSACTION_NOT_TYPE || tx == TRANSACTION_COMMIT {
        let unit = CqUnit {
            commitlog_offset: entry.commitlog_offset as i64,
            size: entry.size,
            tags_code: unit_tags_code(entry, delays),
        };
        queue.append(vfs, entry.queue_offset, unit, allow_late_start)?;
    }
    if let Some(index) = index {
        index.build(vfs, entry)?;
    }
    Ok(())
}

/// The ConsumeQueue tags code of a record: the Java hash of its tags, or, for a message of the
/// schedule topic with a delay level, its delivery time (RocketMQ's
/// `checkMessageAndReturnSize`).
pub(crate) fn unit_tags_code(entry: &DispatchEntry<'_>, delays: &DelayLevels) -> i64 {
    if entry.topic == SCHEDULE_TOPIC {
        if let Some(due) = delays.tags_code(
            entry.props.delay,
            entry.props.timer_deliver_ms,
            entry.store_timestamp,
        ) {
            return due;
        }
    }
    entry.props.tags_code()
}
