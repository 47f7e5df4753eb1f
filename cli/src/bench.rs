//! `bench`: writes load into a root through the [`Store`] and reports throughput and put
//! latency; optionally logs every acknowledged put for `check-acks` (crash testing: kill the
//! bench, then check that everything it acknowledged survived).

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use clap::{Args, ValueEnum};
use rocketstore::{FlushMode, Message, PutStatus, Store};
use serde_json::json;

use crate::error::{CliError, CliResult};
use crate::open::{self, StoreArgs};
use crate::output::Out;

/// Flush mode of the bench.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Flush {
    /// `put` returns once the record is durable (group commit).
    Sync,
    /// `put` returns once the record is in the page cache.
    Async,
}

/// Arguments of `bench`.
#[derive(Debug, Args)]
pub struct BenchArgs {
    /// The store root (created if missing).
    pub root: PathBuf,
    /// Flush mode.
    #[arg(long, value_enum, default_value_t = Flush::Async)]
    pub flush: Flush,
    /// Producer threads.
    #[arg(long, default_value_t = 4)]
    pub threads: usize,
    /// Messages in total.
    #[arg(long, default_value_t = 100_000)]
    pub messages: u64,
    /// Body size in bytes.
    #[arg(long, default_value_t = 1024)]
    pub size: usize,
    /// Queues the messages are spread over.
    #[arg(long, default_value_t = 4)]
    pub queues: i32,
    /// Topic.
    #[arg(long, default_value = "BenchTopic")]
    pub topic: String,
    /// Print one JSON object.
    #[arg(long)]
    pub json: bool,
    /// Append `<commitlog_offset> <size> <topic> <queue_id> <queue_offset>` per acknowledged
    /// put to this file, written as soon as `put` returns.
    #[arg(long)]
    pub ack_log: Option<PathBuf>,
    /// Put messages without a key (by default each carries the key `bench-<thread>-<i>`, which
    /// the IndexFile indexes, as most producers' messages do).
    #[arg(long)]
    pub no_keys: bool,
    #[command(flatten)]
    pub store: StoreArgs,
}

/// What one producer thread measured.
struct ThreadResult {
    latencies_ns: Vec<u64>,
    timeouts: u64,
}

/// Runs `bench`.
pub fn run(args: &BenchArgs) -> CliResult<ExitCode> {
    if args.threads == 0 || args.queues <= 0 {
        return Err(CliError::Usage(
            "--threads and --queues must be at least 1".into(),
        ));
    }
    let (mut config, _notes) = open::config(&args.root, &args.store)?;
    config.flush_mode = match args.flush {
        Flush::Sync => FlushMode::Sync,
        Flush::Async => FlushMode::Async,
    };
    config.max_queues_per_topic = config.max_queues_per_topic.max(args.queues as u32);
    if args.size > config.max_message_size {
        return Err(CliError::Usage(format!(
            "--size {} exceeds the max message size {} (see --max-message-size / --segment-size)",
            args.size, config.max_message_size
        )));
    }
    let ack_log = match &args.ack_log {
        Some(p) => Some((
            p.clone(),
            Mutex::new(
                OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(p)
                    .map_err(|e| CliError::io(p, e))?,
            ),
        )),
        None => None,
    };
    let store = Store::open(&args.root, config)?;
    let body: Vec<u8> = (0..args.size).map(|i| b'a' + (i % 26) as u8).collect();
    let per_thread = args.messages / args.threads as u64;
    let extra = args.messages % args.threads as u64;
    let started = Instant::now();
    let results: Vec<CliResult<ThreadResult>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..args.threads)
            .map(|t| {
                let n = per_thread + u64::from((t as u64) < extra);
                let (store, body, ack_log) = (&store, &body, &ack_log);
                s.spawn(move || producer(store, args, t, n, body, ack_log.as_ref()))
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(CliError::Usage("a producer thread panicked".into())))
            })
            .collect()
    });
    let elapsed = started.elapsed();
    let close = store.close();
    let mut latencies = Vec::with_capacity(args.messages as usize);
    let mut timeouts = 0;
    for r in results {
        let r = r?;
        latencies.extend(r.latencies_ns);
        timeouts += r.timeouts;
    }
    close?;
    latencies.sort_unstable();
    report(args, elapsed, &latencies, timeouts)?;
    Ok(ExitCode::SUCCESS)
}

fn producer(
    store: &Store,
    args: &BenchArgs,
    thread: usize,
    count: u64,
    body: &[u8],
    ack_log: Option<&(PathBuf, Mutex<File>)>,
) -> CliResult<ThreadResult> {
    let mut latencies_ns = Vec::with_capacity(count as usize);
    let mut timeouts = 0;
    let mut line = String::new();
    let mut key = String::new();
    for i in 0..count {
        let queue_id = ((thread as u64 + i * args.threads as u64) % args.queues as u64) as i32;
        let mut msg = Message::new(args.topic.as_str(), queue_id, body);
        if !args.no_keys {
            use std::fmt::Write as _;
            // One buffer for every key: the loop measures the store, not the allocator.
            key.clear();
            let _ = write!(key, "bench-{thread}-{i}");
            msg = msg.with_keys([key.as_str()]);
        }
        let t0 = Instant::now();
        let r = store.put(&msg)?;
        latencies_ns.push(t0.elapsed().as_nanos() as u64);
        if r.status != PutStatus::Ok {
            timeouts += 1;
            continue;
        }
        if let Some((path, file)) = ack_log {
            use std::fmt::Write as _;
            line.clear();
            let _ = writeln!(
                line,
                "{} {} {} {} {}",
                r.commitlog_offset, r.wrote_bytes, args.topic, queue_id, r.queue_offset
            );
            // One write per line: the line reaches the OS before the next put starts.
            let mut f = file.lock().unwrap_or_else(|p| p.into_inner());
            f.write_all(line.as_bytes())
                .map_err(|e| CliError::io(path, e))?;
        }
    }
    Ok(ThreadResult {
        latencies_ns,
        timeouts,
    })
}

