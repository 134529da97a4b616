//! The crate's one error type.

use std::io;
use std::path::{Path, PathBuf};

/// Everything that can go wrong in a disk queue or while reading upstream files.
///
/// Damaged records are not errors: they are skipped and counted (see
/// [`DiskQueue::corrupt_records`](crate::DiskQueue::corrupt_records)).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file system call failed.
    #[error("disk queue: cannot {op} {}", path.display())]
    Io {
        /// What was being done, e.g. `"write segment"`.
        op: &'static str,
        /// The file or directory concerned.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// A record given to `put`/`put_batch` is smaller or larger than the options allow.
    #[error("disk queue: record of {size} bytes is outside the allowed {min}..={max} bytes")]
    RecordSize {
        /// Size of the rejected record.
        size: usize,
        /// [`Options::min_record_size`](crate::Options::min_record_size).
        min: u32,
        /// [`Options::max_record_size`](crate::Options::max_record_size).
        max: u32,
    },
    /// The queue name cannot be used to build file names.
    #[error("disk queue: invalid queue name {0:?}")]
    InvalidName(String),
    /// The options are inconsistent.
    #[error("disk queue: invalid options: {0}")]
    InvalidOptions(&'static str),
    /// An upstream `<name>.diskqueue.meta.dat` could not be parsed.
    #[error("go-diskqueue metadata {}: {reason}", path.display())]
    GoMeta {
        /// The metadata file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
}

impl Error {
    pub(crate) fn io(op: &'static str, path: &Path, source: io::Error) -> Self {
        Self::Io {
            op,
            path: path.to_path_buf(),
            source,
        }
    }
}

/// Shorthand for `map_err(|e| Error::io(op, path, e))`.
pub(crate) trait IoContext<T> {
    fn ctx(self, op: &'static str, path: &Path) -> Result<T, Error>;
}

impl<T> IoContext<T> for io::Result<T> {
    fn ctx(self, op: &'static str, path: &Path) -> Result<T, Error> {
        self.map_err(|source| Error::io(op, path, source))
    }
}
