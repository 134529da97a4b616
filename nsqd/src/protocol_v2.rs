//! Command execution for the V2 protocol: one function per command, mapping it onto `Nsqd`,
//! `Topic` and `Channel` calls and NSQ's error codes. No socket I/O happens here; responses are
//! appended to the connection's output buffer. What must be awaited (TLS/compression upgrades,
//! auth-server calls) is left in `Connection::pending` for the connection loop.

use crate::auth::AuthState;
use crate::channel::JoinError;
use crate::connection::{Connection, Pending};
use crate::in_flight::NotInFlight;
use bytes::Bytes;
use nsq_protocol::{
    ChannelName, ClientError, Command, ConnectionState, ErrorCode, IdentifyRequest, MessageId,
    TopicName,
};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use tokio::time::{Duration, Instant};

impl Connection {
    /// Executes one decoded command.
    pub(crate) fn exec(&mut self, command: Command, now: Instant) -> Result<(), ClientError> {
        if let Command::Fin(id) = command {
            // FINs are applied in batches (one channel lock per read), in order.
            self.pending_fins.push(id);
            return Ok(());
        }
        self.flush_fins();
        if self.nsqd.settings.auth.is_some() && self.authorize(&command)? == AuthVerdict::Refresh {
            self.pending = Some(Pending::Refresh(Some(command)));
            return Ok(());
        }
        match command {
            Command::Nop | Command::Fin(_) => Ok(()),
            Command::Identify(body) => self.identify(&body),
            Command::Auth(secret) => self.auth_command(secret),
            Command::Sub { topic, channel } => self.sub(&topic, &channel),
            Command::Rdy(count) => {
                self.client.ready_count.store(count, Ordering::Release);
                Ok(())
            }
            Command::Req { id, timeout_ms } => self.req(&id, timeout_ms, now),
            Command::Touch(id) => self.touch(&id, now),
            Command::Cls => {
                self.client.ready_count.store(0, Ordering::Release);
                self.set_state(ConnectionState::Closing);
                self.respond(nsq_protocol::frame::CLOSE_WAIT);
                Ok(())
            }
            Command::Pub { topic, body } => {
                self.publish(&topic, &[body], None, "PUB", ErrorCode::PubFailed)
            }
            Command::Mpub { topic, bodies } => {
                self.publish(&topic, &bodies, None, "MPUB", ErrorCode::MpubFailed)
            }
            Command::Dpub {
                topic,
                defer_ms,
                body,
            } => self.publish(
                &topic,
                &[body],
                Some(Duration::from_millis(defer_ms)),
                "DPUB",
                ErrorCode::DpubFailed,
            ),
        }
    }

    /// The auth check of SUB (after its name checks) and PUB/DPUB (after the body); MPUB was
    /// normally checked before its body was read.
    fn authorize(&mut self, command: &Command) -> Result<AuthVerdict, ClientError> {
        let mpub_checked = std::mem::take(&mut self.mpub_authorized);
        match command {
            Command::Sub { topic, channel } => self.check_auth("SUB", topic, channel.as_str()),
            Command::Pub { topic, .. } => self.check_auth("PUB", topic, ""),
            Command::Dpub { topic, .. } => self.check_auth("DPUB", topic, ""),
            Command::Mpub { topic, .. } if !mpub_checked => self.check_auth("MPUB", topic, ""),
            _ => Ok(AuthVerdict::Allowed),
        }
    }

    /// Upstream's `CheckAuth` (publishes use the empty channel). Only called with auth enabled.
    pub(crate) fn check_auth(
        &mut self,
        name: &str,
        topic: &TopicName,
        channel: &str,
    ) -> Result<AuthVerdict, ClientError> {
        let refreshed = std::mem::take(&mut self.auth_just_refreshed);
        let auth_first =
            || ClientError::new(ErrorCode::AuthFirst, format!("AUTH required before {name}"));
        let Some(state) = &self.auth else {
            return Err(auth_first());
        };
        if !refreshed {
            if !state.has_authorizations() {
                return Err(auth_first());
            }
            if state.is_expired(Instant::now()) {
                return Ok(AuthVerdict::Refresh);
            }
        }
        if state.is_allowed(topic.as_str(), channel) {
            Ok(AuthVerdict::Allowed)
        } else {
            Err(ClientError::new(
                ErrorCode::Unauthorized,
                format!(
                    "AUTH failed for {name} on {} {}",
                    nsq_protocol::command::go_quote(topic.as_str().as_bytes()),
                    nsq_protocol::command::go_quote(channel.as_bytes())
                ),
            ))
        }
    }

    /// AUTH: the checks that follow the body; the auth-server call is awaited by the loop.
    fn auth_command(&mut self, secret: Bytes) -> Result<(), ClientError> {
        if self
            .auth
            .as_ref()
            .is_some_and(AuthState::has_authorizations)
        {
            return Err(ClientError::invalid("AUTH already set"));
        }
        if self.nsqd.settings.auth.is_none() {
            return Err(ClientError::new(ErrorCode::AuthDisabled, "AUTH disabled"));
        }
        self.pending = Some(Pending::Auth(secret));
        Ok(())
    }

    fn set_state(&mut self, state: ConnectionState) {
        self.codec.state = state;
        self.client
            .state
            .store(state.stats_code(), Ordering::Release);
    }

