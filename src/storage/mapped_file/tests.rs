//! Unit tests of the mapped file and its writer.

use super::*;
use crate::storage::os::OsVfs;
use std::sync::atomic::AtomicBool;
use std::thread;

const SIZE: usize = 64 * 1024;

fn vfs() -> OsVfs {
    OsVfs
}

#[test]
fn create_append_and_read_back() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("00000000000000000000");
    let file = Arc::new(MappedFile::create(&vfs(), &path, SIZE).unwrap());
    assert_eq!((file.write_position(), file.flushed_position()), (0, 0));
    assert_eq!(std::fs::metadata(&path).unwrap().len(), SIZE as u64);
    let mut writer = file.writer().unwrap();
    assert!(writer.append(b"hello"));
    assert!(writer.append(b"world"));
    assert_eq!(writer.position(), 10);
    assert_eq!(writer.remaining(), SIZE - 10);
    assert_eq!(file.read(0, 5), Some(&b"hello"[..]));
    assert_eq!(file.read(5, 5), Some(&b"world"[..]));
    assert_eq!(file.readable(), b"helloworld");
}

#[test]
fn create_refuses_an_existing_file_and_keeps_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("f");
    std::fs::write(&path, b"precious").unwrap();
    let err = MappedFile::create(&vfs(), &path, SIZE).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::AlreadyExists);
    assert_eq!(std::fs::read(&path).unwrap(), b"precious");
}

#[test]
fn read_beyond_the_write_position_is_none() {
    let dir = tempfile::tempdir().unwrap();
    let file = Arc::new(MappedFile::create(&vfs(), &dir.path().join("f"), SIZE).unwrap());
    let mut writer = file.writer().unwrap();
    writer.append(b"0123456789");
    assert_eq!(file.read(8, 2), Some(&b"89"[..]));
    assert_eq!(file.read(8, 3), None);
    assert_eq!(file.read(10, 0), Some(&b""[..]));
    assert_eq!(file.read(11, 0), None);
    assert_eq!(file.read(usize::MAX, 2), None);
    assert_eq!(file.read(1, usize::MAX), None);
    // Written but not yet published: still invisible.
    writer.write_unpublished(10, b"abc");
    assert_eq!(file.read(10, 3), None);
    writer.publish(13);
    assert_eq!(file.read(10, 3), Some(&b"abc"[..]));
}

#[test]
fn only_one_writer_at_a_time() {
    let dir = tempfile::tempdir().unwrap();
    let file = Arc::new(MappedFile::create(&vfs(), &dir.path().join("f"), SIZE).unwrap());
    let first = file.writer().unwrap();
    assert!(file.writer().is_none());
    assert!(file.writer().is_none());
    drop(first);
    let mut second = file.writer().expect("a writer after the first dropped");
    assert!(second.append(b"x"));
    assert!(file.writer().is_none());
}

#[test]
fn append_that_does_not_fit_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let file = Arc::new(MappedFile::create(&vfs(), &dir.path().join("f"), 4096).unwrap());
    let mut writer = file.writer().unwrap();
    assert!(writer.append(&[7u8; 4000]));
    assert!(!writer.append(&[9u8; 97]));
    assert_eq!(writer.position(), 4000);
    assert!(writer.append(&[8u8; 96]));
    assert_eq!(writer.remaining(), 0);
    assert!(!writer.append(&[1]));
    assert!(writer.append(&[]));
}

#[test]
#[should_panic(expected = "outside")]
fn writing_below_the_write_position_panics() {
    let dir = tempfile::tempdir().unwrap();
    let file = Arc::new(MappedFile::create(&vfs(), &dir.path().join("f"), 4096).unwrap());
    let mut writer = file.writer().unwrap();
    writer.append(b"abcd");
    writer.write_unpublished(3, b"x");
}

