//! Recovery's rule for the first invalid record, applied to segments read from disk.
//!
//! Recovery (`src/recovery/scan/damage.rs`, `valid_after`) calls an invalid record a torn tail only
//! when nothing valid follows it: no valid record chain later in its segment and none in a
//! later segment (at its start, or found by a resync past its damaged first record). The pure tests are the library's
//! [`rocketstore::format::evidence`]; this module feeds them segment bytes without reading a
//! whole (1 GiB) segment into memory in the common cases.
//!
//! The evidence functions take the whole segment from some sector-aligned position on. Here
//! that slice is a zeroed buffer of the segment's length (the kernel backs untouched pages
//! with nothing) of which only a prefix is read from the file: 16 MiB past the invalid record
//! first, doubled until the answer cannot depend on the unread part. It cannot when
//!
//! * the whole segment was read, or
//! * a chain was found that starts at least [`MAX_RECORD`] bytes before the end of the read
//!   part (every earlier candidate record fits in the read part, so its rejection stands), or
//! * no chain was found and the read part holds a zero run longer than [`MAX_RECORD`] plus the
//!   zero run that ends the library's search (the search stopped at a zero run that is real,
//!   and no record straddles it).

use rocketstore::format::evidence::{self, SECTOR};
use rocketstore::format::record::{self, DecodeOptions};
use rocketstore::vfs::{OpenMode, VfsFile};

use crate::error::{CliError, CliResult};
use crate::root::{FileInfo, Root};

/// The largest record the evidence search accepts (RocketMQ's largest message is 4 MiB).
pub const MAX_RECORD: usize = 8 << 20;

/// The zero run that ends the library's search in a segment (256 KiB) plus two of its 16 KiB
/// windows, so that a run of this length anywhere contains the search's aligned stretch.
const SEARCH_ZERO_RUN: usize = (256 << 10) + (32 << 10);

/// Bytes read past the invalid record before the first try.
const FIRST_READ: usize = 16 << 20;

/// Decoding as recovery's point checks do: both CRCs checked.
fn opts() -> DecodeOptions {
    DecodeOptions {
        verify_body_crc: true,
        verify_record_crc: true,
        max_record_size: MAX_RECORD,
    }
}

/// Valid data found after an invalid record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Follows {
    /// CommitLog offset of the first valid record (or closing BLANK) after the damage.
    pub start: u64,
    /// Index of the segment holding it.
    pub segment: usize,
    /// Records and bytes of the chain there, as far as it was read (a chain in a later
    /// segment is not read here: zero).
    pub chain: Option<evidence::Chain>,
    /// Later segments (after the damaged one) that hold a valid record chain.
    pub later_segments: usize,
    /// Whether a crash's lost writes can explain the damage ([`evidence::lost_writes_explain`]).
    pub explained: bool,
}

/// What lies past an invalid record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LookPast {
    /// Valid data after it, if any.
    pub follows: Option<Follows>,
    /// CommitLog offset one past the last non-zero byte of the damaged segment that was read
    /// from the invalid record on (the record's own offset when all of it is zero).
    pub nonzero_end: u64,
}

fn open(root: &Root, seg: &FileInfo) -> CliResult<Box<dyn VfsFile>> {
    root.vfs
        .open_file(&seg.path, OpenMode::ReadOnly)
        .map_err(|e| CliError::io(&seg.path, e))
}

fn read(file: &dyn VfsFile, seg: &FileInfo, buf: &mut [u8], at: u64) -> CliResult<()> {
    file.read_exact_at(buf, at)
        .map_err(|e| CliError::io(&seg.path, e))
}

/// Whether `bytes` holds a run of at least `n` zero bytes.
fn has_zero_run(bytes: &[u8], n: usize) -> bool {
    let mut run = 0usize;
    for &b in bytes {
        if b == 0 {
            run += 1;
            if run >= n {
                return true;
            }
        } else {
            run = 0;
        }
    }
    false
}

/// Whether segment `seg` starts with a valid record (or a BLANK filling it), reading only its
/// first record.
pub fn starts_valid(root: &Root, seg: &FileInfo) -> CliResult<bool> {
    let len = seg.len as usize;
    if len < record::END_FILE_MIN_BLANK_LENGTH {
        return Ok(false);
    }
    let file = open(root, seg)?;
    let mut bytes = vec![0u8; len];
    read(
        &*file,
        seg,
        &mut bytes[..record::END_FILE_MIN_BLANK_LENGTH],
        0,
    )?;
    let (size, _) = record::peek_header(&bytes).expect("8 bytes");
    let want = usize::try_from(size)
        .unwrap_or(0)
        .clamp(record::END_FILE_MIN_BLANK_LENGTH, MAX_RECORD)
        .min(len);
    read(&*file, seg, &mut bytes[..want], 0)?;
    Ok(evidence::starts_valid(&bytes, seg.start, &opts()))
}

