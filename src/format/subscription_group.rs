//! RocketMQ's `config/subscriptionGroup.json` (`SubscriptionGroupManager`): per consumer group
//! settings, `{"subscriptionGroupTable":{"g":{"groupName":"g","retryMaxTimes":16,...}},
//! "forbiddenTable":{},"dataVersion":{...}}`, written by fastjson.
//!
//! [`parse`] reads what a broker writes (fastjson's bare integer keys accepted, as for
//! `consumerOffset.json`); a field a group leaves out has `SubscriptionGroupConfig`'s Java
//! default. The fields rocketstore does not interpret (`groupRetryPolicy`,
//! `subscriptionDataSet`, `attributes`, ... and the top-level `forbiddenTable`, `dataVersion`)
//! are kept as they are, so [`encode`] writes them back unchanged.
//!
//! The store uses `retryMaxTimes` only (see [`crate::consumer::Consumer::send_back`]); the
//! other settings are read, kept and written, not acted on.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use super::offset_table::{parse_fastjson, OffsetJsonError};
use super::schedule::DEFAULT_MAX_RECONSUME_TIMES;

/// The top-level field holding the groups.
pub const TABLE_FIELD: &str = "subscriptionGroupTable";

/// One group's settings: RocketMQ's `SubscriptionGroupConfig` (Java defaults in
/// [`SubscriptionGroupConfig::new`]).
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct SubscriptionGroupConfig {
    /// `groupName`.
    pub group_name: String,
    /// `consumeEnable` (default true).
    pub consume_enable: bool,
    /// `consumeFromMinEnable` (default true).
    pub consume_from_min_enable: bool,
    /// `consumeBroadcastEnable` (default true).
    pub consume_broadcast_enable: bool,
    /// `consumeMessageOrderly` (default false).
    pub consume_message_orderly: bool,
    /// `retryQueueNums`: queues of the group's retry topic (default 1).
    pub retry_queue_nums: i32,
    /// `retryMaxTimes`: retries before a failed message goes to the dead-letter topic
    /// (default 16).
    pub retry_max_times: i32,
    /// `brokerId` (default 0, the master).
    pub broker_id: i64,
    /// `whichBrokerWhenConsumeSlowly` (default 1).
    pub which_broker_when_consume_slowly: i64,
    /// `notifyConsumerIdsChangedEnable` (default true).
    pub notify_consumer_ids_changed_enable: bool,
    /// `groupSysFlag` (default 0).
    pub group_sys_flag: i32,
    /// `consumeTimeoutMinute` (default 15).
    pub consume_timeout_minute: i32,
    /// Every other field of the group's object, kept as read.
    pub other: Map<String, Value>,
}

impl SubscriptionGroupConfig {
    /// A group with RocketMQ's defaults.
    pub fn new(group_name: impl Into<String>) -> Self {
        SubscriptionGroupConfig {
            group_name: group_name.into(),
            consume_enable: true,
            consume_from_min_enable: true,
            consume_broadcast_enable: true,
            consume_message_orderly: false,
            retry_queue_nums: 1,
            retry_max_times: DEFAULT_MAX_RECONSUME_TIMES,
            broker_id: 0,
            which_broker_when_consume_slowly: 1,
            notify_consumer_ids_changed_enable: true,
            group_sys_flag: 0,
            consume_timeout_minute: 15,
            other: Map::new(),
        }
    }

    /// Sets `retryMaxTimes`.
    pub fn with_retry_max_times(mut self, n: i32) -> Self {
        self.retry_max_times = n;
        self
    }
}

/// The whole file: the groups by name, and the other top-level fields as read.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SubscriptionGroups {
    /// `subscriptionGroupTable`.
    pub groups: BTreeMap<String, SubscriptionGroupConfig>,
    /// `forbiddenTable`, `dataVersion` and anything else at the top level.
    pub other: Map<String, Value>,
}

/// Why a text is not a subscription group file.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SubscriptionGroupError {
    /// Not (fastjson) JSON.
    #[error(transparent)]
    Json(#[from] OffsetJsonError),
    /// JSON, but not the shape RocketMQ writes.
    #[error("not a subscription group table: {0}")]
    Shape(String),
}

