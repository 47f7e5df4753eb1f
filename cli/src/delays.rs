//! `delays`: scheduled messages per delay level, retry topics and dead-letter topics, read from
//! the raw files as the library's open would see them (`engine::schedule`).
//!
//! A scheduled message waits in [`SCHEDULE_TOPIC`], queue `level - 1`; its ConsumeQueue unit's
//! tags code is its delivery time. A level's progress (the next queue offset to deliver) is
//! the committed offset of the internal group [`PROGRESS_GROUP`] on that queue, rebuilt as
//! `groups` rebuilds committed offsets; RocketMQ's `config/delayOffset.json` (or its `.bak`)
//! answers for levels the log and snapshot say nothing of (a root a broker wrote). Retry topics
//! `%RETRY%group` count what the group has not consumed; dead-letter topics `%DLQ%group` what
//! was neither purged nor re-driven (the group's committed offset on queue 0 is the purge
//! point). Read-only: no lock, no write.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;
use rocketstore::format::cq_unit::{CqUnit, CQ_UNIT_SIZE};
use rocketstore::format::offset_table::OffsetTable;
use rocketstore::format::root::DELAY_OFFSET_FILE;
use rocketstore::format::schedule::{
    self, DelayLevels, DelayOffsets, DLQ_PREFIX, RETRY_PREFIX, SCHEDULE_TOPIC,
};
use rocketstore::PROGRESS_GROUP;
use serde_json::{json, Value};

use crate::commitlog::CommitLog;
use crate::config_file;
use crate::error::{CliError, CliResult};
use crate::groups;
use crate::output::Out;
use crate::queue;
use crate::render::utc;
use crate::root::{Layout, QueueFiles, Root};

/// Arguments of `delays`.
#[derive(Debug, Args)]
pub struct DelaysArgs {
    /// The store root.
    pub root: PathBuf,
    /// Print one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub levels: DelayLevelsArg,
}

/// The delay table the root was written with.
#[derive(Debug, Clone, Args)]
pub struct DelayLevelsArg {
    /// The delay of each level, RocketMQ's `messageDelayLevel` (units s, m, h, d).
    #[arg(long, default_value = schedule::DEFAULT_DELAY_LEVELS)]
    pub delay_levels: String,
}

impl DelayLevelsArg {
    /// The parsed table.
    pub fn parse(&self) -> CliResult<DelayLevels> {
        DelayLevels::parse(&self.delay_levels)
            .map_err(|e| CliError::Usage(format!("--delay-levels: {e}")))
    }
}

/// Where a level's progress comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProgressFrom {
    /// Commit records of [`PROGRESS_GROUP`] (or the consumer offset snapshot).
    Log,
    /// RocketMQ's `config/delayOffset.json`.
    DelayOffsetFile,
    /// Nowhere: nothing was delivered, the progress is the queue's min.
    None,
}

impl ProgressFrom {
    /// How the text output says it.
    fn text(self) -> &'static str {
        match self {
            ProgressFrom::Log => "log/snapshot",
            other => other.name(),
        }
    }

    /// How the JSON output says it.
    fn name(self) -> &'static str {
        match self {
            ProgressFrom::Log => "log",
            ProgressFrom::DelayOffsetFile => "delayOffset.json",
            ProgressFrom::None => "none",
        }
    }
}

/// One delay level that has a schedule queue.
#[derive(Debug, Clone)]
pub struct LevelRow {
    /// The level (1-based).
    pub level: i32,
    /// Its delay; `None` when the level is past the delay table.
    pub delay_ms: Option<i64>,
    /// Messages waiting: `max_offset - progress`.
    pub pending: u64,
    /// The next queue offset to deliver.
    pub progress: u64,
    /// One past the newest scheduled message of the level.
    pub max_offset: u64,
    /// The delivery time of the message at the progress offset.
    pub next_due_ms: Option<i64>,
    /// Where the progress came from.
    pub from: ProgressFrom,
}

