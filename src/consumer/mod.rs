//! Consumers: what a RocketMQ consumer gets from its broker, as a library over a [`Store`].
//!
//! A [`Consumer`] belongs to a group and reads one topic. In [`MessageModel::Clustering`] the
//! group's consumers in this process split the topic's queues ([`allocate`]) and share one
//! committed offset per queue; they rebalance when a consumer joins or leaves, or the topic
//! gains a queue. In [`MessageModel::Broadcasting`] every consumer reads every queue and commits
//! offsets of its own. [`Consumer::poll`] returns messages of its queues in queue order and
//! waits (woken by the puts, see [`Store::get_waiting`]) while there is nothing; committed
//! offsets ([`Store::commit_offsets`]) are durable and crash-safe; `ordered` consumers hold a
//! consume lock per queue and retry a failed message in place.
//!
//! What a consumer sees: in a Sync store only durable messages by default
//! ([`ConsumerConfig::durable_only`]), so nothing it processed can be taken back by a power
//! loss; in an Async store everything put, as RocketMQ's consumers do.
//!
//! Several processes consuming one root: not supported. A root is opened by one process
//! ([`Error::Locked`] for the next), and consumers live in the process that has it open.
//!
//! [`Store`]: crate::Store
//! [`Store::get_waiting`]: crate::Store::get_waiting
//! [`Store::commit_offsets`]: crate::Store::commit_offsets

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::config::FlushMode;
use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::format::schedule;
use crate::message::MessageView;
use crate::results::{GetOptions, GetResult, GetStatus, TagFilter, TimeBoundary};

/// How a group's consumers share a topic (RocketMQ's `MessageModel`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum MessageModel {
    /// The queues are split among the group's consumers; one committed offset per queue.
    #[default]
    Clustering,
    /// Every consumer reads every queue, with committed offsets of its own.
    Broadcasting,
}

/// Where a consumer starts in a queue its group never committed (RocketMQ's
/// `ConsumeFromWhere`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum StartFrom {
    /// The newest end: only messages put from now on (RocketMQ's default,
    /// `CONSUME_FROM_LAST_OFFSET`).
    #[default]
    Last,
    /// The oldest message still stored.
    First,
    /// The first message stored at or after this time (epoch ms).
    Timestamp(i64),
}

/// Where [`Consumer::seek`] moves a queue's position.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SeekTo {
    /// A queue offset (at most the queue's max offset).
    Offset(u64),
    /// The first message stored at or after this time (epoch ms).
    Timestamp(i64),
    /// The oldest message still stored.
    Start,
    /// One past the newest message.
    End,
}

/// How a consumer consumes; [`ConsumerConfig::default`] is RocketMQ's push consumer's.
#[derive(Clone, Debug)]
pub struct ConsumerConfig {
    /// Clustering (default) or broadcasting.
    pub model: MessageModel,
    /// How clustering splits the queues among the group's consumers.
    pub strategy: allocate::Strategy,
    /// This consumer's id in its group (RocketMQ's client id); `None` gives a unique one. Two
    /// consumers of a group may not share an id.
    pub consumer_id: Option<String>,
    /// Only messages whose tag matches (`"TagA || TagB"`); `None` or `"*"`: all.
    pub tag_filter: Option<TagFilter>,
    /// Where to start in a queue the group never committed.
    pub start_from: StartFrom,
    /// Commit the positions reached by the previous [`Consumer::poll`] when the next one
    /// starts (and on rebalance and drop): a crash re-delivers at most the last batch.
    /// Default true; with false, call [`Consumer::commit`].
    pub auto_commit: bool,
    /// Read only durable messages. `None` (default): true for a Sync store, false for an Async
    /// one.
    pub durable_only: Option<bool>,
    /// Ordered consumption: hold a consume lock on each queue (one consumer of the group
    /// handles a queue at a time) and retry a [failed](Consumer::fail) message in place.
    pub ordered: bool,
    /// Ordered consumption: how long a queue waits after a failed message before it is
    /// delivered again. Default 1 s (RocketMQ's `suspendCurrentQueueTimeMillis`).
    pub retry_interval: Duration,
    /// Verify CRCs of every message read (default true, see [`GetOptions::verify_crc`]).
    pub verify_crc: bool,
    /// Clustering, not ordered: how many times a [failed](Consumer::fail) message is retried
    /// through the group's retry topic before it goes to its dead-letter topic (RocketMQ's
    /// `maxReconsumeTimes`, 16 by default: about 4 h 46 min of retries). The default for a
    /// group without an entry in `config/subscriptionGroup.json`: a group's `retryMaxTimes`
    /// there ([`Store::set_subscription_group`](crate::Store::set_subscription_group)) takes
    /// precedence.
    pub max_reconsume_times: i32,
}

