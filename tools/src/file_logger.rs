//! `nsq_to_file`'s output files, as upstream's `FileLogger` names, rotates and syncs them.
//!
//! * The name comes from `--filename-format` (default `<TOPIC>.<HOST><REV>.<DATETIME>.log`):
//!   `<TOPIC>`, `<HOST>` (the short hostname), `<PID>` are fixed at start, `<DATETIME>` is the
//!   local time in `--datetime-format` (strftime, default `%Y-%m-%d_%H`) whenever a file is
//!   opened, and `<REV>` is `-000000`, `-000001`, … With gzip or rotation `<REV>` is required
//!   (and `.gz` is appended for gzip); otherwise it is removed.
//! * A file is (re)opened when none is open, when the name's `<DATETIME>` part changes, when it
//!   is older than `--rotate-interval`, or bigger than `--rotate-size` (bytes written, before
//!   compression). The same name again bumps `<REV>`; an existing file is skipped when it is
//!   opened exclusively (gzip, rotate-interval) or already too big; otherwise it is appended to.
//! * [`FileLogger::sync`] flushes and fsyncs; with gzip it first ends the current gzip member, so
//!   the file is a valid multi-member gzip stream after every sync (as upstream's).

use crate::ToolsError;
use chrono::{DateTime, Local};
use flate2::Compression;
use flate2::write::GzEncoder;
use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Upstream's default `--filename-format`.
pub const DEFAULT_FILENAME_FORMAT: &str = "<TOPIC>.<HOST><REV>.<DATETIME>.log";
/// Upstream's default `--datetime-format`.
pub const DEFAULT_DATETIME_FORMAT: &str = "%Y-%m-%d_%H";

/// How output files are named and rotated.
#[derive(Debug, Clone)]
pub struct FileLoggerSettings {
    /// Directory the files go to (created as needed).
    pub output_dir: PathBuf,
    /// `--filename-format`.
    pub filename_format: String,
    /// `--datetime-format`.
    pub datetime_format: String,
    /// `Some(level)` (1-9) to gzip.
    pub gzip_level: Option<u32>,
    /// Rotate once more than this many bytes were written (0: never).
    pub rotate_size: u64,
    /// Rotate when the file is older than this (zero: never).
    pub rotate_interval: Duration,
}

/// The filename template for one topic: `<TOPIC>`, `<HOST>` and `<PID>` replaced, `<REV>`
/// checked or removed, `.gz` appended for gzip; `<DATETIME>` stays.
pub fn filename_template(
    settings: &FileLoggerSettings,
    topic: &str,
    hostname: &str,
    pid: u32,
) -> Result<String, ToolsError> {
    let mut template = settings.filename_format.clone();
    if settings.gzip_level.is_some()
        || settings.rotate_size > 0
        || !settings.rotate_interval.is_zero()
    {
        if !template.contains("<REV>") {
            return Err(ToolsError::Invalid(
                "missing <REV> in --filename-format when gzip or rotation enabled".to_owned(),
            ));
        }
    } else {
        template = template.replace("<REV>", "");
    }
    let short_hostname = hostname.split('.').next().unwrap_or_default();
    template = template
        .replace("<TOPIC>", topic)
        .replace("<HOST>", short_hostname)
        .replace("<PID>", &pid.to_string());
    if settings.gzip_level.is_some() && !template.ends_with(".gz") {
        template.push_str(".gz");
    }
    Ok(template)
}

/// strftime as upstream's go-strftime understands it: `%B %b %m %A %a %d %H %I %M %S %Y %y %p
/// %z %%`; any other `%x` is kept as it is.
pub fn strftime(format: &str, time: &DateTime<Local>) -> String {
    let mut out = String::with_capacity(format.len() + 8);
    let mut chars = format.chars().peekable();
    while let Some(ch) = chars.next() {
        if ch != '%' {
            out.push(ch);
            continue;
        }
        let Some(&code) = chars.peek() else {
            out.push('%');
            break;
        };
        let spec = match code {
            'B' | 'b' | 'm' | 'A' | 'a' | 'd' | 'H' | 'I' | 'M' | 'S' | 'Y' | 'y' | 'p' | 'z' => {
                Some(format!("%{code}"))
            }
            '%' => Some("%%".to_owned()),
            _ => None,
        };
        match spec {
            Some(spec) => {
                out.push_str(&time.format(&spec).to_string());
                chars.next();
            }
            None => out.push('%'),
        }
    }
    out
}

