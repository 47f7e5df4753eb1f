//! The `rocketstore` inspector binary, run against roots built with the library: its own roots
//! (records with the `__CRC32#` property, checkpoint with trailer) and roots shaped like ones
//! RocketMQ writes (no CRC property, checkpoint without trailer, an `abort` marker).

use std::collections::BTreeMap;
use std::fs;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use rocketstore::format::checkpoint_layout::Checkpoint;
use rocketstore::format::java_hash::java_string_hash;
use rocketstore::{Message, PutResult, Store, StoreConfig};
use serde_json::Value;

const SEGMENT: u64 = 256 * 1024;
const TOPIC: &str = "orders";
const QUEUES: i32 = 4;
/// Position of the body in a record with IPv4 born and store hosts.
const BODY_POS: u64 = 88;

/// Small files: several segments, ConsumeQueue files and IndexFiles within a few thousand
/// messages. The index geometry keeps RocketMQ's 1:4 slot/entry ratio, which the CLI infers.
fn config(crc_property: bool) -> StoreConfig {
    StoreConfig {
        commitlog_segment_size: SEGMENT as usize,
        consume_queue_units_per_file: 50,
        index_hash_slots: 100,
        index_max_entries: 400,
        max_message_size: 16 * 1024,
        append_crc_property: crc_property,
        ..StoreConfig::small()
    }
}

fn body(i: usize) -> String {
    format!("order {i} {}", "x".repeat(i % 300))
}

/// Puts `n` messages round-robin over the queues of `orders`, tagged and keyed `ORDER-i`.
fn put_orders(store: &Store, from: usize, n: usize) -> Vec<PutResult> {
    (from..from + n)
        .map(|i| {
            let b = body(i);
            let tag = if i % 2 == 0 { "TagA" } else { "TagB" };
            store
                .put(
                    &Message::new(TOPIC, (i % QUEUES as usize) as i32, b.as_bytes())
                        .with_tags(tag)
                        .with_keys([format!("ORDER-{i}")]),
                )
                .unwrap()
        })
        .collect()
}

/// A closed rocketstore root with `n` messages.
fn own_root(n: usize) -> (tempfile::TempDir, Vec<PutResult>) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), config(true)).unwrap();
    let puts = put_orders(&store, 0, n);
    store.close().unwrap();
    (dir, puts)
}

/// A root shaped like RocketMQ's: records without `__CRC32#`, a checkpoint of RocketMQ's 40
/// bytes only, and an `abort` marker as a broker that was killed leaves it.
fn rocketmq_root(n: usize) -> (tempfile::TempDir, Vec<PutResult>) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), config(false)).unwrap();
    let puts = put_orders(&store, 0, n);
    store.close().unwrap();
    let cp_path = dir.path().join("checkpoint");
    let mut cp = Checkpoint::decode(&fs::read(&cp_path).unwrap());
    assert!(cp.trailer.is_some());
    cp.trailer = None;
    fs::write(&cp_path, cp.encode()).unwrap();
    fs::write(dir.path().join("abort"), b"").unwrap();
    (dir, puts)
}

fn rocketstore(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_rocketstore"))
        .args(args)
        .output()
        .expect("run the rocketstore binary")
}

