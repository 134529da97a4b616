//! A small async NSQ client for tests, tools and benchmarks (feature `client`).
//!
//! * [`Connection`]: a raw connection. It sends arbitrary bytes or [`Command`]s and reads
//!   [`Frame`]s, optionally with a timeout. Nothing happens behind the caller's back (heartbeats
//!   are only answered by [`Connection::read_reply`]).
//! * [`Producer`]: IDENTIFY with `feature_negotiation`, then PUB/MPUB/DPUB, each awaiting its `OK`.
//!   [`Producer::send`] returns a [`PendingReply`] without waiting, so several commands can be in
//!   flight on one connection. The handle is cheap to clone; clones share the connection.
//! * [`Consumer`]: IDENTIFY, SUB, RDY, then a stream of [`Event`]s (messages, error frames) with
//!   FIN/REQ/TOUCH/CLS.
//!
//! Producers and consumers run one background task per connection. It writes queued commands in
//! batches (a burst of FINs becomes one write) from one buffer, reads frames into one buffer,
//! answers `_heartbeat_` with `NOP`, and matches `OK`/`CLOSE_WAIT`/JSON responses and fatal error
//! frames to the commands that expect a reply, in order. Dropping every handle closes the
//! connection after the queued commands are written.
//!
//! TLS, snappy, deflate and AUTH are not supported: IDENTIFY never requests an upgrade.

use crate::command::{Command, MAGIC_V2, encode_command};
use crate::error::{ErrorCode, ProtocolError};
use crate::frame::{CLOSE_WAIT, Frame, FrameCodec, OK};
use crate::identify::{IdentifyRequest, IdentifyResponse};
use crate::message::{Message, MessageId};
use crate::names::{ChannelName, TopicName};
use bytes::{Bytes, BytesMut};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpStream, ToSocketAddrs};
use tokio::sync::{mpsc, oneshot};
use tokio_util::codec::Decoder;

/// The `user_agent` sent when the caller does not set one.
pub const DEFAULT_USER_AGENT: &str = concat!("nsq-rs/", env!("CARGO_PKG_VERSION"));

/// Read buffer growth step; also the size above which a write batch is sent.
const BUFFER_SIZE: usize = 64 * 1024;
/// Commands that may wait for the connection task before senders block.
const COMMAND_QUEUE: usize = 1024;
/// How long a connection whose handles were all dropped waits for the server to close.
const CLOSE_GRACE: Duration = Duration::from_secs(2);

// ---- Connection ---------------------------------------------------------------------------------

/// A raw client connection: bytes and commands out, frames in.
#[derive(Debug)]
pub struct Connection {
    stream: TcpStream,
    read_buf: BytesMut,
    write_buf: BytesMut,
    codec: FrameCodec,
}

impl Connection {
    /// Connects and sends the `"  V2"` magic.
    pub async fn connect(addr: impl ToSocketAddrs) -> Result<Self, ProtocolError> {
        let mut connection = Self::connect_raw(addr).await?;
        connection.send_raw(MAGIC_V2).await?;
        Ok(connection)
    }

    /// Connects without sending anything (to test the magic itself).
    pub async fn connect_raw(addr: impl ToSocketAddrs) -> Result<Self, ProtocolError> {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        Ok(Self::from_stream(stream))
    }

    /// Wraps an already connected stream (the magic is not sent).
    pub fn from_stream(stream: TcpStream) -> Self {
        Self {
            stream,
            read_buf: BytesMut::with_capacity(BUFFER_SIZE),
            write_buf: BytesMut::new(),
            codec: FrameCodec::default(),
        }
    }

    /// Appends `command` to the write buffer; see [`Connection::flush`].
    pub fn queue(&mut self, command: &Command) {
        encode_command(command, &mut self.write_buf);
    }

    /// Appends raw bytes to the write buffer; see [`Connection::flush`].
    pub fn queue_raw(&mut self, bytes: &[u8]) {
        self.write_buf.extend_from_slice(bytes);
    }

    /// Writes everything queued.
    pub async fn flush(&mut self) -> Result<(), ProtocolError> {
        if !self.write_buf.is_empty() {
            self.stream.write_all(&self.write_buf).await?;
            self.write_buf.clear();
        }
        Ok(())
    }

    /// Writes `command` (after anything already queued).
    pub async fn send(&mut self, command: &Command) -> Result<(), ProtocolError> {
        self.queue(command);
        self.flush().await
    }

    /// Writes raw bytes (after anything already queued).
    pub async fn send_raw(&mut self, bytes: &[u8]) -> Result<(), ProtocolError> {
        self.queue_raw(bytes);
        self.flush().await
    }

    /// Reads the next frame. `Ok(None)`: the server closed the connection between frames.
    ///
    /// Cancel-safe: bytes already read stay buffered for the next call.
    pub async fn read_frame(&mut self) -> Result<Option<Frame>, ProtocolError> {
        loop {
            if let Some(frame) = self.codec.decode(&mut self.read_buf)? {
                return Ok(Some(frame));
            }
            if read_more(&mut self.stream, &mut self.read_buf).await? == 0 {
                return if self.read_buf.is_empty() {
                    Ok(None)
                } else {
                    Err(truncated_frame())
                };
            }
        }
    }

