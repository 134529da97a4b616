//! [`DiskQueue`]: writer, reader, recovery and sync. The format and the rules are in the crate docs.

use std::cmp;
use std::collections::{HashSet, VecDeque};
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use bytes::Bytes;
use tracing::{debug, warn};

use crate::error::{Error, IoContext};
use crate::meta::{self, Loaded, Meta};
use crate::record;
use crate::segment::{self, SegmentReader, Step};
use crate::{Options, Position, validate_name};

/// Above this, the batch encoding buffer is released after use rather than kept for the next batch.
const RETAINED_WRITE_BUFFER: usize = 4 * 1024 * 1024;

/// An append-only FIFO of byte records in segment files, for one topic or channel.
///
/// One writer and one reader, both through `&mut self`; wrap it in a mutex to share it. All calls
/// block on file I/O. Dropping it without [`close`](Self::close) is equivalent to a process crash
/// (see the crate docs: nothing put is lost, reads since the last sync are replayed).
#[derive(Debug)]
pub struct DiskQueue {
    dir: PathBuf,
    name: String,
    options: Options,

    /// End of the last record written; the next record goes here (or to the next segment).
    write: Position,
    /// Open append handle on `write.segment`, created on first write.
    writer: Option<File>,
    /// Reused encoding buffer: a batch becomes one `write` per segment it touches.
    write_buf: Vec<u8>,
    /// Where `write_buf` is split across segments, reused like `write_buf`.
    cuts: Vec<Cut>,
    /// Bytes were written to `writer` since its last fdatasync.
    write_unsynced: bool,

    /// Start of the next unread record.
    read: Position,
    reader: Option<OpenSegment>,

    depth: u64,
    corrupt_records: u64,
    bytes_written_total: u64,

    /// Reads plus writes since the last sync.
    ops_since_sync: u64,
    last_sync: Instant,
    /// The in-memory state differs from the metadata file.
    dirty: bool,
    /// A segment finished or a recovery happened: sync soon, whatever the counters say.
    force_sync: bool,
    /// A segment file was created since the directory was last fsynced.
    dir_unsynced: bool,
    /// Segments the reader has left; deleted once metadata that no longer names them is durable.
    pending_deletes: Vec<u64>,

    /// `retain_until_released`: start positions of records read and not yet committed past, in
    /// read order, each with whether it was released.
    outstanding: VecDeque<(Position, bool)>,
    /// `retain_until_released`: positions released before the reader reached them.
    released_ahead: HashSet<Position>,
    /// `retain_until_released`: segments the reader has left that the committed position has
    /// not passed yet.
    awaiting_commit: Vec<u64>,
}

/// An fdatasync of everything a [`DiskQueue`] had put when [`DiskQueue::write_sync`] was called,
/// to run without holding the queue.
#[derive(Debug)]
pub struct WriteSync {
    segment: Option<(File, PathBuf)>,
    dir: Option<PathBuf>,
}

impl WriteSync {
    /// fdatasyncs the write segment (and fsyncs the directory if a segment was created since its
    /// last sync). Returns how many fsync calls it made.
    pub fn run(self) -> Result<u32, Error> {
        let mut calls = 0;
        if let Some((file, path)) = &self.segment {
            file.sync_data().ctx("fsync segment", path)?;
            calls += 1;
        }
        if let Some(dir) = &self.dir {
            meta::sync_dir(dir)?;
            calls += 1;
        }
        Ok(calls)
    }
}

/// The segment the reader has open.
#[derive(Debug)]
struct OpenSegment {
    segment: u64,
    reader: SegmentReader,
    /// File size, looked up once the segment is sealed (the writer has moved past it).
    sealed_len: Option<u64>,
}

/// One segment's share of an encoded batch: `write_buf[previous end..end]` holding `records`.
#[derive(Clone, Copy, Debug)]
struct Cut {
    end: usize,
    records: u64,
}

