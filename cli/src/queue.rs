//! Read-only access to one ConsumeQueue: its units, min and max offsets.
//!
//! A queue's byte stream is the concatenation of its files; unit `n` is at byte `n * 20`. The
//! data ends at the first invalid unit (RocketMQ: offset < 0 or size <= 0; an all-zero unit is
//! the normal end). Leading pre-blank units (a queue that starts late) are below the minimum.

use rocketstore::format::cq_unit::{CqUnit, CQ_UNIT_SIZE};

use crate::error::CliResult;
use crate::root::{QueueFiles, Root};

/// Units of one queue, read fully.
#[derive(Debug)]
pub struct QueueData {
    /// Logical offset of `units[0]` (the first file's start / 20).
    pub base: u64,
    /// Every valid unit from `base` up to the end of the data.
    pub units: Vec<CqUnit>,
    /// First offset that is not a pre-blank filler.
    pub min: u64,
    /// One past the last unit.
    pub max: u64,
    /// Layout problems: file sizes, gaps, bytes after the end of the data.
    pub problems: Vec<String>,
}

impl QueueData {
    /// Unit `n`, if `min <= n < max`.
    pub fn unit(&self, n: u64) -> Option<CqUnit> {
        if n < self.min || n >= self.max {
            return None;
        }
        self.units.get((n - self.base) as usize).copied()
    }
}

/// Reads every file of `q`. With `check_tail`, also reports non-zero bytes after the end of the
/// data (which a later append would not overwrite cleanly).
pub fn load(root: &Root, q: &QueueFiles, check_tail: bool) -> CliResult<QueueData> {
    let mut problems = Vec::new();
    let base = q.files.first().map_or(0, |f| f.start / CQ_UNIT_SIZE as u64);
    let file_size = q.files.first().map_or(0, |f| f.len);
    if !file_size.is_multiple_of(CQ_UNIT_SIZE as u64) {
        problems.push(format!(
            "{}: length {file_size} is not a multiple of {CQ_UNIT_SIZE}",
            q.files[0].path.display()
        ));
    }
    let mut units = Vec::new();
    let mut ended = false;
    let mut expected_start = q.files.first().map_or(0, |f| f.start);
    for (i, f) in q.files.iter().enumerate() {
        if !f.start.is_multiple_of(CQ_UNIT_SIZE as u64) {
            problems.push(format!(
                "{}: start {} is not a multiple of {CQ_UNIT_SIZE}",
                f.path.display(),
                f.start
            ));
        }
        if f.start != expected_start {
            problems.push(format!(
                "{}: starts at byte {}, expected {expected_start} (gap or overlap)",
                f.path.display(),
                f.start
            ));
        }
        if i + 1 < q.files.len() && f.len != file_size {
            problems.push(format!(
                "{}: length {}, the queue's other files have {file_size}",
                f.path.display(),
                f.len
            ));
        }
        expected_start = f.start + f.len;
        if ended && !check_tail {
            break;
        }
        let data = if f.len == 0 {
            Vec::new()
        } else {
            root.read_range(&f.path, 0, f.len as usize)?
        };
        for (k, chunk) in data.chunks_exact(CQ_UNIT_SIZE).enumerate() {
            if !ended {
                let u = CqUnit::decode(chunk).expect("20-byte chunk");
                if u.is_valid() {
                    units.push(u);
                    continue;
                }
                ended = true;
                if i + 1 < q.files.len() {
                    problems.push(format!(
                        "{}: invalid unit at byte {} of a file that is not the last",
                        f.path.display(),
                        k * CQ_UNIT_SIZE
                    ));
                }
            }
            if check_tail && chunk.iter().any(|&b| b != 0) {
                problems.push(format!(
                    "{}: non-zero bytes at byte {} after the end of the queue (unit {})",
                    f.path.display(),
                    k * CQ_UNIT_SIZE,
                    base + units.len() as u64
                ));
                break;
            }
        }
    }
    let max = base + units.len() as u64;
    let pre_blanks = units.iter().take_while(|u| u.is_pre_blank()).count();
    Ok(QueueData {
        base,
        min: base + pre_blanks as u64,
        max,
        units,
        problems,
    })
}

/// Min and max offset of a queue from its first units and its last file (cheaper than
/// [`load`]: `stat` and `groups` need only these). The min skips units that point below
/// `log_min`, the CommitLog's first offset, as the store's min offset does (RocketMQ's
/// `correctMinOffset`: retention deleted those messages).
pub fn bounds(root: &Root, q: &QueueFiles, log_min: u64) -> CliResult<(u64, u64)> {
    let (Some(first), Some(last)) = (q.files.first(), q.files.last()) else {
        return Ok((0, 0));
    };
    let unit_count = |data: &[u8]| {
        data.chunks_exact(CQ_UNIT_SIZE)
            .take_while(|c| CqUnit::decode(c).is_some_and(|u| u.is_valid()))
            .count() as u64
    };
    let last_data = if last.len == 0 {
        Vec::new()
    } else {
        root.read_range(&last.path, 0, last.len as usize)?
    };
    let max = last.start / CQ_UNIT_SIZE as u64 + unit_count(&last_data);
    let mut min = first.start / CQ_UNIT_SIZE as u64;
    if first.len >= CQ_UNIT_SIZE as u64 {
        let head = root.read_range(&first.path, 0, CQ_UNIT_SIZE)?;
        if CqUnit::decode(&head).is_some_and(|u| u.is_pre_blank()) {
            let data = root.read_range(&first.path, 0, first.len as usize)?;
            min += data
                .chunks_exact(CQ_UNIT_SIZE)
                .take_while(|c| CqUnit::decode(c).is_some_and(|u| u.is_pre_blank()))
                .count() as u64;
        }
    }
    // Units below the CommitLog's start, file by file from the front (units are in log order).
    for f in &q.files {
        let file_end = f.start / CQ_UNIT_SIZE as u64 + f.len / CQ_UNIT_SIZE as u64;
        if min >= file_end {
            continue;
        }
        let data = root.read_range(&f.path, 0, f.len as usize)?;
        let skip_from = (min - f.start / CQ_UNIT_SIZE as u64) as usize;
        let below = data
            .chunks_exact(CQ_UNIT_SIZE)
            .skip(skip_from)
            .take_while(|c| {
                CqUnit::decode(c)
                    .is_some_and(|u| u.is_valid() && (u.commitlog_offset as u64) < log_min)
            })
            .count();
        min += below as u64;
        if skip_from + below < data.len() / CQ_UNIT_SIZE {
            break;
        }
    }
    Ok((min, max.max(min)))
}
