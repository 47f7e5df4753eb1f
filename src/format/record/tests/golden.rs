//! Golden bytes, written field by field from the spec's §1.1 table.

use super::*;

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
