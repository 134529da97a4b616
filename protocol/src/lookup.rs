//! nsqlookupd's wire formats: the "V1" TCP registration protocol nsqd speaks, and the HTTP JSON
//! shapes lookupd serves.
//!
//! # TCP ("V1")
//!
//! ```text
//! nsqd -> lookupd   "  V1"                                   magic, once
//!                   "IDENTIFY\n" [i32 BE size][JSON PeerInfo]
//!                   "REGISTER <topic> [<channel>]\n"
//!                   "UNREGISTER <topic> [<channel>]\n"
//!                   "PING\n"
//! lookupd -> nsqd   [i32 BE size][payload]                   no frame type, errors included
//! ```
//!
//! A command line is trimmed of surrounding whitespace (Go's `strings.TrimSpace`) and split on
//! every single space; extra parameters are ignored. Payloads are `OK`, the IDENTIFY reply
//! ([`LookupdInfo`] JSON), or `<E_CODE> <description>`. Every error is fatal: lookupd writes it and
//! closes the connection.
//!
//! * Server side: [`LookupServerCodec`] decodes [`LookupCommand`]s (applying upstream's checks in
//!   upstream's order with upstream's error strings, see [`ClientError`]) and encodes responses.
//! * Client side (nsqd): [`LookupClientCodec`] encodes [`LookupCommand`]s and decodes response
//!   payloads; write [`MAGIC_V1`] first.
//!
//! # HTTP JSON
//!
//! [`LookupResponse`], [`TopicsResponse`], [`ChannelsResponse`], [`NodesResponse`],
//! [`InfoResponse`], [`DebugResponse`] and [`ErrorResponse`] serialize with upstream's key order.
//! Producer and node objects carry `topology_zone` / `topology_region` (post-1.3.0 upstream); they
//! default to `""` when a 1.3.0 lookupd leaves them out.

use crate::command::MAX_LINE_LENGTH;
use crate::error::{ClientError, ErrorCode, ProtocolError};
use crate::names::{ChannelName, TopicName};
use bytes::{Buf, BufMut, Bytes, BytesMut};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;
use tokio_util::codec::{Decoder, Encoder};

/// The four bytes an nsqd sends first on a lookupd connection.
pub const MAGIC_V1: &[u8; 4] = b"  V1";

/// The payload of every successful command except IDENTIFY.
pub const OK: &[u8] = b"OK";

/// Largest IDENTIFY body lookupd accepts by default (nsqd's default `--max-body-size`).
///
/// Upstream reads the size without any bound; a negative or huge size crashes it or exhausts its
/// memory. We answer `E_BAD_BODY IDENTIFY failed to read body size` instead.
pub const DEFAULT_MAX_IDENTIFY_BODY_SIZE: usize = 5 * 1024 * 1024;

/// Largest response payload [`LookupClientCodec::default`] accepts (nsqd's default
/// `--max-body-size`).
pub const DEFAULT_MAX_RESPONSE_SIZE: usize = 5 * 1024 * 1024;

/// A command an nsqd sends to nsqlookupd.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LookupCommand {
    /// `PING`: keeps the producer alive (refreshes its `last_update` once identified).
    Ping,
    /// `IDENTIFY` with the node's description.
    Identify(PeerInfo),
    /// `REGISTER <topic> [<channel>]`.
    Register {
        /// The topic the node has.
        topic: TopicName,
        /// The channel the node has, if this registration is for a channel.
        channel: Option<ChannelName>,
    },
    /// `UNREGISTER <topic> [<channel>]`.
    Unregister {
        /// The topic the node no longer has (or whose channel it no longer has).
        topic: TopicName,
        /// The channel the node no longer has.
        channel: Option<ChannelName>,
    },
}

impl LookupCommand {
    /// The command's wire name.
    pub fn name(&self) -> &'static str {
        match self {
            LookupCommand::Ping => "PING",
            LookupCommand::Identify(_) => "IDENTIFY",
            LookupCommand::Register { .. } => "REGISTER",
            LookupCommand::Unregister { .. } => "UNREGISTER",
        }
    }
}

/// The IDENTIFY body: what an nsqd tells lookupd about itself.
///
/// Serializes with upstream's key order (alphabetical, as Go marshals a map). lookupd requires
/// `broadcast_address`, `tcp_port`, `http_port` and `version` to be non-empty / non-zero. Ports are
/// the nsqd's *broadcast* ports; they are Go `int`s upstream, so any non-zero integer is accepted.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct PeerInfo {
    /// Address clients should use to reach the nsqd.
    pub broadcast_address: String,
    /// The nsqd's OS hostname.
    pub hostname: String,
    /// The nsqd's broadcast HTTP port.
    pub http_port: i64,
    /// The nsqd's broadcast TCP port.
    pub tcp_port: i64,
    /// Topology hint (post-1.3.0).
    pub topology_region: String,
    /// Topology hint (post-1.3.0).
    pub topology_zone: String,
    /// The nsqd's version, e.g. `1.3.0`.
    pub version: String,
}

impl PeerInfo {
    /// Decodes an IDENTIFY body the way upstream does (Go's `json.Unmarshal` into its `PeerInfo`),
    /// then checks the required fields.
    ///
    /// Like Go: unknown keys are ignored, keys match case-insensitively, `null` leaves a field
    /// empty (a top-level `null` is an empty object), and a known key with the wrong type fails.
    pub fn from_identify_body(body: &[u8]) -> Result<Self, ClientError> {
        let decode_failed =
            || ClientError::new(ErrorCode::BadBody, "IDENTIFY failed to decode JSON body");
        let value: Value = serde_json::from_slice(body).map_err(|_| decode_failed())?;
        let mut info = PeerInfo::default();
        match value {
            Value::Null => {}
            Value::Object(fields) => {
                for (key, value) in fields {
                    info.set_field(&key, value).map_err(|()| decode_failed())?;
                }
            }
            _ => return Err(decode_failed()),
        }
        if info.broadcast_address.is_empty()
            || info.tcp_port == 0
            || info.http_port == 0
            || info.version.is_empty()
        {
            return Err(ClientError::new(
                ErrorCode::BadBody,
                "IDENTIFY missing fields",
            ));
        }
        Ok(info)
    }