fn run_ok(args: &[&str]) -> String {
    let out = rocketstore(args);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{args:?}\nstdout:\n{}\nstderr:\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn p(path: &Path) -> &str {
    path.to_str().unwrap()
}

fn json_lines(s: &str) -> Vec<Value> {
    s.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

fn segment_path(root: &Path, offset: u64) -> (PathBuf, u64) {
    let start = offset / SEGMENT * SEGMENT;
    (
        root.join("commitlog").join(format!("{start:020}")),
        offset - start,
    )
}

fn flip_byte(path: &Path, pos: u64) {
    let mut f = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .unwrap();
    let mut b = [0u8; 1];
    f.seek(SeekFrom::Start(pos)).unwrap();
    f.read_exact(&mut b).unwrap();
    f.seek(SeekFrom::Start(pos)).unwrap();
    f.write_all(&[b[0] ^ 0x20]).unwrap();
}

/// Every file under `root` with its bytes.
fn snapshot(root: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut dirs = vec![root.to_path_buf()];
    while let Some(d) = dirs.pop() {
        for e in fs::read_dir(&d).unwrap() {
            let e = e.unwrap();
            if e.file_type().unwrap().is_dir() {
                dirs.push(e.path());
            } else {
                out.insert(e.path(), fs::read(e.path()).unwrap());
            }
        }
    }
    out
}

fn max_queue_offset(puts: &[PutResult], queue: i32) -> u64 {
    (0..puts.len())
        .filter(|i| (i % QUEUES as usize) as i32 == queue)
        .count() as u64
}

#[test]
fn stat_lists_queues_segments_checkpoint_trailer_and_no_abort() {
    let (dir, puts) = own_root(2000);
    let out = run_ok(&["stat", p(dir.path())]);
    for q in 0..QUEUES {
        let line = format!("{TOPIC}/{q}  min 0  max {}", max_queue_offset(&puts, q));
        assert!(out.contains(&line), "missing {line:?} in\n{out}");
    }
    let last = puts.last().unwrap();
    let end = last.commitlog_offset + last.wrote_bytes as u64;
    assert!(
        out.contains(&format!("min offset 0, max offset {end}")),
        "{out}"
    );
    assert!(out.contains("trailer: valid"), "{out}");
    assert!(
        out.contains(&format!("durable_commitlog_offset {end}")),
        "{out}"
    );
    assert!(out.contains("abort marker: absent"), "{out}");
    let segments = fs::read_dir(dir.path().join("commitlog")).unwrap().count();
    assert!(segments >= 2, "the data spans several segments");
    assert!(
        out.contains(&format!(
            "commitlog: {segments} segments of {SEGMENT} bytes"
        )),
        "{out}"
    );

    let v: Value = serde_json::from_str(&run_ok(&["stat", p(dir.path()), "--json"])).unwrap();
    assert_eq!(v["commitlog"]["max_offset"], end);
    assert_eq!(v["abort"], false);
    assert_eq!(v["checkpoint"]["trailer"], "valid");
    assert_eq!(v["queues"].as_array().unwrap().len(), QUEUES as usize);
    assert_eq!(v["queues"][2]["max_offset"], max_queue_offset(&puts, 2));
    let entries: u64 = v["index"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["entries"].as_u64().unwrap())
        .sum();
    assert_eq!(entries, puts.len() as u64, "one index entry per key");
}

#[test]
fn stat_on_rocketmq_shaped_root_shows_missing_trailer_and_abort_marker() {
    let (dir, puts) = rocketmq_root(300);
    let out = run_ok(&["stat", p(dir.path())]);
    assert!(
        out.contains("trailer: absent (RocketMQ-written checkpoint)"),
        "{out}"
    );
    assert!(out.contains("abort marker: PRESENT"), "{out}");
    assert!(out.contains(&format!(
        "{TOPIC}/3  min 0  max {}",
        max_queue_offset(&puts, 3)
    )));
}

#[test]
fn dump_range_prints_records_in_human_and_json_form() {
    let (dir, puts) = own_root(50);
    let from = puts[3].commitlog_offset.to_string();
    let out = run_ok(&["dump", p(dir.path()), "--from", &from, "--count", "2"]);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 2, "{out}");
    assert!(lines[0].starts_with(&format!("@{from} ")), "{out}");
    assert!(lines[0].contains("keys=[\"ORDER-3\"]") && lines[0].contains("tags=\"TagB\""));
    assert!(lines[0].contains("body_crc=ok record_crc=ok"), "{out}");
    assert!(lines[1].starts_with(&format!("@{} ", puts[4].commitlog_offset)));

    let out = run_ok(&[
        "dump",
        p(dir.path()),
        "--from",
        &from,
        "--count",
        "3",
        "--json",
    ]);
    let recs = json_lines(&out);
    assert_eq!(recs.len(), 3);
    for (k, r) in recs.iter().enumerate() {
        let i = 3 + k;
        assert_eq!(r["offset"], puts[i].commitlog_offset);
        assert_eq!(r["size"], puts[i].wrote_bytes);
        assert_eq!(r["topic"], TOPIC);
        assert_eq!(r["queue_id"], (i % QUEUES as usize) as i64);
        assert_eq!(r["queue_offset"], puts[i].queue_offset);
        assert_eq!(r["body"], body(i));
        assert_eq!(r["keys"][0], format!("ORDER-{i}"));
        assert_eq!(r["body_crc_ok"], true);
        assert_eq!(r["record_crc_ok"], true);
        assert_eq!(r["store_timestamp"], puts[i].store_timestamp);
    }
}

#[test]
fn dump_queue_follows_consume_queue_units() {
    let (dir, puts) = own_root(100);
    let out = run_ok(&[
        "dump",
        p(dir.path()),
        "--topic",
        TOPIC,
        "--queue",
        "1",
        "--from",
        "2",
        "--count",
        "3",
        "--json",
    ]);
    let recs = json_lines(&out);
    assert_eq!(recs.len(), 3);
    for (k, r) in recs.iter().enumerate() {
        let i = 1 + (2 + k) * QUEUES as usize; // message i went to queue 1 at offset (i - 1) / 4
        assert_eq!(r["queue_id"], 1);
        assert_eq!(r["queue_offset"], (2 + k) as u64);
        assert_eq!(r["offset"], puts[i].commitlog_offset);
        assert_eq!(r["body"], body(i));
    }
}

#[test]
fn dump_on_rocketmq_root_shows_records_without_crc_property() {
    let (dir, _) = rocketmq_root(10);
    let out = run_ok(&["dump", p(dir.path()), "--count", "1"]);
    assert!(out.contains("body_crc=ok record_crc=none"), "{out}");
    let r = &json_lines(&run_ok(&["dump", p(dir.path()), "--count", "1", "--json"]))[0];
    assert_eq!(r["record_crc"], Value::Null);
    assert_eq!(r["body_crc_ok"], true);
}

#[test]
fn verify_healthy_roots_exit_0() {
    let (dir, _) = own_root(2000);
    let out = rocketstore(&["verify", p(dir.path()), "--require-record-crc"]);
    assert_eq!(out.status.code(), Some(0));
    assert!(
        out.stderr.is_empty(),
        "no progress line when stderr is a pipe"
    );
    let out = String::from_utf8(out.stdout).unwrap();
    assert!(out.contains("OK: no problems found"), "{out}");
    assert!(out.contains("2000 records"), "{out}");
    assert!(out.contains("2000 units checked"), "{out}");
    assert!(out.contains("2000 record keys checked"), "{out}");

    let (dir, _) = rocketmq_root(500);
    let out = run_ok(&["verify", p(dir.path())]);
    assert!(out.contains("OK: no problems found"), "{out}");
    assert!(out.contains("500 records without __CRC32#"), "{out}");
    // Demanding the property from a RocketMQ root is a problem per record.
    let strict = rocketstore(&["verify", p(dir.path()), "--require-record-crc"]);
    assert_eq!(strict.status.code(), Some(1));
}

#[test]
fn verify_reports_a_flipped_body_byte_with_both_crcs() {
    let (dir, puts) = own_root(300);
    let victim = puts[123].commitlog_offset;
    let (seg, pos) = segment_path(dir.path(), victim);
    flip_byte(&seg, pos + BODY_POS + 2);
    let out = rocketstore(&["verify", p(dir.path())]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.contains(&format!("invalid record at {victim}: body CRC mismatch")),
        "{text}"
    );
    assert!(text.contains("; __CRC32# mismatch"), "{text}");
    // Valid records follow in the segment: corruption, one problem; the unit and index entry
    // of the damaged record are consequences, noted.
    assert!(
        text.contains("not a torn tail: 176 valid records"),
        "{text}"
    );
    assert!(text.contains("PROBLEMS: 1"), "{text}");
    assert!(text.contains("1 units point into damaged"), "{text}");
}

#[test]
fn verify_reports_a_flipped_body_byte_on_a_rocketmq_root() {
    let (dir, puts) = rocketmq_root(300);
    let victim = puts[7].commitlog_offset;
    let (seg, pos) = segment_path(dir.path(), victim);
    flip_byte(&seg, pos + BODY_POS);
    let out = rocketstore(&["verify", p(dir.path())]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.contains(&format!("record at {victim}: body CRC mismatch")),
        "{text}"
    );
}

#[test]
fn verify_reports_a_record_whose_physical_offset_is_not_its_position() {
    let (dir, puts) = rocketmq_root(100);
    let victim = puts[40].commitlog_offset;
    let (seg, pos) = segment_path(dir.path(), victim);
    // PHYSICALOFFSET is the i64 at byte 28 of the record; its low byte is at 35.
    flip_byte(&seg, pos + 35);
    let out = rocketstore(&["verify", p(dir.path())]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.contains(&format!(
            "record at {victim}: PHYSICALOFFSET says {}",
            victim ^ 0x20
        )),
        "{text}"
    );
    let dump = run_ok(&[
        "dump",
        p(dir.path()),
        "--from",
        &victim.to_string(),
        "--count",
        "1",
    ]);
    assert!(dump.contains("PHYSICALOFFSET="), "{dump}");
}

#[test]
fn verify_reports_a_damaged_consume_queue_unit() {
    let (dir, puts) = own_root(300);
    // Unit 3 of queue 2 is message 14; overwrite its tag hash.
    let unit_file = dir
        .path()
        .join("consumequeue/orders/2/00000000000000000000");
    let mut bytes = fs::read(&unit_file).unwrap();
    let tag_pos = 3 * 20 + 12;
    assert_eq!(
        i64::from_be_bytes(bytes[tag_pos..tag_pos + 8].try_into().unwrap()),
        i64::from(java_string_hash("TagA"))
    );
    bytes[tag_pos..tag_pos + 8].copy_from_slice(&12345i64.to_be_bytes());
    fs::write(&unit_file, &bytes).unwrap();
    let out = rocketstore(&["verify", p(dir.path())]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    let expected = format!(
        "consumequeue: orders/2 unit 3 -> record at {}: unit tag hash 12345",
        puts[14].commitlog_offset
    );
    assert!(text.contains(&expected), "{text}");
}

#[test]
fn verify_reports_an_index_entry_pointing_nowhere() {
    let (dir, _) = own_root(50);
    let index_dir = dir.path().join("index");
    let file = fs::read_dir(&index_dir)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let mut bytes = fs::read(&file).unwrap();
    // Entry 1's commitlog offset (40-byte header, 100 slots, entry 1 at +20, offset at +4).
    let pos = 40 + 100 * 4 + 20 + 4;
    bytes[pos..pos + 8].copy_from_slice(&7i64.to_be_bytes());
    fs::write(&file, &bytes).unwrap();
    let out = rocketstore(&["verify", p(dir.path())]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.contains("-> commitlog offset 7: no record starts there"),
        "{text}"
    );
    assert!(text.contains("a key of the record at 0 "), "{text}");
}

#[test]
fn read_only_subcommands_change_no_byte() {
    let (dir, puts) = rocketmq_root(400);
    let before = snapshot(dir.path());
    let root = p(dir.path());
    run_ok(&["stat", root]);
    run_ok(&["stat", root, "--json"]);
    run_ok(&["dump", root, "--count", "1000"]);
    run_ok(&["dump", root, "--topic", TOPIC, "--queue", "0", "--json"]);
    run_ok(&["verify", root]);
    run_ok(&["query", root, "--topic", TOPIC, "--key", "ORDER-5"]);
    run_ok(&["groups", root]);
    run_ok(&["groups", root, "--json"]);
    run_ok(&["delays", root]);
    run_ok(&["delays", root, "--json"]);
    run_ok(&["dlq", root, "--group", "g"]);
    run_ok(&["dlq", root, "--group", "g", "--json"]);
    let t = puts[100].store_timestamp.to_string();
    run_ok(&[
        "query", root, "--topic", TOPIC, "--queue", "0", "--time", &t,
    ]);
    assert_eq!(before, snapshot(dir.path()), "a read-only subcommand wrote");
}

#[test]
fn query_by_key_finds_the_message_and_rechecks_the_key() {
    let (dir, puts) = own_root(1000);
    let root = p(dir.path());
    let out = run_ok(&[
        "query",
        root,
        "--topic",
        TOPIC,
        "--key",
        "ORDER-777",
        "--json",
    ]);
    let hits = json_lines(&out);
    assert_eq!(hits.len(), 1, "{out}");
    assert_eq!(hits[0]["offset"], puts[777].commitlog_offset);
    assert_eq!(hits[0]["body"], body(777));
    let out = run_ok(&["query", root, "--topic", TOPIC, "--key", "ORDER-777"]);
    assert!(
        out.contains(&format!("@{} ", puts[777].commitlog_offset)),
        "{out}"
    );
    assert!(out.ends_with("1 message(s)\n"), "{out}");
    // Another topic's namespace, an unknown key, a time range before the message.
    let out = run_ok(&["query", root, "--topic", "other", "--key", "ORDER-777"]);
    assert!(out.ends_with("0 message(s)\n"), "{out}");
    let out = run_ok(&["query", root, "--topic", TOPIC, "--key", "ORDER-1000"]);
    assert!(out.ends_with("0 message(s)\n"), "{out}");
    let before = (puts[0].store_timestamp - 10_000).to_string();
    let out = run_ok(&[
        "query",
        root,
        "--topic",
        TOPIC,
        "--key",
        "ORDER-777",
        "--begin",
        "0",
        "--end",
        &before,
    ]);
    assert!(out.ends_with("0 message(s)\n"), "{out}");
}

#[test]
fn query_by_time_returns_the_first_message_stored_at_or_after_it() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), config(true)).unwrap();
    let mut puts = put_orders(&store, 0, 40);
    std::thread::sleep(std::time::Duration::from_millis(30));
    puts.extend(put_orders(&store, 40, 40));
    std::thread::sleep(std::time::Duration::from_millis(30));
    puts.extend(put_orders(&store, 80, 40));
    store.close().unwrap();
    let t = puts[40].store_timestamp;
    assert!(t > puts[39].store_timestamp);
    for q in 0..QUEUES {
        let expected = (0..puts.len())
            .filter(|&i| (i % QUEUES as usize) as i32 == q && puts[i].store_timestamp >= t)
            .map(|i| puts[i].queue_offset)
            .min()
            .unwrap();
        let out = run_ok(&[
            "query",
            p(dir.path()),
            "--topic",
            TOPIC,
            "--queue",
            &q.to_string(),
            "--time",
            &t.to_string(),
            "--json",
        ]);
        let v: Value = serde_json::from_str(out.trim()).unwrap();
        assert_eq!(v["queue_offset"], expected, "queue {q}: {out}");
        assert_eq!(v["message"]["queue_offset"], expected);
        assert!(v["message"]["store_timestamp"].as_i64().unwrap() >= t);
    }
    // Past the newest message: the queue's max offset, no message.
    let late = (puts.last().unwrap().store_timestamp + 1).to_string();
    let out = run_ok(&[
        "query",
        p(dir.path()),
        "--topic",
        TOPIC,
        "--queue",
        "0",
        "--time",
        &late,
    ]);
    assert!(out.starts_with("queue offset 30 "), "{out}");
}

/// `ms` as RFC 3339 at a UTC offset of `offset_min` minutes (`Z` for 0), with milliseconds.
fn rfc3339(ms: i64, offset_min: i64) -> String {
    let local = ms + offset_min * 60_000;
    let (days, in_day) = (local.div_euclid(86_400_000), local.rem_euclid(86_400_000));
    // Civil date from days since 1970-01-01 (H. Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    let (h, mi, sec, milli) = (
        in_day / 3_600_000,
        in_day / 60_000 % 60,
        in_day / 1000 % 60,
        in_day % 1000,
    );
    let zone = if offset_min == 0 {
        "Z".to_string()
    } else {
        let sign = if offset_min < 0 { '-' } else { '+' };
        format!(
            "{sign}{:02}:{:02}",
            offset_min.abs() / 60,
            offset_min.abs() % 60
        )
    };
    format!("{y:04}-{m:02}-{d:02}T{h:02}:{mi:02}:{sec:02}.{milli:03}{zone}")
}

