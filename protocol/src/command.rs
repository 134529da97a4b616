//! Client → server commands and the server-side [`CommandCodec`].
//!
//! A command is a text line (`NAME param param\n`, one trailing `\r` stripped, split on every single
//! space) optionally followed by a body `[i32 size][bytes]`. The decoder performs upstream's checks
//! in upstream's order and reports the first failure as a [`ClientError`] with upstream's exact text.
//! Checks that depend on the connection's protocol state (init / subscribed / closing, TLS still
//! required, heartbeats disabled) are part of the wire contract, so the connection keeps
//! [`CommandCodec::state`] current and the decoder applies them before it reads a body.

use crate::error::{ClientError, ErrorCode, ProtocolError};
use crate::message::MessageId;
use crate::names::{ChannelName, TopicName};
use bytes::{Buf, BufMut, Bytes, BytesMut};
use std::fmt::Write as _;
use tokio_util::codec::{Decoder, Encoder};

/// The four bytes a V2 client sends first.
pub const MAGIC_V2: &[u8; 4] = b"  V2";

/// Longest accepted command line, including its `\n` (upstream reads lines through 16 KiB).
pub const MAX_LINE_LENGTH: usize = 16 * 1024;

/// A decoded client command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// `IDENTIFY` with its JSON body (parsed by [`crate::identify`]).
    Identify(Bytes),
    /// `AUTH` with the opaque secret.
    Auth(Bytes),
    /// `SUB <topic> <channel>`.
    Sub {
        /// Topic to subscribe to.
        topic: TopicName,
        /// Channel to consume from.
        channel: ChannelName,
    },
    /// `PUB <topic>` with one body.
    Pub {
        /// Destination topic.
        topic: TopicName,
        /// Message body.
        body: Bytes,
    },
    /// `MPUB <topic>` with several bodies.
    Mpub {
        /// Destination topic.
        topic: TopicName,
        /// Message bodies, in order.
        bodies: Vec<Bytes>,
    },
    /// `DPUB <topic> <defer_ms>` with one body.
    Dpub {
        /// Destination topic.
        topic: TopicName,
        /// Deferral in milliseconds (already checked against the maximum).
        defer_ms: u64,
        /// Message body.
        body: Bytes,
    },
    /// `RDY [count]` (no count = 1).
    Rdy(u64),
    /// `FIN <id>`.
    Fin(MessageId),
    /// `REQ <id> <timeout_ms>` (the timeout is not clamped here).
    Req {
        /// Message to requeue.
        id: MessageId,
        /// Requested delay in milliseconds.
        timeout_ms: u64,
    },
    /// `TOUCH <id>`.
    Touch(MessageId),
    /// `CLS`.
    Cls,
    /// `NOP` (also what a `RDY` becomes once the connection is closing: it is ignored).
    Nop,
}

impl Command {
    /// The command's wire name.
    pub fn name(&self) -> &'static str {
        match self {
            Command::Identify(_) => "IDENTIFY",
            Command::Auth(_) => "AUTH",
            Command::Sub { .. } => "SUB",
            Command::Pub { .. } => "PUB",
            Command::Mpub { .. } => "MPUB",
            Command::Dpub { .. } => "DPUB",
            Command::Rdy(_) => "RDY",
            Command::Fin(_) => "FIN",
            Command::Req { .. } => "REQ",
            Command::Touch(_) => "TOUCH",
            Command::Cls => "CLS",
            Command::Nop => "NOP",
        }
    }
}

/// The connection's protocol state, as far as command checks depend on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ConnectionState {
    /// After the magic; IDENTIFY, AUTH and SUB are allowed.
    #[default]
    Init,
    /// After a successful SUB.
    Subscribed,
    /// After CLS.
    Closing,
}

impl ConnectionState {
    /// The number upstream shows as `state` in `/stats`.
    pub fn stats_code(self) -> i32 {
        match self {
            ConnectionState::Init => 0,
            ConnectionState::Subscribed => 3,
            ConnectionState::Closing => 4,
        }
    }
}

/// Size limits the decoder enforces (nsqd's flags).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// `--max-msg-size`.
    pub max_msg_size: u64,
    /// `--max-body-size`.
    pub max_body_size: u64,
    /// `--max-rdy-count`.
    pub max_rdy_count: u64,
    /// `--max-req-timeout` in milliseconds (the DPUB limit).
    pub max_req_timeout_ms: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_msg_size: 1_048_576,
            max_body_size: 5_242_880,
            max_rdy_count: 2500,
            max_req_timeout_ms: 3_600_000,
        }
    }
}

