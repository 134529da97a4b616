//! The metadata file: read position, write position and depth, replaced atomically.
//!
//! ```text
//! offset  size  field
//!      0     8  magic "NSQDQ2MD"
//!      8     4  format version, u32 LE (1)
//!     12     8  depth, u64 LE
//!     20     8  read segment, u64 LE
//!     28     8  read offset, u64 LE
//!     36     8  write segment, u64 LE
//!     44     8  write offset, u64 LE
//!     52     4  CRC-32 (IEEE) of bytes 0..52, u32 LE
//! ```

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::Path;

use crate::Position;
use crate::error::{Error, IoContext};

const MAGIC: [u8; 8] = *b"NSQDQ2MD";
const VERSION: u32 = 1;
pub(crate) const META_LEN: usize = 56;

/// The persisted state of a queue.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Meta {
    pub(crate) depth: u64,
    pub(crate) read: Position,
    pub(crate) write: Position,
}

/// What was found at the metadata path.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Loaded {
    Missing,
    Corrupt(&'static str),
    Valid(Meta),
}

impl Meta {
    pub(crate) fn encode(&self) -> [u8; META_LEN] {
        let mut out = [0u8; META_LEN];
        out[0..8].copy_from_slice(&MAGIC);
        out[8..12].copy_from_slice(&VERSION.to_le_bytes());
        let fields = [
            self.depth,
            self.read.segment,
            self.read.offset,
            self.write.segment,
            self.write.offset,
        ];
        for (index, value) in fields.iter().enumerate() {
            let at = 12 + index * 8;
            out[at..at + 8].copy_from_slice(&value.to_le_bytes());
        }
        let crc = crc32fast::hash(&out[0..52]);
        out[52..56].copy_from_slice(&crc.to_le_bytes());
        out
    }

    pub(crate) fn decode(bytes: &[u8]) -> Result<Self, &'static str> {
        let bytes: &[u8; META_LEN] = bytes.try_into().map_err(|_| "wrong size")?;
        if bytes[0..8] != MAGIC {
            return Err("bad magic");
        }
        let crc = u32::from_le_bytes([bytes[52], bytes[53], bytes[54], bytes[55]]);
        if crc32fast::hash(&bytes[0..52]) != crc {
            return Err("checksum mismatch");
        }
        if u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) != VERSION {
            return Err("unknown version");
        }
        let field = |index: usize| {
            let at = 12 + index * 8;
            let mut value = [0u8; 8];
            value.copy_from_slice(&bytes[at..at + 8]);
            u64::from_le_bytes(value)
        };
        Ok(Self {
            depth: field(0),
            read: Position::new(field(1), field(2)),
            write: Position::new(field(3), field(4)),
        })
    }
}

/// Reads the metadata file; only I/O failures other than "not found" are errors.
pub(crate) fn load(path: &Path) -> Result<Loaded, Error> {
    match fs::read(path) {
        Ok(bytes) => Ok(match Meta::decode(&bytes) {
            Ok(meta) => Loaded::Valid(meta),
            Err(reason) => Loaded::Corrupt(reason),
        }),
        Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(Loaded::Missing),
        Err(err) => Err(Error::io("read metadata", path, err)),
    }
}

/// Writes `meta` to `tmp`, fsyncs it and renames it over `path`, so a reader of `path` sees either
/// the old or the new metadata, whole.
pub(crate) fn store(path: &Path, tmp: &Path, meta: &Meta) -> Result<(), Error> {
    let mut file = create_private(tmp).ctx("create metadata", tmp)?;
    file.write_all(&meta.encode()).ctx("write metadata", tmp)?;
    file.sync_all().ctx("fsync metadata", tmp)?;
    drop(file);
    fs::rename(tmp, path).ctx("rename metadata", path)
}

/// Creates or truncates a file readable only by its owner, as upstream does (mode 0600).
pub(crate) fn create_private(path: &Path) -> io::Result<File> {
    let mut options = OpenOptions::new();
    options.write(true).create(true).truncate(true);
    private_mode(&mut options);
    options.open(path)
}

/// Applies mode 0600 for newly created files where the platform has modes.
pub(crate) fn private_mode(options: &mut OpenOptions) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    #[cfg(not(unix))]
    let _ = options;
}

/// Makes creations, renames and removals in `dir` durable. A no-op where directories cannot be
/// opened as files.
pub(crate) fn sync_dir(dir: &Path) -> Result<(), Error> {
    #[cfg(unix)]
    {
        File::open(dir)
            .and_then(|handle| handle.sync_all())
            .ctx("fsync directory", dir)?;
    }
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Meta {
        Meta {
            depth: 178,
            read: Position::new(0, 2847),
            write: Position::new(7, u64::MAX - 1),
        }
    }

    #[test]
    fn round_trips() {
        assert_eq!(Meta::decode(&sample().encode()), Ok(sample()));
    }

    #[test]
    fn any_flipped_byte_is_rejected() {
        let encoded = sample().encode();
        for index in 0..META_LEN {
            let mut damaged = encoded;
            damaged[index] ^= 0x10;
            assert!(Meta::decode(&damaged).is_err(), "byte {index}");
        }
        assert_eq!(Meta::decode(&encoded[..10]), Err("wrong size"));
    }

    #[test]
    fn store_then_load() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m");
        let tmp = dir.path().join("m.tmp");
        assert_eq!(load(&path).unwrap(), Loaded::Missing);
        store(&path, &tmp, &sample()).unwrap();
        assert_eq!(load(&path).unwrap(), Loaded::Valid(sample()));
        assert!(!tmp.exists());
        fs::write(&path, b"garbage").unwrap();
        assert_eq!(load(&path).unwrap(), Loaded::Corrupt("wrong size"));
    }
}