/// Parses a `subscriptionGroup.json` text.
pub fn parse(text: &str) -> Result<SubscriptionGroups, SubscriptionGroupError> {
    let shape = |m: String| SubscriptionGroupError::Shape(m);
    let Value::Object(mut top) = parse_fastjson(text)? else {
        return Err(shape("the top level is not an object".into()));
    };
    let mut out = SubscriptionGroups::default();
    match top.remove(TABLE_FIELD) {
        None | Some(Value::Null) => {}
        Some(Value::Object(table)) => {
            for (key, v) in table {
                let Value::Object(fields) = v else {
                    return Err(shape(format!("group {key:?}: not an object")));
                };
                let g = group(&key, fields).map_err(shape)?;
                out.groups.insert(key, g);
            }
        }
        Some(_) => return Err(shape(format!("{TABLE_FIELD} is not an object"))),
    }
    out.other = top;
    Ok(out)
}

/// One group's object; a missing field keeps its default, a field of the wrong type is refused.
fn group(key: &str, mut fields: Map<String, Value>) -> Result<SubscriptionGroupConfig, String> {
    let mut g = SubscriptionGroupConfig::new(key);
    let mut take = |name: &str| fields.remove(name).filter(|v| !v.is_null());
    let wrong = |name: &str, what: &str| format!("group {key:?}: {name} is not {what}");
    if let Some(v) = take("groupName") {
        let name = v.as_str().ok_or_else(|| wrong("groupName", "a string"))?;
        if name != key {
            return Err(format!(
                "group {key:?}: groupName {name:?} differs from its key"
            ));
        }
    }
    for (name, slot) in [
        ("consumeEnable", &mut g.consume_enable),
        ("consumeFromMinEnable", &mut g.consume_from_min_enable),
        ("consumeBroadcastEnable", &mut g.consume_broadcast_enable),
        ("consumeMessageOrderly", &mut g.consume_message_orderly),
        (
            "notifyConsumerIdsChangedEnable",
            &mut g.notify_consumer_ids_changed_enable,
        ),
    ] {
        if let Some(v) = take(name) {
            *slot = v.as_bool().ok_or_else(|| wrong(name, "true or false"))?;
        }
    }
    for (name, slot) in [
        ("retryQueueNums", &mut g.retry_queue_nums),
        ("retryMaxTimes", &mut g.retry_max_times),
        ("groupSysFlag", &mut g.group_sys_flag),
        ("consumeTimeoutMinute", &mut g.consume_timeout_minute),
    ] {
        if let Some(v) = take(name) {
            *slot = v
                .as_i64()
                .and_then(|n| i32::try_from(n).ok())
                .ok_or_else(|| wrong(name, "a 32-bit integer"))?;
        }
    }
    for (name, slot) in [
        ("brokerId", &mut g.broker_id),
        (
            "whichBrokerWhenConsumeSlowly",
            &mut g.which_broker_when_consume_slowly,
        ),
    ] {
        if let Some(v) = take(name) {
            *slot = v.as_i64().ok_or_else(|| wrong(name, "an integer"))?;
        }
    }
    g.other = fields;
    Ok(g)
}