/// Server-side decoder (and client-side encoder) of commands.
#[derive(Debug, Clone, Default)]
pub struct CommandCodec {
    /// Limits applied while decoding.
    pub limits: Limits,
    /// Current protocol state of the connection.
    pub state: ConnectionState,
    /// The server requires TLS and this connection has not upgraded yet.
    pub tls_required: bool,
    /// IDENTIFY disabled heartbeats (such a connection cannot SUB).
    pub heartbeats_disabled: bool,
}

impl CommandCodec {
    /// A decoder with the given limits, in state init.
    pub fn new(limits: Limits) -> Self {
        Self {
            limits,
            ..Self::default()
        }
    }

    /// If `src` starts with a complete `MPUB <topic>` line whose checks up to the topic name pass
    /// (TLS not required, a parameter, a valid topic), that topic. A server with auth enabled
    /// checks permissions here, **before** the body is read (upstream's order for MPUB only).
    pub fn mpub_topic_before_body(&self, src: &[u8]) -> Option<TopicName> {
        if self.tls_required || !src.starts_with(b"MPUB ") {
            return None;
        }
        let newline = src.iter().take(MAX_LINE_LENGTH).position(|&b| b == b'\n')?;
        let line = src[..newline]
            .strip_suffix(b"\r")
            .unwrap_or(&src[..newline]);
        let topic = split_line(line).get(1).copied()?;
        TopicName::try_from(topic).ok()
    }
}

type DecodeResult = Result<Option<(Command, usize)>, ClientError>;

impl Decoder for CommandCodec {
    type Item = Command;
    type Error = ProtocolError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Command>, ProtocolError> {
        let Some(newline) = src.iter().take(MAX_LINE_LENGTH).position(|&b| b == b'\n') else {
            if src.len() >= MAX_LINE_LENGTH {
                return Err(ProtocolError::LineTooLong {
                    max: MAX_LINE_LENGTH,
                });
            }
            return Ok(None);
        };
        match self.decode_command(src, newline)? {
            Some((command, consumed)) => {
                src.advance(consumed);
                Ok(Some(command))
            }
            None => {
                // The body is still arriving: make room for all of it at once, so it ends up in
                // one allocation instead of being copied on every read.
                if let Some(total) = pending_command_len(src, newline) {
                    src.reserve(total.saturating_sub(src.len()));
                }
                Ok(None)
            }
        }
    }
}

/// For a buffered command line with a body whose size prefix has arrived (and passed the size
/// checks), the total length of line plus size plus body.
fn pending_command_len(src: &[u8], newline: usize) -> Option<usize> {
    let name_end = src[..newline]
        .iter()
        .position(|&b| b == b' ' || b == b'\r')
        .unwrap_or(newline);
    if !matches!(
        &src[..name_end],
        b"PUB" | b"DPUB" | b"MPUB" | b"IDENTIFY" | b"AUTH"
    ) {
        return None;
    }
    let size = usize::try_from(read_i32(&src[newline + 1..])?).ok()?;
    Some(newline + 1 + 4 + size)
}

/// Splits a command line (without `\n`, `\r` stripped) into words on every single space.
fn split_line(line: &[u8]) -> Vec<&[u8]> {
    line.split(|&b| b == b' ').collect()
}

