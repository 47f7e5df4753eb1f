//! Unit tests of the real file system.

use std::os::unix::fs::MetadataExt;
use std::time::SystemTime;

use super::time::{format_fields, now_ms_std, utc_time_fields};
use super::*;

fn temp_dir() -> tempfile::TempDir {
    tempfile::tempdir().expect("tempdir")
}

fn blocks_bytes(path: &Path) -> u64 {
    std::fs::metadata(path).unwrap().blocks() * 512
}

#[test]
fn allocate_makes_a_non_sparse_file_of_the_requested_length() {
    let dir = temp_dir();
    let path = dir.path().join("seg");
    let file = OsVfs.open_file(&path, OpenMode::CreateNew).unwrap();
    let len = 3 * 1024 * 1024 + 4096;
    file.allocate(len).unwrap();
    assert_eq!(file.len().unwrap(), len);
    assert!(blocks_bytes(&path) >= len, "blocks {}", blocks_bytes(&path));
}

#[test]
fn allocate_by_writing_zeros_fills_holes_and_keeps_data() {
    let dir = temp_dir();
    let path = dir.path().join("sparse");
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(&path)
        .unwrap();
    let len: u64 = 4 * 1024 * 1024;
    // A sparse file with data in the middle of it.
    file.set_len(len / 2).unwrap();
    file.write_all_at(b"data", 1024 * 1024 + 10).unwrap();
    assert!(blocks_bytes(&path) < len / 2, "file should start sparse");

    allocate_by_writing_zeros(&file, len).unwrap();

    assert_eq!(file.metadata().unwrap().len(), len);
    assert!(blocks_bytes(&path) >= len, "blocks {}", blocks_bytes(&path));
    let mut all = vec![0u8; len as usize];
    file.read_exact_at(&mut all, 0).unwrap();
    assert_eq!(&all[1024 * 1024 + 10..1024 * 1024 + 14], b"data");
    let nonzero = all.iter().filter(|&&byte| byte != 0).count();
    assert_eq!(nonzero, 4);
}

#[test]
fn zero_range_zeroes_exactly_the_range_and_keeps_length() {
    let dir = temp_dir();
    let path = dir.path().join("z");
    let file = OsVfs.open_file(&path, OpenMode::CreateNew).unwrap();
    let len = 2 * 1024 * 1024 + 100;
    file.write_all_at(&vec![0xAB; len], 0).unwrap();
    file.zero_range(1000, 1024 * 1024 + 5).unwrap();
    assert_eq!(file.len().unwrap(), len as u64);
    let mut back = vec![0u8; len];
    file.read_exact_at(&mut back, 0).unwrap();
    assert!(back[..1000].iter().all(|&b| b == 0xAB));
    assert!(back[1000..1000 + 1024 * 1024 + 5].iter().all(|&b| b == 0));
    assert!(back[1000 + 1024 * 1024 + 5..].iter().all(|&b| b == 0xAB));
    let past_end = file.zero_range(len as u64 - 10, 11).unwrap_err();
    assert_eq!(past_end.kind(), io::ErrorKind::InvalidInput);
}

