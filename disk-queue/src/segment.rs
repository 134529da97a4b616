//! Segment files: names, listing, and a buffered reader that slices records out of large reads and
//! resynchronises after damage.

use std::cmp;
use std::fs::{self, File};
use std::io::{self, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use bytes::{Buf, Bytes, BytesMut};

use crate::error::{Error, IoContext};
use crate::record::{self, Header, MAGIC, RECORD_HEADER_LEN};

/// Infix of our files. Upstream go-diskqueue uses `.diskqueue.`, so the two never collide.
pub(crate) const INFIX: &str = ".diskqueue2.";

/// Bytes asked of the kernel per read while draining a backlog. Records are sliced out of this
/// buffer without copying, so one live record keeps at most this much memory alive.
pub(crate) const READ_CHUNK: usize = 64 * 1024;

/// `<name>.diskqueue2.<NNNNNN>.dat`; more digits once the number passes 999999.
pub(crate) fn segment_path(dir: &Path, name: &str, segment: u64) -> PathBuf {
    dir.join(format!("{name}{INFIX}{segment:06}.dat"))
}

/// `<name>.diskqueue2.meta.dat`.
pub(crate) fn meta_path(dir: &Path, name: &str) -> PathBuf {
    dir.join(format!("{name}{INFIX}meta.dat"))
}

/// `<name>.diskqueue2.meta.dat.tmp`; one writer per queue, so a fixed name is enough.
pub(crate) fn meta_tmp_path(dir: &Path, name: &str) -> PathBuf {
    dir.join(format!("{name}{INFIX}meta.dat.tmp"))
}

/// The numbers of the files in `dir` named `<prefix><digits><suffix>`, sorted.
pub(crate) fn list_numbered(dir: &Path, prefix: &str, suffix: &str) -> Result<Vec<u64>, Error> {
    let mut numbers = Vec::new();
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(numbers),
        Err(err) => return Err(Error::io("list directory", dir, err)),
    };
    for entry in entries {
        let entry = entry.ctx("list directory", dir)?;
        let file_name = entry.file_name();
        if let Some(number) = file_name
            .to_str()
            .and_then(|file_name| parse_numbered(file_name, prefix, suffix))
        {
            numbers.push(number);
        }
    }
    numbers.sort_unstable();
    Ok(numbers)
}

/// Our segment numbers for queue `name`.
pub(crate) fn list_segments(dir: &Path, name: &str) -> Result<Vec<u64>, Error> {
    list_numbered(dir, &format!("{name}{INFIX}"), ".dat")
}

