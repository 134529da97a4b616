//! `nsq-protocol`: every NSQ wire format, and nothing else.
//!
//! * [`names`]: validated [`TopicName`] / [`ChannelName`].
//! * [`message`]: [`Message`] and [`MessageId`]; the encoded form is both the message frame payload
//!   and the disk-queue record payload.
//! * [`frame`]: server → client frames (`[size][type][data]`) and the client-side [`FrameCodec`].
//! * [`command`]: client → server commands and the server-side [`CommandCodec`], which applies
//!   upstream's checks in upstream's order with upstream's error strings.
//! * [`identify`]: the IDENTIFY body, negotiation rules and reply.
//! * [`error`]: [`ErrorCode`] (`E_*`) and [`ClientError`].
//! * [`api`]: the JSON shapes of nsqd's HTTP API (`/stats`, `/info`).
//!
//! This crate holds no daemon state and does no I/O outside the optional `client` module.
#![warn(missing_docs)]

pub mod api;
#[cfg(feature = "client")]
pub mod client;
pub mod command;
pub mod error;
pub mod frame;
pub mod identify;
pub mod lookup;
pub mod message;
pub mod names;

pub use command::{Command, CommandCodec, ConnectionState, Limits, MAGIC_V2};
pub use error::{ClientError, ErrorCode, ProtocolError};
pub use frame::{Frame, FrameCodec, FrameType};
pub use identify::{IdentifyPolicy, IdentifyRequest, IdentifyResponse, Negotiated};
pub use message::{Message, MessageId};
pub use names::{ChannelName, TopicName};

/// The NSQ protocol version this implementation speaks (reported as `version`).
pub const NSQ_VERSION: &str = "1.3.0";
