//! A CommitLog whose segment files are not contiguous: what a gap means, and which side of it
//! recovery keeps.
//!
//! Since every multi-file removal deletes one file at a time and syncs the directory before the
//! next (the cut newest first, retention oldest first: [`segments::remove_tail`],
//! [`CommitLog::delete_expired`](crate::commitlog::CommitLog)), a crash leaves a prefix or a
//! suffix of the files, never a gap. Roots written before that, or edited by hand, may still
//! have one:
//!
//! - **The remains of an interrupted cut.** The files before the gap end in a segment whose
//!   record chain stops inside it (a torn or zeroed tail, or an empty prepared segment) with
//!   nothing valid after the stop in that segment (the walk's evidence rule,
//!   [`evidence::chain_after`]: valid records after damage are corruption, which the walk
//!   refuses, so deleting files for it first would change the log of an `open` that fails). A later
//!   segment is written only after the one before it is full, so nothing after the gap can
//!   continue the log: recovery deletes those files, as the cut it finishes would have, and
//!   says so in [`RecoveryReport::gap_repaired`](super::RecoveryReport::gap_repaired). Unless
//!   the checkpoint vouches for data beyond that segment: then acknowledged data is missing and
//!   this is the next case.
//! - **Anything else** (the last segment before the gap is full, so the missing one held data:
//!   a crash during an older version's retention, or a file deleted by hand): which side holds
//!   the log cannot be read off the files. `open` fails with [`Error::SegmentGap`], changing
//!   nothing, unless [`StoreConfig::segment_gap`] says which side to keep.

use std::path::{Path, PathBuf};

use crate::config::{GapPolicy, StoreConfig};
use crate::error::{Error, Result};
use crate::format::checkpoint_layout::Trailer;
use crate::format::evidence;
use crate::format::record::{self, Decoded};
use crate::segments;
use crate::storage::{MappedFile, Vfs};

/// A gap between CommitLog segments that recovery closed by deleting the files on one side.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GapRepair {
    /// First CommitLog offset no segment held.
    pub missing_from: u64,
    /// Start of the first segment after the gap.
    pub missing_to: u64,
    /// The segment files deleted to make the log contiguous, in the order they were deleted.
    pub removed: Vec<PathBuf>,
    /// Why these files and not the others.
    pub reason: String,
}

type Files = Vec<(u64, MappedFile)>;

/// The offsets no segment holds: `missing_from..missing_to`.
#[derive(Clone, Copy)]
struct Gap {
    missing_from: u64,
    missing_to: u64,
}

impl Gap {
    fn repair(self, removed: Vec<PathBuf>, reason: String) -> GapRepair {
        GapRepair {
            missing_from: self.missing_from,
            missing_to: self.missing_to,
            removed,
            reason,
        }
    }
}

