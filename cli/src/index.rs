//! Read-only access to IndexFiles: geometry, header, chain walks.
//!
//! The file does not record its geometry (hash slots, entries): RocketMQ takes it from the
//! broker configuration, rocketstore records it in the root (`rocketstore-geometry`, read by
//! the library's `RootGeometry::read`). [`Geometry::resolve`] uses `--index-slots/--index-entries`
//! when given, else the root's record, else the file length when it matches RocketMQ's default
//! (5M/20M), rocketstore's `StoreConfig::small` (1000/4000) or, more generally, the 1:4
//! slot/entry ratio both use.

use byteorder::{BigEndian, ByteOrder};
use rocketstore::format::index_layout::{self as layout, entry_pos, slot_pos};

use crate::error::{CliError, CliResult};
use crate::root::{FileInfo, Root};

/// Hash slots and entries of an IndexFile.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Geometry {
    /// Hash slots.
    pub slots: u32,
    /// Entries (entry 0 unused).
    pub entries: u32,
}

impl Geometry {
    /// The geometry of a file of `len` bytes: the given one (checked), else the one the root
    /// records (`recorded`) if the file has its length, else inferred.
    pub fn resolve(
        file: &FileInfo,
        recorded: Option<Geometry>,
        slots: Option<u32>,
        entries: Option<u32>,
    ) -> CliResult<Self> {
        let fits = |g: Geometry| layout::file_size(g.slots, g.entries) == file.len;
        let candidates: Vec<Geometry> = match (slots, entries) {
            (Some(slots), Some(entries)) => vec![Geometry { slots, entries }],
            (Some(slots), None) => {
                let rest = file.len.saturating_sub(layout::file_size(slots, 0));
                vec![Geometry {
                    slots,
                    entries: (rest / layout::ENTRY_SIZE as u64) as u32,
                }]
            }
            (None, Some(entries)) => {
                let rest = file.len.saturating_sub(layout::file_size(0, entries));
                vec![Geometry {
                    slots: (rest / layout::SLOT_SIZE as u64) as u32,
                    entries,
                }]
            }
            (None, None) => {
                let per_slot = (layout::SLOT_SIZE + 4 * layout::ENTRY_SIZE) as u64;
                let ratio = file.len.saturating_sub(layout::HEADER_SIZE as u64) / per_slot;
                recorded
                    .into_iter()
                    .chain([
                        Geometry {
                            slots: 5_000_000,
                            entries: 20_000_000,
                        },
                        Geometry {
                            slots: 1_000,
                            entries: 4_000,
                        },
                        Geometry {
                            slots: ratio as u32,
                            entries: (ratio * 4) as u32,
                        },
                    ])
                    .collect()
            }
        };
        candidates
            .into_iter()
            .find(|g| g.slots > 0 && g.entries >= 2 && fits(*g))
            .ok_or_else(|| {
                CliError::layout(
                    &file.path,
                    format!(
                        "cannot tell the index geometry from the length {}: pass --index-slots and --index-entries (40 + 4*slots + 20*entries must equal the length)",
                        file.len
                    ),
                )
            })
    }
}

/// The 40-byte header.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Header {
    /// Store time of the first entry.
    pub begin_timestamp: i64,
    /// Store time of the last entry.
    pub end_timestamp: i64,
    /// CommitLog offset of the first entry.
    pub begin_phy_offset: i64,
    /// CommitLog offset of the last entry.
    pub end_phy_offset: i64,
    /// Slots ever used.
    pub hash_slot_count: i32,
    /// Next entry number (entries `1..index_count` are written).
    pub index_count: i32,
}

impl Header {
    /// Decodes the first 40 bytes.
    pub fn decode(b: &[u8]) -> Header {
        let l = |p: usize| BigEndian::read_i64(&b[p..p + 8]);
        Header {
            begin_timestamp: l(layout::POS_BEGIN_TIMESTAMP),
            end_timestamp: l(layout::POS_END_TIMESTAMP),
            begin_phy_offset: l(layout::POS_BEGIN_PHY_OFFSET),
            end_phy_offset: l(layout::POS_END_PHY_OFFSET),
            hash_slot_count: BigEndian::read_i32(&b[layout::POS_HASH_SLOT_COUNT..]),
            index_count: BigEndian::read_i32(&b[layout::POS_INDEX_COUNT..]),
        }
    }

    /// Entries written, as RocketMQ reads the count (<= 0 means a fresh file).
    pub fn entries_used(&self) -> u32 {
        (self.index_count.max(1) - 1) as u32
    }
}