impl DiskQueue {
    /// Opens queue `name` in `dir` (created if missing), recovering whatever is on disk.
    ///
    /// A queue with no files stays without files until the first record is put. Damage found at
    /// the tail is truncated and counted in [`corrupt_records`](Self::corrupt_records).
    pub fn open(dir: &Path, name: &str, options: Options) -> Result<Self, Error> {
        validate_name(name)?;
        options.validate()?;
        fs::create_dir_all(dir).ctx("create directory", dir)?;
        let mut queue = Self {
            dir: dir.to_path_buf(),
            name: name.to_owned(),
            options,
            write: Position::default(),
            writer: None,
            write_buf: Vec::new(),
            cuts: Vec::new(),
            write_unsynced: false,
            read: Position::default(),
            reader: None,
            depth: 0,
            corrupt_records: 0,
            bytes_written_total: 0,
            ops_since_sync: 0,
            last_sync: Instant::now(),
            dirty: false,
            force_sync: false,
            dir_unsynced: false,
            pending_deletes: Vec::new(),
            outstanding: VecDeque::new(),
            released_ahead: HashSet::new(),
            awaiting_commit: Vec::new(),
        };
        queue.recover()?;
        Ok(queue)
    }

    /// Appends one record. It is in the kernel when this returns.
    pub fn put(&mut self, record: &[u8]) -> Result<(), Error> {
        self.put_batch(std::iter::once(record))
    }

    /// Appends one record and returns its start position (for [`release`](Self::release)).
    pub fn put_at(&mut self, record: &[u8]) -> Result<Position, Error> {
        self.put(record)?;
        let len = record::record_len(record.len());
        Ok(Position::new(
            self.write.segment,
            self.write.offset.saturating_sub(len),
        ))
    }

    /// Appends several records with one `write` per segment they land in.
    ///
    /// Sizes are checked first: if any record is out of range nothing is written. If a write
    /// fails, the records of the segments already written stay queued and the rest are not.
    pub fn put_batch<I, B>(&mut self, records: I) -> Result<(), Error>
    where
        I: IntoIterator<Item = B>,
        B: AsRef<[u8]>,
    {
        self.write_buf.clear();
        self.cuts.clear();
        let max_bytes = self.options.max_bytes_per_file;
        let mut offset = self.write.offset;
        let mut records_in_cut = 0;
        for record in records {
            let record = record.as_ref();
            if let Err(err) = self.check_size(record.len()) {
                self.write_buf.clear();
                return Err(err);
            }
            let record_len = record::record_len(record.len());
            if offset > 0 && offset + record_len > max_bytes {
                self.cuts.push(Cut {
                    end: self.write_buf.len(),
                    records: records_in_cut,
                });
                offset = 0;
                records_in_cut = 0;
            }
            record::encode_into(&mut self.write_buf, record);
            offset += record_len;
            records_in_cut += 1;
        }
        self.cuts.push(Cut {
            end: self.write_buf.len(),
            records: records_in_cut,
        });
        let result = self.write_cuts();
        if self.write_buf.capacity() > RETAINED_WRITE_BUFFER {
            self.write_buf = Vec::new();
        }
        result
    }

    /// The next record, or `None` when the reader has caught up with the writer. Damaged records
    /// on the way are skipped, counted and logged.
    pub fn read_next(&mut self) -> Result<Option<Bytes>, Error> {
        Ok(self.read_next_at()?.map(|(_, record)| record))
    }

