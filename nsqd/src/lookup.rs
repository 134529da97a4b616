//! Keeps every configured nsqlookupd told about this node's topics and channels.
//!
//! One task per lookupd address (`Peer`): connect, send the magic, IDENTIFY, then the full
//! REGISTER set (a bare `REGISTER t` for a topic without channels, `REGISTER t c` per channel);
//! afterwards forward REGISTER/UNREGISTER for every [`RegistryEvent`] and PING every 15 s. Any
//! error closes the connection; the peer reconnects with backoff and starts over with the full
//! set, so nothing queued while it was away needs replaying.
//!
//! The manager task follows the address list (flags, `PUT /config/nsqlookupd_tcp_addresses`),
//! fans registry events out to the peers, and pre-creates channels for a topic created at runtime
//! from what the lookupds already know (`GET /channels?topic=`), as upstream does. Nothing here
//! ever blocks publishing or delivery: peers are fed through unbounded queues, and a topic waiting
//! for its channels just holds its messages.

use crate::nsqd::{Nsqd, RegistryEvent};
use bytes::BytesMut;
use futures::StreamExt as _;
use nsq_protocol::lookup::{
    ChannelsResponse, LookupClientCodec, LookupCommand, LookupdInfo, MAGIC_V1, PeerInfo,
    encode_command,
};
use nsq_protocol::{ChannelName, TopicName};
use parking_lot::Mutex;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::sync::{broadcast, mpsc, watch};
use tokio_util::codec::FramedRead;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

const PING_INTERVAL: Duration = Duration::from_secs(15);
const IO_TIMEOUT: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(15);

/// What the manager knows about a connected lookupd (for channel pre-creation).
type PeerInfos = Arc<Mutex<HashMap<String, LookupdInfo>>>;

struct PeerHandle {
    commands: mpsc::UnboundedSender<LookupCommand>,
    stop: CancellationToken,
}

/// Runs until `shutdown`: follows `addresses`, keeps one peer task per address.
pub(crate) async fn run(
    nsqd: Arc<Nsqd>,
    mut addresses: watch::Receiver<Vec<String>>,
    shutdown: CancellationToken,
) {
    let mut events = nsqd.subscribe_events();
    let infos: PeerInfos = Arc::default();
    let mut peers: HashMap<String, PeerHandle> = HashMap::new();
    let http = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(2))
        .timeout(Duration::from_secs(5))
        .build()
        .ok();
    let mut current: Vec<String> = addresses.borrow_and_update().clone();
    reconcile(&nsqd, &infos, &mut peers, &current, &shutdown);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => break,
            changed = addresses.changed() => {
                if changed.is_err() {
                    break;
                }
                current = addresses.borrow_and_update().clone();
                reconcile(&nsqd, &infos, &mut peers, &current, &shutdown);
            }
            event = events.recv() => match event {
                Ok(event) => {
                    if let RegistryEvent::TopicCreated(topic) = &event
                        && let Some(http) = &http
                    {
                        tokio::spawn(precreate_channels(Arc::clone(&nsqd), Arc::clone(&infos), http.clone(), topic.clone()));
                    }
                    let command = command_for(&event);
                    for peer in peers.values() {
                        let _ = peer.commands.send(command.clone());
                    }
                }
                Err(broadcast::error::RecvError::Lagged(missed)) => {
                    // Events were lost: resend everything by reconnecting every peer.
                    tracing::warn!("LOOKUP: missed {missed} registry events, re-registering");
                    for (_, peer) in peers.drain() {
                        peer.stop.cancel();
                    }
                    reconcile(&nsqd, &infos, &mut peers, &current, &shutdown);
                }
                Err(broadcast::error::RecvError::Closed) => break,
            },
        }
    }
    for (_, peer) in peers.drain() {
        peer.stop.cancel();
    }
}

fn command_for(event: &RegistryEvent) -> LookupCommand {
    match event {
        RegistryEvent::TopicCreated(topic) => LookupCommand::Register {
            topic: topic.clone(),
            channel: None,
        },
        RegistryEvent::TopicDeleted(topic) => LookupCommand::Unregister {
            topic: topic.clone(),
            channel: None,
        },
        RegistryEvent::ChannelCreated(topic, channel) => LookupCommand::Register {
            topic: topic.clone(),
            channel: Some(channel.clone()),
        },
        RegistryEvent::ChannelDeleted(topic, channel) => LookupCommand::Unregister {
            topic: topic.clone(),
            channel: Some(channel.clone()),
        },
    }
}