impl Default for ConsumerConfig {
    fn default() -> Self {
        ConsumerConfig {
            model: MessageModel::Clustering,
            strategy: allocate::Strategy::default(),
            consumer_id: None,
            tag_filter: None,
            start_from: StartFrom::Last,
            auto_commit: true,
            durable_only: None,
            ordered: false,
            retry_interval: Duration::from_secs(1),
            verify_crc: true,
            max_reconsume_times: schedule::DEFAULT_MAX_RECONSUME_TIMES,
        }
    }
}

/// A consumer's state in one queue (see [`Consumer::lag`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QueueLag {
    /// The queue.
    pub queue_id: i32,
    /// The next offset this consumer reads.
    pub position: u64,
    /// What its group committed (`None`: never).
    pub committed: Option<u64>,
    /// One past the newest message of the queue.
    pub max_offset: u64,
    /// Messages after the committed offset (after the position when nothing was committed).
    pub lag: u64,
    /// Ordered consumption: how long the queue has been blocked by a failing message.
    pub blocked_for: Option<Duration>,
}

/// Where [`Consumer::send_back`] stored a failed message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SentBack {
    /// `%RETRY%group`, or `%DLQ%group` when its retries are used up.
    pub topic: String,
    /// The delay level it waits for (`None`: the dead-letter topic, no wait).
    pub delay_level: Option<i32>,
    /// Its reconsume count now.
    pub reconsume_times: i32,
    /// Where the stored copy is (in the schedule topic while it waits).
    pub commitlog_offset: u64,
}

/// Messages of one poll, queue by queue; each queue's messages in queue order.
pub struct Batch {
    parts: Vec<GetResult>,
}

impl Batch {
    /// Every message of the batch.
    pub fn messages(&self) -> impl Iterator<Item = MessageView<'_>> + '_ {
        self.parts.iter().flat_map(|p| p.messages())
    }

    /// How many messages.
    pub fn len(&self) -> usize {
        self.parts.iter().map(GetResult::len).sum()
    }

    /// Whether the poll found nothing.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// State of an assigned queue.
#[derive(Clone, Copy, Debug)]
struct Position {
    /// Next offset to read.
    next: u64,
    /// What this consumer last committed (or found committed).
    committed: Option<u64>,
    /// Ordered: not delivered again before this instant; and since when it fails.
    retry_at: Option<Instant>,
    failing_since: Option<Instant>,
}

/// A consumer of one topic in one group (see the module docs). `Send`: move it into the thread
/// that consumes. Dropping it leaves the group (after an auto-commit).
pub struct Consumer {
    engine: Arc<Engine>,
    group: String,
    topic: String,
    id: String,
    config: ConsumerConfig,
    durable_only: bool,
    /// The name offsets are committed under: the group, or in broadcasting the group and id.
    offset_group: String,
    /// Assigned (and, ordered, locked) queues.
    positions: BTreeMap<i32, Position>,
    /// Group generation and queue count the assignment was made for.
    assigned_for: Option<(u64, usize)>,
    /// The queues the last allocation gave this consumer (ordered: some may still be locked
    /// by their previous owner, and are taken when it lets go).
    wanted: Vec<i32>,
    /// Where the next poll starts looking (round robin over the queues).
    turn: usize,
    /// Clustering, not ordered: the consumer of the group's retry topic (`%RETRY%group`),
    /// polled with this one.
    retry: Option<Box<Consumer>>,
}

impl Consumer {
    pub(crate) fn new(
        engine: Arc<Engine>,
        group: &str,
        topic: &str,
        config: ConsumerConfig,
    ) -> Result<Consumer> {
        engine.check_open()?;
        crate::format::topic::check_topic(group).map_err(|reason| Error::InvalidGroup {
            group: group.into(),
            reason,
        })?;
        crate::format::topic::check_topic(topic).map_err(|reason| Error::InvalidTopic {
            topic: topic.into(),
            reason,
        })?;
        if let Some(id) = &config.consumer_id {
            crate::format::topic::check_topic(id).map_err(|reason| {
                Error::InvalidArgument(format!("consumer id {id:?}: {reason}"))
            })?;
        }
        let id = engine
            .groups()
            .join(group, topic, config.consumer_id.as_deref())
            .ok_or_else(|| {
                Error::InvalidArgument(format!(
                    "group {group} already has a consumer {:?} of {topic}",
                    config.consumer_id.as_deref().unwrap_or_default()
                ))
            })?;
        let offset_group = match config.model {
            MessageModel::Clustering => group.to_owned(),
            // RocketMQ keeps broadcasting offsets on the client, per client; here they live
            // beside the group's, under a name no clustering group can take by accident.
            MessageModel::Broadcasting => format!("{group}%BROADCAST%{id}"),
        };
        let durable_only = config
            .durable_only
            .unwrap_or(engine.config().flush_mode == FlushMode::Sync);
        // RocketMQ subscribes a clustering consumer to its group's retry topic by itself.
        // It starts at the retry topic's oldest message: a message sent back before this
        // consumer existed is still to be retried.
        let retry_topic = schedule::retry_topic(group);
        let retry = if config.model == MessageModel::Clustering
            && !config.ordered
            && topic != retry_topic
            && !topic.starts_with(schedule::DLQ_PREFIX)
        {
            let retry_config = ConsumerConfig {
                consumer_id: Some(id.clone()),
                start_from: StartFrom::First,
                tag_filter: None,
                ..config.clone()
            };
            match Consumer::new(engine.clone(), group, &retry_topic, retry_config) {
                Ok(c) => Some(Box::new(c)),
                // A consumer of another topic with this id already reads the group's retry
                // topic (one client subscribing several topics, as in RocketMQ).
                Err(Error::InvalidArgument(_)) => None,
                Err(e) => {
                    engine.groups().leave(group, topic, &id);
                    return Err(e);
                }
            }
        } else {
            None
        };
        Ok(Consumer {
            engine,
            group: group.to_owned(),
            topic: topic.to_owned(),
            id,
            config,
            durable_only,
            offset_group,
            positions: BTreeMap::new(),
            assigned_for: None,
            wanted: Vec::new(),
            turn: 0,
            retry,
        })
    }

