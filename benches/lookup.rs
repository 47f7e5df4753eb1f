//! Key lookup through the IndexFile and time lookup through the ConsumeQueue, per-call p50/p99,
//! against in-memory ceilings measured in the same run.
//!
//! * `lookup/query_by_key`: `Store::query_by_key(topic, key, 0, i64::MAX, 16)` for random keys
//!   of a store holding 1M messages (128 B body, one unique key each, 8 queues); every call must
//!   find exactly its message.
//! * `lookup/offset_for_timestamp`: `Store::offset_for_timestamp` on queue 0 for random times
//!   within the queue's stored time range.
//! * `ceiling_in_memory/key`: a `HashMap<String, u64>` from key to CommitLog offset plus one read
//!   of the record's STORETIMESTAMP in the segment's mapping (the random access any index must
//!   pay to re-check a hit).
//! * `ceiling_in_memory/timestamp`: the same binary search over queue 0 done on an in-memory
//!   array of its CommitLog offsets, reading each probed record's STORETIMESTAMP from the
//!   segment's mapping.
//!
//! Run: `cargo bench --bench lookup`.

mod common;

use std::collections::HashMap;
use std::time::Instant;

use common::{
    be_i64, bench_custom, first_segment, fmt_ns, map_ro, print_summary, scale, stats, tempdir,
    where_line, Rng, Row, Stats, Timing, REC_STORE_TIMESTAMP,
};
use criterion::{Criterion, Throughput};
use rocketstore::{Message, Store, StoreConfig};

const TOPIC: &str = "bench";
const QUEUES: u64 = 8;

struct Fixture {
    _dir: tempfile::TempDir,
    store: Store,
    keys: Vec<String>,
    /// CommitLog offset of message i (= of keys[i]).
    offsets: Vec<u64>,
    /// CommitLog offsets of queue 0's messages, in queue order.
    queue0: Vec<u64>,
    t_first: i64,
    t_last: i64,
}

fn key(i: u64) -> String {
    format!("ORDER-{i:010}")
}

fn fixture() -> Fixture {
    let n = scale(1_000_000u64, 100_000);
    let dir = tempdir();
    let store = Store::open(dir.path(), StoreConfig::default()).unwrap();
    let body = vec![0x5Au8; 128];
    let mut keys = Vec::with_capacity(n as usize);
    let mut offsets = Vec::with_capacity(n as usize);
    let mut queue0 = Vec::new();
    let (mut t_first, mut t_last) = (i64::MAX, i64::MIN);
    for i in 0..n {
        let k = key(i);
        let q = i % QUEUES;
        let r = store
            .put(
                &Message::new(TOPIC, q as i32, &body)
                    .with_tags("TagA")
                    .with_keys([k.as_str()]),
            )
            .unwrap();
        if q == 0 {
            queue0.push(r.commitlog_offset);
            t_first = t_first.min(r.store_timestamp);
            t_last = t_last.max(r.store_timestamp);
        }
        keys.push(k);
        offsets.push(r.commitlog_offset);
    }
    store.flush().unwrap();
    Fixture {
        _dir: dir,
        store,
        keys,
        offsets,
        queue0,
        t_first,
        t_last,
    }
}

fn bench_store(c: &mut Criterion, timing: &Timing, fx: &Fixture) {
    const GROUP: &str = "lookup";
    let mut g = c.benchmark_group(GROUP);
    timing.apply(&mut g);
    g.throughput(Throughput::Elements(1));
    let n = fx.keys.len() as u64;
    let mut rng = Rng::new(42);
    bench_custom(&mut g, GROUP, "query_by_key", |iters| {
        let mut lat = Vec::with_capacity(iters as usize);
        let t0 = Instant::now();
        for _ in 0..iters {
            let i = rng.below(n) as usize;
            let t = Instant::now();
            let hits = fx
                .store
                .query_by_key(TOPIC, &fx.keys[i], 0, i64::MAX, 16)
                .unwrap();
            lat.push(t.elapsed().as_nanos() as u64);
            assert_eq!(hits.len(), 1, "key {} not found exactly once", fx.keys[i]);
        }
        (t0.elapsed(), lat)
    });
    let span = (fx.t_last - fx.t_first + 1) as u64;
    let mut rng = Rng::new(7);
    bench_custom(&mut g, GROUP, "offset_for_timestamp", |iters| {
        let mut lat = Vec::with_capacity(iters as usize);
        let t0 = Instant::now();
        for _ in 0..iters {
            let ts = fx.t_first + rng.below(span) as i64;
            let t = Instant::now();
            let off = fx.store.offset_for_timestamp(TOPIC, 0, ts).unwrap();
            lat.push(t.elapsed().as_nanos() as u64);
            std::hint::black_box(off);
        }
        (t0.elapsed(), lat)
    });
    g.finish();
}

