//! `verify`: checks a store root without changing it.
//!
//! * CommitLog: every record decodes; BODYCRC and (when present) the `__CRC32#` whole-record
//!   CRC match; a property one damaged byte away from `__CRC32#`, or properties that are not a
//!   well-formed list, are damage (recovery's rule), a record without the property is counted; PHYSICALOFFSET equals the record's position; queue offsets of each queue are
//!   contiguous; every segment followed by another ends with a BLANK that fills it exactly;
//!   segments are equal-sized and contiguous; nothing but zero segments after the end.
//! * ConsumeQueue: every unit points at a record of its topic, queue, queue offset, size and
//!   tag hash; every consumable record has its unit; files contiguous, nothing after the end.
//! * IndexFile: every entry is reachable from its hash slot along a strictly decreasing chain
//!   and points at a record with a key of that hash; every key of every record is findable.
//! * Checkpoint: the trailer's durable offset is not past the end of the log.
//!
//! Units and entries pointing below the CommitLog's first segment (deleted by retention) are
//! counted, not reported. Memory: a few dozen bytes per record and per index entry.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;
use rocketstore::format::java_hash::index_topic_key_hash;
use rocketstore::format::record::{
    TRANSACTION_COMMIT, TRANSACTION_NOT_TYPE, TRANSACTION_PREPARED, TRANSACTION_ROLLBACK,
};

use crate::commitlog::{check_crcs, CommitLog, Entry};
use crate::error::{chain, CliResult};
use crate::index::IndexFile;
use crate::output::Out;
use crate::progress::Progress;
use crate::queue;
use crate::root::{Layout, Root, TrailerState};
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
    fn add(&mut self, p: String) {
        self.count += 1;
        if self.list.len() < self.max {
            self.list.push(p);
        }
    }
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
}

/// Runs `verify`.
pub fn run(args: &VerifyArgs) -> CliResult<ExitCode> {
    let root = Root::open(&args.root)?;
    let layout = root.layout()?;
    let mut problems = Problems {
        list: Vec::new(),
        count: 0,
        max: args.max_problems,
    };
    for (p, why) in &layout.anomalies {
        problems.add(format!("layout: {}: {why}", p.display()));
    }
    let scan = scan_commitlog(&root, &layout, args.require_record_crc, &mut problems)?;
    let min_offset = layout.commitlog.first().map_or(0, |s| s.start);
    let (queues, units, cq_expired) =
        check_queues(&root, &layout, &scan, min_offset, &mut problems)?;
    let index_summary = check_index(&root, &layout, &scan, min_offset, args, &mut problems)?;
    if let Some(cp) = &layout.checkpoint {
        if let Some(t) = cp.checkpoint.trailer {
            if t.durable_commitlog_offset > scan.end {
                problems.add(format!(
                    "checkpoint: durable_commitlog_offset {} is past the end of the log {} (acknowledged data missing)",
                    t.durable_commitlog_offset, scan.end
                ));
            }
        } else if cp.trailer == TrailerState::Invalid {
            problems.add("checkpoint: trailer present but invalid (damaged)".into());
        }
    }

    let mut out = Out::new();
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
    if let Some(cp) = &layout.checkpoint {
        if let TrailerState::Outdated(v) = cp.trailer {
            out.line(format_args!("note: checkpoint trailer version {v} does not check out: before version 3 its CRC covered RocketMQ's timestamps, which a broker rewrites on every flush; recovery ignores it and scans the whole log"))?;
        } else if cp.checkpoint.written_since_trailer() {
            out.line("note: RocketMQ's checkpoint timestamps are newer than the trailer recorded: a broker wrote here since; the next open checks what came after the trailer")?;
        }
    }
    if layout.abort.is_some() {
        out.line("note: abort marker present (unclean shutdown or still running); derived data may lag until `rocketstore recover`")?;
    }
    if problems.count == 0 {
        out.line("OK: no problems found")?;
        out.flush()?;
        return Ok(ExitCode::SUCCESS);
    }
    out.line(format_args!("PROBLEMS: {}", problems.count))?;
    for p in &problems.list {
        out.line(format_args!("  {p}"))?;
    }
    if problems.count > problems.list.len() {
        out.line(format_args!(
            "  ... and {} more",
            problems.count - problems.list.len()
        ))?;
    }
    out.flush()?;
    Ok(ExitCode::from(1))
}

