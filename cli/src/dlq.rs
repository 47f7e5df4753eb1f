//! `dlq`: a consumer group's dead letters (`%DLQ%group`, queue 0) past its purge point, read
//! from the raw files; `--redrive` and `--purge` open the store and call
//! `Store::dlq_redrive` / `Store::dlq_purge`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;
use rocketstore::format::schedule::{ORIGIN_MESSAGE_ID, RETRY_TOPIC};
use rocketstore::{Store, StoreConfig};
use serde_json::{json, Value};

use crate::commitlog::CommitLog;
use crate::delays::{self, unit_at, DlqRow};
use crate::error::{chain, CliResult};
use crate::groups;
use crate::open::{self, StoreArgs};
use crate::output::Out;
use crate::render::{msg_id, utc};
use crate::root::Root;

/// Arguments of `dlq`.
#[derive(Debug, Args)]
pub struct DlqArgs {
    /// The store root.
    pub root: PathBuf,
    /// The consumer group whose dead letters to show.
    #[arg(long)]
    pub group: String,
    /// Print JSON (one object) instead of text.
    #[arg(long)]
    pub json: bool,
    /// Put the dead letters back into the topics they came from (opens the store).
    #[arg(long, conflicts_with = "purge")]
    pub redrive: bool,
    /// With `--redrive`: at most this many.
    #[arg(long, requires = "redrive")]
    pub max: Option<usize>,
    /// Drop every dead letter of the group (opens the store; moves the purge point).
    #[arg(long)]
    pub purge: bool,
    #[command(flatten)]
    pub store: StoreArgs,
}

/// One dead letter.
struct Letter {
    queue_offset: u64,
    commitlog_offset: u64,
    /// `None` when no valid record is at the unit's offset (the reason).
    record: Result<LetterRecord, String>,
}

struct LetterRecord {
    msg_id: String,
    uniq_key: Option<String>,
    origin_message_id: Option<String>,
    retry_topic: Option<String>,
    reconsume_times: i32,
    store_timestamp: i64,
    body_size: usize,
}

fn or_dash(s: &Option<String>) -> &str {
    s.as_deref().unwrap_or("-")
}

/// Runs `dlq`.
pub fn run(args: &DlqArgs) -> CliResult<ExitCode> {
    if args.redrive || args.purge {
        return change(args);
    }
    let root = Root::open(&args.root)?;
    let layout = root.layout()?;
    let (table, _, _) = groups::load_committed(&root, &layout)?;
    let log = CommitLog::new(&*root.vfs, &layout.commitlog);
    let row = delays::dlq_row(&root, &layout, &table, &args.group, log.min_offset())?;
    let mut letters = Vec::new();
    if let Some(q) = layout.queue(&row.topic, 0) {
        for n in row.purged_to..row.max_offset {
            let Some(unit) = unit_at(&root, q, n)? else {
                break;
            };
            let at = unit.commitlog_offset as u64;
            let record = log.read_at(at).map_err(|e| chain(&e)).map(|rec| {
                let v = rec.view();
                let prop = |name: &str| v.property(name).map(str::to_owned);
                LetterRecord {
                    msg_id: msg_id(v.store_host(), at),
                    uniq_key: prop("UNIQ_KEY"),
                    origin_message_id: prop(ORIGIN_MESSAGE_ID),
                    retry_topic: prop(RETRY_TOPIC),
                    reconsume_times: v.reconsume_times(),
                    store_timestamp: v.store_timestamp(),
                    body_size: v.body().len(),
                }
            });
            letters.push(Letter {
                queue_offset: n,
                commitlog_offset: at,
                record,
            });
        }
    }
    let mut out = Out::new();
    if args.json {
        out.line(list_json(&row, &letters))?;
    } else {
        list_text(&mut out, &row, &letters)?;
    }
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}

fn list_json(row: &DlqRow, letters: &[Letter]) -> Value {
    let rows: Vec<Value> = letters
        .iter()
        .map(|l| match &l.record {
            Ok(r) => json!({
                "queue_offset": l.queue_offset,
                "commitlog_offset": l.commitlog_offset,
                "msg_id": r.msg_id,
                "uniq_key": r.uniq_key,
                "origin_message_id": r.origin_message_id,
                "retry_topic": r.retry_topic,
                "reconsume_times": r.reconsume_times,
                "store_timestamp": r.store_timestamp,
                "store_time": utc(r.store_timestamp),
                "body_size": r.body_size,
            }),
            Err(why) => json!({
                "queue_offset": l.queue_offset,
                "commitlog_offset": l.commitlog_offset,
                "error": why,
            }),
        })
        .collect();
    json!({
        "group": row.group,
        "topic": row.topic,
        "size": row.size,
        "purged_to": row.purged_to,
        "max_offset": row.max_offset,
        "messages": rows,
    })
}

fn list_text(out: &mut Out, row: &DlqRow, letters: &[Letter]) -> CliResult<()> {
    out.line(format_args!(
        "{}: {} dead letters (queue offsets {}..{}, purged to {})",
        row.topic, row.size, row.purged_to, row.max_offset, row.purged_to
    ))?;
    for l in letters {
        match &l.record {
            Ok(r) => out.line(format_args!(
                "  qoffset {}  msgId {}  uniqKey {}  retryTopic {}  reconsumeTimes {}  stored {}  body {} bytes",
                l.queue_offset,
                r.origin_message_id.as_deref().unwrap_or(&r.msg_id),
                or_dash(&r.uniq_key),
                or_dash(&r.retry_topic),
                r.reconsume_times,
                utc(r.store_timestamp),
                r.body_size
            ))?,
            Err(why) => out.line(format_args!(
                "  qoffset {}  commitlog offset {}: unreadable: {why}",
                l.queue_offset, l.commitlog_offset
            ))?,
        }
    }
    Ok(())
}

/// `--redrive` / `--purge`: open the store (geometry from the files), act, close.
fn change(args: &DlqArgs) -> CliResult<ExitCode> {
    // Refuse to create a store where the user meant to change one.
    Root::open(&args.root)?;
    let (config, notes) = open::config(&args.root, &args.store)?;
    // Do only what was asked: no scheduled delivery while the store is open.
    let config = StoreConfig {
        schedule_delivery: false,
        ..config
    };
    let store = Store::open(&args.root, config)?;
    let result = if args.redrive {
        store
            .dlq_redrive(&args.group, args.max.unwrap_or(usize::MAX))
            .map(|n| ("redriven", n as u64))
    } else {
        store.dlq_purge(&args.group).map(|n| ("purged", n))
    };
    let after = result.and_then(|r| store.dlq(&args.group).map(|d| (r, d)));
    let closed = store.close();
    let ((what, n), d) = after?;
    closed?;
    let mut out = Out::new();
    if args.json {
        out.line(json!({
            "group": args.group,
            "topic": d.topic,
            what: n,
            "size": d.size,
            "purged_to": d.purged_to,
            "max_offset": d.max_offset,
            "inferred": notes,
        }))?;
    } else {
        for n in &notes {
            out.line(format_args!("config: {n}"))?;
        }
        out.line(format_args!(
            "{what} {n} dead letters of {}; {} left (purged to {}, max {})",
            d.topic, d.size, d.purged_to, d.max_offset
        ))?;
    }
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}
