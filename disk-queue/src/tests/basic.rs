//! Behaviour without damage: FIFO, rolling, deletion of read segments, reopen, empty, delete, sync.

use std::fs;
use std::time::Duration;

use super::{drain, open, record, small_options};
use crate::{DiskQueue, Error, Options, Position, RECORD_HEADER_LEN};

#[test]
fn queue_can_move_between_threads() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<DiskQueue>();
    assert_send_sync::<crate::go::GoDiskQueue>();
}

#[test]
fn records_come_back_in_order_and_depth_follows() {
    let dir = tempfile::tempdir().unwrap();
    let mut queue = open(dir.path(), 1 << 20);
    assert_eq!(queue.read_next().unwrap(), None);
    for index in 0..10 {
        queue.put(&record(index, 30)).unwrap();
    }
    assert_eq!(queue.depth(), 10);
    assert_eq!(queue.read_next().unwrap().unwrap(), record(0, 30));
    assert_eq!(queue.depth(), 9);
    queue.put(b"").unwrap();
    let rest = drain(&mut queue);
    assert_eq!(rest.len(), 10);
    assert_eq!(rest[8], record(9, 30));
    assert_eq!(rest[9], b"");
    assert_eq!(queue.depth(), 0);
    assert_eq!(queue.corrupt_records(), 0);
    assert_eq!(queue.bytes_written_total(), 10 * (30 + 16) + 16);
}

#[test]
fn a_fresh_queue_creates_no_files_until_the_first_put() {
    let dir = tempfile::tempdir().unwrap();
    let queue = open(dir.path(), 1024);
    queue.close().unwrap();
    let queue = open(dir.path(), 1024);
    assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 0);
    drop(queue);
}

#[test]
fn rolling_follows_the_segment_maths() {
    let dir = tempfile::tempdir().unwrap();
    // 3 records of 16 + 84 = 100 bytes fit in 300; the 4th starts a new segment.
    let mut queue = open(dir.path(), 300);
    for index in 0..7 {
        queue.put(&record(index, 84)).unwrap();
    }
    assert_eq!(queue.write_position(), Position::new(2, 100));
    assert_eq!(queue.segments_on_disk().unwrap(), vec![0, 1, 2]);
    for number in 0..2 {
        assert_eq!(fs::metadata(queue.segment_path(number)).unwrap().len(), 300);
    }
    // An oversize record gets a segment of its own, and the next record moves on again.
    queue.put(&record(7, 500)).unwrap();
    queue.put(&record(8, 10)).unwrap();
    assert_eq!(queue.write_position(), Position::new(4, 26));
    assert_eq!(fs::metadata(queue.segment_path(3)).unwrap().len(), 516);
    // An oversize record into an empty segment does not roll.
    queue.empty().unwrap();
    queue.put(&record(9, 500)).unwrap();
    assert_eq!(queue.write_position(), Position::new(5, 516));
}

#[test]
fn read_segments_are_deleted_at_the_next_sync() {
    let dir = tempfile::tempdir().unwrap();
    let mut queue = open(dir.path(), 300);
    let records: Vec<Vec<u8>> = (0..10).map(|index| record(index, 84)).collect();
    queue.put_batch(&records).unwrap();
    assert_eq!(queue.segments_on_disk().unwrap(), vec![0, 1, 2, 3]);
    for expected in &records[..7] {
        assert_eq!(&queue.read_next().unwrap().unwrap()[..], &expected[..]);
    }
    // The reader is at the end of segment 2 but has not looked further yet.
    assert_eq!(queue.read_position(), Position::new(2, 100));
    assert!(queue.needs_sync());
    assert_eq!(queue.segments_on_disk().unwrap(), vec![0, 1, 2, 3]);
    queue.sync().unwrap();
    assert_eq!(queue.segments_on_disk().unwrap(), vec![2, 3]);
    assert!(!queue.needs_sync());
    assert_eq!(drain(&mut queue), records[7..].to_vec());
    queue.sync().unwrap();
    assert_eq!(queue.segments_on_disk().unwrap(), vec![3]);
}

#[test]
fn put_batch_spans_segments_and_matches_single_puts() {
    let dir_batch = tempfile::tempdir().unwrap();
    let dir_single = tempfile::tempdir().unwrap();
    let records: Vec<Vec<u8>> = (0..50)
        .map(|index| record(index, index * 7 % 120))
        .collect();
    let mut batched = open(dir_batch.path(), 400);
    let mut single = open(dir_single.path(), 400);
    batched.put_batch(records.iter().take(20)).unwrap();
    batched.put_batch(Vec::<Vec<u8>>::new()).unwrap();
    batched.put_batch(&records[20..]).unwrap();
    for item in &records {
        single.put(item).unwrap();
    }
    assert_eq!(batched.write_position(), single.write_position());
    assert_eq!(batched.depth(), 50);
    for number in batched.segments_on_disk().unwrap() {
        assert_eq!(
            fs::read(batched.segment_path(number)).unwrap(),
            fs::read(single.segment_path(number)).unwrap()
        );
    }
    assert_eq!(drain(&mut batched), records);
}