impl CommandCodec {
    fn decode_command(&self, src: &mut BytesMut, newline: usize) -> DecodeResult {
        let line_end = if newline > 0 && src[newline - 1] == b'\r' {
            newline - 1
        } else {
            newline
        };
        let body_start = newline + 1;
        let (line, rest) = src.split_at(body_start);
        let words = split_line(&line[..line_end]);
        let name = words[0];
        let params = &words[1..];

        if self.tls_required && name != b"IDENTIFY" {
            return Err(ClientError::invalid(format!(
                "cannot {} in current state (TLS required)",
                lossy(name)
            )));
        }

        let command = match name {
            b"NOP" => Command::Nop,
            b"FIN" => {
                self.require_delivery_state("FIN")?;
                Command::Fin(message_id_param("FIN", params)?)
            }
            b"TOUCH" => {
                self.require_delivery_state("TOUCH")?;
                Command::Touch(message_id_param("TOUCH", params)?)
            }
            b"REQ" => {
                self.require_delivery_state("REQ")?;
                if params.len() < 2 {
                    return Err(ClientError::invalid("REQ insufficient number of params"));
                }
                let id = parse_message_id(params[0])?;
                let timeout_ms = parse_number(params[1]).ok_or_else(|| {
                    ClientError::invalid(format!(
                        "REQ could not parse timeout {}",
                        lossy(params[1])
                    ))
                })?;
                Command::Req { id, timeout_ms }
            }
            b"RDY" => match self.state {
                ConnectionState::Closing => Command::Nop,
                ConnectionState::Init => {
                    return Err(ClientError::invalid("cannot RDY in current state"));
                }
                ConnectionState::Subscribed => {
                    let count = match params.first() {
                        None => 1,
                        Some(raw) => parse_number(raw).ok_or_else(|| {
                            ClientError::invalid(format!(
                                "RDY could not parse count {}",
                                lossy(raw)
                            ))
                        })?,
                    };
                    if count > self.limits.max_rdy_count {
                        return Err(ClientError::invalid(format!(
                            "RDY count {count} out of range 0-{}",
                            self.limits.max_rdy_count
                        )));
                    }
                    Command::Rdy(count)
                }
            },
            b"CLS" => {
                if self.state != ConnectionState::Subscribed {
                    return Err(ClientError::invalid("cannot CLS in current state"));
                }
                Command::Cls
            }
            b"SUB" => {
                if self.state != ConnectionState::Init {
                    return Err(ClientError::invalid("cannot SUB in current state"));
                }
                if self.heartbeats_disabled {
                    return Err(ClientError::invalid("cannot SUB with heartbeats disabled"));
                }
                if params.len() < 2 {
                    return Err(ClientError::invalid(
                        "SUB insufficient number of parameters",
                    ));
                }
                let topic = TopicName::try_from(params[0]).map_err(|_| {
                    ClientError::new(
                        ErrorCode::BadTopic,
                        format!("SUB topic name {} is not valid", go_quote(params[0])),
                    )
                })?;
                let channel = ChannelName::try_from(params[1]).map_err(|_| {
                    ClientError::new(
                        ErrorCode::BadChannel,
                        format!("SUB channel name {} is not valid", go_quote(params[1])),
                    )
                })?;
                Command::Sub { topic, channel }
            }
            b"PUB" => {
                if params.is_empty() {
                    return Err(ClientError::invalid(
                        "PUB insufficient number of parameters",
                    ));
                }
                let topic = topic_param("PUB", params[0])?;
                let Some((_, consumed)) = self.message_body("PUB", rest)? else {
                    return Ok(None);
                };
                return Ok(Some((
                    Command::Pub {
                        topic,
                        body: take_body(src, body_start, consumed - 4),
                    },
                    0,
                )));
            }
            b"DPUB" => {
                if params.len() < 2 {
                    return Err(ClientError::invalid(
                        "DPUB insufficient number of parameters",
                    ));
                }
                let topic = topic_param("DPUB", params[0])?;
                let defer_ms = parse_number(params[1]).ok_or_else(|| {
                    ClientError::invalid(format!(
                        "DPUB could not parse timeout {}",
                        lossy(params[1])
                    ))
                })?;
                if defer_ms > self.limits.max_req_timeout_ms {
                    return Err(ClientError::invalid(format!(
                        "DPUB timeout {defer_ms} out of range 0-{}",
                        self.limits.max_req_timeout_ms
                    )));
                }
                let Some((_, consumed)) = self.message_body("DPUB", rest)? else {
                    return Ok(None);
                };
                return Ok(Some((
                    Command::Dpub {
                        topic,
                        defer_ms,
                        body: take_body(src, body_start, consumed - 4),
                    },
                    0,
                )));
            }
            b"MPUB" => {
                if params.is_empty() {
                    return Err(ClientError::invalid(
                        "MPUB insufficient number of parameters",
                    ));
                }
                let topic = TopicName::try_from(params[0]).map_err(|_| {
                    // Upstream writes the code twice in this one message; clients see it so.
                    ClientError::new(
                        ErrorCode::BadTopic,
                        format!(
                            "E_BAD_TOPIC MPUB topic name {} is not valid",
                            go_quote(params[0])
                        ),
                    )
                })?;
                let Some(body_len) = self.mpub_body_len(rest)? else {
                    return Ok(None);
                };
                let mut body = take_body(src, body_start, body_len);
                let bodies = self.mpub_messages(&mut body)?;
                return Ok(Some((Command::Mpub { topic, bodies }, 0)));
            }
            b"IDENTIFY" => {
                if self.state != ConnectionState::Init {
                    return Err(ClientError::invalid("cannot IDENTIFY in current state"));
                }
                let Some(len) = self.command_body_len("IDENTIFY", rest)? else {
                    return Ok(None);
                };
                let body = take_body(src, body_start, len);
                return Ok(Some((Command::Identify(body), 0)));
            }
            b"AUTH" => {
                if self.state != ConnectionState::Init {
                    return Err(ClientError::invalid("cannot AUTH in current state"));
                }
                if !params.is_empty() {
                    return Err(ClientError::invalid("AUTH invalid number of parameters"));
                }
                let Some(len) = self.command_body_len("AUTH", rest)? else {
                    return Ok(None);
                };
                let body = take_body(src, body_start, len);
                return Ok(Some((Command::Auth(body), 0)));
            }
            other => {
                return Err(ClientError::invalid(format!(
                    "invalid command {}",
                    lossy(other)
                )));
            }
        };
        Ok(Some((command, body_start)))
    }