    /// [`Connection::read_frame`] with a deadline: [`ProtocolError::Timeout`] if no whole frame
    /// arrives in time.
    pub async fn read_frame_timeout(
        &mut self,
        timeout: Duration,
    ) -> Result<Option<Frame>, ProtocolError> {
        tokio::time::timeout(timeout, self.read_frame())
            .await
            .map_err(|_| ProtocolError::Timeout(timeout))?
    }

    /// Reads frames until the server closes the connection (a reset counts as closed) and returns
    /// them; [`ProtocolError::Timeout`] (dropping the frames read so far) if it is still open
    /// after `timeout`. For checking that an error is fatal.
    pub async fn read_until_closed(
        &mut self,
        timeout: Duration,
    ) -> Result<Vec<Frame>, ProtocolError> {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut frames = Vec::new();
        loop {
            match tokio::time::timeout_at(deadline, self.read_frame()).await {
                Err(_) => return Err(ProtocolError::Timeout(timeout)),
                Ok(Ok(Some(frame))) => frames.push(frame),
                Ok(Ok(None)) => return Ok(frames),
                Ok(Err(ProtocolError::Io(error)))
                    if error.kind() == std::io::ErrorKind::ConnectionReset =>
                {
                    return Ok(frames);
                }
                Ok(Err(error)) => return Err(error),
            }
        }
    }

    /// Reads until a response or error frame, answering heartbeats with `NOP` on the way.
    /// A response gives its data; an error frame gives [`ProtocolError::ErrorFrame`]; a message or
    /// the end of the connection is an error.
    pub async fn read_reply(&mut self) -> Result<Bytes, ProtocolError> {
        loop {
            match self.read_frame().await? {
                Some(frame) if frame.is_heartbeat() => self.send(&Command::Nop).await?,
                Some(Frame::Response(data)) => return Ok(data),
                Some(Frame::Error(data)) => return Err(error_frame(&data)),
                Some(Frame::Message(message)) => {
                    return Err(ProtocolError::UnexpectedFrame(format!(
                        "message {} while waiting for a reply",
                        message.id
                    )));
                }
                None => return Err(ProtocolError::Closed),
            }
        }
    }

    /// Sends `command` and waits for its reply ([`Connection::read_reply`]). Only for commands
    /// that get one: IDENTIFY, AUTH, SUB, PUB, MPUB, DPUB, CLS.
    pub async fn request(&mut self, command: &Command) -> Result<Bytes, ProtocolError> {
        self.send(command).await?;
        self.read_reply().await
    }

    /// Sends IDENTIFY with `request` as its body. `Some` with the parsed JSON reply when the
    /// request asked for `feature_negotiation`, `None` when the server answered `OK`.
    pub async fn identify(
        &mut self,
        request: &IdentifyRequest,
    ) -> Result<Option<IdentifyResponse>, ProtocolError> {
        let body = serde_json::to_vec(request).map_err(std::io::Error::other)?;
        let reply = self.request(&Command::Identify(body.into())).await?;
        if reply.as_ref() == OK {
            return Ok(None);
        }
        serde_json::from_slice(&reply).map(Some).map_err(|error| {
            ProtocolError::UnexpectedFrame(format!("IDENTIFY reply ({error}): {}", lossy(&reply)))
        })
    }

    /// Sends SUB and waits for its `OK`.
    pub async fn subscribe(
        &mut self,
        topic: &TopicName,
        channel: &ChannelName,
    ) -> Result<(), ProtocolError> {
        let reply = self
            .request(&Command::Sub {
                topic: topic.clone(),
                channel: channel.clone(),
            })
            .await?;
        expect_ok(&reply)
    }

    /// Sends PUB and waits for its `OK`.
    pub async fn publish(
        &mut self,
        topic: &TopicName,
        body: impl Into<Bytes>,
    ) -> Result<(), ProtocolError> {
        let reply = self
            .request(&Command::Pub {
                topic: topic.clone(),
                body: body.into(),
            })
            .await?;
        expect_ok(&reply)
    }

    /// The socket, e.g. for its addresses.
    pub fn stream(&self) -> &TcpStream {
        &self.stream
    }

    /// The socket and whatever was read but not yet decoded, for tests that take over the
    /// byte stream (compression or TLS upgrades).
    pub fn into_parts(self) -> (TcpStream, BytesMut) {
        (self.stream, self.read_buf)
    }
}

// ---- replies ------------------------------------------------------------------------------------

type ReplySender = oneshot::Sender<Result<Bytes, ProtocolError>>;

