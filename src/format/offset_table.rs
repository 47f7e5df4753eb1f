//! RocketMQ's `config/consumerOffset.json` (`ConsumerOffsetManager`): committed offsets keyed
//! `"topic@group"`, then queue id → offset.
//!
//! RocketMQ writes it with fastjson, which prints the integer queue ids as *unquoted* object
//! keys (`{"offsetTable":{"T@g":{0:5280,1:5312}}}`): not strict JSON. [`parse`] accepts both
//! that and quoted keys, pretty-printed or not, and ignores other top-level fields (RocketMQ 5's
//! `dataVersion`, ...). [`encode`] writes fastjson's form. rocketstore adds one top-level field,
//! `rocketstoreCommitLogOffset`: the CommitLog offset the table's commit records reach (fastjson
//! maps a file onto `ConsumerOffsetManager`'s fields and skips names it does not know).
//!
//! Topic and group names cannot contain `@` (RocketMQ allows `[%|a-zA-Z0-9_-]` only), so a key
//! splits at its `@`.

use std::collections::BTreeMap;

/// Committed offsets by `(topic, group)`, then queue id.
pub type OffsetTable = BTreeMap<(String, String), BTreeMap<i32, i64>>;

/// The field rocketstore adds.
pub const COMMITLOG_OFFSET_FIELD: &str = "rocketstoreCommitLogOffset";

/// Why a text is not a consumer offset file.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum OffsetJsonError {
    /// Not JSON (after quoting bare integer keys).
    #[error("not JSON at line {line}, column {column}: {message}")]
    Syntax {
        /// 1-based line.
        line: usize,
        /// 1-based column.
        column: usize,
        /// What the parser found.
        message: String,
    },
    /// JSON, but not the shape RocketMQ writes.
    #[error("not a consumer offset table: {0}")]
    Shape(String),
}

/// Quotes every object key that is a bare (optionally negative) integer, outside strings.
fn quote_bare_keys(text: &str) -> String {
    let b = text.as_bytes();
    let mut out = String::with_capacity(text.len() + 16);
    let mut i = 0;
    let mut in_string = false;
    // Whether the next token is in key position (after `{` or `,` inside an object).
    let mut key_position = false;
    let mut stack: Vec<u8> = Vec::new();
    while i < b.len() {
        let c = b[i];
        if in_string {
            out.push(c as char);
            if c == b'\\' && i + 1 < b.len() {
                out.push(b[i + 1] as char);
                i += 2;
                continue;
            }
            if c == b'"' {
                in_string = false;
            }
            i += 1;
            continue;
        }
        match c {
            b'"' => {
                in_string = true;
                key_position = false;
            }
            b'{' | b'[' => {
                stack.push(c);
                key_position = c == b'{';
            }
            b'}' | b']' => {
                stack.pop();
                key_position = false;
            }
            b',' => key_position = stack.last() == Some(&b'{'),
            b'-' | b'0'..=b'9' if key_position => {
                let start = i;
                i += 1;
                while i < b.len() && b[i].is_ascii_digit() {
                    i += 1;
                }
                let mut j = i;
                while j < b.len() && b[j].is_ascii_whitespace() {
                    j += 1;
                }
                if j < b.len() && b[j] == b':' {
                    out.push('"');
                    out.push_str(&text[start..i]);
                    out.push('"');
                } else {
                    out.push_str(&text[start..i]);
                }
                key_position = false;
                continue;
            }
            c if c.is_ascii_whitespace() => {}
            _ => key_position = false,
        }
        // Multi-byte UTF-8 outside strings is invalid JSON anyway; copy it through.
        let ch_len = text[i..].chars().next().map_or(1, char::len_utf8);
        out.push_str(&text[i..i + ch_len]);
        i += ch_len;
    }
    out
}

/// Parses a fastjson config file (bare integer keys quoted first) as JSON.
pub(crate) fn parse_fastjson(text: &str) -> Result<serde_json::Value, OffsetJsonError> {
    serde_json::from_str(&quote_bare_keys(text)).map_err(|e| OffsetJsonError::Syntax {
        line: e.line(),
        column: e.column(),
        message: e.to_string(),
    })
}

/// Parses a consumer offset file: the table and `rocketstoreCommitLogOffset` if present.
pub fn parse(text: &str) -> Result<(OffsetTable, Option<u64>), OffsetJsonError> {
    let v = parse_fastjson(text)?;
    let shape = |m: String| OffsetJsonError::Shape(m);
    let top = v
        .as_object()
        .ok_or_else(|| shape("the top level is not an object".into()))?;
    let mut table = OffsetTable::new();
    if let Some(t) = top.get("offsetTable") {
        let t = t
            .as_object()
            .ok_or_else(|| shape("offsetTable is not an object".into()))?;
        for (key, queues) in t {
            let (topic, group) = key
                .split_once('@')
                .filter(|(t, g)| !t.is_empty() && !g.is_empty() && !g.contains('@'))
                .ok_or_else(|| shape(format!("key {key:?} is not \"topic@group\"")))?;
            let queues = queues
                .as_object()
                .ok_or_else(|| shape(format!("{key}: not an object of queue offsets")))?;
            let mut m = BTreeMap::new();
            for (q, o) in queues {
                let q: i32 = q
                    .parse()
                    .map_err(|_| shape(format!("{key}: queue id {q:?} is not an integer")))?;
                let o = o.as_i64().ok_or_else(|| {
                    shape(format!("{key}: offset of queue {q} is not an integer"))
                })?;
                m.insert(q, o);
            }
            table.insert((topic.to_owned(), group.to_owned()), m);
        }
    } else {
        return Err(shape("no offsetTable".into()));
    }
    let end = match top.get(COMMITLOG_OFFSET_FIELD) {
        None => None,
        Some(v) => Some(v.as_u64().ok_or_else(|| {
            shape(format!(
                "{COMMITLOG_OFFSET_FIELD} is not a non-negative integer"
            ))
        })?),
    };
    Ok((table, end))
}