    fn require_delivery_state(&self, name: &str) -> Result<(), ClientError> {
        match self.state {
            ConnectionState::Subscribed | ConnectionState::Closing => Ok(()),
            ConnectionState::Init => Err(ClientError::invalid(format!(
                "cannot {name} in current state"
            ))),
        }
    }

    /// For PUB/DPUB: `Some((body_len, bytes_after_line))` once the whole body is buffered.
    fn message_body(&self, name: &str, rest: &[u8]) -> Result<Option<(usize, usize)>, ClientError> {
        let Some(size) = read_i32(rest) else {
            return Ok(None);
        };
        if size <= 0 {
            return Err(ClientError::new(
                ErrorCode::BadMessage,
                format!("{name} invalid message body size {size}"),
            ));
        }
        if size as u64 > self.limits.max_msg_size {
            return Err(ClientError::new(
                ErrorCode::BadMessage,
                format!(
                    "{name} message too big {size} > {}",
                    self.limits.max_msg_size
                ),
            ));
        }
        let size = size as usize;
        if rest.len() < 4 + size {
            return Ok(None);
        }
        Ok(Some((size, 4 + size)))
    }

    /// For IDENTIFY/AUTH: the body length once the whole body is buffered.
    fn command_body_len(&self, name: &str, rest: &[u8]) -> Result<Option<usize>, ClientError> {
        let Some(size) = read_i32(rest) else {
            return Ok(None);
        };
        if i64::from(size) > self.limits.max_body_size as i64 {
            return Err(ClientError::new(
                ErrorCode::BadBody,
                format!("{name} body too big {size} > {}", self.limits.max_body_size),
            ));
        }
        if size <= 0 {
            return Err(ClientError::new(
                ErrorCode::BadBody,
                format!("{name} invalid body size {size}"),
            ));
        }
        let size = size as usize;
        Ok((rest.len() >= 4 + size).then_some(size))
    }

    /// For MPUB: checks body size and message count as soon as they arrive; the body length once
    /// the whole body is buffered.
    fn mpub_body_len(&self, rest: &[u8]) -> Result<Option<usize>, ClientError> {
        let Some(size) = read_i32(rest) else {
            return Ok(None);
        };
        if size <= 0 {
            return Err(ClientError::new(
                ErrorCode::BadBody,
                format!("MPUB invalid body size {size}"),
            ));
        }
        if size as u64 > self.limits.max_body_size {
            return Err(ClientError::new(
                ErrorCode::BadBody,
                format!("MPUB body too big {size} > {}", self.limits.max_body_size),
            ));
        }
        let Some(count) = read_i32(&rest[4..]) else {
            return Ok(None);
        };
        self.check_mpub_count(count)?;
        let size = size as usize;
        Ok((rest.len() >= 4 + size).then_some(size))
    }

