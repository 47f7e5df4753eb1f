//! `verify`: checks a store root without changing it.
//!
//! * CommitLog: every record decodes; BODYCRC and (when present) the `__CRC32#` whole-record
//!   CRC match; a property one damaged byte away from `__CRC32#`, or properties that are not a
//!   well-formed list, are damage (recovery's rule), a record without the property is counted;
//!   PHYSICALOFFSET equals the record's position; queue offsets of each queue are contiguous;
//!   every segment followed by another ends with a BLANK that fills it exactly; segments are
//!   equal-sized and contiguous.
//! * The first invalid record is judged by recovery's rule ([`crate::damage`], the library's
//!   `format::evidence`): nothing valid after it is a torn tail (a note: recovery cuts it),
//!   unless it lies below the checkpoint's durable offset (acknowledged data lost: a problem);
//!   valid records after it (later in its segment, or a later segment starting with one) are
//!   corruption (a problem, `Store::open` refuses the root) unless a crash's lost writes
//!   explain the damage past the durable offset. After corruption the scan goes on at the valid
//!   chain that follows, so later records are still checked and counted.
//! * ConsumeQueue: every unit points at a record of its topic, queue, queue offset, size and
//!   tag hash; every consumable record has its unit; files contiguous, nothing after the end.
//! * IndexFile: every entry is reachable from its hash slot along a strictly decreasing chain
//!   and points at a record with a key of that hash; every key of every record is findable.
//! * Checkpoint: the trailer's durable offset is not past the end of the log.
//!
//! A root in use: verify takes a shared `flock` on `<root>/lock` and holds it for the whole run
//! (no store can open the root meanwhile). When a store holds the root (its exclusive lock),
//! only the CommitLog below the checkpoint's durable offset is checked, and derived data
//! behind the log or pointing past the durable offset is noted, not reported.
//!
//! Units and entries pointing below the CommitLog's first segment (deleted by retention) are
//! counted, not reported; those pointing at or past where the log ends (a torn tail recovery
//! cuts, or the durable offset of a root in use) are noted. Memory: a few dozen bytes per record
//! and per index entry.

use std::collections::HashMap;
use std::fs::{File, TryLockError};
use std::io;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Args;
use rocketstore::format::java_hash::index_topic_key_hash;
use rocketstore::format::record::{
    END_FILE_MIN_BLANK_LENGTH, TRANSACTION_COMMIT, TRANSACTION_NOT_TYPE, TRANSACTION_PREPARED,
    TRANSACTION_ROLLBACK,
};
use rocketstore::format::root::LOCK_FILE;
use serde_json::{json, Value};

use crate::commitlog::{check_crcs, CommitLog, Entry};
use crate::damage;
use crate::error::{chain, CliResult};
use crate::index::IndexFile;
use crate::output::Out;
use crate::progress::Progress;
use crate::queue;
use crate::root::{FileInfo, Layout, Root, TrailerState};
use crate::IndexGeometryArgs;

/// Index entries are read this many at a time.
const ENTRY_BATCH: u32 = 64 * 1024;

/// Arguments of `verify`.
#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// The store root.
    pub root: PathBuf,
    /// Require the `__CRC32#` whole-record CRC on every record (a root written by rocketstore
    /// with the default configuration).
    #[arg(long)]
    pub require_record_crc: bool,
    /// Print at most this many problems (all are counted).
    #[arg(long, default_value_t = 1000)]
    pub max_problems: usize,
    /// Print one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub geometry: IndexGeometryArgs,
}

/// One record as far as the derived-data checks need it.
#[derive(Clone, Copy, Debug)]
struct Rec {
    offset: u64,
    size: u32,
    topic: u32,
    queue_id: i32,
    queue_offset: i64,
    tags_code: i64,
    tx: i32,
}

/// Problems found, printed up to a limit.
struct Problems {
    list: Vec<String>,
    count: usize,
    max: usize,
}

impl Problems {
    /// Counts `p` and lists it if there is room; returns where it is listed.
    fn add(&mut self, p: String) -> Option<usize> {
        self.count += 1;
        (self.list.len() < self.max).then(|| {
            self.list.push(p);
            self.list.len() - 1
        })
    }
}

/// Where recovery would cut the log although nothing was wrong below it.
#[derive(Clone, Copy, Debug)]
struct TornTail {
    offset: u64,
    bytes: u64,
}

/// Damage followed by valid data: what `Store::open` refuses as corruption.
#[derive(Clone, Debug)]
struct Corruption {
    file: PathBuf,
    offset: u64,
    reason: String,
    /// Where the scan went on (the first valid record after the damage); `None` when nothing
    /// valid follows (damage below the durable offset).
    resumed_at: Option<u64>,
    later_segments: usize,
    valid_records_after: u64,
    valid_bytes_after: u64,
    /// Where its problem is listed (written once the chain after it is counted).
    slot: Option<usize>,
}

