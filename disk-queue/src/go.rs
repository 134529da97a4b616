//! Reading the files upstream nsqd (go-diskqueue v1.1.0) leaves in its `--data-path`, so a node
//! can be swapped in place without losing its backlog (nsqd-behaviour.md §6.2–6.5, §6.8).
//!
//! Upstream layout for queue `<name>`:
//!
//! * data files `<name>.diskqueue.<NNNNNN>.dat`: records `[u32 BE length][payload]`, where the
//!   payload is an NSQ message (8-byte BE ns timestamp, 2-byte BE attempts, 16-byte ASCII id,
//!   body), so a valid length is at least [`GO_MIN_RECORD_SIZE`];
//! * metadata `<name>.diskqueue.meta.dat`: text `"<depth>\n<readFileNum>,<readPos>\n<writeFileNum>,<writePos>\n"`;
//! * `<file>.bad`: files upstream gave up on; they are never read and never removed here.
//!
//! [`GoDiskQueue::read_next`] yields payloads from `(readFileNum, readPos)` through every file up to
//! `writeFileNum`, reading that last file to its real end (upstream salvages an unsynced tail the
//! same way). Missing files are skipped. A record whose length is impossible ends its file, as
//! upstream's read error does: the rest of that file is counted in
//! [`GoDiskQueue::corrupt_files`] and reading moves on to the next file.

use std::fs::{self, File};
use std::io::{self, BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use bytes::Bytes;
use tracing::{debug, warn};

use crate::error::{Error, IoContext};
use crate::segment::{list_numbered, remove_if_exists};
use crate::validate_name;

/// Smallest valid upstream record payload: an NSQ message with an empty body.
pub const GO_MIN_RECORD_SIZE: u32 = 26;

/// The contents of an upstream `<name>.diskqueue.meta.dat`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GoMeta {
    /// Records between the read and write positions, as upstream counted them.
    pub depth: u64,
    /// File number of the next unread record.
    pub read_file_num: u64,
    /// Offset of the next unread record in that file.
    pub read_pos: u64,
    /// File number upstream was writing.
    pub write_file_num: u64,
    /// End of the last record upstream synced in that file.
    pub write_pos: u64,
}

impl GoMeta {
    fn parse(text: &str) -> Result<Self, String> {
        let mut lines = text.lines().map(str::trim);
        let mut next_line = |what: &str| lines.next().ok_or_else(|| format!("missing {what} line"));
        let number = |field: &str, what: &str| {
            field
                .trim()
                .parse::<u64>()
                .map_err(|err| format!("bad {what} {field:?}: {err}"))
        };
        let pair = |line: &str, what: &str| {
            let (file_num, pos) = line
                .split_once(',')
                .ok_or_else(|| format!("{what} line {line:?} is not <file>,<pos>"))?;
            Ok::<_, String>((number(file_num, what)?, number(pos, what)?))
        };
        let depth = number(next_line("depth")?, "depth")?;
        let (read_file_num, read_pos) = pair(next_line("read")?, "read")?;
        let (write_file_num, write_pos) = pair(next_line("write")?, "write")?;
        Ok(Self {
            depth,
            read_file_num,
            read_pos,
            write_file_num,
            write_pos,
        })
    }
}

/// Opens upstream queue `name` in `dir` for draining; `None` if it has no metadata file.
pub fn open_go_queue(dir: &Path, name: &str) -> Result<Option<GoDiskQueue>, Error> {
    validate_name(name)?;
    let meta_path = go_meta_path(dir, name);
    let text = match fs::read_to_string(&meta_path) {
        Ok(text) => text,
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(err) if err.kind() == io::ErrorKind::InvalidData => {
            return Err(Error::GoMeta {
                path: meta_path,
                reason: "not utf-8".to_owned(),
            });
        }
        Err(err) => return Err(Error::io("read go-diskqueue metadata", &meta_path, err)),
    };
    let meta = GoMeta::parse(&text).map_err(|reason| Error::GoMeta {
        path: meta_path.clone(),
        reason,
    })?;
    Ok(Some(GoDiskQueue {
        dir: dir.to_path_buf(),
        name: name.to_owned(),
        meta,
        next_file: meta.read_file_num,
        current: None,
        records_read: 0,
        corrupt_files: 0,
    }))
}

/// A one-way reader over an upstream queue's files. Reading changes nothing on disk.
#[derive(Debug)]
pub struct GoDiskQueue {
    dir: PathBuf,
    name: String,
    meta: GoMeta,
    /// The next file number to open once `current` is done.
    next_file: u64,
    current: Option<GoFile>,
    records_read: u64,
    corrupt_files: u64,
}

#[derive(Debug)]
struct GoFile {
    path: PathBuf,
    reader: BufReader<File>,
    pos: u64,
    len: u64,
}

impl GoDiskQueue {
    /// The metadata the queue was opened with.
    pub fn meta(&self) -> GoMeta {
        self.meta
    }