/// Makes the runs of contiguous segments [`segments::load_runs`] found into one contiguous log,
/// deleting what a gap rule above gives up (each removal synced before the next), or fails with
/// [`Error::SegmentGap`] and deletes nothing.
pub(super) fn join(
    vfs: &dyn Vfs,
    dir: &Path,
    config: &StoreConfig,
    trailer: Option<&Trailer>,
    mut runs: Vec<Files>,
) -> Result<(Files, Option<GapRepair>)> {
    if runs.len() <= 1 {
        return Ok((runs.pop().unwrap_or_default(), None));
    }
    let size = config.commitlog_segment_size as u64;
    let first = &runs[0];
    let before = first.len();
    let (last_start, last) = first.last().expect("runs are never empty");
    let last_start = *last_start;
    let gap = Gap {
        missing_from: last_start + size,
        missing_to: runs[1][0].0,
    };
    let vouched = trailer.map_or(0, |t| t.durable_commitlog_offset);
    let chain_end = chain_end(last_start, last.readable(), config);
    // Valid records after the stop: corruption, not the end of the log.
    let corrupt = chain_end.and_then(|end| {
        let seg = last.readable();
        let pos = (end - last_start) as usize;
        let opts = super::point_check_options(config);
        evidence::chain_after(seg, last_start, pos, &opts).filter(|c| {
            let span_end = (c.start - last_start) as usize;
            !evidence::lost_writes_explain(seg, pos, span_end, trailer.is_none())
        })
    });
    let after: usize = runs[1..].iter().map(Vec::len).sum();

    let (files, repair) = match (chain_end, config.segment_gap) {
        (Some(end), _) if vouched <= end && corrupt.is_none() => {
            let reason = format!(
                "the log ends at {end}, inside segment {last_start}, before the gap: the {after} segment(s) after it are the rest of an interrupted cut"
            );
            keep_before(vfs, dir, &mut runs, gap, reason)?
        }
        (_, GapPolicy::KeepBefore) => keep_before(
            vfs,
            dir,
            &mut runs,
            gap,
            format!("StoreConfig::segment_gap = KeepBefore: gave up the {after} segment(s) after the gap"),
        )?,
        (_, GapPolicy::KeepAfter) => keep_after(vfs, dir, &mut runs, gap)?,
        (end, GapPolicy::Refuse) => {
            let reason = match (end, corrupt) {
                (Some(end), Some(c)) => format!(
                    "the log's record chain breaks at {end}, inside segment {last_start} before the gap, but {} valid record(s) follow at {}: corruption, not the end of an interrupted cut",
                    c.records, c.start
                ),
                (Some(end), None) => format!(
                    "the log ends at {end} before the gap, but the checkpoint says {vouched} bytes are durable"
                ),
                (None, _) => format!(
                    "segment {last_start}, the last of {before} before the gap, is full, so the missing segment held data"
                ),
            };
            return Err(Error::SegmentGap {
                dir: dir.to_path_buf(),
                missing_from: gap.missing_from,
                missing_to: gap.missing_to,
                segments_before: before,
                segments_after: after,
                reason,
            });
        }
    };
    log::warn!(
        "recovery: CommitLog gap {}..{}: {}; deleted {} segment(s)",
        gap.missing_from,
        gap.missing_to,
        repair.reason,
        repair.removed.len()
    );
    Ok((files, Some(repair)))
}

/// Keeps the first run, deleting the later ones newest first (each removal synced).
fn keep_before(
    vfs: &dyn Vfs,
    dir: &Path,
    runs: &mut Vec<Files>,
    gap: Gap,
    reason: String,
) -> Result<(Files, GapRepair)> {
    let mut removed = Vec::new();
    while runs.len() > 1 {
        let mut run = runs.pop().expect("len > 1");
        removed.extend(run.iter().rev().map(|(_, f)| f.path().to_path_buf()));
        segments::remove_tail(vfs, dir, &mut run, 0)?;
    }
    let kept = runs.pop().expect("one run left");
    Ok((kept, gap.repair(removed, reason)))
}

/// Keeps the last run, deleting the earlier ones oldest first (each removal synced).
fn keep_after(
    vfs: &dyn Vfs,
    dir: &Path,
    runs: &mut Vec<Files>,
    gap: Gap,
) -> Result<(Files, GapRepair)> {
    let kept = runs.pop().expect("two runs or more");
    let mut removed = Vec::new();
    for run in runs.drain(..) {
        for (_, f) in run {
            removed.push(f.path().to_path_buf());
            // Oldest first, each removal synced: a crash leaves a suffix.
            f.delete(vfs).map_err(|e| Error::io(f.path(), e))?;
            vfs.sync_dir(dir).map_err(|e| Error::io(dir, e))?;
        }
    }
    let reason = format!(
        "StoreConfig::segment_gap = KeepAfter: gave up the {} segment(s) before the last gap",
        removed.len()
    );
    Ok((kept, gap.repair(removed, reason)))
}

/// Where the record chain of the segment starting at `start` ends, or `None` when it runs to
/// the segment's end (a BLANK filler or a last record that ends exactly there): the segment is
/// full.
fn chain_end(start: u64, data: &[u8], config: &StoreConfig) -> Option<u64> {
    let opts = super::point_check_options(config);
    let mut pos = 0;
    while pos < data.len() {
        match record::decode(&data[pos..], &opts) {
            Ok(Decoded::Blank { .. }) => return None,
            Ok(Decoded::Record(r)) if r.physical_offset() as u64 == start + pos as u64 => {
                pos += r.total_size();
            }
            _ => return Some(start + pos as u64),
        }
    }
    None
}