/// Everything `verify` found.
struct Findings {
    problems: Problems,
    notes: Vec<String>,
    torn_tail: Option<TornTail>,
    corruption: Vec<Corruption>,
    /// A problem already says that acknowledged data below the durable offset is gone.
    acknowledged_loss: bool,
}

/// What the checkpoint vouches for, and how far a root in use is checked.
#[derive(Clone, Copy, Debug)]
struct Bounds {
    /// The checkpoint's durable offset (the log's start when no valid trailer vouches for one).
    durable: u64,
    /// A valid trailer vouches for `durable`.
    vouched: bool,
    /// The checkpoint's derived-durable offset: derived data below it was synced.
    derived_durable: u64,
    /// The root is in use: only the CommitLog below this (the durable offset) is checked.
    live_limit: Option<u64>,
}

/// What the CommitLog scan collected.
struct Scan {
    records: Vec<Rec>,
    topics: Vec<String>,
    /// (commitlog offset, index key hash) of every key of every indexable record.
    keys: Vec<(u64, i32)>,
    end: u64,
    bytes: u64,
    without_record_crc: u64,
    /// Derived data pointing at or past this offset is not checked: recovery cuts the log here
    /// (a torn tail), or the root is in use and this is its durable offset.
    checked_to: Option<u64>,
    /// `[from, to)` spans skipped as corruption (the first invalid record to the valid data
    /// after it): derived data pointing into them is noted, the corruption is the problem.
    damaged: Vec<(u64, u64)>,
}

impl Scan {
    /// Whether `offset` lies in a span skipped as corruption.
    fn in_damaged(&self, offset: u64) -> bool {
        self.damaged.iter().any(|&(a, b)| (a..b).contains(&offset))
    }
}