/// The reply to a command sent with [`Producer::send`]: resolves to the response data (`OK`, JSON,
/// `CLOSE_WAIT`), to [`ProtocolError::ErrorFrame`], or to [`ProtocolError::Closed`] if the
/// connection ended first. Commands without a reply (RDY, FIN, REQ, TOUCH, NOP) resolve at once to
/// empty data once queued.
#[derive(Debug)]
#[must_use = "a reply does nothing unless awaited"]
pub struct PendingReply(Option<oneshot::Receiver<Result<Bytes, ProtocolError>>>);

impl Future for PendingReply {
    type Output = Result<Bytes, ProtocolError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match &mut self.0 {
            None => Poll::Ready(Ok(Bytes::new())),
            Some(receiver) => Pin::new(receiver)
                .poll(cx)
                .map(|reply| reply.unwrap_or(Err(ProtocolError::Closed))),
        }
    }
}

/// Whether the server answers `command` with a response (or, on failure, an error frame).
fn expects_reply(command: &Command) -> bool {
    !matches!(
        command,
        Command::Rdy(_) | Command::Fin(_) | Command::Req { .. } | Command::Touch(_) | Command::Nop
    )
}

/// A command for the connection task, with where to deliver its reply.
#[derive(Debug)]
struct Outgoing {
    command: Command,
    reply: Option<ReplySender>,
}

/// The sending side of a connection task.
#[derive(Debug, Clone)]
struct Handle {
    commands: mpsc::Sender<Outgoing>,
}

impl Handle {
    async fn send(&self, command: Command) -> Result<PendingReply, ProtocolError> {
        let (reply, receiver) = if expects_reply(&command) {
            let (sender, receiver) = oneshot::channel();
            (Some(sender), Some(receiver))
        } else {
            (None, None)
        };
        self.commands
            .send(Outgoing { command, reply })
            .await
            .map_err(|_| ProtocolError::Closed)?;
        Ok(PendingReply(receiver))
    }

    async fn request_ok(&self, command: Command) -> Result<(), ProtocolError> {
        let reply = self.send(command).await?.await?;
        expect_ok(&reply)
    }
}

// ---- Producer -----------------------------------------------------------------------------------

/// A publishing connection. Clones share the connection; it closes when the last clone is dropped.
#[derive(Debug, Clone)]
pub struct Producer {
    handle: Handle,
    identify: Arc<IdentifyResponse>,
}

impl Producer {
    /// Connects, sends the magic and IDENTIFY (with `feature_negotiation` and
    /// [`DEFAULT_USER_AGENT`]).
    pub async fn connect(addr: impl ToSocketAddrs) -> Result<Self, ProtocolError> {
        Self::connect_with(addr, IdentifyRequest::default()).await
    }

    /// Like [`Producer::connect`] with more IDENTIFY fields (upgrades are never requested).
    pub async fn connect_with(
        addr: impl ToSocketAddrs,
        identify: IdentifyRequest,
    ) -> Result<Self, ProtocolError> {
        let (connection, response) = handshake(addr, identify).await?;
        Ok(Self {
            handle: spawn_connection(connection, None),
            identify: Arc::new(response),
        })
    }

    /// The server's IDENTIFY reply.
    pub fn identify_response(&self) -> &IdentifyResponse {
        &self.identify
    }

    /// PUB; waits for `OK`.
    pub async fn publish(
        &self,
        topic: &TopicName,
        body: impl Into<Bytes>,
    ) -> Result<(), ProtocolError> {
        self.handle
            .request_ok(Command::Pub {
                topic: topic.clone(),
                body: body.into(),
            })
            .await
    }

    /// MPUB; waits for `OK`.
    pub async fn multi_publish(
        &self,
        topic: &TopicName,
        bodies: Vec<Bytes>,
    ) -> Result<(), ProtocolError> {
        self.handle
            .request_ok(Command::Mpub {
                topic: topic.clone(),
                bodies,
            })
            .await
    }

    /// DPUB with `delay` (whole milliseconds); waits for `OK`.
    pub async fn deferred_publish(
        &self,
        topic: &TopicName,
        delay: Duration,
        body: impl Into<Bytes>,
    ) -> Result<(), ProtocolError> {
        self.handle
            .request_ok(Command::Dpub {
                topic: topic.clone(),
                defer_ms: millis(delay),
                body: body.into(),
            })
            .await
    }

    /// Queues any command without waiting for its reply (pipelining): await the returned
    /// [`PendingReply`] later. Replies resolve in the order the commands were sent.
    pub async fn send(&self, command: Command) -> Result<PendingReply, ProtocolError> {
        self.handle.send(command).await
    }
}

// ---- Consumer -----------------------------------------------------------------------------------

/// Settings of a [`Consumer`].
#[derive(Debug, Clone)]
pub struct ConsumerConfig {
    /// The RDY count sent after SUB.
    pub max_in_flight: u64,
    /// IDENTIFY fields (`client_id`, `user_agent`, `msg_timeout`, `heartbeat_interval`,
    /// `output_buffer_size`, `output_buffer_timeout`, `sample_rate`, …). `feature_negotiation` is
    /// always requested; TLS and compression never are.
    pub identify: IdentifyRequest,
}