    /// This consumer's id in its group.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The group.
    pub fn group(&self) -> &str {
        &self.group
    }

    /// The topic.
    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// The queues this consumer reads now (after the last rebalance), sorted.
    pub fn assigned(&mut self) -> Result<Vec<i32>> {
        self.rebalance()?;
        Ok(self.positions.keys().copied().collect())
    }

    /// Up to `max` messages of the assigned queues, waiting at most `timeout` while there are
    /// none. With `auto_commit`, first commits what the previous poll returned. Each queue's
    /// messages come in queue order; queues take turns. [`Error::Closed`] once the store
    /// closed.
    pub fn poll(&mut self, max: usize, timeout: Duration) -> Result<Batch> {
        if self.config.auto_commit {
            self.commit()?;
        }
        let deadline = Instant::now() + timeout;
        let max = max.max(1);
        loop {
            self.rebalance()?;
            let mut batch = self.read_once(max)?;
            if let Some(r) = self.retry.as_mut() {
                r.rebalance()?;
                if batch.len() < max {
                    let more = r.read_once(max - batch.len())?;
                    batch.parts.extend(more.parts);
                }
            }
            if !batch.is_empty() {
                return Ok(batch);
            }
            let now = Instant::now();
            if now >= deadline {
                return Ok(batch);
            }
            // Wait for a put into a queue we read (or a sync), or until a blocked ordered
            // queue is due again.
            let mut until = deadline;
            let mut targets = Vec::new();
            for (&q, p) in &self.positions {
                match p.retry_at {
                    Some(at) if at > now => until = until.min(at),
                    _ => targets.push((self.topic.as_str(), q, p.next)),
                }
            }
            if let Some(r) = &self.retry {
                for (&q, p) in &r.positions {
                    targets.push((r.topic.as_str(), q, p.next));
                }
            }
            let _ = self.engine.wait_for_messages(
                &targets,
                self.durable_only,
                until.saturating_duration_since(now).min(REBALANCE_CHECK),
            )?;
        }
    }

