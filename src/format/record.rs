//! The CommitLog record: encoder, validating decoder and BLANK filler (spec §1.1 – §1.8, §1.12).
//!
//! Layout (big-endian; `B`/`S` = born/store host field width, 8 for IPv4 and 20 for IPv6; `T` =
//! topic-length width, 1 for magic V1 and 2 for V2):
//!
//! ```text
//! 0 TOTALSIZE i32 | 4 MAGIC | 8 BODYCRC | 12 QUEUEID | 16 FLAG | 20 QUEUEOFFSET i64
//! 28 PHYSICALOFFSET i64 | 36 SYSFLAG | 40 BORNTIMESTAMP i64 | 48 BORNHOST (B)
//! 48+B STORETIMESTAMP i64 | 56+B STOREHOST (S) | 56+B+S RECONSUMETIMES | 60+B+S PREPARED i64
//! 68+B+S BODYLEN i32 | BODY | TOPICLEN (T) | TOPIC | PROPLEN i16 | PROPERTIES
//! total = 74 + B + S + T + body + topic + properties
//! ```
//!
//! Invariants: [`decode`] never panics and never allocates; every length it reads from the input
//! is bounds-checked with checked arithmetic before use, so a [`RecordView`] only exists for a
//! record whose fields add up exactly to its TOTALSIZE. [`encode`] writes QUEUEOFFSET,
//! PHYSICALOFFSET and STORETIMESTAMP as 0 because they are only known inside the append lock;
//! [`finalize`] fills them (and the whole-record CRC) in place.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};

use byteorder::{BigEndian, ByteOrder};

use super::java_hash;
use super::properties::{
    self, CrcProperty, CRC32_RESERVED_LEN, MAX_PROPERTIES_LEN, PROPERTY_SEPARATOR,
};
use super::schedule;

/// Magic code of a record with a 1-byte topic length (all RocketMQ versions).
pub const MAGIC_V1: u32 = 0xDAA3_20A7;
/// Magic code of a record with a 2-byte topic length (RocketMQ 5.1.0+, topics over 127 bytes).
pub const MAGIC_V2: u32 = 0xDAA3_20AB;
/// Magic code of the end-of-segment filler record.
pub const BLANK_MAGIC: u32 = 0xCBD4_3194;
/// A record never ends closer than this to its segment end; a BLANK record is 8 bytes (size + magic).
pub const END_FILE_MIN_BLANK_LENGTH: usize = 8;

/// SYSFLAG: the body is compressed.
pub const SYSFLAG_COMPRESSED: i32 = 0x1;
/// SYSFLAG: the message has several tags (informational; tag hashing is unchanged).
pub const SYSFLAG_MULTI_TAGS: i32 = 0x2;
/// SYSFLAG mask of the transaction type.
pub const SYSFLAG_TRANSACTION_MASK: i32 = 0xC;
/// Transaction type: not a transactional message.
pub const TRANSACTION_NOT_TYPE: i32 = 0;
/// Transaction type: half (prepared) message; not dispatched to a ConsumeQueue.
pub const TRANSACTION_PREPARED: i32 = 0x4;
/// Transaction type: commit of a half message.
pub const TRANSACTION_COMMIT: i32 = 0x8;
/// Transaction type: rollback of a half message; neither dispatched nor indexed.
pub const TRANSACTION_ROLLBACK: i32 = 0xC;
/// SYSFLAG: the BORNHOST field is 20 bytes (IPv6).
pub const SYSFLAG_BORNHOST_V6: i32 = 0x10;
/// SYSFLAG: the STOREHOST field is 20 bytes (IPv6).
pub const SYSFLAG_STOREHOST_V6: i32 = 0x20;

/// Offset of TOTALSIZE (i32).
pub const POS_TOTAL_SIZE: usize = 0;
/// Offset of MAGICCODE (u32).
pub const POS_MAGIC: usize = 4;
/// Offset of BODYCRC (masked CRC32 of the body).
pub const POS_BODY_CRC: usize = 8;
/// Offset of QUEUEID (i32).
pub const POS_QUEUE_ID: usize = 12;
/// Offset of FLAG (i32).
pub const POS_FLAG: usize = 16;
/// Offset of QUEUEOFFSET (i64).
pub const POS_QUEUE_OFFSET: usize = 20;
/// Offset of PHYSICALOFFSET (i64).
pub const POS_PHYSICAL_OFFSET: usize = 28;
/// Offset of SYSFLAG (i32).
pub const POS_SYS_FLAG: usize = 36;
/// Offset of BORNTIMESTAMP (i64).
pub const POS_BORN_TIMESTAMP: usize = 40;
/// Offset of BORNHOST; every later field moves with the host widths.
pub const POS_BORN_HOST: usize = 48;

/// Bytes of all fixed-width fields: everything except the two hosts, the topic-length field and
/// the three variable-length fields.
const FIXED_FIELDS_LEN: usize = 74;
/// Host field width for IPv4: 4 address bytes + port as i32.
const HOST_V4_LEN: usize = 8;
/// Host field width for IPv6: 16 address bytes + port as i32.
const HOST_V6_LEN: usize = 20;
/// Longest topic a V1 record (signed 1-byte length) can hold.
const MAX_V1_TOPIC_LEN: usize = 127;
/// Longest topic a V2 record (signed 2-byte length) can hold.
const MAX_TOPIC_LEN: usize = i16::MAX as usize;
/// Room the encoder allows on top of the body limit for headers, topic and properties (spec §1.12).
const RECORD_HEADROOM: usize = 64 * 1024;
/// Shortest possible V1 record: IPv4 hosts, empty body, topic and properties.
const MIN_V1_RECORD_LEN: usize = FIXED_FIELDS_LEN + 2 * HOST_V4_LEN + 1;
/// No valid record is shorter than this (TOTALSIZE of a V1 record with IPv4 hosts and empty
/// body, topic and properties).
pub const MIN_RECORD_LEN: usize = MIN_V1_RECORD_LEN;

/// What the encoder needs for one record.
#[derive(Clone, Copy, Debug)]
pub struct RecordFields<'a> {
    /// Topic name, stored as UTF-8; more than 127 bytes selects magic V2.
    pub topic: &'a str,
    /// Queue id within the topic.
    pub queue_id: i32,
    /// User flag, opaque to the store.
    pub flag: i32,
    /// SYSFLAG bits; the encoder overrides the two host-width bits from the host addresses.
    pub sys_flag: i32,
    /// Producer-side creation time, epoch milliseconds.
    pub born_timestamp: i64,
    /// Producer address (IPv4 → 8-byte field, IPv6 → 20-byte field).
    pub born_host: SocketAddr,
    /// Broker address (IPv4 → 8-byte field, IPv6 → 20-byte field).
    pub store_host: SocketAddr,
    /// Retry count.
    pub reconsume_times: i32,
    /// CommitLog offset of the half message for transaction commit/rollback records, else 0.
    pub prepared_transaction_offset: i64,
    /// Body bytes as stored (already compressed if SYSFLAG says so).
    pub body: &'a [u8],
    /// Encoded property text; must not contain a `__CRC32#` entry (the encoder adds its own).
    pub properties: &'a [u8],
}

/// Encoder settings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EncodeOptions {
    /// Append the 5.2+ whole-record CRC property (20 bytes) to the properties.
    pub append_crc_property: bool,
    /// Largest accepted body (`maxMessageSize`, RocketMQ default 4 MiB); a record may be up to
    /// 64 KiB longer than this.
    pub max_body_size: usize,
}

/// Where the append-time fields of an encoded record are.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EncodedLayout {
    /// Length of the whole record in bytes.
    pub total_size: usize,
    /// Offset of STORETIMESTAMP (48 + born-host width).
    pub store_timestamp_pos: usize,
    /// Offset of the property text (what the caller passed as
    /// [`RecordFields::properties`] starts here, unchanged).
    pub properties_pos: usize,
    /// The record ends with a `__CRC32#` property that [`finalize`] fills.
    pub has_crc_property: bool,
    /// For a record with a CRC property and a body of at least [`COMBINE_CRC_MIN_BODY`] bytes:
    /// where the body is and its (unmasked) CRC32, computed once for BODYCRC, so [`finalize`]
    /// need not read the body a second time for the whole-record CRC.
    pub body_crc: Option<BodyCrc>,
}

/// A record's body position, length and unmasked CRC32 (see [`EncodedLayout::body_crc`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BodyCrc {
    /// Offset of the body in the record.
    pub pos: usize,
    /// Body length in bytes.
    pub len: usize,
    /// `crc32(body)` before masking.
    pub crc: u32,
}

/// From this body size on, [`finalize`] computes the whole-record CRC from the CRCs of the bytes
/// before and after the body and the body's own CRC (`crc32_combine`, a few hundred ns) instead
/// of a second pass over the body (~0.12 ns per byte here): the combine is slower than hashing
/// a body of 1 KiB and saves ~1.7 µs on one of 16 KiB.
pub const COMBINE_CRC_MIN_BODY: usize = 4096;

/// The properties dispatch reads from every record ([`RecordView::dispatch_properties`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DispatchProperties<'a> {
    /// `TAGS`.
    pub tags: Option<&'a str>,
    /// `KEYS`, unsplit.
    pub keys: Option<&'a str>,
    /// `UNIQ_KEY`.
    pub uniq_key: Option<&'a str>,
    /// `DELAY` (a scheduled message's level: its unit's tags code is its delivery time).
    pub delay: Option<&'a str>,
    /// `TIMER_DELIVER_MS` (a scheduled message's exact delivery time).
    pub timer_deliver_ms: Option<&'a str>,
}

impl<'a> DispatchProperties<'a> {
    /// The ConsumeQueue tags code: Java hash of `TAGS`, or 0 without tags.
    pub fn tags_code(&self) -> i64 {
        self.tags.map_or(0, java_hash::tags_code)
    }

    /// `KEYS` split on spaces, empty parts skipped (what the IndexFile indexes).
    pub fn keys(&self) -> impl Iterator<Item = &'a str> + 'a {
        split_keys(self.keys)
    }
}

/// A `KEYS` value split on spaces, empty parts skipped (RocketMQ's key list).
fn split_keys(keys: Option<&str>) -> impl Iterator<Item = &str> {
    keys.unwrap_or("")
        .split(properties::KEY_SEPARATOR)
        .filter(|key| !key.is_empty())
}

