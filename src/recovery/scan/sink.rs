//! Where the walk sends the records it validated: dispatched right away on the walk's thread,
//! or batched for a dispatching thread of their own (a long rebuild, see
//! [`walk_writing_back`](super::walk_writing_back)).

use std::sync::Arc;

use crate::error::Result;
use crate::format::dispatch_entry::DispatchEntry;
use crate::index::IndexService;
use crate::storage::MappedFile;

use super::dispatcher::{Dispatched, Dispatcher};
use crate::recovery::load::Queues;
use crate::recovery::RecoveryReport;

/// Records handed from the walk to the dispatching thread at a time.
pub(super) const PIPE_BATCH: usize = 256;

/// A batch of validated records, described for dispatch by the walk (which has their bytes in
/// its cache; the dispatching thread then reads little of them), each with whether it lacks a
/// `__CRC32#` property (the dispatching thread counts those it dispatches, see
/// [`RecoveryReport::records_without_crc`]).
pub(super) type RecordBatch<'a> = Vec<(DispatchEntry<'a>, bool)>;

/// Where the walk sends the records it validated (from the dispatch start on).
pub(super) enum Sink<'a, 'q, 'w> {
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
    pub(super) fn queues(&self) -> &Queues {
        match self {
            Sink::Inline(d, _) => d.queues,
            Sink::Pipe(..) => unreachable!("only a walk that is not incremental pipes its records"),
        }
    }

    /// The index records are dispatched to.
    pub(super) fn index(&self) -> Option<&IndexService> {
        match self {
            Sink::Inline(d, _) => d.index,
            Sink::Pipe(_, _, index) => *index,
        }
    }

    /// Dispatches one entry (an inline sink) or queues it for the dispatching thread (a pipe);
    /// `Some` says why dispatch stopped. A record `without_crc` (no `__CRC32#` property) is
    /// counted in [`RecoveryReport::records_without_crc`] once it is dispatched: right away
    /// inline, by the dispatching thread for a pipe (so that a record the walk validated past
    /// one dispatch refuses is not counted).
    pub(super) fn send(
        &mut self,
        entry: DispatchEntry<'a>,
        without_crc: bool,
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
                report.records_without_crc += u64::from(without_crc);
                Ok(None)
            }
            Sink::Pipe(batch, tx, _) => {
                batch.push((entry, without_crc));
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
    pub(super) fn finish(&mut self) {
        if let Sink::Pipe(batch, tx, _) = self {
            if !batch.is_empty() {
                let _ = tx.send(std::mem::take(batch));
            }
        }
    }
}

/// Why [`Sink::send`] stopped the walk.
pub(super) enum Stop {
    /// Dispatch refused this record (it does not continue its queue).
    Refused(String),
    /// An incremental walk met a record its kept data disagrees with: rebuild everything.
    Abandoned(String),
    /// The dispatching thread refused an earlier record: the log ends there.
    PipeClosed,
}
