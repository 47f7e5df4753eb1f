//! The message property text stored in every CommitLog record (spec §1.6, §1.7).
//!
//! The text is `name 0x01 value 0x02` repeated, UTF-8. We always write the trailing `0x02`
//! (RocketMQ ≤ 4.9.0 and ≥ 5.2.0 style); readers accept the 4.9.1 – 5.1.4 style without it.
//! Parsing works on bytes: `0x01` and `0x02` never occur inside a multi-byte UTF-8 sequence, so
//! splitting bytes gives the same entries as Java's parser splitting chars.
//!
//! RocketMQ 5.2+ can end the text with a 20-byte whole-record CRC property `__CRC32#` whose ten
//! digits are written least significant first; [`write_crc_property`] and
//! [`parse_crc_property`] handle that entry.

/// Separates a property name from its value.
pub const NAME_VALUE_SEPARATOR: u8 = 1;
/// Terminates a property entry.
pub const PROPERTY_SEPARATOR: u8 = 2;
/// Space-separated business keys, indexed by the IndexFile.
pub const KEYS: &str = "KEYS";
/// The message tag; its Java hash is the ConsumeQueue tags code.
pub const TAGS: &str = "TAGS";
/// The client-generated unique message id, indexed by the IndexFile.
pub const UNIQ_KEY: &str = "UNIQ_KEY";
/// The 5.2+ whole-record CRC property name.
pub const CRC32: &str = "__CRC32#";
/// Separates the keys inside the `KEYS` value.
pub const KEY_SEPARATOR: char = ' ';
/// Max encoded property length (Java i16 length field).
pub const MAX_PROPERTIES_LEN: usize = 32767;
/// Bytes the CRC property takes at the end of the properties: "__CRC32#" 0x01 + 10 digits + 0x02 = 20.
pub const CRC32_RESERVED_LEN: usize = 20;

/// Number of decimal digits in the CRC property value.
const CRC32_DIGITS: usize = 10;
/// Offset of the first digit inside the CRC property.
const CRC32_DIGITS_POS: usize = CRC32.len() + 1;

/// Iterator over the `(name, value)` entries of a property text, as returned by [`iter`].
#[derive(Clone, Debug)]
pub struct PropertyIter<'a> {
    rest: &'a [u8],
}

impl<'a> Iterator for PropertyIter<'a> {
    type Item = (&'a [u8], &'a [u8]);

    fn next(&mut self) -> Option<Self::Item> {
        while !self.rest.is_empty() {
            let segment = match self.rest.iter().position(|&b| b == PROPERTY_SEPARATOR) {
                Some(end) => {
                    let (segment, tail) = self.rest.split_at(end);
                    self.rest = &tail[1..];
                    segment
                }
                None => std::mem::take(&mut self.rest),
            };
            // Java skips a segment unless its first 0x01 leaves both name and value non-empty.
            if let Some(sep) = segment.iter().position(|&b| b == NAME_VALUE_SEPARATOR) {
                if sep > 0 && sep + 1 < segment.len() {
                    return Some((&segment[..sep], &segment[sep + 1..]));
                }
            }
        }
        None
    }
}

/// Why a name or value cannot be stored: the name must be non-empty, the value non-empty (Java's
/// parser drops empty values), and neither may contain a `0x01` or `0x02` separator byte.
pub fn check_property(name: &str, value: &str) -> Result<(), &'static str> {
    let has_separator = |s: &str| {
        s.bytes()
            .any(|b| b == NAME_VALUE_SEPARATOR || b == PROPERTY_SEPARATOR)
    };
    if name.is_empty() {
        Err("property name is empty")
    } else if value.is_empty() {
        Err("property value is empty")
    } else if has_separator(name) {
        Err("property name contains a 0x01 or 0x02 separator byte")
    } else if has_separator(value) {
        Err("property value contains a 0x01 or 0x02 separator byte")
    } else {
        Ok(())
    }
}

