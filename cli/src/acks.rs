//! `check-acks`: opens (recovering) a root and checks that every put an ack log says was
//! acknowledged is there: a fully valid record (CRCs included) at its CommitLog offset with the
//! logged size, topic, queue and queue offset, reachable through its queue.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;
use rocketstore::Store;

use crate::error::{chain, CliError, CliResult};
use crate::open::{self, StoreArgs};
use crate::output::Out;

/// Arguments of `check-acks`.
#[derive(Debug, Args)]
pub struct CheckAcksArgs {
    /// The store root.
    pub root: PathBuf,
    /// The ack log written by `bench --ack-log`.
    pub ack_log: PathBuf,
    /// List at most this many missing puts.
    #[arg(long, default_value_t = 20)]
    pub max_report: usize,
    #[command(flatten)]
    pub store: StoreArgs,
}

/// One acknowledged put.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Ack {
    line: usize,
    offset: u64,
    size: usize,
    topic: String,
    queue_id: i32,
    queue_offset: u64,
}

/// Parses the log. A last line without its newline is a write torn by a kill and is skipped
/// (returned as `true`); any other malformed line is an error naming it.
fn parse(path: &PathBuf, text: &str) -> CliResult<(Vec<Ack>, bool)> {
    let mut acks = Vec::new();
    let mut torn = false;
    let lines: Vec<&str> = text.split_inclusive('\n').collect();
    for (i, raw) in lines.iter().enumerate() {
        let complete = raw.ends_with('\n');
        let f: Vec<&str> = raw.split_whitespace().collect();
        let parsed = (f.len() == 5)
            .then(|| {
                Some(Ack {
                    line: i + 1,
                    offset: f[0].parse().ok()?,
                    size: f[1].parse().ok()?,
                    topic: f[2].to_string(),
                    queue_id: f[3].parse().ok()?,
                    queue_offset: f[4].parse().ok()?,
                })
            })
            .flatten();
        match parsed {
            Some(a) if complete => acks.push(a),
            _ if !complete && i + 1 == lines.len() => torn = true,
            _ if f.is_empty() => {}
            _ => {
                return Err(CliError::layout(
                    path,
                    format!("line {}: expected `<commitlog_offset> <size> <topic> <queue_id> <queue_offset>`, got {:?}", i + 1, raw.trim_end()),
                ))
            }
        }
    }
    Ok((acks, torn))
}

/// Why an acknowledged put is not (exactly) there, or `None` if it is.
fn check(store: &Store, a: &Ack) -> Option<String> {
    let m = match store.read_at(a.offset) {
        Ok(m) => m,
        Err(e) => return Some(chain(&e)),
    };
    let v = m.view();
    let mut bad = Vec::new();
    if v.stored_size() != a.size {
        bad.push(format!("size {} (logged {})", v.stored_size(), a.size));
    }
    if v.topic() != a.topic || v.queue_id() != a.queue_id {
        bad.push(format!("record is of {}/{}", v.topic(), v.queue_id()));
    }
    if v.queue_offset() != a.queue_offset {
        bad.push(format!("queue offset {}", v.queue_offset()));
    }
    if bad.is_empty() {
        match store.get(&a.topic, a.queue_id, a.queue_offset, 1) {
            Ok(g) => match g.messages().next() {
                Some(q) if q.commitlog_offset() == a.offset => {}
                Some(q) => bad.push(format!(
                    "its queue serves offset {} at that queue offset",
                    q.commitlog_offset()
                )),
                None => bad.push(format!("its queue serves nothing there ({:?})", g.status())),
            },
            Err(e) => bad.push(format!("get failed: {}", chain(&e))),
        }
    }
    (!bad.is_empty()).then(|| bad.join("; "))
}

/// Runs `check-acks`.
pub fn run(args: &CheckAcksArgs) -> CliResult<ExitCode> {
    crate::root::Root::open(&args.root)?;
    let text = std::fs::read(&args.ack_log).map_err(|e| CliError::io(&args.ack_log, e))?;
    let (acks, torn) = parse(&args.ack_log, &String::from_utf8_lossy(&text))?;
    let (config, _) = open::config(&args.root, &args.store)?;
    let store = Store::open(&args.root, config)?;
    let mut out = Out::new();
    let mut missing = 0usize;
    for a in &acks {
        if let Some(why) = check(&store, a) {
            missing += 1;
            if missing <= args.max_report {
                out.line(format_args!(
                    "MISSING line {}: {} {} {} {} {}: {why}",
                    a.line, a.offset, a.size, a.topic, a.queue_id, a.queue_offset
                ))?;
            }
        }
    }
    store.close()?;
    if missing > args.max_report {
        out.line(format_args!("... and {} more", missing - args.max_report))?;
    }
    out.line(format_args!(
        "checked {} acknowledged puts: {} present, {missing} missing{}",
        acks.len(),
        acks.len() - missing,
        if torn {
            " (torn last line ignored)"
        } else {
            ""
        }
    ))?;
    out.flush()?;
    Ok(if missing == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_skips_a_torn_last_line_and_rejects_garbage_elsewhere() {
        let p = PathBuf::from("acks");
        let (acks, torn) = parse(&p, "0 100 T 1 0\n100 120 T 2 0\n220 1").unwrap();
        assert_eq!(acks.len(), 2);
        assert!(torn);
        assert_eq!(acks[1].offset, 100);
        assert_eq!(acks[1].queue_id, 2);
        assert!(parse(&p, "0 100 T 1\n5 5 T 1 1\n").is_err());
        let (acks, torn) = parse(&p, "").unwrap();
        assert!(acks.is_empty() && !torn);
    }
}
