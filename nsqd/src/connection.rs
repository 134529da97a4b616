//! One client connection: a single task that reads and decodes commands, executes them, pulls
//! messages from its channel under RDY, and writes frames, all from one poll loop.
//!
//! One task per connection (rather than a reader and a writer task) keeps responses and messages
//! in order without a queue between tasks, lets FINs be batched into one channel lock per read,
//! and writes whatever accumulated (up to the output buffer size) in one syscall.
//!
//! Wake-ups come from: socket readable/writable, the channel's "ready" notifier (only awaited when
//! the queue ran dry and RDY allows more), the client's own notifier (in-flight capacity freed by
//! a timeout or an empty), its close token (channel/topic deleted), node shutdown, and one timer
//! (heartbeat, read deadline, write stall).
//!
//! Work that must await between commands (the TLS handshake and compression switch after
//! IDENTIFY, AUTH's call to the auth server, re-authorising an expired AUTH) is handed from the
//! synchronous command code to the loop as [`Pending`]: decoding stops, the loop awaits it (this
//! connection neither reads nor delivers meanwhile; others are unaffected), then carries on.
//! Transports and compression: see `upgrade.rs`.

use crate::auth::{AuthClient, AuthRequest, AuthState};
use crate::channel::{Channel, TakeRequest};
use crate::client::ClientShared;
use crate::commit::CommitTicket;
use crate::nsqd::Nsqd;
use crate::protocol_v2::PublishedBatch;
use crate::tls::{HANDSHAKE_TIMEOUT, TlsSessionInfo};
use crate::topic::Topic;
use crate::upgrade::{DECOMPRESS_CHUNK, Layers, Rewind, Transport, WIRE_IN_LIMIT};
use bytes::{Buf, Bytes, BytesMut};
use nsq_protocol::frame::{HEARTBEAT, write_frame, write_message_frame};
use nsq_protocol::{
    ClientError, Command, CommandCodec, ErrorCode, FrameType, MAGIC_V2, MessageId, ProtocolError,
};
use rand::SeedableRng;
use rand::rngs::SmallRng;
use std::future::{Future, poll_fn};
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::{Poll, ready};
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;
use tokio::sync::futures::OwnedNotified;
use tokio::time::{Duration, Instant, Sleep};
use tokio_util::sync::CancellationToken;

/// Stop reading while this much output waits for a client that does not read.
const MAX_PENDING_OUTPUT: usize = 1024 * 1024;
/// Messages taken from the channel per lock acquisition.
const TAKE_BATCH: usize = 256;
/// Read buffer growth step.
const READ_CHUNK: usize = 16 * 1024;

/// Per-connection settings, fixed by IDENTIFY.
#[derive(Debug, Clone)]
pub(crate) struct ConnectionSettings {
    pub(crate) heartbeat_interval: Option<Duration>,
    pub(crate) output_buffer_size: usize,
    pub(crate) msg_timeout: Duration,
    pub(crate) sample_rate: u8,
}

pub(crate) struct Connection {
    pub(crate) nsqd: Arc<Nsqd>,
    pub(crate) client: Arc<ClientShared>,
    transport: Transport,
    /// Compression, once negotiated (boxed: plain connections carry one pointer).
    layers: Option<Box<Layers>>,
    /// A TLS stream may hold written data that still needs a flush.
    tls_unflushed: bool,
    pub(crate) codec: CommandCodec,
    /// Decoded (plain) input waiting for the command decoder.
    inbuf: BytesMut,
    /// Frames not yet written (or, with compression, not yet compressed).
    out: BytesMut,
    pub(crate) settings: ConnectionSettings,
    pub(crate) subscription: Option<(Arc<Topic>, Arc<Channel>)>,
    pub(crate) pending_fins: Vec<MessageId>,
    /// A fatal error was reported (or the peer must be dropped): flush, then close.
    fatal: bool,
    rng: SmallRng,
    /// Work for the async part of the loop; decoding pauses while it is set.
    pub(crate) pending: Option<Pending>,
    /// The cached auth-server answer.
    pub(crate) auth: Option<AuthState>,
    /// The AUTH secret, for re-queries once the answer expires.
    auth_secret: Option<Bytes>,
    /// The answer was just re-fetched for the command being checked (upstream does not look
    /// at its expiry again).
    pub(crate) auth_just_refreshed: bool,
    /// The MPUB at the head of the input passed its auth check before its body was read.
    pub(crate) mpub_authorized: bool,
}

