//! What goes in ([`Message`]) and what comes out ([`MessageView`]) of the store.

use std::borrow::Cow;
use std::fmt;
use std::net::SocketAddr;
use std::ops::Range;

use crate::format::properties;
use crate::format::record::RecordView;
use crate::format::schedule;

/// A message to append. Borrows its topic, body and properties where it can, so building one
/// and putting it allocates nothing inside the store.
///
/// ```
/// use rocketstore::Message;
/// let m = Message::new("orders", 3, b"body")
///     .with_tags("TagA")
///     .with_keys(["ORDER-100"])
///     .with_property("source", "web");
/// assert_eq!(m.topic(), "orders");
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message<'a> {
    pub(crate) topic: Cow<'a, str>,
    pub(crate) queue_id: i32,
    pub(crate) body: Cow<'a, [u8]>,
    pub(crate) tags: Option<Cow<'a, str>>,
    pub(crate) keys: Vec<Cow<'a, str>>,
    pub(crate) properties: Vec<(Cow<'a, str>, Cow<'a, str>)>,
    pub(crate) flag: i32,
    pub(crate) born_timestamp: Option<i64>,
    pub(crate) born_host: Option<SocketAddr>,
    pub(crate) reconsume_times: i32,
}

impl<'a> Message<'a> {
    /// A message for queue `queue_id` of `topic` carrying `body`.
    pub fn new<B: AsRef<[u8]> + ?Sized>(
        topic: impl Into<Cow<'a, str>>,
        queue_id: i32,
        body: &'a B,
    ) -> Self {
        Self::with_body(topic, queue_id, Cow::Borrowed(body.as_ref()))
    }

    /// Like [`Message::new`] but taking an owned body.
    pub fn from_vec(topic: impl Into<Cow<'a, str>>, queue_id: i32, body: Vec<u8>) -> Self {
        Self::with_body(topic, queue_id, Cow::Owned(body))
    }

    fn with_body(topic: impl Into<Cow<'a, str>>, queue_id: i32, body: Cow<'a, [u8]>) -> Self {
        Message {
            topic: topic.into(),
            queue_id,
            body,
            tags: None,
            keys: Vec::new(),
            properties: Vec::new(),
            flag: 0,
            born_timestamp: None,
            born_host: None,
            reconsume_times: 0,
        }
    }

    /// Sets the tag (RocketMQ `TAGS`); consumers filter on it through the ConsumeQueue.
    pub fn with_tags(mut self, tags: impl Into<Cow<'a, str>>) -> Self {
        self.tags = Some(tags.into());
        self
    }

    /// Sets the business keys (RocketMQ `KEYS`, space separated on disk); each is indexed so
    /// [`Store::query_by_key`](crate::Store::query_by_key) finds the message. Keys must be
    /// non-empty and contain no space.
    pub fn with_keys<I, K>(mut self, keys: I) -> Self
    where
        I: IntoIterator<Item = K>,
        K: Into<Cow<'a, str>>,
    {
        self.keys = keys.into_iter().map(Into::into).collect();
        self
    }

    /// Adds a user property. `TAGS`, `KEYS` and `__CRC32#` are reserved (use the dedicated
    /// setters); names and values must be non-empty and free of the bytes 0x01 and 0x02.
    /// `UNIQ_KEY` is indexed like a key.
    pub fn with_property(
        mut self,
        name: impl Into<Cow<'a, str>>,
        value: impl Into<Cow<'a, str>>,
    ) -> Self {
        self.properties.push((name.into(), value.into()));
        self
    }

    /// Delivers the message after the delay of `level` (1-based, RocketMQ's delay levels:
    /// `1s 5s 10s 30s 1m 2m 3m 4m 5m 6m 7m 8m 9m 10m 20m 30m 1h 2h` by default): it waits in
    /// the schedule topic and is put into its topic when due. Sets the `DELAY` property.
    pub fn with_delay_level(self, level: i32) -> Self {
        self.with_property(schedule::DELAY, level.to_string())
    }