    /// Like [`read_next`](Self::read_next), with the record's start position (what
    /// [`release`](Self::release) takes).
    pub fn read_next_at(&mut self) -> Result<Option<(Position, Bytes)>, Error> {
        loop {
            if self.read >= self.write {
                self.caught_up();
                return Ok(None);
            }
            let sealed = self.read.segment < self.write.segment;
            if self
                .reader
                .as_ref()
                .is_none_or(|open| open.segment != self.read.segment)
            {
                self.reader = None;
                let path = self.segment_path(self.read.segment);
                match SegmentReader::open(&path, self.read.offset)? {
                    Some(reader) => {
                        self.reader = Some(OpenSegment {
                            segment: self.read.segment,
                            reader,
                            sealed_len: None,
                        });
                    }
                    None if sealed => {
                        warn!(queue = %self.name, path = %path.display(), "segment missing, skipping to the next one");
                        self.leave_read_segment(false);
                        continue;
                    }
                    None => {
                        warn!(queue = %self.name, path = %path.display(), from = %self.read, to = %self.write,
                            "write segment missing, records in it are lost");
                        self.read = self.write;
                        self.dirty = true;
                        continue;
                    }
                }
            }
            let Some(open) = self.reader.as_mut() else {
                continue;
            };
            let limit = if sealed {
                match open.sealed_len {
                    Some(len) => len,
                    None => {
                        let len = open.reader.file_len()?;
                        open.sealed_len = Some(len);
                        len
                    }
                }
            } else {
                self.write.offset
            };
            let step = open.reader.next(limit)?;
            let position = open.reader.position();
            match step {
                Step::Record(record) => {
                    let start = Position::new(
                        self.read.segment,
                        position.saturating_sub(record::record_len(record.len())),
                    );
                    self.read.offset = position;
                    self.depth = self.depth.saturating_sub(1);
                    self.ops_since_sync += 1;
                    self.dirty = true;
                    if self.options.retain_until_released {
                        let released = self.released_ahead.remove(&start);
                        self.outstanding.push_back((start, released));
                        self.pop_released();
                    }
                    return Ok(Some((start, record)));
                }
                Step::Damaged { start, end } => {
                    self.read.offset = position;
                    self.depth = self.depth.saturating_sub(1);
                    self.corrupt_records += 1;
                    self.ops_since_sync += 1;
                    self.dirty = true;
                    warn!(queue = %self.name, segment = self.read.segment, start, end,
                        "skipped damaged record");
                }
                Step::End if sealed => self.leave_read_segment(true),
                Step::End => self.read.offset = cmp::max(position, self.read.offset),
            }
        }
    }

    /// Records put and not yet read (damaged ones count until the reader passes them).
    pub fn depth(&self) -> u64 {
        self.depth
    }

    /// `retain_until_released`: the record read at (or, if not read yet, put at) `position` is
    /// done. Positions the queue does not know (already committed past, or from before an
    /// [`empty`](Self::empty)) are ignored. Without `retain_until_released` this does nothing.
    pub fn release(&mut self, position: Position) {
        if !self.options.retain_until_released {
            return;
        }
        if position >= self.read {
            if position < self.write {
                self.released_ahead.insert(position);
            }
            return;
        }
        if let Ok(index) = self
            .outstanding
            .binary_search_by(|(start, _)| start.cmp(&position))
        {
            self.outstanding[index].1 = true;
            self.pop_released();
        }
    }

    /// Where a restart would start reading: the oldest read record not released (or the read
    /// position). Equal to [`read_position`](Self::read_position) without `retain_until_released`.
    pub fn committed_position(&self) -> Position {
        self.outstanding
            .front()
            .map_or(self.read, |(start, _)| *start)
    }

    /// Records read and not yet committed past (`retain_until_released`), released or not.
    pub fn uncommitted_reads(&self) -> u64 {
        self.outstanding.len() as u64
    }

    /// Visits every unread record (start position and payload) without reading it: the read
    /// position does not move and nothing is counted. Damaged regions are passed over silently
    /// (the reader will count them). Used by nsqd's durable mode to look ahead at what a restart
    /// is about to replay.
    pub fn scan_unread(&self, mut visit: impl FnMut(Position, &[u8])) -> Result<(), Error> {
        let mut at = self.read;
        while at < self.write {
            let sealed = at.segment < self.write.segment;
            let path = self.segment_path(at.segment);
            let Some(mut reader) = SegmentReader::open(&path, at.offset)? else {
                if sealed {
                    at = Position::new(at.segment + 1, 0);
                    continue;
                }
                break;
            };
            let limit = if sealed {
                reader.file_len()?
            } else {
                self.write.offset
            };
            loop {
                match reader.next(limit)? {
                    Step::Record(record) => {
                        let end = reader.position();
                        let start = end.saturating_sub(record::record_len(record.len()));
                        visit(Position::new(at.segment, start), &record);
                    }
                    Step::Damaged { .. } => {}
                    Step::End => break,
                }
            }
            if !sealed {
                break;
            }
            at = Position::new(at.segment + 1, 0);
        }
        Ok(())
    }

