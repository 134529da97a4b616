//! The transport under a V2 connection and the byte-transform stages IDENTIFY can switch on.
//!
//! Layering, outermost first (upstream's order):
//!
//! ```text
//! socket ── Transport::Tcp | Transport::Tls ── Compression (snappy | deflate) ── frames / commands
//! ```
//!
//! * [`Transport`] is an enum, not a boxed trait object: a plain connection pays one predictable
//!   branch per read or write and nothing else.
//! * Compression is not an `AsyncRead`/`AsyncWrite` wrapper but two buffer stages owned by the
//!   connection ([`Layers`]): frames are compressed from the connection's output buffer into
//!   `wire_out` once per write batch (with a flush, so the peer can decode everything it has), and
//!   received bytes land in `wire_in` and are decompressed into the command buffer **only as the
//!   command decoder asks for more**, at most [`DECOMPRESS_CHUNK`] bytes at a time (one snappy chunk
//!   is at most 64 KiB). The decoder refuses oversized bodies from their length prefix, so a
//!   compression bomb can never make the connection buffer more than the configured limits.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// Decompressed bytes produced per step of the input pump.
pub(crate) const DECOMPRESS_CHUNK: usize = 16 * 1024;
/// Compressed input buffered before the connection stops reading (above one snappy chunk).
pub(crate) const WIRE_IN_LIMIT: usize = 128 * 1024;

/// The byte stream under a connection.
pub(crate) enum Transport {
    /// Plain TCP (the common case).
    Tcp(TcpStream),
    /// After an IDENTIFY `tls_v1` upgrade.
    Tls(Box<tokio_rustls::server::TlsStream<Rewind>>),
    /// The stream was lost (TLS handshake timed out).
    Closed,
}

impl Transport {
    pub(crate) fn poll_read_buf(
        &mut self,
        cx: &mut Context<'_>,
        buf: &mut BytesMut,
    ) -> Poll<io::Result<usize>> {
        match self {
            Transport::Tcp(stream) => tokio_util::io::poll_read_buf(Pin::new(stream), cx, buf),
            Transport::Tls(stream) => {
                tokio_util::io::poll_read_buf(Pin::new(stream.as_mut()), cx, buf)
            }
            Transport::Closed => Poll::Ready(Ok(0)),
        }
    }

    pub(crate) fn poll_write(
        &mut self,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self {
            Transport::Tcp(stream) => Pin::new(stream).poll_write(cx, buf),
            Transport::Tls(stream) => Pin::new(stream.as_mut()).poll_write(cx, buf),
            Transport::Closed => Poll::Ready(Err(io::ErrorKind::NotConnected.into())),
        }
    }

    /// Pushes out what a TLS stream still holds (plain TCP has nothing to flush).
    pub(crate) fn poll_flush(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self {
            Transport::Tcp(_) => Poll::Ready(Ok(())),
            Transport::Tls(stream) => Pin::new(stream.as_mut()).poll_flush(cx),
            Transport::Closed => Poll::Ready(Err(io::ErrorKind::NotConnected.into())),
        }
    }

    pub(crate) fn is_tls(&self) -> bool {
        matches!(self, Transport::Tls(_))
    }

    /// Closes our side (TLS: close_notify first), then reads and discards briefly so unread
    /// client bytes do not turn the close into a reset that could destroy the last error frame.
    pub(crate) async fn linger_close(self) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        async fn drain<S: AsyncRead + AsyncWrite + Unpin>(mut stream: S) {
            let _ = stream.shutdown().await;
            let mut sink = [0u8; 4096];
            while matches!(stream.read(&mut sink).await, Ok(n) if n > 0) {}
        }
        let _ = tokio::time::timeout(std::time::Duration::from_millis(500), async {
            match self {
                Transport::Tcp(stream) => drain(stream).await,
                Transport::Tls(stream) => drain(stream).await,
                Transport::Closed => {}
            }
        })
        .await;
    }
}

/// A TCP stream with bytes already read from it put back in front (the start of a TLS handshake
/// that arrived in the same read as IDENTIFY).
pub(crate) struct Rewind {
    prefix: Bytes,
    inner: TcpStream,
}

impl Rewind {
    pub(crate) fn new(prefix: Bytes, inner: TcpStream) -> Self {
        Self { prefix, inner }
    }

    pub(crate) fn into_inner(self) -> TcpStream {
        self.inner
    }
}

