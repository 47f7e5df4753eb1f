//! The `ops_model` entry point: operations on a store checked against an in-memory model.
//!
//! The byte encoding of [`ModelOp`]s ([`encode_model_ops`] / [`decode_model_ops`]) is
//! hand-written and frozen: the committed corpus under `fuzz/corpus/ops_model` is in it and
//! `tests/fuzz_corpus.rs` replays it. Do not change it, and do not switch to `arbitrary`.

use std::collections::BTreeMap;

use rocketstore::{Error, GetStatus, Message, PutStatus, Store};

use crate::files::copy_tree;
use crate::image::body_of;
use crate::input::ByteReader;
use crate::scratch::ScratchDir;
use crate::{fixture_config, LONG_TOPIC};

/// Most operations decoded by [`ops_model`].
const MAX_MODEL_OPS: usize = 64;

const MODEL_TOPICS: [&str; 3] = ["alpha", "beta", LONG_TOPIC];
const MODEL_TAGS: [Option<&str>; 4] = [None, Some("TagA"), Some("TagB"), Some("TagC")];

#[derive(Clone, Debug)]
struct ModelMessage {
    seq: u64,
    body: Vec<u8>,
    tags: Option<&'static str>,
    keys: Vec<String>,
    commitlog_offset: u64,
}

/// One operation of [`ops_model`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ModelOp {
    /// Put a message; the body is `len` bytes derived from the message's sequence number.
    Put {
        /// Topic index (modulo 3: alpha, beta, a 130-byte V2 topic).
        topic: u8,
        /// Queue id (modulo 3).
        queue: u8,
        /// Body length (modulo 2049).
        len: u16,
        /// Tag index (modulo 4, 0 = none).
        tag: u8,
        /// Keys: bit 0 a unique key `m<seq>`, bit 1 the shared key `shared`.
        keys: u8,
    },
    /// Get up to `max % 20 + 1` messages from queue offset `offset`.
    Get {
        /// Topic index.
        topic: u8,
        /// Queue id (modulo 3).
        queue: u8,
        /// Queue offset.
        offset: u8,
        /// Message count.
        max: u8,
    },
    /// Flush everything.
    Flush,
    /// Close (if open) and open again: a clean shutdown.
    Reopen,
    /// Close; later calls get `Error::Closed` until a reopen.
    Close,
    /// Copy the files of the running store (what a process crash leaves), then open the copy.
    Crash,
    /// `read_at` the commitlog offset of message `pick` (modulo count) and one byte after it.
    ReadAt {
        /// Which message.
        pick: u8,
    },
    /// Query the unique key of message `pick` and the shared key.
    Query {
        /// Which message.
        pick: u8,
    },
}

/// Decodes an [`ops_model`] input: at most 64 operations, opcode byte modulo 10 (puts are
/// three times as likely), missing bytes read as zero.
pub fn decode_model_ops(data: &[u8]) -> Vec<ModelOp> {
    let mut r = ByteReader::new(data);
    let mut ops = Vec::new();
    while !r.is_empty() && ops.len() < MAX_MODEL_OPS {
        ops.push(match r.u8() % 10 {
            0..=2 => ModelOp::Put {
                topic: r.u8(),
                queue: r.u8(),
                len: r.u16(),
                tag: r.u8(),
                keys: r.u8(),
            },
            3 => ModelOp::Get {
                topic: r.u8(),
                queue: r.u8(),
                offset: r.u8(),
                max: r.u8(),
            },
            4 => ModelOp::Flush,
            5 => ModelOp::Reopen,
            6 => ModelOp::Close,
            7 => ModelOp::Crash,
            8 => ModelOp::ReadAt { pick: r.u8() },
            _ => ModelOp::Query { pick: r.u8() },
        });
    }
    ops
}