/// Appends `name 0x01 value 0x02` (no checking; call [`check_property`] first).
pub fn append_property(buf: &mut Vec<u8>, name: &str, value: &str) {
    buf.extend_from_slice(name.as_bytes());
    buf.push(NAME_VALUE_SEPARATOR);
    buf.extend_from_slice(value.as_bytes());
    buf.push(PROPERTY_SEPARATOR);
}

/// Iterates `(name, value)` byte slices exactly as Java's `string2messageProperties` parses:
/// split on `0x02`; in each segment the first `0x01` must be strictly inside it (non-empty name
/// and value), otherwise the segment is skipped. A value may contain further `0x01` bytes.
pub fn iter(bytes: &[u8]) -> PropertyIter<'_> {
    PropertyIter { rest: bytes }
}

/// Whether `bytes` is a well-formed property list in either separator style: every entry
/// `name 0x01 value`, names non-empty, entries separated by 0x02 (an optional trailing 0x02),
/// and no NUL byte anywhere (Java writes strings; a region zeroed by a torn write has NULs).
pub fn is_well_formed(bytes: &[u8]) -> bool {
    if bytes.contains(&0) {
        return false;
    }
    let body = bytes.strip_suffix(&[PROPERTY_SEPARATOR]).unwrap_or(bytes);
    if body.is_empty() {
        return true;
    }
    body.split(|&b| b == PROPERTY_SEPARATOR).all(|entry| {
        let mut parts = entry.splitn(2, |&b| b == NAME_VALUE_SEPARATOR);
        let name = parts.next().unwrap_or(&[]);
        parts.next().is_some() && !name.is_empty()
    })
}

/// The value of `name` (last occurrence wins, as Java's map overwrite does).
pub fn find<'a>(bytes: &'a [u8], name: &str) -> Option<&'a [u8]> {
    iter(bytes)
        .filter(|(n, _)| *n == name.as_bytes())
        .last()
        .map(|(_, v)| v)
}

/// Writes the 20-byte CRC property into `dst`: `__CRC32#` 0x01, the decimal CRC least
/// significant digit first, zero-padded on the right to 10 chars, 0x02. E.g. 123 gives
/// `"3210000000"`.
///
/// # Panics
///
/// If `dst.len()` is not [`CRC32_RESERVED_LEN`]; only internal callers with a fixed-size slot
/// use this.
pub fn write_crc_property(dst: &mut [u8], crc: u32) {
    assert_eq!(
        dst.len(),
        CRC32_RESERVED_LEN,
        "CRC property slot must be {CRC32_RESERVED_LEN} bytes"
    );
    dst[..CRC32.len()].copy_from_slice(CRC32.as_bytes());
    dst[CRC32.len()] = NAME_VALUE_SEPARATOR;
    let mut rest = crc;
    for digit in &mut dst[CRC32_DIGITS_POS..CRC32_DIGITS_POS + CRC32_DIGITS] {
        // u32::MAX has 10 digits, so the slot always holds the whole value.
        *digit = b'0' + (rest % 10) as u8;
        rest /= 10;
    }
    dst[CRC32_RESERVED_LEN - 1] = PROPERTY_SEPARATOR;
}

/// The value of the CRC property if `properties` ends with a well-formed one: `__CRC32#`, 0x01,
/// 10 ASCII digits, 0x02, starting at the beginning of the properties or right after a 0x02
/// (otherwise those bytes are the tail of another entry's value). Digits are read last to first
/// (`x = x * 10 + d`); a non-digit or a value above `u32::MAX` gives `None`.
pub fn parse_crc_property(properties: &[u8]) -> Option<u32> {
    let start = properties.len().checked_sub(CRC32_RESERVED_LEN)?;
    if start > 0 && properties[start - 1] != PROPERTY_SEPARATOR {
        return None;
    }
    let entry = &properties[start..];
    if &entry[..CRC32.len()] != CRC32.as_bytes()
        || entry[CRC32.len()] != NAME_VALUE_SEPARATOR
        || entry[CRC32_RESERVED_LEN - 1] != PROPERTY_SEPARATOR
    {
        return None;
    }
    let mut value: u64 = 0;
    for &digit in entry[CRC32_DIGITS_POS..CRC32_DIGITS_POS + CRC32_DIGITS]
        .iter()
        .rev()
    {
        if !digit.is_ascii_digit() {
            return None;
        }
        // Ten digits are below 10^10, far from u64 overflow.
        value = value * 10 + u64::from(digit - b'0');
    }
    u32::try_from(value).ok()
}