    /// Depth according to upstream's metadata.
    pub fn depth(&self) -> u64 {
        self.meta.depth
    }

    /// Records returned so far.
    pub fn records_read(&self) -> u64 {
        self.records_read
    }

    /// Files whose remainder was abandoned because of an impossible record.
    pub fn corrupt_files(&self) -> u64 {
        self.corrupt_files
    }

    /// The next record payload (an encoded NSQ message), or `None` when everything was read.
    pub fn read_next(&mut self) -> Result<Option<Bytes>, Error> {
        loop {
            let Some(file) = self.current.as_mut() else {
                if self.next_file > self.meta.write_file_num {
                    return Ok(None);
                }
                let number = self.next_file;
                self.next_file += 1;
                self.current = self.open_file(number)?;
                continue;
            };
            match file.next_record()? {
                FileStep::Record(payload) => {
                    self.records_read += 1;
                    return Ok(Some(payload));
                }
                FileStep::End => self.current = None,
                FileStep::Corrupt(reason) => {
                    warn!(queue = %self.name, path = %file.path.display(), pos = file.pos, reason,
                        "damaged go-diskqueue record; skipping the rest of the file");
                    self.corrupt_files += 1;
                    self.current = None;
                }
            }
        }
    }

    /// Deletes the upstream data files, metadata and leftover temporary metadata of this queue.
    /// `.bad` files stay, as upstream keeps them. Call after everything was imported.
    pub fn remove_files(self) -> Result<(), Error> {
        let prefix = format!("{}.diskqueue.", self.name);
        for number in list_numbered(&self.dir, &prefix, ".dat")? {
            remove_if_exists(&self.file_path(number))?;
        }
        let meta_path = go_meta_path(&self.dir, &self.name);
        let meta_file_name = format!("{prefix}meta.dat.");
        for entry in fs::read_dir(&self.dir).ctx("list directory", &self.dir)? {
            let entry = entry.ctx("list directory", &self.dir)?;
            let file_name = entry.file_name();
            let is_tmp = file_name.to_str().is_some_and(|file_name| {
                file_name.starts_with(&meta_file_name) && file_name.ends_with(".tmp")
            });
            if is_tmp {
                remove_if_exists(&entry.path())?;
            }
        }
        remove_if_exists(&meta_path)
    }

    fn file_path(&self, number: u64) -> PathBuf {
        self.dir
            .join(format!("{}.diskqueue.{number:06}.dat", self.name))
    }

    fn open_file(&self, number: u64) -> Result<Option<GoFile>, Error> {
        let path = self.file_path(number);
        let file = match File::open(&path) {
            Ok(file) => file,
            Err(err) if err.kind() == io::ErrorKind::NotFound => {
                debug!(queue = %self.name, path = %path.display(), "go-diskqueue file missing, skipping");
                return Ok(None);
            }
            Err(err) => return Err(Error::io("open go-diskqueue file", &path, err)),
        };
        let len = file.metadata().ctx("stat go-diskqueue file", &path)?.len();
        let pos = if number == self.meta.read_file_num {
            self.meta.read_pos
        } else {
            0
        };
        let mut reader = BufReader::with_capacity(64 * 1024, file);
        reader
            .seek(SeekFrom::Start(pos))
            .ctx("seek go-diskqueue file", &path)?;
        Ok(Some(GoFile {
            path,
            reader,
            pos,
            len,
        }))
    }
}

enum FileStep {
    Record(Bytes),
    End,
    Corrupt(&'static str),
}

impl GoFile {
    fn next_record(&mut self) -> Result<FileStep, Error> {
        if self.pos >= self.len {
            return Ok(FileStep::End);
        }
        if self.len - self.pos < 4 {
            return Ok(FileStep::Corrupt("truncated length"));
        }
        let mut length = [0u8; 4];
        self.reader
            .read_exact(&mut length)
            .ctx("read go-diskqueue file", &self.path)?;
        let length = u32::from_be_bytes(length);
        if length < GO_MIN_RECORD_SIZE {
            return Ok(FileStep::Corrupt("record length too small"));
        }
        if u64::from(length) > self.len - self.pos - 4 {
            return Ok(FileStep::Corrupt("record runs past the end of the file"));
        }
        let mut payload = vec![0u8; length as usize];
        self.reader
            .read_exact(&mut payload)
            .ctx("read go-diskqueue file", &self.path)?;
        self.pos += 4 + u64::from(length);
        Ok(FileStep::Record(Bytes::from(payload)))
    }
}

fn go_meta_path(dir: &Path, name: &str) -> PathBuf {
    dir.join(format!("{name}.diskqueue.meta.dat"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(timestamp: u64, body: &[u8]) -> Vec<u8> {
        let mut payload = timestamp.to_be_bytes().to_vec();
        payload.extend_from_slice(&0u16.to_be_bytes());
        payload.extend_from_slice(b"0123456789abcdef");
        payload.extend_from_slice(body);
        payload
    }

    fn go_file(messages: &[Vec<u8>]) -> Vec<u8> {
        let mut out = Vec::new();
        for payload in messages {
            out.extend_from_slice(&(payload.len() as u32).to_be_bytes());
            out.extend_from_slice(payload);
        }
        out
    }

    fn drain(queue: &mut GoDiskQueue) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        while let Some(payload) = queue.read_next().unwrap() {
            out.push(payload.to_vec());
        }
        out
    }

    #[test]
    fn parses_metadata() {
        assert_eq!(
            GoMeta::parse("8\n0,78\n1,196\n"),
            Ok(GoMeta {
                depth: 8,
                read_file_num: 0,
                read_pos: 78,
                write_file_num: 1,
                write_pos: 196,
            })
        );
        assert!(GoMeta::parse("8\n0,78\n").is_err());
        assert!(GoMeta::parse("x\n0,78\n1,2\n").is_err());
        assert!(GoMeta::parse("1\n0;78\n1,2\n").is_err());
        assert!(GoMeta::parse("-1\n0,78\n1,2\n").is_err());
    }

    #[test]
    fn no_metadata_means_no_queue() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("t.diskqueue.000000.dat"), b"").unwrap();
        assert!(open_go_queue(dir.path(), "t").unwrap().is_none());
        assert!(matches!(
            open_go_queue(dir.path(), "a:b:c"),
            Err(Error::InvalidName(_))
        ));
    }