/// What `<root>/lock` says about other processes.
enum RootLock {
    /// Our shared lock: no store can open the root while it is held.
    Held(#[allow(dead_code)] File),
    /// No lock file: no store ever opened the root (a RocketMQ root, or one not yet opened).
    Absent,
    /// Another process holds the exclusive lock: a store has the root open.
    InUse,
    /// The lock could not be checked.
    Unknown(String),
}

/// Takes a shared `flock` on `<root>/lock`, as the library takes an exclusive one while a
/// store is open.
fn lock_root(root: &Path) -> RootLock {
    let path = root.join(LOCK_FILE);
    let file = match File::open(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return RootLock::Absent,
        Err(e) => return RootLock::Unknown(format!("{}: {e}", path.display())),
    };
    match file.try_lock_shared() {
        Ok(()) => RootLock::Held(file),
        Err(TryLockError::WouldBlock) => RootLock::InUse,
        Err(TryLockError::Error(e)) => RootLock::Unknown(format!("{}: {e}", path.display())),
    }
}

/// Runs `verify`.
pub fn run(args: &VerifyArgs) -> CliResult<ExitCode> {
    let root = Root::open(&args.root)?;
    // Held until `run` returns.
    let lock = lock_root(&root.path);
    let in_use = matches!(lock, RootLock::InUse);
    let layout = root.layout()?;
    let mut f = Findings {
        problems: Problems {
            list: Vec::new(),
            count: 0,
            max: args.max_problems,
        },
        notes: Vec::new(),
        torn_tail: None,
        corruption: Vec::new(),
        acknowledged_loss: false,
    };
    let min_offset = layout.commitlog.first().map_or(0, |s| s.start);
    let data_end = layout.commitlog.last().map_or(0, |s| s.start + s.len);
    let trailer = layout
        .checkpoint
        .as_ref()
        .and_then(|cp| cp.checkpoint.trailer)
        // Recovery does not believe a trailer that claims more than the segments hold.
        .filter(|t| t.durable_commitlog_offset <= data_end);
    let durable = trailer.map_or(min_offset, |t| t.durable_commitlog_offset.max(min_offset));
    let bounds = Bounds {
        durable,
        vouched: trailer.is_some(),
        derived_durable: trailer.map_or(min_offset, |t| t.derived_durable_offset.max(min_offset)),
        live_limit: in_use.then_some(durable),
    };
    match &lock {
        RootLock::InUse => f.notes.push(format!(
            "the root is in use by another process (it holds {}): the CommitLog is checked up to the checkpoint's durable offset {durable} only{}; derived data behind the log or past that offset is noted, not reported",
            root.path.join(LOCK_FILE).display(),
            if trailer.is_none() {
                " (no valid checkpoint trailer vouches for any data, so none is checked)"
            } else {
                ""
            }
        )),
        RootLock::Unknown(why) => f.notes.push(format!(
            "could not check whether another process uses the root ({why}); verified as if it does not"
        )),
        RootLock::Held(_) | RootLock::Absent => {}
    }
    for (p, why) in &layout.anomalies {
        f.problems.add(format!("layout: {}: {why}", p.display()));
    }
    let scan = scan_commitlog(&root, &layout, args.require_record_crc, &bounds, &mut f)?;
    let (queues, units, cq_expired) =
        check_queues(&root, &layout, &scan, min_offset, &bounds, &mut f)?;
    let index_summary = check_index(&root, &layout, &scan, min_offset, args, &bounds, &mut f)?;
    if let Some(cp) = &layout.checkpoint {
        if let Some(t) = cp.checkpoint.trailer {
            if t.durable_commitlog_offset > scan.end && !f.acknowledged_loss && !in_use {
                f.problems.add(format!(
                    "checkpoint: durable_commitlog_offset {} is past the end of the log {} (acknowledged data missing)",
                    t.durable_commitlog_offset, scan.end
                ));
            }
        } else if cp.trailer == TrailerState::Invalid {
            f.problems
                .add("checkpoint: trailer present but invalid (damaged)".into());
        }
        if let TrailerState::Outdated(v) = cp.trailer {
            f.notes.push(format!("checkpoint trailer version {v} does not check out: before version 3 its CRC covered RocketMQ's timestamps, which a broker rewrites on every flush; recovery ignores it and scans the whole log"));
        } else if cp.checkpoint.written_since_trailer() {
            f.notes.push("RocketMQ's checkpoint timestamps are newer than the trailer recorded: a broker wrote here since; the next open checks what came after the trailer".into());
        }
    }
    if layout.abort.is_some() && !in_use {
        f.notes.push("abort marker present (unclean shutdown or still running); derived data may lag until `rocketstore recover`".into());
    }

    let mut out = Out::new();
    let ok = f.problems.count == 0;
    if args.json {
        let v = json!({
            "root": root.path.display().to_string(),
            "in_use": in_use,
            "verdict": if ok { "ok" } else { "problems" },
            "segments": layout.commitlog.len(),
            "records": scan.records.len(),
            "bytes": scan.bytes,
            "end_offset": scan.end,
            "checked_to": scan.checked_to,
            "durable_offset": trailer.map(|_| durable),
            "records_without_crc": scan.without_record_crc,
            "torn_tail": f.torn_tail.map(|t| json!({"offset": t.offset, "bytes": t.bytes})),
            "corruption": f.corruption.iter().map(|c| json!({
                "file": c.file.display().to_string(),
                "offset": c.offset,
                "reason": c.reason,
                "resumed_at": c.resumed_at,
                "later_segments": c.later_segments,
                "valid_records_after": c.valid_records_after,
                "valid_bytes_after": c.valid_bytes_after,
            })).collect::<Vec<Value>>(),
            "consumequeue": {"queues": queues, "units": units, "expired": cq_expired},
            "index": index_summary,
            "problems": {"count": f.problems.count, "listed": f.problems.list},
            "notes": f.notes,
        });
        out.line(v)?;
        out.flush()?;
        return Ok(if ok {
            ExitCode::SUCCESS
        } else {
            ExitCode::from(1)
        });
    }
    out.line(format_args!("verify {}", root.path.display()))?;
    out.line(format_args!(
        "commitlog: {} segments, {} records, {} bytes scanned, end offset {}{}",
        layout.commitlog.len(),
        scan.records.len(),
        scan.bytes,
        scan.end,
        if scan.without_record_crc > 0 {
            format!(
                ", {} records without __CRC32# (body CRC checked)",
                scan.without_record_crc
            )
        } else {
            String::new()
        }
    ))?;
    out.line(format_args!(
        "consumequeue: {queues} queues, {units} units checked{}",
        if cq_expired > 0 {
            format!(", {cq_expired} pointing below the first segment (expired)")
        } else {
            String::new()
        }
    ))?;
    out.line(format_args!("index: {index_summary}"))?;
    for n in &f.notes {
        out.line(format_args!("note: {n}"))?;
    }
    if ok {
        out.line("OK: no problems found")?;
        out.flush()?;
        return Ok(ExitCode::SUCCESS);
    }
    out.line(format_args!("PROBLEMS: {}", f.problems.count))?;
    for p in &f.problems.list {
        out.line(format_args!("  {p}"))?;
    }
    if f.problems.count > f.problems.list.len() {
        out.line(format_args!(
            "  ... and {} more",
            f.problems.count - f.problems.list.len()
        ))?;
    }
    out.flush()?;
    Ok(ExitCode::from(1))
}

/// The chain counted after a corruption is over: report it.
fn finish(pending: &mut Option<Corruption>, f: &mut Findings) {
    let Some(c) = pending.take() else {
        return;
    };
    let later = if c.later_segments > 0 {
        format!(
            ", and {} later segment(s) hold valid records",
            c.later_segments
        )
    } else {
        String::new()
    };
    let msg = format!(
        "commitlog: invalid record at {}: {}; not a torn tail: {} valid records ({} bytes) follow from offset {}{later}; Store::open refuses the root as corrupt ({})",
        c.offset,
        c.reason,
        c.valid_records_after,
        c.valid_bytes_after,
        c.resumed_at.unwrap_or(c.offset),
        c.file.display()
    );
    if let Some(slot) = c.slot {
        f.problems.list[slot] = msg;
    }
    f.corruption.push(c);
}

/// Recovery's decision about an invalid record.
enum Judged {
    /// The log ends here; `cut` when recovery cuts bytes (a torn tail), not at a zero header.
    End { cut: bool },
    /// Corruption: the scan goes on at the valid data that follows, in segment `segment`.
    Resume {
        corruption: Corruption,
        segment: usize,
    },
}

/// Applies recovery's rule to the invalid record (or zero header, `zero`) at `pos` of segment
/// `i`.
#[allow(clippy::too_many_arguments)]
fn judge(
    root: &Root,
    segs: &[FileInfo],
    i: usize,
    pos: u64,
    reason: String,
    zero: bool,
    bounds: &Bounds,
    f: &mut Findings,
) -> CliResult<Judged> {
    let seg = &segs[i];
    let offset = seg.start + pos;
    let acknowledged = offset < bounds.durable;
    let look = damage::look_past(root, segs, i, pos, bounds.vouched)?;
    match look.follows {
        None if !acknowledged => {
            if !zero {
                let bytes = look.nonzero_end.saturating_sub(offset);
                f.torn_tail = Some(TornTail { offset, bytes });
                f.notes.push(format!(
                    "commitlog: torn tail at {offset} in {}: {reason}; nothing valid follows, so recovery cuts the log there ({bytes} bytes)",
                    seg.name
                ));
            }
            Ok(Judged::End { cut: !zero })
        }
        Some(fl) if fl.explained && !acknowledged => {
            let chain_end = fl.chain.map_or(0, |c| c.start + c.bytes);
            let bytes = look.nonzero_end.max(chain_end).saturating_sub(offset);
            f.torn_tail = Some(TornTail { offset, bytes });
            f.notes.push(format!(
                "commitlog: torn tail at {offset} in {}: {reason}; the valid records from {} on reached the disk before it did (a crash during write-back; lost writes explain the damage past the durable offset {}), so recovery cuts them too ({bytes} bytes)",
                seg.name, fl.start, bounds.durable
            ));
            Ok(Judged::End { cut: true })
        }
        None => {
            f.acknowledged_loss = true;
            f.problems.add(if zero {
                format!(
                    "commitlog: the log ends at {offset} (zero header in {}), below the checkpoint's durable offset {}: acknowledged data missing",
                    seg.name, bounds.durable
                )
            } else {
                format!(
                    "commitlog: invalid record at {offset}: {reason}; below the checkpoint's durable offset {}, so not a torn tail: acknowledged data lost ({})",
                    bounds.durable,
                    seg.path.display()
                )
            });
            f.corruption.push(Corruption {
                file: seg.path.clone(),
                offset,
                reason,
                resumed_at: None,
                later_segments: 0,
                valid_records_after: 0,
                valid_bytes_after: 0,
                slot: None,
            });
            Ok(Judged::End { cut: false })
        }
        Some(fl) => Ok(Judged::Resume {
            corruption: Corruption {
                file: seg.path.clone(),
                offset,
                reason,
                resumed_at: Some(fl.start),
                later_segments: fl.later_segments,
                valid_records_after: 0,
                valid_bytes_after: 0,
                // Listed where it was found; the message is written by `finish`.
                slot: f.problems.add(String::new()),
            },
            segment: fl.segment,
        }),
    }
}

fn scan_commitlog(
    root: &Root,
    layout: &Layout,
    require_record_crc: bool,
    bounds: &Bounds,
    f: &mut Findings,
) -> CliResult<Scan> {
    let log = CommitLog::new(&*root.vfs, &layout.commitlog);
    let segs = &layout.commitlog;
    let size = segs.first().map_or(0, |s| s.len);
    let min = log.min_offset();
    let total: u64 = segs.iter().map(|s| s.len).sum();
    let mut progress = Progress::new("verifying commitlog", total);
    let mut scan = Scan {
        records: Vec::new(),
        topics: Vec::new(),
        keys: Vec::new(),
        end: min,
        bytes: 0,
        without_record_crc: 0,
        checked_to: bounds.live_limit,
        damaged: Vec::new(),
    };
    let mut topic_ids: HashMap<String, u32> = HashMap::new();
    let mut next_qoff: HashMap<(u32, i32), i64> = HashMap::new();
    // Where the log ended (recovery's rule said so), if it did.
    let mut ended: Option<u64> = None;
    // Corruption whose following chain is being counted.
    let mut pending: Option<Corruption> = None;
    let mut i = 0usize;
    let mut pos = 0u64;
    'segs: while i < segs.len() {
        let seg = &segs[i];
        if bounds.live_limit.is_some_and(|l| seg.start >= l) {
            break;
        }
        if pos == 0 {
            if seg.len != size {
                f.problems.add(format!(
                    "commitlog: {}: length {}, the first segment has {size}",
                    seg.path.display(),
                    seg.len
                ));
            }
            if i > 0 && seg.start != segs[i - 1].start + segs[i - 1].len {
                f.problems.add(format!(
                    "commitlog: {}: starts at {}, expected {} (gap or overlap)",
                    seg.path.display(),
                    seg.start,
                    segs[i - 1].start + segs[i - 1].len
                ));
            }
        }
        let mut reader = log.open(seg)?;
        if let Some(end) = ended {
            if !matches!(reader.entry_at(0)?, Entry::End) {
                f.notes.push(format!(
                    "commitlog: {} holds bytes after the end of the log at {end} that do not start with a valid record (recovery does not keep them)",
                    seg.name
                ));
            }
            i += 1;
            continue;
        }
        // Where the scan goes on after this segment: the next one, or a later one after
        // corruption whose valid data is there.
        let next: usize = loop {
            let offset = seg.start + pos;
            if bounds.live_limit.is_some_and(|l| offset >= l) {
                finish(&mut pending, f);
                break 'segs;
            }
            progress.update(offset - min);
            let (reason, zero) = match reader.entry_at(pos)? {
                Entry::Record(r) => {
                    let crc = check_crcs(&r);
                    let mut bad = Vec::new();
                    if !crc.body_ok() {
                        bad.push(format!(
                            "body CRC mismatch (stored {}, computed {})",
                            crc.body_stored, crc.body_computed
                        ));
                    }
                    match crc.record {
                        Some((s, c)) if s != c => {
                            bad.push(format!("__CRC32# mismatch (stored {s}, computed {c})"))
                        }
                        Some(_) => {}
                        // Recovery's rule: damage, not a record written without the property.
                        None if crc.crc_property_damaged => bad
                            .push("damaged __CRC32# property or malformed properties".to_string()),
                        None => {}
                    }
                    if r.physical_offset() != offset as i64 {
                        bad.push(format!("PHYSICALOFFSET says {}", r.physical_offset()));
                    }
                    let len = r.total_size() as u64;
                    if seg.len - pos - len < END_FILE_MIN_BLANK_LENGTH as u64 {
                        bad.push("record ends closer than 8 bytes to the segment end".into());
                    }
                    if !bad.is_empty() {
                        (bad.join("; "), false)
                    } else {
                        if crc.record.is_none() {
                            scan.without_record_crc += 1;
                            if require_record_crc {
                                f.problems.add(format!(
                                    "commitlog: record at {offset}: no __CRC32# property"
                                ));
                            }
                        }
                        let topic = match topic_ids.get(r.topic()) {
                            Some(&t) => t,
                            None => {
                                let t = scan.topics.len() as u32;
                                scan.topics.push(r.topic().to_string());
                                topic_ids.insert(r.topic().to_string(), t);
                                t
                            }
                        };
                        let tx = r.transaction_type();
                        if tx == TRANSACTION_NOT_TYPE || tx == TRANSACTION_COMMIT {
                            let qkey = (topic, r.queue_id());
                            if let Some(&want) = next_qoff.get(&qkey) {
                                if r.queue_offset() != want {
                                    f.problems.add(format!(
                                        "commitlog: record at {offset}: {}/{} queue offset {}, expected {want} (not contiguous)",
                                        r.topic(),
                                        r.queue_id(),
                                        r.queue_offset()
                                    ));
                                }
                            } else if offset == 0 && r.queue_offset() != 0 {
                                f.problems.add(format!(
                                    "commitlog: record at 0: first record of {}/{} has queue offset {}",
                                    r.topic(),
                                    r.queue_id(),
                                    r.queue_offset()
                                ));
                            }
                            next_qoff.insert(qkey, r.queue_offset() + 1);
                        }
                        if tx != TRANSACTION_ROLLBACK {
                            for key in r.uniq_key().into_iter().chain(r.keys()) {
                                scan.keys
                                    .push((offset, index_topic_key_hash(r.topic(), key)));
                            }
                        }
                        scan.records.push(Rec {
                            offset,
                            size: r.total_size() as u32,
                            topic,
                            queue_id: r.queue_id(),
                            queue_offset: r.queue_offset(),
                            tags_code: r.tags_code(),
                            tx,
                        });
                        pos += len;
                        scan.end = offset + len;
                        scan.bytes += len;
                        if let Some(c) = &mut pending {
                            c.valid_records_after += 1;
                            c.valid_bytes_after += len;
                        }
                        continue;
                    }
                }
                Entry::Blank { size: blank } if u64::from(blank) == seg.len - pos => {
                    scan.end = seg.start + seg.len;
                    scan.bytes += u64::from(blank);
                    if let Some(c) = &mut pending {
                        c.valid_bytes_after += u64::from(blank);
                    }
                    finish(&mut pending, f);
                    break i + 1;
                }
                Entry::Blank { size: blank } => (
                    format!(
                        "BLANK record of {blank} bytes but {} bytes left in the segment",
                        seg.len - pos
                    ),
                    false,
                ),
                Entry::End => ("the data ends (zero header)".to_string(), true),
                Entry::Invalid(e) => (e.to_string(), false),
            };
            // The chain counted after an earlier corruption ends here.
            finish(&mut pending, f);
            match judge(root, segs, i, pos, reason, zero, bounds, f)? {
                Judged::End { cut } => {
                    ended = Some(offset);
                    if cut && scan.checked_to.is_none() {
                        scan.checked_to = Some(offset);
                    }
                    break i + 1;
                }
                Judged::Resume {
                    corruption,
                    segment,
                } => {
                    let at = corruption.resumed_at.expect("valid data follows");
                    scan.damaged.push((offset, at));
                    // The damaged span held records of some queues: their offsets go on
                    // after a gap, which the corruption problem already explains.
                    next_qoff.clear();
                    pending = Some(corruption);
                    if segment == i {
                        pos = at - seg.start;
                        // Read again from the file: the look past the damage read it afresh,
                        // and the scan must see the bytes that look judged.
                        reader = log.open(seg)?;
                        continue;
                    }
                    break segment;
                }
            }
        };
        i = next;
        pos = 0;
    }
    finish(&mut pending, f);
    progress.finish();
    scan.keys.sort_unstable();
    scan.keys.dedup();
    Ok(scan)
}