impl AsyncRead for Rewind {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if !self.prefix.is_empty() {
            let n = self.prefix.len().min(buf.remaining());
            buf.put_slice(&self.prefix[..n]);
            self.prefix.advance(n);
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for Rewind {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// The compression stage of a connection and its wire-side buffers.
pub(crate) struct Layers {
    compression: Compression,
    /// Received bytes not yet decompressed.
    pub(crate) wire_in: BytesMut,
    /// Compressed bytes not yet written.
    pub(crate) wire_out: BytesMut,
}

impl Layers {
    pub(crate) fn snappy() -> Self {
        Self::new(Compression::Snappy(Box::default()))
    }

    pub(crate) fn deflate(level: u32) -> Self {
        Self::new(Compression::Deflate(Box::new(Deflate::new(level))))
    }

    fn new(compression: Compression) -> Self {
        Self {
            compression,
            wire_in: BytesMut::with_capacity(16 * 1024),
            wire_out: BytesMut::with_capacity(16 * 1024),
        }
    }

    /// Compresses one write batch (all of `plain`) into `wire_out`, flushed so the peer can decode
    /// all of it, and empties `plain`.
    pub(crate) fn compress_batch(&mut self, plain: &mut BytesMut) {
        match &mut self.compression {
            Compression::Snappy(snappy) => snappy.encode(plain, &mut self.wire_out),
            Compression::Deflate(deflate) => deflate.encode(plain, &mut self.wire_out),
        }
        plain.clear();
    }

    /// Decompresses at most about `max` bytes from `wire_in` into `plain`. Returns how many bytes
    /// were produced (0: more input is needed). A corrupt stream is an error.
    pub(crate) fn decompress(&mut self, plain: &mut BytesMut, max: usize) -> io::Result<usize> {
        match &mut self.compression {
            Compression::Snappy(snappy) => snappy.decode(&mut self.wire_in, plain),
            Compression::Deflate(deflate) => deflate.decode(&mut self.wire_in, plain, max),
        }
    }
}

enum Compression {
    Snappy(Box<Snappy>),
    Deflate(Box<Deflate>),
}

fn corrupt(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.to_owned())
}

/// Raw DEFLATE (RFC 1951) both ways, with a sync flush after each write batch.
struct Deflate {
    compress: flate2::Compress,
    decompress: flate2::Decompress,
    finished: bool,
}

impl Deflate {
    fn new(level: u32) -> Self {
        Self {
            compress: flate2::Compress::new(flate2::Compression::new(level.clamp(1, 9)), false),
            decompress: flate2::Decompress::new(false),
            finished: false,
        }
    }

    fn encode(&mut self, plain: &[u8], wire: &mut BytesMut) {
        let mut input = plain;
        loop {
            let room = (input.len() / 2).max(256) + 64;
            let start = wire.len();
            wire.resize(start + room, 0);
            let (in_before, out_before) = (self.compress.total_in(), self.compress.total_out());
            let result =
                self.compress
                    .compress(input, &mut wire[start..], flate2::FlushCompress::Sync);
            let consumed = (self.compress.total_in() - in_before) as usize;
            let produced = (self.compress.total_out() - out_before) as usize;
            wire.truncate(start + produced);
            input = &input[consumed..];
            // Done once all input is in and the flush did not run out of room.
            if result.is_err() || (input.is_empty() && produced < room) {
                return;
            }
        }
    }