#[test]
#[should_panic(expected = "outside")]
fn unpublished_range_past_the_end_panics() {
    let dir = tempfile::tempdir().unwrap();
    let file = Arc::new(MappedFile::create(&vfs(), &dir.path().join("f"), 4096).unwrap());
    let mut writer = file.writer().unwrap();
    let _ = writer.unpublished_mut(4000, 97);
}

#[test]
fn unpublished_mut_encodes_in_place() {
    let dir = tempfile::tempdir().unwrap();
    let file = Arc::new(MappedFile::create(&vfs(), &dir.path().join("f"), 4096).unwrap());
    let mut writer = file.writer().unwrap();
    let record = writer.unpublished_mut(0, 8);
    record[..4].copy_from_slice(&8u32.to_be_bytes());
    record[4..].copy_from_slice(b"body");
    assert_eq!(file.readable(), b"");
    writer.publish(8);
    assert_eq!(file.readable(), b"\0\0\0\x08body");
}

#[test]
fn open_with_the_wrong_length_reports_the_found_length() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("f");
    std::fs::write(&path, vec![1u8; 5000]).unwrap();
    match MappedFile::open(&vfs(), &path, 4096, true) {
        Err(OpenError::WrongLength { expected, found }) => {
            assert_eq!((expected, found), (4096, 5000));
        }
        other => panic!("expected WrongLength, got {other:?}"),
    }
    match MappedFile::open(&vfs(), &path, 8192, false) {
        Err(OpenError::WrongLength { found: 5000, .. }) => {}
        other => panic!("expected WrongLength, got {other:?}"),
    }
    match MappedFile::open(&vfs(), &dir.path().join("missing"), 4096, false) {
        Err(OpenError::Io(err)) => assert_eq!(err.kind(), io::ErrorKind::NotFound),
        other => panic!("expected NotFound, got {other:?}"),
    }
}

#[test]
fn open_publishes_everything_and_read_only_has_no_writer() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("f");
    let content: Vec<u8> = (0..4096u32).map(|i| (i % 251) as u8).collect();
    std::fs::write(&path, &content).unwrap();
    let file = Arc::new(MappedFile::open(&vfs(), &path, 4096, false).unwrap());
    assert_eq!(file.write_position(), 4096);
    assert_eq!(file.flushed_position(), 4096);
    assert_eq!(file.readable(), &content[..]);
    assert!(!file.is_writable());
    assert!(file.writer().is_none());
    let writable = Arc::new(MappedFile::open(&vfs(), &path, 4096, true).unwrap());
    let writer = writable.writer().unwrap();
    assert_eq!(writer.remaining(), 0);
}

#[test]
fn truncate_zeroes_the_tail_on_disk_and_is_idempotent() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("f");
    let size = 3 * 4096;
    {
        let file = Arc::new(MappedFile::create(&vfs(), &path, size).unwrap());
        let mut writer = file.writer().unwrap();
        writer.append(&vec![0xAB; 10_000]);
        file.flush(FlushStrategy::Msync).unwrap();
    }
    let mut file = MappedFile::open(&vfs(), &path, size, true).unwrap();
    file.truncate(300).unwrap();
    assert_eq!(file.write_position(), 300);
    assert_eq!(file.flushed_position(), 300);
    assert_eq!(file.read(299, 2), None);
    let on_disk = std::fs::read(&path).unwrap();
    assert_eq!(on_disk.len(), size);
    assert!(on_disk[..300].iter().all(|&b| b == 0xAB));
    assert!(
        on_disk[300..].iter().all(|&b| b == 0),
        "stale bytes after the cut"
    );

    file.truncate(300).unwrap();
    assert_eq!(std::fs::read(&path).unwrap(), on_disk);
    drop(file);

    // Reopened, the zeros are what the mapping shows, and writing resumes at the cut.
    let mut file = MappedFile::open(&vfs(), &path, size, true).unwrap();
    assert!(file.readable()[300..].iter().all(|&b| b == 0));
    file.truncate(300).unwrap();
    let file = Arc::new(file);
    let mut writer = file.writer().unwrap();
    assert!(writer.append(b"next"));
    assert_eq!(file.read(300, 4), Some(&b"next"[..]));
}