fn reconcile(
    nsqd: &Arc<Nsqd>,
    infos: &PeerInfos,
    peers: &mut HashMap<String, PeerHandle>,
    wanted: &[String],
    shutdown: &CancellationToken,
) {
    peers.retain(|address, peer| {
        let keep = wanted.contains(address);
        if !keep {
            tracing::info!("LOOKUP({address}): removing peer");
            peer.stop.cancel();
            infos.lock().remove(address);
        }
        keep
    });
    for address in wanted {
        if peers.contains_key(address) {
            continue;
        }
        tracing::info!("LOOKUP({address}): adding peer");
        let (commands, queue) = mpsc::unbounded_channel();
        let stop = shutdown.child_token();
        let span = tracing::info_span!("lookupd", peer = %address);
        tokio::spawn(
            run_peer(
                Arc::clone(nsqd),
                Arc::clone(infos),
                address.clone(),
                queue,
                stop.clone(),
            )
            .instrument(span),
        );
        peers.insert(address.clone(), PeerHandle { commands, stop });
    }
}

/// The node's full registration set: a bare REGISTER for topics without channels, one per
/// channel otherwise.
fn full_registration(nsqd: &Nsqd) -> Vec<LookupCommand> {
    let mut commands = Vec::new();
    for topic in nsqd.topics() {
        let channels = topic.channel_names();
        if channels.is_empty() {
            commands.push(LookupCommand::Register {
                topic: topic.name.clone(),
                channel: None,
            });
        }
        for channel in channels {
            commands.push(LookupCommand::Register {
                topic: topic.name.clone(),
                channel: Some(channel),
            });
        }
    }
    commands
}

fn peer_info(nsqd: &Nsqd) -> PeerInfo {
    let identity = nsqd.identity.get();
    PeerInfo {
        broadcast_address: identity
            .map(|id| id.broadcast_address.clone())
            .unwrap_or_default(),
        hostname: identity.map(|id| id.hostname.clone()).unwrap_or_default(),
        http_port: identity.map_or(0, |id| i64::from(id.broadcast_http_port)),
        tcp_port: identity.map_or(0, |id| i64::from(id.broadcast_tcp_port)),
        topology_region: nsqd.settings.identify.topology_region.clone(),
        topology_zone: nsqd.settings.identify.topology_zone.clone(),
        version: nsq_protocol::NSQ_VERSION.to_owned(),
    }
}

async fn run_peer(
    nsqd: Arc<Nsqd>,
    infos: PeerInfos,
    address: String,
    mut queue: mpsc::UnboundedReceiver<LookupCommand>,
    stop: CancellationToken,
) {
    let mut backoff = Duration::from_millis(100);
    loop {
        let session = Session {
            nsqd: &nsqd,
            infos: &infos,
            address: &address,
        };
        let outcome = tokio::select! {
            () = stop.cancelled() => return,
            outcome = session.run(&mut queue) => outcome,
        };
        infos.lock().remove(&address);
        match outcome {
            Ok(()) => return,
            Err(err) => tracing::warn!("LOOKUP({address}): {err}"),
        }
        // Whatever was queued is covered by the full REGISTER set sent on reconnect.
        let sleep = tokio::time::sleep(backoff);
        tokio::pin!(sleep);
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                () = &mut sleep => break,
                command = queue.recv() => if command.is_none() { return },
            }
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

struct Session<'a> {
    nsqd: &'a Arc<Nsqd>,
    infos: &'a PeerInfos,
    address: &'a str,
}

