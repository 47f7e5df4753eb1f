//! Helpers shared by the benches: quick mode, scratch directories, a recorder that keeps every
//! timed call criterion makes (so medians, percentiles and ratios come from the same run), the
//! summary table, and small readers of `/proc/self/status` and of on-disk record fields.
//!
//! Every bench prints, after criterion's own output, a table
//! `measure | rocketstore | ceiling | ratio | target` built from the *measurement* samples of
//! this run (criterion calls a routine during warm-up and then exactly `sample_size` times; the
//! last `sample_size` calls recorded for an id are criterion's samples, so the median here is
//! criterion's median estimate).
//!
//! Environment:
//! * `ROCKETSTORE_BENCH_QUICK=1` — short smoke run (small data sets, 10 samples, < 1 s per id);
//! * `ROCKETSTORE_BENCH_DIR=<dir>` — where scratch stores go (default: the system temp dir,
//!   `/tmp`, which must be a real disk: tmpfs would hide fsync cost, and the summary says which
//!   file system was used);
//! * `ROCKETSTORE_BENCH_SUMMARY=<file>` — also append each summary table to this file.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use criterion::measurement::WallTime;
use criterion::{BenchmarkGroup, Criterion};

/// Whether the smoke-run mode is on.
pub fn quick() -> bool {
    std::env::var_os("ROCKETSTORE_BENCH_QUICK").is_some_and(|v| !v.is_empty() && v != "0")
}

/// `full` normally, `small` in quick mode.
pub fn scale<T>(full: T, small: T) -> T {
    if quick() {
        small
    } else {
        full
    }
}

/// The criterion driver, configured from the command line (`cargo bench -- <filter>` works).
pub fn criterion() -> Criterion {
    Criterion::default().configure_from_args()
}

/// Whether a case with this full id (`group/function`) can pass the command-line filter
/// (`cargo bench -- <filter>`; criterion takes a regex, approximated here as `|`-separated
/// substrings, `^`/`$` ignored): lets a bench skip the setup of filtered-out cases. No filter
/// selects everything.
pub fn selected(id: &str) -> bool {
    let filters: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    filters.is_empty()
        || filters.iter().any(|f| {
            f.split('|')
                .map(|alt| alt.trim_start_matches('^').trim_end_matches('$'))
                .any(|alt| id.contains(alt))
        })
}

/// Warm-up time, measurement time and sample count of one group.
#[derive(Clone, Copy, Debug)]
pub struct Timing {
    pub warm_up: Duration,
    pub measurement: Duration,
    pub samples: usize,
}

impl Timing {
    /// Full-run timing; quick mode shrinks it to 10 samples in about half a second.
    pub fn new(warm_up_s: f64, measurement_s: f64, samples: usize) -> Timing {
        if quick() {
            Timing {
                warm_up: Duration::from_millis(100),
                measurement: Duration::from_millis(500),
                samples: 10,
            }
        } else {
            Timing {
                warm_up: Duration::from_secs_f64(warm_up_s),
                measurement: Duration::from_secs_f64(measurement_s),
                samples,
            }
        }
    }

    pub fn apply(&self, g: &mut BenchmarkGroup<'_, WallTime>) {
        g.warm_up_time(self.warm_up)
            .measurement_time(self.measurement)
            .sample_size(self.samples);
    }
}

// ---------------------------------------------------------------------------------------------
// Scratch directories

/// Root for scratch stores: `$ROCKETSTORE_BENCH_DIR` or the system temp dir.
pub fn bench_root() -> PathBuf {
    std::env::var_os("ROCKETSTORE_BENCH_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(std::env::temp_dir)
}

/// A fresh scratch directory under [`bench_root`], deleted on drop.
pub fn tempdir() -> tempfile::TempDir {
    let root = bench_root();
    std::fs::create_dir_all(&root).unwrap();
    tempfile::Builder::new()
        .prefix("rocketstore-bench-")
        .tempdir_in(root)
        .unwrap()
}

/// The file-system type of `path`, to print beside results (tmpfs would hide fsync cost).
pub fn fs_kind(path: &Path) -> String {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes()).unwrap();
    // SAFETY: `c` is a NUL-terminated path and `st` is a properly sized, writable statfs.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: see above; statfs only writes into `st`.
    let rc = unsafe { libc::statfs(c.as_ptr(), &mut st) };
    if rc != 0 {
        return "unknown".into();
    }
    match st.f_type as i64 {
        0xEF53 => "ext4".into(),
        0x0102_1994 => "tmpfs (fsync cost hidden!)".into(),
        0x5846_5342 => "xfs".into(),
        0x9123_683E => "btrfs".into(),
        0x794c_7630 => "overlayfs".into(),
        other => format!("fs type {other:#x}"),
    }
}