#[test]
fn zero_range_fallback_zeroes_and_skips_chunks_already_zero() {
    let dir = temp_dir();
    let path = dir.path().join("z");
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(&path)
        .unwrap();
    let len = 3 * ZERO_CHUNK_BYTES + 17;
    file.write_all_at(&vec![0x5A; len], 0).unwrap();
    let (offset, zeroed) = (123usize, 2 * ZERO_CHUNK_BYTES + 7);

    zero_range_by_writing(&file, offset as u64, zeroed as u64).unwrap();

    let mut back = vec![0u8; len];
    file.read_exact_at(&mut back, 0).unwrap();
    assert!(back[..offset].iter().all(|&b| b == 0x5A));
    assert!(back[offset..offset + zeroed].iter().all(|&b| b == 0));
    assert!(back[offset + zeroed..].iter().all(|&b| b == 0x5A));

    // A second call finds every chunk zero and writes nothing: the modification time of a
    // file set far in the past stays where it was.
    let old = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_000_000);
    file.set_modified(old).unwrap();
    zero_range_by_writing(&file, offset as u64, zeroed as u64).unwrap();
    assert_eq!(file.metadata().unwrap().modified().unwrap(), old);
    // ...whereas a chunk with a stray byte does get written.
    file.write_all_at(&[1], (offset + 5) as u64).unwrap();
    file.set_modified(old).unwrap();
    zero_range_by_writing(&file, offset as u64, zeroed as u64).unwrap();
    assert_ne!(file.metadata().unwrap().modified().unwrap(), old);
    let mut byte = [9u8];
    file.read_exact_at(&mut byte, (offset + 5) as u64).unwrap();
    assert_eq!(byte, [0]);
}

#[test]
fn allocate_and_zero_range_work_on_tmpfs() {
    // tmpfs lacks FALLOC_FL_ZERO_RANGE (and, on old kernels, fallocate), so this runs the
    // EOPNOTSUPP fallbacks through `OsFile`. Skipped where /dev/shm does not exist.
    let Ok(dir) = tempfile::tempdir_in("/dev/shm") else {
        return;
    };
    let path = dir.path().join("t");
    let file = OsVfs.open_file(&path, OpenMode::CreateNew).unwrap();
    let len = 2 * ZERO_CHUNK_BYTES + 4096;
    file.allocate(len as u64).unwrap();
    assert_eq!(file.len().unwrap(), len as u64);
    assert!(blocks_bytes(&path) >= len as u64);
    file.write_all_at(&vec![0xCD; len], 0).unwrap();
    file.zero_range(10, (len - 20) as u64).unwrap();
    let mut back = vec![0u8; len];
    file.read_exact_at(&mut back, 0).unwrap();
    assert!(back[..10].iter().all(|&b| b == 0xCD));
    assert!(back[10..len - 10].iter().all(|&b| b == 0));
    assert!(back[len - 10..].iter().all(|&b| b == 0xCD));
}

#[test]
fn map_longer_than_the_file_or_empty_is_refused() {
    let dir = temp_dir();
    let path = dir.path().join("m");
    let file = OsVfs.open_file(&path, OpenMode::CreateNew).unwrap();
    file.allocate(8192).unwrap();
    let err = file.map(8193, true).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
    let err = file.map(0, false).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
    let region = file.map(8192, true).unwrap();
    assert_eq!(region.len(), 8192);
    assert_eq!(region.as_ptr() as usize % 4096, 0);
}

#[test]
fn read_only_mapping_has_no_mut_ptr_and_ignores_prefault() {
    let dir = temp_dir();
    let path = dir.path().join("ro");
    OsVfs
        .open_file(&path, OpenMode::CreateNew)
        .unwrap()
        .allocate(4096)
        .unwrap();
    let file = OsVfs.open_file(&path, OpenMode::ReadOnly).unwrap();
    let region = file.map(4096, false).unwrap();
    assert!(region.as_mut_ptr().is_null());
    region.prefault_write().unwrap();
    region.advise_sequential().unwrap();
    region.flush_range(0, 4096).unwrap();
    assert!(
        file.map(4096, true).is_err(),
        "read-only file mapped writable"
    );
}

