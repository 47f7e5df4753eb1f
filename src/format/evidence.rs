//! Whether the first invalid record is the end of the log or damage inside it.
//!
//! A torn tail is damage *at the end*: nothing valid follows it. Damage followed by valid
//! records is corruption of data that was once complete (the distinction of Protocol-Aware
//! Recovery, FAST'18), so recovery looks past an invalid record before it cuts there:
//!
//! - **a chain in the same segment**: a later position whose record decodes with its CRCs and
//!   whose PHYSICALOFFSET field names that very position (a coincidence of 2⁻⁶⁴ in random
//!   bytes), found by resyncing on the magic code;
//! - **a later segment** that holds such a chain: at its start, or (its first record damaged
//!   too) found by the same resync inside it.
//!
//! One thing other than corruption produces that picture: a crash while unsynced pages were
//! being written back, out of order (the kernel writes dirty pages in any order; the crash
//! harness's `Torn` mode does the same). Segment files start zero-filled and recovery zeroes
//! and syncs what it cuts, so a sector that missed its last write reads as a prefix of what
//! was written into it followed by zeros, up to the sector's end. Damage is put down to a crash
//! only where that can explain it ([`lost_writes_explain`]): the damaged span lies at or after
//! the offset the checkpoint vouches for and holds a sector that ends in such zeros. Anything
//! else is corruption, and recovery refuses to throw away what follows it.

use memchr::memchr2;

use crate::format::record::{self, DecodeOptions, Decoded, BLANK_MAGIC, MAGIC_V1, MAGIC_V2};

/// The unit a disk writes atomically: a lost write leaves whole sectors at older contents.
pub const SECTOR: usize = 512;

/// A run of this many zero bytes after the damage ends the search in its segment: the log
/// ended there (corruption that wipes more than this and keeps later records is not told apart
/// from a torn tail; a later segment is still looked at).
const ZERO_RUN_ENDS_SEARCH: usize = 256 << 10;

/// Bytes looked at per step of the search (and the granularity of the zero-run test).
const WINDOW: usize = 16 << 10;

/// Valid records found after an invalid one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Chain {
    /// CommitLog offset of the first valid record.
    pub start: u64,
    /// Records in the chain (a closing BLANK counts as none).
    pub records: u64,
    /// Bytes the chain covers, a closing BLANK included.
    pub bytes: u64,
}

/// Whether `seg[pos..]` is a valid record (or the segment's closing BLANK) that sits where it
/// says it does; returns its length.
fn valid_at(seg: &[u8], seg_start: u64, pos: usize, opts: &DecodeOptions) -> Option<(usize, bool)> {
    let data = seg.get(pos..)?;
    match record::decode(data, opts) {
        Ok(Decoded::Record(rec))
            if rec.physical_offset() as u64 == seg_start + pos as u64
                && data.len() - rec.total_size() >= record::END_FILE_MIN_BLANK_LENGTH =>
        {
            Some((rec.total_size(), true))
        }
        Ok(Decoded::Blank { total_size }) if total_size as usize == data.len() => {
            Some((data.len(), false))
        }
        _ => None,
    }
}

/// The chain of valid records starting at `pos` (which must be valid), to the first record
/// that is not.
fn chain_from(seg: &[u8], seg_start: u64, pos: usize, opts: &DecodeOptions) -> Option<Chain> {
    let mut chain = Chain {
        start: seg_start + pos as u64,
        records: 0,
        bytes: 0,
    };
    let mut at = pos;
    while let Some((len, is_record)) = valid_at(seg, seg_start, at, opts) {
        chain.records += u64::from(is_record);
        chain.bytes += len as u64;
        at += len;
    }
    // A lone BLANK is evidence too (the segment was written to its end), but only if it is
    // not a stray eight bytes: it must close the segment exactly, which `valid_at` checks.
    (chain.bytes > 0).then_some(chain)
}

/// The first valid record chain in segment `seg` (starting at CommitLog offset `seg_start`)
/// that begins after `pos`, resyncing on the magic codes; `None` if the segment holds none
/// before a long zero run or its end.
pub fn chain_after(seg: &[u8], seg_start: u64, pos: usize, opts: &DecodeOptions) -> Option<Chain> {
    let mut zeros = 0usize;
    let mut from = pos + 1;
    while from < seg.len() {
        let to = (from + WINDOW).min(seg.len());
        let window = &seg[from..to];
        if window.iter().all(|&b| b == 0) {
            zeros += window.len();
            if zeros >= ZERO_RUN_ENDS_SEARCH {
                return None;
            }
            from = to;
            continue;
        }
        zeros = 0;
        // The magic code sits at byte 4 of a record: every hit of its first byte is a
        // candidate record four bytes earlier.
        let mut at = 0;
        while let Some(hit) = memchr2(0xDA, 0xCB, &window[at..]) {
            let magic_pos = from + at + hit;
            at += hit + 1;
            let Some(start) = magic_pos
                .checked_sub(record::POS_MAGIC)
                .filter(|&s| s > pos)
            else {
                continue;
            };
            let magic = seg
                .get(magic_pos..magic_pos + 4)
                .map(|b| u32::from_be_bytes(b.try_into().expect("4 bytes")));
            if !matches!(magic, Some(MAGIC_V1 | MAGIC_V2 | BLANK_MAGIC)) {
                continue;
            }
            if let Some(chain) = chain_from(seg, seg_start, start, opts) {
                return Some(chain);
            }
        }
        from = to;
    }
    None
}