    /// One pass over the queues, starting with the one after the last served.
    fn read_once(&mut self, max: usize) -> Result<Batch> {
        let mut parts = Vec::new();
        let now = Instant::now();
        let mut left = max;
        let mut opts = GetOptions {
            tag_filter: self.config.tag_filter.clone(),
            verify_crc: self.config.verify_crc,
            durable_only: self.durable_only,
            ..GetOptions::new(left)
        };
        let n = self.positions.len();
        // The queues in turn order, starting after the last served (`get` below needs
        // `positions` mutable, so the order is taken first).
        let start = if n == 0 { 0 } else { self.turn % n };
        let order: Vec<i32> = self
            .positions
            .keys()
            .skip(start)
            .chain(self.positions.keys().take(start))
            .copied()
            .collect();
        for q in order {
            if left == 0 {
                break;
            }
            let p = self.positions[&q];
            if p.retry_at.is_some_and(|at| at > now) {
                continue;
            }
            opts.max_messages = left;
            let got = self.engine.get(&self.topic, q, p.next, &opts)?;
            let next = match got.status() {
                GetStatus::OffsetTooSmall | GetStatus::OffsetOverflowBadly => {
                    log::warn!(
                        "consumer {} of {}: offset {} of {}:{q} is out of the queue's range {}..{}: moving to {}",
                        self.id, self.group, p.next, self.topic, got.min_offset(), got.max_offset(), got.next_offset()
                    );
                    got.next_offset()
                }
                _ => got.next_offset().max(p.next),
            };
            self.positions.get_mut(&q).expect("assigned").next = next;
            if !got.is_empty() {
                left -= got.len();
                parts.push(got);
            }
        }
        self.turn = self.turn.wrapping_add(1);
        Ok(Batch { parts })
    }

    /// Commits the positions reached (everything returned so far counts as processed); in a
    /// Sync store durable on return. Only queues whose position moved are written.
    pub fn commit(&mut self) -> Result<()> {
        self.commit_queues(false)
    }

    /// [`Consumer::commit`] that is durable on return in an Async store too.
    pub fn commit_durable(&mut self) -> Result<()> {
        self.commit_queues(true)
    }

    fn commit_queues(&mut self, durable: bool) -> Result<()> {
        if let Some(r) = self.retry.as_mut() {
            r.commit_queues(durable)?;
        }
        let entries: Vec<(i32, u64)> = self
            .positions
            .iter()
            .filter(|(_, p)| p.committed != Some(p.next))
            .map(|(&q, p)| (q, p.next))
            .collect();
        if entries.is_empty() {
            return Ok(());
        }
        self.engine
            .commit_offsets(&self.offset_group, &self.topic, &entries, durable)?;
        for (q, o) in entries {
            if let Some(p) = self.positions.get_mut(&q) {
                p.committed = Some(o);
            }
        }
        Ok(())
    }

    /// Moves the position in `queue_id` (assigned or not: an unassigned queue's next owner
    /// starts from what is committed, so commit after seeking). [`Error::OffsetPastMax`] for an
    /// offset past the queue's end.
    pub fn seek(&mut self, queue_id: i32, to: SeekTo) -> Result<u64> {
        self.engine.check_open()?;
        let q = self.engine.queue(&self.topic, queue_id);
        let (min, max) = q
            .as_ref()
            .map_or((0, 0), |q| (q.min_offset(), q.max_offset()));
        let offset = match to {
            SeekTo::Offset(o) if o > max => {
                return Err(Error::OffsetPastMax {
                    topic: self.topic.clone(),
                    queue_id,
                    offset: o,
                    max,
                })
            }
            SeekTo::Offset(o) => o.max(min),
            SeekTo::Start => min,
            SeekTo::End => max,
            SeekTo::Timestamp(ms) => self.engine.offset_for_timestamp_with(
                &self.topic,
                queue_id,
                ms,
                TimeBoundary::Lower,
            )?,
        };
        let p = self.positions.entry(queue_id).or_insert(Position {
            next: offset,
            committed: None,
            retry_at: None,
            failing_since: None,
        });
        p.next = offset;
        p.retry_at = None;
        p.failing_since = None;
        Ok(offset)
    }