impl Default for ConsumerConfig {
    fn default() -> Self {
        Self {
            max_in_flight: 1,
            identify: IdentifyRequest::default(),
        }
    }
}

/// What a consumer connection receives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A delivered message; answer with FIN, REQ or TOUCH.
    Message(Message),
    /// An error frame (e.g. non-fatal `E_FIN_FAILED …`); see [`Event::is_fatal_error`].
    Error(String),
    /// A response no command of this client was waiting for.
    Response(Bytes),
}

impl Event {
    /// Whether this is an error frame after which the server closes the connection.
    pub fn is_fatal_error(&self) -> bool {
        matches!(self, Event::Error(text) if error_frame_is_fatal(text))
    }
}

type EventResult = Result<Event, ProtocolError>;

/// A subscribed connection.
#[derive(Debug)]
pub struct Consumer {
    handle: Handle,
    events: mpsc::UnboundedReceiver<EventResult>,
    identify: IdentifyResponse,
}

impl Consumer {
    /// Connects, IDENTIFYs, subscribes to `topic`/`channel` and sends `RDY max_in_flight`.
    pub async fn connect(
        addr: impl ToSocketAddrs,
        topic: &TopicName,
        channel: &ChannelName,
        config: ConsumerConfig,
    ) -> Result<Self, ProtocolError> {
        let (mut connection, response) = handshake(addr, config.identify).await?;
        connection.subscribe(topic, channel).await?;
        let (event_sender, events) = mpsc::unbounded_channel();
        let consumer = Self {
            handle: spawn_connection(connection, Some(event_sender)),
            events,
            identify: response,
        };
        consumer.ready(config.max_in_flight).await?;
        Ok(consumer)
    }

    /// The server's IDENTIFY reply.
    pub fn identify_response(&self) -> &IdentifyResponse {
        &self.identify
    }

    /// The next message or error frame. Once the connection has ended, the reason (usually
    /// [`ProtocolError::Closed`]), then [`ProtocolError::Closed`] forever.
    pub async fn next_event(&mut self) -> Result<Event, ProtocolError> {
        self.events
            .recv()
            .await
            .unwrap_or(Err(ProtocolError::Closed))
    }

    /// [`Consumer::next_event`] without waiting: `None` if nothing has arrived.
    pub fn try_next_event(&mut self) -> Option<Result<Event, ProtocolError>> {
        match self.events.try_recv() {
            Ok(event) => Some(event),
            Err(mpsc::error::TryRecvError::Empty) => None,
            Err(mpsc::error::TryRecvError::Disconnected) => Some(Err(ProtocolError::Closed)),
        }
    }

    /// The next message. An error frame is returned as [`ProtocolError::ErrorFrame`]; after a
    /// non-fatal one (`E_FIN_FAILED`, `E_REQ_FAILED`, `E_TOUCH_FAILED`) the consumer is still
    /// usable. Unsolicited responses are skipped.
    pub async fn next_message(&mut self) -> Result<Message, ProtocolError> {
        loop {
            match self.next_event().await? {
                Event::Message(message) => return Ok(message),
                Event::Error(text) => return Err(ProtocolError::ErrorFrame(text)),
                Event::Response(_) => {}
            }
        }
    }

    /// Sends `RDY count`.
    pub async fn ready(&self, count: u64) -> Result<(), ProtocolError> {
        self.fire(Command::Rdy(count)).await
    }

    /// Sends `FIN id`. FINs queued together go out in one write.
    pub async fn finish(&self, id: MessageId) -> Result<(), ProtocolError> {
        self.fire(Command::Fin(id)).await
    }

    /// Sends `REQ id delay` (whole milliseconds).
    pub async fn requeue(&self, id: MessageId, delay: Duration) -> Result<(), ProtocolError> {
        self.fire(Command::Req {
            id,
            timeout_ms: millis(delay),
        })
        .await
    }

    /// Sends `TOUCH id`.
    pub async fn touch(&self, id: MessageId) -> Result<(), ProtocolError> {
        self.fire(Command::Touch(id)).await
    }

    /// Sends CLS and waits for `CLOSE_WAIT`. Messages delivered before it are already available
    /// from [`Consumer::try_next_event`]; FIN or REQ them, then drop the consumer to disconnect.
    pub async fn close(&mut self) -> Result<(), ProtocolError> {
        let reply = self.handle.send(Command::Cls).await?.await?;
        if reply.as_ref() == CLOSE_WAIT {
            Ok(())
        } else {
            Err(ProtocolError::UnexpectedFrame(format!(
                "response {:?} to CLS",
                lossy(&reply)
            )))
        }
    }

    /// Queues any command; see [`Producer::send`].
    pub async fn send(&self, command: Command) -> Result<PendingReply, ProtocolError> {
        self.handle.send(command).await
    }