    fn decode(
        &mut self,
        wire: &mut BytesMut,
        plain: &mut BytesMut,
        max: usize,
    ) -> io::Result<usize> {
        if self.finished {
            if wire.is_empty() {
                return Ok(0);
            }
            return Err(corrupt("data after the end of the deflate stream"));
        }
        // Even without new input the inflater may hold output that did not fit last time.
        let start = plain.len();
        plain.resize(start + max, 0);
        let (in_before, out_before) = (self.decompress.total_in(), self.decompress.total_out());
        let status =
            self.decompress
                .decompress(wire, &mut plain[start..], flate2::FlushDecompress::None);
        let consumed = (self.decompress.total_in() - in_before) as usize;
        let produced = (self.decompress.total_out() - out_before) as usize;
        plain.truncate(start + produced);
        wire.advance(consumed);
        match status {
            Ok(flate2::Status::StreamEnd) => self.finished = true,
            Ok(_) => {}
            Err(err) => return Err(io::Error::new(io::ErrorKind::InvalidData, err)),
        }
        Ok(produced)
    }
}

/// The snappy framing format's stream identifier chunk.
pub(crate) const SNAPPY_STREAM_IDENTIFIER: &[u8; 10] = b"\xff\x06\x00\x00sNaPpY";
const SNAPPY_MAX_BLOCK: usize = 65536;
/// golang/snappy compresses a block only from this size on.
const SNAPPY_MIN_COMPRESS: usize = 17;

/// The snappy framing format (the one golang/snappy's Reader/Writer speak).
struct Snappy {
    encoder: snap::raw::Encoder,
    decoder: snap::raw::Decoder,
    wrote_identifier: bool,
    read_identifier: bool,
    /// Bytes of a skippable chunk still to discard.
    skip: usize,
}

/// The CRC-32C of `data`, masked as the framing format requires.
pub(crate) fn snappy_masked_crc(data: &[u8]) -> u32 {
    let crc = crc32c::crc32c(data);
    (crc.rotate_right(15)).wrapping_add(0xa282_ead8)
}

impl Default for Snappy {
    fn default() -> Self {
        Self {
            encoder: snap::raw::Encoder::new(),
            decoder: snap::raw::Decoder::new(),
            wrote_identifier: false,
            read_identifier: false,
            skip: 0,
        }
    }
}

impl Snappy {
    fn encode(&mut self, plain: &[u8], wire: &mut BytesMut) {
        if !self.wrote_identifier {
            wire.put_slice(SNAPPY_STREAM_IDENTIFIER);
            self.wrote_identifier = true;
        }
        for block in plain.chunks(SNAPPY_MAX_BLOCK) {
            let crc = snappy_masked_crc(block);
            if block.len() >= SNAPPY_MIN_COMPRESS {
                let header = wire.len();
                let room = snap::raw::max_compress_len(block.len());
                wire.resize(header + 8 + room, 0);
                if let Ok(n) = self.encoder.compress(block, &mut wire[header + 8..])
                    && n < block.len() - block.len() / 8
                {
                    wire.truncate(header + 8 + n);
                    let len = (n + 4) as u32;
                    wire[header] = 0x00;
                    wire[header + 1..header + 4].copy_from_slice(&len.to_le_bytes()[..3]);
                    wire[header + 4..header + 8].copy_from_slice(&crc.to_le_bytes());
                    continue;
                }
                wire.truncate(header);
            }
            let len = (block.len() + 4) as u32;
            wire.put_u8(0x01);
            wire.put_slice(&len.to_le_bytes()[..3]);
            wire.put_u32_le(crc);
            wire.put_slice(block);
        }
    }