fn find_rec(records: &[Rec], offset: u64) -> Option<&Rec> {
    records
        .binary_search_by_key(&offset, |r| r.offset)
        .ok()
        .map(|i| &records[i])
}

/// Why derived data pointing at or past `scan.checked_to` is not checked.
fn past_why(bounds: &Bounds) -> &'static str {
    if bounds.live_limit.is_some() {
        "past the durable offset of a root in use (in flight)"
    } else {
        "at or past the torn tail recovery cuts (recovery drops them)"
    }
}

/// Returns (queues, units checked, units pointing below the log).
fn check_queues(
    root: &Root,
    layout: &Layout,
    scan: &Scan,
    min_offset: u64,
    bounds: &Bounds,
    f: &mut Findings,
) -> CliResult<(usize, u64, u64)> {
    let live = bounds.live_limit.is_some();
    let checked_to = scan.checked_to.unwrap_or(u64::MAX);
    // A root in use: records from the derived-durable offset on may not have their units yet.
    let lag_from = if live {
        bounds.derived_durable
    } else {
        u64::MAX
    };
    let mut loaded = HashMap::new();
    let mut units_checked = 0u64;
    let mut expired = 0u64;
    let mut past = 0u64;
    let mut lagging = 0u64;
    let mut into_damage = 0u64;
    for q in layout.all_queues() {
        // The tail of a queue in use is being written: not checked for stray bytes.
        let data = queue::load(root, q, !live)?;
        for p in &data.problems {
            f.problems.add(format!("consumequeue: {p}"));
        }
        let name = format!("{}/{}", q.topic, q.queue_id);
        for n in data.min..data.max {
            let u = data.unit(n).expect("within min..max");
            if u.is_pre_blank() {
                units_checked += 1;
                f.problems.add(format!(
                    "consumequeue: {name} unit {n}: pre-blank filler after real units"
                ));
                continue;
            }
            let off = u.commitlog_offset as u64;
            if off >= checked_to {
                past += 1;
                continue;
            }
            units_checked += 1;
            if off < min_offset {
                expired += 1;
                continue;
            }
            let Some(r) = find_rec(&scan.records, off) else {
                if scan.in_damaged(off) {
                    into_damage += 1;
                } else {
                    f.problems.add(format!(
                        "consumequeue: {name} unit {n}: points at commitlog offset {off} where no record starts"
                    ));
                }
                continue;
            };
            let mut bad = Vec::new();
            let topic = &scan.topics[r.topic as usize];
            if topic != &q.topic || r.queue_id != q.queue_id {
                bad.push(format!("record is of {topic}/{}", r.queue_id));
            }
            if r.queue_offset != n as i64 {
                bad.push(format!("record queue offset {}", r.queue_offset));
            }
            if r.size as i32 != u.size {
                bad.push(format!("unit size {} but record size {}", u.size, r.size));
            }
            if r.tags_code != u.tags_code {
                bad.push(format!(
                    "unit tag hash {} but record tag hash {}",
                    u.tags_code, r.tags_code
                ));
            }
            if r.tx == TRANSACTION_PREPARED || r.tx == TRANSACTION_ROLLBACK {
                bad.push("record is a prepared/rolled-back transaction (not consumable)".into());
            }
            if !bad.is_empty() {
                f.problems.add(format!(
                    "consumequeue: {name} unit {n} -> record at {off}: {}",
                    bad.join("; ")
                ));
            }
        }
        loaded.insert((q.topic.clone(), q.queue_id), data);
    }
    for r in &scan.records {
        if r.tx != TRANSACTION_NOT_TYPE && r.tx != TRANSACTION_COMMIT {
            continue;
        }
        let topic = &scan.topics[r.topic as usize];
        let data = loaded.get(&(topic.clone(), r.queue_id));
        let unit = data.and_then(|d| u64::try_from(r.queue_offset).ok().and_then(|n| d.unit(n)));
        match unit {
            Some(u) if u.commitlog_offset as u64 == r.offset => {}
            Some(u) => {
                f.problems.add(format!(
                    "consumequeue: record at {} ({topic}/{} #{}) has no unit: unit {} points at {}",
                    r.offset, r.queue_id, r.queue_offset, r.queue_offset, u.commitlog_offset
                ));
            }
            // Derived data behind the log: the queue does not reach this record yet.
            None if r.offset >= lag_from && data.is_none_or(|d| r.queue_offset >= d.max as i64) => {
                lagging += 1
            }
            None => {
                f.problems.add(format!(
                    "consumequeue: record at {} ({topic}/{} #{}) has no unit",
                    r.offset, r.queue_id, r.queue_offset
                ));
            }
        }
    }
    if past > 0 {
        f.notes.push(format!(
            "consumequeue: {past} units point at or past {checked_to}, {} (not checked)",
            past_why(bounds)
        ));
    }
    if into_damage > 0 {
        f.notes.push(format!(
            "consumequeue: {into_damage} units point into damaged CommitLog data (the corruption reported)"
        ));
    }
    if lagging > 0 {
        f.notes.push(format!(
            "consumequeue: {lagging} records from the derived-durable offset {} on have no unit yet (derived data behind the log of a root in use)",
            bounds.derived_durable
        ));
    }
    Ok((loaded.len(), units_checked, expired))
}

