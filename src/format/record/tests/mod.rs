//! Unit tests of the record codec: shared fixtures and helpers here, the tests by concern in the
//! submodules.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};

use byteorder::{BigEndian, ByteOrder};

use super::layout::RECORD_HEADROOM;
use super::*;
use crate::format::java_hash;
use crate::format::properties::{self, CRC32_RESERVED_LEN, PROPERTY_SEPARATOR};

mod decode_errors;
mod encoder;
mod fuzz;
mod golden;
mod round_trip;

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

/// All checks, the record CRC only when the encoder wrote one.
fn checks_for(opts: EncodeOptions) -> DecodeOptions {
    DecodeOptions {
        verify_record_crc: opts.append_crc_property,
        ..ALL_CRCS
    }
}