/// Why a record cannot be encoded. Nothing was written that a caller should keep.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EncodeError {
    /// The topic is empty.
    #[error("topic is empty")]
    EmptyTopic,
    /// The topic does not fit the 2-byte topic-length field.
    #[error("topic is {len} bytes, more than the maximum of 32767")]
    TopicTooLong {
        /// Topic length in bytes.
        len: usize,
    },
    /// The body exceeds `max_body_size`.
    #[error("body is {len} bytes, more than the maximum of {max}")]
    BodyTooLarge {
        /// Body length in bytes.
        len: usize,
        /// The configured maximum.
        max: usize,
    },
    /// The encoded properties do not fit the 2-byte length field.
    #[error(
        "properties are {len} bytes (including any CRC property), more than the maximum of {max}"
    )]
    PropertiesTooLong {
        /// Encoded length, including the CRC property and any separator the encoder adds.
        len: usize,
        /// [`MAX_PROPERTIES_LEN`].
        max: usize,
    },
    /// The whole record exceeds `max_body_size` + 64 KiB (or `i32::MAX`).
    #[error("record would be {len} bytes, more than the maximum of {max}")]
    RecordTooLarge {
        /// Record length in bytes.
        len: usize,
        /// The limit it exceeds.
        max: usize,
    },
}

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

/// A validated record; accessors are O(1) reads of its bytes.
#[derive(Clone, Copy)]
pub struct RecordView<'a> {
    /// Exactly TOTALSIZE bytes.
    bytes: &'a [u8],
    born_host_len: usize,
    store_host_len: usize,
    body_pos: usize,
    body_len: usize,
    topic: &'a str,
    properties_pos: usize,
}

impl fmt::Debug for RecordView<'_> {
    // The derived form would dump the whole body; these fields identify a record.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RecordView")
            .field("total_size", &self.total_size())
            .field("magic", &format_args!("{:#010x}", self.magic()))
            .field("topic", &self.topic)
            .field("queue_id", &self.queue_id())
            .field("queue_offset", &self.queue_offset())
            .field("physical_offset", &self.physical_offset())
            .field("sys_flag", &format_args!("{:#x}", self.sys_flag()))
            .field("store_timestamp", &self.store_timestamp())
            .field("body_len", &self.body_len)
            .field("properties_len", &self.properties().len())
            .finish()
    }
}

impl<'a> RecordView<'a> {
    /// The whole record, TOTALSIZE bytes.
    pub fn as_bytes(&self) -> &'a [u8] {
        self.bytes
    }

    /// TOTALSIZE.
    pub fn total_size(&self) -> usize {
        self.bytes.len()
    }

    /// MAGICCODE ([`MAGIC_V1`] or [`MAGIC_V2`]).
    pub fn magic(&self) -> u32 {
        BigEndian::read_u32(&self.bytes[POS_MAGIC..])
    }

    /// BODYCRC as stored.
    pub fn body_crc(&self) -> u32 {
        BigEndian::read_u32(&self.bytes[POS_BODY_CRC..])
    }

    /// QUEUEID.
    pub fn queue_id(&self) -> i32 {
        BigEndian::read_i32(&self.bytes[POS_QUEUE_ID..])
    }

    /// FLAG.
    pub fn flag(&self) -> i32 {
        BigEndian::read_i32(&self.bytes[POS_FLAG..])
    }

    /// QUEUEOFFSET as stored.
    pub fn queue_offset(&self) -> i64 {
        BigEndian::read_i64(&self.bytes[POS_QUEUE_OFFSET..])
    }

    /// PHYSICALOFFSET as stored (not cross-checked against the record's position).
    pub fn physical_offset(&self) -> i64 {
        BigEndian::read_i64(&self.bytes[POS_PHYSICAL_OFFSET..])
    }

    /// SYSFLAG.
    pub fn sys_flag(&self) -> i32 {
        BigEndian::read_i32(&self.bytes[POS_SYS_FLAG..])
    }

    /// Transaction type: `sys_flag & SYSFLAG_TRANSACTION_MASK`.
    pub fn transaction_type(&self) -> i32 {
        self.sys_flag() & SYSFLAG_TRANSACTION_MASK
    }

    /// BORNTIMESTAMP.
    pub fn born_timestamp(&self) -> i64 {
        BigEndian::read_i64(&self.bytes[POS_BORN_TIMESTAMP..])
    }

    /// BORNHOST (the port field is truncated to 16 bits).
    pub fn born_host(&self) -> SocketAddr {
        read_host(&self.bytes[POS_BORN_HOST..POS_BORN_HOST + self.born_host_len])
    }

    /// STORETIMESTAMP.
    pub fn store_timestamp(&self) -> i64 {
        BigEndian::read_i64(&self.bytes[self.store_timestamp_pos()..])
    }

    /// STOREHOSTADDRESS (the port field is truncated to 16 bits).
    pub fn store_host(&self) -> SocketAddr {
        let pos = self.store_timestamp_pos() + 8;
        read_host(&self.bytes[pos..pos + self.store_host_len])
    }

    /// RECONSUMETIMES.
    pub fn reconsume_times(&self) -> i32 {
        BigEndian::read_i32(&self.bytes[self.reconsume_times_pos()..])
    }

    /// PREPARED TRANSACTION OFFSET.
    pub fn prepared_transaction_offset(&self) -> i64 {
        BigEndian::read_i64(&self.bytes[self.reconsume_times_pos() + 4..])
    }

    /// BODY.
    pub fn body(&self) -> &'a [u8] {
        &self.bytes[self.body_pos..self.body_pos + self.body_len]
    }

    /// TOPIC.
    pub fn topic(&self) -> &'a str {
        self.topic
    }

    /// Raw property text, including any `__CRC32#` property.
    pub fn properties(&self) -> &'a [u8] {
        &self.bytes[self.properties_pos..]
    }

    /// The value of property `name` (last occurrence wins); `None` if absent or not UTF-8.
    pub fn property(&self, name: &str) -> Option<&'a str> {
        properties::find(self.properties(), name).and_then(|v| std::str::from_utf8(v).ok())
    }

    /// TAGS, KEYS and UNIQ_KEY found in one pass over the properties (last occurrence wins, as
    /// in [`property`](Self::property)); what dispatch needs for every record.
    pub fn dispatch_properties(&self) -> DispatchProperties<'a> {
        let mut out = DispatchProperties::default();
        for (name, value) in properties::iter(self.properties()) {
            let slot = match name {
                n if n == properties::TAGS.as_bytes() => &mut out.tags,
                n if n == properties::KEYS.as_bytes() => &mut out.keys,
                n if n == properties::UNIQ_KEY.as_bytes() => &mut out.uniq_key,
                n if n == schedule::DELAY.as_bytes() => &mut out.delay,
                n if n == schedule::TIMER_DELIVER_MS.as_bytes() => &mut out.timer_deliver_ms,
                _ => continue,
            };
            *slot = std::str::from_utf8(value).ok();
        }
        out
    }

    /// The `TAGS` property.
    pub fn tags(&self) -> Option<&'a str> {
        self.property(properties::TAGS)
    }

    /// The ConsumeQueue tags code: Java hash of `TAGS`, or 0 without tags.
    pub fn tags_code(&self) -> i64 {
        self.tags().map_or(0, java_hash::tags_code)
    }

    /// The `KEYS` property split on spaces, empty parts skipped (what the IndexFile indexes).
    pub fn keys(&self) -> impl Iterator<Item = &'a str> + 'a {
        split_keys(self.property(properties::KEYS))
    }

    /// The `UNIQ_KEY` property.
    pub fn uniq_key(&self) -> Option<&'a str> {
        self.property(properties::UNIQ_KEY)
    }

    /// The stored whole-record CRC, if the properties end with a well-formed `__CRC32#` property.
    pub fn record_crc(&self) -> Option<u32> {
        properties::parse_crc_property(self.properties())
    }

    fn store_timestamp_pos(&self) -> usize {
        POS_BORN_HOST + self.born_host_len
    }

    fn reconsume_times_pos(&self) -> usize {
        self.store_timestamp_pos() + 8 + self.store_host_len
    }
}

/// Java's masked CRC32 (`UtilAll.crc32`): CRC-32/IEEE with the top bit cleared.
pub fn masked_crc32(bytes: &[u8]) -> u32 {
    crc32fast::hash(bytes) & 0x7FFF_FFFF
}

/// Length a record would have (spec formula), for callers sizing buffers:
/// 74 + B + S + T + body + topic + props, with T = 2 when the topic is over 127 bytes.
/// Saturates instead of overflowing.
pub fn record_len(
    topic_len: usize,
    body_len: usize,
    props_len: usize,
    born_v6: bool,
    store_v6: bool,
) -> usize {
    FIXED_FIELDS_LEN
        .saturating_add(host_len(born_v6))
        .saturating_add(host_len(store_v6))
        .saturating_add(topic_len_width(topic_len))
        .saturating_add(body_len)
        .saturating_add(topic_len)
        .saturating_add(props_len)
}

