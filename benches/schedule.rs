//! Scheduled delivery against the store's own put path, in the same run.
//!
//! * `schedule_put/scheduled_128B_level1` vs `schedule_put/plain_128B`: `Store::put` of one 128 B
//!   message (tag `TagA`, 8 queues round-robin) with `with_delay_level(1)` (stored in
//!   `SCHEDULE_TOPIC_XXXX` with REAL_TOPIC / REAL_QID / DELAY properties) against the same
//!   message without a level. Async flush, background delivery off; a fresh root per case.
//! * `schedule_deliver/deliver_128B` vs `schedule_deliver/plain_put_128B`: on a
//!   [`ManualClock`], each sample first puts `iters` level-1 messages (untimed), moves the clock
//!   past their time, then times `Store::deliver_due` passes until all `iters` are delivered
//!   (one iteration = one message re-put into its real topic). The ceiling is the store's own
//!   put of the same 128 B message into its real topic. Target ≥ 0.5×.
//! * `deliver 1 M once` (custom, printed as an extra row): one store on a manual clock, 1 M plain
//!   puts, 1 M level-1 puts, then 1 M deliveries, each timed once.
//! * `paired rounds` (custom): 10 rounds on one manual-clock store of 100 k plain puts, 100 k
//!   level-1 puts and their delivery, each timed; the median of the per-round ratios (neighbours
//!   in time, so the least disturbed by other jobs on a shared machine).
//! * `lateness` (custom): system clock and the background delivery thread. 2,000 level-1
//!   messages are put ~1 ms apart while another thread puts 128 B messages as fast as it can;
//!   each delivered copy's store time minus its due time (the scheduled record's store time +
//!   1 s) gives the lateness, p50 / p99 / max in ms. The ceiling is a bare thread sleeping until
//!   the same kind of due times under the same put load (the timer and scheduler alone).
//!   Target p99 ≤ 5 ms. Then the same without the put load, to tell the load's share.
//!
//! Run: `cargo bench --bench schedule` (`ROCKETSTORE_BENCH_QUICK=1` for a smoke run).

mod common;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::{
    bench_custom, fmt_rate, print_summary, scale, stats, tempdir, where_line, Row, Timing,
};
use criterion::{Criterion, Throughput};
use rocketstore::clock::{Clock, ManualClock};
use rocketstore::{FlushMode, Message, Store, StoreConfig};

const TOPIC: &str = "bench";
const QUEUES: u64 = 8;
const BODY: usize = 128;
const START: i64 = 1_700_000_000_000;

fn message(i: u64, body: &[u8]) -> Message<'_> {
    Message::new(TOPIC, (i % QUEUES) as i32, body).with_tags("TagA")
}

fn config() -> StoreConfig {
    StoreConfig {
        flush_mode: FlushMode::Async,
        schedule_delivery: false,
        ..StoreConfig::default()
    }
}

fn manual_config(clock: &ManualClock) -> StoreConfig {
    StoreConfig {
        clock: Clock::manual(clock.clone()),
        ..config()
    }
}

fn bench_puts(c: &mut Criterion, timing: &Timing) {
    const GROUP: &str = "schedule_put";
    let mut g = c.benchmark_group(GROUP);
    timing.apply(&mut g);
    g.throughput(Throughput::Elements(1));
    let body = vec![0x5Au8; BODY];
    for (name, level) in [("plain_128B", None), ("scheduled_128B_level1", Some(1))] {
        let dir = tempdir();
        let store = Store::open(dir.path(), config()).unwrap();
        let mut n = 0u64;
        bench_custom(&mut g, GROUP, name, |iters| {
            let t0 = Instant::now();
            for _ in 0..iters {
                let m = message(n, &body);
                let m = match level {
                    Some(l) => m.with_delay_level(l),
                    None => m,
                };
                std::hint::black_box(store.put(&m).unwrap());
                n += 1;
            }
            (t0.elapsed(), Vec::new())
        });
        store.close().unwrap();
    }
    g.finish();
}

/// Delivers until `n` messages were delivered; returns the time and the number of passes.
fn deliver_all(store: &Store, n: u64) -> (Duration, u64) {
    let t0 = Instant::now();
    let (mut done, mut passes) = (0u64, 0u64);
    while done < n {
        let p = store.deliver_due().unwrap();
        done += p.delivered as u64;
        passes += 1;
        assert!(
            p.delivered > 0 || p.more,
            "stuck at {done} of {n} delivered"
        );
    }
    (t0.elapsed(), passes)
}

