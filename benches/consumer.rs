//! The consumer layer against the machine and the store's own raw paths, in the same run.
//!
//! * `consumer/poll_1KiB_batch32` vs `raw_get/1KiB_batch32`: `Consumer::poll(32)` over queue 0
//!   of a store of 8 queues of 1 KiB messages (hot), against `Store::get_with` of the same
//!   batches (CRC verification on in both, the consumer default). Target ≥ 0.8×.
//! * `consumer/commit_<async|sync>` vs `raw_put/commit_sized_<async|sync>`:
//!   `Store::commit_offsets` of one queue in an Async and in a Sync store, against a put of a
//!   message of the same size (a commit is one).
//! * `consumer/put_to_wake` vs `ceiling_wake/condvar_ping_pong`: one producer puts a message,
//!   a consumer blocked in `get_waiting` wakes and reads it, then wakes the producer for the
//!   next one (so each wake-up is measured alone): latency from before `put` to the consumer
//!   holding the message. The ceiling is the same ping-pong with a bare `parking_lot` condvar
//!   and no store. Target p50 ≤ 20 µs (Async).
//!
//! Run: `cargo bench --bench consumer`.

mod common;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{
    bench_custom, fmt_ns, fmt_rate, print_summary, scale, stats, tempdir, where_line, Row, Timing,
};
use criterion::{Criterion, Throughput};
use parking_lot::{Condvar, Mutex};
use rocketstore::consumer::{ConsumerConfig, SeekTo, StartFrom};
use rocketstore::{FlushMode, GetOptions, Message, Store, StoreConfig};

const TOPIC: &str = "bench";
const QUEUES: u64 = 8;
const BATCH: u64 = 32;
const BODY: usize = 1024;

fn read_store() -> (tempfile::TempDir, Store, u64) {
    let per_queue = scale(32_768u64, 4_096);
    let dir = tempdir();
    let store = Store::open(dir.path(), StoreConfig::default()).unwrap();
    let body = vec![0x5Au8; BODY];
    for i in 0..per_queue * QUEUES {
        store
            .put(&Message::new(TOPIC, (i % QUEUES) as i32, &body).with_tags("TagA"))
            .unwrap();
    }
    store.flush().unwrap();
    (dir, store, per_queue)
}

fn bench_reads(c: &mut Criterion, timing: &Timing) {
    let (_dir, store, per_queue) = read_store();
    let batches = per_queue / BATCH;
    {
        const GROUP: &str = "raw_get";
        let mut g = c.benchmark_group(GROUP);
        timing.apply(&mut g);
        g.throughput(Throughput::Elements(BATCH));
        let opts = GetOptions::new(BATCH as usize);
        let mut next = 0u64;
        bench_custom(&mut g, GROUP, "1KiB_batch32", |iters| {
            let t0 = Instant::now();
            for _ in 0..iters {
                let r = store
                    .get_with(TOPIC, 0, (next % batches) * BATCH, &opts)
                    .unwrap();
                for m in r.messages() {
                    std::hint::black_box(m.body());
                }
                next += 1;
            }
            (t0.elapsed(), Vec::new())
        });
        g.finish();
    }
    {
        const GROUP: &str = "consumer";
        let mut g = c.benchmark_group(GROUP);
        timing.apply(&mut g);
        g.throughput(Throughput::Elements(BATCH));
        // One consumer, and only queue 0 holds messages for it: the same batches as raw_get.
        let (_dir2, one, _) = {
            let dir = tempdir();
            let s = Store::open(dir.path(), StoreConfig::default()).unwrap();
            let body = vec![0x5Au8; BODY];
            for _ in 0..per_queue {
                s.put(&Message::new(TOPIC, 0, &body).with_tags("TagA"))
                    .unwrap();
            }
            s.flush().unwrap();
            (dir, s, ())
        };
        let mut consumer = one
            .consumer(
                "bench",
                TOPIC,
                ConsumerConfig {
                    start_from: StartFrom::First,
                    auto_commit: false,
                    ..ConsumerConfig::default()
                },
            )
            .unwrap();
        let mut done = 0u64;
        bench_custom(&mut g, GROUP, "poll_1KiB_batch32", |iters| {
            let t0 = Instant::now();
            for _ in 0..iters {
                if done == batches {
                    consumer.seek(0, SeekTo::Start).unwrap();
                    done = 0;
                }
                let b = consumer.poll(BATCH as usize, Duration::ZERO).unwrap();
                debug_assert_eq!(b.len() as u64, BATCH);
                for m in b.messages() {
                    std::hint::black_box(m.body());
                }
                done += 1;
            }
            (t0.elapsed(), Vec::new())
        });
        drop(consumer);
        g.finish();
        one.close().unwrap();
    }
    store.close().unwrap();
}

