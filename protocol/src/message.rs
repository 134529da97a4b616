//! Messages: ID, timestamp, attempts and body, in the layout shared by the message frame and the
//! disk queue record.
//!
//! ```text
//! offset 0   8 bytes  i64 BE   timestamp, ns since the Unix epoch, fixed at publish
//! offset 8   2 bytes  u16 BE   attempts (deliveries so far)
//! offset 10 16 bytes  ASCII    message ID (16 lower-case hex characters)
//! offset 26  N bytes           body
//! ```

use bytes::{BufMut, Bytes, BytesMut};
use std::fmt;

/// Length of the fixed part of an encoded message.
pub const MESSAGE_HEADER_LEN: usize = 8 + 2 + MESSAGE_ID_LEN;
/// Length of a message ID on the wire.
pub const MESSAGE_ID_LEN: usize = 16;

/// A 16-byte message ID. nsqd generates 16 lower-case hex digits; clients treat it as opaque.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MessageId(pub [u8; MESSAGE_ID_LEN]);

impl MessageId {
    /// The ID whose hex spelling is `value` (how nsqd builds IDs from its 64-bit generator).
    pub fn from_u64(value: u64) -> Self {
        let mut id = [0u8; MESSAGE_ID_LEN];
        // A 16-byte buffer always fits the 8-byte value's hex form.
        let _ = hex::encode_to_slice(value.to_be_bytes(), &mut id);
        Self(id)
    }

    /// The 64-bit value of a hex ID, or `None` if the bytes are not hex.
    pub fn to_u64(&self) -> Option<u64> {
        let mut raw = [0u8; 8];
        hex::decode_to_slice(self.0, &mut raw).ok()?;
        Some(u64::from_be_bytes(raw))
    }

    /// The raw 16 bytes.
    pub fn as_bytes(&self) -> &[u8; MESSAGE_ID_LEN] {
        &self.0
    }
}

impl TryFrom<&[u8]> for MessageId {
    type Error = ();
    fn try_from(raw: &[u8]) -> Result<Self, ()> {
        <[u8; MESSAGE_ID_LEN]>::try_from(raw)
            .map(Self)
            .map_err(|_| ())
    }
}

impl fmt::Display for MessageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&String::from_utf8_lossy(&self.0))
    }
}

impl fmt::Debug for MessageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MessageId({self})")
    }
}

/// One message. The body is shared (`Bytes`), so copying a message into several channels copies
/// only the header and a reference count.
#[derive(Clone, PartialEq, Eq)]
pub struct Message {
    /// The message ID.
    pub id: MessageId,
    /// Publish time, nanoseconds since the Unix epoch.
    pub timestamp: i64,
    /// Deliveries so far (the server increments it before each delivery).
    pub attempts: u16,
    /// The payload.
    pub body: Bytes,
}

impl Message {
    /// A fresh message that has never been delivered.
    pub fn new(id: MessageId, timestamp: i64, body: Bytes) -> Self {
        Self {
            id,
            timestamp,
            attempts: 0,
            body,
        }
    }

    /// Length of the encoded form.
    pub fn encoded_len(&self) -> usize {
        MESSAGE_HEADER_LEN + self.body.len()
    }

    /// Appends the encoded form (header then body) to `buf`.
    pub fn encode_into(&self, buf: &mut BytesMut) {
        buf.reserve(self.encoded_len());
        buf.put_i64(self.timestamp);
        buf.put_u16(self.attempts);
        buf.put_slice(&self.id.0);
        buf.put_slice(&self.body);
    }

    /// Appends the encoded form to a `Vec` (disk records).
    pub fn encode_to_vec(&self, buf: &mut Vec<u8>) {
        buf.reserve(self.encoded_len());
        buf.extend_from_slice(&self.timestamp.to_be_bytes());
        buf.extend_from_slice(&self.attempts.to_be_bytes());
        buf.extend_from_slice(&self.id.0);
        buf.extend_from_slice(&self.body);
    }

    /// The encoded form as one buffer.
    pub fn encode(&self) -> Bytes {
        let mut buf = BytesMut::with_capacity(self.encoded_len());
        self.encode_into(&mut buf);
        buf.freeze()
    }

    /// Decodes the encoded form; the body shares `raw`'s memory. `None` if shorter than the header.
    pub fn decode(raw: Bytes) -> Option<Self> {
        if raw.len() < MESSAGE_HEADER_LEN {
            return None;
        }
        let timestamp = i64::from_be_bytes(raw[0..8].try_into().ok()?);
        let attempts = u16::from_be_bytes(raw[8..10].try_into().ok()?);
        let id = MessageId(raw[10..MESSAGE_HEADER_LEN].try_into().ok()?);
        Some(Self {
            id,
            timestamp,
            attempts,
            body: raw.slice(MESSAGE_HEADER_LEN..),
        })
    }
}

impl fmt::Debug for Message {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Message")
            .field("id", &self.id)
            .field("timestamp", &self.timestamp)
            .field("attempts", &self.attempts)
            .field("body_len", &self.body.len())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn id_hex_round_trip() {
        let id = MessageId::from_u64(0x18a3_c859_c026_9000);
        assert_eq!(id.as_bytes(), b"18a3c859c0269000");
        assert_eq!(id.to_u64(), Some(0x18a3_c859_c026_9000));
        assert_eq!(MessageId(*b"zzzzzzzzzzzzzzzz").to_u64(), None);
    }

    #[test]
    fn message_round_trip() {
        let msg = Message {
            id: MessageId::from_u64(7),
            timestamp: 1_795_312_144_000_000_000,
            attempts: 3,
            body: Bytes::from_static(b"message-2"),
        };
        let encoded = msg.encode();
        assert_eq!(encoded.len(), 35);
        let mut vec = vec![0xAA];
        msg.encode_to_vec(&mut vec);
        assert_eq!(&vec[1..], &encoded[..]);
        assert_eq!(Message::decode(encoded), Some(msg));
        assert_eq!(Message::decode(Bytes::from_static(b"short")), None);
    }
}