/// `--time`, `--begin` and `--end` take RFC 3339 as well as epoch milliseconds (issue 14).
#[test]
fn time_options_accept_rfc3339_as_well_as_epoch_milliseconds() {
    assert_eq!(rfc3339(0, 0), "1970-01-01T00:00:00.000Z");
    assert_eq!(
        rfc3339(1_796_277_600_123, 60),
        "2026-12-03T07:00:00.123+01:00"
    );
    let (dir, puts) = own_root(200);
    let root = p(dir.path());
    let t = puts[101].store_timestamp;
    let by_time = |time: &str| {
        let out = run_ok(&[
            "query", root, "--topic", TOPIC, "--queue", "1", "--time", time, "--json",
        ]);
        serde_json::from_str::<Value>(out.trim()).unwrap()
    };
    let epoch = by_time(&t.to_string());
    assert_eq!(epoch["time"], t);
    for text in [rfc3339(t, 0), rfc3339(t, 60), rfc3339(t, -330)] {
        let v = by_time(&text);
        assert_eq!(v["time"], t, "{text}");
        assert_eq!(v, epoch, "{text}");
    }
    // Whole seconds, no fraction: the millisecond part is 0.
    let whole = t - t.rem_euclid(1000);
    let text = rfc3339(whole, 0).replace(".000Z", "Z");
    assert_eq!(by_time(&text)["time"], whole, "{text}");
    // --begin/--end in RFC 3339: a window that ends before the message finds nothing, one
    // around it finds it.
    let key = |begin: String, end: String| {
        run_ok(&[
            "query",
            root,
            "--topic",
            TOPIC,
            "--key",
            "ORDER-101",
            "--begin",
            &begin,
            "--end",
            &end,
        ])
    };
    let out = key(rfc3339(t - 60_000, 0), rfc3339(t + 60_000, 120));
    assert!(out.ends_with("1 message(s)\n"), "{out}");
    let out = key(rfc3339(0, 0), rfc3339(t - 10_000, 0));
    assert!(out.ends_with("0 message(s)\n"), "{out}");
    // Neither form: a usage error that names both.
    let out = rocketstore(&[
        "query",
        root,
        "--topic",
        TOPIC,
        "--queue",
        "1",
        "--time",
        "yesterday",
    ]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("epoch milliseconds") && err.contains("RFC 3339"),
        "{err}"
    );
}

#[test]
fn bench_json_reports_every_field() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("bench");
    let out = run_ok(&[
        "bench",
        p(&root),
        "--flush",
        "async",
        "--threads",
        "2",
        "--messages",
        "500",
        "--size",
        "100",
        "--queues",
        "3",
        "--topic",
        "BenchT",
        "--json",
        "--segment-size",
        "262144",
        "--cq-units",
        "100",
        "--index-slots",
        "100",
        "--index-entries",
        "400",
    ]);
    let v: Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(v["messages"], 500);
    for f in [
        "seconds",
        "msgs_per_sec",
        "mb_per_sec",
        "p50_us",
        "p99_us",
        "p999_us",
        "mean_us",
        "max_us",
    ] {
        assert!(v[f].as_f64().is_some_and(|x| x > 0.0), "{f} in {out}");
    }
    assert!(v["p50_us"].as_f64() <= v["p99_us"].as_f64());
    assert!(v["p99_us"].as_f64() <= v["p999_us"].as_f64());
    assert!(v["p999_us"].as_f64() <= v["max_us"].as_f64());
    assert!(v["mean_us"].as_f64() <= v["max_us"].as_f64());
    assert_eq!(v["keys"], true);
    let (ge_100us, ge_1ms) = (&v["stalls"]["ge_100us"], &v["stalls"]["ge_1ms"]);
    assert!(ge_100us.as_u64() >= ge_1ms.as_u64(), "{out}");
    let msgs = v["msgs_per_sec"].as_f64().unwrap();
    let secs = v["seconds"].as_f64().unwrap();
    assert!((msgs * secs - 500.0).abs() < 1.0);
    let stat: Value = serde_json::from_str(&run_ok(&["stat", p(&root), "--json"])).unwrap();
    let total: u64 = stat["queues"]
        .as_array()
        .unwrap()
        .iter()
        .map(|q| q["max_offset"].as_u64().unwrap())
        .sum();
    assert_eq!(total, 500);
    run_ok(&["verify", p(&root)]);
}

#[test]
fn bench_ack_log_then_check_acks_passes_and_a_forged_ack_fails() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("bench");
    let acks = dir.path().join("acks.log");
    let out = run_ok(&[
        "bench",
        p(&root),
        "--flush",
        "sync",
        "--threads",
        "3",
        "--messages",
        "300",
        "--size",
        "64",
        "--queues",
        "2",
        "--ack-log",
        p(&acks),
        "--segment-size",
        "262144",
        "--cq-units",
        "100",
        "--index-slots",
        "100",
        "--index-entries",
        "400",
    ]);
    assert!(out.contains("msgs/s") && out.contains("p999"), "{out}");
    let log = fs::read_to_string(&acks).unwrap();
    let lines: Vec<&str> = log.lines().collect();
    assert_eq!(lines.len(), 300);
    let first: Vec<&str> = lines[0].split(' ').collect();
    assert_eq!(first.len(), 5);
    assert_eq!(first[2], "BenchTopic");

    let out = run_ok(&["check-acks", p(&root), p(&acks)]);
    assert!(
        out.contains("checked 300 acknowledged puts: 300 present, 0 missing"),
        "{out}"
    );

    // A forged ack: a real record's offset and size, but a queue offset nobody got.
    let mut f = fs::OpenOptions::new().append(true).open(&acks).unwrap();
    writeln!(
        f,
        "{} {} {} {} 999999",
        first[0], first[1], first[2], first[3]
    )
    .unwrap();
    // And one at an offset past the end of the log.
    writeln!(f, "99999999 100 BenchTopic 0 0").unwrap();
    drop(f);
    let out = rocketstore(&["check-acks", p(&root), p(&acks)]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.contains("MISSING line 301:") && text.contains("queue offset"),
        "{text}"
    );
    assert!(text.contains("MISSING line 302:"), "{text}");
    assert!(
        text.contains("checked 302 acknowledged puts: 300 present, 2 missing"),
        "{text}"
    );
}

#[test]
fn recover_reports_and_closes_cleanly() {
    let (dir, puts) = rocketmq_root(200);
    let out = run_ok(&["recover", p(dir.path()), "--json"]);
    let v: Value = serde_json::from_str(out.trim()).unwrap();
    let last = puts.last().unwrap();
    assert_eq!(
        v["end_offset"],
        last.commitlog_offset + last.wrote_bytes as u64
    );
    assert_eq!(v["clean_shutdown"], false, "the abort marker was there");
    assert_eq!(v["truncated_at"], Value::Null);
    // Closed cleanly: no abort marker, a trailer now, and still healthy.
    assert!(!dir.path().join("abort").exists());
    let stat = run_ok(&["stat", p(dir.path())]);
    assert!(stat.contains("trailer: valid"), "{stat}");
    run_ok(&["verify", p(dir.path())]);
}

#[test]
fn recover_refuses_a_commitlog_gap_and_keeps_the_side_it_is_told_to() {
    let (dir, _) = own_root(3000);
    let seg = |n: u64| {
        dir.path()
            .join("commitlog")
            .join(format!("{:020}", n * SEGMENT))
    };
    assert!(seg(3).exists(), "the root needs four segments");
    fs::remove_file(seg(1)).unwrap();
    let refused = rocketstore(&["recover", p(dir.path())]);
    assert_ne!(refused.status.code(), Some(0));
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(
        err.contains("has a gap") && err.contains("--segment-gap"),
        "{err}"
    );
    assert!(seg(0).exists(), "a refused recover deleted a segment");

    let out = run_ok(&[
        "recover",
        p(dir.path()),
        "--json",
        "--segment-gap",
        "keep-after",
    ]);
    let v: Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(v["gap_repaired"]["missing_from"], SEGMENT);
    assert_eq!(v["gap_repaired"]["missing_to"], 2 * SEGMENT);
    assert_eq!(v["commitlog_min_offset"], 2 * SEGMENT);
    assert!(!seg(0).exists());
    run_ok(&["verify", p(dir.path())]);
}

/// The OS error text reaches the user exactly once: the CLI prints the error chain and no
/// Display repeats its source (issue 14 item 2). One error of the CLI's own (a missing ack
/// log), one of the library (`lock` is a directory, so `Store::open` fails).
#[test]
fn an_os_error_is_printed_once_with_its_path() {
    let once = |out: &Output, path: &Path, os: &str| {
        assert_eq!(out.status.code(), Some(2));
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(err.matches(os).count(), 1, "{err}");
        assert!(err.contains(p(path)), "{err}");
        assert_eq!(err.lines().count(), 1, "{err}");
    };
    let (root, _) = own_root(3);
    let log = root.path().join("missing.log");
    let enoent = std::io::Error::from_raw_os_error(2).to_string();
    once(
        &rocketstore(&["check-acks", p(root.path()), p(&log)]),
        &log,
        &enoent,
    );
    let lock = root.path().join("lock");
    fs::remove_file(&lock).unwrap();
    fs::create_dir(&lock).unwrap();
    let eisdir = std::io::Error::from_raw_os_error(21).to_string();
    let out = rocketstore(&["recover", p(root.path())]);
    once(&out, &lock, &eisdir);
    assert!(String::from_utf8_lossy(&out.stderr).contains("I/O error on"));
}

#[test]
fn errors_name_the_path_and_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope");
    for sub in ["stat", "verify", "dump", "recover"] {
        let out = rocketstore(&[sub, p(&missing)]);
        assert_eq!(out.status.code(), Some(2), "{sub}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains(p(&missing)) && err.contains("no such directory"),
            "{sub}: {err}"
        );
        assert!(!err.contains("panicked"), "{err}");
    }
    assert!(!missing.exists(), "nothing created");
    let (root, puts) = own_root(5);
    let odd = (puts[1].commitlog_offset + 3).to_string();
    let out = rocketstore(&["dump", p(root.path()), "--from", &odd]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("no record at commitlog offset {odd}")),
        "{err}"
    );
    assert!(
        err.contains("00000000000000000000"),
        "names the segment: {err}"
    );
    let out = rocketstore(&["query", p(root.path()), "--topic", TOPIC]);
    assert_eq!(out.status.code(), Some(2), "neither --key nor --time");
}

/// A writable copy of `tests/fixtures/rocketmq-4.9.8/<name>` (a root RocketMQ 4.9.8 wrote; see
/// the README there).
fn rocketmq_fixture(name: &str) -> tempfile::TempDir {
    fn copy(from: &Path, to: &Path) {
        fs::create_dir_all(to).unwrap();
        for e in fs::read_dir(from).unwrap() {
            let e = e.unwrap();
            let dst = to.join(e.file_name());
            if e.file_type().unwrap().is_dir() {
                copy(&e.path(), &dst);
            } else {
                fs::write(&dst, fs::read(e.path()).unwrap()).unwrap();
            }
        }
    }
    let from = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/fixtures/rocketmq-4.9.8")
        .join(name);
    let dir = tempfile::tempdir().unwrap();
    copy(&from, dir.path());
    dir
}

