//! `recover`: offline recovery. Opens the store (which validates the CommitLog tail, cuts and
//! zeroes a torn tail and rebuilds derived data as needed), prints the report, closes cleanly.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, ValueEnum};
use rocketstore::{GapPolicy, Store};
use serde_json::json;

use crate::error::CliResult;
use crate::open::{self, StoreArgs};
use crate::output::Out;
use crate::progress::Ticker;
use crate::root::Root;

/// Arguments of `recover`.
#[derive(Debug, Args)]
pub struct RecoverArgs {
    /// The store root (must exist).
    pub root: PathBuf,
    /// Print one JSON object.
    #[arg(long)]
    pub json: bool,
    /// When the CommitLog has a gap recovery cannot explain (the segment before it is full):
    /// which side of it to keep; the other side's segments are deleted. Without it such a root
    /// is refused and left unchanged.
    #[arg(long, value_enum)]
    pub segment_gap: Option<GapSide>,
    #[command(flatten)]
    pub store: StoreArgs,
}

/// The side of a CommitLog gap `recover --segment-gap` keeps.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum GapSide {
    /// Keep the segments before the first gap.
    KeepBefore,
    /// Keep the segments after the last gap (what an interrupted retention leaves).
    KeepAfter,
}

/// Runs `recover`.
pub fn run(args: &RecoverArgs) -> CliResult<ExitCode> {
    // Refuse to create a store where the user meant to recover one.
    Root::open(&args.root)?;
    let (mut config, notes) = open::config(&args.root, &args.store)?;
    config.segment_gap = match args.segment_gap {
        None => GapPolicy::Refuse,
        Some(GapSide::KeepBefore) => GapPolicy::KeepBefore,
        Some(GapSide::KeepAfter) => GapPolicy::KeepAfter,
    };
    // Recovery reports no progress of its own: on a terminal, show that it is still going.
    let ticker = Ticker::start(format!("recovering {}", args.root.display()));
    let store = Store::open(&args.root, config);
    drop(ticker);
    let store = store?;
    let r = store.recovery_report().clone();
    let (min, max, durable) = (
        store.commitlog_min_offset(),
        store.commitlog_max_offset(),
        store.durable_offset(),
    );
    let queues: usize = store
        .topics()
        .iter()
        .map(|t| store.queue_ids(t).len())
        .sum();
    store.close()?;
    let mut out = Out::new();
    if args.json {
        out.line(json!({
            "clean_shutdown": r.clean_shutdown,
            "checkpoint_trusted": r.checkpoint_trusted,
            "written_since_checkpoint": r.written_since_checkpoint,
            "rocketmq_normal_recovery": r.rocketmq_normal_recovery,
            "scanned_from": r.scanned_from,
            "scanned_bytes": r.scanned_bytes,
            "records_without_crc": r.records_without_crc,
            "end_offset": r.end_offset,
            "truncated_at": r.truncated_at,
            "segments_removed": r.segments_removed,
            "derived_rebuilt": r.derived_rebuilt,
            "records_dispatched": r.records_dispatched,
            "dispatched_from": r.dispatched_from,
            "derived_fallback": r.derived_fallback,
            "gap_repaired": r.gap_repaired.as_ref().map(|g| json!({
                "missing_from": g.missing_from,
                "missing_to": g.missing_to,
                "removed": g.removed.iter().map(|p| p.display().to_string()).collect::<Vec<_>>(),
                "reason": g.reason,
            })),
            "commitlog_min_offset": min,
            "commitlog_max_offset": max,
            "queues": queues,
            "inferred": notes,
        }))?;
    } else {
        for n in &notes {
            out.line(format_args!("config: {n}"))?;
        }
        out.line(format_args!("recovered {}", args.root.display()))?;
        out.line(format_args!("  clean_shutdown      {}", r.clean_shutdown))?;
        out.line(format_args!(
            "  checkpoint_trusted  {}",
            r.checkpoint_trusted
        ))?;
        if r.written_since_checkpoint {
            out.line("  written_since_checkpoint true (a broker wrote here after the trailer)")?;
        }
        if r.rocketmq_normal_recovery {
            out.line("  rocketmq_normal_recovery true (clean RocketMQ root: tail validated)")?;
        }
        out.line(format_args!("  scanned_from        {}", r.scanned_from))?;
        out.line(format_args!("  scanned_bytes       {}", r.scanned_bytes))?;
        out.line(format_args!(
            "  records_without_crc {}",
            r.records_without_crc
        ))?;
        out.line(format_args!("  end_offset          {}", r.end_offset))?;
        out.line(format_args!(
            "  truncated_at        {}",
            r.truncated_at
                .map_or("none (the data ended cleanly)".to_string(), |t| t
                    .to_string())
        ))?;
        out.line(format_args!("  segments_removed    {}", r.segments_removed))?;
        out.line(format_args!("  derived_rebuilt     {}", r.derived_rebuilt))?;
        out.line(format_args!(
            "  records_dispatched  {}",
            r.records_dispatched
        ))?;
        out.line(format_args!("  dispatched_from     {}", r.dispatched_from))?;
        if let Some(why) = &r.derived_fallback {
            out.line(format_args!("  derived_fallback    {why}"))?;
        }
        if let Some(g) = &r.gap_repaired {
            out.line(format_args!(
                "  gap_repaired        {}..{}: {}; deleted {} segment(s)",
                g.missing_from,
                g.missing_to,
                g.reason,
                g.removed.len()
            ))?;
        }
        out.line(format_args!(
            "after recovery: commitlog {min}..{max} (durable {durable}), {queues} queues; closed cleanly"
        ))?;
    }
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}