    /// Decodes at most one data chunk.
    fn decode(&mut self, wire: &mut BytesMut, plain: &mut BytesMut) -> io::Result<usize> {
        loop {
            if self.skip > 0 {
                let n = self.skip.min(wire.len());
                wire.advance(n);
                self.skip -= n;
                if self.skip > 0 {
                    return Ok(0);
                }
            }
            if wire.len() < 4 {
                return Ok(0);
            }
            let kind = wire[0];
            let len = usize::from(wire[1]) | usize::from(wire[2]) << 8 | usize::from(wire[3]) << 16;
            if kind != 0xff && !self.read_identifier {
                return Err(corrupt("snappy stream does not start with its identifier"));
            }
            match kind {
                0xff => {
                    if len != 6 {
                        return Err(corrupt("bad snappy stream identifier"));
                    }
                    if wire.len() < 10 {
                        return Ok(0);
                    }
                    if &wire[..10] != SNAPPY_STREAM_IDENTIFIER {
                        return Err(corrupt("bad snappy stream identifier"));
                    }
                    wire.advance(10);
                    self.read_identifier = true;
                }
                0x00 | 0x01 => {
                    let max = if kind == 0x00 {
                        snap::raw::max_compress_len(SNAPPY_MAX_BLOCK)
                    } else {
                        SNAPPY_MAX_BLOCK
                    };
                    if len < 4 || len - 4 > max {
                        return Err(corrupt("bad snappy chunk length"));
                    }
                    if wire.len() < 4 + len {
                        return Ok(0);
                    }
                    let expected = u32::from_le_bytes([wire[4], wire[5], wire[6], wire[7]]);
                    let data = &wire[8..4 + len];
                    let start = plain.len();
                    if kind == 0x00 {
                        let n = snap::raw::decompress_len(data)
                            .map_err(|err| io::Error::new(io::ErrorKind::InvalidData, err))?;
                        if n > SNAPPY_MAX_BLOCK {
                            return Err(corrupt("snappy chunk too large"));
                        }
                        plain.resize(start + n, 0);
                        if let Err(err) = self.decoder.decompress(data, &mut plain[start..]) {
                            plain.truncate(start);
                            return Err(io::Error::new(io::ErrorKind::InvalidData, err));
                        }
                    } else {
                        plain.extend_from_slice(data);
                    }
                    if snappy_masked_crc(&plain[start..]) != expected {
                        plain.truncate(start);
                        return Err(corrupt("snappy checksum mismatch"));
                    }
                    wire.advance(4 + len);
                    let produced = plain.len() - start;
                    if produced > 0 {
                        return Ok(produced);
                    }
                }
                0x02..=0x7f => return Err(corrupt("reserved unskippable snappy chunk")),
                // Padding and skippable chunks.
                _ => {
                    wire.advance(4);
                    self.skip = len;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unhex(text: &str) -> Vec<u8> {
        (0..text.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap())
            .collect()
    }

    fn tohex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    fn roundtrip(mut sender: Layers, mut receiver: Layers, data: &[u8]) {
        let mut plain = BytesMut::from(data);
        sender.compress_batch(&mut plain);
        assert!(plain.is_empty());
        receiver.wire_in = std::mem::take(&mut sender.wire_out);
        let mut out = BytesMut::new();
        while receiver.decompress(&mut out, DECOMPRESS_CHUNK).unwrap() > 0 {}
        assert_eq!(out.len(), data.len());
        assert!(out[..] == data[..], "round trip changed the data");
        assert!(receiver.wire_in.is_empty());
    }

    #[test]
    fn masked_crc_matches_upstream_capture() {
        // identify_snappy.json: the OK frame in an uncompressed chunk with CRC bytes 26 98 2b cf.
        let ok = unhex("00000006000000004f4b");
        assert_eq!(
            snappy_masked_crc(&ok).to_le_bytes(),
            [0x26, 0x98, 0x2b, 0xcf]
        );
    }

    #[test]
    fn snappy_small_write_is_an_uncompressed_chunk() {
        let mut layers = Layers::snappy();
        let mut plain = BytesMut::from(&unhex("00000006000000004f4b")[..]);
        layers.compress_batch(&mut plain);
        assert_eq!(
            tohex(&layers.wire_out),
            "ff060000734e61507059010e000026982bcf00000006000000004f4b"
        );
    }

    #[test]
    fn snappy_and_deflate_roundtrip() {
        let mut big = Vec::new();
        for i in 0..200_000u32 {
            big.extend_from_slice(format!("PUB t{}\n", i % 7).as_bytes());
        }
        for data in [&b"NOP\n"[..], &big[..], &[0u8; 70_000][..]] {
            roundtrip(Layers::snappy(), Layers::snappy(), data);
            roundtrip(Layers::deflate(6), Layers::deflate(6), data);
        }
    }

    #[test]
    fn deflate_decompresses_in_bounded_steps() {
        let mut sender = Layers::deflate(9);
        let mut plain = BytesMut::from(&vec![0u8; 4 << 20][..]);
        sender.compress_batch(&mut plain);
        let mut receiver = Layers::deflate(6);
        receiver.wire_in = sender.wire_out.split();
        let mut out = BytesMut::new();
        let n = receiver.decompress(&mut out, DECOMPRESS_CHUNK).unwrap();
        assert!(n > 0 && n <= DECOMPRESS_CHUNK);
        assert_eq!(out.len(), n);
    }

    #[test]
    fn snappy_rejects_garbage() {
        let mut layers = Layers::snappy();
        layers.wire_in.put_slice(b"\x00\x05\x00\x00abcde");
        assert!(layers.decompress(&mut BytesMut::new(), 1024).is_err());
        let mut layers = Layers::snappy();
        layers.wire_in.put_slice(SNAPPY_STREAM_IDENTIFIER);
        layers
            .wire_in
            .put_slice(b"\x01\x06\x00\x00\x00\x00\x00\x00ab");
        assert!(layers.decompress(&mut BytesMut::new(), 1024).is_err());
        let mut layers = Layers::snappy();
        layers.wire_in.put_slice(SNAPPY_STREAM_IDENTIFIER);
        layers.wire_in.put_slice(b"\x00\xff\xff\xff");
        assert!(layers.decompress(&mut BytesMut::new(), 1024).is_err());
    }
}