/// `verify` finds no problem in the roots RocketMQ wrote, before and after `recover`, and sees
/// every record of each.
#[test]
fn verify_is_clean_on_roots_rocketmq_wrote() {
    for (name, records) in [
        ("java-clean", 5000),
        ("java-crash", 5000),
        ("rocketstore-then-java", 1500),
    ] {
        let dir = rocketmq_fixture(name);
        let out = run_ok(&["verify", p(dir.path())]);
        assert!(out.contains("OK: no problems found"), "{name}: {out}");
        if name == "rocketstore-then-java" {
            assert!(
                out.contains("trailer version 1 does not check out"),
                "{out}"
            );
        }
        assert!(
            out.contains(&format!(" {records} records")),
            "{name}: {out}"
        );
        let config = fs::read(dir.path().join("config/delayOffset.json")).ok();
        let recovered = run_ok(&["recover", p(dir.path()), "--json"]);
        let report = &json_lines(&recovered)[0];
        assert_eq!(report["truncated_at"], Value::Null, "{name}: {recovered}");
        assert_eq!(
            report["rocketmq_normal_recovery"],
            name != "java-crash",
            "{name}: {recovered}"
        );
        assert_eq!(
            report["derived_rebuilt"],
            name == "java-crash",
            "{name}: {recovered}"
        );
        assert_eq!(
            fs::read(dir.path().join("config/delayOffset.json")).ok(),
            config,
            "{name}: the broker's config/ survives recover"
        );
        let out = run_ok(&["verify", p(dir.path())]);
        assert!(
            out.contains("OK: no problems found"),
            "{name}, recovered: {out}"
        );
        assert!(
            out.contains(&format!(" {records} records")),
            "{name}, recovered: {out}"
        );
    }
}

/// One rule for the CRC property (issue 14): a record whose `__CRC32#` name lost a byte is
/// damage, not "a record without the property", for `verify` as for recovery.
#[test]
fn verify_rejects_a_record_whose_crc_property_name_was_damaged() {
    let (dir, puts) = own_root(300);
    let victim = &puts[77];
    let (seg, pos) = segment_path(dir.path(), victim.commitlog_offset);
    // The property ends the record: `__CRC32#` starts 20 bytes before its end.
    let name_at = pos + victim.wrote_bytes as u64 - 20;
    let mut name = [0u8; 8];
    let mut f = fs::File::open(&seg).unwrap();
    f.seek(SeekFrom::Start(name_at)).unwrap();
    f.read_exact(&mut name).unwrap();
    assert_eq!(&name, b"__CRC32#");
    flip_byte(&seg, name_at + 3);
    let out = rocketstore(&["verify", p(dir.path())]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.contains(&format!(
            "record at {}: damaged __CRC32# property",
            victim.commitlog_offset
        )),
        "{text}"
    );
    assert!(
        !text.contains("without __CRC32#"),
        "not counted as absent: {text}"
    );
}

/// A root whose index geometry (1:6) no guess from a file length finds: the library records it
/// in the root, and every subcommand opens the root without `--index-slots/--index-entries`.
#[test]
fn a_root_with_recorded_index_geometry_needs_no_geometry_flags() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(
        dir.path(),
        StoreConfig {
            index_hash_slots: 50,
            index_max_entries: 300,
            ..config(true)
        },
    )
    .unwrap();
    let puts = put_orders(&store, 0, 700);
    store.close().unwrap();
    assert!(fs::read_dir(dir.path().join("index")).unwrap().count() >= 2);
    let root = p(dir.path());
    run_ok(&["stat", root]);
    run_ok(&["verify", root]);
    let out = run_ok(&[
        "query",
        root,
        "--topic",
        TOPIC,
        "--key",
        "ORDER-650",
        "--json",
    ]);
    let hits = json_lines(&out);
    assert_eq!(hits.len(), 1, "{out}");
    assert_eq!(hits[0]["offset"], puts[650].commitlog_offset);
    let out = run_ok(&["recover", root]);
    assert!(out.contains("rocketstore-geometry"), "{out}");
    // Flags still decide for a root without the record.
    fs::remove_file(dir.path().join("rocketstore-geometry")).unwrap();
    assert_eq!(
        rocketstore(&["query", root, "--topic", TOPIC, "--key", "ORDER-650"])
            .status
            .code(),
        Some(2)
    );
    run_ok(&[
        "stat",
        root,
        "--index-slots",
        "50",
        "--index-entries",
        "300",
    ]);
}

/// `bench` creates a root, but not among unrelated files (the library's NotAStoreRoot, nothing
/// created); a directory holding only the `lock` a crashed new store left is a root to it.
#[test]
fn bench_refuses_a_directory_of_unrelated_files_but_takes_a_crashed_new_root() {
    let bench = |root: &Path| {
        rocketstore(&[
            "bench",
            p(root),
            "--flush",
            "async",
            "--threads",
            "1",
            "--messages",
            "20",
            "--size",
            "100",
            "--queues",
            "1",
            "--segment-size",
            "262144",
        ])
    };
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("notes.txt"), b"mine").unwrap();
    let out = bench(dir.path());
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("not a store root") && err.contains("notes.txt"),
        "{err}"
    );
    let left: Vec<_> = fs::read_dir(dir.path()).unwrap().collect();
    assert_eq!(left.len(), 1, "nothing created");

    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("lock"), b"").unwrap();
    let out = bench(dir.path());
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// What `Store::open` made of a damaged root.
#[derive(Debug, PartialEq, Eq)]
enum Opened {
    /// `Error::Corruption`.
    Corrupt,
    /// Opened; the log was cut at this offset (a torn tail), or not cut.
    Cut(Option<u64>),
}

fn open_verdict(root: &Path) -> Opened {
    match Store::open(root, config(true)) {
        Ok(store) => {
            let cut = store.recovery_report().truncated_at;
            store.close().unwrap();
            Opened::Cut(cut)
        }
        Err(rocketstore::Error::Corruption { .. }) => Opened::Corrupt,
        Err(e) => panic!("neither opened nor refused as corrupt: {e}"),
    }
}

/// `verify --json` on `root`: (exit code, the object).
fn verify_json(root: &Path) -> (Option<i32>, Value) {
    let out = rocketstore(&["verify", p(root), "--json"]);
    let text = String::from_utf8(out.stdout).unwrap();
    let v: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"));
    (out.status.code(), v)
}

/// A closed root with `__CRC32#` records whose checkpoint vouches for nothing (trailer
/// stripped, `abort` marker present, as a crash before the first checkpoint leaves it), so
/// `Store::open` walks the whole log with nothing acknowledged, as verify judges it.
fn unvouched_root(n: usize) -> (tempfile::TempDir, Vec<PutResult>) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), config(true)).unwrap();
    let puts = put_orders(&store, 0, n);
    store.close().unwrap();
    let cp_path = dir.path().join("checkpoint");
    let mut cp = Checkpoint::decode(&fs::read(&cp_path).unwrap());
    cp.trailer = None;
    fs::write(&cp_path, cp.encode()).unwrap();
    fs::write(dir.path().join("abort"), b"").unwrap();
    (dir, puts)
}

fn overwrite(path: &Path, pos: u64, bytes: &[u8]) {
    let mut f = fs::OpenOptions::new().write(true).open(path).unwrap();
    f.seek(SeekFrom::Start(pos)).unwrap();
    f.write_all(bytes).unwrap();
}