/// One line naming where scratch stores live and on what file system.
pub fn where_line() -> String {
    let root = bench_root();
    format!(
        "scratch stores under {} ({}), page cache hot unless stated",
        root.display(),
        fs_kind(&root)
    )
}

// ---------------------------------------------------------------------------------------------
// The recorder

struct Call {
    iters: u64,
    elapsed: Duration,
    /// Per-operation latencies (ns) when the routine records them.
    latencies_ns: Vec<u64>,
}

static CALLS: Mutex<BTreeMap<String, Vec<Call>>> = Mutex::new(BTreeMap::new());

/// Records one timed call of the routine of `id` (`group/function`).
pub fn record(id: &str, iters: u64, elapsed: Duration, latencies_ns: Vec<u64>) {
    CALLS
        .lock()
        .unwrap()
        .entry(id.to_owned())
        .or_default()
        .push(Call {
            iters,
            elapsed,
            latencies_ns,
        });
}

/// What the measurement samples of one id say.
#[derive(Clone, Debug)]
pub struct Stats {
    /// Median over samples of (sample time / iterations), seconds: criterion's median.
    pub median_s: f64,
    /// Iterations measured.
    pub iters: u64,
    /// Sorted per-operation latencies of the measurement samples (ns), if recorded.
    pub latencies_ns: Vec<u64>,
}

impl Stats {
    /// Operations per second at the median.
    pub fn per_s(&self) -> f64 {
        1.0 / self.median_s
    }

    /// The `p`-th percentile (0..=100) of the recorded latencies, ns.
    pub fn pct_ns(&self, p: f64) -> Option<f64> {
        let l = &self.latencies_ns;
        if l.is_empty() {
            return None;
        }
        let i = ((p / 100.0) * (l.len() - 1) as f64).round() as usize;
        Some(l[i.min(l.len() - 1)] as f64)
    }
}

/// Statistics of the last `samples` recorded calls of `id` (criterion's measurement samples),
/// or `None` if the id did not run (filtered out).
pub fn stats(id: &str, samples: usize) -> Option<Stats> {
    let calls = CALLS.lock().unwrap();
    let all = calls.get(id)?;
    let take = &all[all.len().saturating_sub(samples)..];
    let mut per_iter: Vec<f64> = take
        .iter()
        .filter(|c| c.iters > 0)
        .map(|c| c.elapsed.as_secs_f64() / c.iters as f64)
        .collect();
    if per_iter.is_empty() {
        return None;
    }
    per_iter.sort_by(|a, b| a.total_cmp(b));
    let n = per_iter.len();
    let median_s = if n % 2 == 1 {
        per_iter[n / 2]
    } else {
        (per_iter[n / 2 - 1] + per_iter[n / 2]) / 2.0
    };
    let mut latencies_ns: Vec<u64> = take
        .iter()
        .flat_map(|c| c.latencies_ns.iter().copied())
        .collect();
    latencies_ns.sort_unstable();
    Some(Stats {
        median_s,
        iters: take.iter().map(|c| c.iters).sum(),
        latencies_ns,
    })
}

/// `g.bench_function(name, ..)` with `iter_custom`, recording every call under `group/name`.
/// `routine(iters)` returns the time to report and the per-operation latencies, if any.
pub fn bench_custom<F>(
    g: &mut BenchmarkGroup<'_, WallTime>,
    group: &str,
    name: &str,
    mut routine: F,
) where
    F: FnMut(u64) -> (Duration, Vec<u64>),
{
    let id = format!("{group}/{name}");
    g.bench_function(name, |b| {
        b.iter_custom(|iters| {
            let (elapsed, lat) = routine(iters);
            record(&id, iters, elapsed, lat);
            elapsed
        })
    });
}

// ---------------------------------------------------------------------------------------------
// Summary table

