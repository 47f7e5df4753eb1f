//! `groups`: every consumer group's committed offset, the queue's max offset and the lag, read
//! from the raw files as the library's open would rebuild them (`engine::offsets`).
//!
//! The table is the snapshot `config/consumerOffset.json` (or its `.bak` when the main file is
//! missing or unreadable), then every commit record of the system topic
//! [`offset_commit::TOPIC`] at or after the CommitLog offset the snapshot reaches, in CommitLog
//! order. Those records are found through the system topic's ConsumeQueue and, after an unclean
//! shutdown, by a scan of the CommitLog from where recovery would re-dispatch (the checkpoint's
//! derived-durable offset): the ConsumeQueue may lag behind the log there. Read-only: no lock,
//! no write.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;
use rocketstore::format::checkpoint_layout::Checkpoint;
use rocketstore::format::offset_commit::{self, OffsetCommit};
use rocketstore::format::offset_table::{self, OffsetTable};
use rocketstore::format::root::CONSUMER_OFFSET_FILE;
use serde_json::{json, Value};

use crate::commitlog::{check_crcs, CommitLog, Entry};
use crate::config_file;
use crate::error::CliResult;
use crate::output::Out;
use crate::queue;
use crate::root::{CheckpointInfo, Layout, Root, TrailerState};

/// Arguments of `groups`.
#[derive(Debug, Args)]
pub struct GroupsArgs {
    /// The store root.
    pub root: PathBuf,
    /// Print one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
}

/// Which snapshot file the table starts from.
#[derive(Debug, Default)]
pub struct Snapshot {
    /// The file used; `None` when there is neither the file nor its `.bak`.
    pub file: Option<PathBuf>,
    /// Its `rocketstoreCommitLogOffset` (`None`: a RocketMQ file, nothing to replay).
    pub end: Option<u64>,
    /// Why the main file was not used, when the `.bak` was.
    pub fallback: Option<String>,
}

/// What the replay of commit records did.
#[derive(Debug, Default)]
pub struct Replay {
    /// Commit records applied.
    pub applied: usize,
    /// Records that could not be applied: unreadable, not of the system topic, or a body that
    /// does not decode (the library skips them too).
    pub skipped: usize,
}

/// The committed offsets as the library's open rebuilds them: the snapshot (or its `.bak`),
/// then the commit records newer than it (see the module documentation). Shared by `groups`,
/// `delays`, `dlq` and `stat`.
pub fn load_committed(root: &Root, layout: &Layout) -> CliResult<(OffsetTable, Snapshot, Replay)> {
    let (mut table, snapshot) = load_snapshot(root)?;
    let replayed = match snapshot.end {
        Some(from) => replay(root, layout, from, &mut table)?,
        None => Replay::default(),
    };
    Ok((table, snapshot, replayed))
}

/// What `Store::committed_offset` answers for `group` on `topic:queue` given the queue's
/// bounds: `None` when nothing (or a negative offset) was committed; an offset below the
/// queue's min reads as the min.
pub fn committed_offset(
    table: &OffsetTable,
    group: &str,
    topic: &str,
    queue: i32,
    min: u64,
) -> Option<u64> {
    let c = *table
        .get(&(topic.to_owned(), group.to_owned()))?
        .get(&queue)?;
    u64::try_from(c).ok().map(|c| c.max(min))
}

/// The snapshot, with the library's `.bak` fallback (`engine::offsets::load_snapshot`).
fn load_snapshot(root: &Root) -> CliResult<(OffsetTable, Snapshot)> {
    let loaded = config_file::load(root, CONSUMER_OFFSET_FILE, |text| {
        offset_table::parse(text).map_err(|e| e.to_string())
    })?;
    Ok(match loaded {
        Some(l) => {
            let (table, end) = l.value;
            (
                table,
                Snapshot {
                    file: Some(l.file),
                    end,
                    fallback: l.fallback,
                },
            )
        }
        None => (
            OffsetTable::new(),
            Snapshot {
                file: None,
                end: Some(0),
                fallback: None,
            },
        ),
    })
}