/// One rule with recovery (the issue's case list): for each damaged root, verify's verdict
/// is `Store::open`'s: corruption (verify exit 1, the corruption named at the damaged record)
/// exactly when open refuses with `Error::Corruption`; a torn tail (verify exit 0, `torn_tail`
/// at the offset) exactly when open cuts the log there.
#[test]
fn verify_agrees_with_store_open_on_damaged_roots() {
    enum Damage {
        /// A body byte of record `i` flipped.
        FlipBody(usize),
        /// The second half of the last record zeroed (a torn write).
        TearLast,
        /// A byte of record `i`'s `__CRC32#` name flipped.
        CrcName(usize),
    }
    enum Expect {
        /// Corruption at record `i`, the scan resumed at `resumed` (an offset).
        Corrupt { at: usize, resumed: Resumed },
        /// A torn tail at the last record.
        TornLast,
    }
    enum Resumed {
        /// At the next record.
        NextRecord,
        /// At the BLANK closing the record's segment.
        Blank,
        /// Nowhere: below the durable offset, nothing valid follows.
        Nowhere,
    }
    enum Shape {
        Unvouched,
        CheckpointDeleted,
        /// Our trailer vouches for the whole log; an `abort` marker makes open walk its last
        /// segment.
        VouchedCrashed,
    }
    // The last record of the second segment.
    let last_of_segment_1 = |puts: &[PutResult]| {
        puts.iter()
            .rposition(|r| r.commitlog_offset / SEGMENT == 1)
            .unwrap()
    };
    type Case = (
        &'static str,
        Shape,
        usize,
        Box<dyn Fn(&[PutResult]) -> Damage>,
        Box<dyn Fn(&[PutResult]) -> Expect>,
    );
    let cases: Vec<Case> = vec![
        (
            "flipped byte, valid records after it in its segment",
            Shape::Unvouched,
            2000,
            Box::new(|_| Damage::FlipBody(123)),
            Box::new(|_| Expect::Corrupt {
                at: 123,
                resumed: Resumed::NextRecord,
            }),
        ),
        (
            "damage at the end of a middle segment (a BLANK and later segments follow)",
            Shape::Unvouched,
            3000,
            Box::new(move |puts| Damage::FlipBody(last_of_segment_1(puts))),
            Box::new(move |puts| Expect::Corrupt {
                at: last_of_segment_1(puts),
                resumed: Resumed::Blank,
            }),
        ),
        (
            "torn tail at the very end",
            Shape::Unvouched,
            2000,
            Box::new(|_| Damage::TearLast),
            Box::new(|_| Expect::TornLast),
        ),
        (
            "damaged __CRC32# name",
            Shape::Unvouched,
            300,
            Box::new(|_| Damage::CrcName(77)),
            Box::new(|_| Expect::Corrupt {
                at: 77,
                resumed: Resumed::NextRecord,
            }),
        ),
        (
            "checkpoint deleted, flipped byte",
            Shape::CheckpointDeleted,
            2000,
            Box::new(|_| Damage::FlipBody(500)),
            Box::new(|_| Expect::Corrupt {
                at: 500,
                resumed: Resumed::NextRecord,
            }),
        ),
        (
            "torn last record below the checkpoint's durable offset",
            Shape::VouchedCrashed,
            2000,
            Box::new(|_| Damage::TearLast),
            Box::new(|puts| Expect::Corrupt {
                at: puts.len() - 1,
                resumed: Resumed::Nowhere,
            }),
        ),
    ];
    for (name, shape, n, damage, expect) in cases {
        let (dir, puts) = match shape {
            Shape::Unvouched => unvouched_root(n),
            Shape::CheckpointDeleted => {
                let (dir, puts) = own_root(n);
                fs::remove_file(dir.path().join("checkpoint")).unwrap();
                (dir, puts)
            }
            Shape::VouchedCrashed => {
                let (dir, puts) = own_root(n);
                fs::write(dir.path().join("abort"), b"").unwrap();
                (dir, puts)
            }
        };
        let last = puts.last().unwrap();
        match damage(&puts) {
            Damage::FlipBody(i) => {
                let (seg, pos) = segment_path(dir.path(), puts[i].commitlog_offset);
                flip_byte(&seg, pos + BODY_POS + 2);
            }
            Damage::TearLast => {
                let (seg, pos) = segment_path(dir.path(), last.commitlog_offset);
                let half = last.wrote_bytes as u64 / 2;
                overwrite(
                    &seg,
                    pos + half,
                    &vec![0u8; last.wrote_bytes - half as usize],
                );
            }
            Damage::CrcName(i) => {
                let (seg, pos) = segment_path(dir.path(), puts[i].commitlog_offset);
                flip_byte(&seg, pos + puts[i].wrote_bytes as u64 - 20 + 3);
            }
        }
        let (code, v) = verify_json(dir.path());
        let corruption = v["corruption"].as_array().unwrap();
        match expect(&puts) {
            Expect::Corrupt { at, resumed } => {
                assert_eq!(code, Some(1), "{name}: {v:#}");
                assert_eq!(v["verdict"], "problems", "{name}: {v:#}");
                assert_eq!(v["torn_tail"], Value::Null, "{name}: {v:#}");
                assert_eq!(corruption.len(), 1, "{name}: {v:#}");
                let c = &corruption[0];
                let off = puts[at].commitlog_offset;
                assert_eq!(c["offset"], off, "{name}: {v:#}");
                let (seg, _) = segment_path(dir.path(), off);
                assert_eq!(c["file"], p(&seg), "{name}: {v:#}");
                match resumed {
                    Resumed::NextRecord => {
                        assert_eq!(
                            c["resumed_at"],
                            puts[at + 1].commitlog_offset,
                            "{name}: {v:#}"
                        );
                        // Every later record of the segment follows, and the scan counted
                        // all records but the damaged one.
                        let seg_no = off / SEGMENT;
                        let after: Vec<_> = puts[at + 1..]
                            .iter()
                            .filter(|r| r.commitlog_offset / SEGMENT == seg_no)
                            .collect();
                        assert_eq!(c["valid_records_after"], after.len(), "{name}: {v:#}");
                        assert!(
                            c["valid_bytes_after"].as_u64().unwrap()
                                >= after.iter().map(|r| r.wrote_bytes as u64).sum::<u64>(),
                            "{name}: {v:#}"
                        );
                        assert_eq!(v["records"], puts.len() - 1, "{name}: {v:#}");
                    }
                    Resumed::Blank => {
                        let blank = off + puts[at].wrote_bytes as u64;
                        assert_eq!(c["resumed_at"], blank, "{name}: {v:#}");
                        assert_eq!(c["valid_records_after"], 0, "{name}: {v:#}");
                        assert_eq!(
                            c["valid_bytes_after"],
                            (off / SEGMENT + 1) * SEGMENT - blank,
                            "{name}: {v:#}"
                        );
                        assert!(c["later_segments"].as_u64().unwrap() >= 1, "{name}: {v:#}");
                        assert_eq!(v["records"], puts.len() - 1, "{name}: {v:#}");
                    }
                    Resumed::Nowhere => {
                        assert_eq!(c["resumed_at"], Value::Null, "{name}: {v:#}");
                        let listed = v["problems"]["listed"][0].as_str().unwrap();
                        assert!(
                            listed.contains("below the checkpoint's durable offset"),
                            "{name}: {listed}"
                        );
                    }
                }
                assert_eq!(
                    open_verdict(dir.path()),
                    Opened::Corrupt,
                    "{name}: verify says corruption, so must Store::open"
                );
            }
            Expect::TornLast => {
                assert_eq!(code, Some(0), "{name}: {v:#}");
                assert_eq!(v["verdict"], "ok", "{name}: {v:#}");
                assert!(corruption.is_empty(), "{name}: {v:#}");
                assert_eq!(
                    v["torn_tail"]["offset"], last.commitlog_offset,
                    "{name}: {v:#}"
                );
                let bytes = v["torn_tail"]["bytes"].as_u64().unwrap();
                assert!(
                    bytes > 0 && bytes <= last.wrote_bytes as u64 / 2 + 1,
                    "{name}: {v:#}"
                );
                assert_eq!(v["records"], puts.len() - 1, "{name}: {v:#}");
                assert_eq!(v["end_offset"], last.commitlog_offset, "{name}: {v:#}");
                assert_eq!(
                    open_verdict(dir.path()),
                    Opened::Cut(Some(last.commitlog_offset)),
                    "{name}: verify says torn tail, so Store::open cuts there"
                );
                // After recovery cut it, the root is clean.
                let (code, v) = verify_json(dir.path());
                assert_eq!(code, Some(0), "{name}, recovered: {v:#}");
                assert_eq!(v["torn_tail"], Value::Null, "{name}, recovered: {v:#}");
            }
        }
    }
}

/// A root a store holds open: verify says it is in use, checks the CommitLog up to the
/// checkpoint's durable offset and reports no problem for the in-flight tail or the derived
/// data behind it; after close the root is clean with every record.
#[test]
fn verify_on_a_root_in_use_checks_up_to_the_durable_offset_and_finds_no_problem() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(
        dir.path(),
        StoreConfig {
            flush_mode: rocketstore::FlushMode::Async,
            ..config(true)
        },
    )
    .unwrap();
    put_orders(&store, 0, 1000);
    store.flush().unwrap();
    let durable = store.durable_offset();
    // In flight: not flushed, not in the checkpoint.
    let puts = put_orders(&store, 1000, 700);
    let end = puts.last().unwrap().commitlog_offset + puts.last().unwrap().wrote_bytes as u64;

    let out = rocketstore(&["verify", p(dir.path())]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(text.contains("in use by another process"), "{text}");
    assert!(text.contains("OK: no problems found"), "{text}");

    let (code, v) = verify_json(dir.path());
    assert_eq!(code, Some(0), "{v:#}");
    assert_eq!(v["in_use"], true, "{v:#}");
    assert_eq!(v["verdict"], "ok", "{v:#}");
    assert_eq!(v["problems"]["count"], 0, "{v:#}");
    // The background flusher may have written a newer checkpoint meanwhile.
    let checked_to = v["checked_to"].as_u64().unwrap();
    assert!(
        (durable..=end).contains(&checked_to),
        "{durable}..={end}: {v:#}"
    );
    let records = v["records"].as_u64().unwrap();
    assert!((1000..=1700).contains(&records), "{v:#}");
    assert!(v["end_offset"].as_u64().unwrap() <= checked_to, "{v:#}");

    // With a writer putting all the while, the tail verify sees is in flight: records being
    // copied in, units and index entries for records past what verify read.
    let stop = std::sync::atomic::AtomicBool::new(false);
    let written = std::thread::scope(|s| {
        let writer = s.spawn(|| {
            let mut n = 1700;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                put_orders(&store, n, 20);
                n += 20;
            }
            n
        });
        // Stops the writer also when an assertion below fails.
        struct StopOnDrop<'a>(&'a std::sync::atomic::AtomicBool);
        impl Drop for StopOnDrop<'_> {
            fn drop(&mut self) {
                self.0.store(true, std::sync::atomic::Ordering::Relaxed);
            }
        }
        let _stop = StopOnDrop(&stop);
        for _ in 0..4 {
            let (code, v) = verify_json(dir.path());
            assert_eq!(code, Some(0), "{v:#}");
            assert_eq!(v["in_use"], true, "{v:#}");
            assert_eq!(v["problems"]["count"], 0, "{v:#}");
        }
        drop(_stop);
        writer.join().unwrap()
    });
    store.close().unwrap();
    let (code, v) = verify_json(dir.path());
    assert_eq!(code, Some(0), "{v:#}");
    assert_eq!(v["in_use"], false, "{v:#}");
    assert_eq!(v["records"], written, "{v:#}");
    assert_eq!(v["notes"].as_array().unwrap().len(), 0, "{v:#}");
}

/// verify's lock is shared: a shared holder (another verify) is not "in use", and while one is
/// held the store's exclusive lock is refused (so a store cannot open a root verify is reading).
#[test]
fn verify_takes_a_shared_lock_that_keeps_a_store_out() {
    let (dir, _) = own_root(10);
    let lock = fs::File::open(dir.path().join("lock")).unwrap();
    lock.try_lock_shared().unwrap();
    let (code, v) = verify_json(dir.path());
    assert_eq!(code, Some(0), "{v:#}");
    assert_eq!(
        v["in_use"], false,
        "a shared holder is another verify: {v:#}"
    );
    assert!(
        Store::open(dir.path(), config(true)).is_err(),
        "the store's exclusive lock is refused while a verify holds the shared one"
    );
    drop(lock);
    Store::open(dir.path(), config(true))
        .unwrap()
        .close()
        .unwrap();
}

/// `verify --json` prints one object with every field the issue names.
#[test]
fn verify_json_has_every_field() {
    let (dir, puts) = rocketmq_root(200);
    let (code, v) = verify_json(dir.path());
    assert_eq!(code, Some(0), "{v:#}");
    let last = puts.last().unwrap();
    assert!(v["root"]
        .as_str()
        .unwrap()
        .ends_with(dir.path().file_name().unwrap().to_str().unwrap()));
    assert_eq!(v["in_use"], false);
    assert_eq!(v["verdict"], "ok");
    assert_eq!(v["records"], 200);
    assert_eq!(v["bytes"], last.commitlog_offset + last.wrote_bytes as u64);
    assert_eq!(
        v["end_offset"],
        last.commitlog_offset + last.wrote_bytes as u64
    );
    assert_eq!(v["records_without_crc"], 200);
    assert_eq!(v["torn_tail"], Value::Null);
    assert_eq!(v["corruption"], serde_json::json!([]));
    assert_eq!(v["problems"]["count"], 0);
    assert_eq!(v["problems"]["listed"], serde_json::json!([]));
    let notes = v["notes"].as_array().unwrap();
    assert!(
        notes
            .iter()
            .any(|n| n.as_str().unwrap().contains("abort marker")),
        "{v:#}"
    );

    // A damaged one: the problem is listed and counted.
    let (seg, pos) = segment_path(dir.path(), puts[20].commitlog_offset);
    flip_byte(&seg, pos + BODY_POS);
    let out = rocketstore(&["verify", p(dir.path()), "--json"]);
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8(out.stdout).unwrap();
    assert_eq!(text.lines().count(), 1, "one object: {text}");
    let v: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["verdict"], "problems");
    assert_eq!(v["problems"]["count"], 1, "{v:#}");
    let listed = v["problems"]["listed"][0].as_str().unwrap();
    assert!(
        listed.contains(&format!("invalid record at {}", puts[20].commitlog_offset)),
        "{listed}"
    );
    assert_eq!(v["corruption"][0]["valid_records_after"], 179, "{v:#}");
}

