//! What a user measures: `rocketstore bench` on a fresh root, reproduced here next to the
//! steady state criterion measures, for the same message shape, in the same run.
//!
//! The shape is the CLI's: topic `BenchTopic`, 8 queues round-robin, one key `bench-0-<i>` per
//! message (indexed by the IndexFile), no tag, Async flush, 1 producer, default config (1 GiB
//! segments).
//!
//! * `steady/<size>_keyed`: criterion's view: one store written (untimed) past its first
//!   segment, then puts timed in batches of criterion's choosing.
//! * `fresh root` (custom): a new root per run, `Store::open` then N puts timed as one run, as
//!   `rocketstore bench --messages N` does (1 M × 128 B; 400 k × 1 KiB; 4 M × 128 B, which rolls
//!   into a second segment), 3 runs each. Reported: msgs/s of the median run, mean latency and
//!   p50 / p99 / p999 / worst put over all runs, and the stall distribution (puts ≥ 100 µs,
//!   ≥ 1 ms, ≥ 10 ms). The ratio is fresh / steady; issue 17's target is ≥ 0.8×.
//!
//! Run: `cargo bench --bench fresh_root` (`ROCKETSTORE_BENCH_QUICK=1` for a smoke run).

mod common;

use std::time::{Duration, Instant};

use common::{
    bench_custom, fmt_rate, print_summary, scale, stats, tempdir, where_line, Row, Timing,
};
use criterion::Throughput;
use rocketstore::{FlushMode, Message, Store, StoreConfig};

const TOPIC: &str = "BenchTopic";
const QUEUES: u64 = 8;
const RUNS: usize = 3;

fn config() -> StoreConfig {
    StoreConfig {
        flush_mode: FlushMode::Async,
        ..StoreConfig::default()
    }
}

/// Puts messages `first..first + n` of the CLI's shape; per-put latencies if `latencies`.
fn put_run(
    store: &Store,
    body: &[u8],
    first: u64,
    n: u64,
    latencies: bool,
) -> (Duration, Vec<u64>) {
    use std::fmt::Write as _;
    let mut key = String::new();
    let mut lat = Vec::with_capacity(if latencies { n as usize } else { 0 });
    let t0 = Instant::now();
    for i in first..first + n {
        key.clear();
        let _ = write!(key, "bench-0-{i}");
        let msg = Message::new(TOPIC, (i % QUEUES) as i32, body).with_keys([key.as_str()]);
        if latencies {
            let s = Instant::now();
            std::hint::black_box(store.put(&msg).unwrap());
            lat.push(s.elapsed().as_nanos() as u64);
        } else {
            std::hint::black_box(store.put(&msg).unwrap());
        }
    }
    (t0.elapsed(), lat)
}

/// One fresh-root shape: its runs' rates and every put's latency.
struct Fresh {
    size: usize,
    messages: u64,
    rates: Vec<f64>,
    latencies_ns: Vec<u64>,
}

impl Fresh {
    fn median_rate(&self) -> f64 {
        let mut r = self.rates.clone();
        r.sort_by(f64::total_cmp);
        r[r.len() / 2]
    }

    fn pct_us(&self, p: f64) -> f64 {
        let l = &self.latencies_ns;
        let i = ((l.len() as f64 * p).ceil() as usize).clamp(1, l.len()) - 1;
        l[i] as f64 / 1000.0
    }

    fn at_least(&self, ns: u64) -> usize {
        self.latencies_ns.len() - self.latencies_ns.partition_point(|&x| x < ns)
    }
}

fn fresh_root(size: usize, messages: u64) -> Fresh {
    let body = vec![b'a'; size];
    let mut rates = Vec::new();
    let mut latencies_ns = Vec::new();
    for _ in 0..RUNS {
        common::wait_for_writeback();
        let dir = tempdir();
        let root = dir.path().join("store");
        let t0 = Instant::now();
        let store = Store::open(&root, config()).unwrap();
        let (_, lat) = put_run(&store, &body, 0, messages, true);
        // Timed like the CLI: from before open to the last put (close is not in the figure).
        let elapsed = t0.elapsed();
        store.close().unwrap();
        rates.push(messages as f64 / elapsed.as_secs_f64());
        latencies_ns.extend(lat);
    }
    latencies_ns.sort_unstable();
    Fresh {
        size,
        messages,
        rates,
        latencies_ns,
    }
}

