//! The validating decoder. Invariants: [`decode`] never panics and never allocates; every length
//! it reads from the input is bounds-checked with checked arithmetic before use, so a
//! [`RecordView`] only exists for a record whose fields add up exactly to its TOTALSIZE.

use byteorder::{BigEndian, ByteOrder};

use super::layout::{host_len, FIXED_FIELDS_LEN, MIN_V1_RECORD_LEN};
use super::*;
use crate::format::properties::{self, CrcProperty, CRC32_RESERVED_LEN};

/// Decoder settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DecodeOptions {
    /// Check BODYCRC against the body (non-empty bodies only, as Java does). Skipped when
    /// `verify_record_crc` already verified the record, whose CRC covers body and BODYCRC.
    pub verify_body_crc: bool,
    /// Check the whole-record CRC by the rule recovery, reads and `verify` share
    /// ([`properties::crc_property`]): a `__CRC32#` property is checked against the record; a
    /// record without one (RocketMQ 4.x, or 5.x with `enabledAppendPropCRC=false`) is valid on
    /// its BODYCRC and structure, wherever it sits; properties whose end is one damaged byte
    /// away from a CRC property, or not a well-formed list (a torn tail), fail with
    /// [`FormatError::BadCrcProperty`].
    pub verify_record_crc: bool,
    /// Largest accepted TOTALSIZE; larger values are treated as corruption.
    pub max_record_size: usize,
}

impl DecodeOptions {
    /// Lengths, magic and topic checked, no CRC: for bytes this process just wrote or already
    /// validated, and for looking at a record's fields before deciding how to check it.
    pub const fn structure_only(max_record_size: usize) -> DecodeOptions {
        DecodeOptions {
            verify_body_crc: false,
            verify_record_crc: false,
            max_record_size,
        }
    }
}

/// One validated record or the end-of-segment filler.
#[derive(Debug, Clone, Copy)]
pub enum Decoded<'a> {
    /// A record whose lengths, topic and requested CRCs are valid.
    Record(RecordView<'a>),
    /// A BLANK record: the rest of the segment is unused; continue at the next segment.
    Blank {
        /// TOTALSIZE of the BLANK record (bytes left in the segment when it was written), ≥ 8.
        total_size: u32,
    },
}

/// Why the bytes at a position are not a valid record.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FormatError {
    /// The buffer ends before the record does.
    #[error("record needs {needed} bytes but only {available} are available")]
    Truncated {
        /// Bytes the record needs.
        needed: usize,
        /// Bytes in the buffer.
        available: usize,
    },
    /// MAGICCODE is none of V1, V2 or BLANK (a zero-filled area gives `found: 0`).
    #[error("unknown magic code {found:#010x}")]
    BadMagic {
        /// The magic code read.
        found: u32,
    },
    /// TOTALSIZE is negative, below the smallest record or above the configured maximum.
    #[error("total size {size} outside the valid range {min}..={max}")]
    BadTotalSize {
        /// TOTALSIZE as read.
        size: i64,
        /// Smallest record of this magic.
        min: usize,
        /// `DecodeOptions::max_record_size`.
        max: usize,
    },
    /// A body, topic or properties length field is negative.
    #[error("{field} length {len} is negative")]
    BadFieldLength {
        /// "body", "topic" or "properties".
        field: &'static str,
        /// The length as read.
        len: i64,
    },
    /// The fields do not add up to TOTALSIZE. When a length points past the record, `computed`
    /// is the length implied by the fields read so far.
    #[error("declared total size {declared} but fields add up to {computed}")]
    LengthMismatch {
        /// TOTALSIZE.
        declared: usize,
        /// Length computed from the fields (spec §1.1 formula).
        computed: usize,
    },
    /// BODYCRC does not match the body.
    #[error("body CRC mismatch: stored {stored}, computed {computed}")]
    BodyCrcMismatch {
        /// BODYCRC as stored.
        stored: u32,
        /// Masked CRC32 of the body.
        computed: u32,
    },
    /// The `__CRC32#` property does not match the record.
    #[error("record CRC mismatch: stored {stored}, computed {computed}")]
    RecordCrcMismatch {
        /// Value of the `__CRC32#` property.
        stored: u32,
        /// Masked CRC32 of the record without its last 20 bytes.
        computed: u32,
    },
    /// The properties end with a damaged `__CRC32#` property (one byte away from a well-formed
    /// one), or are not a well-formed property list (e.g. zeros of a torn write).
    #[error("damaged __CRC32# property or malformed properties at the end of the record")]
    BadCrcProperty,
    /// The topic bytes are not UTF-8.
    #[error("topic is not valid UTF-8")]
    TopicNotUtf8,
    /// A BLANK record with TOTALSIZE below 8.
    #[error("BLANK record with total size {size}, less than 8")]
    BadBlank {
        /// TOTALSIZE as read.
        size: i64,
    },
}

/// Cheap peek: (TOTALSIZE, MAGIC) of the record at the start of `buf`, `None` if fewer than 8
/// bytes.
pub fn peek_header(buf: &[u8]) -> Option<(i32, u32)> {
    let header = buf.get(..END_FILE_MIN_BLANK_LENGTH)?;
    Some((
        BigEndian::read_i32(&header[POS_TOTAL_SIZE..]),
        BigEndian::read_u32(&header[POS_MAGIC..]),
    ))
}

