//! Unit tests of the simulated disk.

use super::buffer::MAP_ALIGN;
use super::*;
use crate::storage::vfs::{OpenMode, Vfs, VfsFile};

fn p(s: &str) -> PathBuf {
    PathBuf::from(s)
}

/// A disk with `/d` durable and `/d/f` durable, `len` zero bytes long and synced.
fn disk_with_synced_file(len: usize) -> (SimVfs, Box<dyn VfsFile>) {
    let vfs = SimVfs::new(1);
    vfs.create_dir_all(&p("/d")).unwrap();
    vfs.sync_dir(&p("/")).unwrap();
    let f = vfs.open_file(&p("/d/f"), OpenMode::CreateNew).unwrap();
    f.allocate(len as u64).unwrap();
    f.sync_data().unwrap();
    vfs.sync_dir(&p("/d")).unwrap();
    (vfs, f)
}

fn read_all(vfs: &SimVfs, path: &str) -> Option<Vec<u8>> {
    vfs.current_files().remove(&p(path))
}

#[test]
fn kill_keeps_unsynced_writes_and_remembers_they_are_unsynced() {
    let (vfs, f) = disk_with_synced_file(8192);
    f.write_all_at(b"hello", 100).unwrap();
    let killed = vfs.crash(CrashMode::Kill, 7);
    assert_eq!(&read_all(&killed, "/d/f").unwrap()[100..105], b"hello");
    assert!(killed.has_unsynced());
    // A power loss after the kill still loses the unsynced write.
    let dropped = killed.crash(CrashMode::Drop, 8);
    assert_eq!(read_all(&dropped, "/d/f").unwrap(), vec![0u8; 8192]);
}

#[test]
fn drop_keeps_only_synced_bytes() {
    let (vfs, f) = disk_with_synced_file(8192);
    f.write_all_at(b"synced", 0).unwrap();
    f.sync_data().unwrap();
    f.write_all_at(b"lost", 4096).unwrap();
    let d = vfs.crash(CrashMode::Drop, 1);
    let bytes = read_all(&d, "/d/f").unwrap();
    assert_eq!(&bytes[..6], b"synced");
    assert_eq!(&bytes[4096..4100], &[0, 0, 0, 0]);
    assert!(!d.has_unsynced());
}

#[test]
fn flush_range_makes_only_the_covered_pages_durable() {
    let (vfs, f) = disk_with_synced_file(3 * 4096);
    let map = f.map(3 * 4096, true).unwrap();
    // SAFETY: the mapping is writable and 3 pages long; nothing else touches it.
    unsafe {
        map.as_mut_ptr().add(10).write(0xAA);
        map.as_mut_ptr().add(4096 + 10).write(0xBB);
        map.as_mut_ptr().add(2 * 4096 + 10).write(0xCC);
    }
    map.flush_range(4096 + 5, 4096).unwrap(); // pages 1 and 2
    let d = vfs.crash(CrashMode::Drop, 1);
    let bytes = read_all(&d, "/d/f").unwrap();
    assert_eq!(
        (bytes[10], bytes[4096 + 10], bytes[2 * 4096 + 10]),
        (0, 0xBB, 0xCC)
    );
    assert!(map.flush_range(4096, 3 * 4096).is_err());
}

#[test]
fn torn_pages_are_kept_lost_or_torn_at_a_sector_boundary() {
    let mut seen = [false; 3]; // kept, lost, torn
    for seed in 0..64 {
        let (vfs, f) = disk_with_synced_file(4 * 4096);
        f.write_all_at(&vec![0xFF; 4 * 4096], 0).unwrap();
        let t = vfs.crash(CrashMode::Torn, seed);
        let bytes = read_all(&t, "/d/f").unwrap();
        assert_eq!(bytes.len(), 4 * 4096);
        for page in bytes.chunks(4096) {
            let sectors: Vec<bool> = page.chunks(512).map(|s| s[0] == 0xFF).collect();
            for (s, new) in page.chunks(512).zip(&sectors) {
                assert!(s.iter().all(|&b| b == if *new { 0xFF } else { 0 }));
            }
            let flips = sectors.windows(2).filter(|w| w[0] != w[1]).count();
            assert!(flips <= 1, "a page is torn at most once: {sectors:?}");
            if sectors.iter().all(|&s| s) {
                seen[0] = true;
            } else if sectors.iter().all(|&s| !s) {
                seen[1] = true;
            } else {
                seen[2] = true;
            }
        }
    }
    assert_eq!(seen, [true; 3]);
}