/// What the synchronous command code hands to the connection loop to await.
pub(crate) enum Pending {
    /// IDENTIFY negotiated upgrades: flush its reply, then TLS, then compression.
    Upgrade {
        tls: bool,
        snappy: bool,
        deflate_level: Option<u32>,
    },
    /// AUTH with this secret.
    Auth(Bytes),
    /// The cached authorizations expired: re-query, then execute this command (`None`: the MPUB
    /// pre-body check, which then runs again).
    Refresh(Option<Command>),
    /// Durable mode: a publish is on disk; answer once the group commit covers it.
    Commit(CommitTicket, PublishedBatch),
}

/// What one pass over the input did.
struct InputProgress {
    /// At least one command was decoded.
    decoded: bool,
    /// Stopped before the input ran dry (pending work, or output backpressure).
    more: bool,
}

enum Event {
    Read,
    Eof,
    Wrote(usize),
    Flushed,
    IoError(io::Error),
    ChannelReady,
    Wake,
    Timer,
    Close,
    Shutdown,
}

/// Serves one accepted TCP connection until it closes.
pub(crate) async fn serve(
    nsqd: Arc<Nsqd>,
    mut stream: TcpStream,
    peer: SocketAddr,
    shutdown: CancellationToken,
) {
    let _ = stream.set_nodelay(true);
    let mut magic = [0u8; 4];
    let read = tokio::select! {
        read = tokio::time::timeout(nsqd.settings.client_timeout, stream.read_exact(&mut magic)) => read,
        () = shutdown.cancelled() => return,
    };
    if !matches!(read, Ok(Ok(_))) {
        return;
    }
    if &magic != MAGIC_V2 {
        tracing::info!(
            "client({peer}): bad protocol magic {:?}",
            String::from_utf8_lossy(&magic)
        );
        let mut frame = BytesMut::new();
        write_frame(&mut frame, FrameType::Error, b"E_BAD_PROTOCOL");
        let _ = tokio::io::AsyncWriteExt::write_all(&mut stream, &frame).await;
        Transport::Tcp(stream).linger_close().await;
        return;
    }
    tracing::debug!("client({peer}): new client, protocol V2");
    let client = nsqd.register_client(peer);
    let mut connection = Connection::new(Arc::clone(&nsqd), client, stream);
    connection.run(&shutdown).await;
    connection.cleanup();
    connection.transport.linger_close().await;
}

impl Connection {
    fn new(nsqd: Arc<Nsqd>, client: Arc<ClientShared>, stream: TcpStream) -> Self {
        let settings = &nsqd.settings;
        let mut codec = CommandCodec::new(settings.limits);
        codec.tls_required = settings.tls_required != crate::options::TlsRequired::No;
        let connection_settings = ConnectionSettings {
            heartbeat_interval: Some(settings.identify.default_heartbeat_interval),
            output_buffer_size: settings.identify.default_output_buffer_size as usize,
            msg_timeout: settings.msg_timeout,
            sample_rate: 0,
        };
        Self {
            nsqd,
            client,
            transport: Transport::Tcp(stream),
            layers: None,
            tls_unflushed: false,
            codec,
            inbuf: BytesMut::with_capacity(READ_CHUNK),
            out: BytesMut::with_capacity(READ_CHUNK),
            settings: connection_settings,
            subscription: None,
            pending_fins: Vec::new(),
            fatal: false,
            rng: SmallRng::from_os_rng(),
            pending: None,
            auth: None,
            auth_secret: None,
            auth_just_refreshed: false,
            mpub_authorized: false,
        }
    }

    /// The connection completed the TLS upgrade.
    pub(crate) fn has_tls(&self) -> bool {
        self.transport.is_tls()
    }

    /// Snappy or deflate is running.
    pub(crate) fn has_compression(&self) -> bool {
        self.layers.is_some()
    }

    /// Bytes written by the protocol but not yet handed to the socket.
    fn output_len(&self) -> usize {
        self.out.len()
            + self
                .layers
                .as_ref()
                .map_or(0, |layers| layers.wire_out.len())
    }

    fn output_pending(&self) -> bool {
        self.output_len() > 0 || self.tls_unflushed
    }