    /// Delivers the message at `epoch_ms` (beyond RocketMQ 4; a time already past delivers
    /// now). Sets the `TIMER_DELIVER_MS` property.
    pub fn with_deliver_time_ms(self, epoch_ms: i64) -> Self {
        self.with_property(schedule::TIMER_DELIVER_MS, epoch_ms.to_string())
    }

    /// Sets the opaque user flag (RocketMQ `Message.flag`).
    pub fn with_flag(mut self, flag: i32) -> Self {
        self.flag = flag;
        self
    }

    /// Sets the producer-side creation time (epoch ms). Default: the store time.
    pub fn with_born_timestamp(mut self, ms: i64) -> Self {
        self.born_timestamp = Some(ms);
        self
    }

    /// Sets the producer address. Default: the store host.
    pub fn with_born_host(mut self, host: SocketAddr) -> Self {
        self.born_host = Some(host);
        self
    }

    /// Sets the redelivery count.
    pub fn with_reconsume_times(mut self, n: i32) -> Self {
        self.reconsume_times = n;
        self
    }

    /// The topic.
    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// The queue id.
    pub fn queue_id(&self) -> i32 {
        self.queue_id
    }

    /// The body.
    pub fn body(&self) -> &[u8] {
        &self.body
    }

    /// Appends the encoded property text (TAGS, KEYS, then user properties) to `buf`. Returns
    /// where in `buf` the KEYS value (the keys joined by spaces) went, if there are keys.
    pub(crate) fn encode_properties(&self, buf: &mut Vec<u8>) -> Option<Range<usize>> {
        if let Some(t) = self.stored_tags() {
            properties::append_property(buf, properties::TAGS, t);
        }
        let mut keys = None;
        if !self.keys.is_empty() {
            buf.extend_from_slice(properties::KEYS.as_bytes());
            buf.push(properties::NAME_VALUE_SEPARATOR);
            let start = buf.len();
            for (i, k) in self.keys.iter().enumerate() {
                if i > 0 {
                    buf.push(b' ');
                }
                buf.extend_from_slice(k.as_bytes());
            }
            keys = Some(start..buf.len());
            buf.push(properties::PROPERTY_SEPARATOR);
        }
        for (n, v) in &self.properties {
            properties::append_property(buf, n, v);
        }
        keys
    }

    /// The TAGS value [`encode_properties`](Self::encode_properties) stores (none when empty).
    pub(crate) fn stored_tags(&self) -> Option<&str> {
        self.tags.as_deref().filter(|t| !t.is_empty())
    }

    /// The UNIQ_KEY value a reader of the stored record finds: the last such user property.
    pub(crate) fn stored_uniq_key(&self) -> Option<&str> {
        self.stored_property(properties::UNIQ_KEY)
    }

    /// The value of user property `name` a reader of the stored record finds (the last one).
    pub(crate) fn stored_property(&self, name: &str) -> Option<&str> {
        self.properties
            .iter()
            .rev()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_ref())
    }
}

/// A stored message, borrowed from the store's mapped files (nothing is copied).
///
/// Obtained from [`GetResult::messages`](crate::GetResult::messages),
/// [`StoredMessage::view`](crate::StoredMessage::view) and query results.
#[derive(Clone, Copy)]
pub struct MessageView<'a> {
    record: RecordView<'a>,
}

impl<'a> MessageView<'a> {
    pub(crate) fn new(record: RecordView<'a>) -> Self {
        MessageView { record }
    }