/// The part of a segment read from a sector-aligned position on, and the first valid chain
/// in it after a position, read in growing steps until the unread part cannot change it.
struct Search {
    /// The segment from `base` on; only `..filled` was read.
    bytes: Vec<u8>,
    /// File position of `bytes[0]`.
    base: u64,
    /// Position searched after, relative to `base`.
    rel: usize,
    /// Bytes read.
    filled: usize,
    /// The first valid chain after `rel`.
    chain: Option<evidence::Chain>,
}

fn search_after(root: &Root, seg: &FileInfo, pos: u64) -> CliResult<Search> {
    let base = pos / SECTOR as u64 * SECTOR as u64;
    let len = (seg.len - base) as usize;
    let rel = (pos - base) as usize;
    let file = open(root, seg)?;
    let mut bytes = vec![0u8; len];
    let mut filled = 0usize;
    let mut want = len.min(rel + FIRST_READ);
    let opts = opts();
    let chain = loop {
        read(&*file, seg, &mut bytes[filled..want], base + filled as u64)?;
        filled = want;
        let chain = evidence::chain_after(&bytes, seg.start + base, rel, &opts);
        let decided = filled == len
            || match chain {
                Some(c) => (c.start - seg.start - base) as usize + MAX_RECORD + 8 <= filled,
                None => has_zero_run(
                    bytes.get(rel + 1..filled).unwrap_or_default(),
                    MAX_RECORD + SEARCH_ZERO_RUN,
                ),
            };
        if decided {
            break chain;
        }
        want = len.min(filled.saturating_mul(2));
    };
    Ok(Search {
        bytes,
        base,
        rel,
        filled,
        chain,
    })
}

/// The CommitLog offset of the first valid chain in a later segment: its start, or the chain a
/// resync finds past a damaged first record (as `evidence::chain_in_later`).
fn later_chain(root: &Root, seg: &FileInfo) -> CliResult<Option<u64>> {
    if starts_valid(root, seg)? {
        return Ok(Some(seg.start));
    }
    if seg.len == 0 {
        return Ok(None);
    }
    Ok(search_after(root, seg, 0)?.chain.map(|c| c.start))
}

/// Applies recovery's look past the invalid record at position `pos` of segment `idx`: a valid
/// chain later in that segment, else the first one in a later segment. `vouched` says whether
/// a checkpoint vouches for a durable offset (a valid trailer), which decides how much a
/// crash's lost writes can explain.
pub fn look_past(
    root: &Root,
    segs: &[FileInfo],
    idx: usize,
    pos: u64,
    vouched: bool,
) -> CliResult<LookPast> {
    let seg = &segs[idx];
    let Search {
        bytes,
        base,
        rel,
        filled,
        chain,
    } = search_after(root, seg, pos)?;
    let len = bytes.len();
    let nonzero_end = bytes[rel..filled]
        .iter()
        .rposition(|&b| b != 0)
        .map_or(seg.start + pos, |i| seg.start + pos + i as u64 + 1);
    let mut later_segments = 0usize;
    let mut first_later = None;
    for (j, s) in segs.iter().enumerate().skip(idx + 1) {
        if let Some(start) = later_chain(root, s)? {
            later_segments += 1;
            first_later.get_or_insert((j, start));
        }
    }
    let (start, segment, span_end) = match (chain, first_later) {
        (Some(c), _) => (c.start, idx, (c.start - seg.start - base) as usize),
        (None, Some((j, start))) => (start, j, len),
        (None, None) => {
            return Ok(LookPast {
                follows: None,
                nonzero_end,
            })
        }
    };
    let explained = evidence::lost_writes_explain(&bytes, rel, span_end, !vouched);
    Ok(LookPast {
        follows: Some(Follows {
            start,
            segment,
            chain,
            later_segments,
            explained,
        }),
        nonzero_end,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_runs_are_measured_where_they_are() {
        let mut b = vec![1u8; 100];
        b[10..30].fill(0);
        assert!(has_zero_run(&b, 20));
        assert!(!has_zero_run(&b, 21));
        assert!(!has_zero_run(&[], 1));
    }
}
