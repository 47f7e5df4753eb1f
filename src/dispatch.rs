//! Dispatch: turning one CommitLog record into its derived entries (ConsumeQueue unit, index
//! keys). The same function runs for every put and for every record recovery re-reads, so the
//! derived data built live and the data rebuilt after a crash cannot differ.

use crate::consume_queue::ConsumeQueue;
use crate::error::Result;
use crate::format::cq_unit::CqUnit;
use crate::format::record::{RecordView, TRANSACTION_COMMIT, TRANSACTION_NOT_TYPE};
use crate::index::IndexService;
use crate::storage::Vfs;

/// Appends the record's ConsumeQueue unit to `queue` (the record's own queue) and its keys to
/// the index. Idempotent: entries already present are skipped. `allow_late_start` lets an empty
/// queue begin past offset 0 (only when the CommitLog's head was deleted by retention).
pub(crate) fn dispatch(
    vfs: &dyn Vfs,
    queue: &ConsumeQueue,
    index: Option<&IndexService>,
    rec: &RecordView<'_>,
    allow_late_start: bool,
) -> Result<()> {
    debug_assert_eq!(queue.topic(), rec.topic());
    debug_assert_eq!(queue.queue_id(), rec.queue_id());
    let tx = rec.transaction_type();
    let props = rec.dispatch_properties();
    // Prepared and rolled-back transactional records are not consumable (spec §1.10).
    if tx == TRANSACTION_NOT_TYPE || tx == TRANSACTION_COMMIT {
        let unit = CqUnit {
            commitlog_offset: rec.physical_offset(),
            size: rec.total_size() as i32,
            tags_code: props.tags_code(),
        };
        queue.append(vfs, rec.queue_offset() as u64, unit, allow_late_start)?;
    }
    if let Some(index) = index {
        index.build(vfs, rec, &props)?;
    }
    Ok(())
}