    fn check_mpub_count(&self, count: i32) -> Result<(), ClientError> {
        let max_count = self.limits.max_body_size.saturating_sub(4) / 5;
        if count <= 0 || count as u64 > max_count {
            return Err(ClientError::new(
                ErrorCode::BadBody,
                format!("MPUB invalid message count {count}"),
            ));
        }
        Ok(())
    }

    /// Splits a complete MPUB body (count + size-prefixed messages) into message bodies sharing
    /// the body's memory. All-or-nothing: any bad message fails the whole command.
    fn mpub_messages(&self, body: &mut Bytes) -> Result<Vec<Bytes>, ClientError> {
        let total = body.len();
        if body.len() < 4 {
            return Err(ClientError::new(
                ErrorCode::BadBody,
                "MPUB failed to read message count",
            ));
        }
        let count = body.get_i32();
        self.check_mpub_count(count)?;
        // Each message takes at least 5 bytes; don't let a lying count reserve more than that.
        let mut bodies = Vec::with_capacity((count as usize).min(body.len() / 5));
        for index in 0..count {
            if body.len() < 4 {
                return Err(ClientError::new(
                    ErrorCode::BadMessage,
                    format!("MPUB failed to read message({index}) body size"),
                ));
            }
            let size = body.get_i32();
            if size <= 0 {
                return Err(ClientError::new(
                    ErrorCode::BadMessage,
                    format!("MPUB invalid message({index}) body size {size}"),
                ));
            }
            if size as u64 > self.limits.max_msg_size {
                return Err(ClientError::new(
                    ErrorCode::BadMessage,
                    format!("MPUB message too big {size} > {}", self.limits.max_msg_size),
                ));
            }
            let size = size as usize;
            if body.len() < size {
                return Err(ClientError::new(
                    ErrorCode::BadMessage,
                    "MPUB failed to read message body",
                ));
            }
            bodies.push(body.split_to(size));
        }
        if !body.is_empty() {
            return Err(ClientError::new(
                ErrorCode::BadBody,
                format!(
                    "MPUB body size {total} does not match its {count} messages ({} bytes left over)",
                    body.len()
                ),
            ));
        }
        Ok(bodies)
    }
}

fn topic_param(name: &str, raw: &[u8]) -> Result<TopicName, ClientError> {
    TopicName::try_from(raw).map_err(|_| {
        ClientError::new(
            ErrorCode::BadTopic,
            format!("{name} topic name {} is not valid", go_quote(raw)),
        )
    })
}

fn message_id_param(name: &str, params: &[&[u8]]) -> Result<MessageId, ClientError> {
    let raw = params
        .first()
        .ok_or_else(|| ClientError::invalid(format!("{name} insufficient number of params")))?;
    parse_message_id(raw)
}

fn parse_message_id(raw: &[u8]) -> Result<MessageId, ClientError> {
    MessageId::try_from(raw).map_err(|()| ClientError::invalid("invalid message ID"))
}

/// Removes the command line, the 4-byte size and `len` body bytes from `src`; returns the body.
fn take_body(src: &mut BytesMut, body_start: usize, len: usize) -> Bytes {
    let mut command = src.split_to(body_start + 4 + len);
    command.advance(body_start + 4);
    command.freeze()
}

fn read_i32(bytes: &[u8]) -> Option<i32> {
    let raw: [u8; 4] = bytes.get(..4)?.try_into().ok()?;
    Some(i32::from_be_bytes(raw))
}

/// Parses upstream's unsigned decimal: ASCII digits only; empty is 0; overflow is an error.
pub fn parse_number(raw: &[u8]) -> Option<u64> {
    raw.iter().try_fold(0u64, |acc, &byte| {
        if byte.is_ascii_digit() {
            acc.checked_mul(10)?.checked_add(u64::from(byte - b'0'))
        } else {
            None
        }
    })
}

fn lossy(raw: &[u8]) -> std::borrow::Cow<'_, str> {
    String::from_utf8_lossy(raw)
}