fn apply(table: &mut OffsetTable, replay: &mut Replay, body: &[u8]) {
    match offset_commit::decode(body) {
        Ok(OffsetCommit {
            group,
            topic,
            entries,
        }) => {
            let queues = table
                .entry((topic.to_owned(), group.to_owned()))
                .or_default();
            queues.extend(entries);
            replay.applied += 1;
        }
        Err(_) => replay.skipped += 1,
    }
}

/// Where the ConsumeQueue stops being trusted, as recovery decides it: after a clean shutdown
/// nowhere (`u64::MAX`); after an unclean one at the checkpoint trailer's derived-durable
/// offset (recovery cuts the units of later records and re-dispatches them), or, without a
/// usable trailer, at 0 (recovery rebuilds everything from the CommitLog).
fn trusted_dispatch_end(layout: &Layout) -> u64 {
    if layout.abort.is_none() {
        return u64::MAX;
    }
    match &layout.checkpoint {
        Some(CheckpointInfo {
            trailer: TrailerState::Valid,
            checkpoint: Checkpoint {
                trailer: Some(t), ..
            },
            ..
        }) if !t.derived_damaged => t.derived_durable_offset,
        _ => 0,
    }
}

/// Applies the commit records from CommitLog offset `from` on, as the library's open would:
/// those the system topic's ConsumeQueue points at below the trusted end of dispatched data
/// ([`trusted_dispatch_end`]), then those the CommitLog holds from there on.
fn replay(root: &Root, layout: &Layout, from: u64, table: &mut OffsetTable) -> CliResult<Replay> {
    let log = CommitLog::new(&*root.vfs, &layout.commitlog);
    let mut replay = Replay::default();
    let trusted = trusted_dispatch_end(layout);
    if let Some(q) = layout.queue(offset_commit::TOPIC, 0) {
        let data = queue::load(root, q, false)?;
        for n in data.min..data.max {
            let at = data.unit(n).expect("within min..max").commitlog_offset as u64;
            if at < from {
                continue;
            }
            if at >= trusted {
                break;
            }
            match log.read_at(at) {
                Ok(rec) if rec.view().topic() == offset_commit::TOPIC => {
                    apply(table, &mut replay, rec.view().body())
                }
                _ => replay.skipped += 1,
            }
        }
    }
    if trusted == u64::MAX {
        return Ok(replay);
    }
    // The records recovery would dispatch again: up to the first one that is not valid.
    let mut offset = from.max(trusted).max(log.min_offset());
    while let Some(seg) = log.segment_for(offset) {
        let mut reader = log.open(seg)?;
        loop {
            match reader.entry_at(offset - seg.start)? {
                Entry::Record(r) => {
                    let crc = check_crcs(&r);
                    if !crc.body_ok() || crc.record_ok() == Some(false) {
                        return Ok(replay);
                    }
                    if r.topic() == offset_commit::TOPIC && r.queue_id() == 0 {
                        apply(table, &mut replay, r.body());
                    }
                    offset += r.total_size() as u64;
                }
                Entry::Blank { .. } => {
                    offset = seg.start + seg.len;
                    break;
                }
                Entry::End | Entry::Invalid(_) => return Ok(replay),
            }
        }
    }
    Ok(replay)
}

/// One (group, topic, queue) of the table.
#[derive(Debug)]
struct Row<'a> {
    group: &'a str,
    topic: &'a str,
    queue: i32,
    committed: i64,
    max: Option<u64>,
}

impl Row<'_> {
    /// Messages the group has not consumed yet, when both ends are known.
    fn lag(&self) -> Option<u64> {
        let committed = u64::try_from(self.committed).ok()?;
        Some(self.max?.saturating_sub(committed))
    }
}

fn or_dash<T: ToString>(v: Option<T>) -> String {
    v.map_or_else(|| "-".into(), |v| v.to_string())
}