/// A group's retry topic.
#[derive(Debug, Clone)]
pub struct RetryRow {
    /// The consumer group.
    pub group: String,
    /// `%RETRY%group`.
    pub topic: String,
    /// Messages the group has not consumed yet.
    pub size: u64,
}

/// A group's dead-letter topic.
#[derive(Debug, Clone)]
pub struct DlqRow {
    /// The consumer group.
    pub group: String,
    /// `%DLQ%group`.
    pub topic: String,
    /// Dead letters neither purged nor re-driven.
    pub size: u64,
    /// Where they start (queue 0).
    pub purged_to: u64,
    /// One past the newest.
    pub max_offset: u64,
}

/// Everything `delays` shows.
#[derive(Debug, Default)]
pub struct Delays {
    /// Per level with a schedule queue, by level.
    pub levels: Vec<LevelRow>,
    /// Per group with a retry topic, by group.
    pub retry: Vec<RetryRow>,
    /// Per group with a dead-letter topic, by group.
    pub dlq: Vec<DlqRow>,
}

/// `config/delayOffset.json`, or its `.bak` when the main file is missing or unreadable (as
/// the library's open reads it); `None` when neither exists.
pub fn load_delay_offsets(root: &Root) -> CliResult<Option<DelayOffsets>> {
    let loaded = config_file::load(root, DELAY_OFFSET_FILE, |text| {
        schedule::parse_delay_offsets(text).map_err(|e| e.to_string())
    })?;
    Ok(loaded.map(|l| l.value))
}

/// Unit `n` of a queue, reading only its 20 bytes; `None` when it is not a valid unit.
pub fn unit_at(root: &Root, q: &QueueFiles, n: u64) -> CliResult<Option<CqUnit>> {
    let byte = n * CQ_UNIT_SIZE as u64;
    let Some(f) = q
        .files
        .iter()
        .find(|f| f.start <= byte && byte + CQ_UNIT_SIZE as u64 <= f.start + f.len)
    else {
        return Ok(None);
    };
    let bytes = root.read_range(&f.path, byte - f.start, CQ_UNIT_SIZE)?;
    Ok(CqUnit::decode(&bytes).filter(|u| u.is_valid()))
}

/// The dead-letter topic of `group` as `Store::dlq` answers (all zero when there is none).
pub fn dlq_row(
    root: &Root,
    layout: &Layout,
    table: &OffsetTable,
    group: &str,
    log_min: u64,
) -> CliResult<DlqRow> {
    let topic = schedule::dlq_topic(group);
    let (min, max) = match layout.queue(&topic, 0) {
        Some(q) => queue::bounds(root, q, log_min)?,
        None => (0, 0),
    };
    let purged_to = groups::committed_offset(table, group, &topic, 0, min)
        .unwrap_or(min)
        .clamp(min, max);
    Ok(DlqRow {
        group: group.to_owned(),
        size: max - purged_to,
        topic,
        purged_to,
        max_offset: max,
    })
}

/// Reads levels, retry and dead-letter topics of a root.
pub fn collect(root: &Root, layout: &Layout, levels: &DelayLevels) -> CliResult<Delays> {
    let (table, _, _) = groups::load_committed(root, layout)?;
    collect_with(root, layout, levels, &table)
}

