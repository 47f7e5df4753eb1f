//! [`DispatchEntry`]: what the derived files take from one CommitLog record. A pure
//! description, built from a decoded record (recovery) or from the fields a put just encoded;
//! the same entry gives the same ConsumeQueue unit and index keys either way.

use super::record::{DispatchProperties, RecordView};

/// What dispatch reads from one record: where it is, which queue slot it fills, and the
/// properties the ConsumeQueue and the IndexFile are built from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DispatchEntry<'a> {
    /// TOPIC.
    pub topic: &'a str,
    /// QUEUEID.
    pub queue_id: i32,
    /// QUEUEOFFSET.
    pub queue_offset: u64,
    /// PHYSICALOFFSET: where the record starts in the CommitLog.
    pub commitlog_offset: u64,
    /// TOTALSIZE.
    pub size: i32,
    /// STORETIMESTAMP.
    pub store_timestamp: i64,
    /// The transaction type bits of SYSFLAG.
    pub transaction_type: i32,
    /// TAGS, KEYS and UNIQ_KEY.
    pub props: DispatchProperties<'a>,
}

impl<'a> DispatchEntry<'a> {
    /// The entry of a decoded record.
    pub fn of_record(rec: &RecordView<'a>) -> Self {
        DispatchEntry {
            topic: rec.topic(),
            queue_id: rec.queue_id(),
            queue_offset: rec.queue_offset() as u64,
            commitlog_offset: rec.physical_offset() as u64,
            size: rec.total_size() as i32,
            store_timestamp: rec.store_timestamp(),
            transaction_type: rec.transaction_type(),
            props: rec.dispatch_properties(),
        }
    }

    /// The entry of the first salvage filler record (`size` bytes at `commitlog_offset`, see
    /// [`super::filler`]): dispatch gives it no unit and lets the queues of the messages the
    /// damaged span held skip their offsets.
    pub fn filler(commitlog_offset: u64, size: usize) -> DispatchEntry<'static> {
        DispatchEntry {
            topic: super::filler::SALVAGE_TOPIC,
            queue_id: 0,
            queue_offset: 0,
            commitlog_offset,
            size: i32::try_from(size).unwrap_or(i32::MAX),
            store_timestamp: 0,
            transaction_type: super::record::TRANSACTION_ROLLBACK,
            props: DispatchProperties::default(),
        }
    }
}