    /// A handle that fdatasyncs everything put so far when run (see the crate docs).
    pub fn write_sync(&self) -> Result<WriteSync, Error> {
        let segment = match &self.writer {
            Some(file) => {
                let path = self.segment_path(self.write.segment);
                let dup = file.try_clone().ctx("duplicate segment handle", &path)?;
                Some((dup, path))
            }
            None => None,
        };
        Ok(WriteSync {
            segment,
            dir: self.dir_unsynced.then(|| self.dir.clone()),
        })
    }

    fn pop_released(&mut self) {
        let before = self.committed_position();
        while self
            .outstanding
            .front()
            .is_some_and(|(_, released)| *released)
        {
            self.outstanding.pop_front();
        }
        let after = self.committed_position();
        if after != before {
            self.dirty = true;
            self.ops_since_sync += 1;
            if after.segment != before.segment {
                self.force_sync = true;
            }
        }
    }

    /// Makes everything up to now durable: fdatasync, metadata replaced atomically, finished
    /// segments deleted. The steps are numbered in the crate docs.
    pub fn sync(&mut self) -> Result<(), Error> {
        let committed = self.committed_position();
        if !self.awaiting_commit.is_empty() {
            let (passed, waiting): (Vec<u64>, Vec<u64>) = self
                .awaiting_commit
                .iter()
                .partition(|&&segment| segment < committed.segment);
            self.awaiting_commit = waiting;
            self.pending_deletes.extend(passed);
        }
        if self.dirty || self.write_unsynced || !self.pending_deletes.is_empty() {
            if self.write_unsynced {
                if let Some(file) = &self.writer {
                    let path = self.segment_path(self.write.segment);
                    file.sync_data().ctx("fsync segment", &path)?;
                }
                self.write_unsynced = false;
            }
            if self.dir_unsynced {
                meta::sync_dir(&self.dir)?;
                self.dir_unsynced = false;
            }
            let meta = Meta {
                depth: self.depth + self.uncommitted_reads(),
                read: committed,
                write: self.write,
            };
            meta::store(
                &segment::meta_path(&self.dir, &self.name),
                &segment::meta_tmp_path(&self.dir, &self.name),
                &meta,
            )?;
            self.dirty = false;
            if !self.pending_deletes.is_empty() {
                meta::sync_dir(&self.dir)?;
                while let Some(&finished) = self.pending_deletes.last() {
                    segment::remove_if_exists(&self.segment_path(finished))?;
                    self.pending_deletes.pop();
                }
            }
        }
        self.ops_since_sync = 0;
        self.force_sync = false;
        self.last_sync = Instant::now();
        Ok(())
    }

    /// Whether the caller should [`sync`](Self::sync) now: `sync_every` operations reached,
    /// `sync_timeout` passed with operations pending, or a segment was finished.
    pub fn needs_sync(&self) -> bool {
        !self.pending_deletes.is_empty()
            || (self.dirty
                && (self.force_sync
                    || self.ops_since_sync >= self.options.sync_every
                    || self.last_sync.elapsed() >= self.options.sync_timeout))
    }