/// The fuzzer's blind spot, as a user would hit it: the end of the last-but-one segment is
/// garbage (its last record and the closing BLANK, so nothing valid follows in that segment)
/// and the last segment's first record is damaged, but the records after it are intact. Verify and
/// `Store::open` both see those records as valid data after the damage: corruption, not a
/// torn tail, and a salvaging open keeps every one of them readable at its offset.
#[test]
fn valid_records_past_a_damaged_segment_start_are_evidence_for_verify_and_open() {
    let (dir, puts) = unvouched_root(3000);
    // The damaged start is the last segment's: no later segment starts valid.
    let last_seg = puts.last().unwrap().commitlog_offset / SEGMENT;
    assert!(last_seg >= 2);
    let a = puts
        .iter()
        .rposition(|r| r.commitlog_offset / SEGMENT == last_seg - 1)
        .unwrap();
    let b = a + 1;
    assert_eq!(
        puts[b].commitlog_offset,
        last_seg * SEGMENT,
        "{b} starts the last segment"
    );
    assert!(puts.len() > b + 10, "segment 2 holds more records");
    let (seg1, pos) = segment_path(dir.path(), puts[a].commitlog_offset);
    overwrite(&seg1, pos, &vec![0xFF; (SEGMENT - pos) as usize]);
    let (seg2, pos2) = segment_path(dir.path(), puts[b].commitlog_offset);
    flip_byte(&seg2, pos2 + BODY_POS + 2);

    let (code, v) = verify_json(dir.path());
    assert_eq!(code, Some(1), "{v:#}");
    assert_eq!(v["torn_tail"], Value::Null, "{v:#}");
    let first = &v["corruption"].as_array().unwrap()[0];
    assert_eq!(first["offset"], puts[a].commitlog_offset, "{v:#}");
    assert_eq!(first["file"], p(&seg1), "{v:#}");
    assert!(first["later_segments"].as_u64().unwrap() >= 1, "{v:#}");
    let before = fs::read(&seg2).unwrap();
    assert_eq!(open_verdict(dir.path()), Opened::Corrupt);
    assert_eq!(
        fs::read(&seg2).unwrap(),
        before,
        "a refused open changes nothing"
    );

    let salvaging = StoreConfig {
        salvage_corrupt_log: true,
        ..config(true)
    };
    let store = Store::open(dir.path(), salvaging).unwrap();
    let report = store.recovery_report().clone();
    assert!(!report.salvaged.is_empty(), "{report:?}");
    assert_eq!(report.end_offset, {
        let l = puts.last().unwrap();
        l.commitlog_offset + l.wrote_bytes as u64
    });
    for (i, r) in puts.iter().enumerate().skip(b + 1) {
        let m = store.read_at(r.commitlog_offset).unwrap();
        assert_eq!(m.view().commitlog_offset(), r.commitlog_offset);
        assert_eq!(m.view().body(), body(i).as_bytes());
    }
    store.close().unwrap();
}

/// `groups --json` of a root.
fn groups_json(root: &Path) -> Value {
    serde_json::from_str(&run_ok(&["groups", p(root), "--json"])).unwrap()
}

type GroupRows = BTreeMap<(String, String, i32), (i64, Option<u64>, Option<u64>)>;

/// `(group, topic, queue) -> (committed, max_offset, lag)` of `groups --json`, in its order.
fn group_rows(v: &Value) -> GroupRows {
    let mut out = BTreeMap::new();
    let mut keys = Vec::new();
    for g in v["groups"].as_array().unwrap() {
        let key = (
            g["group"].as_str().unwrap().to_string(),
            g["topic"].as_str().unwrap().to_string(),
            g["queue"].as_i64().unwrap() as i32,
        );
        keys.push(key.clone());
        let row = (
            g["committed"].as_i64().unwrap(),
            g["max_offset"].as_u64(),
            g["lag"].as_u64(),
        );
        assert!(out.insert(key, row).is_none(), "a row twice: {g}");
    }
    let mut sorted = keys.clone();
    sorted.sort();
    assert_eq!(keys, sorted, "rows sorted by group, topic, queue");
    out
}

/// Opens (recovers) `root` and checks that `rows` are exactly the store's committed offsets and
/// max offsets, system topic left out.
fn assert_groups_match_store(root: &Path, rows: &GroupRows) {
    let store = Store::open(root, config(true)).unwrap();
    let mut expected = GroupRows::new();
    for ((topic, group), queues) in store.committed_offsets().unwrap() {
        if topic == rocketstore::format::offset_commit::TOPIC {
            continue;
        }
        for (queue, committed) in queues {
            let max = store.max_offset(&topic, queue).unwrap();
            let lag = u64::try_from(committed).ok().map(|c| max.saturating_sub(c));
            assert_eq!(
                store.committed_offset(&group, &topic, queue).unwrap(),
                u64::try_from(committed).ok()
            );
            expected.insert(
                (group.clone(), topic.clone(), queue),
                (committed, Some(max), lag),
            );
        }
    }
    store.close().unwrap();
    assert!(!expected.is_empty());
    assert_eq!(rows, &expected);
}

fn copy_dir(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for e in fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let dest = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &dest);
        } else {
            fs::copy(e.path(), dest).unwrap();
        }
    }
}

fn row(group: &str, queue: i32, committed: i64, max: u64, lag: u64) -> GroupRows {
    BTreeMap::from([(
        (group.to_string(), TOPIC.to_string(), queue),
        (committed, Some(max), Some(lag)),
    )])
}

#[test]
fn groups_after_a_clean_close_come_from_the_snapshot() {
    use rocketstore::consumer::{ConsumerConfig, MessageModel, StartFrom};
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), config(true)).unwrap();
    put_orders(&store, 0, 400);
    store
        .commit_offsets("billing", TOPIC, &[(0, 40), (1, 100)])
        .unwrap();
    store.commit_offsets("billing", TOPIC, &[(0, 60)]).unwrap();
    store
        .commit_offsets_durable("audit", TOPIC, &[(2, 7)])
        .unwrap();
    {
        let mut c = store
            .consumer(
                "bc",
                TOPIC,
                ConsumerConfig {
                    model: MessageModel::Broadcasting,
                    consumer_id: Some("c1".into()),
                    start_from: StartFrom::First,
                    ..ConsumerConfig::default()
                },
            )
            .unwrap();
        for _ in 0..3 {
            c.poll(10, std::time::Duration::from_secs(1)).unwrap();
        }
    } // dropped: commits what it consumed
    store.close().unwrap();

    let text = run_ok(&["groups", p(dir.path())]);
    let snapshot_file = dir.path().join("config/consumerOffset.json");
    assert!(
        text.contains(&format!("snapshot: {}", snapshot_file.display())),
        "{text}"
    );
    assert!(text.contains("replayed commit records: 0\n"), "{text}");
    assert!(
        !text.contains("note:") && !text.contains("rmq_sys"),
        "{text}"
    );
    let lines: Vec<Vec<&str>> = text
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    let header = lines.iter().position(|l| l[0] == "GROUP").expect("header");
    assert_eq!(
        lines[header],
        ["GROUP", "TOPIC", "QUEUE", "COMMITTED", "MAX", "LAG"]
    );
    assert_eq!(lines[header + 1], ["audit", TOPIC, "2", "7", "100", "93"]);
    assert!(lines[header + 2][0] == "bc%BROADCAST%c1", "{text}");
    let billing: Vec<&Vec<&str>> = lines.iter().filter(|l| l[0] == "billing").collect();
    assert_eq!(
        billing,
        [
            &vec!["billing", TOPIC, "0", "60", "100", "40"],
            &vec!["billing", TOPIC, "1", "100", "100", "0"]
        ]
    );

    let v = groups_json(dir.path());
    assert_eq!(v["snapshot"]["file"], p(&snapshot_file));
    assert!(
        v["snapshot"]["commitlog_offset"].as_u64().unwrap() > 0,
        "{v}"
    );
    assert_eq!(v["replayed_commits"], 0);
    let rows = group_rows(&v);
    for (group, queue, committed, lag) in [("billing", 0, 60, 40), ("audit", 2, 7, 93)] {
        assert_eq!(
            rows[&(group.to_string(), TOPIC.to_string(), queue)],
            (committed, Some(100), Some(lag))
        );
    }
    // The broadcasting consumer read the first 30 messages it was given, over its 4 queues.
    let bc: i64 = rows
        .iter()
        .filter(|((g, _, _), _)| g == "bc%BROADCAST%c1")
        .map(|(_, (c, _, _))| c)
        .sum();
    assert_eq!(bc, 30, "{v}");
    assert_groups_match_store(dir.path(), &rows);
}