/// Decodes the record at the start of `buf`; `buf` may extend past it (e.g. to the segment end).
///
/// A BLANK record is returned as [`Decoded::Blank`] after checking only its size (≥ 8). A record
/// must have a size within the smallest record and `max_record_size`, lie within `buf`, have
/// non-negative inner lengths that add up exactly to TOTALSIZE, and a UTF-8 topic; the CRCs are
/// checked as `opts` asks. Never panics, never allocates.
pub fn decode<'a>(buf: &'a [u8], opts: &DecodeOptions) -> Result<Decoded<'a>, FormatError> {
    let (declared, magic) = peek_header(buf).ok_or(FormatError::Truncated {
        needed: END_FILE_MIN_BLANK_LENGTH,
        available: buf.len(),
    })?;
    let topic_len_width = match magic {
        MAGIC_V1 => 1,
        MAGIC_V2 => 2,
        BLANK_MAGIC => {
            return u32::try_from(declared)
                .ok()
                .filter(|&size| size as usize >= END_FILE_MIN_BLANK_LENGTH)
                .map(|total_size| Decoded::Blank { total_size })
                .ok_or(FormatError::BadBlank {
                    size: i64::from(declared),
                });
        }
        found => return Err(FormatError::BadMagic { found }),
    };

    let min = MIN_V1_RECORD_LEN - 1 + topic_len_width;
    let max = opts.max_record_size;
    let total = usize::try_from(declared)
        .ok()
        .filter(|size| (min..=max).contains(size))
        .ok_or(FormatError::BadTotalSize {
            size: i64::from(declared),
            min,
            max,
        })?;
    let record = buf.get(..total).ok_or(FormatError::Truncated {
        needed: total,
        available: buf.len(),
    })?;
    let mismatch = |computed: usize| FormatError::LengthMismatch {
        declared: total,
        computed,
    };

    // total >= min covers SYSFLAG at 36..40.
    let sys_flag = BigEndian::read_i32(&record[POS_SYS_FLAG..]);
    let born_host_len = host_len(sys_flag & SYSFLAG_BORNHOST_V6 != 0);
    let store_host_len = host_len(sys_flag & SYSFLAG_STOREHOST_V6 != 0);
    // Every length check below compares the running spec-formula total with `total` before
    // reading the next field, so each read is in bounds.
    let fixed_len = FIXED_FIELDS_LEN + born_host_len + store_host_len + topic_len_width;
    if fixed_len > total {
        return Err(mismatch(fixed_len));
    }

    let body_len_pos = POS_BORN_HOST + born_host_len + 8 + store_host_len + 4 + 8;
    let body_len = read_len(record, body_len_pos, 4, "body")?;
    let with_body = fixed_len
        .checked_add(body_len)
        .ok_or(mismatch(usize::MAX))?;
    if with_body > total {
        return Err(mismatch(with_body));
    }

    let body_pos = body_len_pos + 4;
    let topic_len_pos = body_pos + body_len;
    let topic_len = read_len(record, topic_len_pos, topic_len_width, "topic")?;
    let with_topic = with_body + topic_len;
    if with_topic > total {
        return Err(mismatch(with_topic));
    }

    let topic_pos = topic_len_pos + topic_len_width;
    let properties_len_pos = topic_pos + topic_len;
    let properties_len = read_len(record, properties_len_pos, 2, "properties")?;
    let computed = with_topic + properties_len;
    if computed != total {
        return Err(mismatch(computed));
    }
    let properties_pos = properties_len_pos + 2;
    let body = &record[body_pos..body_pos + body_len];

    let mut record_crc_verified = false;
    if opts.verify_record_crc {
        match properties::crc_property(&record[properties_pos..]) {
            CrcProperty::Present(stored) => {
                let computed = masked_crc32(&record[..total - CRC32_RESERVED_LEN]);
                if stored != computed {
                    return Err(FormatError::RecordCrcMismatch { stored, computed });
                }
                record_crc_verified = true;
            }
            // Valid on its BODYCRC (checked below) and structure.
            CrcProperty::Absent => {}
            CrcProperty::Damaged => return Err(FormatError::BadCrcProperty),
        }
    }
    // A matching record CRC already covers body and BODYCRC; Java skips the body check then too.
    // Without one, the body CRC is all a record-CRC check has.
    if (opts.verify_body_crc || opts.verify_record_crc) && !record_crc_verified && !body.is_empty()
    {
        let stored = BigEndian::read_u32(&record[POS_BODY_CRC..]);
        let computed = masked_crc32(body);
        if stored != computed {
            return Err(FormatError::BodyCrcMismatch { stored, computed });
        }
    }

    let topic = std::str::from_utf8(&record[topic_pos..topic_pos + topic_len])
        .map_err(|_| FormatError::TopicNotUtf8)?;

    Ok(Decoded::Record(RecordView {
        bytes: record,
        born_host_len,
        store_host_len,
        body_pos,
        body_len,
        topic,
        properties_pos,
    }))
}

/// Reads a signed length field of `width` bytes (1, 2 or 4) at `pos`; the caller has checked the
/// bounds. Negative lengths are corruption, not huge unsigned values.
fn read_len(
    record: &[u8],
    pos: usize,
    width: usize,
    field: &'static str,
) -> Result<usize, FormatError> {
    let len = match width {
        1 => i64::from(record[pos] as i8),
        2 => i64::from(BigEndian::read_i16(&record[pos..])),
        _ => i64::from(BigEndian::read_i32(&record[pos..])),
    };
    usize::try_from(len).map_err(|_| FormatError::BadFieldLength { field, len })
}
