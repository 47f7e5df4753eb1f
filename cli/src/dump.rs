//! `dump`: records of a CommitLog range or of a queue, as text or JSON lines.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;

use crate::commitlog::{CommitLog, Entry};
use crate::error::{CliError, CliResult};
use crate::output::Out;
use crate::queue;
use crate::render;
use crate::root::Root;

/// Arguments of `dump`.
#[derive(Debug, Args)]
pub struct DumpArgs {
    /// The store root.
    pub root: PathBuf,
    /// First CommitLog offset (range mode) or queue offset (with --topic/--queue); default: the
    /// smallest one.
    #[arg(long)]
    pub from: Option<u64>,
    /// Number of records.
    #[arg(long, default_value_t = 10)]
    pub count: u64,
    /// Dump a queue of this topic (needs --queue).
    #[arg(long, requires = "queue")]
    pub topic: Option<String>,
    /// Queue id (needs --topic).
    #[arg(long, requires = "topic")]
    pub queue: Option<i32>,
    /// One JSON object per line.
    #[arg(long)]
    pub json: bool,
}

/// Runs `dump`.
pub fn run(args: &DumpArgs) -> CliResult<ExitCode> {
    let root = Root::open(&args.root)?;
    let layout = root.layout()?;
    let log = CommitLog::new(&*root.vfs, &layout.commitlog);
    let mut out = Out::new();
    match (&args.topic, args.queue) {
        (Some(topic), Some(queue_id)) => {
            let q = layout.queue(topic, queue_id).ok_or_else(|| {
                CliError::layout(
                    root.path
                        .join("consumequeue")
                        .join(topic)
                        .join(queue_id.to_string()),
                    "no such queue",
                )
            })?;
            let data = queue::load(&root, q, false)?;
            let from = args.from.unwrap_or(data.min).max(data.min);
            for n in from..from.saturating_add(args.count).min(data.max) {
                let unit = data.unit(n).expect("n within min..max");
                let at = unit.commitlog_offset as u64;
                let rec = log.read_at(at)?;
                let view = rec.view();
                if args.json {
                    out.line(render::json(at, &view))?;
                } else {
                    out.line(format_args!("#{n} {}", render::human(at, &view)))?;
                }
            }
        }
        _ => dump_range(&log, args, &mut out)?,
    }
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}

fn dump_range(log: &CommitLog<'_>, args: &DumpArgs, out: &mut Out) -> CliResult<()> {
    let mut offset = args.from.unwrap_or_else(|| log.min_offset());
    let mut left = args.count;
    if left == 0 || log.segments.is_empty() {
        return Ok(());
    }
    let Some(mut seg) = log.segment_for(offset) else {
        return Err(log.read_at(offset).expect_err("no segment covers it"));
    };
    let mut reader = log.open(seg)?;
    while left > 0 {
        match reader.entry_at(offset - seg.start)? {
            Entry::Record(r) => {
                if args.json {
                    out.line(render::json(offset, &r))?;
                } else {
                    out.line(render::human(offset, &r))?;
                }
                offset += r.total_size() as u64;
                left -= 1;
            }
            Entry::Blank { size } => {
                if !args.json {
                    out.line(format_args!("@{offset} BLANK size={size} (end of segment)"))?;
                }
                offset = seg.start + seg.len;
                match log.segment_for(offset) {
                    Some(next) => {
                        seg = next;
                        reader = log.open(seg)?;
                    }
                    None => break,
                }
            }
            Entry::End => break,
            Entry::Invalid(e) => {
                return Err(CliError::NoRecord {
                    path: seg.path.clone(),
                    offset,
                    reason: e.to_string(),
                })
            }
        }
    }
    Ok(())
}
