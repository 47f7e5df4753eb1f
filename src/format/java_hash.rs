//! Java `String.hashCode` and the two RocketMQ hashes built on it.
//!
//! RocketMQ stores these hashes on disk (ConsumeQueue tags codes, IndexFile slots), so they must
//! match Java bit for bit: the hash runs over UTF-16 code units, not UTF-8 bytes, with wrapping
//! `i32` arithmetic. A character outside the Basic Multilingual Plane contributes its two
//! surrogates.

/// Java `String.compareTo`: lexicographic over UTF-16 code units. It differs from `str`'s
/// order (code points) only between a character above U+FFFF (a surrogate pair, D800–DFFF) and
/// one in U+E000–U+FFFF. RocketMQ sorts consumer ids this way before allocating queues.
pub fn java_string_cmp(a: &str, b: &str) -> std::cmp::Ordering {
    if a.is_ascii() && b.is_ascii() {
        a.cmp(b)
    } else {
        a.encode_utf16().cmp(b.encode_utf16())
    }
}

/// Java `String.hashCode`: `h = 31 * h + u` over the UTF-16 code units of `s`, wrapping `i32`
/// arithmetic, starting at 0. For example `"TagA"` hashes to 2598919.
pub fn java_string_hash(s: &str) -> i32 {
    java_hash_of_parts(&[s])
}

/// Java hash of the concatenation of `parts`, without building the string (the index hashes
/// `topic#key` on the append path).
pub fn java_hash_of_parts(parts: &[&str]) -> i32 {
    parts.iter().fold(0i32, |h, p| hash_continue(h, p))
}

/// Continues `h` over the UTF-16 code units of `s`. ASCII text (tags and keys, nearly always)
/// is its own UTF-16: its bytes are hashed directly, without the UTF-16 encoder.
fn hash_continue(h: i32, s: &str) -> i32 {
    if s.is_ascii() {
        s.bytes()
            .fold(h, |h, b| h.wrapping_mul(31).wrapping_add(i32::from(b)))
    } else {
        s.encode_utf16().fold(h, |h, unit| {
            h.wrapping_mul(31).wrapping_add(i32::from(unit))
        })
    }
}

/// RocketMQ's tags code (`MessageExtBrokerInner.tagsString2tagsCode`): 0 for empty tags, else
/// the Java hash of the tags sign-extended to `i64`.
pub fn tags_code(tags: &str) -> i64 {
    if tags.is_empty() {
        0
    } else {
        i64::from(java_string_hash(tags))
    }
}

/// IndexFile key hash (`IndexFile.indexKeyHashMethod`): the absolute value of the Java hash.
///
/// Java's `Math.abs(Integer.MIN_VALUE)` is still negative, and IndexFile then maps it to 0; this
/// does the same so that keys land in the same slot as in a Java-written index.
pub fn index_key_hash(key: &str) -> i32 {
    index_hash_from(java_string_hash(key))
}

/// [`index_key_hash`] of `topic#key`, without building the string.
pub fn index_topic_key_hash(topic: &str, key: &str) -> i32 {
    index_hash_from(java_hash_of_parts(&[topic, "#", key]))
}

fn index_hash_from(hash: i32) -> i32 {
    let abs = hash.wrapping_abs();
    if abs < 0 {
        0
    } else {
        abs
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_string_hashes_to_zero() {
        assert_eq!(java_string_hash(""), 0);
    }

    #[test]
    fn ascii_strings_match_java_values() {
        // Java's "...".hashCode() values.
        assert_eq!(java_string_hash("TagA"), 2_598_919);
        assert_eq!(java_string_hash("hello"), 99_162_322);
        assert_eq!(java_string_hash("a"), 97);
        assert_eq!(java_string_hash("TopicTest"), -1_902_610_879);
    }

    #[test]
    fn hash_wraps_like_java_int_arithmetic() {
        // "polygenelubricants".hashCode() == Integer.MIN_VALUE in Java.
        assert_eq!(java_string_hash("polygenelubricants"), i32::MIN);
    }

    #[test]
    fn non_bmp_character_hashes_both_surrogates() {
        // U+1F600 is the surrogate pair D83D DE00: 0xD83D * 31 + 0xDE00.
        assert_eq!(java_string_hash("😀"), 0xD83D * 31 + 0xDE00);
        assert_eq!(java_string_hash("😀"), 1_772_899);
        // Hashing UTF-8 bytes instead would give a different value.
        let byte_hash = "😀"
            .bytes()
            .fold(0i32, |h, b| h.wrapping_mul(31).wrapping_add(i32::from(b)));
        assert_ne!(java_string_hash("😀"), byte_hash);
    }

    #[test]
    fn bmp_non_ascii_character_hashes_its_code_unit() {
        // 'é' is U+00E9, one UTF-16 unit but two UTF-8 bytes.
        assert_eq!(java_string_hash("é"), 0xE9);
    }

    #[test]
    fn tags_code_is_zero_for_empty_tags() {
        assert_eq!(tags_code(""), 0);
    }

    #[test]
    fn tags_code_sign_extends_negative_hashes() {
        assert_eq!(tags_code("TagA"), 2_598_919);
        assert_eq!(tags_code("polygenelubricants"), i64::from(i32::MIN));
        assert!(tags_code("polygenelubricants") < 0);
    }

    #[test]
    fn index_key_hash_takes_absolute_value() {
        assert_eq!(index_key_hash("TagA"), 2_598_919);
        let negative = "TopicTest";
        assert!(java_string_hash(negative) < 0);
        assert_eq!(index_key_hash(negative), -java_string_hash(negative));
    }

    #[test]
    fn index_key_hash_maps_int_min_to_zero() {
        assert_eq!(index_key_hash("polygenelubricants"), 0);
    }

    proptest::proptest! {
        /// The ASCII fast path and the UTF-16 path agree with a plain fold over UTF-16 units,
        /// whatever mix of ASCII and non-ASCII parts is hashed.
        #[test]
        fn parts_hash_like_their_utf16_concatenation(parts in proptest::collection::vec(".{0,12}", 0..4)) {
            let refs: Vec<&str> = parts.iter().map(String::as_str).collect();
            let expected = parts
                .concat()
                .encode_utf16()
                .fold(0i32, |h, u| h.wrapping_mul(31).wrapping_add(i32::from(u)));
            proptest::prop_assert_eq!(java_hash_of_parts(&refs), expected);
        }
    }
}