    /// The compact JSON body an nsqd sends.
    pub fn to_identify_body(&self) -> Result<Vec<u8>, serde_json::Error> {
        serde_json::to_vec(self)
    }

    fn set_field(&mut self, key: &str, value: Value) -> Result<(), ()> {
        // Go prefers an exact field-name match and falls back to a case-insensitive one.
        const FIELDS: [&str; 8] = [
            "remote_address",
            "hostname",
            "broadcast_address",
            "tcp_port",
            "http_port",
            "version",
            "topology_zone",
            "topology_region",
        ];
        let Some(field) = FIELDS
            .iter()
            .find(|field| **field == key)
            .or_else(|| FIELDS.iter().find(|field| field.eq_ignore_ascii_case(key)))
        else {
            return Ok(());
        };
        if value.is_null() {
            return Ok(());
        }
        match *field {
            // lookupd overwrites the remote address with the connection's; only its type counts.
            "remote_address" => go_string(value).map(drop),
            "hostname" => go_string(value).map(|text| self.hostname = text),
            "broadcast_address" => go_string(value).map(|text| self.broadcast_address = text),
            "tcp_port" => go_int(&value).map(|port| self.tcp_port = port),
            "http_port" => go_int(&value).map(|port| self.http_port = port),
            "version" => go_string(value).map(|text| self.version = text),
            "topology_zone" => go_string(value).map(|text| self.topology_zone = text),
            "topology_region" => go_string(value).map(|text| self.topology_region = text),
            _ => Ok(()),
        }
    }
}

fn go_string(value: Value) -> Result<String, ()> {
    match value {
        Value::String(text) => Ok(text),
        _ => Err(()),
    }
}

fn go_int(value: &Value) -> Result<i64, ()> {
    value.as_i64().ok_or(())
}

/// lookupd's answer to IDENTIFY: its own broadcast address, hostname, listening ports and version.
///
/// Keys are alphabetical (upstream marshals a Go map). nsqd uses `broadcast_address:http_port` as
/// this lookupd's HTTP address; an empty `broadcast_address` means "skip it for HTTP".
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct LookupdInfo {
    /// lookupd's `--broadcast-address`.
    pub broadcast_address: String,
    /// lookupd's OS hostname.
    pub hostname: String,
    /// lookupd's actual HTTP port.
    pub http_port: u16,
    /// lookupd's actual TCP port.
    pub tcp_port: u16,
    /// lookupd's version.
    pub version: String,
}

impl LookupdInfo {
    /// Parses an IDENTIFY reply payload; `None` if it is not this JSON object (for example an
    /// `E_*` error).
    pub fn from_json(payload: &[u8]) -> Option<Self> {
        serde_json::from_slice(payload).ok()
    }
}

/// Server-side decoder of [`LookupCommand`]s and encoder of responses (`[i32 size][payload]`).
///
/// Decoding applies upstream's checks in upstream's order, reporting the first failure as
/// [`ProtocolError::Client`] with upstream's exact text; every such error is fatal. A command line
/// longer than [`MAX_LINE_LENGTH`] is [`ProtocolError::LineTooLong`] (upstream has no bound; close
/// the connection without an answer).
#[derive(Debug, Clone)]
pub struct LookupServerCodec {
    /// Whether the connection has completed IDENTIFY. Set by the decoder when it yields
    /// [`LookupCommand::Identify`]; REGISTER and UNREGISTER require it, a second IDENTIFY fails.
    pub identified: bool,
    /// Largest IDENTIFY body accepted.
    pub max_identify_body_size: usize,
}

impl LookupServerCodec {
    /// A decoder for a fresh connection (after the magic) with the given IDENTIFY body limit.
    pub fn new(max_identify_body_size: usize) -> Self {
        Self {
            identified: false,
            max_identify_body_size,
        }
    }
}

impl Default for LookupServerCodec {
    fn default() -> Self {
        Self::new(DEFAULT_MAX_IDENTIFY_BODY_SIZE)
    }
}

impl Decoder for LookupServerCodec {
    type Item = LookupCommand;
    type Error = ProtocolError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<LookupCommand>, ProtocolError> {
        let Some(newline) = src.iter().take(MAX_LINE_LENGTH).position(|&b| b == b'\n') else {
            if src.len() >= MAX_LINE_LENGTH {
                return Err(ProtocolError::LineTooLong {
                    max: MAX_LINE_LENGTH,
                });
            }
            return Ok(None);
        };
        let line = trim_space(&src[..newline]);
        let mut words = line.split(|&b| b == b' ');
        let name = words.next().unwrap_or_default();
        let params: Vec<&[u8]> = words.collect();
        let command = match name {
            b"PING" => LookupCommand::Ping,
            b"IDENTIFY" => return self.decode_identify(src, newline + 1),
            b"REGISTER" | b"UNREGISTER" => {
                let name = if name == b"REGISTER" {
                    "REGISTER"
                } else {
                    "UNREGISTER"
                };
                if !self.identified {
                    return Err(ClientError::invalid("client must IDENTIFY").into());
                }
                let (topic, channel) = topic_and_channel(name, &params)?;
                if name == "REGISTER" {
                    LookupCommand::Register { topic, channel }
                } else {
                    LookupCommand::Unregister { topic, channel }
                }
            }
            other => {
                return Err(ClientError::invalid(format!(
                    "invalid command {}",
                    String::from_utf8_lossy(other)
                ))
                .into());
            }
        };
        src.advance(newline + 1);
        Ok(Some(command))
    }