/// [`collect`] over committed offsets already loaded.
pub fn collect_with(
    root: &Root,
    layout: &Layout,
    levels: &DelayLevels,
    table: &OffsetTable,
) -> CliResult<Delays> {
    let log_min = CommitLog::new(&*root.vfs, &layout.commitlog).min_offset();
    let mut out = Delays::default();
    if let Some(queues) = layout.queues.get(SCHEDULE_TOPIC) {
        let file = load_delay_offsets(root)?;
        let logged = table.get(&(SCHEDULE_TOPIC.to_owned(), PROGRESS_GROUP.to_owned()));
        for (&queue_id, q) in queues {
            let level = queue_id + 1;
            if level < 1 {
                continue;
            }
            let (min, max) = queue::bounds(root, q, log_min)?;
            let (raw, from) = match logged.and_then(|l| l.get(&queue_id)) {
                Some(&o) => (Some(o), ProgressFrom::Log),
                None => match file.as_ref().and_then(|f| f.get(&level)) {
                    Some(&o) => (Some(o), ProgressFrom::DelayOffsetFile),
                    None => (None, ProgressFrom::None),
                },
            };
            // As the store's `progress`: a negative offset is 0, and never below the min.
            let progress = raw
                .and_then(|o| u64::try_from(o).ok())
                .unwrap_or(0)
                .max(min);
            let next_due_ms = if progress < max {
                unit_at(root, q, progress)?.map(|u| u.tags_code)
            } else {
                None
            };
            out.levels.push(LevelRow {
                level,
                delay_ms: (level <= levels.len()).then(|| levels.delay_ms(level)),
                pending: max.saturating_sub(progress),
                progress,
                max_offset: max,
                next_due_ms,
                from,
            });
        }
    }
    for (topic, queues) in &layout.queues {
        if let Some(group) = topic.strip_prefix(RETRY_PREFIX) {
            let mut size = 0;
            for (&queue_id, q) in queues {
                let (min, max) = queue::bounds(root, q, log_min)?;
                let consumed =
                    groups::committed_offset(table, group, topic, queue_id, min).unwrap_or(min);
                size += max.saturating_sub(consumed);
            }
            out.retry.push(RetryRow {
                group: group.to_owned(),
                topic: topic.clone(),
                size,
            });
        } else if let Some(group) = topic.strip_prefix(DLQ_PREFIX) {
            out.dlq.push(dlq_row(root, layout, table, group, log_min)?);
        }
    }
    Ok(out)
}

/// `10s`, `1m`, `2h`, `1d`, or milliseconds when no unit divides the delay.
pub fn human_delay(ms: i64) -> String {
    for (unit, factor) in [
        ("d", 86_400_000),
        ("h", 3_600_000),
        ("m", 60_000),
        ("s", 1_000),
    ] {
        if ms > 0 && ms % factor == 0 {
            return format!("{}{unit}", ms / factor);
        }
    }
    format!("{ms}ms")
}

impl Delays {
    /// The `levels` array.
    pub fn levels_json(&self) -> Value {
        self.levels
            .iter()
            .map(|l| {
                json!({
                    "level": l.level,
                    "delay_ms": l.delay_ms,
                    "delay": l.delay_ms.map(human_delay),
                    "pending": l.pending,
                    "progress": l.progress,
                    "max_offset": l.max_offset,
                    "next_due_ms": l.next_due_ms,
                    "next_due": l.next_due_ms.map(utc),
                    "progress_from": l.from.name(),
                })
            })
            .collect()
    }

    /// The `retry` array.
    pub fn retry_json(&self) -> Value {
        self.retry
            .iter()
            .map(|r| json!({"group": r.group, "topic": r.topic, "size": r.size}))
            .collect()
    }

    /// The `dlq` array.
    pub fn dlq_json(&self) -> Value {
        self.dlq
            .iter()
            .map(|d| {
                json!({
                    "group": d.group,
                    "topic": d.topic,
                    "size": d.size,
                    "purged_to": d.purged_to,
                    "max_offset": d.max_offset,
                })
            })
            .collect()
    }

    /// One summary line each for `stat`, for what is not empty.
    pub fn summary(&self) -> Vec<String> {
        let mut lines = Vec::new();
        if !self.levels.is_empty() {
            let pending: u64 = self.levels.iter().map(|l| l.pending).sum();
            let next = self.levels.iter().filter_map(|l| l.next_due_ms).min();
            lines.push(format!(
                "schedule: {} levels, {pending} pending, next due {}",
                self.levels.len(),
                next.map_or_else(|| "-".into(), utc)
            ));
        }
        if !self.retry.is_empty() {
            let size: u64 = self.retry.iter().map(|r| r.size).sum();
            lines.push(format!(
                "retry: {} topics, {size} messages not consumed",
                self.retry.len()
            ));
        }
        if !self.dlq.is_empty() {
            let size: u64 = self.dlq.iter().map(|d| d.size).sum();
            lines.push(format!(
                "dlq: {} topics, {size} dead letters",
                self.dlq.len()
            ));
        }
        lines
    }
}

