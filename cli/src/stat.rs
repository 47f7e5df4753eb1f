//! `stat`: what a store root holds, read-only.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;
use serde_json::{json, Value};

use crate::commitlog::{CommitLog, Entry};
use crate::delays::{self, DelayLevelsArg, Delays};
use crate::error::{chain, CliResult};
use crate::index::IndexFile;
use crate::output::Out;
use crate::progress::Progress;
use crate::queue;
use crate::render::utc;
use crate::root::{FileInfo, Layout, QueueFiles, Root, TrailerState};
use crate::IndexGeometryArgs;

/// Arguments of `stat`.
#[derive(Debug, Args)]
pub struct StatArgs {
    /// The store root.
    pub root: PathBuf,
    /// Print one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub geometry: IndexGeometryArgs,
    #[command(flatten)]
    pub levels: DelayLevelsArg,
}

/// Where the data of the CommitLog ends.
#[derive(Debug, Default)]
struct LogEnd {
    /// One past the last record (the offset the next record would get).
    end: u64,
    /// Set when the scan stopped at bytes that are not a record.
    invalid: Option<(u64, String)>,
}

/// Finds the end of the data: the last segment whose first header is not zero is scanned.
fn log_end(root: &Root, layout: &Layout) -> CliResult<LogEnd> {
    let log = CommitLog::new(&*root.vfs, &layout.commitlog);
    let mut last_with_data = None;
    for seg in layout.commitlog.iter().rev() {
        if !matches!(log.open(seg)?.entry_at(0)?, Entry::End) {
            last_with_data = Some(seg);
            break;
        }
    }
    let Some(seg) = last_with_data else {
        return Ok(LogEnd {
            end: log.min_offset(),
            invalid: None,
        });
    };
    let mut reader = log.open(seg)?;
    let mut progress = Progress::new(format!("scanning {}", seg.name), seg.len);
    let mut pos = 0u64;
    loop {
        progress.update(pos);
        match reader.entry_at(pos)? {
            Entry::Record(r) => pos += r.total_size() as u64,
            Entry::Blank { size } => {
                pos += u64::from(size);
                break;
            }
            Entry::End => break,
            Entry::Invalid(e) => {
                return Ok(LogEnd {
                    end: seg.start + pos,
                    invalid: Some((seg.start + pos, e.to_string())),
                })
            }
        }
    }
    Ok(LogEnd {
        end: seg.start + pos,
        invalid: None,
    })
}

fn total_len(files: &[FileInfo]) -> u64 {
    files.iter().map(|f| f.len).sum()
}

/// Runs `stat`.
pub fn run(args: &StatArgs) -> CliResult<ExitCode> {
    let levels = args.levels.parse()?;
    let root = Root::open(&args.root)?;
    let layout = root.layout()?;
    // Scheduled messages, retry and dead-letter topics: shown as unreadable rather than
    // failing `stat` when the offset snapshots cannot be read.
    let sched = delays::collect(&root, &layout, &levels).map_err(|e| chain(&e));
    let end = log_end(&root, &layout)?;
    let log_min = CommitLog::new(&*root.vfs, &layout.commitlog).min_offset();
    let mut queues = Vec::new();
    for q in layout.all_queues() {
        let (min, max) = queue::bounds(&root, q, log_min)?;
        queues.push((q, min, max));
    }
    let mut index = Vec::new();
    for f in &layout.index {
        index.push(IndexFile::open(
            &root,
            f,
            args.geometry.index_slots,
            args.geometry.index_entries,
        ));
    }
    let mut out = Out::new();
    if args.json {
        let mut v = stat_json(&root, &layout, &end, &queues, &index);
        match &sched {
            Ok(d) => {
                v["schedule"] = d.levels_json();
                v["retry"] = d.retry_json();
                v["dlq"] = d.dlq_json();
            }
            Err(why) => {
                v["schedule"] = json!([]);
                v["retry"] = json!([]);
                v["dlq"] = json!([]);
                v["schedule_error"] = json!(why);
            }
        }
        out.line(v)?;
    } else {
        stat_text(&mut out, &root, &layout, &end, &queues, &index)?;
        match &sched {
            Ok(d) => {
                for line in Delays::summary(d) {
                    out.line(line)?;
                }
            }
            Err(why) => out.line(format_args!("schedule, retry, dlq: unreadable: {why}"))?,
        }
    }
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}