#[test]
fn groups_after_a_crash_replay_the_commits_newer_than_the_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("s");
    // No periodic checkpoint while the test runs: the crashed copy's derived data is vouched
    // for only up to the open, so the new commits are found in the CommitLog's tail.
    let cfg = StoreConfig {
        consume_queue_flush_interval: std::time::Duration::from_secs(3600),
        ..config(true)
    };
    let store = Store::open(&root, cfg.clone()).unwrap();
    put_orders(&store, 0, 400);
    store
        .commit_offsets("billing", TOPIC, &[(0, 40), (1, 100)])
        .unwrap();
    store.close().unwrap();
    let old_snapshot = fs::read_to_string(root.join("config/consumerOffset.json")).unwrap();
    let (_, old_end) = rocketstore::format::offset_table::parse(&old_snapshot).unwrap();

    let store = Store::open(&root, cfg).unwrap();
    put_orders(&store, 400, 40);
    store
        .commit_offsets_durable("billing", TOPIC, &[(0, 105)])
        .unwrap();
    store.commit_offsets("audit", TOPIC, &[(3, 50)]).unwrap();
    put_orders(&store, 440, 8);
    store
        .commit_offsets_durable("audit", TOPIC, &[(2, 1)])
        .unwrap();
    // The files as the running process leaves them, with the snapshot of the first close.
    let crashed = dir.path().join("crashed");
    copy_dir(&root, &crashed);
    store.close().unwrap();
    fs::write(crashed.join("config/consumerOffset.json"), &old_snapshot).unwrap();
    fs::remove_file(crashed.join("lock")).unwrap();
    assert!(crashed.join("abort").exists());

    let v = groups_json(&crashed);
    assert_eq!(v["snapshot"]["commitlog_offset"].as_u64(), old_end, "{v}");
    assert_eq!(v["replayed_commits"], 3, "{v}");
    let rows = group_rows(&v);
    let mut expected = row("billing", 0, 105, 112, 7);
    expected.extend(row("billing", 1, 100, 112, 12));
    expected.extend(row("audit", 3, 50, 112, 62));
    expected.extend(row("audit", 2, 1, 112, 111));
    assert_eq!(rows, expected);
    let text = run_ok(&["groups", p(&crashed)]);
    assert!(text.contains("replayed commit records: 3\n"), "{text}");
    assert_groups_match_store(&crashed, &rows);
}

#[test]
fn groups_json_has_every_field_and_an_empty_root_has_no_groups() {
    let (dir, _) = own_root(20);
    let text = run_ok(&["groups", p(dir.path())]);
    assert!(text.contains("no consumer groups"), "{text}");
    let v = groups_json(dir.path());
    assert_eq!(v["groups"], serde_json::json!([]));

    let store = Store::open(dir.path(), config(true)).unwrap();
    store.commit_offsets("g", TOPIC, &[(1, 4)]).unwrap();
    store.close().unwrap();
    // A file RocketMQ wrote (no rocketstoreCommitLogOffset): taken as it is, the commit record
    // of 4 is not replayed over it.
    let main = dir.path().join("config/consumerOffset.json");
    fs::write(
        &main,
        "{\"offsetTable\":{\"orders@g\":{1:2,3:-1},\"gone@g\":{0:9}}}",
    )
    .unwrap();
    let _ = fs::remove_file(dir.path().join("config/consumerOffset.json.bak"));
    let v = groups_json(dir.path());
    let obj = v.as_object().unwrap();
    let keys: Vec<&str> = obj.keys().map(String::as_str).collect();
    for k in ["snapshot", "replayed_commits", "groups"] {
        assert!(keys.contains(&k), "{k}: {v}");
    }
    assert_eq!(v["snapshot"]["file"], p(&main), "{v}");
    assert!(v["snapshot"]["commitlog_offset"].is_null(), "{v}");
    assert_eq!(v["replayed_commits"], 0, "{v}");
    let groups = v["groups"].as_array().unwrap();
    assert_eq!(groups.len(), 3, "{v}");
    for g in groups {
        for k in ["group", "topic", "queue", "committed", "max_offset", "lag"] {
            assert!(g.get(k).is_some(), "{k}: {g}");
        }
    }
    // Queue 1 of 20 messages over 4 queues: 5; -1 (never) and a topic without queues: no lag.
    assert_eq!(
        group_rows(&v),
        BTreeMap::from([
            (("g".into(), "gone".into(), 0), (9, None, None)),
            (("g".into(), TOPIC.into(), 1), (2, Some(5), Some(3))),
            (("g".into(), TOPIC.into(), 3), (-1, Some(5), None)),
        ])
    );
}

#[test]
fn groups_fall_back_to_the_bak_and_refuse_two_corrupt_files() {
    let (dir, _) = own_root(40);
    for committed in [3, 8] {
        let store = Store::open(dir.path(), config(true)).unwrap();
        store.commit_offsets("g", TOPIC, &[(0, committed)]).unwrap();
        store.close().unwrap();
    }
    let main = dir.path().join("config/consumerOffset.json");
    let bak = dir.path().join("config/consumerOffset.json.bak");
    assert_eq!(group_rows(&groups_json(dir.path())), row("g", 0, 8, 10, 2));
    // The .bak holds the previous snapshot (3); the commit of 8 after it is replayed.
    fs::write(&main, b"{\"offsetTable\":{\"orders@g\":{0:").unwrap();
    let v = groups_json(dir.path());
    assert_eq!(v["snapshot"]["file"], p(&bak), "{v}");
    assert!(
        v["snapshot"]["fallback"]
            .as_str()
            .unwrap()
            .contains(p(&main)),
        "{v}"
    );
    assert_eq!(group_rows(&v), row("g", 0, 8, 10, 2));
    assert_eq!(v["replayed_commits"], 1, "{v}");
    let text = run_ok(&["groups", p(dir.path())]);
    assert!(
        text.contains(&format!("note: {}: not JSON", main.display()))
            && text.contains(&format!("using {}", bak.display()))
            && text.contains(&format!("snapshot: {}", bak.display())),
        "{text}"
    );
    // Other subcommands do not care about the snapshot.
    let stat = run_ok(&["stat", p(dir.path())]);
    assert!(
        stat.contains(&format!("{TOPIC}/0  min 0  max 10")),
        "{stat}"
    );
    let dump = run_ok(&["dump", p(dir.path()), "--count", "2"]);
    assert_eq!(
        dump.lines().filter(|l| l.starts_with('@')).count(),
        2,
        "{dump}"
    );

    fs::write(&bak, b"").unwrap();
    let out = rocketstore(&["groups", p(dir.path())]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(p(&main)) && err.contains("not JSON") && err.contains("empty"),
        "{err}"
    );
    assert!(out.stdout.is_empty());
    run_ok(&["stat", p(dir.path())]);
    run_ok(&["dump", p(dir.path()), "--count", "2", "--json"]);
}

/// A committed offset below the queue's min offset (retention deleted what it pointed at) is
/// shown as `Store::committed_offset` answers it: the min, where a consumer starts.
#[test]
fn groups_correct_an_offset_below_the_queues_min_as_the_store_does() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), config(true)).unwrap();
    let puts = put_orders(&store, 0, 3000);
    store.commit_offsets("old", TOPIC, &[(0, 1)]).unwrap();
    store.delete_before(puts[2000].commitlog_offset).unwrap();
    let expect = store.committed_offset("old", TOPIC, 0).unwrap().unwrap();
    assert!(
        expect > 1,
        "retention moved queue 0's min past the commit: {expect}"
    );
    store.close().unwrap();
    let out = rocketstore(&["groups", p(dir.path()), "--json"]);
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let row = &v["groups"][0];
    assert_eq!(row["group"], "old", "{v:#}");
    assert_eq!(row["committed"], expect, "{v:#}");
    let max = row["max_offset"].as_u64().unwrap();
    assert_eq!(row["lag"], max - expect, "{v:#}");
}

const T0: i64 = 1_700_000_000_000;

/// `config(true)` on a manual clock: nothing is delivered by a thread.
fn manual_config(clock: &rocketstore::clock::ManualClock) -> StoreConfig {
    StoreConfig {
        clock: rocketstore::clock::Clock::manual(clock.clone()),
        ..config(true)
    }
}

fn json_of(args: &[&str]) -> Value {
    serde_json::from_str(&run_ok(args)).unwrap()
}

/// `(level, delay_ms, pending, progress, next_due_ms)` of a `levels` array.
fn level_rows(v: &Value) -> Vec<(i64, i64, u64, u64, Option<i64>)> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|l| {
            (
                l["level"].as_i64().unwrap(),
                l["delay_ms"].as_i64().unwrap(),
                l["pending"].as_u64().unwrap(),
                l["progress"].as_u64().unwrap(),
                l["next_due_ms"].as_i64(),
            )
        })
        .collect()
}

#[test]
fn delays_show_pending_progress_and_next_due_as_the_store_does() {
    use rocketstore::clock::ManualClock;
    use std::time::Duration;
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let store = Store::open(dir.path(), manual_config(&clock)).unwrap();
    put_orders(&store, 0, 10);
    // Level 2 (5 s): stored at +0, +1, +2 s; level 3 (10 s): at +3, +4 s.
    for (i, level) in [2, 2, 2, 3, 3].into_iter().enumerate() {
        store
            .put(&Message::new(TOPIC, 1, format!("later {i}").as_bytes()).with_delay_level(level))
            .unwrap();
        clock.advance(Duration::from_secs(1));
    }
    clock.set(T0 + 6_000);
    assert_eq!(
        store.deliver_due().unwrap().delivered,
        2,
        "the first two of level 2"
    );
    store.close().unwrap();

    let v = json_of(&["delays", p(dir.path()), "--json"]);
    let rows = level_rows(&v["levels"]);
    assert_eq!(
        rows,
        [
            (2, 5_000, 1, 2, Some(T0 + 7_000)),
            (3, 10_000, 2, 0, Some(T0 + 13_000)),
        ],
        "{v:#}"
    );
    let levels = v["levels"].as_array().unwrap();
    assert_eq!(levels[0]["delay"], "5s");
    assert_eq!(levels[1]["delay"], "10s");
    assert_eq!(levels[0]["max_offset"], 3);
    assert_eq!(levels[0]["progress_from"], "log", "{v:#}");
    assert_eq!(levels[1]["progress_from"], "none", "{v:#}");
    assert_eq!(levels[0]["next_due"], "2023-11-14T22:13:27.000Z");
    assert_eq!(v["retry"], serde_json::json!([]));
    assert_eq!(v["dlq"], serde_json::json!([]));

    // The reopened store (same clock reading: nothing more is due) agrees.
    let store = Store::open(dir.path(), manual_config(&clock)).unwrap();
    let stats: Vec<_> = store
        .schedule_stats()
        .into_iter()
        .map(|s| {
            (
                s.level as i64,
                s.delay_ms,
                s.pending,
                s.progress,
                s.next_due_ms,
            )
        })
        .collect();
    store.close().unwrap();
    assert_eq!(rows, stats);

    let text = run_ok(&["delays", p(dir.path())]);
    let lines: Vec<Vec<&str>> = text
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    let header = lines.iter().position(|l| l[0] == "LEVEL").expect("header");
    let t7 = (T0 + 7_000).to_string();
    assert_eq!(
        lines[header + 1],
        [
            "2",
            "5s",
            "5000",
            "1",
            "2",
            "3",
            "2023-11-14T22:13:27.000Z",
            t7.as_str(),
            "log/snapshot"
        ],
        "{text}"
    );
    assert_eq!(
        lines[header + 2][..6],
        ["3", "10s", "10000", "2", "0", "2"],
        "{text}"
    );

    // Another table: the delays shown follow it.
    let v = json_of(&[
        "delays",
        p(dir.path()),
        "--json",
        "--delay-levels",
        "1s 2s 3s",
    ]);
    assert_eq!(v["levels"][0]["delay_ms"], 2_000);
    assert_eq!(v["levels"][1]["delay"], "3s");
    let bad = rocketstore(&["delays", p(dir.path()), "--delay-levels", "5s 1s"]);
    assert_eq!(bad.status.code(), Some(2));
}