#[test]
fn create_without_dir_sync_is_lost_by_drop_and_may_be_undone_by_meta() {
    let vfs = SimVfs::new(1);
    vfs.create_dir_all(&p("/d")).unwrap();
    vfs.sync_dir(&p("/")).unwrap();
    let f = vfs.open_file(&p("/d/f"), OpenMode::CreateNew).unwrap();
    f.write_all_at(b"x", 0).unwrap();
    f.sync_data().unwrap();
    assert!(read_all(&vfs.crash(CrashMode::Drop, 0), "/d/f").is_none());
    assert_eq!(
        read_all(&vfs.crash(CrashMode::Kill, 0), "/d/f").unwrap(),
        b"x"
    );
    assert_eq!(
        read_all(&vfs.crash(CrashMode::Torn, 0), "/d/f").unwrap(),
        b"x"
    );
    let kept: Vec<bool> = (0..32)
        .map(|s| read_all(&vfs.crash(CrashMode::Meta, s), "/d/f").is_some())
        .collect();
    assert!(kept.contains(&true) && kept.contains(&false));
    vfs.sync_dir(&p("/d")).unwrap();
    for s in 0..8 {
        assert_eq!(
            read_all(&vfs.crash(CrashMode::Meta, s), "/d/f").unwrap(),
            b"x"
        );
    }
}

#[test]
fn mkdir_without_parent_sync_loses_the_whole_subtree() {
    let vfs = SimVfs::new(1);
    vfs.create_dir_all(&p("/a/b")).unwrap();
    let f = vfs.open_file(&p("/a/b/f"), OpenMode::CreateNew).unwrap();
    f.sync_data().unwrap();
    vfs.sync_dir(&p("/a/b")).unwrap();
    vfs.sync_dir(&p("/a")).unwrap();
    assert!(vfs.crash(CrashMode::Drop, 0).current_dirs() == vec![p("/")]);
    vfs.sync_dir(&p("/")).unwrap();
    assert!(read_all(&vfs.crash(CrashMode::Drop, 0), "/a/b/f").is_some());
}

#[test]
fn unsynced_rename_gives_old_or_new_name_never_both() {
    let (vfs, f) = disk_with_synced_file(16);
    drop(f);
    vfs.rename(&p("/d/f"), &p("/d/g")).unwrap();
    let mut outcomes = HashSet::new();
    for s in 0..32 {
        let c = vfs.crash(CrashMode::Meta, s);
        let files = c.current_files();
        assert_eq!(files.len(), 1, "{files:?}");
        outcomes.insert(files.keys().next().unwrap().clone());
    }
    assert_eq!(outcomes.len(), 2);
    let d = vfs.crash(CrashMode::Drop, 0);
    assert!(read_all(&d, "/d/f").is_some() && read_all(&d, "/d/g").is_none());
    vfs.sync_dir(&p("/d")).unwrap();
    assert!(read_all(&vfs.crash(CrashMode::Drop, 0), "/d/g").is_some());
}

