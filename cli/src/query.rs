//! `query`: messages by key (IndexFile), or the queue offset for a time (ConsumeQueue binary
//! search over store timestamps). Read-only.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, ValueEnum};
use rocketstore::format::java_hash::index_topic_key_hash;
use serde_json::json;

use crate::commitlog::CommitLog;
use crate::error::{CliError, CliResult};
use crate::index::IndexFile;
use crate::output::Out;
use crate::queue;
use crate::render;
use crate::root::Root;
use crate::IndexGeometryArgs;

/// Hash matches examined per file before giving up (bounds a walk through colliding keys).
const MAX_HASH_MATCHES: usize = 4096;

/// Which message a time query picks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Boundary {
    /// The first message stored at or after the time.
    Lower,
    /// The last message stored at or before the time.
    Upper,
}

/// Arguments of `query`.
#[derive(Debug, Args)]
pub struct QueryArgs {
    /// The store root.
    pub root: PathBuf,
    /// Topic.
    #[arg(long)]
    pub topic: String,
    /// Message key (KEYS or UNIQ_KEY) to look up in the IndexFile.
    #[arg(long, conflicts_with = "time", required_unless_present = "time")]
    pub key: Option<String>,
    /// Store time to find in a queue (needs --queue): epoch milliseconds or RFC 3339
    /// (`2026-12-03T06:00:00Z`, `2026-12-03T06:00:00.123+01:00`).
    #[arg(long, requires = "queue", value_parser = parse_time)]
    pub time: Option<i64>,
    /// Queue id for --time.
    #[arg(long)]
    pub queue: Option<i32>,
    /// --key: earliest store time (epoch ms or RFC 3339).
    #[arg(long, default_value_t = 0, value_parser = parse_time)]
    pub begin: i64,
    /// --key: latest store time (epoch ms or RFC 3339).
    #[arg(long, default_value_t = i64::MAX, value_parser = parse_time)]
    pub end: i64,
    /// --key: at most this many messages, newest first.
    #[arg(long, default_value_t = 64)]
    pub max: usize,
    /// --time: which message to pick.
    #[arg(long, value_enum, default_value_t = Boundary::Lower)]
    pub boundary: Boundary,
    /// JSON output (one object per line for --key; one object for --time).
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub geometry: IndexGeometryArgs,
}

/// A time option: epoch milliseconds (`1764741600000`, may be negative) or an RFC 3339
/// timestamp with `Z` or a numeric offset, fraction optional; sub-millisecond digits are cut.
pub fn parse_time(s: &str) -> Result<i64, String> {
    if let Ok(ms) = s.parse::<i64>() {
        return Ok(ms);
    }
    s.parse::<jiff::Timestamp>()
        .map(|t| t.as_millisecond())
        .map_err(|e| {
            format!(
                "{s:?} is neither epoch milliseconds nor an RFC 3339 time such as \
                 2026-12-03T06:00:00Z or 2026-12-03T06:00:00.123+01:00 ({e})"
            )
        })
}

/// Runs `query`.
pub fn run(args: &QueryArgs) -> CliResult<ExitCode> {
    let root = Root::open(&args.root)?;
    match (&args.key, args.time, args.queue) {
        (Some(key), _, _) => by_key(&root, args, key),
        (None, Some(time), Some(q)) => by_time(&root, args, time, q),
        _ => Err(CliError::Usage(
            "query needs --key, or --time with --queue".into(),
        )),
    }
}

fn by_key(root: &Root, args: &QueryArgs, key: &str) -> CliResult<ExitCode> {
    let layout = root.layout()?;
    let log = CommitLog::new(&*root.vfs, &layout.commitlog);
    let hash = index_topic_key_hash(&args.topic, key);
    let mut out = Out::new();
    let mut found = 0usize;
    let mut seen = Vec::new();
    'files: for f in layout.index.iter().rev() {
        let ix = IndexFile::open(
            root,
            f,
            args.geometry.index_slots,
            args.geometry.index_entries,
        )?;
        let h = ix.header;
        let used = h.entries_used() > 0;
        let overlaps =
            h.begin_timestamp <= args.end && h.end_timestamp.saturating_add(999) >= args.begin;
        if used && overlaps {
            for off in ix.lookup(hash, args.begin, args.end, MAX_HASH_MATCHES)? {
                if seen.contains(&off) {
                    continue;
                }
                seen.push(off);
                // Hash matches only: re-check topic, key and time against the record.
                let Ok(rec) = log.read_at(off) else { continue };
                let v = rec.view();
                let t = v.store_timestamp();
                let key_matches = v.keys().any(|k| k == key) || v.uniq_key() == Some(key);
                if v.topic() != args.topic || !key_matches || t < args.begin || t > args.end {
                    continue;
                }
                if args.json {
                    out.line(render::json(off, &v))?;
                } else {
                    out.line(render::human(off, &v))?;
                }
                found += 1;
                if found >= args.max {
                    break 'files;
                }
            }
        }
        if used && h.begin_timestamp < args.begin {
            break;
        }
    }
    if !args.json {
        out.line(format_args!("{found} message(s)"))?;
    }
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}

fn by_time(root: &Root, args: &QueryArgs, time: i64, queue_id: i32) -> CliResult<ExitCode> {
    let layout = root.layout()?;
    let log = CommitLog::new(&*root.vfs, &layout.commitlog);
    let q = layout.queue(&args.topic, queue_id).ok_or_else(|| {
        CliError::layout(
            root.path
                .join("consumequeue")
                .join(&args.topic)
                .join(queue_id.to_string()),
            "no such queue",
        )
    })?;
    let data = queue::load(root, q, false)?;
    let log_min = log.min_offset();
    let time_of = |n: u64| -> CliResult<i64> {
        let u = data.unit(n).expect("within min..max");
        Ok(log
            .read_at(u.commitlog_offset as u64)?
            .view()
            .store_timestamp())
    };
    // Units whose record was deleted by retention count as "too early".
    let mut lo = data.min;
    while lo < data.max
        && data
            .unit(lo)
            .is_some_and(|u| (u.commitlog_offset as u64) < log_min)
    {
        lo += 1;
    }
    let first_live = lo;
    let mut hi = data.max;
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        let t = time_of(mid)?;
        let right = match args.boundary {
            Boundary::Lower => t < time,
            Boundary::Upper => t <= time,
        };
        if right {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    let offset = match args.boundary {
        Boundary::Lower => lo,
        Boundary::Upper => lo.saturating_sub(1).max(first_live),
    };
    let rec = match data.unit(offset) {
        Some(u) => Some((
            u.commitlog_offset as u64,
            log.read_at(u.commitlog_offset as u64)?,
        )),
        None => None,
    };
    let mut out = Out::new();
    if args.json {
        out.line(json!({
            "topic": args.topic,
            "queue_id": queue_id,
            "time": time,
            "queue_offset": offset,
            "min_offset": data.min,
            "max_offset": data.max,
            "message": rec.as_ref().map(|(at, r)| render::json(*at, &r.view())),
        }))?;
    } else {
        out.line(format_args!(
            "queue offset {offset} (queue {}/{queue_id} holds {}..{})",
            args.topic, data.min, data.max
        ))?;
        match &rec {
            Some((at, r)) => out.line(render::human(*at, &r.view()))?,
            None => out.line("no message at that offset (the time is past the newest message)")?,
        }
    }
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}
