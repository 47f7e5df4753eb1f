//! Phase 4, cut: the walk accepted the log up to its end; from here on recovery changes the
//! CommitLog. In this order: the empty last segment file the load left out is deleted (the
//! newest: deleting it first keeps the files a contiguous prefix), salvaged spans are copied
//! aside and filled, the segments past the end are deleted and the rest of the segment holding
//! the end is zeroed (so no stale record can ever resurface), and after an unclean shutdown the
//! accepted records are synced.

use std::path::Path;

use crate::config::StoreConfig;
use crate::error::{Error, Result};
use crate::format::record;
use crate::format::root::StoreRoot;
use crate::segments::{self, Tail};
use crate::storage::{MappedFile, Vfs};

use super::salvage;
use super::scan::Scanned;
use super::RecoveryReport;

/// A page: how much of a clean file's tail recovery checks is zero before it trusts the rest.
const PAGE: usize = 4096;

/// What the cut needs to know besides the log.
pub(super) struct Cut<'a> {
    pub vfs: &'a dyn Vfs,
    pub root: &'a StoreRoot,
    pub config: &'a StoreConfig,
    /// A zero-length last segment file the load left out (a crash right after its creation).
    pub empty_last: Option<&'a Path>,
    /// The previous run closed cleanly: the accepted records need no sync.
    pub clean: bool,
    /// What the files may hold past their written end.
    pub tail: Tail,
}

impl Cut<'_> {
    /// Cuts `files` at the end the scan found, as the module doc says; `report` gets the cut.
    pub(super) fn apply(
        &self,
        files: &mut Vec<(u64, MappedFile)>,
        scanned: &Scanned,
        report: &mut RecoveryReport,
    ) -> Result<()> {
        let (vfs, size) = (self.vfs, self.config.commitlog_segment_size);
        let dir = self.root.commitlog_dir();
        let first_start = files.first().map_or(0, |(s, _)| *s);
        let walk_from = report.scanned_from;
        if let Some(path) = self.empty_last {
            segments::remove_empty_last(vfs, &dir, path)?;
        }
        // Salvaged spans the walk skipped: copied aside, then filled, before anything is cut.
        salvage::write_fillers(
            vfs,
            self.root,
            files,
            size,
            self.config.max_record_size(),
            &mut report.salvaged,
            scanned.last_store_timestamp,
        )?;
        self.cut_at(&dir, files, first_start, scanned.end, report)?;
        if !self.clean {
            // After a process crash the page cache may hold records that never reached the
            // disk; recovery just accepted them, so make them durable before anything new is
            // acknowledged behind them (a sync of a clean file costs ~30 µs).
            let from = ((walk_from.saturating_sub(first_start)) / size as u64) as usize;
            for (_, f) in files.iter().skip(from) {
                f.sync_data().map_err(|e| Error::io(f.path(), e))?;
            }
        }
        Ok(())
    }

    /// Zeroes the rest of the segment holding `end` and deletes the segments after it.
    fn cut_at(
        &self,
        dir: &Path,
        files: &mut Vec<(u64, MappedFile)>,
        first_start: u64,
        end: u64,
        report: &mut RecoveryReport,
    ) -> Result<()> {
        let size = self.config.commitlog_segment_size;
        let keep = if files.is_empty() {
            0
        } else {
            (((end - first_start) / size as u64) as usize + 1).min(files.len())
        };
        // Newest first, each removal synced before the next (segments::remove_tail): a crash
        // in the middle leaves a shorter log, never a gap.
        report.segments_removed += segments::remove_tail(self.vfs, dir, files, keep)?;
        let Some((start, last)) = files.last_mut() else {
            return Ok(());
        };
        let pos = (end - *start) as usize;
        if pos >= size {
            return Ok(());
        }
        // A zero header is the ordinary end of data; anything else was torn or stale.
        let rest = &last.readable()[pos..];
        let nonzero = |n: usize| rest.iter().take(n).any(|&b| b != 0);
        if nonzero(record::END_FILE_MIN_BLANK_LENGTH) {
            report.truncated_at = Some(end);
        }
        // After a clean shutdown nothing lies past the end (checked for its first page).
        if self.tail == Tail::MayHoldStale || nonzero(PAGE) {
            last.truncate(pos)
        } else {
            last.end_at(pos)
        }
        .map_err(|e| Error::io(last.path(), e))
    }
}