    async fn run(&mut self, shutdown: &CancellationToken) {
        let close = self.client.close.clone();
        let mut close_wait = Box::pin(close.cancelled_owned());
        let mut shutdown_wait = Box::pin(shutdown.clone().cancelled_owned());
        let mut wake = Box::pin(Arc::clone(&self.client.wake).notified_owned());
        let mut ready_wait: Option<Pin<Box<OwnedNotified>>> = None;
        let mut timer: Pin<Box<Sleep>> = Box::pin(tokio::time::sleep(Duration::from_secs(3600)));
        let start = Instant::now();
        let mut last_command = start;
        let mut last_write_progress = start;
        let mut next_heartbeat = self.settings.heartbeat_interval.map(|hb| start + hb);
        let mut stopping = false;
        // After EOF, input already received is still executed.
        let mut draining = false;

        loop {
            let now = Instant::now();
            if !self.fatal && (!stopping || draining) {
                let heartbeat_before = self.settings.heartbeat_interval;
                let progress = self.process_input();
                if progress.decoded {
                    last_command = now;
                }
                draining &= progress.more;
                if self.settings.heartbeat_interval != heartbeat_before {
                    next_heartbeat = self.settings.heartbeat_interval.map(|hb| now + hb);
                }
                if !stopping && ready_wait.is_none() {
                    ready_wait = self.deliver(now);
                }
            }
            if let Some(pending) = self.pending.take() {
                if !self.resolve(pending, shutdown).await {
                    return;
                }
                let now = Instant::now();
                last_command = now;
                last_write_progress = now;
                continue;
            }
            let output_pending = self.output_pending();
            if (self.fatal || (stopping && !draining)) && !output_pending {
                return;
            }
            if !output_pending {
                last_write_progress = now;
            }

            let mut deadline = now + Duration::from_secs(3600);
            if let Some(interval) = self.settings.heartbeat_interval {
                let read_deadline = last_command + 2 * interval;
                if now >= read_deadline {
                    tracing::info!(
                        "client({}): heartbeat timeout, closing",
                        self.client.remote_addr
                    );
                    return;
                }
                if output_pending && now >= last_write_progress + interval {
                    tracing::info!(
                        "client({}): write timeout, closing",
                        self.client.remote_addr
                    );
                    return;
                }
                if let Some(at) = next_heartbeat {
                    if now >= at {
                        write_frame(&mut self.out, FrameType::Response, HEARTBEAT);
                        next_heartbeat = Some(now + interval);
                        continue;
                    }
                    deadline = deadline.min(at);
                }
                deadline = deadline.min(read_deadline);
                if output_pending {
                    deadline = deadline.min(last_write_progress + interval);
                }
            }
            if timer.deadline() != deadline {
                timer.as_mut().reset(deadline);
            }

            // With compression, what accumulated since the last write is one compressed batch.
            if let Some(layers) = self.layers.as_deref_mut()
                && layers.wire_out.is_empty()
                && !self.out.is_empty()
            {
                layers.compress_batch(&mut self.out);
            }
            let want_read = !self.fatal
                && !stopping
                && self.output_len() < MAX_PENDING_OUTPUT
                && self
                    .layers
                    .as_ref()
                    .is_none_or(|layers| layers.wire_in.len() < WIRE_IN_LIMIT);
            let read_buf = match self.layers.as_deref_mut() {
                None => &mut self.inbuf,
                Some(layers) => &mut layers.wire_in,
            };
            if want_read && read_buf.capacity() - read_buf.len() < READ_CHUNK / 2 {
                read_buf.reserve(READ_CHUNK);
            }
            let event = poll_fn(|cx| {
                let write_buf = match self.layers.as_deref() {
                    None => &self.out,
                    Some(layers) => &layers.wire_out,
                };
                if !write_buf.is_empty() {
                    match self.transport.poll_write(cx, write_buf) {
                        Poll::Ready(Ok(0)) => {
                            return Poll::Ready(Event::IoError(io::ErrorKind::WriteZero.into()));
                        }
                        Poll::Ready(Ok(n)) => return Poll::Ready(Event::Wrote(n)),
                        Poll::Ready(Err(err)) => return Poll::Ready(Event::IoError(err)),
                        Poll::Pending => {}
                    }
                } else if self.tls_unflushed {
                    match self.transport.poll_flush(cx) {
                        Poll::Ready(Ok(())) => return Poll::Ready(Event::Flushed),
                        Poll::Ready(Err(err)) => return Poll::Ready(Event::IoError(err)),
                        Poll::Pending => {}
                    }
                }
                if want_read {
                    let read_buf = match self.layers.as_deref_mut() {
                        None => &mut self.inbuf,
                        Some(layers) => &mut layers.wire_in,
                    };
                    match self.transport.poll_read_buf(cx, read_buf) {
                        Poll::Ready(Ok(0)) => return Poll::Ready(Event::Eof),
                        Poll::Ready(Ok(_)) => return Poll::Ready(Event::Read),
                        Poll::Ready(Err(err)) => return Poll::Ready(Event::IoError(err)),
                        Poll::Pending => {}
                    }
                }
                if let Some(wait) = ready_wait.as_mut()
                    && wait.as_mut().poll(cx).is_ready()
                {
                    return Poll::Ready(Event::ChannelReady);
                }
                if wake.as_mut().poll(cx).is_ready() {
                    return Poll::Ready(Event::Wake);
                }
                if close_wait.as_mut().poll(cx).is_ready() {
                    return Poll::Ready(Event::Close);
                }
                if !stopping && shutdown_wait.as_mut().poll(cx).is_ready() {
                    return Poll::Ready(Event::Shutdown);
                }
                if timer.as_mut().poll(cx).is_ready() {
                    return Poll::Ready(Event::Timer);
                }
                Poll::Pending
            })
            .await;

            match event {
                Event::Read | Event::Timer => {}
                Event::Wrote(n) => {
                    match self.layers.as_deref_mut() {
                        None => self.out.advance(n),
                        Some(layers) => layers.wire_out.advance(n),
                    }
                    self.tls_unflushed = self.transport.is_tls();
                    last_write_progress = Instant::now();
                }
                Event::Flushed => {
                    self.tls_unflushed = false;
                    last_write_progress = Instant::now();
                }
                Event::Eof => {
                    // The peer may have only half-closed: execute what arrived, flush the
                    // answers, then close.
                    draining = !self.fatal && !stopping;
                    stopping = true;
                }
                Event::IoError(err) => {
                    tracing::debug!("client({}): {err}", self.client.remote_addr);
                    return;
                }
                Event::ChannelReady => ready_wait = None,
                Event::Wake => {
                    wake = Box::pin(Arc::clone(&self.client.wake).notified_owned());
                }
                Event::Close => {
                    tracing::info!(
                        "client({}): topic or channel deleted, closing",
                        self.client.remote_addr
                    );
                    return;
                }
                Event::Shutdown => stopping = true,
            }
        }
    }