    /// At end of stream, an IDENTIFY still waiting for its size or body fails the way upstream
    /// reports a short read; any other incomplete line is dropped silently.
    fn decode_eof(&mut self, src: &mut BytesMut) -> Result<Option<LookupCommand>, ProtocolError> {
        if let Some(command) = self.decode(src)? {
            return Ok(Some(command));
        }
        let pending_identify = src
            .iter()
            .position(|&b| b == b'\n')
            .map(|newline| (trim_space(&src[..newline]), newline + 1))
            .filter(|(line, _)| line.split(|&b| b == b' ').next() == Some(&b"IDENTIFY"[..]));
        let result = match pending_identify {
            Some((_, body_start)) if src.len() < body_start + 4 => Err(ClientError::new(
                ErrorCode::BadBody,
                "IDENTIFY failed to read body size",
            )
            .into()),
            Some(_) => {
                Err(ClientError::new(ErrorCode::BadBody, "IDENTIFY failed to read body").into())
            }
            None => Ok(None),
        };
        src.clear();
        result
    }
}

impl LookupServerCodec {
    fn decode_identify(
        &mut self,
        src: &mut BytesMut,
        body_start: usize,
    ) -> Result<Option<LookupCommand>, ProtocolError> {
        if self.identified {
            return Err(ClientError::invalid("cannot IDENTIFY again").into());
        }
        let Some(size) = src
            .get(body_start..body_start + 4)
            .map(|raw| i32::from_be_bytes([raw[0], raw[1], raw[2], raw[3]]))
        else {
            return Ok(None);
        };
        let size = usize::try_from(size)
            .ok()
            .filter(|size| *size <= self.max_identify_body_size)
            .ok_or_else(|| {
                ClientError::new(ErrorCode::BadBody, "IDENTIFY failed to read body size")
            })?;
        let end = body_start + 4 + size;
        if src.len() < end {
            src.reserve(end - src.len());
            return Ok(None);
        }
        let info = PeerInfo::from_identify_body(&src[body_start + 4..end])?;
        src.advance(end);
        self.identified = true;
        Ok(Some(LookupCommand::Identify(info)))
    }
}

impl Encoder<&[u8]> for LookupServerCodec {
    type Error = ProtocolError;

    fn encode(&mut self, payload: &[u8], dst: &mut BytesMut) -> Result<(), ProtocolError> {
        write_response(dst, payload);
        Ok(())
    }
}

/// Appends a lookupd response (`[i32 BE size][payload]`) to `dst`.
pub fn write_response(dst: &mut BytesMut, payload: &[u8]) {
    dst.reserve(4 + payload.len());
    // Responses are tiny (OK, a short JSON object or an error line).
    dst.put_i32(i32::try_from(payload.len()).unwrap_or(i32::MAX));
    dst.put_slice(payload);
}

/// Client-side (nsqd) encoder of [`LookupCommand`]s and decoder of response payloads.
///
/// Send [`MAGIC_V1`] on the raw connection before the first command. Each decoded item is one
/// response payload: `OK`, the IDENTIFY reply JSON ([`LookupdInfo::from_json`]) or an `E_*` error.
#[derive(Debug, Clone)]
pub struct LookupClientCodec {
    max_response_size: usize,
}

impl LookupClientCodec {
    /// A codec that rejects responses larger than `max_response_size` bytes (nsqd passes its
    /// `--max-body-size`).
    pub fn new(max_response_size: usize) -> Self {
        Self { max_response_size }
    }
}

impl Default for LookupClientCodec {
    fn default() -> Self {
        Self::new(DEFAULT_MAX_RESPONSE_SIZE)
    }
}

impl Decoder for LookupClientCodec {
    type Item = Bytes;
    type Error = ProtocolError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Bytes>, ProtocolError> {
        let Some(raw) = src.get(..4) else {
            return Ok(None);
        };
        let size = i32::from_be_bytes([raw[0], raw[1], raw[2], raw[3]]);
        let size = usize::try_from(size)
            .ok()
            .filter(|size| *size <= self.max_response_size)
            .ok_or_else(|| ProtocolError::BadFrame(format!("invalid response size {size}")))?;
        if src.len() < 4 + size {
            src.reserve(4 + size - src.len());
            return Ok(None);
        }
        src.advance(4);
        Ok(Some(src.split_to(size).freeze()))
    }
}

impl Encoder<&LookupCommand> for LookupClientCodec {
    type Error = ProtocolError;

    fn encode(&mut self, command: &LookupCommand, dst: &mut BytesMut) -> Result<(), ProtocolError> {
        encode_command(command, dst).map_err(|err| ProtocolError::Io(std::io::Error::other(err)))
    }
}

/// Appends the wire form of `command` to `dst` (what nsqd sends).
pub fn encode_command(
    command: &LookupCommand,
    dst: &mut BytesMut,
) -> Result<(), serde_json::Error> {
    fn topic_line(
        dst: &mut BytesMut,
        name: &str,
        topic: &TopicName,
        channel: Option<&ChannelName>,
    ) {
        dst.put_slice(name.as_bytes());
        dst.put_u8(b' ');
        dst.put_slice(topic.as_str().as_bytes());
        if let Some(channel) = channel {
            dst.put_u8(b' ');
            dst.put_slice(channel.as_str().as_bytes());
        }
        dst.put_u8(b'\n');
    }
    match command {
        LookupCommand::Ping => dst.put_slice(b"PING\n"),
        LookupCommand::Identify(info) => {
            let body = info.to_identify_body()?;
            dst.reserve(9 + 4 + body.len());
            dst.put_slice(b"IDENTIFY\n");
            dst.put_i32(i32::try_from(body.len()).unwrap_or(i32::MAX));
            dst.put_slice(&body);
        }
        LookupCommand::Register { topic, channel } => {
            topic_line(dst, "REGISTER", topic, channel.as_ref());
        }
        LookupCommand::Unregister { topic, channel } => {
            topic_line(dst, "UNREGISTER", topic, channel.as_ref());
        }
    }
    Ok(())
}