/// One topic's output file; see the module docs.
#[derive(Debug)]
pub struct FileLogger {
    settings: FileLoggerSettings,
    /// Log prefix, `topic/channel`.
    label: String,
    template: String,
    out: Option<OpenFile>,
    /// The current name with `<DATETIME>` replaced (`<REV>` not).
    filename: String,
    rev: u32,
    open_time: Instant,
    filesize: u64,
}

#[derive(Debug)]
struct OpenFile {
    path: PathBuf,
    output: Output,
}

#[derive(Debug)]
enum Output {
    Plain(BufWriter<File>),
    Gzip(GzEncoder<BufWriter<File>>),
}

impl FileLogger {
    /// A logger for `topic`, writing nothing until the first [`FileLogger::update_file`].
    pub fn new(
        settings: FileLoggerSettings,
        topic: &str,
        channel: &str,
        hostname: &str,
    ) -> Result<Self, ToolsError> {
        let template = filename_template(&settings, topic, hostname, std::process::id())?;
        Ok(Self {
            settings,
            label: format!("{topic}/{channel}"),
            template,
            out: None,
            filename: String::new(),
            rev: 0,
            open_time: Instant::now(),
            filesize: 0,
        })
    }

    /// The open file, if any.
    pub fn path(&self) -> Option<&Path> {
        self.out.as_ref().map(|out| out.path.as_path())
    }

    /// Whether the next write needs another file (none open, new `<DATETIME>`, too old, too big).
    pub fn needs_rotation(&self, now: &DateTime<Local>, instant: Instant) -> bool {
        let Some(out) = &self.out else {
            return true;
        };
        let filename = self.current_filename(now);
        if filename != self.filename {
            tracing::info!("[{}] new filename {filename}, rotating...", self.label);
            return true;
        }
        if !self.settings.rotate_interval.is_zero() {
            let age = instant.saturating_duration_since(self.open_time);
            if age > self.settings.rotate_interval {
                tracing::info!(
                    "[{}] {} since last open, rotating...",
                    self.label,
                    crate::format_duration(age)
                );
                return true;
            }
        }
        if self.settings.rotate_size > 0 && self.filesize > self.settings.rotate_size {
            tracing::info!(
                "[{}] {} currently {} bytes (> {}), rotating...",
                self.label,
                out.path.display(),
                self.filesize,
                self.settings.rotate_size
            );
            return true;
        }
        false
    }

    /// Closes the current file and opens the next one; returns its path.
    pub fn update_file(
        &mut self,
        now: &DateTime<Local>,
        instant: Instant,
    ) -> Result<PathBuf, ToolsError> {
        self.close()?;
        let filename = self.current_filename(now);
        if filename == self.filename {
            self.rev += 1;
        } else {
            self.rev = 0;
        }
        self.filename = filename;
        self.open_time = instant;
        let exclusive =
            self.settings.gzip_level.is_some() || !self.settings.rotate_interval.is_zero();
        loop {
            let name = self.filename.replace("<REV>", &format!("-{:06}", self.rev));
            let path = self.settings.output_dir.join(&name);
            if let Some(dir) = path.parent() {
                create_dir(dir)?;
            }
            let mut options = OpenOptions::new();
            options.write(true);
            if exclusive {
                options.create_new(true);
            } else {
                options.create(true).append(true);
            }
            let file = match options.open(&path) {
                Ok(file) => file,
                Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => {
                    tracing::warn!(
                        "[{}] working file already exists: {}",
                        self.label,
                        path.display()
                    );
                    self.rev += 1;
                    continue;
                }
                Err(source) => return Err(io_error(&path, source)),
            };
            tracing::info!("[{}] opening {}", self.label, path.display());
            self.filesize = file
                .metadata()
                .map_err(|source| io_error(&path, source))?
                .len();
            if self.settings.rotate_size > 0 && self.filesize > self.settings.rotate_size {
                tracing::info!(
                    "[{}] {} currently {} bytes (> {}), rotating...",
                    self.label,
                    path.display(),
                    self.filesize,
                    self.settings.rotate_size
                );
                self.rev += 1;
                continue;
            }
            let writer = BufWriter::with_capacity(64 * 1024, file);
            let output = match self.settings.gzip_level {
                Some(level) => Output::Gzip(GzEncoder::new(writer, Compression::new(level))),
                None => Output::Plain(writer),
            };
            self.out = Some(OpenFile {
                path: path.clone(),
                output,
            });
            return Ok(path);
        }
    }

