//! What an invalid record the walk meets means ([`evidence`]): the end of the log (a torn
//! tail, or a crash's lost writes), a corruption error, or with
//! [`StoreConfig::salvage_corrupt_log`](crate::StoreConfig::salvage_corrupt_log) a span given
//! up.

use crate::error::{Error, Result};
use crate::format::evidence;
use crate::format::filler;
use crate::format::record;

use super::WalkCtx;
use crate::recovery::load::{bytes_at, point_check_options};
use crate::recovery::{RecoveryReport, Salvage};

/// What recovery does about an invalid record.
pub(super) enum Verdict {
    /// The log ends here.
    End,
    /// Salvage: the damaged span up to `to` is given up (filled once the walk is over) and the
    /// walk goes on at `to`.
    Skip { to: u64 },
}

/// Decides about the invalid record at `offset` ([`evidence`]):
///
/// - nothing valid follows it: the end of the log (a torn tail), unless the checkpoint vouches
///   for data past it, which is then lost: [`Error::Corruption`];
/// - valid records follow and a crash's lost writes explain the damage (past the durable
///   offset only): the end of the log, those records were never durable;
/// - valid records follow otherwise: [`Error::Corruption`] naming how much.
///
/// With [`StoreConfig::salvage_corrupt_log`](crate::StoreConfig::salvage_corrupt_log) the
/// errors become salvage instead, recorded in `report`: the damaged span is skipped when valid
/// records follow it (and `can_skip`), else the log is cut there.
pub(super) fn invalid_at(
    ctx: &WalkCtx<'_>,
    report: &mut RecoveryReport,
    offset: u64,
    reason: String,
    can_skip: bool,
) -> Result<Verdict> {
    let (durable, config) = (ctx.durable, ctx.config);
    let idx = usize::try_from((offset - ctx.first_start) / ctx.size as u64).ok();
    let path = idx
        .and_then(|i| ctx.files.get(i))
        .map_or_else(|| ctx.root.commitlog_dir(), |(_, f)| f.path().to_path_buf());
    let follows = idx.and_then(|i| valid_after(ctx, i, offset));
    let acknowledged = offset < durable;
    match &follows {
        None if !acknowledged => {
            // The ordinary end of a log is a zero header; anything else was torn.
            let zero_header = bytes_at(ctx.files, ctx.size, offset).is_none_or(|b| {
                b.iter()
                    .take(record::END_FILE_MIN_BLANK_LENGTH)
                    .all(|&x| x == 0)
            });
            if zero_header {
                log::debug!("recovery: CommitLog ends at {offset}");
            } else {
                log::warn!("recovery: CommitLog ends at {offset} (torn tail): {reason}");
            }
            return Ok(Verdict::End);
        }
        Some(f) if f.explained && !acknowledged => {
            log::warn!(
                "recovery: CommitLog ends at {offset}: {reason}; {} records written after it reached the disk before it did (a crash during write-back) and are cut too",
                f.chain.records
            );
            report.cut_after_lost_write = Some(f.chain.start);
            return Ok(Verdict::End);
        }
        _ => {}
    }
    let what = match &follows {
        Some(f) => {
            let later = if f.later_segments > 0 {
                format!(
                    " and {} later segment(s) hold valid records",
                    f.later_segments
                )
            } else {
                String::new()
            };
            format!(
                "invalid record ({reason}) followed by valid data: {} records ({} bytes) from offset {}{later}",
                f.chain.records, f.chain.bytes, f.chain.start
            )
        }
        None => format!("invalid record below the durable offset {durable}: {reason}"),
    };
    if !config.salvage_corrupt_log {
        return Err(Error::Corruption {
            path,
            offset,
            reason: format!(
                "{what}; this is not a torn tail, so nothing was changed (StoreConfig::salvage_corrupt_log gives the damaged records up instead)"
            ),
        });
    }
    let skip_to = follows
        .as_ref()
        .filter(|_| can_skip)
        .and_then(|f| salvage_span(ctx, offset, f))
        .map(|(resume, _)| resume);
    let given_up = match skip_to {
        Some(to) => to - offset,
        None => durable.saturating_sub(offset),
    };
    log::error!(
        "recovery (salvage): {what} at {offset} in {}; {}",
        path.display(),
        match skip_to {
            Some(to) => format!("skipping the {given_up} damaged bytes up to {to}"),
            None => format!("cutting the log there and giving up {given_up} acknowledged bytes"),
        }
    );
    report.salvaged.push(Salvage {
        path,
        offset,
        len: given_up,
        resumed_at: skip_to,
        durable_offset: durable,
        reason,
        saved_to: None,
    });
    Ok(skip_to.map_or(Verdict::End, |to| Verdict::Skip { to }))
}

/// Where the log resumes after a salvaged span that starts at `offset`, and the length of the
/// filler records that take its place: the valid chain in its segment, or the next segment
/// when the valid data is in a later one (the fillers then stop short of the segment's end,
/// leaving room for the BLANK that closes it). `None` when the span cannot hold a filler (it
/// is then cut instead).
fn salvage_span(ctx: &WalkCtx<'_>, offset: u64, f: &ValidAfter) -> Option<(u64, u64)> {
    let seg_end = offset - (offset - ctx.first_start) % ctx.size as u64 + ctx.size as u64;
    let (resume, filled) = if f.chain.start < seg_end {
        (f.chain.start, f.chain.start - offset)
    } else {
        let closing = record::END_FILE_MIN_BLANK_LENGTH as u64;
        (seg_end, (seg_end - offset).checked_sub(closing)?)
    };
    (filled >= filler::min_len() as u64).then_some((resume, filled))
}

/// Valid data found after an invalid record.
struct ValidAfter {
    /// The first valid chain after it.
    chain: evidence::Chain,
    /// Later segments that hold valid records (the chain's own included if it is in one).
    later_segments: usize,
    /// Whether a crash's lost writes can explain the damage (see [`evidence`]).
    explained: bool,
}

/// Looks past the invalid record at `offset` (in segment `idx`) for valid records: a chain
/// later in its segment, else the first one in a later segment.
fn valid_after(ctx: &WalkCtx<'_>, idx: usize, offset: u64) -> Option<ValidAfter> {
    let opts = point_check_options(ctx.config);
    let (seg_start, file) = ctx.files.get(idx)?;
    let seg = file.readable();
    let pos = usize::try_from(offset - seg_start).ok()?;
    // Each later segment is looked at once, in order: the first chain found is the evidence,
    // and the count says how many later segments hold valid data.
    let mut later = ctx
        .files
        .iter()
        .skip(idx + 1)
        .filter_map(|(s, f)| evidence::chain_in_later(f.readable(), *s, &opts));
    let (chain, span_end, later_segments) = match evidence::chain_after(seg, *seg_start, pos, &opts)
    {
        Some(c) => (c, (c.start - seg_start) as usize, later.count()),
        None => {
            let first = later.next()?;
            (first, seg.len(), 1 + later.count())
        }
    };
    // Past a checkpoint's durable offset a sector may have been written back once while the
    // record was copied into it; with nothing vouching for any offset, only sectors that were
    // never written back (zeros from the damage to their end) count as lost writes.
    let explained = evidence::lost_writes_explain(seg, pos, span_end, !ctx.vouched);
    Some(ValidAfter {
        chain,
        later_segments,
        explained,
    })
}