/// What the end of a record's properties says about its whole-record CRC: the one rule that
/// recovery, reads with CRC checking and `verify` share (issue 14).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CrcProperty {
    /// A well-formed `__CRC32#` entry ends the properties; its value.
    Present(u32),
    /// No CRC property, and nothing that looks like a damaged one: a record as RocketMQ 4.x
    /// (or 5.x without `enabledAppendPropCRC`) writes it, valid if its BODYCRC and structure
    /// are.
    Absent,
    /// Damage: the last bytes are one byte away from a well-formed CRC property (a flipped
    /// byte in its name, a separator or a digit), its value is above `u32::MAX`, or the
    /// properties are not a well-formed list (a torn write leaves zeros where the property
    /// was).
    Damaged,
}

/// Classifies the end of `properties` (see [`CrcProperty`]). The 20 bytes a CRC property
/// takes (and the `0x02` before it, when other entries precede it) are compared with the shape
/// `__CRC32#` 0x01 ten-digits 0x02: no difference is a property, exactly one is damage, more
/// is no property at all, which is then valid only as a well-formed list.
pub fn crc_property(properties: &[u8]) -> CrcProperty {
    if let Some(start) = properties.len().checked_sub(CRC32_RESERVED_LEN) {
        let entry = &properties[start..];
        let mut differences = usize::from(start > 0 && properties[start - 1] != PROPERTY_SEPARATOR);
        differences += entry[..CRC32.len()]
            .iter()
            .zip(CRC32.as_bytes())
            .filter(|(a, b)| a != b)
            .count();
        differences += usize::from(entry[CRC32.len()] != NAME_VALUE_SEPARATOR);
        differences += entry[CRC32_DIGITS_POS..CRC32_DIGITS_POS + CRC32_DIGITS]
            .iter()
            .filter(|d| !d.is_ascii_digit())
            .count();
        differences += usize::from(entry[CRC32_RESERVED_LEN - 1] != PROPERTY_SEPARATOR);
        match differences {
            0 => {
                return parse_crc_property(properties)
                    .map_or(CrcProperty::Damaged, CrcProperty::Present)
            }
            1 => return CrcProperty::Damaged,
            _ => {}
        }
    }
    if is_well_formed(properties) {
        CrcProperty::Absent
    } else {
        CrcProperty::Damaged
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn collect(bytes: &[u8]) -> Vec<(Vec<u8>, Vec<u8>)> {
        iter(bytes).map(|(n, v)| (n.to_vec(), v.to_vec())).collect()
    }

    fn pair(name: &str, value: &str) -> (Vec<u8>, Vec<u8>) {
        (name.as_bytes().to_vec(), value.as_bytes().to_vec())
    }

    #[test]
    fn append_property_writes_name_separator_value_separator() {
        let mut buf = Vec::new();
        append_property(&mut buf, TAGS, "TAG1");
        append_property(&mut buf, KEYS, "1600000000000");
        assert_eq!(buf, b"TAGS\x01TAG1\x02KEYS\x011600000000000\x02");
        assert_eq!(buf.len(), 29);
    }

    #[test]
    fn both_trailing_styles_parse_the_same() {
        let with_trailing = b"TAGS\x01TAG1\x02KEYS\x01k1 k2\x02";
        let without_trailing = b"TAGS\x01TAG1\x02KEYS\x01k1 k2";
        let expected = vec![pair("TAGS", "TAG1"), pair("KEYS", "k1 k2")];
        assert_eq!(collect(with_trailing), expected);
        assert_eq!(collect(without_trailing), expected);
        assert_eq!(find(without_trailing, KEYS), Some(&b"k1 k2"[..]));
    }

    #[test]
    fn segment_with_empty_value_is_ignored() {
        assert_eq!(collect(b"a\x01\x02b\x01c\x02"), vec![pair("b", "c")]);
        // Same at the end without a trailing separator.
        assert_eq!(collect(b"b\x01c\x02a\x01"), vec![pair("b", "c")]);
    }

    #[test]
    fn segment_with_empty_name_is_ignored() {
        assert_eq!(collect(b"\x01b\x02x\x01y\x02"), vec![pair("x", "y")]);
        assert_eq!(collect(b"\x01bcd"), vec![]);
    }

    #[test]
    fn segments_shorter_than_three_bytes_are_ignored() {
        assert_eq!(
            collect(b"\x02\x02a\x02ab\x02\x01\x02a\x01b\x02"),
            vec![pair("a", "b")]
        );
        assert_eq!(collect(b""), vec![]);
        assert_eq!(collect(b"\x02"), vec![]);
    }

    #[test]
    fn segment_without_name_value_separator_is_ignored() {
        assert_eq!(collect(b"abcdef\x02k\x01v"), vec![pair("k", "v")]);
    }

    #[test]
    fn value_keeps_later_name_value_separators() {
        // Java splits at the first 0x01 only.
        assert_eq!(collect(b"k\x01v\x01w\x02"), vec![pair("k", "v\x01w")]);
    }

    #[test]
    fn duplicate_names_last_occurrence_wins() {
        let props = b"TAGS\x01first\x02KEYS\x01k\x02TAGS\x01second\x02";
        assert_eq!(find(props, TAGS), Some(&b"second"[..]));
        assert_eq!(find(props, KEYS), Some(&b"k"[..]));
        assert_eq!(find(props, UNIQ_KEY), None);
    }

    #[test]
    fn find_ignores_an_entry_dropped_by_the_parser() {
        // The later "TAGS" has an empty value, so Java never sees it: the first one stays.
        assert_eq!(find(b"TAGS\x01a\x02TAGS\x01\x02", TAGS), Some(&b"a"[..]));
    }

    #[test]
    fn check_property_rejects_what_cannot_round_trip() {
        assert_eq!(check_property("TAGS", "a"), Ok(()));
        assert!(check_property("", "a").is_err());
        assert!(check_property("a", "").is_err());
        assert!(check_property("a\x01b", "c").is_err());
        assert!(check_property("a\x02b", "c").is_err());
        assert!(check_property("a", "b\x01c").is_err());
        assert!(check_property("a", "b\x02c").is_err());
    }

    #[test]
    fn crc_property_digits_are_least_significant_first() {
        let mut slot = [0u8; CRC32_RESERVED_LEN];
        write_crc_property(&mut slot, 123);
        assert_eq!(&slot, b"__CRC32#\x013210000000\x02");
        assert_eq!(parse_crc_property(&slot), Some(123));
    }

    #[test]
    fn crc_property_zero_is_all_zero_digits_and_valid() {
        let mut slot = [0xFFu8; CRC32_RESERVED_LEN];
        write_crc_property(&mut slot, 0);
        assert_eq!(&slot, b"__CRC32#\x010000000000\x02");
        assert_eq!(parse_crc_property(&slot), Some(0));
    }

    #[test]
    fn crc_property_holds_the_largest_values() {
        let mut slot = [0u8; CRC32_RESERVED_LEN];
        write_crc_property(&mut slot, 0x7FFF_FFFF);
        assert_eq!(&slot, b"__CRC32#\x017463847412\x02");
        write_crc_property(&mut slot, u32::MAX);
        assert_eq!(&slot, b"__CRC32#\x015927694924\x02");
        assert_eq!(parse_crc_property(&slot), Some(u32::MAX));
    }

    #[test]
    fn crc_property_above_u32_max_is_rejected() {
        // Read last to first: 9999999999 > u32::MAX.
        assert_eq!(parse_crc_property(b"__CRC32#\x019999999999\x02"), None);
        // 4294967296 = u32::MAX + 1, written least significant digit first.
        assert_eq!(parse_crc_property(b"__CRC32#\x016927694924\x02"), None);
    }

    #[test]
    fn crc_property_after_other_properties_is_found() {
        let mut props = b"TAGS\x01a\x02".to_vec();
        props.extend_from_slice(b"__CRC32#\x013210000000\x02");
        assert_eq!(parse_crc_property(&props), Some(123));
        // The parser sees it as an ordinary last entry too.
        assert_eq!(find(&props, CRC32), Some(&b"3210000000"[..]));
    }

    #[test]
    fn crc_property_inside_another_value_is_not_a_crc_property() {
        let mut props = b"TAGS\x01a".to_vec();
        props.extend_from_slice(b"__CRC32#\x013210000000\x02");
        assert_eq!(parse_crc_property(&props), None);
    }

    #[test]
    fn malformed_crc_property_is_rejected() {
        let good = *b"__CRC32#\x013210000000\x02";
        for pos in 0..good.len() {
            let mut bad = good;
            bad[pos] ^= 0xFF;
            assert_eq!(parse_crc_property(&bad), None, "flipped byte {pos}");
        }
        assert_eq!(parse_crc_property(b"__CRC32#\x0132100000\x02"), None);
        assert_eq!(parse_crc_property(b""), None);
        assert_eq!(parse_crc_property(b"__CRC32#\x01321000000 \x02"), None);
    }

    #[test]
    #[should_panic(expected = "CRC property slot")]
    fn write_crc_property_rejects_a_wrong_slot() {
        write_crc_property(&mut [0u8; 19], 1);
    }

    proptest! {
        #[test]
        fn appended_properties_parse_back(
            entries in prop::collection::vec(("[a-zA-Z_#]{1,12}", "[^\\x01\\x02]{1,20}"), 0..8),
            trailing in any::<bool>(),
        ) {
            let mut buf = Vec::new();
            for (name, value) in &entries {
                prop_assert_eq!(check_property(name, value), Ok(()));
                append_property(&mut buf, name, value);
            }
            if !trailing && !buf.is_empty() {
                buf.pop();
            }
            let parsed = collect(&buf);
            let expected: Vec<_> = entries.iter().map(|(n, v)| pair(n, v)).collect();
            prop_assert_eq!(parsed, expected);
            for (name, _) in &entries {
                let last = entries.iter().rev().find(|(n, _)| n == name).map(|(_, v)| v.as_bytes());
                prop_assert_eq!(find(&buf, name), last);
            }
        }

        #[test]
        fn crc_property_round_trips(crc in any::<u32>()) {
            let mut slot = [0u8; CRC32_RESERVED_LEN];
            write_crc_property(&mut slot, crc);
            prop_assert_eq!(parse_crc_property(&slot), Some(crc));
        }

        #[test]
        fn parsing_arbitrary_bytes_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..64)) {
            for (name, value) in iter(&bytes) {
                prop_assert!(!name.is_empty() && !value.is_empty());
                prop_assert!(!name.contains(&NAME_VALUE_SEPARATOR));
                prop_assert!(!name.contains(&PROPERTY_SEPARATOR) && !value.contains(&PROPERTY_SEPARATOR));
            }
            let _ = find(&bytes, TAGS);
            let _ = parse_crc_property(&bytes);
        }
    }

    #[test]
    fn well_formed_lists_in_both_styles_and_torn_ones_are_not() {
        assert!(is_well_formed(b""));
        assert!(is_well_formed(b"TAGS\x01a\x02KEYS\x01k1 k2"));
        assert!(is_well_formed(b"TAGS\x01a\x02KEYS\x01k1 k2\x02"));
        assert!(is_well_formed(b"EMPTY\x01\x02"));
        assert!(!is_well_formed(&[0u8; 20]), "a zeroed tail");
        assert!(
            !is_well_formed(b"TAGS\x01a\x02\0\0\0\0"),
            "torn after the first pair"
        );
        assert!(!is_well_formed(b"\x01value"), "empty name");
        assert!(
            !is_well_formed(b"KEYS\x01 K00\0\0\0\0"),
            "torn inside a value"
        );
        assert!(!is_well_formed(b"TAGS"), "no separator");
    }

    fn crc_entry(crc: u32) -> Vec<u8> {
        let mut e = vec![0u8; CRC32_RESERVED_LEN];
        write_crc_property(&mut e, crc);
        e
    }

    #[test]
    fn crc_property_classifies_present_absent_and_damaged() {
        let mut props = b"TAGS\x01a\x02".to_vec();
        props.extend_from_slice(&crc_entry(123));
        assert_eq!(crc_property(&props), CrcProperty::Present(123));
        assert_eq!(crc_property(&crc_entry(7)), CrcProperty::Present(7));
        // RocketMQ 4.x records: no property, both separator styles, no properties at all.
        assert_eq!(crc_property(b""), CrcProperty::Absent);
        assert_eq!(
            crc_property(b"KEYS\x01k0 m0\x02prop\x01v0-\xc3\xa9\x02TAGS\x01T0"),
            CrcProperty::Absent
        );
        assert_eq!(crc_property(b"TAGS\x01T1\x02"), CrcProperty::Absent);
        // A value above u32::MAX, a zeroed (torn) tail, a property inside another value.
        assert_eq!(
            crc_property(b"__CRC32#\x019999999999\x02"),
            CrcProperty::Damaged
        );
        assert_eq!(crc_property(&[0u8; 40]), CrcProperty::Damaged);
        let mut inside = b"TAGS\x01a".to_vec();
        inside.extend_from_slice(&crc_entry(5));
        assert_eq!(crc_property(&inside), CrcProperty::Damaged);
    }

    proptest! {
        /// Any one damaged byte of the CRC entry (or of the separator before it) is damage,
        /// never "a record without the property" (issue 14's rule).
        #[test]
        fn one_damaged_byte_of_the_crc_property_is_damage(
            crc in any::<u32>(),
            pos in 0usize..CRC32_RESERVED_LEN + 1,
            new in any::<u8>(),
            before in prop::sample::select(vec![&b""[..], &b"TAGS\x01T0\x02"[..], &b"KEYS\x01k1 k2\x02"[..]]),
        ) {
            let mut props = before.to_vec();
            props.extend_from_slice(&crc_entry(crc));
            // pos 0 is the separator before the entry (when there is one), 1.. the entry.
            let at = (props.len() - CRC32_RESERVED_LEN + pos).checked_sub(1);
            prop_assume!(pos > 0 || !before.is_empty());
            let at = at.unwrap();
            prop_assume!(props[at] != new);
            // A digit changed into another digit is a different value: the CRC check catches it.
            prop_assume!(!(props[at].is_ascii_digit() && new.is_ascii_digit()));
            props[at] = new;
            prop_assert_eq!(crc_property(&props), CrcProperty::Damaged);
        }

        #[test]
        fn well_formed_lists_without_the_property_are_absent(
            entries in prop::collection::vec(("[A-Za-z_]{1,12}", "[a-z0-9 ]{1,12}"), 0..5),
            trailing in any::<bool>(),
        ) {
            let mut props = Vec::new();
            for (n, v) in &entries {
                append_property(&mut props, n, v);
            }
            if !trailing && !props.is_empty() {
                props.pop();
            }
            prop_assert_eq!(crc_property(&props), CrcProperty::Absent);
        }
    }
}