    /// Decodes and executes every complete command in the read buffer; with compression,
    /// decompresses more input only as the decoder runs out of it. Stops early when a command
    /// left work to await ([`Pending`]).
    fn process_input(&mut self) -> InputProgress {
        let mut progress = InputProgress {
            decoded: false,
            more: false,
        };
        let now = Instant::now();
        let auth_enabled = self.nsqd.settings.auth.is_some();
        loop {
            while !self.fatal {
                if self.pending.is_some() {
                    progress.more = true;
                    break;
                }
                if auth_enabled && !self.mpub_authorized && !self.authorize_mpub_before_body() {
                    continue;
                }
                match tokio_util::codec::Decoder::decode(&mut self.codec, &mut self.inbuf) {
                    Ok(Some(command)) => {
                        progress.decoded = true;
                        if let Err(err) = self.exec(command, now) {
                            self.report(err);
                        }
                    }
                    Ok(None) => break,
                    Err(ProtocolError::Client(err)) => {
                        self.flush_fins();
                        self.report(err);
                    }
                    Err(err) => {
                        // Over-long lines end the connection silently, as upstream does.
                        tracing::info!("client({}): {err}, closing", self.client.remote_addr);
                        self.flush_fins();
                        self.fatal = true;
                    }
                }
            }
            if self.fatal || progress.more {
                break;
            }
            let output_len = self.output_len();
            let Some(layers) = self.layers.as_deref_mut() else {
                break;
            };
            if output_len >= MAX_PENDING_OUTPUT {
                progress.more = true;
                break;
            }
            match layers.decompress(&mut self.inbuf, DECOMPRESS_CHUNK) {
                Ok(0) => break,
                Ok(_) => {}
                Err(err) => {
                    // Upstream ends the connection without an error frame on read errors.
                    tracing::info!(
                        "client({}): failed to read command - {err}, closing",
                        self.client.remote_addr
                    );
                    self.fatal = true;
                    break;
                }
            }
        }
        self.flush_fins();
        progress
    }