#[test]
fn delays_fall_back_to_rocketmqs_delay_offset_json() {
    use rocketstore::clock::ManualClock;
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let store = Store::open(dir.path(), manual_config(&clock)).unwrap();
    for i in 0..3 {
        store
            .put(&Message::new(TOPIC, 0, format!("m{i}").as_bytes()).with_delay_level(1))
            .unwrap();
    }
    store.close().unwrap();
    let config_dir = dir.path().join("config");
    fs::create_dir_all(&config_dir).unwrap();
    for e in fs::read_dir(&config_dir).unwrap() {
        let e = e.unwrap();
        if e.file_name()
            .to_string_lossy()
            .starts_with("consumerOffset.json")
        {
            fs::remove_file(e.path()).unwrap();
        }
    }
    let v = json_of(&["delays", p(dir.path()), "--json"]);
    assert_eq!(v["levels"][0]["progress"], 0, "{v:#}");
    assert_eq!(v["levels"][0]["progress_from"], "none", "{v:#}");
    fs::write(
        config_dir.join("delayOffset.json"),
        "{\"offsetTable\":{1:1}}",
    )
    .unwrap();
    let v = json_of(&["delays", p(dir.path()), "--json"]);
    let l = &v["levels"][0];
    assert_eq!(
        (l["level"].as_i64(), l["progress"].as_u64()),
        (Some(1), Some(1)),
        "{v:#}"
    );
    assert_eq!(l["pending"], 2, "{v:#}");
    assert_eq!(l["progress_from"], "delayOffset.json", "{v:#}");
    assert_eq!(l["next_due_ms"], T0 + 1_000, "{v:#}");
    let text = run_ok(&["delays", p(dir.path())]);
    assert!(text.contains("delayOffset.json"), "{text}");
    // The store resumes from the same point.
    let store = Store::open(dir.path(), manual_config(&clock)).unwrap();
    let s = &store.schedule_stats()[0];
    assert_eq!((s.progress, s.pending), (1, 2));
    store.close().unwrap();
}

/// A closed root where group `g` dead-lettered 3 messages, `h` 2, and `r` has one retry
/// delivered into `%RETRY%r` that it did not consume.
fn dead_letter_root() -> tempfile::TempDir {
    use rocketstore::clock::ManualClock;
    use rocketstore::consumer::{ConsumerConfig, StartFrom};
    use std::time::Duration;
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let store = Store::open(dir.path(), manual_config(&clock)).unwrap();
    for i in 0..3 {
        store
            .put(
                &Message::new(TOPIC, 0, format!("dead {i}").as_bytes())
                    .with_property("UNIQ_KEY", format!("ID-{i}")),
            )
            .unwrap();
    }
    for (group, n) in [("g", 3), ("h", 2), ("r", 1)] {
        let mut c = store
            .consumer(
                group,
                TOPIC,
                ConsumerConfig {
                    start_from: StartFrom::First,
                    consumer_id: Some("c1".into()),
                    ..ConsumerConfig::default()
                },
            )
            .unwrap();
        let batch = c.poll(10, Duration::ZERO).unwrap();
        let msgs: Vec<_> = batch.messages().collect();
        assert_eq!(msgs.len(), 3);
        for m in &msgs[..n] {
            if group == "r" {
                c.fail(m).unwrap();
            } else {
                c.send_back(m, -1).unwrap();
            }
        }
        drop(msgs);
        drop(batch);
        c.commit().unwrap();
    }
    // The retry of `r` (level 3, 10 s) is delivered into %RETRY%r.
    clock.advance(Duration::from_secs(10));
    assert_eq!(store.deliver_due().unwrap().delivered, 1);
    store.close().unwrap();
    dir
}

#[test]
fn dlq_lists_then_redrives_and_purges_dead_letters() {
    let dir = dead_letter_root();
    let root = p(dir.path());
    let before = snapshot(dir.path());
    let v = json_of(&["dlq", root, "--group", "g", "--json"]);
    assert_eq!(v["topic"], "%DLQ%g");
    assert_eq!(
        (v["size"].as_u64(), v["purged_to"].as_u64()),
        (Some(3), Some(0)),
        "{v:#}"
    );
    let msgs = v["messages"].as_array().unwrap();
    assert_eq!(msgs.len(), 3, "{v:#}");
    for (i, m) in msgs.iter().enumerate() {
        assert_eq!(m["queue_offset"], i as u64);
        assert_eq!(m["uniq_key"], format!("ID-{i}"), "{m}");
        assert_eq!(m["retry_topic"], TOPIC, "{m}");
        assert_eq!(m["reconsume_times"], 1, "{m}");
        assert_eq!(m["store_timestamp"], T0, "{m}");
        assert_eq!(m["body_size"], 6, "{m}");
        assert!(m["origin_message_id"].as_str().is_some(), "{m}");
    }
    let text = run_ok(&["dlq", root, "--group", "g"]);
    assert!(text.contains("%DLQ%g: 3 dead letters"), "{text}");
    assert!(
        text.contains("uniqKey ID-2  retryTopic orders  reconsumeTimes 1"),
        "{text}"
    );
    let d = json_of(&["delays", root, "--json"]);
    let dlq: Vec<(String, u64, u64, u64)> = d["dlq"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| {
            (
                x["group"].as_str().unwrap().to_string(),
                x["size"].as_u64().unwrap(),
                x["purged_to"].as_u64().unwrap(),
                x["max_offset"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(dlq, [("g".into(), 3, 0, 3), ("h".into(), 2, 0, 2)], "{d:#}");
    assert_eq!(d["dlq"][0]["topic"], "%DLQ%g");
    assert_eq!(
        d["retry"],
        serde_json::json!([{"group": "r", "topic": "%RETRY%r", "size": 1}]),
        "{d:#}"
    );
    assert_eq!(before, snapshot(dir.path()), "listing wrote");

    let both = rocketstore(&["dlq", root, "--group", "g", "--redrive", "--purge"]);
    assert_eq!(both.status.code(), Some(2), "mutually exclusive");
    let max_alone = rocketstore(&["dlq", root, "--group", "g", "--max", "1"]);
    assert_eq!(max_alone.status.code(), Some(2), "--max needs --redrive");

    let out = run_ok(&["dlq", root, "--group", "g", "--redrive", "--max", "2"]);
    assert!(
        out.contains("redriven 2 dead letters of %DLQ%g; 1 left"),
        "{out}"
    );
    let v = json_of(&["dlq", root, "--group", "g", "--json"]);
    assert_eq!(
        (v["size"].as_u64(), v["purged_to"].as_u64()),
        (Some(1), Some(2)),
        "{v:#}"
    );
    assert_eq!(v["messages"][0]["uniq_key"], "ID-2", "{v:#}");
    let v = json_of(&["dlq", root, "--group", "g", "--redrive", "--json"]);
    assert_eq!(
        (v["redriven"].as_u64(), v["size"].as_u64()),
        (Some(1), Some(0)),
        "{v:#}"
    );

    let v = json_of(&["dlq", root, "--group", "h", "--purge", "--json"]);
    assert_eq!(
        (v["purged"].as_u64(), v["size"].as_u64()),
        (Some(2), Some(0)),
        "{v:#}"
    );
    let v = json_of(&["dlq", root, "--group", "h", "--json"]);
    assert_eq!(
        (v["size"].as_u64(), v["purged_to"].as_u64()),
        (Some(0), Some(2)),
        "{v:#}"
    );
    assert_eq!(v["messages"], serde_json::json!([]));

    // The library agrees, and the original topic has the re-driven messages.
    let store = Store::open(dir.path(), config(true)).unwrap();
    let g = store.dlq("g").unwrap();
    assert_eq!((g.size, g.purged_to, g.max_offset), (0, 3, 3));
    let h = store.dlq("h").unwrap();
    assert_eq!((h.size, h.purged_to), (0, 2));
    // Each message twice in its topic: as first put, and re-driven.
    let mut ids = Vec::new();
    for q in store.queue_ids(TOPIC) {
        let got = store.get(TOPIC, q, 0, 100).unwrap();
        ids.extend(
            got.messages()
                .map(|m| m.property("UNIQ_KEY").unwrap().to_string()),
        );
    }
    store.close().unwrap();
    ids.sort();
    assert_eq!(ids, ["ID-0", "ID-0", "ID-1", "ID-1", "ID-2", "ID-2"]);
}

#[test]
fn stat_json_has_schedule_retry_and_dlq() {
    let dir = dead_letter_root();
    let root = p(dir.path());
    let v = json_of(&["stat", root, "--json"]);
    let d = json_of(&["delays", root, "--json"]);
    assert_eq!(v["schedule"], d["levels"], "{v:#}");
    assert_eq!(v["retry"], d["retry"], "{v:#}");
    assert_eq!(v["dlq"], d["dlq"], "{v:#}");
    assert_eq!(
        level_rows(&v["schedule"]),
        [(3, 10_000, 0, 1, None)],
        "the retry went through level 3"
    );
    assert_eq!(v["dlq"].as_array().unwrap().len(), 2);
    assert_eq!(v["retry"][0]["size"], 1);
    // Existing fields stay.
    assert!(v["queues"].as_array().unwrap().len() >= 4, "{v:#}");
    let text = run_ok(&["stat", root]);
    assert!(
        text.contains("schedule: 1 levels, 0 pending, next due -"),
        "{text}"
    );
    assert!(
        text.contains("retry: 1 topics, 1 messages not consumed"),
        "{text}"
    );
    assert!(text.contains("dlq: 2 topics, 5 dead letters"), "{text}");

    let (plain, _) = own_root(20);
    let v = json_of(&["stat", p(plain.path()), "--json"]);
    for k in ["schedule", "retry", "dlq"] {
        assert_eq!(v[k], serde_json::json!([]), "{k}: {v:#}");
    }
    let text = run_ok(&["stat", p(plain.path())]);
    assert!(
        !text.contains("schedule:") && !text.contains("dlq:"),
        "{text}"
    );
}