/// Puts that took at least 100 µs, 1 ms and 10 ms: the stalls a median hides.
const STALLS_NS: [u64; 3] = [100_000, 1_000_000, 10_000_000];

/// How many of the sorted latencies reach each of [`STALLS_NS`].
fn stall_counts(sorted_ns: &[u64]) -> [usize; 3] {
    STALLS_NS.map(|t| sorted_ns.len() - sorted_ns.partition_point(|&ns| ns < t))
}

/// The `p`-quantile (0..=1) of sorted nanoseconds, in microseconds.
fn percentile_us(sorted_ns: &[u64], p: f64) -> f64 {
    if sorted_ns.is_empty() {
        return 0.0;
    }
    let i = ((sorted_ns.len() as f64 * p).ceil() as usize).clamp(1, sorted_ns.len()) - 1;
    sorted_ns[i] as f64 / 1000.0
}

fn report(args: &BenchArgs, elapsed: Duration, sorted_ns: &[u64], timeouts: u64) -> CliResult<()> {
    let secs = elapsed.as_secs_f64().max(1e-9);
    let messages = sorted_ns.len() as u64;
    let msgs_per_sec = messages as f64 / secs;
    let mb_per_sec = messages as f64 * args.size as f64 / secs / 1e6;
    let (p50, p99, p999) = (
        percentile_us(sorted_ns, 0.50),
        percentile_us(sorted_ns, 0.99),
        percentile_us(sorted_ns, 0.999),
    );
    let mean_us = sorted_ns.iter().sum::<u64>() as f64 / messages.max(1) as f64 / 1000.0;
    let max_us = sorted_ns.last().map_or(0.0, |&ns| ns as f64 / 1000.0);
    let stalls = stall_counts(sorted_ns);
    let flush = match args.flush {
        Flush::Sync => "sync",
        Flush::Async => "async",
    };
    let mut out = Out::new();
    if args.json {
        out.line(json!({
            "messages": messages,
            "seconds": secs,
            "msgs_per_sec": msgs_per_sec,
            "mb_per_sec": mb_per_sec,
            "p50_us": p50,
            "p99_us": p99,
            "p999_us": p999,
            "mean_us": mean_us,
            "max_us": max_us,
            "stalls": {"ge_100us": stalls[0], "ge_1ms": stalls[1], "ge_10ms": stalls[2]},
            "keys": !args.no_keys,
            "flush": flush,
            "threads": args.threads,
            "size": args.size,
            "queues": args.queues,
            "flush_timeouts": timeouts,
        }))?;
    } else {
        out.line(format_args!(
            "bench: {messages} messages x {} B, {} threads, {} queues, flush {flush}, {}",
            args.size,
            args.threads,
            args.queues,
            if args.no_keys {
                "no keys"
            } else {
                "one key each"
            }
        ))?;
        out.line(format_args!("  {:<12} {secs:.3}", "seconds"))?;
        out.line(format_args!("  {:<12} {msgs_per_sec:.0}", "msgs/s"))?;
        out.line(format_args!("  {:<12} {mb_per_sec:.1}", "MB/s"))?;
        out.line(format_args!(
            "  {:<12} p50 {p50:.1} us  p99 {p99:.1} us  p999 {p999:.1} us  mean {mean_us:.2} us",
            "put latency"
        ))?;
        out.line(format_args!(
            "  {:<12} worst {:.1} ms; {} puts >= 100 us, {} >= 1 ms, {} >= 10 ms",
            "stalls",
            max_us / 1000.0,
            stalls[0],
            stalls[1],
            stalls[2]
        ))?;
        if timeouts > 0 {
            out.line(format_args!(
                "  {timeouts} puts timed out waiting for their flush (not acknowledged)"
            ))?;
        }
    }
    out.flush()
}

#[cfg(test)]
mod tests {
    use super::{percentile_us, stall_counts};

    #[test]
    fn stalls_count_the_puts_at_or_over_each_threshold() {
        let ns = [50_000, 100_000, 999_999, 1_000_000, 10_000_000, 25_000_000];
        assert_eq!(stall_counts(&ns), [5, 3, 2]);
        assert_eq!(stall_counts(&[]), [0, 0, 0]);
    }

    #[test]
    fn percentiles_pick_the_ceiling_rank() {
        let ns: Vec<u64> = (1..=1000).map(|i| i * 1000).collect();
        assert_eq!(percentile_us(&ns, 0.5), 500.0);
        assert_eq!(percentile_us(&ns, 0.99), 990.0);
        assert_eq!(percentile_us(&ns, 0.999), 999.0);
        assert_eq!(percentile_us(&[], 0.5), 0.0);
    }
}