#[test]
fn truncate_past_the_size_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut file = MappedFile::create(&vfs(), &dir.path().join("f"), 4096).unwrap();
    let err = file.truncate(4097).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
    file.truncate(4096).unwrap();
    assert_eq!(file.write_position(), 4096);
}

#[test]
fn flush_advances_the_flushed_position_to_the_write_position() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("f");
    let file = Arc::new(MappedFile::create(&vfs(), &path, SIZE).unwrap());
    let mut writer = file.writer().unwrap();
    writer.append(&[1u8; 5000]);
    assert_eq!(file.flushed_position(), 0);
    assert_eq!(file.flush(FlushStrategy::Msync).unwrap(), 5000);
    assert_eq!(file.flushed_position(), 5000);
    writer.append(&[2u8; 100]);
    writer.write_unpublished(5100, &[3u8; 10]);
    assert_eq!(file.flush(FlushStrategy::Fdatasync).unwrap(), 5100);
    assert_eq!(file.flushed_position(), 5100);
    assert_eq!(file.flush(FlushStrategy::Msync).unwrap(), 5100);
    file.sync_data().unwrap();
    assert_eq!(file.flushed_position(), 5100);
}

#[test]
fn appended_bytes_reach_the_file_after_flush() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("f");
    let file = Arc::new(MappedFile::create(&vfs(), &path, SIZE).unwrap());
    file.prefault_range(0, file.size()).unwrap();
    let mut writer = file.writer().unwrap();
    writer.append(&[0u8; 4000]);
    writer.append(b"across a page boundary");
    assert!(writer.append_via_file(b"+pwrite").unwrap());
    file.flush(FlushStrategy::Msync).unwrap();
    let reader = vfs().open_file(&path, OpenMode::ReadOnly).unwrap();
    let mut back = vec![0u8; 29];
    reader.read_exact_at(&mut back, 4000).unwrap();
    assert_eq!(&back, b"across a page boundary+pwrite");
    assert_eq!(file.read(4022, 7), Some(&b"+pwrite"[..]));
    assert!(!writer.append_via_file(&vec![0u8; SIZE]).unwrap());
}

#[test]
fn zeros_ahead_are_written_only_past_the_write_position() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("f");
    let file = Arc::new(MappedFile::create(&vfs(), &path, SIZE).unwrap());
    let mut writer = file.writer().unwrap();
    writer.write_zeros_ahead(4096).unwrap();
    assert_eq!(writer.zeroed_until(), 4096);
    // Records run past the zeroed window; topping it up must start at the write position,
    // not at the old window end, or it would zero [4096, 5000).
    assert!(writer.append_via_file(&[0xAB; 5000]).unwrap());
    writer.write_zeros_ahead(8192).unwrap();
    assert_eq!(writer.zeroed_until(), 8192);
    // A smaller target changes nothing, a larger one stops at the end of the file.
    writer.write_zeros_ahead(100).unwrap();
    assert_eq!(writer.zeroed_until(), 8192);
    writer.write_zeros_ahead(SIZE * 2).unwrap();
    assert_eq!(writer.zeroed_until(), SIZE);
    assert!(writer.append_via_file(b"tail").unwrap());
    let reader = vfs().open_file(&path, OpenMode::ReadOnly).unwrap();
    let mut back = vec![0u8; SIZE];
    reader.read_exact_at(&mut back, 0).unwrap();
    assert!(back[..5000].iter().all(|&b| b == 0xAB));
    assert_eq!(&back[5000..5004], b"tail");
    assert!(back[5004..].iter().all(|&b| b == 0));
    assert_eq!(reader.len().unwrap(), SIZE as u64, "the file did not grow");
}

