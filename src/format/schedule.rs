//! Scheduled delivery, retries and dead letters: RocketMQ's names and rules, as pure functions
//! (`ScheduleMessageService`, `SendMessageProcessor.consumerSendMsgBack`).
//!
//! A message put with a delay level `L` is stored in [`SCHEDULE_TOPIC`], queue `L - 1`, with
//! its real topic and queue in [`REAL_TOPIC`] / [`REAL_QID`] and the level in [`DELAY`]; the
//! ConsumeQueue unit's tags code holds its delivery time (store time + the level's delay,
//! [`DelayLevels::deliver_at`]). When that time comes it is put again into its real topic.
//! Beyond RocketMQ 4, [`TIMER_DELIVER_MS`] asks for an exact time: the message hops through the
//! levels (the longest delay that does not pass the time, each hop a re-put) and is delivered
//! when the time has come.

use std::collections::BTreeMap;

use super::offset_table::{parse_fastjson, OffsetJsonError};

/// RocketMQ's schedule topic: one queue per delay level.
pub const SCHEDULE_TOPIC: &str = "SCHEDULE_TOPIC_XXXX";
/// The delay level of a message (property).
pub const DELAY: &str = "DELAY";
/// The topic a scheduled message is delivered to.
pub const REAL_TOPIC: &str = "REAL_TOPIC";
/// The queue a scheduled message is delivered to.
pub const REAL_QID: &str = "REAL_QID";
/// An exact delivery time, epoch ms (RocketMQ 5's timer messages).
pub const TIMER_DELIVER_MS: &str = "TIMER_DELIVER_MS";
/// The topic a retried message came from first.
pub const RETRY_TOPIC: &str = "RETRY_TOPIC";
/// The offset message id of the first stored copy of a retried message.
pub const ORIGIN_MESSAGE_ID: &str = "ORIGIN_MESSAGE_ID";
/// How many times a message has been retried (also in the record's RECONSUMETIMES field).
pub const RECONSUME_TIME: &str = "RECONSUME_TIME";
/// The retry limit the message was sent back under.
pub const MAX_RECONSUME_TIMES: &str = "MAX_RECONSUME_TIMES";

/// RocketMQ's default `messageDelayLevel`.
pub const DEFAULT_DELAY_LEVELS: &str = "1s 5s 10s 30s 1m 2m 3m 4m 5m 6m 7m 8m 9m 10m 20m 30m 1h 2h";
/// RocketMQ's default `maxReconsumeTimes`.
pub const DEFAULT_MAX_RECONSUME_TIMES: i32 = 16;

/// `%RETRY%group`: the retry topic of a consumer group.
pub fn retry_topic(group: &str) -> String {
    format!("{RETRY_PREFIX}{group}")
}

/// The prefix of retry topics.
pub const RETRY_PREFIX: &str = "%RETRY%";
/// The prefix of dead-letter topics.
pub const DLQ_PREFIX: &str = "%DLQ%";

/// `%DLQ%group`: the dead-letter topic of a consumer group (one queue).
pub fn dlq_topic(group: &str) -> String {
    format!("{DLQ_PREFIX}{group}")
}

/// The delay level of the `n`-th retry (`n` = the message's reconsume count before it):
/// RocketMQ's `3 + reconsumeTimes`.
pub fn retry_level(reconsume_times: i32) -> i32 {
    3 + reconsume_times.max(0)
}

/// The delay table: level `i + 1` waits `delays_ms[i]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DelayLevels {
    delays_ms: Vec<i64>,
}