    /// Auth is enabled and an MPUB line is at the head of the input: check its permission now,
    /// before its body is read (upstream's order). Returns `false` when decoding must stop.
    fn authorize_mpub_before_body(&mut self) -> bool {
        let Some(topic) = self.codec.mpub_topic_before_body(&self.inbuf) else {
            return true;
        };
        match self.check_auth("MPUB", &topic, "") {
            Ok(crate::protocol_v2::AuthVerdict::Allowed) => {
                self.mpub_authorized = true;
                true
            }
            Ok(crate::protocol_v2::AuthVerdict::Refresh) => {
                self.pending = Some(Pending::Refresh(None));
                false
            }
            Err(err) => {
                self.flush_fins();
                self.report(err);
                false
            }
        }
    }

    /// Awaits what a command left pending. Returns `false` when the connection must end at once.
    async fn resolve(&mut self, pending: Pending, shutdown: &CancellationToken) -> bool {
        match pending {
            Pending::Upgrade {
                tls,
                snappy,
                deflate_level,
            } => self.upgrade(tls, snappy, deflate_level).await,
            Pending::Auth(secret) => {
                self.authenticate(secret, shutdown).await;
                true
            }
            Pending::Refresh(command) => {
                self.refresh_auth(command, shutdown).await;
                true
            }
            Pending::Commit(ticket, published) => {
                match self.nsqd.committed(ticket).await {
                    Ok(()) => self.acknowledge(published),
                    Err(err) => self.report(ClientError::new(
                        published.failed,
                        format!("{} failed {err}", published.name),
                    )),
                }
                true
            }
        }
    }

    /// Writes all output (compressing it if compression is on) and flushes the transport.
    async fn flush_output(&mut self) -> io::Result<()> {
        let deadline = self
            .settings
            .heartbeat_interval
            .unwrap_or(HANDSHAKE_TIMEOUT);
        let flushed = tokio::time::timeout(
            deadline,
            poll_fn(|cx| {
                loop {
                    if let Some(layers) = self.layers.as_deref_mut()
                        && layers.wire_out.is_empty()
                        && !self.out.is_empty()
                    {
                        layers.compress_batch(&mut self.out);
                    }
                    let write_buf = match self.layers.as_deref() {
                        None => &self.out,
                        Some(layers) => &layers.wire_out,
                    };
                    if write_buf.is_empty() {
                        ready!(self.transport.poll_flush(cx))?;
                        self.tls_unflushed = false;
                        return Poll::Ready(Ok(()));
                    }
                    let n = ready!(self.transport.poll_write(cx, write_buf))?;
                    if n == 0 {
                        return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
                    }
                    match self.layers.as_deref_mut() {
                        None => self.out.advance(n),
                        Some(layers) => layers.wire_out.advance(n),
                    }
                }
            }),
        )
        .await;
        flushed.unwrap_or_else(|_| Err(io::ErrorKind::TimedOut.into()))
    }