fn bench_commits(c: &mut Criterion, timing: &Timing) {
    bench_commits_in(c, timing, FlushMode::Async);
    bench_commits_in(c, timing, FlushMode::Sync);
}

/// Commits against puts of the same size, in an Async or a Sync store (Sync: each returns once
/// durable, so both are a group commit's fdatasync apiece with one thread).
fn bench_commits_in(c: &mut Criterion, timing: &Timing, mode: FlushMode) {
    let suffix = match mode {
        FlushMode::Async => "async",
        FlushMode::Sync => "sync",
    };
    let dir = tempdir();
    let config = StoreConfig {
        flush_mode: mode,
        ..StoreConfig::default()
    };
    let store = Store::open(dir.path(), config).unwrap();
    for i in 0..1000 {
        store
            .put(&Message::new(TOPIC, 0, format!("{i}").as_bytes()))
            .unwrap();
    }
    // A commit record's body: version, group and topic names, one entry.
    let body_len = 1 + 2 + "bench".len() + 2 + TOPIC.len() + 2 + 12;
    {
        const GROUP: &str = "raw_put";
        let mut g = c.benchmark_group(GROUP);
        timing.apply(&mut g);
        g.throughput(Throughput::Elements(1));
        let body = vec![7u8; body_len];
        bench_custom(&mut g, GROUP, &format!("commit_sized_{suffix}"), |iters| {
            let t0 = Instant::now();
            for _ in 0..iters {
                store
                    .put(&Message::new("other", 0, &body).with_tags("bench"))
                    .unwrap();
            }
            (t0.elapsed(), Vec::new())
        });
        g.finish();
    }
    {
        const GROUP: &str = "consumer";
        let mut g = c.benchmark_group(GROUP);
        timing.apply(&mut g);
        g.throughput(Throughput::Elements(1));
        let mut n = 0u64;
        bench_custom(&mut g, GROUP, &format!("commit_{suffix}"), |iters| {
            let t0 = Instant::now();
            for _ in 0..iters {
                store
                    .commit_offsets("bench", TOPIC, &[(0, n % 1000)])
                    .unwrap();
                n += 1;
            }
            (t0.elapsed(), Vec::new())
        });
        g.finish();
    }
    store.close().unwrap();
}

/// Producer side of a ping-pong: `signal` starts one round, `wait_back` waits for its end.
struct Baton {
    turn: Mutex<u64>,
    cv: Condvar,
}

fn bench_wake(c: &mut Criterion, timing: &Timing) {
    let epoch = Instant::now();
    let now_ns = move || epoch.elapsed().as_nanos() as u64;
    {
        const GROUP: &str = "ceiling_wake";
        let mut g = c.benchmark_group(GROUP);
        timing.apply(&mut g);
        // Two condvars: the producer hands a timestamp to a sleeping consumer, which answers.
        let ping = Arc::new((Mutex::new(None::<u64>), Condvar::new()));
        let pong = Arc::new(Baton {
            turn: Mutex::new(0),
            cv: Condvar::new(),
        });
        let stop = Arc::new(AtomicBool::new(false));
        let lat = Arc::new(AtomicU64::new(0));
        let t = {
            let (ping, pong, stop, lat) = (ping.clone(), pong.clone(), stop.clone(), lat.clone());
            std::thread::spawn(move || loop {
                let mut slot = ping.0.lock();
                while slot.is_none() && !stop.load(Ordering::Acquire) {
                    ping.1.wait(&mut slot);
                }
                let Some(sent) = slot.take() else { return };
                drop(slot);
                lat.store(now_ns() - sent, Ordering::Release);
                *pong.turn.lock() += 1;
                pong.cv.notify_one();
            })
        };
        bench_custom(&mut g, GROUP, "condvar_ping_pong", |iters| {
            let mut lats = Vec::with_capacity(iters as usize);
            let t0 = Instant::now();
            for _ in 0..iters {
                let before = *pong.turn.lock();
                *ping.0.lock() = Some(now_ns());
                ping.1.notify_one();
                let mut turn = pong.turn.lock();
                while *turn == before {
                    pong.cv.wait(&mut turn);
                }
                lats.push(lat.load(Ordering::Acquire));
            }
            (t0.elapsed(), lats)
        });
        stop.store(true, Ordering::Release);
        ping.1.notify_all();
        t.join().unwrap();
        g.finish();
    }
    {
        const GROUP: &str = "consumer";
        let mut g = c.benchmark_group(GROUP);
        timing.apply(&mut g);
        let dir = tempdir();
        let store = Arc::new(Store::open(dir.path(), StoreConfig::default()).unwrap());
        let pong = Arc::new(Baton {
            turn: Mutex::new(0),
            cv: Condvar::new(),
        });
        let lat = Arc::new(AtomicU64::new(0));
        let t = {
            let (store, pong, lat) = (store.clone(), pong.clone(), lat.clone());
            std::thread::spawn(move || {
                let mut next = 0u64;
                let opts = GetOptions::new(1);
                loop {
                    let got =
                        match store.get_waiting(TOPIC, 0, next, &opts, Duration::from_secs(60)) {
                            Ok(g) => g,
                            Err(_) => return, // closed
                        };
                    let Some(m) = got.messages().next() else {
                        continue;
                    };
                    let sent = u64::from_le_bytes(m.body()[..8].try_into().unwrap());
                    lat.store(now_ns() - sent, Ordering::Release);
                    next = got.next_offset();
                    drop(got);
                    *pong.turn.lock() += 1;
                    pong.cv.notify_one();
                }
            })
        };
        bench_custom(&mut g, GROUP, "put_to_wake", |iters| {
            let mut lats = Vec::with_capacity(iters as usize);
            let t0 = Instant::now();
            for _ in 0..iters {
                let before = *pong.turn.lock();
                store
                    .put(&Message::new(TOPIC, 0, &now_ns().to_le_bytes()))
                    .unwrap();
                let mut turn = pong.turn.lock();
                while *turn == before {
                    pong.cv.wait(&mut turn);
                }
                lats.push(lat.load(Ordering::Acquire));
            }
            (t0.elapsed(), lats)
        });
        g.finish();
        store.close().unwrap();
        t.join().unwrap();
    }
}