    /// The topic.
    pub fn topic(&self) -> &'a str {
        self.record.topic()
    }
    /// The queue id.
    pub fn queue_id(&self) -> i32 {
        self.record.queue_id()
    }
    /// Position in its queue (the ConsumeQueue index).
    pub fn queue_offset(&self) -> u64 {
        self.record.queue_offset() as u64
    }
    /// Absolute CommitLog offset of the record.
    pub fn commitlog_offset(&self) -> u64 {
        self.record.physical_offset() as u64
    }
    /// Size of the whole stored record in bytes.
    pub fn stored_size(&self) -> usize {
        self.record.total_size()
    }
    /// The body, borrowed from the mapped segment.
    pub fn body(&self) -> &'a [u8] {
        self.record.body()
    }
    /// The body CRC stored in the record (Java's masked CRC32).
    pub fn body_crc(&self) -> u32 {
        self.record.body_crc()
    }
    /// The tag, if any.
    pub fn tags(&self) -> Option<&'a str> {
        self.record.tags()
    }
    /// The business keys.
    pub fn keys(&self) -> impl Iterator<Item = &'a str> + 'a {
        self.record.keys()
    }
    /// The value of property `name`.
    pub fn property(&self, name: &str) -> Option<&'a str> {
        self.record.property(name)
    }
    /// A message to put again with everything this one carries — body, tags, keys, user
    /// properties (`UNIQ_KEY` included, so the message id a user sees stays), flag, born
    /// time and host, reconsume count — for `topic`'s queue `queue_id`. The store's own
    /// `__CRC32#` property is left out (the put writes a new one); the new record gets a new
    /// store time and offsets. Borrows from the view.
    pub fn to_message(&self, topic: impl Into<Cow<'a, str>>, queue_id: i32) -> Message<'a> {
        self.copy_without(topic, queue_id, &[])
    }

    /// [`MessageView::to_message`] leaving out the properties named in `drop` too. One pass
    /// over the stored properties (TAGS and KEYS taken as they go by), no copy of any text.
    pub(crate) fn copy_without(
        &self,
        topic: impl Into<Cow<'a, str>>,
        queue_id: i32,
        drop: &[&str],
    ) -> Message<'a> {
        let mut m = Message::new(topic, queue_id, self.body())
            .with_flag(self.flag())
            .with_born_timestamp(self.born_timestamp())
            .with_born_host(self.born_host())
            .with_reconsume_times(self.reconsume_times());
        m.properties.reserve(8);
        for (n, v) in properties::iter(self.record.properties()) {
            let (Ok(n), Ok(v)) = (std::str::from_utf8(n), std::str::from_utf8(v)) else {
                continue;
            };
            match n {
                properties::TAGS => m.tags = (!v.is_empty()).then_some(Cow::Borrowed(v)),
                properties::KEYS => {
                    m.keys = v
                        .split(properties::KEY_SEPARATOR)
                        .filter(|k| !k.is_empty())
                        .map(Cow::Borrowed)
                        .collect()
                }
                properties::CRC32 => {}
                n if drop.contains(&n) => {}
                n => m.properties.push((Cow::Borrowed(n), Cow::Borrowed(v))),
            }
        }
        m
    }

    /// The stored property text as it is (the record CRC property included).
    pub(crate) fn raw_properties(&self) -> &'a [u8] {
        self.record.properties()
    }

    /// All properties as (name, value), including TAGS, KEYS and the record CRC property;
    /// pairs that are not UTF-8 are skipped.
    pub fn properties(&self) -> impl Iterator<Item = (&'a str, &'a str)> + 'a {
        properties::iter(self.record.properties())
            .filter_map(|(n, v)| Some((std::str::from_utf8(n).ok()?, std::str::from_utf8(v).ok()?)))
    }
    /// The user flag.
    pub fn flag(&self) -> i32 {
        self.record.flag()
    }
    /// RocketMQ's SYSFLAG bits.
    pub fn sys_flag(&self) -> i32 {
        self.record.sys_flag()
    }
    /// Producer-side creation time (epoch ms).
    pub fn born_timestamp(&self) -> i64 {
        self.record.born_timestamp()
    }
    /// Time the store appended the record (epoch ms, non-decreasing in CommitLog order).
    pub fn store_timestamp(&self) -> i64 {
        self.record.store_timestamp()
    }
    /// Producer address.
    pub fn born_host(&self) -> SocketAddr {
        self.record.born_host()
    }
    /// Store address.
    pub fn store_host(&self) -> SocketAddr {
        self.record.store_host()
    }
    /// Redelivery count.
    pub fn reconsume_times(&self) -> i32 {
        self.record.reconsume_times()
    }
    /// The exact stored record bytes (RocketMQ's wire format for a pulled message).
    pub fn as_bytes(&self) -> &'a [u8] {
        self.record.as_bytes()
    }
    /// RocketMQ's "offset message id": uppercase hex of store address, port and CommitLog offset.
    pub fn msg_id(&self) -> String {
        offset_msg_id(self.record.store_host(), self.commitlog_offset())
    }
}