/// Writes `table` as RocketMQ's `ConfigManager` does (fastjson, pretty-printed with tabs,
/// integer queue ids unquoted), with `rocketstoreCommitLogOffset` = `end`.
pub fn encode(table: &OffsetTable, end: Option<u64>) -> String {
    let mut s = String::from("{\n\t\"offsetTable\":{");
    for (i, ((topic, group), queues)) in table.iter().enumerate() {
        s.push_str(if i == 0 { "\n\t\t" } else { ",\n\t\t" });
        // Names are `[%|a-zA-Z0-9_-]`; serde_json escapes anything else all the same.
        s.push_str(&serde_json::Value::String(format!("{topic}@{group}")).to_string());
        s.push_str(":{");
        for (j, (q, o)) in queues.iter().enumerate() {
            if j > 0 {
                s.push(',');
            }
            s.push_str(&format!("{q}:{o}"));
        }
        s.push('}');
    }
    s.push_str(if table.is_empty() { "}" } else { "\n\t}" });
    if let Some(end) = end {
        s.push_str(&format!(",\n\t\"{COMMITLOG_OFFSET_FIELD}\":{end}"));
    }
    s.push_str("\n}");
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn reads_what_rocketmq_writes_and_quoted_keys_too() {
        let fastjson = "{\"offsetTable\":{\"T@g\":{0:5280,1:5312},\"%RETRY%g@g\":{0:-1}}}";
        let (t, end) = parse(fastjson).unwrap();
        assert_eq!(end, None);
        assert_eq!(
            t[&("T".into(), "g".into())],
            BTreeMap::from([(0, 5280), (1, 5312)])
        );
        assert_eq!(
            t[&("%RETRY%g".into(), "g".into())],
            BTreeMap::from([(0, -1)])
        );
        let pretty = "{\n\t\"dataVersion\":{\"counter\":3,\"stateVersion\":0,\"timestamp\":1700000000000},\n\t\"offsetTable\":{\n\t\t\"T@g\":{0 : 5280, 1:5312}\n\t}\n}";
        assert_eq!(
            parse(pretty).unwrap().0,
            parse(fastjson)
                .unwrap()
                .0
                .into_iter()
                .filter(|(k, _)| k.0 == "T")
                .collect()
        );
        let quoted = r#"{"offsetTable":{"T@g":{"0":5280,"1":5312}}}"#;
        assert_eq!(parse(quoted).unwrap().0.len(), 1);
        assert_eq!(parse(r#"{"offsetTable":{}}"#).unwrap().0.len(), 0);
    }

    #[test]
    fn bad_files_are_errors_that_say_where() {
        assert!(matches!(parse(""), Err(OffsetJsonError::Syntax { .. })));
        assert!(matches!(
            parse("{\"offsetTable\":{\"T@g\":{0:52"),
            Err(OffsetJsonError::Syntax { .. })
        ));
        assert!(matches!(parse("{}"), Err(OffsetJsonError::Shape(_))));
        assert!(matches!(
            parse(r#"{"offsetTable":{"nogroup":{}}}"#),
            Err(OffsetJsonError::Shape(_))
        ));
        assert!(matches!(
            parse(r#"{"offsetTable":{"T@g":{"x":1}}}"#),
            Err(OffsetJsonError::Shape(_))
        ));
        // A digit inside a string is not a key.
        let (t, _) = parse(r#"{"offsetTable":{"T@g":{1:2}},"note":"{3:4}"}"#).unwrap();
        assert_eq!(t.len(), 1);
    }

    #[test]
    fn writes_fastjsons_form() {
        let mut t = OffsetTable::new();
        t.insert(("T".into(), "g".into()), BTreeMap::from([(0, 5), (1, -1)]));
        let s = encode(&t, Some(77));
        assert_eq!(
            s,
            "{\n\t\"offsetTable\":{\n\t\t\"T@g\":{0:5,1:-1}\n\t},\n\t\"rocketstoreCommitLogOffset\":77\n}"
        );
        assert_eq!(parse(&s).unwrap(), (t, Some(77)));
        assert_eq!(
            encode(&OffsetTable::new(), None),
            "{\n\t\"offsetTable\":{}\n}"
        );
    }

    proptest! {
        #[test]
        fn encode_then_parse_is_identity(
            entries in proptest::collection::btree_map(
                ("[a-zA-Z0-9_%|-]{1,12}", "[a-zA-Z0-9_%|-]{1,12}"),
                proptest::collection::btree_map(any::<i32>(), any::<i64>(), 0..5),
                0..6,
            ),
            end in proptest::option::of(any::<u64>()),
            junk in "\\PC{0,40}",
        ) {
            let s = encode(&entries, end);
            prop_assert_eq!(parse(&s).unwrap(), (entries, end));
            let _ = parse(&junk);
        }
    }
}
