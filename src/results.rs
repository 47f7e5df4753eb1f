//! Results of puts, gets and queries.

use std::fmt;
use std::sync::Arc;

use crate::format::java_hash::java_string_hash;
use crate::format::record::{self, DecodeOptions, Decoded};
use crate::message::MessageView;
use crate::storage::MappedFile;

/// Outcome of a successful put (modelled on RocketMQ's `PutMessageStatus`; failures are `Err`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum PutStatus {
    /// Stored (and, in Sync mode, durable).
    Ok,
    /// Sync mode: stored, but the group commit did not finish within `sync_flush_timeout`; the
    /// message is not yet known to be durable.
    FlushDiskTimeout,
}

/// Where a put landed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PutResult {
    /// Ok or FlushDiskTimeout.
    pub status: PutStatus,
    /// CommitLog offset of the (first) record.
    pub commitlog_offset: u64,
    /// Queue offset of the (first) message.
    pub queue_offset: u64,
    /// Number of messages written (1 for `put`).
    pub message_count: usize,
    /// Bytes appended to the CommitLog.
    pub wrote_bytes: usize,
    /// Store timestamp written into the record(s).
    pub store_timestamp: i64,
}

/// Outcome of a get, modelled on RocketMQ's `GetMessageStatus`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum GetStatus {
    /// At least one message returned (or, with [`GetOptions::max_messages`] `0`, none was asked
    /// for and one is there to read at the offset).
    Found,
    /// Units were examined but none passed the tag filter.
    NoMatchedMessage,
    /// The CommitLog no longer holds the messages (deleted by retention).
    MessageWasRemoving,
    /// No unit at this offset although it is within `[min, max)`.
    OffsetFoundNull,
    /// `offset < min`; `next_offset` is `min`.
    OffsetTooSmall,
    /// `offset == max`: nothing new yet; `next_offset` is `offset`.
    OffsetOverflowOne,
    /// `offset > max`; `next_offset` is `max`.
    OffsetOverflowBadly,
    /// The queue exists but has never held a message.
    NoMessageInQueue,
    /// No such (topic, queue).
    NoMatchedLogicQueue,
}

/// Tag subscription: `"*"` (or empty) matches everything, otherwise tags separated by `||`.
///
/// Units are matched by tag hash first (as RocketMQ does through the ConsumeQueue), then the
/// record's tag string is compared, so hash collisions never deliver a wrong tag.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TagFilter {
    tags: Vec<String>,
    codes: Vec<i32>,
}

impl TagFilter {
    /// Parses `"TagA || TagB"`; `"*"` or an empty string matches everything.
    pub fn parse(expr: &str) -> TagFilter {
        let expr = expr.trim();
        if expr.is_empty() || expr == "*" {
            return TagFilter {
                tags: Vec::new(),
                codes: Vec::new(),
            };
        }
        let tags: Vec<String> = expr
            .split("||")
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .map(String::from)
            .collect();
        let codes = tags.iter().map(|t| java_string_hash(t)).collect();
        TagFilter { tags, codes }
    }

    /// Whether this filter lets everything through.
    pub fn is_all(&self) -> bool {
        self.tags.is_empty()
    }

    pub(crate) fn matches_code(&self, tags_code: i64) -> bool {
        self.is_all() || self.codes.contains(&(tags_code as i32))
    }

    pub(crate) fn matches_tag(&self, tag: Option<&str>) -> bool {
        self.is_all() || tag.is_some_and(|t| self.tags.iter().any(|x| x == t))
    }
}