fn scan_commitlog(
    root: &Root,
    layout: &Layout,
    require_record_crc: bool,
    problems: &mut Problems,
) -> CliResult<Scan> {
    let log = CommitLog::new(&*root.vfs, &layout.commitlog);
    let segs = &layout.commitlog;
    let size = segs.first().map_or(0, |s| s.len);
    let total: u64 = segs.iter().map(|s| s.len).sum();
    let mut progress = Progress::new("verifying commitlog", total);
    let mut scan = Scan {
        records: Vec::new(),
        topics: Vec::new(),
        keys: Vec::new(),
        end: log.min_offset(),
        bytes: 0,
        without_record_crc: 0,
    };
    let mut topic_ids: HashMap<String, u32> = HashMap::new();
    let mut next_qoff: HashMap<(u32, i32), i64> = HashMap::new();
    // Where the previous segment's data ended without a BLANK (log end), if it did.
    let mut ended_at: Option<u64> = None;
    let mut done = 0u64;
    for (i, seg) in segs.iter().enumerate() {
        if seg.len != size {
            problems.add(format!(
                "commitlog: {}: length {}, the first segment has {size}",
                seg.path.display(),
                seg.len
            ));
        }
        if i > 0 && seg.start != segs[i - 1].start + segs[i - 1].len {
            problems.add(format!(
                "commitlog: {}: starts at {}, expected {} (gap or overlap)",
                seg.path.display(),
                seg.start,
                segs[i - 1].start + segs[i - 1].len
            ));
        }
        let mut reader = log.open(seg)?;
        let mut pos = 0u64;
        let mut has_data = false;
        let seg_end = loop {
            progress.update(done + pos);
            match reader.entry_at(pos)? {
                Entry::Record(r) => {
                    has_data = true;
                    let offset = seg.start + pos;
                    let crc = check_crcs(&r);
                    if !crc.body_ok() {
                        problems.add(format!(
                            "commitlog: record at {offset}: body CRC mismatch (stored {}, computed {})",
                            crc.body_stored, crc.body_computed
                        ));
                    }
                    match crc.record {
                        Some((s, c)) if s != c => problems.add(format!(
                            "commitlog: record at {offset}: __CRC32# mismatch (stored {s}, computed {c})"
                        )),
                        Some(_) => {}
                        // Recovery's rule: damage, not a record written without the property.
                        None if crc.crc_property_damaged => problems.add(format!(
                            "commitlog: record at {offset}: damaged __CRC32# property or malformed properties"
                        )),
                        None => {
                            scan.without_record_crc += 1;
                            if require_record_crc {
                                problems.add(format!(
                                    "commitlog: record at {offset}: no __CRC32# property"
                                ));
                            }
                        }
                    }
                    if r.physical_offset() != offset as i64 {
                        problems.add(format!(
                            "commitlog: record at {offset}: PHYSICALOFFSET says {}",
                            r.physical_offset()
                        ));
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
                                problems.add(format!(
                                    "commitlog: record at {offset}: {}/{} queue offset {}, expected {want} (not contiguous)",
                                    r.topic(),
                                    r.queue_id(),
                                    r.queue_offset()
                                ));
                            }
                        } else if offset == 0 && r.queue_offset() != 0 {
                            problems.add(format!(
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
                    pos += r.total_size() as u64;
                    scan.end = seg.start + pos;
                }
                Entry::Blank { size: blank } => {
                    has_data = true;
                    if u64::from(blank) != seg.len - pos {
                        problems.add(format!(
                            "commitlog: BLANK at {} has size {blank} but {} bytes remain in the segment",
                            seg.start + pos,
                            seg.len - pos
                        ));
                    }
                    scan.end = seg.start + seg.len;
                    break None;
                }
                Entry::End => break Some(seg.start + pos),
                Entry::Invalid(e) => {
                    has_data = true;
                    problems.add(format!(
                        "commitlog: invalid record at {}: {e}; rest of {} not checked",
                        seg.start + pos,
                        seg.name
                    ));
                    break Some(seg.start + pos);
                }
            }
        };
        if has_data {
            if let Some(prev_end) = ended_at {
                problems.add(format!(
                    "commitlog: {} holds data but the log already ended at {prev_end} (no BLANK at the end of the previous segment)",
                    seg.name
                ));
            }
        }
        if ended_at.is_none() {
            ended_at = seg_end;
        }
        scan.bytes += pos;
        done += seg.len;
    }
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

/// Returns (queues, units checked, units pointing below the log).
fn check_queues(
    root: &Root,
    layout: &Layout,
    scan: &Scan,
    min_offset: u64,
    problems: &mut Problems,
) -> CliResult<(usize, u64, u64)> {
    let mut loaded = HashMap::new();
    let mut units_checked = 0u64;
    let mut expired = 0u64;
    for q in layout.all_queues() {
        let data = queue::load(root, q, true)?;
        for p in &data.problems {
            problems.add(format!("consumequeue: {p}"));
        }
        let name = format!("{}/{}", q.topic, q.queue_id);
        for n in data.min..data.max {
            let u = data.unit(n).expect("within min..max");
            units_checked += 1;
            if u.is_pre_blank() {
                problems.add(format!(
                    "consumequeue: {name} unit {n}: pre-blank filler after real units"
                ));
                continue;
            }
            let off = u.commitlog_offset as u64;
            if off < min_offset {
                expired += 1;
                continue;
            }
            let Some(r) = find_rec(&scan.records, off) else {
                problems.add(format!(
                    "consumequeue: {name} unit {n}: points at commitlog offset {off} where no record starts"
                ));
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
                problems.add(format!(
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
        let unit = loaded
            .get(&(topic.clone(), r.queue_id))
            .and_then(|d| u64::try_from(r.queue_offset).ok().and_then(|n| d.unit(n)));
        match unit {
            Some(u) if u.commitlog_offset as u64 == r.offset => {}
            Some(u) => problems.add(format!(
                "consumequeue: record at {} ({topic}/{} #{}) has no unit: unit {} points at {}",
                r.offset, r.queue_id, r.queue_offset, r.queue_offset, u.commitlog_offset
            )),
            None => problems.add(format!(
                "consumequeue: record at {} ({topic}/{} #{}) has no unit",
                r.offset, r.queue_id, r.queue_offset
            )),
        }
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
    problems: &mut Problems,
) -> CliResult<String> {
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
    for f in &layout.index {
        let ix = match IndexFile::open(
            root,
            f,
            args.geometry.index_slots,
            args.geometry.index_entries,
        ) {
            Ok(ix) => ix,
            Err(e) => {
                problems.add(format!("index: {}", chain(&e)));
                continue;
            }
        };
        let h = ix.header;
        let g = ix.geometry;
        if h.index_count < 0 || h.index_count as u32 > g.entries {
            problems.add(format!(
                "index: {}: index_count {} outside 0..={}",
                f.name, h.index_count, g.entries
            ));
            continue;
        }
        let count = h.entries_used();
        entries_total += u64::from(count);
        let slots = ix.slots()?;
        let used_slots = slots.iter().filter(|&&s| s > 0).count();
        if used_slots != h.hash_slot_count.max(0) as usize {
            problems.add(format!(
                "index: {}: header says {} slots used, {used_slots} are",
                f.name, h.hash_slot_count
            ));
        }
        for (s, &k) in slots.iter().enumerate() {
            if k < 0 || k as u32 > count {
                problems.add(format!(
                    "index: {}: slot {s} points at entry {k}, only 1..={count} exist",
                    f.name
                ));
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
                    problems.add(format!(
                        "index: {}: entry {k} (hash {}) is chained from slot {} but belongs to slot {slot}",
                        f.name, e.key_hash, referenced_from[k as usize]
                    ));
                }
                if e.key_hash < 0 {
                    problems.add(format!(
                        "index: {}: entry {k} has negative hash {}",
                        f.name, e.key_hash
                    ));
                }
                if e.time_diff < 0 {
                    problems.add(format!(
                        "index: {}: entry {k} has negative time diff {}",
                        f.name, e.time_diff
                    ));
                }
                if e.prev < 0 || e.prev as u32 >= k {
                    problems.add(format!(
                        "index: {}: entry {k} has prev {} (must be below {k})",
                        f.name, e.prev
                    ));
                }
                let reachable = head || chained;
                if !reachable {
                    problems.add(format!(
                        "index: {}: entry {k} (offset {}) is not reachable from its slot {slot}",
                        f.name, e.commitlog_offset
                    ));
                } else if e.prev > 0 && (e.prev as u32) < k {
                    referenced_from[e.prev as usize] = slot;
                }
                if e.commitlog_offset < 0 {
                    problems.add(format!("index: {}: entry {k} has negative offset", f.name));
                    continue;
                }
                let off = e.commitlog_offset as u64;
                if off < min_offset {
                    expired += 1;
                    continue;
                }
                let matches = scan.keys.binary_search(&(off, e.key_hash)).is_ok();
                if !matches {
                    let what = if find_rec(&scan.records, off).is_some() {
                        "the record there has no key with that hash"
                    } else {
                        "no record starts there"
                    };
                    problems.add(format!(
                        "index: {}: entry {k} (hash {}) -> commitlog offset {off}: {what}",
                        f.name, e.key_hash
                    ));
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
            missing += 1;
            let r = find_rec(&scan.records, off).expect("keys come from records");
            problems.add(format!(
                "index: a key of the record at {off} ({}/{} #{}, key hash {hash}) is not findable",
                scan.topics[r.topic as usize], r.queue_id, r.queue_offset
            ));
        }
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