/// Quotes bytes the way Go's `%q` does for a byte string.
pub fn go_quote(raw: &[u8]) -> String {
    let mut out = String::with_capacity(raw.len() + 2);
    out.push('"');
    for chunk in raw.utf8_chunks() {
        for ch in chunk.valid().chars() {
            match ch {
                '"' => out.push_str("\\\""),
                '\\' => out.push_str("\\\\"),
                '\u{7}' => out.push_str("\\a"),
                '\u{8}' => out.push_str("\\b"),
                '\u{c}' => out.push_str("\\f"),
                '\n' => out.push_str("\\n"),
                '\r' => out.push_str("\\r"),
                '\t' => out.push_str("\\t"),
                '\u{b}' => out.push_str("\\v"),
                ch if (ch as u32) < 0x20 || ch == '\u{7f}' => {
                    let _ = write!(out, "\\x{:02x}", ch as u32);
                }
                ch if ch.is_control() => {
                    let _ = write!(out, "\\u{:04x}", ch as u32);
                }
                ch => out.push(ch),
            }
        }
        for byte in chunk.invalid() {
            let _ = write!(out, "\\x{byte:02x}");
        }
    }
    out.push('"');
    out
}

impl Encoder<&Command> for CommandCodec {
    type Error = ProtocolError;

    fn encode(&mut self, command: &Command, dst: &mut BytesMut) -> Result<(), ProtocolError> {
        encode_command(command, dst);
        Ok(())
    }
}

/// Appends the wire form of `command` to `dst` (what a client sends).
pub fn encode_command(command: &Command, dst: &mut BytesMut) {
    fn line(dst: &mut BytesMut, words: &[&[u8]]) {
        for (index, word) in words.iter().enumerate() {
            if index > 0 {
                dst.put_u8(b' ');
            }
            dst.put_slice(word);
        }
        dst.put_u8(b'\n');
    }
    fn sized(dst: &mut BytesMut, body: &[u8]) {
        dst.put_i32(body.len() as i32);
        dst.put_slice(body);
    }
    match command {
        Command::Identify(body) => {
            line(dst, &[b"IDENTIFY"]);
            sized(dst, body);
        }
        Command::Auth(body) => {
            line(dst, &[b"AUTH"]);
            sized(dst, body);
        }
        Command::Sub { topic, channel } => line(
            dst,
            &[
                b"SUB",
                topic.as_str().as_bytes(),
                channel.as_str().as_bytes(),
            ],
        ),
        Command::Pub { topic, body } => {
            line(dst, &[b"PUB", topic.as_str().as_bytes()]);
            sized(dst, body);
        }
        Command::Mpub { topic, bodies } => {
            line(dst, &[b"MPUB", topic.as_str().as_bytes()]);
            let size: usize = 4 + bodies.iter().map(|body| 4 + body.len()).sum::<usize>();
            dst.reserve(4 + size);
            dst.put_i32(size as i32);
            dst.put_i32(bodies.len() as i32);
            for body in bodies {
                sized(dst, body);
            }
        }
        Command::Dpub {
            topic,
            defer_ms,
            body,
        } => {
            line(
                dst,
                &[
                    b"DPUB",
                    topic.as_str().as_bytes(),
                    defer_ms.to_string().as_bytes(),
                ],
            );
            sized(dst, body);
        }
        Command::Rdy(count) => line(dst, &[b"RDY", count.to_string().as_bytes()]),
        Command::Fin(id) => line(dst, &[b"FIN", id.as_bytes()]),
        Command::Req { id, timeout_ms } => line(
            dst,
            &[b"REQ", id.as_bytes(), timeout_ms.to_string().as_bytes()],
        ),
        Command::Touch(id) => line(dst, &[b"TOUCH", id.as_bytes()]),
        Command::Cls => line(dst, &[b"CLS"]),
        Command::Nop => line(dst, &[b"NOP"]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mpub_topic_before_body() {
        let codec = CommandCodec::default();
        let topic = |src: &[u8]| codec.mpub_topic_before_body(src).map(|t| t.to_string());
        assert_eq!(topic(b"MPUB t1\n"), Some("t1".to_owned()));
        assert_eq!(topic(b"MPUB t1\r\n\x00\x00"), Some("t1".to_owned()));
        assert_eq!(topic(b"MPUB t1"), None, "line not complete");
        assert_eq!(topic(b"MPUB bad:name\n"), None);
        assert_eq!(topic(b"MPUB\n"), None);
        assert_eq!(topic(b"PUB t1\n"), None);
        let tls_required = CommandCodec {
            tls_required: true,
            ..CommandCodec::default()
        };
        assert_eq!(tls_required.mpub_topic_before_body(b"MPUB t1\n"), None);
    }
}