fn main() {
    let mut c = common::criterion();
    let timing = Timing::new(1.0, 3.0, 30);
    bench_reads(&mut c, &timing);
    bench_commits(&mut c, &timing);
    bench_wake(&mut c, &timing);
    c.final_summary();

    let n = timing.samples;
    let mut rows = Vec::new();
    let poll = stats("consumer/poll_1KiB_batch32", n);
    let raw = stats("raw_get/1KiB_batch32", n);
    let rate = |s: &Option<common::Stats>, k: f64| s.as_ref().map(|s| s.per_s() * k);
    let (p, r) = (rate(&poll, BATCH as f64), rate(&raw, BATCH as f64));
    rows.push(
        Row::new("poll 32 × 1 KiB through the consumer, hot, CRC checked")
            .store(p.map_or("-".into(), fmt_rate))
            .ceiling(r.map_or("-".into(), |r| format!("{} raw get_with", fmt_rate(r))))
            .ratio(p.zip(r).map(|(p, r)| p / r))
            .target("≥ 0.8×", p.zip(r).map(|(p, r)| p / r >= 0.8)),
    );
    for (mode, label) in [("async", "Async"), ("sync", "Sync (durable on return)")] {
        let commit = stats(&format!("consumer/commit_{mode}"), n);
        let put = stats(&format!("raw_put/commit_sized_{mode}"), n);
        let (cm, pt) = (rate(&commit, 1.0), rate(&put, 1.0));
        rows.push(
            Row::new(format!("commit of one queue's offset, {label}"))
                .store(cm.map_or("-".into(), |r| fmt_rate(r).replace("msg/s", "commits/s")))
                .ceiling(pt.map_or("-".into(), |r| {
                    format!("{} puts of the same size", fmt_rate(r))
                }))
                .ratio(cm.zip(pt).map(|(c, p)| c / p)),
        );
    }
    let wake = stats("consumer/put_to_wake", n);
    let bare = stats("ceiling_wake/condvar_ping_pong", n);
    let p50 = |s: &Option<common::Stats>| s.as_ref().and_then(|s| s.pct_ns(50.0));
    let p99 = |s: &Option<common::Stats>| s.as_ref().and_then(|s| s.pct_ns(99.0));
    rows.push(
        Row::new("put → waiting consumer holds the message, Async, p50 / p99")
            .store(format!(
                "{} / {}",
                p50(&wake).map_or("-".into(), fmt_ns),
                p99(&wake).map_or("-".into(), fmt_ns)
            ))
            .ceiling(format!(
                "{} / {} condvar wake-up alone",
                p50(&bare).map_or("-".into(), fmt_ns),
                p99(&bare).map_or("-".into(), fmt_ns)
            ))
            .ratio(p50(&wake).zip(p50(&bare)).map(|(w, b)| w / b))
            .target("p50 ≤ 20 µs", p50(&wake).map(|w| w <= 20_000.0)),
    );
    print_summary(
        "consumers (benches/consumer.rs)",
        &[
            where_line(),
            "ratio = rocketstore / ceiling (latency: ceiling's multiple)".into(),
        ],
        &rows,
    );
}