/// Clears `buf` and encodes the whole record into it.
///
/// Magic V1, or V2 when the topic is over 127 bytes. BODYCRC = [`masked_crc32`] of the body.
/// QUEUEOFFSET, PHYSICALOFFSET and STORETIMESTAMP are written as 0; call [`finalize`] once they
/// are known. The host-width SYSFLAG bits are set from the host addresses. With
/// `append_crc_property`, a `0x02` is added after non-empty properties that lack one, then a
/// 20-byte CRC property with placeholder digits. Does not allocate when `buf` already has
/// enough capacity.
pub fn encode(
    buf: &mut Vec<u8>,
    fields: &RecordFields<'_>,
    opts: &EncodeOptions,
) -> Result<EncodedLayout, EncodeError> {
    let topic = fields.topic.as_bytes();
    let body = fields.body;
    let props = fields.properties;
    if topic.is_empty() {
        return Err(EncodeError::EmptyTopic);
    }
    if topic.len() > MAX_TOPIC_LEN {
        return Err(EncodeError::TopicTooLong { len: topic.len() });
    }
    if body.len() > opts.max_body_size {
        return Err(EncodeError::BodyTooLarge {
            len: body.len(),
            max: opts.max_body_size,
        });
    }
    let add_separator =
        opts.append_crc_property && props.last().is_some_and(|&b| b != PROPERTY_SEPARATOR);
    let props_len = props
        .len()
        .saturating_add(usize::from(add_separator))
        .saturating_add(if opts.append_crc_property {
            CRC32_RESERVED_LEN
        } else {
            0
        });
    if props_len > MAX_PROPERTIES_LEN {
        return Err(EncodeError::PropertiesTooLong {
            len: props_len,
            max: MAX_PROPERTIES_LEN,
        });
    }
    let born_v6 = fields.born_host.is_ipv6();
    let store_v6 = fields.store_host.is_ipv6();
    let total = record_len(topic.len(), body.len(), props_len, born_v6, store_v6);
    // TOTALSIZE is an i32 on disk whatever the configured limit says.
    let max_total = opts
        .max_body_size
        .saturating_add(RECORD_HEADROOM)
        .min(i32::MAX as usize);
    if total > max_total {
        return Err(EncodeError::RecordTooLarge {
            len: total,
            max: max_total,
        });
    }

    let mut sys_flag = fields.sys_flag & !(SYSFLAG_BORNHOST_V6 | SYSFLAG_STOREHOST_V6);
    if born_v6 {
        sys_flag |= SYSFLAG_BORNHOST_V6;
    }
    if store_v6 {
        sys_flag |= SYSFLAG_STOREHOST_V6;
    }
    let v2 = topic.len() > MAX_V1_TOPIC_LEN;

    // The limits above bound every length below i32::MAX (lengths) and i16::MAX (topic, props),
    // so the `as` conversions are exact.
    let body_crc = crc32fast::hash(body);
    // The fields before BODY go through a stack buffer: one copy into `buf` instead of a
    // length check and copy per field (a fifth of a small put's encode time before).
    let mut head = Header::default();
    head.put(&(total as i32).to_be_bytes());
    head.put(&(if v2 { MAGIC_V2 } else { MAGIC_V1 }).to_be_bytes());
    head.put(&(body_crc & 0x7FFF_FFFF).to_be_bytes());
    head.put(&fields.queue_id.to_be_bytes());
    head.put(&fields.flag.to_be_bytes());
    head.put(&[0; 16]); // QUEUEOFFSET, PHYSICALOFFSET
    head.put(&sys_flag.to_be_bytes());
    head.put(&fields.born_timestamp.to_be_bytes());
    head.put_host(&fields.born_host);
    head.put(&[0; 8]); // STORETIMESTAMP
    head.put_host(&fields.store_host);
    head.put(&fields.reconsume_times.to_be_bytes());
    head.put(&fields.prepared_transaction_offset.to_be_bytes());
    head.put(&(body.len() as i32).to_be_bytes());
    buf.clear();
    buf.reserve(total);
    buf.extend_from_slice(head.bytes());
    let body_pos = buf.len();
    buf.extend_from_slice(body);
    if v2 {
        buf.extend_from_slice(&(topic.len() as i16).to_be_bytes());
    } else {
        buf.push(topic.len() as u8);
    }
    buf.extend_from_slice(topic);
    buf.extend_from_slice(&(props_len as i16).to_be_bytes());
    let properties_pos = buf.len();
    buf.extend_from_slice(props);
    if add_separator {
        buf.push(PROPERTY_SEPARATOR);
    }
    if opts.append_crc_property {
        let start = buf.len();
        buf.resize(start + CRC32_RESERVED_LEN, 0);
        properties::write_crc_property(&mut buf[start..], 0);
    }
    debug_assert_eq!(buf.len(), total);

    Ok(EncodedLayout {
        total_size: total,
        store_timestamp_pos: POS_BORN_HOST + host_len(born_v6),
        properties_pos,
        has_crc_property: opts.append_crc_property,
        body_crc: (opts.append_crc_property && body.len() >= COMBINE_CRC_MIN_BODY).then_some(
            BodyCrc {
                pos: body_pos,
                len: body.len(),
                crc: body_crc,
            },
        ),
    })
}

/// Sets QUEUEOFFSET, PHYSICALOFFSET and STORETIMESTAMP in a record produced by [`encode`], then,
/// if the layout has a CRC property, writes the whole-record CRC (masked CRC32 of all but the
/// last 20 bytes) into it. The CRC is computed last because it covers the other three fields.
///
/// # Panics
///
/// If `record.len() != layout.total_size` (the record and layout do not belong together).
pub fn finalize(
    record: &mut [u8],
    layout: &EncodedLayout,
    queue_offset: i64,
    physical_offset: i64,
    store_timestamp: i64,
) {
    assert_eq!(
        record.len(),
        layout.total_size,
        "record length does not match its encoded layout"
    );
    BigEndian::write_i64(&mut record[POS_QUEUE_OFFSET..], queue_offset);
    BigEndian::write_i64(&mut record[POS_PHYSICAL_OFFSET..], physical_offset);
    BigEndian::write_i64(&mut record[layout.store_timestamp_pos..], store_timestamp);
    if layout.has_crc_property {
        let crc_pos = layout.total_size - CRC32_RESERVED_LEN;
        let crc = match layout.body_crc {
            Some(body) => {
                // crc(head ‖ body ‖ tail) without reading the body again.
                let body_end = body.pos + body.len;
                let mut hasher = crc32fast::Hasher::new();
                hasher.update(&record[..body.pos]);
                hasher.combine(&crc32fast::Hasher::new_with_initial_len(
                    body.crc,
                    body.len as u64,
                ));
                hasher.update(&record[body_end..crc_pos]);
                hasher.finalize() & 0x7FFF_FFFF
            }
            None => masked_crc32(&record[..crc_pos]),
        };
        properties::write_crc_property(&mut record[crc_pos..], crc);
    }
}

/// The 8-byte BLANK record: TOTALSIZE = `total` (bytes left in the segment), MAGIC = BLANK.
pub fn blank_record(total: u32) -> [u8; 8] {
    let mut blank = [0u8; END_FILE_MIN_BLANK_LENGTH];
    BigEndian::write_u32(&mut blank[POS_TOTAL_SIZE..], total);
    BigEndian::write_u32(&mut blank[POS_MAGIC..], BLANK_MAGIC);
    blank
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

fn host_len(v6: bool) -> usize {
    if v6 {
        HOST_V6_LEN
    } else {
        HOST_V4_LEN
    }
}

fn topic_len_width(topic_len: usize) -> usize {
    if topic_len > MAX_V1_TOPIC_LEN {
        2
    } else {
        1
    }
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

/// Parses a host field: 4 or 16 address bytes, then the port as an i32 of which Java only ever
/// writes the low 16 bits.
fn read_host(field: &[u8]) -> SocketAddr {
    let (addr, port) = field.split_at(field.len() - 4);
    let port = (BigEndian::read_i32(port) & 0xFFFF) as u16;
    if addr.len() == 16 {
        let mut octets = [0u8; 16];
        octets.copy_from_slice(addr);
        SocketAddr::V6(SocketAddrV6::new(Ipv6Addr::from(octets), port, 0, 0))
    } else {
        let mut octets = [0u8; 4];
        octets.copy_from_slice(addr);
        SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::from(octets), port))
    }
}

/// The fields before BODY of one record, at most 72 bytes plus two IPv6 hosts.
struct Header {
    bytes: [u8; 72 + 2 * 20],
    len: usize,
}

impl Default for Header {
    fn default() -> Self {
        Header {
            bytes: [0; 72 + 2 * 20],
            len: 0,
        }
    }
}

impl Header {
    #[inline(always)]
    fn put(&mut self, field: &[u8]) {
        self.bytes[self.len..self.len + field.len()].copy_from_slice(field);
        self.len += field.len();
    }

    #[inline(always)]
    fn put_host(&mut self, host: &SocketAddr) {
        match host.ip() {
            IpAddr::V4(ip) => self.put(&ip.octets()),
            IpAddr::V6(ip) => self.put(&ip.octets()),
        }
        self.put(&i32::from(host.port()).to_be_bytes());
    }