#[test]
fn mapped_write_is_visible_through_read_exact_at_after_flush() {
    let dir = temp_dir();
    let path = dir.path().join("w");
    let file = OsVfs.open_file(&path, OpenMode::CreateNew).unwrap();
    file.allocate(3 * 4096).unwrap();
    let region = file.map(3 * 4096, true).unwrap();
    region.prefault_write().unwrap();
    let payload = b"through the mapping";
    // SAFETY: the region is a live writable mapping of 3 pages; 5000 + payload.len() is
    // inside it, and nothing else accesses these bytes while we write.
    unsafe {
        std::ptr::copy_nonoverlapping(
            payload.as_ptr(),
            region.as_mut_ptr().add(5000),
            payload.len(),
        );
    }
    region.flush_range(5000, payload.len()).unwrap();
    let mut back = vec![0u8; payload.len()];
    file.read_exact_at(&mut back, 5000).unwrap();
    assert_eq!(&back, payload);
    let err = region.flush_range(3 * 4096 - 1, 2).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
}

#[test]
fn lock_exclusive_refuses_a_second_holder_until_the_first_drops() {
    let dir = temp_dir();
    let path = dir.path().join("lock");
    let first = OsVfs.lock_exclusive(&path).unwrap();
    assert_eq!(std::fs::read(&path).unwrap(), b"lock");
    let err = OsVfs.lock_exclusive(&path).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::WouldBlock);
    drop(first);
    let again = OsVfs.lock_exclusive(&path).unwrap();
    assert_eq!(std::fs::read(&path).unwrap(), b"lock");
    drop(again);
}

#[test]
fn open_modes_create_open_and_refuse_as_documented() {
    let dir = temp_dir();
    let path = dir.path().join("f");
    let err = OsVfs.open_file(&path, OpenMode::Existing).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::NotFound);
    let file = OsVfs.open_file(&path, OpenMode::CreateNew).unwrap();
    file.write_all_at(b"abc", 0).unwrap();
    let err = OsVfs.open_file(&path, OpenMode::CreateNew).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::AlreadyExists);
    let file = OsVfs.open_file(&path, OpenMode::CreateOrOpen).unwrap();
    assert_eq!(file.len().unwrap(), 3, "CreateOrOpen must not truncate");
    let read_only = OsVfs.open_file(&path, OpenMode::ReadOnly).unwrap();
    assert!(read_only.write_all_at(b"x", 0).is_err());
}

#[test]
fn read_dir_is_sorted_and_reports_kinds_without_following_symlinks() {
    let dir = temp_dir();
    let root = dir.path();
    std::fs::write(root.join("b"), b"12345").unwrap();
    std::fs::create_dir(root.join("a")).unwrap();
    std::os::unix::fs::symlink(root.join("a"), root.join("c")).unwrap();
    let entries = OsVfs.read_dir(root).unwrap();
    let summary: Vec<_> = entries.iter().map(|e| (e.name.as_str(), e.kind)).collect();
    assert_eq!(
        summary,
        [
            ("a", FileKind::Dir),
            ("b", FileKind::File),
            ("c", FileKind::Symlink)
        ]
    );
    assert_eq!(entries[1].len, 5);
    let meta = OsVfs.metadata(&root.join("c")).unwrap().unwrap();
    assert_eq!((meta.name.as_str(), meta.kind), ("c", FileKind::Symlink));
    assert_eq!(OsVfs.metadata(&root.join("nope")).unwrap(), None);
}

#[test]
fn rename_remove_and_sync_dir_work() {
    let dir = temp_dir();
    let root = dir.path();
    let sub = root.join("x/y");
    OsVfs.create_dir_all(&sub).unwrap();
    std::fs::write(sub.join("f"), b"1").unwrap();
    OsVfs.rename(&sub.join("f"), &sub.join("g")).unwrap();
    OsVfs.sync_dir(&sub).unwrap();
    assert_eq!(std::fs::read(sub.join("g")).unwrap(), b"1");
    OsVfs.remove_file(&sub.join("g")).unwrap();
    assert_eq!(OsVfs.metadata(&sub.join("g")).unwrap(), None);
    OsVfs.remove_dir_all(&root.join("x")).unwrap();
    assert_eq!(OsVfs.metadata(&root.join("x")).unwrap(), None);
}