fn bench_delivery(c: &mut Criterion, timing: &Timing) {
    const GROUP: &str = "schedule_deliver";
    let mut g = c.benchmark_group(GROUP);
    timing.apply(&mut g);
    g.throughput(Throughput::Elements(1));
    let body = vec![0x5Au8; BODY];
    {
        let clock = ManualClock::new(START);
        let dir = tempdir();
        let store = Store::open(dir.path(), manual_config(&clock)).unwrap();
        let mut n = 0u64;
        bench_custom(&mut g, GROUP, "plain_put_128B", |iters| {
            let t0 = Instant::now();
            for _ in 0..iters {
                std::hint::black_box(store.put(&message(n, &body)).unwrap());
                n += 1;
            }
            (t0.elapsed(), Vec::new())
        });
        store.close().unwrap();
    }
    {
        let clock = ManualClock::new(START);
        let dir = tempdir();
        let store = Store::open(dir.path(), manual_config(&clock)).unwrap();
        let mut n = 0u64;
        bench_custom(&mut g, GROUP, "deliver_128B", |iters| {
            for _ in 0..iters {
                store.put(&message(n, &body).with_delay_level(1)).unwrap();
                n += 1;
            }
            clock.advance(Duration::from_millis(1_001));
            let (took, _) = deliver_all(&store, iters);
            (took, Vec::new())
        });
        store.close().unwrap();
    }
    g.finish();
}

/// The 1 M run: (plain put, scheduled put, delivery) seconds and delivery passes.
struct Million {
    n: u64,
    plain_s: f64,
    scheduled_s: f64,
    deliver_s: f64,
    passes: u64,
}

fn delivery_million() -> Million {
    let n = scale(1_000_000u64, 100_000);
    let clock = ManualClock::new(START);
    let dir = tempdir();
    let store = Store::open(dir.path(), manual_config(&clock)).unwrap();
    let body = vec![0x5Au8; BODY];
    let t0 = Instant::now();
    for i in 0..n {
        store.put(&message(i, &body)).unwrap();
    }
    let plain_s = t0.elapsed().as_secs_f64();
    let t0 = Instant::now();
    for i in 0..n {
        store.put(&message(i, &body).with_delay_level(1)).unwrap();
    }
    let scheduled_s = t0.elapsed().as_secs_f64();
    clock.advance(Duration::from_millis(1_001));
    let (took, passes) = deliver_all(&store, n);
    let delivered: u64 = (0..QUEUES as i32)
        .map(|q| store.max_offset(TOPIC, q).unwrap())
        .sum();
    assert_eq!(
        delivered,
        2 * n,
        "every scheduled message in its real topic"
    );
    store.close().unwrap();
    let m = Million {
        n,
        plain_s,
        scheduled_s,
        deliver_s: took.as_secs_f64(),
        passes,
    };
    println!(
        "deliver {} once: plain put {:.3} s ({}), scheduled put {:.3} s ({}), delivery {:.3} s ({}, {} passes); delivery/put ratio {:.2}",
        m.n,
        m.plain_s,
        fmt_rate(n as f64 / m.plain_s),
        m.scheduled_s,
        fmt_rate(n as f64 / m.scheduled_s),
        m.deliver_s,
        fmt_rate(n as f64 / m.deliver_s),
        m.passes,
        m.plain_s / m.deliver_s
    );
    m
}

/// Per round: (scheduled put / plain put, delivery / plain put) rate ratios.
struct Rounds {
    per_round: u64,
    sched: Vec<f64>,
    deliver: Vec<f64>,
}

/// Paired rounds on one store on a manual clock: `per_round` plain puts, then as many level-1
/// puts, then their delivery, each timed; the ratios of neighbours in time are the least
/// disturbed by the other jobs of a shared machine (criterion's cases run seconds apart).
fn paired_rounds() -> Rounds {
    let rounds = scale(10usize, 3);
    let per_round = scale(100_000u64, 20_000);
    let clock = ManualClock::new(START);
    let dir = tempdir();
    let store = Store::open(dir.path(), manual_config(&clock)).unwrap();
    let body = vec![0x5Au8; BODY];
    let (mut sched, mut deliver) = (Vec::new(), Vec::new());
    let mut i = 0u64;
    for _ in 0..rounds {
        let t0 = Instant::now();
        for _ in 0..per_round {
            store.put(&message(i, &body)).unwrap();
            i += 1;
        }
        let plain = t0.elapsed().as_secs_f64();
        let t0 = Instant::now();
        for _ in 0..per_round {
            store.put(&message(i, &body).with_delay_level(1)).unwrap();
            i += 1;
        }
        let scheduled = t0.elapsed().as_secs_f64();
        clock.advance(Duration::from_millis(1_001));
        let (took, _) = deliver_all(&store, per_round);
        sched.push(plain / scheduled);
        deliver.push(plain / took.as_secs_f64());
    }
    store.close().unwrap();
    sched.sort_by(f64::total_cmp);
    deliver.sort_by(f64::total_cmp);
    let r = Rounds {
        per_round,
        sched,
        deliver,
    };
    println!(
        "paired rounds ({} × {per_round}): scheduled/plain put {:?}, delivery/plain put {:?}",
        r.sched.len(),
        r.sched,
        r.deliver
    );
    r
}