    async fn fire(&self, command: Command) -> Result<(), ProtocolError> {
        self.handle.send(command).await.map(drop)
    }
}

// ---- the connection task ------------------------------------------------------------------------

/// Magic, IDENTIFY with feature negotiation, no upgrades.
async fn handshake(
    addr: impl ToSocketAddrs,
    mut identify: IdentifyRequest,
) -> Result<(Connection, IdentifyResponse), ProtocolError> {
    identify.feature_negotiation = Some(true);
    identify.tls_v1 = None;
    identify.snappy = None;
    identify.deflate = None;
    if identify.user_agent.is_none() {
        identify.user_agent = Some(DEFAULT_USER_AGENT.to_owned());
    }
    let mut connection = Connection::connect(addr).await?;
    let response = connection.identify(&identify).await?.ok_or_else(|| {
        ProtocolError::UnexpectedFrame("OK instead of the IDENTIFY JSON reply".to_owned())
    })?;
    Ok((connection, response))
}

/// Starts the task that owns `connection`; returns the handle that feeds it commands.
fn spawn_connection(
    connection: Connection,
    events: Option<mpsc::UnboundedSender<EventResult>>,
) -> Handle {
    let (commands, command_receiver) = mpsc::channel(COMMAND_QUEUE);
    let (pending_sender, pending_receiver) = mpsc::unbounded_channel();
    let Connection {
        stream,
        read_buf,
        write_buf,
        codec,
    } = connection;
    let (read_half, write_half) = stream.into_split();
    let reader = ReadLoop {
        read_half,
        buf: read_buf,
        codec,
        pending: pending_receiver,
        nop: commands.downgrade(),
        events: events.clone(),
    };
    tokio::spawn(async move {
        let writer = write_loop(write_half, write_buf, command_receiver, pending_sender);
        let reader = reader.run();
        tokio::pin!(writer, reader);
        let reason = tokio::select! {
            reason = &mut reader => reason,
            written = &mut writer => match written {
                // Every handle is gone and the write side is shut down: let the server close.
                Ok(()) => tokio::time::timeout(CLOSE_GRACE, &mut reader)
                    .await
                    .unwrap_or(ProtocolError::Closed),
                Err(error) => error,
            },
        };
        if let Some(events) = events {
            let _ = events.send(Err(reason));
        }
    });
    Handle { commands }
}

/// Writes queued commands in batches until every handle is dropped, then shuts the write side.
/// Each command's reply slot is handed to the reader before the command's bytes are written, so
/// the reader always finds it when the reply arrives.
async fn write_loop(
    mut write_half: OwnedWriteHalf,
    mut buf: BytesMut,
    mut commands: mpsc::Receiver<Outgoing>,
    pending: mpsc::UnboundedSender<ReplySender>,
) -> Result<(), ProtocolError> {
    while let Some(first) = commands.recv().await {
        let mut next = Some(first);
        while let Some(Outgoing { command, reply }) = next.take() {
            encode_command(&command, &mut buf);
            if let Some(reply) = reply {
                // If the reader is gone the reply is dropped, which reads as Closed.
                let _ = pending.send(reply);
            }
            if buf.len() < BUFFER_SIZE {
                next = commands.try_recv().ok();
            }
        }
        write_half.write_all(&buf).await?;
        buf.clear();
    }
    write_half.shutdown().await?;
    Ok(())
}

struct ReadLoop {
    read_half: OwnedReadHalf,
    buf: BytesMut,
    codec: FrameCodec,
    pending: mpsc::UnboundedReceiver<ReplySender>,
    /// For NOPs; weak so that the connection closes when every handle is dropped.
    nop: mpsc::WeakSender<Outgoing>,
    events: Option<mpsc::UnboundedSender<EventResult>>,
}

impl ReadLoop {
    /// Reads and dispatches frames until the connection ends; returns why it ended.
    async fn run(mut self) -> ProtocolError {
        loop {
            loop {
                match self.codec.decode(&mut self.buf) {
                    Ok(Some(frame)) => self.dispatch(frame),
                    Ok(None) => break,
                    Err(error) => return error,
                }
            }
            match read_more(&mut self.read_half, &mut self.buf).await {
                Ok(0) if self.buf.is_empty() => return ProtocolError::Closed,
                Ok(0) => return truncated_frame(),
                Ok(_) => {}
                Err(error) => return error,
            }
        }
    }

    fn dispatch(&mut self, frame: Frame) {
        match frame {
            frame if frame.is_heartbeat() => {
                // If the queue is full, commands are about to be written anyway, and any command
                // resets the server's read deadline.
                if let Some(commands) = self.nop.upgrade() {
                    let _ = commands.try_send(Outgoing {
                        command: Command::Nop,
                        reply: None,
                    });
                }
            }
            Frame::Response(data) => match self.pending.try_recv() {
                Ok(reply) => {
                    let _ = reply.send(Ok(data));
                }
                Err(_) => self.emit(Event::Response(data)),
            },
            Frame::Error(data) => {
                let text = lossy(&data).into_owned();
                // Non-fatal errors answer FIN/REQ/TOUCH, which no reply slot waits for.
                if error_frame_is_fatal(&text)
                    && let Ok(reply) = self.pending.try_recv()
                {
                    let _ = reply.send(Err(ProtocolError::ErrorFrame(text.clone())));
                }
                self.emit(Event::Error(text));
            }
            Frame::Message(message) => self.emit(Event::Message(message)),
        }
    }