    /// `msg` failed. Ordered: its queue goes back to it and is not delivered again for
    /// [`ConsumerConfig::retry_interval`] (RocketMQ's `SUSPEND_CURRENT_QUEUE_A_MOMENT`),
    /// blocking the messages behind it; messages of that queue returned after `msg` must not be
    /// processed: they come again. Otherwise (clustering) it is [sent back](Consumer::send_back)
    /// for a retry after the delay of level 3 + its reconsume count. Broadcasting:
    /// [`Error::InvalidArgument`] (RocketMQ does not retry broadcast messages).
    pub fn fail(&mut self, msg: &MessageView<'_>) -> Result<()> {
        if !self.config.ordered {
            if self.config.model == MessageModel::Broadcasting {
                return Err(Error::InvalidArgument(
                    "broadcasting consumers do not retry (RocketMQ drops failed broadcast messages)"
                        .into(),
                ));
            }
            return self.send_back(msg, 0).map(|_| ());
        }
        let now = Instant::now();
        let Some(p) = self.positions.get_mut(&msg.queue_id()) else {
            return Err(Error::InvalidArgument(format!(
                "queue {} is not assigned to consumer {}",
                msg.queue_id(),
                self.id
            )));
        };
        p.next = msg.queue_offset();
        p.retry_at = Some(now + self.config.retry_interval);
        p.failing_since.get_or_insert(now);
        Ok(())
    }

    /// Stores `msg` again for a later retry, as RocketMQ's `consumerSendMsgBack`: into the
    /// group's retry topic `%RETRY%group` through the schedule, at `delay_level` (0: level 3 +
    /// the message's reconsume count; clamped to the table), with its reconsume count one
    /// higher, `RETRY_TOPIC` and `ORIGIN_MESSAGE_ID` saying where it came from and its
    /// `UNIQ_KEY` and other properties unchanged. A message that was retried as many times as
    /// the group's limit already, or a negative `delay_level`, goes to the dead-letter topic
    /// `%DLQ%group` instead. The limit is the group's `retryMaxTimes` in
    /// `config/subscriptionGroup.json` if it has an entry there, else
    /// [`ConsumerConfig::max_reconsume_times`]. (A RocketMQ broker lets a client's own
    /// `maxReconsumeTimes` override the group's; here the store's file decides.) Returns where it went. Durable on
    /// return in a Sync store; commit the consumer's position after it (auto-commit does).
    pub fn send_back(&mut self, msg: &MessageView<'_>, delay_level: i32) -> Result<SentBack> {
        self.engine.check_open()?;
        let times = msg.reconsume_times().max(0);
        let origin_topic = msg
            .property(schedule::RETRY_TOPIC)
            .unwrap_or(msg.topic())
            .to_owned();
        let origin_id = msg
            .property(schedule::ORIGIN_MESSAGE_ID)
            .map_or_else(|| msg.msg_id(), str::to_owned);
        let max_times = self
            .engine
            .retry_max_times(&self.group)
            .unwrap_or(self.config.max_reconsume_times);
        let to_dlq = delay_level < 0 || times >= max_times;
        let (topic, level) = if to_dlq {
            (schedule::dlq_topic(&self.group), None)
        } else {
            let level = match delay_level {
                0 => schedule::retry_level(times),
                l => l,
            };
            (
                schedule::retry_topic(&self.group),
                Some(level.clamp(1, self.engine.delay_levels().len())),
            )
        };
        let mut m = msg.to_message(topic.as_str(), 0);
        m.properties.retain(|(n, _)| {
            ![
                schedule::RETRY_TOPIC,
                schedule::ORIGIN_MESSAGE_ID,
                schedule::RECONSUME_TIME,
                schedule::MAX_RECONSUME_TIMES,
                schedule::DELAY,
                schedule::TIMER_DELIVER_MS,
                schedule::REAL_TOPIC,
                schedule::REAL_QID,
            ]
            .contains(&n.as_ref())
        });
        let mut m = m
            .with_reconsume_times(times + 1)
            .with_property(schedule::RETRY_TOPIC, origin_topic)
            .with_property(schedule::ORIGIN_MESSAGE_ID, origin_id)
            .with_property(schedule::RECONSUME_TIME, (times + 1).to_string())
            .with_property(schedule::MAX_RECONSUME_TIMES, max_times.to_string());
        if let Some(level) = level {
            m = m.with_delay_level(level);
        }
        let put = self.engine.put_batch(&[m])?;
        Ok(SentBack {
            topic,
            delay_level: level,
            reconsume_times: times + 1,
            commitlog_offset: put.commitlog_offset,
        })
    }

    /// Per assigned queue: position, committed offset, max offset, lag and (ordered) how long
    /// it has been blocked.
    pub fn lag(&mut self) -> Result<Vec<QueueLag>> {
        self.rebalance()?;
        let now = Instant::now();
        Ok(self
            .positions
            .iter()
            .map(|(&queue_id, p)| {
                let max_offset = self
                    .engine
                    .queue(&self.topic, queue_id)
                    .map_or(0, |q| q.max_offset());
                QueueLag {
                    queue_id,
                    position: p.next,
                    committed: p.committed,
                    max_offset,
                    lag: max_offset.saturating_sub(p.committed.unwrap_or(p.next)),
                    blocked_for: p.failing_since.map(|s| now - s),
                }
            })
            .collect())
    }