impl fmt::Debug for MessageView<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MessageView")
            .field("topic", &self.topic())
            .field("queue_id", &self.queue_id())
            .field("queue_offset", &self.queue_offset())
            .field("commitlog_offset", &self.commitlog_offset())
            .field("body_len", &self.body().len())
            .field("tags", &self.tags())
            .field("store_timestamp", &self.store_timestamp())
            .finish()
    }
}

/// The queue RocketMQ's `SelectMessageQueueByHash` picks for sharding key `key` among
/// `queue_count` queues: Java's `key.hashCode() % queue_count`, made non-negative. Every event
/// of one order id (or account, or user) goes to one queue, so an ordered consumer sees them in
/// order; the same key maps to the same queue as in a Java producer.
///
/// ```
/// assert_eq!(rocketstore::queue_for_key("ORDER-1", 8), rocketstore::queue_for_key("ORDER-1", 8));
/// assert!((0..8).contains(&rocketstore::queue_for_key("ORDER-2", 8)));
/// ```
///
/// # Panics
///
/// If `queue_count` is 0.
pub fn queue_for_key(key: &str, queue_count: u32) -> i32 {
    assert!(queue_count > 0, "queue_count must be positive");
    let n = i32::try_from(queue_count).unwrap_or(i32::MAX);
    // Java's `%` keeps the dividend's sign; `Math.abs` of the (small) remainder cannot overflow.
    (crate::format::java_hash::java_string_hash(key) % n).abs()
}

/// The CommitLog offset in an offset message id ([`MessageView::msg_id`], RocketMQ's
/// `MessageDecoder.decodeMessageId`): its last 8 bytes. `None` unless it is 32 (IPv4) or 56
/// (IPv6) hex digits.
pub(crate) fn offset_of_msg_id(id: &str) -> Option<u64> {
    if !(id.len() == 32 || id.len() == 56) || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    u64::from_str_radix(&id[id.len() - 16..], 16).ok()
}

/// RocketMQ `MessageDecoder.createMessageId`: hex of `addr ‖ port(i32) ‖ offset(i64)`.
pub(crate) fn offset_msg_id(store_host: SocketAddr, commitlog_offset: u64) -> String {
    use std::fmt::Write;
    let mut bytes = Vec::with_capacity(28);
    match store_host {
        SocketAddr::V4(a) => bytes.extend_from_slice(&a.ip().octets()),
        SocketAddr::V6(a) => bytes.extend_from_slice(&a.ip().octets()),
    }
    bytes.extend_from_slice(&(store_host.port() as i32).to_be_bytes());
    bytes.extend_from_slice(&commitlog_offset.to_be_bytes());
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02X}");
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn msg_id_matches_rocketmq_layout() {
        let id = offset_msg_id("10.0.0.1:10911".parse().unwrap(), 0x1234);
        assert_eq!(id, "0A00000100002A9F0000000000001234");
        let v6 = offset_msg_id("[::1]:1".parse().unwrap(), 1);
        assert_eq!(v6.len(), 56);
    }

    #[test]
    fn properties_encode_tags_keys_then_user_properties() {
        let m = Message::new("t", 0, b"x")
            .with_tags("TagA")
            .with_keys(["k1", "k2"])
            .with_property("a", "b");
        let mut buf = Vec::new();
        m.encode_properties(&mut buf);
        assert_eq!(buf, b"TAGS\x01TagA\x02KEYS\x01k1 k2\x02a\x01b\x02");
    }
}