type QueueRow<'a> = (&'a QueueFiles, u64, u64);

fn stat_text(
    out: &mut Out,
    root: &Root,
    layout: &Layout,
    end: &LogEnd,
    queues: &[QueueRow<'_>],
    index: &[CliResult<IndexFile<'_>>],
) -> CliResult<()> {
    out.line(format_args!("store root: {}", root.path.display()))?;
    match &layout.abort {
        None => out.line("abort marker: absent (last shutdown was clean, or never opened)")?,
        Some(c) if c.is_empty() => {
            out.line("abort marker: PRESENT (unclean shutdown or still running)")?
        }
        Some(c) => out.line(format_args!(
            "abort marker: PRESENT, pid {c} (unclean shutdown or still running)"
        ))?,
    }
    out.line(format_args!(
        "lock file: {}",
        if layout.lock_present {
            "present"
        } else {
            "absent"
        }
    ))?;
    match &layout.checkpoint {
        None => out.line("checkpoint: absent")?,
        Some(cp) => {
            let c = &cp.checkpoint;
            out.line(format_args!("checkpoint: {} bytes", cp.len))?;
            for (name, v) in [
                ("physic_msg_timestamp", c.physic_msg_timestamp),
                ("logics_msg_timestamp", c.logics_msg_timestamp),
                ("index_msg_timestamp", c.index_msg_timestamp),
            ] {
                out.line(format_args!("  {name:<24}{v} ({})", utc(v)))?;
            }
            out.line(format_args!(
                "  {:<24}{}",
                "master_flushed_offset", c.master_flushed_offset
            ))?;
            out.line(format_args!(
                "  {:<24}{}",
                "confirm_phy_offset", c.confirm_phy_offset
            ))?;
            match (cp.trailer, c.trailer) {
                (TrailerState::Valid, Some(t)) => {
                    out.line("  trailer: valid (rocketstore)")?;
                    out.line(format_args!(
                        "    durable_commitlog_offset {}",
                        t.durable_commitlog_offset
                    ))?;
                    out.line(format_args!(
                        "    derived_durable_offset   {}",
                        t.derived_durable_offset
                    ))?;
                    out.line(format_args!(
                        "    derived: {} queues, {} units, {} index files, {} index entries",
                        t.derived.queues,
                        t.derived.units,
                        t.derived.index_files,
                        t.derived.index_entries
                    ))?;
                }
                (TrailerState::Invalid, _) => out
                    .line("  trailer: INVALID (damaged or unknown version; recovery ignores it)")?,
                (TrailerState::Outdated(v), _) => out.line(format_args!(
                    "  trailer: version {v}, does not check out (its CRC covered RocketMQ's timestamps, which a broker rewrites; recovery ignores it)"
                ))?,
                _ => out.line("  trailer: absent (RocketMQ-written checkpoint)")?,
            }
        }
    }
    let seg_size = layout.commitlog.first().map_or(0, |s| s.len);
    out.line(format_args!(
        "commitlog: {} segments of {seg_size} bytes, {} bytes on disk",
        layout.commitlog.len(),
        total_len(&layout.commitlog)
    ))?;
    out.line(format_args!(
        "  min offset {}, max offset {}",
        layout.commitlog.first().map_or(0, |s| s.start),
        end.end
    ))?;
    if let Some((at, why)) = &end.invalid {
        out.line(format_args!(
            "  data ends at an INVALID record at {at}: {why}"
        ))?;
    }
    for s in &layout.commitlog {
        out.line(format_args!("  {}  {} bytes", s.name, s.len))?;
    }
    let cq_bytes: u64 = layout.all_queues().map(|q| total_len(&q.files)).sum();
    let units: u64 = queues.iter().map(|(_, min, max)| max - min).sum();
    out.line(format_args!(
        "consumequeue: {} topics, {} queues, {units} messages, {cq_bytes} bytes",
        layout.queues.len(),
        queues.len()
    ))?;
    for (q, min, max) in queues {
        out.line(format_args!(
            "  {}/{}  min {min}  max {max}  files {}  {} bytes",
            q.topic,
            q.queue_id,
            q.files.len(),
            total_len(&q.files)
        ))?;
    }
    out.line(format_args!(
        "index: {} files, {} bytes",
        layout.index.len(),
        total_len(&layout.index)
    ))?;
    for (f, ix) in layout.index.iter().zip(index) {
        match ix {
            Ok(ix) => {
                let h = &ix.header;
                out.line(format_args!(
                    "  {}  {} slots / {} entries: {} entries used, {} slots used, time {}..{}, offsets {}..{}",
                    f.name,
                    ix.geometry.slots,
                    ix.geometry.entries,
                    h.entries_used(),
                    h.hash_slot_count,
                    utc(h.begin_timestamp),
                    utc(h.end_timestamp),
                    h.begin_phy_offset,
                    h.end_phy_offset
                ))?;
            }
            Err(e) => out.line(format_args!("  {}  unreadable: {}", f.name, chain(e)))?,
        }
    }
    if !layout.anomalies.is_empty() {
        out.line(format_args!("anomalies: {}", layout.anomalies.len()))?;
        for (p, why) in &layout.anomalies {
            out.line(format_args!("  {}: {why}", p.display()))?;
        }
    }
    Ok(())
}

fn stat_json(
    root: &Root,
    layout: &Layout,
    end: &LogEnd,
    queues: &[QueueRow<'_>],
    index: &[CliResult<IndexFile<'_>>],
) -> Value {
    let checkpoint = layout.checkpoint.as_ref().map(|cp| {
        let c = &cp.checkpoint;
        json!({
            "len": cp.len,
            "physic_msg_timestamp": c.physic_msg_timestamp,
            "logics_msg_timestamp": c.logics_msg_timestamp,
            "index_msg_timestamp": c.index_msg_timestamp,
            "master_flushed_offset": c.master_flushed_offset,
            "confirm_phy_offset": c.confirm_phy_offset,
            "trailer": match cp.trailer {
                TrailerState::Valid => "valid",
                TrailerState::Absent => "absent",
                TrailerState::Invalid => "invalid",
                TrailerState::Outdated(_) => "outdated",
            },
            "durable_commitlog_offset": c.trailer.map(|t| t.durable_commitlog_offset),
            "derived_durable_offset": c.trailer.map(|t| t.derived_durable_offset),
            "derived": c.trailer.map(|t| json!({
                "queues": t.derived.queues,
                "units": t.derived.units,
                "index_files": t.derived.index_files,
                "index_entries": t.derived.index_entries,
            })),
        })
    });
    let segments: Vec<Value> = layout
        .commitlog
        .iter()
        .map(|s| json!({"name": s.name, "start": s.start, "len": s.len}))
        .collect();
    let queue_rows: Vec<Value> = queues
        .iter()
        .map(|(q, min, max)| {
            json!({
                "topic": q.topic,
                "queue_id": q.queue_id,
                "min_offset": min,
                "max_offset": max,
                "files": q.files.len(),
                "bytes": total_len(&q.files),
            })
        })
        .collect();
    let index_rows: Vec<Value> = layout
        .index
        .iter()
        .zip(index)
        .map(|(f, ix)| match ix {
            Ok(ix) => json!({
                "name": f.name,
                "len": f.len,
                "slots": ix.geometry.slots,
                "max_entries": ix.geometry.entries,
                "entries": ix.header.entries_used(),
                "hash_slot_count": ix.header.hash_slot_count,
                "begin_timestamp": ix.header.begin_timestamp,
                "end_timestamp": ix.header.end_timestamp,
                "begin_phy_offset": ix.header.begin_phy_offset,
                "end_phy_offset": ix.header.end_phy_offset,
            }),
            Err(e) => json!({"name": f.name, "len": f.len, "error": chain(e)}),
        })
        .collect();
    json!({
        "root": root.path.display().to_string(),
        "abort": layout.abort.is_some(),
        "abort_pid": layout.abort.as_ref().filter(|c| !c.is_empty()),
        "lock": layout.lock_present,
        "checkpoint": checkpoint,
        "commitlog": {
            "segment_size": layout.commitlog.first().map_or(0, |s| s.len),
            "min_offset": layout.commitlog.first().map_or(0, |s| s.start),
            "max_offset": end.end,
            "invalid_at": end.invalid.as_ref().map(|(at, _)| at),
            "invalid_reason": end.invalid.as_ref().map(|(_, why)| why),
            "bytes": total_len(&layout.commitlog),
            "segments": segments,
        },
        "queues": queue_rows,
        "index": index_rows,
        "anomalies": layout.anomalies.iter().map(|(p, why)| format!("{}: {why}", p.display())).collect::<Vec<_>>(),
    })
}