#[test]
fn record_size_limits_are_enforced_before_writing() {
    let dir = tempfile::tempdir().unwrap();
    let options = Options {
        min_record_size: 2,
        max_record_size: 5,
        ..small_options(1024)
    };
    let mut queue = DiskQueue::open(dir.path(), "t", options).unwrap();
    assert!(matches!(
        queue.put(b"x"),
        Err(Error::RecordSize {
            size: 1,
            min: 2,
            max: 5
        })
    ));
    assert!(matches!(
        queue.put_batch([&b"ok"[..], b"toolong"]),
        Err(Error::RecordSize { size: 7, .. })
    ));
    assert_eq!(queue.depth(), 0);
    assert_eq!(queue.write_position(), Position::new(0, 0));
    queue.put_batch([&b"ok"[..], b"fine!"]).unwrap();
    assert_eq!(drain(&mut queue), vec![b"ok".to_vec(), b"fine!".to_vec()]);
}

#[test]
fn invalid_names_and_options_are_rejected() {
    let dir = tempfile::tempdir().unwrap();
    for name in ["", "a:b:c", "a/b", "t#ephemeral", ":c", "t:", "..\\x"] {
        assert!(
            matches!(
                DiskQueue::open(dir.path(), name, Options::default()),
                Err(Error::InvalidName(_))
            ),
            "{name:?}"
        );
    }
    let options = Options {
        max_bytes_per_file: 0,
        ..Options::default()
    };
    assert!(matches!(
        DiskQueue::open(dir.path(), "t", options),
        Err(Error::InvalidOptions(_))
    ));
    let options = Options {
        min_record_size: 10,
        max_record_size: 9,
        ..Options::default()
    };
    assert!(matches!(
        DiskQueue::open(dir.path(), "t", options),
        Err(Error::InvalidOptions(_))
    ));
    assert!(DiskQueue::open(dir.path(), "Topic_1.x-y:chan-2", Options::default()).is_ok());
}

#[test]
fn reopen_after_close_keeps_everything_and_the_depth() {
    let dir = tempfile::tempdir().unwrap();
    let records: Vec<Vec<u8>> = (0..40).map(|index| record(index, 50)).collect();
    let mut queue = open(dir.path(), 256);
    queue.put_batch(&records).unwrap();
    for expected in &records[..15] {
        assert_eq!(&queue.read_next().unwrap().unwrap()[..], &expected[..]);
    }
    let (read, write) = (queue.read_position(), queue.write_position());
    queue.close().unwrap();

    let mut queue = open(dir.path(), 256);
    assert_eq!(queue.depth(), 25);
    assert_eq!(queue.read_position(), read);
    assert_eq!(queue.write_position(), write);
    assert_eq!(queue.corrupt_records(), 0);
    queue.put(b"after reopen").unwrap();
    let mut rest = drain(&mut queue);
    assert_eq!(rest.pop().unwrap(), b"after reopen");
    assert_eq!(rest, records[15..].to_vec());
    queue.close().unwrap();

    let mut queue = open(dir.path(), 256);
    assert_eq!(queue.depth(), 0);
    assert_eq!(queue.read_next().unwrap(), None);
    assert_eq!(queue.segments_on_disk().unwrap().len(), 1);
}

#[test]
fn crash_without_sync_keeps_every_record_put() {
    let dir = tempfile::tempdir().unwrap();
    let records: Vec<Vec<u8>> = (0..30).map(|index| record(index, 40)).collect();
    let mut queue = open(dir.path(), 300);
    queue.put_batch(&records[..10]).unwrap();
    queue.sync().unwrap();
    queue.put_batch(&records[10..]).unwrap();
    drop(queue);

    let mut queue = open(dir.path(), 300);
    assert_eq!(queue.depth(), 30);
    assert_eq!(queue.corrupt_records(), 0);
    assert_eq!(drain(&mut queue), records);
}

#[test]
fn crash_replays_reads_since_the_last_sync_but_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let records: Vec<Vec<u8>> = (0..30).map(|index| record(index, 40)).collect();
    let mut queue = open(dir.path(), 300);
    queue.put_batch(&records).unwrap();
    for _ in 0..5 {
        queue.read_next().unwrap();
    }
    queue.sync().unwrap();
    for _ in 0..10 {
        queue.read_next().unwrap();
    }
    queue.sync().unwrap();
    for _ in 0..5 {
        queue.read_next().unwrap();
    }
    drop(queue);

    let mut queue = open(dir.path(), 300);
    assert_eq!(queue.depth(), 15);
    assert_eq!(drain(&mut queue), records[15..].to_vec());
}

#[test]
fn metadata_is_written_only_by_sync() {
    let dir = tempfile::tempdir().unwrap();
    let mut queue = open(dir.path(), 1024);
    queue.put(b"one").unwrap();
    let meta = dir.path().join("topic:channel.diskqueue2.meta.dat");
    assert!(!meta.exists());
    queue.sync().unwrap();
    let first = fs::read(&meta).unwrap();
    assert_eq!(first.len(), 56);
    queue.sync().unwrap();
    assert_eq!(fs::read(&meta).unwrap(), first);
    assert!(
        !dir.path()
            .join("topic:channel.diskqueue2.meta.dat.tmp")
            .exists()
    );
}