    #[test]
    fn unparsable_metadata_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("t.diskqueue.meta.dat"), b"oops").unwrap();
        assert!(matches!(
            open_go_queue(dir.path(), "t"),
            Err(Error::GoMeta { .. })
        ));
    }

    #[test]
    fn reads_from_read_position_skips_missing_files_and_reads_past_write_pos() {
        let dir = tempfile::tempdir().unwrap();
        let m: Vec<Vec<u8>> = (0..6)
            .map(|index| message(index, format!("m{index}").as_bytes()))
            .collect();
        let file0 = go_file(&m[0..2]);
        let first_len = 4 + m[0].len() as u64;
        fs::write(dir.path().join("t.diskqueue.000000.dat"), &file0).unwrap();
        // File 1 is missing (already read upstream would have deleted it; here it is just gone).
        fs::write(dir.path().join("t.diskqueue.000002.dat"), go_file(&m[2..6])).unwrap();
        fs::write(dir.path().join("t.diskqueue.000003.dat"), go_file(&m[0..1])).unwrap();
        fs::write(dir.path().join("t.diskqueue.000002.dat.bad"), b"junk").unwrap();
        // writePos covers only m2: m3..m5 were written but not synced.
        let meta = format!("5\n0,{first_len}\n2,{}\n", 4 + m[2].len());
        fs::write(dir.path().join("t.diskqueue.meta.dat"), meta).unwrap();
        fs::write(dir.path().join("t.diskqueue.meta.dat.123.tmp"), b"x").unwrap();
        fs::write(dir.path().join("t:c.diskqueue.000000.dat"), b"other queue").unwrap();

        let mut queue = open_go_queue(dir.path(), "t").unwrap().unwrap();
        assert_eq!(queue.depth(), 5);
        assert_eq!(drain(&mut queue), m[1..6].to_vec());
        assert_eq!(queue.records_read(), 5);
        assert_eq!(queue.corrupt_files(), 0);
        queue.remove_files().unwrap();
        let mut left: Vec<String> = fs::read_dir(dir.path())
            .unwrap()
            .map(|entry| entry.unwrap().file_name().into_string().unwrap())
            .collect();
        left.sort();
        assert_eq!(
            left,
            ["t.diskqueue.000002.dat.bad", "t:c.diskqueue.000000.dat"]
        );
    }

    #[test]
    fn impossible_length_abandons_the_rest_of_that_file_only() {
        let dir = tempfile::tempdir().unwrap();
        let good = message(1, b"good");
        let mut file0 = go_file(std::slice::from_ref(&good));
        file0.extend_from_slice(&5u32.to_be_bytes());
        file0.extend_from_slice(&[0u8; 40]);
        fs::write(dir.path().join("t.diskqueue.000000.dat"), &file0).unwrap();
        let mut file1 = go_file(std::slice::from_ref(&good));
        file1.extend_from_slice(&1000u32.to_be_bytes());
        file1.extend_from_slice(&[0u8; 30]);
        fs::write(dir.path().join("t.diskqueue.000001.dat"), &file1).unwrap();
        let mut file2 = go_file(std::slice::from_ref(&good));
        file2.extend_from_slice(&[0u8, 0]);
        fs::write(dir.path().join("t.diskqueue.000002.dat"), &file2).unwrap();
        fs::write(dir.path().join("t.diskqueue.meta.dat"), "9\n0,0\n2,0\n").unwrap();
        let mut queue = open_go_queue(dir.path(), "t").unwrap().unwrap();
        assert_eq!(drain(&mut queue), vec![good.clone(), good.clone(), good]);
        assert_eq!(queue.corrupt_files(), 3);
    }
}