/// Runs `groups`.
pub fn run(args: &GroupsArgs) -> CliResult<ExitCode> {
    let root = Root::open(&args.root)?;
    let layout = root.layout()?;
    let (table, snapshot, replayed) = load_committed(&root, &layout)?;
    let log_min = CommitLog::new(&*root.vfs, &layout.commitlog).min_offset();
    let mut max_offsets = BTreeMap::new();
    let mut rows = Vec::new();
    for ((topic, group), queues) in &table {
        if topic == offset_commit::TOPIC {
            continue;
        }
        for (&queue, &committed) in queues {
            let bounds = match layout.queue(topic, queue) {
                None => None,
                Some(q) => Some(match max_offsets.get(&(topic, queue)) {
                    Some(&b) => b,
                    None => {
                        let b = queue::bounds(&root, q, log_min)?;
                        max_offsets.insert((topic, queue), b);
                        b
                    }
                }),
            };
            let max = bounds.map(|(_, m)| m);
            // As `Store::committed_offset` answers: an offset below the queue's min (retention
            // deleted what it pointed at) is where a consumer starts, the min.
            let committed = match bounds {
                Some((min, _)) if committed >= 0 => committed.max(min as i64),
                _ => committed,
            };
            rows.push(Row {
                group,
                topic,
                queue,
                committed,
                max,
            });
        }
    }
    rows.sort_by(|a, b| (a.group, a.topic, a.queue).cmp(&(b.group, b.topic, b.queue)));
    let mut out = Out::new();
    if args.json {
        out.line(groups_json(&snapshot, &replayed, &rows))?;
    } else {
        groups_text(&mut out, &root, &snapshot, &replayed, &rows)?;
    }
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}

fn groups_text(
    out: &mut Out,
    root: &Root,
    snapshot: &Snapshot,
    replayed: &Replay,
    rows: &[Row<'_>],
) -> CliResult<()> {
    if let Some(why) = &snapshot.fallback {
        out.line(format_args!("note: {why}"))?;
    }
    match (&snapshot.file, snapshot.end) {
        (None, _) => out.line("snapshot: none (no config/consumerOffset.json or .bak)")?,
        (Some(f), Some(end)) => out.line(format_args!(
            "snapshot: {} (commit records from CommitLog offset {end} replayed)",
            f.display()
        ))?,
        (Some(f), None) => out.line(format_args!(
            "snapshot: {} (no rocketstoreCommitLogOffset: RocketMQ's file, nothing replayed)",
            f.display()
        ))?,
    }
    out.line(format_args!(
        "replayed commit records: {}",
        replayed.applied
    ))?;
    if replayed.skipped > 0 {
        out.line(format_args!(
            "skipped records of {}: {} (unreadable or not a commit)",
            offset_commit::TOPIC,
            replayed.skipped
        ))?;
    }
    if rows.is_empty() {
        out.line(format_args!(
            "no consumer groups (no committed offsets in {})",
            root.path.display()
        ))?;
        return Ok(());
    }
    let cells: Vec<[String; 6]> = rows
        .iter()
        .map(|r| {
            [
                r.group.to_string(),
                r.topic.to_string(),
                r.queue.to_string(),
                r.committed.to_string(),
                or_dash(r.max),
                or_dash(r.lag()),
            ]
        })
        .collect();
    let header = ["GROUP", "TOPIC", "QUEUE", "COMMITTED", "MAX", "LAG"].map(String::from);
    let mut width = header.clone().map(|h| h.len());
    for c in &cells {
        for (w, s) in width.iter_mut().zip(c) {
            *w = (*w).max(s.len());
        }
    }
    for c in std::iter::once(&header).chain(&cells) {
        let line = format!(
            "{:<w0$}  {:<w1$}  {:>w2$}  {:>w3$}  {:>w4$}  {:>w5$}",
            c[0],
            c[1],
            c[2],
            c[3],
            c[4],
            c[5],
            w0 = width[0],
            w1 = width[1],
            w2 = width[2],
            w3 = width[3],
            w4 = width[4],
            w5 = width[5],
        );
        out.line(line.trim_end())?;
    }
    Ok(())
}

fn groups_json(snapshot: &Snapshot, replayed: &Replay, rows: &[Row<'_>]) -> Value {
    let groups: Vec<Value> = rows
        .iter()
        .map(|r| {
            json!({
                "group": r.group,
                "topic": r.topic,
                "queue": r.queue,
                "committed": r.committed,
                "max_offset": r.max,
                "lag": r.lag(),
            })
        })
        .collect();
    json!({
        "snapshot": {
            "file": snapshot.file.as_ref().map(|f| f.display().to_string()),
            "commitlog_offset": snapshot.end,
            "fallback": snapshot.fallback,
        },
        "replayed_commits": replayed.applied,
        "skipped_records": replayed.skipped,
        "groups": groups,
    })
}