    /// Recomputes the assignment when the group or the topic's queues changed; commits (with
    /// `auto_commit`) and releases what is given up, and starts new queues at their committed
    /// offset.
    fn rebalance(&mut self) -> Result<()> {
        self.engine.check_open()?;
        // The cheap check on every poll: neither the group nor the topic's queues changed.
        let generation = self.engine.groups().generation(&self.group, &self.topic);
        if self.assigned_for == Some((generation, self.engine.queue_count(&self.topic))) {
            if self.config.ordered {
                self.lock_pending()?;
            }
            return Ok(());
        }
        let queues = self.engine.queue_ids(&self.topic);
        let (generation, members) = self.engine.groups().members(&self.group, &self.topic);
        let mine: Vec<i32> = match self.config.model {
            MessageModel::Broadcasting => queues.clone(),
            MessageModel::Clustering => {
                self.config
                    .strategy
                    .allocate_ids(&self.id, &members, &self.topic, &queues)
            }
        };
        let gone: Vec<i32> = self
            .positions
            .keys()
            .filter(|q| !mine.contains(q))
            .copied()
            .collect();
        if !gone.is_empty() {
            if self.config.auto_commit {
                self.commit()?;
            }
            for q in gone {
                self.positions.remove(&q);
                if self.config.ordered {
                    self.engine
                        .groups()
                        .unlock_queue(&self.group, &self.topic, q, &self.id);
                }
            }
        }
        self.wanted = mine;
        self.assigned_for = Some((generation, queues.len()));
        self.lock_pending()
    }

    /// Starts reading the wanted queues it does not read yet: ordered, those whose consume lock
    /// it gets.
    fn lock_pending(&mut self) -> Result<()> {
        for i in 0..self.wanted.len() {
            let q = self.wanted[i];
            if self.positions.contains_key(&q) {
                continue;
            }
            if self.config.ordered
                && self
                    .engine
                    .groups()
                    .lock_queue(&self.group, &self.topic, q, &self.id)
                    .is_err()
            {
                continue;
            }
            let committed = self
                .engine
                .committed_offset(&self.offset_group, &self.topic, q)?;
            let next = match committed {
                Some(o) => o,
                None => self.start_offset(q)?,
            };
            self.positions.insert(
                q,
                Position {
                    next,
                    committed,
                    retry_at: None,
                    failing_since: None,
                },
            );
        }
        Ok(())
    }

    /// Where [`ConsumerConfig::start_from`] puts a queue the group never committed.
    fn start_offset(&self, queue_id: i32) -> Result<u64> {
        let q = self.engine.queue(&self.topic, queue_id);
        let (min, max) = q
            .as_ref()
            .map_or((0, 0), |q| (q.min_offset(), q.max_offset()));
        Ok(match self.config.start_from {
            StartFrom::First => min,
            StartFrom::Last => max,
            StartFrom::Timestamp(ms) => self.engine.offset_for_timestamp_with(
                &self.topic,
                queue_id,
                ms,
                TimeBoundary::Lower,
            )?,
        })
    }

    /// Ordered consumption: takes the consume lock of `queue_id` for this consumer now, or
    /// fails with the id of the consumer holding it ([`Error::QueueLocked`]).
    pub fn lock_queue(&mut self, queue_id: i32) -> Result<()> {
        self.engine
            .groups()
            .lock_queue(&self.group, &self.topic, queue_id, &self.id)
            .map_err(|holder| Error::QueueLocked {
                group: self.group.clone(),
                topic: self.topic.clone(),
                queue_id,
                holder,
            })
    }
}

impl Drop for Consumer {
    fn drop(&mut self) {
        if self.config.auto_commit && self.engine.check_open().is_ok() {
            if let Err(e) = self.commit() {
                log::warn!(
                    "consumer {} of {}: commit on drop failed: {}",
                    self.id,
                    self.group,
                    crate::error::chain(&e)
                );
            }
        }
        self.engine
            .groups()
            .leave(&self.group, &self.topic, &self.id);
    }
}

/// How long a waiting poll sleeps at most before it looks at the group again (a consumer that
/// joined takes queues over within this).
const REBALANCE_CHECK: Duration = Duration::from_millis(200);

pub mod allocate;