fn median(v: &[f64]) -> f64 {
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

fn epoch_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// Sorted lateness samples (ms) → (p50, p99, max).
fn pcts(l: &[i64]) -> (i64, i64, i64) {
    let at = |p: f64| l[(((l.len() - 1) as f64) * p).round() as usize];
    (at(0.50), at(0.99), *l.last().unwrap())
}

struct Lateness {
    /// Sorted, ms.
    store: Vec<i64>,
    bare: Vec<i64>,
    early: usize,
    load_puts: u64,
    load_s: f64,
}

/// Runs `f` while another thread puts 128 B messages into `store` as fast as it can; returns
/// `f`'s result and the number of load puts.
fn under_load<T>(store: &Store, load: bool, f: impl FnOnce() -> T) -> (T, u64, f64) {
    let stop = AtomicBool::new(false);
    let puts = AtomicU64::new(0);
    let t0 = Instant::now();
    let out = std::thread::scope(|s| {
        s.spawn(|| {
            let body = vec![0xA5u8; BODY];
            let mut i = 0u64;
            while load && !stop.load(Ordering::Relaxed) {
                store
                    .put(&Message::new("load", (i % QUEUES) as i32, &body).with_tags("TagA"))
                    .unwrap();
                i += 1;
            }
            puts.store(i, Ordering::Relaxed);
        });
        let out = f();
        stop.store(true, Ordering::Relaxed);
        out
    });
    (
        out,
        puts.load(Ordering::Relaxed),
        t0.elapsed().as_secs_f64(),
    )
}

fn lateness(load: bool) -> Lateness {
    let n = scale(2_000usize, 300);
    let dir = tempdir();
    let store = Store::open(
        dir.path(),
        StoreConfig {
            schedule_delivery: true,
            ..config()
        },
    )
    .unwrap();
    let body_of = |i: usize| (i as u64).to_le_bytes();
    let (dues, load_puts, load_s) = under_load(&store, load, || {
        // Let the load reach its pace first.
        std::thread::sleep(Duration::from_millis(200));
        let mut dues = Vec::with_capacity(n);
        for i in 0..n {
            let put = store
                .put(&Message::new("timed", 0, &body_of(i)).with_delay_level(1))
                .unwrap();
            dues.push(put.store_timestamp + 1_000);
            std::thread::sleep(Duration::from_millis(1));
        }
        // Until every one is delivered (or 20 s past the last due time).
        let give_up = Instant::now() + Duration::from_secs(21);
        while store.max_offset("timed", 0).unwrap() < n as u64 && Instant::now() < give_up {
            std::thread::sleep(Duration::from_millis(10));
        }
        dues
    });
    let mut late: Vec<i64> = Vec::with_capacity(n);
    let mut at = 0u64;
    loop {
        // A get returns at most 256 KiB: page through the queue.
        let got = store.get("timed", 0, at, n).unwrap();
        if got.is_empty() {
            break;
        }
        late.extend(got.messages().map(|m| {
            let i = u64::from_le_bytes(m.body().try_into().unwrap()) as usize;
            m.store_timestamp() - dues[i]
        }));
        at = got.next_offset();
    }
    assert_eq!(late.len(), n, "every scheduled message delivered");
    late.sort_unstable();
    let early = late.iter().filter(|&&l| l < 0).count();

    // The ceiling: a bare thread sleeping until due times 1 s after "now", ~1 ms apart, under
    // the same load (so the same CPU contention), measured with the same ms clock.
    let (bare, _, _) = under_load(&store, load, || {
        std::thread::sleep(Duration::from_millis(200));
        let start = epoch_ms() + 1_000;
        let mut bare: Vec<i64> = (0..n)
            .map(|i| {
                let due = start + i as i64;
                let now = epoch_ms();
                if due > now {
                    std::thread::sleep(Duration::from_millis((due - now) as u64));
                }
                epoch_ms() - due
            })
            .collect();
        bare.sort_unstable();
        bare
    });
    store.close().unwrap();
    let l = Lateness {
        store: late,
        bare,
        early,
        load_puts,
        load_s,
    };
    let (p50, p99, max) = pcts(&l.store);
    let (b50, b99, bmax) = pcts(&l.bare);
    println!(
        "lateness of {n} level-1 messages, {} concurrent puts ({}): p50 {p50} ms, p99 {p99} ms, max {max} ms, {} early; bare sleeper p50 {b50} ms, p99 {b99} ms, max {bmax} ms",
        l.load_puts,
        fmt_rate(l.load_puts as f64 / l.load_s),
        l.early
    );
    l
}

fn main() {
    let mut c = common::criterion();
    let timing = Timing::new(0.5, 2.0, 10);
    bench_puts(&mut c, &timing);
    bench_delivery(&mut c, &timing);
    c.final_summary();
    let million = delivery_million();
    let rounds = paired_rounds();
    let late = lateness(true);
    let idle = lateness(false);

    let n = timing.samples;
    let rate = |id: &str| stats(id, n).map(|s| s.per_s());
    let mut rows = Vec::new();
    let (sp, pp) = (
        rate("schedule_put/scheduled_128B_level1"),
        rate("schedule_put/plain_128B"),
    );
    rows.push(
        Row::new("scheduled put 128 B, level 1, Async, 1 producer")
            .store(sp.map_or("-".into(), fmt_rate))
            .ceiling(pp.map_or("-".into(), |r| format!("{} plain put", fmt_rate(r))))
            .ratio(sp.zip(pp).map(|(s, p)| s / p)),
    );
    let (dl, dp) = (
        rate("schedule_deliver/deliver_128B"),
        rate("schedule_deliver/plain_put_128B"),
    );
    rows.push(
        Row::new("delivery of due 128 B messages (deliver_due passes)")
            .store(dl.map_or("-".into(), fmt_rate))
            .ceiling(dp.map_or("-".into(), |r| format!("{} plain put", fmt_rate(r))))
            .ratio(dl.zip(dp).map(|(d, p)| d / p))
            .target("≥ 0.5×", dl.zip(dp).map(|(d, p)| d / p >= 0.5)),
    );
    let r = &rounds;
    rows.push(
        Row::new(format!(
            "… paired rounds of {} plain / scheduled puts, median (min–max) of {}",
            r.per_round,
            r.sched.len()
        ))
        .store(format!(
            "scheduled/plain {:.2}–{:.2}",
            r.sched[0],
            r.sched[r.sched.len() - 1]
        ))
        .ceiling("the round's plain puts")
        .ratio(Some(median(&r.sched))),
    );
    let dm = median(&r.deliver);
    rows.push(
        Row::new(format!(
            "… paired rounds: delivery of the round's {} scheduled messages",
            r.per_round
        ))
        .store(format!(
            "delivery/plain {:.2}–{:.2}",
            r.deliver[0],
            r.deliver[r.deliver.len() - 1]
        ))
        .ceiling("the round's plain puts")
        .ratio(Some(dm))
        .target("≥ 0.5×", Some(dm >= 0.5)),
    );
    let m = &million;
    let ratio = m.plain_s / m.deliver_s;
    rows.push(
        Row::new(format!(
            "… {} due messages delivered once ({} passes)",
            m.n, m.passes
        ))
        .store(format!(
            "{} ({:.2} s)",
            fmt_rate(m.n as f64 / m.deliver_s),
            m.deliver_s
        ))
        .ceiling(format!(
            "{} ({:.2} s) plain put; scheduled put {}",
            fmt_rate(m.n as f64 / m.plain_s),
            m.plain_s,
            fmt_rate(m.n as f64 / m.scheduled_s)
        ))
        .ratio(Some(ratio))
        .target("≥ 0.5×", Some(ratio >= 0.5)),
    );
    let (p50, p99, max) = pcts(&late.store);
    let (b50, b99, bmax) = pcts(&late.bare);
    rows.push(
        Row::new(format!(
            "lateness, level 1, background thread, under {} load puts ({}), p50 / p99 / max",
            late.load_puts,
            fmt_rate(late.load_puts as f64 / late.load_s)
        ))
        .store(format!("{p50} / {p99} / {max} ms ({} early)", late.early))
        .ceiling(format!("{b50} / {b99} / {bmax} ms bare sleeper, same load"))
        .target("p99 ≤ 5 ms", Some(p99 <= 5 && late.early == 0)),
    );
    let (p50, p99, max) = pcts(&idle.store);
    let (b50, b99, bmax) = pcts(&idle.bare);
    rows.push(
        Row::new("… the same without the put load")
            .store(format!("{p50} / {p99} / {max} ms ({} early)", idle.early))
            .ceiling(format!("{b50} / {b99} / {bmax} ms bare sleeper"))
            .target("p99 ≤ 5 ms", Some(p99 <= 5 && idle.early == 0)),
    );
    print_summary(
        "scheduled delivery (benches/schedule.rs)",
        &[
            where_line(),
            "ratio = rocketstore / ceiling; lateness = delivered copy's store time − due time (ms clock)".into(),
        ],
        &rows,
    );
}