/// Checks REGISTER/UNREGISTER parameters like upstream's `getTopicChan`: at least a topic; the
/// topic, then the channel (if any, and non-empty) must be valid names.
fn topic_and_channel(
    name: &str,
    params: &[&[u8]],
) -> Result<(TopicName, Option<ChannelName>), ClientError> {
    let Some(raw_topic) = params.first() else {
        return Err(ClientError::invalid(format!(
            "{name} insufficient number of params"
        )));
    };
    let raw_channel = params.get(1).copied().filter(|raw| !raw.is_empty());
    let topic = TopicName::try_from(*raw_topic).map_err(|_| {
        ClientError::new(
            ErrorCode::BadTopic,
            format!(
                "{name} topic name '{}' is not valid",
                String::from_utf8_lossy(raw_topic)
            ),
        )
    })?;
    let channel = raw_channel
        .map(|raw| {
            ChannelName::try_from(raw).map_err(|_| {
                ClientError::new(
                    ErrorCode::BadChannel,
                    format!(
                        "{name} channel name '{}' is not valid",
                        String::from_utf8_lossy(raw)
                    ),
                )
            })
        })
        .transpose()?;
    Ok((topic, channel))
}

/// Go's `bytes.TrimSpace`: strips leading and trailing Unicode white space; invalid UTF-8 is not
/// space.
fn trim_space(mut line: &[u8]) -> &[u8] {
    while let Some(len) = leading_space_len(line) {
        line = &line[len..];
    }
    while let Some(len) = trailing_space_len(line) {
        line = &line[..line.len() - len];
    }
    line
}

fn leading_space_len(bytes: &[u8]) -> Option<usize> {
    let first = *bytes.first()?;
    let len = match first {
        0x00..=0x7f => 1,
        0xc0..=0xdf => 2,
        0xe0..=0xef => 3,
        0xf0..=0xf7 => 4,
        _ => return None,
    };
    is_space(bytes.get(..len)?).then_some(len)
}

fn trailing_space_len(bytes: &[u8]) -> Option<usize> {
    let start = (bytes.len().saturating_sub(4)..bytes.len())
        .rev()
        .find(|&index| bytes[index] & 0xc0 != 0x80)?;
    is_space(&bytes[start..]).then_some(bytes.len() - start)
}

fn is_space(encoded: &[u8]) -> bool {
    let Ok(text) = std::str::from_utf8(encoded) else {
        return false;
    };
    let mut chars = text.chars();
    matches!((chars.next(), chars.next()), (Some(ch), None) if ch.is_whitespace())
}

/// A producer in `GET /lookup` (upstream's `PeerInfo` JSON), in upstream's key order.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ProducerInfo {
    /// The nsqd's lookupd connection as lookupd sees it (`ip:port`).
    pub remote_address: String,
    /// The nsqd's OS hostname.
    pub hostname: String,
    /// Address clients should use to reach the nsqd.
    pub broadcast_address: String,
    /// The nsqd's broadcast TCP port.
    pub tcp_port: i64,
    /// The nsqd's broadcast HTTP port.
    pub http_port: i64,
    /// The nsqd's version.
    pub version: String,
    /// Topology hint (post-1.3.0).
    pub topology_zone: String,
    /// Topology hint (post-1.3.0).
    pub topology_region: String,
}

/// `GET /lookup?topic=T`: every channel key of T and the active producers of T.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LookupResponse {
    /// Channel names registered for the topic (producers or not).
    pub channels: Vec<String>,
    /// Producers that are neither inactive nor tombstoned.
    pub producers: Vec<ProducerInfo>,
}

/// `GET /topics`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicsResponse {
    /// Every topic key, including those without producers.
    pub topics: Vec<String>,
}

/// `GET /channels?topic=T`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChannelsResponse {
    /// Every channel key of the topic.
    pub channels: Vec<String>,
}

/// A node in `GET /nodes`, in upstream's key order.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct NodeInfo {
    /// The nsqd's lookupd connection as lookupd sees it (`ip:port`).
    pub remote_address: String,
    /// The nsqd's OS hostname.
    pub hostname: String,
    /// Address clients should use to reach the nsqd.
    pub broadcast_address: String,
    /// The nsqd's broadcast TCP port.
    pub tcp_port: i64,
    /// The nsqd's broadcast HTTP port.
    pub http_port: i64,
    /// The nsqd's version.
    pub version: String,
    /// Topology hint (post-1.3.0).
    pub topology_zone: String,
    /// Topology hint (post-1.3.0).
    pub topology_region: String,
    /// `tombstones[i]`: the node is currently tombstoned for `topics[i]`.
    pub tombstones: Vec<bool>,
    /// Topics the node is registered for.
    pub topics: Vec<String>,
}

/// `GET /nodes`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodesResponse {
    /// Every identified, active nsqd (tombstoned or not).
    pub producers: Vec<NodeInfo>,
}

/// `GET /info`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct InfoResponse {
    /// lookupd's version.
    pub version: String,
}

