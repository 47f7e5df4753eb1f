//! [`RecordView`], a validated record whose accessors are O(1) reads of its bytes, and the
//! properties dispatch reads from every record.

use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};

use byteorder::{BigEndian, ByteOrder};

use super::*;
use crate::format::{java_hash, properties, schedule};

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

/// A validated record; accessors are O(1) reads of its bytes.
#[derive(Clone, Copy)]
pub struct RecordView<'a> {
    /// Exactly TOTALSIZE bytes.
    pub(super) bytes: &'a [u8],
    pub(super) born_host_len: usize,
    pub(super) store_host_len: usize,
    pub(super) body_pos: usize,
    pub(super) body_len: usize,
    pub(super) topic: &'a str,
    pub(super) properties_pos: usize,
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