fn parse_numbered(file_name: &str, prefix: &str, suffix: &str) -> Option<u64> {
    let digits = file_name.strip_prefix(prefix)?.strip_suffix(suffix)?;
    if digits.is_empty() || !digits.bytes().all(|byte| byte.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// Removes `path`; a file that is already gone is fine.
pub(crate) fn remove_if_exists(path: &Path) -> Result<(), Error> {
    match fs::remove_file(path) {
        Err(err) if err.kind() != io::ErrorKind::NotFound => Err(Error::io("remove", path, err)),
        _ => Ok(()),
    }
}

/// What the reader found next.
#[derive(Debug)]
pub(crate) enum Step {
    /// A record whose checksums match.
    Record(Bytes),
    /// Bytes `start..end` hold no valid record: one damaged record, a run of garbage, or a torn tail.
    Damaged { start: u64, end: u64 },
    /// The read position reached the limit.
    End,
}

/// Reads records from one segment file, up to a limit the caller supplies on every call (the
/// writer's offset may grow between calls).
///
/// Invariant: `buf` holds the file's bytes `pos..pos + buf.len()`, and never bytes at or beyond
/// the limit in force when they were read. Bytes below the writer's offset never change, so the
/// buffer stays valid while the writer appends.
#[derive(Debug)]
pub(crate) struct SegmentReader {
    file: File,
    path: PathBuf,
    pos: u64,
    file_pos: u64,
    buf: BytesMut,
}

impl SegmentReader {
    /// Opens `path` for reading at `pos`; `None` if the file does not exist.
    pub(crate) fn open(path: &Path, pos: u64) -> Result<Option<Self>, Error> {
        let file = match File::open(path) {
            Ok(file) => file,
            Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(err) => return Err(Error::io("open segment", path, err)),
        };
        Ok(Some(Self {
            file,
            path: path.to_path_buf(),
            pos,
            file_pos: 0,
            buf: BytesMut::new(),
        }))
    }

    /// Offset of the next unread byte.
    pub(crate) fn position(&self) -> u64 {
        self.pos
    }

    /// Current size of the file.
    pub(crate) fn file_len(&self) -> Result<u64, Error> {
        Ok(self.file.metadata().ctx("stat segment", &self.path)?.len())
    }

    /// The next record, damaged region or end, never reading at or past `limit`.
    pub(crate) fn next(&mut self, limit: u64) -> Result<Step, Error> {
        if self.pos >= limit {
            return Ok(Step::End);
        }
        if !self.fill(RECORD_HEADER_LEN, limit)? {
            return Ok(self.damaged_to(self.pos, limit));
        }
        if let Some(header) = Header::decode(&self.buf) {
            let record_len = header.record_len();
            if self.pos + record_len <= limit {
                // Fits in `usize`: it is at most `limit - pos`, and bytes up to there fit in memory.
                let record_len = usize::try_from(record_len).unwrap_or(usize::MAX);
                if !self.fill(record_len, limit)? {
                    return Ok(self.damaged_to(self.pos, limit));
                }
                let start = self.pos;
                if crc32fast::hash(&self.buf[RECORD_HEADER_LEN..record_len]) == header.payload_crc {
                    let mut record = self.buf.split_to(record_len);
                    record.advance(RECORD_HEADER_LEN);
                    self.pos += record_len as u64;
                    return Ok(Step::Record(record.freeze()));
                }
                // The header checksum vouches for the length, so exactly this record is skipped.
                self.consume(record_len);
                return Ok(Step::Damaged {
                    start,
                    end: self.pos,
                });
            }
        }
        self.resync(limit)
    }

    /// Skips to the next offset below `limit` that holds a valid header whose record also ends
    /// before `limit`, or to `limit`. Reports the skipped bytes as one damaged region.
    fn resync(&mut self, limit: u64) -> Result<Step, Error> {
        let start = self.pos;
        let mut from = 1;
        loop {
            if let Some(relative) = record::find_magic(&self.buf[from.min(self.buf.len())..]) {
                let at = from + relative;
                if !self.fill(at + RECORD_HEADER_LEN, limit)? {
                    return Ok(self.damaged_to(start, limit));
                }
                if let Some(header) = Header::decode(&self.buf[at..])
                    && self.pos + at as u64 + header.record_len() <= limit
                {
                    self.consume(at);
                    return Ok(Step::Damaged {
                        start,
                        end: self.pos,
                    });
                }
                from = at + 1;
                continue;
            }
            // The last MAGIC.len() - 1 bytes may be the start of a marker the next read completes.
            let len = self.buf.len();
            let discard = cmp::max(from, len.saturating_sub(MAGIC.len() - 1)).min(len);
            self.consume(discard);
            from = 0;
            if !self.fill(self.buf.len() + 1, limit)? {
                return Ok(self.damaged_to(start, limit));
            }
        }
    }

    /// Gives up on everything up to `limit`: reports `start..limit` as damaged.
    fn damaged_to(&mut self, start: u64, limit: u64) -> Step {
        self.buf.clear();
        self.pos = limit;
        Step::Damaged { start, end: limit }
    }

    fn consume(&mut self, n: usize) {
        self.buf.advance(n);
        self.pos += n as u64;
    }

    /// Reads until `buf` holds at least `need` bytes. `false` if `limit` or the end of the file
    /// comes first.
    fn fill(&mut self, need: usize, limit: u64) -> Result<bool, Error> {
        while self.buf.len() < need {
            let buffered_end = self.pos + self.buf.len() as u64;
            if buffered_end >= limit {
                return Ok(false);
            }
            let wanted = cmp::max(READ_CHUNK, need - self.buf.len());
            let room =
                usize::try_from(limit - buffered_end).map_or(wanted, |left| left.min(wanted));
            if self.file_pos != buffered_end {
                self.file
                    .seek(SeekFrom::Start(buffered_end))
                    .ctx("seek segment", &self.path)?;
                self.file_pos = buffered_end;
            }
            let old_len = self.buf.len();
            if self.buf.capacity() - old_len < room {
                // A fresh buffer sized to what is there to read: a reader that follows the writer
                // record by record must not pin a whole chunk per record it hands out.
                let mut fresh = BytesMut::with_capacity(old_len + room);
                fresh.extend_from_slice(&self.buf);
                self.buf = fresh;
            }
            self.buf.resize(old_len + room, 0);
            let read = loop {
                match self.file.read(&mut self.buf[old_len..]) {
                    Ok(read) => break read,
                    Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                    Err(err) => {
                        self.buf.truncate(old_len);
                        return Err(Error::io("read segment", &self.path, err));
                    }
                }
            };
            self.buf.truncate(old_len + read);
            self.file_pos += read as u64;
            if read == 0 {
                return Ok(false);
            }
        }
        Ok(true)
    }
}

/// What a recovery scan of one segment found.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Scan {
    /// Valid records.
    pub(crate) valid: u64,
    /// Damaged regions followed by at least one valid record.
    pub(crate) damaged: u64,
    /// Damaged regions after the last valid record.
    pub(crate) trailing_damaged: u64,
    /// End of the last valid record (or the start offset if there is none).
    pub(crate) valid_end: u64,
    /// Size of the file.
    pub(crate) file_len: u64,
}

/// Reads `path` from `from` to its end and classifies what is there. A missing file scans as empty.
pub(crate) fn scan(path: &Path, from: u64) -> Result<Scan, Error> {
    let Some(mut reader) = SegmentReader::open(path, from)? else {
        return Ok(Scan {
            valid_end: from,
            ..Scan::default()
        });
    };
    let file_len = reader.file_len()?;
    let mut result = Scan {
        valid_end: from,
        file_len,
        ..Scan::default()
    };
    loop {
        match reader.next(file_len)? {
            Step::Record(_) => {
                result.valid += 1;
                result.damaged += result.trailing_damaged;
                result.trailing_damaged = 0;
                result.valid_end = reader.position();
            }
            Step::Damaged { .. } => result.trailing_damaged += 1,
            Step::End => return Ok(result),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::encode_into;

    fn write_records(path: &Path, payloads: &[&[u8]]) -> Vec<u64> {
        let mut buf = Vec::new();
        let mut starts = Vec::new();
        for payload in payloads {
            starts.push(buf.len() as u64);
            encode_into(&mut buf, payload);
        }
        fs::write(path, &buf).unwrap();
        starts
    }

    fn read_all(path: &Path, from: u64, limit: u64) -> Vec<Result<Vec<u8>, (u64, u64)>> {
        let mut reader = SegmentReader::open(path, from).unwrap().unwrap();
        let mut out = Vec::new();
        loop {
            match reader.next(limit).unwrap() {
                Step::Record(bytes) => out.push(Ok(bytes.to_vec())),
                Step::Damaged { start, end } => out.push(Err((start, end))),
                Step::End => return out,
            }
        }
    }

    #[test]
    fn file_names_do_not_collide_with_upstream_or_other_queues() {
        let dir = tempfile::tempdir().unwrap();
        for file_name in [
            "orders.diskqueue2.000000.dat",
            "orders.diskqueue2.1000000.dat",
            "orders.diskqueue2.meta.dat",
            "orders.diskqueue2.meta.dat.tmp",
            "orders.diskqueue.000002.dat",
            "orders.diskqueue.meta.dat",
            "orders:billing.diskqueue2.000003.dat",
            "orders.diskqueue2.diskqueue2.000004.dat",
            "orders.diskqueue2.000005.dat.bad",
            "orders.diskqueue2..dat",
        ] {
            fs::write(dir.path().join(file_name), b"").unwrap();
        }
        assert_eq!(
            list_segments(dir.path(), "orders").unwrap(),
            vec![0, 1_000_000]
        );
        assert_eq!(
            list_segments(dir.path(), "orders:billing").unwrap(),
            vec![3]
        );
        assert_eq!(
            list_segments(dir.path(), "orders.diskqueue2").unwrap(),
            vec![4]
        );
        assert_eq!(
            segment_path(Path::new("/d"), "t:c", 7),
            Path::new("/d/t:c.diskqueue2.000007.dat")
        );
        assert_eq!(
            segment_path(Path::new("/d"), "t", 1_234_567),
            Path::new("/d/t.diskqueue2.1234567.dat")
        );
    }

    #[test]
    fn listing_a_missing_directory_is_empty() {
        let dir = tempfile::tempdir().unwrap();
        assert!(
            list_segments(&dir.path().join("nope"), "q")
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn reads_records_and_stops_at_the_limit() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s");
        let starts = write_records(&path, &[b"a", b"bb", b"ccc"]);
        let len = fs::metadata(&path).unwrap().len();
        assert_eq!(
            read_all(&path, 0, len),
            vec![Ok(b"a".to_vec()), Ok(b"bb".to_vec()), Ok(b"ccc".to_vec())]
        );
        assert_eq!(
            read_all(&path, starts[1], starts[2]),
            vec![Ok(b"bb".to_vec())]
        );
        // A file that ends before the limit: the missing bytes are one damaged region.
        assert_eq!(
            read_all(&path, starts[2], len + 10),
            vec![Ok(b"ccc".to_vec()), Err((len, len + 10))]
        );
    }

    #[test]
    fn damaged_header_resyncs_to_the_next_record() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s");
        let starts = write_records(&path, &[b"first", b"second", b"third"]);
        let mut bytes = fs::read(&path).unwrap();
        bytes[starts[1] as usize + 5] ^= 0xff;
        fs::write(&path, &bytes).unwrap();
        assert_eq!(
            read_all(&path, 0, bytes.len() as u64),
            vec![
                Ok(b"first".to_vec()),
                Err((starts[1], starts[2])),
                Ok(b"third".to_vec())
            ]
        );
    }

    #[test]
    fn resync_works_across_read_chunks() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s");
        let big = vec![7u8; READ_CHUNK * 2 + 3];
        let starts = write_records(&path, &[&big, b"after"]);
        let mut bytes = fs::read(&path).unwrap();
        bytes[1] ^= 0x01;
        fs::write(&path, &bytes).unwrap();
        assert_eq!(
            read_all(&path, 0, bytes.len() as u64),
            vec![Err((0, starts[1])), Ok(b"after".to_vec())]
        );
    }

    #[test]
    fn scan_separates_trailing_damage() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s");
        let starts = write_records(&path, &[b"one", b"two", b"three", b"four"]);
        let mut bytes = fs::read(&path).unwrap();
        bytes[starts[1] as usize + RECORD_HEADER_LEN] ^= 1;
        bytes.truncate(bytes.len() - 2);
        fs::write(&path, &bytes).unwrap();
        let scan = scan(&path, 0).unwrap();
        assert_eq!(
            scan,
            Scan {
                valid: 2,
                damaged: 1,
                trailing_damaged: 1,
                valid_end: starts[3],
                file_len: bytes.len() as u64,
            }
        );
    }

    #[test]
    fn scan_of_missing_file_is_empty() {
        let dir = tempfile::tempdir().unwrap();
        let scan = scan(&dir.path().join("missing"), 42).unwrap();
        assert_eq!(scan.valid_end, 42);
        assert_eq!(scan.valid + scan.damaged + scan.trailing_damaged, 0);
    }
}