#[test]
fn needs_sync_counts_operations_and_time() {
    let dir = tempfile::tempdir().unwrap();
    let options = Options {
        sync_every: 3,
        sync_timeout: Duration::from_millis(30),
        ..small_options(1 << 20)
    };
    let mut queue = DiskQueue::open(dir.path(), "t", options).unwrap();
    assert!(!queue.needs_sync());
    queue.put(b"a").unwrap();
    queue.put(b"b").unwrap();
    assert!(!queue.needs_sync());
    queue.read_next().unwrap();
    assert!(queue.needs_sync());
    queue.sync().unwrap();
    assert!(!queue.needs_sync());
    queue.read_next().unwrap();
    assert!(!queue.needs_sync());
    std::thread::sleep(Duration::from_millis(40));
    assert!(queue.needs_sync());
    queue.sync().unwrap();
    std::thread::sleep(Duration::from_millis(40));
    assert!(!queue.needs_sync(), "nothing pending");
}

#[test]
fn empty_drops_everything_and_writing_continues() {
    let dir = tempfile::tempdir().unwrap();
    let mut queue = open(dir.path(), 200);
    let records: Vec<Vec<u8>> = (0..20).map(|index| record(index, 40)).collect();
    queue.put_batch(&records).unwrap();
    queue.read_next().unwrap();
    queue.empty().unwrap();
    assert_eq!(queue.depth(), 0);
    assert!(queue.segments_on_disk().unwrap().is_empty());
    assert_eq!(queue.read_next().unwrap(), None);
    queue.put(b"fresh").unwrap();
    queue.close().unwrap();
    let mut queue = open(dir.path(), 200);
    assert_eq!(queue.depth(), 1);
    assert_eq!(drain(&mut queue), vec![b"fresh".to_vec()]);
}

#[test]
fn delete_removes_every_file_of_the_queue_only() {
    let dir = tempfile::tempdir().unwrap();
    let mut other = DiskQueue::open(dir.path(), "topic", small_options(200)).unwrap();
    other.put(b"keep me").unwrap();
    other.close().unwrap();
    let mut queue = open(dir.path(), 200);
    queue
        .put_batch((0..20).map(|index| record(index, 40)))
        .unwrap();
    queue.sync().unwrap();
    queue.delete().unwrap();
    let left: Vec<String> = fs::read_dir(dir.path())
        .unwrap()
        .map(|entry| entry.unwrap().file_name().into_string().unwrap())
        .collect();
    assert!(
        left.iter().all(|name| name.starts_with("topic.")),
        "{left:?}"
    );
    let mut other = DiskQueue::open(dir.path(), "topic", small_options(200)).unwrap();
    assert_eq!(drain(&mut other), vec![b"keep me".to_vec()]);
}

#[test]
fn reader_following_the_writer_sees_each_record() {
    let dir = tempfile::tempdir().unwrap();
    let mut queue = open(dir.path(), 500);
    for index in 0..100 {
        queue.put(&record(index, index % 60)).unwrap();
        assert_eq!(
            queue.read_next().unwrap().unwrap(),
            record(index, index % 60)
        );
        assert_eq!(queue.read_next().unwrap(), None);
        assert_eq!(queue.depth(), 0);
    }
    assert_eq!(queue.corrupt_records(), 0);
}

#[test]
fn records_larger_than_a_read_chunk_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let options = Options {
        max_record_size: 1 << 20,
        ..small_options(1 << 20)
    };
    let mut queue = DiskQueue::open(dir.path(), "t", options).unwrap();
    let big: Vec<u8> = (0..300_000u32).map(|value| value as u8).collect();
    queue.put_batch([&b"small"[..], &big, b"tail"]).unwrap();
    assert_eq!(
        drain(&mut queue),
        vec![b"small".to_vec(), big, b"tail".to_vec()]
    );
    assert_eq!(
        queue.write_position().offset,
        3 * RECORD_HEADER_LEN as u64 + 300_009
    );
}

#[test]
fn coexists_with_upstream_files_of_the_same_name() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(
        dir.path().join("topic:channel.diskqueue.000000.dat"),
        b"upstream",
    )
    .unwrap();
    fs::write(
        dir.path().join("topic:channel.diskqueue.meta.dat"),
        b"1\n0,0\n0,8\n",
    )
    .unwrap();
    let mut queue = open(dir.path(), 1024);
    assert_eq!(queue.depth(), 0);
    queue.put(b"ours").unwrap();
    queue.close().unwrap();
    let queue = open(dir.path(), 1024);
    queue.delete().unwrap();
    assert_eq!(
        fs::read(dir.path().join("topic:channel.diskqueue.000000.dat")).unwrap(),
        b"upstream"
    );
    assert!(dir.path().join("topic:channel.diskqueue.meta.dat").exists());
}