impl Session<'_> {
    /// One connection's life. `Ok` only when the command queue closed (node shutting down).
    async fn run(&self, queue: &mut mpsc::UnboundedReceiver<LookupCommand>) -> Result<(), String> {
        let stream = tokio::time::timeout(IO_TIMEOUT, TcpStream::connect(self.address))
            .await
            .map_err(|_| "connect timed out".to_owned())?
            .map_err(|err| format!("connect failed - {err}"))?;
        let _ = stream.set_nodelay(true);
        let (read_half, mut write_half) = stream.into_split();
        let mut responses = FramedRead::new(
            read_half,
            LookupClientCodec::new(self.nsqd.settings.limits.max_body_size as usize),
        );
        write_half
            .write_all(MAGIC_V1)
            .await
            .map_err(|err| format!("write failed - {err}"))?;
        let reply = self
            .exchange(
                &mut write_half,
                &mut responses,
                &LookupCommand::Identify(peer_info(self.nsqd)),
            )
            .await?;
        let info = LookupdInfo::from_json(&reply)
            .ok_or_else(|| format!("IDENTIFY rejected: {}", String::from_utf8_lossy(&reply)))?;
        tracing::info!(
            "LOOKUP({}): peer info {}:{} version {}",
            self.address,
            info.broadcast_address,
            info.http_port,
            info.version
        );
        self.infos.lock().insert(self.address.to_owned(), info);
        // Anything queued before this point is covered by the full set.
        while queue.try_recv().is_ok() {}
        for command in full_registration(self.nsqd) {
            self.exchange(&mut write_half, &mut responses, &command)
                .await?;
        }
        let mut ping =
            tokio::time::interval_at(tokio::time::Instant::now() + PING_INTERVAL, PING_INTERVAL);
        loop {
            let command = tokio::select! {
                _ = ping.tick() => LookupCommand::Ping,
                command = queue.recv() => match command {
                    Some(command) => command,
                    None => return Ok(()),
                },
            };
            self.exchange(&mut write_half, &mut responses, &command)
                .await?;
        }
    }

    /// Sends one command and reads its response (1 s deadline each way, as upstream).
    async fn exchange(
        &self,
        writer: &mut tokio::net::tcp::OwnedWriteHalf,
        responses: &mut FramedRead<tokio::net::tcp::OwnedReadHalf, LookupClientCodec>,
        command: &LookupCommand,
    ) -> Result<bytes::Bytes, String> {
        let mut buf = BytesMut::new();
        encode_command(command, &mut buf).map_err(|err| format!("encode failed - {err}"))?;
        tokio::time::timeout(IO_TIMEOUT, writer.write_all(&buf))
            .await
            .map_err(|_| format!("{} write timed out", command.name()))?
            .map_err(|err| format!("{} write failed - {err}", command.name()))?;
        let response = tokio::time::timeout(IO_TIMEOUT, responses.next())
            .await
            .map_err(|_| format!("{} response timed out", command.name()))?
            .ok_or_else(|| format!("{} connection closed", command.name()))?
            .map_err(|err| format!("{} read failed - {err}", command.name()))?;
        if response.starts_with(b"E_") {
            return Err(format!(
                "{} failed - {}",
                command.name(),
                String::from_utf8_lossy(&response)
            ));
        }
        Ok(response)
    }
}

/// Creates, on a topic just created at runtime, the channels the lookupds already know for it
/// (except ephemeral ones), so messages published before consumers find this node are kept for
/// them.
async fn precreate_channels(
    nsqd: Arc<Nsqd>,
    infos: PeerInfos,
    http: reqwest::Client,
    topic: TopicName,
) {
    let endpoints: Vec<String> = infos
        .lock()
        .values()
        .filter(|info| !info.broadcast_address.is_empty())
        .map(|info| format!("http://{}:{}", info.broadcast_address, info.http_port))
        .collect();
    if endpoints.is_empty() {
        return;
    }
    let mut names: Vec<ChannelName> = Vec::new();
    for endpoint in endpoints {
        let url = format!("{endpoint}/channels");
        let answer = http
            .get(&url)
            .query(&[("topic", topic.as_str())])
            .header("Accept", "application/vnd.nsq; version=1.0")
            .send()
            .await;
        let body = match answer {
            Ok(response) if response.status().is_success() => response.bytes().await.ok(),
            Ok(response) => {
                tracing::warn!("LOOKUP: {url} answered {}", response.status());
                None
            }
            Err(err) => {
                tracing::warn!("LOOKUP: {url} failed - {err}");
                None
            }
        };
        let Some(channels) =
            body.and_then(|body| serde_json::from_slice::<ChannelsResponse>(&body).ok())
        else {
            continue;
        };
        for name in channels.channels {
            if let Ok(name) = ChannelName::try_from(name.as_str())
                && !name.is_ephemeral()
                && !names.contains(&name)
            {
                names.push(name);
            }
        }
    }
    if names.is_empty() {
        return;
    }
    if let Some(topic) = nsqd.existing_topic(topic.as_str()) {
        topic.create_channels(&names);
    }
}