/// Options of [`Store::get_with`](crate::Store::get_with).
///
/// ```
/// use rocketstore::{GetOptions, GetStatus, Message, Store, StoreConfig, TagFilter};
/// # let dir = tempfile::tempdir().unwrap();
/// let store = Store::open(dir.path(), StoreConfig::small())?;
/// store.put(&Message::new("t", 0, b"a").with_tags("TagA"))?;
/// store.put(&Message::new("t", 0, b"b").with_tags("TagB"))?;
/// store.put(&Message::new("t", 0, b"c").with_tags("TagC"))?;
/// let opts = GetOptions {
///     tag_filter: Some(TagFilter::parse("TagA || TagC")),
///     verify_crc: true,
///     ..GetOptions::new(32)
/// };
/// let got = store.get_with("t", 0, 0, &opts)?;
/// assert_eq!(got.status(), GetStatus::Found);
/// let bodies: Vec<&[u8]> = got.messages().map(|m| m.body()).collect();
/// assert_eq!(bodies, [b"a", b"c"]);
/// assert_eq!(got.next_offset(), 3); // filtered units are consumed too
/// # Ok::<(), rocketstore::Error>(())
/// ```
#[derive(Clone, Debug)]
pub struct GetOptions {
    /// At most this many messages. Default 32.
    ///
    /// `0` reads nothing: the result holds no message and nothing is consumed. Its status is
    /// what the offset alone says: [`GetStatus::Found`] with `next_offset == offset` when
    /// `offset` is within `[min, max)` (a message is there to read; it is not decoded), otherwise
    /// the usual [`GetStatus::OffsetTooSmall`], [`GetStatus::OffsetOverflowOne`], ... with their
    /// `next_offset`.
    pub max_messages: usize,
    /// Stop before the total stored size would exceed this (the first message is always
    /// returned). Default 256 KiB (RocketMQ `maxTransferBytesOnMessageInMemory`).
    pub max_bytes: usize,
    /// Tag filter; `None` matches everything.
    pub tag_filter: Option<TagFilter>,
    /// Verify the CRCs of every returned message: `__CRC32#` where the record has it, BODYCRC
    /// where it does not. Default true, as Kafka's consumers do (`check.crcs`); RocketMQ's
    /// broker does not check on reads. A damaged record fails the `get` that starts at it with
    /// [`Error::CorruptRecord`](crate::Error::CorruptRecord) naming its file and offset; a
    /// `get` that starts before it returns the messages up to it. Turning it off saves one
    /// CRC pass over each record (the README's read table has the cost).
    pub verify_crc: bool,
    /// Return only messages whose record is durable (entirely below the CommitLog's durable
    /// offset, [`StoreStats::durable_offset`](crate::StoreStats::durable_offset)); the result's
    /// max offset is then one past the newest durable message. Default false: a `get` sees every
    /// message whose `put` returned, and in Async mode, or in Sync mode while its sync runs,
    /// that includes messages a power loss can still take back (a crash of the process alone
    /// cannot: their bytes are in the page cache). Consumers of a Sync store read durable only
    /// by default ([`crate::consumer`]).
    pub durable_only: bool,
}

impl Default for GetOptions {
    fn default() -> Self {
        GetOptions {
            max_messages: 32,
            max_bytes: 256 * 1024,
            tag_filter: None,
            verify_crc: true,
            durable_only: false,
        }
    }
}

impl GetOptions {
    /// Default options with `max_messages` set.
    pub fn new(max_messages: usize) -> Self {
        GetOptions {
            max_messages,
            ..GetOptions::default()
        }
    }
}

/// Messages read from one queue: borrowed views into the mapped segments, which this result
/// keeps alive until it is dropped.
///
/// ```
/// use rocketstore::{GetStatus, Message, Store, StoreConfig};
/// # let dir = tempfile::tempdir().unwrap();
/// let store = Store::open(dir.path(), StoreConfig::small())?;
/// for i in 0..3u8 {
///     store.put(&Message::new("t", 1, &[i]).with_keys([format!("k{i}")]))?;
/// }
/// let got = store.get("t", 1, 1, 32)?;
/// assert_eq!((got.status(), got.len()), (GetStatus::Found, 2));
/// assert_eq!((got.min_offset(), got.max_offset(), got.next_offset()), (0, 3, 3));
/// for m in got.messages() {
///     assert_eq!(m.body(), [m.queue_offset() as u8]);
///     assert_eq!(m.keys().next(), Some(format!("k{}", m.queue_offset()).as_str()));
/// }
/// // Past the end: nothing, and where to continue.
/// assert_eq!(store.get("t", 1, 3, 32)?.status(), GetStatus::OffsetOverflowOne);
/// # Ok::<(), rocketstore::Error>(())
/// ```
pub struct GetResult {
    pub(crate) status: GetStatus,
    pub(crate) next_offset: u64,
    pub(crate) min_offset: u64,
    pub(crate) max_offset: u64,
    pub(crate) files: Vec<Arc<MappedFile>>,
    /// (index into `files`, position, size) per message.
    pub(crate) items: Vec<(u32, u32, u32)>,
}

impl GetResult {
    pub(crate) fn empty(
        status: GetStatus,
        next_offset: u64,
        min_offset: u64,
        max_offset: u64,
    ) -> Self {
        GetResult {
            status,
            next_offset,
            min_offset,
            max_offset,
            files: Vec::new(),
            items: Vec::new(),
        }
    }