#[test]
fn disk_usage_reports_plausible_numbers() {
    let dir = temp_dir();
    let usage = OsVfs.disk_usage(dir.path()).unwrap();
    assert!(usage.total_bytes > 0);
    assert!(usage.available_bytes <= usage.total_bytes);
    assert!(OsVfs.disk_usage(&dir.path().join("missing")).is_err());
}

#[test]
fn utc_fields_match_known_dates() {
    assert_eq!(
        format_fields(utc_time_fields(1_700_000_000), 123),
        "20231114221320123"
    );
    assert_eq!(
        format_fields(utc_time_fields(951_782_400), 999),
        "20000229000000999"
    );
    assert_eq!(format_fields(utc_time_fields(-2), 500), "19691231235958500");
}

#[test]
fn format_local_time_ms_agrees_with_the_local_utc_offset() {
    for ms in [
        0i64,
        1_700_000_000_123,
        951_782_400_999,
        1_719_792_000_001,
        -1_500,
    ] {
        let text = format_local_time_ms(ms);
        assert_eq!(text.len(), 17, "{text}");
        assert!(text.bytes().all(|b| b.is_ascii_digit()), "{text}");
        let secs = ms.div_euclid(1000);
        let time = secs as libc::time_t;
        let mut tm = MaybeUninit::<libc::tm>::uninit();
        // SAFETY: valid pointers to a live time_t and to writable tm-sized memory.
        let result = unsafe { libc::localtime_r(&time, tm.as_mut_ptr()) };
        assert!(!result.is_null());
        // c_long is narrower than i64 on 32-bit targets.
        #[allow(clippy::unnecessary_cast)]
        // SAFETY: localtime_r succeeded, so it initialised the struct.
        let offset = unsafe { tm.assume_init() }.tm_gmtoff as i64;
        let expected = format_fields(utc_time_fields(secs + offset), ms.rem_euclid(1000));
        assert_eq!(text, expected, "ms {ms}");
    }
}

/// Child half of `format_local_time_ms_in_fixed_zones`: does nothing unless the parent set
/// the variables.
#[test]
fn tz_child() {
    let Ok(expected) = std::env::var("ROCKETSTORE_TZ_CHILD_EXPECT") else {
        return;
    };
    let ms: i64 = std::env::var("ROCKETSTORE_TZ_CHILD_MS")
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(format_local_time_ms(ms), expected);
    println!("tz_child checked {expected}");
}

#[test]
fn format_local_time_ms_in_fixed_zones() {
    // Run in a child process so TZ is set before anything reads it, without racing the
    // other tests of this process.
    let exe = std::env::current_exe().unwrap();
    let cases = [
        ("UTC0", 1_700_000_000_123i64, "20231114221320123"),
        // POSIX zone string, needs no tzdata: UTC+8 like Asia/Shanghai.
        ("XST-8", 1_700_000_000_123, "20231115061320123"),
        ("UTC0", -1_500, "19691231235958500"),
    ];
    for (tz, ms, expected) in cases {
        let output = std::process::Command::new(&exe)
            .args(["--exact", "storage::os::tests::tz_child", "--nocapture"])
            .env("TZ", tz)
            .env("ROCKETSTORE_TZ_CHILD_MS", ms.to_string())
            .env("ROCKETSTORE_TZ_CHILD_EXPECT", expected)
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(
            output.status.success(),
            "TZ={tz}: {stdout}{}",
            String::from_utf8_lossy(&output.stderr)
        );
        assert!(
            stdout.contains(&format!("tz_child checked {expected}")),
            "child did not run the check: {stdout}"
        );
    }
}

#[test]
fn now_ms_is_after_2020() {
    assert!(now_ms() > 1_577_836_800_000);
}

#[test]
fn now_ms_agrees_with_system_time() {
    let (before, fast, after) = (now_ms_std(), now_ms(), now_ms_std());
    assert!(
        before <= fast && fast <= after,
        "{before} <= {fast} <= {after}"
    );
}