    fn emit(&self, event: Event) {
        if let Some(events) = &self.events {
            let _ = events.send(Ok(event));
        }
    }
}

// ---- helpers ------------------------------------------------------------------------------------

/// Reads once into `buf`, making room first; returns the number of bytes read (0 at EOF).
async fn read_more(
    reader: &mut (impl tokio::io::AsyncRead + Unpin),
    buf: &mut BytesMut,
) -> Result<usize, ProtocolError> {
    if buf.capacity() - buf.len() < BUFFER_SIZE / 8 {
        buf.reserve(BUFFER_SIZE);
    }
    Ok(reader.read_buf(buf).await?)
}

fn truncated_frame() -> ProtocolError {
    ProtocolError::Io(std::io::Error::new(
        std::io::ErrorKind::UnexpectedEof,
        "connection closed in the middle of a frame",
    ))
}

fn error_frame(data: &[u8]) -> ProtocolError {
    ProtocolError::ErrorFrame(lossy(data).into_owned())
}

/// Only `E_FIN_FAILED`, `E_REQ_FAILED` and `E_TOUCH_FAILED` leave the connection open.
fn error_frame_is_fatal(text: &str) -> bool {
    text.split(' ')
        .next()
        .and_then(|code| code.parse::<ErrorCode>().ok())
        .is_none_or(ErrorCode::is_fatal)
}