    pub(crate) fn push(&mut self, file: &Arc<MappedFile>, pos: usize, size: usize) {
        if !self.files.last().is_some_and(|f| Arc::ptr_eq(f, file)) {
            self.files.push(file.clone());
        }
        self.items
            .push(((self.files.len() - 1) as u32, pos as u32, size as u32));
    }

    /// The status.
    pub fn status(&self) -> GetStatus {
        self.status
    }
    /// Queue offset to ask for next.
    pub fn next_offset(&self) -> u64 {
        self.next_offset
    }
    /// Smallest queue offset still readable.
    pub fn min_offset(&self) -> u64 {
        self.min_offset
    }
    /// One past the newest queue offset.
    pub fn max_offset(&self) -> u64 {
        self.max_offset
    }
    /// Number of messages.
    pub fn len(&self) -> usize {
        self.items.len()
    }
    /// Whether no message was returned.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }
    /// Total stored bytes of the returned messages.
    pub fn total_bytes(&self) -> usize {
        self.items.iter().map(|i| i.2 as usize).sum()
    }
    /// The messages in queue order.
    pub fn messages(&self) -> impl ExactSizeIterator<Item = MessageView<'_>> + '_ {
        self.items
            .iter()
            .map(move |&(f, pos, size)| view(&self.files[f as usize], pos as usize, size as usize))
    }
}

impl fmt::Debug for GetResult {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GetResult")
            .field("status", &self.status)
            .field("next_offset", &self.next_offset)
            .field("min_offset", &self.min_offset)
            .field("max_offset", &self.max_offset)
            .field("messages", &self.items.len())
            .finish()
    }
}

/// Decodes a record that was validated when it was located. Bytes below a segment's write
/// position never change while it is mapped, so this cannot fail; if it ever did, the slice is
/// replaced by a view of nothing rather than a panic.
fn view(file: &MappedFile, pos: usize, size: usize) -> MessageView<'_> {
    let bytes = file.read(pos, size).unwrap_or(&[]);
    let opts = DecodeOptions::structure_only(usize::MAX);
    match record::decode(bytes, &opts) {
        Ok(Decoded::Record(r)) => MessageView::new(r),
        _ => unreachable!(
            "record at {pos} of {} was validated when located",
            file.path().display()
        ),
    }
}

/// One stored message held by an owned handle (keeps its segment mapped); what
/// [`Store::read_at`](crate::Store::read_at) and [`Store::query_by_key`](crate::Store::query_by_key)
/// return.
///
/// ```
/// use rocketstore::{Message, Store, StoreConfig};
/// # let dir = tempfile::tempdir().unwrap();
/// let store = Store::open(dir.path(), StoreConfig::small())?;
/// let put = store.put(&Message::new("orders", 0, b"paid").with_keys(["ORDER-7"]))?;
/// let hits = store.query_by_key("orders", "ORDER-7", 0, i64::MAX, 16)?;
/// assert_eq!(hits.len(), 1);
/// let m = hits[0].view();
/// assert_eq!((m.body(), m.commitlog_offset()), (&b"paid"[..], put.commitlog_offset));
/// assert_eq!(store.read_at(put.commitlog_offset)?.view().body(), b"paid");
/// # Ok::<(), rocketstore::Error>(())
/// ```
#[derive(Clone)]
pub struct StoredMessage {
    pub(crate) file: Arc<MappedFile>,
    pub(crate) pos: usize,
    pub(crate) size: usize,
}

impl StoredMessage {
    /// The message.
    pub fn view(&self) -> MessageView<'_> {
        view(&self.file, self.pos, self.size)
    }
}

impl fmt::Debug for StoredMessage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.view().fmt(f)
    }
}

/// Which message [`Store::offset_for_timestamp`](crate::Store::offset_for_timestamp) picks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum TimeBoundary {
    /// The first message stored at or after the time (RocketMQ 5 `BoundaryType.LOWER`).
    #[default]
    Lower,
    /// The last message stored at or before the time (`BoundaryType.UPPER`).
    Upper,
}

/// One page of a key query ([`crate::Store::query_by_key_page`]), newest first.
#[derive(Debug)]
pub struct KeyPage {
    /// The messages, newest (highest CommitLog offset) first.
    pub messages: Vec<StoredMessage>,
    /// Pass as `before` to get the next, older page: the CommitLog offset of the oldest
    /// message here. `None` when this page was not full (there is nothing older).
    pub next: Option<u64>,
}