    fn identify(&mut self, body: &[u8]) -> Result<(), ClientError> {
        let request = IdentifyRequest::from_json(body)?;
        let nsqd = Arc::clone(&self.nsqd);
        let policy = &nsqd.settings.identify;
        let mut negotiated = policy.negotiate(&request)?;
        // A repeated IDENTIFY does not start a layer that is already running (and TLS needs the
        // configuration start() loaded).
        if self.has_tls() || nsqd.settings.tls.is_none() {
            negotiated.tls = false;
        }
        if self.has_compression() {
            negotiated.snappy = false;
            negotiated.deflate = false;
        }
        {
            let mut info = self.client.info.lock();
            info.client_id = negotiated.client_id.clone();
            info.hostname = negotiated.hostname.clone();
            info.user_agent = negotiated.user_agent.clone();
            info.sample_rate = negotiated.sample_rate;
            info.deflate |= negotiated.deflate;
            info.snappy |= negotiated.snappy;
            info.topology_region = negotiated.topology_region.clone();
            info.topology_zone = negotiated.topology_zone.clone();
        }
        self.settings.heartbeat_interval = negotiated.heartbeat_interval;
        self.codec.heartbeats_disabled = negotiated.heartbeat_interval.is_none();
        self.settings.output_buffer_size = negotiated.output_buffer_size as usize;
        self.settings.msg_timeout = negotiated.msg_timeout;
        self.settings.sample_rate = negotiated.sample_rate;
        if negotiated.feature_negotiation {
            let reply = policy.response(&negotiated);
            let json = serde_json::to_vec(&reply).map_err(|_| {
                ClientError::new(ErrorCode::IdentifyFailed, "IDENTIFY failed to encode reply")
            })?;
            self.respond(&json);
        } else {
            self.respond(nsq_protocol::frame::OK);
        }
        if negotiated.tls || negotiated.snappy || negotiated.deflate {
            self.pending = Some(Pending::Upgrade {
                tls: negotiated.tls,
                snappy: negotiated.snappy,
                deflate_level: negotiated
                    .deflate
                    .then_some(negotiated.deflate_level.clamp(1, 9) as u32),
            });
        }
        Ok(())
    }

    fn sub(
        &mut self,
        topic_name: &TopicName,
        channel_name: &ChannelName,
    ) -> Result<(), ClientError> {
        // An ephemeral topic/channel may be torn down between lookup and join: retry once.
        for _ in 0..2 {
            let topic = self.nsqd.topic(topic_name);
            let (channel, _) = topic.get_or_create_channel(channel_name);
            match channel.add_consumer(Arc::clone(&self.client)) {
                Ok(()) => {
                    self.subscription = Some((topic, channel));
                    self.set_state(ConnectionState::Subscribed);
                    self.respond(nsq_protocol::frame::OK);
                    return Ok(());
                }
                Err(JoinError::TooManyConsumers(max)) => {
                    return Err(ClientError::new(
                        ErrorCode::SubFailed,
                        format!(
                            "SUB failed consumers for {topic_name}:{channel_name} exceeds limit of {max}"
                        ),
                    ));
                }
                Err(JoinError::Deleted) => continue,
            }
        }
        Err(ClientError::new(
            ErrorCode::SubFailed,
            "SUB failed to deleted topic/channel",
        ))
    }

    fn req(&mut self, id: &MessageId, timeout_ms: u64, now: Instant) -> Result<(), ClientError> {
        let Some((_, channel)) = &self.subscription else {
            return Err(not_in_flight(
                "REQ",
                ErrorCode::ReqFailed,
                id,
                NotInFlight::Unknown,
            ));
        };
        let delay = Duration::from_millis(timeout_ms).min(self.nsqd.settings.max_req_timeout);
        channel
            .requeue(self.client.id, id, delay, now)
            .map_err(|reason| not_in_flight("REQ", ErrorCode::ReqFailed, id, reason))?;
        self.client.in_flight_done(1);
        self.client.requeue_count.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    fn touch(&mut self, id: &MessageId, now: Instant) -> Result<(), ClientError> {
        let Some((_, channel)) = &self.subscription else {
            return Err(not_in_flight(
                "TOUCH",
                ErrorCode::TouchFailed,
                id,
                NotInFlight::Unknown,
            ));
        };
        channel
            .touch(self.client.id, id, now, self.settings.msg_timeout)
            .map_err(|reason| not_in_flight("TOUCH", ErrorCode::TouchFailed, id, reason))
    }

    fn publish(
        &mut self,
        topic: &TopicName,
        bodies: &[Bytes],
        defer: Option<Duration>,
        name: &'static str,
        failed: ErrorCode,
    ) -> Result<(), ClientError> {
        let written = self
            .nsqd
            .publish_written(topic, bodies, defer)
            .map_err(|err| ClientError::new(failed, format!("{name} failed {err}")))?;
        let published = PublishedBatch {
            topic: topic.clone(),
            count: bodies.len() as u64,
            name,
            failed,
        };
        match written {
            // Durable mode: the loop answers once the commit covers the messages.
            Some(ticket) => self.pending = Some(Pending::Commit(ticket, published)),
            None => self.acknowledge(published),
        }
        Ok(())
    }

    /// Counts a publish and answers `OK`.
    pub(crate) fn acknowledge(&mut self, published: PublishedBatch) {
        self.client
            .count_published(&published.topic, published.count);
        self.respond(nsq_protocol::frame::OK);
    }
}

/// A publish written to its queues, to acknowledge (or fail) once durable.
#[derive(Debug)]
pub(crate) struct PublishedBatch {
    pub(crate) topic: TopicName,
    pub(crate) count: u64,
    /// Command name for the error text.
    pub(crate) name: &'static str,
    pub(crate) failed: ErrorCode,
}

/// Outcome of an auth check that did not fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AuthVerdict {
    /// Go ahead.
    Allowed,
    /// The cached answer expired: re-query the auth server first.
    Refresh,
}

fn not_in_flight(name: &str, code: ErrorCode, id: &MessageId, reason: NotInFlight) -> ClientError {
    ClientError::new(code, format!("{name} {id} failed {}", reason.reason()))
}