fn expect_ok(reply: &[u8]) -> Result<(), ProtocolError> {
    if reply == OK {
        Ok(())
    } else {
        Err(ProtocolError::UnexpectedFrame(format!(
            "response {:?} instead of OK",
            lossy(reply)
        )))
    }
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

fn lossy(data: &[u8]) -> std::borrow::Cow<'_, str> {
    String::from_utf8_lossy(data)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command::{CommandCodec, ConnectionState};
    use crate::frame::{FrameType, HEARTBEAT, write_frame, write_message_frame};
    use crate::identify::IdentifyPolicy;
    use tokio::net::TcpListener;

    /// The server side of one connection, driven step by step by a test.
    struct FakeServer {
        stream: TcpStream,
        buf: BytesMut,
        codec: CommandCodec,
    }

    impl FakeServer {
        async fn accept(listener: &TcpListener) -> Self {
            let (mut stream, _) = listener.accept().await.unwrap();
            let mut magic = [0u8; 4];
            stream.read_exact(&mut magic).await.unwrap();
            assert_eq!(&magic, MAGIC_V2);
            Self {
                stream,
                buf: BytesMut::new(),
                codec: CommandCodec::default(),
            }
        }

        /// The next command, or `None` once the client closed the connection.
        async fn command(&mut self) -> Option<Command> {
            loop {
                if let Some(command) = self.codec.decode(&mut self.buf).unwrap() {
                    match command {
                        Command::Sub { .. } => self.codec.state = ConnectionState::Subscribed,
                        Command::Cls => self.codec.state = ConnectionState::Closing,
                        _ => {}
                    }
                    return Some(command);
                }
                if self.stream.read_buf(&mut self.buf).await.unwrap() == 0 {
                    return None;
                }
            }
        }

        /// Reads IDENTIFY and answers with upstream's default JSON.
        async fn identify(&mut self) -> IdentifyRequest {
            let Some(Command::Identify(body)) = self.command().await else {
                panic!("expected IDENTIFY");
            };
            let request = IdentifyRequest::from_json(&body).unwrap();
            let policy = IdentifyPolicy::default();
            let reply = policy.response(&policy.negotiate(&request).unwrap());
            self.respond(&serde_json::to_vec(&reply).unwrap()).await;
            request
        }

        async fn frame(&mut self, frame_type: FrameType, data: &[u8]) {
            let mut out = BytesMut::new();
            write_frame(&mut out, frame_type, data);
            self.stream.write_all(&out).await.unwrap();
        }

        async fn respond(&mut self, data: &[u8]) {
            self.frame(FrameType::Response, data).await;
        }

        async fn message(&mut self, n: u64) {
            let mut out = BytesMut::new();
            let message = Message {
                id: MessageId::from_u64(n),
                timestamp: 1,
                attempts: 1,
                body: Bytes::from(format!("m{n}")),
            };
            write_message_frame(&mut out, &message);
            self.stream.write_all(&out).await.unwrap();
        }
    }

    async fn listener() -> (TcpListener, std::net::SocketAddr) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        (listener, addr)
    }

    fn topic() -> TopicName {
        TopicName::try_from("t").unwrap()
    }

    #[tokio::test]
    async fn producer_publishes_and_reports_errors() {
        let (listener, addr) = listener().await;
        let server = tokio::spawn(async move {
            let mut server = FakeServer::accept(&listener).await;
            let request = server.identify().await;
            assert_eq!(request.feature_negotiation, Some(true));
            assert_eq!(request.user_agent.as_deref(), Some(DEFAULT_USER_AGENT));
            let mut seen = Vec::new();
            while let Some(command) = server.command().await {
                match &command {
                    Command::Nop => {}
                    Command::Pub { body, .. } if body.as_ref() == b"fail" => {
                        server
                            .frame(FrameType::Error, b"E_PUB_FAILED PUB failed exiting")
                            .await;
                    }
                    Command::Pub { body, .. } if body.as_ref() == b"beat" => {
                        // A heartbeat before the reply: the client must NOP and keep waiting.
                        server.respond(HEARTBEAT).await;
                        assert_eq!(server.command().await, Some(Command::Nop));
                        server.respond(OK).await;
                    }
                    _ => server.respond(OK).await,
                }
                seen.push(command);
            }
            seen
        });

        let producer = Producer::connect(addr).await.unwrap();
        assert_eq!(producer.identify_response().max_rdy_count, 2500);
        producer.publish(&topic(), "a").await.unwrap();
        producer.publish(&topic(), "beat").await.unwrap();
        let bodies = vec![Bytes::from_static(b"x"), Bytes::from_static(b"y")];
        producer
            .multi_publish(&topic(), bodies.clone())
            .await
            .unwrap();
        producer
            .deferred_publish(&topic(), Duration::from_millis(1500), "d")
            .await
            .unwrap();
        // Pipelined: three MPUBs in flight, replies in order.
        let mut pending = Vec::new();
        for _ in 0..3 {
            let command = Command::Mpub {
                topic: topic(),
                bodies: bodies.clone(),
            };
            pending.push(producer.send(command).await.unwrap());
        }
        for reply in pending {
            assert_eq!(reply.await.unwrap().as_ref(), OK);
        }
        let error = producer.publish(&topic(), "fail").await.unwrap_err();
        assert_eq!(error.to_string(), "E_PUB_FAILED PUB failed exiting");
        assert_eq!(error.error_code(), Some(ErrorCode::PubFailed));
        drop(producer);

        let seen = server.await.unwrap();
        assert_eq!(seen.len(), 8);
        assert_eq!(
            seen[3],
            Command::Dpub {
                topic: topic(),
                defer_ms: 1500,
                body: Bytes::from_static(b"d"),
            }
        );
    }

    #[tokio::test]
    async fn producer_fails_pending_replies_when_the_server_closes() {
        let (listener, addr) = listener().await;
        tokio::spawn(async move {
            let mut server = FakeServer::accept(&listener).await;
            server.identify().await;
            server.command().await;
            // Close without answering.
        });
        let producer = Producer::connect(addr).await.unwrap();
        let error = producer.publish(&topic(), "a").await.unwrap_err();
        assert!(matches!(error, ProtocolError::Closed), "{error:?}");
        let error = producer.publish(&topic(), "b").await.unwrap_err();
        assert!(matches!(error, ProtocolError::Closed), "{error:?}");
    }

    #[tokio::test]
    async fn consumer_receives_finishes_and_closes() {
        let (listener, addr) = listener().await;
        let server = tokio::spawn(async move {
            let mut server = FakeServer::accept(&listener).await;
            let request = server.identify().await;
            assert_eq!(request.client_id.as_deref(), Some("c1"));
            assert_eq!(request.msg_timeout, Some(5000));
            let Some(Command::Sub { topic, channel }) = server.command().await else {
                panic!("expected SUB");
            };
            assert_eq!((topic.as_str(), channel.as_str()), ("t", "c"));
            server.respond(OK).await;
            assert_eq!(server.command().await, Some(Command::Rdy(3)));
            // The heartbeat comes first, so its NOP is queued before any FIN.
            server.respond(HEARTBEAT).await;
            for n in 1..=3 {
                server.message(n).await;
            }
            let mut after = Vec::new();
            while let Some(command) = server.command().await {
                match &command {
                    Command::Fin(id) if id.to_u64() == Some(99) => {
                        server
                            .frame(
                                FrameType::Error,
                                b"E_FIN_FAILED FIN 0000000000000063 failed ID not in flight",
                            )
                            .await;
                    }
                    Command::Cls => {
                        server.message(4).await;
                        server.respond(CLOSE_WAIT).await;
                    }
                    _ => {}
                }
                after.push(command);
            }
            after
        });

        let config = ConsumerConfig {
            max_in_flight: 3,
            identify: IdentifyRequest {
                client_id: Some("c1".to_owned()),
                msg_timeout: Some(5000),
                ..IdentifyRequest::default()
            },
        };
        let topic = topic();
        let channel = ChannelName::try_from("c").unwrap();
        let mut consumer = Consumer::connect(addr, &topic, &channel, config)
            .await
            .unwrap();
        let mut ids = Vec::new();
        for _ in 0..3 {
            let message = consumer.next_message().await.unwrap();
            assert_eq!(message.body, format!("m{}", message.id.to_u64().unwrap()));
            ids.push(message.id);
        }
        consumer.finish(ids[0]).await.unwrap();
        consumer
            .requeue(ids[1], Duration::from_millis(250))
            .await
            .unwrap();
        consumer.touch(ids[2]).await.unwrap();
        consumer.finish(MessageId::from_u64(99)).await.unwrap();
        let error = consumer.next_message().await.unwrap_err();
        assert_eq!(error.error_code(), Some(ErrorCode::FinFailed));
        consumer.close().await.unwrap();
        // A message delivered before CLOSE_WAIT is already there.
        let Some(Ok(Event::Message(last))) = consumer.try_next_event() else {
            panic!("expected the 4th message");
        };
        consumer.finish(last.id).await.unwrap();
        assert!(consumer.try_next_event().is_none());
        drop(consumer);

        let after = server.await.unwrap();
        assert_eq!(
            after,
            [
                Command::Nop,
                Command::Fin(ids[0]),
                Command::Req {
                    id: ids[1],
                    timeout_ms: 250
                },
                Command::Touch(ids[2]),
                Command::Fin(MessageId::from_u64(99)),
                Command::Cls,
                Command::Fin(last.id),
            ]
        );
    }

    #[tokio::test]
    async fn consumer_reports_fatal_errors_then_closed() {
        let (listener, addr) = listener().await;
        tokio::spawn(async move {
            let mut server = FakeServer::accept(&listener).await;
            server.identify().await;
            server.command().await;
            server.respond(OK).await;
            server.command().await;
            server
                .frame(FrameType::Error, b"E_INVALID cannot FIN in current state")
                .await;
        });
        let mut consumer = Consumer::connect(
            addr,
            &topic(),
            &ChannelName::try_from("c").unwrap(),
            ConsumerConfig::default(),
        )
        .await
        .unwrap();
        let event = consumer.next_event().await.unwrap();
        assert!(event.is_fatal_error(), "{event:?}");
        assert!(matches!(
            consumer.next_event().await,
            Err(ProtocolError::Closed)
        ));
        assert!(matches!(
            consumer.next_message().await,
            Err(ProtocolError::Closed)
        ));
    }

    #[tokio::test]
    async fn raw_connection_reads_frames_with_timeout() {
        let (listener, addr) = listener().await;
        tokio::spawn(async move {
            let mut server = FakeServer::accept(&listener).await;
            assert_eq!(server.command().await, Some(Command::Nop));
            // Half a frame, then the rest.
            let mut out = BytesMut::new();
            write_frame(&mut out, FrameType::Response, OK);
            server.stream.write_all(&out[..5]).await.unwrap();
            tokio::time::sleep(Duration::from_millis(50)).await;
            server.stream.write_all(&out[5..]).await.unwrap();
            server.frame(FrameType::Error, b"E_INVALID x").await;
        });
        let mut connection = Connection::connect(addr).await.unwrap();
        let timeout = Duration::from_millis(20);
        assert!(matches!(
            connection.read_frame_timeout(timeout).await,
            Err(ProtocolError::Timeout(_))
        ));
        connection.send(&Command::Nop).await.unwrap();
        let second = Duration::from_secs(5);
        assert_eq!(
            connection.read_frame_timeout(second).await.unwrap(),
            Some(Frame::Response(Bytes::from_static(OK)))
        );
        let error = connection.read_reply().await.unwrap_err();
        assert_eq!(error.to_string(), "E_INVALID x");
        assert_eq!(connection.read_frame_timeout(second).await.unwrap(), None);
    }

    #[tokio::test]
    async fn read_until_closed() {
        let (listener, addr) = listener().await;
        tokio::spawn(async move {
            // First connection: an error frame, then close.
            let mut server = FakeServer::accept(&listener).await;
            assert_eq!(server.command().await, Some(Command::Nop));
            server.frame(FrameType::Error, b"E_INVALID x").await;
            drop(server);
            // Second connection: stays open until the client goes away.
            let mut server = FakeServer::accept(&listener).await;
            server.command().await;
        });
        let mut connection = Connection::connect(addr).await.unwrap();
        connection.send(&Command::Nop).await.unwrap();
        let frames = connection
            .read_until_closed(Duration::from_secs(5))
            .await
            .unwrap();
        assert_eq!(frames, [Frame::Error(Bytes::from_static(b"E_INVALID x"))]);

        let mut connection = Connection::connect(addr).await.unwrap();
        assert!(matches!(
            connection
                .read_until_closed(Duration::from_millis(50))
                .await,
            Err(ProtocolError::Timeout(_))
        ));
    }
}