    /// Drops every queued record: all segment files are deleted and writing continues in a new
    /// segment number. Depth becomes 0.
    pub fn empty(&mut self) -> Result<(), Error> {
        self.reader = None;
        self.writer = None;
        self.write_unsynced = false;
        let segments = segment::list_segments(&self.dir, &self.name)?;
        let highest = segments.last().copied().unwrap_or(0);
        self.write = Position::new(cmp::max(self.write.segment, highest) + 1, 0);
        self.read = self.write;
        self.depth = 0;
        self.outstanding.clear();
        self.released_ahead.clear();
        self.awaiting_commit.clear();
        self.pending_deletes = segments;
        self.dirty = true;
        self.sync()
    }

    /// Removes every file of this queue. Nothing of it remains on disk.
    pub fn delete(mut self) -> Result<(), Error> {
        self.reader = None;
        self.writer = None;
        for number in segment::list_segments(&self.dir, &self.name)? {
            segment::remove_if_exists(&self.segment_path(number))?;
        }
        segment::remove_if_exists(&segment::meta_path(&self.dir, &self.name))?;
        segment::remove_if_exists(&segment::meta_tmp_path(&self.dir, &self.name))
    }

    /// Syncs, then closes the files.
    pub fn close(mut self) -> Result<(), Error> {
        self.sync()
    }

    /// Damaged regions skipped since `open` (each usually one record), including torn tails
    /// truncated by recovery.
    pub fn corrupt_records(&self) -> u64 {
        self.corrupt_records
    }

    /// Bytes appended since `open`, headers included.
    pub fn bytes_written_total(&self) -> u64 {
        self.bytes_written_total
    }

    /// Start of the next unread record.
    pub fn read_position(&self) -> Position {
        self.read
    }

    /// End of the last record written.
    pub fn write_position(&self) -> Position {
        self.write
    }

    /// The queue's name (`topic` or `topic:channel`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Path of segment `number` of this queue (it may not exist).
    pub fn segment_path(&self, number: u64) -> PathBuf {
        segment::segment_path(&self.dir, &self.name, number)
    }

    /// Numbers of this queue's segment files currently on disk, ascending.
    pub fn segments_on_disk(&self) -> Result<Vec<u64>, Error> {
        segment::list_segments(&self.dir, &self.name)
    }

    fn check_size(&self, size: usize) -> Result<(), Error> {
        let Options {
            min_record_size: min,
            max_record_size: max,
            ..
        } = self.options;
        let in_range = u32::try_from(size).is_ok_and(|size| size >= min && size <= max);
        if in_range {
            Ok(())
        } else {
            Err(Error::RecordSize { size, min, max })
        }
    }

    fn write_cuts(&mut self) -> Result<(), Error> {
        let mut start = 0;
        for index in 0..self.cuts.len() {
            let cut = self.cuts[index];
            if index > 0 {
                self.roll()?;
            }
            if cut.records > 0 {
                self.ensure_writer()?;
                let path = self.segment_path(self.write.segment);
                let Some(file) = self.writer.as_mut() else {
                    let missing = std::io::Error::other("segment not open for writing");
                    return Err(Error::io("write segment", &path, missing));
                };
                if let Err(err) = file.write_all(&self.write_buf[start..cut.end]) {
                    // A partial write would otherwise sit between this record and the next.
                    if let Err(truncate_err) = file.set_len(self.write.offset) {
                        warn!(queue = %self.name, error = %truncate_err,
                            "cannot truncate a failed write; the reader will skip it as damaged");
                    }
                    return Err(Error::io("write segment", &path, err));
                }
                let written = (cut.end - start) as u64;
                self.write.offset += written;
                self.bytes_written_total += written;
                self.depth += cut.records;
                self.ops_since_sync += cut.records;
                self.write_unsynced = true;
                self.dirty = true;
            }
            start = cut.end;
        }
        Ok(())
    }