/// One producer of one registration in `GET /debug`; keys alphabetical as upstream (a Go map).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct DebugProducer {
    /// Broadcast address.
    pub broadcast_address: String,
    /// OS hostname.
    pub hostname: String,
    /// Broadcast HTTP port.
    pub http_port: i64,
    /// The producer's identity: its lookupd connection's remote address.
    pub id: String,
    /// Last IDENTIFY or PING, Unix nanoseconds.
    pub last_update: i64,
    /// Broadcast TCP port.
    pub tcp_port: i64,
    /// Whether the producer was ever tombstoned for this registration.
    pub tombstoned: bool,
    /// When it was tombstoned, Unix nanoseconds ([`GO_ZERO_TIME_UNIX_NANOS`] if never).
    pub tombstoned_at: i64,
    /// Version.
    pub version: String,
}

/// What upstream shows as `tombstoned_at` for a never-tombstoned producer: Go's zero `time.Time`
/// converted with `UnixNano()`, which overflows.
pub const GO_ZERO_TIME_UNIX_NANOS: i64 = -6_795_364_578_871_345_152;

/// `GET /debug`: `"<category>:<key>:<subkey>"` → producers of that registration (registrations
/// without producers are left out).
pub type DebugResponse = BTreeMap<String, Vec<DebugProducer>>;

