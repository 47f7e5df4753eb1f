//! Phase 5, finish: derived data follows the cut log (entries pointing past its end go, queue
//! min offsets follow its start) and the recovered state is handed to the store with the
//! report.

use std::sync::Arc;

use crate::error::Result;
use crate::format::checkpoint_layout::Checkpoint;
use crate::segments::Segment;
use crate::storage::{MappedFile, Vfs};

use super::scan::Scanned;
use super::{Recovered, RecoveryReport};

/// The recovered state of the log `files` (starting at `first_start`, cut at `scanned.end`)
/// with the derived data the scan left; the checkpoint's CommitLog timestamp stands in for
/// the newest store timestamp when the walk met no record.
pub(super) fn finish(
    vfs: &dyn Vfs,
    cp: &Checkpoint,
    files: Vec<(u64, MappedFile)>,
    first_start: u64,
    scanned: Scanned,
    report: RecoveryReport,
) -> Result<Recovered> {
    let Scanned {
        mut queues,
        index,
        end,
        mut last_store_timestamp,
    } = scanned;
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