    fn ensure_writer(&mut self) -> Result<(), Error> {
        if self.writer.is_some() {
            return Ok(());
        }
        let path = self.segment_path(self.write.segment);
        let mut options = OpenOptions::new();
        options.create(true).append(true);
        meta::private_mode(&mut options);
        let file = options.open(&path).ctx("open segment for writing", &path)?;
        let len = file.metadata().ctx("stat segment", &path)?.len();
        if len != self.write.offset {
            warn!(queue = %self.name, path = %path.display(), len, expected = self.write.offset,
                "segment size differs from the write position; resizing it");
            file.set_len(self.write.offset)
                .ctx("truncate segment", &path)?;
        }
        if len == 0 {
            self.dir_unsynced = true;
        }
        self.writer = Some(file);
        Ok(())
    }

    /// Seals the write segment (durably) and moves writing to the next segment number.
    fn roll(&mut self) -> Result<(), Error> {
        if let Some(file) = self.writer.take()
            && self.write_unsynced
        {
            let path = self.segment_path(self.write.segment);
            file.sync_data().ctx("fsync segment", &path)?;
        }
        self.write_unsynced = false;
        self.write = Position::new(self.write.segment + 1, 0);
        self.force_sync = true;
        self.dirty = true;
        Ok(())
    }

    /// Moves the reader to the start of the next segment; the finished one is deleted at the next
    /// sync if `delete`.
    fn leave_read_segment(&mut self, delete: bool) {
        self.reader = None;
        if delete {
            if self.options.retain_until_released {
                self.awaiting_commit.push(self.read.segment);
            } else {
                self.pending_deletes.push(self.read.segment);
            }
        }
        self.read = Position::new(self.read.segment + 1, 0);
        self.force_sync = true;
        self.dirty = true;
    }

    fn caught_up(&mut self) {
        if self.depth != 0 {
            warn!(queue = %self.name, depth = self.depth,
                "reader caught up with writer but depth was not 0; resetting it");
            self.depth = 0;
            self.dirty = true;
        }
    }

    /// Recovery, steps 1–6 of the crate docs.
    fn recover(&mut self) -> Result<(), Error> {
        let segments = segment::list_segments(&self.dir, &self.name)?;
        let meta_path = segment::meta_path(&self.dir, &self.name);
        let persisted = match meta::load(&meta_path)? {
            Loaded::Valid(meta) => Some(meta),
            Loaded::Missing => {
                if !segments.is_empty() {
                    warn!(queue = %self.name, "metadata missing; rescanning all segments (records may be replayed)");
                }
                None
            }
            Loaded::Corrupt(reason) => {
                warn!(queue = %self.name, path = %meta_path.display(), reason,
                    "metadata unreadable; rescanning all segments (records may be replayed)");
                None
            }
        };
        let first = Position::new(segments.first().copied().unwrap_or(0), 0);
        let (mut read, scan_from, mut depth) = match persisted {
            Some(meta) if self.consistent(&meta, &segments)? => (meta.read, meta.write, meta.depth),
            Some(meta) => {
                warn!(queue = %self.name, read = %meta.read, write = %meta.write,
                    "metadata does not match the segments on disk; rescanning from the read position");
                let start = if meta.read <= meta.write {
                    meta.read
                } else {
                    first
                };
                let start = self.clamp_to_existing(start, &segments)?;
                (start, start, 0)
            }
            None => (first, first, 0),
        };

        let mut to_scan: Vec<u64> = segments
            .iter()
            .copied()
            .filter(|&number| number >= scan_from.segment)
            .collect();
        if to_scan.first() != Some(&scan_from.segment) {
            // The scan start's own file is missing; only a 0 offset makes sense there.
            to_scan.insert(0, scan_from.segment);
        }
        let mut write = scan_from;
        let mut changed = false;
        let last = to_scan.last().copied();
        for number in to_scan {
            let from = if number == scan_from.segment {
                scan_from.offset
            } else {
                0
            };
            let path = self.segment_path(number);
            let scan = segment::scan(&path, from)?;
            let found = scan.valid + scan.damaged + scan.trailing_damaged;
            if Some(number) == last {
                depth += scan.valid + scan.damaged;
                if scan.trailing_damaged > 0 {
                    warn!(queue = %self.name, path = %path.display(), from = scan.valid_end, to = scan.file_len,
                        regions = scan.trailing_damaged, "truncating a torn or damaged tail");
                    self.corrupt_records += scan.trailing_damaged;
                    let file = OpenOptions::new()
                        .write(true)
                        .open(&path)
                        .ctx("open segment for truncation", &path)?;
                    file.set_len(scan.valid_end)
                        .ctx("truncate segment", &path)?;
                    file.sync_all().ctx("fsync segment", &path)?;
                    changed = true;
                } else if found > 0 {
                    sync_file(&path)?;
                }
                write = Position::new(number, scan.valid_end);
                if scan.file_len == 0 && scan.valid_end > 0 {
                    // Missing file with a non-zero offset: start a fresh segment number instead.
                    write = Position::new(number + 1, 0);
                }
            } else {
                depth += found;
                if found > 0 {
                    sync_file(&path)?;
                }
            }
            if found > 0 {
                debug!(queue = %self.name, segment = number, valid = scan.valid, "recovered records past the metadata");
            }
        }

        if read > write {
            read = write;
        }
        if read.segment < write.segment && segments.binary_search(&read.segment).is_err() {
            read = segments
                .iter()
                .copied()
                .find(|&number| number > read.segment && number <= write.segment)
                .map_or(write, |number| Position::new(number, 0));
        }
        if read == write && depth != 0 {
            warn!(queue = %self.name, depth, "nothing left to read but depth was not 0; resetting it");
            depth = 0;
        }
        for &stale in segments.iter().filter(|&&number| number < read.segment) {
            debug!(queue = %self.name, segment = stale, "removing a segment that was already read");
            segment::remove_if_exists(&self.segment_path(stale))?;
        }

        self.read = read;
        self.write = write;
        self.depth = depth;
        let recovered = Meta { depth, read, write };
        self.dirty = match persisted {
            Some(meta) => meta != recovered || changed,
            None => !segments.is_empty(),
        };
        if self.dirty {
            self.force_sync = true;
            self.sync()?;
        }
        Ok(())
    }