/// Whether a later segment starts with a valid record (or the BLANK that closes it).
pub fn starts_valid(seg: &[u8], seg_start: u64, opts: &DecodeOptions) -> bool {
    valid_at(seg, seg_start, 0, opts).is_some()
}

/// The first valid chain in a later segment: at its start, else the first one a resync finds
/// after a damaged first record (a segment whose first record is damaged still holds the valid
/// records after it, and they are evidence as much as a valid start is).
pub fn chain_in_later(seg: &[u8], seg_start: u64, opts: &DecodeOptions) -> Option<Chain> {
    chain_from(seg, seg_start, 0, opts).or_else(|| chain_after(seg, seg_start, 0, opts))
}

/// Whether lost writes can explain the damage in `seg[from..to]`: some sector ending inside
/// the span (`from < end ≤ to`, file positions) reads as zeros at its end, as a sector that
/// missed its last write does. `whole` asks for zeros over all of the sector's part of the span
/// (a sector never written back since it was zeroed, which is what a crash leaves in every
/// sector past the last sync); otherwise its last byte being zero is enough (the sector may
/// have been written back once while the record was being copied into it).
pub fn lost_writes_explain(seg: &[u8], from: usize, to: usize, whole: bool) -> bool {
    let to = to.min(seg.len());
    // The valid record at `to` may begin with zero bytes (the high bytes of a small TOTALSIZE)
    // that lie in the sector that missed its write: they read the same either way, so that
    // sector counts as ending inside the span (its zeros run up to the record's first byte
    // that is not zero, at most 4 bytes on: its magic code).
    let to = to + seg[to..].iter().take(4).take_while(|&&b| b == 0).count();
    let mut end = (from / SECTOR + 1) * SECTOR;
    while end <= to {
        let lo = if whole {
            from.max(end - SECTOR)
        } else {
            end - 1
        };
        if seg[lo..end].iter().all(|&b| b == 0) {
            return true;
        }
        end += SECTOR;
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zeros_at_a_sector_end_explain_damage_and_zeros_elsewhere_do_not() {
        let mut seg = vec![0xAAu8; 4 * SECTOR];
        // Damage from 100 to 1500: nothing in it ends a sector with zeros.
        seg[200..300].fill(0);
        assert!(!lost_writes_explain(&seg, 100, 1500, false));
        assert!(!lost_writes_explain(&seg, 100, 1500, true));
        // The second sector's last byte is zero: a partly written-back sector.
        seg[2 * SECTOR - 1] = 0;
        assert!(lost_writes_explain(&seg, 100, 1500, false));
        assert!(!lost_writes_explain(&seg, 100, 1500, true));
        // The whole of the first sector from the damage on is zero: never written back.
        seg[100..SECTOR].fill(0);
        assert!(lost_writes_explain(&seg, 100, 1500, true));
        // A sector ending past the span does not count.
        let mut seg = vec![0xAAu8; 4 * SECTOR];
        seg[3 * SECTOR..].fill(0);
        assert!(!lost_writes_explain(&seg, 100, 3 * SECTOR - 1, false));
        assert!(lost_writes_explain(&seg, 100, 4 * SECTOR, true));
    }

    /// Found by the crash torture (`Torn`): a page torn at a sector boundary left the sector
    /// holding a record's tail and the next record's first bytes unwritten. That record's
    /// TOTALSIZE begins with zero bytes, which read the same in the unwritten sector, so the
    /// valid chain starts up to 3 bytes before the sector's end.
    #[test]
    fn a_chain_starting_in_the_unwritten_sector_is_explained_by_its_zero_prefix() {
        let mut seg = vec![0xAAu8; 4 * SECTOR];
        let next = 2 * SECTOR - 3;
        // Sector 1 never written from the damage on; the next record is 200 bytes long.
        seg[SECTOR + 100..2 * SECTOR].fill(0);
        seg[2 * SECTOR - 3..2 * SECTOR + 1].copy_from_slice(&200u32.to_be_bytes());
        assert!(lost_writes_explain(&seg, SECTOR + 100, next, true));
        assert!(lost_writes_explain(&seg, SECTOR + 100, next, false));
        // A size whose third byte is not zero ends the prefix: that sector was written.
        seg[2 * SECTOR - 3..2 * SECTOR + 1].copy_from_slice(&0x0190u32.to_be_bytes());
        assert!(!lost_writes_explain(&seg, SECTOR + 100, next, true));
    }
}