    /// Appends `body` and a newline.
    pub fn write(&mut self, body: &[u8]) -> Result<(), ToolsError> {
        let Some(out) = &mut self.out else {
            return Err(ToolsError::Invalid("no output file open".to_owned()));
        };
        let result = match &mut out.output {
            Output::Plain(writer) => writer
                .write_all(body)
                .and_then(|()| writer.write_all(b"\n")),
            Output::Gzip(writer) => writer
                .write_all(body)
                .and_then(|()| writer.write_all(b"\n")),
        };
        result.map_err(|source| io_error(&out.path, source))?;
        self.filesize += body.len() as u64 + 1;
        Ok(())
    }

    /// Makes everything written so far durable: ends the gzip member (a new one starts), flushes
    /// and fsyncs.
    pub fn sync(&mut self) -> Result<(), ToolsError> {
        let Some(OpenFile { path, output }) = self.out.take() else {
            return Ok(());
        };
        let writer = finish(&path, output)?;
        let output = match self.settings.gzip_level {
            Some(level) => Output::Gzip(GzEncoder::new(writer, Compression::new(level))),
            None => Output::Plain(writer),
        };
        self.out = Some(OpenFile { path, output });
        Ok(())
    }

    /// Syncs and closes the current file, if any.
    pub fn close(&mut self) -> Result<(), ToolsError> {
        let Some(OpenFile { path, output }) = self.out.take() else {
            return Ok(());
        };
        finish(&path, output)?;
        tracing::info!("[{}] closing {}", self.label, path.display());
        Ok(())
    }

    fn current_filename(&self, now: &DateTime<Local>) -> String {
        self.template
            .replace("<DATETIME>", &strftime(&self.settings.datetime_format, now))
    }
}

/// Ends the gzip member (if any), flushes and fsyncs; returns the file's buffered writer.
fn finish(path: &Path, output: Output) -> Result<BufWriter<File>, ToolsError> {
    let mut writer = match output {
        Output::Plain(writer) => writer,
        Output::Gzip(encoder) => encoder.finish().map_err(|source| io_error(path, source))?,
    };
    writer.flush().map_err(|source| io_error(path, source))?;
    writer
        .get_ref()
        .sync_all()
        .map_err(|source| io_error(path, source))?;
    Ok(writer)
}

fn create_dir(dir: &Path) -> Result<(), ToolsError> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o770)
        .create(dir)
        .map_err(|source| io_error(dir, source))
}