fn bench_ceiling(c: &mut Criterion, timing: &Timing, fx: &Fixture) {
    const GROUP: &str = "ceiling_in_memory";
    let mut g = c.benchmark_group(GROUP);
    timing.apply(&mut g);
    g.throughput(Throughput::Elements(1));
    // One segment holds the data set (1M × ~250 B < 1 GiB).
    assert!(*fx.offsets.last().unwrap() < StoreConfig::default().commitlog_segment_size as u64);
    let log = map_ro(&first_segment(fx.store.root()));
    let map: HashMap<String, u64> = fx
        .keys
        .iter()
        .cloned()
        .zip(fx.offsets.iter().copied())
        .collect();
    let n = fx.keys.len() as u64;
    let mut rng = Rng::new(42);
    bench_custom(&mut g, GROUP, "key", |iters| {
        let mut lat = Vec::with_capacity(iters as usize);
        let t0 = Instant::now();
        for _ in 0..iters {
            let i = rng.below(n) as usize;
            let t = Instant::now();
            let off = map[fx.keys[i].as_str()] as usize;
            std::hint::black_box(be_i64(&log, off + REC_STORE_TIMESTAMP));
            lat.push(t.elapsed().as_nanos() as u64);
        }
        (t0.elapsed(), lat)
    });
    let span = (fx.t_last - fx.t_first + 1) as u64;
    let mut rng = Rng::new(7);
    bench_custom(&mut g, GROUP, "timestamp", |iters| {
        let mut lat = Vec::with_capacity(iters as usize);
        let t0 = Instant::now();
        for _ in 0..iters {
            let ts = fx.t_first + rng.below(span) as i64;
            let t = Instant::now();
            let i = fx
                .queue0
                .partition_point(|&off| be_i64(&log, off as usize + REC_STORE_TIMESTAMP) < ts);
            std::hint::black_box(i);
            lat.push(t.elapsed().as_nanos() as u64);
        }
        (t0.elapsed(), lat)
    });
    g.finish();
}

fn pcts(s: &Option<Stats>) -> Option<(f64, f64)> {
    s.as_ref()
        .and_then(|s| Some((s.pct_ns(50.0)?, s.pct_ns(99.0)?)))
}

fn main() {
    let mut c = common::criterion();
    let timing = Timing::new(1.0, 3.0, 30);
    let fx = fixture();
    bench_ceiling(&mut c, &timing, &fx);
    bench_store(&mut c, &timing, &fx);
    c.final_summary();

    let n = timing.samples;
    let fmt = |p: Option<(f64, f64)>| {
        p.map_or("-".into(), |(a, b)| {
            format!("{} / {}", fmt_ns(a), fmt_ns(b))
        })
    };
    let key_s = pcts(&stats("lookup/query_by_key", n));
    let key_c = pcts(&stats("ceiling_in_memory/key", n));
    let ts_s = pcts(&stats("lookup/offset_for_timestamp", n));
    let ts_c = pcts(&stats("ceiling_in_memory/timestamp", n));
    let rows = vec![
        Row::new(format!("query_by_key, {} keys: p50 / p99", fx.keys.len()))
            .store(fmt(key_s))
            .ceiling(format!("{} HashMap + record read", fmt(key_c)))
            .ratio(key_s.zip(key_c).map(|(s, c)| s.0 / c.0))
            .target(
                "p50 ≤ 2 µs, p99 ≤ 10 µs",
                key_s.map(|(p50, p99)| p50 <= 2_000.0 && p99 <= 10_000.0),
            ),
        Row::new(format!(
            "offset_for_timestamp, queue of {}: p50 / p99",
            fx.queue0.len()
        ))
        .store(fmt(ts_s))
        .ceiling(format!("{} in-RAM CQ binary search", fmt(ts_c)))
        .ratio(ts_s.zip(ts_c).map(|(s, c)| s.0 / c.0)),
    ];
    let notes = vec![
        where_line(),
        "percentiles are per call over the measurement samples; ratio = p50 rocketstore / p50 ceiling (lower is better)".into(),
        "index: default 5M slots / 20M entries; query max = 16 results; keys drawn uniformly at random".into(),
    ];
    print_summary("key and time lookup (benches/lookup.rs)", &notes, &rows);
    fx.store.close().unwrap();
}