/// Checks every IndexFile against the records; returns a one-line summary.
fn check_index(
    root: &Root,
    layout: &Layout,
    scan: &Scan,
    min_offset: u64,
    args: &VerifyArgs,
    bounds: &Bounds,
    findings: &mut Findings,
) -> CliResult<String> {
    let live = bounds.live_limit.is_some();
    let checked_to = scan.checked_to.unwrap_or(u64::MAX);
    // Inconsistencies of the IndexFile a store in use is writing (notes, not problems).
    let mut being_written = 0u64;
    let mut first_being_written: Option<String> = None;
    let mut past = 0u64;
    let mut lagging = 0u64;
    let mut into_damage = 0u64;
    if layout.index.is_empty() {
        return Ok(if scan.keys.is_empty() {
            "no index files (no keys to index)".into()
        } else {
            format!(
                "no index files: {} keys not checked (index disabled?)",
                scan.keys.len()
            )
        });
    }
    // (commitlog offset, hash) of every reachable entry.
    let mut indexed: Vec<(u64, i32)> = Vec::new();
    let mut entries_total = 0u64;
    let mut expired = 0u64;
    let total: u64 = layout.index.iter().map(|f| f.len).sum();
    let mut progress = Progress::new("verifying index", total);
    let mut done = 0u64;
    for (fi, f) in layout.index.iter().enumerate() {
        let transient = live && fi + 1 == layout.index.len();
        macro_rules! report {
            ($($arg:tt)*) => {{
                let msg = format!($($arg)*);
                if transient {
                    being_written += 1;
                    first_being_written.get_or_insert(msg);
                } else {
                    findings.problems.add(msg);
                }
            }};
        }
        let ix = match IndexFile::open(
            root,
            f,
            args.geometry.index_slots,
            args.geometry.index_entries,
        ) {
            Ok(ix) => ix,
            Err(e) => {
                report!("index: {}", chain(&e));
                continue;
            }
        };
        let h = ix.header;
        let g = ix.geometry;
        if h.index_count < 0 || h.index_count as u32 > g.entries {
            report!(
                "index: {}: index_count {} outside 0..={}",
                f.name,
                h.index_count,
                g.entries
            );
            continue;
        }
        let count = h.entries_used();
        entries_total += u64::from(count);
        let slots = ix.slots()?;
        let used_slots = slots.iter().filter(|&&s| s > 0).count();
        if used_slots != h.hash_slot_count.max(0) as usize {
            report!(
                "index: {}: header says {} slots used, {used_slots} are",
                f.name,
                h.hash_slot_count
            );
        }
        for (s, &k) in slots.iter().enumerate() {
            if k < 0 || k as u32 > count {
                report!(
                    "index: {}: slot {s} points at entry {k}, only 1..={count} exist",
                    f.name
                );
            }
        }
        // Walk entries newest first: an entry is reachable if its slot names it or a reachable
        // entry of the same slot names it as `prev`.
        let mut referenced_from: Vec<u32> = vec![u32::MAX; count as usize + 1];
        let mut k_hi = count;
        while k_hi >= 1 {
            let k_lo = k_hi.saturating_sub(ENTRY_BATCH - 1).max(1);
            let batch = ix.entries(k_lo, k_hi - k_lo + 1)?;
            for (i, e) in batch.iter().enumerate().rev() {
                let k = k_lo + i as u32;
                let slot = ix.slot_of(e.key_hash);
                let head = slots[slot as usize] == k as i32;
                let chained = referenced_from[k as usize] == slot;
                if referenced_from[k as usize] != u32::MAX && !chained {
                    report!(
                        "index: {}: entry {k} (hash {}) is chained from slot {} but belongs to slot {slot}",
                        f.name, e.key_hash, referenced_from[k as usize]
                    );
                }
                if e.key_hash < 0 {
                    report!(
                        "index: {}: entry {k} has negative hash {}",
                        f.name,
                        e.key_hash
                    );
                }
                if e.time_diff < 0 {
                    report!(
                        "index: {}: entry {k} has negative time diff {}",
                        f.name,
                        e.time_diff
                    );
                }
                if e.prev < 0 || e.prev as u32 >= k {
                    report!(
                        "index: {}: entry {k} has prev {} (must be below {k})",
                        f.name,
                        e.prev
                    );
                }
                let reachable = head || chained;
                if !reachable {
                    report!(
                        "index: {}: entry {k} (offset {}) is not reachable from its slot {slot}",
                        f.name,
                        e.commitlog_offset
                    );
                } else if e.prev > 0 && (e.prev as u32) < k {
                    referenced_from[e.prev as usize] = slot;
                }
                if e.commitlog_offset < 0 {
                    report!("index: {}: entry {k} has negative offset", f.name);
                    continue;
                }
                let off = e.commitlog_offset as u64;
                if off < min_offset {
                    expired += 1;
                    continue;
                }
                if off >= checked_to {
                    past += 1;
                    continue;
                }
                let matches = scan.keys.binary_search(&(off, e.key_hash)).is_ok();
                if !matches && scan.in_damaged(off) {
                    into_damage += 1;
                } else if !matches {
                    let what = if find_rec(&scan.records, off).is_some() {
                        "the record there has no key with that hash"
                    } else {
                        "no record starts there"
                    };
                    report!(
                        "index: {}: entry {k} (hash {}) -> commitlog offset {off}: {what}",
                        f.name,
                        e.key_hash
                    );
                }
                if reachable {
                    indexed.push((off, e.key_hash));
                }
            }
            progress.update(done + u64::from(count - k_lo + 1) * 20);
            k_hi = k_lo - 1;
        }
        done += f.len;
    }
    progress.finish();
    indexed.sort_unstable();
    indexed.dedup();
    let mut missing = 0u64;
    for &(off, hash) in &scan.keys {
        if indexed.binary_search(&(off, hash)).is_err() {
            if live && off >= bounds.derived_durable {
                lagging += 1;
                continue;
            }
            missing += 1;
            let r = find_rec(&scan.records, off).expect("keys come from records");
            findings.problems.add(format!(
                "index: a key of the record at {off} ({}/{} #{}, key hash {hash}) is not findable",
                scan.topics[r.topic as usize], r.queue_id, r.queue_offset
            ));
        }
    }
    if past > 0 {
        findings.notes.push(format!(
            "index: {past} entries point at or past {checked_to}, {} (not checked)",
            past_why(bounds)
        ));
    }
    if lagging > 0 {
        findings.notes.push(format!(
            "index: {lagging} keys of records from the derived-durable offset {} on are not findable yet (derived data behind the log of a root in use)",
            bounds.derived_durable
        ));
    }
    if into_damage > 0 {
        findings.notes.push(format!(
            "index: {into_damage} entries point into damaged CommitLog data (the corruption reported)"
        ));
    }
    if let Some(first) = first_being_written {
        findings.notes.push(format!(
            "index: {being_written} inconsistencies in the IndexFile the store in use is writing (first: {first})"
        ));
    }
    Ok(format!(
        "{} files, {entries_total} entries, {} record keys checked{}{}",
        layout.index.len(),
        scan.keys.len(),
        if missing > 0 {
            format!(", {missing} not findable")
        } else {
            String::new()
        },
        if expired > 0 {
            format!(", {expired} entries pointing below the first segment (expired)")
        } else {
            String::new()
        }
    ))
}