fn size_name(size: usize) -> String {
    if size >= 1024 {
        format!("{}KiB", size / 1024)
    } else {
        format!("{size}B")
    }
}

fn main() {
    let mut c = common::criterion();
    let timing = Timing::new(1.0, 3.0, 30);
    const GROUP: &str = "steady";
    let mut g = c.benchmark_group(GROUP);
    timing.apply(&mut g);
    g.throughput(Throughput::Elements(1));
    for size in [128, 1024] {
        let name = format!("{}_keyed", size_name(size));
        if !common::selected(&format!("{GROUP}/{name}")) {
            continue;
        }
        let body = vec![b'a'; size];
        let dir = tempdir();
        let store = Store::open(dir.path(), config()).unwrap();
        let segment = store.config().commitlog_segment_size as u64;
        let mut next = 0;
        while store.commitlog_max_offset() < scale(segment + (1 << 20), 1 << 20) {
            put_run(&store, &body, next, 20_000, false);
            next += 20_000;
        }
        common::wait_for_writeback();
        bench_custom(&mut g, GROUP, &name, |iters| {
            let r = put_run(&store, &body, next, iters, false);
            next += iters;
            r
        });
        store.close().unwrap();
    }
    g.finish();
    c.final_summary();

    let shapes: [(usize, u64); 3] = [
        (128, scale(1_000_000, 50_000)),
        (1024, scale(400_000, 20_000)),
        (128, scale(4_000_000, 100_000)),
    ];
    let mut rows = Vec::new();
    for (size, messages) in shapes {
        if !common::selected(&format!("fresh/{}", size_name(size))) {
            continue;
        }
        let f = fresh_root(size, messages);
        let steady = stats(
            &format!("{GROUP}/{}_keyed", size_name(size)),
            timing.samples,
        );
        let rate = f.median_rate();
        let ratio = steady.as_ref().map(|s| rate / s.per_s());
        let mut sorted = f.rates.clone();
        sorted.sort_by(f64::total_cmp);
        rows.push(
            Row::new(format!(
                "fresh root, {} × {} keyed, median of {} runs ({}–{})",
                f.messages,
                size_name(f.size),
                RUNS,
                fmt_rate(sorted[0]),
                fmt_rate(sorted[sorted.len() - 1]),
            ))
            .store(fmt_rate(rate))
            .ceiling(steady.as_ref().map_or("-".into(), |s| {
                format!("{} steady state (criterion)", fmt_rate(s.per_s()))
            }))
            .ratio(ratio)
            .target("≥ 0.8x", ratio.map(|r| r >= 0.8)),
        );
        let mean = f.latencies_ns.iter().sum::<u64>() as f64 / f.latencies_ns.len() as f64;
        rows.push(
            Row::new("… put latency over all runs: mean / p50 / p99 / p999 / worst").store(
                format!(
                    "{:.2} / {:.1} / {:.1} / {:.1} µs / {:.1} ms",
                    mean / 1000.0,
                    f.pct_us(0.5),
                    f.pct_us(0.99),
                    f.pct_us(0.999),
                    *f.latencies_ns.last().unwrap() as f64 / 1e6
                ),
            ),
        );
        rows.push(
            Row::new("… stalls: puts ≥ 100 µs / ≥ 1 ms / ≥ 10 ms").store(format!(
                "{} / {} / {}",
                f.at_least(100_000),
                f.at_least(1_000_000),
                f.at_least(10_000_000)
            )),
        );
    }
    let notes = vec![where_line()];
    print_summary(
        "fresh root vs steady state (the CLI's shape)",
        &notes,
        &rows,
    );
}