#[test]
fn delete_unlinks_but_keeps_the_mapping_readable() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("f");
    let file = Arc::new(MappedFile::create(&vfs(), &path, SIZE).unwrap());
    file.writer().unwrap().append(b"still here");
    file.delete(&vfs()).unwrap();
    assert!(!path.exists());
    assert_eq!(file.readable(), b"still here");
}

/// A self-describing chunk: `len` (u32 LE), `seq` (u32 LE), `len` payload bytes derived from
/// `seq`, CRC32 of all of that (u32 LE).
fn chunk(seq: u32, len: usize) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(12 + len);
    bytes.extend_from_slice(&(len as u32).to_le_bytes());
    bytes.extend_from_slice(&seq.to_le_bytes());
    bytes.extend((0..len).map(|i| (seq as usize * 31 + i) as u8));
    let crc = crc32fast::hash(&bytes);
    bytes.extend_from_slice(&crc.to_le_bytes());
    bytes
}

/// Checks every chunk in `readable`; returns how many there are. Panics on a partial or
/// corrupt chunk: the reader saw an unpublished byte.
fn verify_chunks(readable: &[u8]) -> u32 {
    let mut pos = 0;
    let mut seq = 0u32;
    while pos < readable.len() {
        let header = readable
            .get(pos..pos + 8)
            .expect("partial chunk header visible");
        let len = u32::from_le_bytes(header[..4].try_into().unwrap()) as usize;
        let found_seq = u32::from_le_bytes(header[4..].try_into().unwrap());
        assert_eq!(found_seq, seq, "chunk at {pos}");
        let body = readable
            .get(pos..pos + 8 + len + 4)
            .expect("partial chunk visible");
        let crc = u32::from_le_bytes(body[8 + len..].try_into().unwrap());
        assert_eq!(crc32fast::hash(&body[..8 + len]), crc, "torn chunk {seq}");
        pos += 12 + len;
        seq += 1;
    }
    seq
}

#[test]
fn concurrent_readers_never_see_unpublished_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let size = 512 * 1024;
    let file = Arc::new(MappedFile::create(&vfs(), &dir.path().join("f"), size).unwrap());
    let done = Arc::new(AtomicBool::new(false));
    let readers: Vec<_> = (0..2)
        .map(|_| {
            let file = Arc::clone(&file);
            let done = Arc::clone(&done);
            thread::spawn(move || {
                let mut last = 0;
                let mut checks = 0u64;
                loop {
                    let finished = done.load(Ordering::Acquire);
                    let count = verify_chunks(file.readable());
                    assert!(count >= last, "published chunks went backwards");
                    last = count;
                    checks += 1;
                    if finished {
                        return (last, checks);
                    }
                }
            })
        })
        .collect();

    let mut writer = file.writer().unwrap();
    let mut seq = 0u32;
    let mut state = 0x9E37_79B9u32;
    loop {
        state ^= state << 13;
        state ^= state >> 17;
        state ^= state << 5;
        let bytes = chunk(seq, (state % 400) as usize);
        if bytes.len() > writer.remaining() {
            break;
        }
        let position = writer.position();
        match seq % 3 {
            0 => assert!(writer.append(&bytes)),
            1 => {
                // Two parts with a pause between them, then publish.
                let half = bytes.len() / 2;
                writer.write_unpublished(position + half, &bytes[half..]);
                thread::yield_now();
                writer.write_unpublished(position, &bytes[..half]);
                writer.publish(position + bytes.len());
            }
            _ => {
                // Garbage first, then the real bytes, in place.
                let region = writer.unpublished_mut(position, bytes.len());
                region.fill(0xFF);
                region.copy_from_slice(&bytes);
                writer.publish(position + bytes.len());
            }
        }
        seq += 1;
    }
    done.store(true, Ordering::Release);
    assert!(seq > 2000, "only {seq} appends");
    for reader in readers {
        let (count, checks) = reader.join().unwrap();
        assert_eq!(count, seq);
        assert!(checks > 0);
    }
    assert_eq!(verify_chunks(file.readable()), seq);
}
