//! One record on disk: a 16-byte header, then the payload.
//!
//! ```text
//! offset  size  field
//!      0     4  magic  93 4E 53 51 ("\x93NSQ")
//!      4     4  payload length, u32 little-endian
//!      8     4  CRC-32 (IEEE) of the payload, u32 little-endian
//!     12     4  CRC-32 (IEEE) of bytes 0..12, u32 little-endian
//!     16     n  payload
//! ```
//!
//! The header checksum is what makes resynchronisation possible: after damage a scan looks for the
//! next offset holding the magic *and* a header whose checksum matches, so a corrupted length never
//! decides where the next record starts.

/// Size of the fixed header in front of every payload.
pub const RECORD_HEADER_LEN: usize = 16;

/// The first bytes of every record. `0x93` is not ASCII, which keeps the marker rare in text payloads.
pub(crate) const MAGIC: [u8; 4] = [0x93, b'N', b'S', b'Q'];

/// A decoded, checksum-verified header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Header {
    pub(crate) payload_len: u32,
    pub(crate) payload_crc: u32,
}

impl Header {
    /// Parses `bytes[..RECORD_HEADER_LEN]`; `None` unless the magic and the header checksum match.
    pub(crate) fn decode(bytes: &[u8]) -> Option<Self> {
        let header: &[u8; RECORD_HEADER_LEN] = bytes.get(..RECORD_HEADER_LEN)?.try_into().ok()?;
        if header[0..4] != MAGIC {
            return None;
        }
        let field = |at: usize| {
            u32::from_le_bytes([header[at], header[at + 1], header[at + 2], header[at + 3]])
        };
        if crc32fast::hash(&header[0..12]) != field(12) {
            return None;
        }
        Some(Self {
            payload_len: field(4),
            payload_crc: field(8),
        })
    }

    /// Header plus payload, in bytes.
    pub(crate) fn record_len(self) -> u64 {
        RECORD_HEADER_LEN as u64 + u64::from(self.payload_len)
    }
}

/// Size on disk of a record with a `payload_len`-byte payload.
pub(crate) fn record_len(payload_len: usize) -> u64 {
    RECORD_HEADER_LEN as u64 + payload_len as u64
}

/// Appends one encoded record to `buf`. The caller has checked that the payload fits a `u32`.
pub(crate) fn encode_into(buf: &mut Vec<u8>, payload: &[u8]) {
    let payload_len = u32::try_from(payload.len()).unwrap_or(u32::MAX);
    let mut header = [0u8; RECORD_HEADER_LEN];
    header[0..4].copy_from_slice(&MAGIC);
    header[4..8].copy_from_slice(&payload_len.to_le_bytes());
    header[8..12].copy_from_slice(&crc32fast::hash(payload).to_le_bytes());
    let header_crc = crc32fast::hash(&header[0..12]);
    header[12..16].copy_from_slice(&header_crc.to_le_bytes());
    buf.extend_from_slice(&header);
    buf.extend_from_slice(payload);
}

/// Position of the first magic marker in `haystack`. Only used after damage, so a plain scan is fine.
pub(crate) fn find_magic(haystack: &[u8]) -> Option<usize> {
    haystack
        .windows(MAGIC.len())
        .position(|window| window == MAGIC)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encoded(payload: &[u8]) -> Vec<u8> {
        let mut buf = Vec::new();
        encode_into(&mut buf, payload);
        buf
    }

    #[test]
    fn header_round_trips() {
        let buf = encoded(b"hello");
        assert_eq!(buf.len(), RECORD_HEADER_LEN + 5);
        let header = Header::decode(&buf).expect("valid header");
        assert_eq!(header.payload_len, 5);
        assert_eq!(header.payload_crc, crc32fast::hash(b"hello"));
        assert_eq!(header.record_len(), 21);
        assert_eq!(&buf[RECORD_HEADER_LEN..], b"hello");
    }

    #[test]
    fn every_single_bit_flip_in_the_header_is_detected() {
        let buf = encoded(b"payload");
        for byte in 0..RECORD_HEADER_LEN {
            for bit in 0..8 {
                let mut damaged = buf.clone();
                damaged[byte] ^= 1 << bit;
                assert_eq!(Header::decode(&damaged), None, "byte {byte} bit {bit}");
            }
        }
    }

    #[test]
    fn short_input_is_not_a_header() {
        let buf = encoded(b"");
        assert!(Header::decode(&buf).is_some());
        assert_eq!(Header::decode(&buf[..RECORD_HEADER_LEN - 1]), None);
    }

    #[test]
    fn find_magic_finds_the_first_marker() {
        let mut haystack = vec![0u8, 1, 2];
        haystack.extend_from_slice(&encoded(b"x"));
        assert_eq!(find_magic(&haystack), Some(3));
        assert_eq!(find_magic(&haystack[4..]), None);
        assert_eq!(find_magic(&[]), None);
    }
}
