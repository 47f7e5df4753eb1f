//! Malformed input: each gives its specific error.

use super::*;

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