fn table(out: &mut Out, header: &[&str], rows: &[Vec<String>], left: usize) -> CliResult<()> {
    let mut width: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for r in rows {
        for (w, s) in width.iter_mut().zip(r) {
            *w = (*w).max(s.len());
        }
    }
    let head: Vec<String> = header.iter().map(|h| h.to_string()).collect();
    for r in std::iter::once(&head).chain(rows) {
        let cells: Vec<String> = r
            .iter()
            .zip(&width)
            .enumerate()
            .map(|(i, (s, &w))| {
                if i < left {
                    format!("{s:<w$}")
                } else {
                    format!("{s:>w$}")
                }
            })
            .collect();
        out.line(cells.join("  ").trim_end())?;
    }
    Ok(())
}

/// Prints `delays` as text.
fn delays_text(out: &mut Out, d: &Delays) -> CliResult<()> {
    if d.levels.is_empty() {
        out.line("schedule: no scheduled messages")?;
    } else {
        out.line(format_args!("schedule: {SCHEDULE_TOPIC}"))?;
        let rows: Vec<Vec<String>> = d
            .levels
            .iter()
            .map(|l| {
                vec![
                    l.level.to_string(),
                    l.delay_ms.map_or_else(|| "-".into(), human_delay),
                    l.delay_ms.map_or_else(|| "-".into(), |d| d.to_string()),
                    l.pending.to_string(),
                    l.progress.to_string(),
                    l.max_offset.to_string(),
                    l.next_due_ms.map_or_else(|| "-".into(), utc),
                    l.next_due_ms.map_or_else(|| "-".into(), |d| d.to_string()),
                    l.from.text().to_string(),
                ]
            })
            .collect();
        table(
            out,
            &[
                "LEVEL", "DELAY", "DELAY_MS", "PENDING", "PROGRESS", "MAX", "NEXT_DUE", "DUE_MS",
                "FROM",
            ],
            &rows,
            0,
        )?;
    }
    if !d.retry.is_empty() {
        out.line("retry topics:")?;
        let rows: Vec<Vec<String>> = d
            .retry
            .iter()
            .map(|r| vec![r.group.clone(), r.topic.clone(), r.size.to_string()])
            .collect();
        table(out, &["GROUP", "TOPIC", "SIZE"], &rows, 2)?;
    }
    if !d.dlq.is_empty() {
        out.line("dead-letter topics:")?;
        let rows: Vec<Vec<String>> = d
            .dlq
            .iter()
            .map(|r| {
                vec![
                    r.group.clone(),
                    r.topic.clone(),
                    r.size.to_string(),
                    r.purged_to.to_string(),
                    r.max_offset.to_string(),
                ]
            })
            .collect();
        table(
            out,
            &["GROUP", "TOPIC", "SIZE", "PURGED_TO", "MAX"],
            &rows,
            2,
        )?;
    }
    Ok(())
}

/// Runs `delays`.
pub fn run(args: &DelaysArgs) -> CliResult<ExitCode> {
    let levels = args.levels.parse()?;
    let root = Root::open(&args.root)?;
    let layout = root.layout()?;
    let d = collect(&root, &layout, &levels)?;
    let mut out = Out::new();
    if args.json {
        out.line(json!({
            "levels": d.levels_json(),
            "retry": d.retry_json(),
            "dlq": d.dlq_json(),
        }))?;
    } else {
        delays_text(&mut out, &d)?;
    }
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_read_as_rocketmq_writes_them() {
        assert_eq!(human_delay(10_000), "10s");
        assert_eq!(human_delay(120_000), "2m");
        assert_eq!(human_delay(7_200_000), "2h");
        assert_eq!(human_delay(86_400_000), "1d");
        assert_eq!(human_delay(1_500), "1500ms");
    }
}