/// One row of the summary.
pub struct Row {
    pub measure: String,
    pub store: String,
    pub ceiling: String,
    pub ratio: String,
    pub target: String,
    /// `Some(true)` met, `Some(false)` missed, `None` no target or not measured.
    pub met: Option<bool>,
}

impl Row {
    pub fn new(measure: impl Into<String>) -> Row {
        Row {
            measure: measure.into(),
            store: "-".into(),
            ceiling: "-".into(),
            ratio: "-".into(),
            target: "-".into(),
            met: None,
        }
    }
    pub fn store(mut self, s: impl Into<String>) -> Row {
        self.store = s.into();
        self
    }
    pub fn ceiling(mut self, s: impl Into<String>) -> Row {
        self.ceiling = s.into();
        self
    }
    pub fn ratio(mut self, r: Option<f64>) -> Row {
        self.ratio = r.map_or("-".into(), |r| format!("{r:.2}x"));
        self
    }
    pub fn target(mut self, t: impl Into<String>, met: Option<bool>) -> Row {
        self.target = t.into();
        self.met = met;
        self
    }
}

/// Prints the table (and appends it to `$ROCKETSTORE_BENCH_SUMMARY` if set).
pub fn print_summary(title: &str, notes: &[String], rows: &[Row]) {
    let head = ["measure", "rocketstore", "ceiling", "ratio", "target"];
    let cells: Vec<[String; 5]> = rows
        .iter()
        .map(|r| {
            let verdict = match r.met {
                Some(true) => " MET",
                Some(false) => " MISSED",
                None => "",
            };
            [
                r.measure.clone(),
                r.store.clone(),
                r.ceiling.clone(),
                r.ratio.clone(),
                format!("{}{verdict}", r.target),
            ]
        })
        .collect();
    let mut w = [0usize; 5];
    for (i, h) in head.iter().enumerate() {
        w[i] = h.chars().count();
    }
    for c in &cells {
        for i in 0..5 {
            w[i] = w[i].max(c[i].chars().count());
        }
    }
    let line = |c: &[String]| -> String {
        let mut s = String::from("|");
        for i in 0..5 {
            let pad = w[i] - c[i].chars().count();
            s.push(' ');
            s.push_str(&c[i]);
            s.push_str(&" ".repeat(pad));
            s.push_str(" |");
        }
        s
    };
    let mut out = String::new();
    out.push_str(&format!(
        "\n## {title}{}\n",
        if quick() {
            " (QUICK smoke run: small data, few samples)"
        } else {
            ""
        }
    ));
    for n in notes {
        out.push_str(&format!("- {n}\n"));
    }
    out.push('\n');
    out.push_str(&line(&head.map(String::from)));
    out.push('\n');
    let sep: Vec<String> = w.iter().map(|&n| "-".repeat(n)).collect();
    out.push_str(&line(&sep).replace(' ', "-"));
    out.push('\n');
    for c in &cells {
        out.push_str(&line(c));
        out.push('\n');
    }
    println!("{out}");
    if let Some(p) = std::env::var_os("ROCKETSTORE_BENCH_SUMMARY") {
        if let Ok(mut f) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(p)
        {
            let _ = f.write_all(out.as_bytes());
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Formatting

/// `2.31 M msg/s`, `412 k msg/s`.
pub fn fmt_rate(per_s: f64) -> String {
    if per_s >= 1e6 {
        format!("{:.2} M msg/s", per_s / 1e6)
    } else if per_s >= 1e3 {
        format!("{:.1} k msg/s", per_s / 1e3)
    } else {
        format!("{per_s:.0} msg/s")
    }
}

/// `1.52 GB/s`, `480 MB/s` (10^9 / 10^6 bytes).
pub fn fmt_bw(bytes_per_s: f64) -> String {
    if bytes_per_s >= 1e9 {
        format!("{:.2} GB/s", bytes_per_s / 1e9)
    } else {
        format!("{:.0} MB/s", bytes_per_s / 1e6)
    }
}

/// `850 ns`, `12.3 µs`, `4.56 ms`, `1.23 s`.
pub fn fmt_ns(ns: f64) -> String {
    if ns < 1e3 {
        format!("{ns:.0} ns")
    } else if ns < 1e6 {
        format!("{:.1} µs", ns / 1e3)
    } else if ns < 1e9 {
        format!("{:.2} ms", ns / 1e6)
    } else {
        format!("{:.2} s", ns / 1e9)
    }
}

// ---------------------------------------------------------------------------------------------
// Process and data helpers

/// A field of `/proc/self/status` in KiB (`RssAnon`, `RssFile`, `VmHWM`, ...).
pub fn proc_status_kib(field: &str) -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    s.lines()
        .find_map(|l| {
            let rest = l.strip_prefix(field)?.strip_prefix(':')?;
            rest.split_whitespace().next()?.parse().ok()
        })
        .unwrap_or(0)
}

/// Waits (at most 60 s) until the machine's dirty and under-writeback page cache is below
/// 256 MiB, after asking the kernel to write everything back (`sync`): each async case then
/// starts from the same state instead of being throttled (balance_dirty_pages) for the
/// gigabytes the previous cases left dirty. Returns how long it waited.
pub fn wait_for_writeback() -> Duration {
    let t0 = std::time::Instant::now();
    // SAFETY: sync(2) takes no arguments and cannot fail.
    unsafe { libc::sync() };
    let dirty_kib = || {
        let s = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
        s.lines()
            .filter(|l| l.starts_with("Dirty:") || l.starts_with("Writeback:"))
            .filter_map(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
            .sum::<u64>()
    };
    while dirty_kib() > 256 << 10 && t0.elapsed() < Duration::from_secs(60) {
        std::thread::sleep(Duration::from_millis(50));
    }
    t0.elapsed()
}

/// A fast deterministic PRNG (xorshift64*), for picking keys and offsets.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.max(1))
    }
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }
}