impl DelayLevels {
    /// Parses RocketMQ's `messageDelayLevel` text: delays separated by spaces, each a number
    /// and a unit `s`, `m`, `h` or `d`.
    pub fn parse(text: &str) -> Result<DelayLevels, String> {
        let mut delays_ms = Vec::new();
        for part in text.split_whitespace() {
            let (num, unit) = part.split_at(part.len() - 1);
            let factor = match unit {
                "s" => 1_000,
                "m" => 60_000,
                "h" => 3_600_000,
                "d" => 86_400_000,
                _ => return Err(format!("{part:?}: the unit must be s, m, h or d")),
            };
            let n: i64 = num
                .parse()
                .ok()
                .filter(|&n| n > 0)
                .ok_or_else(|| format!("{part:?}: not a positive whole number of {unit}"))?;
            let ms = n
                .checked_mul(factor)
                .ok_or_else(|| format!("{part:?}: too long"))?;
            if delays_ms.last().is_some_and(|&last| ms <= last) {
                return Err(format!("{part:?}: delays must grow from level to level"));
            }
            delays_ms.push(ms);
        }
        if delays_ms.is_empty() {
            return Err("no delay levels".into());
        }
        if delays_ms.len() > 255 {
            return Err(format!("{} levels; at most 255", delays_ms.len()));
        }
        Ok(DelayLevels { delays_ms })
    }

    /// The number of levels (the highest level).
    pub fn len(&self) -> i32 {
        self.delays_ms.len() as i32
    }

    /// Never: a table has at least one level.
    pub fn is_empty(&self) -> bool {
        self.delays_ms.is_empty()
    }

    /// The delay of `level` (1-based), clamped into the table as RocketMQ clamps it.
    pub fn delay_ms(&self, level: i32) -> i64 {
        let i = (level.clamp(1, self.len()) - 1) as usize;
        self.delays_ms[i]
    }

    /// The queue of [`SCHEDULE_TOPIC`] that holds `level`.
    pub fn queue_of(level: i32) -> i32 {
        level - 1
    }

    /// RocketMQ's `computeDeliverTimestamp`: when a message of `level` stored at
    /// `store_timestamp` is due.
    pub fn deliver_at(&self, level: i32, store_timestamp: i64) -> i64 {
        store_timestamp.saturating_add(self.delay_ms(level))
    }

    /// The level a hop towards an exact time `remaining_ms` away takes: the longest delay that
    /// does not pass it, or level 1 when even that does.
    pub fn level_for(&self, remaining_ms: i64) -> i32 {
        self.delays_ms
            .iter()
            .rposition(|&d| d <= remaining_ms)
            .map_or(1, |i| i as i32 + 1)
    }

    /// The tags code of a [`SCHEDULE_TOPIC`] record: its delivery time, from its `DELAY`
    /// property (and `TIMER_DELIVER_MS` when earlier) and its store time. `None` when the
    /// record carries no valid level: its tags code is then the usual one (as RocketMQ).
    pub fn tags_code(
        &self,
        delay: Option<&str>,
        timer_deliver_ms: Option<&str>,
        store_timestamp: i64,
    ) -> Option<i64> {
        let level: i32 = delay?.parse().ok().filter(|&l| l > 0)?;
        let due = self.deliver_at(level, store_timestamp);
        let exact = timer_deliver_ms.and_then(|t| t.parse::<i64>().ok());
        Some(exact.map_or(due, |t| t.min(due)))
    }
}

impl Default for DelayLevels {
    fn default() -> Self {
        DelayLevels::parse(DEFAULT_DELAY_LEVELS).expect("the default table parses")
    }
}

/// Delivery progress per level: level → the next queue offset of its schedule queue.
pub type DelayOffsets = BTreeMap<i32, i64>;