fn io_error(path: &Path, source: std::io::Error) -> ToolsError {
    ToolsError::Io {
        path: path.display().to_string(),
        source,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use std::io::Read;

    fn settings(dir: &Path, format: &str) -> FileLoggerSettings {
        FileLoggerSettings {
            output_dir: dir.to_path_buf(),
            filename_format: format.to_owned(),
            datetime_format: DEFAULT_DATETIME_FORMAT.to_owned(),
            gzip_level: None,
            rotate_size: 0,
            rotate_interval: Duration::ZERO,
        }
    }

    fn at(hour: u32) -> DateTime<Local> {
        Local.with_ymd_and_hms(2024, 1, 2, hour, 4, 5).unwrap()
    }

    fn names(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|entry| entry.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn templates() {
        let dir = Path::new("/tmp");
        let plain = settings(dir, DEFAULT_FILENAME_FORMAT);
        assert_eq!(
            filename_template(&plain, "t", "box.example.com", 7).unwrap(),
            "t.box.<DATETIME>.log"
        );
        let gzip = FileLoggerSettings {
            gzip_level: Some(6),
            ..plain.clone()
        };
        assert_eq!(
            filename_template(&gzip, "t", "box", 7).unwrap(),
            "t.box<REV>.<DATETIME>.log.gz"
        );
        let no_rev = FileLoggerSettings {
            filename_format: "<TOPIC>.<PID>.log".to_owned(),
            rotate_size: 5,
            ..plain
        };
        assert!(filename_template(&no_rev, "t", "box", 7).is_err());
        let pid = FileLoggerSettings {
            rotate_size: 0,
            ..no_rev
        };
        assert_eq!(filename_template(&pid, "t", "box", 7).unwrap(), "t.7.log");
    }

    #[test]
    fn go_strftime() {
        let time = at(15);
        assert_eq!(strftime(DEFAULT_DATETIME_FORMAT, &time), "2024-01-02_15");
        assert_eq!(
            strftime("%y%b%I%p %M:%S %j %%", &time),
            "24Jan03PM 04:05 %j %"
        );
        assert_eq!(strftime("100%", &time), "100%");
    }

    #[test]
    fn rotates_by_size_and_datetime_and_appends_otherwise() {
        let dir = tempfile::tempdir().unwrap();
        let mut sized = settings(dir.path(), "<TOPIC><REV>.<DATETIME>.log");
        sized.rotate_size = 10;
        let mut logger = FileLogger::new(sized, "t", "c", "host").unwrap();
        let start = Instant::now();
        assert!(logger.needs_rotation(&at(1), start));
        let first = logger.update_file(&at(1), start).unwrap();
        assert!(first.ends_with("t-000000.2024-01-02_01.log"));
        logger.write(b"0123456789").unwrap();
        assert!(logger.needs_rotation(&at(1), start));
        let second = logger.update_file(&at(1), start).unwrap();
        assert!(second.ends_with("t-000001.2024-01-02_01.log"));
        logger.write(b"x").unwrap();
        assert!(!logger.needs_rotation(&at(1), start));
        assert!(logger.needs_rotation(&at(2), start));
        let third = logger.update_file(&at(2), start).unwrap();
        assert!(third.ends_with("t-000000.2024-01-02_02.log"));
        logger.write(b"y").unwrap();
        logger.close().unwrap();
        assert_eq!(std::fs::read(&first).unwrap(), b"0123456789\n");
        assert_eq!(std::fs::read(&second).unwrap(), b"x\n");
        assert_eq!(std::fs::read(&third).unwrap(), b"y\n");

        // Without rotation, <REV> is dropped and an existing file is appended to.
        let mut logger = FileLogger::new(
            settings(dir.path(), "<TOPIC>.<DATETIME>.log"),
            "t",
            "c",
            "host",
        )
        .unwrap();
        logger.update_file(&at(3), start).unwrap();
        logger.write(b"a").unwrap();
        logger.close().unwrap();
        logger.update_file(&at(3), start).unwrap();
        logger.write(b"b").unwrap();
        logger.sync().unwrap();
        let path = dir.path().join("t.2024-01-02_03.log");
        assert_eq!(std::fs::read(&path).unwrap(), b"a\nb\n");
        assert_eq!(names(dir.path()).len(), 4);
    }

    #[test]
    fn rotates_by_interval_into_new_files() {
        let dir = tempfile::tempdir().unwrap();
        let mut timed = settings(dir.path(), "<TOPIC><REV>.log");
        timed.rotate_interval = Duration::from_secs(60);
        // An earlier run's file is never reopened: files are created exclusively.
        std::fs::write(dir.path().join("t-000000.log"), b"old\n").unwrap();
        let mut logger = FileLogger::new(timed, "t", "c", "host").unwrap();
        let start = Instant::now();
        let first = logger.update_file(&at(1), start).unwrap();
        assert!(first.ends_with("t-000001.log"));
        logger.write(b"m1").unwrap();
        assert!(!logger.needs_rotation(&at(1), start + Duration::from_secs(60)));
        let later = start + Duration::from_secs(61);
        assert!(logger.needs_rotation(&at(1), later));
        let second = logger.update_file(&at(1), later).unwrap();
        assert!(second.ends_with("t-000002.log"));
        logger.close().unwrap();
        assert_eq!(std::fs::read(&first).unwrap(), b"m1\n");
        assert_eq!(
            names(dir.path()),
            ["t-000000.log", "t-000001.log", "t-000002.log"]
        );
    }

    #[test]
    fn gzip_members_end_at_every_sync() {
        let dir = tempfile::tempdir().unwrap();
        let mut gzip = settings(dir.path(), DEFAULT_FILENAME_FORMAT);
        gzip.gzip_level = Some(9);
        let mut logger = FileLogger::new(gzip, "t", "c", "host.x").unwrap();
        let path = logger.update_file(&at(4), Instant::now()).unwrap();
        assert!(path.ends_with("t.host-000000.2024-01-02_04.log.gz"));
        logger.write(b"one").unwrap();
        logger.sync().unwrap();
        // After a sync the file on disk is complete gzip.
        let mut text = String::new();
        flate2::read::MultiGzDecoder::new(File::open(&path).unwrap())
            .read_to_string(&mut text)
            .unwrap();
        assert_eq!(text, "one\n");
        logger.write(b"two").unwrap();
        logger.close().unwrap();
        let mut text = String::new();
        flate2::read::MultiGzDecoder::new(File::open(&path).unwrap())
            .read_to_string(&mut text)
            .unwrap();
        assert_eq!(text, "one\ntwo\n");
    }
}