#[test]
fn unsynced_length_change_may_be_undone() {
    let (vfs, f) = disk_with_synced_file(100);
    f.set_len(5000).unwrap();
    let lens: HashSet<usize> = (0..32)
        .map(|s| {
            read_all(&vfs.crash(CrashMode::Meta, s), "/d/f")
                .unwrap()
                .len()
        })
        .collect();
    assert_eq!(lens, HashSet::from([100, 5000]));
    assert_eq!(
        read_all(&vfs.crash(CrashMode::Drop, 0), "/d/f")
            .unwrap()
            .len(),
        100
    );
    f.sync_data().unwrap();
    assert_eq!(
        read_all(&vfs.crash(CrashMode::Meta, 3), "/d/f")
            .unwrap()
            .len(),
        5000
    );
}

#[test]
fn crash_after_k_ops_freezes_the_image_and_fails_everything_after() {
    let (vfs, f) = disk_with_synced_file(64);
    let before = vfs.op_count();
    vfs.crash_after_ops(2);
    f.write_all_at(b"one", 0).unwrap();
    assert!(!vfs.is_crashed());
    f.write_all_at(b"two", 8).unwrap();
    assert!(vfs.is_crashed());
    assert_eq!(vfs.op_count(), before + 2);
    let err = f.write_all_at(b"three", 16).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EIO));
    assert_eq!(f.len().unwrap_err().raw_os_error(), Some(libc::EIO));
    assert!(vfs.metadata(&p("/d")).is_err());
    let k = vfs.crash(CrashMode::Kill, 0);
    let bytes = read_all(&k, "/d/f").unwrap();
    assert_eq!(
        (&bytes[0..3], &bytes[8..11], &bytes[16..21]),
        (&b"one"[..], &b"two"[..], &[0u8; 5][..])
    );
    // The crashed disk is a fresh, working disk.
    k.open_file(&p("/d/f"), OpenMode::Existing)
        .unwrap()
        .write_all_at(b"x", 0)
        .unwrap();
}

#[test]
fn injected_faults_fire_once_on_the_nth_operation_of_their_kind() {
    let (vfs, f) = disk_with_synced_file(64);
    vfs.fail_nth(FaultKind::Write, 2, FaultError::Eio);
    f.write_all_at(b"a", 0).unwrap();
    let e = f.write_all_at(b"b", 1).unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::EIO));
    f.write_all_at(b"c", 2).unwrap();
    assert_eq!(&read_all(&vfs, "/d/f").unwrap()[..3], b"a\0c");

    vfs.fail_nth(FaultKind::Sync, 1, FaultError::Eio);
    assert_eq!(f.sync_data().unwrap_err().raw_os_error(), Some(libc::EIO));
    assert_eq!(
        &read_all(&vfs.crash(CrashMode::Drop, 0), "/d/f").unwrap()[..3],
        b"\0\0\0"
    );
    f.sync_data().unwrap();

    vfs.fail_nth(FaultKind::Allocate, 1, FaultError::Enospc);
    assert_eq!(
        f.allocate(1 << 20).unwrap_err().raw_os_error(),
        Some(libc::ENOSPC)
    );
    assert_eq!(f.len().unwrap(), 64);
}

#[test]
fn capacity_gives_enospc_and_disk_usage() {
    let (vfs, f) = disk_with_synced_file(1000);
    vfs.set_capacity(4096);
    let u = vfs.disk_usage(&p("/")).unwrap();
    assert_eq!((u.total_bytes, u.available_bytes), (4096, 4096 - 1000));
    assert_eq!(
        f.allocate(5000).unwrap_err().raw_os_error(),
        Some(libc::ENOSPC)
    );
    assert_eq!(
        f.write_all_at(&[1; 10], 4090).unwrap_err().raw_os_error(),
        Some(libc::ENOSPC)
    );
    f.allocate(4096).unwrap();
}