/// Parses RocketMQ's `config/delayOffset.json` (`{"offsetTable":{1:5,2:0}}`, fastjson's
/// unquoted integer keys, or quoted; RocketMQ 5's `dataVersion` is ignored).
pub fn parse_delay_offsets(text: &str) -> Result<DelayOffsets, OffsetJsonError> {
    let v = parse_fastjson(text)?;
    let shape = OffsetJsonError::Shape;
    let table = v
        .get("offsetTable")
        .and_then(|t| t.as_object())
        .ok_or_else(|| shape("no offsetTable object".into()))?;
    let mut out = DelayOffsets::new();
    for (level, offset) in table {
        let level: i32 = level
            .parse()
            .ok()
            .filter(|&l| l > 0)
            .ok_or_else(|| shape(format!("delay level {level:?} is not a positive integer")))?;
        let offset = offset
            .as_i64()
            .ok_or_else(|| shape(format!("offset of level {level} is not an integer")))?;
        out.insert(level, offset);
    }
    Ok(out)
}

/// Writes `config/delayOffset.json` as RocketMQ's `ConfigManager` does (fastjson, tabs, the
/// levels unquoted).
pub fn encode_delay_offsets(offsets: &DelayOffsets) -> String {
    let body: Vec<String> = offsets.iter().map(|(l, o)| format!("{l}:{o}")).collect();
    format!("{{\n\t\"offsetTable\":{{{}}}\n}}", body.join(","))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_table_is_rocketmqs() {
        let d = DelayLevels::default();
        assert_eq!(d.len(), 18);
        assert_eq!(d.delay_ms(1), 1_000);
        assert_eq!(d.delay_ms(3), 10_000);
        assert_eq!(d.delay_ms(18), 7_200_000);
        // Past the table: clamped, as RocketMQ clamps.
        assert_eq!(d.delay_ms(40), 7_200_000);
        assert_eq!(d.deliver_at(2, 1_000), 6_000);
        assert_eq!(retry_level(0), 3);
        assert_eq!(retry_level(13), 16);
    }

    #[test]
    fn bad_tables_say_why() {
        for bad in ["", "1x", "0s", "5s 1s", "s", "1.5s"] {
            assert!(DelayLevels::parse(bad).is_err(), "{bad:?}");
        }
        assert_eq!(DelayLevels::parse("2d").unwrap().delay_ms(1), 172_800_000);
    }

    #[test]
    fn a_hop_takes_the_longest_delay_that_does_not_pass_the_time() {
        let d = DelayLevels::default();
        assert_eq!(d.level_for(500), 1);
        assert_eq!(d.level_for(1_000), 1);
        assert_eq!(d.level_for(29_999), 3);
        assert_eq!(d.level_for(30_000), 4);
        assert_eq!(d.level_for(100 * 3_600_000), 18);
    }

    #[test]
    fn the_unit_tags_code_is_the_delivery_time() {
        let d = DelayLevels::default();
        assert_eq!(d.tags_code(Some("2"), None, 1_000), Some(6_000));
        assert_eq!(d.tags_code(Some("2"), Some("3000"), 1_000), Some(3_000));
        assert_eq!(d.tags_code(Some("2"), Some("9000"), 1_000), Some(6_000));
        assert_eq!(d.tags_code(Some("0"), None, 1_000), None);
        assert_eq!(d.tags_code(None, None, 1_000), None);
        assert_eq!(d.tags_code(Some("x"), None, 1_000), None);
    }

    #[test]
    fn delay_offsets_read_what_rocketmq_writes() {
        let t = parse_delay_offsets("{\n\t\"offsetTable\":{1:5,18:0}\n}").unwrap();
        assert_eq!(t, BTreeMap::from([(1, 5), (18, 0)]));
        let v5 = r#"{"dataVersion":{"counter":3,"timestamp":1},"offsetTable":{"3":7}}"#;
        assert_eq!(parse_delay_offsets(v5).unwrap(), BTreeMap::from([(3, 7)]));
        assert_eq!(parse_delay_offsets(&encode_delay_offsets(&t)).unwrap(), t);
        assert!(parse_delay_offsets("{\"offsetTable\":{0:1}}").is_err());
        assert!(parse_delay_offsets("{\"offsetTable\":{1:").is_err());
        assert!(parse_delay_offsets("[]").is_err());
    }
}
