//! Read-only access to the CommitLog: records by offset and a buffered sequential scan.
//!
//! Records are decoded with the library's pure decoder with both CRC checks off, so the
//! structure (magic, lengths, topic) decides where a record ends and the CRCs are checked
//! separately by [`check_crcs`]: a record whose body was damaged is still found, shown and
//! reported, and the scan goes on after it.

use rocketstore::format::properties::{self, CRC32_RESERVED_LEN};
use rocketstore::format::record::{self, DecodeOptions, Decoded, FormatError, RecordView};
use rocketstore::vfs::{OpenMode, Vfs, VfsFile};

use crate::error::{CliError, CliResult};
use crate::root::FileInfo;

/// Bytes read at a time by a sequential scan.
const CHUNK: usize = 8 << 20;

/// The segments of a CommitLog.
#[derive(Debug)]
pub struct CommitLog<'a> {
    vfs: &'a dyn Vfs,
    /// Segments sorted by start offset.
    pub segments: &'a [FileInfo],
}

/// What a scan finds at a position of a segment.
pub enum Entry<'b> {
    /// A structurally valid record (CRCs not yet checked).
    Record(RecordView<'b>),
    /// A BLANK record of `size` bytes: the rest of the segment is unused.
    Blank {
        /// TOTALSIZE of the BLANK record.
        size: u32,
    },
    /// A zero header (or the segment's end): no data from here on.
    End,
    /// Bytes that are neither a record, a BLANK nor zero.
    Invalid(FormatError),
}

/// Result of the two CRC checks of one record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CrcCheck {
    /// BODYCRC as stored.
    pub body_stored: u32,
    /// Masked CRC32 of the body.
    pub body_computed: u32,
    /// `(stored, computed)` of the `__CRC32#` whole-record CRC, if the record carries one.
    pub record: Option<(u32, u32)>,
    /// The properties end with a damaged `__CRC32#` property or are not a well-formed list
    /// (the rule recovery applies, `properties::crc_property`): damage, not a record without
    /// the property.
    pub crc_property_damaged: bool,
}

impl CrcCheck {
    /// Whether BODYCRC matches.
    pub fn body_ok(&self) -> bool {
        self.body_stored == self.body_computed
    }

    /// `Some(true/false)` if the record carries a whole-record CRC, `None` otherwise.
    pub fn record_ok(&self) -> Option<bool> {
        self.record.map(|(s, c)| s == c)
    }
}

/// Checks BODYCRC and, when present, the whole-record `__CRC32#` property.
pub fn check_crcs(rec: &RecordView<'_>) -> CrcCheck {
    let bytes = rec.as_bytes();
    CrcCheck {
        body_stored: rec.body_crc(),
        body_computed: record::masked_crc32(rec.body()),
        record: rec.record_crc().map(|stored| {
            (
                stored,
                record::masked_crc32(&bytes[..bytes.len() - CRC32_RESERVED_LEN]),
            )
        }),
        crc_property_damaged: properties::crc_property(rec.properties())
            == properties::CrcProperty::Damaged,
    }
}

/// Structural decoding only; records may not exceed `max` bytes.
pub fn decode_options(max: usize) -> DecodeOptions {
    DecodeOptions {
        verify_body_crc: false,
        verify_record_crc: false,
        max_record_size: max,
    }
}

impl<'a> CommitLog<'a> {
    /// The CommitLog made of `segments` (sorted by start).
    pub fn new(vfs: &'a dyn Vfs, segments: &'a [FileInfo]) -> Self {
        CommitLog { vfs, segments }
    }

    /// Start of the first segment (0 for an empty log).
    pub fn min_offset(&self) -> u64 {
        self.segments.first().map_or(0, |s| s.start)
    }

