//! The encoder: [`encode`] writes QUEUEOFFSET, PHYSICALOFFSET and STORETIMESTAMP as 0 because
//! they are only known inside the append lock; [`finalize`] fills them (and the whole-record CRC)
//! in place. Also the BLANK filler record.

use std::net::{IpAddr, SocketAddr};

use byteorder::{BigEndian, ByteOrder};

use super::layout::{
    host_len, topic_len_width, FIXED_FIELDS_LEN, MAX_TOPIC_LEN, MAX_V1_TOPIC_LEN, RECORD_HEADROOM,
};
use super::*;
use crate::format::properties::{self, CRC32_RESERVED_LEN, MAX_PROPERTIES_LEN, PROPERTY_SEPARATOR};

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