    /// Step 2 of recovery: does the metadata describe the files that exist?
    fn consistent(&self, meta: &Meta, segments: &[u64]) -> Result<bool, Error> {
        let exists = |number: u64| segments.binary_search(&number).is_ok();
        if meta.read > meta.write {
            return Ok(false);
        }
        if meta.read.segment < meta.write.segment {
            if !exists(meta.read.segment) || self.file_len(meta.read.segment)? < meta.read.offset {
                return Ok(false);
            }
            let between = segments
                .iter()
                .filter(|&&number| number > meta.read.segment && number < meta.write.segment)
                .count() as u64;
            if between != meta.write.segment - meta.read.segment - 1 {
                return Ok(false);
            }
        }
        if meta.write.offset > 0
            && (!exists(meta.write.segment)
                || self.file_len(meta.write.segment)? < meta.write.offset)
        {
            return Ok(false);
        }
        Ok(true)
    }

    /// `position` moved onto data that exists: into the next existing segment if its own is gone,
    /// and no further than the end of its file.
    fn clamp_to_existing(&self, position: Position, segments: &[u64]) -> Result<Position, Error> {
        if segments.binary_search(&position.segment).is_ok() {
            let len = self.file_len(position.segment)?;
            return Ok(Position::new(position.segment, position.offset.min(len)));
        }
        Ok(segments
            .iter()
            .copied()
            .find(|&number| number > position.segment)
            .map_or(position, |number| Position::new(number, 0)))
    }

    fn file_len(&self, number: u64) -> Result<u64, Error> {
        let path = self.segment_path(number);
        Ok(fs::metadata(&path).ctx("stat segment", &path)?.len())
    }
}

/// fdatasync a segment found during recovery: its records were perhaps only in the page cache.
fn sync_file(path: &Path) -> Result<(), Error> {
    OpenOptions::new()
        .write(true)
        .open(path)
        .and_then(|file| file.sync_data())
        .ctx("fsync segment", path)
}