/// Encodes operations as an [`ops_model`] input.
pub fn encode_model_ops(ops: &[ModelOp]) -> Vec<u8> {
    let mut out = Vec::new();
    for op in ops {
        match op {
            ModelOp::Put {
                topic,
                queue,
                len,
                tag,
                keys,
            } => {
                out.extend_from_slice(&[0, *topic, *queue]);
                out.extend_from_slice(&len.to_be_bytes());
                out.extend_from_slice(&[*tag, *keys]);
            }
            ModelOp::Get {
                topic,
                queue,
                offset,
                max,
            } => out.extend_from_slice(&[3, *topic, *queue, *offset, *max]),
            ModelOp::Flush => out.push(4),
            ModelOp::Reopen => out.push(5),
            ModelOp::Close => out.push(6),
            ModelOp::Crash => out.push(7),
            ModelOp::ReadAt { pick } => out.extend_from_slice(&[8, *pick]),
            ModelOp::Query { pick } => out.extend_from_slice(&[9, *pick]),
        }
    }
    out
}

struct Model {
    queues: BTreeMap<(&'static str, i32), Vec<ModelMessage>>,
    seq: u64,
    end: u64,
}

impl Model {
    fn all(&self) -> Vec<(&'static str, i32, u64, &ModelMessage)> {
        self.queues
            .iter()
            .flat_map(|(&(t, q), msgs)| {
                msgs.iter()
                    .enumerate()
                    .map(move |(i, m)| (t, q, i as u64, m))
            })
            .collect()
    }
}

/// Runs the operations decoded from `data` ([`decode_model_ops`]) on a fresh store and checks
/// it against an in-memory model after every step: puts get the next queue offset and
/// increasing CommitLog offsets; gets return exactly the model's messages (body, tags, keys,
/// offsets) with the right status; flush makes everything durable; a clean reopen recovers the
/// same end with nothing to repair; a crash copy loses nothing (the page cache survives a
/// process crash); calls after close give `Error::Closed`; key queries find exactly the
/// model's messages. At the end every message is read back once more.
pub fn ops_model(data: &[u8]) {
    let ops = decode_model_ops(data);
    let scratch = ScratchDir::new("ops");
    // Default flusher periods (1 s): with a faster background checkpoint, `flush` races it
    // (see `bug_flush_races_the_background_checkpoint` in tests/fuzz_corpus.rs) and the replay
    // of this target's corpus would be flaky until that is fixed.
    let config = fixture_config();
    let mut generation = 0;
    let mut root = scratch.path().join("s0");
    let mut store = Store::open(&root, config.clone()).expect("fresh store opens");
    let mut open = true;
    let mut model = Model {
        queues: BTreeMap::new(),
        seq: 0,
        end: 0,
    };
    for (step, op) in ops.iter().enumerate() {
        let ctx = format!("step {step} {op:?}");
        match *op {
            ModelOp::Put {
                topic,
                queue,
                len,
                tag,
                keys,
            } => {
                let topic = MODEL_TOPICS[topic as usize % MODEL_TOPICS.len()];
                let queue = i32::from(queue % 3);
                let seq = model.seq;
                let body = body_of(seq as usize + 7, len as usize % 2049);
                let tags = MODEL_TAGS[tag as usize % MODEL_TAGS.len()];
                let mut key_list = Vec::new();
                if keys & 1 != 0 {
                    key_list.push(format!("m{seq}"));
                }
                if keys & 2 != 0 {
                    key_list.push("shared".to_string());
                }
                let mut msg = Message::new(topic, queue, &body).with_keys(key_list.clone());
                if let Some(t) = tags {
                    msg = msg.with_tags(t);
                }
                let res = store.put(&msg);
                if !open {
                    assert!(matches!(res, Err(Error::Closed)), "{ctx}: {res:?}");
                    continue;
                }
                let r = res.unwrap_or_else(|e| panic!("{ctx}: put failed: {e}"));
                let q = model.queues.entry((topic, queue)).or_default();
                assert_eq!(r.status, PutStatus::Ok, "{ctx}");
                assert_eq!(r.queue_offset, q.len() as u64, "{ctx}");
                assert!(
                    r.commitlog_offset >= model.end,
                    "{ctx}: {r:?} end {}",
                    model.end
                );
                assert_eq!(r.message_count, 1, "{ctx}");
                model.end = r.commitlog_offset + r.wrote_bytes as u64;
                assert_eq!(store.commitlog_max_offset(), model.end, "{ctx}");
                q.push(ModelMessage {
                    seq,
                    body,
                    tags,
                    keys: key_list,
                    commitlog_offset: r.commitlog_offset,
                });
                model.seq += 1;
            }
            ModelOp::Get {
                topic,
                queue,
                offset,
                max,
            } => {
                let topic = MODEL_TOPICS[topic as usize % MODEL_TOPICS.len()];
                let queue = i32::from(queue % 3);
                let res = store.get(topic, queue, u64::from(offset), usize::from(max % 20) + 1);
                if !open {
                    assert!(matches!(res, Err(Error::Closed)), "{ctx}");
                    continue;
                }
                let got = res.unwrap_or_else(|e| panic!("{ctx}: get failed: {e}"));
                check_get(
                    &model,
                    topic,
                    queue,
                    u64::from(offset),
                    usize::from(max % 20) + 1,
                    &got,
                    &ctx,
                );
            }
            ModelOp::Flush => {
                let res = store.flush();
                if !open {
                    assert!(matches!(res, Err(Error::Closed)), "{ctx}");
                    continue;
                }
                res.unwrap_or_else(|e| panic!("{ctx}: flush failed: {e}"));
                assert_eq!(store.durable_offset(), model.end, "{ctx}");
            }
            ModelOp::Close => {
                let res = store.close();
                if open {
                    res.unwrap_or_else(|e| panic!("{ctx}: close failed: {e}"));
                } else {
                    assert!(matches!(res, Err(Error::Closed)), "{ctx}");
                }
                open = false;
            }
            ModelOp::Reopen => {
                if open {
                    store
                        .close()
                        .unwrap_or_else(|e| panic!("{ctx}: close failed: {e}"));
                }
                drop(store);
                store = Store::open(&root, config.clone())
                    .unwrap_or_else(|e| panic!("{ctx}: reopen failed: {e}"));
                open = true;
                let r = store.recovery_report();
                assert!(r.clean_shutdown && r.checkpoint_trusted, "{ctx}: {r:?}");
                assert!(!r.derived_rebuilt, "{ctx}: {r:?}");
                assert_eq!(
                    (r.end_offset, r.truncated_at),
                    (model.end, None),
                    "{ctx}: {r:?}"
                );
                check_all(&store, &model, &ctx);
            }
            ModelOp::Crash => {
                generation += 1;
                let copy = scratch.path().join(format!("s{generation}"));
                copy_tree(&root, &copy).unwrap_or_else(|e| panic!("{ctx}: copy failed: {e}"));
                let was_open = open;
                drop(store);
                root = copy;
                store = Store::open(&root, config.clone())
                    .unwrap_or_else(|e| panic!("{ctx}: open after crash failed: {e}"));
                open = true;
                let r = store.recovery_report();
                if was_open {
                    assert!(!r.clean_shutdown, "{ctx}: {r:?}");
                }
                assert_eq!(r.end_offset, model.end, "{ctx}: {r:?}");
                check_all(&store, &model, &ctx);
            }
            ModelOp::ReadAt { pick } => {
                let all = model.all();
                let Some(&(t, q, n, m)) = all.get(pick as usize % all.len().max(1)) else {
                    continue;
                };
                let res = store.read_at(m.commitlog_offset);
                if !open {
                    assert!(matches!(res, Err(Error::Closed)), "{ctx}");
                    continue;
                }
                let got = res.unwrap_or_else(|e| panic!("{ctx}: read_at failed: {e}"));
                check_message(&got.view(), t, q, n, m, &ctx);
                assert!(store.read_at(m.commitlog_offset + 1).is_err(), "{ctx}");
            }
            ModelOp::Query { pick } => {
                let all = model.all();
                let Some(&(t, q, n, m)) = all.get(pick as usize % all.len().max(1)) else {
                    continue;
                };
                let unique = format!("m{}", m.seq);
                let res = store.query_by_key(t, &unique, 0, i64::MAX, 64);
                if !open {
                    assert!(matches!(res, Err(Error::Closed)), "{ctx}");
                    continue;
                }
                let hits = res.unwrap_or_else(|e| panic!("{ctx}: query failed: {e}"));
                if m.keys.contains(&unique) {
                    assert_eq!(hits.len(), 1, "{ctx}");
                    check_message(&hits[0].view(), t, q, n, m, &ctx);
                } else {
                    assert!(hits.is_empty(), "{ctx}");
                }
                let shared = store
                    .query_by_key(t, "shared", 0, i64::MAX, 64)
                    .unwrap_or_else(|e| panic!("{ctx}: query failed: {e}"));
                let mut want: Vec<u64> = all
                    .iter()
                    .filter(|(tt, _, _, mm)| *tt == t && mm.keys.iter().any(|k| k == "shared"))
                    .map(|(_, _, _, mm)| mm.commitlog_offset)
                    .collect();
                want.sort_unstable_by(|a, b| b.cmp(a));
                want.truncate(64);
                let got: Vec<u64> = shared.iter().map(|h| h.view().commitlog_offset()).collect();
                assert_eq!(got, want, "{ctx}: shared-key hits, newest first");
            }
        }
    }
    if !open {
        drop(store);
        store = Store::open(&root, config).expect("final reopen");
    }
    check_all(&store, &model, "final");
    store.close().expect("final close");
}

fn check_message(
    v: &rocketstore::MessageView<'_>,
    topic: &str,
    queue: i32,
    queue_offset: u64,
    m: &ModelMessage,
    ctx: &str,
) {
    assert_eq!(
        (
            v.topic(),
            v.queue_id(),
            v.queue_offset(),
            v.commitlog_offset()
        ),
        (topic, queue, queue_offset, m.commitlog_offset),
        "{ctx}"
    );
    assert_eq!(
        v.body(),
        &m.body[..],
        "{ctx}: body of {topic}:{queue}@{queue_offset}"
    );
    assert_eq!(v.tags(), m.tags, "{ctx}");
    assert_eq!(v.keys().collect::<Vec<_>>(), m.keys, "{ctx}");
}

#[allow(clippy::too_many_arguments)]
fn check_get(
    model: &Model,
    topic: &'static str,
    queue: i32,
    offset: u64,
    max: usize,
    got: &rocketstore::GetResult,
    ctx: &str,
) {
    let Some(msgs) = model.queues.get(&(topic, queue)) else {
        assert_eq!(got.status(), GetStatus::NoMatchedLogicQueue, "{ctx}");
        assert!(got.is_empty(), "{ctx}");
        return;
    };
    let len = msgs.len() as u64;
    assert_eq!((got.min_offset(), got.max_offset()), (0, len), "{ctx}");
    let want_status = if offset < len {
        GetStatus::Found
    } else if offset == len {
        GetStatus::OffsetOverflowOne
    } else {
        GetStatus::OffsetOverflowBadly
    };
    assert_eq!(got.status(), want_status, "{ctx}");
    if offset >= len {
        assert!(got.is_empty(), "{ctx}");
        return;
    }
    // Bodies are at most 2 KiB, far under the 256 KiB budget: the count is max or the rest.
    let n = (max as u64).min(len - offset) as usize;
    assert_eq!(got.len(), n, "{ctx}");
    assert_eq!(got.next_offset(), offset + n as u64, "{ctx}");
    for (i, v) in got.messages().enumerate() {
        let qo = offset + i as u64;
        check_message(&v, topic, queue, qo, &msgs[qo as usize], ctx);
    }
}

fn check_all(store: &Store, model: &Model, ctx: &str) {
    let mut topics: Vec<String> = model.queues.keys().map(|(t, _)| t.to_string()).collect();
    topics.dedup();
    assert_eq!(store.topics(), topics, "{ctx}");
    assert_eq!(store.commitlog_max_offset(), model.end, "{ctx}");
    for (&(topic, queue), msgs) in &model.queues {
        let mut offset = 0;
        while offset < msgs.len() as u64 {
            let got = store
                .get(topic, queue, offset, 32)
                .unwrap_or_else(|e| panic!("{ctx}: get {topic}:{queue}@{offset}: {e}"));
            check_get(model, topic, queue, offset, 32, &got, ctx);
            offset = got.next_offset();
        }
    }
}