/// Splits `iters` operations over `threads` threads as evenly as possible.
pub fn split(iters: u64, threads: usize) -> Vec<u64> {
    let t = threads as u64;
    (0..t)
        .map(|i| iters / t + u64::from(i < iters % t))
        .collect()
}

/// Big-endian reads of the fixed record header (RocketMQ layout: TOTALSIZE 0, MAGIC 4, BODYCRC 8,
/// QUEUEID 12, FLAG 16, QUEUEOFFSET 20, PHYSICALOFFSET 28, SYSFLAG 36, BORNTIMESTAMP 40,
/// BORNHOST 48 (IPv4), STORETIMESTAMP 56).
pub fn be_i32(b: &[u8], at: usize) -> i32 {
    i32::from_be_bytes(b[at..at + 4].try_into().unwrap())
}
pub fn be_i64(b: &[u8], at: usize) -> i64 {
    i64::from_be_bytes(b[at..at + 8].try_into().unwrap())
}
pub const REC_STORE_TIMESTAMP: usize = 56;

/// Maps `path` read-only (for ceilings that read the store's own files).
pub fn map_ro(path: &Path) -> memmap2::Mmap {
    let f = std::fs::File::open(path).unwrap();
    // SAFETY: the benches only map files of a store they own; the store never shrinks a file
    // below data that was already written while these read-only maps are alive.
    unsafe { memmap2::Mmap::map(&f).unwrap() }
}

/// Path of the first CommitLog segment of a store root.
pub fn first_segment(root: &Path) -> PathBuf {
    let mut names: Vec<PathBuf> = std::fs::read_dir(root.join("commitlog"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    names.sort();
    names.into_iter().next().expect("no CommitLog segment")
}

/// Writes ~`bytes` of CommitLog into a fresh root (1 KiB bodies, tag `TagA`, one unique key each,
/// 8 queues of topic `bench`, default config) and closes it cleanly; returns the number of
/// messages and the log end.
pub fn build_store(root: &Path, bytes: u64) -> (u64, u64) {
    use rocketstore::{Message, Store, StoreConfig};
    let store = Store::open(root, StoreConfig::default()).unwrap();
    let body = vec![0x5Au8; 1024];
    let mut n = 0u64;
    while store.commitlog_max_offset() < bytes {
        let key = format!("K{n:012}");
        store
            .put(
                &Message::new("bench", (n % 8) as i32, &body)
                    .with_tags("TagA")
                    .with_keys([key.as_str()]),
            )
            .unwrap();
        n += 1;
    }
    let end = store.commitlog_max_offset();
    store.close().unwrap();
    (n, end)
}