    fn bytes(&self) -> &[u8] {
        &self.bytes[..self.len]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put_i32(buf: &mut Vec<u8>, value: i32) {
        let mut bytes = [0u8; 4];
        BigEndian::write_i32(&mut bytes, value);
        buf.extend_from_slice(&bytes);
    }

    fn put_u32(buf: &mut Vec<u8>, value: u32) {
        let mut bytes = [0u8; 4];
        BigEndian::write_u32(&mut bytes, value);
        buf.extend_from_slice(&bytes);
    }
    use proptest::prelude::*;

    const MAX_BODY: usize = 4 * 1024 * 1024;
    const PLAIN: EncodeOptions = EncodeOptions {
        append_crc_property: false,
        max_body_size: MAX_BODY,
    };
    const WITH_CRC: EncodeOptions = EncodeOptions {
        append_crc_property: true,
        max_body_size: MAX_BODY,
    };
    /// Java's recovery checks: body CRC, no property CRC.
    const BODY_CRC_ONLY: DecodeOptions = DecodeOptions {
        verify_body_crc: true,
        verify_record_crc: false,
        max_record_size: MAX_BODY + RECORD_HEADROOM,
    };
    const ALL_CRCS: DecodeOptions = DecodeOptions {
        verify_body_crc: true,
        verify_record_crc: true,
        max_record_size: MAX_BODY + RECORD_HEADROOM,
    };
    const NO_CRCS: DecodeOptions = DecodeOptions {
        verify_body_crc: false,
        verify_record_crc: false,
        max_record_size: MAX_BODY + RECORD_HEADROOM,
    };

    const FOO_BAR_BODY: &[u8] = b"Once, there was a chance for me!";
    const FOO_BAR_PROPS: &[u8] = b"TAGS\x01TAG1\x02KEYS\x011600000000000\x02";
    /// masked CRC32 of FOO_BAR_BODY, from zlib (independent of crc32fast).
    const FOO_BAR_BODY_CRC: u32 = 151_131_488;

    fn v4(a: u8, b: u8, c: u8, d: u8, port: u16) -> SocketAddr {
        SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::new(a, b, c, d), port))
    }

    fn v6(segments: [u16; 8], port: u16) -> SocketAddr {
        let [a, b, c, d, e, f, g, h] = segments;
        SocketAddr::V6(SocketAddrV6::new(
            Ipv6Addr::new(a, b, c, d, e, f, g, h),
            port,
            0,
            0,
        ))
    }

    /// The message of RocketMQ's ReputMessageServiceTest (spec §1.11).
    fn foo_bar_fields() -> RecordFields<'static> {
        RecordFields {
            topic: "FooBar",
            queue_id: 3,
            flag: 7,
            sys_flag: 0,
            born_timestamp: 1_600_000_000_000,
            born_host: v4(127, 0, 0, 1, 1234),
            store_host: v4(10, 0, 0, 2, 10911),
            reconsume_times: 1,
            prepared_transaction_offset: 0,
            body: FOO_BAR_BODY,
            properties: FOO_BAR_PROPS,
        }
    }

    /// FooBar finalized with queue offset 9, physical offset 1422, store time 1600000000005.
    fn foo_bar_record(opts: &EncodeOptions) -> Vec<u8> {
        encode_finalized(&foo_bar_fields(), opts, 9, 1422, 1_600_000_000_005)
    }

    fn encode_finalized(
        fields: &RecordFields<'_>,
        opts: &EncodeOptions,
        queue_offset: i64,
        physical_offset: i64,
        store_timestamp: i64,
    ) -> Vec<u8> {
        let mut buf = Vec::new();
        let layout = encode(&mut buf, fields, opts).expect("encodable");
        finalize(
            &mut buf,
            &layout,
            queue_offset,
            physical_offset,
            store_timestamp,
        );
        buf
    }

    fn view<'a>(bytes: &'a [u8], opts: &DecodeOptions) -> RecordView<'a> {
        match decode(bytes, opts) {
            Ok(Decoded::Record(view)) => view,
            other => panic!("expected a record, got {other:?}"),
        }
    }

    /// Calls every accessor; used on whatever the fuzz tests manage to decode.
    fn touch_every_accessor(record: &RecordView<'_>) {
        let _ = (record.as_bytes(), record.total_size(), record.magic());
        let _ = (record.body_crc(), record.queue_id(), record.flag());
        let _ = (record.queue_offset(), record.physical_offset());
        let _ = (record.sys_flag(), record.transaction_type());
        let _ = (record.born_timestamp(), record.born_host());
        let _ = (record.store_timestamp(), record.store_host());
        let _ = (
            record.reconsume_times(),
            record.prepared_transaction_offset(),
        );
        let _ = (record.body(), record.topic(), record.properties());
        let _ = (record.property("X"), record.tags(), record.tags_code());
        let _ = (
            record.keys().count(),
            record.uniq_key(),
            record.record_crc(),
        );
        let _ = format!("{record:?}");
    }

    fn assert_fields_round_trip(
        record: &RecordView<'_>,
        fields: &RecordFields<'_>,
        offsets: (i64, i64, i64),
    ) {
        let (queue_offset, physical_offset, store_timestamp) = offsets;
        assert_eq!(record.topic(), fields.topic);
        assert_eq!(record.queue_id(), fields.queue_id);
        assert_eq!(record.flag(), fields.flag);
        let host_bits = SYSFLAG_BORNHOST_V6 | SYSFLAG_STOREHOST_V6;
        assert_eq!(record.sys_flag() & !host_bits, fields.sys_flag & !host_bits);
        assert_eq!(
            record.sys_flag() & SYSFLAG_BORNHOST_V6 != 0,
            fields.born_host.is_ipv6()
        );
        assert_eq!(
            record.sys_flag() & SYSFLAG_STOREHOST_V6 != 0,
            fields.store_host.is_ipv6()
        );
        assert_eq!(record.born_timestamp(), fields.born_timestamp);
        assert_eq!(record.born_host(), fields.born_host);
        assert_eq!(record.store_host(), fields.store_host);
        assert_eq!(record.reconsume_times(), fields.reconsume_times);
        assert_eq!(
            record.prepared_transaction_offset(),
            fields.prepared_transaction_offset
        );
        assert_eq!(record.body(), fields.body);
        assert_eq!(record.body_crc(), masked_crc32(fields.body));
        assert_eq!(record.queue_offset(), queue_offset);
        assert_eq!(record.physical_offset(), physical_offset);
        assert_eq!(record.store_timestamp(), store_timestamp);
        assert!(record.properties().starts_with(fields.properties));
    }

    // ---- golden bytes, written field by field from the spec's §1.1 table ----

    #[test]
    fn golden_v1_record_matches_hand_encoded_bytes() {
        let parts: &[&[u8]] = &[
            &[0x00, 0x00, 0x00, 0x9E],       // TOTALSIZE 158 = 91 + 32 + 6 + 29
            &[0xDA, 0xA3, 0x20, 0xA7],       // MAGICCODE V1
            &[0x09, 0x02, 0x15, 0x60],       // BODYCRC 151131488
            &[0x00, 0x00, 0x00, 0x03],       // QUEUEID 3
            &[0x00, 0x00, 0x00, 0x07],       // FLAG 7
            &[0, 0, 0, 0, 0, 0, 0, 0x09],    // QUEUEOFFSET 9
            &[0, 0, 0, 0, 0, 0, 0x05, 0x8E], // PHYSICALOFFSET 1422
            &[0, 0, 0, 0],                   // SYSFLAG
            &[0x00, 0x00, 0x01, 0x74, 0x87, 0x6E, 0x80, 0x00], // BORNTIMESTAMP 1600000000000
            &[127, 0, 0, 1, 0x00, 0x00, 0x04, 0xD2], // BORNHOST 127.0.0.1:1234
            &[0x00, 0x00, 0x01, 0x74, 0x87, 0x6E, 0x80, 0x05], // STORETIMESTAMP 1600000000005
            &[10, 0, 0, 2, 0x00, 0x00, 0x2A, 0x9F], // STOREHOSTADDRESS 10.0.0.2:10911
            &[0, 0, 0, 1],                   // RECONSUMETIMES 1
            &[0, 0, 0, 0, 0, 0, 0, 0],       // PREPARED TRANSACTION OFFSET
            &[0, 0, 0, 0x20],                // BODY LENGTH 32
            b"Once, there was a chance for me!", // BODY
            &[6],                            // TOPIC LENGTH (i8)
            b"FooBar",                       // TOPIC
            &[0x00, 0x1D],                   // PROPERTIES LENGTH 29
            b"TAGS\x01TAG1\x02KEYS\x011600000000000\x02", // PROPERTIES
        ];
        let expected = parts.concat();
        assert_eq!(expected.len(), 158);

        let encoded = foo_bar_record(&PLAIN);
        assert_eq!(encoded, expected);
        assert_eq!(BigEndian::read_i32(&encoded[84..]), 32, "BODY LENGTH at 84");
        assert_eq!(&encoded[88..120], FOO_BAR_BODY, "BODY at 88");
        assert_eq!(record_len(6, 32, 29, false, false), 158);
    }

    #[test]
    fn golden_v1_record_decodes_to_its_fields() {
        let bytes = foo_bar_record(&PLAIN);
        let record = view(&bytes, &BODY_CRC_ONLY);
        assert_eq!(record.total_size(), 158);
        assert_eq!(record.magic(), MAGIC_V1);
        assert_eq!(record.body_crc(), FOO_BAR_BODY_CRC);
        assert_fields_round_trip(&record, &foo_bar_fields(), (9, 1422, 1_600_000_000_005));
        assert_eq!(record.properties(), FOO_BAR_PROPS);
        assert_eq!(record.tags(), Some("TAG1"));
        assert_eq!(record.tags_code(), java_hash::tags_code("TAG1"));
        assert_eq!(record.keys().collect::<Vec<_>>(), ["1600000000000"]);
        assert_eq!(record.uniq_key(), None);
        assert_eq!(record.record_crc(), None);
    }

    #[test]
    fn golden_v2_record_for_topic_longer_than_127_bytes() {
        let topic = "T".repeat(128);
        let parts: &[&[u8]] = &[
            &[0x00, 0x00, 0x00, 0xDC],       // TOTALSIZE 220 = 74 + 8 + 8 + 2 + 128
            &[0xDA, 0xA3, 0x20, 0xAB],       // MAGICCODE V2
            &[0, 0, 0, 0],                   // BODYCRC of the empty body
            &[0, 0, 0, 1],                   // QUEUEID 1
            &[0, 0, 0, 0],                   // FLAG
            &[0, 0, 0, 0, 0, 0, 0, 0],       // QUEUEOFFSET 0
            &[0, 0, 0, 0, 0, 0, 0x10, 0x00], // PHYSICALOFFSET 4096
            &[0, 0, 0, 0],                   // SYSFLAG
            &[0, 0, 0, 0, 0, 0, 0, 1],       // BORNTIMESTAMP 1
            &[1, 2, 3, 4, 0, 0, 0, 5],       // BORNHOST 1.2.3.4:5
            &[0, 0, 0, 0, 0, 0, 0, 2],       // STORETIMESTAMP 2
            &[5, 6, 7, 8, 0, 0, 0, 9],       // STOREHOSTADDRESS 5.6.7.8:9
            &[0, 0, 0, 0],                   // RECONSUMETIMES
            &[0, 0, 0, 0, 0, 0, 0, 0],       // PREPARED TRANSACTION OFFSET
            &[0, 0, 0, 0],                   // BODY LENGTH 0
            &[0x00, 0x80],                   // TOPIC LENGTH 128 (i16)
            &[b'T'; 128],                    // TOPIC
            &[0x00, 0x00],                   // PROPERTIES LENGTH 0
        ];
        let expected = parts.concat();
        let fields = RecordFields {
            topic: &topic,
            queue_id: 1,
            flag: 0,
            sys_flag: 0,
            born_timestamp: 1,
            born_host: v4(1, 2, 3, 4, 5),
            store_host: v4(5, 6, 7, 8, 9),
            reconsume_times: 0,
            prepared_transaction_offset: 0,
            body: b"",
            properties: b"",
        };
        let encoded = encode_finalized(&fields, &PLAIN, 0, 4096, 2);
        assert_eq!(encoded, expected);
        assert_eq!(record_len(128, 0, 0, false, false), 220);

        let record = view(&encoded, &BODY_CRC_ONLY);
        assert_eq!(record.magic(), MAGIC_V2);
        assert_fields_round_trip(&record, &fields, (0, 4096, 2));
    }

    #[test]
    fn topic_of_127_bytes_still_uses_v1() {
        let topic = "T".repeat(127);
        let fields = RecordFields {
            topic: &topic,
            ..foo_bar_fields()
        };
        let encoded = encode_finalized(&fields, &PLAIN, 0, 0, 0);
        assert_eq!(BigEndian::read_u32(&encoded[POS_MAGIC..]), MAGIC_V1);
        assert_eq!(encoded[88 + 32], 0x7F, "1-byte topic length 127");
        assert_eq!(view(&encoded, &BODY_CRC_ONLY).topic(), topic);
    }

    #[test]
    fn golden_ipv6_born_host_record_has_20_byte_host_field() {
        let parts: &[&[u8]] = &[
            &[0x00, 0x00, 0x00, 0x72], // TOTALSIZE 114 = 74 + 20 + 8 + 1 + 2 + 2 + 7
            &[0xDA, 0xA3, 0x20, 0xA7], // MAGICCODE V1
            &[0x58, 0x93, 0x2A, 0xAC], // BODYCRC of "hi" (1486039724)
            &[0, 0, 0, 0],             // QUEUEID
            &[0, 0, 0, 0],             // FLAG
            &[0, 0, 0, 0, 0, 0, 0, 0], // QUEUEOFFSET
            &[0, 0, 0, 0, 0, 0, 0, 0], // PHYSICALOFFSET
            &[0, 0, 0, 0x12],          // SYSFLAG: MULTI_TAGS kept, BORNHOST_V6 set by the encoder
            &[0, 0, 0, 0, 0, 0, 0x03, 0xE8], // BORNTIMESTAMP 1000
            &[
                0x20, 0x01, 0x0D, 0xB8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, // 2001:db8::1
                0x00, 0x00, 0x1F, 0x90, // port 8080
            ], // BORNHOST (20 bytes)
            &[0, 0, 0, 0, 0, 0, 0x07, 0xD0], // STORETIMESTAMP 2000, at 48 + 20
            &[10, 0, 0, 2, 0x00, 0x00, 0x2A, 0x9F], // STOREHOSTADDRESS 10.0.0.2:10911
            &[0, 0, 0, 0],             // RECONSUMETIMES
            &[0, 0, 0, 0, 0, 0, 0, 0], // PREPARED TRANSACTION OFFSET
            &[0, 0, 0, 2],             // BODY LENGTH 2, at 68 + 20 + 8
            b"hi",                     // BODY
            &[2],                      // TOPIC LENGTH
            b"T6",                     // TOPIC
            &[0x00, 0x07],             // PROPERTIES LENGTH 7
            b"TAGS\x01x\x02",          // PROPERTIES
        ];
        let expected = parts.concat();
        let fields = RecordFields {
            topic: "T6",
            queue_id: 0,
            flag: 0,
            sys_flag: SYSFLAG_MULTI_TAGS,
            born_timestamp: 1000,
            born_host: v6([0x2001, 0x0db8, 0, 0, 0, 0, 0, 1], 8080),
            store_host: v4(10, 0, 0, 2, 10911),
            reconsume_times: 0,
            prepared_transaction_offset: 0,
            body: b"hi",
            properties: b"TAGS\x01x\x02",
        };
        let mut buf = Vec::new();
        let layout = encode(&mut buf, &fields, &PLAIN).unwrap();
        assert_eq!(
            layout,
            EncodedLayout {
                total_size: 114,
                store_timestamp_pos: 68,
                properties_pos: 107,
                has_crc_property: false,
                body_crc: None,
            }
        );
        finalize(&mut buf, &layout, 0, 0, 2000);
        assert_eq!(buf, expected);
        assert_eq!(record_len(2, 2, 7, true, false), 114);

        let record = view(&buf, &BODY_CRC_ONLY);
        assert_fields_round_trip(&record, &fields, (0, 0, 2000));
        assert_eq!(record.sys_flag(), 0x12);
    }

    #[test]
    fn golden_record_with_crc_property() {
        let parts: &[&[u8]] = &[
            &[0x00, 0x00, 0x00, 0xB2],       // TOTALSIZE 178 = 158 + 20
            &[0xDA, 0xA3, 0x20, 0xA7],       // MAGICCODE V1
            &[0x09, 0x02, 0x15, 0x60],       // BODYCRC 151131488
            &[0x00, 0x00, 0x00, 0x03],       // QUEUEID 3
            &[0x00, 0x00, 0x00, 0x07],       // FLAG 7
            &[0, 0, 0, 0, 0, 0, 0, 0x09],    // QUEUEOFFSET 9
            &[0, 0, 0, 0, 0, 0, 0x05, 0x8E], // PHYSICALOFFSET 1422
            &[0, 0, 0, 0],                   // SYSFLAG
            &[0x00, 0x00, 0x01, 0x74, 0x87, 0x6E, 0x80, 0x00], // BORNTIMESTAMP
            &[127, 0, 0, 1, 0x00, 0x00, 0x04, 0xD2], // BORNHOST
            &[0x00, 0x00, 0x01, 0x74, 0x87, 0x6E, 0x80, 0x05], // STORETIMESTAMP
            &[10, 0, 0, 2, 0x00, 0x00, 0x2A, 0x9F], // STOREHOSTADDRESS
            &[0, 0, 0, 1],                   // RECONSUMETIMES 1
            &[0, 0, 0, 0, 0, 0, 0, 0],       // PREPARED TRANSACTION OFFSET
            &[0, 0, 0, 0x20],                // BODY LENGTH 32
            b"Once, there was a chance for me!", // BODY
            &[6],                            // TOPIC LENGTH
            b"FooBar",                       // TOPIC
            &[0x00, 0x31],                   // PROPERTIES LENGTH 49 = 29 + 20
            b"TAGS\x01TAG1\x02KEYS\x011600000000000\x02", // PROPERTIES
            // CRC of bytes [0, 158) = 103454666 (zlib), digits least significant first.
            b"__CRC32#\x016664543010\x02",
        ];
        let expected = parts.concat();
        let encoded = foo_bar_record(&WITH_CRC);
        assert_eq!(encoded, expected);

        let record = view(&encoded, &ALL_CRCS);
        assert_eq!(record.record_crc(), Some(103_454_666));
        assert_eq!(record.record_crc(), Some(masked_crc32(&encoded[..158])));
        // The CRC property is an ordinary property to Java's parser.
        assert_eq!(record.property(properties::CRC32), Some("6664543010"));
        assert_eq!(record.tags(), Some("TAG1"));
    }

    #[test]
    fn encode_leaves_append_time_fields_zero_and_crc_digits_placeholder() {
        let mut buf = Vec::new();
        let layout = encode(&mut buf, &foo_bar_fields(), &WITH_CRC).unwrap();
        assert_eq!(layout.total_size, 178);
        assert_eq!(layout.store_timestamp_pos, 56);
        assert!(layout.has_crc_property);
        assert_eq!(&buf[POS_QUEUE_OFFSET..POS_SYS_FLAG], &[0u8; 16]);
        assert_eq!(&buf[56..64], &[0u8; 8]);
        assert_eq!(&buf[158..], b"__CRC32#\x010000000000\x02");
    }

    #[test]
    fn old_style_properties_without_trailing_separator_give_157_bytes() {
        // RocketMQ 4.9.1 – 5.1.4 drop the final 0x02 (spec §1.11).
        let fields = RecordFields {
            properties: &FOO_BAR_PROPS[..28],
            ..foo_bar_fields()
        };
        let encoded = encode_finalized(&fields, &PLAIN, 9, 1422, 1_600_000_000_005);
        assert_eq!(encoded.len(), 157);
        // Only TOTALSIZE, PROPERTIES LENGTH and the last byte differ from the 5.2+ form.
        assert_eq!(encoded[4..127], foo_bar_record(&PLAIN)[4..127]);
        assert_eq!(BigEndian::read_i32(&encoded[POS_TOTAL_SIZE..]), 157);
        assert_eq!(BigEndian::read_i16(&encoded[127..]), 28);
        let record = view(&encoded, &BODY_CRC_ONLY);
        assert_eq!(record.tags(), Some("TAG1"));
        assert_eq!(record.keys().collect::<Vec<_>>(), ["1600000000000"]);
    }

    #[test]
    fn crc_property_gets_a_separator_after_old_style_properties() {
        let fields = RecordFields {
            properties: &FOO_BAR_PROPS[..28],
            ..foo_bar_fields()
        };
        let encoded = encode_finalized(&fields, &WITH_CRC, 9, 1422, 1_600_000_000_005);
        assert_eq!(encoded, foo_bar_record(&WITH_CRC));
    }

    #[test]
    fn crc_property_alone_when_there_are_no_properties() {
        let fields = RecordFields {
            properties: b"",
            ..foo_bar_fields()
        };
        let encoded = encode_finalized(&fields, &WITH_CRC, 0, 0, 0);
        let record = view(&encoded, &ALL_CRCS);
        assert_eq!(record.properties().len(), CRC32_RESERVED_LEN);
        assert_eq!(record.total_size(), 91 + 32 + 6 + 20);
        assert_eq!(record.tags(), None);
    }

    // ---- encoder behaviour ----

    #[test]
    fn encode_sets_host_width_flags_from_addresses_and_keeps_other_bits() {
        let flags = SYSFLAG_COMPRESSED | TRANSACTION_COMMIT;
        let cases = [
            (v4(1, 1, 1, 1, 1), v4(2, 2, 2, 2, 2), 0),
            (v6([1; 8], 1), v4(2, 2, 2, 2, 2), SYSFLAG_BORNHOST_V6),
            (v4(1, 1, 1, 1, 1), v6([2; 8], 2), SYSFLAG_STOREHOST_V6),
            (
                v6([1; 8], 1),
                v6([2; 8], 2),
                SYSFLAG_BORNHOST_V6 | SYSFLAG_STOREHOST_V6,
            ),
        ];
        for (born_host, store_host, host_bits) in cases {
            let fields = RecordFields {
                // Stale host bits from the caller must not survive.
                sys_flag: flags | SYSFLAG_BORNHOST_V6 | SYSFLAG_STOREHOST_V6,
                born_host,
                store_host,
                ..foo_bar_fields()
            };
            for opts in [PLAIN, WITH_CRC] {
                let encoded = encode_finalized(&fields, &opts, 4, 5, 6);
                let record = view(&encoded, &checks_for(opts));
                assert_eq!(record.sys_flag(), flags | host_bits);
                assert_eq!(record.transaction_type(), TRANSACTION_COMMIT);
                assert_eq!(record.born_host(), born_host);
                assert_eq!(record.store_host(), store_host);
                assert_eq!(record.store_timestamp(), 6);
                assert_eq!(record.reconsume_times(), 1);
                assert_eq!(record.body(), FOO_BAR_BODY);
                assert_eq!(
                    record.total_size(),
                    record_len(
                        6,
                        32,
                        record.properties().len(),
                        born_host.is_ipv6(),
                        store_host.is_ipv6()
                    )
                );
            }
        }
    }

    /// All checks, the record CRC only when the encoder wrote one.
    fn checks_for(opts: EncodeOptions) -> DecodeOptions {
        DecodeOptions {
            verify_record_crc: opts.append_crc_property,
            ..ALL_CRCS
        }
    }

    #[test]
    fn encode_reuses_buffer_capacity_without_allocating() {
        let mut buf = Vec::with_capacity(1024);
        buf.extend_from_slice(b"stale bytes from the previous record");
        let ptr = buf.as_ptr();
        let layout = encode(&mut buf, &foo_bar_fields(), &WITH_CRC).unwrap();
        assert_eq!(buf.as_ptr(), ptr);
        assert_eq!(buf.capacity(), 1024);
        assert_eq!(buf.len(), layout.total_size);
        finalize(&mut buf, &layout, 9, 1422, 1_600_000_000_005);
        assert_eq!(buf, foo_bar_record(&WITH_CRC));
    }

    #[test]
    fn encode_rejects_empty_topic() {
        let fields = RecordFields {
            topic: "",
            ..foo_bar_fields()
        };
        assert_eq!(
            encode(&mut Vec::new(), &fields, &PLAIN),
            Err(EncodeError::EmptyTopic)
        );
    }

    #[test]
    fn encode_rejects_topic_longer_than_i16() {
        let topic = "t".repeat(32768);
        let fields = RecordFields {
            topic: &topic,
            ..foo_bar_fields()
        };
        assert_eq!(
            encode(&mut Vec::new(), &fields, &PLAIN),
            Err(EncodeError::TopicTooLong { len: 32768 })
        );
    }

    #[test]
    fn encode_accepts_body_of_max_size_and_rejects_one_more_byte() {
        let opts = EncodeOptions {
            append_crc_property: true,
            max_body_size: 100,
        };
        let body = [7u8; 101];
        let fields = RecordFields {
            body: &body[..100],
            ..foo_bar_fields()
        };
        assert!(encode(&mut Vec::new(), &fields, &opts).is_ok());
        let fields = RecordFields {
            body: &body,
            ..foo_bar_fields()
        };
        assert_eq!(
            encode(&mut Vec::new(), &fields, &opts),
            Err(EncodeError::BodyTooLarge { len: 101, max: 100 })
        );
    }

    #[test]
    fn encode_limits_properties_to_32767_bytes() {
        let props = |len: usize| {
            let mut p = b"K\x01".to_vec();
            p.resize(len - 1, b'v');
            p.push(PROPERTY_SEPARATOR);
            p
        };
        let encode_props = |p: &[u8], opts: &EncodeOptions| {
            let fields = RecordFields {
                properties: p,
                ..foo_bar_fields()
            };
            encode(&mut Vec::new(), &fields, opts)
        };
        assert!(encode_props(&props(32767), &PLAIN).is_ok());
        assert_eq!(
            encode_props(&props(32768), &PLAIN),
            Err(EncodeError::PropertiesTooLong {
                len: 32768,
                max: 32767
            })
        );
        // The CRC property takes 20 of the 32767 bytes...
        assert!(encode_props(&props(32747), &WITH_CRC).is_ok());
        assert_eq!(
            encode_props(&props(32748), &WITH_CRC),
            Err(EncodeError::PropertiesTooLong {
                len: 32768,
                max: 32767
            })
        );
        // ...and the separator added before it one more.
        let mut old_style = props(32747);
        old_style.pop();
        old_style.push(b'v');
        assert_eq!(
            encode_props(&old_style, &WITH_CRC),
            Err(EncodeError::PropertiesTooLong {
                len: 32768,
                max: 32767
            })
        );
    }

    #[test]
    fn encode_limits_record_to_max_body_plus_64_kib() {
        // RocketMQ's testPutLongMessage: a maximal body with a 32767-byte topic is too long.
        let opts = EncodeOptions {
            append_crc_property: false,
            max_body_size: 1000,
        };
        let body = [1u8; 1000];
        let mut props = b"K\x01".to_vec();
        props.resize(32767, b'v');
        let short_topic = "t".repeat(127);
        let fields = RecordFields {
            topic: &short_topic,
            body: &body,
            properties: &props,
            ..foo_bar_fields()
        };
        let layout = encode(&mut Vec::new(), &fields, &opts).unwrap();
        assert_eq!(layout.total_size, 74 + 16 + 1 + 1000 + 127 + 32767);

        let long_topic = "t".repeat(32767);
        let fields = RecordFields {
            topic: &long_topic,
            ..fields
        };
        assert_eq!(
            encode(&mut Vec::new(), &fields, &opts),
            Err(EncodeError::RecordTooLarge {
                len: 74 + 16 + 2 + 1000 + 32767 + 32767,
                max: 1000 + 65536
            })
        );
    }

    #[test]
    fn encode_error_messages_carry_the_numbers() {
        let err = EncodeError::BodyTooLarge { len: 11, max: 10 };
        assert_eq!(
            err.to_string(),
            "body is 11 bytes, more than the maximum of 10"
        );
    }

    #[test]
    fn combined_record_crc_equals_a_second_pass_over_the_record() {
        for body_len in [
            COMBINE_CRC_MIN_BODY - 1,
            COMBINE_CRC_MIN_BODY,
            16 * 1024,
            100_003,
        ] {
            let body: Vec<u8> = (0..body_len).map(|i| (i * 31 + 7) as u8).collect();
            let fields = RecordFields {
                body: &body,
                ..foo_bar_fields()
            };
            let mut buf = Vec::new();
            let layout = encode(&mut buf, &fields, &WITH_CRC).unwrap();
            assert_eq!(
                layout.body_crc.is_some(),
                body_len >= COMBINE_CRC_MIN_BODY,
                "{body_len}"
            );
            finalize(&mut buf, &layout, 5, 1 << 33, 1_700_000_000_000);
            let crc_pos = buf.len() - CRC32_RESERVED_LEN;
            let stored = properties::parse_crc_property(&buf[crc_pos - 1..]);
            assert_eq!(stored, Some(masked_crc32(&buf[..crc_pos])), "{body_len}");
        }
    }

    #[test]
    #[should_panic(expected = "does not match its encoded layout")]
    fn finalize_rejects_a_record_of_another_length() {
        let mut buf = Vec::new();
        let layout = encode(&mut buf, &foo_bar_fields(), &PLAIN).unwrap();
        finalize(&mut buf[..100], &layout, 0, 0, 0);
    }

    // ---- round trips ----

    #[test]
    fn every_variant_round_trips() {
        let long_topic = "%RETRY%".repeat(40);
        let topics = ["FooBar", long_topic.as_str()];
        let hosts = [
            v4(192, 168, 0, 1, 65535),
            v6([0xfe80, 0, 0, 0, 1, 2, 3, 4], 0),
        ];
        let props: &[&[u8]] = &[b"", FOO_BAR_PROPS, &FOO_BAR_PROPS[..28]];
        for topic in topics {
            for born_host in hosts {
                for store_host in hosts {
                    for &properties in props {
                        for opts in [PLAIN, WITH_CRC] {
                            let fields = RecordFields {
                                topic,
                                queue_id: i32::MAX,
                                flag: -1,
                                sys_flag: TRANSACTION_PREPARED,
                                born_timestamp: i64::MIN,
                                born_host,
                                store_host,
                                reconsume_times: 16,
                                prepared_transaction_offset: i64::MAX,
                                body: b"\x00\x01\x02",
                                properties,
                            };
                            let encoded = encode_finalized(&fields, &opts, -1, 1 << 40, i64::MAX);
                            let record = view(&encoded, &checks_for(opts));
                            assert_fields_round_trip(&record, &fields, (-1, 1 << 40, i64::MAX));
                            assert_eq!(record.magic() == MAGIC_V2, topic.len() > 127);
                            assert_eq!(record.record_crc().is_some(), opts.append_crc_property);
                            assert_eq!(record.transaction_type(), TRANSACTION_PREPARED);
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn decode_ignores_bytes_after_the_record() {
        let mut bytes = foo_bar_record(&WITH_CRC);
        bytes.extend_from_slice(&[0xAB; 50]);
        let record = view(&bytes, &ALL_CRCS);
        assert_eq!(record.total_size(), 178);
        assert_eq!(record.as_bytes(), &bytes[..178]);
    }

    #[test]
    fn accessors_read_keys_tags_and_uniq_key() {
        let fields = RecordFields {
            properties: b"KEYS\x01 k1  k2 \x02UNIQ_KEY\x01ABC\x02TAGS\x01TagA\x02",
            ..foo_bar_fields()
        };
        let encoded = encode_finalized(&fields, &WITH_CRC, 0, 0, 0);
        let record = view(&encoded, &ALL_CRCS);
        assert_eq!(record.keys().collect::<Vec<_>>(), ["k1", "k2"]);
        assert_eq!(record.uniq_key(), Some("ABC"));
        assert_eq!(record.tags(), Some("TagA"));
        assert_eq!(record.tags_code(), 2_598_919);
        assert_eq!(record.property("MISSING"), None);
    }

    #[test]
    fn record_without_tags_has_tags_code_zero_and_no_keys() {
        let fields = RecordFields {
            properties: b"UNIQ_KEY\x01A\x02",
            ..foo_bar_fields()
        };
        let encoded = encode_finalized(&fields, &PLAIN, 0, 0, 0);
        let record = view(&encoded, &BODY_CRC_ONLY);
        assert_eq!(record.tags(), None);
        assert_eq!(record.tags_code(), 0);
        assert_eq!(record.keys().count(), 0);
    }

    #[test]
    fn non_utf8_property_value_reads_as_absent() {
        let fields = RecordFields {
            properties: b"TAGS\x01\xFF\xFE\x02",
            ..foo_bar_fields()
        };
        let encoded = encode_finalized(&fields, &PLAIN, 0, 0, 0);
        let record = view(&encoded, &BODY_CRC_ONLY);
        assert_eq!(record.tags(), None);
        assert_eq!(record.tags_code(), 0);
    }

    #[test]
    fn port_field_is_truncated_to_16_bits() {
        let mut bytes = foo_bar_record(&PLAIN);
        // Java never writes these, but a decoder must not choke on them.
        BigEndian::write_i32(&mut bytes[52..], 0x0001_04D2);
        BigEndian::write_i32(&mut bytes[68..], -1);
        let record = view(&bytes, &BODY_CRC_ONLY);
        assert_eq!(record.born_host().port(), 1234);
        assert_eq!(record.store_host().port(), 65535);
    }

    #[test]
    fn debug_output_names_the_record_without_dumping_the_body() {
        let bytes = foo_bar_record(&PLAIN);
        let text = format!("{:?}", view(&bytes, &BODY_CRC_ONLY));
        assert!(text.contains("FooBar"), "{text}");
        assert!(text.contains("1422"), "{text}");
        assert!(!text.contains("79, 110, 99, 101"), "{text}");
    }

    // ---- BLANK and header peek ----

    #[test]
    fn blank_record_is_size_then_blank_magic() {
        assert_eq!(
            blank_record(1000),
            [0x00, 0x00, 0x03, 0xE8, 0xCB, 0xD4, 0x31, 0x94]
        );
    }

    #[test]
    fn blank_decodes_without_reading_past_its_header() {
        // A BLANK claims the rest of the segment, which need not be in the buffer.
        let blank = blank_record(1000);
        assert!(matches!(
            decode(&blank, &ALL_CRCS),
            Ok(Decoded::Blank { total_size: 1000 })
        ));
        assert!(matches!(
            decode(&blank_record(8), &ALL_CRCS),
            Ok(Decoded::Blank { total_size: 8 })
        ));
    }

    #[test]
    fn blank_smaller_than_its_header_is_rejected() {
        assert_eq!(
            decode(&blank_record(7), &ALL_CRCS).unwrap_err(),
            FormatError::BadBlank { size: 7 }
        );
        assert_eq!(
            decode(&blank_record(0), &ALL_CRCS).unwrap_err(),
            FormatError::BadBlank { size: 0 }
        );
        assert_eq!(
            decode(&blank_record(u32::MAX), &ALL_CRCS).unwrap_err(),
            FormatError::BadBlank { size: -1 }
        );
    }

    #[test]
    fn peek_header_reads_size_and_magic() {
        let bytes = foo_bar_record(&PLAIN);
        assert_eq!(peek_header(&bytes), Some((158, MAGIC_V1)));
        assert_eq!(peek_header(&blank_record(64)), Some((64, BLANK_MAGIC)));
        assert_eq!(peek_header(&bytes[..7]), None);
    }

    // ---- malformed input: each gives its specific error ----

    #[test]
    fn every_prefix_of_a_record_is_truncated() {
        for opts in [PLAIN, WITH_CRC] {
            let bytes = foo_bar_record(&opts);
            for len in 0..bytes.len() {
                let expected = if len < 8 {
                    FormatError::Truncated {
                        needed: 8,
                        available: len,
                    }
                } else {
                    FormatError::Truncated {
                        needed: bytes.len(),
                        available: len,
                    }
                };
                assert_eq!(decode(&bytes[..len], &ALL_CRCS).unwrap_err(), expected);
            }
        }
    }

    #[test]
    fn unknown_magic_is_rejected() {
        let mut bytes = foo_bar_record(&PLAIN);
        BigEndian::write_u32(&mut bytes[POS_MAGIC..], 0xDAA3_20A8);
        assert_eq!(
            decode(&bytes, &NO_CRCS).unwrap_err(),
            FormatError::BadMagic { found: 0xDAA3_20A8 }
        );
    }

    #[test]
    fn zero_filled_area_is_bad_magic() {
        // The normal end of a partly written segment.
        assert_eq!(
            decode(&[0u8; 64], &NO_CRCS).unwrap_err(),
            FormatError::BadMagic { found: 0 }
        );
    }

    #[test]
    fn total_size_below_smallest_record_is_rejected() {
        let mut bytes = foo_bar_record(&PLAIN);
        BigEndian::write_i32(&mut bytes[POS_TOTAL_SIZE..], 90);
        assert_eq!(
            decode(&bytes, &NO_CRCS).unwrap_err(),
            FormatError::BadTotalSize {
                size: 90,
                min: 91,
                max: NO_CRCS.max_record_size
            }
        );
        // A V2 record is one byte longer at minimum.
        BigEndian::write_u32(&mut bytes[POS_MAGIC..], MAGIC_V2);
        BigEndian::write_i32(&mut bytes[POS_TOTAL_SIZE..], 91);
        assert!(matches!(
            decode(&bytes, &NO_CRCS).unwrap_err(),
            FormatError::BadTotalSize {
                size: 91,
                min: 92,
                ..
            }
        ));
    }

    #[test]
    fn negative_total_size_is_rejected() {
        let mut bytes = foo_bar_record(&PLAIN);
        BigEndian::write_i32(&mut bytes[POS_TOTAL_SIZE..], i32::MIN);
        assert!(matches!(
            decode(&bytes, &NO_CRCS).unwrap_err(),
            FormatError::BadTotalSize {
                size: -2_147_483_648,
                ..
            }
        ));
    }

    #[test]
    fn total_size_above_the_limit_is_rejected() {
        let bytes = foo_bar_record(&PLAIN);
        let opts = DecodeOptions {
            max_record_size: 157,
            ..NO_CRCS
        };
        assert_eq!(
            decode(&bytes, &opts).unwrap_err(),
            FormatError::BadTotalSize {
                size: 158,
                min: 91,
                max: 157
            }
        );
        let opts = DecodeOptions {
            max_record_size: 158,
            ..NO_CRCS
        };
        assert!(decode(&bytes, &opts).is_ok());
    }

    #[test]
    fn total_size_past_the_buffer_is_truncated() {
        let mut bytes = foo_bar_record(&PLAIN);
        BigEndian::write_i32(&mut bytes[POS_TOTAL_SIZE..], i32::MAX);
        assert_eq!(
            decode(&bytes, &NO_CRCS).unwrap_err(),
            FormatError::BadTotalSize {
                size: i64::from(i32::MAX),
                min: 91,
                max: NO_CRCS.max_record_size
            }
        );
        BigEndian::write_i32(&mut bytes[POS_TOTAL_SIZE..], 159);
        assert_eq!(
            decode(&bytes, &NO_CRCS).unwrap_err(),
            FormatError::Truncated {
                needed: 159,
                available: 158
            }
        );
    }

    #[test]
    fn total_size_disagreeing_with_fields_is_length_mismatch() {
        let mut bytes = foo_bar_record(&PLAIN);
        bytes.push(0);
        BigEndian::write_i32(&mut bytes[POS_TOTAL_SIZE..], 159);
        assert_eq!(
            decode(&bytes, &NO_CRCS).unwrap_err(),
            FormatError::LengthMismatch {
                declared: 159,
                computed: 158
            }
        );
        BigEndian::write_i32(&mut bytes[POS_TOTAL_SIZE..], 157);
        let err = decode(&bytes, &NO_CRCS).unwrap_err();
        assert_eq!(
            err,
            FormatError::LengthMismatch {
                declared: 157,
                computed: 158
            }
        );
        assert_eq!(
            err.to_string(),
            "declared total size 157 but fields add up to 158"
        );
    }

    #[test]
    fn negative_body_length_is_rejected() {
        let mut bytes = foo_bar_record(&PLAIN);
        for len in [-1, i32::MIN] {
            BigEndian::write_i32(&mut bytes[84..], len);
            assert_eq!(
                decode(&bytes, &NO_CRCS).unwrap_err(),
                FormatError::BadFieldLength {
                    field: "body",
                    len: i64::from(len)
                }
            );
        }
    }

    #[test]
    fn body_length_past_the_record_is_length_mismatch() {
        let mut bytes = foo_bar_record(&PLAIN);
        BigEndian::write_i32(&mut bytes[84..], i32::MAX);
        assert_eq!(
            decode(&bytes, &NO_CRCS).unwrap_err(),
            FormatError::LengthMismatch {
                declared: 158,
                computed: 91 + i32::MAX as usize
            }
        );
        BigEndian::write_i32(&mut bytes[84..], 68);
        assert_eq!(
            decode(&bytes, &NO_CRCS).unwrap_err(),
            FormatError::LengthMismatch {
                declared: 158,
                computed: 159
            }
        );
    }

    #[test]
    fn negative_v1_topic_length_is_rejected() {
        let mut bytes = foo_bar_record(&PLAIN);
        for byte in 0x80..=0xFFu8 {
            bytes[120] = byte;
            assert_eq!(
                decode(&bytes, &NO_CRCS).unwrap_err(),
                FormatError::BadFieldLength {
                    field: "topic",
                    len: i64::from(byte as i8)
                }
            );
        }
    }

    #[test]
    fn negative_v2_topic_length_is_rejected() {
        let topic = "T".repeat(200);
        let fields = RecordFields {
            topic: &topic,
            ..foo_bar_fields()
        };
        let mut bytes = encode_finalized(&fields, &PLAIN, 0, 0, 0);
        assert_eq!(BigEndian::read_i16(&bytes[120..]), 200);
        BigEndian::write_i16(&mut bytes[120..], i16::MIN);
        assert_eq!(
            decode(&bytes, &NO_CRCS).unwrap_err(),
            FormatError::BadFieldLength {
                field: "topic",
                len: -32768
            }
        );
    }

    #[test]
    fn topic_length_past_the_record_is_length_mismatch() {
        let mut bytes = foo_bar_record(&PLAIN);
        bytes[120] = 127;
        assert_eq!(
            decode(&bytes, &NO_CRCS).unwrap_err(),
            FormatError::LengthMismatch {
                declared: 158,
                computed: 91 + 32 + 127
            }
        );
    }

    #[test]
    fn negative_properties_length_is_rejected() {
        let mut bytes = foo_bar_record(&PLAIN);
        BigEndian::write_i16(&mut bytes[127..], -1);
        assert_eq!(
            decode(&bytes, &NO_CRCS).unwrap_err(),
            FormatError::BadFieldLength {
                field: "properties",
                len: -1
            }
        );
    }

    #[test]
    fn properties_length_off_by_one_is_length_mismatch() {
        let mut bytes = foo_bar_record(&PLAIN);
        BigEndian::write_i16(&mut bytes[127..], 30);
        assert_eq!(
            decode(&bytes, &NO_CRCS).unwrap_err(),
            FormatError::LengthMismatch {
                declared: 158,
                computed: 159
            }
        );
        BigEndian::write_i16(&mut bytes[127..], 28);
        assert_eq!(
            decode(&bytes, &NO_CRCS).unwrap_err(),
            FormatError::LengthMismatch {
                declared: 158,
                computed: 157
            }
        );
    }

    #[test]
    fn host_width_flag_not_matching_the_fields_is_rejected() {
        let mut bytes = foo_bar_record(&PLAIN);
        bytes[39] |= SYSFLAG_BORNHOST_V6 as u8;
        assert!(decode(&bytes, &NO_CRCS).is_err());
    }

    #[test]
    fn declared_size_too_small_for_ipv6_hosts_is_length_mismatch() {
        // 91 bytes pass the size check, but two IPv6 hosts need 74 + 40 + 1 = 115.
        let mut bytes = foo_bar_record(&PLAIN);
        BigEndian::write_i32(&mut bytes[POS_TOTAL_SIZE..], 91);
        bytes[39] |= (SYSFLAG_BORNHOST_V6 | SYSFLAG_STOREHOST_V6) as u8;
        assert_eq!(
            decode(&bytes, &NO_CRCS).unwrap_err(),
            FormatError::LengthMismatch {
                declared: 91,
                computed: 115
            }
        );
    }

    #[test]
    fn flipped_body_byte_is_body_crc_mismatch() {
        let mut bytes = foo_bar_record(&PLAIN);
        bytes[88] ^= 0x01;
        assert_eq!(
            decode(&bytes, &BODY_CRC_ONLY).unwrap_err(),
            FormatError::BodyCrcMismatch {
                stored: FOO_BAR_BODY_CRC,
                computed: masked_crc32(&bytes[88..120])
            }
        );
        // Java only checks when asked to.
        assert!(decode(&bytes, &NO_CRCS).is_ok());
    }

    #[test]
    fn empty_body_skips_body_crc_like_java() {
        let fields = RecordFields {
            body: b"",
            ..foo_bar_fields()
        };
        let mut bytes = encode_finalized(&fields, &PLAIN, 0, 0, 0);
        BigEndian::write_u32(&mut bytes[POS_BODY_CRC..], 12345);
        assert!(decode(&bytes, &BODY_CRC_ONLY).is_ok());
    }

    #[test]
    fn non_utf8_topic_is_rejected() {
        let mut bytes = foo_bar_record(&PLAIN);
        bytes[121] = 0xFF;
        assert_eq!(
            decode(&bytes, &BODY_CRC_ONLY).unwrap_err(),
            FormatError::TopicNotUtf8
        );
    }

    #[test]
    fn a_record_without_the_crc_property_is_checked_by_its_body_crc() {
        let mut bytes = foo_bar_record(&PLAIN);
        assert!(
            decode(&bytes, &ALL_CRCS).is_ok(),
            "RocketMQ 4.x records are valid"
        );
        // Even when only the record CRC was asked for, BODYCRC stands in for it.
        let record_only = DecodeOptions {
            verify_body_crc: false,
            ..ALL_CRCS
        };
        BigEndian::write_u32(&mut bytes[POS_BODY_CRC..], 12345);
        assert!(matches!(
            decode(&bytes, &record_only),
            Err(FormatError::BodyCrcMismatch { .. })
        ));
    }

    #[test]
    fn a_damaged_crc_property_name_is_damage_not_absence() {
        let good = foo_bar_record(&WITH_CRC);
        let name_at = good.len() - CRC32_RESERVED_LEN;
        assert_eq!(&good[name_at..name_at + 8], b"__CRC32#");
        for pos in name_at..name_at + 9 {
            let mut bytes = good.clone();
            bytes[pos] ^= 0x04;
            assert_eq!(
                decode(&bytes, &ALL_CRCS).unwrap_err(),
                FormatError::BadCrcProperty,
                "flipped byte {pos}"
            );
        }
    }

    #[test]
    fn malformed_crc_digits_are_bad_crc_property() {
        let mut bytes = foo_bar_record(&WITH_CRC);
        bytes[170] = b'x';
        assert_eq!(
            decode(&bytes, &ALL_CRCS).unwrap_err(),
            FormatError::BadCrcProperty
        );
        // Without record-CRC verification the property is just text.
        assert!(decode(&bytes, &BODY_CRC_ONLY).is_ok());
    }

    #[test]
    fn wrong_crc_digits_are_record_crc_mismatch() {
        let mut bytes = foo_bar_record(&WITH_CRC);
        properties::write_crc_property(&mut bytes[158..], 123);
        assert_eq!(
            decode(&bytes, &ALL_CRCS).unwrap_err(),
            FormatError::RecordCrcMismatch {
                stored: 123,
                computed: 103_454_666
            }
        );
    }

    #[test]
    fn record_crc_covers_the_append_time_fields() {
        let mut bytes = foo_bar_record(&WITH_CRC);
        // A torn finalize: store timestamp changed after the CRC was written.
        BigEndian::write_i64(&mut bytes[56..], 1_600_000_000_006);
        assert!(matches!(
            decode(&bytes, &ALL_CRCS).unwrap_err(),
            FormatError::RecordCrcMismatch { .. }
        ));
    }

    #[test]
    fn any_single_flipped_byte_fails_record_crc_verification() {
        let good = foo_bar_record(&WITH_CRC);
        for pos in 0..good.len() {
            for mask in [0x01, 0x80, 0xFF] {
                let mut bytes = good.clone();
                bytes[pos] ^= mask;
                assert!(
                    decode(&bytes, &ALL_CRCS).is_err(),
                    "flip {mask:#04x} at byte {pos} went undetected"
                );
            }
        }
    }

    #[test]
    fn zeroed_tail_of_a_crc_record_is_detected() {
        // A torn write that never reached the record's last bytes.
        let good = foo_bar_record(&WITH_CRC);
        for torn_from in 8..good.len() {
            let mut bytes = good.clone();
            bytes[torn_from..].fill(0);
            assert!(decode(&bytes, &ALL_CRCS).is_err(), "torn from {torn_from}");
        }
    }

    // ---- never panic ----

    fn arb_host() -> impl Strategy<Value = SocketAddr> {
        prop_oneof![
            (any::<[u8; 4]>(), any::<u16>())
                .prop_map(|(ip, port)| SocketAddr::V4(SocketAddrV4::new(ip.into(), port))),
            (any::<[u8; 16]>(), any::<u16>()).prop_map(|(ip, port)| {
                SocketAddr::V6(SocketAddrV6::new(ip.into(), port, 0, 0))
            }),
        ]
    }

    fn arb_properties() -> impl Strategy<Value = Vec<u8>> {
        (
            prop::collection::vec(("[A-Z_]{1,10}", "[^\\x01\\x02]{1,30}"), 0..6),
            any::<bool>(),
        )
            .prop_map(|(entries, trailing)| {
                let mut text = Vec::new();
                for (name, value) in &entries {
                    properties::append_property(&mut text, name, value);
                }
                if !trailing {
                    text.pop();
                }
                text
            })
    }

    /// An owned [`RecordFields`] plus encoder choice and append-time values, for proptest.
    #[derive(Clone, Debug)]
    struct ArbRecord {
        topic: String,
        queue_id: i32,
        flag: i32,
        sys_flag: i32,
        born_timestamp: i64,
        born_host: SocketAddr,
        store_host: SocketAddr,
        reconsume_times: i32,
        prepared_transaction_offset: i64,
        body: Vec<u8>,
        properties: Vec<u8>,
        opts: EncodeOptions,
        /// Queue offset, physical offset, store timestamp.
        offsets: (i64, i64, i64),
    }

    impl ArbRecord {
        fn fields(&self) -> RecordFields<'_> {
            RecordFields {
                topic: &self.topic,
                queue_id: self.queue_id,
                flag: self.flag,
                sys_flag: self.sys_flag,
                born_timestamp: self.born_timestamp,
                born_host: self.born_host,
                store_host: self.store_host,
                reconsume_times: self.reconsume_times,
                prepared_transaction_offset: self.prepared_transaction_offset,
                body: &self.body,
                properties: &self.properties,
            }
        }

        fn encode_finalized(&self) -> Vec<u8> {
            let (q, p, t) = self.offsets;
            encode_finalized(&self.fields(), &self.opts, q, p, t)
        }
    }

    prop_compose! {
        fn arb_record()(
            topic in "[a-zA-Z0-9_%|-]{1,300}",
            ints in any::<(i32, i32, i32, i32)>(),
            born_timestamp in any::<i64>(),
            born_host in arb_host(),
            store_host in arb_host(),
            prepared_transaction_offset in any::<i64>(),
            body in prop::collection::vec(any::<u8>(), 0..512),
            properties in arb_properties(),
            append_crc_property in any::<bool>(),
            offsets in any::<(i64, i64, i64)>(),
        ) -> ArbRecord {
            let (queue_id, flag, sys_flag, reconsume_times) = ints;
            ArbRecord {
                topic, queue_id, flag, sys_flag, born_timestamp, born_host, store_host,
                reconsume_times, prepared_transaction_offset, body, properties,
                opts: EncodeOptions { append_crc_property, max_body_size: MAX_BODY },
                offsets,
            }
        }
    }

    /// A valid finalized record (with or without CRC property) for mutation tests.
    fn arb_record_bytes() -> impl Strategy<Value = Vec<u8>> {
        arb_record().prop_map(|r| r.encode_finalized())
    }

    fn decode_with_every_option_set(bytes: &[u8]) {
        for verify_body_crc in [false, true] {
            for verify_record_crc in [false, true] {
                for max_record_size in [0, 200, MAX_BODY] {
                    let opts = DecodeOptions {
                        verify_body_crc,
                        verify_record_crc,
                        max_record_size,
                    };
                    if let Ok(Decoded::Record(record)) = decode(bytes, &opts) {
                        assert!(record.total_size() <= bytes.len());
                        touch_every_accessor(&record);
                    }
                }
            }
        }
    }

    proptest! {
        #[test]
        fn random_records_round_trip(r in arb_record()) {
            let fields = r.fields();
            let mut buf = Vec::new();
            let layout = encode(&mut buf, &fields, &r.opts).unwrap();
            prop_assert_eq!(layout.total_size, buf.len());
            let (q, p, t) = r.offsets;
            finalize(&mut buf, &layout, q, p, t);
            let record = view(&buf, &checks_for(r.opts));
            assert_fields_round_trip(&record, &fields, r.offsets);
            prop_assert_eq!(record.magic() == MAGIC_V2, r.topic.len() > 127);
            prop_assert_eq!(
                record.total_size(),
                record_len(
                    r.topic.len(),
                    r.body.len(),
                    record.properties().len(),
                    r.born_host.is_ipv6(),
                    r.store_host.is_ipv6()
                )
            );
            prop_assert_eq!(record.record_crc().is_some(), r.opts.append_crc_property);
            let expected: Vec<_> = properties::iter(&r.properties).collect();
            let parsed: Vec<_> = properties::iter(record.properties()).take(expected.len()).collect();
            prop_assert_eq!(parsed, expected);
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..400)) {
            decode_with_every_option_set(&bytes);
            let _ = peek_header(&bytes);
        }

        #[test]
        fn arbitrary_bytes_behind_a_plausible_header_never_panic(
            v2 in any::<bool>(),
            size in 0i32..400,
            sys_flag in any::<i32>(),
            tail in prop::collection::vec(any::<u8>(), 0..400),
        ) {
            let mut bytes = Vec::new();
            put_i32(&mut bytes, size);
            put_u32(&mut bytes, if v2 { MAGIC_V2 } else { MAGIC_V1 });
            bytes.extend_from_slice(&tail);
            if bytes.len() >= 40 {
                BigEndian::write_i32(&mut bytes[POS_SYS_FLAG..], sys_flag);
            }
            decode_with_every_option_set(&bytes);
        }

        #[test]
        fn mutated_records_never_panic(
            bytes in arb_record_bytes(),
            mutations in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..6),
            cut in any::<prop::sample::Index>(),
            do_cut in any::<bool>(),
        ) {
            let mut bytes = bytes;
            for (index, value) in mutations {
                let pos = index.index(bytes.len());
                bytes[pos] = value;
            }
            if do_cut {
                bytes.truncate(cut.index(bytes.len()));
            }
            decode_with_every_option_set(&bytes);
        }

        #[test]
        fn single_byte_flip_is_always_detected_with_record_crc(
            bytes in arb_record_bytes(),
            index in any::<prop::sample::Index>(),
            mask in 1u8..=255,
        ) {
            prop_assume!(properties::parse_crc_property(view(&bytes, &NO_CRCS).properties()).is_some());
            let mut bytes = bytes;
            let pos = index.index(bytes.len());
            bytes[pos] ^= mask;
            prop_assert!(decode(&bytes, &ALL_CRCS).is_err());
        }
    }
}