/// One 20-byte entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IndexEntry {
    /// `abs(hash("topic#key"))`.
    pub key_hash: i32,
    /// CommitLog offset of the record.
    pub commitlog_offset: i64,
    /// Seconds since the file's begin timestamp.
    pub time_diff: i32,
    /// Previous entry of the same slot (0 = end of chain).
    pub prev: i32,
}

impl IndexEntry {
    /// Decodes the first 20 bytes of `b`.
    pub fn decode(b: &[u8]) -> IndexEntry {
        IndexEntry {
            key_hash: BigEndian::read_i32(&b[layout::ENTRY_KEY_HASH..]),
            commitlog_offset: BigEndian::read_i64(&b[layout::ENTRY_COMMITLOG_OFFSET..]),
            time_diff: BigEndian::read_i32(&b[layout::ENTRY_TIME_DIFF..]),
            prev: BigEndian::read_i32(&b[layout::ENTRY_PREV_INDEX..]),
        }
    }
}

/// An IndexFile opened for reading.
#[derive(Debug)]
pub struct IndexFile<'r> {
    root: &'r Root,
    /// The file.
    pub info: FileInfo,
    /// Its geometry.
    pub geometry: Geometry,
    /// Its header.
    pub header: Header,
}

impl<'r> IndexFile<'r> {
    /// Reads the header of `info` (geometry resolved from the options or its length).
    pub fn open(
        root: &'r Root,
        info: &FileInfo,
        slots: Option<u32>,
        entries: Option<u32>,
    ) -> CliResult<Self> {
        let geometry = Geometry::resolve(info, root.index_geometry(), slots, entries)?;
        let b = root.read_range(&info.path, 0, layout::HEADER_SIZE)?;
        Ok(IndexFile {
            root,
            info: info.clone(),
            geometry,
            header: Header::decode(&b),
        })
    }

    /// The slot a hash lands in (RocketMQ: `keyHash % hashSlotNum` on a non-negative hash).
    pub fn slot_of(&self, hash: i32) -> u32 {
        hash as u32 % self.geometry.slots
    }

    /// Entry number stored in slot `slot`.
    pub fn slot(&self, slot: u32) -> CliResult<i32> {
        let b = self
            .root
            .read_range(&self.info.path, slot_pos(slot) as u64, 4)?;
        Ok(BigEndian::read_i32(&b))
    }

    /// All slots.
    pub fn slots(&self) -> CliResult<Vec<i32>> {
        let n = self.geometry.slots as usize;
        let b = self
            .root
            .read_range(&self.info.path, slot_pos(0) as u64, n * layout::SLOT_SIZE)?;
        Ok(b.chunks_exact(4).map(BigEndian::read_i32).collect())
    }

    /// Entry `k`.
    pub fn entry(&self, k: u32) -> CliResult<IndexEntry> {
        let pos = entry_pos(self.geometry.slots, k) as u64;
        let b = self
            .root
            .read_range(&self.info.path, pos, layout::ENTRY_SIZE)?;
        Ok(IndexEntry::decode(&b))
    }

    /// Entries `first..first + count` in one read.
    pub fn entries(&self, first: u32, count: u32) -> CliResult<Vec<IndexEntry>> {
        let pos = entry_pos(self.geometry.slots, first) as u64;
        let b = self
            .root
            .read_range(&self.info.path, pos, count as usize * layout::ENTRY_SIZE)?;
        Ok(b.chunks_exact(layout::ENTRY_SIZE)
            .map(IndexEntry::decode)
            .collect())
    }

    /// CommitLog offsets of entries with `hash` stored within `[begin, end]`, newest first,
    /// as RocketMQ walks a chain (spec §4.5); at most `limit` hash matches. Entry times are
    /// whole seconds, so the range is widened by the truncated part.
    pub fn lookup(&self, hash: i32, begin: i64, end: i64, limit: usize) -> CliResult<Vec<u64>> {
        let mut out = Vec::new();
        let count = self.header.index_count;
        let mut k = self.slot(self.slot_of(hash))?;
        while k > 0 && k < count && (k as u32) < self.geometry.entries && out.len() < limit {
            let e = self.entry(k as u32)?;
            if e.time_diff < 0 {
                break;
            }
            let t = self
                .header
                .begin_timestamp
                .saturating_add(e.time_diff as i64 * 1000);
            if e.key_hash == hash && t <= end && t.saturating_add(999) >= begin {
                out.push(e.commitlog_offset as u64);
            }
            // Chains go strictly to older entries; anything else would loop.
            if e.prev >= k || t.saturating_add(999) < begin {
                break;
            }
            k = e.prev;
        }
        Ok(out)
    }
}