/// Writes `file` as JSON RocketMQ reads back (fastjson's field names; fields sorted by name,
/// as fastjson writes them).
pub fn encode(file: &SubscriptionGroups) -> String {
    let mut table = Map::new();
    for (key, g) in &file.groups {
        let mut o = g.other.clone();
        let fields = [
            ("groupName", Value::from(key.as_str())),
            ("consumeEnable", g.consume_enable.into()),
            ("consumeFromMinEnable", g.consume_from_min_enable.into()),
            ("consumeBroadcastEnable", g.consume_broadcast_enable.into()),
            ("consumeMessageOrderly", g.consume_message_orderly.into()),
            ("retryQueueNums", g.retry_queue_nums.into()),
            ("retryMaxTimes", g.retry_max_times.into()),
            ("brokerId", g.broker_id.into()),
            (
                "whichBrokerWhenConsumeSlowly",
                g.which_broker_when_consume_slowly.into(),
            ),
            (
                "notifyConsumerIdsChangedEnable",
                g.notify_consumer_ids_changed_enable.into(),
            ),
            ("groupSysFlag", g.group_sys_flag.into()),
            ("consumeTimeoutMinute", g.consume_timeout_minute.into()),
        ];
        for (name, v) in fields {
            o.insert(name.to_owned(), v);
        }
        table.insert(key.clone(), Value::Object(o));
    }
    let mut top = file.other.clone();
    top.insert(TABLE_FIELD.to_owned(), Value::Object(table));
    let mut text = serde_json::to_string_pretty(&Value::Object(top)).unwrap_or_default();
    text.push('\n');
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What a RocketMQ 5 broker writes (fastjson, pretty): every `SubscriptionGroupConfig`
    /// field, a retry policy, a forbidden table and a data version.
    const BROKER_FILE: &str = r#"{
	"dataVersion":{
		"counter":2,
		"stateVersion":0,
		"timestamp":1700000000000
	},
	"forbiddenTable":{},
	"subscriptionGroupTable":{
		"g":{
			"attributes":{},
			"brokerId":0,
			"consumeBroadcastEnable":true,
			"consumeEnable":true,
			"consumeFromMinEnable":true,
			"consumeMessageOrderly":false,
			"consumeTimeoutMinute":15,
			"groupName":"g",
			"groupRetryPolicy":{
				"type":"CUSTOMIZED"
			},
			"groupSysFlag":0,
			"notifyConsumerIdsChangedEnable":true,
			"retryMaxTimes":2,
			"retryQueueNums":1,
			"whichBrokerWhenConsumeSlowly":1
		},
		"TOOLS_CONSUMER":{
			"groupName":"TOOLS_CONSUMER",
			"consumeEnable":false,
			"retryQueueNums":3
		}
	}
}"#;

    #[test]
    fn reads_what_a_broker_writes_with_java_defaults_for_missing_fields() {
        let f = parse(BROKER_FILE).unwrap();
        let g = &f.groups["g"];
        assert_eq!(g.retry_max_times, 2);
        assert_eq!(g.retry_queue_nums, 1);
        assert!(g.consume_enable);
        assert_eq!(g.other["groupRetryPolicy"]["type"], "CUSTOMIZED");
        let t = &f.groups["TOOLS_CONSUMER"];
        assert!(!t.consume_enable);
        assert_eq!(t.retry_queue_nums, 3);
        assert_eq!(t.retry_max_times, DEFAULT_MAX_RECONSUME_TIMES);
        assert_eq!(t.consume_timeout_minute, 15);
        assert_eq!(f.other["dataVersion"]["counter"], 2);
    }

    #[test]
    fn encode_then_parse_keeps_everything() {
        let f = parse(BROKER_FILE).unwrap();
        let again = parse(&encode(&f)).unwrap();
        assert_eq!(again, f);
    }

    #[test]
    fn wrong_shapes_are_refused_with_the_field() {
        for (text, needle) in [
            ("[]", "top level"),
            (r#"{"subscriptionGroupTable":[]}"#, "subscriptionGroupTable"),
            (r#"{"subscriptionGroupTable":{"g":1}}"#, "not an object"),
            (
                r#"{"subscriptionGroupTable":{"g":{"retryMaxTimes":"x"}}}"#,
                "retryMaxTimes",
            ),
            (
                r#"{"subscriptionGroupTable":{"g":{"retryMaxTimes":4294967296}}}"#,
                "retryMaxTimes",
            ),
            (
                r#"{"subscriptionGroupTable":{"g":{"groupName":"h"}}}"#,
                "differs",
            ),
            (
                r#"{"subscriptionGroupTable":{"g":{"consumeEnable":1}}}"#,
                "consumeEnable",
            ),
        ] {
            let e = parse(text).unwrap_err();
            assert!(
                matches!(e, SubscriptionGroupError::Shape(_)) && e.to_string().contains(needle),
                "{text}: {e}"
            );
        }
        assert!(matches!(
            parse("{\"subscriptionGroupTable\":{"),
            Err(SubscriptionGroupError::Json(_))
        ));
    }
}