    /// The segment holding `offset`.
    pub fn segment_for(&self, offset: u64) -> Option<&'a FileInfo> {
        let i = self.segments.partition_point(|s| s.start <= offset);
        let seg = self.segments.get(i.checked_sub(1)?)?;
        (offset < seg.start + seg.len).then_some(seg)
    }

    /// A reader over one segment.
    pub fn open(&self, seg: &FileInfo) -> CliResult<SegmentReader> {
        let file = self
            .vfs
            .open_file(&seg.path, OpenMode::ReadOnly)
            .map_err(|e| CliError::io(&seg.path, e))?;
        Ok(SegmentReader {
            file,
            info: seg.clone(),
            buf: Vec::new(),
            buf_pos: 0,
        })
    }

    /// The bytes of the record starting at `offset` (structurally valid; CRCs unchecked).
    pub fn read_at(&self, offset: u64) -> CliResult<OwnedRecord> {
        let seg = self.segment_for(offset).ok_or_else(|| CliError::NoRecord {
            path: self
                .segments
                .first()
                .and_then(|s| s.path.parent())
                .map(|p| p.to_path_buf())
                .unwrap_or_default(),
            offset,
            reason: "no segment covers it".into(),
        })?;
        let mut reader = self.open(seg)?;
        let pos = offset - seg.start;
        let no_record = |reason: String| CliError::NoRecord {
            path: seg.path.clone(),
            offset,
            reason,
        };
        match reader.entry_at(pos)? {
            Entry::Record(r) => Ok(OwnedRecord {
                bytes: r.as_bytes().to_vec(),
            }),
            Entry::Blank { size } => Err(no_record(format!("BLANK filler of {size} bytes"))),
            Entry::End => Err(no_record("past the end of the data (zero header)".into())),
            Entry::Invalid(e) => Err(no_record(e.to_string())),
        }
    }
}

/// A copy of one record's bytes.
#[derive(Clone, Debug)]
pub struct OwnedRecord {
    /// Exactly TOTALSIZE bytes.
    pub bytes: Vec<u8>,
}

impl OwnedRecord {
    /// The decoded view (the bytes were validated when read).
    pub fn view(&self) -> RecordView<'_> {
        match record::decode(&self.bytes, &decode_options(self.bytes.len())) {
            Ok(Decoded::Record(r)) => r,
            other => unreachable!("record validated when read decodes again: {other:?}"),
        }
    }
}

/// Buffered positional reader of one segment.
pub struct SegmentReader {
    file: Box<dyn VfsFile>,
    /// The segment.
    pub info: FileInfo,
    buf: Vec<u8>,
    buf_pos: u64,
}

impl SegmentReader {
    /// Makes `[pos, pos + len)` (clamped to the file) available and returns it.
    fn bytes(&mut self, pos: u64, len: usize) -> CliResult<&[u8]> {
        let len = len.min(self.info.len.saturating_sub(pos) as usize);
        let covered =
            pos >= self.buf_pos && pos + len as u64 <= self.buf_pos + self.buf.len() as u64;
        if !covered {
            let want = len
                .max(CHUNK)
                .min(self.info.len.saturating_sub(pos) as usize);
            self.buf.resize(want, 0);
            self.file
                .read_exact_at(&mut self.buf, pos)
                .map_err(|e| CliError::io(&self.info.path, e))?;
            self.buf_pos = pos;
        }
        let start = (pos - self.buf_pos) as usize;
        Ok(&self.buf[start..start + len])
    }

    /// What is at `pos` (a position inside this segment).
    pub fn entry_at(&mut self, pos: u64) -> CliResult<Entry<'_>> {
        let remaining = self.info.len.saturating_sub(pos) as usize;
        if remaining < record::END_FILE_MIN_BLANK_LENGTH {
            return Ok(Entry::End);
        }
        let header = self.bytes(pos, record::END_FILE_MIN_BLANK_LENGTH)?;
        if header.iter().all(|&b| b == 0) {
            return Ok(Entry::End);
        }
        let (size, _) = record::peek_header(header).expect("8 bytes were read");
        let want = usize::try_from(size)
            .ok()
            .filter(|s| (record::END_FILE_MIN_BLANK_LENGTH..=remaining).contains(s))
            .unwrap_or(record::END_FILE_MIN_BLANK_LENGTH);
        let bytes = self.bytes(pos, want)?;
        Ok(match record::decode(bytes, &decode_options(remaining)) {
            Ok(Decoded::Record(r)) => Entry::Record(r),
            Ok(Decoded::Blank { total_size }) => Entry::Blank { size: total_size },
            Err(e) => Entry::Invalid(e),
        })
    }
}
