//! Server → client frames: `[i32 size][i32 type][data]`, where `size` counts type plus data.

use crate::error::ProtocolError;
use crate::message::{MESSAGE_HEADER_LEN, Message};
use bytes::{Buf, BufMut, Bytes, BytesMut};
use tokio_util::codec::{Decoder, Encoder};

/// The response data of a heartbeat.
pub const HEARTBEAT: &[u8] = b"_heartbeat_";
/// The response data of a successful command.
pub const OK: &[u8] = b"OK";
/// The response data of a successful CLS.
pub const CLOSE_WAIT: &[u8] = b"CLOSE_WAIT";

/// The frame type field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(i32)]
pub enum FrameType {
    /// 0: a response (`OK`, `CLOSE_WAIT`, `_heartbeat_`, JSON).
    Response = 0,
    /// 1: an error, `<CODE> <description>`.
    Error = 1,
    /// 2: a message.
    Message = 2,
}

impl TryFrom<i32> for FrameType {
    type Error = i32;
    fn try_from(value: i32) -> Result<Self, i32> {
        match value {
            0 => Ok(Self::Response),
            1 => Ok(Self::Error),
            2 => Ok(Self::Message),
            other => Err(other),
        }
    }
}

/// One decoded frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// Response data.
    Response(Bytes),
    /// Error data (`E_CODE description`).
    Error(Bytes),
    /// A delivered message.
    Message(Message),
}

impl Frame {
    /// Whether this is the `_heartbeat_` response.
    pub fn is_heartbeat(&self) -> bool {
        matches!(self, Frame::Response(data) if data.as_ref() == HEARTBEAT)
    }
}

/// Appends a frame with the given type and data to `buf`.
pub fn write_frame(buf: &mut BytesMut, frame_type: FrameType, data: &[u8]) {
    buf.reserve(8 + data.len());
    buf.put_i32(frame_len(4 + data.len()));
    buf.put_i32(frame_type as i32);
    buf.put_slice(data);
}

/// Appends a message frame for `message` to `buf`.
pub fn write_message_frame(buf: &mut BytesMut, message: &Message) {
    buf.reserve(8 + message.encoded_len());
    buf.put_i32(frame_len(4 + message.encoded_len()));
    buf.put_i32(FrameType::Message as i32);
    message.encode_into(buf);
}

fn frame_len(len: usize) -> i32 {
    // Frames are bounded by --max-msg-size (i32 on the wire); saturate rather than wrap.
    i32::try_from(len).unwrap_or(i32::MAX)
}

/// Client-side decoder (and server-side encoder) of frames.
#[derive(Debug, Clone)]
pub struct FrameCodec {
    max_frame_size: usize,
}

impl FrameCodec {
    /// A codec that rejects frames larger than `max_frame_size` bytes of type + data.
    pub fn new(max_frame_size: usize) -> Self {
        Self { max_frame_size }
    }
}

impl Default for FrameCodec {
    fn default() -> Self {
        // Room for the largest default message plus header.
        Self::new(64 * 1024 * 1024)
    }
}

impl Decoder for FrameCodec {
    type Item = Frame;
    type Error = ProtocolError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Frame>, ProtocolError> {
        if src.len() < 4 {
            return Ok(None);
        }
        let size = i32::from_be_bytes([src[0], src[1], src[2], src[3]]);
        let size = usize::try_from(size)
            .ok()
            .filter(|size| (4..=self.max_frame_size).contains(size))
            .ok_or_else(|| ProtocolError::BadFrame(format!("invalid frame size {size}")))?;
        if src.len() < 4 + size {
            src.reserve(4 + size - src.len());
            return Ok(None);
        }
        src.advance(4);
        let frame_type = src.get_i32();
        let data = src.split_to(size - 4).freeze();
        match FrameType::try_from(frame_type) {
            Ok(FrameType::Response) => Ok(Some(Frame::Response(data))),
            Ok(FrameType::Error) => Ok(Some(Frame::Error(data))),
            Ok(FrameType::Message) => Message::decode(data)
                .map(|message| Some(Frame::Message(message)))
                .ok_or_else(|| {
                    ProtocolError::BadFrame(format!(
                        "message frame shorter than {MESSAGE_HEADER_LEN} bytes"
                    ))
                }),
            Err(other) => Err(ProtocolError::BadFrame(format!(
                "unknown frame type {other}"
            ))),
        }
    }
}

impl Encoder<&Frame> for FrameCodec {
    type Error = ProtocolError;

    fn encode(&mut self, frame: &Frame, dst: &mut BytesMut) -> Result<(), ProtocolError> {
        match frame {
            Frame::Response(data) => write_frame(dst, FrameType::Response, data),
            Frame::Error(data) => write_frame(dst, FrameType::Error, data),
            Frame::Message(message) => write_message_frame(dst, message),
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::MessageId;

    #[test]
    fn ok_frame_bytes() {
        let mut buf = BytesMut::new();
        write_frame(&mut buf, FrameType::Response, OK);
        assert_eq!(&buf[..], &[0, 0, 0, 6, 0, 0, 0, 0, 0x4f, 0x4b]);
    }

    #[test]
    fn decode_partial_then_whole() {
        let message = Message {
            id: MessageId::from_u64(1),
            timestamp: 5,
            attempts: 1,
            body: Bytes::from_static(b"hello"),
        };
        let mut buf = BytesMut::new();
        write_message_frame(&mut buf, &message);
        write_frame(&mut buf, FrameType::Error, b"E_INVALID x");
        let mut codec = FrameCodec::default();
        let mut partial = buf.split_to(10);
        assert_eq!(codec.decode(&mut partial).unwrap(), None);
        partial.unsplit(buf);
        assert_eq!(
            codec.decode(&mut partial).unwrap(),
            Some(Frame::Message(message))
        );
        assert_eq!(
            codec.decode(&mut partial).unwrap(),
            Some(Frame::Error(Bytes::from_static(b"E_INVALID x")))
        );
        assert!(partial.is_empty());
    }

    #[test]
    fn rejects_bad_sizes() {
        let mut codec = FrameCodec::new(100);
        let mut negative = BytesMut::from(&[0xff, 0xff, 0xff, 0xff][..]);
        assert!(codec.decode(&mut negative).is_err());
        let mut huge = BytesMut::from(&[0, 0, 1, 0][..]);
        assert!(codec.decode(&mut huge).is_err());
    }
}