    /// The upgrade sequence after IDENTIFY: the JSON reply in clear, then the TLS handshake and
    /// `OK` inside TLS, then compression and `OK` compressed (tcp-protocol.md §6.1).
    async fn upgrade(&mut self, tls: bool, snappy: bool, deflate_level: Option<u32>) -> bool {
        let peer = self.client.remote_addr;
        if let Err(err) = self.flush_output().await {
            tracing::debug!("client({peer}): {err}");
            return false;
        }
        if tls {
            let Some(config) = self.nsqd.settings.tls.clone() else {
                return false;
            };
            let Transport::Tcp(stream) = std::mem::replace(&mut self.transport, Transport::Closed)
            else {
                return false;
            };
            // Bytes read together with IDENTIFY already belong to the handshake.
            let prefix = self.inbuf.split().freeze();
            let acceptor = tokio_rustls::TlsAcceptor::from(config);
            let handshake = acceptor.accept(Rewind::new(prefix, stream)).into_fallible();
            match tokio::time::timeout(HANDSHAKE_TIMEOUT, handshake).await {
                Ok(Ok(stream)) => {
                    let session = TlsSessionInfo::of(stream.get_ref().1);
                    tracing::debug!(
                        "client({peer}): TLS {} {}",
                        session.version,
                        session.cipher_suite
                    );
                    self.client.info.lock().tls = Some(session);
                    self.transport = Transport::Tls(Box::new(stream));
                    self.codec.tls_required = false;
                    self.respond(nsq_protocol::frame::OK);
                    if let Err(err) = self.flush_output().await {
                        tracing::debug!("client({peer}): {err}");
                        return false;
                    }
                }
                Ok(Err((err, stream))) => {
                    // Upstream answers in clear (the client may not be able to read it).
                    self.transport = Transport::Tcp(stream.into_inner());
                    self.report(ClientError::new(
                        ErrorCode::IdentifyFailed,
                        format!("IDENTIFY failed {err}"),
                    ));
                    return true;
                }
                Err(_) => {
                    tracing::info!("client({peer}): TLS handshake timed out, closing");
                    return false;
                }
            }
        }
        let layers = match (snappy, deflate_level) {
            (true, _) => Layers::snappy(),
            (false, Some(level)) => Layers::deflate(level),
            (false, None) => return true,
        };
        let mut layers = Box::new(layers);
        // Bytes read together with IDENTIFY are already compressed.
        layers.wire_in = self.inbuf.split();
        self.layers = Some(layers);
        self.respond(nsq_protocol::frame::OK);
        true
    }

    /// Asks the auth server about this connection; `None` when the node is shutting down.
    async fn query_auth(
        &self,
        auth: &AuthClient,
        secret: &[u8],
        shutdown: &CancellationToken,
    ) -> Option<Result<AuthState, String>> {
        let remote_ip = self.client.remote_addr.ip().to_string();
        let common_name = self
            .client
            .info
            .lock()
            .tls
            .as_ref()
            .map(|tls| tls.common_name.clone())
            .unwrap_or_default();
        let request = AuthRequest {
            remote_ip: &remote_ip,
            tls: self.has_tls(),
            common_name: &common_name,
            secret,
        };
        tokio::select! {
            result = auth.query_any(request) => Some(result),
            () = shutdown.cancelled() => None,
        }
    }

    fn set_auth(&mut self, state: AuthState) {
        {
            let mut info = self.client.info.lock();
            info.authed = state.has_authorizations();
            info.auth_identity.clone_from(&state.identity);
            info.auth_identity_url.clone_from(&state.identity_url);
        }
        self.auth = Some(state);
    }

    fn auth_failed(&mut self, err: &str) {
        // The reason stays in the log: it is not leaked to an untrusted client.
        tracing::warn!(
            "PROTOCOL(V2): [{}] AUTH failed {err}",
            self.client.remote_addr
        );
        self.report(ClientError::new(ErrorCode::AuthFailed, "AUTH failed"));
    }