#[test]
fn bit_flip_and_zeroed_sector_hit_page_cache_and_platter() {
    let (vfs, f) = disk_with_synced_file(2048);
    f.write_all_at(&[0xFF; 2048], 0).unwrap();
    f.sync_data().unwrap();
    vfs.flip_bit(&p("/d/f"), 3, 0).unwrap();
    vfs.zero_sector(&p("/d/f"), 2).unwrap();
    for img in [vfs.clone(), vfs.crash(CrashMode::Drop, 0)] {
        let b = read_all(&img, "/d/f").unwrap();
        assert_eq!(b[3], 0xFE);
        assert!(b[1024..1536].iter().all(|&x| x == 0));
        assert!(b[1536..].iter().all(|&x| x == 0xFF));
    }
    let (path, off) = vfs.flip_random_bit(&p("/d")).unwrap();
    assert_eq!(path, p("/d/f"));
    assert!(off < 2048);
}

#[test]
fn mapped_file_cannot_be_resized_until_unmapped() {
    let (_vfs, f) = disk_with_synced_file(4096);
    let map = f.map(4096, true).unwrap();
    assert_eq!(map.as_ptr() as usize % MAP_ALIGN, 0);
    assert!(f.map(4097, false).is_err() && f.map(0, false).is_err());
    assert_eq!(
        f.set_len(8192).unwrap_err().kind(),
        io::ErrorKind::InvalidInput
    );
    f.allocate(4096).unwrap(); // no change: fine
    f.write_all_at(b"via file", 0).unwrap();
    // SAFETY: the region is live and 4096 bytes long.
    let seen = unsafe { std::slice::from_raw_parts(map.as_ptr(), 8) }.to_vec();
    assert_eq!(seen, b"via file");
    let ro = f.map(4096, false).unwrap();
    assert!(ro.as_mut_ptr().is_null());
    assert_eq!(ro.as_ptr(), map.as_ptr());
    drop((map, ro));
    f.set_len(8192).unwrap();
    assert_eq!(f.len().unwrap(), 8192);
}

#[test]
fn lock_is_exclusive_per_path_until_the_guard_drops() {
    let vfs = SimVfs::new(0);
    let g = vfs.lock_exclusive(&p("/lock")).unwrap();
    assert_eq!(
        vfs.lock_exclusive(&p("/lock")).unwrap_err().kind(),
        io::ErrorKind::WouldBlock
    );
    drop(g);
    drop(vfs.lock_exclusive(&p("/lock")).unwrap());
    assert_eq!(read_all(&vfs, "/lock").unwrap(), b"lock");
}

#[test]
fn namespace_operations_behave_like_a_file_system() {
    let vfs = SimVfs::new(0);
    vfs.create_dir_all(&p("/r/x")).unwrap();
    vfs.create_dir_all(&p("/r/x")).unwrap();
    assert!(vfs.open_file(&p("/nope/f"), OpenMode::CreateNew).is_err());
    drop(vfs.open_file(&p("/r/b"), OpenMode::CreateNew).unwrap());
    drop(vfs.open_file(&p("/r/a"), OpenMode::CreateOrOpen).unwrap());
    assert_eq!(
        vfs.open_file(&p("/r/a"), OpenMode::CreateNew)
            .unwrap_err()
            .kind(),
        io::ErrorKind::AlreadyExists
    );
    assert_eq!(
        vfs.open_file(&p("/r/c"), OpenMode::Existing)
            .unwrap_err()
            .kind(),
        io::ErrorKind::NotFound
    );
    let names: Vec<String> = vfs
        .read_dir(&p("/r"))
        .unwrap()
        .into_iter()
        .map(|e| e.name)
        .collect();
    assert_eq!(names, ["a", "b", "x"]);
    let ro = vfs.open_file(&p("/r/a"), OpenMode::ReadOnly).unwrap();
    assert!(ro.write_all_at(b"x", 0).is_err() && ro.map(1, true).is_err());
    vfs.rename(&p("/r/a"), &p("/r/b")).unwrap();
    assert!(vfs.metadata(&p("/r/a")).unwrap().is_none());
    vfs.remove_file(&p("/r/b")).unwrap();
    vfs.remove_dir_all(&p("/r")).unwrap();
    assert_eq!(vfs.current_dirs(), vec![p("/")]);
    let _ = ro.len().unwrap(); // an unlinked file stays readable through its handle
}