/// The body of every HTTP error: `{"message":"<CODE>"}`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorResponse {
    /// The error code, e.g. `TOPIC_NOT_FOUND`.
    pub message: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    const IDENTIFY_JSON: &str = r#"{"broadcast_address":"127.0.0.1","hostname":"fixture-host","tcp_port":4150,"http_port":4151,"version":"1.3.0"}"#;

    fn identify(json: &str) -> Vec<u8> {
        let mut raw = b"IDENTIFY\n".to_vec();
        raw.extend_from_slice(&(json.len() as i32).to_be_bytes());
        raw.extend_from_slice(json.as_bytes());
        raw
    }

    fn fixture_peer() -> PeerInfo {
        PeerInfo {
            broadcast_address: "127.0.0.1".to_owned(),
            hostname: "fixture-host".to_owned(),
            http_port: 4151,
            tcp_port: 4150,
            version: "1.3.0".to_owned(),
            ..PeerInfo::default()
        }
    }

    fn register(topic: &str, channel: Option<&str>) -> LookupCommand {
        LookupCommand::Register {
            topic: topic.parse().unwrap(),
            channel: channel.map(|channel| channel.parse().unwrap()),
        }
    }

    fn unregister(topic: &str, channel: Option<&str>) -> LookupCommand {
        LookupCommand::Unregister {
            topic: topic.parse().unwrap(),
            channel: channel.map(|channel| channel.parse().unwrap()),
        }
    }

    /// Feeds `input` to a fresh server codec (identified or not), one byte at a time and all at
    /// once, and checks the commands decoded and the final error (if any). `expected_error` is
    /// the exact payload lookupd writes.
    fn check(
        identified: bool,
        input: &[u8],
        expected: &[LookupCommand],
        expected_error: Option<&str>,
    ) {
        fn run(
            identified: bool,
            chunks: Vec<&[u8]>,
        ) -> (Vec<LookupCommand>, Option<String>, BytesMut) {
            let mut codec = LookupServerCodec {
                identified,
                ..LookupServerCodec::default()
            };
            let mut buf = BytesMut::new();
            let mut commands = Vec::new();
            for chunk in chunks {
                buf.extend_from_slice(chunk);
                loop {
                    match codec.decode(&mut buf) {
                        Ok(Some(command)) => commands.push(command),
                        Ok(None) => break,
                        Err(ProtocolError::Client(err)) => {
                            return (commands, Some(err.to_frame_data()), buf);
                        }
                        Err(other) => return (commands, Some(other.to_string()), buf),
                    }
                }
            }
            (commands, None, buf)
        }
        let whole = run(identified, vec![input]);
        assert_eq!(
            whole.0,
            expected,
            "input {:?}",
            String::from_utf8_lossy(input)
        );
        assert_eq!(
            whole.1.as_deref(),
            expected_error,
            "input {:?}",
            String::from_utf8_lossy(input)
        );
        if expected_error.is_none() {
            assert!(whole.2.is_empty(), "left over: {:?}", whole.2);
        }
        let bytewise = run(identified, input.chunks(1).collect());
        assert_eq!((bytewise.0, bytewise.1), (whole.0, whole.1));
    }

    #[test]
    fn decodes_commands() {
        check(false, b"PING\n", &[LookupCommand::Ping], None);
        check(false, b"  PING \r\n", &[LookupCommand::Ping], None);
        check(false, b"PING extra params\n", &[LookupCommand::Ping], None);
        check(
            false,
            &identify(IDENTIFY_JSON),
            &[LookupCommand::Identify(fixture_peer())],
            None,
        );
        check(true, b"REGISTER t\n", &[register("t", None)], None);
        check(true, b"REGISTER t c\n", &[register("t", Some("c"))], None);
        check(true, b"  REGISTER t \r\n", &[register("t", None)], None);
        check(
            true,
            b"REGISTER t c extra\n",
            &[register("t", Some("c"))],
            None,
        );
        // Go's TrimSpace strips Unicode spaces too (U+00A0 here).
        check(
            true,
            "REGISTER t\u{a0}\n".as_bytes(),
            &[register("t", None)],
            None,
        );
        check(
            true,
            b"REGISTER t e#ephemeral\n",
            &[register("t", Some("e#ephemeral"))],
            None,
        );
        // "REGISTER t " trims to a bare topic; "REGISTER t  c" has an empty channel param.
        check(true, b"REGISTER t  c\n", &[register("t", None)], None);
        check(true, b"UNREGISTER t\n", &[unregister("t", None)], None);
        check(
            true,
            b"UNREGISTER t c\n",
            &[unregister("t", Some("c"))],
            None,
        );
        check(
            true,
            b"PING\nREGISTER a\nUNREGISTER a\n",
            &[
                LookupCommand::Ping,
                register("a", None),
                unregister("a", None),
            ],
            None,
        );
        // An IDENTIFY body may be followed by the next command in the same read.
        let mut both = identify(IDENTIFY_JSON);
        both.extend_from_slice(b"REGISTER t c\n");
        check(
            false,
            &both,
            &[
                LookupCommand::Identify(fixture_peer()),
                register("t", Some("c")),
            ],
            None,
        );
    }

    #[test]
    fn decode_errors_match_upstream() {
        let cases: &[(bool, &[u8], &str)] = &[
            (false, b"FOO bar\n", "E_INVALID invalid command FOO"),
            (true, b"BOGUS\n", "E_INVALID invalid command BOGUS"),
            (false, b"\n", "E_INVALID invalid command "),
            (false, b"ping\n", "E_INVALID invalid command ping"),
            (false, b"REGISTER t c\n", "E_INVALID client must IDENTIFY"),
            (false, b"UNREGISTER t\n", "E_INVALID client must IDENTIFY"),
            (false, b"REGISTER\n", "E_INVALID client must IDENTIFY"),
            (
                true,
                b"REGISTER\n",
                "E_INVALID REGISTER insufficient number of params",
            ),
            (
                true,
                b"UNREGISTER \n",
                "E_INVALID UNREGISTER insufficient number of params",
            ),
            (
                true,
                b"REGISTER bad!topic\n",
                "E_BAD_TOPIC REGISTER topic name 'bad!topic' is not valid",
            ),
            (
                true,
                b"REGISTER  t\n",
                "E_BAD_TOPIC REGISTER topic name '' is not valid",
            ),
            (
                true,
                b"UNREGISTER bad! c\n",
                "E_BAD_TOPIC UNREGISTER topic name 'bad!' is not valid",
            ),
            (
                true,
                b"REGISTER t bad!chan\n",
                "E_BAD_CHANNEL REGISTER channel name 'bad!chan' is not valid",
            ),
            (
                true,
                b"UNREGISTER t bad!chan\n",
                "E_BAD_CHANNEL UNREGISTER channel name 'bad!chan' is not valid",
            ),
            (true, b"IDENTIFY\n", "E_INVALID cannot IDENTIFY again"),
            (
                false,
                b"IDENTIFY\n\xff\xff\xff\xff",
                "E_BAD_BODY IDENTIFY failed to read body size",
            ),
            (
                false,
                b"IDENTIFY\n\x00\x50\x00\x01",
                "E_BAD_BODY IDENTIFY failed to read body size",
            ),
            (
                false,
                b"IDENTIFY\n\x00\x00\x00\x07notjson",
                "E_BAD_BODY IDENTIFY failed to decode JSON body",
            ),
            (
                false,
                b"IDENTIFY\n\x00\x00\x00\x00",
                "E_BAD_BODY IDENTIFY failed to decode JSON body",
            ),
            (
                false,
                b"IDENTIFY\n\x00\x00\x00\x02[]",
                "E_BAD_BODY IDENTIFY failed to decode JSON body",
            ),
            (
                false,
                b"IDENTIFY\n\x00\x00\x00\x04null",
                "E_BAD_BODY IDENTIFY missing fields",
            ),
            (
                false,
                b"IDENTIFY\n\x00\x00\x00\x02{}",
                "E_BAD_BODY IDENTIFY missing fields",
            ),
        ];
        for (identified, input, error) in cases {
            check(*identified, input, &[], Some(error));
        }
        let missing_version =
            r#"{"broadcast_address":"127.0.0.1","tcp_port":4150,"http_port":4151}"#;
        check(
            false,
            &identify(missing_version),
            &[],
            Some("E_BAD_BODY IDENTIFY missing fields"),
        );
        // The error comes after the commands before it.
        check(
            true,
            b"PING\nREGISTER t\nNOPE\nPING\n",
            &[LookupCommand::Ping, register("t", None)],
            Some("E_INVALID invalid command NOPE"),
        );
    }

    #[test]
    fn identify_body_like_go() {
        let ok = |json: &str| PeerInfo::from_identify_body(json.as_bytes());
        let full = r#"{"broadcast_address":"b","hostname":"h","http_port":2,"tcp_port":1,"topology_region":"r","topology_zone":"z","version":"v","remote_address":"ignored:1","extra":[1,{"x":null}]}"#;
        assert_eq!(
            ok(full).unwrap(),
            PeerInfo {
                broadcast_address: "b".to_owned(),
                hostname: "h".to_owned(),
                http_port: 2,
                tcp_port: 1,
                topology_region: "r".to_owned(),
                topology_zone: "z".to_owned(),
                version: "v".to_owned(),
            }
        );
        // Case-insensitive keys, null leaves a field empty, negative ports are non-zero.
        let folded = r#"{"BROADCAST_ADDRESS":"b","Tcp_Port":-1,"http_port":70000,"VERSION":"v","hostname":null}"#;
        let info = ok(folded).unwrap();
        assert_eq!(
            (
                info.broadcast_address.as_str(),
                info.tcp_port,
                info.http_port
            ),
            ("b", -1, 70000)
        );
        assert_eq!(info.hostname, "");
        let failures = [
            (
                r#"{"broadcast_address":1,"tcp_port":1,"http_port":1,"version":"v"}"#,
                "decode",
            ),
            (
                r#"{"broadcast_address":"b","tcp_port":"1","http_port":1,"version":"v"}"#,
                "decode",
            ),
            (
                r#"{"broadcast_address":"b","tcp_port":1.5,"http_port":1,"version":"v"}"#,
                "decode",
            ),
            (
                r#"{"broadcast_address":"b","tcp_port":1,"http_port":1,"version":"v","remote_address":5}"#,
                "decode",
            ),
            (
                r#"{"broadcast_address":"b","tcp_port":1,"http_port":1,"version":"v"} x"#,
                "decode",
            ),
            (r#""text""#, "decode"),
            (
                r#"{"broadcast_address":"","tcp_port":1,"http_port":1,"version":"v"}"#,
                "missing",
            ),
            (
                r#"{"broadcast_address":"b","tcp_port":0,"http_port":1,"version":"v"}"#,
                "missing",
            ),
            (
                r#"{"broadcast_address":"b","tcp_port":1,"version":"v"}"#,
                "missing",
            ),
            (
                r#"{"broadcast_address":"b","tcp_port":1,"http_port":1,"version":null}"#,
                "missing",
            ),
        ];
        for (json, kind) in failures {
            let expected = if kind == "decode" {
                "E_BAD_BODY IDENTIFY failed to decode JSON body"
            } else {
                "E_BAD_BODY IDENTIFY missing fields"
            };
            assert_eq!(ok(json).unwrap_err().to_frame_data(), expected, "{json}");
        }
    }

    #[test]
    fn eof_in_identify_reports_short_read() {
        let cases: &[(&[u8], Option<&str>)] = &[
            (b"", None),
            (b"REGIS", None),
            (b"IDENTIFY", None),
            (
                b"IDENTIFY\n",
                Some("E_BAD_BODY IDENTIFY failed to read body size"),
            ),
            (
                b"IDENTIFY\n\x00\x00",
                Some("E_BAD_BODY IDENTIFY failed to read body size"),
            ),
            (
                b"IDENTIFY\n\x00\x00\x00\x10{\"a\"",
                Some("E_BAD_BODY IDENTIFY failed to read body"),
            ),
        ];
        for (input, expected) in cases {
            let mut codec = LookupServerCodec::default();
            let mut buf = BytesMut::from(*input);
            let got = match codec.decode_eof(&mut buf) {
                Ok(None) => None,
                Ok(Some(command)) => panic!("unexpected {command:?}"),
                Err(ProtocolError::Client(err)) => Some(err.to_frame_data()),
                Err(other) => panic!("unexpected {other}"),
            };
            assert_eq!(got.as_deref(), *expected, "{input:?}");
            assert!(buf.is_empty());
        }
    }

    #[test]
    fn overlong_line_is_rejected() {
        let mut codec = LookupServerCodec::default();
        let mut buf = BytesMut::from(&vec![b'A'; MAX_LINE_LENGTH][..]);
        assert!(matches!(
            codec.decode(&mut buf),
            Err(ProtocolError::LineTooLong { .. })
        ));
    }

    #[test]
    fn responses_have_no_frame_type() {
        let mut codec = LookupServerCodec::default();
        let mut buf = BytesMut::new();
        codec.encode(OK, &mut buf).unwrap();
        codec.encode(&b"E_BAD_PROTOCOL"[..], &mut buf).unwrap();
        assert_eq!(
            hex::encode(&buf),
            "000000024f4b0000000e455f4241445f50524f544f434f4c"
        );
        let mut client = LookupClientCodec::default();
        assert_eq!(client.decode(&mut buf).unwrap().unwrap(), OK);
        assert_eq!(
            client.decode(&mut buf).unwrap().unwrap(),
            &b"E_BAD_PROTOCOL"[..]
        );
        assert_eq!(client.decode(&mut buf).unwrap(), None);
    }

    #[test]
    fn client_codec_limits_and_partial_reads() {
        let mut client = LookupClientCodec::new(8);
        let mut buf = BytesMut::from(&b"\x00\x00\x00\x02O"[..]);
        assert_eq!(client.decode(&mut buf).unwrap(), None);
        buf.extend_from_slice(b"K\x00\x00\x00\x00");
        assert_eq!(client.decode(&mut buf).unwrap().unwrap(), OK);
        assert_eq!(client.decode(&mut buf).unwrap().unwrap(), &b""[..]);
        for bad in [&b"\xff\xff\xff\xfe"[..], &b"\x00\x00\x00\x09"[..]] {
            let mut buf = BytesMut::from(bad);
            assert!(matches!(
                client.decode(&mut buf),
                Err(ProtocolError::BadFrame(_))
            ));
        }
    }

    #[test]
    fn client_encoding_round_trips_through_server() {
        // What upstream nsqd 1.3.0 sent in fixtures/lookupd/nsqd_lookupd_tcp_conversation.json
        // (post-1.3.0 nsqd adds the topology keys in the same alphabetical order).
        let peer = PeerInfo {
            broadcast_address: "127.0.0.1".to_owned(),
            hostname: "vm".to_owned(),
            http_port: 25248,
            tcp_port: 26500,
            version: "1.3.0".to_owned(),
            ..PeerInfo::default()
        };
        assert_eq!(
            String::from_utf8(peer.to_identify_body().unwrap()).unwrap(),
            r#"{"broadcast_address":"127.0.0.1","hostname":"vm","http_port":25248,"tcp_port":26500,"topology_region":"","topology_zone":"","version":"1.3.0"}"#
        );
        let commands = vec![
            LookupCommand::Identify(peer),
            register("orders", Some("billing")),
            register("orders", None),
            unregister("live_t", Some("live_e#ephemeral")),
            unregister("live_t", None),
            LookupCommand::Ping,
        ];
        let mut client = LookupClientCodec::default();
        let mut wire = BytesMut::new();
        for command in &commands {
            client.encode(command, &mut wire).unwrap();
        }
        assert!(wire.ends_with(b"UNREGISTER live_t live_e#ephemeral\nUNREGISTER live_t\nPING\n"));
        let mut server = LookupServerCodec::default();
        let mut decoded = Vec::new();
        while let Some(command) = server.decode(&mut wire).unwrap() {
            decoded.push(command);
        }
        assert_eq!(decoded, commands);
        assert!(server.identified);
        assert_eq!(
            commands.iter().map(LookupCommand::name).collect::<Vec<_>>(),
            [
                "IDENTIFY",
                "REGISTER",
                "REGISTER",
                "UNREGISTER",
                "UNREGISTER",
                "PING"
            ]
        );
    }

    #[test]
    fn trim_space_matches_go() {
        let cases: &[(&[u8], &[u8])] = &[
            (b"", b""),
            (b" \t\r\x0b\x0c", b""),
            (b"  a b  ", b"a b"),
            ("\u{85}x\u{3000}".as_bytes(), b"x"),
            (b"\xffx\xff", b"\xffx\xff"),
            (b"\xa0x", b"\xa0x"),
        ];
        for (input, expected) in cases {
            assert_eq!(trim_space(input), *expected, "{input:?}");
        }
    }

    #[test]
    fn json_shapes_keep_upstream_key_order() {
        let info = LookupdInfo {
            broadcast_address: "127.0.0.1".to_owned(),
            hostname: "vm".to_owned(),
            http_port: 21161,
            tcp_port: 23683,
            version: "1.3.0".to_owned(),
        };
        let json = r#"{"broadcast_address":"127.0.0.1","hostname":"vm","http_port":21161,"tcp_port":23683,"version":"1.3.0"}"#;
        assert_eq!(serde_json::to_string(&info).unwrap(), json);
        assert_eq!(LookupdInfo::from_json(json.as_bytes()), Some(info));
        assert_eq!(LookupdInfo::from_json(b"E_INVALID"), None);

        let producer = ProducerInfo {
            remote_address: "127.0.0.1:44130".to_owned(),
            hostname: "vm".to_owned(),
            broadcast_address: "127.0.0.1".to_owned(),
            tcp_port: 26500,
            http_port: 25248,
            version: "1.3.0".to_owned(),
            ..ProducerInfo::default()
        };
        let lookup = LookupResponse {
            channels: vec!["all".to_owned()],
            producers: vec![producer.clone()],
        };
        assert_eq!(
            serde_json::to_string(&lookup).unwrap(),
            r#"{"channels":["all"],"producers":[{"remote_address":"127.0.0.1:44130","hostname":"vm","broadcast_address":"127.0.0.1","tcp_port":26500,"http_port":25248,"version":"1.3.0","topology_zone":"","topology_region":""}]}"#
        );
        // A 1.3.0 lookupd's answer (fixtures/lookupd/lookup_events.json) parses.
        let upstream = r#"{"channels":["all"],"producers":[{"remote_address":"127.0.0.1:44130","hostname":"vm","broadcast_address":"127.0.0.1","tcp_port":26500,"http_port":25248,"version":"1.3.0"}]}"#;
        assert_eq!(
            serde_json::from_str::<LookupResponse>(upstream).unwrap(),
            lookup
        );

        let nodes = NodesResponse {
            producers: vec![NodeInfo {
                remote_address: producer.remote_address,
                hostname: producer.hostname,
                broadcast_address: producer.broadcast_address,
                tcp_port: producer.tcp_port,
                http_port: producer.http_port,
                version: producer.version,
                tombstones: vec![true, false],
                topics: vec!["orders".to_owned(), "only_b".to_owned()],
                ..NodeInfo::default()
            }],
        };
        assert_eq!(
            serde_json::to_string(&nodes).unwrap(),
            r#"{"producers":[{"remote_address":"127.0.0.1:44130","hostname":"vm","broadcast_address":"127.0.0.1","tcp_port":26500,"http_port":25248,"version":"1.3.0","topology_zone":"","topology_region":"","tombstones":[true,false],"topics":["orders","only_b"]}]}"#
        );

        let mut debug = DebugResponse::new();
        debug.insert(
            "client::".to_owned(),
            vec![DebugProducer {
                broadcast_address: "127.0.0.1".to_owned(),
                hostname: "vm".to_owned(),
                http_port: 25248,
                id: "127.0.0.1:44130".to_owned(),
                last_update: 1_795_316_859_373_306_844,
                tcp_port: 26500,
                tombstoned: false,
                tombstoned_at: GO_ZERO_TIME_UNIX_NANOS,
                version: "1.3.0".to_owned(),
            }],
        );
        assert_eq!(
            serde_json::to_string(&debug).unwrap(),
            r#"{"client::":[{"broadcast_address":"127.0.0.1","hostname":"vm","http_port":25248,"id":"127.0.0.1:44130","last_update":1795316859373306844,"tcp_port":26500,"tombstoned":false,"tombstoned_at":-6795364578871345152,"version":"1.3.0"}]}"#
        );
        for (value, json) in [
            (
                serde_json::to_string(&TopicsResponse::default()).unwrap(),
                r#"{"topics":[]}"#,
            ),
            (
                serde_json::to_string(&ChannelsResponse::default()).unwrap(),
                r#"{"channels":[]}"#,
            ),
            (
                serde_json::to_string(&NodesResponse::default()).unwrap(),
                r#"{"producers":[]}"#,
            ),
            (
                serde_json::to_string(&InfoResponse {
                    version: "1.3.0".to_owned(),
                })
                .unwrap(),
                r#"{"version":"1.3.0"}"#,
            ),
            (
                serde_json::to_string(&ErrorResponse {
                    message: "NOT_FOUND".to_owned(),
                })
                .unwrap(),
                r#"{"message":"NOT_FOUND"}"#,
            ),
        ] {
            assert_eq!(value, json);
        }
    }
}