    /// AUTH: query, cache, answer with the identity and the number of authorizations.
    async fn authenticate(&mut self, secret: Bytes, shutdown: &CancellationToken) {
        let Some(auth) = self.nsqd.settings.auth.clone() else {
            return;
        };
        match self.query_auth(&auth, &secret, shutdown).await {
            None => self.fatal = true,
            Some(Err(err)) => self.auth_failed(&err),
            Some(Ok(state)) => {
                #[derive(serde::Serialize)]
                struct Reply<'a> {
                    identity: &'a str,
                    identity_url: &'a str,
                    permission_count: usize,
                }
                let reply = serde_json::to_vec(&Reply {
                    identity: &state.identity,
                    identity_url: &state.identity_url,
                    permission_count: state.permission_count(),
                })
                .unwrap_or_default();
                let authorized = state.has_authorizations();
                self.set_auth(state);
                self.auth_secret = Some(secret);
                if authorized {
                    self.respond(&reply);
                } else {
                    self.report(ClientError::new(
                        ErrorCode::Unauthorized,
                        "AUTH no authorizations found",
                    ));
                }
            }
        }
    }

    /// The cached answer expired before a SUB/PUB/MPUB/DPUB: query again, then run the command.
    async fn refresh_auth(&mut self, command: Option<Command>, shutdown: &CancellationToken) {
        let (Some(auth), Some(secret)) =
            (self.nsqd.settings.auth.clone(), self.auth_secret.clone())
        else {
            return;
        };
        match self.query_auth(&auth, &secret, shutdown).await {
            None => self.fatal = true,
            Some(Err(err)) => self.auth_failed(&err),
            Some(Ok(state)) => {
                self.set_auth(state);
                self.auth_just_refreshed = true;
                if let Some(command) = command
                    && let Err(err) = self.exec(command, Instant::now())
                {
                    self.report(err);
                }
            }
        }
    }

    /// Writes an error frame; a fatal one ends the connection once output is flushed.
    pub(crate) fn report(&mut self, err: ClientError) {
        if err.is_fatal() {
            tracing::info!("client({}): {err}, closing", self.client.remote_addr);
            self.fatal = true;
        } else {
            tracing::debug!("client({}): {err}", self.client.remote_addr);
        }
        write_frame(
            &mut self.out,
            FrameType::Error,
            err.to_frame_data().as_bytes(),
        );
    }

    /// Writes a response frame.
    pub(crate) fn respond(&mut self, data: &[u8]) {
        write_frame(&mut self.out, FrameType::Response, data);
    }

    /// Applies the batched FINs under one channel lock.
    pub(crate) fn flush_fins(&mut self) {
        if self.pending_fins.is_empty() {
            return;
        }
        let Some(channel) = self
            .subscription
            .as_ref()
            .map(|(_, channel)| Arc::clone(channel))
        else {
            self.pending_fins.clear();
            return;
        };
        let mut refusals = Vec::new();
        let finished = channel.finish_batch(self.client.id, &self.pending_fins, |id, reason| {
            refusals.push(ClientError::new(
                nsq_protocol::ErrorCode::FinFailed,
                format!("FIN {id} failed {}", reason.reason()),
            ));
        });
        self.pending_fins.clear();
        if finished > 0 {
            self.client.in_flight_done(finished);
            self.client
                .finish_count
                .fetch_add(finished, Ordering::Relaxed);
        }
        for refusal in refusals {
            self.report(refusal);
        }
    }

    /// Takes messages from the channel while RDY and the output buffer allow. Returns a wait
    /// handle when the channel ran dry (or is paused) with capacity left.
    fn deliver(&mut self, now: Instant) -> Option<Pin<Box<OwnedNotified>>> {
        let channel = match &self.subscription {
            Some((_, channel)) if self.codec.state == nsq_protocol::ConnectionState::Subscribed => {
                Arc::clone(channel)
            }
            _ => return None,
        };
        let mut armed: Option<Pin<Box<OwnedNotified>>> = None;
        loop {
            let ready = self.client.ready_count.load(Ordering::Acquire);
            let in_flight = self.client.in_flight_count.load(Ordering::Acquire);
            let capacity = ready.saturating_sub(in_flight) as usize;
            let room = self
                .settings
                .output_buffer_size
                .saturating_sub(self.out.len());
            if capacity == 0 || room == 0 {
                return None;
            }
            let out_limit = self.settings.output_buffer_size;
            let out = &mut self.out;
            let request = TakeRequest {
                max: capacity.min(TAKE_BATCH),
                now,
                msg_timeout: self.settings.msg_timeout,
                sample_rate: self.settings.sample_rate,
            };
            let taken = channel.take_for(&self.client, request, &mut self.rng, |message| {
                write_message_frame(out, message);
                out.len() < out_limit
            });
            if !taken.exhausted {
                continue;
            }
            // Memory is empty but the disk holds more: read some back and go on.
            if taken.refill && channel.refill(capacity.min(TAKE_BATCH)) > 0 {
                continue;
            }
            if armed.is_some() {
                // Armed before the last look and still nothing: wait for a put.
                return if taken.delivered == 0 { armed } else { None };
            }
            // Arm the notifier, then look once more so a put in between is not missed.
            let mut wait = Box::pin(Arc::clone(channel.ready_notify()).notified_owned());
            wait.as_mut().enable();
            armed = Some(wait);
        }
    }

    fn cleanup(&mut self) {
        if let Some((topic, channel)) = self.subscription.take() {
            let was_last = channel.remove_consumer(self.client.id);
            if was_last
                && channel.is_ephemeral()
                && topic.remove_if_abandoned(&channel) == Some(true)
                && topic.is_ephemeral()
            {
                self.nsqd.delete_topic_instance(&topic);
            }
        }
        self.nsqd.unregister_client(self.client.id);
        tracing::debug!("client({}): closed", self.client.remote_addr);
    }
}
